//! One error type for every command: a one-line message and a stable exit code.
//! Every core error enum maps to exactly one exit code here, so scripts can rely on
//! them; `--help` and the README list them.

use booking_core::domain::ValueError;
use booking_core::{
    CancelError, CatalogError, ChargeError, ConfigError, GateError, HoldError, IssueError,
    PayError, ScheduleError, StatusError, StoreError, TokenError,
};
use booking_store::OpenError;

/// The exit codes. They are part of the command's interface: never renumber them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// The database cannot be opened or reached, or something failed inside.
    Failure = 1,
    /// A usage error (clap's own) or a value out of range.
    BadInput = 2,
    /// No such concert, date or reservation.
    NotFound = 3,
    /// The seat is taken, the date exists, the reservation is already paid or
    /// cancelled, an idempotency key was used for something else.
    Conflict = 4,
    /// A rule refused: the token is invalid, not admitted yet, expired or ended; the
    /// hold expired; the balance is insufficient; a limit is reached.
    Refused = 5,
}

/// The exit codes as `--help` shows them.
pub const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  failure: the database cannot be opened or reached, or an internal error
  2  bad input: a usage error, or a value out of range (seat 51, a negative
     amount or one above the largest charge, a malformed URL, date or id)
  3  not found: no such concert, date or reservation
  4  conflict: the seat is taken, the date exists, the reservation is already
     paid or cancelled, an idempotency key was used for another request
  5  refused: the queue token is invalid, not admitted yet, expired or ended;
     the hold expired; the balance is insufficient; a limit is reached";

/// A failed command: what to tell the user, and how to exit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CliError {
    /// The exit code.
    pub exit: Exit,
    /// One line for a human.
    pub message: String,
}

impl CliError {
    pub fn new(exit: Exit, message: impl Into<String>) -> Self {
        CliError {
            exit,
            message: message.into(),
        }
    }

    pub fn failure(message: impl Into<String>) -> Self {
        Self::new(Exit::Failure, message)
    }

    pub fn bad_input(message: impl Into<String>) -> Self {
        Self::new(Exit::BadInput, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(Exit::NotFound, message)
    }

    pub fn refused(message: impl Into<String>) -> Self {
        Self::new(Exit::Refused, message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(Exit::Conflict, message)
    }

    /// Names concert `id` in a "no such concert" refusal (the engine's message does
    /// not know which id was asked for).
    pub fn naming_concert(self, id: i64) -> Self {
        if self.exit == Exit::NotFound && self.message == "no such concert" {
            CliError::not_found(format!("no such concert {id}"))
        } else {
            self
        }
    }

    /// The message on one line, whatever a lower layer put in it.
    pub fn one_line(&self) -> String {
        self.message
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    }
}

pub type CliResult<T> = Result<T, CliError>;

fn with(exit: Exit, e: impl std::fmt::Display) -> CliError {
    CliError::new(exit, e.to_string())
}

impl From<StoreError> for CliError {
    fn from(e: StoreError) -> Self {
        with(Exit::Failure, e)
    }
}

impl From<OpenError> for CliError {
    fn from(e: OpenError) -> Self {
        match e {
            OpenError::BadUrl(_) => with(Exit::BadInput, e),
            OpenError::Unreachable(_) | OpenError::Migration(_) => with(Exit::Failure, e),
        }
    }
}

impl From<ValueError> for CliError {
    fn from(e: ValueError) -> Self {
        with(Exit::BadInput, e)
    }
}

impl From<ConfigError> for CliError {
    fn from(e: ConfigError) -> Self {
        with(Exit::BadInput, e)
    }
}

impl From<TokenError> for CliError {
    fn from(e: TokenError) -> Self {
        with(Exit::Refused, e)
    }
}

impl From<IssueError> for CliError {
    fn from(e: IssueError) -> Self {
        match e {
            IssueError::QueueFull { .. } => with(Exit::Refused, e),
            IssueError::Store(s) => s.into(),
        }
    }
}

impl From<StatusError> for CliError {
    fn from(e: StatusError) -> Self {
        match e {
            StatusError::Token(t) => t.into(),
            StatusError::UnknownToken => with(Exit::Refused, e),
            StatusError::Store(s) => s.into(),
        }
    }
}

impl From<GateError> for CliError {
    fn from(e: GateError) -> Self {
        match e {
            GateError::Token(t) => t.into(),
            GateError::Waiting { .. } => {
                let msg = format!("{e}; wait with `booking status --wait`");
                CliError::refused(msg)
            }
            GateError::SoldOut => with(Exit::Conflict, e),
            GateError::UnknownToken | GateError::Expired | GateError::Ended => {
                with(Exit::Refused, e)
            }
            GateError::Store(s) => s.into(),
        }
    }
}

impl From<CatalogError> for CliError {
    fn from(e: CatalogError) -> Self {
        match e {
            CatalogError::UnknownConcert | CatalogError::UnknownDate(_) => with(Exit::NotFound, e),
            CatalogError::SoldOut => with(Exit::Conflict, e),
            CatalogError::Store(s) => s.into(),
        }
    }
}

impl From<ScheduleError> for CliError {
    fn from(e: ScheduleError) -> Self {
        match e {
            ScheduleError::UnknownConcert => with(Exit::NotFound, e),
            ScheduleError::DateTaken(_) => with(Exit::Conflict, e),
            ScheduleError::InThePast
            | ScheduleError::TooFarAhead { .. }
            | ScheduleError::PriceAboveMaxBalance { .. } => with(Exit::BadInput, e),
            ScheduleError::Store(s) => s.into(),
        }
    }
}

impl From<HoldError> for CliError {
    fn from(e: HoldError) -> Self {
        match e {
            HoldError::UnknownSchedule => with(Exit::NotFound, e),
            HoldError::NoSuchSeat { .. } => with(Exit::BadInput, e),
            HoldError::SeatTaken(_) | HoldError::SoldOut => with(Exit::Conflict, e),
            HoldError::Closed | HoldError::HoldLimit { .. } | HoldError::SessionEnded => {
                with(Exit::Refused, e)
            }
            HoldError::Gate(g) => g.into(),
            HoldError::Store(s) => s.into(),
        }
    }
}

impl From<CancelError> for CliError {
    fn from(e: CancelError) -> Self {
        match e {
            CancelError::NotFound => with(Exit::NotFound, e),
            CancelError::NotYours => with(Exit::Refused, e),
            CancelError::NotHeld(_) => with(Exit::Conflict, e),
            CancelError::Store(s) => s.into(),
        }
    }
}

impl From<ChargeError> for CliError {
    fn from(e: ChargeError) -> Self {
        match e {
            // An amount out of range is bad input, like a negative one.
            ChargeError::AboveMaxCharge { .. } => with(Exit::BadInput, e),
            ChargeError::BalanceLimit { .. } => with(Exit::Refused, e),
            ChargeError::KeyReused => with(Exit::Conflict, e),
            ChargeError::Gate(g) => g.into(),
            ChargeError::Store(s) => s.into(),
        }
    }
}

impl From<PayError> for CliError {
    fn from(e: PayError) -> Self {
        match e {
            PayError::Gate(g) => g.into(),
            PayError::NotFound => with(Exit::NotFound, e),
            PayError::AlreadyPaid
            | PayError::Cancelled
            | PayError::KeyReused
            | PayError::SeatSold => with(Exit::Conflict, e),
            PayError::NotYours
            | PayError::HoldExpired
            | PayError::InsufficientBalance { .. }
            | PayError::SessionEnded => with(Exit::Refused, e),
            PayError::BadList(_) => with(Exit::BadInput, e),
            // The exit code of the refusal about one reservation of several, with
            // the message that names it.
            PayError::Reservation { ref error, .. } => CliError {
                message: e.to_string(),
                ..CliError::from((**error).clone())
            },
            PayError::Store(s) => s.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_one_line() {
        let e = CliError::failure("storage failure: a\nb\n  c");
        assert_eq!(e.one_line(), "storage failure: a b c");
    }

    #[test]
    fn each_kind_of_error_has_its_code() {
        assert_eq!(
            CliError::from(HoldError::UnknownSchedule).exit,
            Exit::NotFound
        );
        assert_eq!(
            CliError::from(OpenError::BadUrl("x".into())).exit,
            Exit::BadInput
        );
        assert_eq!(
            CliError::from(OpenError::Unreachable("x".into())).exit,
            Exit::Failure
        );
        assert_eq!(CliError::from(PayError::AlreadyPaid).exit, Exit::Conflict);
        assert_eq!(
            CliError::from(PayError::Gate(GateError::Expired)).exit,
            Exit::Refused
        );
        assert_eq!(
            CliError::from(ScheduleError::InThePast).exit,
            Exit::BadInput
        );
    }

    #[test]
    fn the_help_lists_every_code() {
        for code in [
            Exit::Failure,
            Exit::BadInput,
            Exit::NotFound,
            Exit::Conflict,
            Exit::Refused,
        ] {
            let line = format!("\n  {}  ", code as u8);
            assert!(EXIT_CODES.contains(&line), "{code:?} is documented");
        }
    }
}
