//! A REST client of booking-http: the whole flow of one purchase over HTTP with
//! reqwest, against a server this program starts on a free local port (an SQLite
//! file in a temporary directory, the admission ticker running), so it needs
//! nothing else.
//!
//! ```text
//! cargo run --example rest_client
//! ```
//!
//! Against a server of your own, set `BOOKING_URL` (and `BOOKING_ADMIN_KEY`, used
//! only to create the concert): `BOOKING_URL=http://127.0.0.1:8080 cargo run
//! --example rest_client`.
//!
//! The client does what any client should: it sends the queue token as a bearer
//! header, waits between status polls exactly as long as each answer asks
//! (`poll_after_ms`), retries a charge and a payment with the same
//! `Idempotency-Key` (the server answers the first result again), and reads the
//! error shape `{"error": {"code", "message"}}` of a refusal.

use std::error::Error;
use std::sync::Arc;
use std::time::Duration;

use booking_core::{Booking, Config, SystemClock, TokenSigner};
use booking_store::SqliteStore;
use reqwest::{Client, RequestBuilder, StatusCode};
use serde_json::{Value, json};

type Res<T> = Result<T, Box<dyn Error>>;

#[tokio::main]
async fn main() -> Res<()> {
    let (base, admin_key, _server) = match std::env::var("BOOKING_URL") {
        Ok(url) => (
            url,
            std::env::var("BOOKING_ADMIN_KEY").unwrap_or_default(),
            None,
        ),
        Err(_) => {
            let s = LocalServer::start().await?;
            (s.base.clone(), s.admin_key.clone(), Some(s))
        }
    };
    let http = Client::new();
    println!("booking-http at {base}");

    step("1. An operator creates a concert and a date 30 days on, 50 seats at 5000");
    let concert = call(
        http.post(format!("{base}/v1/admin/concerts"))
            .bearer_auth(&admin_key)
            .json(&json!({"name": "Blue Night"})),
        StatusCode::CREATED,
    )
    .await?;
    let concert_id = concert["id"].as_i64().ok_or("a concert id")?;
    let day = (chrono::Utc::now() + chrono::Duration::days(30)).date_naive();
    let date = day.format("%Y-%m-%d").to_string();
    let starts_at = format!("{date}T19:00:00Z");
    call(
        http.post(format!("{base}/v1/admin/concerts/{concert_id}/dates"))
            .bearer_auth(&admin_key)
            .json(&json!({"starts_at": starts_at, "seats": 50, "price": 5000})),
        StatusCode::CREATED,
    )
    .await?;
    println!("   concert #{concert_id}, date {date}");

    step("2. Alice takes a place in the waiting room");
    let alice = uuid::Uuid::new_v4().to_string();
    let place = call(
        http.post(format!("{base}/v1/queue/tokens"))
            .json(&json!({"user_id": alice})),
        StatusCode::CREATED,
    )
    .await?;
    let token = place["token"].as_str().ok_or("a token")?.to_owned();
    println!("   place {} ({})", place["seq"], place["status"]);

    step("3. She waits as the server asks, until admitted");
    let mut status = place;
    while status["status"] == "waiting" {
        let pause = status["poll_after_ms"].as_u64().unwrap_or(1_000);
        println!(
            "   position {}, asking again in {pause} ms",
            status["position"]
        );
        tokio::time::sleep(Duration::from_millis(pause)).await;
        status = call(
            http.get(format!("{base}/v1/queue/status"))
                .bearer_auth(&token),
            StatusCode::OK,
        )
        .await?;
    }
    if status["status"] != "active" {
        return Err(format!("not admitted: {status}").into());
    }
    println!("   active until {}", status["active_until"]);

    step("4. The seat map of the date");
    let map = call(
        http.get(format!(
            "{base}/v1/concerts/{concert_id}/dates/{date}/seats"
        ))
        .bearer_auth(&token),
        StatusCode::OK,
    )
    .await?;
    let seats = map["seats"].as_array().ok_or("seats")?;
    let free = seats.iter().filter(|s| s["state"] == "free").count();
    println!("   {} seats, {free} free", seats.len());

    step("5. She holds seat 7");
    let hold = call(
        http.post(format!("{base}/v1/reservations"))
            .bearer_auth(&token)
            .json(&json!({"concert_id": concert_id, "date": date, "seat": 7})),
        StatusCode::CREATED,
    )
    .await?;
    let reservation = hold["reservation_id"].as_str().ok_or("a reservation id")?;
    println!("   reservation {reservation}, until {}", hold["expires_at"]);

    step("6. Paying before topping up is refused, in the error shape");
    let pay = || {
        http.post(format!("{base}/v1/payments"))
            .bearer_auth(&token)
            .header("Idempotency-Key", format!("pay-{reservation}"))
            .json(&json!({"reservation_id": reservation}))
    };
    let resp = pay().send().await?;
    let refusal: Value = resp.json().await?;
    println!(
        "   {}: {}",
        refusal["error"]["code"], refusal["error"]["message"]
    );

    step("7. She tops up, and the same request again is answered, not repeated");
    let charge = || {
        http.post(format!("{base}/v1/users/{alice}/charges"))
            .bearer_auth(&token)
            .header("Idempotency-Key", "top-up-1")
            .json(&json!({"amount": 8000}))
    };
    let first = call(charge(), StatusCode::CREATED).await?;
    let again = call(charge(), StatusCode::OK).await?;
    println!(
        "   balance after {}, the retry answers the same entry #{} (#{})",
        first["balance_after"], again["id"], first["id"]
    );

    step("8. She pays; a retry of the payment answers the same payment");
    let paid = call(pay(), StatusCode::CREATED).await?;
    let replay = call(pay(), StatusCode::OK).await?;
    println!(
        "   payment {} ({}), the retry: {}",
        paid["payment_id"], paid["amount"], replay["payment_id"]
    );

    step("9. Her token ended with the payment; her wallet is still hers to read");
    let resp = http
        .post(format!("{base}/v1/reservations"))
        .bearer_auth(&token)
        .json(&json!({"concert_id": concert_id, "date": date, "seat": 8}))
        .send()
        .await?;
    let ended: Value = resp.json().await?;
    println!("   another hold: {}", ended["error"]["code"]);
    let balance = call(
        http.get(format!("{base}/v1/users/{alice}/balance"))
            .bearer_auth(&token),
        StatusCode::OK,
    )
    .await?;
    println!("   balance {}", balance["balance"]);
    Ok(())
}

/// Sends `req` and returns its JSON body, or an error naming the answer when its
/// status is not `want`.
async fn call(req: RequestBuilder, want: StatusCode) -> Res<Value> {
    let resp = req.send().await?;
    let status = resp.status();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    if status != want {
        return Err(format!("expected {want}, got {status}: {body}").into());
    }
    Ok(body)
}

fn step(title: &str) {
    println!("\n{title}");
}

/// A booking-http server on a free local port, over an SQLite file in a temporary
/// directory, with the admission ticker running; stopped when dropped.
struct LocalServer {
    base: String,
    admin_key: String,
    _dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl LocalServer {
    async fn start() -> Res<LocalServer> {
        let dir = tempfile::tempdir()?;
        let store = SqliteStore::open_path(&dir.path().join("booking.db"), 4).await?;
        let secret = format!("example secret {}", uuid::Uuid::new_v4());
        let signer = TokenSigner::new(secret.as_bytes())?;
        let booking = Arc::new(Booking::new(store, SystemClock, signer, Config::default())?);
        let admin_key = format!("example-admin-{}", uuid::Uuid::new_v4());
        let app = booking_http::router(
            Arc::clone(&booking),
            booking_http::RouterOptions {
                admin_key: Some(admin_key.clone()),
                rate_limits: booking_http::limits::RateLimits::off(),
                ..booking_http::RouterOptions::default()
            },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (stop_bg, stopped_bg) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(booking_http::run_background(
            booking,
            booking_http::BackgroundOptions::default(),
            async move {
                let _ = stopped_bg.await;
            },
        ));
        tokio::spawn(booking_http::serve(listener, app, async move {
            let _ = stopped.await;
            let _ = stop_bg.send(());
        }));
        Ok(LocalServer {
            base,
            admin_key,
            _dir: dir,
            stop: Some(stop),
        })
    }
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
