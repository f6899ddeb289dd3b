//! Reservations: a hold on one seat that ends paid, cancelled or expired.

use super::{Amount, ReservationId, ScheduleId, SeatNo, Timestamp, UserId};

/// The stored state of a reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HoldState {
    /// Holding the seat until `expires_at` (lazily expired after that).
    Held,
    /// Paid: the seat is sold to the holder.
    Paid,
    /// Cancelled by the holder; the seat was freed.
    Cancelled,
    /// Expired unpaid; the seat was freed.
    Expired,
}

/// A reservation of one seat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hold {
    /// Its id.
    pub id: ReservationId,
    /// The holder.
    pub user: UserId,
    /// The schedule (date).
    pub schedule: ScheduleId,
    /// The seat.
    pub seat: SeatNo,
    /// The price, fixed when the hold was taken.
    pub price: Amount,
    /// When it was taken.
    pub created_at: Timestamp,
    /// When an unpaid hold lapses.
    pub expires_at: Timestamp,
    /// The stored state; see [`Hold::state_at`] for the effective one.
    pub state: HoldState,
}

impl Hold {
    /// The effective state at `now`: a `Held` reservation past its expiry is
    /// `Expired` at once, whether or not the sweeper has recorded it yet.
    pub fn state_at(&self, now: Timestamp) -> HoldState {
        match self.state {
            HoldState::Held if now >= self.expires_at => HoldState::Expired,
            s => s,
        }
    }

    /// Whether the hold still claims its seat at `now`.
    pub fn is_live_at(&self, now: Timestamp) -> bool {
        self.state_at(now) == HoldState::Held
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hold_expires_lazily_at_its_deadline() {
        let h = Hold {
            id: ReservationId::random(),
            user: UserId::random(),
            schedule: ScheduleId::new(1).unwrap(),
            seat: SeatNo::new(1).unwrap(),
            price: Amount::new(100).unwrap(),
            created_at: Timestamp::from_millis(0),
            expires_at: Timestamp::from_millis(300_000),
            state: HoldState::Held,
        };
        assert!(h.is_live_at(Timestamp::from_millis(299_999)));
        assert_eq!(
            h.state_at(Timestamp::from_millis(300_000)),
            HoldState::Expired
        );
        let paid = Hold {
            state: HoldState::Paid,
            ..h
        };
        assert_eq!(
            paid.state_at(Timestamp::from_millis(999_999)),
            HoldState::Paid
        );
    }
}
