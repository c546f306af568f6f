//! History through parquet exports against history through paging, on one generated project
//! (default 100 runs × 10,000 rows × 20 metrics = 1,000,000 rows), measured in the same run
//! against the same emulator and the same Postgres cluster (fsync on), with the SDK's
//! `scan_history()` on both paths as the baseline users have today.
//!
//! Run: `cargo bench -p wandbfs-mount --bench sync_parquet`. Needs the SDK venv
//! (`$WANDBFS_PYTHON`, default `<repo>/.venv/bin/python`) and helper script
//! `integration/bench/sdk_pipeline.py` (the sync benchmark's SDK pipeline, used with `--no-db`).
//!
//! Environment: `WANDBFS_BENCH_RUNS` (100), `WANDBFS_BENCH_STEPS` (10,000 rows per run),
//! `WANDBFS_BENCH_KEYS` (20), `WANDBFS_BENCH_ROWS_PER_FILE` (100,000: one file per run by
//! default), `WANDBFS_BENCH_JOBS` (4), `WANDBFS_BENCH_SDK_RUNS` (5: the SDK is timed on the
//! first N runs; its rate is what is compared).
//!
//! Printed, in order: the emulator's one-off export build (W&B has exports ready; not part of
//! any timing below); the **fetch side alone** (every run's history pulled through the paged
//! and the parquet source in-process, rows counted and dropped: the cost of the API path); the
//! **end-to-end syncs** (`wandbfs sync --no-parquet` and `wandbfs sync`, each into its own
//! fresh database: fetch + ingest); the SDK's `scan_history()` with and without exports; and
//! the request counts of each path.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use futures::StreamExt;
use secrecy::SecretString;
use wandb_emulator::export::{ExportConfig, ParquetExports};
use wandb_emulator::{Emulator, EmulatorConfig, RouteKind, SeedSpec};
use wandbfs::client::{Client, ClientConfig, Environment, Overrides, RateLimitConfig, settings};
use wandbfs::mirror::embedded::{Durability, TempCluster};
use wandbfs::mirror::{ConnectOptions, Mirror};
use wandbfs::sync::{HistoryRequest, HistorySource, PagedHistory, ParquetHistory, SyncOptions};

const WANDBFS: &str = env!("CARGO_BIN_EXE_wandbfs");
const ENTITY: &str = "emulator";
const PROJECT: &str = "bench";

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn client(emu: &Emulator) -> anyhow::Result<Client> {
    let overrides = Overrides {
        base_url: Some(emu.base_url().to_owned()),
        api_key: Some(SecretString::from(emu.api_key())),
        ..Overrides::default()
    };
    let settings = settings::resolve(&overrides, &Environment::isolated())?;
    let config = ClientConfig {
        rate: RateLimitConfig {
            requests_per_second: 0.0,
            ..ClientConfig::default().rate
        },
        ..ClientConfig::default()
    };
    Ok(Client::new(settings, config)?)
}

/// Pulls every run's whole history through `source`, `jobs` runs at a time; returns rows and
/// seconds.
async fn fetch_all(
    emu: &Emulator,
    source: Arc<dyn HistorySource>,
    jobs: usize,
) -> anyhow::Result<(u64, f64)> {
    let client = client(emu)?;
    let requests: Vec<HistoryRequest> = emu
        .runs(ENTITY, PROJECT)
        .into_iter()
        .filter_map(|key| {
            let info = emu.run_info(&key)?;
            Some(HistoryRequest {
                entity: key.entity,
                project: key.project,
                run: key.name,
                from_step: 0,
                last_step: info.last_step?,
                expected_rows: Some(info.history_line_count),
                run_finished: wandbfs::sync::records::is_terminal(Some(info.state.as_str())),
                exports: None,
            })
        })
        .collect();
    let started = Instant::now();
    let counts = futures::stream::iter(requests.into_iter().map(|request| {
        let source = Arc::clone(&source);
        let client = client.clone();
        async move {
            let mut rows = 0u64;
            let mut batches = source.fetch(&client, request);
            while let Some(batch) = batches.next().await {
                rows += batch?.rows.len() as u64;
            }
            Ok::<u64, wandbfs::sync::SyncError>(rows)
        }
    }))
    .buffer_unordered(jobs)
    .collect::<Vec<_>>()
    .await;
    let seconds = started.elapsed().as_secs_f64();
    let mut rows = 0;
    for count in counts {
        rows += count?;
    }
    Ok((rows, seconds))
}

struct SyncRun {
    rows: u64,
    seconds: f64,
    /// CPU seconds (user + system) of the `wandbfs` process.
    cpu: f64,
    /// Its peak resident set size.
    peak_mib: f64,
    http: serde_json::Value,
}

/// Peak resident set size (VmHWM) of a live process, in KiB.
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// CPU seconds of this process's waited-for children (`cutime + cstime` in `/proc/self/stat`,
/// at 100 ticks per second, Linux's `USER_HZ`).
fn children_cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may contain spaces) start at the state, field 3.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // cutime and cstime are fields 16 and 17, i.e. indexes 13 and 14 after the state.
    (tick(13) + tick(14)) / 100.0
}

fn wandbfs_sync(
    emu: &Emulator,
    url: &str,
    home: &std::path::Path,
    extra: &[&str],
    jobs: u64,
) -> anyhow::Result<SyncRun> {
    let started = Instant::now();
    let cpu_before = children_cpu_seconds();
    let mut out = Command::new(WANDBFS)
        .args([
            "sync",
            &format!("{ENTITY}/{PROJECT}"),
            "--quiet",
            "--json",
            "--max-rps",
            "0",
            "--no-artifacts",
        ])
        .args(["--jobs", &jobs.to_string()])
        .args(extra)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("WANDB_CONFIG_DIR", home.join("wandb"))
        .env("WANDB_BASE_URL", emu.base_url())
        .env("WANDB_API_KEY", emu.api_key())
        .env("WANDBFS_DATABASE_URL", url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("running wandbfs sync")?;
    // Peak resident set size, sampled while it runs (its output is one short JSON line).
    let mut peak_kib = 0;
    while out.try_wait()?.is_none() {
        peak_kib = peak_kib.max(peak_rss_kib(out.id()).unwrap_or(0));
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = out.wait_with_output()?;
    let seconds = started.elapsed().as_secs_f64();
    let cpu = children_cpu_seconds() - cpu_before;
    if !out.status.success() {
        bail!(
            "wandbfs sync failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    Ok(SyncRun {
        rows: report["rows"].as_u64().unwrap_or(0),
        seconds,
        cpu,
        peak_mib: peak_kib as f64 / 1024.0,
        http: report["api"].clone(),
    })
}

/// `scan_history()` over the first `runs` runs with the real SDK; returns rows and seconds.
fn sdk_scan(
    emu: &Emulator,
    home: &std::path::Path,
    runs: u64,
    cache: &str,
) -> anyhow::Result<(u64, f64)> {
    let python = std::env::var_os("WANDBFS_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python"));
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../integration/bench/sdk_pipeline.py");
    if !python.exists() || !script.exists() {
        bail!(
            "the SDK baseline needs {} and {} (set WANDBFS_PYTHON)",
            python.display(),
            script.display()
        );
    }
    let out = Command::new(python)
        .arg(script)
        .args([
            &format!("{ENTITY}/{PROJECT}"),
            &runs.to_string(),
            "unused-dsn",
            "--no-db",
        ])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("WANDB_CONFIG_DIR", home.join("wandb"))
        .env("WANDB_CACHE_DIR", home.join(cache))
        .env("WANDB_BASE_URL", emu.base_url())
        .env("WANDB_API_KEY", emu.api_key())
        .env("WANDB_SILENT", "true")
        .output()
        .context("running the SDK")?;
    if !out.status.success() {
        bail!(
            "SDK scan failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let json: serde_json::Value = String::from_utf8_lossy(&out.stdout)
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .context("no JSON from the SDK")?;
    Ok((
        json["rows"].as_u64().unwrap_or(0),
        json["seconds"].as_f64().unwrap_or(f64::NAN),
    ))
}

fn main() -> anyhow::Result<()> {
    let runs = env_u64("WANDBFS_BENCH_RUNS", 100);
    let steps = env_u64("WANDBFS_BENCH_STEPS", 10_000);
    let keys = env_u64("WANDBFS_BENCH_KEYS", 20) as u32;
    let rows_per_file = env_u64("WANDBFS_BENCH_ROWS_PER_FILE", 100_000) as usize;
    let jobs = env_u64("WANDBFS_BENCH_JOBS", 4);
    let sdk_runs = env_u64("WANDBFS_BENCH_SDK_RUNS", 5).min(runs);
    let home = tempfile::tempdir()?;

    // Every 10th seeded run is still running (index ≡ 7): not exported, paged on both paths.
    let spec = SeedSpec::new(ENTITY, PROJECT)
        .runs(runs)
        .steps(steps)
        .keys(keys)
        .files(1)
        .bigfile(0);
    let emu = Emulator::start_with(EmulatorConfig::default().seed(spec))?;
    let exports =
        ParquetExports::install(&emu, ExportConfig::immediate().rows_per_file(rows_per_file));
    let started = Instant::now();
    let exported = exports.prepare_project(&emu, ENTITY, PROJECT);
    let files: usize = emu
        .runs(ENTITY, PROJECT)
        .iter()
        .filter_map(|k| exports.cached(emu.app(), k))
        .map(|e| e.files.len())
        .sum();
    println!(
        "history via parquet exports vs paging: {runs} runs × {steps} rows × {keys} metrics = {} \
         rows; {exported} runs exported in {files} files (built by the emulator in {:.1}s, before \
         any timing); 2 cores shared by the emulator, Postgres (fsync on) and the client",
        runs * steps,
        started.elapsed().as_secs_f64()
    );

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let options = SyncOptions::default();
    let paged = PagedHistory {
        page_rows: options.history_page_rows,
        max_window: options.max_history_window,
        prefetch: options.history_prefetch,
    };
    let parquet = ParquetHistory {
        paged: paged.clone(),
        ..ParquetHistory::default()
    };

    // Fetch side alone, paging first then exports, then paging again (noise check).
    let mut fetch = Vec::new();
    for (name, source) in [
        ("paging", Arc::new(paged.clone()) as Arc<dyn HistorySource>),
        (
            "parquet",
            Arc::new(parquet.clone()) as Arc<dyn HistorySource>,
        ),
        ("paging", Arc::new(paged.clone()) as Arc<dyn HistorySource>),
        (
            "parquet",
            Arc::new(parquet.clone()) as Arc<dyn HistorySource>,
        ),
    ] {
        emu.reset_counters();
        let (rows, seconds) = runtime.block_on(fetch_all(&emu, source, jobs as usize))?;
        let c = emu.counters();
        println!(
            "fetch only, {name:<8} {rows} rows in {seconds:6.2}s = {:>9.0} rows/s  \
             ({} HistoryPage, {} RunParquetHistory, {} file downloads)",
            rows as f64 / seconds,
            c.operation("HistoryPage"),
            c.operation("RunParquetHistory"),
            c.route(RouteKind::SignedDownload)
        );
        fetch.push((name, rows as f64 / seconds));
    }

    // End to end: each path twice, alternating, each time into a fresh database of one cluster.
    let cluster = TempCluster::start_with(Durability::Durable)?;
    let mut syncs: Vec<(&str, SyncRun)> = Vec::new();
    for round in 0..2 {
        for (name, extra) in [("paging", &["--no-parquet"][..]), ("parquet", &[][..])] {
            let db = format!("bench_{name}_{round}");
            runtime.block_on(Mirror::connect_embedded(
                cluster.cluster(),
                &db,
                &ConnectOptions::default(),
            ))?;
            emu.reset_counters();
            let run = wandbfs_sync(
                &emu,
                &cluster.cluster().connection_string(&db),
                home.path(),
                extra,
                jobs,
            )?;
            let c = emu.counters();
            println!(
                "wandbfs sync, {name:<8} {} rows in {:6.2}s = {:>9.0} rows/s; client CPU {:.2}s = \
                 {:.0} rows per CPU-second, peak RSS {:.0} MiB  (API {}; {} HistoryPage, {} \
                 RunParquetHistory, {} file downloads)",
                run.rows,
                run.seconds,
                run.rows as f64 / run.seconds,
                run.cpu,
                run.rows as f64 / run.cpu,
                run.peak_mib,
                run.http,
                c.operation("HistoryPage"),
                c.operation("RunParquetHistory"),
                c.route(RouteKind::SignedDownload)
            );
            if run.rows != runs * steps {
                bail!(
                    "{name} sync mirrored {} rows, expected {}",
                    run.rows,
                    runs * steps
                );
            }
            syncs.push((name, run));
        }
    }

    // The SDK: scan_history with exports (its parquet path), then with exports hidden.
    let (sdk_pq_rows, sdk_pq_s) = sdk_scan(&emu, home.path(), sdk_runs, "cache-parquet")?;
    emu.set_history_exports(None);
    let (sdk_rows, sdk_s) = sdk_scan(&emu, home.path(), sdk_runs, "cache-paged")?;
    emu.set_history_exports(Some(
        exports as Arc<dyn wandb_emulator::app::HistoryExports>,
    ));
    let sdk_pq = sdk_pq_rows as f64 / sdk_pq_s;
    let sdk = sdk_rows as f64 / sdk_s;
    println!(
        "SDK scan_history, exports  {sdk_pq_rows} rows ({sdk_runs} runs) in {sdk_pq_s:6.2}s = {sdk_pq:>9.0} rows/s"
    );
    println!(
        "SDK scan_history, paging   {sdk_rows} rows ({sdk_runs} runs) in {sdk_s:6.2}s = {sdk:>9.0} rows/s"
    );

    let best = |name: &str| {
        fetch
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, r)| *r)
            .fold(0.0f64, f64::max)
    };
    let (fp, fq) = (best("paging"), best("parquet"));
    let best_sync = |name: &str| {
        syncs
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, r)| r.rows as f64 / r.seconds)
            .fold(0.0f64, f64::max)
    };
    let (sp, sq) = (best_sync("paging"), best_sync("parquet"));
    println!(
        "ratios (best of each): fetch parquet/paging {:.2}×; sync parquet/paging {:.2}×; sync parquet vs SDK \
         scan_history {:.1}× (exports) / {:.1}× (paging); fetch parquet vs SDK {:.1}×",
        fq / fp,
        sq / sp,
        sq / sdk_pq,
        sq / sdk,
        fq / sdk_pq
    );
    Ok(())
}
