//! The OpenAPI 3.1 document, generated from the handlers' `#[utoipa::path]`
//! annotations and the wire types' `ToSchema` derives, served at `GET /openapi.json`.
//! The tests check that it lists exactly the routes of [`crate::ROUTES`].
//!
//! The document says exactly what the server accepts, so that a client generated
//! from it validates before sending and a schema-driven fuzzer finds no request the
//! document allows and the server refuses: `constrain` writes every bound the
//! server checks (UUID and date shapes, seat, amount, price and policy ranges, the
//! `Idempotency-Key`, the concert name, the event stream's events) into the
//! generated document, with the bounds of the running server's [`Config`]. What no
//! schema can say (a seat within its date's own seat count, a show time in the
//! future, a balance limit) gets a documented 4xx of its operation.

use axum::Json;
use axum::extract::State;
use booking_core::domain::{
    AdmissionPolicy, ConcertName, EventType, IdempotencyKey, MAX_WEBHOOK_TYPES, SeatCount,
    WebhookSecret, WebhookUrl,
};
use booking_core::{Clock, Config, Store};
use serde_json::{Value, json};

use crate::AppState;
use crate::error::RateLimited;
use utoipa::Modify;
use utoipa::OpenApi;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, Http, HttpAuthScheme, SecurityScheme};

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
        crate::webhooks::add,
        crate::webhooks::list,
        crate::webhooks::remove,
        crate::webhooks::retry,
        crate::feed::events,
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
        // Only the event stream takes it: a browser's EventSource cannot set headers.
        components.add_security_scheme(
            "queue_token_query",
            SecurityScheme::ApiKey(ApiKey::Query(ApiKeyValue::with_description(
                "token",
                "The queue token as the `token` query parameter (the event stream only, for \
                 clients that cannot set headers; `Authorization` wins when both are sent)",
            ))),
        );
        let mut admin = Http::new(HttpAuthScheme::Bearer);
        admin.description = Some("The server's admin key".into());
        components.add_security_scheme("admin_key", SecurityScheme::Http(admin));
    }
}

/// The document with the default [`Config`]'s bounds, as JSON.
pub fn document() -> Value {
    document_for(&Config::default())
}

/// The document with the bounds of `config` (the largest charge, the largest
/// balance), as JSON.
pub fn document_for(config: &Config) -> Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_else(|_| json!({}));
    constrain(&mut doc, config);
    doc
}

/// A UUID as the API takes it: the 36-character hyphenated form (either case), not
/// the nil UUID. The server refuses any other spelling with 400.
pub const UUID_PATTERN: &str = "^(?!0{8}-0{4}-0{4}-0{4}-0{12}$)[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-\
                                [0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$";

/// A calendar date as the API takes it: exactly `YYYY-MM-DD` (year 0001 to 9999,
/// a day that exists; `format: date` says the second part).
pub const DATE_PATTERN: &str = "^[0-9]{4}-[0-9]{2}-[0-9]{2}$";

/// A concert name: at most [`ConcertName::MAX_CHARS`] characters once the
/// white space around it is trimmed, at least one, and no control characters.
/// The white space is what Rust's `str::trim` removes (Unicode `White_Space`),
/// spelled out because `\s` differs between regular-expression dialects.
fn concert_name_pattern() -> String {
    const WS: &str =
        r"\t\n\u000b\u000c\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000";
    // Neither a control character nor white space: the first and last kept.
    const EDGE: &str =
        r"[^\u0000-\u0020\u007f-\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]";
    const INNER: &str = r"[^\u0000-\u001f\u007f-\u009f]";
    let inner_max = ConcertName::MAX_CHARS - 2;
    format!("^[{WS}]*{EDGE}(?:{INNER}{{0,{inner_max}}}{EDGE})?[{WS}]*$")
}

fn uuid_schema(description: &str) -> Value {
    json!({
        "type": "string",
        "format": "uuid",
        "minLength": 36,
        "maxLength": 36,
        "pattern": UUID_PATTERN,
        "description": description,
    })
}

fn date_schema(description: &str) -> Value {
    json!({
        "type": "string",
        "format": "date",
        "minLength": 10,
        "maxLength": 10,
        "pattern": DATE_PATTERN,
        "description": description,
        "example": "2026-12-24",
    })
}

fn int_schema(min: i64, max: i64, description: &str) -> Value {
    json!({
        "type": "integer",
        "format": "int64",
        "minimum": min,
        "maximum": max,
        "description": description,
    })
}

/// Replaces the value at `pointer` (which must exist: a renamed field fails the
/// document's tests rather than going unconstrained).
fn set(doc: &mut Value, pointer: &str, value: Value) {
    match doc.pointer_mut(pointer) {
        Some(slot) => *slot = value,
        None => panic!("the OpenAPI document has no {pointer}"),
    }
}

/// Sets the schema of the parameter `name` of every operation that has one (in
/// `paths` starting with `prefix`).
fn set_param(doc: &mut Value, prefix: &str, name: &str, schema: &Value) {
    let mut found = false;
    let Some(paths) = doc.pointer_mut("/paths").and_then(Value::as_object_mut) else {
        return;
    };
    for (path, item) in paths.iter_mut() {
        if !path.starts_with(prefix) {
            continue;
        }
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        for op in item.values_mut() {
            let Some(params) = op.get_mut("parameters").and_then(Value::as_array_mut) else {
                continue;
            };
            for p in params.iter_mut().filter(|p| p["name"] == name) {
                p["schema"] = schema.clone();
                found = true;
            }
        }
    }
    assert!(found, "no operation under {prefix} has a parameter {name}");
}

/// The `types` filter of the event feed: event types, comma-separated.
pub fn event_types_pattern() -> String {
    let names: Vec<String> = booking_core::EventType::ALL
        .iter()
        .map(|t| t.as_str().replace('.', "\\."))
        .collect();
    let one = format!("({})", names.join("|"));
    format!("^{one}(,{one})*$")
}

/// The bounds of the event feed's query.
fn constrain_feed(doc: &mut Value) {
    let path = "/v1/admin/events";
    set_param(
        doc,
        path,
        "after",
        &int_schema(
            0,
            i64::MAX,
            "The events after this id (default 0: from the oldest kept)",
        ),
    );
    set_param(
        doc,
        path,
        "limit",
        &int_schema(1, 1_000, "How many at most (default 100)"),
    );
    set_param(
        doc,
        path,
        "wait",
        &int_schema(
            0,
            crate::feed::MAX_WAIT_SECS as i64,
            "Seconds to wait when there is no event yet (default 0); the answer comes as \
             soon as one arrives",
        ),
    );
    set_param(
        doc,
        path,
        "types",
        &json!({
            "type": "string",
            "maxLength": 200,
            "pattern": event_types_pattern(),
            "description": "Only these types, comma-separated (default: every type)",
            "example": "hold.created,payment.completed",
        }),
    );
}

/// Writes every bound the server checks into the generated document.
fn constrain(doc: &mut Value, config: &Config) {
    constrain_feed(doc);
    let seats = i64::from(SeatCount::MAX);
    let max_charge = config.max_charge.minor_units();
    let max_balance = config.max_balance.minor_units();
    let s = "/components/schemas";

    // Bodies.
    set(
        doc,
        &format!("{s}/TokenRequest/properties/user_id"),
        uuid_schema("The user's UUID"),
    );
    set(
        doc,
        &format!("{s}/HoldRequest/properties/concert_id"),
        int_schema(1, i64::MAX, "The concert"),
    );
    set(
        doc,
        &format!("{s}/HoldRequest/properties/date"),
        date_schema("The show's date, exactly `YYYY-MM-DD` (UTC)"),
    );
    set(
        doc,
        &format!("{s}/HoldRequest/properties/seat"),
        int_schema(
            1,
            seats,
            "The seat: 1 to the date's seat count (at most 1000; a seat beyond the date's \
             own count is refused with 422 `invalid_seat`, which names that count)",
        ),
    );
    set(
        doc,
        &format!("{s}/ChargeRequest/properties/amount"),
        int_schema(
            1,
            max_charge,
            "In minor units: 1 to the largest single charge. A charge that would take the \
             balance over the largest balance is refused with 422 `balance_limit`",
        ),
    );
    for pointer in [
        format!("{s}/PayRequest/oneOf/0/properties/reservation_id"),
        format!("{s}/PayRequest/oneOf/1/properties/reservation_ids/items"),
    ] {
        set(
            doc,
            &pointer,
            uuid_schema("A held reservation of the caller"),
        );
    }
    set(
        doc,
        &format!("{s}/NewConcertDto/properties/name"),
        json!({
            "type": "string",
            "pattern": concert_name_pattern(),
            "description": format!(
                "The name: 1 to {} characters once the white space around it is trimmed, \
                 no control characters",
                ConcertName::MAX_CHARS
            ),
        }),
    );
    let price = int_schema(
        1,
        max_balance,
        "In minor units: at least 1 and at most the largest balance a user may hold, so \
         that every seat can be paid for",
    );
    let starts_at = json!({
        "type": "string",
        "format": "date-time",
        "description": "When the show starts, RFC 3339 (`2026-12-24T19:00:00Z`): in the future \
                        (else 422 `date_in_the_past`) and at most 3,653 days (ten years) ahead \
                        (else 422 `invalid_input`)",
    });
    let seat_count = json!({
        "type": ["integer", "null"],
        "format": "int64",
        "minimum": 1,
        "maximum": seats,
        "description": "Seats, 1 to 1000; 50 when left out",
    });
    set(
        doc,
        &format!("{s}/NewDateDto"),
        json!({
            "description": "A new date: its start, its seat count, and one price for every seat \
                            (`price`) or one per seat (`prices`, exactly as many as the seats, \
                            else 422 `invalid_input`)",
            "oneOf": [
                {
                    "type": "object",
                    "properties": {"starts_at": starts_at, "seats": seat_count, "price": price},
                    "required": ["starts_at", "price"],
                    "additionalProperties": false,
                },
                {
                    "type": "object",
                    "properties": {
                        "starts_at": starts_at,
                        "seats": seat_count,
                        "prices": {
                            "type": "array",
                            "items": price,
                            "minItems": 1,
                            "maxItems": seats,
                            "description": "One price per seat, seat 1 first",
                        },
                    },
                    "required": ["starts_at", "prices"],
                    "additionalProperties": false,
                },
            ],
        }),
    );
    let policy = format!("{s}/PolicyDto");
    set(
        doc,
        &format!("{policy}/properties/interval_ms"),
        int_schema(
            i64::from(AdmissionPolicy::MIN_INTERVAL_MS),
            i64::from(AdmissionPolicy::MAX_INTERVAL_MS),
            "Tick interval in milliseconds (10 ms to one hour)",
        ),
    );
    for (field, max, what) in [
        (
            "batch",
            AdmissionPolicy::MAX_BATCH,
            "Users admitted per tick at most (rate policy)",
        ),
        (
            "max_active",
            AdmissionPolicy::MAX_ACTIVE,
            "Active users at most (capacity policy)",
        ),
    ] {
        let mut schema = int_schema(1, i64::from(max), what);
        schema["type"] = json!(["integer", "null"]);
        set(doc, &format!("{policy}/properties/{field}"), schema);
    }
    if let Some(p) = doc.pointer_mut(&policy) {
        p["anyOf"] = json!([
            {"required": ["batch"], "properties": {"batch": {"type": "integer"}}},
            {"required": ["max_active"], "properties": {"max_active": {"type": "integer"}}},
        ]);
        p["description"] = json!("The admission policy: a batch, a capacity, or both");
    }

    // Webhooks.
    set(
        doc,
        &format!("{s}/NewWebhookDto/properties/url"),
        json!({
            "type": "string",
            "format": "uri",
            "maxLength": WebhookUrl::MAX_LEN,
            "description": "Where to post: an absolute `http://` or `https://` URL with a host \
                            and no user name or password (else 422 `invalid_input`)",
        }),
    );
    let mut type_names: Vec<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
    type_names.extend(["*", "all"]);
    set(
        doc,
        &format!("{s}/NewWebhookDto/properties/types"),
        json!({
            "type": "array",
            "items": {"type": "string", "enum": type_names},
            "maxItems": MAX_WEBHOOK_TYPES,
            "description": "The event types to deliver; missing, empty, `*` or `all`: every type",
        }),
    );
    set(
        doc,
        &format!("{s}/NewWebhookDto/properties/secret"),
        json!({
            "type": ["string", "null"],
            "minLength": WebhookSecret::MIN_LEN,
            "maxLength": WebhookSecret::MAX_LEN,
            "pattern": "^[!-~]+$",
            "description": "The signing secret, 16 to 200 visible ASCII characters; generated \
                            when missing. Returned in the answer of this call only",
        }),
    );

    // Parameters.
    let concert = int_schema(1, i64::MAX, "The concert");
    set_param(doc, "/v1/concerts/", "id", &concert);
    set_param(doc, "/v1/admin/concerts/", "id", &concert);
    set_param(
        doc,
        "/v1/admin/webhooks/",
        "id",
        &int_schema(1, i64::MAX, "The endpoint's id"),
    );
    set_param(
        doc,
        "/v1/concerts/",
        "date",
        &date_schema("The show's date, exactly `YYYY-MM-DD` (UTC)"),
    );
    set_param(
        doc,
        "/v1/reservations/",
        "id",
        &uuid_schema("The reservation id"),
    );
    set_param(
        doc,
        "/v1/users/",
        "user_id",
        &uuid_schema("Must be the token's user"),
    );
    set_param(
        doc,
        "/v1/",
        "Idempotency-Key",
        &json!({
            "type": "string",
            "minLength": 1,
            "maxLength": IdempotencyKey::MAX_LEN,
            "pattern": "^[!-~]+$",
            "description": "1 to 100 visible ASCII characters: a retry with the same key returns \
                            the first answer instead of acting twice",
        }),
    );

    // The event stream: each event, as OpenAPI 3.1 describes a sequential media type
    // (the schema of one event, its `data` a JSON document of its own).
    let events = "/paths/~1v1~1queue~1events/get/responses/200/content/text~1event-stream/schema";
    set(
        doc,
        events,
        json!({"$ref": "#/components/schemas/QueueEvent"}),
    );
    if let Some(schemas) = doc.pointer_mut(s).and_then(Value::as_object_mut) {
        let event = |name: &str, body: &str, what: &str| {
            json!({
                "type": "object",
                "description": what,
                "properties": {
                    "event": {"type": "string", "const": name},
                    "data": {
                        "type": "string",
                        "contentMediaType": "application/json",
                        "contentSchema": {"$ref": format!("#/components/schemas/{body}")},
                    },
                    "retry": {"type": "integer", "minimum": 0},
                    "id": {"type": "string"},
                },
                "required": ["event", "data"],
            })
        };
        schemas.insert(
            "QueueStatusEvent".into(),
            event(
                "status",
                "QueueDto",
                "`event: status`: the token's status, the JSON of `GET /v1/queue/status`; \
                 `retry` is its `poll_after_ms`",
            ),
        );
        schemas.insert(
            "QueueErrorEvent".into(),
            event(
                "error",
                "ErrorBody",
                "`event: error`: the stream could not go on (for instance the token became \
                 unknown); the last event of the stream",
            ),
        );
        schemas.insert(
            "QueueEvent".into(),
            json!({
                "description": "One event of the stream",
                "oneOf": [
                    {"$ref": "#/components/schemas/QueueStatusEvent"},
                    {"$ref": "#/components/schemas/QueueErrorEvent"},
                ],
            }),
        );
    }
}

#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    summary = "This OpenAPI 3.1 document",
    responses((status = 200, description = "The document", content_type = "application/json"),
        RateLimited)
)]
pub async fn openapi_json<S: Store + Clone, C: Clock>(
    State(st): State<AppState<S, C>>,
) -> Json<Value> {
    Json(document_for(st.booking.config()))
}
