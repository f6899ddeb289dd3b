//! R3 holds, I1 one seat one owner.

use std::sync::Arc;
use std::time::Duration;

use booking_core::domain::{EntryState, HoldState, Money, ReservationId, UserId};
use booking_core::ports::{HoldRepoError, NewHold};
use booking_core::{CancelError, HoldError, PayError, Store};

use crate::{Kit, amount, seat};

use super::SEC;

/// R3, I1: a held seat cannot be held by anyone else until the hold lapses; then
/// it is free at once, with no sweeper.
pub async fn i1_held_seat_is_taken_until_it_lapses<S: Store>(store: S) {
    let kit = Kit::new(store);
    let schedule = kit.concert_with_date(50).await;
    let (_, _, a) = kit.admitted_user().await;
    let (_, _, b) = kit.admitted_user().await;
    let hold = kit
        .booking
        .hold(&a, schedule.id, seat(3))
        .await
        .expect("hold");
    assert_eq!(hold.price, amount(300));
    assert_eq!(
        hold.expires_at,
        kit.clock_now().plus(kit.booking.config().hold_ttl)
    );
    assert_eq!(
        kit.booking
            .hold(&b, schedule.id, seat(3))
            .await
            .unwrap_err(),
        HoldError::SeatTaken(seat(3))
    );
    assert_eq!(
        kit.booking
            .hold(&a, schedule.id, seat(3))
            .await
            .unwrap_err(),
        HoldError::SeatTaken(seat(3)),
        "not even twice by the holder"
    );
    kit.advance(kit.booking.config().hold_ttl - Duration::from_millis(1));
    assert!(kit.booking.hold(&b, schedule.id, seat(3)).await.is_err());
    kit.advance(Duration::from_millis(1));
    let (_, _, c) = kit.admitted_user().await;
    let second = kit
        .booking
        .hold(&c, schedule.id, seat(3))
        .await
        .expect("lapsed hold frees the seat");
    let first = kit
        .booking
        .store()
        .reservation(hold.id)
        .await
        .expect("r")
        .expect("r");
    assert_eq!(first.state_at(kit.clock_now()), HoldState::Expired);
    assert_eq!(second.user, c.user());
}

/// R3: each user has a cap on live holds.
pub async fn r3_hold_limit_per_user<S: Store>(store: S) {
    let kit = Kit::new(store);
    let schedule = kit.concert_with_date(50).await;
    let (_, _, who) = kit.admitted_user().await;
    let max = kit.booking.config().max_live_holds;
    for n in 1..=i64::from(max) {
        kit.booking
            .hold(&who, schedule.id, seat(n))
            .await
            .expect("hold");
    }
    assert_eq!(
        kit.booking
            .hold(&who, schedule.id, seat(50))
            .await
            .unwrap_err(),
        HoldError::HoldLimit { max }
    );
    let first = kit.booking.reservations(who.user()).await.expect("list");
    assert_eq!(first.len(), max as usize);
    kit.booking
        .cancel_hold(&who, first[0].id)
        .await
        .expect("cancel");
    kit.booking
        .hold(&who, schedule.id, seat(50))
        .await
        .expect("a place under the cap");
}

/// R3: bad seats and dates are refused and change nothing.
pub async fn r3_hold_refuses_bad_seats_and_dates<S: Store>(store: S) {
    let kit = Kit::new(store);
    let schedule = kit.concert_with_date(50).await;
    let (_, _, who) = kit.admitted_user().await;
    match kit
        .booking
        .hold(&who, schedule.id, seat(51))
        .await
        .unwrap_err()
    {
        HoldError::NoSuchSeat { seat: s, count } => {
            assert_eq!((s.get(), count.get()), (51, 50));
        }
        other => panic!("expected NoSuchSeat, got {other:?}"),
    }
    let unknown = booking_core::domain::ScheduleId::new(9_999).expect("id");
    assert_eq!(
        kit.booking.hold(&who, unknown, seat(1)).await.unwrap_err(),
        HoldError::UnknownSchedule
    );
    assert!(
        kit.booking
            .reservations(who.user())
            .await
            .expect("list")
            .is_empty()
    );
    kit.advance(Duration::from_secs(31 * 86_400));
    let (_, _, late) = kit.admitted_user().await;
    assert_eq!(
        kit.booking
            .hold(&late, schedule.id, seat(1))
            .await
            .unwrap_err(),
        HoldError::Closed
    );
}

/// R3: a hold never outlives its show, so nothing is paid for after the start.
pub async fn r3_hold_lapses_when_the_show_starts<S: Store>(store: S) {
    let kit = Kit::new(store);
    let schedule = kit.concert_with_date(50).await;
    let ten_s_before = schedule.starts_at.since(kit.clock_now()) - Duration::from_secs(10);
    kit.advance(ten_s_before);
    let (user, token, who) = kit.admitted_user().await;
    let hold = kit
        .booking
        .hold(&who, schedule.id, seat(4))
        .await
        .expect("hold");
    assert_eq!(hold.expires_at, schedule.starts_at);
    kit.booking
        .charge(user, amount(1_000), None)
        .await
        .expect("charge");
    kit.advance(Duration::from_secs(10));
    let claims = token.clone();
    assert_eq!(
        kit.booking.pay(&claims, hold.id, None).await.unwrap_err(),
        PayError::HoldExpired
    );
    assert_eq!(
        kit.booking.balance(user).await.expect("b"),
        Money::new(1_000).expect("m")
    );
}

/// R3: cancel frees the seat at once; only the holder may cancel, and only a live hold.
pub async fn r3_cancel_rules<S: Store>(store: S) {
    let kit = Kit::new(store);
    let schedule = kit.concert_with_date(50).await;
    let (_, _, a) = kit.admitted_user().await;
    let (_, _, b) = kit.admitted_user().await;
    let hold = kit
        .booking
        .hold(&a, schedule.id, seat(9))
        .await
        .expect("hold");
    assert_eq!(
        kit.booking.cancel_hold(&b, hold.id).await.unwrap_err(),
        CancelError::NotYours
    );
    let cancelled = kit.booking.cancel_hold(&a, hold.id).await.expect("cancel");
    assert_eq!(cancelled.state, HoldState::Cancelled);
    assert_eq!(
        kit.booking.cancel_hold(&a, hold.id).await.unwrap_err(),
        CancelError::NotHeld(HoldState::Cancelled)
    );
    assert_eq!(
        kit.booking
            .cancel_hold(&a, ReservationId::random())
            .await
            .unwrap_err(),
        CancelError::NotFound
    );
    kit.booking
        .hold(&b, schedule.id, seat(9))
        .await
        .expect("the seat is free again");
    let again = kit
        .booking
        .hold(&a, schedule.id, seat(10))
        .await
        .expect("hold");
    kit.advance(kit.booking.config().hold_ttl);
    assert_eq!(
        kit.booking.cancel_hold(&a, again.id).await.unwrap_err(),
        CancelError::NotHeld(HoldState::Expired)
    );
}

/// The sweeper records lapsed holds and sessions; the seat map did not wait for it.
pub async fn r3_sweeper_records_what_expired<S: Store>(store: S) {
    let kit = Kit::new(store);
    let schedule = kit.concert_with_date(50).await;
    let (_, _, who) = kit.admitted_user().await;
    let hold = kit
        .booking
        .hold(&who, schedule.id, seat(1))
        .await
        .expect("hold");
    kit.booking
        .hold(&who, schedule.id, seat(2))
        .await
        .expect("hold");
    assert_eq!(kit.booking.sweep().await.expect("sweep").n_holds_expired, 0);
    kit.advance(kit.booking.config().session_ttl);
    let report = kit.booking.sweep().await.expect("sweep");
    assert_eq!(report.n_holds_expired, 2);
    assert_eq!(report.n_sessions_expired, 1);
    let stored = kit
        .booking
        .store()
        .reservation(hold.id)
        .await
        .expect("r")
        .expect("r");
    assert_eq!(stored.state, HoldState::Expired);
    let entry = kit
        .booking
        .store()
        .entry(who.seq())
        .await
        .expect("e")
        .expect("e");
    assert_eq!(entry.state, EntryState::Expired);
    assert_eq!(
        kit.booking.sweep().await.expect("sweep"),
        booking_core::SweepReport::default()
    );
    assert!(kit.booking.live_holds().await.expect("live").is_empty());
}

/// The hold port refuses a session that is not active, whatever the gate said.
pub async fn i6_hold_port_requires_an_active_session<S: Store>(store: S) {
    let kit = Kit::new(store);
    let schedule = kit.concert_with_date(50).await;
    let (user, _, who) = kit.admitted_user().await;
    let now = kit.clock_now();
    let req = NewHold {
        id: ReservationId::random(),
        user,
        session: who.seq(),
        schedule: schedule.id,
        seat: seat(1),
        now,
        expires_at: now.plus(SEC),
        max_live_per_user: 4,
    };
    let other_user = NewHold {
        user: UserId::random(),
        ..req
    };
    assert_eq!(
        kit.booking.store().hold(other_user).await.unwrap_err(),
        HoldRepoError::SessionEnded
    );
    let later = kit.clock_now().plus(Duration::from_secs(86_400));
    let lapsed = NewHold {
        now: later,
        expires_at: later.plus(SEC),
        ..req
    };
    assert_eq!(
        kit.booking.store().hold(lapsed).await.unwrap_err(),
        HoldRepoError::SessionEnded
    );
    let missing = NewHold {
        schedule: booking_core::domain::ScheduleId::new(777).expect("id"),
        ..req
    };
    assert_eq!(
        kit.booking.store().hold(missing).await.unwrap_err(),
        HoldRepoError::NoSuchSeat
    );
    assert!(kit.booking.store().hold(req).await.is_ok());
    // The session is checked before the seat: a seat now taken still answers
    // SessionEnded to a session that is not active (the engine relies on it to name
    // the refusal of a session it remembered).
    let taken = NewHold {
        id: ReservationId::random(),
        ..other_user
    };
    assert_eq!(
        kit.booking.store().hold(taken).await.unwrap_err(),
        HoldRepoError::SessionEnded
    );
}

/// I1 under concurrency: many admitted users race for one seat, one wins.
pub async fn i1_concurrent_holds_on_one_seat_have_one_winner<S: Store>(store: S) {
    let kit = Arc::new(Kit::new(store));
    let schedule = kit.concert_with_date(50).await;
    let mut admitted = Vec::new();
    for _ in 0..32 {
        admitted.push(kit.admitted_user().await.2);
    }
    let mut tasks = Vec::new();
    for who in admitted {
        let kit = Arc::clone(&kit);
        tasks.push(tokio::spawn(async move {
            kit.booking.hold(&who, schedule.id, seat(25)).await
        }));
    }
    let (mut won, mut taken) = (0, 0);
    for t in tasks {
        match t.await.expect("task") {
            Ok(_) => won += 1,
            Err(HoldError::SeatTaken(_)) => taken += 1,
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!((won, taken), (1, 31));
    assert_eq!(kit.booking.live_holds().await.expect("live").len(), 1);
}
