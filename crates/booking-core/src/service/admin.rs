//! Operator actions: catalog set-up, admission control, ticking, sweeping, reports.

use std::time::Duration;

use super::Booking;
use crate::clock::Clock;
use crate::domain::{
    AdmissionPolicy, Concert, ConcertId, ConcertName, Hold, NewConcert, NewSchedule, QueueCounters,
    Schedule, ScheduleSummary, SeatPrices,
};
use crate::error::{CatalogError, ScheduleError};
use crate::ports::{Advance, CreateScheduleError, Store, StoreError};

/// What one call of [`Booking::tick`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TickOutcome {
    /// Admission is paused.
    Paused,
    /// The policy's interval has not passed since the last advance.
    NotDue,
    /// Nobody is waiting.
    Idle,
    /// The sale is sold out ([`Booking::sold_out`]): nobody is admitted until a
    /// seat comes back.
    SoldOut,
    /// Another process advanced the counter first; this tick did nothing.
    LostRace,
    /// This process advanced the counter.
    Advanced {
        /// How many users were admitted (0 when the capacity is full).
        admitted: u64,
        /// The serving counter now.
        serving: u64,
    },
}

/// The state of the waiting room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueStats {
    /// The shared counters (issued, serving, policy, paused, rate).
    pub counters: QueueCounters,
    /// Users with an active session now.
    pub n_active: u64,
}

/// What one sweep recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SweepReport {
    /// Holds recorded as expired.
    pub n_holds_expired: u64,
    /// Sessions recorded as expired.
    pub n_sessions_expired: u64,
    /// Feed events deleted: older than [`Config::event_retention`](super::Config).
    pub n_events_pruned: u64,
}

/// How many rows one sweep touches at most: a limit keeps each transaction short.
const SWEEP_BATCH: u32 = 10_000;

/// The longest time, in policy intervals, an admission's rate is averaged over.
const RATE_WINDOW: u32 = 4;

impl<S: Store, C: Clock> Booking<S, C> {
    /// Creates a concert.
    ///
    /// # Errors
    /// Only storage failures.
    pub async fn create_concert(&self, name: ConcertName) -> Result<Concert, StoreError> {
        self.store.create_concert(NewConcert { name }).await
    }

    /// Creates a date of a concert with its seats.
    ///
    /// # Errors
    /// [`ScheduleError::InThePast`], [`ScheduleError::TooFarAhead`] (more than
    /// [`NewSchedule::HORIZON`] from now), [`ScheduleError::PriceAboveMaxBalance`]
    /// (a seat nobody could pay for), [`ScheduleError::UnknownConcert`],
    /// [`ScheduleError::DateTaken`].
    pub async fn create_schedule(&self, new: NewSchedule) -> Result<Schedule, ScheduleError> {
        let now = self.now();
        if new.starts_at() <= now {
            return Err(ScheduleError::InThePast);
        }
        let latest = now.plus(NewSchedule::HORIZON);
        if new.starts_at() > latest {
            return Err(ScheduleError::TooFarAhead {
                latest: latest.date(),
            });
        }
        let max = self.config.max_balance;
        let dearest = match new.prices() {
            SeatPrices::Uniform(a) => Some(*a),
            SeatPrices::PerSeat(list) => list.as_slice().iter().copied().max(),
        };
        if let Some(price) = dearest
            && price.as_money() > max
        {
            return Err(ScheduleError::PriceAboveMaxBalance { price, max });
        }
        let created = self.store.create_schedule(new).await.map_err(|e| match e {
            CreateScheduleError::UnknownConcert => ScheduleError::UnknownConcert,
            CreateScheduleError::DateTaken(d) => ScheduleError::DateTaken(d),
            CreateScheduleError::Store(s) => ScheduleError::Store(s),
        })?;
        self.sale_changed();
        Ok(created)
    }

    /// Every date of a concert, past ones too, with sold / held / free counts and
    /// revenue: the sales report.
    ///
    /// # Errors
    /// [`CatalogError::UnknownConcert`].
    pub async fn sales(&self, concert: ConcertId) -> Result<Vec<ScheduleSummary>, CatalogError> {
        if self.store.concert(concert).await?.is_none() {
            return Err(CatalogError::UnknownConcert);
        }
        Ok(self.store.schedule_summaries(concert, self.now()).await?)
    }

    /// Replaces the admission policy for every instance.
    ///
    /// # Errors
    /// Only storage failures.
    pub async fn set_policy(&self, policy: AdmissionPolicy) -> Result<(), StoreError> {
        self.store.set_policy(policy).await
    }

    /// Pauses (`true`) or resumes (`false`) admission for every instance.
    ///
    /// # Errors
    /// Only storage failures.
    pub async fn set_paused(&self, paused: bool) -> Result<(), StoreError> {
        self.store.set_paused(paused).await
    }

    /// The waiting room's counters and active users.
    ///
    /// # Errors
    /// Only storage failures.
    pub async fn queue_stats(&self) -> Result<QueueStats, StoreError> {
        let now = self.now();
        let counters = self.store.counters().await?;
        let n_active = self.store.count_active(now).await?;
        Ok(QueueStats { counters, n_active })
    }

    /// Holds live now, across all dates, soonest expiry first.
    ///
    /// # Errors
    /// Only storage failures.
    pub async fn live_holds(&self) -> Result<Vec<Hold>, StoreError> {
        self.store
            .live_holds(self.now(), self.config.list_limit)
            .await
    }

    /// One admission tick. Any number of instances may call it as often as they
    /// like: it advances only when the policy's interval has passed since the last
    /// advance, and the advance is a compare-and-set, so exactly one caller wins
    /// each tick.
    ///
    /// While the sale is sold out ([`Booking::sold_out`]) nobody is admitted.
    ///
    /// The number admitted is what the policy allows: at most the batch, and at
    /// most the free capacity. Active users never exceed the cap: the only way to
    /// become active is this advance; the count it is based on can only have shrunk
    /// if the compare-and-set succeeds (a policy change or a pause also moves the
    /// version); and sessions that lapsed within `Config::clock_tolerance` still
    /// count, so a show-up judged by a slightly earlier clock cannot revive one.
    ///
    /// # Errors
    /// Only storage failures.
    pub async fn tick(&self) -> Result<TickOutcome, StoreError> {
        self.tick_timed().await.map(|(outcome, _)| outcome)
    }

    /// [`Booking::tick`], and how long until the next advance is due by this
    /// engine's clock when the tick knows it (after an advance, by anyone's, or
    /// when one was not due yet): a ticker can sleep exactly that long, so
    /// admissions keep the policy's interval instead of waiting for a ticker's
    /// round that falls just after it.
    ///
    /// # Errors
    /// Only storage failures.
    pub async fn tick_timed(&self) -> Result<(TickOutcome, Option<Duration>), StoreError> {
        let now = self.now();
        let c = self.store.counters().await?;
        if c.paused {
            return Ok((TickOutcome::Paused, None));
        }
        let interval = c.policy.interval();
        if let Some(due) = c.last_tick_at.map(|t| t.plus(interval))
            && now < due
        {
            return Ok((TickOutcome::NotDue, Some(due.since(now))));
        }
        let n_waiting = c.n_waiting();
        if n_waiting == 0 {
            return Ok((TickOutcome::Idle, None));
        }
        if self.sold_out().await? {
            return Ok((TickOutcome::SoldOut, None));
        }
        // Sessions that lapsed within the clock tolerance still count: a gate whose
        // clock reads a little earlier may still let such a user show up.
        let n_active = match c.policy.max_active() {
            Some(_) => {
                let since = now.minus(self.config.clock_tolerance);
                self.store.count_active(since).await?
            }
            None => 0,
        };
        let n = c.policy.admit_count(n_waiting, n_active);
        // The rate over the time since the last advance (at least one interval), so
        // a ticker that runs late does not overstate it; at most four intervals, so
        // a line that was empty for a while does not look slow when people arrive
        // (tickers run far more often than the interval on every instance).
        let elapsed = c.last_tick_at.map_or(interval, |t| {
            now.since(t).max(interval).min(interval * RATE_WINDOW)
        });
        let elapsed_ms = (elapsed.as_millis() as u64).max(1);
        let observed = n.saturating_mul(1_000_000) / elapsed_ms;
        // A moving average over ticks: a quarter of the newest tick's rate.
        let admit_rate_milli = if c.version == 0 {
            observed
        } else {
            (c.admit_rate_milli.saturating_mul(3) + observed) / 4
        };
        let adv = Advance {
            expected_version: c.version,
            serving: c.serving + n,
            now,
            admitted_until: now.plus(self.config.show_up_grace),
            admit_rate_milli,
        };
        if !self.store.advance(adv).await? {
            // Another instance advanced at about this time.
            return Ok((TickOutcome::LostRace, Some(interval)));
        }
        self.fresh_counters(now).await?;
        super::activity::ActivityCounters::add(&self.activity.admitted, n);
        Ok((
            TickOutcome::Advanced {
                admitted: n,
                serving: adv.serving,
            },
            Some(interval),
        ))
    }

    /// Records expired holds and lapsed sessions. Correctness never waits for it:
    /// expiry is lazy, and this only writes down what has already happened.
    ///
    /// # Errors
    /// Only storage failures.
    pub async fn sweep(&self) -> Result<SweepReport, StoreError> {
        let now = self.now();
        let report = SweepReport {
            n_holds_expired: self.store.sweep_expired_holds(now, SWEEP_BATCH).await?,
            n_sessions_expired: self.store.expire_sessions(now, SWEEP_BATCH).await?,
            n_events_pruned: 0,
        };
        // Retention: events older than the configured age that every active
        // webhook endpoint has had (at or below the lowest cursor); with no
        // endpoint, up to the last id (feed readers page by themselves).
        let last = self.store.last_event_id().await?;
        let up_to = match self.store.lowest_webhook_cursor().await? {
            Some(lowest) => lowest.min(last),
            None => last,
        };
        let report = SweepReport {
            n_events_pruned: self
                .store
                .prune_events(now.minus(self.config.event_retention), up_to)
                .await?,
            ..report
        };
        let counters = &self.activity;
        super::activity::ActivityCounters::add(&counters.holds_expired, report.n_holds_expired);
        super::activity::ActivityCounters::add(
            &counters.sessions_expired,
            report.n_sessions_expired,
        );
        Ok(report)
    }
}
