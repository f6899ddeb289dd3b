//! Domain types. Each one validates what it is built from, so a value in hand is
//! always a valid one: a [`SeatNo`] is never 0, an [`Amount`] is never negative.
//!
//! Domain types do not implement `Serialize`: wire formats (DTOs) live at the edges.

mod catalog;
mod event;
mod ids;
mod ledger;
mod money;
mod queue;
mod reservation;
mod time;
mod webhook;

pub use catalog::{
    Concert, ConcertName, NewConcert, NewSchedule, PriceList, Schedule, ScheduleSummary, Seat,
    SeatCount, SeatNo, SeatPrices, SeatState,
};
pub use event::{Event, EventData, EventId, EventType, SessionEndReason, UnknownEventType};
pub use ids::{
    ConcertId, IdempotencyKey, LedgerEntryId, PaymentId, QueueSeq, ReservationId, ScheduleId,
    TokenId, UserId,
};
pub use ledger::{LedgerEntry, LedgerKind, PaidSeat, Payment};
pub use money::{Amount, Money};
pub use queue::{
    ASSUMED_RATE_MILLI, AdmissionPolicy, EntryState, POLL_CEILING, POLL_FLOOR, QueueCounters,
    QueueEntry, poll_after,
};
pub use reservation::{Hold, HoldState};
pub use time::{Timestamp, parse_date};
pub use webhook::{
    ClaimedWebhook, MAX_WEBHOOK_TYPES, NewWebhook, RetryPolicy, SIGNATURE_HEADER, SignatureError,
    Webhook, WebhookId, WebhookSecret, WebhookStatus, WebhookUrl, WebhookValueError,
    parse_event_types, sign, verify_signature,
};

/// Why a value could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    /// A UUID id was the nil UUID.
    #[error("the {0} must not be the nil UUID")]
    NilId(&'static str),
    /// An id could not be parsed.
    #[error("the {0} is malformed")]
    MalformedId(&'static str),
    /// A numeric id was zero or negative.
    #[error("the {0} must be at least 1, got {1}")]
    NonPositiveId(&'static str, i64),
    /// A queue sequence number was 0 or too large.
    #[error("a queue sequence number is between 1 and 2^63-1, got {0}")]
    BadSequence(u64),
    /// A sum of money was negative.
    #[error("a sum of money must not be negative, got {0}")]
    NegativeMoney(i64),
    /// An amount was zero or negative.
    #[error("an amount must be at least 1, got {0}")]
    NonPositiveAmount(i64),
    /// A seat number was outside the allowed range.
    #[error("a seat number is between 1 and {1}, got {0}")]
    SeatOutOfRange(i64, u16),
    /// A seat count was outside the allowed range.
    #[error("a date has between 1 and {max} seats, got {0}", max = SeatCount::MAX)]
    SeatCountOutOfRange(i64),
    /// Per-seat prices did not match the seat count.
    #[error("{given} prices given for {seats} seats")]
    PriceCountMismatch {
        /// Prices given.
        given: usize,
        /// Seats of the schedule.
        seats: u16,
    },
    /// A concert name was empty, too long or had control characters.
    #[error("a concert name has between 1 and {max} characters and no control characters", max = ConcertName::MAX_CHARS)]
    BadConcertName,
    /// An idempotency key had the wrong length.
    #[error("an idempotency key has between 1 and 100 characters, got {0}")]
    IdempotencyKeyLength(usize),
    /// An idempotency key had a character that is not visible ASCII.
    #[error("an idempotency key may only hold visible ASCII characters")]
    IdempotencyKeyCharacters,
    /// A date not written `YYYY-MM-DD`, or a day that does not exist.
    #[error("a date is written YYYY-MM-DD and names a real day, got {0:?}")]
    BadDate(String),
    /// A date after 9999-12-31.
    #[error("dates run to 9999-12-31")]
    DateOutOfRange,
    /// An admission policy was out of bounds.
    #[error("invalid admission policy: {0}")]
    BadPolicy(&'static str),
}
