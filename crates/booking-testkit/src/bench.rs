//! What the benchmarks share: raw SQL rates on the database under test, measured in
//! the same run as the engine's rates so that their ratio means something, and a
//! closed-loop rate meter.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::{PgPool, SqlitePool};
use tokio::task::JoinSet;

/// Raw statements on one database, beside the engine's own tables.
#[derive(Debug, Clone)]
pub enum RawDb {
    /// An SQLite database, through its writer pool.
    Sqlite(SqlitePool),
    /// A PostgreSQL database.
    Postgres(PgPool),
}

impl RawDb {
    /// Creates the raw tables: 64 rows and 64 wallets.
    ///
    /// # Panics
    /// On any database error (this is benchmark code).
    pub async fn setup(&self) {
        match self {
            RawDb::Sqlite(pool) => {
                for sql in [
                    "CREATE TABLE IF NOT EXISTS bench_rows (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)",
                    "CREATE TABLE IF NOT EXISTS bench_wallets (id INTEGER PRIMARY KEY, balance INTEGER NOT NULL)",
                    "CREATE TABLE IF NOT EXISTS bench_history (id INTEGER, n INTEGER)",
                    "CREATE TABLE IF NOT EXISTS bench_inserts (id INTEGER PRIMARY KEY, k BLOB NOT NULL, at INTEGER NOT NULL)",
                ] {
                    sqlx::query(sql).execute(pool).await.expect("setup");
                }
                for id in 0..64i64 {
                    sqlx::query("INSERT OR IGNORE INTO bench_rows VALUES (?, 0)")
                        .bind(id)
                        .execute(pool)
                        .await
                        .expect("row");
                    sqlx::query("INSERT OR IGNORE INTO bench_wallets VALUES (?, 1000000000)")
                        .bind(id)
                        .execute(pool)
                        .await
                        .expect("wallet");
                }
            }
            RawDb::Postgres(pool) => {
                for sql in [
                    "CREATE TABLE IF NOT EXISTS bench_rows (id BIGINT PRIMARY KEY, n BIGINT NOT NULL)",
                    "CREATE TABLE IF NOT EXISTS bench_wallets (id BIGINT PRIMARY KEY, balance BIGINT NOT NULL)",
                    "CREATE TABLE IF NOT EXISTS bench_history (id BIGINT, n BIGINT)",
                    "CREATE TABLE IF NOT EXISTS bench_inserts (id BIGSERIAL PRIMARY KEY, k UUID NOT NULL, at BIGINT NOT NULL)",
                    "INSERT INTO bench_rows SELECT g, 0 FROM generate_series(0, 63) g ON CONFLICT DO NOTHING",
                    "INSERT INTO bench_wallets SELECT g, 1000000000 FROM generate_series(0, 63) g
                     ON CONFLICT DO NOTHING",
                ] {
                    sqlx::query(sql).execute(pool).await.expect("setup");
                }
            }
        }
    }

    /// One durable single-row `UPDATE` of row `id` (0..64).
    ///
    /// # Panics
    /// On any database error.
    pub async fn update(&self, id: i64) {
        match self {
            RawDb::Sqlite(pool) => {
                sqlx::query("UPDATE bench_rows SET n = n + 1 WHERE id = ?")
                    .bind(id)
                    .execute(pool)
                    .await
                    .expect("update");
            }
            RawDb::Postgres(pool) => {
                sqlx::query("UPDATE bench_rows SET n = n + 1 WHERE id = $1")
                    .bind(id)
                    .execute(pool)
                    .await
                    .expect("update");
            }
        }
    }

    /// One durable single-row `INSERT` of a new row (a fresh key and a time, the id
    /// from the table's sequence): the floor under issuing a queue token, which
    /// appends one row.
    ///
    /// # Panics
    /// On any database error.
    pub async fn insert(&self, at: i64) {
        let k = uuid::Uuid::new_v4();
        match self {
            RawDb::Sqlite(pool) => {
                sqlx::query("INSERT INTO bench_inserts (k, at) VALUES (?, ?)")
                    .bind(k)
                    .bind(at)
                    .execute(pool)
                    .await
                    .expect("insert");
            }
            RawDb::Postgres(pool) => {
                sqlx::query("INSERT INTO bench_inserts (k, at) VALUES ($1, $2)")
                    .bind(k)
                    .bind(at)
                    .execute(pool)
                    .await
                    .expect("insert");
            }
        }
    }

    /// The one write a hold cannot do without, with none of its checks: one `UPDATE`
    /// of the engine's own `seats` table that names hold `id` of `user` on seat
    /// `seat_no` of `schedule`, from `now` until `until`, when the seat is unsold and
    /// free or lapsed. Returns whether it claimed the seat. No session, no cap, no
    /// record of a lapsed hold: the floor under a hold's rate on this database.
    ///
    /// # Panics
    /// On any database error.
    pub async fn claim(
        &self,
        schedule: i64,
        seat_no: i64,
        id: uuid::Uuid,
        user: uuid::Uuid,
        now: i64,
        until: i64,
    ) -> bool {
        let done = match self {
            RawDb::Sqlite(pool) => sqlx::query(
                "UPDATE seats SET hold_id = ?, hold_user = ?, held_at = ?, hold_until = ?
                 WHERE schedule_id = ? AND seat_no = ? AND sold = 0
                   AND (hold_until IS NULL OR hold_until <= ?)",
            )
            .bind(id)
            .bind(user)
            .bind(now)
            .bind(until)
            .bind(schedule)
            .bind(seat_no)
            .bind(now)
            .execute(pool)
            .await
            .expect("claim")
            .rows_affected(),
            RawDb::Postgres(pool) => sqlx::query(
                "UPDATE seats SET hold_id = $1, hold_user = $2, held_at = $3, hold_until = $4
                 WHERE schedule_id = $5 AND seat_no = $6 AND NOT sold
                   AND (hold_until IS NULL OR hold_until <= $3)",
            )
            .bind(id)
            .bind(user)
            .bind(now)
            .bind(until)
            .bind(schedule)
            .bind(seat_no)
            .execute(pool)
            .await
            .expect("claim")
            .rows_affected(),
        };
        done == 1
    }

    /// The writes a payment cannot do without, with none of its checks, as one
    /// statement of the engine's own tables: session `seq` ends, seat `seat_no` of
    /// `schedule` (held by reservation `reservation`) is sold, `user`'s wallet pays
    /// `amount`, and payment `id` and its ledger row are written at `now`. Returns
    /// whether every write changed its one row. No lock, no state read, no
    /// idempotency key: the floor under a payment's rate on this database.
    ///
    /// # Panics
    /// On any database error.
    #[allow(clippy::too_many_arguments)]
    pub async fn settle(
        &self,
        seq: i64,
        schedule: i64,
        seat_no: i64,
        reservation: uuid::Uuid,
        user: uuid::Uuid,
        amount: i64,
        id: uuid::Uuid,
        now: i64,
    ) -> bool {
        match self {
            // The engine's payment row: its trigger ends the session, sells the seat,
            // debits the wallet and writes the ledger row, each checked.
            RawDb::Sqlite(pool) => {
                sqlx::query(
                    "INSERT INTO payments (id, reservation_id, user_id, schedule_id, seat_no,
                                           amount, paid_at, session_seq)
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                )
                .bind(id)
                .bind(reservation)
                .bind(user)
                .bind(schedule)
                .bind(seat_no)
                .bind(amount)
                .bind(now)
                .bind(seq)
                .execute(pool)
                .await
                .expect("settle")
                .rows_affected()
                    == 1
            }
            RawDb::Postgres(pool) => {
                let n: i64 = sqlx::query_scalar(
                    "WITH s AS (
                        UPDATE queue_entries SET state = 'done'
                        WHERE seq = $1 AND state = 'live' RETURNING 1
                    ), t AS (
                        UPDATE seats SET sold = TRUE
                        WHERE schedule_id = $2 AND seat_no = $3 AND hold_id = $4 RETURNING 1
                    ), w AS (
                        UPDATE wallets SET balance = balance - $6
                        WHERE user_id = $5 AND balance >= $6 RETURNING balance
                    ), p AS (
                        INSERT INTO payments
                            (id, reservation_id, user_id, schedule_id, seat_no, amount, paid_at)
                        VALUES ($7, $4, $5, $2, $3, $6, $8) RETURNING 1
                    ), l AS (
                        INSERT INTO ledger (user_id, kind, payment_id, amount, balance_after, at)
                        SELECT $5, 'payment', $7, $6, balance, $8 FROM w RETURNING 1
                    )
                    SELECT (SELECT count(*) FROM s) + (SELECT count(*) FROM t)
                         + (SELECT count(*) FROM p) + (SELECT count(*) FROM l)",
                )
                .bind(seq)
                .bind(schedule)
                .bind(seat_no)
                .bind(reservation)
                .bind(user)
                .bind(amount)
                .bind(id)
                .bind(now)
                .fetch_one(pool)
                .await
                .expect("settle");
                n == 4
            }
        }
    }

    /// One transaction of three statements, a payment's bare bones: a conditional
    /// debit, a row update and an insert.
    ///
    /// # Panics
    /// On any database error.
    pub async fn three(&self, id: i64, n: i64) {
        match self {
            RawDb::Sqlite(pool) => {
                let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.expect("begin");
                sqlx::query(
                    "UPDATE bench_wallets SET balance = balance - 1 WHERE id = ? AND balance >= 1",
                )
                .bind(id)
                .execute(&mut *tx)
                .await
                .expect("debit");
                sqlx::query("UPDATE bench_rows SET n = n + 1 WHERE id = ?")
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .expect("seat");
                sqlx::query("INSERT INTO bench_history VALUES (?, ?)")
                    .bind(id)
                    .bind(n)
                    .execute(&mut *tx)
                    .await
                    .expect("history");
                tx.commit().await.expect("commit");
            }
            RawDb::Postgres(pool) => {
                let mut tx = pool.begin().await.expect("begin");
                sqlx::query(
                    "UPDATE bench_wallets SET balance = balance - 1 WHERE id = $1 AND balance >= 1",
                )
                .bind(id)
                .execute(&mut *tx)
                .await
                .expect("debit");
                sqlx::query("UPDATE bench_rows SET n = n + 1 WHERE id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .expect("seat");
                sqlx::query("INSERT INTO bench_history VALUES ($1, $2)")
                    .bind(id)
                    .bind(n)
                    .execute(&mut *tx)
                    .await
                    .expect("history");
                tx.commit().await.expect("commit");
            }
        }
    }
}

/// Runs `op(task, i)` in a closed loop on `tasks` tasks for `secs` seconds; returns
/// operations per second. An operation that returns `false` is not counted (it was
/// refused or failed).
pub async fn rate<F, Fut>(tasks: usize, secs: f64, op: F) -> f64
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = bool> + Send,
{
    let op = Arc::new(op);
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(secs);
    let mut set = JoinSet::new();
    for t in 0..tasks {
        let (op, done) = (Arc::clone(&op), Arc::clone(&done));
        set.spawn(async move {
            let (mut i, mut ok) = (0u64, 0u64);
            while Instant::now() < deadline {
                ok += u64::from(op(t, i).await);
                i += 1;
            }
            done.fetch_add(ok, Ordering::Relaxed);
        });
    }
    set.join_all().await;
    done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

/// Runs `op` once on each item of `work`, in order, from `tasks` tasks, until the work
/// runs out or `secs` seconds have passed; returns operations per second. An
/// operation that returns `false` is not counted.
pub async fn drain<T, F, Fut>(tasks: usize, secs: f64, work: Vec<T>, op: F) -> f64
where
    T: Send + 'static,
    F: Fn(T) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = bool> + Send,
{
    let work = Arc::new(Mutex::new(work.into_iter()));
    let op = Arc::new(op);
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(secs);
    let mut set = JoinSet::new();
    for _ in 0..tasks {
        let (work, op, done) = (Arc::clone(&work), Arc::clone(&op), Arc::clone(&done));
        set.spawn(async move {
            let mut ok = 0u64;
            while Instant::now() < deadline {
                let next = work.lock().expect("work").next();
                let Some(item) = next else { break };
                ok += u64::from(op(item).await);
            }
            done.fetch_add(ok, Ordering::Relaxed);
        });
    }
    set.join_all().await;
    done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

/// A benchmark setting from the environment variable `name`, or `default` when it
/// is unset or does not parse.
pub fn setting<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// The backends to measure: `BOOKING_BENCH_BACKENDS` (`sqlite`, `postgres`, or
/// both separated by a comma; both by default).
pub fn backends() -> String {
    std::env::var("BOOKING_BENCH_BACKENDS").unwrap_or_else(|_| "sqlite,postgres".into())
}
