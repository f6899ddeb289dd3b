//! The wallet: the charge statement, balances and the ledger (`WalletRepo`).

use booking_core::StoreError;
use booking_core::domain::{IdempotencyKey, LedgerEntry, Money, UserId};
use booking_core::ports::{ChargeReceipt, ChargeRepoError, ChargeRequest, WalletRepo};
use sqlx::{Executor, Postgres};

use crate::columns::ledger_cols;
use crate::convert::{self as cv, pg_err as db};
use crate::rows::{StoredRow, ledger_of};

use super::{MAX_ATTEMPTS, PgStore, contention, retryable, unique_on};

/// Charge in one statement. `prior` is the user's charge with this key in the
/// snapshot: when there is one, it is the answer and nothing is written. Otherwise
/// the wallet is created or credited with a conditional upsert (the wallet's row
/// lock serializes the user's charges, and the condition is re-checked on the newest
/// balance) and the ledger row is written from its result. A racing request with the
/// same key fails the unique (user, key) index and is retried, to find `prior`.
const CHARGE: &str = concat!(
    "WITH prior AS (
        SELECT ",
    ledger_cols!(),
    " FROM ledger WHERE user_id = $1 AND idem_key = $2
    ), w AS (
        INSERT INTO wallets AS wl (user_id, balance)
        SELECT $1, $3 WHERE $3 <= $4 AND NOT EXISTS (SELECT 1 FROM prior)
        ON CONFLICT (user_id) DO UPDATE SET balance = wl.balance + excluded.balance
        WHERE wl.balance <= $4 - excluded.balance
        RETURNING balance
    ), l AS (
        INSERT INTO ledger (user_id, kind, amount, balance_after, at, idem_key)
        SELECT $1, 'charge', $3, w.balance, $5, $2 FROM w
        RETURNING ",
    ledger_cols!(),
    "
    )
    SELECT ",
    ledger_cols!(),
    ", TRUE AS replayed FROM prior
    UNION ALL
    SELECT ",
    ledger_cols!(),
    ", FALSE AS replayed FROM l"
);

pub(super) async fn balance_of<'c, E>(ex: E, user: UserId) -> Result<Money, StoreError>
where
    E: Executor<'c, Database = Postgres>,
{
    let b: Option<i64> = sqlx::query_scalar("SELECT balance FROM wallets WHERE user_id = $1")
        .bind(user.as_uuid())
        .fetch_optional(ex)
        .await
        .map_err(db)?;
    cv::money(b.unwrap_or(0))
}

impl WalletRepo for PgStore {
    async fn charge(&self, req: ChargeRequest) -> Result<ChargeReceipt, ChargeRepoError> {
        for _ in 0..MAX_ATTEMPTS {
            let row = sqlx::query(CHARGE)
                .bind(req.user.as_uuid())
                .bind(req.key.as_ref().map(IdempotencyKey::as_str))
                .bind(req.amount.minor_units())
                .bind(req.max_balance.minor_units())
                .bind(req.now.as_millis())
                .fetch_optional(&self.pool)
                .await;
            let row = match row {
                Ok(row) => row,
                Err(e) if retryable(&e) || unique_on(&e, "ledger_charge_key") => continue,
                Err(e) => return Err(db(e).into()),
            };
            let Some(row) = row else {
                let balance = balance_of(&self.pool, req.user).await?;
                return Err(ChargeRepoError::BalanceLimit { balance });
            };
            let entry = ledger_of(&row)?;
            let replayed = row.flag("replayed")?;
            if replayed && entry.amount != req.amount {
                return Err(ChargeRepoError::KeyReused);
            }
            return Ok(ChargeReceipt { entry, replayed });
        }
        Err(contention("charge").into())
    }

    async fn balance(&self, user: UserId) -> Result<Money, StoreError> {
        balance_of(&self.pool, user).await
    }

    async fn ledger(&self, user: UserId, limit: u32) -> Result<Vec<LedgerEntry>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            ledger_cols!(),
            " FROM ledger WHERE user_id = $1 ORDER BY id DESC LIMIT $2"
        ))
        .bind(user.as_uuid())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter().map(ledger_of).collect()
    }
}
