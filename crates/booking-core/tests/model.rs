//! Model-based property test of the booking engine.
//!
//! Random sequences of operations (tokens, ticks, clock jumps, the queue gate,
//! holds, cancels, charges, payments, sweeps, pause and resume) run against
//! `Booking<MemoryStore, ManualClock>`. A small reference [`Model`], written from
//! the rules of DESIGN.md and the contracts of `booking_core::ports` (not from
//! `memory.rs`), predicts every answer. After every step [`check_invariants`] reads
//! the whole store through the public ports and checks I1-I6 and that the store
//! agrees with the model.
//!
//! Where several refusals apply at once (say the session ended *and* the seat is
//! taken) the docs do not say which one wins, so the model accepts any of them;
//! where exactly one applies the answer must be that one, and where none applies the
//! call must succeed.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Debug;
use std::time::Duration;

use booking_core::domain::{
    AdmissionPolicy, Amount, ConcertId, ConcertName, EntryState, Hold, HoldState, IdempotencyKey,
    LedgerEntry, LedgerKind, Money, NewSchedule, POLL_CEILING, POLL_FLOOR, Payment, PaymentId,
    PriceList, QueueSeq, ReservationId, ScheduleId, SeatCount, SeatNo, SeatPrices, SeatState,
    Timestamp, UserId,
};
use booking_core::ports::{CatalogRepo, HoldRepo, PaymentRepo, QueueRepo, WalletRepo};
use booking_core::{
    Admitted, Booking, CancelError, ChargeError, Clock, Config, GateError, HoldError, ManualClock,
    MemoryStore, PayError, QueueStatus, TickOutcome, TokenClaims, TokenSigner,
};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{TestCaseError, TestRunner};

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

struct World {
    booking: Booking<MemoryStore, ManualClock>,
    clock: ManualClock,
    concert: ConcertId,
    schedules: [ScheduleId; 2],
    /// A schedule id that does not exist.
    no_schedule: ScheduleId,
    users: Vec<UserId>,
}

impl World {
    async fn new() -> World {
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
        let booking = Booking::new(MemoryStore::new(), clock.clone(), signer, config).unwrap();
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
// Operations

#[derive(Debug, Clone)]
enum Op {
    /// Ask for a queue token; with `renew`, for one of the users (`user` modulo)
    /// whose place has ended, if any.
    Issue { user: usize, renew: bool },
    /// One admission tick.
    Tick,
    /// Move the manual clock forward.
    Advance { ms: i64 },
    /// Pass the gate with a user's newest token (or, `stale`, the one before); an
    /// `Admitted` is kept for later holds and cancels.
    ///
    /// In `Gate`, `Hold`, `Cancel` and `Pay`, `who` picks (modulo) one of the users
    /// who can do it (has a token, has passed the gate, has a reservation): a random
    /// user would mostly be one who cannot, and deep states would be rare.
    Gate { who: usize, stale: bool },
    /// Hold a seat with a user's last `Admitted`; schedule 2 does not exist and
    /// seat 5 is past the end.
    Hold { who: usize, sched: usize, seat: u16 },
    /// Cancel one of the user's reservations (`live_only` and `foreign` as in
    /// `Pay`).
    Cancel {
        who: usize,
        pick: usize,
        foreign: bool,
        live_only: bool,
    },
    /// Charge a user (`who` modulo; with `payer`, one with a live hold or an
    /// active session). Amounts above 800 are invalid; `None` is what fills the
    /// balance to the maximum exactly (1 when it is full). `retry` repeats the
    /// user's last charge.
    Charge {
        who: usize,
        payer: bool,
        amount: Option<i64>,
        key: Option<u8>,
        retry: bool,
    },
    /// Pay one of the user's reservations (`live_only`: a live one when there is
    /// one, else one that is not; `foreign`: someone else's) with the newest (or
    /// `stale`) token. `retry` repeats the user's last payment request exactly.
    Pay {
        who: usize,
        pick: usize,
        foreign: bool,
        live_only: bool,
        key: Option<u8>,
        stale: bool,
        retry: bool,
    },
    /// Pay two or three of the user's reservations at once (live ones first; with
    /// `foreign`, one of them someone else's) with the newest token.
    PayAll {
        who: usize,
        n: usize,
        pick: usize,
        foreign: bool,
        key: Option<u8>,
    },
    /// Record what has lapsed.
    Sweep,
    /// Pause (`true`) or resume admission.
    SetPaused(bool),
}

fn clock_step() -> impl Strategy<Value = i64> {
    prop_oneof![
        // A few seconds: sessions and holds stay alive, ticks become due.
        12 => 0..3_000i64,
        // Up to 400 s: past the show-up grace, the hold TTL, sometimes the session.
        6 => 0..400_000i64,
        // Exactly on a boundary.
        2 => prop::sample::select(vec![999, 1_000, GRACE_MS, HOLD_TTL_MS, SESSION_TTL_MS]),
        // Big jumps, up to 2.8 h: everything lapses, the first show starts.
        1 => 400_000..10_000_000i64,
    ]
}

fn op() -> impl Strategy<Value = Op> {
    // Some users queue more often than others.
    let user = || prop::sample::select(vec![0, 0, 0, 0, 1, 1, 1, 2, 2, 3, 4]);
    let who = || 0..N_USERS;
    let key = || prop::option::weighted(0.6, 0..N_KEYS);
    let sched = prop_oneof![12 => 0..2usize, 1 => Just(2usize)];
    // Boundaries are likelier than in a uniform draw: a price exactly, the
    // largest charge and one more, up to the largest balance.
    let charge = prop_oneof![
        6 => (1..=1_000i64).prop_map(Some),
        2 => prop::sample::select(PRICES.to_vec()).prop_map(Some),
        1 => prop::sample::select(vec![MAX_CHARGE, MAX_CHARGE + 1]).prop_map(Some),
        1 => Just(None),
    ];
    prop_oneof![
        4 => (user(), prop::bool::weighted(0.4))
            .prop_map(|(user, renew)| Op::Issue { user, renew }),
        4 => Just(Op::Tick),
        3 => clock_step().prop_map(|ms| Op::Advance { ms }),
        5 => (who(), prop::bool::weighted(0.15))
            .prop_map(|(who, stale)| Op::Gate { who, stale }),
        6 => (who(), sched, 1..=N_SEATS + 1)
            .prop_map(|(who, sched, seat)| Op::Hold { who, sched, seat }),
        2 => (who(), 0..8usize, prop::bool::weighted(0.3), prop::bool::weighted(0.7))
            .prop_map(|(who, pick, foreign, live_only)| Op::Cancel {
                who,
                pick,
                foreign,
                live_only,
            }),
        4 => (who(), prop::bool::weighted(0.5), charge, key(), prop::bool::weighted(0.2))
            .prop_map(|(who, payer, amount, key, retry)| Op::Charge {
                who,
                payer,
                amount,
                key,
                retry,
            }),
        4 => (
            who(),
            0..8usize,
            prop::bool::weighted(0.15),
            prop::bool::weighted(0.7),
            key(),
            prop::bool::weighted(0.1),
            prop::bool::weighted(0.15),
        )
            .prop_map(|(who, pick, foreign, live_only, key, stale, retry)| Op::Pay {
                who,
                pick,
                foreign,
                live_only,
                key,
                stale,
                retry,
            }),
        2 => (who(), 2..=3usize, 0..8usize, prop::bool::weighted(0.15), key())
            .prop_map(|(who, n, pick, foreign, key)| Op::PayAll {
                who,
                n,
                pick,
                foreign,
                key,
            }),
        1 => Just(Op::Sweep),
        1 => prop::bool::weighted(0.25).prop_map(Op::SetPaused),
    ]
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(op(), 30..=60)
}

// ---------------------------------------------------------------------------------
// The reference model

/// A user's last payment request: the session, the reservations, the key.
type LastPay = (u64, Vec<usize>, Option<u8>);

/// One issued place, as the rules of the waiting room describe it.
#[derive(Debug, Clone)]
struct EntryM {
    user: usize,
    token: String,
    claims: TokenClaims,
    state: EntryState,
    admitted_at: Option<i64>,
    seen_at: Option<i64>,
    expires_at: Option<i64>,
}

impl EntryM {
    /// Admitted, not ended, not lapsed.
    fn active_at(&self, now: i64) -> bool {
        self.state == EntryState::Live && self.expires_at.is_some_and(|t| now < t)
    }

    /// Still holds a place: waiting, or admitted and not lapsed.
    fn live_at(&self, now: i64) -> bool {
        self.state == EntryState::Live && self.expires_at.is_none_or(|t| now < t)
    }
}

/// One reservation. `state` is `Held`, `Paid`, `Cancelled`, or `Expired` once a
/// sweep recorded it; a `Held` one past `expires_at` is expired all the same.
#[derive(Debug, Clone)]
struct ResM {
    id: ReservationId,
    user: usize,
    sched: usize,
    seat: u16,
    price: i64,
    expires_at: i64,
    state: HoldState,
}

/// One row of a user's ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RowM {
    kind: LedgerKind,
    amount: i64,
    balance_after: i64,
    at: i64,
    key: Option<IdempotencyKey>,
}

/// What the gate must answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GateM {
    Pass { until: i64 },
    Waiting { position: u64 },
    SoldOut,
    Expired,
    Ended,
}

#[derive(Debug, Default)]
struct Model {
    now: i64,
    paused: bool,
    serving: u64,
    last_tick_at: Option<i64>,
    /// Index `seq - 1`.
    entries: Vec<EntryM>,
    /// Per user: what the gate last let through.
    admitted: Vec<Option<Admitted>>,
    /// In the order they were taken.
    reservations: Vec<ResM>,
    /// `(schedule, seat)` -> the paid reservation.
    sold: HashMap<(usize, u16), usize>,
    balance: Vec<i64>,
    ledger: Vec<Vec<RowM>>,
    /// `(user, key)` -> the first charge's ledger row (amount and receipt).
    charge_keys: HashMap<(usize, u8), LedgerEntry>,
    /// `(user, key)` -> the payment made with it.
    pay_keys: HashMap<(usize, u8), Payment>,
    payments: Vec<Payment>,
    last_charge: Vec<Option<(i64, Option<u8>)>>,
    /// The last payment request: token sequence, reservation index, key.
    last_pay: Vec<Option<LastPay>>,
    /// How often each outcome happened (for the coverage test).
    seen: BTreeMap<String, u32>,
}

impl Model {
    fn new() -> Model {
        Model {
            now: T0,
            admitted: vec![None; N_USERS],
            balance: vec![0; N_USERS],
            ledger: vec![Vec::new(); N_USERS],
            last_charge: vec![None; N_USERS],
            last_pay: vec![None; N_USERS],
            ..Model::default()
        }
    }

    fn note(&mut self, what: impl Into<String>) {
        *self.seen.entry(what.into()).or_default() += 1;
    }

    fn entry(&self, seq: u64) -> &EntryM {
        &self.entries[seq as usize - 1]
    }

    fn entry_mut(&mut self, seq: u64) -> &mut EntryM {
        &mut self.entries[seq as usize - 1]
    }

    /// The user's places, oldest first.
    fn seqs_of(&self, user: usize) -> Vec<u64> {
        (1..=self.entries.len() as u64)
            .filter(|s| self.entry(*s).user == user)
            .collect()
    }

    /// The user's newest token, or with `stale` the one before (if any).
    fn token_seq(&self, user: usize, stale: bool) -> Option<u64> {
        let seqs = self.seqs_of(user);
        match seqs.len() {
            0 => None,
            n if stale && n >= 2 => Some(seqs[n - 2]),
            n => Some(seqs[n - 1]),
        }
    }

    /// The `who`-th (modulo) of the users for whom `can` holds.
    fn pick_user(&self, who: usize, can: impl Fn(usize) -> bool) -> Option<usize> {
        let users: Vec<usize> = (0..N_USERS).filter(|u| can(*u)).collect();
        (!users.is_empty()).then(|| users[who % users.len()])
    }

    /// Whether the user's newest place holds an active session.
    fn is_active(&self, user: usize) -> bool {
        self.token_seq(user, false)
            .is_some_and(|s| self.entry(s).active_at(self.now))
    }

    fn has_reservation(&self, user: usize) -> bool {
        self.reservations.iter().any(|r| r.user == user)
    }

    fn n_active(&self) -> u64 {
        self.entries
            .iter()
            .filter(|e| e.active_at(self.now))
            .count() as u64
    }

    fn n_waiting(&self) -> u64 {
        self.entries.len() as u64 - self.serving
    }

    /// What a status poll of `seq` must answer (ETA left out).
    fn status(&self, seq: u64) -> QueueStatus {
        let e = self.entry(seq);
        match (e.state, e.expires_at) {
            (EntryState::Done, _) => QueueStatus::Done,
            (EntryState::Expired, _) => QueueStatus::Expired,
            (EntryState::Live, None) if self.sold_out() => QueueStatus::SoldOut,
            (EntryState::Live, None) => QueueStatus::Waiting {
                position: seq - self.serving,
                eta: None,
                poll_after: Duration::ZERO,
            },
            (EntryState::Live, Some(t)) if self.now < t => QueueStatus::Active { until: ts(t) },
            (EntryState::Live, Some(_)) => QueueStatus::Expired,
        }
    }

    /// What the gate must answer for `seq` now, applying the show-up it causes: the
    /// first use of an admitted token starts a session of the session TTL.
    fn gate(&mut self, seq: u64) -> GateM {
        let (now, serving, sold_out) = (self.now, self.serving, self.sold_out());
        let e = self.entry_mut(seq);
        match (e.state, e.expires_at) {
            (EntryState::Done, _) => GateM::Ended,
            (EntryState::Expired, _) => GateM::Expired,
            (EntryState::Live, None) if sold_out => GateM::SoldOut,
            (EntryState::Live, None) => GateM::Waiting {
                position: seq - serving,
            },
            (EntryState::Live, Some(t)) if now >= t => GateM::Expired,
            (EntryState::Live, Some(t)) if e.seen_at.is_some() => GateM::Pass { until: t },
            (EntryState::Live, Some(_)) => {
                e.seen_at = Some(now);
                e.expires_at = Some(now + SESSION_TTL_MS);
                GateM::Pass {
                    until: now + SESSION_TTL_MS,
                }
            }
        }
    }

    /// The effective state of a reservation now (lazy expiry).
    fn res_state(&self, r: usize) -> HoldState {
        let res = &self.reservations[r];
        match res.state {
            HoldState::Held if self.now >= res.expires_at => HoldState::Expired,
            s => s,
        }
    }

    fn res_live(&self, r: usize) -> bool {
        self.res_state(r) == HoldState::Held
    }

    fn live_holds_of(&self, user: usize) -> usize {
        (0..self.reservations.len())
            .filter(|r| self.reservations[*r].user == user && self.res_live(*r))
            .count()
    }

    /// The live hold on a seat, if any.
    fn live_hold_on(&self, sched: usize, seat: u16) -> Option<usize> {
        (0..self.reservations.len()).find(|r| {
            let res = &self.reservations[*r];
            res.sched == sched && res.seat == seat && self.res_live(*r)
        })
    }

    fn seat_taken(&self, sched: usize, seat: u16) -> bool {
        self.sold.contains_key(&(sched, seat)) || self.live_hold_on(sched, seat).is_some()
    }

    fn is_open(&self, sched: usize) -> bool {
        self.now < T0 + STARTS_MS[sched]
    }

    /// The sale is sold out: some date is bookable, and every seat of every
    /// bookable date is sold or under a live hold.
    fn sold_out(&self) -> bool {
        let open: Vec<usize> = (0..STARTS_MS.len()).filter(|d| self.is_open(*d)).collect();
        !open.is_empty()
            && open
                .iter()
                .all(|d| (1..=N_SEATS).all(|seat| self.seat_taken(*d, seat)))
    }

    /// Every refusal that applies to a hold by `user` with `adm`.
    fn hold_refusals(
        &self,
        user: usize,
        adm: &Admitted,
        sched: usize,
        seat: u16,
    ) -> Vec<HoldError> {
        let mut why = Vec::new();
        let exists = sched < STARTS_MS.len();
        if !exists {
            why.push(HoldError::UnknownSchedule);
        } else if !self.is_open(sched) {
            why.push(HoldError::Closed);
        }
        if exists && seat > N_SEATS {
            why.push(HoldError::NoSuchSeat {
                seat: seat_no(seat),
                count: SeatCount::new(N_SEATS.into()).unwrap(),
            });
        }
        if !self.entry(adm.seq().get()).active_at(self.now) {
            why.push(HoldError::SessionEnded);
        }
        if self.live_holds_of(user) >= MAX_LIVE_HOLDS as usize {
            why.push(HoldError::HoldLimit {
                max: MAX_LIVE_HOLDS,
            });
        }
        if exists && seat <= N_SEATS && self.seat_taken(sched, seat) {
            why.push(HoldError::SeatTaken(seat_no(seat)));
        }
        if exists && self.is_open(sched) && seat <= N_SEATS && self.sold_out() {
            why.push(HoldError::SoldOut);
        }
        why
    }

    /// A reservation to act on: the user's own, or with `foreign` someone else's
    /// (if there is one); a live one when `live_only`, else a paid, cancelled or
    /// lapsed one (when there is one).
    fn pick_reservation(
        &self,
        user: usize,
        pick: usize,
        foreign: bool,
        live_only: bool,
    ) -> Option<usize> {
        let (others, own): (Vec<usize>, Vec<usize>) =
            (0..self.reservations.len()).partition(|r| self.reservations[*r].user != user);
        let mine = if foreign && !others.is_empty() {
            others
        } else {
            own
        };
        let (live, done): (Vec<usize>, Vec<usize>) = mine.iter().partition(|r| self.res_live(**r));
        let candidates = match (live_only, live.is_empty(), done.is_empty()) {
            (true, false, _) => live,
            (false, _, false) => done,
            _ => mine,
        };
        (!candidates.is_empty()).then(|| candidates[pick % candidates.len()])
    }

    /// The seat a hold is most likely to get: free, on an open schedule.
    fn most_holdable_seat(&self) -> (usize, u16) {
        let seats = || (0..STARTS_MS.len()).flat_map(|d| (1..=N_SEATS).map(move |s| (d, s)));
        seats()
            .find(|(d, s)| self.is_open(*d) && !self.seat_taken(*d, *s))
            .or_else(|| seats().find(|(d, _)| self.is_open(*d)))
            .unwrap_or((1, 1))
    }
}

// ---------------------------------------------------------------------------------
// Steps: call the service, check its answer against the model, update the model

fn check_gate(
    got: &Result<Admitted, GateError>,
    expected: GateM,
    claims: &TokenClaims,
) -> Result<(), TestCaseError> {
    match (got, expected) {
        (Ok(a), GateM::Pass { until }) => {
            prop_assert_eq!(a.user(), claims.user);
            prop_assert_eq!(a.seq(), claims.seq);
            prop_assert_eq!(a.token_id(), claims.token_id);
            prop_assert_eq!(a.until(), ts(until));
        }
        (
            Err(GateError::Waiting {
                position,
                eta,
                poll_after,
            }),
            GateM::Waiting { position: p },
        ) => {
            prop_assert_eq!(*position, p, "position = my sequence - serving");
            prop_assert!(eta.is_some(), "a rate policy always gives an ETA");
            prop_assert!((POLL_FLOOR..=POLL_CEILING).contains(poll_after));
        }
        (Err(GateError::Expired), GateM::Expired)
        | (Err(GateError::Ended), GateM::Ended)
        | (Err(GateError::SoldOut), GateM::SoldOut) => {}
        (got, expected) => {
            return Err(fail(format!("gate: expected {expected:?}, got {got:?}")));
        }
    }
    Ok(())
}

async fn step(w: &World, m: &mut Model, op: &Op) -> Result<(), TestCaseError> {
    match *op {
        Op::Issue { user, renew } => {
            let ended = |u: usize| {
                m.token_seq(u, false)
                    .is_some_and(|s| !m.entry(s).live_at(m.now))
            };
            let user = match renew {
                true => m.pick_user(user, ended).unwrap_or(user),
                false => user,
            };
            issue(w, m, user).await
        }
        Op::Tick => tick(w, m).await,
        Op::Advance { ms } => {
            w.clock.advance(dur(ms));
            m.now += ms;
            Ok(())
        }
        Op::Gate { who, stale } => {
            let Some(user) = m.pick_user(who, |u| m.token_seq(u, false).is_some()) else {
                return Ok(());
            };
            let Some(seq) = m.token_seq(user, stale) else {
                return Ok(());
            };
            let (token, claims) = (m.entry(seq).token.clone(), m.entry(seq).claims);
            let got = w.booking.gate(&token).await;
            let expected = m.gate(seq);
            check_gate(&got, expected, &claims)?;
            m.note(format!("gate {}", variant(&expected)));
            if let Ok(adm) = got {
                m.admitted[user] = Some(adm);
            }
            Ok(())
        }
        Op::Hold { who, sched, seat } => {
            let Some(user) = m.pick_user(who, |u| m.admitted[u].is_some()) else {
                return Ok(());
            };
            hold(w, m, user, sched, seat).await
        }
        Op::Cancel {
            who,
            pick,
            foreign,
            live_only,
        } => {
            let Some(user) = m
                .pick_user(who, |u| m.admitted[u].is_some() && m.has_reservation(u))
                .or_else(|| m.pick_user(who, |u| m.admitted[u].is_some()))
            else {
                return Ok(());
            };
            let Some(r) = m.pick_reservation(user, pick, foreign, live_only) else {
                return Ok(());
            };
            cancel(w, m, user, r).await
        }
        Op::Charge {
            who,
            payer,
            amount,
            key,
            retry,
        } => {
            let user = payer
                .then(|| m.pick_user(who, |u| m.live_holds_of(u) > 0 || m.is_active(u)))
                .flatten()
                .unwrap_or(who % N_USERS);
            let fill = (MAX_BALANCE - m.balance[user]).clamp(1, MAX_CHARGE);
            let (amount, key) = match m.last_charge[user] {
                Some(last) if retry => last,
                _ => (amount.unwrap_or(fill), key),
            };
            charge(w, m, user, amount, key).await
        }
        Op::Pay {
            who,
            pick,
            foreign,
            live_only,
            key,
            stale,
            retry,
        } => {
            let has_token = |u: usize| m.token_seq(u, false).is_some();
            let can_pay = |u: usize| has_token(u) && m.has_reservation(u);
            let someone_elses = |u: usize| m.reservations.iter().any(|r| r.user != u);
            let mut user = None;
            if foreign {
                user = m
                    .pick_user(who, |u| m.is_active(u) && someone_elses(u))
                    .or_else(|| m.pick_user(who, |u| has_token(u) && someone_elses(u)));
            }
            if user.is_none() && live_only {
                user = m.pick_user(who, |u| can_pay(u) && m.live_holds_of(u) > 0);
            }
            let Some(user) = user.or_else(|| m.pick_user(who, can_pay)) else {
                return Ok(());
            };
            let (seq, rs, key) = match m.last_pay[user].clone() {
                Some(last) if retry => last,
                _ => {
                    let Some(seq) = m.token_seq(user, stale) else {
                        return Ok(());
                    };
                    let Some(r) = m.pick_reservation(user, pick, foreign, live_only) else {
                        return Ok(());
                    };
                    (seq, vec![r], key)
                }
            };
            pay(w, m, user, seq, rs, key).await
        }
        Op::PayAll {
            who,
            n,
            pick,
            foreign,
            key,
        } => {
            let Some(user) = m.pick_user(who, |u| {
                m.token_seq(u, false).is_some() && m.live_holds_of(u) >= 2
            }) else {
                return Ok(());
            };
            let Some(seq) = m.token_seq(user, false) else {
                return Ok(());
            };
            // The user's reservations, live ones first, from `pick` on.
            let (live, done): (Vec<usize>, Vec<usize>) = (0..m.reservations.len())
                .filter(|r| m.reservations[*r].user == user)
                .partition(|r| m.res_live(*r));
            let mine: Vec<usize> = live.into_iter().chain(done).collect();
            let mut rs: Vec<usize> = (0..n.min(mine.len()))
                .map(|i| mine[(pick + i) % mine.len()])
                .collect();
            rs.dedup();
            if foreign
                && let Some(other) =
                    (0..m.reservations.len()).find(|r| m.reservations[*r].user != user)
            {
                rs.insert(pick % (rs.len() + 1), other);
            }
            pay(w, m, user, seq, rs, key).await
        }
        Op::Sweep => sweep(w, m).await,
        Op::SetPaused(paused) => {
            w.booking.set_paused(paused).await.map_err(storage)?;
            m.paused = paused;
            Ok(())
        }
    }
}

async fn issue(w: &World, m: &mut Model, user: usize) -> Result<(), TestCaseError> {
    let got = w
        .booking
        .issue_token(w.users[user])
        .await
        .map_err(storage)?;
    let newest = m.token_seq(user, false);
    if let Some(seq) = newest.filter(|s| m.entry(*s).live_at(m.now)) {
        // Asking again while the place is live: the same place, the same token.
        prop_assert_eq!(&got.token, &m.entry(seq).token);
        prop_assert_eq!(got.claims, m.entry(seq).claims);
        prop_assert_eq!(without_eta(got.status), m.status(seq));
        m.note("issue same place");
        return Ok(());
    }
    // A new place at the back, the old one (lapsed) recorded as expired.
    let seq = m.entries.len() as u64 + 1;
    prop_assert_eq!(got.claims.seq.get(), seq, "sequences are 1, 2, 3, ...");
    prop_assert_eq!(got.claims.user, w.users[user]);
    prop_assert_eq!(got.claims.issued_at, ts(m.now));
    prop_assert_eq!(w.booking.verify_token(&got.token), Ok(got.claims));
    let expected = if m.sold_out() {
        QueueStatus::SoldOut
    } else {
        QueueStatus::Waiting {
            position: seq - m.serving,
            eta: None,
            poll_after: Duration::ZERO,
        }
    };
    prop_assert_eq!(without_eta(got.status), expected);
    if let Some(old) = newest
        && m.entry(old).state == EntryState::Live
    {
        m.entry_mut(old).state = EntryState::Expired;
    }
    m.entries.push(EntryM {
        user,
        token: got.token,
        claims: got.claims,
        state: EntryState::Live,
        admitted_at: None,
        seen_at: None,
        expires_at: None,
    });
    m.note("issue new place");
    Ok(())
}

/// The status without its ETA and pace (the model does not track the rate); the
/// pace is checked to lie within its bounds.
fn without_eta(s: QueueStatus) -> QueueStatus {
    match s {
        QueueStatus::Waiting {
            position,
            poll_after,
            ..
        } => {
            assert!((POLL_FLOOR..=POLL_CEILING).contains(&poll_after));
            QueueStatus::Waiting {
                position,
                eta: None,
                poll_after: Duration::ZERO,
            }
        }
        other => other,
    }
}

async fn tick(w: &World, m: &mut Model) -> Result<(), TestCaseError> {
    let got = w.booking.tick().await.map_err(storage)?;
    let now = m.now;
    let expected = if m.paused {
        TickOutcome::Paused
    } else if m.last_tick_at.is_some_and(|t| now < t + INTERVAL_MS) {
        TickOutcome::NotDue
    } else if m.n_waiting() == 0 {
        TickOutcome::Idle
    } else if m.sold_out() {
        TickOutcome::SoldOut
    } else {
        // Sessions that lapsed within the clock tolerance still count (I4 across
        // instances whose clocks differ a little).
        let tolerance = Config::default().clock_tolerance.as_millis() as i64;
        let n_active = m
            .entries
            .iter()
            .filter(|e| e.active_at(now - tolerance))
            .count() as u64;
        let n = m.n_waiting().min(BATCH).min(CAP.saturating_sub(n_active));
        for seq in m.serving + 1..=m.serving + n {
            let e = m.entry_mut(seq);
            e.admitted_at = Some(now);
            e.expires_at = Some(now + GRACE_MS);
        }
        m.serving += n;
        m.last_tick_at = Some(now);
        TickOutcome::Advanced {
            admitted: n,
            serving: m.serving,
        }
    };
    prop_assert_eq!(got, expected);
    m.note(match got {
        TickOutcome::Advanced { admitted: 0, .. } => "tick Advanced 0 (at capacity)".to_owned(),
        other => format!("tick {}", variant(&other)),
    });
    Ok(())
}

async fn hold(
    w: &World,
    m: &mut Model,
    user: usize,
    sched: usize,
    seat: u16,
) -> Result<(), TestCaseError> {
    let Some(adm) = m.admitted[user] else {
        return Ok(());
    };
    let got = w.booking.hold(&adm, w.schedule(sched), seat_no(seat)).await;
    let why = m.hold_refusals(user, &adm, sched, seat);
    if !why.is_empty() {
        expect_refusal(&got, &why)?;
        if let Err(e) = &got {
            m.note(format!("hold {}", variant(e)));
            if why.len() == 1 {
                m.note(format!("hold {} alone", variant(e)));
            }
        }
        return Ok(());
    }
    let h = got.map_err(|e| fail(format!("the hold must succeed, got {e:?}")))?;
    prop_assert_eq!(h.user, w.users[user]);
    prop_assert_eq!(h.schedule, w.schedule(sched));
    prop_assert_eq!(h.seat, seat_no(seat));
    prop_assert_eq!(h.price, amount(PRICES[usize::from(seat) - 1]));
    prop_assert_eq!(h.created_at, ts(m.now));
    // A hold never outlives its show nor its session: it lapses at the start, or
    // when the session ends, at the latest.
    let session_end = m
        .entry(adm.seq().get())
        .expires_at
        .ok_or_else(|| fail("a hold was taken in a session never admitted"))?;
    let until = (m.now + HOLD_TTL_MS)
        .min(T0 + STARTS_MS[sched])
        .min(session_end);
    prop_assert_eq!(h.expires_at, ts(until));
    prop_assert_eq!(h.state, HoldState::Held);
    prop_assert!(m.reservations.iter().all(|r| r.id != h.id));
    m.reservations.push(ResM {
        id: h.id,
        user,
        sched,
        seat,
        price: h.price.minor_units(),
        expires_at: h.expires_at.as_millis(),
        state: HoldState::Held,
    });
    m.note("hold ok");
    Ok(())
}

async fn cancel(w: &World, m: &mut Model, user: usize, r: usize) -> Result<(), TestCaseError> {
    let Some(adm) = m.admitted[user] else {
        return Ok(());
    };
    let got = w.booking.cancel_hold(&adm, m.reservations[r].id).await;
    let mut why = Vec::new();
    if m.reservations[r].user != user {
        why.push(CancelError::NotYours);
    }
    match m.res_state(r) {
        HoldState::Held => {}
        s => why.push(CancelError::NotHeld(s)),
    }
    if !why.is_empty() {
        expect_refusal(&got, &why)?;
        if let Err(e) = &got {
            m.note(format!("cancel {}", variant(e)));
            if why.len() == 1 {
                m.note(format!("cancel {} alone", variant(e)));
            }
        }
        return Ok(());
    }
    let h = got.map_err(|e| fail(format!("the cancel must succeed, got {e:?}")))?;
    prop_assert_eq!(h.id, m.reservations[r].id);
    prop_assert_eq!(h.state, HoldState::Cancelled);
    m.reservations[r].state = HoldState::Cancelled;
    m.note("cancel ok");
    Ok(())
}

async fn charge(
    w: &World,
    m: &mut Model,
    user: usize,
    a: i64,
    k: Option<u8>,
) -> Result<(), TestCaseError> {
    m.last_charge[user] = Some((a, k));
    let got = w.booking.charge(w.users[user], amount(a), k.map(key)).await;
    let mut why = Vec::new();
    if a > MAX_CHARGE {
        why.push(ChargeError::AboveMaxCharge {
            max: amount(MAX_CHARGE),
        });
    }
    let first = k.and_then(|k| m.charge_keys.get(&(user, k)).cloned());
    match &first {
        Some(first) if first.amount == amount(a) && why.is_empty() => {
            // A retry: the first receipt, nothing added.
            let receipt = got.map_err(|e| fail(format!("a retry must replay, got {e:?}")))?;
            prop_assert!(receipt.replayed);
            prop_assert_eq!(&receipt.entry, first);
            m.note("charge replayed");
            return Ok(());
        }
        Some(_) => why.push(ChargeError::KeyReused),
        None if m.balance[user] + a > MAX_BALANCE => why.push(ChargeError::BalanceLimit {
            balance: money(m.balance[user]),
            max: money(MAX_BALANCE),
        }),
        None => {}
    }
    if !why.is_empty() {
        expect_refusal(&got, &why)?;
        if let Err(e) = &got {
            m.note(format!("charge {}", variant(e)));
            if why.len() == 1 {
                m.note(format!("charge {} alone", variant(e)));
            }
        }
        return Ok(());
    }
    let receipt = got.map_err(|e| fail(format!("the charge must succeed, got {e:?}")))?;
    let after = m.balance[user] + a;
    let e = &receipt.entry;
    prop_assert!(!receipt.replayed);
    prop_assert_eq!(e.user, w.users[user]);
    prop_assert_eq!(e.kind, LedgerKind::Charge);
    prop_assert_eq!(e.amount, amount(a));
    prop_assert_eq!(e.balance_after, money(after));
    prop_assert_eq!(e.at, ts(m.now));
    prop_assert_eq!(&e.key, &k.map(key));
    m.balance[user] = after;
    m.ledger[user].push(RowM {
        kind: LedgerKind::Charge,
        amount: a,
        balance_after: after,
        at: m.now,
        key: k.map(key),
    });
    if let Some(k) = k {
        m.charge_keys.insert((user, k), receipt.entry);
    }
    m.note("charge ok");
    Ok(())
}

async fn pay(
    w: &World,
    m: &mut Model,
    user: usize,
    seq: u64,
    rs: Vec<usize>,
    k: Option<u8>,
) -> Result<(), TestCaseError> {
    m.last_pay[user] = Some((seq, rs.clone(), k));
    let (token, claims) = (m.entry(seq).token.clone(), m.entry(seq).claims);
    let ids: Vec<ReservationId> = rs.iter().map(|r| m.reservations[*r].id).collect();
    let several = ids.len() > 1;
    let got = w.booking.pay_all(&token, &ids, k.map(key)).await;
    let tag = if several { "pay all" } else { "pay" };

    // A key this user already paid with: the first result for the same
    // reservations, a refusal for others. Nothing else is looked at.
    if let Some(first) = k.and_then(|k| m.pay_keys.get(&(user, k)).cloned()) {
        if first.pays_exactly(&ids) {
            let receipt = got.map_err(|e| fail(format!("a retry must replay, got {e:?}")))?;
            prop_assert!(receipt.replayed);
            prop_assert_eq!(&receipt.payment, &first);
            m.note(format!("{tag} replayed"));
        } else {
            prop_assert_eq!(got, Err(PayError::KeyReused));
            m.note(format!("{tag} KeyReused"));
        }
        return Ok(());
    }

    // The queue gate runs first, with its show-up.
    let gate = m.gate(seq);
    if !matches!(gate, GateM::Pass { .. }) {
        let Err(PayError::Gate(g)) = &got else {
            return Err(fail(format!(
                "pay: the gate must refuse with {gate:?}, got {got:?}"
            )));
        };
        check_gate(&Err(g.clone()), gate, &claims)?;
        m.note(format!("{tag} Gate {}", variant(&gate)));
        return Ok(());
    }

    // Each reservation in the order asked: the first with a reason refuses all.
    for &r in &rs {
        let res = m.reservations[r].clone();
        let mut why = Vec::new();
        if res.user != user {
            why.push(PayError::NotYours);
        }
        match m.res_state(r) {
            HoldState::Held => {}
            HoldState::Paid => why.push(PayError::AlreadyPaid),
            HoldState::Cancelled => why.push(PayError::Cancelled),
            // Late, and the seat has been sold since: that is what the refusal says.
            HoldState::Expired if m.sold.contains_key(&(res.sched, res.seat)) => {
                why.push(PayError::SeatSold)
            }
            HoldState::Expired => why.push(PayError::HoldExpired),
        }
        if why.is_empty() {
            continue;
        }
        if several {
            let why: Vec<PayError> = why
                .into_iter()
                .map(|e| PayError::Reservation {
                    reservation: res.id,
                    error: Box::new(e),
                })
                .collect();
            expect_refusal(&got, &why)?;
            if let Err(e) = &got {
                m.note(format!("pay all {}", variant(e.cause())));
            }
            return Ok(());
        }
        let balance_too = m.balance[user] < res.price;
        if balance_too {
            why.push(PayError::InsufficientBalance {
                balance: money(m.balance[user]),
                price: amount(res.price),
            });
        }
        expect_refusal(&got, &why)?;
        if let Err(e) = &got {
            m.note(format!("pay {}", variant(e)));
            if why.len() == 1 {
                m.note(format!("pay {} alone", variant(e)));
            }
        }
        return Ok(());
    }
    let total: i64 = rs.iter().map(|r| m.reservations[*r].price).sum();
    if m.balance[user] < total {
        let why = PayError::InsufficientBalance {
            balance: money(m.balance[user]),
            price: amount(total),
        };
        prop_assert_eq!(got, Err(why));
        m.note(format!("{tag} InsufficientBalance"));
        if !several {
            m.note("pay InsufficientBalance alone");
        }
        return Ok(());
    }

    let receipt = got.map_err(|e| fail(format!("the payment must succeed, got {e:?}")))?;
    let p = &receipt.payment;
    let first = m.reservations[rs[0]].clone();
    prop_assert!(!receipt.replayed);
    prop_assert_eq!(p.reservation, ids[0]);
    prop_assert_eq!(p.user, w.users[user]);
    prop_assert_eq!(p.schedule, w.schedule(first.sched));
    prop_assert_eq!(p.seat, seat_no(first.seat));
    prop_assert_eq!(p.amount, amount(total));
    prop_assert_eq!(p.paid_at, ts(m.now));
    prop_assert_eq!(&p.key, &k.map(key));
    prop_assert!(
        m.payments.iter().all(|q| q.id != p.id),
        "a fresh payment id"
    );
    prop_assert_eq!(p.seats.len(), rs.len(), "one seat per reservation");
    for (seat, &r) in p.seats.iter().zip(&rs) {
        let res = &m.reservations[r];
        prop_assert_eq!(seat.reservation, res.id);
        prop_assert_eq!(seat.schedule, w.schedule(res.sched));
        prop_assert_eq!(seat.seat, seat_no(res.seat));
        prop_assert_eq!(seat.price, amount(res.price));
    }
    let after = m.balance[user] - total;
    m.balance[user] = after;
    m.ledger[user].push(RowM {
        kind: LedgerKind::Payment(p.id),
        amount: total,
        balance_after: after,
        at: m.now,
        key: None,
    });
    for &r in &rs {
        m.reservations[r].state = HoldState::Paid;
        let res = &m.reservations[r];
        m.sold.insert((res.sched, res.seat), r);
    }
    m.entry_mut(seq).state = EntryState::Done;
    // The session ended, and with it the user's other holds: they lapse now.
    for other in 0..m.reservations.len() {
        if m.reservations[other].user == user && m.res_live(other) {
            m.reservations[other].expires_at = m.now;
            m.note("pay released another hold");
        }
    }
    if let Some(k) = k {
        m.pay_keys.insert((user, k), p.clone());
    }
    m.payments.push(p.clone());
    m.note(format!("{tag} ok"));
    after_payment(w, m, user, seq, k, &receipt.payment).await
}

/// I5 and I6 right after a successful payment: a retry with the key replays it and
/// charges nothing; the token can neither pay again nor pass the gate; an
/// `Admitted` of the ended session can no longer hold.
async fn after_payment(
    w: &World,
    m: &mut Model,
    user: usize,
    seq: u64,
    k: Option<u8>,
    first: &Payment,
) -> Result<(), TestCaseError> {
    let uid = w.users[user];
    let token = m.entry(seq).token.clone();
    let balance = money(m.balance[user]);
    prop_assert_eq!(w.booking.balance(uid).await.map_err(storage)?, balance);

    let ids: Vec<ReservationId> = first.seats.iter().map(|s| s.reservation).collect();
    if let Some(k) = k {
        let again = w.booking.pay_all(&token, &ids, Some(key(k))).await;
        let again = again.map_err(|e| fail(format!("I5: a retry must replay, got {e:?}")))?;
        prop_assert!(again.replayed, "I5: the retry is a replay");
        prop_assert_eq!(
            &again.payment,
            first,
            "I5: the retry returns the first payment"
        );
        prop_assert_eq!(
            w.booking.balance(uid).await.map_err(storage)?,
            balance,
            "I5: a retry charges nothing"
        );
        m.note("I5 retry replayed");
    }

    let again = w.booking.pay_all(&token, &ids, None).await;
    prop_assert_eq!(
        again,
        Err(PayError::Gate(GateError::Ended)),
        "I5/I6: the token cannot pay again"
    );
    prop_assert_eq!(
        w.booking.balance(uid).await.map_err(storage)?,
        balance,
        "I5: nothing more is charged"
    );
    prop_assert_eq!(
        w.booking.gate(&token).await,
        Err(GateError::Ended),
        "I6: the gate refuses a paid token"
    );

    if let Some(adm) = m.admitted[user].filter(|a| a.seq().get() == seq) {
        let (sched, seat) = m.most_holdable_seat();
        let why = m.hold_refusals(user, &adm, sched, seat);
        prop_assert!(why.contains(&HoldError::SessionEnded));
        let got = w.booking.hold(&adm, w.schedule(sched), seat_no(seat)).await;
        expect_refusal(&got, &why).map_err(|e| fail(format!("I6: {e}")))?;
        m.note("I6 hold refused after payment");
    }
    Ok(())
}

async fn sweep(w: &World, m: &mut Model) -> Result<(), TestCaseError> {
    let now = m.now;
    let before = all_reservations(w).await?;
    let unrecorded = |hs: &[Hold]| {
        hs.iter()
            .filter(|h| h.state == HoldState::Held && ts(now) >= h.expires_at)
            .count() as u64
    };
    let n_holds = unrecorded(&before);
    let lapsed: Vec<usize> = (0..m.reservations.len())
        .filter(|r| m.reservations[*r].state == HoldState::Held && !m.res_live(*r))
        .collect();
    let lapsed_sessions: Vec<u64> = (1..=m.entries.len() as u64)
        .filter(|s| {
            let e = m.entry(*s);
            e.state == EntryState::Live && e.expires_at.is_some_and(|t| t <= now)
        })
        .collect();

    let report = w.booking.sweep().await.map_err(storage)?;
    prop_assert_eq!(report.n_sessions_expired, lapsed_sessions.len() as u64);
    prop_assert_eq!(report.n_holds_expired, n_holds);
    prop_assert!(report.n_holds_expired <= lapsed.len() as u64);
    prop_assert_eq!(
        unrecorded(&all_reservations(w).await?),
        0,
        "the sweep records every lapsed hold"
    );

    for r in lapsed {
        m.reservations[r].state = HoldState::Expired;
    }
    for s in lapsed_sessions {
        m.entry_mut(s).state = EntryState::Expired;
    }
    if report.n_holds_expired > 0 {
        m.note("sweep recorded holds");
    }
    if report.n_sessions_expired > 0 {
        m.note("sweep recorded sessions");
    }
    Ok(())
}

// ---------------------------------------------------------------------------------
// Invariants, read through the public ports

async fn all_reservations(w: &World) -> Result<Vec<Hold>, TestCaseError> {
    let mut all = Vec::new();
    for u in &w.users {
        all.extend(
            w.booking
                .store()
                .reservations_of(*u, ALL)
                .await
                .map_err(storage)?,
        );
    }
    Ok(all)
}

async fn all_payments(w: &World) -> Result<Vec<Payment>, TestCaseError> {
    let mut all = Vec::new();
    for u in &w.users {
        all.extend(
            w.booking
                .store()
                .payments_of(*u, ALL)
                .await
                .map_err(storage)?,
        );
    }
    Ok(all)
}

async fn check_invariants(w: &World, m: &Model) -> Result<(), TestCaseError> {
    prop_assert_eq!(w.booking.clock().now(), ts(m.now));
    check_queue(w, m).await?;
    check_seats(w, m).await?;
    check_money(w, m).await
}

/// I3 (first come, first served) and I4 (capacity), and the queue against the model.
async fn check_queue(w: &World, m: &Model) -> Result<(), TestCaseError> {
    let store = w.booking.store();
    let now = ts(m.now);
    let c = store.counters().await.map_err(storage)?;
    prop_assert_eq!(c.last_seq, m.entries.len() as u64);
    prop_assert_eq!(c.serving, m.serving);
    prop_assert_eq!(c.paused, m.paused);
    prop_assert_eq!(c.last_tick_at, m.last_tick_at.map(ts));

    // I3: sequences 1..=last_seq, no gap; the admitted ones are a prefix, admitted
    // in issue order.
    let mut waiting_seen = false;
    let mut last_admitted = None;
    for seq in 1..=c.last_seq {
        let e = store
            .entry(QueueSeq::new(seq).unwrap())
            .await
            .map_err(storage)?
            .ok_or_else(|| fail(format!("I3: sequence {seq} is missing")))?;
        prop_assert_eq!(e.seq.get(), seq);
        match e.admitted_at {
            Some(at) => {
                prop_assert!(
                    !waiting_seen,
                    "I3: {} admitted while an earlier one waits",
                    seq
                );
                prop_assert!(
                    last_admitted <= Some(at),
                    "I3: {} admitted before an earlier sequence",
                    seq
                );
                last_admitted = Some(at);
            }
            None => waiting_seen = true,
        }
        prop_assert_eq!(
            e.admitted_at.is_some(),
            seq <= c.serving,
            "I3: admitted exactly up to the serving counter"
        );
        let me = m.entry(seq);
        prop_assert_eq!(e.user, w.users[me.user]);
        prop_assert_eq!(e.token_id, me.claims.token_id);
        prop_assert_eq!(e.issued_at, me.claims.issued_at);
        prop_assert_eq!(e.state, me.state, "entry {}", seq);
        prop_assert_eq!(e.admitted_at, me.admitted_at.map(ts), "entry {}", seq);
        prop_assert_eq!(e.seen_at, me.seen_at.map(ts), "entry {}", seq);
        prop_assert_eq!(e.expires_at, me.expires_at.map(ts), "entry {}", seq);
    }
    let next = QueueSeq::new(c.last_seq + 1).unwrap();
    prop_assert!(store.entry(next).await.map_err(storage)?.is_none());

    // I4: never more active users than the cap.
    let n_active = store.count_active(now).await.map_err(storage)?;
    prop_assert!(n_active <= CAP, "I4: {} active, cap {}", n_active, CAP);
    prop_assert_eq!(n_active, m.n_active());

    // A user holds one place at most; the poll of the newest token agrees.
    for user in 0..N_USERS {
        let seqs = m.seqs_of(user);
        let live = seqs.iter().filter(|s| m.entry(**s).live_at(m.now)).count();
        prop_assert!(live <= 1, "user {} has {} live places", user, live);
        if let Some(seq) = seqs.last() {
            let view = w
                .booking
                .queue_status(&m.entry(*seq).token)
                .await
                .map_err(storage)?;
            prop_assert_eq!(view.claims, m.entry(*seq).claims);
            if let QueueStatus::Waiting { eta, .. } = view.status {
                prop_assert!(eta.is_some(), "a rate policy always gives an ETA");
            }
            prop_assert_eq!(without_eta(view.status), m.status(*seq));
        }
    }
    Ok(())
}

/// I1 (one seat, one owner) and I5 (pay once), and seats, holds and sales against
/// the model.
async fn check_seats(w: &World, m: &Model) -> Result<(), TestCaseError> {
    let store = w.booking.store();
    let now = ts(m.now);
    let holds = all_reservations(w).await?;
    let payments = all_payments(w).await?;
    let model_res: HashMap<ReservationId, usize> = (0..m.reservations.len())
        .map(|r| (m.reservations[r].id, r))
        .collect();

    // Every reservation, as the model knows it.
    prop_assert_eq!(holds.len(), m.reservations.len());
    for h in &holds {
        let r = *model_res
            .get(&h.id)
            .ok_or_else(|| fail(format!("unknown reservation {h:?}")))?;
        let res = &m.reservations[r];
        prop_assert_eq!(h.user, w.users[res.user]);
        prop_assert_eq!(h.schedule, w.schedule(res.sched));
        prop_assert_eq!(h.seat, seat_no(res.seat));
        prop_assert_eq!(h.price, amount(res.price));
        prop_assert_eq!(h.expires_at, ts(res.expires_at));
        prop_assert_eq!(h.state_at(now), m.res_state(r), "reservation {:?}", h.id);
    }

    // I5: a reservation is paid at most once, by its holder, at its price; I1: no
    // seat is in two payments.
    let mut paid = HashSet::new();
    let mut sold = HashSet::new();
    let by_id: HashMap<ReservationId, &Hold> = holds.iter().map(|h| (h.id, h)).collect();
    for p in &payments {
        prop_assert!(!p.seats.is_empty(), "a payment has its seats");
        prop_assert_eq!(
            (p.seats[0].reservation, p.seats[0].schedule, p.seats[0].seat),
            (p.reservation, p.schedule, p.seat),
            "the payment names its first seat"
        );
        let total: i64 = p.seats.iter().map(|s| s.price.minor_units()).sum();
        prop_assert_eq!(total, p.amount.minor_units(), "I2: the total of its seats");
        for seat in &p.seats {
            prop_assert!(
                paid.insert(seat.reservation),
                "I5: reservation paid twice: {:?}",
                p
            );
            prop_assert!(
                sold.insert((seat.schedule, seat.seat)),
                "I1: seat sold twice: {:?}",
                p
            );
            let h = by_id
                .get(&seat.reservation)
                .ok_or_else(|| fail(format!("payment of an unknown reservation: {p:?}")))?;
            prop_assert_eq!(h.state, HoldState::Paid, "I5: a paid reservation says Paid");
            prop_assert_eq!(h.user, p.user, "I5: only the holder pays");
            prop_assert_eq!((h.schedule, h.seat), (seat.schedule, seat.seat));
            prop_assert_eq!(h.price, seat.price);
            prop_assert!(p.paid_at < h.expires_at, "I5: paid before the hold lapsed");
        }
    }
    prop_assert_eq!(payments.len(), m.payments.len());
    for p in &m.payments {
        prop_assert!(payments.contains(p), "payment {:?} is lost", p);
    }
    prop_assert_eq!(
        holds.iter().filter(|h| h.state == HoldState::Paid).count(),
        paid.len(),
        "every paid reservation has a payment"
    );

    // I1 seat by seat: at most one live hold or one sale, as the model says.
    let live_ids: HashSet<ReservationId> = w
        .booking
        .live_holds()
        .await
        .map_err(storage)?
        .iter()
        .map(|h| h.id)
        .collect();
    let live: Vec<&Hold> = holds.iter().filter(|h| h.is_live_at(now)).collect();
    prop_assert_eq!(
        &live_ids,
        &live.iter().map(|h| h.id).collect::<HashSet<_>>(),
        "live_holds lists exactly the live holds"
    );
    let sales = w.booking.sales(w.concert).await.map_err(storage)?;
    prop_assert_eq!(sales.len(), 2);
    let mut bookable = Vec::new();
    for (d, sid) in w.schedules.iter().enumerate() {
        let seats = store.seats(*sid, now).await.map_err(storage)?;
        prop_assert_eq!(seats.len(), usize::from(N_SEATS));
        let (mut n_free, mut n_held, mut n_sold, mut revenue) = (0, 0, 0, 0);
        for seat in &seats {
            let n = seat.no.get();
            prop_assert_eq!(seat.price, amount(PRICES[usize::from(n) - 1]));
            let live_here: Vec<&&Hold> = live
                .iter()
                .filter(|h| h.schedule == *sid && h.seat == seat.no)
                .collect();
            let is_sold = seat.state == SeatState::Sold;
            prop_assert!(
                live_here.len() + usize::from(is_sold) <= 1,
                "I1: schedule {} seat {}: {} live holds, sold {}",
                sid,
                n,
                live_here.len(),
                is_sold
            );
            prop_assert_eq!(
                is_sold,
                sold.contains(&(*sid, seat.no)),
                "I1: a seat is sold exactly when it has a payment"
            );
            if let SeatState::Held { until } = seat.state {
                prop_assert!(
                    live_here.len() == 1 && live_here[0].expires_at == until,
                    "I1: a held seat has its one live hold"
                );
            }
            let expected = if m.sold.contains_key(&(d, n)) {
                SeatState::Sold
            } else if let Some(r) = m.live_hold_on(d, n) {
                SeatState::Held {
                    until: ts(m.reservations[r].expires_at),
                }
            } else {
                SeatState::Free
            };
            prop_assert_eq!(seat.state, expected, "schedule {} seat {}", sid, n);
            match seat.state {
                SeatState::Free => n_free += 1,
                SeatState::Held { .. } => n_held += 1,
                SeatState::Sold => {
                    n_sold += 1;
                    revenue += seat.price.minor_units();
                }
            }
        }
        let s = sales[d];
        prop_assert_eq!(s.schedule.id, *sid);
        prop_assert_eq!(
            (s.n_free, s.n_held, s.n_sold, s.revenue),
            (n_free, n_held, n_sold, money(revenue))
        );
        if m.is_open(d) && n_free > 0 {
            bookable.push(*sid);
        }
    }
    let dates = w.booking.bookable_dates(w.concert).await.map_err(storage)?;
    prop_assert_eq!(
        dates.iter().map(|s| s.schedule.id).collect::<Vec<_>>(),
        bookable,
        "bookable dates: open, with a free seat"
    );
    Ok(())
}

/// I2: money is conserved, every change has its ledger row.
async fn check_money(w: &World, m: &Model) -> Result<(), TestCaseError> {
    let store = w.booking.store();
    for user in 0..N_USERS {
        let uid = w.users[user];
        let balance = store.balance(uid).await.map_err(storage)?;
        let mut ledger = store.ledger(uid, ALL).await.map_err(storage)?;
        ledger.reverse();
        let payments = store.payments_of(uid, ALL).await.map_err(storage)?;

        // The ledger replays to the balance, row by row. (A balance is a `Money`,
        // which cannot be negative; an overdraft would show here as a running sum
        // that no `balance_after` can equal.)
        let mut running = 0i64;
        let mut charged = 0i64;
        let mut debited: HashMap<PaymentId, i64> = HashMap::new();
        let mut last_id = None;
        for row in &ledger {
            prop_assert_eq!(row.user, uid);
            prop_assert!(last_id < Some(row.id), "I2: ledger ids increase");
            last_id = Some(row.id);
            running += row.delta();
            prop_assert_eq!(
                row.balance_after.minor_units(),
                running,
                "I2: balance_after of row {} of user {}",
                row.id,
                user
            );
            match row.kind {
                LedgerKind::Charge => charged += row.amount.minor_units(),
                LedgerKind::Payment(p) => {
                    prop_assert!(
                        debited.insert(p, row.amount.minor_units()).is_none(),
                        "I2: payment {} debited twice",
                        p
                    );
                }
            }
        }
        prop_assert_eq!(running, balance.minor_units(), "I2: sum of deltas");

        // balance = charges - payments, and each payment has its one ledger row.
        let paid: i64 = payments.iter().map(|p| p.amount.minor_units()).sum();
        prop_assert_eq!(balance.minor_units(), charged - paid, "I2: user {}", user);
        prop_assert_eq!(debited.len(), payments.len());
        for p in &payments {
            prop_assert_eq!(
                debited.get(&p.id).copied(),
                Some(p.amount.minor_units()),
                "I2: the ledger row of payment {}",
                p.id
            );
        }
        prop_assert!(balance <= money(MAX_BALANCE));

        // And the model agrees.
        prop_assert_eq!(balance, money(m.balance[user]), "balance of user {}", user);
        let rows: Vec<RowM> = ledger
            .iter()
            .map(|e| RowM {
                kind: e.kind,
                amount: e.amount.minor_units(),
                balance_after: e.balance_after.minor_units(),
                at: e.at.as_millis(),
                key: e.key.clone(),
            })
            .collect();
        prop_assert_eq!(&rows, &m.ledger[user], "ledger of user {}", user);
    }
    Ok(())
}

// ---------------------------------------------------------------------------------
// The tests

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Runs `ops` from a fresh world, checking every answer and every invariant after
/// every step; returns the model (with its outcome tally).
async fn run(ops: &[Op]) -> Result<Model, TestCaseError> {
    let w = World::new().await;
    let mut m = Model::new();
    check_invariants(&w, &m).await?;
    for (i, op) in ops.iter().enumerate() {
        let at = |e: TestCaseError| fail(format!("step {i} {op:?}: {e}"));
        step(&w, &mut m, op).await.map_err(at)?;
        check_invariants(&w, &m).await.map_err(at)?;
    }
    Ok(m)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// Every answer agrees with the model, and I1 (one seat, one owner), I2 (money
    /// conserved), I3 (first come, first served), I4 (capacity), I5 (pay once) and
    /// I6 (token ends at payment) hold after every step.
    #[test]
    fn invariants_i1_to_i6_hold_after_every_step(ops in ops()) {
        runtime().block_on(run(&ops))?;
    }
}

/// The generator is worth its salt: over a fixed set of sequences it reaches every
/// outcome the model predicts, so the invariants above are checked on states where
/// they could break.
#[test]
fn generated_sequences_reach_every_outcome() {
    const EXPECTED: &[&str] = &[
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
    let mut runner = TestRunner::deterministic();
    let strategy = ops();
    let rt = runtime();
    let mut seen: BTreeMap<String, u32> = BTreeMap::new();
    for _ in 0..400 {
        let ops = strategy.new_tree(&mut runner).unwrap().current();
        let m = rt.block_on(run(&ops)).unwrap();
        for (k, n) in m.seen {
            *seen.entry(k).or_default() += n;
        }
    }
    let missing: Vec<&&str> = EXPECTED
        .iter()
        .filter(|e| !seen.contains_key(**e))
        .collect();
    eprintln!("outcomes reached: {seen:#?}");
    assert!(
        missing.is_empty(),
        "never reached: {missing:?}\nreached: {seen:#?}"
    );
}
