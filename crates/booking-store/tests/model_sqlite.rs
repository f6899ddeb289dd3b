//! The model-based property test (`booking_testkit::model`) on SQLite: the same
//! operation generator and the same predictions as on the in-memory store, each case
//! on a fresh database file in its own temporary directory, with the group commit as
//! a server runs it and with every hot write sent through its batch path.
//!
//! Fewer cases than the in-memory run's 200: a case here costs a few hundred
//! milliseconds (a migrated file, then about 2,000 reads and writes of the checks),
//! not a millisecond, and two runs share two cores with the rest of the suite.
//! `BOOKING_MODEL_CASES=N` runs more.

use booking_store::SqliteStore;
use booking_testkit::model;

/// Generated cases of each test.
const CASES: u32 = 24;

async fn fresh(always_batch: bool) -> (SqliteStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = SqliteStore::open_path(&dir.path().join("booking.db"), 2)
        .await
        .expect("open a fresh SQLite database");
    store.set_always_batch(always_batch);
    (store, dir)
}

/// Every answer agrees with the model, and I1-I6 hold after every step.
#[test]
fn model_on_sqlite() {
    model::check(file!(), CASES, || fresh(false));
}

/// The same with every hold, charge, payment and token issue run by the batcher
/// in its shared transaction.
#[test]
fn model_on_sqlite_every_write_batched() {
    model::check(file!(), CASES, || fresh(true));
}
