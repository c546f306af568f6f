//! Errors of the sync engine.
//!
//! A [`SyncError`] returned by [`SyncEngine::sync`](super::SyncEngine::sync) is *fatal* (the
//! mirror is unreachable, a target is malformed). Failures of one run or one project are not
//! errors of the sync: they are recorded in the mirror and in the
//! [`SyncReport`](super::SyncReport), and the rest of the work continues.

use crate::client;
use crate::mirror::MirrorError;

/// Result alias for the sync engine.
pub type Result<T, E = SyncError> = std::result::Result<T, E>;

/// Everything that can stop a sync, or fail one run or project of it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SyncError {
    /// The W&B API failed (after the client's retries).
    #[error(transparent)]
    Client(#[from] client::Error),

    /// The mirror database failed.
    #[error(transparent)]
    Mirror(#[from] MirrorError),

    /// A sync target is not `entity/project` or `entity/project/run_id`.
    #[error("invalid sync target {target:?}: {reason}")]
    InvalidTarget {
        /// The target as given.
        target: String,
        /// What is wrong with it.
        reason: String,
    },

    /// Another sync (in this or another process, on this or another machine) is writing the
    /// same project into this mirror; this one leaves the project alone.
    #[error(
        "another `wandbfs sync` is syncing {project} into this mirror right now; left alone \
         (try again when that one finishes)"
    )]
    Busy {
        /// `entity/project`.
        project: String,
    },

    /// The server answered something the engine cannot store faithfully (a history row
    /// without `_step`, a row outside the requested step window, a downsampled page).
    #[error("{what}: {reason}")]
    Protocol {
        /// What was being fetched, e.g. `history of alice/proj/abc123`.
        what: String,
        /// What was wrong.
        reason: String,
    },
}

impl SyncError {
    pub(crate) fn protocol(what: impl Into<String>, reason: impl Into<String>) -> Self {
        SyncError::Protocol {
            what: what.into(),
            reason: reason.into(),
        }
    }

    /// True when the error stops the whole sync instead of failing one run or project: the
    /// mirror is unusable ([`Self::is_mirror_unavailable`]) or W&B refused the credentials
    /// (every other request would be refused too).
    pub fn is_fatal(&self) -> bool {
        self.is_mirror_unavailable()
            || matches!(
                self,
                SyncError::Client(client::Error::Unauthenticated { .. })
            )
    }

    /// True when the error means the mirror itself is unusable (every further write would fail
    /// too), so the whole sync should stop rather than record per-run failures.
    pub fn is_mirror_unavailable(&self) -> bool {
        match self {
            SyncError::Mirror(MirrorError::Pool(_)) => true,
            SyncError::Mirror(MirrorError::Db { source, .. }) => source.is_closed(),
            _ => false,
        }
    }
}
