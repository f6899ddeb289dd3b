//! The aggregator: one thread drains the workers' events, counts them, keeps an
//! hdrhistogram per operation and the auditor's [`Record`], and publishes a
//! [`Snapshot`] a few times a second for the dashboard and the progress lines.
//! Workers never wait for it: the channel is unbounded and sending is a push.

use std::collections::{BTreeMap, HashMap};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::events::{Ending, Event, Fact, Op, OpClass};
use crate::record::Record;
use crate::target::{FailureKind, QueueSample, Refusal, SeatView};

/// How often a snapshot is published.
pub const PUBLISH_EVERY: Duration = Duration::from_millis(250);

/// The longest latency a histogram tells apart (longer ones count as this).
const MAX_LATENCY_US: u64 = 120_000_000;

/// How many recent seconds a snapshot carries for charts.
pub const CHART_SECONDS: usize = 120;

/// Latency percentiles of one operation, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Latency {
    /// Median.
    pub p50_us: u64,
    /// 90th percentile.
    pub p90_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// 99.9th percentile.
    pub p999_us: u64,
    /// Largest.
    pub max_us: u64,
    /// Mean.
    pub mean_us: f64,
}

/// One operation's figures so far.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct OpFigures {
    /// Which operation (its name).
    pub name: &'static str,
    /// Completed calls.
    pub n_total: u64,
    /// Successes.
    pub n_ok: u64,
    /// Expected refusals (outcomes), by name.
    pub refused: BTreeMap<&'static str, u64>,
    /// Failures (errors), by kind.
    pub failed: BTreeMap<&'static str, u64>,
    /// Calls completed in the last full second.
    pub rate_last_sec: f64,
    /// Latency of every call, whatever its outcome.
    pub latency: Latency,
    /// Latency of the calls completed in the last full second (zero when none).
    pub latency_last_sec: Latency,
    /// Median, 90th and 99th percentile of each full second, in microseconds
    /// (`[0, 0, 0]` for a second without a call), oldest first: the last
    /// [`CHART_SECONDS`] in a live snapshot, from second 0 in the final one.
    pub per_sec_us: Vec<[u64; 3]>,
}

/// Counts of one second of the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Second {
    /// Holds that succeeded.
    pub n_holds: u64,
    /// Holds refused because the seat was taken.
    pub n_conflicts: u64,
    /// Payments acknowledged.
    pub n_payments: u64,
    /// Operations completed.
    pub n_ops: u64,
    /// Status polls completed.
    pub n_polls: u64,
    /// Users waiting in line, as the last sample of this second saw it.
    pub waiting: u64,
}

/// The seat map of one date as the users' answers tell it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HeatMap {
    /// The schedule.
    pub schedule: i64,
    /// Hold attempts on it so far.
    pub n_attempts: u64,
    /// Each seat's state, seat 1 first.
    pub seats: Vec<SeatView>,
}

/// Everything the dashboard, the progress lines and the report show.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Snapshot {
    /// Time since the run started.
    pub elapsed: Duration,
    /// Per operation, in [`Op::ALL`] order.
    pub ops: Vec<OpFigures>,
    /// Recent seconds (at most [`CHART_SECONDS`]), oldest first, the current
    /// (incomplete) one last.
    pub recent: Vec<Second>,
    /// Every second of the run so far, summed.
    pub totals: Second,
    /// Visits by ending.
    pub endings: BTreeMap<&'static str, u64>,
    /// Failures by operation and kind (`hold/timeout`).
    pub errors: BTreeMap<String, u64>,
    /// The latest message of each failure in `errors`, by the same key.
    pub error_samples: BTreeMap<String, String>,
    /// Visits started.
    pub n_users_started: u64,
    /// Users told they were admitted.
    pub n_users_admitted: u64,
    /// Holds left to expire by their users.
    pub n_expirations: u64,
    /// Sum of acknowledged payments, in minor units.
    pub paid_amount: i64,
    /// The last sample of the waiting room.
    pub queue: Option<QueueSample>,
    /// The busiest date's seat map.
    pub heat: Option<HeatMap>,
    /// Dates known.
    pub n_dates: u64,
    /// Seats neither sold nor under a live hold, over every date, as the users'
    /// answers tell it.
    pub n_seats_free: u64,
    /// Seats of every date known.
    pub capacity: u64,
    /// Purchases (on-sale scenario): from admission to the payment's receipt.
    pub purchase: Latency,
    /// The waits between polls the server asked for (`poll_after`), in
    /// microseconds like every latency; all zero when it never said.
    pub poll_after: Latency,
    /// When acknowledged payments reached the capacity.
    pub sold_out_after: Option<Duration>,
    /// Visits ended with a final answer (bought, or sold out).
    pub n_answered: u64,
    /// When the latest final answer came.
    pub last_answer_after: Option<Duration>,
}

impl Snapshot {
    /// The figures of one operation.
    pub fn op(&self, op: Op) -> &OpFigures {
        &self.ops[op.index()]
    }

    /// Visits started and not ended yet.
    pub fn n_users_in_flight(&self) -> u64 {
        let ended: u64 = self.endings.values().sum();
        self.n_users_started.saturating_sub(ended)
    }

    /// The `n` most frequent failures: key (`issue/transport`), count, and the
    /// latest message.
    pub fn top_errors(&self, n: usize) -> Vec<(&str, u64, Option<&str>)> {
        let mut v: Vec<(&str, u64, Option<&str>)> = self
            .errors
            .iter()
            .map(|(k, c)| {
                (
                    k.as_str(),
                    *c,
                    self.error_samples.get(k).map(String::as_str),
                )
            })
            .collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        v.truncate(n);
        v
    }
}

struct OpStats {
    n_total: u64,
    n_ok: u64,
    refused: BTreeMap<&'static str, u64>,
    failed: BTreeMap<&'static str, u64>,
    hist: Histogram<u64>,
    per_sec: Vec<u64>,
    /// The second `window` holds, and the calls of that second.
    window_sec: usize,
    window: Histogram<u64>,
    /// Percentiles of every closed second before `window_sec`.
    closed: Vec<[u64; 3]>,
    /// The latency of the second before `window_sec`.
    previous: Latency,
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3)
        .unwrap_or_else(|_| unreachable!("valid bounds"))
}

fn percentiles(l: &Latency) -> [u64; 3] {
    [l.p50_us, l.p90_us, l.p99_us]
}

impl OpStats {
    fn new() -> Self {
        OpStats {
            n_total: 0,
            n_ok: 0,
            refused: BTreeMap::new(),
            failed: BTreeMap::new(),
            hist: new_histogram(),
            per_sec: Vec::new(),
            window_sec: 0,
            window: new_histogram(),
            closed: Vec::new(),
            previous: Latency::default(),
        }
    }

    /// Moves the window to second `sec`, closing the seconds before it.
    fn roll_to(&mut self, sec: usize) {
        if sec <= self.window_sec {
            return;
        }
        let last = latency_of(&self.window);
        self.closed.push(percentiles(&last));
        // Seconds without a call between the window and `sec`.
        self.closed.resize(sec, [0; 3]);
        self.previous = if sec == self.window_sec + 1 {
            last
        } else {
            Latency::default()
        };
        self.window.reset();
        self.window_sec = sec;
    }

    /// The latency of second `sec` and the percentiles of every second before it,
    /// were the window moved to `sec`.
    fn last_full_second(&self, cur: usize, keep: usize) -> (Latency, Vec<[u64; 3]>) {
        // The seconds [from, cur): the last `keep` full ones.
        let from = cur.saturating_sub(keep);
        let mut out: Vec<[u64; 3]> = self.closed.get(from..).map_or_else(Vec::new, <[_]>::to_vec);
        if cur > self.window_sec {
            let last = latency_of(&self.window);
            if self.window_sec >= from {
                out.push(percentiles(&last));
            }
            out.resize(cur - from, [0; 3]);
            let latest = if cur == self.window_sec + 1 {
                last
            } else {
                Latency::default()
            };
            return (latest, out);
        }
        (self.previous, out)
    }
}

#[derive(Clone)]
struct SeatCell {
    sold: bool,
    held_until_ms: i64,
}

struct DateMap {
    n_attempts: u64,
    /// Attempts in the current second and the one before: (second, now, before).
    recent: (u64, u64, u64),
    seats: Vec<SeatCell>,
}

impl DateMap {
    fn attempt(&mut self, sec: u64) {
        self.n_attempts += 1;
        let (at, now, before) = self.recent;
        self.recent = match sec.saturating_sub(at) {
            0 => (at, now + 1, before),
            1 => (sec, 1, now),
            _ => (sec, 1, 0),
        };
    }

    /// Attempts over the last two seconds as of `sec`.
    fn recent_attempts(&self, sec: u64) -> u64 {
        let (at, now, before) = self.recent;
        match sec.saturating_sub(at) {
            0 => now + before,
            1 => now,
            _ => 0,
        }
    }
}

/// Counts events into figures and the record.
pub struct Aggregator {
    start: Instant,
    ops: Vec<OpStats>,
    seconds: Vec<Second>,
    endings: BTreeMap<&'static str, u64>,
    errors: BTreeMap<(Op, FailureKind), u64>,
    error_samples: BTreeMap<(Op, FailureKind), String>,
    n_started: u64,
    n_admitted: u64,
    n_expirations: u64,
    paid_amount: i64,
    queue: Option<QueueSample>,
    dates: HashMap<i64, DateMap>,
    record: Record,
    purchase: Histogram<u64>,
    poll_after: Histogram<u64>,
    capacity: u64,
    n_paid: u64,
    sold_out_after: Option<Duration>,
    n_answered: u64,
    last_answer_after: Option<Duration>,
}

impl Aggregator {
    /// An empty aggregator whose clock starts at `start`.
    pub fn new(start: Instant) -> Self {
        let mut endings = BTreeMap::new();
        for e in Ending::ALL {
            endings.insert(e.name(), 0);
        }
        Aggregator {
            start,
            ops: Op::ALL.iter().map(|_| OpStats::new()).collect(),
            seconds: Vec::new(),
            endings,
            errors: BTreeMap::new(),
            error_samples: BTreeMap::new(),
            n_started: 0,
            n_admitted: 0,
            n_expirations: 0,
            paid_amount: 0,
            queue: None,
            dates: HashMap::new(),
            record: Record::default(),
            purchase: Histogram::new_with_bounds(1, MAX_LATENCY_US, 3)
                .unwrap_or_else(|_| unreachable!("valid bounds")),
            poll_after: Histogram::new_with_bounds(1, MAX_LATENCY_US, 3)
                .unwrap_or_else(|_| unreachable!("valid bounds")),
            capacity: 0,
            n_paid: 0,
            sold_out_after: None,
            n_answered: 0,
            last_answer_after: None,
        }
    }

    fn second(&mut self, now: Instant) -> &mut Second {
        let i = now.saturating_duration_since(self.start).as_secs() as usize;
        if self.seconds.len() <= i {
            self.seconds.resize(i + 1, Second::default());
        }
        &mut self.seconds[i]
    }

    /// Takes one event in.
    pub fn apply(&mut self, ev: Event, now: Instant) {
        match ev {
            Event::Op {
                op,
                latency_us,
                class,
                seat,
            } => {
                let sec_i = now.saturating_duration_since(self.start).as_secs() as usize;
                let s = &mut self.ops[op.index()];
                s.n_total += 1;
                s.hist.saturating_record(latency_us.max(1));
                s.roll_to(sec_i);
                s.window.saturating_record(latency_us.max(1));
                if s.per_sec.len() <= sec_i {
                    s.per_sec.resize(sec_i + 1, 0);
                }
                s.per_sec[sec_i] += 1;
                match class {
                    OpClass::Ok => s.n_ok += 1,
                    OpClass::Refused(r) => *s.refused.entry(r.name()).or_default() += 1,
                    OpClass::Failed(k) => {
                        *s.failed.entry(k.name()).or_default() += 1;
                        *self.errors.entry((op, k)).or_default() += 1;
                    }
                }
                let sec = self.second(now);
                sec.n_ops += 1;
                if op == Op::Poll {
                    sec.n_polls += 1;
                }
                if op == Op::Hold {
                    match class {
                        OpClass::Ok => sec.n_holds += 1,
                        OpClass::Refused(Refusal::SeatTaken) => sec.n_conflicts += 1,
                        _ => {}
                    }
                    if let Some((schedule, _)) = seat
                        && let Some(d) = self.dates.get_mut(&schedule)
                    {
                        d.attempt(sec_i as u64);
                    }
                }
            }
            Event::Purchase { latency_us } => {
                self.purchase.saturating_record(latency_us.max(1));
            }
            Event::PollAfter { ms } => {
                self.poll_after
                    .saturating_record(ms.saturating_mul(1_000).max(1));
            }
            Event::Failure { op, kind, detail } => {
                self.error_samples.insert((op, kind), detail);
            }
            Event::Fact(fact) => {
                self.fact(&fact, now);
                self.record.apply(&fact);
            }
            Event::Queue(q) => {
                self.record.n_samples += 1;
                let max = self.record.max_active_sampled.map_or(0, |(a, _)| a);
                if q.active >= max {
                    self.record.max_active_sampled = Some((q.active, q.max_active));
                }
                if let Some(cap) = q.max_active
                    && q.active > u64::from(cap)
                {
                    self.record.over_cap_samples.push((q.active, cap));
                }
                self.second(now).waiting = q.waiting;
                self.queue = Some(q);
            }
            Event::DateAdded { schedule, seats } => {
                self.capacity += u64::from(seats);
                self.dates.insert(
                    schedule,
                    DateMap {
                        n_attempts: 0,
                        recent: (0, 0, 0),
                        seats: vec![
                            SeatCell {
                                sold: false,
                                held_until_ms: 0,
                            };
                            usize::from(seats)
                        ],
                    },
                );
            }
        }
    }

    fn fact(&mut self, fact: &Fact, now: Instant) {
        match fact {
            Fact::Issued { .. } => self.n_started += 1,
            Fact::ToldAdmitted { .. } => self.n_admitted += 1,
            Fact::Held { ack, .. } => {
                if let Some(cell) = self.cell(ack.schedule, ack.seat) {
                    cell.held_until_ms = ack.expires_at_ms;
                }
            }
            Fact::Paid { ack, .. } if !ack.replayed => {
                self.n_paid += 1;
                if self.sold_out_after.is_none()
                    && self.capacity > 0
                    && self.n_paid >= self.capacity
                {
                    self.sold_out_after = Some(now.saturating_duration_since(self.start));
                }
                self.paid_amount += ack.amount;
                self.second(now).n_payments += 1;
                if let Some(cell) = self.cell(ack.schedule, ack.seat) {
                    cell.sold = true;
                    cell.held_until_ms = 0;
                }
            }
            Fact::Released { reservation, .. } => {
                let hold = self
                    .record
                    .holds
                    .iter()
                    .rev()
                    .find(|(_, h, _)| h.reservation == *reservation)
                    .map(|(_, h, _)| *h);
                if let Some(h) = hold
                    && let Some(cell) = self.cell(h.schedule, h.seat)
                {
                    cell.held_until_ms = 0;
                }
            }
            Fact::LeftToExpire { .. } => self.n_expirations += 1,
            Fact::Ended(e) => {
                *self.endings.entry(e.name()).or_default() += 1;
                if matches!(e, Ending::Paid | Ending::SoldOut) {
                    self.n_answered += 1;
                    self.last_answer_after = Some(now.saturating_duration_since(self.start));
                }
            }
            _ => {}
        }
    }

    fn cell(&mut self, schedule: i64, seat: u16) -> Option<&mut SeatCell> {
        self.dates
            .get_mut(&schedule)?
            .seats
            .get_mut(usize::from(seat).checked_sub(1)?)
    }

    /// The figures now.
    pub fn snapshot(&self, now: Instant) -> Snapshot {
        self.snapshot_keeping(now, CHART_SECONDS)
    }

    /// The figures at the end: every second of the run in the series
    /// (`recent`, `per_sec_us`), for the report and its plots.
    pub fn final_snapshot(&self, now: Instant) -> Snapshot {
        self.snapshot_keeping(now, usize::MAX)
    }

    /// The figures now, with the last `keep` seconds of the series.
    fn snapshot_keeping(&self, now: Instant, keep: usize) -> Snapshot {
        let elapsed = now.saturating_duration_since(self.start);
        let cur = elapsed.as_secs() as usize;
        let ops = Op::ALL
            .iter()
            .zip(&self.ops)
            .map(|(op, s)| {
                let latency = latency_of(&s.hist);
                let (latency_last_sec, per_sec_us) = s.last_full_second(cur, keep);
                let rate_last_sec = if cur >= 1 {
                    s.per_sec.get(cur - 1).copied().unwrap_or(0) as f64
                } else {
                    0.0
                };
                OpFigures {
                    name: op.name(),
                    n_total: s.n_total,
                    n_ok: s.n_ok,
                    refused: s.refused.clone(),
                    failed: s.failed.clone(),
                    rate_last_sec,
                    latency,
                    latency_last_sec,
                    per_sec_us,
                }
            })
            .collect();
        let first = self.seconds.len().saturating_sub(keep);
        let mut totals = Second::default();
        for s in &self.seconds {
            totals.n_holds += s.n_holds;
            totals.n_conflicts += s.n_conflicts;
            totals.n_payments += s.n_payments;
            totals.n_ops += s.n_ops;
            totals.n_polls += s.n_polls;
        }
        let now_ms = crate::now_ms();
        // The busiest date: one not sold out if any, with the most hold attempts
        // lately, then overall.
        let heat = self
            .dates
            .iter()
            .max_by_key(|(id, d)| {
                (
                    d.seats.iter().any(|c| !c.sold),
                    d.recent_attempts(cur as u64),
                    d.n_attempts,
                    -**id,
                )
            })
            .map(|(id, d)| HeatMap {
                schedule: *id,
                n_attempts: d.n_attempts,
                seats: d
                    .seats
                    .iter()
                    .map(|c| {
                        if c.sold {
                            SeatView::Sold
                        } else if c.held_until_ms > now_ms {
                            SeatView::Held
                        } else {
                            SeatView::Free
                        }
                    })
                    .collect(),
            });
        let n_seats_free = self
            .dates
            .values()
            .flat_map(|d| d.seats.iter())
            .filter(|c| !c.sold && c.held_until_ms <= now_ms)
            .count() as u64;
        Snapshot {
            n_dates: self.dates.len() as u64,
            n_seats_free,
            elapsed,
            ops,
            recent: self.seconds[first..].to_vec(),
            totals,
            endings: self.endings.clone(),
            errors: self
                .errors
                .iter()
                .map(|((op, k), n)| (error_key(*op, *k), *n))
                .collect(),
            error_samples: self
                .error_samples
                .iter()
                .map(|((op, k), d)| (error_key(*op, *k), d.clone()))
                .collect(),
            n_users_started: self.n_started,
            n_users_admitted: self.n_admitted,
            n_expirations: self.n_expirations,
            paid_amount: self.paid_amount,
            queue: self.queue,
            heat,
            capacity: self.capacity,
            purchase: latency_of(&self.purchase),
            poll_after: latency_of(&self.poll_after),
            sold_out_after: self.sold_out_after,
            n_answered: self.n_answered,
            last_answer_after: self.last_answer_after,
        }
    }

    /// The auditor's record.
    pub fn record(&self) -> &Record {
        &self.record
    }

    /// Gives the record up.
    pub fn into_record(self) -> Record {
        self.record
    }
}

fn latency_of(h: &Histogram<u64>) -> Latency {
    if h.is_empty() {
        return Latency::default();
    }
    Latency {
        p50_us: h.value_at_quantile(0.50),
        p90_us: h.value_at_quantile(0.90),
        p99_us: h.value_at_quantile(0.99),
        p999_us: h.value_at_quantile(0.999),
        max_us: h.max(),
        mean_us: h.mean(),
    }
}

/// How a failure is named: `operation/kind`, e.g. `issue/transport`.
pub fn error_key(op: Op, kind: FailureKind) -> String {
    format!("{}/{}", op.name(), kind.name())
}

/// Runs the aggregator on events from `rx` until every sender is gone, publishing
/// into `published` every [`PUBLISH_EVERY`]. Returns the final snapshot and the
/// record.
pub fn run_aggregator(
    rx: Receiver<Event>,
    start: Instant,
    published: Arc<Mutex<Snapshot>>,
) -> (Snapshot, Record) {
    let mut agg = Aggregator::new(start);
    let mut last = Instant::now();
    loop {
        match rx.recv_timeout(PUBLISH_EVERY) {
            Ok(ev) => agg.apply(ev, Instant::now()),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        if last.elapsed() >= PUBLISH_EVERY {
            let snap = agg.snapshot(Instant::now());
            *published.lock().unwrap_or_else(|p| p.into_inner()) = snap;
            last = Instant::now();
        }
    }
    let snap = agg.final_snapshot(Instant::now());
    *published.lock().unwrap_or_else(|p| p.into_inner()) = snap.clone();
    (snap, agg.into_record())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::{HoldAck, PayAck};
    use uuid::Uuid;

    fn op(op: Op, us: u64, class: OpClass) -> Event {
        Event::Op {
            op,
            latency_us: us,
            class,
            seat: Some((1, 2)),
        }
    }

    #[test]
    fn the_last_second_latency_is_of_that_second_alone() {
        let t0 = Instant::now();
        let sec = |n: u64| t0 + Duration::from_secs(n) + Duration::from_millis(10);
        let mut a = Aggregator::new(t0);
        // Second 0: slow holds; second 1: fast ones; second 2: none; second 3: one.
        for _ in 0..100 {
            a.apply(op(Op::Hold, 80_000, OpClass::Ok), sec(0));
        }
        for _ in 0..100 {
            a.apply(op(Op::Hold, 19, OpClass::Ok), sec(1));
        }
        let s = a.snapshot(sec(2));
        let h = s.op(Op::Hold);
        assert_eq!(h.latency_last_sec.p99_us, 19, "second 1 alone");
        assert!(h.latency.p99_us >= 79_000, "cumulative: {:?}", h.latency);
        assert_eq!(h.per_sec_us.len(), 2);
        assert!(h.per_sec_us[0][2] >= 79_000 && h.per_sec_us[1][2] == 19);
        a.apply(op(Op::Hold, 500, OpClass::Ok), sec(3));
        let s = a.snapshot(sec(3));
        let h = s.op(Op::Hold);
        assert_eq!(h.latency_last_sec, Latency::default(), "second 2 had none");
        assert_eq!(h.per_sec_us[2], [0; 3]);
        let s = a.final_snapshot(sec(4));
        assert_eq!(s.op(Op::Hold).latency_last_sec.p99_us, 500);
        assert_eq!(s.op(Op::Hold).per_sec_us.len(), 4);
        // Live snapshots keep the last CHART_SECONDS; the final one every second.
        let late = sec(CHART_SECONDS as u64 + 10);
        a.apply(
            op(Op::Hold, 700, OpClass::Ok),
            late - Duration::from_secs(1),
        );
        let live = a.snapshot(late);
        let h = live.op(Op::Hold);
        assert_eq!(h.per_sec_us.len(), CHART_SECONDS);
        assert_eq!(h.per_sec_us.last().map(|p| p[2]), Some(700));
        assert_eq!(h.latency_last_sec.p99_us, 700);
        let all = a.final_snapshot(late);
        assert_eq!(all.op(Op::Hold).per_sec_us.len(), CHART_SECONDS + 10);
        assert!(all.op(Op::Hold).per_sec_us[0][2] >= 79_000, "second 0 kept");
        assert!(all.recent.len() > CHART_SECONDS && live.recent.len() <= CHART_SECONDS);
        // An operation never called has no window.
        assert_eq!(s.op(Op::Pay).latency_last_sec.p99_us, 0);
    }

    #[test]
    fn counts_outcomes_errors_and_percentiles() {
        let t0 = Instant::now();
        let mut a = Aggregator::new(t0);
        a.apply(
            Event::DateAdded {
                schedule: 1,
                seats: 3,
            },
            t0,
        );
        for us in 1..=100 {
            a.apply(op(Op::Hold, us * 1_000, OpClass::Ok), t0);
        }
        a.apply(op(Op::Hold, 5, OpClass::Refused(Refusal::SeatTaken)), t0);
        a.apply(op(Op::Hold, 5, OpClass::Failed(FailureKind::Timeout)), t0);
        let s = a.snapshot(t0 + Duration::from_millis(500));
        let h = s.op(Op::Hold);
        assert_eq!((h.n_total, h.n_ok), (102, 100));
        assert_eq!(h.refused.get("seat_taken"), Some(&1));
        assert_eq!(h.failed.get("timeout"), Some(&1));
        assert_eq!(s.errors.get("hold/timeout"), Some(&1));
        assert_eq!(s.error_samples.get("hold/timeout"), None);
        for detail in ["first", "latest"] {
            a.apply(
                Event::Failure {
                    op: Op::Issue,
                    kind: FailureKind::Transport,
                    detail: detail.into(),
                },
                t0,
            );
            a.apply(
                op(Op::Issue, 5, OpClass::Failed(FailureKind::Transport)),
                t0,
            );
        }
        let s = a.snapshot(t0 + Duration::from_millis(500));
        assert_eq!(
            s.top_errors(5),
            vec![
                ("issue/transport", 2, Some("latest")),
                ("hold/timeout", 1, None)
            ]
        );
        assert_eq!(s.top_errors(1).len(), 1);
        assert_eq!((s.totals.n_holds, s.totals.n_conflicts), (100, 1));
        // 102 values: 5, 5, 1ms..100ms; the median is about 49 ms.
        assert!(
            (48_000..=50_100).contains(&h.latency.p50_us),
            "{:?}",
            h.latency
        );
        assert!(h.latency.max_us >= 100_000 && h.latency.max_us < 100_100);
        assert_eq!(s.heat.as_ref().map(|m| m.n_attempts), Some(102));
    }

    #[test]
    fn on_sale_figures_sold_out_time_answers_purchases_and_polls() {
        let t0 = Instant::now();
        let mut a = Aggregator::new(t0);
        a.apply(
            Event::DateAdded {
                schedule: 1,
                seats: 2,
            },
            t0,
        );
        let paid = |seat: u16| {
            Event::Fact(Fact::Paid {
                id: u64::from(seat),
                user: Uuid::new_v4(),
                ack: PayAck {
                    payment: Uuid::new_v4(),
                    reservation: Uuid::new_v4(),
                    schedule: 1,
                    seat,
                    amount: 10,
                    paid_at_ms: 0,
                    replayed: false,
                },
            })
        };
        a.apply(paid(1), t0 + Duration::from_millis(400));
        a.apply(Event::Fact(Fact::Ended(Ending::Paid)), t0);
        assert_eq!(a.snapshot(t0).sold_out_after, None);
        a.apply(paid(2), t0 + Duration::from_millis(900));
        a.apply(Event::Fact(Fact::Ended(Ending::Paid)), t0);
        for ms in [1_000, 1_500] {
            a.apply(
                Event::Fact(Fact::Ended(Ending::SoldOut)),
                t0 + Duration::from_millis(ms),
            );
        }
        a.apply(
            Event::Fact(Fact::Ended(Ending::Failed)),
            t0 + Duration::from_millis(2_500),
        );
        for us in [100_000, 300_000] {
            a.apply(Event::Purchase { latency_us: us }, t0);
        }
        a.apply(Event::PollAfter { ms: 2_000 }, t0);
        a.apply(op(Op::Poll, 5, OpClass::Ok), t0);
        a.apply(
            Event::Queue(QueueSample {
                waiting: 7,
                ..QueueSample::default()
            }),
            t0,
        );
        let s = a.snapshot(t0 + Duration::from_secs(3));
        assert_eq!(s.capacity, 2);
        assert_eq!(s.sold_out_after, Some(Duration::from_millis(900)));
        assert_eq!(s.n_answered, 4, "a failure is no answer");
        assert_eq!(s.last_answer_after, Some(Duration::from_millis(1_500)));
        assert!((99_000..=101_000).contains(&s.purchase.p50_us));
        assert!((299_000..=301_000).contains(&s.purchase.max_us));
        assert!((1_999_000..=2_001_000).contains(&s.poll_after.max_us));
        assert_eq!((s.recent[0].n_polls, s.recent[0].waiting), (1, 7));
    }

    #[test]
    fn the_heat_map_follows_holds_payments_and_cancels() {
        let t0 = Instant::now();
        let mut a = Aggregator::new(t0);
        a.apply(
            Event::DateAdded {
                schedule: 7,
                seats: 3,
            },
            t0,
        );
        let far = crate::now_ms() + 60_000;
        let hold = |seat: u16| HoldAck {
            reservation: Uuid::new_v4(),
            schedule: 7,
            seat,
            price: 10,
            created_at_ms: 0,
            expires_at_ms: far,
        };
        let (h1, h2) = (hold(1), hold(2));
        let user = Uuid::new_v4();
        for h in [h1, h2] {
            a.apply(
                Event::Fact(Fact::Held {
                    user,
                    ack: h,
                    received_at_ms: 0,
                }),
                t0,
            );
        }
        a.apply(
            Event::Fact(Fact::Released {
                reservation: h2.reservation,
                sent_at_ms: 0,
            }),
            t0,
        );
        let paid = PayAck {
            payment: Uuid::new_v4(),
            reservation: h1.reservation,
            schedule: 7,
            seat: 1,
            amount: 10,
            paid_at_ms: 0,
            replayed: false,
        };
        a.apply(
            Event::Fact(Fact::Paid {
                id: 1,
                user,
                ack: paid,
            }),
            t0,
        );
        let s = a.snapshot(t0);
        let heat = s.heat.expect("a date");
        assert_eq!(
            heat.seats,
            vec![SeatView::Sold, SeatView::Free, SeatView::Free]
        );
        assert_eq!((s.totals.n_payments, s.paid_amount), (1, 10));

        // A sold-out date, however busy, gives way to one with seats left.
        a.apply(
            Event::DateAdded {
                schedule: 8,
                seats: 1,
            },
            t0,
        );
        let sold = PayAck {
            reservation: Uuid::new_v4(),
            schedule: 8,
            seat: 1,
            ..paid
        };
        a.apply(
            Event::Fact(Fact::Paid {
                id: 2,
                user,
                ack: sold,
            }),
            t0,
        );
        for _ in 0..10 {
            a.apply(
                Event::Op {
                    op: Op::Hold,
                    latency_us: 1,
                    class: OpClass::Refused(Refusal::SeatTaken),
                    seat: Some((8, 1)),
                },
                t0,
            );
        }
        assert_eq!(a.snapshot(t0).heat.map(|h| h.schedule), Some(7));
    }
}
