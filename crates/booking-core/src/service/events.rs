//! The event feed (decision record 0013): read by administrators and webhooks,
//! filled by the relay.

use super::Booking;
use crate::clock::Clock;
use crate::domain::{Event, EventId, EventType};
use crate::ports::{Store, StoreError};

/// The most events one read of the feed returns.
pub const MAX_EVENTS_PER_READ: u32 = 1_000;

impl<S: Store, C: Clock> Booking<S, C> {
    /// Up to `limit` events with an id above `after`, in id order, of the given
    /// types (all when `types` is empty). An administrator's read: no token.
    /// `limit` is clamped to `1..=1000`. When the feed has nothing after `after`,
    /// the outbox is relayed first, so a reader never waits for the background
    /// relay to see a committed change.
    ///
    /// # Errors
    /// Only storage failures.
    pub async fn events_after(
        &self,
        after: EventId,
        limit: u32,
        types: &[EventType],
    ) -> Result<Vec<Event>, StoreError> {
        let limit = limit.clamp(1, MAX_EVENTS_PER_READ);
        let found = self.store.events_after(after, limit, types).await?;
        if !found.is_empty() {
            return Ok(found);
        }
        if self.store.relay_events().await? == 0 {
            return Ok(found);
        }
        self.store.events_after(after, limit, types).await
    }

    /// Moves the committed outbox rows into the feed; returns how many moved (0 when
    /// another process is relaying). Run by every instance beside the ticker.
    ///
    /// # Errors
    /// Only storage failures.
    pub async fn relay_events(&self) -> Result<u64, StoreError> {
        self.store.relay_events().await
    }

    /// The highest event id given so far (0 when none).
    ///
    /// # Errors
    /// Only storage failures.
    pub async fn last_event_id(&self) -> Result<EventId, StoreError> {
        self.store.last_event_id().await
    }
}
