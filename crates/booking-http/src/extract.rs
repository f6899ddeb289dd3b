//! Extractors: the token gate, identity, and input parsing with our error shape.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, FailedToBufferBody, PathRejection};
use axum::extract::{FromRequest, FromRequestParts, RawPathParams, Request};
use axum::http::HeaderMap;
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::request::Parts;
use booking_core::domain::IdempotencyKey;
use booking_core::{Admitted, Clock, Store, TokenClaims};
use serde::de::DeserializeOwned;

use crate::AppState;
use crate::error::ApiError;
use crate::server::BodyTimeout;

/// A JSON body. A malformed one is a 400 in our error shape whose message names
/// the field at fault; a body that does not arrive within the server's body
/// timeout is a 408, one larger than [`crate::MAX_BODY_BYTES`] a 413.
pub struct Json<T>(pub T);

/// How long a body may take when the request did not come through
/// [`crate::serve_with`] (which sets [`crate::ServeOptions::body_timeout`]).
const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(10);

impl<T: DeserializeOwned, St: Send + Sync> FromRequest<St> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &St) -> Result<Self, Self::Rejection> {
        if !json_content_type(req.headers()) {
            return Err(ApiError::bad_request(
                "send the body as JSON with Content-Type: application/json",
            ));
        }
        let limit = req
            .extensions()
            .get::<BodyTimeout>()
            .map_or(DEFAULT_BODY_TIMEOUT, |t| t.0);
        let bytes = match tokio::time::timeout(limit, Bytes::from_request(req, state)).await {
            Err(_) => return Err(ApiError::request_timeout()),
            Ok(Err(BytesRejection::FailedToBufferBody(FailedToBufferBody::LengthLimitError(
                _,
            )))) => return Err(ApiError::payload_too_large()),
            Ok(Err(_)) => return Err(ApiError::bad_request("the body could not be read")),
            Ok(Ok(bytes)) => bytes,
        };
        parse_json(&bytes).map(Json)
    }
}

fn json_content_type(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case("application/json")
        || essence
            .rsplit_once('+')
            .is_some_and(|(kind, suffix)| kind.contains('/') && suffix.eq_ignore_ascii_case("json"))
}

/// Parses a JSON body into `T`; a 400 that says which field is wrong, in words
/// of the API rather than of the Rust types behind it.
pub(crate) fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize::<_, T>(&mut de).map_err(|e| {
        let path = e.path().to_string();
        json_error(&path, e.inner())
    })?;
    de.end().map_err(|e| json_error(".", &e))?;
    Ok(value)
}

fn json_error(path: &str, e: &serde_json::Error) -> ApiError {
    use serde_json::error::Category;
    match e.classify() {
        Category::Syntax | Category::Eof => ApiError::bad_request(format!(
            "the body is not valid JSON: {}",
            first_letter_lower(&e.to_string())
        )),
        Category::Io => ApiError::bad_request("the body could not be read"),
        Category::Data => {
            let full = e.to_string();
            let what = full
                .rsplit_once(" at line ")
                .map_or(full.as_str(), |(what, _)| what);
            let what = plain_types(what);
            if what.contains("expected struct") || what.contains("expected a map") {
                let at = if path == "." { "the body" } else { path };
                ApiError::bad_request(format!("{at} must be a JSON object"))
            } else if path == "." || what.starts_with("unknown field") {
                ApiError::bad_request(what)
            } else {
                ApiError::bad_request(format!("{path}: {what}"))
            }
        }
    }
}

fn first_letter_lower(s: &str) -> String {
    let mut chars = s.chars();
    chars.next().map_or_else(String::new, |c| {
        c.to_lowercase().chain(chars).collect::<String>()
    })
}

/// serde's names of Rust types, in words.
fn plain_types(what: &str) -> String {
    let mut out = what.to_owned();
    for (rust, plain) in [
        ("expected i64", "expected an integer"),
        ("expected u64", "expected a non-negative integer"),
        ("expected i32", "expected an integer"),
        ("expected u32", "expected a non-negative integer"),
        ("expected u16", "expected a non-negative integer"),
        ("expected a sequence", "expected a list"),
    ] {
        out = out.replace(rust, plain);
    }
    out
}

/// Path parameters; a malformed one is a 400 that names it.
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send, St: Send + Sync> FromRequestParts<St> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &St) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(Path(v)),
            Err(e) => {
                let names: Vec<String> = RawPathParams::from_request_parts(parts, state)
                    .await
                    .map(|raw| raw.iter().map(|(k, _)| k.to_owned()).collect())
                    .unwrap_or_default();
                Err(path_error(e, &names))
            }
        }
    }
}

fn path_error(e: PathRejection, names: &[String]) -> ApiError {
    use axum::extract::path::ErrorKind;
    let PathRejection::FailedToDeserializePathParams(e) = e else {
        return ApiError::bad_request("malformed path parameter");
    };
    let kind_word = |t: &str| match t {
        "i64" | "i32" | "i16" | "i8" => "an integer",
        "u64" | "u32" | "u16" | "u8" => "a non-negative integer",
        _ => "of the right type",
    };
    match e.into_kind() {
        ErrorKind::ParseErrorAtKey {
            key,
            value,
            expected_type,
        } => ApiError::bad_request(format!(
            "{key}: {value:?} is not {}",
            kind_word(expected_type)
        )),
        ErrorKind::ParseErrorAtIndex {
            index,
            value,
            expected_type,
        } => {
            let key = names.get(index).map_or("path parameter", String::as_str);
            ApiError::bad_request(format!(
                "{key}: {value:?} is not {}",
                kind_word(expected_type)
            ))
        }
        ErrorKind::ParseError {
            value,
            expected_type,
        } => {
            let key = names.first().map_or("path parameter", String::as_str);
            ApiError::bad_request(format!(
                "{key}: {value:?} is not {}",
                kind_word(expected_type)
            ))
        }
        ErrorKind::InvalidUtf8InPathParam { key } => {
            ApiError::bad_request(format!("{key}: not valid UTF-8"))
        }
        _ => ApiError::bad_request("malformed path parameter"),
    }
}

/// The raw bearer token of `Authorization: Bearer <token>`. The scheme is
/// case-insensitive (RFC 7235); two `Authorization` headers are a 400, since
/// which one counts would be a guess.
pub struct Bearer(pub String);

impl<St: Send + Sync> FromRequestParts<St> for Bearer {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &St) -> Result<Self, Self::Rejection> {
        let missing = || {
            ApiError::unauthorized(
                "missing_token",
                "send the queue token as Authorization: Bearer <token>",
            )
        };
        let mut values = parts.headers.get_all(AUTHORIZATION).iter();
        let value = values.next().ok_or_else(missing)?;
        if values.next().is_some() {
            return Err(ApiError::bad_request(
                "send one Authorization header, not several",
            ));
        }
        let value = value
            .to_str()
            .map_err(|_| ApiError::unauthorized("invalid_token", "the queue token is malformed"))?;
        let (scheme, token) = value.trim_start().split_once(' ').ok_or_else(missing)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(missing());
        }
        Ok(Bearer(token.trim().to_owned()))
    }
}

/// A token whose signature checks out (waiting, active or ended): enough for the
/// wallet. No storage is read.
pub struct Signed(pub TokenClaims);

impl<S: Store + Clone, C: Clock> FromRequestParts<AppState<S, C>> for Signed {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState<S, C>,
    ) -> Result<Self, Self::Rejection> {
        let Bearer(token) = Bearer::from_request_parts(parts, state).await?;
        Ok(Signed(state.booking.verify_token(&token)?))
    }
}

/// A token that passed the queue gate: admitted and live. Catalog, reservations
/// and payments require it.
pub struct Gate(pub Admitted);

impl<S: Store + Clone, C: Clock> FromRequestParts<AppState<S, C>> for Gate {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState<S, C>,
    ) -> Result<Self, Self::Rejection> {
        let Bearer(token) = Bearer::from_request_parts(parts, state).await?;
        Ok(Gate(state.booking.gate(&token).await?))
    }
}

/// A token that passed the queue gate for a hold: the same verdict as [`Gate`],
/// but a session this instance saw start passes from memory, because the hold's
/// own write checks the session (see `Booking::gate_for_write`).
pub struct WriteGate(pub Admitted);

impl<S: Store + Clone, C: Clock> FromRequestParts<AppState<S, C>> for WriteGate {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState<S, C>,
    ) -> Result<Self, Self::Rejection> {
        let Bearer(token) = Bearer::from_request_parts(parts, state).await?;
        Ok(WriteGate(state.booking.gate_for_write(&token).await?))
    }
}

/// The optional `Idempotency-Key` header.
pub struct IdemKey(pub Option<IdempotencyKey>);

impl<St: Send + Sync> FromRequestParts<St> for IdemKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &St) -> Result<Self, Self::Rejection> {
        let Some(value) = parts.headers.get("idempotency-key") else {
            return Ok(IdemKey(None));
        };
        let text = value
            .to_str()
            .map_err(|_| ApiError::bad_request("the Idempotency-Key header must be ASCII"))?;
        IdempotencyKey::new(text)
            .map(|k| IdemKey(Some(k)))
            .map_err(|e| ApiError::bad_request(format!("Idempotency-Key: {e}")))
    }
}
