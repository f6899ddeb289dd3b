//! Set-up straight through the store ports, for tests and benchmarks of an adapter
//! that bypass the service layer.

use booking_core::Store;
use booking_core::domain::{
    Amount, ConcertName, NewConcert, NewSchedule, QueueSeq, ScheduleId, SeatCount, SeatPrices,
    Timestamp, TokenId, UserId,
};
use booking_core::ports::{Advance, IssueRequest};

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
            .issue(IssueRequest {
                user,
                token_id: TokenId::random(),
                now,
                max_waiting: 10_000_000,
            })
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
