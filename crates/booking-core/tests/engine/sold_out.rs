//! Sold out is an answer. One date of a few seats; users admitted one at a time
//! take every seat; the users still waiting are told `SoldOut` at once, the gate,
//! the seat map and a hold say so without a write, and the ticker admits nobody.
//! When a hold lapses (or is cancelled) the mark clears, and admission resumes. Two
//! engines over one in-memory store stand for two instances; a [`ManualClock`]
//! moves time.

use std::time::Duration;

use booking_core::domain::{
    AdmissionPolicy, Amount, ConcertName, NewSchedule, Schedule, SeatCount, SeatNo, SeatPrices,
    Timestamp, UserId,
};
use booking_core::{
    Admitted, Booking, CatalogError, Config, GateError, HoldError, ManualClock, MemoryStore,
    QueueStatus, TickOutcome, TokenSigner,
};

/// 2026-01-01T00:00:00Z.
const START: Timestamp = Timestamp::from_millis(1_767_225_600_000);
const SECRET: &[u8] = b"sold-out tests: a secret of 32 bytes";
const SEC: Duration = Duration::from_secs(1);

type Engine = Booking<MemoryStore, ManualClock>;

fn engine(store: &MemoryStore, clock: &ManualClock) -> Engine {
    let signer = TokenSigner::new(SECRET).unwrap();
    Booking::new(store.clone(), clock.clone(), signer, Config::default()).unwrap()
}

fn seat(n: i64) -> SeatNo {
    SeatNo::new(n).unwrap()
}

/// A concert with one date of `n` seats at 100 each; admission one user a second.
async fn sale(b: &Engine, n: i64) -> Schedule {
    b.set_policy(AdmissionPolicy::rate(1, SEC).unwrap())
        .await
        .unwrap();
    let concert = b
        .create_concert(ConcertName::new("Sold Out Night").unwrap())
        .await
        .unwrap();
    let new = NewSchedule::new(
        concert.id,
        START.plus(Duration::from_secs(30 * 86_400)),
        SeatCount::new(n).unwrap(),
        SeatPrices::Uniform(Amount::new(100).unwrap()),
    )
    .unwrap();
    b.create_schedule(new).await.unwrap()
}

/// Issues a token for a new user and returns it.
async fn token(b: &Engine) -> String {
    b.issue_token(UserId::random()).await.unwrap().token
}

/// Ticks a second later; the next waiting user is admitted and passes the gate.
async fn admit_next(b: &Engine, clock: &ManualClock, token: &str) -> Admitted {
    clock.advance(SEC);
    assert!(matches!(
        b.tick().await.unwrap(),
        TickOutcome::Advanced { admitted: 1, .. }
    ));
    b.gate(token).await.unwrap()
}

fn is_waiting(s: QueueStatus) -> bool {
    matches!(s, QueueStatus::Waiting { .. })
}

#[tokio::test]
async fn waiting_users_are_told_sold_out_at_once_and_the_mark_clears_when_a_hold_lapses() {
    let (store, clock) = (MemoryStore::new(), ManualClock::new(START));
    let b = engine(&store, &clock);
    let s = sale(&b, 2).await;
    let tokens = [token(&b).await, token(&b).await, token(&b).await];
    let waiting = &tokens[2];
    assert!(is_waiting(b.queue_status(waiting).await.unwrap().status));
    assert!(!b.sold_out().await.unwrap());

    // Two users take the two seats; one pays.
    let first = admit_next(&b, &clock, &tokens[0]).await;
    b.hold(&first, s.id, seat(1)).await.unwrap();
    assert!(
        is_waiting(b.queue_status(waiting).await.unwrap().status),
        "a seat is still free"
    );
    let second = admit_next(&b, &clock, &tokens[1]).await;
    let held = b.hold(&second, s.id, seat(2)).await.unwrap();
    b.charge(first.user(), Amount::new(100).unwrap(), None)
        .await
        .unwrap();
    let mine = b.reservations(first.user()).await.unwrap()[0].id;
    b.pay(&tokens[0], mine, None).await.unwrap();

    // At once (no time passes): sold out, for status, gate, tick, holds and maps.
    assert!(b.sold_out().await.unwrap());
    assert_eq!(
        b.queue_status(waiting).await.unwrap().status,
        QueueStatus::SoldOut
    );
    assert_eq!(b.gate(waiting).await, Err(GateError::SoldOut));
    clock.advance(SEC);
    assert_eq!(b.tick().await.unwrap(), TickOutcome::SoldOut);
    assert_eq!(
        b.hold(&second, s.id, seat(1)).await,
        Err(HoldError::SoldOut)
    );
    assert_eq!(
        b.seats(s.concert, s.date()).await.map(|_| ()),
        Err(CatalogError::SoldOut)
    );
    // A new token is told too.
    let late = b.issue_token(UserId::random()).await.unwrap();
    assert_eq!(late.status, QueueStatus::SoldOut);
    // The admitted user who holds a seat is not waiting: still active.
    assert!(matches!(
        b.queue_status(&tokens[1]).await.unwrap().status,
        QueueStatus::Active { .. }
    ));

    // One millisecond before the unpaid hold lapses: still sold out, whatever the
    // re-check (the mark knows the soonest lapse). At the lapse: not, with no
    // re-check time to wait for.
    clock.set(held.expires_at.minus(Duration::from_millis(1)));
    assert_eq!(
        b.queue_status(waiting).await.unwrap().status,
        QueueStatus::SoldOut
    );
    clock.set(held.expires_at);
    assert!(is_waiting(b.queue_status(waiting).await.unwrap().status));
    assert!(
        b.gate(waiting)
            .await
            .is_err_and(|e| matches!(e, GateError::Waiting { .. }))
    );
    // Admission resumes: the waiting user is admitted and holds the seat back.
    let third = admit_next(&b, &clock, waiting).await;
    b.hold(&third, s.id, seat(2)).await.unwrap();
    assert_eq!(
        b.queue_status(&late.token).await.unwrap().status,
        QueueStatus::SoldOut
    );
    // A cancel through this instance clears the mark at once.
    let r = b.reservations(third.user()).await.unwrap()[0].id;
    b.cancel_hold(&third, r).await.unwrap();
    assert!(is_waiting(
        b.queue_status(&late.token).await.unwrap().status
    ));
}

#[tokio::test]
async fn a_second_instance_agrees_after_the_re_check_time() {
    let (store, clock) = (MemoryStore::new(), ManualClock::new(START));
    let (a, b) = (engine(&store, &clock), engine(&store, &clock));
    let s = sale(&a, 1).await;
    let [t1, t2] = [token(&a).await, token(&a).await];
    let first = admit_next(&a, &clock, &t1).await;
    // Instance b looks first: not sold out; it trusts that for the re-check time.
    assert!(is_waiting(b.queue_status(&t2).await.unwrap().status));
    let held = a.hold(&first, s.id, seat(1)).await.unwrap();
    assert_eq!(
        a.queue_status(&t2).await.unwrap().status,
        QueueStatus::SoldOut
    );
    clock.advance(Duration::from_millis(999));
    assert!(
        is_waiting(b.queue_status(&t2).await.unwrap().status),
        "b's mark is at most the re-check time old"
    );
    clock.advance(Duration::from_millis(1));
    assert_eq!(
        b.queue_status(&t2).await.unwrap().status,
        QueueStatus::SoldOut
    );
    assert_eq!(b.tick().await.unwrap(), TickOutcome::SoldOut);

    // A cancel on a: a sees it at once, b after the re-check time.
    a.cancel_hold(&first, held.id).await.unwrap();
    assert!(is_waiting(a.queue_status(&t2).await.unwrap().status));
    assert_eq!(
        b.queue_status(&t2).await.unwrap().status,
        QueueStatus::SoldOut
    );
    clock.advance(SEC);
    assert!(is_waiting(b.queue_status(&t2).await.unwrap().status));
}

#[tokio::test]
async fn nothing_on_sale_is_not_sold_out() {
    let (store, clock) = (MemoryStore::new(), ManualClock::new(START));
    let b = engine(&store, &clock);
    // No concert at all: admission goes on as before.
    let t = token(&b).await;
    assert!(!b.sold_out().await.unwrap());
    assert!(is_waiting(b.queue_status(&t).await.unwrap().status));
    // One date, all taken, then the show starts: nothing is on sale any more.
    let s = sale(&b, 1).await;
    let who = admit_next(&b, &clock, &t).await;
    b.hold(&who, s.id, seat(1)).await.unwrap();
    assert!(b.sold_out().await.unwrap());
    clock.set(s.starts_at);
    assert!(!b.sold_out().await.unwrap());
}
