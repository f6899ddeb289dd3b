//! # booking-core
//!
//! The pure rules of a concert-booking engine with a virtual waiting room: queue
//! tokens admitted in exact arrival order, bookable dates and seat maps, seat holds
//! that lapse on their own, a prepaid wallet, and payment that turns a hold into a
//! sale and ends the token.
//!
//! The crate does no IO. Storage sits behind the traits of [`ports`]; time comes from
//! a [`Clock`]. [`memory::MemoryStore`] implements every port in memory, and the
//! `booking-store` crate implements them on SQLite and PostgreSQL.
//!
//! ```
//! use booking_core::{Booking, Config, ManualClock, MemoryStore, TokenSigner};
//! use booking_core::domain::{Timestamp, UserId};
//!
//! # tokio_test_block_on(async {
//! let clock = ManualClock::new(Timestamp::from_millis(1_767_225_600_000));
//! let signer = TokenSigner::new(b"a secret of at least thirty-two bytes").unwrap();
//! let booking = Booking::new(MemoryStore::new(), clock, signer, Config::default()).unwrap();
//!
//! let issued = booking.issue_token(UserId::random()).await.unwrap();
//! let view = booking.queue_status(&issued.token).await.unwrap();
//! assert_eq!(view.claims.seq.get(), 1);
//! # });
//! # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
//! #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
//! # }
//! ```
//!
//! The invariants every adapter and every service keep (see ARCHITECTURE.md):
//! I1 one seat, one owner; I2 money is conserved; I3 first come, first served;
//! I4 capacity; I5 pay once; I6 token ends at payment.

#![warn(missing_docs)]

pub mod clock;
pub mod domain;
pub mod error;
pub mod memory;
pub mod ports;
mod service;
pub mod token;

pub use clock::{Clock, ManualClock, SystemClock};
pub use domain::{Event, EventData, EventId, EventType, SessionEndReason};
pub use error::{
    CancelError, CatalogError, ChargeError, GateError, HoldError, IssueError, PayError,
    ScheduleError, StatusError,
};
pub use memory::MemoryStore;
pub use ports::{ChargeReceipt, EventRepo, Store, StoreError};
pub use service::{
    Activity, Admitted, Booking, Config, ConfigError, IssuedToken, LineSnapshot,
    MAX_EVENTS_PER_READ, MAX_PAID_AT_ONCE, PaymentReceipt, QueueStats, QueueStatus, QueueView,
    SweepReport, TickOutcome,
};
pub use service::{AddedWebhook, Delivery, NextEvents, WebhookError};
pub use token::{TokenClaims, TokenError, TokenSigner};
