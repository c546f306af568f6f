//! Artifact mutations: the `run.log_artifact()` write path (PROTOCOL.md §9.6), aliases,
//! `useArtifact`, `updateArtifact`, `deleteArtifact`.
//!
//! Input types list every field the SDK sends (wandb-core's genqlient serialises all struct
//! fields, nulls included), since an unknown input field fails validation.

use std::sync::Arc;

use async_graphql::{Context, Enum, ID, InputObject, Object, Result, SimpleObject};

use super::types::{
    ArtifactFileExtra, ArtifactManifestObj, ArtifactObj, DigestAlgorithmEnum, UploadMultipartUrls,
    UploadUrlPart, file_upload_url, storage_path,
};
use crate::app::AppState;
use crate::artifacts::ArtifactsExt as _;
use crate::artifacts::manifest::hex_md5_to_b64;
use crate::artifacts::model::{MultipartUpload, parse_gid};
use crate::artifacts::ops::{ArtifactError, CreateRequest};
use crate::schema::files::{FileConnection, FileEdge, FileView};
use crate::schema::scalars::{Int64, JsonString};
use crate::schema::{FileObject, PageInfo, app};
use crate::state::RunKey;

/// `ArtifactStorageLayout`.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(name = "ArtifactStorageLayout")]
pub enum StorageLayoutEnum {
    /// `/artifacts/<entity>/<md5>`.
    #[graphql(name = "V1")]
    V1,
    /// `/artifactsV2/<region>/<entity>/<project>/<collection>/<birth>/<md5>/<name>`.
    #[graphql(name = "V2")]
    V2,
}

/// `ArtifactManifestType`.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(name = "ArtifactManifestType")]
pub enum ManifestTypeEnum {
    /// The whole manifest (the only kind emulated).
    Full,
    /// Incremental (not emulated).
    Incremental,
    /// Patch (not emulated).
    Patch,
}

/// `CompleteMultipartAction`.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(name = "CompleteMultipartAction")]
pub enum CompleteMultipartActionEnum {
    /// Assemble the parts.
    #[graphql(name = "Complete")]
    Complete,
}

/// `ArtifactAliasInput`.
#[derive(InputObject, Clone)]
pub struct ArtifactAliasInput {
    /// Collection the alias lives in.
    pub artifact_collection_name: String,
    /// Alias.
    pub alias: String,
}

/// `ArtifactCollectionAliasInput`.
#[derive(InputObject, Clone)]
pub struct ArtifactCollectionAliasInput {
    /// Alias.
    pub alias: String,
    /// Collection.
    pub artifact_collection_name: String,
    /// Entity.
    pub entity_name: String,
    /// Project.
    pub project_name: String,
}

/// `TagInput`.
#[derive(InputObject, Clone)]
pub struct TagInput {
    /// Tag name.
    pub tag_name: String,
    /// Category (ignored).
    pub tag_category_name: Option<String>,
    /// Attributes (ignored).
    pub attributes: Option<String>,
}

/// `CreateArtifactInput`.
#[derive(InputObject)]
pub struct CreateArtifactInput {
    /// Type name.
    pub artifact_type_name: String,
    /// Collection (sequence) name.
    pub artifact_collection_name: Option<String>,
    /// Collection names (the first is the sequence).
    pub artifact_collection_names: Option<Vec<String>>,
    /// Entity.
    pub entity_name: String,
    /// Project.
    pub project_name: String,
    /// Logging run.
    pub run_name: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// Artifact digest (hex).
    pub digest: String,
    /// Digest algorithm.
    pub digest_algorithm: Option<DigestAlgorithmEnum>,
    /// Labels (ignored).
    pub labels: Option<JsonString>,
    /// Aliases to apply at commit.
    pub aliases: Option<Vec<ArtifactAliasInput>>,
    /// Metadata.
    pub metadata: Option<JsonString>,
    /// Client-side id.
    #[graphql(name = "clientID")]
    pub client_id: Option<ID>,
    /// Client-side sequence id (ignored).
    #[graphql(name = "sequenceClientID")]
    pub sequence_client_id: Option<ID>,
    /// Return an existing committed version with the same digest.
    pub enable_digest_deduplication: Option<bool>,
    /// History step.
    pub history_step: Option<Int64>,
    /// Distributed-artifact id (not emulated).
    #[graphql(name = "distributedID")]
    pub distributed_id: Option<String>,
    /// Storage region (ignored).
    pub storage_region: Option<String>,
    /// TTL in seconds.
    pub ttl_duration_seconds: Option<Int64>,
    /// Version tags.
    pub tags: Option<Vec<TagInput>>,
    /// Relay mutation id.
    pub client_mutation_id: Option<String>,
}

/// `CreateArtifactPayload`.
#[derive(SimpleObject)]
pub struct CreateArtifactPayload {
    /// The new (or deduplicated) version.
    pub artifact: ArtifactObj,
}

/// `CreateArtifactManifestInput`.
#[derive(InputObject)]
pub struct CreateArtifactManifestInput {
    /// The version.
    #[graphql(name = "artifactID")]
    pub artifact_id: ID,
    /// Base version (incremental manifests; ignored).
    #[graphql(name = "baseArtifactID")]
    pub base_artifact_id: Option<ID>,
    /// File name (`wandb_manifest.json`).
    pub name: String,
    /// Base64 MD5 of the manifest file ("" before it is written).
    pub digest: String,
    /// Entity.
    pub entity_name: String,
    /// Project.
    pub project_name: String,
    /// Run.
    pub run_name: Option<String>,
    /// Manifest type.
    #[graphql(name = "type")]
    pub manifest_type: Option<ManifestTypeEnum>,
    /// Relay mutation id.
    pub client_mutation_id: Option<String>,
}

/// `UpdateArtifactManifestInput`.
#[derive(InputObject)]
pub struct UpdateArtifactManifestInput {
    /// `ArtifactManifest.id`.
    #[graphql(name = "artifactManifestID")]
    pub artifact_manifest_id: ID,
    /// New digest.
    pub digest: Option<String>,
    /// Base version (ignored).
    #[graphql(name = "baseArtifactID")]
    pub base_artifact_id: Option<ID>,
    /// Relay mutation id.
    pub client_mutation_id: Option<String>,
}

/// `{ artifactManifest }` payloads.
#[derive(SimpleObject)]
#[graphql(name = "CreateArtifactManifestPayload")]
pub struct ArtifactManifestPayload {
    /// The manifest.
    pub artifact_manifest: ArtifactManifestObj,
}

/// `UpdateArtifactManifestPayload`.
#[derive(SimpleObject)]
pub struct UpdateArtifactManifestPayload {
    /// The manifest.
    pub artifact_manifest: ArtifactManifestObj,
}

/// `UploadPartsInput`.
#[derive(InputObject, Clone)]
pub struct UploadPartsInput {
    /// 1-based part number.
    pub part_number: Int64,
    /// Hex MD5 of the part (its ETag when completing).
    #[graphql(name = "hexMD5")]
    pub hex_md5: String,
}

/// `CreateArtifactFileSpecInput`.
#[derive(InputObject)]
pub struct CreateArtifactFileSpecInput {
    /// The version.
    #[graphql(name = "artifactID")]
    pub artifact_id: ID,
    /// Its manifest.
    #[graphql(name = "artifactManifestID")]
    pub artifact_manifest_id: Option<ID>,
    /// Artifact-relative path.
    pub name: String,
    /// Base64 MD5 of the content.
    pub md5: String,
    /// MIME type.
    pub mimetype: Option<String>,
    /// Parts, for multipart uploads.
    pub upload_parts_input: Option<Vec<UploadPartsInput>>,
    /// Manifest digest (sent when `ARTIFACT_DIGEST_ALGORITHM` is advertised).
    pub digest: Option<String>,
}

/// `CreateArtifactFilesInput`.
#[derive(InputObject)]
pub struct CreateArtifactFilesInput {
    /// Files.
    pub artifact_files: Vec<CreateArtifactFileSpecInput>,
    /// Storage layout.
    pub storage_layout: StorageLayoutEnum,
    /// Digest algorithm.
    pub digest_algorithm: Option<DigestAlgorithmEnum>,
    /// Cloud region (ignored).
    #[graphql(name = "cloudRegionID")]
    pub cloud_region_id: Option<ID>,
    /// Relay mutation id.
    pub client_mutation_id: Option<String>,
}

/// `CreateArtifactFilesPayload`.
#[derive(SimpleObject)]
pub struct CreateArtifactFilesPayload {
    /// One file per spec, in request order.
    pub files: FileConnection,
}

/// `CompleteMultipartUploadArtifactInput`.
#[derive(InputObject)]
pub struct CompleteMultipartUploadArtifactInput {
    /// Action.
    pub complete_multipart_action: CompleteMultipartActionEnum,
    /// Parts with their ETags.
    pub completed_parts: Vec<UploadPartsInput>,
    /// The version.
    #[graphql(name = "artifactID")]
    pub artifact_id: ID,
    /// Storage path (echoed from `createArtifactFiles`).
    pub storage_path: String,
    /// Upload id.
    #[graphql(name = "uploadID")]
    pub upload_id: String,
    /// Relay mutation id.
    pub client_mutation_id: Option<String>,
}

/// `CompleteMultipartUploadArtifactPayload`.
#[derive(SimpleObject)]
pub struct CompleteMultipartUploadArtifactPayload {
    /// Base64 MD5 of the assembled file.
    pub digest: Option<String>,
}

/// `CommitArtifactInput`.
#[derive(InputObject)]
pub struct CommitArtifactInput {
    /// The version.
    #[graphql(name = "artifactID")]
    pub artifact_id: ID,
    /// Relay mutation id.
    pub client_mutation_id: Option<String>,
}

/// `{ artifact }` payloads (commit, use, update, delete).
#[derive(SimpleObject)]
#[graphql(name = "CommitArtifactPayload")]
pub struct ArtifactPayload {
    /// The version.
    pub artifact: ArtifactObj,
}

/// `UseArtifactInput`.
#[derive(InputObject)]
pub struct UseArtifactInput {
    /// Entity of the run.
    pub entity_name: String,
    /// Project of the run.
    pub project_name: String,
    /// Run.
    pub run_name: String,
    /// The version.
    #[graphql(name = "artifactID")]
    pub artifact_id: ID,
    /// Deprecated label (ignored).
    pub used_as: Option<String>,
    /// Entity of the artifact (informational).
    pub artifact_entity_name: Option<String>,
    /// Project of the artifact (informational).
    pub artifact_project_name: Option<String>,
    /// Relay mutation id.
    pub client_mutation_id: Option<String>,
}

/// `UseArtifactPayload`.
#[derive(SimpleObject)]
pub struct UseArtifactPayload {
    /// The version.
    pub artifact: ArtifactObj,
}

/// `AddAliasesInput` / `DeleteAliasesInput` share this shape.
#[derive(InputObject)]
pub struct AddAliasesInput {
    /// Aliases.
    pub aliases: Vec<ArtifactCollectionAliasInput>,
    /// The version.
    #[graphql(name = "artifactID")]
    pub artifact_id: ID,
    /// Relay mutation id.
    pub client_mutation_id: Option<String>,
}

/// `DeleteAliasesInput`.
#[derive(InputObject)]
pub struct DeleteAliasesInput {
    /// Aliases.
    pub aliases: Vec<ArtifactCollectionAliasInput>,
    /// The version.
    #[graphql(name = "artifactID")]
    pub artifact_id: ID,
    /// Relay mutation id.
    pub client_mutation_id: Option<String>,
}

/// `{ success }` payload of the alias mutations.
#[derive(SimpleObject)]
#[graphql(name = "AddAliasesPayload")]
pub struct AliasesPayload {
    /// Whether the change applied.
    pub success: bool,
}

/// `UpdateArtifactInput`.
#[derive(InputObject)]
pub struct UpdateArtifactInput {
    /// The version.
    #[graphql(name = "artifactID")]
    pub artifact_id: ID,
    /// Description.
    pub description: Option<String>,
    /// Labels (ignored).
    pub labels: Option<JsonString>,
    /// Metadata.
    pub metadata: Option<JsonString>,
    /// Aliases to add (in the version's own collection).
    pub aliases: Option<Vec<ArtifactAliasInput>>,
    /// Tags to add.
    pub tags_to_add: Option<Vec<TagInput>>,
    /// Tags to remove.
    pub tags_to_delete: Option<Vec<TagInput>>,
    /// TTL (−1 inherit, −2 disable, > 0 seconds).
    pub ttl_duration_seconds: Option<Int64>,
    /// Relay mutation id.
    pub client_mutation_id: Option<String>,
}

/// `DeleteArtifactInput`.
#[derive(InputObject)]
pub struct DeleteArtifactInput {
    /// The version.
    #[graphql(name = "artifactID")]
    pub artifact_id: ID,
    /// Also remove its aliases.
    pub delete_aliases: Option<bool>,
    /// Relay mutation id.
    pub client_mutation_id: Option<String>,
}

fn version_obj(app: &AppState, num: u64) -> Result<ArtifactObj> {
    ArtifactObj::find(app, num).ok_or_else(|| format!("artifact {num} not found").into())
}

fn own_aliases(
    collection: &str,
    aliases: impl IntoIterator<Item = (String, String)>,
) -> Result<Vec<String>> {
    aliases
        .into_iter()
        .map(|(coll, alias)| {
            if coll == collection {
                Ok(alias)
            } else {
                Err(format!(
                    "alias {alias:?} targets collection {coll:?}: linking into other collections \
                     (portfolios) is not emulated"
                )
                .into())
            }
        })
        .collect()
}

/// Artifact mutations.
#[derive(Default)]
pub struct ArtifactMutations;

#[Object]
impl ArtifactMutations {
    /// Creates a PENDING version (or returns a COMMITTED one with the same digest).
    async fn create_artifact(
        &self,
        ctx: &Context<'_>,
        input: CreateArtifactInput,
    ) -> Result<CreateArtifactPayload> {
        let app = app(ctx);
        let collection = input
            .artifact_collection_name
            .clone()
            .or_else(|| input.artifact_collection_names.as_ref()?.first().cloned())
            .ok_or("createArtifact needs artifactCollectionName")?;
        if input.distributed_id.is_some() {
            return Err("distributed artifacts are not emulated".into());
        }
        let aliases = own_aliases(
            &collection,
            input
                .aliases
                .unwrap_or_default()
                .into_iter()
                .map(|a| (a.artifact_collection_name, a.alias)),
        )?;
        let now = app.now();
        app.world
            .write()
            .ensure_project(&input.entity_name, &input.project_name, now);
        let req = CreateRequest {
            run: input
                .run_name
                .map(|r| RunKey::new(&input.entity_name, &input.project_name, r)),
            entity: input.entity_name,
            project: input.project_name,
            type_name: input.artifact_type_name,
            collection,
            digest: input.digest,
            digest_algorithm: input.digest_algorithm.map(|d| d.as_str().to_string()),
            description: input.description,
            metadata: input.metadata.map(|m| m.0),
            aliases,
            tags: input
                .tags
                .unwrap_or_default()
                .into_iter()
                .map(|t| t.tag_name)
                .collect(),
            ttl_seconds: input.ttl_duration_seconds.map(|t| t.0),
            history_step: input.history_step.map(|h| h.0),
            client_id: input.client_id.map(|c| c.0),
            dedup: input.enable_digest_deduplication.unwrap_or(false),
        };
        let created = app.artifacts().world.write().create_artifact(req, now)?;
        app.mark_dirty();
        Ok(CreateArtifactPayload {
            artifact: version_obj(app, created.artifact)?,
        })
    }

    /// Creates (or, called again, updates) the version's manifest record.
    async fn create_artifact_manifest(
        &self,
        ctx: &Context<'_>,
        input: CreateArtifactManifestInput,
    ) -> Result<ArtifactManifestPayload> {
        let app = app(ctx);
        if input
            .manifest_type
            .is_some_and(|t| t != ManifestTypeEnum::Full)
        {
            return Err("incremental and patch manifests are not emulated".into());
        }
        let num = app.artifacts().world.read().num_of(&input.artifact_id)?;
        app.artifacts().world.write().upsert_manifest(
            num,
            &input.name,
            &input.digest,
            app.now(),
        )?;
        app.mark_dirty();
        let a = version_obj(app, num)?;
        Ok(ArtifactManifestPayload {
            artifact_manifest: ArtifactManifestObj(a.0),
        })
    }

    /// Sets the digest of a version's manifest.
    async fn update_artifact_manifest(
        &self,
        ctx: &Context<'_>,
        input: UpdateArtifactManifestInput,
    ) -> Result<UpdateArtifactManifestPayload> {
        let app = app(ctx);
        let num = parse_gid("ArtifactManifest", &input.artifact_manifest_id)
            .ok_or_else(|| ArtifactError::NotFound("artifact manifest not found".into()))?;
        app.artifacts().world.write().update_manifest_digest(
            num,
            input.digest.as_deref(),
            app.now(),
        )?;
        app.mark_dirty();
        Ok(UpdateArtifactManifestPayload {
            artifact_manifest: ArtifactManifestObj(version_obj(app, num)?.0),
        })
    }

    /// Announces files: `uploadUrl` is null for content the collection already stores.
    async fn create_artifact_files(
        &self,
        ctx: &Context<'_>,
        input: CreateArtifactFilesInput,
    ) -> Result<CreateArtifactFilesPayload> {
        let app = app(ctx);
        let _ = (input.storage_layout, input.digest_algorithm);
        let mut edges = Vec::with_capacity(input.artifact_files.len());
        for (i, spec) in input.artifact_files.into_iter().enumerate() {
            let num = app.artifacts().world.read().num_of(&spec.artifact_id)?;
            let announced = app.artifacts().world.write().announce_file(
                num,
                &spec.name,
                &spec.md5,
                spec.mimetype.clone(),
                &app.blobs,
            )?;
            let parts = spec.upload_parts_input.unwrap_or_default();
            let multipart = (announced.needs_upload && !parts.is_empty())
                .then(|| start_multipart(app, num, &spec.name, &parts))
                .transpose()?;
            let birth = version_obj(app, announced.birth)?;
            let view = FileView {
                id: base64_id(&format!("ArtifactFile:{num}:{}", spec.name)),
                name: spec.name.clone(),
                mimetype: spec.mimetype,
                upload_url: announced
                    .needs_upload
                    .then(|| file_upload_url(app, num, &spec.name)),
                extra: Some(Arc::new(ArtifactFileExtra {
                    display_name: Some(spec.name.clone()),
                    storage_path: Some(storage_path(announced.birth, &spec.md5)),
                    digest: spec.digest.or(Some(spec.md5)),
                    upload_headers: Vec::new(),
                    multipart,
                    artifact: Some(birth.0),
                })),
                ..FileView::default()
            };
            edges.push(FileEdge {
                node: Some(FileObject::new(view)),
                cursor: crate::query::encode_cursor(i as u64),
            });
        }
        app.mark_dirty();
        let total = edges.len() as i64;
        Ok(CreateArtifactFilesPayload {
            files: FileConnection {
                page_info: PageInfo {
                    start_cursor: edges.first().map(|e| e.cursor.clone()),
                    end_cursor: edges.last().map(|e| e.cursor.clone()),
                    has_next_page: false,
                    has_previous_page: false,
                },
                edges,
                total_count: total,
            },
        })
    }

    /// Assembles the uploaded parts of a multipart upload.
    async fn complete_multipart_upload_artifact(
        &self,
        ctx: &Context<'_>,
        input: CompleteMultipartUploadArtifactInput,
    ) -> Result<CompleteMultipartUploadArtifactPayload> {
        let app = app(ctx);
        let _ = (input.complete_multipart_action, input.storage_path);
        let upload = app
            .artifacts()
            .multipart
            .lock()
            .remove(&input.upload_id)
            .ok_or("unknown multipart upload id")?;
        let num = app.artifacts().world.read().num_of(&input.artifact_id)?;
        if num != upload.artifact {
            return Err("multipart upload belongs to another artifact".into());
        }
        let blob = tokio::task::block_in_place(|| assemble(app, &upload, &input.completed_parts))?;
        app.artifacts()
            .world
            .write()
            .record_upload(num, &upload.path, &blob)?;
        app.mark_dirty();
        Ok(CompleteMultipartUploadArtifactPayload {
            digest: Some(blob.md5_base64()),
        })
    }

    /// Commits a version (manifest and every stored entry's bytes must be present).
    async fn commit_artifact(
        &self,
        ctx: &Context<'_>,
        input: CommitArtifactInput,
    ) -> Result<ArtifactPayload> {
        let app = app(ctx);
        let num = app.artifacts().world.read().num_of(&input.artifact_id)?;
        let now = app.now();
        tokio::task::block_in_place(|| app.artifacts().world.write().commit(num, &app.blobs, now))?;
        app.mark_dirty();
        Ok(ArtifactPayload {
            artifact: version_obj(app, num)?,
        })
    }

    /// Records a version as an input of a run.
    async fn use_artifact(
        &self,
        ctx: &Context<'_>,
        input: UseArtifactInput,
    ) -> Result<UseArtifactPayload> {
        let app = app(ctx);
        let _ = (
            input.used_as,
            input.artifact_entity_name,
            input.artifact_project_name,
        );
        let run = RunKey::new(input.entity_name, input.project_name, input.run_name);
        if app.run(&run.entity, &run.project, &run.name).is_none() {
            return Err(ArtifactError::NotFound(format!("run {run} not found")).into());
        }
        let num = app.artifacts().world.read().num_of(&input.artifact_id)?;
        app.artifacts().world.write().use_artifact(run, num)?;
        app.mark_dirty();
        Ok(UseArtifactPayload {
            artifact: version_obj(app, num)?,
        })
    }

    /// Points aliases at a version.
    async fn add_aliases(
        &self,
        ctx: &Context<'_>,
        input: AddAliasesInput,
    ) -> Result<AliasesPayload> {
        let app = app(ctx);
        let num = app.artifacts().world.read().num_of(&input.artifact_id)?;
        let collection = version_obj(app, num)?.0.sequence.clone();
        let aliases = own_aliases(
            &collection,
            input
                .aliases
                .into_iter()
                .map(|a| (a.artifact_collection_name, a.alias)),
        )?;
        app.artifacts()
            .world
            .write()
            .add_aliases(num, &aliases, app.now())?;
        app.mark_dirty();
        Ok(AliasesPayload { success: true })
    }

    /// Removes aliases from a version.
    async fn delete_aliases(
        &self,
        ctx: &Context<'_>,
        input: DeleteAliasesInput,
    ) -> Result<AliasesPayload> {
        let app = app(ctx);
        let num = app.artifacts().world.read().num_of(&input.artifact_id)?;
        let aliases: Vec<String> = input.aliases.into_iter().map(|a| a.alias).collect();
        app.artifacts()
            .world
            .write()
            .delete_aliases(num, &aliases, app.now())?;
        app.mark_dirty();
        Ok(AliasesPayload { success: true })
    }

    /// Updates a version's description, metadata, TTL, tags and aliases.
    async fn update_artifact(
        &self,
        ctx: &Context<'_>,
        input: UpdateArtifactInput,
    ) -> Result<ArtifactPayload> {
        let app = app(ctx);
        let num = app.artifacts().world.read().num_of(&input.artifact_id)?;
        let collection = version_obj(app, num)?.0.sequence.clone();
        let aliases = own_aliases(
            &collection,
            input
                .aliases
                .unwrap_or_default()
                .into_iter()
                .map(|a| (a.artifact_collection_name, a.alias)),
        )?;
        let names = |tags: Option<Vec<TagInput>>| -> Vec<String> {
            tags.unwrap_or_default()
                .into_iter()
                .map(|t| t.tag_name)
                .collect()
        };
        let now = app.now();
        {
            let store = app.artifacts();
            let mut w = store.world.write();
            w.update_artifact(
                num,
                input.description,
                input.metadata.map(|m| m.0),
                input.ttl_duration_seconds.map(|t| t.0),
                &names(input.tags_to_add),
                &names(input.tags_to_delete),
                now,
            )?;
            w.add_aliases(num, &aliases, now)?;
        }
        app.mark_dirty();
        Ok(ArtifactPayload {
            artifact: version_obj(app, num)?,
        })
    }

    /// Deletes a version.
    async fn delete_artifact(
        &self,
        ctx: &Context<'_>,
        input: DeleteArtifactInput,
    ) -> Result<ArtifactPayload> {
        let app = app(ctx);
        let num = app.artifacts().world.read().num_of(&input.artifact_id)?;
        let before = version_obj(app, num)?;
        app.artifacts().world.write().delete_artifact(
            num,
            input.delete_aliases.unwrap_or(false),
            app.now(),
        )?;
        app.mark_dirty();
        Ok(ArtifactPayload { artifact: before })
    }
}

fn base64_id(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// Registers a multipart upload and mints one signed PUT URL per part.
fn start_multipart(
    app: &AppState,
    artifact: u64,
    path: &str,
    parts: &[UploadPartsInput],
) -> Result<UploadMultipartUrls> {
    let upload_id = format!("{:032x}", rand::random::<u128>());
    let mut expected = std::collections::BTreeMap::new();
    let mut urls = Vec::with_capacity(parts.len());
    for p in parts {
        let n = u32::try_from(p.part_number.0)
            .ok()
            .filter(|n| *n >= 1)
            .ok_or("part numbers start at 1")?;
        expected.insert(n, p.hex_md5.to_ascii_lowercase());
        urls.push(UploadUrlPart {
            part_number: p.part_number,
            upload_url: app.signed_main_url(&format!("/_upload/artifact/part/{upload_id}/{n}")),
        });
    }
    app.artifacts().multipart.lock().insert(
        upload_id.clone(),
        MultipartUpload {
            artifact,
            path: path.to_string(),
            expected,
            parts: Default::default(),
        },
    );
    Ok(UploadMultipartUrls {
        upload_id,
        upload_url_parts: urls,
    })
}

/// Concatenates the parts in order after checking the completion list against them.
fn assemble(
    app: &AppState,
    upload: &MultipartUpload,
    completed: &[UploadPartsInput],
) -> Result<Arc<crate::blobs::Blob>> {
    if completed.len() != upload.expected.len() {
        return Err(format!(
            "expected {} parts, the completion lists {}",
            upload.expected.len(),
            completed.len()
        )
        .into());
    }
    let mut total = Vec::new();
    for p in completed {
        let n = u32::try_from(p.part_number.0).map_err(|_| "bad part number")?;
        let blob = upload
            .parts
            .get(&n)
            .and_then(|k| app.blobs.get(k))
            .ok_or_else(|| format!("part {n} was never uploaded"))?;
        let etag = p.hex_md5.trim_matches('"').to_ascii_lowercase();
        if etag != blob.md5_hex() || hex_md5_to_b64(&etag).is_none() {
            return Err(format!("part {n}: ETag {etag} does not match the uploaded bytes").into());
        }
        total.extend_from_slice(&blob.read_all());
    }
    app.blobs
        .put_bytes(total.into())
        .map_err(|e| format!("cannot store the assembled file: {e}").into())
}
