//! The waiting room: tokens, status polls and the queue gate.

use std::time::Duration;

use super::{Booking, Cached};
use crate::clock::Clock;
use crate::domain::{EntryState, QueueCounters, QueueEntry, QueueSeq, Timestamp, TokenId, UserId};
use crate::error::{GateError, IssueError, StatusError};
use crate::ports::{IssueRepoError, IssueRequest, Store, StoreError};
use crate::token::{TokenClaims, TokenError};

/// Where a token stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueStatus {
    /// Waiting to be admitted.
    Waiting {
        /// Place in line: 1 is next.
        position: u64,
        /// Estimated wait (people ahead / observed admission rate), when a rate is known.
        eta: Option<Duration>,
        /// When to ask again: [`crate::domain::poll_after`] of the position and the
        /// admission rate (250 ms near the front to 20 s far back).
        poll_after: Duration,
    },
    /// Admitted: catalog, holds and payment are open until `until` (the show-up
    /// deadline until the first use, then the end of the session).
    Active {
        /// When the session (or the show-up grace) ends.
        until: Timestamp,
    },
    /// Waiting, and nothing is left to sell: every seat of every bookable date is
    /// sold or held. Admission stops; it resumes if a hold lapses unpaid (asking
    /// again every 20 s or so is enough).
    SoldOut,
    /// Lapsed: the user has to take a new token.
    Expired,
    /// Ended by a payment.
    Done,
}

/// A token and where it stands, as returned by [`Booking::issue_token`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedToken {
    /// The signed token to send with every request.
    pub token: String,
    /// What it says.
    pub claims: TokenClaims,
    /// Where it stands now.
    pub status: QueueStatus,
}

/// The status of a token, as returned by [`Booking::queue_status`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueView {
    /// What the token says.
    pub claims: TokenClaims,
    /// Where it stands.
    pub status: QueueStatus,
    /// Whether admission is paused (as of the counters this answer read): a waiting
    /// user is not admitted until an operator resumes it.
    pub paused: bool,
}

/// The line as one instance sees it: what every waiting user's status follows
/// from, so that a server pushing statuses to many waiting users reads storage
/// once per refresh, not once per user (see [`Booking::line_snapshot`] and
/// [`Booking::waiting_status`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineSnapshot {
    /// The shared counters (possibly from this instance's cache).
    pub counters: QueueCounters,
    /// This instance's sold-out mark ([`Booking::sold_out`]).
    pub sold_out: bool,
}

/// Proof that a token passed the queue gate: admitted, not ended, not lapsed, at
/// the instant of the check. Only the gate makes one, so an operation that takes an
/// `&Admitted` cannot be called by someone who did not pass it. Holds and payments
/// check the session again inside their write, since it may end in between; a
/// cancel does not need to (it only gives a seat back).
///
/// It may come from this instance's memory of sessions it saw start (see
/// [`Booking::gate`] and [`Booking::gate_for_write`]); a hold or payment refused
/// because such a session ended then runs the full gate to say why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admitted {
    claims: TokenClaims,
    until: Timestamp,
    remembered: bool,
}

impl Admitted {
    /// The admitted user.
    pub fn user(&self) -> UserId {
        self.claims.user
    }

    /// Their place (the session's key).
    pub fn seq(&self) -> QueueSeq {
        self.claims.seq
    }

    /// The token's id.
    pub fn token_id(&self) -> TokenId {
        self.claims.token_id
    }

    /// When the session ends.
    pub fn until(&self) -> Timestamp {
        self.until
    }

    /// `true` when this instance vouched for the session from memory instead of
    /// reading its queue entry.
    pub fn remembered(&self) -> bool {
        self.remembered
    }
}

/// A session this instance saw pass the gate: started (shown up) and, at
/// `checked_at`, live until `until`. Show-up and the end time never change once
/// set, so only "ended early" (a payment, perhaps on another instance) can make it
/// wrong; writes check that in their own statement.
#[derive(Debug, Clone, Copy)]
pub(super) struct SeenSession {
    token_id: TokenId,
    user: UserId,
    until: Timestamp,
    checked_at: Timestamp,
}

impl<S: Store, C: Clock> Booking<S, C> {
    /// Gives `user` a place in the waiting room and its signed token (R1).
    ///
    /// Asking again while the place is live returns the same place and the same
    /// token, not a new place at the back. After the place ended (paid or lapsed),
    /// a new place is issued at the back.
    ///
    /// # Errors
    /// [`IssueError::QueueFull`] when the waiting line is at its maximum.
    pub async fn issue_token(&self, user: UserId) -> Result<IssuedToken, IssueError> {
        let now = self.now();
        let entry = self
            .store
            .issue(IssueRequest {
                user,
                token_id: TokenId::random(),
                now,
                max_waiting: self.config.max_waiting,
            })
            .await
            .map_err(|e| match e {
                IssueRepoError::QueueFull => IssueError::QueueFull {
                    max: self.config.max_waiting,
                },
                IssueRepoError::Store(s) => IssueError::Store(s),
            })?;
        self.note_issued(entry.seq);
        super::activity::ActivityCounters::add(&self.activity.tokens_issued, 1);
        let counters = self.counters_cached(now).await?;
        let claims = claims_of(&entry);
        let mut status = self.paced(status_of(&entry, &counters, now));
        if matches!(status, QueueStatus::Waiting { .. }) && self.sold_out().await? {
            status = QueueStatus::SoldOut;
        }
        Ok(IssuedToken {
            token: self.signer.sign(&claims),
            claims,
            status,
        })
    }

    /// Checks a token's signature and returns what it says. No storage is read.
    ///
    /// # Errors
    /// [`TokenError`] for a malformed, forged or altered token.
    pub fn verify_token(&self, token: &str) -> Result<TokenClaims, TokenError> {
        self.signer.verify(token)
    }

    /// Where a token stands: the poll (R1). It writes nothing, and for a waiting
    /// user it reads only the shared counters (possibly from this instance's cache):
    /// position = my sequence - the serving counter. A waiting user is told
    /// [`QueueStatus::SoldOut`] while the sale is sold out ([`Booking::sold_out`],
    /// this instance's mark).
    ///
    /// # Errors
    /// [`StatusError::Token`] for a bad token, [`StatusError::UnknownToken`] for a
    /// token whose place this database does not have.
    pub async fn queue_status(&self, token: &str) -> Result<QueueView, StatusError> {
        let claims = self.signer.verify(token)?;
        let now = self.now();
        let mut counters = self.counters_cached(now).await?;
        let seq = claims.seq.get();
        if seq > counters.serving && seq > counters.last_seq {
            // The cache may be behind a token issued a moment ago: ask once more.
            counters = self.fresh_counters(now).await?;
            if seq > counters.last_seq {
                return Err(StatusError::UnknownToken);
            }
        }
        if seq > counters.serving {
            let line = LineSnapshot {
                counters,
                sold_out: self.sold_out().await?,
            };
            if let Some(status) = self.waiting_status(&claims, &line) {
                return Ok(QueueView {
                    claims,
                    status,
                    paused: counters.paused,
                });
            }
        }
        let entry = self
            .entry_of(&claims)
            .await?
            .ok_or(StatusError::UnknownToken)?;
        Ok(QueueView {
            claims,
            status: self.paced(status_of(&entry, &counters, now)),
            paused: counters.paused,
        })
    }

    /// The line now, for statuses pushed to many waiting users: the counters, read
    /// from storage (which also refreshes the cache that polls read), and the
    /// sold-out mark. One read of the counters, whatever the number of users it
    /// serves; a pusher calls it a few times a second.
    ///
    /// # Errors
    /// [`StoreError`] when storage cannot be read.
    pub async fn line_snapshot(&self) -> Result<LineSnapshot, StoreError> {
        let counters = self.fresh_counters(self.now()).await?;
        let sold_out = self.sold_out().await?;
        Ok(LineSnapshot { counters, sold_out })
    }

    /// The status of verified `claims` from `line` alone, with no read: the same
    /// answer [`Booking::queue_status`] gives a waiting user (`Waiting` with its
    /// pace, or `SoldOut`). `None` when the place is at or before the serving
    /// counter (admitted, or ended: only its queue entry tells), or beyond the last
    /// place `line` knows: ask [`Booking::queue_status`] then.
    pub fn waiting_status(&self, claims: &TokenClaims, line: &LineSnapshot) -> Option<QueueStatus> {
        let seq = claims.seq.get();
        if seq <= line.counters.serving || seq > line.counters.last_seq {
            return None;
        }
        if line.sold_out {
            return Some(QueueStatus::SoldOut);
        }
        Some(self.paced(waiting(seq, &line.counters)))
    }

    /// The queue gate that every catalog, hold and payment operation passes first:
    /// is this token admitted and live? The first use of an admitted token starts its
    /// session (show-up), which then lasts the session TTL.
    ///
    /// # Errors
    /// [`GateError::Token`], [`GateError::UnknownToken`], [`GateError::Waiting`] with
    /// the position, [`GateError::SoldOut`] instead while the sale is sold out, [`GateError::Expired`], [`GateError::Ended`] after payment.
    ///
    /// With [`super::Config::gate_cache`] set, a session this instance let through
    /// less than that long ago passes without a read (its end time is still
    /// checked): a token paid on another instance may then read the catalog for that
    /// long. A payment on this instance forgets its session at once.
    pub async fn gate(&self, token: &str) -> Result<Admitted, GateError> {
        let claims = self.signer.verify(token)?;
        let max_age = self.config.gate_cache;
        if !max_age.is_zero()
            && let Some(who) = self.recall(&claims, Some(max_age))
        {
            return Ok(who);
        }
        self.admit(&claims).await
    }

    /// The gate for a hold or a payment, whose write checks the session again in
    /// its own statement: a session this instance saw start passes without a read
    /// while its end time has not come, whatever its age, since show-up and the end
    /// time never change. When the write then finds the session ended (paid on
    /// another instance), [`Booking::hold`] and [`Booking::pay`] run the full gate to
    /// name the refusal, so the answer is the same as without this memory.
    ///
    /// # Errors
    /// As [`Booking::gate`].
    pub async fn gate_for_write(&self, token: &str) -> Result<Admitted, GateError> {
        let claims = self.signer.verify(token)?;
        self.admit_for_write(&claims).await
    }

    /// [`Booking::gate_for_write`] for claims already verified.
    pub(crate) async fn admit_for_write(
        &self,
        claims: &TokenClaims,
    ) -> Result<Admitted, GateError> {
        match self.recall(claims, None) {
            Some(who) => Ok(who),
            None => self.admit(claims).await,
        }
    }

    /// A remembered session of these claims, live now and checked at most `max_age`
    /// ago (any age when `None`).
    fn recall(&self, claims: &TokenClaims, max_age: Option<Duration>) -> Option<Admitted> {
        let now = self.now();
        let seen = super::lock(&self.sessions).get(&claims.seq).copied()?;
        let fresh = match max_age {
            None => true,
            Some(age) => now >= seen.checked_at && now.since(seen.checked_at) < age,
        };
        (seen.token_id == claims.token_id && seen.user == claims.user && now < seen.until && fresh)
            .then_some(Admitted {
                claims: *claims,
                until: seen.until,
                remembered: true,
            })
    }

    fn remember_session(&self, who: &Admitted, now: Timestamp) {
        let mut sessions = super::lock(&self.sessions);
        if sessions.len() >= super::SESSION_CACHE {
            sessions.clear();
        }
        sessions.insert(
            who.seq(),
            SeenSession {
                token_id: who.token_id(),
                user: who.user(),
                until: who.until,
                checked_at: now,
            },
        );
    }

    /// Forgets a session that ended (or was found ended).
    pub(crate) fn forget_session(&self, seq: QueueSeq) {
        super::lock(&self.sessions).remove(&seq);
    }

    /// After a write found a remembered session ended: forgets it and runs the full
    /// gate, whose refusal says why (ended by a payment, or lapsed). `None` when the
    /// gate lets it through after all.
    pub(crate) async fn why_ended(&self, who: &Admitted) -> Option<GateError> {
        self.forget_session(who.seq());
        self.admit(&who.claims).await.err()
    }

    /// The gate for claims already verified.
    pub(crate) async fn admit(&self, claims: &TokenClaims) -> Result<Admitted, GateError> {
        let now = self.now();
        let mut entry = self
            .entry_of(claims)
            .await?
            .ok_or(GateError::UnknownToken)?;
        // Two rounds at most: a show-up can only lose to a concurrent show-up of the
        // same token (or to its end), after which the re-read entry is final.
        for _ in 0..2 {
            match entry.state {
                EntryState::Done => return Err(GateError::Ended),
                EntryState::Expired => return Err(GateError::Expired),
                EntryState::Live => {}
            }
            let Some(expires_at) = entry.expires_at else {
                if self.sold_out().await? {
                    return Err(GateError::SoldOut);
                }
                let counters = self.counters_cached(now).await?;
                let (position, eta, poll_after) = place(entry.seq.get(), &counters);
                return Err(GateError::Waiting {
                    position,
                    eta,
                    poll_after: self.max_pause(poll_after),
                });
            };
            if now >= expires_at {
                return Err(GateError::Expired);
            }
            if entry.seen_at.is_some() {
                let who = admitted(claims, expires_at);
                self.remember_session(&who, now);
                return Ok(who);
            }
            let until = now.plus(self.config.session_ttl);
            if let Some(shown) = self.store.show_up(entry.seq, now, until).await? {
                let who = admitted(claims, shown.expires_at.unwrap_or(until));
                self.remember_session(&who, now);
                return Ok(who);
            }
            entry = self
                .entry_of(claims)
                .await?
                .ok_or(GateError::UnknownToken)?;
        }
        Err(GateError::Expired)
    }

    /// Refuses a token whose place has ended: paid ([`GateError::Ended`]) or lapsed
    /// ([`GateError::Expired`]). A waiting or active place passes. One read (no
    /// memory of sessions: a payment on another instance counts at once).
    pub(crate) async fn place_not_ended(&self, claims: &TokenClaims) -> Result<(), GateError> {
        let now = self.now();
        let entry = self
            .entry_of(claims)
            .await?
            .ok_or(GateError::UnknownToken)?;
        match entry.state {
            EntryState::Done => Err(GateError::Ended),
            EntryState::Expired => Err(GateError::Expired),
            EntryState::Live if entry.expires_at.is_some_and(|t| now >= t) => {
                Err(GateError::Expired)
            }
            EntryState::Live => Ok(()),
        }
    }

    /// The entry a token points at, if it is really the one the token was issued for.
    async fn entry_of(&self, claims: &TokenClaims) -> Result<Option<QueueEntry>, StoreError> {
        let entry = self.store.entry(claims.seq).await?;
        Ok(entry.filter(|e| e.token_id == claims.token_id && e.user == claims.user))
    }

    /// The counters, from this instance's cache while it is fresh enough
    /// ([`super::Config::counters_cache`]; under a burst one caller reads them again
    /// while the others answer from the old value, see `Cached::serve`).
    pub(crate) async fn counters_cached(
        &self,
        now: Timestamp,
    ) -> Result<QueueCounters, StoreError> {
        let max_age = self.config.counters_cache;
        if max_age.is_zero() {
            return self.store.counters().await;
        }
        if let Some(c) = Cached::serve(super::lock(&self.counters_cache).as_mut(), now, max_age) {
            return Ok(c);
        }
        self.fresh_counters(now).await
    }

    /// The counters from storage, refreshing the cache.
    pub(crate) async fn fresh_counters(&self, now: Timestamp) -> Result<QueueCounters, StoreError> {
        let read = self.store.counters().await;
        if !self.config.counters_cache.is_zero() {
            let mut cache = super::lock(&self.counters_cache);
            match &read {
                Ok(c) => *cache = Some(Cached::fresh(now, *c)),
                Err(_) => {
                    if let Some(old) = cache.as_mut() {
                        old.refreshing = false;
                    }
                }
            }
        }
        read
    }

    /// `status` with its pause kept under [`Booking::max_pause`].
    fn paced(&self, status: QueueStatus) -> QueueStatus {
        match status {
            QueueStatus::Waiting {
                position,
                eta,
                poll_after,
            } => QueueStatus::Waiting {
                position,
                eta,
                poll_after: self.max_pause(poll_after),
            },
            other => other,
        }
    }

    /// A pause between polls is at most half the show-up grace: a user admitted
    /// while it waits still comes back in time to keep the place.
    fn max_pause(&self, pause: Duration) -> Duration {
        pause
            .min(self.config.show_up_grace / 2)
            .max(crate::domain::POLL_FLOOR)
    }

    /// Notes in the cache that place `seq` exists, so that a poll of a token this
    /// instance just issued needs no read to tell that its place is known.
    fn note_issued(&self, seq: QueueSeq) {
        if let Some(c) = super::lock(&self.counters_cache).as_mut() {
            c.value.last_seq = c.value.last_seq.max(seq.get());
        }
    }
}

fn claims_of(entry: &QueueEntry) -> TokenClaims {
    TokenClaims {
        user: entry.user,
        seq: entry.seq,
        issued_at: entry.issued_at,
        token_id: entry.token_id,
    }
}

fn admitted(claims: &TokenClaims, until: Timestamp) -> Admitted {
    Admitted {
        claims: *claims,
        until,
        remembered: false,
    }
}

/// Position, ETA and when to ask again of a waiting sequence, from the counters
/// alone.
fn place(seq: u64, counters: &QueueCounters) -> (u64, Option<Duration>, Duration) {
    let position = seq.saturating_sub(counters.serving).max(1);
    let pace = crate::domain::poll_after(position, counters.pace_rate_milli());
    (position, eta(position, counters), pace)
}

/// The status of a waiting sequence.
fn waiting(seq: u64, counters: &QueueCounters) -> QueueStatus {
    let (position, eta, poll_after) = place(seq, counters);
    QueueStatus::Waiting {
        position,
        eta,
        poll_after,
    }
}

/// ETA = people ahead / admission rate: the observed rate when there is one, else
/// what a rate policy promises. `None` when neither is known.
fn eta(position: u64, counters: &QueueCounters) -> Option<Duration> {
    let rate_milli = if counters.admit_rate_milli > 0 {
        counters.admit_rate_milli
    } else {
        let batch = u64::from(counters.policy.batch()?);
        let interval_ms = counters.policy.interval().as_millis() as u64;
        batch * 1_000_000 / interval_ms.max(1)
    };
    if rate_milli == 0 {
        return None;
    }
    let ms = u128::from(position) * 1_000_000 / u128::from(rate_milli);
    Some(Duration::from_millis(u64::try_from(ms).unwrap_or(u64::MAX)))
}

/// The status of an entry at `now`.
fn status_of(entry: &QueueEntry, counters: &QueueCounters, now: Timestamp) -> QueueStatus {
    match entry.state {
        EntryState::Done => QueueStatus::Done,
        EntryState::Expired => QueueStatus::Expired,
        EntryState::Live => match entry.expires_at {
            None => waiting(entry.seq.get(), counters),
            Some(until) if now < until => QueueStatus::Active { until },
            Some(_) => QueueStatus::Expired,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::AdmissionPolicy;

    fn counters(serving: u64, rate_milli: u64, policy: AdmissionPolicy) -> QueueCounters {
        QueueCounters {
            last_seq: 1_000,
            serving,
            version: 0,
            last_tick_at: None,
            paused: false,
            policy,
            admit_rate_milli: rate_milli,
        }
    }

    #[test]
    fn eta_uses_the_observed_rate_first() {
        let p = AdmissionPolicy::rate(10, Duration::from_secs(1)).unwrap();
        // Observed: 2 users a second; 20 ahead -> 10 s.
        assert_eq!(
            eta(20, &counters(0, 2_000, p)),
            Some(Duration::from_secs(10))
        );
        // Nothing observed yet: the policy says 10 a second -> 2 s.
        assert_eq!(eta(20, &counters(0, 0, p)), Some(Duration::from_secs(2)));
        // A capacity policy promises no rate.
        let cap = AdmissionPolicy::capacity(10, Duration::from_secs(1)).unwrap();
        assert_eq!(eta(20, &counters(0, 0, cap)), None);
    }

    #[test]
    fn a_waiting_status_says_when_to_ask_again() {
        let p = AdmissionPolicy::rate(50, Duration::from_secs(1)).unwrap();
        // 600 ahead at 50 a second: 12 s expected, ask again after 8 s.
        match waiting(650, &counters(50, 50_000, p)) {
            QueueStatus::Waiting { poll_after, .. } => {
                assert_eq!(poll_after, Duration::from_secs(8));
            }
            other => panic!("expected waiting, got {other:?}"),
        }
        let mut paused = counters(50, 50_000, p);
        paused.paused = true;
        match waiting(650, &paused) {
            // Paused: the assumed 10 a second, 60 s expected, the ceiling.
            QueueStatus::Waiting { poll_after, .. } => {
                assert_eq!(poll_after, crate::domain::POLL_CEILING);
            }
            other => panic!("expected waiting, got {other:?}"),
        }
    }

    #[test]
    fn position_is_sequence_minus_serving() {
        let p = AdmissionPolicy::default();
        match waiting(57, &counters(50, 0, p)) {
            QueueStatus::Waiting { position, .. } => assert_eq!(position, 7),
            other => panic!("expected waiting, got {other:?}"),
        }
    }
}
