//! The `booking` binary tested as a process: every command, the `--json` shapes, the
//! messages and exit codes of bad input, `serve`, and PostgreSQL.

mod common;

use common::{Run, Sandbox, http, in_days, user};
use serde_json::Value;

const OK: i32 = 0;
const FAILURE: i32 = 1;
const BAD_INPUT: i32 = 2;
const NOT_FOUND: i32 = 3;
const CONFLICT: i32 = 4;
const REFUSED: i32 = 5;

/// A sandbox with a migrated, seeded SQLite database.
fn seeded() -> Sandbox {
    let sb = Sandbox::new();
    sb.run(&["seed"]).ok();
    sb
}

/// A token for a new user, admitted (the command ticks while it waits).
fn admitted(sb: &Sandbox) -> (String, String) {
    let u = user();
    let token = sb.run(&["token", "take", "--user", &u]).ok();
    sb.run(&["status", "--wait", "--token", &token]).ok();
    (u, token)
}

fn keys(v: &Value) -> Vec<&str> {
    let mut k: Vec<&str> = v
        .as_object()
        .unwrap_or_else(|| panic!("an object: {v}"))
        .keys()
        .map(String::as_str)
        .collect();
    k.sort_unstable();
    k
}

/// The number in front of the newest SQLite migration.
fn newest_migration() -> i64 {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../migrations/sqlite");
    std::fs::read_dir(dir)
        .expect("migrations")
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            name.split('_').next()?.parse().ok()
        })
        .max()
        .expect("a migration")
}

#[test]
fn help_lists_every_command_and_the_exit_codes() {
    let sb = Sandbox::new();
    let help = sb.run(&["--help"]).ok();
    for command in [
        "serve",
        "migrate",
        "seed",
        "concert",
        "schedule",
        "queue",
        "holds",
        "sales",
        "wallet",
        "events",
        "token",
        "status",
        "dates",
        "seats",
        "hold",
        "cancel",
        "reservations",
        "charge",
        "balance",
        "pay",
        "payments",
    ] {
        assert!(
            help.lines()
                .any(|l| l.trim_start().starts_with(&format!("{command} "))),
            "{command} in --help:\n{help}"
        );
    }
    for code in 0..=5 {
        assert!(help.contains(&format!("\n  {code}  ")), "exit code {code}");
    }
    let serve_help = sb.run(&["serve", "--help"]).ok();
    for env in [
        "DATABASE_URL",
        "BOOKING_BIND",
        "BOOKING_HOLD_TTL",
        "BOOKING_POLICY",
        "BOOKING_TOKEN_SECRET",
        "BOOKING_ADMIN_KEY",
        "BOOKING_RATE_LIMIT_IP",
        "BOOKING_RATE_LIMIT_TOKEN",
        "BOOKING_RATE_LIMIT_BURST",
        "RUST_LOG",
    ] {
        assert!(serve_help.contains(env), "{env} in serve --help");
    }
    assert!(sb.run(&["--version"]).ok().starts_with("booking "));
    assert!(!sb.path().join("booking.db").exists(), "help opens nothing");
}

#[test]
fn usage_errors_exit_2_from_clap() {
    let sb = Sandbox::new();
    for args in [
        &["frobnicate"][..],
        &[][..],
        &["hold", "1"][..],
        &["schedule", "add", "1", "--date", "2030-01-01"][..],
        &["seats", "one", "2030-01-01"][..],
        &["serve", "--bind", "not-an-address"][..],
        &["serve", "--hold-ttl", "5 years"][..],
        &["serve", "--policy", "batch=0"][..],
    ] {
        let r = sb.run(args);
        assert_eq!(r.code, BAD_INPUT, "{args:?}: {r:#?}");
        assert!(!r.stderr.contains("panicked"), "{r:#?}");
    }
}

#[test]
fn migrate_creates_the_database_and_reports_the_schema_version() {
    let sb = Sandbox::new();
    let first = sb.run(&["migrate", "--json"]).json();
    assert_eq!(
        keys(&first),
        ["backend", "created", "database", "schema_version"]
    );
    assert_eq!(first["backend"], "sqlite");
    assert_eq!(first["created"], true);
    assert_eq!(first["database"], "sqlite://booking.db");
    assert_eq!(first["schema_version"], newest_migration());
    assert!(sb.path().join("booking.db").exists());
    // Migrate does not touch tokens, so it writes no secret.
    assert!(!sb.path().join("booking.db.secret").exists());

    let again = sb.run(&["migrate"]).ok();
    assert_eq!(
        again,
        format!(
            "sqlite://booking.db: schema version {} (up to date)",
            newest_migration()
        )
    );
    // Another file, named by the environment.
    let mut sb2 = Sandbox::new();
    sb2.set("DATABASE_URL", "sqlite://other.db");
    assert_eq!(sb2.run(&["migrate", "--json"]).json()["created"], true);
    assert!(sb2.path().join("other.db").exists());
}

#[test]
fn seed_creates_future_dates_of_fifty_seats_with_prices() {
    let sb = Sandbox::new();
    let seeded = sb.run(&["seed", "--json"]).json();
    let concerts = seeded["concerts"].as_array().expect("concerts");
    assert!(concerts.len() >= 2, "{seeded}");
    let today = in_days(0);
    let list = sb.run(&["concert", "list", "--json"]).json();
    assert_eq!(list.as_array().unwrap().len(), concerts.len());
    assert_eq!(keys(&list[0]), ["id", "name"]);
    for c in concerts {
        let id = c["id"].to_string();
        let dates = sb.run(&["schedule", "list", &id, "--json"]).json();
        let dates = dates.as_array().unwrap();
        assert!(!dates.is_empty());
        for d in dates {
            assert_eq!(d["seats"], 50);
            assert_eq!(d["seats_free"], 50);
            assert_eq!(d["open"], true);
            assert!(d["date"].as_str().unwrap() > today.as_str(), "{d}");
        }
    }
    // Prices: a user sees them on the seat map.
    let (_, token) = admitted(&sb);
    let first = concerts[0]["dates"][0].as_str().unwrap().to_owned();
    let id = concerts[0]["id"].to_string();
    let map = sb
        .run(&["seats", &id, &first, "--token", &token, "--json"])
        .json();
    let seats = map["seats"].as_array().unwrap();
    assert_eq!(seats.len(), 50);
    assert!(seats.iter().all(|s| s["price"].as_i64().unwrap() > 0));
    // Seeding again is refused, and adds nothing.
    sb.run(&["seed"]).fails(CONFLICT, "already has");
    let list = sb.run(&["concert", "list", "--json"]).json();
    assert_eq!(list.as_array().unwrap().len(), concerts.len());
}

#[test]
fn admin_concerts_and_schedules() {
    let sb = Sandbox::new();
    sb.run(&["migrate"]).ok();
    let empty = sb.run(&["concert", "list", "--json"]).json();
    assert_eq!(empty, Value::Array(vec![]));

    let added = sb.run(&["concert", "add", "Blue Night"]);
    let id = added.ok();
    assert_eq!(id, "1", "the id alone on stdout: {added:#?}");
    assert!(added.stderr.contains("created concert 1"), "{added:#?}");
    let json = sb.run(&["concert", "add", "Second", "--json"]).json();
    assert_eq!(json, serde_json::json!({"id": 2, "name": "Second"}));

    let date = in_days(30);
    let sched = sb
        .run(&["schedule", "add", "1", "--date", &date, "--price", "5000"])
        .ok();
    assert_eq!(sched, "1");
    let three = "100,200,300";
    let per_seat = sb
        .run(&[
            "schedule",
            "add",
            "1",
            "--date",
            &in_days(31),
            "--time",
            "20:30",
            "--seats",
            "3",
            "--prices",
            three,
            "--json",
        ])
        .json();
    assert_eq!(
        keys(&per_seat),
        [
            "date",
            "schedule_id",
            "seats_free",
            "seats_held",
            "seats_sold",
            "starts_at"
        ]
    );
    assert_eq!(per_seat["seats_free"], 3);
    assert!(
        per_seat["starts_at"]
            .as_str()
            .unwrap()
            .ends_with("T20:30:00.000Z")
    );

    let list = sb.run(&["schedule", "list", "1", "--json"]).json();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(
        keys(&list[0]),
        [
            "date",
            "open",
            "schedule_id",
            "seats",
            "seats_free",
            "seats_held",
            "seats_sold",
            "starts_at"
        ]
    );
    let show = sb.run(&["concert", "show", "1", "--json"]).json();
    assert_eq!(keys(&show), ["dates", "id", "name"]);
    assert_eq!(show["dates"].as_array().unwrap().len(), 2);
    let text = sb.run(&["concert", "show", "1"]).ok();
    assert!(
        text.contains("Blue Night") && text.contains(&date),
        "{text}"
    );

    // Bad input changes nothing.
    sb.run(&["schedule", "add", "1", "--date", &date, "--price", "5000"])
        .fails(CONFLICT, "already has a date");
    sb.run(&["schedule", "add", "9", "--date", &date, "--price", "5000"])
        .fails(NOT_FOUND, "no such concert");
    sb.run(&["schedule", "add", "0", "--date", &date, "--price", "5000"])
        .fails(NOT_FOUND, "no such concert 0");
    sb.run(&[
        "schedule",
        "add",
        "1",
        "--date",
        "2001-01-01",
        "--price",
        "5000",
    ])
    .fails(BAD_INPUT, "in the past");
    sb.run(&[
        "schedule",
        "add",
        "1",
        "--date",
        "31/12/2030",
        "--price",
        "5000",
    ])
    .fails(BAD_INPUT, "YYYY-MM-DD");
    sb.run(&[
        "schedule",
        "add",
        "1",
        "--date",
        &in_days(40),
        "--price",
        "-5",
    ])
    .fails(BAD_INPUT, "at least 1");
    sb.run(&[
        "schedule",
        "add",
        "1",
        "--date",
        &in_days(40),
        "--seats",
        "1001",
        "--price",
        "5",
    ])
    .fails(BAD_INPUT, "a date has between 1 and 1000 seats, got 1001");
    sb.run(&[
        "schedule",
        "add",
        "1",
        "--date",
        &in_days(40),
        "--seats",
        "3",
        "--prices",
        "1,2",
    ])
    .fails(BAD_INPUT, "2 prices given for 3 seats");
    sb.run(&[
        "schedule",
        "add",
        "1",
        "--date",
        &in_days(40),
        "--time",
        "25:00",
        "--price",
        "5",
    ])
    .fails(BAD_INPUT, "HH:MM");
    sb.run(&["concert", "add", "   "]).fails(BAD_INPUT, "name");
    sb.run(&["concert", "show", "99"])
        .fails(NOT_FOUND, "no such concert");
    sb.run(&["schedule", "list", "99"])
        .fails(NOT_FOUND, "no such concert");
    assert_eq!(
        sb.run(&["schedule", "list", "1", "--json"])
            .json()
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

#[test]
fn admin_queue_policy_pause_and_resume() {
    let sb = Sandbox::new();
    sb.run(&["migrate"]).ok();
    let q = sb.run(&["queue", "show", "--json"]).json();
    assert_eq!(
        keys(&q),
        [
            "active",
            "admit_rate_per_sec",
            "issued",
            "paused",
            "policy",
            "serving",
            "waiting"
        ]
    );
    assert_eq!(keys(&q["policy"]), ["batch", "interval_ms", "max_active"]);
    assert_eq!(
        (q["waiting"].as_u64(), q["paused"].as_bool()),
        (Some(0), Some(false))
    );

    // Only the settings given change; the rest stay, and the whole policy is shown.
    let p = sb
        .run(&[
            "queue", "policy", "--batch", "2", "--every", "10ms", "--json",
        ])
        .json();
    assert_eq!(
        p,
        serde_json::json!({"interval_ms": 10, "batch": 2, "max_active": 500})
    );
    let p = sb
        .run(&["queue", "policy", "--max-active", "none", "--json"])
        .json();
    assert_eq!(
        p,
        serde_json::json!({"interval_ms": 10, "batch": 2, "max_active": null})
    );
    let text = sb.run(&["queue", "policy", "--max-active", "3"]).ok();
    assert_eq!(
        text,
        "admission policy: admit 2 every 10 ms, at most 3 active"
    );
    let q = sb.run(&["queue", "show", "--json"]).json();
    assert_eq!(
        q["policy"],
        serde_json::json!({"interval_ms": 10, "batch": 2, "max_active": 3})
    );
    sb.run(&["queue", "policy", "--batch", "none", "--max-active", "off"])
        .fails(BAD_INPUT, "batch size, a capacity, or both");
    sb.run(&["queue", "policy", "--batch", "0"])
        .fails(BAD_INPUT, "batch is 1 to");
    let r = sb.run(&["queue", "policy", "--batch", "many"]);
    assert_eq!(r.code, BAD_INPUT, "{r:#?}");
    assert!(r.stderr.contains("neither a whole number nor"), "{r:#?}");

    // Three users wait; the queue shows them, in order.
    let tokens: Vec<String> = (0..3)
        .map(|_| sb.run(&["token", "take", "--user", &user()]).ok())
        .collect();
    let q = sb.run(&["queue", "show", "--json"]).json();
    assert_eq!(
        (q["issued"].as_u64(), q["waiting"].as_u64()),
        (Some(3), Some(3))
    );
    let third = sb.run(&["status", "--token", &tokens[2], "--json"]).json();
    assert_eq!(third["position"], 3);

    // Paused: a waiting user is not admitted, and --wait gives up at its timeout.
    assert_eq!(
        sb.run(&["queue", "pause", "--json"]).json(),
        serde_json::json!({"paused": true})
    );
    assert_eq!(sb.run(&["queue", "show", "--json"]).json()["paused"], true);
    let r = sb.run(&[
        "status",
        "--wait",
        "--timeout",
        "1s",
        "--poll",
        "50ms",
        "--token",
        &tokens[0],
    ]);
    assert_eq!(r.code, REFUSED, "{r:#?}");
    assert!(r.stderr.contains("admission is paused"), "{r:#?}");
    assert!(
        r.stderr.trim_end().ends_with("still at position 1"),
        "{r:#?}"
    );
    assert_eq!(sb.run(&["queue", "show", "--json"]).json()["serving"], 0);

    // Resumed: admitted in order, two per tick, at most three active.
    sb.run(&["queue", "resume"]).ok();
    let first = sb
        .run(&["status", "--wait", "--json", "--token", &tokens[0]])
        .json();
    assert_eq!(first["status"], "active");
    let q = sb.run(&["queue", "show", "--json"]).json();
    assert!(q["serving"].as_u64().unwrap() >= 1);
    assert!(q["serving"].as_u64().unwrap() <= 3);
    sb.run(&["status", "--wait", "--token", &tokens[2]]).ok();
}

#[test]
fn a_user_books_and_pays_and_every_step_has_its_shape() {
    let sb = seeded();
    let u = user();
    let taken = sb.run(&["token", "take", "--user", &u, "--json"]).json();
    assert_eq!(
        keys(&taken),
        [
            "active_until",
            "eta_secs",
            "poll_after_ms",
            "position",
            "seq",
            "status",
            "token",
            "user_id"
        ]
    );
    assert_eq!(taken["user_id"], u.as_str());
    assert_eq!(taken["status"], "waiting");
    let token = taken["token"].as_str().unwrap().to_owned();
    // Asking again gives the same place back; the plain form prints the token alone.
    let again = sb.run(&["token", "take", "--user", &u]);
    assert_eq!(again.ok(), token);
    assert!(again.stderr.contains("place 1"), "{again:#?}");

    let mut sb = sb;
    sb.set("BOOKING_TOKEN", &token);
    let st = sb.run(&["status", "--json"]).json();
    assert_eq!(
        keys(&st),
        [
            "active_until",
            "eta_secs",
            "poll_after_ms",
            "position",
            "seq",
            "status",
            "user_id"
        ]
    );
    assert_eq!(
        (st["status"].as_str(), st["position"].as_u64()),
        (Some("waiting"), Some(1))
    );
    assert_eq!(st["poll_after_ms"], 250, "the front asks again soonest");
    sb.run(&["dates", "1"])
        .fails(REFUSED, "not admitted yet: position 1");

    let waited = sb.run(&["status", "--wait", "--poll", "20ms"]);
    assert!(
        waited.ok().starts_with("admitted: active until"),
        "{waited:#?}"
    );
    assert!(
        waited.stderr.contains("waiting: position 1"),
        "progress shown: {waited:#?}"
    );

    let dates = sb.run(&["dates", "1", "--json"]).json();
    let dates = dates.as_array().unwrap();
    assert!(!dates.is_empty());
    assert_eq!(
        keys(&dates[0]),
        [
            "date",
            "schedule_id",
            "seats_free",
            "seats_held",
            "seats_sold",
            "starts_at"
        ]
    );
    let date = dates[0]["date"].as_str().unwrap().to_owned();

    let map = sb.run(&["seats", "1", &date, "--json"]).json();
    assert_eq!(keys(&map), ["concert_id", "date", "schedule_id", "seats"]);
    assert_eq!(
        keys(&map["seats"][0]),
        ["held_until", "price", "seat", "state"]
    );
    let price = map["seats"][6]["price"].as_i64().unwrap();

    let held = sb.run(&["hold", "1", &date, "7"]);
    let reservation = held.ok();
    assert_eq!(reservation.len(), 36, "a UUID alone on stdout: {held:#?}");
    assert!(
        held.stderr.contains(&format!("booking pay {reservation}")),
        "{held:#?}"
    );
    let drawn = sb.run(&["seats", "1", &date]).ok();
    let row = drawn
        .lines()
        .find(|l| l.trim_start().starts_with("1-10"))
        .unwrap();
    assert_eq!(
        row.split_whitespace().nth(7),
        Some("h"),
        "seat 7 held:\n{drawn}"
    );

    let live = sb.run(&["holds", "list", "--json"]).json();
    assert_eq!(live.as_array().unwrap().len(), 1);
    assert_eq!(
        keys(&live[0]),
        [
            "created_at",
            "expires_at",
            "price",
            "reservation_id",
            "schedule_id",
            "seat",
            "state",
            "user_id"
        ]
    );
    assert_eq!(live[0]["user_id"], u.as_str());

    sb.run(&["hold", "1", &date, "7"])
        .fails(CONFLICT, "seat 7 is taken");
    sb.run(&["hold", "1", &date, "51"]).fails(
        BAD_INPUT,
        "seat must be between 1 and 50 on this date, got 51",
    );
    sb.run(&["hold", "1", &date, "0"]).fails(
        BAD_INPUT,
        "seat must be between 1 and 50 on this date, got 0",
    );
    sb.run(&["hold", "1", &date, "-3"]).fails(
        BAD_INPUT,
        "seat must be between 1 and 50 on this date, got -3",
    );
    sb.run(&["hold", "1", "2001-01-01", "8"])
        .fails(NOT_FOUND, "no date on 2001-01-01");
    sb.run(&["hold", "99", &date, "8"])
        .fails(NOT_FOUND, "no such concert 99");
    sb.run(&["pay", &reservation]).fails(
        REFUSED,
        &format!("insufficient balance: 0 available, {price} needed"),
    );

    sb.run(&["charge", "-5"]).fails(BAD_INPUT, "at least 1");
    sb.run(&["charge", "0"]).fails(BAD_INPUT, "at least 1");
    sb.run(&["charge", "1000001"])
        .fails(BAD_INPUT, "at most 1000000");
    let charged = sb
        .run(&["charge", "20000", "--key", "top-up-1", "--json"])
        .json();
    assert_eq!(
        keys(&charged),
        ["at", "balance_after", "delta", "id", "kind", "payment_id"]
    );
    assert_eq!(
        (charged["delta"].as_i64(), charged["kind"].as_str()),
        (Some(20_000), Some("charge"))
    );
    let replay = sb.run(&["charge", "20000", "--key", "top-up-1"]).ok();
    assert_eq!(
        replay.trim(),
        "this key already charged 20,000; nothing added; balance 20,000"
    );
    sb.run(&["charge", "300", "--key", "top-up-1"])
        .fails(CONFLICT, "idempotency key");
    let bal = sb.run(&["balance", "--json"]).json();
    assert_eq!(bal, serde_json::json!({"user_id": u, "balance": 20_000}));

    let paid = sb
        .run(&["pay", &reservation, "--key", "pay-1", "--json"])
        .json();
    assert_eq!(
        keys(&paid),
        [
            "amount",
            "paid_at",
            "payment_id",
            "reservation_id",
            "schedule_id",
            "seat",
            "seats"
        ]
    );
    assert_eq!(
        (paid["seat"].as_u64(), paid["amount"].as_i64()),
        (Some(7), Some(price))
    );
    // A retry with the key returns the first payment; without it the token has ended.
    let retry = sb.run(&["pay", &reservation, "--key", "pay-1"]);
    assert_eq!(retry.ok(), paid["payment_id"].as_str().unwrap());
    sb.run(&["pay", &reservation])
        .fails(REFUSED, "ended with a payment");
    sb.run(&["hold", "1", &date, "8"])
        .fails(REFUSED, "ended with a payment");
    assert_eq!(sb.run(&["status", "--json"]).json()["status"], "done");
    sb.run(&["status", "--wait"])
        .fails(REFUSED, "ended with a payment");
    assert_eq!(
        sb.run(&["balance", "--json"]).json()["balance"],
        20_000 - price
    );

    // The admin views agree.
    let sales = sb.run(&["sales", "1", "--date", &date, "--json"]).json();
    assert_eq!(keys(&sales), ["concert_id", "dates", "name", "total"]);
    assert_eq!(sales["dates"].as_array().unwrap().len(), 1);
    assert_eq!(
        keys(&sales["dates"][0]),
        [
            "date",
            "revenue",
            "schedule_id",
            "seats_free",
            "seats_held",
            "seats_sold",
            "starts_at"
        ]
    );
    assert_eq!(
        sales["total"],
        serde_json::json!({"seats_free": 49, "seats_held": 0, "seats_sold": 1, "revenue": price})
    );
    let text = sb.run(&["sales", "1"]).ok();
    assert!(text.lines().any(|l| l.starts_with("total")), "{text}");
    sb.run(&["sales", "1", "--date", "2001-01-01"])
        .fails(NOT_FOUND, "no date on 2001-01-01");
    let wallet = sb.run(&["wallet", &u, "--json"]).json();
    assert_eq!(keys(&wallet), ["balance", "ledger", "user_id"]);
    let deltas: Vec<i64> = wallet["ledger"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["delta"].as_i64().unwrap())
        .collect();
    assert_eq!(deltas, [-price, 20_000], "newest first");
    assert_eq!(
        sb.run(&["holds", "list", "--json"]).json(),
        Value::Array(vec![])
    );
}

#[test]
fn a_user_pays_several_holds_at_once_and_reads_them_after() {
    let mut sb = seeded();
    let (u, token) = admitted(&sb);
    sb.set("BOOKING_TOKEN", &token);
    let date = sb.run(&["dates", "1", "--json"]).json()[0]["date"]
        .as_str()
        .unwrap()
        .to_owned();
    let holds: Vec<String> = ["3", "1", "2", "9"]
        .iter()
        .map(|n| sb.run(&["hold", "1", &date, n]).ok())
        .collect();
    sb.run(&["charge", "100000"]).ok();
    sb.run(&["pay", &holds[0], &holds[0]])
        .fails(BAD_INPUT, "named twice");
    sb.run(&["pay", &holds[0], "nope"])
        .fails(BAD_INPUT, "reservation \"nope\"");
    // All or nothing: a reservation of nobody's refuses the whole payment.
    let stray = "00000000-0000-4000-8000-000000000000";
    sb.run(&["pay", &holds[0], stray]).fails(
        NOT_FOUND,
        &format!("reservation {stray}: no such reservation; nothing was paid"),
    );
    assert_eq!(sb.run(&["balance", "--json"]).json()["balance"], 100_000);

    let paid = sb
        .run(&["pay", &holds[0], &holds[1], &holds[2], "--json"])
        .json();
    let seats: Vec<u64> = paid["seats"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["seat"].as_u64().unwrap())
        .collect();
    assert_eq!(seats, [3, 1, 2], "in the order asked");
    let total: i64 = paid["seats"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["price"].as_i64().unwrap())
        .sum();
    assert_eq!(paid["amount"].as_i64(), Some(total));
    assert_eq!(
        sb.run(&["balance", "--json"]).json()["balance"].as_i64(),
        Some(100_000 - total)
    );
    // The fourth hold was released with the session.
    let map = sb
        .run(&["seats", "1", &date, "--json", "--token", &admitted(&sb).1])
        .json();
    assert_eq!(map["seats"][8]["state"], "free");

    // The ended token reads what was bought: the same shape as the answer.
    let listed = sb.run(&["payments", "--json"]).json();
    assert_eq!(listed, Value::Array(vec![paid.clone()]));
    let text = sb.run(&["payments"]).ok();
    assert!(
        text.contains(paid["payment_id"].as_str().unwrap()),
        "{text}"
    );
    assert_eq!(
        text.lines().count(),
        4,
        "a header and a line per seat:\n{text}"
    );
    let mine = sb.run(&["reservations", "--json"]).json();
    let mut states: Vec<&str> = mine
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["state"].as_str().unwrap())
        .collect();
    states.sort_unstable();
    assert_eq!(states, ["expired", "paid", "paid", "paid"]);
    // ...but it cannot top up.
    sb.run(&["charge", "100"])
        .fails(REFUSED, "ended with a payment");
    assert_eq!(
        sb.run(&["wallet", &u, "--json"]).json()["ledger"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

#[test]
fn events_tail_prints_what_happened_in_order() {
    let mut sb = seeded();
    let (u, token) = admitted(&sb);
    sb.set("BOOKING_TOKEN", &token);
    let date = sb.run(&["dates", "1", "--json"]).json()[0]["date"]
        .as_str()
        .unwrap()
        .to_owned();
    let hold = sb.run(&["hold", "1", &date, "4"]).ok();
    sb.run(&["charge", "100000"]).ok();
    let paid = sb.run(&["pay", &hold, "--json"]).json();

    let out = sb.run(&["events", "tail", "--json"]).ok();
    let events: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        types[..2],
        ["token.issued", "session.admitted"],
        "the place, then its admission: {types:?}"
    );
    let mut rest = types[2..].to_vec();
    let ended = rest.split_off(3);
    assert_eq!(
        rest,
        ["hold.created", "wallet.charged", "payment.completed"]
    );
    assert_eq!(ended, ["session.ended"]);
    assert!(
        events
            .windows(2)
            .all(|w| w[0]["id"].as_u64() < w[1]["id"].as_u64())
    );
    let payment = &events[4];
    assert_eq!(payment["data"]["payment_id"], paid["payment_id"]);
    assert_eq!(payment["data"]["user_id"], u.as_str());
    assert_eq!(payment["data"]["seats"][0]["reservation_id"], hold.as_str());
    assert_eq!(events[5]["data"]["reason"], "paid");

    // --after, --types, and the text form: one line per event.
    let after = events[2]["id"].as_u64().unwrap().to_string();
    let text = sb
        .run(&[
            "events",
            "tail",
            "--after",
            &after,
            "--types",
            "payment.completed,session.ended",
        ])
        .ok();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(
        lines[0].contains("payment.completed") && lines[0].contains(&u),
        "{text}"
    );
    assert!(
        lines[1].contains("session.ended") && lines[1].ends_with("paid"),
        "{text}"
    );
    sb.run(&["events", "tail", "--types", "hold.made"])
        .fails(BAD_INPUT, "unknown event type");
    assert!(
        sb.run(&["events", "tail", "--help"])
            .ok()
            .contains("--follow")
    );
}

#[test]
fn cancel_frees_the_seat_and_tokens_come_from_a_file() {
    let sb = seeded();
    let u = user();
    let file = sb.path().join("my.token");
    let file = file.to_str().unwrap();
    let printed = sb
        .run(&["token", "take", "--user", &u, "--save", file])
        .ok();
    assert_eq!(std::fs::read_to_string(file).unwrap().trim(), printed);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let mut sb = sb;
    sb.set("BOOKING_TOKEN_FILE", file);
    sb.run(&["status", "--wait"]).ok();
    let date = sb.run(&["dates", "3", "--json"]).json()[0]["date"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = sb.run(&["hold", "3", &date, "50"]).ok();
    let mine = sb.run(&["reservations", "--json"]).json();
    assert_eq!(mine[0]["state"], "held");
    let cancelled = sb.run(&["cancel", &r, "--json"]).json();
    assert_eq!(cancelled["state"], "cancelled");
    sb.run(&["cancel", &r]).fails(CONFLICT, "is cancelled");
    sb.run(&["pay", &r]).fails(CONFLICT, "was cancelled");
    sb.run(&["cancel", &user()])
        .fails(NOT_FOUND, "no such reservation");
    sb.run(&["cancel", "not-a-uuid"])
        .fails(BAD_INPUT, "malformed");
    let map = sb.run(&["seats", "3", &date, "--json"]).json();
    assert_eq!(map["seats"][49]["state"], "free");

    // Another user cannot cancel someone else's hold.
    let r2 = sb.run(&["hold", "3", &date, "49"]).ok();
    let (_, other) = admitted(&sb);
    sb.run(&["cancel", &r2, "--token", &other])
        .fails(REFUSED, "another user");
    sb.run(&["pay", &r2, "--token", &other])
        .fails(REFUSED, "another user");
}

#[test]
fn an_expired_hold_is_swept_and_cannot_be_paid() {
    let mut sb = seeded();
    let (_, token) = admitted(&sb);
    sb.set("BOOKING_TOKEN", &token);
    let date = sb.run(&["dates", "1", "--json"]).json()[0]["date"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = sb.run(&["hold", "1", &date, "3"]).ok();
    sb.run(&["charge", "100000"]).ok();
    assert_eq!(
        sb.run(&["holds", "sweep", "--json"]).json()["holds_expired"],
        0
    );
    // Six minutes on (the hold lasts five, the session ten), without waiting: every command from
    // here runs with its clock that much ahead.
    sb.set("BOOKING_CLOCK_OFFSET", "6m");
    assert_eq!(
        sb.run(&["holds", "list", "--json"]).json(),
        Value::Array(vec![])
    );
    let swept = sb.run(&["holds", "sweep", "--json"]).json();
    assert_eq!(keys(&swept), ["holds_expired", "sessions_expired"]);
    assert_eq!(swept["holds_expired"], 1);
    assert_eq!(
        sb.run(&["holds", "sweep"]).ok(),
        "recorded 0 expired holds and 0 lapsed sessions"
    );
    sb.run(&["pay", &r]).fails(REFUSED, "hold has expired");
    assert_eq!(sb.run(&["balance", "--json"]).json()["balance"], 100_000);
}

#[test]
fn bad_input_gets_one_line_and_its_exit_code() {
    let sb = seeded();
    let (_, token) = admitted(&sb);
    let cases: Vec<(Vec<&str>, i32, &str)> = vec![
        (
            vec!["concert", "list", "--database-url", "mysql://localhost/db"],
            BAD_INPUT,
            "bad database URL",
        ),
        (
            vec!["migrate", "--database-url", "postgres://u@[::1"],
            BAD_INPUT,
            "bad database URL",
        ),
        (
            vec![
                "migrate",
                "--database-url",
                "postgres://nobody@127.0.0.1:9/none",
            ],
            FAILURE,
            "cannot open the database",
        ),
        (
            vec!["concert", "list", "--database-url", "sqlite://missing.db"],
            FAILURE,
            "no database at /",
        ),
        (
            vec!["migrate", "--database-url", "sqlite://no/such/dir/b.db"],
            FAILURE,
            "cannot open the database",
        ),
        (
            vec!["serve", "--database-url", "sqlite://no/such/dir/b.db"],
            FAILURE,
            "does not exist",
        ),
        (vec!["concert", "show", "abc"], BAD_INPUT, "invalid value"),
        (vec!["sales", "42"], NOT_FOUND, "no such concert 42"),
        (
            vec!["sales", "1", "--date", "tomorrow"],
            BAD_INPUT,
            "YYYY-MM-DD",
        ),
        (
            vec!["sales", "1", "--date", "2026-1-1"],
            BAD_INPUT,
            "YYYY-MM-DD",
        ),
        (
            vec!["sales", "1", "--date", "+002026-12-12"],
            BAD_INPUT,
            "YYYY-MM-DD",
        ),
        (vec!["wallet", "nobody"], BAD_INPUT, "malformed"),
        (
            vec!["wallet", "00000000-0000-0000-0000-000000000000"],
            BAD_INPUT,
            "nil UUID",
        ),
        (
            vec!["token", "take", "--user", "alice"],
            BAD_INPUT,
            "malformed",
        ),
        (vec!["status"], BAD_INPUT, "--token"),
        (vec!["status", "--token", "forged"], REFUSED, "malformed"),
        (
            vec!["dates", "1", "--token", &token[..token.len() - 2]],
            REFUSED,
            "token",
        ),
        (
            vec!["dates", "1", "--token-file", "nowhere.txt"],
            BAD_INPUT,
            "cannot read the token file",
        ),
        (
            vec!["dates", "0", "--token", &token],
            NOT_FOUND,
            "no such concert 0",
        ),
        (
            vec!["dates", "77", "--token", &token],
            NOT_FOUND,
            "no such concert",
        ),
        (
            vec!["seats", "1", "2030-02-30", "--token", &token],
            BAD_INPUT,
            "YYYY-MM-DD",
        ),
        (
            vec!["seats", "1", "2001-01-01", "--token", &token],
            NOT_FOUND,
            "no date",
        ),
        (
            vec!["charge", "12abc", "--token", &token],
            BAD_INPUT,
            "invalid value",
        ),
        (
            vec!["charge", "5", "--key", "", "--token", &token],
            BAD_INPUT,
            "--key",
        ),
        (vec!["pay", "x", "--token", &token], BAD_INPUT, "malformed"),
        (
            vec!["queue", "show", "--max-holds", "0"],
            BAD_INPUT,
            "live holds per user",
        ),
        (
            vec!["serve", "--rate-limit-ip=-1"],
            BAD_INPUT,
            "--rate-limit-ip",
        ),
        (vec!["serve", "--log", "[[["], BAD_INPUT, "--log"),
        (vec!["serve", "--admin-key", ""], BAD_INPUT, "--admin-key"),
        (
            vec!["serve", "--token-secret", "short"],
            BAD_INPUT,
            "at least 32 bytes",
        ),
    ];
    for (args, code, needle) in cases {
        let r: Run = sb.run(&args);
        // clap's own errors span several lines; ours are one line.
        if needle == "invalid value" {
            assert_eq!(r.code, code, "{args:?}: {r:#?}");
            assert!(r.stderr.contains(needle), "{args:?}: {r:#?}");
            continue;
        }
        eprintln!("{args:?}");
        r.fails(code, needle);
    }
    // Nothing was created by the failures.
    assert!(!sb.path().join("missing.db").exists());
    assert!(!sb.path().join("no").exists());
    assert_eq!(sb.run(&["queue", "show", "--json"]).json()["issued"], 1);
}

#[test]
fn serve_answers_healthz_in_a_fresh_empty_directory() {
    let sb = Sandbox::new();
    assert_eq!(std::fs::read_dir(sb.path()).unwrap().count(), 0);
    let server = sb.serve(&[]);
    let banner = server.banner.join("\n");
    assert!(
        banner.contains("database: sqlite://booking.db (created, schema version"),
        "{banner}"
    );
    assert!(
        banner.contains("token secret: generated and kept in booking.db.secret"),
        "{banner}"
    );
    assert!(banner.contains("admin key: "), "{banner}");
    assert!(
        banner.contains("curl -s -X POST"),
        "a first command to try: {banner}"
    );
    assert_eq!(
        http(&server.addr, "GET", "/healthz", &[], None),
        (200, "ok".into())
    );
    assert!(sb.path().join("booking.db").exists());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(sb.path().join("booking.db.secret")).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    }
    // The admin key it printed opens the admin API.
    let key = banner
        .lines()
        .find_map(|l| l.strip_prefix("admin key: "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .to_owned();
    let auth = format!("Bearer {key}");
    let (status, body) = http(
        &server.addr,
        "GET",
        "/v1/admin/queue",
        &[("Authorization", &auth)],
        None,
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        http(&server.addr, "GET", "/v1/admin/queue", &[], None).0,
        401
    );
    // Logs carry request ids; SIGTERM stops it cleanly.
    let log_path = server.log.clone();
    assert_eq!(server.terminate(), OK);
    let log = std::fs::read_to_string(log_path).unwrap();
    assert!(log.contains("request_id="), "{log}");
    assert!(log.contains("stopped"), "{log}");
    // By default one INFO line per answer, with its latency in microseconds, and
    // nothing when a request starts.
    assert!(!log.contains("DEBUG"), "no debug lines by default: {log}");
    assert!(!log.contains("started processing request"), "{log}");
    let answers: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("finished processing request"))
        .collect();
    assert!(answers.len() >= 3, "{log}");
    for line in answers {
        assert!(line.contains("INFO"), "{line}");
        assert!(line.contains("latency=") && line.contains("μs"), "{line}");
        assert!(line.contains("status="), "{line}");
    }
}

#[test]
fn serve_takes_its_settings_from_flags_and_environment_and_shares_tokens_with_the_cli() {
    let mut sb = Sandbox::new();
    sb.set("BOOKING_ADMIN_KEY", "an-admin-key-for-this-test");
    sb.set("BOOKING_POLICY", "batch=7,every=50ms,max-active=9");
    sb.set("BOOKING_HOLD_TTL", "2m");
    sb.set("BOOKING_RATE_LIMIT_TOKEN", "0");
    let server = sb.serve(&["--demo", "--rate-limit-ip", "1000"]);
    let banner = server.banner.join("\n");
    assert!(banner.contains("demo data loaded: 3 concerts"), "{banner}");
    assert!(
        banner.contains("admin key: from --admin-key / BOOKING_ADMIN_KEY"),
        "{banner}"
    );
    let q = sb.run(&["queue", "show", "--json"]).json();
    assert_eq!(
        q["policy"],
        serde_json::json!({"interval_ms": 50, "batch": 7, "max_active": 9})
    );
    let auth = [("Authorization", "Bearer an-admin-key-for-this-test")];
    assert_eq!(
        http(&server.addr, "GET", "/v1/admin/queue", &auth, None).0,
        200
    );

    // A token taken over HTTP works with the CLI (one secret file), and the other
    // way round; the server's ticker admits both.
    let u = user();
    let (status, body) = http(
        &server.addr,
        "POST",
        "/v1/queue/tokens",
        &[],
        Some(&format!("{{\"user_id\":\"{u}\"}}")),
    );
    assert_eq!(status, 201, "{body}");
    let issued: Value = serde_json::from_str(&body).unwrap();
    let http_token = issued["token"].as_str().unwrap().to_owned();
    let waited = sb
        .run(&[
            "status",
            "--wait",
            "--no-tick",
            "--json",
            "--token",
            &http_token,
        ])
        .json();
    assert_eq!(waited["status"], "active");
    let cli_token = sb.run(&["token", "take", "--user", &user()]).ok();
    sb.run(&["status", "--wait", "--no-tick", "--token", &cli_token])
        .ok();
    let bearer = format!("Bearer {cli_token}");
    let (status, body) = http(
        &server.addr,
        "GET",
        "/v1/concerts/1/dates",
        &[("Authorization", &bearer)],
        None,
    );
    assert_eq!(status, 200, "{body}");
    let date = serde_json::from_str::<Value>(&body).unwrap()[0]["date"]
        .as_str()
        .unwrap()
        .to_owned();
    // The hold TTL of the environment applies to the server's holds.
    let (status, body) = http(
        &server.addr,
        "POST",
        "/v1/reservations",
        &[("Authorization", &bearer)],
        Some(&format!(
            "{{\"concert_id\":1,\"date\":\"{date}\",\"seat\":5}}"
        )),
    );
    assert_eq!(status, 201, "{body}");
    let hold: Value = serde_json::from_str(&body).unwrap();
    let ms = |s: &str| {
        chrono::DateTime::parse_from_rfc3339(s)
            .unwrap()
            .timestamp_millis()
    };
    let ttl = ms(hold["expires_at"].as_str().unwrap()) - ms(hold["created_at"].as_str().unwrap());
    assert_eq!(ttl, 120_000);
    // The CLI sees the server's hold.
    let live = sb.run(&["holds", "list", "--json"]).json();
    assert_eq!(live[0]["reservation_id"], hold["reservation_id"]);
    assert_eq!(server.terminate(), OK);

    // A second start on the same database keeps the data and the secret.
    let again = sb.serve(&["--demo"]);
    let banner = again.banner.join("\n");
    assert!(
        !banner.contains("demo data loaded"),
        "not seeded twice: {banner}"
    );
    assert!(
        banner.contains("token secret: from booking.db.secret"),
        "{banner}"
    );
    assert_eq!(
        sb.run(&["status", "--json", "--token", &cli_token]).json()["status"],
        "active"
    );
    assert_eq!(again.terminate(), OK);
}

#[tokio::test]
async fn postgres_migrate_seed_and_a_user_flow() {
    let db = booking_testkit::pg::fresh_database().await;
    let mut sb = Sandbox::new();
    sb.set("DATABASE_URL", &db.url);
    let m = sb.run(&["migrate", "--json"]).json();
    assert_eq!(
        (m["backend"].as_str(), m["created"].as_bool()),
        (Some("postgres"), Some(false))
    );
    assert!(m["schema_version"].as_i64().unwrap() >= 2);
    sb.run(&["seed"]).ok();
    assert_eq!(
        sb.run(&["concert", "list", "--json"])
            .json()
            .as_array()
            .unwrap()
            .len(),
        3
    );

    // User commands need the shared secret on PostgreSQL.
    sb.run(&["token", "take", "--user", &user()])
        .fails(BAD_INPUT, "needs the token secret");
    sb.set(
        "BOOKING_TOKEN_SECRET",
        "a shared secret of at least thirty-two bytes",
    );
    let u = user();
    let token = sb.run(&["token", "take", "--user", &u]).ok();
    sb.set("BOOKING_TOKEN", &token);
    sb.run(&["status", "--wait", "--poll", "20ms"]).ok();
    let date = sb.run(&["dates", "2", "--json"]).json()[0]["date"]
        .as_str()
        .unwrap()
        .to_owned();
    let price = sb.run(&["seats", "2", &date, "--json"]).json()["seats"][0]["price"]
        .as_i64()
        .unwrap();
    assert_eq!(price, 12_000, "front-row price of the demo");
    let r = sb.run(&["hold", "2", &date, "1"]).ok();
    sb.run(&["hold", "2", &date, "1"]).fails(CONFLICT, "taken");
    sb.run(&["charge", "15000"]).ok();
    sb.run(&["pay", &r]).ok();
    assert_eq!(sb.run(&["balance", "--json"]).json()["balance"], 3_000);
    let sales = sb.run(&["sales", "2", "--date", &date, "--json"]).json();
    assert_eq!(sales["total"]["seats_sold"], 1);
    assert_eq!(sales["total"]["revenue"], 12_000);

    // Two servers on the database: a token from one works on the other, and the
    // other CLI data is there. Without the secret, serve refuses to start.
    let mut no_secret = Sandbox::new();
    no_secret.set("DATABASE_URL", &db.url);
    no_secret
        .run(&["serve", "--bind", "127.0.0.1:0"])
        .fails(BAD_INPUT, "needs the token secret");
    let a = sb.serve(&[]);
    let b = sb.serve(&[]);
    assert!(
        a.banner
            .join("\n")
            .contains("token secret: from --token-secret")
    );
    let (status, body) = http(
        &a.addr,
        "POST",
        "/v1/queue/tokens",
        &[],
        Some(&format!("{{\"user_id\":\"{}\"}}", user())),
    );
    assert_eq!(status, 201, "{body}");
    let t: Value = serde_json::from_str(&body).unwrap();
    let bearer = format!("Bearer {}", t["token"].as_str().unwrap());
    let (status, body) = http(
        &b.addr,
        "GET",
        "/v1/queue/status",
        &[("Authorization", &bearer)],
        None,
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(a.terminate(), OK);
    assert_eq!(b.terminate(), OK);

    // A token signed with another secret is refused.
    let mut other = Sandbox::new();
    other.set("DATABASE_URL", &db.url);
    other.set(
        "BOOKING_TOKEN_SECRET",
        "another secret of at least thirty-two bytes",
    );
    other
        .run(&["status", "--token", &token])
        .fails(REFUSED, "signature");
}

/// After a clean stop the data is in the database file itself, not only in its
/// write-ahead log: copying `booking.db` alone (the usual backup) keeps it.
#[test]
fn after_sigterm_the_database_file_alone_holds_the_data() {
    let mut sb = Sandbox::new();
    sb.set("BOOKING_RATE_LIMIT_IP", "0");
    let server = sb.serve(&["--demo"]);
    for _ in 0..3 {
        let body = format!(r#"{{"user_id":"{}"}}"#, user());
        let (status, answer) = http(&server.addr, "POST", "/v1/queue/tokens", &[], Some(&body));
        assert_eq!(status, 201, "{answer}");
    }
    assert_eq!(server.terminate(), OK);
    let copy = sb.path().join("copy");
    std::fs::create_dir(&copy).unwrap();
    std::fs::copy(sb.path().join("booking.db"), copy.join("booking.db")).unwrap();
    let url = format!("sqlite://{}", copy.join("booking.db").display());
    let q = sb
        .run(&["queue", "show", "--json", "--database-url", &url])
        .json();
    assert_eq!(q["issued"], 3, "{q}");
    let concerts = sb
        .run(&["concert", "list", "--json", "--database-url", &url])
        .json();
    assert_eq!(concerts.as_array().map(Vec::len), Some(3), "{concerts}");
}

/// `booking backup FILE` writes a consistent copy that opens on its own, and never
/// overwrites a file.
#[test]
fn backup_writes_a_copy_that_opens_alone_and_never_overwrites() {
    let sb = Sandbox::new();
    sb.run(&["seed"]).ok();
    let r = sb.run(&["backup", "copy.db"]);
    assert_eq!(r.code, OK, "{r:#?}");
    assert!(r.stderr.contains("backup written to copy.db"), "{r:#?}");
    let url = format!("sqlite://{}", sb.path().join("copy.db").display());
    let concerts = sb
        .run(&["concert", "list", "--json", "--database-url", &url])
        .json();
    assert_eq!(concerts.as_array().map(Vec::len), Some(3), "{concerts}");
    // The same file again: refused, the copy unchanged.
    sb.run(&["backup", "copy.db"])
        .fails(BAD_INPUT, "exists already");
    let again = sb
        .run(&["concert", "list", "--json", "--database-url", &url])
        .json();
    assert_eq!(again, concerts);
}

/// A bare path is an SQLite file; errors name the file in full.
#[test]
fn a_bare_database_path_means_sqlite() {
    let sb = Sandbox::new();
    sb.run(&["migrate", "--database-url", "plain.db"]).ok();
    assert!(sb.path().join("plain.db").exists());
    sb.run(&["seed", "--database-url", "plain.db"]).ok();
    let list = sb
        .run(&["concert", "list", "--database-url", "plain.db", "--json"])
        .json();
    assert!(!list.as_array().expect("concerts").is_empty());
    let r = sb.run(&["concert", "list", "--database-url", "absent.db"]);
    assert_eq!(r.code, FAILURE, "{r:#?}");
    let full = sb.path().join("absent.db");
    assert!(
        r.stderr.contains(&full.display().to_string()),
        "the error names {}: {r:#?}",
        full.display()
    );
}

/// `--bind` takes a port alone (127.0.0.1) or a name that resolves.
#[test]
fn serve_binds_a_port_alone_or_a_host_name() {
    use std::io::BufRead;
    let sb = Sandbox::new();
    for bind in ["0", "localhost:0"] {
        let mut child = sb
            .command(&["serve", "--bind", bind])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("serve");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut first = String::new();
            let _ = std::io::BufReader::new(stdout).read_line(&mut first);
            let _ = tx.send(first);
        });
        let first = rx
            .recv_timeout(std::time::Duration::from_secs(60))
            .unwrap_or_default();
        let _ = child.kill();
        let _ = child.wait();
        assert!(
            first.starts_with("listening on http://127.0.0.1:"),
            "--bind {bind}: {first:?}"
        );
    }
    let r = sb.run(&["serve", "--bind", "no such host:80"]);
    assert_eq!(r.code, BAD_INPUT, "{r:#?}");
    assert!(r.stderr.contains("not an address to listen on"), "{r:#?}");
}

/// Shell completions and the manual page, with no database.
#[test]
fn completions_and_the_manual_page_need_no_database() {
    let sb = Sandbox::new();
    let bash = sb.run(&["completions", "bash"]).ok();
    assert!(bash.contains("_booking()"), "{bash}");
    assert!(
        bash.contains("serve") && bash.contains("reservations"),
        "{bash}"
    );
    let zsh = sb.run(&["completions", "zsh"]).ok();
    assert!(zsh.contains("#compdef booking"), "{zsh}");
    let man = sb.run(&["man"]).ok();
    assert!(man.contains(".TH booking 1"), "{man}");
    assert!(man.contains("serve"), "{man}");
    assert!(
        !sb.path().join("booking.db").exists(),
        "no database was made"
    );
    let r = sb.run(&["completions", "tcsh"]);
    assert_eq!(r.code, BAD_INPUT, "{r:#?}");
}

/// `token take` without `--user` makes a user id and says which.
#[test]
fn a_token_without_a_user_gets_a_new_user_id_that_is_printed() {
    let sb = seeded();
    let r = sb.run(&["token", "take", "--json"]);
    assert_eq!(r.code, OK, "{r:#?}");
    let v: serde_json::Value = serde_json::from_str(&r.stdout).expect("JSON");
    let user = v["user_id"].as_str().expect("user_id").to_owned();
    assert!(r.stderr.contains(&user), "the new user id is told: {r:#?}");
    assert!(r.stderr.contains("--user"), "{r:#?}");
    // The token is that user's: the wallet of that id is readable with it.
    let token = v["token"].as_str().expect("token");
    sb.run(&["balance", "--token", token]).ok();
}
