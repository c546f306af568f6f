//! Downloading a run's export files and decoding them into ordered rows.
//!
//! 1. Each signed URL is downloaded whole (one unauthenticated `GET`, resumed with a `Range`
//!    if the body breaks) into a temporary file, a few files at a time. An expired URL (403)
//!    makes the reader fetch the listing again and pick the same file by its URL path (W&B does
//!    not keep the URL order stable between calls).
//! 2. A blocking thread checks every file's `_step` column first (only that column is decoded):
//!    steps must rise within a file and files must not interleave. Any violation is reported
//!    *before* a single row is returned, so the caller can page the live API instead.
//! 3. Files are then read in step order, one record batch at a time, rendered
//!    ([`super::render`]) and sent through a channel of one batch: memory holds one decoded
//!    batch, the batch in the channel and the parquet reader's current pages — never a file,
//!    let alone a run. Temporary files are deleted when the stream ends or is dropped.

use std::fs::File;
use std::path::Path;

use futures::StreamExt;
use futures::stream::{self, BoxStream};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use super::error::ParquetHistoryError;
use super::render::{RenderStats, RowRenderer, STEP_COLUMN, step_at};
use super::{ExportListing, ExportRead as ReadPlan, ReaderOptions, RowBatch, url_key};
use crate::client::{Client, Error as ClientError, FileLocation};

type Result<T, E = ParquetHistoryError> = std::result::Result<T, E>;

/// A downloaded file.
struct Local {
    key: String,
    file: tempfile::NamedTempFile,
}

/// Streams the exported rows of `plan` (see the module docs).
pub(super) fn stream(
    client: Client,
    plan: ReadPlan,
    options: ReaderOptions,
) -> BoxStream<'static, Result<RowBatch>> {
    let (tx, rx) = mpsc::channel::<Result<RowBatch>>(1);
    tokio::spawn(async move {
        let files = match download_all(&client, &plan, &options).await {
            Ok(files) => files,
            Err(e) => {
                let _ = tx.send(Err(e)).await;
                return;
            }
        };
        let sender = tx.clone();
        let decoded =
            tokio::task::spawn_blocking(move || decode(files, &plan, &options, &sender)).await;
        match decoded {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                let _ = tx.send(Err(e)).await;
            }
            Err(join) => {
                let _ = tx
                    .send(Err(ParquetHistoryError::Decoder(join.to_string())))
                    .await;
            }
        }
    });
    stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    })
    .boxed()
}

async fn download_all(
    client: &Client,
    plan: &ReadPlan,
    options: &ReaderOptions,
) -> Result<Vec<Local>> {
    let dir = options.temp_dir.clone().unwrap_or_else(std::env::temp_dir);
    let urls = plan.listing.urls.clone();
    stream::iter(urls.into_iter().map(|url| {
        let dir = dir.clone();
        async move { download_one(client, plan, url, &dir).await }
    }))
    .buffered(options.download_concurrency.max(1))
    .collect::<Vec<_>>()
    .await
    .into_iter()
    .collect()
}

async fn download_one(client: &Client, plan: &ReadPlan, url: String, dir: &Path) -> Result<Local> {
    let key = url_key(&url).to_string();
    let io = |what: &str, source| ParquetHistoryError::Io {
        what: format!("{what} for {key}"),
        source,
    };
    let mut current = url;
    let mut refreshes = 0;
    loop {
        let temp = tempfile::Builder::new()
            .prefix("wandbfs-history-")
            .suffix(".parquet")
            .tempfile_in(dir)
            .map_err(|e| io("creating a temporary file", e))?;
        match fetch_into(client, &current, &temp).await {
            Ok(()) => return Ok(Local { key, file: temp }),
            Err(ParquetHistoryError::Client(ClientError::UrlExpired { .. })) if refreshes < 2 => {
                refreshes += 1;
                let fresh =
                    ExportListing::fetch(client, &plan.entity, &plan.project, &plan.run).await?;
                current = fresh
                    .urls
                    .into_iter()
                    .find(|u| url_key(u) == key)
                    .ok_or_else(|| ParquetHistoryError::ExportsChanged { url: key.clone() })?;
            }
            Err(e) => return Err(e),
        }
    }
}

async fn fetch_into(client: &Client, url: &str, temp: &tempfile::NamedTempFile) -> Result<()> {
    let location = FileLocation::Direct(url.to_string());
    let download = client.download(&location, None).await?;
    let io = |source| ParquetHistoryError::Io {
        what: format!("writing {}", url_key(url)),
        source,
    };
    let std_file = temp.reopen().map_err(io)?;
    let mut out = tokio::io::BufWriter::with_capacity(1 << 20, tokio::fs::File::from_std(std_file));
    let mut body = download.stream;
    while let Some(chunk) = body.next().await {
        out.write_all(&chunk?).await.map_err(io)?;
    }
    out.flush().await.map_err(io)?;
    Ok(())
}

/// One file's step range, found by decoding its `_step` column.
struct Checked {
    local: Local,
    rows: u64,
    min: i64,
    max: i64,
}

fn invalid(key: &str, reason: impl std::fmt::Display) -> ParquetHistoryError {
    ParquetHistoryError::InvalidFile {
        file: key.to_string(),
        reason: reason.to_string(),
    }
}

fn open(local: &Local) -> Result<ParquetRecordBatchReaderBuilder<File>> {
    let file = local
        .file
        .reopen()
        .map_err(|source| ParquetHistoryError::Io {
            what: format!("opening the download of {}", local.key),
            source,
        })?;
    ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| invalid(&local.key, e))
}

/// Decodes only `_step`: rows, range, and that steps never decrease.
fn check(local: Local, batch_rows: usize) -> Result<Option<Checked>> {
    let builder = open(&local)?;
    let step_index = builder
        .schema()
        .index_of(STEP_COLUMN)
        .map_err(|_| invalid(&local.key, "no `_step` column"))?;
    let mask = ProjectionMask::roots(builder.parquet_schema(), [step_index]);
    let reader = builder
        .with_projection(mask)
        .with_batch_size(batch_rows)
        .build()
        .map_err(|e| invalid(&local.key, e))?;
    let (mut rows, mut min, mut prev) = (0u64, None::<i64>, None::<i64>);
    for batch in reader {
        let batch = batch.map_err(|e| invalid(&local.key, e))?;
        let steps = batch.column(0);
        for row in 0..batch.num_rows() {
            let Some(step) = step_at(steps.as_ref(), row) else {
                continue;
            };
            if prev.is_some_and(|p| step < p) {
                return Err(ParquetHistoryError::Unordered(format!(
                    "{}: step {step} after step {}",
                    local.key,
                    prev.unwrap_or_default()
                )));
            }
            min.get_or_insert(step);
            prev = Some(step);
            rows += 1;
        }
    }
    Ok(match (min, prev) {
        (Some(min), Some(max)) => Some(Checked {
            local,
            rows,
            min,
            max,
        }),
        _ => None, // No rows with a step: nothing to read.
    })
}

fn decode(
    files: Vec<Local>,
    plan: &ReadPlan,
    options: &ReaderOptions,
    tx: &mpsc::Sender<Result<RowBatch>>,
) -> Result<()> {
    let batch_rows = options.batch_rows.max(1);
    let mut checked = Vec::with_capacity(files.len());
    for local in files {
        if let Some(c) = check(local, batch_rows)? {
            checked.push(c);
        }
    }
    checked.sort_by_key(|c| (c.min, c.max));
    for pair in checked.windows(2) {
        if pair[1].min < pair[0].max {
            return Err(ParquetHistoryError::Unordered(format!(
                "{} (steps {}..={}) and {} (steps {}..={}) overlap",
                pair[0].local.key,
                pair[0].min,
                pair[0].max,
                pair[1].local.key,
                pair[1].min,
                pair[1].max
            )));
        }
    }
    let expected: u64 = checked.iter().map(|c| c.rows).sum();
    tracing::debug!(
        run = plan.run,
        files = checked.len(),
        rows = expected,
        "reading exported history"
    );

    let mut last: Option<i64> = None;
    let mut stats = RenderStats::default();
    for file in checked {
        if file.max < plan.from_step || file.min >= plan.until_step {
            continue;
        }
        let builder = open(&file.local)?;
        let renderer =
            RowRenderer::new(builder.schema()).map_err(|e| invalid(&file.local.key, e))?;
        let reader = builder
            .with_batch_size(batch_rows)
            .build()
            .map_err(|e| invalid(&file.local.key, e))?;
        for batch in reader {
            let batch = batch.map_err(|e| invalid(&file.local.key, e))?;
            let mut rows = Vec::with_capacity(batch.num_rows());
            renderer.render(&batch, plan.from_step, &mut rows, &mut stats);
            // Strictly ascending, below the live boundary; equal steps (a duplicated row, or
            // the boundary row of two touching files) are kept once.
            rows.retain(|(step, _)| {
                let keep = *step < plan.until_step && last.is_none_or(|l| *step > l);
                if keep {
                    last = Some(*step);
                }
                keep
            });
            if rows.is_empty() {
                continue;
            }
            if tx.blocking_send(Ok(RowBatch { rows })).is_err() {
                return Ok(()); // The consumer stopped.
            }
        }
    }
    if stats != RenderStats::default() {
        tracing::warn!(
            run = plan.run,
            unsupported_cells = stats.unsupported_cells,
            rows_without_step = stats.rows_without_step,
            "exported history had values the reader skips"
        );
    }
    Ok(())
}
