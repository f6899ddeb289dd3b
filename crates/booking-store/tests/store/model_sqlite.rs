//! The model-based property test (`booking_testkit::model`) on SQLite: the same
//! operation generator and the same predictions as on the in-memory store, each case
//! on a fresh database file in its own temporary directory, with the group commit as
//! a server runs it and with every hot write sent through its batch path; and the
//! check that SQLite picks the same refusal as the in-memory store where the model
//! accepts several.
//!
//! Fewer cases than the in-memory run's 200: a case here costs a few hundred
//! milliseconds (a migrated file, then about 3,000 statements of the checks), not a
//! millisecond, and the runs share two cores with the rest of the suite.
//! `BOOKING_MODEL_CASES=N` runs more.

use booking_store::SqliteStore;
use booking_testkit::model;

/// Generated cases of each test.
const CASES: u32 = 24;

/// A fresh store, and a guard: a clone of the store and its directory (to read its
/// figures after the case).
async fn fresh(always_batch: bool) -> (SqliteStore, (SqliteStore, tempfile::TempDir)) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = SqliteStore::open_path(&dir.path().join("booking.db"), 2)
        .await
        .expect("open a fresh SQLite database");
    store.set_always_batch(always_batch);
    (store.clone(), (store, dir))
}

/// Every answer agrees with the model, and I1-I6 hold after every step.
#[test]
fn model_on_sqlite() {
    model::check(file!(), CASES, || fresh(false));
}

/// The same with every hold, charge, payment and token issue run by the batcher
/// in its shared transaction: after each case, none ran alone.
#[test]
fn model_on_sqlite_every_write_batched() {
    model::check_then(
        file!(),
        CASES,
        || fresh(true),
        |(store, _dir)| {
            let s = store.group_commit_stats();
            // One write at a time: each is a batch of its own, committed, or
            // rolled back by its statement's error and run again alone.
            let each_its_batch = s.batches == s.batched && s.batches + s.retried == s.queued;
            match (s.direct, s.deferred, each_its_batch) {
                (0, 0, true) => Ok(()),
                _ => Err(format!("a hot write ran outside a batch: {s:?}")),
            }
        },
    );
}

/// Where several refusals apply and the model accepts any, SQLite still picks the
/// one the in-memory store picks: the same outcomes in the same order, over 16
/// fixed sequences.
#[test]
fn sqlite_answers_as_the_memory_store_does() {
    model::check_same_answers(
        16,
        || async { (booking_core::MemoryStore::new(), ()) },
        || fresh(false),
    );
}
