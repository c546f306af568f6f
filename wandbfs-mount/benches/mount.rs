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
//! size), `WANDBFS_BENCH_TABLE_ROWS` (10,000 rows in each of the 100 runs DuckDB reads while
//! `stat` is timed), `WANDBFS_BENCH_WRITE` (4 GiB: the file `cp` writes into a run).
//!
//! 1. `cat history.jsonl` of the long run: mount vs a local copy, cold and warm page cache.
//! 2. `ls -l` of the many-run project, synced by `wandbfs sync` with the user's defaults, on a
//!    fresh mount (the daemon's first listing, kernel cache cold): time, W&B requests and the
//!    `getxattr` calls `ls` makes, vs the SDK's `api.runs()` and `wandbfsspec`'s `fs.ls()`
//!    over the same emulator; the same with `--no-xattr`, and a second `ls -l`.
//! 3. Cold sequential read of the big run file (empty content cache) vs `curl` of its URL, and
//!    the requests before the first byte.
//! 4. Reads of it once cached: page cache dropped (the content cache, by FUSE passthrough)
//!    and page cache warm, each vs a local copy in the same state.
//! 5. `stat` latency of files in the synced project (kernel cache dropped, daemon warm; then
//!    all warm), p50/p99, vs `stat` of a local file; and `stat` latency of files the daemon
//!    has not seen while DuckDB reads the `history.parquet` of 100 runs never rendered, vs the
//!    same without DuckDB.
//! 6. Peak RSS of the daemon with N readers streaming big files at once.
//! 7. `cp` of a big local file into a run (`--allow-write`): time vs `cp` to local disk, the
//!    daemon's peak RSS, and the MD5 W&B records.

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
    let table_rows = env_u64("WANDBFS_BENCH_TABLE_ROWS", 10_000);
    let write_size = env_u64("WANDBFS_BENCH_WRITE", 4 << 30);
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
        )
        .seed(
            SeedSpec::new("alice", "tables")
                .runs(100)
                .steps(table_rows)
                .keys(20)
                .files(1)
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
    let took = bench.sync("alice/tables")?;
    println!("  alice/tables synced in {:.1}s", took.as_secs_f64());
    // Steady state before measuring: autovacuum of the freshly written mirror would otherwise
    // compete with every measurement below (and it does not run in a mirror synced long ago).
    let (took, _) = time(|| {
        sh(&format!(
            "psql '{}' -q -c 'VACUUM (ANALYZE)' -c 'CHECKPOINT'",
            bench.db_url
        ))
    });
    println!("  VACUUM + CHECKPOINT in {:.1}s", took.as_secs_f64());
    let long_run = bench.emu.runs("alice", "long")[0].name.clone();
    // The user's defaults: the cache directory `wandbfs sync` rendered the project tables
    // into.
    let (mnt, pid) = bench.mount(&work.path().join("a"), &[])?;
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

    // 2. ls -l of the many-run project on a fresh mount: the daemon's first listing.
    bench.unmount(&mnt, pid);
    let (mnt, pid) = bench.mount(&work.path().join("a"), &[])?;
    let many = mnt.join("alice/many");
    bench.emu.reset_counters();
    drop_caches();
    let (ls_first, out) = time(|| sh(&format!("ls -l {} | wc -l", many.display())));
    let listed: u64 = out?.trim().parse().unwrap_or(0);
    let ls_requests = bench.requests();
    let (ls_again, _) = time(|| sh(&format!("ls -l {} | wc -l", many.display())));
    // The extended-attribute calls `ls -l` makes, counted on another fresh mount (strace slows
    // the listing, so it is not timed).
    bench.unmount(&mnt, pid);
    let (mnt, pid) = bench.mount(&work.path().join("a"), &[])?;
    let many = mnt.join("alice/many");
    drop_caches();
    let xattr_calls: u64 = sh(&format!(
        "strace -f -c -e trace=getxattr,lgetxattr,listxattr,llistxattr ls -l {} 2>&1 >/dev/null | awk '$NF==\"total\" {{print $(NF-2)}}'",
        many.display()
    ))
    .ok()
    .and_then(|s| s.trim().parse().ok())
    .unwrap_or(u64::MAX);
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
        &format!(
            "`ls -l` of a synced {runs}-run project, fresh mount (the daemon's first listing)"
        ),
        format!(
            "{:.0} ms, {ls_requests} requests, {xattr_calls} xattr calls, {} entries",
            ls_first.as_secs_f64() * 1e3,
            listed.saturating_sub(1)
        ),
        format!("{:.0} ms (SDK `api.runs()`)", sdk_secs * 1e3),
        format!("{:.0}x", sdk_secs / ls_first.as_secs_f64()),
    );
    line(
        "same, again (the kernel's directory cache)",
        format!("{:.0} ms", ls_again.as_secs_f64() * 1e3),
        format!("{:.0} ms (first listing)", ls_first.as_secs_f64() * 1e3),
        format!("{:.0}x", ls_first.as_secs_f64() / ls_again.as_secs_f64()),
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
            "first listing vs wandbfsspec 0.2.0 `fs.ls()`",
            format!("{:.0} ms", ls_first.as_secs_f64() * 1e3),
            format!("{:.0} ms (wandbfsspec)", secs * 1e3),
            format!("{:.0}x", secs / ls_first.as_secs_f64()),
        ),
        None => println!(
            "| wandbfsspec baseline | — | not installed in {} (pip install fsspec && pip install --no-deps --ignore-requires-python wandbfsspec==0.2.0) | — |",
            python().display()
        ),
    }

    // The same first listing without extended attributes (`--no-xattr`, which answers ENOSYS
    // so the kernel never asks): whether turning them off still buys anything.
    bench.unmount(&mnt, pid);
    let (mnt, pid) = bench.mount(&work.path().join("a"), &["--no-xattr"])?;
    let many = mnt.join("alice/many");
    drop_caches();
    let (ls_no_xattr, _) = time(|| sh(&format!("ls -l {} | wc -l", many.display())));
    line(
        "first listing with `--no-xattr`",
        format!("{:.0} ms", ls_no_xattr.as_secs_f64() * 1e3),
        format!("{:.0} ms (xattrs on)", ls_first.as_secs_f64() * 1e3),
        format!("{:.2}x", ls_first.as_secs_f64() / ls_no_xattr.as_secs_f64()),
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
        // Looked up first: the run is `running`, and reaching it may refresh it from W&B
        // (a W&B round trip, not the read).
        std::fs::metadata(&big_path)?;
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
        "read of it once cached (content cache by passthrough; page cache dropped)",
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
    let (mut hot, mut local_hot) = (Vec::new(), Vec::new());
    for _ in 0..REPEATS {
        let (took, r) = time(|| dd(&big_path));
        r?;
        hot.push(took);
        let (took, r) = time(|| dd(&local_big));
        r?;
        local_hot.push(took);
    }
    let (hot, local_hot) = (median(hot), median(local_hot));
    line(
        "same, page cache warm",
        format!("{:.0} MiB/s", mib_s(big, hot)),
        format!(
            "{:.0} MiB/s (local file, page cache warm)",
            mib_s(big, local_hot)
        ),
        format!(
            "{:.0} %",
            100.0 * local_hot.as_secs_f64() / hot.as_secs_f64()
        ),
    );
    let _ = std::fs::remove_file(&local_big);

    // 5. stat latency, on a mount that trusts what it knows for longer than the measurement
    // takes (a tenth of the seeded runs are `running`, and the default --metadata-ttl would
    // refresh each one from W&B as it is reached: that is the W&B round trip, not the mount).
    bench.unmount(&mnt, pid);
    let (mnt, pid) = bench.mount(&work.path().join("a"), &["--metadata-ttl", "600"])?;
    let many = mnt.join("alice/many");
    // Run directories only: the project's tables (`runs.parquet`, `runs.jsonl`) are files.
    let mut files: Vec<PathBuf> = std::fs::read_dir(&many)?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
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

    // 5b. stat of paths the daemon has not seen, while DuckDB reads the history.parquet of
    // 100 runs never rendered (each rendered on first access), vs the same without DuckDB.
    let names: Vec<String> = std::fs::read_dir(&many)?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.contains('.'))
        .collect();
    let fresh = |range: std::ops::Range<usize>| -> Vec<PathBuf> {
        names[range.start.min(names.len())..range.end.min(names.len())]
            .iter()
            .map(|n| many.join(n).join("metadata.json"))
            .collect()
    };
    let stat_all = |paths: &[PathBuf]| -> Vec<Duration> {
        paths
            .iter()
            .map(|f| time(|| std::fs::metadata(f)).0)
            .collect()
    };
    // The runs after the first fifth have not been seen by the daemon: two fifths are stat-ed
    // quietly, the rest while DuckDB reads (2,000..4,000 and 4,000..10,000 at full size).
    let n = names.len();
    let mut quiet = stat_all(&fresh(n / 5..2 * n / 5));
    let glob = mnt.join("alice/tables/*/history.parquet");
    let mut duck = Command::new(python())
        .args([
            "-c",
            &format!(
                "import duckdb, time; t=time.time(); n=duckdb.execute(\"select count(*) from read_parquet('{}')\").fetchone()[0]; print(n, time.time()-t)",
                glob.display()
            ),
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    let busy_paths = fresh(2 * n / 5..n);
    let mut busy = Vec::new();
    for path in &busy_paths {
        if duck.try_wait()?.is_some() {
            break;
        }
        busy.push(time(|| std::fs::metadata(path)).0);
    }
    let duck_out = duck.wait_with_output()?;
    let duck_text = String::from_utf8_lossy(&duck_out.stdout).into_owned();
    quiet.sort();
    busy.sort();
    anyhow::ensure!(
        !quiet.is_empty() && !busy.is_empty(),
        "5b: no `stat` measured ({} quiet, {} during DuckDB's read): WANDBFS_BENCH_RUNS is too \
         small for DuckDB's read to outlast the first stats",
        quiet.len(),
        busy.len()
    );
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    line(
        &format!(
            "`stat` of unseen paths while DuckDB reads 100 unrendered `history.parquet` ({} stats; DuckDB: {} rows in {} s)",
            busy.len(),
            duck_text.split_whitespace().next().unwrap_or("?"),
            duck_text
                .split_whitespace()
                .nth(1)
                .map_or("?".to_owned(), |s| s.chars().take(5).collect()),
        ),
        format!(
            "p50 {:.2} ms / p99 {:.2} ms / max {:.1} ms",
            ms(percentile(&busy, 0.5)),
            ms(percentile(&busy, 0.99)),
            ms(*busy.last().unwrap_or(&Duration::ZERO))
        ),
        format!(
            "p50 {:.2} ms / p99 {:.2} ms (no DuckDB)",
            ms(percentile(&quiet, 0.5)),
            ms(percentile(&quiet, 0.99))
        ),
        format!(
            "{:.1}x p99",
            ms(percentile(&busy, 0.99)) / ms(percentile(&quiet, 0.99))
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

    // 7. cp of a big file into a run, streamed: time vs cp to local disk, peak RSS, MD5.
    let local = work.path().join("checkpoint.bin");
    let md5 = write_pattern_file(&local, write_size)?;
    let local_copy = work.path().join("checkpoint-copy.bin");
    drop_caches();
    let (local_cp, r) = time(|| {
        sh(&format!(
            "cp {} {} && sync",
            local.display(),
            local_copy.display()
        ))
    });
    r?;
    let _ = std::fs::remove_file(&local_copy);
    let (mnt, pid) = bench.mount(&work.path().join("a"), &["--allow-write", "--no-cache"])?;
    let run = bench.emu.runs("alice", "many")[0].clone();
    let target = mnt.join(format!("alice/many/{}/checkpoint.bin", run.name));
    drop_caches();
    let (mount_cp, r) = time(|| sh(&format!("cp {} {}", local.display(), target.display())));
    r?;
    let rss = peak_rss_kib(pid);
    let recorded = bench
        .emu
        .run_info(&run)
        .and_then(|info| {
            info.files
                .iter()
                .find(|f| f.0 == "checkpoint.bin")
                .map(|f| f.2.clone())
        })
        .unwrap_or_default();
    line(
        &format!(
            "`cp` of a {} GiB file into a run (`--allow-write`)",
            write_size >> 30
        ),
        format!(
            "{:.1} s, daemon peak RSS {} MiB, W&B's MD5 {}",
            mount_cp.as_secs_f64(),
            rss >> 10,
            if recorded == md5 {
                "matches"
            } else {
                "DIFFERS"
            }
        ),
        format!(
            "{:.1} s (`cp` to local disk + sync)",
            local_cp.as_secs_f64()
        ),
        format!("{:.0} % of 256 MiB", 100.0 * (rss >> 10) as f64 / 256.0),
    );
    let _ = std::fs::remove_file(&local);
    bench.unmount(&mnt, pid);
    Ok(())
}

/// Writes `size` bytes of a repeating-but-distinct pattern to `path` (1 MiB at a time, never
/// all in memory); returns their base64 MD5.
fn write_pattern_file(path: &Path, size: u64) -> anyhow::Result<String> {
    use base64::Engine as _;
    use md5::Digest as _;
    use std::io::Write as _;
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut md5 = md5::Md5::new();
    let mut block = vec![0u8; 1 << 20];
    let mut left = size;
    let mut i = 0u64;
    while left > 0 {
        for (j, b) in block.iter_mut().enumerate() {
            *b = ((j as u64).wrapping_mul(2_654_435_761) ^ i.wrapping_mul(40_503)) as u8;
        }
        let n = left.min(block.len() as u64) as usize;
        md5.update(&block[..n]);
        out.write_all(&block[..n])?;
        left -= n as u64;
        i += 1;
    }
    out.flush()?;
    Ok(base64::engine::general_purpose::STANDARD.encode(md5.finalize()))
}
