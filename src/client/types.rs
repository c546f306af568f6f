//! Domain types returned by the client's operations.
//!
//! JSON that W&B returns as `JSONString` (config, summary, system metrics, history rows,
//! artifact metadata) is kept as the **raw text** W&B sent — W&B-dialect JSON that may contain
//! bare `NaN`/`Infinity` — so nothing is lost; parse it with [`crate::values`]. Timestamps are
//! kept as the server's strings (`2024-01-02T03:04:05`, UTC without zone); use
//! [`parse_timestamp`] for a `DateTime`.

use std::collections::BTreeSet;

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

/// Deserializes a `JSONString` (or, leniently, an inline JSON value) into its JSON text.
pub(crate) fn json_text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let raw: Option<Box<RawValue>> = Option::deserialize(d)?;
    Ok(raw.and_then(|raw| raw_to_text(&raw)))
}

/// A list of `JSONString`s (history rows) as texts; nulls are skipped.
pub(crate) fn json_text_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let raw: Option<Vec<Box<RawValue>>> = Option::deserialize(d)?;
    Ok(raw
        .unwrap_or_default()
        .iter()
        .filter_map(|r| raw_to_text(r))
        .collect())
}

fn raw_to_text(raw: &RawValue) -> Option<String> {
    let text = raw.get();
    if text == "null" {
        None
    } else if text.starts_with('"') {
        serde_json::from_str::<String>(text).ok()
    } else {
        Some(text.to_owned())
    }
}

/// `null` → empty list.
pub(crate) fn null_as_empty<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

/// Integers that some servers send as numeric strings (`projectId`, `internalId`).
pub(crate) fn lenient_i64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum IntOrString {
        Int(i64),
        Float(f64),
        Str(String),
    }
    Ok(match Option::<IntOrString>::deserialize(d)? {
        Some(IntOrString::Int(i)) => Some(i),
        Some(IntOrString::Float(f)) if f.fract() == 0.0 => Some(f as i64),
        Some(IntOrString::Str(s)) => s.trim().parse().ok(),
        _ => None,
    })
}

/// Parses a W&B timestamp (`2024-01-02T03:04:05`, optionally with fraction and/or zone; no
/// zone means UTC).
pub fn parse_timestamp(text: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&Utc));
    }
    NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
        .or_else(|_| NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f"))
        .ok()
        .map(|t| t.and_utc())
}

/// The authenticated user (`Viewer` / `GetViewer`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Viewer {
    /// Opaque user id.
    pub id: Option<String>,
    /// The user's default entity.
    pub entity: Option<String>,
    /// Username.
    pub username: Option<String>,
    /// Email.
    pub email: Option<String>,
    /// Display name (`GetViewer` only).
    pub name: Option<String>,
    /// Admin flag (`GetViewer` only).
    pub admin: Option<bool>,
    /// Teams (entities) the user belongs to.
    pub teams: Vec<String>,
}

/// Enabled server feature flags (`ServerFeaturesQuery`); unknown names are disabled.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServerFeatures {
    enabled: BTreeSet<String>,
}

impl ServerFeatures {
    /// Builds from enabled names.
    pub fn from_enabled<I: IntoIterator<Item = String>>(names: I) -> Self {
        ServerFeatures {
            enabled: names.into_iter().collect(),
        }
    }

    /// Whether `name` (e.g. `TOTAL_COUNT_IN_FILE_CONNECTION`) is enabled.
    pub fn is_enabled(&self, name: &str) -> bool {
        self.enabled.contains(name)
    }

    /// All enabled names.
    pub fn enabled(&self) -> impl Iterator<Item = &str> {
        self.enabled.iter().map(String::as_str)
    }
}

/// A user reference on a project.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct UserRef {
    /// Display name.
    #[serde(default)]
    pub name: Option<String>,
    /// Username.
    #[serde(default)]
    pub username: Option<String>,
}

/// A project (`GetProjects` / `GetProject`).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Project {
    /// Opaque id.
    pub id: String,
    /// Project name.
    pub name: String,
    /// Owning entity.
    #[serde(default)]
    pub entity_name: Option<String>,
    /// Creation time (server text).
    #[serde(default)]
    pub created_at: Option<String>,
    /// Benchmark flag.
    #[serde(default)]
    pub is_benchmark: Option<bool>,
    /// Owner.
    #[serde(default)]
    pub user: Option<UserRef>,
}

/// Which run fields a query selects.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RunFields {
    /// `LightweightRunFragment`: no config, summary, system metrics or history keys (cheap).
    #[default]
    Lightweight,
    /// `RunFragment`: everything `api.run()` loads.
    Full,
}

/// A run (`LightweightRunFragment` / `RunFragment`, plus `projectId` and opt-in `updatedAt`).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Run {
    /// Storage id (opaque; used by mutations).
    pub id: String,
    /// The run id as it appears in paths (`abc123xy`).
    pub name: String,
    /// Human-readable name.
    #[serde(default)]
    pub display_name: Option<String>,
    /// `running`, `finished`, `failed`, `crashed`, `killed`, …
    #[serde(default)]
    pub state: Option<String>,
    /// Tags.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub tags: Vec<String>,
    /// Sweep id.
    #[serde(default)]
    pub sweep_name: Option<String>,
    /// Group.
    #[serde(default)]
    pub group: Option<String>,
    /// Job type.
    #[serde(default)]
    pub job_type: Option<String>,
    /// Git commit.
    #[serde(default)]
    pub commit: Option<String>,
    /// Read-only flag.
    #[serde(default)]
    pub read_only: Option<bool>,
    /// Creation time (server text).
    #[serde(default)]
    pub created_at: Option<String>,
    /// Last heartbeat (server text).
    #[serde(default)]
    pub heartbeat_at: Option<String>,
    /// Last update time; only present when requested (`RunsQuery::include_updated_at`).
    #[serde(default)]
    pub updated_at: Option<String>,
    /// Description.
    #[serde(default)]
    pub description: Option<String>,
    /// Notes.
    #[serde(default)]
    pub notes: Option<String>,
    /// Number of history rows.
    #[serde(default)]
    pub history_line_count: Option<i64>,
    /// The run's user.
    #[serde(default)]
    pub user: Option<UserRef>,
    /// Project internal id.
    #[serde(default, deserialize_with = "lenient_i64")]
    pub project_id: Option<i64>,
    /// Config as W&B-dialect JSON text (`{"key": {"value": v, "desc": d}, "_wandb": …}`);
    /// full fragment only.
    #[serde(default, deserialize_with = "json_text")]
    pub config: Option<String>,
    /// Summary as W&B-dialect JSON text; full fragment only.
    #[serde(default, deserialize_with = "json_text")]
    pub summary_metrics: Option<String>,
    /// Latest system metrics as W&B-dialect JSON text; full fragment only.
    #[serde(default, deserialize_with = "json_text")]
    pub system_metrics: Option<String>,
    /// `historyKeys` JSON text (`{"lastStep": N, "keys": {…}}`); full fragment only.
    #[serde(default, deserialize_with = "json_text")]
    pub history_keys: Option<String>,
}

impl Run {
    /// `historyKeys.lastStep`, when the full fragment was loaded.
    pub fn last_step(&self) -> Option<i64> {
        self.history_keys.as_deref().and_then(last_step_of)
    }
}

/// Extracts `lastStep` from `historyKeys` JSON text.
pub fn last_step_of(history_keys: &str) -> Option<i64> {
    #[derive(Deserialize)]
    struct Keys {
        #[serde(rename = "lastStep", default, deserialize_with = "lenient_i64")]
        last_step: Option<i64>,
    }
    serde_json::from_str::<Keys>(history_keys)
        .ok()
        .and_then(|k| k.last_step)
}

/// One page of a run listing, for callers that manage cursors themselves.
#[derive(Clone, Debug)]
pub struct RunsPage {
    /// The runs on this page.
    pub runs: Vec<Run>,
    /// `project.runCount(filters)`.
    pub run_count: Option<i64>,
    /// `project.internalId`.
    pub project_internal_id: Option<i64>,
    /// Cursor for the next page (last edge's cursor, or `endCursor` on an empty page).
    pub next_cursor: Option<String>,
    /// `pageInfo.hasNextPage`.
    pub has_next_page: bool,
}

/// `historyKeys` of a run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryKeys {
    /// The raw JSON text.
    pub raw: String,
    /// `lastStep` (`None` when the run has no history).
    pub last_step: Option<i64>,
}

/// `parquetHistory { parquetUrls liveData }`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ParquetHistory {
    /// Signed URLs of exported parquet files (fetch without credentials).
    #[serde(default, deserialize_with = "null_as_empty")]
    pub parquet_urls: Vec<String>,
    /// Not-yet-exported rows, each as JSON text.
    #[serde(default, deserialize_with = "json_text_list")]
    pub live_data: Vec<String>,
}

/// A run file (`RunFiles`).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RunFile {
    /// Opaque id (used by `deleteFiles`).
    pub id: String,
    /// Path relative to the run, `/`-separated.
    pub name: String,
    /// Authenticated download URL on the API host.
    #[serde(default)]
    pub url: Option<String>,
    /// Signed storage URL (no credentials; expires).
    #[serde(default)]
    pub direct_url: Option<String>,
    /// Size in bytes.
    #[serde(default, deserialize_with = "lenient_u64")]
    pub size_bytes: Option<u64>,
    /// MIME type.
    #[serde(default)]
    pub mimetype: Option<String>,
    /// Last update (server text).
    #[serde(default)]
    pub updated_at: Option<String>,
    /// Base64 MD5 of the content.
    #[serde(default)]
    pub md5: Option<String>,
}

pub(crate) fn lenient_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Ok(lenient_i64(d)?.and_then(|v| u64::try_from(v).ok()))
}

/// One page of run files.
#[derive(Clone, Debug)]
pub struct RunFilesPage {
    /// Files on this page.
    pub files: Vec<RunFile>,
    /// `run.fileCount`.
    pub file_count: Option<i64>,
    /// `project.internalId` (needed by `deleteFiles`).
    pub project_internal_id: Option<i64>,
    /// Cursor for the next page.
    pub next_cursor: Option<String>,
    /// `pageInfo.hasNextPage`.
    pub has_next_page: bool,
}

/// The project a collection or artifact belongs to (`ProjectInfoFragment`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProjectInfo {
    /// Opaque id.
    pub id: Option<String>,
    /// Internal id.
    pub internal_id: Option<i64>,
    /// Project name.
    pub name: String,
    /// Entity name.
    pub entity: Option<String>,
}

/// An artifact type (`ArtifactTypeFragment`).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ArtifactType {
    /// Opaque id.
    pub id: String,
    /// Type name (`dataset`, `model`, …).
    pub name: String,
    /// Description.
    #[serde(default)]
    pub description: Option<String>,
    /// Creation time.
    #[serde(default)]
    pub created_at: Option<String>,
}

/// An artifact collection (`ArtifactCollectionFragment`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArtifactCollection {
    /// `ArtifactSequence` or `ArtifactPortfolio`.
    pub typename: String,
    /// Opaque id.
    pub id: String,
    /// Collection name.
    pub name: String,
    /// Description.
    pub description: Option<String>,
    /// Creation time.
    pub created_at: Option<String>,
    /// Last update time.
    pub updated_at: Option<String>,
    /// Default artifact type name.
    pub type_name: Option<String>,
    /// Owning project.
    pub project: Option<ProjectInfo>,
    /// Tag names.
    pub tags: Vec<String>,
}

/// An artifact alias with the collection it lives in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArtifactAlias {
    /// The alias (`latest`, `v3`, `best`).
    pub alias: String,
    /// Collection the alias belongs to, when selected.
    pub collection: Option<String>,
}

/// An artifact version (`ArtifactFragment`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Artifact {
    /// Opaque id.
    pub id: String,
    /// The source collection (`artifactSequence.name`).
    pub sequence_name: Option<String>,
    /// The source collection's project.
    pub sequence_project: Option<ProjectInfo>,
    /// Version index (`vN`).
    pub version_index: Option<i64>,
    /// Type name.
    pub type_name: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// Metadata as JSON text.
    pub metadata: Option<String>,
    /// TTL in seconds (≤ 0: none).
    pub ttl_duration_seconds: Option<i64>,
    /// Whether the TTL is inherited.
    pub ttl_is_inherited: Option<bool>,
    /// Tag names.
    pub tags: Vec<String>,
    /// History step at which it was logged.
    pub history_step: Option<i64>,
    /// `PENDING`, `COMMITTED`, `DELETED`.
    pub state: Option<String>,
    /// Total size in bytes.
    pub size: Option<u64>,
    /// Manifest digest.
    pub digest: Option<String>,
    /// `MANIFEST_MD5` / `MANIFEST_XXH128` (only when the server has `ARTIFACT_DIGEST_ALGORITHM`).
    pub digest_algorithm: Option<String>,
    /// Commit hash.
    pub commit_hash: Option<String>,
    /// Number of files.
    pub file_count: Option<i64>,
    /// Creation time.
    pub created_at: Option<String>,
    /// Last update time.
    pub updated_at: Option<String>,
    /// Aliases (when selected).
    pub aliases: Vec<ArtifactAlias>,
}

/// A version of a collection as listed by `ProjectArtifacts` (`edges { version node }`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArtifactVersion {
    /// The version label (`v0`, `v1`, …).
    pub version: Option<String>,
    /// The artifact.
    pub artifact: Artifact,
}

/// An artifact as a member of a collection (`ArtifactMembershipFragment`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArtifactMembership {
    /// Opaque membership id.
    pub id: String,
    /// Version index within the collection.
    pub version_index: Option<i64>,
    /// Creation time.
    pub created_at: Option<String>,
    /// Aliases in this collection.
    pub aliases: Vec<String>,
    /// The collection's `__typename` (`ArtifactSequence` or `ArtifactPortfolio`).
    pub collection_typename: Option<String>,
    /// The collection's name.
    pub collection_name: Option<String>,
    /// The collection's project.
    pub collection_project: Option<ProjectInfo>,
    /// The artifact.
    pub artifact: Artifact,
}

/// A file of an artifact version (`FileFragment` / `FileWithUrlFragment`).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ArtifactFile {
    /// Opaque id (absent in URL-only listings).
    #[serde(default)]
    pub id: Option<String>,
    /// Artifact-relative path.
    pub name: String,
    /// Authenticated URL.
    #[serde(default)]
    pub url: Option<String>,
    /// Size in bytes.
    #[serde(default, deserialize_with = "lenient_u64")]
    pub size_bytes: Option<u64>,
    /// Storage path.
    #[serde(default)]
    pub storage_path: Option<String>,
    /// MIME type.
    #[serde(default)]
    pub mimetype: Option<String>,
    /// Last update.
    #[serde(default)]
    pub updated_at: Option<String>,
    /// Digest.
    #[serde(default)]
    pub digest: Option<String>,
    /// Base64 MD5.
    #[serde(default)]
    pub md5: Option<String>,
    /// Signed URL (no credentials; expires).
    #[serde(default)]
    pub direct_url: Option<String>,
}

/// The reply of `CreateRunFiles`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreatedRunFiles {
    /// The run's storage id.
    pub run_id: Option<String>,
    /// Headers to send with every PUT (`"Name:Value"` split at the first `:`).
    pub upload_headers: Vec<(String, String)>,
    /// One target per requested name; `upload_url: None` means skip.
    pub files: Vec<UploadTarget>,
}

/// Where to PUT one file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UploadTarget {
    /// The file name as requested.
    pub name: String,
    /// Absolute upload URL (relative ones are resolved against the base URL).
    pub upload_url: Option<String>,
}
