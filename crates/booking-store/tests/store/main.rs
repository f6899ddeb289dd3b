//! The storage tests on SQLite and PostgreSQL, in one test binary: each former test
//! file is a module, so `cargo test -p booking-store --test store contract_sqlite::`
//! runs one of them. One binary is linked once (a binary per file linked sqlx, tokio
//! and the rest once per file), and its PostgreSQL tests share one throwaway server.
//!
//! What the modules share is the process: no test sets an environment variable or
//! changes the working directory. `durability` starts this binary again as a child
//! (with `--exact` and its module path); the model tests find their regressions
//! beside their source (`model_pg.proptest-regressions`).

mod concurrency_pg;
mod concurrency_sqlite;
mod connect;
mod contract_pg;
mod contract_pg_batched;
mod contract_sqlite;
mod contract_sqlite_batched;
mod durability;
mod model_pg;
mod model_sqlite;
mod overload;
mod schema;
mod upgrade;
