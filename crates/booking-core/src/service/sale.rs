//! Sold out is an answer: the per-instance sold-out mark.
//!
//! The waiting room is global (a token names no concert), so "the sale" is every
//! bookable date (show not started) of every concert. It is sold out when there is
//! at least one bookable date and none of them has a free seat (every seat sold, or
//! under a live hold). An empty catalog, or one whose shows have all started, is not
//! sold out: nothing is on sale, and admission goes on as before.
//!
//! Each [`Booking`] keeps one mark: the outcome of its last check of storage (the
//! free seats of the bookable dates and, when there are none, the soonest lapse of a
//! live hold), re-checked when older than [`super::Config::sold_out_recheck`]. So:
//! - a sold-out mark clears by itself at the instant the soonest hold lapses (lazy
//!   expiry: that seat is free at once), on every instance, with no read;
//! - a cancel or a new date through this instance clears it at once; through another
//!   instance, within the re-check time;
//! - a sale that sells out through another instance is seen within the re-check
//!   time; through this one, as soon as its holds used up the free seats it counted.
//!
//! Only one caller at a time re-checks; the others use the mark they have. A status
//! poll therefore costs no read of its own for the mark, however many arrive.
//!
//! The mark answers reads (status, gate, seat map) and refuses holds without a
//! write. It never makes a write wrong: a hold that passes it still claims its seat
//! in one conditional statement; a refusal it gives is at most as stale as a read.

use super::Booking;
use crate::clock::Clock;
use crate::domain::Timestamp;
use crate::ports::{Store, StoreError};

/// The last check of the sale, and who is re-checking it.
#[derive(Default)]
pub(super) struct SaleMark {
    checked: Option<SaleCheck>,
    /// Moves with every change through this instance that can free a seat or add
    /// one, so a check that began before it does not put back an old answer.
    generation: u64,
    refreshing: bool,
}

/// What one check of storage found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SaleCheck {
    /// When it was made.
    at: Timestamp,
    /// Whether any date was bookable.
    open: bool,
    /// Free seats of the bookable dates then, less the holds taken through this
    /// instance since.
    n_free: u64,
    /// With no free seat: when the soonest live hold lapses (its seat is free then).
    next_lapse: Option<Timestamp>,
}

impl SaleCheck {
    /// Sold out at `now`, as far as this check knows.
    fn sold_out_at(&self, now: Timestamp) -> bool {
        self.open && self.n_free == 0 && self.next_lapse.is_none_or(|t| now < t)
    }

    /// Still good at `now`: young enough, and no hold it counted on has lapsed.
    fn fresh_at(&self, now: Timestamp, recheck: std::time::Duration) -> bool {
        now >= self.at && now.since(self.at) < recheck && self.next_lapse.is_none_or(|t| now < t)
    }
}

/// Resets `refreshing` when a re-check ends, even if its future is dropped.
struct Refreshing<'a>(&'a std::sync::Mutex<SaleMark>);

impl Drop for Refreshing<'_> {
    fn drop(&mut self) {
        super::lock(self.0).refreshing = false;
    }
}

impl<S: Store, C: Clock> Booking<S, C> {
    /// Whether the sale is sold out now: no bookable date has a free seat (see the
    /// module documentation of how fresh this is). Reads storage at most once per
    /// [`super::Config::sold_out_recheck`] per instance, and only one caller at a
    /// time; the others get the mark as it is.
    ///
    /// # Errors
    /// Only storage failures.
    pub async fn sold_out(&self) -> Result<bool, StoreError> {
        let now = self.now();
        let recheck = self.config.sold_out_recheck;
        let generation = {
            let mut mark = super::lock(&self.sale);
            match mark.checked {
                Some(c) if c.fresh_at(now, recheck) => return Ok(c.sold_out_at(now)),
                Some(c) if mark.refreshing => return Ok(c.sold_out_at(now)),
                _ => {}
            }
            mark.refreshing = true;
            mark.generation
        };
        let _guard = Refreshing(&self.sale);
        let check = self.check_sale(now).await?;
        let mut mark = super::lock(&self.sale);
        if mark.generation == generation {
            mark.checked = Some(check);
        }
        Ok(check.sold_out_at(now))
    }

    /// Reads the sale from storage: the concerts, their dates' seat counts, and the
    /// soonest-lapsing live hold when no seat is free.
    async fn check_sale(&self, now: Timestamp) -> Result<SaleCheck, StoreError> {
        let mut open = false;
        let mut n_free = 0u64;
        for concert in self.store.concerts().await? {
            for s in self.store.schedule_summaries(concert.id, now).await? {
                if s.schedule.is_open_at(now) {
                    open = true;
                    n_free += u64::from(s.n_free);
                }
            }
        }
        let next_lapse = if open && n_free == 0 {
            // Any live hold is on a bookable date: a hold lapses at the show's start.
            let soonest = self.store.live_holds(now, 1).await?;
            soonest.first().map(|h| h.expires_at)
        } else {
            None
        };
        Ok(SaleCheck {
            at: now,
            open,
            n_free,
            next_lapse,
        })
    }

    /// A hold through this instance took a free seat: one fewer to count on. When
    /// the count runs out the mark is re-checked at its next use.
    pub(crate) fn sale_seat_taken(&self) {
        let mut mark = super::lock(&self.sale);
        if let Some(c) = &mut mark.checked {
            c.n_free = c.n_free.saturating_sub(1);
            if c.n_free == 0 {
                mark.checked = None;
            }
        }
    }

    /// A seat may have come back, or a date been added, through this instance: the
    /// mark is re-checked at its next use.
    pub(crate) fn sale_changed(&self) {
        // The cached date lists too: a new date, or a seat back, shows at once.
        super::lock(&self.date_lists).clear();
        let mut mark = super::lock(&self.sale);
        mark.generation = mark.generation.wrapping_add(1);
        mark.checked = None;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const T: i64 = 1_000_000;

    fn check(n_free: u64, next_lapse: Option<i64>) -> SaleCheck {
        SaleCheck {
            at: Timestamp::from_millis(T),
            open: true,
            n_free,
            next_lapse: next_lapse.map(Timestamp::from_millis),
        }
    }

    #[test]
    fn sold_out_until_the_soonest_hold_lapses() {
        let at = |ms| Timestamp::from_millis(T + ms);
        let c = check(0, Some(T + 500));
        assert!(c.sold_out_at(at(0)));
        assert!(c.sold_out_at(at(499)));
        assert!(!c.sold_out_at(at(500)), "the seat is free at its lapse");
        let recheck = Duration::from_secs(1);
        assert!(c.fresh_at(at(499), recheck));
        assert!(!c.fresh_at(at(500), recheck), "re-checked after a lapse");
        // All sold: no lapse to wait for; fresh for the re-check time.
        let sold = check(0, None);
        assert!(sold.sold_out_at(at(10_000)));
        assert!(sold.fresh_at(at(999), recheck));
        assert!(!sold.fresh_at(at(1_000), recheck));
        // A free seat, or nothing on sale: not sold out.
        assert!(!check(1, None).sold_out_at(at(0)));
        let closed = SaleCheck {
            open: false,
            ..check(0, None)
        };
        assert!(!closed.sold_out_at(at(0)));
        // A clock that went back: not fresh.
        assert!(!sold.fresh_at(Timestamp::from_millis(T - 1), recheck));
    }
}
