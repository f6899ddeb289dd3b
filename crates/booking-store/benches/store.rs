//! Store benchmark: holds/s, charges/s and payments/s on SQLite and PostgreSQL at 1,
//! 16 and 64 concurrent tasks, each beside a raw rate measured on the same database in
//! the same run: a single-row `UPDATE` for holds and charges, a three-statement
//! transaction (debit, seat, history row) for payments.
//!
//! Two hold rates: `hold` takes free seats (the common case: a seat is claimed for the
//! first time, or after a cancel or a sweep freed it), `reclaim` takes the same seat
//! again and again once its hold lapsed, which also records the lapsed hold as
//! expired: one more row written per hold. (Earlier versions measured only the
//! second, and reported it as the hold rate.)
//!
//! ```text
//! cargo bench -p booking-store --bench store
//! BOOKING_BENCH_SECS=5 BOOKING_BENCH_BACKENDS=postgres cargo bench -p booking-store --bench store
//! ```
//!
//! PostgreSQL: `BOOKING_TEST_POSTGRES_URL` if set, else a throwaway local server with
//! `fsync` on. Every write is durable on both backends (SQLite: WAL, synchronous=NORMAL).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use booking_core::Store;
use booking_core::domain::{
    Amount, ConcertName, IdempotencyKey, Money, NewConcert, NewSchedule, PaymentId, QueueSeq,
    ReservationId, ScheduleId, SeatCount, SeatNo, SeatPrices, Timestamp, TokenId, UserId,
};
use booking_core::ports::{Advance, ChargeRequest, IssueRequest, NewHold, PayRequest};
use booking_store::{PgStore, SqliteStore};
use tokio::task::JoinSet;

const LEVELS: [usize; 3] = [1, 16, 64];
const T0: Timestamp = Timestamp::from_millis(1_767_225_600_000);
/// Payments measured per level (each needs its own session, hold and balance).
const PAYMENTS: usize = 2_000;

/// Raw statements on the same database, for the ratios.
trait Raw: Send + Sync + 'static {
    fn setup(&self) -> impl Future<Output = ()> + Send;
    /// One durable single-row UPDATE of row `id`.
    fn update(&self, id: i64) -> impl Future<Output = ()> + Send;
    /// One transaction: a conditional debit, a row update and an insert.
    fn three(&self, id: i64, n: i64) -> impl Future<Output = ()> + Send;
}

impl Raw for SqliteStore {
    async fn setup(&self) {
        for sql in [
            "CREATE TABLE IF NOT EXISTS bench_rows (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)",
            "CREATE TABLE IF NOT EXISTS bench_wallets (id INTEGER PRIMARY KEY, balance INTEGER NOT NULL)",
            "CREATE TABLE IF NOT EXISTS bench_history (id INTEGER, n INTEGER)",
        ] {
            sqlx::query(sql)
                .execute(self.write_pool())
                .await
                .expect("setup");
        }
        for id in 0..64i64 {
            sqlx::query("INSERT OR IGNORE INTO bench_rows VALUES (?, 0)")
                .bind(id)
                .execute(self.write_pool())
                .await
                .expect("row");
            sqlx::query("INSERT OR IGNORE INTO bench_wallets VALUES (?, 1000000000)")
                .bind(id)
                .execute(self.write_pool())
                .await
                .expect("wallet");
        }
    }

    async fn update(&self, id: i64) {
        sqlx::query("UPDATE bench_rows SET n = n + 1 WHERE id = ?")
            .bind(id)
            .execute(self.write_pool())
            .await
            .expect("update");
    }

    async fn three(&self, id: i64, n: i64) {
        let mut tx = self
            .write_pool()
            .begin_with("BEGIN IMMEDIATE")
            .await
            .expect("begin");
        sqlx::query("UPDATE bench_wallets SET balance = balance - 1 WHERE id = ? AND balance >= 1")
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
}

impl Raw for PgStore {
    async fn setup(&self) {
        for sql in [
            "CREATE TABLE IF NOT EXISTS bench_rows (id BIGINT PRIMARY KEY, n BIGINT NOT NULL)",
            "CREATE TABLE IF NOT EXISTS bench_wallets (id BIGINT PRIMARY KEY, balance BIGINT NOT NULL)",
            "CREATE TABLE IF NOT EXISTS bench_history (id BIGINT, n BIGINT)",
            "INSERT INTO bench_rows SELECT g, 0 FROM generate_series(0, 63) g ON CONFLICT DO NOTHING",
            "INSERT INTO bench_wallets SELECT g, 1000000000 FROM generate_series(0, 63) g
             ON CONFLICT DO NOTHING",
        ] {
            sqlx::query(sql).execute(self.pool()).await.expect("setup");
        }
    }

    async fn update(&self, id: i64) {
        sqlx::query("UPDATE bench_rows SET n = n + 1 WHERE id = $1")
            .bind(id)
            .execute(self.pool())
            .await
            .expect("update");
    }

    async fn three(&self, id: i64, n: i64) {
        let mut tx = self.pool().begin().await.expect("begin");
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

/// Runs `op(task, i)` on `tasks` tasks for `secs`; returns operations per second.
async fn rate<F, Fut>(tasks: usize, secs: f64, op: F) -> f64
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send,
{
    let op = Arc::new(op);
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(secs);
    let mut set = JoinSet::new();
    for t in 0..tasks {
        let (op, done) = (Arc::clone(&op), Arc::clone(&done));
        set.spawn(async move {
            let mut i = 0u64;
            while Instant::now() < deadline {
                op(t, i).await;
                i += 1;
            }
            done.fetch_add(i, Ordering::Relaxed);
        });
    }
    set.join_all().await;
    done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

fn seat(n: usize) -> SeatNo {
    SeatNo::new(n as i64).expect("seat")
}

fn ts(ms: i64) -> Timestamp {
    Timestamp::from_millis(ms)
}

/// Creates `n` users with admitted sessions (one advance for all); returns them
/// with their session sequence numbers.
async fn admitted_users<S: Store>(store: &S, n: usize, now: Timestamp) -> Vec<(UserId, QueueSeq)> {
    let mut users = Vec::with_capacity(n);
    for _ in 0..n {
        let user = UserId::random();
        let e = store
            .issue(IssueRequest {
                user,
                token_id: TokenId::random(),
                now,
                max_waiting: 10_000_000,
            })
            .await
            .expect("issue");
        users.push((user, e.seq));
    }
    let c = store.counters().await.expect("counters");
    let adv = Advance {
        expected_version: c.version,
        serving: c.last_seq,
        now,
        admitted_until: now.plus(Duration::from_secs(10 * 365 * 86_400)),
        admit_rate_milli: 0,
    };
    assert!(store.advance(adv).await.expect("advance"));
    users
}

async fn new_schedule<S: Store>(store: &S, seats: usize, day: u64) -> ScheduleId {
    let concert = store
        .create_concert(NewConcert {
            name: ConcertName::new("Bench").expect("name"),
        })
        .await
        .expect("concert");
    let new = NewSchedule::new(
        concert.id,
        T0.plus(Duration::from_secs(day * 86_400)),
        SeatCount::new(seats as i64).expect("count"),
        SeatPrices::Uniform(Amount::new(100).expect("price")),
    )
    .expect("schedule");
    store.create_schedule(new).await.expect("create").id
}

struct Row {
    tasks: usize,
    raw_update: f64,
    hold: f64,
    reclaim: f64,
    charge: f64,
    raw_three: f64,
    pay: f64,
}

async fn bench<S: Store + Raw + Clone>(name: &str, store: S, secs: f64) -> Vec<Row> {
    store.setup().await;
    let mut rows = Vec::new();
    let mut day = 1;
    for &tasks in &LEVELS {
        // Raw single-row UPDATE: each task its own row.
        let s = store.clone();
        let raw_update = rate(tasks, secs, move |t, _| {
            let s = s.clone();
            async move { s.update(t as i64).await }
        })
        .await;

        // Holds on free seats, the common case: each task one user; every hold takes
        // the next untouched seat of a pool big enough for the measurement, and lapses
        // 1 ms after it is taken, so the user's cap never refuses. `now` follows one
        // shared counter, so a seat met again after the pool wraps has lapsed.
        let seats_needed = ((secs * 8_000.0) as usize).max(tasks);
        let mut pool = Vec::new();
        for _ in 0..seats_needed.div_ceil(1_000) {
            pool.push(new_schedule(&store, 1_000, day).await);
            day += 1;
        }
        let pool = Arc::new(pool);
        let users = Arc::new(admitted_users(&store, tasks, T0).await);
        let next = Arc::new(AtomicU64::new(0));
        let s = store.clone();
        let hold = rate(tasks, secs, move |t, _| {
            let (s, users, pool, next) = (
                s.clone(),
                Arc::clone(&users),
                Arc::clone(&pool),
                Arc::clone(&next),
            );
            async move {
                let k = next.fetch_add(1, Ordering::Relaxed) as usize;
                let slot = k % (pool.len() * 1_000);
                let now = ts(T0.as_millis() + 2 * k as i64);
                s.hold(NewHold {
                    id: ReservationId::random(),
                    user: users[t].0,
                    session: users[t].1,
                    schedule: pool[slot / 1_000],
                    seat: seat(slot % 1_000 + 1),
                    now,
                    expires_at: now.plus(Duration::from_millis(1)),
                    max_live_per_user: 4,
                })
                .await
                .expect("hold");
            }
        })
        .await;

        // Holds that reclaim a lapsed seat: each task one user and one seat of its
        // own, each hold lapsing 1 ms after it is taken (the op's own clock), so the
        // next one reclaims the seat and also records the lapsed hold as expired.
        let sched = new_schedule(&store, tasks, day).await;
        day += 1;
        let users = Arc::new(admitted_users(&store, tasks, T0).await);
        let s = store.clone();
        let reclaim = rate(tasks, secs, move |t, i| {
            let (s, users) = (s.clone(), Arc::clone(&users));
            async move {
                let now = ts(T0.as_millis() + 2 * i as i64);
                s.hold(NewHold {
                    id: ReservationId::random(),
                    user: users[t].0,
                    session: users[t].1,
                    schedule: sched,
                    seat: seat(t + 1),
                    now,
                    expires_at: now.plus(Duration::from_millis(1)),
                    max_live_per_user: 4,
                })
                .await
                .expect("hold");
            }
        })
        .await;

        // Charges: each task its own user.
        let s = store.clone();
        let charge_users: Arc<Vec<UserId>> =
            Arc::new((0..tasks).map(|_| UserId::random()).collect());
        let charge = rate(tasks, secs, move |t, _| {
            let (s, users) = (s.clone(), Arc::clone(&charge_users));
            async move {
                s.charge(ChargeRequest {
                    user: users[t],
                    amount: Amount::new(1).expect("amount"),
                    max_balance: Money::new(i64::MAX).expect("max"),
                    key: None,
                    now: T0,
                })
                .await
                .expect("charge");
            }
        })
        .await;

        // Raw three-statement transaction.
        let s = store.clone();
        let raw_three = rate(tasks, secs, move |t, i| {
            let s = s.clone();
            async move { s.three(t as i64, i as i64).await }
        })
        .await;

        // Payments: PAYMENTS prepared sessions, holds and balances, then paid by
        // `tasks` tasks as fast as they go.
        let mut scheds = Vec::new();
        for _ in 0..PAYMENTS.div_ceil(1_000) {
            scheds.push(new_schedule(&store, 1_000, day).await);
            day += 1;
        }
        let payers = admitted_users(&store, PAYMENTS, T0).await;
        let mut work = Vec::with_capacity(PAYMENTS);
        for (k, (user, session)) in payers.iter().enumerate() {
            let (sched, no) = (scheds[k / 1_000], k % 1_000 + 1);
            let h = store
                .hold(NewHold {
                    id: ReservationId::random(),
                    user: *user,
                    session: *session,
                    schedule: sched,
                    seat: seat(no),
                    now: T0,
                    expires_at: T0.plus(Duration::from_secs(3_600)),
                    max_live_per_user: 4,
                })
                .await
                .expect("hold");
            store
                .charge(ChargeRequest {
                    user: *user,
                    amount: Amount::new(100).expect("amount"),
                    max_balance: Money::new(i64::MAX).expect("max"),
                    key: Some(IdempotencyKey::new(format!("bench-{k}")).expect("key")),
                    now: T0,
                })
                .await
                .expect("charge");
            work.push(PayRequest {
                id: PaymentId::random(),
                reservation: h.id,
                user: *user,
                session: *session,
                key: None,
                now: T0,
            });
        }
        let work = Arc::new(std::sync::Mutex::new(work));
        let start = Instant::now();
        let mut set = JoinSet::new();
        for _ in 0..tasks {
            let (s, work) = (store.clone(), Arc::clone(&work));
            set.spawn(async move {
                loop {
                    let next = work.lock().expect("lock").pop();
                    let Some(req) = next else { break };
                    s.pay(req).await.expect("pay");
                }
            });
        }
        set.join_all().await;
        let pay = PAYMENTS as f64 / start.elapsed().as_secs_f64();

        eprintln!("{name}: {tasks} tasks done");
        rows.push(Row {
            tasks,
            raw_update,
            hold,
            reclaim,
            charge,
            raw_three,
            pay,
        });
    }
    rows
}

fn print(name: &str, rows: &[Row]) {
    println!();
    println!("## {name}");
    println!();
    println!(
        "| tasks | raw UPDATE/s | hold/s | hold / raw | reclaim/s | reclaim / raw | charge/s | charge / raw | raw 3-stmt tx/s | pay/s | pay / raw 3-stmt |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        println!(
            "| {} | {:.0} | {:.0} | {:.0}% | {:.0} | {:.0}% | {:.0} | {:.0}% | {:.0} | {:.0} | {:.0}% |",
            r.tasks,
            r.raw_update,
            r.hold,
            100.0 * r.hold / r.raw_update,
            r.reclaim,
            100.0 * r.reclaim / r.raw_update,
            r.charge,
            100.0 * r.charge / r.raw_update,
            r.raw_three,
            r.pay,
            100.0 * r.pay / r.raw_three,
        );
    }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let secs: f64 = std::env::var("BOOKING_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    let backends =
        std::env::var("BOOKING_BENCH_BACKENDS").unwrap_or_else(|_| "sqlite,postgres".into());
    println!(
        "# booking-store benchmark ({secs} s per measurement, {} cores)",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    if backends.contains("sqlite") {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = SqliteStore::open_path(&dir.path().join("bench.db"), 8)
            .await
            .expect("sqlite");
        let rows = bench("SQLite", store, secs).await;
        print(
            "SQLite (WAL, synchronous=NORMAL, one writer connection)",
            &rows,
        );
    }
    if backends.contains("postgres") {
        let db = booking_testkit::pg::database_on(booking_testkit::pg::durable_server_url()).await;
        let store = PgStore::open(&db.url, 64).await.expect("postgres");
        let rows = bench("PostgreSQL", store.clone(), secs).await;
        print("PostgreSQL 15 (fsync on, pool of 64)", &rows);
        store.close().await;
    }
}
