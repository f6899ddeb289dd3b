//! The waiting room: tokens' places, admission, sessions (`QueueRepo`).

use booking_core::StoreError;
use booking_core::domain::{
    AdmissionPolicy, QueueCounters, QueueEntry, QueueSeq, Timestamp, UserId,
};
use booking_core::ports::{Advance, IssueRepoError, IssueRequest, QueueRepo};
use sqlx::Row;

use crate::columns::entry_cols;
use crate::convert::{self as cv, sqlite_err as db};
use crate::rows::{counters_of, entry_of};

use super::group_commit::{Arg, HotWrite};
use super::{Query, SqliteStore, Tx, commit, first, one};

async fn live_entry_of(tx: &mut Tx, user: UserId) -> Result<Option<QueueEntry>, StoreError> {
    let row = sqlx::query(concat!(
        "SELECT ",
        entry_cols!(),
        " FROM queue_entries WHERE user_id = ? AND state = 'live'"
    ))
    .bind(user.as_uuid())
    .fetch_optional(&mut **tx)
    .await
    .map_err(db)?;
    row.as_ref().map(entry_of).transpose()
}

/// Whether `seq` is an active session of `user` at `now`.
pub(super) async fn session_active(
    tx: &mut Tx,
    seq: QueueSeq,
    user: UserId,
    now: Timestamp,
) -> Result<bool, StoreError> {
    let row = sqlx::query(
        "SELECT 1 FROM queue_entries
         WHERE seq = ? AND user_id = ? AND state = 'live' AND expires_at > ?",
    )
    .bind(cv::i64_of(seq.get()))
    .bind(user.as_uuid())
    .bind(now.as_millis())
    .fetch_optional(&mut **tx)
    .await
    .map_err(db)?;
    Ok(row.is_some())
}

/// The common case of an issue in one statement: a user with no live place gets the
/// next sequence, when the line has room. Its trigger (migration 0005) moves
/// `last_seq` to it in the same statement. Any other case inserts nothing, and the
/// adapter's transaction decides.
pub(super) const ISSUE_SQL: &str = concat!(
    "INSERT INTO queue_entries (seq, user_id, token_id, issued_at, state)
     SELECT c.last_seq + 1, ?1, ?2, ?3, 'live' FROM queue_counters c
     WHERE c.id = 1 AND c.last_seq - c.serving < ?4
       AND NOT EXISTS (SELECT 1 FROM queue_entries q WHERE q.user_id = ?1 AND q.state = 'live')
     RETURNING ",
    entry_cols!()
);

pub(super) fn issue_args(req: &IssueRequest) -> Vec<Arg> {
    vec![
        Arg::Uuid(req.user.as_uuid()),
        Arg::Uuid(req.token_id.as_uuid()),
        Arg::Int(req.now.as_millis()),
        Arg::Int(cv::i64_of(req.max_waiting)),
    ]
}

pub(super) fn issue_statement(req: &IssueRequest) -> Query<'static> {
    Arg::bind_numbered(sqlx::query(ISSUE_SQL), issue_args(req))
}

impl QueueRepo for SqliteStore {
    async fn issue(&self, req: IssueRequest) -> Result<QueueEntry, IssueRepoError> {
        // The hot path: one statement, shared with other writes' commit under a
        // burst (group commit).
        if let Some(row) = self.hot.run(HotWrite::Issue(req)).await.map_err(db)? {
            return Ok(entry_of(&row)?);
        }
        // The user has a place (live or lapsed), or the line is full: decide under
        // the write lock.
        let mut tx = self.begin().await?;
        if let Some(entry) = live_entry_of(&mut tx, req.user).await? {
            if entry.is_live_at(req.now) {
                return Ok(entry);
            }
            sqlx::query("UPDATE queue_entries SET state = 'expired' WHERE seq = ?")
                .bind(cv::i64_of(entry.seq.get()))
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        let next = sqlx::query(
            "UPDATE queue_counters SET last_seq = last_seq + 1
             WHERE id = 1 AND last_seq - serving < ? RETURNING last_seq",
        )
        .bind(cv::i64_of(req.max_waiting))
        .fetch_all(&mut *tx)
        .await
        .map(first)
        .map_err(db)?;
        let Some(next) = next else {
            return Err(IssueRepoError::QueueFull);
        };
        let seq: i64 = next.try_get("last_seq").map_err(db)?;
        let row = sqlx::query(concat!(
            "INSERT INTO queue_entries (seq, user_id, token_id, issued_at, state)
             VALUES (?, ?, ?, ?, 'live') RETURNING ",
            entry_cols!()
        ))
        .bind(seq)
        .bind(req.user.as_uuid())
        .bind(req.token_id.as_uuid())
        .bind(req.now.as_millis())
        .fetch_all(&mut *tx)
        .await
        .and_then(one)
        .map_err(db)?;
        let entry = entry_of(&row)?;
        commit(tx).await?;
        Ok(entry)
    }

    async fn entry(&self, seq: QueueSeq) -> Result<Option<QueueEntry>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            entry_cols!(),
            " FROM queue_entries WHERE seq = ?"
        ))
        .bind(cv::i64_of(seq.get()))
        .fetch_optional(&self.read)
        .await
        .map_err(db)?;
        row.as_ref().map(entry_of).transpose()
    }

    async fn counters(&self) -> Result<QueueCounters, StoreError> {
        let row = sqlx::query("SELECT * FROM queue_counters WHERE id = 1")
            .fetch_one(&self.read)
            .await
            .map_err(db)?;
        counters_of(&row)
    }

    async fn count_active(&self, now: Timestamp) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM queue_entries
             WHERE state = 'live' AND admitted_at IS NOT NULL AND expires_at > ?",
        )
        .bind(now.as_millis())
        .fetch_one(&self.read)
        .await
        .map_err(db)?;
        cv::u64_of(n, "active count")
    }

    async fn advance(&self, adv: Advance) -> Result<bool, StoreError> {
        let mut tx = self.begin().await?;
        let row = sqlx::query("SELECT serving, last_seq, version FROM queue_counters WHERE id = 1")
            .fetch_one(&mut *tx)
            .await
            .map_err(db)?;
        let version: i64 = row.try_get("version").map_err(db)?;
        if version != cv::i64_of(adv.expected_version) {
            return Ok(false);
        }
        let serving: i64 = row.try_get("serving").map_err(db)?;
        let last_seq: i64 = row.try_get("last_seq").map_err(db)?;
        let new = cv::i64_of(adv.serving);
        if new < serving || new > last_seq {
            return Err(StoreError::Failed(format!(
                "advance to {new} outside {serving}..={last_seq}"
            )));
        }
        sqlx::query(
            "UPDATE queue_counters
             SET serving = ?, version = version + 1, last_tick_at = ?, admit_rate_milli = ?
             WHERE id = 1",
        )
        .bind(new)
        .bind(adv.now.as_millis())
        .bind(cv::i64_of(adv.admit_rate_milli))
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        // Every waiting entry is live, so the whole range is stamped.
        let stamped = sqlx::query(
            "UPDATE queue_entries SET admitted_at = ?, expires_at = ?
             WHERE seq > ? AND seq <= ? AND state = 'live'",
        )
        .bind(adv.now.as_millis())
        .bind(adv.admitted_until.as_millis())
        .bind(serving)
        .bind(new)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        if stamped.rows_affected() != (new - serving) as u64 {
            return Err(StoreError::Failed(format!(
                "advance {serving}..={new} stamped {} entries",
                stamped.rows_affected()
            )));
        }
        commit(tx).await?;
        Ok(true)
    }

    async fn show_up(
        &self,
        seq: QueueSeq,
        now: Timestamp,
        until: Timestamp,
    ) -> Result<Option<QueueEntry>, StoreError> {
        let row = sqlx::query(concat!(
            "UPDATE queue_entries SET seen_at = ?1, expires_at = ?2
             WHERE seq = ?3 AND state = 'live' AND admitted_at IS NOT NULL
               AND seen_at IS NULL AND expires_at > ?1
             RETURNING ",
            entry_cols!()
        ))
        .bind(now.as_millis())
        .bind(until.as_millis())
        .bind(cv::i64_of(seq.get()))
        .fetch_all(&self.write)
        .await
        .map(first)
        .map_err(db)?;
        row.as_ref().map(entry_of).transpose()
    }

    async fn set_policy(&self, policy: AdmissionPolicy) -> Result<(), StoreError> {
        let (interval_ms, batch, max_active) = cv::policy_parts(&policy);
        sqlx::query(
            "UPDATE queue_counters
             SET interval_ms = ?, batch = ?, max_active = ?, version = version + 1
             WHERE id = 1",
        )
        .bind(interval_ms)
        .bind(batch)
        .bind(max_active)
        .execute(&self.write)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn set_paused(&self, paused: bool) -> Result<(), StoreError> {
        sqlx::query("UPDATE queue_counters SET paused = ?, version = version + 1 WHERE id = 1")
            .bind(i64::from(paused))
            .execute(&self.write)
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn expire_sessions(&self, now: Timestamp, limit: u32) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "UPDATE queue_entries SET state = 'expired'
             WHERE seq IN (SELECT seq FROM queue_entries
                           WHERE state = 'live' AND admitted_at IS NOT NULL AND expires_at <= ?
                           ORDER BY seq LIMIT ?)",
        )
        .bind(now.as_millis())
        .bind(i64::from(limit))
        .execute(&self.write)
        .await
        .map_err(db)?;
        Ok(done.rows_affected())
    }
}
