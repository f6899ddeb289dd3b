//! The simulator's own record of what each virtual user was told: places,
//! admissions, holds, acknowledged charges and payments, replays and probes. The
//! auditor compares it with the database.

use std::collections::{HashMap, HashSet};

use uuid::Uuid;

use crate::events::{Fact, Write};
use crate::target::{HoldAck, PayAck};

/// What the users were told, gathered by the aggregator.
#[derive(Debug, Clone, Default)]
pub struct Record {
    /// The user of each place issued.
    pub issued: HashMap<u64, Uuid>,
    /// For each place, when the last poll that answered "waiting" was sent.
    pub last_waiting_sent_ms: HashMap<u64, i64>,
    /// For each place, when the first answer "admitted" arrived.
    pub first_admitted_ms: HashMap<u64, i64>,
    /// Every acknowledged hold, with its user and when its answer arrived.
    pub holds: Vec<(Uuid, HoldAck, i64)>,
    /// Holds whose cancel was acknowledged, and when the cancel was sent.
    pub released_ms: HashMap<Uuid, i64>,
    /// Holds their users walked away from.
    pub left_to_expire: HashSet<Uuid>,
    /// Writes sent and not settled (yet): their outcome is unknown.
    pub pending: HashMap<u64, (Uuid, Write)>,
    /// Acknowledged charges (first answers, not replays) per user, summed.
    pub charged: HashMap<Uuid, i64>,
    /// Acknowledged payments (first answers), with their users.
    pub payments: Vec<(Uuid, PayAck)>,
    /// Payment retries: the first payment and what the retry answered.
    pub replays: Vec<(Uuid, Result<Uuid, String>)>,
    /// Holds tried with an ended token: the user, and what was wrongly allowed.
    pub probes: Vec<(Uuid, Option<String>)>,
    /// The most active users any queue sample showed, and the cap then.
    pub max_active_sampled: Option<(u64, Option<u32>)>,
    /// Samples of the waiting room taken.
    pub n_samples: u64,
    /// Samples whose active users were above the cap: (active, cap).
    pub over_cap_samples: Vec<(u64, u32)>,
}

impl Record {
    /// Takes one fact in.
    pub fn apply(&mut self, fact: &Fact) {
        match fact {
            Fact::Issued { user, seq } => {
                self.issued.insert(*seq, *user);
            }
            Fact::ToldWaiting { seq, sent_at_ms } => {
                let e = self.last_waiting_sent_ms.entry(*seq).or_insert(*sent_at_ms);
                *e = (*e).max(*sent_at_ms);
            }
            Fact::ToldAdmitted {
                seq,
                received_at_ms,
            } => {
                let e = self
                    .first_admitted_ms
                    .entry(*seq)
                    .or_insert(*received_at_ms);
                *e = (*e).min(*received_at_ms);
            }
            Fact::Held {
                user,
                ack,
                received_at_ms,
            } => self.holds.push((*user, *ack, *received_at_ms)),
            Fact::Released {
                reservation,
                sent_at_ms,
            } => {
                self.released_ms.insert(*reservation, *sent_at_ms);
            }
            Fact::LeftToExpire { reservation } => {
                self.left_to_expire.insert(*reservation);
            }
            Fact::Attempt { user, write, id } => {
                self.pending.insert(*id, (*user, *write));
            }
            Fact::AttemptRefused { id } => {
                self.pending.remove(id);
            }
            Fact::Charged {
                id,
                user,
                amount,
                replayed,
            } => {
                self.pending.remove(id);
                if !replayed {
                    *self.charged.entry(*user).or_default() += amount;
                }
            }
            Fact::Paid { id, user, ack } => {
                self.pending.remove(id);
                if !ack.replayed {
                    self.payments.push((*user, *ack));
                }
            }
            Fact::Replayed { first, second } => self.replays.push((*first, second.clone())),
            Fact::Probed { user, wrongly } => self.probes.push((*user, wrongly.clone())),
            Fact::Ended(_) => {}
        }
    }

    /// Per user, the charges whose outcome is unknown, summed.
    pub fn uncertain_charges(&self) -> HashMap<Uuid, i64> {
        let mut m: HashMap<Uuid, i64> = HashMap::new();
        for (user, w) in self.pending.values() {
            if let Write::Charge { amount } = w {
                *m.entry(*user).or_default() += amount;
            }
        }
        m
    }

    /// Per user, the payments whose outcome is unknown: (reservation, amount).
    pub fn uncertain_payments(&self) -> HashMap<Uuid, Vec<(Uuid, i64)>> {
        let mut m: HashMap<Uuid, Vec<(Uuid, i64)>> = HashMap::new();
        for (user, w) in self.pending.values() {
            if let Write::Pay {
                reservation,
                amount,
            } = w
            {
                m.entry(*user).or_default().push((*reservation, *amount));
            }
        }
        m
    }
}
