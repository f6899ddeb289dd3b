//! The error of each service operation: exactly what can go wrong, nothing more.
//! Only the HTTP layer turns these into status codes.

use std::time::Duration;

use chrono::NaiveDate;

use crate::domain::{Amount, HoldState, Money, ReservationId, SeatCount, SeatNo};
use crate::ports::StoreError;
use crate::token::TokenError;

/// Why a queue token could not be issued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IssueError {
    /// The waiting line is at its maximum length.
    #[error("the waiting room is full ({max} waiting); try again later")]
    QueueFull {
        /// The maximum length.
        max: u64,
    },
    /// Storage failure.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why the status of a token could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatusError {
    /// Forged, altered or malformed.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// Signed by this system, but its place is not in this database.
    #[error("the queue token is not known here")]
    UnknownToken,
    /// Storage failure.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why the queue gate refused a token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GateError {
    /// Forged, altered or malformed.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// Signed by this system, but its place is not in this database.
    #[error("the queue token is not known here")]
    UnknownToken,
    /// Still waiting to be admitted.
    #[error("not admitted yet: position {position} in the queue")]
    Waiting {
        /// People ahead, counting oneself (1 = next).
        position: u64,
        /// Estimated wait, when an admission rate is known.
        eta: Option<Duration>,
        /// When to ask again ([`crate::domain::poll_after`]).
        poll_after: Duration,
    },
    /// Not admitted, and nothing is left to sell: every seat of every bookable
    /// date is sold or held. Admission stops until a seat comes back.
    #[error("sold out: every seat of every bookable date is sold or held")]
    SoldOut,
    /// The session lapsed (never shown up within the grace, or past its TTL).
    #[error("the queue session has expired; take a new token")]
    Expired,
    /// The session was ended by a payment.
    #[error("the queue session has ended with a payment; take a new token")]
    Ended,
    /// Storage failure.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why a catalog read failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatalogError {
    /// No such concert.
    #[error("no such concert")]
    UnknownConcert,
    /// The concert has no schedule on that date.
    #[error("the concert has no date on {0}")]
    UnknownDate(NaiveDate),
    /// Every seat of every bookable date is sold or held (this instance's
    /// sold-out mark; the map was not read).
    #[error("sold out: every seat of every bookable date is sold or held")]
    SoldOut,
    /// Storage failure.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why a hold was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HoldError {
    /// No such schedule.
    #[error("no such concert date")]
    UnknownSchedule,
    /// The show has started: its seats are no longer sold.
    #[error("the date is no longer bookable")]
    Closed,
    /// The seat number is beyond the schedule's seats.
    #[error("seat must be between 1 and {count} on this date, got {seat}", count = .count.get())]
    NoSuchSeat {
        /// The seat asked for.
        seat: SeatNo,
        /// The schedule's seat count.
        count: SeatCount,
    },
    /// Sold or held by someone else.
    #[error("seat {0} is taken")]
    SeatTaken(SeatNo),
    /// Every seat of every bookable date is sold or held: nothing was written.
    #[error("sold out: every seat of every bookable date is sold or held")]
    SoldOut,
    /// The user already holds the maximum number of seats.
    #[error("you already hold {max} seats, the most allowed at once")]
    HoldLimit {
        /// The maximum.
        max: u32,
    },
    /// The session ended (paid or lapsed) after the gate let the request in.
    #[error("the queue session has ended")]
    SessionEnded,
    /// The session this instance remembered ([`crate::Booking::gate_for_write`])
    /// had ended: the full gate's refusal.
    #[error(transparent)]
    Gate(GateError),
    /// Storage failure.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why a cancel was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CancelError {
    /// No such reservation.
    #[error("no such reservation")]
    NotFound,
    /// Someone else's reservation.
    #[error("the reservation belongs to another user")]
    NotYours,
    /// Paid, cancelled or expired.
    #[error("the reservation is {}", state_word(*.0))]
    NotHeld(HoldState),
    /// Storage failure.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why a charge was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChargeError {
    /// The amount is above the per-charge maximum.
    #[error("a single charge may be at most {max}")]
    AboveMaxCharge {
        /// The maximum.
        max: Amount,
    },
    /// The balance would go above the maximum balance.
    #[error("the balance ({balance}) plus this charge would exceed the maximum balance {max}")]
    BalanceLimit {
        /// The balance now.
        balance: Money,
        /// The maximum.
        max: Money,
    },
    /// The idempotency key was already used for a different charge.
    #[error("the idempotency key was already used for a different request")]
    KeyReused,
    /// The token's place has ended (paid, or lapsed): it can read the wallet, not
    /// add to it.
    #[error(transparent)]
    Gate(#[from] GateError),
    /// Storage failure.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why a payment was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayError {
    /// The token did not pass the queue gate.
    #[error(transparent)]
    Gate(#[from] GateError),
    /// No such reservation.
    #[error("no such reservation")]
    NotFound,
    /// Someone else's reservation.
    #[error("the reservation belongs to another user")]
    NotYours,
    /// Already paid.
    #[error("the reservation is already paid")]
    AlreadyPaid,
    /// The hold expired before payment.
    #[error("the hold has expired; hold the seat again")]
    HoldExpired,
    /// The hold expired before payment, and the seat has since been sold.
    #[error("the hold has expired and the seat has since been sold")]
    SeatSold,
    /// The hold was cancelled.
    #[error("the reservation was cancelled")]
    Cancelled,
    /// The balance does not cover the price.
    #[error("insufficient balance: {balance} available, {price} needed")]
    InsufficientBalance {
        /// The balance.
        balance: Money,
        /// The price.
        price: Amount,
    },
    /// The session ended (paid or lapsed) after the gate let the request in.
    #[error("the queue session has ended")]
    SessionEnded,
    /// The idempotency key was already used for a different payment.
    #[error("the idempotency key was already used for a different request")]
    KeyReused,
    /// A payment of several reservations was refused because of one of them
    /// (`error` is `NotFound`, `NotYours`, `AlreadyPaid`, `HoldExpired`, `SeatSold`
    /// or `Cancelled`); nothing was paid.
    #[error("reservation {reservation}: {error}; nothing was paid")]
    Reservation {
        /// The reservation refused.
        reservation: ReservationId,
        /// Why.
        error: Box<PayError>,
    },
    /// The list of reservations to pay is empty, too long, or names one twice.
    #[error("{0}")]
    BadList(String),
    /// Storage failure.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl PayError {
    /// The refusal itself: the inner error of [`PayError::Reservation`], else `self`.
    pub fn cause(&self) -> &PayError {
        match self {
            PayError::Reservation { error, .. } => error.cause(),
            e => e,
        }
    }
}

/// Why a schedule could not be created.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// No such concert.
    #[error("no such concert")]
    UnknownConcert,
    /// The concert already has a schedule that day.
    #[error("the concert already has a date on {0}")]
    DateTaken(NaiveDate),
    /// The date is in the past.
    #[error("the date is in the past")]
    InThePast,
    /// The date is further ahead than [`NewSchedule::HORIZON`](crate::domain::NewSchedule::HORIZON).
    #[error("a date may be at most {} days ahead, until {latest}", crate::domain::NewSchedule::HORIZON.as_secs() / 86_400)]
    TooFarAhead {
        /// The last date that may be created now.
        latest: NaiveDate,
    },
    /// A seat's price is above the largest balance, so nobody could ever pay it.
    #[error("a seat's price is at most the largest balance a user may hold ({max}), got {price}")]
    PriceAboveMaxBalance {
        /// The price given.
        price: crate::domain::Amount,
        /// The largest balance ([`Config::max_balance`](crate::Config::max_balance)).
        max: crate::domain::Money,
    },
    /// Storage failure.
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn state_word(s: HoldState) -> &'static str {
    match s {
        HoldState::Held => "held",
        HoldState::Paid => "paid",
        HoldState::Cancelled => "cancelled",
        HoldState::Expired => "expired",
    }
}
