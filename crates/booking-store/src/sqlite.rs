//! The SQLite adapter: the embedded default, one file, zero set-up.
//!
//! SQLite has one writer at a time. Rather than let many connections fight for the
//! write lock (and surface `database is locked`), writes go through a pool of one
//! connection, so they queue in this process; every write transaction starts with
//! `BEGIN IMMEDIATE`, which takes the write lock up front, and a busy timeout makes
//! other processes sharing the file wait for it instead of failing. Reads use their
//! own pool and never block behind writes (WAL).
//!
//! With one writer, a transaction's reads are current: each method reads, checks and
//! writes inside one `BEGIN IMMEDIATE` transaction, and the checks are exactly the
//! conditions of the port contracts.
//!
//! The three hot writes (hold, charge, payment) are single statements; when they
//! queue behind a busy writer they share one transaction and one commit (see
//! `group_commit`), which is what lets many concurrent users go faster than one.

use std::path::Path;
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
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Row, Sqlite, Transaction};
use uuid::Uuid;

use crate::OpenError;
use crate::columns::{
    entry_cols, hold_cols, ledger_cols, payment_cols, schedule_cols, seat_hold_cols,
};
use crate::convert::{self as cv, is_unique_violation, sqlite_err as db};

mod group_commit;
pub use crate::group_commit::GroupCommitStats;
use group_commit::{Arg, GroupCommit, HotWrite};

type Tx = Transaction<'static, Sqlite>;

/// How long a writer from another process waits for the write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// WAL pages after which a commit checkpoints (SQLite's default is 1,000). The
/// checkpoint runs on the committing writer, so it is paid on the hot path: a hold
/// writes about 8 pages and a payment about 15, so at the default a hold paid for a
/// checkpoint every ~125 commits. With 10,000 (a WAL of about 40 MB) the checkpoints
/// are ten times rarer and copy fewer pages per write, since the hot index pages repeat
/// within one. Durability is unchanged: a commit is in the WAL when it is acknowledged.
const WAL_AUTOCHECKPOINT_PAGES: u32 = 10_000;

/// The SQLite store. Clones share the pools.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    read: SqlitePool,
    write: SqlitePool,
    hot: GroupCommit,
}

impl SqliteStore {
    /// Opens (creating if missing) the database at `url` (`sqlite://path`,
    /// `sqlite:path`), applies the migrations, and returns the store.
    /// `read_connections` is the size of the read pool.
    ///
    /// # Errors
    /// [`OpenError`] when the URL is malformed, the file cannot be opened or created,
    /// or a migration fails.
    pub async fn open(url: &str, read_connections: u32) -> Result<Self, OpenError> {
        let options =
            SqliteConnectOptions::from_str(url).map_err(|e| OpenError::BadUrl(e.to_string()))?;
        Self::open_with(options, read_connections).await
    }

    /// Opens (creating if missing) the database file at `path`.
    ///
    /// # Errors
    /// As [`SqliteStore::open`].
    pub async fn open_path(path: &Path, read_connections: u32) -> Result<Self, OpenError> {
        Self::open_with(SqliteConnectOptions::new().filename(path), read_connections).await
    }

    async fn open_with(
        options: SqliteConnectOptions,
        read_connections: u32,
    ) -> Result<Self, OpenError> {
        let options = options
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // In WAL mode, NORMAL loses nothing when the process dies (the WAL is in
            // the OS's hands at commit); only a power cut can lose the last commits.
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true)
            .pragma("wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES.to_string())
            // Room for every statement plus the group commit's batch texts (three
            // kinds, up to 32 statements each), so none is prepared twice.
            .statement_cache_capacity(256);
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(60))
            // A connection left inside a transaction (a COMMIT that failed, on a full
            // disk say) is closed rather than handed to the next writer, which could
            // then never begin: the pool opens a fresh one.
            .after_release(|conn, _| {
                Box::pin(async move { Ok(!sqlx::Connection::is_in_transaction(conn)) })
            })
            .connect_with(options.clone())
            .await
            .map_err(|e| OpenError::Unreachable(e.to_string()))?;
        sqlx::migrate!("../../migrations/sqlite")
            .run(&write)
            .await
            .map_err(|e| OpenError::Migration(e.to_string()))?;
        let read = SqlitePoolOptions::new()
            .max_connections(read_connections.max(1))
            .acquire_timeout(Duration::from_secs(60))
            .connect_with(options.read_only(true))
            .await
            .map_err(|e| OpenError::Unreachable(e.to_string()))?;
        let hot = GroupCommit::start(write.clone());
        Ok(SqliteStore { read, write, hot })
    }

    /// Whether the database answers.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when it does not.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.read)
            .await
            .map(drop)
            .map_err(db)
    }

    /// The pool of the one writer connection (benchmarks compare against raw writes).
    pub fn write_pool(&self) -> &SqlitePool {
        &self.write
    }

    /// What the group commit of the hot writes (hold, charge, payment) has done
    /// since the store opened: how many ran alone, and how many shared a commit.
    pub fn group_commit_stats(&self) -> GroupCommitStats {
        self.hot.stats()
    }

    /// Sets the most hot writes (issues, holds, charges, payments) under way at
    /// once in this store value; beyond it one is refused at once as unavailable
    /// (HTTP 503). [`crate::DEFAULT_MAX_UNDER_WAY`] unless set.
    pub fn set_max_hot_writes(&self, n: u64) {
        self.hot.set_limit(n);
    }

    /// For tests: with `on`, every hot write (issue, hold, charge, payment) goes
    /// through the group commit's batcher and its shared `BEGIN IMMEDIATE`
    /// transaction, as a batch of one when no other is under way, so that tests run
    /// the batch path every time, not only when writes happen to overlap. Off by
    /// default; a server has no reason to turn it on.
    pub fn set_always_batch(&self, on: bool) {
        self.hot.set_always_batch(on);
    }

    /// The pool of reader connections.
    pub fn read_pool(&self) -> &SqlitePool {
        &self.read
    }

    /// Writes a consistent copy of the whole database to a new file at `path`
    /// (`VACUUM INTO`), while the database stays in use: the copy is one
    /// transaction's snapshot, compacted, with no write-ahead log beside it.
    ///
    /// # Errors
    /// [`StoreError::Failed`] when the file exists already or cannot be written.
    pub async fn backup_to(&self, path: &std::path::Path) -> Result<(), StoreError> {
        if path.exists() {
            return Err(StoreError::Failed(format!(
                "{} exists already; a backup never overwrites a file",
                path.display()
            )));
        }
        let target = path
            .to_str()
            .ok_or_else(|| StoreError::Failed("the backup path is not valid UTF-8".into()))?;
        sqlx::query("VACUUM INTO ?")
            .bind(target)
            .execute(&self.read)
            .await
            .map_err(|e| StoreError::Failed(format!("backup to {}: {e}", path.display())))?;
        Ok(())
    }

    /// Copies the write-ahead log into the database file and empties it, then
    /// closes both pools: after a clean stop the file alone holds every committed
    /// write, so copying `booking.db` by itself is a backup. A checkpoint that
    /// cannot run (a reader of another process still open) leaves the log as it
    /// is; nothing is lost either way.
    pub async fn close(&self) {
        self.read.close().await;
        // A failed checkpoint loses nothing (the log stays and is read at the next
        // open), so its error is not a reason to keep the pools open.
        let _ = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .fetch_all(&self.write)
            .await;
        self.write.close().await;
    }

    async fn begin(&self) -> Result<Tx, StoreError> {
        self.write.begin_with("BEGIN IMMEDIATE").await.map_err(db)
    }
}

async fn commit(tx: Tx) -> Result<(), StoreError> {
    tx.commit().await.map_err(db)
}

// A writing statement is always run to completion (`fetch_all`): `fetch_one` and
// `fetch_optional` stop after the first row and drop the error of the last step,
// which for an auto-committed statement is the commit itself (a full disk, say).
// They also skip SQLite's WAL hook, which runs only when a statement steps to its
// end: the automatic checkpoint never ran and the WAL grew without bound (about
// 800 MB in one benchmark run), which is what made such writes look fast.

fn first(rows: Vec<SqliteRow>) -> Option<SqliteRow> {
    rows.into_iter().next()
}

fn one(rows: Vec<SqliteRow>) -> Result<SqliteRow, sqlx::Error> {
    first(rows).ok_or(sqlx::Error::RowNotFound)
}

// ---------------------------------------------------------------------------------
// Row mapping

fn concert_of(r: &SqliteRow) -> Result<Concert, StoreError> {
    let name: String = r.try_get("name").map_err(db)?;
    Ok(Concert {
        id: cv::concert_id(r.try_get("id").map_err(db)?)?,
        name: ConcertName::new(&name).map_err(|e| cv::corrupt("concert name", e))?,
    })
}

fn schedule_of(r: &SqliteRow) -> Result<Schedule, StoreError> {
    Ok(Schedule {
        id: cv::schedule_id(r.try_get("id").map_err(db)?)?,
        concert: cv::concert_id(r.try_get("concert_id").map_err(db)?)?,
        starts_at: cv::ts(r.try_get("starts_at").map_err(db)?),
        seat_count: cv::seat_count(r.try_get("seat_count").map_err(db)?)?,
    })
}

fn hold_of(r: &SqliteRow) -> Result<Hold, StoreError> {
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

fn entry_of(r: &SqliteRow) -> Result<QueueEntry, StoreError> {
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

fn counters_of(r: &SqliteRow) -> Result<QueueCounters, StoreError> {
    Ok(QueueCounters {
        last_seq: cv::u64_of(r.try_get("last_seq").map_err(db)?, "last_seq")?,
        serving: cv::u64_of(r.try_get("serving").map_err(db)?, "serving")?,
        version: cv::u64_of(r.try_get("version").map_err(db)?, "version")?,
        last_tick_at: r
            .try_get::<Option<i64>, _>("last_tick_at")
            .map_err(db)?
            .map(cv::ts),
        paused: r.try_get::<i64, _>("paused").map_err(db)? != 0,
        policy: cv::policy(
            r.try_get("interval_ms").map_err(db)?,
            r.try_get("batch").map_err(db)?,
            r.try_get("max_active").map_err(db)?,
        )?,
        admit_rate_milli: cv::u64_of(r.try_get("admit_rate_milli").map_err(db)?, "rate")?,
    })
}

fn ledger_of(r: &SqliteRow) -> Result<LedgerEntry, StoreError> {
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

fn payment_of(r: &SqliteRow) -> Result<Payment, StoreError> {
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

fn other_seat_of(r: &SqliteRow) -> Result<cv::OtherSeat, StoreError> {
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
    read: &SqlitePool,
    by_user: bool,
    id: Uuid,
) -> Result<Vec<cv::OtherSeat>, StoreError> {
    let sql = if by_user {
        "SELECT payment_id, reservation_id, schedule_id, seat_no, price FROM payment_seats
         WHERE user_id = ? ORDER BY payment_id, position"
    } else {
        "SELECT payment_id, reservation_id, schedule_id, seat_no, price FROM payment_seats
         WHERE payment_id = ? ORDER BY position"
    };
    let rows = sqlx::query(sql)
        .bind(id)
        .fetch_all(read)
        .await
        .map_err(db)?;
    rows.iter().map(other_seat_of).collect()
}

fn seat_state(sold: i64, hold_until: Option<i64>, now: Timestamp) -> SeatState {
    if sold != 0 {
        return SeatState::Sold;
    }
    match hold_until {
        Some(until) if now.as_millis() < until => SeatState::Held {
            until: cv::ts(until),
        },
        _ => SeatState::Free,
    }
}

// ---------------------------------------------------------------------------------
// The single-statement writes (see migrations/sqlite/0004_holds_live_on_their_seat.sql)

type Query<'q> = sqlx::query::Query<'q, Sqlite, sqlx::sqlite::SqliteArguments>;

/// Claims the seat for the hold only if the seat exists, is not sold, has no live
/// hold, the session is active and the user is under the cap. Its trigger records
/// the lapsed hold it replaces, if any.
const HOLD_SQL: &str = concat!(
    "UPDATE seats SET hold_id = ?1, hold_user = ?2, held_at = ?5, hold_until = ?6
     WHERE schedule_id = ?3 AND seat_no = ?4 AND sold = 0
       AND (hold_until IS NULL OR hold_until <= ?5)
       AND EXISTS (SELECT 1 FROM queue_entries q
                   WHERE q.seq = ?7 AND q.user_id = ?2 AND q.state = 'live'
                     AND q.expires_at > ?5)
       AND (SELECT count(*) FROM seats h
            WHERE h.hold_user = ?2 AND h.sold = 0 AND h.hold_until > ?5) < ?8
     RETURNING ",
    seat_hold_cols!()
);

/// The hold statement's parameters, ?1 to ?8.
fn hold_args(req: &NewHold) -> Vec<Arg> {
    vec![
        Arg::Uuid(req.id.as_uuid()),
        Arg::Uuid(req.user.as_uuid()),
        Arg::Int(req.schedule.get()),
        Arg::Int(i64::from(req.seat.get())),
        Arg::Int(req.now.as_millis()),
        Arg::Int(req.expires_at.as_millis()),
        Arg::Int(cv::i64_of(req.session.get())),
        Arg::Int(i64::from(req.max_live_per_user)),
    ]
}

fn hold_statement(req: &NewHold) -> Query<'static> {
    Arg::bind_numbered(sqlx::query(HOLD_SQL), hold_args(req))
}

/// Inserts the charge's ledger row only if the balance stays within the maximum.
const CHARGE_SQL: &str = concat!(
    "INSERT INTO ledger (user_id, kind, amount, balance_after, at, idem_key)
     SELECT ?1, 'charge', ?2, b.balance + ?2, ?3, ?4
     FROM (SELECT coalesce((SELECT balance FROM wallets WHERE user_id = ?1), 0) AS balance) b
     WHERE b.balance + ?2 <= ?5
     RETURNING ",
    ledger_cols!()
);

/// The charge statement's parameters, ?1 to ?5.
fn charge_args(req: &ChargeRequest) -> Vec<Arg> {
    vec![
        Arg::Uuid(req.user.as_uuid()),
        Arg::Int(req.amount.minor_units()),
        Arg::Int(req.now.as_millis()),
        Arg::Text(req.key.as_ref().map(|k| k.as_str().to_owned())),
        Arg::Int(req.max_balance.minor_units()),
    ]
}

fn charge_statement(req: &ChargeRequest) -> Query<'static> {
    Arg::bind_numbered(sqlx::query(CHARGE_SQL), charge_args(req))
}

/// Inserts the payment only if the reservation is a live hold of the payer (its seat
/// names it, unsold), the session is active and the balance covers the price.
const PAY_SQL: &str = concat!(
    "INSERT INTO payments
       (id, reservation_id, user_id, schedule_id, seat_no, amount, paid_at, idem_key,
        session_seq)
     SELECT ?1, s.hold_id, s.hold_user, s.schedule_id, s.seat_no, s.price, ?4, ?5, ?6
     FROM seats s
     WHERE s.hold_id = ?2 AND s.hold_user = ?3 AND s.sold = 0 AND s.hold_until > ?4
       AND EXISTS (SELECT 1 FROM queue_entries q
                   WHERE q.seq = ?6 AND q.user_id = ?3 AND q.state = 'live'
                     AND q.expires_at > ?4)
       AND EXISTS (SELECT 1 FROM wallets w WHERE w.user_id = ?3 AND w.balance >= s.price)
     RETURNING ",
    payment_cols!()
);

/// The payment statement's parameters, ?1 to ?6.
fn pay_args(req: &PayRequest) -> Vec<Arg> {
    vec![
        Arg::Uuid(req.id.as_uuid()),
        Arg::Uuid(req.reservation.as_uuid()),
        Arg::Uuid(req.user.as_uuid()),
        Arg::Int(req.now.as_millis()),
        Arg::Text(req.key.as_ref().map(|k| k.as_str().to_owned())),
        Arg::Int(cv::i64_of(req.session.get())),
    ]
}

fn pay_statement(req: &PayRequest) -> Query<'static> {
    Arg::bind_numbered(sqlx::query(PAY_SQL), pay_args(req))
}

// ---------------------------------------------------------------------------------
// Catalog

impl CatalogRepo for SqliteStore {
    async fn create_concert(&self, new: NewConcert) -> Result<Concert, StoreError> {
        let row = sqlx::query("INSERT INTO concerts (name) VALUES (?) RETURNING id, name")
            .bind(new.name.as_str())
            .fetch_all(&self.write)
            .await
            .and_then(one)
            .map_err(db)?;
        concert_of(&row)
    }

    async fn create_schedule(&self, new: NewSchedule) -> Result<Schedule, CreateScheduleError> {
        let mut tx = self.begin().await?;
        let exists = sqlx::query("SELECT 1 FROM concerts WHERE id = ?")
            .bind(new.concert().get())
            .fetch_all(&mut *tx)
            .await
            .map(first)
            .map_err(db)?;
        if exists.is_none() {
            return Err(CreateScheduleError::UnknownConcert);
        }
        let inserted = sqlx::query(
            "INSERT INTO schedules (concert_id, starts_at, date, seat_count) VALUES (?, ?, ?, ?)
             RETURNING id, concert_id, starts_at, seat_count",
        )
        .bind(new.concert().get())
        .bind(new.starts_at().as_millis())
        .bind(new.date().to_string())
        .bind(i64::from(new.seat_count().get()))
        .fetch_all(&mut *tx)
        .await
        .and_then(one);
        let row = match inserted {
            Ok(row) => row,
            Err(e) if is_unique_violation(&e) => {
                return Err(CreateScheduleError::DateTaken(new.date()));
            }
            Err(e) => return Err(db(e).into()),
        };
        let schedule = schedule_of(&row)?;
        for no in new.seat_count().seats() {
            sqlx::query("INSERT INTO seats (schedule_id, seat_no, price) VALUES (?, ?, ?)")
                .bind(schedule.id.get())
                .bind(i64::from(no.get()))
                .bind(new.prices().price_of(no).minor_units())
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        commit(tx).await?;
        Ok(schedule)
    }

    async fn concerts(&self) -> Result<Vec<Concert>, StoreError> {
        let rows = sqlx::query("SELECT id, name FROM concerts ORDER BY id")
            .fetch_all(&self.read)
            .await
            .map_err(db)?;
        rows.iter().map(concert_of).collect()
    }

    async fn concert(&self, id: ConcertId) -> Result<Option<Concert>, StoreError> {
        let row = sqlx::query("SELECT id, name FROM concerts WHERE id = ?")
            .bind(id.get())
            .fetch_optional(&self.read)
            .await
            .map_err(db)?;
        row.as_ref().map(concert_of).transpose()
    }

    async fn schedule(&self, id: ScheduleId) -> Result<Option<Schedule>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            schedule_cols!(),
            " FROM schedules WHERE id = ?"
        ))
        .bind(id.get())
        .fetch_optional(&self.read)
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
            " FROM schedules WHERE concert_id = ? AND date = ?"
        ))
        .bind(concert.get())
        .bind(date.to_string())
        .fetch_optional(&self.read)
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
                    SUM(st.sold = 0 AND (st.hold_until IS NULL OR st.hold_until <= ?1)) AS n_free,
                    SUM(st.sold = 0 AND st.hold_until > ?1) AS n_held,
                    SUM(st.sold) AS n_sold,
                    SUM(CASE WHEN st.sold = 1 THEN st.price ELSE 0 END) AS revenue
             FROM schedules s JOIN seats st ON st.schedule_id = s.id
             WHERE s.concert_id = ?2
             GROUP BY s.id
             ORDER BY s.starts_at, s.id",
        )
        .bind(now.as_millis())
        .bind(concert.get())
        .fetch_all(&self.read)
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
             WHERE schedule_id = ? ORDER BY seat_no",
        )
        .bind(schedule.get())
        .fetch_all(&self.read)
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

async fn live_entry_of(tx: &mut Tx, user: UserId) -> Result<Option<QueueEntry>, StoreError> {
    let row = sqlx::query(concat!(
        "SELECT ",
        entry_cols!(),
        " FROM queue_entries WHERE user_id = ? AND state = 'live'"
    ))
    .bind(user.as_uuid())
    .fetch_optional(&mut **tx)
    .await
    .map_err(db)?;
    row.as_ref().map(entry_of).transpose()
}

/// Whether `seq` is an active session of `user` at `now`.
async fn session_active(
    tx: &mut Tx,
    seq: QueueSeq,
    user: UserId,
    now: Timestamp,
) -> Result<bool, StoreError> {
    let row = sqlx::query(
        "SELECT 1 FROM queue_entries
         WHERE seq = ? AND user_id = ? AND state = 'live' AND expires_at > ?",
    )
    .bind(cv::i64_of(seq.get()))
    .bind(user.as_uuid())
    .bind(now.as_millis())
    .fetch_optional(&mut **tx)
    .await
    .map_err(db)?;
    Ok(row.is_some())
}

/// The common case of an issue in one statement: a user with no live place gets the
/// next sequence, when the line has room. Its trigger (migration 0005) moves
/// `last_seq` to it in the same statement. Any other case inserts nothing, and the
/// adapter's transaction decides.
const ISSUE_SQL: &str = concat!(
    "INSERT INTO queue_entries (seq, user_id, token_id, issued_at, state)
     SELECT c.last_seq + 1, ?1, ?2, ?3, 'live' FROM queue_counters c
     WHERE c.id = 1 AND c.last_seq - c.serving < ?4
       AND NOT EXISTS (SELECT 1 FROM queue_entries q WHERE q.user_id = ?1 AND q.state = 'live')
     RETURNING ",
    entry_cols!()
);

fn issue_args(req: &IssueRequest) -> Vec<Arg> {
    vec![
        Arg::Uuid(req.user.as_uuid()),
        Arg::Uuid(req.token_id.as_uuid()),
        Arg::Int(req.now.as_millis()),
        Arg::Int(cv::i64_of(req.max_waiting)),
    ]
}

fn issue_statement(req: &IssueRequest) -> Query<'static> {
    Arg::bind_numbered(sqlx::query(ISSUE_SQL), issue_args(req))
}

impl QueueRepo for SqliteStore {
    async fn issue(&self, req: IssueRequest) -> Result<QueueEntry, IssueRepoError> {
        // The hot path: one statement, shared with other writes' commit under a
        // burst (group commit).
        if let Some(row) = self.hot.run(HotWrite::Issue(req)).await.map_err(db)? {
            return Ok(entry_of(&row)?);
        }
        // The user has a place (live or lapsed), or the line is full: decide under
        // the write lock.
        let mut tx = self.begin().await?;
        if let Some(entry) = live_entry_of(&mut tx, req.user).await? {
            if entry.is_live_at(req.now) {
                return Ok(entry);
            }
            sqlx::query("UPDATE queue_entries SET state = 'expired' WHERE seq = ?")
                .bind(cv::i64_of(entry.seq.get()))
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        let next = sqlx::query(
            "UPDATE queue_counters SET last_seq = last_seq + 1
             WHERE id = 1 AND last_seq - serving < ? RETURNING last_seq",
        )
        .bind(cv::i64_of(req.max_waiting))
        .fetch_all(&mut *tx)
        .await
        .map(first)
        .map_err(db)?;
        let Some(next) = next else {
            return Err(IssueRepoError::QueueFull);
        };
        let seq: i64 = next.try_get("last_seq").map_err(db)?;
        let row = sqlx::query(concat!(
            "INSERT INTO queue_entries (seq, user_id, token_id, issued_at, state)
             VALUES (?, ?, ?, ?, 'live') RETURNING ",
            entry_cols!()
        ))
        .bind(seq)
        .bind(req.user.as_uuid())
        .bind(req.token_id.as_uuid())
        .bind(req.now.as_millis())
        .fetch_all(&mut *tx)
        .await
        .and_then(one)
        .map_err(db)?;
        let entry = entry_of(&row)?;
        commit(tx).await?;
        Ok(entry)
    }

    async fn entry(&self, seq: QueueSeq) -> Result<Option<QueueEntry>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            entry_cols!(),
            " FROM queue_entries WHERE seq = ?"
        ))
        .bind(cv::i64_of(seq.get()))
        .fetch_optional(&self.read)
        .await
        .map_err(db)?;
        row.as_ref().map(entry_of).transpose()
    }

    async fn counters(&self) -> Result<QueueCounters, StoreError> {
        let row = sqlx::query("SELECT * FROM queue_counters WHERE id = 1")
            .fetch_one(&self.read)
            .await
            .map_err(db)?;
        counters_of(&row)
    }

    async fn count_active(&self, now: Timestamp) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM queue_entries
             WHERE state = 'live' AND admitted_at IS NOT NULL AND expires_at > ?",
        )
        .bind(now.as_millis())
        .fetch_one(&self.read)
        .await
        .map_err(db)?;
        cv::u64_of(n, "active count")
    }

    async fn advance(&self, adv: Advance) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        let row = sqlx::query("SELECT serving, last_seq, version FROM queue_counters WHERE id = 1")
            .fetch_one(&mut *tx)
            .await
            .map_err(db)?;
        let version: i64 = row.try_get("version").map_err(db)?;
        if version != cv::i64_of(adv.expected_version) {
            return Ok(false);
        }
        let serving: i64 = row.try_get("serving").map_err(db)?;
        let last_seq: i64 = row.try_get("last_seq").map_err(db)?;
        let new = cv::i64_of(adv.serving);
        if new < serving || new > last_seq {
            return Err(StoreError::Failed(format!(
                "advance to {new} outside {serving}..={last_seq}"
            )));
        }
        sqlx::query(
            "UPDATE queue_counters
             SET serving = ?, version = version + 1, last_tick_at = ?, admit_rate_milli = ?
             WHERE id = 1",
        )
        .bind(new)
        .bind(adv.now.as_millis())
        .bind(cv::i64_of(adv.admit_rate_milli))
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        // Every waiting entry is live, so the whole range is stamped.
        let stamped = sqlx::query(
            "UPDATE queue_entries SET admitted_at = ?, expires_at = ?
             WHERE seq > ? AND seq <= ? AND state = 'live'",
        )
        .bind(adv.now.as_millis())
        .bind(adv.admitted_until.as_millis())
        .bind(serving)
        .bind(new)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        if stamped.rows_affected() != (new - serving) as u64 {
            return Err(StoreError::Failed(format!(
                "advance {serving}..={new} stamped {} entries",
                stamped.rows_affected()
            )));
        }
        commit(tx).await?;
        Ok(true)
    }

    async fn show_up(
        &self,
        seq: QueueSeq,
        now: Timestamp,
        until: Timestamp,
    ) -> Result<Option<QueueEntry>, StoreError> {
        let row = sqlx::query(concat!(
            "UPDATE queue_entries SET seen_at = ?1, expires_at = ?2
             WHERE seq = ?3 AND state = 'live' AND admitted_at IS NOT NULL
               AND seen_at IS NULL AND expires_at > ?1
             RETURNING ",
            entry_cols!()
        ))
        .bind(now.as_millis())
        .bind(until.as_millis())
        .bind(cv::i64_of(seq.get()))
        .fetch_all(&self.write)
        .await
        .map(first)
        .map_err(db)?;
        row.as_ref().map(entry_of).transpose()
    }

    async fn set_policy(&self, policy: AdmissionPolicy) -> Result<(), StoreError> {
        let (interval_ms, batch, max_active) = cv::policy_parts(&policy);
        sqlx::query(
            "UPDATE queue_counters
             SET interval_ms = ?, batch = ?, max_active = ?, version = version + 1
             WHERE id = 1",
        )
        .bind(interval_ms)
        .bind(batch)
        .bind(max_active)
        .execute(&self.write)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn set_paused(&self, paused: bool) -> Result<(), StoreError> {
        sqlx::query("UPDATE queue_counters SET paused = ?, version = version + 1 WHERE id = 1")
            .bind(i64::from(paused))
            .execute(&self.write)
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn expire_sessions(&self, now: Timestamp, limit: u32) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "UPDATE queue_entries SET state = 'expired'
             WHERE seq IN (SELECT seq FROM queue_entries
                           WHERE state = 'live' AND admitted_at IS NOT NULL AND expires_at <= ?
                           ORDER BY seq LIMIT ?)",
        )
        .bind(now.as_millis())
        .bind(i64::from(limit))
        .execute(&self.write)
        .await
        .map_err(db)?;
        Ok(done.rows_affected())
    }
}

// ---------------------------------------------------------------------------------
// Holds

async fn reservation_in(tx: &mut Tx, id: ReservationId) -> Result<Option<Hold>, StoreError> {
    let row = sqlx::query(concat!(
        "SELECT ",
        hold_cols!(),
        " FROM reservations WHERE id = ?"
    ))
    .bind(id.as_uuid())
    .fetch_optional(&mut **tx)
    .await
    .map_err(db)?;
    row.as_ref().map(hold_of).transpose()
}

/// Ends the unsold hold `id` of seat (`schedule`, `seat`): records it in
/// ended_reservations as `state` and frees the seat, each step checked to change
/// exactly one row.
async fn end_hold(
    tx: &mut Tx,
    (schedule, seat): (i64, i64),
    id: Uuid,
    state: &str,
) -> Result<(), StoreError> {
    let moved = sqlx::query(
        "INSERT INTO ended_reservations
           (id, user_id, schedule_id, seat_no, price, created_at, expires_at, state)
         SELECT hold_id, hold_user, schedule_id, seat_no, price, held_at, hold_until, ?4
         FROM seats WHERE schedule_id = ?1 AND seat_no = ?2 AND hold_id = ?3 AND sold = 0",
    )
    .bind(schedule)
    .bind(seat)
    .bind(id)
    .bind(state)
    .execute(&mut **tx)
    .await
    .map_err(db)?;
    let freed = sqlx::query(
        "UPDATE seats SET hold_id = NULL, hold_user = NULL, held_at = NULL, hold_until = NULL
         WHERE schedule_id = ? AND seat_no = ? AND hold_id = ? AND sold = 0",
    )
    .bind(schedule)
    .bind(seat)
    .bind(id)
    .execute(&mut **tx)
    .await
    .map_err(db)?;
    let (moved, freed) = (moved.rows_affected(), freed.rows_affected());
    if (moved, freed) != (1, 1) {
        return Err(StoreError::Failed(format!(
            "ending hold {id} as {state} recorded {moved} reservations and freed {freed} seats"
        )));
    }
    Ok(())
}

impl HoldRepo for SqliteStore {
    async fn hold(&self, req: NewHold) -> Result<Hold, HoldRepoError> {
        // The hot path: one statement that claims the seat only if every condition
        // of the contract holds (its triggers retire the lapsed hold and mark the
        // seat).
        if let Some(hold) = self.hot.run(HotWrite::Hold(req)).await.map_err(db)? {
            return hold_of(&hold).map_err(HoldRepoError::from);
        }
        // Refused: find out why under the write lock; if nothing refuses any more
        // (the state moved on), the same statement takes the seat now.
        let mut tx = self.begin().await?;
        let seat = sqlx::query("SELECT 1 FROM seats WHERE schedule_id = ? AND seat_no = ?")
            .bind(req.schedule.get())
            .bind(i64::from(req.seat.get()))
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?;
        if seat.is_none() {
            return Err(HoldRepoError::NoSuchSeat);
        }
        if !session_active(&mut tx, req.session, req.user, req.now).await? {
            return Err(HoldRepoError::SessionEnded);
        }
        let n_live: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM seats WHERE hold_user = ? AND sold = 0 AND hold_until > ?",
        )
        .bind(req.user.as_uuid())
        .bind(req.now.as_millis())
        .fetch_one(&mut *tx)
        .await
        .map_err(db)?;
        if n_live >= i64::from(req.max_live_per_user) {
            return Err(HoldRepoError::HoldLimit);
        }
        let Some(row) = hold_statement(&req)
            .fetch_all(&mut *tx)
            .await
            .map(first)
            .map_err(db)?
        else {
            return Err(HoldRepoError::SeatTaken);
        };
        let hold = hold_of(&row)?;
        commit(tx).await?;
        Ok(hold)
    }

    async fn cancel(
        &self,
        id: ReservationId,
        user: UserId,
        now: Timestamp,
    ) -> Result<Hold, CancelRepoError> {
        let mut tx = self.begin().await?;
        let Some(hold) = reservation_in(&mut tx, id).await? else {
            return Err(CancelRepoError::NotFound);
        };
        if hold.user != user {
            return Err(CancelRepoError::NotYours);
        }
        let state = hold.state_at(now);
        if state != HoldState::Held {
            return Err(CancelRepoError::NotHeld(state));
        }
        // A live hold is its seat's: it moves to ended_reservations, and the seat is
        // freed.
        end_hold(
            &mut tx,
            (hold.schedule.get(), i64::from(hold.seat.get())),
            id.as_uuid(),
            "cancelled",
        )
        .await?;
        commit(tx).await?;
        Ok(Hold {
            state: HoldState::Cancelled,
            ..hold
        })
    }

    async fn reservation(&self, id: ReservationId) -> Result<Option<Hold>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            hold_cols!(),
            " FROM reservations WHERE id = ?"
        ))
        .bind(id.as_uuid())
        .fetch_optional(&self.read)
        .await
        .map_err(db)?;
        row.as_ref().map(hold_of).transpose()
    }

    async fn reservations_of(&self, user: UserId, limit: u32) -> Result<Vec<Hold>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            hold_cols!(),
            " FROM reservations WHERE user_id = ?
              ORDER BY created_at DESC, id DESC LIMIT ?"
        ))
        .bind(user.as_uuid())
        .bind(i64::from(limit))
        .fetch_all(&self.read)
        .await
        .map_err(db)?;
        rows.iter().map(hold_of).collect()
    }

    async fn live_holds(&self, now: Timestamp, limit: u32) -> Result<Vec<Hold>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            seat_hold_cols!(),
            " FROM seats WHERE hold_user IS NOT NULL AND sold = 0 AND hold_until > ?
              ORDER BY hold_until, hold_id LIMIT ?"
        ))
        .bind(now.as_millis())
        .bind(i64::from(limit))
        .fetch_all(&self.read)
        .await
        .map_err(db)?;
        rows.iter().map(hold_of).collect()
    }

    async fn sweep_expired_holds(&self, now: Timestamp, limit: u32) -> Result<u64, StoreError> {
        let mut tx = self.begin().await?;
        let lapsed: Vec<(i64, i64, Uuid)> = sqlx::query_as(
            "SELECT schedule_id, seat_no, hold_id FROM seats
             WHERE hold_user IS NOT NULL AND sold = 0 AND hold_until <= ?
             ORDER BY hold_until, hold_id LIMIT ?",
        )
        .bind(now.as_millis())
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await
        .map_err(db)?;
        for &(schedule, seat, id) in &lapsed {
            end_hold(&mut tx, (schedule, seat), id, "expired").await?;
        }
        commit(tx).await?;
        Ok(lapsed.len() as u64)
    }
}

// ---------------------------------------------------------------------------------
// Wallet

async fn balance_in(tx: &mut Tx, user: UserId) -> Result<Money, StoreError> {
    let b: Option<i64> = sqlx::query_scalar("SELECT balance FROM wallets WHERE user_id = ?")
        .bind(user.as_uuid())
        .fetch_optional(&mut **tx)
        .await
        .map_err(db)?;
    cv::money(b.unwrap_or(0))
}

impl WalletRepo for SqliteStore {
    async fn charge(&self, req: ChargeRequest) -> Result<ChargeReceipt, ChargeRepoError> {
        // The hot path: one statement (its trigger sets the wallet's balance). A key
        // used before fails the unique index and takes the slow path, which replays.
        match self.hot.run(HotWrite::Charge(req.clone())).await {
            Ok(Some(row)) => {
                return Ok(ChargeReceipt {
                    entry: ledger_of(&row)?,
                    replayed: false,
                });
            }
            Ok(None) => {}
            Err(e) if is_unique_violation(&e) => {}
            Err(e) => return Err(db(e).into()),
        }
        let mut tx = self.begin().await?;
        if let Some(key) = &req.key {
            let first = sqlx::query(concat!(
                "SELECT ",
                ledger_cols!(),
                " FROM ledger WHERE user_id = ? AND idem_key = ?"
            ))
            .bind(req.user.as_uuid())
            .bind(key.as_str())
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?;
            if let Some(first) = first {
                let entry = ledger_of(&first)?;
                if entry.amount != req.amount {
                    return Err(ChargeRepoError::KeyReused);
                }
                return Ok(ChargeReceipt {
                    entry,
                    replayed: true,
                });
            }
        }
        let Some(row) = charge_statement(&req)
            .fetch_all(&mut *tx)
            .await
            .map(first)
            .map_err(db)?
        else {
            let balance = balance_in(&mut tx, req.user).await?;
            return Err(ChargeRepoError::BalanceLimit { balance });
        };
        let entry = ledger_of(&row)?;
        commit(tx).await?;
        Ok(ChargeReceipt {
            entry,
            replayed: false,
        })
    }

    async fn balance(&self, user: UserId) -> Result<Money, StoreError> {
        let b: Option<i64> = sqlx::query_scalar("SELECT balance FROM wallets WHERE user_id = ?")
            .bind(user.as_uuid())
            .fetch_optional(&self.read)
            .await
            .map_err(db)?;
        cv::money(b.unwrap_or(0))
    }

    async fn ledger(&self, user: UserId, limit: u32) -> Result<Vec<LedgerEntry>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            ledger_cols!(),
            " FROM ledger WHERE user_id = ? ORDER BY id DESC LIMIT ?"
        ))
        .bind(user.as_uuid())
        .bind(i64::from(limit))
        .fetch_all(&self.read)
        .await
        .map_err(db)?;
        rows.iter().map(ledger_of).collect()
    }
}

// ---------------------------------------------------------------------------------
// Payment

impl PaymentRepo for SqliteStore {
    async fn pay(&self, req: PayRequest) -> Result<Payment, PayRepoError> {
        // The hot path: one statement that inserts the payment only if every
        // condition holds; its trigger debits, sells the seat, closes the
        // reservation, writes the ledger row and ends the session, each step
        // checked to change exactly one row.
        match self.hot.run(HotWrite::Pay(req.clone())).await {
            Ok(Some(row)) => return payment_of(&row).map_err(PayRepoError::from),
            Ok(None) => {}
            Err(e) if is_unique_violation(&e) => {}
            Err(e) => return Err(db(e).into()),
        }
        // Refused: find out why under the write lock.
        let now = req.now;
        let mut tx = self.begin().await?;
        let Some(hold) = reservation_in(&mut tx, req.reservation).await? else {
            return Err(PayRepoError::NotFound);
        };
        if hold.user != req.user {
            return Err(PayRepoError::NotYours);
        }
        let state = hold.state_at(now);
        if state != HoldState::Held {
            return Err(PayRepoError::NotHeld(state));
        }
        if let Some(key) = &req.key {
            let used = sqlx::query("SELECT 1 FROM payments WHERE user_id = ? AND idem_key = ?")
                .bind(req.user.as_uuid())
                .bind(key.as_str())
                .fetch_optional(&mut *tx)
                .await
                .map_err(db)?;
            if used.is_some() {
                return Err(PayRepoError::KeyReused);
            }
        }
        if !session_active(&mut tx, req.session, req.user, now).await? {
            return Err(PayRepoError::SessionEnded);
        }
        let balance = balance_in(&mut tx, req.user).await?;
        if balance < hold.price.as_money() {
            return Err(PayRepoError::InsufficientBalance {
                balance,
                price: hold.price,
            });
        }
        let Some(row) = pay_statement(&req)
            .fetch_all(&mut *tx)
            .await
            .map(first)
            .map_err(db)?
        else {
            return Err(StoreError::Failed(format!(
                "payment of reservation {} refused with every condition met",
                hold.id
            ))
            .into());
        };
        let payment = payment_of(&row)?;
        commit(tx).await?;
        Ok(payment)
    }

    async fn pay_many(&self, req: PayManyRequest) -> Result<Payment, PayManyRepoError> {
        // Not the hot path: checked and written step by step in one transaction
        // under the write lock (SQLite's one writer), every write checked to change
        // exactly the rows it must.
        let now = req.now;
        let mut tx = self.begin().await?;
        let mut seats = Vec::with_capacity(req.reservations.len());
        for &id in &req.reservations {
            let Some(hold) = reservation_in(&mut tx, id).await? else {
                return Err(PayManyRepoError::about(id, PayRepoError::NotFound));
            };
            if hold.user != req.user {
                return Err(PayManyRepoError::about(id, PayRepoError::NotYours));
            }
            let state = hold.state_at(now);
            if state != HoldState::Held {
                return Err(PayManyRepoError::about(id, PayRepoError::NotHeld(state)));
            }
            seats.push(PaidSeat {
                reservation: id,
                schedule: hold.schedule,
                seat: hold.seat,
                price: hold.price,
            });
        }
        if let Some(key) = &req.key {
            let used = sqlx::query("SELECT 1 FROM payments WHERE user_id = ? AND idem_key = ?")
                .bind(req.user.as_uuid())
                .bind(key.as_str())
                .fetch_optional(&mut *tx)
                .await
                .map_err(db)?;
            if used.is_some() {
                return Err(PayRepoError::KeyReused.into());
            }
        }
        if !session_active(&mut tx, req.session, req.user, now).await? {
            return Err(PayRepoError::SessionEnded.into());
        }
        let total = Amount::total(seats.iter().map(|s| s.price))
            .ok_or_else(|| StoreError::Failed("the total of a payment overflows".into()))?;
        let balance = balance_in(&mut tx, req.user).await?;
        if balance < total.as_money() {
            return Err(PayRepoError::InsufficientBalance {
                balance,
                price: total,
            }
            .into());
        }
        let first = seats[0];
        // The payment row names the first seat and the total; no session_seq, so
        // the single-hold trigger does not run: the steps are below.
        sqlx::query(
            "INSERT INTO payments
               (id, reservation_id, user_id, schedule_id, seat_no, amount, paid_at, idem_key)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(req.id.as_uuid())
        .bind(first.reservation.as_uuid())
        .bind(req.user.as_uuid())
        .bind(first.schedule.get())
        .bind(i64::from(first.seat.get()))
        .bind(total.minor_units())
        .bind(now.as_millis())
        .bind(req.key.as_ref().map(|k| k.as_str().to_owned()))
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        for (i, s) in seats.iter().enumerate() {
            if i > 0 {
                sqlx::query(
                    "INSERT INTO payment_seats
                       (reservation_id, payment_id, user_id, position, schedule_id, seat_no,
                        price)
                     VALUES (?, ?, ?, ?, ?, ?, ?)",
                )
                .bind(s.reservation.as_uuid())
                .bind(req.id.as_uuid())
                .bind(req.user.as_uuid())
                .bind(i as i64 + 1)
                .bind(s.schedule.get())
                .bind(i64::from(s.seat.get()))
                .bind(s.price.minor_units())
                .execute(&mut *tx)
                .await
                .map_err(db)?;
            }
            let sold = sqlx::query(
                "UPDATE seats SET sold = 1
                 WHERE schedule_id = ? AND seat_no = ? AND hold_id = ? AND hold_user = ?
                   AND sold = 0 AND hold_until > ?",
            )
            .bind(s.schedule.get())
            .bind(i64::from(s.seat.get()))
            .bind(s.reservation.as_uuid())
            .bind(req.user.as_uuid())
            .bind(now.as_millis())
            .execute(&mut *tx)
            .await
            .map_err(db)?;
            if sold.rows_affected() != 1 {
                return Err(StoreError::Failed(format!(
                    "payment {}: the seat of reservation {} was not held",
                    req.id, s.reservation
                ))
                .into());
            }
        }
        let debited = sqlx::query(
            "UPDATE wallets SET balance = balance - ?2 WHERE user_id = ?1 AND balance >= ?2",
        )
        .bind(req.user.as_uuid())
        .bind(total.minor_units())
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        let ended = sqlx::query(
            "UPDATE queue_entries SET state = 'done'
             WHERE seq = ? AND user_id = ? AND state = 'live'",
        )
        .bind(cv::i64_of(req.session.get()))
        .bind(req.user.as_uuid())
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        if (debited.rows_affected(), ended.rows_affected()) != (1, 1) {
            return Err(StoreError::Failed(format!(
                "payment {}: debited {} wallets and ended {} sessions",
                req.id,
                debited.rows_affected(),
                ended.rows_affected()
            ))
            .into());
        }
        sqlx::query(
            "INSERT INTO ledger (user_id, kind, payment_id, amount, balance_after, at)
             SELECT ?1, 'payment', ?2, ?3, balance, ?4 FROM wallets WHERE user_id = ?1",
        )
        .bind(req.user.as_uuid())
        .bind(req.id.as_uuid())
        .bind(total.minor_units())
        .bind(now.as_millis())
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        // The session ended: the payer's other holds lapse now.
        sqlx::query(
            "UPDATE seats SET hold_until = ?2
             WHERE hold_user = ?1 AND sold = 0 AND hold_until > ?2",
        )
        .bind(req.user.as_uuid())
        .bind(now.as_millis())
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        commit(tx).await?;
        Ok(Payment {
            id: req.id,
            reservation: first.reservation,
            user: req.user,
            schedule: first.schedule,
            seat: first.seat,
            amount: total,
            paid_at: now,
            key: req.key,
            seats,
        })
    }

    async fn payment_by_key(
        &self,
        user: UserId,
        key: &IdempotencyKey,
    ) -> Result<Option<Payment>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            payment_cols!(),
            " FROM payments WHERE user_id = ? AND idem_key = ?"
        ))
        .bind(user.as_uuid())
        .bind(key.as_str())
        .fetch_optional(&self.read)
        .await
        .map_err(db)?;
        let Some(row) = row else {
            return Ok(None);
        };
        let mut found = [payment_of(&row)?];
        let others = other_seats(&self.read, false, found[0].id.as_uuid()).await?;
        cv::with_seats(&mut found, others)?;
        let [payment] = found;
        Ok(Some(payment))
    }

    async fn payments_of(&self, user: UserId, limit: u32) -> Result<Vec<Payment>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            payment_cols!(),
            " FROM payments WHERE user_id = ? ORDER BY paid_at DESC, rowid DESC LIMIT ?"
        ))
        .bind(user.as_uuid())
        .bind(i64::from(limit))
        .fetch_all(&self.read)
        .await
        .map_err(db)?;
        let mut payments = rows.iter().map(payment_of).collect::<Result<Vec<_>, _>>()?;
        let others = other_seats(&self.read, true, user.as_uuid()).await?;
        cv::with_seats(&mut payments, others)?;
        Ok(payments)
    }
}
