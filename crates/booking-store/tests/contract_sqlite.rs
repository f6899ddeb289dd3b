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
