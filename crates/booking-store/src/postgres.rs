//! The PostgreSQL adapter: any number of server processes, each with its own pool,
//! share one database, and every invariant holds under READ COMMITTED.
//!
//! # How correctness is kept
//!
//! Each write is one SQL statement whose conditions are re-checked by PostgreSQL on
//! the newest version of every row it writes or locks (an `UPDATE` or
//! `SELECT ... FOR NO KEY UPDATE` that had to wait for a row lock re-evaluates its
//! `WHERE` on the row as the other transaction left it). Data-modifying sub-statements
//! are chained: each is gated on the previous one with `EXISTS (SELECT 1 FROM prev)`,
//! an uncorrelated sub-select that PostgreSQL evaluates once, before the gated
//! statement touches any row. That fixes the order in which rows are locked and keeps
//! a later step from running when an earlier one found nothing.
//!
//! The hold and the payment are PL/pgSQL functions instead (introduced by
//! `migrations/postgres/0002_write_functions.sql`, the current versions in
//! `0004_holds_live_on_their_seat.sql`), called in one autocommit
//! round trip. Under READ COMMITTED each statement of a function takes a fresh
//! snapshot, so a check made after a lock sees everything committed before the lock
//! was granted: a hold counts the user's live holds exactly after locking the session
//! row (no version of it is written), and a payment writes its rows with conditional
//! updates in the lock order below, with no separate locking pass. Refusals are named
//! from reads before anything is written; a condition that fails after a write raises
//! SQLSTATE `BK001`, which rolls the whole call back, and the call is run again.
//!
//! Holds and payments that arrive while others are under way in the same process are
//! committed together (`group_commit`): one call of a batch function (migration
//! 0005) runs them in order, each deciding exactly as the single-write function
//! would, in one round trip and one commit. A batch locks a write's rows with
//! `SKIP LOCKED` before running it and never waits for a lock: a write whose rows
//! another transaction holds is sent back and runs alone, so batches take no part in
//! the lock order below.
//!
//! Rows are always locked in this order, so two transactions never wait on each other
//! in a cycle:
//!
//! 1. the counters row (issue, advance);
//! 2. a queue entry (hold, pay, issue);
//! 3. a seat row, then the reservation that holds it (hold, pay, cancel, sweep; a
//!    `held` reservation is changed only by a transaction holding its seat's lock);
//! 4. a wallet (pay, charge).
//!
//! Deadlocks and serialization failures are still retried a bounded number of times
//! (with the order above they should not happen: none showed in stress runs of
//! several pools), as are the unique violations that mean "another request won a
//! race": the retried statement sees the winner and answers from it.

use std::str::FromStr;
use std::time::Duration;

use booking_core::StoreError;
use booking_core::domain::{
    AdmissionPolicy, Amount, Concert, ConcertId, ConcertName, Hold, HoldState, IdempotencyKey,
    LedgerEntry, LedgerKind, Money, NewConcert, NewSchedule, PaidSeat, Payment, QueueCounters,
    QueueEntry, QueueSeq, ReservationId, Schedule, ScheduleId, ScheduleSummary, Seat, SeatState,
    Timestamp, UserId,
};
use booking_core::ports::{
    Advance, CancelRepoError, CatalogRepo, ChargeReceipt, ChargeRepoError, ChargeRequest,
    CreateScheduleError, HoldRepo, HoldRepoError, IssueRepoError, IssueRequest, NewHold,
    PayManyRepoError, PayManyRequest, PayRepoError, PayRequest, PaymentRepo, QueueRepo, WalletRepo,
};
use chrono::NaiveDate;
use sqlx::error::ErrorKind;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions, PgRow};
use sqlx::{Connection, Executor, Postgres, Row};
use uuid::Uuid;

mod group_commit;
use group_commit::{GroupCommit, HotWrite};

use crate::OpenError;
use crate::columns::{
    entry_cols, hold_cols, ledger_cols, payment_cols, schedule_cols, seat_hold_cols,
};
use crate::convert::{self as cv, is_unique_violation, pg_err as db};

/// How many times a write is tried when it lost a race that a retry resolves.
const MAX_ATTEMPTS: u32 = 8;

/// How long a request waits for a pooled connection.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);

/// How long opening the store waits for the server to answer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The PostgreSQL store. Clones share the pool.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
    /// Runs the hot writes (holds, payments), batching those that arrive together.
    hot: GroupCommit,
}

impl PgStore {
    /// Connects to the database at `url` (`postgres://user:password@host:port/db`),
    /// applies the migrations, and returns the store with a pool of at most
    /// `max_connections` connections.
    ///
    /// # Errors
    /// [`OpenError::BadUrl`] when the URL is not a `postgres://` URL,
    /// [`OpenError::Unreachable`] when the server cannot be reached or refuses the
    /// connection, [`OpenError::Migration`] when a migration fails.
    pub async fn open(url: &str, max_connections: u32) -> Result<Self, OpenError> {
        let scheme = url.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
        if !matches!(scheme.as_deref(), Some("postgres" | "postgresql")) {
            return Err(OpenError::BadUrl(
                "expected a postgres:// or postgresql:// URL".to_owned(),
            ));
        }
        let options =
            PgConnectOptions::from_str(url).map_err(|e| OpenError::BadUrl(e.to_string()))?;
        // One direct connection first: it fails at once when the server refuses (a
        // pool would keep retrying until its acquire timeout), and it runs the
        // migrations (which take an advisory lock, so processes opening together
        // migrate once).
        let mut conn = tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(&options))
            .await
            .map_err(|_| {
                OpenError::Unreachable(format!("no answer within {} s", CONNECT_TIMEOUT.as_secs()))
            })?
            .map_err(|e| OpenError::Unreachable(e.to_string()))?;
        sqlx::migrate!("../../migrations/postgres")
            .run(&mut conn)
            .await
            .map_err(|e| OpenError::Migration(e.to_string()))?;
        let _ = conn.close().await;
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(ACQUIRE_TIMEOUT)
            // No ping before each use: it would double the round trips of every
            // one-statement method. A connection the server dropped fails its next
            // statement instead (`StoreError::Unavailable`) and leaves the pool.
            .test_before_acquire(false)
            .connect_lazy_with(options);
        let hot = GroupCommit::start(pool.clone());
        Ok(PgStore { pool, hot })
    }

    /// Whether the database answers.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when it does not.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(drop)
            .map_err(db)
    }

    /// The connection pool (benchmarks compare against raw statements).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// What the group commit of holds and payments has done since the store opened.
    pub fn group_commit_stats(&self) -> crate::GroupCommitStats {
        self.hot.stats()
    }

    /// Sets the most hot writes (issues, holds, payments) under way at once in
    /// this store value; beyond it one is refused at once as unavailable (HTTP
    /// 503). [`crate::DEFAULT_MAX_UNDER_WAY`] unless set.
    pub fn set_max_hot_writes(&self, n: u64) {
        self.hot.set_limit(n);
    }

    /// For tests: with `on`, every hot write (issue, hold, payment) goes through the
    /// group commit's batch functions (`booking_issue_batch`, `booking_hold_batch`,
    /// `booking_pay_batch`), as a batch of one when no other is under way, so that
    /// tests run the batch SQL every time, not only when writes happen to overlap.
    /// Off by default; a server has no reason to turn it on.
    pub fn set_always_batch(&self, on: bool) {
        self.hot.set_always_batch(on);
    }

    /// Closes the pool.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

// ---------------------------------------------------------------------------------
// Errors

/// A deadlock or serialization failure: the transaction was rolled back and may be
/// tried again.
fn retryable(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if matches!(d.code().as_deref(), Some("40001" | "40P01")))
}

/// A unique violation of the named constraint or index.
fn unique_on(e: &sqlx::Error, constraint: &str) -> bool {
    matches!(e, sqlx::Error::Database(d)
        if d.kind() == ErrorKind::UniqueViolation && d.constraint() == Some(constraint))
}

fn is_fk_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.kind() == ErrorKind::ForeignKeyViolation)
}

fn contention(what: &str) -> StoreError {
    StoreError::Unavailable(format!(
        "{what}: still losing races after {MAX_ATTEMPTS} attempts"
    ))
}

// ---------------------------------------------------------------------------------
// Row mapping

fn concert_of(r: &PgRow) -> Result<Concert, StoreError> {
    let name: String = r.try_get("name").map_err(db)?;
    Ok(Concert {
        id: cv::concert_id(r.try_get("id").map_err(db)?)?,
        name: ConcertName::new(&name).map_err(|e| cv::corrupt("concert name", e))?,
    })
}

fn schedule_of(r: &PgRow) -> Result<Schedule, StoreError> {
    Ok(Schedule {
        id: cv::schedule_id(r.try_get("id").map_err(db)?)?,
        concert: cv::concert_id(r.try_get("concert_id").map_err(db)?)?,
        starts_at: cv::ts(r.try_get("starts_at").map_err(db)?),
        seat_count: cv::seat_count(r.try_get("seat_count").map_err(db)?)?,
    })
}

fn hold_of(r: &PgRow) -> Result<Hold, StoreError> {
    let state: String = r.try_get("state").map_err(db)?;
    Ok(Hold {
        id: cv::reservation_id(r.try_get("id").map_err(db)?)?,
        user: cv::user(r.try_get("user_id").map_err(db)?)?,
        schedule: cv::schedule_id(r.try_get("schedule_id").map_err(db)?)?,
        seat: cv::seat_no(r.try_get("seat_no").map_err(db)?)?,
        price: cv::amount(r.try_get("price").map_err(db)?)?,
        created_at: cv::ts(r.try_get("created_at").map_err(db)?),
        expires_at: cv::ts(r.try_get("expires_at").map_err(db)?),
        state: cv::hold_state(&state)?,
    })
}

/// The hold in a row whose hold columns may all be NULL (an outer join).
fn maybe_hold(r: &PgRow) -> Result<Option<Hold>, StoreError> {
    let id: Option<Uuid> = r.try_get("id").map_err(db)?;
    id.map(|_| hold_of(r)).transpose()
}

fn entry_of(r: &PgRow) -> Result<QueueEntry, StoreError> {
    let state: String = r.try_get("state").map_err(db)?;
    let opt_ts = |c: &str| -> Result<Option<Timestamp>, StoreError> {
        Ok(r.try_get::<Option<i64>, _>(c).map_err(db)?.map(cv::ts))
    };
    Ok(QueueEntry {
        seq: cv::seq(r.try_get("seq").map_err(db)?)?,
        user: cv::user(r.try_get("user_id").map_err(db)?)?,
        token_id: cv::token_id(r.try_get("token_id").map_err(db)?)?,
        issued_at: cv::ts(r.try_get("issued_at").map_err(db)?),
        state: cv::entry_state(&state)?,
        admitted_at: opt_ts("admitted_at")?,
        seen_at: opt_ts("seen_at")?,
        expires_at: opt_ts("expires_at")?,
    })
}

fn counters_of(r: &PgRow) -> Result<QueueCounters, StoreError> {
    Ok(QueueCounters {
        last_seq: cv::u64_of(r.try_get("last_seq").map_err(db)?, "last_seq")?,
        serving: cv::u64_of(r.try_get("serving").map_err(db)?, "serving")?,
        version: cv::u64_of(r.try_get("version").map_err(db)?, "version")?,
        last_tick_at: r
            .try_get::<Option<i64>, _>("last_tick_at")
            .map_err(db)?
            .map(cv::ts),
        paused: r.try_get("paused").map_err(db)?,
        policy: cv::policy(
            r.try_get("interval_ms").map_err(db)?,
            r.try_get("batch").map_err(db)?,
            r.try_get("max_active").map_err(db)?,
        )?,
        admit_rate_milli: cv::u64_of(r.try_get("admit_rate_milli").map_err(db)?, "rate")?,
    })
}

fn ledger_of(r: &PgRow) -> Result<LedgerEntry, StoreError> {
    let kind: String = r.try_get("kind").map_err(db)?;
    let payment: Option<Uuid> = r.try_get("payment_id").map_err(db)?;
    let kind = match (kind.as_str(), payment) {
        ("charge", None) => LedgerKind::Charge,
        ("payment", Some(p)) => LedgerKind::Payment(cv::payment_id(p)?),
        (k, _) => return Err(cv::corrupt("ledger kind", k)),
    };
    Ok(LedgerEntry {
        id: cv::ledger_id(r.try_get("id").map_err(db)?)?,
        user: cv::user(r.try_get("user_id").map_err(db)?)?,
        kind,
        amount: cv::amount(r.try_get("amount").map_err(db)?)?,
        balance_after: cv::money(r.try_get("balance_after").map_err(db)?)?,
        at: cv::ts(r.try_get("at").map_err(db)?),
        key: cv::key(r.try_get("idem_key").map_err(db)?)?,
    })
}

fn payment_of(r: &PgRow) -> Result<Payment, StoreError> {
    cv::payment(
        r.try_get("id").map_err(db)?,
        r.try_get("reservation_id").map_err(db)?,
        r.try_get("user_id").map_err(db)?,
        r.try_get("schedule_id").map_err(db)?,
        r.try_get("seat_no").map_err(db)?,
        r.try_get("amount").map_err(db)?,
        r.try_get("paid_at").map_err(db)?,
        r.try_get("idem_key").map_err(db)?,
    )
}

fn other_seat_of(r: &PgRow) -> Result<cv::OtherSeat, StoreError> {
    Ok(cv::OtherSeat {
        payment: cv::payment_id(r.try_get("payment_id").map_err(db)?)?,
        seat: PaidSeat {
            reservation: cv::reservation_id(r.try_get("reservation_id").map_err(db)?)?,
            schedule: cv::schedule_id(r.try_get("schedule_id").map_err(db)?)?,
            seat: cv::seat_no(r.try_get("seat_no").map_err(db)?)?,
            price: cv::amount(r.try_get("price").map_err(db)?)?,
        },
    })
}

/// The other seats of payments of several holds, of one payment (`by_user` false)
/// or of one user, in position order.
async fn other_seats(
    pool: &PgPool,
    by_user: bool,
    id: Uuid,
) -> Result<Vec<cv::OtherSeat>, StoreError> {
    let sql = if by_user {
        "SELECT payment_id, reservation_id, schedule_id, seat_no, price FROM payment_seats
         WHERE user_id = $1 ORDER BY payment_id, position"
    } else {
        "SELECT payment_id, reservation_id, schedule_id, seat_no, price FROM payment_seats
         WHERE payment_id = $1 ORDER BY position"
    };
    let rows = sqlx::query(sql)
        .bind(id)
        .fetch_all(pool)
        .await
        .map_err(db)?;
    rows.iter().map(other_seat_of).collect()
}

fn seat_state(sold: bool, hold_until: Option<i64>, now: Timestamp) -> SeatState {
    if sold {
        return SeatState::Sold;
    }
    match hold_until {
        Some(until) if now.as_millis() < until => SeatState::Held {
            until: cv::ts(until),
        },
        _ => SeatState::Free,
    }
}

fn flag(r: &PgRow, c: &str) -> Result<bool, StoreError> {
    r.try_get(c).map_err(db)
}

// ---------------------------------------------------------------------------------
// Catalog

impl CatalogRepo for PgStore {
    async fn create_concert(&self, new: NewConcert) -> Result<Concert, StoreError> {
        let row = sqlx::query("INSERT INTO concerts (name) VALUES ($1) RETURNING id, name")
            .bind(new.name.as_str())
            .fetch_one(&self.pool)
            .await
            .map_err(db)?;
        concert_of(&row)
    }

    /// One statement: the schedule and its seats. An unknown concert fails the
    /// foreign key, a taken date the unique (concert, date); either way nothing is
    /// written.
    async fn create_schedule(&self, new: NewSchedule) -> Result<Schedule, CreateScheduleError> {
        let prices: Vec<i64> = new
            .seat_count()
            .seats()
            .map(|no| new.prices().price_of(no).minor_units())
            .collect();
        let inserted = sqlx::query(concat!(
            "WITH sch AS (
                INSERT INTO schedules (concert_id, starts_at, date, seat_count)
                VALUES ($1, $2, $3::date, $4)
                RETURNING ",
            schedule_cols!(),
            "
            ), st AS (
                INSERT INTO seats (schedule_id, seat_no, price)
                SELECT sch.id, p.n, p.price
                FROM sch, unnest($5::bigint[]) WITH ORDINALITY AS p (price, n)
            )
            SELECT ",
            schedule_cols!(),
            " FROM sch"
        ))
        .bind(new.concert().get())
        .bind(new.starts_at().as_millis())
        .bind(new.date().to_string())
        .bind(i64::from(new.seat_count().get()))
        .bind(prices)
        .fetch_one(&self.pool)
        .await;
        match inserted {
            Ok(row) => Ok(schedule_of(&row)?),
            Err(e) if is_fk_violation(&e) => Err(CreateScheduleError::UnknownConcert),
            Err(e) if is_unique_violation(&e) => Err(CreateScheduleError::DateTaken(new.date())),
            Err(e) => Err(db(e).into()),
        }
    }

    async fn concerts(&self) -> Result<Vec<Concert>, StoreError> {
        let rows = sqlx::query("SELECT id, name FROM concerts ORDER BY id")
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        rows.iter().map(concert_of).collect()
    }

    async fn concert(&self, id: ConcertId) -> Result<Option<Concert>, StoreError> {
        let row = sqlx::query("SELECT id, name FROM concerts WHERE id = $1")
            .bind(id.get())
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        row.as_ref().map(concert_of).transpose()
    }

    async fn schedule(&self, id: ScheduleId) -> Result<Option<Schedule>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            schedule_cols!(),
            " FROM schedules WHERE id = $1"
        ))
        .bind(id.get())
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        row.as_ref().map(schedule_of).transpose()
    }

    async fn schedule_on(
        &self,
        concert: ConcertId,
        date: NaiveDate,
    ) -> Result<Option<Schedule>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            schedule_cols!(),
            " FROM schedules WHERE concert_id = $1 AND date = $2::date"
        ))
        .bind(concert.get())
        .bind(date.to_string())
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        row.as_ref().map(schedule_of).transpose()
    }

    async fn schedule_summaries(
        &self,
        concert: ConcertId,
        now: Timestamp,
    ) -> Result<Vec<ScheduleSummary>, StoreError> {
        let rows = sqlx::query(
            "SELECT s.id, s.concert_id, s.starts_at, s.seat_count,
                    count(*) FILTER (WHERE NOT st.sold
                                       AND (st.hold_until IS NULL OR st.hold_until <= $1))
                        AS n_free,
                    count(*) FILTER (WHERE NOT st.sold AND st.hold_until > $1) AS n_held,
                    count(*) FILTER (WHERE st.sold) AS n_sold,
                    COALESCE(sum(st.price) FILTER (WHERE st.sold), 0)::bigint AS revenue
             FROM schedules s JOIN seats st ON st.schedule_id = s.id
             WHERE s.concert_id = $2
             GROUP BY s.id
             ORDER BY s.starts_at, s.id",
        )
        .bind(now.as_millis())
        .bind(concert.get())
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter()
            .map(|r| {
                let count = |c: &str| -> Result<u32, StoreError> {
                    let n: i64 = r.try_get(c).map_err(db)?;
                    u32::try_from(n).map_err(|e| cv::corrupt(c, e))
                };
                Ok(ScheduleSummary {
                    schedule: schedule_of(r)?,
                    n_free: count("n_free")?,
                    n_held: count("n_held")?,
                    n_sold: count("n_sold")?,
                    revenue: cv::money(r.try_get("revenue").map_err(db)?)?,
                })
            })
            .collect()
    }

    async fn seats(&self, schedule: ScheduleId, now: Timestamp) -> Result<Vec<Seat>, StoreError> {
        let rows = sqlx::query(
            "SELECT seat_no, price, sold, hold_until FROM seats
             WHERE schedule_id = $1 ORDER BY seat_no",
        )
        .bind(schedule.get())
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter()
            .map(|r| {
                Ok(Seat {
                    no: cv::seat_no(r.try_get("seat_no").map_err(db)?)?,
                    price: cv::amount(r.try_get("price").map_err(db)?)?,
                    state: seat_state(
                        r.try_get("sold").map_err(db)?,
                        r.try_get("hold_until").map_err(db)?,
                        now,
                    ),
                })
            })
            .collect()
    }
}

// ---------------------------------------------------------------------------------
// Waiting room

/// Issue in one statement. `cur` is the user's live entry in the statement's
/// snapshot. When it is live at `now` it is the answer and nothing is written.
/// Otherwise `next` claims the next sequence on the counters row (whose lock
/// serializes issuers, so sequences have no gap), `old` records the lapsed entry
/// (only once a place is granted, so a full queue changes nothing), and `ins`
/// appends the entry after `old` is done (the count forces the order, which the
/// one-live-entry index needs). A same-user request that raced us and won makes
/// `ins` fail the one-live-entry index: the caller retries and finds the winner in
/// `cur`. No row back means the queue is full.
const ISSUE: &str = concat!(
    "WITH cur AS (
        SELECT ",
    entry_cols!(),
    ", (expires_at IS NULL OR expires_at > $3) AS live_now
        FROM queue_entries WHERE user_id = $1 AND state = 'live'
    ), next AS (
        UPDATE queue_counters SET last_seq = last_seq + 1
        WHERE id = 1 AND last_seq - serving < $4
          AND NOT EXISTS (SELECT 1 FROM cur WHERE live_now)
        RETURNING last_seq
    ), old AS (
        UPDATE queue_entries SET state = 'expired'
        WHERE seq = (SELECT seq FROM cur WHERE NOT live_now) AND state = 'live'
          AND EXISTS (SELECT 1 FROM next)
        RETURNING seq
    ), ins AS (
        INSERT INTO queue_entries (seq, user_id, token_id, issued_at, state)
        SELECT next.last_seq, $1, $2, $3, 'live'
        FROM next, (SELECT count(*) FROM old) AS o
        RETURNING ",
    entry_cols!(),
    "
    )
    SELECT ",
    entry_cols!(),
    " FROM cur WHERE live_now
    UNION ALL
    SELECT ",
    entry_cols!(),
    " FROM ins"
);

/// Advance in one statement. `o` is the counters in the statement's snapshot; `c` is
/// the compare-and-set (re-checked on the newest row if it had to wait); `st` stamps
/// `(old, new]` only if `c` applied. `serving` changes only together with `version`,
/// so when `c` applies, the snapshot's `serving` is the one it replaced.
const ADVANCE: &str = "WITH o AS (
        SELECT serving, last_seq, version FROM queue_counters WHERE id = 1
    ), c AS (
        UPDATE queue_counters
        SET serving = $2, version = version + 1, last_tick_at = $3, admit_rate_milli = $4
        WHERE id = 1 AND version = $1 AND serving <= $2 AND $2 <= last_seq
        RETURNING version
    ), st AS (
        UPDATE queue_entries SET admitted_at = $3, expires_at = $5
        WHERE seq > (SELECT serving FROM o) AND seq <= $2 AND state = 'live'
          AND EXISTS (SELECT 1 FROM c)
    )
    SELECT EXISTS (SELECT 1 FROM c) AS applied, serving, last_seq, version FROM o";

impl QueueRepo for PgStore {
    async fn issue(&self, req: IssueRequest) -> Result<QueueEntry, IssueRepoError> {
        // Under a burst, the common case shares one call and one commit with the
        // issues that arrive meanwhile (group commit, migration 0006).
        let (batched, _busy) = self
            .hot
            .try_batch(&HotWrite::Issue(req))
            .await
            .map_err(db)?;
        if let Some(row) = batched {
            return Ok(entry_of(&row.map_err(db)?)?);
        }
        for _ in 0..MAX_ATTEMPTS {
            let row = sqlx::query(ISSUE)
                .bind(req.user.as_uuid())
                .bind(req.token_id.as_uuid())
                .bind(req.now.as_millis())
                .bind(cv::i64_of(req.max_waiting))
                .fetch_optional(&self.pool)
                .await;
            match row {
                Ok(Some(row)) => return Ok(entry_of(&row)?),
                Ok(None) => return Err(IssueRepoError::QueueFull),
                Err(e) if retryable(&e) || unique_on(&e, "queue_one_live_entry_per_user") => {}
                Err(e) => return Err(db(e).into()),
            }
        }
        Err(contention("issue").into())
    }

    async fn entry(&self, seq: QueueSeq) -> Result<Option<QueueEntry>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            entry_cols!(),
            " FROM queue_entries WHERE seq = $1"
        ))
        .bind(cv::i64_of(seq.get()))
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        row.as_ref().map(entry_of).transpose()
    }

    async fn counters(&self) -> Result<QueueCounters, StoreError> {
        let row = sqlx::query("SELECT * FROM queue_counters WHERE id = 1")
            .fetch_one(&self.pool)
            .await
            .map_err(db)?;
        counters_of(&row)
    }

    async fn count_active(&self, now: Timestamp) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM queue_entries
             WHERE state = 'live' AND admitted_at IS NOT NULL AND expires_at > $1",
        )
        .bind(now.as_millis())
        .fetch_one(&self.pool)
        .await
        .map_err(db)?;
        cv::u64_of(n, "active count")
    }

    async fn advance(&self, adv: Advance) -> Result<bool, StoreError> {
        let expected = cv::i64_of(adv.expected_version);
        let new = cv::i64_of(adv.serving);
        for _ in 0..MAX_ATTEMPTS {
            let row = sqlx::query(ADVANCE)
                .bind(expected)
                .bind(new)
                .bind(adv.now.as_millis())
                .bind(cv::i64_of(adv.admit_rate_milli))
                .bind(adv.admitted_until.as_millis())
                .fetch_one(&self.pool)
                .await;
            let row = match row {
                Ok(row) => row,
                Err(e) if retryable(&e) => continue,
                Err(e) => return Err(db(e)),
            };
            if flag(&row, "applied")? {
                return Ok(true);
            }
            let version: i64 = row.try_get("version").map_err(db)?;
            let serving: i64 = row.try_get("serving").map_err(db)?;
            let last_seq: i64 = row.try_get("last_seq").map_err(db)?;
            if version == expected && (new < serving || new > last_seq) {
                return Err(StoreError::Failed(format!(
                    "advance to {new} outside {serving}..={last_seq}"
                )));
            }
            return Ok(false);
        }
        Err(contention("advance"))
    }

    async fn show_up(
        &self,
        seq: QueueSeq,
        now: Timestamp,
        until: Timestamp,
    ) -> Result<Option<QueueEntry>, StoreError> {
        let row = sqlx::query(concat!(
            "UPDATE queue_entries SET seen_at = $1, expires_at = $2
             WHERE seq = $3 AND state = 'live' AND admitted_at IS NOT NULL
               AND seen_at IS NULL AND expires_at > $1
             RETURNING ",
            entry_cols!()
        ))
        .bind(now.as_millis())
        .bind(until.as_millis())
        .bind(cv::i64_of(seq.get()))
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        row.as_ref().map(entry_of).transpose()
    }

    async fn set_policy(&self, policy: AdmissionPolicy) -> Result<(), StoreError> {
        let (interval_ms, batch, max_active) = cv::policy_parts(&policy);
        sqlx::query(
            "UPDATE queue_counters
             SET interval_ms = $1, batch = $2, max_active = $3, version = version + 1
             WHERE id = 1",
        )
        .bind(interval_ms)
        .bind(batch)
        .bind(max_active)
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn set_paused(&self, paused: bool) -> Result<(), StoreError> {
        sqlx::query("UPDATE queue_counters SET paused = $1, version = version + 1 WHERE id = 1")
            .bind(paused)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn expire_sessions(&self, now: Timestamp, limit: u32) -> Result<u64, StoreError> {
        // The lapsed entries are locked in sequence order, skipping any that another
        // sweeper holds, so sweepers share the work instead of waiting on each other.
        // The outer conditions re-check each row as it is now.
        for _ in 0..MAX_ATTEMPTS {
            let done = sqlx::query(
                "UPDATE queue_entries SET state = 'expired'
                 WHERE seq IN (SELECT seq FROM queue_entries
                               WHERE state = 'live' AND admitted_at IS NOT NULL
                                 AND expires_at <= $1
                               ORDER BY seq LIMIT $2
                               FOR NO KEY UPDATE SKIP LOCKED)
                   AND state = 'live' AND expires_at <= $1",
            )
            .bind(now.as_millis())
            .bind(i64::from(limit))
            .execute(&self.pool)
            .await;
            match done {
                Ok(done) => return Ok(done.rows_affected()),
                Err(e) if retryable(&e) => {}
                Err(e) => return Err(db(e)),
            }
        }
        Err(contention("expire sessions"))
    }
}

// ---------------------------------------------------------------------------------
// Holds

/// A hold in one round trip: `booking_hold` (migration 0004) reads the seat, locks the
/// session row (serializing the user's holds), counts the user's live holds in a fresh
/// snapshot taken after that lock (so the count is exact), claims the seat with one
/// conditional update that names the new reservation on it, and records the seat's
/// lapsed reservation, if any, as expired. A refusal is named in `o_refusal`; the
/// seat's price in `o_price`.
const HOLD: &str = "SELECT o_refusal, o_n_live, o_price
     FROM booking_hold($1, $2, $3, $4, $5, $6, $7, $8)";

/// Cancel: lock the seat while it still holds this live hold of the user, then record
/// the hold as cancelled and free the seat. `r0` is the reservation in the snapshot,
/// which names the refusal.
const CANCEL: &str = concat!(
    "WITH r0 AS (
        SELECT ",
    hold_cols!(),
    " FROM reservations WHERE id = $1
    ), ls AS MATERIALIZED (
        SELECT schedule_id, seat_no, hold_id, hold_user, price, held_at, hold_until
        FROM seats
        WHERE hold_user = $2 AND NOT sold AND hold_id = $1 AND hold_until > $3
        FOR NO KEY UPDATE
    ), e AS (
        INSERT INTO ended_reservations
            (id, user_id, schedule_id, seat_no, price, created_at, expires_at, state)
        SELECT hold_id, hold_user, schedule_id, seat_no, price, held_at, hold_until,
               'cancelled'
        FROM ls
        RETURNING id
    ), s AS (
        UPDATE seats st
        SET hold_id = NULL, hold_user = NULL, held_at = NULL, hold_until = NULL
        FROM ls
        WHERE st.schedule_id = ls.schedule_id AND st.seat_no = ls.seat_no
        RETURNING st.seat_no
    )
    SELECT r0.*,
           EXISTS (SELECT 1 FROM ls) AS locked,
           (SELECT count(*) FROM s) AS n_seats,
           (SELECT count(*) FROM e) AS n_cancelled
    FROM (SELECT 1) AS one LEFT JOIN r0 ON TRUE"
);

/// Sweep: lock the seats still held by lapsed holds, in seat order (so sweepers never
/// deadlock each other), then record those holds as expired and free the seats.
const SWEEP: &str = "WITH lapsed AS (
        SELECT schedule_id, seat_no, hold_id FROM seats
        WHERE hold_user IS NOT NULL AND NOT sold AND hold_until <= $1
        ORDER BY hold_until, hold_id LIMIT $2
    ), locked AS MATERIALIZED (
        SELECT st.schedule_id, st.seat_no, st.hold_id, st.hold_user, st.price, st.held_at,
               st.hold_until
        FROM seats st JOIN lapsed l
          ON st.schedule_id = l.schedule_id AND st.seat_no = l.seat_no AND st.hold_id = l.hold_id
        WHERE NOT st.sold AND st.hold_until <= $1
        ORDER BY st.schedule_id, st.seat_no
        FOR NO KEY UPDATE OF st
    ), done AS (
        INSERT INTO ended_reservations
            (id, user_id, schedule_id, seat_no, price, created_at, expires_at, state)
        SELECT hold_id, hold_user, schedule_id, seat_no, price, held_at, hold_until, 'expired'
        FROM locked
        RETURNING id
    ), freed AS (
        UPDATE seats st
        SET hold_id = NULL, hold_user = NULL, held_at = NULL, hold_until = NULL
        FROM locked k
        WHERE st.schedule_id = k.schedule_id AND st.seat_no = k.seat_no
        RETURNING k.hold_id
    )
    SELECT (SELECT count(*) FROM freed) AS n_freed, (SELECT count(*) FROM done) AS n_expired";

/// What one run of the hold function decided.
fn hold_outcome(row: &PgRow, req: &NewHold) -> Result<Result<Hold, HoldRepoError>, StoreError> {
    let refusal: Option<String> = row.try_get("o_refusal").map_err(db)?;
    let refused = match refusal.as_deref() {
        None => {
            let price: i64 = row.try_get("o_price").map_err(db)?;
            return Ok(Ok(Hold {
                id: req.id,
                user: req.user,
                schedule: req.schedule,
                seat: req.seat,
                price: cv::amount(price)?,
                created_at: req.now,
                expires_at: req.expires_at,
                state: HoldState::Held,
            }));
        }
        Some("no_such_seat") => HoldRepoError::NoSuchSeat,
        Some("session_ended") => HoldRepoError::SessionEnded,
        Some("hold_limit") => HoldRepoError::HoldLimit,
        Some("seat_taken") => HoldRepoError::SeatTaken,
        Some(other) => return Err(cv::corrupt("hold refusal", other)),
    };
    Ok(Err(refused))
}

impl HoldRepo for PgStore {
    async fn hold(&self, req: NewHold) -> Result<Hold, HoldRepoError> {
        for _ in 0..MAX_ATTEMPTS {
            let row = self.hot.run(HotWrite::Hold(req)).await;
            match row {
                Ok(row) => return hold_outcome(&row, &req)?,
                // The seat kept changing under the claim (`STALE`): try again.
                Err(e) if retryable(&e) || stale(&e) => {}
                Err(e) => return Err(db(e).into()),
            }
        }
        Err(contention("hold").into())
    }

    async fn cancel(
        &self,
        id: ReservationId,
        user: UserId,
        now: Timestamp,
    ) -> Result<Hold, CancelRepoError> {
        for _ in 0..MAX_ATTEMPTS {
            let mut tx = self.pool.begin().await.map_err(db)?;
            let row = sqlx::query(CANCEL)
                .bind(id.as_uuid())
                .bind(user.as_uuid())
                .bind(now.as_millis())
                .fetch_one(&mut *tx)
                .await;
            let row = match row {
                Ok(row) => row,
                Err(e) if retryable(&e) => continue,
                Err(e) => return Err(db(e).into()),
            };
            let Some(hold) = maybe_hold(&row)? else {
                return Err(CancelRepoError::NotFound);
            };
            if hold.user != user {
                return Err(CancelRepoError::NotYours);
            }
            let state = hold.state_at(now);
            if state != HoldState::Held {
                return Err(CancelRepoError::NotHeld(state));
            }
            if !flag(&row, "locked")? {
                // Paid, cancelled or lapsed after the snapshot: look again.
                continue;
            }
            let n_seats: i64 = row.try_get("n_seats").map_err(db)?;
            let n_cancelled: i64 = row.try_get("n_cancelled").map_err(db)?;
            if (n_seats, n_cancelled) != (1, 1) {
                return Err(StoreError::Failed(format!(
                    "cancel of {id} freed {n_seats} seats and cancelled {n_cancelled} reservations"
                ))
                .into());
            }
            match tx.commit().await {
                Ok(()) => {}
                Err(e) if retryable(&e) => continue,
                Err(e) => return Err(db(e).into()),
            }
            return Ok(Hold {
                state: HoldState::Cancelled,
                ..hold
            });
        }
        Err(contention("cancel").into())
    }

    async fn reservation(&self, id: ReservationId) -> Result<Option<Hold>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            hold_cols!(),
            " FROM reservations WHERE id = $1"
        ))
        .bind(id.as_uuid())
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        row.as_ref().map(hold_of).transpose()
    }

    async fn reservations_of(&self, user: UserId, limit: u32) -> Result<Vec<Hold>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            hold_cols!(),
            " FROM reservations WHERE user_id = $1
              ORDER BY created_at DESC, id DESC LIMIT $2"
        ))
        .bind(user.as_uuid())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter().map(hold_of).collect()
    }

    async fn live_holds(&self, now: Timestamp, limit: u32) -> Result<Vec<Hold>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            seat_hold_cols!(),
            " FROM seats WHERE hold_user IS NOT NULL AND NOT sold AND hold_until > $1
              ORDER BY hold_until, hold_id LIMIT $2"
        ))
        .bind(now.as_millis())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter().map(hold_of).collect()
    }

    async fn sweep_expired_holds(&self, now: Timestamp, limit: u32) -> Result<u64, StoreError> {
        for _ in 0..MAX_ATTEMPTS {
            let mut tx = self.pool.begin().await.map_err(db)?;
            let row = sqlx::query(SWEEP)
                .bind(now.as_millis())
                .bind(i64::from(limit))
                .fetch_one(&mut *tx)
                .await;
            let row = match row {
                Ok(row) => row,
                Err(e) if retryable(&e) => continue,
                Err(e) => return Err(db(e)),
            };
            let n_freed: i64 = row.try_get("n_freed").map_err(db)?;
            let n_expired: i64 = row.try_get("n_expired").map_err(db)?;
            if n_freed != n_expired {
                return Err(StoreError::Failed(format!(
                    "sweep freed {n_freed} seats but expired {n_expired} holds"
                )));
            }
            match tx.commit().await {
                Ok(()) => return cv::u64_of(n_expired, "swept holds"),
                Err(e) if retryable(&e) => continue,
                Err(e) => return Err(db(e)),
            }
        }
        Err(contention("sweep"))
    }
}

// ---------------------------------------------------------------------------------
// Wallet

/// Charge in one statement. `prior` is the user's charge with this key in the
/// snapshot: when there is one, it is the answer and nothing is written. Otherwise
/// the wallet is created or credited with a conditional upsert (the wallet's row
/// lock serializes the user's charges, and the condition is re-checked on the newest
/// balance) and the ledger row is written from its result. A racing request with the
/// same key fails the unique (user, key) index and is retried, to find `prior`.
const CHARGE: &str = concat!(
    "WITH prior AS (
        SELECT ",
    ledger_cols!(),
    " FROM ledger WHERE user_id = $1 AND idem_key = $2
    ), w AS (
        INSERT INTO wallets AS wl (user_id, balance)
        SELECT $1, $3 WHERE $3 <= $4 AND NOT EXISTS (SELECT 1 FROM prior)
        ON CONFLICT (user_id) DO UPDATE SET balance = wl.balance + excluded.balance
        WHERE wl.balance <= $4 - excluded.balance
        RETURNING balance
    ), l AS (
        INSERT INTO ledger (user_id, kind, amount, balance_after, at, idem_key)
        SELECT $1, 'charge', $3, w.balance, $5, $2 FROM w
        RETURNING ",
    ledger_cols!(),
    "
    )
    SELECT ",
    ledger_cols!(),
    ", TRUE AS replayed FROM prior
    UNION ALL
    SELECT ",
    ledger_cols!(),
    ", FALSE AS replayed FROM l"
);

async fn balance_of<'c, E>(ex: E, user: UserId) -> Result<Money, StoreError>
where
    E: Executor<'c, Database = Postgres>,
{
    let b: Option<i64> = sqlx::query_scalar("SELECT balance FROM wallets WHERE user_id = $1")
        .bind(user.as_uuid())
        .fetch_optional(ex)
        .await
        .map_err(db)?;
    cv::money(b.unwrap_or(0))
}

impl WalletRepo for PgStore {
    async fn charge(&self, req: ChargeRequest) -> Result<ChargeReceipt, ChargeRepoError> {
        for _ in 0..MAX_ATTEMPTS {
            let row = sqlx::query(CHARGE)
                .bind(req.user.as_uuid())
                .bind(req.key.as_ref().map(IdempotencyKey::as_str))
                .bind(req.amount.minor_units())
                .bind(req.max_balance.minor_units())
                .bind(req.now.as_millis())
                .fetch_optional(&self.pool)
                .await;
            let row = match row {
                Ok(row) => row,
                Err(e) if retryable(&e) || unique_on(&e, "ledger_charge_key") => continue,
                Err(e) => return Err(db(e).into()),
            };
            let Some(row) = row else {
                let balance = balance_of(&self.pool, req.user).await?;
                return Err(ChargeRepoError::BalanceLimit { balance });
            };
            let entry = ledger_of(&row)?;
            let replayed = flag(&row, "replayed")?;
            if replayed && entry.amount != req.amount {
                return Err(ChargeRepoError::KeyReused);
            }
            return Ok(ChargeReceipt { entry, replayed });
        }
        Err(contention("charge").into())
    }

    async fn balance(&self, user: UserId) -> Result<Money, StoreError> {
        balance_of(&self.pool, user).await
    }

    async fn ledger(&self, user: UserId, limit: u32) -> Result<Vec<LedgerEntry>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            ledger_cols!(),
            " FROM ledger WHERE user_id = $1 ORDER BY id DESC LIMIT $2"
        ))
        .bind(user.as_uuid())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter().map(ledger_of).collect()
    }
}

// ---------------------------------------------------------------------------------
// Payment

/// Pay in one round trip and one autocommit transaction: `booking_pay` (migration
/// 0004) reads the reservation, the key, the session and the balance to name any
/// refusal before writing anything, then writes in the lock order, each write a
/// conditional update re-checked on the row's newest version and its count checked:
/// session done, seat sold (still held by this live hold; it keeps naming it), debit
/// (`balance >= price`), payment and ledger rows. A condition that fails after a
/// write raises [`STALE`], which rolls the whole transaction back; the call is then
/// run again, and its reads name the refusal. A racing payment with the same key
/// fails the unique (user, key) index.
const PAY: &str = "SELECT o_outcome AS outcome, o_balance AS balance, o_id AS id,
            o_user_id AS user_id, o_schedule_id AS schedule_id, o_seat_no AS seat_no,
            o_price AS price, o_created_at AS created_at, o_expires_at AS expires_at,
            o_state AS state
     FROM booking_pay($1, $2, $3, $4, $5, $6)";

/// SQLSTATE raised by the write functions when a row changed between their reads and
/// their writes: everything was rolled back, and the call may be run again.
const STALE: &str = "BK001";

fn stale(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.code().as_deref() == Some(STALE))
}

/// What one run of the payment function decided.
fn pay_outcome(row: &PgRow, req: &PayRequest) -> Result<Result<Payment, PayRepoError>, StoreError> {
    let outcome: String = row.try_get("outcome").map_err(db)?;
    let Some(hold) = maybe_hold(row)? else {
        return Ok(Err(PayRepoError::NotFound));
    };
    let refused = match outcome.as_str() {
        "paid" => {
            return Ok(Ok(Payment {
                id: req.id,
                reservation: hold.id,
                user: req.user,
                schedule: hold.schedule,
                seat: hold.seat,
                amount: hold.price,
                paid_at: req.now,
                key: req.key.clone(),
                seats: vec![PaidSeat {
                    reservation: hold.id,
                    schedule: hold.schedule,
                    seat: hold.seat,
                    price: hold.price,
                }],
            }));
        }
        "not_yours" => PayRepoError::NotYours,
        "not_held" => PayRepoError::NotHeld(hold.state_at(req.now)),
        "key_reused" => PayRepoError::KeyReused,
        "session_ended" => PayRepoError::SessionEnded,
        "insufficient_balance" => {
            let balance: Option<i64> = row.try_get("balance").map_err(db)?;
            PayRepoError::InsufficientBalance {
                balance: cv::money(balance.unwrap_or(0))?,
                price: hold.price,
            }
        }
        other => return Err(cv::corrupt("payment outcome", other)),
    };
    Ok(Err(refused))
}

impl PaymentRepo for PgStore {
    async fn pay(&self, req: PayRequest) -> Result<Payment, PayRepoError> {
        for _ in 0..MAX_ATTEMPTS {
            let row = self.hot.run(HotWrite::Pay(req.clone())).await;
            match row {
                Ok(row) => return pay_outcome(&row, &req)?,
                Err(e) if retryable(&e) || stale(&e) => {}
                Err(e) if unique_on(&e, "payments_key") => return Err(PayRepoError::KeyReused),
                Err(e) if unique_on(&e, "payments_reservation_id_key") => {
                    return Err(PayRepoError::NotHeld(HoldState::Paid));
                }
                Err(e) => return Err(db(e).into()),
            }
        }
        Err(contention("pay").into())
    }

    async fn pay_many(&self, req: PayManyRequest) -> Result<Payment, PayManyRepoError> {
        for _ in 0..MAX_ATTEMPTS {
            match self.pay_many_once(&req).await {
                Ok(Some(done)) => return done,
                Ok(None) => {}
                Err(e) if retryable(&e) => {}
                Err(e) if unique_on(&e, "payments_key") => {
                    return Err(PayRepoError::KeyReused.into());
                }
                Err(e) => return Err(db(e).into()),
            }
        }
        Err(contention("pay").into())
    }

    async fn payment_by_key(
        &self,
        user: UserId,
        key: &IdempotencyKey,
    ) -> Result<Option<Payment>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            payment_cols!(),
            " FROM payments WHERE user_id = $1 AND idem_key = $2"
        ))
        .bind(user.as_uuid())
        .bind(key.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        let Some(row) = row else {
            return Ok(None);
        };
        let mut found = [payment_of(&row)?];
        let others = other_seats(&self.pool, false, found[0].id.as_uuid()).await?;
        cv::with_seats(&mut found, others)?;
        let [payment] = found;
        Ok(Some(payment))
    }

    async fn payments_of(&self, user: UserId, limit: u32) -> Result<Vec<Payment>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            payment_cols!(),
            " FROM payments WHERE user_id = $1 ORDER BY paid_at DESC, row_no DESC LIMIT $2"
        ))
        .bind(user.as_uuid())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        let mut payments = rows.iter().map(payment_of).collect::<Result<Vec<_>, _>>()?;
        let others = other_seats(&self.pool, true, user.as_uuid()).await?;
        cv::with_seats(&mut payments, others)?;
        Ok(payments)
    }
}

impl PgStore {
    /// One attempt at a payment of several holds, in one transaction: the
    /// refusals are named from reads; then the session is locked (it comes first in
    /// the lock order), the seats are sold in (schedule, seat) order and the payer's
    /// other holds released, the wallet debited, the session ended, the payment,
    /// its other seats and the ledger row written. `Ok(None)` when a conditional
    /// write found its row changed after the reads (a concurrent payment, cancel,
    /// debit or session end): everything is rolled back, and the next attempt's
    /// reads name the refusal.
    async fn pay_many_once(
        &self,
        req: &PayManyRequest,
    ) -> Result<Option<Result<Payment, PayManyRepoError>>, sqlx::Error> {
        let now = req.now;
        let user = req.user.as_uuid();
        let mut tx = self.pool.begin().await?;
        let mut seats = Vec::with_capacity(req.reservations.len());
        for &id in &req.reservations {
            let row = sqlx::query(concat!(
                "SELECT ",
                hold_cols!(),
                " FROM reservations WHERE id = $1"
            ))
            .bind(id.as_uuid())
            .fetch_optional(&mut *tx)
            .await?;
            let refused = |why| Ok(Some(Err(PayManyRepoError::about(id, why))));
            let hold = match row.as_ref().map(hold_of).transpose() {
                Ok(Some(hold)) => hold,
                Ok(None) => return refused(PayRepoError::NotFound),
                Err(e) => return Ok(Some(Err(e.into()))),
            };
            if hold.user != req.user {
                return refused(PayRepoError::NotYours);
            }
            let state = hold.state_at(now);
            if state != HoldState::Held {
                return refused(PayRepoError::NotHeld(state));
            }
            seats.push(PaidSeat {
                reservation: id,
                schedule: hold.schedule,
                seat: hold.seat,
                price: hold.price,
            });
        }
        if let Some(key) = &req.key {
            let used = sqlx::query("SELECT 1 FROM payments WHERE user_id = $1 AND idem_key = $2")
                .bind(user)
                .bind(key.as_str())
                .fetch_optional(&mut *tx)
                .await?;
            if used.is_some() {
                return Ok(Some(Err(PayRepoError::KeyReused.into())));
            }
        }
        let session = sqlx::query(
            "SELECT 1 FROM queue_entries
             WHERE seq = $1 AND user_id = $2 AND state = 'live' AND expires_at > $3
             FOR UPDATE",
        )
        .bind(cv::i64_of(req.session.get()))
        .bind(user)
        .bind(now.as_millis())
        .fetch_optional(&mut *tx)
        .await?;
        if session.is_none() {
            return Ok(Some(Err(PayRepoError::SessionEnded.into())));
        }
        let Some(total) = Amount::total(seats.iter().map(|s| s.price)) else {
            return Ok(Some(Err(StoreError::Failed(
                "the total of a payment overflows".into(),
            )
            .into())));
        };
        let balance = match balance_of(&mut *tx, req.user).await {
            Ok(b) => b,
            Err(e) => return Ok(Some(Err(e.into()))),
        };
        if balance < total.as_money() {
            return Ok(Some(Err(PayRepoError::InsufficientBalance {
                balance,
                price: total,
            }
            .into())));
        }
        let mut in_lock_order = seats.clone();
        in_lock_order.sort_by_key(|s| (s.schedule, s.seat));
        for s in &in_lock_order {
            let sold = sqlx::query(
                "UPDATE seats SET sold = TRUE
                 WHERE schedule_id = $1 AND seat_no = $2 AND hold_id = $3 AND hold_user = $4
                   AND NOT sold AND hold_until > $5",
            )
            .bind(s.schedule.get())
            .bind(i64::from(s.seat.get()))
            .bind(s.reservation.as_uuid())
            .bind(user)
            .bind(now.as_millis())
            .execute(&mut *tx)
            .await?;
            if sold.rows_affected() != 1 {
                return Ok(None);
            }
        }
        // The session ends with the payment, and with it the payer's other holds.
        sqlx::query(
            "UPDATE seats SET hold_until = $2
             WHERE hold_user = $1 AND NOT sold AND hold_until > $2",
        )
        .bind(user)
        .bind(now.as_millis())
        .execute(&mut *tx)
        .await?;
        let after: Option<i64> = sqlx::query_scalar(
            "UPDATE wallets SET balance = balance - $2 WHERE user_id = $1 AND balance >= $2
             RETURNING balance",
        )
        .bind(user)
        .bind(total.minor_units())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(after) = after else {
            return Ok(None);
        };
        let ended = sqlx::query(
            "UPDATE queue_entries SET state = 'done'
             WHERE seq = $1 AND user_id = $2 AND state = 'live'",
        )
        .bind(cv::i64_of(req.session.get()))
        .bind(user)
        .execute(&mut *tx)
        .await?;
        if ended.rows_affected() != 1 {
            return Ok(None);
        }
        let first = seats[0];
        sqlx::query(
            "INSERT INTO payments
               (id, reservation_id, user_id, schedule_id, seat_no, amount, paid_at, idem_key)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(req.id.as_uuid())
        .bind(first.reservation.as_uuid())
        .bind(user)
        .bind(first.schedule.get())
        .bind(i64::from(first.seat.get()))
        .bind(total.minor_units())
        .bind(now.as_millis())
        .bind(req.key.as_ref().map(|k| k.as_str().to_owned()))
        .execute(&mut *tx)
        .await?;
        for (i, s) in seats.iter().enumerate().skip(1) {
            sqlx::query(
                "INSERT INTO payment_seats
                   (reservation_id, payment_id, user_id, position, schedule_id, seat_no, price)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(s.reservation.as_uuid())
            .bind(req.id.as_uuid())
            .bind(user)
            .bind(i as i32 + 1)
            .bind(s.schedule.get())
            .bind(i64::from(s.seat.get()))
            .bind(s.price.minor_units())
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query(
            "INSERT INTO ledger (user_id, kind, payment_id, amount, balance_after, at)
             VALUES ($1, 'payment', $2, $3, $4, $5)",
        )
        .bind(user)
        .bind(req.id.as_uuid())
        .bind(total.minor_units())
        .bind(after)
        .bind(now.as_millis())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(Ok(Payment {
            id: req.id,
            reservation: first.reservation,
            user: req.user,
            schedule: first.schedule,
            seat: first.seat,
            amount: total,
            paid_at: now,
            key: req.key.clone(),
            seats,
        })))
    }
}
