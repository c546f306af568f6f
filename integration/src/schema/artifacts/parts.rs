//! The fields artifacts contribute to `Project`, `Run`, `File` and `Query` (merged into the
//! objects defined in [`crate::schema`]).

use std::sync::Arc;

use async_graphql::{Context, ID, Object, Result, SimpleObject};

use super::collections::{
    ArtifactCollectionConnection, ArtifactCollectionIface, ArtifactSequenceObj, ArtifactTypeObj,
    refuse_collection_filters,
};
use super::types::{
    ArtifactConnection, ArtifactFileExtra, ArtifactObj, MembershipObj, UploadMultipartUrls,
};
use super::{max_page, paginate};
use crate::artifacts::ArtifactsExt as _;
use crate::artifacts::model::ArtifactRecord;
use crate::schema::files::FileView;
use crate::schema::scalars::JsonString;
use crate::schema::{PageInfo, ProjectRef, app};
use crate::state::RunHandle;

/// Artifact fields of `Project`.
pub struct ProjectArtifactFields(pub ProjectRef);

/// `ArtifactTypeEdge`.
#[derive(SimpleObject)]
pub struct ArtifactTypeEdge {
    /// The type.
    pub node: ArtifactTypeObj,
    /// Cursor.
    pub cursor: String,
}

/// `ArtifactTypeConnection`.
#[derive(SimpleObject)]
pub struct ArtifactTypeConnection {
    /// Edges.
    pub edges: Vec<ArtifactTypeEdge>,
    /// Page info.
    pub page_info: PageInfo,
    /// Types.
    pub total_count: i64,
}

impl ProjectArtifactFields {
    fn find_version(&self, ctx: &Context<'_>, name_alias: &str) -> Option<Arc<ArtifactRecord>> {
        let store = app(ctx).artifacts();
        let w = store.world.read();
        w.resolve(&self.0.entity, &self.0.name, name_alias)
            .map(|a| Arc::new(a.clone()))
    }
}

#[Object]
impl ProjectArtifactFields {
    /// Artifact types of the project, oldest first, paginated by `pageInfo.endCursor`.
    async fn artifact_types(
        &self,
        ctx: &Context<'_>,
        after: Option<String>,
        first: Option<i32>,
        include_all: Option<bool>,
    ) -> ArtifactTypeConnection {
        let _ = include_all;
        let types: Vec<ArtifactTypeObj> = {
            let store = app(ctx).artifacts();
            let w = store.world.read();
            let mut types: Vec<ArtifactTypeObj> = w
                .project(&self.0.entity, &self.0.name)
                .map(|p| {
                    p.types
                        .values()
                        .map(|t| ArtifactTypeObj {
                            entity: p.entity.clone(),
                            project: p.project.clone(),
                            rec: t.clone(),
                        })
                        .collect()
                })
                .unwrap_or_default();
            types.sort_by_key(|t| t.rec.num);
            types
        };
        let p = paginate(types, after.as_deref(), first, max_page(ctx));
        ArtifactTypeConnection {
            edges: p
                .items
                .into_iter()
                .map(|(cursor, node)| ArtifactTypeEdge { node, cursor })
                .collect(),
            page_info: p.page_info,
            total_count: p.total,
        }
    }

    /// An artifact type by name.
    async fn artifact_type(
        &self,
        ctx: &Context<'_>,
        name: Option<String>,
    ) -> Option<ArtifactTypeObj> {
        ArtifactTypeObj::find(app(ctx), &self.0.entity, &self.0.name, &name?)
    }

    /// All collections of the project, oldest first.
    async fn artifact_collections(
        &self,
        ctx: &Context<'_>,
        after: Option<String>,
        first: Option<i32>,
        filters: Option<JsonString>,
        order: Option<String>,
    ) -> Result<ArtifactCollectionConnection> {
        refuse_collection_filters(&filters, &order)?;
        let seqs: Vec<ArtifactSequenceObj> = {
            let store = app(ctx).artifacts();
            let w = store.world.read();
            match w.project(&self.0.entity, &self.0.name) {
                Some(p) => {
                    let mut seqs: Vec<_> = p.sequences.values().collect();
                    seqs.sort_by_key(|s| s.num);
                    seqs.into_iter()
                        .map(|s| ArtifactSequenceObj::from_record(p, s))
                        .collect()
                }
                None => Vec::new(),
            }
        };
        Ok(ArtifactCollectionConnection::paginate(
            seqs,
            after.as_deref(),
            first,
            max_page(ctx),
        ))
    }

    /// A collection by name (any type).
    async fn artifact_collection(
        &self,
        ctx: &Context<'_>,
        name: Option<String>,
    ) -> Option<ArtifactCollectionIface> {
        ArtifactSequenceObj::find(app(ctx), &self.0.entity, &self.0.name, &name?)
            .map(ArtifactCollectionIface::ArtifactSequence)
    }

    /// A sequence by name.
    async fn artifact_sequence(
        &self,
        ctx: &Context<'_>,
        name: Option<String>,
    ) -> Option<ArtifactSequenceObj> {
        ArtifactSequenceObj::find(app(ctx), &self.0.entity, &self.0.name, &name?)
    }

    /// A version by `name:alias` (`vN`, `latest`, or a custom alias).
    async fn artifact_collection_membership(
        &self,
        ctx: &Context<'_>,
        name: Option<String>,
    ) -> Option<MembershipObj> {
        self.find_version(ctx, &name?).map(MembershipObj)
    }

    /// A version by `name:alias`.
    async fn artifact(&self, ctx: &Context<'_>, name: Option<String>) -> Option<ArtifactObj> {
        self.find_version(ctx, &name?).map(ArtifactObj)
    }

    /// Whether any artifact type may be linked into this project as a registry (not emulated).
    async fn allow_all_artifact_types_in_registry(&self) -> bool {
        false
    }
}

/// Artifact fields of `Run`.
pub struct RunArtifactFields(pub RunHandle);

#[Object]
impl RunArtifactFields {
    /// Committed versions the run logged, oldest first.
    async fn output_artifacts(
        &self,
        ctx: &Context<'_>,
        after: Option<String>,
        first: Option<i32>,
    ) -> ArtifactConnection {
        let items: Vec<ArtifactObj> = app(ctx)
            .artifacts()
            .world
            .read()
            .outputs_of(&self.0.key)
            .into_iter()
            .map(ArtifactObj::new)
            .collect();
        ArtifactConnection::paginate(items, after.as_deref(), first, max_page(ctx))
    }

    /// Versions the run used, in first-use order.
    async fn input_artifacts(
        &self,
        ctx: &Context<'_>,
        after: Option<String>,
        first: Option<i32>,
    ) -> ArtifactConnection {
        let items: Vec<ArtifactObj> = app(ctx)
            .artifacts()
            .world
            .read()
            .inputs_of(&self.0.key)
            .into_iter()
            .map(ArtifactObj::new)
            .collect();
        ArtifactConnection::paginate(items, after.as_deref(), first, max_page(ctx))
    }
}

/// Artifact fields of `File` (null/empty on run files, except `displayName` and `digest`).
pub struct FileArtifactFields(pub Arc<FileView>);

impl FileArtifactFields {
    fn extra(&self) -> Option<&ArtifactFileExtra> {
        self.0.extra.as_ref()?.downcast_ref::<ArtifactFileExtra>()
    }
}

#[Object]
impl FileArtifactFields {
    /// The path (artifact files: relative to the artifact root).
    async fn display_name(&self) -> String {
        self.extra()
            .and_then(|x| x.display_name.clone())
            .unwrap_or_else(|| self.0.name.clone())
    }

    /// Where the bytes are stored (artifact files only).
    async fn storage_path(&self) -> Option<String> {
        self.extra().and_then(|x| x.storage_path.clone())
    }

    /// The manifest digest (artifact files) or the base64 MD5 (run files, when known).
    async fn digest(&self) -> Option<String> {
        if let Some(d) = self.extra().and_then(|x| x.digest.clone()) {
            return Some(d);
        }
        self.0
            .blob
            .as_ref()
            .filter(|b| b.md5_is_cached())
            .map(|b| b.md5_base64())
    }

    /// Headers (`Name:Value`) to send with the upload PUT.
    async fn upload_headers(&self) -> Vec<String> {
        self.extra()
            .map(|x| x.upload_headers.clone())
            .unwrap_or_default()
    }

    /// Multipart upload URLs (when the client announced parts).
    async fn upload_multipart_urls(&self) -> Option<UploadMultipartUrls> {
        self.extra().and_then(|x| x.multipart.clone())
    }

    /// The artifact version the bytes belong to (upload responses: their birth artifact).
    async fn artifact(&self) -> Option<ArtifactObj> {
        self.extra()
            .and_then(|x| x.artifact.clone())
            .map(ArtifactObj)
    }
}

/// `ClientIDMapping`.
#[derive(SimpleObject)]
pub struct ClientIdMapping {
    /// The server id of the artifact created with the client id.
    #[graphql(name = "serverID")]
    pub server_id: ID,
}

/// Artifact root fields of `Query`.
#[derive(Default)]
pub struct ArtifactQuery;

#[Object]
impl ArtifactQuery {
    /// A version by id (null when unknown or deleted).
    async fn artifact(&self, ctx: &Context<'_>, id: ID) -> Option<ArtifactObj> {
        let store = app(ctx).artifacts();
        let w = store.world.read();
        w.artifact_by_gid(&id).map(ArtifactObj::new)
    }

    /// A collection by id.
    async fn artifact_collection(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> Option<ArtifactCollectionIface> {
        ArtifactSequenceObj::find_by_gid(app(ctx), &id)
            .map(ArtifactCollectionIface::ArtifactSequence)
    }

    /// A sequence by id.
    async fn artifact_sequence(&self, ctx: &Context<'_>, id: ID) -> Option<ArtifactSequenceObj> {
        ArtifactSequenceObj::find_by_gid(app(ctx), &id)
    }

    /// Maps a client-side artifact id to the server id.
    #[graphql(name = "clientIDMapping")]
    async fn client_id_mapping(
        &self,
        ctx: &Context<'_>,
        #[graphql(name = "clientID")] client_id: ID,
    ) -> Option<ClientIdMapping> {
        let store = app(ctx).artifacts();
        let w = store.world.read();
        w.artifacts
            .values()
            .find(|a| a.client_id.as_deref() == Some(client_id.as_str()))
            .map(|a| ClientIdMapping {
                server_id: ID(a.gid()),
            })
    }
}
