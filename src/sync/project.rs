//! One project's sync, phase by phase, and the sync of a single run.
//!
//! 1. **Probe**: one `Runs` page of one run: the project exists, its internal id, and the
//!    server's total run count.
//! 2. **Listing**: incremental, or a metadata pass (first sync, `--full`, interval due); see
//!    [`listing`](super::listing). An incremental sync whose resulting live-run count differs
//!    from the probe's escalates to a metadata pass (deletions, runs moved in).
//! 3. **Bookkeeping**: watermarks and pass times are stored — only now, after every listed run
//!    is in the mirror with its `listed` signature.
//! 4. **Jobs**: every pending run (mirror-side: `listed ≠ synced`; with `--full`, every run)
//!    gets a job; `concurrency` of them run at once ([`run_job`](super::run_job)).
//! 5. **Artifacts** on metadata passes ([`artifacts`](super::artifacts)).

use chrono::Utc;
use futures::{StreamExt, TryStreamExt};

use super::SyncEngine;
use super::artifacts::sync_artifacts;
use super::batch;
use super::error::{Result, SyncError};
use super::listing::{Listing, rejects_updated_at};
use super::options::SyncTarget;
use super::progress::{ProgressEvent, RunStatus};
use super::records::{Plan, RunSig, Watermark, run_record};
use super::report::{RunFailure, SyncReport, Tally};
use super::run_job::{self, JobContext, RunJob, RunView};
use super::state::{self, ProjectEngineState};
use crate::client::{self, RunFields, RunsQuery, parse_timestamp};
use crate::mirror::{ProjectPk, ProjectRecord, ProjectSyncLock};

/// Syncs a project (or one run, for a run target) and adds its entry to `report`. Only fatal
/// errors are returned; a failed project is reported and the sync moves on.
pub(crate) async fn sync_target(
    engine: &SyncEngine,
    target: &SyncTarget,
    report: &mut SyncReport,
) -> Result<()> {
    let tally = Tally::default();
    let mut mode = "incremental";
    let result = match &target.run {
        None => sync_project(engine, target, &tally, &mut mode).await,
        Some(run) => {
            mode = "run";
            sync_one_run(engine, target, run, &tally).await
        }
    };
    if result.is_ok() && target.run.is_none() {
        render_tables(engine, target).await;
    }
    let error = match result {
        Ok(()) => None,
        Err(e) if e.is_fatal() => return Err(e),
        Err(e) => {
            tracing::warn!(target = %target, "sync failed: {e}");
            Some(e.to_string())
        }
    };
    let entry = tally.finish(
        report,
        format!("{}/{}", target.entity, target.project),
        mode,
        error,
    );
    report.projects.push(entry);
    engine.progress.event(ProgressEvent::ProjectFinished {
        project: target.to_string(),
    });
    Ok(())
}

/// Brings the project's tables up to date (see [`SyncEngine::with_tables`]).
async fn render_tables(engine: &SyncEngine, target: &SyncTarget) {
    let Some(tables) = &engine.tables else {
        return;
    };
    let identity = format!("{}/{}", target.entity, target.project);
    let project = match engine
        .mirror
        .resolve_project(&target.entity, &target.project)
        .await
    {
        Ok(Some(project)) => project,
        Ok(None) => return,
        Err(e) => {
            tracing::warn!("{identity}: rendering its tables: {e}");
            return;
        }
    };
    for format in [crate::export::Format::Parquet, crate::export::Format::Jsonl] {
        if let Err(e) = tables
            .project_table(&engine.mirror, &identity, project, format)
            .await
        {
            tracing::warn!("{identity}: rendering its runs table: {e}");
        }
    }
}

/// The project's sync lock (release it when done); [`SyncError::Busy`] when another sync still
/// holds it after [`lock_wait`](super::SyncOptions::lock_wait).
async fn lock_project(
    engine: &SyncEngine,
    target: &SyncTarget,
    project_pk: ProjectPk,
) -> Result<ProjectSyncLock> {
    engine
        .mirror
        .lock_project_sync(project_pk, engine.options.lock_wait)
        .await?
        .ok_or_else(|| SyncError::Busy {
            project: format!("{}/{}", target.entity, target.project),
        })
}

fn context<'a>(
    engine: &'a SyncEngine,
    target: &'a SyncTarget,
    tally: &'a Tally,
    project_pk: ProjectPk,
    updated_at: bool,
) -> JobContext<'a> {
    JobContext {
        client: &engine.client,
        mirror: &engine.mirror,
        options: &engine.options,
        history: engine.history.as_ref(),
        progress: engine.progress.as_ref(),
        tally,
        entity: &target.entity,
        project: &target.project,
        project_pk,
        updated_at,
    }
}

async fn sync_project(
    engine: &SyncEngine,
    target: &SyncTarget,
    tally: &Tally,
    mode: &mut &'static str,
) -> Result<()> {
    let started = Utc::now();
    let probe = engine
        .client
        .runs_page(
            &RunsQuery::new(&target.entity, &target.project).per_page(1),
            None,
        )
        .await?;
    let record = ProjectRecord {
        entity: target.entity.clone(),
        name: target.project.clone(),
        internal_id: probe.project_internal_id.map(|i| i.to_string()),
        ..ProjectRecord::default()
    };
    let project_pk = engine.mirror.upsert_project(&record).await?;
    let lock = lock_project(engine, target, project_pk).await?;
    let result = sync_locked_project(
        engine,
        target,
        tally,
        mode,
        Probed {
            started,
            probe,
            record,
            project_pk,
        },
    )
    .await;
    // Released before the sync returns, so the next one finds it free (see `sync_lock`).
    lock.release().await;
    result
}

/// What [`sync_project`] learned before taking the project's sync lock.
struct Probed {
    started: chrono::DateTime<Utc>,
    probe: client::RunsPage,
    record: ProjectRecord,
    project_pk: ProjectPk,
}

/// [`sync_project`] once the project's sync lock is held.
async fn sync_locked_project(
    engine: &SyncEngine,
    target: &SyncTarget,
    tally: &Tally,
    mode: &mut &'static str,
    probed: Probed,
) -> Result<()> {
    let options = &engine.options;
    let Probed {
        started,
        probe,
        mut record,
        project_pk,
    } = probed;
    let mut sync_state = engine.mirror.project_sync_state(project_pk).await?;
    let mut engine_state = ProjectEngineState::from_value(&sync_state.engine_state);
    let first = sync_state.last_metadata_pass_at.is_none();
    if first
        && let Some(project) = engine
            .client
            .project(&target.entity, &target.project)
            .await?
    {
        record.storage_id = Some(project.id);
        record.created_at = project.created_at.as_deref().and_then(parse_timestamp);
        engine.mirror.upsert_project(&record).await?;
    }
    let due = options.full
        || sync_state.last_metadata_pass_at.is_none_or(|at| {
            (started - at).to_std().unwrap_or_default() >= options.metadata_interval
        });
    let fields = if first || options.full {
        RunFields::Full
    } else {
        RunFields::Lightweight
    };
    *mode = match (first, options.full, due) {
        (true, _, _) => "first",
        (_, true, _) => "full",
        (_, _, true) => "metadata",
        _ => "incremental",
    };
    let mut updated_at = options.use_updated_at && engine_state.updated_at_supported != Some(false);
    let mut listing = Listing::new(
        state::load_runs(&engine.mirror, project_pk).await?,
        Watermark::from_stored(sync_state.created_watermark.clone()),
        Watermark::from_stored(sync_state.heartbeat_watermark.clone()),
        Watermark::from_stored(engine_state.updated_watermark.clone()),
    );

    // Listings; a server that rejects `updatedAt` is remembered and asked again without it.
    let mut metadata_done = loop {
        let ctx = context(engine, target, tally, project_pk, updated_at);
        let attempt = if due {
            listing.metadata_pass(&ctx, fields).await.map(|_| true)
        } else {
            listing
                .list_incremental(&ctx, options.watermark_overlap)
                .await
                .map(|()| false)
        };
        match attempt {
            Ok(done) => break done,
            Err(e) if updated_at && rejects_updated_at(&e) => {
                tally.warn(format!(
                    "{target}: the server does not support Run.updatedAt ({e}); the periodic \
                     metadata pass still catches new tags, notes, names and states of finished \
                     runs, but edits to their summary or config only `--full` picks up"
                ));
                updated_at = false;
                engine_state.updated_at_supported = Some(false);
            }
            Err(e) => return Err(e),
        }
    };
    let ctx = context(engine, target, tally, project_pk, updated_at);
    if !metadata_done && let Some(server_count) = probe.run_count {
        let mirrored = state::live_run_count(&engine.mirror, project_pk).await?;
        let expected = server_count - engine_state.count_offset.unwrap_or(0);
        if mirrored != expected {
            tracing::info!(
                "{target}: W&B counts {server_count} runs, the mirror has {mirrored}: metadata \
                 pass"
            );
            listing.metadata_pass(&ctx, RunFields::Lightweight).await?;
            metadata_done = true;
            *mode = "metadata";
        }
    }
    if metadata_done && let Some(server_count) = probe.run_count {
        // What a complete listing does not return but `runCount` counts (runs hidden from the
        // caller): remembered, so it does not trigger a metadata pass on every sync.
        let mirrored = state::live_run_count(&engine.mirror, project_pk).await?;
        engine_state.count_offset = Some(server_count - mirrored);
    }

    sync_state.created_watermark = listing.created.text().map(str::to_owned);
    sync_state.heartbeat_watermark = listing.heartbeat.text().map(str::to_owned);
    engine_state.updated_watermark = listing.updated.text().map(str::to_owned);
    if engine_state.updated_at_supported.is_none() && updated_at {
        engine_state.updated_at_supported = Some(true);
    }
    if metadata_done {
        sync_state.last_metadata_pass_at = Some(started);
        if options.full {
            sync_state.last_full_pass_at = Some(started);
        }
    }
    sync_state.last_sync_started_at = Some(started);
    sync_state.engine_state = engine_state.to_value();
    engine
        .mirror
        .set_project_sync_state(project_pk, &sync_state)
        .await?;

    run_pending(engine, &ctx, target, &listing).await?;

    if metadata_done && options.artifacts && sync_artifacts(&ctx).await? {
        engine_state.artifacts_synced_at = Some(Utc::now());
        sync_state.engine_state = engine_state.to_value();
    }
    sync_state.last_sync_finished_at = Some(Utc::now());
    engine
        .mirror
        .set_project_sync_state(project_pk, &sync_state)
        .await?;
    Ok(())
}

/// Plans and runs the jobs of every pending run of the project.
async fn run_pending(
    engine: &SyncEngine,
    ctx: &JobContext<'_>,
    target: &SyncTarget,
    listing: &Listing,
) -> Result<()> {
    let options = &engine.options;
    let pending = state::pending_runs(&engine.mirror, ctx.project_pk, options.full).await?;
    let mut jobs = Vec::new();
    let mut batched = batch::Plan::new();
    let budget = options.batch_budget;
    let mut expected_rows = 0u64;
    let mut candidates = Vec::new();
    for run in pending {
        let Some(listed) = run.listed.as_ref() else {
            continue; // Never listed: nothing to compare with yet.
        };
        let plan = Plan::decide(listed, run.synced.as_ref(), options.full);
        if plan <= Plan::Lite {
            // The listing already stored the changed lightweight fields.
            state::set_synced(&engine.mirror, run.run_pk, listed).await?;
            continue;
        }
        if run.consecutive_errors >= options.max_run_failures
            && !(options.retry_failed || options.full)
        {
            let path = format!("{target}/{}", run.run_id);
            ctx.tally.fail(RunFailure {
                run: path.clone(),
                error: run
                    .last_error
                    .clone()
                    .unwrap_or_else(|| "unknown error".to_owned()),
                consecutive_failures: run.consecutive_errors,
                skipped: true,
            });
            engine.progress.event(ProgressEvent::RunFinished {
                run: path,
                status: RunStatus::Skipped,
                error: run.last_error,
            });
            continue;
        }
        if plan == Plan::Full {
            expected_rows += run.expected_rows;
        }
        let job = RunJob {
            run_pk: run.run_pk,
            prefetched: listing.prefetched.get(&run.run_id).cloned(),
            run_id: run.run_id,
            plan,
            previous_failures: run.consecutive_errors,
            synced: run.synced,
            bundle: None,
        };
        let mirrored = batch::Mirrored {
            last_step: run.history_last_step,
            rows: run.history_rows,
            system_rows: run.system_rows,
        };
        candidates.push((job, mirrored));
    }
    if options.batch {
        // Runs a lightweight listing found changed: their records in batches too, so the
        // history, events and files can then be planned as for a full listing.
        batch::prefetch_records(ctx, &mut candidates, &budget).await?;
    }
    for (job, mirrored) in candidates {
        if job.bundle.is_some() {
            jobs.push(job); // read whole with its record
            continue;
        }
        let spec = options
            .batch
            .then(|| batch::spec_for(ctx, &job, &budget, &mirrored))
            .flatten();
        match spec {
            Some((spec, rows)) => batched.add(job, spec, rows),
            None => jobs.push(job),
        }
    }
    engine.progress.event(ProgressEvent::ProjectPlanned {
        project: target.to_string(),
        listed: ctx
            .tally
            .runs_listed
            .load(std::sync::atomic::Ordering::Relaxed),
        jobs: (jobs.len() + batched.len()) as u64,
        expected_rows,
    });
    let concurrency = options.concurrency.max(1);
    if !batched.is_empty() {
        batched
            .fetch(ctx, &budget, concurrency, |jobs| async move {
                futures::stream::iter(jobs)
                    .map(|job| run_job::execute(ctx, job))
                    .buffer_unordered(concurrency)
                    .try_collect::<()>()
                    .await
            })
            .await?;
    }
    futures::stream::iter(jobs)
        .map(|job| run_job::execute(ctx, job))
        .buffer_unordered(concurrency)
        .try_collect::<()>()
        .await
}

/// Syncs one run (`entity/project/run_id`): the run is fetched by name whatever the project's
/// watermarks say, and synced unless the mirror already holds exactly this state of it.
async fn sync_one_run(
    engine: &SyncEngine,
    target: &SyncTarget,
    run_id: &str,
    tally: &Tally,
) -> Result<()> {
    let options = &engine.options;
    let mut updated_at = options.use_updated_at;
    let fetched = loop {
        let attempt = engine
            .client
            .run(
                &target.entity,
                &target.project,
                run_id,
                RunFields::Full,
                updated_at,
            )
            .await
            .map_err(SyncError::from);
        match attempt {
            Err(e) if updated_at && rejects_updated_at(&e) => updated_at = false,
            other => break other?,
        }
    };
    let Some(run) = fetched else {
        if let Some(run_pk) = engine
            .mirror
            .resolve_run(&target.entity, &target.project, run_id)
            .await?
        {
            engine.mirror.mark_run_deleted(run_pk).await?;
            Tally::add(&tally.runs_deleted, 1);
            return Ok(());
        }
        return Err(SyncError::Client(client::Error::NotFound {
            operation: "Run".to_owned(),
            what: format!("run {target}"),
        }));
    };
    Tally::add(&tally.runs_listed, 1);
    let project_pk = engine
        .mirror
        .upsert_project(&ProjectRecord {
            entity: target.entity.clone(),
            name: target.project.clone(),
            internal_id: run.project_id.map(|i| i.to_string()),
            ..ProjectRecord::default()
        })
        .await?;
    let lock = lock_project(engine, target, project_pk).await?;
    let result = sync_locked_run(engine, target, tally, run_id, &run, project_pk, updated_at).await;
    lock.release().await;
    result
}

/// [`sync_one_run`] once the project's sync lock is held.
async fn sync_locked_run(
    engine: &SyncEngine,
    target: &SyncTarget,
    tally: &Tally,
    run_id: &str,
    run: &client::Run,
    project_pk: ProjectPk,
    updated_at: bool,
) -> Result<()> {
    let options = &engine.options;
    let outcome = engine
        .mirror
        .upsert_run(project_pk, &run_record(run))
        .await?;
    let sig = RunSig::of(run);
    let synced = state::synced_sig(&engine.mirror, outcome.run_pk).await?;
    state::set_listed(&engine.mirror, outcome.run_pk, &sig).await?;
    let plan = Plan::decide(&sig, synced.as_ref(), options.full);
    if plan <= Plan::Lite {
        state::set_synced(&engine.mirror, outcome.run_pk, &sig).await?;
        return Ok(());
    }
    let ctx = context(engine, target, tally, project_pk, updated_at);
    let sync_state = engine.mirror.run_sync_state(outcome.run_pk).await?;
    let job = RunJob {
        run_pk: outcome.run_pk,
        run_id: run_id.to_owned(),
        plan,
        prefetched: Some(RunView::of(run)),
        previous_failures: sync_state.consecutive_errors,
        synced,
        bundle: None,
    };
    run_job::execute(&ctx, job).await
}
