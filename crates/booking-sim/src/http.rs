//! The HTTP target: virtual users call one or several booking-http instances (all
//! on one database), each user sticking to one instance, spread round-robin. The
//! operator side (concert, dates, policy, queue counters) uses the admin API of the
//! first instance.
//!
//! [`spawn_servers`] starts booking-http instances in this process, for
//! `--spawn N`: each one has its own engine, connection pool and background tasks
//! (admission ticker, sweeper), on a tokio runtime of its own so that their CPU time
//! can be told apart from the simulator's.

use std::sync::Arc;
use std::time::Duration;

use booking_core::domain::{AdmissionPolicy, Timestamp, UserId};
use booking_core::{Booking, Config, SystemClock, TokenSigner};
use booking_store::{StoreOptions, connect};
use chrono::NaiveDate;
use reqwest::{Client, RequestBuilder, StatusCode};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::target::{
    ChargeAck, DateCreated, DateInfo, FailureKind, HoldAck, OpError, OpResult, PayAck, QueueSample,
    QueueState, Refusal, SeatView, Target, Ticket,
};

/// How long one request may take before it counts as a timeout.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How long an idle connection is kept for the next request: less than the 5 s
/// after which `booking serve` closes an idle connection (`--header-timeout`).
pub const POOL_IDLE: Duration = Duration::from_secs(3);

/// Connections per instance unless told otherwise.
pub const DEFAULT_CONNECTIONS: usize = 128;

/// What a run is told when a server answers 429 Too Many Requests.
pub const RATE_LIMIT_HINT: &str = "the server is rate limiting this client; start it with \
     --rate-limit-ip 0 (and --rate-limit-token 0), or give the simulator fewer --users";

/// How the HTTP target connects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpOptions {
    /// Requests in flight per instance and lane at most, so connections per
    /// instance and lane at most: virtual users share them as a browser's tabs
    /// share its connections (a user whose request finds them all busy waits for
    /// one). The line's requests (token issues, status polls) and the shop's
    /// (everything an admitted user sends) have a lane each, as each real user has
    /// connections of their own: a buyer never waits in the load generator
    /// behind thousands of arrivals, only in the server.
    pub connections: usize,
    /// The instance the operator side (admin API) talks to; the first of the
    /// users' instances when `None`.
    pub admin_base: Option<String>,
    /// Waiting users hold a pushed status stream (`GET /v1/queue/events`) instead
    /// of polling. Streams do not count against `connections`: each is a
    /// connection of its own, as in a browser.
    pub push: bool,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            connections: DEFAULT_CONNECTIONS,
            admin_base: None,
            push: false,
        }
    }
}

/// Where a request goes, and which connections it waits for.
#[derive(Debug, Clone, Copy)]
enum Route {
    /// A waiting-room request (token issue, status poll) to this instance.
    Line(usize),
    /// An admitted user's request to this instance.
    Shop(usize),
    /// The operator's instance, which does not count against the users'
    /// connections.
    Operator,
}

/// Virtual users calling booking-http over HTTP.
pub struct HttpTarget {
    client: Client,
    bases: Vec<String>,
    admin_base: String,
    admin_key: String,
    /// One pair per instance (the line's lane, the shop's): a permit per
    /// connection.
    slots: Vec<[tokio::sync::Semaphore; 2]>,
    connections: usize,
    /// For status streams: no overall timeout, since a stream lasts as long as the
    /// wait.
    streams: Client,
    push: bool,
}

impl HttpTarget {
    /// A target over the instances at `bases` (`http://host:port`, no trailing
    /// slash needed), with the admin key they share, and the default options.
    ///
    /// # Errors
    /// When `bases` is empty or the HTTP client cannot be built.
    pub fn new(bases: Vec<String>, admin_key: String) -> Result<Self, String> {
        Self::with_options(bases, admin_key, HttpOptions::default())
    }

    /// A target over the instances at `bases` with `options`.
    ///
    /// # Errors
    /// When `bases` is empty, `connections` is 0, or the HTTP client cannot be
    /// built.
    pub fn with_options(
        bases: Vec<String>,
        admin_key: String,
        options: HttpOptions,
    ) -> Result<Self, String> {
        if bases.is_empty() {
            return Err("give at least one base URL".into());
        }
        if options.connections == 0 {
            return Err("connections per instance must be at least 1".into());
        }
        let client = Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(Duration::from_secs(5))
            // Shorter than the server's header-read timeout (5 s by default), which
            // also closes a kept-alive connection idle that long: a request sent on
            // a connection the server is closing fails without an answer.
            .pool_idle_timeout(POOL_IDLE)
            // Every connection a user's request opened stays for the next one:
            // both lanes' (and the operator's).
            .pool_max_idle_per_host(2 * options.connections + 1)
            .tcp_nodelay(true)
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        let streams = Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .pool_idle_timeout(POOL_IDLE)
            .tcp_nodelay(true)
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        let bases: Vec<String> = bases
            .into_iter()
            .map(|b| b.trim_end_matches('/').to_owned())
            .collect();
        let admin_base = options
            .admin_base
            .map_or_else(|| bases[0].clone(), |b| b.trim_end_matches('/').to_owned());
        let slots = bases
            .iter()
            .map(|_| {
                [
                    tokio::sync::Semaphore::new(options.connections),
                    tokio::sync::Semaphore::new(options.connections),
                ]
            })
            .collect();
        Ok(HttpTarget {
            client,
            bases,
            admin_base,
            admin_key,
            slots,
            connections: options.connections,
            streams,
            push: options.push,
        })
    }

    /// Connections per instance at most.
    pub fn connections(&self) -> usize {
        self.connections
    }

    /// The instances' base URLs.
    pub fn bases(&self) -> &[String] {
        &self.bases
    }

    fn url(&self, node: usize, path: &str) -> String {
        format!("{}{}", self.bases[node % self.bases.len()], path)
    }

    /// Sends `req` by `route` and reads the answer.
    async fn exchange(&self, route: Route, req: RequestBuilder) -> OpResult<(StatusCode, Vec<u8>)> {
        self.exchange_paced(route, req)
            .await
            .map(|(status, body, _)| (status, body))
    }

    /// [`Self::exchange`], with the answer's `Retry-After` (in seconds) if any.
    async fn exchange_paced(
        &self,
        route: Route,
        req: RequestBuilder,
    ) -> OpResult<(StatusCode, Vec<u8>, Option<Duration>)> {
        let lane = match route {
            Route::Line(n) => Some((n, 0)),
            Route::Shop(n) => Some((n, 1)),
            Route::Operator => None,
        };
        let _permit = match lane {
            Some((n, lane)) => Some(
                self.slots[n % self.slots.len()][lane]
                    .acquire()
                    .await
                    .map_err(|_| OpError::failed(FailureKind::Transport, "the target closed"))?,
            ),
            None => None,
        };
        let resp = req.send().await.map_err(transport)?;
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = resp.bytes().await.map_err(transport)?;
        Ok((status, Vec::from(body), retry_after))
    }

    async fn send<T: DeserializeOwned>(
        &self,
        route: Route,
        req: RequestBuilder,
        ok: &[StatusCode],
    ) -> OpResult<T> {
        let (status, body) = self.exchange(route, req).await?;
        if ok.contains(&status) {
            return serde_json::from_slice(&body)
                .map_err(|e| OpError::failed(FailureKind::Protocol, format!("{status}: {e}")));
        }
        Err(error_of(status, &body))
    }

    /// An operator request: like [`Self::send`], but tried again (up to ten
    /// times, 100 ms more each time) when a server that rate-limits per address
    /// answers 429, since the operator side shares the address of the users.
    async fn send_admin<T: DeserializeOwned>(
        &self,
        req: RequestBuilder,
        ok: &[StatusCode],
    ) -> OpResult<T> {
        let mut attempt = 1;
        loop {
            let Some(again) = req.try_clone() else {
                return self.send(Route::Operator, req, ok).await;
            };
            match self.send(Route::Operator, again, ok).await {
                Err(OpError::Failed(f)) if f.kind == FailureKind::RateLimited && attempt < 10 => {
                    tokio::time::sleep(Duration::from_millis(100 * attempt)).await;
                    attempt += 1;
                }
                r => return r,
            }
        }
    }

    /// A queue answer and its `Retry-After`.
    async fn send_paced(
        &self,
        node: usize,
        req: RequestBuilder,
        ok: &[StatusCode],
    ) -> OpResult<(QueueBody, Option<Duration>)> {
        let (status, body, retry_after) = self.exchange_paced(Route::Line(node), req).await?;
        if !ok.contains(&status) {
            return Err(error_of(status, &body));
        }
        let b = serde_json::from_slice(&body)
            .map_err(|e| OpError::failed(FailureKind::Protocol, format!("{status}: {e}")))?;
        Ok((b, retry_after))
    }

    fn user_req(&self, method: reqwest::Method, t: &Ticket, path: &str) -> RequestBuilder {
        self.client
            .request(method, self.url(t.node, path))
            .bearer_auth(&t.token)
    }

    fn admin_req(&self, method: reqwest::Method, path: &str) -> RequestBuilder {
        self.client
            .request(method, format!("{}{path}", self.admin_base))
            .bearer_auth(&self.admin_key)
    }
}

/// An open status stream (`GET /v1/queue/events`), read one status at a time.
pub struct StatusStream {
    resp: reqwest::Response,
    buf: Vec<u8>,
}

impl StatusStream {
    /// The next status the server pushed; `None` when it ended the stream.
    /// Comment lines (keep-alive) are skipped.
    ///
    /// # Errors
    /// A broken connection, or an event that is not a queue status.
    pub async fn next(&mut self) -> OpResult<Option<QueueState>> {
        loop {
            if let Some(end) = self.buf.windows(2).position(|w| w == b"\n\n") {
                let block: Vec<u8> = self.buf.drain(..end + 2).collect();
                let text = String::from_utf8_lossy(&block);
                let mut event = "message";
                let mut data = String::new();
                for line in text.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        event = v.trim();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if data.is_empty() {
                    continue;
                }
                if event == "error" {
                    return Err(error_of(StatusCode::OK, data.as_bytes()));
                }
                let b: QueueBody = serde_json::from_str(&data)
                    .map_err(|e| OpError::failed(FailureKind::Protocol, format!("event: {e}")))?;
                return queue_state(&b, None).map(Some);
            }
            match self.resp.chunk().await.map_err(transport)? {
                Some(bytes) => self.buf.extend_from_slice(&bytes),
                None => return Ok(None),
            }
        }
    }
}

fn transport(e: reqwest::Error) -> OpError {
    // reqwest's own message is generic ("error sending request"): the cause (a
    // refused connection, too many open files) is further down the chain.
    let mut detail = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        detail.push_str(": ");
        detail.push_str(&s.to_string());
        source = s.source();
    }
    if e.is_timeout() {
        OpError::failed(FailureKind::Timeout, detail)
    } else {
        OpError::failed(FailureKind::Transport, detail)
    }
}

/// The error an answer means: a refusal of the flow by its code, or a failure.
fn error_of(status: StatusCode, body: &[u8]) -> OpError {
    let code = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v["error"]["code"].as_str().map(str::to_owned))
        .unwrap_or_default();
    if let Some(r) = Refusal::from_code(&code) {
        return OpError::Refused(r);
    }
    let kind = match status {
        StatusCode::TOO_MANY_REQUESTS => FailureKind::RateLimited,
        StatusCode::SERVICE_UNAVAILABLE => FailureKind::Unavailable,
        s if s.is_server_error() => FailureKind::Internal,
        _ => FailureKind::Unexpected,
    };
    if kind == FailureKind::RateLimited {
        return OpError::failed(kind, format!("{status}: {RATE_LIMIT_HINT}"));
    }
    let text = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
    OpError::failed(kind, format!("{status}: {text}"))
}

fn millis(rfc3339: &str) -> OpResult<i64> {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .map(|d| d.timestamp_millis())
        .map_err(|e| OpError::failed(FailureKind::Protocol, format!("{rfc3339:?}: {e}")))
}

fn date(s: &str) -> OpResult<NaiveDate> {
    s.parse()
        .map_err(|e| OpError::failed(FailureKind::Protocol, format!("date {s:?}: {e}")))
}

fn uuid(s: &str) -> OpResult<Uuid> {
    s.parse()
        .map_err(|e| OpError::failed(FailureKind::Protocol, format!("{s:?}: {e}")))
}

#[derive(Deserialize)]
struct QueueBody {
    token: Option<String>,
    seq: u64,
    status: String,
    position: Option<u64>,
    /// When to ask again (servers that pace their clients).
    poll_after_ms: Option<u64>,
}

#[derive(Deserialize)]
struct DateBody {
    date: String,
    schedule_id: i64,
    seats_free: u32,
}

#[derive(Deserialize)]
struct SeatBody {
    state: String,
}

#[derive(Deserialize)]
struct SeatMapBody {
    seats: Vec<SeatBody>,
}

#[derive(Deserialize)]
struct ReservationBody {
    reservation_id: String,
    schedule_id: i64,
    seat: u16,
    price: i64,
    created_at: String,
    expires_at: String,
}

#[derive(Deserialize)]
struct LedgerBody {
    balance_after: i64,
}

#[derive(Deserialize)]
struct PaymentBody {
    payment_id: String,
    reservation_id: String,
    schedule_id: i64,
    seat: u16,
    amount: i64,
    paid_at: String,
}

#[derive(Deserialize)]
struct IdBody {
    id: i64,
}

#[derive(Deserialize)]
struct PolicyBody {
    #[serde(default)]
    interval_ms: Option<u64>,
    #[serde(default)]
    batch: Option<u32>,
    max_active: Option<u32>,
}

#[derive(Deserialize)]
struct QueueStatsBody {
    issued: u64,
    serving: u64,
    waiting: u64,
    active: u64,
    policy: PolicyBody,
    admit_rate_per_sec: f64,
}

/// Where a token stands, from a status (or issue) answer: `poll_after_ms` when
/// the body has it, else a `Retry-After` header in seconds.
fn queue_state(b: &QueueBody, retry_after: Option<Duration>) -> OpResult<QueueState> {
    Ok(match b.status.as_str() {
        "waiting" => QueueState::Waiting {
            position: b.position.unwrap_or(0),
            poll_after: b.poll_after_ms.map(Duration::from_millis).or(retry_after),
        },
        "sold_out" => QueueState::SoldOut,
        "active" => QueueState::Active,
        "expired" => QueueState::Expired,
        "done" => QueueState::Done,
        other => {
            return Err(OpError::failed(
                FailureKind::Protocol,
                format!("unknown queue status {other:?}"),
            ));
        }
    })
}

const OK: &[StatusCode] = &[StatusCode::OK];
const CREATED: &[StatusCode] = &[StatusCode::CREATED];
const CREATED_OR_REPLAYED: &[StatusCode] = &[StatusCode::CREATED, StatusCode::OK];

impl Target for HttpTarget {
    async fn issue(&self, user: UserId, slot: usize) -> OpResult<Ticket> {
        let node = slot % self.bases.len();
        let req = self
            .client
            .post(self.url(node, "/v1/queue/tokens"))
            .json(&json!({ "user_id": user.to_string() }));
        let (b, retry_after) = self.send_paced(node, req, CREATED).await?;
        let answer = queue_state(&b, retry_after).ok();
        let token = b
            .token
            .ok_or_else(|| OpError::failed(FailureKind::Protocol, "no token in the answer"))?;
        Ok(Ticket {
            token,
            user,
            seq: b.seq,
            node,
            answer,
        })
    }

    async fn status(&self, t: &Ticket) -> OpResult<QueueState> {
        let req = self.user_req(reqwest::Method::GET, t, "/v1/queue/status");
        let (b, retry_after) = self.send_paced(t.node, req, OK).await?;
        queue_state(&b, retry_after)
    }

    fn pushes(&self) -> bool {
        self.push
    }

    async fn server_latency(&self) -> Vec<crate::report::RouteLatency> {
        let mut texts = Vec::new();
        for base in &self.bases {
            let got = self.client.get(format!("{base}/metrics")).send().await;
            if let Ok(resp) = got
                && resp.status().is_success()
                && let Ok(text) = resp.text().await
            {
                texts.push(text);
            }
        }
        crate::report::route_latency(&texts)
    }

    async fn watch(&self, t: &Ticket) -> OpResult<(QueueState, StatusStream)> {
        let resp = self
            .streams
            .get(self.url(t.node, "/v1/queue/events"))
            .bearer_auth(&t.token)
            .send()
            .await
            .map_err(transport)?;
        let status = resp.status();
        if status != StatusCode::OK {
            let body = resp.bytes().await.map_err(transport)?;
            return Err(error_of(status, &body));
        }
        let mut stream = StatusStream {
            resp,
            buf: Vec::new(),
        };
        match stream.next().await? {
            Some(first) => Ok((first, stream)),
            None => Err(OpError::failed(
                FailureKind::Protocol,
                "the status stream ended before its first event",
            )),
        }
    }

    async fn dates(&self, t: &Ticket, concert: i64) -> OpResult<Vec<DateInfo>> {
        let path = format!("/v1/concerts/{concert}/dates");
        let req = self.user_req(reqwest::Method::GET, t, &path);
        let list: Vec<DateBody> = self.send(Route::Shop(t.node), req, OK).await?;
        list.into_iter()
            .map(|d| {
                Ok(DateInfo {
                    date: date(&d.date)?,
                    schedule: d.schedule_id,
                    n_free: d.seats_free,
                })
            })
            .collect()
    }

    async fn seats(&self, t: &Ticket, concert: i64, date: NaiveDate) -> OpResult<Vec<SeatView>> {
        let path = format!("/v1/concerts/{concert}/dates/{date}/seats");
        let req = self.user_req(reqwest::Method::GET, t, &path);
        let map: SeatMapBody = self.send(Route::Shop(t.node), req, OK).await?;
        Ok(map
            .seats
            .iter()
            .map(|s| match s.state.as_str() {
                "free" => SeatView::Free,
                "held" => SeatView::Held,
                _ => SeatView::Sold,
            })
            .collect())
    }

    async fn hold(
        &self,
        t: &Ticket,
        concert: i64,
        date: NaiveDate,
        seat: u16,
    ) -> OpResult<HoldAck> {
        let req = self
            .user_req(reqwest::Method::POST, t, "/v1/reservations")
            .json(&json!({ "concert_id": concert, "date": date.to_string(), "seat": seat }));
        let r: ReservationBody = self.send(Route::Shop(t.node), req, CREATED).await?;
        Ok(HoldAck {
            reservation: uuid(&r.reservation_id)?,
            schedule: r.schedule_id,
            seat: r.seat,
            price: r.price,
            created_at_ms: millis(&r.created_at)?,
            expires_at_ms: millis(&r.expires_at)?,
        })
    }

    async fn charge(&self, t: &Ticket, amount: i64, key: &str) -> OpResult<ChargeAck> {
        let path = format!("/v1/users/{}/charges", t.user);
        let req = self
            .user_req(reqwest::Method::POST, t, &path)
            .header("Idempotency-Key", key)
            .json(&json!({ "amount": amount }));
        let (status, body) = self.exchange(Route::Shop(t.node), req).await?;
        if !CREATED_OR_REPLAYED.contains(&status) {
            return Err(error_of(status, &body));
        }
        let l: LedgerBody = serde_json::from_slice(&body)
            .map_err(|e| OpError::failed(FailureKind::Protocol, e.to_string()))?;
        Ok(ChargeAck {
            balance_after: l.balance_after,
            replayed: status == StatusCode::OK,
        })
    }

    async fn pay(&self, t: &Ticket, reservation: Uuid, key: &str) -> OpResult<PayAck> {
        let req = self
            .user_req(reqwest::Method::POST, t, "/v1/payments")
            .header("Idempotency-Key", key)
            .json(&json!({ "reservation_id": reservation.to_string() }));
        let (status, body) = self.exchange(Route::Shop(t.node), req).await?;
        if !CREATED_OR_REPLAYED.contains(&status) {
            return Err(error_of(status, &body));
        }
        let p: PaymentBody = serde_json::from_slice(&body)
            .map_err(|e| OpError::failed(FailureKind::Protocol, e.to_string()))?;
        Ok(PayAck {
            payment: uuid(&p.payment_id)?,
            reservation: uuid(&p.reservation_id)?,
            schedule: p.schedule_id,
            seat: p.seat,
            amount: p.amount,
            paid_at_ms: millis(&p.paid_at)?,
            replayed: status == StatusCode::OK,
        })
    }

    async fn cancel(&self, t: &Ticket, reservation: Uuid) -> OpResult<()> {
        let path = format!("/v1/reservations/{reservation}");
        let req = self.user_req(reqwest::Method::DELETE, t, &path);
        let _: Value = self.send(Route::Shop(t.node), req, OK).await?;
        Ok(())
    }

    async fn create_concert(&self, name: &str) -> OpResult<i64> {
        let req = self
            .admin_req(reqwest::Method::POST, "/v1/admin/concerts")
            .json(&json!({ "name": name }));
        let c: IdBody = self.send_admin(req, CREATED).await?;
        Ok(c.id)
    }

    async fn create_date(
        &self,
        concert: i64,
        starts_at: Timestamp,
        seats: u16,
        price: i64,
    ) -> OpResult<DateCreated> {
        let path = format!("/v1/admin/concerts/{concert}/dates");
        let req = self.admin_req(reqwest::Method::POST, &path).json(&json!({
            "starts_at": starts_at.to_string(), "seats": seats, "price": price,
        }));
        let d: DateBody = self.send_admin(req, CREATED).await?;
        Ok(DateCreated {
            date: date(&d.date)?,
            schedule: d.schedule_id,
        })
    }

    async fn set_policy(&self, policy: AdmissionPolicy) -> OpResult<()> {
        let req = self
            .admin_req(reqwest::Method::PUT, "/v1/admin/queue/policy")
            .json(&json!({
                "interval_ms": policy.interval().as_millis() as u64,
                "batch": policy.batch(),
                "max_active": policy.max_active(),
            }));
        let _: Value = self.send_admin(req, OK).await?;
        Ok(())
    }

    async fn queue_sample(&self) -> OpResult<QueueSample> {
        self.queue_sample_now().await
    }
}

impl HttpTarget {
    /// The admission policy the operator side has now (`GET /v1/admin/queue`),
    /// to put it back after a run.
    ///
    /// # Errors
    /// A failed request, or an answer without a valid policy.
    pub async fn current_policy(&self) -> OpResult<AdmissionPolicy> {
        let req = self.admin_req(reqwest::Method::GET, "/v1/admin/queue");
        let q: QueueStatsBody = self.send_admin(req, OK).await?;
        let p = q.policy;
        let interval = p.interval_ms.ok_or_else(|| {
            OpError::failed(
                FailureKind::Protocol,
                "the queue answer has no policy interval",
            )
        })?;
        AdmissionPolicy::new(Duration::from_millis(interval), p.batch, p.max_active).map_err(|e| {
            OpError::failed(FailureKind::Protocol, format!("the server's policy: {e}"))
        })
    }

    async fn queue_sample_now(&self) -> OpResult<QueueSample> {
        let req = self.admin_req(reqwest::Method::GET, "/v1/admin/queue");
        let q: QueueStatsBody = self.send(Route::Operator, req, OK).await?;
        Ok(QueueSample {
            issued: q.issued,
            serving: q.serving,
            waiting: q.waiting,
            active: q.active,
            max_active: q.policy.max_active,
            admit_rate_per_sec: q.admit_rate_per_sec,
        })
    }
}

/// booking-http instances started by the simulator, stopped when this is dropped
/// (or by [`Servers::shutdown`]).
pub struct Servers {
    /// Their base URLs.
    pub bases: Vec<String>,
    /// The admin key they share.
    pub admin_key: String,
    runtime: Option<tokio::runtime::Runtime>,
    stop: tokio::sync::watch::Sender<bool>,
}

impl Servers {
    /// Stops the servers and their background tasks, finishing requests in flight.
    pub fn shutdown(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        let _ = self.stop.send(true);
        if let Some(rt) = self.runtime.take() {
            // Callers run inside another runtime, where blocking is not allowed;
            // by now no virtual user has a request in flight.
            rt.shutdown_background();
        }
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        self.stop_now();
    }
}

/// The name of the threads that run spawned servers.
pub const SERVER_THREAD_NAME: &str = "booking-server";

/// Starts `n` booking-http instances on 127.0.0.1 (port 0 each), all on the
/// database at `database_url`, each with its own pool and background tasks, with
/// `config` and no rate limits. Their runtime has `threads` worker threads.
///
/// # Errors
/// When the database cannot be opened or a port cannot be bound.
pub async fn spawn_servers(
    n: usize,
    database_url: &str,
    config: Config,
    threads: usize,
    pool_size: u32,
) -> Result<Servers, String> {
    if n == 0 {
        return Err("--spawn needs at least one instance".into());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .thread_name(SERVER_THREAD_NAME)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the servers' runtime: {e}"))?;
    let admin_key = format!("sim-admin-{}", Uuid::new_v4().simple());
    // One secret for every instance, as in a real deployment.
    let secret = format!("booking-sim secret {}", Uuid::new_v4().simple());
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let url = database_url.to_owned();
    let key = admin_key.clone();
    // The set-up runs on a thread of its own that blocks on the servers' runtime:
    // the caller is inside another runtime, where blocking is not allowed.
    let handle = runtime.handle().clone();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let setup = move || async move {
        let mut bases = Vec::new();
        for _ in 0..n {
            let store = connect(
                &url,
                StoreOptions {
                    max_connections: pool_size,
                },
            )
            .await
            .map_err(|e| e.to_string())?;
            let signer = TokenSigner::new(secret.as_bytes()).map_err(|e| e.to_string())?;
            let booking = Arc::new(
                Booking::new(store, SystemClock, signer, config.clone())
                    .map_err(|e| e.to_string())?,
            );
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .map_err(|e| format!("cannot bind: {e}"))?;
            let addr = listener.local_addr().map_err(|e| e.to_string())?;
            let line = Arc::new(booking_http::events::LineFeed::default());
            let app = booking_http::router(
                Arc::clone(&booking),
                booking_http::RouterOptions {
                    admin_key: Some(key.clone()),
                    rate_limits: booking_http::limits::RateLimits::off(),
                    storage: None,
                    line: Some(Arc::clone(&line)),
                },
            );
            tokio::spawn(booking_http::serve(listener, app, stopped(stop_rx.clone())));
            tokio::spawn(booking_http::run_background_with_line(
                booking,
                background_options(&config),
                Some(line),
                stopped(stop_rx.clone()),
            ));
            bases.push(format!("http://{addr}"));
        }
        Ok::<_, String>(bases)
    };
    std::thread::spawn(move || {
        let _ = done_tx.send(handle.block_on(setup()));
    });
    let bases = match done_rx.await {
        Ok(r) => r,
        Err(_) => Err("the servers' set-up failed".into()),
    };
    let bases = match bases {
        Ok(b) => b,
        Err(e) => {
            runtime.shutdown_background();
            return Err(e);
        }
    };
    Ok(Servers {
        bases,
        admin_key,
        runtime: Some(runtime),
        stop,
    })
}

/// Resolves when `rx` turns true (or its sender is gone).
pub async fn stopped(mut rx: tokio::sync::watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

/// How often the admission ticker and the sweeper run beside a simulation: often
/// enough that short policies and hold TTLs are honoured closely.
pub fn background_options(_config: &Config) -> booking_http::BackgroundOptions {
    booking_http::BackgroundOptions {
        tick_every: Duration::from_millis(20),
        sweep_every: Duration::from_secs(1),
        ..booking_http::BackgroundOptions::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_map_to_refusals_or_failures() {
        let body = br#"{"error":{"code":"seat_taken","message":"x"}}"#;
        assert_eq!(
            error_of(StatusCode::CONFLICT, body),
            OpError::Refused(Refusal::SeatTaken)
        );
        let kind = |s: StatusCode, b: &[u8]| match error_of(s, b) {
            OpError::Failed(f) => Some(f.kind),
            OpError::Refused(_) => None,
        };
        assert_eq!(
            kind(StatusCode::TOO_MANY_REQUESTS, b"{}"),
            Some(FailureKind::RateLimited)
        );
        assert_eq!(
            kind(
                StatusCode::SERVICE_UNAVAILABLE,
                br#"{"error":{"code":"unavailable"}}"#
            ),
            Some(FailureKind::Unavailable)
        );
        assert_eq!(
            kind(StatusCode::INTERNAL_SERVER_ERROR, b"oops"),
            Some(FailureKind::Internal)
        );
        assert_eq!(
            kind(
                StatusCode::BAD_REQUEST,
                br#"{"error":{"code":"bad_request"}}"#
            ),
            Some(FailureKind::Unexpected)
        );
    }

    #[test]
    fn queue_answers_carry_when_to_ask_again_and_sold_out() {
        let body = |json: &str| serde_json::from_str::<QueueBody>(json).expect("body");
        let paced = body(r#"{"seq":7,"status":"waiting","position":3,"poll_after_ms":1500}"#);
        assert_eq!(
            queue_state(&paced, Some(Duration::from_secs(9))),
            Ok(QueueState::Waiting {
                position: 3,
                poll_after: Some(Duration::from_millis(1_500))
            }),
            "the body's figure wins over the header"
        );
        let header_only = body(r#"{"seq":7,"status":"waiting","position":3}"#);
        assert_eq!(
            queue_state(&header_only, Some(Duration::from_secs(2))),
            Ok(QueueState::Waiting {
                position: 3,
                poll_after: Some(Duration::from_secs(2))
            })
        );
        assert_eq!(
            queue_state(&header_only, None),
            Ok(QueueState::Waiting {
                position: 3,
                poll_after: None
            }),
            "servers that do not pace: the simulator's own interval"
        );
        let sold_out = body(r#"{"seq":7,"status":"sold_out"}"#);
        assert_eq!(queue_state(&sold_out, None), Ok(QueueState::SoldOut));
        assert_eq!(
            error_of(
                StatusCode::CONFLICT,
                br#"{"error":{"code":"sold_out","message":"x"}}"#
            ),
            OpError::Refused(Refusal::SoldOut)
        );
    }

    #[test]
    fn times_are_read_as_milliseconds() {
        assert_eq!(millis("2026-01-01T00:00:00.123Z"), Ok(1_767_225_600_123));
        assert!(millis("yesterday").is_err());
    }

    /// With one connection per lane, a buyer's request goes through while the
    /// line's only connection waits on a token issue the server holds back.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_buyer_does_not_wait_behind_the_line() {
        use std::sync::Arc;
        // The token route tells the test a request arrived, then answers 503 only
        // once the test lets it.
        let (arrived, mut arrivals) = tokio::sync::mpsc::unbounded_channel::<()>();
        let release = Arc::new(tokio::sync::Semaphore::new(0));
        let held = Arc::clone(&release);
        let app = axum::Router::new()
            .route(
                "/v1/queue/tokens",
                axum::routing::post(move || {
                    let (held, arrived) = (Arc::clone(&held), arrived.clone());
                    async move {
                        let _ = arrived.send(());
                        held.acquire().await.expect("open").forget();
                        StatusCode::SERVICE_UNAVAILABLE
                    }
                }),
            )
            .route(
                "/v1/concerts/1/dates",
                axum::routing::get(|| async {
                    axum::Json(json!([{"date": "2030-01-01", "schedule_id": 7, "seats_free": 3}]))
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        let options = HttpOptions {
            connections: 1,
            ..HttpOptions::default()
        };
        let target =
            Arc::new(HttpTarget::with_options(vec![base], "k".into(), options).expect("target"));
        let issue = || {
            let target = Arc::clone(&target);
            tokio::spawn(async move { target.issue(UserId::random(), 0).await })
        };
        let first = issue();
        arrivals
            .recv()
            .await
            .expect("the first issue reached the server");
        // The first issue holds the line's one connection; a second waits for it.
        let second = issue();
        let ticket = Ticket {
            token: "t".into(),
            user: UserId::random(),
            seq: 1,
            node: 0,
            answer: None,
        };
        let dates = tokio::time::timeout(Duration::from_secs(10), target.dates(&ticket, 1))
            .await
            .expect("the buyer's request waited behind the line")
            .expect("dates");
        assert_eq!(dates.len(), 1);
        assert_eq!(dates[0].n_free, 3);
        assert!(!first.is_finished() && !second.is_finished());
        release.add_permits(2);
        assert!(first.await.expect("join").is_err());
        assert!(second.await.expect("join").is_err());
        assert!(
            arrivals.try_recv().is_ok(),
            "the second issue was sent after the first"
        );
    }
}
