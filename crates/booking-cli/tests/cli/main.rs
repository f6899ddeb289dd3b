//! The `booking` binary's tests, run as a process, in one test binary: each former
//! test file is a module, so `cargo test -p booking-cli --test cli browser::` runs one
//! of them. One binary is linked once, not once per file. `common` holds the sandbox
//! (a temporary directory with a clean environment) and the server they start.

mod browser;
mod cli;
mod common;
mod readme;
mod webhook;
