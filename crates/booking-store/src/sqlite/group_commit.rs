//! Group commit for SQLite's hot writes (hold, charge, payment, token issue).
//!
//! Each hot write is one statement (its triggers do the rest), and SQLite has one
//! writer. When the writer connection is free, a write runs at once, in its own
//! transaction, exactly as before. When it is busy, the write queues, and a batcher
//! task runs everything that queued meanwhile in one `BEGIN IMMEDIATE` transaction:
//! the statements of one kind go to the connection's thread as one multi-statement
//! query (one hand-off instead of one per write), and one commit writes the pages
//! they share (a seat's page, the hold index's page, the wallets' page) once. In that
//! query each statement's parameters are plain `?` in the order they appear (the
//! driver numbers them on from the previous statement's), so a batch binds each
//! write's values in that order.
//!
//! Nothing is acknowledged before the commit that carries it succeeds. A statement
//! that fails (a unique key used again, a full disk) rolls the whole batch back, and
//! each write of the batch then runs again alone, so that every caller gets the
//! outcome of its own statement and no other. A statement that changes nothing (a
//! refusal) is not an error: its caller takes the slow path that names the refusal.
//!
//! The batch is a serial order of concurrent requests, none of them acknowledged yet,
//! so every invariant the statements keep one by one they keep in a batch: a later
//! statement sees the earlier ones' writes (a seat just held is taken, a cap just
//! reached refuses).
//!
//! The queue, the batcher task and the counters are the shared
//! [`crate::group_commit`]; this module says how SQLite runs a write alone and a
//! batch ([`Batching`]).

use std::sync::OnceLock;

use booking_core::ports::{ChargeRequest, IssueRequest, NewHold, PayRequest};
use futures_util::TryStreamExt;
use sqlx::pool::PoolConnection;
use sqlx::sqlite::{SqliteConnection, SqlitePool, SqliteRow};
use sqlx::{Connection, Either, Executor, Sqlite};
use uuid::Uuid;

use crate::group_commit::{Batching, Counters, Queued, answer_all, bump, copy_error};

use super::{
    CHARGE_SQL, HOLD_SQL, ISSUE_SQL, PAY_SQL, Query, charge_args, charge_statement, first,
    hold_args, hold_statement, issue_args, issue_statement, pay_args, pay_statement,
};

/// The most writes one transaction carries.
const MAX_BATCH: usize = 32;

/// One hot write, waiting for the writer.
#[derive(Debug, Clone)]
pub(super) enum HotWrite {
    Hold(NewHold),
    Charge(ChargeRequest),
    Pay(PayRequest),
    Issue(IssueRequest),
}

/// The kinds, in the order a batch runs them.
const KINDS: [Kind; 4] = [Kind::Hold, Kind::Charge, Kind::Pay, Kind::Issue];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Hold,
    Charge,
    Pay,
    Issue,
}

impl Kind {
    fn sql(self) -> &'static str {
        match self {
            Kind::Hold => HOLD_SQL,
            Kind::Charge => CHARGE_SQL,
            Kind::Pay => PAY_SQL,
            Kind::Issue => ISSUE_SQL,
        }
    }

    /// The statement with plain `?` parameters, and which numbered parameter each
    /// `?` stands for, in order.
    fn positional(self) -> &'static (String, Vec<usize>) {
        static TEXTS: [OnceLock<(String, Vec<usize>)>; KINDS.len()] =
            [const { OnceLock::new() }; KINDS.len()];
        TEXTS[self as usize].get_or_init(|| positional(self.sql()))
    }

    /// The text of `n` statements of this kind. Built once per size.
    fn batch_sql(self, n: usize) -> &'static str {
        static TEXTS: [[OnceLock<String>; MAX_BATCH]; KINDS.len()] =
            [const { [const { OnceLock::new() }; MAX_BATCH] }; KINDS.len()];
        TEXTS[self as usize][n - 1]
            .get_or_init(|| vec![self.positional().0.as_str(); n].join(";\n"))
    }
}

/// A parameter value of a hot write.
#[derive(Debug, Clone)]
pub(super) enum Arg {
    Uuid(Uuid),
    Int(i64),
    Text(Option<String>),
}

impl Arg {
    fn bind(self, q: Query<'static>) -> Query<'static> {
        match self {
            Arg::Uuid(v) => q.bind(v),
            Arg::Int(v) => q.bind(v),
            Arg::Text(v) => q.bind(v),
        }
    }

    /// Binds `args` as the parameters ?1, ?2, ... of a numbered statement.
    pub(super) fn bind_numbered(q: Query<'static>, args: Vec<Arg>) -> Query<'static> {
        args.into_iter().fold(q, |q, a| a.bind(q))
    }
}

impl HotWrite {
    fn kind(&self) -> Kind {
        match self {
            HotWrite::Hold(_) => Kind::Hold,
            HotWrite::Charge(_) => Kind::Charge,
            HotWrite::Pay(_) => Kind::Pay,
            HotWrite::Issue(_) => Kind::Issue,
        }
    }

    /// The write as one statement of its own.
    fn statement(&self) -> Query<'static> {
        match self {
            HotWrite::Hold(r) => hold_statement(r),
            HotWrite::Charge(r) => charge_statement(r),
            HotWrite::Pay(r) => pay_statement(r),
            HotWrite::Issue(r) => issue_statement(r),
        }
    }

    /// Appends this write's values to a batch's query, one per `?` of its
    /// positional text.
    fn bind(&self, q: Query<'static>) -> Query<'static> {
        let args = match self {
            HotWrite::Hold(r) => hold_args(r),
            HotWrite::Charge(r) => charge_args(r),
            HotWrite::Pay(r) => pay_args(r),
            HotWrite::Issue(r) => issue_args(r),
        };
        self.kind()
            .positional()
            .1
            .iter()
            .fold(q, |q, &n| args[n - 1].clone().bind(q))
    }
}

/// The statement's row (at most one), or `None` when it changed nothing.
type Outcome = Result<Option<SqliteRow>, sqlx::Error>;

impl Batching for HotWrite {
    type Db = Sqlite;
    type Row = Option<SqliteRow>;
    const MAX_BATCH: usize = MAX_BATCH;
    /// One writer: one batch at a time, and what queues meanwhile joins the next.
    const MAX_IN_FLIGHT: usize = 1;

    /// Waits for the writer only if another write has it.
    async fn alone(&self, pool: &SqlitePool) -> Outcome {
        self.statement().fetch_all(pool).await.map(first)
    }

    /// One transaction for the whole batch; a batch never sends a write back.
    async fn batch(
        conn: &mut PoolConnection<Sqlite>,
        queued: Vec<Queued<Self>>,
        counters: &Counters,
    ) {
        let (writes, replies): (Vec<HotWrite>, Vec<_>) = queued.into_iter().unzip();
        let outcomes = if writes.len() == 1 && !counters.always_batch() {
            vec![
                writes[0]
                    .statement()
                    .fetch_all(&mut **conn)
                    .await
                    .map(first),
            ]
        } else {
            match together(conn, &writes).await {
                Ok(rows) => {
                    bump(&counters.batches, 1);
                    bump(&counters.batched, writes.len());
                    bump(
                        &counters.refused,
                        rows.iter().filter(|r| r.is_none()).count(),
                    );
                    rows.into_iter().map(Ok).collect()
                }
                // Rolled back, nothing of the batch committed: each write runs
                // again alone.
                Err(Failed::RolledBack) => {
                    bump(&counters.retried, 1);
                    let mut outcomes = Vec::with_capacity(writes.len());
                    for w in &writes {
                        outcomes.push(w.statement().fetch_all(&mut **conn).await.map(first));
                    }
                    outcomes
                }
                // The connection's state is unknown: it is closed, not reused, and
                // no write is acknowledged.
                Err(Failed::Broken(e)) => {
                    conn.close_on_drop();
                    writes.iter().map(|_| Err(copy_error(&e))).collect()
                }
            }
        };
        answer_all(replies, outcomes.into_iter().map(Some).collect());
    }
}

/// Why a batch did not commit.
enum Failed {
    /// A statement failed and the transaction was rolled back.
    RolledBack,
    /// The transaction could not be begun, committed or rolled back.
    Broken(sqlx::Error),
}

/// Runs `writes` in one transaction; their rows, in order, once it committed.
async fn together(
    conn: &mut SqliteConnection,
    writes: &[HotWrite],
) -> Result<Vec<Option<SqliteRow>>, Failed> {
    let mut tx = conn
        .begin_with("BEGIN IMMEDIATE")
        .await
        .map_err(Failed::Broken)?;
    match statements(&mut tx, writes).await {
        Ok(rows) => {
            tx.commit().await.map_err(Failed::Broken)?;
            Ok(rows)
        }
        Err(_) => {
            tx.rollback().await.map_err(Failed::Broken)?;
            Err(Failed::RolledBack)
        }
    }
}

async fn statements(
    tx: &mut SqliteConnection,
    writes: &[HotWrite],
) -> Result<Vec<Option<SqliteRow>>, sqlx::Error> {
    let mut rows: Vec<Option<SqliteRow>> = writes.iter().map(|_| None).collect();
    for kind in KINDS {
        let of_kind: Vec<usize> = (0..writes.len())
            .filter(|&i| writes[i].kind() == kind)
            .collect();
        if of_kind.is_empty() {
            continue;
        }
        let mut q = sqlx::query(kind.batch_sql(of_kind.len()));
        for &i in &of_kind {
            q = writes[i].bind(q);
        }
        // A statement's row comes before the result that ends it.
        let mut done = 0;
        let mut stream = (&mut *tx).fetch_many(q);
        while let Some(item) = stream.try_next().await? {
            match item {
                Either::Right(row) => {
                    let i = *of_kind.get(done).ok_or(sqlx::Error::RowNotFound)?;
                    if rows[i].replace(row).is_some() {
                        return Err(sqlx::Error::Protocol("two rows from one hot write".into()));
                    }
                }
                Either::Left(_) => done += 1,
            }
        }
        if done != of_kind.len() {
            return Err(sqlx::Error::Protocol(format!(
                "{done} of {} statements ran",
                of_kind.len()
            )));
        }
    }
    Ok(rows)
}

/// `sql` with each `?NNN` parameter made a plain `?`, and the numbers in order.
fn positional(sql: &str) -> (String, Vec<usize>) {
    let mut text = String::with_capacity(sql.len());
    let mut order = Vec::new();
    let mut parts = sql.split('?');
    text.push_str(parts.next().unwrap_or(""));
    for rest in parts {
        let n = rest.chars().take_while(char::is_ascii_digit).count();
        order.push(rest[..n].parse().unwrap_or(0));
        text.push('?');
        text.push_str(&rest[n..]);
    }
    (text, order)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_positional_text_names_the_parameter_of_each_question_mark() {
        let (text, order) = positional("a = ?1 AND b = ?12, ?1");
        assert_eq!(text, "a = ? AND b = ?, ?");
        assert_eq!(order, vec![1, 12, 1]);
    }

    #[test]
    fn every_parameter_of_a_hot_write_is_numbered_and_bound() {
        for (kind, n_args) in [
            (Kind::Hold, 8),
            (Kind::Charge, 5),
            (Kind::Pay, 6),
            (Kind::Issue, 4),
        ] {
            let (text, order) = kind.positional();
            assert!(order.iter().all(|&n| (1..=n_args).contains(&n)), "{kind:?}");
            // Every value is used, and every `?` has one.
            let used: std::collections::BTreeSet<usize> = order.iter().copied().collect();
            assert_eq!(used, (1..=n_args).collect(), "{kind:?}");
            assert_eq!(text.matches('?').count(), order.len(), "{kind:?}");
            assert_eq!(kind.batch_sql(3).matches('?').count(), 3 * order.len());
        }
    }
}
