//! The event feed (`EventRepo`): the outbox the triggers of migration 0007 fill, the
//! relay, and the reads.

use booking_core::StoreError;
use booking_core::domain::{Event, EventId, EventType, Timestamp};
use booking_core::ports::EventRepo;

use crate::convert::{self as cv, sqlite_err as db};
use crate::events::{
    RELAY_BATCH, event_cols_from, event_of, moved_cols, types_list, with_other_seats,
};
use crate::rows::other_seat_of;

use super::{SqliteStore, commit};

impl EventRepo for SqliteStore {
    async fn relay_events(&self) -> Result<u64, StoreError> {
        // Most calls find nothing: ask a reader first, so the writer is not taken.
        let pending: Option<i64> =
            sqlx::query_scalar("SELECT pending_id FROM event_outbox LIMIT 1")
                .fetch_optional(&self.read)
                .await
                .map_err(db)?;
        if pending.is_none() {
            return Ok(0);
        }
        // The one writer is the relay's lock: every outbox row it sees is committed.
        let mut tx = self.begin().await?;
        let last: Option<i64> = sqlx::query_scalar(
            "SELECT pending_id FROM event_outbox ORDER BY pending_id LIMIT 1 OFFSET ?",
        )
        .bind(RELAY_BATCH - 1)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db)?;
        let last = last.unwrap_or(i64::MAX);
        let moved = sqlx::query(concat!(
            "INSERT INTO events (",
            moved_cols!(),
            ") SELECT ",
            moved_cols!(),
            " FROM event_outbox WHERE pending_id <= ? ORDER BY pending_id"
        ))
        .bind(last)
        .execute(&mut *tx)
        .await
        .map_err(db)?
        .rows_affected();
        sqlx::query("DELETE FROM event_outbox WHERE pending_id <= ?")
            .bind(last)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        commit(tx).await?;
        Ok(moved)
    }

    async fn events_after(
        &self,
        after: EventId,
        limit: u32,
        types: &[EventType],
    ) -> Result<Vec<Event>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            event_cols_from!(),
            " WHERE e.id > ?1 AND (?2 = '' OR instr(?2, ',' || e.type || ',') > 0)
             ORDER BY e.id LIMIT ?3"
        ))
        .bind(cv::i64_of(after.0))
        .bind(types_list(types))
        .bind(i64::from(limit))
        .fetch_all(&self.read)
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
                 WHERE e.id BETWEEN ? AND ? AND e.type = 'payment.completed'
                 ORDER BY ps.payment_id, ps.position",
            )
            .bind(cv::i64_of(first))
            .bind(cv::i64_of(last))
            .fetch_all(&self.read)
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
        let last: Option<i64> =
            sqlx::query_scalar("SELECT seq FROM sqlite_sequence WHERE name = 'events'")
                .fetch_optional(&self.read)
                .await
                .map_err(db)?;
        Ok(EventId(cv::u64_of(last.unwrap_or(0), "event id")?))
    }

    async fn prune_events(&self, older_than: Timestamp, up_to: EventId) -> Result<u64, StoreError> {
        let mut tx = self.begin().await?;
        let n = sqlx::query("DELETE FROM events WHERE at < ? AND id <= ?")
            .bind(older_than.as_millis())
            .bind(cv::i64_of(up_to.0))
            .execute(&mut *tx)
            .await
            .map_err(db)?
            .rows_affected();
        commit(tx).await?;
        Ok(n)
    }
}
