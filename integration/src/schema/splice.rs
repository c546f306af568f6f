//! The history fast path ("splice").
//!
//! Large list fields (`history`, `events`, `parquetHistory.liveData`) still go through parsing,
//! validation and execution, but their resolvers return a sentinel string and record a
//! [`SpliceJob`]. After the response is serialised, each serialised sentinel is replaced by the
//! rendered list, written straight from storage (generated rows are formatted directly in their
//! escaped form). This avoids a future and a `String` clone per row in the executor and a second
//! escaping pass in serde_json, which is what makes ≥ 500k rows/s possible.
//!
//! Sentinels are `"\u0001SPLICE-<nonce>-<n>\u0001"`: a control character can never appear
//! unescaped in user data, and the per-process random nonce makes a collision with escaped user
//! text practically impossible.

use std::borrow::Cow;

use async_graphql::parser::types::Field;
use async_graphql::{ContextSelectionSet, OutputType, Positioned, ServerResult, Value, registry};
use parking_lot::Mutex;

use super::scalars::{Json, JsonString};
use crate::json;
use crate::state::RunHandle;
use crate::state::history::{HistoryLog, sample_positions};

/// Which line log of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// `history`.
    History,
    /// `events` (system metrics).
    Events,
}

/// Deferred rendering of a large list.
#[derive(Debug)]
pub enum SpliceJob {
    /// `[JSONString]`: the lines with `min_step <= _step < max_step`, downsampled to `samples`.
    Lines {
        /// The run.
        run: RunHandle,
        /// History or events.
        stream: Stream,
        /// Inclusive lower step bound.
        min_step: Option<i64>,
        /// Exclusive upper step bound.
        max_step: Option<i64>,
        /// Maximum rows.
        samples: u64,
    },
    /// `[JSON!]!`: rows with `_step >= min_step`, projected to `keys` (sentinels for NaN).
    LiveData {
        /// The run.
        run: RunHandle,
        /// First live step.
        min_step: i64,
        /// Keys to keep.
        keys: Vec<String>,
    },
}

/// Per-request splice jobs.
#[derive(Debug)]
pub struct SpliceJobs {
    prefix: String,
    jobs: Mutex<Vec<SpliceJob>>,
}

impl SpliceJobs {
    /// Jobs for one request, with the process's nonce.
    pub fn new(nonce: &str) -> Self {
        Self {
            prefix: format!("\u{1}SPLICE-{nonce}-"),
            jobs: Mutex::new(Vec::new()),
        }
    }

    /// Records a job and returns its sentinel.
    pub fn push(&self, job: SpliceJob) -> String {
        let mut jobs = self.jobs.lock();
        jobs.push(job);
        format!("{}{}\u{1}", self.prefix, jobs.len() - 1)
    }

    /// Whether any job was recorded.
    pub fn is_empty(&self) -> bool {
        self.jobs.lock().is_empty()
    }

    /// The rows the recorded jobs render: what a reply costs the server (the W&B profile's
    /// per-row cost and heavy-query limit, `crate::profile`).
    pub fn rows(&self) -> u64 {
        let jobs = self.jobs.lock();
        jobs.iter()
            .map(|job| match job {
                SpliceJob::Lines {
                    run,
                    stream,
                    min_step,
                    max_step,
                    samples,
                } => {
                    let rec = run.record.read();
                    let log = match stream {
                        Stream::History => &rec.history,
                        Stream::Events => &rec.events,
                    };
                    log.select(*min_step, *max_step).len().min(*samples)
                }
                SpliceJob::LiveData { run, min_step, .. } => {
                    let rec = run.record.read();
                    rec.history.select(Some(*min_step), None).len()
                }
            })
            .sum()
    }

    /// Replaces every serialised sentinel in `body` by its rendered list.
    pub fn apply(&self, body: Vec<u8>) -> Vec<u8> {
        let jobs = self.jobs.lock();
        if jobs.is_empty() {
            return body;
        }
        // serde_json writes U+0001 as `\u0001`.
        let needle = format!("\"{}", self.prefix.replace('\u{1}', "\\u0001"));
        let finder = memchr::memmem::Finder::new(needle.as_bytes());
        let mut out = Vec::with_capacity(body.len() + 64 * 1024);
        let mut pos = 0;
        while let Some(found) = finder.find(&body[pos..]) {
            let start = pos + found;
            let digits_start = start + needle.len();
            let digits_len = body[digits_start..]
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .count();
            let tail = b"\\u0001\"";
            let end = digits_start + digits_len;
            let index = std::str::from_utf8(&body[digits_start..end])
                .ok()
                .and_then(|s| s.parse::<usize>().ok());
            match (
                index.and_then(|i| jobs.get(i)),
                body[end..].starts_with(tail),
            ) {
                (Some(job), true) => {
                    out.extend_from_slice(&body[pos..start]);
                    render(job, &mut out);
                    pos = end + tail.len();
                }
                _ => {
                    out.extend_from_slice(&body[pos..digits_start]);
                    pos = digits_start;
                }
            }
        }
        out.extend_from_slice(&body[pos..]);
        out
    }
}

fn render(job: &SpliceJob, out: &mut Vec<u8>) {
    match job {
        SpliceJob::Lines {
            run,
            stream,
            min_step,
            max_step,
            samples,
        } => {
            let rec = run.record.read();
            let log = match stream {
                Stream::History => &rec.history,
                Stream::Events => &rec.events,
            };
            let candidates = log.select(*min_step, *max_step);
            out.reserve((candidates.len().min(*samples) as usize).saturating_mul(512));
            out.push(b'[');
            for (i, pos) in sample_positions(candidates.len(), *samples).enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.push(b'"');
                log.write_escaped(log.line_ref(&candidates, pos), out);
                out.push(b'"');
            }
            out.push(b']');
        }
        SpliceJob::LiveData {
            run,
            min_step,
            keys,
        } => {
            let rec = run.record.read();
            render_live_data(&rec.history, *min_step, keys, out);
        }
    }
}

/// Renders live rows projected to `keys` as a JSON array (non-finite values as sentinels).
pub fn render_live_data(log: &HistoryLog, min_step: i64, keys: &[String], out: &mut Vec<u8>) {
    let candidates = log.select(Some(min_step), None);
    let only_step = keys.iter().all(|k| k == "_step") && !keys.is_empty();
    out.push(b'[');
    for i in 0..candidates.len() {
        if i > 0 {
            out.push(b',');
        }
        let line = log.line_ref(&candidates, i);
        if only_step {
            out.extend_from_slice(b"{\"_step\":");
            out.extend_from_slice(itoa::Buffer::new().format(log.step_of(line)).as_bytes());
            out.push(b'}');
            continue;
        }
        let value = json::parse_lenient_or_null(&log.raw(line));
        let projected = json::object(
            keys.iter()
                .filter_map(|k| json::lookup_path(&value, k).map(|v| (k.clone(), v.clone()))),
        );
        if serde_json::to_writer(&mut *out, &projected).is_err() {
            out.extend_from_slice(b"{}");
        }
    }
    out.push(b']');
}

/// A `[JSONString]` field answered by a splice sentinel.
#[derive(Debug, Clone)]
pub struct SplicedJsonStrings(pub String);

impl OutputType for SplicedJsonStrings {
    fn type_name() -> Cow<'static, str> {
        Cow::Borrowed("[JSONString]")
    }

    fn qualified_type_name() -> String {
        "[JSONString]!".into()
    }

    fn create_type_info(registry: &mut registry::Registry) -> String {
        <Option<JsonString> as OutputType>::create_type_info(registry);
        Self::qualified_type_name()
    }

    async fn resolve(
        &self,
        _ctx: &ContextSelectionSet<'_>,
        _field: &Positioned<Field>,
    ) -> ServerResult<Value> {
        Ok(Value::String(self.0.clone()))
    }
}

/// A `[JSON!]!` field answered by a splice sentinel.
#[derive(Debug, Clone)]
pub struct SplicedJsonList(pub String);

impl OutputType for SplicedJsonList {
    fn type_name() -> Cow<'static, str> {
        Cow::Borrowed("[JSON!]")
    }

    fn qualified_type_name() -> String {
        "[JSON!]!".into()
    }

    fn create_type_info(registry: &mut registry::Registry) -> String {
        <Json as OutputType>::create_type_info(registry);
        Self::qualified_type_name()
    }

    async fn resolve(
        &self,
        _ctx: &ContextSelectionSet<'_>,
        _field: &Positioned<Field>,
    ) -> ServerResult<Value> {
        Ok(Value::String(self.0.clone()))
    }
}
