//! Ten thousand virtual users over HTTP against one spawned booking-http
//! instance on SQLite: they share a bounded pool of connections (not one socket
//! each), and not one request fails to reach the server. It is its own test
//! binary, so that it runs alone.

use std::time::{Duration, Instant};

use booking_core::Config;
use booking_core::domain::AdmissionPolicy;
use booking_sim::events::Op;
use booking_sim::plan::Plan;
use booking_sim::run::{SimConfig, TargetSpec, Ui, run};
use booking_sim::user::Behaviour;

const USERS: u32 = 10_000;
const CONNECTIONS: usize = 64;

#[tokio::test(flavor = "multi_thread")]
async fn ten_thousand_users_share_a_bounded_pool_without_transport_errors() {
    let dir = tempfile::tempdir().expect("dir");
    let url = format!("sqlite://{}", dir.path().join("many.db").display());
    let plan_secs = 8;
    let cfg = SimConfig {
        // Every user arrives within the first second, as in the report that
        // found one socket per user exhausting the process's descriptors.
        plan: Plan::constant(
            USERS,
            Duration::from_secs(plan_secs),
            Duration::from_secs(1),
        )
        .expect("plan"),
        seed: 10_000,
        // Unoptimised code on two cores: slow polls keep the load to what it
        // serves, and every user still takes a token and polls.
        behaviour: Behaviour {
            think_min: Duration::from_millis(1_000),
            think_max: Duration::from_millis(2_000),
            poll_every: Duration::from_millis(3_000),
            ..Behaviour::default()
        },
        policy: AdmissionPolicy::rate_and_capacity(100, Duration::from_millis(100), 500)
            .expect("policy"),
        engine: Config {
            hold_ttl: Duration::from_secs(10),
            session_ttl: Duration::from_secs(30),
            show_up_grace: Duration::from_secs(15),
            ..Config::default()
        },
        connections: CONNECTIONS,
        drain: Duration::from_secs(20),
        pool_size: 8,
        ..SimConfig::default()
    };
    let spec = TargetSpec::Spawn {
        n: 1,
        database: url,
    };
    let t0 = Instant::now();
    let o = run(&cfg, &spec, Ui::Quiet).await.expect("run");
    let wall = t0.elapsed();
    let r = &o.report;
    println!("{}", r.to_markdown());
    println!("wall time {wall:?}");
    assert_eq!(r.target.connections, CONNECTIONS);
    assert!(
        r.users.started >= u64::from(USERS),
        "every user took a token: {:?}, errors {:?} {:?}",
        r.users,
        r.errors,
        r.error_samples
    );
    let transport: u64 = r
        .errors
        .iter()
        .filter(|(k, _)| k.ends_with("/transport") || k.ends_with("/timeout"))
        .map(|(_, n)| n)
        .sum();
    assert_eq!(transport, 0, "{:?} {:?}", r.errors, r.error_samples);
    assert_eq!(r.op(Op::Issue).failed, 0, "{:?}", r.error_samples);
    let failed: u64 = r.operations.iter().map(|o| o.failed).sum();
    assert_eq!(failed, 0, "no request failed: {:?}", r.error_samples);
    // Users whose token came after the end of the plan stop there, so not
    // every user need have polled.
    assert!(r.op(Op::Poll).ok > 0);
    assert!(r.users.admitted > 0, "{:?}", r.users);
    assert!(r.audit.clean, "{:?}", r.audit.failed());
    assert_eq!(r.run_failure(), None);
    // The run ends at its plan plus at most the drain.
    assert!(
        wall < Duration::from_secs(plan_secs) + cfg.drain + Duration::from_secs(10),
        "{wall:?}"
    );
}
