//! The Rust API for tests: create committed artifact versions directly (no SDK, no HTTP), and
//! inspect types, collections, versions, aliases, manifests and file bytes.
//!
//! ```no_run
//! use wandb_emulator::{Emulator, NewArtifactVersion};
//!
//! let emu = Emulator::start()?;
//! let v0 = emu.create_artifact_version(
//!     NewArtifactVersion::new("emulator", "proj", "dataset", "mnist")
//!         .file("train/images.bin", vec![1u8, 2, 3])
//!         .generated_file("big/shard.bin", 7, 64 << 20)
//!         .alias("best"),
//! )?;
//! assert_eq!(v0.version, Some(0));
//! let bytes = emu.artifact_file_bytes("emulator", "proj", "mnist:best", "train/images.bin");
//! # Ok::<(), anyhow::Error>(())
//! ```

use std::collections::BTreeMap;

use anyhow::Context as _;
use bytes::Bytes;

use super::manifest::{Manifest, ManifestEntry};
use super::model::{ArtifactRecord, ArtifactWorld, gid};
use super::ops::CreateRequest;
use crate::Emulator;
use crate::app::AppState;
use crate::artifacts::ArtifactsExt as _;
use crate::state::RunKey;

/// The bytes of a file of a new version.
#[derive(Debug, Clone)]
pub enum FileContent {
    /// Literal bytes.
    Bytes(Bytes),
    /// Deterministic pseudo-random bytes, produced on read (never stored): a pure function of
    /// `(seed, offset)`. Its MD5 is computed once when the version is created.
    Generated {
        /// Generator seed.
        seed: u64,
        /// Length in bytes.
        len: u64,
    },
}

/// One file of a new version.
#[derive(Debug, Clone)]
pub struct NewFile {
    /// Artifact-relative path (`/`-separated).
    pub path: String,
    /// Content.
    pub content: FileContent,
}

/// A version to create with [`Emulator::create_artifact_version`].
#[derive(Debug, Clone)]
pub struct NewArtifactVersion {
    /// Entity (created as a team when not the viewer's).
    pub entity: String,
    /// Project (created when missing).
    pub project: String,
    /// Type (`dataset`, `model`, …).
    pub type_name: String,
    /// Collection (artifact name).
    pub collection: String,
    /// Files.
    pub files: Vec<NewFile>,
    /// Custom aliases (`latest` always moves to the new version).
    pub aliases: Vec<String>,
    /// Description.
    pub description: Option<String>,
    /// Metadata JSON text.
    pub metadata: Option<String>,
    /// Name of the run (same entity/project) that logged it.
    pub run: Option<String>,
}

impl NewArtifactVersion {
    /// An empty version of `entity/project/collection` with type `type_name`.
    pub fn new(
        entity: impl Into<String>,
        project: impl Into<String>,
        type_name: impl Into<String>,
        collection: impl Into<String>,
    ) -> Self {
        Self {
            entity: entity.into(),
            project: project.into(),
            type_name: type_name.into(),
            collection: collection.into(),
            files: Vec::new(),
            aliases: Vec::new(),
            description: None,
            metadata: None,
            run: None,
        }
    }

    /// Adds a file with literal bytes.
    pub fn file(mut self, path: impl Into<String>, bytes: impl Into<Bytes>) -> Self {
        self.files.push(NewFile {
            path: path.into(),
            content: FileContent::Bytes(bytes.into()),
        });
        self
    }

    /// Adds a lazily generated file of `len` bytes.
    pub fn generated_file(mut self, path: impl Into<String>, seed: u64, len: u64) -> Self {
        self.files.push(NewFile {
            path: path.into(),
            content: FileContent::Generated { seed, len },
        });
        self
    }

    /// Adds a custom alias.
    pub fn alias(mut self, alias: impl Into<String>) -> Self {
        self.aliases.push(alias.into());
        self
    }

    /// Sets the metadata (JSON text).
    pub fn metadata(mut self, json: impl Into<String>) -> Self {
        self.metadata = Some(json.into());
        self
    }

    /// Sets the description.
    pub fn description(mut self, text: impl Into<String>) -> Self {
        self.description = Some(text.into());
        self
    }

    /// Records the version as logged by run `name` of the same project.
    pub fn run(mut self, name: impl Into<String>) -> Self {
        self.run = Some(name.into());
        self
    }
}

/// A version as tests see it.
#[derive(Debug, Clone, PartialEq)]
pub struct ArtifactVersionInfo {
    /// `Artifact.id`.
    pub id: String,
    /// Entity.
    pub entity: String,
    /// Project.
    pub project: String,
    /// Collection.
    pub collection: String,
    /// Type.
    pub type_name: String,
    /// `N` of `vN` (none while pending).
    pub version: Option<u32>,
    /// `PENDING`, `COMMITTED` or `DELETED`.
    pub state: String,
    /// Artifact digest (hex).
    pub digest: String,
    /// Aliases (`latest` and custom), sorted.
    pub aliases: Vec<String>,
    /// Total size.
    pub size: u64,
    /// Manifest entries.
    pub file_count: u64,
    /// The run that logged it.
    pub created_by: Option<RunKey>,
    /// Whether creating it returned an existing version with the same digest.
    pub deduplicated: bool,
}

/// A collection as tests see it.
#[derive(Debug, Clone, PartialEq)]
pub struct ArtifactCollectionInfo {
    /// Name.
    pub name: String,
    /// Type.
    pub type_name: String,
    /// Committed version indexes.
    pub versions: Vec<u32>,
    /// Alias → version index.
    pub aliases: BTreeMap<String, u32>,
}

/// A file of a version as tests see it.
#[derive(Debug, Clone, PartialEq)]
pub struct ArtifactFileInfo {
    /// Path.
    pub path: String,
    /// Size.
    pub size: u64,
    /// Manifest digest.
    pub digest: String,
    /// Base64 MD5 of the stored bytes (none for references).
    pub md5: Option<String>,
    /// `birthArtifactID`.
    pub birth_artifact_id: Option<String>,
    /// Reference URI, for reference entries.
    pub reference: Option<String>,
}

fn info(w: &ArtifactWorld, a: &ArtifactRecord, deduplicated: bool) -> ArtifactVersionInfo {
    ArtifactVersionInfo {
        id: a.gid(),
        entity: a.entity.clone(),
        project: a.project.clone(),
        collection: a.sequence.clone(),
        type_name: a.type_name.clone(),
        version: a.version_index,
        state: a.state.as_str().to_string(),
        digest: a.digest.clone(),
        aliases: w.aliases_of(a),
        size: a.size,
        file_count: a.files.len() as u64,
        created_by: a.created_by.clone(),
        deduplicated,
    }
}

/// Creates and commits a version the way the SDK's `log_artifact` would (content stored once per
/// collection, birth artifacts kept, digest deduplication), without HTTP.
pub fn create_version(
    app: &AppState,
    spec: NewArtifactVersion,
) -> anyhow::Result<ArtifactVersionInfo> {
    let mut blobs = Vec::with_capacity(spec.files.len());
    let mut entries = BTreeMap::new();
    for f in &spec.files {
        let blob = match &f.content {
            FileContent::Bytes(b) => app
                .blobs
                .put_bytes(b.clone())
                .with_context(|| format!("storing {}", f.path))?,
            FileContent::Generated { seed, len } => {
                app.blobs.put_generated(*seed, *len, Vec::new())
            }
        };
        entries.insert(
            f.path.clone(),
            ManifestEntry {
                digest: blob.md5_base64(),
                size: Some(blob.len()),
                reference: None,
                birth_artifact_id: None,
                extra: None,
            },
        );
        blobs.push((f.path.clone(), blob));
    }
    anyhow::ensure!(
        entries.len() == spec.files.len(),
        "duplicate file paths in the new version"
    );
    let digest = Manifest::new_v2(entries.clone()).digest();
    let now = app.now();
    app.world
        .write()
        .ensure_project(&spec.entity, &spec.project, now);
    let run = spec
        .run
        .as_ref()
        .map(|r| RunKey::new(&spec.entity, &spec.project, r));
    let store = app.artifacts();
    let mut w = store.world.write();
    let created = w.create_artifact(
        CreateRequest {
            entity: spec.entity.clone(),
            project: spec.project.clone(),
            type_name: spec.type_name.clone(),
            collection: spec.collection.clone(),
            digest,
            digest_algorithm: None,
            description: spec.description.clone(),
            metadata: spec.metadata.clone(),
            aliases: spec.aliases.clone(),
            run,
            dedup: true,
            ..CreateRequest::default()
        },
        now,
    )?;
    if !created.existing {
        let num = created.artifact;
        for (path, blob) in &blobs {
            let mimetype = mime_guess::from_path(path)
                .first_or_octet_stream()
                .to_string();
            let announced =
                w.announce_file(num, path, &blob.md5_base64(), Some(mimetype), &app.blobs)?;
            if announced.needs_upload {
                w.record_upload(num, path, blob)?;
            }
            if let Some(e) = entries.get_mut(path) {
                e.birth_artifact_id = Some(gid("Artifact", announced.birth));
            }
        }
        let manifest = app
            .blobs
            .put_bytes(Manifest::new_v2(entries).to_json().into())
            .context("storing the manifest")?;
        w.upsert_manifest(num, "wandb_manifest.json", &manifest.md5_base64(), now)?;
        w.record_manifest_upload(num, &manifest, now)?;
        w.commit(num, &app.blobs, now)?;
    }
    let a = w
        .artifact(created.artifact)
        .context("the new version vanished")?;
    let out = info(&w, a, created.existing);
    drop(w);
    app.mark_dirty();
    Ok(out)
}

/// Artifact creation and inspection for tests.
impl Emulator {
    /// Creates and commits an artifact version directly (see [`NewArtifactVersion`]).
    pub fn create_artifact_version(
        &self,
        spec: NewArtifactVersion,
    ) -> anyhow::Result<ArtifactVersionInfo> {
        create_version(self.app(), spec)
    }

    /// Records `name:alias` of `entity/project` as an input of `run`.
    pub fn use_artifact(
        &self,
        run: &RunKey,
        entity: &str,
        project: &str,
        name_alias: &str,
    ) -> anyhow::Result<()> {
        let app = self.app();
        anyhow::ensure!(
            app.run(&run.entity, &run.project, &run.name).is_some(),
            "run {run} not found"
        );
        let store = app.artifacts();
        let mut w = store.world.write();
        let num = w
            .resolve(entity, project, name_alias)
            .map(|a| a.num)
            .with_context(|| format!("artifact {entity}/{project}/{name_alias} not found"))?;
        w.use_artifact(run.clone(), num)?;
        drop(w);
        app.mark_dirty();
        Ok(())
    }

    /// Artifact types of a project, in creation order.
    pub fn artifact_types(&self, entity: &str, project: &str) -> Vec<String> {
        let store = self.app().artifacts();
        let w = store.world.read();
        let mut types: Vec<_> = w
            .project(entity, project)
            .map(|p| p.types.values().map(|t| (t.num, t.name.clone())).collect())
            .unwrap_or_default();
        types.sort();
        types.into_iter().map(|(_, n)| n).collect()
    }

    /// Collections of a project, in creation order.
    pub fn artifact_collections(&self, entity: &str, project: &str) -> Vec<ArtifactCollectionInfo> {
        let store = self.app().artifacts();
        let w = store.world.read();
        let Some(p) = w.project(entity, project) else {
            return Vec::new();
        };
        let mut seqs: Vec<_> = p.sequences.values().collect();
        seqs.sort_by_key(|s| s.num);
        seqs.into_iter()
            .map(|s| {
                let index = |num: &u64| w.artifact(*num).and_then(|a| a.version_index);
                ArtifactCollectionInfo {
                    name: s.name.clone(),
                    type_name: s.type_name.clone(),
                    versions: w
                        .versions_of(s)
                        .iter()
                        .filter_map(|a| a.version_index)
                        .collect(),
                    aliases: s
                        .aliases
                        .iter()
                        .filter_map(|(alias, num)| Some((alias.clone(), index(num)?)))
                        .collect(),
                }
            })
            .collect()
    }

    /// Committed versions of a collection, in version order.
    pub fn artifact_versions(
        &self,
        entity: &str,
        project: &str,
        collection: &str,
    ) -> Vec<ArtifactVersionInfo> {
        let store = self.app().artifacts();
        let w = store.world.read();
        let Some(s) = w.sequence(entity, project, collection) else {
            return Vec::new();
        };
        w.versions_of(s)
            .into_iter()
            .map(|a| info(&w, a, false))
            .collect()
    }

    /// A committed version by `name:alias` (`vN`, `latest` or a custom alias).
    pub fn artifact_version(
        &self,
        entity: &str,
        project: &str,
        name_alias: &str,
    ) -> Option<ArtifactVersionInfo> {
        let store = self.app().artifacts();
        let w = store.world.read();
        w.resolve(entity, project, name_alias)
            .map(|a| info(&w, a, false))
    }

    /// The manifest JSON of a version, exactly as stored (uploaded by the SDK or rendered).
    pub fn artifact_manifest(
        &self,
        entity: &str,
        project: &str,
        name_alias: &str,
    ) -> Option<String> {
        let key = {
            let store = self.app().artifacts();
            let w = store.world.read();
            w.resolve(entity, project, name_alias)?
                .manifest
                .as_ref()?
                .blob
                .clone()?
        };
        let bytes = self.app().blobs.get(&key)?.read_all();
        String::from_utf8(bytes.to_vec()).ok()
    }

    /// Files of a version, by path.
    pub fn artifact_files(
        &self,
        entity: &str,
        project: &str,
        name_alias: &str,
    ) -> Option<Vec<ArtifactFileInfo>> {
        let store = self.app().artifacts();
        let w = store.world.read();
        let a = w.resolve(entity, project, name_alias)?;
        Some(
            a.files
                .iter()
                .map(|f| ArtifactFileInfo {
                    path: f.path.clone(),
                    size: f.size,
                    digest: f.digest.clone(),
                    md5: f.md5.clone(),
                    birth_artifact_id: f.birth_artifact_id.clone(),
                    reference: f.reference.clone(),
                })
                .collect(),
        )
    }

    /// All bytes of a file of a version.
    pub fn artifact_file_bytes(
        &self,
        entity: &str,
        project: &str,
        name_alias: &str,
        path: &str,
    ) -> Option<Bytes> {
        let key = {
            let store = self.app().artifacts();
            let w = store.world.read();
            w.resolve(entity, project, name_alias)?
                .files
                .iter()
                .find(|f| f.path == path)?
                .blob
                .clone()?
        };
        Some(self.app().blobs.get(&key)?.read_all())
    }

    /// Committed versions a run logged.
    pub fn run_output_artifacts(&self, run: &RunKey) -> Vec<ArtifactVersionInfo> {
        let store = self.app().artifacts();
        let w = store.world.read();
        w.outputs_of(run)
            .into_iter()
            .map(|a| info(&w, a, false))
            .collect()
    }

    /// Versions a run used.
    pub fn run_input_artifacts(&self, run: &RunKey) -> Vec<ArtifactVersionInfo> {
        let store = self.app().artifacts();
        let w = store.world.read();
        w.inputs_of(run)
            .into_iter()
            .map(|a| info(&w, a, false))
            .collect()
    }
}
