//! Webhook endpoints (`WebhookRepo`): every write is one statement on the one writer
//! connection, so a claim (one conditional `UPDATE` whose sub-select picks the due
//! endpoint) can never hand one endpoint to two deliverers, in this process or in
//! another sharing the file.

use booking_core::StoreError;
use booking_core::domain::{ClaimedWebhook, EventId, NewWebhook, Timestamp, Webhook, WebhookId};
use booking_core::ports::{WebhookFailure, WebhookRepo};

use crate::convert::sqlite_err as db;
use crate::webhook_rows::{claimed_of, event_id_int, types_text, webhook_cols, webhook_of};

use super::{SqliteStore, first, one};

/// Claims the due endpoint with the earliest `next_attempt_at` whose lease lapsed:
/// ?1 now, ?2 the lease's end, ?3 the holder, ?4 the feed's last event id.
const CLAIM_SQL: &str = concat!(
    "UPDATE webhooks SET leased_until = ?2, leased_by = ?3
     WHERE id = (SELECT id FROM webhooks
                 WHERE status = 'active' AND next_attempt_at <= ?1
                   AND (leased_until IS NULL OR leased_until <= ?1) AND cursor < ?4
                 ORDER BY next_attempt_at, id LIMIT 1)
     RETURNING secret, ",
    webhook_cols!()
);

/// The condition of every deliverer's write: ?1 the id, ?2 the holder, ?3 now.
macro_rules! held {
    () => {
        " WHERE id = ?1 AND leased_by = ?2 AND leased_until > ?3"
    };
}

impl WebhookRepo for SqliteStore {
    async fn add_webhook(&self, new: NewWebhook) -> Result<Webhook, StoreError> {
        let rows = sqlx::query(concat!(
            "INSERT INTO webhooks (url, types, secret, cursor, next_attempt_at, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?5) RETURNING ",
            webhook_cols!()
        ))
        .bind(new.url.as_str())
        .bind(types_text(&new.types))
        .bind(new.secret.expose())
        .bind(event_id_int(new.cursor))
        .bind(new.now.as_millis())
        .fetch_all(&self.write)
        .await
        .map_err(db)?;
        webhook_of(&one(rows).map_err(db)?)
    }

    async fn webhooks(&self) -> Result<Vec<Webhook>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            webhook_cols!(),
            " FROM webhooks ORDER BY id"
        ))
        .fetch_all(&self.read)
        .await
        .map_err(db)?;
        rows.iter().map(webhook_of).collect()
    }

    async fn webhook(&self, id: WebhookId) -> Result<Option<Webhook>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            webhook_cols!(),
            " FROM webhooks WHERE id = ?"
        ))
        .bind(id.get())
        .fetch_optional(&self.read)
        .await
        .map_err(db)?;
        row.as_ref().map(webhook_of).transpose()
    }

    async fn remove_webhook(&self, id: WebhookId) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM webhooks WHERE id = ?")
            .bind(id.get())
            .execute(&self.write)
            .await
            .map_err(db)?;
        Ok(done.rows_affected() == 1)
    }

    async fn claim_webhook(
        &self,
        holder: &str,
        now: Timestamp,
        lease_until: Timestamp,
        below: EventId,
    ) -> Result<Option<ClaimedWebhook>, StoreError> {
        let rows = sqlx::query(CLAIM_SQL)
            .bind(now.as_millis())
            .bind(lease_until.as_millis())
            .bind(holder)
            .bind(event_id_int(below))
            .fetch_all(&self.write)
            .await
            .map_err(db)?;
        first(rows).as_ref().map(claimed_of).transpose()
    }

    async fn advance_webhook(
        &self,
        id: WebhookId,
        holder: &str,
        cursor: EventId,
        now: Timestamp,
        lease_until: Timestamp,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(concat!(
            "UPDATE webhooks SET cursor = max(cursor, ?4), attempts = 0, last_error = NULL,
             leased_until = ?5",
            held!()
        ))
        .bind(id.get())
        .bind(holder)
        .bind(now.as_millis())
        .bind(event_id_int(cursor))
        .bind(lease_until.as_millis())
        .execute(&self.write)
        .await
        .map_err(db)?;
        Ok(done.rows_affected() == 1)
    }

    async fn record_webhook_failure(
        &self,
        id: WebhookId,
        holder: &str,
        now: Timestamp,
        failure: WebhookFailure,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(concat!(
            "UPDATE webhooks SET attempts = attempts + 1, last_error = ?4,
             next_attempt_at = coalesce(?5, next_attempt_at),
             status = CASE WHEN ?5 IS NULL THEN 'failed' ELSE status END,
             leased_until = NULL, leased_by = NULL",
            held!()
        ))
        .bind(id.get())
        .bind(holder)
        .bind(now.as_millis())
        .bind(failure.error)
        .bind(failure.retry_at.map(Timestamp::as_millis))
        .execute(&self.write)
        .await
        .map_err(db)?;
        Ok(done.rows_affected() == 1)
    }

    async fn release_webhook(
        &self,
        id: WebhookId,
        holder: &str,
        now: Timestamp,
        next_attempt_at: Timestamp,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(concat!(
            "UPDATE webhooks SET next_attempt_at = ?4, leased_until = NULL, leased_by = NULL",
            held!()
        ))
        .bind(id.get())
        .bind(holder)
        .bind(now.as_millis())
        .bind(next_attempt_at.as_millis())
        .execute(&self.write)
        .await
        .map_err(db)?;
        Ok(done.rows_affected() == 1)
    }

    async fn reset_webhook(
        &self,
        id: WebhookId,
        now: Timestamp,
    ) -> Result<Option<Webhook>, StoreError> {
        let rows = sqlx::query(concat!(
            "UPDATE webhooks SET status = 'active', attempts = 0, last_error = NULL,
             next_attempt_at = ?2 WHERE id = ?1 RETURNING ",
            webhook_cols!()
        ))
        .bind(id.get())
        .bind(now.as_millis())
        .fetch_all(&self.write)
        .await
        .map_err(db)?;
        first(rows).as_ref().map(webhook_of).transpose()
    }

    async fn lowest_webhook_cursor(&self) -> Result<Option<EventId>, StoreError> {
        let low: Option<i64> =
            sqlx::query_scalar("SELECT min(cursor) FROM webhooks WHERE status = 'active'")
                .fetch_one(&self.read)
                .await
                .map_err(db)?;
        low.map(|n| crate::convert::u64_of(n, "webhook cursor").map(EventId))
            .transpose()
    }
}
