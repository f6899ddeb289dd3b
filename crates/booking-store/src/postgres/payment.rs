//! Payment: the payment function, payments of several holds, payments read back
//! (`PaymentRepo`).

use booking_core::StoreError;
use booking_core::domain::{Amount, HoldState, IdempotencyKey, PaidSeat, Payment, UserId};
use booking_core::ports::{
    PayManyRepoError, PayManyRequest, PayRepoError, PayRequest, PaymentRepo,
};
use sqlx::Row;
use sqlx::postgres::{PgPool, PgRow};
use uuid::Uuid;

use crate::columns::{hold_cols, payment_cols};
use crate::convert::{self as cv, pg_err as db};
use crate::rows::{hold_of, maybe_hold, other_seat_of, payment_of};

use super::group_commit::HotWrite;
use super::wallet::balance_of;
use super::{MAX_ATTEMPTS, PgStore, contention, retryable, unique_on};

/// The other seats of payments of several holds, of one payment (`by_user` false)
/// or of one user, in position order.
async fn other_seats(
    pool: &PgPool,
    by_user: bool,
    id: Uuid,
) -> Result<Vec<cv::OtherSeat>, StoreError> {
    let sql = if by_user {
        "SELECT payment_id, reservation_id, schedule_id, seat_no, price FROM payment_seats
         WHERE user_id = $1 ORDER BY payment_id, position"
    } else {
        "SELECT payment_id, reservation_id, schedule_id, seat_no, price FROM payment_seats
         WHERE payment_id = $1 ORDER BY position"
    };
    let rows = sqlx::query(sql)
        .bind(id)
        .fetch_all(pool)
        .await
        .map_err(db)?;
    rows.iter().map(other_seat_of).collect()
}

/// Pay in one round trip and one autocommit transaction: `booking_pay` (migration
/// 0004) reads the reservation, the key, the session and the balance to name any
/// refusal before writing anything, then writes in the lock order, each write a
/// conditional update re-checked on the row's newest version and its count checked:
/// session done, seat sold (still held by this live hold; it keeps naming it), debit
/// (`balance >= price`), payment and ledger rows. A condition that fails after a
/// write raises [`STALE`], which rolls the whole transaction back; the call is then
/// run again, and its reads name the refusal. A racing payment with the same key
/// fails the unique (user, key) index.
pub(super) const PAY: &str = "SELECT o_outcome AS outcome, o_balance AS balance, o_id AS id,
            o_user_id AS user_id, o_schedule_id AS schedule_id, o_seat_no AS seat_no,
            o_price AS price, o_created_at AS created_at, o_expires_at AS expires_at,
            o_state AS state
     FROM booking_pay($1, $2, $3, $4, $5, $6)";

/// SQLSTATE raised by the write functions when a row changed between their reads and
/// their writes: everything was rolled back, and the call may be run again.
pub(super) const STALE: &str = "BK001";

pub(super) fn stale(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.code().as_deref() == Some(STALE))
}

/// What one run of the payment function decided.
fn pay_outcome(row: &PgRow, req: &PayRequest) -> Result<Result<Payment, PayRepoError>, StoreError> {
    let outcome: String = row.try_get("outcome").map_err(db)?;
    let Some(hold) = maybe_hold(row)? else {
        return Ok(Err(PayRepoError::NotFound));
    };
    let refused = match outcome.as_str() {
        "paid" => {
            return Ok(Ok(Payment {
                id: req.id,
                reservation: hold.id,
                user: req.user,
                schedule: hold.schedule,
                seat: hold.seat,
                amount: hold.price,
                paid_at: req.now,
                key: req.key.clone(),
                seats: vec![PaidSeat {
                    reservation: hold.id,
                    schedule: hold.schedule,
                    seat: hold.seat,
                    price: hold.price,
                }],
            }));
        }
        "not_yours" => PayRepoError::NotYours,
        "not_held" => PayRepoError::NotHeld(hold.state_at(req.now)),
        "key_reused" => PayRepoError::KeyReused,
        "session_ended" => PayRepoError::SessionEnded,
        "insufficient_balance" => {
            let balance: Option<i64> = row.try_get("balance").map_err(db)?;
            PayRepoError::InsufficientBalance {
                balance: cv::money(balance.unwrap_or(0))?,
                price: hold.price,
            }
        }
        other => return Err(cv::corrupt("payment outcome", other)),
    };
    Ok(Err(refused))
}

impl PaymentRepo for PgStore {
    async fn pay(&self, req: PayRequest) -> Result<Payment, PayRepoError> {
        for _ in 0..MAX_ATTEMPTS {
            let row = self.hot.run(HotWrite::Pay(req.clone())).await;
            match row {
                Ok(row) => return pay_outcome(&row, &req)?,
                Err(e) if retryable(&e) || stale(&e) => {}
                Err(e) if unique_on(&e, "payments_key") => return Err(PayRepoError::KeyReused),
                Err(e) if unique_on(&e, "payments_reservation_id_key") => {
                    return Err(PayRepoError::NotHeld(HoldState::Paid));
                }
                Err(e) => return Err(db(e).into()),
            }
        }
        Err(contention("pay").into())
    }

    async fn pay_many(&self, req: PayManyRequest) -> Result<Payment, PayManyRepoError> {
        for _ in 0..MAX_ATTEMPTS {
            match self.pay_many_once(&req).await {
                Ok(Some(done)) => return done,
                Ok(None) => {}
                Err(e) if retryable(&e) => {}
                Err(e) if unique_on(&e, "payments_key") => {
                    return Err(PayRepoError::KeyReused.into());
                }
                Err(e) => return Err(db(e).into()),
            }
        }
        Err(contention("pay").into())
    }

    async fn payment_by_key(
        &self,
        user: UserId,
        key: &IdempotencyKey,
    ) -> Result<Option<Payment>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            payment_cols!(),
            " FROM payments WHERE user_id = $1 AND idem_key = $2"
        ))
        .bind(user.as_uuid())
        .bind(key.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        let Some(row) = row else {
            return Ok(None);
        };
        let mut found = [payment_of(&row)?];
        let others = other_seats(&self.pool, false, found[0].id.as_uuid()).await?;
        cv::with_seats(&mut found, others)?;
        let [payment] = found;
        Ok(Some(payment))
    }

    async fn payments_of(&self, user: UserId, limit: u32) -> Result<Vec<Payment>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            payment_cols!(),
            " FROM payments WHERE user_id = $1 ORDER BY paid_at DESC, row_no DESC LIMIT $2"
        ))
        .bind(user.as_uuid())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        let mut payments = rows.iter().map(payment_of).collect::<Result<Vec<_>, _>>()?;
        let others = other_seats(&self.pool, true, user.as_uuid()).await?;
        cv::with_seats(&mut payments, others)?;
        Ok(payments)
    }
}

impl PgStore {
    /// One attempt at a payment of several holds, in one transaction: the
    /// refusals are named from reads; then the session is locked (it comes first in
    /// the lock order), the seats are sold in (schedule, seat) order and the payer's
    /// other holds released, the wallet debited, the session ended, the payment,
    /// its other seats and the ledger row written. `Ok(None)` when a conditional
    /// write found its row changed after the reads (a concurrent payment, cancel,
    /// debit or session end): everything is rolled back, and the next attempt's
    /// reads name the refusal.
    async fn pay_many_once(
        &self,
        req: &PayManyRequest,
    ) -> Result<Option<Result<Payment, PayManyRepoError>>, sqlx::Error> {
        let now = req.now;
        let user = req.user.as_uuid();
        let mut tx = self.pool.begin().await?;
        let mut seats = Vec::with_capacity(req.reservations.len());
        for &id in &req.reservations {
            let row = sqlx::query(concat!(
                "SELECT ",
                hold_cols!(),
                " FROM reservations WHERE id = $1"
            ))
            .bind(id.as_uuid())
            .fetch_optional(&mut *tx)
            .await?;
            let refused = |why| Ok(Some(Err(PayManyRepoError::about(id, why))));
            let hold = match row.as_ref().map(hold_of).transpose() {
                Ok(Some(hold)) => hold,
                Ok(None) => return refused(PayRepoError::NotFound),
                Err(e) => return Ok(Some(Err(e.into()))),
            };
            if hold.user != req.user {
                return refused(PayRepoError::NotYours);
            }
            let state = hold.state_at(now);
            if state != HoldState::Held {
                return refused(PayRepoError::NotHeld(state));
            }
            seats.push(PaidSeat {
                reservation: id,
                schedule: hold.schedule,
                seat: hold.seat,
                price: hold.price,
            });
        }
        if let Some(key) = &req.key {
            let used = sqlx::query("SELECT 1 FROM payments WHERE user_id = $1 AND idem_key = $2")
                .bind(user)
                .bind(key.as_str())
                .fetch_optional(&mut *tx)
                .await?;
            if used.is_some() {
                return Ok(Some(Err(PayRepoError::KeyReused.into())));
            }
        }
        let session = sqlx::query(
            "SELECT 1 FROM queue_entries
             WHERE seq = $1 AND user_id = $2 AND state = 'live' AND expires_at > $3
             FOR UPDATE",
        )
        .bind(cv::i64_of(req.session.get()))
        .bind(user)
        .bind(now.as_millis())
        .fetch_optional(&mut *tx)
        .await?;
        if session.is_none() {
            return Ok(Some(Err(PayRepoError::SessionEnded.into())));
        }
        let Some(total) = Amount::total(seats.iter().map(|s| s.price)) else {
            return Ok(Some(Err(StoreError::Failed(
                "the total of a payment overflows".into(),
            )
            .into())));
        };
        let balance = match balance_of(&mut *tx, req.user).await {
            Ok(b) => b,
            Err(e) => return Ok(Some(Err(e.into()))),
        };
        if balance < total.as_money() {
            return Ok(Some(Err(PayRepoError::InsufficientBalance {
                balance,
                price: total,
            }
            .into())));
        }
        let mut in_lock_order = seats.clone();
        in_lock_order.sort_by_key(|s| (s.schedule, s.seat));
        for s in &in_lock_order {
            let sold = sqlx::query(
                "UPDATE seats SET sold = TRUE
                 WHERE schedule_id = $1 AND seat_no = $2 AND hold_id = $3 AND hold_user = $4
                   AND NOT sold AND hold_until > $5",
            )
            .bind(s.schedule.get())
            .bind(i64::from(s.seat.get()))
            .bind(s.reservation.as_uuid())
            .bind(user)
            .bind(now.as_millis())
            .execute(&mut *tx)
            .await?;
            if sold.rows_affected() != 1 {
                return Ok(None);
            }
        }
        // The session ends with the payment, and with it the payer's other holds.
        sqlx::query(
            "UPDATE seats SET hold_until = $2
             WHERE hold_user = $1 AND NOT sold AND hold_until > $2",
        )
        .bind(user)
        .bind(now.as_millis())
        .execute(&mut *tx)
        .await?;
        let after: Option<i64> = sqlx::query_scalar(
            "UPDATE wallets SET balance = balance - $2 WHERE user_id = $1 AND balance >= $2
             RETURNING balance",
        )
        .bind(user)
        .bind(total.minor_units())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(after) = after else {
            return Ok(None);
        };
        let ended = sqlx::query(
            "UPDATE queue_entries SET state = 'done'
             WHERE seq = $1 AND user_id = $2 AND state = 'live'",
        )
        .bind(cv::i64_of(req.session.get()))
        .bind(user)
        .execute(&mut *tx)
        .await?;
        if ended.rows_affected() != 1 {
            return Ok(None);
        }
        let first = seats[0];
        sqlx::query(
            "INSERT INTO payments
               (id, reservation_id, user_id, schedule_id, seat_no, amount, paid_at, idem_key)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(req.id.as_uuid())
        .bind(first.reservation.as_uuid())
        .bind(user)
        .bind(first.schedule.get())
        .bind(i64::from(first.seat.get()))
        .bind(total.minor_units())
        .bind(now.as_millis())
        .bind(req.key.as_ref().map(|k| k.as_str().to_owned()))
        .execute(&mut *tx)
        .await?;
        for (i, s) in seats.iter().enumerate().skip(1) {
            sqlx::query(
                "INSERT INTO payment_seats
                   (reservation_id, payment_id, user_id, position, schedule_id, seat_no, price)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(s.reservation.as_uuid())
            .bind(req.id.as_uuid())
            .bind(user)
            .bind(i as i32 + 1)
            .bind(s.schedule.get())
            .bind(i64::from(s.seat.get()))
            .bind(s.price.minor_units())
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query(
            "INSERT INTO ledger (user_id, kind, payment_id, amount, balance_after, at)
             VALUES ($1, 'payment', $2, $3, $4, $5)",
        )
        .bind(user)
        .bind(req.id.as_uuid())
        .bind(total.minor_units())
        .bind(after)
        .bind(now.as_millis())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(Ok(Payment {
            id: req.id,
            reservation: first.reservation,
            user: req.user,
            schedule: first.schedule,
            seat: first.seat,
            amount: total,
            paid_at: now,
            key: req.key.clone(),
            seats,
        })))
    }
}
