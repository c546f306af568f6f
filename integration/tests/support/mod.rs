//! Shared helpers for the emulator's integration tests: locating the SDK's Python, running
//! scenario scripts in an isolated home, and a small GraphQL/HTTP client.

#![allow(dead_code)]

pub mod gql;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A fixed, SDK-valid API key for tests (`local-` + 40 characters).
pub const TEST_KEY: &str = "local-TestKey0123456789abcdefghijklmnopqrstuvwxyz";

/// The Python interpreter with `wandb==0.31.0`: `$WANDBFS_PYTHON`, else `<repo>/.venv/bin/python`.
/// Panics (the test fails, never skips) when it is missing.
pub fn python() -> PathBuf {
    let path = std::env::var_os("WANDBFS_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .parent()
                .expect("integration/ has a parent")
                .join(".venv/bin/python")
        });
    assert!(
        path.exists(),
        "the wandb SDK's Python is missing at {} — set WANDBFS_PYTHON or create the venv: \
         python3 -m venv .venv && .venv/bin/pip install -r integration/requirements.txt",
        path.display()
    );
    path
}

/// Path of a scenario script.
pub fn scenario(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scenarios")
        .join(name)
}

/// An isolated HOME / config / cache / working directory for SDK processes.
pub struct Sandbox {
    pub dir: tempfile::TempDir,
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

    /// Runs a scenario with the SDK pointed at `base_url`/`key`; returns its output (never
    /// panics on a non-zero exit: callers decide).
    pub fn run(
        &self,
        script: &str,
        args: &[&str],
        base_url: &str,
        key: &str,
        extra_env: &[(&str, &str)],
        timeout: Duration,
    ) -> Output {
        let mut cmd = Command::new(python());
        cmd.arg(scenario(script))
            .args(args)
            .current_dir(self.path("work"));
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
            .env("WANDB_BASE_URL", base_url)
            .env("WANDB_API_KEY", key)
            .env("WANDB_SILENT", "true")
            .env("WANDB_DISABLE_GIT", "true")
            .env("WANDB__FILE_STREAM_TRANSMIT_INTERVAL", "1")
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn python");
        wait_with_timeout(child, timeout, script)
    }

    /// Like [`Sandbox::run`] but panics with the full output unless the script succeeds.
    pub fn run_ok(
        &self,
        script: &str,
        args: &[&str],
        base_url: &str,
        key: &str,
        extra_env: &[(&str, &str)],
    ) -> String {
        let start = Instant::now();
        let out = self.run(
            script,
            args,
            base_url,
            key,
            extra_env,
            Duration::from_secs(300),
        );
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{script} failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!("{script}: ok in {:.1} s", start.elapsed().as_secs_f64());
        stdout
    }
}

/// Waits for a child, killing it after `timeout`.
pub fn wait_with_timeout(mut child: std::process::Child, timeout: Duration, what: &str) -> Output {
    let deadline = Instant::now() + timeout;
    // Drain pipes on threads so a chatty child cannot block on a full pipe.
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let out_thread = std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(s) = stdout.as_mut() {
            let _ = std::io::Read::read_to_end(s, &mut buf);
        }
        buf
    });
    let err_thread = std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(s) = stderr.as_mut() {
            let _ = std::io::Read::read_to_end(s, &mut buf);
        }
        buf
    });
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} timed out after {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Output {
        status,
        stdout: out_thread.join().unwrap_or_default(),
        stderr: err_thread.join().unwrap_or_default(),
    }
}
