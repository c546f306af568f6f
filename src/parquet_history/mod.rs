//! Reading a run's history from W&B's parquet exports ("history compaction").
//!
//! W&B writes the history of finished runs into parquet files and lists them, as signed URLs,
//! in `parquetHistory { parquetUrls liveData }`, with `liveData` holding the rows not exported
//! yet. Reading those files costs one request per file instead of one per page of rows, so a
//! long finished run is fetched in a handful of requests. This module:
//!
//! - asks for the listing ([`ExportListing::fetch`], one GraphQL call, `liveKeys: ["_step"]`
//!   exactly like wandb-core: only the live *steps* are needed, the live rows themselves are
//!   then paged with `history(minStep, maxStep)`, which — unlike the `JSON`-typed `liveData` —
//!   keeps NaN and ±Infinity as numbers);
//! - streams the exported rows of a step window, ascending and without duplicates
//!   ([`read_exported`]), as W&B-dialect JSON text ([`render`] states the rules);
//! - tells where the live tail starts ([`ExportListing::live_tail_from`]).
//!
//! The sync engine combines both halves in `sync::parquet` (exports, then the live tail paged).
//!
//! Memory stays bounded whatever the run's length: files go to temporary files on disk, and
//! rows are decoded one record batch at a time (see [`exports`]).

mod error;
mod exports;
pub mod gofloat;
pub mod render;

use std::path::PathBuf;

use futures::StreamExt;
use futures::stream::BoxStream;

pub use error::ParquetHistoryError;
pub use render::{RenderStats, RowRenderer};

use crate::client::Client;

/// How exports are read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReaderOptions {
    /// Rows per decoded (and emitted) batch. Default 4,096: with the batches queued behind it
    /// (one in the reader's channel, the consumer's own buffers) a run in flight holds a few
    /// MiB of rendered rows, like a paged run.
    pub batch_rows: usize,
    /// Files downloaded at once. Default 2.
    pub download_concurrency: usize,
    /// Where downloads are kept while they are read (default: the system temp directory).
    pub temp_dir: Option<PathBuf>,
}

impl Default for ReaderOptions {
    fn default() -> Self {
        ReaderOptions {
            batch_rows: 4096,
            download_concurrency: 2,
            temp_dir: None,
        }
    }
}

/// Consecutive history rows, ascending by step: `(step, W&B-dialect JSON text)`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RowBatch {
    /// The rows.
    pub rows: Vec<(i64, String)>,
}

/// What `parquetHistory` says about a run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExportListing {
    /// Signed URLs of the exported files (in no particular order).
    pub urls: Vec<String>,
    /// The smallest step among the rows not exported yet (`None`: every row is exported, or
    /// nothing is).
    pub min_live_step: Option<i64>,
    /// How many live rows were listed.
    pub live_rows: usize,
}

impl ExportListing {
    /// `RunParquetHistory` with `liveKeys: ["_step"]`.
    pub async fn fetch(
        client: &Client,
        entity: &str,
        project: &str,
        run: &str,
    ) -> Result<ExportListing, ParquetHistoryError> {
        let answer = client
            .parquet_history(entity, project, run, &["_step"])
            .await?;
        Ok(Self::from_answer(answer))
    }

    /// The listing a `parquetHistory(liveKeys: ["_step"])` answer gives (a batched read's).
    pub fn from_answer(answer: crate::client::ParquetHistory) -> ExportListing {
        let mut min_live_step = None::<i64>;
        for row in &answer.live_data {
            // Each live row is `{"_step": N}` (a number; the server may send a float).
            if let Some(step) = live_step(row) {
                min_live_step = Some(min_live_step.map_or(step, |m| m.min(step)));
            }
        }
        ExportListing {
            urls: answer.parquet_urls,
            min_live_step,
            live_rows: answer.live_data.len(),
        }
    }

    /// Whether any file is exported.
    pub fn has_exports(&self) -> bool {
        !self.urls.is_empty()
    }

    /// The first step to page live: the smallest live step when there are live rows, else one
    /// past the last exported step the caller saw (`None` if it saw none: start at `from`).
    pub fn live_tail_from(&self, from: i64, last_exported: Option<i64>) -> i64 {
        let after_exports = last_exported.map_or(from, |s| s.saturating_add(1));
        match self.min_live_step {
            Some(live) => live.max(from),
            None => after_exports.max(from),
        }
    }
}

fn live_step(row: &str) -> Option<i64> {
    let value = crate::values::parse(row.as_bytes()).ok()?;
    let jiter::JsonValue::Object(fields) = value else {
        return None;
    };
    match fields.iter().rev().find(|(k, _)| k == "_step")?.1 {
        jiter::JsonValue::Int(i) => Some(i),
        jiter::JsonValue::Float(f) if f.is_finite() => Some(f.trunc() as i64),
        _ => None,
    }
}

/// The URL without its query string: identifies a file across listings (signatures change,
/// paths do not).
pub fn url_key(url: &str) -> &str {
    url.split(['?', '#']).next().unwrap_or(url)
}

/// Which exported rows to read: those of `run` with `from_step <= _step < until_step`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportRead {
    /// Entity.
    pub entity: String,
    /// Project.
    pub project: String,
    /// Run id.
    pub run: String,
    /// The run's listing ([`ExportListing::fetch`]).
    pub listing: ExportListing,
    /// First step wanted.
    pub from_step: i64,
    /// One past the last step wanted.
    pub until_step: i64,
}

/// Streams the exported rows of `read`, ascending by step and without duplicate steps, in
/// batches of at most `options.batch_rows` rows. Rows at or above the listing's first live step
/// are never returned (the live API is authoritative for them), whatever `until_step` says.
///
/// Errors for which [`ParquetHistoryError::is_unreadable_export`] holds arrive before any row.
pub fn read_exported(
    client: &Client,
    read: &ExportRead,
    options: &ReaderOptions,
) -> BoxStream<'static, Result<RowBatch, ParquetHistoryError>> {
    let mut read = read.clone();
    if let Some(live) = read.listing.min_live_step {
        read.until_step = read.until_step.min(live);
    }
    if read.from_step >= read.until_step {
        // Every exported step lies below the first live one: nothing to download.
        return futures::stream::empty().boxed();
    }
    exports::stream(client.clone(), read, options.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_steps_and_tail_start() {
        assert_eq!(live_step(r#"{"_step":7}"#), Some(7));
        assert_eq!(live_step(r#"{"_step":7.0}"#), Some(7));
        assert_eq!(live_step(r#"{"loss":1}"#), None);
        let listing = ExportListing {
            urls: vec!["http://x/a?sig=1".into()],
            min_live_step: Some(100),
            live_rows: 3,
        };
        assert_eq!(listing.live_tail_from(0, Some(99)), 100);
        assert_eq!(listing.live_tail_from(150, Some(99)), 150);
        let full = ExportListing {
            min_live_step: None,
            ..listing
        };
        assert_eq!(full.live_tail_from(0, Some(99)), 100);
        assert_eq!(full.live_tail_from(0, None), 0);
        assert_eq!(
            url_key("http://h/blob/k/n.parquet?exp=1&sig=2"),
            "http://h/blob/k/n.parquet"
        );
    }
}
