//! Set-up straight through the store ports, for tests and benchmarks of an adapter
//! that bypass the service layer.

use std::time::Duration;

use booking_core::Store;
use booking_core::domain::{
    Amount, ConcertName, IdempotencyKey, Money, NewConcert, NewSchedule, PaymentId, QueueSeq,
    ReservationId, ScheduleId, SeatCount, SeatNo, SeatPrices, Timestamp, TokenId, UserId,
};
use booking_core::ports::{Advance, ChargeRequest, IssueRequest, NewHold, PayRequest};

/// Creates `n` users whose sessions are admitted at `now` until `until` (one advance
/// for all); returns them with their session sequence numbers.
pub async fn admitted_users<S: Store>(
    store: &S,
    n: usize,
    now: Timestamp,
    until: Timestamp,
) -> Vec<(UserId, QueueSeq)> {
    let mut users = Vec::with_capacity(n);
    for _ in 0..n {
        let user = UserId::random();
        let e = store
            .issue(issue(user, TokenId::random(), now, 10_000_000))
            .await
            .expect("issue");
        users.push((user, e.seq));
    }
    let c = store.counters().await.expect("counters");
    let adv = Advance {
        expected_version: c.version,
        serving: c.last_seq,
        now,
        admitted_until: until,
        admit_rate_milli: 0,
    };
    assert!(store.advance(adv).await.expect("advance"));
    users
}

/// A new concert with one date at `starts_at` of `seats` seats, each costing 100.
pub async fn schedule<S: Store>(store: &S, seats: usize, starts_at: Timestamp) -> ScheduleId {
    let concert = store
        .create_concert(NewConcert {
            name: ConcertName::new("Ports").expect("name"),
        })
        .await
        .expect("concert");
    let new = NewSchedule::new(
        concert.id,
        starts_at,
        SeatCount::new(seats as i64).expect("count"),
        SeatPrices::Uniform(Amount::new(100).expect("price")),
    )
    .expect("schedule");
    store.create_schedule(new).await.expect("create").id
}

/// A new hold (fresh id) of seat `seat` of `schedule` by `user` in its session, taken
/// at `now` for `ttl`, under a cap of `max_live` live holds.
pub fn hold(
    user: (UserId, QueueSeq),
    schedule: ScheduleId,
    seat: i64,
    now: Timestamp,
    ttl: Duration,
    max_live: u32,
) -> NewHold {
    NewHold {
        id: ReservationId::random(),
        user: user.0,
        session: user.1,
        schedule,
        seat: SeatNo::new(seat).expect("seat"),
        now,
        expires_at: now.plus(ttl),
        max_live_per_user: max_live,
    }
}

/// A new payment (fresh id, no idempotency key) of `reservation` by `user` in its
/// session, at `now`.
pub fn pay(user: (UserId, QueueSeq), reservation: ReservationId, now: Timestamp) -> PayRequest {
    PayRequest {
        id: PaymentId::random(),
        reservation,
        user: user.0,
        session: user.1,
        key: None,
        now,
    }
}

/// A charge of `amount` to `user`'s wallet at `now`, with an idempotency key if given,
/// refused above a balance of `max_balance`.
pub fn charge(
    user: UserId,
    amount: i64,
    key: Option<&str>,
    max_balance: i64,
    now: Timestamp,
) -> ChargeRequest {
    ChargeRequest {
        user,
        amount: Amount::new(amount).expect("amount"),
        max_balance: Money::new(max_balance).expect("max"),
        key: key.map(|k| IdempotencyKey::new(k).expect("key")),
        now,
    }
}

/// A request for a place in the waiting room for `user` at `now`, with `token_id`
/// if a new place is made, refused when `max_waiting` users already wait.
pub fn issue(user: UserId, token_id: TokenId, now: Timestamp, max_waiting: u64) -> IssueRequest {
    IssueRequest {
        user,
        token_id,
        now,
        max_waiting,
    }
}
