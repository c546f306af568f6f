//! `POST /graphql`: a plain bytes handler around the async-graphql executor.
//!
//! - `operationName: ""` (sent by every Python-issued query) is treated as absent;
//! - the operation name for counters comes from `operationName`, else from the document;
//! - `errors` with `data: null` → 400 (wandb-core does not retry 400s), never 5xx for
//!   deterministic errors; a poisoned run forces 502;
//! - list fields answered by splice sentinels are rendered into the serialised body.

use std::sync::Arc;

use async_graphql::parser::types::DocumentOperations;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use bytes::Bytes;

use super::{HttpState, error_response};
use crate::reqlog::LiveRecord;
use crate::schema::ResponseHints;
use crate::schema::splice::SpliceJobs;

fn operation_name(req: &mut async_graphql::Request) -> Option<String> {
    if let Some(name) = &req.operation_name {
        return Some(name.clone());
    }
    let doc = req.parsed_query().ok()?;
    match &doc.operations {
        DocumentOperations::Single(_) => None,
        DocumentOperations::Multiple(ops) => ops.keys().next().map(|n| n.to_string()),
    }
}

/// Puts the declared defaults of absent variables into the request. async-graphql 7.2.1 applies
/// defaults when resolving field arguments but not when it evaluates `@include(if: $v)` /
/// `@skip(if: $v)`: an absent `$includeAliases: Boolean = true` counted as false and dropped
/// `aliases` from every `ArtifactFragment` the SDK requests without sending the variable.
fn fill_variable_defaults(req: &mut async_graphql::Request) {
    let name = req.operation_name.clone();
    let Ok(doc) = req.parsed_query() else {
        return;
    };
    let operation = match (&doc.operations, name.as_deref()) {
        (DocumentOperations::Single(op), _) => Some(op),
        (DocumentOperations::Multiple(ops), Some(name)) => ops.get(name),
        (DocumentOperations::Multiple(ops), None) if ops.len() == 1 => ops.values().next(),
        _ => None,
    };
    let defaults: Vec<_> = operation
        .map(|op| {
            op.node
                .variable_definitions
                .iter()
                .filter_map(|def| {
                    let value = def.node.default_value.as_ref()?.node.clone();
                    Some((def.node.name.node.clone(), value))
                })
                .collect()
        })
        .unwrap_or_default();
    for (name, value) in defaults {
        req.variables.entry(name).or_insert(value);
    }
}

/// Handles one GraphQL request.
pub async fn handle(
    State(state): State<Arc<HttpState>>,
    record: Option<axum::Extension<Arc<LiveRecord>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response<Body> {
    let app = &state.app;
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if !app.authorized(auth) {
        return error_response(
            StatusCode::UNAUTHORIZED,
            "user is not logged in: invalid or missing API key",
        );
    }
    // The W&B profile (crate::profile): the key's budget, then the request's latency.
    let profile = app.profile.read().clone();
    let admission = app.budgets.admit(auth.unwrap_or(""), profile.rate_limit);
    if let Some(retry_after) = admission.refused {
        if let Some(axum::Extension(rec)) = &record {
            rec.set_fault("rate_limit");
        }
        let mut resp = Response::new(Body::from(r#"{"error":"rate limit exceeded"}"#));
        *resp.status_mut() = StatusCode::TOO_MANY_REQUESTS;
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
        rate_limit_headers(&mut resp, admission.headers);
        return resp;
    }
    if !profile.latency.is_zero() {
        tokio::time::sleep(profile.latency).await;
    }
    let mut req: async_graphql::Request = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                &format!("invalid GraphQL request body: {e}"),
            );
        }
    };
    if req.operation_name.as_deref() == Some("") {
        req.operation_name = None;
    }
    if let Some(axum::Extension(rec)) = &record {
        rec.set_operation(Some(operation_name(&mut req).unwrap_or_default()));
    }
    fill_variable_defaults(&mut req);
    let jobs = Arc::new(SpliceJobs::new(&app.splice_nonce));
    let hints = Arc::new(ResponseHints::default());
    let resp = state
        .schema
        .execute(req.data(Arc::clone(&jobs)).data(Arc::clone(&hints)))
        .await;
    let rows = if profile.max_rows.is_some() || !profile.row_cost.is_zero() {
        jobs.rows()
    } else {
        0
    };
    if let Some(max) = profile.max_rows
        && rows > max
    {
        if let Some(axum::Extension(rec)) = &record {
            rec.set_fault("too_heavy");
        }
        let mut resp = error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            "context deadline exceeded",
        );
        rate_limit_headers(&mut resp, admission.headers);
        return resp;
    }
    if rows > 0 && !profile.row_cost.is_zero() {
        tokio::time::sleep(profile.row_cost.mul_f64(rows as f64 / 1000.0)).await;
    }
    let status = match hints.forced_status() {
        Some(s) => StatusCode::from_u16(s).unwrap_or(StatusCode::BAD_GATEWAY),
        None if !resp.errors.is_empty() && resp.data == async_graphql::Value::Null => {
            StatusCode::BAD_REQUEST
        }
        None => StatusCode::OK,
    };
    if let Some(axum::Extension(rec)) = &record
        && status == StatusCode::BAD_GATEWAY
    {
        rec.set_fault("poisoned");
    }
    let body = match serde_json::to_vec(&resp) {
        Ok(b) => b,
        Err(e) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                &format!("cannot serialise response: {e}"),
            );
        }
    };
    let body = jobs.apply(body);
    let mut out = Response::new(Body::from(body));
    *out.status_mut() = status;
    out.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    rate_limit_headers(&mut out, admission.headers);
    out
}

/// `RateLimit-Limit`, `RateLimit-Remaining`, `RateLimit-Reset`, as W&B sends them.
fn rate_limit_headers(resp: &mut Response<Body>, values: Option<(u32, u32, u64)>) {
    if let Some((limit, remaining, reset)) = values {
        let headers = resp.headers_mut();
        headers.insert("RateLimit-Limit", HeaderValue::from(limit));
        headers.insert("RateLimit-Remaining", HeaderValue::from(remaining));
        headers.insert("RateLimit-Reset", HeaderValue::from(reset));
    }
}
