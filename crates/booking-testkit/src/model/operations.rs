//! The operations: what a run does, how they are drawn, and each one's step (call
//! the service, check its answer against the model, update the model).

use super::invariants::all_reservations;
use super::reference::{EntryM, GateM, Model, ResM, RowM};
use super::*;

// ---------------------------------------------------------------------------------
// Operations

/// One operation of a run. Each variant's fields are described in its own
/// documentation (a failing case prints the sequence, and a regression test spells
/// one out).
#[allow(missing_docs)]
#[derive(Debug, Clone)]
pub enum Op {
    /// Ask for a queue token; with `renew`, for one of the users (`user` modulo)
    /// whose place has ended, if any.
    Issue { user: usize, renew: bool },
    /// One admission tick.
    Tick,
    /// Move the manual clock forward.
    Advance { ms: i64 },
    /// Pass the gate with a user's newest token (or, `stale`, the one before); an
    /// `Admitted` is kept for later holds and cancels.
    ///
    /// In `Gate`, `Hold`, `Cancel` and `Pay`, `who` picks (modulo) one of the users
    /// who can do it (has a token, has passed the gate, has a reservation): a random
    /// user would mostly be one who cannot, and deep states would be rare.
    Gate { who: usize, stale: bool },
    /// Hold a seat with a user's last `Admitted`; schedule 2 does not exist and
    /// seat 5 is past the end.
    Hold { who: usize, sched: usize, seat: u16 },
    /// Cancel one of the user's reservations (`live_only` and `foreign` as in
    /// `Pay`).
    Cancel {
        who: usize,
        pick: usize,
        foreign: bool,
        live_only: bool,
    },
    /// Charge a user (`who` modulo; with `payer`, one with a live hold or an
    /// active session). Amounts above 800 are invalid; `None` is what fills the
    /// balance to the maximum exactly (1 when it is full). `retry` repeats the
    /// user's last charge.
    Charge {
        who: usize,
        payer: bool,
        amount: Option<i64>,
        key: Option<u8>,
        retry: bool,
    },
    /// Pay one of the user's reservations (`live_only`: a live one when there is
    /// one, else one that is not; `foreign`: someone else's) with the newest (or
    /// `stale`) token. `retry` repeats the user's last payment request exactly.
    Pay {
        who: usize,
        pick: usize,
        foreign: bool,
        live_only: bool,
        key: Option<u8>,
        stale: bool,
        retry: bool,
    },
    /// Pay two or three of the user's reservations at once (live ones first; with
    /// `foreign`, one of them someone else's) with the newest token.
    PayAll {
        who: usize,
        n: usize,
        pick: usize,
        foreign: bool,
        key: Option<u8>,
    },
    /// Record what has lapsed.
    Sweep,
    /// Pause (`true`) or resume admission.
    SetPaused(bool),
}

pub(super) fn clock_step() -> impl Strategy<Value = i64> {
    prop_oneof![
        // A few seconds: sessions and holds stay alive, ticks become due.
        12 => 0..3_000i64,
        // Up to 400 s: past the show-up grace, the hold TTL, sometimes the session.
        6 => 0..400_000i64,
        // Exactly on a boundary.
        2 => prop::sample::select(vec![999, 1_000, GRACE_MS, HOLD_TTL_MS, SESSION_TTL_MS]),
        // Big jumps, up to 2.8 h: everything lapses, the first show starts.
        1 => 400_000..10_000_000i64,
    ]
}

pub(super) fn op() -> impl Strategy<Value = Op> {
    // Some users queue more often than others.
    let user = || prop::sample::select(vec![0, 0, 0, 0, 1, 1, 1, 2, 2, 3, 4]);
    let who = || 0..N_USERS;
    let key = || prop::option::weighted(0.6, 0..N_KEYS);
    let sched = prop_oneof![12 => 0..2usize, 1 => Just(2usize)];
    // Boundaries are likelier than in a uniform draw: a price exactly, the
    // largest charge and one more, up to the largest balance.
    let charge = prop_oneof![
        6 => (1..=1_000i64).prop_map(Some),
        2 => prop::sample::select(PRICES.to_vec()).prop_map(Some),
        1 => prop::sample::select(vec![MAX_CHARGE, MAX_CHARGE + 1]).prop_map(Some),
        1 => Just(None),
    ];
    prop_oneof![
        4 => (user(), prop::bool::weighted(0.4))
            .prop_map(|(user, renew)| Op::Issue { user, renew }),
        4 => Just(Op::Tick),
        3 => clock_step().prop_map(|ms| Op::Advance { ms }),
        5 => (who(), prop::bool::weighted(0.15))
            .prop_map(|(who, stale)| Op::Gate { who, stale }),
        6 => (who(), sched, 1..=N_SEATS + 1)
            .prop_map(|(who, sched, seat)| Op::Hold { who, sched, seat }),
        2 => (who(), 0..8usize, prop::bool::weighted(0.3), prop::bool::weighted(0.7))
            .prop_map(|(who, pick, foreign, live_only)| Op::Cancel {
                who,
                pick,
                foreign,
                live_only,
            }),
        4 => (who(), prop::bool::weighted(0.5), charge, key(), prop::bool::weighted(0.2))
            .prop_map(|(who, payer, amount, key, retry)| Op::Charge {
                who,
                payer,
                amount,
                key,
                retry,
            }),
        4 => (
            who(),
            0..8usize,
            prop::bool::weighted(0.15),
            prop::bool::weighted(0.7),
            key(),
            prop::bool::weighted(0.1),
            prop::bool::weighted(0.15),
        )
            .prop_map(|(who, pick, foreign, live_only, key, stale, retry)| Op::Pay {
                who,
                pick,
                foreign,
                live_only,
                key,
                stale,
                retry,
            }),
        2 => (who(), 2..=3usize, 0..8usize, prop::bool::weighted(0.15), key())
            .prop_map(|(who, n, pick, foreign, key)| Op::PayAll {
                who,
                n,
                pick,
                foreign,
                key,
            }),
        1 => Just(Op::Sweep),
        1 => prop::bool::weighted(0.25).prop_map(Op::SetPaused),
    ]
}

/// The generator: sequences of 30 to 60 operations.
pub fn ops() -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(op(), 30..=60)
}

// ---------------------------------------------------------------------------------
// Steps: call the service, check its answer against the model, update the model

pub(super) fn check_gate(
    got: &Result<Admitted, GateError>,
    expected: GateM,
    claims: &TokenClaims,
) -> Result<(), TestCaseError> {
    match (got, expected) {
        (Ok(a), GateM::Pass { until }) => {
            prop_assert_eq!(a.user(), claims.user);
            prop_assert_eq!(a.seq(), claims.seq);
            prop_assert_eq!(a.token_id(), claims.token_id);
            prop_assert_eq!(a.until(), ts(until));
        }
        (
            Err(GateError::Waiting {
                position,
                eta,
                poll_after,
            }),
            GateM::Waiting { position: p },
        ) => {
            prop_assert_eq!(*position, p, "position = my sequence - serving");
            prop_assert!(eta.is_some(), "a rate policy always gives an ETA");
            prop_assert!((POLL_FLOOR..=POLL_CEILING).contains(poll_after));
        }
        (Err(GateError::Expired), GateM::Expired)
        | (Err(GateError::Ended), GateM::Ended)
        | (Err(GateError::SoldOut), GateM::SoldOut) => {}
        (got, expected) => {
            return Err(fail(format!("gate: expected {expected:?}, got {got:?}")));
        }
    }
    Ok(())
}

pub(super) async fn step<S: Store>(
    w: &World<S>,
    m: &mut Model,
    op: &Op,
) -> Result<(), TestCaseError> {
    match *op {
        Op::Issue { user, renew } => {
            let ended = |u: usize| {
                m.token_seq(u, false)
                    .is_some_and(|s| !m.entry(s).live_at(m.now))
            };
            let user = match renew {
                true => m.pick_user(user, ended).unwrap_or(user),
                false => user,
            };
            issue(w, m, user).await
        }
        Op::Tick => tick(w, m).await,
        Op::Advance { ms } => {
            w.clock.advance(dur(ms));
            m.now += ms;
            Ok(())
        }
        Op::Gate { who, stale } => {
            let Some(user) = m.pick_user(who, |u| m.token_seq(u, false).is_some()) else {
                return Ok(());
            };
            let Some(seq) = m.token_seq(user, stale) else {
                return Ok(());
            };
            let (token, claims) = (m.entry(seq).token.clone(), m.entry(seq).claims);
            let got = w.booking.gate(&token).await;
            let expected = m.gate(seq);
            check_gate(&got, expected, &claims)?;
            m.note(format!("gate {}", variant(&expected)));
            if let Ok(adm) = got {
                m.admitted[user] = Some(adm);
            }
            Ok(())
        }
        Op::Hold { who, sched, seat } => {
            let Some(user) = m.pick_user(who, |u| m.admitted[u].is_some()) else {
                return Ok(());
            };
            hold(w, m, user, sched, seat).await
        }
        Op::Cancel {
            who,
            pick,
            foreign,
            live_only,
        } => {
            let Some(user) = m
                .pick_user(who, |u| m.admitted[u].is_some() && m.has_reservation(u))
                .or_else(|| m.pick_user(who, |u| m.admitted[u].is_some()))
            else {
                return Ok(());
            };
            let Some(r) = m.pick_reservation(user, pick, foreign, live_only) else {
                return Ok(());
            };
            cancel(w, m, user, r).await
        }
        Op::Charge {
            who,
            payer,
            amount,
            key,
            retry,
        } => {
            let user = payer
                .then(|| m.pick_user(who, |u| m.live_holds_of(u) > 0 || m.is_active(u)))
                .flatten()
                .unwrap_or(who % N_USERS);
            let fill = (MAX_BALANCE - m.balance[user]).clamp(1, MAX_CHARGE);
            let (amount, key) = match m.last_charge[user] {
                Some(last) if retry => last,
                _ => (amount.unwrap_or(fill), key),
            };
            charge(w, m, user, amount, key).await
        }
        Op::Pay {
            who,
            pick,
            foreign,
            live_only,
            key,
            stale,
            retry,
        } => {
            let has_token = |u: usize| m.token_seq(u, false).is_some();
            let can_pay = |u: usize| has_token(u) && m.has_reservation(u);
            let someone_elses = |u: usize| m.reservations.iter().any(|r| r.user != u);
            let mut user = None;
            if foreign {
                user = m
                    .pick_user(who, |u| m.is_active(u) && someone_elses(u))
                    .or_else(|| m.pick_user(who, |u| has_token(u) && someone_elses(u)));
            }
            if user.is_none() && live_only {
                user = m.pick_user(who, |u| can_pay(u) && m.live_holds_of(u) > 0);
            }
            let Some(user) = user.or_else(|| m.pick_user(who, can_pay)) else {
                return Ok(());
            };
            let (seq, rs, key) = match m.last_pay[user].clone() {
                Some(last) if retry => last,
                _ => {
                    let Some(seq) = m.token_seq(user, stale) else {
                        return Ok(());
                    };
                    let Some(r) = m.pick_reservation(user, pick, foreign, live_only) else {
                        return Ok(());
                    };
                    (seq, vec![r], key)
                }
            };
            pay(w, m, user, seq, rs, key).await
        }
        Op::PayAll {
            who,
            n,
            pick,
            foreign,
            key,
        } => {
            let Some(user) = m.pick_user(who, |u| {
                m.token_seq(u, false).is_some() && m.live_holds_of(u) >= 2
            }) else {
                return Ok(());
            };
            let Some(seq) = m.token_seq(user, false) else {
                return Ok(());
            };
            // The user's reservations, live ones first, from `pick` on.
            let (live, done): (Vec<usize>, Vec<usize>) = (0..m.reservations.len())
                .filter(|r| m.reservations[*r].user == user)
                .partition(|r| m.res_live(*r));
            let mine: Vec<usize> = live.into_iter().chain(done).collect();
            let mut rs: Vec<usize> = (0..n.min(mine.len()))
                .map(|i| mine[(pick + i) % mine.len()])
                .collect();
            rs.dedup();
            if foreign
                && let Some(other) =
                    (0..m.reservations.len()).find(|r| m.reservations[*r].user != user)
            {
                rs.insert(pick % (rs.len() + 1), other);
            }
            pay(w, m, user, seq, rs, key).await
        }
        Op::Sweep => sweep(w, m).await,
        Op::SetPaused(paused) => {
            w.booking.set_paused(paused).await.map_err(storage)?;
            m.paused = paused;
            Ok(())
        }
    }
}

pub(super) async fn issue<S: Store>(
    w: &World<S>,
    m: &mut Model,
    user: usize,
) -> Result<(), TestCaseError> {
    let got = w
        .booking
        .issue_token(w.users[user])
        .await
        .map_err(storage)?;
    let newest = m.token_seq(user, false);
    if let Some(seq) = newest.filter(|s| m.entry(*s).live_at(m.now)) {
        // Asking again while the place is live: the same place, the same token.
        prop_assert_eq!(&got.token, &m.entry(seq).token);
        prop_assert_eq!(got.claims, m.entry(seq).claims);
        prop_assert_eq!(without_eta(got.status), m.status(seq));
        m.note("issue same place");
        return Ok(());
    }
    // A new place at the back, the old one (lapsed) recorded as expired.
    let seq = m.entries.len() as u64 + 1;
    prop_assert_eq!(got.claims.seq.get(), seq, "sequences are 1, 2, 3, ...");
    prop_assert_eq!(got.claims.user, w.users[user]);
    prop_assert_eq!(got.claims.issued_at, ts(m.now));
    prop_assert_eq!(w.booking.verify_token(&got.token), Ok(got.claims));
    let expected = if m.sold_out() {
        QueueStatus::SoldOut
    } else {
        QueueStatus::Waiting {
            position: seq - m.serving,
            eta: None,
            poll_after: Duration::ZERO,
        }
    };
    prop_assert_eq!(without_eta(got.status), expected);
    if let Some(old) = newest
        && m.entry(old).state == EntryState::Live
    {
        m.entry_mut(old).state = EntryState::Expired;
    }
    m.entries.push(EntryM {
        user,
        token: got.token,
        claims: got.claims,
        state: EntryState::Live,
        admitted_at: None,
        seen_at: None,
        expires_at: None,
    });
    m.note("issue new place");
    Ok(())
}

/// The status without its ETA and pace (the model does not track the rate); the
/// pace is checked to lie within its bounds.
pub(super) fn without_eta(s: QueueStatus) -> QueueStatus {
    match s {
        QueueStatus::Waiting {
            position,
            poll_after,
            ..
        } => {
            assert!((POLL_FLOOR..=POLL_CEILING).contains(&poll_after));
            QueueStatus::Waiting {
                position,
                eta: None,
                poll_after: Duration::ZERO,
            }
        }
        other => other,
    }
}

pub(super) async fn tick<S: Store>(w: &World<S>, m: &mut Model) -> Result<(), TestCaseError> {
    let got = w.booking.tick().await.map_err(storage)?;
    let now = m.now;
    let expected = if m.paused {
        TickOutcome::Paused
    } else if m.last_tick_at.is_some_and(|t| now < t + INTERVAL_MS) {
        TickOutcome::NotDue
    } else if m.n_waiting() == 0 {
        TickOutcome::Idle
    } else if m.sold_out() {
        TickOutcome::SoldOut
    } else {
        // Sessions that lapsed within the clock tolerance still count (I4 across
        // instances whose clocks differ a little).
        let tolerance = Config::default().clock_tolerance.as_millis() as i64;
        let n_active = m
            .entries
            .iter()
            .filter(|e| e.active_at(now - tolerance))
            .count() as u64;
        let n = m.n_waiting().min(BATCH).min(CAP.saturating_sub(n_active));
        for seq in m.serving + 1..=m.serving + n {
            let e = m.entry_mut(seq);
            e.admitted_at = Some(now);
            e.expires_at = Some(now + GRACE_MS);
        }
        m.serving += n;
        m.last_tick_at = Some(now);
        TickOutcome::Advanced {
            admitted: n,
            serving: m.serving,
        }
    };
    prop_assert_eq!(got, expected);
    m.note(match got {
        TickOutcome::Advanced { admitted: 0, .. } => "tick Advanced 0 (at capacity)".to_owned(),
        other => format!("tick {}", variant(&other)),
    });
    Ok(())
}

pub(super) async fn hold<S: Store>(
    w: &World<S>,
    m: &mut Model,
    user: usize,
    sched: usize,
    seat: u16,
) -> Result<(), TestCaseError> {
    let Some(adm) = m.admitted[user] else {
        return Ok(());
    };
    let got = w.booking.hold(&adm, w.schedule(sched), seat_no(seat)).await;
    let why = m.hold_refusals(user, &adm, sched, seat);
    if !why.is_empty() {
        expect_refusal(&got, &why)?;
        if let Err(e) = &got {
            m.note(format!("hold {}", variant(e)));
            if why.len() == 1 {
                m.note(format!("hold {} alone", variant(e)));
            }
        }
        return Ok(());
    }
    let h = got.map_err(|e| fail(format!("the hold must succeed, got {e:?}")))?;
    prop_assert_eq!(h.user, w.users[user]);
    prop_assert_eq!(h.schedule, w.schedule(sched));
    prop_assert_eq!(h.seat, seat_no(seat));
    prop_assert_eq!(h.price, amount(PRICES[usize::from(seat) - 1]));
    prop_assert_eq!(h.created_at, ts(m.now));
    // A hold never outlives its show nor its session: it lapses at the start, or
    // when the session ends, at the latest.
    let session_end = m
        .entry(adm.seq().get())
        .expires_at
        .ok_or_else(|| fail("a hold was taken in a session never admitted"))?;
    let until = (m.now + HOLD_TTL_MS)
        .min(T0 + STARTS_MS[sched])
        .min(session_end);
    prop_assert_eq!(h.expires_at, ts(until));
    prop_assert_eq!(h.state, HoldState::Held);
    prop_assert!(m.reservations.iter().all(|r| r.id != h.id));
    m.reservations.push(ResM {
        id: h.id,
        user,
        sched,
        seat,
        price: h.price.minor_units(),
        expires_at: h.expires_at.as_millis(),
        state: HoldState::Held,
    });
    m.note("hold ok");
    Ok(())
}

pub(super) async fn cancel<S: Store>(
    w: &World<S>,
    m: &mut Model,
    user: usize,
    r: usize,
) -> Result<(), TestCaseError> {
    let Some(adm) = m.admitted[user] else {
        return Ok(());
    };
    let got = w.booking.cancel_hold(&adm, m.reservations[r].id).await;
    let mut why = Vec::new();
    if m.reservations[r].user != user {
        why.push(CancelError::NotYours);
    }
    match m.res_state(r) {
        HoldState::Held => {}
        s => why.push(CancelError::NotHeld(s)),
    }
    if !why.is_empty() {
        expect_refusal(&got, &why)?;
        if let Err(e) = &got {
            m.note(format!("cancel {}", variant(e)));
            if why.len() == 1 {
                m.note(format!("cancel {} alone", variant(e)));
            }
        }
        return Ok(());
    }
    let h = got.map_err(|e| fail(format!("the cancel must succeed, got {e:?}")))?;
    prop_assert_eq!(h.id, m.reservations[r].id);
    prop_assert_eq!(h.state, HoldState::Cancelled);
    m.reservations[r].state = HoldState::Cancelled;
    m.note("cancel ok");
    Ok(())
}

pub(super) async fn charge<S: Store>(
    w: &World<S>,
    m: &mut Model,
    user: usize,
    a: i64,
    k: Option<u8>,
) -> Result<(), TestCaseError> {
    m.last_charge[user] = Some((a, k));
    let got = w.booking.charge(w.users[user], amount(a), k.map(key)).await;
    let mut why = Vec::new();
    if a > MAX_CHARGE {
        why.push(ChargeError::AboveMaxCharge {
            max: amount(MAX_CHARGE),
        });
    }
    let first = k.and_then(|k| m.charge_keys.get(&(user, k)).cloned());
    match &first {
        Some(first) if first.amount == amount(a) && why.is_empty() => {
            // A retry: the first receipt, nothing added.
            let receipt = got.map_err(|e| fail(format!("a retry must replay, got {e:?}")))?;
            prop_assert!(receipt.replayed);
            prop_assert_eq!(&receipt.entry, first);
            m.note("charge replayed");
            return Ok(());
        }
        Some(_) => why.push(ChargeError::KeyReused),
        None if m.balance[user] + a > MAX_BALANCE => why.push(ChargeError::BalanceLimit {
            balance: money(m.balance[user]),
            max: money(MAX_BALANCE),
        }),
        None => {}
    }
    if !why.is_empty() {
        expect_refusal(&got, &why)?;
        if let Err(e) = &got {
            m.note(format!("charge {}", variant(e)));
            if why.len() == 1 {
                m.note(format!("charge {} alone", variant(e)));
            }
        }
        return Ok(());
    }
    let receipt = got.map_err(|e| fail(format!("the charge must succeed, got {e:?}")))?;
    let after = m.balance[user] + a;
    let e = &receipt.entry;
    prop_assert!(!receipt.replayed);
    prop_assert_eq!(e.user, w.users[user]);
    prop_assert_eq!(e.kind, LedgerKind::Charge);
    prop_assert_eq!(e.amount, amount(a));
    prop_assert_eq!(e.balance_after, money(after));
    prop_assert_eq!(e.at, ts(m.now));
    prop_assert_eq!(&e.key, &k.map(key));
    m.balance[user] = after;
    m.ledger[user].push(RowM {
        kind: LedgerKind::Charge,
        amount: a,
        balance_after: after,
        at: m.now,
        key: k.map(key),
    });
    if let Some(k) = k {
        m.charge_keys.insert((user, k), receipt.entry);
    }
    m.note("charge ok");
    Ok(())
}

pub(super) async fn pay<S: Store>(
    w: &World<S>,
    m: &mut Model,
    user: usize,
    seq: u64,
    rs: Vec<usize>,
    k: Option<u8>,
) -> Result<(), TestCaseError> {
    m.last_pay[user] = Some((seq, rs.clone(), k));
    let (token, claims) = (m.entry(seq).token.clone(), m.entry(seq).claims);
    let ids: Vec<ReservationId> = rs.iter().map(|r| m.reservations[*r].id).collect();
    let several = ids.len() > 1;
    let got = w.booking.pay_all(&token, &ids, k.map(key)).await;
    let tag = if several { "pay all" } else { "pay" };

    // A key this user already paid with: the first result for the same
    // reservations, a refusal for others. Nothing else is looked at.
    if let Some(first) = k.and_then(|k| m.pay_keys.get(&(user, k)).cloned()) {
        if first.pays_exactly(&ids) {
            let receipt = got.map_err(|e| fail(format!("a retry must replay, got {e:?}")))?;
            prop_assert!(receipt.replayed);
            prop_assert_eq!(&receipt.payment, &first);
            m.note(format!("{tag} replayed"));
        } else {
            prop_assert_eq!(got, Err(PayError::KeyReused));
            m.note(format!("{tag} KeyReused"));
        }
        return Ok(());
    }

    // The queue gate runs first, with its show-up.
    let gate = m.gate(seq);
    if !matches!(gate, GateM::Pass { .. }) {
        let Err(PayError::Gate(g)) = &got else {
            return Err(fail(format!(
                "pay: the gate must refuse with {gate:?}, got {got:?}"
            )));
        };
        check_gate(&Err(g.clone()), gate, &claims)?;
        m.note(format!("{tag} Gate {}", variant(&gate)));
        return Ok(());
    }

    // Each reservation in the order asked: the first with a reason refuses all.
    for &r in &rs {
        let res = m.reservations[r].clone();
        let mut why = Vec::new();
        if res.user != user {
            why.push(PayError::NotYours);
        }
        match m.res_state(r) {
            HoldState::Held => {}
            HoldState::Paid => why.push(PayError::AlreadyPaid),
            HoldState::Cancelled => why.push(PayError::Cancelled),
            // Late, and the seat has been sold since: that is what the refusal says.
            HoldState::Expired if m.sold.contains_key(&(res.sched, res.seat)) => {
                why.push(PayError::SeatSold)
            }
            HoldState::Expired => why.push(PayError::HoldExpired),
        }
        if why.is_empty() {
            continue;
        }
        if several {
            let why: Vec<PayError> = why
                .into_iter()
                .map(|e| PayError::Reservation {
                    reservation: res.id,
                    error: Box::new(e),
                })
                .collect();
            expect_refusal(&got, &why)?;
            if let Err(e) = &got {
                m.note(format!("pay all {}", variant(e.cause())));
            }
            return Ok(());
        }
        let balance_too = m.balance[user] < res.price;
        if balance_too {
            why.push(PayError::InsufficientBalance {
                balance: money(m.balance[user]),
                price: amount(res.price),
            });
        }
        expect_refusal(&got, &why)?;
        if let Err(e) = &got {
            m.note(format!("pay {}", variant(e)));
            if why.len() == 1 {
                m.note(format!("pay {} alone", variant(e)));
            }
        }
        return Ok(());
    }
    let total: i64 = rs.iter().map(|r| m.reservations[*r].price).sum();
    if m.balance[user] < total {
        let why = PayError::InsufficientBalance {
            balance: money(m.balance[user]),
            price: amount(total),
        };
        prop_assert_eq!(got, Err(why));
        m.note(format!("{tag} InsufficientBalance"));
        if !several {
            m.note("pay InsufficientBalance alone");
        }
        return Ok(());
    }

    let receipt = got.map_err(|e| fail(format!("the payment must succeed, got {e:?}")))?;
    let p = &receipt.payment;
    let first = m.reservations[rs[0]].clone();
    prop_assert!(!receipt.replayed);
    prop_assert_eq!(p.reservation, ids[0]);
    prop_assert_eq!(p.user, w.users[user]);
    prop_assert_eq!(p.schedule, w.schedule(first.sched));
    prop_assert_eq!(p.seat, seat_no(first.seat));
    prop_assert_eq!(p.amount, amount(total));
    prop_assert_eq!(p.paid_at, ts(m.now));
    prop_assert_eq!(&p.key, &k.map(key));
    prop_assert!(
        m.payments.iter().all(|q| q.id != p.id),
        "a fresh payment id"
    );
    prop_assert_eq!(p.seats.len(), rs.len(), "one seat per reservation");
    for (seat, &r) in p.seats.iter().zip(&rs) {
        let res = &m.reservations[r];
        prop_assert_eq!(seat.reservation, res.id);
        prop_assert_eq!(seat.schedule, w.schedule(res.sched));
        prop_assert_eq!(seat.seat, seat_no(res.seat));
        prop_assert_eq!(seat.price, amount(res.price));
    }
    let after = m.balance[user] - total;
    m.balance[user] = after;
    m.ledger[user].push(RowM {
        kind: LedgerKind::Payment(p.id),
        amount: total,
        balance_after: after,
        at: m.now,
        key: None,
    });
    for &r in &rs {
        m.reservations[r].state = HoldState::Paid;
        let res = &m.reservations[r];
        m.sold.insert((res.sched, res.seat), r);
    }
    m.entry_mut(seq).state = EntryState::Done;
    // The session ended, and with it the user's other holds: they lapse now.
    for other in 0..m.reservations.len() {
        if m.reservations[other].user == user && m.res_live(other) {
            m.reservations[other].expires_at = m.now;
            m.note("pay released another hold");
        }
    }
    if let Some(k) = k {
        m.pay_keys.insert((user, k), p.clone());
    }
    m.payments.push(p.clone());
    m.note(format!("{tag} ok"));
    after_payment(w, m, user, seq, k, &receipt.payment).await
}

/// I5 and I6 right after a successful payment: a retry with the key replays it and
/// charges nothing; the token can neither pay again nor pass the gate; an
/// `Admitted` of the ended session can no longer hold.
pub(super) async fn after_payment<S: Store>(
    w: &World<S>,
    m: &mut Model,
    user: usize,
    seq: u64,
    k: Option<u8>,
    first: &Payment,
) -> Result<(), TestCaseError> {
    let uid = w.users[user];
    let token = m.entry(seq).token.clone();
    let balance = money(m.balance[user]);
    prop_assert_eq!(w.booking.balance(uid).await.map_err(storage)?, balance);

    let ids: Vec<ReservationId> = first.seats.iter().map(|s| s.reservation).collect();
    if let Some(k) = k {
        let again = w.booking.pay_all(&token, &ids, Some(key(k))).await;
        let again = again.map_err(|e| fail(format!("I5: a retry must replay, got {e:?}")))?;
        prop_assert!(again.replayed, "I5: the retry is a replay");
        prop_assert_eq!(
            &again.payment,
            first,
            "I5: the retry returns the first payment"
        );
        prop_assert_eq!(
            w.booking.balance(uid).await.map_err(storage)?,
            balance,
            "I5: a retry charges nothing"
        );
        m.note("I5 retry replayed");
    }

    let again = w.booking.pay_all(&token, &ids, None).await;
    prop_assert_eq!(
        again,
        Err(PayError::Gate(GateError::Ended)),
        "I5/I6: the token cannot pay again"
    );
    prop_assert_eq!(
        w.booking.balance(uid).await.map_err(storage)?,
        balance,
        "I5: nothing more is charged"
    );
    prop_assert_eq!(
        w.booking.gate(&token).await,
        Err(GateError::Ended),
        "I6: the gate refuses a paid token"
    );

    if let Some(adm) = m.admitted[user].filter(|a| a.seq().get() == seq) {
        let (sched, seat) = m.most_holdable_seat();
        let why = m.hold_refusals(user, &adm, sched, seat);
        prop_assert!(why.contains(&HoldError::SessionEnded));
        let got = w.booking.hold(&adm, w.schedule(sched), seat_no(seat)).await;
        expect_refusal(&got, &why).map_err(|e| fail(format!("I6: {e}")))?;
        m.note("I6 hold refused after payment");
    }
    Ok(())
}

pub(super) async fn sweep<S: Store>(w: &World<S>, m: &mut Model) -> Result<(), TestCaseError> {
    let now = m.now;
    let before = all_reservations(w).await?;
    let unrecorded = |hs: &[Hold]| {
        hs.iter()
            .filter(|h| h.state == HoldState::Held && ts(now) >= h.expires_at)
            .count() as u64
    };
    let n_holds = unrecorded(&before);
    let lapsed: Vec<usize> = (0..m.reservations.len())
        .filter(|r| m.reservations[*r].state == HoldState::Held && !m.res_live(*r))
        .collect();
    let lapsed_sessions: Vec<u64> = (1..=m.entries.len() as u64)
        .filter(|s| {
            let e = m.entry(*s);
            e.state == EntryState::Live && e.expires_at.is_some_and(|t| t <= now)
        })
        .collect();

    let report = w.booking.sweep().await.map_err(storage)?;
    prop_assert_eq!(report.n_sessions_expired, lapsed_sessions.len() as u64);
    prop_assert_eq!(report.n_holds_expired, n_holds);
    prop_assert!(report.n_holds_expired <= lapsed.len() as u64);
    prop_assert_eq!(
        unrecorded(&all_reservations(w).await?),
        0,
        "the sweep records every lapsed hold"
    );

    for r in lapsed {
        m.reservations[r].state = HoldState::Expired;
    }
    for s in lapsed_sessions {
        m.entry_mut(s).state = EntryState::Expired;
    }
    if report.n_holds_expired > 0 {
        m.note("sweep recorded holds");
    }
    if report.n_sessions_expired > 0 {
        m.note("sweep recorded sessions");
    }
    Ok(())
}
