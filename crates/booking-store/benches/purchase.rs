//! Full purchases: hold a seat, top up the wallet, pay, one user after another on
//! many tasks, with a large catalog (by default 1,000 dates of 50 seats), beside a
//! raw three-statement transaction (a conditional debit, a row update, an insert)
//! measured on the same database in the same run. A purchase is three writes of
//! the engine's own, each with its checks (live session, seat free, the user's cap;
//! idempotency key; session live, hold live, balance), so a rate near the raw
//! transaction's means the three share commits well.
//!
//! Each purchase is a user admitted beforehand with a seat of its own to take, so
//! nothing is refused; every write is checked to succeed.
//!
//! ```text
//! cargo bench -p booking-store --bench purchase
//! BOOKING_BENCH_PURCHASES=5000 BOOKING_BENCH_BACKENDS=postgres cargo bench -p booking-store --bench purchase
//! ```
//!
//! PostgreSQL: `BOOKING_TEST_POSTGRES_URL` if set, else a throwaway local server with
//! `fsync` on; three store values (three connection pools) stand for three server
//! instances. SQLite: one store (WAL, synchronous=NORMAL).

use std::time::Duration;

use booking_core::Store;
use booking_core::domain::{QueueSeq, ScheduleId, Timestamp, UserId};
use booking_store::{PgStore, SqliteStore};
use booking_testkit::bench::{self, RawDb, drain, rate};
use booking_testkit::ports;

const T0: Timestamp = Timestamp::from_millis(1_767_225_600_000);
const SEATS: usize = 50;
/// Concurrent purchases measured.
const LEVELS: [usize; 2] = [64, 256];

/// One purchase to make: who, and which seat.
struct Purchase {
    user: (UserId, QueueSeq),
    schedule: ScheduleId,
    seat: i64,
    key: String,
}

/// `dates` schedules of [`SEATS`] seats.
async fn catalog<S: Store>(store: &S, dates: usize) -> Vec<ScheduleId> {
    let mut scheds = Vec::with_capacity(dates);
    for d in 0..dates {
        let at = T0.plus(Duration::from_secs(86_400 * (d as u64 + 1)));
        scheds.push(ports::schedule(store, SEATS, at).await);
    }
    scheds
}

/// `n` purchases of admitted users, seat `k` of the catalog for the `k`-th (counted
/// from `first`), spread over the dates first.
async fn purchases<S: Store>(
    store: &S,
    scheds: &[ScheduleId],
    first: usize,
    n: usize,
) -> Vec<Purchase> {
    let until = T0.plus(Duration::from_secs(10 * 365 * 86_400));
    let users = ports::admitted_users(store, n, T0, until).await;
    users
        .into_iter()
        .enumerate()
        .map(|(i, user)| {
            let k = first + i;
            Purchase {
                user,
                schedule: scheds[k % scheds.len()],
                seat: (k / scheds.len() % SEATS) as i64 + 1,
                key: format!("purchase-{k}"),
            }
        })
        .collect()
}

/// Hold, charge, pay; panics on any refusal, since none is expected.
async fn buy<S: Store>(store: &S, p: Purchase) -> bool {
    let hold = store
        .hold(ports::hold(
            p.user,
            p.schedule,
            p.seat,
            T0,
            Duration::from_secs(3_600),
            4,
        ))
        .await
        .expect("hold");
    store
        .charge(ports::charge(p.user.0, 100, Some(&p.key), i64::MAX, T0))
        .await
        .expect("charge");
    store
        .pay(ports::pay(p.user, hold.id, T0))
        .await
        .expect("pay");
    true
}

struct Row {
    tasks: usize,
    purchases: usize,
    per_sec: f64,
}

/// Each level buys its own `per_level` seats over `stores`, round-robin.
async fn measure<S: Store + Clone>(
    stores: &[S],
    scheds: &[ScheduleId],
    per_level: usize,
    secs: f64,
) -> Vec<Row> {
    let mut rows = Vec::new();
    for (l, tasks) in LEVELS.into_iter().enumerate() {
        let work = purchases(&stores[0], scheds, l * per_level, per_level).await;
        let stores = stores.to_vec();
        let counter = std::sync::atomic::AtomicUsize::new(0);
        let counter = std::sync::Arc::new(counter);
        let per_sec = drain(tasks, secs, work, move |p| {
            let i = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let store = stores[i % stores.len()].clone();
            async move { buy(&store, p).await }
        })
        .await;
        rows.push(Row {
            tasks,
            purchases: per_level,
            per_sec,
        });
    }
    rows
}

async fn raw_three(raw: RawDb, tasks: usize, secs: f64) -> f64 {
    raw.setup().await;
    rate(tasks, secs, move |_, i| {
        let raw = raw.clone();
        async move {
            raw.three((i % 64) as i64, i as i64).await;
            true
        }
    })
    .await
}

fn print(name: &str, dates: usize, rows: &[Row], raw: f64, raw_tasks: usize) {
    println!();
    println!("## {name}");
    println!();
    println!("| tasks | purchases | purchases/s | / raw 3-statement tx |");
    println!("|---:|---:|---:|---:|");
    for r in rows {
        println!(
            "| {} | {} | {:.0} | {:.0}% |",
            r.tasks,
            r.purchases,
            r.per_sec,
            100.0 * r.per_sec / raw
        );
    }
    println!();
    println!(
        "Catalog: {dates} dates x {SEATS} seats. Raw three-statement transaction, \
         {raw_tasks} tasks: {raw:.0}/s."
    );
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let secs: f64 = bench::setting("BOOKING_BENCH_SECS", 10.0);
    let dates: usize = bench::setting("BOOKING_BENCH_DATES", 1_000);
    let per_level: usize = bench::setting("BOOKING_BENCH_PURCHASES", 5_000);
    assert!(
        per_level * LEVELS.len() <= dates * SEATS,
        "more purchases than seats: raise BOOKING_BENCH_DATES"
    );
    let backends = bench::backends();
    println!(
        "# Purchase benchmark (hold + charge + pay; {per_level} purchases per level, \
         at most {secs} s; {} cores)",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    if backends.contains("sqlite") {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = SqliteStore::open_path(&dir.path().join("bench.db"), 8)
            .await
            .expect("sqlite");
        let scheds = catalog(&store, dates).await;
        let rows = measure(std::slice::from_ref(&store), &scheds, per_level, secs).await;
        let raw = raw_three(RawDb::Sqlite(store.write_pool().clone()), 64, secs.min(3.0)).await;
        print(
            "SQLite (WAL, synchronous=NORMAL, one instance)",
            dates,
            &rows,
            raw,
            64,
        );
        println!("Group commit: {:?}", store.group_commit_stats());
    }
    if backends.contains("postgres") {
        let db = booking_testkit::pg::database_on(booking_testkit::pg::durable_server_url()).await;
        let mut stores = Vec::new();
        for _ in 0..3 {
            stores.push(PgStore::open(&db.url, 32).await.expect("postgres"));
        }
        let scheds = catalog(&stores[0], dates).await;
        let rows = measure(&stores, &scheds, per_level, secs).await;
        let raw = raw_three(RawDb::Postgres(stores[0].pool().clone()), 64, secs.min(3.0)).await;
        print(
            "PostgreSQL 15 (fsync on, 3 instances, pools of 32)",
            dates,
            &rows,
            raw,
            64,
        );
        for s in &stores {
            println!("Group commit: {:?}", s.group_commit_stats());
            s.close().await;
        }
    }
}
