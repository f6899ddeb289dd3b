//! The admin API under `/v1/admin`, behind the admin key (`Authorization: Bearer
//! <admin key>`; 401 without it). Operators create concerts and dates, watch and
//! steer the waiting room, sweep, and read the sales report.

use std::time::Duration;

use axum::extract::{FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use booking_core::domain::{
    AdmissionPolicy, Amount, ConcertId, ConcertName, NewSchedule, PriceList, SeatCount, SeatPrices,
    Timestamp,
};
use booking_core::{Clock, Store};
use serde::{Deserialize, Serialize};

use crate::AppState;
use crate::dto::{ConcertDto, DateDto, whole};
use crate::error::{ApiError, BadAdminKey, BodyErrors, CommonErrors, ErrorBody};
use crate::extract::{Bearer, Json, Path};

type ApiResult<T> = Result<T, ApiError>;

/// Proof that the request carried the admin key.
pub struct AdminKey;

impl<S: Store + Clone, C: Clock> FromRequestParts<AppState<S, C>> for AdminKey {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState<S, C>,
    ) -> Result<Self, Self::Rejection> {
        let refused = || {
            ApiError::unauthorized(
                "admin_key_required",
                "send the admin key as Authorization: Bearer <key>",
            )
        };
        let Some(expected) = state.admin_key.as_deref() else {
            return Err(ApiError::forbidden(
                "admin_disabled",
                "this server has no admin key configured",
            ));
        };
        let Bearer(given) = Bearer::from_request_parts(parts, state)
            .await
            .map_err(|e| {
                if e.status == StatusCode::BAD_REQUEST {
                    e
                } else {
                    refused()
                }
            })?;
        if constant_time_eq(given.as_bytes(), expected.as_bytes()) {
            Ok(AdminKey)
        } else {
            Err(ApiError::unauthorized(
                "invalid_admin_key",
                "the admin key is not this server's",
            ))
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn json<T: Serialize>(status: StatusCode, body: T) -> Response {
    (status, axum::Json(body)).into_response()
}

fn invalid(e: impl std::fmt::Display) -> ApiError {
    ApiError::unprocessable("invalid_input", e.to_string())
}

/// `POST /v1/admin/concerts`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewConcertDto {
    /// The name.
    pub name: String,
}

#[utoipa::path(
    post,
    path = "/v1/admin/concerts",
    tag = "admin",
    summary = "Create a concert",
    request_body = NewConcertDto,
    security(("admin_key" = [])),
    responses(
        (status = 201, description = "The concert", body = ConcertDto),
        (status = 400, description = "Malformed body, parameter or header (`bad_request`)", body = ErrorBody),
        BadAdminKey,
        (status = 403, description = "The server has no admin key (`admin_disabled`)", body = ErrorBody),
        (status = 422, description = "Invalid value (`invalid_input`, `date_in_the_past`)", body = ErrorBody),
        BodyErrors,
        CommonErrors
    )
)]
pub async fn create_concert<S: Store + Clone, C: Clock>(
    State(st): State<AppState<S, C>>,
    _: AdminKey,
    Json(req): Json<NewConcertDto>,
) -> ApiResult<Response> {
    let name = ConcertName::new(&req.name).map_err(invalid)?;
    let concert = st.booking.create_concert(name).await?;
    Ok(json(StatusCode::CREATED, ConcertDto::from(&concert)))
}

/// `POST /v1/admin/concerts/{id}/dates`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDateDto {
    /// When the show starts, RFC 3339 (`2026-12-24T19:00:00Z`): in the future and
    /// at most 3,653 days (ten years) ahead.
    pub starts_at: String,
    /// Seats, 1..=1000; 50 when left out.
    #[serde(default, deserialize_with = "whole::opt")]
    pub seats: Option<i64>,
    /// One price for every seat (minor units): at least 1 and at most the largest
    /// balance a user may hold (100,000,000 by default), so that every seat can
    /// be paid for.
    #[serde(default, deserialize_with = "whole::opt")]
    pub price: Option<i64>,
    /// Or one price per seat, seat 1 first, each within the same bounds.
    #[serde(default, deserialize_with = "whole::opt_list")]
    pub prices: Option<Vec<i64>>,
}

#[utoipa::path(
    post,
    path = "/v1/admin/concerts/{id}/dates",
    tag = "admin",
    summary = "Create a date with its seat count and prices",
    request_body = NewDateDto,
    params(("id" = i64, Path, description = "The concert")),
    security(("admin_key" = [])),
    responses(
        (status = 201, description = "The date", body = DateDto),
        (status = 400, description = "Malformed body, parameter or header (`bad_request`)", body = ErrorBody),
        BadAdminKey,
        (status = 403, description = "The server has no admin key (`admin_disabled`)", body = ErrorBody),
        (status = 404, description = "Unknown concert or date (`unknown_concert`, `unknown_date`)", body = ErrorBody),
        (status = 409, description = "The concert already has a show that day (`date_taken`)", body = ErrorBody),
        (status = 422, description = "`starts_at` is not in the future (`date_in_the_past`) or more than ten years ahead, or `prices` does not list one price per seat (`invalid_input`)", body = ErrorBody),
        BodyErrors,
        CommonErrors
    )
)]
pub async fn create_date<S: Store + Clone, C: Clock>(
    State(st): State<AppState<S, C>>,
    _: AdminKey,
    Path(concert): Path<i64>,
    Json(req): Json<NewDateDto>,
) -> ApiResult<Response> {
    let concert = ConcertId::new(concert)
        .map_err(|_| ApiError::not_found("unknown_concert", "no such concert"))?;
    let starts_at = chrono::DateTime::parse_from_rfc3339(&req.starts_at)
        .map_err(|e| ApiError::bad_request(format!("starts_at: {e}")))?;
    let starts_at = Timestamp::from_datetime(starts_at.to_utc());
    let seats = SeatCount::new(req.seats.unwrap_or(50)).map_err(invalid)?;
    let prices = match (req.price, req.prices) {
        (Some(p), None) => SeatPrices::Uniform(Amount::new(p).map_err(invalid)?),
        (None, Some(list)) => {
            let list = list
                .into_iter()
                .map(Amount::new)
                .collect::<Result<Vec<_>, _>>()
                .map_err(invalid)?;
            SeatPrices::PerSeat(PriceList::new(list).map_err(invalid)?)
        }
        _ => {
            return Err(ApiError::unprocessable(
                "invalid_input",
                "give either price or prices",
            ));
        }
    };
    let new = NewSchedule::new(concert, starts_at, seats, prices).map_err(invalid)?;
    let schedule = st.booking.create_schedule(new).await.map_err(|e| {
        use booking_core::ScheduleError as E;
        let msg = e.to_string();
        match e {
            E::UnknownConcert => ApiError::not_found("unknown_concert", msg),
            E::DateTaken(_) => ApiError::new(StatusCode::CONFLICT, "date_taken", msg),
            E::InThePast => ApiError::unprocessable("date_in_the_past", msg),
            E::TooFarAhead { .. } | E::PriceAboveMaxBalance { .. } => {
                ApiError::unprocessable("invalid_input", msg)
            }
            E::Store(s) => s.into(),
        }
    })?;
    Ok(json(
        StatusCode::CREATED,
        DateDto {
            date: schedule.date().to_string(),
            schedule_id: schedule.id.get(),
            starts_at: schedule.starts_at.to_string(),
            seats_free: u32::from(schedule.seat_count.get()),
            seats_held: 0,
            seats_sold: 0,
        },
    ))
}

/// The sales of one date.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct SalesDto {
    /// The date and its counts.
    #[serde(flatten)]
    pub date: DateDto,
    /// The sum of the sold seats' prices.
    pub revenue: i64,
}

#[utoipa::path(
    get,
    path = "/v1/admin/concerts/{id}/sales",
    tag = "admin",
    summary = "Sold, held and free seats and revenue per date",
    params(("id" = i64, Path, description = "The concert")),
    security(("admin_key" = [])),
    responses(
        (status = 200, description = "One row per date", body = Vec<SalesDto>),
        (status = 400, description = "Malformed body, parameter or header (`bad_request`)", body = ErrorBody),
        BadAdminKey,
        (status = 403, description = "The server has no admin key (`admin_disabled`)", body = ErrorBody),
        (status = 404, description = "Unknown concert or date (`unknown_concert`, `unknown_date`)", body = ErrorBody),
        CommonErrors
    )
)]
pub async fn sales<S: Store + Clone, C: Clock>(
    State(st): State<AppState<S, C>>,
    _: AdminKey,
    Path(concert): Path<i64>,
) -> ApiResult<Response> {
    let concert = ConcertId::new(concert)
        .map_err(|_| ApiError::not_found("unknown_concert", "no such concert"))?;
    let rows: Vec<SalesDto> = st
        .booking
        .sales(concert)
        .await?
        .iter()
        .map(|s| SalesDto {
            date: DateDto::from(s),
            revenue: s.revenue.minor_units(),
        })
        .collect();
    Ok(json(StatusCode::OK, rows))
}

/// The admission policy on the wire.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyDto {
    /// Tick interval in milliseconds (10..=3600000).
    #[serde(deserialize_with = "whole::int")]
    pub interval_ms: u64,
    /// Users admitted per tick at most (rate policy).
    #[serde(default, deserialize_with = "whole::opt")]
    pub batch: Option<u32>,
    /// Active users at most (capacity policy).
    #[serde(default, deserialize_with = "whole::opt")]
    pub max_active: Option<u32>,
}

/// Whether admission is paused.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct PausedDto {
    /// True after a pause, false after a resume.
    pub paused: bool,
}

/// What a sweep recorded.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct SweepDto {
    /// Holds found expired and marked so.
    pub holds_expired: u64,
    /// Sessions found expired and marked so.
    pub sessions_expired: u64,
}

/// The waiting room.
#[derive(Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct QueueStatsDto {
    /// Places issued so far.
    pub issued: u64,
    /// The serving counter.
    pub serving: u64,
    /// Waiting users.
    pub waiting: u64,
    /// Users with an active session.
    pub active: u64,
    /// Whether admission is paused.
    pub paused: bool,
    /// The policy.
    pub policy: PolicyDto,
    /// Observed admissions per second.
    pub admit_rate_per_sec: f64,
}

#[utoipa::path(
    get,
    path = "/v1/admin/queue",
    tag = "admin",
    summary = "The waiting room: issued, serving counter, waiting, active, policy, rate",
    security(("admin_key" = [])),
    responses(
        (status = 200, description = "Queue figures", body = QueueStatsDto),
        BadAdminKey,
        (status = 403, description = "The server has no admin key (`admin_disabled`)", body = ErrorBody),
        CommonErrors
    )
)]
pub async fn queue<S: Store + Clone, C: Clock>(
    State(st): State<AppState<S, C>>,
    _: AdminKey,
) -> ApiResult<Response> {
    let s = st.booking.queue_stats().await?;
    let c = s.counters;
    Ok(json(
        StatusCode::OK,
        QueueStatsDto {
            issued: c.last_seq,
            serving: c.serving,
            waiting: c.n_waiting(),
            active: s.n_active,
            paused: c.paused,
            policy: PolicyDto {
                interval_ms: c.policy.interval().as_millis() as u64,
                batch: c.policy.batch(),
                max_active: c.policy.max_active(),
            },
            admit_rate_per_sec: c.admit_rate_milli as f64 / 1000.0,
        },
    ))
}

#[utoipa::path(
    put,
    path = "/v1/admin/queue/policy",
    tag = "admin",
    summary = "Change the admission policy at run time",
    request_body = PolicyDto,
    security(("admin_key" = [])),
    responses(
        (status = 200, description = "The policy now in force", body = PolicyDto),
        (status = 400, description = "Malformed body, parameter or header (`bad_request`)", body = ErrorBody),
        BadAdminKey,
        (status = 403, description = "The server has no admin key (`admin_disabled`)", body = ErrorBody),
        (status = 422, description = "Invalid value (`invalid_input`, `date_in_the_past`)", body = ErrorBody),
        BodyErrors,
        CommonErrors
    )
)]
pub async fn set_policy<S: Store + Clone, C: Clock>(
    State(st): State<AppState<S, C>>,
    _: AdminKey,
    Json(req): Json<PolicyDto>,
) -> ApiResult<Response> {
    let policy = AdmissionPolicy::new(
        Duration::from_millis(req.interval_ms),
        req.batch,
        req.max_active,
    )
    .map_err(invalid)?;
    st.booking.set_policy(policy).await?;
    Ok(json(StatusCode::OK, req))
}

#[utoipa::path(
    post,
    path = "/v1/admin/queue/pause",
    tag = "admin",
    summary = "Pause admission",
    security(("admin_key" = [])),
    responses(
        (status = 200, description = "Paused", body = PausedDto),
        BadAdminKey,
        (status = 403, description = "The server has no admin key (`admin_disabled`)", body = ErrorBody),
        CommonErrors
    )
)]
pub async fn pause<S: Store + Clone, C: Clock>(
    State(st): State<AppState<S, C>>,
    _: AdminKey,
) -> ApiResult<Response> {
    st.booking.set_paused(true).await?;
    Ok(json(StatusCode::OK, PausedDto { paused: true }))
}

#[utoipa::path(
    post,
    path = "/v1/admin/queue/resume",
    tag = "admin",
    summary = "Resume admission",
    security(("admin_key" = [])),
    responses(
        (status = 200, description = "Resumed", body = PausedDto),
        BadAdminKey,
        (status = 403, description = "The server has no admin key (`admin_disabled`)", body = ErrorBody),
        CommonErrors
    )
)]
pub async fn resume<S: Store + Clone, C: Clock>(
    State(st): State<AppState<S, C>>,
    _: AdminKey,
) -> ApiResult<Response> {
    st.booking.set_paused(false).await?;
    Ok(json(StatusCode::OK, PausedDto { paused: false }))
}

#[utoipa::path(
    post,
    path = "/v1/admin/sweep",
    tag = "admin",
    summary = "Record expired holds and sessions",
    security(("admin_key" = [])),
    responses(
        (status = 200, description = "What was swept", body = SweepDto),
        BadAdminKey,
        (status = 403, description = "The server has no admin key (`admin_disabled`)", body = ErrorBody),
        CommonErrors
    )
)]
pub async fn sweep<S: Store + Clone, C: Clock>(
    State(st): State<AppState<S, C>>,
    _: AdminKey,
) -> ApiResult<Response> {
    let r = st.booking.sweep().await?;
    Ok(json(
        StatusCode::OK,
        SweepDto {
            holds_expired: r.n_holds_expired,
            sessions_expired: r.n_sessions_expired,
        },
    ))
}
