//! Concurrency tests on the in-memory adapter: many real tokio tasks on a
//! multi-threaded runtime, released together by a barrier, with every outcome
//! counted exactly. Time comes from a [`ManualClock`]: nothing here sleeps.
//!
//! Each test is named after the rule it checks (see DESIGN.md §3: I1 one seat, one
//! owner; I2 money is conserved; I3 first come, first served; I5 pay once; I6 token
//! ends at payment; R1 the waiting-room token).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use booking_core::domain::{
    AdmissionPolicy, Amount, Concert, ConcertId, ConcertName, EntryState, Hold, HoldState,
    IdempotencyKey, LedgerEntry, LedgerKind, Money, NewConcert, NewSchedule, Payment, PaymentId,
    QueueCounters, QueueEntry, QueueSeq, ReservationId, Schedule, ScheduleId, ScheduleSummary,
    Seat, SeatCount, SeatNo, SeatPrices, SeatState, Timestamp, TokenId, UserId,
};
use booking_core::domain::{ClaimedWebhook, NewWebhook, Webhook, WebhookId};
use booking_core::ports::{
    Advance, CancelRepoError, CatalogRepo, ChargeRepoError, ChargeRequest, CreateScheduleError,
    HoldRepo, HoldRepoError, IssueRepoError, IssueRequest, NewHold, PayManyRepoError,
    PayManyRequest, PayRepoError, PayRequest, PaymentRepo, QueueRepo, WalletRepo,
};
use booking_core::ports::{WebhookFailure, WebhookRepo};
use booking_core::{
    Admitted, Booking, Clock, Config, GateError, HoldError, ManualClock, MemoryStore, QueueStatus,
    TickOutcome, TokenSigner,
};
use booking_core::{ChargeReceipt, Event, EventId, EventRepo, EventType, StoreError};
use chrono::NaiveDate;
use tokio::sync::Barrier;
use tokio::task::JoinSet;

/// 2026-01-01T00:00:00Z.
const START: Timestamp = Timestamp::from_millis(1_767_225_600_000);
const SECRET: &[u8] = b"concurrency tests: a secret of 32+ bytes";
/// The shortest tick interval a policy allows.
const TICK: Duration = Duration::from_millis(10);

/// One server instance: the engine over the shared in-memory store, reached
/// through [`Remote`].
type Engine = Booking<Remote, ManualClock>;

fn engine_on(store: MemoryStore, clock: ManualClock) -> Engine {
    let signer = TokenSigner::new(SECRET).unwrap();
    Booking::new(Remote::new(store), clock, signer, Config::default()).unwrap()
}

fn engine() -> (Arc<Engine>, ManualClock) {
    let clock = ManualClock::new(START);
    (
        Arc::new(engine_on(MemoryStore::new(), clock.clone())),
        clock,
    )
}

fn amount(n: i64) -> Amount {
    Amount::new(n).unwrap()
}

fn seat(n: i64) -> SeatNo {
    SeatNo::new(n).unwrap()
}

/// A concert with one date, 30 days after [`START`], of `seats` seats at `price`.
async fn schedule(b: &Engine, seats: i64, price: i64) -> Schedule {
    let concert = b
        .create_concert(ConcertName::new("Concurrency Night").unwrap())
        .await
        .unwrap();
    let new = NewSchedule::new(
        concert.id,
        START.plus(Duration::from_secs(30 * 86_400)),
        SeatCount::new(seats).unwrap(),
        SeatPrices::Uniform(amount(price)),
    )
    .unwrap();
    b.create_schedule(new).await.unwrap()
}

/// Issues a token to each user, admits everyone with one tick of a policy that
/// admits everyone, and passes each token through the gate.
async fn admit_all(b: &Engine, users: &[UserId]) -> Vec<Admitted> {
    let mut tokens = Vec::with_capacity(users.len());
    for user in users {
        tokens.push(b.issue_token(*user).await.unwrap().token);
    }
    b.set_policy(AdmissionPolicy::rate(100_000, TICK).unwrap())
        .await
        .unwrap();
    let n = users.len() as u64;
    assert_eq!(
        b.tick().await.unwrap(),
        TickOutcome::Advanced {
            admitted: n,
            serving: n
        }
    );
    let mut admitted = Vec::with_capacity(tokens.len());
    for token in &tokens {
        admitted.push(b.gate(token).await.unwrap());
    }
    admitted
}

/// One admitted user holding every seat of a fresh `n_seats`-seat date at `price`,
/// all in the one session the gate gave them, taken through the port with a hold
/// cap of 1,000; and the user's balance charged with `balance`.
struct OneUserManyHolds {
    booking: Arc<Engine>,
    clock: ManualClock,
    user: UserId,
    token: String,
    session: QueueSeq,
    schedule: Schedule,
    holds: Vec<Hold>,
}

async fn one_user_many_holds(n_seats: i64, price: i64, balance: i64) -> OneUserManyHolds {
    let (booking, clock) = engine();
    let schedule = schedule(&booking, n_seats, price).await;
    let user = UserId::random();
    let token = booking.issue_token(user).await.unwrap().token;
    booking
        .set_policy(AdmissionPolicy::rate(100_000, TICK).unwrap())
        .await
        .unwrap();
    assert!(matches!(
        booking.tick().await.unwrap(),
        TickOutcome::Advanced { admitted: 1, .. }
    ));
    let session = booking.gate(&token).await.unwrap().seq();
    let now = clock.now();
    let mut holds = Vec::with_capacity(n_seats as usize);
    for no in 1..=n_seats {
        let hold = booking
            .store()
            .hold(NewHold {
                id: ReservationId::random(),
                user,
                session,
                schedule: schedule.id,
                seat: seat(no),
                now,
                expires_at: now.plus(Duration::from_secs(3_600)),
                max_live_per_user: 1_000,
            })
            .await
            .unwrap();
        holds.push(hold);
    }
    booking.charge(user, amount(balance), None).await.unwrap();
    OneUserManyHolds {
        booking,
        clock,
        user,
        token,
        session,
        schedule,
        holds,
    }
}

/// SplitMix64: reproducible pseudo-random numbers without a dependency.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// The in-memory store behind a "network": every port call first yields to the
/// scheduler, as a call to a shared database would, then runs on the `MemoryStore`
/// unchanged. On its own a `MemoryStore` call never suspends, so a task runs from
/// one port call to the next without letting anyone in: a read and the write decided
/// on it (the ticker's counters and its compare-and-set, a gate and the hold after
/// it) run back to back, and hundreds of tasks mostly take turns. With the yield,
/// every port call is a point where the other tasks get in, as they would against
/// a database, and the conditional writes really are contended.
///
/// It also counts the reads of the queue counters.
#[derive(Clone)]
struct Remote(MemoryStore, Arc<AtomicU64>);

impl Remote {
    fn new(store: MemoryStore) -> Self {
        Remote(store, Arc::new(AtomicU64::new(0)))
    }

    fn counter_reads(&self) -> u64 {
        self.1.load(Ordering::Relaxed)
    }
}

macro_rules! remote_calls {
    ($(fn $name:ident(&self $(, $arg:ident: $ty:ty)*) -> $ret:ty;)*) => {
        $(
            async fn $name(&self $(, $arg: $ty)*) -> $ret {
                tokio::task::yield_now().await;
                self.0.$name($($arg),*).await
            }
        )*
    };
}

impl CatalogRepo for Remote {
    remote_calls! {
        fn create_concert(&self, new: NewConcert) -> Result<Concert, StoreError>;
        fn create_schedule(&self, new: NewSchedule) -> Result<Schedule, CreateScheduleError>;
        fn concerts(&self) -> Result<Vec<Concert>, StoreError>;
        fn concert(&self, id: ConcertId) -> Result<Option<Concert>, StoreError>;
        fn schedule(&self, id: ScheduleId) -> Result<Option<Schedule>, StoreError>;
        fn schedule_on(&self, concert: ConcertId, date: NaiveDate) -> Result<Option<Schedule>, StoreError>;
        fn schedule_summaries(&self, concert: ConcertId, now: Timestamp) -> Result<Vec<ScheduleSummary>, StoreError>;
        fn seats(&self, schedule: ScheduleId, now: Timestamp) -> Result<Vec<Seat>, StoreError>;
    }
}

impl QueueRepo for Remote {
    remote_calls! {
        fn issue(&self, req: IssueRequest) -> Result<QueueEntry, IssueRepoError>;
        fn entry(&self, seq: QueueSeq) -> Result<Option<QueueEntry>, StoreError>;
        fn count_active(&self, now: Timestamp) -> Result<u64, StoreError>;
        fn advance(&self, adv: Advance) -> Result<bool, StoreError>;
        fn show_up(&self, seq: QueueSeq, now: Timestamp, until: Timestamp) -> Result<Option<QueueEntry>, StoreError>;
        fn set_policy(&self, policy: AdmissionPolicy) -> Result<(), StoreError>;
        fn set_paused(&self, paused: bool) -> Result<(), StoreError>;
        fn expire_sessions(&self, now: Timestamp, limit: u32) -> Result<u64, StoreError>;
    }

    async fn counters(&self) -> Result<QueueCounters, StoreError> {
        self.1.fetch_add(1, Ordering::Relaxed);
        tokio::task::yield_now().await;
        self.0.counters().await
    }
}

impl HoldRepo for Remote {
    remote_calls! {
        fn hold(&self, req: NewHold) -> Result<Hold, HoldRepoError>;
        fn cancel(&self, id: ReservationId, user: UserId, now: Timestamp) -> Result<Hold, CancelRepoError>;
        fn reservation(&self, id: ReservationId) -> Result<Option<Hold>, StoreError>;
        fn reservations_of(&self, user: UserId, limit: u32) -> Result<Vec<Hold>, StoreError>;
        fn live_holds(&self, now: Timestamp, limit: u32) -> Result<Vec<Hold>, StoreError>;
        fn sweep_expired_holds(&self, now: Timestamp, limit: u32) -> Result<u64, StoreError>;
    }
}

impl WalletRepo for Remote {
    remote_calls! {
        fn charge(&self, req: ChargeRequest) -> Result<ChargeReceipt, ChargeRepoError>;
        fn balance(&self, user: UserId) -> Result<Money, StoreError>;
        fn ledger(&self, user: UserId, limit: u32) -> Result<Vec<LedgerEntry>, StoreError>;
    }
}

impl PaymentRepo for Remote {
    remote_calls! {
        fn pay(&self, req: PayRequest) -> Result<Payment, PayRepoError>;
        fn pay_many(&self, req: PayManyRequest) -> Result<Payment, PayManyRepoError>;
        fn payment_by_key(&self, user: UserId, key: &IdempotencyKey) -> Result<Option<Payment>, StoreError>;
        fn payments_of(&self, user: UserId, limit: u32) -> Result<Vec<Payment>, StoreError>;
    }
}

impl EventRepo for Remote {
    remote_calls! {
        fn relay_events(&self) -> Result<u64, StoreError>;
        fn events_after(&self, after: EventId, limit: u32, types: &[EventType]) -> Result<Vec<Event>, StoreError>;
        fn last_event_id(&self) -> Result<EventId, StoreError>;
        fn prune_events(&self, older_than: Timestamp, up_to: EventId) -> Result<u64, StoreError>;
    }
}

impl WebhookRepo for Remote {
    remote_calls! {
        fn add_webhook(&self, new: NewWebhook) -> Result<Webhook, StoreError>;
        fn webhooks(&self) -> Result<Vec<Webhook>, StoreError>;
        fn webhook(&self, id: WebhookId) -> Result<Option<Webhook>, StoreError>;
        fn remove_webhook(&self, id: WebhookId) -> Result<bool, StoreError>;
        fn claim_webhook(&self, holder: &str, now: Timestamp, lease_until: Timestamp, below: EventId) -> Result<Option<ClaimedWebhook>, StoreError>;
        fn advance_webhook(&self, id: WebhookId, holder: &str, cursor: EventId, now: Timestamp, lease_until: Timestamp) -> Result<bool, StoreError>;
        fn record_webhook_failure(&self, id: WebhookId, holder: &str, now: Timestamp, failure: WebhookFailure) -> Result<bool, StoreError>;
        fn release_webhook(&self, id: WebhookId, holder: &str, now: Timestamp, next_attempt_at: Timestamp) -> Result<bool, StoreError>;
        fn reset_webhook(&self, id: WebhookId, now: Timestamp) -> Result<Option<Webhook>, StoreError>;
        fn lowest_webhook_cursor(&self) -> Result<Option<EventId>, StoreError>;
    }
}

// ---------------------------------------------------------------------------------
// I1 one seat, one owner

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn i1_thousand_concurrent_holds_on_one_seat_have_exactly_one_winner() {
    const N: usize = 1_000;
    let (booking, _clock) = engine();
    let sched = schedule(&booking, 50, 10_000).await;
    let users: Vec<UserId> = (0..N).map(|_| UserId::random()).collect();
    let admitted = admit_all(&booking, &users).await;
    let contested = seat(17);

    let barrier = Arc::new(Barrier::new(N));
    let mut set = JoinSet::new();
    for who in admitted {
        let (booking, barrier) = (booking.clone(), barrier.clone());
        set.spawn(async move {
            barrier.wait().await;
            (who.user(), booking.hold(&who, sched.id, contested).await)
        });
    }
    let mut winners = Vec::new();
    let mut n_taken = 0;
    for (user, outcome) in set.join_all().await {
        match outcome {
            Ok(hold) => winners.push((user, hold)),
            Err(HoldError::SeatTaken(s)) if s == contested => n_taken += 1,
            Err(e) => panic!("unexpected hold outcome: {e:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one winner");
    assert_eq!(n_taken, N - 1, "everyone else is told the seat is taken");
    let (winner, hold) = winners[0];
    assert_eq!(hold.user, winner);
    assert_eq!((hold.schedule, hold.seat), (sched.id, contested));
    assert_eq!(hold.state, HoldState::Held);

    // The seat map: that one seat held until the winner's expiry, the rest free.
    let (_, seats) = booking.seats(sched.concert, sched.date()).await.unwrap();
    assert_eq!(seats.len(), 50);
    for s in &seats {
        let expected = if s.no == contested {
            SeatState::Held {
                until: hold.expires_at,
            }
        } else {
            SeatState::Free
        };
        assert_eq!(s.state, expected, "seat {}", s.no);
    }
    // The live claim on the seat is the winner's reservation and no other.
    assert_eq!(booking.live_holds().await.unwrap(), vec![hold]);
    assert_eq!(
        booking.store().reservation(hold.id).await.unwrap(),
        Some(hold)
    );
    for user in users.iter().filter(|u| **u != winner) {
        assert!(booking.reservations(*user).await.unwrap().is_empty());
    }
    let dates = booking.bookable_dates(sched.concert).await.unwrap();
    assert_eq!((dates[0].n_held, dates[0].n_free), (1, 49));
}

// ---------------------------------------------------------------------------------
// I2 money is conserved (debits)

/// 500 payments race on ONE balance that covers exactly 100 of them.
///
/// Why it is built this way: one user has at most one live queue entry
/// (`QueueRepo::issue`), every `PayRequest` must name an active session of the
/// payer, and a payment ends that session (I6). So 500 payments of one user can
/// never all be "in flight with a session" at once, and the rules allow at most one
/// success per session; firing 500 pays at a single session only tests I6 (see the
/// next test). Giving the balance to 500 different payers would not race on one
/// balance at all.
///
/// So each of 500 tasks owns one held reservation of the same user (held through
/// `HoldRepo::hold` with a cap of 1,000) and keeps trying to pay it: it takes the
/// user's current place with `QueueRepo::issue` (the live one, or a new one once a
/// payment has ended it), admits it with the compare-and-set `QueueRepo::advance`
/// when it is still waiting (the user is alone in this store, so nobody is passed),
/// and calls `PaymentRepo::pay` with that session. `SessionEnded` means another
/// task's payment ended the session first: go round again. A task stops at `Ok` or
/// at `InsufficientBalance`. All of these are ordinary calls within the port
/// contracts, and all 500 tasks hammer the same balance throughout; through
/// [`Remote`] every one of those calls is a point where the others get in.
///
/// Were the pay transaction not atomic (check the balance, then write it back
/// later), tasks that found the same session active and the balance sufficient
/// would all debit: more than 100 payments, a lost update of the balance, or a
/// negative one. The exact counts below (100 paid, 400 refused, balance 0, 100
/// payment ledger rows, 100 sessions ended) catch each of those: a copy of the
/// `MemoryStore` whose `pay` lets go of its lock between the checks and the writes
/// fails this test and the next one.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn i2_five_hundred_racing_payments_on_a_balance_covering_a_hundred_debit_exactly_a_hundred() {
    const N: usize = 500;
    const PRICE: i64 = 5_000;
    const COVERED: usize = 100;
    let fx = one_user_many_holds(N as i64, PRICE, PRICE * COVERED as i64).await;
    let store = fx.booking.store().clone();
    let user = fx.user;

    let barrier = Arc::new(Barrier::new(N));
    let mut set = JoinSet::new();
    for hold in &fx.holds {
        let (store, clock, barrier, reservation, seat) = (
            store.clone(),
            fx.clock.clone(),
            barrier.clone(),
            hold.id,
            (hold.schedule, hold.seat),
        );
        set.spawn(async move {
            barrier.wait().await;
            pay_in_whatever_session(&store, &clock, user, reservation, seat).await
        });
    }
    let mut paid: Vec<Payment> = Vec::new();
    let mut n_refused = 0;
    for outcome in set.join_all().await {
        match outcome {
            Ok(p) => paid.push(p),
            Err(PayRepoError::InsufficientBalance { balance, price }) => {
                assert!(
                    balance < price.as_money(),
                    "refused with {balance} >= {price}"
                );
                n_refused += 1;
            }
            Err(e) => panic!("unexpected payment outcome: {e:?}"),
        }
    }
    assert_eq!(
        paid.len(),
        COVERED,
        "exactly the payments the balance covers"
    );
    assert_eq!(
        n_refused,
        N - COVERED,
        "every other one: insufficient balance"
    );
    assert_eq!(store.balance(user).await.unwrap(), Money::ZERO);

    let ledger = store.ledger(user, 10_000).await.unwrap();
    let payment_rows: Vec<_> = ledger
        .iter()
        .filter(|e| matches!(e.kind, LedgerKind::Payment(_)))
        .collect();
    assert_eq!(payment_rows.len(), COVERED, "one ledger row per payment");
    assert_eq!(ledger.len(), COVERED + 1, "plus the one charge");
    assert_eq!(ledger.iter().map(|e| e.delta()).sum::<i64>(), 0);
    let paid_ids: BTreeSet<PaymentId> = paid.iter().map(|p| p.id).collect();
    let row_ids: BTreeSet<PaymentId> = payment_rows
        .iter()
        .filter_map(|e| match e.kind {
            LedgerKind::Payment(id) => Some(id),
            LedgerKind::Charge => None,
        })
        .collect();
    assert_eq!(paid_ids, row_ids, "each payment has its own ledger row");
    assert_eq!(
        store.payments_of(user, 10_000).await.unwrap().len(),
        COVERED
    );

    // Every debit saw the balance the previous one left: in ledger order, the
    // balances after step down by exactly one price each.
    let mut rows = ledger.clone();
    rows.sort_by_key(|e| e.id);
    for (i, row) in rows.iter().enumerate() {
        let expected = PRICE * (COVERED - i) as i64;
        assert_eq!(row.balance_after.minor_units(), expected, "ledger row {i}");
    }

    // Seats, reservations and sessions agree: 100 sold and paid, 400 still held in
    // the last session (a payment released the holds of the session it ended; they
    // were held again in the next one), 100 sessions ended by a payment, and one
    // session left that paid nothing.
    let mut by_state: HashMap<HoldState, usize> = HashMap::new();
    for h in store.reservations_of(user, 10_000).await.unwrap() {
        *by_state.entry(h.state_at(fx.clock.now())).or_default() += 1;
    }
    assert_eq!(by_state.get(&HoldState::Paid), Some(&COVERED));
    assert_eq!(by_state.get(&HoldState::Held), Some(&(N - COVERED)));
    let (_, seats) = fx
        .booking
        .seats(fx.schedule.concert, fx.schedule.date())
        .await
        .unwrap();
    let n_sold = seats.iter().filter(|s| s.state == SeatState::Sold).count();
    assert_eq!(n_sold, COVERED);
    let counters = store.counters().await.unwrap();
    assert_eq!(counters.last_seq, COVERED as u64 + 1);
    let mut n_done = 0;
    for seq in 1..=counters.last_seq {
        let entry = store
            .entry(QueueSeq::new(seq).unwrap())
            .await
            .unwrap()
            .unwrap();
        n_done += usize::from(entry.state == EntryState::Done);
    }
    assert_eq!(n_done, COVERED, "each payment ended exactly one session");
}

/// Pays for seat `seat` in the user's current session: first the hold
/// `reservation`; when another payment ended the session (and with it released the
/// hold), it takes and admits a new place and holds the seat again in it. Returns
/// the first answer of a payment that is not `SessionEnded` or a released hold.
async fn pay_in_whatever_session(
    store: &Remote,
    clock: &ManualClock,
    user: UserId,
    reservation: ReservationId,
    (schedule, seat): (ScheduleId, SeatNo),
) -> Result<Payment, PayRepoError> {
    let mut current = Some(reservation);
    // Every round of a task follows some progress of the whole: a payment (at most
    // 100), an advance (at most one per session) or a lost compare-and-set against
    // one, so a task needs a few hundred rounds at most. A bound far above that
    // turns a store that stops making progress into a failure rather than a hang.
    for _ in 0..10_000 {
        let now = clock.now();
        let entry = store
            .issue(IssueRequest {
                user,
                token_id: TokenId::random(),
                now,
                max_waiting: 1_000_000,
            })
            .await
            .unwrap();
        if entry.expires_at.is_none() {
            // Waiting: admit it. Losing the compare-and-set to another task is fine.
            let c = store.counters().await.unwrap();
            if c.serving < entry.seq.get() {
                store
                    .advance(Advance {
                        expected_version: c.version,
                        serving: c.last_seq,
                        now,
                        admitted_until: now.plus(Duration::from_secs(60)),
                        admit_rate_milli: c.admit_rate_milli,
                    })
                    .await
                    .unwrap();
            }
            tokio::task::yield_now().await;
            continue;
        }
        let reservation = match current {
            Some(id) => id,
            None => {
                let held = store
                    .hold(NewHold {
                        id: ReservationId::random(),
                        user,
                        session: entry.seq,
                        schedule,
                        seat,
                        now,
                        expires_at: now.plus(Duration::from_secs(3_600)),
                        max_live_per_user: 1_000,
                    })
                    .await;
                match held {
                    Ok(h) => *current.insert(h.id),
                    Err(HoldRepoError::SessionEnded) => {
                        tokio::task::yield_now().await;
                        continue;
                    }
                    Err(e) => panic!("unexpected hold outcome: {e:?}"),
                }
            }
        };
        let req = PayRequest {
            id: PaymentId::random(),
            reservation,
            user,
            session: entry.seq,
            key: None,
            now,
        };
        match store.pay(req).await {
            Err(PayRepoError::SessionEnded) => tokio::task::yield_now().await,
            // Another payment ended the session and released this hold.
            Err(PayRepoError::NotHeld(HoldState::Expired)) => {
                current = None;
                tokio::task::yield_now().await;
            }
            other => return other,
        }
    }
    panic!("no payment outcome after 10,000 rounds: the store stopped making progress");
}

// ---------------------------------------------------------------------------------
// I5 pay once / I6 token ends at payment

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn i6_five_hundred_concurrent_payments_in_one_session_succeed_exactly_once() {
    const N: usize = 500;
    const PRICE: i64 = 5_000;
    const BALANCE: i64 = PRICE * 100;
    let fx = one_user_many_holds(N as i64, PRICE, BALANCE).await;
    let store = fx.booking.store().clone();
    let (user, session) = (fx.user, fx.session);
    let now = fx.clock.now();

    let barrier = Arc::new(Barrier::new(N));
    let mut set = JoinSet::new();
    for hold in &fx.holds {
        let (store, barrier, reservation) = (store.clone(), barrier.clone(), hold.id);
        set.spawn(async move {
            barrier.wait().await;
            let req = PayRequest {
                id: PaymentId::random(),
                reservation,
                user,
                session,
                key: None,
                now,
            };
            store.pay(req).await
        });
    }
    let mut paid = Vec::new();
    let mut n_ended = 0;
    for outcome in set.join_all().await {
        match outcome {
            Ok(p) => paid.push(p),
            // The payment ended the session and released the session's other holds.
            Err(PayRepoError::SessionEnded | PayRepoError::NotHeld(HoldState::Expired)) => {
                n_ended += 1
            }
            Err(e) => panic!("unexpected payment outcome: {e:?}"),
        }
    }
    assert_eq!(paid.len(), 1, "one session pays once");
    assert_eq!(
        n_ended,
        N - 1,
        "every other payment finds the session ended, or its hold released with it"
    );
    let payment = &paid[0];
    assert_eq!(payment.amount, amount(PRICE));

    assert_eq!(
        store.balance(user).await.unwrap().minor_units(),
        BALANCE - PRICE,
        "exactly one price debited"
    );
    let ledger = store.ledger(user, 10_000).await.unwrap();
    assert_eq!(ledger.len(), 2, "the charge and one payment");
    assert_eq!(ledger[0].kind, LedgerKind::Payment(payment.id));
    assert_eq!(store.payments_of(user, 10_000).await.unwrap(), paid);

    let mut by_state: HashMap<HoldState, usize> = HashMap::new();
    for h in store.reservations_of(user, 10_000).await.unwrap() {
        *by_state.entry(h.state_at(fx.clock.now())).or_default() += 1;
    }
    assert_eq!(by_state.get(&HoldState::Paid), Some(&1));
    assert_eq!(
        by_state.get(&HoldState::Expired),
        Some(&(N - 1)),
        "the session's other holds were released by its payment"
    );
    assert_eq!(by_state.get(&HoldState::Held), None);
    let (_, seats) = fx
        .booking
        .seats(fx.schedule.concert, fx.schedule.date())
        .await
        .unwrap();
    let sold: Vec<SeatNo> = seats
        .iter()
        .filter(|s| s.state == SeatState::Sold)
        .map(|s| s.no)
        .collect();
    assert_eq!(sold, vec![payment.seat]);

    // The session is over: the token no longer passes the gate.
    let entry = store.entry(session).await.unwrap().unwrap();
    assert_eq!(entry.state, EntryState::Done);
    assert_eq!(fx.booking.gate(&fx.token).await, Err(GateError::Ended));
}

// ---------------------------------------------------------------------------------
// I3 first come, first served

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn i3_thousand_concurrent_token_requests_get_gapless_sequences_and_are_admitted_in_order() {
    const N: u64 = 1_000;
    const BATCH: u64 = 100;
    let (booking, clock) = engine();

    let barrier = Arc::new(Barrier::new(N as usize));
    let mut set = JoinSet::new();
    for _ in 0..N {
        let (booking, barrier) = (booking.clone(), barrier.clone());
        set.spawn(async move {
            let user = UserId::random();
            barrier.wait().await;
            (user, booking.issue_token(user).await.unwrap())
        });
    }
    // seq -> token
    let mut tokens: BTreeMap<u64, String> = BTreeMap::new();
    let mut users = BTreeSet::new();
    for (user, issued) in set.join_all().await {
        assert_eq!(issued.claims.user, user);
        let seq = issued.claims.seq.get();
        // Nobody was admitted yet: position is the sequence itself.
        assert!(
            matches!(issued.status, QueueStatus::Waiting { position, .. } if position == seq),
            "seq {seq}: {:?}",
            issued.status
        );
        assert!(
            tokens.insert(seq, issued.token).is_none(),
            "seq {seq} twice"
        );
        users.insert(user);
    }
    assert_eq!(users.len(), N as usize);
    assert_eq!(
        tokens.keys().copied().collect::<Vec<_>>(),
        (1..=N).collect::<Vec<_>>(),
        "sequences are exactly 1..=N: no gap, no repeat"
    );
    let counters = booking.queue_stats().await.unwrap().counters;
    assert_eq!((counters.last_seq, counters.serving), (N, 0));

    booking
        .set_policy(AdmissionPolicy::rate(BATCH as u32, TICK).unwrap())
        .await
        .unwrap();
    let tokens = Arc::new(tokens);
    let mut tick_times = Vec::new();
    for k in 1..=N / BATCH {
        if k > 1 {
            clock.advance(TICK);
        }
        tick_times.push(clock.now());
        let serving = k * BATCH;
        assert_eq!(
            booking.tick().await.unwrap(),
            TickOutcome::Advanced {
                admitted: BATCH,
                serving
            },
            "tick {k}"
        );
        let stats = booking.queue_stats().await.unwrap();
        assert_eq!(stats.counters.serving, serving);
        assert_eq!(stats.n_active, serving, "every admitted user is active");

        // Every token checked at once, from its own task.
        let tick_times = Arc::new(tick_times.clone());
        let mut set = JoinSet::new();
        for seq in 1..=N {
            let (booking, tokens, tick_times) =
                (booking.clone(), tokens.clone(), tick_times.clone());
            set.spawn(async move {
                let token = &tokens[&seq];
                let entry = booking
                    .store()
                    .entry(QueueSeq::new(seq).unwrap())
                    .await
                    .unwrap()
                    .unwrap();
                let status = booking.queue_status(token).await.unwrap().status;
                let gate = booking.gate(token).await;
                if seq <= serving {
                    // Admitted, by the tick of its batch: in sequence order.
                    let batch = ((seq - 1) / BATCH) as usize;
                    assert_eq!(entry.admitted_at, Some(tick_times[batch]), "seq {seq}");
                    assert!(matches!(status, QueueStatus::Active { .. }), "seq {seq}");
                    assert_eq!(gate.map(|a| a.seq().get()), Ok(seq));
                } else {
                    assert_eq!(entry.admitted_at, None, "seq {seq} admitted early");
                    let want = seq - serving;
                    match (status, gate) {
                        (
                            QueueStatus::Waiting { position: p1, .. },
                            Err(GateError::Waiting { position: p2, .. }),
                        ) => {
                            assert_eq!((p1, p2), (want, want), "seq {seq} at serving {serving}");
                        }
                        other => panic!("seq {seq} should wait, got {other:?}"),
                    }
                }
            });
        }
        set.join_all().await;
    }
    clock.advance(TICK);
    assert_eq!(booking.tick().await.unwrap(), TickOutcome::Idle);
}

/// Eight server instances (separate `Booking` values over one shared store) tick at the same clock instant, 50 times over:
/// each time exactly one advances, the others lose the compare-and-set or find the
/// tick already done.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn i3_eight_instances_ticking_at_one_instant_advance_exactly_once() {
    const INSTANCES: usize = 8;
    const ROUNDS: u64 = 50;
    const BATCH: u64 = 10;
    let store = MemoryStore::new();
    let clock = ManualClock::new(START);
    let instances: Vec<Arc<Engine>> = (0..INSTANCES)
        .map(|_| Arc::new(engine_on(store.clone(), clock.clone())))
        .collect();
    for _ in 0..1_000 {
        instances[0].issue_token(UserId::random()).await.unwrap();
    }
    instances[0]
        .set_policy(AdmissionPolicy::rate(BATCH as u32, TICK).unwrap())
        .await
        .unwrap();

    let mut n_lost_race = 0;
    for round in 1..=ROUNDS {
        if round > 1 {
            clock.advance(TICK);
        }
        let barrier = Arc::new(Barrier::new(INSTANCES));
        let mut set = JoinSet::new();
        for instance in &instances {
            let (instance, barrier) = (instance.clone(), barrier.clone());
            set.spawn(async move {
                barrier.wait().await;
                instance.tick().await.unwrap()
            });
        }
        let mut n_advanced = 0;
        for outcome in set.join_all().await {
            match outcome {
                TickOutcome::Advanced { admitted, serving } => {
                    assert_eq!((admitted, serving), (BATCH, round * BATCH));
                    n_advanced += 1;
                }
                TickOutcome::LostRace => n_lost_race += 1,
                TickOutcome::NotDue => {}
                other => panic!("round {round}: unexpected {other:?}"),
            }
        }
        assert_eq!(n_advanced, 1, "round {round}: exactly one advance");
    }
    let counters = store.counters().await.unwrap();
    assert_eq!(counters.serving, ROUNDS * BATCH);
    // The version moved once for the policy set up front, then once per tick.
    assert_eq!(
        counters.version,
        ROUNDS + 1,
        "one advance per tick, no more"
    );
    eprintln!("{n_lost_race} ticks lost the compare-and-set over {ROUNDS} rounds");
    assert!(n_lost_race > 0, "the compare-and-set was never contended");
}

// ---------------------------------------------------------------------------------
// I2 money is conserved (charges)

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn i2_two_hundred_concurrent_charges_to_one_user_are_all_counted() {
    const N: usize = 200;
    let (booking, _clock) = engine();
    let user = UserId::random();
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    eprintln!("amounts seed: {seed}");
    let mut rng = SplitMix(seed);
    // 1..=100,000 each: 200 of them stay below the maximum balance.
    let amounts: Vec<i64> = (0..N).map(|_| (rng.next() % 100_000) as i64 + 1).collect();
    let sum: i64 = amounts.iter().sum();

    let barrier = Arc::new(Barrier::new(N));
    let mut set = JoinSet::new();
    for a in amounts.clone() {
        let (booking, barrier) = (booking.clone(), barrier.clone());
        set.spawn(async move {
            barrier.wait().await;
            booking.charge(user, amount(a), None).await.unwrap()
        });
    }
    let receipts = set.join_all().await;
    assert!(receipts.iter().all(|r| !r.replayed));
    let ids: BTreeSet<_> = receipts.iter().map(|r| r.entry.id).collect();
    assert_eq!(ids.len(), N, "every charge has its own ledger row");

    assert_eq!(
        booking.balance(user).await.unwrap().minor_units(),
        sum,
        "seed {seed}: no charge lost"
    );
    let mut ledger = booking.ledger(user).await.unwrap();
    assert_eq!(ledger.len(), N);
    let mut charged: Vec<i64> = ledger.iter().map(|e| e.amount.minor_units()).collect();
    let mut expected = amounts;
    charged.sort_unstable();
    expected.sort_unstable();
    assert_eq!(
        charged, expected,
        "seed {seed}: the ledger holds every amount"
    );
    // In write order, each row's balance is the running sum: no charge saw a stale
    // balance.
    ledger.sort_by_key(|e| e.id);
    let mut running = 0;
    for row in &ledger {
        assert_eq!(row.kind, LedgerKind::Charge);
        running += row.amount.minor_units();
        assert_eq!(row.balance_after.minor_units(), running, "seed {seed}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn i2_hundred_concurrent_retries_of_one_charge_key_apply_it_once() {
    const N: usize = 100;
    const AMOUNT: i64 = 4_321;
    let (booking, _clock) = engine();
    let user = UserId::random();
    let key = IdempotencyKey::new("top-up-2026-01-01").unwrap();

    let barrier = Arc::new(Barrier::new(N));
    let mut set = JoinSet::new();
    for _ in 0..N {
        let (booking, barrier, key) = (booking.clone(), barrier.clone(), key.clone());
        set.spawn(async move {
            barrier.wait().await;
            booking
                .charge(user, amount(AMOUNT), Some(key))
                .await
                .unwrap()
        });
    }
    let receipts = set.join_all().await;
    let n_first = receipts.iter().filter(|r| !r.replayed).count();
    assert_eq!(n_first, 1, "exactly one charge applied");
    let first = &receipts.iter().find(|r| !r.replayed).unwrap().entry;
    assert!(
        receipts.iter().all(|r| r.entry == *first),
        "all receipts carry the same ledger entry"
    );
    assert_eq!(first.key.as_ref(), Some(&key));
    assert_eq!(booking.balance(user).await.unwrap().minor_units(), AMOUNT);
    assert_eq!(booking.ledger(user).await.unwrap(), vec![first.clone()]);
}

// ---------------------------------------------------------------------------------
// R1 asking again returns the same place

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn r1_fifty_concurrent_token_requests_of_one_user_share_one_place() {
    const N: usize = 50;
    let (booking, _clock) = engine();
    let user = UserId::random();

    let barrier = Arc::new(Barrier::new(N));
    let mut set = JoinSet::new();
    for _ in 0..N {
        let (booking, barrier) = (booking.clone(), barrier.clone());
        set.spawn(async move {
            barrier.wait().await;
            booking.issue_token(user).await.unwrap()
        });
    }
    let issued = set.join_all().await;
    let tokens: BTreeSet<&str> = issued.iter().map(|i| i.token.as_str()).collect();
    assert_eq!(tokens.len(), 1, "one token string for every request");
    assert!(issued.iter().all(|i| i.claims == issued[0].claims));
    assert_eq!(issued[0].claims.seq.get(), 1);
    assert_eq!(booking.queue_stats().await.unwrap().counters.last_seq, 1);
}

// ---------------------------------------------------------------------------------
// The counters cache under a burst of polls

/// 1,000 users poll at once just after the cached counters went stale: one of them
/// reads the counters again, the others answer from the old value meanwhile, and
/// every answer is a valid place. Tokens this instance just issued need no read to
/// be known.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_of_polls_on_stale_counters_reads_them_once() {
    const N: usize = 1_000;
    let clock = ManualClock::new(START);
    let signer = TokenSigner::new(SECRET).unwrap();
    let config = Config {
        counters_cache: Duration::from_millis(100),
        ..Config::default()
    };
    let remote = Remote::new(MemoryStore::new());
    let booking = Arc::new(Booking::new(remote.clone(), clock.clone(), signer, config).unwrap());
    let mut tokens = Vec::with_capacity(N);
    for _ in 0..N {
        tokens.push(booking.issue_token(UserId::random()).await.unwrap().token);
    }
    // Issuing read the counters once (the cache was empty), then knew each new place:
    // polling the newest token at once reads nothing.
    assert_eq!(remote.counter_reads(), 1);
    booking.queue_status(&tokens[N - 1]).await.unwrap();
    assert_eq!(remote.counter_reads(), 1);
    clock.advance(Duration::from_millis(150));
    let before = remote.counter_reads();
    let barrier = Arc::new(Barrier::new(N));
    let mut set = JoinSet::new();
    for (i, token) in tokens.into_iter().enumerate() {
        let (booking, barrier) = (booking.clone(), barrier.clone());
        set.spawn(async move {
            barrier.wait().await;
            (i, booking.queue_status(&token).await)
        });
    }
    for (i, view) in set.join_all().await {
        match view.unwrap().status {
            QueueStatus::Waiting { position, .. } => assert_eq!(position, i as u64 + 1),
            other => panic!("user {i}: {other:?}"),
        }
    }
    assert_eq!(remote.counter_reads() - before, 1, "one read for the burst");
}
