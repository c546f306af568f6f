//! Where history rows come from: the [`HistorySource`] seam and its paged implementation.
//!
//! The engine asks a source for the rows of one run from a step on ([`HistoryRequest`]) and
//! receives ascending batches ([`HistoryBatch`]); it neither knows nor cares how they were
//! fetched. [`PagedHistory`] pages `history(minStep, maxStep, samples)` exactly as wandb-core's
//! `scan_history` does, with `samples = maxStep - minStep` (never downsampled).
//!
//! **The seam for parquet exports.** W&B compacts finished runs into parquet files
//! (`parquetHistory { parquetUrls liveData }`). A parquet source implements [`HistorySource`]:
//! it reads the exported files for steps `≥ from_step` below the first live step, then hands
//! the live tail to a [`PagedHistory`] (`HistoryRequest { from_step: max(from_step,
//! min_live_step), .. }`) and chains both streams. Plug it in with
//! [`SyncEngine::with_history_source`](super::SyncEngine::with_history_source); nothing else in
//! the engine changes. Rows must be W&B-dialect JSON text, one object per row, as `history`
//! returns them (the mirror stores that text verbatim for `history.jsonl`).

use futures::StreamExt;
use futures::stream::BoxStream;

use super::error::{Result, SyncError};
use crate::client::Client;

/// The rows one run needs: steps `from_step ..= last_step`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryRequest {
    /// Entity.
    pub entity: String,
    /// Project.
    pub project: String,
    /// Run id (`name`).
    pub run: String,
    /// First step wanted: one past the last step already mirrored (0 for a new run).
    pub from_step: i64,
    /// `historyKeys.lastStep` when the job started. Later rows are left for the next sync, so a
    /// live run's scan always terminates.
    pub last_step: i64,
    /// Rows expected in the range (`historyLineCount` minus mirrored rows), when known; sizes
    /// the step windows.
    pub expected_rows: Option<u64>,
    /// The run is in a terminal state (finished, failed, crashed, killed). W&B exports history
    /// as parquet only for such runs, so sources skip the export lookup otherwise: for a live
    /// run it would cost a call and a `liveData` list of every step.
    pub run_finished: bool,
    /// The run's parquet export listing, when a batched read already fetched it (sources
    /// that use exports skip their own `parquetHistory` call).
    pub exports: Option<crate::parquet_history::ExportListing>,
}

impl HistoryRequest {
    fn what(&self) -> String {
        format!("history of {}/{}/{}", self.entity, self.project, self.run)
    }
}

/// Consecutive rows of one run, ascending by step, each `(step, W&B JSON text)`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HistoryBatch {
    /// The rows.
    pub rows: Vec<(i64, String)>,
}

/// A way of fetching history rows (see the module docs).
pub trait HistorySource: Send + Sync + std::fmt::Debug {
    /// A short name for logs (`paged`, `parquet`).
    fn name(&self) -> &'static str;

    /// Streams the rows of `request` in ascending step order. The stream must end after the
    /// last row `≤ request.last_step`; an error ends it. Implementations should fetch ahead
    /// boundedly (memory must not grow with the run's length).
    fn fetch(
        &self,
        client: &Client,
        request: HistoryRequest,
    ) -> BoxStream<'static, Result<HistoryBatch>>;
}

/// Pages `history(minStep, maxStep, samples = maxStep - minStep)` with step windows sized from
/// the run's row density and adapted page by page, fetching `prefetch` pages ahead.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PagedHistory {
    /// Target rows per request.
    pub page_rows: u32,
    /// Largest step window per request.
    pub max_window: i64,
    /// Pages fetched ahead of the consumer.
    pub prefetch: usize,
}

impl Default for PagedHistory {
    fn default() -> Self {
        let options = super::SyncOptions::default();
        PagedHistory {
            page_rows: options.history_page_rows,
            max_window: options.max_history_window,
            prefetch: options.history_prefetch,
        }
    }
}

impl HistorySource for PagedHistory {
    fn name(&self) -> &'static str {
        "paged"
    }

    fn fetch(
        &self,
        client: &Client,
        request: HistoryRequest,
    ) -> BoxStream<'static, Result<HistoryBatch>> {
        let (tx, rx) = tokio::sync::mpsc::channel(self.prefetch.max(1));
        let pager = self.clone();
        let client = client.clone();
        tokio::spawn(async move { pager.produce(client, request, tx).await });
        futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        })
        .boxed()
    }
}

impl PagedHistory {
    /// The first window: enough steps for `page_rows` rows at the density the run's counts
    /// promise (uniform spacing assumed), else `page_rows` steps.
    fn initial_window(&self, request: &HistoryRequest) -> i64 {
        let target = i64::from(self.page_rows.max(1));
        let steps = request
            .last_step
            .saturating_sub(request.from_step)
            .saturating_add(1)
            .max(1);
        let window = match request.expected_rows {
            Some(rows) if rows > 0 => {
                let per_row = steps as f64 / rows as f64;
                (per_row * target as f64).ceil() as i64
            }
            _ => target,
        };
        window.clamp(1, self.max_window.max(1))
    }

    /// The next window after a page of `rows` rows: scaled towards the target, by at most 4×
    /// either way per page, so one uneven region cannot swing it wildly.
    fn next_window(&self, window: i64, rows: usize) -> i64 {
        let target = f64::from(self.page_rows.max(1));
        let factor = if rows == 0 {
            4.0
        } else {
            (target / rows as f64).clamp(0.25, 4.0)
        };
        ((window as f64 * factor).round() as i64).clamp(1, self.max_window.max(1))
    }

    async fn produce(
        self,
        client: Client,
        request: HistoryRequest,
        tx: tokio::sync::mpsc::Sender<Result<HistoryBatch>>,
    ) {
        let mut next = request.from_step;
        let mut window = self.initial_window(&request);
        // i32 `samples`: the server's `Int`.
        let window_cap = i64::from(i32::MAX);
        while next <= request.last_step {
            let hi = next
                .saturating_add(window.min(window_cap))
                .min(request.last_step.saturating_add(1));
            let page = client
                .history_page(&request.entity, &request.project, &request.run, next, hi)
                .await
                .map_err(SyncError::from)
                .and_then(|rows| page_rows(&request, rows, next, hi));
            let batch = match page {
                Ok(batch) => batch,
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            };
            window = self.next_window(window, batch.rows.len());
            next = hi;
            // An empty page does not end the scan: steps may have gaps.
            if !batch.rows.is_empty() && tx.send(Ok(batch)).await.is_err() {
                return; // The consumer stopped.
            }
        }
    }
}

/// Turns one page's texts into `(step, text)` rows, checking that every step lies in
/// `[lo, hi)` and ordering them.
pub(crate) fn page_rows(
    request: &HistoryRequest,
    texts: Vec<String>,
    lo: i64,
    hi: i64,
) -> Result<HistoryBatch> {
    let mut rows = Vec::with_capacity(texts.len());
    let mut sorted = true;
    for text in texts {
        let step = step_of(&text).ok_or_else(|| {
            SyncError::protocol(
                request.what(),
                format!(
                    "a row of the page {lo}..{hi} has no integer `_step`: {}",
                    preview(&text)
                ),
            )
        })?;
        if step < lo || step >= hi {
            return Err(SyncError::protocol(
                request.what(),
                format!("the page {lo}..{hi} returned a row with `_step` {step}"),
            ));
        }
        if rows
            .last()
            .is_some_and(|(prev, _): &(i64, String)| *prev >= step)
        {
            sorted = false;
        }
        rows.push((step, text));
    }
    if !sorted {
        rows.sort_by_key(|(step, _)| *step);
    }
    Ok(HistoryBatch { rows })
}

fn preview(text: &str) -> String {
    let mut shown: String = text.chars().take(120).collect();
    if shown.len() < text.len() {
        shown.push('…');
    }
    shown
}

/// The `_step` of a W&B history row: read from the `{"_step":N,` prefix W&B writes, else by
/// parsing the row (should a key repeat, the last one wins, as in Python's `json.loads`).
/// `None` when the row has no integer `_step`.
pub fn step_of(text: &str) -> Option<i64> {
    if let Some(rest) = text.strip_prefix("{\"_step\":") {
        let rest = rest.trim_start();
        let end = rest
            .bytes()
            .position(|b| !(b.is_ascii_digit() || b == b'-'))
            .unwrap_or(rest.len());
        let after = rest[end..].trim_start();
        // W&B rows are Python dicts serialised by `json.dumps`: keys are unique, so the
        // leading `_step` is the row's step (no second pass over the row to look for another).
        if end > 0 && (after.starts_with(',') || after.starts_with('}')) {
            return rest[..end].parse().ok();
        }
    }
    let value = crate::values::parse(text.as_bytes()).ok()?;
    let jiter::JsonValue::Object(fields) = value else {
        return None;
    };
    match fields.iter().rev().find(|(k, _)| k == "_step")?.1 {
        jiter::JsonValue::Int(i) => Some(i),
        jiter::JsonValue::Float(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Some(f as i64),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_read_fast_or_parsed() {
        assert_eq!(step_of(r#"{"_step":12,"loss":NaN}"#), Some(12));
        assert_eq!(step_of(r#"{"_step": 7}"#), Some(7));
        assert_eq!(step_of(r#"{"loss":1,"_step":3}"#), Some(3));
        assert_eq!(step_of(r#"{ "_step" : 4.0 , "a": Infinity}"#), Some(4));
        assert_eq!(step_of(r#"{"a":0,"_step":1,"_step":9}"#), Some(9));
        assert_eq!(step_of(r#"{"loss":1}"#), None);
        assert_eq!(step_of(r#"{"_step":"x"}"#), None);
        assert_eq!(step_of("not json"), None);
    }

    fn request(from: i64, last: i64, expected: Option<u64>) -> HistoryRequest {
        HistoryRequest {
            exports: None,
            entity: "e".into(),
            project: "p".into(),
            run: "r".into(),
            from_step: from,
            last_step: last,
            expected_rows: expected,
            run_finished: true,
        }
    }

    #[test]
    fn windows_follow_density() {
        let pager = PagedHistory {
            page_rows: 1000,
            max_window: 1_000_000,
            prefetch: 1,
        };
        // Dense run: one row per step.
        assert_eq!(
            pager.initial_window(&request(0, 99_999, Some(100_000))),
            1000
        );
        // One row every 100 steps.
        assert_eq!(
            pager.initial_window(&request(0, 999_999, Some(10_000))),
            100_000
        );
        // Unknown density: the target; capped by max_window.
        assert_eq!(pager.initial_window(&request(0, 10, None)), 1000);
        assert_eq!(
            pager.initial_window(&request(0, i64::MAX - 1, Some(1))),
            1_000_000
        );
        // Empty pages grow the window 4×; overfull pages shrink it, at most 4× per page.
        assert_eq!(pager.next_window(1000, 0), 4000);
        assert_eq!(pager.next_window(1000, 2000), 500);
        assert_eq!(pager.next_window(1000, 100_000), 250);
        assert_eq!(pager.next_window(1, 5000), 1);
        assert_eq!(pager.next_window(900_000, 0), 1_000_000);
    }

    #[test]
    fn pages_are_checked_and_ordered() {
        let req = request(0, 100, None);
        let rows = vec![r#"{"_step":5}"#.to_owned(), r#"{"_step":3}"#.to_owned()];
        let batch = page_rows(&req, rows, 0, 10).unwrap();
        assert_eq!(
            batch.rows.iter().map(|r| r.0).collect::<Vec<_>>(),
            vec![3, 5]
        );
        let err = page_rows(&req, vec![r#"{"_step":10}"#.to_owned()], 0, 10).unwrap_err();
        assert!(err.to_string().contains("`_step` 10"), "{err}");
        let err = page_rows(&req, vec![r#"{"a":1}"#.to_owned()], 0, 10).unwrap_err();
        assert!(err.to_string().contains("no integer `_step`"), "{err}");
    }
}
