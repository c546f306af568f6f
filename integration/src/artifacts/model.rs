//! The artifact state model: per project, artifact types and sequences (collections); globally,
//! artifact versions by number; per run, the artifacts it used.
//!
//! Everything sits in one [`ArtifactWorld`] behind the [`ArtifactStore`] lock. Resolvers copy out
//! what they need ([`ArtifactRecord`] is cheap to clone: committed files are shared behind an
//! `Arc`) and never hold this lock while taking the run world's locks.
//!
//! Version numbers (`versionIndex`) are assigned at commit, in commit order, so a pending or
//! abandoned upload leaves no gap; a pending version has `versionIndex: null`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use base64::Engine as _;
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};

use crate::blobs::BlobKey;
use crate::state::{Micros, RunKey, unb64};

/// `ArtifactState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ArtifactState {
    /// Created, files may still be uploading.
    Pending,
    /// Committed: immutable and visible.
    Committed,
    /// Deleted (kept so ids stay unique; invisible to lookups).
    Deleted,
}

impl ArtifactState {
    /// The GraphQL enum value.
    pub fn as_str(self) -> &'static str {
        match self {
            ArtifactState::Pending => "PENDING",
            ArtifactState::Committed => "COMMITTED",
            ArtifactState::Deleted => "DELETED",
        }
    }
}

/// An artifact type of a project (`dataset`, `model`, …).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TypeRecord {
    /// Number (→ `ArtifactType.id`).
    pub num: u64,
    /// Name.
    pub name: String,
    /// Description.
    pub description: Option<String>,
    /// Creation time.
    pub created_at: Micros,
}

/// Bytes a sequence already stores, keyed by base64 MD5 (the V2 layout deduplicates uploads per
/// collection: identical content is uploaded once and keeps its birth artifact).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StoredContent {
    /// The version that first stored the bytes (`birthArtifactID`).
    pub birth: u64,
    /// Where the bytes are.
    pub blob: BlobKey,
}

/// A sequence (`ArtifactSequence`, the SDK's "collection"): versions of one artifact name.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SequenceRecord {
    /// Number (→ `ArtifactSequence.id`).
    pub num: u64,
    /// Name.
    pub name: String,
    /// Type name.
    pub type_name: String,
    /// Description.
    pub description: Option<String>,
    /// Creation time.
    pub created_at: Micros,
    /// Last change (a commit, alias move, …).
    pub updated_at: Micros,
    /// Committed versions: `versions[i]` is the artifact number of `v<i>`.
    pub versions: Vec<u64>,
    /// Alias → artifact number (`latest` and custom aliases; never `vN`).
    pub aliases: BTreeMap<String, u64>,
    /// Stored content by base64 MD5.
    pub stored: BTreeMap<String, StoredContent>,
}

/// One file of a committed version (a manifest entry).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FileEntry {
    /// Artifact-relative path.
    pub path: String,
    /// Manifest digest (base64 MD5 for stored files).
    pub digest: String,
    /// Base64 MD5 of the content, when stored here.
    pub md5: Option<String>,
    /// Size in bytes.
    pub size: u64,
    /// Content (none for references).
    pub blob: Option<BlobKey>,
    /// Reference URI, for reference entries.
    pub reference: Option<String>,
    /// `birthArtifactID` as written in the manifest.
    pub birth_artifact_id: Option<String>,
    /// MIME type.
    pub mimetype: String,
}

/// A file announced by `createArtifactFiles` for a pending version.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PendingFile {
    /// Base64 MD5 the client announced (the upload must match it).
    pub md5: String,
    /// Birth artifact (this version, or the one that stored the bytes before).
    pub birth: u64,
    /// Content, once uploaded (or already stored).
    pub blob: Option<BlobKey>,
    /// MIME type the client announced.
    pub mimetype: Option<String>,
}

/// The manifest of a version.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ManifestRecord {
    /// File name (`wandb_manifest.json`).
    pub name: String,
    /// Base64 MD5 the client announced ("" until the second `createArtifactManifest`).
    pub digest: String,
    /// Uploaded manifest JSON.
    pub blob: Option<BlobKey>,
    /// Last change.
    pub updated_at: Micros,
}

/// One artifact version.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ArtifactRecord {
    /// Number (→ `Artifact.id`).
    pub num: u64,
    /// Owning entity.
    pub entity: String,
    /// Owning project.
    pub project: String,
    /// Sequence name.
    pub sequence: String,
    /// Type name.
    pub type_name: String,
    /// `v<N>` once committed.
    pub version_index: Option<u32>,
    /// State.
    pub state: ArtifactState,
    /// Artifact digest (hex, from the client or computed).
    pub digest: String,
    /// `MANIFEST_MD5` or `MANIFEST_XXH128`.
    pub digest_algorithm: String,
    /// Description.
    pub description: Option<String>,
    /// Metadata JSON text.
    pub metadata: Option<String>,
    /// TTL in seconds (none = disabled/inherited).
    pub ttl_seconds: Option<i64>,
    /// History step at logging time.
    pub history_step: Option<i64>,
    /// Version tags.
    pub tags: Vec<String>,
    /// Creation time.
    pub created_at: Micros,
    /// Last change.
    pub updated_at: Micros,
    /// Commit time.
    pub committed_at: Option<Micros>,
    /// The run that logged it.
    pub created_by: Option<RunKey>,
    /// Client-side id (`clientID`).
    pub client_id: Option<String>,
    /// Aliases requested at creation, applied at commit.
    pub requested_aliases: Vec<String>,
    /// The manifest.
    pub manifest: Option<ManifestRecord>,
    /// Files announced while pending, by path.
    pub pending_files: BTreeMap<String, PendingFile>,
    /// Files of the committed version, sorted by path.
    #[serde(with = "arc_vec")]
    pub files: Arc<Vec<FileEntry>>,
    /// Total size (sum of entry sizes).
    pub size: u64,
}

impl ArtifactRecord {
    /// `Artifact.id`.
    pub fn gid(&self) -> String {
        gid("Artifact", self.num)
    }

    /// `name:vN` (or `name:pending` before commit).
    pub fn display_name(&self) -> String {
        match self.version_index {
            Some(v) => format!("{}:v{v}", self.sequence),
            None => format!("{}:pending", self.sequence),
        }
    }
}

/// Serde for `Arc<Vec<T>>` without serde's `rc` feature.
mod arc_vec {
    use std::sync::Arc;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer, T: Serialize>(
        v: &Arc<Vec<T>>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        v.as_slice().serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
        d: D,
    ) -> Result<Arc<Vec<T>>, D::Error> {
        Vec::<T>::deserialize(d).map(Arc::new)
    }
}

/// Artifact state of one project.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ProjectArtifacts {
    /// Entity.
    pub entity: String,
    /// Project.
    pub project: String,
    /// Types by name.
    pub types: BTreeMap<String, TypeRecord>,
    /// Sequences by name.
    pub sequences: BTreeMap<String, SequenceRecord>,
}

/// Bytes of an in-progress multipart upload (kept in memory only).
#[derive(Debug, Default)]
pub struct MultipartUpload {
    /// The version the file belongs to.
    pub artifact: u64,
    /// Artifact-relative path.
    pub path: String,
    /// Expected parts: number → hex MD5 the client announced.
    pub expected: BTreeMap<u32, String>,
    /// Received parts (blob keys).
    pub parts: BTreeMap<u32, BlobKey>,
}

/// Everything about artifacts.
#[derive(Debug, Default)]
pub struct ArtifactWorld {
    pub(crate) next_num: u64,
    pub(crate) projects: BTreeMap<(String, String), ProjectArtifacts>,
    pub(crate) artifacts: BTreeMap<u64, ArtifactRecord>,
    pub(crate) run_inputs: BTreeMap<RunKey, Vec<u64>>,
}

/// The persisted form of [`ArtifactWorld`] (JSON maps need string keys, hence the lists).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ArtifactSnapshot {
    /// Next number to hand out.
    pub next_num: u64,
    /// Per-project types and sequences.
    pub projects: Vec<ProjectArtifacts>,
    /// All versions.
    pub artifacts: Vec<ArtifactRecord>,
    /// Inputs per run.
    pub run_inputs: Vec<(RunKey, Vec<u64>)>,
}

/// The shared artifact state, plus in-flight multipart uploads.
#[derive(Debug, Default)]
pub struct ArtifactStore {
    /// Types, sequences, versions, run inputs.
    pub world: RwLock<ArtifactWorld>,
    /// Multipart uploads by upload id.
    pub multipart: Mutex<HashMap<String, MultipartUpload>>,
}

impl ArtifactStore {
    /// A store restored from a snapshot (empty when none).
    pub fn restore(snapshot: Option<ArtifactSnapshot>) -> Self {
        let Some(s) = snapshot else {
            return Self::default();
        };
        let world = ArtifactWorld {
            next_num: s.next_num,
            projects: s
                .projects
                .into_iter()
                .map(|p| ((p.entity.clone(), p.project.clone()), p))
                .collect(),
            artifacts: s.artifacts.into_iter().map(|a| (a.num, a)).collect(),
            run_inputs: s.run_inputs.into_iter().collect(),
        };
        Self {
            world: RwLock::new(world),
            multipart: Mutex::new(HashMap::new()),
        }
    }

    /// The persisted form of the current state.
    pub fn snapshot(&self) -> ArtifactSnapshot {
        let w = self.world.read();
        ArtifactSnapshot {
            next_num: w.next_num,
            projects: w.projects.values().cloned().collect(),
            artifacts: w.artifacts.values().cloned().collect(),
            run_inputs: w
                .run_inputs
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        }
    }
}

impl crate::app::Extension for ArtifactStore {
    fn name(&self) -> &'static str {
        "artifacts"
    }

    fn save(&self) -> serde_json::Value {
        serde_json::to_value(self.snapshot()).unwrap_or_else(|e| {
            tracing::error!("cannot serialise the artifact state: {e}");
            serde_json::Value::Null
        })
    }

    fn restore(&self, state: serde_json::Value) -> anyhow::Result<()> {
        let snapshot: ArtifactSnapshot = serde_json::from_value(state)
            .map_err(|e| anyhow::anyhow!("the saved artifact state is not readable: {e}"))?;
        let restored = Self::restore(Some(snapshot));
        *self.world.write() = restored.world.into_inner();
        Ok(())
    }

    fn as_any(self: Arc<Self>) -> Arc<dyn std::any::Any + Send + Sync> {
        self
    }
}

/// An opaque GraphQL id: base64 of `<Kind>:<num>`.
pub fn gid(kind: &str, num: u64) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{kind}:{num}"))
}

/// Decodes a [`gid`] of the given kind (also accepts a bare number).
pub fn parse_gid(kind: &str, id: &str) -> Option<u64> {
    if let Ok(n) = id.parse() {
        return Some(n);
    }
    unb64(id)?
        .strip_prefix(kind)?
        .strip_prefix(':')?
        .parse()
        .ok()
}

/// `ArtifactAlias.id`: stable per (sequence, alias) without a counter.
pub fn alias_gid(sequence_num: u64, alias: &str) -> String {
    base64::engine::general_purpose::STANDARD
        .encode(format!("ArtifactAlias:{sequence_num}:{alias}"))
}

/// Whether an alias is a version alias (`v0`, `v12`): those are implicit, never stored.
pub fn is_version_alias(alias: &str) -> bool {
    alias
        .strip_prefix('v')
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Splits `name[:alias]`; the alias defaults to `latest`.
pub fn split_name_alias(text: &str) -> (&str, &str) {
    match text.split_once(':') {
        Some((name, alias)) if !alias.is_empty() => (name, alias),
        Some((name, _)) => (name, "latest"),
        None => (text, "latest"),
    }
}

impl ArtifactWorld {
    /// Hands out the next object number.
    pub(crate) fn next(&mut self) -> u64 {
        self.next_num += 1;
        self.next_num
    }

    /// Artifact state of a project.
    pub fn project(&self, entity: &str, project: &str) -> Option<&ProjectArtifacts> {
        self.projects
            .get(&(entity.to_string(), project.to_string()))
    }

    /// A sequence by name.
    pub fn sequence(&self, entity: &str, project: &str, name: &str) -> Option<&SequenceRecord> {
        self.project(entity, project)?.sequences.get(name)
    }

    /// A sequence by number.
    pub fn sequence_by_num(&self, num: u64) -> Option<(&ProjectArtifacts, &SequenceRecord)> {
        self.projects
            .values()
            .find_map(|p| p.sequences.values().find(|s| s.num == num).map(|s| (p, s)))
    }

    /// A type by number.
    pub fn type_by_num(&self, num: u64) -> Option<(&ProjectArtifacts, &TypeRecord)> {
        self.projects
            .values()
            .find_map(|p| p.types.values().find(|t| t.num == num).map(|t| (p, t)))
    }

    /// A version by number (deleted ones included).
    pub fn artifact(&self, num: u64) -> Option<&ArtifactRecord> {
        self.artifacts.get(&num)
    }

    /// A visible (not deleted) version by its GraphQL id.
    pub fn artifact_by_gid(&self, id: &str) -> Option<&ArtifactRecord> {
        self.artifacts
            .get(&parse_gid("Artifact", id)?)
            .filter(|a| a.state != ArtifactState::Deleted)
    }

    /// The sequence a version belongs to.
    pub fn sequence_of(&self, a: &ArtifactRecord) -> Option<&SequenceRecord> {
        self.sequence(&a.entity, &a.project, &a.sequence)
    }

    /// Resolves `alias` (`vN`, `latest` or a custom alias) within a sequence to a committed
    /// version.
    pub fn resolve_alias(
        &self,
        entity: &str,
        project: &str,
        sequence: &str,
        alias: &str,
    ) -> Option<&ArtifactRecord> {
        let seq = self.sequence(entity, project, sequence)?;
        let num = if is_version_alias(alias) {
            let index: usize = alias[1..].parse().ok()?;
            *seq.versions.get(index)?
        } else {
            *seq.aliases.get(alias)?
        };
        self.artifacts
            .get(&num)
            .filter(|a| a.state == ArtifactState::Committed)
    }

    /// Resolves `name[:alias]` within a project.
    pub fn resolve(
        &self,
        entity: &str,
        project: &str,
        name_alias: &str,
    ) -> Option<&ArtifactRecord> {
        let (name, alias) = split_name_alias(name_alias);
        self.resolve_alias(entity, project, name, alias)
    }

    /// Custom aliases (and `latest`) of a version, sorted.
    pub fn aliases_of(&self, a: &ArtifactRecord) -> Vec<String> {
        self.sequence_of(a)
            .map(|s| {
                s.aliases
                    .iter()
                    .filter(|(_, n)| **n == a.num)
                    .map(|(alias, _)| alias.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The latest committed version of a sequence.
    pub fn latest_of(&self, seq: &SequenceRecord) -> Option<&ArtifactRecord> {
        seq.aliases
            .get("latest")
            .or(seq.versions.last())
            .and_then(|n| self.artifacts.get(n))
            .filter(|a| a.state == ArtifactState::Committed)
    }

    /// Committed versions of a sequence, in version order.
    pub fn versions_of(&self, seq: &SequenceRecord) -> Vec<&ArtifactRecord> {
        seq.versions
            .iter()
            .filter_map(|n| self.artifacts.get(n))
            .filter(|a| a.state == ArtifactState::Committed)
            .collect()
    }

    /// Committed versions a run logged, oldest first.
    pub fn outputs_of(&self, run: &RunKey) -> Vec<&ArtifactRecord> {
        self.artifacts
            .values()
            .filter(|a| a.state == ArtifactState::Committed && a.created_by.as_ref() == Some(run))
            .collect()
    }

    /// Versions a run used, in first-use order.
    pub fn inputs_of(&self, run: &RunKey) -> Vec<&ArtifactRecord> {
        self.run_inputs
            .get(run)
            .map(|nums| {
                nums.iter()
                    .filter_map(|n| self.artifacts.get(n))
                    .filter(|a| a.state != ArtifactState::Deleted)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Runs that used a version.
    pub fn users_of(&self, num: u64) -> Vec<RunKey> {
        self.run_inputs
            .iter()
            .filter(|(_, nums)| nums.contains(&num))
            .map(|(run, _)| run.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip() {
        let id = gid("Artifact", 42);
        assert_eq!(parse_gid("Artifact", &id), Some(42));
        assert_eq!(parse_gid("ArtifactSequence", &id), None);
        assert_eq!(parse_gid("Artifact", "7"), Some(7));
        assert_eq!(parse_gid("Artifact", "@@"), None);
        // The SDK builds `/artifactsV2/...` paths with `quote(id)`, which keeps `/`: ids of the
        // form `Artifact:<n>` never contain one.
        for n in [0u64, 1, 9, 99, 12345, u64::MAX] {
            assert!(!gid("Artifact", n).contains('/'), "{n}");
        }
    }

    #[test]
    fn alias_forms() {
        assert!(is_version_alias("v0"));
        assert!(is_version_alias("v12"));
        assert!(!is_version_alias("v"));
        assert!(!is_version_alias("latest"));
        assert!(!is_version_alias("v1a"));
        assert_eq!(split_name_alias("ds:v3"), ("ds", "v3"));
        assert_eq!(split_name_alias("ds"), ("ds", "latest"));
        assert_eq!(split_name_alias("ds:"), ("ds", "latest"));
        assert_eq!(split_name_alias("ds:best:x"), ("ds", "best:x"));
    }
}
