//! HTTP: two listeners (API and signed direct URLs), a hyper accept loop that can reset
//! connections, request logging, fault injection, and the axum routers.

mod files;
mod filestream;
mod graphql;
pub mod range;

pub use files::serve_blob;

use std::convert::Infallible;
use std::future::Future as _;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::Router;
use axum::body::Body;
use axum::extract::DefaultBodyLimit;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use axum::routing::{any, post, put};
use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tower::ServiceExt as _;

use crate::app::AppState;
use crate::faults::FaultAction;
use crate::reqlog::{Listener, LiveRecord, RouteKind};
use crate::schema::EmulatorSchema;

/// State shared by the HTTP handlers.
pub struct HttpState {
    /// Application state.
    pub app: Arc<AppState>,
    /// GraphQL schema.
    pub schema: EmulatorSchema,
}

/// A JSON error body `{"errors":[{"message": …}]}` with a status.
pub fn error_response(status: StatusCode, message: &str) -> Response<Body> {
    let body = serde_json::json!({"errors": [{"message": message}]}).to_string();
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

fn classify(listener: Listener, method: &Method, path: &str) -> RouteKind {
    match listener {
        Listener::Direct if path.starts_with("/blob/") => RouteKind::SignedDownload,
        Listener::Direct => RouteKind::Other,
        Listener::Main => {
            if path == "/graphql" {
                RouteKind::Graphql
            } else if path.starts_with("/files/")
                && path.ends_with("/file_stream")
                && method == Method::POST
            {
                RouteKind::FileStream
            } else if path.starts_with("/files/")
                || path.starts_with("/artifactsV2/")
                || path.starts_with("/artifacts/")
            {
                RouteKind::Download
            } else if path.starts_with("/_upload/") {
                RouteKind::Upload
            } else if path.starts_with("/sdk/otel/") {
                RouteKind::Otel
            } else {
                RouteKind::Other
            }
        }
    }
}

/// `GET /_emulator/profile`: the W&B profile in force (JSON; API key required).
async fn profile_get(State(state): State<Arc<HttpState>>, headers: HeaderMap) -> Response<Body> {
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if !state.app.authorized(auth) {
        return error_response(StatusCode::UNAUTHORIZED, "API key required");
    }
    let profile = state.app.profile.read().clone();
    Response::new(Body::from(
        serde_json::to_string(&profile).unwrap_or_default(),
    ))
}

/// `POST /_emulator/profile`: replaces the W&B profile (JSON as `GET` returns it; API key
/// required), so a harness in another process can measure with it on and off against one
/// seeded emulator. Budget windows start over.
async fn profile_set(
    State(state): State<Arc<HttpState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response<Body> {
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if !state.app.authorized(auth) {
        return error_response(StatusCode::UNAUTHORIZED, "API key required");
    }
    match serde_json::from_slice::<crate::profile::WandbProfile>(&body) {
        Ok(profile) => {
            *state.app.profile.write() = profile;
            state.app.budgets.reset();
            Response::new(Body::from("{}"))
        }
        Err(e) => error_response(StatusCode::BAD_REQUEST, &format!("not a profile: {e}")),
    }
}

/// `GET /_emulator/counters`: requests served since start (or the last in-process reset), by
/// GraphQL operation and by route kind (JSON; API key required). Every request is counted when
/// it arrives, so a snapshot taken after a client exits holds all of its requests: a harness
/// in another process diffs two snapshots instead of waiting for a log.
async fn counters_get(State(state): State<Arc<HttpState>>, headers: HeaderMap) -> Response<Body> {
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if !state.app.authorized(auth) {
        return error_response(StatusCode::UNAUTHORIZED, "API key required");
    }
    match serde_json::to_string(&state.app.log.counters()) {
        Ok(json) => Response::new(Body::from(json)),
        Err(e) => error_response(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

fn main_router(state: Arc<HttpState>) -> Router {
    Router::new()
        .route(
            "/graphql",
            post(graphql::handle).layer(DefaultBodyLimit::max(64 << 20)),
        )
        .route(
            "/files/{*rest}",
            any(files::files_route).layer(DefaultBodyLimit::max(256 << 20)),
        )
        .route(
            "/_upload/{*rest}",
            put(files::upload).layer(DefaultBodyLimit::disable()),
        )
        .route("/sdk/otel/{*rest}", any(|| async { StatusCode::OK }))
        .route(
            "/_emulator/profile",
            axum::routing::get(profile_get).post(profile_set),
        )
        .route("/_emulator/counters", axum::routing::get(counters_get))
        .merge(crate::artifacts::http::routes())
        .fallback(|| async { error_response(StatusCode::NOT_FOUND, "not found") })
        .with_state(state)
}

fn direct_router(state: Arc<HttpState>) -> Router {
    Router::new()
        .route("/blob/{*rest}", any(files::signed_blob))
        .fallback(|| async { error_response(StatusCode::NOT_FOUND, "not found") })
        .with_state(state)
}

/// Accepts connections until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    which: Listener,
    state: Arc<HttpState>,
    mut shutdown: watch::Receiver<bool>,
) {
    let router = match which {
        Listener::Main => main_router(Arc::clone(&state)),
        Listener::Direct => direct_router(Arc::clone(&state)),
    };
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _peer)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                tokio::spawn(connection(stream, router.clone(), Arc::clone(&state), which, shutdown.clone()));
            }
            _ = shutdown.changed() => break,
        }
    }
}

async fn connection(
    stream: tokio::net::TcpStream,
    router: Router,
    state: Arc<HttpState>,
    which: Listener,
    mut shutdown: watch::Receiver<bool>,
) {
    // A duplicate of the socket lets the reset fault set SO_LINGER=0 after hyper owns the
    // stream: the last close then sends an RST instead of a FIN.
    let Ok(std_stream) = stream.into_std() else {
        return;
    };
    let dup = std_stream.try_clone().ok();
    let Ok(stream) = tokio::net::TcpStream::from_std(std_stream) else {
        return;
    };
    let kill = Arc::new(Notify::new());
    let kill_for_service = Arc::clone(&kill);
    let service = hyper::service::service_fn(move |req| {
        handle(
            req,
            router.clone(),
            Arc::clone(&state),
            which,
            Arc::clone(&kill_for_service),
        )
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service);
    let mut conn = pin!(conn);
    tokio::select! {
        _ = &mut conn => return,
        _ = shutdown.changed() => return,
        _ = kill.notified() => {}
    }
    if let Some(dup) = &dup {
        let _ = socket2::SockRef::from(dup).set_linger(Some(std::time::Duration::ZERO));
    }
    // Dropping the connection (then the duplicate) closes the socket with an RST.
}

async fn handle(
    mut req: Request<Incoming>,
    router: Router,
    state: Arc<HttpState>,
    which: Listener,
    kill: Arc<Notify>,
) -> Result<Response<CountingBody>, Infallible> {
    let app = &state.app;
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let kind = classify(which, &method, &path);
    let auth_present = req.headers().contains_key(header::AUTHORIZATION);
    let rec = app
        .log
        .start(which, kind, method.as_str(), &path, auth_present);
    let decision = app.faults.decide(kind);
    if let Some(delay) = decision.delay {
        tokio::time::sleep(delay).await;
    }
    let mut truncate = false;
    let early = match &decision.action {
        Some(FaultAction::Reset) => {
            rec.set_fault("reset");
            tracing::debug!(%method, %path, "fault: connection reset");
            kill.notify_one();
            std::future::pending::<()>().await;
            None
        }
        Some(FaultAction::RateLimit(retry_after)) => {
            rec.set_fault("rate_limit");
            let mut resp = error_response(StatusCode::TOO_MANY_REQUESTS, "rate limit exceeded");
            if let Ok(v) = HeaderValue::from_str(retry_after) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
            Some(resp)
        }
        Some(FaultAction::Status(status)) => {
            rec.set_fault("error_burst");
            let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            Some(error_response(status, "injected server error"))
        }
        Some(FaultAction::Truncate) => {
            rec.set_fault("truncate");
            truncate = true;
            None
        }
        None => None,
    };
    let resp = match early {
        Some(resp) => resp,
        None => {
            req.extensions_mut().insert(Arc::clone(&rec));
            match router.oneshot(req).await {
                Ok(resp) => resp,
                Err(never) => match never {},
            }
        }
    };
    rec.set_status(resp.status().as_u16());
    tracing::debug!(
        listener = ?which,
        %method,
        %path,
        status = resp.status().as_u16(),
        "request"
    );
    let (parts, body) = resp.into_parts();
    let limit = if truncate {
        let len = body.size_hint().exact().or_else(|| {
            parts
                .headers
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok()?.parse().ok())
        });
        Some(len.unwrap_or(0) / 2)
    } else {
        None
    };
    Ok(Response::from_parts(
        parts,
        CountingBody {
            inner: body,
            rec,
            remaining: limit,
            cut: None,
        },
    ))
}

/// A response body that counts the bytes it yields into the request log and, for the truncate
/// fault, stops after `remaining` bytes with an error (hyper then closes the connection). The
/// error is delayed briefly so the head and the partial body reach the client first.
pub struct CountingBody {
    inner: Body,
    rec: Arc<LiveRecord>,
    remaining: Option<u64>,
    cut: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl CountingBody {
    fn truncated(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let sleep = self.cut.get_or_insert_with(|| {
            Box::pin(tokio::time::sleep(std::time::Duration::from_millis(100)))
        });
        match sleep.as_mut().poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(()) => Poll::Ready(Some(Err(axum::Error::new(std::io::Error::other(
                "truncated by fault injection",
            ))))),
        }
    }
}

impl HttpBody for CountingBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if this.remaining == Some(0) {
            return this.truncated(cx);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let frame = match (frame.into_data(), this.remaining.as_mut()) {
                    (Ok(mut data), Some(remaining)) => {
                        if data.len() as u64 > *remaining {
                            data.truncate(*remaining as usize);
                        }
                        *remaining -= data.len() as u64;
                        this.rec.add_bytes(data.len() as u64);
                        Frame::data(data)
                    }
                    (Ok(data), None) => {
                        this.rec.add_bytes(data.len() as u64);
                        Frame::data(data)
                    }
                    (Err(frame), _) => frame,
                };
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(None) if this.remaining.is_some_and(|r| r > 0) => {
                this.remaining = Some(0);
                this.truncated(cx)
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.remaining != Some(0) && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
