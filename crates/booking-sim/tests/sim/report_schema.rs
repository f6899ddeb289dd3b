//! The report's JSON follows its documented schema (`report.schema.json` beside
//! the crate's manifest), and the Markdown beside it carries the same figures.
//! The schema is checked by a small validator of the JSON Schema keywords it uses
//! (type, const, enum, properties, required, additionalProperties, items,
//! minItems, maxItems, minimum, maximum, $ref), itself tested on bad documents.

use crate::common;

use booking_sim::run::{TargetSpec, Ui, run};
use serde_json::Value;

fn schema() -> Value {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/report.schema.json"))
        .expect("the schema file");
    serde_json::from_str(&text).expect("the schema is JSON")
}

fn type_ok(name: &str, v: &Value) -> bool {
    match name {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        "null" => v.is_null(),
        other => panic!("the validator does not know type {other}"),
    }
}

/// Every violation of `s` by `v`, with its JSON path.
fn validate(root: &Value, s: &Value, v: &Value, path: &str, errors: &mut Vec<String>) {
    if let Some(r) = s.get("$ref").and_then(Value::as_str) {
        let name = r.strip_prefix("#/$defs/").expect("local refs only");
        return validate(root, &root["$defs"][name], v, path, errors);
    }
    if let Some(t) = s.get("type") {
        let ok = match t {
            Value::String(n) => type_ok(n, v),
            Value::Array(ns) => ns.iter().any(|n| type_ok(n.as_str().unwrap_or(""), v)),
            _ => panic!("bad type keyword at {path}"),
        };
        if !ok {
            errors.push(format!("{path}: {v} is not of type {t}"));
            return;
        }
    }
    if let Some(c) = s.get("const")
        && c != v
    {
        errors.push(format!("{path}: {v} is not {c}"));
    }
    if let Some(e) = s.get("enum").and_then(Value::as_array)
        && !e.contains(v)
    {
        errors.push(format!("{path}: {v} is not one of {e:?}"));
    }
    if let Some(n) = v.as_f64() {
        if let Some(min) = s.get("minimum").and_then(Value::as_f64)
            && n < min
        {
            errors.push(format!("{path}: {n} < {min}"));
        }
        if let Some(max) = s.get("maximum").and_then(Value::as_f64)
            && n > max
        {
            errors.push(format!("{path}: {n} > {max}"));
        }
    }
    if let Some(o) = v.as_object() {
        let props = s.get("properties").and_then(Value::as_object);
        for r in s
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let k = r.as_str().expect("required names");
            if !o.contains_key(k) {
                errors.push(format!("{path}: missing {k}"));
            }
        }
        for (k, x) in o {
            let sub = format!("{path}.{k}");
            match props.and_then(|p| p.get(k)) {
                Some(ps) => validate(root, ps, x, &sub, errors),
                None => match s.get("additionalProperties") {
                    Some(Value::Bool(false)) => errors.push(format!("{sub}: not in the schema")),
                    Some(ap @ Value::Object(_)) => validate(root, ap, x, &sub, errors),
                    _ => {}
                },
            }
        }
    }
    if let Some(a) = v.as_array() {
        if let Some(min) = s.get("minItems").and_then(Value::as_u64)
            && (a.len() as u64) < min
        {
            errors.push(format!("{path}: {} items, at least {min}", a.len()));
        }
        if let Some(max) = s.get("maxItems").and_then(Value::as_u64)
            && (a.len() as u64) > max
        {
            errors.push(format!("{path}: {} items, at most {max}", a.len()));
        }
        if let Some(items) = s.get("items") {
            for (i, x) in a.iter().enumerate() {
                validate(root, items, x, &format!("{path}[{i}]"), errors);
            }
        }
    }
}

fn violations(doc: &Value) -> Vec<String> {
    let s = schema();
    let mut errors = Vec::new();
    validate(&s, &s, doc, "$", &mut errors);
    errors
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_follows_its_schema_and_the_markdown_has_the_same_figures() {
    let cfg = common::small(30, 2, 41);
    let o = run(&cfg, &TargetSpec::Memory, Ui::Quiet)
        .await
        .expect("run");
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("report.json");
    let md_path = o.report.write(&path).expect("written");
    let doc: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("JSON");
    let errors = violations(&doc);
    assert!(errors.is_empty(), "{errors:#?}");
    assert_eq!(doc["seed"], 41);
    assert_eq!(doc["audit"]["clean"], true);
    let hold_at = booking_sim::events::Op::Hold.index();
    assert_eq!(
        doc["operations"][hold_at]["name"], "hold",
        "operations come in flow order"
    );
    assert_eq!(doc["holds"]["ok"], doc["operations"][hold_at]["ok"]);

    let md = std::fs::read_to_string(md_path).expect("markdown");
    let hold = &o.report.operations[hold_at];
    assert!(
        md.contains(&format!("| hold | {} | {} |", hold.count, hold.ok)),
        "{md}"
    );
    assert!(md.contains("## Audit: clean"));
    for c in &o.report.audit.checks {
        assert!(
            md.contains(&format!("| {} | {} | passed |", c.id, c.invariant)),
            "{}",
            c.id
        );
    }

    // The validator is not a rubber stamp: it catches a missing key, an unknown
    // key, a wrong type and a value outside an enum.
    let mut bad = doc.clone();
    bad["holds"]
        .as_object_mut()
        .expect("object")
        .remove("conflicts");
    bad["surprise"] = Value::Bool(true);
    bad["payments"]["count"] = Value::String("many".into());
    bad["audit"]["checks"][0]["verdict"] = Value::String("fine".into());
    let errors = violations(&bad);
    assert_eq!(errors.len(), 4, "{errors:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_on_sale_report_follows_the_schema_too() {
    use booking_sim::run::{Onsale, Scenario};
    let mut cfg = common::small(60, 2, 42);
    cfg.scenario = Scenario::Onsale(Onsale {
        users: 60,
        arrive_within: std::time::Duration::from_millis(300),
        max_duration: std::time::Duration::from_secs(30),
        relooks: 1,
    });
    cfg.restock = false;
    cfg.policy = booking_core::domain::AdmissionPolicy::new(
        std::time::Duration::from_millis(50),
        Some(50),
        None,
    )
    .expect("policy");
    cfg.behaviour.p_abandon_queue = 0.0;
    let o = run(&cfg, &TargetSpec::Memory, Ui::Quiet)
        .await
        .expect("run");
    let doc: Value = serde_json::from_str(&o.report.to_json()).expect("JSON");
    let errors = violations(&doc);
    assert!(errors.is_empty(), "{errors:#?}");
    // 2 dates x 20 seats for 60 users: all 40 sold, in memory.
    assert_eq!(doc["onsale"]["capacity"], 40);
    assert_eq!(doc["onsale"]["sold"], 40);
    assert_eq!(doc["onsale"]["sold_counted_in"], "database");
    assert_eq!(doc["onsale"]["unanswered"], 0);
    assert_eq!(doc["onsale"]["server_cpu_secs_per_purchase"], Value::Null);
    let mut bad = doc.clone();
    bad["onsale"]["sold_counted_in"] = Value::String("guess".into());
    assert_eq!(violations(&bad).len(), 1);
}
