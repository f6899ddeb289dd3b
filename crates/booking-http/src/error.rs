//! The one HTTP error type: every failure becomes a status code and a JSON body
//! `{"error": {"code": "...", "message": "..."}}`. Only this module knows status codes.
//! Storage failures are logged with their details and answered without them.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use booking_core::domain::HoldState;
use booking_core::{
    CancelError, CatalogError, ChargeError, GateError, HoldError, IssueError, PayError,
    StatusError, StoreError, TokenError,
};
use serde::Serialize;

/// An error answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The status code.
    pub status: StatusCode,
    /// A stable, machine-readable code (`seat_taken`, `insufficient_balance`, ...).
    pub code: &'static str,
    /// A sentence for people.
    pub message: String,
    /// Sent as `Retry-After` (whole seconds) when set: when asking again makes sense.
    pub retry_after: Option<u64>,
}

/// The body of every error answer: `{"error": {"code": "...", "message": "..."}}`.
#[derive(Debug, Serialize, serde::Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// The errors any operation may answer, for the OpenAPI document.
#[derive(utoipa::IntoResponses)]
pub enum CommonErrors {
    /// 429.
    #[response(
        status = 429,
        description = "Rate limit of the IP or token exceeded; see `Retry-After` (`rate_limited`)"
    )]
    RateLimited(ErrorBody),
    /// 500.
    #[response(
        status = 500,
        description = "Internal storage failure, logged (`internal`)"
    )]
    Internal(ErrorBody),
    /// 503.
    #[response(
        status = 503,
        description = "Database unavailable, queue full or request timed out (`unavailable`, `queue_full`)"
    )]
    Unavailable(ErrorBody),
}

/// The answers about a request body, for operations that take one.
#[derive(utoipa::IntoResponses)]
pub enum BodyErrors {
    /// 408.
    #[response(
        status = 408,
        description = "The body did not arrive within the server's body timeout (`request_timeout`)"
    )]
    Timeout(ErrorBody),
    /// 413.
    #[response(
        status = 413,
        description = "The body is larger than 16 KiB; a declared `Content-Length` over it is refused before anything is read (`payload_too_large`)"
    )]
    TooLarge(ErrorBody),
}

/// The answer of an operation behind a queue token when the token is not good.
#[derive(utoipa::IntoResponses)]
#[response(
    status = 401,
    description = "Missing, forged, expired or ended token (`missing_token`, `invalid_token`, `unknown_token`, `token_expired`, `token_ended`)"
)]
pub struct BadToken(pub ErrorBody);

/// The answer of an admin operation without the right admin key.
#[derive(utoipa::IntoResponses)]
#[response(
    status = 401,
    description = "No admin key (`admin_key_required`), or not this server's (`invalid_admin_key`)"
)]
pub struct BadAdminKey(pub ErrorBody);

/// The rate limit's answer alone, for operations that touch no storage.
#[derive(utoipa::IntoResponses)]
#[response(
    status = 429,
    description = "Rate limit of the IP or token exceeded; see `Retry-After` (`rate_limited`)"
)]
pub struct RateLimited(pub ErrorBody);

/// The inside of an [`ErrorBody`].
#[derive(Debug, Serialize, serde::Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// A stable, machine-readable code (`seat_taken`, `insufficient_balance`, ...).
    pub code: String,
    /// A sentence for people.
    pub message: String,
}

impl ApiError {
    /// An error with a status, a code and a message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// The same error, with a `Retry-After` of `secs`.
    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }

    /// 400: the request is malformed.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// 401: no token, or not a token of ours.
    pub fn unauthorized(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, code, message)
    }

    /// 403: a valid token that may not do this.
    pub fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, code, message)
    }

    /// 404.
    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }

    /// 408 `request_timeout`: the body did not arrive in time.
    pub fn request_timeout() -> Self {
        Self::new(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            "the request's body did not arrive in time",
        )
    }

    /// 413 `payload_too_large`: the body is larger than [`crate::MAX_BODY_BYTES`].
    pub fn payload_too_large() -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the body is larger than {} bytes", crate::MAX_BODY_BYTES),
        )
    }

    /// 422: well-formed but invalid.
    pub fn unprocessable(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_owned(),
                message: self.message,
            },
        };
        let mut resp = (self.status, Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            resp.headers_mut()
                .insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        resp
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(detail) => {
                tracing::warn!(%detail, "storage unavailable");
                let mut e = Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "the service is busy or its database is unreachable; try again shortly",
                );
                e.retry_after = Some(1);
                e
            }
            StoreError::Failed(detail) => {
                tracing::error!(%detail, "storage failure");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "an internal error occurred; it has been logged",
                )
            }
        }
    }
}

impl From<TokenError> for ApiError {
    fn from(e: TokenError) -> Self {
        Self::unauthorized("invalid_token", e.to_string())
    }
}

impl From<GateError> for ApiError {
    fn from(e: GateError) -> Self {
        let msg = e.to_string();
        match e {
            GateError::Token(t) => t.into(),
            GateError::UnknownToken => Self::unauthorized("unknown_token", msg),
            GateError::Waiting { poll_after, .. } => {
                Self::forbidden("not_admitted", msg).retry_after(crate::dto::whole_secs(poll_after))
            }
            GateError::SoldOut => sold_out(msg),
            GateError::Expired => Self::unauthorized("token_expired", msg),
            GateError::Ended => Self::unauthorized("token_ended", msg),
            GateError::Store(s) => s.into(),
        }
    }
}

impl From<StatusError> for ApiError {
    fn from(e: StatusError) -> Self {
        let msg = e.to_string();
        match e {
            StatusError::Token(t) => t.into(),
            StatusError::UnknownToken => Self::unauthorized("unknown_token", msg),
            StatusError::Store(s) => s.into(),
        }
    }
}

impl From<IssueError> for ApiError {
    fn from(e: IssueError) -> Self {
        let msg = e.to_string();
        match e {
            IssueError::QueueFull { .. } => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "queue_full", msg)
            }
            IssueError::Store(s) => s.into(),
        }
    }
}

impl From<CatalogError> for ApiError {
    fn from(e: CatalogError) -> Self {
        let msg = e.to_string();
        match e {
            CatalogError::UnknownConcert => Self::not_found("unknown_concert", msg),
            CatalogError::UnknownDate(_) => Self::not_found("unknown_date", msg),
            CatalogError::SoldOut => sold_out(msg),
            CatalogError::Store(s) => s.into(),
        }
    }
}

impl From<HoldError> for ApiError {
    fn from(e: HoldError) -> Self {
        let msg = e.to_string();
        match e {
            HoldError::UnknownSchedule => Self::not_found("unknown_date", msg),
            HoldError::Closed => Self::new(StatusCode::CONFLICT, "date_closed", msg),
            HoldError::NoSuchSeat { .. } => Self::unprocessable("invalid_seat", msg),
            HoldError::SeatTaken(_) => Self::new(StatusCode::CONFLICT, "seat_taken", msg),
            HoldError::SoldOut => sold_out(msg),
            HoldError::HoldLimit { .. } => Self::new(StatusCode::CONFLICT, "hold_limit", msg),
            HoldError::SessionEnded => Self::unauthorized("token_ended", msg),
            HoldError::Gate(g) => g.into(),
            HoldError::Store(s) => s.into(),
        }
    }
}

/// 409 `sold_out`: every seat of every bookable date is sold or held. A seat may
/// come back when a hold lapses unpaid; `Retry-After` says when asking again makes
/// sense.
fn sold_out(msg: String) -> ApiError {
    ApiError::new(StatusCode::CONFLICT, "sold_out", msg)
        .retry_after(crate::dto::whole_secs(booking_core::domain::POLL_CEILING))
}

fn not_held(state: HoldState, msg: String) -> ApiError {
    match state {
        HoldState::Expired => ApiError::new(StatusCode::GONE, "hold_expired", msg),
        HoldState::Paid => ApiError::new(StatusCode::CONFLICT, "already_paid", msg),
        HoldState::Cancelled => ApiError::new(StatusCode::CONFLICT, "reservation_cancelled", msg),
        // "Not held" because it is held cannot happen: an engine bug, not the
        // user's doing, so no user-facing code names it.
        HoldState::Held => {
            tracing::error!(%msg, "a reservation was refused as not held while held");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "an internal error occurred; it has been logged",
            )
        }
    }
}

impl From<CancelError> for ApiError {
    fn from(e: CancelError) -> Self {
        let msg = e.to_string();
        match e {
            CancelError::NotFound => Self::not_found("unknown_reservation", msg),
            CancelError::NotYours => Self::forbidden("not_yours", msg),
            CancelError::NotHeld(state) => not_held(state, msg),
            CancelError::Store(s) => s.into(),
        }
    }
}

impl From<ChargeError> for ApiError {
    fn from(e: ChargeError) -> Self {
        let msg = e.to_string();
        match e {
            ChargeError::AboveMaxCharge { .. } => Self::unprocessable("invalid_amount", msg),
            ChargeError::BalanceLimit { .. } => Self::unprocessable("balance_limit", msg),
            ChargeError::KeyReused => Self::unprocessable("idempotency_key_reused", msg),
            ChargeError::Gate(g) => g.into(),
            ChargeError::Store(s) => s.into(),
        }
    }
}

impl From<PayError> for ApiError {
    fn from(e: PayError) -> Self {
        let msg = e.to_string();
        match e {
            PayError::Gate(g) => g.into(),
            PayError::NotFound => Self::not_found("unknown_reservation", msg),
            PayError::NotYours => Self::forbidden("not_yours", msg),
            PayError::AlreadyPaid => not_held(HoldState::Paid, msg),
            PayError::HoldExpired => not_held(HoldState::Expired, msg),
            PayError::Cancelled => not_held(HoldState::Cancelled, msg),
            PayError::InsufficientBalance { .. } => {
                Self::unprocessable("insufficient_balance", msg)
            }
            PayError::SessionEnded => Self::unauthorized("token_ended", msg),
            PayError::KeyReused => Self::unprocessable("idempotency_key_reused", msg),
            PayError::SeatSold => ApiError::new(StatusCode::CONFLICT, "seat_sold", msg),
            // The refusal about one reservation of several: its status and code, and
            // a message that names the reservation.
            PayError::Reservation { error, .. } => ApiError {
                message: msg,
                ..(*error).into()
            },
            PayError::BadList(_) => Self::bad_request(msg),
            PayError::Store(s) => s.into(),
        }
    }
}
