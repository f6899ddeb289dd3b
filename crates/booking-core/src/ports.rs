//! Ports: the storage traits that adapters implement.
//!
//! Every method is shaped so that SQL can implement it with one conditional statement
//! or one short transaction, with any number of server processes sharing the
//! database. No method asks the caller to read, decide and write back: where a
//! decision depends on stored state, the state is part of the write's condition
//! (`WHERE balance >= amount`, `WHERE version = expected`), and the adapter reports
//! which condition failed.
//!
//! Times are always passed in (`now`): adapters never read a clock, so a manual clock
//! drives every backend the same way.
//!
//! The contract of each method is written as MUST rules. One contract suite checks
//! them on every adapter: the in-memory one here and the SQL ones in `booking-store`.

use std::future::Future;

use chrono::NaiveDate;

use crate::domain::{
    AdmissionPolicy, Amount, ClaimedWebhook, Concert, ConcertId, Event, EventId, EventType, Hold,
    HoldState, IdempotencyKey, LedgerEntry, Money, NewConcert, NewSchedule, NewWebhook, Payment,
    PaymentId, QueueCounters, QueueEntry, QueueSeq, ReservationId, Schedule, ScheduleId,
    ScheduleSummary, Seat, SeatNo, Timestamp, TokenId, UserId, Webhook, WebhookId,
};

/// A failure of the storage itself (unreachable, broken), as opposed to a refusal
/// that the contract names. Services pass it on untouched; the HTTP layer answers
/// 503 or 500 and logs it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The storage cannot be reached or is overloaded; retrying later may work.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// Anything else: a bug, corrupt data, a failed migration.
    #[error("storage failure: {0}")]
    Failed(String),
}

// ---------------------------------------------------------------------------------
// Catalog

/// Why a schedule could not be created.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CreateScheduleError {
    /// The concert does not exist.
    #[error("no such concert")]
    UnknownConcert,
    /// The concert already has a schedule on that date.
    #[error("the concert already has a date on {0}")]
    DateTaken(NaiveDate),
    /// Storage failure.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Concerts, schedules and seats.
pub trait CatalogRepo: Send + Sync + 'static {
    /// Creates a concert with a fresh id.
    fn create_concert(
        &self,
        new: NewConcert,
    ) -> impl Future<Output = Result<Concert, StoreError>> + Send;

    /// Creates a schedule and all its seats, free, at their prices, in one
    /// transaction.
    ///
    /// # Errors
    /// MUST return [`CreateScheduleError::UnknownConcert`] when the concert does not
    /// exist and [`CreateScheduleError::DateTaken`] when the concert already has a
    /// schedule on the same date (UTC), creating nothing in either case.
    fn create_schedule(
        &self,
        new: NewSchedule,
    ) -> impl Future<Output = Result<Schedule, CreateScheduleError>> + Send;

    /// Every concert, by id.
    fn concerts(&self) -> impl Future<Output = Result<Vec<Concert>, StoreError>> + Send;

    /// One concert, or `None`.
    fn concert(
        &self,
        id: ConcertId,
    ) -> impl Future<Output = Result<Option<Concert>, StoreError>> + Send;

    /// One schedule, or `None`.
    fn schedule(
        &self,
        id: ScheduleId,
    ) -> impl Future<Output = Result<Option<Schedule>, StoreError>> + Send;

    /// The schedule of `concert` on `date` (UTC), or `None`.
    fn schedule_on(
        &self,
        concert: ConcertId,
        date: NaiveDate,
    ) -> impl Future<Output = Result<Option<Schedule>, StoreError>> + Send;

    /// Every schedule of `concert`, earliest first, with its seat counts at `now`:
    /// a seat whose hold expired at or before `now` counts as free.
    /// An unknown concert has no schedules.
    fn schedule_summaries(
        &self,
        concert: ConcertId,
        now: Timestamp,
    ) -> impl Future<Output = Result<Vec<ScheduleSummary>, StoreError>> + Send;

    /// Every seat of `schedule`, by number, with its state at `now` (lazy expiry: a
    /// hold that expired at or before `now` shows as free). An unknown schedule has
    /// no seats.
    fn seats(
        &self,
        schedule: ScheduleId,
        now: Timestamp,
    ) -> impl Future<Output = Result<Vec<Seat>, StoreError>> + Send;
}

// ---------------------------------------------------------------------------------
// Waiting room

/// A request for a place in the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IssueRequest {
    /// Who asks.
    pub user: UserId,
    /// The token id to use if a new place is made.
    pub token_id: TokenId,
    /// Now.
    pub now: Timestamp,
    /// The longest the waiting line may get.
    pub max_waiting: u64,
}

/// Why a place could not be issued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IssueRepoError {
    /// `max_waiting` users are already waiting.
    #[error("the waiting room is full")]
    QueueFull,
    /// Storage failure.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// An advance of the serving counter, made as a compare-and-set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Advance {
    /// The counters' version the decision was made on.
    pub expected_version: u64,
    /// The new serving counter: at least the old one, at most `last_seq`.
    pub serving: u64,
    /// Now.
    pub now: Timestamp,
    /// The expiry given to every newly admitted entry (now + show-up grace).
    pub admitted_until: Timestamp,
    /// The new observed admission rate (per second, times 1000).
    pub admit_rate_milli: u64,
}

/// The waiting room: entries and the shared counters.
pub trait QueueRepo: Send + Sync + 'static {
    /// Gives `user` a place, or returns the place they already have.
    ///
    /// MUST return the user's entry unchanged when they have one that is live at
    /// `now` ([`QueueEntry::is_live_at`]), even when the same user asks from several
    /// processes at the same instant. Otherwise it MUST first record a lapsed `Live`
    /// entry of the user as `Expired`, then append a new `Live` entry with the next
    /// sequence (`last_seq + 1`: no gap, no repeat) and the given token id.
    ///
    /// # Errors
    /// MUST return [`IssueRepoError::QueueFull`], changing nothing, when a new entry
    /// is needed and `last_seq - serving >= max_waiting`.
    fn issue(
        &self,
        req: IssueRequest,
    ) -> impl Future<Output = Result<QueueEntry, IssueRepoError>> + Send;

    /// The entry with sequence `seq`, or `None`.
    fn entry(
        &self,
        seq: QueueSeq,
    ) -> impl Future<Output = Result<Option<QueueEntry>, StoreError>> + Send;

    /// The shared counters. Before anything was stored they are zero, unpaused,
    /// with the default policy.
    fn counters(&self) -> impl Future<Output = Result<QueueCounters, StoreError>> + Send;

    /// How many entries hold an active session at `now` ([`QueueEntry::is_active_at`]).
    fn count_active(&self, now: Timestamp) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Advances the serving counter, admitting every entry in `(old, new]`.
    ///
    /// MUST apply only when the counters' version still equals
    /// `expected_version`, and then, atomically: set `serving`, bump the version, set
    /// `last_tick_at = now` and the rate, and give every entry with
    /// `old < seq <= new` `admitted_at = now` and `expires_at = admitted_until`.
    /// Returns `false`, changing nothing, when the version moved (another process
    /// ticked first).
    fn advance(&self, adv: Advance) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Records that the admitted user of `seq` showed up: the first use of an
    /// admitted token starts the session.
    ///
    /// MUST apply only to a `Live`, admitted entry with no `seen_at` and
    /// `expires_at > now`, setting `seen_at = now` and `expires_at = until`, and
    /// return the updated entry; otherwise change nothing and return `None`.
    fn show_up(
        &self,
        seq: QueueSeq,
        now: Timestamp,
        until: Timestamp,
    ) -> impl Future<Output = Result<Option<QueueEntry>, StoreError>> + Send;

    /// Replaces the admission policy. MUST bump the counters' version, so that a
    /// tick decided on the old policy cannot apply after this returns.
    fn set_policy(
        &self,
        policy: AdmissionPolicy,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Pauses or resumes admission. MUST bump the counters' version, so that a tick
    /// decided before a pause cannot apply after this returns.
    fn set_paused(&self, paused: bool) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Records up to `limit` `Live` entries whose `expires_at <= now` as `Expired`;
    /// returns how many. Nothing depends on it for correctness: it only records
    /// what has already lapsed.
    fn expire_sessions(
        &self,
        now: Timestamp,
        limit: u32,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;
}

// ---------------------------------------------------------------------------------
// Holds

/// A hold to take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewHold {
    /// The new reservation's id.
    pub id: ReservationId,
    /// Who holds.
    pub user: UserId,
    /// The holder's queue session, which must be active.
    pub session: QueueSeq,
    /// The schedule.
    pub schedule: ScheduleId,
    /// The seat.
    pub seat: SeatNo,
    /// Now.
    pub now: Timestamp,
    /// When the hold lapses.
    pub expires_at: Timestamp,
    /// How many live holds a user may have at once.
    pub max_live_per_user: u32,
}

/// Why a hold was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HoldRepoError {
    /// The seat is sold or under another live hold.
    #[error("the seat is taken")]
    SeatTaken,
    /// The user already has `max_live_per_user` live holds.
    #[error("too many live holds")]
    HoldLimit,
    /// The schedule has no such seat.
    #[error("no such seat")]
    NoSuchSeat,
    /// The holder's session is not active at `now` (paid, expired, unknown).
    #[error("the queue session has ended")]
    SessionEnded,
    /// Storage failure.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why a cancel was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CancelRepoError {
    /// No reservation with that id.
    #[error("no such reservation")]
    NotFound,
    /// The reservation belongs to another user.
    #[error("the reservation belongs to another user")]
    NotYours,
    /// The reservation is no longer held (its effective state is given).
    #[error("the reservation is not held")]
    NotHeld(HoldState),
    /// Storage failure.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Reservations and the seats they claim.
pub trait HoldRepo: Send + Sync + 'static {
    /// Takes a hold on one seat: the one conditional write at the heart of I1.
    ///
    /// MUST claim the seat only if it is not sold and has no hold that is live at
    /// `now` (a hold with `expires_at <= now` counts as gone), only if the user has
    /// fewer than `max_live_per_user` holds live at `now`, and only if the session is
    /// active at `now`; and then, in the same atomic step, record the reservation
    /// (`Held`, price from the seat, readable at once through
    /// [`reservation`](Self::reservation)). A lapsed hold it replaces is then
    /// `Expired`. Any number of concurrent calls for one seat, from any number of
    /// processes, MUST leave exactly one winner.
    ///
    /// # Errors
    /// MUST return, changing nothing: [`HoldRepoError::NoSuchSeat`] when the
    /// schedule has no such seat, [`HoldRepoError::SessionEnded`],
    /// [`HoldRepoError::HoldLimit`], or [`HoldRepoError::SeatTaken`], the first that
    /// applies in this order (so a session that is not active always gets
    /// `SessionEnded`, whatever the seat).
    fn hold(&self, req: NewHold) -> impl Future<Output = Result<Hold, HoldRepoError>> + Send;

    /// Cancels a live hold of `user` and frees its seat.
    ///
    /// # Errors
    /// MUST return, changing nothing: [`CancelRepoError::NotFound`],
    /// [`CancelRepoError::NotYours`], or [`CancelRepoError::NotHeld`] with the
    /// effective state when the hold is paid, cancelled or expired at `now`.
    fn cancel(
        &self,
        id: ReservationId,
        user: UserId,
        now: Timestamp,
    ) -> impl Future<Output = Result<Hold, CancelRepoError>> + Send;

    /// One reservation, or `None`.
    fn reservation(
        &self,
        id: ReservationId,
    ) -> impl Future<Output = Result<Option<Hold>, StoreError>> + Send;

    /// The reservations of `user`, newest first, at most `limit`.
    fn reservations_of(
        &self,
        user: UserId,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<Hold>, StoreError>> + Send;

    /// Holds live at `now`, across all schedules, soonest expiry first, at most `limit`.
    fn live_holds(
        &self,
        now: Timestamp,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<Hold>, StoreError>> + Send;

    /// Records up to `limit` `Held` reservations with `expires_at <= now` as `Expired`
    /// and clears their seats' claims; returns how many. The seats were already free
    /// to everyone (lazy expiry): this only records it.
    fn sweep_expired_holds(
        &self,
        now: Timestamp,
        limit: u32,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;
}

// ---------------------------------------------------------------------------------
// Wallet

/// A charge (top-up) to apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChargeRequest {
    /// Whose balance.
    pub user: UserId,
    /// How much to add.
    pub amount: Amount,
    /// The balance may not go above this.
    pub max_balance: Money,
    /// Makes the charge safe to retry.
    pub key: Option<IdempotencyKey>,
    /// Now.
    pub now: Timestamp,
}

/// The result of a charge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChargeReceipt {
    /// The ledger row of the charge (its `balance_after` is the balance right after).
    pub entry: LedgerEntry,
    /// `true` when this is the first result returned again for a retried key.
    pub replayed: bool,
}

/// Why a charge was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChargeRepoError {
    /// The balance would exceed the maximum.
    #[error("the balance would exceed the maximum")]
    BalanceLimit {
        /// The balance now.
        balance: Money,
    },
    /// The key was used before by this user for a different amount.
    #[error("the idempotency key was used for a different request")]
    KeyReused,
    /// Storage failure.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Balances and their ledger.
pub trait WalletRepo: Send + Sync + 'static {
    /// Adds `amount` to the user's balance (creating the wallet at 0 if needed) and
    /// writes the ledger row, in one transaction, with a conditional update
    /// (`balance + amount <= max_balance`).
    ///
    /// MUST, when `key` was already used by this user for the same amount, change
    /// nothing and return that first charge's receipt with `replayed = true`, even
    /// when both requests race. Concurrent charges MUST all be counted.
    ///
    /// # Errors
    /// MUST return, changing nothing: [`ChargeRepoError::KeyReused`] when the key was
    /// used by this user for another amount, [`ChargeRepoError::BalanceLimit`].
    fn charge(
        &self,
        req: ChargeRequest,
    ) -> impl Future<Output = Result<ChargeReceipt, ChargeRepoError>> + Send;

    /// The user's balance; 0 for a user who never charged.
    fn balance(&self, user: UserId) -> impl Future<Output = Result<Money, StoreError>> + Send;

    /// The user's ledger, newest first, at most `limit` rows.
    fn ledger(
        &self,
        user: UserId,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<LedgerEntry>, StoreError>> + Send;
}

// ---------------------------------------------------------------------------------
// Payment

/// A payment to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayRequest {
    /// The new payment's id.
    pub id: PaymentId,
    /// The reservation to pay.
    pub reservation: ReservationId,
    /// Who pays: must be the holder.
    pub user: UserId,
    /// The payer's queue session: it must be active, and the payment ends it.
    pub session: QueueSeq,
    /// Makes the payment safe to retry.
    pub key: Option<IdempotencyKey>,
    /// Now.
    pub now: Timestamp,
}

/// Why a payment was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayRepoError {
    /// No reservation with that id.
    #[error("no such reservation")]
    NotFound,
    /// The reservation belongs to another user.
    #[error("the reservation belongs to another user")]
    NotYours,
    /// The reservation is not held at `now` (its effective state is given).
    #[error("the reservation is not held")]
    NotHeld(HoldState),
    /// The balance does not cover the price.
    #[error("insufficient balance")]
    InsufficientBalance {
        /// The balance now.
        balance: Money,
        /// The price.
        price: Amount,
    },
    /// The payer's session is not active at `now`.
    #[error("the queue session has ended")]
    SessionEnded,
    /// The key was used before by this user for another reservation.
    #[error("the idempotency key was used for a different request")]
    KeyReused,
    /// Storage failure.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A payment of several reservations at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayManyRequest {
    /// The new payment's id.
    pub id: PaymentId,
    /// The reservations to pay: at least two, no repeats, in the order asked.
    pub reservations: Vec<ReservationId>,
    /// Who pays: must hold every one.
    pub user: UserId,
    /// The payer's queue session: it must be active, and the payment ends it.
    pub session: QueueSeq,
    /// Makes the payment safe to retry.
    pub key: Option<IdempotencyKey>,
    /// Now.
    pub now: Timestamp,
}

/// Why a payment of several reservations was refused: the refusal, and the
/// reservation it is about when it is about one (not found, not yours, not held).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{why}")]
pub struct PayManyRepoError {
    /// The reservation refused, for `NotFound`, `NotYours` and `NotHeld`.
    pub reservation: Option<ReservationId>,
    /// The refusal, as for a single payment (`InsufficientBalance` carries the total).
    pub why: PayRepoError,
}

impl From<PayRepoError> for PayManyRepoError {
    fn from(why: PayRepoError) -> Self {
        PayManyRepoError {
            reservation: None,
            why,
        }
    }
}

impl From<StoreError> for PayManyRepoError {
    fn from(e: StoreError) -> Self {
        PayRepoError::Store(e).into()
    }
}

impl PayManyRepoError {
    /// A refusal about one reservation.
    pub fn about(reservation: ReservationId, why: PayRepoError) -> Self {
        PayManyRepoError {
            reservation: Some(reservation),
            why,
        }
    }
}

/// Payments: the one all-or-nothing transaction that moves seats and money.
///
/// A session ends with its payment, and so do the payer's other holds: every
/// payment MUST, in its transaction, release the payer's holds that are live at
/// `now` and not paid by it, by making them lapse at `now` (their seats are free to
/// everyone at once, lazily, as after an expiry; the sweeper records them as
/// `Expired`).
pub trait PaymentRepo: Send + Sync + 'static {
    /// Pays a held reservation from the holder's balance.
    ///
    /// MUST, in one transaction, all or nothing: check the reservation is `Held`
    /// by `user` and live at `now`; check the session is active at `now`; debit the
    /// price with a conditional update (`balance >= price`); mark the seat sold to
    /// `user`; mark the reservation `Paid`; release the payer's other live holds
    /// (see above); insert the payment (unique per reservation, and per user and
    /// key when a key is given); write the ledger row; record the session `Done`.
    /// A reservation is paid at most once whatever the concurrency.
    ///
    /// # Errors
    /// MUST return, changing nothing: [`PayRepoError::NotFound`],
    /// [`PayRepoError::NotYours`], [`PayRepoError::NotHeld`] (with `Paid` when it
    /// was paid), [`PayRepoError::SessionEnded`],
    /// [`PayRepoError::InsufficientBalance`], or [`PayRepoError::KeyReused`] when
    /// the user already used the key for another payment.
    fn pay(&self, req: PayRequest) -> impl Future<Output = Result<Payment, PayRepoError>> + Send;

    /// Pays several held reservations of one user in one payment: one payment
    /// record with every seat (in the order asked), one debit and one ledger row of
    /// the total.
    ///
    /// MUST, in one transaction, all or nothing, do what [`pay`](Self::pay) does for
    /// each reservation, with the balance checked against the total, and end the
    /// session once. Any number of concurrent payments, from any number of
    /// processes, MUST sell each seat at most once.
    ///
    /// # Errors
    /// MUST return, changing nothing, the first refusal in this order: for each
    /// reservation in the order asked, [`PayRepoError::NotFound`],
    /// [`PayRepoError::NotYours`] or [`PayRepoError::NotHeld`] naming it; then
    /// [`PayRepoError::KeyReused`], [`PayRepoError::SessionEnded`],
    /// [`PayRepoError::InsufficientBalance`] with the total as the price.
    fn pay_many(
        &self,
        req: PayManyRequest,
    ) -> impl Future<Output = Result<Payment, PayManyRepoError>> + Send;

    /// The payment `user` made with `key`, or `None`.
    fn payment_by_key(
        &self,
        user: UserId,
        key: &IdempotencyKey,
    ) -> impl Future<Output = Result<Option<Payment>, StoreError>> + Send;

    /// The payments of `user`, newest first, at most `limit`.
    fn payments_of(
        &self,
        user: UserId,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<Payment>, StoreError>> + Send;
}

// ---------------------------------------------------------------------------------
// Events

/// The events of every change: an outbox written by the changes, and the feed the
/// relay moves them into (decision record 0013).
///
/// Every method of the other ports that changes state MUST write its events into
/// the outbox in the same atomic step as the change (a refused write, or a batch
/// rolled back, writes none):
///
/// - [`QueueRepo::issue`], a new place: `token.issued` (`at` = now); the lapsed
///   entry it records first: `session.ended` (lapsed).
/// - [`QueueRepo::advance`] that moves the counter: one `session.admitted` with the
///   range `old + 1 ..= new` (`at` = now).
/// - [`QueueRepo::expire_sessions`]: one `session.ended` (lapsed) per entry, `at`
///   = the entry's `expires_at`.
/// - [`HoldRepo::hold`]: `hold.created` (`at` = now), and `hold.expired` first for
///   a lapsed hold it replaces (`at` = that hold's end).
/// - [`HoldRepo::cancel`]: `hold.cancelled` (`at` = now).
/// - [`HoldRepo::sweep_expired_holds`]: one `hold.expired` per hold, `at` = its end.
/// - [`WalletRepo::charge`] (not a replay): `wallet.charged` (`at` = now).
/// - [`PaymentRepo::pay`], [`PaymentRepo::pay_many`]: `payment.completed` and
///   `session.ended` (paid), `at` = now.
///
/// Within one change the order of its events is not specified.
pub trait EventRepo: Send + Sync + 'static {
    /// Moves every committed outbox row into the feed, in the order they were
    /// written, with the next ids; returns how many moved. MUST be safe to call
    /// from any number of processes at once: one relay runs at a time (the others
    /// return 0 at once), so ids strictly increase in the order readers see them,
    /// and no event ever appears behind an id a reader has already seen.
    fn relay_events(&self) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Up to `limit` feed events with an id above `after`, in id order, of the
    /// given types (every type when `types` is empty).
    fn events_after(
        &self,
        after: EventId,
        limit: u32,
        types: &[EventType],
    ) -> impl Future<Output = Result<Vec<Event>, StoreError>> + Send;

    /// The highest id ever given to an event (pruned ones included); `EventId(0)`
    /// when there was none. Never the id of an event readers cannot see yet (one
    /// a relay is still committing): every event at or below the answer that is
    /// not pruned is returned by [`EventRepo::events_after`].
    fn last_event_id(&self) -> impl Future<Output = Result<EventId, StoreError>> + Send;

    /// Deletes the feed events with `at < older_than` and `id <= up_to`; returns how
    /// many. Ids are never reused after a prune.
    fn prune_events(
        &self,
        older_than: Timestamp,
        up_to: EventId,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;
}

/// Everything the services need, in one bound: implemented for every type that
/// implements all the ports.
pub trait Store:
    CatalogRepo + QueueRepo + HoldRepo + WalletRepo + PaymentRepo + EventRepo + WebhookRepo
{
}

impl<T> Store for T where
    T: CatalogRepo + QueueRepo + HoldRepo + WalletRepo + PaymentRepo + EventRepo + WebhookRepo
{
}

// ---------------------------------------------------------------------------------
// Webhooks

/// A failed delivery, as [`WebhookRepo::record_webhook_failure`] records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookFailure {
    /// What went wrong (a status code, a timeout), shown to the operator. Never a
    /// secret: the deliverer writes it from the answer, not from the request.
    pub error: String,
    /// When to try again, or `None` to mark the endpoint `failed`.
    pub retry_at: Option<Timestamp>,
}

/// Webhook endpoints and their delivery state: the cursor (the last event id
/// delivered), the failures in a row and the backoff, and a lease that lets one
/// deliverer at a time, among any number of instances, post to an endpoint.
///
/// Every write that a deliverer makes names the lease holder (`holder`) and MUST
/// change nothing unless the endpoint's lease is still that holder's and has not
/// lapsed at `now`: a deliverer that lost its lease (it stalled past the lease, and
/// another claimed the endpoint) can no longer move the cursor.
pub trait WebhookRepo: Send + Sync + 'static {
    /// Stores a new endpoint, `active`, with no failure, due at once, not leased,
    /// and a fresh id (1, 2, ... in the order added; never reused).
    fn add_webhook(
        &self,
        new: NewWebhook,
    ) -> impl Future<Output = Result<Webhook, StoreError>> + Send;

    /// Every endpoint, by id (no secrets).
    fn webhooks(&self) -> impl Future<Output = Result<Vec<Webhook>, StoreError>> + Send;

    /// One endpoint, or `None`.
    fn webhook(
        &self,
        id: WebhookId,
    ) -> impl Future<Output = Result<Option<Webhook>, StoreError>> + Send;

    /// Deletes an endpoint; `false` when there was none. A deliverer holding it
    /// then finds its writes refused.
    fn remove_webhook(
        &self,
        id: WebhookId,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Claims one endpoint for `holder` until `lease_until`, and returns it with its
    /// secret; `None` when none is due.
    ///
    /// MUST pick, in one statement or transaction, an endpoint that is `active`,
    /// due (`next_attempt_at <= now`), whose lease is absent or lapsed
    /// (`leased_until <= now`) and whose cursor is below `below` (the last event id
    /// of the feed: an endpoint with nothing after its cursor is not claimed), the
    /// one with the earliest `next_attempt_at`, then the lowest id; and set its
    /// lease. Any number of concurrent claims, from any number of processes, MUST
    /// each get a different endpoint (or `None`): never two holders at once.
    fn claim_webhook(
        &self,
        holder: &str,
        now: Timestamp,
        lease_until: Timestamp,
        below: EventId,
    ) -> impl Future<Output = Result<Option<ClaimedWebhook>, StoreError>> + Send;

    /// Moves the cursor of an endpoint `holder` holds forward to `cursor` (never
    /// back), clears its failures (`attempts` 0, no last error), and extends the
    /// lease to `lease_until`. `false`, changing nothing, when the lease is not
    /// `holder`'s or has lapsed at `now`, or the endpoint is gone.
    fn advance_webhook(
        &self,
        id: WebhookId,
        holder: &str,
        cursor: EventId,
        now: Timestamp,
        lease_until: Timestamp,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Records a failed delivery of an endpoint `holder` holds: `attempts` + 1, the
    /// error, `next_attempt_at = retry_at` (or the status `failed` when `None`), and
    /// drops the lease. `false`, changing nothing, as for
    /// [`advance_webhook`](Self::advance_webhook).
    fn record_webhook_failure(
        &self,
        id: WebhookId,
        holder: &str,
        now: Timestamp,
        failure: WebhookFailure,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Drops the lease of an endpoint `holder` holds (it is due again at
    /// `next_attempt_at`). `false`, changing nothing, as for
    /// [`advance_webhook`](Self::advance_webhook).
    fn release_webhook(
        &self,
        id: WebhookId,
        holder: &str,
        now: Timestamp,
        next_attempt_at: Timestamp,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Makes an endpoint `active` again with no failures, due at `now`, keeping its
    /// cursor and lease, and returns it; `None` when there is none.
    fn reset_webhook(
        &self,
        id: WebhookId,
        now: Timestamp,
    ) -> impl Future<Output = Result<Option<Webhook>, StoreError>> + Send;

    /// The lowest cursor of the `active` endpoints, or `None` when there are none:
    /// the events above it are still to be delivered, so retention keeps them.
    fn lowest_webhook_cursor(
        &self,
    ) -> impl Future<Output = Result<Option<EventId>, StoreError>> + Send;
}
