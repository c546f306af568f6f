//! Artifact metadata: types, collections, versions (with aliases) and manifests. File bytes
//! stay in W&B and are fetched on read.
//!
//! Runs on the first sync of a project, on metadata passes and with `--full` (artifact
//! listings have no cheap change signal, so they are not repeated on every incremental sync).
//! A manifest is downloaded only for a version that is new or whose digest changed (the mirror
//! clears `manifest_synced` when the digest moves).

use futures::TryStreamExt;

use super::error::{Result, SyncError};
use super::report::Tally;
use super::run_job::JobContext;
use super::state;
use crate::client::{self, ArtifactCollection, ArtifactVersion, parse_timestamp};
use crate::mirror::{
    ArtifactCollectionRecord, ArtifactTypeRecord, ArtifactVersionRecord, CollectionPk,
    ManifestEntryRecord,
};

/// Syncs every artifact type, collection and version of the project. `Ok(false)` when the
/// server does not list artifacts at all (a warning is recorded).
pub(crate) async fn sync_artifacts(ctx: &JobContext<'_>) -> Result<bool> {
    let types: Vec<_> = match ctx
        .client
        .artifact_types(ctx.entity, ctx.project)
        .try_collect()
        .await
    {
        Ok(types) => types,
        // A server without artifact support rejects the listing's document (GraphQL
        // validation errors come back as HTTP 400 or as `errors`).
        Err(e @ (client::Error::GraphQl { .. } | client::Error::Http { status: 400, .. })) => {
            ctx.tally.warn(format!(
                "{}/{}: artifacts not synced, the server does not list them: {e}",
                ctx.entity, ctx.project
            ));
            return Ok(false);
        }
        Err(e) => return Err(e.into()),
    };
    let mut present_collections = Vec::new();
    for artifact_type in types {
        let type_pk = ctx
            .mirror
            .upsert_artifact_type(
                ctx.project_pk,
                &ArtifactTypeRecord {
                    name: artifact_type.name.clone(),
                    storage_id: Some(artifact_type.id.clone()),
                    description: artifact_type.description.clone(),
                    created_at: artifact_type
                        .created_at
                        .as_deref()
                        .and_then(parse_timestamp),
                },
            )
            .await?;
        let collections: Vec<ArtifactCollection> = ctx
            .client
            .artifact_collections(
                ctx.entity,
                ctx.project,
                &artifact_type.name,
                &Default::default(),
            )
            .try_collect()
            .await?;
        for collection in collections {
            let collection_pk = ctx
                .mirror
                .upsert_artifact_collection(
                    ctx.project_pk,
                    type_pk,
                    &collection_record(&collection),
                )
                .await?;
            sync_versions(ctx, &artifact_type.name, &collection, collection_pk).await?;
            present_collections.push(collection_pk);
        }
    }
    // Every listing above completed (errors return early), so what it did not show is gone.
    let (gone, versions) = ctx
        .mirror
        .mark_missing_artifact_collections_deleted(ctx.project_pk, &present_collections)
        .await?;
    Tally::add(&ctx.tally.artifact_versions_deleted, versions);
    if !gone.is_empty() {
        tracing::info!(
            "{}/{}: artifact collections deleted in W&B: {}",
            ctx.entity,
            ctx.project,
            gone.join(", ")
        );
    }
    Ok(true)
}

fn collection_record(c: &ArtifactCollection) -> ArtifactCollectionRecord {
    ArtifactCollectionRecord {
        name: c.name.clone(),
        kind: if c.typename.contains("Portfolio") {
            "portfolio".to_owned()
        } else {
            "sequence".to_owned()
        },
        storage_id: Some(c.id.clone()),
        description: c.description.clone(),
        tags: c.tags.clone(),
        created_at: c.created_at.as_deref().and_then(parse_timestamp),
        updated_at: c.updated_at.as_deref().and_then(parse_timestamp),
    }
}

async fn sync_versions(
    ctx: &JobContext<'_>,
    type_name: &str,
    collection: &ArtifactCollection,
    collection_pk: CollectionPk,
) -> Result<()> {
    let mut versions =
        ctx.client
            .artifact_versions(ctx.entity, ctx.project, type_name, &collection.name, None);
    let mut present = Vec::new();
    while let Some(version) = versions.try_next().await? {
        let Some(record) = version_record(&version, &collection.name) else {
            ctx.tally.warn(format!(
                "{}/{}: artifact {} of collection {} has no version index; skipped",
                ctx.entity, ctx.project, version.artifact.id, collection.name
            ));
            continue;
        };
        let version_pk = ctx
            .mirror
            .upsert_artifact_version(collection_pk, &record)
            .await?;
        Tally::add(&ctx.tally.artifact_versions, 1);
        present.push(record.version_index);
        if !state::manifest_synced(ctx.mirror, version_pk.0).await? {
            let manifest = ctx.client.artifact_manifest(&version.artifact.id).await?;
            let entries: Vec<ManifestEntryRecord> = manifest
                .entries
                .into_iter()
                .map(|(path, e)| ManifestEntryRecord {
                    path,
                    digest: Some(e.digest),
                    size_bytes: e.size.and_then(|s| i64::try_from(s).ok()),
                    ref_uri: e.reference,
                    birth_artifact_id: e.birth_artifact_id,
                    extra: e.extra,
                })
                .collect();
            ctx.mirror
                .replace_manifest(version_pk, &entries)
                .await
                .map_err(SyncError::from)?;
        }
    }
    // The listing completed: versions it no longer shows were deleted in W&B.
    let gone = ctx
        .mirror
        .mark_missing_artifact_versions_deleted(collection_pk, &present)
        .await?;
    Tally::add(&ctx.tally.artifact_versions_deleted, gone.len() as u64);
    Ok(())
}

/// The version's record within `collection`: its index is the collection's `vN` (a portfolio
/// numbers its members itself), and only the aliases that belong to this collection.
fn version_record(v: &ArtifactVersion, collection: &str) -> Option<ArtifactVersionRecord> {
    let index = v
        .version
        .as_deref()
        .and_then(|label| label.strip_prefix('v'))
        .and_then(|n| n.parse::<i32>().ok())
        .or_else(|| v.artifact.version_index.and_then(|i| i32::try_from(i).ok()))?;
    let a = &v.artifact;
    Some(ArtifactVersionRecord {
        version_index: index,
        storage_id: Some(a.id.clone()),
        digest: a.digest.clone(),
        digest_algorithm: a.digest_algorithm.clone(),
        size_bytes: a.size.and_then(|s| i64::try_from(s).ok()),
        file_count: a.file_count,
        state: a.state.clone(),
        description: a.description.clone(),
        metadata: a.metadata.clone(),
        commit_hash: a.commit_hash.clone(),
        history_step: a.history_step,
        ttl_seconds: a.ttl_duration_seconds,
        created_at: a.created_at.as_deref().and_then(parse_timestamp),
        updated_at: a.updated_at.as_deref().and_then(parse_timestamp),
        aliases: a
            .aliases
            .iter()
            .filter(|al| al.collection.as_deref().is_none_or(|c| c == collection))
            .map(|al| al.alias.clone())
            .collect(),
    })
}
