//! A PostgreSQL server for tests.
//!
//! With `BOOKING_TEST_POSTGRES_URL` set (any role that may create databases), tests use
//! that server. Otherwise the first test of a process starts a throwaway server from the
//! local PostgreSQL binaries (`pg_config --bindir`, then `PATH`, then
//! `/usr/lib/postgresql/*/bin`), as the `postgres` user when running as root, on a free
//! loopback port, with its data in a temporary directory. The server stops and its
//! directory is removed when the test process ends. Each test gets a fresh database,
//! dropped when its guard is.
//!
//! When neither is possible, the test fails with a message that says how to get one:
//! a PostgreSQL test never passes silently.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use sqlx::{Connection, PgConnection};

/// The variable that points the tests at an existing server.
pub const URL_VAR: &str = "BOOKING_TEST_POSTGRES_URL";

const HOW_TO: &str = "PostgreSQL tests need a server. Either set BOOKING_TEST_POSTGRES_URL to \
a URL of a role that may create databases (e.g. postgres://postgres@127.0.0.1:5432/postgres), \
or install the PostgreSQL server binaries so that `pg_config --bindir` finds `initdb` \
(Debian/Ubuntu: apt-get install postgresql; Fedora: dnf install postgresql-server; \
macOS: brew install postgresql@15).";

/// A fresh database; dropped (with its connections) when this guard is.
#[derive(Debug)]
pub struct TestDatabase {
    /// Its URL.
    pub url: String,
    name: String,
    admin_url: String,
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let admin = self.admin_url.clone();
        let sql = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name);
        // Drop runs inside the test's runtime, which must not block: use a thread
        // with a runtime of its own. A failure only leaves a database behind.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            if let Ok(rt) = rt {
                rt.block_on(async {
                    if let Ok(mut c) = PgConnection::connect(&admin).await {
                        let _ = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut c).await;
                    }
                });
            }
        })
        .join();
    }
}

/// A new, empty database on the test server.
///
/// # Panics
/// When no server can be had, with a message saying how to get one.
pub async fn fresh_database() -> TestDatabase {
    database_on(server_url()).await
}

/// A new, empty database on the server of `admin_url` (from [`server_url`] or
/// [`durable_server_url`]).
///
/// # Panics
/// When the server refuses, with a message saying how to get one.
pub async fn database_on(admin_url: String) -> TestDatabase {
    let name = format!("booking_test_{}", uuid::Uuid::new_v4().simple());
    let mut admin = PgConnection::connect(&admin_url)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to the test server {admin_url}: {e}\n{HOW_TO}"));
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
        .execute(&mut admin)
        .await
        .unwrap_or_else(|e| panic!("cannot create a test database: {e}\n{HOW_TO}"));
    let _ = admin.close().await;
    TestDatabase {
        url: with_database(&admin_url, &name),
        name,
        admin_url,
    }
}

/// The URL of a database (`postgres`) on the test server, starting the server on
/// first use.
///
/// # Panics
/// When no server can be had, with a message saying how to get one.
pub fn server_url() -> String {
    static SERVER: OnceLock<Result<String, String>> = OnceLock::new();
    match SERVER.get_or_init(|| start_or_find(false)) {
        Ok(url) => url.clone(),
        Err(e) => panic!("{e}\n{HOW_TO}"),
    }
}

/// Like [`server_url`], but a throwaway server started with `fsync` on, as in
/// production: what benchmarks measure. `BOOKING_TEST_POSTGRES_URL` still wins.
///
/// # Panics
/// When no server can be had, with a message saying how to get one.
pub fn durable_server_url() -> String {
    static SERVER: OnceLock<Result<String, String>> = OnceLock::new();
    match SERVER.get_or_init(|| start_or_find(true)) {
        Ok(url) => url.clone(),
        Err(e) => panic!("{e}\n{HOW_TO}"),
    }
}

fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let authority_end = base
        .find("://")
        .map(|i| i + 3)
        .and_then(|start| base[start..].find('/').map(|j| start + j))
        .unwrap_or(base.len());
    let mut out = format!("{}/{}", &base[..authority_end], name);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

fn start_or_find(durable: bool) -> Result<String, String> {
    if let Ok(url) = std::env::var(URL_VAR)
        && !url.trim().is_empty()
    {
        return Ok(url);
    }
    let bindir =
        find_bindir().ok_or("no PostgreSQL server binaries (initdb, postgres) were found")?;
    start_server(&bindir, durable)
}

fn find_bindir() -> Option<PathBuf> {
    let has_server = |d: &Path| d.join("initdb").is_file() && d.join("postgres").is_file();
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
        && out.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if has_server(&dir) {
            return Some(dir);
        }
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if has_server(&dir) {
                return Some(dir);
            }
        }
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|d| has_server(d))
        .collect();
    versions.sort();
    versions.pop()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Runs `program args` as the `postgres` user when we are root (PostgreSQL refuses
/// to run as root), else as ourselves.
fn command_as_server_user(program: &Path, root: bool) -> Command {
    if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn free_port() -> Result<u16, String> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("no free port: {e}"))?;
    l.local_addr().map(|a| a.port()).map_err(|e| e.to_string())
}

fn start_server(bindir: &Path, durable: bool) -> Result<String, String> {
    let root = is_root();
    let dir = tempfile::Builder::new()
        .prefix("booking-pg-")
        .tempdir()
        .map_err(|e| format!("cannot make a temporary directory: {e}"))?
        .keep();
    if root {
        let status = Command::new("chown")
            .args(["-R", "postgres:"])
            .arg(&dir)
            .status()
            .map_err(|e| format!("chown: {e}"))?;
        if !status.success() {
            return Err("cannot give the temporary directory to the postgres user \
                        (is there a `postgres` user?)"
                .into());
        }
    }
    let data = dir.join("data");
    let out = command_as_server_user(&bindir.join("initdb"), root)
        .arg("-D")
        .arg(&data)
        .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run initdb: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let port = free_port()?;
    // A watchdog shell owns the server: when this test process is gone, it stops the
    // server and removes the directory, so nothing outlives the tests.
    let script = r#"
        "$1" -D "$2" -p "$3" -k "$4" -c listen_addresses=127.0.0.1 -c fsync="$6" \
             -c max_connections=400 -c shared_buffers=128MB >"$4/server.log" 2>&1 &
        pg=$!
        while [ -d "/proc/$5" ] && kill -0 "$pg" 2>/dev/null; do sleep 1; done
        kill -INT "$pg" 2>/dev/null
        wait "$pg" 2>/dev/null
        rm -rf "$4"
    "#;
    let sh = PathBuf::from("/bin/sh");
    command_as_server_user(&sh, root)
        .args(["-c", script, "sh"])
        .arg(bindir.join("postgres"))
        .arg(&data)
        .arg(port.to_string())
        .arg(&dir)
        .arg(std::process::id().to_string())
        .arg(if durable { "on" } else { "off" })
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start postgres: {e}"))?;
    let url = format!("postgres://postgres@127.0.0.1:{port}/postgres");
    wait_ready(&url, &dir)?;
    Ok(url)
}

fn wait_ready(url: &str, dir: &Path) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let url = url.to_owned();
    // Runs on its own thread: we may be inside a test's runtime.
    let dir = dir.to_owned();
    std::thread::spawn(move || {
        rt.block_on(async {
            loop {
                match PgConnection::connect(&url).await {
                    Ok(c) => {
                        let _ = c.close().await;
                        return Ok(());
                    }
                    Err(e) if Instant::now() > deadline => {
                        let log =
                            std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
                        return Err(format!("the test server did not start: {e}\n{log}"));
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        })
    })
    .join()
    .map_err(|_| "the readiness check panicked".to_string())?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_name_replaces_the_path() {
        assert_eq!(
            with_database("postgres://u:p@h:5/postgres", "x"),
            "postgres://u:p@h:5/x"
        );
        assert_eq!(with_database("postgres://h:5", "x"), "postgres://h:5/x");
        assert_eq!(
            with_database("postgres://h/db?sslmode=disable", "x"),
            "postgres://h/x?sslmode=disable"
        );
    }
}
