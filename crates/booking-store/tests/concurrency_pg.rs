//! Concurrency on PostgreSQL with three independent pools on one database, standing
//! for three server instances: outcomes counted exactly.

use booking_store::PgStore;
use booking_testkit::pg::TestDatabase;
use booking_testkit::stress::{self, Cluster};

const INSTANCES: usize = 3;

async fn cluster() -> (Cluster<PgStore>, TestDatabase) {
    let db = booking_testkit::pg::fresh_database().await;
    let mut stores = Vec::new();
    for _ in 0..INSTANCES {
        stores.push(PgStore::open(&db.url, 16).await.expect("open"));
    }
    (Cluster::new(stores), db)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn i1_thousand_concurrent_holds_on_one_seat_have_one_winner() {
    let (c, _db) = cluster().await;
    stress::holds_on_one_seat(&c, 1_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_holds_of_one_user_stop_at_the_cap() {
    let (c, _db) = cluster().await;
    stress::one_users_holds_stop_at_the_cap(&c, 50).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn i2_five_hundred_debits_on_a_balance_covering_a_hundred() {
    let (c, _db) = cluster().await;
    stress::debits_on_one_balance(&c, 500, 100).await;
}

/// Payments of several holds racing with payments of some of them, on every
/// instance: one per user wins, all or nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn i5_two_hundred_users_race_four_payments_of_their_three_holds() {
    let (c, _db) = cluster().await;
    stress::payments_of_several_holds_race(&c, 200).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn i2_thousand_concurrent_charges_are_all_counted() {
    let (c, _db) = cluster().await;
    stress::charges_none_lost(&c, 1_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn i3_thousand_concurrent_tokens_are_a_strict_sequence_admitted_in_order() {
    let (c, _db) = cluster().await;
    stress::tokens_in_strict_sequence(&c, 1_000, 100).await;
}

/// A sale opening: 10,000 users at once (2,500 clients asking for four users each,
/// one after another; 125 of them twice at the same time) over the instances.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn i3_ten_thousand_tokens_at_once_take_places_in_arrival_order() {
    let (c, _db) = cluster().await;
    stress::token_burst_in_arrival_order(&c, 2_500, 4, 20).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn r6_concurrent_tickers_advance_once_per_tick() {
    let (c, _db) = cluster().await;
    stress::tickers_advance_once_per_tick(&c, 20).await;
}

/// The group commit of holds and payments, made deterministic: the store has one
/// connection, which the test takes while the writes queue.
mod group_commit {
    use std::time::Duration;

    use booking_core::StoreError;
    use booking_core::domain::{
        PaymentId, QueueEntry, QueueSeq, ReservationId, ScheduleId, SeatState, Timestamp, TokenId,
        UserId,
    };
    use booking_core::ports::{
        CatalogRepo, HoldRepo, HoldRepoError, IssueRepoError, IssueRequest, NewHold, PayRepoError,
        PayRequest, PaymentRepo, QueueRepo, WalletRepo,
    };
    use booking_store::{GroupCommitStats, PgStore};
    use booking_testkit::pg::TestDatabase;
    use booking_testkit::ports;
    use sqlx::Connection;

    const T0: Timestamp = Timestamp::from_millis(1_767_225_600_000);

    /// A store with a single connection.
    async fn store() -> (PgStore, TestDatabase) {
        let db = booking_testkit::pg::fresh_database().await;
        let store = PgStore::open(&db.url, 1).await.expect("open");
        (store, db)
    }

    async fn schedule(store: &PgStore) -> ScheduleId {
        ports::schedule(store, 50, T0.plus(Duration::from_secs(86_400))).await
    }

    async fn admitted(store: &PgStore, n: usize) -> Vec<(UserId, QueueSeq)> {
        ports::admitted_users(store, n, T0, T0.plus(Duration::from_secs(3_600))).await
    }

    fn hold(user: (UserId, QueueSeq), schedule: ScheduleId, seat: i64) -> NewHold {
        ports::hold(user, schedule, seat, T0, Duration::from_secs(300), 2)
    }

    fn pay(user: (UserId, QueueSeq), reservation: ReservationId) -> PayRequest {
        ports::pay(user, reservation, T0)
    }

    async fn top_up(store: &PgStore, user: UserId, amount: i64) {
        store
            .charge(ports::charge(user, amount, None, 1_000_000, T0))
            .await
            .expect("charge");
    }

    /// Users who hold a seat each (41, 42, ...) and have its price: they can pay.
    async fn holders(
        store: &PgStore,
        users: &[(UserId, QueueSeq)],
        schedule: ScheduleId,
    ) -> Vec<((UserId, QueueSeq), ReservationId)> {
        let mut out = Vec::new();
        for (i, &u) in users.iter().enumerate() {
            let h = store
                .hold(hold(u, schedule, 41 + i as i64))
                .await
                .expect("hold");
            top_up(store, u.0, h.price.minor_units()).await;
            out.push((u, h.id));
        }
        out
    }

    /// Takes the store's only connection and starts one hold that waits for it (the
    /// first hot write of an idle store runs alone), so that the hot writes started
    /// next queue. Returns the connection and the waiting hold's task. Two writes ran
    /// alone by then: the hold, and the issue of its user's place.
    async fn busy_store(
        store: &PgStore,
        schedule: ScheduleId,
    ) -> (
        sqlx::pool::PoolConnection<sqlx::Postgres>,
        tokio::task::JoinHandle<()>,
    ) {
        let user = admitted(store, 1).await[0];
        let conn = store.pool().acquire().await.expect("connection");
        let direct = store.group_commit_stats().direct;
        let s = store.clone();
        let first = tokio::spawn(async move {
            s.hold(hold(user, schedule, 50)).await.expect("first hold");
        });
        wait_for(store, "the first write never started", |g| {
            g.direct > direct
        })
        .await;
        (conn, first)
    }

    async fn wait_for(store: &PgStore, what: &str, done: impl Fn(GroupCommitStats) -> bool) {
        tokio::time::timeout(Duration::from_secs(60), async {
            while !done(store.group_commit_stats()) {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect(what);
    }

    fn since(now: GroupCommitStats, base: GroupCommitStats) -> GroupCommitStats {
        GroupCommitStats {
            direct: now.direct - base.direct,
            queued: now.queued - base.queued,
            batches: now.batches - base.batches,
            batched: now.batched - base.batched,
            retried: now.retried - base.retried,
            refused: now.refused - base.refused,
            deferred: now.deferred - base.deferred,
            overloaded: now.overloaded - base.overloaded,
            under_way: now.under_way,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn queued_holds_and_payments_share_one_call_each_with_its_own_outcome() {
        let (store, _db) = store().await;
        let sched = schedule(&store).await;
        let users = admitted(&store, 25).await;
        let paying = holders(&store, &users[..4], sched).await;
        let base = store.group_commit_stats();

        let (conn, first) = busy_store(&store, sched).await;
        let mut tasks = tokio::task::JoinSet::new();
        // 16 holds of free seats 1..16 (users 4..20); seat 30 for users 20 and 21
        // (one wins); seat 41 for user 22 (held: taken); three holds of user 23 with
        // a cap of 2 (the third is refused); four payments of held seats.
        let mut spawn_hold = |what: &'static str, req: NewHold| {
            let s = store.clone();
            tasks.spawn(async move { (what, s.hold(req).await.map(|h| h.id == req.id)) });
        };
        for (k, &u) in users[4..20].iter().enumerate() {
            spawn_hold("free", hold(u, sched, k as i64 + 1));
        }
        spawn_hold("contested", hold(users[20], sched, 30));
        spawn_hold("contested", hold(users[21], sched, 30));
        spawn_hold("taken", hold(users[22], sched, 41));
        for seat in 31..34 {
            spawn_hold("capped", hold(users[23], sched, seat));
        }
        for &(u, id) in &paying {
            let s = store.clone();
            tasks.spawn(async move {
                let r = s.pay(pay(u, id)).await;
                ("pay", Ok(matches!(r, Ok(ref p) if p.reservation == id)))
            });
        }
        wait_for(&store, "the writes never queued", |g| {
            g.queued >= base.queued + 26
        })
        .await;
        drop(conn);
        first.await.expect("first write");

        let mut counts = std::collections::BTreeMap::new();
        while let Some(done) = tasks.join_next().await {
            let (what, outcome) = done.expect("task");
            let outcome = match outcome {
                Ok(true) => "won",
                Err(HoldRepoError::SeatTaken) => "seat taken",
                Err(HoldRepoError::HoldLimit) => "hold limit",
                other => panic!("unexpected outcome of {what}: {other:?}"),
            };
            *counts.entry((what, outcome)).or_insert(0) += 1;
        }
        assert_eq!(
            counts.into_iter().collect::<Vec<_>>(),
            vec![
                (("capped", "hold limit"), 1),
                (("capped", "won"), 2),
                (("contested", "seat taken"), 1),
                (("contested", "won"), 1),
                (("free", "won"), 16),
                (("pay", "won"), 4),
                (("taken", "seat taken"), 1),
            ]
        );
        // One call for the holds, one for the payments; the three refusals.
        assert_eq!(
            since(store.group_commit_stats(), base),
            GroupCommitStats {
                direct: 2,
                queued: 26,
                batches: 2,
                batched: 26,
                refused: 3,
                ..GroupCommitStats::default()
            }
        );
        // What the calls committed, read back.
        let seats = store.seats(sched, T0).await.expect("seats");
        let state = |no: u16| &seats[usize::from(no) - 1].state;
        assert!((1..=16).all(|no| matches!(state(no), SeatState::Held { .. })));
        assert!((41..=44).all(|no| matches!(state(no), SeatState::Sold)));
        let held = seats
            .iter()
            .filter(|s| matches!(s.state, SeatState::Held { .. }))
            .count();
        // Seats 1..16, 30, two of 31..33, and 50 (the first write).
        assert_eq!(held, 16 + 1 + 2 + 1);
        for &(u, _) in &paying {
            assert_eq!(store.balance(u.0).await.expect("balance").minor_units(), 0);
            assert_eq!(store.payments_of(u.0, 10).await.expect("payments").len(), 1);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_write_whose_seat_another_transaction_locked_runs_alone_after_the_batch() {
        let (store, db) = store().await;
        let sched = schedule(&store).await;
        let users = admitted(&store, 5).await;
        // Another instance's transaction has seat 5 locked.
        let mut other = sqlx::PgConnection::connect(&db.url).await.expect("connect");
        let mut tx = other.begin().await.expect("begin");
        sqlx::query("SELECT 1 FROM seats WHERE schedule_id = $1 AND seat_no = 5 FOR UPDATE")
            .bind(sched.get())
            .fetch_one(&mut *tx)
            .await
            .expect("lock seat 5");
        let base = store.group_commit_stats();

        let (conn, first) = busy_store(&store, sched).await;
        let mut tasks = Vec::new();
        for (k, &u) in users.iter().enumerate() {
            let s = store.clone();
            let req = hold(u, sched, k as i64 + 1);
            tasks.push(tokio::spawn(async move {
                s.hold(req).await.map(|h| h.id == req.id)
            }));
        }
        wait_for(&store, "the writes never queued", |g| {
            g.queued >= base.queued + 5
        })
        .await;
        drop(conn);
        first.await.expect("first write");
        // Seats 1..4 are held by the batch; seat 5's hold was sent back, and waits
        // alone for the lock.
        wait_for(&store, "no write was sent back", |g| {
            g.deferred > base.deferred
        })
        .await;
        let last = tasks.pop().expect("seat 5");
        for t in tasks {
            assert_eq!(t.await.expect("task"), Ok(true));
        }
        assert!(!last.is_finished(), "the hold of seat 5 waits for its lock");
        tx.rollback().await.expect("rollback");
        assert_eq!(last.await.expect("task"), Ok(true));
        assert_eq!(
            since(store.group_commit_stats(), base),
            GroupCommitStats {
                direct: 3,
                queued: 5,
                batches: 1,
                batched: 5,
                deferred: 1,
                ..GroupCommitStats::default()
            }
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_failing_call_is_rolled_back_and_every_write_runs_again_alone() {
        let (store, _db) = store().await;
        let sched = schedule(&store).await;
        let users = admitted(&store, 5).await;
        let paying = holders(&store, &users, sched).await;
        // User 0 pays now; user 3 then reuses that payment's id, which fails the
        // primary key inside the batch and rolls the whole call back.
        let (u0, r0) = paying[0];
        let used = store.pay(pay(u0, r0)).await.expect("pay").id;
        let base = store.group_commit_stats();

        let (conn, first) = busy_store(&store, sched).await;
        let mut tasks = Vec::new();
        for (k, &(u, id)) in paying.iter().enumerate().skip(1) {
            let s = store.clone();
            let mut req = pay(u, id);
            if k == 3 {
                req.id = used;
            }
            tasks.push(tokio::spawn(async move { s.pay(req).await }));
        }
        wait_for(&store, "the writes never queued", |g| {
            g.queued >= base.queued + 4
        })
        .await;
        drop(conn);
        first.await.expect("first write");
        let mut outcomes = Vec::new();
        for t in tasks {
            outcomes.push(t.await.expect("task"));
        }
        for (k, outcome) in outcomes.iter().enumerate() {
            if k + 1 == 3 {
                assert!(
                    matches!(outcome, Err(PayRepoError::Store(StoreError::Failed(_)))),
                    "{outcome:?}"
                );
            } else {
                assert!(outcome.is_ok(), "{outcome:?}");
            }
        }
        for (k, &(u, _)) in paying.iter().enumerate() {
            let paid = usize::from(k != 3);
            assert_eq!(
                store.payments_of(u.0, 10).await.expect("payments").len(),
                paid
            );
        }
        let stats = since(store.group_commit_stats(), base);
        assert_eq!((stats.batches, stats.retried, stats.queued), (0, 1, 4));
        // The first write, its user's issue and the four again alone.
        assert_eq!(stats.direct, 6);
        // The rolled-back call left no event: one payment.completed per payment.
        let mut paid: Vec<PaymentId> = booking_testkit::stress::feed_of(&store)
            .await
            .into_iter()
            .filter_map(|e| match e.data {
                booking_core::EventData::PaymentCompleted { payment, .. } => Some(payment),
                _ => None,
            })
            .collect();
        let mut want = vec![used];
        for (u, _) in paying.iter().skip(1) {
            want.extend(
                store
                    .payments_of(u.0, 10)
                    .await
                    .expect("payments")
                    .iter()
                    .map(|p| p.id),
            );
        }
        paid.sort_unstable();
        want.sort_unstable();
        assert_eq!(paid, want);
    }

    fn issue(user: UserId, token: TokenId) -> IssueRequest {
        ports::issue(user, token, T0, 1_000)
    }

    /// Starts an issue on `store` in a task of its own.
    fn spawn_issue(
        store: &PgStore,
        req: IssueRequest,
    ) -> tokio::task::JoinHandle<Result<QueueEntry, IssueRepoError>> {
        let s = store.clone();
        tokio::spawn(async move { s.issue(req).await })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn queued_issues_share_one_call_and_the_rest_run_alone() {
        let (store, _db) = store().await;
        let sched = schedule(&store).await;
        // A user with a live place already (place 1).
        let (placed, placed_seq) = admitted(&store, 1).await[0];
        let base = store.group_commit_stats();
        let (conn, first) = busy_store(&store, sched).await;
        let fresh: Vec<UserId> = (0..10).map(|_| UserId::random()).collect();
        let twice = UserId::random();
        let mut tasks = Vec::new();
        for &u in fresh.iter().chain([&twice, &twice, &placed]) {
            tasks.push((u, spawn_issue(&store, issue(u, TokenId::random()))));
        }
        wait_for(&store, "the issues never queued", |g| {
            g.queued >= base.queued + 13
        })
        .await;
        drop(conn);
        first.await.expect("first write");
        let mut places = std::collections::BTreeMap::new();
        for (u, t) in tasks {
            let e = t.await.expect("task").expect("issue");
            assert_eq!(e.user, u);
            if let Some(seq) = places.insert(u, e.seq) {
                assert_eq!(seq, e.seq, "one place per user");
            }
        }
        assert_eq!(places[&placed], placed_seq, "a live place is returned");
        // Places 2..=12 for the eleven new users, no gap, no repeat; 13 = the
        // first write's user (admitted by busy_store before the issues).
        let mut new: Vec<u64> = places
            .iter()
            .filter(|(u, _)| **u != placed)
            .map(|(_, s)| s.get())
            .collect();
        new.sort_unstable();
        assert_eq!(new, (3..=13).collect::<Vec<_>>());
        assert_eq!(store.counters().await.expect("counters").last_seq, 13);
        // One call carried the thirteen; the second ask of `twice` and the user who
        // had a place were sent back and ran alone (with the first hold and its
        // user's issue: 4 alone).
        assert_eq!(
            since(store.group_commit_stats(), base),
            GroupCommitStats {
                direct: 4,
                queued: 13,
                batches: 1,
                batched: 13,
                deferred: 2,
                ..GroupCommitStats::default()
            }
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_failing_issue_call_is_rolled_back_and_no_place_is_lost_or_repeated() {
        let (store, _db) = store().await;
        let sched = schedule(&store).await;
        let used = store
            .issue(issue(UserId::random(), TokenId::random()))
            .await
            .expect("issue")
            .token_id;
        let base = store.group_commit_stats();
        let (conn, first) = busy_store(&store, sched).await;
        // The third reuses a token id, which fails the unique key inside the call.
        let mut tasks = Vec::new();
        for k in 0..6 {
            let token = if k == 2 { used } else { TokenId::random() };
            tasks.push(spawn_issue(&store, issue(UserId::random(), token)));
        }
        wait_for(&store, "the issues never queued", |g| {
            g.queued >= base.queued + 6
        })
        .await;
        drop(conn);
        first.await.expect("first write");
        let mut seqs = Vec::new();
        for (k, t) in tasks.into_iter().enumerate() {
            match t.await.expect("task") {
                Ok(e) => seqs.push(e.seq.get()),
                Err(e) => assert_eq!(k, 2, "only the reused token id fails: {e:?}"),
            }
        }
        seqs.sort_unstable();
        // Place 1 was issued first, 2 is the first write's user: the five are 3..=7.
        assert_eq!(seqs, (3..=7).collect::<Vec<_>>());
        assert_eq!(store.counters().await.expect("counters").last_seq, 7);
        let stats = since(store.group_commit_stats(), base);
        assert_eq!((stats.batches, stats.retried, stats.queued), (0, 1, 6));
        assert_eq!(
            stats.direct, 8,
            "the first write, its user's issue and the six again alone"
        );
        // The rolled-back call left no event: one token.issued per place.
        let mut issued: Vec<u64> = booking_testkit::stress::feed_of(&store)
            .await
            .into_iter()
            .filter_map(|e| match e.data {
                booking_core::EventData::TokenIssued { seq, .. } => Some(seq.get()),
                _ => None,
            })
            .collect();
        issued.sort_unstable();
        assert_eq!(issued, (1..=7).collect::<Vec<_>>());
    }
}

/// Issue 18: 1,000 users charge, hold (two per seat) and pay at once over the three
/// instances while each relays and a reader pages: one event per committed change,
/// ids strictly increasing, none behind the reader's cursor.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn events_of_a_thousand_concurrent_changes_are_each_relayed_once_in_order() {
    let (c, _db) = cluster().await;
    stress::events_of_concurrent_changes(&c, 1_000).await;
}
