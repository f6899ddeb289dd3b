//! The event feed (`GET /v1/admin/events`) over real HTTP, on SQLite and
//! PostgreSQL: paging, filters, the long poll, and the refusals.

use std::sync::Arc;
use std::time::{Duration, Instant};

use booking_core::domain::UserId;
use booking_core::{Booking, Config, ManualClock, TokenSigner};
use booking_store::{AnyStore, PgStore, SqliteStore};
use reqwest::{Client, StatusCode};
use serde_json::Value;

const ADMIN_KEY: &str = "feed-admin-key";

struct App {
    base: String,
    booking: Arc<Booking<AnyStore, ManualClock>>,
    http: Client,
    _dir: tempfile::TempDir,
    _db: Option<booking_testkit::pg::TestDatabase>,
}

async fn spawn(
    store: AnyStore,
    dir: tempfile::TempDir,
    db: Option<booking_testkit::pg::TestDatabase>,
) -> App {
    let clock = ManualClock::new(booking_testkit::T0);
    let signer = TokenSigner::new(booking_testkit::SECRET).expect("signer");
    let booking = Arc::new(Booking::new(store, clock, signer, Config::default()).expect("booking"));
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
        http: Client::new(),
        _dir: dir,
        _db: db,
    }
}

async fn on_sqlite() -> App {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = SqliteStore::open_path(&dir.path().join("feed.db"), 4)
        .await
        .expect("store");
    spawn(AnyStore::Sqlite(store), dir, None).await
}

async fn on_postgres() -> App {
    let db = booking_testkit::pg::fresh_database().await;
    let store = PgStore::open(&db.url, 8).await.expect("store");
    let dir = tempfile::tempdir().expect("temporary directory");
    spawn(AnyStore::Postgres(store), dir, Some(db)).await
}

impl App {
    async fn get(&self, query: &str, key: Option<&str>) -> (StatusCode, Value) {
        let mut req = self
            .http
            .get(format!("{}/v1/admin/events{query}", self.base));
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        let resp = req.send().await.expect("send");
        let status = resp.status();
        (status, resp.json().await.expect("json"))
    }

    async fn feed(&self, query: &str) -> Value {
        let (status, body) = self.get(query, Some(ADMIN_KEY)).await;
        assert_eq!(status, StatusCode::OK, "{query}: {body}");
        body
    }

    async fn issue(&self, n: usize) -> Vec<UserId> {
        let mut users = Vec::new();
        for _ in 0..n {
            let u = UserId::random();
            self.booking.issue_token(u).await.expect("issue");
            users.push(u);
        }
        users
    }
}

fn ids(page: &Value) -> Vec<u64> {
    page["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["id"].as_u64().expect("id"))
        .collect()
}

async fn pages_and_filters(app: App) {
    let users = app.issue(5).await;
    // Two at a time, following next_after.
    let mut after = 0;
    let mut seen = Vec::new();
    loop {
        let page = app.feed(&format!("?after={after}&limit=2")).await;
        let got = ids(&page);
        assert!(got.len() <= 2);
        if got.is_empty() {
            assert_eq!(page["next_after"], after, "an empty page keeps the cursor");
            break;
        }
        assert_eq!(page["next_after"], *got.last().expect("last"));
        after = page["next_after"].as_u64().expect("next");
        seen.extend(got);
    }
    assert_eq!(seen.len(), 5);
    assert!(seen.windows(2).all(|w| w[0] < w[1]));
    let all = app.feed("").await;
    let first = &all["events"][0];
    assert_eq!(first["type"], "token.issued");
    assert_eq!(first["data"]["user_id"], users[0].to_string());
    assert_eq!(first["data"]["seq"], 1);
    assert!(first["at"].as_str().expect("at").ends_with('Z'));

    // A filter: none of these types happened yet.
    let none = app.feed("?types=hold.created,payment.completed").await;
    assert_eq!(ids(&none), Vec::<u64>::new());
    let tokens = app.feed("?types=token.issued&limit=3&wait=0").await;
    assert_eq!(ids(&tokens), seen[..3].to_vec());
}

async fn long_poll_returns_when_an_event_arrives(app: App) {
    app.issue(1).await;
    let last = ids(&app.feed("").await)[0];
    // Nothing new: a one-second wait ends empty, with the same cursor.
    let page = app.feed(&format!("?after={last}&wait=1")).await;
    assert_eq!(
        (ids(&page).len(), &page["next_after"]),
        (0, &Value::from(last))
    );
    // A 30-second wait answers as soon as a change commits, relayed by the poll.
    let booking = Arc::clone(&app.booking);
    let change = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        booking.issue_token(UserId::random()).await.expect("issue");
    });
    let started = Instant::now();
    let page = app.feed(&format!("?after={last}&wait=30s")).await;
    let waited = started.elapsed();
    change.await.expect("change");
    assert_eq!(ids(&page), vec![last + 1]);
    assert_eq!(page["events"][0]["type"], "token.issued");
    assert!(
        waited < Duration::from_secs(25),
        "the poll answered when the event came, not at the end of its wait: {waited:?}"
    );
}

async fn refusals(app: App) {
    let (status, body) = app.get("", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (status, _) = app.get("", Some("not-the-key")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    for (query, names) in [
        ("?limit=0", "limit"),
        ("?limit=1001", "limit"),
        ("?limit=ten", "limit"),
        ("?after=-1", "after"),
        ("?after=9223372036854775808", "after"),
        ("?wait=31", "wait"),
        ("?wait=1.5", "wait"),
        ("?types=hold.made", "hold.made"),
        ("?types=hold.created,", "unknown event type"),
        ("?colour=blue", "colour"),
    ] {
        let (status, body) = app.get(query, Some(ADMIN_KEY)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        assert_eq!(body["error"]["code"], "bad_request", "{query}: {body}");
        let message = body["error"]["message"].as_str().expect("message");
        assert!(message.contains(names), "{query}: {message}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_has_a_schema_per_event_type() {
    let app = on_sqlite().await;
    let doc: Value = app
        .http
        .get(format!("{}/openapi.json", app.base))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    let schemas = &doc["components"]["schemas"];
    let branches = schemas["EventDataDto"]["oneOf"].as_array().expect("oneOf");
    assert_eq!(branches.len(), booking_core::EventType::ALL.len());
    for name in [
        "TokenIssuedData",
        "SessionAdmittedData",
        "HoldCreatedData",
        "HoldCancelledData",
        "HoldExpiredData",
        "WalletChargedData",
        "PaymentCompletedData",
        "SessionEndedData",
    ] {
        assert!(schemas[name]["properties"].is_object(), "{name}");
    }
    let op = &doc["paths"]["/v1/admin/events"]["get"];
    assert_eq!(
        op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/EventsPageDto"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_feed_pages_and_filters_on_sqlite() {
    pages_and_filters(on_sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_feed_pages_and_filters_on_postgres() {
    pages_and_filters(on_postgres().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_poll_returns_when_an_event_arrives_on_sqlite() {
    long_poll_returns_when_an_event_arrives(on_sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_poll_returns_when_an_event_arrives_on_postgres() {
    long_poll_returns_when_an_event_arrives(on_postgres().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_queries_are_400_and_no_key_is_401() {
    refusals(on_sqlite().await).await;
}
