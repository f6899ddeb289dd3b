//! Store benchmark: holds/s, charges/s and payments/s on SQLite and PostgreSQL at 1,
//! 16 and 64 concurrent tasks, each beside a raw rate measured on the same database in
//! the same run: a single-row `UPDATE` for holds and charges, a three-statement
//! transaction (debit, seat, history row) for payments.
//!
//! Beside the hold rate, the floor under it: a `bare claim` is the one write a hold
//! cannot do without (one `UPDATE` naming the hold on a free seat of the engine's own
//! `seats` table), with none of its checks (live session, the user's cap, the record
//! of a lapsed hold). `hold / claim` is what the engine's rules cost; `claim / raw` is
//! what writing a fresh seat row costs next to updating one small hot row.
//!
//! Likewise a `bare pay` is a payment's writes (the session ends, the seat is sold,
//! the wallet pays, the payment and its ledger row are written) in one statement,
//! with none of its locks and checks.
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
use std::time::Duration;

use booking_core::Store;
use booking_core::domain::{Hold, QueueSeq, ScheduleId, Timestamp, UserId};
use booking_core::ports::PayRequest;
use booking_store::{GroupCommitStats, PgStore, SqliteStore};
use booking_testkit::bench::{self, RawDb, drain, rate};
use booking_testkit::ports;

const LEVELS: [usize; 3] = [1, 16, 64];
const T0: Timestamp = Timestamp::from_millis(1_767_225_600_000);
/// Payments measured per level (each needs its own session, hold and balance).
const PAYMENTS: usize = 2_000;

fn ts(ms: i64) -> Timestamp {
    Timestamp::from_millis(ms)
}

/// Users admitted for the whole run.
async fn admitted_users<S: Store>(store: &S, n: usize, now: Timestamp) -> Vec<(UserId, QueueSeq)> {
    let until = now.plus(Duration::from_secs(10 * 365 * 86_400));
    ports::admitted_users(store, n, now, until).await
}

async fn new_schedule<S: Store>(store: &S, seats: usize, day: u64) -> ScheduleId {
    ports::schedule(store, seats, T0.plus(Duration::from_secs(day * 86_400))).await
}

/// Fresh schedules of 1,000 seats each, enough for `secs` of holds at 8,000 a second:
/// seat `k` of the pool is seat `k % 1000 + 1` of schedule `k / 1000`.
async fn seat_pool<S: Store>(
    store: &S,
    secs: f64,
    tasks: usize,
    day: &mut u64,
) -> Arc<Vec<ScheduleId>> {
    let seats_needed = ((secs * 8_000.0) as usize).max(tasks);
    let mut pool = Vec::new();
    for _ in 0..seats_needed.div_ceil(1_000) {
        pool.push(new_schedule(store, 1_000, *day).await);
        *day += 1;
    }
    Arc::new(pool)
}

/// PAYMENTS payments ready to run: each its own admitted user with a live hold on a
/// seat of fresh schedules and a balance that covers it.
async fn prepared_payments<S: Store>(store: &S, day: &mut u64) -> Vec<(PayRequest, Hold)> {
    let mut scheds = Vec::new();
    for _ in 0..PAYMENTS.div_ceil(1_000) {
        scheds.push(new_schedule(store, 1_000, *day).await);
        *day += 1;
    }
    let payers = admitted_users(store, PAYMENTS, T0).await;
    let mut work = Vec::with_capacity(PAYMENTS);
    for (k, (user, session)) in payers.iter().enumerate() {
        let (sched, no) = (scheds[k / 1_000], k % 1_000 + 1);
        let h = store
            .hold(ports::hold(
                (*user, *session),
                sched,
                no as i64,
                T0,
                Duration::from_secs(3_600),
                4,
            ))
            .await
            .expect("hold");
        store
            .charge(ports::charge(
                *user,
                100,
                Some(&format!("bench-{k}")),
                i64::MAX,
                T0,
            ))
            .await
            .expect("charge");
        let req = ports::pay((*user, *session), h.id, T0);
        work.push((req, h));
    }
    work
}

struct Row {
    tasks: usize,
    raw_update: f64,
    claim: f64,
    hold: f64,
    reclaim: f64,
    charge: f64,
    raw_three: f64,
    settle: f64,
    pay: f64,
}

async fn bench<S: Store + Clone>(name: &str, store: S, raw: RawDb, secs: f64) -> Vec<Row> {
    raw.setup().await;
    let mut rows = Vec::new();
    let mut day = 1;
    for &tasks in &LEVELS {
        // Raw single-row UPDATE: each task its own row.
        let r = raw.clone();
        let raw_update = rate(tasks, secs, move |t, _| {
            let r = r.clone();
            async move {
                r.update(t as i64).await;
                true
            }
        })
        .await;

        // The floor under a hold: its one seat write alone, with none of its checks,
        // on free seats as below.
        let pool = seat_pool(&store, secs, tasks, &mut day).await;
        let next = Arc::new(AtomicU64::new(0));
        let r = raw.clone();
        let claim = rate(tasks, secs, move |_, _| {
            let (r, pool, next) = (r.clone(), Arc::clone(&pool), Arc::clone(&next));
            async move {
                let k = next.fetch_add(1, Ordering::Relaxed) as usize;
                let slot = k % (pool.len() * 1_000);
                let now = T0.as_millis() + 2 * k as i64;
                r.claim(
                    pool[slot / 1_000].get(),
                    (slot % 1_000 + 1) as i64,
                    uuid::Uuid::new_v4(),
                    uuid::Uuid::new_v4(),
                    now,
                    now + 1,
                )
                .await
            }
        })
        .await;

        // Holds on free seats, the common case: each task one user; every hold takes
        // the next untouched seat of a pool big enough for the measurement, and lapses
        // 1 ms after it is taken, so the user's cap never refuses. `now` follows one
        // shared counter, so a seat met again after the pool wraps has lapsed.
        let pool = seat_pool(&store, secs, tasks, &mut day).await;
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
                s.hold(ports::hold(
                    users[t],
                    pool[slot / 1_000],
                    (slot % 1_000 + 1) as i64,
                    now,
                    Duration::from_millis(1),
                    4,
                ))
                .await
                .expect("hold");
                true
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
                s.hold(ports::hold(
                    users[t],
                    sched,
                    (t + 1) as i64,
                    now,
                    Duration::from_millis(1),
                    4,
                ))
                .await
                .expect("hold");
                true
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
                s.charge(ports::charge(users[t], 1, None, i64::MAX, T0))
                    .await
                    .expect("charge");
                true
            }
        })
        .await;

        // Raw three-statement transaction.
        let r = raw.clone();
        let raw_three = rate(tasks, secs, move |t, i| {
            let r = r.clone();
            async move {
                r.three(t as i64, i as i64).await;
                true
            }
        })
        .await;

        // The floor under a payment: its writes alone, with none of its checks, on
        // payments prepared as below.
        let work = prepared_payments(&store, &mut day).await;
        let r = raw.clone();
        let settle = drain(tasks, secs, work, move |(req, hold)| {
            let r = r.clone();
            async move {
                r.settle(
                    req.session.get() as i64,
                    hold.schedule.get(),
                    i64::from(hold.seat.get()),
                    req.reservation.as_uuid(),
                    req.user.as_uuid(),
                    hold.price.minor_units(),
                    req.id.as_uuid(),
                    req.now.as_millis(),
                )
                .await
            }
        })
        .await;

        // Payments: PAYMENTS prepared sessions, holds and balances, then paid by
        // `tasks` tasks as fast as they go (until they run out, or `secs` pass).
        let work = prepared_payments(&store, &mut day).await;
        let s = store.clone();
        let pay = drain(tasks, secs, work, move |(req, _)| {
            let s = s.clone();
            async move {
                s.pay(req).await.expect("pay");
                true
            }
        })
        .await;

        eprintln!("{name}: {tasks} tasks done");
        rows.push(Row {
            tasks,
            raw_update,
            claim,
            hold,
            reclaim,
            charge,
            raw_three,
            settle,
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
        "| tasks | raw UPDATE/s | bare claim/s | claim / raw | hold/s | hold / raw | hold / claim | reclaim/s | reclaim / raw | charge/s | charge / raw | raw 3-stmt tx/s | bare pay/s | bare pay / raw 3-stmt | pay/s | pay / raw 3-stmt | pay / bare pay |"
    );
    println!(
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for r in rows {
        println!(
            "| {} | {:.0} | {:.0} | {:.0}% | {:.0} | {:.0}% | {:.0}% | {:.0} | {:.0}% | {:.0} | {:.0}% | {:.0} | {:.0} | {:.0}% | {:.0} | {:.0}% | {:.0}% |",
            r.tasks,
            r.raw_update,
            r.claim,
            100.0 * r.claim / r.raw_update,
            r.hold,
            100.0 * r.hold / r.raw_update,
            100.0 * r.hold / r.claim,
            r.reclaim,
            100.0 * r.reclaim / r.raw_update,
            r.charge,
            100.0 * r.charge / r.raw_update,
            r.raw_three,
            r.settle,
            100.0 * r.settle / r.raw_three,
            r.pay,
            100.0 * r.pay / r.raw_three,
            100.0 * r.pay / r.settle,
        );
    }
}

fn print_group_commit(g: GroupCommitStats) {
    println!();
    println!(
        "Group commit (all levels): {} hot writes ran alone, {} queued; {} of them \
         shared {} commits ({:.1} a commit), {} were sent back to run alone (a row \
         locked elsewhere), {} batches retried alone.",
        g.direct,
        g.queued,
        g.batched,
        g.batches,
        g.batched as f64 / g.batches.max(1) as f64,
        g.deferred,
        g.retried
    );
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let secs: f64 = bench::setting("BOOKING_BENCH_SECS", 3.0);
    let backends = bench::backends();
    println!(
        "# booking-store benchmark ({secs} s per measurement, {} cores)",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    if backends.contains("sqlite") {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = SqliteStore::open_path(&dir.path().join("bench.db"), 8)
            .await
            .expect("sqlite");
        let raw = RawDb::Sqlite(store.write_pool().clone());
        let rows = bench("SQLite", store.clone(), raw, secs).await;
        print(
            "SQLite (WAL, synchronous=NORMAL, one writer connection)",
            &rows,
        );
        print_group_commit(store.group_commit_stats());
    }
    if backends.contains("postgres") {
        let db = booking_testkit::pg::database_on(booking_testkit::pg::durable_server_url()).await;
        let store = PgStore::open(&db.url, 64).await.expect("postgres");
        let raw = RawDb::Postgres(store.pool().clone());
        let rows = bench("PostgreSQL", store.clone(), raw, secs).await;
        print("PostgreSQL 15 (fsync on, pool of 64)", &rows);
        print_group_commit(store.group_commit_stats());
        store.close().await;
    }
}
