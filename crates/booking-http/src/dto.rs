//! Wire formats. Domain types do not implement `Serialize`; these do, and they are
//! the documented API.

use booking_core::domain::{
    Concert, Hold, HoldState, LedgerEntry, LedgerKind, POLL_CEILING, Payment, ScheduleSummary,
    Seat, SeatState, Timestamp,
};
use booking_core::{QueueStatus, TokenClaims};
use serde::{Deserialize, Serialize};

fn time(t: Timestamp) -> String {
    t.to_string()
}

/// `POST /v1/queue/tokens`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    /// The user's UUID.
    pub user_id: String,
}

/// Where a token stands.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct QueueDto {
    /// The signed token (only when it is issued).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// The user.
    pub user_id: String,
    /// The place in line (issue order).
    pub seq: u64,
    /// `waiting`, `sold_out` (waiting, and every seat of every bookable date is sold
    /// or held: admission stops), `active`, `expired` or `done`.
    pub status: String,
    /// While waiting: 1 = next.
    pub position: Option<u64>,
    /// While waiting: estimated seconds to admission, when a rate is known.
    pub eta_secs: Option<u64>,
    /// While active: when the session (or the show-up grace) ends.
    pub active_until: Option<String>,
    /// When to ask again, in milliseconds. While waiting: two thirds of the
    /// expected wait, at least 250 and at most 20,000 (far back asks rarely, near the
    /// front often; a waiting answer also says it in `Retry-After`, in whole seconds
    /// rounded up). For every other status: 20,000 (nothing there needs a poll).
    pub poll_after_ms: u64,
    /// In status answers: whether admission is paused (a waiting user is not
    /// admitted until an operator resumes it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<bool>,
}

impl QueueDto {
    /// The view of a token's claims and status.
    pub fn new(claims: &TokenClaims, status: QueueStatus, token: Option<String>) -> Self {
        let (name, position, eta_secs, active_until) = match status {
            QueueStatus::Waiting { position, eta, .. } => (
                "waiting",
                Some(position),
                eta.map(|d| d.as_secs_f64().ceil() as u64),
                None,
            ),
            QueueStatus::Active { until } => ("active", None, None, Some(time(until))),
            QueueStatus::SoldOut => ("sold_out", None, None, None),
            QueueStatus::Expired => ("expired", None, None, None),
            QueueStatus::Done => ("done", None, None, None),
        };
        let poll_after = match status {
            QueueStatus::Waiting { poll_after, .. } => poll_after,
            _ => POLL_CEILING,
        };
        QueueDto {
            token,
            user_id: claims.user.to_string(),
            seq: claims.seq.get(),
            status: name.into(),
            position,
            eta_secs,
            active_until,
            poll_after_ms: u64::try_from(poll_after.as_millis()).unwrap_or(u64::MAX),
            paused: None,
        }
    }

    /// The same view, saying whether admission is paused.
    pub fn with_paused(mut self, paused: bool) -> Self {
        self.paused = Some(paused);
        self
    }
}

/// The `Retry-After` value (whole seconds, rounded up) of a waiting answer, or
/// `None` for any other status.
pub fn retry_after(status: QueueStatus) -> Option<u64> {
    match status {
        QueueStatus::Waiting { poll_after, .. } => Some(whole_secs(poll_after)),
        _ => None,
    }
}

/// Whole seconds, rounded up.
pub fn whole_secs(d: std::time::Duration) -> u64 {
    d.as_millis().div_ceil(1_000).try_into().unwrap_or(u64::MAX)
}

/// A concert.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct ConcertDto {
    /// Its id.
    pub id: i64,
    /// Its name.
    pub name: String,
}

impl From<&Concert> for ConcertDto {
    fn from(c: &Concert) -> Self {
        ConcertDto {
            id: c.id.get(),
            name: c.name.to_string(),
        }
    }
}

/// A date of a concert with its seat counts.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct DateDto {
    /// `YYYY-MM-DD` (UTC).
    pub date: String,
    /// The schedule's id.
    pub schedule_id: i64,
    /// When the show starts.
    pub starts_at: String,
    /// Seats that can be held now.
    pub seats_free: u32,
    /// Seats under a live hold.
    pub seats_held: u32,
    /// Seats sold.
    pub seats_sold: u32,
}

impl From<&ScheduleSummary> for DateDto {
    fn from(s: &ScheduleSummary) -> Self {
        DateDto {
            date: s.schedule.date().to_string(),
            schedule_id: s.schedule.id.get(),
            starts_at: time(s.schedule.starts_at),
            seats_free: s.n_free,
            seats_held: s.n_held,
            seats_sold: s.n_sold,
        }
    }
}

/// One seat of a seat map.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct SeatDto {
    /// 1..=seat count.
    pub seat: u16,
    /// In minor units.
    pub price: i64,
    /// `free`, `held` or `sold`.
    pub state: String,
    /// When a hold lapses.
    pub held_until: Option<String>,
}

impl From<&Seat> for SeatDto {
    fn from(s: &Seat) -> Self {
        let (state, held_until) = match s.state {
            SeatState::Free => ("free", None),
            SeatState::Held { until } => ("held", Some(time(until))),
            SeatState::Sold => ("sold", None),
        };
        SeatDto {
            seat: s.no.get(),
            price: s.price.minor_units(),
            state: state.into(),
            held_until,
        }
    }
}

/// The seats of one date.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct SeatMapDto {
    /// The concert.
    pub concert_id: i64,
    /// The date.
    pub date: String,
    /// The schedule's id.
    pub schedule_id: i64,
    /// Every seat, by number.
    pub seats: Vec<SeatDto>,
}

/// `POST /v1/reservations`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HoldRequest {
    /// The concert.
    #[serde(deserialize_with = "whole::int")]
    pub concert_id: i64,
    /// The show's date, exactly `YYYY-MM-DD` (UTC).
    #[schema(pattern = "^[0-9]{4}-[0-9]{2}-[0-9]{2}$", example = "2026-12-24")]
    pub date: String,
    /// 1..=seat count.
    #[serde(deserialize_with = "whole::int")]
    pub seat: i64,
}

fn hold_state(s: HoldState) -> &'static str {
    match s {
        HoldState::Held => "held",
        HoldState::Paid => "paid",
        HoldState::Cancelled => "cancelled",
        HoldState::Expired => "expired",
    }
}

/// A reservation.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct ReservationDto {
    /// Its id.
    pub reservation_id: String,
    /// The schedule (date).
    pub schedule_id: i64,
    /// The seat.
    pub seat: u16,
    /// The price, fixed when held.
    pub price: i64,
    /// `held`, `paid`, `cancelled` or `expired`.
    pub state: String,
    /// When it was taken.
    pub created_at: String,
    /// When an unpaid hold lapses.
    pub expires_at: String,
}

impl From<&Hold> for ReservationDto {
    fn from(h: &Hold) -> Self {
        ReservationDto {
            reservation_id: h.id.to_string(),
            schedule_id: h.schedule.get(),
            seat: h.seat.get(),
            price: h.price.minor_units(),
            state: hold_state(h.state).into(),
            created_at: time(h.created_at),
            expires_at: time(h.expires_at),
        }
    }
}

/// `POST /v1/users/{user_id}/charges`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChargeRequest {
    /// In minor units, at least 1.
    #[serde(deserialize_with = "whole::int")]
    pub amount: i64,
}

/// A balance.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct BalanceDto {
    /// The user.
    pub user_id: String,
    /// In minor units.
    pub balance: i64,
}

/// A ledger row.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct LedgerEntryDto {
    /// Its id, increasing.
    pub id: i64,
    /// `charge` or `payment`.
    pub kind: String,
    /// Signed change in minor units.
    pub delta: i64,
    /// The balance right after.
    pub balance_after: i64,
    /// When.
    pub at: String,
    /// The payment, for a payment row.
    pub payment_id: Option<String>,
}

impl From<&LedgerEntry> for LedgerEntryDto {
    fn from(e: &LedgerEntry) -> Self {
        let (kind, payment_id) = match e.kind {
            LedgerKind::Charge => ("charge", None),
            LedgerKind::Payment(p) => ("payment", Some(p.to_string())),
        };
        LedgerEntryDto {
            id: e.id.get(),
            kind: kind.into(),
            delta: e.delta(),
            balance_after: e.balance_after.minor_units(),
            at: time(e.at),
            payment_id,
        }
    }
}

/// `POST /v1/payments`: exactly one of `reservation_id` (one held reservation) and
/// `reservation_ids` (several of the caller's held reservations, paid at once, all
/// or nothing). Its OpenAPI schema is written by hand (below): one of the two
/// shapes, each closed.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PayRequest {
    /// The held reservation to pay.
    pub reservation_id: Option<String>,
    /// Several held reservations to pay in one payment: 1 to 50, each once.
    pub reservation_ids: Option<Vec<String>>,
}

impl PayRequest {
    /// The reservations named, in order, or what is wrong with the body.
    pub fn ids(self) -> Result<Vec<String>, String> {
        match (self.reservation_id, self.reservation_ids) {
            (Some(one), None) => Ok(vec![one]),
            (None, Some(many)) if many.is_empty() => {
                Err("reservation_ids: name at least one reservation".into())
            }
            (None, Some(many)) if many.len() > booking_core::MAX_PAID_AT_ONCE => Err(format!(
                "reservation_ids: at most {} reservations can be paid at once",
                booking_core::MAX_PAID_AT_ONCE
            )),
            (None, Some(many)) => Ok(many),
            (Some(_), Some(_)) => Err("give reservation_id or reservation_ids, not both".into()),
            (None, None) => Err("missing field `reservation_id` (or `reservation_ids`)".into()),
        }
    }
}

impl utoipa::PartialSchema for PayRequest {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{
            AdditionalProperties, ArrayBuilder, ObjectBuilder, OneOfBuilder, SchemaFormat, Type,
        };
        let uuid = || {
            ObjectBuilder::new()
                .schema_type(Type::String)
                .format(Some(SchemaFormat::Custom("uuid".into())))
        };
        let closed = || Some(AdditionalProperties::FreeForm(false));
        let one = ObjectBuilder::new()
            .property(
                "reservation_id",
                uuid().description(Some("The held reservation to pay")),
            )
            .required("reservation_id")
            .additional_properties(closed());
        let many = ObjectBuilder::new()
            .property(
                "reservation_ids",
                ArrayBuilder::new()
                    .items(uuid())
                    .min_items(Some(1))
                    .max_items(Some(booking_core::MAX_PAID_AT_ONCE))
                    .unique_items(true)
                    .description(Some(
                        "Several of the caller's held reservations, paid in one payment, \
                         all or nothing",
                    )),
            )
            .required("reservation_ids")
            .additional_properties(closed());
        OneOfBuilder::new()
            .item(one)
            .item(many)
            .description(Some(
                "One held reservation (`reservation_id`) or several (`reservation_ids`)",
            ))
            .into()
    }
}

impl utoipa::ToSchema for PayRequest {}

/// One seat of a payment.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct PaidSeatDto {
    /// The reservation paid.
    pub reservation_id: String,
    /// The schedule (date).
    pub schedule_id: i64,
    /// The seat, now the payer's.
    pub seat: u16,
    /// Its price.
    pub price: i64,
}

/// A payment of one or several holds: its first seat (`reservation_id`,
/// `schedule_id`, `seat`), the total, and every seat in `seats`.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct PaymentDto {
    /// Its id.
    pub payment_id: String,
    /// The (first) reservation paid.
    pub reservation_id: String,
    /// The schedule (date) of the first seat.
    pub schedule_id: i64,
    /// The first seat, now the payer's.
    pub seat: u16,
    /// What was debited: the total of the seats.
    pub amount: i64,
    /// When.
    pub paid_at: String,
    /// Every seat paid, in the order asked (one for a single hold).
    #[serde(default)]
    pub seats: Vec<PaidSeatDto>,
}

impl From<&Payment> for PaymentDto {
    fn from(p: &Payment) -> Self {
        PaymentDto {
            payment_id: p.id.to_string(),
            reservation_id: p.reservation.to_string(),
            schedule_id: p.schedule.get(),
            seat: p.seat.get(),
            amount: p.amount.minor_units(),
            paid_at: time(p.paid_at),
            seats: p
                .seats
                .iter()
                .map(|s| PaidSeatDto {
                    reservation_id: s.reservation.to_string(),
                    schedule_id: s.schedule.get(),
                    seat: s.seat.get(),
                    price: s.price.minor_units(),
                })
                .collect(),
        }
    }
}

/// `GET /readyz`.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct ReadyDto {
    /// `ready`.
    pub status: String,
}

/// Integer fields of request bodies. JSON Schema's `integer` is any number whose
/// fraction is zero, so `5.0` is as much an integer as `5` to the OpenAPI document
/// and to the clients generated from it: these take both, and refuse a fraction
/// or a number out of the field's range with serde's usual "expected ..." message.
pub(crate) mod whole {
    use std::fmt;
    use std::marker::PhantomData;

    use serde::de::{self, Deserialize, Deserializer, Unexpected, Visitor};

    /// An integer type a body field may have.
    pub trait Int: Sized + TryFrom<i64> + TryFrom<u64> {
        /// What the field expects, in words.
        const EXPECTED: &'static str;
    }

    impl Int for i64 {
        const EXPECTED: &'static str = "an integer";
    }

    impl Int for u64 {
        const EXPECTED: &'static str = "a non-negative integer";
    }

    impl Int for u32 {
        const EXPECTED: &'static str = "a non-negative integer";
    }

    /// One integer, written with or without a zero fraction.
    pub struct Whole<T>(pub T);

    struct WholeVisitor<T>(PhantomData<T>);

    impl<T: Int> Visitor<'_> for WholeVisitor<T> {
        type Value = Whole<T>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(T::EXPECTED)
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            T::try_from(v)
                .map(Whole)
                .map_err(|_| E::invalid_value(Unexpected::Signed(v), &self))
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            T::try_from(v)
                .map(Whole)
                .map_err(|_| E::invalid_value(Unexpected::Unsigned(v), &self))
        }

        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
            const TWO_63: f64 = 9_223_372_036_854_775_808.0;
            let refuse = || E::invalid_value(Unexpected::Float(v), &self);
            if v.fract() != 0.0 || !v.is_finite() {
                return Err(refuse());
            }
            // Within these bounds the cast is exact: the value is a whole number.
            if (-TWO_63..0.0).contains(&v) {
                T::try_from(v as i64).map(Whole).map_err(|_| refuse())
            } else if (0.0..2.0 * TWO_63).contains(&v) {
                T::try_from(v as u64).map(Whole).map_err(|_| refuse())
            } else {
                Err(refuse())
            }
        }
    }

    impl<'de, T: Int> Deserialize<'de> for Whole<T> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_any(WholeVisitor(PhantomData))
        }
    }

    /// A required integer field.
    pub fn int<'de, D: Deserializer<'de>, T: Int>(d: D) -> Result<T, D::Error> {
        Whole::deserialize(d).map(|w| w.0)
    }

    /// An optional integer field (`null` or left out: `None`).
    pub fn opt<'de, D: Deserializer<'de>, T: Int>(d: D) -> Result<Option<T>, D::Error> {
        Option::<Whole<T>>::deserialize(d).map(|o| o.map(|w| w.0))
    }

    /// An optional list of integers.
    pub fn opt_list<'de, D: Deserializer<'de>, T: Int>(d: D) -> Result<Option<Vec<T>>, D::Error> {
        Option::<Vec<Whole<T>>>::deserialize(d)
            .map(|o| o.map(|l| l.into_iter().map(|w| w.0).collect()))
    }
}
