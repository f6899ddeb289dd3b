//! The PostgreSQL adapter: any number of server processes, each with its own pool,
//! share one database, and every invariant holds under READ COMMITTED.
//!
//! # How correctness is kept
//!
//! Each write is one SQL statement whose conditions are re-checked by PostgreSQL on
//! the newest version of every row it writes or locks (an `UPDATE` or
//! `SELECT ... FOR NO KEY UPDATE` that had to wait for a row lock re-evaluates its
//! `WHERE` on the row as the other transaction left it). Data-modifying sub-statements
//! are chained: each is gated on the previous one with `EXISTS (SELECT 1 FROM prev)`,
//! an uncorrelated sub-select that PostgreSQL evaluates once, before the gated
//! statement touches any row. That fixes the order in which rows are locked and keeps
//! a later step from running when an earlier one found nothing.
//!
//! The hold and the payment are PL/pgSQL functions instead (`booking_hold`,
//! `booking_pay`; as they stand after every migration in
//! `schema/current_postgres.sql`), called in one autocommit round trip. Under READ
//! COMMITTED each statement of a function takes a fresh snapshot, so a check made
//! after a lock sees everything committed before the lock was granted: a hold counts
//! the user's live holds exactly after locking the session row (no version of it is
//! written), and a payment writes its rows with conditional updates in the lock order
//! below, with no separate locking pass. Refusals are named from reads before
//! anything is written; a condition that fails after a write raises
//! SQLSTATE `BK001`, which rolls the whole call back, and the call is run again.
//!
//! Holds and payments that arrive while others are under way in the same process are
//! committed together (`group_commit`): one call of a batch function (migration
//! 0005) runs them in order, each deciding exactly as the single-write function
//! would, in one round trip and one commit. A batch locks a write's rows with
//! `SKIP LOCKED` before running it and never waits for a lock: a write whose rows
//! another transaction holds is sent back and runs alone, so batches take no part in
//! the lock order below.
//!
//! Rows are always locked in this order, so two transactions never wait on each other
//! in a cycle:
//!
//! 1. the counters row (issue, advance);
//! 2. a queue entry (hold, pay, issue);
//! 3. seat rows (hold, pay, cancel, sweep). A live hold has no row of its own: it
//!    lives on its seat (migration 0004; `reservations` is a view of the seats and
//!    `ended_reservations`), so it changes only under its seat's lock. Several
//!    seats are locked in (schedule, seat) order: a payment of several holds, the
//!    sweep; a payment then lapses the payer's other holds, after its own seats;
//! 4. a wallet (pay, charge).
//!
//! Deadlocks and serialization failures are still retried a bounded number of times
//! (with the order above they should not happen: none showed in stress runs of
//! several pools), as are the unique violations that mean "another request won a
//! race": the retried statement sees the winner and answers from it.
//!
//! One module per port, as in `booking-core`'s `service/`: `catalog`, `queue`,
//! `holds`, `wallet`, `payment`; each keeps its statements and functions' calls
//! beside the port methods that use them. This module opens the store and holds
//! the error helpers they share.

use std::str::FromStr;
use std::time::Duration;

use booking_core::StoreError;
use sqlx::Connection;
use sqlx::error::ErrorKind;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};

use crate::OpenError;
use crate::convert::pg_err as db;
use crate::group_commit::GroupCommit;

mod catalog;
mod events;
mod group_commit;
mod holds;
mod payment;
mod queue;
mod wallet;
mod webhooks;

use group_commit::HotWrite;
// The hot calls, for the group commit.
use holds::HOLD;
use payment::PAY;
use queue::ISSUE;

/// How many times a write is tried when it lost a race that a retry resolves.
const MAX_ATTEMPTS: u32 = 8;

/// How long a request waits for a pooled connection.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);

/// How long opening the store waits for the server to answer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The PostgreSQL store. Clones share the pool.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
    /// Runs the hot writes (holds, payments), batching those that arrive together.
    hot: GroupCommit<HotWrite>,
}

impl PgStore {
    /// Connects to the database at `url` (`postgres://user:password@host:port/db`),
    /// applies the migrations, and returns the store with a pool of at most
    /// `max_connections` connections.
    ///
    /// # Errors
    /// [`OpenError::BadUrl`] when the URL is not a `postgres://` URL,
    /// [`OpenError::Unreachable`] when the server cannot be reached or refuses the
    /// connection, [`OpenError::Migration`] when a migration fails.
    pub async fn open(url: &str, max_connections: u32) -> Result<Self, OpenError> {
        let scheme = url.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
        if !matches!(scheme.as_deref(), Some("postgres" | "postgresql")) {
            return Err(OpenError::BadUrl(
                "expected a postgres:// or postgresql:// URL".to_owned(),
            ));
        }
        let options =
            PgConnectOptions::from_str(url).map_err(|e| OpenError::BadUrl(e.to_string()))?;
        // One direct connection first: it fails at once when the server refuses (a
        // pool would keep retrying until its acquire timeout), and it runs the
        // migrations (which take an advisory lock, so processes opening together
        // migrate once).
        let mut conn = tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(&options))
            .await
            .map_err(|_| {
                OpenError::Unreachable(format!("no answer within {} s", CONNECT_TIMEOUT.as_secs()))
            })?
            .map_err(|e| OpenError::Unreachable(e.to_string()))?;
        sqlx::migrate!("../../migrations/postgres")
            .run(&mut conn)
            .await
            .map_err(|e| OpenError::Migration(e.to_string()))?;
        let _ = conn.close().await;
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(ACQUIRE_TIMEOUT)
            // No ping before each use: it would double the round trips of every
            // one-statement method. A connection the server dropped fails its next
            // statement instead (`StoreError::Unavailable`) and leaves the pool.
            .test_before_acquire(false)
            .connect_lazy_with(options);
        let hot = GroupCommit::start(pool.clone());
        Ok(PgStore { pool, hot })
    }

    /// Whether the database answers.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when it does not.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(drop)
            .map_err(db)
    }

    /// The connection pool (benchmarks compare against raw statements).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// What the group commit of holds and payments has done since the store opened.
    pub fn group_commit_stats(&self) -> crate::GroupCommitStats {
        self.hot.stats()
    }

    /// Sets the most hot writes (issues, holds, payments) under way at once in
    /// this store value; beyond it one is refused at once as unavailable (HTTP
    /// 503). [`crate::DEFAULT_MAX_UNDER_WAY`] unless set.
    pub fn set_max_hot_writes(&self, n: u64) {
        self.hot.set_limit(n);
    }

    /// For tests: with `on`, every hot write (issue, hold, payment) goes through the
    /// group commit's batch functions (`booking_issue_batch`, `booking_hold_batch`,
    /// `booking_pay_batch`), as a batch of one when no other is under way, so that
    /// tests run the batch SQL every time, not only when writes happen to overlap.
    /// Off by default; a server has no reason to turn it on.
    pub fn set_always_batch(&self, on: bool) {
        self.hot.set_always_batch(on);
    }

    /// Closes the pool.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// A deadlock or serialization failure: the transaction was rolled back and may be
/// tried again.
fn retryable(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if matches!(d.code().as_deref(), Some("40001" | "40P01")))
}

/// A unique violation of the named constraint or index.
fn unique_on(e: &sqlx::Error, constraint: &str) -> bool {
    matches!(e, sqlx::Error::Database(d)
        if d.kind() == ErrorKind::UniqueViolation && d.constraint() == Some(constraint))
}

fn is_fk_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.kind() == ErrorKind::ForeignKeyViolation)
}

fn contention(what: &str) -> StoreError {
    StoreError::Unavailable(format!(
        "{what}: still losing races after {MAX_ATTEMPTS} attempts"
    ))
}
