//! A run whose every request fails (the users' instance is a closed port; the
//! operator side works) still ends at its planned duration: failed visits back
//! off instead of looping, the progress lines name the error, and the exit code
//! says the run failed.

use std::process::Command;
use std::time::{Duration, Instant};

use booking_core::Config;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_failing_stops_at_the_duration_with_the_error_named() {
    let dir = tempfile::tempdir().expect("dir");
    let url = format!("sqlite://{}", dir.path().join("ops.db").display());
    let servers = booking_sim::http::spawn_servers(1, &url, Config::default(), 1, 4)
        .await
        .expect("an instance for the operator side");
    // A port nothing listens on.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let admin_url = servers.bases[0].clone();
    let admin_key = servers.admin_key.clone();
    let secret = admin_key.clone();
    let plan_secs = 4;
    let t0 = Instant::now();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_booking-sim"))
            .args([
                "--url",
                &format!("http://127.0.0.1:{closed}"),
                "--admin-url",
                &admin_url,
                "--users",
                "2000",
                "--ramp",
                "500ms",
                "--duration",
                &format!("{plan_secs}s"),
                "--no-tui",
                "--seed",
                "5",
            ])
            .env("BOOKING_ADMIN_KEY", admin_key)
            .output()
            .expect("run booking-sim")
    })
    .await
    .expect("join");
    let wall = t0.elapsed();
    servers.shutdown();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{stderr}\n{stdout}");
    assert!(
        !stderr.contains(&secret) && !stdout.contains(&secret),
        "the admin key is never printed"
    );
    assert!(
        wall < Duration::from_secs(plan_secs + 10),
        "the run ended at its duration: {wall:?}\n{stderr}"
    );
    let verdict = stderr
        .lines()
        .find(|l| l.contains("the run FAILED"))
        .unwrap_or_else(|| panic!("a verdict line: {stderr}"));
    assert!(verdict.contains("issue/transport"), "{verdict}");
    assert!(verdict.contains("refused"), "the cause is named: {verdict}");
    // Progress lines name the error kind with a sample message.
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with('[') && l.contains("issue/transport") && l.contains("refused")),
        "{stderr}"
    );
    // Backing off: a couple of thousand users for four seconds make a few
    // thousand attempts, not the hundreds of thousands of a tight loop.
    let issues: u64 = stdout
        .lines()
        .find(|l| l.starts_with("| issue |"))
        .and_then(|l| l.split('|').nth(2))
        .and_then(|c| c.trim().parse().ok())
        .unwrap_or_else(|| panic!("the issue row: {stdout}"));
    assert!(
        (2_000..=20_000).contains(&issues),
        "{issues} token requests"
    );
    assert!(stdout.contains("**the run failed**"), "{stdout}");
}
