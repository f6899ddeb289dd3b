//! # booking-sim
//!
//! The load simulator of booking: thousands of virtual users go through the real
//! flow (token, polls until admitted, dates, seat map, a hold on a popular seat,
//! another seat on conflict, charge, pay; or they abandon on the way) against
//! booking-core in process (memory store, SQLite, PostgreSQL) or booking-http
//! instances over HTTP. A terminal dashboard shows the run live; a JSON and
//! Markdown report gives the figures; an auditor checks invariants I1-I6 against the
//! database and against what every user was told.
//!
//! The `booking-sim` binary is a thin command line over [`run::run`]:
//!
//! ```no_run
//! use booking_sim::run::{SimConfig, TargetSpec, Ui, run};
//!
//! # async fn example() -> Result<(), booking_sim::run::SimError> {
//! let cfg = SimConfig::default();
//! let outcome = run(&cfg, &TargetSpec::Memory, Ui::Quiet).await?;
//! assert!(outcome.audit().clean, "seed {}", cfg.seed);
//! println!("{}", outcome.report.to_markdown());
//! # Ok(())
//! # }
//! ```
//!
//! Layout: [`target`] is the flow's operations as a trait, implemented by
//! [`inproc`] and [`http`]; [`user`] is one virtual user; [`events`] what users
//! report; [`stats`] the aggregator; [`record`] what users were told; [`db`] and
//! [`audit`] the auditor; [`report`] the reports; [`tui`] the dashboard; [`svg`] the report's plots; [`thresholds`] `--fail-if`; [`run`]
//! puts them together.

#![warn(missing_docs)]

pub mod audit;
pub mod baseline;
pub mod cpu;
pub mod db;
pub mod events;
pub mod http;
pub mod inproc;
pub mod plan;
pub mod record;
pub mod report;
pub mod run;
pub mod stats;
pub mod svg;
pub mod target;
pub mod thresholds;
pub mod tui;
pub mod user;

/// Milliseconds since the Unix epoch on this machine's clock: the clock the
/// in-process engine and spawned servers read too.
pub fn now_ms() -> i64 {
    use booking_core::Clock;
    booking_core::SystemClock.now().as_millis()
}
