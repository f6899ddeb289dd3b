//! Webhooks against a real HTTP receiver: an axum server on 127.0.0.1 in the test
//! that checks every request's signature and records what it got. Delivery runs
//! the real deliverer (`booking_http::run_deliverer`) on real stores (an SQLite
//! file; three PostgreSQL pools for the multi-instance test). Time comes from a
//! `ManualClock`: a backoff or a lease lapses only when the test moves the clock;
//! the test only waits (bounded) for requests it knows are coming.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use booking_core::domain::{
    EventId, RetryPolicy, SIGNATURE_HEADER, UserId, WebhookId, WebhookSecret, WebhookStatus,
    verify_signature,
};
use booking_core::{Booking, Clock, Config, ManualClock, Store, TokenSigner};
use booking_http::deliver::{DeliveryOptions, DeliveryStats, run_deliverer_with};
use booking_store::{PgStore, SqliteStore};
use serde_json::{Value, json};

const SECRET: &str = "receiver-shared-secret-0123";

/// What the receiver got: per request, the event id, whether the signature
/// checked out, and the status it answered.
#[derive(Default)]
struct Inbox {
    got: Mutex<Vec<(u64, bool, u16, Value)>>,
    /// Answer 500 to this many requests before answering 200.
    fail_next: AtomicU32,
    /// Answer 500 to every request.
    always_fail: AtomicBool,
    /// Hold the request for this event id without answering (while set).
    hang_on: Mutex<Option<u64>>,
    hang_release: tokio::sync::Notify,
}

struct Receiver {
    url: String,
    inbox: Arc<Inbox>,
}

impl Receiver {
    fn ids(&self) -> Vec<u64> {
        self.inbox.got.lock().unwrap().iter().map(|r| r.0).collect()
    }
    fn ok_ids(&self) -> Vec<u64> {
        let got = self.inbox.got.lock().unwrap();
        got.iter().filter(|r| r.2 == 200).map(|r| r.0).collect()
    }
    fn count(&self) -> usize {
        self.inbox.got.lock().unwrap().len()
    }
    fn all_signed(&self) -> bool {
        self.inbox.got.lock().unwrap().iter().all(|r| r.1)
    }
}

async fn receiver(clock: ManualClock) -> Receiver {
    let (app, inbox) = receiver_app(clock);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await.expect("receiver") });
    Receiver { url, inbox }
}

/// The receiver's routes: `POST /hook` records each request and answers as the
/// inbox says.
fn receiver_app(clock: ManualClock) -> (axum::Router, Arc<Inbox>) {
    let inbox = Arc::new(Inbox::default());
    let secret = WebhookSecret::new(SECRET).expect("secret");
    let app = axum::Router::new()
        .route(
            "/hook",
            axum::routing::post(
                move |State(inbox): State<Arc<Inbox>>, headers: HeaderMap, body: Bytes| {
                    let secret = secret.clone();
                    let clock = clock.clone();
                    async move {
                        let signed = headers
                            .get(SIGNATURE_HEADER)
                            .and_then(|v| v.to_str().ok())
                            .is_some_and(|h| {
                                verify_signature(
                                    &secret,
                                    h,
                                    &body,
                                    clock.now(),
                                    Duration::from_secs(300),
                                )
                                .is_ok()
                            });
                        let event: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                        let id = event["id"].as_u64().unwrap_or(0);
                        let header_id = headers
                            .get("x-booking-event-id")
                            .and_then(|v| v.to_str().ok())
                            .and_then(|v| v.parse::<u64>().ok());
                        let signed = signed && header_id == Some(id);
                        let hang = *inbox.hang_on.lock().unwrap() == Some(id);
                        let status = if inbox.always_fail.load(Ordering::SeqCst)
                            || inbox
                                .fail_next
                                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                                    n.checked_sub(1)
                                })
                                .is_ok()
                        {
                            500
                        } else {
                            200
                        };
                        inbox.got.lock().unwrap().push((id, signed, status, event));
                        if hang {
                            inbox.hang_release.notified().await;
                        }
                        StatusCode::from_u16(status).expect("status")
                    }
                },
            ),
        )
        .with_state(Arc::clone(&inbox));
    (app, inbox)
}

/// A certificate authority made for one test, and its PEM text.
struct TestCa {
    key: rcgen::KeyPair,
    cert: rcgen::Certificate,
}

impl TestCa {
    fn new(name: &str) -> TestCa {
        let key = rcgen::KeyPair::generate().expect("ca key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let cert = params.self_signed(&key).expect("ca cert");
        TestCa { key, cert }
    }

    fn pem(&self) -> String {
        self.cert.pem()
    }
}

/// The same receiver over HTTPS on 127.0.0.1: a real TLS server (rustls), its
/// certificate for `127.0.0.1` issued by `ca`. The URL is `https://127.0.0.1:PORT/hook`.
async fn tls_receiver(clock: ManualClock, ca: &TestCa) -> Receiver {
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .expect("params")
        .signed_by(&key, &ca.cert, &ca.key)
        .expect("cert");
    tls_receiver_with(clock, &cert, &key).await
}

/// The receiver over HTTPS with its own certificate `cert` (for `127.0.0.1`).
async fn tls_receiver_with(
    clock: ManualClock,
    cert: &rcgen::Certificate,
    key: &rcgen::KeyPair,
) -> Receiver {
    use tokio_rustls::rustls;
    let (app, inbox) = receiver_app(clock);
    // The one provider linked (ring) is the default.
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("https://{}/hook", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let (acceptor, app) = (acceptor.clone(), app.clone());
            tokio::spawn(async move {
                // A client that refuses the certificate ends the handshake here.
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        tower::ServiceExt::oneshot(app.clone(), req.map(axum::body::Body::new))
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    Receiver { url, inbox }
}

/// Waits (bounded, real time) until `done` holds: for requests the deliverer is
/// about to send, never for a clock-driven expiry.
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..3000 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting until {what}");
}

async fn until_async<F: std::future::Future<Output = bool>>(
    what: &str,
    mut done: impl FnMut() -> F,
) {
    for _ in 0..3000 {
        if done().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting until {what}");
}

fn options(name: &str, retry: RetryPolicy) -> DeliveryOptions {
    DeliveryOptions {
        name: name.to_owned(),
        workers: 2,
        poll_every: Duration::from_millis(10),
        lease: Duration::from_secs(60),
        request_timeout: Duration::from_secs(10),
        batch: 50,
        retry,
        trusted_cas: booking_http::TrustedCas::default(),
    }
}

struct Deliverer {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
    stats: Arc<DeliveryStats>,
}

fn start<S: Store, C: Clock>(booking: &Arc<Booking<S, C>>, options: DeliveryOptions) -> Deliverer {
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let stats = Arc::new(DeliveryStats::default());
    let task = tokio::spawn(run_deliverer_with(
        Arc::clone(booking),
        options,
        Arc::clone(&stats),
        async move {
            let _ = rx.await;
        },
    ));
    Deliverer { stop, task, stats }
}

impl Deliverer {
    async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.expect("deliverer");
    }
}

async fn sqlite_booking() -> (
    Arc<Booking<SqliteStore, ManualClock>>,
    ManualClock,
    tempfile::TempDir,
) {
    let dir = tempfile::tempdir().expect("dir");
    let store = SqliteStore::open_path(&dir.path().join("b.db"), 4)
        .await
        .expect("store");
    let clock = ManualClock::new(booking_testkit::T0);
    let signer = TokenSigner::new(booking_testkit::SECRET).expect("signer");
    let booking = Booking::new(store, clock.clone(), signer, Config::default()).expect("booking");
    (Arc::new(booking), clock, dir)
}

/// `n` events: a token and a charge for each of `n / 2` users (`token.issued`,
/// `wallet.charged`), relayed into the feed.
/// Adds an endpoint for every event type at `url`, signed with [`SECRET`]; its id.
async fn endpoint<S: Store, C: Clock>(booking: &Booking<S, C>, url: &str) -> WebhookId {
    booking
        .add_webhook(url, &[], Some(SECRET))
        .await
        .expect("add")
        .webhook
        .id
}

async fn make_events<S: Store, C: Clock>(booking: &Booking<S, C>, n: usize) {
    for i in 0..n / 2 {
        let user = UserId::random();
        booking.issue_token(user).await.expect("issue");
        booking
            .charge(user, booking_testkit::amount(100 + i as i64), None)
            .await
            .expect("charge");
    }
    booking.relay_events().await.expect("relay");
}

/// The feed's events of `types` after `after`, as the deliverer must send them.
async fn feed<S: Store, C: Clock>(booking: &Booking<S, C>, after: u64) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor = EventId(after);
    loop {
        let page = booking.events_after(cursor, 1000, &[]).await.expect("feed");
        let Some(last) = page.last() else { break };
        cursor = last.id;
        out.extend(page.iter().map(booking_http::feed::event_json));
    }
    out
}

/// Order and signature: every event after the endpoint was added, exactly once,
/// in id order, each body the feed's JSON of it, each signature valid; an event of
/// another type is skipped and the cursor still reaches the feed's end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_arrive_signed_in_order_once() {
    let (booking, clock, _dir) = sqlite_booking().await;
    make_events(&booking, 6).await; // before the endpoint: not delivered
    let rx = receiver(clock.clone()).await;
    let added = booking
        .add_webhook(&rx.url, &[], Some(SECRET))
        .await
        .expect("add");
    assert_eq!(added.webhook.cursor, EventId(6), "starts at the feed's end");
    let charges = receiver(clock.clone()).await;
    let only_charges = booking
        .add_webhook(&charges.url, &["wallet.charged"], Some(SECRET))
        .await
        .expect("add");
    make_events(&booking, 40).await;
    let expected = feed(&booking, 6).await;
    assert_eq!(expected.len(), 40);

    let d = start(&booking, options("a", RetryPolicy::default()));
    until("all 40 arrived", || rx.count() >= 40).await;
    until("the 20 charges arrived", || charges.count() >= 20).await;
    let got: Vec<Value> = rx
        .inbox
        .got
        .lock()
        .unwrap()
        .iter()
        .map(|r| r.3.clone())
        .collect();
    assert_eq!(
        got, expected,
        "each event once, in order, as the feed has it"
    );
    assert!(
        rx.all_signed() && charges.all_signed(),
        "every signature verifies"
    );
    let charge_ids: Vec<u64> = expected
        .iter()
        .filter(|e| e["type"] == "wallet.charged")
        .map(|e| e["id"].as_u64().expect("id"))
        .collect();
    assert_eq!(charges.ids(), charge_ids);
    until_async("the cursors reach the feed's end", || {
        let booking = Arc::clone(&booking);
        async move {
            let a = booking.webhook(added.webhook.id).await.expect("a").cursor;
            let b = booking
                .webhook(only_charges.webhook.id)
                .await
                .expect("b")
                .cursor;
            a == EventId(46) && b == EventId(46)
        }
    })
    .await;
    d.stop().await;
    assert_eq!(rx.count(), 40, "nothing sent twice");
}

/// A 500 is retried after the backoff (the clock moved, no sleeping), then the
/// rest follows in order; the failure shows until the success clears it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_500_is_retried_after_the_backoff() {
    let (booking, clock, _dir) = sqlite_booking().await;
    let rx = receiver(clock.clone()).await;
    let id = endpoint(&booking, &rx.url).await;
    make_events(&booking, 10).await;
    rx.inbox.fail_next.store(1, Ordering::SeqCst);
    let d = start(&booking, options("a", RetryPolicy::default()));
    until("the first request", || rx.count() >= 1).await;
    let w = wait_attempts(&booking, id, 1).await;
    assert_eq!(
        w.last_error.as_deref(),
        Some("HTTP 500 Internal Server Error")
    );
    assert_eq!(w.cursor, EventId(0));
    // The first backoff is 2.5 to 5 s of the manual clock.
    let wait = w.next_attempt_at.since(clock.now());
    assert!(
        (Duration::from_millis(2500)..=Duration::from_secs(5)).contains(&wait),
        "{wait:?}"
    );
    assert_eq!(rx.count(), 1, "nothing before the backoff");
    clock.advance(Duration::from_secs(5));
    until("the ten events", || rx.ok_ids().len() >= 10).await;
    assert_eq!(rx.ids(), vec![1, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    assert_eq!(rx.ok_ids(), (1..=10).collect::<Vec<_>>());
    let w = wait_cursor(&booking, id, 10).await;
    assert_eq!((w.attempts, w.last_error), (0, None));
    d.stop().await;
}

async fn wait_attempts<S: Store, C: Clock>(
    booking: &Arc<Booking<S, C>>,
    id: WebhookId,
    n: u32,
) -> booking_core::domain::Webhook {
    until_async(&format!("{n} failures recorded"), || {
        let booking = Arc::clone(booking);
        async move {
            let w = booking.webhook(id).await.expect("w");
            w.attempts >= n || w.status == WebhookStatus::Failed
        }
    })
    .await;
    booking.webhook(id).await.expect("w")
}

async fn wait_cursor<S: Store, C: Clock>(
    booking: &Arc<Booking<S, C>>,
    id: WebhookId,
    cursor: u64,
) -> booking_core::domain::Webhook {
    until_async(&format!("cursor {cursor}"), || {
        let booking = Arc::clone(booking);
        async move { booking.webhook(id).await.expect("w").cursor >= EventId(cursor) }
    })
    .await;
    booking.webhook(id).await.expect("w")
}

/// Past the attempt limit the endpoint is failed, visible in the admin API, and
/// nothing is sent until a retry; after the retry delivery resumes at the cursor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_after_the_limit_and_visible_until_retried() {
    let (booking, clock, _dir) = sqlite_booking().await;
    let rx = receiver(clock.clone()).await;
    let id = endpoint(&booking, &rx.url).await;
    make_events(&booking, 4).await;
    rx.inbox.always_fail.store(true, Ordering::SeqCst);
    let retry = RetryPolicy {
        base: Duration::from_secs(1),
        cap: Duration::from_secs(8),
        max_attempts: 4,
    };
    let d = start(&booking, options("a", retry));
    for n in 1..=4u32 {
        let w = wait_attempts(&booking, id, n).await;
        assert_eq!(rx.count(), n as usize);
        clock.advance(retry.cap);
        if n < 4 {
            assert_eq!(w.status, WebhookStatus::Active);
        }
    }
    let w = booking.webhook(id).await.expect("w");
    assert_eq!((w.status, w.attempts), (WebhookStatus::Failed, 4));

    // The admin API shows it; the secret is nowhere in the list.
    let (api, http) = admin_api(&booking).await;
    let r = http
        .get(format!("{api}/v1/admin/webhooks"))
        .bearer_auth("admin-key")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200);
    let text = r.text().await.expect("text");
    assert!(!text.contains(SECRET));
    let list: Value = serde_json::from_str(&text).expect("json");
    let hook = &list["webhooks"][0];
    assert_eq!(hook["status"], "failed");
    assert_eq!(hook["attempts"], 4);
    assert_eq!(hook["last_error"], "HTTP 500 Internal Server Error");
    assert_eq!(hook["cursor"], 0);

    // Failed: nothing is sent, however late.
    clock.advance(Duration::from_secs(3600));
    booking.relay_events().await.expect("relay");
    assert_eq!(rx.count(), 4);

    rx.inbox.always_fail.store(false, Ordering::SeqCst);
    let r = http
        .post(format!("{api}/v1/admin/webhooks/{}/retry", id.get()))
        .bearer_auth("admin-key")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.expect("json");
    assert_eq!(
        (v["status"].clone(), v["attempts"].clone()),
        (json!("active"), json!(0))
    );
    until("the four events", || rx.ok_ids().len() >= 4).await;
    assert_eq!(rx.ok_ids(), vec![1, 2, 3, 4]);
    wait_cursor(&booking, id, 4).await;
    d.stop().await;
}

async fn admin_api<S: Store + Clone, C: Clock>(
    booking: &Arc<Booking<S, C>>,
) -> (String, reqwest::Client) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(booking_http::serve(
        listener,
        booking_http::router(
            Arc::clone(booking),
            booking_http::RouterOptions {
                admin_key: Some("admin-key".into()),
                rate_limits: booking_http::limits::RateLimits::off(),
                storage: None,
                line: None,
            },
        ),
        std::future::pending(),
    ));
    (base, reqwest::Client::new())
}

/// The admin API: add (secret shown once, or generated), list, retry, remove, and
/// a clear 4xx for a bad URL, an unknown type, a short secret, an unknown or
/// malformed id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_manages_endpoints_and_refuses_bad_input() {
    let (booking, _clock, _dir) = sqlite_booking().await;
    let (api, http) = admin_api(&booking).await;
    let post = |body: Value| {
        http.post(format!("{api}/v1/admin/webhooks"))
            .bearer_auth("admin-key")
            .json(&body)
            .send()
    };
    let r = post(json!({"url": "http://127.0.0.1:9/x", "types": ["hold.created"]}))
        .await
        .expect("send");
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.expect("json");
    let secret = v["secret"].as_str().expect("generated secret").to_owned();
    assert!(secret.starts_with("whsec_"));
    assert_eq!(v["types"], json!(["hold.created"]));
    assert_eq!(v["status"], "active");
    let r = post(json!({"url": "http://127.0.0.1:9/y", "secret": SECRET}))
        .await
        .expect("send");
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["secret"], SECRET);
    assert_eq!(v["types"], json!([]));
    let id = v["id"].as_i64().expect("id");

    for (body, needle) in [
        (json!({"url": "ftp://example.com"}), "http:// or https://"),
        (
            json!({"url": "https://user:pw@example.com/"}),
            "user name or password",
        ),
        (
            json!({"url": "http://h/x", "types": ["hold.made"]}),
            "unknown event type \"hold.made\"",
        ),
        (
            json!({"url": "http://h/x", "secret": "short"}),
            "between 16 and 200",
        ),
    ] {
        let r = post(body.clone()).await.expect("send");
        assert_eq!(r.status(), 422, "{body}");
        let v: Value = r.json().await.expect("json");
        assert_eq!(v["error"]["code"], "invalid_input");
        let message = v["error"]["message"].as_str().expect("message");
        assert!(message.contains(needle), "{body}: {message}");
        assert!(
            !message.contains("pw") && !message.contains("short"),
            "{message}"
        );
    }
    let r = post(json!({"url": "http://h/x", "colour": "red"}))
        .await
        .expect("send");
    assert_eq!(r.status(), 400);

    let list: Value = http
        .get(format!("{api}/v1/admin/webhooks"))
        .bearer_auth("admin-key")
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(list["webhooks"].as_array().expect("list").len(), 2);
    let text = list.to_string();
    assert!(
        !text.contains(&secret) && !text.contains(SECRET),
        "no secret listed"
    );

    for (method, path, status) in [
        ("DELETE", "/v1/admin/webhooks/999".to_owned(), 404),
        ("POST", "/v1/admin/webhooks/999/retry".to_owned(), 404),
        ("DELETE", "/v1/admin/webhooks/abc".to_owned(), 400),
        ("POST", "/v1/admin/webhooks/0/retry".to_owned(), 400),
        ("DELETE", format!("/v1/admin/webhooks/{id}"), 204),
        ("DELETE", format!("/v1/admin/webhooks/{id}"), 404),
    ] {
        let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let r = http
            .request(m, format!("{api}{path}"))
            .bearer_auth("admin-key")
            .send()
            .await
            .expect("send");
        assert_eq!(r.status().as_u16(), status, "{method} {path}");
        if status == 404 {
            let v: Value = r.json().await.expect("json");
            assert_eq!(v["error"]["code"], "no_such_webhook");
        }
    }
    let r = http
        .get(format!("{api}/v1/admin/webhooks"))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 401, "the admin key is required");
}

/// A deliverer cut off while a request is in flight (its task aborted: a crash)
/// leaves the cursor before that event; once its lease lapses another deliverer
/// sends that event again and then the rest: exactly one duplicate, the event
/// that was in flight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_delivery_is_sent_again_at_least_once() {
    let (booking, clock, _dir) = sqlite_booking().await;
    let rx = receiver(clock.clone()).await;
    let id = endpoint(&booking, &rx.url).await;
    make_events(&booking, 20).await;
    *rx.inbox.hang_on.lock().unwrap() = Some(8);
    let first = start(&booking, options("first", RetryPolicy::default()));
    until("event 8 in flight", || rx.ids().contains(&8)).await;
    first.task.abort();
    let _ = first.task.await;
    assert_eq!(first.stats.delivered.load(Ordering::SeqCst), 7);
    let w = booking.webhook(id).await.expect("w");
    assert_eq!(
        w.cursor,
        EventId(7),
        "the cursor stops before the event in flight"
    );
    assert!(
        w.leased_by
            .as_deref()
            .is_some_and(|h| h.starts_with("first/"))
    );
    *rx.inbox.hang_on.lock().unwrap() = None;
    rx.inbox.hang_release.notify_waiters();

    // Another deliverer waits for the lease to lapse (clock time).
    let second = start(&booking, options("second", RetryPolicy::default()));
    clock.advance(Duration::from_secs(61));
    until("all twenty, again from 8", || {
        rx.ids().iter().filter(|&&i| i == 20).count() == 1
    })
    .await;
    let ids = rx.ids();
    let mut counts = BTreeMap::<u64, usize>::new();
    for i in &ids {
        *counts.entry(*i).or_default() += 1;
    }
    let duplicates: Vec<u64> = counts
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(i, _)| *i)
        .collect();
    assert_eq!(
        duplicates,
        vec![8],
        "only the event in flight is sent twice"
    );
    assert_eq!(counts.len(), 20);
    assert_eq!(
        ids,
        [(1..=8).collect::<Vec<u64>>(), (8..=20).collect()].concat()
    );
    assert!(rx.all_signed());
    wait_cursor(&booking, id, 20).await;
    second.stop().await;
}

/// Three instances (three pools, three deliverers of two workers each) on one
/// PostgreSQL database deliver 10,000 events to three endpoints: each endpoint
/// gets every event, in order, and the instances share the work. One request is
/// answered 500 mid-run: that endpoint backs off and resumes. Leases here never
/// lapse (the clock stands still, but for a move to a backed-off endpoint's next
/// attempt), so duplicates come only from failed requests (the 500, or a timeout
/// on a loaded machine): at most one per failed request or lost lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_instances_on_postgres_deliver_10000_events_once_each() {
    const EVENTS: usize = 10_000;
    const ENDPOINTS: usize = 3;
    let db = booking_testkit::pg::fresh_database().await;
    let clock = ManualClock::new(booking_testkit::T0);
    let mut nodes = Vec::new();
    for _ in 0..3 {
        let store = PgStore::open(&db.url, 8).await.expect("store");
        let signer = TokenSigner::new(booking_testkit::SECRET).expect("signer");
        nodes.push(Arc::new(
            Booking::new(store, clock.clone(), signer, Config::default()).expect("booking"),
        ));
    }
    let mut receivers = Vec::new();
    for _ in 0..ENDPOINTS {
        let rx = receiver(clock.clone()).await;
        nodes[0]
            .add_webhook(&rx.url, &[], Some(SECRET))
            .await
            .expect("add");
        receivers.push(rx);
    }
    let deliverers: Vec<Deliverer> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let mut o = options(&format!("node{i}"), RetryPolicy::default());
            o.batch = 100;
            start(n, o)
        })
        .collect();
    // 10,000 token.issued events, issued 50 at a time across the instances while
    // the deliverers run; each instance relays as a server's background task does.
    let relaying = Arc::new(AtomicBool::new(true));
    let relays: Vec<_> = nodes
        .iter()
        .map(|n| {
            let (n, on) = (Arc::clone(n), Arc::clone(&relaying));
            tokio::spawn(async move {
                while on.load(Ordering::SeqCst) {
                    if let Err(e) = n.relay_events().await {
                        eprintln!("relay: {e}");
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        })
        .collect();
    let started = std::time::Instant::now();
    for chunk in 0..EVENTS / 50 {
        if chunk == 40 {
            // One 500 mid-run: that endpoint backs off, is taken up again after
            // the clock moves, and its one duplicate is counted below.
            receivers[0].inbox.fail_next.store(1, Ordering::SeqCst);
        }
        let mut tasks = Vec::new();
        for j in 0..50 {
            let n = Arc::clone(&nodes[(chunk + j) % 3]);
            tasks.push(tokio::spawn(async move {
                n.issue_token(UserId::random()).await
            }));
        }
        for t in tasks {
            t.await.expect("task").expect("issue");
        }
    }
    let issued = started.elapsed();
    // Wait (bounded) until every receiver has the last event. The clock stands
    // still, so a failed request (a timeout on a loaded machine) would back off
    // forever: every 200 ms, an endpoint found backing off has the clock moved to
    // its next attempt (at most 5 s for a first failure, well inside the 60 s
    // lease that every delivery renews). Waiting instead until no receiver gets
    // anything (as this test once did) left a failed endpoint idle until the other
    // endpoints had delivered everything, then it delivered its backlog alone:
    // a run with one failed request took half as long again.
    let deadline = std::time::Instant::now() + Duration::from_secs(600);
    let (mut checked, mut clock_moves) = (std::time::Instant::now(), 0);
    while receivers
        .iter()
        .any(|rx| rx.ids().last() != Some(&(EVENTS as u64)))
    {
        if checked.elapsed() > Duration::from_millis(200) {
            let hooks = nodes[0].webhooks().await.expect("webhooks");
            if let Some(at) = hooks
                .iter()
                .filter(|w| w.attempts > 0 && w.next_attempt_at > clock.now())
                .map(|w| w.next_attempt_at)
                .min()
            {
                clock.advance(at.since(clock.now()));
                clock_moves += 1;
            }
            checked = std::time::Instant::now();
        }
        if std::time::Instant::now() > deadline {
            let counts: Vec<usize> = receivers.iter().map(Receiver::count).collect();
            let hooks = nodes[0].webhooks().await.expect("webhooks");
            let last = nodes[0].last_event_id().await.expect("last");
            panic!(
                "deliveries stalled: received {counts:?}, feed at {last:?}, endpoints {hooks:#?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = started.elapsed();
    relaying.store(false, Ordering::SeqCst);
    for r in relays {
        r.await.expect("relay");
    }
    let count = |f: fn(&DeliveryStats) -> &std::sync::atomic::AtomicU64| -> Vec<u64> {
        deliverers
            .iter()
            .map(|d| f(&d.stats).load(Ordering::SeqCst))
            .collect()
    };
    let per_node = count(|s| &s.delivered);
    let failed: u64 = count(|s| &s.failed).iter().sum();
    let lost: u64 = count(|s| &s.lost_leases).iter().sum();
    for d in deliverers {
        d.stop().await;
    }
    let mut duplicates = 0;
    for rx in &receivers {
        let mut ids = rx.ids();
        duplicates += ids.len() - EVENTS;
        // At least once: a repeat can only be the event just sent again.
        ids.dedup();
        assert_eq!(
            ids,
            (1..=EVENTS as u64).collect::<Vec<_>>(),
            "every event, in order"
        );
        assert!(rx.all_signed());
    }
    // The bound: an event is sent twice only after its request failed on the
    // deliverer's side (the receiver may have had it) or a lease was lost.
    assert!(
        duplicates as u64 <= failed + lost,
        "{duplicates} duplicates, {failed} failed requests, {lost} lost leases"
    );
    let total: u64 = per_node.iter().sum();
    assert!(
        (EVENTS * ENDPOINTS) as u64 <= total && total <= (EVENTS * ENDPOINTS + duplicates) as u64
    );
    assert!(
        per_node.iter().filter(|&&n| n > 0).count() >= 2,
        "the instances share the endpoints: {per_node:?}"
    );
    assert!(failed >= 1 && clock_moves >= 1, "the 500 was retried");
    println!(
        "duplicates {duplicates} (failed requests {failed}, lost leases {lost}, clock moves {clock_moves})"
    );
    println!(
        "{} deliveries in {elapsed:?} (the events issued in {issued:?}) by three instances: {per_node:?}",
        EVENTS * ENDPOINTS
    );
}

/// Over HTTPS: a receiver whose certificate chains to a CA the deliverer was told
/// to trust gets every event, in order, each signature valid, as over plain HTTP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_delivery_with_a_trusted_ca() {
    let (booking, clock, _dir) = sqlite_booking().await;
    let ca = TestCa::new("booking test CA");
    let rx = tls_receiver(clock.clone(), &ca).await;
    assert!(rx.url.starts_with("https://127.0.0.1:"));
    let id = endpoint(&booking, &rx.url).await;
    make_events(&booking, 30).await;
    let expected = feed(&booking, 0).await;
    let mut o = options("tls", RetryPolicy::default());
    o.trusted_cas = booking_http::TrustedCas::from_pem(ca.pem().as_bytes()).expect("ca");
    assert_eq!(o.trusted_cas.len(), 1);
    let d = start(&booking, o);
    until("all 30 arrived over https", || rx.count() >= 30).await;
    let got: Vec<Value> = rx
        .inbox
        .got
        .lock()
        .unwrap()
        .iter()
        .map(|r| r.3.clone())
        .collect();
    assert_eq!(got, expected, "each event once, in order");
    assert!(rx.all_signed(), "every signature verifies");
    let w = wait_cursor(&booking, id, 30).await;
    assert_eq!((w.attempts, w.last_error), (0, None));
    d.stop().await;
    assert_eq!(rx.count(), 30, "nothing sent twice");
}

/// A receiver whose certificate is issued by a CA the deliverer does not trust
/// (neither bundled nor added) gets nothing: the attempt fails, the endpoint shows
/// why in `last_error` and backs off; after the backoff it is tried again (and
/// fails again), never sending an event over an untrusted connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_receiver_with_an_untrusted_certificate_fails_and_backs_off() {
    let (booking, clock, _dir) = sqlite_booking().await;
    let theirs = TestCa::new("unknown CA");
    let ours = TestCa::new("the CA we trust");
    let rx = tls_receiver(clock.clone(), &theirs).await;
    let id = endpoint(&booking, &rx.url).await;
    make_events(&booking, 4).await;
    let mut o = options("tls", RetryPolicy::default());
    o.trusted_cas = booking_http::TrustedCas::from_pem(ours.pem().as_bytes()).expect("ca");
    let d = start(&booking, o);
    let w = wait_attempts(&booking, id, 1).await;
    assert_eq!(w.status, WebhookStatus::Active);
    assert_eq!(
        w.last_error.as_deref(),
        Some(
            "TLS: the receiver's certificate is not trusted: unknown issuer (trust its CA with --webhook-ca)"
        )
    );
    assert_eq!(w.cursor, EventId(0));
    let wait = w.next_attempt_at.since(clock.now());
    assert!(
        (Duration::from_millis(2500)..=Duration::from_secs(5)).contains(&wait),
        "backs off like any failure: {wait:?}"
    );
    clock.advance(Duration::from_secs(5));
    let w = wait_attempts(&booking, id, 2).await;
    assert_eq!(w.attempts, 2);
    assert_eq!(rx.count(), 0, "no request got through the handshake");
    d.stop().await;
}

/// A receiver's self-signed certificate can be trusted with `--webhook-ca` when it
/// is a server's certificate (CA:FALSE); one made as a CA (what `openssl req -x509`
/// makes by default) is refused as a server's own, and `last_error` says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_receiver_with_a_self_signed_certificate() {
    for as_ca in [false, true] {
        let (booking, clock, _dir) = sqlite_booking().await;
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params =
            rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).expect("params");
        if as_ca {
            params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        }
        let cert = params.self_signed(&key).expect("cert");
        let rx = tls_receiver_with(clock.clone(), &cert, &key).await;
        let id = endpoint(&booking, &rx.url).await;
        make_events(&booking, 4).await;
        let mut o = options("tls", RetryPolicy::default());
        o.trusted_cas = booking_http::TrustedCas::from_pem(cert.pem().as_bytes()).expect("pem");
        let d = start(&booking, o);
        if as_ca {
            let w = wait_attempts(&booking, id, 1).await;
            assert_eq!(
                w.last_error.as_deref(),
                Some(
                    "TLS: the receiver's certificate is not trusted: it is a CA certificate, \
                     not a server's (make it with basicConstraints CA:FALSE)"
                )
            );
            assert_eq!(rx.count(), 0);
        } else {
            until_async("a first attempt or delivery", || {
                let booking = Arc::clone(&booking);
                async move {
                    let w = booking.webhook(id).await.expect("w");
                    w.attempts >= 1 || w.cursor > EventId(0)
                }
            })
            .await;
            let w = booking.webhook(id).await.expect("w");
            assert_eq!(
                w.last_error, None,
                "a self-signed server certificate: {w:?}"
            );
            until("4 arrived over https", || rx.count() >= 4).await;
            assert!(rx.all_signed());
        }
        d.stop().await;
    }
}

/// The trusted CAs' PEM text is checked: no certificate block, or a block that is
/// not a certificate, is refused with a message that does not quote the text.
#[test]
fn trusted_cas_refuse_what_is_not_a_certificate() {
    for (pem, needle) in [
        ("not a certificate at all", "no certificate"),
        (
            "-----BEGIN CERTIFICATE-----\nc2VjcmV0LXRleHQ=\n-----END CERTIFICATE-----\n",
            "not a valid X.509 certificate",
        ),
    ] {
        let e = booking_http::TrustedCas::from_pem(pem.as_bytes()).expect_err(pem);
        assert!(e.contains(needle), "{pem}: {e}");
        assert!(!e.contains("c2Vj") && !e.contains("at all"), "{e}");
    }
    let ca = TestCa::new("two");
    let two = format!("{}{}", ca.pem(), TestCa::new("three").pem());
    assert_eq!(
        booking_http::TrustedCas::from_pem(two.as_bytes())
            .expect("bundle")
            .len(),
        2
    );
}

/// `/metrics` shows the deliverer's counts and the endpoints by status: ten
/// events delivered (200), then one request failed (500) with a limit of one
/// attempt, so that endpoint is failed; another endpoint (of a type never
/// emitted here) stays active. The numbers are exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_deliveries_failures_and_endpoints() {
    let (booking, clock, _dir) = sqlite_booking().await;
    let rx = receiver(clock.clone()).await;
    let id = endpoint(&booking, &rx.url).await;
    let quiet = receiver(clock.clone()).await;
    booking
        .add_webhook(&quiet.url, &["hold.created"], Some(SECRET))
        .await
        .expect("add");
    make_events(&booking, 10).await;
    let retry = RetryPolicy {
        max_attempts: 1,
        ..RetryPolicy::default()
    };
    let d = start(&booking, options("m", retry));
    wait_cursor(&booking, id, 10).await;
    rx.inbox.always_fail.store(true, Ordering::SeqCst);
    make_events(&booking, 2).await;
    let w = wait_attempts(&booking, id, 1).await;
    assert_eq!(w.status, WebhookStatus::Failed);

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let probe =
        booking_http::metrics::StorageProbe::new(booking_http::metrics::StorageFigures::default)
            .with_deliveries(Arc::clone(&d.stats));
    tokio::spawn(booking_http::serve(
        listener,
        booking_http::router(
            Arc::clone(&booking),
            booking_http::RouterOptions {
                admin_key: None,
                rate_limits: booking_http::limits::RateLimits::off(),
                storage: Some(probe),
                line: None,
            },
        ),
        std::future::pending(),
    ));
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .expect("scrape")
        .text()
        .await
        .expect("text");
    let samples: BTreeMap<&str, &str> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .collect();
    let value = |name: &str| -> u64 {
        samples
            .get(name)
            .unwrap_or_else(|| panic!("{name} in\n{text}"))
            .parse()
            .expect("a number")
    };
    assert_eq!(
        value("booking_webhook_requests_total{outcome=\"delivered\"}"),
        10
    );
    assert_eq!(
        value("booking_webhook_requests_total{outcome=\"failed\"}"),
        1
    );
    assert_eq!(value("booking_webhook_leases_lost_total"), 0);
    assert_eq!(value("booking_webhook_endpoints{status=\"active\"}"), 1);
    assert_eq!(value("booking_webhook_endpoints{status=\"failed\"}"), 1);
    for kind in [
        "# TYPE booking_webhook_requests_total counter",
        "# TYPE booking_webhook_leases_lost_total counter",
        "# TYPE booking_webhook_endpoints gauge",
    ] {
        assert!(text.contains(kind), "{kind}");
    }
    assert_eq!(rx.count(), 11);
    assert_eq!(quiet.count(), 0);
    d.stop().await;
}

/// PostgreSQL: while a relay's transaction is open (ids drawn from the sequence,
/// rows not yet visible), a deliverer must not see those ids as the feed's end:
/// it would move a caught-up endpoint's cursor past events that appear a moment
/// later, and they would never be sent. Here a transaction does what the relay
/// does (takes its lock, moves the outbox into the feed) and stays open while the
/// deliverer's steps run; once it commits, the event is claimed and sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_relayed_in_flight_is_not_skipped_on_postgres() {
    use sqlx::Connection;
    let db = booking_testkit::pg::fresh_database().await;
    let clock = ManualClock::new(booking_testkit::T0);
    let store = PgStore::open(&db.url, 4).await.expect("store");
    let signer = TokenSigner::new(booking_testkit::SECRET).expect("signer");
    let booking = Booking::new(store, clock, signer, Config::default()).expect("booking");
    let id = booking
        .add_webhook("http://127.0.0.1:9/hook", &[], Some(SECRET))
        .await
        .expect("add")
        .webhook
        .id;
    booking.issue_token(UserId::random()).await.expect("issue");

    let mut relay = sqlx::PgConnection::connect(&db.url).await.expect("connect");
    sqlx::query("BEGIN")
        .execute(&mut relay)
        .await
        .expect("begin");
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
        .bind(0x0062_6b65_7665_6e74_i64)
        .fetch_one(&mut relay)
        .await
        .expect("lock");
    assert!(locked);
    let moved = sqlx::query(
        "WITH moved AS (DELETE FROM event_outbox RETURNING pending_id, type, at, user_id, seq,
             first_seq, reservation_id, schedule_id, seat_no, amount, balance, payment_id,
             until_at, reason)
         INSERT INTO events (type, at, user_id, seq, first_seq, reservation_id, schedule_id,
             seat_no, amount, balance, payment_id, until_at, reason)
         SELECT type, at, user_id, seq, first_seq, reservation_id, schedule_id, seat_no,
             amount, balance, payment_id, until_at, reason FROM moved ORDER BY pending_id",
    )
    .execute(&mut relay)
    .await
    .expect("move")
    .rows_affected();
    assert_eq!(moved, 1);

    // In flight: the feed's end is what readers can see.
    assert_eq!(booking.last_event_id().await.expect("last"), EventId(0));
    let claimed = booking
        .claim_webhook("d/0", Duration::from_secs(60))
        .await
        .expect("claim");
    if let Some(mut d) = claimed {
        let next = booking.webhook_next_events(&d, 100).await.expect("next");
        assert!(next.events.is_empty());
        assert_eq!(
            next.done_up_to,
            EventId(0),
            "the cursor stays before the event"
        );
        booking
            .webhook_delivered(&mut d, next.done_up_to, Duration::from_secs(60))
            .await
            .expect("delivered");
        booking.release_webhook(&d).await.expect("release");
    }
    assert_eq!(booking.webhook(id).await.expect("w").cursor, EventId(0));

    sqlx::query("COMMIT")
        .execute(&mut relay)
        .await
        .expect("commit");
    assert_eq!(booking.last_event_id().await.expect("last"), EventId(1));
    let d = booking
        .claim_webhook("d/0", Duration::from_secs(60))
        .await
        .expect("claim")
        .expect("the endpoint has an event to send");
    let next = booking.webhook_next_events(&d, 100).await.expect("next");
    assert_eq!(next.events.len(), 1);
    assert_eq!(next.events[0].id, EventId(1));
}
