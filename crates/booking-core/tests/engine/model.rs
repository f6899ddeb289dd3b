//! The model-based property test (`booking_testkit::model`) on the in-memory
//! adapter: 200 generated sequences of 30 to 60 operations each, every answer
//! predicted by the model and I1-I6 checked after every step, and the check that the
//! generator reaches every outcome. The same test runs on SQLite and PostgreSQL in
//! `booking-store/tests/store/model_*.rs`, with fewer cases.

use booking_core::MemoryStore;
use booking_testkit::model;

async fn fresh() -> (MemoryStore, ()) {
    (MemoryStore::new(), ())
}

/// Every answer agrees with the model and I1-I6 hold after every step
/// (regressions in `model.proptest-regressions`, replayed first).
#[test]
fn invariants_i1_to_i6_hold_after_every_step() {
    model::check(file!(), 200, fresh);
}

/// The generator reaches every outcome the model predicts, over 400 fixed sequences.
#[test]
fn generated_sequences_reach_every_outcome() {
    model::check_coverage(400, fresh);
}
