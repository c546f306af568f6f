//! Errors of the mirror layer.
//!
//! Messages never contain a database password: URLs are shown through
//! [`DatabaseUrl`](super::DatabaseUrl)'s redacting `Display`, and `tokio_postgres` errors do not
//! carry connection parameters.

use std::path::PathBuf;

/// Everything that can go wrong in the mirror: connecting, the embedded cluster, the schema,
/// ingest and reads.
#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    /// The `--database-url` / `WANDBFS_DATABASE_URL` value is not a Postgres URL we understand.
    #[error("invalid database URL: {reason}")]
    InvalidUrl {
        /// What is wrong with it (never the URL's password).
        reason: String,
    },

    /// No PostgreSQL server binaries (`initdb`, `pg_ctl`, `postgres`) were found.
    #[error(
        "no PostgreSQL server binaries found (looked in: {searched}). Install them \
         (Debian/Ubuntu: `apt-get install postgresql`), point `--pg-bin`/`WANDBFS_PG_BIN` at the \
         directory holding `initdb` and `pg_ctl`, or use an existing server with \
         `--database-url postgresql://…` / `WANDBFS_DATABASE_URL`"
    )]
    MissingServerBinaries {
        /// The places that were searched, comma separated.
        searched: String,
    },

    /// The embedded cluster cannot be used as configured (permissions, paths, accounts).
    #[error("embedded PostgreSQL cluster at {dir}: {reason}")]
    Cluster {
        /// The cluster directory.
        dir: PathBuf,
        /// What went wrong, and what to do about it.
        reason: String,
    },

    /// A server program (`initdb`, `pg_ctl`) failed; the tail of its output is included.
    #[error("`{program}` failed ({status}): {output}")]
    ServerCommand {
        /// The program that failed.
        program: String,
        /// Its exit status.
        status: String,
        /// The last lines of what it printed (and of the server log where relevant).
        output: String,
    },

    /// A file-system operation on the cluster directory failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What we were doing.
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// The database holds a schema newer than this binary understands.
    #[error(
        "the mirror database has schema version {found}, but this wandbfs only knows versions up \
         to {supported}; upgrade wandbfs (or point it at another database) instead of letting an \
         older binary write into a newer schema"
    )]
    SchemaTooNew {
        /// Highest version recorded in the database.
        found: i32,
        /// Highest version this binary ships.
        supported: i32,
    },

    /// The database lacks migrations and this connection was asked not to apply them.
    #[error(
        "the mirror database has schema version {found}, this wandbfs needs {required}; run a \
         writer (e.g. `wandbfs sync`) once to migrate it"
    )]
    SchemaTooOld {
        /// Highest version recorded in the database (0 = none).
        found: i32,
        /// Version this binary needs.
        required: i32,
    },

    /// The upgrade of v1 history storage to blocks has not finished, and this connection was
    /// asked not to run it.
    #[error(
        "the mirror's history is still being upgraded to the v2 storage format; run a writer \
         (e.g. `wandbfs sync`) once to finish it"
    )]
    UpgradeUnfinished,

    /// An applied migration differs from the one this binary ships under the same version.
    #[error(
        "migration {version} ({name}) in the database differs from the one in this binary \
         (checksum {found} vs {expected}); the schema was created by a different build"
    )]
    MigrationMismatch {
        /// The migration's version.
        version: i32,
        /// The migration's name.
        name: String,
        /// Checksum recorded in the database.
        found: String,
        /// Checksum of the shipped migration.
        expected: String,
    },

    /// A value handed to the mirror is not valid W&B JSON.
    #[error("invalid JSON in {what}: {source}")]
    InvalidJson {
        /// Which value (e.g. "history step 12 of run ent/proj/abc").
        what: String,
        /// The parser's complaint.
        #[source]
        source: crate::values::InvalidJson,
    },

    /// A referenced run, project or artifact is not in the mirror.
    #[error("{what} is not in the mirror")]
    NotFound {
        /// What was looked up.
        what: String,
    },

    /// The mirror's own bookkeeping is inconsistent (a bug or a manual edit).
    #[error("mirror state is inconsistent: {0}")]
    Inconsistent(String),

    /// Postgres reported an error.
    #[error("database error while {context}: {}", describe_pg_error(.source))]
    Db {
        /// What we were doing.
        context: &'static str,
        /// The driver's error (its `Display` includes the server's message).
        #[source]
        source: tokio_postgres::Error,
    },

    /// No connection could be taken from the pool.
    #[error("cannot get a database connection: {0}")]
    Pool(String),

    /// The server did not answer a statement within the statement timeout (paused, overloaded
    /// or unreachable).
    #[error("the database did not answer within {}s while {context}", .after.as_secs_f64())]
    Timeout {
        /// What we were doing.
        context: &'static str,
        /// The timeout that passed.
        after: std::time::Duration,
    },
}

/// A `tokio_postgres` error with its cause: the driver's own `Display` says only "db error"
/// and keeps the server's message in `source()`. Server messages never contain the password.
pub fn describe_pg_error(error: &tokio_postgres::Error) -> String {
    if let Some(db) = error.as_db_error() {
        let mut text = format!("{} {}: {}", db.severity(), db.code().code(), db.message());
        if let Some(detail) = db.detail() {
            text.push_str(&format!(" (detail: {detail})"));
        }
        if let Some(hint) = db.hint() {
            text.push_str(&format!(" (hint: {hint})"));
        }
        if let Some(context) = db.where_() {
            text.push_str(&format!(" (where: {context})"));
        }
        return text;
    }
    let mut text = error.to_string();
    let mut cause = std::error::Error::source(error);
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// Result alias of the mirror layer.
pub type Result<T, E = MirrorError> = std::result::Result<T, E>;

/// Attaches a context to `tokio_postgres` errors.
pub(crate) trait DbContext<T> {
    /// Wraps the error as [`MirrorError::Db`] with `context`.
    fn db(self, context: &'static str) -> Result<T>;
}

impl<T> DbContext<T> for std::result::Result<T, tokio_postgres::Error> {
    fn db(self, context: &'static str) -> Result<T> {
        self.map_err(|source| MirrorError::Db { context, source })
    }
}

impl<T> DbContext<T> for std::result::Result<T, super::conn::QueryError> {
    fn db(self, context: &'static str) -> Result<T> {
        self.map_err(|e| match e {
            super::conn::QueryError::Pg(source) => MirrorError::Db { context, source },
            super::conn::QueryError::Timeout(after) => MirrorError::Timeout { context, after },
        })
    }
}

impl From<deadpool_postgres::PoolError> for MirrorError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        match e {
            deadpool_postgres::PoolError::Backend(source) => MirrorError::Db {
                context: "connecting",
                source,
            },
            other => MirrorError::Pool(other.to_string()),
        }
    }
}

/// Builds an [`MirrorError::Io`].
pub(crate) fn io_err(
    action: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(std::io::Error) -> MirrorError {
    let path = path.into();
    move |source| MirrorError::Io {
        action,
        path,
        source,
    }
}
