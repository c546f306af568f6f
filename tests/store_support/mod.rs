//! Shared helpers for the `WandbStore` tests: an emulator with seeded data, a store over it
//! with fast retries, the real SDK in an isolated sandbox, and small assertions.

#![allow(dead_code)]

use std::path::{Path as FsPath, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{GetOptions, ObjectMeta, ObjectStore, ObjectStoreExt};
use secrecy::SecretString;
use wandb_emulator::{Emulator, EmulatorConfig, RunKey, SeedSpec};
use wandbfs::client::{
    Client, ClientConfig, Environment, Overrides, RateLimitConfig, RetryConfig, settings,
};
use wandbfs::store::{WandbStore, WandbStoreBuilder};

/// A fixed, SDK-valid API key (`local-` + 40 characters).
pub const KEY: &str = "local-StoreTestKey0123456789abcdefghijklmnopqrstu";

/// The seeded project.
pub const PROJECT: &str = "seeded";

/// Retries fast enough for tests, bounded like production (5 attempts).
pub fn client_config() -> ClientConfig {
    ClientConfig {
        retry: RetryConfig {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(100),
            max_retry_after: Duration::from_secs(2),
            total_timeout: Duration::from_secs(60),
        },
        rate: RateLimitConfig {
            requests_per_second: 0.0,
            burst: 1,
            honour_server_headers: true,
        },
        ..ClientConfig::default()
    }
}

/// A client for `emu` authenticating with `key`.
pub fn client(emu: &Emulator, key: &str) -> Client {
    client_with(emu, key, client_config())
}

/// A client for `emu` with its own configuration.
pub fn client_with(emu: &Emulator, key: &str, config: ClientConfig) -> Client {
    let overrides = Overrides {
        base_url: Some(emu.base_url().to_owned()),
        api_key: Some(SecretString::from(key.to_owned())),
        ..Overrides::default()
    };
    let settings = settings::resolve(&overrides, &Environment::isolated()).expect("settings");
    Client::new(settings, config).expect("client")
}

/// A store builder over `emu` with the test key.
pub fn builder(emu: &Emulator) -> WandbStoreBuilder {
    WandbStore::builder(client(emu, KEY))
}

/// A read-only store with default options.
pub fn store(emu: &Emulator) -> WandbStore {
    builder(emu).build()
}

/// The seed used by most tests: 4 runs × 120 steps, 6 files per run, a 3 MiB "big" file on
/// run 0 (the 1 GiB one is reserved for the test that needs it: hashing it costs seconds).
pub fn seed_spec(entity: &str) -> SeedSpec {
    SeedSpec::new(entity, PROJECT)
        .runs(4)
        .steps(120)
        .keys(8)
        .files(6)
        .bigfile(3 << 20)
}

/// An emulator with the test key, viewer entity `alice`, and [`seed_spec`] seeded.
pub fn seeded() -> Emulator {
    Emulator::start_with(
        EmulatorConfig::default()
            .api_key(KEY)
            .entity("alice")
            .seed(seed_spec("alice")),
    )
    .expect("emulator starts")
}

/// `Path::parse` that panics with the input.
pub fn p(s: &str) -> Path {
    Path::parse(s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
}

/// The run's path prefix.
pub fn run_prefix(key: &RunKey) -> String {
    format!("{}/{}/{}", key.entity, key.project, key.name)
}

/// Every object under `prefix` (recursive), sorted by location.
pub async fn list_all(store: &dyn ObjectStore, prefix: &str) -> Vec<ObjectMeta> {
    let prefix = (!prefix.is_empty()).then(|| p(prefix));
    let mut all: Vec<ObjectMeta> = store
        .list(prefix.as_ref())
        .try_collect()
        .await
        .expect("list");
    all.sort_by(|a, b| a.location.cmp(&b.location));
    all
}

/// Whole object.
pub async fn get_bytes(store: &dyn ObjectStore, path: &str) -> Bytes {
    store
        .get(&p(path))
        .await
        .unwrap_or_else(|e| panic!("get {path}: {e}"))
        .bytes()
        .await
        .unwrap_or_else(|e| panic!("body of {path}: {e}"))
}

/// A ranged read.
pub async fn get_range(
    store: &dyn ObjectStore,
    path: &str,
    range: object_store::GetRange,
) -> Bytes {
    store
        .get_opts(&p(path), GetOptions::new().with_range(Some(range)))
        .await
        .unwrap_or_else(|e| panic!("get {path}: {e}"))
        .bytes()
        .await
        .expect("body")
}

/// The expected `history.jsonl` of a run: the emulator's rows, one per line.
pub fn expected_history(emu: &Emulator, key: &RunKey) -> Vec<u8> {
    let mut out = Vec::new();
    for row in emu.history_rows(key).expect("run exists") {
        out.extend_from_slice(row.as_bytes());
        out.push(b'\n');
    }
    out
}

/// The Python interpreter with `wandb==0.31.0`: `$WANDBFS_PYTHON`, else
/// `<repo>/.venv/bin/python`. Panics (the test fails, never skips) when it is missing.
pub fn python() -> PathBuf {
    let path = std::env::var_os("WANDBFS_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| FsPath::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python"));
    assert!(
        path.exists(),
        "the wandb SDK's Python is missing at {} — set WANDBFS_PYTHON or create the venv: \
         python3 -m venv .venv && .venv/bin/pip install -r integration/requirements.txt",
        path.display()
    );
    path
}

/// An isolated HOME / config / cache / working directory for SDK processes.
pub struct Sandbox {
    pub dir: tempfile::TempDir,
}

impl Default for Sandbox {
    fn default() -> Self {
        Self::new()
    }
}

impl Sandbox {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        for sub in ["home", "config", "cache", "work", "artifacts"] {
            std::fs::create_dir_all(dir.path().join(sub)).expect("mkdir");
        }
        Sandbox { dir }
    }

    pub fn path(&self, sub: &str) -> PathBuf {
        self.dir.path().join(sub)
    }

    /// Runs `script` (a path) with the SDK pointed at the emulator; panics with the output
    /// unless it exits 0. Returns stdout.
    pub fn run_ok(
        &self,
        script: &FsPath,
        args: &[&str],
        emu: &Emulator,
        env: &[(&str, &str)],
    ) -> String {
        let mut cmd = Command::new(python());
        cmd.arg(script).args(args).current_dir(self.path("work"));
        for (k, _) in std::env::vars() {
            if k.starts_with("WANDB") || k == "NETRC" {
                cmd.env_remove(k);
            }
        }
        cmd.env("HOME", self.path("home"))
            .env("WANDB_CONFIG_DIR", self.path("config"))
            .env("WANDB_CACHE_DIR", self.path("cache"))
            .env("WANDB_DATA_DIR", self.path("cache"))
            .env("WANDB_ARTIFACT_DIR", self.path("artifacts"))
            .env("WANDB_DIR", self.path("work"))
            .env("WANDB_BASE_URL", emu.base_url())
            .env("WANDB_API_KEY", KEY)
            .env("WANDB_SILENT", "true")
            .env("WANDB_DISABLE_GIT", "true")
            .env("WANDB__FILE_STREAM_TRANSMIT_INTERVAL", "1")
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let start = Instant::now();
        let out = cmd.output().expect("spawn python");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{} failed after {:.1?} ({}):\n--- stdout\n{stdout}\n--- stderr\n{}",
            script.display(),
            start.elapsed(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }
}

/// A scenario script of the emulator crate (`integration/scenarios/<name>`).
pub fn emulator_scenario(name: &str) -> PathBuf {
    FsPath::new(env!("CARGO_MANIFEST_DIR"))
        .join("integration/scenarios")
        .join(name)
}

/// A Python helper of the store tests (`tests/store_python/<name>`).
pub fn store_script(name: &str) -> PathBuf {
    FsPath::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/store_python")
        .join(name)
}
