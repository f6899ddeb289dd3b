//! Three booking-http servers sharing one PostgreSQL database, users spread across
//! them: admission in exact issue order, one owner per seat, money conserved, and a
//! payment on one instance ends the token on the others. The servers run with the
//! caches `booking serve` uses by default (gate 1 s, seat maps 100 ms, counters
//! 100 ms): holds and payments are refused at once everywhere, reads within the
//! gate cache.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use booking_core::domain::{AdmissionPolicy, UserId};
use booking_core::{Booking, Config, ManualClock, TokenSigner};
use booking_store::PgStore;
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

struct Node {
    base: String,
    booking: Arc<Booking<PgStore, ManualClock>>,
}

async fn post(http: &Client, url: String, token: &str, body: Value) -> (StatusCode, Value) {
    let r = http
        .post(url)
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .expect("send");
    (r.status(), r.json().await.unwrap_or(Value::Null))
}

async fn get(http: &Client, url: String, token: &str) -> (StatusCode, Value) {
    let r = http.get(url).bearer_auth(token).send().await.expect("send");
    (r.status(), r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_instances_on_one_postgres_keep_every_invariant() {
    const USERS: usize = 60;
    let db = booking_testkit::pg::fresh_database().await;
    let clock = ManualClock::new(booking_testkit::T0);
    let mut nodes = Vec::new();
    for _ in 0..3 {
        let store = PgStore::open(&db.url, 8).await.expect("store");
        let signer = TokenSigner::new(booking_testkit::SECRET).expect("signer");
        let booking =
            Arc::new(Booking::new(store, clock.clone(), signer, serve_config()).expect("booking"));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(booking_http::serve(
            listener,
            booking_http::router(
                Arc::clone(&booking),
                booking_http::RouterOptions {
                    admin_key: None,
                    rate_limits: booking_http::limits::RateLimits::off(),
                    storage: None,
                    line: None,
                },
            ),
            std::future::pending(),
        ));
        nodes.push(Node { base, booking });
    }
    let http = Client::new();
    let schedule = booking_testkit::concert_date(&nodes[0].booking, 20, Some(100)).await;
    let (concert, date) = (schedule.concert.get(), schedule.date().to_string());

    // Tokens issued round-robin across the instances, one at a time: issue order
    // is known.
    let mut users = Vec::new();
    for i in 0..USERS {
        let user = UserId::random();
        let r = http
            .post(format!("{}/v1/queue/tokens", nodes[i % 3].base))
            .json(&json!({"user_id": user.to_string()}))
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), StatusCode::CREATED);
        let v: Value = r.json().await.expect("json");
        assert_eq!(
            v["seq"].as_u64(),
            Some(i as u64 + 1),
            "sequences follow issue order"
        );
        users.push((user, v["token"].as_str().expect("token").to_owned()));
    }

    // Admission, 10 per tick, every instance ticking: each round admits exactly
    // the next 10 in issue order.
    nodes[0]
        .booking
        .set_policy(AdmissionPolicy::rate(10, Duration::from_secs(1)).expect("p"))
        .await
        .expect("policy");
    for round in 1..=(USERS / 10) {
        clock.advance(Duration::from_secs(1));
        let ticks = futures_ticks(&nodes).await;
        assert_eq!(ticks, 1, "one advance per tick across instances");
        for (i, (_, token)) in users.iter().enumerate() {
            let (_, v) = get(
                &http,
                format!("{}/v1/queue/status", nodes[(i + 1) % 3].base),
                token,
            )
            .await;
            let admitted = v["status"] != "waiting";
            assert_eq!(
                admitted,
                i < round * 10,
                "user {} after round {round}: {v}",
                i + 1
            );
        }
    }

    // Every instance lets everyone through once, so each remembers every session.
    for (_, token) in &users {
        for node in &nodes {
            let (s, v) = get(&http, format!("{}/v1/concerts", node.base), token).await;
            assert_eq!(s, StatusCode::OK, "{v}");
        }
    }

    // Everyone races for 20 seats, each through a different instance than the one
    // that issued its token; then pays.
    let mut set = tokio::task::JoinSet::new();
    for (i, (user, token)) in users.iter().cloned().enumerate() {
        let http = http.clone();
        let base = nodes[(i + 2) % 3].base.clone();
        let (concert, date) = (concert, date.clone());
        set.spawn(async move {
            let seat = (i % 20) + 1;
            let (s, hold) = post(
                &http,
                format!("{base}/v1/reservations"),
                &token,
                json!({"concert_id": concert, "date": date, "seat": seat}),
            )
            .await;
            if s != StatusCode::CREATED {
                assert_eq!(s, StatusCode::CONFLICT, "{hold}");
                return None;
            }
            let (s, _) = post(
                &http,
                format!("{base}/v1/users/{user}/charges"),
                &token,
                json!({"amount": 100}),
            )
            .await;
            assert_eq!(s, StatusCode::CREATED);
            let (s, paid) = post(
                &http,
                format!("{base}/v1/payments"),
                &token,
                json!({"reservation_id": hold["reservation_id"]}),
            )
            .await;
            assert_eq!(s, StatusCode::CREATED, "{paid}");
            Some((user, token, seat, hold["reservation_id"].clone(), i))
        });
    }
    let winners: Vec<_> = set.join_all().await.into_iter().flatten().collect();
    assert_eq!(winners.len(), 20, "every seat sold exactly once");
    let seats: BTreeMap<usize, UserId> = winners.iter().map(|(u, _, s, _, _)| (*s, *u)).collect();
    assert_eq!(seats.len(), 20, "no seat sold twice");

    // A payment on one instance ended the token on the others: at once for holds
    // and payments, although every instance remembers the session...
    let ended = |s: StatusCode, v: &Value| (s, v["error"]["code"].as_str().map(str::to_owned));
    let token_ended = (StatusCode::UNAUTHORIZED, Some("token_ended".to_owned()));
    for (i, (_, token, seat, reservation, k)) in winners.iter().enumerate() {
        for node in &nodes {
            let other = seat % 20 + 1;
            let (s, v) = post(
                &http,
                format!("{}/v1/reservations", node.base),
                token,
                json!({"concert_id": concert, "date": date, "seat": other}),
            )
            .await;
            assert_eq!(ended(s, &v), token_ended, "hold by winner {i}: {v}");
            let (s, v) = post(
                &http,
                format!("{}/v1/payments", node.base),
                token,
                json!({"reservation_id": reservation}),
            )
            .await;
            assert_eq!(ended(s, &v), token_ended, "payment by winner {i}: {v}");
        }
        // ...and at once for reads on the instance that took the payment.
        let (s, v) = get(
            &http,
            format!("{}/v1/concerts", nodes[(k + 2) % 3].base),
            token,
        )
        .await;
        assert_eq!(ended(s, &v), token_ended, "read by winner {i}: {v}");
    }
    // Reads on the other instances: once their gate cache (1 s) has passed.
    clock.advance(Duration::from_secs(1));
    for (i, (user, token, _, _, _)) in winners.iter().enumerate() {
        for node in &nodes {
            let (s, v) = get(&http, format!("{}/v1/concerts", node.base), token).await;
            assert_eq!(ended(s, &v), token_ended, "read by winner {i}: {v}");
        }
        let (_, v) = get(
            &http,
            format!("{}/v1/users/{user}/balance", nodes[i % 3].base),
            token,
        )
        .await;
        assert_eq!(v["balance"], 0, "charged 100, paid 100");
    }
    let sales = nodes[1]
        .booking
        .sales(schedule.concert)
        .await
        .expect("sales");
    assert_eq!(
        (sales[0].n_sold, sales[0].revenue.minor_units()),
        (20, 2_000)
    );
}

/// The settings `booking serve` runs with by default.
fn serve_config() -> Config {
    Config {
        counters_cache: Duration::from_millis(100),
        gate_cache: Duration::from_secs(1),
        seat_map_cache: Duration::from_millis(100),
        ..Config::default()
    }
}

/// Every instance ticks at the same instant; returns how many advanced.
async fn futures_ticks(nodes: &[Node]) -> usize {
    let mut set = tokio::task::JoinSet::new();
    for n in nodes {
        let b = Arc::clone(&n.booking);
        set.spawn(async move { b.tick().await.expect("tick") });
    }
    set.join_all()
        .await
        .into_iter()
        .filter(|t| matches!(t, booking_core::TickOutcome::Advanced { .. }))
        .count()
}
