//! The services: every rule of the waiting room, holds, wallet and payment.
//!
//! [`Booking`] is generic over its storage ([`Store`]) and its [`Clock`]. It keeps no
//! state of its own but short-lived caches (the queue counters, seat maps, sessions
//! it let through) and a cache of schedules (which never change once created), so
//! any number of `Booking` values (in one process or in many) can share one store.

mod activity;
mod admin;
mod catalog;
mod events;
mod holds;
mod payment;
mod queue;
mod sale;
mod wallet;
mod webhooks;

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use chrono::NaiveDate;

use crate::clock::Clock;
use crate::domain::{
    Amount, ConcertId, Money, QueueCounters, QueueSeq, Schedule, ScheduleId, ScheduleSummary,
    Timestamp,
};
use crate::ports::Store;
use crate::token::TokenSigner;

pub use activity::Activity;
pub use admin::{QueueStats, SweepReport, TickOutcome};
pub use events::MAX_EVENTS_PER_READ;
pub use payment::{MAX_PAID_AT_ONCE, PaymentReceipt};
pub use queue::{Admitted, IssuedToken, LineSnapshot, QueueStatus, QueueView};
pub use webhooks::{AddedWebhook, Delivery, NextEvents, WebhookError};

/// Tunable rules. [`Config::default`] gives the documented defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// How long a hold keeps its seat (default 300 s; 1 s to 1 day).
    pub hold_ttl: Duration,
    /// Live holds per user at most (default 4; 1 to 50).
    pub max_live_holds: u32,
    /// How long a session lasts once the admitted user shows up (default 600 s; 1 s to 1 day).
    pub session_ttl: Duration,
    /// How long an admitted user has to show up before losing the place
    /// (default 60 s; 1 s to 1 day).
    pub show_up_grace: Duration,
    /// The longest the waiting line may get (default 1,000,000).
    pub max_waiting: u64,
    /// The largest single charge (default 1,000,000 minor units).
    pub max_charge: Amount,
    /// The largest balance (default 100,000,000 minor units).
    pub max_balance: Money,
    /// How long the queue counters may be served from this instance's cache for
    /// status polls (default 0: always read). A server sets it to a fraction of a
    /// second so that polls cost no database round trip.
    pub counters_cache: Duration,
    /// How long a session this instance let through may pass the gate of catalog
    /// reads, cancels and reservation lists again without a read (default 0: always
    /// read; at most 10 s). Its end time is still checked every time, and a payment
    /// on this instance forgets it at once; a payment on another instance is seen by
    /// reads only after this long. Holds and payments never depend on it: their
    /// writes check the session themselves ([`Booking::gate_for_write`]).
    pub gate_cache: Duration,
    /// How long a seat map read from storage may be served again by this instance
    /// (default 0: always read; at most 10 s). Each seat's state is recomputed at
    /// every read, so a lapsed hold shows free at once; holds, cancels and payments
    /// made through this instance drop the date's map. A hold or sale made through
    /// another instance shows after this long (trying to hold such a seat gets
    /// "seat taken", never a second owner). A concert's bookable dates (their seat
    /// counts) are kept as long; a new date or a cancel through this instance shows
    /// at once.
    pub seat_map_cache: Duration,
    /// How long this instance trusts its sold-out mark before checking the sale
    /// in storage again (default 1 s; 0: check at every use; at most 1 min). A
    /// mark that says sold out also clears by itself when the soonest held seat
    /// lapses, and a cancel or a new date through this instance clears it at once;
    /// a seat freed by a cancel on another instance is seen after this long.
    pub sold_out_recheck: Duration,
    /// Most rows any list returns (default 1,000).
    pub list_limit: u32,
    /// How far apart two instances' clocks, plus a request's time in flight, may be
    /// (default 2 s; at most 1 min). The ticker counts a session that lapsed this
    /// recently as still active, so a gate that read its clock a little earlier
    /// (and lets the user show up) cannot push the active users above the cap.
    pub clock_tolerance: Duration,
    /// How long the event feed keeps an event (default 7 days; 1 min to 10 years):
    /// the sweeper deletes older ones.
    pub event_retention: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            hold_ttl: Duration::from_secs(300),
            max_live_holds: 4,
            session_ttl: Duration::from_secs(600),
            show_up_grace: Duration::from_secs(60),
            max_waiting: 1_000_000,
            max_charge: Amount::new(1_000_000).unwrap_or_else(|_| unreachable!()),
            max_balance: Money::new(100_000_000).unwrap_or_else(|_| unreachable!()),
            counters_cache: Duration::ZERO,
            gate_cache: Duration::ZERO,
            seat_map_cache: Duration::ZERO,
            sold_out_recheck: Duration::from_secs(1),
            list_limit: 1_000,
            clock_tolerance: Duration::from_secs(2),
            event_retention: Duration::from_secs(7 * 86_400),
        }
    }
}

/// Why a [`Config`] was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(pub &'static str);

impl Config {
    /// The oldest queue counters a status answer of this instance may be computed
    /// from: [`Config::counters_cache`], times four while one caller reads them
    /// again and the others are answered from the old value. A user may be told
    /// "waiting" this long after their place was admitted (never the reverse).
    pub fn max_counters_staleness(&self) -> Duration {
        self.counters_cache * STALE_FACTOR
    }

    /// Checks every bound.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let second = Duration::from_secs(1);
        let day = Duration::from_secs(86_400);
        let in_range = |d: Duration| (second..=day).contains(&d);
        if !in_range(self.hold_ttl) {
            return Err(ConfigError("the hold TTL is 1 s to 1 day"));
        }
        if !in_range(self.session_ttl) {
            return Err(ConfigError("the session TTL is 1 s to 1 day"));
        }
        if !in_range(self.show_up_grace) {
            return Err(ConfigError("the show-up grace is 1 s to 1 day"));
        }
        if !(1..=50).contains(&self.max_live_holds) {
            return Err(ConfigError("live holds per user are 1 to 50"));
        }
        if !(1..=100_000_000).contains(&self.max_waiting) {
            return Err(ConfigError("the waiting line is 1 to 100,000,000 long"));
        }
        if self.max_balance.minor_units() > 1_000_000_000_000_000 {
            return Err(ConfigError(
                "the maximum balance is at most 10^15 minor units",
            ));
        }
        if self.max_charge.as_money() > self.max_balance {
            return Err(ConfigError(
                "the maximum charge exceeds the maximum balance",
            ));
        }
        if self.counters_cache > Duration::from_secs(10) {
            return Err(ConfigError("the counters cache is at most 10 s"));
        }
        if self.gate_cache > Duration::from_secs(10) {
            return Err(ConfigError("the gate cache is at most 10 s"));
        }
        if self.seat_map_cache > Duration::from_secs(10) {
            return Err(ConfigError("the seat map cache is at most 10 s"));
        }
        if self.sold_out_recheck > Duration::from_secs(60) {
            return Err(ConfigError("the sold-out re-check is at most 1 min"));
        }
        if self.clock_tolerance > Duration::from_secs(60) {
            return Err(ConfigError("the clock tolerance is at most 1 min"));
        }
        if !(Duration::from_secs(60)..=Duration::from_secs(10 * 365 * 86_400))
            .contains(&self.event_retention)
        {
            return Err(ConfigError("the event retention is 1 min to 10 years"));
        }
        if !(1..=100_000).contains(&self.list_limit) {
            return Err(ConfigError("the list limit is 1 to 100,000"));
        }
        Ok(())
    }
}

/// The booking engine: one value per process (or per test), cheap to share behind an
/// `Arc`.
pub struct Booking<S, C> {
    store: S,
    clock: C,
    signer: TokenSigner,
    config: Config,
    counters_cache: Mutex<Option<Cached<QueueCounters>>>,
    /// Schedules found so far. A schedule is never changed or removed once
    /// created, so an entry never goes stale; the cache is emptied when full.
    schedules: Mutex<ScheduleCache>,
    /// Sessions this instance let through, by place.
    sessions: Mutex<HashMap<QueueSeq, queue::SeenSession>>,
    /// Seat maps read from storage (see [`Config::seat_map_cache`]).
    seat_maps: Mutex<catalog::SeatMaps>,
    /// Each concert's date summaries read from storage, for the bookable dates
    /// (see [`Config::seat_map_cache`]).
    date_lists: Mutex<HashMap<ConcertId, Cached<Vec<ScheduleSummary>>>>,
    /// The sold-out mark (see [`Config::sold_out_recheck`]).
    sale: Mutex<sale::SaleMark>,
    /// What this engine did (see [`Booking::activity`]).
    activity: activity::ActivityCounters,
}

/// How many schedules [`Booking`] remembers before it starts over.
const SCHEDULE_CACHE: usize = 10_000;

/// How many sessions [`Booking`] remembers before it starts over.
const SESSION_CACHE: usize = 100_000;

/// Locks a cache, ignoring poisoning: every cache update is a single insert or
/// removal, so a panic elsewhere cannot leave one half-written.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Schedules by id, and their ids by (concert, date).
#[derive(Default)]
struct ScheduleCache {
    by_id: HashMap<ScheduleId, Schedule>,
    by_date: HashMap<(ConcertId, NaiveDate), ScheduleId>,
}

impl<S: Store, C: Clock> Booking<S, C> {
    /// A booking engine over `store`, reading time from `clock` and signing queue
    /// tokens with `signer`.
    ///
    /// # Errors
    /// [`ConfigError`] when a setting is out of bounds.
    pub fn new(
        store: S,
        clock: C,
        signer: TokenSigner,
        config: Config,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Booking {
            store,
            clock,
            signer,
            config,
            counters_cache: Mutex::new(None),
            schedules: Mutex::new(ScheduleCache::default()),
            sessions: Mutex::new(HashMap::new()),
            seat_maps: Mutex::new(catalog::SeatMaps::default()),
            date_lists: Mutex::new(HashMap::new()),
            sale: Mutex::new(sale::SaleMark::default()),
            activity: activity::ActivityCounters::default(),
        })
    }

    /// The storage.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The clock.
    pub fn clock(&self) -> &C {
        &self.clock
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// What this engine has done since it was made (admissions, sweeps, payments).
    pub fn activity(&self) -> Activity {
        self.activity.read()
    }

    fn now(&self) -> Timestamp {
        self.clock.now()
    }
}

/// A value read from storage, kept for a short time (stale-while-refresh).
#[derive(Debug, Clone)]
struct Cached<T> {
    /// When it was read.
    at: Timestamp,
    value: T,
    /// A caller is reading it again.
    refreshing: bool,
}

/// How many times its maximum age a cached value may be served while one caller
/// reads it again.
const STALE_FACTOR: u32 = 4;

impl<T: Clone> Cached<T> {
    /// The value when it can be served at `now`: younger than `max_age`, or younger
    /// than [`STALE_FACTOR`] times that while another caller reads it again.
    /// Otherwise `None`, and the caller becomes the one who reads it again. Under a
    /// burst this is one read per period instead of one per request that arrives
    /// while the read is under way; a caller that went away mid-read cannot stall
    /// the cache, since past that age every caller reads.
    fn serve(slot: Option<&mut Self>, now: Timestamp, max_age: Duration) -> Option<T> {
        let c = slot?;
        if now < c.at {
            return None;
        }
        let age = now.since(c.at);
        if age < max_age || (c.refreshing && age < max_age * STALE_FACTOR) {
            return Some(c.value.clone());
        }
        c.refreshing = true;
        None
    }

    fn fresh(at: Timestamp, value: T) -> Self {
        Cached {
            at,
            value,
            refreshing: false,
        }
    }
}
