//! What this machine does with no booking in the way, measured in the same run just
//! before the load (`--baseline`), so that the run's figures can be read against
//! them: an axum "hello world" over HTTP through the same kind of client and
//! connection limit as the virtual users, and raw SQL on the target's database (a
//! three-statement transaction, a payment's bare bones, and a single-row insert,
//! a token issue's), in tables of their own that are dropped afterwards.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use booking_store::Backend;
use booking_testkit::bench::{RawDb, rate};
use serde::Serialize;

/// How long each baseline runs.
pub const SECS: f64 = 2.0;

/// Closed-loop tasks of the raw SQL rates.
pub const SQL_TASKS: usize = 64;

/// The baselines of a run.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BaselineReport {
    /// An axum handler that answers `hello`, over HTTP on 127.0.0.1.
    pub hello_world: HelloReport,
    /// Raw SQL on the target's database, when the run names one.
    pub raw_sql: Option<RawSqlReport>,
}

/// The hello-world server's rate and latency.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct HelloReport {
    /// Connections (and closed-loop tasks), as `--connections`.
    pub connections: usize,
    /// Requests answered per second.
    pub requests_per_sec: f64,
    /// Median latency.
    pub p50_us: u64,
    /// 99th percentile latency.
    pub p99_us: u64,
}

/// Raw SQL rates on the target's database.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RawSqlReport {
    /// `sqlite` or `postgres`.
    pub backend: String,
    /// Closed-loop tasks.
    pub tasks: usize,
    /// Transactions of three statements (conditional debit, row update, insert)
    /// per second.
    pub three_statement_tx_per_sec: f64,
    /// Single-row inserts per second.
    pub insert_per_sec: f64,
}

/// Measures the baselines; raw SQL when `database` names one.
///
/// # Errors
/// When the hello-world server cannot listen or the database cannot be reached.
pub async fn measure(connections: usize, database: Option<&str>) -> Result<BaselineReport, String> {
    let hello_world = hello_world(connections).await?;
    let raw_sql = match database {
        Some(url) => Some(raw_sql(url).await?),
        None => None,
    };
    Ok(BaselineReport {
        hello_world,
        raw_sql,
    })
}

async fn hello_world(connections: usize) -> Result<HelloReport, String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("hello world: cannot listen: {e}"))?;
    let url = format!(
        "http://{}/",
        listener
            .local_addr()
            .map_err(|e| format!("hello world: {e}"))?
    );
    let app = axum::Router::new().route("/", axum::routing::get(|| async { "hello" }));
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(connections + 1)
        .tcp_nodelay(true)
        .build()
        .map_err(|e| format!("hello world: {e}"))?;
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(SECS);
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..connections {
        let (client, url, stop) = (client.clone(), url.clone(), Arc::clone(&stop));
        set.spawn(async move {
            let mut lat = Vec::new();
            while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
                let t0 = Instant::now();
                let ok = match client.get(&url).send().await {
                    Ok(r) => r.bytes().await.is_ok(),
                    Err(_) => false,
                };
                if !ok {
                    stop.store(true, Ordering::Relaxed);
                    return Err(());
                }
                lat.push(t0.elapsed().as_micros() as u64);
            }
            Ok(lat)
        });
    }
    let mut lat = Vec::new();
    let mut failed = false;
    for r in set.join_all().await {
        match r {
            Ok(l) => lat.extend(l),
            Err(()) => failed = true,
        }
    }
    let secs = started.elapsed().as_secs_f64();
    server.abort();
    if failed || lat.is_empty() {
        return Err("hello world: a request to the local server failed".into());
    }
    lat.sort_unstable();
    let at = |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)];
    Ok(HelloReport {
        connections,
        requests_per_sec: (lat.len() as f64 / secs).round(),
        p50_us: at(0.50),
        p99_us: at(0.99),
    })
}

async fn raw_sql(url: &str) -> Result<RawSqlReport, String> {
    let backend = Backend::of_url(url).map_err(|e| e.to_string())?;
    let raw = match backend {
        Backend::Sqlite => {
            let opts = url
                .parse::<sqlx::sqlite::SqliteConnectOptions>()
                .map_err(|e| format!("raw SQL: {e}"))?
                .create_if_missing(true)
                .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
                .synchronous(sqlx::sqlite::SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(30));
            let pool = sqlx::sqlite::SqlitePoolOptions::new()
                .max_connections(1)
                .connect_with(opts)
                .await
                .map_err(|e| format!("raw SQL: cannot open the database: {e}"))?;
            RawDb::Sqlite(pool)
        }
        Backend::Postgres => {
            let pool = sqlx::postgres::PgPoolOptions::new()
                .max_connections(32)
                .connect(url)
                .await
                .map_err(|e| format!("raw SQL: cannot reach the database: {e}"))?;
            RawDb::Postgres(pool)
        }
    };
    raw.setup().await;
    let r = raw.clone();
    let three_statement_tx_per_sec = rate(SQL_TASKS, SECS, move |_, i| {
        let r = r.clone();
        async move {
            r.three((i % 64) as i64, i as i64).await;
            true
        }
    })
    .await;
    let r = raw.clone();
    let insert_per_sec = rate(SQL_TASKS, SECS, move |t, i| {
        let r = r.clone();
        async move {
            r.insert((t as i64) << 32 | i as i64).await;
            true
        }
    })
    .await;
    drop_tables(&raw).await;
    Ok(RawSqlReport {
        backend: match backend {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
        .into(),
        tasks: SQL_TASKS,
        three_statement_tx_per_sec: three_statement_tx_per_sec.round(),
        insert_per_sec: insert_per_sec.round(),
    })
}

/// Drops the raw tables, so the audited database holds only booking's.
async fn drop_tables(raw: &RawDb) {
    const TABLES: [&str; 4] = [
        "DROP TABLE IF EXISTS bench_rows",
        "DROP TABLE IF EXISTS bench_wallets",
        "DROP TABLE IF EXISTS bench_history",
        "DROP TABLE IF EXISTS bench_inserts",
    ];
    match raw {
        RawDb::Sqlite(pool) => {
            for sql in TABLES {
                let _ = sqlx::query(sql).execute(pool).await;
            }
            pool.close().await;
        }
        RawDb::Postgres(pool) => {
            for sql in TABLES {
                let _ = sqlx::query(sql).execute(pool).await;
            }
            pool.close().await;
        }
    }
}
