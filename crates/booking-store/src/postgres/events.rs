//! The event feed (`EventRepo`): the outbox the triggers of migration 0008 fill, the
//! relay, and the reads.

use booking_core::StoreError;
use booking_core::domain::{Event, EventId, EventType, Timestamp};
use booking_core::ports::EventRepo;

use crate::convert::{self as cv, pg_err as db};
use crate::events::{RELAY_BATCH, event_cols_from, event_of, moved_cols, with_other_seats};
use crate::rows::other_seat_of;

use super::PgStore;

/// The advisory lock only one relay holds at a time, across every instance.
const RELAY_LOCK: i64 = 0x0062_6b65_7665_6e74; // "bkevent"

impl EventRepo for PgStore {
    async fn relay_events(&self) -> Result<u64, StoreError> {
        let pending: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM event_outbox)")
            .fetch_one(&self.pool)
            .await
            .map_err(db)?;
        if !pending {
            return Ok(0);
        }
        let mut tx = self.pool.begin().await.map_err(db)?;
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
            .bind(RELAY_LOCK)
            .fetch_one(&mut *tx)
            .await
            .map_err(db)?;
        if !locked {
            // Another instance is relaying: it moves these rows too.
            tx.rollback().await.map_err(db)?;
            return Ok(0);
        }
        // Every outbox row this statement sees is committed; a transaction that
        // commits later is moved by the next relay, with higher ids. The relays run
        // one after another, each committing before the next takes the lock, so ids
        // become visible in increasing order.
        let moved = sqlx::query(concat!(
            "WITH moved AS (
                DELETE FROM event_outbox WHERE pending_id IN (
                    SELECT pending_id FROM event_outbox ORDER BY pending_id LIMIT $1)
                RETURNING pending_id, ",
            moved_cols!(),
            ") INSERT INTO events (",
            moved_cols!(),
            ") SELECT ",
            moved_cols!(),
            " FROM moved ORDER BY pending_id"
        ))
        .bind(RELAY_BATCH)
        .execute(&mut *tx)
        .await
        .map_err(db)?
        .rows_affected();
        tx.commit().await.map_err(db)?;
        Ok(moved)
    }

    async fn events_after(
        &self,
        after: EventId,
        limit: u32,
        types: &[EventType],
    ) -> Result<Vec<Event>, StoreError> {
        let names: Vec<&str> = types.iter().map(|t| t.as_str()).collect();
        let rows = sqlx::query(concat!(
            "SELECT ",
            event_cols_from!(),
            " WHERE e.id > $1 AND (cardinality($2::text[]) = 0 OR e.type = ANY($2))
             ORDER BY e.id LIMIT $3"
        ))
        .bind(cv::i64_of(after.0))
        .bind(&names)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        let mut events = rows.iter().map(event_of).collect::<Result<Vec<_>, _>>()?;
        if events
            .iter()
            .any(|e| e.event_type() == EventType::PaymentCompleted)
        {
            let (first, last) = (events[0].id.0, events[events.len() - 1].id.0);
            let rows = sqlx::query(
                "SELECT ps.payment_id, ps.reservation_id, ps.schedule_id, ps.seat_no, ps.price
                 FROM events e JOIN payment_seats ps ON ps.payment_id = e.payment_id
                 WHERE e.id BETWEEN $1 AND $2 AND e.type = 'payment.completed'
                 ORDER BY ps.payment_id, ps.position",
            )
            .bind(cv::i64_of(first))
            .bind(cv::i64_of(last))
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
            let others = rows
                .iter()
                .map(other_seat_of)
                .collect::<Result<Vec<_>, _>>()?;
            with_other_seats(&mut events, others)?;
        }
        Ok(events)
    }

    async fn last_event_id(&self) -> Result<EventId, StoreError> {
        // The sequence hands out ids before the relay's transaction commits, and
        // (unlike a row) shows them at once: read alone, it can name events nobody
        // can see yet, and a deliverer would move a cursor past them. So it is read
        // only under the relay's lock, shared (no relay is between its inserts and
        // its commit; the lock ends with this statement); while a relay holds it,
        // the feed's highest visible id is the answer.
        let last: i64 = sqlx::query_scalar(
            "SELECT CASE WHEN pg_try_advisory_xact_lock_shared($1)
                THEN (SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM events_id_seq)
                ELSE COALESCE((SELECT max(id) FROM events), 0) END",
        )
        .bind(RELAY_LOCK)
        .fetch_one(&self.pool)
        .await
        .map_err(db)?;
        Ok(EventId(cv::u64_of(last, "event id")?))
    }

    async fn prune_events(&self, older_than: Timestamp, up_to: EventId) -> Result<u64, StoreError> {
        let n = sqlx::query("DELETE FROM events WHERE at < $1 AND id <= $2")
            .bind(older_than.as_millis())
            .bind(cv::i64_of(up_to.0))
            .execute(&self.pool)
            .await
            .map_err(db)?
            .rows_affected();
        Ok(n)
    }
}
