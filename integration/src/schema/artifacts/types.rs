//! `Artifact`, `ArtifactCollectionMembership`, `ArtifactAlias`, `Tag`, `ArtifactManifest`,
//! their connections, and artifact files rendered as `File`s.
//!
//! Required by the SDK's pydantic models (a missing or null value raises in Python):
//! `Artifact.{ttlDurationSeconds, ttlIsInherited, tags, state, size, digest, fileCount,
//! createdAt, artifactSequence, artifactType}`, `File.{sizeBytes, directUrl}` on artifact files,
//! and the `__typename` literals (`Artifact`, `ArtifactCollectionMembership`, `ArtifactAlias`,
//! `Tag`, `ArtifactSequence`, `File`, `PageInfo`), which follow from the type names here.

use std::sync::Arc;

use async_graphql::{Context, Enum, ID, Object, Result, SimpleObject, Union};
use base64::Engine as _;

use super::collections::{ArtifactCollectionIface, ArtifactSequenceObj, ArtifactTypeObj};
use super::{max_page, paginate};
use crate::app::{AppState, encode_path, encode_segment};
use crate::artifacts::ArtifactsExt as _;
use crate::artifacts::manifest::b64_md5_to_hex;
use crate::artifacts::model::{
    ArtifactRecord, ArtifactState, FileEntry, alias_gid, gid, parse_gid,
};
use crate::schema::files::{FileConnection, FileView};
use crate::schema::project::{RunConnection, RunEdge};
use crate::schema::scalars::{DateTime, Int64, JsonString};
use crate::schema::viewer::{User, run_user};
use crate::schema::{PageInfo, RunObject, app};

/// `ArtifactState`.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(name = "ArtifactState")]
pub enum ArtifactStateEnum {
    /// Uploading.
    Pending,
    /// Committed.
    Committed,
    /// Deleted.
    Deleted,
}

impl From<ArtifactState> for ArtifactStateEnum {
    fn from(s: ArtifactState) -> Self {
        match s {
            ArtifactState::Pending => Self::Pending,
            ArtifactState::Committed => Self::Committed,
            ArtifactState::Deleted => Self::Deleted,
        }
    }
}

/// `ArtifactDigestAlgorithm`.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(name = "ArtifactDigestAlgorithm")]
pub enum DigestAlgorithmEnum {
    /// MD5 over the sorted manifest entries.
    #[graphql(name = "MANIFEST_MD5")]
    ManifestMd5,
    /// xxh128 over the sorted manifest entries.
    #[graphql(name = "MANIFEST_XXH128")]
    ManifestXxh128,
}

impl DigestAlgorithmEnum {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ManifestMd5 => "MANIFEST_MD5",
            Self::ManifestXxh128 => "MANIFEST_XXH128",
        }
    }

    /// From the stored spelling (MD5 for anything unknown).
    pub fn parse(text: &str) -> Self {
        if text == "MANIFEST_XXH128" {
            Self::ManifestXxh128
        } else {
            Self::ManifestMd5
        }
    }
}

/// `Tag` (artifact version and collection tags).
#[derive(SimpleObject, Clone)]
#[graphql(name = "Tag")]
pub struct TagObj {
    /// Id.
    pub id: ID,
    /// Name.
    pub name: String,
    /// Category (unused).
    pub tag_category_name: Option<String>,
    /// Attributes (unused).
    pub attributes: Option<JsonString>,
}

impl TagObj {
    /// A tag by name.
    pub fn named(name: &str) -> Self {
        TagObj {
            id: ID(base64::engine::general_purpose::STANDARD.encode(format!("Tag:{name}"))),
            name: name.to_string(),
            tag_category_name: None,
            attributes: None,
        }
    }
}

/// `TagEdge`.
#[derive(SimpleObject, Clone)]
pub struct TagEdge {
    /// The tag.
    pub node: TagObj,
}

/// `TagConnection`.
#[derive(SimpleObject, Clone, Default)]
pub struct TagConnection {
    /// Edges.
    pub edges: Vec<TagEdge>,
    /// Page info.
    pub page_info: PageInfo,
    /// Tags.
    pub total_count: i64,
}

/// `ArtifactAlias`.
#[derive(Clone)]
pub struct AliasObj {
    /// Sequence number (for the id).
    pub sequence_num: u64,
    /// Alias.
    pub alias: String,
    /// Entity of the sequence.
    pub entity: String,
    /// Project of the sequence.
    pub project: String,
    /// Sequence name.
    pub sequence: String,
}

#[Object(name = "ArtifactAlias")]
impl AliasObj {
    async fn id(&self) -> ID {
        ID(alias_gid(self.sequence_num, &self.alias))
    }

    async fn alias(&self) -> &str {
        &self.alias
    }

    /// The collection the alias lives in.
    async fn artifact_collection(&self, ctx: &Context<'_>) -> Option<ArtifactCollectionIface> {
        ArtifactSequenceObj::find(app(ctx), &self.entity, &self.project, &self.sequence)
            .map(ArtifactCollectionIface::ArtifactSequence)
    }
}

/// The aliases of a version, as objects.
pub fn aliases_of(app: &AppState, a: &ArtifactRecord) -> Vec<AliasObj> {
    let store = app.artifacts();
    let w = store.world.read();
    let Some(seq) = w.sequence_of(a) else {
        return Vec::new();
    };
    w.aliases_of(a)
        .into_iter()
        .map(|alias| AliasObj {
            sequence_num: seq.num,
            alias,
            entity: a.entity.clone(),
            project: a.project.clone(),
            sequence: a.sequence.clone(),
        })
        .collect()
}

/// `ArtifactAliasEdge`.
#[derive(SimpleObject)]
pub struct ArtifactAliasEdge {
    /// The alias.
    pub node: AliasObj,
    /// Cursor.
    pub cursor: String,
}

/// `ArtifactAliasConnection`.
#[derive(SimpleObject)]
pub struct ArtifactAliasConnection {
    /// Edges.
    pub edges: Vec<ArtifactAliasEdge>,
    /// Page info.
    pub page_info: PageInfo,
    /// Aliases.
    pub total_count: i64,
}

/// `UploadUrlPart`.
#[derive(SimpleObject, Clone, Debug)]
pub struct UploadUrlPart {
    /// 1-based part number.
    pub part_number: Int64,
    /// Signed PUT URL of the part.
    pub upload_url: String,
}

/// `UploadMultipartUrls`.
#[derive(SimpleObject, Clone, Debug)]
pub struct UploadMultipartUrls {
    /// Upload id (for `completeMultipartUploadArtifact`).
    #[graphql(name = "uploadID")]
    pub upload_id: String,
    /// One URL per part.
    pub upload_url_parts: Vec<UploadUrlPart>,
}

/// What artifact files (and manifest files) add to a [`FileView`].
#[derive(Debug, Clone, Default)]
pub struct ArtifactFileExtra {
    /// `displayName` (the artifact-relative path).
    pub display_name: Option<String>,
    /// `storagePath`.
    pub storage_path: Option<String>,
    /// `digest` (the manifest digest).
    pub digest: Option<String>,
    /// `uploadHeaders`.
    pub upload_headers: Vec<String>,
    /// `uploadMultipartUrls`.
    pub multipart: Option<UploadMultipartUrls>,
    /// `artifact { id }`: the birth artifact (upload responses) or the owning version.
    pub artifact: Option<Arc<ArtifactRecord>>,
}

/// Storage path of content (opaque to clients; the multipart completion echoes it back).
pub fn storage_path(birth: u64, md5_b64: &str) -> String {
    format!(
        "wandb_artifacts/{birth}/{}",
        b64_md5_to_hex(md5_b64).unwrap_or_else(|| encode_segment(md5_b64))
    )
}

/// The authenticated download URL of a stored entry (`/artifactsV2/...`, as the SDK builds it
/// for its own fallback).
pub fn entry_url(app: &AppState, a: &ArtifactRecord, f: &FileEntry) -> Option<String> {
    let hex = b64_md5_to_hex(f.md5.as_deref()?)?;
    let birth = f.birth_artifact_id.clone().unwrap_or_else(|| a.gid());
    let base = f.path.rsplit('/').next().unwrap_or(&f.path);
    Some(format!(
        "{}/artifactsV2/default/{}/{}/{}/{}/{hex}/{}",
        app.base_url,
        encode_segment(&a.entity),
        encode_segment(&a.project),
        encode_segment(&a.sequence),
        encode_segment(&birth),
        encode_segment(base)
    ))
}

/// A committed file as a `File`.
pub fn file_view(app: &AppState, a: &Arc<ArtifactRecord>, f: &FileEntry) -> FileView {
    let blob = f.blob.as_ref().and_then(|k| app.blobs.get(k));
    let birth = f
        .birth_artifact_id
        .as_deref()
        .and_then(|b| parse_gid("Artifact", b))
        .unwrap_or(a.num);
    FileView {
        id: base64::engine::general_purpose::STANDARD
            .encode(format!("ArtifactFile:{}:{}", a.num, f.path)),
        name: f.path.clone(),
        size: Some(f.size),
        mimetype: Some(f.mimetype.clone()),
        updated_at: Some(a.committed_at.unwrap_or(a.created_at)),
        direct_url: blob.as_ref().map(|b| app.direct_blob_url(b, &f.path)),
        blob,
        url: entry_url(app, a, f),
        upload_url: None,
        extra: Some(Arc::new(ArtifactFileExtra {
            display_name: Some(f.path.clone()),
            storage_path: f.md5.as_deref().map(|m| storage_path(birth, m)),
            digest: Some(f.digest.clone()),
            upload_headers: Vec::new(),
            multipart: None,
            artifact: Some(Arc::clone(a)),
        })),
    }
}

/// The manifest file of a version as a `File` (signed upload URL while pending, signed direct
/// URL once uploaded).
pub fn manifest_file_view(app: &AppState, a: &Arc<ArtifactRecord>) -> FileView {
    let m = a
        .manifest
        .clone()
        .unwrap_or_else(|| crate::artifacts::model::ManifestRecord {
            name: "wandb_manifest.json".into(),
            digest: String::new(),
            blob: None,
            updated_at: a.created_at,
        });
    let blob = m.blob.as_ref().and_then(|k| app.blobs.get(k));
    let upload = (a.state == ArtifactState::Pending)
        .then(|| app.signed_main_url(&format!("/_upload/artifact/manifest/{}", a.num)));
    FileView {
        id: base64::engine::general_purpose::STANDARD
            .encode(format!("ArtifactManifestFile:{}", a.num)),
        name: m.name.clone(),
        size: blob.as_ref().map(|b| b.len()),
        mimetype: Some("application/json".into()),
        updated_at: Some(m.updated_at),
        direct_url: blob.as_ref().map(|b| app.direct_blob_url(b, &m.name)),
        blob,
        url: None,
        upload_url: upload,
        extra: Some(Arc::new(ArtifactFileExtra {
            display_name: Some(m.name.clone()),
            digest: Some(m.digest.clone()),
            artifact: Some(Arc::clone(a)),
            ..ArtifactFileExtra::default()
        })),
    }
}

/// The signed PUT URL of an announced file.
pub fn file_upload_url(app: &AppState, artifact: u64, path: &str) -> String {
    app.signed_main_url(&format!(
        "/_upload/artifact/file/{artifact}/{}",
        encode_path(path)
    ))
}

/// A page of a committed version's stored files (`names` = exact paths; empty = all).
pub fn files_connection(
    ctx: &Context<'_>,
    a: &Arc<ArtifactRecord>,
    names: Option<Vec<Option<String>>>,
    after: Option<String>,
    first: Option<i32>,
) -> FileConnection {
    let app = app(ctx);
    let names: Vec<String> = names.unwrap_or_default().into_iter().flatten().collect();
    let views: Vec<FileView> = a
        .files
        .iter()
        // References have no bytes here (and no `directUrl`, which the SDK requires).
        .filter(|f| f.blob.is_some())
        .filter(|f| names.is_empty() || names.contains(&f.path))
        .map(|f| file_view(app, a, f))
        .collect();
    FileConnection::paginate(views, after.as_deref(), first, max_page(ctx))
}

/// `Artifact`: one version.
#[derive(Clone)]
pub struct ArtifactObj(pub Arc<ArtifactRecord>);

impl ArtifactObj {
    /// From a record (cloned; committed files are shared).
    pub fn new(a: &ArtifactRecord) -> Self {
        Self(Arc::new(a.clone()))
    }

    /// A visible version by number.
    pub fn find(app: &AppState, num: u64) -> Option<Self> {
        let store = app.artifacts();
        let w = store.world.read();
        w.artifact(num)
            .filter(|a| a.state != ArtifactState::Deleted)
            .map(Self::new)
    }
}

/// Who created a version. (Short-lived per response, so the size difference of the variants
/// does not matter.)
#[allow(clippy::large_enum_variant)]
#[derive(Union)]
#[graphql(name = "ArtifactCreator")]
pub enum ArtifactCreator {
    /// The run that logged it.
    Run(RunObject),
    /// A user (versions created without a run).
    User(User),
}

#[Object(name = "Artifact")]
impl ArtifactObj {
    async fn id(&self) -> ID {
        ID(self.0.gid())
    }

    /// The source sequence.
    async fn artifact_sequence(&self, ctx: &Context<'_>) -> Result<ArtifactSequenceObj> {
        ArtifactSequenceObj::find(app(ctx), &self.0.entity, &self.0.project, &self.0.sequence)
            .ok_or_else(|| format!("sequence of artifact {} not found", self.0.num).into())
    }

    async fn artifact_collection(&self, ctx: &Context<'_>) -> Option<ArtifactCollectionIface> {
        ArtifactSequenceObj::find(app(ctx), &self.0.entity, &self.0.project, &self.0.sequence)
            .map(ArtifactCollectionIface::ArtifactSequence)
    }

    /// `N` of `vN` (null while pending).
    async fn version_index(&self) -> Option<i32> {
        self.0.version_index.map(|v| v as i32)
    }

    async fn artifact_type(&self, ctx: &Context<'_>) -> Result<ArtifactTypeObj> {
        ArtifactTypeObj::find(app(ctx), &self.0.entity, &self.0.project, &self.0.type_name)
            .ok_or_else(|| format!("type {} not found", self.0.type_name).into())
    }

    async fn description(&self) -> Option<&str> {
        self.0.description.as_deref()
    }

    async fn metadata(&self) -> JsonString {
        JsonString(self.0.metadata.clone().unwrap_or_else(|| "{}".into()))
    }

    /// Seconds; −2 when no TTL is set (the SDK's "disabled").
    async fn ttl_duration_seconds(&self) -> Int64 {
        Int64(self.0.ttl_seconds.unwrap_or(-2))
    }

    async fn ttl_is_inherited(&self) -> bool {
        self.0.ttl_seconds.is_none()
    }

    async fn tags(&self) -> Vec<TagObj> {
        self.0.tags.iter().map(|t| TagObj::named(t)).collect()
    }

    async fn history_step(&self) -> Option<Int64> {
        self.0.history_step.map(Int64)
    }

    async fn state(&self) -> ArtifactStateEnum {
        self.0.state.into()
    }

    async fn size(&self) -> Int64 {
        Int64(self.0.size as i64)
    }

    async fn digest(&self) -> &str {
        &self.0.digest
    }

    async fn digest_algorithm(&self) -> DigestAlgorithmEnum {
        DigestAlgorithmEnum::parse(&self.0.digest_algorithm)
    }

    /// Not emulated (null is allowed).
    async fn commit_hash(&self) -> Option<String> {
        None
    }

    async fn file_count(&self) -> Int64 {
        let n = if self.0.state == ArtifactState::Pending {
            self.0.pending_files.len()
        } else {
            self.0.files.len()
        };
        Int64(n as i64)
    }

    async fn created_at(&self) -> DateTime {
        DateTime::from_micros(self.0.created_at)
    }

    async fn updated_at(&self) -> Option<DateTime> {
        Some(DateTime::from_micros(self.0.updated_at))
    }

    async fn aliases(&self, ctx: &Context<'_>) -> Vec<AliasObj> {
        aliases_of(app(ctx), &self.0)
    }

    /// Not emulated.
    async fn labels(&self) -> Option<JsonString> {
        None
    }

    /// The manifest (null until created).
    async fn current_manifest(&self) -> Option<ArtifactManifestObj> {
        self.0
            .manifest
            .as_ref()
            .map(|_| ArtifactManifestObj(Arc::clone(&self.0)))
    }

    /// Stored files by path (`names` = exact paths).
    async fn files(
        &self,
        ctx: &Context<'_>,
        names: Option<Vec<Option<String>>>,
        after: Option<String>,
        first: Option<i32>,
    ) -> FileConnection {
        files_connection(ctx, &self.0, names, after, first)
    }

    /// Memberships (only the source sequence: portfolios are not emulated).
    async fn artifact_memberships(
        &self,
        after: Option<String>,
        first: Option<i32>,
    ) -> MembershipConnection {
        let items = if self.0.version_index.is_some() {
            vec![MembershipObj(Arc::clone(&self.0))]
        } else {
            Vec::new()
        };
        let p = paginate(items, after.as_deref(), first, usize::MAX);
        MembershipConnection {
            edges: p
                .items
                .into_iter()
                .map(|(cursor, node)| MembershipEdge { node, cursor })
                .collect(),
            page_info: p.page_info,
            total_count: p.total,
        }
    }

    /// Runs that used this version.
    async fn used_by(
        &self,
        ctx: &Context<'_>,
        after: Option<String>,
        first: Option<i32>,
    ) -> RunConnection {
        let app = app(ctx);
        let users = app.artifacts().world.read().users_of(self.0.num);
        let runs: Vec<_> = users
            .iter()
            .filter_map(|k| app.run(&k.entity, &k.project, &k.name))
            .collect();
        let p = paginate(runs, after.as_deref(), first, max_page(ctx));
        RunConnection {
            edges: p
                .items
                .into_iter()
                .map(|(cursor, run)| RunEdge {
                    node: RunObject::new(run),
                    cursor,
                })
                .collect(),
            page_info: p.page_info,
            total_count: p.total,
        }
    }

    /// The run that logged it, else the viewer.
    async fn created_by(&self, ctx: &Context<'_>) -> Option<ArtifactCreator> {
        let app = app(ctx);
        if let Some(k) = &self.0.created_by
            && let Some(run) = app.run(&k.entity, &k.project, &k.name)
        {
            return Some(ArtifactCreator::Run(RunObject::new(run)));
        }
        let world = app.world.read();
        let username = world.viewer.username.clone();
        Some(ArtifactCreator::User(run_user(&world, &username)))
    }
}

/// `ArtifactEdge`.
#[derive(SimpleObject)]
pub struct ArtifactEdge {
    /// The version.
    pub node: ArtifactObj,
    /// Cursor.
    pub cursor: String,
}

/// `ArtifactConnection` (run inputs/outputs).
#[derive(SimpleObject)]
pub struct ArtifactConnection {
    /// Edges.
    pub edges: Vec<ArtifactEdge>,
    /// Page info.
    pub page_info: PageInfo,
    /// Versions.
    pub total_count: i64,
}

impl ArtifactConnection {
    /// A page of `items`.
    pub fn paginate(
        items: Vec<ArtifactObj>,
        after: Option<&str>,
        first: Option<i32>,
        max: usize,
    ) -> Self {
        let p = paginate(items, after, first, max);
        Self {
            edges: p
                .items
                .into_iter()
                .map(|(cursor, node)| ArtifactEdge { node, cursor })
                .collect(),
            page_info: p.page_info,
            total_count: p.total,
        }
    }
}

/// `VersionedArtifactEdge`.
#[derive(SimpleObject)]
pub struct VersionedArtifactEdge {
    /// `vN`.
    pub version: String,
    /// The version.
    pub node: ArtifactObj,
    /// Cursor.
    pub cursor: String,
}

/// `VersionedArtifactConnection` (a collection's versions).
#[derive(SimpleObject)]
pub struct VersionedArtifactConnection {
    /// Edges.
    pub edges: Vec<VersionedArtifactEdge>,
    /// Page info.
    pub page_info: PageInfo,
    /// Matching versions.
    pub total_count: i64,
}

/// `ArtifactCollectionMembership`: a version as a member of its sequence.
#[derive(Clone)]
pub struct MembershipObj(pub Arc<ArtifactRecord>);

#[Object(name = "ArtifactCollectionMembership")]
impl MembershipObj {
    async fn id(&self) -> ID {
        ID(gid("ArtifactCollectionMembership", self.0.num))
    }

    async fn version_index(&self) -> Option<i32> {
        self.0.version_index.map(|v| v as i32)
    }

    async fn created_at(&self) -> DateTime {
        DateTime::from_micros(self.0.committed_at.unwrap_or(self.0.created_at))
    }

    async fn aliases(&self, ctx: &Context<'_>) -> Vec<AliasObj> {
        aliases_of(app(ctx), &self.0)
    }

    async fn artifact_collection(&self, ctx: &Context<'_>) -> Option<ArtifactCollectionIface> {
        ArtifactSequenceObj::find(app(ctx), &self.0.entity, &self.0.project, &self.0.sequence)
            .map(ArtifactCollectionIface::ArtifactSequence)
    }

    async fn artifact(&self) -> Option<ArtifactObj> {
        Some(ArtifactObj(Arc::clone(&self.0)))
    }

    /// Stored files by path (`names` = exact paths), paginated by `pageInfo.endCursor`.
    async fn files(
        &self,
        ctx: &Context<'_>,
        names: Option<Vec<Option<String>>>,
        after: Option<String>,
        first: Option<i32>,
    ) -> FileConnection {
        files_connection(ctx, &self.0, names, after, first)
    }
}

/// `ArtifactCollectionMembershipEdge`.
#[derive(SimpleObject)]
#[graphql(name = "ArtifactCollectionMembershipEdge")]
pub struct MembershipEdge {
    /// The membership.
    pub node: MembershipObj,
    /// Cursor.
    pub cursor: String,
}

/// `ArtifactCollectionMembershipConnection`.
#[derive(SimpleObject)]
#[graphql(name = "ArtifactCollectionMembershipConnection")]
pub struct MembershipConnection {
    /// Edges.
    pub edges: Vec<MembershipEdge>,
    /// Page info.
    pub page_info: PageInfo,
    /// Memberships.
    pub total_count: i64,
}

/// `ArtifactManifest`.
pub struct ArtifactManifestObj(pub Arc<ArtifactRecord>);

#[Object(name = "ArtifactManifest")]
impl ArtifactManifestObj {
    async fn id(&self) -> ID {
        ID(gid("ArtifactManifest", self.0.num))
    }

    /// The manifest JSON as a file.
    async fn file(&self, ctx: &Context<'_>) -> crate::schema::FileObject {
        crate::schema::FileObject::new(manifest_file_view(app(ctx), &self.0))
    }

    /// Base64 MD5 of the manifest file.
    async fn digest(&self) -> Option<String> {
        self.0.manifest.as_ref().map(|m| m.digest.clone())
    }

    async fn artifact(&self) -> ArtifactObj {
        ArtifactObj(Arc::clone(&self.0))
    }
}
