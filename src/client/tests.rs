//! Client tests against in-process fake HTTP servers (axum on loopback): retries, rate budget,
//! credential scoping, redirects, ranges, pagination, identity tokens and redaction. The real
//! emulator is exercised by `tests/client_emulator.rs`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::TryStreamExt;
use secrecy::SecretString;
use serde_json::{Value, json};

use super::*;

const KEY: &str = "local-0123456789abcdefghij0123456789abcdefghij";

#[derive(Clone, Debug)]
struct Seen {
    method: String,
    path: String,
    headers: HeaderMap,
    body: Bytes,
}

impl Seen {
    fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap_or_default().to_owned())
    }
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

type Handler = Arc<dyn Fn(&Seen, usize) -> Response + Send + Sync>;

struct Fake {
    base: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Fake {
    async fn start(handler: impl Fn(&Seen, usize) -> Response + Send + Sync + 'static) -> Fake {
        let handler: Handler = Arc::new(handler);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let router = axum::Router::new().fallback(move |req: axum::extract::Request| {
            let handler = handler.clone();
            let log = log.clone();
            async move {
                let (parts, body) = req.into_parts();
                let body = axum::body::to_bytes(body, usize::MAX)
                    .await
                    .unwrap_or_default();
                let seen = Seen {
                    method: parts.method.to_string(),
                    path: parts
                        .uri
                        .path_and_query()
                        .map(|p| p.to_string())
                        .unwrap_or_default(),
                    headers: parts.headers,
                    body,
                };
                let index = {
                    let mut log = log.lock().unwrap();
                    log.push(seen.clone());
                    log.len() - 1
                };
                handler(&seen, index)
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Fake { base, seen }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn fast_config() -> ClientConfig {
    ClientConfig {
        retry: RetryConfig {
            max_attempts: 4,
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(40),
            max_retry_after: Duration::from_secs(3),
            total_timeout: Duration::from_secs(20),
        },
        rate: RateLimitConfig {
            requests_per_second: 0.0,
            burst: 1,
            honour_server_headers: true,
        },
        ..ClientConfig::default()
    }
}

fn client(base: &str, config: ClientConfig) -> Client {
    let overrides = Overrides {
        base_url: Some(base.to_owned()),
        api_key: Some(SecretString::from(KEY.to_owned())),
        ..Overrides::default()
    };
    let settings = settings::resolve(&overrides, &Environment::isolated()).unwrap();
    Client::new(settings, config).unwrap()
}

fn json_response(status: StatusCode, body: Value) -> Response {
    (
        status,
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn viewer_ok() -> Response {
    json_response(
        StatusCode::OK,
        json!({"data": {"viewer": {"id": "VXNlcjox", "entity": "alice", "username": "alice",
            "email": "a@example.com", "flags": "{}", "teams": {"edges": [{"node": {"name": "team-a"}}]}}}}),
    )
}

#[tokio::test]
async fn retry_after_seconds_is_honoured() {
    let fake = Fake::start(|_, i| {
        if i < 2 {
            (
                StatusCode::TOO_MANY_REQUESTS,
                [("retry-after", "0.3")],
                "slow down",
            )
                .into_response()
        } else {
            viewer_ok()
        }
    })
    .await;
    let start = Instant::now();
    let viewer = client(&fake.base, fast_config()).viewer().await.unwrap();
    assert_eq!(viewer.entity.as_deref(), Some("alice"));
    assert_eq!(viewer.teams, vec!["team-a".to_owned()]);
    assert_eq!(fake.seen().len(), 3);
    assert!(
        start.elapsed() >= Duration::from_millis(550),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn retry_after_http_date_is_honoured_and_capped() {
    let fake = Fake::start(|_, i| {
        if i == 0 {
            let when = std::time::SystemTime::now() + Duration::from_secs(2);
            let date = httpdate::fmt_http_date(when);
            (StatusCode::SERVICE_UNAVAILABLE, [("retry-after", date)], "").into_response()
        } else if i == 1 {
            (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "3600")], "").into_response()
        } else {
            viewer_ok()
        }
    })
    .await;
    let mut config = fast_config();
    config.retry.max_retry_after = Duration::from_millis(1500);
    let start = Instant::now();
    client(&fake.base, config).viewer().await.unwrap();
    let elapsed = start.elapsed();
    // ≈1–2 s for the date (second granularity), then the 3600 s is capped at 1.5 s.
    assert!(elapsed >= Duration::from_millis(2400), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(6), "{elapsed:?}");
}

#[tokio::test]
async fn server_error_bursts_are_retried_but_501_is_not() {
    let fake = Fake::start(|_, i| match i {
        0 => StatusCode::SERVICE_UNAVAILABLE.into_response(),
        1 => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        2 => StatusCode::BAD_GATEWAY.into_response(),
        _ => viewer_ok(),
    })
    .await;
    client(&fake.base, fast_config()).viewer().await.unwrap();
    assert_eq!(fake.seen().len(), 4);

    let fake = Fake::start(|_, _| StatusCode::NOT_IMPLEMENTED.into_response()).await;
    let err = client(&fake.base, fast_config())
        .viewer()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Http { status: 501, .. }), "{err}");
    assert_eq!(fake.seen().len(), 1);
}

#[tokio::test]
async fn client_errors_are_not_retried_and_are_typed() {
    for (status, check) in [
        (
            401u16,
            (|e: &Error| matches!(e, Error::Unauthenticated { .. })) as fn(&Error) -> bool,
        ),
        (403, |e| matches!(e, Error::PermissionDenied { .. })),
        (404, |e| matches!(e, Error::NotFound { .. })),
        (400, |e| matches!(e, Error::Http { status: 400, .. })),
        (409, |e| matches!(e, Error::Http { status: 409, .. })),
    ] {
        let fake = Fake::start(move |_, _| {
            json_response(
                StatusCode::from_u16(status).unwrap(),
                json!({"errors": [{"message": "nope"}]}),
            )
        })
        .await;
        let err = client(&fake.base, fast_config())
            .viewer()
            .await
            .unwrap_err();
        assert!(check(&err), "{status}: {err}");
        assert!(err.to_string().contains("Viewer"), "{err}");
        assert!(err.to_string().contains("nope"), "{err}");
        assert_eq!(fake.seen().len(), 1, "{status} was retried");
    }
}

#[tokio::test]
async fn poisoned_object_fails_after_bounded_attempts() {
    let fake = Fake::start(|_, _| (StatusCode::BAD_GATEWAY, "upstream sad").into_response()).await;
    let c = client(&fake.base, fast_config());
    let err = c
        .history_page("e", "p", "poisoned", 0, 100)
        .await
        .unwrap_err();
    match &err {
        Error::RetriesExhausted {
            operation,
            attempts,
            last_status,
            last,
            ..
        } => {
            assert_eq!(operation, "HistoryPage");
            assert_eq!(*attempts, 4);
            assert_eq!(*last_status, Some(502));
            assert!(
                last.contains("502") && last.contains("upstream sad"),
                "{last}"
            );
        }
        other => panic!("{other}"),
    }
    assert_eq!(err.attempts(), Some(4));
    assert_eq!(fake.seen().len(), 4);

    let fake = Fake::start(|_, _| StatusCode::TOO_MANY_REQUESTS.into_response()).await;
    let err = client(&fake.base, fast_config())
        .viewer()
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::RateLimited { attempts: 4, .. }),
        "{err}"
    );
}

#[tokio::test]
async fn total_time_budget_bounds_a_request() {
    let fake = Fake::start(|_, _| StatusCode::INTERNAL_SERVER_ERROR.into_response()).await;
    let mut config = fast_config();
    config.retry.max_attempts = 1000;
    config.retry.initial_backoff = Duration::from_millis(100);
    config.retry.max_backoff = Duration::from_millis(100);
    config.retry.total_timeout = Duration::from_millis(600);
    let start = Instant::now();
    let err = client(&fake.base, config).viewer().await.unwrap_err();
    assert!(matches!(err, Error::RetriesExhausted { .. }), "{err}");
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    assert!(fake.seen().len() < 10);
}

/// A raw TCP server that resets the first `resets` connections, then answers every request
/// with `body` as JSON.
async fn resetting_server(resets: usize, body: &'static str) -> (String, Arc<Mutex<usize>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let count = Arc::new(Mutex::new(0usize));
    let seen = count.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let n = {
                let mut c = seen.lock().unwrap();
                *c += 1;
                *c
            };
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                let _ = socket.read(&mut buf).await;
                if n <= resets {
                    drop(socket); // connection closed without a response
                    return;
                }
                let reply = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{}",
                    body.len(),
                    body
                );
                let _ = socket.write_all(reply.as_bytes()).await;
            });
        }
    });
    (base, count)
}

#[tokio::test]
async fn connection_resets_are_retried() {
    let (base, count) =
        resetting_server(2, r#"{"data":{"viewer":{"id":"1","entity":"bob"}}}"#).await;
    let viewer = client(&base, fast_config()).viewer().await.unwrap();
    assert_eq!(viewer.entity.as_deref(), Some("bob"));
    assert_eq!(*count.lock().unwrap(), 3);
}

#[tokio::test]
async fn graphql_errors_with_200_fail_and_truncated_bodies_retry() {
    let fake = Fake::start(|_, _| {
        json_response(
            StatusCode::OK,
            json!({"data": {"viewer": null}, "errors": [{"message": "boom"}, {"message": "bang"}]}),
        )
    })
    .await;
    let err = client(&fake.base, fast_config())
        .viewer()
        .await
        .unwrap_err();
    match &err {
        Error::GraphQl {
            operation,
            messages,
        } => {
            assert_eq!(operation, "Viewer");
            assert_eq!(messages, &vec!["boom".to_owned(), "bang".to_owned()]);
        }
        other => panic!("{other}"),
    }
    assert_eq!(fake.seen().len(), 1);

    let fake = Fake::start(|_, i| {
        if i == 0 {
            (StatusCode::OK, r#"{"data":{"viewer":{"id":"1","ent"#).into_response()
        } else {
            viewer_ok()
        }
    })
    .await;
    client(&fake.base, fast_config()).viewer().await.unwrap();
    assert_eq!(fake.seen().len(), 2);

    let fake =
        Fake::start(|_, _| json_response(StatusCode::OK, json!({"data": {"viewer": null}}))).await;
    let err = client(&fake.base, fast_config())
        .viewer()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Unauthenticated { .. }), "{err}");
}

#[tokio::test]
async fn requests_look_like_the_sdk() {
    let fake = Fake::start(|_, _| viewer_ok()).await;
    client(&fake.base, fast_config()).viewer().await.unwrap();
    let seen = &fake.seen()[0];
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.path, "/graphql");
    assert_eq!(
        seen.header("user-agent").as_deref(),
        Some("W&B Public Client 0.31.0")
    );
    assert_eq!(
        seen.header("content-type").as_deref(),
        Some("application/json")
    );
    assert_eq!(seen.header("use-admin-privileges").as_deref(), Some("true"));
    use base64::Engine as _;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("api:{KEY}"));
    assert_eq!(seen.header("authorization"), Some(format!("Basic {basic}")));
    let body = seen.json();
    assert_eq!(body["operationName"], "Viewer");
    assert_eq!(body["variables"], json!({}));
    assert!(body["query"].as_str().unwrap().contains("query Viewer{"));
}

async fn collect(stream: futures::stream::BoxStream<'static, Result<Bytes>>) -> Vec<u8> {
    stream
        .try_fold(Vec::new(), |mut acc, chunk| async move {
            acc.extend_from_slice(&chunk);
            Ok(acc)
        })
        .await
        .unwrap()
}

fn file_body() -> Vec<u8> {
    (0..1000u32).map(|i| (i % 251) as u8).collect()
}

/// Serves `file_body()` honouring `Range` (unless `ignore_range`).
fn serve_file(seen: &Seen, ignore_range: bool) -> Response {
    let data = file_body();
    let len = data.len() as u64;
    let range = seen.header("range").filter(|_| !ignore_range);
    let Some(spec) = range.as_deref().and_then(|r| r.strip_prefix("bytes=")) else {
        return (StatusCode::OK, [("etag", "\"v1\"")], data).into_response();
    };
    let (a, b) = spec.split_once('-').unwrap();
    let (start, end) = match (a.parse::<u64>().ok(), b.parse::<u64>().ok()) {
        (Some(a), Some(b)) => (a, b.min(len - 1)),
        (Some(a), None) => (a, len - 1),
        (None, Some(n)) => (len.saturating_sub(n), len - 1),
        _ => unreachable!(),
    };
    if start >= len {
        return (
            StatusCode::RANGE_NOT_SATISFIABLE,
            [("content-range", format!("bytes */{len}"))],
            "",
        )
            .into_response();
    }
    let slice = data[start as usize..=end as usize].to_vec();
    (
        StatusCode::PARTIAL_CONTENT,
        [
            ("content-range", format!("bytes {start}-{end}/{len}")),
            ("etag", "\"v1\"".to_owned()),
            ("last-modified", "Wed, 21 Oct 2015 07:28:00 GMT".to_owned()),
        ],
        slice,
    )
        .into_response()
}

#[tokio::test]
async fn ranges_become_http_range_and_yield_exact_bytes() {
    let fake = Fake::start(|seen, _| serve_file(seen, false)).await;
    let c = client(&fake.base, fast_config());
    let loc = FileLocation::Direct(format!("{}/blob?sig=abc", fake.base));
    let data = file_body();
    let cases = [
        (ByteRange::Bounded(10..20), "bytes=10-19", 10..20),
        (ByteRange::Offset(990), "bytes=990-", 990..1000),
        (ByteRange::Suffix(5), "bytes=-5", 995..1000),
    ];
    for (i, (range, header, expect)) in cases.into_iter().enumerate() {
        let d = c.download(&loc, Some(range)).await.unwrap();
        assert_eq!(d.info.size, 1000);
        assert_eq!(d.info.etag.as_deref(), Some("\"v1\""));
        assert!(d.info.last_modified.is_some());
        assert_eq!(d.range, expect.clone());
        let bytes = collect(d.stream).await;
        assert_eq!(bytes, data[expect.start as usize..expect.end as usize]);
        assert_eq!(fake.seen()[i].header("range").as_deref(), Some(header));
    }
    let err = c
        .download(&loc, Some(ByteRange::Offset(5000)))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::RangeNotSatisfiable {
                size: Some(1000),
                ..
            }
        ),
        "{err}"
    );
    let info = c.head(&loc).await.unwrap();
    assert_eq!(info.size, 1000);
    let last = fake.seen().last().unwrap().clone();
    assert_eq!(
        last.method, "GET",
        "signed URLs are probed with a ranged GET"
    );
    assert_eq!(last.header("range").as_deref(), Some("bytes=0-0"));
    // An authenticated URL gets a real HEAD.
    let auth_loc = FileLocation::Authenticated(format!("{}/files/e/p/r/f.bin", fake.base));
    c.head(&auth_loc).await.unwrap();
    assert_eq!(fake.seen().last().unwrap().method, "HEAD");
}

#[tokio::test]
async fn servers_ignoring_range_are_sliced_locally() {
    let fake = Fake::start(|seen, _| serve_file(seen, true)).await;
    let c = client(&fake.base, fast_config());
    let loc = FileLocation::Direct(format!("{}/blob", fake.base));
    let d = c
        .download(&loc, Some(ByteRange::Bounded(100..150)))
        .await
        .unwrap();
    assert_eq!(d.range, 100..150);
    let bytes = collect(d.stream).await;
    assert_eq!(&bytes[..], &file_body()[100..150]);
}

#[tokio::test]
async fn broken_bodies_resume_with_a_range() {
    let fake = Fake::start(|seen, i| {
        if i == 0 {
            // 100 good bytes, then the connection breaks.
            // The pause lets the headers and the first chunk reach the client first.
            let first = Bytes::from(file_body()[..100].to_vec());
            let stream = futures::stream::unfold(0, move |step| {
                let first = first.clone();
                async move {
                    match step {
                        0 => Some((Ok::<Bytes, std::io::Error>(first), 1)),
                        1 => {
                            tokio::time::sleep(Duration::from_millis(200)).await;
                            Some((Err(std::io::Error::other("cut")), 2))
                        }
                        _ => None,
                    }
                }
            });
            Response::builder()
                .status(200)
                .header("content-length", "1000")
                .header("etag", "\"v1\"")
                .body(Body::from_stream(stream))
                .unwrap()
        } else {
            serve_file(seen, false)
        }
    })
    .await;
    let c = client(&fake.base, fast_config());
    let loc = FileLocation::Direct(format!("{}/blob", fake.base));
    let bytes = c.download_bytes(&loc, None).await.unwrap();
    assert_eq!(&bytes[..], &file_body()[..]);
    let seen = fake.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1].header("range").as_deref(), Some("bytes=100-999"));
}

#[tokio::test]
async fn expired_signed_urls_are_typed() {
    let fake =
        Fake::start(|_, _| (StatusCode::FORBIDDEN, "Request has expired").into_response()).await;
    let c = client(&fake.base, fast_config());
    let err = c
        .download(
            &FileLocation::Direct(format!("{}/blob?X-Sig=secret", fake.base)),
            None,
        )
        .await
        .unwrap_err();
    match &err {
        Error::UrlExpired { status, url, .. } => {
            assert_eq!(*status, 403);
            assert!(!url.contains("secret"), "signature leaked: {url}");
        }
        other => panic!("{other}"),
    }
    assert!(!err.to_string().contains("secret"));
    // The same status on an authenticated URL is a permission problem, not an expiry.
    let err = c
        .download(
            &FileLocation::Authenticated(format!("{}/files/x", fake.base)),
            None,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::PermissionDenied { .. }), "{err}");
}

#[tokio::test]
async fn credentials_stay_on_the_base_url() {
    let storage = Fake::start(|seen, _| serve_file(seen, false)).await;
    let storage_base = storage.base.clone();
    let api = Fake::start(move |seen, _| {
        if seen.path.starts_with("/files/") {
            (
                StatusCode::FOUND,
                [("location", format!("{storage_base}/bucket/obj?sig=1"))],
                "",
            )
                .into_response()
        } else if seen.method == "PUT" {
            StatusCode::OK.into_response()
        } else {
            serve_file(seen, false)
        }
    })
    .await;
    let c = client(&api.base, fast_config());
    // Authenticated URL that redirects to another host (port): only the first hop has auth.
    let bytes = c
        .download_bytes(
            &FileLocation::Authenticated(format!("{}/files/e/p/r/x", api.base)),
            None,
        )
        .await
        .unwrap();
    assert_eq!(&bytes[..], &file_body()[..]);
    // A direct URL on the other listener; an authenticated-kind URL outside the scope.
    c.download_bytes(
        &FileLocation::Direct(format!("{}/d?sig=2", storage.base)),
        None,
    )
    .await
    .unwrap();
    c.download_bytes(
        &FileLocation::Authenticated(format!("{}/elsewhere", storage.base)),
        None,
    )
    .await
    .unwrap();
    // Uploads never carry credentials, even on the API host.
    c.upload(
        &format!("{}/upload/x?tok=1", api.base),
        &[("X-Up".into(), "1".into())],
        Bytes::from_static(b"hi"),
    )
    .await
    .unwrap();
    let api_seen = api.seen();
    assert!(api_seen[0].header("authorization").is_some());
    let put = api_seen.iter().find(|s| s.method == "PUT").unwrap();
    assert_eq!(put.header("authorization"), None);
    assert_eq!(put.header("x-up").as_deref(), Some("1"));
    assert_eq!(put.body.as_ref(), b"hi");
    let storage_seen = storage.seen();
    assert_eq!(storage_seen.len(), 3);
    for s in &storage_seen {
        assert_eq!(
            s.header("authorization"),
            None,
            "credential leaked to {}",
            s.path
        );
        assert_eq!(s.header("use-admin-privileges"), None);
    }
    assert_eq!(storage_seen[0].path, "/bucket/obj?sig=1");
}

#[tokio::test]
async fn base_path_limits_the_scope() {
    let fake = Fake::start(|seen, _| serve_file(seen, false)).await;
    let c = client(&format!("{}/api/wandb", fake.base), fast_config());
    c.download_bytes(
        &FileLocation::Authenticated(format!("{}/api/wandb/files/x", fake.base)),
        None,
    )
    .await
    .unwrap();
    c.download_bytes(
        &FileLocation::Authenticated(format!("{}/api/wandbx/files/x", fake.base)),
        None,
    )
    .await
    .unwrap();
    let seen = fake.seen();
    assert!(seen[0].header("authorization").is_some());
    assert_eq!(seen[1].header("authorization"), None);
}

#[tokio::test]
async fn rate_budget_is_shared_by_clones() {
    let fake = Fake::start(|_, _| viewer_ok()).await;
    let mut config = fast_config();
    config.rate = RateLimitConfig {
        requests_per_second: 20.0,
        burst: 1,
        honour_server_headers: true,
    };
    let a = client(&fake.base, config);
    let b = a.clone();
    let start = Instant::now();
    let run = |c: Client| async move {
        for _ in 0..6 {
            c.viewer().await.unwrap();
        }
    };
    tokio::join!(run(a.clone()), run(b.clone()));
    // 12 requests at 20/s with a burst of 1 take at least 11/20 s.
    assert!(
        start.elapsed() >= Duration::from_millis(500),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(a.stats().api_requests, 12);
    assert_eq!(b.stats().api_requests, 12);
}

#[tokio::test]
async fn ratelimit_headers_pause_everyone() {
    let fake = Fake::start(|_, i| {
        if i == 0 {
            let mut r = viewer_ok();
            r.headers_mut()
                .insert("ratelimit-remaining", "0".parse().unwrap());
            r.headers_mut()
                .insert("ratelimit-reset", "0.5".parse().unwrap());
            r
        } else {
            viewer_ok()
        }
    })
    .await;
    let c = client(&fake.base, fast_config());
    c.viewer().await.unwrap();
    let start = Instant::now();
    c.clone().viewer().await.unwrap();
    assert!(
        start.elapsed() >= Duration::from_millis(400),
        "{:?}",
        start.elapsed()
    );
}

fn run_node(name: &str) -> Value {
    json!({"node": {"id": format!("id-{name}"), "name": name, "projectId": "7", "state": "finished",
        "tags": null, "createdAt": "2024-01-02T03:04:05", "user": {"name": "A", "username": "a"}},
        "cursor": format!("c-{name}")})
}

#[tokio::test]
async fn run_listing_paginates_by_last_edge_and_dedupes() {
    let fake = Fake::start(|seen, _| {
        let cursor = seen.json()["variables"]["cursor"].clone();
        let (edges, end, more) = match cursor.as_str() {
            None => (vec![run_node("a"), run_node("b")], "p1", true),
            Some("c-b") => (vec![], "50", true),
            Some("50") => (vec![run_node("b"), run_node("c")], "p3", false),
            other => panic!("unexpected cursor {other:?}"),
        };
        json_response(
            StatusCode::OK,
            json!({"data": {"project": {"internalId": "7", "runCount": 3, "readOnly": false,
                "runs": {"edges": edges, "pageInfo": {"endCursor": end, "hasNextPage": more}}}}}),
        )
    })
    .await;
    let c = client(&fake.base, fast_config());
    let runs: Vec<Run> = c
        .runs(&RunsQuery::new("e", "p"))
        .try_collect()
        .await
        .unwrap();
    let names: Vec<_> = runs.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["a", "b", "c"]);
    assert_eq!(runs[0].project_id, Some(7));
    assert!(runs[0].tags.is_empty());
    let seen = fake.seen();
    assert_eq!(seen.len(), 3);
    let vars = seen[0].json()["variables"].clone();
    assert_eq!(vars["order"], "+created_at");
    assert_eq!(vars["filters"], "{}");
    assert_eq!(vars["perPage"], 50);
    assert_eq!(seen[0].json()["operationName"], "Runs");
    assert!(
        !seen[0].json()["query"]
            .as_str()
            .unwrap()
            .contains("updatedAt")
    );
    // Opt-in updatedAt reaches the document.
    let _ = c
        .runs_page(&RunsQuery::new("e", "p").with_updated_at(), None)
        .await
        .unwrap();
    assert!(
        fake.seen()[3].json()["query"]
            .as_str()
            .unwrap()
            .contains("updatedAt")
    );
}

#[tokio::test]
async fn history_pages_never_ask_for_fewer_samples_than_steps() {
    let fake = Fake::start(|_, _| {
        json_response(
            StatusCode::OK,
            json!({"data": {"project": {"run": {"history": [
                "{\"_step\": 10, \"loss\": NaN, \"x\": {\"y\": Infinity}}",
                null,
                "{\"_step\": 11, \"loss\": 1}"]}}}}),
        )
    })
    .await;
    let c = client(&fake.base, fast_config());
    let rows = c.history_page("e", "p", "r", 10, 1010).await.unwrap();
    assert_eq!(rows.len(), 2);
    assert!(rows[0].contains("NaN") && rows[0].contains("Infinity"));
    let parsed = crate::values::parse(rows[0].as_bytes()).unwrap();
    let mut out = Vec::new();
    crate::values::write_wandb_json(&parsed, &mut out);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        r#"{"_step":10,"loss":NaN,"x":{"y":Infinity}}"#
    );
    let vars = fake.seen()[0].json()["variables"].clone();
    assert_eq!(
        vars,
        json!({"entity": "e", "project": "p", "run": "r",
        "minStep": 10, "maxStep": 1010, "pageSize": 1000})
    );
    // An empty window makes no request.
    assert!(
        c.history_page("e", "p", "r", 5, 5)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(fake.seen().len(), 1);
}

#[tokio::test]
async fn identity_tokens_are_exchanged_once_and_cached() {
    let fake = Fake::start(|seen, _| {
        if seen.path == "/oidc/token" {
            json_response(
                StatusCode::OK,
                json!({"access_token": "tok-123", "expires_in": 3600}),
            )
        } else if seen.header("authorization").as_deref() == Some("Bearer tok-123") {
            viewer_ok()
        } else {
            json_response(
                StatusCode::UNAUTHORIZED,
                json!({"errors": [{"message": "who?"}]}),
            )
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("id.jwt"), "aaa.bbb.ccc\n").unwrap();
    let env = Environment::isolated()
        .with_home(dir.path())
        .with_cwd(dir.path())
        .with_var("WANDB_IDENTITY_TOKEN_FILE", "id.jwt")
        .with_var("WANDB_BASE_URL", &fake.base);
    let settings = settings::resolve(&Overrides::default(), &env).unwrap();
    let c = Client::new(settings.clone(), fast_config()).unwrap();
    c.viewer().await.unwrap();
    c.viewer().await.unwrap();
    let seen = fake.seen();
    let exchanges: Vec<_> = seen.iter().filter(|s| s.path == "/oidc/token").collect();
    assert_eq!(exchanges.len(), 1);
    assert_eq!(exchanges[0].header("authorization"), None);
    assert_eq!(
        std::str::from_utf8(&exchanges[0].body).unwrap(),
        "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=aaa.bbb.ccc"
    );
    let cache: Value = serde_json::from_slice(
        &std::fs::read(dir.path().join(".config/wandb/credentials.json")).unwrap(),
    )
    .unwrap();
    let entry = &cache["credentials"][&fake.base];
    assert_eq!(entry["access_token"], "tok-123");
    assert_eq!(
        entry["expires_at"].as_str().unwrap().len(),
        "YYYY-MM-DD HH:MM:SS".len()
    );
    // A new client (another process, say) reuses the cached token.
    Client::new(settings, fast_config())
        .unwrap()
        .viewer()
        .await
        .unwrap();
    assert_eq!(
        fake.seen()
            .iter()
            .filter(|s| s.path == "/oidc/token")
            .count(),
        1
    );
}

#[tokio::test]
async fn no_error_or_config_ever_shows_the_key() {
    use base64::Engine as _;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("api:{KEY}"));
    // Errors produced by real flows.
    let fake = Fake::start(|_, i| match i % 3 {
        0 => StatusCode::UNAUTHORIZED.into_response(),
        1 => StatusCode::BAD_GATEWAY.into_response(),
        _ => json_response(StatusCode::OK, json!({"errors": [{"message": "x"}]})),
    })
    .await;
    let mut config = fast_config();
    config.retry.max_attempts = 1;
    let c = client(&fake.base, config.clone());
    let mut errors = vec![
        c.viewer().await.unwrap_err(),
        c.viewer().await.unwrap_err(),
        c.viewer().await.unwrap_err(),
    ];
    // Every variant, built directly.
    let op = || "Op".to_owned();
    errors.extend([
        Error::MissingCredentials {
            base_url: "http://h".into(),
            netrc_machine: "h".into(),
            netrc_path: "/n".into(),
        },
        Error::config("bad"),
        Error::Unauthenticated {
            operation: op(),
            message: "m".into(),
        },
        Error::PermissionDenied {
            operation: op(),
            message: "m".into(),
        },
        Error::not_found("Op", "run e/p/r"),
        Error::UrlExpired {
            operation: op(),
            status: 403,
            url: "http://s/x".into(),
        },
        Error::RangeNotSatisfiable {
            operation: op(),
            size: Some(1),
        },
        Error::RateLimited {
            operation: op(),
            attempts: 3,
            elapsed: Duration::from_secs(1),
        },
        Error::RetriesExhausted {
            operation: op(),
            attempts: 3,
            elapsed: Duration::from_secs(1),
            last: "HTTP 502".into(),
            last_status: Some(502),
        },
        Error::Http {
            operation: op(),
            status: 400,
            message: "m".into(),
        },
        Error::GraphQl {
            operation: op(),
            messages: vec!["m".into()],
        },
        Error::decode("Op", "d"),
        Error::Transport {
            operation: op(),
            message: "t".into(),
        },
        Error::Pagination {
            operation: op(),
            message: "p".into(),
        },
    ]);
    let mut texts: Vec<String> = errors
        .iter()
        .flat_map(|e| [e.to_string(), format!("{e:?}")])
        .collect();
    texts.push(format!("{config:?}"));
    texts.push(format!("{c:?}"));
    for text in texts {
        assert!(!text.contains(KEY), "{text}");
        assert!(!text.contains(&basic), "{text}");
    }
}
