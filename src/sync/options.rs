//! What to sync ([`SyncTarget`]) and how ([`SyncOptions`]), with the reasoning behind each
//! default.

use std::str::FromStr;
use std::time::Duration;

use super::error::SyncError;

/// One thing to sync: a whole project, or one run of it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SyncTarget {
    /// Entity (user or team).
    pub entity: String,
    /// Project.
    pub project: String,
    /// One run id (`name`), or `None` for the whole project.
    pub run: Option<String>,
}

impl SyncTarget {
    /// A whole project.
    pub fn project(entity: impl Into<String>, project: impl Into<String>) -> Self {
        SyncTarget {
            entity: entity.into(),
            project: project.into(),
            run: None,
        }
    }

    /// One run.
    pub fn run(
        entity: impl Into<String>,
        project: impl Into<String>,
        run: impl Into<String>,
    ) -> Self {
        SyncTarget {
            entity: entity.into(),
            project: project.into(),
            run: Some(run.into()),
        }
    }
}

impl std::fmt::Display for SyncTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.run {
            Some(run) => write!(f, "{}/{}/{run}", self.entity, self.project),
            None => write!(f, "{}/{}", self.entity, self.project),
        }
    }
}

impl FromStr for SyncTarget {
    type Err = SyncError;

    /// Parses `entity/project` or `entity/project/run_id` (a `runs/` segment before the run id,
    /// as in W&B URLs, is accepted too).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = |reason: &str| SyncError::InvalidTarget {
            target: text.to_owned(),
            reason: reason.to_owned(),
        };
        let parts: Vec<&str> = text.trim().trim_matches('/').split('/').collect();
        if parts.iter().any(|p| p.trim().is_empty()) {
            return Err(invalid("empty path segment"));
        }
        match parts.as_slice() {
            [entity, project] => Ok(SyncTarget::project(*entity, *project)),
            [entity, project, run] | [entity, project, "runs", run] => {
                Ok(SyncTarget::run(*entity, *project, *run))
            }
            _ => Err(invalid("expected entity/project or entity/project/run_id")),
        }
    }
}

/// How a sync behaves. `SyncOptions::default()` is what `wandbfs sync` does without flags.
#[derive(Clone, Debug)]
pub struct SyncOptions {
    /// Reconcile everything: list every run with the full fragment, re-check every run's
    /// history counts, events and files, sync artifacts, diff deletions. Default **false**
    /// (incremental).
    pub full: bool,
    /// Runs synced at once (history fetch + ingest in flight). Default **4**: on a 2-core
    /// machine that keeps two Postgres backends and the HTTP side busy; all runs share the
    /// client's one rate budget, so more runs in flight never means more requests per second.
    pub concurrency: usize,
    /// Target rows per history request. Default **5,000**: a page of ~20-metric rows is ~3 MB,
    /// large enough that per-request latency stops dominating, small enough to keep memory flat
    /// and a single W&B query short (the SDK pages 1,000 steps at a time).
    pub history_page_rows: u32,
    /// Upper bound of a history request's step window. Windows are sized from the run's row
    /// density (`historyLineCount` over the remaining steps) and adapted page by page; this
    /// bound caps the damage of a wrong guess on runs with very uneven step spacing. Default
    /// **1,000,000** steps.
    pub max_history_window: i64,
    /// History pages fetched ahead of the one being written. Default **2** (fetching overlaps
    /// the Postgres COPY; memory stays bounded by `(prefetch + 2) × page` per run).
    pub history_prefetch: usize,
    /// How often the cheap metadata pass (a lightweight listing of *every* run: edits to
    /// finished runs on servers without `updatedAt`, deletions, runs the watermark missed)
    /// runs. Default **1 hour**. `Duration::ZERO` runs it on every sync.
    pub metadata_interval: Duration,
    /// How far incremental listings reach back before the stored `createdAt` / `heartbeatAt` /
    /// `updatedAt` watermarks, so runs that become visible late (index lag, clock skew, the
    /// second-resolution timestamps W&B returns) are not missed. Default **5 minutes**.
    pub watermark_overlap: Duration,
    /// Select `Run.updatedAt` and filter on it, so edits to finished runs are caught by every
    /// incremental sync. The SDK never selects it; if the server rejects the field the engine
    /// falls back to the metadata pass for the rest of the sync. Default **true**.
    pub use_updated_at: bool,
    /// After this many consecutive failed attempts a run is skipped (and reported) by later
    /// syncs, so one poisoned run does not spend the retry budget on every sync. Default **3**.
    pub max_run_failures: i32,
    /// Retry runs that reached `max_run_failures` (also implied by `full`). Default **false**.
    pub retry_failed: bool,
    /// Sync run file listings (names, sizes, MD5s; bytes stay in W&B). Default **true**.
    pub files: bool,
    /// Sync system-metric events (`system.jsonl`). Default **true**.
    pub events: bool,
    /// Sync artifact types, collections, versions, aliases and manifests (on the first sync,
    /// metadata passes and `--full`). Default **true**.
    pub artifacts: bool,
    /// Read finished runs' history from W&B's parquet exports when the server has them
    /// (`parquetHistory`), paging only the rows not exported yet. Default **true**; without
    /// exports a run is paged as before (see `sync::parquet`).
    pub parquet_exports: bool,
    /// Only requests expecting at least this many rows ask for exports; smaller ones (live
    /// tails, short runs) are paged directly or come in batched reads. Default **5,000**: the
    /// most a run may have to be read in a batch (`BatchBudget::run_rows`), so every finished
    /// run too big for a batch reads its exports — their listing rides in the batch, and the
    /// files are object storage, outside W&B's request budget, whereas a 5,000-row page is a
    /// request of the budget and ~7 s of W&B's server time.
    pub parquet_min_rows: u64,
    /// First `samples` bound of an `events` request (there is no step window for events; when a
    /// reply fills the bound, the request is repeated with a larger one). Default **10,000**
    /// (~40 hours of 15-second samples).
    pub events_samples: u32,
    /// How long to wait for another sync of the same project to finish before reporting
    /// [`SyncError::Busy`](super::SyncError::Busy). Default **0** (turned away at once: the
    /// command line says so and a `--watch` loop retries next round); the mount waits when a
    /// file's first access needs its run synced while its background sync holds the project.
    pub lock_wait: Duration,
    /// Read the history, events and files of many short runs in one request each
    /// (`sync::batch`); every run is still checked complete and read per run when it is not.
    /// Default **true**; off reads every run by itself (as before, and to compare with).
    pub batch: bool,
    /// What one batched request may carry.
    pub batch_budget: super::BatchBudget,
}

impl Default for SyncOptions {
    fn default() -> Self {
        SyncOptions {
            full: false,
            concurrency: 4,
            history_page_rows: 5_000,
            max_history_window: 1_000_000,
            history_prefetch: 2,
            metadata_interval: Duration::from_secs(3600),
            watermark_overlap: Duration::from_secs(300),
            use_updated_at: true,
            max_run_failures: 3,
            retry_failed: false,
            files: true,
            events: true,
            artifacts: true,
            events_samples: 10_000,
            parquet_exports: true,
            parquet_min_rows: 5_000,
            lock_wait: Duration::ZERO,
            batch: true,
            batch_budget: super::BatchBudget::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse() {
        assert_eq!(
            "ent/proj".parse::<SyncTarget>().unwrap(),
            SyncTarget::project("ent", "proj")
        );
        assert_eq!(
            "ent/proj/abc123".parse::<SyncTarget>().unwrap(),
            SyncTarget::run("ent", "proj", "abc123")
        );
        assert_eq!(
            "/ent/proj/runs/abc123/".parse::<SyncTarget>().unwrap(),
            SyncTarget::run("ent", "proj", "abc123")
        );
        for bad in ["ent", "ent//x", "a/b/c/d", ""] {
            assert!(bad.parse::<SyncTarget>().is_err(), "{bad}");
        }
        assert_eq!(SyncTarget::run("e", "p", "r").to_string(), "e/p/r");
    }
}
