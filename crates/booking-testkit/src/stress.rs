//! Concurrency scenarios with several server instances: each instance is its own
//! `Booking` over its own store value (for SQL backends, its own connection pool on
//! one shared database), all reading one manual clock. Tasks start together behind
//! a barrier, and every outcome is counted exactly.
//!
//! Each function takes the instances and the size of the crowd; the storage crates
//! call them with the sizes the issue asks for.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use booking_core::domain::{
    AdmissionPolicy, Hold, HoldState, LedgerKind, PaymentId, ReservationId, SeatState, TokenId,
    UserId,
};
use booking_core::ports::{NewHold, PayRepoError, PayRequest};
use booking_core::{Booking, Config, HoldError, ManualClock, Store, TickOutcome, TokenSigner};
use tokio::sync::Barrier;
use tokio::task::JoinSet;

use crate::{T0, amount, seat};

/// Several instances sharing one clock.
pub struct Cluster<S> {
    /// The instances.
    pub nodes: Vec<Arc<Booking<S, ManualClock>>>,
    /// The clock they all read.
    pub clock: ManualClock,
}

impl<S: Store + Clone> Cluster<S> {
    /// One instance per store value, default configuration.
    pub fn new(stores: Vec<S>) -> Self {
        Self::with_config(stores, Config::default())
    }

    /// One instance per store value.
    pub fn with_config(stores: Vec<S>, config: Config) -> Self {
        assert!(!stores.is_empty(), "a cluster needs at least one instance");
        let clock = ManualClock::new(T0);
        let nodes = stores
            .into_iter()
            .map(|s| {
                let signer = TokenSigner::new(crate::SECRET).expect("secret");
                Arc::new(Booking::new(s, clock.clone(), signer, config.clone()).expect("config"))
            })
            .collect();
        Cluster { nodes, clock }
    }

    /// Instance `i`, round robin.
    pub fn node(&self, i: usize) -> Arc<Booking<S, ManualClock>> {
        Arc::clone(&self.nodes[i % self.nodes.len()])
    }

    /// Issues tokens to `users` (spread over the instances), admits them all and
    /// passes each through the gate of its instance.
    async fn admit(&self, users: &[UserId]) -> Vec<booking_core::Admitted> {
        self.admit_with_tokens(users)
            .await
            .into_iter()
            .map(|(who, _)| who)
            .collect()
    }

    /// [`Cluster::admit`], with each user's token.
    async fn admit_with_tokens(&self, users: &[UserId]) -> Vec<(booking_core::Admitted, String)> {
        let first = self.node(0);
        first
            .set_policy(AdmissionPolicy::rate(AdmissionPolicy::MAX_BATCH, TICK).expect("policy"))
            .await
            .expect("policy");
        let mut tokens = Vec::with_capacity(users.len());
        for (i, u) in users.iter().enumerate() {
            tokens.push(self.node(i).issue_token(*u).await.expect("issue").token);
        }
        self.clock.advance(TICK);
        assert!(matches!(
            first.tick().await.expect("tick"),
            TickOutcome::Advanced { .. }
        ));
        let mut admitted = Vec::with_capacity(tokens.len());
        for (i, t) in tokens.into_iter().enumerate() {
            admitted.push((self.node(i).gate(&t).await.expect("admitted"), t));
        }
        admitted
    }
}

const TICK: Duration = Duration::from_millis(10);

/// I1: `n` admitted users on several instances hold one seat at once: exactly one
/// wins, everyone else is told the seat is taken, and the seat map agrees.
pub async fn holds_on_one_seat<S: Store + Clone>(cluster: &Cluster<S>, n: usize) {
    let node = cluster.node(0);
    let schedule = crate::concert_date(&node, 50, None).await;
    let users: Vec<UserId> = (0..n).map(|_| UserId::random()).collect();
    let admitted = cluster.admit(&users).await;
    let barrier = Arc::new(Barrier::new(n));
    let mut set = JoinSet::new();
    for (i, who) in admitted.into_iter().enumerate() {
        let (node, barrier) = (cluster.node(i), Arc::clone(&barrier));
        set.spawn(async move {
            barrier.wait().await;
            node.hold(&who, schedule.id, seat(25)).await
        });
    }
    let mut winners: Vec<Hold> = Vec::new();
    let mut taken = 0;
    for outcome in set.join_all().await {
        match outcome {
            Ok(h) => winners.push(h),
            Err(HoldError::SeatTaken(_)) => taken += 1,
            Err(e) => panic!("unexpected hold outcome: {e:?}"),
        }
    }
    assert_eq!((winners.len(), taken), (1, n - 1));
    let (_, seats) = node
        .seats(schedule.concert, schedule.date())
        .await
        .expect("seats");
    let held: Vec<_> = seats
        .iter()
        .filter(|s| s.state != SeatState::Free)
        .collect();
    assert_eq!(held.len(), 1);
    assert_eq!(
        held[0].state,
        SeatState::Held {
            until: winners[0].expires_at
        }
    );
    assert_eq!(node.live_holds().await.expect("live"), winners);
}

/// The hold cap under concurrency: one admitted user holds `n` different seats at
/// once, spread over all instances. Exactly the configured cap of holds is taken,
/// every other one is refused with the hold limit, and the user's live holds are
/// exactly the winners (the database serializes one session's holds). Five rounds.
pub async fn one_users_holds_stop_at_the_cap<S: Store + Clone>(cluster: &Cluster<S>, n: usize) {
    let node = cluster.node(0);
    let cap = node.config().max_live_holds as usize;
    assert!(
        n > cap && n <= 50,
        "n must be above the cap and at most 50 seats"
    );
    // A race that goes wrong only sometimes: several rounds, each a new user.
    for _ in 0..5 {
        let schedule = crate::concert_date(&node, 50, None).await;
        let user = UserId::random();
        let who = cluster.admit(&[user]).await.remove(0);
        let barrier = Arc::new(Barrier::new(n));
        let mut set = JoinSet::new();
        for i in 0..n {
            let (node, barrier) = (cluster.node(i), Arc::clone(&barrier));
            set.spawn(async move {
                barrier.wait().await;
                node.hold(&who, schedule.id, seat(i as i64 + 1)).await
            });
        }
        let mut winners = BTreeSet::new();
        let mut limited = 0;
        for outcome in set.join_all().await {
            match outcome {
                Ok(h) => assert!(winners.insert(h.id), "one hold answered twice"),
                Err(HoldError::HoldLimit { .. }) => limited += 1,
                Err(e) => panic!("unexpected hold outcome: {e:?}"),
            }
        }
        assert_eq!((winners.len(), limited), (cap, n - cap));
        let live: BTreeSet<ReservationId> = node
            .live_holds()
            .await
            .expect("live")
            .iter()
            .filter(|h| h.user == user)
            .map(|h| h.id)
            .collect();
        assert_eq!(live, winners);
    }
}

/// I2: `n` payments race on one balance that covers exactly `covered` of them; each
/// is a debit that would overdraw if it were not conditional.
///
/// One user holds `n` seats. A payment ends the user's session (I6), so at most one
/// payment per session can succeed; the race is run in rounds: each round opens a
/// new session and every payment still pending is attempted at once, on all
/// instances. Exactly `covered` payments succeed, every other one ends with
/// insufficient balance, the balance ends at zero and the ledger has exactly one
/// payment row per success.
pub async fn debits_on_one_balance<S: Store + Clone>(
    cluster: &Cluster<S>,
    n: usize,
    covered: usize,
) {
    const PRICE: i64 = 100;
    let node = cluster.node(0);
    // One seat more than the holds: with every seat held the sale would be sold
    // out, and the re-admissions below would stop.
    let schedule = crate::concert_date(&node, n as i64 + 1, Some(PRICE)).await;
    let user = UserId::random();
    let mut session = cluster.admit(&[user]).await.remove(0);
    // Each pending payment: its seat and its hold in the current session. A payment
    // ends the session and releases the session's other holds, so after each round
    // the seats still to pay are held again in the next session.
    let hold_in = |node: Arc<Booking<S, ManualClock>>, session: booking_core::Admitted, no| {
        let now = cluster.clock_now();
        async move {
            node.store()
                .hold(NewHold {
                    id: ReservationId::random(),
                    user,
                    session: session.seq(),
                    schedule: schedule.id,
                    seat: seat(no),
                    now,
                    expires_at: now.plus(Duration::from_secs(86_400)),
                    max_live_per_user: n as u32,
                })
                .await
                .expect("hold")
                .id
        }
    };
    let mut pending: Vec<(i64, ReservationId)> = Vec::with_capacity(n);
    for no in 1..=n as i64 {
        pending.push((no, hold_in(Arc::clone(&node), session, no).await));
    }
    node.charge(user, amount(PRICE * covered as i64), None)
        .await
        .expect("charge");
    let (mut paid, mut refused) = (Vec::new(), 0usize);
    for round in 0.. {
        assert!(
            round <= covered + 1,
            "every round ends a session or the balance"
        );
        let barrier = Arc::new(Barrier::new(pending.len()));
        let mut set = JoinSet::new();
        for (i, (no, id)) in pending.iter().copied().enumerate() {
            let (node, barrier) = (cluster.node(i), Arc::clone(&barrier));
            let req = PayRequest {
                id: PaymentId::random(),
                reservation: id,
                user,
                session: session.seq(),
                key: None,
                now: cluster.clock_now(),
            };
            set.spawn(async move {
                barrier.wait().await;
                (no, node.store().pay(req).await)
            });
        }
        let mut next = Vec::new();
        let mut won_this_round = 0;
        for (no, outcome) in set.join_all().await {
            match outcome {
                Ok(p) => {
                    won_this_round += 1;
                    paid.push(p);
                }
                Err(PayRepoError::InsufficientBalance { .. }) => refused += 1,
                // The session ended, and its payment released this hold.
                Err(PayRepoError::SessionEnded | PayRepoError::NotHeld(HoldState::Expired)) => {
                    next.push(no)
                }
                Err(e) => panic!("unexpected payment outcome: {e:?}"),
            }
        }
        assert!(won_this_round <= 1, "one session pays once (I6)");
        if next.is_empty() {
            break;
        }
        session = cluster.admit(&[user]).await.remove(0);
        let mut holds = JoinSet::new();
        for (i, no) in next.into_iter().enumerate() {
            let hold = hold_in(cluster.node(i), session, no);
            holds.spawn(async move { (no, hold.await) });
        }
        pending = holds.join_all().await;
    }
    assert_eq!((paid.len(), refused), (covered, n - covered));
    assert_eq!(node.balance(user).await.expect("balance").minor_units(), 0);
    let ledger = node.ledger(user).await.expect("ledger");
    let payments: Vec<_> = ledger
        .iter()
        .filter(|e| matches!(e.kind, LedgerKind::Payment(_)))
        .collect();
    assert_eq!(payments.len(), covered);
    assert_eq!(ledger.iter().map(|e| e.delta()).sum::<i64>(), 0);
    let ids: BTreeSet<_> = paid.iter().map(|p| p.reservation).collect();
    assert_eq!(ids.len(), covered, "no reservation paid twice");
    for p in &paid {
        let r = node
            .store()
            .reservation(p.reservation)
            .await
            .expect("r")
            .expect("r");
        assert_eq!(r.state, HoldState::Paid);
    }
}

/// I2: `n` concurrent charges of one user on several instances: none lost.
pub async fn charges_none_lost<S: Store + Clone>(cluster: &Cluster<S>, n: usize) {
    let user = UserId::random();
    let barrier = Arc::new(Barrier::new(n));
    let mut set = JoinSet::new();
    for i in 0..n {
        let (node, barrier) = (cluster.node(i), Arc::clone(&barrier));
        set.spawn(async move {
            barrier.wait().await;
            node.charge(user, amount(i as i64 + 1), None).await
        });
    }
    let mut ids = BTreeSet::new();
    for r in set.join_all().await {
        ids.insert(r.expect("charge").entry.id);
    }
    let expected = (n * (n + 1) / 2) as i64;
    assert_eq!(ids.len(), n, "every charge has its own ledger row");
    assert_eq!(
        cluster
            .node(0)
            .balance(user)
            .await
            .expect("b")
            .minor_units(),
        expected
    );
    let ledger = cluster.node(1).ledger(user).await.expect("ledger");
    assert_eq!(ledger.len(), n);
    assert_eq!(ledger.iter().map(|e| e.delta()).sum::<i64>(), expected);
}

/// R1, I3: `n` users ask for tokens at once on several instances: sequences are
/// exactly 1..=n; then admission in batches follows them in order.
pub async fn tokens_in_strict_sequence<S: Store + Clone>(
    cluster: &Cluster<S>,
    n: usize,
    batch: u32,
) {
    let barrier = Arc::new(Barrier::new(n));
    let mut set = JoinSet::new();
    for i in 0..n {
        let (node, barrier) = (cluster.node(i), Arc::clone(&barrier));
        set.spawn(async move {
            barrier.wait().await;
            node.issue_token(UserId::random()).await
        });
    }
    let mut issued = Vec::with_capacity(n);
    for r in set.join_all().await {
        issued.push(r.expect("issue"));
    }
    let seqs: BTreeSet<u64> = issued.iter().map(|t| t.claims.seq.get()).collect();
    assert_eq!(seqs.len(), n, "no duplicate");
    assert_eq!(
        seqs.iter().copied().collect::<Vec<_>>(),
        (1..=n as u64).collect::<Vec<_>>()
    );
    issued.sort_by_key(|t| t.claims.seq);
    let node = cluster.node(0);
    node.set_policy(AdmissionPolicy::rate(batch, TICK).expect("policy"))
        .await
        .expect("policy");
    let mut serving = 0u64;
    while serving < n as u64 {
        cluster.clock.advance(TICK);
        match node.tick().await.expect("tick") {
            TickOutcome::Advanced { serving: s, .. } => serving = s,
            other => panic!("unexpected tick: {other:?}"),
        }
        for t in &issued {
            let seq = t.claims.seq.get();
            let entry = node
                .store()
                .entry(t.claims.seq)
                .await
                .expect("e")
                .expect("e");
            assert_eq!(
                entry.admitted_at.is_some(),
                seq <= serving,
                "seq {seq} at {serving}"
            );
        }
    }
}

/// R1, I3 under a sale's opening: `chains * per_chain` users ask for a place at once,
/// spread over the instances. Each chain is one client that asks for its users one
/// after another, each only once the previous one was answered; every `twin_every`-th
/// chain has a twin that asks for the same users at the same time.
///
/// Checks: the places are exactly `1..=chains * per_chain`, one per user, each user
/// asking twice got the same place and token id both times, and within a chain the
/// places increase: an issue answered before another was sent has the earlier place
/// (the order of arrival at the database, whatever batches or instances carried
/// them).
pub async fn token_burst_in_arrival_order<S: Store + Clone>(
    cluster: &Cluster<S>,
    chains: usize,
    per_chain: usize,
    twin_every: usize,
) {
    let users: Vec<Vec<UserId>> = (0..chains)
        .map(|_| (0..per_chain).map(|_| UserId::random()).collect())
        .collect();
    let mut askers: Vec<(usize, Vec<UserId>)> = users.iter().cloned().enumerate().collect();
    for c in (0..chains).step_by(twin_every.max(1)) {
        askers.push((c, users[c].clone()));
    }
    let barrier = Arc::new(Barrier::new(askers.len()));
    let mut set = JoinSet::new();
    for (i, (chain, chain_users)) in askers.into_iter().enumerate() {
        let (node, barrier) = (cluster.node(i), Arc::clone(&barrier));
        set.spawn(async move {
            barrier.wait().await;
            let mut got = Vec::with_capacity(chain_users.len());
            for user in chain_users {
                let t = node.issue_token(user).await.expect("issue");
                assert_eq!(t.claims.user, user, "a place for someone else");
                got.push((t.claims.seq.get(), t.claims.token_id));
            }
            (chain, got)
        });
    }
    let mut by_user: HashMap<UserId, (u64, TokenId)> = HashMap::new();
    for (chain, got) in set.join_all().await {
        assert!(
            got.windows(2).all(|w| w[0].0 < w[1].0),
            "chain {chain} got places out of its order: {got:?}"
        );
        for (user, place) in users[chain].iter().zip(got) {
            if let Some(first) = by_user.insert(*user, place) {
                assert_eq!(first, place, "a user asking twice got two places");
            }
        }
    }
    let n = chains * per_chain;
    let mut seqs: Vec<u64> = by_user.values().map(|(s, _)| *s).collect();
    seqs.sort_unstable();
    assert_eq!(seqs.len(), n, "every user has a place");
    assert!(
        seqs.iter().copied().eq(1..=n as u64),
        "places are exactly 1..={n}"
    );
    let counters = cluster.node(0).store().counters().await.expect("counters");
    assert_eq!(
        counters.last_seq, n as u64,
        "the counters name the last place"
    );
}

/// R6: instances ticking at the same instant advance the counter once per tick.
pub async fn tickers_advance_once_per_tick<S: Store + Clone>(cluster: &Cluster<S>, rounds: usize) {
    let node = cluster.node(0);
    node.set_policy(AdmissionPolicy::rate(2, TICK).expect("policy"))
        .await
        .expect("policy");
    for i in 0..rounds * 2 + 10 {
        cluster
            .node(i)
            .issue_token(UserId::random())
            .await
            .expect("issue");
    }
    for round in 1..=rounds {
        cluster.clock.advance(TICK);
        let barrier = Arc::new(Barrier::new(cluster.nodes.len() * 2));
        let mut set = JoinSet::new();
        for i in 0..cluster.nodes.len() * 2 {
            let (node, barrier) = (cluster.node(i), Arc::clone(&barrier));
            set.spawn(async move {
                barrier.wait().await;
                node.tick().await
            });
        }
        let mut advanced = 0;
        for r in set.join_all().await {
            match r.expect("tick") {
                TickOutcome::Advanced { admitted, .. } => {
                    assert_eq!(admitted, 2);
                    advanced += 1;
                }
                TickOutcome::LostRace | TickOutcome::NotDue => {}
                other => panic!("unexpected tick: {other:?}"),
            }
        }
        assert_eq!(advanced, 1, "round {round}");
        let c = node.queue_stats().await.expect("stats").counters;
        assert_eq!(c.serving, 2 * round as u64);
    }
}

impl<S: Store + Clone> Cluster<S> {
    fn clock_now(&self) -> booking_core::domain::Timestamp {
        use booking_core::Clock;
        self.clock.now()
    }
}

/// I1, I2, I5, I6 with payments of several holds: each of `n` users holds three
/// seats and four payments of them race on several instances (all three, the
/// first alone, the last two, the last and the first). Exactly one payment per
/// user wins; it sold exactly its seats, debited exactly its total with one ledger
/// row, and released the user's other hold; the losers changed nothing.
pub async fn payments_of_several_holds_race<S: Store + Clone>(cluster: &Cluster<S>, n: usize) {
    const BALANCE: i64 = 1_000_000;
    let node = cluster.node(0);
    // One seat more than the holds, so that the sale is never sold out; seat `k`
    // costs `100 * k`, so each payment's total is its own.
    let schedule = crate::concert_date(&node, 3 * n as i64 + 1, None).await;
    let users: Vec<UserId> = (0..n).map(|_| UserId::random()).collect();
    let admitted = cluster.admit_with_tokens(&users).await;
    let mut holds = Vec::with_capacity(n);
    for (i, (who, _)) in admitted.iter().enumerate() {
        let node = cluster.node(i);
        let mut three = Vec::new();
        for k in 0..3 {
            let no = seat(3 * i as i64 + k + 1);
            three.push(node.hold(who, schedule.id, no).await.expect("hold"));
        }
        node.charge(who.user(), amount(BALANCE), None)
            .await
            .expect("charge");
        holds.push(three);
    }
    let mut set = JoinSet::new();
    let barrier = Arc::new(Barrier::new(4 * n));
    for (i, (_, token)) in admitted.iter().enumerate() {
        let h: Vec<ReservationId> = holds[i].iter().map(|h| h.id).collect();
        let tries = [
            vec![h[0], h[1], h[2]],
            vec![h[0]],
            vec![h[1], h[2]],
            vec![h[2], h[0]],
        ];
        for (k, ids) in tries.into_iter().enumerate() {
            let (node, barrier, token) = (cluster.node(i + k), Arc::clone(&barrier), token.clone());
            set.spawn(async move {
                barrier.wait().await;
                (i, ids.clone(), node.pay_all(&token, &ids, None).await)
            });
        }
    }
    let mut won: HashMap<usize, booking_core::domain::Payment> = HashMap::new();
    let mut n_lost = 0;
    for (i, ids, outcome) in set.join_all().await {
        match outcome {
            Ok(r) => {
                assert!(r.payment.pays_exactly(&ids));
                assert!(won.insert(i, r.payment).is_none(), "user {i} paid twice");
            }
            Err(e) => {
                assert!(
                    matches!(
                        e.cause(),
                        booking_core::PayError::Gate(booking_core::GateError::Ended)
                            | booking_core::PayError::SessionEnded
                            | booking_core::PayError::AlreadyPaid
                            | booking_core::PayError::HoldExpired
                    ),
                    "unexpected payment outcome: {e:?}"
                );
                n_lost += 1;
            }
        }
    }
    assert_eq!((won.len(), n_lost), (n, 3 * n), "one payment per user");
    let (_, seats) = node
        .seats(schedule.concert, schedule.date())
        .await
        .expect("seats");
    let mut n_sold = 0;
    for (i, user) in users.iter().enumerate() {
        let p = &won[&i];
        let sold: BTreeSet<_> = p.seats.iter().map(|s| s.seat).collect();
        for h in &holds[i] {
            let state = seats[usize::from(h.seat.get()) - 1].state;
            if sold.contains(&h.seat) {
                assert_eq!(state, SeatState::Sold);
                n_sold += 1;
            } else {
                assert_eq!(
                    state,
                    SeatState::Free,
                    "the payment released the other hold"
                );
            }
        }
        let total: i64 = holds[i]
            .iter()
            .filter(|h| sold.contains(&h.seat))
            .map(|h| h.price.minor_units())
            .sum();
        assert_eq!(p.amount.minor_units(), total);
        assert_eq!(
            node.balance(*user).await.expect("balance").minor_units(),
            BALANCE - total
        );
        let ledger = node.ledger(*user).await.expect("ledger");
        assert_eq!(ledger.len(), 2, "the charge and one payment row");
        assert_eq!(ledger[0].kind, LedgerKind::Payment(p.id));
        assert_eq!(ledger[0].amount, p.amount);
        assert_eq!(
            node.payments(*user).await.expect("payments"),
            vec![p.clone()]
        );
    }
    assert_eq!(
        seats.iter().filter(|s| s.state == SeatState::Sold).count(),
        n_sold,
        "no seat sold but by a winning payment"
    );
}

/// Every event of the feed of `booking`'s store, after a relay, in id order.
pub async fn all_events<S: Store, C: booking_core::Clock>(
    booking: &Booking<S, C>,
) -> Vec<booking_core::Event> {
    feed_of(booking.store()).await
}

/// Every event of the feed of `store`, after a relay, in id order.
pub async fn feed_of<S: Store>(store: &S) -> Vec<booking_core::Event> {
    store.relay_events().await.expect("relay");
    let mut all: Vec<booking_core::Event> = Vec::new();
    loop {
        let after = all.last().map_or(booking_core::EventId(0), |e| e.id);
        let page = store.events_after(after, 1_000, &[]).await.expect("events");
        if page.is_empty() {
            return all;
        }
        all.extend(page);
    }
}

/// Issue 18: `n` admitted users on several instances each charge, hold one of `n /
/// 2` seats (two users per seat: one wins) and pay the hold they won, all at once,
/// while every instance relays the outbox and a reader pages through the feed. The
/// feed then has exactly one event per committed change (`wallet.charged` per
/// charge, `hold.created` per winning hold, `payment.completed` and
/// `session.ended` per payment), its ids strictly increase, and every event at or
/// below the reader's last cursor was seen by the reader: nothing committed behind
/// it.
pub async fn events_of_concurrent_changes<S: Store + Clone>(cluster: &Cluster<S>, n: usize) {
    use booking_core::{EventId, EventType};
    use std::sync::atomic::{AtomicBool, Ordering};

    let node = cluster.node(0);
    let seats = (n / 2).clamp(1, 1_000);
    let schedule = crate::concert_date(&node, seats as i64, Some(100)).await;
    let users: Vec<UserId> = (0..n).map(|_| UserId::random()).collect();
    let admitted = cluster.admit_with_tokens(&users).await;
    let start = all_events(&node).await;
    assert_eq!(
        start
            .iter()
            .filter(|e| e.event_type() == EventType::TokenIssued)
            .count(),
        n,
        "one token.issued per user"
    );
    let cursor0 = start.last().map_or(EventId(0), |e| e.id);

    let done = Arc::new(AtomicBool::new(false));
    // Relays on every instance, as their background tasks would.
    let mut relays = JoinSet::new();
    for i in 0..cluster.nodes.len() {
        let (node, done) = (cluster.node(i), Arc::clone(&done));
        relays.spawn(async move {
            let mut moved = 0;
            while !done.load(Ordering::Relaxed) {
                moved += node.relay_events().await.expect("relay");
                tokio::task::yield_now().await;
            }
            moved
        });
    }
    // A reader paging through the feed with its cursor.
    let reader = {
        let (node, done) = (cluster.node(1), Arc::clone(&done));
        tokio::spawn(async move {
            let mut seen: Vec<EventId> = Vec::new();
            let mut cursor = cursor0;
            loop {
                let finished = done.load(Ordering::Relaxed);
                let page = node
                    .store()
                    .events_after(cursor, 100, &[])
                    .await
                    .expect("page");
                for e in &page {
                    assert!(
                        e.id > cursor,
                        "an id behind the cursor: {} <= {cursor}",
                        e.id
                    );
                    cursor = e.id;
                    seen.push(e.id);
                }
                if page.is_empty() {
                    if finished {
                        return (seen, cursor);
                    }
                    tokio::task::yield_now().await;
                }
            }
        })
    };

    let barrier = Arc::new(Barrier::new(n));
    let mut set = JoinSet::new();
    for (i, (who, token)) in admitted.into_iter().enumerate() {
        let (node, barrier) = (cluster.node(i), Arc::clone(&barrier));
        let seat_no = seat((i % seats) as i64 + 1);
        set.spawn(async move {
            barrier.wait().await;
            node.charge(who.user(), amount(100), None)
                .await
                .expect("charge");
            match node.hold(&who, schedule.id, seat_no).await {
                Ok(h) => {
                    let paid = node.pay(&token, h.id, None).await.expect("pay");
                    (1, paid.payment.id)
                }
                Err(HoldError::SeatTaken(_) | HoldError::SoldOut) => (0, PaymentId::random()),
                Err(e) => panic!("unexpected hold outcome: {e:?}"),
            }
        });
    }
    let outcomes = set.join_all().await;
    done.store(true, Ordering::Relaxed);
    let mut relayed = 0;
    for moved in relays.join_all().await {
        relayed += moved;
    }
    let (seen, last) = reader.await.expect("reader");
    let winners: Vec<PaymentId> = outcomes
        .iter()
        .filter(|(won, _)| *won == 1)
        .map(|(_, p)| *p)
        .collect();
    assert_eq!(winners.len(), seats, "one winner per seat");

    let all = all_events(&node).await;
    assert!(all.windows(2).all(|w| w[0].id < w[1].id), "ids increase");
    let after: Vec<&booking_core::Event> = all.iter().filter(|e| e.id > cursor0).collect();
    let count = |t: EventType| after.iter().filter(|e| e.event_type() == t).count();
    assert_eq!(count(EventType::WalletCharged), n);
    assert_eq!(count(EventType::HoldCreated), seats);
    assert_eq!(count(EventType::PaymentCompleted), seats);
    assert_eq!(count(EventType::SessionEnded), seats);
    assert_eq!(after.len(), n + 3 * seats, "nothing else, nothing twice");
    let paid: BTreeSet<PaymentId> = after
        .iter()
        .filter_map(|e| match &e.data {
            booking_core::EventData::PaymentCompleted { payment, .. } => Some(*payment),
            _ => None,
        })
        .collect();
    assert_eq!(paid, winners.into_iter().collect::<BTreeSet<_>>());
    // The reader saw every event up to its last cursor, in order, and nothing else.
    let behind: Vec<EventId> = after
        .iter()
        .map(|e| e.id)
        .filter(|id| *id <= last)
        .collect();
    assert_eq!(seen, behind, "every event at or below the cursor, once");
    assert!(relayed as usize <= after.len());
}
