//! Model-based property test of the booking engine, on any store.
//!
//! Random sequences of operations (tokens, ticks, clock jumps, the queue gate,
//! holds, cancels, charges, payments, sweeps, pause and resume) run against
//! `Booking<S, ManualClock>` for a fresh store `S`. A small reference model
//! (`reference.rs`), written from the rules of DESIGN.md and the contracts of
//! `booking_core::ports` (not from any adapter), predicts every answer. After every
//! step the checks of `invariants.rs` read the whole store through the public ports
//! and check I1-I6 and that the store agrees with the model.
//!
//! Where several refusals apply at once (say the session ended *and* the seat is
//! taken) the docs do not say which one wins, so the model accepts any of them;
//! where exactly one applies the answer must be that one, and where none applies the
//! call must succeed.
//!
//! Each backend's test file runs the same generator and the same predictions with
//! [`check`] (a fresh store per case, from the closure it is given):
//!
//! ```text
//! #[test]
//! fn model_on_my_store() {
//!     booking_testkit::model::check(file!(), 200, || async { (MyStore::fresh().await, guard) });
//! }
//! ```
//!
//! Failing cases are saved beside the calling test file (`<file>.proptest-regressions`)
//! and replayed first on the next run; a fixed sequence (a list of [`Op`]) kept as a
//! named test runs with [`run`]. `BOOKING_MODEL_CASES=N` runs `N` generated
//! cases instead of the file's number (to search harder on one backend).

mod invariants;
mod operations;
mod reference;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Debug;
use std::future::Future;
use std::time::Duration;

use booking_core::domain::{
    AdmissionPolicy, Amount, ConcertId, ConcertName, EntryState, Hold, HoldState, IdempotencyKey,
    LedgerEntry, LedgerKind, Money, NewSchedule, POLL_CEILING, POLL_FLOOR, Payment, PaymentId,
    PriceList, QueueSeq, ReservationId, ScheduleId, SeatCount, SeatNo, SeatPrices, SeatState,
    Timestamp, UserId,
};
use booking_core::{
    Admitted, Booking, CancelError, ChargeError, Clock, Config, GateError, HoldError, ManualClock,
    PayError, QueueStatus, Store, TickOutcome, TokenClaims, TokenSigner,
};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{
    Config as ProptestConfig, FileFailurePersistence, TestCaseError, TestError, TestRunner,
};

pub use operations::{Op, ops};

use invariants::check_invariants;
use operations::step;
use reference::Model;

// ---------------------------------------------------------------------------------
// The world under test

/// 2026-01-01T00:00:00Z.
const T0: i64 = 1_767_225_600_000;
const N_USERS: usize = 5;
const N_SEATS: u16 = 4;
const PRICES: [i64; N_SEATS as usize] = [100, 250, 400, 700];
/// Show starts, after `T0`: the first closes in runs with big clock jumps, the
/// second never does.
const STARTS_MS: [i64; 2] = [2 * 3_600_000, 3 * 86_400_000];
const HOLD_TTL_MS: i64 = 300_000;
const SESSION_TTL_MS: i64 = 600_000;
const GRACE_MS: i64 = 60_000;
const MAX_LIVE_HOLDS: u32 = 2;
const MAX_CHARGE: i64 = 800;
const MAX_BALANCE: i64 = 1_500;
/// The admission policy: 2 a tick, a tick a second at most, 3 active at most.
const BATCH: u64 = 2;
const INTERVAL_MS: i64 = 1_000;
const CAP: u64 = 3;
/// Idempotency keys come from a small pool per user, so they get reused.
const N_KEYS: u8 = 2;
/// Larger than anything a run creates: lists are read whole.
const ALL: u32 = 10_000;

/// One run's world: the engine over the store under test, its clock, one concert
/// with two dates, and the users.
struct World<S: Store> {
    booking: Booking<S, ManualClock>,
    clock: ManualClock,
    concert: ConcertId,
    schedules: [ScheduleId; 2],
    /// A schedule id that does not exist.
    no_schedule: ScheduleId,
    users: Vec<UserId>,
}

impl<S: Store> World<S> {
    /// The world on `store`, which must be fresh (empty): the policy set, the
    /// concert and its two dates created.
    async fn new(store: S) -> World<S> {
        let clock = ManualClock::new(ts(T0));
        let signer = TokenSigner::new(b"the model test's secret, 32 bytes or more").unwrap();
        let config = Config {
            hold_ttl: dur(HOLD_TTL_MS),
            max_live_holds: MAX_LIVE_HOLDS,
            session_ttl: dur(SESSION_TTL_MS),
            show_up_grace: dur(GRACE_MS),
            max_waiting: 1_000,
            max_charge: amount(MAX_CHARGE),
            max_balance: money(MAX_BALANCE),
            // The sold-out mark checked at every use, so the model can say exactly
            // when the sale is sold out.
            sold_out_recheck: Duration::ZERO,
            ..Config::default()
        };
        let booking = Booking::new(store, clock.clone(), signer, config).unwrap();
        let policy =
            AdmissionPolicy::rate_and_capacity(BATCH as u32, dur(INTERVAL_MS), CAP as u32).unwrap();
        booking.set_policy(policy).await.unwrap();
        let concert = booking
            .create_concert(ConcertName::new("Model Night").unwrap())
            .await
            .unwrap();
        let mut schedules = Vec::new();
        for start in STARTS_MS {
            let new = NewSchedule::new(
                concert.id,
                ts(T0 + start),
                SeatCount::new(N_SEATS.into()).unwrap(),
                SeatPrices::PerSeat(
                    PriceList::new(PRICES.iter().map(|p| amount(*p)).collect()).unwrap(),
                ),
            )
            .unwrap();
            schedules.push(booking.create_schedule(new).await.unwrap().id);
        }
        let users = (1..=N_USERS)
            .map(|i| format!("00000000-0000-4000-8000-{i:012}").parse().unwrap())
            .collect();
        World {
            booking,
            clock,
            concert: concert.id,
            schedules: [schedules[0], schedules[1]],
            no_schedule: ScheduleId::new(99).unwrap(),
            users,
        }
    }

    fn schedule(&self, index: usize) -> ScheduleId {
        self.schedules
            .get(index)
            .copied()
            .unwrap_or(self.no_schedule)
    }
}

fn ts(ms: i64) -> Timestamp {
    Timestamp::from_millis(ms)
}

fn dur(ms: i64) -> Duration {
    Duration::from_millis(ms as u64)
}

fn amount(a: i64) -> Amount {
    Amount::new(a).unwrap()
}

fn money(m: i64) -> Money {
    Money::new(m).unwrap()
}

fn seat_no(n: u16) -> SeatNo {
    SeatNo::new(n.into()).unwrap()
}

fn key(k: u8) -> IdempotencyKey {
    IdempotencyKey::new(format!("key-{k}")).unwrap()
}

fn fail(msg: impl Into<String>) -> TestCaseError {
    TestCaseError::fail(msg.into())
}

fn storage<E: Debug>(e: E) -> TestCaseError {
    fail(format!("unexpected storage error: {e:?}"))
}

/// The refusal must be one of `why`.
fn expect_refusal<T: Debug, E: Debug + PartialEq>(
    got: &Result<T, E>,
    why: &[E],
) -> Result<(), TestCaseError> {
    match got {
        Err(e) if why.contains(e) => Ok(()),
        other => Err(fail(format!("expected one of {why:?}, got {other:?}"))),
    }
}

/// The name of an enum variant, for the outcome tally.
fn variant<E: Debug>(e: &E) -> String {
    let s = format!("{e:?}");
    s.split(['(', ' ', '{'])
        .next()
        .unwrap_or_default()
        .to_owned()
}

// ---------------------------------------------------------------------------------
// Running it

/// The variable that sets how many generated cases [`check`] runs.
pub const CASES_VAR: &str = "BOOKING_MODEL_CASES";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a Tokio runtime")
}

/// What a run's answers were, as outcome names ("hold ok", "pay NotYours", "tick
/// Idle"...).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcomes {
    /// How often each outcome happened (for the coverage check).
    pub seen: BTreeMap<String, u32>,
    /// Every outcome in the order it happened (to compare two stores' answers where
    /// the model accepts several).
    pub trace: Vec<String>,
}

/// Runs `ops` from a fresh world on `store` (which must be empty), checking every
/// answer and every invariant after every step, and returns the outcomes.
///
/// # Errors
/// The first answer or invariant that disagrees with the model, with the step.
pub async fn run<S: Store>(store: S, ops: &[Op]) -> Result<Outcomes, TestCaseError> {
    let w = World::new(store).await;
    let mut m = Model::new();
    check_invariants(&w, &m).await?;
    for (i, op) in ops.iter().enumerate() {
        let at = |e: TestCaseError| fail(format!("step {i} {op:?}: {e}"));
        step(&w, &mut m, op).await.map_err(at)?;
        check_invariants(&w, &m).await.map_err(at)?;
    }
    Ok(Outcomes {
        seen: m.seen,
        trace: m.trace,
    })
}

/// Every answer agrees with the model, and I1 (one seat, one owner), I2 (money
/// conserved), I3 (first come, first served), I4 (capacity), I5 (pay once) and I6
/// (token ends at payment) hold after every step: over the regressions saved beside
/// `source_file` (pass `file!()`), then `cases` generated sequences (or
/// [`CASES_VAR`]'s number), each on a fresh store from `fresh`. `fresh` gives the
/// store and a guard that keeps what it needs (a directory, a database) until the
/// case ends.
///
/// # Panics
/// When a case fails: with the reason and the smallest failing sequence found.
pub fn check<S, G, F, Fut>(source_file: &'static str, cases: u32, fresh: F)
where
    S: Store,
    F: Fn() -> Fut,
    Fut: Future<Output = (S, G)>,
{
    check_then(source_file, cases, fresh, |_| Ok(()));
}

/// [`check`], and after each case that passed, `then` looks at its guard (which
/// may keep a clone of the store, say to read its figures) and may fail the case.
///
/// # Panics
/// When a case fails: with the reason and the smallest failing sequence found.
pub fn check_then<S, G, F, Fut>(
    source_file: &'static str,
    cases: u32,
    fresh: F,
    then: impl Fn(G) -> Result<(), String>,
) where
    S: Store,
    F: Fn() -> Fut,
    Fut: Future<Output = (S, G)>,
{
    let cases = std::env::var(CASES_VAR)
        .ok()
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(cases);
    let config = ProptestConfig {
        cases,
        source_file: Some(source_file),
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(
            "proptest-regressions",
        ))),
        ..ProptestConfig::default()
    };
    let rt = runtime();
    let mut runner = TestRunner::new(config);
    let outcome = runner.run(&ops(), |ops| {
        rt.block_on(async {
            let (store, guard) = fresh().await;
            run(store, &ops).await?;
            then(guard).map_err(fail)
        })
    });
    match outcome {
        Ok(()) => {}
        Err(TestError::Fail(why, ops)) => {
            panic!("the model test failed: {why}\nminimal failing input: ops = {ops:?}")
        }
        Err(TestError::Abort(why)) => panic!("the model test was aborted: {why}"),
    }
}

/// Two stores give the same answers: over `n` fixed sequences, each run on a fresh
/// store from `fresh_a` and one from `fresh_b`, the outcomes come in the same order.
/// This is stricter than the model where several refusals apply at once and it
/// accepts any of them: both stores must pick the same one.
///
/// # Panics
/// When a sequence fails on either store, or at the first outcome that differs.
pub fn check_same_answers<A, B, GA, GB, FA, FB, FutA, FutB>(n: usize, fresh_a: FA, fresh_b: FB)
where
    A: Store,
    B: Store,
    FA: Fn() -> FutA,
    FB: Fn() -> FutB,
    FutA: Future<Output = (A, GA)>,
    FutB: Future<Output = (B, GB)>,
{
    let mut runner = TestRunner::deterministic();
    let strategy = ops();
    let rt = runtime();
    for _ in 0..n {
        let ops = strategy
            .new_tree(&mut runner)
            .expect("a sequence")
            .current();
        let (a, b) = rt.block_on(async {
            let (store, _guard) = fresh_a().await;
            let a = run(store, &ops).await;
            let (store, _guard) = fresh_b().await;
            (a, run(store, &ops).await)
        });
        let a = a.unwrap_or_else(|e| panic!("the first store: {e}\nops = {ops:?}"));
        let b = b.unwrap_or_else(|e| panic!("the second store: {e}\nops = {ops:?}"));
        let first_difference = a.trace.iter().zip(&b.trace).position(|(x, y)| x != y);
        if let Some(i) = first_difference {
            panic!(
                "outcome {i} differs: {:?} on the first store, {:?} on the second\nops = {ops:?}",
                a.trace[i], b.trace[i]
            );
        }
        assert_eq!(a.trace, b.trace, "ops = {ops:?}");
    }
}

/// Every outcome the generator must reach over [`check_coverage`]'s sequences.
pub const EXPECTED_OUTCOMES: &[&str] = &[
    "issue new place",
    "issue same place",
    "tick Advanced",
    "tick Advanced 0 (at capacity)",
    "tick NotDue",
    "tick Idle",
    "tick Paused",
    "gate Pass",
    "gate Waiting",
    "gate Expired",
    "gate Ended",
    "hold ok",
    "hold SeatTaken",
    "hold HoldLimit",
    "hold SessionEnded",
    "hold Closed",
    "hold NoSuchSeat",
    "hold UnknownSchedule",
    "cancel ok",
    "cancel NotHeld",
    "cancel NotYours",
    "charge ok",
    "charge replayed",
    "charge KeyReused",
    "charge AboveMaxCharge",
    "charge BalanceLimit",
    "pay ok",
    "pay replayed",
    "pay KeyReused",
    "pay InsufficientBalance",
    "pay HoldExpired",
    "pay released another hold",
    "pay all ok",
    "pay all HoldExpired",
    "pay all NotYours",
    "pay all InsufficientBalance",
    "pay AlreadyPaid",
    "pay Cancelled",
    "pay NotYours",
    "pay Gate Waiting",
    "pay Gate Expired",
    "pay Gate Ended",
    "I5 retry replayed",
    "I6 hold refused after payment",
    "sweep recorded holds",
    "sweep recorded sessions",
    // The only reason that applies, so the refusal must be exactly this one.
    "hold SeatTaken alone",
    "hold HoldLimit alone",
    "hold SessionEnded alone",
    "cancel NotYours alone",
    "cancel NotHeld alone",
    "charge BalanceLimit alone",
    "charge KeyReused alone",
    "pay NotYours alone",
    "pay AlreadyPaid alone",
    "pay Cancelled alone",
    "pay HoldExpired alone",
    "pay InsufficientBalance alone",
];

/// The generator is worth its salt: over a fixed set of `n` sequences, each run on a
/// fresh store from `fresh`, it reaches every outcome in [`EXPECTED_OUTCOMES`], so
/// the invariants are checked on states where they could break.
///
/// # Panics
/// When an outcome is never reached, or a sequence fails.
pub fn check_coverage<S, G, F, Fut>(n: usize, fresh: F)
where
    S: Store,
    F: Fn() -> Fut,
    Fut: Future<Output = (S, G)>,
{
    let mut runner = TestRunner::deterministic();
    let strategy = ops();
    let rt = runtime();
    let mut seen: BTreeMap<String, u32> = BTreeMap::new();
    for _ in 0..n {
        let ops = strategy
            .new_tree(&mut runner)
            .expect("a sequence")
            .current();
        let reached = rt.block_on(async {
            let (store, _guard) = fresh().await;
            run(store, &ops).await
        });
        let reached = reached.unwrap_or_else(|e| panic!("{e}\nops = {ops:?}"));
        for (k, n) in reached.seen {
            *seen.entry(k).or_default() += n;
        }
    }
    let missing: Vec<&&str> = EXPECTED_OUTCOMES
        .iter()
        .filter(|e| !seen.contains_key(**e))
        .collect();
    eprintln!("outcomes reached: {seen:#?}");
    assert!(
        missing.is_empty(),
        "never reached: {missing:?}\nreached: {seen:#?}"
    );
}
