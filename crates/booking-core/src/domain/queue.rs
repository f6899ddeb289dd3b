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

/// The shortest pause between two status polls the server asks for.
pub const POLL_FLOOR: Duration = Duration::from_millis(250);

/// The longest pause between two status polls the server asks for (hosted waiting
/// rooms refresh about this often).
pub const POLL_CEILING: Duration = Duration::from_secs(20);

/// The admission rate pacing assumes when none is known (admission paused, or a
/// policy with neither a rate nor a cap): 10 users a second, times 1000.
pub const ASSUMED_RATE_MILLI: u64 = 10_000;

impl QueueCounters {
    /// The admission rate (per second, times 1000) that [`poll_after`] paces by:
    /// [`ASSUMED_RATE_MILLI`] while paused; else the observed rate; else what a rate
    /// policy promises; else, for a capacity policy, its cap per interval (what one
    /// tick can admit into an empty shop: at a sale's opening, the first places are
    /// admitted at once, and a line no longer than a few caps asks again within
    /// the floor).
    pub fn pace_rate_milli(&self) -> u64 {
        if self.paused {
            return ASSUMED_RATE_MILLI;
        }
        if self.admit_rate_milli > 0 {
            return self.admit_rate_milli;
        }
        match self.policy.batch() {
            Some(batch) => {
                let interval_ms = (self.policy.interval().as_millis() as u64).max(1);
                (u64::from(batch) * 1_000_000 / interval_ms).max(1)
            }
            None => match self.policy.max_active() {
                Some(cap) => {
                    let interval_ms = (self.policy.interval().as_millis() as u64).max(1);
                    (u64::from(cap) * 1_000_000 / interval_ms).max(1)
                }
                None => ASSUMED_RATE_MILLI,
            },
        }
    }
}

/// When a waiting user should ask again: the pacing rule of the waiting room.
///
/// `position` is the user's place in line (1 = next) and `rate_milli` the admission
/// rate in users per second times 1000 (0 means unknown and counts as
/// [`ASSUMED_RATE_MILLI`]). The answer is two thirds of the expected wait
/// (`position / rate`), kept between [`POLL_FLOOR`] and [`POLL_CEILING`]:
///
/// ```text
/// poll_after = clamp(2/3 * position / rate, 250 ms, 20 s)
/// ```
///
/// Far back asks rarely, near the front often; each poll at two thirds of the
/// expected wait leaves a third of it as margin for a rate that speeds up. The load
/// this puts on the servers, with `n` users waiting and `r` admitted a second, is
/// about `1.5 r` polls a second from the front (at the floor), `1.5 r ln(80)` from
/// the middle, and `1/20` a second from each user beyond `30 r` (at the ceiling):
/// roughly `8 r + max(0, n - 30 r) / 20`. It follows admissions, not the length
/// of the line: 10,000 waiting at 50 admissions a second make about 830 polls a
/// second (a unit test sums it), and a paused line about 560.
pub fn poll_after(position: u64, rate_milli: u64) -> Duration {
    let rate = if rate_milli == 0 {
        ASSUMED_RATE_MILLI
    } else {
        rate_milli
    };
    // 2/3 of position / (rate / 1000) seconds, in milliseconds.
    let ms = u128::from(position) * 2_000_000 / (3 * u128::from(rate));
    let ms = u64::try_from(ms).unwrap_or(u64::MAX);
    Duration::from_millis(ms).clamp(POLL_FLOOR, POLL_CEILING)
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

    fn polls_per_second(n_waiting: u64, rate_milli: u64) -> f64 {
        (1..=n_waiting)
            .map(|p| 1.0 / poll_after(p, rate_milli).as_secs_f64())
            .sum()
    }

    #[test]
    fn far_back_asks_rarely_near_the_front_often() {
        let r = 50_000; // 50 admitted a second
        assert_eq!(poll_after(1, r), POLL_FLOOR);
        assert_eq!(poll_after(18, r), POLL_FLOOR, "240 ms: the floor");
        assert_eq!(poll_after(75, r), Duration::from_secs(1), "2/3 of 1.5 s");
        assert_eq!(poll_after(600, r), Duration::from_secs(8));
        assert_eq!(
            poll_after(1_500, r),
            POLL_CEILING,
            "2/3 of 30 s: exactly 20 s"
        );
        assert_eq!(poll_after(1_000_000, r), POLL_CEILING);
        assert_eq!(poll_after(u64::MAX, 1), POLL_CEILING, "no overflow");
        // Monotonic in the position, and a faster line asks sooner.
        for p in 1..3_000 {
            assert!(poll_after(p, r) <= poll_after(p + 1, r));
            assert!(poll_after(p, 2 * r) <= poll_after(p, r));
        }
        // An unknown rate (0) is the assumed one.
        assert_eq!(poll_after(300, 0), poll_after(300, ASSUMED_RATE_MILLI));
    }

    #[test]
    fn ten_thousand_waiting_poll_under_a_thousand_times_a_second() {
        let at_default_policy = polls_per_second(10_000, 50_000);
        assert!(
            (700.0..1_000.0).contains(&at_default_policy),
            "{at_default_policy}"
        );
        let paused = polls_per_second(10_000, ASSUMED_RATE_MILLI);
        assert!(paused < 600.0, "{paused}");
        // Load follows admissions: twice the rate, about twice the front's polls.
        let slow = polls_per_second(1_000, 10_000);
        let fast = polls_per_second(1_000, 20_000);
        assert!(fast > slow * 1.5, "{slow} -> {fast}");
        // Nobody waiting, no polls; the far tail adds 1/20 s per user.
        assert_eq!(polls_per_second(0, 50_000), 0.0);
        let more = polls_per_second(20_000, 50_000) - at_default_policy;
        assert!((more - 500.0).abs() < 1.0, "{more}");
    }

    #[test]
    fn the_pace_rate_prefers_the_observed_rate_and_assumes_one_when_paused() {
        let p = AdmissionPolicy::rate(10, SEC).unwrap();
        let mut c = QueueCounters {
            last_seq: 100,
            serving: 0,
            version: 1,
            last_tick_at: None,
            paused: false,
            policy: p,
            admit_rate_milli: 0,
        };
        assert_eq!(c.pace_rate_milli(), 10_000, "the policy's promise");
        c.admit_rate_milli = 7_500;
        assert_eq!(c.pace_rate_milli(), 7_500, "what was observed");
        c.paused = true;
        assert_eq!(c.pace_rate_milli(), ASSUMED_RATE_MILLI);
        c.paused = false;
        c.admit_rate_milli = 0;
        c.policy = AdmissionPolicy::capacity(100, SEC).unwrap();
        assert_eq!(c.pace_rate_milli(), 100_000, "a cap per interval");
    }
}
