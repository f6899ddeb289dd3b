//! The contract suite: the rules of DESIGN.md sections 3-5, checked through the
//! services and the ports, on any store. Every function takes a fresh store.
//!
//! Names start with the requirement (R1-R6) or invariant (I1-I7) they check.

use std::sync::Arc;
use std::time::Duration;

use booking_core::domain::{
    AdmissionPolicy, EntryState, HoldState, IdempotencyKey, LedgerKind, Money, QueueSeq,
    ReservationId, SeatState, TokenId, UserId,
};
use booking_core::ports::{Advance, HoldRepoError, IssueRequest, NewHold};
use booking_core::{
    CancelError, CatalogError, ChargeError, Config, GateError, HoldError, IssueError, PayError,
    QueueStatus, ScheduleError, StatusError, Store, TickOutcome, TokenError, TokenSigner,
};

use crate::{Kit, amount, seat};

const SEC: Duration = Duration::from_secs(1);

fn key(k: &str) -> IdempotencyKey {
    IdempotencyKey::new(k).expect("key")
}

fn policy(batch: Option<u32>, cap: Option<u32>) -> AdmissionPolicy {
    AdmissionPolicy::new(SEC, batch, cap).expect("policy")
}

async fn position(kit: &Kit<impl Store>, token: &str) -> u64 {
    match kit
        .booking
        .queue_status(token)
        .await
        .expect("status")
        .status
    {
        QueueStatus::Waiting { position, .. } => position,
        other => panic!("expected waiting, got {other:?}"),
    }
}

async fn issue_n(kit: &Kit<impl Store>, n: usize) -> Vec<String> {
    let mut tokens = Vec::with_capacity(n);
    for _ in 0..n {
        tokens.push(
            kit.booking
                .issue_token(UserId::random())
                .await
                .expect("issue")
                .token,
        );
    }
    tokens
}

// ---------------------------------------------------------------------------------
// R1 waiting-room token

/// R1: asking again returns the same place and the same token; others queue behind.
pub async fn r1_token_issue_is_idempotent_per_user<S: Store>(store: S) {
    let kit = Kit::new(store);
    let (a, b) = (UserId::random(), UserId::random());
    let first = kit.booking.issue_token(a).await.expect("issue");
    let again = kit.booking.issue_token(a).await.expect("issue again");
    let other = kit.booking.issue_token(b).await.expect("issue b");
    assert_eq!(first.claims.seq.get(), 1);
    assert_eq!(again.token, first.token, "same place, same token");
    assert_eq!(other.claims.seq.get(), 2);
    assert_eq!(first.claims.user, a);
    assert_eq!(
        kit.booking
            .queue_stats()
            .await
            .expect("stats")
            .counters
            .last_seq,
        2
    );
}

/// R1: a token signed with another secret, or altered, is refused everywhere.
pub async fn r1_forged_and_altered_tokens_are_refused<S: Store>(store: S) {
    let kit = Kit::new(store);
    let real = kit
        .booking
        .issue_token(UserId::random())
        .await
        .expect("issue");
    let forger = TokenSigner::new(&[7u8; 32]).expect("signer");
    let forged = forger.sign(&real.claims);
    assert_eq!(
        kit.booking.queue_status(&forged).await.unwrap_err(),
        StatusError::Token(TokenError::BadSignature)
    );
    assert_eq!(
        kit.booking.gate(&forged).await.unwrap_err(),
        GateError::Token(TokenError::BadSignature)
    );
    let mut altered = real.token.clone().into_bytes();
    altered[10] = if altered[10] == b'A' { b'B' } else { b'A' };
    let altered = String::from_utf8(altered).expect("ascii");
    assert!(kit.booking.gate(&altered).await.is_err());
    assert_eq!(
        kit.booking.gate("not a token").await.unwrap_err(),
        GateError::Token(TokenError::Malformed)
    );
}

/// R1: a well-signed token whose place this database never issued is unknown.
pub async fn r1_token_of_another_database_is_unknown<S: Store>(store: S) {
    let kit = Kit::new(store);
    let signer = TokenSigner::new(crate::SECRET).expect("signer");
    let stray = signer.sign(&booking_core::TokenClaims {
        user: UserId::random(),
        seq: QueueSeq::new(99).expect("seq"),
        issued_at: crate::T0,
        token_id: TokenId::random(),
    });
    assert_eq!(
        kit.booking.queue_status(&stray).await.unwrap_err(),
        StatusError::UnknownToken
    );
    assert_eq!(
        kit.booking.gate(&stray).await.unwrap_err(),
        GateError::UnknownToken
    );
}

/// R1: the poll gives position = my sequence - serving, and an ETA from the rate.
pub async fn r1_status_reports_position_and_eta<S: Store>(store: S) {
    let kit = Kit::new(store);
    kit.booking
        .set_policy(policy(Some(2), None))
        .await
        .expect("policy");
    let tokens = issue_n(&kit, 5).await;
    for (i, t) in tokens.iter().enumerate() {
        assert_eq!(position(&kit, t).await, i as u64 + 1);
    }
    // Before any tick the policy's promise (2 a second) gives the ETA.
    match kit
        .booking
        .queue_status(&tokens[4])
        .await
        .expect("status")
        .status
    {
        QueueStatus::Waiting { eta, .. } => assert_eq!(eta, Some(Duration::from_millis(2_500))),
        other => panic!("expected waiting, got {other:?}"),
    }
    kit.advance(SEC);
    assert_eq!(
        kit.booking.tick().await.expect("tick"),
        TickOutcome::Advanced {
            admitted: 2,
            serving: 2
        }
    );
    for t in &tokens[..2] {
        let status = kit.booking.queue_status(t).await.expect("status").status;
        assert!(matches!(status, QueueStatus::Active { .. }), "{status:?}");
    }
    for (i, t) in tokens[2..].iter().enumerate() {
        assert_eq!(position(&kit, t).await, i as u64 + 1);
    }
}

/// R1 and every gated operation: a waiting token does not pass the gate.
pub async fn r1_gate_refuses_waiting_tokens_with_their_position<S: Store>(store: S) {
    let kit = Kit::new(store);
    kit.booking
        .set_policy(policy(Some(1), None))
        .await
        .expect("policy");
    let tokens = issue_n(&kit, 3).await;
    kit.advance(SEC);
    kit.booking.tick().await.expect("tick");
    assert!(kit.booking.gate(&tokens[0]).await.is_ok());
    match kit.booking.gate(&tokens[2]).await.unwrap_err() {
        GateError::Waiting { position, .. } => assert_eq!(position, 2),
        other => panic!("expected waiting, got {other:?}"),
    }
}

/// R1: the waiting line has a maximum length.
pub async fn r1_queue_full_is_refused<S: Store>(store: S) {
    let config = Config {
        max_waiting: 2,
        ..crate::config()
    };
    let kit = Kit::with_config(store, config);
    issue_n(&kit, 2).await;
    assert_eq!(
        kit.booking.issue_token(UserId::random()).await.unwrap_err(),
        IssueError::QueueFull { max: 2 }
    );
    assert_eq!(
        kit.booking
            .queue_stats()
            .await
            .expect("stats")
            .counters
            .last_seq,
        2
    );
}

// ---------------------------------------------------------------------------------
// I3 first come, first served; I4 capacity; session lifetimes

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

// ---------------------------------------------------------------------------------
// R2 dates and seats

/// R2: bookable dates leave out past and sold-out dates.
pub async fn r2_bookable_dates_are_future_with_free_seats<S: Store>(store: S) {
    let kit = Kit::new(store);
    let soon = kit.concert_with_date(1).await;
    let later = kit.date_of(soon.concert, 60, 50).await;
    let dates = kit
        .booking
        .bookable_dates(soon.concert)
        .await
        .expect("dates");
    assert_eq!(
        dates.iter().map(|d| d.schedule.id).collect::<Vec<_>>(),
        vec![soon.id, later.id]
    );
    assert_eq!(dates[1].n_free, 50);
    // Sell the only seat of the first date: it is no longer bookable.
    let (user, token, who) = kit.admitted_user().await;
    let hold = kit
        .booking
        .hold(&who, soon.id, seat(1))
        .await
        .expect("hold");
    kit.booking
        .charge(user, amount(100), None)
        .await
        .expect("charge");
    let claims = token.clone();
    kit.booking.pay(&claims, hold.id, None).await.expect("pay");
    let dates = kit
        .booking
        .bookable_dates(soon.concert)
        .await
        .expect("dates");
    assert_eq!(
        dates.iter().map(|d| d.schedule.id).collect::<Vec<_>>(),
        vec![later.id]
    );
    // Once the show starts, the date is gone too.
    kit.advance(Duration::from_secs(61 * 86_400));
    assert!(
        kit.booking
            .bookable_dates(soon.concert)
            .await
            .expect("dates")
            .is_empty()
    );
    let unknown = booking_core::domain::ConcertId::new(999).expect("id");
    assert_eq!(
        kit.booking.bookable_dates(unknown).await.unwrap_err(),
        CatalogError::UnknownConcert
    );
}

/// R2: the seat map lists seats 1..=count with price and state: free, held, sold;
/// an expired hold shows free at once.
pub async fn r2_seat_map_shows_state_and_price<S: Store>(store: S) {
    let kit = Kit::new(store);
    let schedule = kit.concert_with_date(50).await;
    let date = schedule.date();
    let (_, _, who) = kit.admitted_user().await;
    kit.booking
        .hold(&who, schedule.id, seat(7))
        .await
        .expect("hold");
    let (_, seats) = kit
        .booking
        .seats(schedule.concert, date)
        .await
        .expect("seats");
    assert_eq!(seats.len(), 50);
    assert_eq!(
        seats.iter().map(|s| s.no.get()).collect::<Vec<_>>(),
        (1..=50).collect::<Vec<_>>()
    );
    assert_eq!(seats[6].price, amount(700));
    assert!(matches!(seats[6].state, SeatState::Held { .. }));
    assert!(
        seats
            .iter()
            .filter(|s| s.no.get() != 7)
            .all(|s| s.state == SeatState::Free)
    );
    kit.advance(kit.booking.config().hold_ttl);
    let (_, seats) = kit
        .booking
        .seats(schedule.concert, date)
        .await
        .expect("seats");
    assert_eq!(seats[6].state, SeatState::Free, "lazy expiry, no sweeper");
    let other_day = date.succ_opt().expect("date");
    assert_eq!(
        kit.booking
            .seats(schedule.concert, other_day)
            .await
            .unwrap_err(),
        CatalogError::UnknownDate(other_day)
    );
}

/// Creating dates: one per concert per day, not in the past, only for a concert.
pub async fn r2_schedule_creation_rules<S: Store>(store: S) {
    let kit = Kit::new(store);
    let schedule = kit.concert_with_date(50).await;
    let again = booking_core::domain::NewSchedule::new(
        schedule.concert,
        schedule.starts_at.plus(Duration::from_secs(60)),
        booking_core::domain::SeatCount::DEFAULT,
        booking_core::domain::SeatPrices::Uniform(amount(5)),
    )
    .expect("new");
    assert_eq!(
        kit.booking.create_schedule(again).await.unwrap_err(),
        ScheduleError::DateTaken(schedule.date())
    );
    let past = booking_core::domain::NewSchedule::new(
        schedule.concert,
        kit.clock_now(),
        booking_core::domain::SeatCount::DEFAULT,
        booking_core::domain::SeatPrices::Uniform(amount(5)),
    )
    .expect("new");
    assert_eq!(
        kit.booking.create_schedule(past).await.unwrap_err(),
        ScheduleError::InThePast
    );
    let orphan = booking_core::domain::NewSchedule::new(
        booking_core::domain::ConcertId::new(12_345).expect("id"),
        schedule.starts_at.plus(Duration::from_secs(86_400)),
        booking_core::domain::SeatCount::DEFAULT,
        booking_core::domain::SeatPrices::Uniform(amount(5)),
    )
    .expect("new");
    assert_eq!(
        kit.booking.create_schedule(orphan).await.unwrap_err(),
        ScheduleError::UnknownConcert
    );
    assert_eq!(
        kit.booking
            .store()
            .schedule_summaries(schedule.concert, kit.clock_now())
            .await
            .expect("s")
            .len(),
        1
    );
}

// ---------------------------------------------------------------------------------
// R3 holds, I1 one seat one owner

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

// ---------------------------------------------------------------------------------
// R4 wallet, I2 money is conserved

/// R4, I2: charges add up, each with its ledger row; a new user has 0.
pub async fn r4_charge_adds_to_balance_with_a_ledger_row<S: Store>(store: S) {
    let kit = Kit::new(store);
    let user = UserId::random();
    assert_eq!(
        kit.booking.balance(user).await.expect("balance"),
        Money::ZERO
    );
    let r1 = kit
        .booking
        .charge(user, amount(700), None)
        .await
        .expect("charge");
    kit.advance(SEC);
    let r2 = kit
        .booking
        .charge(user, amount(300), None)
        .await
        .expect("charge");
    assert!(!r1.replayed && !r2.replayed);
    assert_eq!(r2.entry.balance_after, Money::new(1_000).expect("m"));
    assert_eq!(
        kit.booking.balance(user).await.expect("balance"),
        Money::new(1_000).expect("m")
    );
    let ledger = kit.booking.ledger(user).await.expect("ledger");
    assert_eq!(ledger.len(), 2);
    assert_eq!(ledger[0].id, r2.entry.id, "newest first");
    assert!(
        ledger
            .iter()
            .all(|e| e.kind == LedgerKind::Charge && e.user == user)
    );
    assert_eq!(ledger.iter().map(|e| e.delta()).sum::<i64>(), 1_000);
    assert!(r2.entry.id > r1.entry.id);
}

/// R4: the per-charge and balance maximums refuse and change nothing.
pub async fn r4_charge_limits<S: Store>(store: S) {
    let kit = Kit::new(store);
    let user = UserId::random();
    let config = kit.booking.config().clone();
    let too_big = amount(config.max_charge.minor_units() + 1);
    assert_eq!(
        kit.booking.charge(user, too_big, None).await.unwrap_err(),
        ChargeError::AboveMaxCharge {
            max: config.max_charge
        }
    );
    let max = config.max_charge;
    let fills = config.max_balance.minor_units() / max.minor_units();
    for _ in 0..fills {
        kit.booking.charge(user, max, None).await.expect("charge");
    }
    let full = kit.booking.balance(user).await.expect("balance");
    assert_eq!(
        kit.booking
            .charge(
                user,
                amount(config.max_balance.minor_units() - full.minor_units() + 1),
                None
            )
            .await
            .unwrap_err(),
        ChargeError::BalanceLimit {
            balance: full,
            max: config.max_balance
        }
    );
    assert_eq!(kit.booking.balance(user).await.expect("balance"), full);
    assert_eq!(
        kit.booking.ledger(user).await.expect("ledger").len() as i64,
        fills
    );
}

/// R4: a retried charge with the same key returns the first receipt.
pub async fn r4_charge_is_idempotent_by_key<S: Store>(store: S) {
    let kit = Kit::new(store);
    let (a, b) = (UserId::random(), UserId::random());
    let first = kit
        .booking
        .charge(a, amount(500), Some(key("top-up-1")))
        .await
        .expect("charge");
    let retry = kit
        .booking
        .charge(a, amount(500), Some(key("top-up-1")))
        .await
        .expect("retry");
    assert!(retry.replayed);
    assert_eq!(retry.entry, first.entry);
    assert_eq!(
        kit.booking
            .charge(a, amount(501), Some(key("top-up-1")))
            .await
            .unwrap_err(),
        ChargeError::KeyReused
    );
    kit.booking
        .charge(b, amount(500), Some(key("top-up-1")))
        .await
        .expect("keys are per user");
    assert_eq!(
        kit.booking.balance(a).await.expect("balance"),
        Money::new(500).expect("m")
    );
    assert_eq!(kit.booking.ledger(a).await.expect("ledger").len(), 1);
}

/// I2 under concurrency: concurrent charges are all counted.
pub async fn i2_concurrent_charges_are_all_counted<S: Store>(store: S) {
    let kit = Arc::new(Kit::new(store));
    let user = UserId::random();
    let mut tasks = Vec::new();
    for i in 1..=40i64 {
        let kit = Arc::clone(&kit);
        tasks.push(tokio::spawn(async move {
            kit.booking.charge(user, amount(i), None).await
        }));
    }
    for t in tasks {
        t.await.expect("task").expect("charge");
    }
    assert_eq!(
        kit.booking
            .balance(user)
            .await
            .expect("balance")
            .minor_units(),
        40 * 41 / 2
    );
    assert_eq!(kit.booking.ledger(user).await.expect("ledger").len(), 40);
}

// ---------------------------------------------------------------------------------
// R5 payment, I5 pay once, I6 token ends

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

/// Keeps the list of contract tests in one place for [`crate::contract_suite`].
#[macro_export]
macro_rules! contract_suite {
    ($make:expr) => {
        $crate::contract_suite!(@each $make;
            r1_token_issue_is_idempotent_per_user,
            r1_forged_and_altered_tokens_are_refused,
            r1_token_of_another_database_is_unknown,
            r1_status_reports_position_and_eta,
            r1_gate_refuses_waiting_tokens_with_their_position,
            r1_queue_full_is_refused,
            i3_admission_follows_issue_order,
            i4_capacity_is_never_exceeded,
            i4_a_late_show_up_cannot_exceed_the_cap,
            r1_no_show_loses_the_place_after_grace,
            r1_session_lasts_its_ttl,
            r1_ticker_respects_interval_and_pause,
            r6_concurrent_tickers_advance_once_per_tick,
            port_advance_is_a_compare_and_set,
            port_issue_is_atomic_per_user,
            r2_bookable_dates_are_future_with_free_seats,
            r2_seat_map_shows_state_and_price,
            r2_schedule_creation_rules,
            i1_held_seat_is_taken_until_it_lapses,
            r3_hold_limit_per_user,
            r3_hold_refuses_bad_seats_and_dates,
            r3_hold_lapses_when_the_show_starts,
            r3_cancel_rules,
            r3_sweeper_records_what_expired,
            i6_hold_port_requires_an_active_session,
            i1_concurrent_holds_on_one_seat_have_one_winner,
            r4_charge_adds_to_balance_with_a_ledger_row,
            r4_charge_limits,
            r4_charge_is_idempotent_by_key,
            i2_concurrent_charges_are_all_counted,
            r5_payment_sells_the_seat_and_ends_the_token,
            r5_insufficient_balance_changes_nothing,
            i5_payment_refusals,
            i5_retried_payment_returns_the_first_result,
            i6_concurrent_payments_of_one_token_pay_once,
            r5_several_holds_are_paid_in_one_payment,
            r5_payment_of_several_holds_is_all_or_nothing,
            i1_a_session_end_releases_its_holds,
            r5_late_payment_of_a_seat_sold_since_says_sold,
            r4_an_ended_token_reads_but_cannot_charge
        );
    };
    (@each $make:expr; $($name:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                // The guard (a temporary directory, a database to drop...) lives
                // until the test ends.
                let (store, _guard) = $make.await;
                $crate::contract::$name(store).await;
            }
        )+
    };
}
