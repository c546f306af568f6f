//! `wandbfs sync <entity>/<project>[/<run_id>]…`: copies W&B data into the mirror.
//!
//! Exit status: 0 when everything synced; 2 when a run or project failed or was skipped (the
//! summary names them); 1 on a fatal error (no credentials, mirror unreachable); 130 when
//! interrupted (SIGINT) — everything committed until then stays, and the next sync resumes.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use wandbfs::client::{self, Client, ClientConfig, Environment, Overrides, Settings, settings};
use wandbfs::mirror::{ConnectOptions, Mirror};
use wandbfs::store::tables::TableCache;
use wandbfs::sync::{NoProgress, ProgressSink, SyncEngine, SyncOptions, SyncReport, SyncTarget};

use crate::cli::{UserError, Verbosity};
use crate::db::DatabaseArgs;
use crate::sync_progress::{BarProgress, LogProgress};

/// `wandbfs sync …`
#[derive(Debug, Args)]
pub struct SyncArgs {
    /// What to sync: `entity/project` (every run) or `entity/project/run_id` (one run).
    #[arg(required = true, value_name = "ENTITY/PROJECT[/RUN_ID]")]
    targets: Vec<String>,

    /// Reconcile everything: every run's record, history counts, events and files, artifacts,
    /// deletions, and runs that failed repeatedly.
    #[arg(long)]
    full: bool,

    /// Runs synced at once.
    #[arg(long, default_value_t = SyncOptions::default().concurrency, value_name = "N")]
    jobs: usize,

    /// Requests per second to the W&B API, shared by all runs in flight (0 = no limit)
    /// [default: 5/s; no limit for a server on this machine (localhost, 127.0.0.0/8, ::1)].
    #[arg(long, env = "WANDBFS_MAX_RPS", value_name = "RATE")]
    max_rps: Option<f64>,

    /// Seconds between metadata passes (a lightweight listing of every run that catches edits
    /// to finished runs and deletions).
    #[arg(long, default_value_t = SyncOptions::default().metadata_interval.as_secs(), value_name = "SECS")]
    metadata_interval: u64,

    /// Target rows per history request.
    #[arg(long, default_value_t = SyncOptions::default().history_page_rows, value_name = "ROWS")]
    history_page_rows: u32,

    /// Do not select or filter on `Run.updatedAt` (rely on the metadata pass for edits).
    #[arg(long)]
    no_updated_at: bool,

    /// Do not sync run file listings.
    #[arg(long)]
    no_files: bool,

    /// Do not sync system-metric events.
    #[arg(long)]
    no_events: bool,

    /// Do not sync artifacts.
    #[arg(long)]
    no_artifacts: bool,

    /// Page all history through the API, even for runs W&B exported as parquet.
    #[arg(long)]
    no_parquet: bool,

    /// Read every run with its own requests (history pages, events, files) instead of many
    /// runs per request. Slower against W&B's request budget; for comparing and debugging.
    #[arg(long)]
    no_batch: bool,

    /// Only history requests expecting at least this many rows look for parquet exports.
    #[arg(long, default_value_t = SyncOptions::default().parquet_min_rows, value_name = "ROWS")]
    parquet_min_rows: u64,

    /// Retry runs that failed repeatedly in earlier syncs.
    #[arg(long)]
    retry_failed: bool,

    /// Keep syncing (live runs' new rows, new runs) until interrupted.
    #[arg(long)]
    watch: bool,

    /// Seconds between syncs in watch mode (implies --watch).
    #[arg(long, value_name = "SECS")]
    interval: Option<u64>,

    /// Print the summary as JSON on stdout (one object per sync in watch mode).
    #[arg(long)]
    json: bool,

    #[command(flatten)]
    database: DatabaseArgs,
}

impl SyncArgs {
    fn options(&self) -> SyncOptions {
        SyncOptions {
            full: self.full,
            concurrency: self.jobs.max(1),
            history_page_rows: self.history_page_rows.max(1),
            metadata_interval: Duration::from_secs(self.metadata_interval),
            use_updated_at: !self.no_updated_at,
            retry_failed: self.retry_failed,
            files: !self.no_files,
            events: !self.no_events,
            artifacts: !self.no_artifacts,
            parquet_exports: !self.no_parquet,
            parquet_min_rows: self.parquet_min_rows,
            batch: !self.no_batch,
            ..SyncOptions::default()
        }
    }
}

/// How progress is shown.
enum Display {
    Bar(Arc<BarProgress>),
    Log,
    Quiet,
}

/// Runs `wandbfs sync`; returns the exit status.
pub fn run(args: SyncArgs, verbosity: &Verbosity) -> anyhow::Result<i32> {
    let targets = args
        .targets
        .iter()
        .map(|t| t.parse::<SyncTarget>())
        .collect::<Result<Vec<_>, _>>()?;
    let display = if verbosity.quiet {
        Display::Quiet
    } else if std::io::stderr().is_terminal() {
        Display::Bar(Arc::new(BarProgress::new()))
    } else {
        Display::Log
    };
    init_logging(&display, verbosity);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let code = runtime.block_on(sync_main(&args, &targets, &display));
    if let Display::Bar(bar) = &display {
        bar.finish();
    }
    code
}

fn init_logging(display: &Display, verbosity: &Verbosity) {
    let builder = tracing_subscriber::fmt()
        .with_env_filter(verbosity.filter())
        .with_target(verbosity.verbose >= 2);
    let _ = match display {
        Display::Bar(bar) => {
            let bar = Arc::clone(bar);
            builder
                .with_writer(move || bar.writer())
                .with_ansi(false)
                .try_init()
        }
        _ => builder.with_writer(std::io::stderr).try_init(),
    };
}

async fn sync_main(
    args: &SyncArgs,
    targets: &[SyncTarget],
    display: &Display,
) -> anyhow::Result<i32> {
    let settings = settings::resolve(&Overrides::default(), &Environment::from_process())?;
    let mut config = ClientConfig::default().apply_settings(&settings);
    match args.max_rps {
        Some(rate) => config.rate.requests_per_second = rate,
        // W&B's cloud limits are what the default budget is for; a server on this machine (a
        // local W&B server, the emulator) has none, and pacing it only slows the sync down.
        None if settings.base_url.is_loopback() => {
            config.rate.requests_per_second = 0.0;
            say(
                display,
                &format!(
                    "{} is on this machine: no request-rate limit (--max-rps to set one)",
                    settings.base_url
                ),
            );
        }
        None => {}
    }
    let client = Client::new(settings.clone(), config.clone())?;
    probe_server(settings, config).await?;
    let target = args.database.target()?;
    let mirror = Mirror::connect(
        &target,
        &ConnectOptions {
            // Each ingest batch holds two connections (rows and chunks are written
            // concurrently); the rest serve listings and bookkeeping.
            max_connections: 2 * args.jobs.max(1) + 4,
            ..ConnectOptions::default()
        },
    )
    .await
    .context("opening the mirror database")?;
    let progress: Arc<dyn ProgressSink> = match display {
        Display::Bar(bar) => Arc::clone(bar) as Arc<dyn ProgressSink>,
        Display::Log => Arc::new(LogProgress::new()),
        Display::Quiet => Arc::new(NoProgress),
    };
    // The synced projects' tables are rendered where the mount and `wandbfs cat` look for
    // them by default, so a first `ls -l` after a sync finds their sizes at hand.
    let engine = SyncEngine::new(client, mirror, args.options())
        .with_progress(progress)
        .with_tables(TableCache::new(TableCache::default_dir()));
    let watch = args.watch || args.interval.is_some();
    let interval = Duration::from_secs(args.interval.unwrap_or(30).max(1));
    let mut engine = engine;
    let mut worst = 0;
    loop {
        let outcome = tokio::select! {
            report = engine.sync(targets) => Some(report),
            _ = tokio::signal::ctrl_c() => None,
        };
        let Some(report) = outcome else {
            say(display, "interrupted; everything committed so far is kept");
            return Ok(130);
        };
        let report = report?;
        print_report(args, display, &report);
        let code = if report.is_success() { 0 } else { 2 };
        worst = worst.max(code);
        if !watch {
            return Ok(worst);
        }
        // Later rounds are incremental whatever the first one was.
        let mut options = engine.options().clone();
        options.full = false;
        engine = engine.with_options(options);
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = tokio::signal::ctrl_c() => return Ok(worst),
        }
    }
}

/// One request, no retries, before anything else: a server that cannot be reached or refuses
/// the key fails the command at once with one clear line, instead of after the retry budget of
/// every project (minutes). Anything else (a 5xx, a 429) is left to the sync's own retries.
async fn probe_server(settings: Settings, mut config: ClientConfig) -> anyhow::Result<()> {
    config.retry.max_attempts = 1;
    let base_url = settings.base_url.to_string();
    let probe = Client::new(settings, config)?;
    match probe.viewer().await {
        Ok(_) => Ok(()),
        Err(e @ client::Error::Unauthenticated { .. }) => Err(e.into()),
        Err(client::Error::RetriesExhausted {
            last,
            last_status: None,
            ..
        }) => Err(UserError::with_hint(
            format!("cannot reach W&B at {base_url}: {last}"),
            "check WANDB_BASE_URL (or `wandb login --host`) and the network",
        )
        .into()),
        Err(e) => {
            tracing::info!("server probe: {e} (the sync retries)");
            Ok(())
        }
    }
}

fn say(display: &Display, line: &str) {
    match display {
        Display::Bar(bar) => bar.println(&format!("wandbfs sync: {line}")),
        Display::Log => eprintln!("wandbfs sync: {line}"),
        Display::Quiet => {}
    }
}

fn print_report(args: &SyncArgs, display: &Display, report: &SyncReport) {
    if args.json {
        match serde_json::to_string(report) {
            Ok(text) => println!("{text}"),
            Err(e) => eprintln!("wandbfs sync: cannot render the summary: {e}"),
        }
        return;
    }
    let lines = summary_lines(report);
    match display {
        Display::Bar(bar) => bar.suspend(|| lines.iter().for_each(|l| println!("{l}"))),
        _ => lines.iter().for_each(|l| println!("{l}")),
    }
}

/// The human-readable summary.
fn summary_lines(report: &SyncReport) -> Vec<String> {
    let mut lines = Vec::new();
    let failed = report.runs_failed + report.runs_skipped;
    lines.push(format!(
        "synced {} runs ({} listed, {} failed, {} newly deleted): {} rows, {} events, {:.1} MB, \
         {} files, {} artifact versions{}; {} API requests ({} retried) in {:.1}s",
        report.runs_synced,
        report.runs_listed,
        failed,
        report.runs_deleted,
        report.rows,
        report.events,
        report.bytes as f64 / 1e6,
        report.files,
        report.artifact_versions,
        match report.artifact_versions_deleted {
            0 => String::new(),
            n => format!(" ({n} newly deleted)"),
        },
        report.api.http,
        report.api.retries,
        report.duration_secs
    ));
    for project in &report.projects {
        if let Some(error) = &project.error {
            lines.push(format!("  project {} failed: {error}", project.project));
        }
    }
    for failure in &report.failures {
        let how = if failure.skipped {
            "skipped (failing)"
        } else {
            "failed"
        };
        lines.push(format!(
            "  run {} {how} [{} consecutive failures]: {}",
            failure.run, failure.consecutive_failures, failure.error
        ));
    }
    for warning in &report.warnings {
        lines.push(format!("  note: {warning}"));
    }
    lines
}
