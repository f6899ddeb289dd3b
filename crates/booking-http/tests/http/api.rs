//! The REST API over real HTTP: each test spawns the app on port 0 with a fresh
//! database (SQLite, and PostgreSQL for the whole flow) and a manual clock.

use std::sync::Arc;
use std::time::Duration;

use booking_core::domain::{AdmissionPolicy, UserId};
use booking_core::{Booking, Config, ManualClock, TokenSigner};
use booking_store::{AnyStore, PgStore, SqliteStore};
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

const ADMIN_KEY: &str = "test-admin-key";

struct App {
    base: String,
    booking: Arc<Booking<AnyStore, ManualClock>>,
    clock: ManualClock,
    /// The router's line, for a ticker beside it.
    line: Arc<booking_http::events::LineFeed>,
    http: Client,
    _dir: tempfile::TempDir,
    _db: Option<booking_testkit::pg::TestDatabase>,
}

async fn spawn_app() -> App {
    spawn_app_with(booking_http::limits::RateLimits::off()).await
}

async fn spawn_app_with(rate_limits: booking_http::limits::RateLimits) -> App {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = SqliteStore::open_path(&dir.path().join("api.db"), 4)
        .await
        .expect("store");
    spawn_app_on(AnyStore::Sqlite(store), rate_limits, dir, None).await
}

async fn spawn_app_on_postgres() -> App {
    let db = booking_testkit::pg::fresh_database().await;
    let store = PgStore::open(&db.url, 8).await.expect("store");
    let dir = tempfile::tempdir().expect("temporary directory");
    let limits = booking_http::limits::RateLimits::off();
    spawn_app_on(AnyStore::Postgres(store), limits, dir, Some(db)).await
}

async fn spawn_app_on(
    store: AnyStore,
    rate_limits: booking_http::limits::RateLimits,
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
    let line = Arc::new(booking_http::events::LineFeed::default());
    let app = booking_http::router(
        Arc::clone(&booking),
        booking_http::RouterOptions {
            admin_key: Some(ADMIN_KEY.into()),
            rate_limits,
            storage: Some(storage_probe(booking.store().clone())),
            line: Some(Arc::clone(&line)),
        },
    );
    tokio::spawn(booking_http::serve(listener, app, std::future::pending()));
    App {
        base,
        booking,
        clock,
        line,
        http: Client::new(),
        _dir: dir,
        _db: db,
    }
}

/// How the server reads the pools' and the group commit's figures (as `booking serve`).
fn storage_probe(store: AnyStore) -> booking_http::metrics::StorageProbe {
    booking_http::metrics::StorageProbe::new(move || {
        let (pool, hot) = (store.pool_stats(), store.group_commit_stats());
        booking_http::metrics::StorageFigures {
            connections_open: pool.open.into(),
            connections_idle: pool.idle.into(),
            connections_max: pool.max.into(),
            hot_writes_under_way: hot.under_way,
            hot_writes_batched: hot.batched,
            hot_writes_alone: hot.alone(),
            hot_writes_refused: hot.overloaded,
        }
    })
}

impl App {
    async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let (status, _, value) = self.call_with_retry_after(method, path, token, body).await;
        (status, value)
    }

    async fn token(&self, user: UserId) -> String {
        let (s, v) = self
            .call(
                "POST",
                "/v1/queue/tokens",
                None,
                Some(json!({"user_id": user.to_string()})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        v["token"].as_str().expect("token").to_owned()
    }

    async fn admit_all(&self) {
        let p = AdmissionPolicy::rate(1_000, Duration::from_millis(10)).expect("policy");
        self.booking.set_policy(p).await.expect("policy");
        self.clock.advance(Duration::from_secs(1));
        self.booking.tick().await.expect("tick");
    }

    /// A concert with one date 30 days on, seat n at 100 * n; returns (id, date).
    async fn concert(&self) -> (i64, String) {
        let s = booking_testkit::concert_date(&self.booking, 50, None).await;
        (s.concert.get(), s.date().to_string())
    }
}

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("<no error code>")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_flow_over_http_on_sqlite() {
    whole_flow(&spawn_app().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_flow_over_http_on_postgres() {
    whole_flow(&spawn_app_on_postgres().await).await;
}

/// Token, wait, admission, catalog, seat map, hold, charge, pay, and the token's end.
async fn whole_flow(app: &App) {
    let (concert, date) = app.concert().await;
    let user = UserId::random();
    let token = app.token(user).await;
    // Asking again gives the same place and token.
    assert_eq!(app.token(user).await, token);

    let (s, v) = app
        .call("GET", "/v1/queue/status", Some(&token), None)
        .await;
    assert_eq!(
        (s, v["status"].as_str(), v["position"].as_u64()),
        (StatusCode::OK, Some("waiting"), Some(1))
    );
    let (s, v) = app.call("GET", "/v1/concerts", Some(&token), None).await;
    assert_eq!((s, code(&v)), (StatusCode::FORBIDDEN, "not_admitted"));

    app.admit_all().await;
    let (_, v) = app
        .call("GET", "/v1/queue/status", Some(&token), None)
        .await;
    assert_eq!(v["status"], "active");

    let (s, v) = app.call("GET", "/v1/concerts", Some(&token), None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v[0]["id"], concert);
    let (s, v) = app
        .call(
            "GET",
            &format!("/v1/concerts/{concert}/dates"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(
        (s, v[0]["date"].as_str(), v[0]["seats_free"].as_u64()),
        (StatusCode::OK, Some(date.as_str()), Some(50))
    );
    let seats_path = format!("/v1/concerts/{concert}/dates/{date}/seats");
    let (s, v) = app.call("GET", &seats_path, Some(&token), None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["seats"].as_array().expect("seats").len(), 50);
    assert_eq!(v["seats"][6]["price"], 700);

    let hold_body = json!({"concert_id": concert, "date": date, "seat": 7});
    let (s, hold) = app
        .call(
            "POST",
            "/v1/reservations",
            Some(&token),
            Some(hold_body.clone()),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{hold}");
    assert_eq!(
        (
            hold["seat"].as_u64(),
            hold["price"].as_i64(),
            hold["state"].as_str()
        ),
        (Some(7), Some(700), Some("held"))
    );

    let wallet = format!("/v1/users/{user}");
    let (s, v) = app
        .call(
            "POST",
            &format!("{wallet}/charges"),
            Some(&token),
            Some(json!({"amount": 1_000})),
        )
        .await;
    assert_eq!(
        (s, v["balance_after"].as_i64()),
        (StatusCode::CREATED, Some(1_000))
    );

    let pay_body = json!({"reservation_id": hold["reservation_id"]});
    let (s, paid) = app
        .call("POST", "/v1/payments", Some(&token), Some(pay_body))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{paid}");
    assert_eq!(
        (paid["seat"].as_u64(), paid["amount"].as_i64()),
        (Some(7), Some(700))
    );

    let (_, v) = app
        .call("GET", &format!("{wallet}/balance"), Some(&token), None)
        .await;
    assert_eq!(v["balance"], 300);
    let (_, v) = app
        .call("GET", &format!("{wallet}/ledger"), Some(&token), None)
        .await;
    assert_eq!(
        (v[0]["kind"].as_str(), v[0]["delta"].as_i64()),
        (Some("payment"), Some(-700))
    );
    let (_, v) = app.call("GET", "/v1/payments", Some(&token), None).await;
    assert_eq!(v.as_array().expect("payments").len(), 1);

    // The token is ended: it can neither hold nor see the catalog again.
    let (s, v) = app
        .call(
            "POST",
            "/v1/reservations",
            Some(&token),
            Some(json!({"concert_id": concert, "date": date, "seat": 8})),
        )
        .await;
    assert_eq!((s, code(&v)), (StatusCode::UNAUTHORIZED, "token_ended"));
    let (_, v) = app
        .call("GET", "/v1/queue/status", Some(&token), None)
        .await;
    assert_eq!(v["status"], "done");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_clear_4xx_errors() {
    let app = spawn_app().await;
    let (concert, date) = app.concert().await;
    let (a, b) = (UserId::random(), UserId::random());
    let ta = app.token(a).await;
    let tb = app.token(b).await;
    app.admit_all().await;

    // Tokens.
    let (s, v) = app.call("GET", "/v1/concerts", None, None).await;
    assert_eq!((s, code(&v)), (StatusCode::UNAUTHORIZED, "missing_token"));
    let (s, v) = app.call("GET", "/v1/concerts", Some("garbage"), None).await;
    assert_eq!((s, code(&v)), (StatusCode::UNAUTHORIZED, "invalid_token"));
    let forged = TokenSigner::new(&[9u8; 32])
        .expect("signer")
        .sign(&app.booking.verify_token(&ta).expect("claims"));
    let (s, _) = app.call("GET", "/v1/concerts", Some(&forged), None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _) = app
        .call("GET", "/v1/concerts", Some(&ta[..ta.len() - 2]), None)
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "a truncated token");

    // Bodies and parameters.
    let (s, v) = app
        .call(
            "POST",
            "/v1/queue/tokens",
            None,
            Some(json!({"user_id": "not-a-uuid"})),
        )
        .await;
    assert_eq!((s, code(&v)), (StatusCode::BAD_REQUEST, "bad_request"));
    let resp = app
        .http
        .post(format!("{}/v1/queue/tokens", app.base))
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let (s, _) = app
        .call(
            "GET",
            &format!("/v1/concerts/{concert}/dates/2026-13-45/seats"),
            Some(&ta),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, v) = app
        .call("GET", "/v1/concerts/999/dates", Some(&ta), None)
        .await;
    assert_eq!((s, code(&v)), (StatusCode::NOT_FOUND, "unknown_concert"));
    let (s, v) = app
        .call("GET", "/v1/concerts/abc/dates", Some(&ta), None)
        .await;
    assert_eq!((s, code(&v)), (StatusCode::BAD_REQUEST, "bad_request"));

    // Seats.
    for seat in [0, 51, -1, 100_000] {
        let (s, v) = app
            .call(
                "POST",
                "/v1/reservations",
                Some(&ta),
                Some(json!({"concert_id": concert, "date": date, "seat": seat})),
            )
            .await;
        assert_eq!(
            (s, code(&v)),
            (StatusCode::UNPROCESSABLE_ENTITY, "invalid_seat"),
            "seat {seat}"
        );
    }
    let (s, hold) = app
        .call(
            "POST",
            "/v1/reservations",
            Some(&ta),
            Some(json!({"concert_id": concert, "date": date, "seat": 3})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, v) = app
        .call(
            "POST",
            "/v1/reservations",
            Some(&tb),
            Some(json!({"concert_id": concert, "date": date, "seat": 3})),
        )
        .await;
    assert_eq!((s, code(&v)), (StatusCode::CONFLICT, "seat_taken"));

    // Another user's wallet and reservation.
    let (s, v) = app
        .call("GET", &format!("/v1/users/{a}/balance"), Some(&tb), None)
        .await;
    assert_eq!((s, code(&v)), (StatusCode::FORBIDDEN, "wrong_user"));
    let rid = hold["reservation_id"].as_str().expect("id");
    let (s, v) = app
        .call(
            "DELETE",
            &format!("/v1/reservations/{rid}"),
            Some(&tb),
            None,
        )
        .await;
    assert_eq!((s, code(&v)), (StatusCode::FORBIDDEN, "not_yours"));
    let (s, v) = app
        .call(
            "POST",
            "/v1/payments",
            Some(&tb),
            Some(json!({"reservation_id": rid})),
        )
        .await;
    assert_eq!((s, code(&v)), (StatusCode::FORBIDDEN, "not_yours"));

    // Money.
    for amount in [0, -5] {
        let (s, v) = app
            .call(
                "POST",
                &format!("/v1/users/{a}/charges"),
                Some(&ta),
                Some(json!({"amount": amount})),
            )
            .await;
        assert_eq!(
            (s, code(&v)),
            (StatusCode::UNPROCESSABLE_ENTITY, "invalid_amount")
        );
    }
    let (s, v) = app
        .call(
            "POST",
            "/v1/payments",
            Some(&ta),
            Some(json!({"reservation_id": rid})),
        )
        .await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::UNPROCESSABLE_ENTITY, "insufficient_balance")
    );
    let (_, v) = app
        .call("GET", &format!("/v1/users/{a}/balance"), Some(&ta), None)
        .await;
    assert_eq!(v["balance"], 0, "nothing changed");

    // An expired hold.
    app.clock.advance(Duration::from_secs(300));
    app.call(
        "POST",
        &format!("/v1/users/{a}/charges"),
        Some(&ta),
        Some(json!({"amount": 1_000})),
    )
    .await;
    let (s, v) = app
        .call(
            "POST",
            "/v1/payments",
            Some(&ta),
            Some(json!({"reservation_id": rid})),
        )
        .await;
    assert_eq!((s, code(&v)), (StatusCode::GONE, "hold_expired"));

    // Unknown ids and routes.
    let (s, v) = app
        .call(
            "DELETE",
            &format!("/v1/reservations/{}", uuid::Uuid::new_v4()),
            Some(&ta),
            None,
        )
        .await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::NOT_FOUND, "unknown_reservation")
    );
    let (s, v) = app.call("GET", "/v1/nothing", None, None).await;
    assert_eq!((s, code(&v)), (StatusCode::NOT_FOUND, "no_such_endpoint"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_payment_replays_after_the_token_ended() {
    let app = spawn_app().await;
    let (concert, date) = app.concert().await;
    let user = UserId::random();
    let token = app.token(user).await;
    app.admit_all().await;
    let (_, hold) = app
        .call(
            "POST",
            "/v1/reservations",
            Some(&token),
            Some(json!({"concert_id": concert, "date": date, "seat": 1})),
        )
        .await;
    let charge = |key: &'static str| {
        app.http
            .post(format!("{}/v1/users/{user}/charges", app.base))
            .bearer_auth(&token)
            .header("Idempotency-Key", key)
            .json(&json!({"amount": 500}))
            .send()
    };
    assert_eq!(
        charge("c-1").await.expect("send").status(),
        StatusCode::CREATED
    );
    assert_eq!(
        charge("c-1").await.expect("send").status(),
        StatusCode::OK,
        "a replay"
    );
    let pay = || {
        app.http
            .post(format!("{}/v1/payments", app.base))
            .bearer_auth(&token)
            .header("Idempotency-Key", "p-1")
            .json(&json!({"reservation_id": hold["reservation_id"]}))
            .send()
    };
    let first = pay().await.expect("send");
    assert_eq!(first.status(), StatusCode::CREATED);
    let first: Value = first.json().await.expect("json");
    let again = pay().await.expect("send");
    assert_eq!(again.status(), StatusCode::OK);
    assert_eq!(again.json::<Value>().await.expect("json"), first);
    let (_, v) = app
        .call(
            "GET",
            &format!("/v1/users/{user}/balance"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(v["balance"], 400, "charged once, paid once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn i1_thousand_concurrent_http_holds_on_one_seat_have_one_201() {
    const N: usize = 1_000;
    let app = spawn_app().await;
    let (concert, date) = app.concert().await;
    let mut tokens = Vec::with_capacity(N);
    for _ in 0..N {
        tokens.push(
            app.booking
                .issue_token(UserId::random())
                .await
                .expect("issue")
                .token,
        );
    }
    app.admit_all().await;
    let barrier = Arc::new(tokio::sync::Barrier::new(N));
    let mut set = tokio::task::JoinSet::new();
    for token in tokens {
        let (http, url, barrier) = (
            app.http.clone(),
            format!("{}/v1/reservations", app.base),
            Arc::clone(&barrier),
        );
        let body = json!({"concert_id": concert, "date": date, "seat": 25});
        set.spawn(async move {
            barrier.wait().await;
            let resp = http
                .post(url)
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .expect("send");
            resp.status()
        });
    }
    let statuses = set.join_all().await;
    let created = statuses
        .iter()
        .filter(|s| **s == StatusCode::CREATED)
        .count();
    let conflicts = statuses
        .iter()
        .filter(|s| **s == StatusCode::CONFLICT)
        .count();
    assert_eq!((created, conflicts), (1, N - 1), "{statuses:?}");
}

/// `run_background_with_line` beside an app, until [`Background::stop`].
struct Background {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Background {
    /// Starts the ticker and sweeper with `options`, sharing the router's line
    /// when `shared`.
    fn start(app: &App, options: booking_http::BackgroundOptions, shared: bool) -> Background {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(booking_http::run_background_with_line(
            Arc::clone(&app.booking),
            options,
            shared.then(|| Arc::clone(&app.line)),
            async {
                let _ = stopped.await;
            },
        ));
        Background { stop, task }
    }

    async fn stop(self) {
        self.stop.send(()).expect("stop");
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("stops")
            .expect("task");
    }
}

impl App {
    /// Asks for `token`'s status every 10 ms of real time, `steps` times at most,
    /// until it is active, calling `each` before each ask; the last answer.
    async fn status_until_active(&self, token: &str, steps: u32, mut each: impl FnMut()) -> Value {
        let mut last = Value::Null;
        for _ in 0..steps {
            each();
            last = self
                .call("GET", "/v1/queue/status", Some(token), None)
                .await
                .1;
            if last["status"] == "active" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        last
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_background_ticker_admits_waiting_users() {
    let app = spawn_app().await;
    let token = app.token(UserId::random()).await;
    let options = booking_http::BackgroundOptions {
        tick_every: Duration::from_millis(10),
        sweep_every: Duration::from_millis(10),
        ..booking_http::BackgroundOptions::default()
    };
    let background = Background::start(&app, options, false);
    // The ticker runs on real time; wait for it, bounded.
    let status = app.status_until_active(&token, 500, || {}).await;
    assert_eq!(status["status"], "active", "{status}");
    background.stop().await;
}

/// A ticker whose rounds are 30 s apart: the tests below expect it to act long
/// before its second round.
fn slow_rounds() -> booking_http::BackgroundOptions {
    booking_http::BackgroundOptions {
        tick_every: Duration::from_secs(30),
        ..booking_http::BackgroundOptions::default()
    }
}

/// The ticker wakes when the next advance is due, not at its next round: with
/// rounds 30 s apart and one admission per 50 ms, three users are all admitted
/// long before a second round.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_background_ticker_wakes_when_an_advance_is_due() {
    let app = spawn_app().await;
    app.booking
        .set_policy(
            booking_core::domain::AdmissionPolicy::rate(1, Duration::from_millis(50))
                .expect("policy"),
        )
        .await
        .expect("set policy");
    let mut tokens = Vec::new();
    for _ in 0..3 {
        tokens.push(app.token(UserId::random()).await);
    }
    let background = Background::start(&app, slow_rounds(), false);
    // The engine's clock moves 60 ms a step; bounded by 10 s of real time, a
    // third of one round.
    let last = app
        .status_until_active(&tokens[2], 1_000, || {
            app.clock.advance(Duration::from_millis(60));
        })
        .await;
    assert_eq!(last["status"], "active", "{last}");
    let stats = app.booking.queue_stats().await.expect("stats");
    assert_eq!(stats.counters.serving, 3);
    background.stop().await;
}

/// A token issued wakes the ticker that shares the router's line: a user who
/// arrives at an empty line is admitted at once, not at the ticker's next round
/// (30 s away here); without the shared line the same user waits for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_arrival_at_an_empty_line_wakes_the_ticker() {
    for shared in [true, false] {
        let app = spawn_app().await;
        let background = Background::start(&app, slow_rounds(), shared);
        // The ticker's first round finds nobody waiting.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let token = app.token(UserId::random()).await;
        let steps = if shared { 500 } else { 50 };
        let last = app.status_until_active(&token, steps, || {}).await;
        let expected = if shared { "active" } else { "waiting" };
        assert_eq!(last["status"], expected, "{last}");
        background.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_needs_its_key_and_runs_the_show() {
    let app = spawn_app().await;
    let (s, v) = app
        .call(
            "POST",
            "/v1/admin/concerts",
            None,
            Some(json!({"name": "Night"})),
        )
        .await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::UNAUTHORIZED, "admin_key_required")
    );
    let (s, v) = app
        .call(
            "POST",
            "/v1/admin/concerts",
            Some("wrong"),
            Some(json!({"name": "Night"})),
        )
        .await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::UNAUTHORIZED, "invalid_admin_key"),
        "a wrong key is told apart from a missing one"
    );
    let (s, concert) = app
        .call(
            "POST",
            "/v1/admin/concerts",
            Some(ADMIN_KEY),
            Some(json!({"name": "Night"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{concert}");
    let id = concert["id"].as_i64().expect("id");
    let dates = format!("/v1/admin/concerts/{id}/dates");
    let (s, date) = app
        .call(
            "POST",
            &dates,
            Some(ADMIN_KEY),
            Some(json!({"starts_at": "2026-02-01T19:00:00Z", "seats": 50, "price": 5000})),
        )
        .await;
    assert_eq!(
        (s, date["date"].as_str(), date["seats_free"].as_u64()),
        (StatusCode::CREATED, Some("2026-02-01"), Some(50))
    );
    let (s, v) = app
        .call(
            "POST",
            &dates,
            Some(ADMIN_KEY),
            Some(json!({"starts_at": "2026-02-01T21:00:00Z", "price": 5000})),
        )
        .await;
    assert_eq!((s, code(&v)), (StatusCode::CONFLICT, "date_taken"));
    let (s, v) = app
        .call(
            "POST",
            &dates,
            Some(ADMIN_KEY),
            Some(json!({"starts_at": "2025-02-01T21:00:00Z", "price": 5000})),
        )
        .await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::UNPROCESSABLE_ENTITY, "date_in_the_past")
    );
    let (s, _) = app
        .call(
            "POST",
            &dates,
            Some(ADMIN_KEY),
            Some(json!({"starts_at": "2026-03-01T21:00:00Z", "seats": 51, "price": 0})),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let (s, _) = app
        .call(
            "POST",
            &dates,
            Some(ADMIN_KEY),
            Some(json!({"starts_at": "soon", "price": 5})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    let (s, v) = app
        .call(
            "PUT",
            "/v1/admin/queue/policy",
            Some(ADMIN_KEY),
            Some(json!({"interval_ms": 500, "batch": 7, "max_active": 70})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = app
        .call(
            "PUT",
            "/v1/admin/queue/policy",
            Some(ADMIN_KEY),
            Some(json!({"interval_ms": 1, "batch": 7})),
        )
        .await;
    assert_eq!(
        (s, code(&v)),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_input")
    );
    app.call("POST", "/v1/admin/queue/pause", Some(ADMIN_KEY), None)
        .await;
    app.token(UserId::random()).await;
    let (_, q) = app
        .call("GET", "/v1/admin/queue", Some(ADMIN_KEY), None)
        .await;
    assert_eq!(
        (
            q["issued"].as_u64(),
            q["waiting"].as_u64(),
            q["paused"].as_bool()
        ),
        (Some(1), Some(1), Some(true))
    );
    assert_eq!(
        q["policy"],
        json!({"interval_ms": 500, "batch": 7, "max_active": 70})
    );
    let (s, _) = app
        .call("POST", "/v1/admin/queue/resume", Some(ADMIN_KEY), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, v) = app
        .call("POST", "/v1/admin/sweep", Some(ADMIN_KEY), None)
        .await;
    assert_eq!((s, v["holds_expired"].as_u64()), (StatusCode::OK, Some(0)));
    let (s, v) = app
        .call(
            "GET",
            &format!("/v1/admin/concerts/{id}/sales"),
            Some(ADMIN_KEY),
            None,
        )
        .await;
    assert_eq!(
        (s, v[0]["seats_free"].as_u64(), v[0]["revenue"].as_i64()),
        (StatusCode::OK, Some(50), Some(0))
    );
    let (s, v) = app
        .call("GET", "/v1/admin/concerts/999/sales", Some(ADMIN_KEY), None)
        .await;
    assert_eq!((s, code(&v)), (StatusCode::NOT_FOUND, "unknown_concert"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_answer_429_with_retry_after() {
    let app = spawn_app_with(booking_http::limits::RateLimits {
        per_ip_per_sec: 0.0,
        per_token_per_sec: 1.0,
        burst: 3.0,
    })
    .await;
    let token = app.token(UserId::random()).await;
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(
            app.call("GET", "/v1/queue/status", Some(&token), None)
                .await
                .0,
        );
    }
    assert_eq!(&statuses[..3], &[StatusCode::OK; 3]);
    let resp = app
        .http
        .get(format!("{}/v1/queue/status", app.base))
        .bearer_auth(&token)
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(resp.headers().contains_key("retry-after"));
    let v: Value = resp.json().await.expect("json");
    assert_eq!(code(&v), "rate_limited");
    // Another token is not affected.
    let other = app.token(UserId::random()).await;
    assert_eq!(
        app.call("GET", "/v1/queue/status", Some(&other), None)
            .await
            .0,
        StatusCode::OK
    );

    let per_ip = spawn_app_with(booking_http::limits::RateLimits {
        per_ip_per_sec: 1.0,
        per_token_per_sec: 0.0,
        burst: 2.0,
    })
    .await;
    let codes: Vec<StatusCode> = futures_seq(&per_ip, 4).await;
    assert_eq!(
        codes,
        vec![
            StatusCode::OK,
            StatusCode::OK,
            StatusCode::TOO_MANY_REQUESTS,
            StatusCode::TOO_MANY_REQUESTS
        ]
    );
    // Probes and scrapes are never limited, even from a client past its limit.
    for path in ["/healthz", "/readyz", "/metrics"] {
        for _ in 0..5 {
            assert_eq!(
                per_ip.call("GET", path, None, None).await.0,
                StatusCode::OK,
                "{path}"
            );
        }
    }
}

async fn futures_seq(app: &App, n: usize) -> Vec<StatusCode> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(app.call("GET", "/openapi.json", None, None).await.0);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_holds_and_conflicts_and_requests_get_ids() {
    let app = spawn_app().await;
    let (concert, date) = app.concert().await;
    let (ta, tb) = (
        app.token(UserId::random()).await,
        app.token(UserId::random()).await,
    );
    app.admit_all().await;
    let body = json!({"concert_id": concert, "date": date, "seat": 9});
    assert_eq!(
        app.call("POST", "/v1/reservations", Some(&ta), Some(body.clone()))
            .await
            .0,
        StatusCode::CREATED
    );
    assert_eq!(
        app.call("POST", "/v1/reservations", Some(&tb), Some(body))
            .await
            .0,
        StatusCode::CONFLICT
    );
    // An hour on, the hold and both sessions have lapsed; a sweep records them.
    app.clock.advance(Duration::from_secs(3_600));
    let swept = app.booking.sweep().await.expect("sweep");
    assert_eq!((swept.n_holds_expired, swept.n_sessions_expired), (1, 2));
    let resp = app
        .http
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        resp.headers().contains_key("x-request-id"),
        "every answer carries a request id"
    );
    assert_eq!(
        resp.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = resp.text().await.expect("text");
    let samples = parse_prometheus(&text);
    let value = |name: &str| {
        samples
            .iter()
            .find(|(n, _, _)| n == name)
            .map(|(_, _, v)| *v)
            .unwrap_or_else(|| panic!("no sample {name} in\n{text}"))
    };
    assert!(value("process_open_fds") >= 3.0);
    assert!(value("process_max_fds") >= value("process_open_fds"));
    assert!(value("process_resident_memory_bytes") > 1e6);
    assert!(value("process_cpu_seconds_total") >= 0.0);
    // The pools: SQLite's four readers and one writer. The two token issues and the
    // two holds (one taken, one refused) were hot writes.
    assert!(value("booking_db_connections_open") >= 1.0);
    assert!(value("booking_db_connections_idle") <= value("booking_db_connections_open"));
    assert_eq!(
        value("booking_hot_writes_alone_total") + value("booking_hot_writes_batched_total"),
        4.0,
        "{text}"
    );
    assert!(
        samples
            .iter()
            .any(|(n, labels, v)| n == "booking_build_info"
                && labels.contains(&format!("version=\"{}\"", env!("CARGO_PKG_VERSION")))
                && *v == 1.0),
        "{text}"
    );
    for line in [
        "booking_holds_total 1",
        "booking_hold_conflicts_total 1",
        "booking_payments_total 0",
        "booking_queue_issued 2",
        "booking_active_users 0",
        "booking_tokens_issued_total 2",
        "booking_admissions_total 2",
        "booking_holds_expired_total 1",
        "booking_sessions_expired_total 2",
        "booking_sessions_paid_total 0",
        "booking_db_connections_max 5",
        "booking_hot_writes_under_way 0",
        "booking_hot_writes_refused_total 0",
        "booking_http_requests_total{method=\"POST\",route=\"/v1/reservations\",status=\"409\"} 1",
        "booking_http_request_duration_seconds_count{method=\"POST\",route=\"/v1/reservations\"} 2",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
}

/// The samples of a Prometheus text exposition, as (name, labels, value); panics on
/// a line that is not in the format, or on a sample whose family has no `# TYPE`
/// line before it.
fn parse_prometheus(text: &str) -> Vec<(String, String, f64)> {
    let mut typed = std::collections::BTreeSet::new();
    let mut samples = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split(' ');
            let name = parts.next().expect("a family name");
            let kind = parts.next().expect("a type");
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "{line}"
            );
            typed.insert(name.to_owned());
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        assert!(!line.starts_with('#'), "unknown comment line {line:?}");
        let (series, value) = line.rsplit_once(' ').expect("name and value");
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("not a number in {line:?}"));
        let (name, labels) = match series.split_once('{') {
            Some((n, l)) => (n, l.strip_suffix('}').expect("closed labels")),
            None => (series, ""),
        };
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name in {line:?}"
        );
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|f| typed.contains(*f)))
            .unwrap_or(name);
        assert!(
            typed.contains(family),
            "{name} has no # TYPE line before it"
        );
        samples.push((name.to_owned(), labels.to_owned(), value));
    }
    samples
}

/// Every `$ref` in `v`.
fn refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, x) in map {
                match (k.as_str(), x) {
                    ("$ref", Value::String(r)) => out.push(r.clone()),
                    _ => refs(x, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|x| refs(x, out)),
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_parses_and_lists_exactly_the_routes_served() {
    let app = spawn_app().await;
    let (s, doc) = app.call("GET", "/openapi.json", None, None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1")),
        "not OpenAPI 3.1: {}",
        doc["openapi"]
    );
    let typed: utoipa::openapi::OpenApi =
        serde_json::from_value(doc.clone()).expect("the document parses as OpenAPI");
    assert_eq!(
        typed.paths.paths.len(),
        doc["paths"].as_object().map_or(0, |p| p.len())
    );

    // The document's operations are exactly the router's routes.
    let mut documented = std::collections::BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            if ["get", "post", "put", "delete", "patch"].contains(&method.as_str()) {
                documented.insert((method.clone(), path.clone()));
            }
        }
    }
    let routed: std::collections::BTreeSet<(String, String)> = booking_http::ROUTES
        .iter()
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    assert_eq!(documented, routed);

    // Each listed route is served: neither the fallback nor 405 answers it...
    let user = UserId::random().to_string();
    for (method, path) in booking_http::ROUTES {
        let concrete = path
            .replace("{id}", "1")
            .replace("{date}", "2030-01-01")
            .replace("{user_id}", &user);
        let (s, v) = app
            .call(&method.to_uppercase(), &concrete, None, None)
            .await;
        assert_ne!(s, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        assert_ne!(code(&v), "no_such_endpoint", "{method} {path}");
    }
    // ...while a path that is not listed is.
    let (s, v) = app.call("GET", "/v1/nothing-here", None, None).await;
    assert_eq!((s, code(&v)), (StatusCode::NOT_FOUND, "no_such_endpoint"));

    // Every schema reference resolves, and every operation documents its errors.
    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(!all.is_empty());
    for r in &all {
        let name = r
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("unexpected reference {r}"));
        assert!(
            doc["components"]["schemas"][name].is_object(),
            "dangling reference {r}"
        );
    }
    for (method, path) in booking_http::ROUTES {
        let responses = &doc["paths"][path][method]["responses"];
        assert_eq!(
            responses["429"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/ErrorBody",
            "{method} {path} documents no 429 with the error body"
        );
        let touches_storage = !["/healthz", "/metrics", "/openapi.json"].contains(path);
        if touches_storage {
            for status in ["500", "503"] {
                assert_eq!(
                    responses[status]["content"]["application/json"]["schema"]["$ref"],
                    "#/components/schemas/ErrorBody",
                    "{method} {path} documents no {status} with the error body"
                );
            }
        }
        let secured = doc["paths"][path][method]["security"].is_array();
        if secured {
            assert_eq!(
                responses["401"]["content"]["application/json"]["schema"]["$ref"],
                "#/components/schemas/ErrorBody",
                "{method} {path} documents no 401 with the error body"
            );
        }
    }
    assert!(doc["components"]["securitySchemes"]["queue_token"].is_object());
    assert!(doc["components"]["securitySchemes"]["admin_key"].is_object());
}

impl App {
    /// A raw request: status, `Retry-After` (if any) and the JSON body.
    async fn call_with_retry_after(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Option<String>, Value) {
        let url = format!("{}{}", self.base, path);
        let mut req = self.http.request(method.parse().expect("method"), url);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("send");
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().expect("ascii").to_owned());
        let text = resp.text().await.expect("body");
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, retry_after, value)
    }
}

/// Paced waiting: every queue answer says when to ask again (`poll_after_ms`), and
/// waiting answers also in `Retry-After` (whole seconds, rounded up): far back
/// rarely, near the front often.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_answers_say_when_to_ask_again() {
    let app = spawn_app().await;
    let p = AdmissionPolicy::rate(50, Duration::from_secs(1)).expect("policy");
    app.booking.set_policy(p).await.expect("policy");

    // Place 1, the front: the floor.
    let first = UserId::random();
    let (s, retry, v) = app
        .call_with_retry_after(
            "POST",
            "/v1/queue/tokens",
            None,
            Some(json!({"user_id": first.to_string()})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["status"], "waiting");
    assert_eq!(v["poll_after_ms"], 250, "{v}");
    assert_eq!(retry.as_deref(), Some("1"), "250 ms rounds up to 1 s");
    let front = v["token"].as_str().expect("token").to_owned();

    // 998 more, then place 1,000: 20 s expected at the policy's 50 a second; ask
    // again after two thirds of it.
    for _ in 0..998 {
        app.booking
            .issue_token(UserId::random())
            .await
            .expect("issue");
    }
    let back = app.token(UserId::random()).await;
    let (s, retry, v) = app
        .call_with_retry_after("GET", "/v1/queue/status", Some(&back), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["position"], 1_000);
    assert_eq!(v["poll_after_ms"], 13_333, "{v}");
    assert_eq!(retry.as_deref(), Some("14"));

    // The gate's refusal of a waiting token says it too.
    let (s, retry, v) = app
        .call_with_retry_after("GET", "/v1/concerts", Some(&back), None)
        .await;
    assert_eq!((s, code(&v)), (StatusCode::FORBIDDEN, "not_admitted"));
    assert_eq!(retry.as_deref(), Some("14"));

    // Paused: no rate to go by; the assumed 10 a second puts place 1,000 at the
    // ceiling.
    app.booking.set_paused(true).await.expect("pause");
    let (_, retry, v) = app
        .call_with_retry_after("GET", "/v1/queue/status", Some(&back), None)
        .await;
    assert_eq!(v["poll_after_ms"], 20_000, "{v}");
    assert_eq!(retry.as_deref(), Some("20"));
    app.booking.set_paused(false).await.expect("resume");

    // Admitted: nothing to wait for, no Retry-After; the field says the ceiling.
    app.clock.advance(Duration::from_secs(1));
    app.booking.tick().await.expect("tick");
    let (s, retry, v) = app
        .call_with_retry_after("GET", "/v1/queue/status", Some(&front), None)
        .await;
    assert_eq!((s, v["status"].as_str()), (StatusCode::OK, Some("active")));
    assert_eq!(v["poll_after_ms"], 20_000);
    assert_eq!(retry, None);

    // Bad tokens stay 401.
    let (s, retry, v) = app
        .call_with_retry_after("GET", "/v1/queue/status", Some("x.y"), None)
        .await;
    assert_eq!((s, code(&v)), (StatusCode::UNAUTHORIZED, "invalid_token"));
    assert_eq!(retry, None);
}

/// Sold out is an answer, over HTTP on SQLite: with every seat taken, a waiting
/// user's status says `sold_out`, the gate and a hold refuse with `sold_out` (409),
/// the ticker admits nobody; a second instance on the same file agrees after the
/// re-check time; when the hold lapses both clear. Bad input stays 4xx.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sold_out_is_an_answer_over_http() {
    let app = spawn_app().await;
    let store = SqliteStore::open_path(&app._dir.path().join("api.db"), 2)
        .await
        .expect("second store");
    let signer = TokenSigner::new(booking_testkit::SECRET).expect("signer");
    let other = Booking::new(
        AnyStore::Sqlite(store),
        app.clock.clone(),
        signer,
        Config::default(),
    )
    .expect("second instance");
    let s = booking_testkit::concert_date(&app.booking, 1, Some(100)).await;
    let (concert, date) = (s.concert.get(), s.date().to_string());
    let p = AdmissionPolicy::rate(1, Duration::from_secs(1)).expect("policy");
    app.booking.set_policy(p).await.expect("policy");
    let buyer = app.token(UserId::random()).await;
    let waiting = app.token(UserId::random()).await;
    app.clock.advance(Duration::from_secs(1));
    app.booking.tick().await.expect("tick");
    // The second instance looks before the seat goes.
    assert!(!other.sold_out().await.expect("check"));

    let (s1, v) = app
        .call(
            "POST",
            "/v1/reservations",
            Some(&buyer),
            Some(json!({"concert_id": concert, "date": date, "seat": 1})),
        )
        .await;
    assert_eq!(s1, StatusCode::CREATED, "{v}");
    let expires_at = v["expires_at"].as_str().expect("expiry").to_owned();

    let (s, retry, v) = app
        .call_with_retry_after("GET", "/v1/queue/status", Some(&waiting), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["status"], "sold_out", "{v}");
    assert_eq!(v["position"], Value::Null);
    assert_eq!(v["poll_after_ms"], 20_000);
    assert_eq!(retry, None, "not a waiting answer");
    let (s, retry, v) = app
        .call_with_retry_after("GET", "/v1/concerts", Some(&waiting), None)
        .await;
    assert_eq!((s, code(&v)), (StatusCode::CONFLICT, "sold_out"), "{v}");
    assert_eq!(retry.as_deref(), Some("20"));
    // The admitted buyer: a hold and the seat map answer from the mark.
    let (s, v) = app
        .call(
            "POST",
            "/v1/reservations",
            Some(&buyer),
            Some(json!({"concert_id": concert, "date": date, "seat": 1})),
        )
        .await;
    assert_eq!((s, code(&v)), (StatusCode::CONFLICT, "sold_out"), "{v}");
    let (s, v) = app
        .call(
            "GET",
            &format!("/v1/concerts/{concert}/dates/{date}/seats"),
            Some(&buyer),
            None,
        )
        .await;
    assert_eq!((s, code(&v)), (StatusCode::CONFLICT, "sold_out"), "{v}");
    // Bad input is still told apart first.
    for (body, want) in [
        (
            json!({"concert_id": concert, "date": date, "seat": 0}),
            "invalid_seat",
        ),
        (
            json!({"concert_id": concert, "date": "soon", "seat": 1}),
            "bad_request",
        ),
        (
            json!({"concert_id": 999, "date": date, "seat": 1}),
            "unknown_concert",
        ),
    ] {
        let (s, v) = app
            .call("POST", "/v1/reservations", Some(&buyer), Some(body))
            .await;
        assert!(s.is_client_error(), "{s} {v}");
        assert_eq!(code(&v), want, "{v}");
    }
    app.clock.advance(Duration::from_secs(1));
    assert_eq!(
        app.booking.tick().await.expect("tick"),
        booking_core::TickOutcome::SoldOut
    );

    // The second instance agrees once its mark is a re-check time old (it is,
    // after the second above).
    assert!(other.sold_out().await.expect("check"));
    assert_eq!(
        other.queue_status(&waiting).await.expect("status").status,
        booking_core::QueueStatus::SoldOut
    );

    // The hold lapses: both instances clear at once, and admission resumes.
    let lapse: chrono::DateTime<chrono::Utc> = expires_at.parse().expect("time");
    app.clock.set(booking_core::domain::Timestamp::from_millis(
        lapse.timestamp_millis(),
    ));
    let (_, _, v) = app
        .call_with_retry_after("GET", "/v1/queue/status", Some(&waiting), None)
        .await;
    assert_eq!(v["status"], "waiting", "{v}");
    assert!(!other.sold_out().await.expect("check"));
    assert!(matches!(
        app.booking.tick().await.expect("tick"),
        booking_core::TickOutcome::Advanced { admitted: 1, .. }
    ));
}
