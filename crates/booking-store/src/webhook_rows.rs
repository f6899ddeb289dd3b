//! Webhook endpoint rows to domain values, once for both dialects (the adapters'
//! statements are in `sqlite/webhooks.rs` and `postgres/webhooks.rs`).

use std::str::FromStr;

use booking_core::StoreError;
use booking_core::domain::{
    ClaimedWebhook, EventId, EventType, Webhook, WebhookId, WebhookSecret, WebhookStatus,
    WebhookUrl,
};

use crate::convert as cv;
use crate::rows::StoredRow;

/// Every column of `webhooks` but the secret.
macro_rules! webhook_cols {
    () => {
        "id, url, types, cursor, attempts, next_attempt_at, status, last_error, \
         leased_until, leased_by, created_at"
    };
}
pub(crate) use webhook_cols;

/// How a list of types is stored: comma-separated names, '' for every type.
pub(crate) fn types_text(types: &[EventType]) -> String {
    types
        .iter()
        .map(|t| t.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

/// An event id as stored (BIGINT).
pub(crate) fn event_id_int(id: EventId) -> i64 {
    cv::i64_of(id.0)
}

/// A row in the shape of [`webhook_cols`].
pub(crate) fn webhook_of(r: &impl StoredRow) -> Result<Webhook, StoreError> {
    let url = r.text("url")?;
    let types = r.text("types")?;
    let types = types
        .split(',')
        .filter(|t| !t.is_empty())
        .map(|t| EventType::from_str(t).map_err(|_| cv::corrupt("webhook type", t)))
        .collect::<Result<Vec<_>, _>>()?;
    let status = r.text("status")?;
    Ok(Webhook {
        id: WebhookId::new(r.int("id")?).map_err(|e| cv::corrupt("webhook id", e))?,
        url: WebhookUrl::parse(&url).map_err(|e| cv::corrupt("webhook url", e))?,
        types,
        cursor: EventId(cv::u64_of(r.int("cursor")?, "webhook cursor")?),
        attempts: u32::try_from(r.int("attempts")?)
            .map_err(|e| cv::corrupt("webhook attempts", e))?,
        next_attempt_at: cv::ts(r.int("next_attempt_at")?),
        status: WebhookStatus::from_str(&status).map_err(|e| cv::corrupt("webhook status", e))?,
        last_error: r.opt_text("last_error")?,
        leased_until: r.opt_int("leased_until")?.map(cv::ts),
        leased_by: r.opt_text("leased_by")?,
        created_at: cv::ts(r.int("created_at")?),
    })
}

/// A claimed row: [`webhook_cols`] and `secret`.
pub(crate) fn claimed_of(r: &impl StoredRow) -> Result<ClaimedWebhook, StoreError> {
    Ok(ClaimedWebhook {
        webhook: webhook_of(r)?,
        // The error names the column, never the value.
        secret: WebhookSecret::new(&r.text("secret")?)
            .map_err(|_| cv::corrupt("webhook secret", "not a valid secret"))?,
    })
}
