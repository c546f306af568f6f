//! State transitions of artifacts: create (with digest deduplication), announce files (with
//! content deduplication), record uploads, manifests, commit, aliases, use, update, delete.
//!
//! The GraphQL mutations, the upload routes, the seeder and the Rust API all go through these
//! functions, so the SDK, fixtures and tests see one set of rules.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::blobs::{Blob, BlobStore};
use crate::state::{Micros, RunKey};

use super::manifest::{Manifest, b64_md5_to_hex};
use super::model::{
    ArtifactRecord, ArtifactState, ArtifactWorld, FileEntry, ManifestRecord, PendingFile,
    ProjectArtifacts, SequenceRecord, StoredContent, TypeRecord, is_version_alias, parse_gid,
};

/// Why an artifact operation was refused. Messages are shown to SDK users as is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArtifactError {
    /// The artifact, sequence or run does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The request contradicts the stored state or is malformed.
    #[error("{0}")]
    Invalid(String),
}

/// What `createArtifact` asks for.
#[derive(Debug, Clone, Default)]
pub struct CreateRequest {
    /// Entity.
    pub entity: String,
    /// Project.
    pub project: String,
    /// Type name.
    pub type_name: String,
    /// Sequence (collection) name.
    pub collection: String,
    /// Artifact digest (hex) the client computed.
    pub digest: String,
    /// `MANIFEST_MD5` (default) or `MANIFEST_XXH128`.
    pub digest_algorithm: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// Metadata JSON text.
    pub metadata: Option<String>,
    /// Aliases to apply at commit (`latest` is always applied).
    pub aliases: Vec<String>,
    /// Version tags.
    pub tags: Vec<String>,
    /// TTL in seconds (≤ 0 = none).
    pub ttl_seconds: Option<i64>,
    /// History step.
    pub history_step: Option<i64>,
    /// The logging run.
    pub run: Option<RunKey>,
    /// Client-side id.
    pub client_id: Option<String>,
    /// Return an existing committed version with the same digest instead of a new one.
    pub dedup: bool,
}

/// The outcome of `createArtifact`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Created {
    /// The version's number.
    pub artifact: u64,
    /// Whether an existing committed version was returned (digest deduplication).
    pub existing: bool,
}

/// The outcome of announcing one file (`createArtifactFiles`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announced {
    /// Birth artifact of the bytes (this version unless already stored).
    pub birth: u64,
    /// Whether the client must upload (false = content already stored: `uploadUrl: null`).
    pub needs_upload: bool,
}

fn validate_name(kind: &str, name: &str) -> Result<(), ArtifactError> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(ArtifactError::Invalid(format!(
            "invalid {kind} name {name:?}: use letters, digits, '-', '_' and '.'"
        )))
    }
}

fn validate_alias(alias: &str) -> Result<(), ArtifactError> {
    if alias.is_empty() || alias.len() > 128 || alias.contains(['/', ':']) {
        return Err(ArtifactError::Invalid(format!("invalid alias {alias:?}")));
    }
    if is_version_alias(alias) {
        return Err(ArtifactError::Invalid(format!(
            "alias {alias:?} is reserved: version aliases are assigned by the server"
        )));
    }
    Ok(())
}

fn mimetype_of(path: &str) -> String {
    mime_guess::from_path(path)
        .first_or_octet_stream()
        .to_string()
}

impl ArtifactWorld {
    fn project_mut(&mut self, entity: &str, project: &str) -> &mut ProjectArtifacts {
        self.projects
            .entry((entity.to_string(), project.to_string()))
            .or_insert_with(|| ProjectArtifacts {
                entity: entity.to_string(),
                project: project.to_string(),
                ..ProjectArtifacts::default()
            })
    }

    fn sequence_mut(&mut self, a: &ArtifactRecord) -> Option<&mut SequenceRecord> {
        self.projects
            .get_mut(&(a.entity.clone(), a.project.clone()))?
            .sequences
            .get_mut(&a.sequence)
    }

    fn artifact_mut(&mut self, num: u64) -> Result<&mut ArtifactRecord, ArtifactError> {
        self.artifacts
            .get_mut(&num)
            .filter(|a| a.state != ArtifactState::Deleted)
            .ok_or_else(|| ArtifactError::NotFound(format!("artifact {num} not found")))
    }

    fn pending_mut(&mut self, num: u64) -> Result<&mut ArtifactRecord, ArtifactError> {
        let a = self.artifact_mut(num)?;
        if a.state != ArtifactState::Pending {
            return Err(ArtifactError::Invalid(format!(
                "artifact {} is {}, not PENDING",
                a.display_name(),
                a.state.as_str()
            )));
        }
        Ok(a)
    }

    /// Resolves an `Artifact.id` to a number (deleted versions are not found).
    pub fn num_of(&self, id: &str) -> Result<u64, ArtifactError> {
        parse_gid("Artifact", id)
            .filter(|n| {
                self.artifacts
                    .get(n)
                    .is_some_and(|a| a.state != ArtifactState::Deleted)
            })
            .ok_or_else(|| ArtifactError::NotFound(format!("artifact {id:?} not found")))
    }

    /// Creates the type if needed and returns its number.
    pub fn ensure_type(&mut self, entity: &str, project: &str, name: &str, now: Micros) -> u64 {
        if let Some(t) = self
            .project(entity, project)
            .and_then(|p| p.types.get(name))
        {
            return t.num;
        }
        let num = self.next();
        self.project_mut(entity, project).types.insert(
            name.to_string(),
            TypeRecord {
                num,
                name: name.to_string(),
                description: None,
                created_at: now,
            },
        );
        num
    }

    /// `createArtifact`: a new PENDING version, or (with `dedup`) an existing COMMITTED version
    /// of the same sequence with the same digest. Custom aliases requested for an existing
    /// version are applied to it right away.
    pub fn create_artifact(
        &mut self,
        req: CreateRequest,
        now: Micros,
    ) -> Result<Created, ArtifactError> {
        validate_name("artifact type", &req.type_name)?;
        validate_name("artifact", &req.collection)?;
        for alias in req.aliases.iter().filter(|a| *a != "latest") {
            validate_alias(alias)?;
        }
        let existing = match self.sequence(&req.entity, &req.project, &req.collection) {
            Some(seq) if seq.type_name != req.type_name => {
                return Err(ArtifactError::Invalid(format!(
                    "artifact {} already exists with type {:?}, not {:?}",
                    req.collection, seq.type_name, req.type_name
                )));
            }
            Some(seq) if req.dedup => self
                .versions_of(seq)
                .into_iter()
                .rev()
                .find(|a| a.digest == req.digest)
                .map(|a| a.num),
            _ => None,
        };
        if let Some(existing) = existing {
            self.add_aliases(existing, &req.aliases, now)?;
            return Ok(Created {
                artifact: existing,
                existing: true,
            });
        }
        self.ensure_type(&req.entity, &req.project, &req.type_name, now);
        if self
            .sequence(&req.entity, &req.project, &req.collection)
            .is_none()
        {
            let num = self.next();
            self.project_mut(&req.entity, &req.project)
                .sequences
                .insert(
                    req.collection.clone(),
                    SequenceRecord {
                        num,
                        name: req.collection.clone(),
                        type_name: req.type_name.clone(),
                        description: None,
                        created_at: now,
                        updated_at: now,
                        versions: Vec::new(),
                        aliases: BTreeMap::new(),
                        stored: BTreeMap::new(),
                    },
                );
        }
        let num = self.next();
        self.artifacts.insert(
            num,
            ArtifactRecord {
                num,
                entity: req.entity,
                project: req.project,
                sequence: req.collection,
                type_name: req.type_name,
                version_index: None,
                state: ArtifactState::Pending,
                digest: req.digest,
                digest_algorithm: req
                    .digest_algorithm
                    .unwrap_or_else(|| "MANIFEST_MD5".into()),
                description: req.description,
                metadata: req.metadata,
                ttl_seconds: req.ttl_seconds.filter(|t| *t > 0),
                history_step: req.history_step,
                tags: req.tags,
                created_at: now,
                updated_at: now,
                committed_at: None,
                created_by: req.run,
                client_id: req.client_id,
                requested_aliases: req.aliases,
                manifest: None,
                pending_files: BTreeMap::new(),
                files: Arc::new(Vec::new()),
                size: 0,
            },
        );
        Ok(Created {
            artifact: num,
            existing: false,
        })
    }

    /// `createArtifactFiles` for one file: content the sequence already stores needs no upload
    /// and keeps its birth artifact.
    pub fn announce_file(
        &mut self,
        artifact: u64,
        path: &str,
        md5: &str,
        mimetype: Option<String>,
        blobs: &BlobStore,
    ) -> Result<Announced, ArtifactError> {
        if path.is_empty() {
            return Err(ArtifactError::Invalid("file name must not be empty".into()));
        }
        let a = self.pending_mut(artifact)?.clone();
        let stored = self
            .sequence_of(&a)
            .and_then(|s| s.stored.get(md5))
            .filter(|c| blobs.get(&c.blob).is_some())
            .cloned();
        let (birth, blob) = match stored {
            Some(c) => (c.birth, Some(c.blob)),
            None => (artifact, None),
        };
        let needs_upload = blob.is_none();
        self.pending_mut(artifact)?.pending_files.insert(
            path.to_string(),
            PendingFile {
                md5: md5.to_string(),
                birth,
                blob,
                mimetype,
            },
        );
        Ok(Announced {
            birth,
            needs_upload,
        })
    }

    /// Records uploaded bytes for an announced file (their MD5 must match the announcement).
    pub fn record_upload(
        &mut self,
        artifact: u64,
        path: &str,
        blob: &Blob,
    ) -> Result<(), ArtifactError> {
        let a = self.pending_mut(artifact)?;
        let Some(pending) = a.pending_files.get_mut(path) else {
            return Err(ArtifactError::NotFound(format!(
                "file {path:?} was not announced for artifact {}",
                a.display_name()
            )));
        };
        let md5 = blob.md5_base64();
        if pending.md5 != md5 {
            return Err(ArtifactError::Invalid(format!(
                "uploaded bytes of {path:?} have MD5 {md5}, the client announced {}",
                pending.md5
            )));
        }
        pending.blob = Some(blob.key().to_string());
        let a = a.clone();
        if let Some(seq) = self.sequence_mut(&a) {
            seq.stored.entry(md5).or_insert(StoredContent {
                birth: artifact,
                blob: blob.key().to_string(),
            });
        }
        Ok(())
    }

    /// `createArtifactManifest` (called twice by the SDK: first without, then with the digest).
    pub fn upsert_manifest(
        &mut self,
        artifact: u64,
        name: &str,
        digest: &str,
        now: Micros,
    ) -> Result<(), ArtifactError> {
        let a = self.pending_mut(artifact)?;
        match &mut a.manifest {
            Some(m) => {
                m.name = name.to_string();
                m.digest = digest.to_string();
                m.updated_at = now;
            }
            None => {
                a.manifest = Some(ManifestRecord {
                    name: name.to_string(),
                    digest: digest.to_string(),
                    blob: None,
                    updated_at: now,
                });
            }
        }
        Ok(())
    }

    /// `updateArtifactManifest`: sets the digest of an existing manifest.
    pub fn update_manifest_digest(
        &mut self,
        artifact: u64,
        digest: Option<&str>,
        now: Micros,
    ) -> Result<(), ArtifactError> {
        let a = self.pending_mut(artifact)?;
        let name = a.display_name();
        let m = a
            .manifest
            .as_mut()
            .ok_or_else(|| ArtifactError::NotFound(format!("artifact {name} has no manifest")))?;
        if let Some(d) = digest {
            m.digest = d.to_string();
        }
        m.updated_at = now;
        Ok(())
    }

    /// Records the uploaded manifest (its MD5 must match the announced digest, when one was).
    pub fn record_manifest_upload(
        &mut self,
        artifact: u64,
        blob: &Blob,
        now: Micros,
    ) -> Result<(), ArtifactError> {
        let a = self.pending_mut(artifact)?;
        let name = a.display_name();
        let m = a
            .manifest
            .as_mut()
            .ok_or_else(|| ArtifactError::NotFound(format!("artifact {name} has no manifest")))?;
        if !m.digest.is_empty() && m.digest != blob.md5_base64() {
            return Err(ArtifactError::Invalid(format!(
                "uploaded manifest has MD5 {}, the client announced {}",
                blob.md5_base64(),
                m.digest
            )));
        }
        m.blob = Some(blob.key().to_string());
        m.updated_at = now;
        Ok(())
    }

    /// Finds the bytes of a manifest entry: announced (uploaded or deduplicated) content first,
    /// then content the sequence stores under that digest, then any stored blob with that MD5
    /// (entries carried over unchanged from a base version are never announced).
    fn entry_blob(
        &self,
        a: &ArtifactRecord,
        path: &str,
        digest: &str,
        blobs: &BlobStore,
    ) -> Option<std::sync::Arc<Blob>> {
        if let Some(b) = a
            .pending_files
            .get(path)
            .and_then(|p| p.blob.as_ref())
            .and_then(|k| blobs.get(k))
        {
            return Some(b);
        }
        if let Some(b) = self
            .sequence_of(a)
            .and_then(|s| s.stored.get(digest))
            .and_then(|c| blobs.get(&c.blob))
        {
            return Some(b);
        }
        b64_md5_to_hex(digest).and_then(|hex| blobs.get(&format!("md5-{hex}")))
    }

    /// `commitArtifact`: reads the uploaded manifest, checks every stored entry's bytes are
    /// present (and the `MANIFEST_MD5` digest), assigns the next version index and moves
    /// `latest` plus the requested aliases to it.
    pub fn commit(
        &mut self,
        artifact: u64,
        blobs: &BlobStore,
        now: Micros,
    ) -> Result<(), ArtifactError> {
        let a = self.artifact_mut(artifact)?.clone();
        if a.state == ArtifactState::Committed {
            return Ok(());
        }
        let manifest_blob = a
            .manifest
            .as_ref()
            .and_then(|m| m.blob.as_ref())
            .and_then(|k| blobs.get(k))
            .ok_or_else(|| {
                ArtifactError::Invalid(format!(
                    "artifact {} cannot be committed: its manifest was not uploaded",
                    a.display_name()
                ))
            })?;
        let manifest = Manifest::parse(&manifest_blob.read_all())
            .map_err(|e| ArtifactError::Invalid(e.to_string()))?;
        if a.digest_algorithm == "MANIFEST_MD5" && manifest.digest() != a.digest {
            return Err(ArtifactError::Invalid(format!(
                "artifact digest {} does not match its manifest (which hashes to {})",
                a.digest,
                manifest.digest()
            )));
        }
        let mut files = Vec::with_capacity(manifest.entries.len());
        for (path, entry) in &manifest.entries {
            if let Some(reference) = &entry.reference {
                files.push(FileEntry {
                    path: path.clone(),
                    digest: entry.digest.clone(),
                    md5: None,
                    size: entry.size.unwrap_or(0),
                    blob: None,
                    reference: Some(reference.clone()),
                    birth_artifact_id: entry.birth_artifact_id.clone(),
                    mimetype: mimetype_of(path),
                });
                continue;
            }
            let blob = self
                .entry_blob(&a, path, &entry.digest, blobs)
                .ok_or_else(|| {
                    ArtifactError::Invalid(format!(
                        "artifact {}: the content of {path:?} (digest {}) was never uploaded",
                        a.display_name(),
                        entry.digest
                    ))
                })?;
            if let Some(size) = entry.size
                && size != blob.len()
            {
                return Err(ArtifactError::Invalid(format!(
                    "artifact {}: {path:?} is {} bytes, the manifest says {size}",
                    a.display_name(),
                    blob.len()
                )));
            }
            let mimetype = a
                .pending_files
                .get(path)
                .and_then(|p| p.mimetype.clone())
                .unwrap_or_else(|| mimetype_of(path));
            files.push(FileEntry {
                path: path.clone(),
                digest: entry.digest.clone(),
                md5: Some(blob.md5_base64()),
                size: blob.len(),
                blob: Some(blob.key().to_string()),
                reference: None,
                birth_artifact_id: entry.birth_artifact_id.clone(),
                mimetype,
            });
        }
        let seq = self
            .sequence_mut(&a)
            .ok_or_else(|| ArtifactError::NotFound(format!("sequence {} not found", a.sequence)))?;
        let version = u32::try_from(seq.versions.len())
            .map_err(|_| ArtifactError::Invalid("too many versions".into()))?;
        seq.versions.push(artifact);
        for f in &files {
            if let (Some(md5), Some(blob)) = (&f.md5, &f.blob) {
                let birth = f
                    .birth_artifact_id
                    .as_deref()
                    .and_then(|b| parse_gid("Artifact", b))
                    .unwrap_or(artifact);
                seq.stored.entry(md5.clone()).or_insert(StoredContent {
                    birth,
                    blob: blob.clone(),
                });
            }
        }
        seq.updated_at = now;
        let rec = self.artifact_mut(artifact)?;
        rec.version_index = Some(version);
        rec.state = ArtifactState::Committed;
        rec.committed_at = Some(now);
        rec.updated_at = now;
        rec.size = manifest.total_size();
        rec.files = Arc::new(files);
        rec.pending_files.clear();
        let mut aliases = std::mem::take(&mut rec.requested_aliases);
        aliases.retain(|x| x != "latest");
        aliases.insert(0, "latest".into());
        self.add_aliases(artifact, &aliases, now)
    }

    /// Points aliases at a committed version (moving them off other versions). `vN` is refused.
    pub fn add_aliases(
        &mut self,
        artifact: u64,
        aliases: &[String],
        now: Micros,
    ) -> Result<(), ArtifactError> {
        for alias in aliases {
            validate_alias(alias)?;
        }
        let a = self.artifact_mut(artifact)?.clone();
        if a.state != ArtifactState::Committed {
            // Applied at commit time instead.
            let rec = self.artifact_mut(artifact)?;
            for alias in aliases {
                if !rec.requested_aliases.contains(alias) {
                    rec.requested_aliases.push(alias.clone());
                }
            }
            return Ok(());
        }
        let seq = self
            .sequence_mut(&a)
            .ok_or_else(|| ArtifactError::NotFound(format!("sequence {} not found", a.sequence)))?;
        for alias in aliases {
            seq.aliases.insert(alias.clone(), artifact);
        }
        if !aliases.is_empty() {
            seq.updated_at = now;
        }
        Ok(())
    }

    /// Removes aliases from a version (aliases pointing elsewhere are left alone).
    pub fn delete_aliases(
        &mut self,
        artifact: u64,
        aliases: &[String],
        now: Micros,
    ) -> Result<(), ArtifactError> {
        let a = self.artifact_mut(artifact)?.clone();
        if let Some(seq) = self.sequence_mut(&a) {
            for alias in aliases {
                if seq.aliases.get(alias) == Some(&artifact) {
                    seq.aliases.remove(alias);
                    seq.updated_at = now;
                }
            }
        }
        let rec = self.artifact_mut(artifact)?;
        rec.requested_aliases.retain(|x| !aliases.contains(x));
        Ok(())
    }

    /// `useArtifact`: records the version as an input of the run (once).
    pub fn use_artifact(&mut self, run: RunKey, artifact: u64) -> Result<(), ArtifactError> {
        self.artifact_mut(artifact)?;
        let inputs = self.run_inputs.entry(run).or_default();
        if !inputs.contains(&artifact) {
            inputs.push(artifact);
        }
        Ok(())
    }

    /// `updateArtifact`: description, metadata, TTL (−1 inherit, −2 disable, > 0 seconds) and
    /// tags.
    #[allow(clippy::too_many_arguments)]
    pub fn update_artifact(
        &mut self,
        artifact: u64,
        description: Option<String>,
        metadata: Option<String>,
        ttl_seconds: Option<i64>,
        tags_to_add: &[String],
        tags_to_delete: &[String],
        now: Micros,
    ) -> Result<(), ArtifactError> {
        let rec = self.artifact_mut(artifact)?;
        if let Some(d) = description {
            rec.description = Some(d);
        }
        if let Some(m) = metadata {
            rec.metadata = Some(m);
        }
        if let Some(t) = ttl_seconds {
            rec.ttl_seconds = (t > 0).then_some(t);
        }
        rec.tags.retain(|t| !tags_to_delete.contains(t));
        for t in tags_to_add {
            if !rec.tags.contains(t) {
                rec.tags.push(t.clone());
            }
        }
        rec.updated_at = now;
        Ok(())
    }

    /// `deleteArtifactSequence`: the collection goes, with every version in it (their aliases
    /// go with the collection). Returns the removed collection and its project.
    pub fn delete_sequence(
        &mut self,
        num: u64,
        now: Micros,
    ) -> Result<(ProjectArtifacts, SequenceRecord), ArtifactError> {
        let (key, name) = self
            .projects
            .iter()
            .find_map(|(key, p)| {
                p.sequences
                    .values()
                    .find(|s| s.num == num)
                    .map(|s| (key.clone(), s.name.clone()))
            })
            .ok_or_else(|| {
                ArtifactError::NotFound(format!("artifact collection {num} not found"))
            })?;
        let project = self.projects.get_mut(&key).ok_or_else(|| {
            ArtifactError::NotFound(format!("artifact collection {num} not found"))
        })?;
        let mut removed = project.sequences.remove(&name).ok_or_else(|| {
            ArtifactError::NotFound(format!("artifact collection {num} not found"))
        })?;
        removed.updated_at = now;
        let owner = ProjectArtifacts {
            entity: project.entity.clone(),
            project: project.project.clone(),
            ..ProjectArtifacts::default()
        };
        for a in self.artifacts.values_mut() {
            if a.entity == owner.entity && a.project == owner.project && a.sequence == name {
                a.state = ArtifactState::Deleted;
                a.requested_aliases.clear();
                a.updated_at = now;
            }
        }
        Ok((owner, removed))
    }

    /// `deleteArtifact`: a version with aliases is only deleted with `delete_aliases`.
    pub fn delete_artifact(
        &mut self,
        artifact: u64,
        delete_aliases: bool,
        now: Micros,
    ) -> Result<(), ArtifactError> {
        let a = self.artifact_mut(artifact)?.clone();
        let aliases = self.aliases_of(&a);
        if !aliases.is_empty() && !delete_aliases {
            return Err(ArtifactError::Invalid(format!(
                "artifact {} has aliases {aliases:?}: remove them first or pass deleteAliases",
                a.display_name()
            )));
        }
        self.delete_aliases(artifact, &aliases, now)?;
        let rec = self.artifact_mut(artifact)?;
        rec.state = ArtifactState::Deleted;
        rec.updated_at = now;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifacts::manifest::ManifestEntry;
    use crate::artifacts::model::gid;
    use bytes::Bytes;

    fn request(collection: &str, digest: &str, aliases: &[&str]) -> CreateRequest {
        CreateRequest {
            entity: "e".into(),
            project: "p".into(),
            type_name: "dataset".into(),
            collection: collection.into(),
            digest: digest.into(),
            aliases: aliases.iter().map(|s| s.to_string()).collect(),
            dedup: true,
            ..CreateRequest::default()
        }
    }

    /// Logs a version the way the SDK does: create, announce, upload, manifest, commit.
    fn log(
        w: &mut ArtifactWorld,
        blobs: &BlobStore,
        collection: &str,
        files: &[(&str, &[u8])],
        aliases: &[&str],
        now: Micros,
    ) -> Result<(Created, Vec<bool>), ArtifactError> {
        let stored: Vec<_> = files
            .iter()
            .map(|(p, b)| {
                (
                    p.to_string(),
                    blobs.put_bytes(Bytes::copy_from_slice(b)).expect("store"),
                )
            })
            .collect();
        let mut entries: BTreeMap<String, ManifestEntry> = stored
            .iter()
            .map(|(p, b)| {
                (
                    p.clone(),
                    ManifestEntry {
                        digest: b.md5_base64(),
                        size: Some(b.len()),
                        reference: None,
                        birth_artifact_id: None,
                        extra: None,
                    },
                )
            })
            .collect();
        let digest = Manifest::new_v2(entries.clone()).digest();
        let created = w.create_artifact(request(collection, &digest, aliases), now)?;
        if created.existing {
            return Ok((created, Vec::new()));
        }
        let mut uploads = Vec::new();
        for (path, blob) in &stored {
            let ann = w.announce_file(created.artifact, path, &blob.md5_base64(), None, blobs)?;
            if ann.needs_upload {
                w.record_upload(created.artifact, path, blob)?;
            }
            uploads.push(ann.needs_upload);
            if let Some(e) = entries.get_mut(path) {
                e.birth_artifact_id = Some(gid("Artifact", ann.birth));
            }
        }
        w.upsert_manifest(created.artifact, "wandb_manifest.json", "", now)?;
        let manifest = blobs
            .put_bytes(Manifest::new_v2(entries).to_json().into())
            .expect("store");
        w.upsert_manifest(
            created.artifact,
            "wandb_manifest.json",
            &manifest.md5_base64(),
            now,
        )?;
        w.record_manifest_upload(created.artifact, &manifest, now)?;
        w.commit(created.artifact, blobs, now)?;
        Ok((created, uploads))
    }

    #[test]
    fn versions_aliases_and_content_dedup() {
        let mut w = ArtifactWorld::default();
        let blobs = BlobStore::new(None).expect("store");
        let (v0, up0) = log(
            &mut w,
            &blobs,
            "ds",
            &[("a.txt", b"aaa"), ("sub/b.txt", b"bbb")],
            &["best"],
            1,
        )
        .expect("v0");
        assert_eq!(up0, [true, true]);
        let (v1, up1) = log(
            &mut w,
            &blobs,
            "ds",
            &[("a.txt", b"aaa"), ("sub/b.txt", b"BBB")],
            &[],
            2,
        )
        .expect("v1");
        assert_eq!(up1, [false, true], "unchanged a.txt is not uploaded again");
        assert!(!v1.existing);
        let resolved = |w: &ArtifactWorld, name: &str| w.resolve("e", "p", name).map(|a| a.num);
        assert_eq!(resolved(&w, "ds:v0"), Some(v0.artifact));
        assert_eq!(resolved(&w, "ds:v1"), Some(v1.artifact));
        assert_eq!(resolved(&w, "ds:latest"), Some(v1.artifact));
        assert_eq!(resolved(&w, "ds"), Some(v1.artifact));
        assert_eq!(resolved(&w, "ds:best"), Some(v0.artifact));
        assert_eq!(resolved(&w, "ds:v2"), None);
        assert_eq!(resolved(&w, "nope:latest"), None);
        // The unchanged file keeps v0 as its birth artifact.
        let a1 = w.artifact(v1.artifact).expect("v1");
        let a = a1.files.iter().find(|f| f.path == "a.txt").expect("a.txt");
        assert_eq!(
            a.birth_artifact_id.as_deref(),
            Some(gid("Artifact", v0.artifact).as_str())
        );
        // Moving an alias.
        w.add_aliases(v1.artifact, &["best".into()], 3)
            .expect("alias");
        assert_eq!(resolved(&w, "ds:best"), Some(v1.artifact));
        assert_eq!(
            w.aliases_of(w.artifact(v1.artifact).expect("v1")),
            ["best", "latest"]
        );
        assert!(
            w.aliases_of(w.artifact(v0.artifact).expect("v0"))
                .is_empty()
        );
        w.delete_aliases(v1.artifact, &["best".into()], 4)
            .expect("delete");
        assert_eq!(resolved(&w, "ds:best"), None);
        assert!(w.add_aliases(v1.artifact, &["v7".into()], 5).is_err());
    }

    #[test]
    fn identical_digest_returns_the_committed_version() {
        let mut w = ArtifactWorld::default();
        let blobs = BlobStore::new(None).expect("store");
        let (v0, _) = log(&mut w, &blobs, "ds", &[("a", b"x")], &[], 1).expect("v0");
        let (again, _) = log(&mut w, &blobs, "ds", &[("a", b"x")], &["prod"], 2).expect("again");
        assert!(again.existing);
        assert_eq!(again.artifact, v0.artifact);
        assert_eq!(
            w.resolve("e", "p", "ds:prod").map(|a| a.num),
            Some(v0.artifact)
        );
        assert_eq!(w.sequence("e", "p", "ds").expect("seq").versions.len(), 1);
        // A different type for the same name is refused.
        let mut other = request("ds", "00", &[]);
        other.type_name = "model".into();
        assert!(matches!(
            w.create_artifact(other, 3),
            Err(ArtifactError::Invalid(_))
        ));
    }

    #[test]
    fn commit_checks_content_and_digest() {
        let mut w = ArtifactWorld::default();
        let blobs = BlobStore::new(None).expect("store");
        let c = w
            .create_artifact(request("ds", "wrong", &[]), 1)
            .expect("create");
        let blob = blobs.put_bytes(Bytes::from_static(b"x")).expect("store");
        // Uploads must match the announced MD5.
        w.announce_file(c.artifact, "a", "AAAAAAAAAAAAAAAAAAAAAA==", None, &blobs)
            .expect("announce");
        assert!(w.record_upload(c.artifact, "a", &blob).is_err());
        // No manifest → cannot commit.
        assert!(w.commit(c.artifact, &blobs, 2).is_err());
        let entries = BTreeMap::from([(
            "a".to_string(),
            ManifestEntry {
                digest: blob.md5_base64(),
                size: Some(1),
                reference: None,
                birth_artifact_id: None,
                extra: None,
            },
        )]);
        let manifest = blobs
            .put_bytes(Manifest::new_v2(entries).to_json().into())
            .expect("store");
        w.upsert_manifest(c.artifact, "wandb_manifest.json", "", 2)
            .expect("manifest");
        w.record_manifest_upload(c.artifact, &manifest, 2)
            .expect("upload");
        let err = w
            .commit(c.artifact, &blobs, 3)
            .expect_err("digest mismatch");
        assert!(err.to_string().contains("does not match"), "{err}");
        assert_eq!(
            w.artifact(c.artifact).expect("a").state,
            ArtifactState::Pending
        );
    }

    #[test]
    fn inputs_outputs_and_deletion() {
        let mut w = ArtifactWorld::default();
        let blobs = BlobStore::new(None).expect("store");
        let (v0, _) = log(&mut w, &blobs, "m", &[("w.bin", b"1")], &["prod"], 1).expect("v0");
        let run = RunKey::new("e", "p", "r1");
        w.use_artifact(run.clone(), v0.artifact).expect("use");
        w.use_artifact(run.clone(), v0.artifact).expect("use twice");
        assert_eq!(w.inputs_of(&run).len(), 1);
        assert_eq!(w.users_of(v0.artifact), std::slice::from_ref(&run));
        assert!(w.delete_artifact(v0.artifact, false, 2).is_err());
        w.delete_artifact(v0.artifact, true, 2).expect("delete");
        assert!(w.resolve("e", "p", "m:v0").is_none());
        assert!(w.resolve("e", "p", "m:prod").is_none());
        assert!(w.inputs_of(&run).is_empty());
        assert!(w.num_of(&gid("Artifact", v0.artifact)).is_err());
    }
}
