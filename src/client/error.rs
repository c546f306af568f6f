//! The client's error type.
//!
//! Every variant names the operation that failed (a GraphQL operation name such as `Runs`, or a
//! transfer such as `download run file`) so that a log line is actionable on its own. No variant
//! ever carries a credential: messages are built from server replies, statuses and URLs with
//! their query strings removed (signed URLs carry their signature in the query string).

use std::time::Duration;

/// Result alias for client operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong talking to W&B.
///
/// Callers match on the variant to decide what to do: `NotFound` → a missing object,
/// `UrlExpired` → fetch a fresh signed URL and try once more, `Unauthenticated` → fix the key,
/// `RateLimited`/`RetriesExhausted` → the server kept failing for the whole retry budget.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No API key or identity token was found for the base URL.
    #[error(
        "no W&B credentials for {base_url}: set WANDB_API_KEY (or WANDB_IDENTITY_TOKEN_FILE), \
         add a netrc entry `machine {netrc_machine} login user password <key>` to {netrc_path}, \
         or run `wandb login --host {base_url}`"
    )]
    MissingCredentials {
        /// The resolved base URL the key was looked up for.
        base_url: String,
        /// The netrc machine name that was looked up (netloc incl. port).
        netrc_machine: String,
        /// The netrc file that was consulted (or would be created by `wandb login`).
        netrc_path: String,
    },

    /// Settings, credentials or arguments are invalid (bad URL, malformed key, both
    /// `WANDB_API_KEY` and `WANDB_IDENTITY_TOKEN_FILE` set, unreadable token file, …).
    #[error("configuration error: {message}")]
    Config {
        /// What is wrong and how to fix it.
        message: String,
    },

    /// The server rejected the credentials (HTTP 401, or a null viewer).
    #[error("{operation}: not authenticated by W&B (check the API key): {message}")]
    Unauthenticated {
        /// The operation that failed.
        operation: String,
        /// The server's message.
        message: String,
    },

    /// The credentials are valid but lack access (HTTP 403).
    #[error("{operation}: permission denied: {message}")]
    PermissionDenied {
        /// The operation that failed.
        operation: String,
        /// The server's message.
        message: String,
    },

    /// The object does not exist (HTTP 404, or a null entity/project/run/artifact in a GraphQL
    /// reply — W&B answers missing objects with `null`, not with an error).
    #[error("{operation}: not found: {what}")]
    NotFound {
        /// The operation that failed.
        operation: String,
        /// What was looked up, e.g. `run alice/proj/abc123`.
        what: String,
    },

    /// A signed (`directUrl`) URL was refused with 401/403 (or an expiry message): fetch a fresh
    /// URL through GraphQL and try again once.
    #[error("{operation}: signed URL expired or was refused (HTTP {status}) for {url}")]
    UrlExpired {
        /// The operation that failed.
        operation: String,
        /// The HTTP status (401, 403, or 400 with an expiry message).
        status: u16,
        /// The URL without its query string.
        url: String,
    },

    /// The requested byte range lies outside the object (HTTP 416).
    #[error("{operation}: requested range not satisfiable (object size {size:?})")]
    RangeNotSatisfiable {
        /// The operation that failed.
        operation: String,
        /// The object's size, when the server said (`Content-Range: bytes */N`).
        size: Option<u64>,
    },

    /// Every attempt was answered 429 until the attempt or time budget ran out.
    #[error("{operation}: rate limited by W&B on all {attempts} attempts ({elapsed:.1?})")]
    RateLimited {
        /// The operation that failed.
        operation: String,
        /// Attempts made.
        attempts: u32,
        /// Time spent including waits.
        elapsed: Duration,
    },

    /// A retryable failure (5xx, connection error, timeout) persisted through the whole retry
    /// budget — e.g. a "poisoned" run whose history always answers 502.
    #[error("{operation}: gave up after {attempts} attempts ({elapsed:.1?}); last error: {last}")]
    RetriesExhausted {
        /// The operation that failed.
        operation: String,
        /// Attempts made.
        attempts: u32,
        /// Time spent including waits.
        elapsed: Duration,
        /// The last failure, e.g. `HTTP 502: bad gateway` or `connection reset`.
        last: String,
        /// The last HTTP status, if the last failure was a response.
        last_status: Option<u16>,
    },

    /// A non-retryable HTTP status not covered by a more specific variant (400, 409, 413, 501…).
    #[error("{operation}: HTTP {status}: {message}")]
    Http {
        /// The operation that failed.
        operation: String,
        /// The HTTP status.
        status: u16,
        /// The server's message (GraphQL `errors[].message`, or the body text).
        message: String,
    },

    /// HTTP 200 with a non-empty GraphQL `errors` array (the whole reply is discarded, as the
    /// SDK does).
    #[error("{operation}: GraphQL error: {}", messages.join("; "))]
    GraphQl {
        /// The operation that failed.
        operation: String,
        /// The `errors[].message` values.
        messages: Vec<String>,
    },

    /// The reply could not be decoded into the expected shape.
    #[error("{operation}: could not decode the reply: {message}")]
    Decode {
        /// The operation that failed.
        operation: String,
        /// What did not match.
        message: String,
    },

    /// A transport failure that is not retried (TLS, redirect loop, request building), or the
    /// body stream of a download broke.
    #[error("{operation}: transport error: {message}")]
    Transport {
        /// The operation that failed.
        operation: String,
        /// The error, without URLs' query strings.
        message: String,
    },

    /// A paginated listing could not make progress (no new cursor while the server says there
    /// are more pages, or the page-count safety cap was hit).
    #[error("{operation}: pagination stopped: {message}")]
    Pagination {
        /// The operation that failed.
        operation: String,
        /// Why.
        message: String,
    },
}

impl Error {
    /// The HTTP status behind this error, when there was one.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Unauthenticated { .. } => Some(401),
            Error::PermissionDenied { .. } => Some(403),
            Error::UrlExpired { status, .. } | Error::Http { status, .. } => Some(*status),
            Error::RangeNotSatisfiable { .. } => Some(416),
            Error::RateLimited { .. } => Some(429),
            Error::RetriesExhausted { last_status, .. } => *last_status,
            _ => None,
        }
    }

    /// How many attempts were made, for errors produced by the retry loop.
    pub fn attempts(&self) -> Option<u32> {
        match self {
            Error::RateLimited { attempts, .. } | Error::RetriesExhausted { attempts, .. } => {
                Some(*attempts)
            }
            _ => None,
        }
    }

    /// True for [`Error::NotFound`].
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NotFound { .. })
    }

    pub(crate) fn config(message: impl Into<String>) -> Self {
        Error::Config {
            message: message.into(),
        }
    }

    pub(crate) fn decode(operation: &str, message: impl std::fmt::Display) -> Self {
        Error::Decode {
            operation: operation.to_owned(),
            message: message.to_string(),
        }
    }

    pub(crate) fn not_found(operation: &str, what: impl Into<String>) -> Self {
        Error::NotFound {
            operation: operation.to_owned(),
            what: what.into(),
        }
    }
}

/// Renders a URL for messages and logs: scheme, host, port and path only. Query strings are
/// dropped because signed URLs carry their signature (a bearer secret) there.
pub(crate) fn redact_url(url: &url::Url) -> String {
    let mut shown = url.clone();
    shown.set_query(None);
    shown.set_fragment(None);
    // User info never belongs in a message either.
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.to_string()
}

/// Renders a transport error without the URL reqwest embeds (it may be a signed URL).
pub(crate) fn describe_reqwest_error(err: reqwest::Error) -> String {
    use std::error::Error as _;
    let err = err.without_url();
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(inner) = source {
        message.push_str(": ");
        message.push_str(&inner.to_string());
        source = inner.source();
    }
    message
}
