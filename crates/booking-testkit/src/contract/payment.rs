//! R5 payment, I5 pay once, I6 the token ends at payment.

use std::sync::Arc;
use std::time::Duration;

use booking_core::domain::{HoldState, LedgerKind, Money, ReservationId, SeatState, UserId};
use booking_core::{ChargeError, Config, GateError, HoldError, PayError, QueueStatus, Store};

use crate::{Kit, amount, seat};

use super::key;

/// R5: payment debits, sells the seat, records payment and ledger, ends the token.
pub async fn r5_payment_sells_the_seat_and_ends_the_token<S: Store>(store: S) {
    let kit = Kit::new(store);
    let schedule = kit.concert_with_date(50).await;
    let (user, token, who) = kit.admitted_user().await;
    let hold = kit
        .booking
        .hold(&who, schedule.id, seat(5))
        .await
        .expect("hold");
    kit.booking
        .charge(user, amount(2_000), None)
        .await
        .expect("charge");
    let claims = token.clone();
    let receipt = kit.booking.pay(&claims, hold.id, None).await.expect("pay");
    assert!(!receipt.replayed);
    let p = &receipt.payment;
    assert_eq!(
        (p.reservation, p.user, p.seat, p.amount),
        (hold.id, user, seat(5), amount(500))
    );
    assert_eq!(
        kit.booking.balance(user).await.expect("balance"),
        Money::new(1_500).expect("m")
    );
    let ledger = kit.booking.ledger(user).await.expect("ledger");
    assert_eq!(ledger[0].kind, LedgerKind::Payment(p.id));
    assert_eq!(ledger[0].balance_after, Money::new(1_500).expect("m"));
    let (_, seats) = kit
        .booking
        .seats(schedule.concert, schedule.date())
        .await
        .expect("seats");
    assert_eq!(seats[4].state, SeatState::Sold);
    let stored = kit
        .booking
        .store()
        .reservation(hold.id)
        .await
        .expect("r")
        .expect("r");
    assert_eq!(stored.state, HoldState::Paid);
    assert_eq!(
        kit.booking.payments(user).await.expect("payments"),
        vec![p.clone()]
    );
    // I6: the token is ended.
    assert_eq!(
        kit.booking.gate(&token).await.unwrap_err(),
        GateError::Ended
    );
    assert_eq!(
        kit.booking
            .queue_status(&token)
            .await
            .expect("status")
            .status,
        QueueStatus::Done
    );
    assert_eq!(
        kit.booking
            .hold(&who, schedule.id, seat(6))
            .await
            .unwrap_err(),
        HoldError::SessionEnded,
        "the old proof of admission no longer holds"
    );
    // A sold seat stays sold after the hold's TTL.
    kit.advance(Duration::from_secs(86_400));
    let (_, seats) = kit
        .booking
        .seats(schedule.concert, schedule.date())
        .await
        .expect("seats");
    assert_eq!(seats[4].state, SeatState::Sold);
    // A new token queues at the back.
    let again = kit.booking.issue_token(user).await.expect("issue");
    assert_eq!(again.claims.seq.get(), 2);
}

/// R5: insufficient balance is its own error and changes nothing.
pub async fn r5_insufficient_balance_changes_nothing<S: Store>(store: S) {
    let kit = Kit::new(store);
    let schedule = kit.concert_with_date(50).await;
    let (user, token, who) = kit.admitted_user().await;
    let hold = kit
        .booking
        .hold(&who, schedule.id, seat(10))
        .await
        .expect("hold");
    kit.booking
        .charge(user, amount(999), None)
        .await
        .expect("charge");
    let claims = token.clone();
    assert_eq!(
        kit.booking.pay(&claims, hold.id, None).await.unwrap_err(),
        PayError::InsufficientBalance {
            balance: Money::new(999).expect("m"),
            price: amount(1_000)
        }
    );
    assert_eq!(
        kit.booking.balance(user).await.expect("balance"),
        Money::new(999).expect("m")
    );
    assert_eq!(kit.booking.ledger(user).await.expect("ledger").len(), 1);
    assert!(
        kit.booking.gate(&token).await.is_ok(),
        "the token still works"
    );
    let stored = kit
        .booking
        .store()
        .reservation(hold.id)
        .await
        .expect("r")
        .expect("r");
    assert_eq!(stored.state, HoldState::Held);
    kit.booking
        .charge(user, amount(1), None)
        .await
        .expect("charge");
    kit.booking
        .pay(&claims, hold.id, None)
        .await
        .expect("now it covers");
    assert_eq!(
        kit.booking.balance(user).await.expect("balance"),
        Money::ZERO
    );
}

/// I5: only the holder pays, only a live hold, and never twice.
pub async fn i5_payment_refusals<S: Store>(store: S) {
    let kit = Kit::new(store);
    let schedule = kit.concert_with_date(50).await;
    let (a, ta, wa) = kit.admitted_user().await;
    let (b, tb, _) = kit.admitted_user().await;
    kit.booking
        .charge(a, amount(100_000), None)
        .await
        .expect("charge");
    kit.booking
        .charge(b, amount(100_000), None)
        .await
        .expect("charge");
    let ca = ta.clone();
    let cb = tb.clone();
    let hold = kit
        .booking
        .hold(&wa, schedule.id, seat(1))
        .await
        .expect("hold");
    assert_eq!(
        kit.booking.pay(&cb, hold.id, None).await.unwrap_err(),
        PayError::NotYours
    );
    assert_eq!(
        kit.booking
            .pay(&ca, ReservationId::random(), None)
            .await
            .unwrap_err(),
        PayError::NotFound
    );
    let cancelled = kit
        .booking
        .hold(&wa, schedule.id, seat(2))
        .await
        .expect("hold");
    kit.booking
        .cancel_hold(&wa, cancelled.id)
        .await
        .expect("cancel");
    assert_eq!(
        kit.booking.pay(&ca, cancelled.id, None).await.unwrap_err(),
        PayError::Cancelled
    );
    kit.advance(kit.booking.config().hold_ttl);
    assert_eq!(
        kit.booking.pay(&ca, hold.id, None).await.unwrap_err(),
        PayError::HoldExpired
    );
    assert_eq!(
        kit.booking.balance(a).await.expect("b"),
        Money::new(100_000).expect("m")
    );
    assert_eq!(
        kit.booking.balance(b).await.expect("b"),
        Money::new(100_000).expect("m")
    );
    assert!(kit.booking.payments(a).await.expect("p").is_empty());
}

/// I5: a retried payment with the same key returns the first result and charges
/// nothing more, even though the first one ended the token.
pub async fn i5_retried_payment_returns_the_first_result<S: Store>(store: S) {
    let kit = Kit::new(store);
    let schedule = kit.concert_with_date(50).await;
    let (user, token, who) = kit.admitted_user().await;
    kit.booking
        .charge(user, amount(10_000), None)
        .await
        .expect("charge");
    let hold = kit
        .booking
        .hold(&who, schedule.id, seat(2))
        .await
        .expect("hold");
    let other = kit
        .booking
        .hold(&who, schedule.id, seat(3))
        .await
        .expect("hold");
    let claims = token.clone();
    let first = kit
        .booking
        .pay(&claims, hold.id, Some(key("pay-1")))
        .await
        .expect("pay");
    let retry = kit
        .booking
        .pay(&claims, hold.id, Some(key("pay-1")))
        .await
        .expect("retry");
    assert!(retry.replayed);
    assert_eq!(retry.payment, first.payment);
    assert_eq!(
        kit.booking.balance(user).await.expect("b"),
        Money::new(9_800).expect("m")
    );
    assert_eq!(
        kit.booking
            .pay(&claims, other.id, Some(key("pay-1")))
            .await
            .unwrap_err(),
        PayError::KeyReused
    );
    assert_eq!(
        kit.booking.pay(&claims, hold.id, None).await.unwrap_err(),
        PayError::Gate(GateError::Ended),
        "without the key, the ended token is refused"
    );
    assert_eq!(kit.booking.payments(user).await.expect("p").len(), 1);
    assert_eq!(kit.booking.ledger(user).await.expect("l").len(), 2);
}

/// I5, I6 under concurrency: many payments of one session's holds, one wins.
pub async fn i6_concurrent_payments_of_one_token_pay_once<S: Store>(store: S) {
    let config = Config {
        max_live_holds: 8,
        ..crate::config()
    };
    let kit = Arc::new(Kit::with_config(store, config));
    let schedule = kit.concert_with_date(50).await;
    let (user, token, who) = kit.admitted_user().await;
    kit.booking
        .charge(user, amount(1_000_000), None)
        .await
        .expect("charge");
    let mut holds = Vec::new();
    for n in 1..=8 {
        holds.push(
            kit.booking
                .hold(&who, schedule.id, seat(n))
                .await
                .expect("hold"),
        );
    }
    let claims = token.clone();
    let mut tasks = Vec::new();
    for h in holds.iter().chain(holds.iter()) {
        let kit = Arc::clone(&kit);
        let (id, token) = (h.id, claims.clone());
        tasks.push(tokio::spawn(async move {
            kit.booking.pay(&token, id, None).await
        }));
    }
    let mut paid = Vec::new();
    for t in tasks {
        match t.await.expect("task") {
            Ok(r) => paid.push(r.payment),
            Err(
                PayError::Gate(GateError::Ended) | PayError::SessionEnded | PayError::AlreadyPaid,
            ) => {}
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!(paid.len(), 1, "one payment ends the token");
    let spent = paid[0].amount.minor_units();
    assert_eq!(
        kit.booking.balance(user).await.expect("b").minor_units(),
        1_000_000 - spent
    );
    assert_eq!(kit.booking.payments(user).await.expect("p").len(), 1);
    assert_eq!(kit.booking.ledger(user).await.expect("l").len(), 2);
}

/// Pays `holds` with the kit's engine and the token; the refusal, if any.
async fn pay_all<S: Store>(
    kit: &Kit<S>,
    token: &str,
    holds: &[ReservationId],
    k: Option<&str>,
) -> Result<booking_core::PaymentReceipt, PayError> {
    kit.booking.pay_all(token, holds, k.map(key)).await
}

/// R5: several holds are paid in one payment: one record with its seats in the
/// order asked, one debit and one ledger row of the total, the token ended once; a
/// retry with the key replays it (in any order); what was bought stays readable.
pub async fn r5_several_holds_are_paid_in_one_payment<S: Store>(store: S) {
    let kit = Kit::new(store);
    let schedule = kit.concert_with_date(50).await;
    let (user, token, who) = kit.admitted_user().await;
    let mut holds = Vec::new();
    for n in [3, 1, 2] {
        holds.push(
            kit.booking
                .hold(&who, schedule.id, seat(n))
                .await
                .expect("hold"),
        );
    }
    kit.booking
        .charge(user, amount(1_000), None)
        .await
        .expect("charge");
    let ids: Vec<ReservationId> = holds.iter().map(|h| h.id).collect();
    let receipt = pay_all(&kit, &token, &ids, Some("family"))
        .await
        .expect("pay");
    assert!(!receipt.replayed);
    let p = &receipt.payment;
    assert_eq!(p.amount, amount(600), "300 + 100 + 200");
    assert_eq!((p.reservation, p.seat), (ids[0], seat(3)), "the first seat");
    let seats: Vec<_> = p
        .seats
        .iter()
        .map(|s| (s.reservation, s.seat, s.price))
        .collect();
    assert_eq!(
        seats,
        vec![
            (ids[0], seat(3), amount(300)),
            (ids[1], seat(1), amount(100)),
            (ids[2], seat(2), amount(200)),
        ]
    );
    assert_eq!(
        kit.booking.balance(user).await.expect("balance"),
        Money::new(400).expect("m")
    );
    let ledger = kit.booking.ledger(user).await.expect("ledger");
    assert_eq!(ledger.len(), 2, "the charge and one payment row");
    assert_eq!(ledger[0].kind, LedgerKind::Payment(p.id));
    assert_eq!(ledger[0].amount, amount(600));
    assert_eq!(ledger[0].balance_after, Money::new(400).expect("m"));
    let (_, map) = kit
        .booking
        .seats(schedule.concert, schedule.date())
        .await
        .expect("seats");
    for n in 1..=3 {
        assert_eq!(map[n - 1].state, SeatState::Sold, "seat {n}");
    }
    assert_eq!(map[3].state, SeatState::Free);
    for h in &holds {
        let r = kit
            .booking
            .store()
            .reservation(h.id)
            .await
            .expect("r")
            .expect("r");
        assert_eq!(r.state, HoldState::Paid);
    }
    assert_eq!(
        kit.booking.gate(&token).await.unwrap_err(),
        GateError::Ended,
        "I6: the token ended"
    );
    // A retry with the key, in another order, replays it and charges nothing.
    let retry = pay_all(&kit, &token, &[ids[2], ids[0], ids[1]], Some("family"))
        .await
        .expect("retry");
    assert!(retry.replayed);
    assert_eq!(&retry.payment, p);
    assert_eq!(
        pay_all(&kit, &token, &ids[..2], Some("family"))
            .await
            .unwrap_err(),
        PayError::KeyReused,
        "the key paid a different set"
    );
    assert_eq!(
        kit.booking.balance(user).await.expect("balance"),
        Money::new(400).expect("m")
    );
    // What was bought stays readable with the ended token's user.
    assert_eq!(
        kit.booking.payments(user).await.expect("payments"),
        vec![p.clone()]
    );
    let mine = kit.booking.reservations(user).await.expect("reservations");
    assert_eq!(mine.len(), 3);
    assert!(mine.iter().all(|h| h.state == HoldState::Paid));
}

/// Nothing was paid: the balance, the ledger and `live` are as before.
async fn assert_nothing_paid<S: Store>(
    kit: &Kit<S>,
    user: UserId,
    live: &[booking_core::domain::Hold],
) {
    let b = &kit.booking;
    assert_eq!(
        b.balance(user).await.expect("b"),
        Money::new(10_000).expect("m")
    );
    assert_eq!(b.ledger(user).await.expect("l").len(), 1);
    assert!(b.payments(user).await.expect("p").is_empty());
    for h in live {
        let r = b.store().reservation(h.id).await.expect("r").expect("r");
        assert!(r.is_live_at(kit.clock_now()), "still held");
    }
}

/// R5, I2, I5: a payment of several holds is all or nothing: one hold lapsed, not
/// the payer's, unknown, cancelled, or a total the balance does not cover, and
/// nothing is paid, charged or ended; the refusal names the reservation.
pub async fn r5_payment_of_several_holds_is_all_or_nothing<S: Store>(store: S) {
    let kit = Kit::new(store);
    let schedule = kit.concert_with_date(50).await;
    let (user, token, who) = kit.admitted_user().await;
    let (_, _, other) = kit.admitted_user().await;
    let early = kit
        .booking
        .hold(&who, schedule.id, seat(1))
        .await
        .expect("hold");
    kit.advance(Duration::from_secs(200));
    let a = kit
        .booking
        .hold(&who, schedule.id, seat(2))
        .await
        .expect("hold");
    let b = kit
        .booking
        .hold(&who, schedule.id, seat(3))
        .await
        .expect("hold");
    let theirs = kit
        .booking
        .hold(&other, schedule.id, seat(4))
        .await
        .expect("hold");
    kit.booking
        .charge(user, amount(10_000), None)
        .await
        .expect("charge");
    // The first hold lapses; the other two are live.
    kit.advance(kit.booking.config().hold_ttl - Duration::from_secs(100));
    assert_eq!(
        pay_all(&kit, &token, &[a.id, early.id, b.id], None)
            .await
            .unwrap_err(),
        PayError::Reservation {
            reservation: early.id,
            error: Box::new(PayError::HoldExpired)
        }
    );
    assert_nothing_paid(&kit, user, &[a, b]).await;
    assert_eq!(
        pay_all(&kit, &token, &[a.id, b.id, theirs.id], None)
            .await
            .unwrap_err(),
        PayError::Reservation {
            reservation: theirs.id,
            error: Box::new(PayError::NotYours)
        }
    );
    assert_nothing_paid(&kit, user, &[a, b]).await;
    let stray = ReservationId::random();
    assert_eq!(
        pay_all(&kit, &token, &[stray, a.id], None)
            .await
            .unwrap_err(),
        PayError::Reservation {
            reservation: stray,
            error: Box::new(PayError::NotFound)
        }
    );
    assert!(matches!(
        pay_all(&kit, &token, &[a.id, a.id], None)
            .await
            .unwrap_err(),
        PayError::BadList(_)
    ));
    assert!(matches!(
        pay_all(&kit, &token, &[], None).await.unwrap_err(),
        PayError::BadList(_)
    ));
    assert_nothing_paid(&kit, user, &[a, b]).await;
    // A total the balance does not cover: 500 + 600 against 1,099.
    let (poor, poor_token, poor_who) = kit.admitted_user().await;
    let c = kit
        .booking
        .hold(&poor_who, schedule.id, seat(5))
        .await
        .expect("hold");
    let d = kit
        .booking
        .hold(&poor_who, schedule.id, seat(6))
        .await
        .expect("hold");
    kit.booking
        .charge(poor, amount(1_099), None)
        .await
        .expect("charge");
    assert_eq!(
        pay_all(&kit, &poor_token, &[c.id, d.id], None)
            .await
            .unwrap_err(),
        PayError::InsufficientBalance {
            balance: Money::new(1_099).expect("m"),
            price: amount(1_100)
        }
    );
    assert_eq!(
        kit.booking.balance(poor).await.expect("b"),
        Money::new(1_099).expect("m")
    );
    assert!(kit.booking.gate(&poor_token).await.is_ok(), "not ended");
    // And the live pair pays, all at once.
    let paid = pay_all(&kit, &token, &[a.id, b.id], None)
        .await
        .expect("pay");
    assert_eq!(paid.payment.amount, amount(500));
    assert_eq!(
        kit.booking.balance(user).await.expect("b"),
        Money::new(9_500).expect("m")
    );
}

/// I1: a session's end releases its holds at that instant, lazily, as an expiry
/// does: a payment releases the payer's other holds (their seats are free to
/// everyone at once), and a session that lapses takes its holds with it; the
/// sweeper records both.
pub async fn i1_a_session_end_releases_its_holds<S: Store>(store: S) {
    let config = Config {
        session_ttl: Duration::from_secs(120),
        ..crate::config()
    };
    let kit = Kit::with_config(store, config);
    let schedule = kit.concert_with_date(50).await;
    let (payer, token, who) = kit.admitted_user().await;
    let (_, _, late) = kit.admitted_user().await;
    let (_, _, other) = kit.admitted_user().await;
    let paid = kit
        .booking
        .hold(&who, schedule.id, seat(1))
        .await
        .expect("hold");
    let kept = kit
        .booking
        .hold(&who, schedule.id, seat(2))
        .await
        .expect("hold");
    let third = kit
        .booking
        .hold(&who, schedule.id, seat(3))
        .await
        .expect("hold");
    assert_eq!(
        kit.booking
            .hold(&other, schedule.id, seat(2))
            .await
            .unwrap_err(),
        HoldError::SeatTaken(seat(2))
    );
    kit.booking
        .charge(payer, amount(1_000), None)
        .await
        .expect("charge");
    kit.booking.pay(&token, paid.id, None).await.expect("pay");
    // At the same instant, the payer's other seats are free to everyone.
    let (_, map) = kit
        .booking
        .seats(schedule.concert, schedule.date())
        .await
        .expect("seats");
    assert_eq!(
        (map[0].state, map[1].state, map[2].state),
        (SeatState::Sold, SeatState::Free, SeatState::Free)
    );
    let now = kit.clock_now();
    for h in [kept, third] {
        let r = kit
            .booking
            .store()
            .reservation(h.id)
            .await
            .expect("r")
            .expect("r");
        assert_eq!(
            r.state_at(now),
            HoldState::Expired,
            "released at the payment"
        );
        assert!(r.expires_at <= now);
    }
    let taken = kit
        .booking
        .hold(&other, schedule.id, seat(2))
        .await
        .expect("the released seat can be held at once");
    // A lapsing session takes its holds with it: a hold lapses with its session.
    let h = kit
        .booking
        .hold(&late, schedule.id, seat(10))
        .await
        .expect("hold");
    assert!(
        h.expires_at <= late.until(),
        "the hold ends with its session"
    );
    assert_eq!(
        kit.booking
            .hold(&other, schedule.id, seat(10))
            .await
            .unwrap_err(),
        HoldError::SeatTaken(seat(10))
    );
    kit.advance(Duration::from_secs(120));
    assert!(kit.clock_now() >= late.until(), "the session lapsed");
    assert!(kit.clock_now() < h.created_at.plus(kit.booking.config().hold_ttl));
    let (_, map) = kit
        .booking
        .seats(schedule.concert, schedule.date())
        .await
        .expect("seats");
    assert_eq!(map[9].state, SeatState::Free, "free as the session lapsed");
    // The sweeper records the released hold and the lapsed one (the replaced one
    // was recorded by the hold that replaced it); the holds of the other user's
    // session lapsed with it too.
    let swept = kit.booking.sweep().await.expect("sweep");
    assert_eq!(
        swept.n_holds_expired, 3,
        "seat 3, seat 10, and seat 2's new hold"
    );
    let r = kit
        .booking
        .store()
        .reservation(third.id)
        .await
        .expect("r")
        .expect("r");
    assert_eq!(r.state, HoldState::Expired);
    let r = kit
        .booking
        .store()
        .reservation(kept.id)
        .await
        .expect("r")
        .expect("r");
    assert_eq!(r.state, HoldState::Expired);
    let r = kit
        .booking
        .store()
        .reservation(taken.id)
        .await
        .expect("r")
        .expect("r");
    assert_eq!(r.state, HoldState::Expired);
    assert!(kit.booking.live_holds().await.expect("live").is_empty());
}

/// R5: a late payment of a hold that lapsed and whose seat was sold since says the
/// seat is sold, not "hold it again".
pub async fn r5_late_payment_of_a_seat_sold_since_says_sold<S: Store>(store: S) {
    let kit = Kit::new(store);
    let schedule = kit.concert_with_date(50).await;
    let (a, ta, wa) = kit.admitted_user().await;
    let late = kit
        .booking
        .hold(&wa, schedule.id, seat(7))
        .await
        .expect("hold");
    let lapsed = kit
        .booking
        .hold(&wa, schedule.id, seat(8))
        .await
        .expect("hold");
    kit.booking
        .charge(a, amount(5_000), None)
        .await
        .expect("charge");
    kit.advance(kit.booking.config().hold_ttl);
    let (b, tb, wb) = kit.admitted_user().await;
    let hb = kit
        .booking
        .hold(&wb, schedule.id, seat(7))
        .await
        .expect("hold");
    kit.booking
        .charge(b, amount(5_000), None)
        .await
        .expect("charge");
    kit.booking.pay(&tb, hb.id, None).await.expect("pay");
    assert_eq!(
        kit.booking.pay(&ta, late.id, None).await.unwrap_err(),
        PayError::SeatSold
    );
    assert_eq!(
        kit.booking.pay(&ta, lapsed.id, None).await.unwrap_err(),
        PayError::HoldExpired,
        "a lapsed hold whose seat is free: hold it again"
    );
    assert_eq!(
        pay_all(&kit, &ta, &[lapsed.id, late.id], None)
            .await
            .unwrap_err(),
        PayError::Reservation {
            reservation: lapsed.id,
            error: Box::new(PayError::HoldExpired)
        }
    );
    assert_eq!(
        kit.booking.balance(a).await.expect("b"),
        Money::new(5_000).expect("m")
    );
}

/// R4 (and I6): a token ended by a payment reads its wallet, reservations and
/// payments, but cannot add to the wallet; a waiting token can.
pub async fn r4_an_ended_token_reads_but_cannot_charge<S: Store>(store: S) {
    let kit = Kit::new(store);
    let schedule = kit.concert_with_date(50).await;
    let (user, token, who) = kit.admitted_user().await;
    let claims = kit.booking.verify_token(&token).expect("claims");
    kit.booking
        .charge_with_token(&claims, amount(1_000), None)
        .await
        .expect("an active token charges");
    let hold = kit
        .booking
        .hold(&who, schedule.id, seat(3))
        .await
        .expect("hold");
    kit.booking.pay(&token, hold.id, None).await.expect("pay");
    assert_eq!(
        kit.booking
            .charge_with_token(&claims, amount(1_000), None)
            .await
            .unwrap_err(),
        ChargeError::Gate(GateError::Ended)
    );
    assert_eq!(
        kit.booking.balance(user).await.expect("b"),
        Money::new(700).expect("m")
    );
    assert_eq!(kit.booking.ledger(user).await.expect("l").len(), 2);
    assert_eq!(
        kit.booking
            .payments_of_token(&claims)
            .await
            .expect("p")
            .len(),
        1
    );
    assert_eq!(kit.booking.reservations(user).await.expect("r").len(), 1);
    // A waiting token may top up before its turn.
    kit.booking.set_paused(true).await.expect("pause");
    let waiting = kit
        .booking
        .issue_token(UserId::random())
        .await
        .expect("issue");
    kit.booking
        .charge_with_token(&waiting.claims, amount(10), None)
        .await
        .expect("a waiting token charges");
    // A lapsed one may not.
    let (_, lapsed, _) = {
        kit.booking.set_paused(false).await.expect("resume");
        kit.admitted_user().await
    };
    kit.advance(kit.booking.config().session_ttl);
    let lapsed = kit.booking.verify_token(&lapsed).expect("claims");
    assert_eq!(
        kit.booking
            .charge_with_token(&lapsed, amount(10), None)
            .await
            .unwrap_err(),
        ChargeError::Gate(GateError::Expired)
    );
}
