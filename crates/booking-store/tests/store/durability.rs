//! I7 Nothing lost: a write that a process acknowledged is there after that process
//! is killed with SIGKILL and the database is opened again.
//!
//! Each test runs twice: as the parent, it starts this very test binary again as a
//! child (selected by an environment variable) that charges a wallet in a loop and
//! prints `ACK n` after each charge returns. The parent kills the child with SIGKILL
//! after a few hundred acknowledgements, reopens the database and checks that every
//! acknowledged charge is in the ledger.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use booking_core::domain::{Amount, IdempotencyKey, Money, UserId};
use booking_core::ports::{ChargeRequest, WalletRepo};
use booking_store::{PgStore, SqliteStore};

const CHILD_URL: &str = "BOOKING_DURABILITY_CHILD_URL";
const CHILD_USER: &str = "BOOKING_DURABILITY_CHILD_USER";
const N_ACKS: u64 = 300;

fn charge(user: UserId, n: u64) -> ChargeRequest {
    ChargeRequest {
        user,
        amount: Amount::new(1).expect("amount"),
        max_balance: Money::new(i64::MAX).expect("max"),
        key: Some(IdempotencyKey::new(format!("charge-{n}")).expect("key")),
        now: booking_testkit::T0,
    }
}

/// The child's loop: charge, acknowledge, repeat, until killed.
async fn child_loop(store: impl WalletRepo, user: UserId) -> ! {
    let mut n = 0u64;
    loop {
        store.charge(charge(user, n)).await.expect("charge");
        println!("ACK {n}");
        n += 1;
    }
}

/// The name the test harness knows `test` of this module by: its module path within
/// the test binary (the crate's own name left out), then the function's name.
fn harness_name(test: &str) -> String {
    match module_path!().split_once("::") {
        Some((_binary, module)) => format!("{module}::{test}"),
        None => test.to_owned(),
    }
}

/// Runs the child (this test binary, running only `test`), kills it after `N_ACKS`
/// acknowledgements, returns the highest acknowledged number.
fn run_and_kill_child(test: &str, url: &str, user: UserId) -> u64 {
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            &harness_name(test),
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(CHILD_URL, url)
        .env(CHILD_USER, user.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the child");
    let stdout = child.stdout.take().expect("child stdout");
    let mut last = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("read the child");
        if let Some(n) = line.strip_prefix("ACK ") {
            let n: u64 = n.trim().parse().expect("ack number");
            last = Some(n);
            if n + 1 >= N_ACKS {
                break;
            }
        }
    }
    child.kill().expect("SIGKILL the child");
    let status = child.wait().expect("reap the child");
    assert!(!status.success(), "the child was killed, not finished");
    last.expect("the child acknowledged writes before it was killed")
}

async fn assert_all_acknowledged_are_present(store: &impl WalletRepo, user: UserId, last: u64) {
    let balance = store.balance(user).await.expect("balance").minor_units();
    assert!(
        balance as u64 > last,
        "balance {balance} misses acknowledged charges 0..={last}"
    );
    for n in 0..=last {
        let again = store.charge(charge(user, n)).await.expect("replay");
        assert!(again.replayed, "acknowledged charge {n} was lost");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i7_sqlite_acknowledged_writes_survive_sigkill() {
    if let Ok(url) = std::env::var(CHILD_URL) {
        let user: UserId = std::env::var(CHILD_USER)
            .expect("user")
            .parse()
            .expect("uuid");
        child_loop(SqliteStore::open(&url, 1).await.expect("open"), user).await;
    }
    let dir = tempfile::tempdir().expect("temporary directory");
    let url = format!("sqlite://{}", dir.path().join("durable.db").display());
    let user = UserId::random();
    let last = run_and_kill_child("i7_sqlite_acknowledged_writes_survive_sigkill", &url, user);
    let store = SqliteStore::open(&url, 1)
        .await
        .expect("reopen after the kill");
    assert_all_acknowledged_are_present(&store, user, last).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i7_postgres_acknowledged_writes_survive_sigkill() {
    if let Ok(url) = std::env::var(CHILD_URL) {
        let user: UserId = std::env::var(CHILD_USER)
            .expect("user")
            .parse()
            .expect("uuid");
        child_loop(PgStore::open(&url, 2).await.expect("open"), user).await;
    }
    let db = booking_testkit::pg::fresh_database().await;
    let user = UserId::random();
    // The schema exists before the child starts, so the child only writes.
    PgStore::open(&db.url, 1)
        .await
        .expect("migrate")
        .close()
        .await;
    let last = run_and_kill_child(
        "i7_postgres_acknowledged_writes_survive_sigkill",
        &db.url,
        user,
    );
    let store = PgStore::open(&db.url, 2)
        .await
        .expect("reopen after the kill");
    assert_all_acknowledged_are_present(&store, user, last).await;
    store.close().await;
}
