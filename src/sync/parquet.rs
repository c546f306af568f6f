//! The cheapest path first: history from W&B's parquet exports, then the live tail paged.
//!
//! [`ParquetHistory`] is a [`HistorySource`]. For a request that spans at least
//! [`ParquetHistory::min_rows`] rows it asks `parquetHistory` (one GraphQL call) whether the run
//! has exports. If so, the exported rows of the window come from the files (one download per
//! file, whatever the row count; see [`crate::parquet_history`]) and only the steps past them —
//! the rows not exported yet — are paged with `history(minStep, maxStep)` by the wrapped
//! [`PagedHistory`]. Without exports (runs too fresh to be compacted, servers without exports)
//! the whole request is paged as before; runs not in a terminal state are never exported by
//! W&B, so their requests skip the listing call. Small requests (the tail of a live
//! run, a short run) skip the listing call and page directly: there the listing would cost as
//! much as the pages it could save.
//!
//! Rows are strictly ascending across the two halves: exported rows stop below the first live
//! step, the tail starts at it (or one past the last exported step when nothing is live).
//! Exports that cannot be read as W&B history (not parquet, no `_step`, steps out of order) are
//! detected before any row is handed out and the request falls back to paging, with a warning.
//! Other failures (network, expired URLs that cannot be refreshed) fail the run's job like a
//! failed page would; the mirror keeps what was committed and the next sync resumes after it.

use futures::StreamExt;
use futures::stream::BoxStream;
use tokio::sync::mpsc;

use super::error::{Result, SyncError};
use super::history::{HistoryBatch, HistoryRequest, HistorySource, PagedHistory};
use crate::client::Client;
use crate::parquet_history::{
    ExportListing, ExportRead, ParquetHistoryError, ReaderOptions, read_exported,
};

/// Parquet exports first, the live tail paged (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParquetHistory {
    /// Pages the live tail, and everything when there are no exports.
    pub paged: PagedHistory,
    /// How files are read.
    pub reader: ReaderOptions,
    /// Requests expecting fewer rows than this are paged without asking for exports.
    pub min_rows: u64,
}

impl Default for ParquetHistory {
    fn default() -> Self {
        let options = super::SyncOptions::default();
        ParquetHistory {
            paged: PagedHistory::default(),
            reader: ReaderOptions::default(),
            min_rows: options.parquet_min_rows,
        }
    }
}

impl HistorySource for ParquetHistory {
    fn name(&self) -> &'static str {
        "parquet"
    }

    fn fetch(
        &self,
        client: &Client,
        request: HistoryRequest,
    ) -> BoxStream<'static, Result<HistoryBatch>> {
        let span = request
            .last_step
            .saturating_sub(request.from_step)
            .saturating_add(1);
        let expected = request
            .expected_rows
            .unwrap_or_else(|| u64::try_from(span).unwrap_or(0));
        if expected < self.min_rows || !request.run_finished {
            return self.paged.fetch(client, request);
        }
        let (tx, rx) = mpsc::channel(self.paged.prefetch.max(1));
        let source = self.clone();
        let client = client.clone();
        tokio::spawn(async move { source.produce(client, request, tx).await });
        futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        })
        .boxed()
    }
}

fn sync_error(request: &HistoryRequest, e: ParquetHistoryError) -> SyncError {
    match e {
        ParquetHistoryError::Client(e) => SyncError::Client(e),
        other => SyncError::protocol(
            format!(
                "exported history of {}/{}/{}",
                request.entity, request.project, request.run
            ),
            other.to_string(),
        ),
    }
}

impl ParquetHistory {
    async fn produce(
        self,
        client: Client,
        request: HistoryRequest,
        tx: mpsc::Sender<Result<HistoryBatch>>,
    ) {
        let prefetched = request.exports.clone();
        let listing = match prefetched {
            Some(listing) => listing,
            None => {
                match ExportListing::fetch(&client, &request.entity, &request.project, &request.run)
                    .await
                {
                    Ok(listing) => listing,
                    Err(e) => {
                        let _ = tx.send(Err(sync_error(&request, e))).await;
                        return;
                    }
                }
            }
        };
        if !listing.has_exports() {
            forward(self.paged.fetch(&client, request), &tx).await;
            return;
        }
        let read = ExportRead {
            entity: request.entity.clone(),
            project: request.project.clone(),
            run: request.run.clone(),
            listing: listing.clone(),
            from_step: request.from_step,
            until_step: request.last_step.saturating_add(1),
        };
        let mut exported = read_exported(&client, &read, &self.reader);
        let mut last_exported: Option<i64> = None;
        while let Some(item) = exported.next().await {
            match item {
                Ok(batch) => {
                    last_exported = batch.rows.last().map(|(step, _)| *step).or(last_exported);
                    if tx
                        .send(Ok(HistoryBatch { rows: batch.rows }))
                        .await
                        .is_err()
                    {
                        return; // The consumer stopped.
                    }
                }
                Err(e) if last_exported.is_none() && e.is_unreadable_export() => {
                    tracing::warn!(
                        run = %format!("{}/{}/{}", request.entity, request.project, request.run),
                        error = %e,
                        "exported history is unreadable; paging the live API instead"
                    );
                    forward(self.paged.fetch(&client, request), &tx).await;
                    return;
                }
                Err(e) => {
                    let _ = tx.send(Err(sync_error(&request, e))).await;
                    return;
                }
            }
        }
        let tail_from = listing.live_tail_from(request.from_step, last_exported);
        if tail_from <= request.last_step {
            let tail = HistoryRequest {
                from_step: tail_from,
                expected_rows: listing.min_live_step.map(|_| listing.live_rows as u64),
                ..request
            };
            forward(self.paged.fetch(&client, tail), &tx).await;
        }
    }
}

async fn forward(
    mut stream: BoxStream<'static, Result<HistoryBatch>>,
    tx: &mpsc::Sender<Result<HistoryBatch>>,
) {
    while let Some(item) = stream.next().await {
        let failed = item.is_err();
        if tx.send(item).await.is_err() || failed {
            return;
        }
    }
}
