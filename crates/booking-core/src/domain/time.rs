//! Points in time, in whole milliseconds since the Unix epoch.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};

use super::ValueError;

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

/// Parses a calendar date written exactly `YYYY-MM-DD` (four-digit year, two-digit
/// month and day, a day that exists), the one form the API and the CLI accept: no
/// sign, no missing zero, no space around it.
///
/// # Errors
/// [`ValueError::BadDate`] for anything else.
pub fn parse_date(s: &str) -> Result<NaiveDate, ValueError> {
    let bad = || ValueError::BadDate(s.chars().take(40).collect());
    let b = s.as_bytes();
    let shape_ok = b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit());
    if !shape_ok {
        return Err(bad());
    }
    let num = |r: std::ops::Range<usize>| s[r].parse::<u32>().map_err(|_| bad());
    let year = i32::try_from(num(0..4)?).map_err(|_| bad())?;
    if year == 0 {
        return Err(bad());
    }
    NaiveDate::from_ymd_opt(year, num(5..7)?, num(8..10)?).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_exactly_yyyy_mm_dd() {
        let d = |y, m, day| NaiveDate::from_ymd_opt(y, m, day).unwrap();
        assert_eq!(parse_date("2026-12-12"), Ok(d(2026, 12, 12)));
        assert_eq!(parse_date("0001-01-01"), Ok(d(1, 1, 1)));
        assert_eq!(parse_date("2028-02-29"), Ok(d(2028, 2, 29)));
        for bad in [
            "+002026-12-12",
            "2026-1-1",
            "2026-12-12 ",
            " 2026-12-12",
            "2026-12-12T00:00:00Z",
            "2026/12/12",
            "20261212",
            "2026-13-01",
            "2026-02-30",
            "2027-02-29",
            "0000-01-01",
            "-026-12-12",
            "2026-+1-12",
            "２０２６-12-12",
            "",
        ] {
            assert!(
                matches!(parse_date(bad), Err(ValueError::BadDate(_))),
                "{bad:?}"
            );
        }
    }

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
