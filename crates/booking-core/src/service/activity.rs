//! What this engine has done since it started, counted for operators' metrics.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counts of what this engine value did since it was made: the admissions of its
/// ticks, what its sweeps recorded, the sessions its payments ended. Several
/// instances sharing one store each count their own; their sum is the whole
/// system's. Read with [`crate::Booking::activity`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Activity {
    /// Tokens issued.
    pub tokens_issued: u64,
    /// Users admitted by this engine's ticks.
    pub admitted: u64,
    /// Holds this engine's sweeps recorded as expired.
    pub holds_expired: u64,
    /// Sessions this engine's sweeps recorded as lapsed.
    pub sessions_expired: u64,
    /// Sessions ended by a payment through this engine (each payment ends one).
    pub sessions_paid: u64,
}

#[derive(Debug, Default)]
pub(super) struct ActivityCounters {
    pub(super) tokens_issued: AtomicU64,
    pub(super) admitted: AtomicU64,
    pub(super) holds_expired: AtomicU64,
    pub(super) sessions_expired: AtomicU64,
    pub(super) sessions_paid: AtomicU64,
}

impl ActivityCounters {
    pub(super) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub(super) fn read(&self) -> Activity {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Activity {
            tokens_issued: get(&self.tokens_issued),
            admitted: get(&self.admitted),
            holds_expired: get(&self.holds_expired),
            sessions_expired: get(&self.sessions_expired),
            sessions_paid: get(&self.sessions_paid),
        }
    }
}
