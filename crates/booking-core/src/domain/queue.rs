//! The waiting room's stored state: one entry per issued place, and the counters.

use std::time::Duration;

use super::{QueueSeq, Timestamp, TokenId, UserId, ValueError};

/// How the ticker admits waiting users. Rate and capacity limits can be combined:
/// each tick admits the smallest number either allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdmissionPolicy {
    interval_ms: u32,
    batch: Option<u32>,
    max_active: Option<u32>,
}

impl AdmissionPolicy {
    /// Shortest tick interval.
    pub const MIN_INTERVAL_MS: u32 = 10;
    /// Longest tick interval (one hour).
    pub const MAX_INTERVAL_MS: u32 = 3_600_000;
    /// Largest batch per tick.
    pub const MAX_BATCH: u32 = 100_000;
    /// Largest number of active users.
    pub const MAX_ACTIVE: u32 = 1_000_000;

    /// `rate`: admit `batch` users every `interval` ("amusement park").
    pub fn rate(batch: u32, interval: Duration) -> Result<Self, ValueError> {
        Self::new(interval, Some(batch), None)
    }

    /// `capacity`: keep at most `max_active` users active, checking every
    /// `interval` for free places ("bank teller").
    pub fn capacity(max_active: u32, interval: Duration) -> Result<Self, ValueError> {
        Self::new(interval, None, Some(max_active))
    }

    /// Both limits at once: at most `batch` per tick and at most `max_active` active.
    pub fn rate_and_capacity(
        batch: u32,
        interval: Duration,
        max_active: u32,
    ) -> Result<Self, ValueError> {
        Self::new(interval, Some(batch), Some(max_active))
    }

    /// The general constructor: at least one of `batch` and `max_active` is set.
    pub fn new(
        interval: Duration,
        batch: Option<u32>,
        max_active: Option<u32>,
    ) -> Result<Self, ValueError> {
        let interval_ms = u32::try_from(interval.as_millis()).unwrap_or(u32::MAX);
        if !(Self::MIN_INTERVAL_MS..=Self::MAX_INTERVAL_MS).contains(&interval_ms) {
            return Err(ValueError::BadPolicy("the interval is 10 ms to 1 hour"));
        }
        if batch.is_none() && max_active.is_none() {
            return Err(ValueError::BadPolicy(
                "set a batch size, a capacity, or both",
            ));
        }
        if batch.is_some_and(|b| b == 0 || b > Self::MAX_BATCH) {
            return Err(ValueError::BadPolicy("the batch is 1 to 100000 users"));
        }
        if max_active.is_some_and(|m| m == 0 || m > Self::MAX_ACTIVE) {
            return Err(ValueError::BadPolicy("the capacity is 1 to 1000000 users"));
        }
        Ok(AdmissionPolicy {
            interval_ms,
            batch,
            max_active,
        })
    }

    /// How often the ticker may admit.
    pub fn interval(&self) -> Duration {
        Duration::from_millis(u64::from(self.interval_ms))
    }

    /// Users admitted per tick at most, if a rate limit is set.
    pub fn batch(&self) -> Option<u32> {
        self.batch
    }

    /// Active users at most, if a capacity limit is set.
    pub fn max_active(&self) -> Option<u32> {
        self.max_active
    }

    /// How many of `n_waiting` users one tick admits when `n_active` are active.
    pub fn admit_count(&self, n_waiting: u64, n_active: u64) -> u64 {
        let by_rate = self.batch.map_or(u64::MAX, u64::from);
        let by_capacity = self
            .max_active
            .map_or(u64::MAX, |m| u64::from(m).saturating_sub(n_active));
        n_waiting.min(by_rate).min(by_capacity)
    }
}

impl Default for AdmissionPolicy {
    /// 50 users a second, at most 500 active.
    fn default() -> Self {
        AdmissionPolicy {
            interval_ms: 1_000,
            batch: Some(50),
            max_active: Some(500),
        }
    }
}

/// The stored state of a queue entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntryState {
    /// Waiting, or admitted and not yet ended. An admitted entry whose
    /// `expires_at` has passed is expired even while it still says `Live`:
    /// expiry is lazy, and the sweeper only records it.
    Live,
    /// Ended by a payment.
    Done,
    /// Recorded as expired (by the sweeper or by a new token request).
    Expired,
}

/// One place in the waiting room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueEntry {
    /// The place: issue order.
    pub seq: QueueSeq,
    /// Whose place it is.
    pub user: UserId,
    /// The id signed into the token.
    pub token_id: TokenId,
    /// When the token was issued.
    pub issued_at: Timestamp,
    /// The stored state.
    pub state: EntryState,
    /// When the ticker admitted it, if it has.
    pub admitted_at: Option<Timestamp>,
    /// When the user first used the admitted token (showed up), if they have.
    pub seen_at: Option<Timestamp>,
    /// When an admitted entry lapses: admission + grace until the user shows up,
    /// then show-up + session TTL.
    pub expires_at: Option<Timestamp>,
}

impl QueueEntry {
    /// Whether the entry holds an active session at `now`: admitted, not ended,
    /// not lapsed.
    pub fn is_active_at(&self, now: Timestamp) -> bool {
        self.state == EntryState::Live && self.expires_at.is_some_and(|t| now < t)
    }

    /// Whether the entry still holds a place (waiting or active) at `now`.
    pub fn is_live_at(&self, now: Timestamp) -> bool {
        self.state == EntryState::Live && self.expires_at.is_none_or(|t| now < t)
    }
}

/// The waiting room's shared counters, one row for the whole system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueCounters {
    /// The highest sequence issued so far (0 before the first token).
    pub last_seq: u64,
    /// The serving counter: every sequence up to it has been admitted.
    pub serving: u64,
    /// Bumped by every advance: an advance is a compare-and-set on it.
    pub version: u64,
    /// When the last advance happened.
    pub last_tick_at: Option<Timestamp>,
    /// Whether admission is paused.
    pub paused: bool,
    /// The admission policy in force.
    pub policy: AdmissionPolicy,
    /// Observed admissions per second, times 1000 (moving average over ticks).
    pub admit_rate_milli: u64,
}

impl QueueCounters {
    /// Users issued a place and not yet admitted.
    pub fn n_waiting(&self) -> u64 {
        self.last_seq.saturating_sub(self.serving)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    #[test]
    fn policy_bounds() {
        assert!(AdmissionPolicy::rate(0, SEC).is_err());
        assert!(AdmissionPolicy::rate(100_001, SEC).is_err());
        assert!(AdmissionPolicy::capacity(0, SEC).is_err());
        assert!(AdmissionPolicy::rate(1, Duration::from_millis(9)).is_err());
        assert!(AdmissionPolicy::rate(1, Duration::from_secs(3601)).is_err());
        assert!(AdmissionPolicy::new(SEC, None, None).is_err());
        assert!(AdmissionPolicy::rate_and_capacity(10, SEC, 100).is_ok());
    }

    #[test]
    fn rate_admits_a_batch_per_tick() {
        let p = AdmissionPolicy::rate(10, SEC).unwrap();
        assert_eq!(p.admit_count(25, 1_000), 10);
        assert_eq!(p.admit_count(3, 0), 3);
    }

    #[test]
    fn capacity_fills_free_places_only() {
        let p = AdmissionPolicy::capacity(100, SEC).unwrap();
        assert_eq!(p.admit_count(1_000, 95), 5);
        assert_eq!(p.admit_count(1_000, 100), 0);
        assert_eq!(p.admit_count(1_000, 130), 0);
        assert_eq!(p.admit_count(2, 0), 2);
    }

    #[test]
    fn combined_policy_takes_the_smaller_limit() {
        let p = AdmissionPolicy::rate_and_capacity(10, SEC, 100).unwrap();
        assert_eq!(p.admit_count(1_000, 0), 10);
        assert_eq!(p.admit_count(1_000, 97), 3);
    }
}
