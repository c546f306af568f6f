//! The one error type at the filesystem boundary: every failure carries the errno the kernel
//! gets, a message for the log, and the level to log it at.
//!
//! Errno choices (also in `docs/SEMANTICS.md`, which a test keeps honest):
//!
//! | Failure | errno |
//! |---|---|
//! | no such entity, project, run, file, artifact; a name that is not valid UTF-8 | `ENOENT` |
//! | a file operation on a directory / a directory operation on a file | `EISDIR` / `ENOTDIR` |
//! | a write on a read-only mount | `EROFS` (the kernel answers for `ro` mounts) |
//! | a write to something W&B cannot change (synthetic files, artifacts, levels above a run) | `EACCES` |
//! | W&B refused the credentials or the object (401/403) | `EACCES` |
//! | the object changed upstream while it was open | `ESTALE` |
//! | the database or W&B failed, or did not answer in time | `EIO` |
//! | an unknown extended attribute | `ENODATA` |
//! | a reference artifact entry (bytes outside W&B) | `EOPNOTSUPP` |

use wandbfs::store::StoreError;

/// A failed filesystem operation.
#[derive(Debug, Clone)]
pub struct FsError {
    /// What the kernel is told.
    pub errno: i32,
    /// What the log is told.
    pub message: String,
    /// How loud: an expected miss (`ENOENT`) is debug, a backend failure a warning.
    pub level: tracing::Level,
}

/// Result of a filesystem operation.
pub type FsResult<T> = Result<T, FsError>;

impl FsError {
    /// An error with an explicit errno and level.
    pub fn new(errno: i32, level: tracing::Level, message: impl Into<String>) -> Self {
        FsError {
            errno,
            message: message.into(),
            level,
        }
    }

    /// `ENOENT`: an expected miss, logged at debug.
    pub fn not_found(what: impl std::fmt::Display) -> Self {
        Self::new(
            libc::ENOENT,
            tracing::Level::DEBUG,
            format!("{what}: not found"),
        )
    }

    /// `EIO`: a backend failure, logged as a warning.
    pub fn io(message: impl Into<String>) -> Self {
        Self::new(libc::EIO, tracing::Level::WARN, message)
    }

    /// `EACCES`: refused on purpose (logged at info: the user asked for it).
    pub fn access(message: impl Into<String>) -> Self {
        Self::new(libc::EACCES, tracing::Level::INFO, message)
    }

    /// `EROFS`: a write on a read-only mount.
    pub fn read_only(what: impl std::fmt::Display) -> Self {
        Self::new(
            libc::EROFS,
            tracing::Level::DEBUG,
            format!("{what}: read-only mount (mount with --allow-write to change run files)"),
        )
    }

    /// `ENOTDIR`.
    pub fn not_dir(what: impl std::fmt::Display) -> Self {
        Self::new(
            libc::ENOTDIR,
            tracing::Level::DEBUG,
            format!("{what}: not a directory"),
        )
    }

    /// `EISDIR`.
    pub fn is_dir(what: impl std::fmt::Display) -> Self {
        Self::new(
            libc::EISDIR,
            tracing::Level::DEBUG,
            format!("{what}: is a directory"),
        )
    }

    /// `ESTALE`: the object changed upstream under an open handle.
    pub fn stale(message: impl Into<String>) -> Self {
        Self::new(libc::ESTALE, tracing::Level::INFO, message)
    }

    /// `EBADF`: an unknown handle.
    pub fn bad_handle(fh: u64) -> Self {
        Self::new(
            libc::EBADF,
            tracing::Level::WARN,
            format!("unknown file handle {fh}"),
        )
    }

    /// A store (W&B API or mirror) failure, mapped on purpose.
    pub fn from_store(error: &StoreError) -> Self {
        use tracing::Level;
        let message = error.to_string();
        match error {
            StoreError::NotFound { .. } => Self::new(libc::ENOENT, Level::DEBUG, message),
            StoreError::Unauthenticated { .. } | StoreError::Forbidden { .. } => {
                Self::new(libc::EACCES, Level::WARN, message)
            }
            StoreError::ReadOnly { .. } => Self::new(libc::EACCES, Level::INFO, message),
            StoreError::NotSupported { .. } => Self::new(libc::EOPNOTSUPP, Level::INFO, message),
            StoreError::TooLarge { .. } => Self::new(libc::EFBIG, Level::WARN, message),
            _ => Self::new(libc::EIO, Level::WARN, message),
        }
    }

    /// Logs the error at its level.
    pub fn log(&self, operation: &str) {
        let errno = self.errno;
        let message = &self.message;
        match self.level {
            tracing::Level::ERROR => tracing::error!(operation, errno, "{message}"),
            tracing::Level::WARN => tracing::warn!(operation, errno, "{message}"),
            tracing::Level::INFO => tracing::info!(operation, errno, "{message}"),
            tracing::Level::DEBUG => tracing::debug!(operation, errno, "{message}"),
            tracing::Level::TRACE => tracing::trace!(operation, errno, "{message}"),
        }
    }
}

impl std::fmt::Display for FsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (errno {})", self.message, self.errno)
    }
}

impl From<StoreError> for FsError {
    fn from(error: StoreError) -> Self {
        FsError::from_store(&error)
    }
}
