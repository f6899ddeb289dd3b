//! Paced waiting as users see it at a sale's opening: when to ask again follows
//! the admission rate even after the line was empty for a while, and never
//! outlasts the show-up grace (a user admitted while it waits must come back in
//! time to keep the place).

use std::time::Duration;

use booking_core::domain::{AdmissionPolicy, Timestamp, UserId};
use booking_core::{
    Booking, Config, ManualClock, MemoryStore, QueueStatus, TickOutcome, TokenSigner,
};

/// 2026-01-01T00:00:00Z.
const START: Timestamp = Timestamp::from_millis(1_767_225_600_000);
const SECRET: &[u8] = b"pacing tests: a secret of 32 bytes!";
const TICK: Duration = Duration::from_millis(100);

fn engine(clock: &ManualClock, grace: Duration) -> Booking<MemoryStore, ManualClock> {
    let signer = TokenSigner::new(SECRET).unwrap();
    let config = Config {
        show_up_grace: grace,
        ..Config::default()
    };
    Booking::new(MemoryStore::new(), clock.clone(), signer, config).unwrap()
}

fn pause_of(status: QueueStatus) -> Duration {
    match status {
        QueueStatus::Waiting { poll_after, .. } => poll_after,
        other => panic!("expected waiting, got {other:?}"),
    }
}

#[tokio::test]
async fn after_an_idle_line_the_first_admissions_set_a_fast_pace() {
    let clock = ManualClock::new(START);
    let b = engine(&clock, Duration::from_secs(60));
    b.set_policy(AdmissionPolicy::rate(200, TICK).unwrap())
        .await
        .unwrap();
    // One early user, admitted; then the line is empty for a minute.
    b.issue_token(UserId::random()).await.unwrap();
    clock.advance(TICK);
    assert!(matches!(
        b.tick().await.unwrap(),
        TickOutcome::Advanced { admitted: 1, .. }
    ));
    for _ in 0..600 {
        clock.advance(TICK);
        assert_eq!(b.tick().await.unwrap(), TickOutcome::Idle);
    }
    // The sale opens: 1,000 users; the first tick admits 200 of them.
    let mut tokens = Vec::new();
    for _ in 0..1_000 {
        tokens.push(b.issue_token(UserId::random()).await.unwrap().token);
    }
    clock.advance(TICK);
    assert!(matches!(
        b.tick().await.unwrap(),
        TickOutcome::Advanced { admitted: 200, .. }
    ));
    // Place 100 (the 300th user) is admitted in about half a second at this
    // pace: it asks again well within a second, not at the ceiling as if the idle
    // minute had been a slow line.
    let view = b.queue_status(&tokens[299]).await.unwrap();
    let pause = pause_of(view.status);
    assert!(pause < Duration::from_secs(1), "{pause:?}");
}

#[tokio::test]
async fn no_pause_outlasts_half_the_show_up_grace() {
    let clock = ManualClock::new(START);
    let b = engine(&clock, Duration::from_secs(10));
    let mut last = String::new();
    for _ in 0..5_000 {
        last = b.issue_token(UserId::random()).await.unwrap().token;
    }
    // Paused, 5,000 ahead: the rule says the ceiling (20 s); the grace says 5 s.
    b.set_paused(true).await.unwrap();
    let view = b.queue_status(&last).await.unwrap();
    assert_eq!(pause_of(view.status), Duration::from_secs(5));
    // The gate's refusal of a waiting token says the same.
    match b.gate(&last).await {
        Err(booking_core::GateError::Waiting { poll_after, .. }) => {
            assert_eq!(poll_after, Duration::from_secs(5));
        }
        other => panic!("expected waiting, got {other:?}"),
    }
}

/// A ticker learns when the next advance is due, by the engine's clock, so it can
/// wake then instead of at its next round.
#[tokio::test]
async fn a_tick_tells_when_the_next_advance_is_due() {
    let clock = ManualClock::new(START);
    let b = engine(&clock, Duration::from_secs(60));
    b.set_policy(AdmissionPolicy::rate(1, TICK).unwrap())
        .await
        .unwrap();
    assert_eq!(b.tick_timed().await.unwrap(), (TickOutcome::Idle, None));
    b.issue_token(UserId::random()).await.unwrap();
    b.issue_token(UserId::random()).await.unwrap();
    assert_eq!(
        b.tick_timed().await.unwrap(),
        (
            TickOutcome::Advanced {
                admitted: 1,
                serving: 1
            },
            Some(TICK)
        )
    );
    clock.advance(Duration::from_millis(30));
    assert_eq!(
        b.tick_timed().await.unwrap(),
        (TickOutcome::NotDue, Some(Duration::from_millis(70)))
    );
    clock.advance(Duration::from_millis(70));
    assert!(matches!(
        b.tick_timed().await.unwrap(),
        (
            TickOutcome::Advanced {
                admitted: 1,
                serving: 2
            },
            Some(TICK)
        )
    ));
    b.set_paused(true).await.unwrap();
    assert_eq!(b.tick_timed().await.unwrap(), (TickOutcome::Paused, None));
}
