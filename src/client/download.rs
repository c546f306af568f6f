//! File downloads as byte streams, with HTTP `Range` and metadata probes.
//!
//! Two kinds of location:
//! - [`FileLocation::Authenticated`]: a run file's `url` on the API host; the credential is
//!   attached (and re-checked on every redirect hop), the request draws from the rate budget.
//! - [`FileLocation::Direct`]: a signed `directUrl` (storage host, parquet export, manifest);
//!   never any credential. 401/403 there means the signature expired: [`Error::UrlExpired`],
//!   so the caller fetches a fresh URL and retries once.
//!
//! Bodies are streamed, never buffered whole. `Accept-Encoding: identity` is sent so byte
//! ranges refer to the stored bytes. If a body breaks mid-way, the stream re-requests the
//! remainder with a `Range` from the current offset (at most `retry.max_attempts` times, and
//! only if the `ETag` did not change), so a reset costs a resume, not a restart.

use std::ops::Range;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::stream::{self, BoxStream, StreamExt};
use reqwest::Method;
use reqwest::header::{self, HeaderMap, HeaderValue};

use super::Client;
use super::error::{Error, Result, describe_reqwest_error, redact_url};
use super::http::{AuthMode, Request};

/// A byte range request; the same type `object_store` uses, so `WandbStore` passes its
/// `GetOptions::range` straight through.
pub type ByteRange = object_store::GetRange;

/// Where a file's bytes live.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileLocation {
    /// A URL on the W&B API host that needs the credential (run file `url`).
    Authenticated(String),
    /// A signed URL that must be fetched without credentials (`directUrl`, parquet exports,
    /// manifests).
    Direct(String),
}

impl FileLocation {
    fn parts(&self) -> (&str, AuthMode) {
        match self {
            FileLocation::Authenticated(u) => (u, AuthMode::Scoped),
            FileLocation::Direct(u) => (u, AuthMode::Never),
        }
    }
}

/// What the server said about an object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Total object size in bytes (from `Content-Range`'s total or `Content-Length`; when a
    /// server answers `bytes a-b/*`, the end of the returned range is the best lower bound).
    pub size: u64,
    /// `ETag` as sent (quotes included).
    pub etag: Option<String>,
    /// `Last-Modified`.
    pub last_modified: Option<DateTime<Utc>>,
    /// `Content-Type`.
    pub content_type: Option<String>,
}

/// A streaming download.
pub struct Download {
    /// Object metadata.
    pub info: ObjectInfo,
    /// The byte range the stream yields (within `0..info.size`).
    pub range: Range<u64>,
    /// The bytes.
    pub stream: BoxStream<'static, Result<Bytes>>,
}

impl std::fmt::Debug for Download {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Download")
            .field("info", &self.info)
            .field("range", &self.range)
            .finish_non_exhaustive()
    }
}

/// The `Range` header value for a request.
pub fn range_header(range: &ByteRange) -> Result<String> {
    match range {
        ByteRange::Bounded(r) if r.start < r.end => Ok(format!("bytes={}-{}", r.start, r.end - 1)),
        ByteRange::Bounded(r) => Err(Error::config(format!(
            "invalid byte range {}..{}: empty or inverted",
            r.start, r.end
        ))),
        ByteRange::Offset(o) => Ok(format!("bytes={o}-")),
        ByteRange::Suffix(n) if *n > 0 => Ok(format!("bytes=-{n}")),
        ByteRange::Suffix(_) => Err(Error::config("invalid byte range: empty suffix")),
    }
}

/// Resolves a requested range against a known size (for servers that ignore `Range`).
fn resolve_range(range: &ByteRange, size: u64) -> Range<u64> {
    match range {
        ByteRange::Bounded(r) => r.start.min(size)..r.end.min(size),
        ByteRange::Offset(o) => (*o).min(size)..size,
        ByteRange::Suffix(n) => size.saturating_sub(*n)..size,
    }
}

/// Parses `Content-Range: bytes a-b/total` → (a..b+1, total).
fn parse_content_range(value: &str) -> Option<(Range<u64>, Option<u64>)> {
    let spec = value.trim().strip_prefix("bytes ")?;
    let (range, total) = spec.split_once('/')?;
    let (start, end) = range.split_once('-')?;
    let start: u64 = start.trim().parse().ok()?;
    let end: u64 = end.trim().parse().ok()?;
    let total = match total.trim() {
        "*" => None,
        t => Some(t.parse().ok()?),
    };
    (end >= start).then_some((start..end + 1, total))
}

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<String> {
    headers.get(name)?.to_str().ok().map(str::to_owned)
}

fn info_from(headers: &HeaderMap, size: u64) -> ObjectInfo {
    ObjectInfo {
        size,
        etag: header_str(headers, header::ETAG),
        last_modified: header_str(headers, header::LAST_MODIFIED)
            .and_then(|v| httpdate::parse_http_date(&v).ok())
            .map(DateTime::<Utc>::from),
        content_type: header_str(headers, header::CONTENT_TYPE),
    }
}

impl Client {
    fn download_request(
        &self,
        location: &FileLocation,
        method: Method,
        range: Option<&str>,
        operation: &str,
    ) -> Result<Request> {
        let (raw, auth) = location.parts();
        let url = url::Url::parse(raw)
            .or_else(|_| self.base_url().join(raw))
            .map_err(|e| Error::config(format!("{operation}: bad URL: {e}")))?;
        let mut headers = HeaderMap::new();
        headers.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("identity"),
        );
        if let Some(range) = range {
            let value = HeaderValue::from_str(range)
                .map_err(|_| Error::config(format!("{operation}: bad range {range}")))?;
            headers.insert(header::RANGE, value);
        }
        Ok(Request {
            operation: format!("{operation} {}", redact_url(&url)),
            method,
            url,
            headers,
            body: None,
            auth,
            timeout: None,
        })
    }

    /// Streams a file, optionally a byte range of it (one HTTP request unless redirected or
    /// resumed). A server that ignores `Range` (200 instead of 206) still yields exactly the
    /// requested bytes: the stream skips and truncates locally.
    pub async fn download(
        &self,
        location: &FileLocation,
        range: Option<ByteRange>,
    ) -> Result<Download> {
        let range_value = range.as_ref().map(range_header).transpose()?;
        let request =
            self.download_request(location, Method::GET, range_value.as_deref(), "download")?;
        let response = self.transport().send(&request).await?;
        let headers = response.headers().clone();
        let partial = response.status() == reqwest::StatusCode::PARTIAL_CONTENT;
        let content_length = response.content_length();
        let (info, served, wanted) = if partial {
            let (served, total) = header_str(&headers, header::CONTENT_RANGE)
                .as_deref()
                .and_then(parse_content_range)
                .ok_or_else(|| {
                    Error::decode(
                        &request.operation,
                        "206 reply without a valid Content-Range",
                    )
                })?;
            let size = total.unwrap_or(served.end);
            (info_from(&headers, size), served.clone(), served)
        } else {
            let size = content_length
                .ok_or_else(|| Error::decode(&request.operation, "reply without Content-Length"))?;
            let wanted = range.as_ref().map_or(0..size, |r| resolve_range(r, size));
            if range.is_some() {
                tracing::debug!(
                    operation = request.operation,
                    "server ignored Range; slicing {wanted:?} locally"
                );
            }
            (info_from(&headers, size), 0..size, wanted)
        };
        let body = ResumableBody {
            client: self.clone(),
            request,
            etag: info.etag.clone(),
            position: served.start,
            end: served.end,
            wanted: wanted.clone(),
            resumes_left: self.config().retry.max_attempts.saturating_sub(1),
        };
        Ok(Download {
            info,
            range: wanted,
            stream: body.into_stream(response),
        })
    }

    /// Downloads into memory (small files, manifests).
    pub async fn download_bytes(
        &self,
        location: &FileLocation,
        range: Option<ByteRange>,
    ) -> Result<Bytes> {
        let download = self.download(location, range).await?;
        let mut out = Vec::with_capacity(
            usize::try_from(download.range.end - download.range.start).unwrap_or(0),
        );
        let mut stream = download.stream;
        while let Some(chunk) = stream.next().await {
            out.extend_from_slice(&chunk?);
        }
        Ok(Bytes::from(out))
    }

    /// Object metadata without the body. Authenticated URLs get a real `HEAD` (falling back to
    /// a one-byte ranged GET if the server refuses HEAD with 405); signed URLs always get the
    /// ranged GET, because signatures are bound to the HTTP method (a GET-signed URL answers
    /// HEAD with 403).
    pub async fn head(&self, location: &FileLocation) -> Result<ObjectInfo> {
        if matches!(location, FileLocation::Authenticated(_)) {
            let request = self.download_request(location, Method::HEAD, None, "head")?;
            match self.transport().send(&request).await {
                Ok(response) => {
                    let headers = response.headers().clone();
                    let size = response
                        .content_length()
                        .or_else(|| header_str(&headers, header::CONTENT_LENGTH)?.parse().ok());
                    if let Some(size) = size {
                        return Ok(info_from(&headers, size));
                    }
                }
                Err(Error::Http { status: 405, .. }) => {}
                Err(e) => return Err(e),
            }
        }
        let request = self.download_request(location, Method::GET, Some("bytes=0-0"), "head")?;
        match self.transport().send(&request).await {
            Ok(response) => {
                let headers = response.headers().clone();
                let size = if response.status() == reqwest::StatusCode::PARTIAL_CONTENT {
                    header_str(&headers, header::CONTENT_RANGE)
                        .as_deref()
                        .and_then(parse_content_range)
                        .map(|(served, total)| total.unwrap_or(served.end))
                } else {
                    response.content_length()
                };
                // Dropping the response abandons any remaining body.
                let size = size.ok_or_else(|| {
                    Error::decode(&request.operation, "no Content-Range or Content-Length")
                })?;
                Ok(info_from(&headers, size))
            }
            Err(Error::RangeNotSatisfiable { size: Some(0), .. }) => Ok(ObjectInfo {
                size: 0,
                etag: None,
                last_modified: None,
                content_type: None,
            }),
            Err(e) => Err(e),
        }
    }
}

/// A body that resumes with a ranged request when the connection breaks.
struct ResumableBody {
    client: Client,
    request: Request,
    etag: Option<String>,
    /// Object offset of the next byte the current response yields.
    position: u64,
    /// End (exclusive) of what the current response serves.
    end: u64,
    /// What the caller asked for.
    wanted: Range<u64>,
    resumes_left: u32,
}

enum BodyState {
    Streaming(BoxStream<'static, reqwest::Result<Bytes>>),
    Done,
}

impl ResumableBody {
    fn into_stream(self, response: reqwest::Response) -> BoxStream<'static, Result<Bytes>> {
        let state = (self, BodyState::Streaming(response.bytes_stream().boxed()));
        stream::unfold(state, |(mut body, mut state)| async move {
            loop {
                let BodyState::Streaming(inner) = &mut state else {
                    return None;
                };
                match inner.next().await {
                    Some(Ok(chunk)) => {
                        let chunk_start = body.position;
                        body.position += chunk.len() as u64;
                        // Keep only the part inside `wanted` (non-trivial only when the server
                        // ignored Range).
                        let lo = body.wanted.start.max(chunk_start);
                        let hi = body.wanted.end.min(body.position);
                        if body.position >= body.wanted.end {
                            state = BodyState::Done;
                        }
                        if lo < hi {
                            let slice = chunk
                                .slice((lo - chunk_start) as usize..(hi - chunk_start) as usize);
                            return Some((Ok(slice), (body, state)));
                        }
                    }
                    None if body.position >= body.wanted.end.min(body.end) => return None,
                    None => {
                        let message =
                            format!("body ended at byte {} of {}", body.position, body.end);
                        match body.resume(message).await {
                            Ok(next) => state = BodyState::Streaming(next),
                            Err(e) => return Some((Err(e), (body, BodyState::Done))),
                        }
                    }
                    Some(Err(e)) => {
                        let message = describe_reqwest_error(e);
                        match body.resume(message).await {
                            Ok(next) => state = BodyState::Streaming(next),
                            Err(e) => return Some((Err(e), (body, BodyState::Done))),
                        }
                    }
                }
            }
        })
        .boxed()
    }

    /// Re-requests `position..end` after a broken body.
    async fn resume(
        &mut self,
        reason: String,
    ) -> Result<BoxStream<'static, reqwest::Result<Bytes>>> {
        let broken = || Error::Transport {
            operation: self.request.operation.clone(),
            message: format!("download interrupted: {reason}"),
        };
        if self.resumes_left == 0 {
            return Err(broken());
        }
        self.resumes_left -= 1;
        let wanted_end = self.wanted.end.min(self.end);
        tracing::debug!(
            operation = self.request.operation,
            "resuming download at byte {} after: {reason}",
            self.position
        );
        let mut request = self.request.clone();
        let value = format!("bytes={}-{}", self.position, wanted_end.saturating_sub(1));
        request.headers.insert(
            header::RANGE,
            HeaderValue::from_str(&value).map_err(|_| broken())?,
        );
        let response = self.client.transport().send(&request).await?;
        let headers = response.headers();
        let etag = header_str(headers, header::ETAG);
        if self.etag.is_some() && etag != self.etag {
            return Err(Error::Transport {
                operation: self.request.operation.clone(),
                message: "the object changed while it was being downloaded".into(),
            });
        }
        if response.status() != reqwest::StatusCode::PARTIAL_CONTENT {
            // The server ignored Range: the new body starts at 0 again.
            self.position = 0;
        }
        Ok(response.bytes_stream().boxed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_headers() {
        assert_eq!(
            range_header(&ByteRange::Bounded(0..10)).unwrap(),
            "bytes=0-9"
        );
        assert_eq!(
            range_header(&ByteRange::Bounded(5..6)).unwrap(),
            "bytes=5-5"
        );
        assert_eq!(range_header(&ByteRange::Offset(7)).unwrap(), "bytes=7-");
        assert_eq!(range_header(&ByteRange::Suffix(3)).unwrap(), "bytes=-3");
        assert!(range_header(&ByteRange::Bounded(5..5)).is_err());
        assert!(range_header(&ByteRange::Suffix(0)).is_err());
    }

    #[test]
    fn content_range_and_local_slicing() {
        assert_eq!(
            parse_content_range("bytes 0-9/100"),
            Some((0..10, Some(100)))
        );
        assert_eq!(parse_content_range("bytes 5-5/*"), Some((5..6, None)));
        assert_eq!(parse_content_range("bytes */100"), None);
        assert_eq!(resolve_range(&ByteRange::Suffix(30), 100), 70..100);
        assert_eq!(resolve_range(&ByteRange::Suffix(300), 100), 0..100);
        assert_eq!(resolve_range(&ByteRange::Offset(90), 100), 90..100);
        assert_eq!(resolve_range(&ByteRange::Bounded(10..500), 100), 10..100);
    }
}
