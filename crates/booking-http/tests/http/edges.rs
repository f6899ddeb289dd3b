//! The server's edges over real sockets: slow and half-sent requests, connection
//! caps, bodies too large or too slow, the JSON error shape of every error
//! (also those hyper answers by itself), the Authorization header, and the exact
//! forms of dates and prices. Each test runs a server on port 0 with short limits
//! (`ServeOptions`) and a fresh SQLite database.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use booking_core::domain::{AdmissionPolicy, UserId};
use booking_core::{Booking, Config, ManualClock, TokenSigner};
use booking_http::{RouterOptions, ServeOptions};
use booking_store::{AnyStore, SqliteStore};
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const ADMIN_KEY: &str = "edges-admin-key";

/// Long enough for any answer on a loaded machine; a test that waits this long
/// for something that should come at once fails.
const PATIENCE: Duration = Duration::from_secs(10);

struct App {
    addr: SocketAddr,
    base: String,
    booking: Arc<Booking<AnyStore, ManualClock>>,
    clock: ManualClock,
    http: Client,
    _dir: tempfile::TempDir,
}

/// Limits short enough for tests; no per-IP cap unless a test sets one.
fn quick() -> ServeOptions {
    ServeOptions {
        header_read_timeout: Duration::from_millis(500),
        body_timeout: Duration::from_millis(500),
        max_connections: 10_000,
        max_connections_per_ip: 0,
        per_ip_exempts_loopback: true,
    }
}

async fn spawn(options: ServeOptions) -> App {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = SqliteStore::open_path(&dir.path().join("edges.db"), 4)
        .await
        .expect("store");
    let clock = ManualClock::new(booking_testkit::T0);
    let signer = TokenSigner::new(booking_testkit::SECRET).expect("signer");
    let booking = Arc::new(
        Booking::new(
            AnyStore::Sqlite(store),
            clock.clone(),
            signer,
            Config::default(),
        )
        .expect("booking"),
    );
    let app = booking_http::router(
        Arc::clone(&booking),
        RouterOptions {
            admin_key: Some(ADMIN_KEY.into()),
            rate_limits: booking_http::limits::RateLimits::off(),
            storage: None,
            line: None,
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(booking_http::serve_with(
        listener,
        app,
        options,
        std::future::pending(),
    ));
    App {
        addr,
        base: format!("http://{addr}"),
        booking,
        clock,
        http: Client::new(),
        _dir: dir,
    }
}

impl App {
    async fn healthz(&self) -> StatusCode {
        self.http
            .get(format!("{}/healthz", self.base))
            .timeout(PATIENCE)
            .send()
            .await
            .expect("healthz answers")
            .status()
    }

    /// A token of an admitted user.
    async fn admitted_token(&self) -> (UserId, String) {
        let user = UserId::random();
        let v: Value = self
            .http
            .post(format!("{}/v1/queue/tokens", self.base))
            .json(&json!({"user_id": user.to_string()}))
            .send()
            .await
            .expect("token")
            .json()
            .await
            .expect("json");
        let token = v["token"].as_str().expect("token").to_owned();
        let p = AdmissionPolicy::rate(1_000, Duration::from_millis(10)).expect("policy");
        self.booking.set_policy(p).await.expect("policy");
        self.clock.advance(Duration::from_secs(1));
        self.booking.tick().await.expect("tick");
        (user, token)
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        auth: &[&str],
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        for a in auth {
            req = req.header("authorization", *a);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.timeout(PATIENCE).send().await.expect("answer");
        let status = resp.status();
        let text = resp.text().await.expect("body");
        let v = serde_json::from_str(&text).unwrap_or_else(|_| json!({"raw": text}));
        (status, v)
    }
}

/// A connection that has sent the start of a request and stopped.
async fn half_sent(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    s
}

/// Whether the server closed `s` (end of stream or reset) within [`PATIENCE`],
/// having sent nothing.
async fn closed_silently(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 64];
    matches!(
        tokio::time::timeout(PATIENCE, s.read(&mut buf)).await,
        Ok(Ok(0) | Err(_))
    )
}

/// Sends `bytes` on a fresh connection while reading the answer, and returns the
/// status, the headers (lower-case names) and the body of what came back before
/// the server closed the connection.
async fn raw(addr: SocketAddr, bytes: Vec<u8>) -> (u16, String, Value) {
    let s = TcpStream::connect(addr).await.expect("connect");
    let (mut rd, mut wr) = s.into_split();
    let writer = tokio::spawn(async move {
        // The server may answer and close before it has read everything.
        let _ = wr.write_all(&bytes).await;
        wr
    });
    let mut got = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let read = tokio::time::timeout(PATIENCE, async {
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
            if complete(&got) {
                break;
            }
        }
    })
    .await;
    assert!(read.is_ok(), "no complete answer in time: {got:?}");
    drop(writer.await);
    parse_answer(&got)
}

/// Whether `got` holds a whole answer with a `content-length`.
fn complete(got: &[u8]) -> bool {
    let text = String::from_utf8_lossy(got);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return false;
    };
    head.lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length: ")
                .and_then(|n| n.trim().parse::<usize>().ok())
        })
        .is_some_and(|n| body.len() >= n)
}

fn parse_answer(got: &[u8]) -> (u16, String, Value) {
    let text = String::from_utf8_lossy(got);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no answer head in {text:?}"));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    let value = serde_json::from_str(body).unwrap_or_else(|_| json!({"raw": body}));
    (status, head.to_ascii_lowercase(), value)
}

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("<no error code>")
}

fn message(v: &Value) -> &str {
    v["error"]["message"]
        .as_str()
        .unwrap_or("<no error message>")
}

// --- 1. slow headers and connection caps ---------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_requests_are_closed_while_others_are_answered() {
    let app = spawn(quick()).await;
    let mut slow = Vec::new();
    for _ in 0..500 {
        slow.push(half_sent(app.addr).await);
    }
    let mut answered = 0;
    for _ in 0..20 {
        if app.healthz().await == StatusCode::OK {
            answered += 1;
        }
    }
    assert_eq!(answered, 20, "normal requests answer beside the slow ones");
    let mut closed = 0;
    let _ = tokio::time::timeout(PATIENCE, async {
        for s in &mut slow {
            let mut buf = [0u8; 64];
            if matches!(s.read(&mut buf).await, Ok(0) | Err(_)) {
                closed += 1;
            }
        }
    })
    .await;
    assert_eq!(closed, 500, "every half-sent request is closed, silently");
    assert_eq!(app.healthz().await, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_cap_holds_new_clients_until_a_place_frees() {
    let app = spawn(ServeOptions {
        max_connections: 4,
        header_read_timeout: Duration::from_secs(60),
        ..quick()
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(half_sent(app.addr).await);
    }
    let base = app.base.clone();
    let waiting = tokio::spawn(async move {
        Client::new()
            .get(format!("{base}/healthz"))
            .timeout(PATIENCE * 2)
            .send()
            .await
            .map(|r| r.status())
    });
    let early = tokio::time::timeout(Duration::from_millis(500), async {
        while !waiting.is_finished() {
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(
        early.is_err(),
        "a fifth connection waits while four are open"
    );
    // One held request completes; its connection closes and frees a place.
    let mut first = held.remove(0);
    first
        .write_all(b"Connection: close\r\n\r\n")
        .await
        .expect("finish the request");
    let mut answer = Vec::new();
    tokio::time::timeout(PATIENCE, first.read_to_end(&mut answer))
        .await
        .expect("answered in time")
        .expect("read");
    assert!(answer.starts_with(b"HTTP/1.1 200"), "{answer:?}");
    let status = tokio::time::timeout(PATIENCE, waiting)
        .await
        .expect("the waiting client is served once a place frees")
        .expect("task")
        .expect("request");
    assert_eq!(status, StatusCode::OK);
}

/// A client socket bound to `ip` (any address of 127.0.0.0/8 is this machine).
async fn connect_from(ip: &str, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind(format!("{ip}:0").parse().expect("address"))
        .expect("bind");
    socket.connect(to).await.expect("connect")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_per_ip_cap_refuses_one_address_and_serves_the_others() {
    let app = spawn(ServeOptions {
        max_connections_per_ip: 3,
        per_ip_exempts_loopback: false,
        header_read_timeout: Duration::from_secs(60),
        ..quick()
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut s = connect_from("127.0.0.2", app.addr).await;
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            .await
            .expect("write");
        held.push(s);
    }
    let mut fourth = connect_from("127.0.0.2", app.addr).await;
    let _ = fourth
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    assert!(
        closed_silently(&mut fourth).await,
        "a fourth connection from one address is closed"
    );
    assert_eq!(app.healthz().await, StatusCode::OK, "127.0.0.1 is served");
    // A closed connection frees its place.
    drop(held.pop());
    let mut again = None;
    for _ in 0..100 {
        let mut s = connect_from("127.0.0.2", app.addr).await;
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .expect("write");
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(PATIENCE, s.read_to_end(&mut answer)).await;
        if answer.starts_with(b"HTTP/1.1 200") {
            again = Some(answer);
            break;
        }
        // The server may not have seen the close yet.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(again.is_some(), "a freed place takes a new connection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loopback_is_exempt_from_the_per_ip_cap_by_default() {
    let defaults = ServeOptions::default();
    assert!(defaults.per_ip_exempts_loopback);
    assert!(defaults.max_connections >= 20_000);
    let app = spawn(ServeOptions {
        max_connections_per_ip: 3,
        header_read_timeout: Duration::from_secs(60),
        ..quick()
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..50 {
        held.push(connect_from("127.0.0.2", app.addr).await);
    }
    let mut answered = 0;
    for s in &mut held {
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .expect("write");
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(PATIENCE, s.read_to_end(&mut answer)).await;
        if answer.starts_with(b"HTTP/1.1 200") {
            answered += 1;
        }
    }
    assert_eq!(answered, 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streaming_answer_outlives_the_header_and_body_timeouts() {
    use futures_util::stream;
    let app = axum::Router::new().route(
        "/stream",
        axum::routing::get(|| async {
            let chunks = stream::unfold(0u32, |i| async move {
                if i == 6 {
                    return None;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
                Some((Ok::<_, std::io::Error>(format!("event {i}\n")), i + 1))
            });
            axum::body::Body::from_stream(chunks)
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let options = ServeOptions {
        header_read_timeout: Duration::from_millis(100),
        body_timeout: Duration::from_millis(100),
        ..quick()
    };
    tokio::spawn(booking_http::serve_with(
        listener,
        app,
        options,
        std::future::pending(),
    ));
    let body = Client::new()
        .get(format!("http://{addr}/stream"))
        .timeout(PATIENCE)
        .send()
        .await
        .expect("answer")
        .text()
        .await
        .expect("the whole stream");
    assert_eq!(body.lines().count(), 6, "{body}");
    assert!(body.ends_with("event 5\n"));
}

// --- 2. bodies too large or too slow -------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declared_body_over_the_limit_is_refused_at_once() {
    let app = spawn(ServeOptions {
        body_timeout: Duration::from_secs(60),
        ..quick()
    })
    .await;
    for length in ["99999999999", "16385"] {
        let req = format!(
            "POST /v1/queue/tokens HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n{{"
        );
        let (status, _, v) = raw(app.addr, req.into_bytes()).await;
        assert_eq!(
            (status, code(&v)),
            (413, "payload_too_large"),
            "{length}: {v}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_body_gets_408() {
    let app = spawn(quick()).await;
    let req = "POST /v1/queue/tokens HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 30\r\n\r\n{";
    let (status, _, v) = raw(app.addr, req.as_bytes().to_vec()).await;
    assert_eq!((status, code(&v)), (408, "request_timeout"), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_the_limit_that_arrives_gets_413() {
    let app = spawn(quick()).await;
    let big = json!({"user_id": "x".repeat(20_000)}).to_string();
    // Chunked: no declared length, so the limit is found while reading.
    let mut req = b"POST /v1/queue/tokens HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for chunk in big.as_bytes().chunks(4_096) {
        req.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        req.extend_from_slice(chunk);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    let (status, _, v) = raw(app.addr, req).await;
    assert_eq!((status, code(&v)), (413, "payload_too_large"), "{v}");
    // Just under the limit it is read and judged on its content.
    let fits = json!({"user_id": "x".repeat(16_000)}).to_string();
    let (s, v) = app
        .call(
            reqwest::Method::POST,
            "/v1/queue/tokens",
            &[],
            Some(serde_json::from_str(&fits).expect("json")),
        )
        .await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::BAD_REQUEST, "bad_request"),
        "{v}"
    );
}

// --- 3. every error in the JSON shape ------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_hyper_answers_itself_have_the_json_shape() {
    let app = spawn(quick()).await;
    let long_url = format!(
        "GET /v1/concerts?{} HTTP/1.1\r\nHost: x\r\n\r\n",
        "a".repeat(100_000)
    );
    let big_header = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(1_000_000)
    );
    let many_headers = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\n{}\r\n",
        (0..5_000)
            .map(|i| format!("X-H{i}: v\r\n"))
            .collect::<String>()
    );
    let cases: [(&str, Vec<u8>, u16, &str); 5] = [
        (
            "garbage",
            b"\x00\x01\x02 hello\r\n\r\n".to_vec(),
            400,
            "bad_request",
        ),
        (
            "bad method",
            b"G@T / HTTP/1.1\r\n\r\n".to_vec(),
            400,
            "bad_request",
        ),
        ("100 KB URL", long_url.into_bytes(), 414, "uri_too_long"),
        (
            "1 MB header",
            big_header.into_bytes(),
            431,
            "headers_too_large",
        ),
        (
            "5,000 headers",
            many_headers.into_bytes(),
            431,
            "headers_too_large",
        ),
    ];
    for (what, bytes, want_status, want_code) in cases {
        let (status, head, v) = raw(app.addr, bytes).await;
        assert_eq!((status, code(&v)), (want_status, want_code), "{what}: {v}");
        assert!(
            head.contains("content-type: application/json"),
            "{what}: {head}"
        );
        assert!(!message(&v).is_empty());
    }
    assert_eq!(app.healthz().await, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_of_the_router_have_the_json_shape() {
    let app = spawn(quick()).await;
    let resp = app
        .http
        .patch(format!("{}/v1/concerts", app.base))
        .send()
        .await
        .expect("answer");
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(
        resp.headers().get("allow").and_then(|v| v.to_str().ok()),
        Some("GET,HEAD"),
        "the Allow header is kept"
    );
    let v: Value = resp.json().await.expect("a JSON body");
    assert_eq!(code(&v), "method_not_allowed");

    let (s, v) = app
        .call(reqwest::Method::GET, "/no/such/thing", &[], None)
        .await;
    assert_eq!((s, code(&v)), (StatusCode::NOT_FOUND, "no_such_endpoint"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_body_is_a_400_that_names_the_field() {
    let app = spawn(quick()).await;
    let post = |body: &'static str, content_type: &'static str| {
        let http = app.http.clone();
        let url = format!("{}/v1/queue/tokens", app.base);
        async move {
            let resp = http
                .post(url)
                .header("content-type", content_type)
                .body(body)
                .send()
                .await
                .expect("answer");
            let status = resp.status();
            (status, resp.json::<Value>().await.expect("a JSON body"))
        }
    };
    let json = "application/json";
    for (body, content_type, must_say) in [
        (
            r#"{"user_id": 5}"#,
            json,
            "user_id: invalid type: integer `5`, expected a string",
        ),
        (r#"{"user_id": "not-a-uuid"}"#, json, "user_id"),
        ("{}", json, "missing field `user_id`"),
        (
            r#"{"user_id": "x", "extra": 1}"#,
            json,
            "unknown field `extra`",
        ),
        ("[]", json, "the body must be a JSON object"),
        ("5", json, "the body must be a JSON object"),
        ("{", json, "the body is not valid JSON"),
        (
            r#"{"user_id": "x"} trailing"#,
            json,
            "the body is not valid JSON",
        ),
        (
            r#"{"user_id": "x"}"#,
            "text/plain",
            "Content-Type: application/json",
        ),
    ] {
        let (s, v) = post(body, content_type).await;
        assert_eq!(
            (s, code(&v)),
            (StatusCode::BAD_REQUEST, "bad_request"),
            "{body}"
        );
        let m = message(&v);
        assert!(m.contains(must_say), "{body}: {m}");
        for internal in ["TokenRequest", "deserialize", "struct", "Failed to"] {
            assert!(!m.contains(internal), "{body}: {m}");
        }
    }
    let (s, v) = app
        .call(
            reqwest::Method::POST,
            "/v1/admin/concerts/1/dates",
            &[&format!("Bearer {ADMIN_KEY}")],
            Some(json!({"starts_at": "2026-03-01T19:00:00Z", "prices": [1, "two"]})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(message(&v).starts_with("prices[1]: "), "{v}");
    assert!(message(&v).contains("expected an integer"), "{v}");
    let (s, v) = app
        .call(
            reqwest::Method::GET,
            "/v1/admin/concerts/abc/sales",
            &[&format!("Bearer {ADMIN_KEY}")],
            None,
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(message(&v), r#"id: "abc" is not an integer"#);
}

// --- 4. Authorization ------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_authorization_headers_are_refused_and_the_scheme_has_no_case() {
    let app = spawn(quick()).await;
    let (_, token) = app.admitted_token().await;
    let get = reqwest::Method::GET;
    let good = format!("Bearer {token}");
    for twice in [
        [good.as_str(), "Bearer junk"],
        ["Bearer junk", good.as_str()],
    ] {
        let (s, v) = app.call(get.clone(), "/v1/concerts", &twice, None).await;
        assert_eq!(
            (s, code(&v)),
            (StatusCode::BAD_REQUEST, "bad_request"),
            "{v}"
        );
        assert!(message(&v).contains("one Authorization header"), "{v}");
    }
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let auth = format!("{scheme} {token}");
        let (s, v) = app.call(get.clone(), "/v1/concerts", &[&auth], None).await;
        assert_eq!(s, StatusCode::OK, "{scheme}: {v}");
    }
    for other in [
        format!("Basic {token}"),
        format!("Bearer{token}"),
        token.clone(),
    ] {
        let (s, v) = app.call(get.clone(), "/v1/concerts", &[&other], None).await;
        assert_eq!(
            (s, code(&v)),
            (StatusCode::UNAUTHORIZED, "missing_token"),
            "{v}"
        );
    }
    let admin = format!("BEARER {ADMIN_KEY}");
    let (s, _) = app
        .call(get.clone(), "/v1/admin/queue", &[&admin], None)
        .await;
    assert_eq!(
        s,
        StatusCode::OK,
        "the admin key's scheme has no case either"
    );
    let (s, v) = app
        .call(get, "/v1/admin/queue", &[&admin, "Bearer junk"], None)
        .await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::BAD_REQUEST, "bad_request"),
        "{v}"
    );
}

// --- 6. dates and prices ---------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dates_are_exactly_yyyy_mm_dd() {
    let app = spawn(quick()).await;
    let schedule = booking_testkit::concert_date(&app.booking, 50, Some(100)).await;
    let (concert, date) = (schedule.concert.get(), schedule.date().to_string());
    let (_, token) = app.admitted_token().await;
    let auth = format!("Bearer {token}");
    let post = reqwest::Method::POST;
    let get = reqwest::Method::GET;
    let signed = format!("+00{date}");
    let unpadded = date.replace("-0", "-");
    assert_ne!(unpadded, date, "the test date has a month or day below 10");
    for bad in [
        signed.as_str(),
        unpadded.as_str(),
        &format!("{date} "),
        "2026-02-30",
    ] {
        let body = json!({"concert_id": concert, "date": bad, "seat": 1});
        let (s, v) = app
            .call(post.clone(), "/v1/reservations", &[&auth], Some(body))
            .await;
        assert_eq!(
            (s, code(&v)),
            (StatusCode::BAD_REQUEST, "bad_request"),
            "{bad}: {v}"
        );
        assert!(message(&v).contains("YYYY-MM-DD"), "{v}");
    }
    for bad in [
        format!("{date}%20"),
        format!("%20{date}"),
        signed.replace('+', "%2B"),
    ] {
        let path = format!("/v1/concerts/{concert}/dates/{bad}/seats");
        let (s, v) = app.call(get.clone(), &path, &[&auth], None).await;
        assert_eq!(
            (s, code(&v)),
            (StatusCode::BAD_REQUEST, "bad_request"),
            "{bad}: {v}"
        );
    }
    let path = format!("/v1/concerts/{concert}/dates/{date}/seats");
    let (s, _) = app.call(get, &path, &[&auth], None).await;
    assert_eq!(s, StatusCode::OK);
    let body = json!({"concert_id": concert, "date": date, "seat": 1});
    let (s, v) = app
        .call(post, "/v1/reservations", &[&auth], Some(body))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_date_has_a_payable_price_and_a_sane_horizon() {
    let app = spawn(quick()).await;
    let admin = format!("Bearer {ADMIN_KEY}");
    let (s, v) = app
        .call(
            reqwest::Method::POST,
            "/v1/admin/concerts",
            &[&admin],
            Some(json!({"name": "Edges"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let dates = format!("/v1/admin/concerts/{}/dates", v["id"]);
    let max_balance = Config::default().max_balance.minor_units();
    let cases = [
        (
            json!({"starts_at": "2026-03-01T19:00:00Z", "price": i64::MAX}),
            422,
        ),
        (
            json!({"starts_at": "2026-03-01T19:00:00Z", "price": max_balance + 1}),
            422,
        ),
        (
            json!({"starts_at": "2026-03-02T19:00:00Z", "seats": 2, "prices": [1, max_balance + 1]}),
            422,
        ),
        (
            json!({"starts_at": "9999-12-31T19:00:00Z", "price": 100}),
            422,
        ),
        // Ten years after the clock's 2026-01-01 is the horizon's last day.
        (
            json!({"starts_at": "2036-01-02T19:00:00Z", "price": 100}),
            422,
        ),
        (
            json!({"starts_at": "2035-12-30T19:00:00Z", "price": 100}),
            201,
        ),
        (
            json!({"starts_at": "2026-03-01T19:00:00Z", "price": max_balance}),
            201,
        ),
    ];
    for (body, want) in cases {
        let (s, v) = app
            .call(reqwest::Method::POST, &dates, &[&admin], Some(body.clone()))
            .await;
        assert_eq!(s.as_u16(), want, "{body}: {v}");
        if want == 422 {
            assert_eq!(code(&v), "invalid_input", "{body}: {v}");
        }
    }
}
