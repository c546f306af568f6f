//! Errors of `wandbfs export`.

use std::path::{Path, PathBuf};

use crate::mirror::MirrorError;

/// Result alias for exports.
pub type Result<T, E = ExportError> = std::result::Result<T, E>;

/// Everything that can stop an export.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExportError {
    /// The mirror database failed.
    #[error(transparent)]
    Mirror(#[from] MirrorError),

    /// The project is not in the mirror.
    #[error(
        "{entity}/{project} is not in the mirror (run `wandbfs sync {entity}/{project}` first)"
    )]
    NotMirrored {
        /// Entity.
        entity: String,
        /// Project.
        project: String,
    },

    /// The output directory cannot be used.
    #[error("output directory {path}: {reason}")]
    OutputDir {
        /// The directory.
        path: PathBuf,
        /// Why not.
        reason: String,
    },

    /// Writing a file failed.
    #[error("writing {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },

    /// The parquet writer failed.
    #[error("writing parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),

    /// Arrow rejected a batch (a bug in the column mapping).
    #[error("building arrow arrays: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),

    /// Mirrored text is not valid W&B JSON.
    #[error("{what}: {source}")]
    InvalidJson {
        /// Which document or row.
        what: String,
        /// The parse error.
        source: crate::values::InvalidJson,
    },
}

impl ExportError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        ExportError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
