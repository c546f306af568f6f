//! The store's error type and its mapping onto `object_store::Error`.
//!
//! Every variant names the path (or W&B object) it is about. None carries a credential: client
//! errors are already redacted (URLs without query strings, no keys), and paths are the
//! caller's.

use std::sync::Arc;

use crate::client;

/// The `store` name used in `object_store::Error::Generic`.
pub const STORE: &str = "WandbStore";

/// Everything that can go wrong in `WandbStore`. Cheap to clone (client errors are shared), so
/// concurrent callers waiting on one cached load all receive the error.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// No object at this path (missing entity, project, run, file, artifact or version, or a
    /// path that names nothing in `docs/LAYOUT.md`).
    #[error("{path}: not found ({what})")]
    NotFound {
        /// The path.
        path: String,
        /// What was missing.
        what: String,
    },

    /// The W&B API rejected the credentials (HTTP 401).
    #[error("{path}: not authenticated: {source}")]
    Unauthenticated {
        /// The path.
        path: String,
        /// The client error.
        source: Arc<client::Error>,
    },

    /// Access denied by W&B (HTTP 403).
    #[error("{path}: permission denied by W&B: {source}")]
    Forbidden {
        /// The path.
        path: String,
        /// The client error.
        source: Arc<client::Error>,
    },

    /// The store refuses a write: writes are disabled, or the object is read-only (synthetic
    /// files, artifacts, listings).
    #[error("{path}: read-only: {reason}")]
    ReadOnly {
        /// The path.
        path: String,
        /// Why, and how to enable writes where that is possible.
        reason: String,
    },

    /// An operation or option W&B cannot provide (conditional writes, object versions,
    /// reference artifact entries, …).
    #[error("{path}: not supported: {reason}")]
    NotSupported {
        /// The path.
        path: String,
        /// What and why.
        reason: String,
    },

    /// Any other failure of the W&B API (rate limits or 5xx through the whole retry budget,
    /// transport errors, undecodable replies).
    #[error("{path}: {source}")]
    Api {
        /// The path.
        path: String,
        /// The client error.
        source: Arc<client::Error>,
    },

    /// A synthetic file would be larger than the live source renders in memory.
    #[error(
        "{path}: the rendered file would exceed {limit} bytes (the live source renders \
         synthetic files in memory); raise WandbStoreBuilder::max_synthetic_bytes or serve \
         this run from the mirror"
    )]
    TooLarge {
        /// The path.
        path: String,
        /// The configured limit.
        limit: u64,
    },

    /// W&B returned data the store cannot use (invalid JSON in a history row, a download
    /// whose size disagrees with the listing twice in a row, …).
    #[error("{path}: {message}")]
    Invalid {
        /// The path.
        path: String,
        /// What was wrong.
        message: String,
    },

    /// This source does not hold the object; a layered source asks the next one. Never
    /// reaches a caller of `WandbStore` when the last source is the live one.
    #[error("{what}: not held by this source")]
    NotCovered {
        /// What was asked for.
        what: String,
    },

    /// A failure in a non-API source (the mirror), as text.
    #[error("{path}: {source_name} source: {message}")]
    Source {
        /// The path.
        path: String,
        /// Which source.
        source_name: String,
        /// The error.
        message: String,
    },
}

impl StoreError {
    /// Wraps a client error for `path`, keeping 401/403/404 distinct.
    pub fn from_client(path: impl Into<String>, err: client::Error) -> StoreError {
        let path = path.into();
        match err {
            client::Error::NotFound { what, .. } => StoreError::NotFound { path, what },
            client::Error::Unauthenticated { .. } | client::Error::MissingCredentials { .. } => {
                StoreError::Unauthenticated {
                    path,
                    source: Arc::new(err),
                }
            }
            client::Error::PermissionDenied { .. } => StoreError::Forbidden {
                path,
                source: Arc::new(err),
            },
            other => StoreError::Api {
                path,
                source: Arc::new(other),
            },
        }
    }

    /// A missing object.
    pub fn not_found(path: impl Into<String>, what: impl Into<String>) -> StoreError {
        StoreError::NotFound {
            path: path.into(),
            what: what.into(),
        }
    }

    /// True for [`StoreError::NotFound`].
    pub fn is_not_found(&self) -> bool {
        matches!(self, StoreError::NotFound { .. })
    }

    /// Whether this is [`StoreError::NotSupported`] (the source cannot serve this at all).
    pub fn is_not_supported(&self) -> bool {
        matches!(self, StoreError::NotSupported { .. })
    }

    /// True for [`StoreError::NotCovered`].
    pub fn is_not_covered(&self) -> bool {
        matches!(self, StoreError::NotCovered { .. })
    }

    /// The client error behind this one, if any.
    pub fn client_error(&self) -> Option<&client::Error> {
        match self {
            StoreError::Unauthenticated { source, .. }
            | StoreError::Forbidden { source, .. }
            | StoreError::Api { source, .. } => Some(source),
            _ => None,
        }
    }

    /// The same error about another path (the store knows the path; sources often do not).
    pub fn at(self, new_path: &str) -> StoreError {
        let new_path = new_path.to_owned();
        match self {
            StoreError::NotFound { what, .. } => StoreError::NotFound {
                path: new_path,
                what,
            },
            StoreError::Unauthenticated { source, .. } => StoreError::Unauthenticated {
                path: new_path,
                source,
            },
            StoreError::Forbidden { source, .. } => StoreError::Forbidden {
                path: new_path,
                source,
            },
            StoreError::ReadOnly { reason, .. } => StoreError::ReadOnly {
                path: new_path,
                reason,
            },
            StoreError::NotSupported { reason, .. } => StoreError::NotSupported {
                path: new_path,
                reason,
            },
            StoreError::Api { source, .. } => StoreError::Api {
                path: new_path,
                source,
            },
            StoreError::TooLarge { limit, .. } => StoreError::TooLarge {
                path: new_path,
                limit,
            },
            StoreError::Invalid { message, .. } => StoreError::Invalid {
                path: new_path,
                message,
            },
            StoreError::Source {
                source_name,
                message,
                ..
            } => StoreError::Source {
                path: new_path,
                source_name,
                message,
            },
            e @ StoreError::NotCovered { .. } => e,
        }
    }
}

impl From<StoreError> for object_store::Error {
    fn from(err: StoreError) -> Self {
        match &err {
            StoreError::NotFound { path, .. } => object_store::Error::NotFound {
                path: path.clone(),
                source: Box::new(err),
            },
            StoreError::Unauthenticated { path, .. } => object_store::Error::Unauthenticated {
                path: path.clone(),
                source: Box::new(err),
            },
            StoreError::Forbidden { path, .. } | StoreError::ReadOnly { path, .. } => {
                object_store::Error::PermissionDenied {
                    path: path.clone(),
                    source: Box::new(err),
                }
            }
            StoreError::NotSupported { .. } => object_store::Error::NotSupported {
                source: Box::new(err),
            },
            _ => object_store::Error::Generic {
                store: STORE,
                source: Box::new(err),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_onto_object_store_errors() {
        let not_found = StoreError::from_client(
            "e/p/r/x",
            client::Error::NotFound {
                operation: "RunFiles".into(),
                what: "run e/p/r".into(),
            },
        );
        let os: object_store::Error = not_found.into();
        assert!(
            matches!(&os, object_store::Error::NotFound { path, .. } if path == "e/p/r/x"),
            "{os}"
        );

        let unauth = StoreError::from_client(
            "e/p",
            client::Error::Unauthenticated {
                operation: "Runs".into(),
                message: "bad key".into(),
            },
        );
        assert!(matches!(
            object_store::Error::from(unauth),
            object_store::Error::Unauthenticated { .. }
        ));

        let read_only = StoreError::ReadOnly {
            path: "e/p/r/history.jsonl".into(),
            reason: "synthetic".into(),
        };
        let os = object_store::Error::from(read_only);
        assert!(matches!(os, object_store::Error::PermissionDenied { .. }));
        assert!(os.to_string().contains("e/p/r/history.jsonl"), "{os}");

        let exhausted = StoreError::from_client(
            "e/p/r/history.jsonl",
            client::Error::RetriesExhausted {
                operation: "HistoryPage".into(),
                attempts: 5,
                elapsed: std::time::Duration::from_secs(1),
                last: "HTTP 502".into(),
                last_status: Some(502),
            },
        );
        let os = object_store::Error::from(exhausted);
        assert!(matches!(
            os,
            object_store::Error::Generic { store: STORE, .. }
        ));
        let text = os.to_string();
        assert!(
            text.contains("e/p/r/history.jsonl") && text.contains("5 attempts"),
            "{text}"
        );
    }
}
