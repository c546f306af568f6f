//! The sync engine: copies W&B projects and runs into the Postgres mirror, incrementally,
//! concurrently and crash-safely.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use wandbfs::mirror::{ConnectOptions, DatabaseTarget, Mirror};
//! use wandbfs::sync::{SyncEngine, SyncOptions, SyncTarget};
//!
//! let client = wandbfs::client::Client::from_env()?;
//! let (target, _) = DatabaseTarget::resolve(None, Default::default())?;
//! let mirror = Mirror::connect(&target, &ConnectOptions::default()).await?;
//! let engine = SyncEngine::new(client, mirror, SyncOptions::default());
//! let report = engine.sync(&["my-team/my-project".parse()?]).await?;
//! println!("{} runs synced, {} rows", report.runs_synced, report.rows);
//! # Ok(()) }
//! ```
//!
//! # What a sync does
//!
//! Per project ([`project`]): a one-run probe; a listing — incremental (watermarks on
//! `createdAt`/`heartbeatAt`/`updatedAt` with overlap, plus every run not in a terminal state)
//! or a metadata pass over every run (first sync, `--full`, every `metadata_interval`, or when
//! the run count disagrees); deletion diff on metadata passes (runs are *marked*, never
//! dropped); then one job per pending run ([`run_job`]): the full run record, the history tail
//! from the last mirrored step ([`history`]), system events, the file listing; artifacts on
//! metadata passes ([`artifacts`]).
//!
//! # Crash safety
//!
//! Every write is its own transaction and is idempotent or keyed: history and event batches
//! commit together with the stream's sync state (the mirror drops rows at or below the stored
//! last key), file listings are replaced atomically, runs are upserts. A run is marked synced
//! only after all its parts committed, and watermarks move only after the runs they cover are
//! recorded as pending. So `kill -9` at any instant, followed by another sync, converges to
//! exactly the source: nothing lost, nothing duplicated.
//!
//! # Errors
//!
//! A run that fails is recorded in the mirror (`run_sync_state.attempts`, `last_error`) and
//! reported; the others complete. After `max_run_failures` consecutive failures it is skipped
//! (and still reported) until `--retry-failed` or `--full`.

mod artifacts;
mod batch;
mod error;
pub mod history;
mod listing;
mod options;
pub mod parquet;
mod progress;
mod project;
pub mod records;
mod report;
mod run_job;
mod state;

use std::sync::Arc;
use std::time::Instant;

pub use batch::BatchBudget;
pub use error::{Result, SyncError};
pub use history::{HistoryBatch, HistoryRequest, HistorySource, PagedHistory};
pub use options::{SyncOptions, SyncTarget};
pub use parquet::ParquetHistory;
pub use progress::{NoProgress, ProgressEvent, ProgressSink, RunStatus};
pub use report::{ApiCalls, ProjectReport, RunFailure, SyncReport};

use crate::client::Client;
use crate::mirror::Mirror;

/// Syncs W&B projects and runs into a [`Mirror`]. Cheap to share; one engine can run many
/// syncs one after the other (e.g. `--watch`).
#[derive(Clone)]
pub struct SyncEngine {
    client: Client,
    mirror: Mirror,
    options: SyncOptions,
    history: Arc<dyn HistorySource>,
    progress: Arc<dyn ProgressSink>,
    /// Where a project's tables are kept current ([`SyncEngine::with_tables`]).
    tables: Option<crate::store::tables::TableCache>,
}

impl std::fmt::Debug for SyncEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncEngine")
            .field("options", &self.options)
            .field("history", &self.history)
            .finish_non_exhaustive()
    }
}

impl SyncEngine {
    /// An engine with the history source `options` call for — parquet exports plus the paged
    /// live tail ([`ParquetHistory`]) when `parquet_exports` is set, else paging only — and no
    /// progress output.
    pub fn new(client: Client, mirror: Mirror, options: SyncOptions) -> Self {
        let paged = PagedHistory {
            page_rows: options.history_page_rows,
            max_window: options.max_history_window,
            prefetch: options.history_prefetch,
        };
        let history: Arc<dyn HistorySource> = if options.parquet_exports {
            Arc::new(ParquetHistory {
                paged,
                min_rows: options.parquet_min_rows,
                ..ParquetHistory::default()
            })
        } else {
            Arc::new(paged)
        };
        SyncEngine {
            client,
            mirror,
            options,
            history,
            progress: Arc::new(NoProgress),
            tables: None,
        }
    }

    /// Renders a synced project's tables (`runs.parquet`, `runs.jsonl`) into `tables` at the
    /// end of its sync when its runs changed, so that the first listing after a sync — which
    /// needs their exact sizes — reads two small files instead of rendering them (0.5 s for
    /// 10,000 runs). A project whose tables are current costs one indexed statement. A
    /// failure is logged, never the sync's.
    pub fn with_tables(mut self, tables: crate::store::tables::TableCache) -> Self {
        self.tables = Some(tables);
        self
    }

    /// Replaces the history source (e.g. parquet exports plus a live tail; see [`history`]).
    pub fn with_history_source(mut self, source: Arc<dyn HistorySource>) -> Self {
        self.history = source;
        self
    }

    /// Sends progress events to `sink`.
    pub fn with_progress(mut self, sink: Arc<dyn ProgressSink>) -> Self {
        self.progress = sink;
        self
    }

    /// The options in force.
    pub fn options(&self) -> &SyncOptions {
        &self.options
    }

    /// The same engine with other options (the history source and progress sink are kept).
    pub fn with_options(mut self, options: SyncOptions) -> Self {
        self.options = options;
        self
    }

    /// The mirror it writes to.
    pub fn mirror(&self) -> &Mirror {
        &self.mirror
    }

    /// The client it reads with.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Syncs every target, in order. Project and run failures are reported in the
    /// [`SyncReport`]; an `Err` means the sync could not go on (the mirror is unreachable).
    ///
    /// The report's API counts are the client's counters before and after, so they include
    /// requests made concurrently through other clones of the same client.
    pub async fn sync(&self, targets: &[SyncTarget]) -> Result<SyncReport> {
        let started = Instant::now();
        let before = self.client.stats();
        let mut report = SyncReport::default();
        let mut done: Vec<&SyncTarget> = Vec::new();
        for target in targets {
            if done.contains(&target) {
                continue;
            }
            done.push(target);
            project::sync_target(self, target, &mut report).await?;
        }
        report.api = ApiCalls::between(before, self.client.stats());
        report.duration_secs = started.elapsed().as_secs_f64();
        Ok(report)
    }

    /// Refreshes the mirror's file listing of one mirrored run — one `RunFiles` listing, no
    /// history — after a file of it was written or deleted (through the mount or the store),
    /// so that the mirror serves the change at once. `Ok(false)` when the run is not mirrored.
    ///
    /// It replaces the listing in one statement with W&B's complete current one, so it needs
    /// no project lock: a concurrent sync job writes an equally complete listing.
    pub async fn refresh_run_files(&self, entity: &str, project: &str, run: &str) -> Result<bool> {
        use futures::TryStreamExt as _;
        let Some(run_pk) = self.mirror.resolve_run(entity, project, run).await? else {
            return Ok(false);
        };
        let query = crate::client::RunFilesQuery::new(entity, project, run);
        let files: Vec<_> = self
            .client
            .run_files(&query)
            .map_ok(records::file_record)
            .try_collect()
            .await?;
        self.mirror.replace_run_files(run_pk, &files).await?;
        Ok(true)
    }
}
