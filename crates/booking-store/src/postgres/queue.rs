//! The waiting room: tokens' places, admission, sessions (`QueueRepo`).

use booking_core::StoreError;
use booking_core::domain::{AdmissionPolicy, QueueCounters, QueueEntry, QueueSeq, Timestamp};
use booking_core::ports::{Advance, IssueRepoError, IssueRequest, QueueRepo};
use sqlx::Row;

use crate::columns::entry_cols;
use crate::convert::{self as cv, pg_err as db};
use crate::rows::{StoredRow, counters_of, entry_of};

use super::group_commit::HotWrite;
use super::{MAX_ATTEMPTS, PgStore, contention, retryable, unique_on};

/// Issue in one statement. `cur` is the user's live entry in the statement's
/// snapshot. When it is live at `now` it is the answer and nothing is written.
/// Otherwise `next` claims the next sequence on the counters row (whose lock
/// serializes issuers, so sequences have no gap), `old` records the lapsed entry
/// (only once a place is granted, so a full queue changes nothing), and `ins`
/// appends the entry after `old` is done (the count forces the order, which the
/// one-live-entry index needs). A same-user request that raced us and won makes
/// `ins` fail the one-live-entry index: the caller retries and finds the winner in
/// `cur`. No row back means the queue is full.
pub(super) const ISSUE: &str = concat!(
    "WITH cur AS (
        SELECT ",
    entry_cols!(),
    ", (expires_at IS NULL OR expires_at > $3) AS live_now
        FROM queue_entries WHERE user_id = $1 AND state = 'live'
    ), next AS (
        UPDATE queue_counters SET last_seq = last_seq + 1
        WHERE id = 1 AND last_seq - serving < $4
          AND NOT EXISTS (SELECT 1 FROM cur WHERE live_now)
        RETURNING last_seq
    ), old AS (
        UPDATE queue_entries SET state = 'expired'
        WHERE seq = (SELECT seq FROM cur WHERE NOT live_now) AND state = 'live'
          AND EXISTS (SELECT 1 FROM next)
        RETURNING seq
    ), ins AS (
        INSERT INTO queue_entries (seq, user_id, token_id, issued_at, state)
        SELECT next.last_seq, $1, $2, $3, 'live'
        FROM next, (SELECT count(*) FROM old) AS o
        RETURNING ",
    entry_cols!(),
    "
    )
    SELECT ",
    entry_cols!(),
    " FROM cur WHERE live_now
    UNION ALL
    SELECT ",
    entry_cols!(),
    " FROM ins"
);

/// Advance in one statement. `o` is the counters in the statement's snapshot; `c` is
/// the compare-and-set (re-checked on the newest row if it had to wait); `st` stamps
/// `(old, new]` only if `c` applied. `serving` changes only together with `version`,
/// so when `c` applies, the snapshot's `serving` is the one it replaced.
const ADVANCE: &str = "WITH o AS (
        SELECT serving, last_seq, version FROM queue_counters WHERE id = 1
    ), c AS (
        UPDATE queue_counters
        SET serving = $2, version = version + 1, last_tick_at = $3, admit_rate_milli = $4
        WHERE id = 1 AND version = $1 AND serving <= $2 AND $2 <= last_seq
        RETURNING version
    ), st AS (
        UPDATE queue_entries SET admitted_at = $3, expires_at = $5
        WHERE seq > (SELECT serving FROM o) AND seq <= $2 AND state = 'live'
          AND EXISTS (SELECT 1 FROM c)
    )
    SELECT EXISTS (SELECT 1 FROM c) AS applied, serving, last_seq, version FROM o";

impl QueueRepo for PgStore {
    async fn issue(&self, req: IssueRequest) -> Result<QueueEntry, IssueRepoError> {
        // Under a burst, the common case shares one call and one commit with the
        // issues that arrive meanwhile (group commit, migration 0006).
        let (batched, _busy) = self
            .hot
            .try_batch(&HotWrite::Issue(req))
            .await
            .map_err(db)?;
        if let Some(row) = batched {
            return Ok(entry_of(&row.map_err(db)?)?);
        }
        for _ in 0..MAX_ATTEMPTS {
            let row = sqlx::query(ISSUE)
                .bind(req.user.as_uuid())
                .bind(req.token_id.as_uuid())
                .bind(req.now.as_millis())
                .bind(cv::i64_of(req.max_waiting))
                .fetch_optional(&self.pool)
                .await;
            match row {
                Ok(Some(row)) => return Ok(entry_of(&row)?),
                Ok(None) => return Err(IssueRepoError::QueueFull),
                Err(e) if retryable(&e) || unique_on(&e, "queue_one_live_entry_per_user") => {}
                Err(e) => return Err(db(e).into()),
            }
        }
        Err(contention("issue").into())
    }

    async fn entry(&self, seq: QueueSeq) -> Result<Option<QueueEntry>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            entry_cols!(),
            " FROM queue_entries WHERE seq = $1"
        ))
        .bind(cv::i64_of(seq.get()))
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        row.as_ref().map(entry_of).transpose()
    }

    async fn counters(&self) -> Result<QueueCounters, StoreError> {
        let row = sqlx::query("SELECT * FROM queue_counters WHERE id = 1")
            .fetch_one(&self.pool)
            .await
            .map_err(db)?;
        counters_of(&row)
    }

    async fn count_active(&self, now: Timestamp) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM queue_entries
             WHERE state = 'live' AND admitted_at IS NOT NULL AND expires_at > $1",
        )
        .bind(now.as_millis())
        .fetch_one(&self.pool)
        .await
        .map_err(db)?;
        cv::u64_of(n, "active count")
    }

    async fn advance(&self, adv: Advance) -> Result<bool, StoreError> {
        let expected = cv::i64_of(adv.expected_version);
        let new = cv::i64_of(adv.serving);
        for _ in 0..MAX_ATTEMPTS {
            let row = sqlx::query(ADVANCE)
                .bind(expected)
                .bind(new)
                .bind(adv.now.as_millis())
                .bind(cv::i64_of(adv.admit_rate_milli))
                .bind(adv.admitted_until.as_millis())
                .fetch_one(&self.pool)
                .await;
            let row = match row {
                Ok(row) => row,
                Err(e) if retryable(&e) => continue,
                Err(e) => return Err(db(e)),
            };
            if row.flag("applied")? {
                return Ok(true);
            }
            let version: i64 = row.try_get("version").map_err(db)?;
            let serving: i64 = row.try_get("serving").map_err(db)?;
            let last_seq: i64 = row.try_get("last_seq").map_err(db)?;
            if version == expected && (new < serving || new > last_seq) {
                return Err(StoreError::Failed(format!(
                    "advance to {new} outside {serving}..={last_seq}"
                )));
            }
            return Ok(false);
        }
        Err(contention("advance"))
    }

    async fn show_up(
        &self,
        seq: QueueSeq,
        now: Timestamp,
        until: Timestamp,
    ) -> Result<Option<QueueEntry>, StoreError> {
        let row = sqlx::query(concat!(
            "UPDATE queue_entries SET seen_at = $1, expires_at = $2
             WHERE seq = $3 AND state = 'live' AND admitted_at IS NOT NULL
               AND seen_at IS NULL AND expires_at > $1
             RETURNING ",
            entry_cols!()
        ))
        .bind(now.as_millis())
        .bind(until.as_millis())
        .bind(cv::i64_of(seq.get()))
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        row.as_ref().map(entry_of).transpose()
    }

    async fn set_policy(&self, policy: AdmissionPolicy) -> Result<(), StoreError> {
        let (interval_ms, batch, max_active) = cv::policy_parts(&policy);
        sqlx::query(
            "UPDATE queue_counters
             SET interval_ms = $1, batch = $2, max_active = $3, version = version + 1
             WHERE id = 1",
        )
        .bind(interval_ms)
        .bind(batch)
        .bind(max_active)
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn set_paused(&self, paused: bool) -> Result<(), StoreError> {
        sqlx::query("UPDATE queue_counters SET paused = $1, version = version + 1 WHERE id = 1")
            .bind(paused)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn expire_sessions(&self, now: Timestamp, limit: u32) -> Result<u64, StoreError> {
        // The lapsed entries are locked in sequence order, skipping any that another
        // sweeper holds, so sweepers share the work instead of waiting on each other.
        // The outer conditions re-check each row as it is now.
        for _ in 0..MAX_ATTEMPTS {
            let done = sqlx::query(
                "UPDATE queue_entries SET state = 'expired'
                 WHERE seq IN (SELECT seq FROM queue_entries
                               WHERE state = 'live' AND admitted_at IS NOT NULL
                                 AND expires_at <= $1
                               ORDER BY seq LIMIT $2
                               FOR NO KEY UPDATE SKIP LOCKED)
                   AND state = 'live' AND expires_at <= $1",
            )
            .bind(now.as_millis())
            .bind(i64::from(limit))
            .execute(&self.pool)
            .await;
            match done {
                Ok(done) => return Ok(done.rows_affected()),
                Err(e) if retryable(&e) => {}
                Err(e) => return Err(db(e)),
            }
        }
        Err(contention("expire sessions"))
    }
}
