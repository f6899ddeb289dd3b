//! Choosing and opening a backend from a URL.

use std::time::Duration;

use booking_core::domain::{Amount, Money, UserId};
use booking_core::ports::ChargeRequest;
use booking_core::ports::{QueueRepo, WalletRepo};
use booking_store::{AnyStore, Backend, OpenError, StoreOptions, connect};

#[tokio::test]
async fn a_missing_sqlite_file_is_created_and_migrated() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("fresh.db");
    assert!(!path.exists());
    let url = format!("sqlite://{}", path.display());
    let store = connect(&url, StoreOptions::default())
        .await
        .expect("connect");
    assert!(path.exists(), "the file was created");
    assert_eq!(store.backend(), Backend::Sqlite);
    store.ping(Duration::from_secs(5)).await.expect("ping");
    let c = store.counters().await.expect("counters after migration");
    assert_eq!((c.last_seq, c.serving), (0, 0));
    // Data written through one connection is read back through a new one.
    let user = UserId::random();
    store
        .charge(ChargeRequest {
            user,
            amount: Amount::new(42).expect("amount"),
            max_balance: Money::new(1_000).expect("max"),
            key: None,
            now: booking_testkit::T0,
        })
        .await
        .expect("charge");
    store.close().await;
    let again = connect(&url, StoreOptions::default())
        .await
        .expect("reopen");
    assert_eq!(
        again.balance(user).await.expect("balance").minor_units(),
        42
    );
}

#[tokio::test]
async fn postgres_urls_open_a_postgres_store() {
    let db = booking_testkit::pg::fresh_database().await;
    let store = connect(&db.url, StoreOptions { max_connections: 2 })
        .await
        .expect("connect");
    assert!(matches!(store, AnyStore::Postgres(_)));
    store.ping(Duration::from_secs(5)).await.expect("ping");
    store.close().await;
}

#[tokio::test]
async fn bad_urls_are_refused_with_a_clear_error() {
    for url in [
        "mysql://localhost/db",
        "booking.db",
        "",
        "http://example.invalid",
    ] {
        match connect(url, StoreOptions::default()).await {
            Err(OpenError::BadUrl(msg)) => assert!(msg.contains("sqlite://"), "{msg}"),
            other => panic!("{url:?}: expected BadUrl, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn an_unreachable_postgres_server_is_reported() {
    // Port 9 (discard) on loopback: nothing listens there.
    let err = connect(
        "postgres://nobody@127.0.0.1:9/none",
        StoreOptions { max_connections: 1 },
    )
    .await
    .expect_err("nothing listens on port 9");
    assert!(matches!(err, OpenError::Unreachable(_)), "{err:?}");
}

#[tokio::test]
async fn an_unwritable_sqlite_path_is_reported() {
    let err = connect(
        "sqlite:///nonexistent-dir/sub/booking.db",
        StoreOptions::default(),
    )
    .await
    .expect_err("no such directory");
    assert!(matches!(err, OpenError::Unreachable(_)), "{err:?}");
}

#[tokio::test]
async fn the_schema_version_is_the_newest_migration_on_both_backends() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let url = format!("sqlite://{}", dir.path().join("v.db").display());
    let sqlite = connect(&url, StoreOptions::default())
        .await
        .expect("connect");
    let v = sqlite.schema_version().await.expect("schema version");
    let newest = newest_migration("sqlite");
    assert!(newest >= 2, "migrations/sqlite has at least 0001 and 0002");
    assert_eq!((v.applied, v.latest), (newest, newest));
    sqlite.close().await;

    let db = booking_testkit::pg::fresh_database().await;
    let pg = connect(&db.url, StoreOptions { max_connections: 2 })
        .await
        .expect("connect");
    let v = pg.schema_version().await.expect("schema version");
    let newest = newest_migration("postgres");
    assert_eq!((v.applied, v.latest), (newest, newest));
    pg.close().await;
}

/// The number in front of the newest file of `migrations/<backend>`.
fn newest_migration(backend: &str) -> i64 {
    let dir = format!("{}/../../migrations/{backend}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_dir(&dir)
        .expect("migrations directory")
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            name.split('_').next()?.parse::<i64>().ok()
        })
        .max()
        .expect("at least one migration")
}
