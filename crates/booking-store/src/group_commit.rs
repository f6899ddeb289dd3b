//! What the two adapters' group commits share: the group commit itself (a hot write
//! runs alone when no other is under way, else it queues and a batcher task runs
//! what queued together), its figures, and its limit.
//!
//! Each adapter supplies only how its writes run ([`Batching`]): alone, and several
//! as one batch. SQLite ([`crate::sqlite`]) runs a batch as one transaction on its
//! one writer; PostgreSQL ([`crate::postgres`]) as one call of a batch function per
//! kind of write: one round trip and one commit for many writes.
//!
//! Nothing is acknowledged before the commit that carries it: a caller gets its row
//! only once the batch that ran its write has committed.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use sqlx::pool::PoolConnection;
use sqlx::{Database, Pool};
use tokio::sync::{Semaphore, mpsc, oneshot};

/// What the group commit has done since the store opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GroupCommitStats {
    /// Hot writes that found no other under way, or were sent back from a batch,
    /// and ran alone.
    pub direct: u64,
    /// Hot writes that queued for a batch.
    pub queued: u64,
    /// Transactions that committed two or more queued writes together (or one,
    /// with the test switch `set_always_batch` on).
    pub batches: u64,
    /// Writes run by those transactions.
    pub batched: u64,
    /// Batches that failed (a statement's error) and whose writes ran again alone.
    pub retried: u64,
    /// Batched writes whose statement changed nothing (a refusal, which its caller
    /// then names).
    pub refused: u64,
    /// Batched writes that found a row they need locked by another transaction and
    /// ran again alone, after the batch (PostgreSQL: a batch never waits for a lock).
    pub deferred: u64,
    /// Hot writes refused at once because [`DEFAULT_MAX_UNDER_WAY`] (or the limit
    /// set) were already under way: the instance is overloaded, and says so
    /// (`StoreError::Unavailable`) instead of queueing without end.
    pub overloaded: u64,
    /// Hot writes under way now (running alone, queued, or in a batch): beyond the
    /// pool's size they wait for a connection.
    pub under_way: u64,
}

impl GroupCommitStats {
    /// Hot writes that committed without sharing their commit: those run alone, and
    /// those queued that ran in a batch of one or were sent back.
    pub fn alone(&self) -> u64 {
        self.direct + self.queued.saturating_sub(self.batched)
    }
}

/// Hot writes under way at once in one store value (one instance) at most, unless
/// set otherwise: beyond it a hot write is refused at once as unavailable. Large
/// enough for 10,000 users asking at the same instant.
pub const DEFAULT_MAX_UNDER_WAY: u64 = 16_384;

#[derive(Debug)]
pub(crate) struct Counters {
    pub(crate) direct: AtomicU64,
    pub(crate) queued: AtomicU64,
    pub(crate) batches: AtomicU64,
    pub(crate) batched: AtomicU64,
    pub(crate) retried: AtomicU64,
    pub(crate) refused: AtomicU64,
    pub(crate) deferred: AtomicU64,
    pub(crate) overloaded: AtomicU64,
    /// Hot writes under way (running alone, queued, or in a batch).
    pub(crate) busy: AtomicU64,
    /// The most hot writes under way at once.
    pub(crate) limit: AtomicU64,
    /// For tests: every hot write goes through the batch path, even with no other
    /// under way (a batch of one).
    pub(crate) always_batch: AtomicBool,
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            direct: AtomicU64::new(0),
            queued: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            batched: AtomicU64::new(0),
            retried: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            deferred: AtomicU64::new(0),
            overloaded: AtomicU64::new(0),
            busy: AtomicU64::new(0),
            limit: AtomicU64::new(DEFAULT_MAX_UNDER_WAY),
            always_batch: AtomicBool::new(false),
        }
    }
}

impl Counters {
    pub(crate) fn stats(&self) -> GroupCommitStats {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        GroupCommitStats {
            direct: get(&self.direct),
            queued: get(&self.queued),
            batches: get(&self.batches),
            batched: get(&self.batched),
            retried: get(&self.retried),
            refused: get(&self.refused),
            deferred: get(&self.deferred),
            overloaded: get(&self.overloaded),
            under_way: get(&self.busy),
        }
    }

    /// Sets the most hot writes under way at once (at least 1).
    pub(crate) fn set_limit(&self, n: u64) {
        self.limit.store(n.max(1), Ordering::Relaxed);
    }

    /// For tests: with `on`, every hot write queues for a batch, even alone, so
    /// that the batch statements run deterministically.
    pub(crate) fn set_always_batch(&self, on: bool) {
        self.always_batch.store(on, Ordering::Relaxed);
    }

    /// Whether every hot write goes through the batch path.
    pub(crate) fn always_batch(&self) -> bool {
        self.always_batch.load(Ordering::Relaxed)
    }
}

/// Counts a hot write as under way until dropped (also when its caller goes away).
pub(crate) struct Busy<'a>(&'a AtomicU64);

impl<'a> Busy<'a> {
    /// Enters; also says whether no other hot write was under way (never, with
    /// [`Counters::set_always_batch`] on). Refused (an
    /// error that storage maps to `Unavailable`) when the limit of writes under
    /// way is reached.
    pub(crate) fn enter(c: &'a Counters) -> Result<(Self, bool), sqlx::Error> {
        let before = c.busy.fetch_add(1, Ordering::AcqRel);
        let busy = Busy(&c.busy);
        if before >= c.limit.load(Ordering::Relaxed) {
            bump(&c.overloaded, 1);
            return Err(sqlx::Error::Io(std::io::Error::new(
                std::io::ErrorKind::WouldBlock,
                "too many writes under way: this instance is overloaded",
            )));
        }
        Ok((busy, before == 0 && !c.always_batch()))
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

pub(crate) fn bump(c: &AtomicU64, by: usize) {
    c.fetch_add(by as u64, Ordering::Relaxed);
}

/// No connection could be had for a batch: every write of it fails the same way.
pub(crate) fn copy_error(e: &sqlx::Error) -> sqlx::Error {
    match e {
        sqlx::Error::PoolClosed => sqlx::Error::PoolClosed,
        sqlx::Error::PoolTimedOut => sqlx::Error::PoolTimedOut,
        e => sqlx::Error::Protocol(format!("no connection for a batch: {e}")),
    }
}

/// A batch's answer to one write: its row (or its error), or `None` when the
/// caller must run the write alone (the batch sent it back).
pub(crate) type Answer<R> = Option<Result<R, sqlx::Error>>;

/// Where a batch sends one write's [`Answer`].
pub(crate) type Replier<R> = oneshot::Sender<Answer<R>>;

/// A write waiting for a batch, and where its answer goes.
pub(crate) type Queued<W> = (W, Replier<<W as Batching>::Row>);

/// How one adapter runs its hot writes (implemented by its write type): alone, and
/// several that queued together as one batch.
pub(crate) trait Batching: Clone + Send + Sync + 'static {
    /// The database.
    type Db: Database;
    /// What a write gives back when it ran.
    type Row: Send + 'static;
    /// The most writes one batch carries.
    const MAX_BATCH: usize;
    /// The most batches under way at once in one store value.
    const MAX_IN_FLIGHT: usize;

    /// Runs the write alone, to its commit.
    fn alone(
        &self,
        pool: &Pool<Self::Db>,
    ) -> impl Future<Output = Result<Self::Row, sqlx::Error>> + Send;

    /// Runs the queued writes on `conn` as one batch and answers each of them (with
    /// [`answer_all`]): its row once the batch committed, or `None` to send it back
    /// to its caller, who then runs it alone.
    fn batch(
        conn: &mut PoolConnection<Self::Db>,
        queued: Vec<Queued<Self>>,
        counters: &Counters,
    ) -> impl Future<Output = ()> + Send;
}

/// Sends each caller its answer, in order.
pub(crate) fn answer_all<R>(replies: Vec<Replier<R>>, answers: Vec<Answer<R>>) {
    for (reply, answer) in replies.into_iter().zip(answers) {
        // A caller that went away still had its write committed, like any request
        // dropped after its commit.
        let _ = reply.send(answer);
    }
}

/// Runs hot writes, committing the ones that arrive together in one batch.
pub(crate) struct GroupCommit<W: Batching> {
    pool: Pool<W::Db>,
    queue: mpsc::UnboundedSender<Queued<W>>,
    counters: Arc<Counters>,
}

// By hand: a derive would ask the database type itself to be `Clone` and `Debug`.
impl<W: Batching> Clone for GroupCommit<W> {
    fn clone(&self) -> Self {
        GroupCommit {
            pool: self.pool.clone(),
            queue: self.queue.clone(),
            counters: Arc::clone(&self.counters),
        }
    }
}

impl<W: Batching> std::fmt::Debug for GroupCommit<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCommit")
            .field("pool", &self.pool)
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

impl<W: Batching> GroupCommit<W> {
    /// Starts the batcher task (on the current Tokio runtime); it ends when the last
    /// clone of the returned handle is dropped.
    pub(crate) fn start(pool: Pool<W::Db>) -> Self {
        let (queue, rx) = mpsc::unbounded_channel();
        let counters = Arc::new(Counters::default());
        tokio::spawn(batcher::<W>(pool.clone(), rx, counters.clone()));
        GroupCommit {
            pool,
            queue,
            counters,
        }
    }

    /// Runs one hot write to its end (commit included) and returns its row.
    pub(crate) async fn run(&self, write: W) -> Result<W::Row, sqlx::Error> {
        let (batched, _busy) = self.try_batch(&write).await?;
        match batched {
            Some(row) => row,
            None => write.alone(&self.pool).await,
        }
    }

    /// The write's row from a batch, or `None` when its caller must run it alone:
    /// no other hot write was under way, or the batch sent it back. The returned
    /// guard counts the write as under way until the caller drops it. An error when
    /// too many writes are under way (see [`GroupCommitStats::overloaded`]).
    #[allow(clippy::type_complexity)]
    pub(crate) async fn try_batch(
        &self,
        write: &W,
    ) -> Result<(Option<Result<W::Row, sqlx::Error>>, Busy<'_>), sqlx::Error> {
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
        // No other hot write to share a commit with: it runs now (waiting for a
        // connection only if another write has it).
        bump(&self.counters.direct, 1);
        Ok((None, busy))
    }

    pub(crate) fn stats(&self) -> GroupCommitStats {
        self.counters.stats()
    }

    pub(crate) fn set_limit(&self, n: u64) {
        self.counters.set_limit(n);
    }

    pub(crate) fn set_always_batch(&self, on: bool) {
        self.counters.set_always_batch(on);
    }
}

/// Takes what queued, up to [`Batching::MAX_BATCH`] writes, as one batch, at most
/// [`Batching::MAX_IN_FLIGHT`] batches at once; what arrives meanwhile waits for the
/// next one, so batches grow with the load.
async fn batcher<W: Batching>(
    pool: Pool<W::Db>,
    mut rx: mpsc::UnboundedReceiver<Queued<W>>,
    counters: Arc<Counters>,
) {
    let in_flight = Arc::new(Semaphore::new(W::MAX_IN_FLIGHT));
    let mut batch = Vec::with_capacity(W::MAX_BATCH);
    loop {
        let Ok(permit) = Arc::clone(&in_flight).acquire_owned().await else {
            return;
        };
        if rx.recv_many(&mut batch, W::MAX_BATCH).await == 0 {
            return;
        }
        // Wait for a connection first: whatever queues meanwhile joins this batch.
        let conn = pool.acquire().await;
        while batch.len() < W::MAX_BATCH {
            match rx.try_recv() {
                Ok(queued) => batch.push(queued),
                Err(_) => break,
            }
        }
        let queued: Vec<Queued<W>> = std::mem::take(&mut batch);
        let counters = Arc::clone(&counters);
        tokio::spawn(async move {
            let _permit = permit;
            match conn {
                Ok(mut conn) => W::batch(&mut conn, queued, &counters).await,
                // No connection could be had: every write of it fails the same way.
                Err(e) => {
                    for (_, reply) in queued {
                        let _ = reply.send(Some(Err(copy_error(&e))));
                    }
                }
            }
        });
    }
}
