//! Group commit for PostgreSQL's hot writes (hold, payment, token issue).
//!
//! A hot write that finds no other under way in this instance runs at once, alone,
//! as one call of its function (`booking_hold`, `booking_pay`). Writes that arrive
//! while others are under way queue, and a batcher task sends each kind's queued
//! writes as one call of a batch function (`booking_hold_batch`,
//! `booking_pay_batch`, migration 0005): one round trip and one autocommit
//! transaction, so one commit, for up to [`MAX_BATCH`] writes. At most
//! [`MAX_IN_FLIGHT`] batches run at once; what arrives meanwhile waits for the next
//! one, so batches grow with the load.
//!
//! The batch function runs the writes in order, each through the same function as a
//! write of its own, seeing the writes before it, and never waits for a row lock: a
//! write whose rows another transaction has locked is not run, and comes back as
//! `busy`. Its caller then runs it alone (and waits like any single write), as it
//! does every write of a batch that failed: a failed call rolled back as a whole.
//! Nothing is acknowledged before the commit that carries it: a caller gets its row
//! only after the batch's call returned.
//!
//! Since a batch never waits for a lock, it takes no part in a deadlock: single
//! writes keep their lock order, and batches of several instances never wait for
//! each other.

use std::sync::Arc;

use booking_core::domain::IdempotencyKey;
use booking_core::ports::{IssueRequest, NewHold, PayRequest};
use sqlx::postgres::{PgPool, PgRow};
use sqlx::{Postgres, Row};
use tokio::sync::{Semaphore, mpsc, oneshot};

use super::{HOLD, ISSUE, PAY};
use crate::convert as cv;
use crate::group_commit::{Busy, Counters, GroupCommitStats, bump, copy_error};

/// The most writes one batch carries.
const MAX_BATCH: usize = 64;

/// The most batches under way at once in one instance.
const MAX_IN_FLIGHT: usize = 2;

/// A batch's call for holds: one row per hold, in order, with `hold_outcome`'s
/// columns.
const HOLD_BATCH: &str = "SELECT o_i, o_refusal, o_n_live, o_price
     FROM booking_hold_batch($1, $2, $3, $4, $5, $6, $7, $8)";

/// A batch's call for payments: one row per payment, in order, with `pay_outcome`'s
/// columns.
const PAY_BATCH: &str = "SELECT o_i, o_outcome AS outcome, o_balance AS balance, o_id AS id,
            o_user_id AS user_id, o_schedule_id AS schedule_id, o_seat_no AS seat_no,
            o_price AS price, o_created_at AS created_at, o_expires_at AS expires_at,
            o_state AS state
     FROM booking_pay_batch($1, $2, $3, $4, $5, $6)";

/// A batch's call for token issues: one row per issue, in order, with the entry's
/// columns when it was given a place, or `busy`.
const ISSUE_BATCH: &str = "SELECT o_i, o_outcome AS outcome, o_seq AS seq, o_user_id AS user_id,
            o_token_id AS token_id, o_issued_at AS issued_at, o_state AS state,
            o_admitted_at AS admitted_at, o_seen_at AS seen_at, o_expires_at AS expires_at
     FROM booking_issue_batch($1, $2, $3, $4)";

type Query = sqlx::query::Query<'static, Postgres, sqlx::postgres::PgArguments>;

/// One hot write.
#[derive(Debug, Clone)]
pub(super) enum HotWrite {
    Hold(NewHold),
    Pay(PayRequest),
    /// Token issue: a batch gives the common case its place; everything else is sent
    /// back and runs through the adapter's own path ([`GroupCommit::try_batch`]).
    Issue(IssueRequest),
}

impl HotWrite {
    /// The write as one call of its own (for an issue: the single-issue statement,
    /// which returns no row when the line is full).
    pub(super) fn statement(&self) -> Query {
        match self {
            HotWrite::Hold(r) => sqlx::query(HOLD)
                .bind(r.schedule.get())
                .bind(i64::from(r.seat.get()))
                .bind(cv::i64_of(r.session.get()))
                .bind(r.user.as_uuid())
                .bind(r.now.as_millis())
                .bind(i64::from(r.max_live_per_user))
                .bind(r.id.as_uuid())
                .bind(r.expires_at.as_millis()),
            HotWrite::Pay(r) => sqlx::query(PAY)
                .bind(r.reservation.as_uuid())
                .bind(r.user.as_uuid())
                .bind(cv::i64_of(r.session.get()))
                .bind(r.now.as_millis())
                .bind(r.key.as_ref().map(IdempotencyKey::as_str))
                .bind(r.id.as_uuid()),
            HotWrite::Issue(r) => sqlx::query(ISSUE)
                .bind(r.user.as_uuid())
                .bind(r.token_id.as_uuid())
                .bind(r.now.as_millis())
                .bind(cv::i64_of(r.max_waiting)),
        }
    }
}

/// One column of a batch's arrays: `f` of each write.
fn column<W, T>(writes: &[W], f: impl Fn(&W) -> T) -> Vec<T> {
    writes.iter().map(f).collect()
}

/// The call that runs `holds` as one batch.
fn holds_call(holds: &[NewHold]) -> Query {
    sqlx::query(HOLD_BATCH)
        .bind(column(holds, |r| r.schedule.get()))
        .bind(column(holds, |r| i64::from(r.seat.get())))
        .bind(column(holds, |r| cv::i64_of(r.session.get())))
        .bind(column(holds, |r| r.user.as_uuid()))
        .bind(column(holds, |r| r.now.as_millis()))
        .bind(column(holds, |r| i64::from(r.max_live_per_user)))
        .bind(column(holds, |r| r.id.as_uuid()))
        .bind(column(holds, |r| r.expires_at.as_millis()))
}

/// The call that runs `pays` as one batch.
fn pays_call(pays: &[PayRequest]) -> Query {
    sqlx::query(PAY_BATCH)
        .bind(column(pays, |r| r.reservation.as_uuid()))
        .bind(column(pays, |r| r.user.as_uuid()))
        .bind(column(pays, |r| cv::i64_of(r.session.get())))
        .bind(column(pays, |r| r.now.as_millis()))
        .bind(column(pays, |r| {
            r.key.as_ref().map(|k| k.as_str().to_owned())
        }))
        .bind(column(pays, |r| r.id.as_uuid()))
}

/// The call that runs `issues` as one batch.
fn issues_call(issues: &[IssueRequest]) -> Query {
    sqlx::query(ISSUE_BATCH)
        .bind(column(issues, |r| r.user.as_uuid()))
        .bind(column(issues, |r| r.token_id.as_uuid()))
        .bind(column(issues, |r| r.now.as_millis()))
        .bind(column(issues, |r| cv::i64_of(r.max_waiting)))
}

/// A batch's answer to one write: its row, or `None` when the caller runs the write
/// alone (it was `busy`, or the batch failed and was rolled back).
type Reply = Option<Result<PgRow, sqlx::Error>>;

type Queued = (HotWrite, oneshot::Sender<Reply>);

/// Runs hot writes, committing the ones that arrive together in one batch.
#[derive(Debug, Clone)]
pub(super) struct GroupCommit {
    pool: PgPool,
    queue: mpsc::UnboundedSender<Queued>,
    counters: Arc<Counters>,
}

impl GroupCommit {
    /// Starts the batcher task (on the current Tokio runtime); it ends when the last
    /// clone of the returned handle is dropped.
    pub(super) fn start(pool: PgPool) -> Self {
        let (queue, rx) = mpsc::unbounded_channel();
        let counters = Arc::new(Counters::default());
        tokio::spawn(batcher(pool.clone(), rx, counters.clone()));
        GroupCommit {
            pool,
            queue,
            counters,
        }
    }

    /// Runs one hot write to its end (commit included) and returns its row.
    pub(super) async fn run(&self, write: HotWrite) -> Result<PgRow, sqlx::Error> {
        let (batched, _busy) = self.try_batch(&write).await?;
        match batched {
            Some(row) => row,
            None => write.statement().fetch_one(&self.pool).await,
        }
    }

    /// The write's row from a batch, or `None` when its caller must run it alone:
    /// no other hot write was under way, or the batch sent it back. The returned
    /// guard counts the write as under way until the caller drops it. An error when
    /// too many writes are under way (see [`crate::GroupCommitStats::overloaded`]).
    #[allow(clippy::type_complexity)]
    pub(super) async fn try_batch(
        &self,
        write: &HotWrite,
    ) -> Result<(Option<Result<PgRow, sqlx::Error>>, Busy<'_>), sqlx::Error> {
        let (busy, alone) = Busy::enter(&self.counters)?;
        if !alone {
            let (reply, answer) = oneshot::channel();
            // A copy goes to the batch: the caller still has the write to run
            // alone if the batch sends it back.
            if self.queue.send((write.clone(), reply)).is_ok() {
                bump(&self.counters.queued, 1);
                match answer.await {
                    Ok(Some(row)) => return Ok((Some(row), busy)),
                    Ok(None) => {}
                    Err(_) => return Ok((Some(Err(sqlx::Error::WorkerCrashed)), busy)),
                }
            }
            // Else no batcher (its runtime ended): the write runs alone.
        }
        bump(&self.counters.direct, 1);
        Ok((None, busy))
    }

    pub(super) fn stats(&self) -> GroupCommitStats {
        self.counters.stats()
    }

    pub(super) fn set_limit(&self, n: u64) {
        self.counters.set_limit(n);
    }

    pub(super) fn set_always_batch(&self, on: bool) {
        self.counters.set_always_batch(on);
    }
}

async fn batcher(pool: PgPool, mut rx: mpsc::UnboundedReceiver<Queued>, counters: Arc<Counters>) {
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        let Ok(permit) = Arc::clone(&in_flight).acquire_owned().await else {
            return;
        };
        if rx.recv_many(&mut batch, MAX_BATCH).await == 0 {
            return;
        }
        // Wait for a connection first: whatever queues meanwhile joins this batch.
        let conn = pool.acquire().await;
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(queued) => batch.push(queued),
                Err(_) => break,
            }
        }
        let queued: Vec<Queued> = std::mem::take(&mut batch);
        let counters = Arc::clone(&counters);
        tokio::spawn(async move {
            let _permit = permit;
            let mut conn = match conn {
                Ok(conn) => conn,
                Err(e) => {
                    for (_, reply) in queued {
                        let _ = reply.send(Some(Err(copy_error(&e))));
                    }
                    return;
                }
            };
            let (mut holds, mut pays, mut issues) = (Vec::new(), Vec::new(), Vec::new());
            let (mut hold_replies, mut pay_replies, mut issue_replies) =
                (Vec::new(), Vec::new(), Vec::new());
            for (write, reply) in queued {
                match write {
                    HotWrite::Hold(r) => {
                        holds.push(r);
                        hold_replies.push(reply);
                    }
                    HotWrite::Pay(r) => {
                        pays.push(r);
                        pay_replies.push(reply);
                    }
                    HotWrite::Issue(r) => {
                        issues.push(r);
                        issue_replies.push(reply);
                    }
                }
            }
            if !holds.is_empty() {
                let call = holds_call(&holds);
                run_batch(&mut conn, call, "o_refusal", hold_replies, &counters).await;
            }
            if !pays.is_empty() {
                let call = pays_call(&pays);
                run_batch(&mut conn, call, "outcome", pay_replies, &counters).await;
            }
            if !issues.is_empty() {
                let call = issues_call(&issues);
                run_batch(&mut conn, call, "outcome", issue_replies, &counters).await;
            }
        });
    }
}

/// Runs one batch's call, and answers each of its writes' callers (`outcome`: see
/// [`answers_of`]).
async fn run_batch(
    conn: &mut sqlx::PgConnection,
    call: Query,
    outcome: &str,
    replies: Vec<oneshot::Sender<Reply>>,
    counters: &Counters,
) {
    let n = replies.len();
    let every = |answer: &dyn Fn() -> Reply| (0..n).map(|_| answer()).collect::<Vec<_>>();
    let answers: Vec<Reply> = match call.fetch_all(&mut *conn).await {
        Ok(rows) => match answers_of(rows, outcome, n) {
            Ok((answers, refused)) => {
                bump(&counters.batches, 1);
                bump(&counters.batched, n);
                bump(&counters.refused, refused);
                bump(
                    &counters.deferred,
                    answers.iter().filter(|a| a.is_none()).count(),
                );
                answers
            }
            Err(e) => every(&|| Some(Err(copy_error(&e)))),
        },
        // The call failed as a whole and was rolled back: each write runs alone.
        Err(sqlx::Error::Database(_)) => {
            bump(&counters.retried, 1);
            every(&|| None)
        }
        // Whether it committed is unknown: nobody is told it did, nor runs again.
        Err(e) => every(&|| Some(Err(copy_error(&e)))),
    };
    for (reply, answer) in replies.into_iter().zip(answers) {
        // A caller that went away still had its write committed, like any request
        // dropped after its commit.
        let _ = reply.send(answer);
    }
}

/// Each write's row from a batch's rows, or `None` for a `busy` one; and how many
/// were refused. `outcome` is the column that says so: a hold's refusal (NULL when it
/// was taken) or a payment's outcome.
fn answers_of(
    rows: Vec<PgRow>,
    outcome: &str,
    n: usize,
) -> Result<(Vec<Reply>, usize), sqlx::Error> {
    if rows.len() != n {
        return Err(sqlx::Error::Protocol(format!(
            "a batch of {n} writes returned {} rows",
            rows.len()
        )));
    }
    let mut answers = Vec::with_capacity(n);
    let mut refused = 0;
    for (i, row) in rows.into_iter().enumerate() {
        let o_i: i32 = row.try_get("o_i")?;
        if usize::try_from(o_i).ok() != Some(i + 1) {
            return Err(sqlx::Error::Protocol(format!(
                "row {} of a batch names write {o_i}",
                i + 1
            )));
        }
        let said: Option<String> = row.try_get(outcome)?;
        match said.as_deref() {
            Some("busy") => answers.push(None),
            None | Some("paid") => answers.push(Some(Ok(row))),
            Some(_) => {
                refused += 1;
                answers.push(Some(Ok(row)));
            }
        }
    }
    Ok((answers, refused))
}
