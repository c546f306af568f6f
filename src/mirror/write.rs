//! Upserts for the sync engine: projects, runs, files, artifacts, deletion marks and sync
//! bookkeeping. History and system events go through [`super::ingest`].

use chrono::{DateTime, Utc};

use super::Mirror;
use super::error::{DbContext, MirrorError, Result};
use super::model::*;
use super::sqljson::{JsonbText, optional_sql_form};

/// Result of [`Mirror::upsert_run`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunOutcome {
    /// The run's mirror key.
    pub run_pk: RunPk,
    /// True when the run was new to the mirror.
    pub inserted: bool,
}

/// Per-project sync bookkeeping, owned by the sync engine.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProjectSyncState {
    /// `createdAt` watermark, as the server spelled it.
    pub created_watermark: Option<String>,
    /// `heartbeatAt` watermark, as the server spelled it.
    pub heartbeat_watermark: Option<String>,
    /// Last complete reconciliation pass (`--full`, deletion diff).
    pub last_full_pass_at: Option<DateTime<Utc>>,
    /// Last cheap metadata pass over finished runs.
    pub last_metadata_pass_at: Option<DateTime<Utc>>,
    /// Start of the last sync.
    pub last_sync_started_at: Option<DateTime<Utc>>,
    /// End of the last successful sync.
    pub last_sync_finished_at: Option<DateTime<Utc>>,
    /// Free-form engine state (JSON object).
    pub engine_state: serde_json::Value,
}

const UPSERT_RUN_SQL: &str = "
WITH up AS (
    INSERT INTO wandb.runs AS r (
        project_pk, run_id, storage_id, display_name, state, username, user_full_name,
        group_name, job_type, sweep, tags, notes, description, git_commit, read_only,
        created_at, heartbeat_at, updated_at, history_line_count, last_step,
        config, config_text, summary, summary_text, system_metrics, system_metrics_text,
        history_keys)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18,
            $19, $20, $21, $22, $23, $24, $25, $26, $27)
    ON CONFLICT (project_pk, run_id) DO UPDATE SET
        storage_id = EXCLUDED.storage_id,
        display_name = EXCLUDED.display_name,
        state = EXCLUDED.state,
        username = EXCLUDED.username,
        user_full_name = EXCLUDED.user_full_name,
        group_name = EXCLUDED.group_name,
        job_type = EXCLUDED.job_type,
        sweep = EXCLUDED.sweep,
        tags = EXCLUDED.tags,
        notes = EXCLUDED.notes,
        description = EXCLUDED.description,
        git_commit = EXCLUDED.git_commit,
        read_only = EXCLUDED.read_only,
        created_at = EXCLUDED.created_at,
        heartbeat_at = EXCLUDED.heartbeat_at,
        updated_at = coalesce(EXCLUDED.updated_at, r.updated_at),
        history_line_count = EXCLUDED.history_line_count,
        last_step = coalesce(EXCLUDED.last_step, r.last_step),
        config = CASE WHEN EXCLUDED.config_text IS NULL THEN r.config ELSE EXCLUDED.config END,
        config_text = coalesce(EXCLUDED.config_text, r.config_text),
        summary = CASE WHEN EXCLUDED.summary_text IS NULL THEN r.summary
                       ELSE EXCLUDED.summary END,
        summary_text = coalesce(EXCLUDED.summary_text, r.summary_text),
        system_metrics = CASE WHEN EXCLUDED.system_metrics_text IS NULL THEN r.system_metrics
                              ELSE EXCLUDED.system_metrics END,
        system_metrics_text = coalesce(EXCLUDED.system_metrics_text, r.system_metrics_text),
        history_keys = coalesce(EXCLUDED.history_keys, r.history_keys),
        deleted = false,
        deleted_at = NULL,
        last_synced_at = now()
    RETURNING run_pk, (xmax = 0) AS inserted
), state AS (
    INSERT INTO wandb.run_sync_state (run_pk) SELECT run_pk FROM up ON CONFLICT DO NOTHING
)
SELECT run_pk, inserted FROM up";

impl Mirror {
    /// Inserts or updates a project (and its entity); returns its key.
    pub async fn upsert_project(&self, project: &ProjectRecord) -> Result<ProjectPk> {
        let client = self.client().await?;
        let row = client
            .query_one(
                "WITH e AS (
                     INSERT INTO wandb.entities (entity) VALUES ($1) ON CONFLICT DO NOTHING
                 ), p AS (
                     INSERT INTO wandb.projects AS p
                         (entity, name, storage_id, internal_id, description, created_at)
                     VALUES ($1, $2, $3, $4, $5, $6)
                     ON CONFLICT (entity, name) DO UPDATE SET
                         storage_id = coalesce(EXCLUDED.storage_id, p.storage_id),
                         internal_id = coalesce(EXCLUDED.internal_id, p.internal_id),
                         description = coalesce(EXCLUDED.description, p.description),
                         created_at = coalesce(EXCLUDED.created_at, p.created_at),
                         last_synced_at = now()
                     RETURNING project_pk
                 ), s AS (
                     INSERT INTO wandb.project_sync_state (project_pk)
                     SELECT project_pk FROM p ON CONFLICT DO NOTHING
                 )
                 SELECT project_pk FROM p",
                &[
                    &project.entity,
                    &project.name,
                    &project.storage_id,
                    &project.internal_id,
                    &project.description,
                    &project.created_at,
                ],
            )
            .await
            .db("upserting a project")?;
        Ok(ProjectPk(row.get(0)))
    }

    /// Inserts or updates a run of `project`. Partial fields (config, summary, system metrics,
    /// history keys) left `None` keep their stored values. A run marked deleted that shows up
    /// again is un-deleted.
    pub async fn upsert_run(&self, project: ProjectPk, run: &RunRecord) -> Result<RunOutcome> {
        let what = |field: &str| format!("{field} of run {}", run.run_id);
        let config = optional_sql_form(run.config.as_deref(), || what("config"))?;
        let summary = optional_sql_form(run.summary.as_deref(), || what("summary"))?;
        let system = optional_sql_form(run.system_metrics.as_deref(), || what("systemMetrics"))?;
        let client = self.client().await?;
        let row = client
            .query_one(
                UPSERT_RUN_SQL,
                &[
                    &project.0,
                    &run.run_id,
                    &run.storage_id,
                    &run.display_name,
                    &run.state,
                    &run.username,
                    &run.user_full_name,
                    &run.group,
                    &run.job_type,
                    &run.sweep,
                    &run.tags,
                    &run.notes,
                    &run.description,
                    &run.commit,
                    &run.read_only,
                    &run.created_at,
                    &run.heartbeat_at,
                    &run.updated_at,
                    &run.history_line_count,
                    &run.last_step(),
                    &config.as_deref().map(JsonbText),
                    &run.config,
                    &summary.as_deref().map(JsonbText),
                    &run.summary,
                    &system.as_deref().map(JsonbText),
                    &run.system_metrics,
                    &run.history_keys,
                ],
            )
            .await
            .db("upserting a run")?;
        Ok(RunOutcome {
            run_pk: RunPk(row.get(0)),
            inserted: row.get(1),
        })
    }

    /// Marks one run as deleted upstream (kept, with its data, and flagged).
    pub async fn mark_run_deleted(&self, run: RunPk) -> Result<()> {
        let client = self.client().await?;
        client
            .execute(
                "UPDATE wandb.runs SET deleted = true, deleted_at = coalesce(deleted_at, now())
                 WHERE run_pk = $1",
                &[&run.0],
            )
            .await
            .db("marking a run deleted")?;
        Ok(())
    }

    /// After a complete listing of `project`, marks every run not in `present` as deleted and
    /// returns the ids newly marked.
    pub async fn mark_missing_runs_deleted(
        &self,
        project: ProjectPk,
        present: &[String],
    ) -> Result<Vec<String>> {
        let client = self.client().await?;
        let rows = client
            .query(
                "UPDATE wandb.runs SET deleted = true, deleted_at = now()
                 WHERE project_pk = $1 AND NOT deleted AND NOT (run_id = ANY($2))
                 RETURNING run_id",
                &[&project.0, &present],
            )
            .await
            .db("marking missing runs deleted")?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// Marks the versions of `collection` whose index is not in `present` deleted (after a
    /// complete listing of the collection) and drops their aliases, which W&B has moved or
    /// removed with them. Returns the indices newly marked.
    pub async fn mark_missing_artifact_versions_deleted(
        &self,
        collection: CollectionPk,
        present: &[i32],
    ) -> Result<Vec<i32>> {
        let mut client = self.client().await?;
        let tx = client
            .transaction()
            .await
            .db("starting to mark artifact versions deleted")?;
        let rows = tx
            .query(
                "UPDATE wandb.artifact_versions SET deleted = true, deleted_at = now()
                 WHERE collection_pk = $1 AND NOT deleted AND NOT (version_index = ANY($2))
                 RETURNING version_pk, version_index",
                &[&collection.0, &present],
            )
            .await
            .db("marking missing artifact versions deleted")?;
        let gone: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
        tx.execute(
            "DELETE FROM wandb.artifact_aliases WHERE version_pk = ANY($1)",
            &[&gone],
        )
        .await
        .db("dropping aliases of deleted artifact versions")?;
        tx.commit()
            .await
            .db("committing artifact version deletions")?;
        Ok(rows.iter().map(|r| r.get(1)).collect())
    }

    /// Marks the artifact collections of `project` not in `present` deleted (after a complete
    /// listing of every type's collections), with their versions, and drops their aliases.
    /// Returns the collections' names and how many versions were newly marked.
    pub async fn mark_missing_artifact_collections_deleted(
        &self,
        project: ProjectPk,
        present: &[CollectionPk],
    ) -> Result<(Vec<String>, u64)> {
        let present: Vec<i64> = present.iter().map(|c| c.0).collect();
        let mut client = self.client().await?;
        let tx = client
            .transaction()
            .await
            .db("starting to mark artifact collections deleted")?;
        let rows = tx
            .query(
                "UPDATE wandb.artifact_collections SET deleted = true, deleted_at = now()
                 WHERE project_pk = $1 AND NOT deleted AND NOT (collection_pk = ANY($2))
                 RETURNING collection_pk, name",
                &[&project.0, &present],
            )
            .await
            .db("marking missing artifact collections deleted")?;
        let gone: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
        let versions = tx
            .execute(
                "UPDATE wandb.artifact_versions SET deleted = true, deleted_at = now()
                 WHERE collection_pk = ANY($1) AND NOT deleted",
                &[&gone],
            )
            .await
            .db("marking versions of deleted artifact collections deleted")?;
        tx.execute(
            "DELETE FROM wandb.artifact_aliases WHERE collection_pk = ANY($1)",
            &[&gone],
        )
        .await
        .db("dropping aliases of deleted artifact collections")?;
        tx.commit()
            .await
            .db("committing artifact collection deletions")?;
        Ok((rows.iter().map(|r| r.get(1)).collect(), versions))
    }

    /// Replaces the file listing of `run` with `files` (one transaction: upsert all, delete the
    /// rest) and stamps `files_synced_at`.
    pub async fn replace_run_files(&self, run: RunPk, files: &[RunFileRecord]) -> Result<()> {
        let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
        let sizes: Vec<Option<i64>> = files.iter().map(|f| f.size_bytes).collect();
        let md5s: Vec<Option<&str>> = files.iter().map(|f| f.md5.as_deref()).collect();
        let updated: Vec<Option<DateTime<Utc>>> = files.iter().map(|f| f.updated_at).collect();
        let mimetypes: Vec<Option<&str>> = files.iter().map(|f| f.mimetype.as_deref()).collect();
        let urls: Vec<Option<&str>> = files.iter().map(|f| f.url.as_deref()).collect();
        let ids: Vec<Option<&str>> = files.iter().map(|f| f.storage_id.as_deref()).collect();
        let mut client = self.client().await?;
        let tx = client
            .transaction()
            .await
            .db("starting a file listing update")?;
        tx.execute(
            "INSERT INTO wandb.run_files AS f
                 (run_pk, name, size_bytes, md5, updated_at, mimetype, url, storage_id)
             SELECT $1, * FROM unnest($2::text[], $3::int8[], $4::text[], $5::timestamptz[],
                                      $6::text[], $7::text[], $8::text[])
             ON CONFLICT (run_pk, name) DO UPDATE SET
                 size_bytes = EXCLUDED.size_bytes, md5 = EXCLUDED.md5,
                 updated_at = EXCLUDED.updated_at, mimetype = EXCLUDED.mimetype,
                 url = EXCLUDED.url, storage_id = EXCLUDED.storage_id, synced_at = now()",
            &[
                &run.0, &names, &sizes, &md5s, &updated, &mimetypes, &urls, &ids,
            ],
        )
        .await
        .db("upserting run files")?;
        tx.execute(
            "DELETE FROM wandb.run_files WHERE run_pk = $1 AND NOT (name = ANY($2))",
            &[&run.0, &names],
        )
        .await
        .db("deleting vanished run files")?;
        tx.execute(
            "UPDATE wandb.run_sync_state SET files_synced_at = now() WHERE run_pk = $1",
            &[&run.0],
        )
        .await
        .db("stamping files_synced_at")?;
        tx.commit().await.db("committing a file listing")?;
        Ok(())
    }

    /// Inserts or updates an artifact type of `project`.
    pub async fn upsert_artifact_type(
        &self,
        project: ProjectPk,
        record: &ArtifactTypeRecord,
    ) -> Result<ArtifactTypePk> {
        let client = self.client().await?;
        let row = client
            .query_one(
                "INSERT INTO wandb.artifact_types AS t
                     (project_pk, name, storage_id, description, created_at)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (project_pk, name) DO UPDATE SET
                     storage_id = coalesce(EXCLUDED.storage_id, t.storage_id),
                     description = EXCLUDED.description,
                     created_at = coalesce(EXCLUDED.created_at, t.created_at)
                 RETURNING type_pk",
                &[
                    &project.0,
                    &record.name,
                    &record.storage_id,
                    &record.description,
                    &record.created_at,
                ],
            )
            .await
            .db("upserting an artifact type")?;
        Ok(ArtifactTypePk(row.get(0)))
    }

    /// Inserts or updates an artifact collection of `project` with type `artifact_type`.
    pub async fn upsert_artifact_collection(
        &self,
        project: ProjectPk,
        artifact_type: ArtifactTypePk,
        record: &ArtifactCollectionRecord,
    ) -> Result<CollectionPk> {
        let kind = if record.kind.is_empty() {
            "sequence"
        } else {
            record.kind.as_str()
        };
        let client = self.client().await?;
        let row = client
            .query_one(
                "INSERT INTO wandb.artifact_collections AS c
                     (project_pk, type_pk, name, kind, storage_id, description, tags,
                      created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                 ON CONFLICT (project_pk, name) DO UPDATE SET
                     type_pk = EXCLUDED.type_pk, kind = EXCLUDED.kind,
                     storage_id = coalesce(EXCLUDED.storage_id, c.storage_id),
                     description = EXCLUDED.description, tags = EXCLUDED.tags,
                     created_at = coalesce(EXCLUDED.created_at, c.created_at),
                     updated_at = EXCLUDED.updated_at, deleted = false, deleted_at = NULL
                 RETURNING collection_pk",
                &[
                    &project.0,
                    &artifact_type.0,
                    &record.name,
                    &kind,
                    &record.storage_id,
                    &record.description,
                    &record.tags,
                    &record.created_at,
                    &record.updated_at,
                ],
            )
            .await
            .db("upserting an artifact collection")?;
        Ok(CollectionPk(row.get(0)))
    }

    /// Inserts or updates a version of `collection` and points its aliases at it (an alias
    /// names one version per collection, so aliases move here from other versions).
    pub async fn upsert_artifact_version(
        &self,
        collection: CollectionPk,
        record: &ArtifactVersionRecord,
    ) -> Result<VersionPk> {
        let metadata = optional_sql_form(record.metadata.as_deref(), || {
            format!("metadata of artifact version v{}", record.version_index)
        })?;
        let mut client = self.client().await?;
        let tx = client
            .transaction()
            .await
            .db("starting an artifact upsert")?;
        let row = tx
            .query_one(
                "INSERT INTO wandb.artifact_versions AS v
                     (collection_pk, version_index, storage_id, digest, digest_algorithm,
                      size_bytes, file_count, state, description, metadata, metadata_text,
                      commit_hash, history_step, ttl_seconds, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
                 ON CONFLICT (collection_pk, version_index) DO UPDATE SET
                     storage_id = EXCLUDED.storage_id, digest = EXCLUDED.digest,
                     digest_algorithm = EXCLUDED.digest_algorithm,
                     size_bytes = EXCLUDED.size_bytes, file_count = EXCLUDED.file_count,
                     state = EXCLUDED.state, description = EXCLUDED.description,
                     metadata = EXCLUDED.metadata, metadata_text = EXCLUDED.metadata_text,
                     commit_hash = EXCLUDED.commit_hash, history_step = EXCLUDED.history_step,
                     ttl_seconds = EXCLUDED.ttl_seconds, created_at = EXCLUDED.created_at,
                     updated_at = EXCLUDED.updated_at,
                     -- A changed digest means a changed manifest.
                     manifest_synced = v.manifest_synced
                                       AND v.digest IS NOT DISTINCT FROM EXCLUDED.digest,
                     deleted = false, deleted_at = NULL,
                     synced_at = now()
                 RETURNING version_pk",
                &[
                    &collection.0,
                    &record.version_index,
                    &record.storage_id,
                    &record.digest,
                    &record.digest_algorithm,
                    &record.size_bytes,
                    &record.file_count,
                    &record.state,
                    &record.description,
                    &metadata.as_deref().map(JsonbText),
                    &record.metadata,
                    &record.commit_hash,
                    &record.history_step,
                    &record.ttl_seconds,
                    &record.created_at,
                    &record.updated_at,
                ],
            )
            .await
            .db("upserting an artifact version")?;
        let version: i64 = row.get(0);
        tx.execute(
            "DELETE FROM wandb.artifact_aliases
             WHERE collection_pk = $1 AND (alias = ANY($3) OR version_pk = $2)",
            &[&collection.0, &version, &record.aliases],
        )
        .await
        .db("moving artifact aliases")?;
        tx.execute(
            "INSERT INTO wandb.artifact_aliases (collection_pk, alias, version_pk)
             SELECT $1, a, $2 FROM unnest($3::text[]) AS a ON CONFLICT DO NOTHING",
            &[&collection.0, &version, &record.aliases],
        )
        .await
        .db("inserting artifact aliases")?;
        tx.commit().await.db("committing an artifact version")?;
        Ok(VersionPk(version))
    }

    /// Replaces the manifest entries of `version` and marks its manifest synced.
    pub async fn replace_manifest(
        &self,
        version: VersionPk,
        entries: &[ManifestEntryRecord],
    ) -> Result<()> {
        let paths: Vec<&str> = entries.iter().map(|e| e.path.as_str()).collect();
        let digests: Vec<Option<&str>> = entries.iter().map(|e| e.digest.as_deref()).collect();
        let sizes: Vec<Option<i64>> = entries.iter().map(|e| e.size_bytes).collect();
        let refs: Vec<Option<&str>> = entries.iter().map(|e| e.ref_uri.as_deref()).collect();
        let births: Vec<Option<&str>> = entries
            .iter()
            .map(|e| e.birth_artifact_id.as_deref())
            .collect();
        let extras: Vec<Option<&serde_json::Value>> =
            entries.iter().map(|e| e.extra.as_ref()).collect();
        let mut client = self.client().await?;
        let tx = client
            .transaction()
            .await
            .db("starting a manifest update")?;
        tx.execute(
            "DELETE FROM wandb.artifact_manifest_entries WHERE version_pk = $1",
            &[&version.0],
        )
        .await
        .db("clearing a manifest")?;
        tx.execute(
            "INSERT INTO wandb.artifact_manifest_entries
                 (version_pk, path, digest, size_bytes, ref, birth_artifact_id, extra)
             SELECT $1, * FROM unnest($2::text[], $3::text[], $4::int8[], $5::text[],
                                      $6::text[], $7::jsonb[])",
            &[
                &version.0, &paths, &digests, &sizes, &refs, &births, &extras,
            ],
        )
        .await
        .db("inserting manifest entries")?;
        tx.execute(
            "UPDATE wandb.artifact_versions SET manifest_synced = true WHERE version_pk = $1",
            &[&version.0],
        )
        .await
        .db("marking a manifest synced")?;
        tx.commit().await.db("committing a manifest")?;
        Ok(())
    }

    /// Records that `run` used (input) or logged (output) `version`.
    pub async fn link_run_artifact(
        &self,
        run: RunPk,
        version: VersionPk,
        direction: ArtifactDirection,
    ) -> Result<()> {
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO wandb.run_artifacts (run_pk, version_pk, direction)
                 VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                &[&run.0, &version.0, &direction.as_str()],
            )
            .await
            .db("linking a run to an artifact")?;
        Ok(())
    }

    /// The sync bookkeeping of `project`.
    pub async fn project_sync_state(&self, project: ProjectPk) -> Result<ProjectSyncState> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT created_watermark, heartbeat_watermark, last_full_pass_at,
                        last_metadata_pass_at, last_sync_started_at, last_sync_finished_at,
                        engine_state
                 FROM wandb.project_sync_state WHERE project_pk = $1",
                &[&project.0],
            )
            .await
            .db("reading project sync state")?
            .ok_or_else(|| MirrorError::NotFound {
                what: format!("project #{}", project.0),
            })?;
        Ok(ProjectSyncState {
            created_watermark: row.get(0),
            heartbeat_watermark: row.get(1),
            last_full_pass_at: row.get(2),
            last_metadata_pass_at: row.get(3),
            last_sync_started_at: row.get(4),
            last_sync_finished_at: row.get(5),
            engine_state: row.get(6),
        })
    }

    /// Stores the sync bookkeeping of `project`.
    pub async fn set_project_sync_state(
        &self,
        project: ProjectPk,
        state: &ProjectSyncState,
    ) -> Result<()> {
        let engine_state = if state.engine_state.is_null() {
            serde_json::Value::Object(Default::default())
        } else {
            state.engine_state.clone()
        };
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO wandb.project_sync_state
                     (project_pk, created_watermark, heartbeat_watermark, last_full_pass_at,
                      last_metadata_pass_at, last_sync_started_at, last_sync_finished_at,
                      engine_state)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                 ON CONFLICT (project_pk) DO UPDATE SET
                     created_watermark = EXCLUDED.created_watermark,
                     heartbeat_watermark = EXCLUDED.heartbeat_watermark,
                     last_full_pass_at = EXCLUDED.last_full_pass_at,
                     last_metadata_pass_at = EXCLUDED.last_metadata_pass_at,
                     last_sync_started_at = EXCLUDED.last_sync_started_at,
                     last_sync_finished_at = EXCLUDED.last_sync_finished_at,
                     engine_state = EXCLUDED.engine_state",
                &[
                    &project.0,
                    &state.created_watermark,
                    &state.heartbeat_watermark,
                    &state.last_full_pass_at,
                    &state.last_metadata_pass_at,
                    &state.last_sync_started_at,
                    &state.last_sync_finished_at,
                    &engine_state,
                ],
            )
            .await
            .db("writing project sync state")?;
        Ok(())
    }

    /// Records a failed sync attempt of `run` (the message is stored as given: keep secrets
    /// out of it).
    pub async fn record_run_error(&self, run: RunPk, message: &str) -> Result<()> {
        let client = self.client().await?;
        client
            .execute(
                "UPDATE wandb.run_sync_state SET attempts = attempts + 1,
                     consecutive_errors = consecutive_errors + 1,
                     last_error = $2, last_error_at = now()
                 WHERE run_pk = $1",
                &[&run.0, &message],
            )
            .await
            .db("recording a run error")?;
        Ok(())
    }

    /// Records a successful sync of `run` (resets the consecutive error count).
    pub async fn record_run_success(&self, run: RunPk) -> Result<()> {
        let client = self.client().await?;
        client
            .execute(
                "UPDATE wandb.run_sync_state SET attempts = attempts + 1,
                     consecutive_errors = 0, last_success_at = now()
                 WHERE run_pk = $1",
                &[&run.0],
            )
            .await
            .db("recording a run success")?;
        Ok(())
    }

    /// Stores free-form engine state (a JSON object) for `run`.
    pub async fn set_run_engine_state(&self, run: RunPk, state: &serde_json::Value) -> Result<()> {
        let client = self.client().await?;
        client
            .execute(
                "UPDATE wandb.run_sync_state SET engine_state = $2 WHERE run_pk = $1",
                &[&run.0, state],
            )
            .await
            .db("writing run engine state")?;
        Ok(())
    }
}
