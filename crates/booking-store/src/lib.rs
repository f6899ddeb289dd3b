//! # booking-store
//!
//! The storage adapters of every `booking-core` port: SQLite, the embedded default
//! (one file, zero set-up), and PostgreSQL, for any number of server instances
//! sharing one database. [`connect`] picks one from the URL and applies the
//! embedded migrations.

mod any;
mod columns;
mod convert;
mod events;
mod group_commit;
pub mod postgres;
mod rows;
pub mod sqlite;
mod webhook_rows;

pub use any::{AnyStore, Backend, PoolStats, SchemaVersion, StoreOptions, connect};
pub use group_commit::{DEFAULT_MAX_UNDER_WAY, GroupCommitStats};
pub use postgres::PgStore;
pub use sqlite::SqliteStore;

/// Why a store could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// The URL is not one this crate understands.
    #[error("bad database URL: {0}")]
    BadUrl(String),
    /// The database could not be reached or opened.
    #[error("cannot open the database: {0}")]
    Unreachable(String),
    /// A migration failed.
    #[error("cannot migrate the database: {0}")]
    Migration(String),
}

/// The README's code, compiled (and run, where it does not touch the disk) as
/// doctests, so that it cannot drift.
#[doc = include_str!("../../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
