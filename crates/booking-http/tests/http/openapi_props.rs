//! The OpenAPI document against the server, over real HTTP. For every operation
//! that takes input, the test reads the request schemas from the served document
//! and checks two properties:
//!
//! - values generated from each declared schema are accepted: never a 400, and a
//!   422 only with a code the operation documents as depending on stored state or
//!   on the clock (a seat beyond its date's own seat count, the balance limit, ...);
//! - a value just outside each declared bound (a minimum, a maximum, a length, a
//!   pattern, a format, a required property, a closed object, an item count) is
//!   refused with a 4xx whose body is the JSON error shape.
//!
//! Never a 5xx. Every integer and every string a request takes must be bounded in
//! the document: the generator refuses to make up values for an unbounded one, so a
//! bound removed from the document fails this test.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use booking_core::domain::{AdmissionPolicy, UserId};
use booking_core::{Booking, Config, ManualClock, TokenSigner};
use booking_store::{AnyStore, SqliteStore};
use chrono::{Datelike, NaiveDate};
use proptest::prelude::*;
use proptest::strategy::{Union, ValueTree};
use proptest::test_runner::TestRunner;
use reqwest::{Client, Method, StatusCode};
use serde_json::{Map, Value, json};

const ADMIN_KEY: &str = "openapi-props-admin-key";

/// Valid requests generated per operation.
const CASES: usize = 48;

/// Seats of the date the server has.
const SEATS: i64 = 50;

/// Whether a 422 `code` to the schema-valid request `r` of `op` is one the
/// document says no schema can rule out: each depends on stored data or on the
/// clock, and each is checked against the request, so that a bound missing from
/// the document (a seat above 1000, an amount above the largest charge) is not
/// excused.
fn state_dependent(op: &str, r: &Request, code: &str, hints: &HashMap<&str, Value>) -> bool {
    let body = r.body.clone().unwrap_or(Value::Null);
    let int = |v: &Value| v.as_f64().map(|f| f as i64);
    match (op, code) {
        // A seat within 1..=1000 but beyond the existing date's own 50 seats.
        ("POST /v1/reservations", "invalid_seat") => {
            int(&body["concert_id"]) == int(&hints["concert_id"])
                && body["date"] == hints["date"]
                && int(&body["seat"]).is_some_and(|n| n > SEATS)
        }
        // The balance would pass the largest balance (after earlier charges); a
        // key sent again with another amount.
        ("POST /v1/users/{user_id}/charges", "balance_limit" | "idempotency_key_reused") => true,
        // The balance against the total; a key sent again for other reservations.
        ("POST /v1/payments", "insufficient_balance" | "idempotency_key_reused") => true,
        // The show time against the server's clock: in the future...
        ("POST /v1/admin/concerts/{id}/dates", "date_in_the_past") => {
            starts_at(&body).is_some_and(|t| t <= booking_testkit::T0.as_millis() / 1000 + 1)
        }
        // ...ten years ahead at most; and one price per seat.
        ("POST /v1/admin/concerts/{id}/dates", "invalid_input") => {
            let far = starts_at(&body)
                .is_some_and(|t| t > booking_testkit::T0.as_millis() / 1000 + 3_653 * 86_400 - 2);
            let seats = int(&body["seats"]).unwrap_or(SEATS);
            let mismatch = body["prices"]
                .as_array()
                .is_some_and(|p| p.len() as i64 != seats);
            far || mismatch
        }
        _ => false,
    }
}

fn starts_at(body: &Value) -> Option<i64> {
    let text = body["starts_at"].as_str()?;
    chrono::DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.timestamp())
}

struct Server {
    base: String,
    http: Client,
    token: String,
    /// Values that exist on the server, mixed into generated ones by name, so that
    /// valid requests reach past "no such concert" to the rules behind it.
    hints: HashMap<&'static str, Value>,
    _booking: Arc<Booking<AnyStore, ManualClock>>,
    _dir: tempfile::TempDir,
}

async fn start() -> Server {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = SqliteStore::open_path(&dir.path().join("props.db"), 4)
        .await
        .expect("store");
    let clock = ManualClock::new(booking_testkit::T0);
    let signer = TokenSigner::new(booking_testkit::SECRET).expect("signer");
    let booking = Arc::new(
        Booking::new(
            AnyStore::Sqlite(store),
            clock.clone(),
            signer,
            Config::default(),
        )
        .expect("booking"),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let app = booking_http::router(
        Arc::clone(&booking),
        booking_http::RouterOptions {
            admin_key: Some(ADMIN_KEY.into()),
            rate_limits: booking_http::limits::RateLimits::off(),
            storage: None,
            line: None,
        },
    );
    tokio::spawn(booking_http::serve(listener, app, std::future::pending()));

    let schedule = booking_testkit::concert_date(&booking, 50, None).await;
    let user = UserId::random();
    let http = Client::new();
    let issued: Value = http
        .post(format!("{base}/v1/queue/tokens"))
        .json(&json!({"user_id": user.to_string()}))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    let token = issued["token"].as_str().expect("token").to_owned();
    let policy = AdmissionPolicy::rate(1_000, Duration::from_millis(10)).expect("policy");
    booking.set_policy(policy).await.expect("policy");
    clock.advance(Duration::from_secs(1));
    booking.tick().await.expect("tick");

    let hints = HashMap::from([
        ("user_id", json!(user.to_string())),
        ("concert_id", json!(schedule.concert.get())),
        ("id", json!(schedule.concert.get())),
        ("date", json!(schedule.date().to_string())),
    ]);
    Server {
        base,
        http,
        token,
        hints,
        _booking: booking,
        _dir: dir,
    }
}

/// The schema `s` points to, following `$ref`s.
fn resolve<'a>(doc: &'a Value, s: &'a Value) -> &'a Value {
    match s["$ref"].as_str() {
        Some(r) => {
            let target = doc
                .pointer(r.trim_start_matches('#'))
                .unwrap_or_else(|| panic!("dangling reference {r}"));
            resolve(doc, target)
        }
        None => s,
    }
}

fn types(s: &Value) -> Vec<&str> {
    match &s["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

fn int_bounds(s: &Value, what: &str) -> (i64, i64) {
    let min = s["minimum"].as_i64();
    let max = s["maximum"].as_i64();
    match (min, max) {
        (Some(min), Some(max)) if min <= max => (min, max),
        _ => panic!("{what}: an integer without both bounds in the document: {s}"),
    }
}

fn uuid_text(n: u128, upper: bool) -> String {
    let t = uuid::Uuid::from_u128(n).hyphenated().to_string();
    if upper { t.to_uppercase() } else { t }
}

fn date_text(d: NaiveDate) -> String {
    format!("{:04}-{:02}-{:02}", d.year(), d.month(), d.day())
}

/// White space Rust's `str::trim` removes, for concert names.
const SPACES: &str = "[ \t\u{3000}\u{a0}]{0,2}";

/// Values valid by `s`. `name` is the property or parameter, for hints.
fn valid(doc: &Value, s: &Value, name: &str, hints: &HashMap<&str, Value>) -> BoxedStrategy<Value> {
    let s = resolve(doc, s);
    if name == "wait" {
        // The event feed's long poll: a wait only delays the same answer (the HTTP
        // tests wait), so it is tried without one.
        return Just(json!(0)).boxed();
    }
    let base = valid_here(doc, s, name, hints);
    let base = if types(s).contains(&"null") {
        prop_oneof![1 => Just(Value::Null), 4 => base].boxed()
    } else {
        base
    };
    match hints.get(name) {
        Some(h) if valid_by_type(s, h) => prop_oneof![1 => Just(h.clone()), 2 => base].boxed(),
        _ => base,
    }
}

fn valid_by_type(s: &Value, v: &Value) -> bool {
    let t = types(s);
    (t.contains(&"integer") && v.is_i64()) || (t.contains(&"string") && v.is_string())
}

fn valid_here(
    doc: &Value,
    s: &Value,
    name: &str,
    hints: &HashMap<&str, Value>,
) -> BoxedStrategy<Value> {
    if let Some(branches) = s["oneOf"].as_array() {
        return Union::new(branches.iter().map(|b| valid(doc, b, name, hints))).boxed();
    }
    let t = types(s);
    if t.contains(&"object") || s["properties"].is_object() {
        return valid_object(doc, s, hints);
    }
    if t.contains(&"array") {
        let item = valid(doc, &s["items"], name, hints);
        let min = s["minItems"].as_u64().unwrap_or(0) as usize;
        let max = s["maxItems"]
            .as_u64()
            .unwrap_or_else(|| panic!("{name}: a list without maxItems: {s}"))
            as usize;
        let unique = s["uniqueItems"] == true;
        return proptest::collection::vec(item, min..=max)
            .prop_filter("unique items", move |l| {
                !unique || l.iter().map(Value::to_string).collect::<HashSet<_>>().len() == l.len()
            })
            .prop_map(Value::Array)
            .boxed();
    }
    if t.contains(&"integer") {
        let (min, max) = int_bounds(s, name);
        return prop_oneof![Just(min), Just(max), min..=max]
            .prop_flat_map(|n| {
                // JSON Schema's integer is any number without a fraction: 5.0 too.
                let float = n.unsigned_abs() < (1 << 53);
                prop_oneof![3 => Just(json!(n)), 1 => Just(if float { json!(n as f64) } else { json!(n) })]
            })
            .boxed();
    }
    if t.contains(&"string") {
        return valid_string(s, name);
    }
    panic!("{name}: the test cannot generate values of {s}")
}

fn valid_object(doc: &Value, s: &Value, hints: &HashMap<&str, Value>) -> BoxedStrategy<Value> {
    let required: HashSet<&str> = s["required"]
        .as_array()
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let props = s["properties"].as_object().cloned().unwrap_or_default();
    let fields: Vec<BoxedStrategy<Option<(String, Value)>>> = props
        .iter()
        .map(|(k, ps)| {
            let key = k.clone();
            let value = valid(doc, ps, k, hints).prop_map(move |v| Some((key.clone(), v)));
            if required.contains(k.as_str()) {
                value.boxed()
            } else {
                prop_oneof![Just(None), value].boxed()
            }
        })
        .collect();
    let any_of = s["anyOf"].as_array().cloned();
    fields
        .prop_map(|fs| Value::Object(fs.into_iter().flatten().collect::<Map<_, _>>()))
        .prop_filter("one branch of anyOf", move |v| {
            any_of.as_ref().is_none_or(|branches| {
                branches.iter().any(|b| {
                    b["required"].as_array().is_some_and(|r| {
                        r.iter()
                            .filter_map(Value::as_str)
                            .all(|k| v.get(k).is_some_and(|x| !x.is_null()))
                    })
                })
            })
        })
        .boxed()
}

fn valid_string(s: &Value, name: &str) -> BoxedStrategy<Value> {
    let pattern = s["pattern"].as_str().unwrap_or("");
    if let Some(names) = s["enum"].as_array() {
        return proptest::sample::select(names.clone()).boxed();
    }
    match s["format"].as_str() {
        Some("uri") => {
            // A webhook URL: http or https, a host, maybe a port and a path.
            let max = s["maxLength"].as_u64().expect("maxLength");
            assert!(max >= 100, "{name}");
            proptest::string::string_regex(
                "[Hh][Tt][Tt][Pp][Ss]?://([a-z0-9-]{1,20}(\\.[a-z0-9-]{1,10}){0,3}|127\\.0\\.0\\.1)(:[1-9][0-9]{0,3})?(/[!-~]{0,40})?",
            )
            .expect("regex")
            .prop_map(Value::from)
            .boxed()
        }
        Some("uuid") => {
            assert_eq!(pattern, booking_http::openapi::UUID_PATTERN, "{name}");
            assert_eq!((&s["minLength"], &s["maxLength"]), (&json!(36), &json!(36)));
            (1..=u128::MAX, any::<bool>())
                .prop_map(|(n, upper)| json!(uuid_text(n, upper)))
                .boxed()
        }
        Some("date") => {
            assert_eq!(pattern, booking_http::openapi::DATE_PATTERN, "{name}");
            (1i32..=9999, 1u32..=12, 1u32..=31)
                .prop_filter_map("a day that exists", |(y, m, d)| {
                    NaiveDate::from_ymd_opt(y, m, d).map(|d| json!(date_text(d)))
                })
                .boxed()
        }
        Some("date-time") => {
            // Mostly within the next ten years of the server's clock, sometimes
            // anywhere from year 1 to 9999 (answered 422 by the window's rule).
            let t0 = booking_testkit::T0.as_millis() / 1000;
            let soon = (t0 + 60..t0 + 3_650 * 86_400).boxed();
            let anywhere = (-62_135_596_800i64..253_402_300_799).boxed();
            prop_oneof![3 => soon, 1 => anywhere]
                .prop_map(|secs| {
                    let t = chrono::DateTime::from_timestamp(secs, 0).expect("in range");
                    json!(t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                })
                .boxed()
        }
        Some(other) => panic!("{name}: unknown string format {other}"),
        None if pattern == booking_http::openapi::event_types_pattern() => {
            let names: Vec<&str> = booking_core::EventType::ALL
                .iter()
                .map(|t| t.as_str())
                .collect();
            proptest::sample::subsequence(names, 1..=8)
                .prop_map(|l| json!(l.join(",")))
                .boxed()
        }
        None if pattern == "^[!-~]+$" => {
            let max = s["maxLength"].as_u64().expect("maxLength");
            let min = s["minLength"].as_u64().unwrap_or(1);
            proptest::string::string_regex(&format!("[!-~]{{{min},{max}}}"))
                .expect("regex")
                .prop_map(Value::from)
                .boxed()
        }
        None if pattern.starts_with("^[\\t\\n") => {
            // A concert name: 1 to 200 characters once trimmed, no control characters.
            let core = proptest::string::string_regex(
                "[A-Za-z0-9\u{e9}\u{4e2d}]([A-Za-z0-9\u{e9} .'&-]{0,30}[A-Za-z0-9])?",
            )
            .expect("regex");
            let space = || proptest::string::string_regex(SPACES).expect("regex");
            prop_oneof![
                (space(), core, space()).prop_map(|(a, c, b)| json!(format!("{a}{c}{b}"))),
                Just(json!("x".repeat(200))),
                Just(json!(format!(" {} ", "\u{e9}".repeat(200)))),
            ]
            .boxed()
        }
        None => panic!("{name}: a string without a format or a known pattern: {s}"),
    }
}

/// Values just outside the bounds `s` declares, each with what it breaks. In a
/// path or a header (`text`) every value is text, so a wrong JSON type is no case.
fn outside(doc: &Value, s: &Value, text: bool) -> Vec<(String, Value)> {
    let s = resolve(doc, s);
    let mut out: Vec<(String, Value)> = Vec::new();
    let t = types(s);
    if t.contains(&"integer") {
        let (min, max) = int_bounds(s, "integer");
        if let Some(below) = min.checked_sub(1) {
            out.push(("below the minimum".into(), json!(below)));
        }
        match max.checked_add(1) {
            Some(above) => out.push(("above the maximum".into(), json!(above))),
            None => out.push(("above the maximum".into(), json!(max as u64 + 1))),
        }
        out.push(("a fraction".into(), json!(min as f64 + 0.5)));
        if !text {
            out.push(("a string".into(), json!(min.to_string())));
        }
    } else if t.contains(&"string") {
        let good = "7d444840-9dc0-11d1-b245-5ffdce74fad2";
        match s["format"].as_str() {
            Some("uuid") => {
                out.push(("35 characters".into(), json!(&good[..35])));
                out.push(("37 characters".into(), json!(format!("{good}0"))));
                out.push(("not hex".into(), json!(good.replace('7', "g"))));
                out.push(("no hyphens".into(), json!(good.replace('-', ""))));
                out.push((
                    "the nil UUID".into(),
                    json!("00000000-0000-0000-0000-000000000000"),
                ));
                out.push(("a space before".into(), json!(format!(" {good}"))));
                out.push(("braces".into(), json!(format!("{{{good}}}"))));
            }
            Some("date") => {
                for bad in [
                    "2026-1-01",
                    "2026-02-30",
                    "0000-01-01",
                    "26-01-01",
                    "2026-01-01 ",
                ] {
                    out.push((format!("the date {bad:?}"), json!(bad)));
                }
            }
            Some("date-time") => {
                out.push(("not a date-time".into(), json!("2026-13-01T00:00:00Z")));
                out.push(("no zone".into(), json!("2026-12-01T00:00:00")));
            }
            Some("uri") => {
                for bad in [
                    "ftp://example.com/",
                    "example.com/hook",
                    "http://",
                    "http://user:pw@example.com/",
                    "http://exa mple.com/",
                ] {
                    out.push((format!("the URL {bad:?}"), json!(bad)));
                }
            }
            _ => {}
        }
        if s["enum"].is_array() {
            out.push(("not in the list".into(), json!("no.such.value")));
        }
        if let Some(min) = s["minLength"].as_u64().filter(|&m| m > 1) {
            out.push(("too short".into(), json!("k".repeat(min as usize - 1))));
        }
        if let Some(max) = s["maxLength"].as_u64() {
            out.push(("too long".into(), json!("k".repeat(max as usize + 1))));
        }
        let pattern = s["pattern"].as_str().unwrap_or("");
        if pattern == booking_http::openapi::event_types_pattern() {
            out.push(("an unknown type".into(), json!("hold.created,hold.made")));
            out.push(("an empty item".into(), json!("hold.created,")));
        }
        if pattern == "^[!-~]+$" {
            out.push(("a space".into(), json!("a b")));
        } else if pattern.starts_with("^[\\t\\n") {
            out.push(("empty".into(), json!("")));
            out.push(("only spaces".into(), json!("   ")));
            out.push(("201 characters".into(), json!("n".repeat(201))));
            out.push(("a control character".into(), json!("a\u{1}b")));
        }
        if !text {
            out.push(("a number".into(), json!(7)));
        }
    } else if t.contains(&"array") {
        let min = s["minItems"].as_u64().unwrap_or(0) as usize;
        let max = s["maxItems"].as_u64().expect("maxItems") as usize;
        let item = sample(doc, &s["items"]);
        if min > 0 {
            out.push(("too few items".into(), json!(vec![item.clone(); min - 1])));
        }
        let many: Vec<Value> = (0..=max).map(|_| sample(doc, &s["items"])).collect();
        out.push(("too many items".into(), Value::Array(many)));
        if s["uniqueItems"] == true {
            out.push(("an item twice".into(), json!([item.clone(), item])));
        }
    }
    out
}

/// One valid value of `s`.
fn sample(doc: &Value, s: &Value) -> Value {
    let mut runner = TestRunner::deterministic();
    valid(doc, s, "", &HashMap::new())
        .new_tree(&mut runner)
        .expect("a value")
        .current()
}

/// The branch of a `oneOf` body that `body` is an instance of.
fn branch_of<'a>(doc: &'a Value, s: &'a Value, body: &Value) -> &'a Value {
    let s = resolve(doc, s);
    match s["oneOf"].as_array() {
        None => s,
        Some(branches) => branches
            .iter()
            .map(|b| resolve(doc, b))
            .find(|b| {
                b["required"].as_array().is_some_and(|r| {
                    r.iter()
                        .filter_map(Value::as_str)
                        .all(|k| body.get(k).is_some())
                })
            })
            .expect("a branch"),
    }
}

/// One request of an operation.
#[derive(Clone, Debug)]
struct Request {
    path: BTreeMap<String, Value>,
    query: BTreeMap<String, Value>,
    headers: BTreeMap<String, Value>,
    body: Option<Value>,
}

/// An operation's inputs as the document declares them.
struct Operation<'a> {
    method: String,
    path: String,
    admin: bool,
    params: Vec<(&'a str, &'a str, &'a Value)>,
    body: Option<&'a Value>,
}

impl Operation<'_> {
    fn label(&self) -> String {
        format!("{} {}", self.method.to_uppercase(), self.path)
    }

    fn generate(&self, doc: &Value, hints: &HashMap<&str, Value>) -> BoxedStrategy<Request> {
        let params: Vec<BoxedStrategy<(String, String, Value)>> = self
            .params
            .iter()
            .map(|(name, place, s)| {
                let (n, p) = ((*name).to_owned(), (*place).to_owned());
                valid(doc, s, name, hints)
                    .prop_map(move |v| (n.clone(), p.clone(), v))
                    .boxed()
            })
            .collect();
        let body = match self.body {
            Some(s) => valid(doc, s, "", hints).prop_map(Some).boxed(),
            None => Just(None).boxed(),
        };
        (params, body)
            .prop_map(|(params, body)| {
                let mut r = Request {
                    path: BTreeMap::new(),
                    query: BTreeMap::new(),
                    headers: BTreeMap::new(),
                    body,
                };
                for (name, place, v) in params {
                    match place.as_str() {
                        "path" => r.path.insert(name, v),
                        "query" => r.query.insert(name, v),
                        "header" => r.headers.insert(name, v),
                        other => panic!("{name}: parameters in {other} are not tested"),
                    };
                }
                r
            })
            .boxed()
    }

    /// Requests that each break one declared bound of a valid `r`.
    fn broken(&self, doc: &Value, r: &Request) -> Vec<(String, Request)> {
        let mut out = Vec::new();
        for (name, place, s) in &self.params {
            for (what, v) in outside(doc, s, true) {
                let mut b = r.clone();
                match *place {
                    "path" => b.path.insert((*name).to_owned(), v),
                    "query" => b.query.insert((*name).to_owned(), v),
                    _ => b.headers.insert((*name).to_owned(), v),
                };
                out.push((format!("{place} {name}: {what}"), b));
            }
        }
        let (Some(schema), Some(body)) = (self.body, &r.body) else {
            return out;
        };
        let shape = branch_of(doc, schema, body);
        let props = shape["properties"].as_object().cloned().unwrap_or_default();
        for (key, ps) in &props {
            for (what, v) in outside(doc, ps, false) {
                let mut b = r.clone();
                b.body.as_mut().expect("body")[key] = v;
                out.push((format!("body {key}: {what}"), b));
            }
            // A list with one item outside the items' bounds.
            let ps = resolve(doc, ps);
            if types(ps).contains(&"array") {
                for (what, v) in outside(doc, &ps["items"], false) {
                    let mut b = r.clone();
                    b.body.as_mut().expect("body")[key] = json!([v]);
                    out.push((format!("body {key}: an item {what}"), b));
                }
            }
        }
        for key in shape["required"].as_array().into_iter().flatten() {
            let key = key.as_str().expect("name");
            let mut b = r.clone();
            b.body
                .as_mut()
                .and_then(Value::as_object_mut)
                .expect("object")
                .remove(key);
            out.push((format!("body: without {key}"), b));
        }
        if shape["additionalProperties"] == false {
            let mut b = r.clone();
            b.body.as_mut().expect("body")["unexpected"] = json!(1);
            out.push(("body: an unknown property".into(), b));
        }
        if shape["anyOf"].is_array() {
            let mut b = r.clone();
            for branch in shape["anyOf"].as_array().into_iter().flatten() {
                for key in branch["required"].as_array().into_iter().flatten() {
                    b.body.as_mut().expect("body")[key.as_str().expect("name")] = Value::Null;
                }
            }
            out.push(("body: no branch of anyOf".into(), b));
        }
        out.push((
            "body: not an object".into(),
            Request {
                body: Some(json!([])),
                ..r.clone()
            },
        ));
        out
    }
}

fn operations(doc: &Value) -> Vec<Operation<'_>> {
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            let params: Vec<(&str, &str, &Value)> = op["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| {
                    (
                        p["name"].as_str().expect("name"),
                        p["in"].as_str().expect("in"),
                        &p["schema"],
                    )
                })
                .collect();
            let body = op["requestBody"]["content"]["application/json"]
                .get("schema")
                .filter(|s| s.is_object());
            if params.is_empty() && body.is_none() {
                continue;
            }
            let admin = op["security"].to_string().contains("admin_key");
            ops.push(Operation {
                method: method.clone(),
                path: path.clone(),
                admin,
                params,
                body,
            });
        }
    }
    ops
}

/// A parameter's value as a client writes it in a path or a header: an integer as
/// its digits (a generated `5.0` is the integer 5).
fn param_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) if n.is_f64() => {
            let f = n.as_f64().unwrap_or_default();
            if f.fract() == 0.0 && f.abs() < 9.0e15 {
                format!("{}", f as i64)
            } else {
                n.to_string()
            }
        }
        other => other.to_string(),
    }
}

/// Percent-encodes a path segment or a query value.
fn segment(v: &Value) -> String {
    param_text(v)
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

impl Server {
    async fn send(&self, op: &Operation<'_>, r: &Request) -> (StatusCode, Value) {
        let mut path = op.path.clone();
        for (name, v) in &r.path {
            path = path.replace(&format!("{{{name}}}"), &segment(v));
        }
        let query: Vec<String> = r
            .query
            .iter()
            .map(|(k, v)| format!("{}={}", segment(&json!(k)), segment(v)))
            .collect();
        if !query.is_empty() {
            path = format!("{path}?{}", query.join("&"));
        }
        let method: Method = op.method.to_uppercase().parse().expect("method");
        let mut req = self.http.request(method, format!("{}{}", self.base, path));
        req = req.bearer_auth(if op.admin { ADMIN_KEY } else { &self.token });
        for (name, v) in &r.headers {
            req = req.header(name.as_str(), param_text(v));
        }
        if let Some(b) = &r.body {
            req = req.json(b);
        }
        let resp = req.send().await.expect("send");
        let status = resp.status();
        let text = resp.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }
}

/// A request, cut short for a failure message.
fn short(r: &Request) -> String {
    let text = format!("{r:?}");
    match text.char_indices().nth(400) {
        Some((i, _)) => format!("{}...", &text[..i]),
        None => text,
    }
}

fn error_code(v: &Value) -> Option<&str> {
    v["error"]["code"]
        .as_str()
        .filter(|_| v["error"]["message"].is_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_the_document_allows_are_accepted_and_values_outside_it_refused() {
    let server = start().await;
    let doc: Value = server
        .http
        .get(format!("{}/openapi.json", server.base))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    let ops = operations(&doc);
    let labels: Vec<String> = ops.iter().map(Operation::label).collect();
    for expected in [
        "POST /v1/queue/tokens",
        "POST /v1/reservations",
        "DELETE /v1/reservations/{id}",
        "POST /v1/users/{user_id}/charges",
        "POST /v1/payments",
        "GET /v1/concerts/{id}/dates/{date}/seats",
        "POST /v1/admin/concerts",
        "POST /v1/admin/concerts/{id}/dates",
        "PUT /v1/admin/queue/policy",
    ] {
        assert!(
            labels.iter().any(|l| l == expected),
            "{expected} not in {labels:?}"
        );
    }

    let mut runner = TestRunner::deterministic();
    let (mut accepted, mut refused) = (0, 0);
    for op in &ops {
        let strategy = op.generate(&doc, &server.hints);
        let mut last = None;
        for _ in 0..CASES {
            let r = strategy.new_tree(&mut runner).expect("a request").current();
            let (status, body) = server.send(op, &r).await;
            let label = op.label();
            assert!(
                !status.is_server_error(),
                "{label}: {status} for valid {}: {body}",
                short(&r)
            );
            if status.is_client_error() {
                let code = error_code(&body)
                    .unwrap_or_else(|| panic!("{label}: {status} without the JSON error: {body}"));
                let fine = matches!(status.as_u16(), 403 | 404 | 409)
                    || (status == StatusCode::UNPROCESSABLE_ENTITY
                        && state_dependent(&label, &r, code, &server.hints));
                assert!(
                    fine,
                    "{label}: schema-valid {} refused with {status} {body}",
                    short(&r)
                );
            }
            accepted += 1;
            last = Some(r);
        }
        let r = last.expect("a valid request");
        for (what, b) in op.broken(&doc, &r) {
            let (status, body) = server.send(op, &b).await;
            let label = op.label();
            assert!(
                status.is_client_error() && error_code(&body).is_some(),
                "{label}: {what}: {status} {body} for {}",
                short(&b)
            );
            refused += 1;
        }
    }
    eprintln!(
        "{} operations: {accepted} schema-valid requests accepted, {refused} just outside refused",
        ops.len()
    );
    // Every operation with input was tried both ways.
    assert_eq!(accepted, CASES * ops.len());
    assert!(refused >= 3 * ops.len(), "only {refused} refusals tried");
}
