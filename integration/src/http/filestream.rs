//! `POST /files/<entity>/<project>/<run>/file_stream`: history, events, summary and console
//! lines by offset; `uploaded`; `complete` + `exitcode`; heartbeats (PROTOCOL §9.3).

use std::collections::BTreeMap;

use axum::body::Body;
use axum::http::{HeaderValue, Response, StatusCode, header};
use serde::Deserialize;

use super::error_response;
use crate::app::AppState;
use crate::state::{JsonText, RunKey};

#[derive(Debug, Deserialize)]
struct Chunk {
    #[serde(default)]
    offset: u64,
    #[serde(default)]
    content: Vec<String>,
}

#[derive(Debug, Deserialize, Default)]
struct FileStreamRequest {
    #[serde(default)]
    files: BTreeMap<String, Chunk>,
    #[serde(default)]
    uploaded: Vec<String>,
    #[serde(default)]
    complete: Option<bool>,
    #[serde(default)]
    exitcode: Option<i64>,
    #[serde(default)]
    preempting: Option<bool>,
}

const TERMINAL: [&str; 5] = ["finished", "failed", "crashed", "killed", "preempted"];

/// Applies one file_stream request.
pub fn handle(app: &AppState, key: RunKey, body: &[u8]) -> Response<Body> {
    let req: FileStreamRequest = if body.iter().all(u8::is_ascii_whitespace) {
        FileStreamRequest::default()
    } else {
        match serde_json::from_slice(body) {
            Ok(r) => r,
            Err(e) => {
                return error_response(
                    StatusCode::BAD_REQUEST,
                    &format!("invalid file_stream body: {e}"),
                );
            }
        }
    };
    let Some(run) = app.run(&key.entity, &key.project, &key.name) else {
        return error_response(StatusCode::NOT_FOUND, &format!("run {key} not found"));
    };
    let now = app.now();
    let stopped = {
        let mut rec = run.record.write();
        rec.heartbeat(now);
        let mut wrote = false;
        for (name, chunk) in req.files {
            if chunk.content.is_empty() {
                continue;
            }
            wrote = true;
            match name.as_str() {
                "wandb-history.jsonl" => {
                    for (i, line) in chunk.content.into_iter().enumerate() {
                        rec.history.write_line(chunk.offset + i as u64, line);
                    }
                }
                "wandb-events.jsonl" => {
                    let last = chunk.content.last().cloned();
                    for (i, line) in chunk.content.into_iter().enumerate() {
                        rec.events.write_line(chunk.offset + i as u64, line);
                    }
                    if let Some(last) = last {
                        rec.system_metrics = JsonText::new(last);
                    }
                }
                "wandb-summary.json" => {
                    if let Some(last) = chunk.content.into_iter().last() {
                        rec.summary = JsonText::new(last);
                    }
                }
                "output.log" => {
                    for (i, line) in chunk.content.into_iter().enumerate() {
                        rec.write_console_line(chunk.offset as usize + i, line);
                    }
                }
                other => tracing::debug!(file = other, "file_stream: ignoring unknown stream"),
            }
        }
        // New data on a finished run means it was resumed.
        if wrote && TERMINAL.contains(&rec.state.as_str()) {
            rec.state = "running".into();
            rec.exitcode = None;
        }
        if req.preempting == Some(true) {
            rec.state = "preempting".into();
        }
        if req.complete == Some(true) {
            rec.exitcode = req.exitcode;
            rec.state = match req.exitcode {
                None | Some(0) => "finished".into(),
                Some(_) => "failed".into(),
            };
        }
        if wrote || req.complete.is_some() || req.preempting.is_some() || !req.uploaded.is_empty() {
            rec.touch(now);
        }
        rec.stopped
    };
    app.mark_dirty();
    let mut body = serde_json::json!({"exitcode": null, "limits": {}});
    if stopped {
        body["stopped"] = serde_json::Value::Bool(true);
    }
    let mut resp = Response::new(Body::from(body.to_string()));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}
