//! Pushed status over real HTTP: `GET /v1/queue/events` streams Server-Sent Events
//! that tell a waiting user its place, then admission or sold out the moment the
//! instance sees it, across instances sharing one database.

use std::sync::Arc;
use std::time::Duration;

use booking_core::domain::{AdmissionPolicy, UserId};
use booking_core::{Booking, Config, ManualClock, TokenSigner};
use booking_store::SqliteStore;
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

/// How long a test waits for an event that should come within a feed refresh or
/// two; generous, for a loaded machine.
const DEADLINE: Duration = Duration::from_secs(20);

struct Node {
    base: String,
    booking: Arc<Booking<SqliteStore, ManualClock>>,
}

async fn node(path: &std::path::Path, clock: &ManualClock) -> Node {
    let store = SqliteStore::open_path(path, 4).await.expect("store");
    let signer = TokenSigner::new(booking_testkit::SECRET).expect("signer");
    let booking =
        Arc::new(Booking::new(store, clock.clone(), signer, Config::default()).expect("booking"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let app = booking_http::router(
        Arc::clone(&booking),
        booking_http::RouterOptions {
            admin_key: None,
            rate_limits: booking_http::limits::RateLimits::off(),
            storage: None,
            line: None,
        },
    );
    tokio::spawn(booking_http::serve(listener, app, std::future::pending()));
    Node { base, booking }
}

async fn token(http: &Client, base: &str) -> String {
    let r = http
        .post(format!("{base}/v1/queue/tokens"))
        .json(&json!({"user_id": UserId::random().to_string()}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::CREATED);
    let v: Value = r.json().await.expect("json");
    v["token"].as_str().expect("token").to_owned()
}

/// One open event stream, read event by event.
struct Stream {
    resp: reqwest::Response,
    buf: String,
}

/// One Server-Sent Event: its name and its data as JSON.
#[derive(Debug)]
struct Sse {
    event: String,
    data: Value,
    retry_ms: Option<u64>,
}

impl Stream {
    async fn open(http: &Client, url: String, bearer: Option<&str>) -> Stream {
        let mut req = http.get(url);
        if let Some(t) = bearer {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.expect("send");
        assert_eq!(resp.status(), StatusCode::OK);
        let ctype = resp.headers()["content-type"].to_str().expect("ascii");
        assert!(ctype.starts_with("text/event-stream"), "{ctype}");
        Stream {
            resp,
            buf: String::new(),
        }
    }

    /// The next event, `None` when the server ended the stream. Comment lines
    /// (keep-alive) are skipped.
    async fn next(&mut self) -> Option<Sse> {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let mut event = String::from("message");
                let mut data = String::new();
                let mut retry_ms = None;
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        event = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim());
                    } else if let Some(v) = line.strip_prefix("retry:") {
                        retry_ms = v.trim().parse().ok();
                    }
                }
                if data.is_empty() {
                    continue;
                }
                return Some(Sse {
                    event,
                    data: serde_json::from_str(&data).expect("event data is JSON"),
                    retry_ms,
                });
            }
            let chunk = tokio::time::timeout(DEADLINE, self.resp.chunk())
                .await
                .expect("an event or the end within the deadline")
                .expect("read");
            match chunk {
                Some(bytes) => self
                    .buf
                    .push_str(std::str::from_utf8(&bytes).expect("utf-8")),
                None => return None,
            }
        }
    }

    /// Skips waiting events until one with another status comes; returns it.
    async fn until_not_waiting(&mut self) -> Sse {
        loop {
            let e = self.next().await.expect("an event before the end");
            if e.data["status"] != "waiting" {
                return e;
            }
        }
    }
}

async fn admit(booking: &Booking<SqliteStore, ManualClock>, clock: &ManualClock, n: u32) {
    let p = AdmissionPolicy::rate(n, Duration::from_secs(1)).expect("policy");
    booking.set_policy(p).await.expect("policy");
    clock.advance(Duration::from_secs(1));
    booking.tick().await.expect("tick");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_user_is_told_its_place_then_admission_and_the_stream_ends() {
    let dir = tempfile::tempdir().expect("dir");
    let clock = ManualClock::new(booking_testkit::T0);
    let n = node(&dir.path().join("events.db"), &clock).await;
    let http = Client::new();
    // Hold admission until the streams are open.
    admit(&n.booking, &clock, 1).await;
    n.booking.set_paused(true).await.expect("pause");
    let mut tokens = Vec::new();
    for _ in 0..3 {
        tokens.push(token(&http, &n.base).await);
    }

    // The third by header, the first by query parameter (EventSource's way).
    let url = format!("{}/v1/queue/events", n.base);
    let mut third = Stream::open(&http, url.clone(), Some(&tokens[2])).await;
    let mut first = Stream::open(&http, format!("{url}?token={}", tokens[0]), None).await;
    let e = third.next().await.expect("first event");
    assert_eq!(e.event, "status");
    assert_eq!(e.data["status"], "waiting", "{:?}", e.data);
    assert_eq!(e.data["position"], 3, "{:?}", e.data);
    assert_eq!(e.data["paused"], true, "{:?}", e.data);
    assert_eq!(
        e.retry_ms,
        e.data["poll_after_ms"].as_u64(),
        "retry follows the pace"
    );
    let e = first.next().await.expect("first event");
    assert_eq!(e.data["position"], 1, "{:?}", e.data);

    // One admitted: the first is told at once, and its stream ends.
    n.booking.set_paused(false).await.expect("resume");
    clock.advance(Duration::from_secs(1));
    n.booking.tick().await.expect("tick");
    let e = first.until_not_waiting().await;
    assert_eq!(e.data["status"], "active", "{:?}", e.data);
    assert!(e.data["active_until"].is_string(), "{:?}", e.data);
    assert!(
        first.next().await.is_none(),
        "a final status ends the stream"
    );

    // The third is told admission resumed, and that it moved up to 2 (at the
    // pace of its last event), then is admitted by the next ticks.
    let mut resumed = false;
    loop {
        let e = third.next().await.expect("a new place");
        assert_eq!(e.data["status"], "waiting", "{:?}", e.data);
        resumed |= e.data["paused"] == false;
        if e.data["position"] == 2 {
            break;
        }
        assert_eq!(e.data["position"], 3, "{:?}", e.data);
    }
    assert!(resumed, "the resume was pushed");
    for _ in 0..2 {
        clock.advance(Duration::from_secs(1));
        n.booking.tick().await.expect("tick");
    }
    let e = third.until_not_waiting().await;
    assert_eq!(e.data["status"], "active", "{:?}", e.data);
    assert!(third.next().await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_without_a_good_token_is_refused_with_the_error_shape() {
    let dir = tempfile::tempdir().expect("dir");
    let clock = ManualClock::new(booking_testkit::T0);
    let n = node(&dir.path().join("events.db"), &clock).await;
    let http = Client::new();
    let url = format!("{}/v1/queue/events", n.base);
    let good = token(&http, &n.base).await;
    for (req, status, code) in [
        (http.get(&url), StatusCode::UNAUTHORIZED, "missing_token"),
        (
            http.get(format!("{url}?token=")),
            StatusCode::UNAUTHORIZED,
            "missing_token",
        ),
        (
            http.get(format!("{url}?token=not-a-token")),
            StatusCode::UNAUTHORIZED,
            "invalid_token",
        ),
        (
            http.get(format!("{url}?token={good}x")),
            StatusCode::UNAUTHORIZED,
            "invalid_token",
        ),
        (
            http.get(&url).bearer_auth("forged"),
            StatusCode::UNAUTHORIZED,
            "invalid_token",
        ),
    ] {
        let r = req.send().await.expect("send");
        assert_eq!(r.status(), status);
        let v: Value = r.json().await.expect("a JSON error body");
        assert_eq!(v["error"]["code"], code, "{v}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sold_out_is_pushed_to_every_waiting_stream() {
    const WAITING: usize = 40;
    let dir = tempfile::tempdir().expect("dir");
    let clock = ManualClock::new(booking_testkit::T0);
    let n = node(&dir.path().join("events.db"), &clock).await;
    let http = Client::new();
    let sched = booking_testkit::concert_date(&n.booking, 1, Some(100)).await;
    let (concert, date) = (sched.concert.get(), sched.date().to_string());
    let buyer = token(&http, &n.base).await;
    admit(&n.booking, &clock, 1).await;
    n.booking.set_paused(true).await.expect("pause");
    let mut streams = Vec::new();
    for _ in 0..WAITING {
        let t = token(&http, &n.base).await;
        let mut s = Stream::open(&http, format!("{}/v1/queue/events", n.base), Some(&t)).await;
        let e = s.next().await.expect("first event");
        assert_eq!(e.data["status"], "waiting", "{:?}", e.data);
        streams.push(s);
    }

    // The one admitted user holds the only seat: the sale is sold out.
    let r = http
        .post(format!("{}/v1/reservations", n.base))
        .bearer_auth(&buyer)
        .json(&json!({"concert_id": concert, "date": date, "seat": 1}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::CREATED);

    let mut told = 0;
    for s in &mut streams {
        let e = s.until_not_waiting().await;
        assert_eq!(e.data["status"], "sold_out", "{:?}", e.data);
        assert!(s.next().await.is_none());
        told += 1;
    }
    assert_eq!(told, WAITING);
}

/// Streams on one instance learn of an admission made by another instance's
/// ticker, each exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn streams_on_one_instance_see_admissions_made_by_another() {
    const USERS: usize = 200;
    let dir = tempfile::tempdir().expect("dir");
    let clock = ManualClock::new(booking_testkit::T0);
    let path = dir.path().join("events.db");
    let a = node(&path, &clock).await;
    let b = node(&path, &clock).await;
    let http = Client::new();
    admit(&a.booking, &clock, 1).await;
    a.booking.set_paused(true).await.expect("pause");
    let mut tasks = Vec::new();
    for i in 0..USERS {
        let t = token(&http, if i % 2 == 0 { &a.base } else { &b.base }).await;
        let url = format!("{}/v1/queue/events", b.base);
        let mut s = Stream::open(&http, url, Some(&t)).await;
        let e = s.next().await.expect("first event");
        assert_eq!(e.data["status"], "waiting", "{:?}", e.data);
        tasks.push(tokio::spawn(async move {
            let e = s.until_not_waiting().await;
            let ended = s.next().await.is_none();
            (e.data["status"].as_str().unwrap_or("").to_owned(), ended)
        }));
    }
    a.booking.set_paused(false).await.expect("resume");
    admit(&a.booking, &clock, u32::try_from(USERS).expect("fits")).await;
    let mut active = 0;
    for t in tasks {
        let (status, ended) = t.await.expect("task");
        assert_eq!(status, "active");
        assert!(ended, "the stream ends after admission");
        active += 1;
    }
    assert_eq!(active, USERS);
}

#[test]
fn a_token_in_the_query_is_never_logged() {
    let uri: axum::http::Uri = "/v1/queue/events?a=1&token=secret.part&TOKEN=x&b=2"
        .parse()
        .expect("uri");
    let logged = booking_http::redacted_uri(&uri);
    assert_eq!(
        logged,
        "/v1/queue/events?a=1&token=REDACTED&token=REDACTED&b=2"
    );
    assert!(!logged.contains("secret"));
    let plain: axum::http::Uri = "/v1/concerts".parse().expect("uri");
    assert_eq!(booking_http::redacted_uri(&plain), "/v1/concerts");
}

/// Graceful shutdown lets every connection finish its response; an open stream
/// ends when shutdown begins, so the server stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_streams_end_when_the_server_shuts_down() {
    let dir = tempfile::tempdir().expect("dir");
    let clock = ManualClock::new(booking_testkit::T0);
    let store = SqliteStore::open_path(&dir.path().join("events.db"), 4)
        .await
        .expect("store");
    let signer = TokenSigner::new(booking_testkit::SECRET).expect("signer");
    let booking =
        Arc::new(Booking::new(store, clock.clone(), signer, Config::default()).expect("booking"));
    admit(&booking, &clock, 1).await;
    booking.set_paused(true).await.expect("pause");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let app = booking_http::router(
        Arc::clone(&booking),
        booking_http::RouterOptions {
            admin_key: None,
            rate_limits: booking_http::limits::RateLimits::off(),
            storage: None,
            line: None,
        },
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(booking_http::serve(listener, app, async move {
        let _ = stopped.await;
    }));
    let http = Client::new();
    let mut streams = Vec::new();
    for _ in 0..3 {
        let t = token(&http, &base).await;
        let mut s = Stream::open(&http, format!("{base}/v1/queue/events"), Some(&t)).await;
        let e = s.next().await.expect("first event");
        assert_eq!(e.data["status"], "waiting", "{:?}", e.data);
        streams.push(s);
    }
    stop.send(()).expect("stop");
    for s in &mut streams {
        assert!(s.next().await.is_none(), "the stream ends at shutdown");
    }
    tokio::time::timeout(DEADLINE, server)
        .await
        .expect("the server stops with streams open")
        .expect("task")
        .expect("serve");
}
