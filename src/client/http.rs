//! The transport: one shared `reqwest` client, credential scoping, redirects, the global rate
//! budget and the retry loop.
//!
//! **Credential scoping.** reqwest's own redirect following is switched off
//! (`redirect::Policy::none()`); we follow redirects ourselves (GET/HEAD only, at most
//! [`ClientConfig::max_redirects`] hops) and decide *per hop* whether to attach the
//! `Authorization` header: only when the hop's URL has the base URL's scheme, host and port and
//! a path under the base path ([`BaseUrl::in_scope`]), and only for requests that want
//! credentials at all (signed `directUrl`s and upload URLs never get them, even on the base
//! host — wandb-core's upload client has no credential layer either).

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use reqwest::header::{self, HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode};

use super::auth::{AuthProvider, TokenReply};
use super::base_url::BaseUrl;
use super::config::{ClientConfig, RetryConfig};
use super::error::{Error, Result, describe_reqwest_error, redact_url};
use super::graphql::{Envelope, ErrorsOnly};
use super::ratelimit::RateBudget;
use super::retry;

/// Whether a request wants the credential (subject to the per-hop scope check).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AuthMode {
    /// Attach the credential on hops inside the base URL's scope.
    Scoped,
    /// Never attach it (signed URLs, uploads, manifests).
    Never,
}

/// A request body that can be sent again (retries).
#[derive(Clone, Debug)]
pub(crate) enum RequestBody {
    /// Bytes in memory.
    Bytes(Bytes),
    /// A file's first `len` bytes, read as they are sent (an upload of any size in bounded
    /// memory), with the MD5 of what was sent left in `digest` once a send read them all.
    File(super::upload::FileBody),
}

/// One HTTP request, re-sendable for retries.
#[derive(Clone, Debug)]
pub(crate) struct Request {
    pub(crate) operation: String,
    pub(crate) method: Method,
    pub(crate) url: url::Url,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Option<RequestBody>,
    pub(crate) auth: AuthMode,
    pub(crate) timeout: Option<Duration>,
}

/// A retryable failure of one attempt.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) message: String,
    pub(crate) status: Option<u16>,
    pub(crate) retry_after: Option<Duration>,
}

/// What one attempt produced.
pub(crate) enum Outcome<T> {
    Done(T),
    Retry(Failure),
    Fail(Error),
}

/// Counters of what the client sent (cheap diagnostics; the emulator's counters are the
/// authority in integration tests).
#[derive(Debug, Default)]
pub struct Stats {
    http_requests: AtomicU64,
    api_requests: AtomicU64,
    graphql_requests: AtomicU64,
    retries: AtomicU64,
}

/// A snapshot of [`Stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// HTTP requests sent (every hop and attempt).
    pub http_requests: u64,
    /// Of those, requests to the W&B API host (counted against the rate budget).
    pub api_requests: u64,
    /// GraphQL attempts.
    pub graphql_requests: u64,
    /// Attempts that failed retryably and were (or would have been) retried.
    pub retries: u64,
}

/// The shared transport behind every clone of a client.
pub(crate) struct Transport {
    pub(crate) http: reqwest::Client,
    pub(crate) base: BaseUrl,
    pub(crate) auth: AuthProvider,
    pub(crate) config: ClientConfig,
    pub(crate) budget: RateBudget,
    pub(crate) stats: Stats,
    graphql_url: url::Url,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("base", &self.base)
            .field("auth", &self.auth)
            .field("config", &self.config)
            .field("budget", &self.budget)
            .finish()
    }
}

const MAX_ERROR_BODY: usize = 64 * 1024;

impl Transport {
    pub(crate) fn new(base: BaseUrl, auth: AuthProvider, config: ClientConfig) -> Result<Self> {
        let mut builder = reqwest::Client::builder()
            .user_agent(config.user_agent.clone())
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(config.connect_timeout)
            .read_timeout(config.read_timeout)
            .pool_idle_timeout(config.pool_idle_timeout)
            .tcp_keepalive(Duration::from_secs(60))
            .gzip(true)
            .tls_danger_accept_invalid_certs(config.insecure_disable_ssl);
        if !config.http2 {
            builder = builder.http1_only();
        }
        let http = builder
            .build()
            .map_err(|e| Error::config(format!("cannot build HTTP client: {e}")))?;
        let graphql_url = base.join("graphql")?;
        let budget = RateBudget::new(&config.rate, config.retry.max_retry_after);
        Ok(Transport {
            http,
            base,
            auth,
            config,
            budget,
            stats: Stats::default(),
            graphql_url,
        })
    }

    pub(crate) fn stats(&self) -> StatsSnapshot {
        StatsSnapshot {
            http_requests: self.stats.http_requests.load(Ordering::Relaxed),
            api_requests: self.stats.api_requests.load(Ordering::Relaxed),
            graphql_requests: self.stats.graphql_requests.load(Ordering::Relaxed),
            retries: self.stats.retries.load(Ordering::Relaxed),
        }
    }

    /// Runs `attempt` until it succeeds, fails for good, or the retry budget is spent.
    pub(crate) async fn retrying<T, F, Fut>(
        &self,
        operation: &str,
        policy: &RetryConfig,
        mut attempt: F,
    ) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Outcome<T>>,
    {
        let start = Instant::now();
        let max_attempts = policy.max_attempts.max(1);
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let failure = match attempt().await {
                Outcome::Done(value) => return Ok(value),
                Outcome::Fail(error) => return Err(error),
                Outcome::Retry(failure) => failure,
            };
            self.stats.retries.fetch_add(1, Ordering::Relaxed);
            let give_up = |failure: Failure| {
                let elapsed = start.elapsed();
                if failure.status == Some(429) {
                    Error::RateLimited {
                        operation: operation.to_owned(),
                        attempts,
                        elapsed,
                    }
                } else {
                    Error::RetriesExhausted {
                        operation: operation.to_owned(),
                        attempts,
                        elapsed,
                        last: failure.message,
                        last_status: failure.status,
                    }
                }
            };
            if attempts >= max_attempts {
                return Err(give_up(failure));
            }
            let wait = retry::backoff(policy, attempts - 1, failure.retry_after);
            if start.elapsed() + wait > policy.total_timeout {
                return Err(give_up(failure));
            }
            tracing::debug!(
                operation,
                attempt = attempts,
                wait_ms = wait.as_millis() as u64,
                "retrying after: {}",
                failure.message
            );
            tokio::time::sleep(wait).await;
        }
    }

    /// Sends `request` with retries; returns the successful (2xx) response, body unread.
    pub(crate) async fn send(&self, request: &Request) -> Result<reqwest::Response> {
        self.retrying(&request.operation, &self.config.retry, || {
            self.send_once(request)
        })
        .await
    }

    async fn auth_header(&self) -> Result<HeaderValue> {
        match &self.auth {
            AuthProvider::Basic(value) => Ok(value.clone()),
            AuthProvider::Token(exchange) => {
                exchange
                    .header(|url, body| self.exchange_token(url, body))
                    .await
            }
        }
    }

    /// `POST {base}/oidc/token` with wandb-core's exchange policy: 3 attempts, 1–5 s apart,
    /// 10 s each; a 4xx other than 429 is final.
    fn exchange_token(
        &self,
        url: url::Url,
        body: String,
    ) -> futures::future::BoxFuture<'_, Result<TokenReply>> {
        // Boxed: `send_once` → `auth_header` → here → `send_once` is recursive (the exchange
        // itself never carries credentials, so it does not recurse further at run time).
        Box::pin(self.exchange_token_inner(url, body))
    }

    async fn exchange_token_inner(&self, url: url::Url, body: String) -> Result<TokenReply> {
        let policy = RetryConfig {
            max_attempts: 4,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(5),
            max_retry_after: Duration::from_secs(5),
            total_timeout: Duration::from_secs(60),
        };
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        let request = Request {
            operation: "identity token exchange".into(),
            method: Method::POST,
            url,
            headers,
            body: Some(RequestBody::Bytes(Bytes::from(body))),
            auth: AuthMode::Never,
            timeout: Some(Duration::from_secs(10)),
        };
        self.retrying(&request.operation, &policy, || async {
            let response = match self.send_once(&request).await {
                Outcome::Done(r) => r,
                Outcome::Retry(f) => return Outcome::Retry(f),
                Outcome::Fail(e) => return Outcome::Fail(e),
            };
            match response.bytes().await {
                Ok(bytes) => match serde_json::from_slice::<TokenReply>(&bytes) {
                    Ok(reply) => Outcome::Done(reply),
                    Err(e) => Outcome::Fail(Error::decode(&request.operation, e)),
                },
                Err(e) => Outcome::Retry(transport_failure(e)),
            }
        })
        .await
    }

    /// One attempt: follows redirects (GET/HEAD), attaches credentials per hop, draws from the
    /// rate budget for API-host hops, and classifies the final status.
    pub(crate) async fn send_once(&self, request: &Request) -> Outcome<reqwest::Response> {
        let follows_redirects = matches!(request.method, Method::GET | Method::HEAD);
        let mut url = request.url.clone();
        for _hop in 0..=self.config.max_redirects {
            let in_scope = self.base.in_scope(&url);
            let send_credential = in_scope && request.auth == AuthMode::Scoped;
            if in_scope {
                self.budget.acquire().await;
                self.stats.api_requests.fetch_add(1, Ordering::Relaxed);
            }
            self.stats.http_requests.fetch_add(1, Ordering::Relaxed);
            let mut builder = self.http.request(request.method.clone(), url.clone());
            for (name, value) in &self.config.extra_headers {
                if let (Ok(n), Ok(v)) = (
                    HeaderName::from_bytes(name.as_bytes()),
                    HeaderValue::from_str(value),
                ) {
                    builder = builder.header(n, v);
                }
            }
            if in_scope && self.config.use_admin_privileges {
                builder = builder.header("Use-Admin-Privileges", "true");
            }
            builder = builder.headers(request.headers.clone());
            if send_credential {
                match self.auth_header().await {
                    Ok(value) => builder = builder.header(header::AUTHORIZATION, value),
                    Err(e) => return Outcome::Fail(e),
                }
            }
            match &request.body {
                Some(RequestBody::Bytes(body)) => builder = builder.body(body.clone()),
                Some(RequestBody::File(file)) => {
                    builder = builder
                        .header(header::CONTENT_LENGTH, file.len())
                        .body(file.body());
                }
                None => {}
            }
            if let Some(timeout) = request.timeout {
                builder = builder.timeout(timeout);
            }
            let response = match builder.send().await {
                Ok(response) => response,
                Err(e) => return transport_outcome(&request.operation, e),
            };
            let status = response.status();
            if in_scope && let Some(pause) = retry::rate_limit_pause(response.headers()) {
                self.budget.pause_all(pause);
            }
            if status.is_redirection()
                && follows_redirects
                && let Some(next) = redirect_target(&url, response.headers())
            {
                tracing::debug!(
                    operation = request.operation,
                    "following redirect to {}",
                    redact_url(&next)
                );
                url = next;
                continue;
            }
            if status.is_success() {
                return Outcome::Done(response);
            }
            let code = status.as_u16();
            if retry::status_is_retryable(code) {
                let retry_after = retry::retry_after(response.headers(), SystemTime::now());
                if code == 429
                    && in_scope
                    && let Some(wait) = retry_after
                {
                    self.budget.pause_all(wait);
                }
                let message = error_message(response).await;
                return Outcome::Retry(Failure {
                    message: format!("HTTP {code}: {message}"),
                    status: Some(code),
                    retry_after,
                });
            }
            return Outcome::Fail(
                status_error(&request.operation, &url, send_credential, status, response).await,
            );
        }
        Outcome::Fail(Error::Transport {
            operation: request.operation.clone(),
            message: format!(
                "more than {} redirects starting at {}",
                self.config.max_redirects,
                redact_url(&request.url)
            ),
        })
    }

    /// Executes a GraphQL operation and decodes `data` into `T`. HTTP 200 with `errors`
    /// → [`Error::GraphQl`]; a syntactically broken (e.g. truncated) body is retried.
    pub(crate) async fn graphql<T: serde::de::DeserializeOwned>(
        &self,
        operation: &str,
        document: &str,
        variables: serde_json::Value,
    ) -> Result<T> {
        let body = serde_json::json!({
            "query": document,
            "variables": variables,
            "operationName": operation,
        });
        let body = serde_json::to_vec(&body).map_err(|e| Error::decode(operation, e))?;
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        let request = Request {
            operation: operation.to_owned(),
            method: Method::POST,
            url: self.graphql_url.clone(),
            headers,
            body: Some(RequestBody::Bytes(Bytes::from(body))),
            auth: AuthMode::Scoped,
            timeout: Some(self.config.graphql_timeout),
        };
        self.retrying(operation, &self.config.retry, || async {
            self.stats.graphql_requests.fetch_add(1, Ordering::Relaxed);
            let response = match self.send_once(&request).await {
                Outcome::Done(r) => r,
                Outcome::Retry(f) => return Outcome::Retry(f),
                Outcome::Fail(e) => return Outcome::Fail(e),
            };
            let bytes = match response.bytes().await {
                Ok(bytes) => bytes,
                Err(e) => return Outcome::Retry(transport_failure(e)),
            };
            decode_graphql(operation, &bytes)
        })
        .await
    }
}

impl Transport {
    /// Executes a GraphQL operation whose reply may be partial: `data` and `errors` both
    /// returned (errors carry the `path` they belong to). Server errors and timeouts are tried
    /// `server_attempts` times at most, so a caller that can split its request learns soon;
    /// 429s are waited out under the usual policy.
    pub(crate) async fn graphql_partial(
        &self,
        operation: &str,
        document: &str,
        variables: serde_json::Value,
        server_attempts: u32,
    ) -> Result<(Option<serde_json::Value>, Vec<super::graphql::GraphQlError>)> {
        let body = serde_json::json!({
            "query": document,
            "variables": variables,
            "operationName": operation,
        });
        let body = serde_json::to_vec(&body).map_err(|e| Error::decode(operation, e))?;
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        let request = Request {
            operation: operation.to_owned(),
            method: Method::POST,
            url: self.graphql_url.clone(),
            headers,
            body: Some(RequestBody::Bytes(Bytes::from(body))),
            auth: AuthMode::Scoped,
            timeout: Some(self.config.graphql_timeout),
        };
        let server_failures = std::sync::atomic::AtomicU32::new(0);
        let started = Instant::now();
        self.retrying(operation, &self.config.retry, || async {
            self.stats.graphql_requests.fetch_add(1, Ordering::Relaxed);
            let failure = match self.send_once(&request).await {
                Outcome::Done(response) => match response.bytes().await {
                    Ok(bytes) => return decode_partial(operation, &bytes),
                    Err(e) => transport_failure(e),
                },
                Outcome::Retry(f) => f,
                Outcome::Fail(e) => return Outcome::Fail(e),
            };
            if failure.status != Some(429)
                && server_failures.fetch_add(1, Ordering::Relaxed) + 1 >= server_attempts
            {
                return Outcome::Fail(Error::RetriesExhausted {
                    operation: operation.to_owned(),
                    attempts: server_attempts,
                    elapsed: started.elapsed(),
                    last: failure.message,
                    last_status: failure.status,
                });
            }
            Outcome::Retry(failure)
        })
        .await
    }
}

/// Decodes a GraphQL reply that may carry both `data` and `errors`.
fn decode_partial(
    operation: &str,
    bytes: &[u8],
) -> Outcome<(Option<serde_json::Value>, Vec<super::graphql::GraphQlError>)> {
    match serde_json::from_slice::<Envelope<serde_json::Value>>(bytes) {
        Ok(envelope) => Outcome::Done((
            envelope.data.filter(|d| !d.is_null()),
            envelope.errors.unwrap_or_default(),
        )),
        Err(e) if e.is_syntax() || e.is_eof() => Outcome::Retry(Failure {
            message: format!("malformed or truncated JSON reply: {e}"),
            status: None,
            retry_after: None,
        }),
        Err(e) => Outcome::Fail(Error::decode(operation, e)),
    }
}

/// Decodes a GraphQL reply body.
pub(crate) fn decode_graphql<T: serde::de::DeserializeOwned>(
    operation: &str,
    bytes: &[u8],
) -> Outcome<T> {
    match serde_json::from_slice::<Envelope<T>>(bytes) {
        Ok(envelope) => {
            if let Some(errors) = envelope.errors.filter(|e| !e.is_empty()) {
                return Outcome::Fail(Error::GraphQl {
                    operation: operation.to_owned(),
                    messages: errors.into_iter().map(|e| e.message).collect(),
                });
            }
            match envelope.data {
                Some(data) => Outcome::Done(data),
                None => Outcome::Fail(Error::decode(operation, "reply has no `data`")),
            }
        }
        Err(e) => {
            if let Ok(errors) = serde_json::from_slice::<ErrorsOnly>(bytes)
                && let Some(messages) = errors.messages()
            {
                return Outcome::Fail(Error::GraphQl {
                    operation: operation.to_owned(),
                    messages,
                });
            }
            if e.is_syntax() || e.is_eof() {
                // A 200 whose body is not JSON at all is a broken transfer (truncated by a
                // proxy or a reset); the operation is safe to repeat.
                Outcome::Retry(Failure {
                    message: format!("malformed or truncated JSON reply: {e}"),
                    status: None,
                    retry_after: None,
                })
            } else {
                Outcome::Fail(Error::decode(operation, e))
            }
        }
    }
}

fn redirect_target(current: &url::Url, headers: &HeaderMap) -> Option<url::Url> {
    let location = headers.get(header::LOCATION)?.to_str().ok()?;
    current.join(location).ok()
}

pub(crate) fn transport_failure(e: reqwest::Error) -> Failure {
    Failure {
        message: describe_reqwest_error(e),
        status: None,
        retry_after: None,
    }
}

/// Connection errors, timeouts and broken bodies are retried; certificate problems, redirect
/// and builder errors are not (wandb-core's `DefaultRetryPolicy`).
fn transport_outcome<T>(operation: &str, e: reqwest::Error) -> Outcome<T> {
    let permanent = e.is_builder() || e.is_redirect();
    let message = describe_reqwest_error(e);
    let certificate = message.to_ascii_lowercase().contains("certificate");
    if permanent || certificate {
        Outcome::Fail(Error::Transport {
            operation: operation.to_owned(),
            message,
        })
    } else {
        Outcome::Retry(Failure {
            message,
            status: None,
            retry_after: None,
        })
    }
}

/// Reads at most [`MAX_ERROR_BODY`] bytes of an error body and extracts the server's message.
async fn error_message(mut response: reqwest::Response) -> String {
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        body.extend_from_slice(&chunk);
        if body.len() >= MAX_ERROR_BODY {
            break;
        }
    }
    if let Ok(errors) = serde_json::from_slice::<ErrorsOnly>(&body)
        && let Some(messages) = errors.messages()
    {
        return messages.join("; ");
    }
    let text = String::from_utf8_lossy(&body);
    let text = text.trim();
    let mut shown: String = text.chars().take(300).collect();
    if shown.len() < text.len() {
        shown.push('…');
    }
    if shown.is_empty() {
        "(empty body)".to_owned()
    } else {
        shown
    }
}

/// Maps a non-retryable status to the typed error.
async fn status_error(
    operation: &str,
    url: &url::Url,
    credential_sent: bool,
    status: StatusCode,
    response: reqwest::Response,
) -> Error {
    let code = status.as_u16();
    let range_size = response
        .headers()
        .get(header::CONTENT_RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("bytes */"))
        .and_then(|v| v.trim().parse::<u64>().ok());
    let message = error_message(response).await;
    let operation = operation.to_owned();
    let lower = message.to_ascii_lowercase();
    match code {
        401 | 403 if !credential_sent => Error::UrlExpired {
            operation,
            status: code,
            url: redact_url(url),
        },
        400 if !credential_sent
            && (lower.contains("expiredtoken") || lower.contains("expired")) =>
        {
            Error::UrlExpired {
                operation,
                status: code,
                url: redact_url(url),
            }
        }
        401 => Error::Unauthenticated { operation, message },
        403 => Error::PermissionDenied { operation, message },
        404 => Error::NotFound {
            operation,
            what: format!("{} ({message})", redact_url(url)),
        },
        416 => Error::RangeNotSatisfiable {
            operation,
            size: range_size,
        },
        _ => Error::Http {
            operation,
            status: code,
            message,
        },
    }
}
