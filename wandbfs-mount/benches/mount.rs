//! The mount against baselines measured in the same run, on one emulator and one Postgres
//! cluster: every line prints wandbfs, the baseline, and the ratio.
//!
//! Run: `cargo bench -p wandbfs-mount --bench mount` (root, /dev/fuse; drops the page cache
//! between cold measurements). Baselines need the SDK venv (`$WANDBFS_PYTHON`, default
//! `<repo>/.venv/bin/python`); the `wandbfsspec` baseline needs
//! `pip install fsspec && pip install --no-deps --ignore-requires-python wandbfsspec==0.2.0`
//! in it (the line says so when it is missing).
//!
//! Environment: `WANDBFS_BENCH_ROWS` (1,000,000 history rows of one run),
//! `WANDBFS_BENCH_RUNS` (10,000 runs of the listing project), `WANDBFS_BENCH_BIG` (1 GiB: the
//! run file read cold and warm), `WANDBFS_BENCH_READERS` (8 parallel readers of files that
//! size).
//!
//! 1. `cat history.jsonl` of the long run: mount vs a local copy, cold and warm page cache.
//! 2. `ls -l` of the many-run project (synced; the daemon's listing cold, then the kernel's
//!    cache cold): time and W&B requests, vs the SDK's `api.runs()` and `wandbfsspec`'s
//!    `fs.ls()` over the same emulator.
//! 3. Cold sequential read of the big run file (empty content cache) vs `curl` of its URL, and
//!    the requests before the first byte.
//! 4. Warm read of it (content cache, page cache dropped) vs a local copy (page cache dropped).
//! 5. `stat` latency of files in the synced project (kernel cache dropped, daemon warm; then
//!    all warm), p50/p99, vs `stat` of a local file.
//! 6. Peak RSS of the daemon with N readers streaming big files at once.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::Context;
use wandb_emulator::{EmulatorConfig, SeedSpec};

mod bench_support;

use bench_support::*;

fn main() -> anyhow::Result<()> {
    let rows = env_u64("WANDBFS_BENCH_ROWS", 1_000_000);
    let runs = env_u64("WANDBFS_BENCH_RUNS", 10_000);
    let big = env_u64("WANDBFS_BENCH_BIG", 1 << 30);
    let readers = env_u64("WANDBFS_BENCH_READERS", 8) as u32;
    let mut config = EmulatorConfig::default()
        .seed(
            SeedSpec::new("alice", "long")
                .runs(1)
                .steps(rows)
                .keys(20)
                .files(3)
                .bigfile(big),
        )
        .seed(
            SeedSpec::new("alice", "many")
                .runs(runs)
                .steps(10)
                .keys(5)
                .files(3)
                .bigfile(0),
        );
    for i in 0..readers {
        config = config.seed(
            SeedSpec::new("alice", format!("readers{i}"))
                .runs(1)
                .steps(5)
                .files(1)
                .bigfile(big)
                .seed(u64::from(i) + 100),
        );
    }
    let (bench, _cluster) = Bench::start(config)?;
    let work = tempfile::tempdir_in("/var/tmp")?;
    println!("setup: syncing 1 run x {rows} rows, {runs} runs, {readers} reader projects");
    let took = bench.sync("alice/long")?;
    println!("  alice/long synced in {:.1}s", took.as_secs_f64());
    let took = bench.sync("alice/many")?;
    println!("  alice/many synced in {:.1}s", took.as_secs_f64());
    for i in 0..readers {
        bench.sync(&format!("alice/readers{i}"))?;
    }
    let long_run = bench.emu.runs("alice", "long")[0].name.clone();
    let (mnt, pid) = bench.mount(
        &work.path().join("a"),
        &[
            "--cache-dir",
            &work.path().join("cache").display().to_string(),
        ],
    )?;
    println!();
    println!("| Work | wandbfs | baseline | ratio |");
    println!("|---|---|---|---|");

    // 1. cat history.jsonl, mount vs local copy; each measured REPEATS times, alternating,
    // the median kept (these VMs are noisy).
    let history = mnt.join(format!("alice/long/{long_run}/history.jsonl"));
    let local_history = work.path().join("history.jsonl");
    std::fs::copy(&history, &local_history)?;
    let bytes = std::fs::metadata(&local_history)?.len();
    let cat = |p: &Path| sh(&format!("cat {} > /dev/null", p.display()));
    let (mut mount_cold, mut mount_warm, mut local_cold, mut local_warm) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..REPEATS {
        drop_caches();
        mount_cold.push(time(|| cat(&history)).0);
        mount_warm.push(time(|| cat(&history)).0);
        drop_caches();
        local_cold.push(time(|| cat(&local_history)).0);
        local_warm.push(time(|| cat(&local_history)).0);
    }
    let (mount_cold, mount_warm, local_cold, local_warm) = (
        median(mount_cold),
        median(mount_warm),
        median(local_cold),
        median(local_warm),
    );
    let mb = bytes as f64 / 1e6;
    line(
        &format!("`cat history.jsonl` ({rows} rows, {mb:.0} MB), cold"),
        format!("{:.0} MiB/s", mib_s(bytes, mount_cold)),
        format!("{:.0} MiB/s (local file)", mib_s(bytes, local_cold)),
        format!(
            "{:.0} %",
            100.0 * local_cold.as_secs_f64() / mount_cold.as_secs_f64()
        ),
    );
    line(
        "same, warm (page cache)",
        format!("{:.0} MiB/s", mib_s(bytes, mount_warm)),
        format!("{:.0} MiB/s (local file)", mib_s(bytes, local_warm)),
        format!(
            "{:.0} %",
            100.0 * local_warm.as_secs_f64() / mount_warm.as_secs_f64()
        ),
    );

    // 2. ls -l of the many-run project.
    let many = mnt.join("alice/many");
    bench.emu.reset_counters();
    let (ls_first, _) = time(|| sh(&format!("ls -l {} | wc -l", many.display())));
    drop_caches();
    let (ls_cold_kernel, out) = time(|| sh(&format!("ls -l {} | wc -l", many.display())));
    let listed: u64 = out?.trim().parse().unwrap_or(0);
    let ls_requests = bench.requests();
    let sdk = Command::new(python())
        .args([
            "-c",
            "import time, wandb; t=time.time(); n=len(list(wandb.Api(timeout=120).runs('alice/many'))); print(n, time.time()-t)",
        ])
        .env("WANDB_BASE_URL", bench.emu.base_url())
        .env("WANDB_API_KEY", bench.emu.api_key())
        .env("WANDB_SILENT", "true")
        .env("HOME", bench.home.path())
        .output()?;
    let sdk_out = String::from_utf8_lossy(&sdk.stdout).into_owned();
    let sdk_secs: f64 = sdk_out
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(f64::NAN);
    line(
        &format!("`ls -l` of a synced {runs}-run project (daemon cold / kernel cold)"),
        format!(
            "{:.0} ms / {:.0} ms, {ls_requests} requests, {} entries",
            ls_first.as_secs_f64() * 1e3,
            ls_cold_kernel.as_secs_f64() * 1e3,
            listed.saturating_sub(1)
        ),
        format!("{:.0} ms (SDK `api.runs()`)", sdk_secs * 1e3),
        format!("{:.0}x", sdk_secs / ls_cold_kernel.as_secs_f64()),
    );
    let fsspec = Command::new(python())
        .args([
            "-c",
            "import time; from wandbfsspec.spec import WandbFileSystem; fs=WandbFileSystem(); t=time.time(); n=len(fs.ls('alice/many')); print(n, time.time()-t)",
        ])
        .env("WANDB_BASE_URL", bench.emu.base_url())
        .env("WANDB_API_KEY", bench.emu.api_key())
        .env("WANDB_SILENT", "true")
        .env("HOME", bench.home.path())
        .output()?;
    let fsspec_out = String::from_utf8_lossy(&fsspec.stdout).into_owned();
    match fsspec_out
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<f64>().ok())
    {
        Some(secs) => line(
            "same vs wandbfsspec 0.2.0 `fs.ls()`",
            format!("{:.0} ms", ls_cold_kernel.as_secs_f64() * 1e3),
            format!("{:.0} ms (wandbfsspec)", secs * 1e3),
            format!("{:.0}x", secs / ls_cold_kernel.as_secs_f64()),
        ),
        None => println!(
            "| wandbfsspec baseline | — | not installed in {} (pip install fsspec && pip install --no-deps --ignore-requires-python wandbfsspec==0.2.0) | — |",
            python().display()
        ),
    }

    // The same listing without extended attributes (`--no-xattr`): `ls -l` asks every entry
    // for its SELinux label and ACLs, a round trip each unless attributes are off.
    bench.unmount(&mnt, pid);
    let (mnt, pid) = bench.mount(&work.path().join("a"), &["--no-xattr"])?;
    let many = mnt.join("alice/many");
    let _ = sh(&format!("ls -l {} | wc -l", many.display()));
    drop_caches();
    let (ls_no_xattr, _) = time(|| sh(&format!("ls -l {} | wc -l", many.display())));
    line(
        "same with `--no-xattr` (kernel cold)",
        format!("{:.0} ms", ls_no_xattr.as_secs_f64() * 1e3),
        format!("{:.0} ms (SDK `api.runs()`)", sdk_secs * 1e3),
        format!("{:.0}x", sdk_secs / ls_no_xattr.as_secs_f64()),
    );

    // 3. Cold sequential read of the big file vs curl.
    let big_path = mnt.join(format!("alice/long/{long_run}/large/blob-1GiB.bin"));
    let url_json = sh(&format!(
        "curl -s -u api:{} -H 'content-type: application/json' {}/graphql -d '{{\"query\":\"query {{ project(name: \\\"long\\\", entityName: \\\"alice\\\") {{ run(name: \\\"{long_run}\\\") {{ files(names: [\\\"large/blob-1GiB.bin\\\"]) {{ edges {{ node {{ url }} }} }} }} }} }}\"}}'",
        bench.emu.api_key(),
        bench.emu.base_url()
    ))?;
    let url = serde_json::from_str::<serde_json::Value>(&url_json)?["data"]["project"]["run"]
        ["files"]["edges"][0]["node"]["url"]
        .as_str()
        .context("file url")?
        .to_owned();
    drop_caches();
    bench.emu.reset_counters();
    sh(&format!("head -c 1 {} > /dev/null", big_path.display()))?;
    let first_byte_requests = bench.requests();
    drop_caches();
    // Again from an empty content cache each time: fresh mounts with a fresh cache.
    let dd = |p: &Path| {
        sh(&format!(
            "dd if={} of=/dev/null bs=1M status=none",
            p.display()
        ))
    };
    let cache2 = work.path().join("cache2");
    let (mut colds, mut curls) = (Vec::new(), Vec::new());
    let (mut mnt, mut pid) = (mnt, pid);
    for _ in 0..REPEATS {
        bench.unmount(&mnt, pid);
        let _ = std::fs::remove_dir_all(&cache2);
        (mnt, pid) = bench.mount(
            &work.path().join("a"),
            &["--cache-dir", &cache2.display().to_string()],
        )?;
        let big_path = mnt.join(format!("alice/long/{long_run}/large/blob-1GiB.bin"));
        drop_caches();
        let (took, r) = time(|| dd(&big_path));
        r?;
        colds.push(took);
        let (took, r) = time(|| {
            sh(&format!(
                "curl -s -u api:{} -o /dev/null {url}",
                bench.emu.api_key()
            ))
        });
        r?;
        curls.push(took);
    }
    let (big_cold, curl) = (median(colds), median(curls));
    let big_path = mnt.join(format!("alice/long/{long_run}/large/blob-1GiB.bin"));
    line(
        &format!("cold sequential read of a {} MiB run file", big >> 20),
        format!(
            "{:.0} MiB/s ({first_byte_requests} requests to the first byte)",
            mib_s(big, big_cold)
        ),
        format!("{:.0} MiB/s (`curl` of its URL)", mib_s(big, curl)),
        format!(
            "{:.0} %",
            100.0 * curl.as_secs_f64() / big_cold.as_secs_f64()
        ),
    );

    // 4. Warm read (content cache) vs a local file, page cache dropped for both.
    let local_big = work.path().join("big.bin");
    std::fs::copy(&big_path, &local_big)?;
    let (mut warms, mut locals) = (Vec::new(), Vec::new());
    bench.emu.reset_counters();
    for _ in 0..REPEATS {
        drop_caches();
        let (took, r) = time(|| dd(&big_path));
        r?;
        warms.push(took);
        drop_caches();
        let (took, r) = time(|| dd(&local_big));
        r?;
        locals.push(took);
    }
    let warm_requests = bench.requests();
    let (big_warm, local_big_cold) = (median(warms), median(locals));
    line(
        "warm read of it (content cache; page cache dropped)",
        format!(
            "{:.0} MiB/s, {warm_requests} requests",
            mib_s(big, big_warm)
        ),
        format!(
            "{:.0} MiB/s (local file, page cache dropped)",
            mib_s(big, local_big_cold)
        ),
        format!(
            "{:.0} %",
            100.0 * local_big_cold.as_secs_f64() / big_warm.as_secs_f64()
        ),
    );
    let _ = std::fs::remove_file(&local_big);

    // 5. stat latency.
    let many = mnt.join("alice/many");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&many)?
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("history.jsonl"))
        .collect();
    files.truncate(2_000);
    for f in &files {
        std::fs::metadata(f)?; // the daemon lists each run once
    }
    drop_caches();
    let mut cold: Vec<Duration> = files
        .iter()
        .map(|f| time(|| std::fs::metadata(f)).0)
        .collect();
    let mut warm: Vec<Duration> = files
        .iter()
        .map(|f| time(|| std::fs::metadata(f)).0)
        .collect();
    let mut local: Vec<Duration> = (0..files.len())
        .map(|_| time(|| std::fs::metadata(&local_history)).0)
        .collect();
    cold.sort();
    warm.sort();
    local.sort();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    line(
        &format!(
            "`stat` of {} files in a synced project, p50 / p99 (kernel cache cold)",
            files.len()
        ),
        format!(
            "{:.0} µs / {:.0} µs",
            us(percentile(&cold, 0.5)),
            us(percentile(&cold, 0.99))
        ),
        format!(
            "{:.1} µs / {:.1} µs (local file)",
            us(percentile(&local, 0.5)),
            us(percentile(&local, 0.99))
        ),
        format!(
            "{:.0}x slower",
            us(percentile(&cold, 0.5)) / us(percentile(&local, 0.5))
        ),
    );
    line(
        "same, kernel cache warm",
        format!(
            "{:.1} µs / {:.1} µs",
            us(percentile(&warm, 0.5)),
            us(percentile(&warm, 0.99))
        ),
        format!("{:.1} µs (local file)", us(percentile(&local, 0.5))),
        format!(
            "{:.1}x",
            us(percentile(&warm, 0.5)) / us(percentile(&local, 0.5))
        ),
    );

    // 6. Peak RSS with N readers of big files.
    bench.unmount(&mnt, pid);
    let (mnt, pid) = bench.mount(&work.path().join("a"), &["--no-cache"])?;
    drop_caches();
    let paths: Vec<PathBuf> = (0..readers)
        .map(|i| {
            let run = bench.emu.runs("alice", &format!("readers{i}"))[0]
                .name
                .clone();
            mnt.join(format!("alice/readers{i}/{run}/large/blob-1GiB.bin"))
        })
        .collect();
    let (all, _) = time(|| {
        let handles: Vec<_> = paths
            .iter()
            .map(|p| {
                let p = p.clone();
                std::thread::spawn(move || {
                    let _ = Command::new("dd")
                        .arg(format!("if={}", p.display()))
                        .args(["of=/dev/null", "bs=1M", "status=none"])
                        .status();
                })
            })
            .collect();
        for h in handles {
            let _ = h.join();
        }
    });
    let rss = peak_rss_kib(pid);
    line(
        &format!(
            "peak RSS of the daemon, {readers} readers streaming {} MiB files",
            big >> 20
        ),
        format!(
            "{} MiB ({:.0} MiB/s in all)",
            rss >> 10,
            mib_s(big * u64::from(readers), all)
        ),
        "256 MiB (target)".to_owned(),
        format!("{:.0} %", 100.0 * (rss >> 10) as f64 / 256.0),
    );
    bench.unmount(&mnt, pid);
    Ok(())
}
