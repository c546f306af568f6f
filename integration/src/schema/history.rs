//! History fields of `Run`: `history`, `events`, `sampledHistory`, `parquetHistory`.
//!
//! `history`/`events` rows are `JSONString`s (bare `NaN` allowed) served through the splice
//! fast path; `sampledHistory` and `parquetHistory.liveData` are `JSON`, so non-finite values
//! become `"NaN"`/`"Infinity"`/`"-Infinity"` strings there (PROTOCOL §5.4).

use std::sync::Arc;

use async_graphql::{Context, Error, Object, Result, Value};

use super::scalars::{Int64, Json, JsonString};
use super::splice::{SpliceJob, SpliceJobs, SplicedJsonList, SplicedJsonStrings, Stream};
use super::{ResponseHints, app};
use crate::json;
use crate::state::RunHandle;
use crate::state::history::sample_positions;

/// Default `samples` when a client gives none (SaaS's default).
const DEFAULT_SAMPLES: u64 = 500;

/// History fields of `Run`.
pub struct RunHistoryFields(pub RunHandle);

impl RunHistoryFields {
    /// Fails (and makes the response a 502) when the run is poisoned.
    fn check_poisoned(&self, ctx: &Context<'_>) -> Result<()> {
        if app(ctx).faults.is_poisoned(&self.0.key) {
            if let Some(hints) = ctx.data_opt::<Arc<ResponseHints>>() {
                hints.force_status(502);
            }
            return Err(Error::new(format!(
                "history of run {} is unavailable (poisoned)",
                self.0.key
            )));
        }
        Ok(())
    }

    fn splice(&self, ctx: &Context<'_>, job: SpliceJob) -> Result<String> {
        let jobs = ctx
            .data_opt::<Arc<SpliceJobs>>()
            .ok_or_else(|| Error::new("internal: no splice context"))?;
        Ok(jobs.push(job))
    }
}

/// One `sampledHistory` spec.
#[derive(Debug, serde::Deserialize)]
struct SampleSpec {
    #[serde(default)]
    keys: Vec<String>,
    samples: Option<f64>,
    #[serde(rename = "minStep")]
    min_step: Option<f64>,
    #[serde(rename = "maxStep")]
    max_step: Option<f64>,
}

#[Object]
impl RunHistoryFields {
    /// Rows with `minStep <= _step < maxStep`, at most `samples` of them (evenly spaced, first
    /// and last kept), each a JSON object string.
    async fn history(
        &self,
        ctx: &Context<'_>,
        samples: Option<i32>,
        min_step: Option<Int64>,
        max_step: Option<Int64>,
    ) -> Result<Option<SplicedJsonStrings>> {
        self.check_poisoned(ctx)?;
        let sentinel = self.splice(
            ctx,
            SpliceJob::Lines {
                run: Arc::clone(&self.0),
                stream: Stream::History,
                min_step: min_step.map(|s| s.0),
                max_step: max_step.map(|s| s.0),
                samples: samples.map_or(DEFAULT_SAMPLES, |s| s.max(0) as u64),
            },
        )?;
        Ok(Some(SplicedJsonStrings(sentinel)))
    }

    /// System-metric rows, at most `samples`.
    async fn events(
        &self,
        ctx: &Context<'_>,
        samples: Option<i32>,
    ) -> Result<Option<SplicedJsonStrings>> {
        let sentinel = self.splice(
            ctx,
            SpliceJob::Lines {
                run: Arc::clone(&self.0),
                stream: Stream::Events,
                min_step: None,
                max_step: None,
                samples: samples.map_or(DEFAULT_SAMPLES, |s| s.max(0) as u64),
            },
        )?;
        Ok(Some(SplicedJsonStrings(sentinel)))
    }

    /// One list of rows per spec `{"keys": [...], "samples": N, "minStep": a, "maxStep": b}`
    /// (`maxStep` inclusive, as on SaaS). Only rows holding every key are returned, projected to
    /// the keys.
    async fn sampled_history(
        &self,
        ctx: &Context<'_>,
        specs: Vec<JsonString>,
    ) -> Result<Vec<Option<Json>>> {
        self.check_poisoned(ctx)?;
        let rec = self.0.record.read();
        let log = &rec.history;
        let mut out = Vec::with_capacity(specs.len());
        for spec in specs {
            let spec: SampleSpec = serde_json::from_str(&spec.0)
                .map_err(|e| Error::new(format!("invalid sampledHistory spec: {e}")))?;
            let min = spec.min_step.map(|s| s as i64);
            let max = spec.max_step.map(|s| (s as i64).saturating_add(1));
            let candidates = log.select(min, max);
            let mut rows = Vec::new();
            for i in 0..candidates.len() {
                let value = json::parse_lenient_or_null(&log.raw(log.line_ref(&candidates, i)));
                let mut fields = Vec::with_capacity(spec.keys.len());
                let mut complete = true;
                for key in &spec.keys {
                    if fields.iter().any(|(k, _): &(String, Value)| k == key) {
                        continue;
                    }
                    match json::lookup_path(&value, key) {
                        Some(v) => fields.push((key.clone(), v.clone())),
                        None => {
                            complete = false;
                            break;
                        }
                    }
                }
                if complete {
                    rows.push(json::object(fields));
                }
            }
            let samples = spec.samples.map_or(DEFAULT_SAMPLES, |s| s.max(0.0) as u64);
            let picked: Vec<Value> = sample_positions(rows.len() as u64, samples)
                .map(|p| rows[p as usize].clone())
                .collect();
            out.push(Some(Json(Value::List(picked))));
        }
        Ok(out)
    }

    /// Exported history (`parquetUrls`) and the rows not yet exported (`liveData`, projected to
    /// `liveKeys`). Without an exports provider every row is live.
    async fn parquet_history(
        &self,
        ctx: &Context<'_>,
        live_keys: Vec<String>,
    ) -> Result<ParquetHistory> {
        self.check_poisoned(ctx)?;
        let app = app(ctx);
        let exports = app.history_exports.read().clone();
        let (urls, min_live_step) = exports
            .and_then(|e| e.exports(app, &self.0))
            .unwrap_or((Vec::new(), i64::MIN));
        let sentinel = self.splice(
            ctx,
            SpliceJob::LiveData {
                run: Arc::clone(&self.0),
                min_step: min_live_step,
                keys: live_keys,
            },
        )?;
        Ok(ParquetHistory {
            parquet_urls: urls,
            live_data: SplicedJsonList(sentinel),
        })
    }
}

/// `ParquetHistory`.
pub struct ParquetHistory {
    parquet_urls: Vec<String>,
    live_data: SplicedJsonList,
}

#[Object]
impl ParquetHistory {
    /// Signed URLs of exported parquet files.
    async fn parquet_urls(&self) -> &[String] {
        &self.parquet_urls
    }

    /// Live rows (objects with at least `_step`).
    async fn live_data(&self) -> &SplicedJsonList {
        &self.live_data
    }
}
