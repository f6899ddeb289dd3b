//! Webhooks (decision record 0013): the operator's management of endpoints, and the
//! steps a deliverer takes (claim an endpoint, read its next events, record each
//! success or the failure). The deliverer itself, which sends the requests, is at
//! the edge (booking-http); every rule it follows is here or in
//! [`crate::domain::RetryPolicy`].
//!
//! Delivery is at least once and in event order per endpoint: the cursor moves
//! only after the receiver answered 2xx, so a deliverer cut off (a crash, a lost
//! lease) leaves the events after the cursor to be sent again, the one in flight
//! included. A receiver deduplicates by event id.

use std::time::Duration;

use super::Booking;
use crate::clock::Clock;
use crate::domain::{
    ClaimedWebhook, Event, EventId, EventType, NewWebhook, RetryPolicy, Webhook, WebhookId,
    WebhookSecret, WebhookUrl, WebhookValueError, parse_event_types,
};
use crate::ports::{Store, StoreError, WebhookFailure};

/// Why a webhook operation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    /// A bad URL, secret or event type.
    #[error(transparent)]
    Invalid(#[from] WebhookValueError),
    /// No endpoint has that id.
    #[error("no webhook endpoint {0}")]
    NotFound(WebhookId),
    /// Storage failure.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A new endpoint and its secret, which is shown this once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddedWebhook {
    /// The endpoint as stored.
    pub webhook: Webhook,
    /// Its signing secret (generated when none was given).
    pub secret: WebhookSecret,
}

/// An endpoint a deliverer holds, and the feed's last id when it was claimed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The endpoint, its secret and the lease.
    pub claimed: ClaimedWebhook,
    /// Who holds it.
    pub holder: String,
    /// The feed's last event id, read before the claim.
    pub last: EventId,
}

impl Delivery {
    /// The endpoint's id.
    pub fn id(&self) -> WebhookId {
        self.claimed.webhook.id
    }
}

/// What [`Booking::webhook_next_events`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NextEvents {
    /// Up to the limit asked, of the endpoint's types, after its cursor, in id order.
    pub events: Vec<Event>,
    /// Where the cursor may move once every event of `events` was delivered: the
    /// last one's id, or the feed's last id when fewer than the limit came back
    /// (nothing of the endpoint's types lies between).
    pub done_up_to: EventId,
}

impl<S: Store, C: Clock> Booking<S, C> {
    /// Adds an endpoint that receives the events of `types` (names such as
    /// `hold.created`; none, `*` or `all`: every type) committed from now on (after
    /// the feed's last id). `secret` signs its requests; when `None` one is
    /// generated. The answer carries the secret, which no other call returns.
    ///
    /// # Errors
    /// [`WebhookError::Invalid`] for a bad URL, secret or type;
    /// [`WebhookError::Store`].
    pub async fn add_webhook(
        &self,
        url: &str,
        types: &[&str],
        secret: Option<&str>,
    ) -> Result<AddedWebhook, WebhookError> {
        let url = WebhookUrl::parse(url)?;
        let types: Vec<EventType> = parse_event_types(types.iter().copied())?;
        let secret = match secret {
            Some(s) => WebhookSecret::new(s)?,
            None => WebhookSecret::generate(),
        };
        let cursor = self.store.last_event_id().await?;
        let webhook = self
            .store
            .add_webhook(NewWebhook {
                url,
                types,
                secret: secret.clone(),
                cursor,
                now: self.now(),
            })
            .await?;
        Ok(AddedWebhook { webhook, secret })
    }

    /// Every endpoint, by id (no secrets).
    ///
    /// # Errors
    /// Only storage failures.
    pub async fn webhooks(&self) -> Result<Vec<Webhook>, StoreError> {
        self.store.webhooks().await
    }

    /// One endpoint.
    ///
    /// # Errors
    /// [`WebhookError::NotFound`], [`WebhookError::Store`].
    pub async fn webhook(&self, id: WebhookId) -> Result<Webhook, WebhookError> {
        self.store
            .webhook(id)
            .await?
            .ok_or(WebhookError::NotFound(id))
    }

    /// Removes an endpoint; nothing more is sent to it (a request in flight
    /// finishes, and its holder's next write is refused).
    ///
    /// # Errors
    /// [`WebhookError::NotFound`], [`WebhookError::Store`].
    pub async fn remove_webhook(&self, id: WebhookId) -> Result<(), WebhookError> {
        if self.store.remove_webhook(id).await? {
            Ok(())
        } else {
            Err(WebhookError::NotFound(id))
        }
    }

    /// Makes an endpoint active again with no failures and due now (a failed one,
    /// or one backing off); delivery resumes after its cursor.
    ///
    /// # Errors
    /// [`WebhookError::NotFound`], [`WebhookError::Store`].
    pub async fn retry_webhook(&self, id: WebhookId) -> Result<Webhook, WebhookError> {
        self.store
            .reset_webhook(id, self.now())
            .await?
            .ok_or(WebhookError::NotFound(id))
    }

    /// The lowest cursor of the active endpoints: retention keeps the events
    /// above it.
    ///
    /// # Errors
    /// Only storage failures.
    pub async fn lowest_webhook_cursor(&self) -> Result<Option<EventId>, StoreError> {
        self.store.lowest_webhook_cursor().await
    }

    /// A deliverer's first step: claims an endpoint that is due and has events
    /// after its cursor, for `lease`, as `holder` (a name unique to this
    /// deliverer). `None` when there is none.
    ///
    /// # Errors
    /// Only storage failures.
    pub async fn claim_webhook(
        &self,
        holder: &str,
        lease: Duration,
    ) -> Result<Option<Delivery>, StoreError> {
        let last = self.store.last_event_id().await?;
        let now = self.now();
        let claimed = self
            .store
            .claim_webhook(holder, now, now.plus(lease), last)
            .await?;
        Ok(claimed.map(|claimed| Delivery {
            claimed,
            holder: holder.to_owned(),
            last,
        }))
    }

    /// Up to `limit` events to send next to a claimed endpoint: of its types, after
    /// its cursor, in id order.
    ///
    /// # Errors
    /// Only storage failures.
    pub async fn webhook_next_events(
        &self,
        delivery: &Delivery,
        limit: u32,
    ) -> Result<NextEvents, StoreError> {
        let hook = &delivery.claimed.webhook;
        let events = self
            .store
            .events_after(hook.cursor, limit, &hook.types)
            .await?;
        let done_up_to = match events.last() {
            Some(e) if events.len() >= limit as usize => e.id,
            Some(e) => e.id.max(delivery.last),
            None => hook.cursor.max(delivery.last),
        };
        Ok(NextEvents { events, done_up_to })
    }

    /// Records that the endpoint answered 2xx for everything up to `cursor` and
    /// extends the lease by `lease`. `false` when this deliverer no longer holds
    /// the endpoint (its lease lapsed and another took it, or it was removed): it
    /// must stop.
    ///
    /// # Errors
    /// Only storage failures.
    pub async fn webhook_delivered(
        &self,
        delivery: &mut Delivery,
        cursor: EventId,
        lease: Duration,
    ) -> Result<bool, StoreError> {
        let now = self.now();
        let held = self
            .store
            .advance_webhook(
                delivery.id(),
                &delivery.holder,
                cursor,
                now,
                now.plus(lease),
            )
            .await?;
        if held {
            let hook = &mut delivery.claimed.webhook;
            hook.cursor = hook.cursor.max(cursor);
            hook.attempts = 0;
            hook.last_error = None;
            hook.leased_until = Some(now.plus(lease));
        }
        Ok(held)
    }

    /// Records a failed request (an answer other than 2xx, a timeout, a refused
    /// connection) and gives the endpoint up: it is tried again after the
    /// policy's backoff, or marked failed past its attempts. Returns the time of
    /// the next attempt (`None`: now failed). The error text is shown to operators:
    /// it must not hold a secret.
    ///
    /// # Errors
    /// Only storage failures.
    pub async fn webhook_failed(
        &self,
        delivery: &Delivery,
        error: String,
        policy: &RetryPolicy,
    ) -> Result<Option<crate::domain::Timestamp>, StoreError> {
        let now = self.now();
        let attempts = delivery.claimed.webhook.attempts.saturating_add(1);
        let retry_at = policy.after_failure(attempts, now, delivery.id());
        self.store
            .record_webhook_failure(
                delivery.id(),
                &delivery.holder,
                now,
                WebhookFailure { error, retry_at },
            )
            .await?;
        Ok(retry_at)
    }

    /// Gives up a claimed endpoint without a failure (nothing more to send, or the
    /// deliverer is stopping); it is due again at once.
    ///
    /// # Errors
    /// Only storage failures.
    pub async fn release_webhook(&self, delivery: &Delivery) -> Result<bool, StoreError> {
        let now = self.now();
        self.store
            .release_webhook(delivery.id(), &delivery.holder, now, now)
            .await
    }
}
