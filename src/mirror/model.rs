//! Plain mirror-side records: what the sync engine hands to the mirror, and what reads return.
//!
//! These types do not depend on the API client's; the engine maps client responses onto them.
//! JSON *text* fields carry W&B's text verbatim (bare `NaN`/`Infinity` allowed): the mirror
//! keeps it byte for byte for the synthetic files and derives the SQL (`jsonb`) form itself.

use chrono::{DateTime, Utc};

/// Mirror key of a project (`wandb.projects.project_pk`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProjectPk(pub i64);

/// Mirror key of a run (`wandb.runs.run_pk`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RunPk(pub i64);

/// Mirror key of an artifact type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ArtifactTypePk(pub i64);

/// Mirror key of an artifact collection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CollectionPk(pub i64);

/// Mirror key of an artifact version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VersionPk(pub i64);

/// A project as listed by W&B.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProjectRecord {
    /// Entity (user or team) name.
    pub entity: String,
    /// Project name.
    pub name: String,
    /// W&B `id`.
    pub storage_id: Option<String>,
    /// W&B `internalId`.
    pub internal_id: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// Creation time.
    pub created_at: Option<DateTime<Utc>>,
}

/// A run as W&B describes it.
///
/// Fields marked *partial* are only present in W&B's full run fragment: `None` there means "not
/// fetched, keep what the mirror has", so a lightweight listing never erases them. Every other
/// field is authoritative on each upsert (`None` clears it).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RunRecord {
    /// The run id (W&B `name`; 8 characters by default), unique within its project.
    pub run_id: String,
    /// W&B `id` (storage id).
    pub storage_id: Option<String>,
    /// `displayName`.
    pub display_name: Option<String>,
    /// `state`: running, finished, failed, crashed, killed, preempting, preempted, pending.
    pub state: Option<String>,
    /// `user.username`.
    pub username: Option<String>,
    /// `user.name`.
    pub user_full_name: Option<String>,
    /// `group`.
    pub group: Option<String>,
    /// `jobType`.
    pub job_type: Option<String>,
    /// `sweepName`.
    pub sweep: Option<String>,
    /// `tags`.
    pub tags: Vec<String>,
    /// `notes`.
    pub notes: Option<String>,
    /// `description`.
    pub description: Option<String>,
    /// `commit`.
    pub commit: Option<String>,
    /// `readOnly`.
    pub read_only: Option<bool>,
    /// `createdAt`.
    pub created_at: Option<DateTime<Utc>>,
    /// `heartbeatAt`.
    pub heartbeat_at: Option<DateTime<Utc>>,
    /// `updatedAt`, where the server offers it.
    pub updated_at: Option<DateTime<Utc>>,
    /// `historyLineCount`.
    pub history_line_count: Option<i64>,
    /// *Partial.* `config` JSONString text, verbatim (`{"k": {"value": v, "desc": d}, ...}`).
    pub config: Option<String>,
    /// *Partial.* `summaryMetrics` JSONString text, verbatim.
    pub summary: Option<String>,
    /// *Partial.* `systemMetrics` JSONString text, verbatim.
    pub system_metrics: Option<String>,
    /// *Partial.* `historyKeys` (a JSON-typed field, so strict JSON).
    pub history_keys: Option<serde_json::Value>,
}

impl RunRecord {
    /// `historyKeys.lastStep`, when present.
    pub fn last_step(&self) -> Option<i64> {
        self.history_keys.as_ref()?.get("lastStep")?.as_i64()
    }
}

/// A run file as listed by `RunFiles`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RunFileRecord {
    /// Path relative to the run, `/`-separated.
    pub name: String,
    /// `sizeBytes`.
    pub size_bytes: Option<i64>,
    /// `md5` (base64).
    pub md5: Option<String>,
    /// `updatedAt`.
    pub updated_at: Option<DateTime<Utc>>,
    /// `mimetype`.
    pub mimetype: Option<String>,
    /// `url`: the authenticated download URL (signed `directUrl`s expire and are not kept).
    pub url: Option<String>,
    /// `id`.
    pub storage_id: Option<String>,
}

/// An artifact type of a project.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ArtifactTypeRecord {
    /// Type name (`dataset`, `model`, …).
    pub name: String,
    /// W&B id.
    pub storage_id: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// Creation time.
    pub created_at: Option<DateTime<Utc>>,
}

/// An artifact collection (sequence or portfolio).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ArtifactCollectionRecord {
    /// Collection name (unique within the project).
    pub name: String,
    /// `sequence` or `portfolio` (from `__typename`).
    pub kind: String,
    /// W&B id.
    pub storage_id: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// Tags.
    pub tags: Vec<String>,
    /// Creation time.
    pub created_at: Option<DateTime<Utc>>,
    /// Update time.
    pub updated_at: Option<DateTime<Utc>>,
}

/// One artifact version in a collection.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ArtifactVersionRecord {
    /// `versionIndex` (the N of `vN`).
    pub version_index: i32,
    /// Artifact id.
    pub storage_id: Option<String>,
    /// Manifest digest.
    pub digest: Option<String>,
    /// `digestAlgorithm`, when the server reports it.
    pub digest_algorithm: Option<String>,
    /// Total size.
    pub size_bytes: Option<i64>,
    /// Number of files.
    pub file_count: Option<i64>,
    /// `PENDING`, `COMMITTED` or `DELETED`.
    pub state: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// `metadata` JSONString text, verbatim.
    pub metadata: Option<String>,
    /// `commitHash`.
    pub commit_hash: Option<String>,
    /// `historyStep`.
    pub history_step: Option<i64>,
    /// `ttlDurationSeconds` (≤ 0 = none).
    pub ttl_seconds: Option<i64>,
    /// Creation time.
    pub created_at: Option<DateTime<Utc>>,
    /// Update time.
    pub updated_at: Option<DateTime<Utc>>,
    /// Aliases pointing at this version (`latest`, …); they move here from other versions.
    pub aliases: Vec<String>,
}

/// One entry of an artifact manifest.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ManifestEntryRecord {
    /// Artifact-relative path.
    pub path: String,
    /// Digest (base64 MD5, or an ETag/URI for references).
    pub digest: Option<String>,
    /// Size in bytes.
    pub size_bytes: Option<i64>,
    /// Reference URI for reference entries.
    pub ref_uri: Option<String>,
    /// Id of the version that first stored these bytes.
    pub birth_artifact_id: Option<String>,
    /// `extra` object.
    pub extra: Option<serde_json::Value>,
}

/// Whether a run used or produced an artifact version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArtifactDirection {
    /// `run.use_artifact` (input).
    Input,
    /// `run.log_artifact` (output).
    Output,
}

impl ArtifactDirection {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ArtifactDirection::Input => "input",
            ArtifactDirection::Output => "output",
        }
    }
}

/// A run as stored in the mirror: everything the synthetic files of a run are rendered from
/// (`crate::store::render` turns it into `metadata.json`, `config.json`, `summary.json`).
#[derive(Clone, Debug, PartialEq)]
pub struct RunMetadata {
    /// Entity name.
    pub entity: String,
    /// Project name.
    pub project: String,
    /// Run id.
    pub id: String,
    /// Display name.
    pub display_name: Option<String>,
    /// State.
    pub state: Option<String>,
    /// User name (`username`).
    pub user: Option<String>,
    /// User's full name.
    pub user_full_name: Option<String>,
    /// Group.
    pub group: Option<String>,
    /// Job type.
    pub job_type: Option<String>,
    /// Sweep.
    pub sweep: Option<String>,
    /// Tags.
    pub tags: Vec<String>,
    /// Notes.
    pub notes: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// Git commit.
    pub commit: Option<String>,
    /// Creation time.
    pub created_at: Option<DateTime<Utc>>,
    /// Last heartbeat.
    pub heartbeat_at: Option<DateTime<Utc>>,
    /// Last update, where known.
    pub updated_at: Option<DateTime<Utc>>,
    /// `historyKeys.lastStep`.
    pub last_step: Option<i64>,
    /// `historyLineCount`.
    pub history_line_count: Option<i64>,
    /// W&B storage id.
    pub storage_id: Option<String>,
    /// True once the run disappeared from W&B.
    pub deleted: bool,
    /// When the mirror noticed the deletion.
    pub deleted_at: Option<DateTime<Utc>>,
    /// Last time the mirror refreshed this run.
    pub last_synced_at: DateTime<Utc>,
    /// `config` as W&B's JSON text, verbatim.
    pub config: Option<String>,
    /// `summaryMetrics` as W&B's JSON text, verbatim.
    pub summary: Option<String>,
    /// `systemMetrics` as W&B's JSON text, verbatim.
    pub system_metrics: Option<String>,
    /// Mirror key.
    pub run_pk: RunPk,
}
