//! The accept loop: HTTP/1.1 connections on hyper, with the limits a public server
//! needs against slow or greedy clients ([`ServeOptions`]), graceful shutdown, and
//! the JSON error shape also for the answers hyper writes itself.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::{Pin, pin};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::serve::Listener as _;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tower::ServiceExt;

use crate::LoggedListener;

/// The limits of [`crate::serve_with`] on connections and on reading requests.
///
/// The defaults ([`ServeOptions::default`]) suit a public server that also holds
/// one long-lived connection per waiting user: 5 s to send a request's headers,
/// 10 s to send its body, at most 32,768 connections (fewer when the open-files
/// limit is lower) and 1,024 per client IP address, loopback addresses exempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServeOptions {
    /// How long a client has to send a request's headers, counted from when the
    /// server starts waiting for them: a connection that has not sent a whole head
    /// by then is closed without an answer (a slowloris client), and so is an idle
    /// kept-alive connection. It never applies while a response is being written,
    /// however long (a stream of events). Default 5 s.
    pub header_read_timeout: Duration,
    /// How long a handler waits for a request's body to arrive once it starts
    /// reading it; past it the client gets 408 `request_timeout`. Default 10 s
    /// (below the whole request's limit, [`crate::REQUEST_TIMEOUT`]).
    pub body_timeout: Duration,
    /// Connections open at once, at most. Past it the server stops accepting until
    /// one closes (new clients wait in the listen backlog). The number is lowered
    /// at start to leave 512 of the process's open-files limit for everything
    /// else (but at least half of it). Default 32,768.
    pub max_connections: usize,
    /// Connections open at once from one IP address, at most (0: no cap). A
    /// connection past it is closed at once. Default 1,024.
    pub max_connections_per_ip: usize,
    /// Whether loopback addresses (`127.0.0.0/8`, `::1`) are exempt from
    /// [`ServeOptions::max_connections_per_ip`]: a reverse proxy or a load
    /// simulator on the same machine connects from there for many clients.
    /// Default `true`.
    pub per_ip_exempts_loopback: bool,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            header_read_timeout: Duration::from_secs(5),
            body_timeout: Duration::from_secs(10),
            max_connections: 32_768,
            max_connections_per_ip: 1_024,
            per_ip_exempts_loopback: true,
        }
    }
}

impl ServeOptions {
    /// Checks the bounds: each timeout 10 ms to 10 min, at least one connection.
    ///
    /// # Errors
    /// A sentence naming the setting out of bounds.
    pub fn validate(&self) -> Result<(), String> {
        let bounds = Duration::from_millis(10)..=Duration::from_secs(600);
        if !bounds.contains(&self.header_read_timeout) {
            return Err("the header-read timeout is 10 ms to 10 min".into());
        }
        if !bounds.contains(&self.body_timeout) {
            return Err("the body timeout is 10 ms to 10 min".into());
        }
        if self.max_connections == 0 {
            return Err("at least one connection must be allowed".into());
        }
        Ok(())
    }
}

/// Open files [`ServeOptions::max_connections`] leaves for the rest of the
/// process (database files and connections, logs).
const RESERVED_FILES: usize = 512;

/// How long a handler may wait for a body; handlers read it from the request.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BodyTimeout(pub Duration);

/// [`ServeOptions::max_connections`], lowered to fit the open-files limit.
pub(crate) fn connection_cap(configured: usize) -> usize {
    let limit = open_files_limit();
    let room = limit.map_or(usize::MAX, |soft| {
        soft.saturating_sub(RESERVED_FILES).max(soft / 2).max(1)
    });
    configured.clamp(1, room.max(1))
}

fn open_files_limit() -> Option<usize> {
    #[cfg(unix)]
    {
        rlimit::getrlimit(rlimit::Resource::NOFILE)
            .ok()
            .map(|(soft, _)| usize::try_from(soft).unwrap_or(usize::MAX))
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// The count of open connections per IP address.
#[derive(Debug)]
struct PerIp {
    cap: usize,
    exempt_loopback: bool,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One connection's place in [`PerIp`]; leaving frees it.
struct IpSlot {
    table: Arc<PerIp>,
    ip: Option<IpAddr>,
}

impl PerIp {
    /// Takes a place for a connection from `ip`, or `None` when `ip` is at its cap.
    fn enter(self: &Arc<Self>, ip: IpAddr) -> Option<IpSlot> {
        let ip = ip.to_canonical();
        if self.cap == 0 || (self.exempt_loopback && ip.is_loopback()) {
            return Some(IpSlot {
                table: Arc::clone(self),
                ip: None,
            });
        }
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let n = open.entry(ip).or_insert(0);
        if *n >= self.cap {
            return None;
        }
        *n += 1;
        Some(IpSlot {
            table: Arc::clone(self),
            ip: Some(ip),
        })
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let Some(ip) = self.ip else { return };
        let mut open = self.table.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&ip);
            }
        }
    }
}

/// Counts connections refused by the per-IP cap and logs them at most once a
/// second.
struct Refusals {
    since_log: u64,
    last_log: Option<std::time::Instant>,
}

impl Refusals {
    fn refused(&mut self, ip: IpAddr, cap: usize) {
        self.since_log += 1;
        let now = std::time::Instant::now();
        if self
            .last_log
            .is_some_and(|t| now.duration_since(t) < Duration::from_secs(1))
        {
            return;
        }
        tracing::warn!(
            refused = self.since_log,
            %ip,
            cap,
            "connections refused: too many open from one IP address"
        );
        self.since_log = 0;
        self.last_log = Some(now);
    }
}

pub(crate) async fn run(
    listener: TcpListener,
    app: Router,
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let cap = connection_cap(options.max_connections);
    tracing::info!(
        max_connections = cap,
        max_connections_per_ip = options.max_connections_per_ip,
        loopback_exempt = options.per_ip_exempts_loopback,
        header_read_timeout_ms = options.header_read_timeout.as_millis() as u64,
        body_timeout_ms = options.body_timeout.as_millis() as u64,
        "connection limits"
    );
    let permits = Arc::new(Semaphore::new(cap));
    let per_ip = Arc::new(PerIp {
        cap: options.max_connections_per_ip,
        exempt_loopback: options.per_ip_exempts_loopback,
        open: Mutex::default(),
    });
    let mut refusals = Refusals {
        since_log: 0,
        last_log: None,
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout)
        .writev(false);
    let mut listener = LoggedListener::new(listener);

    // Dropping `signal_rx` tells the connections to finish; each holds a
    // `close_rx`, so `close_tx.closed()` resolves when the last one is done.
    let (signal_tx, signal_rx) = watch::channel(());
    tokio::spawn(async move {
        shutdown.await;
        drop(signal_rx);
    });
    let (close_tx, close_rx) = watch::channel(());

    loop {
        let permit = tokio::select! {
            p = Arc::clone(&permits).acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            () = signal_tx.closed() => break,
        };
        let (tcp, addr) = tokio::select! {
            c = listener.accept() => c,
            () = signal_tx.closed() => break,
        };
        let Some(slot) = per_ip.enter(addr.ip()) else {
            refusals.refused(addr.ip(), per_ip.cap);
            drop(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let router = app.clone();
        let body_timeout = BodyTimeout(options.body_timeout);
        let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo(addr));
            req.extensions_mut().insert(body_timeout);
            router.clone().oneshot(req)
        });
        let conn = builder.serve_connection(JsonErrorIo::new(TokioIo::new(tcp)), service);
        let signal_tx = signal_tx.clone();
        let close_rx = close_rx.clone();
        tokio::spawn(async move {
            let mut conn = pin!(conn);
            let mut stop = pin!(signal_tx.closed());
            let mut stopping = false;
            loop {
                tokio::select! {
                    result = conn.as_mut() => {
                        if let Err(e) = result {
                            tracing::debug!(peer = %addr, "connection ended: {e}");
                        }
                        break;
                    }
                    () = &mut stop, if !stopping => {
                        stopping = true;
                        conn.as_mut().graceful_shutdown();
                    }
                }
            }
            drop((permit, slot, close_rx));
        });
    }
    drop(close_rx);
    drop(listener);
    close_tx.closed().await;
    Ok(())
}

/// A connection's IO that gives the answers hyper writes by itself (a request it
/// cannot parse: 400, a URL too long: 414, headers too large or too many: 431,
/// each with an empty body) the JSON error body every other answer has.
///
/// hyper writes such an answer as a status line, `content-length: 0` and `date`,
/// then closes the connection; no answer of the application has that shape (each
/// has a content type and a request id). The head is found in one write (the
/// connection is set to flatten its writes); one split by a short write keeps its
/// empty body.
struct JsonErrorIo<T> {
    inner: T,
    /// Bytes of a rewritten answer still to be written.
    pending: Vec<u8>,
    written: usize,
}

impl<T> JsonErrorIo<T> {
    fn new(inner: T) -> Self {
        JsonErrorIo {
            inner,
            pending: Vec::new(),
            written: 0,
        }
    }
}

impl<T: hyper::rt::Write + Unpin> JsonErrorIo<T> {
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.pending.len() {
            let n =
                ready!(Pin::new(&mut self.inner).poll_write(cx, &self.pending[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.pending.clear();
        self.written = 0;
        Poll::Ready(Ok(()))
    }
}

impl<T: hyper::rt::Read + Unpin> hyper::rt::Read for JsonErrorIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<T: hyper::rt::Write + Unpin> hyper::rt::Write for JsonErrorIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        match find_bare_error(buf) {
            None => Pin::new(&mut this.inner).poll_write(cx, buf),
            Some(found) if found.start > 0 => {
                Pin::new(&mut this.inner).poll_write(cx, &buf[..found.start])
            }
            Some(found) => {
                this.pending = found.replacement;
                this.written = 0;
                if let Poll::Ready(Err(e)) = this.poll_drain(cx) {
                    return Poll::Ready(Err(e));
                }
                Poll::Ready(Ok(found.end))
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        false
    }
}

/// A bare error answer of hyper's found in a write: where it starts and ends,
/// and what to write instead.
struct BareError {
    start: usize,
    end: usize,
    replacement: Vec<u8>,
}

/// The answers hyper writes by itself: status line, code and message.
const BARE_ERRORS: [(&[u8], &str, &str); 3] = [
    (
        b"HTTP/1.1 400 Bad Request\r\n",
        "bad_request",
        "the request is not valid HTTP/1.1",
    ),
    (
        b"HTTP/1.1 414 URI Too Long\r\n",
        "uri_too_long",
        "the URL is longer than this server accepts",
    ),
    (
        b"HTTP/1.1 431 Request Header Fields Too Large\r\n",
        "headers_too_large",
        "the request's headers are larger or more numerous than this server accepts",
    ),
];

fn find_bare_error(buf: &[u8]) -> Option<BareError> {
    for start in memchr::memmem::find_iter(buf, b"HTTP/1.1 4") {
        let rest = &buf[start..];
        let Some((status_line, code, message)) = BARE_ERRORS
            .iter()
            .find(|(line, _, _)| rest.starts_with(line))
        else {
            continue;
        };
        let head_start = status_line.len();
        // The header block ends at the first empty line.
        let Some(block_len) = memchr::memmem::find(&rest[head_start - 2..], b"\r\n\r\n") else {
            continue;
        };
        let block = &rest[head_start..head_start - 2 + block_len + 2];
        let mut kept = Vec::new();
        let mut saw_empty_length = false;
        let mut other = false;
        for line in block.split_inclusive(|&b| b == b'\n') {
            let lower = line.to_ascii_lowercase();
            if lower == b"content-length: 0\r\n" {
                saw_empty_length = true;
            } else if lower.starts_with(b"date: ") {
                kept.extend_from_slice(line);
            } else if lower == b"connection: close\r\n" {
            } else {
                other = true;
            }
        }
        if !saw_empty_length || other {
            continue;
        }
        let body = serde_json::to_vec(&crate::error::ErrorBody {
            error: crate::error::ErrorDetail {
                code: (*code).to_owned(),
                message: (*message).to_owned(),
            },
        })
        .unwrap_or_default();
        let mut replacement = Vec::with_capacity(256 + body.len());
        replacement.extend_from_slice(status_line);
        replacement.extend_from_slice(b"content-type: application/json\r\n");
        replacement.extend_from_slice(format!("content-length: {}\r\n", body.len()).as_bytes());
        replacement.extend_from_slice(b"connection: close\r\n");
        replacement.extend_from_slice(&kept);
        replacement.extend_from_slice(b"\r\n");
        replacement.extend_from_slice(&body);
        return Some(BareError {
            start,
            end: start + head_start - 2 + block_len + 4,
            replacement,
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_error_of_hyper_gets_the_json_body() {
        let bare = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: Sat, 05 Dec 2026 20:50:00 GMT\r\n\r\n";
        let found = find_bare_error(bare).expect("found");
        assert_eq!((found.start, found.end), (0, bare.len()));
        let text = String::from_utf8(found.replacement).expect("text");
        let (head, body) = text.split_once("\r\n\r\n").expect("head and body");
        assert!(head.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"));
        assert!(head.contains("content-type: application/json"));
        assert!(head.contains(&format!("content-length: {}", body.len())));
        assert!(head.contains("date: Sat, 05 Dec 2026 20:50:00 GMT"));
        let v: serde_json::Value = serde_json::from_str(body).expect("json");
        assert_eq!(v["error"]["code"], "headers_too_large");
    }

    #[test]
    fn a_bare_error_after_another_answer_is_found_where_it_starts() {
        let mut buf =
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"
                .to_vec();
        let at = buf.len();
        buf.extend_from_slice(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n");
        let found = find_bare_error(&buf).expect("found");
        assert_eq!((found.start, found.end), (at, buf.len()));
    }

    #[test]
    fn answers_of_the_application_are_left_alone() {
        for answer in [
            &b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 0\r\n\r\n"[..],
            b"HTTP/1.1 400 Bad Request\r\nx-request-id: 1\r\ncontent-length: 0\r\ndate: x\r\n\r\n",
            b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
        ] {
            assert!(find_bare_error(answer).is_none(), "{answer:?}");
        }
    }

    #[test]
    fn the_per_ip_cap_counts_and_frees_places() {
        let table = Arc::new(PerIp {
            cap: 2,
            exempt_loopback: true,
            open: Mutex::default(),
        });
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let a = table.enter(ip).expect("first");
        let _b = table.enter(ip).expect("second");
        assert!(table.enter(ip).is_none(), "the third is refused");
        assert!(table.enter("192.0.2.8".parse().unwrap()).is_some());
        drop(a);
        assert!(
            table.enter(ip).is_some(),
            "a closed connection frees its place"
        );
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        let _c = table.enter(ip);
        assert!(
            table.enter(mapped).is_none(),
            "a mapped address is the same"
        );
        let loopback: Vec<IpSlot> = (0..10)
            .map(|_| table.enter("127.0.0.1".parse().unwrap()).expect("exempt"))
            .collect();
        assert_eq!(loopback.len(), 10);
    }

    #[test]
    fn options_are_checked() {
        assert_eq!(ServeOptions::default().validate(), Ok(()));
        let bad = [
            ServeOptions {
                header_read_timeout: Duration::ZERO,
                ..ServeOptions::default()
            },
            ServeOptions {
                body_timeout: Duration::from_secs(601),
                ..ServeOptions::default()
            },
            ServeOptions {
                max_connections: 0,
                ..ServeOptions::default()
            },
        ];
        for o in bad {
            assert!(o.validate().is_err(), "{o:?}");
        }
    }

    #[test]
    fn the_connection_cap_leaves_room_for_other_files() {
        let cap = connection_cap(usize::MAX);
        if let Some(limit) = open_files_limit() {
            assert!(cap < limit || limit <= 1, "{cap} of {limit}");
            assert!(cap >= limit / 2);
        }
        assert_eq!(connection_cap(10), 10.min(cap));
    }
}
