//! Checkout over real HTTP: several holds paid in one payment, all or nothing; what
//! was bought readable with the ended token; an ended token cannot top up; a late
//! payment of a seat sold since says so. Each test spawns the app on port 0 with a
//! fresh database (SQLite, and PostgreSQL for the main flow) and a manual clock.

use std::sync::Arc;
use std::time::Duration;

use booking_core::domain::{AdmissionPolicy, UserId};
use booking_core::{Booking, Config, ManualClock, TokenSigner};
use booking_store::{AnyStore, PgStore, SqliteStore};
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

struct App {
    base: String,
    booking: Arc<Booking<AnyStore, ManualClock>>,
    clock: ManualClock,
    http: Client,
    concert: i64,
    date: String,
    _dir: tempfile::TempDir,
    _db: Option<booking_testkit::pg::TestDatabase>,
}

async fn on_sqlite() -> App {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = SqliteStore::open_path(&dir.path().join("checkout.db"), 4)
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

async fn spawn(
    store: AnyStore,
    dir: tempfile::TempDir,
    db: Option<booking_testkit::pg::TestDatabase>,
) -> App {
    let clock = ManualClock::new(booking_testkit::T0);
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
    let p = AdmissionPolicy::rate(1_000, Duration::from_millis(10)).expect("policy");
    booking.set_policy(p).await.expect("policy");
    // Seat n costs 100 * n.
    let s = booking_testkit::concert_date(&booking, 50, None).await;
    App {
        base,
        booking,
        clock,
        http: Client::new(),
        concert: s.concert.get(),
        date: s.date().to_string(),
        _dir: dir,
        _db: db,
    }
}

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("<no error code>")
}

impl App {
    async fn call(
        &self,
        method: &str,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("send");
        let status = resp.status();
        let text = resp.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// A new user's token, admitted; with `amount` charged.
    async fn shopper(&self, amount: i64) -> (UserId, String) {
        let user = UserId::random();
        let (s, v) = self
            .call(
                "POST",
                "/v1/queue/tokens",
                "",
                Some(json!({"user_id": user.to_string()})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        let token = v["token"].as_str().expect("token").to_owned();
        self.clock.advance(Duration::from_secs(1));
        self.booking.tick().await.expect("tick");
        let (s, v) = self
            .call(
                "POST",
                &format!("/v1/users/{user}/charges"),
                &token,
                Some(json!({"amount": amount})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        (user, token)
    }

    async fn hold(&self, token: &str, seat: i64) -> String {
        let body = json!({"concert_id": self.concert, "date": self.date, "seat": seat});
        let (s, v) = self
            .call("POST", "/v1/reservations", token, Some(body))
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        v["reservation_id"].as_str().expect("id").to_owned()
    }

    async fn seat_state(&self, token: &str, seat: usize) -> String {
        let path = format!("/v1/concerts/{}/dates/{}/seats", self.concert, self.date);
        let (s, v) = self.call("GET", &path, token, None).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        v["seats"][seat - 1]["state"]
            .as_str()
            .expect("state")
            .to_owned()
    }

    async fn balance(&self, user: UserId, token: &str) -> i64 {
        let (s, v) = self
            .call("GET", &format!("/v1/users/{user}/balance"), token, None)
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        v["balance"].as_i64().expect("balance")
    }
}

async fn checkout(app: &App) {
    let (user, token) = app.shopper(2_000).await;
    let (_, watcher) = app.shopper(1).await;
    let ids = [
        app.hold(&token, 3).await,
        app.hold(&token, 1).await,
        app.hold(&token, 2).await,
    ];
    let left = app.hold(&token, 9).await;

    // Malformed lists change nothing.
    for (body, what) in [
        (json!({"reservation_ids": []}), "empty"),
        (json!({}), "no field"),
        (
            json!({"reservation_id": ids[0], "reservation_ids": [ids[1]]}),
            "both",
        ),
        (json!({"reservation_ids": [ids[0], ids[0]]}), "twice"),
        (
            json!({"reservation_ids": [ids[0], "not-a-uuid"]}),
            "not a uuid",
        ),
        (json!({"reservation_ids": ids, "seat": 1}), "unknown field"),
    ] {
        let (s, v) = app.call("POST", "/v1/payments", &token, Some(body)).await;
        assert_eq!(
            (s, code(&v)),
            (StatusCode::BAD_REQUEST, "bad_request"),
            "{what}: {v}"
        );
    }
    assert_eq!(app.balance(user, &token).await, 2_000);

    let (s, paid) = app
        .call(
            "POST",
            "/v1/payments",
            &token,
            Some(json!({"reservation_ids": ids})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{paid}");
    assert_eq!(paid["amount"], 600, "300 + 100 + 200");
    assert_eq!(
        (paid["reservation_id"].as_str(), paid["seat"].as_u64()),
        (Some(ids[0].as_str()), Some(3))
    );
    let seats: Vec<(String, u64, i64)> = paid["seats"]
        .as_array()
        .expect("seats")
        .iter()
        .map(|s| {
            (
                s["reservation_id"].as_str().expect("id").to_owned(),
                s["seat"].as_u64().expect("seat"),
                s["price"].as_i64().expect("price"),
            )
        })
        .collect();
    assert_eq!(
        seats,
        vec![
            (ids[0].clone(), 3, 300),
            (ids[1].clone(), 1, 100),
            (ids[2].clone(), 2, 200)
        ]
    );
    // One ledger row with the total.
    let (_, ledger) = app
        .call("GET", &format!("/v1/users/{user}/ledger"), &token, None)
        .await;
    assert_eq!(ledger.as_array().expect("rows").len(), 2);
    assert_eq!(
        (ledger[0]["kind"].as_str(), ledger[0]["delta"].as_i64()),
        (Some("payment"), Some(-600))
    );
    assert_eq!(app.balance(user, &token).await, 1_400);

    // The payer's other hold was released with the session: free to everyone now.
    assert_eq!(app.seat_state(&watcher, 9).await, "free");
    assert_eq!(app.seat_state(&watcher, 3).await, "sold");

    // The ended token reads what was bought, in the same shape as the answer.
    let (s, list) = app.call("GET", "/v1/payments", &token, None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(list, json!([paid]));
    let (s, mine) = app.call("GET", "/v1/reservations", &token, None).await;
    assert_eq!(s, StatusCode::OK, "{mine}");
    let mut states: Vec<(String, String)> = mine
        .as_array()
        .expect("list")
        .iter()
        .map(|r| {
            (
                r["reservation_id"].as_str().expect("id").to_owned(),
                r["state"].as_str().expect("state").to_owned(),
            )
        })
        .collect();
    states.sort();
    let mut expected: Vec<(String, String)> = ids
        .iter()
        .map(|id| (id.clone(), "paid".to_owned()))
        .chain([(left.clone(), "expired".to_owned())])
        .collect();
    expected.sort();
    assert_eq!(states, expected);

    // ...but cannot top up, nor pay again.
    let (s, v) = app
        .call(
            "POST",
            &format!("/v1/users/{user}/charges"),
            &token,
            Some(json!({"amount": 100})),
        )
        .await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::UNAUTHORIZED, "token_ended"),
        "{v}"
    );
    let (s, v) = app
        .call(
            "POST",
            "/v1/payments",
            &token,
            Some(json!({"reservation_id": left})),
        )
        .await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::UNAUTHORIZED, "token_ended"),
        "{v}"
    );
    assert_eq!(app.balance(user, &token).await, 1_400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_holds_paid_at_once_over_http_on_sqlite() {
    checkout(&on_sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_holds_paid_at_once_over_http_on_postgres() {
    checkout(&on_postgres().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_of_several_holds_is_all_or_nothing_over_http() {
    let app = on_sqlite().await;
    let (user, token) = app.shopper(1_000).await;
    let a = app.hold(&token, 4).await;
    let b = app.hold(&token, 5).await;
    let (s, v) = app
        .call("DELETE", &format!("/v1/reservations/{b}"), &token, None)
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = app
        .call(
            "POST",
            "/v1/payments",
            &token,
            Some(json!({"reservation_ids": [a, b]})),
        )
        .await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::CONFLICT, "reservation_cancelled"),
        "{v}"
    );
    let message = v["error"]["message"].as_str().expect("message");
    assert!(
        message.contains(&b) && message.contains("nothing was paid"),
        "{message}"
    );
    // 400 + 700 against 1,000: nothing paid either.
    let c = app.hold(&token, 7).await;
    let (s, v) = app
        .call(
            "POST",
            "/v1/payments",
            &token,
            Some(json!({"reservation_ids": [a, c]})),
        )
        .await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::UNPROCESSABLE_ENTITY, "insufficient_balance"),
        "{v}"
    );
    assert_eq!(app.balance(user, &token).await, 1_000);
    let (_, list) = app.call("GET", "/v1/payments", &token, None).await;
    assert_eq!(list, json!([]));
    assert_eq!(
        app.seat_state(&token, 4).await,
        "held",
        "the token still works"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_payment_of_a_seat_sold_since_says_sold_over_http() {
    let app = on_sqlite().await;
    let (_, late) = app.shopper(1_000).await;
    let r = app.hold(&late, 8).await;
    app.clock.advance(app.booking.config().hold_ttl);
    let (_, buyer) = app.shopper(1_000).await;
    let r2 = app.hold(&buyer, 8).await;
    let (s, v) = app
        .call(
            "POST",
            "/v1/payments",
            &buyer,
            Some(json!({"reservation_id": r2})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, v) = app
        .call(
            "POST",
            "/v1/payments",
            &late,
            Some(json!({"reservation_id": r})),
        )
        .await;
    assert_eq!((s, code(&v)), (StatusCode::CONFLICT, "seat_sold"), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_declares_both_payment_shapes() {
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
    let schema = &doc["components"]["schemas"]["PayRequest"];
    let shapes = schema["oneOf"].as_array().expect("oneOf");
    assert_eq!(shapes.len(), 2, "{schema}");
    assert_eq!(shapes[0]["required"], json!(["reservation_id"]));
    assert_eq!(shapes[0]["properties"]["reservation_id"]["format"], "uuid");
    assert_eq!(shapes[0]["additionalProperties"], false);
    let many = &shapes[1]["properties"]["reservation_ids"];
    assert_eq!(
        (&many["minItems"], &many["maxItems"], &many["uniqueItems"]),
        (&json!(1), &json!(50), &json!(true))
    );
    assert_eq!(many["items"]["format"], "uuid");
    assert_eq!(shapes[1]["additionalProperties"], false);
    let paid = &doc["components"]["schemas"]["PaymentDto"]["properties"]["seats"];
    assert_eq!(paid["type"], "array", "{paid}");
    // The codes the payment and the charge answer are documented.
    let pay = doc["paths"]["/v1/payments"]["post"]["responses"].to_string();
    assert!(pay.contains("seat_sold"));
    let charge = doc["paths"]["/v1/users/{user_id}/charges"]["post"].to_string();
    assert!(charge.contains("token_ended"));
}
