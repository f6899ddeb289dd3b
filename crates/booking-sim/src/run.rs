//! A whole run: set up the target and the catalog, drive virtual users along the
//! load plan, drain, read the database, audit, and report.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use booking_core::domain::{AdmissionPolicy, Timestamp};
use booking_core::{Booking, Clock, Config, MemoryStore, Store, SystemClock, TokenSigner};
use booking_store::{Backend, StoreOptions, connect};

use crate::audit::{self, Audit, AuditOptions};
use crate::db::{self, DbState};
use crate::events::{Ending, Event, Fact};
use crate::http::{self, HttpTarget};
use crate::inproc::InProcess;
use crate::plan::Plan;
use crate::record::Record;
use crate::report::{
    CpuReport, OnsaleReport, PolicyReport, PollSecond, QueueReport, Report, SettingsReport,
    TargetReport, UsersReport,
};
use crate::stats::{Snapshot, run_aggregator};
use crate::target::Target;
use crate::user::{Behaviour, Control, Ctx, visit_rng};

/// What the virtual users do.
#[derive(Debug, Clone, PartialEq)]
pub enum Scenario {
    /// Users come and go along the plan, browse, race for seats, pay or
    /// abandon, visit after visit.
    Browse,
    /// The sale opens: every user arrives at once and tries to buy one seat
    /// until told bought or sold out (see [`Onsale`]).
    Onsale(Onsale),
}

/// The on-sale scenario: `users` arrive within `arrive_within` of sale open
/// for one concert (the run's dates, no restocking); each takes a token, waits
/// as the server asks, looks at the seats, holds (another seat on a conflict,
/// the behaviour's hold attempts, then `relooks` fresh looks), tops up and
/// pays, or is told sold out. The run ends when every user has a final answer,
/// or at `max_duration`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Onsale {
    /// Users, each buying one seat.
    pub users: u32,
    /// Every user arrives within this long of sale open.
    pub arrive_within: Duration,
    /// The run stops here even if users are still waiting for an answer.
    pub max_duration: Duration,
    /// Fresh looks at the dates after a look's hold attempts failed.
    pub relooks: u32,
}

impl Default for Onsale {
    fn default() -> Self {
        Onsale {
            users: 10_000,
            arrive_within: Duration::from_secs(1),
            max_duration: Duration::from_secs(120),
            relooks: 1,
        }
    }
}

/// Everything a run needs to know.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// What the users do.
    pub scenario: Scenario,
    /// How many users when (the browse scenario).
    pub plan: Plan,
    /// Seeds every user's choices.
    pub seed: u64,
    /// How users behave.
    pub behaviour: Behaviour,
    /// Dates created at the start.
    pub initial_dates: u16,
    /// Seats per date (1 to 1,000).
    pub seats_per_date: u16,
    /// Price of every seat, minor units.
    pub price: i64,
    /// Add a date whenever fewer than two dates' worth of seats are free.
    pub restock: bool,
    /// The most dates a run creates.
    pub max_dates: u32,
    /// The admission policy the run sets.
    pub policy: AdmissionPolicy,
    /// The engine's rules for in-process and spawned targets (hold TTL, session
    /// TTL, show-up grace, ...).
    pub engine: Config,
    /// How often the waiting room is sampled.
    pub sample_every: Duration,
    /// How long operations in flight may take to finish once the plan ends.
    pub drain: Duration,
    /// Connections per pool (in process, and per spawned instance).
    pub pool_size: u32,
    /// Worker threads of the spawned servers' runtime.
    pub server_threads: usize,
    /// Over HTTP: connections per instance and lane (the line's, the shop's) at
    /// most, shared by the virtual users.
    pub connections: usize,
    /// Over HTTP: waiting users hold a pushed status stream instead of polling
    /// (a connection each, beside `connections`).
    pub push: bool,
    /// Measure the baselines (hello world, raw SQL) just before the load.
    pub baseline: bool,
    /// What the auditor tolerates.
    pub audit: AuditOptions,
    /// Run on a database that holds concerts or queue tokens of earlier runs
    /// (refused otherwise: new users would queue behind the leftovers).
    pub reuse: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            scenario: Scenario::Browse,
            plan: Plan::constant(2_000, Duration::from_secs(60), Duration::from_secs(10))
                .unwrap_or_else(|_| unreachable!("a valid plan")),
            seed: 1,
            behaviour: Behaviour::default(),
            initial_dates: 3,
            seats_per_date: 50,
            price: 5_000,
            restock: true,
            max_dates: 5_000,
            policy: AdmissionPolicy::rate_and_capacity(100, Duration::from_millis(100), 1_000)
                .unwrap_or_else(|_| unreachable!("a valid policy")),
            // The instance caches as `booking serve` sets them by default, so that
            // a run measures the server as it is deployed.
            engine: Config {
                hold_ttl: Duration::from_secs(15),
                session_ttl: Duration::from_secs(30),
                show_up_grace: Duration::from_secs(10),
                counters_cache: Duration::from_millis(100),
                gate_cache: Duration::from_secs(1),
                seat_map_cache: Duration::from_millis(100),
                ..Config::default()
            },
            sample_every: Duration::from_millis(500),
            drain: Duration::from_secs(30),
            pool_size: 16,
            server_threads: 2,
            connections: http::DEFAULT_CONNECTIONS,
            push: false,
            baseline: false,
            audit: AuditOptions::default(),
            reuse: false,
        }
    }
}

impl SimConfig {
    /// Checks every setting.
    ///
    /// # Errors
    /// A sentence naming the bad setting.
    pub fn validate(&self) -> Result<(), String> {
        self.behaviour.validate()?;
        self.engine.validate().map_err(|e| e.to_string())?;
        if !(1..=1_000).contains(&self.seats_per_date) {
            return Err("--seats is 1 to 1000".into());
        }
        if !(1..=1_000).contains(&self.initial_dates) {
            return Err("--dates is 1 to 1000".into());
        }
        if u32::from(self.initial_dates) > self.max_dates {
            return Err("--dates exceeds the most dates a run creates".into());
        }
        if !(1..=1_000_000).contains(&self.price) {
            return Err("--price is 1 to 1,000,000".into());
        }
        if self.price > self.engine.max_charge.minor_units() {
            return Err("--price exceeds the engine's largest charge".into());
        }
        if !(1..=1_000).contains(&self.pool_size) {
            return Err("--pool is 1 to 1000 connections".into());
        }
        if !(1..=10_000).contains(&self.connections) {
            return Err("--connections is 1 to 10000 per instance".into());
        }
        if let Scenario::Onsale(o) = &self.scenario {
            if !(1..=1_000_000).contains(&o.users) {
                return Err("--users is 1 to 1,000,000 in the on-sale scenario".into());
            }
            if o.max_duration.is_zero() || o.arrive_within > o.max_duration {
                return Err("--ramp (arrivals) must fit in --duration".into());
            }
            if o.relooks > 100 {
                return Err("re-looks are at most 100".into());
            }
        }
        if self.sample_every < Duration::from_millis(50) {
            return Err("the queue sample interval is at least 50 ms".into());
        }
        Ok(())
    }
}

/// What to simulate against. Its `Debug` shows no admin key and no password of
/// a database URL.
#[derive(Clone, PartialEq, Eq)]
pub enum TargetSpec {
    /// booking-core over the memory store, in this process.
    Memory,
    /// booking-core over SQLite or PostgreSQL (by URL), in this process.
    Database(String),
    /// booking-http instances already running.
    Http {
        /// Their base URLs.
        bases: Vec<String>,
        /// Their admin key.
        admin_key: String,
        /// The instance the operator side talks to (the first of `bases` when
        /// `None`).
        admin_url: Option<String>,
        /// Their database, for the audit (without it, the database checks are
        /// skipped).
        database: Option<String>,
    },
    /// `n` booking-http instances started here, on one database.
    Spawn {
        /// How many.
        n: usize,
        /// The database URL (PostgreSQL for more than one).
        database: String,
    },
}

impl std::fmt::Debug for TargetSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TargetSpec::Memory => f.write_str("Memory"),
            TargetSpec::Database(url) => f.debug_tuple("Database").field(&redact_url(url)).finish(),
            TargetSpec::Http {
                bases,
                admin_url,
                database,
                ..
            } => f
                .debug_struct("Http")
                .field("bases", bases)
                .field("admin_key", &"***")
                .field("admin_url", admin_url)
                .field("database", &database.as_deref().map(redact_url))
                .finish(),
            TargetSpec::Spawn { n, database } => f
                .debug_struct("Spawn")
                .field("n", n)
                .field("database", &redact_url(database))
                .finish(),
        }
    }
}

impl TargetSpec {
    /// What a run changes on a server it does not own (`--url`), for people,
    /// said before it runs; `None` for targets the run owns.
    pub fn changes(&self, cfg: &SimConfig) -> Option<String> {
        let TargetSpec::Http {
            admin_url, bases, ..
        } = self
        else {
            return None;
        };
        let at = admin_url
            .as_deref()
            .or(bases.first().map(String::as_str))
            .unwrap_or("the server");
        Some(format!(
            "this run changes {at}: it adds a concert \"booking-sim run, seed {}\" with {} \
             date(s) of {} seats{}, issues queue tokens, charges and pays as its users, and \
             sets the admission policy to {}; the policy it finds is put back at the end",
            cfg.seed,
            cfg.initial_dates,
            cfg.seats_per_date,
            if cfg.restock {
                " (more as seats sell out)"
            } else {
                ""
            },
            describe_policy(&cfg.policy)
        ))
    }

    /// The target for people: no admin key, and no password of a database URL.
    pub fn describe(&self) -> String {
        match self {
            TargetSpec::Memory => "in process, memory".into(),
            TargetSpec::Database(url) => format!("in process, {}", redact_url(url)),
            TargetSpec::Http {
                bases,
                admin_url,
                database,
                ..
            } => format!(
                "HTTP {}{}{}",
                bases.join(","),
                admin_url
                    .as_deref()
                    .map_or_else(String::new, |a| format!(", operator side {a}")),
                database
                    .as_deref()
                    .map_or_else(String::new, |d| format!(", audit {}", redact_url(d)))
            ),
            TargetSpec::Spawn { n, database } => {
                format!("{} spawned on {}", instances(*n), redact_url(database))
            }
        }
    }
}

/// An admission policy for people: `batch 100 every 100 ms, at most 1000 active`.
pub fn describe_policy(p: &AdmissionPolicy) -> String {
    let every = crate::plan::format_duration(p.interval());
    let rate = match p.batch() {
        Some(b) => format!("batch {b} every {every}"),
        None => format!("no batch limit (ticks every {every})"),
    };
    match p.max_active() {
        Some(c) => format!("{rate}, at most {c} active"),
        None => format!("{rate}, no cap on active users"),
    }
}

/// `url` with the password of its user part (`user:password@`) replaced by `***`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (auth, host) = match rest.split_once('@') {
        Some(x) => x,
        None => return url.to_owned(),
    };
    match auth.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

/// How the run shows itself while it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ui {
    /// Nothing (tests, library use).
    Quiet,
    /// A progress line every second on standard error.
    Progress,
    /// The terminal dashboard.
    Dashboard,
}

/// Why a run could not be done (as opposed to a run that found violations).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SimError {
    /// A setting is out of bounds.
    #[error("{0}")]
    Config(String),
    /// The target could not be set up.
    #[error("cannot set up the target: {0}")]
    Setup(String),
    /// The database holds earlier runs and `reuse` was not given.
    #[error("{0}")]
    Reused(String),
    /// The database could not be read for the audit.
    #[error(transparent)]
    Audit(#[from] db::ReadError),
    /// The dashboard failed.
    #[error("the dashboard failed: {0}")]
    Dashboard(String),
}

/// What a run gives back.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The report (its audit included).
    pub report: Report,
    /// What the users were told.
    pub record: Record,
    /// The final figures.
    pub snapshot: Snapshot,
    /// Whether the run was stopped by hand before its plan ended.
    pub stopped_early: bool,
}

impl Outcome {
    /// The audit.
    pub fn audit(&self) -> &Audit {
        &self.report.audit
    }
}

/// What the dashboard shows about the run itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunInfo {
    /// Target, for people.
    pub target: String,
    /// The seed.
    pub seed: u64,
    /// The plan.
    pub plan: String,
    /// How long the plan lasts.
    pub plan_total: Duration,
    /// The on-sale scenario's users (`None` for the browse scenario).
    pub onsale_users: Option<u32>,
    /// When the load started (the aggregator's clock).
    pub start: Instant,
}

/// The live state the dashboard and progress lines read.
pub struct Live {
    /// The latest published snapshot.
    pub snapshot: Arc<Mutex<Snapshot>>,
    /// The run's switches.
    pub control: Arc<Control>,
    /// Set when the load phase is over.
    pub finished: AtomicBool,
    /// About the run.
    pub info: RunInfo,
}

/// The result of driving users: figures and record, before the audit.
struct Driven {
    snapshot: Snapshot,
    record: Record,
    elapsed: Duration,
    cpu: Option<CpuReport>,
    n_cut_off: u64,
    stopped_early: bool,
    /// The schedules of the run's dates.
    schedules: Vec<i64>,
}

const SECRET_PREFIX: &str = "booking-sim in-process secret, 32+ bytes:";

fn in_process<S: Store + Clone>(
    store: S,
    engine: &Config,
) -> Result<Arc<Booking<S, SystemClock>>, SimError> {
    let secret = format!("{SECRET_PREFIX}{}", uuid::Uuid::new_v4().simple());
    let signer = TokenSigner::new(secret.as_bytes()).map_err(|e| SimError::Setup(e.to_string()))?;
    Booking::new(store, SystemClock, signer, engine.clone())
        .map(Arc::new)
        .map_err(|e| SimError::Config(e.to_string()))
}

/// Runs a whole simulation against `spec`: users, drain, audit, report.
///
/// # Errors
/// [`SimError`] when the run cannot be done; violations found by the auditor are
/// in the outcome's report, not errors.
pub async fn run(cfg: &SimConfig, spec: &TargetSpec, ui: Ui) -> Result<Outcome, SimError> {
    cfg.validate().map_err(SimError::Config)?;
    let baseline = if cfg.baseline {
        let database = match spec {
            TargetSpec::Database(url) | TargetSpec::Spawn { database: url, .. } => Some(url),
            TargetSpec::Http { database, .. } => database.as_ref(),
            TargetSpec::Memory => None,
        };
        let b = crate::baseline::measure(cfg.connections, database.map(String::as_str))
            .await
            .map_err(SimError::Setup)?;
        Some(b)
    } else {
        None
    };
    let mut outcome = run_target(cfg, spec, ui).await?;
    outcome.report.baseline = baseline;
    Ok(outcome)
}

async fn run_target(cfg: &SimConfig, spec: &TargetSpec, ui: Ui) -> Result<Outcome, SimError> {
    let control = Arc::new(Control::default());
    if ui != Ui::Quiet {
        let c = Arc::clone(&control);
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                c.stop();
            }
        });
    }
    let mut audit_opts = cfg.audit;
    if audit_opts.cap.is_none() {
        audit_opts.cap = cfg.policy.max_active();
    }
    audit_opts.clock_tolerance_ms = cfg.engine.clock_tolerance.as_millis() as i64;
    if !matches!(spec, TargetSpec::Http { .. }) {
        // Instances of this process: their own counters cache says how stale a
        // waiting-room answer may be.
        let own = i64::try_from(cfg.engine.max_counters_staleness().as_millis());
        audit_opts.status_staleness_ms = own.unwrap_or(i64::MAX);
    }
    match spec {
        TargetSpec::Memory => {
            let store = MemoryStore::new();
            let booking = in_process(store.clone(), &cfg.engine)?;
            let target_report = target_report("memory", 0, false, "memory", 0);
            let d = with_background(&booking, || {
                drive(
                    Arc::new(InProcess::new(Arc::clone(&booking))),
                    cfg,
                    ui,
                    &control,
                    "in process, memory".into(),
                )
            })
            .await?;
            let state = db::from_memory(&store.snapshot());
            Ok(finish(cfg, target_report, d, Some(&state), &audit_opts))
        }
        TargetSpec::Database(url) => {
            let backend = Backend::of_url(url).map_err(|e| SimError::Config(e.to_string()))?;
            let name = backend_name(backend);
            let store = connect(
                url,
                StoreOptions {
                    max_connections: cfg.pool_size,
                },
            )
            .await
            .map_err(|e| SimError::Setup(e.to_string()))?;
            if let Err(e) = refuse_leftovers(cfg, url).await {
                store.close().await;
                return Err(e);
            }
            let booking = in_process(store.clone(), &cfg.engine)?;
            let d = with_background(&booking, || {
                drive(
                    Arc::new(InProcess::new(Arc::clone(&booking))),
                    cfg,
                    ui,
                    &control,
                    format!("in process, {name}"),
                )
            })
            .await?;
            store.close().await;
            let state = db::read(url).await?;
            Ok(finish(
                cfg,
                target_report(name, 0, false, name, 0),
                d,
                Some(&state),
                &audit_opts,
            ))
        }
        TargetSpec::Http {
            bases,
            admin_key,
            admin_url,
            database,
        } => {
            check_open_files(
                cfg.connections * bases.len() + streams(cfg) + 64,
                "--connections or --push",
            )?;
            let target = HttpTarget::with_options(
                bases.clone(),
                admin_key.clone(),
                http::HttpOptions {
                    connections: cfg.connections,
                    admin_base: admin_url.clone(),
                    push: cfg.push,
                },
            )
            .map_err(SimError::Setup)?;
            let label = format!("HTTP, {}", instances(bases.len()));
            let target = Arc::new(target);
            // The server is not the run's: its policy is put back at the end.
            let before = target.current_policy().await.map_err(|e| {
                SimError::Setup(format!(
                    "reading the admission policy (GET /v1/admin/queue): {e}"
                ))
            })?;
            if !cfg.reuse
                && let Ok(q) = target.queue_sample().await
                && q.waiting > 0
            {
                return Err(SimError::Reused(format!(
                    "the waiting room of {} has {} user(s) waiting already: new users would \
                     queue behind them and the figures would mix both. Let them lapse, or give \
                     --reuse to run anyway",
                    admin_url.as_deref().unwrap_or(&bases[0]),
                    q.waiting
                )));
            }
            let d = drive(Arc::clone(&target), cfg, ui, &control, label).await;
            let restored = target.set_policy(before).await;
            if ui != Ui::Quiet {
                match &restored {
                    Ok(()) => eprintln!(
                        "booking-sim: the admission policy is back to {}",
                        describe_policy(&before)
                    ),
                    Err(e) => eprintln!(
                        "booking-sim: could not put the admission policy back to {}: {e}",
                        describe_policy(&before)
                    ),
                }
            }
            let d = d?;
            let server_latency = target.server_latency().await;
            let db_name = database
                .as_deref()
                .and_then(|u| Backend::of_url(u).ok())
                .map_or("none", backend_name);
            let state = match database {
                Some(url) => Some(db::read(url).await?),
                None => None,
            };
            // Answers of other servers may be served from their counters cache.
            let mut o = finish(
                cfg,
                target_report("http", bases.len(), false, db_name, cfg.connections),
                d,
                state.as_ref(),
                &audit_opts,
            );
            o.report.server_latency = server_latency;
            Ok(o)
        }
        TargetSpec::Spawn { n, database } => {
            let backend = Backend::of_url(database).map_err(|e| SimError::Config(e.to_string()))?;
            if *n > 1 && backend != Backend::Postgres {
                return Err(SimError::Config(
                    "several instances need PostgreSQL: give --database postgres://...".into(),
                ));
            }
            if !(1..=64).contains(n) {
                return Err(SimError::Config("--spawn is 1 to 64 instances".into()));
            }
            // Both ends of every connection are in this process, and each
            // instance has its pool.
            check_open_files(
                (2 * cfg.connections + cfg.pool_size as usize) * n + 2 * streams(cfg) + 64,
                "--connections, --spawn or --push (or serve the instances as processes of \
                 their own and give --url)",
            )?;
            let servers = http::spawn_servers(
                *n,
                database,
                cfg.engine.clone(),
                cfg.server_threads,
                cfg.pool_size,
            )
            .await
            .map_err(SimError::Setup)?;
            if let Err(e) = refuse_leftovers(cfg, database).await {
                servers.shutdown();
                return Err(e);
            }
            let target = HttpTarget::with_options(
                servers.bases.clone(),
                servers.admin_key.clone(),
                http::HttpOptions {
                    connections: cfg.connections,
                    admin_base: None,
                    push: cfg.push,
                },
            )
            .map_err(SimError::Setup)?;
            let label = format!(
                "HTTP, {} spawned on {}",
                instances(*n),
                backend_name(backend)
            );
            let target = Arc::new(target);
            let d = drive(Arc::clone(&target), cfg, ui, &control, label).await;
            let server_latency = target.server_latency().await;
            servers.shutdown();
            let d = d?;
            let state = db::read(database).await?;
            let mut o = finish(
                cfg,
                target_report("http", *n, true, backend_name(backend), cfg.connections),
                d,
                Some(&state),
                &audit_opts,
            );
            o.report.server_latency = server_latency;
            Ok(o)
        }
    }
}

/// The name of the concert a run with `seed` creates.
pub fn concert_name(seed: u64) -> String {
    format!("booking-sim run, seed {seed}")
}

/// `1 instance`, `3 instances`.
pub fn instances(n: usize) -> String {
    if n == 1 {
        "1 instance".into()
    } else {
        format!("{n} instances")
    }
}

/// Refuses a database with concerts or queue tokens of earlier runs, unless
/// `cfg.reuse`.
async fn refuse_leftovers(cfg: &SimConfig, url: &str) -> Result<(), SimError> {
    let left = db::leftovers(url, &concert_name(cfg.seed))
        .await
        .map_err(|e| SimError::Setup(format!("reading {}: {e}", redact_url(url))))?;
    if cfg.reuse && left.same_name > 0 {
        return Err(SimError::Reused(format!(
            "{} holds an earlier run with seed {}: the same seed makes the same users, \
             wallets and idempotency keys, which would mix with theirs. Give another --seed",
            redact_url(url),
            cfg.seed
        )));
    }
    if cfg.reuse || left.is_empty() {
        return Ok(());
    }
    Err(SimError::Reused(format!(
        "{} holds an earlier run ({} concert(s), {} queue token(s) issued): new users would \
         queue behind the leftovers and the figures would mix both runs. Give a new \
         database, or --reuse to run on it anyway",
        redact_url(url),
        left.concerts,
        left.tokens
    )))
}

fn backend_name(b: Backend) -> &'static str {
    match b {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    }
}

fn target_report(
    kind: &str,
    instances: usize,
    spawned: bool,
    database: &str,
    connections: usize,
) -> TargetReport {
    TargetReport {
        kind: kind.into(),
        instances,
        spawned,
        database: database.into(),
        connections,
    }
}

/// Status streams open at once at most with `--push`: one per user of the peak.
fn streams(cfg: &SimConfig) -> usize {
    if cfg.push {
        cfg.plan.peak() as usize
    } else {
        0
    }
}

/// Raises the limit of open files to the hard limit, and refuses up front when
/// even that is below `needed` (naming the setting that asks for them).
fn check_open_files(needed: usize, setting: &str) -> Result<(), SimError> {
    let Ok(Some((soft, hard))) = booking_http::raise_open_files_limit() else {
        return Ok(());
    };
    if (soft as usize) < needed {
        return Err(SimError::Config(format!(
            "this run needs about {needed} open files (connections and database pools) \
             but the process may open {soft} (hard limit {hard}): lower {setting}, or \
             raise the limit (`ulimit -n`, or LimitNOFILE= of a service)"
        )));
    }
    Ok(())
}

/// Runs `f` with the admission ticker and sweeper of `booking` going.
async fn with_background<S, C, F, Fut>(
    booking: &Arc<Booking<S, C>>,
    f: F,
) -> Result<Driven, SimError>
where
    S: Store,
    C: Clock,
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<Driven, SimError>>,
{
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let bg = tokio::spawn(booking_http::run_background(
        Arc::clone(booking),
        http::background_options(booking.config()),
        http::stopped(stop_rx),
    ));
    let r = f().await;
    let _ = stop_tx.send(true);
    let _ = bg.await;
    r
}

/// Drives virtual users along the plan, then drains them.
async fn drive<T: Target>(
    target: Arc<T>,
    cfg: &SimConfig,
    ui: Ui,
    control: &Arc<Control>,
    label: String,
) -> Result<Driven, SimError> {
    let (tx, rx) = mpsc::channel::<Event>();
    let shared = Arc::new(Mutex::new(Snapshot::default()));

    // The catalog and the policy.
    let name = concert_name(cfg.seed);
    let concert = target
        .create_concert(&name)
        .await
        .map_err(|e| SimError::Setup(format!("creating the concert: {e}")))?;
    let mut n_dates: u32 = 0;
    let mut schedules = Vec::new();
    for _ in 0..cfg.initial_dates {
        schedules.push(add_date(&*target, cfg, concert, n_dates, &tx).await?);
        n_dates += 1;
    }
    target
        .set_policy(cfg.policy)
        .await
        .map_err(|e| SimError::Setup(format!("setting the admission policy: {e}")))?;

    let start = Instant::now();
    let agg = {
        let shared = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("sim-aggregator".into())
            .spawn(move || run_aggregator(rx, start, shared))
            .map_err(|e| SimError::Setup(format!("cannot start the aggregator: {e}")))?
    };
    // Dates were announced before the aggregator's clock started: fine, they
    // carry no time.
    let live = Arc::new(Live {
        snapshot: Arc::clone(&shared),
        control: Arc::clone(control),
        finished: AtomicBool::new(false),
        info: RunInfo {
            start,
            target: label,
            seed: cfg.seed,
            plan: match &cfg.scenario {
                Scenario::Onsale(o) => format!("on sale, {} users", o.users),
                Scenario::Browse => cfg.plan.to_string(),
            },
            plan_total: match &cfg.scenario {
                Scenario::Onsale(o) => o.max_duration,
                Scenario::Browse => cfg.plan.total(),
            },
            onsale_users: match &cfg.scenario {
                Scenario::Onsale(o) => Some(o.users),
                Scenario::Browse => None,
            },
        },
    });
    let ui_thread = match ui {
        Ui::Quiet => None,
        Ui::Progress => Some(crate::tui::spawn_progress(Arc::clone(&live))),
        Ui::Dashboard => Some(crate::tui::spawn_dashboard(Arc::clone(&live))),
    };
    let cpu0 = crate::cpu::read();

    let sampler = spawn_sampler(
        Arc::clone(&target),
        tx.clone(),
        Arc::clone(control),
        cfg.sample_every,
    );

    let ctx = Arc::new(Ctx {
        target: Arc::clone(&target),
        events: tx.clone(),
        behaviour: cfg.behaviour.clone(),
        concert,
        control: Arc::clone(control),
    });
    let mut tasks = tokio::task::JoinSet::new();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut stopped_early = false;
    if let Scenario::Onsale(o) = &cfg.scenario {
        for slot in 0..o.users as usize {
            tasks.spawn(onsale_user(Arc::clone(&ctx), slot, cfg.seed, *o));
        }
    }
    if let Scenario::Onsale(o) = &cfg.scenario {
        onsale_loop(
            &mut tasks,
            &mut tick,
            control,
            start,
            o.max_duration,
            &mut stopped_early,
        )
        .await;
    }
    if cfg.scenario == Scenario::Browse {
        browse_loop(
            &ctx,
            cfg,
            &mut tasks,
            &mut tick,
            start,
            &shared,
            &mut n_dates,
            &mut schedules,
            &mut stopped_early,
        )
        .await?;
    }
    let elapsed = start
        .elapsed()
        .saturating_sub(control.paused_for(Instant::now()));
    control.stop();
    let drained = tokio::time::timeout(cfg.drain, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    let mut n_cut_off = 0;
    if drained.is_err() {
        n_cut_off = tasks.len() as u64;
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }
    let _ = sampler.await;
    let cpu1 = crate::cpu::read();
    drop(ctx);
    drop(tx);
    let (snapshot, record) = agg
        .join()
        .map_err(|_| SimError::Setup("the aggregator panicked".into()))?;
    live.finished.store(true, Ordering::Release);
    if let Some(h) = ui_thread {
        match h.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(SimError::Dashboard(e.to_string())),
            Err(_) => return Err(SimError::Dashboard("the dashboard panicked".into())),
        }
    }
    let cpu = cpu_report(cpu0, cpu1, elapsed);
    Ok(Driven {
        snapshot,
        record,
        elapsed,
        cpu,
        n_cut_off,
        stopped_early,
        schedules,
    })
}

/// The waiting-room sampler: one queue sample every `every`, until the run stops.
fn spawn_sampler<T: Target>(
    target: Arc<T>,
    tx: mpsc::Sender<Event>,
    control: Arc<Control>,
    every: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = control.stopped() => return,
            }
            if let Ok(q) = target.queue_sample().await {
                let _ = tx.send(Event::Queue(q));
            }
        }
    })
}

/// The browse scenario's plan loop: every tick, as many users as the plan says
/// (up to its peak) each on its slot, and new dates when few seats are left
/// (`restock`), until the plan ends or the run is stopped by hand.
#[allow(clippy::too_many_arguments)]
async fn browse_loop<T: Target>(
    ctx: &Arc<Ctx<T>>,
    cfg: &SimConfig,
    tasks: &mut tokio::task::JoinSet<()>,
    tick: &mut tokio::time::Interval,
    start: Instant,
    shared: &Mutex<Snapshot>,
    n_dates: &mut u32,
    schedules: &mut Vec<i64>,
    stopped_early: &mut bool,
) -> Result<(), SimError> {
    let peak = cfg.plan.peak() as usize;
    let running: Arc<Vec<AtomicBool>> =
        Arc::new((0..peak).map(|_| AtomicBool::new(false)).collect());
    let active = Arc::new(AtomicUsize::new(0));
    loop {
        tick.tick().await;
        if ctx.control.is_stopping() {
            *stopped_early = true;
            break;
        }
        if ctx.control.is_paused() {
            continue;
        }
        let t = start
            .elapsed()
            .saturating_sub(ctx.control.paused_for(Instant::now()));
        if t >= cfg.plan.total() {
            break;
        }
        let want = (cfg.plan.users_at(t) as usize).min(peak);
        active.store(want, Ordering::Relaxed);
        for slot in 0..want {
            if !running[slot].swap(true, Ordering::AcqRel) {
                tasks.spawn(slot_loop(
                    Arc::clone(ctx),
                    slot,
                    cfg.seed,
                    Arc::clone(&running),
                    Arc::clone(&active),
                ));
            }
        }
        while tasks.try_join_next().is_some() {}
        if cfg.restock {
            let (free, known) = {
                let s = shared.lock().unwrap_or_else(|p| p.into_inner());
                (s.n_seats_free, s.n_dates)
            };
            let seats = u64::from(cfg.seats_per_date);
            let mut estimate = free + u64::from(*n_dates).saturating_sub(known) * seats;
            let mut added = 0;
            while estimate < 2 * seats && *n_dates < cfg.max_dates && added < 5 {
                schedules
                    .push(add_date(&*ctx.target, cfg, ctx.concert, *n_dates, &ctx.events).await?);
                *n_dates += 1;
                added += 1;
                estimate += seats;
            }
        }
    }
    Ok(())
}

/// The CPU time the run took, between two readings `elapsed` apart: the whole
/// process, the servers it spawned, and the simulator (the rest).
fn cpu_report(
    before: Option<crate::cpu::CpuTimes>,
    after: Option<crate::cpu::CpuTimes>,
    elapsed: Duration,
) -> Option<CpuReport> {
    let (a, b) = (before?, after?);
    let secs = elapsed.as_secs_f64().max(1e-3);
    let process = b.process_secs - a.process_secs;
    let servers = b.servers_secs - a.servers_secs;
    let sim = (process - servers).max(0.0);
    let r = |x: f64| (x * 100.0).round() / 100.0;
    Some(CpuReport {
        process_secs: r(process),
        process_percent: r(process / secs * 100.0),
        servers_secs: r(servers),
        simulator_secs: r(sim),
        simulator_percent: r(sim / secs * 100.0),
    })
}

/// Creates the `k`-th date (k days after tomorrow, 20:00 UTC), announces it,
/// and returns its schedule.
async fn add_date<T: Target>(
    target: &T,
    cfg: &SimConfig,
    concert: i64,
    k: u32,
    tx: &mpsc::Sender<Event>,
) -> Result<i64, SimError> {
    let now = SystemClock.now();
    let day = 86_400_000;
    let tomorrow = (now.as_millis() / day + 1) * day + 20 * 3_600_000;
    let starts_at = Timestamp::from_millis(tomorrow + i64::from(k) * day);
    let d = target
        .create_date(concert, starts_at, cfg.seats_per_date, cfg.price)
        .await
        .map_err(|e| SimError::Setup(format!("creating a date: {e}")))?;
    let _ = tx.send(Event::DateAdded {
        schedule: d.schedule,
        seats: cfg.seats_per_date,
    });
    Ok(d.schedule)
}

/// Waits until every on-sale user has ended, the run is stopped by hand, or
/// `max_duration` has passed.
async fn onsale_loop(
    tasks: &mut tokio::task::JoinSet<()>,
    tick: &mut tokio::time::Interval,
    control: &Control,
    start: Instant,
    max_duration: Duration,
    stopped_early: &mut bool,
) {
    loop {
        tick.tick().await;
        while tasks.try_join_next().is_some() {}
        if control.is_stopping() {
            *stopped_early = true;
            return;
        }
        let t = start
            .elapsed()
            .saturating_sub(control.paused_for(Instant::now()));
        if tasks.is_empty() || t >= max_duration {
            return;
        }
    }
}

/// One on-sale user: arrives at its moment within the arrival window, then
/// goes on until a final answer (or the run stops).
async fn onsale_user<T: Target>(ctx: Arc<Ctx<T>>, slot: usize, seed: u64, o: Onsale) {
    let mut rng = visit_rng(seed, slot, 0);
    let arrive = o
        .arrive_within
        .mul_f64(rand::RngExt::random::<f64>(&mut rng));
    let end = if ctx.arrive(arrive).await {
        ctx.onsale_visit(slot, &mut rng, o.relooks).await
    } else {
        Ending::Stopped
    };
    let _ = ctx.events.send(Event::Fact(Fact::Ended(end)));
}

/// One slot: visit after visit, until the run stops or the plan retires the slot.
async fn slot_loop<T: Target>(
    ctx: Arc<Ctx<T>>,
    slot: usize,
    seed: u64,
    running: Arc<Vec<AtomicBool>>,
    active: Arc<AtomicUsize>,
) {
    let mut visit = 0u64;
    let mut failures = 0u32;
    while !ctx.control.is_stopping() && slot < active.load(Ordering::Relaxed) {
        let mut rng = visit_rng(seed, slot, visit);
        let end = ctx.visit(slot, &mut rng).await;
        let _ = ctx.events.send(Event::Fact(Fact::Ended(end)));
        if end == Ending::Stopped {
            break;
        }
        visit += 1;
        if matches!(end, Ending::Failed | Ending::SoldOut) {
            // Not at once: a failing target gets fewer requests, not more, and
            // a sold-out sale is not asked again in a tight loop.
            failures += 1;
            ctx.back_off(failures, &mut rng).await;
        } else {
            failures = 0;
        }
    }
    running[slot].store(false, Ordering::Release);
}

/// The on-sale figures of a run.
fn onsale_report(o: &Onsale, d: &Driven, state: Option<&DbState>, spawned: bool) -> OnsaleReport {
    let s = &d.snapshot;
    let ended = |e: Ending| s.endings.get(e.name()).copied().unwrap_or(0);
    let bought = ended(Ending::Paid);
    let (sold, counted_in) = match state {
        Some(db) => (
            db.seats
                .iter()
                .filter(|r| r.sold && d.schedules.contains(&r.schedule))
                .count() as u64,
            "database",
        ),
        None => (s.totals.n_payments, "answers"),
    };
    let expected_sold = s.capacity.min(u64::from(o.users));
    let answered = s.n_answered;
    let requests: u64 = s.ops.iter().map(|f| f.n_total).sum();
    let secs = |d: Duration| (d.as_secs_f64() * 1000.0).round() / 1000.0;
    let first = s
        .elapsed
        .as_secs()
        .saturating_sub(s.recent.len() as u64 - 1);
    OnsaleReport {
        users: o.users,
        capacity: s.capacity,
        expected_sold,
        sold,
        sold_counted_in: counted_in.into(),
        sold_as_expected: sold == expected_sold,
        bought,
        sold_out: ended(Ending::SoldOut),
        unanswered: u64::from(o.users).saturating_sub(answered),
        time_to_sell_out_secs: s.sold_out_after.map(secs),
        all_answered_secs: (answered >= u64::from(o.users))
            .then_some(s.last_answer_after)
            .flatten()
            .map(secs),
        last_answer_secs: s.last_answer_after.map(secs),
        purchase_latency_us: crate::report::latency_report(&s.purchase),
        poll_after_us: crate::report::latency_report(&s.poll_after),
        requests_per_purchase: (bought > 0)
            .then(|| ((requests as f64 / bought as f64) * 10.0).round() / 10.0),
        server_cpu_secs_per_purchase: match (&d.cpu, spawned && bought > 0) {
            (Some(c), true) => Some((c.servers_secs / bought as f64 * 1e5).round() / 1e5),
            _ => None,
        },
        polls_per_second: s
            .recent
            .iter()
            .enumerate()
            .map(|(i, x)| PollSecond {
                second: first + i as u64,
                polls: x.n_polls,
                waiting: x.waiting,
            })
            .collect(),
    }
}

fn finish(
    cfg: &SimConfig,
    target: TargetReport,
    d: Driven,
    state: Option<&DbState>,
    opts: &AuditOptions,
) -> Outcome {
    let spawned = target.spawned;
    let audit = audit::audit(state, &d.record, opts);
    let secs = d.elapsed.as_secs_f64();
    let (operations, holds, payments) =
        crate::report::figures(&d.snapshot, secs, d.snapshot.n_expirations);
    let s = &d.snapshot;
    let b = &cfg.behaviour;
    let report = Report {
        schema: crate::report::SCHEMA,
        seed: cfg.seed,
        target,
        settings: SettingsReport {
            plan: match &cfg.scenario {
                Scenario::Onsale(o) => format!(
                    "on sale: {} users within {}, at most {}",
                    o.users,
                    crate::plan::format_duration(o.arrive_within),
                    crate::plan::format_duration(o.max_duration)
                ),
                Scenario::Browse => cfg.plan.to_string(),
            },
            peak_users: match &cfg.scenario {
                Scenario::Onsale(o) => o.users,
                Scenario::Browse => cfg.plan.peak(),
            },
            plan_secs: match &cfg.scenario {
                Scenario::Onsale(o) => o.max_duration.as_secs_f64(),
                Scenario::Browse => cfg.plan.total().as_secs_f64(),
            },
            hold_ttl_secs: cfg.engine.hold_ttl.as_secs_f64(),
            session_ttl_secs: cfg.engine.session_ttl.as_secs_f64(),
            show_up_grace_secs: cfg.engine.show_up_grace.as_secs_f64(),
            policy: PolicyReport {
                interval_ms: cfg.policy.interval().as_millis() as u64,
                batch: cfg.policy.batch(),
                max_active: cfg.policy.max_active(),
            },
            initial_dates: cfg.initial_dates,
            seats_per_date: cfg.seats_per_date,
            price: cfg.price,
            restock: cfg.restock,
            think_ms: [
                b.think_min.as_millis() as u64,
                b.think_max.as_millis() as u64,
            ],
            poll_every_ms: b.poll_every.as_millis() as u64,
            p_abandon_queue: b.p_abandon_queue,
            p_abandon_hold: b.p_abandon_hold,
            p_cancel: b.p_cancel,
            p_retry_pay: b.p_retry_pay,
            p_probe: b.p_probe,
            seat_skew: b.seat_skew,
        },
        elapsed_secs: (secs * 1000.0).round() / 1000.0,
        users: UsersReport {
            started: s.n_users_started,
            admitted: s.n_users_admitted,
            endings: s
                .endings
                .iter()
                .map(|(k, v)| ((*k).to_owned(), *v))
                .collect(),
            cut_off: d.n_cut_off,
        },
        operations,
        holds,
        payments,
        errors: s.errors.clone(),
        error_samples: s.error_samples.clone(),
        queue: s.queue.map(|q| QueueReport {
            issued: q.issued,
            serving: q.serving,
            waiting: q.waiting,
            active: q.active,
            max_active_sampled: d.record.max_active_sampled.map_or(0, |(a, _)| a),
        }),
        cpu: d.cpu,
        baseline: None,
        server_latency: Vec::new(),
        thresholds: Vec::new(),
        onsale: match &cfg.scenario {
            Scenario::Onsale(o) => Some(onsale_report(o, &d, state, spawned)),
            Scenario::Browse => None,
        },
        audit,
    };
    Outcome {
        report,
        record: d.record,
        snapshot: d.snapshot,
        stopped_early: d.stopped_early,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_described_without_secrets() {
        assert_eq!(
            redact_url("postgres://sim:hunter2@127.0.0.1:5432/sim"),
            "postgres://sim:***@127.0.0.1:5432/sim"
        );
        assert_eq!(
            redact_url("postgres://sim@127.0.0.1/sim"),
            "postgres://sim@127.0.0.1/sim"
        );
        assert_eq!(redact_url("sqlite://a.db"), "sqlite://a.db");
        let spec = TargetSpec::Http {
            bases: vec!["http://127.0.0.1:1".into()],
            admin_key: "the-admin-key".into(),
            admin_url: None,
            database: Some("postgres://u:pw@h/db".into()),
        };
        let d = spec.describe();
        assert!(!d.contains("the-admin-key") && !d.contains("pw@"), "{d}");
        let debug = format!(
            "{spec:?} {:?}",
            TargetSpec::Spawn {
                n: 2,
                database: "postgres://u:pw@h/db".into()
            }
        );
        assert!(
            !debug.contains("the-admin-key") && !debug.contains("pw@"),
            "{debug}"
        );
        assert!(debug.contains("u:***@h/db"), "{debug}");
        assert!(
            d.contains("http://127.0.0.1:1") && d.contains("u:***@h/db"),
            "{d}"
        );
    }
}
