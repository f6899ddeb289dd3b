//! The wallet ledger and payments.

use super::{
    Amount, IdempotencyKey, LedgerEntryId, Money, PaymentId, ReservationId, ScheduleId, SeatNo,
    Timestamp, UserId,
};

/// What moved money in a ledger row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LedgerKind {
    /// A charge (top-up) added money.
    Charge,
    /// A payment took money.
    Payment(PaymentId),
}

/// One change of one user's balance. Every change has exactly one row, written in
/// the same transaction as the change (invariant I2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerEntry {
    /// Its id, increasing in write order.
    pub id: LedgerEntryId,
    /// Whose balance changed.
    pub user: UserId,
    /// Why.
    pub kind: LedgerKind,
    /// By how much (the sign comes from the kind).
    pub amount: Amount,
    /// The balance right after.
    pub balance_after: Money,
    /// When.
    pub at: Timestamp,
    /// The idempotency key of a charge, if the client gave one.
    pub key: Option<IdempotencyKey>,
}

impl LedgerEntry {
    /// The signed change in minor units: positive for a charge, negative for a payment.
    pub fn delta(&self) -> i64 {
        match self.kind {
            LedgerKind::Charge => self.amount.minor_units(),
            LedgerKind::Payment(_) => -self.amount.minor_units(),
        }
    }
}

/// One seat of a payment: the reservation paid, its seat, and its price.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PaidSeat {
    /// The reservation paid.
    pub reservation: ReservationId,
    /// The schedule of the seat.
    pub schedule: ScheduleId,
    /// The seat now sold to the payer.
    pub seat: SeatNo,
    /// Its price, fixed when it was held.
    pub price: Amount,
}

/// A payment of one or several of one user's reservations, with one ledger row for
/// its total.
///
/// `reservation`, `schedule` and `seat` name the first seat paid (the only one of a
/// single-hold payment); `seats` lists every seat, the first one included, in the
/// order they were asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payment {
    /// Its id.
    pub id: PaymentId,
    /// The first reservation paid.
    pub reservation: ReservationId,
    /// Who paid (the holder).
    pub user: UserId,
    /// The schedule of the first seat.
    pub schedule: ScheduleId,
    /// The first seat now sold to the user.
    pub seat: SeatNo,
    /// What was debited: the sum of the seats' prices.
    pub amount: Amount,
    /// When.
    pub paid_at: Timestamp,
    /// The idempotency key, if the client gave one.
    pub key: Option<IdempotencyKey>,
    /// Every seat paid, the first one included.
    pub seats: Vec<PaidSeat>,
}

impl Payment {
    /// Whether this payment paid exactly the reservations `ids`, in any order.
    pub fn pays_exactly(&self, ids: &[ReservationId]) -> bool {
        self.seats.len() == ids.len()
            && ids
                .iter()
                .all(|id| self.seats.iter().any(|s| s.reservation == *id))
    }
}
