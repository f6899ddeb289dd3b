//! The stored state the auditor reads: every row of the tables of `migrations/`
//! (or of a memory store's snapshot), in one plain shape whatever the backend.
//! SQL backends are read in one read-only transaction, so the rows are consistent
//! with each other even while a run is going on.

use std::str::FromStr;

use booking_core::domain::{EntryState, EventData, HoldState, LedgerKind};
use booking_core::memory::MemorySnapshot;
use booking_store::Backend;
use sqlx::{Connection, Row};
use uuid::Uuid;

/// A `seats` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeatRow {
    /// Schedule.
    pub schedule: i64,
    /// Seat number.
    pub seat: i64,
    /// Sold for good.
    pub sold: bool,
    /// The reservation that claims it, if any.
    pub hold_id: Option<Uuid>,
    /// Until when.
    pub hold_until: Option<i64>,
}

/// A `reservations` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReservationRow {
    /// Id.
    pub id: Uuid,
    /// Holder.
    pub user: Uuid,
    /// Schedule.
    pub schedule: i64,
    /// Seat.
    pub seat: i64,
    /// Price.
    pub price: i64,
    /// Taken at (ms).
    pub created_at: i64,
    /// Lapses at (ms).
    pub expires_at: i64,
    /// `held`, `paid`, `cancelled` or `expired`.
    pub state: String,
}

/// A `queue_entries` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryRow {
    /// Place.
    pub seq: i64,
    /// User.
    pub user: Uuid,
    /// `live`, `done` or `expired`.
    pub state: String,
    /// Admitted at (ms).
    pub admitted_at: Option<i64>,
    /// Lapses at (ms).
    pub expires_at: Option<i64>,
}

/// A `ledger` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerRow {
    /// Id (write order).
    pub id: i64,
    /// User.
    pub user: Uuid,
    /// The payment of a payment row; `None` for a charge.
    pub payment: Option<Uuid>,
    /// Amount (positive).
    pub amount: i64,
    /// Balance right after.
    pub balance_after: i64,
}

/// A `payments` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentRow {
    /// Id.
    pub id: Uuid,
    /// Reservation paid.
    pub reservation: Uuid,
    /// Payer.
    pub user: Uuid,
    /// Schedule.
    pub schedule: i64,
    /// Seat.
    pub seat: i64,
    /// Amount.
    pub amount: i64,
    /// Paid at (ms).
    pub paid_at: i64,
}

/// An event, relayed to the feed or still in the outbox, in one plain shape.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EventRow {
    /// Its feed id; `None` while in the outbox.
    pub id: Option<i64>,
    /// Its type (`token.issued`, ...).
    pub kind: String,
    /// The user, when it names one.
    pub user: Option<Uuid>,
    /// The place (`token.issued`), or the last place admitted (`session.admitted`).
    pub seq: Option<i64>,
    /// The first place admitted (`session.admitted`).
    pub first_seq: Option<i64>,
    /// The reservation (hold events).
    pub reservation: Option<Uuid>,
    /// The amount (charges and payments).
    pub amount: Option<i64>,
    /// The payment (`payment.completed`).
    pub payment: Option<Uuid>,
}

/// Every row the auditor checks.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DbState {
    /// When it was read (ms, this machine's clock).
    pub read_at_ms: i64,
    /// The serving counter.
    pub serving: i64,
    /// The last place issued.
    pub last_seq: i64,
    /// The capacity in force.
    pub max_active: Option<i64>,
    /// Seats.
    pub seats: Vec<SeatRow>,
    /// Reservations.
    pub reservations: Vec<ReservationRow>,
    /// Queue entries, by place.
    pub entries: Vec<EntryRow>,
    /// Wallets: (user, balance).
    pub wallets: Vec<(Uuid, i64)>,
    /// Ledger rows, in write order.
    pub ledger: Vec<LedgerRow>,
    /// Payments.
    pub payments: Vec<PaymentRow>,
    /// Events: the feed's, then the outbox's, each in order.
    pub events: Vec<EventRow>,
}

/// Why the database could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot read the database for the audit: {0}")]
pub struct ReadError(pub String);

fn e(err: impl std::fmt::Display) -> ReadError {
    ReadError(err.to_string())
}

/// The rows of a memory store's snapshot.
pub fn from_memory(s: &MemorySnapshot) -> DbState {
    let hold_state = |h: HoldState| match h {
        HoldState::Held => "held",
        HoldState::Paid => "paid",
        HoldState::Cancelled => "cancelled",
        HoldState::Expired => "expired",
    };
    let entry_state = |s: EntryState| match s {
        EntryState::Live => "live",
        EntryState::Done => "done",
        EntryState::Expired => "expired",
    };
    // As in the databases, a sold seat names its paid reservation (the memory store
    // keeps that in the reservation only).
    let paid: std::collections::HashMap<_, _> = s
        .reservations
        .iter()
        .filter(|h| h.state == HoldState::Paid)
        .map(|h| ((h.schedule, h.seat), (h.id, h.expires_at)))
        .collect();
    DbState {
        read_at_ms: crate::now_ms(),
        serving: s.counters.serving as i64,
        last_seq: s.counters.last_seq as i64,
        max_active: s.counters.policy.max_active().map(i64::from),
        seats: s
            .seats
            .iter()
            .map(|x| {
                let named = if x.sold {
                    paid.get(&(x.schedule, x.no)).copied()
                } else {
                    x.hold
                };
                SeatRow {
                    schedule: x.schedule.get(),
                    seat: i64::from(x.no.get()),
                    sold: x.sold,
                    hold_id: named.map(|(id, _)| id.as_uuid()),
                    hold_until: named.map(|(_, t)| t.as_millis()),
                }
            })
            .collect(),
        reservations: s
            .reservations
            .iter()
            .map(|h| ReservationRow {
                id: h.id.as_uuid(),
                user: h.user.as_uuid(),
                schedule: h.schedule.get(),
                seat: i64::from(h.seat.get()),
                price: h.price.minor_units(),
                created_at: h.created_at.as_millis(),
                expires_at: h.expires_at.as_millis(),
                state: hold_state(h.state).into(),
            })
            .collect(),
        entries: s
            .entries
            .iter()
            .map(|q| EntryRow {
                seq: q.seq.get() as i64,
                user: q.user.as_uuid(),
                state: entry_state(q.state).into(),
                admitted_at: q.admitted_at.map(|t| t.as_millis()),
                expires_at: q.expires_at.map(|t| t.as_millis()),
            })
            .collect(),
        wallets: s
            .balances
            .iter()
            .map(|(u, m)| (u.as_uuid(), m.minor_units()))
            .collect(),
        ledger: s
            .ledger
            .iter()
            .map(|l| LedgerRow {
                id: l.id.get(),
                user: l.user.as_uuid(),
                payment: match l.kind {
                    LedgerKind::Charge => None,
                    LedgerKind::Payment(p) => Some(p.as_uuid()),
                },
                amount: l.amount.minor_units(),
                balance_after: l.balance_after.minor_units(),
            })
            .collect(),
        payments: s
            .payments
            .iter()
            .map(|p| PaymentRow {
                id: p.id.as_uuid(),
                reservation: p.reservation.as_uuid(),
                user: p.user.as_uuid(),
                schedule: p.schedule.get(),
                seat: i64::from(p.seat.get()),
                amount: p.amount.minor_units(),
                paid_at: p.paid_at.as_millis(),
            })
            .collect(),
        events: s.events.iter().map(event_row).collect(),
    }
}

/// A memory store's event in the plain shape the SQL tables give.
fn event_row(ev: &booking_core::domain::Event) -> EventRow {
    let mut r = EventRow {
        id: (ev.id.0 > 0).then_some(ev.id.0 as i64),
        kind: ev.event_type().as_str().to_owned(),
        ..EventRow::default()
    };
    match &ev.data {
        EventData::TokenIssued { user, seq } => {
            r.user = Some(user.as_uuid());
            r.seq = Some(seq.get() as i64);
        }
        EventData::SessionAdmitted { first, last } => {
            r.first_seq = Some(first.get() as i64);
            r.seq = Some(last.get() as i64);
        }
        EventData::HoldCreated {
            reservation, user, ..
        }
        | EventData::HoldCancelled {
            reservation, user, ..
        }
        | EventData::HoldExpired {
            reservation, user, ..
        } => {
            r.user = Some(user.as_uuid());
            r.reservation = Some(reservation.as_uuid());
        }
        EventData::WalletCharged { user, amount, .. } => {
            r.user = Some(user.as_uuid());
            r.amount = Some(amount.minor_units());
        }
        EventData::PaymentCompleted {
            payment,
            user,
            amount,
            ..
        } => {
            r.user = Some(user.as_uuid());
            r.amount = Some(amount.minor_units());
            r.payment = Some(payment.as_uuid());
        }
        EventData::SessionEnded { user, seq, .. } => {
            r.user = Some(user.as_uuid());
            r.seq = Some(seq.get() as i64);
        }
    }
    r
}

const Q_COUNTERS: &str = "SELECT serving, last_seq, max_active FROM queue_counters WHERE id = 1";
const Q_SEATS: &str = "SELECT schedule_id, seat_no, sold, hold_id, hold_until FROM seats";
const Q_RESERVATIONS: &str = "SELECT id, user_id, schedule_id, seat_no, price, created_at, \
     expires_at, state FROM reservations";
const Q_ENTRIES: &str =
    "SELECT seq, user_id, state, admitted_at, expires_at FROM queue_entries ORDER BY seq";
const Q_WALLETS: &str = "SELECT user_id, balance FROM wallets";
const Q_LEDGER: &str =
    "SELECT id, user_id, payment_id, amount, balance_after FROM ledger ORDER BY id";
const Q_EVENTS: &str = "SELECT id, type, user_id, seq, first_seq, reservation_id, amount, \
     payment_id FROM (SELECT 0 AS src, id AS id, id AS ord, type, user_id, seq, first_seq, \
     reservation_id, amount, payment_id FROM events UNION ALL SELECT 1, NULL, pending_id, type, \
     user_id, seq, first_seq, reservation_id, amount, payment_id FROM event_outbox) AS e \
     ORDER BY src, ord";
const Q_PAYMENTS: &str = "SELECT id, reservation_id, user_id, schedule_id, seat_no, amount, \
     paid_at FROM payments";

/// Reads every table through the transaction `$tx`; `$sold` reads a seat row's
/// `sold` column (an integer in SQLite, a boolean in PostgreSQL).
macro_rules! read_tables {
    ($tx:ident, $sold:expr) => {{
        let mut st = DbState {
            read_at_ms: crate::now_ms(),
            ..DbState::default()
        };
        let c = sqlx::query(Q_COUNTERS)
            .fetch_one(&mut *$tx)
            .await
            .map_err(e)?;
        st.serving = c.try_get(0).map_err(e)?;
        st.last_seq = c.try_get(1).map_err(e)?;
        st.max_active = c.try_get(2).map_err(e)?;
        for r in sqlx::query(Q_SEATS).fetch_all(&mut *$tx).await.map_err(e)? {
            st.seats.push(SeatRow {
                schedule: r.try_get(0).map_err(e)?,
                seat: r.try_get(1).map_err(e)?,
                sold: $sold(&r)?,
                hold_id: r.try_get(3).map_err(e)?,
                hold_until: r.try_get(4).map_err(e)?,
            });
        }
        for r in sqlx::query(Q_RESERVATIONS)
            .fetch_all(&mut *$tx)
            .await
            .map_err(e)?
        {
            st.reservations.push(ReservationRow {
                id: r.try_get(0).map_err(e)?,
                user: r.try_get(1).map_err(e)?,
                schedule: r.try_get(2).map_err(e)?,
                seat: r.try_get(3).map_err(e)?,
                price: r.try_get(4).map_err(e)?,
                created_at: r.try_get(5).map_err(e)?,
                expires_at: r.try_get(6).map_err(e)?,
                state: r.try_get(7).map_err(e)?,
            });
        }
        for r in sqlx::query(Q_ENTRIES)
            .fetch_all(&mut *$tx)
            .await
            .map_err(e)?
        {
            st.entries.push(EntryRow {
                seq: r.try_get(0).map_err(e)?,
                user: r.try_get(1).map_err(e)?,
                state: r.try_get(2).map_err(e)?,
                admitted_at: r.try_get(3).map_err(e)?,
                expires_at: r.try_get(4).map_err(e)?,
            });
        }
        for r in sqlx::query(Q_WALLETS)
            .fetch_all(&mut *$tx)
            .await
            .map_err(e)?
        {
            st.wallets
                .push((r.try_get(0).map_err(e)?, r.try_get(1).map_err(e)?));
        }
        for r in sqlx::query(Q_LEDGER)
            .fetch_all(&mut *$tx)
            .await
            .map_err(e)?
        {
            st.ledger.push(LedgerRow {
                id: r.try_get(0).map_err(e)?,
                user: r.try_get(1).map_err(e)?,
                payment: r.try_get(2).map_err(e)?,
                amount: r.try_get(3).map_err(e)?,
                balance_after: r.try_get(4).map_err(e)?,
            });
        }
        for r in sqlx::query(Q_PAYMENTS)
            .fetch_all(&mut *$tx)
            .await
            .map_err(e)?
        {
            st.payments.push(PaymentRow {
                id: r.try_get(0).map_err(e)?,
                reservation: r.try_get(1).map_err(e)?,
                user: r.try_get(2).map_err(e)?,
                schedule: r.try_get(3).map_err(e)?,
                seat: r.try_get(4).map_err(e)?,
                amount: r.try_get(5).map_err(e)?,
                paid_at: r.try_get(6).map_err(e)?,
            });
        }
        for r in sqlx::query(Q_EVENTS)
            .fetch_all(&mut *$tx)
            .await
            .map_err(e)?
        {
            st.events.push(EventRow {
                id: r.try_get(0).map_err(e)?,
                kind: r.try_get(1).map_err(e)?,
                user: r.try_get(2).map_err(e)?,
                seq: r.try_get(3).map_err(e)?,
                first_seq: r.try_get(4).map_err(e)?,
                reservation: r.try_get(5).map_err(e)?,
                amount: r.try_get(6).map_err(e)?,
                payment: r.try_get(7).map_err(e)?,
            });
        }
        st
    }};
}

/// Reads every row of the database at `url` (SQLite or PostgreSQL) in one
/// read-only transaction.
///
/// # Errors
/// [`ReadError`] when the database cannot be opened or read.
pub async fn read(url: &str) -> Result<DbState, ReadError> {
    match Backend::of_url(url).map_err(e)? {
        Backend::Sqlite => read_sqlite(url).await,
        Backend::Postgres => read_postgres(url).await,
    }
}

async fn read_sqlite(url: &str) -> Result<DbState, ReadError> {
    let opts = sqlx::sqlite::SqliteConnectOptions::from_str(url)
        .map_err(e)?
        .read_only(true);
    let mut conn = sqlx::SqliteConnection::connect_with(&opts)
        .await
        .map_err(e)?;
    let mut tx = conn.begin().await.map_err(e)?;
    let st = read_tables!(tx, |r: &sqlx::sqlite::SqliteRow| r
        .try_get::<i64, _>(2)
        .map(|v| v != 0)
        .map_err(e));
    tx.rollback().await.map_err(e)?;
    let _ = conn.close().await;
    Ok(st)
}

async fn read_postgres(url: &str) -> Result<DbState, ReadError> {
    let mut conn = sqlx::PgConnection::connect(url).await.map_err(e)?;
    let mut tx = conn.begin().await.map_err(e)?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await
        .map_err(e)?;
    let st = read_tables!(tx, |r: &sqlx::postgres::PgRow| r
        .try_get::<bool, _>(2)
        .map_err(e));
    tx.rollback().await.map_err(e)?;
    let _ = conn.close().await;
    Ok(st)
}

/// What an earlier run (or any earlier use) left in a database: concerts and
/// queue tokens ever issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Leftovers {
    /// Concerts.
    pub concerts: i64,
    /// Queue tokens issued (rows of the waiting room, whatever their state).
    pub tokens: i64,
    /// Concerts with the name asked about (the name of a run's concert).
    pub same_name: i64,
}

impl Leftovers {
    /// Whether the database holds nothing of an earlier run.
    pub fn is_empty(&self) -> bool {
        self.concerts == 0 && self.tokens == 0
    }
}

/// Counts what earlier runs left in the (migrated) database at `url`, and the
/// concerts named `name`.
///
/// # Errors
/// The database cannot be reached or read.
pub async fn leftovers(url: &str, name: &str) -> Result<Leftovers, ReadError> {
    const Q: &str = "SELECT (SELECT COUNT(*) FROM concerts), (SELECT COUNT(*) FROM queue_entries), \
         (SELECT COUNT(*) FROM concerts WHERE name = $1)";
    const Q_SQLITE: &str = "SELECT (SELECT COUNT(*) FROM concerts), \
         (SELECT COUNT(*) FROM queue_entries), (SELECT COUNT(*) FROM concerts WHERE name = ?)";
    let (concerts, tokens, same_name): (i64, i64, i64) = match Backend::of_url(url).map_err(e)? {
        Backend::Sqlite => {
            let opts = sqlx::sqlite::SqliteConnectOptions::from_str(url)
                .map_err(e)?
                .read_only(true);
            let mut conn = sqlx::SqliteConnection::connect_with(&opts)
                .await
                .map_err(e)?;
            let r = sqlx::query_as(Q_SQLITE)
                .bind(name)
                .fetch_one(&mut conn)
                .await
                .map_err(e)?;
            let _ = conn.close().await;
            r
        }
        Backend::Postgres => {
            let mut conn = sqlx::PgConnection::connect(url).await.map_err(e)?;
            let r = sqlx::query_as(Q)
                .bind(name)
                .fetch_one(&mut conn)
                .await
                .map_err(e)?;
            let _ = conn.close().await;
            r
        }
    };
    Ok(Leftovers {
        concerts,
        tokens,
        same_name,
    })
}
