//! The event feed's rows, once for both dialects (migrations sqlite 0007, postgres
//! 0008): an `events` row to a domain [`Event`].
//!
//! A row is typed columns; which ones an event uses depends on its type. A
//! `payment.completed` row names its payment, and its seats are read with the page
//! from `payments` (the first seat) and `payment_seats` (the others), which never
//! change.

use booking_core::StoreError;
use booking_core::domain::{Event, EventData, EventId, EventType, PaidSeat, SessionEndReason};

use crate::convert::{self as cv, OtherSeat};
use crate::rows::StoredRow;

/// The columns of a feed page (the event, and its payment's first seat) and the join
/// that gives them.
macro_rules! event_cols_from {
    () => {
        "e.id, e.type, e.at, e.user_id, e.seq, e.first_seq, e.reservation_id, \
         e.schedule_id, e.seat_no, e.amount, e.balance, e.payment_id, e.until_at, e.reason, \
         p.reservation_id AS p_reservation, p.schedule_id AS p_schedule, \
         p.seat_no AS p_seat FROM events e LEFT JOIN payments p ON p.id = e.payment_id"
    };
}
pub(crate) use event_cols_from;

/// The outbox columns the relay copies, in order.
macro_rules! moved_cols {
    () => {
        "type, at, user_id, seq, first_seq, reservation_id, schedule_id, seat_no, amount, \
         balance, payment_id, until_at, reason"
    };
}
pub(crate) use moved_cols;

/// Most outbox rows one relay moves.
pub(crate) const RELAY_BATCH: i64 = 10_000;

fn need<T>(v: Option<T>, what: &str, id: i64) -> Result<T, StoreError> {
    v.ok_or_else(|| StoreError::Failed(format!("stored event {id} has no {what}")))
}

/// One row of a feed page (read with [`EVENT_COLS`]) as an event; a payment has its
/// first seat only, [`with_other_seats`] adds the rest.
pub(crate) fn event_of(r: &impl StoredRow) -> Result<Event, StoreError> {
    let id = r.int("id")?;
    let ty: EventType = r
        .text("type")?
        .parse()
        .map_err(|e| cv::corrupt("event type", e))?;
    let user = || -> Result<_, StoreError> { cv::user(need(r.opt_uuid("user_id")?, "user", id)?) };
    let int = |col: &str| -> Result<i64, StoreError> { need(r.opt_int(col)?, col, id) };
    let reservation = || -> Result<_, StoreError> {
        cv::reservation_id(need(r.opt_uuid("reservation_id")?, "reservation", id)?)
    };
    let data = match ty {
        EventType::TokenIssued => EventData::TokenIssued {
            user: user()?,
            seq: cv::seq(int("seq")?)?,
        },
        EventType::SessionAdmitted => EventData::SessionAdmitted {
            first: cv::seq(int("first_seq")?)?,
            last: cv::seq(int("seq")?)?,
        },
        EventType::HoldCreated => EventData::HoldCreated {
            reservation: reservation()?,
            user: user()?,
            schedule: cv::schedule_id(int("schedule_id")?)?,
            seat: cv::seat_no(int("seat_no")?)?,
            price: cv::amount(int("amount")?)?,
            until: cv::ts(int("until_at")?),
        },
        EventType::HoldCancelled => EventData::HoldCancelled {
            reservation: reservation()?,
            user: user()?,
            schedule: cv::schedule_id(int("schedule_id")?)?,
            seat: cv::seat_no(int("seat_no")?)?,
        },
        EventType::HoldExpired => EventData::HoldExpired {
            reservation: reservation()?,
            user: user()?,
            schedule: cv::schedule_id(int("schedule_id")?)?,
            seat: cv::seat_no(int("seat_no")?)?,
            until: cv::ts(int("until_at")?),
        },
        EventType::WalletCharged => EventData::WalletCharged {
            user: user()?,
            amount: cv::amount(int("amount")?)?,
            balance_after: cv::money(int("balance")?)?,
        },
        EventType::PaymentCompleted => {
            let amount = cv::amount(int("amount")?)?;
            let first = PaidSeat {
                reservation: cv::reservation_id(need(
                    r.opt_uuid("p_reservation")?,
                    "payment",
                    id,
                )?)?,
                schedule: cv::schedule_id(int("p_schedule")?)?,
                seat: cv::seat_no(int("p_seat")?)?,
                price: amount,
            };
            EventData::PaymentCompleted {
                payment: cv::payment_id(need(r.opt_uuid("payment_id")?, "payment id", id)?)?,
                user: user()?,
                seats: vec![first],
                amount,
                balance_after: cv::money(int("balance")?)?,
            }
        }
        EventType::SessionEnded => EventData::SessionEnded {
            user: user()?,
            seq: cv::seq(int("seq")?)?,
            reason: r
                .opt_text("reason")?
                .as_deref()
                .and_then(SessionEndReason::parse)
                .ok_or_else(|| cv::corrupt("session end reason", id))?,
        },
    };
    Ok(Event {
        id: EventId(cv::u64_of(id, "event id")?),
        at: cv::ts(r.int("at")?),
        data,
    })
}

/// Gives each payment event its other seats (in position order), and its first
/// seat the price left of the total.
pub(crate) fn with_other_seats(
    events: &mut [Event],
    others: Vec<OtherSeat>,
) -> Result<(), StoreError> {
    for o in others {
        for e in events.iter_mut() {
            if let EventData::PaymentCompleted { payment, seats, .. } = &mut e.data
                && *payment == o.payment
            {
                seats.push(o.seat);
            }
        }
    }
    for e in events.iter_mut() {
        if let EventData::PaymentCompleted {
            payment,
            seats,
            amount,
            ..
        } = &mut e.data
            && seats.len() > 1
        {
            let rest = seats[1..]
                .iter()
                .try_fold(0_i64, |sum, s| sum.checked_add(s.price.minor_units()));
            let first = rest
                .and_then(|r| amount.minor_units().checked_sub(r))
                .ok_or_else(|| cv::corrupt("payment total", *payment))?;
            seats[0].price = cv::amount(first)?;
        }
    }
    Ok(())
}

/// A filter's type names, as `,a,b,` (SQLite matches `,type,` in it), or empty for
/// every type.
pub(crate) fn types_list(types: &[EventType]) -> String {
    if types.is_empty() {
        return String::new();
    }
    let mut s = String::from(",");
    for t in types {
        s.push_str(t.as_str());
        s.push(',');
    }
    s
}
