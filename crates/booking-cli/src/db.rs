//! Opening the database and building the engine: the URL, the token secret, the
//! rules.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use booking_core::domain::Timestamp;
use booking_core::{Booking, Clock, Config, SystemClock, TokenSigner};
use booking_store::{AnyStore, Backend, StoreOptions, connect};
use sqlx::sqlite::SqliteConnectOptions;

use crate::cli::Global;
use crate::error::{CliError, CliResult};

/// The engine every command runs.
pub type Engine = Booking<AnyStore, CliClock>;

/// The system clock, moved on by the hidden `--clock-offset` (tests use it to let a
/// hold lapse without waiting in real time).
#[derive(Debug, Clone, Copy, Default)]
pub struct CliClock {
    offset: std::time::Duration,
}

impl Clock for CliClock {
    fn now(&self) -> Timestamp {
        SystemClock.now().plus(self.offset)
    }
}

/// Whether a command may create a missing SQLite file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Create {
    /// `serve`, `migrate`, `seed`: create and migrate a missing file.
    Yes,
    /// Everything else: a missing file is an error (it would be an empty database).
    No,
}

/// Whether a command signs or verifies queue tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tokens {
    /// It does: it needs the shared secret.
    Needed,
    /// It does not: an unused random secret will do.
    Unused,
}

/// Where the token secret came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// `--token-secret` or `BOOKING_TOKEN_SECRET`.
    Given,
    /// The file beside the SQLite database; `true` when this run created it.
    File(PathBuf, bool),
    /// Random for this process: an in-memory database, or a command that
    /// never touches tokens.
    Ephemeral,
}

/// An open database and its engine.
pub struct Db {
    pub engine: Engine,
    pub url: String,
    /// The SQLite file did not exist before this run.
    pub created: bool,
    pub secret: SecretSource,
}

impl Db {
    /// Closes the pools (SQLite checkpoints its WAL).
    pub async fn close(self) {
        self.engine.store().close().await;
    }
}

/// The SQLite database file a URL names; `None` for an in-memory database.
/// `--database-url` as a URL: a bare path (no scheme, such as `booking.db` or
/// `data/b.sqlite`) means an SQLite file.
pub fn database_url(given: &str) -> String {
    let url = given.trim();
    if url.contains("://") || url.starts_with("sqlite:") {
        url.to_owned()
    } else {
        format!("sqlite://{url}")
    }
}

fn sqlite_file(url: &str) -> CliResult<Option<PathBuf>> {
    let lower = url.to_ascii_lowercase();
    if lower.contains(":memory:") || lower.contains("mode=memory") {
        return Ok(None);
    }
    let options = SqliteConnectOptions::from_str(url)
        .map_err(|e| CliError::bad_input(format!("bad database URL {url:?}: {e}")))?;
    Ok(Some(options.get_filename().to_path_buf()))
}

/// The engine's rules from the flags, over the defaults.
pub fn config(global: &Global) -> Config {
    let mut c = Config::default();
    if let Some(d) = global.hold_ttl {
        c.hold_ttl = d;
    }
    if let Some(d) = global.session_ttl {
        c.session_ttl = d;
    }
    if let Some(d) = global.show_up_grace {
        c.show_up_grace = d;
    }
    if let Some(n) = global.max_holds {
        c.max_live_holds = n;
    }
    c
}

/// Opens the database of `--database-url`, applying the migrations.
pub async fn open(
    global: &Global,
    config: Config,
    create: Create,
    tokens: Tokens,
    max_connections: u32,
) -> CliResult<Db> {
    let url = database_url(&global.database_url);
    let backend = Backend::of_url(&url)?;
    let file = match backend {
        Backend::Sqlite => sqlite_file(&url)?,
        Backend::Postgres => None,
    };
    let existed = file.as_deref().is_none_or(Path::exists);
    if !existed && create == Create::No {
        let path = file.as_deref().unwrap_or(Path::new("?"));
        let full = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        return Err(CliError::failure(format!(
            "no database at {}: create it with `booking migrate` (or `booking serve`), \
             or point --database-url at it",
            full.display()
        )));
    }
    // The secret comes first: a refusal must not leave a new database behind.
    let (secret, source) = match (tokens, &global.token_secret) {
        (Tokens::Unused, _) => (random_hex(2), SecretSource::Ephemeral),
        (Tokens::Needed, Some(s)) => (s.clone(), SecretSource::Given),
        (Tokens::Needed, None) => match (backend, &file) {
            (Backend::Postgres, _) => {
                return Err(CliError::bad_input(
                    "a PostgreSQL database needs the token secret: set --token-secret or \
                     BOOKING_TOKEN_SECRET (at least 32 bytes, the same for every instance)",
                ));
            }
            (Backend::Sqlite, None) => (random_hex(2), SecretSource::Ephemeral),
            (Backend::Sqlite, Some(path)) => {
                let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
                if let Some(dir) = parent.filter(|p| !p.is_dir()) {
                    return Err(CliError::failure(format!(
                        "cannot open the database {}: the directory {} does not exist",
                        path.display(),
                        dir.display()
                    )));
                }
                let secret_path = secret_path_of(path);
                let (s, created) = load_or_create_secret(&secret_path)?;
                (s, SecretSource::File(secret_path, created))
            }
        },
    };
    let signer = TokenSigner::new(secret.as_bytes()).map_err(|e| {
        CliError::bad_input(match &source {
            SecretSource::File(p, _) => format!("{}: {e}", p.display()),
            _ => e.to_string(),
        })
    })?;
    config.validate()?;
    let store = connect(&url, StoreOptions { max_connections }).await?;
    let clock = CliClock {
        offset: global.clock_offset.unwrap_or_default(),
    };
    let engine = Booking::new(store, clock, signer, config)?;
    Ok(Db {
        engine,
        url,
        created: !existed,
        secret: source,
    })
}

/// `booking.db` keeps its secret in `booking.db.secret`.
fn secret_path_of(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(".secret");
    PathBuf::from(name)
}

/// `n` times 32 random hexadecimal digits (122 random bits each, from the OS).
pub fn random_hex(n: usize) -> String {
    (0..n)
        .map(|_| uuid::Uuid::new_v4().simple().to_string())
        .collect()
}

/// Reads the secret file, or creates it (mode 0600) with a new random secret.
/// Processes racing to create it agree on one: the new file is written aside and
/// linked into place, which fails if another process linked first.
fn load_or_create_secret(path: &Path) -> CliResult<(String, bool)> {
    let read = |path: &Path| std::fs::read_to_string(path).map(|s| s.trim().to_owned());
    match read(path) {
        Ok(s) => return Ok((s, false)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(CliError::failure(format!(
                "cannot read the token secret {}: {e}",
                path.display()
            )));
        }
    }
    let fail = |e: std::io::Error| {
        CliError::failure(format!(
            "cannot create the token secret {}: {e}",
            path.display()
        ))
    };
    let secret = random_hex(2);
    let mut aside = path.as_os_str().to_owned();
    aside.push(format!(".{}.tmp", random_hex(1)));
    let aside = PathBuf::from(aside);
    write_private(&aside, &secret).map_err(fail)?;
    let linked = std::fs::hard_link(&aside, path);
    let _ = std::fs::remove_file(&aside);
    match linked {
        Ok(()) => Ok((secret, true)),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            Ok((read(path).map_err(fail)?, false))
        }
        Err(e) => Err(fail(e)),
    }
}

/// Writes a new file that only its owner may read.
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut f = options.open(path)?;
    f.write_all(text.as_bytes())?;
    f.write_all(b"\n")?;
    f.sync_all()
}

/// Writes `text` to `path` (replacing it), readable by its owner only.
pub fn save_private(path: &Path, text: &str) -> CliResult<()> {
    let fail =
        |e: std::io::Error| CliError::failure(format!("cannot write {}: {e}", path.display()));
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(fail(e)),
    }
    write_private(path, text).map_err(fail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls_name_their_file() {
        assert_eq!(
            sqlite_file("sqlite://booking.db").unwrap(),
            Some(PathBuf::from("booking.db"))
        );
        assert_eq!(
            sqlite_file("sqlite:data/b.db?mode=rwc").unwrap(),
            Some(PathBuf::from("data/b.db"))
        );
        assert_eq!(sqlite_file("sqlite::memory:").unwrap(), None);
        assert_eq!(database_url(" booking.db "), "sqlite://booking.db");
        assert_eq!(database_url("data/b.sqlite"), "sqlite://data/b.sqlite");
        assert_eq!(database_url("sqlite::memory:"), "sqlite::memory:");
        assert_eq!(
            database_url("postgres://u@h:5432/d"),
            "postgres://u@h:5432/d"
        );
        assert_eq!(
            secret_path_of(Path::new("data/b.db")),
            PathBuf::from("data/b.db.secret")
        );
    }

    #[test]
    fn a_secret_file_is_created_once_private_and_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.db.secret");
        let (first, created) = load_or_create_secret(&path).unwrap();
        assert!(created);
        assert_eq!(first.len(), 64);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let (again, created) = load_or_create_secret(&path).unwrap();
        assert_eq!((again, created), (first, false));
        // Nothing is left aside.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn racing_creators_agree_on_one_secret() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("race.secret");
        let secrets: Vec<String> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| s.spawn(|| load_or_create_secret(&path).unwrap().0))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(secrets.iter().all(|s| s == &secrets[0]), "{secrets:?}");
        assert_eq!(std::fs::read_to_string(&path).unwrap().trim(), secrets[0]);
    }
}
