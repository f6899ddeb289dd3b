//! Points in time, in whole milliseconds since the Unix epoch.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};

/// A point in time with millisecond precision (UTC).
///
/// Milliseconds keep every backend exact: SQLite and PostgreSQL store the value as a
/// plain 64-bit integer, so what is written is what is read back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    /// The Unix epoch.
    pub const EPOCH: Timestamp = Timestamp(0);
    /// The last millisecond of 9999-12-31 (UTC): the latest date every backend
    /// stores as a calendar date.
    pub const LATEST: Timestamp = Timestamp(253_402_300_799_999);

    /// A timestamp from milliseconds since the Unix epoch.
    pub const fn from_millis(ms: i64) -> Self {
        Timestamp(ms)
    }

    /// Milliseconds since the Unix epoch.
    pub const fn as_millis(self) -> i64 {
        self.0
    }

    /// Converts a chrono date-time, dropping anything finer than a millisecond.
    pub fn from_datetime(dt: DateTime<Utc>) -> Self {
        Timestamp(dt.timestamp_millis())
    }

    /// Converts to a chrono date-time.
    pub fn to_datetime(self) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(self.0).unwrap_or(DateTime::<Utc>::MIN_UTC)
    }

    /// The calendar date (UTC) this instant falls on.
    pub fn date(self) -> NaiveDate {
        self.to_datetime().date_naive()
    }

    /// This instant moved back by `d`, saturating at the beginning of time.
    pub fn minus(self, d: Duration) -> Self {
        let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        Timestamp(self.0.saturating_sub(ms))
    }

    /// This instant moved forward by `d`, saturating at the end of time.
    pub fn plus(self, d: Duration) -> Self {
        let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        Timestamp(self.0.saturating_add(ms))
    }

    /// The time from `earlier` to `self`, zero when `earlier` is later.
    pub fn since(self, earlier: Timestamp) -> Duration {
        let ms = self.0.saturating_sub(earlier.0).max(0);
        Duration::from_millis(ms as u64)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}",
            self.to_datetime()
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plus_and_since_are_inverse() {
        let t = Timestamp::from_millis(1_000);
        let later = t.plus(Duration::from_secs(300));
        assert_eq!(later.as_millis(), 301_000);
        assert_eq!(later.since(t), Duration::from_secs(300));
        assert_eq!(t.since(later), Duration::ZERO);
    }

    #[test]
    fn latest_is_the_end_of_year_9999() {
        assert_eq!(Timestamp::LATEST.to_string(), "9999-12-31T23:59:59.999Z");
        assert_eq!(
            Timestamp::LATEST
                .minus(Duration::from_millis(999))
                .to_string(),
            "9999-12-31T23:59:59.000Z"
        );
    }

    #[test]
    fn plus_saturates() {
        let t = Timestamp::from_millis(i64::MAX - 1);
        assert_eq!(t.plus(Duration::from_secs(10)).as_millis(), i64::MAX);
    }

    #[test]
    fn round_trips_through_chrono() {
        let t = Timestamp::from_millis(1_767_225_600_123);
        assert_eq!(Timestamp::from_datetime(t.to_datetime()), t);
        assert_eq!(t.to_string(), "2026-01-01T00:00:00.123Z");
        assert_eq!(t.date(), NaiveDate::from_ymd_opt(2026, 1, 1).unwrap());
    }
}
