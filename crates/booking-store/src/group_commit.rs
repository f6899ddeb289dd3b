//! What the two adapters' group commits share: their figures, and how a hot write
//! knows whether another one is under way.
//!
//! Each adapter commits hot writes that arrive together in one transaction: SQLite in
//! [`crate::sqlite`] (one writer, so queued writes wait for it anyway), PostgreSQL in
//! [`crate::postgres`] (one round trip and one commit for many writes).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// What the group commit has done since the store opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GroupCommitStats {
    /// Hot writes that found no other under way, or were sent back from a batch,
    /// and ran alone.
    pub direct: u64,
    /// Hot writes that queued for a batch.
    pub queued: u64,
    /// Transactions that committed two or more queued writes together (or one,
    /// with the test switch `set_always_batch` on).
    pub batches: u64,
    /// Writes run by those transactions.
    pub batched: u64,
    /// Batches that failed (a statement's error) and whose writes ran again alone.
    pub retried: u64,
    /// Batched writes whose statement changed nothing (a refusal, which its caller
    /// then names).
    pub refused: u64,
    /// Batched writes that found a row they need locked by another transaction and
    /// ran again alone, after the batch (PostgreSQL: a batch never waits for a lock);
    /// also a PostgreSQL token issue that is not the common case (a user who has a
    /// place, or whose place lapsed), which runs alone by design.
    pub deferred: u64,
    /// Hot writes refused at once because [`DEFAULT_MAX_UNDER_WAY`] (or the limit
    /// set) were already under way: the instance is overloaded, and says so
    /// (`StoreError::Unavailable`) instead of queueing without end.
    pub overloaded: u64,
}

/// Hot writes under way at once in one store value (one instance) at most, unless
/// set otherwise: beyond it a hot write is refused at once as unavailable. Large
/// enough for 10,000 users asking at the same instant.
pub const DEFAULT_MAX_UNDER_WAY: u64 = 16_384;

#[derive(Debug)]
pub(crate) struct Counters {
    pub(crate) direct: AtomicU64,
    pub(crate) queued: AtomicU64,
    pub(crate) batches: AtomicU64,
    pub(crate) batched: AtomicU64,
    pub(crate) retried: AtomicU64,
    pub(crate) refused: AtomicU64,
    pub(crate) deferred: AtomicU64,
    pub(crate) overloaded: AtomicU64,
    /// Hot writes under way (running alone, queued, or in a batch).
    pub(crate) busy: AtomicU64,
    /// The most hot writes under way at once.
    pub(crate) limit: AtomicU64,
    /// For tests: every hot write goes through the batch path, even with no other
    /// under way (a batch of one).
    pub(crate) always_batch: AtomicBool,
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            direct: AtomicU64::new(0),
            queued: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            batched: AtomicU64::new(0),
            retried: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            deferred: AtomicU64::new(0),
            overloaded: AtomicU64::new(0),
            busy: AtomicU64::new(0),
            limit: AtomicU64::new(DEFAULT_MAX_UNDER_WAY),
            always_batch: AtomicBool::new(false),
        }
    }
}

impl Counters {
    pub(crate) fn stats(&self) -> GroupCommitStats {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        GroupCommitStats {
            direct: get(&self.direct),
            queued: get(&self.queued),
            batches: get(&self.batches),
            batched: get(&self.batched),
            retried: get(&self.retried),
            refused: get(&self.refused),
            deferred: get(&self.deferred),
            overloaded: get(&self.overloaded),
        }
    }

    /// Sets the most hot writes under way at once (at least 1).
    pub(crate) fn set_limit(&self, n: u64) {
        self.limit.store(n.max(1), Ordering::Relaxed);
    }

    /// For tests: with `on`, every hot write queues for a batch, even alone, so
    /// that the batch statements run deterministically.
    pub(crate) fn set_always_batch(&self, on: bool) {
        self.always_batch.store(on, Ordering::Relaxed);
    }

    /// Whether every hot write goes through the batch path.
    pub(crate) fn always_batch(&self) -> bool {
        self.always_batch.load(Ordering::Relaxed)
    }
}

/// Counts a hot write as under way until dropped (also when its caller goes away).
pub(crate) struct Busy<'a>(&'a AtomicU64);

impl<'a> Busy<'a> {
    /// Enters; also says whether no other hot write was under way (never, with
    /// [`Counters::set_always_batch`] on). Refused (an error that storage maps to
    /// `Unavailable`) when the limit of writes under way is reached.
    pub(crate) fn enter(c: &'a Counters) -> Result<(Self, bool), sqlx::Error> {
        let before = c.busy.fetch_add(1, Ordering::AcqRel);
        let busy = Busy(&c.busy);
        if before >= c.limit.load(Ordering::Relaxed) {
            bump(&c.overloaded, 1);
            return Err(sqlx::Error::Io(std::io::Error::new(
                std::io::ErrorKind::WouldBlock,
                "too many writes under way: this instance is overloaded",
            )));
        }
        Ok((busy, before == 0 && !c.always_batch()))
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

pub(crate) fn bump(c: &AtomicU64, by: usize) {
    c.fetch_add(by as u64, Ordering::Relaxed);
}

/// No connection could be had for a batch: every write of it fails the same way.
pub(crate) fn copy_error(e: &sqlx::Error) -> sqlx::Error {
    match e {
        sqlx::Error::PoolClosed => sqlx::Error::PoolClosed,
        sqlx::Error::PoolTimedOut => sqlx::Error::PoolTimedOut,
        e => sqlx::Error::Protocol(format!("no connection for a batch: {e}")),
    }
}
