//! One run's job: the full run record, the history tail, system events and the file listing,
//! each written in its own crash-safe transactions, then the run is marked synced.
//!
//! Order matters for crash safety: the run is marked synced (its `synced` signature set) only
//! after every part committed. A job interrupted anywhere leaves the run pending, and the next
//! sync redoes only what is missing: history resumes after the last committed step, events
//! after the last committed event, files and metadata are idempotent upserts.

use futures::{StreamExt, TryStreamExt};

use super::error::{Result, SyncError};
use super::history::{HistoryBatch, HistoryRequest, HistorySource};
use super::options::SyncOptions;
use super::progress::{ProgressEvent, ProgressSink, RunStatus};
use super::records::{Plan, RunSig, file_record, run_record};
use super::report::{RunFailure, Tally};
use super::state;
use crate::client::{Client, Run, RunFields, RunFilesQuery};
use crate::mirror::{Mirror, ProjectPk, RunPk, RunSyncState, Stream};

/// Rows buffered before a history batch is committed when pages come back small.
const MIN_BATCH_BYTES: usize = 8 * 1024 * 1024;

/// What a job needs to know about one project, shared by its concurrent jobs.
pub(crate) struct JobContext<'a> {
    pub(crate) client: &'a Client,
    pub(crate) mirror: &'a Mirror,
    pub(crate) options: &'a SyncOptions,
    pub(crate) history: &'a dyn HistorySource,
    pub(crate) progress: &'a dyn ProgressSink,
    pub(crate) tally: &'a Tally,
    pub(crate) entity: &'a str,
    pub(crate) project: &'a str,
    pub(crate) project_pk: ProjectPk,
    /// Select `updatedAt` when fetching the run.
    pub(crate) updated_at: bool,
}

impl JobContext<'_> {
    fn path(&self, run: &str) -> String {
        format!("{}/{}/{run}", self.entity, self.project)
    }
}

/// The parts of a run record a job needs, when a listing already fetched the full fragment.
#[derive(Clone, Debug)]
pub(crate) struct RunView {
    pub(crate) sig: RunSig,
    pub(crate) last_step: Option<i64>,
    pub(crate) lines: Option<i64>,
}

impl RunView {
    pub(crate) fn of(run: &Run) -> Self {
        RunView {
            sig: RunSig::of(run),
            last_step: run.last_step(),
            lines: run.history_line_count,
        }
    }
}

/// One run to sync.
#[derive(Clone, Debug)]
pub(crate) struct RunJob {
    pub(crate) run_pk: RunPk,
    pub(crate) run_id: String,
    pub(crate) plan: Plan,
    /// The full run from this sync's listing (its record is already in the mirror).
    pub(crate) prefetched: Option<RunView>,
    /// Failures recorded before this attempt.
    pub(crate) previous_failures: i32,
    /// The signature the run was last fully synced with (its mirrored streams belong to it).
    pub(crate) synced: Option<RunSig>,
    /// Parts read by a batched request ([`super::batch`]), used where they prove complete.
    pub(crate) bundle: Option<Box<super::batch::Prefetched>>,
}

#[cfg(test)]
impl RunJob {
    pub(crate) fn for_tests() -> RunJob {
        RunJob {
            run_pk: RunPk(0),
            run_id: "r".into(),
            plan: Plan::Full,
            prefetched: None,
            previous_failures: 0,
            synced: None,
            bundle: None,
        }
    }
}

enum JobEnd {
    Synced,
    Deleted,
}

/// Runs one job, recording its outcome. Only an unusable mirror is returned as an error; every
/// other failure is recorded against the run (and reported) and the sync goes on.
pub(crate) async fn execute(ctx: &JobContext<'_>, job: RunJob) -> Result<()> {
    let path = ctx.path(&job.run_id);
    let (status, error) = match sync_run(ctx, &job).await {
        Ok(JobEnd::Synced) => {
            ctx.mirror.record_run_success(job.run_pk).await?;
            Tally::add(&ctx.tally.runs_synced, 1);
            (RunStatus::Synced, None)
        }
        Ok(JobEnd::Deleted) => {
            Tally::add(&ctx.tally.runs_deleted, 1);
            (RunStatus::Deleted, None)
        }
        Err(e) if e.is_fatal() => return Err(e),
        Err(e) => {
            let message = e.to_string();
            tracing::warn!(run = %path, "sync failed: {message}");
            ctx.mirror.record_run_error(job.run_pk, &message).await?;
            ctx.tally.fail(RunFailure {
                run: path.clone(),
                error: message.clone(),
                consecutive_failures: job.previous_failures.saturating_add(1),
                skipped: false,
            });
            (RunStatus::Failed, Some(message))
        }
    };
    ctx.progress.event(ProgressEvent::RunFinished {
        run: path,
        status,
        error,
    });
    Ok(())
}

async fn sync_run(ctx: &JobContext<'_>, job: &RunJob) -> Result<JobEnd> {
    let view = match &job.prefetched {
        Some(view) => view.clone(),
        None => {
            let fetched = ctx
                .client
                .run(
                    ctx.entity,
                    ctx.project,
                    &job.run_id,
                    RunFields::Full,
                    ctx.updated_at,
                )
                .await?;
            let Some(run) = fetched else {
                ctx.mirror.mark_run_deleted(job.run_pk).await?;
                return Ok(JobEnd::Deleted);
            };
            ctx.mirror
                .upsert_run(ctx.project_pk, &run_record(&run))
                .await?;
            RunView::of(&run)
        }
    };
    if job.plan == Plan::Full {
        if job
            .synced
            .as_ref()
            .is_some_and(|synced| view.sig.recreated_since(synced))
        {
            // Both streams are the old run's: start over (a resume after a crash here resets
            // again, since `synced` moves only when the job completes).
            ctx.tally.warn(format!(
                "{}: history was rewritten upstream: the run was deleted and created again \
                 under the same id (created {}, mirrored run created {}); its history and \
                 system events are fetched again",
                ctx.path(&job.run_id),
                view.sig.created.as_deref().unwrap_or("?"),
                job.synced
                    .as_ref()
                    .and_then(|s| s.created.as_deref())
                    .unwrap_or("?"),
            ));
            ctx.mirror.reset_stream(job.run_pk, Stream::History).await?;
            ctx.mirror.reset_stream(job.run_pk, Stream::System).await?;
        }
        let sync_state = ctx.mirror.run_sync_state(job.run_pk).await?;
        sync_history(ctx, job, &view, &sync_state).await?;
        if ctx.options.events {
            sync_events(ctx, job, &sync_state).await?;
        }
    }
    if ctx.options.files && job.plan >= Plan::Meta {
        sync_files(ctx, job).await?;
    }
    state::set_synced(ctx.mirror, job.run_pk, &view.sig).await?;
    Ok(JobEnd::Synced)
}

/// Fetches the steps after the last mirrored one, up to `historyKeys.lastStep`.
async fn sync_history(
    ctx: &JobContext<'_>,
    job: &RunJob,
    view: &RunView,
    sync_state: &RunSyncState,
) -> Result<()> {
    let Some(last_step) = view.last_step else {
        return Ok(()); // No history (yet).
    };
    let path = ctx.path(&job.run_id);
    let mut mirrored_last = sync_state.history_last_step;
    let mut mirrored_rows = sync_state.history_rows;
    let mut total_bytes = sync_state.history_bytes;
    // History only grows; fewer steps or rows upstream than mirrored means it was rewritten
    // (a rewind/fork of the run), and the mirror starts over for this run.
    let shrank = mirrored_last.is_some_and(|m| m > last_step)
        || view
            .lines
            .is_some_and(|l| ctx.options.full && i64::try_from(mirrored_rows).unwrap_or(0) > l);
    if shrank {
        ctx.tally.warn(format!(
            "{path}: history was rewritten upstream (last step {last_step}, {:?} rows; mirror had \
             step {mirrored_last:?}, {mirrored_rows} rows); re-fetching it",
            view.lines
        ));
        ctx.mirror.reset_stream(job.run_pk, Stream::History).await?;
        mirrored_last = None;
        mirrored_rows = 0;
        total_bytes = 0;
    }
    // W&B steps start at 0 and never go negative.
    let from_step = mirrored_last.map_or(0, |s| s.saturating_add(1));
    if from_step > last_step {
        return Ok(());
    }
    let request = HistoryRequest {
        entity: ctx.entity.to_owned(),
        project: ctx.project.to_owned(),
        run: job.run_id.clone(),
        from_step,
        last_step,
        expected_rows: view
            .lines
            .map(|l| u64::try_from(l).unwrap_or(0).saturating_sub(mirrored_rows)),
        run_finished: crate::sync::records::is_terminal(view.sig.state.as_deref()),
        exports: job
            .bundle
            .as_ref()
            .and_then(|b| b.bundle.parquet.clone())
            .map(crate::parquet_history::ExportListing::from_answer),
    };
    let mut batches = match batched_history(job, &request, mirrored_rows) {
        Some(batch) => futures::stream::once(async { Ok(batch) }).boxed(),
        None => ctx.history.fetch(ctx.client, request),
    };
    let min_rows = ctx.options.history_page_rows.max(1) as usize;
    let mut pending: Vec<(i64, String)> = Vec::new();
    let mut pending_bytes = 0usize;
    let mut fetched_any = false;
    loop {
        let next = batches.next().await.transpose()?;
        let done = next.is_none();
        if let Some(batch) = next {
            pending_bytes += batch.rows.iter().map(|(_, t)| t.len()).sum::<usize>();
            if pending.is_empty() {
                pending = batch.rows;
            } else {
                pending.extend(batch.rows);
            }
        }
        if pending.is_empty()
            || (!done && pending.len() < min_rows && pending_bytes < MIN_BATCH_BYTES)
        {
            if done {
                break;
            }
            continue;
        }
        let outcome = ctx
            .mirror
            .ingest_batch(job.run_pk, Stream::History, &pending)
            .await?;
        fetched_any = true;
        let bytes = outcome.total_bytes.saturating_sub(total_bytes);
        total_bytes = outcome.total_bytes;
        mirrored_rows = outcome.total_rows;
        Tally::add(&ctx.tally.rows, outcome.inserted);
        Tally::add(&ctx.tally.bytes, bytes);
        ctx.progress.event(ProgressEvent::Rows {
            run: path.clone(),
            rows: outcome.inserted,
            bytes,
        });
        pending.clear();
        pending_bytes = 0;
        if done {
            break;
        }
    }
    if fetched_any
        && let Some(lines) = view.lines
        && u64::try_from(lines).ok() != Some(mirrored_rows)
    {
        ctx.tally.warn(format!(
            "{path}: {mirrored_rows} history rows mirrored up to step {last_step}, but W&B \
             reports historyLineCount {lines}"
        ));
    }
    Ok(())
}

/// The history rows of a batched read, when they are the whole window `request` asks for:
/// the window asked is `request`'s, every row's `_step` lies in it, the run had not grown past
/// it when read (`historyKeys.lastStep` is the listing's), and the rows W&B counts
/// (`historyLineCount`, same reply) are the mirrored ones plus these. `None` sends the job to
/// the per-run path.
fn batched_history(
    job: &RunJob,
    request: &HistoryRequest,
    mirrored_rows: u64,
) -> Option<HistoryBatch> {
    let prefetched = job.bundle.as_ref()?;
    let rows = prefetched.bundle.history.clone()?;
    let window = (request.from_step, request.last_step.saturating_add(1));
    if prefetched.spec.history != Some(window)
        || prefetched.bundle.last_step != Some(request.last_step)
    {
        return None;
    }
    let count = u64::try_from(prefetched.bundle.history_line_count?).ok()?;
    if mirrored_rows.saturating_add(rows.len() as u64) != count {
        tracing::debug!(
            run = %job.run_id,
            rows = rows.len(),
            mirrored_rows,
            count,
            "batched history is not the whole window; paging it"
        );
        return None;
    }
    super::history::page_rows(request, rows, window.0, window.1).ok()
}

/// The system events of a batched read, when they are all of them: fewer than asked for
/// (never a sample) and as many as W&B's `eventsLineCount` in the same reply.
fn batched_events(job: &RunJob) -> Option<Vec<String>> {
    let prefetched = job.bundle.as_ref()?;
    let asked = prefetched.spec.events?;
    let rows = prefetched.bundle.events.clone()?;
    let complete = (rows.len() as u64) < u64::from(asked)
        && prefetched
            .bundle
            .events_line_count
            .is_none_or(|n| u64::try_from(n).ok() == Some(rows.len() as u64));
    complete.then_some(rows)
}

/// The file listing of a batched read, when it is all of it: no next page, and as many files
/// as W&B's `fileCount`.
fn batched_files(job: &RunJob) -> Option<Vec<crate::client::RunFile>> {
    let prefetched = job.bundle.as_ref()?;
    let (files, more) = prefetched.bundle.files.clone()?;
    let complete = !more
        && prefetched
            .bundle
            .file_count
            .is_none_or(|n| u64::try_from(n).ok() == Some(files.len() as u64));
    complete.then_some(files)
}

/// Fetches the system-metric events and appends those after the last mirrored one. `events`
/// has no window, so the whole stream is requested with a `samples` bound above its length
/// (raised when a reply fills it: a full reply may have been downsampled).
async fn sync_events(ctx: &JobContext<'_>, job: &RunJob, sync_state: &RunSyncState) -> Result<()> {
    let path = ctx.path(&job.run_id);
    let max = i32::MAX as u32;
    let mut samples = ctx
        .options
        .events_samples
        .max(u32::try_from(sync_state.system_rows.saturating_mul(2)).unwrap_or(max))
        .min(max);
    let rows = match batched_events(job) {
        Some(rows) => rows,
        None => loop {
            let rows = ctx
                .client
                .events(ctx.entity, ctx.project, &job.run_id, samples)
                .await?;
            if (rows.len() as u64) < u64::from(samples) || samples >= max {
                break rows;
            }
            samples = samples.saturating_mul(4).min(max);
        },
    };
    let mut next_seq = sync_state
        .system_last_seq
        .map_or(0, |s| s.saturating_add(1));
    if (rows.len() as u64) < sync_state.system_rows {
        ctx.tally.warn(format!(
            "{path}: W&B now returns {} system events, the mirror has {}; re-fetching them",
            rows.len(),
            sync_state.system_rows
        ));
        ctx.mirror.reset_stream(job.run_pk, Stream::System).await?;
        next_seq = 0;
    }
    let start = usize::try_from(next_seq).unwrap_or(usize::MAX);
    let new: Vec<(i64, String)> = rows
        .into_iter()
        .enumerate()
        .skip(start)
        .map(|(i, row)| (i as i64, row))
        .collect();
    if new.is_empty() {
        return Ok(());
    }
    let outcome = ctx
        .mirror
        .ingest_batch(job.run_pk, Stream::System, &new)
        .await?;
    Tally::add(&ctx.tally.events, outcome.inserted);
    Tally::add(
        &ctx.tally.bytes,
        outcome.total_bytes.saturating_sub(sync_state.system_bytes),
    );
    Ok(())
}

/// Replaces the run's file listing (metadata only; bytes stay in W&B).
async fn sync_files(ctx: &JobContext<'_>, job: &RunJob) -> Result<()> {
    let files: Vec<_> = match batched_files(job) {
        Some(files) => files.into_iter().map(file_record).collect(),
        None => {
            let query = RunFilesQuery::new(ctx.entity, ctx.project, &job.run_id);
            ctx.client
                .run_files(&query)
                .map_ok(file_record)
                .try_collect()
                .await
                .map_err(SyncError::from)?
        }
    };
    ctx.mirror.replace_run_files(job.run_pk, &files).await?;
    Tally::add(&ctx.tally.files, files.len() as u64);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::bundle::{BundleSpec, RunBundle};

    fn job_with(spec: BundleSpec, bundle: RunBundle) -> RunJob {
        RunJob {
            bundle: Some(Box::new(super::super::batch::Prefetched { spec, bundle })),
            ..RunJob::for_tests()
        }
    }

    fn request(from: i64, last: i64) -> HistoryRequest {
        HistoryRequest {
            entity: "e".into(),
            project: "p".into(),
            run: "r".into(),
            from_step: from,
            last_step: last,
            expected_rows: None,
            run_finished: true,
            exports: None,
        }
    }

    fn spec(window: (i64, i64)) -> BundleSpec {
        BundleSpec {
            name: "r".into(),
            history: Some(window),
            events: Some(10),
            files: Some(100),
            parquet: false,
            run: None,
        }
    }

    fn bundle(rows: &[i64], count: i64, last: i64) -> RunBundle {
        RunBundle {
            name: "r".into(),
            history_line_count: Some(count),
            events_line_count: Some(2),
            file_count: Some(1),
            last_step: Some(last),
            history: Some(rows.iter().map(|s| format!("{{\"_step\":{s}}}")).collect()),
            events: Some(vec!["{}".into(), "{}".into()]),
            files: Some((Vec::new(), false)),
            parquet: None,
            run: None,
        }
    }

    #[test]
    fn batched_history_is_used_only_when_it_is_the_whole_window() {
        let whole = job_with(spec((2, 5)), bundle(&[2, 3, 4], 5, 4));
        let batch = batched_history(&whole, &request(2, 4), 2).expect("complete");
        assert_eq!(batch.rows.len(), 3);
        // A sample (fewer rows than W&B counts), another window, a run that grew since the
        // listing: each goes to the per-run path.
        let sampled = job_with(spec((2, 5)), bundle(&[2, 4], 5, 4));
        assert!(batched_history(&sampled, &request(2, 4), 2).is_none());
        assert!(batched_history(&whole, &request(0, 4), 0).is_none());
        let grown = job_with(spec((2, 5)), bundle(&[2, 3, 4], 6, 5));
        assert!(batched_history(&grown, &request(2, 4), 2).is_none());
        // A row outside the window is a protocol error, not rows to keep.
        let stray = job_with(spec((2, 5)), bundle(&[2, 3, 9], 5, 4));
        assert!(batched_history(&stray, &request(2, 4), 2).is_none());
    }

    #[test]
    fn batched_events_and_files_must_be_complete() {
        let mut b = bundle(&[], 0, 0);
        assert_eq!(
            batched_events(&job_with(spec((0, 1)), b.clone())).map(|e| e.len()),
            Some(2)
        );
        b.events_line_count = Some(3);
        assert!(batched_events(&job_with(spec((0, 1)), b.clone())).is_none());
        let mut full = spec((0, 1));
        full.events = Some(2); // as many as asked for: maybe a sample
        b.events_line_count = Some(2);
        assert!(batched_events(&job_with(full, b.clone())).is_none());
        b.file_count = Some(0);
        assert!(batched_files(&job_with(spec((0, 1)), b.clone())).is_some());
        b.files = Some((Vec::new(), true));
        assert!(
            batched_files(&job_with(spec((0, 1)), b)).is_none(),
            "a next page"
        );
    }
}
