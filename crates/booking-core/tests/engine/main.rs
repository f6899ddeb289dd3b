//! The engine's integration tests on the in-memory store, in one test binary: each
//! former test file is a module, so `cargo test -p booking-core --test engine model::`
//! runs one of them. One binary is linked once, not once per file. The model test
//! finds its regressions beside its source (`model.proptest-regressions`).

mod caches;
mod concurrency;
mod contract;
mod model;
mod pacing;
mod sold_out;
