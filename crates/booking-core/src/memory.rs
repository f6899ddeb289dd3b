//! The in-memory adapter of every port: thread-safe, correct under real
//! concurrency, gone when the process ends.
//!
//! One mutex guards the whole state, and every method runs under it from its checks
//! to its last write: each call is atomic, exactly as one SQL transaction is. Each
//! method checks everything before it changes anything, so a refusal changes nothing.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::NaiveDate;

use crate::domain::Amount;
use crate::domain::{
    AdmissionPolicy, Concert, ConcertId, EntryState, Event, EventData, EventId, EventType, Hold,
    HoldState, IdempotencyKey, LedgerEntry, LedgerEntryId, LedgerKind, Money, NewConcert,
    NewSchedule, PaidSeat, Payment, QueueCounters, QueueEntry, QueueSeq, ReservationId, Schedule,
    ScheduleId, ScheduleSummary, Seat, SeatNo, SeatState, SessionEndReason, Timestamp, UserId,
};
use crate::domain::{ClaimedWebhook, NewWebhook, Webhook, WebhookId, WebhookSecret, WebhookStatus};
use crate::ports::{
    Advance, CancelRepoError, CatalogRepo, ChargeReceipt, ChargeRepoError, ChargeRequest,
    CreateScheduleError, EventRepo, HoldRepo, HoldRepoError, IssueRepoError, IssueRequest, NewHold,
    PayManyRepoError, PayManyRequest, PayRepoError, PayRequest, PaymentRepo, QueueRepo, StoreError,
    WalletRepo, WebhookFailure, WebhookRepo,
};

/// The in-memory store. Clones share the same data.
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    inner: Arc<Mutex<State>>,
    /// The webhook endpoints: no write of the other ports touches them, so they
    /// have their own lock (see the section "Webhooks" below).
    hooks: Arc<Mutex<Hooks>>,
}

#[derive(Debug)]
struct SeatRow {
    price: Amount,
    sold: bool,
    /// The reservation claiming the seat, and until when.
    hold: Option<(ReservationId, Timestamp)>,
}

/// Every row of a [`MemoryStore`] at one instant: see [`MemoryStore::snapshot`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemorySnapshot {
    /// Every schedule, by id.
    pub schedules: Vec<Schedule>,
    /// Every seat's current claim, by schedule and number.
    pub seats: Vec<SeatSnapshot>,
    /// Every reservation with its stored state, oldest first.
    pub reservations: Vec<Hold>,
    /// Every queue entry, by sequence.
    pub entries: Vec<QueueEntry>,
    /// The queue counters.
    pub counters: QueueCounters,
    /// Every wallet's balance, by user.
    pub balances: Vec<(UserId, Money)>,
    /// Every ledger row, in write order.
    pub ledger: Vec<LedgerEntry>,
    /// Every payment, in write order.
    pub payments: Vec<Payment>,
    /// Every event: the feed's, then the outbox's not yet relayed (id 0), in order.
    pub events: Vec<Event>,
}

/// The stored claim on one seat, as a SQL backend's `seats` row holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeatSnapshot {
    /// The schedule.
    pub schedule: ScheduleId,
    /// The seat number.
    pub no: SeatNo,
    /// Its price.
    pub price: Amount,
    /// Whether it is sold.
    pub sold: bool,
    /// The reservation that claims it and until when (possibly lapsed: expiry is
    /// lazy).
    pub hold: Option<(ReservationId, Timestamp)>,
}

#[derive(Debug, Default)]
struct State {
    concerts: BTreeMap<ConcertId, Concert>,
    schedules: BTreeMap<ScheduleId, Schedule>,
    schedule_by_date: HashMap<(ConcertId, NaiveDate), ScheduleId>,
    seats: HashMap<(ScheduleId, SeatNo), SeatRow>,
    reservations: HashMap<ReservationId, Hold>,
    reservations_by_user: HashMap<UserId, Vec<ReservationId>>,
    /// Index `seq - 1`.
    entries: Vec<QueueEntry>,
    live_entry_of: HashMap<UserId, QueueSeq>,
    /// Admitted entries still `Live` (active or lapsed but not yet recorded).
    admitted_live: BTreeSet<QueueSeq>,
    counters: Option<QueueCounters>,
    balances: HashMap<UserId, Money>,
    ledger: Vec<LedgerEntry>,
    ledger_by_user: HashMap<UserId, Vec<usize>>,
    charge_keys: HashMap<(UserId, IdempotencyKey), usize>,
    payments: Vec<Payment>,
    payment_of_reservation: HashMap<ReservationId, usize>,
    payment_keys: HashMap<(UserId, IdempotencyKey), usize>,
    payments_by_user: HashMap<UserId, Vec<usize>>,
    /// Events written by the changes, not yet relayed: (time, payload).
    outbox: Vec<(Timestamp, EventData)>,
    /// The feed, by id.
    events: Vec<Event>,
    /// The highest event id ever given.
    last_event_id: u64,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// A copy of every stored row, taken atomically (under the one lock), for
    /// auditors and tests that check invariants against the stored state, as they
    /// would read the tables of a SQL backend. Read-only: nothing in the snapshot
    /// writes back. It copies the whole state, so it is meant for the end of a run,
    /// not for a hot path.
    pub fn snapshot(&self) -> MemorySnapshot {
        let st = self.lock();
        let mut seats: Vec<SeatSnapshot> = st
            .seats
            .iter()
            .map(|((schedule, no), row)| SeatSnapshot {
                schedule: *schedule,
                no: *no,
                price: row.price,
                sold: row.sold,
                hold: row.hold,
            })
            .collect();
        seats.sort_by_key(|s| (s.schedule, s.no));
        let mut reservations: Vec<Hold> = st.reservations.values().copied().collect();
        reservations.sort_by_key(|h| (h.created_at, h.id));
        let mut balances: Vec<(UserId, Money)> =
            st.balances.iter().map(|(u, m)| (*u, *m)).collect();
        balances.sort_by_key(|(u, _)| *u);
        MemorySnapshot {
            schedules: st.schedules.values().copied().collect(),
            seats,
            reservations,
            entries: st.entries.clone(),
            counters: st.counters.unwrap_or_else(fresh_counters),
            balances,
            ledger: st.ledger.clone(),
            payments: st.payments.clone(),
            events: st
                .events
                .iter()
                .cloned()
                .chain(st.outbox.iter().map(|(at, data)| Event {
                    id: EventId(0),
                    at: *at,
                    data: data.clone(),
                }))
                .collect(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every method checks before it writes and nothing in it panics, so a
        // poisoned lock still guards consistent data.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The counters of a waiting room nobody has used yet: the default policy.
fn fresh_counters() -> QueueCounters {
    QueueCounters {
        last_seq: 0,
        serving: 0,
        version: 0,
        last_tick_at: None,
        paused: false,
        policy: AdmissionPolicy::default(),
        admit_rate_milli: 0,
    }
}

impl State {
    /// Writes an event into the outbox, in the critical section of its change.
    fn emit(&mut self, at: Timestamp, data: EventData) {
        self.outbox.push((at, data));
    }

    fn counters(&mut self) -> &mut QueueCounters {
        self.counters.get_or_insert_with(fresh_counters)
    }

    fn entry_mut(&mut self, seq: QueueSeq) -> Option<&mut QueueEntry> {
        self.entries.get_mut((seq.get() - 1) as usize)
    }

    fn session_active(&self, seq: QueueSeq, user: UserId, now: Timestamp) -> bool {
        self.entries
            .get((seq.get() - 1) as usize)
            .is_some_and(|e| e.user == user && e.is_active_at(now))
    }

    fn seat_state(&self, row: &SeatRow, now: Timestamp) -> SeatState {
        SeatState::at(row.sold, row.hold.map(|(_, until)| until), now)
    }

    fn summary(&self, schedule: &Schedule, now: Timestamp) -> ScheduleSummary {
        let mut s = ScheduleSummary {
            schedule: *schedule,
            n_free: 0,
            n_held: 0,
            n_sold: 0,
            revenue: Money::ZERO,
        };
        for no in schedule.seat_count.seats() {
            let Some(row) = self.seats.get(&(schedule.id, no)) else {
                continue;
            };
            match self.seat_state(row, now) {
                SeatState::Free => s.n_free += 1,
                SeatState::Held { .. } => s.n_held += 1,
                SeatState::Sold => {
                    s.n_sold += 1;
                    s.revenue = s.revenue.checked_add(row.price).unwrap_or(s.revenue);
                }
            }
        }
        s
    }

    fn live_holds_of(&self, user: UserId, now: Timestamp) -> usize {
        self.reservations_by_user.get(&user).map_or(0, |ids| {
            ids.iter()
                .filter(|id| self.reservations[*id].is_live_at(now))
                .count()
        })
    }

    /// Ends a live entry: `Done` by a payment at `now`, or `Expired` (lapsed at its
    /// `expires_at`); emits `session.ended`.
    fn end_entry(&mut self, seq: QueueSeq, state: EntryState, now: Timestamp) {
        if let Some(e) = self.entry_mut(seq) {
            e.state = state;
            let user = e.user;
            let (at, reason) = match state {
                EntryState::Done => (now, SessionEndReason::Paid),
                _ => (
                    e.expires_at.unwrap_or(e.issued_at),
                    SessionEndReason::Lapsed,
                ),
            };
            if self.live_entry_of.get(&user) == Some(&seq) {
                self.live_entry_of.remove(&user);
            }
            self.admitted_live.remove(&seq);
            self.emit(at, EventData::SessionEnded { user, seq, reason });
        }
    }

    /// Makes the user's holds live at `now` lapse at `now`: their session ended.
    fn release_holds_of(&mut self, user: UserId, now: Timestamp) {
        let ids = self
            .reservations_by_user
            .get(&user)
            .cloned()
            .unwrap_or_default();
        for id in ids {
            let Some(h) = self.reservations.get_mut(&id) else {
                continue;
            };
            if !h.is_live_at(now) {
                continue;
            }
            h.expires_at = now;
            let (schedule, seat) = (h.schedule, h.seat);
            if let Some(row) = self.seats.get_mut(&(schedule, seat))
                && let Some((r, until)) = row.hold.as_mut()
                && *r == id
            {
                *until = now;
            }
        }
    }

    /// Records a payment of `seats` (checked by the caller): debit, seats sold,
    /// reservations paid, other holds released, payment and ledger rows, session
    /// ended.
    fn settle(
        &mut self,
        req: PayManyRequest,
        seats: Vec<PaidSeat>,
        total: Amount,
        after: Money,
    ) -> Payment {
        let PayManyRequest {
            id,
            user,
            session,
            key,
            now,
            ..
        } = req;
        self.balances.insert(user, after);
        for s in &seats {
            if let Some(row) = self.seats.get_mut(&(s.schedule, s.seat)) {
                row.sold = true;
                row.hold = None;
            }
            if let Some(h) = self.reservations.get_mut(&s.reservation) {
                h.state = HoldState::Paid;
            }
        }
        self.release_holds_of(user, now);
        let first = seats[0];
        let payment = Payment {
            id,
            reservation: first.reservation,
            user,
            schedule: first.schedule,
            seat: first.seat,
            amount: total,
            paid_at: now,
            key: key.clone(),
            seats,
        };
        let i = self.payments.len();
        self.payments.push(payment.clone());
        for s in &payment.seats {
            self.payment_of_reservation.insert(s.reservation, i);
        }
        self.payments_by_user.entry(user).or_default().push(i);
        if let Some(key) = key {
            self.payment_keys.insert((user, key), i);
        }
        self.push_ledger(LedgerEntry {
            id: ledger_id(0),
            user,
            kind: LedgerKind::Payment(id),
            amount: total,
            balance_after: after,
            at: now,
            key: None,
        });
        self.emit(
            now,
            EventData::PaymentCompleted {
                payment: id,
                user,
                seats: payment.seats.clone(),
                amount: total,
                balance_after: after,
            },
        );
        self.end_entry(session, EntryState::Done, now);
        payment
    }

    fn push_ledger(&mut self, mut entry: LedgerEntry) -> usize {
        let i = self.ledger.len();
        entry.id = ledger_id(i);
        self.ledger_by_user.entry(entry.user).or_default().push(i);
        self.ledger.push(entry);
        i
    }
}

/// The `hold.expired` event of a hold recorded as expired.
fn expired(h: &Hold) -> EventData {
    EventData::HoldExpired {
        reservation: h.id,
        user: h.user,
        schedule: h.schedule,
        seat: h.seat,
        until: h.expires_at,
    }
}

fn ledger_id(index: usize) -> LedgerEntryId {
    LedgerEntryId::new(index as i64 + 1).unwrap_or_else(|_| unreachable!("index + 1 >= 1"))
}

fn newest_first<T: Clone>(indexes: Option<&Vec<usize>>, rows: &[T], limit: u32) -> Vec<T> {
    indexes.map_or_else(Vec::new, |ix| {
        ix.iter()
            .rev()
            .take(limit as usize)
            .map(|i| rows[*i].clone())
            .collect()
    })
}

impl CatalogRepo for MemoryStore {
    async fn create_concert(&self, new: NewConcert) -> Result<Concert, StoreError> {
        let mut st = self.lock();
        let next = st.concerts.keys().next_back().map_or(1, |id| id.get() + 1);
        let id = ConcertId::new(next).map_err(|e| StoreError::Failed(e.to_string()))?;
        let concert = Concert { id, name: new.name };
        st.concerts.insert(id, concert.clone());
        Ok(concert)
    }

    async fn create_schedule(&self, new: NewSchedule) -> Result<Schedule, CreateScheduleError> {
        let mut st = self.lock();
        if !st.concerts.contains_key(&new.concert()) {
            return Err(CreateScheduleError::UnknownConcert);
        }
        let key = (new.concert(), new.date());
        if st.schedule_by_date.contains_key(&key) {
            return Err(CreateScheduleError::DateTaken(new.date()));
        }
        let next = st.schedules.keys().next_back().map_or(1, |id| id.get() + 1);
        let id = ScheduleId::new(next).map_err(|e| StoreError::Failed(e.to_string()))?;
        let schedule = Schedule {
            id,
            concert: new.concert(),
            starts_at: new.starts_at(),
            seat_count: new.seat_count(),
        };
        for no in new.seat_count().seats() {
            let row = SeatRow {
                price: new.prices().price_of(no),
                sold: false,
                hold: None,
            };
            st.seats.insert((id, no), row);
        }
        st.schedules.insert(id, schedule);
        st.schedule_by_date.insert(key, id);
        Ok(schedule)
    }

    async fn concerts(&self) -> Result<Vec<Concert>, StoreError> {
        Ok(self.lock().concerts.values().cloned().collect())
    }

    async fn concert(&self, id: ConcertId) -> Result<Option<Concert>, StoreError> {
        Ok(self.lock().concerts.get(&id).cloned())
    }

    async fn schedule(&self, id: ScheduleId) -> Result<Option<Schedule>, StoreError> {
        Ok(self.lock().schedules.get(&id).copied())
    }

    async fn schedule_on(
        &self,
        concert: ConcertId,
        date: NaiveDate,
    ) -> Result<Option<Schedule>, StoreError> {
        let st = self.lock();
        Ok(st
            .schedule_by_date
            .get(&(concert, date))
            .and_then(|id| st.schedules.get(id))
            .copied())
    }

    async fn schedule_summaries(
        &self,
        concert: ConcertId,
        now: Timestamp,
    ) -> Result<Vec<ScheduleSummary>, StoreError> {
        let st = self.lock();
        let mut list: Vec<ScheduleSummary> = st
            .schedules
            .values()
            .filter(|s| s.concert == concert)
            .map(|s| st.summary(s, now))
            .collect();
        list.sort_by_key(|s| (s.schedule.starts_at, s.schedule.id));
        Ok(list)
    }

    async fn seats(&self, schedule: ScheduleId, now: Timestamp) -> Result<Vec<Seat>, StoreError> {
        let st = self.lock();
        let Some(sched) = st.schedules.get(&schedule) else {
            return Ok(Vec::new());
        };
        Ok(sched
            .seat_count
            .seats()
            .filter_map(|no| {
                let row = st.seats.get(&(schedule, no))?;
                Some(Seat {
                    no,
                    price: row.price,
                    state: st.seat_state(row, now),
                })
            })
            .collect())
    }
}

impl QueueRepo for MemoryStore {
    async fn issue(&self, req: IssueRequest) -> Result<QueueEntry, IssueRepoError> {
        let mut st = self.lock();
        if let Some(seq) = st.live_entry_of.get(&req.user).copied() {
            let entry = st.entries[(seq.get() - 1) as usize];
            if entry.is_live_at(req.now) {
                return Ok(entry);
            }
        }
        let c = *st.counters();
        if c.last_seq - c.serving >= req.max_waiting {
            return Err(IssueRepoError::QueueFull);
        }
        if let Some(seq) = st.live_entry_of.get(&req.user).copied() {
            st.end_entry(seq, EntryState::Expired, req.now);
        }
        let seq = QueueSeq::new(c.last_seq + 1).map_err(|e| StoreError::Failed(e.to_string()))?;
        let entry = QueueEntry {
            seq,
            user: req.user,
            token_id: req.token_id,
            issued_at: req.now,
            state: EntryState::Live,
            admitted_at: None,
            seen_at: None,
            expires_at: None,
        };
        st.entries.push(entry);
        st.live_entry_of.insert(req.user, seq);
        st.counters().last_seq = seq.get();
        st.emit(
            req.now,
            EventData::TokenIssued {
                user: req.user,
                seq,
            },
        );
        Ok(entry)
    }

    async fn entry(&self, seq: QueueSeq) -> Result<Option<QueueEntry>, StoreError> {
        Ok(self.lock().entries.get((seq.get() - 1) as usize).copied())
    }

    async fn counters(&self) -> Result<QueueCounters, StoreError> {
        Ok(*self.lock().counters())
    }

    async fn count_active(&self, now: Timestamp) -> Result<u64, StoreError> {
        let st = self.lock();
        Ok(st
            .admitted_live
            .iter()
            .filter(|seq| st.entries[(seq.get() - 1) as usize].is_active_at(now))
            .count() as u64)
    }

    async fn advance(&self, adv: Advance) -> Result<bool, StoreError> {
        let mut st = self.lock();
        let c = *st.counters();
        if c.version != adv.expected_version {
            return Ok(false);
        }
        if adv.serving < c.serving || adv.serving > c.last_seq {
            return Err(StoreError::Failed(format!(
                "advance to {} outside {}..={}",
                adv.serving, c.serving, c.last_seq
            )));
        }
        for i in c.serving..adv.serving {
            let e = &mut st.entries[i as usize];
            e.admitted_at = Some(adv.now);
            e.expires_at = Some(adv.admitted_until);
            if e.state == EntryState::Live {
                let seq = e.seq;
                st.admitted_live.insert(seq);
            }
        }
        let old = c.serving;
        let c = st.counters();
        c.serving = adv.serving;
        c.version += 1;
        c.last_tick_at = Some(adv.now);
        c.admit_rate_milli = adv.admit_rate_milli;
        if adv.serving > old {
            let range = (QueueSeq::new(old + 1), QueueSeq::new(adv.serving));
            if let (Ok(first), Ok(last)) = range {
                st.emit(adv.now, EventData::SessionAdmitted { first, last });
            }
        }
        Ok(true)
    }

    async fn show_up(
        &self,
        seq: QueueSeq,
        now: Timestamp,
        until: Timestamp,
    ) -> Result<Option<QueueEntry>, StoreError> {
        let mut st = self.lock();
        let Some(e) = st.entry_mut(seq) else {
            return Ok(None);
        };
        if e.seen_at.is_some() || !e.is_active_at(now) {
            return Ok(None);
        }
        e.seen_at = Some(now);
        e.expires_at = Some(until);
        Ok(Some(*e))
    }

    async fn set_policy(&self, policy: AdmissionPolicy) -> Result<(), StoreError> {
        let mut st = self.lock();
        let c = st.counters();
        c.policy = policy;
        c.version += 1;
        Ok(())
    }

    async fn set_paused(&self, paused: bool) -> Result<(), StoreError> {
        let mut st = self.lock();
        let c = st.counters();
        c.paused = paused;
        c.version += 1;
        Ok(())
    }

    async fn expire_sessions(&self, now: Timestamp, limit: u32) -> Result<u64, StoreError> {
        let mut st = self.lock();
        let lapsed: Vec<QueueSeq> = st
            .admitted_live
            .iter()
            .filter(|seq| !st.entries[(seq.get() - 1) as usize].is_active_at(now))
            .take(limit as usize)
            .copied()
            .collect();
        for seq in &lapsed {
            st.end_entry(*seq, EntryState::Expired, now);
        }
        Ok(lapsed.len() as u64)
    }
}

impl HoldRepo for MemoryStore {
    async fn hold(&self, req: NewHold) -> Result<Hold, HoldRepoError> {
        let mut st = self.lock();
        let now = req.now;
        let Some(row) = st.seats.get(&(req.schedule, req.seat)) else {
            return Err(HoldRepoError::NoSuchSeat);
        };
        let price = row.price;
        let seat_free = st.seat_state(row, now) == SeatState::Free;
        if !st.session_active(req.session, req.user, now) {
            return Err(HoldRepoError::SessionEnded);
        }
        if st.live_holds_of(req.user, now) >= req.max_live_per_user as usize {
            return Err(HoldRepoError::HoldLimit);
        }
        if !seat_free {
            return Err(HoldRepoError::SeatTaken);
        }
        let hold = Hold {
            id: req.id,
            user: req.user,
            schedule: req.schedule,
            seat: req.seat,
            price,
            created_at: now,
            expires_at: req.expires_at,
            state: HoldState::Held,
        };
        // The seat's previous claim, if any, lapsed: record it on its reservation.
        if let Some(row) = st.seats.get_mut(&(req.schedule, req.seat)) {
            let previous = row.hold.replace((req.id, req.expires_at));
            if let Some((old, _)) = previous
                && let Some(h) = st.reservations.get_mut(&old)
                && h.state == HoldState::Held
            {
                h.state = HoldState::Expired;
                let h = *h;
                st.emit(h.expires_at, expired(&h));
            }
        }
        st.emit(
            now,
            EventData::HoldCreated {
                reservation: req.id,
                user: req.user,
                schedule: req.schedule,
                seat: req.seat,
                price,
                until: req.expires_at,
            },
        );
        st.reservations.insert(req.id, hold);
        st.reservations_by_user
            .entry(req.user)
            .or_default()
            .push(req.id);
        Ok(hold)
    }

    async fn cancel(
        &self,
        id: ReservationId,
        user: UserId,
        now: Timestamp,
    ) -> Result<Hold, CancelRepoError> {
        let mut st = self.lock();
        let Some(hold) = st.reservations.get(&id).copied() else {
            return Err(CancelRepoError::NotFound);
        };
        if hold.user != user {
            return Err(CancelRepoError::NotYours);
        }
        let state = hold.state_at(now);
        if state != HoldState::Held {
            return Err(CancelRepoError::NotHeld(state));
        }
        if let Some(row) = st.seats.get_mut(&(hold.schedule, hold.seat))
            && row.hold.is_some_and(|(r, _)| r == id)
        {
            row.hold = None;
        }
        let h = st
            .reservations
            .get_mut(&id)
            .ok_or(CancelRepoError::NotFound)?;
        h.state = HoldState::Cancelled;
        let h = *h;
        st.emit(
            now,
            EventData::HoldCancelled {
                reservation: h.id,
                user: h.user,
                schedule: h.schedule,
                seat: h.seat,
            },
        );
        Ok(h)
    }

    async fn reservation(&self, id: ReservationId) -> Result<Option<Hold>, StoreError> {
        Ok(self.lock().reservations.get(&id).copied())
    }

    async fn reservations_of(&self, user: UserId, limit: u32) -> Result<Vec<Hold>, StoreError> {
        let st = self.lock();
        Ok(st
            .reservations_by_user
            .get(&user)
            .map_or_else(Vec::new, |ids| {
                ids.iter()
                    .rev()
                    .take(limit as usize)
                    .map(|id| st.reservations[id])
                    .collect()
            }))
    }

    async fn live_holds(&self, now: Timestamp, limit: u32) -> Result<Vec<Hold>, StoreError> {
        let st = self.lock();
        let mut live: Vec<Hold> = st
            .reservations
            .values()
            .filter(|h| h.is_live_at(now))
            .copied()
            .collect();
        live.sort_by_key(|h| (h.expires_at, h.id));
        live.truncate(limit as usize);
        Ok(live)
    }

    async fn sweep_expired_holds(&self, now: Timestamp, limit: u32) -> Result<u64, StoreError> {
        let mut st = self.lock();
        let lapsed: Vec<Hold> = st
            .reservations
            .values()
            .filter(|h| h.state == HoldState::Held && now >= h.expires_at)
            .take(limit as usize)
            .copied()
            .collect();
        for h in &lapsed {
            if let Some(row) = st.seats.get_mut(&(h.schedule, h.seat))
                && row.hold.is_some_and(|(r, _)| r == h.id)
            {
                row.hold = None;
            }
            if let Some(r) = st.reservations.get_mut(&h.id) {
                r.state = HoldState::Expired;
            }
            st.emit(h.expires_at, expired(h));
        }
        Ok(lapsed.len() as u64)
    }
}

impl WalletRepo for MemoryStore {
    async fn charge(&self, req: ChargeRequest) -> Result<ChargeReceipt, ChargeRepoError> {
        let mut st = self.lock();
        if let Some(key) = &req.key
            && let Some(i) = st.charge_keys.get(&(req.user, key.clone())).copied()
        {
            let first = st.ledger[i].clone();
            if first.amount != req.amount {
                return Err(ChargeRepoError::KeyReused);
            }
            return Ok(ChargeReceipt {
                entry: first,
                replayed: true,
            });
        }
        let balance = st.balances.get(&req.user).copied().unwrap_or_default();
        let after = balance
            .checked_add(req.amount)
            .filter(|b| *b <= req.max_balance)
            .ok_or(ChargeRepoError::BalanceLimit { balance })?;
        st.balances.insert(req.user, after);
        let i = st.push_ledger(LedgerEntry {
            id: ledger_id(0),
            user: req.user,
            kind: LedgerKind::Charge,
            amount: req.amount,
            balance_after: after,
            at: req.now,
            key: req.key.clone(),
        });
        if let Some(key) = req.key {
            st.charge_keys.insert((req.user, key), i);
        }
        st.emit(
            req.now,
            EventData::WalletCharged {
                user: req.user,
                amount: req.amount,
                balance_after: after,
            },
        );
        Ok(ChargeReceipt {
            entry: st.ledger[i].clone(),
            replayed: false,
        })
    }

    async fn balance(&self, user: UserId) -> Result<Money, StoreError> {
        Ok(self.lock().balances.get(&user).copied().unwrap_or_default())
    }

    async fn ledger(&self, user: UserId, limit: u32) -> Result<Vec<LedgerEntry>, StoreError> {
        let st = self.lock();
        Ok(newest_first(
            st.ledger_by_user.get(&user),
            &st.ledger,
            limit,
        ))
    }
}

impl PaymentRepo for MemoryStore {
    async fn pay(&self, req: PayRequest) -> Result<Payment, PayRepoError> {
        let mut st = self.lock();
        let now = req.now;
        let Some(hold) = st.reservations.get(&req.reservation).copied() else {
            return Err(PayRepoError::NotFound);
        };
        if hold.user != req.user {
            return Err(PayRepoError::NotYours);
        }
        let state = hold.state_at(now);
        if state != HoldState::Held {
            return Err(PayRepoError::NotHeld(state));
        }
        if let Some(key) = &req.key
            && st.payment_keys.contains_key(&(req.user, key.clone()))
        {
            return Err(PayRepoError::KeyReused);
        }
        if !st.session_active(req.session, req.user, now) {
            return Err(PayRepoError::SessionEnded);
        }
        let balance = st.balances.get(&req.user).copied().unwrap_or_default();
        let after = balance
            .checked_sub(hold.price)
            .ok_or(PayRepoError::InsufficientBalance {
                balance,
                price: hold.price,
            })?;
        // Every check passed: now write, all of it.
        let seat = PaidSeat {
            reservation: hold.id,
            schedule: hold.schedule,
            seat: hold.seat,
            price: hold.price,
        };
        let req = PayManyRequest {
            id: req.id,
            reservations: vec![req.reservation],
            user: req.user,
            session: req.session,
            key: req.key,
            now,
        };
        Ok(st.settle(req, vec![seat], hold.price, after))
    }

    async fn pay_many(&self, req: PayManyRequest) -> Result<Payment, PayManyRepoError> {
        let mut st = self.lock();
        let now = req.now;
        let mut seats = Vec::with_capacity(req.reservations.len());
        for id in &req.reservations {
            let Some(hold) = st.reservations.get(id).copied() else {
                return Err(PayManyRepoError::about(*id, PayRepoError::NotFound));
            };
            if hold.user != req.user {
                return Err(PayManyRepoError::about(*id, PayRepoError::NotYours));
            }
            let state = hold.state_at(now);
            if state != HoldState::Held {
                return Err(PayManyRepoError::about(*id, PayRepoError::NotHeld(state)));
            }
            seats.push(PaidSeat {
                reservation: hold.id,
                schedule: hold.schedule,
                seat: hold.seat,
                price: hold.price,
            });
        }
        if let Some(key) = &req.key
            && st.payment_keys.contains_key(&(req.user, key.clone()))
        {
            return Err(PayRepoError::KeyReused.into());
        }
        if !st.session_active(req.session, req.user, now) {
            return Err(PayRepoError::SessionEnded.into());
        }
        let total = Amount::total(seats.iter().map(|s| s.price))
            .ok_or_else(|| StoreError::Failed("the total of a payment overflows".into()))?;
        let balance = st.balances.get(&req.user).copied().unwrap_or_default();
        let after = balance
            .checked_sub(total)
            .ok_or(PayRepoError::InsufficientBalance {
                balance,
                price: total,
            })?;
        Ok(st.settle(req, seats, total, after))
    }

    async fn payment_by_key(
        &self,
        user: UserId,
        key: &IdempotencyKey,
    ) -> Result<Option<Payment>, StoreError> {
        let st = self.lock();
        Ok(st
            .payment_keys
            .get(&(user, key.clone()))
            .map(|i| st.payments[*i].clone()))
    }

    async fn payments_of(&self, user: UserId, limit: u32) -> Result<Vec<Payment>, StoreError> {
        let st = self.lock();
        Ok(newest_first(
            st.payments_by_user.get(&user),
            &st.payments,
            limit,
        ))
    }
}

impl EventRepo for MemoryStore {
    async fn relay_events(&self) -> Result<u64, StoreError> {
        let mut st = self.lock();
        let pending = std::mem::take(&mut st.outbox);
        let n = pending.len() as u64;
        for (at, data) in pending {
            st.last_event_id += 1;
            let id = EventId(st.last_event_id);
            st.events.push(Event { id, at, data });
        }
        Ok(n)
    }

    async fn events_after(
        &self,
        after: EventId,
        limit: u32,
        types: &[EventType],
    ) -> Result<Vec<Event>, StoreError> {
        let st = self.lock();
        let start = st.events.partition_point(|e| e.id <= after);
        Ok(st.events[start..]
            .iter()
            .filter(|e| types.is_empty() || types.contains(&e.event_type()))
            .take(limit as usize)
            .cloned()
            .collect())
    }

    async fn last_event_id(&self) -> Result<EventId, StoreError> {
        Ok(EventId(self.lock().last_event_id))
    }

    async fn prune_events(&self, older_than: Timestamp, up_to: EventId) -> Result<u64, StoreError> {
        let mut st = self.lock();
        let before = st.events.len();
        st.events.retain(|e| e.at >= older_than || e.id > up_to);
        Ok((before - st.events.len()) as u64)
    }
}

// ---------------------------------------------------------------------------------
// Webhooks: the endpoints under their own lock; each method is atomic under it.

#[derive(Debug, Default)]
struct Hooks {
    rows: BTreeMap<WebhookId, (Webhook, WebhookSecret)>,
    last_id: i64,
}

impl MemoryStore {
    fn hooks(&self) -> MutexGuard<'_, Hooks> {
        self.hooks.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Hooks {
    /// The endpoint `holder` holds at `now`, if it does.
    fn held(&mut self, id: WebhookId, holder: &str, now: Timestamp) -> Option<&mut Webhook> {
        let (w, _) = self.rows.get_mut(&id)?;
        let holds =
            w.leased_by.as_deref() == Some(holder) && w.leased_until.is_some_and(|u| u > now);
        holds.then_some(w)
    }
}

impl WebhookRepo for MemoryStore {
    async fn add_webhook(&self, new: NewWebhook) -> Result<Webhook, StoreError> {
        let mut h = self.hooks();
        h.last_id += 1;
        let id = WebhookId::new(h.last_id).map_err(|e| StoreError::Failed(e.to_string()))?;
        let w = Webhook {
            id,
            url: new.url,
            types: new.types,
            cursor: new.cursor,
            attempts: 0,
            next_attempt_at: new.now,
            status: WebhookStatus::Active,
            last_error: None,
            leased_until: None,
            leased_by: None,
            created_at: new.now,
        };
        h.rows.insert(id, (w.clone(), new.secret));
        Ok(w)
    }

    async fn webhooks(&self) -> Result<Vec<Webhook>, StoreError> {
        Ok(self.hooks().rows.values().map(|(w, _)| w.clone()).collect())
    }

    async fn webhook(&self, id: WebhookId) -> Result<Option<Webhook>, StoreError> {
        Ok(self.hooks().rows.get(&id).map(|(w, _)| w.clone()))
    }

    async fn remove_webhook(&self, id: WebhookId) -> Result<bool, StoreError> {
        Ok(self.hooks().rows.remove(&id).is_some())
    }

    async fn claim_webhook(
        &self,
        holder: &str,
        now: Timestamp,
        lease_until: Timestamp,
        below: EventId,
    ) -> Result<Option<ClaimedWebhook>, StoreError> {
        let mut h = self.hooks();
        let due = h
            .rows
            .values()
            .map(|(w, _)| w)
            .filter(|w| {
                w.status == WebhookStatus::Active
                    && w.next_attempt_at <= now
                    && w.leased_until.is_none_or(|u| u <= now)
                    && w.cursor < below
            })
            .min_by_key(|w| (w.next_attempt_at, w.id))
            .map(|w| w.id);
        let Some((w, secret)) = due.and_then(|id| h.rows.get_mut(&id)) else {
            return Ok(None);
        };
        w.leased_until = Some(lease_until);
        w.leased_by = Some(holder.to_owned());
        Ok(Some(ClaimedWebhook {
            webhook: w.clone(),
            secret: secret.clone(),
        }))
    }

    async fn advance_webhook(
        &self,
        id: WebhookId,
        holder: &str,
        cursor: EventId,
        now: Timestamp,
        lease_until: Timestamp,
    ) -> Result<bool, StoreError> {
        let mut h = self.hooks();
        let Some(w) = h.held(id, holder, now) else {
            return Ok(false);
        };
        w.cursor = w.cursor.max(cursor);
        w.attempts = 0;
        w.last_error = None;
        w.leased_until = Some(lease_until);
        Ok(true)
    }

    async fn record_webhook_failure(
        &self,
        id: WebhookId,
        holder: &str,
        now: Timestamp,
        failure: WebhookFailure,
    ) -> Result<bool, StoreError> {
        let mut h = self.hooks();
        let Some(w) = h.held(id, holder, now) else {
            return Ok(false);
        };
        w.attempts = w.attempts.saturating_add(1);
        w.last_error = Some(failure.error);
        match failure.retry_at {
            Some(at) => w.next_attempt_at = at,
            None => w.status = WebhookStatus::Failed,
        }
        w.leased_until = None;
        w.leased_by = None;
        Ok(true)
    }

    async fn release_webhook(
        &self,
        id: WebhookId,
        holder: &str,
        now: Timestamp,
        next_attempt_at: Timestamp,
    ) -> Result<bool, StoreError> {
        let mut h = self.hooks();
        let Some(w) = h.held(id, holder, now) else {
            return Ok(false);
        };
        w.next_attempt_at = next_attempt_at;
        w.leased_until = None;
        w.leased_by = None;
        Ok(true)
    }

    async fn reset_webhook(
        &self,
        id: WebhookId,
        now: Timestamp,
    ) -> Result<Option<Webhook>, StoreError> {
        let mut h = self.hooks();
        let Some((w, _)) = h.rows.get_mut(&id) else {
            return Ok(None);
        };
        w.status = WebhookStatus::Active;
        w.attempts = 0;
        w.last_error = None;
        w.next_attempt_at = now;
        Ok(Some(w.clone()))
    }

    async fn lowest_webhook_cursor(&self) -> Result<Option<EventId>, StoreError> {
        Ok(self
            .hooks()
            .rows
            .values()
            .filter(|(w, _)| w.status == WebhookStatus::Active)
            .map(|(w, _)| w.cursor)
            .min())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::domain::{ConcertName, SeatCount, SeatPrices};
    use crate::{Booking, Clock, Config, ManualClock, TokenSigner};

    #[tokio::test]
    async fn a_snapshot_shows_every_row_of_a_sale() {
        let clock = ManualClock::new(Timestamp::from_millis(1_767_225_600_000));
        let signer = TokenSigner::new(b"a secret of at least thirty-two bytes").unwrap();
        let store = MemoryStore::new();
        let b = Booking::new(store.clone(), clock.clone(), signer, Config::default()).unwrap();
        let concert = b
            .create_concert(ConcertName::new("Snap").unwrap())
            .await
            .unwrap();
        let starts = clock.now().plus(Duration::from_secs(86_400));
        let price = Amount::new(700).unwrap();
        let new = NewSchedule::new(
            concert.id,
            starts,
            SeatCount::new(3).unwrap(),
            SeatPrices::Uniform(price),
        )
        .unwrap();
        let date = b.create_schedule(new).await.unwrap();
        b.set_policy(AdmissionPolicy::rate(10, Duration::from_millis(10)).unwrap())
            .await
            .unwrap();
        let user = UserId::random();
        let issued = b.issue_token(user).await.unwrap();
        clock.advance(Duration::from_secs(1));
        b.tick().await.unwrap();
        let who = b.gate(&issued.token).await.unwrap();
        let hold = b
            .hold(&who, date.id, SeatNo::new(2).unwrap())
            .await
            .unwrap();
        b.charge(user, Amount::new(1_000).unwrap(), None)
            .await
            .unwrap();
        let paid = b.pay(&issued.token, hold.id, None).await.unwrap();

        let snap = store.snapshot();
        assert_eq!(snap.schedules, vec![date]);
        assert_eq!(snap.seats.len(), 3);
        let sold: Vec<_> = snap.seats.iter().filter(|s| s.sold).collect();
        assert_eq!((sold.len(), sold[0].no.get(), sold[0].hold), (1, 2, None));
        assert_eq!(snap.reservations.len(), 1);
        assert_eq!(snap.reservations[0].state, HoldState::Paid);
        assert_eq!(snap.entries.len(), 1);
        assert_eq!(snap.entries[0].state, EntryState::Done);
        assert_eq!((snap.counters.last_seq, snap.counters.serving), (1, 1));
        assert_eq!(snap.balances, vec![(user, Money::new(300).unwrap())]);
        assert_eq!(snap.ledger.len(), 2);
        assert_eq!(snap.payments, vec![paid.payment]);
    }
}
