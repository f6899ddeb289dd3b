//! Concurrency on SQLite with three independent pools on one database file, standing
//! for three server processes: outcomes counted exactly.

use booking_store::SqliteStore;
use booking_testkit::stress::{self, Cluster};

const INSTANCES: usize = 3;

async fn cluster() -> (Cluster<SqliteStore>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("booking.db");
    let mut stores = Vec::new();
    for _ in 0..INSTANCES {
        stores.push(SqliteStore::open_path(&path, 4).await.expect("open"));
    }
    (Cluster::new(stores), dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn i1_thousand_concurrent_holds_on_one_seat_have_one_winner() {
    let (c, _dir) = cluster().await;
    stress::holds_on_one_seat(&c, 1_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_holds_of_one_user_stop_at_the_cap() {
    let (c, _dir) = cluster().await;
    stress::one_users_holds_stop_at_the_cap(&c, 50).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn i2_five_hundred_debits_on_a_balance_covering_a_hundred() {
    let (c, _dir) = cluster().await;
    stress::debits_on_one_balance(&c, 500, 100).await;
}

/// Payments of several holds racing with payments of some of them, on every
/// instance: one per user wins, all or nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn i5_two_hundred_users_race_four_payments_of_their_three_holds() {
    let (c, _dir) = cluster().await;
    stress::payments_of_several_holds_race(&c, 200).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn i2_thousand_concurrent_charges_are_all_counted() {
    let (c, _dir) = cluster().await;
    stress::charges_none_lost(&c, 1_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn i3_thousand_concurrent_tokens_are_a_strict_sequence_admitted_in_order() {
    let (c, _dir) = cluster().await;
    stress::tokens_in_strict_sequence(&c, 1_000, 100).await;
}

/// A sale opening: 10,000 users at once (2,500 clients asking for four users each,
/// one after another; 125 of them twice at the same time) over the instances.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn i3_ten_thousand_tokens_at_once_take_places_in_arrival_order() {
    let (c, _dir) = cluster().await;
    stress::token_burst_in_arrival_order(&c, 2_500, 4, 20).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn r6_concurrent_tickers_advance_once_per_tick() {
    let (c, _dir) = cluster().await;
    stress::tickers_advance_once_per_tick(&c, 20).await;
}

// ---------------------------------------------------------------------------------
// Group commit: hot writes that queue behind a busy writer share one transaction.
// The tests keep the writer busy themselves, so that every write queues, and check
// each caller's own outcome exactly.

mod group_commit {
    use std::time::Duration;

    use booking_core::domain::{
        QueueEntry, QueueSeq, ScheduleId, SeatState, Timestamp, TokenId, UserId,
    };
    use booking_core::ports::{
        CatalogRepo, ChargeRequest, HoldRepo, HoldRepoError, IssueRepoError, IssueRequest, NewHold,
        PaymentRepo, QueueRepo, WalletRepo,
    };
    use booking_store::SqliteStore;
    use booking_store::sqlite::GroupCommitStats;
    use booking_testkit::ports;

    const T0: Timestamp = Timestamp::from_millis(1_767_225_600_000);

    async fn store() -> (SqliteStore, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = SqliteStore::open_path(&dir.path().join("booking.db"), 4)
            .await
            .expect("open");
        (store, dir)
    }

    async fn schedule(store: &SqliteStore) -> ScheduleId {
        ports::schedule(store, 50, T0.plus(Duration::from_secs(86_400))).await
    }

    async fn admitted(store: &SqliteStore, n: usize) -> Vec<(UserId, QueueSeq)> {
        ports::admitted_users(store, n, T0, T0.plus(Duration::from_secs(3_600))).await
    }

    fn hold(user: (UserId, QueueSeq), schedule: ScheduleId, seat: i64) -> NewHold {
        ports::hold(user, schedule, seat, T0, Duration::from_secs(300), 2)
    }

    fn charge(user: UserId, amount: i64, key: Option<&str>) -> ChargeRequest {
        ports::charge(user, amount, key, 1_000_000, T0)
    }

    /// Takes the writer, and starts one hot write that waits for it (the first hot
    /// write of an idle store runs alone), so that the hot writes started next queue
    /// for the group commit. Returns the writer and the waiting write's task.
    async fn busy_writer(
        store: &SqliteStore,
    ) -> (
        sqlx::pool::PoolConnection<sqlx::Sqlite>,
        tokio::task::JoinHandle<()>,
    ) {
        let writer = store.write_pool().acquire().await.expect("writer");
        let direct = store.group_commit_stats().direct;
        let s = store.clone();
        let first = tokio::spawn(async move {
            s.charge(charge(UserId::random(), 1, None))
                .await
                .expect("charge");
        });
        tokio::time::timeout(Duration::from_secs(60), async {
            while store.group_commit_stats().direct == direct {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("the first write never started");
        (writer, first)
    }

    /// Keeps the writer busy until `queued` writes in all have queued for it (since
    /// the store opened), then frees it.
    async fn release_when_queued(
        store: &SqliteStore,
        writer: sqlx::pool::PoolConnection<sqlx::Sqlite>,
        queued: u64,
    ) {
        tokio::time::timeout(Duration::from_secs(60), async {
            while store.group_commit_stats().queued < queued {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("the writes never queued");
        drop(writer);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn queued_holds_charges_and_payments_share_one_commit_each_with_its_own_outcome() {
        let (store, _dir) = store().await;
        let sched = schedule(&store).await;
        let users = admitted(&store, 24).await;
        // Users 0..4 hold a seat and have the money before the batch: they pay in it.
        let mut paying = Vec::new();
        for (i, &u) in users[..4].iter().enumerate() {
            store.charge(charge(u.0, 100, None)).await.expect("charge");
            let h = store
                .hold(hold(u, sched, 41 + i as i64))
                .await
                .expect("hold");
            paying.push((u, h.id));
        }
        let base = store.group_commit_stats();

        let (writer, opener) = busy_writer(&store).await;
        let mut tasks = tokio::task::JoinSet::new();
        // 16 holds of free seats 1..16 (users 4..20), 2 holds of seat 30 (users 20,
        // 21: one wins), a hold of a seat held in this batch's payments (user 22,
        // seat 41: taken), 6 charges, 4 payments.
        for (k, &u) in users[4..20].iter().enumerate() {
            let s = store.clone();
            let req = hold(u, sched, k as i64 + 1);
            tasks.spawn(async move { ("hold", s.hold(req).await.map(|h| h.id == req.id)) });
        }
        for &u in &users[20..23] {
            let s = store.clone();
            let seat = if u == users[22] { 41 } else { 30 };
            let req = hold(u, sched, seat);
            tasks.spawn(async move { ("contested", s.hold(req).await.map(|h| h.id == req.id)) });
        }
        let wallet = UserId::random();
        for k in 0..6 {
            let s = store.clone();
            tasks.spawn(async move {
                let r = s.charge(charge(wallet, 10 + k, None)).await;
                ("charge", Ok(matches!(r, Ok(ref c) if !c.replayed && c.entry.amount.minor_units() == 10 + k)))
            });
        }
        for &(u, id) in &paying {
            let s = store.clone();
            tasks.spawn(async move {
                let r = s.pay(ports::pay(u, id, T0)).await;
                ("pay", Ok(matches!(r, Ok(ref p) if p.reservation == id)))
            });
        }
        release_when_queued(&store, writer, base.queued + 29).await;
        opener.await.expect("first write");

        let (mut holds, mut won, mut taken, mut charges, mut pays) = (0, 0, 0, 0, 0);
        while let Some(done) = tasks.join_next().await {
            match done.expect("task") {
                ("hold", Ok(true)) => holds += 1,
                ("contested", Ok(true)) => won += 1,
                ("contested", Err(HoldRepoError::SeatTaken)) => taken += 1,
                ("charge", Ok(true)) => charges += 1,
                ("pay", Ok(true)) => pays += 1,
                other => panic!("unexpected outcome {other:?}"),
            }
        }
        assert_eq!((holds, won, taken, charges, pays), (16, 1, 2, 6, 4));

        let stats = store.group_commit_stats();
        assert_eq!(
            GroupCommitStats {
                batches: stats.batches - base.batches,
                batched: stats.batched - base.batched,
                retried: stats.retried - base.retried,
                refused: stats.refused - base.refused,
                ..GroupCommitStats::default()
            },
            // The two refusals: the loser of seat 30, and seat 41 (held).
            GroupCommitStats {
                batches: 1,
                batched: 29,
                refused: 2,
                ..GroupCommitStats::default()
            }
        );
        // What the batch committed, read back.
        assert_eq!(
            store.balance(wallet).await.expect("balance").minor_units(),
            (10..16).sum::<i64>()
        );
        let seats = store.seats(sched, T0).await.expect("seats");
        let held = seats
            .iter()
            .filter(|s| matches!(s.state, SeatState::Held { .. }))
            .count();
        let sold = seats
            .iter()
            .filter(|s| matches!(s.state, SeatState::Sold))
            .count();
        assert_eq!((held, sold), (17, 4));
        for &(u, _) in &paying {
            assert_eq!(store.balance(u.0).await.expect("balance").minor_units(), 0);
            assert_eq!(store.payments_of(u.0, 10).await.expect("payments").len(), 1);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_failing_statement_rolls_its_batch_back_and_every_write_runs_again_alone() {
        let (store, _dir) = store().await;
        let user = UserId::random();
        let first = store
            .charge(charge(user, 7, Some("top-up")))
            .await
            .expect("charge");
        assert!(!first.replayed);
        let base = store.group_commit_stats();

        let (writer, opener) = busy_writer(&store).await;
        let mut tasks = tokio::task::JoinSet::new();
        // Five new charges and, among them, the first one retried with its key: its
        // statement fails the unique key, which rolls the batch back.
        for k in 0..6 {
            let s = store.clone();
            let req = if k == 3 {
                charge(user, 7, Some("top-up"))
            } else {
                charge(user, 1, Some(&format!("other-{k}")))
            };
            tasks.spawn(async move { s.charge(req).await.expect("charge") });
        }
        release_when_queued(&store, writer, base.queued + 6).await;
        opener.await.expect("first write");

        let mut replayed = Vec::new();
        let mut applied = 0;
        while let Some(done) = tasks.join_next().await {
            let receipt = done.expect("task");
            if receipt.replayed {
                replayed.push(receipt.entry);
            } else {
                assert_eq!(receipt.entry.amount.minor_units(), 1);
                applied += 1;
            }
        }
        assert_eq!(applied, 5);
        assert_eq!(replayed, vec![first.entry]);
        assert_eq!(
            store.balance(user).await.expect("balance").minor_units(),
            7 + 5
        );
        assert_eq!(store.ledger(user, 100).await.expect("ledger").len(), 6);
        let stats = store.group_commit_stats();
        assert_eq!(stats.retried - base.retried, 1);
        assert_eq!(stats.batches - base.batches, 0);
        // The rolled-back batch left no event: one wallet.charged per charge
        // applied, with the balances in order.
        let balances: Vec<i64> = booking_testkit::stress::feed_of(&store)
            .await
            .into_iter()
            .filter_map(|e| match e.data {
                booking_core::EventData::WalletCharged {
                    user: u,
                    balance_after,
                    ..
                } if u == user => Some(balance_after.minor_units()),
                _ => None,
            })
            .collect();
        assert_eq!(balances, (7..=12).collect::<Vec<_>>());
    }

    fn issue(user: UserId, token: TokenId) -> IssueRequest {
        ports::issue(user, token, T0, 1_000)
    }

    fn spawn_issue(
        store: &SqliteStore,
        req: IssueRequest,
    ) -> tokio::task::JoinHandle<Result<QueueEntry, IssueRepoError>> {
        let s = store.clone();
        tokio::spawn(async move { s.issue(req).await })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn queued_issues_share_one_commit_and_the_rest_are_decided_alone() {
        let (store, _dir) = store().await;
        let (placed, placed_seq) = admitted(&store, 1).await[0];
        let base = store.group_commit_stats();
        let (writer, opener) = busy_writer(&store).await;
        let fresh: Vec<UserId> = (0..10).map(|_| UserId::random()).collect();
        let twice = UserId::random();
        let mut tasks = Vec::new();
        for &u in fresh.iter().chain([&twice, &twice, &placed]) {
            tasks.push((u, spawn_issue(&store, issue(u, TokenId::random()))));
        }
        release_when_queued(&store, writer, base.queued + 13).await;
        opener.await.expect("first write");
        let mut places = std::collections::BTreeMap::new();
        for (u, t) in tasks {
            let e = t.await.expect("task").expect("issue");
            assert_eq!(e.user, u);
            if let Some(seq) = places.insert(u, e.seq) {
                assert_eq!(seq, e.seq, "one place per user");
            }
        }
        assert_eq!(places[&placed], placed_seq, "a live place is returned");
        let mut new: Vec<u64> = places
            .iter()
            .filter(|(u, _)| **u != placed)
            .map(|(_, s)| s.get())
            .collect();
        new.sort_unstable();
        assert_eq!(new, (2..=12).collect::<Vec<_>>());
        assert_eq!(store.counters().await.expect("counters").last_seq, 12);
        // One commit for the thirteen; the second ask of `twice` and the user with a
        // place inserted nothing there and were decided alone.
        let g = store.group_commit_stats();
        assert_eq!(
            (
                g.queued - base.queued,
                g.batches - base.batches,
                g.batched - base.batched,
                g.refused - base.refused
            ),
            (13, 1, 13, 2)
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_failing_issue_batch_is_rolled_back_and_no_place_is_lost_or_repeated() {
        let (store, _dir) = store().await;
        let used = store
            .issue(issue(UserId::random(), TokenId::random()))
            .await
            .expect("issue")
            .token_id;
        let base = store.group_commit_stats();
        let (writer, opener) = busy_writer(&store).await;
        // The third reuses a token id, which fails the unique key inside the batch.
        let mut tasks = Vec::new();
        for k in 0..6 {
            let token = if k == 2 { used } else { TokenId::random() };
            tasks.push(spawn_issue(&store, issue(UserId::random(), token)));
        }
        release_when_queued(&store, writer, base.queued + 6).await;
        opener.await.expect("first write");
        let mut seqs = Vec::new();
        for (k, t) in tasks.into_iter().enumerate() {
            match t.await.expect("task") {
                Ok(e) => seqs.push(e.seq.get()),
                Err(e) => assert_eq!(k, 2, "only the reused token id fails: {e:?}"),
            }
        }
        seqs.sort_unstable();
        assert_eq!(seqs, (2..=6).collect::<Vec<_>>());
        assert_eq!(store.counters().await.expect("counters").last_seq, 6);
        let g = store.group_commit_stats();
        assert_eq!(
            (
                g.queued - base.queued,
                g.batches - base.batches,
                g.retried - base.retried
            ),
            (6, 0, 1)
        );
    }
}

/// Issue 18: as on PostgreSQL, on three pools sharing one file.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn events_of_a_thousand_concurrent_changes_are_each_relayed_once_in_order() {
    let (c, _dir) = cluster().await;
    stress::events_of_concurrent_changes(&c, 1_000).await;
}
