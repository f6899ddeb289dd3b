//! The SQLite adapter: the embedded default, one file, zero set-up.
//!
//! SQLite has one writer at a time. Rather than let many connections fight for the
//! write lock (and surface `database is locked`), writes go through a pool of one
//! connection, so they queue in this process; every write transaction starts with
//! `BEGIN IMMEDIATE`, which takes the write lock up front, and a busy timeout makes
//! other processes sharing the file wait for it instead of failing. Reads use their
//! own pool and never block behind writes (WAL).
//!
//! With one writer, a transaction's reads are current: each method reads, checks and
//! writes inside one `BEGIN IMMEDIATE` transaction, and the checks are exactly the
//! conditions of the port contracts.
//!
//! The three hot writes (hold, charge, payment) are single statements; when they
//! queue behind a busy writer they share one transaction and one commit (see
//! `group_commit`), which is what lets many concurrent users go faster than one.
//!
//! One module per port, as in `booking-core`'s `service/`: `catalog`, `queue`,
//! `holds`, `wallet`, `payment`; each keeps its hot statement beside the port
//! methods that use it. This module opens the store (pragmas, the two pools).

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use booking_core::StoreError;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Sqlite, Transaction};

use crate::OpenError;
use crate::convert::sqlite_err as db;
use crate::group_commit::GroupCommit;

mod catalog;
mod events;
mod group_commit;
mod holds;
mod payment;
mod queue;
mod wallet;
mod webhooks;

pub use crate::group_commit::GroupCommitStats;
use group_commit::HotWrite;
// The hot statements, for the group commit.
use holds::{HOLD_SQL, hold_args, hold_statement};
use payment::{PAY_SQL, pay_args, pay_statement};
use queue::{ISSUE_SQL, issue_args, issue_statement};
use wallet::{CHARGE_SQL, charge_args, charge_statement};

type Tx = Transaction<'static, Sqlite>;

/// How long a writer from another process waits for the write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// WAL pages after which a commit checkpoints (SQLite's default is 1,000). The
/// checkpoint runs on the committing writer, so it is paid on the hot path: a hold
/// writes about 8 pages and a payment about 15, so at the default a hold paid for a
/// checkpoint every ~125 commits. With 10,000 (a WAL of about 40 MB) the checkpoints
/// are ten times rarer and copy fewer pages per write, since the hot index pages repeat
/// within one. Durability is unchanged: a commit is in the WAL when it is acknowledged.
const WAL_AUTOCHECKPOINT_PAGES: u32 = 10_000;

/// The SQLite store. Clones share the pools.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    read: SqlitePool,
    write: SqlitePool,
    hot: GroupCommit<HotWrite>,
}

impl SqliteStore {
    /// Opens (creating if missing) the database at `url` (`sqlite://path`,
    /// `sqlite:path`), applies the migrations, and returns the store.
    /// `read_connections` is the size of the read pool.
    ///
    /// # Errors
    /// [`OpenError`] when the URL is malformed, the file cannot be opened or created,
    /// or a migration fails.
    pub async fn open(url: &str, read_connections: u32) -> Result<Self, OpenError> {
        let options =
            SqliteConnectOptions::from_str(url).map_err(|e| OpenError::BadUrl(e.to_string()))?;
        Self::open_with(options, read_connections).await
    }

    /// Opens (creating if missing) the database file at `path`.
    ///
    /// # Errors
    /// As [`SqliteStore::open`].
    pub async fn open_path(path: &Path, read_connections: u32) -> Result<Self, OpenError> {
        Self::open_with(SqliteConnectOptions::new().filename(path), read_connections).await
    }

    async fn open_with(
        options: SqliteConnectOptions,
        read_connections: u32,
    ) -> Result<Self, OpenError> {
        let options = options
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // In WAL mode, NORMAL loses nothing when the process dies (the WAL is in
            // the OS's hands at commit); only a power cut can lose the last commits.
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true)
            .pragma("wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES.to_string())
            // Room for every statement plus the group commit's batch texts (three
            // kinds, up to 32 statements each), so none is prepared twice.
            .statement_cache_capacity(256);
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(60))
            // A connection left inside a transaction (a COMMIT that failed, on a full
            // disk say) is closed rather than handed to the next writer, which could
            // then never begin: the pool opens a fresh one.
            .after_release(|conn, _| {
                Box::pin(async move { Ok(!sqlx::Connection::is_in_transaction(conn)) })
            })
            .connect_with(options.clone())
            .await
            .map_err(|e| OpenError::Unreachable(e.to_string()))?;
        sqlx::migrate!("../../migrations/sqlite")
            .run(&write)
            .await
            .map_err(|e| OpenError::Migration(e.to_string()))?;
        let read = SqlitePoolOptions::new()
            .max_connections(read_connections.max(1))
            .acquire_timeout(Duration::from_secs(60))
            .connect_with(options.read_only(true))
            .await
            .map_err(|e| OpenError::Unreachable(e.to_string()))?;
        let hot = GroupCommit::start(write.clone());
        Ok(SqliteStore { read, write, hot })
    }

    /// Whether the database answers.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when it does not.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.read)
            .await
            .map(drop)
            .map_err(db)
    }

    /// The pool of the one writer connection (benchmarks compare against raw writes).
    pub fn write_pool(&self) -> &SqlitePool {
        &self.write
    }

    /// What the group commit of the hot writes (hold, charge, payment) has done
    /// since the store opened: how many ran alone, and how many shared a commit.
    pub fn group_commit_stats(&self) -> GroupCommitStats {
        self.hot.stats()
    }

    /// Sets the most hot writes (issues, holds, charges, payments) under way at
    /// once in this store value; beyond it one is refused at once as unavailable
    /// (HTTP 503). [`crate::DEFAULT_MAX_UNDER_WAY`] unless set.
    pub fn set_max_hot_writes(&self, n: u64) {
        self.hot.set_limit(n);
    }

    /// For tests: with `on`, every hot write (issue, hold, charge, payment) goes
    /// through the group commit's batcher and its shared `BEGIN IMMEDIATE`
    /// transaction, as a batch of one when no other is under way, so that tests run
    /// the batch path every time, not only when writes happen to overlap. Off by
    /// default; a server has no reason to turn it on.
    pub fn set_always_batch(&self, on: bool) {
        self.hot.set_always_batch(on);
    }

    /// The pool of reader connections.
    pub fn read_pool(&self) -> &SqlitePool {
        &self.read
    }

    /// Writes a consistent copy of the whole database to a new file at `path`
    /// (`VACUUM INTO`), while the database stays in use: the copy is one
    /// transaction's snapshot, compacted, with no write-ahead log beside it.
    ///
    /// # Errors
    /// [`StoreError::Failed`] when the file exists already or cannot be written.
    pub async fn backup_to(&self, path: &std::path::Path) -> Result<(), StoreError> {
        if path.exists() {
            return Err(StoreError::Failed(format!(
                "{} exists already; a backup never overwrites a file",
                path.display()
            )));
        }
        let target = path
            .to_str()
            .ok_or_else(|| StoreError::Failed("the backup path is not valid UTF-8".into()))?;
        sqlx::query("VACUUM INTO ?")
            .bind(target)
            .execute(&self.read)
            .await
            .map_err(|e| StoreError::Failed(format!("backup to {}: {e}", path.display())))?;
        Ok(())
    }

    /// Copies the write-ahead log into the database file and empties it, then
    /// closes both pools: after a clean stop the file alone holds every committed
    /// write, so copying `booking.db` by itself is a backup. A checkpoint that
    /// cannot run (a reader of another process still open) leaves the log as it
    /// is; nothing is lost either way.
    pub async fn close(&self) {
        self.read.close().await;
        // A failed checkpoint loses nothing (the log stays and is read at the next
        // open), so its error is not a reason to keep the pools open.
        let _ = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .fetch_all(&self.write)
            .await;
        self.write.close().await;
    }

    async fn begin(&self) -> Result<Tx, StoreError> {
        self.write.begin_with("BEGIN IMMEDIATE").await.map_err(db)
    }
}

async fn commit(tx: Tx) -> Result<(), StoreError> {
    tx.commit().await.map_err(db)
}

// A writing statement is always run to completion (`fetch_all`): `fetch_one` and
// `fetch_optional` stop after the first row and drop the error of the last step,
// which for an auto-committed statement is the commit itself (a full disk, say).
// They also skip SQLite's WAL hook, which runs only when a statement steps to its
// end: the automatic checkpoint never ran and the WAL grew without bound (about
// 800 MB in one benchmark run), which is what made such writes look fast.

fn first(rows: Vec<SqliteRow>) -> Option<SqliteRow> {
    rows.into_iter().next()
}

fn one(rows: Vec<SqliteRow>) -> Result<SqliteRow, sqlx::Error> {
    first(rows).ok_or(sqlx::Error::RowNotFound)
}

type Query<'q> = sqlx::query::Query<'q, Sqlite, sqlx::sqlite::SqliteArguments>;
