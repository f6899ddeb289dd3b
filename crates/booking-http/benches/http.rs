//! HTTP load benchmark: queue-status polls/s, seat-map reads/s, holds/s and
//! payments/s through the real router on loopback, on SQLite and on PostgreSQL,
//! each beside a rate measured in the same run:
//!
//! - polls and seat-map reads beside a hello-world axum handler (same server stack,
//!   same load generator, same number of connections), with the caches `booking
//!   serve` uses by default (queue counters 100 ms, gate 1 s, seat maps 100 ms), and
//!   seat maps once more from an engine without any cache;
//! - holds beside a raw single-row `UPDATE`, payments beside a raw three-statement
//!   transaction, on the same database (the store benchmark's raw rates);
//! - holds and payments once more straight into the engine (the calls the router's
//!   handlers make, without HTTP), so that the cost of the HTTP layer itself shows.
//!
//! ```text
//! cargo bench -p booking-http --bench http
//! BOOKING_BENCH_SECS=5 BOOKING_BENCH_CONNS=64 BOOKING_BENCH_BACKENDS=sqlite cargo bench -p booking-http --bench http
//! ```
//!
//! The load generator is a closed loop of `BOOKING_BENCH_CONNS` (default 32) tasks,
//! each with a keep-alive connection, in the same process as the server: on a small
//! machine both share the cores, the same way for every row, so compare ratios.
//! PostgreSQL: `BOOKING_TEST_POSTGRES_URL` if set, else a throwaway local server with
//! `fsync` on.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use booking_core::domain::{
    AdmissionPolicy, Amount, ConcertId, ConcertName, NewSchedule, ReservationId, SeatCount, SeatNo,
    SeatPrices, UserId,
};
use booking_core::{Booking, Clock, Config, SystemClock, TokenSigner};
use booking_store::{AnyStore, PgStore, SqliteStore};
use booking_testkit::bench::{RawDb, drain, rate};
use reqwest::{Client, StatusCode};
use serde_json::json;

type Engine = Arc<Booking<AnyStore, SystemClock>>;

/// Seats per date of the hold pool (the most a date may have).
const POOL_SEATS: usize = 1_000;

struct Settings {
    secs: f64,
    conns: usize,
}

fn client(conns: usize) -> Client {
    Client::builder()
        .pool_max_idle_per_host(conns)
        .build()
        .expect("client")
}

async fn listen() -> (tokio::net::TcpListener, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    (listener, base)
}

/// GETs `url` (with `token`) in a closed loop; counts 200s per second.
async fn get_rate(http: &Client, url: String, token: Option<String>, set: &Settings) -> f64 {
    let (http, url, token) = (http.clone(), Arc::new(url), token.map(Arc::<str>::from));
    rate(set.conns, set.secs, move |_, _| {
        let (http, url, token) = (http.clone(), Arc::clone(&url), token.clone());
        async move {
            let mut req = http.get(url.as_str());
            if let Some(t) = token {
                req = req.bearer_auth(&*t);
            }
            match req.send().await {
                Ok(r) => r.status() == StatusCode::OK && r.bytes().await.is_ok(),
                Err(_) => false,
            }
        }
    })
    .await
}

/// The hello-world baseline: the same axum stack with one trivial handler.
async fn hello_rate(http: &Client, set: &Settings) -> f64 {
    let (listener, base) = listen().await;
    let app = axum::Router::new().route("/", axum::routing::get(|| async { "hello, world" }));
    let server = tokio::spawn(booking_http::serve(listener, app, std::future::pending()));
    let r = get_rate(http, format!("{base}/"), None, set).await;
    server.abort();
    r
}

/// Issues, admits and shows up `n` users; returns their ids and tokens.
async fn admitted(booking: &Engine, n: usize) -> Vec<(UserId, String)> {
    let users: Vec<UserId> = (0..n).map(|_| UserId::random()).collect();
    let mut tasks = tokio::task::JoinSet::new();
    for part in users.chunks(n.div_ceil(16).max(1)) {
        let (b, part) = (Arc::clone(booking), part.to_vec());
        tasks.spawn(async move {
            let mut out = Vec::with_capacity(part.len());
            for u in part {
                out.push((u, b.issue_token(u).await.expect("issue").token));
            }
            out
        });
    }
    let tokens: Vec<(UserId, String)> = tasks.join_all().await.into_iter().flatten().collect();
    tokio::time::sleep(Duration::from_millis(20)).await;
    booking.tick().await.expect("tick");
    for (_, t) in &tokens {
        booking.gate(t).await.expect("admitted");
    }
    tokens
}

/// A new concert with `dates` dates of `seats` seats at 100 each.
async fn concert(
    booking: &Engine,
    name: &str,
    dates: usize,
    seats: usize,
) -> (ConcertId, Vec<String>) {
    let c = booking
        .create_concert(ConcertName::new(name).expect("name"))
        .await
        .expect("concert");
    let mut days = Vec::new();
    for d in 0..dates {
        let starts = SystemClock
            .now()
            .plus(Duration::from_secs(86_400 * (d as u64 + 1)));
        let new = NewSchedule::new(
            c.id,
            starts,
            SeatCount::new(seats as i64).expect("seats"),
            SeatPrices::Uniform(Amount::new(100).expect("price")),
        )
        .expect("schedule");
        days.push(
            booking
                .create_schedule(new)
                .await
                .expect("date")
                .date()
                .to_string(),
        );
    }
    (c.id, days)
}

struct Row {
    name: String,
    hello: f64,
    poll: f64,
    seats: f64,
    seats_plain: f64,
    raw_update: f64,
    hold: f64,
    engine_hold: f64,
    raw_three: f64,
    pay: f64,
    engine_pay: f64,
}

/// Starts the router of `booking` on a new port; returns its base URL.
fn start(booking: &Engine, listener: tokio::net::TcpListener) -> tokio::task::JoinHandle<()> {
    let app = booking_http::router(
        Arc::clone(booking),
        booking_http::RouterOptions {
            admin_key: None,
            rate_limits: booking_http::limits::RateLimits::off(),
            ..booking_http::RouterOptions::default()
        },
    );
    tokio::spawn(async move {
        let _ = booking_http::serve(listener, app, std::future::pending()).await;
    })
}

/// `booking` runs with `booking serve`'s caches; `plain`, over the same store, with
/// none, for the seat maps without cache.
async fn bench(
    name: &str,
    booking: Engine,
    plain: Engine,
    raw: RawDb,
    http: &Client,
    set: &Settings,
) -> Row {
    raw.setup().await;
    let p = AdmissionPolicy::rate(AdmissionPolicy::MAX_BATCH, Duration::from_millis(10))
        .expect("policy");
    booking.set_policy(p).await.expect("policy");
    let (listener, base) = listen().await;
    let server = start(&booking, listener);
    let (listener, plain_base) = listen().await;
    let plain_server = start(&plain, listener);

    // Polls: a waiting user's token (admission paused), the common case in a
    // waiting room; seat maps: an admitted user's token. On every connection.
    booking.set_paused(true).await.expect("pause");
    let waiting = booking
        .issue_token(UserId::random())
        .await
        .expect("issue")
        .token;
    let hello = hello_rate(http, set).await;
    let poll = get_rate(http, format!("{base}/v1/queue/status"), Some(waiting), set).await;
    booking.set_paused(false).await.expect("resume");
    let reader = admitted(&booking, 1).await.remove(0).1;
    let (map_concert, map_days) = concert(&booking, "Seat maps", 1, 50).await;
    let seats_url = format!(
        "{base}/v1/concerts/{}/dates/{}/seats",
        map_concert.get(),
        map_days[0]
    );
    let seats = get_rate(http, seats_url.clone(), Some(reader.clone()), set).await;
    let plain_url = seats_url.replacen(&base, &plain_base, 1);
    let seats_plain = get_rate(http, plain_url, Some(reader), set).await;
    plain_server.abort();

    // Holds: beside the raw UPDATE, through the router and straight into the engine.
    let r = raw.clone();
    let raw_update = rate(set.conns, set.secs, move |t, _| {
        let r = r.clone();
        async move {
            r.update(t as i64 % 64).await;
            true
        }
    })
    .await;
    let via_http = Via::Http(http.clone(), Arc::new(base.clone()));
    let via_engine = Via::Engine(Arc::clone(&booking));
    let hold = hold_rate(&booking, &via_http, set).await;
    let engine_hold = hold_rate(&booking, &via_engine, set).await;

    // Payments: beside the raw three-statement transaction, the same two ways.
    let r = raw.clone();
    let raw_three = rate(set.conns, set.secs, move |t, i| {
        let r = r.clone();
        async move {
            r.three(t as i64 % 64, i as i64).await;
            true
        }
    })
    .await;
    let pay = pay_rate(&booking, &via_http, set).await;
    let engine_pay = pay_rate(&booking, &via_engine, set).await;
    server.abort();
    Row {
        name: name.into(),
        hello,
        poll,
        seats,
        seats_plain,
        raw_update,
        hold,
        engine_hold,
        raw_three,
        pay,
        engine_pay,
    }
}

/// Where a measured hold or payment goes: through the router on loopback, or straight
/// into the engine, with the calls the router's handler makes.
#[derive(Clone)]
enum Via {
    Http(Client, Arc<String>),
    Engine(Engine),
}

impl Via {
    /// Holds `seat` on `date` with `token`; true when the hold was taken.
    async fn hold(&self, token: &str, concert: ConcertId, date: &str, seat: usize) -> bool {
        match self {
            Via::Http(h, base) => {
                let body = json!({ "concert_id": concert.get(), "date": date, "seat": seat });
                let resp = h
                    .post(format!("{base}/v1/reservations"))
                    .bearer_auth(token)
                    .json(&body)
                    .send()
                    .await;
                matches!(resp, Ok(r) if r.status() == StatusCode::CREATED)
            }
            Via::Engine(b) => {
                let Ok(who) = b.gate_for_write(token).await else {
                    return false;
                };
                let Ok(schedule) = b.schedule_on(concert, date.parse().expect("date")).await else {
                    return false;
                };
                let seat = SeatNo::new(seat as i64).expect("seat");
                b.hold(&who, schedule.id, seat).await.is_ok()
            }
        }
    }

    /// Pays reservation `id` with `token`; true when it was paid.
    async fn pay(&self, token: &str, id: ReservationId) -> bool {
        match self {
            Via::Http(h, base) => {
                let resp = h
                    .post(format!("{base}/v1/payments"))
                    .bearer_auth(token)
                    .json(&json!({ "reservation_id": id.to_string() }))
                    .send()
                    .await;
                matches!(resp, Ok(r) if r.status() == StatusCode::CREATED)
            }
            Via::Engine(b) => b.pay(token, id, None).await.is_ok(),
        }
    }
}

/// Holds/s: every hold takes the next untouched seat of a new pool; each connection
/// rotates through its own users, four holds each (the per-user cap).
async fn hold_rate(booking: &Engine, via: &Via, set: &Settings) -> f64 {
    let expected = (set.secs * 15_000.0) as usize;
    let (pool_concert, pool_days) =
        concert(booking, "Holds", expected.div_ceil(POOL_SEATS), POOL_SEATS).await;
    let per_conn = 2 * expected.div_ceil(4 * set.conns) + 1;
    let holders = Arc::new(admitted(booking, per_conn * set.conns).await);
    let next = Arc::new(AtomicUsize::new(0));
    let via = via.clone();
    let pool_days = Arc::new(pool_days);
    rate(set.conns, set.secs, move |t, i| {
        let (via, holders, next, days) = (
            via.clone(),
            Arc::clone(&holders),
            Arc::clone(&next),
            Arc::clone(&pool_days),
        );
        async move {
            let k = next.fetch_add(1, Ordering::Relaxed);
            if k >= days.len() * POOL_SEATS {
                return false;
            }
            let user = &holders[(t * per_conn + i as usize / 4) % holders.len()].1;
            via.hold(
                user,
                pool_concert,
                &days[k / POOL_SEATS],
                k % POOL_SEATS + 1,
            )
            .await
        }
    })
    .await
}

/// Payments/s: users with a hold and a balance each, paid as fast as the connections
/// go until the deadline or the work runs out.
async fn pay_rate(booking: &Engine, via: &Via, set: &Settings) -> f64 {
    let payers_n = (set.secs * 2_500.0) as usize;
    let (pay_concert, pay_days) = concert(
        booking,
        "Payments",
        payers_n.div_ceil(POOL_SEATS),
        POOL_SEATS,
    )
    .await;
    let payers = admitted(booking, payers_n).await;
    let mut work = Vec::with_capacity(payers_n);
    for (k, (user, token)) in payers.into_iter().enumerate() {
        let who = booking.gate(&token).await.expect("gate");
        let sched = booking
            .schedule_on(pay_concert, pay_days[k / POOL_SEATS].parse().expect("date"))
            .await
            .expect("date");
        let seat = SeatNo::new((k % POOL_SEATS + 1) as i64).expect("seat");
        let held = booking.hold(&who, sched.id, seat).await.expect("hold");
        booking
            .charge(user, Amount::new(100).expect("amount"), None)
            .await
            .expect("charge");
        work.push((token, held.id));
    }
    let via = via.clone();
    drain(set.conns, set.secs, work, move |(token, id)| {
        let via = via.clone();
        async move { via.pay(&token, id).await }
    })
    .await
}

fn print(rows: &[Row]) {
    println!(
        "| backend | hello/s | polls/s | polls/hello | seat maps/s | maps/hello | uncached maps/s | uncached/hello | raw UPDATE/s | holds/s | holds/raw | engine holds/s | holds/engine | raw 3-stmt/s | payments/s | pay/raw3 | engine pay/s | pay/engine |"
    );
    println!(
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for r in rows {
        println!(
            "| {} | {:.0} | {:.0} | {:.0}% | {:.0} | {:.0}% | {:.0} | {:.0}% | {:.0} | {:.0} | {:.0}% | {:.0} | {:.0}% | {:.0} | {:.0} | {:.0}% | {:.0} | {:.0}% |",
            r.name,
            r.hello,
            r.poll,
            100.0 * r.poll / r.hello,
            r.seats,
            100.0 * r.seats / r.hello,
            r.seats_plain,
            100.0 * r.seats_plain / r.hello,
            r.raw_update,
            r.hold,
            100.0 * r.hold / r.raw_update,
            r.engine_hold,
            100.0 * r.hold / r.engine_hold,
            r.raw_three,
            r.pay,
            100.0 * r.pay / r.raw_three,
            r.engine_pay,
            100.0 * r.pay / r.engine_pay,
        );
    }
}

/// An engine over `store`: with `booking serve`'s default caches (counters 100 ms,
/// gate 1 s, seat maps 100 ms), or with none.
fn engine(store: AnyStore, cached: bool) -> Engine {
    let signer = TokenSigner::new(b"benchmark secret of at least 32 bytes!").expect("signer");
    let ms = |n| Duration::from_millis(if cached { n } else { 0 });
    let config = Config {
        max_waiting: 10_000_000,
        counters_cache: ms(100),
        gate_cache: ms(1_000),
        seat_map_cache: ms(100),
        ..Config::default()
    };
    Arc::new(Booking::new(store, SystemClock, signer, config).expect("engine"))
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let env = |k: &str| std::env::var(k).ok();
    let set = Settings {
        secs: env("BOOKING_BENCH_SECS")
            .and_then(|s| s.parse().ok())
            .unwrap_or(3.0),
        conns: env("BOOKING_BENCH_CONNS")
            .and_then(|s| s.parse().ok())
            .unwrap_or(32),
    };
    let backends = env("BOOKING_BENCH_BACKENDS").unwrap_or_else(|| "sqlite,postgres".into());
    println!(
        "# booking-http benchmark ({} s per measurement, {} connections, {} cores)",
        set.secs,
        set.conns,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    let http = client(set.conns);
    let mut rows = Vec::new();
    if backends.contains("sqlite") {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = SqliteStore::open_path(&dir.path().join("bench.db"), 8)
            .await
            .expect("sqlite");
        let raw = RawDb::Sqlite(store.write_pool().clone());
        let (cached, plain) = (
            engine(AnyStore::Sqlite(store.clone()), true),
            engine(AnyStore::Sqlite(store), false),
        );
        rows.push(bench("SQLite", cached, plain, raw, &http, &set).await);
    }
    if backends.contains("postgres") {
        let db = booking_testkit::pg::database_on(booking_testkit::pg::durable_server_url()).await;
        let store = PgStore::open(&db.url, 64).await.expect("postgres");
        let raw = RawDb::Postgres(store.pool().clone());
        rows.push(
            bench(
                "PostgreSQL",
                engine(AnyStore::Postgres(store.clone()), true),
                engine(AnyStore::Postgres(store.clone()), false),
                raw,
                &http,
                &set,
            )
            .await,
        );
        store.close().await;
    }
    print(&rows);
}
