//! Every tunable of the client, in one place, with the reasoning behind each default.

use std::time::Duration;

use super::settings::Settings;

/// Client configuration. `ClientConfig::default()` is what wandbfs uses unless told otherwise;
/// [`ClientConfig::apply_settings`] folds in the SDK's environment overrides
/// (`WANDB_HTTP_TIMEOUT`, `WANDB__GRAPHQL_RETRY_*`).
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Retry policy for every request (GraphQL, downloads, uploads).
    pub retry: RetryConfig,
    /// The global request budget towards the W&B API host.
    pub rate: RateLimitConfig,
    /// Whole-request timeout of one GraphQL attempt. Default **30 s**: wandb-core's
    /// `x_graphql_timeout_seconds` default; `WANDB_HTTP_TIMEOUT` overrides it as in the SDK.
    pub graphql_timeout: Duration,
    /// TCP connect timeout. Default **10 s**: a loopback or LAN server connects in
    /// milliseconds, a remote one in well under a second; longer means the host is unreachable
    /// and the retry loop should take over.
    pub connect_timeout: Duration,
    /// Maximum silence while reading a response (per read, not per body), so a stalled
    /// download fails instead of hanging a FUSE read forever. Default **60 s**; a whole 1 GiB
    /// body may legitimately take much longer than any total timeout would allow.
    pub read_timeout: Duration,
    /// Idle keep-alive connections are dropped after this long. Default **90 s** (reqwest's),
    /// below typical load-balancer idle timeouts so we rarely reuse a dead socket.
    pub pool_idle_timeout: Duration,
    /// Offer HTTP/2 via ALPN on TLS connections. Default **true**; plain-http servers (the
    /// emulator) are spoken to with HTTP/1.1 either way.
    pub http2: bool,
    /// `User-Agent`. Default `W&B Public Client 0.31.0`: the SDK's public API sends exactly
    /// this, and the W&B backend gates some viewer fields (`apiKeys`) on recognising it.
    pub user_agent: String,
    /// Send `Use-Admin-Privileges: true` like `wandb.Api()` does. Default **true**, so an
    /// admin sees what the SDK would show them.
    pub use_admin_privileges: bool,
    /// Safety cap on pages fetched by one paginated listing; a server that keeps answering
    /// `hasNextPage: true` cannot make a listing loop forever. Default **100,000** pages
    /// (5 million runs at 50 per page), far beyond any real project.
    pub max_pages: u64,
    /// Page size of run listings. Default **50** (the SDK's `per_page`).
    pub runs_page_size: u32,
    /// Page size of run-file listings. Default **1,000**: the SDK's 50 costs 20× the calls for
    /// media-heavy runs; W&B documents no maximum and public code uses 10,000.
    pub files_page_size: u32,
    /// Page size of artifact listings (types, collections, versions, run artifacts).
    /// Default **100** (the SDK's `run.logged_artifacts()` page size).
    pub artifacts_page_size: u32,
    /// Page size of artifact file listings. Default **1,000** (the SDK uses 50 for
    /// `artifact.files()` and 5,000 for download URL batches).
    pub artifact_files_page_size: u32,
    /// Maximum redirects followed for GET/HEAD. Default **10** (Go's default, which wandb-core
    /// uses).
    pub max_redirects: usize,
    /// Skip TLS certificate verification (`WANDB_INSECURE_DISABLE_SSL`). Default **false**.
    pub insecure_disable_ssl: bool,
    /// Extra headers sent with every request (`WANDB__EXTRA_HTTP_HEADERS`).
    pub extra_headers: Vec<(String, String)>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            retry: RetryConfig::default(),
            rate: RateLimitConfig::default(),
            graphql_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(60),
            pool_idle_timeout: Duration::from_secs(90),
            http2: true,
            user_agent: "W&B Public Client 0.31.0".to_owned(),
            use_admin_privileges: true,
            max_pages: 100_000,
            runs_page_size: 50,
            files_page_size: 1_000,
            artifacts_page_size: 100,
            artifact_files_page_size: 1_000,
            max_redirects: 10,
            insecure_disable_ssl: false,
            extra_headers: Vec::new(),
        }
    }
}

impl ClientConfig {
    /// Applies the SDK environment overrides carried by resolved [`Settings`].
    pub fn apply_settings(mut self, settings: &Settings) -> Self {
        if let Some(timeout) = settings.graphql_timeout {
            self.graphql_timeout = timeout;
        }
        if let Some(max) = settings.graphql_retry_max {
            // The SDK counts retries; we count attempts.
            self.retry.max_attempts = max.saturating_add(1);
        }
        if let Some(min) = settings.graphql_retry_wait_min {
            self.retry.initial_backoff = min;
        }
        if let Some(max) = settings.graphql_retry_wait_max {
            self.retry.max_backoff = max;
        }
        self.insecure_disable_ssl |= settings.insecure_disable_ssl;
        self.extra_headers
            .extend(settings.extra_headers.iter().cloned());
        self
    }
}

/// Retry policy. What is retried follows wandb-core's `RetryMostFailures`: 429, 408 and every
/// other 4xx/5xx except 400, 401, 402, 403, 404, 409, 410, 413, 416, 422 and 501, plus connection
/// errors, timeouts and broken bodies. How long we keep trying is bounded more tightly than the
/// SDK (20 retries, up to 60 s each) because a filesystem read must fail in human time.
#[derive(Clone, Debug)]
pub struct RetryConfig {
    /// Attempts per request, the first included. Default **8** (7 retries): with the backoff
    /// below that spans ≈ 2+4+8+16+30+30+30 s ≈ 2 minutes, enough to ride out a deploy or a
    /// 429 storm, short enough that a poisoned object fails while someone is still watching.
    pub max_attempts: u32,
    /// First backoff. Default **2 s** (wandb-core's `x_graphql_retry_wait_min_seconds`).
    /// Attempt *n* (0-based) waits `initial × 2ⁿ × U[1, 1.25]`, capped by `max_backoff`.
    pub initial_backoff: Duration,
    /// Longest computed backoff. Default **30 s** (the SDK uses 60 s; we prefer more, shorter
    /// tries within the same total budget).
    pub max_backoff: Duration,
    /// Upper bound applied to a server's `Retry-After` (seconds, float seconds or HTTP date).
    /// Default **60 s**: honour the server, but never sleep so long that a caller appears hung.
    pub max_retry_after: Duration,
    /// Total time budget of one request including all waits. When the next wait would cross
    /// it, the request fails now with [`Error::RetriesExhausted`](super::Error) or
    /// [`Error::RateLimited`](super::Error). Default **180 s**.
    pub total_timeout: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            max_attempts: 8,
            initial_backoff: Duration::from_secs(2),
            max_backoff: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(60),
            total_timeout: Duration::from_secs(180),
        }
    }
}

/// The global rate budget for requests to the W&B API host (GraphQL and authenticated file
/// downloads). Shared by every clone of a [`Client`](super::Client), so a mount and a sync in
/// one process draw from one bucket. Requests to other hosts (signed storage URLs) are not
/// counted: W&B does not rate-limit the storage provider's traffic.
#[derive(Clone, Debug)]
pub struct RateLimitConfig {
    /// Sustained requests per second. Default **5/s**: W&B does not publish its limits
    /// (they are per user and per project "by database query time"); the last published
    /// numbers were 50–200 requests/minute, and W&B's limits page advises ~1 request/s for bulk
    /// reads. Five per second with a burst keeps interactive use snappy; bulk sync callers
    /// should lower it. `0` or negative disables the limiter.
    pub requests_per_second: f64,
    /// Requests allowed back to back before the sustained rate applies. Default **10**.
    pub burst: u32,
    /// Honour `RateLimit-Remaining: 0` + `RateLimit-Reset: <seconds>` response headers by
    /// pausing all requests to the API host until the reset (capped by
    /// [`RetryConfig::max_retry_after`]), and pause everyone after a 429 with `Retry-After`.
    /// Default **true**.
    pub honour_server_headers: bool,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            requests_per_second: 5.0,
            burst: 10,
            honour_server_headers: true,
        }
    }
}
