//! The simulator's tests, in one test binary: each former test file is a module, so
//! `cargo test -p booking-sim --test sim targets::` runs one of them. One binary is
//! linked once, not once per file, and its PostgreSQL tests share one throwaway
//! server. `common` holds the short set-ups several modules use.

mod auditor;
mod ci_multi_instance;
mod cli;
mod common;
mod failing_target;
mod foreign_server;
mod http_many_users;
mod onsale;
mod pacing;
mod report_schema;
mod targets;
