//! Token issue under a burst: N users ask for a place at the same instant, spread
//! over K store values (each its own connection pool, standing for K server
//! instances on one database). Reports the time until every one was answered, the
//! rate that makes, and the latency percentiles, beside a raw single-row `INSERT`
//! (a fresh key and a time, the id from the table's sequence) measured closed-loop
//! on the same database in the same run: issuing a place appends one row.
//!
//! Every burst also checks what it got: the places are `last + 1 ..= last + N`,
//! each user once.
//!
//! ```text
//! cargo bench -p booking-store --bench issue
//! BOOKING_BENCH_USERS=10000 BOOKING_BENCH_BACKENDS=postgres cargo bench -p booking-store --bench issue
//! ```
//!
//! PostgreSQL: `BOOKING_TEST_POSTGRES_URL` if set, else a throwaway local server with
//! `fsync` on.

use std::time::{Duration, Instant};

use booking_core::Store;
use booking_core::domain::{QueueSeq, Timestamp, TokenId, UserId};
use booking_store::{PgStore, SqliteStore};
use booking_testkit::bench::{self, RawDb, rate};
use booking_testkit::ports;
use tokio::task::JoinSet;

const T0: Timestamp = Timestamp::from_millis(1_767_225_600_000);

struct Burst {
    instances: usize,
    users: usize,
    all_answered: Duration,
    p50: Duration,
    p99: Duration,
    max: Duration,
}

/// `users` issues at once over `stores`; checks that the places are exactly the
/// next `users` sequences, each user once.
async fn burst<S: Store + Clone>(stores: &[S], users: usize) -> Burst {
    let before = stores[0].counters().await.expect("counters").last_seq;
    let start = Instant::now();
    let mut set = JoinSet::new();
    for i in 0..users {
        let store = stores[i % stores.len()].clone();
        let user = UserId::random();
        set.spawn(async move {
            let sent = Instant::now();
            let entry = store
                .issue(ports::issue(user, TokenId::random(), T0, 1_000_000))
                .await
                .expect("issue");
            assert_eq!(entry.user, user, "a place for someone else");
            (entry.seq, sent.elapsed())
        });
    }
    let answers = set.join_all().await;
    let all_answered = start.elapsed();
    let mut seqs: Vec<QueueSeq> = answers.iter().map(|(s, _)| *s).collect();
    seqs.sort_unstable();
    let expected: Vec<u64> = (before + 1..=before + users as u64).collect();
    let got: Vec<u64> = seqs.iter().map(|s| s.get()).collect();
    assert!(got == expected, "places are not the next {users} sequences");
    let mut lat: Vec<Duration> = answers.into_iter().map(|(_, d)| d).collect();
    lat.sort_unstable();
    let at = |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)];
    Burst {
        instances: stores.len(),
        users,
        all_answered,
        p50: at(0.50),
        p99: at(0.99),
        max: at(1.0),
    }
}

/// Closed-loop issues of new users on `tasks` tasks for `secs`.
async fn sustained<S: Store + Clone>(stores: &[S], tasks: usize, secs: f64) -> f64 {
    let stores = stores.to_vec();
    rate(tasks, secs, move |t, _| {
        let store = stores[t % stores.len()].clone();
        async move {
            store
                .issue(ports::issue(
                    UserId::random(),
                    TokenId::random(),
                    T0,
                    10_000_000,
                ))
                .await
                .is_ok()
        }
    })
    .await
}

async fn raw_insert(raw: RawDb, tasks: usize, secs: f64) -> f64 {
    raw.setup().await;
    rate(tasks, secs, move |_, i| {
        let raw = raw.clone();
        async move {
            raw.insert(i as i64).await;
            true
        }
    })
    .await
}

fn print(name: &str, bursts: &[Burst], issue_rate: f64, raw: f64, tasks: usize) {
    println!();
    println!("## {name}");
    println!();
    println!(
        "| instances | users at once | all answered | issues/s | p50 | p99 | max | issues/s / raw INSERT/s |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    for b in bursts {
        let per_sec = b.users as f64 / b.all_answered.as_secs_f64();
        println!(
            "| {} | {} | {:.0} ms | {:.0} | {:.1} ms | {:.1} ms | {:.1} ms | {:.0}% |",
            b.instances,
            b.users,
            b.all_answered.as_secs_f64() * 1e3,
            per_sec,
            b.p50.as_secs_f64() * 1e3,
            b.p99.as_secs_f64() * 1e3,
            b.max.as_secs_f64() * 1e3,
            100.0 * per_sec / raw,
        );
    }
    println!();
    println!(
        "Closed loop, {tasks} tasks: {issue_rate:.0} issues/s; raw single-row INSERT: \
         {raw:.0}/s ({:.0}%).",
        100.0 * issue_rate / raw
    );
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let secs: f64 = bench::setting("BOOKING_BENCH_SECS", 3.0);
    let users: usize = bench::setting("BOOKING_BENCH_USERS", 10_000);
    let backends = bench::backends();
    let tasks = 64;
    println!(
        "# Token issue benchmark ({users} users at once; closed loop {secs} s; {} cores)",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    if backends.contains("sqlite") {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = SqliteStore::open_path(&dir.path().join("bench.db"), 8)
            .await
            .expect("sqlite");
        let stores = [store.clone()];
        let b = burst(&stores, users).await;
        let issue_rate = sustained(&stores, tasks, secs).await;
        let raw = raw_insert(RawDb::Sqlite(store.write_pool().clone()), tasks, secs).await;
        print(
            "SQLite (WAL, synchronous=NORMAL, one instance)",
            &[b],
            issue_rate,
            raw,
            tasks,
        );
        println!("Group commit: {:?}", store.group_commit_stats());
    }
    if backends.contains("postgres") {
        let db = booking_testkit::pg::database_on(booking_testkit::pg::durable_server_url()).await;
        let mut stores = Vec::new();
        for _ in 0..3 {
            stores.push(PgStore::open(&db.url, 32).await.expect("postgres"));
        }
        let one = burst(&stores[..1], users).await;
        let three = burst(&stores, users).await;
        let issue_rate = sustained(&stores, tasks, secs).await;
        let raw = raw_insert(RawDb::Postgres(stores[0].pool().clone()), tasks, secs).await;
        print(
            "PostgreSQL 15 (fsync on, pools of 32)",
            &[one, three],
            issue_rate,
            raw,
            tasks,
        );
        for s in &stores {
            println!("Group commit: {:?}", s.group_commit_stats());
            s.close().await;
        }
    }
}
