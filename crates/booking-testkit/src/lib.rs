//! Test support for booking: a [`Kit`] that wires a store to a manual clock, the
//! [`contract`] suite that every storage adapter must pass, and the [`model`]-based
//! property test every adapter runs too.
//!
//! An adapter's test file runs the whole suite with one line:
//!
//! ```text
//! booking_testkit::contract_suite!(async { (MyStore::fresh().await, guard) });
//! ```
//!
//! The expression is evaluated once per test and must give a fresh, empty store and
//! a guard that keeps whatever the store needs (a temporary directory, say) alive
//! until the test ends.

// Test support: a broken setup stops the test (or the simulator's baseline) at once,
// so unwrapping is right here; CI denies it in every other library and binary.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![warn(missing_docs)]

pub mod bench;
pub mod contract;
pub mod model;
pub mod pg;
pub mod ports;
pub mod stress;

use std::time::Duration;

use booking_core::domain::{
    AdmissionPolicy, Amount, ConcertName, NewSchedule, PriceList, Schedule, SeatCount, SeatNo,
    SeatPrices, Timestamp, UserId,
};
use booking_core::{Admitted, Booking, Clock, Config, ManualClock, Store, TokenSigner};

/// 2026-01-01T00:00:00Z: where every test clock starts.
pub const T0: Timestamp = Timestamp::from_millis(1_767_225_600_000);

/// The secret the kit signs tokens with.
pub const SECRET: &[u8] = b"booking-testkit secret, 32+ bytes long";

/// A booking engine over a store, with a manual clock the test moves.
pub struct Kit<S> {
    /// The engine.
    pub booking: Booking<S, ManualClock>,
    /// The clock the engine reads.
    pub clock: ManualClock,
}

/// The configuration the kit uses: the documented defaults.
pub fn config() -> Config {
    Config::default()
}

impl<S: Store> Kit<S> {
    /// A kit over `store` with [`config`], the clock at [`T0`].
    pub fn new(store: S) -> Self {
        Self::with_config(store, config())
    }

    /// A kit over `store` with a configuration of the test's choice.
    pub fn with_config(store: S, config: Config) -> Self {
        let clock = ManualClock::new(T0);
        let signer = TokenSigner::new(SECRET).expect("the kit's secret is long enough");
        let booking =
            Booking::new(store, clock.clone(), signer, config).expect("the kit's config is valid");
        Kit { booking, clock }
    }

    /// Moves the clock forward.
    pub fn advance(&self, d: Duration) {
        self.clock.advance(d);
    }

    /// Sets a policy that admits everyone waiting at the next tick.
    pub async fn admit_everyone(&self) {
        let p = AdmissionPolicy::rate(AdmissionPolicy::MAX_BATCH, Duration::from_millis(10))
            .expect("valid policy");
        self.booking.set_policy(p).await.expect("set policy");
    }

    /// Ticks until the serving counter stops moving (at most 100 ticks), moving the
    /// clock by the policy interval each time.
    pub async fn tick_all(&self) {
        for _ in 0..100 {
            let counters = self.booking.queue_stats().await.expect("stats").counters;
            self.advance(counters.policy.interval());
            match self.booking.tick().await.expect("tick") {
                booking_core::TickOutcome::Advanced { admitted, .. } if admitted > 0 => {}
                _ => return,
            }
        }
    }

    /// A new user, issued a token, admitted and shown up: returns the user, the
    /// token and the gate's proof. Sets a policy that admits everyone.
    pub async fn admitted_user(&self) -> (UserId, String, Admitted) {
        self.admit_everyone().await;
        let user = UserId::random();
        let issued = self.booking.issue_token(user).await.expect("issue");
        self.tick_all().await;
        let who = self.booking.gate(&issued.token).await.expect("admitted");
        (user, issued.token, who)
    }

    /// A concert with one date 30 days after the clock's time, `seats` seats,
    /// seat `n` costing `100 * n`.
    pub async fn concert_with_date(&self, seats: i64) -> Schedule {
        concert_date(&self.booking, seats, None).await
    }

    /// Another date of `concert`, `days` days after the clock's time.
    pub async fn date_of(
        &self,
        concert: booking_core::domain::ConcertId,
        days: u64,
        seats: i64,
    ) -> Schedule {
        date_of(&self.booking, concert, days, seats, None).await
    }

    /// The clock's time.
    pub fn clock_now(&self) -> Timestamp {
        self.clock.now()
    }
}

/// A new concert with one date 30 days from now and `seats` seats, each costing
/// `price`, or `100 * n` for seat `n` when `price` is `None`.
pub async fn concert_date<S: Store, C: Clock>(
    booking: &Booking<S, C>,
    seats: i64,
    price: Option<i64>,
) -> Schedule {
    let concert = booking
        .create_concert(ConcertName::new("Test Concert").expect("name"))
        .await
        .expect("concert");
    date_of(booking, concert.id, 30, seats, price).await
}

async fn date_of<S: Store, C: Clock>(
    booking: &Booking<S, C>,
    concert: booking_core::domain::ConcertId,
    days: u64,
    seats: i64,
    price: Option<i64>,
) -> Schedule {
    let count = SeatCount::new(seats).expect("seat count");
    let prices = match price {
        Some(p) => SeatPrices::Uniform(amount(p)),
        None => SeatPrices::PerSeat(
            PriceList::new(
                count
                    .seats()
                    .map(|s| amount(100 * i64::from(s.get())))
                    .collect(),
            )
            .expect("prices"),
        ),
    };
    let starts_at = booking
        .clock()
        .now()
        .plus(Duration::from_secs(days * 86_400));
    let new = NewSchedule::new(concert, starts_at, count, prices).expect("schedule");
    booking.create_schedule(new).await.expect("create schedule")
}

/// Seat `n` (panics outside 1..=1000: test code only).
pub fn seat(n: i64) -> SeatNo {
    SeatNo::new(n).expect("seat number")
}

/// An amount (panics below 1: test code only).
pub fn amount(n: i64) -> Amount {
    Amount::new(n).expect("amount")
}
