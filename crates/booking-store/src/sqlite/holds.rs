//! Holds: the hold statement, cancel, the sweep (`HoldRepo`).

use booking_core::StoreError;
use booking_core::domain::{Hold, HoldState, ReservationId, Timestamp, UserId};
use booking_core::ports::{CancelRepoError, HoldRepo, HoldRepoError, NewHold};
use uuid::Uuid;

use crate::columns::{hold_cols, seat_hold_cols};
use crate::convert::{self as cv, sqlite_err as db};
use crate::rows::hold_of;

use super::group_commit::{Arg, HotWrite};
use super::queue::session_active;
use super::{Query, SqliteStore, Tx, commit, first};

/// Claims the seat for the hold only if the seat exists, is not sold, has no live
/// hold, the session is active and the user is under the cap. Its trigger records
/// the lapsed hold it replaces, if any.
pub(super) const HOLD_SQL: &str = concat!(
    "UPDATE seats SET hold_id = ?1, hold_user = ?2, held_at = ?5, hold_until = ?6
     WHERE schedule_id = ?3 AND seat_no = ?4 AND sold = 0
       AND (hold_until IS NULL OR hold_until <= ?5)
       AND EXISTS (SELECT 1 FROM queue_entries q
                   WHERE q.seq = ?7 AND q.user_id = ?2 AND q.state = 'live'
                     AND q.expires_at > ?5)
       AND (SELECT count(*) FROM seats h
            WHERE h.hold_user = ?2 AND h.sold = 0 AND h.hold_until > ?5) < ?8
     RETURNING ",
    seat_hold_cols!()
);

/// The hold statement's parameters, ?1 to ?8.
pub(super) fn hold_args(req: &NewHold) -> Vec<Arg> {
    vec![
        Arg::Uuid(req.id.as_uuid()),
        Arg::Uuid(req.user.as_uuid()),
        Arg::Int(req.schedule.get()),
        Arg::Int(i64::from(req.seat.get())),
        Arg::Int(req.now.as_millis()),
        Arg::Int(req.expires_at.as_millis()),
        Arg::Int(cv::i64_of(req.session.get())),
        Arg::Int(i64::from(req.max_live_per_user)),
    ]
}

pub(super) fn hold_statement(req: &NewHold) -> Query<'static> {
    Arg::bind_numbered(sqlx::query(HOLD_SQL), hold_args(req))
}

/// The hold `id` in any state, read in `tx` from the `reservations` view (the
/// seats' live holds and the ended ones).
pub(super) async fn hold_in(tx: &mut Tx, id: ReservationId) -> Result<Option<Hold>, StoreError> {
    let row = sqlx::query(concat!(
        "SELECT ",
        hold_cols!(),
        " FROM reservations WHERE id = ?"
    ))
    .bind(id.as_uuid())
    .fetch_optional(&mut **tx)
    .await
    .map_err(db)?;
    row.as_ref().map(hold_of).transpose()
}

/// Ends the unsold hold `id` of seat (`schedule`, `seat`): records it in
/// ended_reservations as `state` and frees the seat, each step checked to change
/// exactly one row.
async fn end_hold(
    tx: &mut Tx,
    (schedule, seat): (i64, i64),
    id: Uuid,
    state: &str,
) -> Result<(), StoreError> {
    let moved = sqlx::query(
        "INSERT INTO ended_reservations
           (id, user_id, schedule_id, seat_no, price, created_at, expires_at, state)
         SELECT hold_id, hold_user, schedule_id, seat_no, price, held_at, hold_until, ?4
         FROM seats WHERE schedule_id = ?1 AND seat_no = ?2 AND hold_id = ?3 AND sold = 0",
    )
    .bind(schedule)
    .bind(seat)
    .bind(id)
    .bind(state)
    .execute(&mut **tx)
    .await
    .map_err(db)?;
    let freed = sqlx::query(
        "UPDATE seats SET hold_id = NULL, hold_user = NULL, held_at = NULL, hold_until = NULL
         WHERE schedule_id = ? AND seat_no = ? AND hold_id = ? AND sold = 0",
    )
    .bind(schedule)
    .bind(seat)
    .bind(id)
    .execute(&mut **tx)
    .await
    .map_err(db)?;
    let (moved, freed) = (moved.rows_affected(), freed.rows_affected());
    if (moved, freed) != (1, 1) {
        return Err(StoreError::Failed(format!(
            "ending hold {id} as {state} recorded {moved} reservations and freed {freed} seats"
        )));
    }
    Ok(())
}

impl HoldRepo for SqliteStore {
    async fn hold(&self, req: NewHold) -> Result<Hold, HoldRepoError> {
        // The hot path: one statement that claims the seat only if every condition
        // of the contract holds (its triggers retire the lapsed hold and mark the
        // seat).
        if let Some(hold) = self.hot.run(HotWrite::Hold(req)).await.map_err(db)? {
            return hold_of(&hold).map_err(HoldRepoError::from);
        }
        // Refused: find out why under the write lock; if nothing refuses any more
        // (the state moved on), the same statement takes the seat now.
        let mut tx = self.begin().await?;
        let seat = sqlx::query("SELECT 1 FROM seats WHERE schedule_id = ? AND seat_no = ?")
            .bind(req.schedule.get())
            .bind(i64::from(req.seat.get()))
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?;
        if seat.is_none() {
            return Err(HoldRepoError::NoSuchSeat);
        }
        if !session_active(&mut tx, req.session, req.user, req.now).await? {
            return Err(HoldRepoError::SessionEnded);
        }
        let n_live: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM seats WHERE hold_user = ? AND sold = 0 AND hold_until > ?",
        )
        .bind(req.user.as_uuid())
        .bind(req.now.as_millis())
        .fetch_one(&mut *tx)
        .await
        .map_err(db)?;
        if n_live >= i64::from(req.max_live_per_user) {
            return Err(HoldRepoError::HoldLimit);
        }
        let Some(row) = hold_statement(&req)
            .fetch_all(&mut *tx)
            .await
            .map(first)
            .map_err(db)?
        else {
            return Err(HoldRepoError::SeatTaken);
        };
        let hold = hold_of(&row)?;
        commit(tx).await?;
        Ok(hold)
    }

    async fn cancel(
        &self,
        id: ReservationId,
        user: UserId,
        now: Timestamp,
    ) -> Result<Hold, CancelRepoError> {
        let mut tx = self.begin().await?;
        let Some(hold) = hold_in(&mut tx, id).await? else {
            return Err(CancelRepoError::NotFound);
        };
        if hold.user != user {
            return Err(CancelRepoError::NotYours);
        }
        let state = hold.state_at(now);
        if state != HoldState::Held {
            return Err(CancelRepoError::NotHeld(state));
        }
        // A live hold is its seat's: it moves to ended_reservations, and the seat is
        // freed.
        end_hold(
            &mut tx,
            (hold.schedule.get(), i64::from(hold.seat.get())),
            id.as_uuid(),
            "cancelled",
        )
        .await?;
        // No row carries a cancel's time: its event is written here, in the same
        // transaction (the other events come from migration 0007's triggers).
        sqlx::query(
            "INSERT INTO event_outbox (type, at, user_id, reservation_id, schedule_id, seat_no)
             VALUES ('hold.cancelled', ?, ?, ?, ?, ?)",
        )
        .bind(now.as_millis())
        .bind(user.as_uuid())
        .bind(id.as_uuid())
        .bind(hold.schedule.get())
        .bind(i64::from(hold.seat.get()))
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        commit(tx).await?;
        Ok(Hold {
            state: HoldState::Cancelled,
            ..hold
        })
    }

    async fn reservation(&self, id: ReservationId) -> Result<Option<Hold>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            hold_cols!(),
            " FROM reservations WHERE id = ?"
        ))
        .bind(id.as_uuid())
        .fetch_optional(&self.read)
        .await
        .map_err(db)?;
        row.as_ref().map(hold_of).transpose()
    }

    async fn reservations_of(&self, user: UserId, limit: u32) -> Result<Vec<Hold>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            hold_cols!(),
            " FROM reservations WHERE user_id = ?
              ORDER BY created_at DESC, id DESC LIMIT ?"
        ))
        .bind(user.as_uuid())
        .bind(i64::from(limit))
        .fetch_all(&self.read)
        .await
        .map_err(db)?;
        rows.iter().map(hold_of).collect()
    }

    async fn live_holds(&self, now: Timestamp, limit: u32) -> Result<Vec<Hold>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            seat_hold_cols!(),
            " FROM seats WHERE hold_user IS NOT NULL AND sold = 0 AND hold_until > ?
              ORDER BY hold_until, hold_id LIMIT ?"
        ))
        .bind(now.as_millis())
        .bind(i64::from(limit))
        .fetch_all(&self.read)
        .await
        .map_err(db)?;
        rows.iter().map(hold_of).collect()
    }

    async fn sweep_expired_holds(&self, now: Timestamp, limit: u32) -> Result<u64, StoreError> {
        let mut tx = self.begin().await?;
        let lapsed: Vec<(i64, i64, Uuid)> = sqlx::query_as(
            "SELECT schedule_id, seat_no, hold_id FROM seats
             WHERE hold_user IS NOT NULL AND sold = 0 AND hold_until <= ?
             ORDER BY hold_until, hold_id LIMIT ?",
        )
        .bind(now.as_millis())
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await
        .map_err(db)?;
        for &(schedule, seat, id) in &lapsed {
            end_hold(&mut tx, (schedule, seat), id, "expired").await?;
        }
        commit(tx).await?;
        Ok(lapsed.len() as u64)
    }
}
