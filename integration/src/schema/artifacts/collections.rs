//! `ArtifactType`, `ArtifactSequence`, and the `ArtifactCollection` interface.
//!
//! The SDK selects collections through fragments `on ArtifactCollection` and checks
//! `__typename` against `ArtifactSequence`/`ArtifactPortfolio`; every collection here is a
//! sequence (portfolios, i.e. registry links, are not emulated), so the interface has one
//! implementor. Every field a document selects through the interface is declared on it.

use std::sync::Arc;

use async_graphql::{Context, ID, InputObject, Interface, Object, Result, SimpleObject};

use super::types::{
    AliasObj, ArtifactAliasConnection, ArtifactAliasEdge, ArtifactObj, DigestAlgorithmEnum,
    MembershipConnection, MembershipEdge, MembershipObj, TagConnection,
    VersionedArtifactConnection, VersionedArtifactEdge,
};
use super::{max_page, paginate, project_object};
use crate::app::AppState;
use crate::artifacts::ArtifactsExt as _;
use crate::artifacts::filters::{VersionFilter, VersionOrder};
use crate::artifacts::model::{ProjectArtifacts, SequenceRecord, TypeRecord, gid};
use crate::schema::scalars::{DateTime, JsonString};
use crate::schema::{PageInfo, ProjectObject, app};

/// `ArtifactCollection`: the interface over sequences (and, on SaaS, portfolios).
// The derive's syntax repeats `field(...)`/`arg(...)`; they are not duplicates.
#[allow(clippy::duplicated_attributes)]
#[derive(Interface)]
#[graphql(
    name = "ArtifactCollection",
    field(name = "id", ty = "ID"),
    field(name = "name", ty = "String"),
    field(name = "description", ty = "Option<String>"),
    field(name = "created_at", ty = "DateTime"),
    field(name = "updated_at", ty = "Option<DateTime>"),
    field(name = "project", ty = "Option<ProjectObject>"),
    field(name = "default_artifact_type", ty = "ArtifactTypeObj"),
    field(name = "tags", ty = "TagConnection"),
    field(name = "state", ty = "String"),
    field(
        name = "aliases",
        ty = "ArtifactAliasConnection",
        arg(name = "after", ty = "Option<String>"),
        arg(name = "first", ty = "Option<i32>")
    ),
    field(
        name = "artifact_membership",
        ty = "Option<MembershipObj>",
        arg(name = "alias_name", ty = "Option<String>")
    ),
    field(
        name = "artifact_memberships",
        ty = "MembershipConnection",
        arg(name = "after", ty = "Option<String>"),
        arg(name = "first", ty = "Option<i32>")
    ),
    field(
        name = "artifacts",
        ty = "VersionedArtifactConnection",
        arg(name = "after", ty = "Option<String>"),
        arg(name = "first", ty = "Option<i32>"),
        arg(name = "order", ty = "Option<String>"),
        arg(name = "filters", ty = "Option<JsonString>")
    )
)]
pub enum ArtifactCollectionIface {
    /// A sequence (the versions of one artifact name).
    ArtifactSequence(ArtifactSequenceObj),
}

/// `ArtifactType`.
#[derive(Clone)]
pub struct ArtifactTypeObj {
    /// Entity.
    pub entity: String,
    /// Project.
    pub project: String,
    /// The type.
    pub rec: TypeRecord,
}

impl ArtifactTypeObj {
    /// A type of a project by name.
    pub fn find(app: &AppState, entity: &str, project: &str, name: &str) -> Option<Self> {
        let store = app.artifacts();
        let w = store.world.read();
        let t = w.project(entity, project)?.types.get(name)?;
        Some(Self {
            entity: entity.to_string(),
            project: project.to_string(),
            rec: t.clone(),
        })
    }

    fn sequences(&self, app: &AppState) -> Vec<ArtifactSequenceObj> {
        let store = app.artifacts();
        let w = store.world.read();
        let Some(p) = w.project(&self.entity, &self.project) else {
            return Vec::new();
        };
        let mut seqs: Vec<&SequenceRecord> = p
            .sequences
            .values()
            .filter(|s| s.type_name == self.rec.name)
            .collect();
        seqs.sort_by_key(|s| s.num);
        seqs.into_iter()
            .map(|s| ArtifactSequenceObj::from_record(p, s))
            .collect()
    }
}

/// `ArtifactCollectionEdge`.
#[derive(SimpleObject)]
pub struct ArtifactCollectionEdge {
    /// The collection.
    pub node: ArtifactCollectionIface,
    /// Cursor.
    pub cursor: String,
}

/// `ArtifactCollectionConnection`.
#[derive(SimpleObject)]
pub struct ArtifactCollectionConnection {
    /// Edges.
    pub edges: Vec<ArtifactCollectionEdge>,
    /// Page info.
    pub page_info: PageInfo,
    /// Collections.
    pub total_count: i64,
}

impl ArtifactCollectionConnection {
    /// A page of sequences.
    pub fn paginate(
        items: Vec<ArtifactSequenceObj>,
        after: Option<&str>,
        first: Option<i32>,
        max: usize,
    ) -> Self {
        let p = paginate(items, after, first, max);
        Self {
            edges: p
                .items
                .into_iter()
                .map(|(cursor, s)| ArtifactCollectionEdge {
                    node: ArtifactCollectionIface::ArtifactSequence(s),
                    cursor,
                })
                .collect(),
            page_info: p.page_info,
            total_count: p.total,
        }
    }
}

/// Collection `filters`/`order` are not emulated (the SDK only sends them when the server
/// advertises `ARTIFACT_COLLECTIONS_FILTERING_SORTING`, which the emulator does not).
pub(crate) fn refuse_collection_filters(
    filters: &Option<JsonString>,
    order: &Option<String>,
) -> Result<()> {
    let has_filter = filters
        .as_ref()
        .is_some_and(|f| !matches!(f.0.trim(), "" | "{}" | "null"));
    if has_filter || order.as_ref().is_some_and(|o| !o.trim().is_empty()) {
        return Err("filtering and ordering of artifact collections is not emulated".into());
    }
    Ok(())
}

#[Object(name = "ArtifactType")]
impl ArtifactTypeObj {
    async fn id(&self) -> ID {
        ID(gid("ArtifactType", self.rec.num))
    }

    async fn name(&self) -> &str {
        &self.rec.name
    }

    async fn description(&self) -> Option<&str> {
        self.rec.description.as_deref()
    }

    async fn created_at(&self) -> DateTime {
        DateTime::from_micros(self.rec.created_at)
    }

    /// Sequences of this type, oldest first, paginated by `pageInfo.endCursor`.
    async fn artifact_collections(
        &self,
        ctx: &Context<'_>,
        after: Option<String>,
        first: Option<i32>,
        filters: Option<JsonString>,
        order: Option<String>,
    ) -> Result<ArtifactCollectionConnection> {
        refuse_collection_filters(&filters, &order)?;
        Ok(ArtifactCollectionConnection::paginate(
            self.sequences(app(ctx)),
            after.as_deref(),
            first,
            max_page(ctx),
        ))
    }

    /// Legacy name of `artifactCollections`.
    async fn artifact_sequences(
        &self,
        ctx: &Context<'_>,
        after: Option<String>,
        first: Option<i32>,
    ) -> ArtifactCollectionConnection {
        ArtifactCollectionConnection::paginate(
            self.sequences(app(ctx)),
            after.as_deref(),
            first,
            max_page(ctx),
        )
    }

    /// A collection of this type by name.
    async fn artifact_collection(
        &self,
        ctx: &Context<'_>,
        name: Option<String>,
    ) -> Option<ArtifactCollectionIface> {
        ArtifactSequenceObj::find(app(ctx), &self.entity, &self.project, &name?)
            .filter(|s| s.type_name == self.rec.name)
            .map(ArtifactCollectionIface::ArtifactSequence)
    }

    /// A sequence of this type by name.
    async fn artifact_sequence(
        &self,
        ctx: &Context<'_>,
        name: Option<String>,
    ) -> Option<ArtifactSequenceObj> {
        ArtifactSequenceObj::find(app(ctx), &self.entity, &self.project, &name?)
            .filter(|s| s.type_name == self.rec.name)
    }
}

/// `ArtifactSequence`: identity and timestamps; versions and aliases are looked up per field.
#[derive(Clone, Debug)]
pub struct ArtifactSequenceObj {
    /// Number.
    pub num: u64,
    /// Entity.
    pub entity: String,
    /// Project.
    pub project: String,
    /// Name.
    pub name: String,
    /// Type name.
    pub type_name: String,
    /// Description.
    pub description: Option<String>,
    /// Creation time.
    pub created_at: i64,
    /// Last change.
    pub updated_at: i64,
    /// Set on the object a `deleteArtifactSequence` returns.
    pub deleted: bool,
}

impl ArtifactSequenceObj {
    /// From a stored sequence.
    pub fn from_record(p: &ProjectArtifacts, s: &SequenceRecord) -> Self {
        Self {
            num: s.num,
            entity: p.entity.clone(),
            project: p.project.clone(),
            name: s.name.clone(),
            type_name: s.type_name.clone(),
            description: s.description.clone(),
            created_at: s.created_at,
            updated_at: s.updated_at,
            deleted: false,
        }
    }

    /// A sequence by name.
    pub fn find(app: &AppState, entity: &str, project: &str, name: &str) -> Option<Self> {
        let store = app.artifacts();
        let w = store.world.read();
        let p = w.project(entity, project)?;
        p.sequences.get(name).map(|s| Self::from_record(p, s))
    }

    /// A sequence by its GraphQL id (`ArtifactSequence:<n>` or `ArtifactCollection:<n>`).
    pub fn find_by_gid(app: &AppState, id: &str) -> Option<Self> {
        use crate::artifacts::model::parse_gid;
        let num =
            parse_gid("ArtifactSequence", id).or_else(|| parse_gid("ArtifactCollection", id))?;
        let store = app.artifacts();
        let w = store.world.read();
        w.sequence_by_num(num).map(|(p, s)| Self::from_record(p, s))
    }
}

#[Object(name = "ArtifactSequence")]
impl ArtifactSequenceObj {
    async fn id(&self, _ctx: &Context<'_>) -> ID {
        ID(gid("ArtifactSequence", self.num))
    }

    async fn name(&self, _ctx: &Context<'_>) -> String {
        self.name.clone()
    }

    async fn description(&self, _ctx: &Context<'_>) -> Option<String> {
        self.description.clone()
    }

    async fn created_at(&self, _ctx: &Context<'_>) -> DateTime {
        DateTime::from_micros(self.created_at)
    }

    async fn updated_at(&self, _ctx: &Context<'_>) -> Option<DateTime> {
        Some(DateTime::from_micros(self.updated_at))
    }

    async fn project(&self, ctx: &Context<'_>) -> Option<ProjectObject> {
        project_object(app(ctx), &self.entity, &self.project)
    }

    /// The sequence's type (every version of a sequence has it).
    async fn default_artifact_type(&self, ctx: &Context<'_>) -> ArtifactTypeObj {
        ArtifactTypeObj::find(app(ctx), &self.entity, &self.project, &self.type_name)
            .unwrap_or_else(|| ArtifactTypeObj {
                entity: self.entity.clone(),
                project: self.project.clone(),
                rec: TypeRecord {
                    num: 0,
                    name: self.type_name.clone(),
                    description: None,
                    created_at: self.created_at,
                },
            })
    }

    /// Collection tags (not emulated: always empty).
    async fn tags(&self, _ctx: &Context<'_>) -> TagConnection {
        TagConnection::default()
    }

    /// `READY`, or `DELETED` on the object `deleteArtifactSequence` returns (a deleted
    /// collection is gone from every listing).
    async fn state(&self, _ctx: &Context<'_>) -> String {
        if self.deleted { "DELETED" } else { "READY" }.into()
    }

    /// Aliases of all versions, by name.
    async fn aliases(
        &self,
        ctx: &Context<'_>,
        after: Option<String>,
        first: Option<i32>,
    ) -> ArtifactAliasConnection {
        let aliases: Vec<AliasObj> = {
            let store = app(ctx).artifacts();
            let w = store.world.read();
            w.sequence(&self.entity, &self.project, &self.name)
                .map(|s| {
                    s.aliases
                        .keys()
                        .map(|alias| AliasObj {
                            sequence_num: self.num,
                            alias: alias.clone(),
                            entity: self.entity.clone(),
                            project: self.project.clone(),
                            sequence: self.name.clone(),
                        })
                        .collect()
                })
                .unwrap_or_default()
        };
        let p = paginate(aliases, after.as_deref(), first, max_page(ctx));
        ArtifactAliasConnection {
            edges: p
                .items
                .into_iter()
                .map(|(cursor, node)| ArtifactAliasEdge { node, cursor })
                .collect(),
            page_info: p.page_info,
            total_count: p.total,
        }
    }

    /// The version an alias (`vN`, `latest` or custom) points to.
    async fn artifact_membership(
        &self,
        ctx: &Context<'_>,
        alias_name: Option<String>,
    ) -> Option<MembershipObj> {
        let store = app(ctx).artifacts();
        let w = store.world.read();
        let alias = alias_name.unwrap_or_else(|| "latest".into());
        w.resolve_alias(&self.entity, &self.project, &self.name, &alias)
            .map(|a| MembershipObj(Arc::new(a.clone())))
    }

    /// All committed versions as memberships, oldest first.
    async fn artifact_memberships(
        &self,
        ctx: &Context<'_>,
        after: Option<String>,
        first: Option<i32>,
    ) -> MembershipConnection {
        let items: Vec<MembershipObj> = {
            let store = app(ctx).artifacts();
            let w = store.world.read();
            w.sequence(&self.entity, &self.project, &self.name)
                .map(|s| {
                    w.versions_of(s)
                        .into_iter()
                        .map(|a| MembershipObj(Arc::new(a.clone())))
                        .collect()
                })
                .unwrap_or_default()
        };
        let p = paginate(items, after.as_deref(), first, max_page(ctx));
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

    /// Versions matching `filters` (default: all states), sorted by `order` (default newest
    /// first), paginated by `pageInfo.endCursor`.
    async fn artifacts(
        &self,
        ctx: &Context<'_>,
        after: Option<String>,
        first: Option<i32>,
        order: Option<String>,
        filters: Option<JsonString>,
    ) -> Result<VersionedArtifactConnection> {
        let filter = VersionFilter::parse(filters.as_ref().map(|f| f.0.as_str()))?;
        let order = VersionOrder::parse(order.as_deref())?;
        let items: Vec<ArtifactObj> = {
            let store = app(ctx).artifacts();
            let w = store.world.read();
            let mut versions: Vec<_> = w
                .artifacts
                .values()
                .filter(|a| {
                    a.entity == self.entity
                        && a.project == self.project
                        && a.sequence == self.name
                        && a.state != crate::artifacts::ArtifactState::Deleted
                })
                .filter(|a| filter.matches(a, &w.aliases_of(a)))
                .collect();
            order.sort(&mut versions);
            versions.into_iter().map(ArtifactObj::new).collect()
        };
        let p = paginate(items, after.as_deref(), first, max_page(ctx));
        Ok(VersionedArtifactConnection {
            edges: p
                .items
                .into_iter()
                .map(|(cursor, node)| VersionedArtifactEdge {
                    version: node
                        .0
                        .version_index
                        .map_or_else(|| "pending".into(), |v| format!("v{v}")),
                    node,
                    cursor,
                })
                .collect(),
            page_info: p.page_info,
            total_count: p.total,
        })
    }

    /// The version `latest` points to.
    async fn latest_artifact(&self, ctx: &Context<'_>) -> Option<ArtifactObj> {
        let store = app(ctx).artifacts();
        let w = store.world.read();
        let seq = w.sequence(&self.entity, &self.project, &self.name)?;
        w.latest_of(seq).map(ArtifactObj::new)
    }

    /// The digest algorithm of the latest version (MD5 for an empty sequence).
    async fn digest_algorithm(&self, ctx: &Context<'_>) -> DigestAlgorithmEnum {
        let store = app(ctx).artifacts();
        let w = store.world.read();
        w.sequence(&self.entity, &self.project, &self.name)
            .and_then(|s| w.latest_of(s))
            .map_or(DigestAlgorithmEnum::ManifestMd5, |a| {
                DigestAlgorithmEnum::parse(&a.digest_algorithm)
            })
    }
}

/// `DeleteArtifactSequenceInput`.
#[derive(InputObject)]
pub struct DeleteArtifactSequenceInput {
    /// The collection.
    #[graphql(name = "artifactSequenceID")]
    pub artifact_sequence_id: ID,
    /// Relay mutation id.
    pub client_mutation_id: Option<String>,
}

/// `DeleteArtifactSequencePayload`.
#[derive(SimpleObject)]
pub struct DeleteArtifactSequencePayload {
    /// The deleted collection (`state: DELETED`).
    pub artifact_collection: ArtifactCollectionIface,
    /// Relay mutation id.
    pub client_mutation_id: Option<String>,
}

/// Collection mutations (`ArtifactCollection.delete()` in the SDK).
#[derive(Default)]
pub struct CollectionMutations;

#[Object]
impl CollectionMutations {
    /// Deletes a collection and every version in it.
    async fn delete_artifact_sequence(
        &self,
        ctx: &Context<'_>,
        input: DeleteArtifactSequenceInput,
    ) -> Result<DeleteArtifactSequencePayload> {
        use crate::artifacts::model::parse_gid;
        let app = app(ctx);
        let num = parse_gid("ArtifactSequence", &input.artifact_sequence_id)
            .or_else(|| parse_gid("ArtifactCollection", &input.artifact_sequence_id))
            .ok_or("artifactSequenceID is not an artifact collection id")?;
        let (project, sequence) = app
            .artifacts()
            .world
            .write()
            .delete_sequence(num, app.now())?;
        app.mark_dirty();
        let mut obj = ArtifactSequenceObj::from_record(&project, &sequence);
        obj.deleted = true;
        Ok(DeleteArtifactSequencePayload {
            artifact_collection: ArtifactCollectionIface::ArtifactSequence(obj),
            client_mutation_id: input.client_mutation_id,
        })
    }
}
