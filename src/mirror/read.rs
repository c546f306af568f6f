//! Reads for the store and the mount: exact sizes and byte ranges of the synthetic files,
//! small documents, listings.
//!
//! Every read is a single statement, hence one snapshot: a reader never sees half of an ingest
//! batch. Stream bytes are append-only (a batch only adds bytes after the old end), so a size
//! read earlier stays a valid bound for later range reads.

use bytes::{Bytes, BytesMut};
use chrono::{DateTime, Utc};

use super::blocks;
use super::error::{DbContext, MirrorError, Result};
use super::model::*;
use super::{Mirror, Stream};

/// A small synthetic document of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Document {
    /// W&B's `config` text, verbatim (`config.json` is rendered from it by the store).
    Config,
    /// W&B's `summaryMetrics` text, verbatim (`summary.json` is it plus a newline).
    Summary,
    /// W&B's `systemMetrics` text, verbatim.
    SystemMetrics,
}

/// A run in a listing.
#[derive(Clone, Debug, PartialEq)]
pub struct RunSummary {
    /// Mirror key.
    pub run_pk: RunPk,
    /// Run id.
    pub run_id: String,
    /// State.
    pub state: Option<String>,
    /// Flagged deleted upstream.
    pub deleted: bool,
    /// Creation time.
    pub created_at: Option<DateTime<Utc>>,
    /// Last heartbeat.
    pub heartbeat_at: Option<DateTime<Utc>>,
    /// W&B's `updatedAt`.
    pub updated_at: Option<DateTime<Utc>>,
    /// Last refresh by the mirror.
    pub last_synced_at: DateTime<Utc>,
    /// Exact size of `history.jsonl`.
    pub history_bytes: u64,
    /// Exact size of `system.jsonl`.
    pub system_bytes: u64,
}

/// A run in a directory listing ([`Mirror::list_run_names`]).
#[derive(Clone, Debug, PartialEq)]
pub struct RunName {
    /// Run id.
    pub run_id: String,
    /// State.
    pub state: Option<String>,
    /// Flagged deleted upstream.
    pub deleted: bool,
    /// Creation time.
    pub created_at: Option<DateTime<Utc>>,
    /// Last heartbeat.
    pub heartbeat_at: Option<DateTime<Utc>>,
    /// W&B's `updatedAt`.
    pub updated_at: Option<DateTime<Utc>>,
}

/// A run's sync bookkeeping.
#[derive(Clone, Debug, PartialEq)]
pub struct RunSyncState {
    /// Last history step stored (`None`: none yet).
    pub history_last_step: Option<i64>,
    /// History rows stored.
    pub history_rows: u64,
    /// Exact size of `history.jsonl`.
    pub history_bytes: u64,
    /// Last system event number stored.
    pub system_last_seq: Option<i64>,
    /// System events stored.
    pub system_rows: u64,
    /// Exact size of `system.jsonl`.
    pub system_bytes: u64,
    /// Last history ingest.
    pub history_synced_at: Option<DateTime<Utc>>,
    /// Last file listing refresh.
    pub files_synced_at: Option<DateTime<Utc>>,
    /// Sync attempts.
    pub attempts: i32,
    /// Failures since the last success.
    pub consecutive_errors: i32,
    /// Last failure message.
    pub last_error: Option<String>,
    /// Last failure time.
    pub last_error_at: Option<DateTime<Utc>>,
    /// Last success time.
    pub last_success_at: Option<DateTime<Utc>>,
    /// Free-form engine state.
    pub engine_state: serde_json::Value,
}

/// An artifact version in a listing.
#[derive(Clone, Debug, PartialEq)]
pub struct ArtifactVersionSummary {
    /// Mirror key.
    pub version_pk: VersionPk,
    /// Artifact type name.
    pub type_name: String,
    /// Collection name.
    pub collection: String,
    /// The N of `vN`.
    pub version_index: i32,
    /// Aliases pointing at this version, sorted.
    pub aliases: Vec<String>,
    /// Manifest digest (the version's e-tag).
    pub digest: Option<String>,
    /// Total size.
    pub size_bytes: Option<i64>,
    /// `PENDING` / `COMMITTED` / `DELETED`.
    pub state: Option<String>,
    /// Creation time.
    pub created_at: Option<DateTime<Utc>>,
    /// Update time.
    pub updated_at: Option<DateTime<Utc>>,
    /// True once the manifest entries are mirrored.
    pub manifest_synced: bool,
}

const METADATA_COLUMNS: &str = "p.entity, p.name, r.run_id, r.display_name, r.state, r.username,
    r.user_full_name, r.group_name, r.job_type, r.sweep, r.tags, r.notes, r.description,
    r.git_commit, r.created_at, r.heartbeat_at, r.updated_at, r.last_step,
    r.history_line_count, r.storage_id, r.deleted, r.deleted_at, r.last_synced_at,
    r.config_text, r.summary_text, r.system_metrics_text, r.run_pk";

/// A run's sync state, in [`sync_state_from_row`]'s order.
const SYNC_STATE_COLUMNS: &str = "s.history_last_step, s.history_rows, s.history_bytes,
    s.system_last_seq, s.system_rows, s.system_bytes, s.history_synced_at, s.files_synced_at,
    s.attempts, s.consecutive_errors, s.last_error, s.last_error_at, s.last_success_at,
    s.engine_state";

impl Mirror {
    /// A mirrored run's record and sync state by name, in one statement (what every access
    /// to a run's synthetic files needs first). `None`: not mirrored.
    pub async fn run_by_name(
        &self,
        entity: &str,
        project: &str,
        run_id: &str,
    ) -> Result<Option<(RunMetadata, RunSyncState)>> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                &format!(
                    "SELECT {METADATA_COLUMNS}, s.run_pk IS NOT NULL, {SYNC_STATE_COLUMNS}
                     FROM wandb.runs r JOIN wandb.projects p USING (project_pk)
                     LEFT JOIN wandb.run_sync_state s USING (run_pk)
                     WHERE p.entity = $1 AND p.name = $2 AND r.run_id = $3"
                ),
                &[&entity, &project, &run_id],
            )
            .await
            .db("reading a run")?;
        let Some(row) = row else {
            return Ok(None);
        };
        let meta = metadata_from_row(&row);
        if !row.get::<_, bool>(27) {
            return Err(MirrorError::NotFound {
                what: format!("the sync state of run #{}", meta.run_pk.0),
            });
        }
        Ok(Some((meta, sync_state_from_row(&row, 28))))
    }

    /// The run key for `entity/project/run_id`, if the run is mirrored.
    pub async fn resolve_run(
        &self,
        entity: &str,
        project: &str,
        run_id: &str,
    ) -> Result<Option<RunPk>> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT r.run_pk FROM wandb.runs r JOIN wandb.projects p USING (project_pk)
                 WHERE p.entity = $1 AND p.name = $2 AND r.run_id = $3",
                &[&entity, &project, &run_id],
            )
            .await
            .db("resolving a run")?;
        Ok(row.map(|r| RunPk(r.get(0))))
    }

    /// The project key for `entity/project`, if mirrored.
    pub async fn resolve_project(&self, entity: &str, project: &str) -> Result<Option<ProjectPk>> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT project_pk FROM wandb.projects WHERE entity = $1 AND name = $2",
                &[&entity, &project],
            )
            .await
            .db("resolving a project")?;
        Ok(row.map(|r| ProjectPk(r.get(0))))
    }

    /// Exact byte length of a run's stream (`history.jsonl` / `system.jsonl`), without
    /// rendering anything.
    pub async fn stream_len(&self, run: RunPk, stream: Stream) -> Result<u64> {
        let column = match stream {
            Stream::History => "history_bytes",
            Stream::System => "system_bytes",
        };
        let client = self.client().await?;
        let row = client
            .query_opt(
                &format!("SELECT {column} FROM wandb.run_sync_state WHERE run_pk = $1"),
                &[&run.0],
            )
            .await
            .db("reading a stream length")?
            .ok_or_else(|| MirrorError::NotFound {
                what: format!("run #{}", run.0),
            })?;
        Ok(row.get::<_, i64>(0) as u64)
    }

    /// Exact size of `history.jsonl`.
    pub async fn history_len(&self, run: RunPk) -> Result<u64> {
        self.stream_len(run, Stream::History).await
    }

    /// Bytes `[offset, offset + len)` of `history.jsonl` (shorter at the end of the file).
    pub async fn read_history(&self, run: RunPk, offset: u64, len: usize) -> Result<Bytes> {
        self.read_stream(run, Stream::History, offset, len).await
    }

    /// Bytes `[offset, offset + len)` of a run's stream, clipped to its end. Costs one indexed
    /// statement that fetches the (compressed) blocks overlapping the range, decompressed here.
    pub async fn read_stream(
        &self,
        run: RunPk,
        stream: Stream,
        offset: u64,
        len: usize,
    ) -> Result<Bytes> {
        if len == 0 {
            return Ok(Bytes::new());
        }
        let start = i64::try_from(offset).unwrap_or(i64::MAX);
        let end = start.saturating_add(i64::try_from(len).unwrap_or(i64::MAX));
        let client = self.client().await?;
        // The length is read in the same statement (snapshot) as the blocks, which commit with
        // it; clipping at it also guards against anything stored past it.
        let length_column = match stream {
            Stream::History => "history_bytes",
            Stream::System => "system_bytes",
        };
        let statement = client
            .prepare_cached(&format!(
                "WITH total AS (
                     SELECT {length_column} AS n FROM wandb.run_sync_state WHERE run_pk = $1
                 )
                 SELECT b.byte_start, b.byte_len, b.codec, b.body, total.n
                 FROM wandb.stream_blocks b, total
                 WHERE b.run_pk = $1 AND b.stream = $2
                   AND b.byte_start >= coalesce(
                         (SELECT max(byte_start) FROM wandb.stream_blocks
                          WHERE run_pk = $1 AND stream = $2 AND byte_start <= $3), 0)
                   AND b.byte_start < least($4, total.n)
                 ORDER BY b.byte_start"
            ))
            .await
            .db("preparing a stream read")?;
        let rows = client
            .query(&statement, &[&run.0, &stream.code(), &start, &end])
            .await
            .db("reading stream blocks")?;
        let mut out = BytesMut::with_capacity(len.min(16 << 20));
        let mut expected = start;
        for row in &rows {
            let byte_start: i64 = row.get(0);
            let byte_len: i32 = row.get(1);
            let total: i64 = row.get(4);
            if byte_start.max(start) != expected {
                return Err(MirrorError::Inconsistent(format!(
                    "run #{} {stream:?}: gap in blocks at byte {expected}",
                    run.0
                )));
            }
            let text = blocks::decode(row.get(2), row.get(3), byte_len)?;
            let from = (expected - byte_start) as usize;
            let to = (end.min(total) - byte_start).clamp(0, i64::from(byte_len)) as usize;
            if from < to {
                out.extend_from_slice(&text[from..to]);
                expected += (to - from) as i64;
            }
        }
        Ok(out.freeze())
    }

    /// A small synthetic document of `run` (`None` when W&B had no such value).
    pub async fn read_document(&self, run: RunPk, document: Document) -> Result<Option<Bytes>> {
        let column = match document {
            Document::Config => "config_text",
            Document::Summary => "summary_text",
            Document::SystemMetrics => "system_metrics_text",
        };
        let client = self.client().await?;
        let row = client
            .query_opt(
                &format!("SELECT {column} FROM wandb.runs WHERE run_pk = $1"),
                &[&run.0],
            )
            .await
            .db("reading a run document")?
            .ok_or_else(|| MirrorError::NotFound {
                what: format!("run #{}", run.0),
            })?;
        Ok(row.get::<_, Option<String>>(0).map(Bytes::from))
    }

    /// The run record and its texts: everything the small synthetic files are rendered from,
    /// in one statement.
    pub async fn run_metadata(&self, run: RunPk) -> Result<RunMetadata> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                &format!(
                    "SELECT {METADATA_COLUMNS} FROM wandb.runs r JOIN wandb.projects p
                     USING (project_pk) WHERE r.run_pk = $1"
                ),
                &[&run.0],
            )
            .await
            .db("reading run metadata")?
            .ok_or_else(|| MirrorError::NotFound {
                what: format!("run #{}", run.0),
            })?;
        Ok(metadata_from_row(&row))
    }

    /// Mirrored entities, sorted.
    pub async fn list_entities(&self) -> Result<Vec<String>> {
        let client = self.client().await?;
        let rows = client
            .query("SELECT entity FROM wandb.entities ORDER BY entity", &[])
            .await
            .db("listing entities")?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// Mirrored projects of `entity`, sorted.
    pub async fn list_projects(&self, entity: &str) -> Result<Vec<String>> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT name FROM wandb.projects WHERE entity = $1 ORDER BY name",
                &[&entity],
            )
            .await
            .db("listing projects")?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// A text that changes whenever a run of the project is added, removed or refreshed by a
    /// sync (its count and latest sync, update and heartbeat times): the version of tables
    /// rendered from the project's runs.
    pub async fn project_runs_version(&self, project: ProjectPk) -> Result<String> {
        let client = self.client().await?;
        let row = client
            .query_one(
                "SELECT count(*), count(*) FILTER (WHERE deleted), max(last_synced_at)::text,
                        max(updated_at)::text, max(heartbeat_at)::text,
                        sum(coalesce(history_line_count, 0))::text
                 FROM wandb.runs WHERE project_pk = $1",
                &[&project.0],
            )
            .await
            .db("reading a project's version")?;
        Ok(format!(
            "{}:{}:{}:{}:{}:{}",
            row.get::<_, i64>(0),
            row.get::<_, i64>(1),
            row.get::<_, Option<String>>(2).unwrap_or_default(),
            row.get::<_, Option<String>>(3).unwrap_or_default(),
            row.get::<_, Option<String>>(4).unwrap_or_default(),
            row.get::<_, Option<String>>(5).unwrap_or_default()
        ))
    }

    /// The names, states and times of a project's mirrored runs (deleted ones included,
    /// flagged), sorted by run id: what a directory listing needs, from one index-only scan
    /// (the `runs_listing` index; `list_runs` has more and reads the rows).
    pub async fn list_run_names(&self, project: ProjectPk) -> Result<Vec<RunName>> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT run_id, state, deleted, created_at, heartbeat_at, updated_at
                 FROM wandb.runs WHERE project_pk = $1 ORDER BY run_id",
                &[&project.0],
            )
            .await
            .db("listing runs")?;
        Ok(rows
            .iter()
            .map(|r| RunName {
                run_id: r.get(0),
                state: r.get(1),
                deleted: r.get(2),
                created_at: r.get(3),
                heartbeat_at: r.get(4),
                updated_at: r.get(5),
            })
            .collect())
    }

    /// Mirrored runs of a project (deleted ones included, flagged), sorted by run id.
    pub async fn list_runs(&self, project: ProjectPk) -> Result<Vec<RunSummary>> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT r.run_pk, r.run_id, r.state, r.deleted, r.created_at, r.last_synced_at,
                        s.history_bytes, s.system_bytes, r.heartbeat_at, r.updated_at
                 FROM wandb.runs r JOIN wandb.run_sync_state s USING (run_pk)
                 WHERE r.project_pk = $1 ORDER BY r.run_id",
                &[&project.0],
            )
            .await
            .db("listing runs")?;
        Ok(rows
            .iter()
            .map(|r| RunSummary {
                run_pk: RunPk(r.get(0)),
                run_id: r.get(1),
                state: r.get(2),
                deleted: r.get(3),
                created_at: r.get(4),
                last_synced_at: r.get(5),
                history_bytes: r.get::<_, i64>(6) as u64,
                system_bytes: r.get::<_, i64>(7) as u64,
                heartbeat_at: r.get(8),
                updated_at: r.get(9),
            })
            .collect())
    }

    /// The mirrored file listing of `run`, sorted by name.
    pub async fn list_run_files(&self, run: RunPk) -> Result<Vec<RunFileRecord>> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT name, size_bytes, md5, updated_at, mimetype, url, storage_id
                 FROM wandb.run_files WHERE run_pk = $1 ORDER BY name",
                &[&run.0],
            )
            .await
            .db("listing run files")?;
        Ok(rows
            .iter()
            .map(|r| RunFileRecord {
                name: r.get(0),
                size_bytes: r.get(1),
                md5: r.get(2),
                updated_at: r.get(3),
                mimetype: r.get(4),
                url: r.get(5),
                storage_id: r.get(6),
            })
            .collect())
    }

    /// The mirrored artifact versions of a project that W&B still has (not marked deleted, nor
    /// in a deleted collection), ordered by type, collection and version.
    pub async fn list_artifact_versions(
        &self,
        project: ProjectPk,
    ) -> Result<Vec<ArtifactVersionSummary>> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT v.version_pk, t.name, c.name, v.version_index,
                        coalesce((SELECT array_agg(a.alias ORDER BY a.alias)
                                  FROM wandb.artifact_aliases a
                                  WHERE a.version_pk = v.version_pk), '{}'),
                        v.digest, v.size_bytes, v.state, v.created_at, v.updated_at,
                        v.manifest_synced
                 FROM wandb.artifact_versions v
                 JOIN wandb.artifact_collections c USING (collection_pk)
                 JOIN wandb.artifact_types t ON t.type_pk = c.type_pk
                 WHERE c.project_pk = $1 AND NOT v.deleted AND NOT c.deleted
                 ORDER BY t.name, c.name, v.version_index",
                &[&project.0],
            )
            .await
            .db("listing artifact versions")?;
        Ok(rows
            .iter()
            .map(|r| ArtifactVersionSummary {
                version_pk: VersionPk(r.get(0)),
                type_name: r.get(1),
                collection: r.get(2),
                version_index: r.get(3),
                aliases: r.get(4),
                digest: r.get(5),
                size_bytes: r.get(6),
                state: r.get(7),
                created_at: r.get(8),
                updated_at: r.get(9),
                manifest_synced: r.get(10),
            })
            .collect())
    }

    /// The mirrored manifest entries of an artifact version, sorted by path.
    pub async fn manifest_entries(&self, version: VersionPk) -> Result<Vec<ManifestEntryRecord>> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT path, digest, size_bytes, ref, birth_artifact_id, extra
                 FROM wandb.artifact_manifest_entries WHERE version_pk = $1 ORDER BY path",
                &[&version.0],
            )
            .await
            .db("reading manifest entries")?;
        Ok(rows
            .iter()
            .map(|r| ManifestEntryRecord {
                path: r.get(0),
                digest: r.get(1),
                size_bytes: r.get(2),
                ref_uri: r.get(3),
                birth_artifact_id: r.get(4),
                extra: r.get(5),
            })
            .collect())
    }

    /// The sync bookkeeping of `run`.
    pub async fn run_sync_state(&self, run: RunPk) -> Result<RunSyncState> {
        let client = self.client().await?;
        let r = client
            .query_opt(
                "SELECT history_last_step, history_rows, history_bytes, system_last_seq,
                        system_rows, system_bytes, history_synced_at, files_synced_at,
                        attempts, consecutive_errors, last_error, last_error_at,
                        last_success_at, engine_state
                 FROM wandb.run_sync_state WHERE run_pk = $1",
                &[&run.0],
            )
            .await
            .db("reading run sync state")?
            .ok_or_else(|| MirrorError::NotFound {
                what: format!("run #{}", run.0),
            })?;
        Ok(sync_state_from_row(&r, 0))
    }
}

/// A [`RunMetadata`] from the first columns of a row that starts with [`METADATA_COLUMNS`].
fn metadata_from_row(row: &tokio_postgres::Row) -> RunMetadata {
    RunMetadata {
        entity: row.get(0),
        project: row.get(1),
        id: row.get(2),
        display_name: row.get(3),
        state: row.get(4),
        user: row.get(5),
        user_full_name: row.get(6),
        group: row.get(7),
        job_type: row.get(8),
        sweep: row.get(9),
        tags: row.get(10),
        notes: row.get(11),
        description: row.get(12),
        commit: row.get(13),
        created_at: row.get(14),
        heartbeat_at: row.get(15),
        updated_at: row.get(16),
        last_step: row.get(17),
        history_line_count: row.get(18),
        storage_id: row.get(19),
        deleted: row.get(20),
        deleted_at: row.get(21),
        last_synced_at: row.get(22),
        config: row.get(23),
        summary: row.get(24),
        system_metrics: row.get(25),
        run_pk: RunPk(row.get(26)),
    }
}

/// The run_sync_state columns [`SYNC_STATE_COLUMNS`] of a row, from column `at` on.
fn sync_state_from_row(r: &tokio_postgres::Row, at: usize) -> RunSyncState {
    RunSyncState {
        history_last_step: r.get(at),
        history_rows: r.get::<_, i64>(at + 1) as u64,
        history_bytes: r.get::<_, i64>(at + 2) as u64,
        system_last_seq: r.get(at + 3),
        system_rows: r.get::<_, i64>(at + 4) as u64,
        system_bytes: r.get::<_, i64>(at + 5) as u64,
        history_synced_at: r.get(at + 6),
        files_synced_at: r.get(at + 7),
        attempts: r.get(at + 8),
        consecutive_errors: r.get(at + 9),
        last_error: r.get(at + 10),
        last_error_at: r.get(at + 11),
        last_success_at: r.get(at + 12),
        engine_state: r.get(at + 13),
    }
}
