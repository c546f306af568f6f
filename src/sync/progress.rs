//! Progress events, for a progress bar or log lines. The engine reports; the frontend (the
//! `wandbfs` command) decides how to show it.

/// How a run's job ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunStatus {
    /// History, events, files and metadata are up to date.
    Synced,
    /// The job failed; the error is recorded.
    Failed,
    /// Not attempted: the run failed too often before.
    Skipped,
    /// The run no longer exists upstream; it is marked deleted.
    Deleted,
}

/// Something the engine did.
#[derive(Clone, Debug, PartialEq)]
pub enum ProgressEvent {
    /// A project's listings are done and its run jobs are about to start.
    ProjectPlanned {
        /// `entity/project`.
        project: String,
        /// Runs seen in listings.
        listed: u64,
        /// Runs that need a job.
        jobs: u64,
        /// History rows expected to be fetched (`historyLineCount` minus what is mirrored), for
        /// an ETA.
        expected_rows: u64,
    },
    /// History rows (and their bytes) of one run were committed.
    Rows {
        /// `entity/project/run_id`.
        run: String,
        /// Rows in this batch.
        rows: u64,
        /// Bytes appended to `history.jsonl`.
        bytes: u64,
    },
    /// A run's job ended.
    RunFinished {
        /// `entity/project/run_id`.
        run: String,
        /// How.
        status: RunStatus,
        /// The error, for failed runs.
        error: Option<String>,
    },
    /// A project is done.
    ProjectFinished {
        /// `entity/project`.
        project: String,
    },
}

/// Receives [`ProgressEvent`]s. Called from the engine's tasks; implementations must be cheap
/// and must not block.
pub trait ProgressSink: Send + Sync {
    /// One event.
    fn event(&self, event: ProgressEvent);
}

/// Discards every event.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoProgress;

impl ProgressSink for NoProgress {
    fn event(&self, _event: ProgressEvent) {}
}
