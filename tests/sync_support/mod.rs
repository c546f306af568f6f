//! Shared helpers for the sync tests: clients with fast retries, throwaway mirrors, a recording
//! proxy that shows the GraphQL variables the client sends, the real SDK in a sandbox, and the
//! "mirror equals the emulator" check.

#![allow(dead_code)]

mod truth;

#[allow(unused_imports)] // Not every test binary checks the mirror against the emulator.
pub use truth::*;

use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use secrecy::SecretString;
use wandb_emulator::Emulator;
use wandbfs::client::{
    Client, ClientConfig, Environment, Overrides, RateLimitConfig, RetryConfig, settings,
};
use wandbfs::mirror::Mirror;
use wandbfs::mirror::testing::{TestDatabase, fresh_database};
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
