//! Prometheus metrics: requests by route and status, latency histograms by route,
//! and the waiting room's and the sales' figures. Kept per instance, in memory.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use booking_core::domain::WebhookStatus;
use booking_core::{Clock, Store};

use crate::AppState;
use crate::deliver::DeliveryStats;
use crate::error::RateLimited;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

#[derive(Debug, Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    sum: f64,
    n: u64,
}

/// Request counters and latency histograms.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, String, u16), u64>>,
    latency: Mutex<BTreeMap<String, Histogram>>,
    storage: Option<StorageProbe>,
}

/// The storage's figures at one instant, as `/metrics` shows them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StorageFigures {
    /// Database connections open (in use or idle).
    pub connections_open: u64,
    /// Open connections not in use.
    pub connections_idle: u64,
    /// The most connections the pools may open.
    pub connections_max: u64,
    /// Hot writes (holds, payments, token issues) under way now; beyond the pool's
    /// size they wait for a connection.
    pub hot_writes_under_way: u64,
    /// Hot writes committed together with others, so far.
    pub hot_writes_batched: u64,
    /// Hot writes that ran alone, so far.
    pub hot_writes_alone: u64,
    /// Hot writes refused at once because too many were under way, so far.
    pub hot_writes_refused: u64,
}

/// Reads the storage's figures for `/metrics` (see [`crate::RouterOptions::storage`]),
/// and, given [`StorageProbe::with_deliveries`], the webhook deliverer's counts.
#[derive(Clone)]
pub struct StorageProbe {
    read: Arc<dyn Fn() -> StorageFigures + Send + Sync>,
    deliveries: Option<Arc<DeliveryStats>>,
}

impl StorageProbe {
    /// A probe that calls `read` at every scrape.
    pub fn new(read: impl Fn() -> StorageFigures + Send + Sync + 'static) -> Self {
        StorageProbe {
            read: Arc::new(read),
            deliveries: None,
        }
    }

    /// Also shows what this instance's webhook deliverer has done (the counts it
    /// keeps while it runs: [`crate::deliver::run_deliverer_with`]).
    #[must_use]
    pub fn with_deliveries(mut self, stats: Arc<DeliveryStats>) -> Self {
        self.deliveries = Some(stats);
        self
    }
}

impl std::fmt::Debug for StorageProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StorageProbe")
    }
}

impl Metrics {
    /// Metrics that also show the storage's figures read by `storage`.
    pub fn with_storage(storage: Option<StorageProbe>) -> Self {
        Metrics {
            storage,
            ..Metrics::default()
        }
    }

    fn render_storage(&self, out: &mut String) {
        let Some(probe) = &self.storage else {
            return;
        };
        let f = (probe.read)();
        gauge(
            out,
            "booking_db_connections_open",
            "Database connections open (in use or idle).",
            f.connections_open,
        );
        gauge(
            out,
            "booking_db_connections_idle",
            "Open database connections not in use.",
            f.connections_idle,
        );
        gauge(
            out,
            "booking_db_connections_max",
            "The most database connections the pools may open.",
            f.connections_max,
        );
        gauge(
            out,
            "booking_hot_writes_under_way",
            "Hot writes (holds, payments, token issues) under way; beyond the open connections they wait for one.",
            f.hot_writes_under_way,
        );
        counter(
            out,
            "booking_hot_writes_batched_total",
            "Hot writes committed together with others (group commit).",
            f.hot_writes_batched,
        );
        counter(
            out,
            "booking_hot_writes_alone_total",
            "Hot writes that ran alone.",
            f.hot_writes_alone,
        );
        counter(
            out,
            "booking_hot_writes_refused_total",
            "Hot writes refused at once (503) because too many were under way.",
            f.hot_writes_refused,
        );
    }

    /// The deliverer's counts, when the probe has them.
    fn render_deliveries(&self, out: &mut String) {
        let Some(stats) = self.storage.as_ref().and_then(|p| p.deliveries.as_ref()) else {
            return;
        };
        let read = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "# HELP booking_webhook_requests_total Webhook requests this instance sent, by outcome (delivered: a 2xx answer; failed: another answer, a timeout, no connection, a refused certificate).\n\
             # TYPE booking_webhook_requests_total counter\n\
             booking_webhook_requests_total{{outcome=\"delivered\"}} {}\n\
             booking_webhook_requests_total{{outcome=\"failed\"}} {}",
            read(&stats.delivered),
            read(&stats.failed)
        );
        counter(
            out,
            "booking_webhook_leases_lost_total",
            "Webhook endpoints this instance gave up mid-delivery because its lease lapsed and another instance took over.",
            read(&stats.lost_leases),
        );
    }

    fn record(&self, method: &str, route: &str, status: StatusCode, secs: f64) {
        let key = (method.to_owned(), route.to_owned(), status.as_u16());
        *self
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key)
            .or_default() += 1;
        let mut lat = self.latency.lock().unwrap_or_else(|p| p.into_inner());
        let h = lat.entry(format!("{method} {route}")).or_default();
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                h.counts[i] += 1;
            }
        }
        h.sum += secs;
        h.n += 1;
    }

    /// How many requests answered `status` on `method route`.
    pub fn count(&self, method: &str, route: &str, status: u16) -> u64 {
        let key = (method.to_owned(), route.to_owned(), status);
        self.requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            .copied()
            .unwrap_or(0)
    }

    fn render(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP booking_http_requests_total Requests answered, by route and status."
        );
        let _ = writeln!(out, "# TYPE booking_http_requests_total counter");
        for ((method, route, status), n) in self
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "booking_http_requests_total{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP booking_http_request_duration_seconds Request latency, by route."
        );
        let _ = writeln!(
            out,
            "# TYPE booking_http_request_duration_seconds histogram"
        );
        for (route, h) in self
            .latency
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let (method, path) = route.split_once(' ').unwrap_or(("", route));
            let labels = format!("method=\"{method}\",route=\"{path}\"");
            for (i, b) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "booking_http_request_duration_seconds_bucket{{{labels},le=\"{b}\"}} {}",
                    h.counts[i]
                );
            }
            let _ = writeln!(
                out,
                "booking_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                h.n
            );
            let _ = writeln!(
                out,
                "booking_http_request_duration_seconds_sum{{{labels}}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "booking_http_request_duration_seconds_count{{{labels}}} {}",
                h.n
            );
        }
    }
}

/// The middleware: times every request and counts it under its route pattern.
pub async fn track(State(metrics): State<Arc<Metrics>>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().as_str().to_owned();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let resp = next.run(req).await;
    metrics.record(
        &method,
        &route,
        resp.status(),
        start.elapsed().as_secs_f64(),
    );
    resp
}

fn gauge(out: &mut String, name: &str, help: &str, value: impl std::fmt::Display) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} gauge");
    let _ = writeln!(out, "{name} {value}");
}

fn counter(out: &mut String, name: &str, help: &str, value: u64) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} counter");
    let _ = writeln!(out, "{name} {value}");
}

#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    summary = "Prometheus metrics",
    responses(
        (status = 200, description = "Prometheus text exposition format", body = String, content_type = "text/plain; version=0.0.4; charset=utf-8"),
        RateLimited
    )
)]
/// `GET /metrics`: Prometheus text.
pub async fn metrics<S: Store + Clone, C: Clock>(State(st): State<AppState<S, C>>) -> Response {
    let mut out = String::new();
    if let Ok(q) = st.booking.queue_stats().await {
        gauge(
            &mut out,
            "booking_queue_waiting",
            "Users waiting to be admitted.",
            q.counters.n_waiting(),
        );
        gauge(
            &mut out,
            "booking_queue_issued",
            "Places issued so far.",
            q.counters.last_seq,
        );
        gauge(
            &mut out,
            "booking_queue_serving",
            "The serving counter.",
            q.counters.serving,
        );
        gauge(
            &mut out,
            "booking_active_users",
            "Users with an active session.",
            q.n_active,
        );
    }
    if let Ok(holds) = st.booking.live_holds().await {
        gauge(
            &mut out,
            "booking_live_holds",
            "Holds live now (up to the list limit).",
            holds.len(),
        );
    }
    let activity = st.booking.activity();
    for (name, help, value) in [
        (
            "booking_tokens_issued_total",
            "Queue tokens issued by this instance.",
            activity.tokens_issued,
        ),
        (
            "booking_admissions_total",
            "Users admitted by this instance's admission ticks.",
            activity.admitted,
        ),
        (
            "booking_holds_expired_total",
            "Holds this instance's sweeper recorded as expired (lapsed, or released when their session ended).",
            activity.holds_expired,
        ),
        (
            "booking_sessions_expired_total",
            "Sessions this instance's sweeper recorded as lapsed.",
            activity.sessions_expired,
        ),
        (
            "booking_sessions_paid_total",
            "Sessions ended by a payment through this instance.",
            activity.sessions_paid,
        ),
    ] {
        counter(&mut out, name, help, value);
    }
    if let Ok(hooks) = st.booking.webhooks().await {
        let failed = hooks
            .iter()
            .filter(|w| w.status == WebhookStatus::Failed)
            .count();
        let _ = writeln!(
            out,
            "# HELP booking_webhook_endpoints Webhook endpoints, by status (failed: given up after too many failures in a row, until retried).\n\
             # TYPE booking_webhook_endpoints gauge\n\
             booking_webhook_endpoints{{status=\"active\"}} {}\n\
             booking_webhook_endpoints{{status=\"failed\"}} {failed}",
            hooks.len() - failed
        );
    }
    let m = &st.metrics;
    m.render_storage(&mut out);
    m.render_deliveries(&mut out);
    counter(
        &mut out,
        "booking_holds_total",
        "Holds taken by this instance.",
        m.count("POST", "/v1/reservations", 201),
    );
    counter(
        &mut out,
        "booking_hold_conflicts_total",
        "Hold requests refused because the seat was taken or at the hold cap, on this instance.",
        m.count("POST", "/v1/reservations", 409),
    );
    counter(
        &mut out,
        "booking_payments_total",
        "Payments made through this instance.",
        m.count("POST", "/v1/payments", 201),
    );
    m.render(&mut out);
    process_metrics(&mut out);
    let _ = writeln!(
        out,
        "# HELP booking_build_info The running build: its version.\n\
         # TYPE booking_build_info gauge\n\
         booking_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    ([("content-type", CONTENT_TYPE)], out).into_response()
}

/// The Prometheus text format's media type.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Kernel clock ticks per second of `/proc/self/stat` (`USER_HZ`, 100 on Linux).
const USER_HZ: f64 = 100.0;

/// The standard process metrics, from `/proc/self` (Linux; absent elsewhere): CPU
/// time, resident memory, open and most file descriptors.
fn process_metrics(out: &mut String) {
    if let Some(cpu_secs) = cpu_seconds() {
        let _ = writeln!(
            out,
            "# HELP process_cpu_seconds_total User and system CPU time of the process.\n\
             # TYPE process_cpu_seconds_total counter\n\
             process_cpu_seconds_total {cpu_secs}"
        );
    }
    if let Some(rss) = resident_bytes() {
        gauge(
            out,
            "process_resident_memory_bytes",
            "Resident memory of the process.",
            rss,
        );
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        gauge(
            out,
            "process_open_fds",
            "Open file descriptors (sockets included).",
            fds.count(),
        );
    }
    if let Some(max) = max_fds() {
        gauge(
            out,
            "process_max_fds",
            "The soft limit of open file descriptors.",
            max,
        );
    }
}

/// CPU seconds (user + system) this process has used, every thread counted, from
/// `/proc/self/stat`; `None` where there is no `/proc` (not Linux).
pub fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // After the command name (in parentheses, may hold spaces): utime and stime are
    // the 14th and 15th fields of the line.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / USER_HZ)
}

/// Resident memory in bytes, from `VmRSS` of `/proc/self/status` (in kB).
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// The soft limit of open files, from `/proc/self/limits`.
fn max_fds() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}
