//! Shared helpers for the sync tests: clients with fast retries, throwaway mirrors, a recording
//! proxy that shows the GraphQL variables the client sends, the real SDK in a sandbox, and the
//! "mirror equals the emulator" check.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use secrecy::SecretString;
use wandb_emulator::{Emulator, RunKey};
use wandbfs::client::{
    Client, ClientConfig, Environment, Overrides, RateLimitConfig, RetryConfig, settings,
};
use wandbfs::mirror::testing::{TestDatabase, fresh_database};
use wandbfs::mirror::{Document, Mirror, Stream};
use wandbfs::sync::{SyncEngine, SyncOptions, SyncReport, SyncTarget};

/// Retries fast enough for tests, bounded like production.
pub fn client_config() -> ClientConfig {
    ClientConfig {
        retry: RetryConfig {
            max_attempts: 4,
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(50),
            max_retry_after: Duration::from_millis(500),
            total_timeout: Duration::from_secs(30),
        },
        rate: RateLimitConfig {
            requests_per_second: 0.0,
            burst: 1,
            honour_server_headers: true,
        },
        ..ClientConfig::default()
    }
}

/// A client for the API at `base_url` with `key`.
pub fn client_at(base_url: &str, key: &str) -> Client {
    let overrides = Overrides {
        base_url: Some(base_url.to_owned()),
        api_key: Some(SecretString::from(key.to_owned())),
        ..Overrides::default()
    };
    let settings = settings::resolve(&overrides, &Environment::isolated()).expect("settings");
    Client::new(settings, client_config()).expect("client")
}

/// A client for `emu`.
pub fn client(emu: &Emulator) -> Client {
    client_at(emu.base_url(), &emu.api_key())
}

/// A fresh migrated database in the test binary's throwaway cluster.
pub async fn database() -> TestDatabase {
    fresh_database().await.expect("throwaway Postgres")
}

/// An engine over `client` and `mirror`.
pub fn engine(client: Client, mirror: &Mirror, options: SyncOptions) -> SyncEngine {
    SyncEngine::new(client, mirror.clone(), options)
}

/// Syncs and fails the test on a fatal error.
pub async fn sync(engine: &SyncEngine, target: &str) -> SyncReport {
    let target: SyncTarget = target.parse().expect("target");
    engine.sync(&[target]).await.expect("sync")
}

/// `history.jsonl` as the emulator would have it: its rows, one per line.
pub fn expected_jsonl(rows: &[String]) -> Vec<u8> {
    let mut out = Vec::new();
    for row in rows {
        out.extend_from_slice(row.as_bytes());
        out.push(b'\n');
    }
    out
}

/// A whole stream of a mirrored run.
pub async fn mirror_stream(mirror: &Mirror, key: &RunKey, stream: Stream) -> Vec<u8> {
    let run = mirror
        .resolve_run(&key.entity, &key.project, &key.name)
        .await
        .expect("resolve")
        .unwrap_or_else(|| panic!("{key} is not in the mirror"));
    let len = mirror.stream_len(run, stream).await.expect("length");
    mirror
        .read_stream(run, stream, 0, usize::try_from(len).expect("fits"))
        .await
        .expect("read")
        .to_vec()
}

/// Asserts that the mirror holds exactly what the emulator serves for every run of the
/// project: run fields, config and summary text, every history row (as SQL rows and as
/// `history.jsonl` bytes, no duplicates), system events and file listings. Returns the number
/// of history rows compared.
pub async fn assert_mirror_matches(
    emu: &Emulator,
    db: &TestDatabase,
    entity: &str,
    project: &str,
) -> u64 {
    assert_mirror_matches_except(emu, db, entity, project, &[]).await
}

/// [`assert_mirror_matches`] for every run but those named in `except` (they must still be in
/// the mirror, not deleted).
pub async fn assert_mirror_matches_except(
    emu: &Emulator,
    db: &TestDatabase,
    entity: &str,
    project: &str,
    except: &[&str],
) -> u64 {
    let mirror = &db.mirror;
    let sql = db.raw_client().await.expect("sql client");
    let keys = emu.runs(entity, project);
    let mut rows_compared = 0u64;
    for key in &keys {
        if except.contains(&key.name.as_str()) {
            continue;
        }
        let info = emu.run_info(key).expect("run info");
        let run = mirror
            .resolve_run(entity, project, &key.name)
            .await
            .expect("resolve")
            .unwrap_or_else(|| panic!("{key} missing from the mirror"));
        let meta = mirror.run_metadata(run).await.expect("metadata");
        assert!(!meta.deleted, "{key} marked deleted");
        assert_eq!(
            meta.state.as_deref(),
            Some(info.state.as_str()),
            "{key} state"
        );
        assert_eq!(meta.tags, info.tags, "{key} tags");
        assert_eq!(meta.notes, info.notes, "{key} notes");
        assert_eq!(meta.display_name, info.display_name, "{key} display name");
        assert_eq!(
            meta.history_line_count,
            Some(info.history_line_count as i64),
            "{key} lines"
        );
        assert_eq!(meta.last_step, info.last_step, "{key} last step");
        let config = mirror
            .read_document(run, Document::Config)
            .await
            .expect("config");
        assert_eq!(
            config.as_deref(),
            Some(info.config.as_bytes()),
            "{key} config text"
        );
        let summary = mirror
            .read_document(run, Document::Summary)
            .await
            .expect("summary");
        assert_eq!(
            summary.as_deref(),
            Some(info.summary.as_bytes()),
            "{key} summary text"
        );

        let rows = emu.history_rows(key).expect("rows");
        let jsonl = mirror_stream(mirror, key, Stream::History).await;
        assert!(
            jsonl == expected_jsonl(&rows),
            "{key}: history.jsonl differs ({} bytes mirrored, {} expected)",
            jsonl.len(),
            expected_jsonl(&rows).len()
        );
        let steps: Vec<i64> = sql
            .query(
                "SELECT step FROM wandb.history WHERE run_pk = $1 ORDER BY step",
                &[&run.0],
            )
            .await
            .expect("history rows")
            .iter()
            .map(|r| r.get(0))
            .collect();
        let expected_steps: Vec<i64> = rows
            .iter()
            .map(|r| wandbfs::sync::history::step_of(r).expect("step"))
            .collect();
        assert_eq!(steps, expected_steps, "{key}: SQL history steps");
        let state = mirror.run_sync_state(run).await.expect("sync state");
        assert_eq!(state.history_rows, rows.len() as u64, "{key}: row count");
        assert_eq!(state.history_bytes, jsonl.len() as u64, "{key}: byte count");
        rows_compared += rows.len() as u64;

        let events = emu.events_rows(key).expect("events");
        let system = mirror_stream(mirror, key, Stream::System).await;
        assert!(
            system == expected_jsonl(&events),
            "{key}: system.jsonl differs"
        );

        let mut files: Vec<(String, u64)> =
            info.files.iter().map(|(n, s, _)| (n.clone(), *s)).collect();
        files.sort();
        let mirrored: Vec<(String, u64)> = mirror
            .list_run_files(run)
            .await
            .expect("files")
            .into_iter()
            .map(|f| (f.name, f.size_bytes.unwrap_or(-1) as u64))
            .collect();
        assert_eq!(mirrored, files, "{key}: file listing");
    }
    let live: i64 = sql
        .query_one(
            "SELECT count(*) FROM wandb.runs r JOIN wandb.projects p USING (project_pk)
             WHERE p.entity = $1 AND p.name = $2 AND NOT r.deleted",
            &[&entity, &project],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(live, keys.len() as i64, "live runs in the mirror");
    rows_compared
}

/// One GraphQL request seen by the [`RecordingProxy`].
#[derive(Clone, Debug)]
pub struct Seen {
    /// `operationName`.
    pub operation: String,
    /// `variables`.
    pub variables: serde_json::Value,
}

/// A pass-through HTTP proxy in front of the emulator that records every GraphQL request's
/// operation and variables (the emulator's own log keeps operations, not variables).
pub struct RecordingProxy {
    pub base_url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for RecordingProxy {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl RecordingProxy {
    /// Starts a proxy forwarding to `upstream` (on its own runtime, so it works from any test).
    pub fn start(upstream: &str) -> RecordingProxy {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        std_listener.set_nonblocking(true).expect("nonblocking");
        let base_url = format!("http://{}", std_listener.local_addr().expect("addr"));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let state = ProxyState {
            upstream: upstream.trim_end_matches('/').to_owned(),
            http: reqwest::Client::new(),
            seen: Arc::clone(&seen),
        };
        let app = axum::Router::new()
            .fallback(forward)
            .with_state(Arc::new(state));
        runtime.spawn(async move {
            if let Ok(listener) = tokio::net::TcpListener::from_std(std_listener) {
                let _ = axum::serve(listener, app).await;
            }
        });
        RecordingProxy {
            base_url,
            seen,
            runtime: Some(runtime),
        }
    }

    /// Every request seen so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Forgets what was seen.
    pub fn clear(&self) {
        self.seen.lock().unwrap().clear();
    }
}

struct ProxyState {
    upstream: String,
    http: reqwest::Client,
    seen: Arc<Mutex<Vec<Seen>>>,
}

async fn forward(
    axum::extract::State(state): axum::extract::State<Arc<ProxyState>>,
    request: axum::extract::Request,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, usize::MAX).await else {
        return (axum::http::StatusCode::BAD_REQUEST, "body").into_response();
    };
    if parts.uri.path().ends_with("/graphql")
        && let Ok(json) = serde_json::from_slice::<serde_json::Value>(&body)
    {
        state.seen.lock().unwrap().push(Seen {
            operation: json["operationName"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            variables: json["variables"].clone(),
        });
    }
    let url = format!(
        "{}{}",
        state.upstream,
        parts.uri.path_and_query().map_or("/", |p| p.as_str())
    );
    let mut upstream = state.http.request(parts.method.clone(), url).body(body);
    for (name, value) in &parts.headers {
        if name != axum::http::header::HOST && name != axum::http::header::CONTENT_LENGTH {
            upstream = upstream.header(name.as_str(), value.as_bytes());
        }
    }
    match upstream.send().await {
        Ok(resp) => {
            let status = resp.status().as_u16();
            let mut builder = axum::http::Response::builder().status(status);
            for (name, value) in resp.headers() {
                let n = name.as_str();
                if n != "content-length" && n != "transfer-encoding" && n != "connection" {
                    builder = builder.header(n, value.as_bytes());
                }
            }
            let bytes = resp.bytes().await.unwrap_or_default();
            builder
                .body(axum::body::Body::from(bytes))
                .unwrap_or_else(|_| axum::http::StatusCode::BAD_GATEWAY.into_response())
        }
        Err(_) => axum::http::StatusCode::BAD_GATEWAY.into_response(),
    }
}

/// The Python interpreter with `wandb==0.31.0`: `$WANDBFS_PYTHON`, else
/// `<repo>/.venv/bin/python`. Panics (the test fails, never skips) when it is missing.
pub fn python() -> PathBuf {
    let path = std::env::var_os("WANDBFS_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python"));
    assert!(
        path.exists(),
        "the wandb SDK's Python is missing at {} — set WANDBFS_PYTHON or create the venv: \
         python3 -m venv .venv && .venv/bin/pip install -r integration/requirements.txt",
        path.display()
    );
    path
}

/// Runs a Python `script` with the real SDK pointed at `emu`, in an isolated HOME; panics with
/// the output unless it exits 0. Returns stdout.
pub fn run_sdk(
    emu: &Emulator,
    dir: &std::path::Path,
    script: &str,
    env: &[(&str, &str)],
) -> String {
    for sub in ["home", "config", "cache", "work"] {
        std::fs::create_dir_all(dir.join(sub)).expect("mkdir");
    }
    let mut cmd = Command::new(python());
    cmd.arg("-c")
        .arg(script)
        .current_dir(dir.join("work"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", dir.join("home"))
        .env("WANDB_DIR", dir.join("work"))
        .env("WANDB_CONFIG_DIR", dir.join("config"))
        .env("WANDB_CACHE_DIR", dir.join("cache"))
        .env("WANDB_DATA_DIR", dir.join("cache"))
        .env("WANDB_BASE_URL", emu.base_url())
        .env("WANDB_API_KEY", emu.api_key())
        .env("WANDB_SILENT", "true")
        .env("EMU_ENTITY", emu.entity());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "SDK script failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}
