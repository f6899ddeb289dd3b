//! The prepaid wallet (R4): charge, balance, ledger.

use super::Booking;
use crate::clock::Clock;
use crate::domain::{Amount, IdempotencyKey, LedgerEntry, Money, UserId};
use crate::error::ChargeError;
use crate::ports::{ChargeReceipt, ChargeRepoError, ChargeRequest, Store, StoreError};
use crate::token::TokenClaims;

impl<S: Store, C: Clock> Booking<S, C> {
    /// Adds `amount` to the user's balance and writes its ledger row.
    ///
    /// With a `key`, a retry returns the first receipt (`replayed = true`) and adds
    /// nothing.
    ///
    /// # Errors
    /// [`ChargeError::AboveMaxCharge`], [`ChargeError::BalanceLimit`],
    /// [`ChargeError::KeyReused`] when the key was used for another amount.
    pub async fn charge(
        &self,
        user: UserId,
        amount: Amount,
        key: Option<IdempotencyKey>,
    ) -> Result<ChargeReceipt, ChargeError> {
        let max = self.config.max_charge;
        if amount > max {
            return Err(ChargeError::AboveMaxCharge { max });
        }
        let req = ChargeRequest {
            user,
            amount,
            max_balance: self.config.max_balance,
            key,
            now: self.now(),
        };
        self.store.charge(req).await.map_err(|e| match e {
            ChargeRepoError::BalanceLimit { balance } => ChargeError::BalanceLimit {
                balance,
                max: self.config.max_balance,
            },
            ChargeRepoError::KeyReused => ChargeError::KeyReused,
            ChargeRepoError::Store(s) => ChargeError::Store(s),
        })
    }

    /// [`Booking::charge`] for the user of a signed token whose place has not
    /// ended: a token ended by a payment (or lapsed) can read the wallet, not add to
    /// it. A waiting token may charge.
    ///
    /// # Errors
    /// [`ChargeError::Gate`] with [`crate::GateError::Ended`] when a payment ended the
    /// token, [`crate::GateError::Expired`] when it lapsed, [`crate::GateError::UnknownToken`];
    /// else as [`Booking::charge`].
    pub async fn charge_with_token(
        &self,
        claims: &TokenClaims,
        amount: Amount,
        key: Option<IdempotencyKey>,
    ) -> Result<ChargeReceipt, ChargeError> {
        self.place_not_ended(claims).await?;
        self.charge(claims.user, amount, key).await
    }

    /// The user's balance (0 if they never charged).
    ///
    /// # Errors
    /// Only storage failures.
    pub async fn balance(&self, user: UserId) -> Result<Money, StoreError> {
        self.store.balance(user).await
    }

    /// The user's ledger, newest first.
    ///
    /// # Errors
    /// Only storage failures.
    pub async fn ledger(&self, user: UserId) -> Result<Vec<LedgerEntry>, StoreError> {
        self.store.ledger(user, self.config.list_limit).await
    }
}
