//! What a sync did: the machine-readable summary (`wandbfs sync --json`) and the counters the
//! engine fills while it works.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

use crate::client::StatsSnapshot;

/// The summary of one [`SyncEngine::sync`](super::SyncEngine::sync) call.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct SyncReport {
    /// One entry per project touched (run targets count as their project).
    pub projects: Vec<ProjectReport>,
    /// Runs seen in listings.
    pub runs_listed: u64,
    /// Runs whose sync job completed (history, events, files and metadata up to date).
    pub runs_synced: u64,
    /// Runs whose job failed in this sync.
    pub runs_failed: u64,
    /// Runs not attempted because they failed `max_run_failures` times in a row before.
    pub runs_skipped: u64,
    /// Runs newly marked deleted (they are kept in the mirror, flagged).
    pub runs_deleted: u64,
    /// History rows written.
    pub rows: u64,
    /// System-metric events written.
    pub events: u64,
    /// Bytes appended to `history.jsonl` and `system.jsonl`.
    pub bytes: u64,
    /// Run file records stored.
    pub files: u64,
    /// Artifact versions stored.
    pub artifact_versions: u64,
    /// Artifact versions newly marked deleted (gone from W&B's listing, or in a collection that
    /// is gone).
    pub artifact_versions_deleted: u64,
    /// Requests made to W&B.
    pub api: ApiCalls,
    /// Wall time.
    pub duration_secs: f64,
    /// Every run that failed or was skipped, with its error.
    pub failures: Vec<RunFailure>,
    /// Things worth knowing that are not failures (a feature the server lacks, a history whose
    /// row count differs from `historyLineCount`, …).
    pub warnings: Vec<String>,
}

impl SyncReport {
    /// True when nothing failed and nothing was skipped.
    pub fn is_success(&self) -> bool {
        self.failures.is_empty() && self.projects.iter().all(|p| p.error.is_none())
    }
}

/// Requests made to W&B during a sync (from the client's counters).
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq, Eq)]
pub struct ApiCalls {
    /// GraphQL attempts (retries included).
    pub graphql: u64,
    /// HTTP requests to the API host (every attempt and redirect hop).
    pub http: u64,
    /// Attempts that failed retryably (429, 5xx, resets).
    pub retries: u64,
}

impl ApiCalls {
    /// The difference between two client snapshots.
    pub fn between(before: StatsSnapshot, after: StatsSnapshot) -> Self {
        ApiCalls {
            graphql: after
                .graphql_requests
                .saturating_sub(before.graphql_requests),
            http: after.api_requests.saturating_sub(before.api_requests),
            retries: after.retries.saturating_sub(before.retries),
        }
    }
}

/// What happened to one project.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct ProjectReport {
    /// `entity/project`.
    pub project: String,
    /// `first`, `full`, `metadata` (a metadata pass ran) or `incremental`; `run` for a run
    /// target.
    pub mode: String,
    /// Runs seen in listings.
    pub runs_listed: u64,
    /// Runs whose job completed.
    pub runs_synced: u64,
    /// Runs whose job failed.
    pub runs_failed: u64,
    /// Runs skipped as repeatedly failing.
    pub runs_skipped: u64,
    /// Runs newly marked deleted.
    pub runs_deleted: u64,
    /// History rows written.
    pub rows: u64,
    /// A project-level failure (listing failed, project missing), if any.
    pub error: Option<String>,
}

/// A run that failed or was skipped.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct RunFailure {
    /// `entity/project/run_id`.
    pub run: String,
    /// The error (of this sync, or the last recorded one for a skipped run).
    pub error: String,
    /// Consecutive failed attempts recorded in the mirror.
    pub consecutive_failures: i32,
    /// True when the run was not attempted in this sync.
    pub skipped: bool,
}

/// Counters of one project, shared by concurrent run jobs.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    pub(crate) runs_listed: AtomicU64,
    pub(crate) runs_synced: AtomicU64,
    pub(crate) runs_failed: AtomicU64,
    pub(crate) runs_skipped: AtomicU64,
    pub(crate) runs_deleted: AtomicU64,
    pub(crate) rows: AtomicU64,
    pub(crate) events: AtomicU64,
    pub(crate) bytes: AtomicU64,
    pub(crate) files: AtomicU64,
    pub(crate) artifact_versions: AtomicU64,
    pub(crate) artifact_versions_deleted: AtomicU64,
    pub(crate) failures: Mutex<Vec<RunFailure>>,
    pub(crate) warnings: Mutex<Vec<String>>,
}

impl Tally {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn warn(&self, message: impl Into<String>) {
        let message = message.into();
        tracing::warn!("{message}");
        self.warnings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(message);
    }

    pub(crate) fn fail(&self, failure: RunFailure) {
        let counter = if failure.skipped {
            &self.runs_skipped
        } else {
            &self.runs_failed
        };
        Tally::add(counter, 1);
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(failure);
    }

    /// Folds this project's counters into `report` and returns the project's own entry.
    pub(crate) fn finish(
        self,
        report: &mut SyncReport,
        project: String,
        mode: &str,
        error: Option<String>,
    ) -> ProjectReport {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let entry = ProjectReport {
            project,
            mode: mode.to_owned(),
            runs_listed: get(&self.runs_listed),
            runs_synced: get(&self.runs_synced),
            runs_failed: get(&self.runs_failed),
            runs_skipped: get(&self.runs_skipped),
            runs_deleted: get(&self.runs_deleted),
            rows: get(&self.rows),
            error,
        };
        report.runs_listed += entry.runs_listed;
        report.runs_synced += entry.runs_synced;
        report.runs_failed += entry.runs_failed;
        report.runs_skipped += entry.runs_skipped;
        report.runs_deleted += entry.runs_deleted;
        report.rows += entry.rows;
        report.events += get(&self.events);
        report.bytes += get(&self.bytes);
        report.files += get(&self.files);
        report.artifact_versions += get(&self.artifact_versions);
        report.artifact_versions_deleted += get(&self.artifact_versions_deleted);
        report.failures.extend(
            self.failures
                .into_inner()
                .unwrap_or_else(|e| e.into_inner()),
        );
        report.warnings.extend(
            self.warnings
                .into_inner()
                .unwrap_or_else(|e| e.into_inner()),
        );
        entry
    }
}
