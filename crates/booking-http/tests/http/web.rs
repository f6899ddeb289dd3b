//! The web pages over a real socket: served with their media types and security
//! headers, outside the API's route table and OpenAPI document; and the queue
//! status that the waiting page shows says whether admission is paused.

use std::sync::Arc;
use std::time::Duration;

use booking_core::domain::{AdmissionPolicy, UserId};
use booking_core::{Booking, Config, ManualClock, TokenSigner};
use booking_store::{AnyStore, SqliteStore};
use serde_json::{Value, json};

const ADMIN_KEY: &str = "web-test-admin-key";

struct App {
    base: String,
    booking: Arc<Booking<AnyStore, ManualClock>>,
    clock: ManualClock,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

async fn spawn_app() -> App {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = SqliteStore::open_path(&dir.path().join("web.db"), 4)
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
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let app = booking_http::router(
        Arc::clone(&booking),
        booking_http::RouterOptions {
            admin_key: Some(ADMIN_KEY.into()),
            rate_limits: booking_http::limits::RateLimits::off(),
            storage: None,
            line: None,
        },
    );
    tokio::spawn(booking_http::serve(listener, app, std::future::pending()));
    App {
        base,
        booking,
        clock,
        http: reqwest::Client::new(),
        _dir: dir,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pages_are_served_with_their_types_and_a_strict_policy() {
    let app = spawn_app().await;
    for path in booking_http::web::PAGES {
        let resp = app
            .http
            .get(format!("{}{path}", app.base))
            .send()
            .await
            .expect("get");
        assert_eq!(resp.status(), 200, "{path}");
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        let expected = match path.rsplit('.').next() {
            Some("js") => "text/javascript; charset=utf-8",
            Some("css") => "text/css; charset=utf-8",
            Some("svg") => "image/svg+xml",
            _ => "text/html; charset=utf-8",
        };
        assert_eq!(header("content-type"), expected, "{path}");
        assert_eq!(
            header("content-security-policy"),
            booking_http::web::CONTENT_SECURITY_POLICY,
            "{path}"
        );
        assert!(
            header("content-security-policy").contains("script-src 'self'"),
            "{path}"
        );
        assert_eq!(header("x-content-type-options"), "nosniff", "{path}");
        assert_eq!(header("cache-control"), "no-cache", "{path}");
        let body = resp.text().await.expect("body");
        assert!(body.len() > 100, "{path} has content");
    }
    // Every asset a page names is served.
    for page in ["/", "/admin"] {
        let html = app
            .http
            .get(format!("{}{page}", app.base))
            .send()
            .await
            .expect("get")
            .text()
            .await
            .expect("body");
        for part in html.split("\"/web/").skip(1) {
            let asset = format!("/web/{}", part.split('"').next().unwrap_or_default());
            assert!(
                booking_http::web::PAGES.contains(&asset.as_str()),
                "{page} names {asset}, which is not served"
            );
        }
    }
    // HEAD works too, and an unknown asset is the API's JSON 404.
    let head = app
        .http
        .head(format!("{}/", app.base))
        .send()
        .await
        .expect("head");
    assert_eq!(head.status(), 200);
    let missing = app
        .http
        .get(format!("{}/web/nothing.js", app.base))
        .send()
        .await
        .expect("get");
    assert_eq!(missing.status(), 404);
    let body: Value = missing.json().await.expect("JSON");
    assert_eq!(body["error"]["code"], "no_such_endpoint");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pages_are_not_part_of_the_api() {
    let app = spawn_app().await;
    for page in booking_http::web::PAGES {
        assert!(
            !booking_http::ROUTES.iter().any(|(_, p)| p == page),
            "{page} is not an API route"
        );
    }
    let doc: Value = app
        .http
        .get(format!("{}/openapi.json", app.base))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("JSON");
    let paths = doc["paths"].as_object().expect("paths");
    for page in booking_http::web::PAGES {
        assert!(
            !paths.contains_key(*page),
            "{page} is not in the OpenAPI document"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_says_whether_admission_is_paused() {
    let app = spawn_app().await;
    let p = AdmissionPolicy::rate(1, Duration::from_secs(1)).expect("policy");
    app.booking.set_policy(p).await.expect("policy");
    let issue = |user: UserId| {
        let app = &app;
        async move {
            let v: Value = app
                .http
                .post(format!("{}/v1/queue/tokens", app.base))
                .json(&json!({"user_id": user.to_string()}))
                .send()
                .await
                .expect("post")
                .json()
                .await
                .expect("JSON");
            v
        }
    };
    let issued = issue(UserId::random()).await;
    assert!(
        issued.get("paused").is_none(),
        "a token answer does not carry it: {issued}"
    );
    let token = issued["token"].as_str().expect("token").to_owned();
    let status = || {
        let app = &app;
        let token = token.clone();
        async move {
            let v: Value = app
                .http
                .get(format!("{}/v1/queue/status", app.base))
                .bearer_auth(token)
                .send()
                .await
                .expect("get")
                .json()
                .await
                .expect("JSON");
            v
        }
    };
    let admin = |path: &'static str| {
        let app = &app;
        async move {
            let resp = app
                .http
                .post(format!("{}{path}", app.base))
                .bearer_auth(ADMIN_KEY)
                .send()
                .await
                .expect("post");
            assert_eq!(resp.status(), 200, "{path}");
        }
    };

    let v = status().await;
    assert_eq!(
        (v["status"].clone(), v["paused"].clone()),
        (json!("waiting"), json!(false))
    );
    admin("/v1/admin/queue/pause").await;
    // The status reads the counters through a cache of 100 ms on the engine's clock.
    app.clock.advance(Duration::from_secs(1));
    let v = status().await;
    assert_eq!(
        (v["status"].clone(), v["paused"].clone()),
        (json!("waiting"), json!(true)),
        "{v}"
    );
    admin("/v1/admin/queue/resume").await;
    app.clock.advance(Duration::from_secs(1));
    let v = status().await;
    assert_eq!(v["paused"], false, "{v}");
}
