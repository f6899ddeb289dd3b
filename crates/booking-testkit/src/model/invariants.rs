//! The invariants, read through the public ports after every step: I1-I6, and that
//! the store agrees with the model.

use super::operations::without_eta;
use super::reference::{Model, RowM};
use super::*;

// ---------------------------------------------------------------------------------
// Invariants, read through the public ports

pub(super) async fn all_reservations<S: Store>(w: &World<S>) -> Result<Vec<Hold>, TestCaseError> {
    let mut all = Vec::new();
    for u in &w.users {
        all.extend(
            w.booking
                .store()
                .reservations_of(*u, ALL)
                .await
                .map_err(storage)?,
        );
    }
    Ok(all)
}

pub(super) async fn all_payments<S: Store>(w: &World<S>) -> Result<Vec<Payment>, TestCaseError> {
    let mut all = Vec::new();
    for u in &w.users {
        all.extend(
            w.booking
                .store()
                .payments_of(*u, ALL)
                .await
                .map_err(storage)?,
        );
    }
    Ok(all)
}

pub(super) async fn check_invariants<S: Store>(
    w: &World<S>,
    m: &Model,
) -> Result<(), TestCaseError> {
    prop_assert_eq!(w.booking.clock().now(), ts(m.now));
    check_queue(w, m).await?;
    check_seats(w, m).await?;
    check_money(w, m).await
}

/// I3 (first come, first served) and I4 (capacity), and the queue against the model.
pub(super) async fn check_queue<S: Store>(w: &World<S>, m: &Model) -> Result<(), TestCaseError> {
    let store = w.booking.store();
    let now = ts(m.now);
    let c = store.counters().await.map_err(storage)?;
    prop_assert_eq!(c.last_seq, m.entries.len() as u64);
    prop_assert_eq!(c.serving, m.serving);
    prop_assert_eq!(c.paused, m.paused);
    prop_assert_eq!(c.last_tick_at, m.last_tick_at.map(ts));

    // I3: sequences 1..=last_seq, no gap; the admitted ones are a prefix, admitted
    // in issue order.
    let mut waiting_seen = false;
    let mut last_admitted = None;
    for seq in 1..=c.last_seq {
        let e = store
            .entry(QueueSeq::new(seq).unwrap())
            .await
            .map_err(storage)?
            .ok_or_else(|| fail(format!("I3: sequence {seq} is missing")))?;
        prop_assert_eq!(e.seq.get(), seq);
        match e.admitted_at {
            Some(at) => {
                prop_assert!(
                    !waiting_seen,
                    "I3: {} admitted while an earlier one waits",
                    seq
                );
                prop_assert!(
                    last_admitted <= Some(at),
                    "I3: {} admitted before an earlier sequence",
                    seq
                );
                last_admitted = Some(at);
            }
            None => waiting_seen = true,
        }
        prop_assert_eq!(
            e.admitted_at.is_some(),
            seq <= c.serving,
            "I3: admitted exactly up to the serving counter"
        );
        let me = m.entry(seq);
        prop_assert_eq!(e.user, w.users[me.user]);
        prop_assert_eq!(e.token_id, me.claims.token_id);
        prop_assert_eq!(e.issued_at, me.claims.issued_at);
        prop_assert_eq!(e.state, me.state, "entry {}", seq);
        prop_assert_eq!(e.admitted_at, me.admitted_at.map(ts), "entry {}", seq);
        prop_assert_eq!(e.seen_at, me.seen_at.map(ts), "entry {}", seq);
        prop_assert_eq!(e.expires_at, me.expires_at.map(ts), "entry {}", seq);
    }
    let next = QueueSeq::new(c.last_seq + 1).unwrap();
    prop_assert!(store.entry(next).await.map_err(storage)?.is_none());

    // I4: never more active users than the cap.
    let n_active = store.count_active(now).await.map_err(storage)?;
    prop_assert!(n_active <= CAP, "I4: {} active, cap {}", n_active, CAP);
    prop_assert_eq!(n_active, m.n_active());

    // A user holds one place at most; the poll of the newest token agrees.
    for user in 0..N_USERS {
        let seqs = m.seqs_of(user);
        let live = seqs.iter().filter(|s| m.entry(**s).live_at(m.now)).count();
        prop_assert!(live <= 1, "user {} has {} live places", user, live);
        if let Some(seq) = seqs.last() {
            let view = w
                .booking
                .queue_status(&m.entry(*seq).token)
                .await
                .map_err(storage)?;
            prop_assert_eq!(view.claims, m.entry(*seq).claims);
            if let QueueStatus::Waiting { eta, .. } = view.status {
                prop_assert!(eta.is_some(), "a rate policy always gives an ETA");
            }
            prop_assert_eq!(without_eta(view.status), m.status(*seq));
        }
    }
    Ok(())
}

/// I1 (one seat, one owner) and I5 (pay once), and seats, holds and sales against
/// the model.
pub(super) async fn check_seats<S: Store>(w: &World<S>, m: &Model) -> Result<(), TestCaseError> {
    let store = w.booking.store();
    let now = ts(m.now);
    let holds = all_reservations(w).await?;
    let payments = all_payments(w).await?;
    let model_res: HashMap<ReservationId, usize> = (0..m.reservations.len())
        .map(|r| (m.reservations[r].id, r))
        .collect();

    // Every reservation, as the model knows it.
    prop_assert_eq!(holds.len(), m.reservations.len());
    for h in &holds {
        let r = *model_res
            .get(&h.id)
            .ok_or_else(|| fail(format!("unknown reservation {h:?}")))?;
        let res = &m.reservations[r];
        prop_assert_eq!(h.user, w.users[res.user]);
        prop_assert_eq!(h.schedule, w.schedule(res.sched));
        prop_assert_eq!(h.seat, seat_no(res.seat));
        prop_assert_eq!(h.price, amount(res.price));
        prop_assert_eq!(h.expires_at, ts(res.expires_at));
        prop_assert_eq!(h.state_at(now), m.res_state(r), "reservation {:?}", h.id);
    }

    // I5: a reservation is paid at most once, by its holder, at its price; I1: no
    // seat is in two payments.
    let mut paid = HashSet::new();
    let mut sold = HashSet::new();
    let by_id: HashMap<ReservationId, &Hold> = holds.iter().map(|h| (h.id, h)).collect();
    for p in &payments {
        prop_assert!(!p.seats.is_empty(), "a payment has its seats");
        prop_assert_eq!(
            (p.seats[0].reservation, p.seats[0].schedule, p.seats[0].seat),
            (p.reservation, p.schedule, p.seat),
            "the payment names its first seat"
        );
        let total: i64 = p.seats.iter().map(|s| s.price.minor_units()).sum();
        prop_assert_eq!(total, p.amount.minor_units(), "I2: the total of its seats");
        for seat in &p.seats {
            prop_assert!(
                paid.insert(seat.reservation),
                "I5: reservation paid twice: {:?}",
                p
            );
            prop_assert!(
                sold.insert((seat.schedule, seat.seat)),
                "I1: seat sold twice: {:?}",
                p
            );
            let h = by_id
                .get(&seat.reservation)
                .ok_or_else(|| fail(format!("payment of an unknown reservation: {p:?}")))?;
            prop_assert_eq!(h.state, HoldState::Paid, "I5: a paid reservation says Paid");
            prop_assert_eq!(h.user, p.user, "I5: only the holder pays");
            prop_assert_eq!((h.schedule, h.seat), (seat.schedule, seat.seat));
            prop_assert_eq!(h.price, seat.price);
            prop_assert!(p.paid_at < h.expires_at, "I5: paid before the hold lapsed");
        }
    }
    prop_assert_eq!(payments.len(), m.payments.len());
    for p in &m.payments {
        prop_assert!(payments.contains(p), "payment {:?} is lost", p);
    }
    prop_assert_eq!(
        holds.iter().filter(|h| h.state == HoldState::Paid).count(),
        paid.len(),
        "every paid reservation has a payment"
    );

    // I1 seat by seat: at most one live hold or one sale, as the model says.
    let live_ids: HashSet<ReservationId> = w
        .booking
        .live_holds()
        .await
        .map_err(storage)?
        .iter()
        .map(|h| h.id)
        .collect();
    let live: Vec<&Hold> = holds.iter().filter(|h| h.is_live_at(now)).collect();
    prop_assert_eq!(
        &live_ids,
        &live.iter().map(|h| h.id).collect::<HashSet<_>>(),
        "live_holds lists exactly the live holds"
    );
    let sales = w.booking.sales(w.concert).await.map_err(storage)?;
    prop_assert_eq!(sales.len(), 2);
    let mut bookable = Vec::new();
    for (d, sid) in w.schedules.iter().enumerate() {
        let seats = store.seats(*sid, now).await.map_err(storage)?;
        prop_assert_eq!(seats.len(), usize::from(N_SEATS));
        let (mut n_free, mut n_held, mut n_sold, mut revenue) = (0, 0, 0, 0);
        for seat in &seats {
            let n = seat.no.get();
            prop_assert_eq!(seat.price, amount(PRICES[usize::from(n) - 1]));
            let live_here: Vec<&&Hold> = live
                .iter()
                .filter(|h| h.schedule == *sid && h.seat == seat.no)
                .collect();
            let is_sold = seat.state == SeatState::Sold;
            prop_assert!(
                live_here.len() + usize::from(is_sold) <= 1,
                "I1: schedule {} seat {}: {} live holds, sold {}",
                sid,
                n,
                live_here.len(),
                is_sold
            );
            prop_assert_eq!(
                is_sold,
                sold.contains(&(*sid, seat.no)),
                "I1: a seat is sold exactly when it has a payment"
            );
            if let SeatState::Held { until } = seat.state {
                prop_assert!(
                    live_here.len() == 1 && live_here[0].expires_at == until,
                    "I1: a held seat has its one live hold"
                );
            }
            let expected = if m.sold.contains_key(&(d, n)) {
                SeatState::Sold
            } else if let Some(r) = m.live_hold_on(d, n) {
                SeatState::Held {
                    until: ts(m.reservations[r].expires_at),
                }
            } else {
                SeatState::Free
            };
            prop_assert_eq!(seat.state, expected, "schedule {} seat {}", sid, n);
            match seat.state {
                SeatState::Free => n_free += 1,
                SeatState::Held { .. } => n_held += 1,
                SeatState::Sold => {
                    n_sold += 1;
                    revenue += seat.price.minor_units();
                }
            }
        }
        let s = sales[d];
        prop_assert_eq!(s.schedule.id, *sid);
        prop_assert_eq!(
            (s.n_free, s.n_held, s.n_sold, s.revenue),
            (n_free, n_held, n_sold, money(revenue))
        );
        if m.is_open(d) && n_free > 0 {
            bookable.push(*sid);
        }
    }
    let dates = w.booking.bookable_dates(w.concert).await.map_err(storage)?;
    prop_assert_eq!(
        dates.iter().map(|s| s.schedule.id).collect::<Vec<_>>(),
        bookable,
        "bookable dates: open, with a free seat"
    );
    Ok(())
}

/// I2: money is conserved, every change has its ledger row.
pub(super) async fn check_money<S: Store>(w: &World<S>, m: &Model) -> Result<(), TestCaseError> {
    let store = w.booking.store();
    for user in 0..N_USERS {
        let uid = w.users[user];
        let balance = store.balance(uid).await.map_err(storage)?;
        let mut ledger = store.ledger(uid, ALL).await.map_err(storage)?;
        ledger.reverse();
        let payments = store.payments_of(uid, ALL).await.map_err(storage)?;

        // The ledger replays to the balance, row by row. (A balance is a `Money`,
        // which cannot be negative; an overdraft would show here as a running sum
        // that no `balance_after` can equal.)
        let mut running = 0i64;
        let mut charged = 0i64;
        let mut debited: HashMap<PaymentId, i64> = HashMap::new();
        let mut last_id = None;
        for row in &ledger {
            prop_assert_eq!(row.user, uid);
            prop_assert!(last_id < Some(row.id), "I2: ledger ids increase");
            last_id = Some(row.id);
            running += row.delta();
            prop_assert_eq!(
                row.balance_after.minor_units(),
                running,
                "I2: balance_after of row {} of user {}",
                row.id,
                user
            );
            match row.kind {
                LedgerKind::Charge => charged += row.amount.minor_units(),
                LedgerKind::Payment(p) => {
                    prop_assert!(
                        debited.insert(p, row.amount.minor_units()).is_none(),
                        "I2: payment {} debited twice",
                        p
                    );
                }
            }
        }
        prop_assert_eq!(running, balance.minor_units(), "I2: sum of deltas");

        // balance = charges - payments, and each payment has its one ledger row.
        let paid: i64 = payments.iter().map(|p| p.amount.minor_units()).sum();
        prop_assert_eq!(balance.minor_units(), charged - paid, "I2: user {}", user);
        prop_assert_eq!(debited.len(), payments.len());
        for p in &payments {
            prop_assert_eq!(
                debited.get(&p.id).copied(),
                Some(p.amount.minor_units()),
                "I2: the ledger row of payment {}",
                p.id
            );
        }
        prop_assert!(balance <= money(MAX_BALANCE));

        // And the model agrees.
        prop_assert_eq!(balance, money(m.balance[user]), "balance of user {}", user);
        let rows: Vec<RowM> = ledger
            .iter()
            .map(|e| RowM {
                kind: e.kind,
                amount: e.amount.minor_units(),
                balance_after: e.balance_after.minor_units(),
                at: e.at.as_millis(),
                key: e.key.clone(),
            })
            .collect();
        prop_assert_eq!(&rows, &m.ledger[user], "ledger of user {}", user);
    }
    Ok(())
}
