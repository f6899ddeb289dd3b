//! Stored rows to domain values, once for both dialects.
//!
//! Both adapters read the same column lists (see `columns`) into the same domain
//! types. What differs between SQLite and PostgreSQL is only how one column is read:
//! the error mapping of the dialect, and booleans (SQLite stores 0 or 1).
//! [`StoredRow`] says that for each dialect's row type; the mappers below are written
//! once against it.

use booking_core::StoreError;
use booking_core::domain::{
    Concert, ConcertName, Hold, LedgerEntry, LedgerKind, PaidSeat, Payment, QueueCounters,
    QueueEntry, Schedule, Seat, SeatState, Timestamp,
};
use sqlx::Row;
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use uuid::Uuid;

use crate::convert as cv;

/// One column of a stored row, read as a primitive, with the dialect's error mapping.
pub(crate) trait StoredRow {
    /// An integer column.
    fn int(&self, col: &str) -> Result<i64, StoreError>;
    /// An integer column that may be NULL.
    fn opt_int(&self, col: &str) -> Result<Option<i64>, StoreError>;
    /// A text column.
    fn text(&self, col: &str) -> Result<String, StoreError>;
    /// A text column that may be NULL.
    fn opt_text(&self, col: &str) -> Result<Option<String>, StoreError>;
    /// A UUID column.
    fn uuid(&self, col: &str) -> Result<Uuid, StoreError>;
    /// A UUID column that may be NULL.
    fn opt_uuid(&self, col: &str) -> Result<Option<Uuid>, StoreError>;
    /// A boolean column.
    fn flag(&self, col: &str) -> Result<bool, StoreError>;
}

/// The typed getters of [`StoredRow`] for one sqlx row type; `$err` maps its errors.
macro_rules! stored_row_getters {
    ($err:path) => {
        fn int(&self, col: &str) -> Result<i64, StoreError> {
            self.try_get(col).map_err($err)
        }
        fn opt_int(&self, col: &str) -> Result<Option<i64>, StoreError> {
            self.try_get(col).map_err($err)
        }
        fn text(&self, col: &str) -> Result<String, StoreError> {
            self.try_get(col).map_err($err)
        }
        fn opt_text(&self, col: &str) -> Result<Option<String>, StoreError> {
            self.try_get(col).map_err($err)
        }
        fn uuid(&self, col: &str) -> Result<Uuid, StoreError> {
            self.try_get(col).map_err($err)
        }
        fn opt_uuid(&self, col: &str) -> Result<Option<Uuid>, StoreError> {
            self.try_get(col).map_err($err)
        }
    };
}

impl StoredRow for SqliteRow {
    stored_row_getters!(cv::sqlite_err);

    /// SQLite has no boolean type: 0 is false, anything else true.
    fn flag(&self, col: &str) -> Result<bool, StoreError> {
        Ok(self.int(col)? != 0)
    }
}

impl StoredRow for PgRow {
    stored_row_getters!(cv::pg_err);

    fn flag(&self, col: &str) -> Result<bool, StoreError> {
        self.try_get(col).map_err(cv::pg_err)
    }
}

pub(crate) fn concert_of(r: &impl StoredRow) -> Result<Concert, StoreError> {
    let name = r.text("name")?;
    Ok(Concert {
        id: cv::concert_id(r.int("id")?)?,
        name: ConcertName::new(&name).map_err(|e| cv::corrupt("concert name", e))?,
    })
}

pub(crate) fn schedule_of(r: &impl StoredRow) -> Result<Schedule, StoreError> {
    Ok(Schedule {
        id: cv::schedule_id(r.int("id")?)?,
        concert: cv::concert_id(r.int("concert_id")?)?,
        starts_at: cv::ts(r.int("starts_at")?),
        seat_count: cv::seat_count(r.int("seat_count")?)?,
    })
}

/// A row of `seats` (`seat_no, price, sold, hold_until`) as the seat stands at `now`.
pub(crate) fn seat_of(r: &impl StoredRow, now: Timestamp) -> Result<Seat, StoreError> {
    Ok(Seat {
        no: cv::seat_no(r.int("seat_no")?)?,
        price: cv::amount(r.int("price")?)?,
        state: SeatState::at(r.flag("sold")?, r.opt_int("hold_until")?.map(cv::ts), now),
    })
}

/// A hold in the shape of `hold_cols`.
pub(crate) fn hold_of(r: &impl StoredRow) -> Result<Hold, StoreError> {
    let state = r.text("state")?;
    Ok(Hold {
        id: cv::reservation_id(r.uuid("id")?)?,
        user: cv::user(r.uuid("user_id")?)?,
        schedule: cv::schedule_id(r.int("schedule_id")?)?,
        seat: cv::seat_no(r.int("seat_no")?)?,
        price: cv::amount(r.int("price")?)?,
        created_at: cv::ts(r.int("created_at")?),
        expires_at: cv::ts(r.int("expires_at")?),
        state: cv::hold_state(&state)?,
    })
}

/// The hold in a row whose hold columns may all be NULL (an outer join).
pub(crate) fn maybe_hold(r: &impl StoredRow) -> Result<Option<Hold>, StoreError> {
    r.opt_uuid("id")?.map(|_| hold_of(r)).transpose()
}

/// A queue entry in the shape of `entry_cols`.
pub(crate) fn entry_of(r: &impl StoredRow) -> Result<QueueEntry, StoreError> {
    let state = r.text("state")?;
    let opt_ts =
        |c: &str| -> Result<Option<Timestamp>, StoreError> { Ok(r.opt_int(c)?.map(cv::ts)) };
    Ok(QueueEntry {
        seq: cv::seq(r.int("seq")?)?,
        user: cv::user(r.uuid("user_id")?)?,
        token_id: cv::token_id(r.uuid("token_id")?)?,
        issued_at: cv::ts(r.int("issued_at")?),
        state: cv::entry_state(&state)?,
        admitted_at: opt_ts("admitted_at")?,
        seen_at: opt_ts("seen_at")?,
        expires_at: opt_ts("expires_at")?,
    })
}

/// The row of `queue_counters`.
pub(crate) fn counters_of(r: &impl StoredRow) -> Result<QueueCounters, StoreError> {
    Ok(QueueCounters {
        last_seq: cv::u64_of(r.int("last_seq")?, "last_seq")?,
        serving: cv::u64_of(r.int("serving")?, "serving")?,
        version: cv::u64_of(r.int("version")?, "version")?,
        last_tick_at: r.opt_int("last_tick_at")?.map(cv::ts),
        paused: r.flag("paused")?,
        policy: cv::policy(
            r.int("interval_ms")?,
            r.opt_int("batch")?,
            r.opt_int("max_active")?,
        )?,
        admit_rate_milli: cv::u64_of(r.int("admit_rate_milli")?, "rate")?,
    })
}

/// A ledger row in the shape of `ledger_cols`.
pub(crate) fn ledger_of(r: &impl StoredRow) -> Result<LedgerEntry, StoreError> {
    let kind = r.text("kind")?;
    let payment = r.opt_uuid("payment_id")?;
    let kind = match (kind.as_str(), payment) {
        ("charge", None) => LedgerKind::Charge,
        ("payment", Some(p)) => LedgerKind::Payment(cv::payment_id(p)?),
        (k, _) => return Err(cv::corrupt("ledger kind", k)),
    };
    Ok(LedgerEntry {
        id: cv::ledger_id(r.int("id")?)?,
        user: cv::user(r.uuid("user_id")?)?,
        kind,
        amount: cv::amount(r.int("amount")?)?,
        balance_after: cv::money(r.int("balance_after")?)?,
        at: cv::ts(r.int("at")?),
        key: cv::key(r.opt_text("idem_key")?)?,
    })
}

/// A payment in the shape of `payment_cols`, with its first seat only (see
/// [`cv::with_seats`]).
pub(crate) fn payment_of(r: &impl StoredRow) -> Result<Payment, StoreError> {
    cv::payment(
        r.uuid("id")?,
        r.uuid("reservation_id")?,
        r.uuid("user_id")?,
        r.int("schedule_id")?,
        r.int("seat_no")?,
        r.int("amount")?,
        r.int("paid_at")?,
        r.opt_text("idem_key")?,
    )
}

/// A row of `payment_seats`.
pub(crate) fn other_seat_of(r: &impl StoredRow) -> Result<cv::OtherSeat, StoreError> {
    Ok(cv::OtherSeat {
        payment: cv::payment_id(r.uuid("payment_id")?)?,
        seat: PaidSeat {
            reservation: cv::reservation_id(r.uuid("reservation_id")?)?,
            schedule: cv::schedule_id(r.int("schedule_id")?)?,
            seat: cv::seat_no(r.int("seat_no")?)?,
            price: cv::amount(r.int("price")?)?,
        },
    })
}
