//! Payment: the payment statement, payments of several holds, payments read
//! back (`PaymentRepo`).

use booking_core::StoreError;
use booking_core::domain::{Amount, HoldState, IdempotencyKey, PaidSeat, Payment, UserId};
use booking_core::ports::{
    PayManyRepoError, PayManyRequest, PayRepoError, PayRequest, PaymentRepo,
};
use sqlx::sqlite::SqlitePool;
use uuid::Uuid;

use crate::columns::payment_cols;
use crate::convert::{self as cv, is_unique_violation, sqlite_err as db};
use crate::rows::{other_seat_of, payment_of};

use super::group_commit::{Arg, HotWrite};
use super::holds::hold_in;
use super::queue::session_active;
use super::wallet::balance_in;
use super::{Query, SqliteStore, commit, first};

/// Inserts the payment only if the reservation is a live hold of the payer (its seat
/// names it, unsold), the session is active and the balance covers the price.
pub(super) const PAY_SQL: &str = concat!(
    "INSERT INTO payments
       (id, reservation_id, user_id, schedule_id, seat_no, amount, paid_at, idem_key,
        session_seq)
     SELECT ?1, s.hold_id, s.hold_user, s.schedule_id, s.seat_no, s.price, ?4, ?5, ?6
     FROM seats s
     WHERE s.hold_id = ?2 AND s.hold_user = ?3 AND s.sold = 0 AND s.hold_until > ?4
       AND EXISTS (SELECT 1 FROM queue_entries q
                   WHERE q.seq = ?6 AND q.user_id = ?3 AND q.state = 'live'
                     AND q.expires_at > ?4)
       AND EXISTS (SELECT 1 FROM wallets w WHERE w.user_id = ?3 AND w.balance >= s.price)
     RETURNING ",
    payment_cols!()
);

/// The payment statement's parameters, ?1 to ?6.
pub(super) fn pay_args(req: &PayRequest) -> Vec<Arg> {
    vec![
        Arg::Uuid(req.id.as_uuid()),
        Arg::Uuid(req.reservation.as_uuid()),
        Arg::Uuid(req.user.as_uuid()),
        Arg::Int(req.now.as_millis()),
        Arg::Text(req.key.as_ref().map(|k| k.as_str().to_owned())),
        Arg::Int(cv::i64_of(req.session.get())),
    ]
}

pub(super) fn pay_statement(req: &PayRequest) -> Query<'static> {
    Arg::bind_numbered(sqlx::query(PAY_SQL), pay_args(req))
}

/// The other seats of payments of several holds, of one payment (`by_user` false)
/// or of one user, in position order.
async fn other_seats(
    read: &SqlitePool,
    by_user: bool,
    id: Uuid,
) -> Result<Vec<cv::OtherSeat>, StoreError> {
    let sql = if by_user {
        "SELECT payment_id, reservation_id, schedule_id, seat_no, price FROM payment_seats
         WHERE user_id = ? ORDER BY payment_id, position"
    } else {
        "SELECT payment_id, reservation_id, schedule_id, seat_no, price FROM payment_seats
         WHERE payment_id = ? ORDER BY position"
    };
    let rows = sqlx::query(sql)
        .bind(id)
        .fetch_all(read)
        .await
        .map_err(db)?;
    rows.iter().map(other_seat_of).collect()
}

impl PaymentRepo for SqliteStore {
    async fn pay(&self, req: PayRequest) -> Result<Payment, PayRepoError> {
        // The hot path: one statement that inserts the payment only if every
        // condition holds; its trigger debits, sells the seat, closes the
        // reservation, writes the ledger row and ends the session, each step
        // checked to change exactly one row.
        match self.hot.run(HotWrite::Pay(req.clone())).await {
            Ok(Some(row)) => return payment_of(&row).map_err(PayRepoError::from),
            Ok(None) => {}
            Err(e) if is_unique_violation(&e) => {}
            Err(e) => return Err(db(e).into()),
        }
        // Refused: find out why under the write lock.
        let now = req.now;
        let mut tx = self.begin().await?;
        let Some(hold) = hold_in(&mut tx, req.reservation).await? else {
            return Err(PayRepoError::NotFound);
        };
        if hold.user != req.user {
            return Err(PayRepoError::NotYours);
        }
        let state = hold.state_at(now);
        if state != HoldState::Held {
            return Err(PayRepoError::NotHeld(state));
        }
        if let Some(key) = &req.key {
            let used = sqlx::query("SELECT 1 FROM payments WHERE user_id = ? AND idem_key = ?")
                .bind(req.user.as_uuid())
                .bind(key.as_str())
                .fetch_optional(&mut *tx)
                .await
                .map_err(db)?;
            if used.is_some() {
                return Err(PayRepoError::KeyReused);
            }
        }
        if !session_active(&mut tx, req.session, req.user, now).await? {
            return Err(PayRepoError::SessionEnded);
        }
        let balance = balance_in(&mut tx, req.user).await?;
        if balance < hold.price.as_money() {
            return Err(PayRepoError::InsufficientBalance {
                balance,
                price: hold.price,
            });
        }
        let Some(row) = pay_statement(&req)
            .fetch_all(&mut *tx)
            .await
            .map(first)
            .map_err(db)?
        else {
            return Err(StoreError::Failed(format!(
                "payment of reservation {} refused with every condition met",
                hold.id
            ))
            .into());
        };
        let payment = payment_of(&row)?;
        commit(tx).await?;
        Ok(payment)
    }

    async fn pay_many(&self, req: PayManyRequest) -> Result<Payment, PayManyRepoError> {
        // Not the hot path: checked and written step by step in one transaction
        // under the write lock (SQLite's one writer), every write checked to change
        // exactly the rows it must.
        let now = req.now;
        let mut tx = self.begin().await?;
        let mut seats = Vec::with_capacity(req.reservations.len());
        for &id in &req.reservations {
            let Some(hold) = hold_in(&mut tx, id).await? else {
                return Err(PayManyRepoError::about(id, PayRepoError::NotFound));
            };
            if hold.user != req.user {
                return Err(PayManyRepoError::about(id, PayRepoError::NotYours));
            }
            let state = hold.state_at(now);
            if state != HoldState::Held {
                return Err(PayManyRepoError::about(id, PayRepoError::NotHeld(state)));
            }
            seats.push(PaidSeat {
                reservation: id,
                schedule: hold.schedule,
                seat: hold.seat,
                price: hold.price,
            });
        }
        if let Some(key) = &req.key {
            let used = sqlx::query("SELECT 1 FROM payments WHERE user_id = ? AND idem_key = ?")
                .bind(req.user.as_uuid())
                .bind(key.as_str())
                .fetch_optional(&mut *tx)
                .await
                .map_err(db)?;
            if used.is_some() {
                return Err(PayRepoError::KeyReused.into());
            }
        }
        if !session_active(&mut tx, req.session, req.user, now).await? {
            return Err(PayRepoError::SessionEnded.into());
        }
        let total = Amount::total(seats.iter().map(|s| s.price))
            .ok_or_else(|| StoreError::Failed("the total of a payment overflows".into()))?;
        let balance = balance_in(&mut tx, req.user).await?;
        if balance < total.as_money() {
            return Err(PayRepoError::InsufficientBalance {
                balance,
                price: total,
            }
            .into());
        }
        let first = seats[0];
        // The payment row names the first seat and the total; no session_seq, so
        // the single-hold trigger does not run: the steps are below.
        sqlx::query(
            "INSERT INTO payments
               (id, reservation_id, user_id, schedule_id, seat_no, amount, paid_at, idem_key)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(req.id.as_uuid())
        .bind(first.reservation.as_uuid())
        .bind(req.user.as_uuid())
        .bind(first.schedule.get())
        .bind(i64::from(first.seat.get()))
        .bind(total.minor_units())
        .bind(now.as_millis())
        .bind(req.key.as_ref().map(|k| k.as_str().to_owned()))
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        for (i, s) in seats.iter().enumerate() {
            if i > 0 {
                sqlx::query(
                    "INSERT INTO payment_seats
                       (reservation_id, payment_id, user_id, position, schedule_id, seat_no,
                        price)
                     VALUES (?, ?, ?, ?, ?, ?, ?)",
                )
                .bind(s.reservation.as_uuid())
                .bind(req.id.as_uuid())
                .bind(req.user.as_uuid())
                .bind(i as i64 + 1)
                .bind(s.schedule.get())
                .bind(i64::from(s.seat.get()))
                .bind(s.price.minor_units())
                .execute(&mut *tx)
                .await
                .map_err(db)?;
            }
            let sold = sqlx::query(
                "UPDATE seats SET sold = 1
                 WHERE schedule_id = ? AND seat_no = ? AND hold_id = ? AND hold_user = ?
                   AND sold = 0 AND hold_until > ?",
            )
            .bind(s.schedule.get())
            .bind(i64::from(s.seat.get()))
            .bind(s.reservation.as_uuid())
            .bind(req.user.as_uuid())
            .bind(now.as_millis())
            .execute(&mut *tx)
            .await
            .map_err(db)?;
            if sold.rows_affected() != 1 {
                return Err(StoreError::Failed(format!(
                    "payment {}: the seat of reservation {} was not held",
                    req.id, s.reservation
                ))
                .into());
            }
        }
        let debited = sqlx::query(
            "UPDATE wallets SET balance = balance - ?2 WHERE user_id = ?1 AND balance >= ?2",
        )
        .bind(req.user.as_uuid())
        .bind(total.minor_units())
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        sqlx::query(
            "INSERT INTO ledger (user_id, kind, payment_id, amount, balance_after, at)
             SELECT ?1, 'payment', ?2, ?3, balance, ?4 FROM wallets WHERE user_id = ?1",
        )
        .bind(req.user.as_uuid())
        .bind(req.id.as_uuid())
        .bind(total.minor_units())
        .bind(now.as_millis())
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        // The session ends after the ledger row is written: its `session.ended`
        // event takes the payment's time from it (migration 0007).
        let ended = sqlx::query(
            "UPDATE queue_entries SET state = 'done'
             WHERE seq = ? AND user_id = ? AND state = 'live'",
        )
        .bind(cv::i64_of(req.session.get()))
        .bind(req.user.as_uuid())
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        if (debited.rows_affected(), ended.rows_affected()) != (1, 1) {
            return Err(StoreError::Failed(format!(
                "payment {}: debited {} wallets and ended {} sessions",
                req.id,
                debited.rows_affected(),
                ended.rows_affected()
            ))
            .into());
        }
        // The session ended: the payer's other holds lapse now.
        sqlx::query(
            "UPDATE seats SET hold_until = ?2
             WHERE hold_user = ?1 AND sold = 0 AND hold_until > ?2",
        )
        .bind(req.user.as_uuid())
        .bind(now.as_millis())
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        commit(tx).await?;
        Ok(Payment {
            id: req.id,
            reservation: first.reservation,
            user: req.user,
            schedule: first.schedule,
            seat: first.seat,
            amount: total,
            paid_at: now,
            key: req.key,
            seats,
        })
    }

    async fn payment_by_key(
        &self,
        user: UserId,
        key: &IdempotencyKey,
    ) -> Result<Option<Payment>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            payment_cols!(),
            " FROM payments WHERE user_id = ? AND idem_key = ?"
        ))
        .bind(user.as_uuid())
        .bind(key.as_str())
        .fetch_optional(&self.read)
        .await
        .map_err(db)?;
        let Some(row) = row else {
            return Ok(None);
        };
        let mut found = [payment_of(&row)?];
        let others = other_seats(&self.read, false, found[0].id.as_uuid()).await?;
        cv::with_seats(&mut found, others)?;
        let [payment] = found;
        Ok(Some(payment))
    }

    async fn payments_of(&self, user: UserId, limit: u32) -> Result<Vec<Payment>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            payment_cols!(),
            " FROM payments WHERE user_id = ? ORDER BY paid_at DESC, rowid DESC LIMIT ?"
        ))
        .bind(user.as_uuid())
        .bind(i64::from(limit))
        .fetch_all(&self.read)
        .await
        .map_err(db)?;
        let mut payments = rows.iter().map(payment_of).collect::<Result<Vec<_>, _>>()?;
        let others = other_seats(&self.read, true, user.as_uuid()).await?;
        cv::with_seats(&mut payments, others)?;
        Ok(payments)
    }
}
