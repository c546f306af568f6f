//! Parquet history exports, as W&B produces them for finished runs ("history compaction").
//!
//! Plugged into the emulator through [`crate::app::HistoryExports`]: once a run is in a terminal
//! state (`finished`, `failed`, `crashed`, `killed`) and its last heartbeat is at least
//! [`ExportConfig::delay`] old, the first `parquetHistory` request (or [`ParquetExports::prepare`])
//! writes its history as parquet files into the blob store, and from then on `parquetHistory`
//! answers `parquetUrls` (signed URLs on the direct listener: `GET`/`HEAD`/`Range`, TTL like every
//! signed URL) plus `liveData` = only the rows not covered (steps above the exported ones).
//! Rows appended after the export (a resumed run) are therefore live: a *partial* export. An
//! export is a snapshot: it never changes until [`ParquetExports::forget`] drops it, after which
//! the next request re-exports everything (a later compaction).
//!
//! Generated (seeded) histories are exported lazily like any other: nothing is built until a run
//! is first asked for. Exports are a pure function of the history and the layout, so they are
//! byte-stable across requests and restarts (and deduplicated in the blob store by MD5).
//!
//! File format (see `ARCHITECTURE.md`, "History exports"): [`schema`] decides the columns,
//! [`arrays`] the cell encoding, [`file`] the files.

pub mod arrays;
pub mod file;
pub mod schema;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};

use crate::app::{AppState, HistoryExports};
use crate::blobs::BlobKey;
use crate::emulator::Emulator;
use crate::state::{RunCell, RunKey};
pub use file::Layout;

/// Run states that get exported.
pub const TERMINAL_STATES: &[&str] = &["finished", "failed", "crashed", "killed"];

/// When and how runs are exported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportConfig {
    /// How long after a terminal run's last heartbeat its export appears (`None`: never, until
    /// changed with [`ParquetExports::set_delay`]). Measured on the emulator clock, so tests can
    /// [`Emulator::advance_clock`] past it.
    pub delay: Option<Duration>,
    /// Rows per parquet file (several files per run when the history is longer).
    pub rows_per_file: usize,
    /// Rows per row group inside a file.
    pub row_group_rows: usize,
}

impl Default for ExportConfig {
    /// Immediate exports, 100,000 rows per file, 65,536 rows per row group.
    fn default() -> Self {
        Self {
            delay: Some(Duration::ZERO),
            rows_per_file: 100_000,
            row_group_rows: 65_536,
        }
    }
}

impl ExportConfig {
    /// Exports as soon as a run ends.
    pub fn immediate() -> Self {
        Self::default()
    }

    /// Exports `delay` after a run ends.
    pub fn after(delay: Duration) -> Self {
        Self {
            delay: Some(delay),
            ..Self::default()
        }
    }

    /// Never exports (until [`ParquetExports::set_delay`]).
    pub fn never() -> Self {
        Self {
            delay: None,
            ..Self::default()
        }
    }

    /// Sets the rows per file.
    pub fn rows_per_file(mut self, rows: usize) -> Self {
        self.rows_per_file = rows.max(1);
        self
    }

    /// Sets the rows per row group.
    pub fn row_group_rows(mut self, rows: usize) -> Self {
        self.row_group_rows = rows.max(1);
        self
    }

    fn layout(&self) -> Layout {
        Layout {
            rows_per_file: self.rows_per_file.max(1),
            row_group_rows: self.row_group_rows.max(1),
        }
    }
}

/// One exported file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportedFile {
    /// Blob holding the bytes.
    pub blob: BlobKey,
    /// File name used in its URL.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// Rows in the file.
    pub rows: u64,
    /// Smallest `_step`.
    pub min_step: i64,
    /// Largest `_step`.
    pub max_step: i64,
}

/// A run's export: its files and what they cover.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunExport {
    /// The files, in step order.
    pub files: Vec<ExportedFile>,
    /// History lines covered (the first `lines` lines of the run).
    pub lines: u64,
    /// First step not covered: rows with `_step >= next_live_step` are served live.
    pub next_live_step: i64,
}

impl RunExport {
    /// Rows in all files.
    pub fn rows(&self) -> u64 {
        self.files.iter().map(|f| f.rows).sum()
    }
}

type Slot = Arc<Mutex<Option<Arc<RunExport>>>>;

/// The exports provider: decides eligibility, builds lazily, caches per run.
#[derive(Debug)]
pub struct ParquetExports {
    config: RwLock<ExportConfig>,
    // Keyed by storage id and creation sequence, so a deleted and re-created run is new.
    runs: Mutex<HashMap<(String, u64), Slot>>,
}

impl ParquetExports {
    /// A provider with `config` (not yet installed).
    pub fn new(config: ExportConfig) -> Self {
        Self {
            config: RwLock::new(config),
            runs: Mutex::new(HashMap::new()),
        }
    }

    /// Creates a provider and plugs it into `emulator`.
    pub fn install(emulator: &Emulator, config: ExportConfig) -> Arc<ParquetExports> {
        let exports = Arc::new(Self::new(config));
        emulator.set_history_exports(Some(Arc::clone(&exports) as Arc<dyn HistoryExports>));
        exports
    }

    /// The current configuration.
    pub fn config(&self) -> ExportConfig {
        self.config.read().clone()
    }

    /// Changes the export delay (`None`: stop exporting runs not exported yet).
    pub fn set_delay(&self, delay: Option<Duration>) {
        self.config.write().delay = delay;
    }

    /// Changes the file layout of exports built from now on.
    pub fn set_layout(&self, rows_per_file: usize, row_group_rows: usize) {
        let mut c = self.config.write();
        c.rows_per_file = rows_per_file.max(1);
        c.row_group_rows = row_group_rows.max(1);
    }

    fn slot(&self, run: &RunCell) -> Slot {
        let mut runs = self.runs.lock();
        Arc::clone(runs.entry((run.storage_id.clone(), run.seq)).or_default())
    }

    /// The run's export if it was already built (never builds).
    pub fn cached(&self, app: &AppState, key: &RunKey) -> Option<Arc<RunExport>> {
        let run = app.run(&key.entity, &key.project, &key.name)?;
        let slot = self
            .runs
            .lock()
            .get(&(run.storage_id.clone(), run.seq))
            .cloned()?;
        let guard = slot.lock();
        guard.clone()
    }

    /// The run's export, building it now if the run is eligible.
    pub fn prepare(&self, app: &AppState, key: &RunKey) -> Option<Arc<RunExport>> {
        let run = app.run(&key.entity, &key.project, &key.name)?;
        self.export_for(app, &run)
    }

    /// Builds the exports of every eligible run of a project now (benchmarks warm up with this,
    /// as real W&B would have compacted long finished runs already). Returns how many runs have
    /// an export.
    pub fn prepare_project(&self, emulator: &Emulator, entity: &str, project: &str) -> usize {
        emulator
            .runs(entity, project)
            .iter()
            .filter(|key| self.prepare(emulator.app(), key).is_some())
            .count()
    }

    /// Drops a run's export: the next request exports the run again (all its lines).
    pub fn forget(&self, app: &AppState, key: &RunKey) {
        if let Some(run) = app.run(&key.entity, &key.project, &key.name) {
            self.runs.lock().remove(&(run.storage_id.clone(), run.seq));
        }
    }

    fn eligible(&self, app: &AppState, run: &RunCell) -> bool {
        let Some(delay) = self.config.read().delay else {
            return false;
        };
        let rec = run.record.read();
        let ended = TERMINAL_STATES.contains(&rec.state.as_str());
        let age_micros = app.now().saturating_sub(rec.heartbeat_at);
        ended && rec.history.line_count() > 0 && age_micros >= delay.as_micros() as i64
    }

    fn export_for(&self, app: &AppState, run: &RunCell) -> Option<Arc<RunExport>> {
        let slot = self.slot(run);
        let mut guard = slot.lock();
        if let Some(done) = guard.as_ref() {
            return Some(Arc::clone(done));
        }
        if !self.eligible(app, run) {
            return None;
        }
        let layout = self.config.read().layout();
        let built = blocking(|| build_export(app, run, layout));
        match built {
            Ok(export) => {
                let export = Arc::new(export);
                *guard = Some(Arc::clone(&export));
                Some(export)
            }
            Err(e) => {
                tracing::warn!(run = %run.key, error = %e, "history export failed; serving rows live");
                None
            }
        }
    }
}

impl HistoryExports for ParquetExports {
    fn exports(&self, app: &AppState, run: &RunCell) -> Option<(Vec<String>, i64)> {
        let export = self.export_for(app, run)?;
        let urls = export
            .files
            .iter()
            .filter_map(|f| {
                let blob = app.blobs.get(&f.blob)?;
                Some(app.direct_blob_url(&blob, &f.name))
            })
            .collect();
        Some((urls, export.next_live_step))
    }
}

/// Runs CPU-heavy work without stalling the emulator's other requests on this worker.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

/// Why building an export failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Encoding the files failed.
    #[error(transparent)]
    Build(#[from] file::BuildError),
    /// Storing them failed.
    #[error("storing an export file: {0}")]
    Store(#[from] std::io::Error),
}

fn build_export(app: &AppState, run: &RunCell, layout: Layout) -> Result<RunExport, ExportError> {
    let (files, lines) = {
        let rec = run.record.read();
        let lines = rec.history.line_count();
        (file::build_files(&rec.history, lines, layout)?, lines)
    };
    let mut out = Vec::with_capacity(files.len());
    let mut last_step = i64::MIN;
    for (i, f) in files.into_iter().enumerate() {
        let size = f.bytes.len() as u64;
        let blob = app.blobs.put_bytes(bytes::Bytes::from(f.bytes))?;
        last_step = last_step.max(f.max_step);
        out.push(ExportedFile {
            blob: blob.key().to_string(),
            name: format!("{}_{i:04}.runhistory.parquet", run.key.name),
            size,
            rows: f.rows,
            min_step: f.min_step,
            max_step: f.max_step,
        });
    }
    Ok(RunExport {
        files: out,
        lines,
        next_live_step: last_step.saturating_add(1),
    })
}
