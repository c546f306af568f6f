//! Artifacts: types, collections, versions, memberships, files and manifests.
//!
//! Like the SDK, `digestAlgorithm` is stripped from artifact documents unless the server has
//! `ARTIFACT_DIGEST_ALGORITHM`, and `totalCount` from file listings unless it has
//! `TOTAL_COUNT_IN_FILE_CONNECTION` (older servers reject unknown fields).

use futures::stream::BoxStream;
use serde::Deserialize;
use serde_json::{Value, json};

use super::Client;
use super::download::FileLocation;
use super::error::{Error, Result};
use super::graphql::{self, Operation};
use super::manifest::Manifest;
use super::paginate::{self, CursorConvention, Page};
use super::runs::ConnectionWire;
use super::types::{
    Artifact, ArtifactAlias, ArtifactCollection, ArtifactFile, ArtifactMembership, ArtifactType,
    ArtifactVersion, ProjectInfo, json_text, lenient_i64, lenient_u64, null_as_empty,
};

/// Filters for collection listings.
#[derive(Clone, Debug, Default)]
pub struct ArtifactCollectionsQuery {
    /// Mongo-style filter JSON text (needs server feature `ARTIFACT_COLLECTIONS_FILTERING_SORTING`).
    pub filters: Option<String>,
    /// Order key (same feature).
    pub order: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ProjectInfoWire {
    #[serde(default)]
    id: Option<String>,
    #[serde(default, deserialize_with = "lenient_i64")]
    internal_id: Option<i64>,
    #[serde(default)]
    name: String,
    #[serde(default)]
    entity: Option<NameWire>,
}

#[derive(Deserialize)]
struct NameWire {
    name: String,
}

impl From<ProjectInfoWire> for ProjectInfo {
    fn from(p: ProjectInfoWire) -> Self {
        ProjectInfo {
            id: p.id,
            internal_id: p.internal_id,
            name: p.name,
            entity: p.entity.map(|e| e.name),
        }
    }
}

#[derive(Deserialize)]
struct CollectionInfoWire {
    #[serde(rename = "__typename", default)]
    typename: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    project: Option<ProjectInfoWire>,
}

#[derive(Deserialize)]
struct AliasWire {
    alias: String,
    #[serde(rename = "artifactCollection", default)]
    artifact_collection: Option<CollectionInfoWire>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ArtifactWire {
    id: String,
    #[serde(default)]
    artifact_sequence: Option<CollectionInfoWire>,
    #[serde(default, deserialize_with = "lenient_i64")]
    version_index: Option<i64>,
    #[serde(default)]
    artifact_type: Option<NameWire>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default, deserialize_with = "json_text")]
    metadata: Option<String>,
    #[serde(default, deserialize_with = "lenient_i64")]
    ttl_duration_seconds: Option<i64>,
    #[serde(default)]
    ttl_is_inherited: Option<bool>,
    #[serde(default, deserialize_with = "null_as_empty")]
    tags: Vec<NameWire>,
    #[serde(default, deserialize_with = "lenient_i64")]
    history_step: Option<i64>,
    #[serde(default)]
    state: Option<String>,
    #[serde(default, deserialize_with = "lenient_u64")]
    size: Option<u64>,
    #[serde(default)]
    digest: Option<String>,
    #[serde(default)]
    digest_algorithm: Option<String>,
    #[serde(default)]
    commit_hash: Option<String>,
    #[serde(default, deserialize_with = "lenient_i64")]
    file_count: Option<i64>,
    #[serde(default)]
    created_at: Option<String>,
    #[serde(default)]
    updated_at: Option<String>,
    #[serde(default, deserialize_with = "null_as_empty")]
    aliases: Vec<AliasWire>,
}

impl From<ArtifactWire> for Artifact {
    fn from(a: ArtifactWire) -> Self {
        let (sequence_name, sequence_project) = match a.artifact_sequence {
            Some(s) => (s.name, s.project.map(ProjectInfo::from)),
            None => (None, None),
        };
        Artifact {
            id: a.id,
            sequence_name,
            sequence_project,
            version_index: a.version_index,
            type_name: a.artifact_type.map(|t| t.name),
            description: a.description,
            metadata: a.metadata,
            ttl_duration_seconds: a.ttl_duration_seconds,
            ttl_is_inherited: a.ttl_is_inherited,
            tags: a.tags.into_iter().map(|t| t.name).collect(),
            history_step: a.history_step,
            state: a.state,
            size: a.size,
            digest: a.digest,
            digest_algorithm: a.digest_algorithm,
            commit_hash: a.commit_hash,
            file_count: a.file_count,
            created_at: a.created_at,
            updated_at: a.updated_at,
            aliases: a
                .aliases
                .into_iter()
                .map(|al| ArtifactAlias {
                    alias: al.alias,
                    collection: al.artifact_collection.and_then(|c| c.name),
                })
                .collect(),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CollectionWire {
    #[serde(rename = "__typename", default)]
    typename: String,
    id: String,
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    created_at: Option<String>,
    #[serde(default)]
    updated_at: Option<String>,
    #[serde(default)]
    project: Option<ProjectInfoWire>,
    #[serde(rename = "type", default)]
    type_: Option<NameWire>,
    #[serde(default)]
    tags: Option<ConnectionWire<NameWire>>,
}

impl From<CollectionWire> for ArtifactCollection {
    fn from(c: CollectionWire) -> Self {
        ArtifactCollection {
            typename: c.typename,
            id: c.id,
            name: c.name,
            description: c.description,
            created_at: c.created_at,
            updated_at: c.updated_at,
            type_name: c.type_.map(|t| t.name),
            project: c.project.map(ProjectInfo::from),
            tags: c
                .tags
                .map(|t| t.into_page(|n| n.name).items)
                .unwrap_or_default(),
        }
    }
}

/// Drills into `data` along `path`, treating a missing/null step as "not found".
fn dig<'a>(data: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter()
        .try_fold(data, |v, key| v.get(key).filter(|v| !v.is_null()))
}

fn decode<T: for<'de> Deserialize<'de>>(op: &str, value: &Value) -> Result<T> {
    T::deserialize(value).map_err(|e| Error::decode(op, e))
}

fn empty_page<T>() -> Page<T> {
    Page {
        items: Vec::new(),
        last_edge_cursor: None,
        end_cursor: None,
        has_next_page: false,
    }
}

impl Client {
    /// A shipped document with fields the server does not support removed.
    async fn artifact_document(&self, op: Operation) -> Result<String> {
        let features = self.server_features().await?;
        let mut doc = op.document().to_owned();
        if !features.is_enabled("ARTIFACT_DIGEST_ALGORITHM") {
            doc = graphql::strip_field(&doc, "digestAlgorithm");
        }
        if op.name == graphql::ARTIFACT_MEMBERSHIP_FILES.name
            && !features.is_enabled("TOTAL_COUNT_IN_FILE_CONNECTION")
        {
            doc = graphql::strip_field(&doc, "totalCount");
        }
        if op.name == graphql::PROJECT_ARTIFACT_COLLECTIONS.name
            && !features.is_enabled("ARTIFACT_COLLECTIONS_FILTERING_SORTING")
        {
            doc = graphql::strip_field(&doc, "totalCount");
        }
        Ok(doc)
    }

    /// Streams an endCursor-paginated connection found at `path` inside `data`.
    fn artifact_listing<T, F>(
        &self,
        op: Operation,
        variables: Value,
        path: &'static [&'static str],
        per_page: u32,
        convert: F,
    ) -> BoxStream<'static, Result<T>>
    where
        T: Send + 'static,
        F: Fn(&Value) -> Result<Option<T>> + Send + Sync + Clone + 'static,
    {
        let client = self.clone();
        paginate::paginate(
            op.name,
            CursorConvention::EndCursor,
            self.config().max_pages,
            move |cursor| {
                let client = client.clone();
                let mut vars = variables.clone();
                let convert = convert.clone();
                async move {
                    vars["cursor"] = json!(cursor);
                    vars["perPage"] = json!(per_page);
                    let doc = client.artifact_document(op).await?;
                    let data: Value = client.gql(op.name, &doc, vars).await?;
                    let Some(conn) = dig(&data, path) else {
                        return Ok(empty_page());
                    };
                    let end_cursor = dig(conn, &["pageInfo", "endCursor"])
                        .and_then(Value::as_str)
                        .map(str::to_owned);
                    let has_next_page = dig(conn, &["pageInfo", "hasNextPage"])
                        .and_then(Value::as_bool)
                        .unwrap_or(false);
                    let mut items = Vec::new();
                    for edge in conn
                        .get("edges")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                    {
                        if let Some(item) = convert(edge)? {
                            items.push(item);
                        }
                    }
                    Ok(Page {
                        items,
                        last_edge_cursor: None,
                        end_cursor,
                        has_next_page,
                    })
                }
            },
        )
    }

    /// Artifact types of a project (`ProjectArtifactTypes`).
    pub fn artifact_types(
        &self,
        entity: &str,
        project: &str,
    ) -> BoxStream<'static, Result<ArtifactType>> {
        let op = graphql::PROJECT_ARTIFACT_TYPES;
        self.artifact_listing(
            op,
            json!({"entity": entity, "project": project}),
            &["project", "artifactTypes"],
            self.config().artifacts_page_size,
            move |edge| match edge.get("node").filter(|n| !n.is_null()) {
                Some(node) => decode(op.name, node).map(Some),
                None => Ok(None),
            },
        )
    }

    /// One artifact type (`ProjectArtifactType`); `None` when missing.
    pub async fn artifact_type(
        &self,
        entity: &str,
        project: &str,
        type_name: &str,
    ) -> Result<Option<ArtifactType>> {
        let op = graphql::PROJECT_ARTIFACT_TYPE;
        let vars = json!({"entity": entity, "project": project, "type": type_name});
        let data: Value = self.gql(op.name, op.document(), vars).await?;
        dig(&data, &["project", "artifactType"])
            .map(|v| decode(op.name, v))
            .transpose()
    }

    /// Collections of one artifact type (`ArtifactTypeArtifactCollections`).
    pub fn artifact_collections(
        &self,
        entity: &str,
        project: &str,
        type_name: &str,
        query: &ArtifactCollectionsQuery,
    ) -> BoxStream<'static, Result<ArtifactCollection>> {
        let op = graphql::ARTIFACT_TYPE_ARTIFACT_COLLECTIONS;
        self.artifact_listing(
            op,
            json!({"entity": entity, "project": project, "type": type_name,
                   "filters": query.filters, "order": query.order}),
            &["project", "artifactType", "artifactCollections"],
            self.config().artifacts_page_size,
            move |edge| match edge.get("node").filter(|n| !n.is_null()) {
                Some(node) => decode::<CollectionWire>(op.name, node).map(|c| Some(c.into())),
                None => Ok(None),
            },
        )
    }

    /// Every collection of a project, across types (`ProjectArtifactCollections`). Filters and
    /// order need server feature `ARTIFACT_COLLECTIONS_FILTERING_SORTING`.
    pub fn project_artifact_collections(
        &self,
        entity: &str,
        project: &str,
        query: &ArtifactCollectionsQuery,
    ) -> BoxStream<'static, Result<ArtifactCollection>> {
        let op = graphql::PROJECT_ARTIFACT_COLLECTIONS;
        self.artifact_listing(
            op,
            json!({"entity": entity, "project": project,
                   "filters": query.filters, "order": query.order}),
            &["project", "artifactCollections"],
            self.config().artifacts_page_size,
            move |edge| match edge.get("node").filter(|n| !n.is_null()) {
                Some(node) => decode::<CollectionWire>(op.name, node).map(|c| Some(c.into())),
                None => Ok(None),
            },
        )
    }

    /// One collection of a type (`ProjectArtifactCollection`); `None` when missing.
    pub async fn artifact_collection(
        &self,
        entity: &str,
        project: &str,
        type_name: &str,
        name: &str,
    ) -> Result<Option<ArtifactCollection>> {
        let op = graphql::PROJECT_ARTIFACT_COLLECTION;
        let vars = json!({"entity": entity, "project": project, "type": type_name, "name": name});
        let data: Value = self.gql(op.name, op.document(), vars).await?;
        dig(&data, &["project", "artifactType", "artifactCollection"])
            .map(|v| decode::<CollectionWire>(op.name, v).map(Into::into))
            .transpose()
    }

    /// Versions of a collection (`ProjectArtifacts`), with aliases. `filters` is JSON text
    /// (the SDK's `api.artifacts()` sends `{"state": "COMMITTED"}`).
    pub fn artifact_versions(
        &self,
        entity: &str,
        project: &str,
        type_name: &str,
        collection: &str,
        filters: Option<&str>,
    ) -> BoxStream<'static, Result<ArtifactVersion>> {
        let op = graphql::PROJECT_ARTIFACTS;
        self.artifact_listing(
            op,
            json!({"entity": entity, "project": project, "type": type_name,
                   "collection": collection, "filters": filters, "order": null}),
            &["project", "artifactType", "artifactCollection", "artifacts"],
            self.config().artifacts_page_size,
            move |edge| match edge.get("node").filter(|n| !n.is_null()) {
                Some(node) => Ok(Some(ArtifactVersion {
                    version: edge
                        .get("version")
                        .and_then(Value::as_str)
                        .map(str::to_owned),
                    artifact: decode::<ArtifactWire>(op.name, node)?.into(),
                })),
                None => Ok(None),
            },
        )
    }

    /// `ArtifactMembershipByName`: resolves `name:alias` (`ds:latest`, `ds:v3`, `ds:best`)
    /// within a project; `None` when there is no such membership.
    pub async fn artifact_membership(
        &self,
        entity: &str,
        project: &str,
        name_and_alias: &str,
    ) -> Result<Option<ArtifactMembership>> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct MembershipWire {
            id: String,
            #[serde(default, deserialize_with = "lenient_i64")]
            version_index: Option<i64>,
            #[serde(default)]
            created_at: Option<String>,
            #[serde(default, deserialize_with = "null_as_empty")]
            aliases: Vec<AliasWire>,
            #[serde(default)]
            artifact_collection: Option<CollectionInfoWire>,
            artifact: ArtifactWire,
        }
        let op = graphql::ARTIFACT_MEMBERSHIP_BY_NAME;
        let doc = self.artifact_document(op).await?;
        let vars = json!({"entity": entity, "project": project, "name": name_and_alias});
        let data: Value = self.gql(op.name, &doc, vars).await?;
        let Some(value) = dig(&data, &["project", "artifactCollectionMembership"]) else {
            return Ok(None);
        };
        let m: MembershipWire = decode(op.name, value)?;
        let (collection_typename, collection_name, collection_project) = match m.artifact_collection
        {
            Some(c) => (c.typename, c.name, c.project.map(ProjectInfo::from)),
            None => (None, None, None),
        };
        Ok(Some(ArtifactMembership {
            id: m.id,
            version_index: m.version_index,
            created_at: m.created_at,
            aliases: m.aliases.into_iter().map(|a| a.alias).collect(),
            collection_typename,
            collection_name,
            collection_project,
            artifact: m.artifact.into(),
        }))
    }

    /// Files of an artifact version (`ArtifactMembershipFiles`), addressed like the SDK: the
    /// collection name and an alias or version (`v3`). `names` restricts to exact paths.
    pub fn artifact_files(
        &self,
        entity: &str,
        project: &str,
        collection: &str,
        alias: &str,
        names: &[String],
    ) -> BoxStream<'static, Result<ArtifactFile>> {
        let op = graphql::ARTIFACT_MEMBERSHIP_FILES;
        let file_names = (!names.is_empty()).then_some(names);
        self.artifact_listing(
            op,
            json!({"entity": entity, "project": project, "collection": collection,
                   "alias": alias, "fileNames": file_names}),
            &[
                "project",
                "artifactCollection",
                "artifactMembership",
                "files",
            ],
            self.config().artifact_files_page_size,
            move |edge| match edge.get("node").filter(|n| !n.is_null()) {
                Some(node) => decode(op.name, node).map(Some),
                None => Ok(None),
            },
        )
    }

    /// Name + fresh `directUrl` of every file of a version (`GetArtifactMembershipFileUrls`,
    /// what `artifact.download()` uses); call again when a signed URL has expired.
    pub fn artifact_file_urls(
        &self,
        entity: &str,
        project: &str,
        collection: &str,
        alias: &str,
    ) -> BoxStream<'static, Result<ArtifactFile>> {
        let op = graphql::GET_ARTIFACT_MEMBERSHIP_FILE_URLS;
        self.artifact_listing(
            op,
            json!({"entity": entity, "project": project, "collection": collection,
                   "alias": alias}),
            &[
                "project",
                "artifactCollection",
                "artifactMembership",
                "files",
            ],
            self.config().artifact_files_page_size,
            move |edge| match edge.get("node").filter(|n| !n.is_null()) {
                Some(node) => decode(op.name, node).map(Some),
                None => Ok(None),
            },
        )
    }

    /// The artifact's manifest: `FetchArtifactManifest` for the signed URL, then an
    /// unauthenticated GET (as the SDK does), then parsing. Retries once with a fresh URL if
    /// the signed one has expired.
    pub async fn artifact_manifest(&self, artifact_id: &str) -> Result<Manifest> {
        let op = graphql::FETCH_ARTIFACT_MANIFEST;
        let mut refetched = false;
        loop {
            let data: Value = self
                .gql(op.name, op.document(), json!({"id": artifact_id}))
                .await?;
            let url = dig(&data, &["artifact", "currentManifest", "file", "directUrl"])
                .and_then(Value::as_str)
                .ok_or_else(|| Error::not_found(op.name, format!("manifest of {artifact_id}")))?;
            match self
                .download_bytes(&FileLocation::Direct(url.to_owned()), None)
                .await
            {
                Ok(bytes) => return Manifest::parse(&bytes),
                Err(Error::UrlExpired { .. }) if !refetched => refetched = true,
                Err(e) => return Err(e),
            }
        }
    }

    /// Artifacts a run logged (`RunOutputArtifacts`).
    pub fn run_output_artifacts(
        &self,
        entity: &str,
        project: &str,
        run: &str,
    ) -> BoxStream<'static, Result<Artifact>> {
        self.run_artifacts(graphql::RUN_OUTPUT_ARTIFACTS, entity, project, run)
    }

    /// Artifacts a run used (`RunInputArtifacts`).
    pub fn run_input_artifacts(
        &self,
        entity: &str,
        project: &str,
        run: &str,
    ) -> BoxStream<'static, Result<Artifact>> {
        self.run_artifacts(graphql::RUN_INPUT_ARTIFACTS, entity, project, run)
    }

    fn run_artifacts(
        &self,
        op: Operation,
        entity: &str,
        project: &str,
        run: &str,
    ) -> BoxStream<'static, Result<Artifact>> {
        self.artifact_listing(
            op,
            json!({"entity": entity, "project": project, "run": run}),
            &["project", "run", "artifacts"],
            self.config().artifacts_page_size,
            move |edge| match edge.get("node").filter(|n| !n.is_null()) {
                Some(node) => decode::<ArtifactWire>(op.name, node).map(|a| Some(a.into())),
                None => Ok(None),
            },
        )
    }

    /// One artifact by id (`ArtifactByID`); `None` when missing.
    pub async fn artifact_by_id(&self, artifact_id: &str) -> Result<Option<Artifact>> {
        let op = graphql::ARTIFACT_BY_ID;
        let doc = self.artifact_document(op).await?;
        let data: Value = self.gql(op.name, &doc, json!({"id": artifact_id})).await?;
        dig(&data, &["artifact"])
            .map(|v| decode::<ArtifactWire>(op.name, v).map(Into::into))
            .transpose()
    }
}
