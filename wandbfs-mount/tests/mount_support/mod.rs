//! Real kernel mounts for the tests: an in-process emulator, a throwaway Postgres database, and
//! the real `wandbfs` binary mounting (as a daemon: `wandbfs mount` returns once the mount
//! answers, so no test waits on a clock). Every mount is unmounted when dropped, lazily and by
//! force if need be, so a failing test leaves nothing mounted.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use futures::TryStreamExt as _;
use object_store::{ObjectStore as _, ObjectStoreExt as _};
use secrecy::SecretString;
use wandb_emulator::{Emulator, EmulatorConfig};
use wandbfs::client::{Client, ClientConfig, Environment, Overrides, settings};
use wandbfs::mirror::testing::{TestDatabase, fresh_database, shared_cluster};
use wandbfs::store::layout::Location;
use wandbfs::store::tables::TableCache;
use wandbfs::store::{Layered, LiveOptions, LiveSource, MirrorSource, WandbStore};

pub const WANDBFS: &str = env!("CARGO_BIN_EXE_wandbfs");

/// An emulator, a database, and an isolated home for `wandbfs` processes.
pub struct Env {
    pub emu: Emulator,
    pub db: TestDatabase,
    pub home: tempfile::TempDir,
    pub db_url: String,
}

impl Env {
    /// Starts an emulator with `config` and a fresh database.
    pub async fn new(config: EmulatorConfig) -> Env {
        let emu = Emulator::start_with(config).expect("emulator");
        let db = fresh_database().await.expect("throwaway Postgres");
        let db_url = shared_cluster()
            .expect("cluster")
            .cluster()
            .connection_string(&db.name);
        Env {
            emu,
            db,
            home: tempfile::tempdir().expect("home"),
            db_url,
        }
    }

    /// `wandbfs` against the emulator and the database, isolated from the user's settings.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(WANDBFS);
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", self.home.path())
            .env("XDG_CACHE_HOME", self.home.path().join("cache"))
            .env("WANDB_CONFIG_DIR", self.home.path().join("wandb"))
            .env("WANDB_BASE_URL", self.emu.base_url())
            .env("WANDB_API_KEY", self.emu.api_key())
            .env("WANDBFS_DATABASE_URL", &self.db_url)
            .env("WANDBFS_LOG", "wandbfs=debug,wandbfs_mount=trace,info")
            .stdin(Stdio::null());
        cmd
    }

    /// `wandbfs sync <target>`, which must succeed.
    pub fn sync(&self, target: &str) {
        let out = self
            .command()
            .args(["sync", target, "--quiet", "--max-rps", "0"])
            .output()
            .expect("wandbfs sync runs");
        assert!(out.status.success(), "sync {target}: {}", text(&out));
    }

    /// Mounts with `args` (after the mount point) at a new directory.
    pub fn mount(&self, args: &[&str]) -> Mount {
        self.mount_with_env(args, &[])
    }

    /// Mounts with `args` and extra environment variables for the daemon.
    pub fn mount_with_env(&self, args: &[&str], extra: &[(&str, &str)]) -> Mount {
        let dir = tempfile::tempdir().expect("mount point");
        let path = dir.path().join("mnt");
        std::fs::create_dir(&path).unwrap();
        self.mount_at(dir, path, args, extra)
    }

    /// Mounts again where `old` was mounted (after unmounting it).
    pub fn remount(&self, old: Mount, args: &[&str]) -> Mount {
        let (dir, path) = old.unmount_keep_dir();
        self.mount_at(dir, path, args, &[])
    }

    fn mount_at(
        &self,
        dir: tempfile::TempDir,
        path: PathBuf,
        args: &[&str],
        extra: &[(&str, &str)],
    ) -> Mount {
        let log = dir.path().join("mount.log");
        let out = self
            .command()
            .envs(extra.iter().copied())
            .arg("mount")
            .arg(&path)
            .args(args)
            .arg("--log-file")
            .arg(&log)
            .output()
            .expect("wandbfs mount runs");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            let log_text = std::fs::read_to_string(&log).unwrap_or_default();
            panic!("mount failed: {}\nlog:\n{log_text}", text(&out));
        }
        let pid = stdout
            .split("pid ")
            .nth(1)
            .and_then(|rest| rest.split(';').next())
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("no pid in {stdout:?}"));
        Mount {
            dir: Some(dir),
            path,
            pid,
            log,
            unmounted: false,
        }
    }
}

/// A mounted wandbfs; unmounted when dropped.
pub struct Mount {
    dir: Option<tempfile::TempDir>,
    pub path: PathBuf,
    pub pid: u32,
    pub log: PathBuf,
    unmounted: bool,
}

impl Mount {
    /// `path` below the mount point.
    pub fn join(&self, rel: &str) -> PathBuf {
        self.path.join(rel)
    }

    /// The daemon's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Unmounts with `wandbfs unmount` and waits for the daemon to exit.
    pub fn unmount(mut self) {
        self.unmount_inner();
    }

    fn unmount_keep_dir(mut self) -> (tempfile::TempDir, PathBuf) {
        self.unmount_inner();
        (self.dir.take().expect("dir"), self.path.clone())
    }

    fn unmount_inner(&mut self) {
        let out = Command::new(WANDBFS)
            .arg("unmount")
            .arg(&self.path)
            .output()
            .expect("wandbfs unmount runs");
        assert!(
            out.status.success(),
            "unmount: {}\nlog:\n{}",
            text(&out),
            self.log_text()
        );
        self.unmounted = true;
        wait_for_exit(self.pid);
    }

    /// The daemon's peak resident set size so far (VmHWM), in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.pid))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    /// Whether the daemon process still runs.
    pub fn daemon_alive(&self) -> bool {
        pid_alive(self.pid)
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if self.unmounted {
            return;
        }
        let _ = Command::new("umount").arg("-l").arg(&self.path).output();
        if pid_alive(self.pid) {
            let _ = Command::new("kill")
                .args(["-9", &self.pid.to_string()])
                .output();
        }
    }
}

/// Whether process `pid` exists (and is not a zombie).
pub fn pid_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// Waits until `pid` has exited: the daemon exits once its mount is gone. Uses pidfd polling
/// (an event), not a clock.
pub fn wait_for_exit(pid: u32) {
    // SAFETY: pidfd_open on a pid; a failure (already gone) returns -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return;
    }
    let fd = fd as libc::c_int;
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd; -1 = wait until the process exits.
    unsafe {
        libc::poll(&mut pfd, 1, -1);
        libc::close(fd);
    }
}

/// Status and both streams of a finished command.
pub fn text(out: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs a shell command line; returns (status, stdout, stderr).
pub fn sh(line: &str) -> (i32, String, String) {
    let out = Command::new("bash")
        .args(["-c", line])
        .stdin(Stdio::null())
        .output()
        .expect("bash runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs a shell command line that must succeed; its stdout.
#[track_caller]
pub fn sh_ok(line: &str) -> String {
    let (code, stdout, stderr) = sh(line);
    assert_eq!(code, 0, "`{line}` failed:\n{stdout}\n{stderr}");
    stdout
}

/// MD5 of bytes, hex.
pub fn md5_hex(bytes: &[u8]) -> String {
    use md5::Digest as _;
    md5::Md5::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Files below `dir`, relative, sorted (symlinks included as themselves).
pub fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let ty = e.file_type().unwrap();
            let rel = e
                .path()
                .strip_prefix(dir)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if ty.is_dir() {
                stack.push(e.path());
                out.push(format!("{rel}/"));
            } else {
                out.push(rel);
            }
        }
    }
    out.sort();
    out
}

/// A client of the test's emulator, without a rate limit.
pub fn client(env: &Env) -> Client {
    let overrides = Overrides {
        base_url: Some(env.emu.base_url().to_owned()),
        api_key: Some(SecretString::from(env.emu.api_key())),
        ..Overrides::default()
    };
    let settings = settings::resolve(&overrides, &Environment::isolated()).unwrap();
    let mut config = ClientConfig::default();
    config.rate.requests_per_second = 0.0;
    Client::new(settings, config).unwrap()
}

/// `WandbStore` over the live API alone.
pub fn live_store(env: &Env) -> WandbStore {
    WandbStore::new(client(env))
}

/// `WandbStore` as the mount builds it: the mirror, the live API behind it, tables rendered
/// into `tables` (a cache of its own, not the mount's).
pub fn mirror_store(env: &Env, tables: &Path) -> WandbStore {
    WandbStore::builder(client(env))
        .with_source(std::sync::Arc::new(Layered::new(
            std::sync::Arc::new(
                MirrorSource::new(env.db.mirror.clone()).with_tables(TableCache::new(tables)),
            ),
            std::sync::Arc::new(LiveSource::new(client(env), LiveOptions::default())),
        )))
        .build()
}

/// Whether an object is one of the typed tables (which only the mirror serves).
pub fn is_table(location: &object_store::path::Path) -> bool {
    match Location::parse(location) {
        Location::Synthetic(_, kind) => kind.is_table(),
        Location::ProjectTable(..) => true,
        _ => false,
    }
}

/// The typed tables under `prefix` with their bytes, through [`mirror_store`]: what the live
/// API's tree lacks and the mount adds.
pub async fn table_objects(env: &Env, prefix: &str) -> Vec<(String, bytes::Bytes)> {
    let tables = tempfile::tempdir().unwrap();
    let store = mirror_store(env, tables.path());
    let objects: Vec<_> = store
        .list(Some(&object_store::path::Path::parse(prefix).unwrap()))
        .try_collect()
        .await
        .unwrap();
    let mut out = Vec::new();
    for o in objects.into_iter().filter(|o| is_table(&o.location)) {
        let bytes = store.get(&o.location).await.unwrap().bytes().await.unwrap();
        assert_eq!(bytes.len() as u64, o.size, "listed size of {}", o.location);
        out.push((o.location.to_string(), bytes));
    }
    out
}
