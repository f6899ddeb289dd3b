//! Middleware at the edge of the router: a declared body that is too large is
//! refused before it is read, and every error answer made outside a handler
//! (405 from the router, 503 from the request timeout, ...) gets the JSON error
//! shape.

use axum::extract::Request;
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

/// 413 at once when `Content-Length` declares more than [`crate::MAX_BODY_BYTES`]:
/// nothing of the body is read, so a client cannot make the server wait for a
/// body it will refuse anyway.
pub(crate) async fn declared_length(req: Request, next: Next) -> Response {
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > crate::MAX_BODY_BYTES as u64) {
        return ApiError::payload_too_large().into_response();
    }
    next.run(req).await
}

/// Gives an error answer without a JSON body the error shape, keeping its status
/// and headers (`Allow` of a 405, `Retry-After`).
pub(crate) async fn json_errors(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let resp = next.run(req).await;
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) || is_json(resp.headers()) {
        return resp;
    }
    let (parts, _) = resp.into_parts();
    let mut fresh = for_status(status, &method).into_response();
    for (name, value) in &parts.headers {
        if name != CONTENT_TYPE && name != CONTENT_LENGTH {
            fresh.headers_mut().append(name.clone(), value.clone());
        }
    }
    fresh
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
}

/// The error of a bare status made outside the handlers.
fn for_status(status: StatusCode, method: &Method) -> ApiError {
    let (code, message) = match status {
        StatusCode::BAD_REQUEST => ("bad_request", "the request is malformed".to_owned()),
        StatusCode::NOT_FOUND => ("no_such_endpoint", "no such endpoint".to_owned()),
        StatusCode::METHOD_NOT_ALLOWED => (
            "method_not_allowed",
            format!("this endpoint does not accept {method}; the Allow header lists what it does"),
        ),
        StatusCode::REQUEST_TIMEOUT => return ApiError::request_timeout(),
        StatusCode::PAYLOAD_TOO_LARGE => return ApiError::payload_too_large(),
        StatusCode::URI_TOO_LONG => (
            "uri_too_long",
            "the URL is longer than this server accepts".to_owned(),
        ),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => (
            "unsupported_media_type",
            "send the body as JSON with Content-Type: application/json".to_owned(),
        ),
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => (
            "headers_too_large",
            "the request's headers are larger or more numerous than this server accepts".to_owned(),
        ),
        StatusCode::SERVICE_UNAVAILABLE => (
            "unavailable",
            "the request took too long; try again shortly".to_owned(),
        ),
        StatusCode::INTERNAL_SERVER_ERROR => (
            "internal",
            "an internal error occurred; it has been logged".to_owned(),
        ),
        other => (
            "error",
            other
                .canonical_reason()
                .unwrap_or("the request failed")
                .to_lowercase(),
        ),
    };
    ApiError::new(status, code, message)
}
