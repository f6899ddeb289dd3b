//! The `booking-sim` binary as a script or CI job sees it: distinct exit
//! statuses, usage errors before any work, a report path checked before the
//! run, no dashboard drawn into a redirected standard output, a database of an
//! earlier run refused, plots beside the report, and `--fail-if` thresholds.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn sim(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_booking-sim"))
        .args(args)
        .output()
        .expect("run booking-sim")
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// A short in-process run (memory store unless `extra` names a database).
const SHORT: [&str; 10] = [
    "--users",
    "30",
    "--duration",
    "2s",
    "--ramp",
    "200ms",
    "--think",
    "5ms..40ms",
    "--hold-ttl",
    "1s",
];

fn short(extra: &[&str]) -> Output {
    let mut args: Vec<&str> = SHORT.to_vec();
    if !extra.contains(&"--seed") {
        args.extend(["--seed", "7"]);
    }
    args.extend_from_slice(extra);
    sim(&args)
}

#[test]
fn usage_errors_exit_2_and_the_help_lists_every_status() {
    for bad in [
        vec!["--duration", "2x"],
        vec!["--bogus"],
        vec!["--fail-if", "hold.p99>50"],
        vec!["--fail-if", "hodl.p99>5ms"],
        vec!["--seats", "0"],
        vec!["--spawn", "2"],
    ] {
        let t0 = Instant::now();
        let o = sim(&bad);
        let (_, err) = text(&o);
        assert_eq!(o.status.code(), Some(2), "{bad:?}: {err}");
        assert!(t0.elapsed() < Duration::from_secs(10), "{bad:?}: no run");
        assert!(!err.trim().is_empty(), "{bad:?}: says why");
    }
    let (_, err) = text(&sim(&["--fail-if", "hold.p99>50"]));
    assert!(err.contains("unit"), "{err}");
    let (help, _) = text(&sim(&["--help"]));
    for line in [
        "0  the run was done",
        "1  the run could not be done",
        "2  usage error",
        "3  the run failed",
        "4  the audit found a violation",
        "5  a --fail-if threshold was crossed",
    ] {
        assert!(help.contains(line), "--help names {line:?}:\n{help}");
    }
}

#[test]
fn an_unwritable_report_is_refused_before_the_run() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("no-such-dir").join("run.json");
    let t0 = Instant::now();
    let o = sim(&[
        "--duration",
        "5m",
        "--no-tui",
        "--report",
        path.to_str().expect("utf-8"),
    ]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        t0.elapsed() < Duration::from_secs(20),
        "refused before a five-minute run"
    );
    assert!(err.contains("cannot write the report"), "{err}");
    assert!(out.is_empty(), "no run, no summary: {out}");
}

#[test]
fn a_redirected_stdout_gets_the_summary_alone_with_plots_and_thresholds() {
    let dir = tempfile::tempdir().expect("dir");
    let report = dir.path().join("run.json");
    // No --no-tui: standard output is a pipe here, not a terminal.
    let o = short(&[
        "--report",
        report.to_str().expect("utf-8"),
        "--fail-if",
        "hold.p99>100s",
        "--fail-if",
        "payments<0",
    ]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{err}\n{out}");
    assert!(out.starts_with("# booking-sim report"), "{out}");
    assert!(
        !out.contains('\u{1b}'),
        "no terminal escapes in the summary"
    );
    assert!(
        err.lines()
            .any(|l| l.starts_with('[') && l.contains("users")),
        "progress lines on standard error instead: {err}"
    );
    // The plots beside the report, linked from its Markdown.
    let md = std::fs::read_to_string(dir.path().join("run.md")).expect("markdown");
    for svg in ["run-holds.svg", "run-latency.svg"] {
        assert!(md.contains(&format!("]({svg})")), "{svg} linked:\n{md}");
        let body = std::fs::read_to_string(dir.path().join(svg)).expect(svg);
        assert!(
            body.starts_with("<svg") && body.contains("<polyline"),
            "{svg}: {body}"
        );
    }
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).expect("json")).expect("JSON");
    let hold = json["operations"]
        .as_array()
        .and_then(|ops| ops.iter().find(|o| o["name"] == "hold"))
        .expect("hold");
    let thresholds = json["thresholds"].as_array().expect("thresholds");
    assert_eq!(thresholds.len(), 2, "{thresholds:?}");
    assert_eq!(thresholds[0]["expression"], "hold.p99>100s");
    assert_eq!(thresholds[0]["crossed"], false);
    assert!(md.contains("| `payments<0` |"), "{md}");
    assert!(
        hold["latency_per_second_us"]
            .as_array()
            .is_some_and(|s| !s.is_empty()),
        "{hold}"
    );

    // The same run failing a threshold.
    let o = short(&["--fail-if", "hold.p50>=0us", "--fail-if", "errors>1000000"]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(5), "{err}");
    assert!(
        err.contains("threshold crossed: hold.p50>=0us (hold.p50 was "),
        "{err}"
    );
    assert!(
        !err.contains("errors>1000000"),
        "only the crossed one: {err}"
    );
}

fn sqlite(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("sim.db").display())
}

#[test]
fn a_database_of_an_earlier_run_is_refused_without_reuse() {
    let dir = tempfile::tempdir().expect("dir");
    let db = sqlite(dir.path());
    let first = short(&["--database", &db, "--no-tui"]);
    assert_eq!(first.status.code(), Some(0), "{}", text(&first).1);

    let t0 = Instant::now();
    let again = short(&["--database", &db, "--no-tui"]);
    let (out, err) = text(&again);
    assert_eq!(again.status.code(), Some(1), "{err}");
    assert!(t0.elapsed() < Duration::from_secs(20), "refused at once");
    assert!(
        err.contains("holds an earlier run") && err.contains("--reuse"),
        "{err}"
    );
    assert!(err.contains("1 concert(s)"), "{err}");
    assert!(!out.contains("Audit: clean"), "no run, no verdict: {out}");

    // Reused with the earlier run's seed: the same users and idempotency keys.
    let same_seed = short(&["--database", &db, "--no-tui", "--reuse"]);
    let (_, err) = text(&same_seed);
    assert_eq!(same_seed.status.code(), Some(1), "{err}");
    assert!(err.contains("Give another --seed"), "{err}");

    let reused = short(&["--database", &db, "--no-tui", "--reuse", "--seed", "8"]);
    let (out, err) = text(&reused);
    assert_eq!(reused.status.code(), Some(0), "{err}");
    assert!(out.contains("## Audit: clean"), "{out}");
}
