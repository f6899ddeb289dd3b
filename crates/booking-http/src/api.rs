//! Handlers: parse, call the core, map the result. No rule lives here.

use std::collections::HashMap;
use std::sync::Mutex;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use booking_core::domain::{Amount, ConcertId, ReservationId, ScheduleId, Seat, SeatNo, UserId};
use booking_core::{Clock, QueueStatus, Store};
use chrono::NaiveDate;

use crate::AppState;
use crate::dto::{
    BalanceDto, ChargeRequest, ConcertDto, DateDto, HoldRequest, LedgerEntryDto, PayRequest,
    PaymentDto, QueueDto, ReadyDto, ReservationDto, SeatDto, SeatMapDto, TokenRequest,
};
use crate::error::{ApiError, BadToken, BodyErrors, CommonErrors, ErrorBody, RateLimited};
use crate::extract::{Bearer, Gate, IdemKey, Json, Path, Signed, WriteGate};

type ApiResult<T> = Result<T, ApiError>;

fn json<T: serde::Serialize>(status: StatusCode, body: T) -> Response {
    (status, axum::Json(body)).into_response()
}

/// A queue answer: the JSON, and `Retry-After` while waiting.
fn queue_answer(status: StatusCode, queue: QueueStatus, dto: QueueDto) -> Response {
    let mut resp = json(status, dto);
    if let Some(secs) = crate::dto::retry_after(queue) {
        resp.headers_mut().insert(header::RETRY_AFTER, secs.into());
    }
    resp
}

/// Whether `s` is a UUID spelled as the API documents it: 36 characters, hex
/// digits (either case) in groups of 8-4-4-4-12 joined by hyphens. Any other
/// spelling the UUID parser would take (no hyphens, braces, a `urn:uuid:` prefix,
/// white space around it) is refused, so that the document says exactly what the
/// server accepts.
fn is_uuid_text(s: &str) -> bool {
    s.len() == 36
        && s.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

/// A UUID id of the API, or a 400 that names the field and says the form.
fn parse_uuid_id<T>(field: &str, s: &str) -> ApiResult<T>
where
    T: std::str::FromStr<Err = booking_core::domain::ValueError>,
{
    if !is_uuid_text(s) {
        return Err(ApiError::bad_request(format!(
            "{field}: {:?} is not a UUID (36 characters: 8-4-4-4-12 hex digits joined by hyphens)",
            s.chars().take(40).collect::<String>()
        )));
    }
    s.parse()
        .map_err(|e| ApiError::bad_request(format!("{field}: {e}")))
}

fn parse_user(s: &str) -> ApiResult<UserId> {
    parse_uuid_id("user_id", s)
}

fn parse_date(s: &str) -> ApiResult<NaiveDate> {
    booking_core::domain::parse_date(s).map_err(|e| ApiError::bad_request(format!("date: {e}")))
}

fn parse_concert(id: i64) -> ApiResult<ConcertId> {
    ConcertId::new(id).map_err(|_| ApiError::not_found("unknown_concert", "no such concert"))
}

fn parse_reservation(s: &str) -> ApiResult<ReservationId> {
    parse_uuid_id("reservation_id", s)
}

/// The user in the path must be the token's user.
fn same_user(path_user: &str, token_user: UserId) -> ApiResult<UserId> {
    let user = parse_user(path_user)?;
    if user != token_user {
        return Err(ApiError::forbidden(
            "wrong_user",
            "the token belongs to another user",
        ));
    }
    Ok(user)
}

// --- waiting room -----------------------------------------------------------------

#[utoipa::path(
    post,
    path = "/v1/queue/tokens",
    tag = "queue",
    summary = "Take a place in the waiting room (or get back the same place)",
    request_body = TokenRequest,
    responses(
        (status = 201, description = "The token and its place; `poll_after_ms` says when to ask for the status", body = QueueDto,
            headers(("Retry-After" = u64, description = "While waiting: when to ask again, in whole seconds (rounded up `poll_after_ms`)"))),
        (status = 400, description = "Malformed body, parameter or header (`bad_request`)", body = ErrorBody),
        BodyErrors,
        CommonErrors
    )
)]
pub async fn issue_token<S: Store + Clone, C: Clock>(
    State(st): State<AppState<S, C>>,
    Json(req): Json<TokenRequest>,
) -> ApiResult<Response> {
    let user = parse_user(&req.user_id)?;
    let issued = st.booking.issue_token(user).await?;
    if matches!(issued.status, QueueStatus::Waiting { .. }) {
        st.feed.arrived();
    }
    let dto = QueueDto::new(&issued.claims, issued.status, Some(issued.token));
    Ok(queue_answer(StatusCode::CREATED, issued.status, dto))
}

#[utoipa::path(
    get,
    path = "/v1/queue/status",
    tag = "queue",
    summary = "Where the token stands: position, ETA and when to ask again; sold out; or active until",
    security(("queue_token" = [])),
    responses(
        (status = 200, description = "Status. Clients should ask again after `poll_after_ms` (two thirds of the expected wait, 250 ms to 20 s: far back rarely, near the front often)", body = QueueDto,
            headers(("Retry-After" = u64, description = "While waiting: when to ask again, in whole seconds (rounded up `poll_after_ms`)"))),
        BadToken,
        CommonErrors
    )
)]
pub async fn queue_status<S: Store + Clone, C: Clock>(
    State(st): State<AppState<S, C>>,
    Bearer(token): Bearer,
) -> ApiResult<Response> {
    let view = st.booking.queue_status(&token).await?;
    let dto = QueueDto::new(&view.claims, view.status, None).with_paused(view.paused);
    Ok(queue_answer(StatusCode::OK, view.status, dto))
}

// --- catalog ----------------------------------------------------------------------

#[utoipa::path(
    get,
    path = "/v1/concerts",
    tag = "catalog",
    summary = "The concerts",
    security(("queue_token" = [])),
    responses(
        (status = 200, description = "Concerts", body = Vec<ConcertDto>),
        BadToken,
        (status = 403, description = "Not admitted yet (`not_admitted`, with `Retry-After`: when to poll the status)", body = ErrorBody),
        (status = 409, description = "Not admitted, and sold out: every seat of every bookable date is sold or held (`sold_out`, with `Retry-After`); for the seat map and a hold, also when admitted", body = ErrorBody),
        CommonErrors
    )
)]
pub async fn concerts<S: Store + Clone, C: Clock>(
    State(st): State<AppState<S, C>>,
    Gate(_): Gate,
) -> ApiResult<Response> {
    let list: Vec<ConcertDto> = st
        .booking
        .concerts()
        .await?
        .iter()
        .map(Into::into)
        .collect();
    Ok(json(StatusCode::OK, list))
}

#[utoipa::path(
    get,
    path = "/v1/concerts/{id}/dates",
    tag = "catalog",
    summary = "Bookable dates of a concert with free-seat counts",
    params(("id" = i64, Path, description = "The concert")),
    security(("queue_token" = [])),
    responses(
        (status = 200, description = "Dates", body = Vec<DateDto>),
        (status = 400, description = "Malformed body, parameter or header (`bad_request`)", body = ErrorBody),
        BadToken,
        (status = 403, description = "Not admitted yet (`not_admitted`, with `Retry-After`: when to poll the status)", body = ErrorBody),
        (status = 409, description = "Not admitted, and sold out: every seat of every bookable date is sold or held (`sold_out`, with `Retry-After`); for the seat map and a hold, also when admitted", body = ErrorBody),
        (status = 404, description = "Unknown concert or date (`unknown_concert`, `unknown_date`)", body = ErrorBody),
        CommonErrors
    )
)]
pub async fn dates<S: Store + Clone, C: Clock>(
    State(st): State<AppState<S, C>>,
    Gate(_): Gate,
    Path(concert): Path<i64>,
) -> ApiResult<Response> {
    let concert = parse_concert(concert)?;
    let dates: Vec<DateDto> = st
        .booking
        .bookable_dates(concert)
        .await?
        .iter()
        .map(Into::into)
        .collect();
    Ok(json(StatusCode::OK, dates))
}

#[utoipa::path(
    get,
    path = "/v1/concerts/{id}/dates/{date}/seats",
    tag = "catalog",
    summary = "The seat map of a date: every seat with its state and price",
    params(("id" = i64, Path, description = "The concert"), ("date" = String, Path, description = "Exactly `YYYY-MM-DD`")),
    security(("queue_token" = [])),
    responses(
        (status = 200, description = "Seat map", body = SeatMapDto),
        (status = 400, description = "Malformed body, parameter or header (`bad_request`)", body = ErrorBody),
        BadToken,
        (status = 403, description = "Not admitted yet (`not_admitted`, with `Retry-After`: when to poll the status)", body = ErrorBody),
        (status = 409, description = "Not admitted, and sold out: every seat of every bookable date is sold or held (`sold_out`, with `Retry-After`); for the seat map and a hold, also when admitted", body = ErrorBody),
        (status = 404, description = "Unknown concert or date (`unknown_concert`, `unknown_date`)", body = ErrorBody),
        CommonErrors
    )
)]
pub async fn seats<S: Store + Clone, C: Clock>(
    State(st): State<AppState<S, C>>,
    Gate(_): Gate,
    Path((concert, date)): Path<(i64, String)>,
) -> ApiResult<Response> {
    let concert = parse_concert(concert)?;
    let date = parse_date(&date)?;
    let (schedule, seats) = st.booking.seats(concert, date).await?;
    let body = st.seat_maps.body(schedule.id, seats, |seats| {
        let map = SeatMapDto {
            concert_id: concert.get(),
            date: date.to_string(),
            schedule_id: schedule.id.get(),
            seats: seats.iter().map(SeatDto::from).collect(),
        };
        serde_json::to_vec(&map).map(Bytes::from)
    })?;
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response())
}

/// The JSON body of the seat map sent last for each date: when a date's seats are
/// the same, seat for seat, as last time (the common case under load, with the
/// engine's seat-map cache), the same bytes go out again instead of serializing the
/// map anew. The body depends on nothing but the schedule and its seats.
#[derive(Default)]
pub struct SeatMapBodies(Mutex<HashMap<ScheduleId, (Vec<Seat>, Bytes)>>);

impl SeatMapBodies {
    /// The body for `seats` of `schedule`, made by `make` when it changed.
    fn body(
        &self,
        schedule: ScheduleId,
        seats: Vec<Seat>,
        make: impl FnOnce(&[Seat]) -> serde_json::Result<Bytes>,
    ) -> ApiResult<Bytes> {
        let lock = || self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((last, body)) = lock().get(&schedule)
            && *last == seats
        {
            return Ok(body.clone());
        }
        let body = make(&seats).map_err(|e| {
            tracing::error!(error = %e, "a seat map could not be serialized");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "an internal error occurred; it has been logged",
            )
        })?;
        let mut bodies = lock();
        if bodies.len() >= 10_000 {
            bodies.clear();
        }
        bodies.insert(schedule, (seats, body.clone()));
        Ok(body)
    }
}

// --- reservations -----------------------------------------------------------------

#[utoipa::path(
    post,
    path = "/v1/reservations",
    tag = "reservations",
    summary = "Hold a seat for the hold TTL",
    request_body = HoldRequest,
    security(("queue_token" = [])),
    responses(
        (status = 201, description = "The hold", body = ReservationDto),
        (status = 400, description = "Malformed body, parameter or header (`bad_request`)", body = ErrorBody),
        BadToken,
        (status = 403, description = "Not admitted yet (`not_admitted`, with `Retry-After`: when to poll the status)", body = ErrorBody),
        (status = 404, description = "Unknown concert or date (`unknown_concert`, `unknown_date`)", body = ErrorBody),
        (status = 409, description = "Seat taken, hold limit reached, date closed, or sold out: every seat of every bookable date is sold or held, answered without a write (`seat_taken`, `hold_limit`, `date_closed`, `sold_out`)", body = ErrorBody),
        (status = 422, description = "The seat is beyond the date's own seat count, which the message names (`invalid_seat`); the document bounds a seat by 1000, the most seats a date may have", body = ErrorBody),
        BodyErrors,
        CommonErrors
    )
)]
pub async fn hold<S: Store + Clone, C: Clock>(
    State(st): State<AppState<S, C>>,
    WriteGate(who): WriteGate,
    Json(req): Json<HoldRequest>,
) -> ApiResult<Response> {
    let concert = parse_concert(req.concert_id)?;
    let date = parse_date(&req.date)?;
    let seat = SeatNo::new(req.seat)
        .map_err(|e| ApiError::unprocessable("invalid_seat", e.to_string()))?;
    let schedule = st.booking.schedule_on(concert, date).await?;
    let hold = st.booking.hold(&who, schedule.id, seat).await?;
    Ok(json(StatusCode::CREATED, ReservationDto::from(&hold)))
}

#[utoipa::path(
    delete,
    path = "/v1/reservations/{id}",
    tag = "reservations",
    summary = "Cancel a hold",
    params(("id" = String, Path, description = "The reservation id (UUID)")),
    security(("queue_token" = [])),
    responses(
        (status = 200, description = "The cancelled reservation", body = ReservationDto),
        (status = 400, description = "Malformed body, parameter or header (`bad_request`)", body = ErrorBody),
        BadToken,
        (status = 403, description = "Not admitted yet (`not_admitted`, with `Retry-After`), or not the caller's reservation (`not_yours`)", body = ErrorBody),
        (status = 404, description = "Unknown reservation (`unknown_reservation`)", body = ErrorBody),
        (status = 409, description = "Already paid or cancelled, or not admitted and sold out (`already_paid`, `reservation_cancelled`, `sold_out`)", body = ErrorBody),
        (status = 410, description = "The hold expired (`hold_expired`)", body = ErrorBody),
        CommonErrors
    )
)]
pub async fn cancel<S: Store + Clone, C: Clock>(
    State(st): State<AppState<S, C>>,
    Gate(who): Gate,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let id = parse_reservation(&id)?;
    let hold = st.booking.cancel_hold(&who, id).await?;
    Ok(json(StatusCode::OK, ReservationDto::from(&hold)))
}

#[utoipa::path(
    get,
    path = "/v1/reservations",
    tag = "reservations",
    summary = "The caller's reservations, newest first, each in its state now (any valid token of the user, ended or not: what was bought stays readable)",
    security(("queue_token" = [])),
    responses(
        (status = 200, description = "Reservations", body = Vec<ReservationDto>),
        BadToken,
        CommonErrors
    )
)]
pub async fn reservations<S: Store + Clone, C: Clock>(
    State(st): State<AppState<S, C>>,
    Signed(claims): Signed,
) -> ApiResult<Response> {
    let list: Vec<ReservationDto> = st
        .booking
        .reservations(claims.user)
        .await?
        .iter()
        .map(Into::into)
        .collect();
    Ok(json(StatusCode::OK, list))
}

// --- wallet -----------------------------------------------------------------------

#[utoipa::path(
    get,
    path = "/v1/users/{user_id}/balance",
    tag = "wallet",
    summary = "The token user's balance",
    params(("user_id" = String, Path, description = "Must be the token's user")),
    security(("queue_token" = [])),
    responses(
        (status = 200, description = "Balance", body = BalanceDto),
        (status = 400, description = "Malformed body, parameter or header (`bad_request`)", body = ErrorBody),
        BadToken,
        (status = 403, description = "The path's user is not the token's user (`wrong_user`)", body = ErrorBody),
        CommonErrors
    )
)]
pub async fn balance<S: Store + Clone, C: Clock>(
    State(st): State<AppState<S, C>>,
    Signed(claims): Signed,
    Path(user): Path<String>,
) -> ApiResult<Response> {
    let user = same_user(&user, claims.user)?;
    let balance = st.booking.balance(user).await?;
    Ok(json(
        StatusCode::OK,
        BalanceDto {
            user_id: user.to_string(),
            balance: balance.minor_units(),
        },
    ))
}

#[utoipa::path(
    post,
    path = "/v1/users/{user_id}/charges",
    tag = "wallet",
    summary = "Top up the balance (a token whose place is live: waiting or admitted; an ended token is refused with `token_ended`, a lapsed one with `token_expired`)",
    request_body = ChargeRequest,
    params(("user_id" = String, Path, description = "Must be the token's user"), ("Idempotency-Key" = Option<String>, Header, description = "Makes a retry return the first answer instead of acting twice")),
    security(("queue_token" = [])),
    responses(
        (status = 201, description = "The ledger row of the charge", body = LedgerEntryDto), (status = 200, description = "A replay of an earlier charge with this Idempotency-Key", body = LedgerEntryDto),
        (status = 400, description = "Malformed body, parameter or header (`bad_request`)", body = ErrorBody),
        BadToken,
        (status = 403, description = "The path's user is not the token's user (`wrong_user`)", body = ErrorBody),
        (status = 422, description = "Invalid amount, balance limit, or Idempotency-Key reused for another request (`invalid_amount`, `balance_limit`, `idempotency_key_reused`)", body = ErrorBody),
        BodyErrors,
        CommonErrors
    )
)]
pub async fn charge<S: Store + Clone, C: Clock>(
    State(st): State<AppState<S, C>>,
    Signed(claims): Signed,
    Path(user): Path<String>,
    IdemKey(key): IdemKey,
    Json(req): Json<ChargeRequest>,
) -> ApiResult<Response> {
    same_user(&user, claims.user)?;
    let amount = Amount::new(req.amount)
        .map_err(|e| ApiError::unprocessable("invalid_amount", e.to_string()))?;
    let receipt = st.booking.charge_with_token(&claims, amount, key).await?;
    let status = if receipt.replayed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok(json(status, LedgerEntryDto::from(&receipt.entry)))
}

#[utoipa::path(
    get,
    path = "/v1/users/{user_id}/ledger",
    tag = "wallet",
    summary = "The token user's ledger, oldest first",
    params(("user_id" = String, Path, description = "Must be the token's user")),
    security(("queue_token" = [])),
    responses(
        (status = 200, description = "Ledger rows", body = Vec<LedgerEntryDto>),
        (status = 400, description = "Malformed body, parameter or header (`bad_request`)", body = ErrorBody),
        BadToken,
        (status = 403, description = "The path's user is not the token's user (`wrong_user`)", body = ErrorBody),
        CommonErrors
    )
)]
pub async fn ledger<S: Store + Clone, C: Clock>(
    State(st): State<AppState<S, C>>,
    Signed(claims): Signed,
    Path(user): Path<String>,
) -> ApiResult<Response> {
    let user = same_user(&user, claims.user)?;
    let rows: Vec<LedgerEntryDto> = st
        .booking
        .ledger(user)
        .await?
        .iter()
        .map(Into::into)
        .collect();
    Ok(json(StatusCode::OK, rows))
}

// --- payments ---------------------------------------------------------------------

#[utoipa::path(
    post,
    path = "/v1/payments",
    tag = "payments",
    summary = "Pay one held reservation, or several at once (all or nothing), from the balance; ends the token and releases the caller's other holds",
    request_body = PayRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes a retry return the first answer instead of acting twice (a retry names the same reservations, in any order)")),
    security(("queue_token" = [])),
    responses(
        (status = 201, description = "The payment: one record with every seat, one ledger row of the total", body = PaymentDto), (status = 200, description = "A replay of an earlier payment", body = PaymentDto),
        (status = 400, description = "Malformed body, parameter or header; no reservation, both fields, one named twice, or more than 50 (`bad_request`)", body = ErrorBody),
        BadToken,
        (status = 403, description = "Not admitted yet (`not_admitted`, with `Retry-After`), or not the caller's reservation (`not_yours`)", body = ErrorBody),
        (status = 404, description = "Unknown reservation (`unknown_reservation`)", body = ErrorBody),
        (status = 409, description = "Already paid or cancelled, the hold lapsed and the seat was sold since, or not admitted and sold out (`already_paid`, `reservation_cancelled`, `seat_sold`, `sold_out`)", body = ErrorBody),
        (status = 410, description = "The hold expired (`hold_expired`): hold the seat again", body = ErrorBody),
        (status = 422, description = "Insufficient balance for the total, or Idempotency-Key reused (`insufficient_balance`, `idempotency_key_reused`)", body = ErrorBody),
        BodyErrors,
        CommonErrors
    )
)]
pub async fn pay<S: Store + Clone, C: Clock>(
    State(st): State<AppState<S, C>>,
    Bearer(token): Bearer,
    IdemKey(key): IdemKey,
    Json(req): Json<PayRequest>,
) -> ApiResult<Response> {
    let ids = req
        .ids()
        .map_err(ApiError::bad_request)?
        .iter()
        .map(|id| parse_reservation(id))
        .collect::<ApiResult<Vec<_>>>()?;
    let receipt = st.booking.pay_all(&token, &ids, key).await?;
    let status = if receipt.replayed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok(json(status, PaymentDto::from(&receipt.payment)))
}

#[utoipa::path(
    get,
    path = "/v1/payments",
    tag = "payments",
    summary = "The caller's payments, newest first, each with its seats (any valid token of the user, ended or not)",
    security(("queue_token" = [])),
    responses(
        (status = 200, description = "Payments", body = Vec<PaymentDto>),
        BadToken,
        CommonErrors
    )
)]
pub async fn payments<S: Store + Clone, C: Clock>(
    State(st): State<AppState<S, C>>,
    Signed(claims): Signed,
) -> ApiResult<Response> {
    let list: Vec<PaymentDto> = st
        .booking
        .payments_of_token(&claims)
        .await?
        .iter()
        .map(Into::into)
        .collect();
    Ok(json(StatusCode::OK, list))
}

// --- operations -------------------------------------------------------------------

#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    summary = "Liveness",
    responses(
        (status = 200, description = "The process answers", body = String, content_type = "text/plain"),
        RateLimited
    )
)]
pub async fn healthz() -> &'static str {
    "ok"
}

#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    summary = "Readiness: the database answers",
    responses(
        (status = 200, description = "Ready", body = ReadyDto),
        CommonErrors
    )
)]
pub async fn readyz<S: Store + Clone, C: Clock>(
    State(st): State<AppState<S, C>>,
) -> ApiResult<Response> {
    st.booking.store().counters().await?;
    Ok(json(
        StatusCode::OK,
        ReadyDto {
            status: "ready".into(),
        },
    ))
}

#[cfg(test)]
mod tests {
    use booking_core::domain::{SeatState, Timestamp};

    use super::*;

    fn seats(held: Option<i64>) -> Vec<Seat> {
        (1..=3)
            .map(|n| Seat {
                no: SeatNo::new(n).unwrap(),
                price: Amount::new(100).unwrap(),
                state: match held {
                    Some(h) if h == n => SeatState::Held {
                        until: Timestamp::from_millis(1_000),
                    },
                    _ => SeatState::Free,
                },
            })
            .collect()
    }

    #[test]
    fn a_seat_map_body_is_made_again_only_when_a_seat_changed() {
        let bodies = SeatMapBodies::default();
        let id = ScheduleId::new(1).unwrap();
        let mut made = 0;
        let mut body = |s: Vec<Seat>| {
            bodies
                .body(id, s, |s| {
                    made += 1;
                    Ok(Bytes::from(format!("{made}:{}", s.len())))
                })
                .unwrap()
        };
        assert_eq!(body(seats(None)), "1:3");
        assert_eq!(body(seats(None)), "1:3", "same seats: the same body");
        assert_eq!(body(seats(Some(2))), "2:3", "a seat changed: a new body");
        assert_eq!(body(seats(Some(2))), "2:3");
        assert_eq!(body(seats(None)), "3:3");
    }
}
