//! The model-based property test (`booking_testkit::model`) on PostgreSQL: the same
//! operation generator and the same predictions as on the in-memory store, each case
//! on a fresh database of the test server (`BOOKING_TEST_POSTGRES_URL`, or a
//! throwaway server the harness starts), with the group commit as a server runs it
//! and with every hot write sent through the batch functions; and the check that
//! PostgreSQL picks the same refusal as the in-memory store where the model accepts
//! several.
//!
//! Fewer cases than the in-memory run's 200: a case here costs a fresh, migrated
//! database and about 3,000 round trips of the checks, and two runs share two cores
//! with the rest of the suite. `BOOKING_MODEL_CASES=N` runs more. Without a server
//! the tests fail and say how to get one.

use booking_store::PgStore;
use booking_testkit::model;
use booking_testkit::pg::{TestDatabase, fresh_database, server_url};

/// Generated cases of each test.
const CASES: u32 = 12;

/// A fresh store, and a guard: a clone of the store and its database (to read its
/// figures after the case).
async fn fresh(always_batch: bool) -> (PgStore, (PgStore, TestDatabase)) {
    let db = fresh_database().await;
    let store = PgStore::open(&db.url, 2)
        .await
        .expect("open a fresh PostgreSQL database");
    store.set_always_batch(always_batch);
    (store.clone(), (store, db))
}

/// Every answer agrees with the model, and I1-I6 hold after every step.
#[test]
fn model_on_postgres() {
    // Outside the cases: no server is a failure that says how to get one, not a
    // case to shrink.
    server_url();
    model::check(file!(), CASES, || fresh(false));
}

/// The same with every hold, payment and token issue run by the batch functions:
/// after each case, none ran alone unless its batch sent it back.
#[test]
fn model_on_postgres_every_write_batched() {
    server_url();
    model::check_then(
        file!(),
        CASES,
        || fresh(true),
        |(store, _db)| {
            let s = store.group_commit_stats();
            // One write at a time: each is a batch of its own, committed, or rolled
            // back by its statement's error and run again alone. The only other
            // writes that run alone are the ones a batch sent back: with nothing
            // locked elsewhere, token issues that are not the common case (a user
            // who has a place, or whose place lapsed), by design of
            // `booking_issue_batch`.
            let each_its_batch = s.batches == s.batched && s.batches + s.retried == s.queued;
            if each_its_batch && s.direct == s.deferred + s.retried {
                Ok(())
            } else {
                Err(format!("a hot write ran outside a batch: {s:?}"))
            }
        },
    );
}

/// Where several refusals apply and the model accepts any, PostgreSQL (every write
/// batched) still picks the one the in-memory store picks: the same outcomes in the
/// same order, over 8 fixed sequences.
#[test]
fn postgres_answers_as_the_memory_store_does() {
    server_url();
    model::check_same_answers(
        8,
        || async { (booking_core::MemoryStore::new(), ()) },
        || fresh(true),
    );
}
