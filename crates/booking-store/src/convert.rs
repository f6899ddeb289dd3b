//! Conversions between stored primitives and domain types, shared by both dialects.
//!
//! A stored value that does not make a valid domain value means the database was
//! changed behind the adapters' back: that is a [`StoreError::Failed`], never a panic.

use booking_core::StoreError;
use booking_core::domain::{
    AdmissionPolicy, Amount, ConcertId, EntryState, HoldState, IdempotencyKey, LedgerEntryId,
    Money, PaymentId, QueueSeq, ReservationId, ScheduleId, SeatCount, SeatNo, Timestamp, TokenId,
    UserId, ValueError,
};
use std::time::Duration;
use uuid::Uuid;

/// Turns a stored value's validation error into a storage failure.
pub(crate) fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Failed(format!("stored {what} is invalid: {e}"))
}

/// Maps a sqlx error of SQLite: connection trouble and a busy database are
/// `Unavailable`, the rest `Failed`.
pub(crate) fn sqlite_err(e: sqlx::Error) -> StoreError {
    map_err(e, sqlite_busy)
}

/// Maps a sqlx error of PostgreSQL: connection trouble and shutdown are
/// `Unavailable`, the rest `Failed`.
pub(crate) fn pg_err(e: sqlx::Error) -> StoreError {
    map_err(e, pg_unavailable)
}

fn map_err(e: sqlx::Error, unavailable: fn(&str) -> bool) -> StoreError {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Tls(_) => StoreError::Unavailable(e.to_string()),
        sqlx::Error::Database(ref d) if d.code().is_some_and(|c| unavailable(&c)) => {
            StoreError::Unavailable(e.to_string())
        }
        other => StoreError::Failed(other.to_string()),
    }
}

/// SQLITE_BUSY (5), SQLITE_LOCKED (6), SQLITE_IOERR (10), SQLITE_FULL (13) and their
/// extended codes: the database is there but cannot take the write now.
fn sqlite_busy(code: &str) -> bool {
    code.parse::<i32>()
        .is_ok_and(|n| matches!(n & 0xff, 5 | 6 | 10 | 13))
}

/// SQLSTATE classes 08 (connection), 53 (resources), 57P (shutdown).
fn pg_unavailable(code: &str) -> bool {
    code.starts_with("08") || code.starts_with("53") || code.starts_with("57P")
}

/// Whether a sqlx error is a unique-constraint violation.
pub(crate) fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.kind() == sqlx::error::ErrorKind::UniqueViolation)
}

fn val<T>(what: &str, r: Result<T, ValueError>) -> Result<T, StoreError> {
    r.map_err(|e| corrupt(what, e))
}

pub(crate) fn user(u: Uuid) -> Result<UserId, StoreError> {
    val("user id", UserId::from_uuid(u))
}
pub(crate) fn token_id(u: Uuid) -> Result<TokenId, StoreError> {
    val("token id", TokenId::from_uuid(u))
}
pub(crate) fn reservation_id(u: Uuid) -> Result<ReservationId, StoreError> {
    val("reservation id", ReservationId::from_uuid(u))
}
pub(crate) fn payment_id(u: Uuid) -> Result<PaymentId, StoreError> {
    val("payment id", PaymentId::from_uuid(u))
}
pub(crate) fn concert_id(n: i64) -> Result<ConcertId, StoreError> {
    val("concert id", ConcertId::new(n))
}
pub(crate) fn schedule_id(n: i64) -> Result<ScheduleId, StoreError> {
    val("schedule id", ScheduleId::new(n))
}
pub(crate) fn ledger_id(n: i64) -> Result<LedgerEntryId, StoreError> {
    val("ledger id", LedgerEntryId::new(n))
}
pub(crate) fn seq(n: i64) -> Result<QueueSeq, StoreError> {
    val(
        "queue sequence",
        QueueSeq::new(u64::try_from(n).unwrap_or(0)),
    )
}
pub(crate) fn seat_no(n: i64) -> Result<SeatNo, StoreError> {
    val("seat number", SeatNo::new(n))
}
pub(crate) fn seat_count(n: i64) -> Result<SeatCount, StoreError> {
    val("seat count", SeatCount::new(n))
}
pub(crate) fn amount(n: i64) -> Result<Amount, StoreError> {
    val("amount", Amount::new(n))
}
pub(crate) fn money(n: i64) -> Result<Money, StoreError> {
    val("balance", Money::new(n))
}
pub(crate) fn key(k: Option<String>) -> Result<Option<IdempotencyKey>, StoreError> {
    k.map(|k| val("idempotency key", IdempotencyKey::new(k)))
        .transpose()
}
pub(crate) fn ts(ms: i64) -> Timestamp {
    Timestamp::from_millis(ms)
}
pub(crate) fn u64_of(n: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(n).map_err(|e| corrupt(what, e))
}

pub(crate) fn hold_state(s: &str) -> Result<HoldState, StoreError> {
    Ok(match s {
        "held" => HoldState::Held,
        "paid" => HoldState::Paid,
        "cancelled" => HoldState::Cancelled,
        "expired" => HoldState::Expired,
        other => return Err(corrupt("hold state", other)),
    })
}

pub(crate) fn entry_state(s: &str) -> Result<EntryState, StoreError> {
    Ok(match s {
        "live" => EntryState::Live,
        "done" => EntryState::Done,
        "expired" => EntryState::Expired,
        other => return Err(corrupt("queue entry state", other)),
    })
}

pub(crate) fn policy(
    interval_ms: i64,
    batch: Option<i64>,
    max_active: Option<i64>,
) -> Result<AdmissionPolicy, StoreError> {
    let to_u32 = |n: i64| u32::try_from(n).map_err(|e| corrupt("admission policy", e));
    val(
        "admission policy",
        AdmissionPolicy::new(
            Duration::from_millis(u64_of(interval_ms, "policy interval")?),
            batch.map(to_u32).transpose()?,
            max_active.map(to_u32).transpose()?,
        ),
    )
}

/// The stored form of a policy: interval in ms, batch, capacity.
pub(crate) fn policy_parts(p: &AdmissionPolicy) -> (i64, Option<i64>, Option<i64>) {
    (
        p.interval().as_millis() as i64,
        p.batch().map(i64::from),
        p.max_active().map(i64::from),
    )
}

/// Converts a `u64` the domain guarantees fits in an `i64`.
pub(crate) fn i64_of(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A stored row of `payment_seats`: one of the other seats of a payment of several
/// holds, in the order asked.
pub(crate) struct OtherSeat {
    pub payment: PaymentId,
    pub seat: booking_core::domain::PaidSeat,
}

/// A payment's row, read with `payment_cols`, as a payment of its first seat alone:
/// [`with_seats`] adds the others.
#[allow(clippy::too_many_arguments)]
pub(crate) fn payment(
    id: Uuid,
    reservation: Uuid,
    user: Uuid,
    schedule: i64,
    seat: i64,
    amount: i64,
    paid_at: i64,
    key: Option<String>,
) -> Result<booking_core::domain::Payment, StoreError> {
    let reservation = reservation_id(reservation)?;
    let schedule = schedule_id(schedule)?;
    let seat = seat_no(seat)?;
    let amount = self::amount(amount)?;
    Ok(booking_core::domain::Payment {
        id: payment_id(id)?,
        reservation,
        user: self::user(user)?,
        schedule,
        seat,
        amount,
        paid_at: ts(paid_at),
        key: self::key(key)?,
        seats: vec![booking_core::domain::PaidSeat {
            reservation,
            schedule,
            seat,
            price: amount,
        }],
    })
}

/// Gives each payment its other seats (`others`, in position order), and its first
/// seat the price that is left of the total.
pub(crate) fn with_seats(
    payments: &mut [booking_core::domain::Payment],
    others: Vec<OtherSeat>,
) -> Result<(), StoreError> {
    for o in others {
        let Some(p) = payments.iter_mut().find(|p| p.id == o.payment) else {
            continue;
        };
        p.seats.push(o.seat);
    }
    for p in payments.iter_mut().filter(|p| p.seats.len() > 1) {
        let rest = p.seats[1..]
            .iter()
            .try_fold(0_i64, |sum, s| sum.checked_add(s.price.minor_units()));
        let first = rest
            .and_then(|r| p.amount.minor_units().checked_sub(r))
            .ok_or_else(|| corrupt("payment total", p.id))?;
        p.seats[0].price = amount(first)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_codes_are_unavailable() {
        assert!(sqlite_busy("5"));
        assert!(sqlite_busy("517"));
        assert!(sqlite_busy("6"));
        assert!(sqlite_busy("13"));
        assert!(sqlite_busy("266"));
        assert!(!sqlite_busy("19"));
        assert!(!sqlite_busy("2067"));
        assert!(pg_unavailable("08006"));
        assert!(pg_unavailable("57P01"));
        assert!(!pg_unavailable("23505"));
        assert!(!pg_unavailable("40001"));
    }

    #[test]
    fn invalid_stored_values_fail_without_panicking() {
        assert!(hold_state("gone").is_err());
        assert!(seat_no(0).is_err());
        assert!(seq(-1).is_err());
        assert!(money(-5).is_err());
        assert!(policy(5, Some(1), None).is_err());
        assert_eq!(
            policy_parts(&policy(1000, Some(50), Some(500)).unwrap()),
            (1000, Some(50), Some(500))
        );
    }
}
