//! The per-project sync lock: one `wandbfs sync` writes a project at a time.
//!
//! Batches are safe against each other (each locks its run's sync state), but two syncs of one
//! project are not: one may reset a rewritten run's history while the other appends from the
//! resume point it read before, and one's "synced" marker may overwrite the other's newer
//! listing. So a sync holds a PostgreSQL session advisory lock on the project for its whole
//! duration, on a connection of its own (taken out of the pool, so that a small pool cannot
//! deadlock on it). The lock is the server's, so it holds across processes and machines — a
//! team's one shared database included.
//!
//! # Release
//!
//! A finished sync releases the lock **explicitly** ([`ProjectSyncLock::release`]:
//! `pg_advisory_unlock` on the lock's own connection, awaited), so the very next sync — a
//! `--watch` round, a script syncing twice, the mount's background sync — finds it free.
//! Closing the connection alone is not enough: the server ends the session (and drops its
//! locks) only some time after the client goes away, and a sync starting in that window would
//! be turned away as busy.
//!
//! What cannot release explicitly is covered too:
//! - a sync future dropped mid-way (cancelled) releases from a background task; a sync of the
//!   same project in this process waits for that release instead of reporting `Busy`;
//! - a release whose statement failed (the connection broke) leaves the server session to die
//!   on its own; the next attempt in this process that finds the lock held by *that* session
//!   ends it (`pg_terminate_backend` with a wait) and takes the lock;
//! - a process that dies (`kill -9` included) loses its connection, and the server drops the
//!   lock when it notices.
//!
//! So a sync can find the lock held by its own process's earlier sync only while that sync is
//! really running.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_postgres::error::SqlState;

use super::Mirror;
use super::error::{DbContext, MirrorError, Result};
use super::model::ProjectPk;

/// First half of the advisory-lock key of project sync locks ("wand"); the second half is the
/// project's key.
const SYNC_LOCK_CLASS: i32 = 0x7761_6e64;

/// How long to wait for an abandoned session of this process to end, in milliseconds
/// (`pg_terminate_backend`'s wait; it returns as soon as the session is gone).
const ABANDONED_SESSION_WAIT_MS: i64 = 10_000;

/// What this process knows about its own project locks (per [`Mirror`], shared by its clones).
#[derive(Debug, Default)]
pub(crate) struct LocalLocks {
    slots: Mutex<HashMap<i32, Slot>>,
}

#[derive(Debug)]
enum Slot {
    /// A sync of this process holds (or is taking) the lock; the receiver resolves when it is
    /// released (or could not be taken).
    Held(tokio::sync::watch::Receiver<()>),
    /// A dropped lock is being released in the background; resolves when done.
    Releasing(tokio::sync::watch::Receiver<()>),
    /// A release failed: the server session with this backend pid may still hold the lock.
    Abandoned(i32),
}

impl LocalLocks {
    fn slots(&self) -> std::sync::MutexGuard<'_, HashMap<i32, Slot>> {
        // A poisoned map only means a panic elsewhere; its content is still consistent.
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A held project sync lock. Release it with [`ProjectSyncLock::release`]; dropping it
/// releases it in the background (see the module docs).
pub struct ProjectSyncLock {
    connection: Option<deadpool_postgres::ClientWrapper>,
    key: i32,
    backend_pid: i32,
    local: Arc<LocalLocks>,
    /// Dropped when the lock is released: wakes this process's waiters.
    _held: tokio::sync::watch::Sender<()>,
}

impl std::fmt::Debug for ProjectSyncLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProjectSyncLock")
            .field("key", &self.key)
            .field("backend_pid", &self.backend_pid)
            .finish()
    }
}

impl ProjectSyncLock {
    /// Releases the lock and waits until the server has. A failure is logged, not returned:
    /// the connection is gone then, and the lock with its session (see the module docs).
    pub async fn release(mut self) {
        if let Some(connection) = self.connection.take() {
            let released = unlock(&connection, self.key).await;
            self.settle(released);
        }
    }

    /// Records the outcome of a release in the process-local table.
    fn settle(&self, released: bool) {
        let mut slots = self.local.slots();
        if released {
            slots.remove(&self.key);
        } else {
            slots.insert(self.key, Slot::Abandoned(self.backend_pid));
        }
    }
}

impl Drop for ProjectSyncLock {
    fn drop(&mut self) {
        let Some(connection) = self.connection.take() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            // No runtime to release from: closing the connection releases it eventually.
            self.local
                .slots()
                .insert(self.key, Slot::Abandoned(self.backend_pid));
            return;
        };
        let (done, waiting) = tokio::sync::watch::channel(());
        self.local
            .slots()
            .insert(self.key, Slot::Releasing(waiting));
        let lock = ProjectSyncLock {
            connection: None,
            key: self.key,
            backend_pid: self.backend_pid,
            local: Arc::clone(&self.local),
            _held: tokio::sync::watch::channel(()).0,
        };
        runtime.spawn(async move {
            let released = unlock(&connection, lock.key).await;
            lock.settle(released);
            drop(done);
        });
    }
}

/// `pg_advisory_unlock` on the lock's connection; whether the server confirmed it.
async fn unlock(connection: &tokio_postgres::Client, key: i32) -> bool {
    match connection
        .query_one(
            "SELECT pg_advisory_unlock($1, $2)",
            &[&SYNC_LOCK_CLASS, &key],
        )
        .await
    {
        Ok(row) => row.try_get::<_, bool>(0).unwrap_or(false),
        Err(e) => {
            tracing::warn!(
                "releasing a project sync lock failed ({e}); it goes with its session, which \
                 the next sync of the project from this process ends"
            );
            false
        }
    }
}

impl Mirror {
    /// Takes `project`'s sync lock, or returns `None` at once when another sync holds it
    /// (another process, or a sync of this process that is still running).
    pub async fn try_lock_project_sync(
        &self,
        project: ProjectPk,
    ) -> Result<Option<ProjectSyncLock>> {
        self.lock_project_sync(project, Duration::ZERO).await
    }

    /// Takes `project`'s sync lock, waiting up to `wait` for another sync to release it;
    /// `None` when it is still held then. Waiting is event-driven: on this process's own
    /// release, and on the server's lock queue (`lock_timeout`) for other processes.
    pub async fn lock_project_sync(
        &self,
        project: ProjectPk,
        wait: Duration,
    ) -> Result<Option<ProjectSyncLock>> {
        // Projects whose keys differ by a multiple of 2^32 share a lock: harmless, they are
        // merely synced one after the other.
        let key = project.0 as i32;
        let deadline = tokio::time::Instant::now() + wait;
        let (held, abandoned) = loop {
            enum Next {
                Take(tokio::sync::watch::Sender<()>, Option<i32>),
                Wait(tokio::sync::watch::Receiver<()>),
                Release(tokio::sync::watch::Receiver<()>),
                Refuse,
            }
            // The map's guard must not live across an await (the future would not be Send).
            let next = {
                let mut slots = self.local_locks.slots();
                match slots.get(&key) {
                    Some(Slot::Held(_)) if wait.is_zero() => Next::Refuse,
                    Some(Slot::Held(waiting)) => Next::Wait(waiting.clone()),
                    // A release in progress is waited for whatever `wait` says: it takes one
                    // statement, and the lock is free after it.
                    Some(Slot::Releasing(waiting)) => Next::Release(waiting.clone()),
                    Some(Slot::Abandoned(pid)) => {
                        let pid = *pid;
                        let (held, waiting) = tokio::sync::watch::channel(());
                        slots.insert(key, Slot::Held(waiting));
                        Next::Take(held, Some(pid))
                    }
                    None => {
                        let (held, waiting) = tokio::sync::watch::channel(());
                        slots.insert(key, Slot::Held(waiting));
                        Next::Take(held, None)
                    }
                }
            };
            match next {
                Next::Take(held, abandoned) => break (held, abandoned),
                Next::Refuse => return Ok(None),
                Next::Release(mut waiting) => {
                    let _ = waiting.changed().await;
                }
                Next::Wait(mut waiting) => {
                    // Resolves when the holder (or the releasing task) drops its sender.
                    if tokio::time::timeout_at(deadline, waiting.changed())
                        .await
                        .is_err()
                    {
                        return Ok(None);
                    }
                }
            }
        };
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        let taken = self.take_server_lock(key, abandoned, remaining).await;
        match taken {
            Ok(Some((connection, backend_pid))) => Ok(Some(ProjectSyncLock {
                connection: Some(connection),
                key,
                backend_pid,
                local: Arc::clone(&self.local_locks),
                _held: held,
            })),
            Ok(None) => {
                self.local_locks.slots().remove(&key);
                Ok(None)
            }
            Err(e) => {
                let mut slots = self.local_locks.slots();
                match abandoned {
                    Some(pid) => slots.insert(key, Slot::Abandoned(pid)),
                    None => slots.remove(&key),
                };
                Err(e)
            }
        }
    }

    /// The server-side lock on a connection of its own, with that session's backend pid.
    async fn take_server_lock(
        &self,
        key: i32,
        abandoned: Option<i32>,
        wait: Duration,
    ) -> Result<Option<(deadpool_postgres::ClientWrapper, i32)>> {
        let connection = deadpool_postgres::Object::take(self.pool.get().await?);
        let try_lock = async || -> Result<(bool, i32)> {
            let row = connection
                .query_one(
                    "SELECT pg_try_advisory_lock($1, $2), pg_backend_pid()",
                    &[&SYNC_LOCK_CLASS, &key],
                )
                .await
                .db("taking the project's sync lock")?;
            Ok((row.get(0), row.get(1)))
        };
        let (mut locked, pid) = try_lock().await?;
        if !locked && let Some(old) = abandoned {
            // A session of this process whose release failed may still hold it: end that
            // session (never another process's) and try again.
            let ended: bool = connection
                .query_one(
                    "SELECT coalesce(bool_or(pg_terminate_backend(l.pid, $4)), false)
                       FROM pg_locks l
                      WHERE l.locktype = 'advisory' AND l.granted AND l.pid = $1
                        AND l.classid = $2::int::oid AND l.objid = $3::int::oid
                        AND l.objsubid = 2",
                    &[&old, &SYNC_LOCK_CLASS, &key, &ABANDONED_SESSION_WAIT_MS],
                )
                .await
                .db("ending an abandoned sync-lock session")?
                .get(0);
            if ended {
                locked = try_lock().await?.0;
            }
        }
        if !locked && !wait.is_zero() {
            // Queue on the server until the holder releases it, for at most `wait`.
            let timeout = format!("SET lock_timeout = {}", wait.as_millis().max(1));
            connection
                .batch_execute(&timeout)
                .await
                .db("setting the sync lock's wait")?;
            locked = match connection
                .execute("SELECT pg_advisory_lock($1, $2)", &[&SYNC_LOCK_CLASS, &key])
                .await
            {
                Ok(_) => true,
                Err(e) if e.code() == Some(&SqlState::LOCK_NOT_AVAILABLE) => false,
                Err(source) => {
                    return Err(MirrorError::Db {
                        context: "waiting for the project's sync lock",
                        source,
                    });
                }
            };
        }
        Ok(locked.then_some((connection, pid)))
    }
}
