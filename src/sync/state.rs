//! The engine's own bookkeeping in the mirror, on top of helper tables the mirror owns:
//! `run_sync_state.engine_state` holds `{"listed": RunSig, "synced": RunSig}` per run, and
//! `project_sync_state.engine_state` the `updatedAt` watermark.
//!
//! A run is *pending* while `listed` differs from `synced`: it was seen changed by a listing
//! and its job has not completed since. Pending runs are found from the mirror, not from the
//! listing, so a run whose job was interrupted (crash, `kill -9`, a failure) is picked up by
//! the next sync even though the listing watermark has moved past it.

use std::collections::HashMap;

use serde_json::Value;

use super::records::RunSig;
use crate::mirror::{Mirror, MirrorError, ProjectPk, RunPk};

type Result<T> = std::result::Result<T, MirrorError>;

fn db(context: &'static str) -> impl FnOnce(tokio_postgres::Error) -> MirrorError {
    move |source| MirrorError::Db { context, source }
}

fn sig_from(value: Option<Value>) -> Option<RunSig> {
    value.and_then(|v| serde_json::from_value(v).ok())
}

fn sig_value(sig: &RunSig) -> Value {
    serde_json::to_value(sig).unwrap_or(Value::Null)
}

/// What the mirror knows about one run of a project, for planning.
#[derive(Clone, Debug)]
pub(crate) struct MirroredRun {
    pub(crate) run_pk: RunPk,
    pub(crate) deleted: bool,
    pub(crate) state: Option<String>,
    pub(crate) listed: Option<RunSig>,
    pub(crate) synced: Option<RunSig>,
}

/// Every run of `project` in the mirror, by run id.
pub(crate) async fn load_runs(
    mirror: &Mirror,
    project: ProjectPk,
) -> Result<HashMap<String, MirroredRun>> {
    let client = mirror.pool().get().await?;
    let rows = client
        .query(
            "SELECT r.run_id, r.run_pk, r.deleted, r.state,
                    s.engine_state -> 'listed', s.engine_state -> 'synced'
             FROM wandb.runs r JOIN wandb.run_sync_state s USING (run_pk)
             WHERE r.project_pk = $1",
            &[&project.0],
        )
        .await
        .map_err(db("loading the project's runs"))?;
    Ok(rows
        .into_iter()
        .map(|r| {
            (
                r.get(0),
                MirroredRun {
                    run_pk: RunPk(r.get(1)),
                    deleted: r.get(2),
                    state: r.get(3),
                    listed: sig_from(r.get(4)),
                    synced: sig_from(r.get(5)),
                },
            )
        })
        .collect())
}

/// Records the signature a listing saw.
pub(crate) async fn set_listed(mirror: &Mirror, run: RunPk, sig: &RunSig) -> Result<()> {
    let client = mirror.pool().get().await?;
    client
        .execute(
            "UPDATE wandb.run_sync_state
             SET engine_state = engine_state || jsonb_build_object('listed', $2::jsonb)
             WHERE run_pk = $1",
            &[&run.0, &sig_value(sig)],
        )
        .await
        .map_err(db("recording a listed run"))?;
    Ok(())
}

/// Records that the run is fully synced as of `sig` (which becomes the listed one too).
pub(crate) async fn set_synced(mirror: &Mirror, run: RunPk, sig: &RunSig) -> Result<()> {
    let client = mirror.pool().get().await?;
    let value = sig_value(sig);
    client
        .execute(
            "UPDATE wandb.run_sync_state
             SET engine_state = engine_state
                 || jsonb_build_object('listed', $2::jsonb, 'synced', $2::jsonb)
             WHERE run_pk = $1",
            &[&run.0, &value],
        )
        .await
        .map_err(db("recording a synced run"))?;
    Ok(())
}

/// A run whose job has not completed since a listing saw it change.
#[derive(Clone, Debug)]
pub(crate) struct PendingRun {
    pub(crate) run_pk: RunPk,
    pub(crate) run_id: String,
    pub(crate) listed: Option<RunSig>,
    pub(crate) synced: Option<RunSig>,
    pub(crate) consecutive_errors: i32,
    pub(crate) last_error: Option<String>,
    /// `historyLineCount` minus mirrored rows (for progress; ≥ 0).
    pub(crate) expected_rows: u64,
    /// The last mirrored history step.
    pub(crate) history_last_step: Option<i64>,
    /// Mirrored history rows.
    pub(crate) history_rows: u64,
    /// Mirrored system events.
    pub(crate) system_rows: u64,
}

/// Pending runs of `project` (not deleted), oldest first; with `all`, every run not deleted.
pub(crate) async fn pending_runs(
    mirror: &Mirror,
    project: ProjectPk,
    all: bool,
) -> Result<Vec<PendingRun>> {
    let client = mirror.pool().get().await?;
    let rows = client
        .query(
            "SELECT r.run_pk, r.run_id, s.engine_state -> 'listed', s.engine_state -> 'synced',
                    s.consecutive_errors, s.last_error,
                    greatest(coalesce(r.history_line_count, 0) - s.history_rows, 0),
                    s.history_last_step, s.history_rows, s.system_rows
             FROM wandb.runs r JOIN wandb.run_sync_state s USING (run_pk)
             WHERE r.project_pk = $1 AND NOT r.deleted
               AND ($2 OR (s.engine_state -> 'listed') IS DISTINCT FROM (s.engine_state -> 'synced'))
             ORDER BY r.created_at NULLS LAST, r.run_id",
            &[&project.0, &all],
        )
        .await
        .map_err(db("finding pending runs"))?;
    Ok(rows
        .into_iter()
        .map(|r| PendingRun {
            run_pk: RunPk(r.get(0)),
            run_id: r.get(1),
            listed: sig_from(r.get(2)),
            synced: sig_from(r.get(3)),
            consecutive_errors: r.get(4),
            last_error: r.get(5),
            expected_rows: u64::try_from(r.get::<_, i64>(6)).unwrap_or(0),
            history_last_step: r.get(7),
            history_rows: u64::try_from(r.get::<_, i64>(8)).unwrap_or(0),
            system_rows: u64::try_from(r.get::<_, i64>(9)).unwrap_or(0),
        })
        .collect())
}

/// The `synced` signature of one run.
pub(crate) async fn synced_sig(mirror: &Mirror, run: RunPk) -> Result<Option<RunSig>> {
    let client = mirror.pool().get().await?;
    let row = client
        .query_opt(
            "SELECT engine_state -> 'synced' FROM wandb.run_sync_state WHERE run_pk = $1",
            &[&run.0],
        )
        .await
        .map_err(db("reading a run's sync signature"))?;
    Ok(row.and_then(|r| sig_from(r.get(0))))
}

/// Number of runs of `project` not marked deleted.
pub(crate) async fn live_run_count(mirror: &Mirror, project: ProjectPk) -> Result<i64> {
    let client = mirror.pool().get().await?;
    let row = client
        .query_one(
            "SELECT count(*) FROM wandb.runs WHERE project_pk = $1 AND NOT deleted",
            &[&project.0],
        )
        .await
        .map_err(db("counting runs"))?;
    Ok(row.get(0))
}

/// Whether the manifest of an artifact version is stored and current.
pub(crate) async fn manifest_synced(mirror: &Mirror, version: i64) -> Result<bool> {
    let client = mirror.pool().get().await?;
    let row = client
        .query_opt(
            "SELECT manifest_synced FROM wandb.artifact_versions WHERE version_pk = $1",
            &[&version],
        )
        .await
        .map_err(db("reading an artifact version"))?;
    Ok(row.is_some_and(|r| r.get(0)))
}

/// The engine's per-project JSON state (the `updatedAt` watermark and whether the server
/// accepts that field).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct ProjectEngineState {
    /// `updatedAt` watermark, server text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) updated_watermark: Option<String>,
    /// False once the server rejected `updatedAt` (it is then neither selected nor filtered).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) updated_at_supported: Option<bool>,
    /// When the artifacts phase last completed (the store serves artifact listings from the
    /// mirror only after one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) artifacts_synced_at: Option<chrono::DateTime<chrono::Utc>>,
    /// W&B's `runCount` minus the runs a complete listing returned, as of the last metadata
    /// pass. Usually 0; a server that counts runs its listings hide would otherwise trigger a
    /// metadata pass on every sync.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) count_offset: Option<i64>,
}

impl ProjectEngineState {
    pub(crate) fn from_value(value: &Value) -> Self {
        serde_json::from_value(value.clone()).unwrap_or_default()
    }

    pub(crate) fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or_else(|_| Value::Object(Default::default()))
    }
}
