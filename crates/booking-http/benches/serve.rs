//! The accept loop's cost: `booking_http::serve_with` (header-read timeout,
//! connection caps, the rewriting of hyper's bare answers) against plain
//! `axum::serve`, on one hello-world router, in alternating windows in one process
//! so that the load of a shared machine falls on both alike.
//!
//! ```text
//! cargo bench -p booking-http --bench serve
//! BOOKING_BENCH_SECS=2 BOOKING_BENCH_CONNS=64 cargo bench -p booking-http --bench serve
//! ```
//!
//! Each of `BOOKING_BENCH_CONNS` (default 32) tasks keeps one connection and sends
//! the next request when the answer is in; each window lasts `BOOKING_BENCH_SECS`
//! (default 1) after a warm-up of a fifth of that, eight windows per server.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

const WINDOWS: usize = 8;

async fn client(addr: SocketAddr, done: Arc<AtomicU64>, stop: Arc<AtomicBool>) {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.set_nodelay(true).expect("nodelay");
    let mut buf = vec![0u8; 4096];
    while !stop.load(Ordering::Relaxed) {
        s.write_all(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("write");
        let mut got = 0;
        while !buf[..got].ends_with(b"hello") {
            let n = s.read(&mut buf[got..]).await.expect("read");
            assert!(n > 0, "the server closed the connection");
            got += n;
        }
        done.fetch_add(1, Ordering::Relaxed);
    }
}

/// Requests per second against `addr` over one window.
async fn window(addr: SocketAddr, conns: usize, secs: f64) -> f64 {
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = (0..conns)
        .map(|_| tokio::spawn(client(addr, Arc::clone(&done), Arc::clone(&stop))))
        .collect();
    tokio::time::sleep(Duration::from_secs_f64(secs / 5.0)).await;
    let (before, t0) = (done.load(Ordering::Relaxed), Instant::now());
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    let rate = (done.load(Ordering::Relaxed) - before) as f64 / t0.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("client");
    }
    rate
}

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let secs: f64 = env("BOOKING_BENCH_SECS", 1.0);
    let conns: usize = env("BOOKING_BENCH_CONNS", 32);
    let app = || axum::Router::new().route("/hello", axum::routing::get(|| async { "hello" }));
    let plain = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let ours = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let (plain_addr, ours_addr) = (
        plain.local_addr().expect("addr"),
        ours.local_addr().expect("addr"),
    );
    tokio::spawn(async move {
        axum::serve(
            plain,
            app().into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    });
    tokio::spawn(booking_http::serve_with(
        ours,
        app(),
        booking_http::ServeOptions::default(),
        std::future::pending(),
    ));
    let (mut plain_rates, mut our_rates) = (Vec::new(), Vec::new());
    for _ in 0..WINDOWS {
        plain_rates.push(window(plain_addr, conns, secs).await);
        our_rates.push(window(ours_addr, conns, secs).await);
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let (p, o) = (mean(&plain_rates), mean(&our_rates));
    println!("# accept loop: {conns} connections, {WINDOWS} windows of {secs} s each, alternating");
    println!("| server | requests/s (mean) | per window |");
    println!("|---|---:|---|");
    let list = |v: &[f64]| {
        v.iter()
            .map(|r| format!("{r:.0}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!("| axum::serve | {p:.0} | {} |", list(&plain_rates));
    println!("| serve_with | {o:.0} | {} |", list(&our_rates));
    println!("serve_with / axum::serve: {:.0}%", 100.0 * o / p);
}
