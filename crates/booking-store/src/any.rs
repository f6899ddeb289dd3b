//! [`AnyStore`]: the backend chosen at start-up from the database URL.

use std::time::Duration;

use booking_core::StoreError;
use booking_core::domain::{
    AdmissionPolicy, Concert, ConcertId, Event, EventId, EventType, Hold, IdempotencyKey,
    LedgerEntry, Money, NewConcert, NewSchedule, Payment, QueueCounters, QueueEntry, QueueSeq,
    ReservationId, Schedule, ScheduleId, ScheduleSummary, Seat, Timestamp, UserId,
};
use booking_core::domain::{ClaimedWebhook, NewWebhook, Webhook, WebhookId};
use booking_core::ports::{
    Advance, CancelRepoError, CatalogRepo, ChargeReceipt, ChargeRepoError, ChargeRequest,
    CreateScheduleError, EventRepo, HoldRepo, HoldRepoError, IssueRepoError, IssueRequest, NewHold,
    PayManyRepoError, PayManyRequest, PayRepoError, PayRequest, PaymentRepo, QueueRepo, WalletRepo,
};
use booking_core::ports::{WebhookFailure, WebhookRepo};
use chrono::NaiveDate;

use crate::{OpenError, PgStore, SqliteStore};

/// How to open a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreOptions {
    /// Connections in the pool (PostgreSQL) or in the read pool (SQLite, which
    /// always has one writer connection). Default 16.
    pub max_connections: u32,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            max_connections: 16,
        }
    }
}

/// What [`AnyStore::schema_version`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchemaVersion {
    /// The newest migration applied to the database (0 for none).
    pub applied: i64,
    /// The newest migration this build carries.
    pub latest: i64,
}

/// A store of either backend. Clones share the pools.
#[derive(Debug, Clone)]
pub enum AnyStore {
    /// SQLite: one file, one process (or a few on one machine).
    Sqlite(SqliteStore),
    /// PostgreSQL: any number of server instances.
    Postgres(PgStore),
}

/// Which backend a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// `sqlite://path`, `sqlite:path`.
    Sqlite,
    /// `postgres://...`, `postgresql://...`.
    Postgres,
}

impl Backend {
    /// The backend of a database URL.
    ///
    /// # Errors
    /// [`OpenError::BadUrl`] for any other scheme.
    pub fn of_url(url: &str) -> Result<Backend, OpenError> {
        let lower = url.trim().to_ascii_lowercase();
        if lower.starts_with("sqlite:") {
            Ok(Backend::Sqlite)
        } else if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
            Ok(Backend::Postgres)
        } else {
            Err(OpenError::BadUrl(format!(
                "{url:?}: use sqlite://path/to/file.db or postgres://user@host:port/database"
            )))
        }
    }
}

/// Opens the database at `url` (creating a missing SQLite file), applies the
/// migrations, and returns the store.
///
/// # Errors
/// [`OpenError::BadUrl`] for a URL of neither backend, [`OpenError::Unreachable`],
/// [`OpenError::Migration`].
pub async fn connect(url: &str, options: StoreOptions) -> Result<AnyStore, OpenError> {
    let url = url.trim();
    Ok(match Backend::of_url(url)? {
        Backend::Sqlite => AnyStore::Sqlite(SqliteStore::open(url, options.max_connections).await?),
        Backend::Postgres => AnyStore::Postgres(PgStore::open(url, options.max_connections).await?),
    })
}

/// A store's connection pools, at one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Connections open, in use or idle.
    pub open: u32,
    /// Open connections not in use.
    pub idle: u32,
    /// The most connections the pools may open.
    pub max: u32,
}

impl AnyStore {
    /// Which backend this is.
    pub fn backend(&self) -> Backend {
        match self {
            AnyStore::Sqlite(_) => Backend::Sqlite,
            AnyStore::Postgres(_) => Backend::Postgres,
        }
    }

    /// The connection pools' figures now (the read and write pools summed on SQLite).
    pub fn pool_stats(&self) -> PoolStats {
        fn of<DB: sqlx::Database>(p: &sqlx::Pool<DB>) -> PoolStats {
            PoolStats {
                open: p.size(),
                idle: u32::try_from(p.num_idle()).unwrap_or(u32::MAX),
                max: p.options().get_max_connections(),
            }
        }
        match self {
            AnyStore::Sqlite(s) => {
                let (r, w) = (of(s.read_pool()), of(s.write_pool()));
                PoolStats {
                    open: r.open + w.open,
                    idle: r.idle + w.idle,
                    max: r.max + w.max,
                }
            }
            AnyStore::Postgres(s) => of(s.pool()),
        }
    }

    /// What the group commit of hot writes has done, and how many are under way.
    pub fn group_commit_stats(&self) -> crate::GroupCommitStats {
        match self {
            AnyStore::Sqlite(s) => s.group_commit_stats(),
            AnyStore::Postgres(s) => s.group_commit_stats(),
        }
    }

    /// The most hot writes under way at once (see
    /// [`SqliteStore::set_max_hot_writes`](crate::SqliteStore::set_max_hot_writes)).
    pub fn set_max_hot_writes(&self, n: u64) {
        match self {
            AnyStore::Sqlite(s) => s.set_max_hot_writes(n),
            AnyStore::Postgres(s) => s.set_max_hot_writes(n),
        }
    }

    /// Whether the database answers within `timeout`.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when it does not.
    pub async fn ping(&self, timeout: Duration) -> Result<(), StoreError> {
        let ping = async {
            match self {
                AnyStore::Sqlite(s) => s.ping().await,
                AnyStore::Postgres(s) => s.ping().await,
            }
        };
        tokio::time::timeout(timeout, ping)
            .await
            .map_err(|_| StoreError::Unavailable("the database did not answer in time".into()))?
    }

    /// The schema version: the newest migration applied to this database, and the
    /// newest this build knows (they are equal once [`connect`] has returned).
    ///
    /// # Errors
    /// Only storage failures.
    pub async fn schema_version(&self) -> Result<SchemaVersion, StoreError> {
        const SQL: &str = "SELECT COALESCE(MAX(version), 0) FROM _sqlx_migrations WHERE success";
        let (applied, latest) = match self {
            AnyStore::Sqlite(s) => {
                let applied: i64 = sqlx::query_scalar(SQL)
                    .fetch_one(s.read_pool())
                    .await
                    .map_err(crate::convert::sqlite_err)?;
                (applied, sqlx::migrate!("../../migrations/sqlite"))
            }
            AnyStore::Postgres(s) => {
                let applied: i64 = sqlx::query_scalar(SQL)
                    .fetch_one(s.pool())
                    .await
                    .map_err(crate::convert::pg_err)?;
                (applied, sqlx::migrate!("../../migrations/postgres"))
            }
        };
        let latest = latest
            .migrations
            .iter()
            .map(|m| m.version)
            .max()
            .unwrap_or(0);
        Ok(SchemaVersion { applied, latest })
    }

    /// Closes the pools.
    pub async fn close(&self) {
        match self {
            AnyStore::Sqlite(s) => s.close().await,
            AnyStore::Postgres(s) => s.close().await,
        }
    }
}

/// Forwards port methods to the backend.
macro_rules! forward {
    ($(fn $name:ident(&self $(, $arg:ident: $ty:ty)*) -> $ret:ty;)*) => {
        $(
            async fn $name(&self $(, $arg: $ty)*) -> $ret {
                match self {
                    AnyStore::Sqlite(s) => s.$name($($arg),*).await,
                    AnyStore::Postgres(s) => s.$name($($arg),*).await,
                }
            }
        )*
    };
}

impl CatalogRepo for AnyStore {
    forward! {
        fn create_concert(&self, new: NewConcert) -> Result<Concert, StoreError>;
        fn create_schedule(&self, new: NewSchedule) -> Result<Schedule, CreateScheduleError>;
        fn concerts(&self) -> Result<Vec<Concert>, StoreError>;
        fn concert(&self, id: ConcertId) -> Result<Option<Concert>, StoreError>;
        fn schedule(&self, id: ScheduleId) -> Result<Option<Schedule>, StoreError>;
        fn schedule_on(&self, concert: ConcertId, date: NaiveDate) -> Result<Option<Schedule>, StoreError>;
        fn schedule_summaries(&self, concert: ConcertId, now: Timestamp) -> Result<Vec<ScheduleSummary>, StoreError>;
        fn seats(&self, schedule: ScheduleId, now: Timestamp) -> Result<Vec<Seat>, StoreError>;
    }
}

impl QueueRepo for AnyStore {
    forward! {
        fn issue(&self, req: IssueRequest) -> Result<QueueEntry, IssueRepoError>;
        fn entry(&self, seq: QueueSeq) -> Result<Option<QueueEntry>, StoreError>;
        fn counters(&self) -> Result<QueueCounters, StoreError>;
        fn count_active(&self, now: Timestamp) -> Result<u64, StoreError>;
        fn advance(&self, adv: Advance) -> Result<bool, StoreError>;
        fn show_up(&self, seq: QueueSeq, now: Timestamp, until: Timestamp) -> Result<Option<QueueEntry>, StoreError>;
        fn set_policy(&self, policy: AdmissionPolicy) -> Result<(), StoreError>;
        fn set_paused(&self, paused: bool) -> Result<(), StoreError>;
        fn expire_sessions(&self, now: Timestamp, limit: u32) -> Result<u64, StoreError>;
    }
}

impl HoldRepo for AnyStore {
    forward! {
        fn hold(&self, req: NewHold) -> Result<Hold, HoldRepoError>;
        fn cancel(&self, id: ReservationId, user: UserId, now: Timestamp) -> Result<Hold, CancelRepoError>;
        fn reservation(&self, id: ReservationId) -> Result<Option<Hold>, StoreError>;
        fn reservations_of(&self, user: UserId, limit: u32) -> Result<Vec<Hold>, StoreError>;
        fn live_holds(&self, now: Timestamp, limit: u32) -> Result<Vec<Hold>, StoreError>;
        fn sweep_expired_holds(&self, now: Timestamp, limit: u32) -> Result<u64, StoreError>;
    }
}

impl WalletRepo for AnyStore {
    forward! {
        fn charge(&self, req: ChargeRequest) -> Result<ChargeReceipt, ChargeRepoError>;
        fn balance(&self, user: UserId) -> Result<Money, StoreError>;
        fn ledger(&self, user: UserId, limit: u32) -> Result<Vec<LedgerEntry>, StoreError>;
    }
}

impl EventRepo for AnyStore {
    forward! {
        fn relay_events(&self) -> Result<u64, StoreError>;
        fn events_after(&self, after: EventId, limit: u32, types: &[EventType]) -> Result<Vec<Event>, StoreError>;
        fn last_event_id(&self) -> Result<EventId, StoreError>;
        fn prune_events(&self, older_than: Timestamp, up_to: EventId) -> Result<u64, StoreError>;
    }
}

impl PaymentRepo for AnyStore {
    forward! {
        fn pay(&self, req: PayRequest) -> Result<Payment, PayRepoError>;
        fn pay_many(&self, req: PayManyRequest) -> Result<Payment, PayManyRepoError>;
        fn payment_by_key(&self, user: UserId, key: &IdempotencyKey) -> Result<Option<Payment>, StoreError>;
        fn payments_of(&self, user: UserId, limit: u32) -> Result<Vec<Payment>, StoreError>;
    }
}

impl WebhookRepo for AnyStore {
    forward! {
        fn add_webhook(&self, new: NewWebhook) -> Result<Webhook, StoreError>;
        fn webhooks(&self) -> Result<Vec<Webhook>, StoreError>;
        fn webhook(&self, id: WebhookId) -> Result<Option<Webhook>, StoreError>;
        fn remove_webhook(&self, id: WebhookId) -> Result<bool, StoreError>;
        fn claim_webhook(&self, holder: &str, now: Timestamp, lease_until: Timestamp, below: EventId) -> Result<Option<ClaimedWebhook>, StoreError>;
        fn advance_webhook(&self, id: WebhookId, holder: &str, cursor: EventId, now: Timestamp, lease_until: Timestamp) -> Result<bool, StoreError>;
        fn record_webhook_failure(&self, id: WebhookId, holder: &str, now: Timestamp, failure: WebhookFailure) -> Result<bool, StoreError>;
        fn release_webhook(&self, id: WebhookId, holder: &str, now: Timestamp, next_attempt_at: Timestamp) -> Result<bool, StoreError>;
        fn reset_webhook(&self, id: WebhookId, now: Timestamp) -> Result<Option<Webhook>, StoreError>;
        fn lowest_webhook_cursor(&self) -> Result<Option<EventId>, StoreError>;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_from_url() {
        assert_eq!(Backend::of_url("sqlite://booking.db"), Ok(Backend::Sqlite));
        assert_eq!(Backend::of_url("sqlite:booking.db"), Ok(Backend::Sqlite));
        assert_eq!(Backend::of_url("postgres://u@h/db"), Ok(Backend::Postgres));
        assert_eq!(
            Backend::of_url("PostgreSQL://u@h/db"),
            Ok(Backend::Postgres)
        );
        assert!(matches!(
            Backend::of_url("mysql://h/db"),
            Err(OpenError::BadUrl(_))
        ));
        assert!(matches!(
            Backend::of_url("booking.db"),
            Err(OpenError::BadUrl(_))
        ));
    }
}
