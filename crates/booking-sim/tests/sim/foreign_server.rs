//! A run against a server the simulator does not own (`--url`), started here as
//! `booking serve` starts it by default: with its per-IP rate limit. The run
//! says why requests fail (429: the server is rate limiting this client) and
//! puts the admission policy it found back at the end.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use booking_core::domain::AdmissionPolicy;
use booking_core::{Booking, Config, MemoryStore, SystemClock, TokenSigner};
use booking_sim::http::{HttpOptions, HttpTarget, RATE_LIMIT_HINT};
use booking_sim::run::{TargetSpec, Ui, run};
use booking_sim::target::Target;

/// A memory-store booking-http on 127.0.0.1 with the server's default rate
/// limits; returns its base URL, admin key and a stop switch.
async fn serve_default() -> (String, String, tokio::sync::watch::Sender<bool>) {
    let booking = Arc::new(
        Booking::new(
            MemoryStore::new(),
            SystemClock,
            TokenSigner::new(b"a test secret of at least 32 bytes!!").expect("signer"),
            Config::default(),
        )
        .expect("booking"),
    );
    let admin_key = "test-admin-key-0123456789".to_owned();
    let app = booking_http::router(
        Arc::clone(&booking),
        booking_http::RouterOptions {
            admin_key: Some(admin_key.clone()),
            // The server's defaults: 500 requests a second per IP address.
            rate_limits: booking_http::limits::RateLimits::default(),
            ..booking_http::RouterOptions::default()
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(booking_http::serve(
        listener,
        app,
        booking_sim::http::stopped(stop_rx.clone()),
    ));
    tokio::spawn(booking_http::run_background(
        Arc::clone(&booking),
        booking_sim::http::background_options(booking.config()),
        booking_sim::http::stopped(stop_rx),
    ));
    (base, admin_key, stop_tx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_run_says_why_and_the_policy_is_put_back() {
    let (base, admin_key, stop_tx) = serve_default().await;

    // The operator's policy before the run.
    let operator = HttpTarget::with_options(
        vec![base.clone()],
        admin_key.clone(),
        HttpOptions::default(),
    )
    .expect("client");
    let theirs = AdmissionPolicy::new(Duration::from_millis(750), Some(7), Some(33)).expect("p");
    operator.set_policy(theirs).await.expect("set");

    // Enough users polling fast to pass 500 requests a second from one address.
    let mut cfg = common::small(400, 3, 41);
    cfg.behaviour.poll_every = Duration::from_millis(20);
    let spec = TargetSpec::Http {
        bases: vec![base.clone()],
        admin_key,
        admin_url: None,
        database: None,
    };
    let said = spec
        .changes(&cfg)
        .expect("a server not ours: changes are said");
    assert!(
        said.contains("adds a concert")
            && said.contains("admission policy")
            && said.contains("put back"),
        "{said}"
    );
    let o = run(&cfg, &spec, Ui::Quiet).await.expect("run");

    let r = &o.report;
    let limited: u64 = r
        .errors
        .iter()
        .filter(|(k, _)| k.ends_with("/rate_limited"))
        .map(|(_, n)| n)
        .sum();
    assert!(
        limited > 0,
        "the default limit answered 429: {:?}",
        r.errors
    );
    let sample = r
        .error_samples
        .iter()
        .find(|(k, _)| k.ends_with("/rate_limited"))
        .map(|(_, m)| m.clone())
        .expect("a sample of the 429s");
    assert!(
        sample.contains("429") && sample.contains(RATE_LIMIT_HINT),
        "{sample}"
    );
    assert!(
        RATE_LIMIT_HINT.contains("rate limiting this client")
            && RATE_LIMIT_HINT.contains("--rate-limit-ip 0")
    );
    assert!(r.to_markdown().contains("--rate-limit-ip 0"));

    let after = operator.current_policy().await.expect("read policy");
    let _ = stop_tx.send(true);
    assert_eq!(after, theirs, "the operator's policy is back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_room_with_users_waiting_is_refused_without_reuse() {
    let (base, admin_key, stop_tx) = serve_default().await;
    let operator = HttpTarget::with_options(
        vec![base.clone()],
        admin_key.clone(),
        HttpOptions::default(),
    )
    .expect("client");
    // Nobody admitted: a cap of one, taken by the first.
    let policy = AdmissionPolicy::new(Duration::from_secs(3_600), Some(1), Some(1)).expect("p");
    operator.set_policy(policy).await.expect("set");
    let http = reqwest::Client::new();
    for _ in 0..5 {
        let r = http
            .post(format!("{base}/v1/queue/tokens"))
            .json(&serde_json::json!({ "user_id": uuid::Uuid::new_v4().to_string() }))
            .send()
            .await
            .expect("issue");
        assert!(r.status().is_success(), "{}", r.status());
    }
    // The server's counters are cached for a moment: wait until it sees them.
    let mut waiting = 0;
    for _ in 0..40 {
        waiting = operator.queue_sample().await.expect("sample").waiting;
        if waiting >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(waiting >= 3, "{waiting} waiting");

    let spec = TargetSpec::Http {
        bases: vec![base.clone()],
        admin_key,
        admin_url: None,
        database: None,
    };
    let mut cfg = common::small(20, 1, 43);
    let err = run(&cfg, &spec, Ui::Quiet).await.expect_err("refused");
    let said = err.to_string();
    assert!(
        said.contains("user(s) waiting already") && said.contains("--reuse"),
        "{said}"
    );
    assert_eq!(
        operator.current_policy().await.expect("policy"),
        policy,
        "nothing changed"
    );
    // Still waiting (the count itself may be read from the server's counters
    // cache, a tick stale).
    assert!(operator.queue_sample().await.expect("sample").waiting > 0);

    cfg.reuse = true;
    let o = run(&cfg, &spec, Ui::Quiet).await.expect("run with --reuse");
    assert!(o.report.users.started > 0);
    let _ = stop_tx.send(true);
}
