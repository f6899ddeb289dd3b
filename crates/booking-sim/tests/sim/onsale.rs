//! The on-sale scenario, small, over HTTP: 300 users arrive within a second
//! for 2 dates x 50 seats on one spawned instance (SQLite). Exactly the
//! capacity is sold, every user gets a final answer (100 bought, 200 sold out),
//! and the report's figures add up.

use std::time::Duration;

use booking_core::domain::AdmissionPolicy;
use booking_sim::events::Op;
use booking_sim::run::{Onsale, Scenario, SimConfig, TargetSpec, Ui, run};
use booking_sim::user::Behaviour;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hundred_users_for_a_hundred_seats_over_http() {
    let dir = tempfile::tempdir().expect("dir");
    let url = format!("sqlite://{}", dir.path().join("onsale.db").display());
    let cfg = SimConfig {
        scenario: Scenario::Onsale(Onsale {
            users: 300,
            arrive_within: Duration::from_secs(1),
            max_duration: Duration::from_secs(60),
            relooks: 1,
        }),
        seed: 15,
        behaviour: Behaviour {
            think_min: Duration::ZERO,
            think_max: Duration::ZERO,
            poll_every: Duration::from_millis(200),
            ..Behaviour::default()
        },
        initial_dates: 2,
        seats_per_date: 50,
        restock: false,
        policy: AdmissionPolicy::new(Duration::from_millis(100), Some(100), None).expect("policy"),
        connections: 32,
        pool_size: 8,
        ..SimConfig::default()
    };
    let spec = TargetSpec::Spawn {
        n: 1,
        database: url,
    };
    let o = run(&cfg, &spec, Ui::Quiet).await.expect("run");
    let r = &o.report;
    println!("{}", r.to_markdown());
    assert!(r.audit.clean, "{:?}", r.audit.failed());
    assert!(r.errors.is_empty(), "{:?} {:?}", r.errors, r.error_samples);
    let s = r.onsale.as_ref().expect("on-sale figures");
    assert_eq!((s.users, s.capacity, s.expected_sold), (300, 100, 100));
    assert_eq!(s.sold_counted_in, "database");
    assert_eq!(s.sold, 100, "exactly the capacity is sold");
    assert!(s.sold_as_expected);
    assert_eq!(
        s.bought, 100,
        "every seat sold was bought by a user told so"
    );
    assert_eq!(s.sold_out, 200, "everyone else was told sold out");
    assert_eq!(s.unanswered, 0);
    assert_eq!(r.users.endings.get("paid"), Some(&100));
    assert_eq!(r.users.endings.get("sold_out"), Some(&200));
    assert_eq!(r.payments.count, 100);
    assert_eq!(r.op(Op::Pay).ok, 100);
    assert_eq!(r.op(Op::Charge).ok, 100);
    assert_eq!(r.op(Op::Issue).ok, 300);
    assert_eq!(r.op(Op::Hold).ok, 100, "one hold per buyer, none left over");
    let sold_out_at = s.time_to_sell_out_secs.expect("it sold out");
    let all = s.all_answered_secs.expect("every user answered");
    assert!(
        sold_out_at > 0.0 && sold_out_at <= all,
        "{sold_out_at} {all}"
    );
    assert_eq!(s.last_answer_secs, Some(all));
    assert!(
        all < r.elapsed_secs + 0.5,
        "the run ended once everyone was answered"
    );
    let p = &s.purchase_latency_us;
    assert!(p.p50 > 0 && p.p50 <= p.p99 && p.p99 <= p.p999 && p.p999 <= p.max);
    let requests: u64 = r.operations.iter().map(|o| o.count).sum();
    assert_eq!(
        s.requests_per_purchase,
        Some((requests as f64 / 100.0 * 10.0).round() / 10.0)
    );
    // Each buyer made at least issue, poll, dates, seats, hold, charge, pay.
    assert!(s.requests_per_purchase.expect("some") >= 7.0);
    assert!(s.server_cpu_secs_per_purchase.expect("spawned") > 0.0);
    // The server paces its clients, and the report shows what it asked.
    let pa = &s.poll_after_us;
    assert!(pa.p50 >= 250_000 && pa.max <= 20_000_000, "{pa:?}");
    let polls: u64 = s.polls_per_second.iter().map(|x| x.polls).sum();
    assert_eq!(polls, r.op(Op::Poll).count);
    // The server's own histograms counted the same requests.
    let on_server = |route: &str| {
        r.server_latency
            .iter()
            .find(|l| l.route == route)
            .map_or(0, |l| l.count)
    };
    assert_eq!(on_server("GET /v1/queue/status"), r.op(Op::Poll).count);
    assert_eq!(on_server("POST /v1/queue/tokens"), r.op(Op::Issue).count);
    assert_eq!(r.run_failure(), None);
    let md = r.to_markdown();
    assert!(
        md.contains("| sold / capacity | 100 / 100 (as expected, database) |"),
        "{md}"
    );
    assert!(
        md.contains("| bought / sold out / no answer | 100 / 200 / 0 |"),
        "{md}"
    );
}

/// The same sale with pushed status: waiting users hold one stream each instead
/// of polling, and learn admission or sold out from it. Exactly the capacity is
/// sold, everyone is answered, and no status poll is made.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_pushed_status_nobody_polls_and_everyone_is_answered() {
    let dir = tempfile::tempdir().expect("dir");
    let url = format!("sqlite://{}", dir.path().join("onsale.db").display());
    let cfg = SimConfig {
        scenario: Scenario::Onsale(Onsale {
            users: 300,
            arrive_within: Duration::from_secs(1),
            max_duration: Duration::from_secs(60),
            relooks: 1,
        }),
        seed: 16,
        behaviour: Behaviour {
            think_min: Duration::ZERO,
            think_max: Duration::ZERO,
            ..Behaviour::default()
        },
        initial_dates: 2,
        seats_per_date: 50,
        restock: false,
        policy: AdmissionPolicy::new(Duration::from_millis(100), Some(100), None).expect("policy"),
        connections: 32,
        pool_size: 8,
        push: true,
        baseline: true,
        ..SimConfig::default()
    };
    let spec = TargetSpec::Spawn {
        n: 1,
        database: url.clone(),
    };
    let o = run(&cfg, &spec, Ui::Quiet).await.expect("run");
    let r = &o.report;
    println!("{}", r.to_markdown());
    assert!(r.audit.clean, "{:?}", r.audit.failed());
    assert!(r.errors.is_empty(), "{:?} {:?}", r.errors, r.error_samples);
    let s = r.onsale.as_ref().expect("on-sale figures");
    assert_eq!(s.sold, 100, "exactly the capacity is sold");
    assert_eq!(s.bought, 100);
    assert_eq!(s.sold_out, 200);
    assert_eq!(s.unanswered, 0);
    assert_eq!(r.op(Op::Poll).count, 0, "nobody polled");
    // Everyone who was told to wait opened one stream; nobody opened two.
    let watches = r.op(Op::Watch).count;
    assert!(watches > 0 && watches <= 300, "{watches}");
    assert_eq!(r.op(Op::Watch).ok, watches);
    assert_eq!(r.run_failure(), None);
    let streams = r
        .server_latency
        .iter()
        .find(|l| l.route == "GET /v1/queue/events")
        .expect("the server counted the streams");
    assert_eq!(streams.count, watches);

    // The baselines of the same run, and their tables gone from the database.
    let b = r.baseline.as_ref().expect("baselines measured");
    assert!(b.hello_world.requests_per_sec > 0.0, "{b:?}");
    assert!(b.hello_world.p50_us <= b.hello_world.p99_us, "{b:?}");
    let sql = b.raw_sql.as_ref().expect("raw SQL on the run's database");
    assert_eq!(sql.backend, "sqlite");
    assert!(sql.three_statement_tx_per_sec > 0.0 && sql.insert_per_sec > 0.0);
    let md = r.to_markdown();
    assert!(
        md.contains("## Baselines (same run, just before the load)"),
        "{md}"
    );
    assert!(md.contains("Seats sold per second until sold out"), "{md}");
    let conn = sqlx::SqlitePool::connect(&url).await.expect("open");
    let n: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name LIKE 'bench_%'",
    )
    .fetch_one(&conn)
    .await
    .expect("tables");
    assert_eq!(n, 0, "the raw tables were dropped");
}
