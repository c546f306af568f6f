//! `wandb-emulator`: runs the emulator until SIGINT/SIGTERM.
//!
//! Prints machine-parseable `key=value` lines on stdout once listening:
//! `base_url=…`, `direct_url=…`, `entity=…`, `api_key=…` (only for a generated key), `ready`.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use wandb_emulator::export::{ExportConfig, ParquetExports};
use wandb_emulator::{
    Emulator, EmulatorConfig, ErrorBurst, FaultScope, FaultSettings, LatencyFault, RateLimitFault,
    RequestFault, RunKey, SeedSpec,
};

/// A W&B-compatible server for tests: the real wandb SDK logs into it and reads from it.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// API listener address.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Signed-URL (directUrl) listener address.
    #[arg(long, default_value = "127.0.0.1:0")]
    direct_listen: SocketAddr,
    /// Persist state here (restarts keep runs and files).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Accepted API key (repeatable). Prefer --api-key-file: argv is visible to other users.
    #[arg(long = "api-key")]
    api_keys: Vec<String>,
    /// File with accepted API keys, one per line.
    #[arg(long)]
    api_key_file: Option<PathBuf>,
    /// The viewer's entity.
    #[arg(long, default_value = "emulator")]
    entity: String,
    /// Fixture to generate, e.g. "ent/proj:runs=10000,steps=1000,keys=20,files=5" (repeatable;
    /// also seed=N, bigfile=SIZE, artifacts=N, artifact_bigfile=SIZE).
    #[arg(long = "seed")]
    seeds: Vec<SeedSpec>,
    /// Lifetime of signed URLs, in seconds.
    #[arg(long, default_value_t = 3600)]
    signed_url_ttl: u64,
    /// Scope of the fault flags below: graphql, downloads or all.
    #[arg(long, default_value = "graphql")]
    fault_scope: FaultScope,
    /// Fraction of requests answered 429.
    #[arg(long)]
    fault_429: Option<f64>,
    /// Retry-After value sent with injected 429s (seconds, fractions allowed).
    #[arg(long, default_value = "1")]
    fault_retry_after: String,
    /// The next N requests fail with --fault-5xx-status.
    #[arg(long)]
    fault_5xx_burst: Option<u32>,
    /// Status of injected server errors.
    #[arg(long, default_value_t = 503)]
    fault_5xx_status: u16,
    /// Latency added to every request, in milliseconds.
    #[arg(long)]
    fault_latency_ms: Option<u64>,
    /// Fraction of connections reset before answering.
    #[arg(long)]
    fault_reset: Option<f64>,
    /// Fraction of responses truncated (Content-Length promised, half the body sent).
    #[arg(long)]
    fault_truncate: Option<f64>,
    /// Run whose history always answers 502 ("entity/project/run", repeatable).
    #[arg(long)]
    poison_run: Vec<String>,
    /// Server worker threads.
    #[arg(long, default_value_t = 2)]
    worker_threads: usize,
    /// Export the history of ended runs as parquet (`parquetHistory.parquetUrls`) this many
    /// seconds after their last heartbeat (0 = at once). Without it nothing is ever exported.
    #[arg(long)]
    export_delay: Option<f64>,
    /// Rows per exported parquet file.
    #[arg(long, default_value_t = 100_000)]
    export_rows_per_file: usize,
    /// W&B as its users meet it, on the GraphQL endpoint: `wandb` = 200 requests a minute per
    /// key (429 + Retry-After beyond), 150 ms a request, 1.25 s per 1,000 rows returned; the
    /// flags below change each part.
    #[arg(long, value_parser = ["wandb"])]
    profile: Option<String>,
    /// GraphQL requests per API key and window: `200/min`, `5/s`.
    #[arg(long, value_name = "N/UNIT", value_parser = parse_rate_limit)]
    rate_limit: Option<wandb_emulator::profile::RateLimit>,
    /// Latency of every GraphQL request, in milliseconds.
    #[arg(long, value_name = "MS")]
    latency_ms: Option<u64>,
    /// Latency per 1,000 rows a GraphQL reply carries, in milliseconds.
    #[arg(long, value_name = "MS")]
    row_cost_ms: Option<u64>,
    /// GraphQL replies of more rows fail with 500 "context deadline exceeded".
    #[arg(long, value_name = "ROWS")]
    max_rows: Option<u64>,
}

fn parse_rate_limit(text: &str) -> Result<wandb_emulator::profile::RateLimit, String> {
    wandb_emulator::profile::RateLimit::parse(text)
        .ok_or_else(|| format!("not a rate: {text:?} (e.g. 200/min)"))
}

fn profile(args: &Args) -> wandb_emulator::profile::WandbProfile {
    let mut p = match args.profile.as_deref() {
        Some("wandb") => wandb_emulator::profile::WandbProfile::wandb(),
        _ => wandb_emulator::profile::WandbProfile::default(),
    };
    if let Some(limit) = args.rate_limit {
        p.rate_limit = Some(limit);
    }
    if let Some(ms) = args.latency_ms {
        p.latency = Duration::from_millis(ms);
    }
    if let Some(ms) = args.row_cost_ms {
        p.row_cost = Duration::from_millis(ms);
    }
    if let Some(rows) = args.max_rows {
        p.max_rows = Some(rows);
    }
    p
}

fn faults(args: &Args) -> anyhow::Result<FaultSettings> {
    let scope = args.fault_scope;
    let mut f = FaultSettings {
        rate_limit: args.fault_429.map(|fraction| RateLimitFault {
            fraction,
            retry_after: args.fault_retry_after.clone(),
            scope,
        }),
        error_burst: args.fault_5xx_burst.map(|remaining| ErrorBurst {
            remaining,
            status: args.fault_5xx_status,
            scope,
        }),
        latency: args.fault_latency_ms.map(|ms| LatencyFault {
            delay: Duration::from_millis(ms),
            scope,
        }),
        reset: args.fault_reset.map(|x| RequestFault::fraction(x, scope)),
        truncate: args
            .fault_truncate
            .map(|x| RequestFault::fraction(x, scope)),
        ..FaultSettings::default()
    };
    for path in &args.poison_run {
        let parts: Vec<&str> = path.split('/').collect();
        let [e, p, r] = parts[..] else {
            anyhow::bail!("--poison-run wants entity/project/run, got {path:?}");
        };
        f.poisoned_runs.insert(RunKey::new(e, p, r));
    }
    Ok(f)
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let args = Args::parse();
    let mut api_keys = args.api_keys.clone();
    if let Some(path) = &args.api_key_file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading API keys from {}", path.display()))?;
        api_keys.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(String::from),
        );
    }
    let config = EmulatorConfig {
        listen: args.listen,
        direct_listen: args.direct_listen,
        data_dir: args.data_dir.clone(),
        api_keys,
        entity: args.entity.clone(),
        seeds: args.seeds.clone(),
        signed_url_ttl: Duration::from_secs(args.signed_url_ttl),
        faults: faults(&args)?,
        profile: profile(&args),
        worker_threads: args.worker_threads,
        ..EmulatorConfig::default()
    };
    let emulator = Emulator::start_with(config)?;
    if let Some(secs) = args.export_delay {
        let delay = Duration::try_from_secs_f64(secs)
            .with_context(|| format!("--export-delay {secs}: not a duration in seconds"))?;
        ParquetExports::install(
            &emulator,
            ExportConfig::after(delay).rows_per_file(args.export_rows_per_file),
        );
    }
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "base_url={}", emulator.base_url())?;
        writeln!(out, "direct_url={}", emulator.direct_base_url())?;
        writeln!(out, "entity={}", emulator.entity())?;
        if emulator.api_key_was_generated() {
            writeln!(out, "api_key={}", emulator.api_key())?;
        }
        writeln!(out, "ready")?;
        out.flush()?;
    }
    let signals = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    signals.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r,
            _ = term.recv() => Ok(()),
        }
    })?;
    emulator.shutdown();
    Ok(())
}
