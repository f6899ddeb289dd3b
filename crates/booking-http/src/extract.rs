//! Extractors: the token gate, identity, and input parsing with our error shape.

use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use booking_core::domain::IdempotencyKey;
use booking_core::{Admitted, Clock, Store, TokenClaims};
use serde::de::DeserializeOwned;

use crate::AppState;
use crate::error::ApiError;

/// A JSON body; a malformed one is a 400 in our error shape.
pub struct Json<T>(pub T);

impl<T: DeserializeOwned, St: Send + Sync> FromRequest<St> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &St) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Json(v)),
            Err(e) => Err(json_rejection(e)),
        }
    }
}

fn json_rejection(e: JsonRejection) -> ApiError {
    match e {
        JsonRejection::MissingJsonContentType(_) => {
            ApiError::bad_request("send the body as JSON with Content-Type: application/json")
        }
        other => ApiError::bad_request(format!("malformed JSON body: {}", other.body_text())),
    }
}

/// Path parameters; malformed ones are a 400.
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send, St: Send + Sync> FromRequestParts<St> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &St) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(v)| Path(v))
            .map_err(|e: PathRejection| {
                ApiError::bad_request(format!("malformed path parameter: {}", e.body_text()))
            })
    }
}

/// The raw bearer token of `Authorization: Bearer <token>`.
pub struct Bearer(pub String);

impl<St: Send + Sync> FromRequestParts<St> for Bearer {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &St) -> Result<Self, Self::Rejection> {
        let value = parts.headers.get(AUTHORIZATION).ok_or_else(|| {
            ApiError::unauthorized(
                "missing_token",
                "send the queue token as Authorization: Bearer <token>",
            )
        })?;
        let value = value
            .to_str()
            .map_err(|_| ApiError::unauthorized("invalid_token", "the queue token is malformed"))?;
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .ok_or_else(|| {
                ApiError::unauthorized(
                    "missing_token",
                    "send the queue token as Authorization: Bearer <token>",
                )
            })?;
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
