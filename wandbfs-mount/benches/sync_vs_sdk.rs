//! Sync benchmark: `wandbfs sync` of a generated project next to the pipeline users write
//! today (`scan_history()` per run + psycopg COPY into a JSONB table), measured in the same run
//! against the same emulator and the same Postgres cluster (fsync on for both).
//!
//! Run: `cargo bench -p wandbfs-mount --bench sync_vs_sdk`. Needs the SDK venv
//! (`$WANDBFS_PYTHON`, default `<repo>/.venv/bin/python`) with psycopg:
//! `.venv/bin/pip install -r integration/bench/requirements-bench.txt`.
//!
//! Environment: `WANDBFS_BENCH_RUNS` (100), `WANDBFS_BENCH_STEPS` (10,000; rows per run),
//! `WANDBFS_BENCH_KEYS` (20 metrics per row), `WANDBFS_BENCH_SDK_RUNS` (5: the SDK pipeline is
//! timed on the first N runs of the same project, its rate extrapolated — both raw numbers are
//! printed), `WANDBFS_BENCH_JOBS` (4: `--jobs`), `WANDBFS_BENCH_LATENCY_MS` (0: delay the
//! emulator adds before every GraphQL request and download, for both pipelines — a stand-in for
//! the network and server time that loopback leaves out; the CPU-bound loopback number is the
//! default).
//!
//! Both sides run without a request-rate limit (`--max-rps 0`; the SDK has none), so the
//! numbers compare the pipelines, not W&B's quota. Peak RSS of the `wandbfs` process is read
//! from `/proc/<pid>/status` (VmHWM) while it runs.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use wandb_emulator::{Emulator, EmulatorConfig, FaultScope, FaultSettings, LatencyFault, SeedSpec};
use wandbfs::mirror::embedded::{Durability, TempCluster};
use wandbfs::mirror::testing::{process_cpu_seconds, server_cpu_seconds};
use wandbfs::mirror::{ConnectOptions, Mirror, ProjectRecord, RunRecord, Stream};

const WANDBFS: &str = env!("CARGO_BIN_EXE_wandbfs");

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn python() -> anyhow::Result<PathBuf> {
    let path = std::env::var_os("WANDBFS_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python"));
    let ok = Command::new(&path)
        .args(["-c", "import wandb, psycopg"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        bail!(
            "{} needs wandb and psycopg: .venv/bin/pip install -r \
             integration/bench/requirements-bench.txt (or set WANDBFS_PYTHON)",
            path.display()
        );
    }
    Ok(path)
}

/// Peak resident set size (VmHWM) of a live process, in KiB.
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

struct SdkResult {
    rows: u64,
    runs: u64,
    seconds: f64,
}

fn sdk_pipeline(
    python: &PathBuf,
    emu: &Emulator,
    home: &std::path::Path,
    path: &str,
    runs: u64,
    dsn: &str,
    no_db: bool,
) -> anyhow::Result<SdkResult> {
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../integration/bench/sdk_pipeline.py");
    let mut cmd = Command::new(python);
    cmd.arg(&script)
        .args([path, &runs.to_string(), dsn])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("WANDB_CONFIG_DIR", home.join("wandb"))
        .env("WANDB_CACHE_DIR", home.join("cache"))
        .env("WANDB_BASE_URL", emu.base_url())
        .env("WANDB_API_KEY", emu.api_key())
        .env("WANDB_SILENT", "true");
    if no_db {
        cmd.arg("--no-db");
    }
    let out = cmd.output().context("running the SDK pipeline")?;
    if !out.status.success() {
        bail!(
            "SDK pipeline failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let json: serde_json::Value = text
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .context("no JSON from the SDK pipeline")?;
    Ok(SdkResult {
        rows: json["rows"].as_u64().unwrap_or(0),
        runs: json["runs"].as_u64().unwrap_or(0),
        seconds: json["seconds"].as_f64().unwrap_or(f64::NAN),
    })
}

fn main() -> anyhow::Result<()> {
    let runs = env_u64("WANDBFS_BENCH_RUNS", 100);
    let steps = env_u64("WANDBFS_BENCH_STEPS", 10_000);
    let keys = env_u64("WANDBFS_BENCH_KEYS", 20) as u32;
    let sdk_runs = env_u64("WANDBFS_BENCH_SDK_RUNS", 5).min(runs);
    let jobs = env_u64("WANDBFS_BENCH_JOBS", 4);
    let latency_ms = env_u64("WANDBFS_BENCH_LATENCY_MS", 0);
    let python = python()?;
    let home = tempfile::tempdir()?;

    let cluster = TempCluster::start_with(Durability::Durable)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    for db in ["bench_wandbfs", "bench_sdk"] {
        runtime.block_on(Mirror::connect_embedded(
            cluster.cluster(),
            db,
            &ConnectOptions::default(),
        ))?;
    }
    let spec = SeedSpec::new("emulator", "bench")
        .runs(runs)
        .steps(steps)
        .keys(keys)
        .files(4)
        .bigfile(0);
    let mut faults = FaultSettings::default();
    if latency_ms > 0 {
        faults.latency = Some(LatencyFault {
            delay: Duration::from_millis(latency_ms),
            scope: FaultScope::All,
        });
    }
    let emu = Emulator::start_with(EmulatorConfig::default().seed(spec).faults(faults))?;
    let path = "emulator/bench";
    println!(
        "sync benchmark: {runs} runs × {steps} rows × {keys} metrics = {} rows; 2 cores shared by \
         the emulator, Postgres (fsync on) and the client; {latency_ms} ms added per request",
        runs * steps
    );

    // wandbfs sync (first, full).
    let url = cluster.cluster().connection_string("bench_wandbfs");
    let (emulator_cpu_before, server_cpu_before) = (
        process_cpu_seconds("self"),
        server_cpu_seconds(cluster.cluster()),
    );
    let started = Instant::now();
    let mut child = Command::new(WANDBFS)
        .args([
            "sync",
            path,
            "--quiet",
            "--json",
            "--max-rps",
            "0",
            "--jobs",
        ])
        .arg(jobs.to_string())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home.path())
        .env("WANDB_CONFIG_DIR", home.path().join("wandb"))
        .env("WANDB_BASE_URL", emu.base_url())
        .env("WANDB_API_KEY", emu.api_key())
        .env("WANDBFS_DATABASE_URL", &url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting wandbfs")?;
    let pid = child.id();
    let mut peak_kib = 0;
    let mut client_cpu = 0.0f64;
    while child.try_wait()?.is_none() {
        peak_kib = peak_kib.max(peak_rss_kib(pid).unwrap_or(0));
        // The last reading before exit; a 10 ms poll misses at most the exit itself.
        client_cpu = client_cpu.max(process_cpu_seconds(&pid.to_string()));
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = child.wait_with_output()?;
    let seconds = started.elapsed().as_secs_f64();
    let emulator_cpu = process_cpu_seconds("self") - emulator_cpu_before;
    let server_cpu = server_cpu_seconds(cluster.cluster()) - server_cpu_before;
    if !out.status.success() {
        bail!(
            "wandbfs sync failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let rows = report["rows"].as_u64().unwrap_or(0);
    let ours = rows as f64 / seconds;
    println!(
        "wandbfs sync:        {rows} rows in {seconds:.2}s = {ours:>9.0} rows/s \
         ({} API requests, peak RSS {:.1} MiB, --jobs {jobs})",
        report["api"]["http"],
        peak_kib as f64 / 1024.0
    );
    let per_row = |cpu: f64| cpu * 1e6 / rows.max(1) as f64;
    println!(
        "  CPU per row: wandbfs {:.2} µs, emulator {:.2} µs, Postgres {:.2} µs = {:.2} µs \
         ({:.0}% of the 2 cores over the sync)",
        per_row(client_cpu),
        per_row(emulator_cpu),
        per_row(server_cpu),
        per_row(client_cpu + emulator_cpu + server_cpu),
        100.0 * (client_cpu + emulator_cpu + server_cpu) / (2.0 * seconds)
    );

    // The incremental re-sync of the unchanged project.
    let started = Instant::now();
    let out = Command::new(WANDBFS)
        .args(["sync", path, "--quiet", "--json", "--max-rps", "0"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home.path())
        .env("WANDB_BASE_URL", emu.base_url())
        .env("WANDB_API_KEY", emu.api_key())
        .env("WANDBFS_DATABASE_URL", &url)
        .output()?;
    let again: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    println!(
        "wandbfs re-sync:     {} rows in {:.2}s ({} API requests: nothing changed)",
        again["rows"],
        started.elapsed().as_secs_f64(),
        again["api"]["http"]
    );

    // The SDK pipeline on the first runs of the same project.
    let dsn = cluster.cluster().connection_string("bench_sdk");
    let sdk = sdk_pipeline(&python, &emu, home.path(), path, sdk_runs, &dsn, false)?;
    let theirs = sdk.rows as f64 / sdk.seconds;
    println!(
        "SDK pipeline:        {} rows ({} runs) in {:.2}s = {theirs:>9.0} rows/s \
         (scan_history + psycopg COPY into jsonb; {} rows would take ≈ {:.0}s)",
        sdk.rows,
        sdk.runs,
        sdk.seconds,
        rows,
        rows as f64 / theirs
    );
    let scan = sdk_pipeline(&python, &emu, home.path(), path, sdk_runs, &dsn, true)?;
    println!(
        "SDK scan_history:    {} rows in {:.2}s = {:>9.0} rows/s (reading only, no database)",
        scan.rows,
        scan.seconds,
        scan.rows as f64 / scan.seconds
    );
    let ceiling = runtime.block_on(ingest_ceiling(&cluster, &emu, path, 10.min(runs), jobs))?;
    println!(
        "mirror ingest alone: {:>9.0} rows/s (the same rows already in memory, {jobs} runs in \
         parallel: the database side's ceiling for sync on this machine)",
        ceiling
    );
    println!(
        "ratio: wandbfs sync is {:.1}× the SDK pipeline ({:.1}× scan_history alone); sync runs at \
         {:.0}% of the mirror's ingest ceiling",
        ours / theirs,
        ours / (scan.rows as f64 / scan.seconds),
        100.0 * ours / ceiling
    );
    Ok(())
}

/// Rows/s of the mirror's write path alone: the first `runs` runs' rows, fetched into memory
/// beforehand, ingested `jobs` runs at a time in 5,000-row batches (what sync does, minus the
/// fetching).
async fn ingest_ceiling(
    cluster: &TempCluster,
    emu: &Emulator,
    path: &str,
    runs: u64,
    jobs: u64,
) -> anyhow::Result<f64> {
    let (entity, project) = path.split_once('/').context("entity/project")?;
    let options = ConnectOptions {
        max_connections: 2 * jobs as usize + 2,
        ..ConnectOptions::default()
    };
    let mirror = Mirror::connect_embedded(cluster.cluster(), "bench_ingest", &options).await?;
    let project_pk = mirror
        .upsert_project(&ProjectRecord {
            entity: entity.to_owned(),
            name: project.to_owned(),
            ..ProjectRecord::default()
        })
        .await?;
    let mut work = Vec::new();
    for key in emu.runs(entity, project).into_iter().take(runs as usize) {
        let rows: Vec<(i64, String)> = emu
            .history_rows(&key)
            .context("rows")?
            .into_iter()
            .enumerate()
            .map(|(i, r)| (i as i64, r))
            .collect();
        let run = mirror
            .upsert_run(
                project_pk,
                &RunRecord {
                    run_id: key.name.clone(),
                    ..RunRecord::default()
                },
            )
            .await?
            .run_pk;
        work.push((run, rows));
    }
    let total: usize = work.iter().map(|(_, rows)| rows.len()).sum();
    let started = Instant::now();
    let semaphore = std::sync::Arc::new(tokio::sync::Semaphore::new(jobs as usize));
    let mut tasks = Vec::new();
    for (run, rows) in work {
        let mirror = mirror.clone();
        let permit = std::sync::Arc::clone(&semaphore).acquire_owned().await?;
        tasks.push(tokio::spawn(async move {
            for batch in rows.chunks(5_000) {
                mirror.ingest_batch(run, Stream::History, batch).await?;
            }
            drop(permit);
            Ok::<(), wandbfs::mirror::MirrorError>(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(total as f64 / started.elapsed().as_secs_f64())
}
