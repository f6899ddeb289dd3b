//! The webhook endpoints' admin API under `/v1/admin/webhooks` (admin key):
//! add (the answer is the only one that shows the secret), list, remove, retry.
//! The deliverer that posts the events is [`crate::deliver`].

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use booking_core::domain::{Timestamp, Webhook, WebhookId};
use booking_core::{Clock, Store, WebhookError};
use serde::{Deserialize, Serialize};

use crate::AppState;
use crate::admin::AdminKey;
use crate::error::{ApiError, BadAdminKey, BodyErrors, CommonErrors, ErrorBody};
use crate::extract::{Json, Path};

type ApiResult<T> = Result<T, ApiError>;

impl From<WebhookError> for ApiError {
    fn from(e: WebhookError) -> Self {
        match e {
            WebhookError::Invalid(e) => ApiError::unprocessable("invalid_input", e.to_string()),
            WebhookError::NotFound(id) => {
                ApiError::not_found("no_such_webhook", format!("no webhook endpoint {id}"))
            }
            WebhookError::Store(e) => e.into(),
        }
    }
}

fn time(t: Timestamp) -> String {
    t.to_string()
}

/// `POST /v1/admin/webhooks`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewWebhookDto {
    /// Where to post: `http://` or `https://`, with a host, no user name or password.
    #[schema(example = "https://mail.example.com/booking-events")]
    pub url: String,
    /// The event types to deliver (`hold.created`, `payment.completed`, ...);
    /// missing, empty or `["*"]`: every type.
    #[serde(default)]
    pub types: Vec<String>,
    /// The signing secret (16 to 200 visible ASCII characters); generated when
    /// missing. Returned in this answer only.
    #[serde(default)]
    pub secret: Option<String>,
}

/// A webhook endpoint and its delivery state (never its secret).
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct WebhookDto {
    /// Its id.
    pub id: i64,
    /// Where events are posted.
    pub url: String,
    /// The event types delivered; empty: every type.
    pub types: Vec<String>,
    /// `active` or `failed` (gave up after too many failures in a row: retry it).
    pub status: String,
    /// The last event id delivered (or skipped); the next request carries the first
    /// event of its types after it.
    pub cursor: u64,
    /// Failures in a row since the last success.
    pub attempts: u32,
    /// Not tried before this time (RFC 3339).
    pub next_attempt_at: String,
    /// The last failure (a status code, a timeout), if any since the last success.
    pub last_error: Option<String>,
    /// Which server instance's deliverer holds it, and until when.
    pub leased_by: Option<String>,
    /// RFC 3339, with `leased_by`.
    pub leased_until: Option<String>,
    /// When it was added (RFC 3339).
    pub created_at: String,
}

impl From<&Webhook> for WebhookDto {
    fn from(w: &Webhook) -> Self {
        WebhookDto {
            id: w.id.get(),
            url: w.url.to_string(),
            types: w.types.iter().map(|t| t.as_str().to_owned()).collect(),
            status: w.status.as_str().to_owned(),
            cursor: w.cursor.0,
            attempts: w.attempts,
            next_attempt_at: time(w.next_attempt_at),
            last_error: w.last_error.clone(),
            leased_by: w.leased_by.clone(),
            leased_until: w.leased_until.map(time),
            created_at: time(w.created_at),
        }
    }
}

/// The answer of `POST /v1/admin/webhooks`: the endpoint and its secret, shown
/// this once.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct AddedWebhookDto {
    /// The endpoint.
    #[serde(flatten)]
    pub webhook: WebhookDto,
    /// The signing secret: keep it; no other answer shows it.
    pub secret: String,
}

/// `GET /v1/admin/webhooks`.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct WebhooksDto {
    /// Every endpoint, by id.
    pub webhooks: Vec<WebhookDto>,
}

fn webhook_id(raw: &str) -> ApiResult<WebhookId> {
    raw.parse().map_err(|_| {
        ApiError::bad_request(format!("a webhook id is a positive integer, got {raw:?}"))
    })
}

#[utoipa::path(
    post,
    path = "/v1/admin/webhooks",
    tag = "admin",
    summary = "Add a webhook endpoint: signed POSTs of the events of its types, in order",
    description = "Each request's body is one event (`{\"id\", \"type\", \"at\", \"data\"}`, as \
                   in the feed) and carries `X-Booking-Signature: t=<unix seconds>,v1=<hex>`, the \
                   HMAC-SHA256 of `<t>.<body>` under the secret. Delivery is at least once, in \
                   event order; a non-2xx answer or a timeout is retried with exponential backoff \
                   and jitter, and after 12 failures in a row the endpoint is `failed`. The \
                   endpoint receives the events committed after it was added.",
    request_body = NewWebhookDto,
    security(("admin_key" = [])),
    responses(
        (status = 201, description = "The endpoint, with its secret (shown only here)", body = AddedWebhookDto),
        (status = 400, description = "Malformed body, parameter or header (`bad_request`)", body = ErrorBody),
        BadAdminKey,
        (status = 403, description = "The server has no admin key (`admin_disabled`)", body = ErrorBody),
        (status = 422, description = "A bad URL, event type or secret (`invalid_input`)", body = ErrorBody),
        BodyErrors,
        CommonErrors
    )
)]
pub async fn add<S: Store + Clone, C: Clock>(
    State(st): State<AppState<S, C>>,
    _: AdminKey,
    Json(req): Json<NewWebhookDto>,
) -> ApiResult<Response> {
    let types: Vec<&str> = req.types.iter().map(String::as_str).collect();
    let added = st
        .booking
        .add_webhook(&req.url, &types, req.secret.as_deref())
        .await?;
    let body = AddedWebhookDto {
        webhook: WebhookDto::from(&added.webhook),
        secret: added.secret.expose().to_owned(),
    };
    Ok((StatusCode::CREATED, axum::Json(body)).into_response())
}

#[utoipa::path(
    get,
    path = "/v1/admin/webhooks",
    tag = "admin",
    summary = "Every webhook endpoint and its delivery state (no secrets)",
    security(("admin_key" = [])),
    responses(
        (status = 200, description = "The endpoints", body = WebhooksDto),
        BadAdminKey,
        (status = 403, description = "The server has no admin key (`admin_disabled`)", body = ErrorBody),
        CommonErrors
    )
)]
pub async fn list<S: Store + Clone, C: Clock>(
    State(st): State<AppState<S, C>>,
    _: AdminKey,
) -> ApiResult<Response> {
    let hooks = st.booking.webhooks().await?;
    let body = WebhooksDto {
        webhooks: hooks.iter().map(WebhookDto::from).collect(),
    };
    Ok(axum::Json(body).into_response())
}

#[utoipa::path(
    delete,
    path = "/v1/admin/webhooks/{id}",
    tag = "admin",
    summary = "Remove a webhook endpoint",
    params(("id" = i64, Path, minimum = 1, description = "The endpoint's id")),
    security(("admin_key" = [])),
    responses(
        (status = 204, description = "Removed"),
        (status = 400, description = "Malformed id (`bad_request`)", body = ErrorBody),
        BadAdminKey,
        (status = 403, description = "The server has no admin key (`admin_disabled`)", body = ErrorBody),
        (status = 404, description = "No such endpoint (`no_such_webhook`)", body = ErrorBody),
        CommonErrors
    )
)]
pub async fn remove<S: Store + Clone, C: Clock>(
    State(st): State<AppState<S, C>>,
    _: AdminKey,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    st.booking.remove_webhook(webhook_id(&id)?).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[utoipa::path(
    post,
    path = "/v1/admin/webhooks/{id}/retry",
    tag = "admin",
    summary = "Make a failed (or backing-off) endpoint active and due now",
    params(("id" = i64, Path, minimum = 1, description = "The endpoint's id")),
    security(("admin_key" = [])),
    responses(
        (status = 200, description = "The endpoint", body = WebhookDto),
        (status = 400, description = "Malformed id (`bad_request`)", body = ErrorBody),
        BadAdminKey,
        (status = 403, description = "The server has no admin key (`admin_disabled`)", body = ErrorBody),
        (status = 404, description = "No such endpoint (`no_such_webhook`)", body = ErrorBody),
        CommonErrors
    )
)]
pub async fn retry<S: Store + Clone, C: Clock>(
    State(st): State<AppState<S, C>>,
    _: AdminKey,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let w = st.booking.retry_webhook(webhook_id(&id)?).await?;
    Ok(axum::Json(WebhookDto::from(&w)).into_response())
}
