//! Errors of the parquet history reader.

use crate::client;

/// Everything that can go wrong reading a run's exported history.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ParquetHistoryError {
    /// The W&B API or a signed-URL download failed (after the client's retries).
    #[error(transparent)]
    Client(#[from] client::Error),

    /// A local temporary file could not be written or read.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The I/O error.
        source: std::io::Error,
    },

    /// A file is not a parquet history export we can read (not parquet, no `_step` column,
    /// an unsupported compression, …).
    #[error("exported history file {file}: {reason}")]
    InvalidFile {
        /// The file's URL without its signature.
        file: String,
        /// What is wrong.
        reason: String,
    },

    /// The files contradict the ordering every reader relies on: steps decrease inside a file,
    /// or two files' step ranges interleave. Detected before any row is returned, so the caller
    /// can fall back to paging the live API.
    #[error("exported history is not ordered by _step: {0}")]
    Unordered(String),

    /// A signed URL expired, and the fresh listing no longer has that file (the run was
    /// re-exported meanwhile).
    #[error("exported history changed while reading: {url} is no longer listed")]
    ExportsChanged {
        /// The file's URL without its signature.
        url: String,
    },

    /// No run has a `_step` column (message from the renderer).
    #[error("no `_step` column")]
    NoStepColumn,

    /// The `_step` column has a type that cannot hold steps.
    #[error("unsupported `_step` column type {0}")]
    BadStepColumn(String),

    /// The decoding thread stopped unexpectedly.
    #[error("parquet decoder: {0}")]
    Decoder(String),
}

impl ParquetHistoryError {
    /// True when the exports themselves are unusable (as opposed to a transient failure):
    /// paging the live API instead is the right reaction.
    pub fn is_unreadable_export(&self) -> bool {
        matches!(
            self,
            ParquetHistoryError::InvalidFile { .. }
                | ParquetHistoryError::Unordered(_)
                | ParquetHistoryError::NoStepColumn
                | ParquetHistoryError::BadStepColumn(_)
        )
    }
}
