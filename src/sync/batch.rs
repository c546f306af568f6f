//! Batched reads for many runs: the history tail, system events, file listing (and, for big
//! finished runs, the parquet export listing) of up to [`BatchBudget::runs`] runs in **one**
//! GraphQL request ([`Client::run_bundles`]), instead of three or four per run.
//!
//! At W&B a sync's wall time is set by requests, not CPU: the GraphQL budget is per key and
//! per project (50–200 requests a minute by the last published numbers), so a sweep of 10,000
//! short runs synced per run is 30,000 requests — hours. Batched, it is a few hundred.
//!
//! **Nothing is assumed complete.** A run's bundle is only a prefetch: the run's job
//! ([`super::run_job`]) checks each part against the counts W&B returned in the same reply —
//! history rows = `historyLineCount` (minus what is mirrored) for exactly the window asked,
//! events = `eventsLineCount` and fewer than asked for, files = `fileCount` with no next page
//! — and reads any part that fails (or a run whose alias failed or came back `null`) through
//! the per-run operations, exactly as without batching. The job writes the mirror with the
//! same code either way, so a batched sync leaves the mirror a per-run sync would.
//!
//! **Failures shrink the batch.** A request that fails as a whole (5xx, a timeout, an
//! oversized or undecodable reply) is split in two, down to single runs (which then fall back
//! to the per-run path); the size that worked is kept for the rest of the sync. A 429 is not a
//! reason to split: batching does not change what a request costs the budget, so the request
//! waits as any other.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::error::Result;
use super::run_job::{JobContext, RunJob, RunView};
use crate::client::bundle::{BundleOutcome, BundleSpec, RunBundle};

/// How much one batched request may carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchBudget {
    /// Runs per request: **100** (the `$in` batch public W&B tools use; each alias is a few
    /// hundred bytes of document).
    pub runs: usize,
    /// History rows (and expected events) per request: **5,000**, the page a per-run sync
    /// asks for (`history_page_rows`): about 3 MB of reply at 20 metrics, and by W&B's observed
    /// ~1.4 s per 1,000 rows about 7 s of server time, well inside the 30 s GraphQL timeout.
    pub rows: u64,
    /// A run whose remaining history is larger than this is read per run (parquet exports and
    /// paging): **5,000** rows.
    pub run_rows: u64,
}

impl Default for BatchBudget {
    fn default() -> Self {
        BatchBudget {
            runs: 100,
            rows: 5_000,
            run_rows: 5_000,
        }
    }
}

/// A run's prefetched parts and the questions they answer.
#[derive(Clone, Debug)]
pub(crate) struct Prefetched {
    /// What was asked.
    pub(crate) spec: BundleSpec,
    /// What came back.
    pub(crate) bundle: RunBundle,
}

/// One job and what to ask for it.
struct Planned {
    job: RunJob,
    spec: BundleSpec,
    rows: u64,
}

/// What the mirror already holds of a run.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Mirrored {
    /// The last mirrored history step.
    pub(crate) last_step: Option<i64>,
    /// Mirrored history rows.
    pub(crate) rows: u64,
    /// Mirrored system events.
    pub(crate) system_rows: u64,
}

/// Reads, in batches, the records of the jobs' runs that a lightweight listing found changed
/// (they have no prefetched [`RunView`] yet): each found run's record is stored, as the
/// per-run path's `Run` read would, and becomes the job's prefetched view; a run whose
/// metadata alone changed gets its file listing in the same read (its job then needs nothing
/// more, and carries a bundle). A run that is gone
/// or whose alias failed is left to the per-run path (which marks it deleted or reports the
/// error).
pub(crate) async fn prefetch_records<T>(
    ctx: &JobContext<'_>,
    jobs: &mut [(RunJob, T)],
    budget: &BatchBudget,
) -> Result<()> {
    use super::records::Plan;
    let wanted: Vec<usize> = (0..jobs.len())
        .filter(|&i| jobs[i].0.prefetched.is_none() && jobs[i].0.plan >= Plan::Meta)
        .collect();
    // One alias per run, a few hundred bytes of document and a run record of reply each.
    for chunk in wanted.chunks(budget.runs.max(1)) {
        let specs: Vec<BundleSpec> = chunk
            .iter()
            .map(|&i| BundleSpec {
                name: jobs[i].0.run_id.clone(),
                history: None,
                events: None,
                // A run whose metadata alone changed needs its files too, and nothing else:
                // one read does it.
                files: (ctx.options.files && jobs[i].0.plan == Plan::Meta)
                    .then_some(ctx.client.config().files_page_size),
                parquet: false,
                run: Some(ctx.updated_at),
            })
            .collect();
        let outcomes = match ctx
            .client
            .run_bundles(ctx.entity, ctx.project, &specs)
            .await
        {
            Ok(outcomes) => outcomes,
            Err(e @ crate::client::Error::Unauthenticated { .. }) => return Err(e.into()),
            Err(e) => {
                // Records are small: a failure here is not about size. The runs are read
                // one by one, as without batching.
                tracing::info!("a batched read of run records failed ({e}); read per run");
                continue;
            }
        };
        for ((&i, outcome), spec) in chunk.iter().zip(outcomes).zip(specs) {
            let BundleOutcome::Found(mut bundle) = outcome else {
                continue;
            };
            let Some(run) = bundle.run.take() else {
                continue;
            };
            let job = &mut jobs[i].0;
            ctx.mirror
                .upsert_run(ctx.project_pk, &super::records::run_record(&run))
                .await?;
            job.prefetched = Some(RunView::of(&run));
            if spec.files.is_some() {
                job.bundle = Some(Box::new(Prefetched { spec, bundle }));
            }
        }
    }
    Ok(())
}

/// The spec of a job's run, when it is worth batching: the history window it will ask for
/// (short runs), events and files, the export listing (big finished runs).
pub(crate) fn spec_for(
    ctx: &JobContext<'_>,
    job: &RunJob,
    budget: &BatchBudget,
    mirrored: &Mirrored,
) -> Option<(BundleSpec, u64)> {
    use super::records::Plan;
    let Mirrored {
        last_step: mirrored_last,
        rows: mirrored_rows,
        system_rows,
    } = *mirrored;
    let options = ctx.options;
    let view = job.prefetched.as_ref()?;
    let files =
        (options.files && job.plan >= Plan::Meta).then_some(ctx.client.config().files_page_size);
    if job.plan < Plan::Full {
        return files.map(|f| {
            (
                BundleSpec {
                    name: job.run_id.clone(),
                    history: None,
                    events: None,
                    files: Some(f),
                    parquet: false,
                    run: None,
                },
                0,
            )
        });
    }
    let remaining = view
        .lines
        .map(|l| u64::try_from(l).unwrap_or(0).saturating_sub(mirrored_rows));
    let from = mirrored_last.map_or(0, |s| s.saturating_add(1));
    let window = view
        .last_step
        .filter(|last| *last >= from)
        .map(|last| (from, last.saturating_add(1)));
    let events = options.events.then(|| {
        options
            .events_samples
            .max(u32::try_from(system_rows.saturating_mul(2)).unwrap_or(u32::MAX))
            .min(i32::MAX as u32)
    });
    let big = remaining.is_none_or(|r| r > budget.run_rows);
    let finished = super::records::is_terminal(view.sig.state.as_deref());
    let spec = BundleSpec {
        name: job.run_id.clone(),
        history: if big { None } else { window },
        events,
        files,
        parquet: big
            && finished
            && options.parquet_exports
            && window.is_some()
            && remaining.is_none_or(|r| r >= options.parquet_min_rows),
        run: None,
    };
    let rows = if big { 0 } else { remaining.unwrap_or(0) } + system_rows;
    Some((spec, rows))
}

/// Splits planned jobs into requests within `budget`, in order.
fn pack(planned: Vec<Planned>, budget: &BatchBudget) -> VecDeque<Vec<Planned>> {
    let mut batches = VecDeque::new();
    let mut current: Vec<Planned> = Vec::new();
    let mut rows = 0u64;
    for p in planned {
        if !current.is_empty()
            && (current.len() >= budget.runs || rows.saturating_add(p.rows) > budget.rows)
        {
            batches.push_back(std::mem::take(&mut current));
            rows = 0;
        }
        rows = rows.saturating_add(p.rows);
        current.push(p);
    }
    if !current.is_empty() {
        batches.push_back(current);
    }
    batches
}

/// The jobs that should be prefetched together, with their specs and weights.
pub(crate) struct Plan {
    planned: Vec<Planned>,
}

impl Plan {
    pub(crate) fn new() -> Self {
        Plan {
            planned: Vec::new(),
        }
    }

    /// Adds a job with its spec and weight (rows).
    pub(crate) fn add(&mut self, job: RunJob, spec: BundleSpec, rows: u64) {
        self.planned.push(Planned { job, spec, rows });
    }

    /// Whether nothing is planned.
    pub(crate) fn is_empty(&self) -> bool {
        self.planned.is_empty()
    }

    /// Jobs planned.
    pub(crate) fn len(&self) -> usize {
        self.planned.len()
    }

    /// Fetches the bundles in requests within `budget`, up to `concurrency` requests at a
    /// time, and hands every job to `each` — with its bundle when its run's read succeeded (the
    /// job checks it) — batch by batch, in order, so jobs are written while later batches load.
    pub(crate) async fn fetch<F, Fut>(
        self,
        ctx: &JobContext<'_>,
        budget: &BatchBudget,
        concurrency: usize,
        each: F,
    ) -> Result<()>
    where
        F: FnMut(Vec<RunJob>) -> Fut,
        Fut: std::future::Future<Output = Result<()>>,
    {
        use futures::{StreamExt, TryStreamExt};
        let limit = AtomicUsize::new(budget.runs.max(1));
        let limit = &limit;
        // Up to `concurrency` reads in flight ahead of the writer; one batch's jobs written at
        // a time (they run `concurrency` at once themselves, so the database sees no more
        // writers than without batching).
        futures::stream::iter(pack(self.planned, budget))
            .map(|batch| fetch_batch(ctx, batch, limit))
            .buffered(concurrency.max(1))
            .try_for_each(each)
            .await
    }
}

/// Reads one batch: its jobs, each with its bundle when its run's read succeeded. A request
/// that fails as a whole is split in two and each half read in turn (down to single runs,
/// which are returned without a bundle: the per-run path reads them); a size that failed
/// lowers `limit`, and batches above it are split before they are sent.
async fn fetch_batch(
    ctx: &JobContext<'_>,
    batch: Vec<Planned>,
    limit: &AtomicUsize,
) -> Result<Vec<RunJob>> {
    let mut queue = VecDeque::from([batch]);
    let mut out = Vec::new();
    while let Some(mut batch) = queue.pop_front() {
        // A size that failed before is not tried again.
        let allowed = limit.load(Ordering::Relaxed).max(1);
        if batch.len() > allowed {
            let rest = batch.split_off(allowed);
            queue.push_front(rest);
        }
        let specs: Vec<BundleSpec> = batch.iter().map(|p| p.spec.clone()).collect();
        match ctx
            .client
            .run_bundles(ctx.entity, ctx.project, &specs)
            .await
        {
            Ok(outcomes) => {
                for (planned, outcome) in batch.into_iter().zip(outcomes) {
                    let mut job = planned.job;
                    match outcome {
                        BundleOutcome::Found(bundle) => {
                            job.bundle = Some(Box::new(Prefetched {
                                spec: planned.spec,
                                bundle,
                            }));
                        }
                        BundleOutcome::Missing => {
                            // Deleted upstream since the listing: the per-run path finds out
                            // and marks it.
                            tracing::debug!(run = %job.run_id, "batched read: no such run");
                        }
                        BundleOutcome::Failed(message) => {
                            tracing::debug!(
                                run = %job.run_id,
                                "batched read failed for this run ({message}); read per run"
                            );
                        }
                    }
                    out.push(job);
                }
            }
            Err(e @ crate::client::Error::Unauthenticated { .. }) => return Err(e.into()),
            Err(e) if batch.len() > 1 => {
                let half = batch.len().div_ceil(2);
                tracing::info!(
                    runs = batch.len(),
                    "a batched read failed ({e}); splitting it in two"
                );
                limit.fetch_min(half, Ordering::Relaxed);
                let second = batch.split_off(half);
                queue.push_front(second);
                queue.push_front(batch);
            }
            Err(e) => {
                tracing::info!("a batched read of one run failed ({e}); read per run");
                out.extend(batch.into_iter().map(|p| p.job));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn planned(rows: u64) -> Planned {
        Planned {
            job: RunJob::for_tests(),
            spec: BundleSpec {
                name: "r".into(),
                history: None,
                events: None,
                files: None,
                parquet: false,
                run: None,
            },
            rows,
        }
    }

    #[test]
    fn batches_respect_the_run_and_row_budgets() {
        let budget = BatchBudget {
            runs: 3,
            rows: 100,
            run_rows: 100,
        };
        let sizes: Vec<usize> = pack((0..7).map(|_| planned(10)).collect(), &budget)
            .iter()
            .map(Vec::len)
            .collect();
        assert_eq!(sizes, [3, 3, 1]);
        let sizes: Vec<usize> = pack(
            vec![planned(60), planned(60), planned(10), planned(200)],
            &budget,
        )
        .iter()
        .map(Vec::len)
        .collect();
        assert_eq!(sizes, [1, 2, 1], "a run over the budget still goes, alone");
    }
}
