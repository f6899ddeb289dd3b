//! The reference model: the rules of DESIGN.md and the contracts of
//! `booking_core::ports`, written small, predicting every answer.

use super::*;

// ---------------------------------------------------------------------------------
// The reference model

/// A user's last payment request: the session, the reservations, the key.
pub(super) type LastPay = (u64, Vec<usize>, Option<u8>);

/// One issued place, as the rules of the waiting room describe it.
#[derive(Debug, Clone)]
pub(super) struct EntryM {
    pub(super) user: usize,
    pub(super) token: String,
    pub(super) claims: TokenClaims,
    pub(super) state: EntryState,
    pub(super) admitted_at: Option<i64>,
    pub(super) seen_at: Option<i64>,
    pub(super) expires_at: Option<i64>,
}

impl EntryM {
    /// Admitted, not ended, not lapsed.
    pub(super) fn active_at(&self, now: i64) -> bool {
        self.state == EntryState::Live && self.expires_at.is_some_and(|t| now < t)
    }

    /// Still holds a place: waiting, or admitted and not lapsed.
    pub(super) fn live_at(&self, now: i64) -> bool {
        self.state == EntryState::Live && self.expires_at.is_none_or(|t| now < t)
    }
}

/// One reservation. `state` is `Held`, `Paid`, `Cancelled`, or `Expired` once a
/// sweep recorded it; a `Held` one past `expires_at` is expired all the same.
#[derive(Debug, Clone)]
pub(super) struct ResM {
    pub(super) id: ReservationId,
    pub(super) user: usize,
    pub(super) sched: usize,
    pub(super) seat: u16,
    pub(super) price: i64,
    pub(super) expires_at: i64,
    pub(super) state: HoldState,
}

/// One row of a user's ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct RowM {
    pub(super) kind: LedgerKind,
    pub(super) amount: i64,
    pub(super) balance_after: i64,
    pub(super) at: i64,
    pub(super) key: Option<IdempotencyKey>,
}

/// What the gate must answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum GateM {
    Pass { until: i64 },
    Waiting { position: u64 },
    SoldOut,
    Expired,
    Ended,
}

#[derive(Debug, Default)]
pub(super) struct Model {
    pub(super) now: i64,
    pub(super) paused: bool,
    pub(super) serving: u64,
    pub(super) last_tick_at: Option<i64>,
    /// Index `seq - 1`.
    pub(super) entries: Vec<EntryM>,
    /// Per user: what the gate last let through.
    pub(super) admitted: Vec<Option<Admitted>>,
    /// In the order they were taken.
    pub(super) reservations: Vec<ResM>,
    /// `(schedule, seat)` -> the paid reservation.
    pub(super) sold: HashMap<(usize, u16), usize>,
    pub(super) balance: Vec<i64>,
    pub(super) ledger: Vec<Vec<RowM>>,
    /// `(user, key)` -> the first charge's ledger row (amount and receipt).
    pub(super) charge_keys: HashMap<(usize, u8), LedgerEntry>,
    /// `(user, key)` -> the payment made with it.
    pub(super) pay_keys: HashMap<(usize, u8), Payment>,
    pub(super) payments: Vec<Payment>,
    pub(super) last_charge: Vec<Option<(i64, Option<u8>)>>,
    /// The last payment request: token sequence, reservation index, key.
    pub(super) last_pay: Vec<Option<LastPay>>,
    /// How often each outcome happened (for the coverage test).
    pub(super) seen: BTreeMap<String, u32>,
    /// The same outcomes, in the order they happened (to compare two stores).
    pub(super) trace: Vec<String>,
}

impl Model {
    pub(super) fn new() -> Model {
        Model {
            now: T0,
            admitted: vec![None; N_USERS],
            balance: vec![0; N_USERS],
            ledger: vec![Vec::new(); N_USERS],
            last_charge: vec![None; N_USERS],
            last_pay: vec![None; N_USERS],
            ..Model::default()
        }
    }

    pub(super) fn note(&mut self, what: impl Into<String>) {
        let what = what.into();
        self.trace.push(what.clone());
        *self.seen.entry(what).or_default() += 1;
    }

    pub(super) fn entry(&self, seq: u64) -> &EntryM {
        &self.entries[seq as usize - 1]
    }

    pub(super) fn entry_mut(&mut self, seq: u64) -> &mut EntryM {
        &mut self.entries[seq as usize - 1]
    }

    /// The user's places, oldest first.
    pub(super) fn seqs_of(&self, user: usize) -> Vec<u64> {
        (1..=self.entries.len() as u64)
            .filter(|s| self.entry(*s).user == user)
            .collect()
    }

    /// The user's newest token, or with `stale` the one before (if any).
    pub(super) fn token_seq(&self, user: usize, stale: bool) -> Option<u64> {
        let seqs = self.seqs_of(user);
        match seqs.len() {
            0 => None,
            n if stale && n >= 2 => Some(seqs[n - 2]),
            n => Some(seqs[n - 1]),
        }
    }

    /// The `who`-th (modulo) of the users for whom `can` holds.
    pub(super) fn pick_user(&self, who: usize, can: impl Fn(usize) -> bool) -> Option<usize> {
        let users: Vec<usize> = (0..N_USERS).filter(|u| can(*u)).collect();
        (!users.is_empty()).then(|| users[who % users.len()])
    }

    /// Whether the user's newest place holds an active session.
    pub(super) fn is_active(&self, user: usize) -> bool {
        self.token_seq(user, false)
            .is_some_and(|s| self.entry(s).active_at(self.now))
    }

    pub(super) fn has_reservation(&self, user: usize) -> bool {
        self.reservations.iter().any(|r| r.user == user)
    }

    pub(super) fn n_active(&self) -> u64 {
        self.entries
            .iter()
            .filter(|e| e.active_at(self.now))
            .count() as u64
    }

    pub(super) fn n_waiting(&self) -> u64 {
        self.entries.len() as u64 - self.serving
    }

    /// What a status poll of `seq` must answer (ETA left out).
    pub(super) fn status(&self, seq: u64) -> QueueStatus {
        let e = self.entry(seq);
        match (e.state, e.expires_at) {
            (EntryState::Done, _) => QueueStatus::Done,
            (EntryState::Expired, _) => QueueStatus::Expired,
            (EntryState::Live, None) if self.sold_out() => QueueStatus::SoldOut,
            (EntryState::Live, None) => QueueStatus::Waiting {
                position: seq - self.serving,
                eta: None,
                poll_after: Duration::ZERO,
            },
            (EntryState::Live, Some(t)) if self.now < t => QueueStatus::Active { until: ts(t) },
            (EntryState::Live, Some(_)) => QueueStatus::Expired,
        }
    }

    /// What the gate must answer for `seq` now, applying the show-up it causes: the
    /// first use of an admitted token starts a session of the session TTL.
    pub(super) fn gate(&mut self, seq: u64) -> GateM {
        let (now, serving, sold_out) = (self.now, self.serving, self.sold_out());
        let e = self.entry_mut(seq);
        match (e.state, e.expires_at) {
            (EntryState::Done, _) => GateM::Ended,
            (EntryState::Expired, _) => GateM::Expired,
            (EntryState::Live, None) if sold_out => GateM::SoldOut,
            (EntryState::Live, None) => GateM::Waiting {
                position: seq - serving,
            },
            (EntryState::Live, Some(t)) if now >= t => GateM::Expired,
            (EntryState::Live, Some(t)) if e.seen_at.is_some() => GateM::Pass { until: t },
            (EntryState::Live, Some(_)) => {
                e.seen_at = Some(now);
                e.expires_at = Some(now + SESSION_TTL_MS);
                GateM::Pass {
                    until: now + SESSION_TTL_MS,
                }
            }
        }
    }

    /// The effective state of a reservation now (lazy expiry).
    pub(super) fn res_state(&self, r: usize) -> HoldState {
        let res = &self.reservations[r];
        match res.state {
            HoldState::Held if self.now >= res.expires_at => HoldState::Expired,
            s => s,
        }
    }

    pub(super) fn res_live(&self, r: usize) -> bool {
        self.res_state(r) == HoldState::Held
    }

    pub(super) fn live_holds_of(&self, user: usize) -> usize {
        (0..self.reservations.len())
            .filter(|r| self.reservations[*r].user == user && self.res_live(*r))
            .count()
    }

    /// The live hold on a seat, if any.
    pub(super) fn live_hold_on(&self, sched: usize, seat: u16) -> Option<usize> {
        (0..self.reservations.len()).find(|r| {
            let res = &self.reservations[*r];
            res.sched == sched && res.seat == seat && self.res_live(*r)
        })
    }

    pub(super) fn seat_taken(&self, sched: usize, seat: u16) -> bool {
        self.sold.contains_key(&(sched, seat)) || self.live_hold_on(sched, seat).is_some()
    }

    pub(super) fn is_open(&self, sched: usize) -> bool {
        self.now < T0 + STARTS_MS[sched]
    }

    /// The sale is sold out: some date is bookable, and every seat of every
    /// bookable date is sold or under a live hold.
    pub(super) fn sold_out(&self) -> bool {
        let open: Vec<usize> = (0..STARTS_MS.len()).filter(|d| self.is_open(*d)).collect();
        !open.is_empty()
            && open
                .iter()
                .all(|d| (1..=N_SEATS).all(|seat| self.seat_taken(*d, seat)))
    }

    /// Every refusal that applies to a hold by `user` with `adm`.
    pub(super) fn hold_refusals(
        &self,
        user: usize,
        adm: &Admitted,
        sched: usize,
        seat: u16,
    ) -> Vec<HoldError> {
        let mut why = Vec::new();
        let exists = sched < STARTS_MS.len();
        if !exists {
            why.push(HoldError::UnknownSchedule);
        } else if !self.is_open(sched) {
            why.push(HoldError::Closed);
        }
        if exists && seat > N_SEATS {
            why.push(HoldError::NoSuchSeat {
                seat: seat_no(seat),
                count: SeatCount::new(N_SEATS.into()).unwrap(),
            });
        }
        if !self.entry(adm.seq().get()).active_at(self.now) {
            why.push(HoldError::SessionEnded);
        }
        if self.live_holds_of(user) >= MAX_LIVE_HOLDS as usize {
            why.push(HoldError::HoldLimit {
                max: MAX_LIVE_HOLDS,
            });
        }
        if exists && seat <= N_SEATS && self.seat_taken(sched, seat) {
            why.push(HoldError::SeatTaken(seat_no(seat)));
        }
        if exists && self.is_open(sched) && seat <= N_SEATS && self.sold_out() {
            why.push(HoldError::SoldOut);
        }
        why
    }

    /// A reservation to act on: the user's own, or with `foreign` someone else's
    /// (if there is one); a live one when `live_only`, else a paid, cancelled or
    /// lapsed one (when there is one).
    pub(super) fn pick_reservation(
        &self,
        user: usize,
        pick: usize,
        foreign: bool,
        live_only: bool,
    ) -> Option<usize> {
        let (others, own): (Vec<usize>, Vec<usize>) =
            (0..self.reservations.len()).partition(|r| self.reservations[*r].user != user);
        let mine = if foreign && !others.is_empty() {
            others
        } else {
            own
        };
        let (live, done): (Vec<usize>, Vec<usize>) = mine.iter().partition(|r| self.res_live(**r));
        let candidates = match (live_only, live.is_empty(), done.is_empty()) {
            (true, false, _) => live,
            (false, _, false) => done,
            _ => mine,
        };
        (!candidates.is_empty()).then(|| candidates[pick % candidates.len()])
    }

    /// The seat a hold is most likely to get: free, on an open schedule.
    pub(super) fn most_holdable_seat(&self) -> (usize, u16) {
        let seats = || (0..STARTS_MS.len()).flat_map(|d| (1..=N_SEATS).map(move |s| (d, s)));
        seats()
            .find(|(d, s)| self.is_open(*d) && !self.seat_taken(*d, *s))
            .or_else(|| seats().find(|(d, _)| self.is_open(*d)))
            .unwrap_or((1, 1))
    }
}
