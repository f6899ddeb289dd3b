//! Seat holds (R3): one conditional write claims a seat for a few minutes.

use super::{Admitted, Booking};
use crate::clock::Clock;
use crate::domain::{Hold, HoldState, ReservationId, ScheduleId, SeatNo};
use crate::error::{CancelError, HoldError};
use crate::ports::{CancelRepoError, HoldRepoError, NewHold, Store, StoreError};

impl<S: Store, C: Clock> Booking<S, C> {
    /// Holds one seat for the admitted user, for the configured hold TTL.
    ///
    /// While the hold is live nobody else can hold or buy the seat; when it lapses
    /// unpaid the seat is free again at once (lazy expiry), sweeper or not. A hold
    /// lapses after the hold TTL, when the show starts, or when the user's session
    /// ends, whichever comes first: no seat is ever paid for after the start, and a
    /// user whose session ended (lapsed, or paid, which releases the other holds)
    /// blocks no seat.
    ///
    /// # Errors
    /// [`HoldError::UnknownSchedule`], [`HoldError::Closed`] once the show started,
    /// [`HoldError::NoSuchSeat`] beyond the schedule's seats, [`HoldError::SeatTaken`],
    /// [`HoldError::SoldOut`] with no write while the sale is sold out (and instead of
    /// `SeatTaken` when the refused hold finds it sold out),
    /// [`HoldError::HoldLimit`] at the per-user cap, [`HoldError::SessionEnded`];
    /// [`HoldError::Gate`] when `who` was remembered by this instance
    /// ([`Booking::gate_for_write`]) and the session turned out to have ended.
    pub async fn hold(
        &self,
        who: &Admitted,
        schedule: ScheduleId,
        seat: SeatNo,
    ) -> Result<Hold, HoldError> {
        let now = self.now();
        let sched = self
            .schedule_by_id(schedule)
            .await?
            .ok_or(HoldError::UnknownSchedule)?;
        if !sched.is_open_at(now) {
            return Err(HoldError::Closed);
        }
        if !sched.seat_count.contains(seat) {
            return Err(HoldError::NoSuchSeat {
                seat,
                count: sched.seat_count,
            });
        }
        if self.sold_out().await? {
            return Err(HoldError::SoldOut);
        }
        let req = NewHold {
            id: ReservationId::random(),
            user: who.user(),
            session: who.seq(),
            schedule,
            seat,
            now,
            // A hold ends with its session too: when the session lapses, the seat
            // is free at that instant, lazily, as after any expiry.
            expires_at: now
                .plus(self.config.hold_ttl)
                .min(sched.starts_at)
                .min(who.until()),
            max_live_per_user: self.config.max_live_holds,
        };
        let refused = match self.store.hold(req).await {
            Ok(hold) => {
                self.forget_seat_map(schedule);
                self.sale_seat_taken();
                return Ok(hold);
            }
            Err(e) => e,
        };
        if refused == HoldRepoError::SessionEnded
            && who.remembered()
            && let Some(why) = self.why_ended(who).await
        {
            return Err(HoldError::Gate(why));
        }
        if refused == HoldRepoError::SeatTaken && self.sold_out().await? {
            return Err(HoldError::SoldOut);
        }
        Err(match refused {
            HoldRepoError::SeatTaken => HoldError::SeatTaken(seat),
            HoldRepoError::HoldLimit => HoldError::HoldLimit {
                max: self.config.max_live_holds,
            },
            // The schedule was checked above; a seat can only vanish with it.
            HoldRepoError::NoSuchSeat => HoldError::UnknownSchedule,
            HoldRepoError::SessionEnded => HoldError::SessionEnded,
            HoldRepoError::Store(s) => HoldError::Store(s),
        })
    }

    /// Cancels one of the user's live holds; the seat is free at once.
    ///
    /// # Errors
    /// [`CancelError::NotFound`], [`CancelError::NotYours`], [`CancelError::NotHeld`]
    /// when it is already paid, cancelled or expired.
    pub async fn cancel_hold(
        &self,
        who: &Admitted,
        id: ReservationId,
    ) -> Result<Hold, CancelError> {
        self.store
            .cancel(id, who.user(), self.now())
            .await
            .inspect(|hold| {
                self.forget_seat_map(hold.schedule);
                self.sale_changed();
            })
            .map_err(|e| match e {
                CancelRepoError::NotFound => CancelError::NotFound,
                CancelRepoError::NotYours => CancelError::NotYours,
                CancelRepoError::NotHeld(s) => CancelError::NotHeld(s),
                CancelRepoError::Store(s) => CancelError::Store(s),
            })
    }

    /// The user's reservations, newest first, each with its state at this instant
    /// (a lapsed hold shows as expired). Not behind the gate: a user whose session
    /// ended (paid) can still read what they bought.
    ///
    /// # Errors
    /// Only storage failures.
    pub async fn reservations(&self, user: crate::domain::UserId) -> Result<Vec<Hold>, StoreError> {
        let now = self.now();
        let mut holds = self
            .store
            .reservations_of(user, self.config.list_limit)
            .await?;
        for h in &mut holds {
            if h.state == HoldState::Held {
                h.state = h.state_at(now);
            }
        }
        Ok(holds)
    }
}
