//! # booking
//!
//! The `booking` command: `serve` runs the REST API (booking-http) with the
//! admission ticker and the sweeper; `migrate` and `seed` prepare a database; the
//! admin and user commands work directly against the database through
//! booking-core and booking-store, so they need no running server. `booking
//! --help` lists every command and the exit codes.

/// mimalloc instead of the system allocator: a server answers each request with a
/// few small allocations on many threads, where glibc's malloc spent about a tenth
/// of the server's CPU time in a profiled burst.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod admin;
mod cli;
mod db;
mod error;
mod events;
mod out;
mod seed;
mod serve;
mod user;
mod webhook;

use std::process::ExitCode;

use booking_store::Backend;
use clap::Parser;
use serde::Serialize;

use crate::cli::{Cli, Command};
use crate::db::{Create, Tokens};
use crate::error::{CliError, CliResult};

fn main() -> ExitCode {
    // clap answers --help and --version (exit 0) and usage errors (exit 2) itself.
    let cli = Cli::parse();
    match &cli.command {
        Command::Completions(a) => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            let mut text = Vec::new();
            clap_complete::generate(a.shell, &mut cmd, "booking", &mut text);
            return print_bytes(&text);
        }
        Command::Man => {
            let man = clap_mangen::Man::new(<Cli as clap::CommandFactory>::command());
            let mut text = Vec::new();
            if let Err(e) = man.render(&mut text) {
                out::error(&format!("cannot write the manual page: {e}"));
                return ExitCode::from(error::Exit::Failure as u8);
            }
            return print_bytes(&text);
        }
        _ => {}
    }
    let runtime = match &cli.command {
        Command::Serve(_) => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build(),
        _ => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
    };
    let concert = cli.command.concert();
    let result = match runtime {
        Ok(rt) => rt.block_on(run(cli)),
        Err(e) => Err(CliError::failure(format!("cannot start the runtime: {e}"))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let e = match concert {
                Some(id) => e.naming_concert(id),
                None => e,
            };
            out::error(&e.one_line());
            ExitCode::from(e.exit as u8)
        }
    }
}

/// Writes `bytes` to standard output; a reader that went away (`| head`) is not
/// an error.
fn print_bytes(bytes: &[u8]) -> ExitCode {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            out::error(&format!("cannot write to standard output: {e}"));
            ExitCode::from(error::Exit::Failure as u8)
        }
    }
}

/// What each command needs of the database.
fn needs(command: &Command) -> (Create, Tokens) {
    match command {
        Command::Serve(_) => (Create::Yes, Tokens::Needed),
        Command::Migrate(_) | Command::Seed(_) => (Create::Yes, Tokens::Unused),
        Command::Completions(_) | Command::Man => (Create::No, Tokens::Unused),
        Command::Backup(_)
        | Command::Concert(_)
        | Command::Schedule(_)
        | Command::Queue(_)
        | Command::Holds(_)
        | Command::Sales(_)
        | Command::Wallet(_)
        | Command::Webhook(_)
        | Command::Events(_) => (Create::No, Tokens::Unused),
        Command::Token(_)
        | Command::Status(_)
        | Command::Dates(_)
        | Command::Seats(_)
        | Command::Hold(_)
        | Command::Cancel(_)
        | Command::Reservations(_)
        | Command::Charge(_)
        | Command::Balance(_)
        | Command::Pay(_)
        | Command::Payments(_) => (Create::No, Tokens::Needed),
    }
}

/// `booking backup FILE`: a consistent online copy of an SQLite database.
async fn backup(engine: &db::Engine, file: &std::path::Path) -> CliResult<()> {
    match engine.store() {
        booking_store::AnyStore::Sqlite(s) => {
            if file.exists() {
                return Err(CliError::bad_input(format!(
                    "{} exists already; give a new file",
                    file.display()
                )));
            }
            s.backup_to(file)
                .await
                .map_err(|e| CliError::failure(e.to_string()))?;
            out::note(&format!("backup written to {}", file.display()));
            Ok(())
        }
        booking_store::AnyStore::Postgres(_) => Err(CliError::bad_input(
            "backup copies SQLite databases; for PostgreSQL use pg_dump (e.g. pg_dump -Fc DATABASE > FILE)",
        )),
    }
}

/// What `booking migrate` reports.
#[derive(Debug, Serialize)]
struct Migrated {
    database: String,
    backend: &'static str,
    created: bool,
    schema_version: i64,
}

async fn run(cli: Cli) -> CliResult<()> {
    if let Command::Serve(args) = &cli.command {
        return serve::run(&cli.global, args).await;
    }
    let (create, tokens) = needs(&cli.command);
    let db = db::open(&cli.global, db::config(&cli.global), create, tokens, 2).await?;
    let result = dispatch(&db, &cli.command).await;
    db.close().await;
    result
}

async fn dispatch(db: &db::Db, command: &Command) -> CliResult<()> {
    let engine = &db.engine;
    match command {
        Command::Serve(_) | Command::Completions(_) | Command::Man => Ok(()),
        Command::Backup(a) => backup(engine, &a.file).await,
        Command::Migrate(f) => {
            let v = engine.store().schema_version().await?;
            let report = Migrated {
                database: db.url.clone(),
                backend: match engine.store().backend() {
                    Backend::Sqlite => "sqlite",
                    Backend::Postgres => "postgres",
                },
                created: db.created,
                schema_version: v.applied,
            };
            if f.json {
                return out::json(&report);
            }
            out::print(&format!(
                "{}{}: schema version {} (up to date)",
                if db.created { "created " } else { "" },
                report.database,
                report.schema_version
            ))
        }
        Command::Seed(f) => {
            let n = engine.concerts().await?.len();
            if n > 0 {
                return Err(CliError::conflict(format!(
                    "the database already has {n} concert(s): seed loads the demo concerts \
                     into an empty database only, so that running it twice adds nothing"
                )));
            }
            let seeded = seed::seed(engine).await?;
            if f.json {
                return out::json(&seeded);
            }
            out::print(&seed::describe(&seeded))
        }
        Command::Concert(c) => admin::concert(engine, c).await,
        Command::Schedule(c) => admin::schedule(engine, c).await,
        Command::Queue(c) => admin::queue(engine, c).await,
        Command::Holds(c) => admin::holds(engine, c).await,
        Command::Sales(a) => admin::sales(engine, a).await,
        Command::Wallet(a) => admin::wallet(engine, a).await,
        Command::Webhook(c) => webhook::webhook(engine, c).await,
        Command::Events(c) => events::events(engine, c).await,
        Command::Token(c) => user::token(engine, c).await,
        Command::Status(a) => user::status(engine, a).await,
        Command::Dates(a) => user::dates(engine, a).await,
        Command::Seats(a) => user::seats(engine, a).await,
        Command::Hold(a) => user::hold(engine, a).await,
        Command::Cancel(a) => user::cancel(engine, a).await,
        Command::Reservations(a) => user::reservations(engine, a).await,
        Command::Charge(a) => user::charge(engine, a).await,
        Command::Balance(a) => user::balance(engine, a).await,
        Command::Pay(a) => user::pay(engine, a).await,
        Command::Payments(a) => user::payments(engine, a).await,
    }
}
