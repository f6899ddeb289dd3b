//! The event feed on the wire (decision record 0013): [`event_json`], the one JSON
//! shape of an event, used by `GET /v1/admin/events` and by webhook deliveries.
//!
//! Not to be confused with [`crate::events`], which pushes queue positions to
//! waiting users (server-sent events).

use booking_core::domain::{Event, EventData, PaidSeat};
use serde_json::{Value, json};

fn seat_json(s: &PaidSeat) -> Value {
    json!({
        "reservation_id": s.reservation.to_string(),
        "schedule_id": s.schedule.get(),
        "seat": s.seat.get(),
        "price": s.price.minor_units(),
    })
}

/// The event as JSON: `{"id": 7, "type": "payment.completed", "at": "<RFC 3339>",
/// "data": {...}}`, where `data` depends on the type (each is a schema of the
/// OpenAPI document; ids are strings, sums are integers in minor units, times RFC
/// 3339):
///
/// - `token.issued`: `user_id`, `seq`
/// - `session.admitted`: `first_seq`, `last_seq`
/// - `hold.created`: `reservation_id`, `user_id`, `schedule_id`, `seat`, `price`,
///   `until`
/// - `hold.cancelled`: `reservation_id`, `user_id`, `schedule_id`, `seat`
/// - `hold.expired`: `reservation_id`, `user_id`, `schedule_id`, `seat`, `until`
/// - `wallet.charged`: `user_id`, `amount`, `balance_after`
/// - `payment.completed`: `payment_id`, `user_id`, `seats` (each `reservation_id`,
///   `schedule_id`, `seat`, `price`, in the order paid), `amount`, `balance_after`
/// - `session.ended`: `user_id`, `seq`, `reason` (`paid` or `lapsed`)
pub fn event_json(e: &Event) -> Value {
    let data = match &e.data {
        EventData::TokenIssued { user, seq } => json!({
            "user_id": user.to_string(),
            "seq": seq.get(),
        }),
        EventData::SessionAdmitted { first, last } => json!({
            "first_seq": first.get(),
            "last_seq": last.get(),
        }),
        EventData::HoldCreated {
            reservation,
            user,
            schedule,
            seat,
            price,
            until,
        } => json!({
            "reservation_id": reservation.to_string(),
            "user_id": user.to_string(),
            "schedule_id": schedule.get(),
            "seat": seat.get(),
            "price": price.minor_units(),
            "until": until.to_string(),
        }),
        EventData::HoldCancelled {
            reservation,
            user,
            schedule,
            seat,
        } => json!({
            "reservation_id": reservation.to_string(),
            "user_id": user.to_string(),
            "schedule_id": schedule.get(),
            "seat": seat.get(),
        }),
        EventData::HoldExpired {
            reservation,
            user,
            schedule,
            seat,
            until,
        } => json!({
            "reservation_id": reservation.to_string(),
            "user_id": user.to_string(),
            "schedule_id": schedule.get(),
            "seat": seat.get(),
            "until": until.to_string(),
        }),
        EventData::WalletCharged {
            user,
            amount,
            balance_after,
        } => json!({
            "user_id": user.to_string(),
            "amount": amount.minor_units(),
            "balance_after": balance_after.minor_units(),
        }),
        EventData::PaymentCompleted {
            payment,
            user,
            seats,
            amount,
            balance_after,
        } => json!({
            "payment_id": payment.to_string(),
            "user_id": user.to_string(),
            "seats": seats.iter().map(seat_json).collect::<Vec<_>>(),
            "amount": amount.minor_units(),
            "balance_after": balance_after.minor_units(),
        }),
        EventData::SessionEnded { user, seq, reason } => json!({
            "user_id": user.to_string(),
            "seq": seq.get(),
            "reason": reason.as_str(),
        }),
    };
    json!({
        "id": e.id.0,
        "type": e.event_type().as_str(),
        "at": e.at.to_string(),
        "data": data,
    })
}

#[cfg(test)]
mod tests {
    use booking_core::domain::{
        Amount, EventId, Money, PaymentId, ReservationId, ScheduleId, SeatNo, Timestamp, UserId,
    };

    use super::*;

    #[test]
    fn a_payment_has_its_seats_and_sums() {
        let user = UserId::random();
        let payment = PaymentId::random();
        let reservation = ReservationId::random();
        let e = Event {
            id: EventId(7),
            at: Timestamp::from_millis(1_767_225_600_000),
            data: EventData::PaymentCompleted {
                payment,
                user,
                seats: vec![PaidSeat {
                    reservation,
                    schedule: ScheduleId::new(3).unwrap(),
                    seat: SeatNo::new(12).unwrap(),
                    price: Amount::new(700).unwrap(),
                }],
                amount: Amount::new(700).unwrap(),
                balance_after: Money::new(300).unwrap(),
            },
        };
        let j = event_json(&e);
        assert_eq!(j["id"], 7);
        assert_eq!(j["type"], "payment.completed");
        assert_eq!(j["at"], "2026-01-01T00:00:00.000Z");
        assert_eq!(j["data"]["payment_id"], payment.to_string());
        assert_eq!(
            j["data"]["seats"][0]["reservation_id"],
            reservation.to_string()
        );
        assert_eq!(j["data"]["seats"][0]["seat"], 12);
        assert_eq!(j["data"]["amount"], 700);
        assert_eq!(j["data"]["balance_after"], 300);
    }
}
