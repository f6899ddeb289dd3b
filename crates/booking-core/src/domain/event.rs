//! Events: what happened, told to other systems.
//!
//! Every state change worth telling writes its events in the same atomic step as the
//! change itself (the outbox); a relay then gives them their feed ids, one relay at a
//! time, so that ids strictly increase in the order readers can see them (see the
//! decision record 0013). An event is never invented (a refused or rolled-back write
//! emits nothing) and never lost (a committed change has its events).

use std::fmt;
use std::str::FromStr;

use super::{
    Amount, Money, PaidSeat, PaymentId, QueueSeq, ReservationId, ScheduleId, SeatNo, Timestamp,
    UserId,
};

/// An event's position in the feed: global, strictly increasing, never reused.
/// `EventId(0)` is "before the first event".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct EventId(pub u64);

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The kind of an event; its wire name is [`EventType::as_str`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EventType {
    /// A user got a new place in the waiting room.
    TokenIssued,
    /// A tick admitted a range of places.
    SessionAdmitted,
    /// A hold was taken on a seat.
    HoldCreated,
    /// Its holder cancelled a hold.
    HoldCancelled,
    /// A lapsed hold was recorded as expired (by the sweeper, or when another hold
    /// took its seat).
    HoldExpired,
    /// A wallet was charged (topped up).
    WalletCharged,
    /// A payment sold one or several seats.
    PaymentCompleted,
    /// A place's session ended: paid, or lapsed.
    SessionEnded,
}

impl EventType {
    /// Every type, in the order of the documentation.
    pub const ALL: [EventType; 8] = [
        EventType::TokenIssued,
        EventType::SessionAdmitted,
        EventType::HoldCreated,
        EventType::HoldCancelled,
        EventType::HoldExpired,
        EventType::WalletCharged,
        EventType::PaymentCompleted,
        EventType::SessionEnded,
    ];

    /// The wire name: `token.issued`, `session.admitted`, `hold.created`,
    /// `hold.cancelled`, `hold.expired`, `wallet.charged`, `payment.completed`,
    /// `session.ended`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::TokenIssued => "token.issued",
            EventType::SessionAdmitted => "session.admitted",
            EventType::HoldCreated => "hold.created",
            EventType::HoldCancelled => "hold.cancelled",
            EventType::HoldExpired => "hold.expired",
            EventType::WalletCharged => "wallet.charged",
            EventType::PaymentCompleted => "payment.completed",
            EventType::SessionEnded => "session.ended",
        }
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not an event type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown event type {0:?}; the types are token.issued, session.admitted, hold.created, \
     hold.cancelled, hold.expired, wallet.charged, payment.completed, session.ended"
)]
pub struct UnknownEventType(pub String);

impl FromStr for EventType {
    type Err = UnknownEventType;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EventType::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| UnknownEventType(s.to_owned()))
    }
}

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SessionEndReason {
    /// Its payment ended it.
    Paid,
    /// It lapsed (never shown up, or past its end) and was recorded as expired.
    Lapsed,
}

impl SessionEndReason {
    /// `paid` or `lapsed`.
    pub fn as_str(self) -> &'static str {
        match self {
            SessionEndReason::Paid => "paid",
            SessionEndReason::Lapsed => "lapsed",
        }
    }

    /// The reason named by [`as_str`](Self::as_str), or `None`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "paid" => Some(SessionEndReason::Paid),
            "lapsed" => Some(SessionEndReason::Lapsed),
            _ => None,
        }
    }
}

/// What an event says, one variant per [`EventType`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventData {
    /// `token.issued`: `user` got the new place `seq`.
    TokenIssued {
        /// Who.
        user: UserId,
        /// The new place.
        seq: QueueSeq,
    },
    /// `session.admitted`: one tick admitted every place from `first` to `last`.
    SessionAdmitted {
        /// The first place admitted.
        first: QueueSeq,
        /// The last place admitted (the new serving counter).
        last: QueueSeq,
    },
    /// `hold.created`: a hold on a seat, until `until`.
    HoldCreated {
        /// The new reservation.
        reservation: ReservationId,
        /// Its holder.
        user: UserId,
        /// The date.
        schedule: ScheduleId,
        /// The seat.
        seat: SeatNo,
        /// The seat's price.
        price: Amount,
        /// When the hold lapses unless paid.
        until: Timestamp,
    },
    /// `hold.cancelled`: the holder cancelled a live hold; the seat is free.
    HoldCancelled {
        /// The reservation.
        reservation: ReservationId,
        /// Its holder.
        user: UserId,
        /// The date.
        schedule: ScheduleId,
        /// The seat.
        seat: SeatNo,
    },
    /// `hold.expired`: a hold lapsed at `until` (its end, or its session's end: a
    /// payment releases the payer's other holds at the payment's time) and was
    /// recorded. The event's time is `until`.
    HoldExpired {
        /// The reservation.
        reservation: ReservationId,
        /// Its holder.
        user: UserId,
        /// The date.
        schedule: ScheduleId,
        /// The seat.
        seat: SeatNo,
        /// When it lapsed.
        until: Timestamp,
    },
    /// `wallet.charged`: a top-up (a replayed key emits nothing).
    WalletCharged {
        /// Whose wallet.
        user: UserId,
        /// How much was added.
        amount: Amount,
        /// The balance right after.
        balance_after: Money,
    },
    /// `payment.completed`: seats sold, the balance debited.
    PaymentCompleted {
        /// The payment.
        payment: PaymentId,
        /// The payer.
        user: UserId,
        /// Every seat sold, in the order asked.
        seats: Vec<PaidSeat>,
        /// The total debited.
        amount: Amount,
        /// The balance right after.
        balance_after: Money,
    },
    /// `session.ended`: the place `seq` of `user` ended. A lapsed session's time is
    /// when it lapsed; a paid one's is the payment's.
    SessionEnded {
        /// Whose.
        user: UserId,
        /// The place.
        seq: QueueSeq,
        /// Paid or lapsed.
        reason: SessionEndReason,
    },
}

impl EventData {
    /// The type of this payload.
    pub fn event_type(&self) -> EventType {
        match self {
            EventData::TokenIssued { .. } => EventType::TokenIssued,
            EventData::SessionAdmitted { .. } => EventType::SessionAdmitted,
            EventData::HoldCreated { .. } => EventType::HoldCreated,
            EventData::HoldCancelled { .. } => EventType::HoldCancelled,
            EventData::HoldExpired { .. } => EventType::HoldExpired,
            EventData::WalletCharged { .. } => EventType::WalletCharged,
            EventData::PaymentCompleted { .. } => EventType::PaymentCompleted,
            EventData::SessionEnded { .. } => EventType::SessionEnded,
        }
    }
}

/// One event of the feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Its feed id.
    pub id: EventId,
    /// When the change happened (the `now` of the write).
    pub at: Timestamp,
    /// What happened.
    pub data: EventData,
}

impl Event {
    /// The event's type.
    pub fn event_type(&self) -> EventType {
        self.data.event_type()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_parses_back_from_its_name() {
        for t in EventType::ALL {
            assert_eq!(t.as_str().parse::<EventType>(), Ok(t));
        }
        let e = "hold.made".parse::<EventType>().unwrap_err();
        assert!(e.to_string().contains("payment.completed"), "{e}");
    }
}
