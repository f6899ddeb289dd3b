//! Identifiers. Each is a newtype, so a schedule id can never be passed where a
//! concert id is expected, and each validates what it is built from.

use std::fmt;
use std::str::FromStr;

use uuid::Uuid;

use super::ValueError;

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(Uuid);

        impl $name {
            /// A fresh random (version 4) id.
            pub fn random() -> Self {
                $name(Uuid::new_v4())
            }

            /// Wraps an existing UUID. The nil UUID is refused: it is what a
            /// forgotten field looks like, never a real id.
            pub fn from_uuid(id: Uuid) -> Result<Self, ValueError> {
                if id.is_nil() {
                    return Err(ValueError::NilId($what));
                }
                Ok($name(id))
            }

            /// The UUID inside.
            pub const fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl FromStr for $name {
            type Err = ValueError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let id = Uuid::parse_str(s.trim()).map_err(|_| ValueError::MalformedId($what))?;
                $name::from_uuid(id)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.hyphenated().fmt(f)
            }
        }
    };
}

uuid_id!(
    /// A user, known by the UUID the client brings.
    UserId,
    "user id"
);
uuid_id!(
    /// One issued queue token (its place in the waiting room).
    TokenId,
    "token id"
);
uuid_id!(
    /// A reservation: a hold on one seat, later paid, cancelled or expired.
    ReservationId,
    "reservation id"
);
uuid_id!(
    /// A payment.
    PaymentId,
    "payment id"
);

macro_rules! int_id {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(i64);

        impl $name {
            /// Wraps a database id; ids start at 1.
            pub fn new(id: i64) -> Result<Self, ValueError> {
                if id < 1 {
                    return Err(ValueError::NonPositiveId($what, id));
                }
                Ok($name(id))
            }

            /// The number inside.
            pub const fn get(self) -> i64 {
                self.0
            }
        }

        impl FromStr for $name {
            type Err = ValueError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let n: i64 = s.trim().parse().map_err(|_| ValueError::MalformedId($what))?;
                $name::new(n)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

int_id!(
    /// A concert.
    ConcertId,
    "concert id"
);
int_id!(
    /// A schedule: one date of a concert, with its own seats.
    ScheduleId,
    "schedule id"
);
int_id!(
    /// A row of the ledger.
    LedgerEntryId,
    "ledger entry id"
);

/// A place in the waiting room: tokens are numbered 1, 2, 3, ... in issue order,
/// with no gap and no repeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct QueueSeq(u64);

impl QueueSeq {
    /// The first place ever issued.
    pub const FIRST: QueueSeq = QueueSeq(1);

    /// Wraps a sequence number; sequences start at 1 and fit in an `i64`, the
    /// widest integer both databases store.
    pub fn new(n: u64) -> Result<Self, ValueError> {
        if n == 0 || n > i64::MAX as u64 {
            return Err(ValueError::BadSequence(n));
        }
        Ok(QueueSeq(n))
    }

    /// The number inside.
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for QueueSeq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A client-chosen key that makes a charge or a payment safe to retry: the same
/// key from the same user always yields the first result.
///
/// 1 to 100 visible ASCII characters (no spaces, no control characters).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// The longest key accepted.
    pub const MAX_LEN: usize = 100;

    /// Validates a key.
    pub fn new(key: impl Into<String>) -> Result<Self, ValueError> {
        let key = key.into();
        if key.is_empty() || key.len() > Self::MAX_LEN {
            return Err(ValueError::IdempotencyKeyLength(key.len()));
        }
        if !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ValueError::IdempotencyKeyCharacters);
        }
        Ok(IdempotencyKey(key))
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_ids_parse_and_refuse_nil_and_garbage() {
        let u = UserId::random();
        assert_eq!(u.to_string().parse::<UserId>().unwrap(), u);
        assert_eq!(
            "00000000-0000-0000-0000-000000000000".parse::<UserId>(),
            Err(ValueError::NilId("user id"))
        );
        assert_eq!(
            "not-a-uuid".parse::<ReservationId>(),
            Err(ValueError::MalformedId("reservation id"))
        );
    }

    #[test]
    fn int_ids_start_at_one() {
        assert!(ConcertId::new(0).is_err());
        assert!(ConcertId::new(-5).is_err());
        assert_eq!(ConcertId::new(1).unwrap().get(), 1);
        assert_eq!("42".parse::<ScheduleId>().unwrap().get(), 42);
        assert!("4x".parse::<ScheduleId>().is_err());
    }

    #[test]
    fn queue_seq_bounds() {
        assert!(QueueSeq::new(0).is_err());
        assert!(QueueSeq::new(i64::MAX as u64 + 1).is_err());
        assert_eq!(QueueSeq::new(7).unwrap().get(), 7);
    }

    #[test]
    fn idempotency_key_rules() {
        assert!(IdempotencyKey::new("order-17:retry").is_ok());
        assert!(IdempotencyKey::new("").is_err());
        assert!(IdempotencyKey::new("a b").is_err());
        assert!(IdempotencyKey::new("é").is_err());
        assert!(IdempotencyKey::new("x".repeat(100)).is_ok());
        assert!(IdempotencyKey::new("x".repeat(101)).is_err());
    }
}
