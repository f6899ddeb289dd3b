//! Per-IP and per-token rate limits (token buckets, per instance): past the limit a
//! client gets 429 with `Retry-After`, before any work is done.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::header::{AUTHORIZATION, RETRY_AFTER};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

/// Requests per second and burst, per client IP and per token.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimits {
    /// Sustained requests per second from one IP address (0 = no limit).
    pub per_ip_per_sec: f64,
    /// Sustained requests per second with one token (0 = no limit).
    pub per_token_per_sec: f64,
    /// How many requests above the rate a client may send at once.
    pub burst: f64,
}

impl Default for RateLimits {
    /// 500 requests a second per IP, 20 per token, bursts of 50.
    fn default() -> Self {
        RateLimits {
            per_ip_per_sec: 500.0,
            per_token_per_sec: 20.0,
            burst: 50.0,
        }
    }
}

impl RateLimits {
    /// No limits at all (tests, benchmarks).
    pub fn off() -> Self {
        RateLimits {
            per_ip_per_sec: 0.0,
            per_token_per_sec: 0.0,
            burst: 0.0,
        }
    }
}

/// Paths no rate limit applies to: the health and readiness probes and the metrics.
pub const UNLIMITED_PATHS: [&str; 3] = ["/healthz", "/readyz", "/metrics"];

/// The most clients tracked per kind; past it the table starts over, which only
/// ever forgives.
const MAX_TRACKED: usize = 100_000;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

#[derive(Debug, Default)]
struct Table(HashMap<u64, Bucket>);

impl Table {
    /// Takes one token for `key`; `Err(seconds)` until the next one when empty.
    fn take(&mut self, key: u64, rate: f64, burst: f64, now: Instant) -> Result<(), f64> {
        if self.0.len() >= MAX_TRACKED && !self.0.contains_key(&key) {
            self.0.clear();
        }
        let cap = burst.max(1.0);
        let b = self.0.entry(key).or_insert(Bucket {
            tokens: cap,
            at: now,
        });
        let refill = now.duration_since(b.at).as_secs_f64() * rate;
        b.tokens = (b.tokens + refill).min(cap);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err((1.0 - b.tokens) / rate)
        }
    }
}

/// The limiter shared by one server's requests.
#[derive(Debug)]
pub struct Limiter {
    limits: RateLimits,
    by_ip: Mutex<Table>,
    by_token: Mutex<Table>,
}

impl Limiter {
    /// A limiter with these limits.
    pub fn new(limits: RateLimits) -> Self {
        Limiter {
            limits,
            by_ip: Mutex::default(),
            by_token: Mutex::default(),
        }
    }

    fn check(&self, ip: Option<IpAddr>, token: Option<&[u8]>) -> Result<(), f64> {
        let now = Instant::now();
        let l = self.limits;
        if l.per_ip_per_sec > 0.0
            && let Some(ip) = ip
        {
            let mut t = self.by_ip.lock().unwrap_or_else(|p| p.into_inner());
            t.take(hash(&ip), l.per_ip_per_sec, l.burst, now)?;
        }
        if l.per_token_per_sec > 0.0
            && let Some(token) = token
        {
            let mut t = self.by_token.lock().unwrap_or_else(|p| p.into_inner());
            t.take(hash(token), l.per_token_per_sec, l.burst, now)?;
        }
        Ok(())
    }
}

fn hash<T: Hash + ?Sized>(v: &T) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    v.hash(&mut h);
    h.finish()
}

/// The middleware: 429 past either limit.
pub async fn limit(State(limiter): State<Arc<Limiter>>, req: Request, next: Next) -> Response {
    // Probes and scrapes are never limited: an orchestrator that gets 429 from a
    // health check would take a busy instance out of service.
    if UNLIMITED_PATHS.contains(&req.uri().path()) {
        return next.run(req).await;
    }
    let ip = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let token = req.headers().get(AUTHORIZATION).map(|v| v.as_bytes());
    if let Err(wait) = limiter.check(ip, token) {
        let secs = wait.ceil().max(1.0) as u64;
        let mut resp = ApiError::new(
            axum::http::StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("too many requests; retry in {secs} s"),
        )
        .into_response();
        resp.headers_mut().insert(RETRY_AFTER, secs.into());
        return resp;
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_bucket_allows_the_burst_then_the_rate() {
        let mut t = Table::default();
        let now = Instant::now();
        for _ in 0..5 {
            assert!(t.take(1, 10.0, 5.0, now).is_ok());
        }
        let wait = t.take(1, 10.0, 5.0, now).unwrap_err();
        assert!((wait - 0.1).abs() < 1e-9);
        assert!(
            t.take(2, 10.0, 5.0, now).is_ok(),
            "another client has its own bucket"
        );
        assert!(
            t.take(1, 10.0, 5.0, now + Duration::from_millis(100))
                .is_ok()
        );
        assert!(
            t.take(1, 10.0, 5.0, now + Duration::from_millis(100))
                .is_err()
        );
    }

    #[test]
    fn no_limit_means_no_limit() {
        let l = Limiter::new(RateLimits::off());
        for _ in 0..10_000 {
            assert!(
                l.check(Some(IpAddr::from([127, 0, 0, 1])), Some(b"t"))
                    .is_ok()
            );
        }
    }
}
