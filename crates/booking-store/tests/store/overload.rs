//! A limit on the hot writes under way: with the writer blocked (another
//! connection holds SQLite's write lock, or PostgreSQL's counters row), token
//! requests pile up in the group commit; beyond the store's limit they are refused
//! at once as unavailable instead of queueing without end. Counted exactly: the
//! first `LIMIT` wait and then get their places, every other one is refused, and
//! the store takes writes again once the writer is free.

use std::time::Duration;

use booking_core::Store;
use booking_core::domain::{TokenId, UserId};
use booking_core::ports::QueueRepo;
use booking_core::ports::{IssueRepoError, StoreError};
use booking_store::{PgStore, SqliteStore};
use booking_testkit::ports;
use sqlx::Connection;

const LIMIT: u64 = 4;
const ASKS: usize = 40;

/// Sends `ASKS` token requests at once while the writer is blocked, waits until all
/// but the admitted `LIMIT` were answered, then calls `release` and collects the
/// rest. Returns (places given, refusals as unavailable).
async fn pile_up<S: Store + Clone>(
    store: &S,
    release: impl AsyncFnOnce(),
    overloaded: impl Fn() -> u64,
) -> (usize, usize) {
    let mut tasks = Vec::new();
    for _ in 0..ASKS {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .issue(ports::issue(
                    UserId::random(),
                    TokenId::random(),
                    booking_testkit::T0,
                    1_000_000,
                ))
                .await
        }));
    }
    // Everyone beyond the limit is refused without waiting for the writer.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while overloaded() < (ASKS as u64 - LIMIT) {
        assert!(
            std::time::Instant::now() < deadline,
            "only {} refused while the writer was blocked",
            overloaded()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    release().await;
    let (mut placed, mut refused) = (0, 0);
    for t in tasks {
        match t.await.expect("task") {
            Ok(_) => placed += 1,
            Err(IssueRepoError::Store(StoreError::Unavailable(msg))) => {
                assert!(msg.contains("overloaded"), "{msg}");
                refused += 1;
            }
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    (placed, refused)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_refuses_hot_writes_beyond_its_limit() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("overload.db");
    let store = SqliteStore::open_path(&path, 2).await.expect("open");
    store.set_max_hot_writes(LIMIT);
    let url = format!("sqlite://{}", path.display());
    let mut blocker = sqlx::SqliteConnection::connect(&url)
        .await
        .expect("connect");
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut blocker)
        .await
        .expect("take the write lock");
    let s = store.clone();
    let (placed, refused) = pile_up(
        &store,
        async move || {
            sqlx::query("ROLLBACK")
                .execute(&mut blocker)
                .await
                .expect("release");
        },
        move || s.group_commit_stats().overloaded,
    )
    .await;
    assert_eq!((placed, refused), (LIMIT as usize, ASKS - LIMIT as usize));
    // Free again: the next request gets its place.
    let next = store
        .issue(ports::issue(
            UserId::random(),
            TokenId::random(),
            booking_testkit::T0,
            1_000_000,
        ))
        .await
        .expect("a place once the writer is free");
    assert_eq!(next.seq.get(), LIMIT + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_refuses_hot_writes_beyond_its_limit() {
    let db = booking_testkit::pg::fresh_database().await;
    let store = PgStore::open(&db.url, 8).await.expect("open");
    store.set_max_hot_writes(LIMIT);
    let mut blocker = sqlx::PgConnection::connect(&db.url).await.expect("connect");
    sqlx::query("BEGIN")
        .execute(&mut blocker)
        .await
        .expect("begin");
    sqlx::query("SELECT 1 FROM queue_counters FOR UPDATE")
        .execute(&mut blocker)
        .await
        .expect("lock the counters");
    let s = store.clone();
    let (placed, refused) = pile_up(
        &store,
        async move || {
            sqlx::query("ROLLBACK")
                .execute(&mut blocker)
                .await
                .expect("release");
        },
        move || s.group_commit_stats().overloaded,
    )
    .await;
    assert_eq!((placed, refused), (LIMIT as usize, ASKS - LIMIT as usize));
    let next = store
        .issue(ports::issue(
            UserId::random(),
            TokenId::random(),
            booking_testkit::T0,
            1_000_000,
        ))
        .await
        .expect("a place once the counters are free");
    assert_eq!(next.seq.get(), LIMIT + 1);
    store.close().await;
}
