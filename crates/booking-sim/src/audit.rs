//! The auditor: checks invariants I1-I6 of the design against the stored rows
//! ([`DbState`]) and against the simulator's own [`Record`] of what each virtual
//! user was told. Every check has a stable id (`I1.seats`, `I2.balances`, ...),
//! a verdict, and the first violations it found, described for people.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize;
use uuid::Uuid;

use crate::db::{DbState, EventRow};
use crate::record::Record;

/// How many violations a check lists (it counts them all).
pub const MAX_LISTED: usize = 10;

/// The verdict of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Nothing wrong.
    Passed,
    /// At least one violation.
    Failed,
    /// Not checked (no database to read, say).
    Skipped,
}

/// One check and what it found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// Stable id, e.g. `I2.balances`.
    pub id: &'static str,
    /// The invariant it checks (`I1` .. `I6`).
    pub invariant: &'static str,
    /// What it checks, for people.
    pub title: &'static str,
    /// The verdict.
    pub verdict: Verdict,
    /// How many things it looked at (seats, users, payments, ...).
    pub n_checked: u64,
    /// How many violations it found.
    pub n_violations: u64,
    /// The first [`MAX_LISTED`] violations, or why it was skipped.
    pub details: Vec<String>,
}

/// Every check of one audit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Audit {
    /// Whether no check failed.
    pub clean: bool,
    /// The checks, in invariant order.
    pub checks: Vec<Check>,
}

impl Audit {
    /// The check with this id.
    pub fn check(&self, id: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.id == id)
    }

    /// The ids of the failed checks.
    pub fn failed(&self) -> Vec<&'static str> {
        self.checks
            .iter()
            .filter(|c| c.verdict == Verdict::Failed)
            .map(|c| c.id)
            .collect()
    }
}

/// What the auditor may tolerate, and what it knows of the run's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditOptions {
    /// The active-user cap the run set, if any (else the database's is used).
    pub cap: Option<u32>,
    /// How far apart the clocks that stamp admissions and payments may be, plus a
    /// request's time in flight (ms): the engine's clock tolerance. A session
    /// ended by a payment counts as ended this long before its payment's time.
    pub clock_tolerance_ms: i64,
    /// How stale a waiting-room answer may be (ms): the servers' counters cache.
    pub status_staleness_ms: i64,
}

impl Default for AuditOptions {
    fn default() -> Self {
        AuditOptions {
            cap: None,
            clock_tolerance_ms: 2_000,
            status_staleness_ms: 0,
        }
    }
}

struct Builder {
    id: &'static str,
    invariant: &'static str,
    title: &'static str,
    n_checked: u64,
    n_violations: u64,
    details: Vec<String>,
}

impl Builder {
    fn new(id: &'static str, invariant: &'static str, title: &'static str) -> Self {
        Builder {
            id,
            invariant,
            title,
            n_checked: 0,
            n_violations: 0,
            details: Vec::new(),
        }
    }

    fn violation(&mut self, detail: impl FnOnce() -> String) {
        self.n_violations += 1;
        if self.details.len() < MAX_LISTED {
            self.details.push(detail());
        }
    }

    fn done(self) -> Check {
        Check {
            id: self.id,
            invariant: self.invariant,
            title: self.title,
            verdict: if self.n_violations == 0 {
                Verdict::Passed
            } else {
                Verdict::Failed
            },
            n_checked: self.n_checked,
            n_violations: self.n_violations,
            details: self.details,
        }
    }

    fn skipped(self, why: &str) -> Check {
        Check {
            verdict: Verdict::Skipped,
            details: vec![why.to_owned()],
            ..self.done()
        }
    }
}

fn short(id: &Uuid) -> String {
    id.simple().to_string()[..8].to_owned()
}

/// Runs every check. Without `db`, the database checks are skipped.
pub fn audit(db: Option<&DbState>, rec: &Record, opts: &AuditOptions) -> Audit {
    let mut checks = Vec::new();
    match db {
        Some(db) => {
            checks.push(seats(db));
            checks.push(told_seats(rec));
            checks.push(balances(db));
            checks.push(payment_ledger(db));
            checks.push(acknowledged_money(db, rec));
            checks.push(acknowledged_payments(db, rec));
            checks.push(admission_order(db));
            checks.push(told_order(rec, opts));
            checks.push(capacity(db, opts));
            checks.push(sampled_capacity(rec));
            checks.push(pay_once(db));
            checks.push(replays(rec));
            checks.push(sessions_end(db));
            checks.push(probes(rec));
            checks.push(events_replay(db));
        }
        None => {
            let why = "no database to read (give --database)";
            checks.push(Builder::new(ID_SEATS, "I1", T_SEATS).skipped(why));
            checks.push(told_seats(rec));
            checks.push(Builder::new(ID_BALANCES, "I2", T_BALANCES).skipped(why));
            checks.push(Builder::new(ID_LEDGER, "I2", T_LEDGER).skipped(why));
            checks.push(Builder::new(ID_ACK_MONEY, "I2", T_ACK_MONEY).skipped(why));
            checks.push(Builder::new(ID_ACK_PAY, "I2", T_ACK_PAY).skipped(why));
            checks.push(Builder::new(ID_ORDER, "I3", T_ORDER).skipped(why));
            checks.push(told_order(rec, opts));
            checks.push(Builder::new(ID_CAPACITY, "I4", T_CAPACITY).skipped(why));
            checks.push(sampled_capacity(rec));
            checks.push(Builder::new(ID_PAY_ONCE, "I5", T_PAY_ONCE).skipped(why));
            checks.push(replays(rec));
            checks.push(Builder::new(ID_SESSIONS, "I6", T_SESSIONS).skipped(why));
            checks.push(probes(rec));
            checks.push(Builder::new(ID_EVENTS, "events", T_EVENTS).skipped(why));
        }
    }
    Audit {
        clean: checks.iter().all(|c| c.verdict != Verdict::Failed),
        checks,
    }
}

/// Check ids.
pub const ID_SEATS: &str = "I1.seats";
const T_SEATS: &str =
    "no seat sold twice or held by two; seat rows agree with reservations and payments";
/// Check id.
pub const ID_TOLD_SEATS: &str = "I1.told";
const T_TOLD_SEATS: &str = "no two users were told they bought, or hold at once, the same seat";
/// Check id.
pub const ID_BALANCES: &str = "I2.balances";
const T_BALANCES: &str = "balance = charges - payments + refunds (none exist) for every user, never negative, every ledger row's balance follows";
/// Check id.
pub const ID_LEDGER: &str = "I2.ledger";
const T_LEDGER: &str = "every payment has exactly one ledger row of its amount, and every payment row of the ledger a payment";
/// Check id.
pub const ID_ACK_MONEY: &str = "I2.acknowledged_money";
const T_ACK_MONEY: &str = "each user's stored charges and payments are what they were told (within writes of unknown outcome)";
/// Check id.
pub const ID_ACK_PAY: &str = "I2.acknowledged_payments";
const T_ACK_PAY: &str = "every acknowledged payment is stored, in the ledger, and owns its seat";
/// Check id.
pub const ID_ORDER: &str = "I3.order";
const T_ORDER: &str = "admission follows issue order: every place up to the serving counter admitted, none after it, admission times never decrease";
/// Check id.
pub const ID_TOLD_ORDER: &str = "I3.told";
const T_TOLD_ORDER: &str = "nobody was told 'waiting' after a later place was told 'admitted'";
/// Check id.
pub const ID_CAPACITY: &str = "I4.capacity";
const T_CAPACITY: &str =
    "active sessions, rebuilt from the stored admission and end times, never above the cap";
/// Check id.
pub const ID_SAMPLED: &str = "I4.sampled";
const T_SAMPLED: &str = "active users sampled during the run never above the cap";
/// Check id.
pub const ID_PAY_ONCE: &str = "I5.pay_once";
const T_PAY_ONCE: &str =
    "a hold is paid at most once, by its holder, before it lapses, at its price";
/// Check id.
pub const ID_REPLAYS: &str = "I5.replays";
const T_REPLAYS: &str = "a payment retried with its idempotency key returned the first payment";
/// Check id.
pub const ID_SESSIONS: &str = "I6.sessions";
const T_SESSIONS: &str =
    "a payment ends its session, and no hold is taken in a session after its payment";
/// Check id.
pub const ID_PROBES: &str = "I6.probes";
const T_PROBES: &str = "an ended token was refused when it tried to hold again";

/// Check id.
pub const ID_EVENTS: &str = "events.replay";
const T_EVENTS: &str = "the events replay to the tables: one token.issued per place, one hold.created per reservation, wallets = charges - payments, one payment.completed per payment, admissions tile the served places";

fn seats(db: &DbState) -> Check {
    let mut b = Builder::new(ID_SEATS, "I1", T_SEATS);
    let now = db.read_at_ms;
    let res: HashMap<Uuid, _> = db.reservations.iter().map(|r| (r.id, r)).collect();
    let mut paid: HashMap<(i64, i64), u64> = HashMap::new();
    let mut held: HashMap<(i64, i64), u64> = HashMap::new();
    for r in &db.reservations {
        match r.state.as_str() {
            "paid" => *paid.entry((r.schedule, r.seat)).or_default() += 1,
            "held" => *held.entry((r.schedule, r.seat)).or_default() += 1,
            _ => {}
        }
    }
    let mut payments: HashMap<(i64, i64), u64> = HashMap::new();
    for p in &db.payments {
        *payments.entry((p.schedule, p.seat)).or_default() += 1;
    }
    for s in &db.seats {
        b.n_checked += 1;
        let key = (s.schedule, s.seat);
        let n_paid = paid.get(&key).copied().unwrap_or(0);
        let n_payments = payments.get(&key).copied().unwrap_or(0);
        let where_ = || format!("date {} seat {}", s.schedule, s.seat);
        if n_paid > 1 || n_payments > 1 {
            b.violation(|| {
                format!(
                    "{}: sold {} times ({} paid reservations, {} payments)",
                    where_(),
                    n_paid.max(n_payments),
                    n_paid,
                    n_payments
                )
            });
        }
        if held.get(&key).copied().unwrap_or(0) > 1 {
            b.violation(|| format!("{}: held by two reservations", where_()));
        }
        if s.sold && (n_paid == 0 || n_payments == 0) {
            b.violation(|| {
                format!(
                    "{}: sold without a paid reservation and a payment",
                    where_()
                )
            });
        }
        if !s.sold && (n_paid > 0 || n_payments > 0) {
            b.violation(|| format!("{}: paid for but not marked sold", where_()));
        }
        // A sold seat keeps naming its reservation, which is the paid one; an unsold
        // seat names its hold, which is held while it is live.
        if s.sold && s.hold_id.is_none() {
            b.violation(|| format!("{}: sold without naming its reservation", where_()));
        }
        if let Some(h) = s.hold_id {
            match res.get(&h) {
                Some(r) if r.schedule == s.schedule && r.seat == s.seat => {
                    let live = s.hold_until.is_some_and(|u| u > now);
                    let want = if s.sold {
                        Some("paid")
                    } else if live {
                        Some("held")
                    } else {
                        None
                    };
                    if want.is_some_and(|w| r.state != w) {
                        b.violation(|| {
                            format!(
                                "{}: claimed by reservation {} which is {}",
                                where_(),
                                short(&h),
                                r.state
                            )
                        });
                    }
                }
                _ => b.violation(|| {
                    format!("{}: claimed by a reservation of another seat", where_())
                }),
            }
        }
    }
    b.done()
}

fn told_seats(rec: &Record) -> Check {
    let mut b = Builder::new(ID_TOLD_SEATS, "I1", T_TOLD_SEATS);
    let mut sold: HashMap<(i64, u16), Uuid> = HashMap::new();
    let paid_res: HashMap<Uuid, ()> = rec
        .payments
        .iter()
        .map(|(_, p)| (p.reservation, ()))
        .collect();
    for (user, p) in &rec.payments {
        b.n_checked += 1;
        if let Some(other) = sold.insert((p.schedule, p.seat), *user)
            && other != *user
        {
            b.violation(|| {
                format!(
                    "date {} seat {}: users {} and {} were both told they bought it",
                    p.schedule,
                    p.seat,
                    short(&other),
                    short(user)
                )
            });
        }
    }
    // Each hold was surely live from when its answer arrived until the earliest
    // instant it may have ended: its lapse, or when its cancel was sent (a paid
    // hold never ends). Two holds of one seat surely live at one instant are two
    // owners. Only certain overlaps count: a hold's time is read when its request
    // starts, and its write may come much later under load.
    // Per seat: (user, surely live from, surely live until).
    type Live = (Uuid, i64, i64);
    let mut by_seat: HashMap<(i64, u16), Vec<Live>> = HashMap::new();
    for (user, h, received) in &rec.holds {
        let end = if paid_res.contains_key(&h.reservation) {
            i64::MAX
        } else {
            rec.released_ms
                .get(&h.reservation)
                .copied()
                .unwrap_or(i64::MAX)
                .min(h.expires_at_ms)
        };
        by_seat
            .entry((h.schedule, h.seat))
            .or_default()
            .push((*user, *received, end));
    }
    for ((schedule, seat), mut holds) in by_seat {
        holds.sort_by_key(|(_, start, _)| *start);
        for (i, (u1, s1, e1)) in holds.iter().enumerate() {
            b.n_checked += 1;
            for (u2, s2, e2) in &holds[i + 1..] {
                if s2 >= e1 {
                    // Sorted by start: every later hold starts after this one ended.
                    break;
                }
                if (*s1).max(*s2) < (*e1).min(*e2) {
                    b.violation(|| {
                        format!(
                            "date {schedule} seat {seat}: {} and {} were both told they hold it at {}",
                            short(u1),
                            short(u2),
                            (*s1).max(*s2)
                        )
                    });
                }
            }
        }
    }
    b.done()
}

fn balances(db: &DbState) -> Check {
    let mut b = Builder::new(ID_BALANCES, "I2", T_BALANCES);
    let mut sums: BTreeMap<Uuid, (i64, i64)> = BTreeMap::new(); // (charges, payments)
    let mut running: HashMap<Uuid, i64> = HashMap::new();
    let mut chain_broken: HashMap<Uuid, i64> = HashMap::new();
    for l in &db.ledger {
        let e = sums.entry(l.user).or_default();
        let delta = if l.payment.is_some() {
            e.1 += l.amount;
            -l.amount
        } else {
            e.0 += l.amount;
            l.amount
        };
        let r = running.entry(l.user).or_default();
        *r += delta;
        if *r != l.balance_after {
            chain_broken.entry(l.user).or_insert(l.id);
        }
    }
    let wallets: HashMap<Uuid, i64> = db.wallets.iter().copied().collect();
    for (user, bal) in &db.wallets {
        b.n_checked += 1;
        let (c, p) = sums.get(user).copied().unwrap_or_default();
        if *bal != c - p {
            b.violation(|| {
                format!(
                    "user {}: balance {bal} but charges {c} - payments {p} = {}",
                    short(user),
                    c - p
                )
            });
        }
        if *bal < 0 {
            b.violation(|| format!("user {}: negative balance {bal}", short(user)));
        }
    }
    for (user, (c, p)) in &sums {
        if !wallets.contains_key(user) && c - p != 0 {
            b.n_checked += 1;
            b.violation(|| format!("user {}: ledger rows but no wallet", short(user)));
        }
    }
    for (user, id) in &chain_broken {
        b.violation(|| {
            format!(
                "user {}: ledger row {id}'s balance_after does not follow the rows before it",
                short(user)
            )
        });
    }
    b.done()
}

/// The feed (relayed or still in the outbox, read in the same snapshot as the
/// tables) tells the same story as the tables: nothing lost, nothing invented.
fn events_replay(db: &DbState) -> Check {
    let mut b = Builder::new(ID_EVENTS, "events", T_EVENTS);
    if let Some(first) = db.events.iter().find_map(|e| e.id)
        && first > 1
    {
        return b.skipped(&format!(
            "events before id {first} were pruned (older than the retention)"
        ));
    }
    fn of<'a>(db: &'a DbState, kind: &'a str) -> impl Iterator<Item = &'a EventRow> + 'a {
        db.events.iter().filter(move |e| e.kind == kind)
    }
    // The relay gives consecutive ids: a gap is an event lost from the feed.
    let ids: Vec<i64> = db.events.iter().filter_map(|e| e.id).collect();
    for w in ids.windows(2) {
        if w[1] != w[0] + 1 {
            b.violation(|| format!("event ids jump from {} to {}", w[0], w[1]));
        }
    }
    // One token.issued per place, naming its user.
    let told: BTreeMap<i64, Option<Uuid>> = of(db, "token.issued")
        .map(|e| (e.seq.unwrap_or(-1), e.user))
        .collect();
    b.n_checked += db.entries.len() as u64;
    if of(db, "token.issued").count() != told.len() {
        b.violation(|| "two token.issued events name the same place".to_owned());
    }
    for q in &db.entries {
        if told.get(&q.seq) != Some(&Some(q.user)) {
            b.violation(|| {
                format!(
                    "place {} (user {}) has no token.issued",
                    q.seq,
                    short(&q.user)
                )
            });
        }
    }
    if told.len() != db.entries.len() {
        b.violation(|| {
            format!(
                "{} token.issued events for {} places",
                told.len(),
                db.entries.len()
            )
        });
    }
    // One hold.created per reservation.
    let created: BTreeMap<Uuid, usize> =
        of(db, "hold.created").fold(BTreeMap::new(), |mut m, e| {
            *m.entry(e.reservation.unwrap_or_default()).or_default() += 1;
            m
        });
    b.n_checked += db.reservations.len() as u64;
    for r in &db.reservations {
        if created.get(&r.id) != Some(&1) {
            b.violation(|| {
                format!(
                    "reservation {} has {} hold.created events",
                    short(&r.id),
                    created.get(&r.id).copied().unwrap_or(0)
                )
            });
        }
    }
    if created.len() != db.reservations.len() {
        b.violation(|| {
            format!(
                "{} reservations created by events, {} stored",
                created.len(),
                db.reservations.len()
            )
        });
    }
    // Wallets: charges minus payments, as the events tell them.
    let mut sums: BTreeMap<Uuid, i64> = BTreeMap::new();
    for e in of(db, "wallet.charged") {
        *sums.entry(e.user.unwrap_or_default()).or_default() += e.amount.unwrap_or(0);
    }
    for e in of(db, "payment.completed") {
        *sums.entry(e.user.unwrap_or_default()).or_default() -= e.amount.unwrap_or(0);
    }
    let wallets: BTreeMap<Uuid, i64> = db.wallets.iter().copied().collect();
    for user in sums.keys().chain(wallets.keys()).collect::<BTreeSet<_>>() {
        b.n_checked += 1;
        let (told, stored) = (
            sums.get(user).copied().unwrap_or(0),
            wallets.get(user).copied().unwrap_or(0),
        );
        if told != stored {
            b.violation(|| {
                format!(
                    "user {}: the events add up to {told}, the wallet holds {stored}",
                    short(user)
                )
            });
        }
    }
    // One payment.completed per payment.
    let paid: BTreeSet<Uuid> = db.payments.iter().map(|p| p.id).collect();
    let told_paid: Vec<Uuid> = of(db, "payment.completed")
        .filter_map(|e| e.payment)
        .collect();
    b.n_checked += paid.len() as u64;
    if told_paid.len() != paid.len()
        || told_paid.iter().collect::<BTreeSet<_>>() != paid.iter().collect()
    {
        b.violation(|| {
            format!(
                "{} payment.completed events for {} payments",
                told_paid.len(),
                paid.len()
            )
        });
    }
    // Admissions: ranges that tile 1..=serving in order.
    let mut next = 1;
    for e in of(db, "session.admitted") {
        b.n_checked += 1;
        let (first, last) = (e.first_seq.unwrap_or(0), e.seq.unwrap_or(0));
        if first != next || last < first {
            b.violation(|| {
                format!(
                    "session.admitted {first}..={last} after the places up to {}",
                    next - 1
                )
            });
        }
        next = last + 1;
    }
    if next - 1 != db.serving {
        b.violation(|| {
            format!(
                "the admissions reach place {}, the serving counter is {}",
                next - 1,
                db.serving
            )
        });
    }
    b.done()
}

fn payment_ledger(db: &DbState) -> Check {
    let mut b = Builder::new(ID_LEDGER, "I2", T_LEDGER);
    let mut rows: HashMap<Uuid, Vec<&crate::db::LedgerRow>> = HashMap::new();
    for l in &db.ledger {
        if let Some(p) = l.payment {
            rows.entry(p).or_default().push(l);
        }
    }
    let ids: HashMap<Uuid, ()> = db.payments.iter().map(|p| (p.id, ())).collect();
    for p in &db.payments {
        b.n_checked += 1;
        match rows.get(&p.id).map(Vec::as_slice) {
            Some([l]) if l.amount == p.amount && l.user == p.user => {}
            Some([l]) => b.violation(|| {
                format!(
                    "payment {}: ledger row {} says {} for user {}, the payment {} for user {}",
                    short(&p.id),
                    l.id,
                    l.amount,
                    short(&l.user),
                    p.amount,
                    short(&p.user)
                )
            }),
            Some(many) if many.len() > 1 => {
                b.violation(|| format!("payment {}: {} ledger rows", short(&p.id), many.len()))
            }
            _ => b.violation(|| format!("payment {}: no ledger row", short(&p.id))),
        }
    }
    for (p, ls) in &rows {
        if !ids.contains_key(p) {
            b.violation(|| {
                format!(
                    "ledger row {} names payment {}, which does not exist",
                    ls[0].id,
                    short(p)
                )
            });
        }
    }
    b.done()
}

fn acknowledged_money(db: &DbState, rec: &Record) -> Check {
    let mut b = Builder::new(ID_ACK_MONEY, "I2", T_ACK_MONEY);
    let mut stored: HashMap<Uuid, (i64, i64)> = HashMap::new();
    for l in &db.ledger {
        let e = stored.entry(l.user).or_default();
        if l.payment.is_some() {
            e.1 += l.amount;
        } else {
            e.0 += l.amount;
        }
    }
    let mut told_paid: HashMap<Uuid, i64> = HashMap::new();
    for (user, p) in &rec.payments {
        *told_paid.entry(*user).or_default() += p.amount;
    }
    let unsure_c = rec.uncertain_charges();
    let unsure_p: HashMap<Uuid, i64> = rec
        .uncertain_payments()
        .into_iter()
        .map(|(u, v)| (u, v.iter().map(|(_, a)| a).sum()))
        .collect();
    let mut users: Vec<Uuid> = rec.charged.keys().copied().collect();
    users.extend(told_paid.keys().copied());
    users.extend(unsure_c.keys().copied());
    users.sort();
    users.dedup();
    let wallets: HashMap<Uuid, i64> = db.wallets.iter().copied().collect();
    for user in users {
        b.n_checked += 1;
        let (c, p) = stored.get(&user).copied().unwrap_or_default();
        let told_c = rec.charged.get(&user).copied().unwrap_or(0);
        let told_p = told_paid.get(&user).copied().unwrap_or(0);
        let uc = unsure_c.get(&user).copied().unwrap_or(0);
        let up = unsure_p.get(&user).copied().unwrap_or(0);
        if c < told_c || c > told_c + uc {
            b.violation(|| {
                format!(
                    "user {}: charges stored {c}, acknowledged {told_c} (+{uc} unknown)",
                    short(&user)
                )
            });
        }
        if p < told_p || p > told_p + up {
            b.violation(|| {
                format!(
                    "user {}: payments stored {p}, acknowledged {told_p} (+{up} unknown)",
                    short(&user)
                )
            });
        }
        if uc == 0 && up == 0 {
            let bal = wallets.get(&user).copied().unwrap_or(0);
            if bal != told_c - told_p {
                b.violation(|| {
                    format!(
                        "user {}: balance {bal}, but told charges {told_c} - payments {told_p}",
                        short(&user)
                    )
                });
            }
        }
    }
    b.done()
}

fn acknowledged_payments(db: &DbState, rec: &Record) -> Check {
    let mut b = Builder::new(ID_ACK_PAY, "I2", T_ACK_PAY);
    let payments: HashMap<Uuid, &crate::db::PaymentRow> =
        db.payments.iter().map(|p| (p.id, p)).collect();
    let ledger: HashMap<Uuid, ()> = db
        .ledger
        .iter()
        .filter_map(|l| l.payment.map(|p| (p, ())))
        .collect();
    let res: HashMap<Uuid, &crate::db::ReservationRow> =
        db.reservations.iter().map(|r| (r.id, r)).collect();
    let seats: HashMap<(i64, i64), bool> = db
        .seats
        .iter()
        .map(|s| ((s.schedule, s.seat), s.sold))
        .collect();
    for (user, ack) in &rec.payments {
        b.n_checked += 1;
        let id = short(&ack.payment);
        let Some(p) = payments.get(&ack.payment) else {
            b.violation(|| format!("payment {id} was acknowledged but is not stored"));
            continue;
        };
        let seat = (ack.schedule, i64::from(ack.seat));
        if p.user != *user || (p.schedule, p.seat) != seat || p.amount != ack.amount {
            b.violation(|| format!("payment {id} is stored with another user, seat or amount"));
        }
        if !ledger.contains_key(&ack.payment) {
            b.violation(|| format!("payment {id} has no ledger row"));
        }
        if !seats.get(&seat).copied().unwrap_or(false) {
            b.violation(|| format!("payment {id}: its seat is not sold"));
        }
        match res.get(&ack.reservation) {
            Some(r) if r.user == *user && r.state == "paid" => {}
            _ => b.violation(|| {
                format!("payment {id}: its reservation is not a paid reservation of the payer")
            }),
        }
    }
    b.done()
}

fn admission_order(db: &DbState) -> Check {
    let mut b = Builder::new(ID_ORDER, "I3", T_ORDER);
    let mut last: Option<(i64, i64)> = None; // (seq, admitted_at)
    for e in &db.entries {
        b.n_checked += 1;
        match e.admitted_at {
            None if e.seq <= db.serving => b.violation(|| {
                format!(
                    "place {} is not admitted although the serving counter is {}",
                    e.seq, db.serving
                )
            }),
            Some(_) if e.seq > db.serving => b.violation(|| {
                format!(
                    "place {} is admitted ahead of the serving counter {}",
                    e.seq, db.serving
                )
            }),
            _ => {}
        }
        if let Some(at) = e.admitted_at {
            if let Some((prev_seq, prev_at)) = last
                && at < prev_at
            {
                b.violation(|| {
                    format!(
                        "place {} was admitted at {at}, before the earlier place {prev_seq} (at {prev_at})",
                        e.seq
                    )
                });
            }
            last = Some((e.seq, at));
        }
    }
    b.done()
}

fn told_order(rec: &Record, opts: &AuditOptions) -> Check {
    let mut b = Builder::new(ID_TOLD_ORDER, "I3", T_TOLD_ORDER);
    let mut seqs: Vec<u64> = rec
        .last_waiting_sent_ms
        .keys()
        .chain(rec.first_admitted_ms.keys())
        .copied()
        .collect();
    seqs.sort_unstable();
    seqs.dedup();
    // Walk from the back: the earliest admission told to any later place.
    let mut min_later: Option<(i64, u64)> = None;
    for seq in seqs.into_iter().rev() {
        b.n_checked += 1;
        if let (Some(w), Some((t, later))) = (rec.last_waiting_sent_ms.get(&seq), min_later)
            && *w > t + opts.status_staleness_ms
        {
            b.violation(|| {
                format!(
                    "place {seq} was told 'waiting' by a poll sent at {w}, after place {later} was told 'admitted' at {t}"
                )
            });
        }
        if let Some(t) = rec.first_admitted_ms.get(&seq)
            && min_later.is_none_or(|(m, _)| *t < m)
        {
            min_later = Some((*t, seq));
        }
    }
    b.done()
}

fn capacity(db: &DbState, opts: &AuditOptions) -> Check {
    let mut b = Builder::new(ID_CAPACITY, "I4", T_CAPACITY);
    let cap = opts.cap.map(i64::from).or(db.max_active);
    let Some(cap) = cap else {
        return b.skipped("no capacity limit was in force");
    };
    let mut paid_at: HashMap<Uuid, Vec<i64>> = HashMap::new();
    for p in &db.payments {
        paid_at.entry(p.user).or_default().push(p.paid_at);
    }
    // (time, +1 | -1); ends sort before starts at the same instant.
    let mut events: Vec<(i64, i8)> = Vec::new();
    for e in &db.entries {
        let (Some(start), Some(mut end)) = (e.admitted_at, e.expires_at) else {
            continue;
        };
        b.n_checked += 1;
        if e.state == "done"
            && let Some(t) = paid_at
                .get(&e.user)
                .and_then(|ts| ts.iter().copied().filter(|t| *t >= start).min())
        {
            end = end.min(t - opts.clock_tolerance_ms);
        }
        if end > start {
            events.push((start, 1));
            events.push((end, -1));
        }
    }
    events.sort_unstable();
    let mut active = 0i64;
    for (t, d) in events {
        active += i64::from(d);
        if active > cap {
            b.violation(|| format!("{active} sessions active at {t}, above the cap of {cap}"));
        }
    }
    b.done()
}

fn sampled_capacity(rec: &Record) -> Check {
    let mut b = Builder::new(ID_SAMPLED, "I4", T_SAMPLED);
    b.n_checked = rec.n_samples;
    for (active, cap) in &rec.over_cap_samples {
        b.violation(|| format!("a sample showed {active} active users, above the cap of {cap}"));
    }
    b.done()
}

fn pay_once(db: &DbState) -> Check {
    let mut b = Builder::new(ID_PAY_ONCE, "I5", T_PAY_ONCE);
    let res: HashMap<Uuid, &crate::db::ReservationRow> =
        db.reservations.iter().map(|r| (r.id, r)).collect();
    let mut per_res: HashMap<Uuid, u64> = HashMap::new();
    for p in &db.payments {
        b.n_checked += 1;
        let id = short(&p.id);
        *per_res.entry(p.reservation).or_default() += 1;
        let Some(r) = res.get(&p.reservation) else {
            b.violation(|| format!("payment {id}: no such reservation"));
            continue;
        };
        if r.user != p.user {
            b.violation(|| format!("payment {id}: paid by someone else than the holder"));
        }
        if p.paid_at >= r.expires_at {
            b.violation(|| format!("payment {id}: paid after the hold lapsed"));
        }
        if p.amount != r.price {
            b.violation(|| format!("payment {id}: {} paid for a price of {}", p.amount, r.price));
        }
        if r.state != "paid" {
            b.violation(|| format!("payment {id}: its reservation is {}", r.state));
        }
    }
    for (r, n) in &per_res {
        if *n > 1 {
            b.violation(|| format!("reservation {} paid {n} times", short(r)));
        }
    }
    for r in &db.reservations {
        if r.state == "paid" && !per_res.contains_key(&r.id) {
            b.violation(|| format!("reservation {} is paid without a payment", short(&r.id)));
        }
    }
    b.done()
}

fn replays(rec: &Record) -> Check {
    let mut b = Builder::new(ID_REPLAYS, "I5", T_REPLAYS);
    for (first, second) in &rec.replays {
        b.n_checked += 1;
        match second {
            Ok(p) if p == first => {}
            Ok(p) => b.violation(|| {
                format!(
                    "a retry of payment {} made another payment {}",
                    short(first),
                    short(p)
                )
            }),
            // A retry that could not get an answer proves nothing either way.
            Err(e) if !e.starts_with("refused") => {}
            Err(e) => b.violation(|| format!("a retry of payment {} was {e}", short(first))),
        }
    }
    b.done()
}

fn sessions_end(db: &DbState) -> Check {
    let mut b = Builder::new(ID_SESSIONS, "I6", T_SESSIONS);
    let mut entries: HashMap<Uuid, Vec<&crate::db::EntryRow>> = HashMap::new();
    for e in &db.entries {
        entries.entry(e.user).or_default().push(e);
    }
    let mut holds: HashMap<Uuid, Vec<i64>> = HashMap::new();
    for r in &db.reservations {
        holds.entry(r.user).or_default().push(r.created_at);
    }
    for p in &db.payments {
        b.n_checked += 1;
        let id = short(&p.id);
        let mine = entries.get(&p.user).map(Vec::as_slice).unwrap_or(&[]);
        // The session the payment was made in: the user's last place admitted
        // before the payment.
        let pos = mine
            .iter()
            .rposition(|e| e.admitted_at.is_some_and(|a| a <= p.paid_at));
        let Some(pos) = pos else {
            b.violation(|| format!("payment {id}: made without an admitted place"));
            continue;
        };
        if mine[pos].state != "done" {
            b.violation(|| {
                format!(
                    "payment {id}: its session (place {}) is {}, not done",
                    mine[pos].seq, mine[pos].state
                )
            });
        }
        let next_admitted = mine[pos + 1..]
            .iter()
            .find_map(|e| e.admitted_at)
            .unwrap_or(i64::MAX);
        let later = holds.get(&p.user).map_or(0, |hs| {
            hs.iter()
                .filter(|t| **t > p.paid_at && **t < next_admitted)
                .count()
        });
        if later > 0 {
            b.violation(|| format!("payment {id}: {later} holds taken in the session after it"));
        }
    }
    b.done()
}

fn probes(rec: &Record) -> Check {
    let mut b = Builder::new(ID_PROBES, "I6", T_PROBES);
    for (user, wrongly) in &rec.probes {
        b.n_checked += 1;
        if let Some(w) = wrongly {
            b.violation(|| format!("user {}: {w}", short(user)));
        }
    }
    b.done()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::{EntryRow, LedgerRow, PaymentRow, ReservationRow, SeatRow};

    fn uid(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    /// One user charged 100 and paid 100 for seat 1 of date 1; two places, both
    /// admitted in order.
    fn clean_db() -> DbState {
        DbState {
            read_at_ms: 10_000,
            serving: 2,
            last_seq: 2,
            max_active: Some(10),
            seats: vec![
                SeatRow {
                    schedule: 1,
                    seat: 1,
                    sold: true,
                    hold_id: Some(uid(10)),
                    hold_until: Some(5_000),
                },
                SeatRow {
                    schedule: 1,
                    seat: 2,
                    sold: false,
                    hold_id: None,
                    hold_until: None,
                },
            ],
            reservations: vec![ReservationRow {
                id: uid(10),
                user: uid(1),
                schedule: 1,
                seat: 1,
                price: 100,
                created_at: 1_000,
                expires_at: 5_000,
                state: "paid".into(),
            }],
            entries: vec![
                EntryRow {
                    seq: 1,
                    user: uid(1),
                    state: "done".into(),
                    admitted_at: Some(500),
                    expires_at: Some(9_000),
                },
                EntryRow {
                    seq: 2,
                    user: uid(2),
                    state: "live".into(),
                    admitted_at: Some(600),
                    expires_at: Some(9_000),
                },
            ],
            wallets: vec![(uid(1), 0)],
            ledger: vec![
                LedgerRow {
                    id: 1,
                    user: uid(1),
                    payment: None,
                    amount: 100,
                    balance_after: 100,
                },
                LedgerRow {
                    id: 2,
                    user: uid(1),
                    payment: Some(uid(20)),
                    amount: 100,
                    balance_after: 0,
                },
            ],
            payments: vec![PaymentRow {
                id: uid(20),
                reservation: uid(10),
                user: uid(1),
                schedule: 1,
                seat: 1,
                amount: 100,
                paid_at: 2_000,
            }],
            events: clean_events(),
        }
    }

    /// The events of `clean_db`, the last two still in the outbox.
    fn clean_events() -> Vec<EventRow> {
        let ev = |id: Option<i64>, kind: &str| EventRow {
            id,
            kind: kind.into(),
            ..EventRow::default()
        };
        vec![
            EventRow {
                user: Some(uid(1)),
                seq: Some(1),
                ..ev(Some(1), "token.issued")
            },
            EventRow {
                user: Some(uid(2)),
                seq: Some(2),
                ..ev(Some(2), "token.issued")
            },
            EventRow {
                first_seq: Some(1),
                seq: Some(2),
                ..ev(Some(3), "session.admitted")
            },
            EventRow {
                user: Some(uid(1)),
                reservation: Some(uid(10)),
                ..ev(Some(4), "hold.created")
            },
            EventRow {
                user: Some(uid(1)),
                amount: Some(100),
                ..ev(None, "wallet.charged")
            },
            EventRow {
                user: Some(uid(1)),
                amount: Some(100),
                payment: Some(uid(20)),
                ..ev(None, "payment.completed")
            },
            EventRow {
                user: Some(uid(1)),
                seq: Some(1),
                ..ev(None, "session.ended")
            },
        ]
    }

    fn failed(db: &DbState) -> Vec<&'static str> {
        audit(Some(db), &Record::default(), &AuditOptions::default()).failed()
    }

    #[test]
    fn a_consistent_database_passes_every_check() {
        let a = audit(
            Some(&clean_db()),
            &Record::default(),
            &AuditOptions::default(),
        );
        assert!(a.clean, "{a:#?}");
        assert_eq!(a.checks.len(), 15);
        assert_eq!(a.check(ID_EVENTS).map(|c| c.n_checked), Some(6));
        assert_eq!(a.check(ID_SEATS).map(|c| c.n_checked), Some(2));
    }

    #[test]
    fn each_corruption_fails_its_own_check() {
        let mut db = clean_db();
        db.wallets[0].1 = 50;
        assert_eq!(failed(&db), vec![ID_BALANCES, ID_EVENTS]);

        let mut db = clean_db();
        db.ledger.remove(1);
        assert!(failed(&db).contains(&ID_LEDGER));

        let mut db = clean_db();
        db.reservations.push(ReservationRow {
            id: uid(11),
            user: uid(2),
            state: "paid".into(),
            ..db.reservations[0].clone()
        });
        assert!(failed(&db).contains(&ID_SEATS));

        let mut db = clean_db();
        db.entries[1].admitted_at = Some(400);
        assert_eq!(failed(&db), vec![ID_ORDER]);

        let mut db = clean_db();
        db.max_active = Some(1);
        db.entries[0].state = "live".into();
        assert_eq!(failed(&db), vec![ID_CAPACITY, ID_SESSIONS]);
    }

    #[test]
    fn events_that_tell_another_story_fail_the_replay() {
        // Each change of the events alone: lost, invented, doubled, out of order.
        let changes: [fn(&mut Vec<EventRow>); 6] = [
            |e| {
                e.remove(1);
            },
            |e| e.push(e[0].clone()),
            |e| {
                e.remove(3);
            },
            |e| e[4].amount = Some(90),
            |e| {
                e.remove(5);
            },
            |e| e[2].first_seq = Some(2),
        ];
        for (i, change) in changes.iter().enumerate() {
            let mut db = clean_db();
            change(&mut db.events);
            assert_eq!(failed(&db), vec![ID_EVENTS], "change {i}");
        }
        // Events pruned by the retention: the replay cannot be complete, and says so.
        let mut db = clean_db();
        db.events.remove(0);
        db.events[0].id = Some(2);
        let a = audit(Some(&db), &Record::default(), &AuditOptions::default());
        assert_eq!(
            a.check(ID_EVENTS).map(|c| c.verdict),
            Some(Verdict::Skipped)
        );
    }

    #[test]
    fn the_record_is_checked_against_the_database() {
        let db = clean_db();
        let mut rec = Record::default();
        rec.charged.insert(uid(1), 100);
        rec.payments.push((
            uid(1),
            crate::target::PayAck {
                payment: uid(20),
                reservation: uid(10),
                schedule: 1,
                seat: 1,
                amount: 100,
                paid_at_ms: 2_000,
                replayed: false,
            },
        ));
        assert!(audit(Some(&db), &rec, &AuditOptions::default()).clean);
        // A payment the user was told about that the database does not have.
        let mut lost = rec.clone();
        let mut ghost = lost.payments[0].1;
        ghost.payment = uid(21);
        lost.payments.push((uid(1), ghost));
        let a = audit(Some(&db), &lost, &AuditOptions::default());
        assert!(a.failed().contains(&ID_ACK_PAY));
        assert!(a.failed().contains(&ID_ACK_MONEY));
    }

    #[test]
    fn two_users_told_they_hold_one_seat_at_once_are_caught() {
        // A hold taken at `created`, answered at `received`, lapsing 1 s later.
        let hold = |n: u128, created: i64, received: i64| {
            (
                uid(n),
                crate::target::HoldAck {
                    reservation: uid(100 + n),
                    schedule: 1,
                    seat: 3,
                    price: 10,
                    created_at_ms: created,
                    expires_at_ms: created + 1_000,
                },
                received,
            )
        };
        let opts = AuditOptions::default();
        // The second hold is answered after the first lapsed: fine.
        let mut rec = Record {
            holds: vec![hold(1, 0, 10), hold(2, 1_000, 1_010)],
            ..Record::default()
        };
        assert!(audit(None, &rec, &opts).clean);
        // Answered while the first was live: two owners.
        rec.holds = vec![hold(1, 0, 10), hold(2, 900, 950)];
        assert_eq!(audit(None, &rec, &opts).failed(), vec![ID_TOLD_SEATS]);
        // Unless the first one's cancel was sent before the second was answered.
        rec.released_ms.insert(uid(101), 940);
        assert!(audit(None, &rec, &opts).clean);
        // A paid hold never ends: a later hold answered any time is a violation.
        rec.released_ms.clear();
        rec.payments.push((
            uid(1),
            crate::target::PayAck {
                payment: uid(300),
                reservation: uid(101),
                schedule: 1,
                seat: 3,
                amount: 10,
                paid_at_ms: 500,
                replayed: false,
            },
        ));
        rec.holds = vec![hold(1, 0, 10), hold(2, 5_000, 5_010)];
        assert_eq!(audit(None, &rec, &opts).failed(), vec![ID_TOLD_SEATS]);
    }

    #[test]
    fn being_told_waiting_after_a_later_place_was_admitted_is_caught() {
        let mut rec = Record::default();
        rec.first_admitted_ms.insert(5, 1_000);
        rec.last_waiting_sent_ms.insert(3, 900);
        let opts = AuditOptions::default();
        assert!(audit(None, &rec, &opts).clean);
        rec.last_waiting_sent_ms.insert(4, 1_100);
        let a = audit(None, &rec, &opts);
        assert_eq!(a.failed(), vec![ID_TOLD_ORDER]);
        // Within the allowed staleness of answers it passes.
        let lenient = AuditOptions {
            status_staleness_ms: 200,
            ..opts
        };
        assert!(audit(None, &rec, &lenient).clean);
    }
}
