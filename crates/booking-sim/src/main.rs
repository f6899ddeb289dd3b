//! `booking-sim`: fires virtual users at booking and audits the result. See
//! `booking-sim --help`.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use booking_core::Config;
use booking_core::domain::AdmissionPolicy;
use booking_sim::plan::{Plan, parse_duration};
use booking_sim::run::{Onsale, Scenario, SimConfig, SimError, TargetSpec, Ui, run};
use booking_sim::user::Behaviour;
use clap::Parser;

/// mimalloc instead of the system allocator: a server answers each request with a
/// few small allocations on many threads, where glibc's malloc spent about a tenth
/// of the server's CPU time in a profiled burst.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Load simulator of booking: virtual users take a token, wait to be admitted,
/// read dates and seat maps, race for popular seats, charge and pay (or abandon on
/// the way), against booking-core in process or booking-http over HTTP. A
/// dashboard shows the run; at the end an auditor checks invariants I1-I6 against
/// the database and what every user was told.
///
/// Targets: nothing (the memory store, in process); --database URL (SQLite or
/// PostgreSQL, in process); --url URL... --admin-key KEY (running booking-http
/// instances; add --database to audit their database); --spawn N --database
/// postgres://... (N booking-http instances started here on one database).
///
/// The run ends at its planned duration whatever the users do: operations in
/// flight get --drain to finish, then the report and the audit. A visit that
/// fails or is told "sold out" is followed by a pause that doubles with each
/// such visit in a row (with jitter, up to 8 s).
///
/// Without a terminal on standard output (`booking-sim > summary.md`) there is
/// no dashboard: progress lines go to standard error and the summary alone to
/// standard output.
//
// No `Debug`: the arguments hold the admin key and database URLs, which are
// never printed (see `TargetSpec`'s redacting `Debug`).
#[derive(Parser)]
#[command(name = "booking-sim", version, about, long_about, after_help = EXIT_CODES)]
struct Args {
    /// Database: sqlite://path/to/file.db or postgres://user@host:port/db. In
    /// process without --url/--spawn; the servers' database with --spawn; the
    /// database to audit with --url.
    #[arg(long, value_name = "URL", help_heading = "Target")]
    database: Option<String>,

    /// Base URL of a running booking-http instance (repeat, or separate with
    /// commas, for several on one database; users are spread across them).
    #[arg(
        long = "url",
        value_name = "URL",
        value_delimiter = ',',
        help_heading = "Target"
    )]
    urls: Vec<String>,

    /// The admin key of the --url instances (creates the concert, sets the policy,
    /// reads the queue counters).
    #[arg(
        long,
        env = "BOOKING_ADMIN_KEY",
        value_name = "KEY",
        help_heading = "Target"
    )]
    admin_key: Option<String>,

    /// The instance the operator side (admin API: concert, dates, policy, queue
    /// counters) talks to, when it is not the first --url.
    #[arg(long, value_name = "URL", help_heading = "Target")]
    admin_url: Option<String>,

    /// Over HTTP: connections per instance at most, for each of two lanes: the
    /// line's requests (token issues, status polls) and the shop's (admitted
    /// users). Virtual users share a lane's connections (a request that finds them
    /// all busy waits for one), so 10,000 users need no more than twice this many
    /// sockets per instance, and a buyer never waits here behind arrivals.
    #[arg(long, default_value_t = booking_sim::http::DEFAULT_CONNECTIONS, value_name = "N", help_heading = "Target")]
    connections: usize,

    /// Over HTTP: waiting users hold a pushed status stream (Server-Sent Events,
    /// GET /v1/queue/events) instead of polling, and are told admission or sold
    /// out the moment the server sees it. Each stream is a connection of its own
    /// (two open files per user with --spawn, where both ends are in this process).
    #[arg(long, help_heading = "Target")]
    push: bool,

    /// Before the load, measure what the machine does with no booking in the way
    /// (2 s each): an axum hello world over HTTP with --connections connections,
    /// and raw SQL on the target's database (a three-statement transaction and a
    /// single-row insert, in tables of their own, dropped afterwards). The report
    /// shows them beside the run's rates.
    #[arg(long, help_heading = "Report")]
    baseline: bool,

    /// Start N booking-http instances in this process on --database (PostgreSQL
    /// for more than one) and spread users across them.
    #[arg(long, value_name = "N", help_heading = "Target")]
    spawn: Option<usize>,

    /// Virtual users at once (with --duration and --ramp; see --plan).
    /// What the users do: `browse` (come and go along the plan, race for seats,
    /// pay or abandon) or `onsale` (the sale opens: --users arrive within --ramp
    /// for --dates x --seats seats, each buys one seat or is told sold out; the
    /// run ends when every user has an answer, or at --duration).
    #[arg(long, default_value = "browse", value_parser = ["browse", "onsale"], help_heading = "Load")]
    scenario: String,

    /// Virtual users at once (with --duration and --ramp; see --plan). Default
    /// 2,000; on sale 10,000.
    #[arg(long, help_heading = "Load")]
    users: Option<u32>,

    /// How long the run lasts.
    /// (Default 60s; on sale 120s, the longest the run may take.)
    #[arg(long, value_parser = parse_duration, help_heading = "Load")]
    duration: Option<Duration>,

    /// How long it takes to reach --users.
    /// (Default 10s; on sale 1s, the window in which every user arrives.)
    #[arg(long, value_parser = parse_duration, help_heading = "Load")]
    ramp: Option<Duration>,

    /// A load plan instead of --users/--duration/--ramp: USERS,DURATION steps,
    /// each ramping linearly from the previous one, e.g. "500,30s;2000,1m;0,10s".
    #[arg(long, value_name = "PLAN", help_heading = "Load")]
    plan: Option<Plan>,

    /// Seed of every user's choices (printed; the same seed makes the same
    /// choices). Default: from the clock.
    #[arg(long, help_heading = "Load")]
    seed: Option<u64>,

    /// Think time between two steps, MIN..MAX.
    #[arg(
        long,
        help = "Think time between two steps, MIN..MAX [default: 100ms..1s; on sale 0ms..0ms]",
        value_name = "MIN..MAX",
        help_heading = "Load"
    )]
    think: Option<String>,

    /// Pause between two polls while waiting.
    #[arg(long, default_value = "500ms", value_parser = parse_duration, help_heading = "Load")]
    poll: Duration,

    /// Share of users who stop polling while waiting.
    #[arg(long, default_value_t = 0.05, value_name = "P", help_heading = "Load")]
    abandon_queue: f64,

    /// Share of users who walk away from their hold and let it expire.
    #[arg(long, default_value_t = 0.10, value_name = "P", help_heading = "Load")]
    abandon_hold: f64,

    /// Share of users who cancel their hold.
    #[arg(long, default_value_t = 0.05, value_name = "P", help_heading = "Load")]
    cancel: f64,

    /// Share of payers who retry the payment with the same idempotency key (it
    /// must replay the first).
    #[arg(long, default_value_t = 0.05, value_name = "P", help_heading = "Load")]
    retry_pay: f64,

    /// Share of payers who try to hold again with their ended token (it must be
    /// refused).
    #[arg(long, default_value_t = 0.10, value_name = "P", help_heading = "Load")]
    probe: f64,

    /// Seats a user tries before giving up.
    #[arg(long, default_value_t = 5, value_name = "N", help_heading = "Load")]
    hold_attempts: u32,

    /// How strongly users prefer low seat numbers (Zipf exponent, 0 = uniform):
    /// higher means more conflicts. Default 1.2; on sale 0 (any seat will do).
    #[arg(long, value_name = "S", help_heading = "Load")]
    seat_skew: Option<f64>,

    /// How strongly users prefer the earliest dates (Zipf exponent). Default
    /// 1.0; on sale 0.
    #[arg(long, value_name = "S", help_heading = "Load")]
    date_skew: Option<f64>,

    /// Dates created at the start.
    /// (Default 3; on sale 10.)
    #[arg(long, help_heading = "Catalog")]
    dates: Option<u16>,

    /// Seats per date (1-1000).
    #[arg(long, default_value_t = 50, help_heading = "Catalog")]
    seats: u16,

    /// Price of every seat, in minor units.
    #[arg(long, default_value_t = 5_000, help_heading = "Catalog")]
    price: i64,

    /// Do not add dates as seats sell out.
    #[arg(long, help_heading = "Catalog")]
    no_restock: bool,

    /// Hold TTL (in process and --spawn).
    #[arg(long, default_value = "15s", value_parser = parse_duration, help_heading = "Engine (in process and --spawn)")]
    hold_ttl: Duration,

    /// Session TTL once an admitted user shows up.
    #[arg(long, default_value = "30s", value_parser = parse_duration, help_heading = "Engine (in process and --spawn)")]
    session_ttl: Duration,

    /// How long an admitted user has to show up.
    #[arg(long, default_value = "10s", value_parser = parse_duration, help_heading = "Engine (in process and --spawn)")]
    show_up_grace: Duration,

    /// Live holds per user at most.
    #[arg(
        long,
        default_value_t = 4,
        help_heading = "Engine (in process and --spawn)"
    )]
    max_holds: u32,

    /// Users admitted per tick (0: no rate limit; then --max-active is needed).
    /// (Default 100; on sale 0: admission by capacity alone.)
    #[arg(long, help_heading = "Admission")]
    admit_batch: Option<u32>,

    /// Tick interval of admission.
    /// (Default 100ms; on sale 20ms: admission by capacity looks for room often,
    /// so a buyer who arrives just after a tick is not kept waiting by the next.)
    #[arg(long, value_parser = parse_duration, help_heading = "Admission")]
    admit_every: Option<Duration>,

    /// Active users at most (0: no cap).
    /// (Default 1000; on sale the seats on sale plus a fifth: the shop serves as
    /// many as can buy, the line waits, and sold out closes it.)
    #[arg(long, help_heading = "Admission")]
    max_active: Option<u32>,

    /// Print a progress line a second instead of the dashboard.
    #[arg(long, help_heading = "Output")]
    no_tui: bool,

    /// Write the report as JSON to FILE, as Markdown beside it (FILE with .md),
    /// and its plots as SVG files beside them (FILE-holds.svg, FILE-latency.svg),
    /// linked from the Markdown. The files are checked to be writable before
    /// the run.
    #[arg(long, value_name = "FILE", help_heading = "Output")]
    report: Option<PathBuf>,

    /// Fail the run (exit status 5) when the expression holds at the end, as
    /// k6's thresholds do: METRIC OP VALUE with OP one of > >= < <=, e.g.
    /// 'hold.p99>50ms', 'pay.p99.9>=1s', 'error_rate>1%', 'payments<100'.
    /// METRIC is OPERATION.STAT (operations: issue, poll, watch, dates, seats,
    /// hold, charge, pay, pay_retry, cancel, probe; stats: p50, p90, p99,
    /// p99.9, max, mean with a unit us, ms or s; count, ok, errors, rate;
    /// error_rate as 0.01 or 1%), or one of errors, error_rate, holds,
    /// conflicts, conflict_rate, payments, payments_per_sec. Repeat for
    /// several.
    #[arg(long = "fail-if", value_name = "EXPR", help_heading = "Output")]
    fail_if: Vec<booking_sim::thresholds::Threshold>,

    /// Run on a database (--database, --spawn) that holds concerts or queue
    /// tokens of earlier runs, or on --url servers whose waiting room has users
    /// waiting. Without it these are refused: new users would queue behind the
    /// leftovers and the figures would mix both runs.
    /// Even with it, a run of the same --seed is refused (the same users and
    /// idempotency keys).
    #[arg(long, help_heading = "Target")]
    reuse: bool,

    /// How long operations in flight may take to finish at the end.
    #[arg(long, default_value = "30s", value_parser = parse_duration, help_heading = "Output")]
    drain: Duration,

    /// Database connections per pool (in process, and per spawned instance).
    #[arg(long, default_value_t = 16, help_heading = "Output")]
    pool: u32,

    /// How stale the servers' waiting-room answers may be, for the auditor's order
    /// check with --url: their counters cache, times four while one request reads
    /// it again (`booking serve`'s default 100 ms cache: 400ms). Spawned and
    /// in-process instances use their own setting.
    #[arg(long, default_value = "400ms", value_parser = parse_duration, help_heading = "Output")]
    status_staleness: Duration,
}

/// The exit statuses, stable for scripts and CI.
mod exit {
    /// The run was done, the audit is clean and every threshold passed.
    pub const CLEAN: u8 = 0;
    /// The run could not be done: the target cannot be reached or set up, the
    /// database holds an earlier run, the report cannot be written.
    pub const SETUP: u8 = 1;
    /// A usage error: an unknown flag, a malformed or out-of-range value.
    pub const USAGE: u8 = 2;
    /// The run failed: most requests failed, or the on-sale figures are wrong.
    pub const RUN_FAILED: u8 = 3;
    /// The auditor found a violation of an invariant.
    pub const AUDIT: u8 = 4;
    /// A `--fail-if` threshold was crossed.
    pub const THRESHOLD: u8 = 5;
}

const EXIT_CODES: &str = "\
Exit status (stable, for scripts and CI):
  0  the run was done, the audit is clean and every --fail-if threshold passed
  1  the run could not be done: the target cannot be reached or set up, the
     database holds an earlier run (see --reuse), the report cannot be written
  2  usage error: an unknown flag, a malformed or out-of-range value
  3  the run failed: more than half of the requests failed (the most frequent
     failure is named), or the on-sale figures are wrong
  4  the audit found a violation (the seed that reproduces the run is printed)
  5  a --fail-if threshold was crossed (each one is named)
When several apply, an audit violation (4) comes first, then a failed run (3),
then a crossed threshold (5).";

fn parse_think(s: &str) -> Result<(Duration, Duration), String> {
    let (a, b) = s
        .split_once("..")
        .ok_or_else(|| format!("--think {s:?}: use MIN..MAX, e.g. 100ms..1s"))?;
    Ok((parse_duration(a)?, parse_duration(b)?))
}

fn config(a: &Args) -> Result<(SimConfig, TargetSpec), String> {
    let onsale = a.scenario == "onsale";
    fn pick<T>(onsale: bool, browse: T, sale: T) -> T {
        if onsale { sale } else { browse }
    }
    let users = a.users.unwrap_or(pick(onsale, 2_000, 10_000));
    let duration = a.duration.unwrap_or(pick(
        onsale,
        Duration::from_secs(60),
        Duration::from_secs(120),
    ));
    let ramp = a.ramp.unwrap_or(pick(
        onsale,
        Duration::from_secs(10),
        Duration::from_secs(1),
    ));
    let admit_batch = a.admit_batch.unwrap_or(pick(onsale, 100, 0));
    let dates = a.dates.unwrap_or(pick(onsale, 3, 10));
    let on_sale_cap = u32::try_from(u64::from(dates) * u64::from(a.seats) * 6 / 5)
        .unwrap_or(u32::MAX)
        .clamp(1, 1_000_000);
    let max_active = a.max_active.unwrap_or(pick(onsale, 1_000, on_sale_cap));
    let scenario = if onsale {
        if a.plan.is_some() {
            return Err(
                "--plan is for the browse scenario; on sale, use --users and --ramp".into(),
            );
        }
        Scenario::Onsale(Onsale {
            users,
            arrive_within: ramp,
            max_duration: duration,
            ..Onsale::default()
        })
    } else {
        Scenario::Browse
    };
    let plan = match &a.plan {
        Some(p) => p.clone(),
        None => Plan::constant(users, duration, ramp.min(duration))?,
    };
    let think = a
        .think
        .as_deref()
        .unwrap_or(pick(onsale, "100ms..1s", "0ms..0ms"));
    let (think_min, think_max) = parse_think(think)?;
    let admit_every = a.admit_every.unwrap_or(pick(
        onsale,
        Duration::from_millis(100),
        Duration::from_millis(20),
    ));
    let policy = AdmissionPolicy::new(
        admit_every,
        (admit_batch > 0).then_some(admit_batch),
        (max_active > 0).then_some(max_active),
    )
    .map_err(|e| format!("admission policy: {e}"))?;
    let seed = a.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    let cfg = SimConfig {
        scenario,
        plan,
        seed,
        behaviour: Behaviour {
            think_min,
            think_max,
            poll_every: a.poll,
            p_abandon_queue: a.abandon_queue,
            p_abandon_hold: a.abandon_hold,
            p_cancel: a.cancel,
            p_retry_pay: a.retry_pay,
            p_probe: a.probe,
            max_hold_attempts: a.hold_attempts,
            seat_skew: a.seat_skew.unwrap_or(pick(onsale, 1.2, 0.0)),
            date_skew: a.date_skew.unwrap_or(pick(onsale, 1.0, 0.0)),
        },
        policy,
        initial_dates: dates,
        seats_per_date: a.seats,
        price: a.price,
        restock: !a.no_restock && !onsale,
        engine: Config {
            hold_ttl: a.hold_ttl,
            session_ttl: a.session_ttl,
            show_up_grace: a.show_up_grace,
            max_live_holds: a.max_holds,
            // The instance caches as `booking serve` sets them.
            ..SimConfig::default().engine
        },
        drain: a.drain,
        pool_size: a.pool,
        connections: a.connections,
        push: a.push,
        baseline: a.baseline,
        audit: booking_sim::audit::AuditOptions {
            status_staleness_ms: a.status_staleness.as_millis() as i64,
            ..Default::default()
        },
        reuse: a.reuse,
        ..SimConfig::default()
    };
    let spec = match (a.spawn, a.urls.is_empty(), &a.database) {
        (Some(_), false, _) => return Err("give either --spawn or --url, not both".into()),
        (Some(n), true, Some(db)) => TargetSpec::Spawn {
            n,
            database: db.clone(),
        },
        (Some(_), true, None) => {
            return Err("--spawn needs --database postgres://... for the servers".into());
        }
        (None, false, db) => TargetSpec::Http {
            bases: a.urls.clone(),
            admin_key: a
                .admin_key
                .clone()
                .ok_or("--url needs --admin-key (or BOOKING_ADMIN_KEY)")?,
            admin_url: a.admin_url.clone(),
            database: db.clone(),
        },
        (None, true, Some(db)) => TargetSpec::Database(db.clone()),
        (None, true, None) => TargetSpec::Memory,
    };
    if a.push && matches!(spec, TargetSpec::Database(_) | TargetSpec::Memory) {
        return Err("--push needs an HTTP target: give --spawn N or --url".into());
    }
    Ok((cfg, spec))
}

/// Creates (or truncates) every file the report will write, so that a path
/// that cannot be written is found before the run, not after it.
fn check_report_paths(path: &std::path::Path) -> Result<(), String> {
    for p in booking_sim::report::report_paths(path) {
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&p)
            .map_err(|e| format!("cannot write the report {}: {e}", p.display()))?;
    }
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    let (cfg, spec) = match config(&args) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("booking-sim: {e}");
            return ExitCode::from(exit::USAGE);
        }
    };
    if let Err(e) = cfg.validate() {
        eprintln!("booking-sim: {e}");
        return ExitCode::from(exit::USAGE);
    }
    if let Some(path) = &args.report
        && let Err(e) = check_report_paths(path)
    {
        eprintln!("booking-sim: {e}");
        return ExitCode::from(exit::SETUP);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .thread_name("sim-worker")
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("booking-sim: cannot start the runtime: {e}");
            return ExitCode::from(exit::SETUP);
        }
    };
    // The dashboard needs a terminal on standard output; without one (output
    // redirected to a file) progress lines go to standard error instead.
    let tui = !args.no_tui && std::io::stdout().is_terminal();
    let ui = if tui { Ui::Dashboard } else { Ui::Progress };
    if !tui {
        let what = match &cfg.scenario {
            Scenario::Onsale(o) => format!(
                "on sale, {} users within {}",
                o.users,
                booking_sim::plan::format_duration(o.arrive_within)
            ),
            Scenario::Browse => format!("plan {}", cfg.plan),
        };
        eprintln!(
            "booking-sim: seed {}, {what}, target {}",
            cfg.seed,
            spec.describe()
        );
    }
    if let Some(changes) = spec.changes(&cfg) {
        eprintln!("booking-sim: {changes}");
    }
    let outcome = runtime.block_on(run(&cfg, &spec, ui));
    let mut outcome = match outcome {
        Ok(o) => o,
        Err(e) => {
            eprintln!("booking-sim: {e}");
            return ExitCode::from(match e {
                SimError::Config(_) => exit::USAGE,
                _ => exit::SETUP,
            });
        }
    };
    outcome.report.thresholds = booking_sim::thresholds::evaluate(&args.fail_if, &outcome.report);
    println!("{}", outcome.report.to_markdown());
    if let Some(path) = &args.report {
        match outcome.report.write(path) {
            Ok(md) => eprintln!(
                "booking-sim: report written to {} and {} (plots beside them)",
                path.display(),
                md.display()
            ),
            Err(e) => {
                eprintln!("booking-sim: cannot write {}: {e}", path.display());
                return ExitCode::from(exit::SETUP);
            }
        }
    }
    if outcome
        .report
        .errors
        .iter()
        .any(|(k, n)| k.ends_with("/rate_limited") && *n > 0)
    {
        eprintln!("booking-sim: {}", booking_sim::http::RATE_LIMIT_HINT);
    }
    let crossed = booking_sim::thresholds::check(&args.fail_if, &outcome.report);
    for c in &crossed {
        eprintln!(
            "booking-sim: threshold crossed: {} ({})",
            c.threshold, c.actual
        );
    }
    let clean = outcome.audit().clean;
    if !clean {
        eprintln!(
            "booking-sim: the audit FAILED: {}. Reproduce with --seed {}",
            outcome.audit().failed().join(", "),
            cfg.seed
        );
    }
    let run_failure = outcome.report.run_failure();
    if let Some(why) = &run_failure {
        eprintln!("booking-sim: the run FAILED: {why}");
    }
    ExitCode::from(verdict(clean, run_failure.is_some(), !crossed.is_empty()))
}

/// The exit status of a run that was done: an audit violation first, then a
/// failed run, then a crossed threshold.
fn verdict(audit_clean: bool, run_failed: bool, threshold_crossed: bool) -> u8 {
    if !audit_clean {
        exit::AUDIT
    } else if run_failed {
        exit::RUN_FAILED
    } else if threshold_crossed {
        exit::THRESHOLD
    } else {
        exit::CLEAN
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_verdict_has_its_status_in_the_documented_order() {
        assert_eq!(verdict(true, false, false), 0);
        assert_eq!(verdict(false, false, false), 4);
        assert_eq!(verdict(false, true, true), 4, "the audit first");
        assert_eq!(verdict(true, true, false), 3);
        assert_eq!(verdict(true, true, true), 3, "then a failed run");
        assert_eq!(verdict(true, false, true), 5);
        let codes = [
            exit::CLEAN,
            exit::SETUP,
            exit::USAGE,
            exit::RUN_FAILED,
            exit::AUDIT,
            exit::THRESHOLD,
        ];
        for (i, c) in codes.iter().enumerate() {
            assert!(
                EXIT_CODES.contains(&format!("  {c}  ")),
                "--help documents {c}"
            );
            assert!(!codes[..i].contains(c), "{c} is distinct");
        }
    }
}
