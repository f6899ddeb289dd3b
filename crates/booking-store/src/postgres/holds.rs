//! Holds: the hold function, cancel, the sweep (`HoldRepo`).

use booking_core::StoreError;
use booking_core::domain::{Hold, HoldState, ReservationId, Timestamp, UserId};
use booking_core::ports::{CancelRepoError, HoldRepo, HoldRepoError, NewHold};
use sqlx::Row;
use sqlx::postgres::PgRow;

use crate::columns::{hold_cols, seat_hold_cols};
use crate::convert::{self as cv, pg_err as db};
use crate::rows::{StoredRow, hold_of, maybe_hold};

use super::group_commit::HotWrite;
use super::payment::stale;
use super::{MAX_ATTEMPTS, PgStore, contention, retryable};

/// A hold in one round trip: `booking_hold` (migration 0004) reads the seat, locks the
/// session row (serializing the user's holds), counts the user's live holds in a fresh
/// snapshot taken after that lock (so the count is exact), claims the seat with one
/// conditional update that names the new reservation on it, and records the seat's
/// lapsed reservation, if any, as expired. A refusal is named in `o_refusal`; the
/// seat's price in `o_price`.
pub(super) const HOLD: &str = "SELECT o_refusal, o_n_live, o_price
     FROM booking_hold($1, $2, $3, $4, $5, $6, $7, $8)";

/// Cancel: lock the seat while it still holds this live hold of the user, then record
/// the hold as cancelled and free the seat. `r0` is the reservation in the snapshot,
/// which names the refusal.
const CANCEL: &str = concat!(
    "WITH r0 AS (
        SELECT ",
    hold_cols!(),
    " FROM reservations WHERE id = $1
    ), ls AS MATERIALIZED (
        SELECT schedule_id, seat_no, hold_id, hold_user, price, held_at, hold_until
        FROM seats
        WHERE hold_user = $2 AND NOT sold AND hold_id = $1 AND hold_until > $3
        FOR NO KEY UPDATE
    ), e AS (
        INSERT INTO ended_reservations
            (id, user_id, schedule_id, seat_no, price, created_at, expires_at, state)
        SELECT hold_id, hold_user, schedule_id, seat_no, price, held_at, hold_until,
               'cancelled'
        FROM ls
        RETURNING id
    ), ev AS (
        -- No row carries a cancel's time: its event is written here (the other
        -- events come from migration 0008's triggers).
        INSERT INTO event_outbox (type, at, user_id, reservation_id, schedule_id, seat_no)
        SELECT 'hold.cancelled', $3, hold_user, hold_id, schedule_id, seat_no FROM ls
    ), s AS (
        UPDATE seats st
        SET hold_id = NULL, hold_user = NULL, held_at = NULL, hold_until = NULL
        FROM ls
        WHERE st.schedule_id = ls.schedule_id AND st.seat_no = ls.seat_no
        RETURNING st.seat_no
    )
    SELECT r0.*,
           EXISTS (SELECT 1 FROM ls) AS locked,
           (SELECT count(*) FROM s) AS n_seats,
           (SELECT count(*) FROM e) AS n_cancelled
    FROM (SELECT 1) AS one LEFT JOIN r0 ON TRUE"
);

/// Sweep: lock the seats still held by lapsed holds, in seat order (so sweepers never
/// deadlock each other), then record those holds as expired and free the seats.
const SWEEP: &str = "WITH lapsed AS (
        SELECT schedule_id, seat_no, hold_id FROM seats
        WHERE hold_user IS NOT NULL AND NOT sold AND hold_until <= $1
        ORDER BY hold_until, hold_id LIMIT $2
    ), locked AS MATERIALIZED (
        SELECT st.schedule_id, st.seat_no, st.hold_id, st.hold_user, st.price, st.held_at,
               st.hold_until
        FROM seats st JOIN lapsed l
          ON st.schedule_id = l.schedule_id AND st.seat_no = l.seat_no AND st.hold_id = l.hold_id
        WHERE NOT st.sold AND st.hold_until <= $1
        ORDER BY st.schedule_id, st.seat_no
        FOR NO KEY UPDATE OF st
    ), done AS (
        INSERT INTO ended_reservations
            (id, user_id, schedule_id, seat_no, price, created_at, expires_at, state)
        SELECT hold_id, hold_user, schedule_id, seat_no, price, held_at, hold_until, 'expired'
        FROM locked
        RETURNING id
    ), freed AS (
        UPDATE seats st
        SET hold_id = NULL, hold_user = NULL, held_at = NULL, hold_until = NULL
        FROM locked k
        WHERE st.schedule_id = k.schedule_id AND st.seat_no = k.seat_no
        RETURNING k.hold_id
    )
    SELECT (SELECT count(*) FROM freed) AS n_freed, (SELECT count(*) FROM done) AS n_expired";

/// What one run of the hold function decided.
fn hold_outcome(row: &PgRow, req: &NewHold) -> Result<Result<Hold, HoldRepoError>, StoreError> {
    let refusal: Option<String> = row.try_get("o_refusal").map_err(db)?;
    let refused = match refusal.as_deref() {
        None => {
            let price: i64 = row.try_get("o_price").map_err(db)?;
            return Ok(Ok(Hold {
                id: req.id,
                user: req.user,
                schedule: req.schedule,
                seat: req.seat,
                price: cv::amount(price)?,
                created_at: req.now,
                expires_at: req.expires_at,
                state: HoldState::Held,
            }));
        }
        Some("no_such_seat") => HoldRepoError::NoSuchSeat,
        Some("session_ended") => HoldRepoError::SessionEnded,
        Some("hold_limit") => HoldRepoError::HoldLimit,
        Some("seat_taken") => HoldRepoError::SeatTaken,
        Some(other) => return Err(cv::corrupt("hold refusal", other)),
    };
    Ok(Err(refused))
}

impl HoldRepo for PgStore {
    async fn hold(&self, req: NewHold) -> Result<Hold, HoldRepoError> {
        for _ in 0..MAX_ATTEMPTS {
            let row = self.hot.run(HotWrite::Hold(req)).await;
            match row {
                Ok(row) => return hold_outcome(&row, &req)?,
                // The seat kept changing under the claim (`STALE`): try again.
                Err(e) if retryable(&e) || stale(&e) => {}
                Err(e) => return Err(db(e).into()),
            }
        }
        Err(contention("hold").into())
    }

    async fn cancel(
        &self,
        id: ReservationId,
        user: UserId,
        now: Timestamp,
    ) -> Result<Hold, CancelRepoError> {
        for _ in 0..MAX_ATTEMPTS {
            let mut tx = self.pool.begin().await.map_err(db)?;
            let row = sqlx::query(CANCEL)
                .bind(id.as_uuid())
                .bind(user.as_uuid())
                .bind(now.as_millis())
                .fetch_one(&mut *tx)
                .await;
            let row = match row {
                Ok(row) => row,
                Err(e) if retryable(&e) => continue,
                Err(e) => return Err(db(e).into()),
            };
            let Some(hold) = maybe_hold(&row)? else {
                return Err(CancelRepoError::NotFound);
            };
            if hold.user != user {
                return Err(CancelRepoError::NotYours);
            }
            let state = hold.state_at(now);
            if state != HoldState::Held {
                return Err(CancelRepoError::NotHeld(state));
            }
            if !row.flag("locked")? {
                // Paid, cancelled or lapsed after the snapshot: look again.
                continue;
            }
            let n_seats: i64 = row.try_get("n_seats").map_err(db)?;
            let n_cancelled: i64 = row.try_get("n_cancelled").map_err(db)?;
            if (n_seats, n_cancelled) != (1, 1) {
                return Err(StoreError::Failed(format!(
                    "cancel of {id} freed {n_seats} seats and cancelled {n_cancelled} reservations"
                ))
                .into());
            }
            match tx.commit().await {
                Ok(()) => {}
                Err(e) if retryable(&e) => continue,
                Err(e) => return Err(db(e).into()),
            }
            return Ok(Hold {
                state: HoldState::Cancelled,
                ..hold
            });
        }
        Err(contention("cancel").into())
    }

    async fn reservation(&self, id: ReservationId) -> Result<Option<Hold>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            hold_cols!(),
            " FROM reservations WHERE id = $1"
        ))
        .bind(id.as_uuid())
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        row.as_ref().map(hold_of).transpose()
    }

    async fn reservations_of(&self, user: UserId, limit: u32) -> Result<Vec<Hold>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            hold_cols!(),
            " FROM reservations WHERE user_id = $1
              ORDER BY created_at DESC, id DESC LIMIT $2"
        ))
        .bind(user.as_uuid())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter().map(hold_of).collect()
    }

    async fn live_holds(&self, now: Timestamp, limit: u32) -> Result<Vec<Hold>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            seat_hold_cols!(),
            " FROM seats WHERE hold_user IS NOT NULL AND NOT sold AND hold_until > $1
              ORDER BY hold_until, hold_id LIMIT $2"
        ))
        .bind(now.as_millis())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter().map(hold_of).collect()
    }

    async fn sweep_expired_holds(&self, now: Timestamp, limit: u32) -> Result<u64, StoreError> {
        for _ in 0..MAX_ATTEMPTS {
            let mut tx = self.pool.begin().await.map_err(db)?;
            let row = sqlx::query(SWEEP)
                .bind(now.as_millis())
                .bind(i64::from(limit))
                .fetch_one(&mut *tx)
                .await;
            let row = match row {
                Ok(row) => row,
                Err(e) if retryable(&e) => continue,
                Err(e) => return Err(db(e)),
            };
            let n_freed: i64 = row.try_get("n_freed").map_err(db)?;
            let n_expired: i64 = row.try_get("n_expired").map_err(db)?;
            if n_freed != n_expired {
                return Err(StoreError::Failed(format!(
                    "sweep freed {n_freed} seats but expired {n_expired} holds"
                )));
            }
            match tx.commit().await {
                Ok(()) => return cv::u64_of(n_expired, "swept holds"),
                Err(e) if retryable(&e) => continue,
                Err(e) => return Err(db(e)),
            }
        }
        Err(contention("sweep"))
    }
}
