//! One virtual user's visit: take a token, poll until admitted, list dates, read a
//! seat map, hold a seat (popular seats first, so that users collide), pick another
//! on conflict, charge, pay; or abandon on the way. Every operation is timed and
//! reported as an [`Event`]; every answer the auditor needs is reported as a
//! [`Fact`].

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use booking_core::domain::UserId;
use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};
use tokio::sync::watch;
use uuid::Uuid;

use crate::events::{Ending, Event, Fact, Op, OpClass, Write};
use crate::target::{
    DateInfo, HoldAck, OpError, OpResult, PayAck, QueueState, Refusal, SeatView, Target, Ticket,
};

/// How virtual users behave. Probabilities are per visit.
#[derive(Debug, Clone, PartialEq)]
pub struct Behaviour {
    /// Shortest pause between two steps.
    pub think_min: Duration,
    /// Longest pause between two steps.
    pub think_max: Duration,
    /// Pause between two polls while waiting.
    pub poll_every: Duration,
    /// Stop polling while waiting (and never come back).
    pub p_abandon_queue: f64,
    /// Walk away from a hold, leaving it to expire.
    pub p_abandon_hold: f64,
    /// Cancel the hold and leave.
    pub p_cancel: f64,
    /// After paying, retry the payment with the same idempotency key (it must
    /// replay the first payment).
    pub p_retry_pay: f64,
    /// After paying, try to hold another seat with the ended token (it must be
    /// refused).
    pub p_probe: f64,
    /// Seats tried before giving up.
    pub max_hold_attempts: u32,
    /// How strongly users prefer low seat numbers (Zipf exponent; 0 = uniform).
    pub seat_skew: f64,
    /// How strongly users prefer the earliest dates (Zipf exponent; 0 = uniform).
    pub date_skew: f64,
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour {
            think_min: Duration::from_millis(100),
            think_max: Duration::from_millis(1_000),
            poll_every: Duration::from_millis(500),
            p_abandon_queue: 0.05,
            p_abandon_hold: 0.10,
            p_cancel: 0.05,
            p_retry_pay: 0.05,
            p_probe: 0.10,
            max_hold_attempts: 5,
            seat_skew: 1.2,
            date_skew: 1.0,
        }
    }
}

impl Behaviour {
    /// Checks the bounds.
    ///
    /// # Errors
    /// A sentence naming the bad setting.
    pub fn validate(&self) -> Result<(), String> {
        for (name, p) in [
            ("abandon-queue", self.p_abandon_queue),
            ("abandon-hold", self.p_abandon_hold),
            ("cancel", self.p_cancel),
            ("retry-pay", self.p_retry_pay),
            ("probe", self.p_probe),
        ] {
            if !(0.0..=1.0).contains(&p) {
                return Err(format!("--{name} is a probability, 0 to 1 (got {p})"));
            }
        }
        if self.p_abandon_hold + self.p_cancel > 1.0 {
            return Err("--abandon-hold plus --cancel is at most 1".into());
        }
        if self.think_min > self.think_max {
            return Err("the shortest think time exceeds the longest".into());
        }
        if self.think_max > Duration::from_secs(600) || self.poll_every > Duration::from_secs(600) {
            return Err("think and poll times are at most 10 minutes".into());
        }
        if self.poll_every.is_zero() {
            return Err("the poll interval must be above zero".into());
        }
        if !(1..=100).contains(&self.max_hold_attempts) {
            return Err("--hold-attempts is 1 to 100".into());
        }
        for (name, s) in [("seat-skew", self.seat_skew), ("date-skew", self.date_skew)] {
            if !(0.0..=10.0).contains(&s) {
                return Err(format!("--{name} is 0 to 10 (got {s})"));
            }
        }
        Ok(())
    }
}

/// How long a run has been paused: the time the clock of the run (elapsed,
/// remaining, the plan) does not count. Told the moments by its caller, so that
/// it is tested without waiting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PauseClock {
    total: Duration,
    since: Option<Instant>,
}

impl PauseClock {
    /// Pauses (`true`) or resumes at `now`; a repeated call changes nothing.
    pub fn set(&mut self, paused: bool, now: Instant) {
        match (paused, self.since) {
            (true, None) => self.since = Some(now),
            (false, Some(t)) => {
                self.total += now.saturating_duration_since(t);
                self.since = None;
            }
            _ => {}
        }
    }

    /// Time spent paused up to `now`, the current pause included.
    pub fn paused_for(&self, now: Instant) -> Duration {
        self.total
            + self
                .since
                .map_or(Duration::ZERO, |t| now.saturating_duration_since(t))
    }
}

/// The run's switches that every user watches.
pub struct Control {
    stop: watch::Sender<bool>,
    pause: watch::Sender<bool>,
    pause_clock: std::sync::Mutex<PauseClock>,
    next_attempt: AtomicU64,
}

impl Default for Control {
    fn default() -> Self {
        Control {
            stop: watch::channel(false).0,
            pause: watch::channel(false).0,
            pause_clock: std::sync::Mutex::new(PauseClock::default()),
            next_attempt: AtomicU64::new(1),
        }
    }
}

impl Control {
    /// Asks every user to stop at their next step (operations in flight finish).
    pub fn stop(&self) {
        self.stop.send_replace(true);
    }

    /// Whether the run is stopping.
    pub fn is_stopping(&self) -> bool {
        *self.stop.borrow()
    }

    /// Pauses or resumes every user (at their next step), and the run's clock.
    pub fn set_paused(&self, paused: bool) {
        self.set_paused_at(paused, Instant::now());
    }

    /// [`Control::set_paused`] at the moment `now`.
    pub fn set_paused_at(&self, paused: bool, now: Instant) {
        self.pause_clock
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .set(paused, now);
        self.pause.send_replace(paused);
    }

    /// Time the run has spent paused up to `now`.
    pub fn paused_for(&self, now: Instant) -> Duration {
        self.pause_clock
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .paused_for(now)
    }

    /// Whether users are paused.
    pub fn is_paused(&self) -> bool {
        *self.pause.borrow()
    }

    /// Resolves when the run stops.
    pub async fn stopped(&self) {
        let mut rx = self.stop.subscribe();
        let _ = rx.wait_for(|s| *s).await;
    }
}

/// What every user of a run shares.
pub struct Ctx<T> {
    /// The target.
    pub target: Arc<T>,
    /// Where events go.
    pub events: Sender<Event>,
    /// How users behave.
    pub behaviour: Behaviour,
    /// The concert users book.
    pub concert: i64,
    /// The run's switches.
    pub control: Arc<Control>,
}

/// Why a step did not happen.
enum Halt {
    /// The run is stopping.
    Stop,
}

/// How many times an on-sale user takes a place before giving up on an
/// answer (a place lapses when the user's requests took too long).
pub const ONSALE_ROUNDS: u32 = 3;

/// The first pause after a failed visit, before jitter.
pub const BACKOFF_BASE: Duration = Duration::from_millis(250);

/// The longest pause after failed visits.
pub const BACKOFF_MAX: Duration = Duration::from_secs(8);

/// The pause after `failures` failed visits in a row (1 or more), with `jitter`
/// in 0..1: a random point in the upper half of `BACKOFF_BASE * 2^(failures-1)`,
/// capped at [`BACKOFF_MAX`].
pub fn backoff(failures: u32, jitter: f64) -> Duration {
    let exp = failures.saturating_sub(1).min(16);
    let ceiling = BACKOFF_BASE.saturating_mul(1 << exp).min(BACKOFF_MAX);
    ceiling.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
}

/// Milliseconds since the epoch, now.
pub fn now_ms() -> i64 {
    crate::now_ms()
}

/// A random generator for one visit, from the run's seed, the slot and the visit
/// number: the same seed gives every visit the same choices.
pub fn visit_rng(seed: u64, slot: usize, visit: u64) -> Xoshiro256PlusPlus {
    let mut x = seed ^ 0x9E37_79B9_7F4A_7C15;
    for v in [slot as u64, visit] {
        x = splitmix(x ^ v.wrapping_mul(0xBF58_476D_1CE4_E5B9));
    }
    Xoshiro256PlusPlus::seed_from_u64(x)
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Picks an index of `weights`' non-zero entries with probability proportional to
/// its weight; `None` when every weight is zero.
pub fn pick_weighted(rng: &mut Xoshiro256PlusPlus, weights: &[f64]) -> Option<usize> {
    let total: f64 = weights.iter().sum();
    if total <= 0.0 {
        return None;
    }
    let mut x = rng.random::<f64>() * total;
    let mut last = None;
    for (i, w) in weights.iter().enumerate() {
        if *w <= 0.0 {
            continue;
        }
        last = Some(i);
        if x < *w {
            return Some(i);
        }
        x -= w;
    }
    last
}

/// The Zipf weight of rank `i` (0 first) with exponent `s`.
fn zipf(i: usize, s: f64) -> f64 {
    1.0 / ((i + 1) as f64).powf(s)
}

impl<T: Target> Ctx<T> {
    fn send(&self, ev: Event) {
        // The aggregator outlives every user; a send can only fail at the very end.
        let _ = self.events.send(ev);
    }

    fn fact(&self, f: Fact) {
        self.send(Event::Fact(f));
    }

    async fn timed<R>(
        &self,
        op: Op,
        seat: Option<(i64, u16)>,
        fut: impl std::future::Future<Output = OpResult<R>>,
    ) -> OpResult<R> {
        let t0 = Instant::now();
        let r = fut.await;
        let latency_us = t0.elapsed().as_micros() as u64;
        let class = match &r {
            Ok(_) => OpClass::Ok,
            Err(OpError::Refused(x)) => OpClass::Refused(*x),
            Err(OpError::Failed(f)) => {
                self.send(Event::Failure {
                    op,
                    kind: f.kind,
                    detail: f.detail.clone(),
                });
                OpClass::Failed(f.kind)
            }
        };
        self.send(Event::Op {
            op,
            latency_us,
            class,
            seat,
        });
        r
    }

    /// Waits `d` (or until the run stops), then until resumed if paused.
    async fn pause_for(&self, d: Duration) -> Result<(), Halt> {
        let mut stop = self.control.stop.subscribe();
        if *stop.borrow() {
            return Err(Halt::Stop);
        }
        if !d.is_zero() {
            tokio::select! {
                () = tokio::time::sleep(d) => {}
                _ = stop.wait_for(|s| *s) => return Err(Halt::Stop),
            }
        }
        if self.control.is_paused() {
            let mut pause = self.control.pause.subscribe();
            tokio::select! {
                _ = pause.wait_for(|p| !*p) => {}
                _ = stop.wait_for(|s| *s) => return Err(Halt::Stop),
            }
        }
        Ok(())
    }

    async fn think(&self, rng: &mut Xoshiro256PlusPlus) -> Result<(), Halt> {
        let b = &self.behaviour;
        let span = b.think_max.saturating_sub(b.think_min);
        let d = b.think_min + span.mul_f64(rng.random::<f64>());
        self.pause_for(d).await
    }

    /// Waits before the next visit after `failures` visits in a row ended in a
    /// failure (or a sold-out answer): exponential from [`BACKOFF_BASE`] up to
    /// [`BACKOFF_MAX`], with jitter in the upper half (so that users who failed
    /// together do not come back together). Returns early when the run stops.
    pub async fn back_off(&self, failures: u32, rng: &mut Xoshiro256PlusPlus) {
        let d = backoff(failures, rng.random::<f64>());
        let _ = self.pause_for(d).await;
    }

    /// Reports that the server asked to wait `d` before the next poll.
    fn paced(&self, d: Duration) {
        self.send(Event::PollAfter {
            ms: d.as_millis() as u64,
        });
    }

    /// Waits `d` before arriving; false when the run stopped first.
    pub async fn arrive(&self, d: Duration) -> bool {
        self.pause_for(d).await.is_ok()
    }

    fn attempt(&self, user: Uuid, write: Write) -> u64 {
        let id = self.control.next_attempt.fetch_add(1, Ordering::Relaxed);
        self.fact(Fact::Attempt { user, write, id });
        id
    }

    /// One visit, start to end. Returns how it ended.
    pub async fn visit(&self, slot: usize, rng: &mut Xoshiro256PlusPlus) -> Ending {
        match self.visit_inner(slot, rng).await {
            Ok(e) => e,
            Err(Halt::Stop) => Ending::Stopped,
        }
    }

    async fn visit_inner(&self, slot: usize, rng: &mut Xoshiro256PlusPlus) -> Result<Ending, Halt> {
        let b = self.behaviour.clone();
        let user = uuid::Builder::from_random_bytes(rng.random()).into_uuid();
        let Ok(user_id) = UserId::from_uuid(user) else {
            return Ok(Ending::Failed);
        };
        self.pause_for(Duration::ZERO).await?;
        let ticket = match self
            .timed(Op::Issue, None, self.target.issue(user_id, slot))
            .await
        {
            Ok(t) => t,
            Err(_) => return Ok(Ending::Failed),
        };
        self.fact(Fact::Issued {
            user,
            seq: ticket.seq,
        });

        // Wait in line.
        let abandon_after = rng
            .random_bool(b.p_abandon_queue)
            .then(|| rng.random_range(0..5u32));
        if let Err(end) = self.wait_in_line(&ticket, abandon_after).await? {
            return Ok(end);
        }

        // Admitted: find a seat.
        self.think(rng).await?;
        let (hold, hold_date) = match self.find_seat(&ticket, rng).await? {
            Ok(h) => h,
            Err(end) => return Ok(end),
        };
        self.fact(Fact::Held {
            user,
            ack: hold,
            received_at_ms: now_ms(),
        });

        // Walk away, cancel, or pay.
        self.think(rng).await?;
        let r = rng.random::<f64>();
        if r < b.p_abandon_hold {
            self.fact(Fact::LeftToExpire {
                reservation: hold.reservation,
            });
            return Ok(Ending::AbandonedHold);
        }
        if r < b.p_abandon_hold + b.p_cancel {
            let sent_at_ms = now_ms();
            let cancelled = self
                .timed(
                    Op::Cancel,
                    Some((hold.schedule, hold.seat)),
                    self.target.cancel(&ticket, hold.reservation),
                )
                .await;
            return Ok(match cancelled {
                Ok(()) => {
                    self.fact(Fact::Released {
                        reservation: hold.reservation,
                        sent_at_ms,
                    });
                    Ending::Cancelled
                }
                Err(OpError::Refused(_)) => Ending::Lapsed,
                Err(OpError::Failed(_)) => Ending::Failed,
            });
        }

        let (paid, pay_key) = match self
            .charge_and_pay(user, &ticket, &hold, rng, |_| Ending::Lapsed)
            .await
        {
            Ok(paid) => paid,
            Err(ending) => return Ok(ending),
        };

        // Checks the users make on the service: a retried payment replays the
        // first, and an ended token cannot hold again.
        if rng.random_bool(b.p_retry_pay) {
            let second = self
                .timed(
                    Op::PayRetry,
                    None,
                    self.target.pay(&ticket, hold.reservation, &pay_key),
                )
                .await;
            self.fact(Fact::Replayed {
                first: paid.payment,
                second: second.map(|a| a.payment).map_err(|e| e.to_string()),
            });
        }
        if rng.random_bool(b.p_probe) {
            let seat = if hold.seat > 1 {
                hold.seat - 1
            } else {
                hold.seat + 1
            };
            let probe = self
                .timed(
                    Op::Probe,
                    None,
                    self.target.hold(&ticket, self.concert, hold_date, seat),
                )
                .await;
            match probe {
                Err(OpError::Refused(Refusal::TokenEnded)) => self.fact(Fact::Probed {
                    user,
                    wrongly: None,
                }),
                Err(OpError::Failed(_)) => {}
                Ok(ack) => {
                    self.fact(Fact::Held {
                        user,
                        ack,
                        received_at_ms: now_ms(),
                    });
                    self.fact(Fact::Probed {
                        user,
                        wrongly: Some(format!("an ended token held seat {}", ack.seat)),
                    });
                }
                Err(OpError::Refused(r)) => self.fact(Fact::Probed {
                    user,
                    wrongly: Some(format!("refused as {} instead of token_ended", r.name())),
                }),
            }
        }
        Ok(Ending::Paid)
    }

    /// One user of the on-sale scenario, from sale open to a final answer:
    /// takes a token (retrying a failed request a few times, backing off),
    /// waits as the server asks, lists the dates and reads a seat map, holds a
    /// seat (another one of the map on a conflict, up to the behaviour's hold
    /// attempts, then a fresh look, `relooks` times), tops up and pays. Told
    /// `sold_out` by the server, or finding no free seat anywhere after its tries
    /// and re-looks, it ends with [`Ending::SoldOut`]. Nobody abandons.
    ///
    /// A user whose place lapses before an answer (admitted, but its requests
    /// took longer than the show-up grace or the session) comes back for a new
    /// place, as a person would, up to [`ONSALE_ROUNDS`] times in all; each
    /// round is a new user id to the service.
    pub async fn onsale_visit(
        &self,
        slot: usize,
        rng: &mut Xoshiro256PlusPlus,
        relooks: u32,
    ) -> Ending {
        for round in 1..=ONSALE_ROUNDS {
            match self.onsale_round(slot, rng, relooks).await {
                Ok(Ending::Lapsed) if round < ONSALE_ROUNDS => {}
                Ok(e) => return e,
                Err(Halt::Stop) => return Ending::Stopped,
            }
        }
        Ending::Lapsed
    }

    async fn onsale_round(
        &self,
        slot: usize,
        rng: &mut Xoshiro256PlusPlus,
        relooks: u32,
    ) -> Result<Ending, Halt> {
        let user = uuid::Builder::from_random_bytes(rng.random()).into_uuid();
        let Ok(user_id) = UserId::from_uuid(user) else {
            return Ok(Ending::Failed);
        };
        let mut failures = 0u32;
        let ticket = loop {
            self.pause_for(Duration::ZERO).await?;
            match self
                .timed(Op::Issue, None, self.target.issue(user_id, slot))
                .await
            {
                Ok(t) => break t,
                Err(OpError::Refused(Refusal::SoldOut)) => return Ok(Ending::SoldOut),
                Err(OpError::Refused(_)) => return Ok(Ending::Failed),
                Err(OpError::Failed(_)) => {
                    failures += 1;
                    if failures >= 5 {
                        return Ok(Ending::Failed);
                    }
                    let d = backoff(failures, rng.random::<f64>());
                    self.pause_for(d).await?;
                }
            }
        };
        self.fact(Fact::Issued {
            user,
            seq: ticket.seq,
        });
        if let Err(end) = self.wait_in_line(&ticket, None).await? {
            return Ok(end);
        }
        let admitted = Instant::now();
        self.think(rng).await?;

        // Look, hold; on conflicts another seat, then a fresh look.
        let mut hold = None;
        'looks: for look in 0..=relooks {
            if look > 0 {
                // A fresh look a moment later: seats held by others may have
                // come back.
                self.think_short(rng).await?;
            }
            let dates = match self
                .timed(Op::Dates, None, self.target.dates(&ticket, self.concert))
                .await
            {
                Ok(d) => d,
                Err(e) => return Ok(ending_of(&e)),
            };
            let mut dates: Vec<DateInfo> = dates.into_iter().filter(|d| d.n_free > 0).collect();
            let mut n_tries = 0u32;
            while !dates.is_empty() && n_tries < self.behaviour.max_hold_attempts {
                let weights: Vec<f64> = (0..dates.len())
                    .map(|i| zipf(i, self.behaviour.date_skew))
                    .collect();
                let Some(i) = pick_weighted(rng, &weights) else {
                    break;
                };
                let date = dates.remove(i);
                let mut seats = match self
                    .timed(
                        Op::Seats,
                        None,
                        self.target.seats(&ticket, self.concert, date.date),
                    )
                    .await
                {
                    Ok(s) => s,
                    Err(OpError::Refused(Refusal::UnknownDate | Refusal::DateClosed)) => continue,
                    Err(e) => return Ok(ending_of(&e)),
                };
                while n_tries < self.behaviour.max_hold_attempts {
                    let weights: Vec<f64> = seats
                        .iter()
                        .enumerate()
                        .map(|(i, s)| {
                            if *s == SeatView::Free {
                                zipf(i, self.behaviour.seat_skew)
                            } else {
                                0.0
                            }
                        })
                        .collect();
                    let Some(k) = pick_weighted(rng, &weights) else {
                        break; // Nothing free on this map: another date.
                    };
                    let seat = (k + 1) as u16;
                    n_tries += 1;
                    match self
                        .timed(
                            Op::Hold,
                            Some((date.schedule, seat)),
                            self.target.hold(&ticket, self.concert, date.date, seat),
                        )
                        .await
                    {
                        Ok(ack) => {
                            hold = Some(ack);
                            break 'looks;
                        }
                        Err(OpError::Refused(Refusal::SeatTaken)) => seats[k] = SeatView::Held,
                        Err(OpError::Refused(Refusal::UnknownDate | Refusal::DateClosed)) => break,
                        Err(e) => return Ok(ending_of(&e)),
                    }
                }
            }
        }
        let Some(hold) = hold else {
            // No free seat on any date after every try and re-look: that is
            // the answer this user saw.
            return Ok(Ending::SoldOut);
        };
        self.fact(Fact::Held {
            user,
            ack: hold,
            received_at_ms: now_ms(),
        });
        self.think(rng).await?;

        let refused = |r| ending_of(&OpError::Refused(r));
        match self
            .charge_and_pay(user, &ticket, &hold, rng, refused)
            .await
        {
            Ok(_) => {
                self.send(Event::Purchase {
                    latency_us: admitted.elapsed().as_micros() as u64,
                });
                Ok(Ending::Paid)
            }
            Err(ending) => Ok(ending),
        }
    }

    /// Tops the wallet up by the hold's price and pays the hold, each announced
    /// before it is sent and recorded when answered. Returns the payment and its
    /// idempotency key, or how the visit ends: a refused charge or any failure ends
    /// it `Failed`, a refused payment as `refused` says.
    async fn charge_and_pay(
        &self,
        user: Uuid,
        ticket: &Ticket,
        hold: &HoldAck,
        rng: &mut Xoshiro256PlusPlus,
        refused: impl FnOnce(Refusal) -> Ending,
    ) -> Result<(PayAck, String), Ending> {
        let charge_key = format!("c-{}", Uuid::from_u128(rng.random()).simple());
        let id = self.attempt(user, Write::Charge { amount: hold.price });
        match self
            .timed(
                Op::Charge,
                None,
                self.target.charge(ticket, hold.price, &charge_key),
            )
            .await
        {
            Ok(ack) => self.fact(Fact::Charged {
                id,
                user,
                amount: hold.price,
                replayed: ack.replayed,
            }),
            Err(OpError::Refused(_)) => {
                self.fact(Fact::AttemptRefused { id });
                return Err(Ending::Failed);
            }
            Err(OpError::Failed(_)) => return Err(Ending::Failed),
        }
        let pay_key = format!("p-{}", Uuid::from_u128(rng.random()).simple());
        let id = self.attempt(
            user,
            Write::Pay {
                reservation: hold.reservation,
                amount: hold.price,
            },
        );
        match self
            .timed(
                Op::Pay,
                Some((hold.schedule, hold.seat)),
                self.target.pay(ticket, hold.reservation, &pay_key),
            )
            .await
        {
            Ok(ack) => {
                self.fact(Fact::Paid { id, user, ack });
                Ok((ack, pay_key))
            }
            Err(OpError::Refused(r)) => {
                self.fact(Fact::AttemptRefused { id });
                Err(refused(r))
            }
            Err(OpError::Failed(_)) => Err(Ending::Failed),
        }
    }

    /// Polls until admitted, waiting between two polls as long as the server
    /// asks (`poll_after`), else the configured interval. `Err` is how the visit
    /// ends without being admitted: told sold out, lapsed, failed, or abandoned
    /// after `abandon_after` polls.
    async fn wait_in_line(
        &self,
        ticket: &Ticket,
        abandon_after: Option<u32>,
    ) -> Result<Result<(), Ending>, Halt> {
        let waiting = matches!(ticket.answer, Some(QueueState::Waiting { .. }));
        if waiting
            && abandon_after.is_none()
            && self.target.pushes()
            && let Some(end) = self.wait_pushed(ticket).await?
        {
            return Ok(end);
        }
        self.poll_in_line(ticket, abandon_after).await
    }

    /// Waits on the pushed status stream until a final status. `None` when the
    /// stream broke or ended without one: the caller polls instead.
    async fn wait_pushed(&self, ticket: &Ticket) -> Result<Option<Result<(), Ending>>, Halt> {
        let mut stop = self.control.stop.subscribe();
        if *stop.borrow() {
            return Err(Halt::Stop);
        }
        let (mut state, mut stream) =
            match self.timed(Op::Watch, None, self.target.watch(ticket)).await {
                Ok(first) => first,
                Err(OpError::Refused(Refusal::SoldOut)) => return Ok(Some(Err(Ending::SoldOut))),
                Err(OpError::Refused(_)) => return Ok(Some(Err(Ending::Lapsed))),
                Err(OpError::Failed(_)) => return Ok(None),
            };
        loop {
            match state {
                QueueState::Active => {
                    self.fact(Fact::ToldAdmitted {
                        seq: ticket.seq,
                        received_at_ms: now_ms(),
                    });
                    return Ok(Some(Ok(())));
                }
                QueueState::SoldOut => return Ok(Some(Err(Ending::SoldOut))),
                QueueState::Expired | QueueState::Done => return Ok(Some(Err(Ending::Lapsed))),
                QueueState::Waiting { poll_after, .. } => {
                    if let Some(d) = poll_after {
                        self.paced(d);
                    }
                }
            }
            let next = tokio::select! {
                n = stream.next() => n,
                _ = stop.wait_for(|s| *s) => return Err(Halt::Stop),
            };
            state = match next {
                Ok(Some(s)) => s,
                Ok(None) | Err(_) => return Ok(None),
            };
        }
    }

    /// Polls until admitted (see [`Self::wait_in_line`]).
    async fn poll_in_line(
        &self,
        ticket: &Ticket,
        abandon_after: Option<u32>,
    ) -> Result<Result<(), Ending>, Halt> {
        let b = &self.behaviour;
        let mut n_polls = 0u32;
        let mut n_failures = 0u32;
        let mut wait = match ticket.answer {
            Some(QueueState::SoldOut) => return Ok(Err(Ending::SoldOut)),
            Some(QueueState::Waiting {
                poll_after: Some(d),
                ..
            }) => {
                self.paced(d);
                d
            }
            _ => Duration::ZERO,
        };
        loop {
            self.pause_for(wait).await?;
            let sent_at_ms = now_ms();
            match self.timed(Op::Poll, None, self.target.status(ticket)).await {
                Ok(QueueState::Active) => {
                    self.fact(Fact::ToldAdmitted {
                        seq: ticket.seq,
                        received_at_ms: now_ms(),
                    });
                    return Ok(Ok(()));
                }
                Ok(QueueState::Waiting { poll_after, .. }) => {
                    self.fact(Fact::ToldWaiting {
                        seq: ticket.seq,
                        sent_at_ms,
                    });
                    if abandon_after.is_some_and(|k| n_polls >= k) {
                        return Ok(Err(Ending::AbandonedQueue));
                    }
                    if let Some(d) = poll_after {
                        self.paced(d);
                    }
                    wait = poll_after.unwrap_or(b.poll_every);
                }
                Ok(QueueState::SoldOut) | Err(OpError::Refused(Refusal::SoldOut)) => {
                    return Ok(Err(Ending::SoldOut));
                }
                Ok(QueueState::Expired | QueueState::Done) | Err(OpError::Refused(_)) => {
                    return Ok(Err(Ending::Lapsed));
                }
                Err(OpError::Failed(_)) => {
                    n_failures += 1;
                    if n_failures >= 5 {
                        return Ok(Err(Ending::Failed));
                    }
                    wait = b.poll_every;
                }
            }
            n_polls += 1;
        }
    }

    /// Lists dates, reads seat maps and tries seats until one is held. `Err` is
    /// how the visit ends without one.
    async fn find_seat(
        &self,
        ticket: &Ticket,
        rng: &mut Xoshiro256PlusPlus,
    ) -> Result<Result<(crate::target::HoldAck, chrono::NaiveDate), Ending>, Halt> {
        let b = &self.behaviour;
        let mut dates: Vec<DateInfo> = Vec::new();
        let mut map: Option<(DateInfo, Vec<SeatView>)> = None;
        let mut n_tries = 0u32;
        while n_tries < b.max_hold_attempts {
            if map.is_none() {
                if dates.is_empty() {
                    match self
                        .timed(Op::Dates, None, self.target.dates(ticket, self.concert))
                        .await
                    {
                        Ok(d) => dates = d,
                        Err(e) => return Ok(Err(ending_of(&e))),
                    }
                    dates.retain(|d| d.n_free > 0);
                    if dates.is_empty() {
                        return Ok(Err(Ending::NoSeat));
                    }
                    self.think(rng).await?;
                }
                let weights: Vec<f64> = (0..dates.len()).map(|i| zipf(i, b.date_skew)).collect();
                let Some(i) = pick_weighted(rng, &weights) else {
                    return Ok(Err(Ending::NoSeat));
                };
                let date = dates[i];
                match self
                    .timed(
                        Op::Seats,
                        None,
                        self.target.seats(ticket, self.concert, date.date),
                    )
                    .await
                {
                    Ok(seats) => map = Some((date, seats)),
                    Err(OpError::Refused(Refusal::UnknownDate | Refusal::DateClosed)) => {
                        dates.remove(i);
                        continue;
                    }
                    Err(e) => return Ok(Err(ending_of(&e))),
                }
                self.think(rng).await?;
            }
            let Some((date, seats)) = map.as_mut() else {
                continue;
            };
            let weights: Vec<f64> = seats
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    if *s == SeatView::Free {
                        zipf(i, b.seat_skew)
                    } else {
                        0.0
                    }
                })
                .collect();
            let Some(i) = pick_weighted(rng, &weights) else {
                // Nothing free on this map: another date.
                let gone = date.schedule;
                dates.retain(|d| d.schedule != gone);
                map = None;
                continue;
            };
            let seat = (i + 1) as u16;
            n_tries += 1;
            let date_v = *date;
            match self
                .timed(
                    Op::Hold,
                    Some((date_v.schedule, seat)),
                    self.target.hold(ticket, self.concert, date_v.date, seat),
                )
                .await
            {
                Ok(ack) => return Ok(Ok((ack, date_v.date))),
                Err(OpError::Refused(Refusal::SeatTaken)) => {
                    // Someone was faster: pick another seat from the same map.
                    seats[i] = SeatView::Held;
                }
                Err(OpError::Refused(Refusal::UnknownDate | Refusal::DateClosed)) => {
                    dates.retain(|d| d.schedule != date_v.schedule);
                    map = None;
                }
                Err(e) => return Ok(Err(ending_of(&e))),
            }
            self.think_short(rng).await?;
        }
        Ok(Err(Ending::NoSeat))
    }

    /// A short pause after a conflict: a tenth of a think time.
    async fn think_short(&self, rng: &mut Xoshiro256PlusPlus) -> Result<(), Halt> {
        let b = &self.behaviour;
        let d = b.think_min.mul_f64(0.1)
            + b.think_max
                .saturating_sub(b.think_min)
                .mul_f64(0.1 * rng.random::<f64>());
        self.pause_for(d).await
    }
}

/// How a visit ends after an operation that did not succeed.
fn ending_of(e: &OpError) -> Ending {
    match e {
        OpError::Refused(Refusal::SoldOut) => Ending::SoldOut,
        OpError::Refused(
            Refusal::TokenExpired
            | Refusal::TokenEnded
            | Refusal::NotAdmitted
            | Refusal::HoldExpired,
        ) => Ending::Lapsed,
        OpError::Refused(_) => Ending::NoSeat,
        OpError::Failed(_) => Ending::Failed,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_pause_clock_counts_only_paused_time() {
        let t0 = std::time::Instant::now();
        let at = |ms: u64| t0 + std::time::Duration::from_millis(ms);
        let c = super::Control::default();
        assert_eq!(c.paused_for(at(5_000)), std::time::Duration::ZERO);
        c.set_paused_at(true, at(1_000));
        c.set_paused_at(true, at(1_500));
        assert_eq!(c.paused_for(at(3_000)).as_millis(), 2_000, "still paused");
        c.set_paused_at(false, at(4_000));
        assert_eq!(c.paused_for(at(9_000)).as_millis(), 3_000, "resumed at 4 s");
        c.set_paused_at(true, at(10_000));
        c.set_paused_at(false, at(10_250));
        assert_eq!(c.paused_for(at(20_000)).as_millis(), 3_250);
        assert!(!c.is_paused());
    }

    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_choices() {
        let a: Vec<u64> = (0..5).map(|_| visit_rng(7, 3, 1).random()).collect();
        let b: Vec<u64> = (0..5).map(|_| visit_rng(7, 3, 1).random()).collect();
        assert_eq!(a, b);
        assert_ne!(
            visit_rng(7, 3, 1).random::<u64>(),
            visit_rng(7, 3, 2).random::<u64>()
        );
        assert_ne!(
            visit_rng(7, 3, 1).random::<u64>(),
            visit_rng(8, 3, 1).random::<u64>()
        );
    }

    #[test]
    fn weighted_picks_follow_the_weights_and_skip_zeros() {
        let mut rng = visit_rng(1, 0, 0);
        let weights: Vec<f64> = (0..50).map(|i| zipf(i, 1.2)).collect();
        let mut counts = [0u32; 50];
        for _ in 0..20_000 {
            counts[pick_weighted(&mut rng, &weights).unwrap()] += 1;
        }
        // Seat 1 is about 2^1.2 = 2.3 times as popular as seat 2, and far more
        // than seat 50.
        let ratio = f64::from(counts[0]) / f64::from(counts[1]);
        assert!((1.9..2.8).contains(&ratio), "{ratio}");
        assert!(counts[0] > 20 * counts[49]);
        assert_eq!(pick_weighted(&mut rng, &[0.0, 0.0]), None);
        for _ in 0..100 {
            assert_eq!(pick_weighted(&mut rng, &[0.0, 3.0, 0.0]), Some(1));
        }
    }

    #[test]
    fn failed_visits_back_off_exponentially_with_jitter_up_to_a_cap() {
        assert_eq!(backoff(1, 0.0), Duration::from_millis(125));
        assert_eq!(backoff(1, 1.0), Duration::from_millis(250));
        assert_eq!(backoff(2, 1.0), Duration::from_millis(500));
        assert_eq!(backoff(4, 0.5), Duration::from_millis(1_500));
        assert_eq!(backoff(30, 1.0), BACKOFF_MAX);
        assert_eq!(backoff(u32::MAX, 0.0), BACKOFF_MAX / 2);
        let mut rng = visit_rng(3, 0, 0);
        let spread: std::collections::BTreeSet<Duration> =
            (0..50).map(|_| backoff(3, rng.random::<f64>())).collect();
        assert!(spread.len() > 40, "jitter spreads the pauses");
        assert!(
            spread
                .iter()
                .all(|d| (500..=1_000).contains(&d.as_millis()))
        );
    }

    #[test]
    fn behaviour_bounds() {
        assert!(Behaviour::default().validate().is_ok());
        let bad = Behaviour {
            p_cancel: 1.5,
            ..Behaviour::default()
        };
        assert!(bad.validate().unwrap_err().contains("--cancel"));
        let bad = Behaviour {
            think_min: Duration::from_secs(2),
            think_max: Duration::from_secs(1),
            ..Behaviour::default()
        };
        assert!(bad.validate().is_err());
    }
}
