//! Concerts, their dates (schedules) and seats.

use std::fmt;

use super::{Amount, ConcertId, Money, ScheduleId, Timestamp, ValueError};
use chrono::NaiveDate;

/// A seat number: 1 up to the seat count of its schedule.
///
/// The constructor checks the global bound (1..=[`SeatCount::MAX`]); whether a seat
/// exists on one schedule is checked against that schedule's [`SeatCount`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SeatNo(u16);

impl SeatNo {
    /// Validates a seat number against the largest hall any schedule may have.
    pub fn new(n: i64) -> Result<Self, ValueError> {
        if n < 1 || n > i64::from(SeatCount::MAX) {
            return Err(ValueError::SeatOutOfRange(n, SeatCount::MAX));
        }
        Ok(SeatNo(n as u16))
    }

    /// Validates a seat number against one schedule's seat count.
    pub fn within(n: i64, count: SeatCount) -> Result<Self, ValueError> {
        if n < 1 || n > i64::from(count.get()) {
            return Err(ValueError::SeatOutOfRange(n, count.get()));
        }
        Ok(SeatNo(n as u16))
    }

    /// The number inside.
    pub const fn get(self) -> u16 {
        self.0
    }
}

impl fmt::Display for SeatNo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// How many seats a schedule has: 1..=[`SeatCount::MAX`], 50 by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SeatCount(u16);

impl SeatCount {
    /// The largest hall: a limit on everything keeps every loop bounded.
    pub const MAX: u16 = 1_000;
    /// The seat count of the requirement documents.
    pub const DEFAULT: SeatCount = SeatCount(50);

    /// Validates a seat count.
    pub fn new(n: i64) -> Result<Self, ValueError> {
        if n < 1 || n > i64::from(Self::MAX) {
            return Err(ValueError::SeatCountOutOfRange(n));
        }
        Ok(SeatCount(n as u16))
    }

    /// The number inside.
    pub const fn get(self) -> u16 {
        self.0
    }

    /// Whether `seat` exists on a schedule of this size.
    pub fn contains(self, seat: SeatNo) -> bool {
        seat.0 <= self.0
    }

    /// Every seat, 1..=count, in order.
    pub fn seats(self) -> impl Iterator<Item = SeatNo> {
        (1..=self.0).map(SeatNo)
    }
}

impl Default for SeatCount {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// A non-empty list of prices, seat 1 first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriceList(Vec<Amount>);

impl PriceList {
    /// Validates a list: 1..=[`SeatCount::MAX`] prices.
    pub fn new(prices: Vec<Amount>) -> Result<Self, ValueError> {
        if prices.is_empty() || prices.len() > usize::from(SeatCount::MAX) {
            return Err(ValueError::SeatCountOutOfRange(prices.len() as i64));
        }
        Ok(PriceList(prices))
    }

    /// The prices, seat 1 first.
    pub fn as_slice(&self) -> &[Amount] {
        &self.0
    }
}

/// The prices of a schedule's seats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeatPrices {
    /// Every seat costs the same.
    Uniform(Amount),
    /// One price per seat, seat 1 first; [`NewSchedule::new`] checks that the list
    /// is as long as the seat count.
    PerSeat(PriceList),
}

impl SeatPrices {
    /// The price of one seat. Seats past the end of a per-seat list (which
    /// [`NewSchedule::new`] rules out) cost the last listed price.
    pub fn price_of(&self, seat: SeatNo) -> Amount {
        match self {
            SeatPrices::Uniform(a) => *a,
            SeatPrices::PerSeat(PriceList(prices)) => {
                let i = usize::from(seat.get().saturating_sub(1)).min(prices.len() - 1);
                prices[i]
            }
        }
    }
}

/// A concert name: 1..=200 characters, no control characters, trimmed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ConcertName(String);

impl ConcertName {
    /// The longest name, in characters.
    pub const MAX_CHARS: usize = 200;

    /// Validates a name.
    pub fn new(name: impl AsRef<str>) -> Result<Self, ValueError> {
        let name = name.as_ref().trim();
        let n = name.chars().count();
        if n == 0 || n > Self::MAX_CHARS || name.chars().any(char::is_control) {
            return Err(ValueError::BadConcertName);
        }
        Ok(ConcertName(name.to_owned()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ConcertName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A concert to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewConcert {
    /// Its name.
    pub name: ConcertName,
}

/// A concert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Concert {
    /// Its id.
    pub id: ConcertId,
    /// Its name.
    pub name: ConcertName,
}

/// A schedule (one date of a concert) to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSchedule {
    concert: ConcertId,
    starts_at: Timestamp,
    seat_count: SeatCount,
    prices: SeatPrices,
}

impl NewSchedule {
    /// How far ahead of now a date may be created: ten years (3,653 days). A
    /// date further out is a typing error, not a sale.
    pub const HORIZON: std::time::Duration = std::time::Duration::from_secs(3_653 * 86_400);

    /// Validates a schedule: per-seat prices must list exactly one price per seat.
    pub fn new(
        concert: ConcertId,
        starts_at: Timestamp,
        seat_count: SeatCount,
        prices: SeatPrices,
    ) -> Result<Self, ValueError> {
        if let SeatPrices::PerSeat(list) = &prices
            && list.as_slice().len() != usize::from(seat_count.get())
        {
            return Err(ValueError::PriceCountMismatch {
                given: list.as_slice().len(),
                seats: seat_count.get(),
            });
        }
        if starts_at > Timestamp::LATEST {
            return Err(ValueError::DateOutOfRange);
        }
        Ok(NewSchedule {
            concert,
            starts_at,
            seat_count,
            prices,
        })
    }

    /// The concert it belongs to.
    pub fn concert(&self) -> ConcertId {
        self.concert
    }

    /// When the show starts.
    pub fn starts_at(&self) -> Timestamp {
        self.starts_at
    }

    /// Its date (UTC), unique per concert.
    pub fn date(&self) -> NaiveDate {
        self.starts_at.date()
    }

    /// How many seats.
    pub fn seat_count(&self) -> SeatCount {
        self.seat_count
    }

    /// Seat prices.
    pub fn prices(&self) -> &SeatPrices {
        &self.prices
    }
}

/// One date of a concert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    /// Its id.
    pub id: ScheduleId,
    /// The concert.
    pub concert: ConcertId,
    /// When the show starts; the schedule is bookable strictly before.
    pub starts_at: Timestamp,
    /// How many seats, numbered 1..=count.
    pub seat_count: SeatCount,
}

impl Schedule {
    /// Its date (UTC), unique per concert.
    pub fn date(&self) -> NaiveDate {
        self.starts_at.date()
    }

    /// Whether seats can still be held and sold at `now`.
    pub fn is_open_at(&self, now: Timestamp) -> bool {
        now < self.starts_at
    }
}

/// The state of a seat at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeatState {
    /// Nobody holds it and it is not sold: it can be held.
    Free,
    /// A live hold, until the given instant.
    Held {
        /// When the hold lapses.
        until: Timestamp,
    },
    /// Sold for good.
    Sold,
}

impl SeatState {
    /// The state at `now` of a seat that is `sold` or not and whose last hold, if
    /// any, lapses at `hold_until`: sold wins; a hold is live strictly before its
    /// lapse (lazy expiry: at `hold_until` the seat is free again); else free. The
    /// one definition of "seat free" that every adapter uses.
    #[must_use]
    pub fn at(sold: bool, hold_until: Option<Timestamp>, now: Timestamp) -> SeatState {
        if sold {
            return SeatState::Sold;
        }
        match hold_until {
            Some(until) if now < until => SeatState::Held { until },
            _ => SeatState::Free,
        }
    }
}

/// A seat of a schedule with its price and state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seat {
    /// Its number.
    pub no: SeatNo,
    /// Its price.
    pub price: Amount,
    /// Its state at the instant it was read.
    pub state: SeatState,
}

impl Seat {
    /// The seat as it stands at `now`, a later instant than its read: a hold that
    /// has lapsed since is gone (lazy expiry), everything else is unchanged.
    #[must_use]
    pub fn as_of(self, now: Timestamp) -> Seat {
        match self.state {
            SeatState::Held { until } if until <= now => Seat {
                state: SeatState::Free,
                ..self
            },
            _ => self,
        }
    }
}

/// A schedule with its seat counts at one instant: the bookable-dates list and the
/// sales report are both made of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScheduleSummary {
    /// The schedule.
    pub schedule: Schedule,
    /// Seats that can be held now.
    pub n_free: u32,
    /// Seats under a live hold.
    pub n_held: u32,
    /// Seats sold.
    pub n_sold: u32,
    /// The sum of the prices of the sold seats.
    pub revenue: Money,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn seat_numbers_are_one_to_count() {
        let fifty = SeatCount::DEFAULT;
        assert!(SeatNo::within(0, fifty).is_err());
        assert!(SeatNo::within(1, fifty).is_ok());
        assert!(SeatNo::within(50, fifty).is_ok());
        assert_eq!(
            SeatNo::within(51, fifty),
            Err(ValueError::SeatOutOfRange(51, 50))
        );
        assert!(SeatNo::new(1001).is_err());
        assert!(!fifty.contains(SeatNo::new(51).unwrap()));
        assert_eq!(fifty.seats().count(), 50);
    }

    #[test]
    fn a_seat_is_sold_held_until_its_lapse_or_free() {
        let t = Timestamp::from_millis(1_000);
        let later = Timestamp::from_millis(2_000);
        assert_eq!(SeatState::at(true, Some(later), t), SeatState::Sold);
        assert_eq!(SeatState::at(true, None, t), SeatState::Sold);
        assert_eq!(
            SeatState::at(false, Some(later), t),
            SeatState::Held { until: later }
        );
        // At its lapse the hold is gone (lazy expiry), and after it too.
        assert_eq!(SeatState::at(false, Some(t), t), SeatState::Free);
        assert_eq!(SeatState::at(false, Some(t), later), SeatState::Free);
        assert_eq!(SeatState::at(false, None, t), SeatState::Free);
    }

    #[test]
    fn seat_counts_are_bounded() {
        assert!(SeatCount::new(0).is_err());
        assert!(SeatCount::new(1001).is_err());
        assert_eq!(SeatCount::new(1000).unwrap().get(), 1000);
    }

    #[test]
    fn per_seat_prices_must_match_the_count() {
        let c = ConcertId::new(1).unwrap();
        let a = Amount::new(10).unwrap();
        let three = SeatCount::new(3).unwrap();
        assert!(
            NewSchedule::new(
                c,
                Timestamp::EPOCH,
                three,
                SeatPrices::PerSeat(PriceList::new(vec![a; 2]).unwrap())
            )
            .is_err()
        );
        let s = NewSchedule::new(
            c,
            Timestamp::EPOCH,
            three,
            SeatPrices::PerSeat(PriceList::new(vec![a, Amount::new(20).unwrap(), a]).unwrap()),
        )
        .unwrap();
        assert_eq!(
            s.prices().price_of(SeatNo::new(2).unwrap()).minor_units(),
            20
        );
    }

    #[test]
    fn price_lists_are_never_empty_and_dates_end_in_9999() {
        assert!(PriceList::new(vec![]).is_err());
        let c = ConcertId::new(1).unwrap();
        let late = Timestamp::LATEST.plus(std::time::Duration::from_millis(1));
        let uniform = SeatPrices::Uniform(Amount::new(1).unwrap());
        assert_eq!(
            NewSchedule::new(c, late, SeatCount::DEFAULT, uniform.clone()),
            Err(ValueError::DateOutOfRange)
        );
        assert!(NewSchedule::new(c, Timestamp::LATEST, SeatCount::DEFAULT, uniform).is_ok());
    }

    #[test]
    fn concert_names() {
        assert_eq!(
            ConcertName::new("  Blue Night ").unwrap().as_str(),
            "Blue Night"
        );
        assert!(ConcertName::new("   ").is_err());
        assert!(ConcertName::new("a\nb").is_err());
        assert!(ConcertName::new("x".repeat(201)).is_err());
    }

    #[test]
    fn a_schedule_closes_when_the_show_starts() {
        let s = Schedule {
            id: ScheduleId::new(1).unwrap(),
            concert: ConcertId::new(1).unwrap(),
            starts_at: Timestamp::from_millis(1_000),
            seat_count: SeatCount::DEFAULT,
        };
        assert!(s.is_open_at(Timestamp::from_millis(999)));
        assert!(!s.is_open_at(Timestamp::from_millis(1_000)));
    }

    proptest! {
        #[test]
        fn seat_no_within_accepts_exactly_the_range(n in -5i64..1100, count in 1i64..=1000) {
            let count = SeatCount::new(count).unwrap();
            let ok = n >= 1 && n <= i64::from(count.get());
            prop_assert_eq!(SeatNo::within(n, count).is_ok(), ok);
        }
    }
}
