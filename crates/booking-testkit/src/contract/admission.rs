//! I3 first come, first served; I4 capacity; session lifetimes; the ticker and
//! the queue ports.

use std::sync::Arc;
use std::time::Duration;

use booking_core::domain::{EntryState, QueueSeq, TokenId, UserId};
use booking_core::ports::{Advance, IssueRequest};
use booking_core::{GateError, QueueStatus, Store, TickOutcome};

use crate::{Kit, amount, seat};

use super::{SEC, issue_n, policy, position};

/// I3: each tick admits the next users in issue order, never skipping one.
pub async fn i3_admission_follows_issue_order<S: Store>(store: S) {
    let kit = Kit::new(store);
    kit.booking
        .set_policy(policy(Some(3), None))
        .await
        .expect("policy");
    let tokens = issue_n(&kit, 10).await;
    for round in 1..=4u64 {
        kit.advance(SEC);
        kit.booking.tick().await.expect("tick");
        let serving = (round * 3).min(10);
        for (i, t) in tokens.iter().enumerate() {
            let seq = i as u64 + 1;
            let entry = kit
                .booking
                .store()
                .entry(QueueSeq::new(seq).expect("seq"))
                .await
                .expect("entry")
                .expect("exists");
            assert_eq!(
                entry.admitted_at.is_some(),
                seq <= serving,
                "seq {seq} round {round}"
            );
            if seq > serving {
                assert_eq!(position(&kit, t).await, seq - serving);
            }
        }
    }
}

/// I4: active users never exceed the cap; a payment or a lapse frees a place.
pub async fn i4_capacity_is_never_exceeded<S: Store>(store: S) {
    let kit = Kit::new(store);
    let schedule = kit.concert_with_date(50).await;
    kit.booking
        .set_policy(policy(None, Some(2)))
        .await
        .expect("policy");
    let users: Vec<UserId> = (0..5).map(|_| UserId::random()).collect();
    let mut tokens = Vec::new();
    for u in &users {
        tokens.push(kit.booking.issue_token(*u).await.expect("issue").token);
    }
    kit.advance(SEC);
    assert_eq!(
        kit.booking.tick().await.expect("tick"),
        TickOutcome::Advanced {
            admitted: 2,
            serving: 2
        }
    );
    kit.advance(SEC);
    assert_eq!(
        kit.booking.tick().await.expect("tick"),
        TickOutcome::Advanced {
            admitted: 0,
            serving: 2
        }
    );
    assert_eq!(kit.booking.queue_stats().await.expect("stats").n_active, 2);
    // User 1 pays: the place is free at the next tick.
    let who = kit.booking.gate(&tokens[0]).await.expect("admitted");
    let hold = kit
        .booking
        .hold(&who, schedule.id, seat(1))
        .await
        .expect("hold");
    kit.booking
        .charge(users[0], amount(1_000), None)
        .await
        .expect("charge");
    kit.booking
        .pay(&tokens[0], hold.id, None)
        .await
        .expect("pay");
    kit.advance(SEC);
    assert_eq!(
        kit.booking.tick().await.expect("tick"),
        TickOutcome::Advanced {
            admitted: 1,
            serving: 3
        }
    );
    assert_eq!(kit.booking.queue_stats().await.expect("stats").n_active, 2);
    // User 2 never shows up: after the grace (and the clock tolerance) its place
    // goes to the next user.
    let config = kit.booking.config().clone();
    kit.advance(config.show_up_grace + config.clock_tolerance);
    let stats = kit.booking.queue_stats().await.expect("stats");
    assert!(stats.n_active <= 2);
    kit.booking.tick().await.expect("tick");
    let stats = kit.booking.queue_stats().await.expect("stats");
    assert_eq!(stats.counters.serving, 5);
    assert_eq!(stats.n_active, 2, "users 4 and 5 are active, nobody else");
}

/// I4 across instances: a gate whose clock runs a little behind may still let a
/// user show up at the very end of the grace; the ticker must not have given that
/// place away already.
pub async fn i4_a_late_show_up_cannot_exceed_the_cap<S: Store + Clone>(store: S) {
    let ticker = Kit::new(store.clone());
    let gate = Kit::new(store);
    ticker
        .booking
        .set_policy(policy(None, Some(1)))
        .await
        .expect("policy");
    let t1 = ticker
        .booking
        .issue_token(UserId::random())
        .await
        .expect("issue")
        .token;
    let t2 = ticker
        .booking
        .issue_token(UserId::random())
        .await
        .expect("issue")
        .token;
    ticker.advance(SEC);
    assert_eq!(
        ticker.booking.tick().await.expect("tick"),
        TickOutcome::Advanced {
            admitted: 1,
            serving: 1
        }
    );
    // The ticker's clock reaches user 1's show-up deadline; the gate's is 1 ms behind.
    ticker.advance(ticker.booking.config().show_up_grace);
    gate.clock
        .set(ticker.clock_now().minus(Duration::from_millis(1)));
    assert_eq!(
        ticker.booking.tick().await.expect("tick"),
        TickOutcome::Advanced {
            admitted: 0,
            serving: 1
        },
        "a session that lapsed within the clock tolerance still holds its place"
    );
    gate.booking
        .gate(&t1)
        .await
        .expect("user 1 shows up, by the gate's clock");
    assert_eq!(
        ticker.booking.queue_stats().await.expect("stats").n_active,
        1
    );
    assert!(matches!(
        ticker.booking.gate(&t2).await.unwrap_err(),
        GateError::Waiting { position: 1, .. }
    ));
}

/// An admitted user who never shows up loses the place after the grace and must
/// queue again at the back.
pub async fn r1_no_show_loses_the_place_after_grace<S: Store>(store: S) {
    let kit = Kit::new(store);
    kit.admit_everyone().await;
    let user = UserId::random();
    let issued = kit.booking.issue_token(user).await.expect("issue");
    kit.tick_all().await;
    assert!(matches!(
        kit.booking
            .queue_status(&issued.token)
            .await
            .expect("status")
            .status,
        QueueStatus::Active { .. }
    ));
    kit.advance(kit.booking.config().show_up_grace);
    assert_eq!(
        kit.booking
            .queue_status(&issued.token)
            .await
            .expect("status")
            .status,
        QueueStatus::Expired
    );
    assert_eq!(
        kit.booking.gate(&issued.token).await.unwrap_err(),
        GateError::Expired
    );
    issue_n(&kit, 1).await;
    let again = kit.booking.issue_token(user).await.expect("issue again");
    assert_eq!(again.claims.seq.get(), 3, "a new place at the back");
    assert_ne!(again.token, issued.token);
    let old = kit
        .booking
        .store()
        .entry(issued.claims.seq)
        .await
        .expect("entry")
        .expect("old");
    assert_eq!(old.state, EntryState::Expired);
}

/// Showing up starts a session that lasts the session TTL, then expires.
pub async fn r1_session_lasts_its_ttl<S: Store>(store: S) {
    let kit = Kit::new(store);
    let (_, token, who) = kit.admitted_user().await;
    let ttl = kit.booking.config().session_ttl;
    assert_eq!(who.until(), kit.clock_now().plus(ttl));
    kit.advance(ttl - SEC);
    assert!(
        kit.booking.gate(&token).await.is_ok(),
        "still inside the TTL"
    );
    kit.advance(SEC);
    assert_eq!(
        kit.booking.gate(&token).await.unwrap_err(),
        GateError::Expired
    );
}

/// The ticker: not due before the interval, nothing while paused, idle when empty.
pub async fn r1_ticker_respects_interval_and_pause<S: Store>(store: S) {
    let kit = Kit::new(store);
    kit.booking
        .set_policy(policy(Some(1), None))
        .await
        .expect("policy");
    assert_eq!(kit.booking.tick().await.expect("tick"), TickOutcome::Idle);
    issue_n(&kit, 3).await;
    assert!(matches!(
        kit.booking.tick().await.expect("tick"),
        TickOutcome::Advanced { .. }
    ));
    assert_eq!(kit.booking.tick().await.expect("tick"), TickOutcome::NotDue);
    kit.booking.set_paused(true).await.expect("pause");
    kit.advance(SEC);
    assert_eq!(kit.booking.tick().await.expect("tick"), TickOutcome::Paused);
    kit.booking.set_paused(false).await.expect("resume");
    assert_eq!(
        kit.booking.tick().await.expect("tick"),
        TickOutcome::Advanced {
            admitted: 1,
            serving: 2
        }
    );
    let c = kit.booking.queue_stats().await.expect("stats").counters;
    assert_eq!(c.policy, policy(Some(1), None));
    assert!(!c.paused);
}

/// Several instances ticking at the same instant advance the counter once.
pub async fn r6_concurrent_tickers_advance_once_per_tick<S: Store + Clone>(store: S) {
    let kits: Vec<Arc<Kit<S>>> = (0..4).map(|_| Arc::new(Kit::new(store.clone()))).collect();
    kits[0]
        .booking
        .set_policy(policy(Some(2), None))
        .await
        .expect("policy");
    issue_n(&kits[0], 10).await;
    let mut tasks = Vec::new();
    for k in &kits {
        let k = Arc::clone(k);
        tasks.push(tokio::spawn(async move {
            k.booking.tick().await.expect("tick")
        }));
    }
    let mut advanced = 0;
    for t in tasks {
        match t.await.expect("task") {
            TickOutcome::Advanced { admitted, .. } => {
                assert_eq!(admitted, 2);
                advanced += 1;
            }
            TickOutcome::LostRace | TickOutcome::NotDue => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(advanced, 1);
    assert_eq!(
        kits[1]
            .booking
            .queue_stats()
            .await
            .expect("stats")
            .counters
            .serving,
        2
    );
}

/// The advance port is a compare-and-set on the version.
pub async fn port_advance_is_a_compare_and_set<S: Store>(store: S) {
    let kit = Kit::new(store);
    issue_n(&kit, 3).await;
    let c = kit.booking.store().counters().await.expect("counters");
    let now = kit.clock_now();
    let adv = Advance {
        expected_version: c.version,
        serving: 2,
        now,
        admitted_until: now.plus(SEC),
        admit_rate_milli: 1,
    };
    assert!(kit.booking.store().advance(adv).await.expect("advance"));
    assert!(
        !kit.booking.store().advance(adv).await.expect("stale"),
        "stale version"
    );
    let after = kit.booking.store().counters().await.expect("counters");
    assert_eq!(after.serving, 2);
    assert_eq!(after.version, c.version + 1);
    let e3 = kit
        .booking
        .store()
        .entry(QueueSeq::new(3).expect("seq"))
        .await
        .expect("e")
        .expect("e");
    assert_eq!(e3.admitted_at, None);
}

/// The issue port: the same user from many tasks at once gets one place.
pub async fn port_issue_is_atomic_per_user<S: Store + Clone>(store: S) {
    let user = UserId::random();
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let s = store.clone();
        tasks.push(tokio::spawn(async move {
            s.issue(IssueRequest {
                user,
                token_id: TokenId::random(),
                now: crate::T0,
                max_waiting: 100,
            })
            .await
            .expect("issue")
        }));
    }
    let mut seqs = Vec::new();
    for t in tasks {
        seqs.push(t.await.expect("task").seq);
    }
    assert!(seqs.iter().all(|s| s.get() == 1), "{seqs:?}");
    assert_eq!(store.counters().await.expect("counters").last_seq, 1);
}
