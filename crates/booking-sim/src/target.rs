//! What a virtual user talks to: the operations of the booking flow, as one trait
//! implemented in process ([`crate::inproc`]) and over HTTP ([`crate::http`]).
//!
//! Every operation answers either a value, a [`Refusal`] (an expected outcome of the
//! flow, such as a seat taken by someone else) or a [`Failure`] (something went
//! wrong: the outcome of a write is then unknown).

use std::fmt;
use std::future::Future;
use std::time::Duration;

use booking_core::domain::{AdmissionPolicy, Timestamp, UserId};
use chrono::NaiveDate;
use uuid::Uuid;

/// A queue token and what it says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ticket {
    /// The signed token.
    pub token: String,
    /// Its user.
    pub user: UserId,
    /// Its place in line (issue order).
    pub seq: u64,
    /// Which server instance this user talks to (always 0 in process).
    pub node: usize,
    /// Where the token stood when it was issued, when the answer said (it may
    /// already say when to ask again, or that the sale is sold out).
    pub answer: Option<QueueState>,
}

/// Where a token stands, as a poll answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueState {
    /// Still waiting; 1 is next.
    Waiting {
        /// Place in line.
        position: u64,
        /// When to ask again, when the server says (`poll_after_ms`, or a
        /// `Retry-After` header).
        poll_after: Option<Duration>,
    },
    /// Nothing is left to sell: a final answer.
    SoldOut,
    /// Admitted and live.
    Active,
    /// Lapsed.
    Expired,
    /// Ended by a payment.
    Done,
}

/// One bookable date.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateInfo {
    /// The date.
    pub date: NaiveDate,
    /// The schedule's id.
    pub schedule: i64,
    /// Seats free now.
    pub n_free: u32,
}

/// The state of one seat on a seat map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeatView {
    /// Can be held.
    Free,
    /// Under a live hold.
    Held,
    /// Sold.
    Sold,
}

/// A held seat, as acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HoldAck {
    /// The reservation.
    pub reservation: Uuid,
    /// The schedule.
    pub schedule: i64,
    /// The seat.
    pub seat: u16,
    /// The price fixed by the hold.
    pub price: i64,
    /// When the server took it (ms since the epoch).
    pub created_at_ms: i64,
    /// When it lapses unpaid (ms since the epoch).
    pub expires_at_ms: i64,
}

/// A charge, as acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChargeAck {
    /// The balance right after.
    pub balance_after: i64,
    /// Whether this was a replay of an earlier charge with the same key.
    pub replayed: bool,
}

/// A payment, as acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PayAck {
    /// The payment.
    pub payment: Uuid,
    /// The reservation paid.
    pub reservation: Uuid,
    /// The schedule.
    pub schedule: i64,
    /// The seat, now the payer's.
    pub seat: u16,
    /// What was debited.
    pub amount: i64,
    /// When (ms since the epoch).
    pub paid_at_ms: i64,
    /// Whether this was a replay of the first payment with the same key.
    pub replayed: bool,
}

/// A date created by the simulator's operator side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateCreated {
    /// The date.
    pub date: NaiveDate,
    /// The schedule's id.
    pub schedule: i64,
}

/// The waiting room, as the operator sees it.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct QueueSample {
    /// Places issued so far.
    pub issued: u64,
    /// The serving counter (admitted so far).
    pub serving: u64,
    /// Waiting users.
    pub waiting: u64,
    /// Users with an active session.
    pub active: u64,
    /// The capacity in force, if any.
    pub max_active: Option<u32>,
    /// Observed admissions per second.
    pub admit_rate_per_sec: f64,
}

/// An expected answer of the flow that is not a success.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Refusal {
    /// Someone else holds or bought the seat: a conflict.
    SeatTaken,
    /// The user is at the cap of live holds.
    HoldLimit,
    /// Not admitted yet.
    NotAdmitted,
    /// The token lapsed.
    TokenExpired,
    /// The token was ended by a payment.
    TokenEnded,
    /// The hold lapsed before the payment.
    HoldExpired,
    /// The hold was already paid.
    AlreadyPaid,
    /// The hold was cancelled.
    Cancelled,
    /// The balance does not cover the price.
    InsufficientBalance,
    /// The show started.
    DateClosed,
    /// No such date (any more).
    UnknownDate,
    /// The waiting line is full.
    QueueFull,
    /// Nothing is left to sell.
    SoldOut,
}

impl Refusal {
    /// A stable name (the HTTP API's error code where there is one).
    pub fn name(self) -> &'static str {
        match self {
            Refusal::SeatTaken => "seat_taken",
            Refusal::HoldLimit => "hold_limit",
            Refusal::NotAdmitted => "not_admitted",
            Refusal::TokenExpired => "token_expired",
            Refusal::TokenEnded => "token_ended",
            Refusal::HoldExpired => "hold_expired",
            Refusal::AlreadyPaid => "already_paid",
            Refusal::Cancelled => "reservation_cancelled",
            Refusal::InsufficientBalance => "insufficient_balance",
            Refusal::DateClosed => "date_closed",
            Refusal::UnknownDate => "unknown_date",
            Refusal::QueueFull => "queue_full",
            Refusal::SoldOut => "sold_out",
        }
    }

    /// The refusal an HTTP error code names, if it is one.
    pub fn from_code(code: &str) -> Option<Refusal> {
        Some(match code {
            "seat_taken" => Refusal::SeatTaken,
            "hold_limit" => Refusal::HoldLimit,
            "not_admitted" => Refusal::NotAdmitted,
            "token_expired" => Refusal::TokenExpired,
            "token_ended" => Refusal::TokenEnded,
            "hold_expired" => Refusal::HoldExpired,
            "already_paid" => Refusal::AlreadyPaid,
            "reservation_cancelled" => Refusal::Cancelled,
            "insufficient_balance" => Refusal::InsufficientBalance,
            "date_closed" => Refusal::DateClosed,
            "unknown_date" => Refusal::UnknownDate,
            "queue_full" => Refusal::QueueFull,
            "sold_out" => Refusal::SoldOut,
            _ => return None,
        })
    }
}

/// What kind of failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FailureKind {
    /// 429: a rate limit.
    RateLimited,
    /// The service or its database is unavailable (503).
    Unavailable,
    /// An internal error (500, or a storage failure in process).
    Internal,
    /// The connection failed.
    Transport,
    /// No answer in time.
    Timeout,
    /// An answer the simulator could not read.
    Protocol,
    /// An answer the flow never expects (a 4xx that is a bug of the simulator or
    /// of the service).
    Unexpected,
}

impl FailureKind {
    /// A stable name.
    pub fn name(self) -> &'static str {
        match self {
            FailureKind::RateLimited => "rate_limited",
            FailureKind::Unavailable => "unavailable",
            FailureKind::Internal => "internal",
            FailureKind::Transport => "transport",
            FailureKind::Timeout => "timeout",
            FailureKind::Protocol => "protocol",
            FailureKind::Unexpected => "unexpected",
        }
    }
}

/// A failure with its details.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// What kind.
    pub kind: FailureKind,
    /// For people.
    pub detail: String,
}

/// Why an operation did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpError {
    /// An expected outcome of the flow.
    Refused(Refusal),
    /// Something went wrong; the outcome of a write is unknown.
    Failed(Failure),
}

impl OpError {
    /// A failure of `kind`.
    pub fn failed(kind: FailureKind, detail: impl Into<String>) -> Self {
        OpError::Failed(Failure {
            kind,
            detail: detail.into(),
        })
    }
}

impl fmt::Display for OpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpError::Refused(r) => write!(f, "refused: {}", r.name()),
            OpError::Failed(x) => write!(f, "{}: {}", x.kind.name(), x.detail),
        }
    }
}

impl std::error::Error for OpError {}

/// The result of an operation.
pub type OpResult<T> = Result<T, OpError>;

/// The booking flow's operations, for one kind of target. Implementations are
/// shared by every virtual user (`Arc`), so they must be cheap to call concurrently.
pub trait Target: Send + Sync + 'static {
    /// Takes a place in the waiting room; `slot` spreads users over instances.
    fn issue(&self, user: UserId, slot: usize) -> impl Future<Output = OpResult<Ticket>> + Send;
    /// Polls a token's place.
    fn status(&self, t: &Ticket) -> impl Future<Output = OpResult<QueueState>> + Send;
    /// Each route's latency as the servers measured it, when they tell (over
    /// HTTP: their `/metrics`); empty otherwise.
    fn server_latency(&self) -> impl Future<Output = Vec<crate::report::RouteLatency>> + Send {
        async { Vec::new() }
    }
    /// Whether waiting users should hold a pushed status stream ([`Target::watch`])
    /// instead of polling.
    fn pushes(&self) -> bool {
        false
    }
    /// Opens the token's pushed status stream and reads its first status. Only
    /// called when [`Target::pushes`].
    fn watch(
        &self,
        t: &Ticket,
    ) -> impl Future<Output = OpResult<(QueueState, crate::http::StatusStream)>> + Send {
        let _ = t;
        async {
            Err(OpError::failed(
                FailureKind::Protocol,
                "this target has no pushed status",
            ))
        }
    }
    /// The bookable dates of a concert.
    fn dates(
        &self,
        t: &Ticket,
        concert: i64,
    ) -> impl Future<Output = OpResult<Vec<DateInfo>>> + Send;
    /// The seat map of one date, seat 1 first.
    fn seats(
        &self,
        t: &Ticket,
        concert: i64,
        date: NaiveDate,
    ) -> impl Future<Output = OpResult<Vec<SeatView>>> + Send;
    /// Holds one seat.
    fn hold(
        &self,
        t: &Ticket,
        concert: i64,
        date: NaiveDate,
        seat: u16,
    ) -> impl Future<Output = OpResult<HoldAck>> + Send;
    /// Tops up the token's user's balance, with an idempotency key.
    fn charge(
        &self,
        t: &Ticket,
        amount: i64,
        key: &str,
    ) -> impl Future<Output = OpResult<ChargeAck>> + Send;
    /// Pays a hold, with an idempotency key.
    fn pay(
        &self,
        t: &Ticket,
        reservation: Uuid,
        key: &str,
    ) -> impl Future<Output = OpResult<PayAck>> + Send;
    /// Cancels a hold.
    fn cancel(&self, t: &Ticket, reservation: Uuid) -> impl Future<Output = OpResult<()>> + Send;

    /// Operator: creates a concert.
    fn create_concert(&self, name: &str) -> impl Future<Output = OpResult<i64>> + Send;
    /// Operator: creates a date of `seats` seats at `price` each.
    fn create_date(
        &self,
        concert: i64,
        starts_at: Timestamp,
        seats: u16,
        price: i64,
    ) -> impl Future<Output = OpResult<DateCreated>> + Send;
    /// Operator: sets the admission policy.
    fn set_policy(&self, policy: AdmissionPolicy) -> impl Future<Output = OpResult<()>> + Send;
    /// Operator: the waiting room's counters.
    fn queue_sample(&self) -> impl Future<Output = OpResult<QueueSample>> + Send;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_names_round_trip_through_codes() {
        for r in [
            Refusal::SeatTaken,
            Refusal::HoldLimit,
            Refusal::NotAdmitted,
            Refusal::TokenExpired,
            Refusal::TokenEnded,
            Refusal::HoldExpired,
            Refusal::AlreadyPaid,
            Refusal::Cancelled,
            Refusal::InsufficientBalance,
            Refusal::DateClosed,
            Refusal::UnknownDate,
            Refusal::QueueFull,
            Refusal::SoldOut,
        ] {
            assert_eq!(Refusal::from_code(r.name()), Some(r));
        }
        assert_eq!(Refusal::from_code("internal"), None);
    }
}
