//! The contract suite on SQLite: each test gets a fresh database file in its own
//! temporary directory.

use booking_store::SqliteStore;

async fn fresh() -> (SqliteStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = SqliteStore::open_path(&dir.path().join("booking.db"), 4)
        .await
        .expect("open a fresh SQLite database");
    (store, dir)
}

booking_testkit::contract_suite!(fresh());

/// The hot-path writes step their statements to the end, so SQLite's automatic
/// checkpoint runs after them and the WAL stays bounded. (A write stopped after its
/// first returned row commits without the WAL hook: the WAL then grows for ever.)
#[tokio::test]
async fn hot_path_writes_let_the_wal_checkpoint() {
    use booking_core::domain::{Amount, Money, UserId};
    use booking_core::ports::{ChargeRequest, WalletRepo};

    let (store, _dir) = fresh().await;
    let pages: i64 = sqlx::query_scalar("PRAGMA wal_autocheckpoint")
        .fetch_one(store.write_pool())
        .await
        .expect("read the checkpoint threshold");
    assert_eq!(pages, 10_000, "the writer's checkpoint threshold");
    // A low threshold on the one writer connection, so that a few writes cross it.
    sqlx::query("PRAGMA wal_autocheckpoint = 10")
        .execute(store.write_pool())
        .await
        .expect("lower the threshold");
    let user = UserId::random();
    for _ in 0..200 {
        store
            .charge(ChargeRequest {
                user,
                amount: Amount::new(1).expect("amount"),
                max_balance: Money::new(1_000_000).expect("max"),
                key: None,
                now: booking_testkit::T0,
            })
            .await
            .expect("charge");
    }
    let (_busy, wal_frames, _done): (i64, i64, i64) =
        sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)")
            .fetch_one(store.write_pool())
            .await
            .expect("checkpoint");
    assert!(
        wal_frames < 50,
        "200 charges left {wal_frames} frames in the WAL: the automatic checkpoint did not run"
    );
}
