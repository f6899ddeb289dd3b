//! The event feed on the wire (decision record 0013): [`event_json`], the one JSON
//! shape of an event, used by `GET /v1/admin/events` and by webhook deliveries.
//!
//! Not to be confused with [`crate::events`], which pushes queue positions to
//! waiting users (server-sent events).

use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use booking_core::domain::{Event, EventData, EventId, EventType, PaidSeat};
use booking_core::{Clock, Store};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::AppState;
use crate::admin::AdminKey;
use crate::error::{ApiError, BadAdminKey, CommonErrors, ErrorBody};

/// One seat of a `payment.completed` event.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EventSeatDto {
    /// The reservation paid.
    pub reservation_id: String,
    /// Its date.
    pub schedule_id: i64,
    /// The seat.
    pub seat: u16,
    /// Its price (minor units).
    pub price: i64,
}

/// `token.issued`: a user got a new place.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TokenIssuedData {
    /// The user.
    pub user_id: String,
    /// The new place.
    pub seq: u64,
}

/// `session.admitted`: one tick admitted the places `first_seq..=last_seq`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SessionAdmittedData {
    /// The first place admitted.
    pub first_seq: u64,
    /// The last (the serving counter now).
    pub last_seq: u64,
}

/// `hold.created`: a hold on a seat until `until`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct HoldCreatedData {
    /// The reservation.
    pub reservation_id: String,
    /// The holder.
    pub user_id: String,
    /// The date.
    pub schedule_id: i64,
    /// The seat.
    pub seat: u16,
    /// Its price (minor units).
    pub price: i64,
    /// When it lapses unless paid (RFC 3339).
    pub until: String,
}

/// `hold.cancelled`: the holder cancelled; the seat is free.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct HoldCancelledData {
    /// The reservation.
    pub reservation_id: String,
    /// The holder.
    pub user_id: String,
    /// The date.
    pub schedule_id: i64,
    /// The seat.
    pub seat: u16,
}

/// `hold.expired`: a hold lapsed at `until` (its end, or the payer's payment, which
/// releases the payer's other holds) and was recorded.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct HoldExpiredData {
    /// The reservation.
    pub reservation_id: String,
    /// The holder.
    pub user_id: String,
    /// The date.
    pub schedule_id: i64,
    /// The seat.
    pub seat: u16,
    /// When it lapsed (RFC 3339).
    pub until: String,
}

/// `wallet.charged`: a top-up.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WalletChargedData {
    /// The user.
    pub user_id: String,
    /// How much was added (minor units).
    pub amount: i64,
    /// The balance right after.
    pub balance_after: i64,
}

/// `payment.completed`: seats sold, the balance debited.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PaymentCompletedData {
    /// The payment.
    pub payment_id: String,
    /// The payer.
    pub user_id: String,
    /// Every seat, in the order paid.
    pub seats: Vec<EventSeatDto>,
    /// The total debited (minor units).
    pub amount: i64,
    /// The balance right after.
    pub balance_after: i64,
}

/// `session.ended`: a place's session ended, `paid` or `lapsed`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SessionEndedData {
    /// The user.
    pub user_id: String,
    /// The place.
    pub seq: u64,
    /// `paid` or `lapsed`.
    pub reason: String,
}

/// What an event says: one shape per type.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum EventDataDto {
    /// `token.issued`.
    TokenIssued(TokenIssuedData),
    /// `session.admitted`.
    SessionAdmitted(SessionAdmittedData),
    /// `hold.created`.
    HoldCreated(HoldCreatedData),
    /// `hold.cancelled`.
    HoldCancelled(HoldCancelledData),
    /// `hold.expired`.
    HoldExpired(HoldExpiredData),
    /// `wallet.charged`.
    WalletCharged(WalletChargedData),
    /// `payment.completed`.
    PaymentCompleted(PaymentCompletedData),
    /// `session.ended`.
    SessionEnded(SessionEndedData),
}

/// One event of the feed.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EventDto {
    /// Its id: global, strictly increasing; page with `after`.
    pub id: u64,
    /// `token.issued`, `session.admitted`, `hold.created`, `hold.cancelled`,
    /// `hold.expired`, `wallet.charged`, `payment.completed` or `session.ended`.
    #[serde(rename = "type")]
    pub kind: String,
    /// When the change happened (RFC 3339).
    pub at: String,
    /// What happened: the shape of its type.
    pub data: EventDataDto,
}

/// `GET /v1/admin/events`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EventsPageDto {
    /// The events after `after`, in id order.
    pub events: Vec<EventDto>,
    /// The `after` of the next page: the last id here, or `after` when empty.
    pub next_after: u64,
}

fn seat_dto(s: &PaidSeat) -> EventSeatDto {
    EventSeatDto {
        reservation_id: s.reservation.to_string(),
        schedule_id: s.schedule.get(),
        seat: s.seat.get(),
        price: s.price.minor_units(),
    }
}

impl From<&Event> for EventDto {
    fn from(e: &Event) -> Self {
        let data = match &e.data {
            EventData::TokenIssued { user, seq } => EventDataDto::TokenIssued(TokenIssuedData {
                user_id: user.to_string(),
                seq: seq.get(),
            }),
            EventData::SessionAdmitted { first, last } => {
                EventDataDto::SessionAdmitted(SessionAdmittedData {
                    first_seq: first.get(),
                    last_seq: last.get(),
                })
            }
            EventData::HoldCreated {
                reservation,
                user,
                schedule,
                seat,
                price,
                until,
            } => EventDataDto::HoldCreated(HoldCreatedData {
                reservation_id: reservation.to_string(),
                user_id: user.to_string(),
                schedule_id: schedule.get(),
                seat: seat.get(),
                price: price.minor_units(),
                until: until.to_string(),
            }),
            EventData::HoldCancelled {
                reservation,
                user,
                schedule,
                seat,
            } => EventDataDto::HoldCancelled(HoldCancelledData {
                reservation_id: reservation.to_string(),
                user_id: user.to_string(),
                schedule_id: schedule.get(),
                seat: seat.get(),
            }),
            EventData::HoldExpired {
                reservation,
                user,
                schedule,
                seat,
                until,
            } => EventDataDto::HoldExpired(HoldExpiredData {
                reservation_id: reservation.to_string(),
                user_id: user.to_string(),
                schedule_id: schedule.get(),
                seat: seat.get(),
                until: until.to_string(),
            }),
            EventData::WalletCharged {
                user,
                amount,
                balance_after,
            } => EventDataDto::WalletCharged(WalletChargedData {
                user_id: user.to_string(),
                amount: amount.minor_units(),
                balance_after: balance_after.minor_units(),
            }),
            EventData::PaymentCompleted {
                payment,
                user,
                seats,
                amount,
                balance_after,
            } => EventDataDto::PaymentCompleted(PaymentCompletedData {
                payment_id: payment.to_string(),
                user_id: user.to_string(),
                seats: seats.iter().map(seat_dto).collect(),
                amount: amount.minor_units(),
                balance_after: balance_after.minor_units(),
            }),
            EventData::SessionEnded { user, seq, reason } => {
                EventDataDto::SessionEnded(SessionEndedData {
                    user_id: user.to_string(),
                    seq: seq.get(),
                    reason: reason.as_str().to_owned(),
                })
            }
        };
        EventDto {
            id: e.id.0,
            kind: e.event_type().as_str().to_owned(),
            at: e.at.to_string(),
            data,
        }
    }
}

/// The event as JSON: `{"id": 7, "type": "payment.completed", "at": "<RFC 3339>",
/// "data": {...}}`, where `data` depends on the type (each is a schema of the
/// OpenAPI document; ids are strings, sums are integers in minor units, times RFC
/// 3339):
///
/// - `token.issued`: `user_id`, `seq`
/// - `session.admitted`: `first_seq`, `last_seq`
/// - `hold.created`: `reservation_id`, `user_id`, `schedule_id`, `seat`, `price`,
///   `until`
/// - `hold.cancelled`: `reservation_id`, `user_id`, `schedule_id`, `seat`
/// - `hold.expired`: `reservation_id`, `user_id`, `schedule_id`, `seat`, `until`
/// - `wallet.charged`: `user_id`, `amount`, `balance_after`
/// - `payment.completed`: `payment_id`, `user_id`, `seats` (each `reservation_id`,
///   `schedule_id`, `seat`, `price`, in the order paid), `amount`, `balance_after`
/// - `session.ended`: `user_id`, `seq`, `reason` (`paid` or `lapsed`)
pub fn event_json(e: &Event) -> Value {
    serde_json::to_value(EventDto::from(e)).unwrap_or(Value::Null)
}

/// The longest a long poll waits (`wait`, in seconds).
pub const MAX_WAIT_SECS: u64 = 30;

/// How often a long poll looks again (and relays) while it waits.
const POLL_EVERY: Duration = Duration::from_millis(100);

/// The query of `GET /v1/admin/events`, as text: each value is checked below, so
/// that a bad one gets a message that names it.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct FeedQuery {
    /// The events after this id (default 0: from the oldest kept).
    #[param(value_type = Option<i64>, minimum = 0, maximum = 9_223_372_036_854_775_807_i64)]
    pub after: Option<String>,
    /// How many at most, 1 to 1,000 (default 100).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 1000)]
    pub limit: Option<String>,
    /// Only these types, comma-separated (default: every type).
    #[param(value_type = Option<String>)]
    pub types: Option<String>,
    /// Seconds to wait for an event when there is none yet, 0 to 30 (default 0):
    /// the answer comes as soon as one arrives.
    #[param(value_type = Option<i64>, minimum = 0, maximum = 30)]
    pub wait: Option<String>,
}

/// A checked [`FeedQuery`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedRequest {
    /// The cursor.
    pub after: EventId,
    /// At most this many.
    pub limit: u32,
    /// The types (empty: all).
    pub types: Vec<EventType>,
    /// How long to wait for a first event.
    pub wait: Duration,
}

fn whole(name: &str, v: Option<&str>, default: u64, max: u64) -> Result<u64, String> {
    let Some(v) = v else {
        return Ok(default);
    };
    let digits = if name == "wait" {
        v.strip_suffix('s').unwrap_or(v)
    } else {
        v
    };
    match digits.parse::<u64>() {
        Ok(n) if n <= max => Ok(n),
        _ => Err(format!(
            "{name} is a whole number from 0 to {max}, got {v:?}"
        )),
    }
}

impl FeedQuery {
    /// Checks every value; the error names the bad one.
    ///
    /// # Errors
    /// A message for a 400.
    pub fn check(&self) -> Result<FeedRequest, String> {
        let after = whole("after", self.after.as_deref(), 0, i64::MAX as u64)?;
        let limit = whole("limit", self.limit.as_deref(), 100, 1_000)?;
        if limit == 0 {
            return Err("limit is a whole number from 1 to 1000, got \"0\"".into());
        }
        let wait = whole("wait", self.wait.as_deref(), 0, MAX_WAIT_SECS)?;
        let types = match self.types.as_deref() {
            None | Some("") => Vec::new(),
            Some(list) => list
                .split(',')
                .map(|t| t.trim().parse::<EventType>().map_err(|e| e.to_string()))
                .collect::<Result<Vec<_>, _>>()?,
        };
        Ok(FeedRequest {
            after: EventId(after),
            limit: limit as u32,
            types,
            wait: Duration::from_secs(wait),
        })
    }
}

#[utoipa::path(
    get,
    path = "/v1/admin/events",
    tag = "admin",
    summary = "The event feed: what happened, in order, after a cursor (long poll with wait)",
    description = "Every change worth telling (`token.issued`, `session.admitted`, \
                   `hold.created`, `hold.cancelled`, `hold.expired`, `wallet.charged`, \
                   `payment.completed`, `session.ended`), written in the change's own \
                   transaction and given a global, strictly increasing id: page with \
                   `after` = the last `next_after`; an event never appears behind it. With \
                   `wait`, an empty answer waits up to that many seconds and returns as soon \
                   as an event arrives. Events older than the retention (7 days by default) \
                   are pruned.",
    params(FeedQuery),
    security(("admin_key" = [])),
    responses(
        (status = 200, description = "The events after `after`", body = EventsPageDto),
        (status = 400, description = "A bad `after`, `limit`, `types` or `wait` (`bad_request`)", body = ErrorBody),
        BadAdminKey,
        (status = 403, description = "The server has no admin key (`admin_disabled`)", body = ErrorBody),
        CommonErrors
    )
)]
pub async fn events<S: Store + Clone, C: Clock>(
    State(st): State<AppState<S, C>>,
    _: AdminKey,
    query: Result<Query<FeedQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let req = query.check().map_err(ApiError::bad_request)?;
    let deadline = tokio::time::Instant::now() + req.wait;
    loop {
        // An empty read relays the outbox first (`Booking::events_after`).
        let found = st
            .booking
            .events_after(req.after, req.limit, &req.types)
            .await?;
        if !found.is_empty() || tokio::time::Instant::now() >= deadline {
            let next_after = found.last().map_or(req.after, |e| e.id).0;
            let page = EventsPageDto {
                events: found.iter().map(EventDto::from).collect(),
                next_after,
            };
            return Ok((StatusCode::OK, axum::Json(page)).into_response());
        }
        tokio::time::sleep_until(deadline.min(tokio::time::Instant::now() + POLL_EVERY)).await;
    }
}

#[cfg(test)]
mod tests {
    use booking_core::domain::{
        Amount, EventId, Money, PaymentId, ReservationId, ScheduleId, SeatNo, Timestamp, UserId,
    };

    use super::*;

    #[test]
    fn a_payment_has_its_seats_and_sums() {
        let user = UserId::random();
        let payment = PaymentId::random();
        let reservation = ReservationId::random();
        let e = Event {
            id: EventId(7),
            at: Timestamp::from_millis(1_767_225_600_000),
            data: EventData::PaymentCompleted {
                payment,
                user,
                seats: vec![PaidSeat {
                    reservation,
                    schedule: ScheduleId::new(3).unwrap(),
                    seat: SeatNo::new(12).unwrap(),
                    price: Amount::new(700).unwrap(),
                }],
                amount: Amount::new(700).unwrap(),
                balance_after: Money::new(300).unwrap(),
            },
        };
        let j = event_json(&e);
        assert_eq!(j["id"], 7);
        assert_eq!(j["type"], "payment.completed");
        assert_eq!(j["at"], "2026-01-01T00:00:00.000Z");
        assert_eq!(j["data"]["payment_id"], payment.to_string());
        assert_eq!(
            j["data"]["seats"][0]["reservation_id"],
            reservation.to_string()
        );
        assert_eq!(j["data"]["seats"][0]["seat"], 12);
        assert_eq!(j["data"]["amount"], 700);
        assert_eq!(j["data"]["balance_after"], 300);
    }
}
