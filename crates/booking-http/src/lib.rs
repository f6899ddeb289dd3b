//! # booking-http
//!
//! The REST API: a thin axum layer over `booking-core`. Handlers parse, call the
//! core, and map results to HTTP; no rule lives here. [`router`] builds the
//! application for any store and clock; [`serve`] runs it until shutdown, and
//! [`serve_with`] with other limits on slow and greedy clients ([`ServeOptions`]).
//!
//! Endpoints (all JSON; errors are `{"error": {"code", "message"}}`):
//!
//! | method and path | needs | does |
//! |---|---|---|
//! | `POST /v1/queue/tokens` | - | take (or get back) a place: 201 |
//! | `GET /v1/queue/status` | token | position, ETA, or active until |
//! | `GET /v1/queue/events` | token (header or `?token=`) | the same, pushed as Server-Sent Events |
//! | `GET /v1/concerts` | admitted token | concerts |
//! | `GET /v1/concerts/{id}/dates` | admitted token | bookable dates with seat counts |
//! | `GET /v1/concerts/{id}/dates/{date}/seats` | admitted token | the seat map |
//! | `POST /v1/reservations` | admitted token | hold a seat: 201 |
//! | `GET /v1/reservations` | token of the user, ended or not | my reservations |
//! | `DELETE /v1/reservations/{id}` | admitted token | cancel a hold |
//! | `GET /v1/users/{user_id}/balance` | token of that user | balance |
//! | `POST /v1/users/{user_id}/charges` | token of that user, not ended | top up: 201 (200 on replay) |
//! | `GET /v1/users/{user_id}/ledger` | token of that user | ledger |
//! | `POST /v1/payments` | admitted token | pay one hold or several at once: 201 (200 on replay) |
//! | `GET /v1/payments` | token of the user, ended or not | my payments, with their seats |
//! | `GET /healthz`, `GET /readyz` | - | liveness, database reachable |
//! | `GET /metrics` | - | Prometheus text |
//! | `GET /openapi.json` | - | the OpenAPI 3.1 document of all of this |
//! | `POST /v1/admin/concerts` | admin key | create a concert: 201 |
//! | `POST /v1/admin/concerts/{id}/dates` | admin key | create a date with seats and prices: 201 |
//! | `GET /v1/admin/concerts/{id}/sales` | admin key | sold / held / free and revenue per date |
//! | `GET /v1/admin/queue` | admin key | issued, serving, waiting, active, policy, rate |
//! | `PUT /v1/admin/queue/policy` | admin key | change the admission policy |
//! | `POST /v1/admin/queue/pause`, `.../resume` | admin key | pause or resume admission |
//! | `POST /v1/admin/sweep` | admin key | record expired holds and sessions |
//! | `POST /v1/admin/webhooks` | admin key | add a webhook endpoint (the answer shows its secret, once): 201 |
//! | `GET /v1/admin/webhooks` | admin key | the endpoints and their delivery state |
//! | `DELETE /v1/admin/webhooks/{id}` | admin key | remove an endpoint: 204 |
//! | `POST /v1/admin/webhooks/{id}/retry` | admin key | make a failed endpoint active again |
//!
//! Every instance also runs a webhook deliverer ([`deliver::run_deliverer`]) beside
//! [`run_background`].
//!
//! Beside the API, [`web`] serves two pages (not part of the API or its OpenAPI
//! document): the waiting room and shop at `GET /`, the operator's view at
//! `GET /admin`.

mod admin;
mod api;
pub mod deliver;
pub mod dto;
mod edges;
pub mod error;
pub mod events;
mod extract;
pub mod feed;
pub mod limits;
pub mod metrics;
pub mod openapi;
mod server;
pub mod web;
pub mod webhooks;

use std::future::Future;
use std::sync::Arc;

use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use booking_core::{Booking, Clock, Store, TickOutcome};
use tokio::net::TcpListener;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

pub use deliver::{DeliveryOptions, TrustedCas, run_deliverer};
pub use error::ApiError;
pub use feed::event_json;
pub use server::ServeOptions;

/// Largest request body accepted; past it (declared or sent) the client gets 413
/// `payload_too_large`.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// Longest a request may take; past it the client gets 503 `unavailable`.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// Longest a long poll (`GET /v1/admin/events?wait=30`) may take: its longest wait
/// and [`REQUEST_TIMEOUT`] for the reads.
pub const LONG_POLL_TIMEOUT: Duration =
    Duration::from_secs(feed::MAX_WAIT_SECS + REQUEST_TIMEOUT.as_secs());

/// What every handler shares.
pub struct AppState<S, C> {
    /// The engine.
    pub booking: Arc<Booking<S, C>>,
    /// The key of the admin API; `None` turns the admin API off.
    pub admin_key: Option<Arc<str>>,
    /// This instance's request metrics.
    pub metrics: Arc<metrics::Metrics>,
    /// The seat-map bodies sent last.
    pub seat_maps: Arc<api::SeatMapBodies>,
    /// The line as this instance pushes it to status streams.
    pub feed: Arc<events::LineFeed>,
}

impl<S, C> Clone for AppState<S, C> {
    fn clone(&self) -> Self {
        AppState {
            booking: Arc::clone(&self.booking),
            admin_key: self.admin_key.clone(),
            metrics: Arc::clone(&self.metrics),
            seat_maps: Arc::clone(&self.seat_maps),
            feed: Arc::clone(&self.feed),
        }
    }
}

/// How the router behaves beyond the engine.
#[derive(Debug, Clone, Default)]
pub struct RouterOptions {
    /// Guards `/v1/admin`; without one, the admin API answers 403.
    pub admin_key: Option<String>,
    /// Per-IP and per-token rate limits.
    pub rate_limits: limits::RateLimits,
    /// Where `/metrics` reads the database pool's and the group commit's figures,
    /// and the webhook deliverer's counts
    /// ([`metrics::StorageProbe::with_deliveries`]); `None` leaves them out.
    pub storage: Option<metrics::StorageProbe>,
    /// The line as this instance sees it; give the same one to
    /// [`BackgroundOptions::line`] so that arrivals wake the ticker and advances
    /// the status streams (see [`run_background_with_line`]). `None`: the router
    /// makes its own.
    pub line: Option<Arc<events::LineFeed>>,
}

/// Declares every route once: [`ROUTES`] lists them for the OpenAPI test and
/// `add_routes` mounts them, so the two cannot differ.
macro_rules! route_table {
    (
        { $($method:ident $path:literal => $handler:expr;)* }
        long polls { $($lmethod:ident $lpath:literal => $lhandler:expr;)* }
    ) => {
        /// Every `(method, path)` the router serves, spelled as in the OpenAPI document.
        pub const ROUTES: &[(&str, &str)] = &[
            $((stringify!($method), $path),)*
            $((stringify!($lmethod), $lpath),)*
        ];

        fn add_routes<S: Store + Clone, C: Clock>(
            router: Router<AppState<S, C>>,
        ) -> Router<AppState<S, C>> {
            router$(.route($path, axum::routing::$method($handler)))*
        }

        /// The long polls: they may wait longer than [`REQUEST_TIMEOUT`], so they
        /// have their own, [`LONG_POLL_TIMEOUT`].
        fn add_long_polls<S: Store + Clone, C: Clock>(
            router: Router<AppState<S, C>>,
        ) -> Router<AppState<S, C>> {
            router$(.route(
                $lpath,
                axum::routing::$lmethod($lhandler).layer(TimeoutLayer::with_status_code(
                    StatusCode::SERVICE_UNAVAILABLE,
                    LONG_POLL_TIMEOUT,
                )),
            ))*
        }
    };
}

route_table! {
    {
    post "/v1/queue/tokens" => api::issue_token::<S, C>;
    get "/v1/queue/status" => api::queue_status::<S, C>;
    get "/v1/queue/events" => events::queue_events::<S, C>;
    get "/v1/concerts" => api::concerts::<S, C>;
    get "/v1/concerts/{id}/dates" => api::dates::<S, C>;
    get "/v1/concerts/{id}/dates/{date}/seats" => api::seats::<S, C>;
    post "/v1/reservations" => api::hold::<S, C>;
    get "/v1/reservations" => api::reservations::<S, C>;
    delete "/v1/reservations/{id}" => api::cancel::<S, C>;
    get "/v1/users/{user_id}/balance" => api::balance::<S, C>;
    post "/v1/users/{user_id}/charges" => api::charge::<S, C>;
    get "/v1/users/{user_id}/ledger" => api::ledger::<S, C>;
    post "/v1/payments" => api::pay::<S, C>;
    get "/v1/payments" => api::payments::<S, C>;
    get "/healthz" => api::healthz;
    get "/readyz" => api::readyz::<S, C>;
    get "/metrics" => metrics::metrics::<S, C>;
    get "/openapi.json" => openapi::openapi_json::<S, C>;
    post "/v1/admin/concerts" => admin::create_concert::<S, C>;
    post "/v1/admin/concerts/{id}/dates" => admin::create_date::<S, C>;
    get "/v1/admin/concerts/{id}/sales" => admin::sales::<S, C>;
    get "/v1/admin/queue" => admin::queue::<S, C>;
    put "/v1/admin/queue/policy" => admin::set_policy::<S, C>;
    post "/v1/admin/queue/pause" => admin::pause::<S, C>;
    post "/v1/admin/queue/resume" => admin::resume::<S, C>;
    post "/v1/admin/sweep" => admin::sweep::<S, C>;
    post "/v1/admin/webhooks" => webhooks::add::<S, C>;
    get "/v1/admin/webhooks" => webhooks::list::<S, C>;
    delete "/v1/admin/webhooks/{id}" => webhooks::remove::<S, C>;
    post "/v1/admin/webhooks/{id}/retry" => webhooks::retry::<S, C>;
    }
    long polls {
        get "/v1/admin/events" => feed::events::<S, C>;
    }
}

/// The application's router. Serve it with [`serve`], which passes the client's
/// address on to the per-IP rate limit.
pub fn router<S: Store + Clone, C: Clock>(
    booking: Arc<Booking<S, C>>,
    options: RouterOptions,
) -> Router {
    let metrics = Arc::new(metrics::Metrics::with_storage(options.storage));
    let limiter = Arc::new(limits::Limiter::new(options.rate_limits));
    let state = AppState {
        booking,
        admin_key: options.admin_key.map(Arc::from),
        metrics: Arc::clone(&metrics),
        seat_maps: Arc::default(),
        feed: options.line.unwrap_or_default(),
    };
    let routes = add_routes::<S, C>(Router::new())
        .merge(web::routes())
        .fallback(|| async { ApiError::not_found("no_such_endpoint", "no such endpoint") })
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            REQUEST_TIMEOUT,
        ));
    add_long_polls::<S, C>(routes)
        .route_layer(axum::middleware::from_fn_with_state(
            metrics,
            metrics::track,
        ))
        .layer(axum::middleware::from_fn(edges::declared_length))
        .layer(axum::middleware::from_fn_with_state(limiter, limits::limit))
        .layer(axum::middleware::from_fn(edges::json_errors))
        .layer(
            // One INFO line per answer (its status and latency in microseconds),
            // in the span of its method, path and request id; none when it starts.
            TraceLayer::new_for_http()
                .make_span_with(|req: &axum::http::Request<_>| {
                    let id = req
                        .headers()
                        .get("x-request-id")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("-");
                    let uri = redacted_uri(req.uri());
                    tracing::info_span!("request", method = %req.method(), uri = %uri, request_id = %id)
                })
                .on_request(())
                .on_response(
                    tower_http::trace::DefaultOnResponse::new()
                        .level(tracing::Level::INFO)
                        .latency_unit(tower_http::LatencyUnit::Micros),
                ),
        )
        .layer(tower_http::request_id::PropagateRequestIdLayer::x_request_id())
        .layer(tower_http::request_id::SetRequestIdLayer::x_request_id(
            tower_http::request_id::MakeRequestUuid,
        ))
        .with_state(state)
}

/// The request's path and query as logged: a `token` query parameter (how a
/// browser's event stream sends its queue token) is replaced by `REDACTED`.
pub fn redacted_uri(uri: &axum::http::Uri) -> String {
    let Some(query) = uri.query() else {
        return uri.path().to_owned();
    };
    let parts: Vec<&str> = query
        .split('&')
        .map(|kv| match kv.split_once('=') {
            Some((k, _)) if k.eq_ignore_ascii_case("token") => "token=REDACTED",
            _ => kv,
        })
        .collect();
    format!("{}?{}", uri.path(), parts.join("&"))
}

/// How often the background tasks run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackgroundOptions {
    /// How often to try an admission tick at most apart (the policy decides
    /// when one is due; the ticker wakes at that time when it is sooner).
    pub tick_every: Duration,
    /// How often to record expired holds and sessions (and prune old events).
    pub sweep_every: Duration,
    /// How often to relay the event outbox into the feed (default 100 ms): an
    /// event is in the feed this long after its change at most.
    pub relay_every: Duration,
}

impl Default for BackgroundOptions {
    fn default() -> Self {
        BackgroundOptions {
            tick_every: Duration::from_millis(100),
            sweep_every: Duration::from_secs(10),
            relay_every: Duration::from_millis(100),
        }
    }
}

/// The shortest pause between two ticks of one instance, however soon the next
/// advance is due (clocks of instances differ by a little).
const MIN_TICK_GAP: Duration = Duration::from_millis(2);

/// Runs the admission ticker, the sweeper and the event relay until `stop`
/// resolves. Any number of instances may run them at once: each tick is a
/// compare-and-set, sweeping only records what has already expired, and one relay
/// runs at a time (the others find the lock taken and do nothing). Failures are
/// logged and retried at the next round.
pub async fn run_background<S: Store, C: Clock>(
    booking: Arc<Booking<S, C>>,
    options: BackgroundOptions,
    stop: impl Future<Output = ()> + Send,
) {
    run_background_with_line(booking, options, None, stop).await;
}

/// [`run_background`] beside a router that shares `line` with it
/// ([`RouterOptions::line`]): a token issued there wakes the ticker when an
/// advance may be due (a user who arrives at an empty line is admitted at once,
/// not at the ticker's next round), and an advance wakes the status streams.
pub async fn run_background_with_line<S: Store, C: Clock>(
    booking: Arc<Booking<S, C>>,
    options: BackgroundOptions,
    line: Option<Arc<events::LineFeed>>,
    stop: impl Future<Output = ()> + Send,
) {
    let mut sweep = tokio::time::interval(options.sweep_every);
    let mut relay = tokio::time::interval(options.relay_every);
    relay.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The next tick comes after `tick_every`, or sooner when the next advance is
    // due sooner: a policy of 100 ms then admits every 100 ms, not every second
    // round of a 100 ms ticker that falls just before the due time. A token
    // issued (when the router shares its line) brings the next tick forward to
    // `not_before`: when the next advance is due, or the next round while the
    // sale is sold out or admission paused (an arrival changes neither).
    let tick = tokio::time::sleep(Duration::ZERO);
    let mut not_before = tokio::time::Instant::now();
    tokio::pin!(tick);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => return,
            () = &mut tick => {
                let now = tokio::time::Instant::now();
                let (outcome, due) = match booking.tick_timed().await {
                    Ok((outcome, due)) => {
                        tracing::trace!(?outcome, ?due, "tick");
                        (Some(outcome), due)
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "admission tick failed");
                        (None, None)
                    }
                };
                if let (Some(TickOutcome::Advanced { .. }), Some(line)) = (outcome, &line) {
                    line.moved();
                }
                let next = due.map_or(options.tick_every, |d| d.min(options.tick_every));
                let deadline = now + next.max(MIN_TICK_GAP);
                tick.as_mut().reset(deadline);
                not_before = match outcome {
                    Some(TickOutcome::SoldOut | TickOutcome::Paused) => deadline,
                    _ => now + due.unwrap_or(Duration::ZERO).max(MIN_TICK_GAP),
                };
            }
            () = arrival(line.as_deref()) => {
                let at = not_before.max(tokio::time::Instant::now());
                if at < tick.deadline() {
                    tick.as_mut().reset(at);
                }
            }
            _ = relay.tick() => {
                match booking.relay_events().await {
                    Ok(n) => tracing::trace!(moved = n, "relay"),
                    Err(e) => tracing::warn!(error = %e, "event relay failed"),
                }
            }
            _ = sweep.tick() => {
                match booking.sweep().await {
                    Ok(report) => tracing::debug!(?report, "sweep"),
                    Err(e) => tracing::warn!(error = %e, "sweep failed"),
                }
            }
        }
    }
}

/// Resolves when a token is issued on `line`; never without one.
async fn arrival(line: Option<&events::LineFeed>) {
    match line {
        Some(line) => line.wait_arrival().await,
        None => std::future::pending().await,
    }
}

/// Serves `app` on `listener` with the default [`ServeOptions`] until `shutdown`
/// completes, then finishes the requests in flight. See [`serve_with`].
///
/// # Errors
/// IO errors of the listener.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, app, ServeOptions::default(), shutdown).await
}

/// Serves `app` on `listener` (HTTP/1.1) until `shutdown` completes: then it
/// stops accepting, lets each connection finish the request it is answering,
/// and returns when the last one has closed. Each request carries the client's
/// address (`ConnectInfo<SocketAddr>`, for the per-IP rate limit).
///
/// The limits of `options` keep slow and greedy clients from using up the
/// server: a connection that does not send a request's headers in time is
/// closed, a body that does not arrive in time gets 408, and connections are
/// capped in total and per IP address. The answers hyper writes by itself (400
/// for bytes that are not HTTP, 414, 431) carry the JSON error body too.
///
/// A failed accept (the process is out of file descriptors, `EMFILE`) does not
/// stop the server: it is logged at most once a second, with how many failed
/// since the last line, and accepting resumes after a short pause (a
/// connection reset before it was accepted is not logged). Call
/// [`raise_open_files_limit`] at start to make that rare.
///
/// # Errors
/// IO errors of the listener.
pub async fn serve_with(
    listener: TcpListener,
    app: Router,
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // Open event streams end when shutdown begins: graceful shutdown waits for
    // every response to finish, and a stream would not by itself.
    let (closing, closing_rx) = tokio::sync::watch::channel(false);
    let app = app.layer(axum::Extension(events::Closing(closing_rx)));
    let shutdown = async move {
        shutdown.await;
        let _ = closing.send(true);
    };
    server::run(listener, app, options, shutdown).await
}

/// How long accepting pauses after a failure other than a reset connection.
const ACCEPT_PAUSE: Duration = Duration::from_millis(50);

/// A TCP listener that logs failed accepts at most once a second.
struct LoggedListener {
    inner: TcpListener,
    failed_since_log: u64,
    last_log: Option<std::time::Instant>,
}

impl LoggedListener {
    fn new(inner: TcpListener) -> Self {
        LoggedListener {
            inner,
            failed_since_log: 0,
            last_log: None,
        }
    }

    /// Counts a failed accept and logs it if no line was written in the last
    /// second. Returns whether a line was written.
    fn failed(&mut self, e: &std::io::Error, now: std::time::Instant) -> bool {
        self.failed_since_log += 1;
        if self
            .last_log
            .is_some_and(|t| now.duration_since(t) < Duration::from_secs(1))
        {
            return false;
        }
        let hint = if e.raw_os_error() == Some(24) || e.raw_os_error() == Some(23) {
            " (out of file descriptors: raise the limit of open files, `ulimit -n`)"
        } else {
            ""
        };
        tracing::error!(
            failed = self.failed_since_log,
            "cannot accept connections: {e}{hint}"
        );
        self.failed_since_log = 0;
        self.last_log = Some(now);
        true
    }
}

impl axum::serve::Listener for LoggedListener {
    type Io = tokio::net::TcpStream;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.inner.accept().await {
                Ok(x) => return x,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::ConnectionAborted
                            | std::io::ErrorKind::ConnectionReset
                            | std::io::ErrorKind::ConnectionRefused
                    ) => {}
                Err(e) => {
                    self.failed(&e, std::time::Instant::now());
                    tokio::time::sleep(ACCEPT_PAUSE).await;
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// Raises this process's soft limit of open files (each connection is one) to
/// its hard limit. Returns the soft limit now and the hard limit, or `None` where
/// the platform has no such limit.
///
/// # Errors
/// When the limits cannot be read or set.
pub fn raise_open_files_limit() -> std::io::Result<Option<(u64, u64)>> {
    #[cfg(unix)]
    {
        let (_, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE)?;
        let soft = rlimit::increase_nofile_limit(hard)?;
        Ok(Some((soft, hard)))
    }
    #[cfg(not(unix))]
    {
        Ok(None)
    }
}

#[cfg(test)]
mod listener_tests {
    use super::*;

    #[tokio::test]
    async fn failed_accepts_are_logged_at_most_once_a_second() {
        let inner = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let mut l = LoggedListener::new(inner);
        let e = std::io::Error::from_raw_os_error(24);
        let t0 = std::time::Instant::now();
        assert!(l.failed(&e, t0), "the first failure is logged");
        for ms in [1, 200, 999] {
            assert!(!l.failed(&e, t0 + Duration::from_millis(ms)));
        }
        assert_eq!(l.failed_since_log, 3);
        assert!(l.failed(&e, t0 + Duration::from_millis(1_000)));
        assert_eq!(l.failed_since_log, 0, "the count restarts after a line");
    }

    #[test]
    fn the_soft_limit_of_open_files_reaches_the_hard_limit() {
        let raised = raise_open_files_limit().expect("limits");
        #[cfg(target_os = "linux")]
        {
            let (soft, hard) = raised.expect("Linux has the limit");
            assert_eq!(soft, hard, "the soft limit is raised to the hard one");
            assert_eq!(
                rlimit::getrlimit(rlimit::Resource::NOFILE).expect("read"),
                (soft, hard)
            );
        }
        #[cfg(not(target_os = "linux"))]
        let _ = raised;
    }
}
