//! The per-instance caches of [`Booking`]: sessions it let through (the gate of
//! reads and of writes) and seat maps. Two engines over one in-memory store stand
//! for two server instances; a [`ManualClock`] moves time.
//!
//! What must hold: a hold or payment never succeeds on a session that ended
//! anywhere (I6), and its refusal names the same reason as without the cache; a
//! cached read verdict or seat map is never older than its setting, a lapsed hold
//! shows free at once, and a write through an instance is seen by its next read.

use std::time::Duration;

use booking_core::domain::{
    AdmissionPolicy, Amount, ConcertName, NewSchedule, Schedule, SeatCount, SeatNo, SeatPrices,
    SeatState, Timestamp, UserId,
};
use booking_core::{
    Booking, Config, GateError, HoldError, ManualClock, MemoryStore, PayError, TokenSigner,
};

/// 2026-01-01T00:00:00Z.
const START: Timestamp = Timestamp::from_millis(1_767_225_600_000);
const SECRET: &[u8] = b"cache tests: a secret of at least 32 bytes";

type Engine = Booking<MemoryStore, ManualClock>;

fn engine(store: &MemoryStore, clock: &ManualClock, config: Config) -> Engine {
    let signer = TokenSigner::new(SECRET).unwrap();
    Booking::new(store.clone(), clock.clone(), signer, config).unwrap()
}

/// Two instances: `a` with the given caches, `b` with none.
fn two(config: Config) -> (Engine, Engine, ManualClock) {
    let (store, clock) = (MemoryStore::new(), ManualClock::new(START));
    let a = engine(&store, &clock, config);
    let b = engine(&store, &clock, Config::default());
    (a, b, clock)
}

fn seat(n: i64) -> SeatNo {
    SeatNo::new(n).unwrap()
}

async fn schedule(b: &Engine) -> Schedule {
    let concert = b
        .create_concert(ConcertName::new("Cache Night").unwrap())
        .await
        .unwrap();
    let new = NewSchedule::new(
        concert.id,
        START.plus(Duration::from_secs(30 * 86_400)),
        SeatCount::new(50).unwrap(),
        SeatPrices::Uniform(Amount::new(100).unwrap()),
    )
    .unwrap();
    b.create_schedule(new).await.unwrap()
}

/// A user admitted through `b`, with a balance of 1,000; returns the token.
async fn admitted(b: &Engine) -> (UserId, String) {
    let user = UserId::random();
    let token = b.issue_token(user).await.unwrap().token;
    b.set_policy(AdmissionPolicy::rate(1_000, Duration::from_millis(10)).unwrap())
        .await
        .unwrap();
    b.tick().await.unwrap();
    b.charge(user, Amount::new(1_000).unwrap(), None)
        .await
        .unwrap();
    (user, token)
}

fn state(seats: &[booking_core::domain::Seat], n: i64) -> SeatState {
    seats[usize::try_from(n - 1).unwrap()].state
}

#[tokio::test]
async fn i6_a_remembered_session_paid_on_another_instance_cannot_hold() {
    let (a, b, _clock) = two(Config::default());
    let s = schedule(&a).await;
    let (user, token) = admitted(&a).await;
    let who = a.gate_for_write(&token).await.unwrap();
    assert!(!who.remembered(), "the first gate reads the entry");
    a.hold(&who, s.id, seat(1)).await.unwrap();
    let paid_hold = a.hold(&who, s.id, seat(2)).await.unwrap();

    // The payment goes through the other instance.
    b.pay(&token, paid_hold.id, None).await.unwrap();

    // This instance still vouches for the session from memory...
    let who = a.gate_for_write(&token).await.unwrap();
    assert!(who.remembered());
    // ...but the hold's own write refuses it, and the refusal is the gate's.
    assert_eq!(
        a.hold(&who, s.id, seat(3)).await,
        Err(HoldError::Gate(GateError::Ended))
    );
    // Nothing was held, and the session is forgotten.
    let (_, seats) = a.seats(s.concert, s.date()).await.unwrap();
    assert_eq!(state(&seats, 3), SeatState::Free);
    assert_eq!(
        a.gate_for_write(&token).await.unwrap_err(),
        GateError::Ended
    );
    assert_eq!(a.balance(user).await.unwrap().minor_units(), 900);
}

#[tokio::test]
async fn i6_a_remembered_session_paid_on_another_instance_cannot_pay() {
    let (a, b, _clock) = two(Config::default());
    let s = schedule(&a).await;
    let (user, token) = admitted(&a).await;
    let who = a.gate_for_write(&token).await.unwrap();
    let first = a.hold(&who, s.id, seat(1)).await.unwrap();
    let second = a.hold(&who, s.id, seat(2)).await.unwrap();
    b.pay(&token, first.id, None).await.unwrap();

    assert!(a.gate_for_write(&token).await.unwrap().remembered());
    assert_eq!(
        a.pay(&token, second.id, None).await.unwrap_err(),
        PayError::Gate(GateError::Ended)
    );
    assert_eq!(a.balance(user).await.unwrap().minor_units(), 900);
    assert_eq!(a.payments(user).await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_remembered_session_lapses_at_its_end() {
    let config = Config {
        session_ttl: Duration::from_secs(5),
        gate_cache: Duration::from_secs(10),
        ..Config::default()
    };
    let (a, _b, clock) = two(config);
    let s = schedule(&a).await;
    let (_, token) = admitted(&a).await;
    let who = a.gate_for_write(&token).await.unwrap();
    let until = who.until();
    clock.set(Timestamp::from_millis(until.as_millis() - 1));
    let late = a.gate_for_write(&token).await.unwrap();
    assert!(late.remembered());
    assert!(a.gate(&token).await.unwrap().remembered());
    clock.set(until);
    assert_eq!(a.gate(&token).await.unwrap_err(), GateError::Expired);
    assert_eq!(
        a.gate_for_write(&token).await.unwrap_err(),
        GateError::Expired
    );
    // A hold with a remembered proof taken before the end is refused by its write,
    // with the gate's reason.
    assert_eq!(
        a.hold(&late, s.id, seat(1)).await,
        Err(HoldError::Gate(GateError::Expired))
    );
}

#[tokio::test]
async fn the_read_gate_trusts_its_memory_only_as_long_as_configured() {
    let config = Config {
        gate_cache: Duration::from_secs(1),
        ..Config::default()
    };
    let (a, b, clock) = two(config);
    let s = schedule(&a).await;
    let (_, token) = admitted(&a).await;
    assert!(!a.gate(&token).await.unwrap().remembered());
    let who = b.gate(&token).await.unwrap();
    let h = b.hold(&who, s.id, seat(1)).await.unwrap();
    b.pay(&token, h.id, None).await.unwrap();

    // Paid on the other instance: reads here pass for at most the gate cache.
    clock.advance(Duration::from_millis(999));
    assert!(a.gate(&token).await.unwrap().remembered());
    clock.advance(Duration::from_millis(1));
    assert_eq!(a.gate(&token).await.unwrap_err(), GateError::Ended);
    // The instance without the cache refuses at once.
    assert_eq!(b.gate(&token).await.unwrap_err(), GateError::Ended);
}

#[tokio::test]
async fn a_payment_ends_the_token_on_its_own_instance_at_once() {
    let config = Config {
        gate_cache: Duration::from_secs(10),
        ..Config::default()
    };
    let (a, _b, _clock) = two(config);
    let s = schedule(&a).await;
    let (_, token) = admitted(&a).await;
    let who = a.gate(&token).await.unwrap();
    let h = a.hold(&who, s.id, seat(1)).await.unwrap();
    assert!(a.gate(&token).await.unwrap().remembered());
    a.pay(&token, h.id, None).await.unwrap();
    assert_eq!(a.gate(&token).await.unwrap_err(), GateError::Ended);
    assert_eq!(
        a.gate_for_write(&token).await.unwrap_err(),
        GateError::Ended
    );
}

#[tokio::test]
async fn without_a_gate_cache_reads_always_check_the_entry() {
    let (a, b, _clock) = two(Config::default());
    let s = schedule(&a).await;
    let (_, token) = admitted(&a).await;
    assert!(!a.gate(&token).await.unwrap().remembered());
    assert!(!a.gate(&token).await.unwrap().remembered());
    let who = b.gate(&token).await.unwrap();
    let h = b.hold(&who, s.id, seat(1)).await.unwrap();
    b.pay(&token, h.id, None).await.unwrap();
    assert_eq!(a.gate(&token).await.unwrap_err(), GateError::Ended);
}

#[tokio::test]
async fn a_cached_seat_map_is_recomputed_for_now_and_dropped_by_local_writes() {
    let config = Config {
        seat_map_cache: Duration::from_millis(100),
        hold_ttl: Duration::from_secs(1),
        ..Config::default()
    };
    let (a, b, clock) = two(config);
    let s = schedule(&a).await;
    let (_, token) = admitted(&a).await;
    let who = a.gate(&token).await.unwrap();
    let seats = |e: &'static str| {
        let e = if e == "a" { &a } else { &b };
        let (c, d) = (s.concert, s.date());
        async move { e.seats(c, d).await.unwrap().1 }
    };

    // Cached: a hold through the other instance shows only once the map is 100 ms old.
    assert_eq!(state(&seats("a").await, 3), SeatState::Free);
    let held = b.hold(&who, s.id, seat(3)).await.unwrap();
    assert_eq!(state(&seats("a").await, 3), SeatState::Free);
    clock.advance(Duration::from_millis(99));
    assert_eq!(state(&seats("a").await, 3), SeatState::Free);
    clock.advance(Duration::from_millis(1));
    let until = held.expires_at;
    assert_eq!(state(&seats("a").await, 3), SeatState::Held { until });

    // A hold through this instance shows at once.
    a.hold(&who, s.id, seat(4)).await.unwrap();
    assert!(matches!(
        state(&seats("a").await, 4),
        SeatState::Held { .. }
    ));

    // A hold that lapses while its map is cached shows free at its end, not later.
    clock.set(Timestamp::from_millis(until.as_millis() - 50));
    assert_eq!(state(&seats("a").await, 3), SeatState::Held { until });
    clock.set(until);
    assert_eq!(state(&seats("a").await, 3), SeatState::Free);
}

#[tokio::test]
async fn a_cancel_and_a_payment_drop_the_cached_seat_map() {
    let config = Config {
        seat_map_cache: Duration::from_secs(10),
        ..Config::default()
    };
    let (a, _b, _clock) = two(config);
    let s = schedule(&a).await;
    let (_, token) = admitted(&a).await;
    let who = a.gate(&token).await.unwrap();
    let seats = || async { a.seats(s.concert, s.date()).await.unwrap().1 };
    let one = a.hold(&who, s.id, seat(1)).await.unwrap();
    let two = a.hold(&who, s.id, seat(2)).await.unwrap();
    assert!(matches!(state(&seats().await, 1), SeatState::Held { .. }));
    a.cancel_hold(&who, one.id).await.unwrap();
    assert_eq!(state(&seats().await, 1), SeatState::Free);
    a.pay(&token, two.id, None).await.unwrap();
    assert_eq!(state(&seats().await, 2), SeatState::Sold);
}

#[tokio::test]
async fn caches_longer_than_ten_seconds_are_refused() {
    for config in [
        Config {
            gate_cache: Duration::from_millis(10_001),
            ..Config::default()
        },
        Config {
            seat_map_cache: Duration::from_millis(10_001),
            ..Config::default()
        },
    ] {
        let err = Booking::new(
            MemoryStore::new(),
            ManualClock::new(START),
            TokenSigner::new(SECRET).unwrap(),
            config,
        )
        .err()
        .expect("refused");
        assert!(err.to_string().contains("at most 10 s"), "{err}");
    }
}

#[tokio::test]
async fn cached_bookable_dates_are_as_old_as_the_seat_map_cache_at_most() {
    let config = Config {
        seat_map_cache: Duration::from_millis(100),
        ..Config::default()
    };
    let (a, b, clock) = two(config);
    let s = schedule(&a).await;
    let free = |dates: &[booking_core::domain::ScheduleSummary]| dates[0].n_free;
    assert_eq!(free(&a.bookable_dates(s.concert).await.unwrap()), 50);
    // A hold through the other instance: not seen for up to 100 ms, then seen.
    let (_, token) = admitted(&b).await;
    let who = b.gate(&token).await.unwrap();
    b.hold(&who, s.id, seat(1)).await.unwrap();
    assert_eq!(free(&a.bookable_dates(s.concert).await.unwrap()), 50);
    assert_eq!(free(&b.bookable_dates(s.concert).await.unwrap()), 49);
    clock.advance(Duration::from_millis(100));
    assert_eq!(free(&a.bookable_dates(s.concert).await.unwrap()), 49);
    // A new date through this instance shows at once.
    let new = NewSchedule::new(
        s.concert,
        START.plus(Duration::from_secs(31 * 86_400)),
        SeatCount::new(50).unwrap(),
        SeatPrices::Uniform(Amount::new(100).unwrap()),
    )
    .unwrap();
    a.create_schedule(new).await.unwrap();
    assert_eq!(a.bookable_dates(s.concert).await.unwrap().len(), 2);
}
