//! Payment (R5): the hold becomes a sale, the balance pays, the token ends.

use super::Booking;
use crate::clock::Clock;
use crate::domain::{HoldState, IdempotencyKey, Payment, PaymentId, ReservationId, UserId};
use crate::error::PayError;
use crate::ports::{PayRepoError, PayRequest, Store, StoreError};

/// The result of [`Booking::pay`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentReceipt {
    /// The payment.
    pub payment: Payment,
    /// `true` when a retry with the same idempotency key returned the first result.
    pub replayed: bool,
}

impl<S: Store, C: Clock> Booking<S, C> {
    /// Pays the caller's live hold from their balance, in one transaction: debit,
    /// seat sold, reservation paid, payment and ledger rows, session ended.
    ///
    /// It takes the token rather than an [`super::Admitted`]: a retry with the same
    /// idempotency key must return the first result even though that payment ended
    /// the token. The signature is checked first; the gate runs for everything else.
    ///
    /// # Errors
    /// [`PayError::Gate`] when the token is not valid or does not pass the gate,
    /// [`PayError::NotFound`], [`PayError::NotYours`], [`PayError::AlreadyPaid`],
    /// [`PayError::HoldExpired`], [`PayError::Cancelled`],
    /// [`PayError::InsufficientBalance`], [`PayError::SessionEnded`],
    /// [`PayError::KeyReused`] when the key paid another reservation.
    pub async fn pay(
        &self,
        token: &str,
        reservation: ReservationId,
        key: Option<IdempotencyKey>,
    ) -> Result<PaymentReceipt, PayError> {
        let claims = &self
            .signer
            .verify(token)
            .map_err(|e| PayError::Gate(e.into()))?;
        if let Some(k) = &key
            && let Some(first) = self.replay(claims.user, k, reservation).await?
        {
            return Ok(first);
        }
        let who = self.admit_for_write(claims).await?;
        let req = PayRequest {
            id: PaymentId::random(),
            reservation,
            user: who.user(),
            session: who.seq(),
            key: key.clone(),
            now: self.now(),
        };
        match self.store.pay(req).await {
            Ok(payment) => {
                self.forget_session(who.seq());
                self.forget_seat_map(payment.schedule);
                Ok(PaymentReceipt {
                    payment,
                    replayed: false,
                })
            }
            Err(e) => {
                // A concurrent retry with the same key may have won the race: then
                // its result is ours too.
                if let Some(k) = &key
                    && matches!(
                        e,
                        PayRepoError::NotHeld(_)
                            | PayRepoError::KeyReused
                            | PayRepoError::SessionEnded
                    )
                    && let Some(first) = self.replay(claims.user, k, reservation).await?
                {
                    return Ok(first);
                }
                // A remembered session skipped the gate, whose refusal comes before
                // these (the store checks the session after the reservation).
                if who.remembered()
                    && !matches!(
                        e,
                        PayRepoError::InsufficientBalance { .. } | PayRepoError::Store(_)
                    )
                    && let Some(why) = self.why_ended(&who).await
                {
                    return Err(PayError::Gate(why));
                }
                Err(match e {
                    PayRepoError::NotFound => PayError::NotFound,
                    PayRepoError::NotYours => PayError::NotYours,
                    PayRepoError::NotHeld(HoldState::Paid) => PayError::AlreadyPaid,
                    PayRepoError::NotHeld(HoldState::Cancelled) => PayError::Cancelled,
                    PayRepoError::NotHeld(_) => PayError::HoldExpired,
                    PayRepoError::InsufficientBalance { balance, price } => {
                        PayError::InsufficientBalance { balance, price }
                    }
                    PayRepoError::SessionEnded => PayError::SessionEnded,
                    PayRepoError::KeyReused => PayError::KeyReused,
                    PayRepoError::Store(s) => PayError::Store(s),
                })
            }
        }
    }

    /// The first payment made with `key`, if any: the same reservation replays it, a
    /// different one is a reused key.
    async fn replay(
        &self,
        user: UserId,
        key: &IdempotencyKey,
        reservation: ReservationId,
    ) -> Result<Option<PaymentReceipt>, PayError> {
        match self.store.payment_by_key(user, key).await? {
            Some(p) if p.reservation == reservation => Ok(Some(PaymentReceipt {
                payment: p,
                replayed: true,
            })),
            Some(_) => Err(PayError::KeyReused),
            None => Ok(None),
        }
    }

    /// The user's payments, newest first.
    ///
    /// # Errors
    /// Only storage failures.
    pub async fn payments(&self, user: UserId) -> Result<Vec<Payment>, StoreError> {
        self.store.payments_of(user, self.config.list_limit).await
    }
}
