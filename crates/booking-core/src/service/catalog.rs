//! The catalog: bookable dates and seat maps (R2).

use std::collections::HashMap;

use chrono::NaiveDate;

use super::{Booking, Cached};
use crate::clock::Clock;
use crate::domain::{Concert, ConcertId, Schedule, ScheduleId, ScheduleSummary, Seat, Timestamp};
use crate::error::CatalogError;
use crate::ports::{Store, StoreError};

/// How many concerts' date lists [`Booking`] remembers before it starts over.
const DATE_LIST_CACHE: usize = 1_000;

/// Seat maps read from storage, with the instant of the read; `generation` moves
/// with every write through this instance, so that a read which started before a
/// write does not put back the map that write dropped.
#[derive(Default)]
pub(super) struct SeatMaps {
    generation: u64,
    by_schedule: HashMap<ScheduleId, (Timestamp, Vec<Seat>)>,
}

impl<S: Store, C: Clock> Booking<S, C> {
    /// Every concert.
    ///
    /// # Errors
    /// Only storage failures.
    pub async fn concerts(&self) -> Result<Vec<Concert>, CatalogError> {
        Ok(self.store.concerts().await?)
    }

    /// One concert by id.
    ///
    /// # Errors
    /// [`CatalogError::UnknownConcert`].
    pub async fn concert(&self, id: ConcertId) -> Result<Concert, CatalogError> {
        self.store
            .concert(id)
            .await?
            .ok_or(CatalogError::UnknownConcert)
    }

    /// The dates of `concert` that can still be booked: the show has not started
    /// and at least one seat is free now. Earliest first, with seat counts.
    ///
    /// # Errors
    /// [`CatalogError::UnknownConcert`].
    pub async fn bookable_dates(
        &self,
        concert: ConcertId,
    ) -> Result<Vec<ScheduleSummary>, CatalogError> {
        let now = self.now();
        let summaries = self.date_summaries(concert, now).await?;
        if summaries.is_empty() && self.store.concert(concert).await?.is_none() {
            return Err(CatalogError::UnknownConcert);
        }
        Ok(summaries
            .into_iter()
            .filter(|s| s.schedule.is_open_at(now) && s.n_free > 0)
            .collect())
    }

    /// The summaries of every date of `concert`, from this instance's cache while it
    /// is younger than [`super::Config::seat_map_cache`] (one caller reads them
    /// again while the others are answered from the old list). The counts may be
    /// that old; whether a date is open is decided by the caller at `now`.
    async fn date_summaries(
        &self,
        concert: ConcertId,
        now: Timestamp,
    ) -> Result<Vec<ScheduleSummary>, StoreError> {
        let max_age = self.config.seat_map_cache;
        if max_age.is_zero() {
            return self.store.schedule_summaries(concert, now).await;
        }
        let hit = Cached::serve(
            super::lock(&self.date_lists).get_mut(&concert),
            now,
            max_age,
        );
        if let Some(list) = hit {
            return Ok(list);
        }
        let read = self.store.schedule_summaries(concert, now).await;
        let mut lists = super::lock(&self.date_lists);
        match &read {
            Ok(list) => {
                if lists.len() >= DATE_LIST_CACHE && !lists.contains_key(&concert) {
                    lists.clear();
                }
                lists.insert(concert, Cached::fresh(now, list.clone()));
            }
            Err(_) => {
                if let Some(old) = lists.get_mut(&concert) {
                    old.refreshing = false;
                }
            }
        }
        read
    }

    /// The schedule of `concert` on `date`.
    ///
    /// # Errors
    /// [`CatalogError::UnknownConcert`], [`CatalogError::UnknownDate`].
    pub async fn schedule_on(
        &self,
        concert: ConcertId,
        date: NaiveDate,
    ) -> Result<Schedule, CatalogError> {
        if date > Timestamp::LATEST.date() {
            // No schedule can be that late (NewSchedule refuses it).
            return match self.store.concert(concert).await? {
                Some(_) => Err(CatalogError::UnknownDate(date)),
                None => Err(CatalogError::UnknownConcert),
            };
        }
        if let Some(s) = self.cached_schedule(concert, date) {
            return Ok(s);
        }
        match self.store.schedule_on(concert, date).await? {
            Some(s) => {
                self.remember_schedule(s);
                Ok(s)
            }
            None if self.store.concert(concert).await?.is_none() => {
                Err(CatalogError::UnknownConcert)
            }
            None => Err(CatalogError::UnknownDate(date)),
        }
    }

    /// Every seat (1..=count) of `concert` on `date`, with its price and its state
    /// now: free, held (until when) or sold. Seats whose hold expired are free.
    ///
    /// With [`super::Config::seat_map_cache`] set, a map read from storage less than
    /// that long ago is served again, each seat's state recomputed for now.
    ///
    /// While the whole sale is sold out ([`Booking::sold_out`]) it answers
    /// [`CatalogError::SoldOut`] from this instance's mark, reading no seats.
    ///
    /// # Errors
    /// [`CatalogError::UnknownConcert`], [`CatalogError::UnknownDate`],
    /// [`CatalogError::SoldOut`].
    pub async fn seats(
        &self,
        concert: ConcertId,
        date: NaiveDate,
    ) -> Result<(Schedule, Vec<Seat>), CatalogError> {
        let schedule = self.schedule_on(concert, date).await?;
        if self.sold_out().await? {
            return Err(CatalogError::SoldOut);
        }
        let now = self.now();
        let cache = !self.config.seat_map_cache.is_zero();
        let generation = if cache {
            match self.cached_seats(schedule.id, now) {
                Ok(seats) => return Ok((schedule, seats)),
                Err(generation) => Some(generation),
            }
        } else {
            None
        };
        let seats = self.store.seats(schedule.id, now).await?;
        if let Some(generation) = generation {
            let mut maps = super::lock(&self.seat_maps);
            // Only a map no write through this instance can have overtaken.
            if maps.generation == generation {
                if maps.by_schedule.len() >= super::SCHEDULE_CACHE {
                    maps.by_schedule.clear();
                }
                maps.by_schedule.insert(schedule.id, (now, seats.clone()));
            }
        }
        Ok((schedule, seats))
    }

    /// The seats of `schedule` from the cache, each in its state at `now`; or the
    /// cache's generation when it has no fresh map.
    fn cached_seats(&self, schedule: ScheduleId, now: Timestamp) -> Result<Vec<Seat>, u64> {
        let maps = super::lock(&self.seat_maps);
        match maps.by_schedule.get(&schedule) {
            Some((at, seats)) if now >= *at && now.since(*at) < self.config.seat_map_cache => {
                Ok(seats.iter().map(|s| s.as_of(now)).collect())
            }
            _ => Err(maps.generation),
        }
    }

    /// Drops the cached seat map of `schedule` after a write through this instance.
    pub(crate) fn forget_seat_map(&self, schedule: ScheduleId) {
        if self.config.seat_map_cache.is_zero() {
            return;
        }
        let mut maps = super::lock(&self.seat_maps);
        maps.generation = maps.generation.wrapping_add(1);
        maps.by_schedule.remove(&schedule);
    }

    fn cached_schedule(&self, concert: ConcertId, date: NaiveDate) -> Option<Schedule> {
        let cache = super::lock(&self.schedules);
        let id = cache.by_date.get(&(concert, date))?;
        cache.by_id.get(id).copied()
    }

    fn remember_schedule(&self, s: Schedule) {
        let mut cache = super::lock(&self.schedules);
        if cache.by_id.len() >= super::SCHEDULE_CACHE {
            cache.by_id.clear();
            cache.by_date.clear();
        }
        cache.by_id.insert(s.id, s);
        cache.by_date.insert((s.concert, s.date()), s.id);
    }

    /// The schedule of `id`, from this instance's cache when it has seen it.
    pub(crate) async fn schedule_by_id(
        &self,
        id: ScheduleId,
    ) -> Result<Option<Schedule>, StoreError> {
        let cached = {
            let cache = super::lock(&self.schedules);
            cache.by_id.get(&id).copied()
        };
        if let Some(s) = cached {
            return Ok(Some(s));
        }
        let found = self.store.schedule(id).await?;
        if let Some(s) = found {
            self.remember_schedule(s);
        }
        Ok(found)
    }
}
