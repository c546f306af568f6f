//! Artifact HTTP: signed uploads (through the shared `/_upload/<kind>/…` route) and the
//! authenticated download routes.
//!
//! Uploads (unauthenticated, signed; the shared handler stores the body, then calls
//! [`ArtifactUploads`]):
//! - `PUT /_upload/artifact/file/<artifact>/<path…>`: a file's bytes (their MD5 must match what
//!   `createArtifactFiles` announced);
//! - `PUT /_upload/artifact/manifest/<artifact>`: the manifest JSON;
//! - `PUT /_upload/artifact/part/<upload id>/<n>`: one part of a multipart upload (the
//!   response's `ETag` is the part's MD5, which the client echoes when completing).
//!
//! Downloads on the API listener (Basic/Bearer auth), the SDK's fallback when an entry has no
//! signed URL (PROTOCOL.md §6.3 step 4):
//! - `GET|HEAD /artifactsV2/<region>/<entity>/<project>/<collection>/[<artifact id>/]<birth id>/
//!   <hex md5>/<name>` (the artifact id segment appears when the server advertises
//!   `ARTIFACT_V2_DOWNLOAD_HANDLER_SUPPORTS_ARTIFACT_ID`);
//! - `GET|HEAD /artifacts/<entity>/<hex md5>` (storage layout V1).
//!
//! Signed `directUrl` downloads of artifact files and manifests use the shared blob route on the
//! direct listener (`/blob/<key>/<name>`), like run files.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Method, Response, StatusCode, Uri, header};
use axum::routing::any;

use super::ArtifactsExt as _;
use super::manifest::hex_md5_to_b64;
use crate::app::{AppState, UploadSink, decode_segment};
use crate::blobs::Blob;
use crate::http::{HttpState, error_response, serve_blob};

/// Records artifact uploads (registered for the `artifact` upload kind).
#[derive(Debug, Default)]
pub struct ArtifactUploads;

impl UploadSink for ArtifactUploads {
    fn uploaded(&self, app: &AppState, segments: &[String], blob: Arc<Blob>) -> Result<(), String> {
        let num = |s: &String| {
            s.parse::<u64>()
                .map_err(|_| format!("bad artifact number {s:?}"))
        };
        match segments {
            [kind, artifact, path @ ..] if kind == "file" && !path.is_empty() => app
                .artifacts()
                .world
                .write()
                .record_upload(num(artifact)?, &path.join("/"), &blob)
                .map_err(|e| e.to_string()),
            [kind, artifact] if kind == "manifest" => app
                .artifacts()
                .world
                .write()
                .record_manifest_upload(num(artifact)?, &blob, app.now())
                .map_err(|e| e.to_string()),
            [kind, upload_id, part] if kind == "part" => {
                let n: u32 = part
                    .parse()
                    .map_err(|_| format!("bad part number {part:?}"))?;
                let store = app.artifacts();
                let mut uploads = store.multipart.lock();
                let upload = uploads
                    .get_mut(upload_id)
                    .ok_or_else(|| format!("unknown multipart upload {upload_id:?}"))?;
                match upload.expected.get(&n) {
                    None => return Err(format!("part {n} was not announced")),
                    Some(expected) if *expected != blob.md5_hex() => {
                        return Err(format!(
                            "part {n} has MD5 {}, the client announced {expected}",
                            blob.md5_hex()
                        ));
                    }
                    Some(_) => {}
                }
                upload.parts.insert(n, blob.key().to_string());
                Ok(())
            }
            _ => Err("unknown artifact upload target".into()),
        }
    }
}

/// The authenticated download routes (merged into the API listener's router).
pub fn routes() -> Router<Arc<HttpState>> {
    Router::new()
        .route("/artifactsV2/{*rest}", any(download_v2))
        .route("/artifacts/{*rest}", any(download_v1))
}

fn segments(tail: &str) -> Option<Vec<String>> {
    tail.split('/').map(decode_segment).collect()
}

/// Checks credentials and method; `Some` is the refusal to send.
fn refusal(app: &AppState, method: &Method, headers: &HeaderMap) -> Option<Response<Body>> {
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if !app.authorized(auth) {
        return Some(error_response(
            StatusCode::UNAUTHORIZED,
            "user is not logged in: invalid or missing API key",
        ));
    }
    if method != Method::GET && method != Method::HEAD {
        return Some(error_response(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed",
        ));
    }
    None
}

/// `/artifactsV2/<region>/<entity>/<project>/<collection>/[<artifact id>/]<birth id>/<md5>/<name>`.
pub async fn download_v2(
    State(state): State<Arc<HttpState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response<Body> {
    let app = &state.app;
    if let Some(resp) = refusal(app, &method, &headers) {
        return resp;
    }
    let tail = uri.path().strip_prefix("/artifactsV2/").unwrap_or("");
    let Some(parts) = segments(tail).filter(|p| p.len() == 7 || p.len() == 8) else {
        return error_response(StatusCode::NOT_FOUND, "not found");
    };
    let (entity, project, collection) = (&parts[1], &parts[2], &parts[3]);
    let (hex, name) = (&parts[parts.len() - 2], &parts[parts.len() - 1]);
    let key = hex_md5_to_b64(hex).and_then(|b64| {
        let store = app.artifacts();
        let w = store.world.read();
        w.sequence(entity, project, collection)?
            .stored
            .get(&b64)
            .map(|c| c.blob.clone())
    });
    match key.and_then(|k| app.blobs.get(&k)) {
        Some(blob) => serve_blob(&blob, None, name, &method, &headers),
        None => error_response(
            StatusCode::NOT_FOUND,
            &format!("no content {hex} in artifact {entity}/{project}/{collection}"),
        ),
    }
}

/// `/artifacts/<entity>/<md5>` (storage layout V1).
pub async fn download_v1(
    State(state): State<Arc<HttpState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response<Body> {
    let app = &state.app;
    if let Some(resp) = refusal(app, &method, &headers) {
        return resp;
    }
    let tail = uri.path().strip_prefix("/artifacts/").unwrap_or("");
    let Some(parts) = segments(tail).filter(|p| p.len() == 2) else {
        return error_response(StatusCode::NOT_FOUND, "not found");
    };
    let (entity, hex) = (&parts[0], &parts[1]);
    let key = hex_md5_to_b64(hex).and_then(|b64| {
        let store = app.artifacts();
        let w = store.world.read();
        w.projects
            .values()
            .filter(|p| &p.entity == entity)
            .flat_map(|p| p.sequences.values())
            .find_map(|s| s.stored.get(&b64).map(|c| c.blob.clone()))
    });
    match key.and_then(|k| app.blobs.get(&k)) {
        Some(blob) => serve_blob(&blob, None, hex, &method, &headers),
        None => error_response(
            StatusCode::NOT_FOUND,
            &format!("no artifact content {hex} in {entity}"),
        ),
    }
}
