//! `booking webhook`: add, list, show the delivery state of, remove and retry
//! webhook endpoints, directly on the database (like the other admin commands).
//! The secret is printed by `add` only; no other command shows it.

use booking_core::WebhookError;
use booking_core::domain::{Webhook, WebhookId};
use booking_http::webhooks::{AddedWebhookDto, WebhookDto};
use serde::Serialize;

use crate::cli::WebhookCmd;
use crate::db::Engine;
use crate::error::{CliError, CliResult};
use crate::out::{self, note, print, table, when};

impl From<WebhookError> for CliError {
    fn from(e: WebhookError) -> Self {
        match e {
            WebhookError::Invalid(e) => CliError::bad_input(e.to_string()),
            WebhookError::NotFound(_) => CliError::not_found(e.to_string()),
            WebhookError::Store(e) => e.into(),
        }
    }
}

fn webhook_id(s: &str) -> CliResult<WebhookId> {
    s.parse().map_err(|_| {
        CliError::bad_input(format!(
            "a webhook id is a positive integer (see `booking webhook list`), got {s:?}"
        ))
    })
}

fn types_text(w: &Webhook) -> String {
    if w.types.is_empty() {
        return "all".to_owned();
    }
    w.types
        .iter()
        .map(|t| t.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

/// One endpoint's delivery state, as `webhook status --json` prints it.
#[derive(Debug, Serialize)]
struct StatusView {
    #[serde(flatten)]
    webhook: WebhookDto,
    /// Events in the feed after its cursor (of any type): an upper bound of what
    /// it still has to receive.
    behind: u64,
}

pub async fn webhook(engine: &Engine, cmd: &WebhookCmd) -> CliResult<()> {
    match cmd {
        WebhookCmd::Add(a) => {
            let types: Vec<&str> = a.types.iter().map(String::as_str).collect();
            let added = engine
                .add_webhook(&a.url, &types, a.secret.as_deref())
                .await?;
            let w = &added.webhook;
            if a.json {
                return out::json(&AddedWebhookDto {
                    webhook: WebhookDto::from(w),
                    secret: added.secret.expose().to_owned(),
                });
            }
            note(&format!(
                "added webhook {} -> {} (types: {}), from event {} on",
                w.id,
                w.url,
                types_text(w),
                w.cursor.0 + 1
            ));
            note("its signing secret follows; it is shown this once:");
            print(&format!("id: {}\nsecret: {}", w.id, added.secret.expose()))
        }
        WebhookCmd::List(f) => {
            let list = engine.webhooks().await?;
            if f.json {
                let dtos: Vec<WebhookDto> = list.iter().map(WebhookDto::from).collect();
                return out::json(&dtos);
            }
            if list.is_empty() {
                note("no webhook endpoints: add one with `booking webhook add URL`");
                return Ok(());
            }
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|w| {
                    vec![
                        w.id.to_string(),
                        w.status.as_str().to_owned(),
                        types_text(w),
                        w.url.to_string(),
                    ]
                })
                .collect();
            print(&table(&["ID", "STATUS", "TYPES", "URL"], &rows))
        }
        WebhookCmd::Status(a) => {
            let list = match &a.id {
                Some(id) => vec![engine.webhook(webhook_id(id)?).await?],
                None => engine.webhooks().await?,
            };
            let last = engine.last_event_id().await?;
            let views: Vec<StatusView> = list
                .iter()
                .map(|w| StatusView {
                    webhook: WebhookDto::from(w),
                    behind: last.0.saturating_sub(w.cursor.0),
                })
                .collect();
            if a.json {
                return out::json(&views);
            }
            if list.is_empty() {
                note("no webhook endpoints: add one with `booking webhook add URL`");
                return Ok(());
            }
            let rows: Vec<Vec<String>> = list
                .iter()
                .zip(&views)
                .map(|(w, v)| {
                    vec![
                        w.id.to_string(),
                        w.status.as_str().to_owned(),
                        w.cursor.0.to_string(),
                        v.behind.to_string(),
                        w.attempts.to_string(),
                        if w.attempts == 0 {
                            "-".to_owned()
                        } else {
                            when(w.next_attempt_at)
                        },
                        w.leased_by.clone().unwrap_or_else(|| "-".to_owned()),
                        w.last_error.clone().unwrap_or_else(|| "-".to_owned()),
                    ]
                })
                .collect();
            print(&table(
                &[
                    "ID",
                    "STATUS",
                    "CURSOR",
                    "BEHIND",
                    "FAILURES",
                    "NEXT TRY",
                    "HELD BY",
                    "LAST ERROR",
                ],
                &rows,
            ))?;
            let failed = list
                .iter()
                .filter(|w| w.status == booking_core::domain::WebhookStatus::Failed)
                .count();
            if failed > 0 {
                note(&format!(
                    "{failed} endpoint(s) failed: nothing is posted to them until \
                     `booking webhook retry ID`"
                ));
            }
            Ok(())
        }
        WebhookCmd::Remove(a) => {
            let id = webhook_id(&a.id)?;
            engine.remove_webhook(id).await?;
            if a.json {
                return out::json(&serde_json::json!({ "removed": id.get() }));
            }
            note(&format!("removed webhook {id}"));
            Ok(())
        }
        WebhookCmd::Retry(a) => {
            let w = engine.retry_webhook(webhook_id(&a.id)?).await?;
            if a.json {
                return out::json(&WebhookDto::from(&w));
            }
            note(&format!(
                "webhook {} is active again; delivery resumes after event {}",
                w.id, w.cursor.0
            ));
            Ok(())
        }
    }
}
