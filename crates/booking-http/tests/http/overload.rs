//! An overloaded instance says so: with its writer blocked and its limit of hot
//! writes under way reached, a token request is answered 503 `unavailable` with
//! `Retry-After` at once, not queued without end; the requests within the limit get
//! their places once the writer is free.

use std::sync::Arc;

use booking_core::domain::UserId;
use booking_core::{Booking, Config, ManualClock, TokenSigner};
use booking_store::SqliteStore;
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use sqlx::Connection;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_the_limit_of_writes_under_way_a_request_gets_503_with_retry_after() {
    const LIMIT: u64 = 2;
    const ASKS: usize = 12;
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("overload.db");
    let store = SqliteStore::open_path(&path, 2).await.expect("store");
    store.set_max_hot_writes(LIMIT);
    let signer = TokenSigner::new(booking_testkit::SECRET).expect("signer");
    let clock = ManualClock::new(booking_testkit::T0);
    let booking = Arc::new(Booking::new(store, clock, signer, Config::default()).expect("booking"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let app = booking_http::router(
        booking,
        booking_http::RouterOptions {
            admin_key: None,
            rate_limits: booking_http::limits::RateLimits::off(),
            storage: None,
            line: None,
        },
    );
    tokio::spawn(booking_http::serve(listener, app, std::future::pending()));

    let url = format!("sqlite://{}", path.display());
    let mut blocker = sqlx::SqliteConnection::connect(&url)
        .await
        .expect("connect");
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut blocker)
        .await
        .expect("take the write lock");
    let http = Client::new();
    let mut asks = Vec::new();
    for _ in 0..ASKS {
        let (http, base) = (http.clone(), base.clone());
        asks.push(tokio::spawn(async move {
            let r = http
                .post(format!("{base}/v1/queue/tokens"))
                .json(&json!({"user_id": UserId::random().to_string()}))
                .send()
                .await
                .expect("send");
            let retry = r
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap_or("").to_owned());
            let status = r.status();
            let body: Value = r.json().await.expect("a JSON body");
            (status, retry, body)
        }));
    }
    // The refusals come while the writer is still blocked.
    let mut answered = Vec::new();
    let mut waiting = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    for a in asks {
        if a.is_finished() {
            answered.push(a.await.expect("task"));
        } else {
            waiting.push(a);
        }
    }
    while answered.len() < ASKS - LIMIT as usize {
        assert!(
            std::time::Instant::now() < deadline,
            "{} answered",
            answered.len()
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        let mut still = Vec::new();
        for a in waiting {
            if a.is_finished() {
                answered.push(a.await.expect("task"));
            } else {
                still.push(a);
            }
        }
        waiting = still;
    }
    for (status, retry, body) in &answered {
        assert_eq!(*status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert_eq!(body["error"]["code"], "unavailable", "{body}");
        assert_eq!(retry.as_deref(), Some("1"));
    }
    sqlx::query("ROLLBACK")
        .execute(&mut blocker)
        .await
        .expect("release");
    let mut seqs = Vec::new();
    for a in waiting {
        let (status, _, body) = a.await.expect("task");
        assert_eq!(status, StatusCode::CREATED, "{body}");
        seqs.push(body["seq"].as_u64().expect("seq"));
    }
    seqs.sort_unstable();
    assert_eq!(
        seqs,
        vec![1, 2],
        "the requests within the limit got the places"
    );
}
