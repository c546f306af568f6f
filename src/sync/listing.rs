//! Run listings: what a sync asks W&B about a project's runs, and how the answers land in the
//! mirror.
//!
//! - **Incremental listing** (every sync): one `Runs` scan, ordered `+created_at`, with the
//!   server-side filter `{"$or": [{"createdAt": {"$gte": c}}, {"heartbeatAt": {"$gte": h}},
//!   {"updatedAt": {"$gte": u}}, {"name": {"$in": [non-terminal runs]}}]}` where `c`, `h`, `u`
//!   are the stored watermarks moved back by the overlap. New runs, live runs, runs edited
//!   since the last sync and every run not in a terminal state come back; an unchanged project
//!   answers with (about) one page.
//! - **Metadata pass** (first sync, `--full`, every `metadata_interval`, or when the run count
//!   disagrees with the mirror): the same scan without a filter, so every run's lightweight
//!   record is compared with the mirror, and a deletion diff follows.
//!
//! Each listed run is reduced to a [`RunSig`]; only runs whose signature changed are written
//! (upsert + `listed` signature), so a metadata pass over 10,000 unchanged runs writes nothing.

use std::collections::{HashMap, HashSet};

use futures::{StreamExt, TryStreamExt};

use super::error::{Result, SyncError};
use super::progress::{ProgressEvent, RunStatus};
use super::records::{RunSig, Watermark, is_terminal, run_record};
use super::report::Tally;
use super::run_job::{JobContext, RunView};
use super::state::{self, MirroredRun};
use crate::client::{self, Run, RunFields, RunsQuery};
use crate::mirror::RunPk;

/// Names per `{"name": {"$in": [...]}}` filter: **1,000**, the most runs W&B returns per page
/// (SAAS-NOTES: `per_page` ≤ 1,000), so a re-sync of a project with 1,000 running runs is one
/// filter and one page (about 12 KB of filter text), not ten of each.
pub(crate) const NAMES_PER_FILTER: usize = 1_000;

/// Page size of the listings a sync makes with the lightweight fragment (incremental listings,
/// deletion checks): **1,000**, W&B's maximum. Each run is ~300 bytes there, so a page is
/// ~300 KB; the SDK's 50 made a 10,000-run check 200 requests.
pub(crate) const LIGHT_PAGE: u32 = 1_000;

/// Listed runs recorded together: their mirror writes run [`LISTING_WRITERS`] at a time.
const RECORD_CHUNK: usize = 200;

/// Concurrent mirror writes while recording a listing: **8**. The writes are round trips
/// (an upsert and a bookkeeping update per run), not server CPU; the pool has room for them
/// (`2 × jobs + 4` connections in `wandbfs sync`, the mount's pool likewise), and jobs have
/// not started yet.
const LISTING_WRITERS: usize = 8;

/// Page size of the listings a sync makes with the full fragment (first syncs, `--full`):
/// **200**. Every run's record then comes from the listing (its jobs need no `Run` read), so
/// on a first sync of 10,000 runs these pages are most of the requests: 200 at the SDK's 50,
/// 50 here — with the batched reads, ~160 requests in all, inside one minute of W&B's
/// 200-a-minute budget. Not W&B's maximum (1,000, which the SDK's own cheapest check uses
/// with the full fragment): a page carries every run's config and summary, and 200 keeps a
/// page of runs with 50 KB configs near 10 MB.
pub(crate) const FULL_PAGE: u32 = 200;

/// The listing side of one project sync.
pub(crate) struct Listing {
    /// The mirror's runs of the project, kept current as listings upsert.
    pub(crate) runs: HashMap<String, MirroredRun>,
    pub(crate) created: Watermark,
    pub(crate) heartbeat: Watermark,
    pub(crate) updated: Watermark,
    /// Full-fragment records seen by this sync (their jobs need not fetch the run again).
    pub(crate) prefetched: HashMap<String, RunView>,
    /// Names seen by the current complete scan, when one is being collected.
    present: Option<HashSet<String>>,
    seen: HashSet<String>,
}

impl Listing {
    pub(crate) fn new(
        runs: HashMap<String, MirroredRun>,
        created: Watermark,
        heartbeat: Watermark,
        updated: Watermark,
    ) -> Self {
        Listing {
            runs,
            created,
            heartbeat,
            updated,
            prefetched: HashMap::new(),
            present: None,
            seen: HashSet::new(),
        }
    }

    /// Lists runs matching `filters` (JSON text, `None` = all) and records them.
    pub(crate) async fn list(
        &mut self,
        ctx: &JobContext<'_>,
        filters: Option<String>,
        fields: RunFields,
    ) -> Result<()> {
        let mut query = RunsQuery::new(ctx.entity, ctx.project);
        query.fields = fields;
        query.include_updated_at = ctx.updated_at;
        query.per_page = Some(match fields {
            RunFields::Lightweight => LIGHT_PAGE,
            RunFields::Full => FULL_PAGE,
        });
        if let Some(filters) = filters {
            query = query.filters(filters);
        }
        let mut pages = ctx.client.runs(&query).try_chunks(RECORD_CHUNK);
        while let Some(runs) = pages.try_next().await.map_err(|e| e.1)? {
            self.record_all(ctx, runs, fields).await?;
        }
        Ok(())
    }

    /// The incremental listing (see the module docs).
    pub(crate) async fn list_incremental(
        &mut self,
        ctx: &JobContext<'_>,
        overlap: std::time::Duration,
    ) -> Result<()> {
        let live: Vec<String> = {
            let mut names: Vec<&String> = self
                .runs
                .iter()
                .filter(|(_, r)| !r.deleted && !is_terminal(r.state.as_deref()))
                .map(|(name, _)| name)
                .collect();
            names.sort();
            names.into_iter().cloned().collect()
        };
        let mut chunks = live.chunks(NAMES_PER_FILTER);
        let mut clauses = Vec::new();
        for (field, watermark) in [
            ("createdAt", &self.created),
            ("heartbeatAt", &self.heartbeat),
            ("updatedAt", &self.updated),
        ] {
            if field == "updatedAt" && !ctx.updated_at {
                continue;
            }
            if let Some(bound) = watermark.bound(overlap) {
                clauses.push(serde_json::json!({ field: { "$gte": bound } }));
            }
        }
        if let Some(first) = chunks.next() {
            clauses.push(serde_json::json!({ "name": { "$in": first } }));
        }
        let filter = if clauses.is_empty() {
            // Nothing to anchor on (no watermark, no live run): list everything.
            None
        } else {
            Some(serde_json::json!({ "$or": clauses }).to_string())
        };
        self.list(ctx, filter, RunFields::Lightweight).await?;
        for chunk in chunks {
            let filter = serde_json::json!({ "name": { "$in": chunk } }).to_string();
            self.list(ctx, Some(filter), RunFields::Lightweight).await?;
        }
        Ok(())
    }

    /// A metadata pass: every run, then the deletion diff. Returns the runs newly marked
    /// deleted.
    pub(crate) async fn metadata_pass(
        &mut self,
        ctx: &JobContext<'_>,
        fields: RunFields,
    ) -> Result<Vec<String>> {
        self.present = Some(HashSet::new());
        let listed = self.list(ctx, None, fields).await;
        let present = self.present.take().unwrap_or_default();
        listed?;
        // Runs the mirror has that the complete scan did not return. Offset cursors can skip
        // rows when runs are deleted mid-scan, so each candidate is confirmed by name first.
        let mut missing: Vec<String> = self
            .runs
            .iter()
            .filter(|(name, r)| !r.deleted && !present.contains(*name))
            .map(|(name, _)| name.clone())
            .collect();
        missing.sort();
        let mut deleted = Vec::new();
        for chunk in missing.chunks(NAMES_PER_FILTER) {
            self.present = Some(HashSet::new());
            let filter = serde_json::json!({ "name": { "$in": chunk } }).to_string();
            let confirmed = self.list(ctx, Some(filter), RunFields::Lightweight).await;
            let found = self.present.take().unwrap_or_default();
            confirmed?;
            for name in chunk.iter().filter(|n| !found.contains(*n)) {
                if let Some(run) = self.runs.get_mut(name) {
                    ctx.mirror.mark_run_deleted(run.run_pk).await?;
                    run.deleted = true;
                    deleted.push(name.clone());
                    Tally::add(&ctx.tally.runs_deleted, 1);
                    ctx.progress.event(ProgressEvent::RunFinished {
                        run: format!("{}/{}/{name}", ctx.entity, ctx.project),
                        status: RunStatus::Deleted,
                        error: None,
                    });
                }
            }
        }
        Ok(deleted)
    }

    /// Records listed runs: watermarks, and an upsert of each run whose signature changed —
    /// [`LISTING_WRITERS`] at a time (one after another, a first sync of 10,000 runs spent
    /// 14 s here on round trips alone). A run listed twice in one chunk (offset cursors can
    /// repeat rows) is written once, as last seen.
    async fn record_all(
        &mut self,
        ctx: &JobContext<'_>,
        runs: Vec<Run>,
        fields: RunFields,
    ) -> Result<()> {
        let mut changed: Vec<(Run, RunSig)> = Vec::new();
        let mut at: HashMap<String, usize> = HashMap::new();
        for run in runs {
            let Some(sig) = self.note(&run, fields, ctx) else {
                continue;
            };
            match at.get(&run.name) {
                Some(&i) => changed[i] = (run, sig),
                None => {
                    at.insert(run.name.clone(), changed.len());
                    changed.push((run, sig));
                }
            }
        }
        let written: Vec<(Run, RunSig, RunPk)> = futures::stream::iter(changed)
            .map(|(run, sig)| async move {
                let outcome = ctx
                    .mirror
                    .upsert_run(ctx.project_pk, &run_record(&run))
                    .await?;
                state::set_listed(ctx.mirror, outcome.run_pk, &sig).await?;
                Ok::<_, SyncError>((run, sig, outcome.run_pk))
            })
            .buffer_unordered(LISTING_WRITERS)
            .try_collect()
            .await?;
        for (run, sig, run_pk) in written {
            let synced = self.runs.get(&run.name).and_then(|k| k.synced.clone());
            self.runs.insert(
                run.name.clone(),
                MirroredRun {
                    run_pk,
                    deleted: false,
                    state: run.state,
                    listed: Some(sig),
                    synced,
                },
            );
        }
        Ok(())
    }

    /// Notes one listed run (watermarks, what was seen, its prefetched view); its signature
    /// when it must be written (new, changed, or a full listing).
    fn note(&mut self, run: &Run, fields: RunFields, ctx: &JobContext<'_>) -> Option<RunSig> {
        if self.seen.insert(run.name.clone()) {
            Tally::add(&ctx.tally.runs_listed, 1);
        }
        if let Some(present) = &mut self.present {
            present.insert(run.name.clone());
        }
        self.created.offer(run.created_at.as_deref());
        self.heartbeat.offer(run.heartbeat_at.as_deref());
        self.updated.offer(run.updated_at.as_deref());
        let sig = RunSig::of(run);
        let known = self.runs.get(&run.name);
        let changed = fields == RunFields::Full
            || known.is_none_or(|k| k.deleted || k.listed.as_ref() != Some(&sig));
        if fields == RunFields::Full {
            self.prefetched.insert(run.name.clone(), RunView::of(run));
        }
        changed.then_some(sig)
    }
}

/// True when the server refused the `updatedAt` field or filter (it is not in the SDK's
/// documents, so a server may not know it).
pub(crate) fn rejects_updated_at(error: &SyncError) -> bool {
    match error {
        SyncError::Client(client::Error::GraphQl { messages, .. }) => {
            messages.iter().any(|m| m.contains("updatedAt"))
        }
        SyncError::Client(client::Error::Http {
            status: 400,
            message,
            ..
        }) => message.contains("updatedAt"),
        _ => false,
    }
}
