//! `booking webhook`: add (the secret shown once), list, status, retry, remove, and
//! the exit codes of bad input, on an SQLite database. The endpoint is failed
//! through the port itself (a claim and a failure past the limit), as a deliverer
//! would leave it.

use crate::common;

use booking_core::domain::Timestamp;
use booking_core::ports::{WebhookFailure, WebhookRepo};
use booking_store::SqliteStore;
use common::Sandbox;
use serde_json::Value;

const BAD_INPUT: i32 = 2;
const NOT_FOUND: i32 = 3;

#[tokio::test]
async fn add_list_status_retry_remove_and_bad_input() {
    let sb = Sandbox::new();
    sb.run(&["migrate"]).ok();
    assert_eq!(sb.run(&["webhook", "list"]).ok(), "");

    let added = sb
        .run(&[
            "webhook",
            "add",
            "http://127.0.0.1:9/hook",
            "--types",
            "hold.created,payment.completed",
            "--json",
        ])
        .json();
    let secret = added["secret"].as_str().expect("secret").to_owned();
    assert!(secret.starts_with("whsec_"), "{added}");
    assert_eq!(added["id"], 1);
    assert_eq!(
        added["types"],
        serde_json::json!(["hold.created", "payment.completed"])
    );
    let text = sb
        .run(&[
            "webhook",
            "add",
            "http://127.0.0.1:9/other",
            "--secret",
            "a-secret-given-by-hand",
        ])
        .ok();
    assert!(
        text.contains("id: 2") && text.contains("secret: a-secret-given-by-hand"),
        "{text}"
    );

    let list = sb.run(&["webhook", "list"]).ok();
    assert!(
        list.contains("hold.created,payment.completed") && list.contains("all"),
        "{list}"
    );
    for args in [
        vec!["webhook", "list", "--json"],
        vec!["webhook", "status", "--json"],
        vec!["webhook", "status"],
        vec!["webhook", "list"],
    ] {
        let out = sb.run(&args).ok();
        assert!(
            !out.contains(&secret) && !out.contains("a-secret-given-by-hand"),
            "{args:?} shows a secret"
        );
    }

    sb.run(&["webhook", "add", "ftp://example.com/"])
        .fails(BAD_INPUT, "http:// or https://");
    sb.run(&["webhook", "add", "http://h/x", "--types", "hold.made"])
        .fails(BAD_INPUT, "unknown event type \"hold.made\"");
    sb.run(&["webhook", "add", "http://h/x", "--secret", "short"])
        .fails(BAD_INPUT, "between 16 and 200");
    let r = sb.run(&["webhook", "add", "https://joe:hunter2@example.com/"]);
    r.fails(BAD_INPUT, "user name or password");
    assert!(!r.stderr.contains("hunter2"));
    sb.run(&["webhook", "remove", "99"])
        .fails(NOT_FOUND, "no webhook endpoint 99");
    sb.run(&["webhook", "retry", "abc"])
        .fails(BAD_INPUT, "a webhook id is a positive integer");
    sb.run(&["webhook", "status", "0"])
        .fails(BAD_INPUT, "a webhook id is a positive integer");

    // One event in the feed, then endpoint 1 fails past the limit.
    sb.run(&["token", "take"]).ok();
    let store = SqliteStore::open_path(&sb.path().join("booking.db"), 1)
        .await
        .expect("store");
    use booking_core::ports::EventRepo;
    store.relay_events().await.expect("relay");
    let now = Timestamp::from_millis(chrono::Utc::now().timestamp_millis());
    let last = store.last_event_id().await.expect("last");
    let claimed = store
        .claim_webhook(
            "test",
            now,
            now.plus(std::time::Duration::from_secs(60)),
            booking_core::domain::EventId(last.0 + 1),
        )
        .await
        .expect("claim")
        .expect("endpoint 1 or 2");
    let failure = WebhookFailure {
        error: "HTTP 500 Internal Server Error".into(),
        retry_at: None,
    };
    assert!(
        store
            .record_webhook_failure(claimed.webhook.id, "test", now, failure)
            .await
            .expect("fail")
    );
    store.close().await;
    let failed_id = claimed.webhook.id.get().to_string();

    let status = sb.run(&["webhook", "status", &failed_id, "--json"]).json();
    let one = &status[0];
    assert_eq!(one["status"], "failed");
    assert_eq!(one["attempts"], 1);
    assert_eq!(one["last_error"], "HTTP 500 Internal Server Error");
    let r = sb.run(&["webhook", "status"]);
    let table = r.ok();
    assert!(
        table.contains("failed") && table.contains("HTTP 500"),
        "{table}"
    );
    assert!(r.stderr.contains("1 endpoint(s) failed"), "{}", r.stderr);

    let retried = sb.run(&["webhook", "retry", &failed_id, "--json"]).json();
    assert_eq!(retried["status"], "active");
    assert_eq!(retried["attempts"], 0);
    assert_eq!(retried["last_error"], Value::Null);

    sb.run(&["webhook", "remove", "2"]).ok();
    let list = sb.run(&["webhook", "list", "--json"]).json();
    assert_eq!(list.as_array().expect("list").len(), 1);
    sb.run(&["webhook", "remove", "2"])
        .fails(NOT_FOUND, "no webhook endpoint 2");
}

/// A self-signed CA certificate (public part only), as an operator's private CA
/// would be given to `--webhook-ca`.
const CA_PEM: &str = "-----BEGIN CERTIFICATE-----
MIIBijCCATGgAwIBAgIUQN8cQCj0A/ZDTKQVNcxfIE0pOYYwCgYIKoZIzj0EAwIw
GjEYMBYGA1UEAwwPYm9va2luZyB0ZXN0IENBMCAXDTI2MTIwNjA1MTEzN1oYDzIx
MjYxMTEyMDUxMTM3WjAaMRgwFgYDVQQDDA9ib29raW5nIHRlc3QgQ0EwWTATBgcq
hkjOPQIBBggqhkjOPQMBBwNCAAT0FcGAUsUl75B38ro4+7uw7Jk2YzCtysYZD5bE
mfQmUZb/TOP4igjOiv5x8Y3AL9GEPjq/4o4LudAT5vRHUupso1MwUTAdBgNVHQ4E
FgQUIkghgsD3cTL5M5B9hgHUpNJ9Y5EwHwYDVR0jBBgwFoAUIkghgsD3cTL5M5B9
hgHUpNJ9Y5EwDwYDVR0TAQH/BAUwAwEB/zAKBggqhkjOPQQDAgNHADBEAiAiVMFx
kjBhSSEt4pUxdo6ANMV5hz2gjUvXY2B3qGhYmAIgLoAWPv06fFt2AEPEPO/h5sMk
a4L+1mVRQcHpAcqWfO0=
-----END CERTIFICATE-----
";

/// `serve`'s webhook settings: each bad value is bad input (exit 2) naming the
/// flag and its bound, before any database is opened; a CA file that is missing,
/// holds no certificate or a broken one is named, its text never shown.
#[test]
fn serve_refuses_bad_webhook_settings() {
    let sb = Sandbox::new();
    std::fs::write(sb.path().join("notes.pem"), "secret-notes, no certificate").expect("write");
    std::fs::write(
        sb.path().join("broken.pem"),
        "-----BEGIN CERTIFICATE-----\nc2VjcmV0LW5vdGVz\n-----END CERTIFICATE-----\n",
    )
    .expect("write");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["--webhook-lease", "5s"],
            "--webhook-lease is 10s to 1h, got 5s",
        ),
        (
            vec!["--webhook-lease", "2h"],
            "--webhook-lease is 10s to 1h, got 7200s",
        ),
        (
            vec!["--webhook-lease", "15s"],
            "--webhook-lease must be at least twice --webhook-timeout (20s), got 15s",
        ),
        (
            vec!["--webhook-max-attempts", "0"],
            "--webhook-max-attempts is 1 to 100, got 0",
        ),
        (
            vec!["--webhook-max-attempts", "101"],
            "--webhook-max-attempts is 1 to 100, got 101",
        ),
        (
            vec!["--webhook-backoff", "50ms"],
            "--webhook-backoff is 100ms to 1h, got 50ms",
        ),
        (
            vec!["--webhook-backoff", "2h"],
            "--webhook-backoff is 100ms to 1h",
        ),
        (
            vec!["--webhook-backoff", "10s", "--webhook-backoff-max", "5s"],
            "--webhook-backoff-max is --webhook-backoff to 24h, got 5s",
        ),
        (
            vec!["--webhook-backoff-max", "25h"],
            "--webhook-backoff-max is --webhook-backoff to 24h",
        ),
        (
            vec!["--webhook-ca", "missing.pem"],
            "--webhook-ca missing.pem: cannot read it",
        ),
        (
            vec!["--webhook-ca", "notes.pem"],
            "--webhook-ca notes.pem: it holds no certificate",
        ),
        (
            vec!["--webhook-ca", "broken.pem"],
            "--webhook-ca broken.pem: a certificate in it is not a valid X.509 certificate",
        ),
    ];
    for (flags, needle) in cases {
        let mut args = vec!["serve", "--bind", "127.0.0.1:0"];
        args.extend_from_slice(&flags);
        let r = sb.run(&args);
        eprintln!("{flags:?}");
        r.fails(BAD_INPUT, needle);
        assert!(
            !r.stderr.contains("secret-notes") && !r.stderr.contains("c2VjcmV0"),
            "the file's text is never shown: {r:#?}"
        );
    }
    assert!(!sb.path().join("booking.db").exists(), "no database opened");
    // A value clap cannot parse is its own usage error, also exit 2.
    let r = sb.run(&["serve", "--webhook-max-attempts", "many"]);
    assert_eq!(r.code, BAD_INPUT, "{r:#?}");
    assert!(r.stderr.contains("--webhook-max-attempts"), "{r:#?}");

    let help = sb.run(&["serve", "--help"]).ok();
    for flag in [
        "--webhook-ca <FILE>",
        "--webhook-lease",
        "--webhook-max-attempts",
        "--webhook-backoff ",
        "--webhook-backoff-max",
        "BOOKING_WEBHOOK_CA",
        "BOOKING_WEBHOOK_LEASE",
        "BOOKING_WEBHOOK_MAX_ATTEMPTS",
        "BOOKING_WEBHOOK_BACKOFF",
        "BOOKING_WEBHOOK_BACKOFF_MAX",
    ] {
        assert!(help.contains(flag), "{flag} in serve --help");
    }
}

/// With good settings and a CA file `serve` starts, the settings reach the
/// deliverer (`--webhook-max-attempts 1`: one refused connection fails the
/// endpoint), and `/metrics` shows the deliverer's counters and the endpoints.
#[test]
fn serve_takes_webhook_settings_and_shows_them_in_metrics() {
    let sb = Sandbox::new();
    std::fs::write(sb.path().join("ca.pem"), CA_PEM).expect("write");
    sb.run(&["migrate"]).ok();
    // Nothing listens on the discard port: every request is refused.
    sb.run(&["webhook", "add", "http://127.0.0.1:9/hook"]).ok();
    let server = sb.serve(&[
        "--webhook-ca",
        "ca.pem",
        "--webhook-lease",
        "30s",
        "--webhook-max-attempts",
        "1",
        "--webhook-backoff",
        "250ms",
        "--webhook-backoff-max",
        "10s",
    ]);
    let metrics = || common::http(&server.addr, "GET", "/metrics", &[], None).1;
    let before = metrics();
    for line in [
        "booking_webhook_requests_total{outcome=\"delivered\"} 0",
        "booking_webhook_requests_total{outcome=\"failed\"} 0",
        "booking_webhook_leases_lost_total 0",
        "booking_webhook_endpoints{status=\"active\"} 1",
        "booking_webhook_endpoints{status=\"failed\"} 0",
    ] {
        assert!(before.lines().any(|l| l == line), "{line} in\n{before}");
    }
    let body = format!("{{\"user_id\":\"{}\"}}", common::user());
    let (status, _) = common::http(&server.addr, "POST", "/v1/queue/tokens", &[], Some(&body));
    assert_eq!(status, 201);
    // The event is relayed and posted within moments; wait for it (bounded).
    let mut after = String::new();
    for _ in 0..300 {
        after = metrics();
        if after.contains("booking_webhook_endpoints{status=\"failed\"} 1") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    for line in [
        "booking_webhook_requests_total{outcome=\"delivered\"} 0",
        "booking_webhook_requests_total{outcome=\"failed\"} 1",
        "booking_webhook_endpoints{status=\"active\"} 0",
        "booking_webhook_endpoints{status=\"failed\"} 1",
    ] {
        assert!(after.lines().any(|l| l == line), "{line} in\n{after}");
    }
    let status = sb.run(&["webhook", "status", "--json"]).json();
    let hook = &status[0];
    assert_eq!(hook["status"], "failed", "{status}");
    assert_eq!(hook["attempts"], 1, "{status}");
    assert_eq!(hook["last_error"], "cannot connect", "{status}");
    assert_eq!(server.terminate(), 0);
}
