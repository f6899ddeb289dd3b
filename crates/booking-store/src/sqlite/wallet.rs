//! The wallet: the charge statement, balances and the ledger (`WalletRepo`).

use booking_core::StoreError;
use booking_core::domain::{LedgerEntry, Money, UserId};
use booking_core::ports::{ChargeReceipt, ChargeRepoError, ChargeRequest, WalletRepo};

use crate::columns::ledger_cols;
use crate::convert::{self as cv, is_unique_violation, sqlite_err as db};
use crate::rows::ledger_of;

use super::group_commit::{Arg, HotWrite};
use super::{Query, SqliteStore, Tx, commit, first};

/// Inserts the charge's ledger row only if the balance stays within the maximum.
pub(super) const CHARGE_SQL: &str = concat!(
    "INSERT INTO ledger (user_id, kind, amount, balance_after, at, idem_key)
     SELECT ?1, 'charge', ?2, b.balance + ?2, ?3, ?4
     FROM (SELECT coalesce((SELECT balance FROM wallets WHERE user_id = ?1), 0) AS balance) b
     WHERE b.balance + ?2 <= ?5
     RETURNING ",
    ledger_cols!()
);

/// The charge statement's parameters, ?1 to ?5.
pub(super) fn charge_args(req: &ChargeRequest) -> Vec<Arg> {
    vec![
        Arg::Uuid(req.user.as_uuid()),
        Arg::Int(req.amount.minor_units()),
        Arg::Int(req.now.as_millis()),
        Arg::Text(req.key.as_ref().map(|k| k.as_str().to_owned())),
        Arg::Int(req.max_balance.minor_units()),
    ]
}

pub(super) fn charge_statement(req: &ChargeRequest) -> Query<'static> {
    Arg::bind_numbered(sqlx::query(CHARGE_SQL), charge_args(req))
}

pub(super) async fn balance_in(tx: &mut Tx, user: UserId) -> Result<Money, StoreError> {
    let b: Option<i64> = sqlx::query_scalar("SELECT balance FROM wallets WHERE user_id = ?")
        .bind(user.as_uuid())
        .fetch_optional(&mut **tx)
        .await
        .map_err(db)?;
    cv::money(b.unwrap_or(0))
}

impl WalletRepo for SqliteStore {
    async fn charge(&self, req: ChargeRequest) -> Result<ChargeReceipt, ChargeRepoError> {
        // The hot path: one statement (its trigger sets the wallet's balance). A key
        // used before fails the unique index and takes the slow path, which replays.
        match self.hot.run(HotWrite::Charge(req.clone())).await {
            Ok(Some(row)) => {
                return Ok(ChargeReceipt {
                    entry: ledger_of(&row)?,
                    replayed: false,
                });
            }
            Ok(None) => {}
            Err(e) if is_unique_violation(&e) => {}
            Err(e) => return Err(db(e).into()),
        }
        let mut tx = self.begin().await?;
        if let Some(key) = &req.key {
            let first = sqlx::query(concat!(
                "SELECT ",
                ledger_cols!(),
                " FROM ledger WHERE user_id = ? AND idem_key = ?"
            ))
            .bind(req.user.as_uuid())
            .bind(key.as_str())
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?;
            if let Some(first) = first {
                let entry = ledger_of(&first)?;
                if entry.amount != req.amount {
                    return Err(ChargeRepoError::KeyReused);
                }
                return Ok(ChargeReceipt {
                    entry,
                    replayed: true,
                });
            }
        }
        let Some(row) = charge_statement(&req)
            .fetch_all(&mut *tx)
            .await
            .map(first)
            .map_err(db)?
        else {
            let balance = balance_in(&mut tx, req.user).await?;
            return Err(ChargeRepoError::BalanceLimit { balance });
        };
        let entry = ledger_of(&row)?;
        commit(tx).await?;
        Ok(ChargeReceipt {
            entry,
            replayed: false,
        })
    }

    async fn balance(&self, user: UserId) -> Result<Money, StoreError> {
        let b: Option<i64> = sqlx::query_scalar("SELECT balance FROM wallets WHERE user_id = ?")
            .bind(user.as_uuid())
            .fetch_optional(&self.read)
            .await
            .map_err(db)?;
        cv::money(b.unwrap_or(0))
    }

    async fn ledger(&self, user: UserId, limit: u32) -> Result<Vec<LedgerEntry>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            ledger_cols!(),
            " FROM ledger WHERE user_id = ? ORDER BY id DESC LIMIT ?"
        ))
        .bind(user.as_uuid())
        .bind(i64::from(limit))
        .fetch_all(&self.read)
        .await
        .map_err(db)?;
        rows.iter().map(ledger_of).collect()
    }
}
