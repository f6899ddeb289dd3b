//! The webhook port (`WebhookRepo`): endpoints, the lease that lets one deliverer at
//! a time post to an endpoint, the cursor only its holder moves, failures and
//! retries.

use std::collections::BTreeSet;
use std::sync::Arc;

use booking_core::Store;
use booking_core::domain::{
    EventId, EventType, NewWebhook, Timestamp, UserId, WebhookId, WebhookSecret, WebhookStatus,
    WebhookUrl,
};
use booking_core::ports::WebhookFailure;

use crate::T0;

use super::SEC;

fn new_hook(url: &str, types: Vec<EventType>, cursor: u64, now: Timestamp) -> NewWebhook {
    NewWebhook {
        url: WebhookUrl::parse(url).expect("url"),
        types,
        secret: WebhookSecret::new(&format!("secret-number-{}", url.len() + 1000)).expect("secret"),
        cursor: EventId(cursor),
        now,
    }
}

fn at(secs: u64) -> Timestamp {
    T0.plus(SEC * u32::try_from(secs).expect("small"))
}

const FAR: EventId = EventId(u64::MAX >> 2);

/// Endpoints are added with fresh ids (never reused), listed by id without their
/// secret, read one by one and removed.
pub async fn port_webhook_add_list_remove<S: Store>(store: S) {
    let a = store
        .add_webhook(new_hook(
            "http://127.0.0.1:9/a",
            vec![EventType::HoldCreated, EventType::PaymentCompleted],
            7,
            T0,
        ))
        .await
        .expect("add");
    assert_eq!(a.url.as_str(), "http://127.0.0.1:9/a");
    assert_eq!(
        a.types,
        vec![EventType::HoldCreated, EventType::PaymentCompleted]
    );
    assert_eq!(a.cursor, EventId(7));
    assert_eq!(
        (a.attempts, a.status, a.next_attempt_at, a.created_at),
        (0, WebhookStatus::Active, T0, T0)
    );
    assert_eq!(
        (a.last_error.clone(), a.leased_until, a.leased_by.clone()),
        (None, None, None)
    );
    let b = store
        .add_webhook(new_hook("https://example.com/b", vec![], 0, T0))
        .await
        .expect("add");
    assert!(b.id > a.id);
    assert!(b.types.is_empty(), "every type");
    assert_eq!(
        store.webhooks().await.expect("list"),
        vec![a.clone(), b.clone()]
    );
    assert_eq!(store.webhook(a.id).await.expect("one"), Some(a.clone()));
    assert!(store.remove_webhook(a.id).await.expect("remove"));
    assert!(!store.remove_webhook(a.id).await.expect("again"));
    assert_eq!(store.webhook(a.id).await.expect("one"), None);
    let c = store
        .add_webhook(new_hook("http://localhost/c", vec![], 0, T0))
        .await
        .expect("add");
    assert!(c.id > b.id, "ids are never reused");
    assert_eq!(store.webhooks().await.expect("list"), vec![b, c.clone()]);
    let unknown = WebhookId::new(c.id.get() + 100).expect("id");
    assert_eq!(store.webhook(unknown).await.expect("none"), None);
    assert_eq!(store.reset_webhook(unknown, T0).await.expect("none"), None);
}

/// A claim takes the due, active, unleased endpoint with the earliest
/// `next_attempt_at` (then the lowest id) that has events after its cursor, gives its
/// secret, and leases it; a lapsed lease can be claimed by another holder.
pub async fn port_webhook_claim_picks_due_unleased_endpoints<S: Store>(store: S) {
    let a = store
        .add_webhook(new_hook("http://h/a", vec![], 10, T0))
        .await
        .expect("add");
    let b = store
        .add_webhook(new_hook("http://h/b", vec![], 3, T0))
        .await
        .expect("add");
    // Nothing after either cursor: nothing to claim.
    assert_eq!(
        store
            .claim_webhook("x", T0, at(30), EventId(3))
            .await
            .expect("claim"),
        None
    );
    // Only b has events below 10.
    let got = store
        .claim_webhook("x", T0, at(30), EventId(10))
        .await
        .expect("claim")
        .expect("b");
    assert_eq!(got.webhook.id, b.id);
    assert_eq!(got.secret.expose(), "secret-number-1010");
    assert_eq!(got.webhook.leased_by.as_deref(), Some("x"));
    assert_eq!(got.webhook.leased_until, Some(at(30)));
    // a is next (b is leased); then none.
    let got = store
        .claim_webhook("y", T0, at(30), FAR)
        .await
        .expect("claim")
        .expect("a");
    assert_eq!(got.webhook.id, a.id);
    assert_eq!(
        store
            .claim_webhook("z", at(29), at(60), FAR)
            .await
            .expect("claim"),
        None
    );
    // At the lease's end both can be claimed again, by another holder, a first
    // (same next_attempt_at, lower id).
    let got = store
        .claim_webhook("z", at(30), at(60), FAR)
        .await
        .expect("claim")
        .expect("a");
    assert_eq!(
        (got.webhook.id, got.webhook.leased_by.as_deref()),
        (a.id, Some("z"))
    );
    // The former holder lost it: its writes change nothing.
    assert!(
        !store
            .advance_webhook(a.id, "y", EventId(50), at(30), at(90))
            .await
            .expect("adv")
    );
    assert!(
        !store
            .release_webhook(a.id, "y", at(30), at(30))
            .await
            .expect("release")
    );
    let failure = WebhookFailure {
        error: "500".into(),
        retry_at: Some(at(40)),
    };
    assert!(
        !store
            .record_webhook_failure(a.id, "y", at(30), failure)
            .await
            .expect("fail")
    );
    assert_eq!(
        store.webhook(a.id).await.expect("one").expect("a").cursor,
        EventId(10)
    );
    // A backed-off endpoint is not due before its time; a failed one never.
    let failure = WebhookFailure {
        error: "timeout".into(),
        retry_at: Some(at(100)),
    };
    assert!(
        store
            .record_webhook_failure(a.id, "z", at(31), failure)
            .await
            .expect("fail")
    );
    let got = store
        .claim_webhook("w", at(31), at(61), FAR)
        .await
        .expect("claim")
        .expect("b, lapsed");
    assert_eq!(got.webhook.id, b.id);
    let failure = WebhookFailure {
        error: "gone".into(),
        retry_at: None,
    };
    assert!(
        store
            .record_webhook_failure(b.id, "w", at(32), failure)
            .await
            .expect("fail")
    );
    assert_eq!(
        store
            .claim_webhook("w", at(99), at(129), FAR)
            .await
            .expect("claim"),
        None
    );
    let got = store
        .claim_webhook("w", at(100), at(130), FAR)
        .await
        .expect("claim")
        .expect("a, due");
    assert_eq!(got.webhook.id, a.id);
    assert_eq!(got.webhook.attempts, 1);
    assert_eq!(got.webhook.last_error.as_deref(), Some("timeout"));
    // Long after: a's lease lapsed, so it is claimed again; b, failed, never is.
    let got = store
        .claim_webhook("v", at(1000), at(1030), FAR)
        .await
        .expect("claim")
        .expect("a, lapsed");
    assert_eq!(got.webhook.id, a.id);
    assert_eq!(
        store
            .claim_webhook("u", at(1000), at(1030), FAR)
            .await
            .expect("claim"),
        None
    );
}

/// Only the holder moves the cursor, only forward, and a success clears the
/// failures; a failure counts, backs off or fails the endpoint and drops the
/// lease; a reset makes a failed endpoint active and due again.
pub async fn port_webhook_writes_need_the_lease<S: Store>(store: S) {
    let a = store
        .add_webhook(new_hook("http://h/a", vec![EventType::HoldExpired], 0, T0))
        .await
        .expect("add");
    store
        .claim_webhook("me", T0, at(30), FAR)
        .await
        .expect("claim")
        .expect("a");
    assert!(
        !store
            .advance_webhook(a.id, "other", EventId(5), at(1), at(31))
            .await
            .expect("adv")
    );
    assert!(
        store
            .advance_webhook(a.id, "me", EventId(5), at(1), at(31))
            .await
            .expect("adv")
    );
    assert!(
        store
            .advance_webhook(a.id, "me", EventId(3), at(2), at(32))
            .await
            .expect("adv")
    );
    let w = store.webhook(a.id).await.expect("one").expect("a");
    assert_eq!(w.cursor, EventId(5), "never back");
    assert_eq!(w.leased_until, Some(at(32)), "the lease is extended");
    // Lapsed at 32: refused even for the holder, until it claims again.
    assert!(
        !store
            .advance_webhook(a.id, "me", EventId(9), at(32), at(62))
            .await
            .expect("adv")
    );
    store
        .claim_webhook("me", at(32), at(62), FAR)
        .await
        .expect("claim")
        .expect("a");
    for n in 1..=3u32 {
        let failure = WebhookFailure {
            error: format!("HTTP 500 #{n}"),
            retry_at: Some(at(40)),
        };
        assert!(
            store
                .record_webhook_failure(a.id, "me", at(33), failure)
                .await
                .expect("fail")
        );
        let w = store.webhook(a.id).await.expect("one").expect("a");
        assert_eq!(
            (w.attempts, w.leased_by.clone(), w.leased_until),
            (n, None, None)
        );
        assert_eq!(w.next_attempt_at, at(40));
        assert_eq!(w.status, WebhookStatus::Active);
        store
            .claim_webhook("me", at(40), at(70), FAR)
            .await
            .expect("claim")
            .expect("a");
    }
    let failure = WebhookFailure {
        error: "HTTP 410".into(),
        retry_at: None,
    };
    assert!(
        store
            .record_webhook_failure(a.id, "me", at(41), failure)
            .await
            .expect("fail")
    );
    let w = store.webhook(a.id).await.expect("one").expect("a");
    assert_eq!((w.status, w.attempts), (WebhookStatus::Failed, 4));
    assert_eq!(w.last_error.as_deref(), Some("HTTP 410"));
    assert_eq!(w.cursor, EventId(5));
    let w = store
        .reset_webhook(a.id, at(50))
        .await
        .expect("reset")
        .expect("a");
    assert_eq!(
        (w.status, w.attempts, w.last_error.clone()),
        (WebhookStatus::Active, 0, None)
    );
    assert_eq!((w.next_attempt_at, w.cursor), (at(50), EventId(5)));
    store
        .claim_webhook("me", at(50), at(80), FAR)
        .await
        .expect("claim")
        .expect("a");
    let failure = WebhookFailure {
        error: "HTTP 503".into(),
        retry_at: Some(at(60)),
    };
    assert!(
        store
            .record_webhook_failure(a.id, "me", at(51), failure)
            .await
            .expect("fail")
    );
    store
        .claim_webhook("me", at(60), at(90), FAR)
        .await
        .expect("claim")
        .expect("a");
    assert!(
        store
            .advance_webhook(a.id, "me", EventId(6), at(61), at(91))
            .await
            .expect("adv")
    );
    let w = store.webhook(a.id).await.expect("one").expect("a");
    assert_eq!(
        (w.attempts, w.last_error.clone(), w.cursor),
        (0, None, EventId(6))
    );
    assert!(
        store
            .release_webhook(a.id, "me", at(62), at(70))
            .await
            .expect("release")
    );
    let w = store.webhook(a.id).await.expect("one").expect("a");
    assert_eq!(
        (w.leased_by, w.leased_until, w.next_attempt_at),
        (None, None, at(70))
    );
    // A removed endpoint's holder finds its writes refused.
    store
        .claim_webhook("me", at(70), at(100), FAR)
        .await
        .expect("claim")
        .expect("a");
    assert!(store.remove_webhook(a.id).await.expect("remove"));
    assert!(
        !store
            .advance_webhook(a.id, "me", EventId(9), at(71), at(101))
            .await
            .expect("adv")
    );
}

/// Retention keeps what an active endpoint has not had: the lowest cursor of the
/// active endpoints, none without any.
pub async fn port_webhook_lowest_cursor_of_active_endpoints<S: Store>(store: S) {
    assert_eq!(store.lowest_webhook_cursor().await.expect("low"), None);
    let a = store
        .add_webhook(new_hook("http://h/a", vec![], 4, T0))
        .await
        .expect("add");
    store
        .add_webhook(new_hook("http://h/b", vec![], 9, T0))
        .await
        .expect("add");
    assert_eq!(
        store.lowest_webhook_cursor().await.expect("low"),
        Some(EventId(4))
    );
    store
        .claim_webhook("me", T0, at(30), FAR)
        .await
        .expect("claim")
        .expect("a");
    let failure = WebhookFailure {
        error: "x".into(),
        retry_at: None,
    };
    assert!(
        store
            .record_webhook_failure(a.id, "me", T0, failure)
            .await
            .expect("fail")
    );
    assert_eq!(
        store.lowest_webhook_cursor().await.expect("low"),
        Some(EventId(9))
    );
    store
        .reset_webhook(a.id, T0)
        .await
        .expect("reset")
        .expect("a");
    assert_eq!(
        store.lowest_webhook_cursor().await.expect("low"),
        Some(EventId(4))
    );
}

/// Concurrent claims (real tasks, each on its own connection where the backend has
/// several) never hand one endpoint to two holders: with 6 due endpoints and 32
/// claims at once, exactly 6 claims get one, all different.
pub async fn port_webhook_concurrent_claims_get_distinct_endpoints<S: Store>(store: S) {
    let store = Arc::new(store);
    let mut ids = BTreeSet::new();
    for i in 0..6 {
        let w = store
            .add_webhook(new_hook(&format!("http://h/{i}"), vec![], 0, T0))
            .await
            .expect("add");
        ids.insert(w.id);
    }
    let start = Arc::new(tokio::sync::Barrier::new(32));
    let mut tasks = Vec::new();
    for i in 0..32 {
        let (store, start) = (Arc::clone(&store), Arc::clone(&start));
        tasks.push(tokio::spawn(async move {
            start.wait().await;
            store
                .claim_webhook(&format!("holder-{i}"), T0, at(30), FAR)
                .await
                .expect("claim")
                .map(|c| (c.webhook.id, c.webhook.leased_by))
        }));
    }
    let mut won = Vec::new();
    for t in tasks {
        if let Some(got) = t.await.expect("task") {
            won.push(got);
        }
    }
    assert_eq!(won.len(), 6, "one claim per endpoint: {won:?}");
    let claimed: BTreeSet<WebhookId> = won.iter().map(|(id, _)| *id).collect();
    assert_eq!(claimed, ids);
    for (id, holder) in won {
        let w = store.webhook(id).await.expect("one").expect("there");
        assert_eq!(w.leased_by, holder, "the row names the claim that won it");
    }
}

/// Retention: the sweeper prunes old events only up to the lowest cursor of the
/// active endpoints; a failed endpoint does not hold the feed back.
pub async fn port_webhook_retention_keeps_what_an_endpoint_has_not_had<S: Store>(store: S) {
    let kit = crate::Kit::new(store);
    let b = &kit.booking;
    let issue = |n: usize| async move {
        for _ in 0..n {
            b.issue_token(UserId::random()).await.expect("issue");
        }
        b.relay_events().await.expect("relay");
    };
    issue(4).await;
    let a = b
        .add_webhook("http://h/a", &[], None)
        .await
        .expect("add")
        .webhook;
    assert_eq!(
        a.cursor,
        EventId(4),
        "a new endpoint starts at the feed's end"
    );
    issue(4).await;
    // An endpoint that has had events 1 and 2 only.
    let lagging = b
        .store()
        .add_webhook(new_hook("http://h/c", vec![], 2, kit.clock_now()))
        .await
        .expect("add");
    kit.advance(b.config().event_retention + SEC);
    let report = b.sweep().await.expect("sweep");
    assert_eq!(report.n_events_pruned, 2, "events 1 and 2 only");
    let left = b.events_after(EventId(0), 100, &[]).await.expect("feed");
    assert_eq!(left.first().map(|e| e.id), Some(EventId(3)));

    // Once the lagging endpoint has failed, the feed goes up to a's cursor.
    let now = kit.clock_now();
    let until = now.plus(SEC * 30);
    let first = b
        .store()
        .claim_webhook("u", now, until, FAR)
        .await
        .expect("claim");
    let second = b
        .store()
        .claim_webhook("u", now, until, FAR)
        .await
        .expect("claim");
    let ids: BTreeSet<WebhookId> = [first, second]
        .into_iter()
        .flatten()
        .map(|c| c.webhook.id)
        .collect();
    assert_eq!(ids, BTreeSet::from([a.id, lagging.id]));
    let failure = WebhookFailure {
        error: "x".into(),
        retry_at: None,
    };
    assert!(
        b.store()
            .record_webhook_failure(lagging.id, "u", now, failure)
            .await
            .expect("fail")
    );
    let report = b.sweep().await.expect("sweep");
    assert_eq!(
        report.n_events_pruned, 2,
        "events 3 and 4, up to a's cursor"
    );
    let left = b.events_after(EventId(0), 100, &[]).await.expect("feed");
    assert_eq!(left.first().map(|e| e.id), Some(EventId(5)));
    assert_eq!(left.len(), 4);
}
