//! The per-project sync lock: one `wandbfs sync` writes a project at a time.
//!
//! Batches are safe against each other (each locks its run's sync state), but two syncs of one
//! project are not: one may reset a rewritten run's history while the other appends from the
//! resume point it read before, and one's "synced" marker may overwrite the other's newer
//! listing. So a sync holds a PostgreSQL session advisory lock on the project for its whole
//! duration, on a connection of its own (taken out of the pool, so that a small pool cannot
//! deadlock on it). The lock is the server's, so it holds across processes and machines — a
//! team's one shared database included — and it goes away with the connection when the holder
//! exits or dies, `kill -9` included.

use super::Mirror;
use super::error::{DbContext, Result};
use super::model::ProjectPk;

/// First half of the advisory-lock key of project sync locks ("wand"); the second half is the
/// project's key.
const SYNC_LOCK_CLASS: i32 = 0x7761_6e64;

/// A held project sync lock; dropping it releases the lock (its connection closes).
pub struct ProjectSyncLock {
    _connection: deadpool_postgres::ClientWrapper,
}

impl std::fmt::Debug for ProjectSyncLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProjectSyncLock")
    }
}

impl Mirror {
    /// Takes `project`'s sync lock, or returns `None` at once when another session holds it.
    pub async fn try_lock_project_sync(
        &self,
        project: ProjectPk,
    ) -> Result<Option<ProjectSyncLock>> {
        let connection = deadpool_postgres::Object::take(self.client().await?);
        // Projects whose keys differ by a multiple of 2^32 share a lock: harmless, they are
        // merely synced one after the other.
        let key = project.0 as i32;
        let locked: bool = connection
            .query_one(
                "SELECT pg_try_advisory_lock($1, $2)",
                &[&SYNC_LOCK_CLASS, &key],
            )
            .await
            .db("taking the project's sync lock")?
            .get(0);
        Ok(locked.then_some(ProjectSyncLock {
            _connection: connection,
        }))
    }
}
