//! Pieces shared by the mount's benchmarks: the `wandbfs` binary against one emulator and one
//! Postgres database, timing and cache helpers.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use wandb_emulator::{Emulator, EmulatorConfig};
use wandbfs::mirror::embedded::TempCluster;
use wandbfs::mirror::{ConnectOptions, Mirror};

pub const WANDBFS: &str = env!("CARGO_BIN_EXE_wandbfs");

pub fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

pub fn python() -> PathBuf {
    std::env::var_os("WANDBFS_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python"))
}

pub fn drop_caches() {
    let _ = Command::new("sync").status();
    let _ = std::fs::write("/proc/sys/vm/drop_caches", "3");
}

pub fn time<T>(f: impl FnOnce() -> T) -> (Duration, T) {
    let start = Instant::now();
    let out = f();
    (start.elapsed(), out)
}

pub fn sh(line: &str) -> anyhow::Result<String> {
    let out = Command::new("bash").args(["-c", line]).output()?;
    if !out.status.success() {
        bail!("`{line}` failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

pub fn mib_s(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / d.as_secs_f64() / (1 << 20) as f64
}

/// Times each throughput measurement is repeated (the median is reported).
pub const REPEATS: usize = 3;

pub fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

pub struct Bench {
    pub emu: Emulator,
    pub home: tempfile::TempDir,
    pub db_url: String,
}

impl Bench {
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(WANDBFS);
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", self.home.path())
            .env("WANDB_BASE_URL", self.emu.base_url())
            .env("WANDB_API_KEY", self.emu.api_key())
            .env("WANDBFS_DATABASE_URL", &self.db_url)
            .stdin(Stdio::null());
        cmd
    }

    pub fn sync(&self, target: &str) -> anyhow::Result<Duration> {
        let (took, out) = time(|| {
            self.command()
                .args(["sync", target, "--quiet", "--max-rps", "0"])
                .output()
        });
        let out = out?;
        if !out.status.success() {
            bail!("sync {target}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(took)
    }

    /// Mounts at `dir/mnt` with `args`; returns (mount point, daemon pid).
    pub fn mount(&self, dir: &Path, args: &[&str]) -> anyhow::Result<(PathBuf, u32)> {
        let mnt = dir.join("mnt");
        std::fs::create_dir_all(&mnt)?;
        let out = self
            .command()
            .arg("mount")
            .arg(&mnt)
            .args(args)
            .arg("--log-file")
            .arg(dir.join("mount.log"))
            .output()?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            bail!("mount: {}", String::from_utf8_lossy(&out.stderr));
        }
        let pid = stdout
            .split("pid ")
            .nth(1)
            .and_then(|r| r.split(';').next())
            .and_then(|p| p.trim().parse().ok())
            .context("daemon pid")?;
        Ok((mnt, pid))
    }

    pub fn unmount(&self, mnt: &Path, pid: u32) {
        let _ = Command::new(WANDBFS).arg("unmount").arg(mnt).status();
        while Path::new(&format!("/proc/{pid}")).exists() {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn requests(&self) -> u64 {
        self.emu.counters().total.requests
    }
}

/// A line of the results table: what, wandbfs, the baseline, the ratio.
pub fn line(what: &str, ours: String, baseline: String, ratio: String) {
    println!("| {what} | {ours} | {baseline} | {ratio} |");
}

impl Bench {
    /// An emulator with `config` and a database `bench` in a throwaway cluster (kept alive by
    /// the returned guard).
    pub fn start(config: EmulatorConfig) -> anyhow::Result<(Bench, TempCluster)> {
        let emu = Emulator::start_with(config)?;
        let cluster = TempCluster::start()?;
        tokio::runtime::Runtime::new()?.block_on(Mirror::connect_embedded(
            cluster.cluster(),
            "bench",
            &ConnectOptions::default(),
        ))?;
        let bench = Bench {
            db_url: cluster.cluster().connection_string("bench"),
            emu,
            home: tempfile::tempdir()?,
        };
        Ok((bench, cluster))
    }
}
