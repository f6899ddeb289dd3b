//! Handlers: parse, call the core, map the result. No rule lives here.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use booking_core::domain::{Amount, ConcertId, ReservationId, SeatNo, UserId};
use booking_core::{Clock, Store};
use chrono::NaiveDate;

use crate::AppState;
use crate::dto::{
    BalanceDto, ChargeRequest, ConcertDto, DateDto, HoldRequest, LedgerEntryDto, PayRequest,
    PaymentDto, QueueDto, ReservationDto, SeatDto, SeatMapDto, TokenRequest,
};
use crate::error::ApiError;
use crate::extract::{Bearer, Gate, IdemKey, Json, Path, Signed};

type ApiResult<T> = Result<T, ApiError>;

fn json<T: serde::Serialize>(status: StatusCode, body: T) -> Response {
    (status, axum::Json(body)).into_response()
}

fn parse_user(s: &str) -> ApiResult<UserId> {
    s.parse()
        .map_err(|e| ApiError::bad_request(format!("user_id: {e}")))
}

fn parse_date(s: &str) -> ApiResult<NaiveDate> {
    s.parse()
        .map_err(|_| ApiError::bad_request(format!("date {s:?} is not YYYY-MM-DD")))
}

fn parse_concert(id: i64) -> ApiResult<ConcertId> {
    ConcertId::new(id).map_err(|_| ApiError::not_found("unknown_concert", "no such concert"))
}

fn parse_reservation(s: &str) -> ApiResult<ReservationId> {
    s.parse()
        .map_err(|e| ApiError::bad_request(format!("reservation_id: {e}")))
}

/// The user in the path must be the token's user.
fn same_user(path_user: &str, token_user: UserId) -> ApiResult<UserId> {
    let user = parse_user(path_user)?;
    if user != token_user {
        return Err(ApiError::forbidden(
            "wrong_user",
            "the token belongs to another user",
        ));
    }
    Ok(user)
}

// --- waiting room -----------------------------------------------------------------

pub async fn issue_token<S: Store + Clone, C: Clock>(
    State(st): State<AppState<S, C>>,
    Json(req): Json<TokenRequest>,
) -> ApiResult<Response> {
    let user = parse_user(&req.user_id)?;
    let issued = st.booking.issue_token(user).await?;
    let dto = QueueDto::new(&issued.claims, issued.status, Some(issued.token));
    Ok(json(StatusCode::CREATED, dto))
}

pub async fn queue_status<S: Store + Clone, C: Clock>(
    State(st): State<AppState<S, C>>,
    Bearer(token): Bearer,
) -> ApiResult<Response> {
    let view = st.booking.queue_status(&token).await?;
    Ok(json(
        StatusCode::OK,
        QueueDto::new(&view.claims, view.status, None),
    ))
}

// --- catalog ----------------------------------------------------------------------

pub async fn concerts<S: Store + Clone, C: Clock>(
    State(st): State<AppState<S, C>>,
    Gate(_): Gate,
) -> ApiResult<Response> {
    let list: Vec<ConcertDto> = st
        .booking
        .concerts()
        .await?
        .iter()
        .map(Into::into)
        .collect();
    Ok(json(StatusCode::OK, list))
}

pub async fn dates<S: Store + Clone, C: Clock>(
    State(st): State<AppState<S, C>>,
    Gate(_): Gate,
    Path(concert): Path<i64>,
) -> ApiResult<Response> {
    let concert = parse_concert(concert)?;
    let dates: Vec<DateDto> = st
        .booking
        .bookable_dates(concert)
        .await?
        .iter()
        .map(Into::into)
        .collect();
    Ok(json(StatusCode::OK, dates))
}

pub async fn seats<S: Store + Clone, C: Clock>(
    State(st): State<AppState<S, C>>,
    Gate(_): Gate,
    Path((concert, date)): Path<(i64, String)>,
) -> ApiResult<Response> {
    let concert = parse_concert(concert)?;
    let date = parse_date(&date)?;
    let (schedule, seats) = st.booking.seats(concert, date).await?;
    let map = SeatMapDto {
        concert_id: concert.get(),
        date: date.to_string(),
        schedule_id: schedule.id.get(),
        seats: seats.iter().map(SeatDto::from).collect(),
    };
    Ok(json(StatusCode::OK, map))
}

// --- reservations -----------------------------------------------------------------

pub async fn hold<S: Store + Clone, C: Clock>(
    State(st): State<AppState<S, C>>,
    Gate(who): Gate,
    Json(req): Json<HoldRequest>,
) -> ApiResult<Response> {
    let concert = parse_concert(req.concert_id)?;
    let date = parse_date(&req.date)?;
    let seat = SeatNo::new(req.seat)
        .map_err(|e| ApiError::unprocessable("invalid_seat", e.to_string()))?;
    let schedule = st.booking.schedule_on(concert, date).await?;
    let hold = st.booking.hold(&who, schedule.id, seat).await?;
    Ok(json(StatusCode::CREATED, ReservationDto::from(&hold)))
}

pub async fn cancel<S: Store + Clone, C: Clock>(
    State(st): State<AppState<S, C>>,
    Gate(who): Gate,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let id = parse_reservation(&id)?;
    let hold = st.booking.cancel_hold(&who, id).await?;
    Ok(json(StatusCode::OK, ReservationDto::from(&hold)))
}

pub async fn reservations<S: Store + Clone, C: Clock>(
    State(st): State<AppState<S, C>>,
    Gate(who): Gate,
) -> ApiResult<Response> {
    let list: Vec<ReservationDto> = st
        .booking
        .reservations(who.user())
        .await?
        .iter()
        .map(Into::into)
        .collect();
    Ok(json(StatusCode::OK, list))
}

// --- wallet -----------------------------------------------------------------------

pub async fn balance<S: Store + Clone, C: Clock>(
    State(st): State<AppState<S, C>>,
    Signed(claims): Signed,
    Path(user): Path<String>,
) -> ApiResult<Response> {
    let user = same_user(&user, claims.user)?;
    let balance = st.booking.balance(user).await?;
    Ok(json(
        StatusCode::OK,
        BalanceDto {
            user_id: user.to_string(),
            balance: balance.minor_units(),
        },
    ))
}

pub async fn charge<S: Store + Clone, C: Clock>(
    State(st): State<AppState<S, C>>,
    Signed(claims): Signed,
    Path(user): Path<String>,
    IdemKey(key): IdemKey,
    Json(req): Json<ChargeRequest>,
) -> ApiResult<Response> {
    let user = same_user(&user, claims.user)?;
    let amount = Amount::new(req.amount)
        .map_err(|e| ApiError::unprocessable("invalid_amount", e.to_string()))?;
    let receipt = st.booking.charge(user, amount, key).await?;
    let status = if receipt.replayed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok(json(status, LedgerEntryDto::from(&receipt.entry)))
}

pub async fn ledger<S: Store + Clone, C: Clock>(
    State(st): State<AppState<S, C>>,
    Signed(claims): Signed,
    Path(user): Path<String>,
) -> ApiResult<Response> {
    let user = same_user(&user, claims.user)?;
    let rows: Vec<LedgerEntryDto> = st
        .booking
        .ledger(user)
        .await?
        .iter()
        .map(Into::into)
        .collect();
    Ok(json(StatusCode::OK, rows))
}

// --- payments ---------------------------------------------------------------------

pub async fn pay<S: Store + Clone, C: Clock>(
    State(st): State<AppState<S, C>>,
    Bearer(token): Bearer,
    IdemKey(key): IdemKey,
    Json(req): Json<PayRequest>,
) -> ApiResult<Response> {
    let id = parse_reservation(&req.reservation_id)?;
    let receipt = st.booking.pay(&token, id, key).await?;
    let status = if receipt.replayed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok(json(status, PaymentDto::from(&receipt.payment)))
}

pub async fn payments<S: Store + Clone, C: Clock>(
    State(st): State<AppState<S, C>>,
    Signed(claims): Signed,
) -> ApiResult<Response> {
    let list: Vec<PaymentDto> = st
        .booking
        .payments(claims.user)
        .await?
        .iter()
        .map(Into::into)
        .collect();
    Ok(json(StatusCode::OK, list))
}

// --- operations -------------------------------------------------------------------

pub async fn healthz() -> &'static str {
    "ok"
}

pub async fn readyz<S: Store + Clone, C: Clock>(
    State(st): State<AppState<S, C>>,
) -> ApiResult<Response> {
    st.booking.store().counters().await?;
    Ok(json(
        StatusCode::OK,
        serde_json::json!({ "status": "ready" }),
    ))
}
