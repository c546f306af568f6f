//! Run-file routes: authenticated downloads (`File.url`) and file_stream under `/files/…`,
//! signed uploads (`PUT /_upload/run/…`), signed blob downloads on the direct listener
//! (`/blob/<key>/<name>`). Downloads support `HEAD` and single `Range`s.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, Response, StatusCode, Uri, header};
use bytes::Bytes;

use super::range::{RangeSpec, parse_range};
use super::{HttpState, error_response, filestream};
use crate::app::{AppState, decode_segment};
use crate::blobs::{Blob, BlobSpec};
use crate::signing::SignatureError;
use crate::state::{RunFile, RunKey};

/// Splits a raw path tail into decoded segments.
fn segments(tail: &str) -> Option<Vec<String>> {
    tail.split('/').map(decode_segment).collect()
}

fn authorized(app: &AppState, headers: &HeaderMap) -> bool {
    app.authorized(
        headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok()),
    )
}

/// `/files/<e>/<p>/<r>/file_stream` (POST) and `/files/<e>/<p>/<r>/<name…>` (GET/HEAD).
pub async fn files_route(
    State(state): State<Arc<HttpState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response<Body> {
    let app = &state.app;
    if !authorized(app, &headers) {
        return error_response(
            StatusCode::UNAUTHORIZED,
            "user is not logged in: invalid or missing API key",
        );
    }
    let tail = uri.path().strip_prefix("/files/").unwrap_or("");
    let Some(parts) = segments(tail) else {
        return error_response(StatusCode::BAD_REQUEST, "path is not valid UTF-8");
    };
    if parts.len() < 4 {
        return error_response(StatusCode::NOT_FOUND, "not found");
    }
    let key = RunKey::new(&parts[0], &parts[1], &parts[2]);
    let name = parts[3..].join("/");
    if method == Method::POST && name == "file_stream" {
        return filestream::handle(app, key, &body);
    }
    if method != Method::GET && method != Method::HEAD {
        return error_response(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
    }
    let Some(run) = app.run(&key.entity, &key.project, &key.name) else {
        return error_response(StatusCode::NOT_FOUND, &format!("run {key} not found"));
    };
    let Some((file, blob)) = app.run_file_blob(&run, &name) else {
        return error_response(
            StatusCode::NOT_FOUND,
            &format!("file {name} not found in run {key}"),
        );
    };
    serve_blob(&blob, Some(&file), &name, &method, &headers)
}

/// `PUT /_upload/<kind>/<rest…>?exp&sig`: stores the bytes, then records them — as a run file
/// for `run/<e>/<p>/<r>/<name…>`, else through the [`crate::app::UploadSink`] registered for
/// `kind`.
pub async fn upload(State(state): State<Arc<HttpState>>, uri: Uri, body: Bytes) -> Response<Body> {
    let app = &state.app;
    if let Err(e) = app
        .signer
        .verify(uri.path(), uri.query(), app.clock.now_secs())
    {
        return signature_error(e);
    }
    let tail = uri.path().strip_prefix("/_upload/").unwrap_or("");
    let Some(parts) = segments(tail).filter(|p| p.len() >= 2) else {
        return error_response(StatusCode::NOT_FOUND, "unknown upload target");
    };
    let (kind, rest) = (parts[0].as_str(), &parts[1..]);
    let sink = app.upload_sinks.read().get(kind).cloned();
    if kind != "run" && sink.is_none() {
        return error_response(StatusCode::NOT_FOUND, "unknown upload target");
    }
    let run = if kind == "run" {
        if rest.len() < 4 {
            return error_response(StatusCode::NOT_FOUND, "unknown upload target");
        }
        let key = RunKey::new(&rest[0], &rest[1], &rest[2]);
        match app.run(&key.entity, &key.project, &key.name) {
            Some(run) => Some(run),
            None => return error_response(StatusCode::NOT_FOUND, &format!("run {key} not found")),
        }
    } else {
        None
    };
    let blob = match app.blobs.put_bytes(body) {
        Ok(b) => b,
        Err(e) => {
            tracing::error!("storing upload failed: {e}");
            return error_response(StatusCode::INSUFFICIENT_STORAGE, "cannot store upload");
        }
    };
    if let Some(sink) = sink.filter(|_| kind != "run") {
        // Like S3, answer the body's MD5 as the ETag (multipart clients echo part ETags back).
        let etag = HeaderValue::from_str(&format!("\"{}\"", blob.md5_hex()));
        if let Err(message) = sink.uploaded(app, rest, blob) {
            return error_response(StatusCode::NOT_FOUND, &message);
        }
        app.mark_dirty();
        let mut resp = Response::new(Body::empty());
        if let Ok(etag) = etag {
            resp.headers_mut().insert(header::ETAG, etag);
        }
        return resp;
    }
    let Some(run) = run else {
        return error_response(StatusCode::NOT_FOUND, "unknown upload target");
    };
    let name = rest[3..].join("/");
    let now = app.now();
    {
        let mut rec = run.record.write();
        let mimetype = mime_guess::from_path(&name)
            .first_or_octet_stream()
            .to_string();
        rec.files.insert(
            name.clone(),
            RunFile {
                name,
                blob: blob.key().to_string(),
                size: blob.len(),
                mimetype,
                updated_at: now,
            },
        );
        rec.touch(now);
    }
    app.mark_dirty();
    Response::new(Body::empty())
}

/// `GET|HEAD /blob/<key>/<name>?exp&sig` on the direct listener (no credentials needed).
pub async fn signed_blob(
    State(state): State<Arc<HttpState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response<Body> {
    let app = &state.app;
    if method != Method::GET && method != Method::HEAD {
        return error_response(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
    }
    if let Err(e) = app
        .signer
        .verify(uri.path(), uri.query(), app.clock.now_secs())
    {
        return signature_error(e);
    }
    let tail = uri.path().strip_prefix("/blob/").unwrap_or("");
    let Some(parts) = segments(tail).filter(|p| !p.is_empty()) else {
        return error_response(StatusCode::NOT_FOUND, "not found");
    };
    let Some(blob) = app.blobs.get(&parts[0]) else {
        return error_response(StatusCode::NOT_FOUND, "blob not found");
    };
    let name = parts.get(1).cloned().unwrap_or_else(|| parts[0].clone());
    serve_blob(&blob, None, &name, &method, &headers)
}

fn signature_error(e: SignatureError) -> Response<Body> {
    let message = match e {
        SignatureError::Expired => "signed URL expired",
        SignatureError::Invalid => "invalid signature",
    };
    let mut resp = Response::new(Body::from(format!(
        "<?xml version='1.0' encoding='UTF-8'?><Error><Code>AccessDenied</Code><Message>{message}</Message></Error>"
    )));
    *resp.status_mut() = StatusCode::FORBIDDEN;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/xml"),
    );
    resp
}

/// The entity tag of a blob: its MD5 when known (stored blobs), else its generator key (no
/// hashing of a 1 GiB generated file just to answer a `HEAD`).
fn etag(blob: &Blob) -> String {
    match blob.spec() {
        BlobSpec::Stored => format!("\"{}\"", blob.md5_hex()),
        BlobSpec::Generated { .. } if blob.md5_is_cached() => format!("\"{}\"", blob.md5_hex()),
        BlobSpec::Generated { .. } => format!("\"{}\"", blob.key()),
    }
}

/// Serves a blob with `ETag`, `Content-Length`, `Accept-Ranges` and single-range support.
pub fn serve_blob(
    blob: &Arc<Blob>,
    file: Option<&RunFile>,
    name: &str,
    method: &Method,
    headers: &HeaderMap,
) -> Response<Body> {
    let len = blob.len();
    let range = parse_range(
        headers.get(header::RANGE).and_then(|v| v.to_str().ok()),
        len,
    );
    let mut builder = Response::builder()
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::ETAG, etag(blob))
        .header(
            header::CONTENT_TYPE,
            file.map(|f| f.mimetype.clone()).unwrap_or_else(|| {
                mime_guess::from_path(name)
                    .first_or_octet_stream()
                    .to_string()
            }),
        );
    if let Some(t) = file.and_then(|f| chrono::DateTime::from_timestamp_micros(f.updated_at)) {
        builder = builder.header(
            header::LAST_MODIFIED,
            t.format("%a, %d %b %Y %H:%M:%S GMT").to_string(),
        );
    }
    let (status, start, end) = match range {
        RangeSpec::Full => (StatusCode::OK, 0, len),
        RangeSpec::Partial(s, e) => {
            builder = builder.header(header::CONTENT_RANGE, format!("bytes {s}-{}/{len}", e - 1));
            (StatusCode::PARTIAL_CONTENT, s, e)
        }
        RangeSpec::Unsatisfiable => {
            return builder
                .status(StatusCode::RANGE_NOT_SATISFIABLE)
                .header(header::CONTENT_RANGE, format!("bytes */{len}"))
                .body(Body::empty())
                .unwrap_or_else(|_| {
                    error_response(StatusCode::RANGE_NOT_SATISFIABLE, "range not satisfiable")
                });
        }
    };
    builder = builder
        .status(status)
        .header(header::CONTENT_LENGTH, end - start);
    let body = if *method == Method::HEAD {
        Body::empty()
    } else if end - start <= 1 << 20 {
        Body::from(blob.read_range(start, end))
    } else {
        Body::from_stream(blob.stream_range(start, end))
    };
    builder
        .body(body)
        .unwrap_or_else(|_| error_response(StatusCode::BAD_REQUEST, "cannot build response"))
}
