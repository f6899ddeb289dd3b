//! Payment (R5): the holds become a sale, the balance pays, the token ends.

use super::Booking;
use crate::clock::Clock;
use crate::domain::{
    HoldState, IdempotencyKey, Payment, PaymentId, ReservationId, SeatState, UserId,
};
use crate::error::PayError;
use crate::ports::{PayManyRequest, PayRepoError, PayRequest, Store, StoreError};
use crate::token::TokenClaims;

/// The most reservations one payment may name: the largest hold cap a
/// configuration allows (a user cannot hold more at once).
pub const MAX_PAID_AT_ONCE: usize = 50;

/// The result of [`Booking::pay`] and [`Booking::pay_all`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentReceipt {
    /// The payment.
    pub payment: Payment,
    /// `true` when a retry with the same idempotency key returned the first result.
    pub replayed: bool,
}

impl<S: Store, C: Clock> Booking<S, C> {
    /// Pays the caller's live hold from their balance, in one transaction: debit,
    /// seat sold, reservation paid, payment and ledger rows, session ended, and the
    /// caller's other holds released (their seats are free at once).
    ///
    /// It takes the token rather than an [`super::Admitted`]: a retry with the same
    /// idempotency key must return the first result even though that payment ended
    /// the token. The signature is checked first; the gate runs for everything else.
    ///
    /// # Errors
    /// [`PayError::Gate`] when the token is not valid or does not pass the gate,
    /// [`PayError::NotFound`], [`PayError::NotYours`], [`PayError::AlreadyPaid`],
    /// [`PayError::HoldExpired`], [`PayError::SeatSold`] (expired, and the seat sold
    /// since), [`PayError::Cancelled`], [`PayError::InsufficientBalance`],
    /// [`PayError::SessionEnded`], [`PayError::KeyReused`] when the key paid other
    /// reservations.
    pub async fn pay(
        &self,
        token: &str,
        reservation: ReservationId,
        key: Option<IdempotencyKey>,
    ) -> Result<PaymentReceipt, PayError> {
        self.pay_all(token, &[reservation], key).await
    }

    /// Pays several of the caller's live holds in one payment, all or nothing: one
    /// payment with every seat, one debit and one ledger row of the total, the
    /// session ended once. With one reservation it is [`Booking::pay`].
    ///
    /// # Errors
    /// As [`Booking::pay`]; a refusal about one of several reservations is
    /// [`PayError::Reservation`], naming it; [`PayError::BadList`] when the list is
    /// empty, names a reservation twice, or is longer than [`MAX_PAID_AT_ONCE`].
    pub async fn pay_all(
        &self,
        token: &str,
        reservations: &[ReservationId],
        key: Option<IdempotencyKey>,
    ) -> Result<PaymentReceipt, PayError> {
        self.check_list(reservations)?;
        let claims = &self
            .signer
            .verify(token)
            .map_err(|e| PayError::Gate(e.into()))?;
        if let Some(k) = &key
            && let Some(first) = self.replay(claims.user, k, reservations).await?
        {
            return Ok(first);
        }
        let who = self.admit_for_write(claims).await?;
        let now = self.now();
        let paid = if let [reservation] = reservations {
            let req = PayRequest {
                id: PaymentId::random(),
                reservation: *reservation,
                user: who.user(),
                session: who.seq(),
                key: key.clone(),
                now,
            };
            self.store
                .pay(req)
                .await
                .map_err(|why| (Some(*reservation), why))
        } else {
            let req = PayManyRequest {
                id: PaymentId::random(),
                reservations: reservations.to_vec(),
                user: who.user(),
                session: who.seq(),
                key: key.clone(),
                now,
            };
            self.store
                .pay_many(req)
                .await
                .map_err(|e| (e.reservation, e.why))
        };
        let (about, e) = match paid {
            Ok(payment) => {
                self.forget_session(who.seq());
                super::activity::ActivityCounters::add(&self.activity.sessions_paid, 1);
                // The seats paid are sold. The payer's other holds it released show
                // as free in this instance's seat maps and sold-out mark when those
                // are next refreshed (as a write through another instance would).
                for s in &payment.seats {
                    self.forget_seat_map(s.schedule);
                }
                return Ok(PaymentReceipt {
                    payment,
                    replayed: false,
                });
            }
            Err(refused) => refused,
        };
        // A concurrent retry with the same key may have won the race: then its
        // result is ours too.
        if let Some(k) = &key
            && matches!(
                e,
                PayRepoError::NotHeld(_) | PayRepoError::KeyReused | PayRepoError::SessionEnded
            )
            && let Some(first) = self.replay(claims.user, k, reservations).await?
        {
            return Ok(first);
        }
        // A remembered session skipped the gate, whose refusal comes before these
        // (the store checks the session after the reservations). And a hold found
        // lapsed may have been released by a payment that ended the session since
        // the gate let this request in: then the ended session is the answer.
        if (who.remembered() || e == PayRepoError::NotHeld(HoldState::Expired))
            && !matches!(
                e,
                PayRepoError::InsufficientBalance { .. } | PayRepoError::Store(_)
            )
            && let Some(why) = self.why_ended(&who).await
        {
            return Err(PayError::Gate(why));
        }
        let err = match e {
            PayRepoError::NotFound => PayError::NotFound,
            PayRepoError::NotYours => PayError::NotYours,
            PayRepoError::NotHeld(HoldState::Paid) => PayError::AlreadyPaid,
            PayRepoError::NotHeld(HoldState::Cancelled) => PayError::Cancelled,
            PayRepoError::NotHeld(_) => match about {
                Some(id) if self.seat_sold_since(id).await? => PayError::SeatSold,
                _ => PayError::HoldExpired,
            },
            PayRepoError::InsufficientBalance { balance, price } => {
                PayError::InsufficientBalance { balance, price }
            }
            PayRepoError::SessionEnded => PayError::SessionEnded,
            PayRepoError::KeyReused => PayError::KeyReused,
            PayRepoError::Store(s) => PayError::Store(s),
        };
        Err(match about {
            Some(reservation) if reservations.len() > 1 => PayError::Reservation {
                reservation,
                error: Box::new(err),
            },
            _ => err,
        })
    }

    /// A list of reservations to pay: one at least, each once, at most
    /// [`MAX_PAID_AT_ONCE`].
    fn check_list(&self, reservations: &[ReservationId]) -> Result<(), PayError> {
        if reservations.is_empty() {
            return Err(PayError::BadList("name at least one reservation".into()));
        }
        if reservations.len() > MAX_PAID_AT_ONCE {
            return Err(PayError::BadList(format!(
                "at most {MAX_PAID_AT_ONCE} reservations can be paid at once"
            )));
        }
        for (i, id) in reservations.iter().enumerate() {
            if reservations[..i].contains(id) {
                return Err(PayError::BadList(format!(
                    "reservation {id} is named twice"
                )));
            }
        }
        Ok(())
    }

    /// Whether the seat of expired reservation `id` is sold now (to anyone: a
    /// payment of the reservation itself is `AlreadyPaid`, named before this).
    async fn seat_sold_since(&self, id: ReservationId) -> Result<bool, StoreError> {
        let Some(hold) = self.store.reservation(id).await? else {
            return Ok(false);
        };
        let seats = self.store.seats(hold.schedule, self.now()).await?;
        Ok(seats
            .iter()
            .any(|s| s.no == hold.seat && s.state == SeatState::Sold))
    }

    /// The first payment made with `key`, if any: the same reservations replay it,
    /// different ones are a reused key.
    async fn replay(
        &self,
        user: UserId,
        key: &IdempotencyKey,
        reservations: &[ReservationId],
    ) -> Result<Option<PaymentReceipt>, PayError> {
        match self.store.payment_by_key(user, key).await? {
            Some(p) if p.pays_exactly(reservations) => Ok(Some(PaymentReceipt {
                payment: p,
                replayed: true,
            })),
            Some(_) => Err(PayError::KeyReused),
            None => Ok(None),
        }
    }

    /// The user's payments, newest first, each with its seats.
    ///
    /// # Errors
    /// Only storage failures.
    pub async fn payments(&self, user: UserId) -> Result<Vec<Payment>, StoreError> {
        self.store.payments_of(user, self.config.list_limit).await
    }

    /// The payments of a token's user, readable with any validly signed token of
    /// theirs, ended or not (like the wallet).
    ///
    /// # Errors
    /// Only storage failures.
    pub async fn payments_of_token(
        &self,
        claims: &TokenClaims,
    ) -> Result<Vec<Payment>, StoreError> {
        self.payments(claims.user).await
    }
}
