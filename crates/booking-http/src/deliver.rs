//! The webhook deliverer: every instance runs one ([`run_deliverer`]), beside the
//! ticker and the sweeper. Its workers each claim one endpoint at a time (a lease in
//! the database, so instances never post to one endpoint at once), post the events
//! after its cursor, of its types, in id order, ONE AT A TIME, move the cursor after
//! each 2xx answer, and on any other answer or a timeout record the failure (the
//! endpoint backs off, or fails past the retry policy's attempts) and let it go.
//!
//! Each request is `POST <url>` with the event as its body (`feed::event_json`,
//! `{"id", "type", "at", "data"}`), `Content-Type: application/json`,
//! `X-Booking-Event-Id` and `X-Booking-Signature: t=<unix seconds>,v1=<hex>`
//! ([`booking_core::domain::sign`]). Redirects are not followed (a 3xx is a
//! failure): a receiver that moved is given a new URL by its operator.
//!
//! At least once: the cursor moves only after a 2xx, so a deliverer that dies (or
//! stalls past its lease) between the receiver's answer and the cursor's move
//! leaves that one event to be sent again; nothing else is sent twice.
//!
//! `https://` endpoints are reached over TLS (rustls, TLS 1.2 and 1.3). A receiver's
//! certificate must chain to one of the bundled Mozilla roots (no system store is
//! read) or to a certificate authority the operator added
//! ([`DeliveryOptions::trusted_cas`], `booking serve --webhook-ca FILE`). A
//! certificate that is not trusted (or not for the URL's host) fails the attempt like
//! any other failure: the endpoint backs off and its `last_error` says why.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use booking_core::domain::{Event, RetryPolicy, SIGNATURE_HEADER, sign};
use booking_core::{Booking, Clock, Delivery, Store, StoreError};

/// How the deliverer runs.
#[derive(Debug, Clone)]
pub struct DeliveryOptions {
    /// This deliverer's name in the leases it takes (`leased_by`); unique per
    /// instance (default: `pid-<process id>-<random>`). Worker `i` adds `/i`.
    pub name: String,
    /// Endpoints this instance posts to at once (default 4).
    pub workers: usize,
    /// How often an idle worker looks for a due endpoint (default 200 ms).
    pub poll_every: Duration,
    /// How long a claim (and each success, which renews it) keeps an endpoint
    /// this deliverer's (default 60 s). Past it another instance may take the
    /// endpoint over; it is several times the request timeout, so only a stall
    /// (or a dead instance) lets it lapse.
    pub lease: Duration,
    /// The longest one request may take, connection included (default 10 s).
    pub request_timeout: Duration,
    /// Events read from the feed per round (default 100).
    pub batch: u32,
    /// Backoff and the attempt limit.
    pub retry: RetryPolicy,
    /// Certificate authorities trusted for `https://` receivers beside the bundled
    /// roots (default: none).
    pub trusted_cas: TrustedCas,
}

/// Certificate authorities an operator trusts for webhook receivers, beside the
/// bundled roots: a private CA, or a receiver's self-signed certificate.
#[derive(Clone, Default)]
pub struct TrustedCas(Vec<reqwest::Certificate>);

impl TrustedCas {
    /// Reads PEM text holding one or more certificates (`-----BEGIN CERTIFICATE-----`
    /// blocks; anything else in the text is ignored).
    ///
    /// # Errors
    /// When the text holds no certificate block or a block is not a certificate; the
    /// message never quotes the text.
    pub fn from_pem(pem: &[u8]) -> Result<Self, String> {
        let certs = reqwest::Certificate::from_pem_bundle(pem)
            .map_err(|_| "it is not PEM text (a bad certificate block)".to_owned())?;
        if certs.is_empty() {
            return Err("it holds no certificate (no BEGIN CERTIFICATE block)".to_owned());
        }
        let cas = TrustedCas(certs);
        // The roots are parsed when a client is built: build one to check them now.
        client(Duration::from_secs(1), &cas)
            .map_err(|_| "a certificate in it is not a valid X.509 certificate".to_owned())?;
        Ok(cas)
    }

    /// How many certificates are trusted beyond the bundled roots.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether only the bundled roots are trusted.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for TrustedCas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TrustedCas({} certificates)", self.0.len())
    }
}

impl Default for DeliveryOptions {
    fn default() -> Self {
        DeliveryOptions {
            name: format!("pid-{}-{}", std::process::id(), &uuid_suffix()),
            workers: 4,
            poll_every: Duration::from_millis(200),
            lease: Duration::from_secs(60),
            request_timeout: Duration::from_secs(10),
            batch: 100,
            retry: RetryPolicy::default(),
            trusted_cas: TrustedCas::default(),
        }
    }
}

fn uuid_suffix() -> String {
    // Eight hex digits of a random UUID: two instances with one process id (two
    // containers) still take leases under different names.
    booking_core::domain::UserId::random().to_string()[..8].to_owned()
}

/// What a deliverer has done since it started.
#[derive(Debug, Default)]
pub struct DeliveryStats {
    /// Requests answered 2xx.
    pub delivered: AtomicU64,
    /// Requests that failed (non-2xx, timeout, no connection).
    pub failed: AtomicU64,
    /// Endpoints given up because the lease was lost (another instance took it).
    pub lost_leases: AtomicU64,
}

impl DeliveryStats {
    fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Builds the HTTP client of the deliverer: timeouts, no redirects, no proxy from
/// the environment (events go to the URL the operator gave, nowhere else), TLS
/// trusting the bundled Mozilla roots and `trusted_cas`.
///
/// # Errors
/// When the HTTP client cannot be built (a certificate of `trusted_cas` is not
/// valid, or the platform has no usable resolver).
pub fn client(
    request_timeout: Duration,
    trusted_cas: &TrustedCas,
) -> reqwest::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder().use_rustls_tls();
    for ca in &trusted_cas.0 {
        builder = builder.add_root_certificate(ca.clone());
    }
    builder
        .timeout(request_timeout)
        .connect_timeout(request_timeout.min(Duration::from_secs(5)))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .user_agent(concat!("booking-webhooks/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// Runs the deliverer until `stop` resolves: `options.workers` workers, each
/// claiming one endpoint at a time. Any number of instances may run one on one
/// database. On `stop`, a worker finishes the request it is sending, releases its
/// endpoint and returns. Storage failures are logged and retried at the next
/// round. Returns the counts of what it did.
pub async fn run_deliverer<S: Store, C: Clock>(
    booking: Arc<Booking<S, C>>,
    options: DeliveryOptions,
    stop: impl Future<Output = ()> + Send,
) -> Arc<DeliveryStats> {
    let stats = Arc::new(DeliveryStats::default());
    run_deliverer_with(booking, options, Arc::clone(&stats), stop).await;
    stats
}

/// [`run_deliverer`], counting into `stats` (which the caller can read while it
/// runs).
pub async fn run_deliverer_with<S: Store, C: Clock>(
    booking: Arc<Booking<S, C>>,
    options: DeliveryOptions,
    stats: Arc<DeliveryStats>,
    stop: impl Future<Output = ()> + Send,
) {
    let (stopping, stop_rx) = tokio::sync::watch::channel(false);
    let client = match client(options.request_timeout, &options.trusted_cas) {
        Ok(client) => client,
        Err(e) => {
            tracing::error!(error = %e, "no HTTP client for webhook delivery: nothing is delivered by this instance");
            return;
        }
    };
    let workers = (0..options.workers.max(1)).map(|i| {
        let worker = Worker {
            booking: Arc::clone(&booking),
            client: client.clone(),
            holder: format!("{}/{i}", options.name),
            options: options.clone(),
            stats: Arc::clone(&stats),
            stop: stop_rx.clone(),
        };
        worker.run()
    });
    let all = futures_util::future::join_all(workers);
    tokio::pin!(stop);
    tokio::pin!(all);
    tokio::select! {
        _ = &mut all => return,
        () = &mut stop => {}
    }
    let _ = stopping.send(true);
    all.await;
}

struct Worker<S, C> {
    booking: Arc<Booking<S, C>>,
    client: reqwest::Client,
    holder: String,
    options: DeliveryOptions,
    stats: Arc<DeliveryStats>,
    stop: tokio::sync::watch::Receiver<bool>,
}

impl<S: Store, C: Clock> Worker<S, C> {
    fn stopping(&self) -> bool {
        *self.stop.borrow()
    }

    async fn run(mut self) {
        while !self.stopping() {
            let idle = match self
                .booking
                .claim_webhook(&self.holder, self.options.lease)
                .await
            {
                Ok(Some(delivery)) => {
                    let claimed = delivery.clone();
                    if let Err(e) = self.deliver(delivery).await {
                        tracing::warn!(webhook = %claimed.id(), error = %e, "webhook delivery: storage failed");
                        // Give the endpoint back now rather than when the lease
                        // lapses; if this fails too, the lease lapses.
                        let _ = self.booking.release_webhook(&claimed).await;
                        true
                    } else {
                        false
                    }
                }
                Ok(None) => true,
                Err(e) => {
                    tracing::warn!(error = %e, "webhook claim failed");
                    true
                }
            };
            if idle {
                let wait = tokio::time::sleep(self.options.poll_every);
                tokio::select! {
                    () = wait => {}
                    _ = self.stop.changed() => {}
                }
            }
        }
    }

    /// Posts a claimed endpoint's events until none is left, a request fails, the
    /// lease is lost, or the deliverer stops.
    async fn deliver(&self, mut d: Delivery) -> Result<(), StoreError> {
        let lease = self.options.lease;
        loop {
            let next = self
                .booking
                .webhook_next_events(&d, self.options.batch)
                .await?;
            for event in &next.events {
                if self.stopping() {
                    self.booking.release_webhook(&d).await?;
                    return Ok(());
                }
                match self.post(&d, event).await {
                    Ok(()) => {
                        DeliveryStats::add(&self.stats.delivered);
                        if !self
                            .booking
                            .webhook_delivered(&mut d, event.id, lease)
                            .await?
                        {
                            DeliveryStats::add(&self.stats.lost_leases);
                            tracing::warn!(webhook = %d.id(), "webhook lease lost; another deliverer took over");
                            return Ok(());
                        }
                    }
                    Err(error) => {
                        DeliveryStats::add(&self.stats.failed);
                        let next_try = self
                            .booking
                            .webhook_failed(&d, error.clone(), &self.options.retry)
                            .await?;
                        match next_try {
                            Some(at) => {
                                tracing::info!(webhook = %d.id(), event = event.id.0, %error, retry_at = %at, "webhook delivery failed")
                            }
                            None => {
                                tracing::warn!(webhook = %d.id(), event = event.id.0, %error, "webhook delivery failed too often; the endpoint is now failed")
                            }
                        }
                        return Ok(());
                    }
                }
            }
            if next.done_up_to > d.claimed.webhook.cursor
                && !self
                    .booking
                    .webhook_delivered(&mut d, next.done_up_to, lease)
                    .await?
            {
                DeliveryStats::add(&self.stats.lost_leases);
                return Ok(());
            }
            if next.events.len() < self.options.batch as usize || self.stopping() {
                self.booking.release_webhook(&d).await?;
                return Ok(());
            }
        }
    }

    /// One signed request; `Err` describes the failure for the operator (never
    /// the URL or the secret).
    async fn post(&self, d: &Delivery, event: &Event) -> Result<(), String> {
        let body = serde_json::to_vec(&crate::feed::event_json(event))
            .map_err(|e| format!("cannot encode event {}: {e}", event.id.0))?;
        let t = self.booking.clock().now().as_millis().div_euclid(1000);
        let signature = sign(&d.claimed.secret, t, &body);
        let sent = self
            .client
            .post(d.claimed.webhook.url.as_str())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("X-Booking-Event-Id", event.id.0.to_string())
            .header(SIGNATURE_HEADER, signature)
            .body(body)
            .send()
            .await;
        match sent {
            Ok(answer) if answer.status().is_success() => Ok(()),
            Ok(answer) => Err(format!("HTTP {}", answer.status())),
            Err(e) => Err(describe(&e)),
        }
    }
}

/// A failed request in words, without the URL (reqwest's own text names it).
fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return "timed out".to_owned();
    }
    if let Some(tls) = tls_error(e) {
        return match tls {
            rustls::Error::InvalidCertificate(c) => {
                let why = match c {
                    rustls::CertificateError::UnknownIssuer => {
                        "unknown issuer (trust its CA with --webhook-ca)".to_owned()
                    }
                    rustls::CertificateError::NotValidForName
                    | rustls::CertificateError::NotValidForNameContext { .. } => {
                        "not valid for the URL's host".to_owned()
                    }
                    rustls::CertificateError::Expired
                    | rustls::CertificateError::ExpiredContext { .. } => "expired".to_owned(),
                    other => {
                        let raw = format!("{other:?}");
                        if raw.contains("CaUsedAsEndEntity") {
                            // A self-signed certificate made as a CA (the default of
                            // `openssl req -x509`) cannot be a server's own.
                            "it is a CA certificate, not a server's \
                             (make it with basicConstraints CA:FALSE)"
                                .to_owned()
                        } else {
                            raw
                        }
                    }
                };
                format!("TLS: the receiver's certificate is not trusted: {why}")
            }
            other => format!("TLS handshake failed: {other}"),
        };
    }
    if e.is_connect() {
        return "cannot connect".to_owned();
    }
    let mut text = e.to_string();
    if let Some(u) = e.url() {
        text = text.replace(u.as_str(), "<url>");
    }
    format!("request failed: {text}")
}

/// The TLS error behind a failed request, if a handshake failed: rustls's error is
/// inside an I/O error (itself maybe inside another) somewhere down the chain of
/// sources; an I/O error's `source()` skips what it wraps, so each is opened.
fn tls_error(e: &reqwest::Error) -> Option<&rustls::Error> {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = next {
        let mut inner = err;
        loop {
            if let Some(tls) = inner.downcast_ref::<rustls::Error>() {
                return Some(tls);
            }
            match inner
                .downcast_ref::<std::io::Error>()
                .and_then(std::io::Error::get_ref)
            {
                Some(wrapped) => inner = wrapped,
                None => break,
            }
        }
        next = err.source();
    }
    None
}
