//! A pooled connection whose statements give up after the mirror's statement timeout.
//!
//! A server that stops answering — paused (`SIGSTOP`), swapped out, behind a cut network — does
//! not close its connections: without a deadline of our own, every statement on them waits
//! forever, and so does every filesystem request behind it. The server's `statement_timeout`
//! cannot help (the server is not running), nor can TCP keepalives on a Unix socket. So each
//! statement sent through a [`Conn`] runs under a client-side deadline; when it passes, the
//! statement fails with [`QueryError::Timeout`] and the connection is **taken out of the
//! pool** and closed when the `Conn` is dropped (a statement may still be queued on it; the
//! next user gets a fresh connection, whose creation has a deadline of its own in the pool).
//!
//! A timeout also marks the database **stalled** ([`Health`]): it is probed on a fresh
//! connection every [`PROBE_INTERVAL`], and a statement under a deadline waits for the next
//! probe instead of its own timeout — a paused server costs the first request the timeout and
//! the next ones about a second each, and the first request after the server answers again
//! goes through.
//!
//! Without a timeout (the default: `wandbfs sync`, whose statements may legitimately run long)
//! a [`Conn`] is the pooled connection as it is. Transactions and `COPY` go through the
//! underlying client (`Deref`) and are never cut short: they are the sync's, not a reader's.

use std::future::Future;
use std::ops::{Deref, DerefMut};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use tokio_postgres::types::{BorrowToSql, ToSql};
use tokio_postgres::{Row, RowStream, Statement, ToStatement};

/// Why a statement on a [`Conn`] failed.
#[derive(Debug)]
pub enum QueryError {
    /// The server said no (or the connection broke).
    Pg(tokio_postgres::Error),
    /// No answer within the statement timeout.
    Timeout(Duration),
}

impl From<tokio_postgres::Error> for QueryError {
    fn from(e: tokio_postgres::Error) -> Self {
        QueryError::Pg(e)
    }
}

/// How often a stalled database is probed.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(250);

/// How long a probe waits for its answer.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// Whether the database answers, shared by every clone of a mirror (see the module docs).
#[derive(Debug)]
pub struct Health {
    /// (probes finished so far, stalled).
    state: tokio::sync::watch::Sender<(u64, bool)>,
    probing: AtomicBool,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            state: tokio::sync::watch::Sender::new((0, false)),
            probing: AtomicBool::new(false),
        }
    }
}

impl Health {
    /// Whether a statement timed out and no probe has been answered since.
    pub fn is_stalled(&self) -> bool {
        self.state.borrow().1
    }

    /// Waits for the outcome of the next probe of a stalled database: whether it answered.
    pub(crate) async fn next_probe(&self) -> bool {
        let mut rx = self.state.subscribe();
        let before = rx.borrow().0;
        let wait = rx.wait_for(|&(probes, stalled)| !stalled || probes > before);
        match tokio::time::timeout(PROBE_INTERVAL + PROBE_TIMEOUT * 2, wait).await {
            Ok(Ok(state)) => !state.1,
            _ => false,
        }
    }

    /// A statement (or a connection) timed out: stalled until a probe on `pool` is answered.
    pub(crate) fn stalled(self: &Arc<Self>, pool: &deadpool_postgres::Pool, limit: Duration) {
        let mut was = false;
        self.state.send_modify(|state| {
            was = state.1;
            state.1 = true;
        });
        if was {
            return;
        }
        tracing::warn!(
            "the database did not answer within {}s; requests fail fast until it answers again",
            limit.as_secs_f64()
        );
        if self.probing.swap(true, Ordering::Relaxed) {
            return;
        }
        let health = Arc::clone(self);
        let pool = pool.clone();
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.state.send_modify(|state| state.1 = false);
            self.probing.store(false, Ordering::Relaxed);
            return;
        };
        let limit = limit.min(PROBE_TIMEOUT);
        runtime.spawn(async move {
            loop {
                tokio::time::sleep(PROBE_INTERVAL).await;
                let answered = match tokio::time::timeout(limit, pool.get()).await {
                    Ok(Ok(object)) => {
                        let answered = matches!(
                            tokio::time::timeout(limit, object.simple_query("SELECT 1")).await,
                            Ok(Ok(_))
                        );
                        if !answered {
                            // A connection that did not answer is closed, not pooled again.
                            drop(deadpool_postgres::Object::take(object));
                        }
                        answered
                    }
                    _ => false,
                };
                health.state.send_modify(|state| {
                    state.0 += 1;
                    state.1 = !answered;
                });
                if answered {
                    break;
                }
            }
            tracing::info!("the database answers again");
            health.probing.store(false, Ordering::Relaxed);
        });
    }
}

/// A pooled connection with a statement deadline (see the module docs).
pub struct Conn {
    object: Option<deadpool_postgres::Object>,
    timeout: Option<Duration>,
    /// A statement timed out: the connection is closed instead of returned to the pool.
    poisoned: AtomicBool,
    health: Arc<Health>,
    pool: deadpool_postgres::Pool,
}

impl Conn {
    pub(crate) fn new(
        object: deadpool_postgres::Object,
        timeout: Option<Duration>,
        health: Arc<Health>,
        pool: deadpool_postgres::Pool,
    ) -> Self {
        Conn {
            object: Some(object),
            timeout,
            poisoned: AtomicBool::new(false),
            health,
            pool,
        }
    }

    fn timed_out(&self, limit: Duration) -> QueryError {
        self.poisoned.store(true, Ordering::Relaxed);
        self.health.stalled(&self.pool, limit);
        QueryError::Timeout(limit)
    }

    fn client(&self) -> &tokio_postgres::Client {
        self
    }

    /// Closes the connection when it is dropped instead of returning it to the pool: for a
    /// connection left in a state the next user must not inherit (an open transaction).
    pub(crate) fn discard(&self) {
        self.poisoned.store(true, Ordering::Relaxed);
    }

    async fn timed<T>(
        &self,
        work: impl Future<Output = Result<T, tokio_postgres::Error>>,
    ) -> Result<T, QueryError> {
        let Some(limit) = self.timeout else {
            return work.await.map_err(QueryError::Pg);
        };
        match tokio::time::timeout(limit, work).await {
            Ok(result) => result.map_err(QueryError::Pg),
            Err(_) => Err(self.timed_out(limit)),
        }
    }

    /// `Client::query`, under the deadline.
    pub async fn query<T>(
        &self,
        statement: &T,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, QueryError>
    where
        T: ?Sized + ToStatement,
    {
        self.timed(self.client().query(statement, params)).await
    }

    /// `Client::query_one`, under the deadline.
    pub async fn query_one<T>(
        &self,
        statement: &T,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Row, QueryError>
    where
        T: ?Sized + ToStatement,
    {
        self.timed(self.client().query_one(statement, params)).await
    }

    /// `Client::query_opt`, under the deadline.
    pub async fn query_opt<T>(
        &self,
        statement: &T,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, QueryError>
    where
        T: ?Sized + ToStatement,
    {
        self.timed(self.client().query_opt(statement, params)).await
    }

    /// `Client::execute`, under the deadline.
    pub async fn execute<T>(
        &self,
        statement: &T,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, QueryError>
    where
        T: ?Sized + ToStatement,
    {
        self.timed(self.client().execute(statement, params)).await
    }

    /// `Client::batch_execute`, under the deadline.
    pub async fn batch_execute(&self, query: &str) -> Result<(), QueryError> {
        self.timed(self.client().batch_execute(query)).await
    }

    /// `prepare_cached` of the pooled client, under the deadline.
    pub async fn prepare_cached(&self, query: &str) -> Result<Statement, QueryError> {
        let object: &deadpool_postgres::Object = self;
        self.timed(object.prepare_cached(query)).await
    }

    /// `Client::query_raw`, under the deadline: the first answer, and then every row, must
    /// come within it.
    pub async fn query_raw<T, P, I>(
        &self,
        statement: &T,
        params: I,
    ) -> Result<TimedRows<'_>, QueryError>
    where
        T: ?Sized + ToStatement,
        P: BorrowToSql,
        I: IntoIterator<Item = P>,
        I::IntoIter: ExactSizeIterator,
    {
        let rows = self
            .timed(self.client().query_raw(statement, params))
            .await?;
        Ok(TimedRows {
            rows: Box::pin(rows),
            conn: self,
            sleep: None,
        })
    }
}

impl Deref for Conn {
    type Target = deadpool_postgres::Object;

    fn deref(&self) -> &Self::Target {
        // ok: `object` is `Some` until `drop`.
        self.object.as_ref().expect("connection used after drop")
    }
}

impl DerefMut for Conn {
    fn deref_mut(&mut self) -> &mut Self::Target {
        // ok: `object` is `Some` until `drop`.
        self.object.as_mut().expect("connection used after drop")
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        if self.poisoned.load(Ordering::Relaxed)
            && let Some(object) = self.object.take()
        {
            tracing::debug!("closing a database connection whose statement timed out");
            drop(deadpool_postgres::Object::take(object));
        }
    }
}

/// Rows of [`Conn::query_raw`], each within the statement timeout.
pub struct TimedRows<'a> {
    rows: Pin<Box<RowStream>>,
    conn: &'a Conn,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Stream for TimedRows<'_> {
    type Item = Result<Row, QueryError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if let Poll::Ready(item) = this.rows.as_mut().poll_next(cx) {
            this.sleep = None;
            return Poll::Ready(item.map(|r| r.map_err(QueryError::Pg)));
        }
        let Some(limit) = this.conn.timeout else {
            return Poll::Pending;
        };
        let sleep = this
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => {
                this.sleep = None;
                Poll::Ready(Some(Err(this.conn.timed_out(limit))))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}
