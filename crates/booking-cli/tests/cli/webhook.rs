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
