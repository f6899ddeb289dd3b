//! Issue 18, decision record 0013: every change emits exactly its events, in its own
//! atomic step; a refused write emits none; the feed's ids strictly increase; the
//! feed filters, pages and prunes.

use std::time::Duration;

use booking_core::domain::{
    Event, EventData, EventId, EventType, Money, PaidSeat, SessionEndReason, Timestamp, UserId,
};
use booking_core::{Config, Store};

use crate::{Kit, amount, seat};

use super::key;

/// Relays, then reads every event after `cursor` and moves it past them, checking
/// that ids strictly increase from it.
async fn new_events<S: Store>(kit: &Kit<S>, cursor: &mut EventId) -> Vec<Event> {
    kit.booking.relay_events().await.expect("relay");
    let got = kit
        .booking
        .events_after(*cursor, 1_000, &[])
        .await
        .expect("events");
    let mut last = *cursor;
    for e in &got {
        assert!(
            e.id > last,
            "ids strictly increase: {} after {}",
            e.id,
            last
        );
        last = e.id;
    }
    *cursor = last;
    got
}

/// Asserts that `got` holds exactly `want` (time and payload), in any order within
/// the step.
fn assert_events(got: Vec<Event>, want: Vec<(Timestamp, EventData)>, step: &str) {
    let key = |(at, data): &(Timestamp, EventData)| format!("{at:?} {data:?}");
    let mut got: Vec<(Timestamp, EventData)> = got.into_iter().map(|e| (e.at, e.data)).collect();
    let mut want = want;
    got.sort_by_key(key);
    want.sort_by_key(key);
    assert_eq!(got, want, "the events of {step}");
}

/// Issue 18: each change emits exactly its events, with its time and its data:
/// issue, admission, hold, cancel, charge (a replay emits nothing), payment of one
/// and of several holds, a lapsed hold replaced, the sweeper's records.
pub async fn ev_every_change_emits_its_events<S: Store>(store: S) {
    let config = Config {
        show_up_grace: Duration::from_secs(30),
        ..crate::config()
    };
    let kit = Kit::with_config(store, config);
    let schedule = kit.concert_with_date(50).await;
    let s = schedule.id;
    let mut cursor = EventId(0);
    assert_events(new_events(&kit, &mut cursor).await, vec![], "a new date");

    // Issue and admission.
    kit.admit_everyone().await;
    let user = UserId::random();
    let issued = kit.booking.issue_token(user).await.expect("issue");
    let seq = issued.claims.seq;
    let t = kit.clock_now();
    assert_events(
        new_events(&kit, &mut cursor).await,
        vec![(t, EventData::TokenIssued { user, seq })],
        "an issue",
    );
    kit.booking.issue_token(user).await.expect("issue again");
    assert_events(
        new_events(&kit, &mut cursor).await,
        vec![],
        "a second issue",
    );
    kit.tick_all().await;
    let admitted_at = kit
        .booking
        .store()
        .entry(seq)
        .await
        .expect("entry")
        .expect("entry")
        .admitted_at
        .expect("admitted");
    assert_events(
        new_events(&kit, &mut cursor).await,
        vec![(
            admitted_at,
            EventData::SessionAdmitted {
                first: seq,
                last: seq,
            },
        )],
        "a tick",
    );
    let who = kit.booking.gate(&issued.token).await.expect("gate");
    assert_events(new_events(&kit, &mut cursor).await, vec![], "a show-up");

    // Holds and a cancel.
    let t = kit.clock_now();
    let h1 = kit.booking.hold(&who, s, seat(1)).await.expect("hold");
    let h2 = kit.booking.hold(&who, s, seat(2)).await.expect("hold");
    let created = |h: &booking_core::domain::Hold| EventData::HoldCreated {
        reservation: h.id,
        user,
        schedule: s,
        seat: h.seat,
        price: h.price,
        until: h.expires_at,
    };
    assert_events(
        new_events(&kit, &mut cursor).await,
        vec![(t, created(&h1)), (t, created(&h2))],
        "two holds",
    );
    assert_eq!(h2.price, amount(200));
    kit.advance(Duration::from_secs(1));
    kit.booking.cancel_hold(&who, h2.id).await.expect("cancel");
    assert_events(
        new_events(&kit, &mut cursor).await,
        vec![(
            kit.clock_now(),
            EventData::HoldCancelled {
                reservation: h2.id,
                user,
                schedule: s,
                seat: seat(2),
            },
        )],
        "a cancel",
    );

    // A charge, and its replay.
    kit.booking
        .charge(user, amount(1_000), Some(key("top-up")))
        .await
        .expect("charge");
    kit.booking
        .charge(user, amount(1_000), Some(key("top-up")))
        .await
        .expect("replay");
    assert_events(
        new_events(&kit, &mut cursor).await,
        vec![(
            kit.clock_now(),
            EventData::WalletCharged {
                user,
                amount: amount(1_000),
                balance_after: Money::new(1_000).expect("money"),
            },
        )],
        "a charge and its replay",
    );

    // A payment of one hold releases the other, which the sweeper records.
    let h3 = kit.booking.hold(&who, s, seat(3)).await.expect("hold");
    new_events(&kit, &mut cursor).await;
    kit.advance(Duration::from_secs(1));
    let paid_at = kit.clock_now();
    let receipt = kit
        .booking
        .pay(&issued.token, h1.id, None)
        .await
        .expect("pay");
    assert_events(
        new_events(&kit, &mut cursor).await,
        vec![
            (
                paid_at,
                EventData::PaymentCompleted {
                    payment: receipt.payment.id,
                    user,
                    seats: vec![PaidSeat {
                        reservation: h1.id,
                        schedule: s,
                        seat: seat(1),
                        price: amount(100),
                    }],
                    amount: amount(100),
                    balance_after: Money::new(900).expect("money"),
                },
            ),
            (
                paid_at,
                EventData::SessionEnded {
                    user,
                    seq,
                    reason: SessionEndReason::Paid,
                },
            ),
        ],
        "a payment",
    );
    kit.advance(Duration::from_secs(1));
    kit.booking.sweep().await.expect("sweep");
    assert_events(
        new_events(&kit, &mut cursor).await,
        vec![(
            paid_at,
            EventData::HoldExpired {
                reservation: h3.id,
                user,
                schedule: s,
                seat: seat(3),
                until: paid_at,
            },
        )],
        "the sweep after a payment",
    );

    // A payment of several holds lists its seats in the order asked.
    let (payer, token, other) = kit.admitted_user().await;
    kit.booking
        .charge(payer, amount(5_000), None)
        .await
        .expect("charge");
    let a = kit.booking.hold(&other, s, seat(10)).await.expect("hold");
    let b = kit.booking.hold(&other, s, seat(20)).await.expect("hold");
    new_events(&kit, &mut cursor).await;
    let receipt = kit
        .booking
        .pay_all(&token, &[b.id, a.id], None)
        .await
        .expect("pay both");
    let now = kit.clock_now();
    let paid = |h: &booking_core::domain::Hold| PaidSeat {
        reservation: h.id,
        schedule: s,
        seat: h.seat,
        price: h.price,
    };
    assert_events(
        new_events(&kit, &mut cursor).await,
        vec![
            (
                now,
                EventData::PaymentCompleted {
                    payment: receipt.payment.id,
                    user: payer,
                    seats: vec![paid(&b), paid(&a)],
                    amount: amount(3_000),
                    balance_after: Money::new(2_000).expect("money"),
                },
            ),
            (
                now,
                EventData::SessionEnded {
                    user: payer,
                    seq: other.seq(),
                    reason: SessionEndReason::Paid,
                },
            ),
        ],
        "a payment of two holds",
    );

    // A lapsed hold replaced by a new one is recorded as expired.
    let (first, _, holder) = kit.admitted_user().await;
    let lapsing = kit.booking.hold(&holder, s, seat(7)).await.expect("hold");
    kit.advance(kit.booking.config().hold_ttl);
    let (second, _, taker) = kit.admitted_user().await;
    new_events(&kit, &mut cursor).await;
    let t = kit.clock_now();
    let taken = kit.booking.hold(&taker, s, seat(7)).await.expect("hold");
    assert_events(
        new_events(&kit, &mut cursor).await,
        vec![
            (
                lapsing.expires_at,
                EventData::HoldExpired {
                    reservation: lapsing.id,
                    user: first,
                    schedule: s,
                    seat: seat(7),
                    until: lapsing.expires_at,
                },
            ),
            (
                t,
                EventData::HoldCreated {
                    reservation: taken.id,
                    user: second,
                    schedule: s,
                    seat: seat(7),
                    price: amount(700),
                    until: taken.expires_at,
                },
            ),
        ],
        "a hold on a lapsed hold's seat",
    );

    // A place admitted and never shown up lapses; the sweeper records it.
    let no_show = UserId::random();
    let issued = kit.booking.issue_token(no_show).await.expect("issue");
    kit.tick_all().await;
    new_events(&kit, &mut cursor).await;
    let entry = kit
        .booking
        .store()
        .entry(issued.claims.seq)
        .await
        .expect("entry")
        .expect("entry");
    let lapsed_at = entry.expires_at.expect("admitted");
    kit.advance(Duration::from_secs(31));
    let report = kit.booking.sweep().await.expect("sweep");
    let mut got = new_events(&kit, &mut cursor).await;
    // Every session but the no-show's is still running, or already ended.
    got.retain(|e| e.event_type() == EventType::SessionEnded);
    assert_events(
        got,
        vec![(
            lapsed_at,
            EventData::SessionEnded {
                user: no_show,
                seq: issued.claims.seq,
                reason: SessionEndReason::Lapsed,
            },
        )],
        "the sweep of a no-show",
    );
    assert_eq!(report.n_sessions_expired, 1, "{report:?}");
}

/// Issue 18: a refused write emits nothing (and a replayed key nothing more).
pub async fn ev_a_refused_write_emits_nothing<S: Store>(store: S) {
    let config = Config {
        max_balance: Money::new(1_000).expect("money"),
        max_charge: amount(1_000),
        ..crate::config()
    };
    let kit = Kit::with_config(store, config);
    let schedule = kit.concert_with_date(5).await;
    let s = schedule.id;
    let (user, token, who) = kit.admitted_user().await;
    let (other, _, them) = kit.admitted_user().await;
    let mine = kit.booking.hold(&who, s, seat(1)).await.expect("hold");
    kit.booking
        .charge(other, amount(100), Some(key("k")))
        .await
        .expect("charge");
    let mut cursor = EventId(0);
    new_events(&kit, &mut cursor).await;

    assert!(kit.booking.hold(&them, s, seat(1)).await.is_err(), "taken");
    assert!(
        kit.booking.hold(&them, s, seat(99)).await.is_err(),
        "no seat"
    );
    assert!(
        kit.booking.cancel_hold(&them, mine.id).await.is_err(),
        "not yours"
    );
    assert!(
        kit.booking.pay(&token, mine.id, None).await.is_err(),
        "no money"
    );
    assert!(
        kit.booking
            .charge(other, amount(200), Some(key("k")))
            .await
            .is_err(),
        "key reused"
    );
    kit.booking
        .charge(user, amount(1_000), None)
        .await
        .expect("up to the max");
    new_events(&kit, &mut cursor).await;
    let before = kit.booking.last_event_id().await.expect("last");
    assert!(
        kit.booking.charge(user, amount(1), None).await.is_err(),
        "above the max balance"
    );
    kit.booking
        .charge(other, amount(100), Some(key("k")))
        .await
        .expect("replay");
    assert!(kit.booking.issue_token(user).await.is_ok(), "a live place");
    assert_events(
        new_events(&kit, &mut cursor).await,
        vec![],
        "refused writes",
    );
    assert_eq!(kit.booking.last_event_id().await.expect("last"), before);
    assert_events(
        new_events(&kit, &mut cursor).await,
        vec![],
        "a relay with nothing new",
    );
}

/// Issue 18: the feed pages by id with `after` and `limit`, filters by type, and a
/// prune deletes old events up to an id without ever reusing ids.
pub async fn ev_the_feed_pages_filters_and_prunes<S: Store>(store: S) {
    let kit = Kit::new(store);
    let schedule = kit.concert_with_date(50).await;
    let (user, _, who) = kit.admitted_user().await;
    for n in 1..=3 {
        kit.booking
            .hold(&who, schedule.id, seat(n))
            .await
            .expect("hold");
        kit.booking
            .charge(user, amount(10), None)
            .await
            .expect("charge");
    }
    kit.booking.relay_events().await.expect("relay");
    let all = kit
        .booking
        .events_after(EventId(0), 1_000, &[])
        .await
        .expect("all");
    // token.issued, session.admitted, then three holds and three charges.
    assert_eq!(all.len(), 8, "{all:?}");
    assert!(all.windows(2).all(|w| w[0].id < w[1].id));
    assert_eq!(kit.booking.last_event_id().await.expect("last"), all[7].id);

    // Paging: two at a time, from each page's last id.
    let mut paged = Vec::new();
    let mut after = EventId(0);
    loop {
        let page = kit.booking.events_after(after, 2, &[]).await.expect("page");
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 2);
        after = page[page.len() - 1].id;
        paged.extend(page);
    }
    assert_eq!(paged, all);

    // Filters.
    let holds = kit
        .booking
        .events_after(EventId(0), 1_000, &[EventType::HoldCreated])
        .await
        .expect("holds");
    assert_eq!(holds.len(), 3);
    assert!(
        holds
            .iter()
            .all(|e| e.event_type() == EventType::HoldCreated)
    );
    let two = kit
        .booking
        .events_after(
            all[2].id,
            1_000,
            &[EventType::WalletCharged, EventType::TokenIssued],
        )
        .await
        .expect("charges");
    assert_eq!(two.len(), 3, "every charge after the first hold: {two:?}");
    assert!(
        two.iter()
            .all(|e| e.event_type() == EventType::WalletCharged)
    );

    // Prune: only old events, only up to the id given.
    let store = kit.booking.store();
    let later = kit.clock_now().plus(Duration::from_secs(1));
    assert_eq!(
        store
            .prune_events(kit.clock_now().minus(Duration::from_secs(3_600)), all[7].id)
            .await
            .expect("prune"),
        0,
        "nothing is old enough"
    );
    assert_eq!(
        store.prune_events(later, all[3].id).await.expect("prune"),
        4
    );
    let left = kit
        .booking
        .events_after(EventId(0), 1_000, &[])
        .await
        .expect("left");
    assert_eq!(left, all[4..].to_vec());
    assert_eq!(
        store.prune_events(later, all[7].id).await.expect("prune"),
        4
    );
    assert_eq!(
        kit.booking.last_event_id().await.expect("last"),
        all[7].id,
        "a prune keeps the last id"
    );
    kit.booking
        .charge(user, amount(10), None)
        .await
        .expect("charge");
    let next = kit
        .booking
        .events_after(EventId(0), 1_000, &[])
        .await
        .expect("next");
    assert_eq!(next.len(), 1, "read relays when nothing is new");
    assert!(next[0].id > all[7].id, "ids are never reused");

    // The sweeper prunes past the retention.
    kit.advance(kit.booking.config().event_retention + Duration::from_secs(1));
    let report = kit.booking.sweep().await.expect("sweep");
    assert_eq!(report.n_events_pruned, 1, "{report:?}");
}
