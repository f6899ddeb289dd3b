//! The OpenAPI 3.1 document, generated from the handlers' `#[utoipa::path]`
//! annotations and the wire types' `ToSchema` derives, served at `GET /openapi.json`.
//! The tests check that it lists exactly the routes of [`crate::ROUTES`].

use axum::Json;

use crate::error::RateLimited;
use utoipa::Modify;
use utoipa::OpenApi;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};

/// The API description.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "booking",
        description = "A concert-booking engine with a virtual waiting room. Take a queue token, \
                       wait to be admitted in arrival order, hold a seat, top up, pay.\n\n\
                       Every error is `{\"error\": {\"code\": \"...\", \"message\": \"...\"}}`, \
                       also those the server answers before any operation: 405 \
                       (`method_not_allowed`), 414 (`uri_too_long`), 431 (`headers_too_large`) \
                       and 400 for bytes that are not HTTP."
    ),
    paths(
        crate::api::issue_token,
        crate::api::queue_status,
        crate::events::queue_events,
        crate::api::concerts,
        crate::api::dates,
        crate::api::seats,
        crate::api::hold,
        crate::api::reservations,
        crate::api::cancel,
        crate::api::balance,
        crate::api::charge,
        crate::api::ledger,
        crate::api::pay,
        crate::api::payments,
        crate::api::healthz,
        crate::api::readyz,
        crate::metrics::metrics,
        openapi_json,
        crate::admin::create_concert,
        crate::admin::create_date,
        crate::admin::sales,
        crate::admin::queue,
        crate::admin::set_policy,
        crate::admin::pause,
        crate::admin::resume,
        crate::admin::sweep,
    ),
    components(schemas(crate::error::ErrorBody, crate::error::ErrorDetail)),
    modifiers(&SecuritySchemes),
    tags(
        (name = "queue", description = "The waiting room: take a token, poll its status"),
        (name = "catalog", description = "Concerts, bookable dates and seat maps (admitted token)"),
        (name = "reservations", description = "Holds on seats (admitted token; the list: any token of the user, ended or not)"),
        (name = "wallet", description = "The prepaid balance (any valid token of that user)"),
        (name = "payments", description = "Paying one hold or several at once; the payment ends the token and releases the user's other holds"),
        (name = "admin", description = "Operators, behind the admin key"),
        (name = "operations", description = "Health, readiness, metrics, this document"),
    )
)]
pub struct ApiDoc;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let mut token = Http::new(HttpAuthScheme::Bearer);
        token.description = Some("The queue token from `POST /v1/queue/tokens`".into());
        components.add_security_scheme("queue_token", SecurityScheme::Http(token));
        let mut admin = Http::new(HttpAuthScheme::Bearer);
        admin.description = Some("The server's admin key".into());
        components.add_security_scheme("admin_key", SecurityScheme::Http(admin));
    }
}

/// The document, as JSON.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    summary = "This OpenAPI 3.1 document",
    responses((status = 200, description = "The document", content_type = "application/json"),
        RateLimited)
)]
pub async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(document())
}
