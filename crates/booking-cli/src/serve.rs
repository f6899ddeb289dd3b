//! `booking serve`: the REST API, the admission ticker and the sweeper, until
//! Ctrl-C or SIGTERM. At start it raises its soft limit of open files to the hard
//! limit; failed accepts are logged at most once a second, and slow or greedy
//! clients are bounded by `booking_http::ServeOptions` (`booking_http::serve_with`).

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use booking_core::domain::{RetryPolicy, UserId};
use booking_http::deliver::DeliveryStats;
use booking_http::limits::RateLimits;
use booking_http::metrics::{StorageFigures, StorageProbe};
use booking_http::{BackgroundOptions, DeliveryOptions, RouterOptions, ServeOptions, TrustedCas};
use booking_store::AnyStore;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing_subscriber::EnvFilter;

use crate::cli::{Global, ServeArgs};
use crate::db::{self, Create, SecretSource, Tokens};
use crate::error::{CliError, CliResult};
use crate::out;
use crate::seed;

pub async fn run(global: &Global, args: &ServeArgs) -> CliResult<()> {
    let filter = EnvFilter::try_new(&args.log)
        .map_err(|e| CliError::bad_input(format!("--log {:?}: {e}", args.log)))?;
    // A second subscriber (tests running several servers in one process) is not
    // an error worth stopping for.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();

    for (name, v) in [
        ("--rate-limit-ip", args.rate_limit_ip),
        ("--rate-limit-token", args.rate_limit_token),
        ("--rate-limit-burst", args.rate_limit_burst),
    ] {
        if !v.is_finite() || v < 0.0 {
            return Err(CliError::bad_input(format!(
                "{name} must be 0 or more, got {v}"
            )));
        }
    }
    for (name, d) in [
        ("--tick-every", args.tick_every),
        ("--sweep-every", args.sweep_every),
    ] {
        if d.is_zero() {
            return Err(CliError::bad_input(format!("{name} must be more than 0")));
        }
    }

    if !(Duration::from_secs(1)..=Duration::from_secs(60)).contains(&args.webhook_timeout) {
        return Err(CliError::bad_input(format!(
            "--webhook-timeout is 1s to 60s, got {:?}",
            args.webhook_timeout
        )));
    }
    if args.webhook_workers > 64 {
        return Err(CliError::bad_input(format!(
            "--webhook-workers is 0 to 64, got {}",
            args.webhook_workers
        )));
    }
    let delivery = delivery_options(args)?;

    let serve_options = ServeOptions {
        header_read_timeout: args.header_timeout,
        body_timeout: args.body_timeout,
        max_connections: args.max_clients,
        max_connections_per_ip: args.max_clients_per_ip,
        per_ip_exempts_loopback: !args.cap_loopback,
    };
    serve_options.validate().map_err(CliError::bad_input)?;

    let mut config = db::config(global);
    config.counters_cache = args.counters_cache;
    config.gate_cache = args.gate_cache;
    config.seat_map_cache = args.seat_map_cache;
    let db = db::open(
        global,
        config,
        Create::Yes,
        Tokens::Needed,
        args.max_connections.max(1),
    )
    .await?;
    let engine = Arc::new(db.engine);
    let version = engine.store().schema_version().await?;

    if let Some(policy) = args.policy {
        engine.set_policy(policy).await?;
    }
    let mut seeded = None;
    if args.demo && engine.concerts().await?.is_empty() {
        seeded = Some(seed::seed(&engine).await?);
    }

    let listener = TcpListener::bind(args.bind)
        .await
        .map_err(|e| CliError::failure(format!("cannot listen on {}: {e}", args.bind)))?;
    let addr = listener
        .local_addr()
        .map_err(|e| CliError::failure(format!("cannot read the listening address: {e}")))?;
    let (admin_key, key_generated) = match &args.admin_key {
        Some(k) if k.trim().is_empty() => {
            return Err(CliError::bad_input("--admin-key must not be empty"));
        }
        Some(k) => (k.clone(), false),
        None => (db::random_hex(1), true),
    };

    // Every connection is a descriptor: take all the system allows.
    match booking_http::raise_open_files_limit() {
        Ok(Some((soft, hard))) => tracing::info!(soft, hard, "limit of open files"),
        Ok(None) => {}
        Err(e) => tracing::warn!(error = %e, "cannot raise the limit of open files"),
    }

    let base = format!("http://{addr}");
    let mut lines = vec![format!("listening on {base}")];
    lines.push(format!(
        "web page: {base}/ (the waiting room), {base}/admin (the operator's view)"
    ));
    lines.push(format!(
        "database: {} ({}schema version {})",
        db.url,
        if db.created { "created, " } else { "" },
        version.applied
    ));
    if let Some(s) = &seeded {
        lines.push(format!(
            "demo data loaded: {} concerts (`booking concert list`)",
            s.concerts.len()
        ));
    }
    lines.push(match &db.secret {
        SecretSource::Given => "token secret: from --token-secret / BOOKING_TOKEN_SECRET".into(),
        SecretSource::File(p, true) => format!(
            "token secret: generated and kept in {} (mode 0600); every instance and \
             `booking` command on this database uses it",
            p.display()
        ),
        SecretSource::File(p, false) => format!("token secret: from {}", p.display()),
        SecretSource::Ephemeral => "token secret: random for this run (in-memory database)".into(),
    });
    lines.push(if key_generated {
        format!(
            "admin key: {admin_key} (generated for this run; set --admin-key or \
             BOOKING_ADMIN_KEY to choose one)"
        )
    } else {
        "admin key: from --admin-key / BOOKING_ADMIN_KEY".into()
    });
    lines.push("try:".into());
    lines.push(format!(
        "  curl -s -X POST {base}/v1/queue/tokens -H 'content-type: application/json' \
         -d '{{\"user_id\":\"{}\"}}'",
        UserId::random()
    ));
    lines.push("stop with Ctrl-C".into());
    out::print(&lines.join("\n"))?;
    tracing::info!(%addr, database = %db.url, "listening");

    // Shared by the router and the ticker: arrivals wake the ticker, advances
    // the status streams.
    let line = Arc::new(booking_http::events::LineFeed::default());
    // What this instance's deliverer does, for /metrics (none with --webhook-workers 0).
    let deliveries = (args.webhook_workers > 0).then(|| Arc::new(DeliveryStats::default()));
    let options = RouterOptions {
        admin_key: Some(admin_key),
        rate_limits: RateLimits {
            per_ip_per_sec: args.rate_limit_ip,
            per_token_per_sec: args.rate_limit_token,
            burst: args.rate_limit_burst,
        },
        storage: Some(match &deliveries {
            Some(stats) => storage_probe(engine.store().clone()).with_deliveries(Arc::clone(stats)),
            None => storage_probe(engine.store().clone()),
        }),
        line: Some(Arc::clone(&line)),
    };
    let app = booking_http::router(Arc::clone(&engine), options);

    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down: finishing the requests in flight");
        let _ = stop_tx.send(true);
    });
    let background = tokio::spawn(booking_http::run_background_with_line(
        Arc::clone(&engine),
        BackgroundOptions {
            tick_every: args.tick_every,
            sweep_every: args.sweep_every,
            ..BackgroundOptions::default()
        },
        Some(line),
        stopped(stop_rx.clone()),
    ));
    // Every instance delivers webhooks (unless --webhook-workers 0): the leases in
    // the database keep two instances from posting to one endpoint at once.
    let deliverer = deliveries.map(|stats| {
        tokio::spawn(booking_http::deliver::run_deliverer_with(
            Arc::clone(&engine),
            delivery,
            stats,
            stopped(stop_rx.clone()),
        ))
    });
    let served = booking_http::serve_with(listener, app, serve_options, stopped(stop_rx)).await;
    let _ = background.await;
    if let Some(deliverer) = deliverer {
        let _ = deliverer.await;
    }
    engine.store().close().await;
    served.map_err(|e| CliError::failure(format!("the server failed: {e}")))?;
    tracing::info!("stopped");
    Ok(())
}

/// The deliverer's settings from the `--webhook-*` flags, each checked against its
/// bounds (a bad one is bad input, named with its bound), the CA file read.
fn delivery_options(args: &ServeArgs) -> CliResult<DeliveryOptions> {
    let bounded = |name: &str, d: Duration, low: Duration, high: Duration, bounds: &str| {
        if (low..=high).contains(&d) {
            Ok(())
        } else {
            Err(CliError::bad_input(format!(
                "{name} is {bounds}, got {d:?}"
            )))
        }
    };
    let secs = Duration::from_secs;
    bounded(
        "--webhook-lease",
        args.webhook_lease,
        secs(10),
        secs(3600),
        "10s to 1h",
    )?;
    if args.webhook_lease < args.webhook_timeout * 2 {
        return Err(CliError::bad_input(format!(
            "--webhook-lease must be at least twice --webhook-timeout ({:?}), got {:?}",
            args.webhook_timeout * 2,
            args.webhook_lease
        )));
    }
    if !(1..=100).contains(&args.webhook_max_attempts) {
        return Err(CliError::bad_input(format!(
            "--webhook-max-attempts is 1 to 100, got {}",
            args.webhook_max_attempts
        )));
    }
    bounded(
        "--webhook-backoff",
        args.webhook_backoff,
        Duration::from_millis(100),
        secs(3600),
        "100ms to 1h",
    )?;
    bounded(
        "--webhook-backoff-max",
        args.webhook_backoff_max,
        args.webhook_backoff,
        secs(86_400),
        "--webhook-backoff to 24h",
    )?;
    let trusted_cas = match &args.webhook_ca {
        None => TrustedCas::default(),
        Some(path) => {
            let pem = std::fs::read(path).map_err(|e| {
                CliError::bad_input(format!(
                    "--webhook-ca {}: cannot read it: {e}",
                    path.display()
                ))
            })?;
            TrustedCas::from_pem(&pem).map_err(|why| {
                CliError::bad_input(format!("--webhook-ca {}: {why}", path.display()))
            })?
        }
    };
    Ok(DeliveryOptions {
        workers: args.webhook_workers,
        request_timeout: args.webhook_timeout,
        lease: args.webhook_lease,
        retry: RetryPolicy {
            base: args.webhook_backoff,
            cap: args.webhook_backoff_max,
            max_attempts: args.webhook_max_attempts,
        },
        trusted_cas,
        ..DeliveryOptions::default()
    })
}

/// Ctrl-C, or SIGTERM on Unix.
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

/// How `/metrics` reads the database pools' and the group commit's figures.
fn storage_probe(store: AnyStore) -> StorageProbe {
    StorageProbe::new(move || {
        let (pool, hot) = (store.pool_stats(), store.group_commit_stats());
        StorageFigures {
            connections_open: pool.open.into(),
            connections_idle: pool.idle.into(),
            connections_max: pool.max.into(),
            hot_writes_under_way: hot.under_way,
            hot_writes_batched: hot.batched,
            hot_writes_alone: hot.alone(),
            hot_writes_refused: hot.overloaded,
        }
    })
}
