//! Run history: keys, full (never sampled) pages, system-metric events and parquet exports.

use serde::Deserialize;
use serde_json::json;

use super::Client;
use super::error::{Error, Result};
use super::graphql;
use super::types::{HistoryKeys, ParquetHistory, json_text, json_text_list, last_step_of};

#[derive(Deserialize)]
struct Data<R> {
    project: Option<ProjectRun<R>>,
}

#[derive(Deserialize)]
struct ProjectRun<R> {
    run: Option<R>,
}

impl<R> Data<R> {
    fn run(self, op: &str, entity: &str, project: &str, run: &str) -> Result<R> {
        self.project
            .and_then(|p| p.run)
            .ok_or_else(|| Error::not_found(op, format!("run {entity}/{project}/{run}")))
    }
}

impl Client {
    /// `RunHistoryKeys`: the run's `historyKeys` (raw JSON text) and `lastStep`.
    /// `Ok(None)` when the run has no history keys; [`Error::NotFound`] when there is no run.
    pub async fn history_keys(
        &self,
        entity: &str,
        project: &str,
        run: &str,
    ) -> Result<Option<HistoryKeys>> {
        #[derive(Deserialize)]
        struct Keys {
            #[serde(rename = "historyKeys", default, deserialize_with = "json_text")]
            history_keys: Option<String>,
        }
        let op = graphql::RUN_HISTORY_KEYS;
        let vars = json!({"entity": entity, "project": project, "name": run});
        let data: Data<Keys> = self.gql(op.name, op.document(), vars).await?;
        let keys = data.run(op.name, entity, project, run)?;
        Ok(keys.history_keys.map(|raw| HistoryKeys {
            last_step: last_step_of(&raw),
            raw,
        }))
    }

    /// `HistoryPage`: every row with `min_step <= _step < max_step`, each as W&B-dialect JSON
    /// text, in server order.
    ///
    /// `samples` is **always** `max_step - min_step`, exactly as wandb-core's `scan_history`
    /// does: steps are unique integers, so the window can never hold more rows than that and
    /// the server never downsamples (it downsamples at random when asked for fewer).
    pub async fn history_page(
        &self,
        entity: &str,
        project: &str,
        run: &str,
        min_step: i64,
        max_step: i64,
    ) -> Result<Vec<String>> {
        #[derive(Deserialize)]
        struct Rows {
            #[serde(default, deserialize_with = "json_text_list")]
            history: Vec<String>,
        }
        let op = graphql::HISTORY_PAGE;
        if max_step <= min_step {
            return Ok(Vec::new());
        }
        let samples = i32::try_from(max_step - min_step).map_err(|_| {
            Error::config(format!(
                "{}: step window {min_step}..{max_step} is wider than the server's Int",
                op.name
            ))
        })?;
        let vars = json!({
            "entity": entity,
            "project": project,
            "run": run,
            "minStep": min_step,
            "maxStep": max_step,
            "pageSize": samples,
        });
        let data: Data<Rows> = self.gql(op.name, op.document(), vars).await?;
        Ok(data.run(op.name, entity, project, run)?.history)
    }

    /// `RunFullHistory` with `events(samples)`: system-metric rows as W&B-dialect JSON text.
    ///
    /// The server returns at most `samples` rows and downsamples when the stream is longer;
    /// there is no step window for events, so pass a bound above the expected row count
    /// (e.g. a few times the run's duration in 15-second intervals).
    pub async fn events(
        &self,
        entity: &str,
        project: &str,
        run: &str,
        samples: u32,
    ) -> Result<Vec<String>> {
        #[derive(Deserialize)]
        struct Rows {
            #[serde(default, deserialize_with = "json_text_list")]
            events: Vec<String>,
        }
        let op = graphql::RUN_EVENTS;
        let samples = i32::try_from(samples).unwrap_or(i32::MAX);
        let vars = json!({"entity": entity, "project": project, "name": run, "samples": samples});
        let data: Data<Rows> = self.gql(op.name, op.document(), vars).await?;
        Ok(data.run(op.name, entity, project, run)?.events)
    }

    /// `RunParquetHistory`: exported parquet URLs (signed; fetch with
    /// [`FileLocation::Direct`](super::FileLocation)) and the live (not yet exported) rows
    /// projected to `live_keys` (the SDK passes `["_step"]`).
    pub async fn parquet_history(
        &self,
        entity: &str,
        project: &str,
        run: &str,
        live_keys: &[&str],
    ) -> Result<ParquetHistory> {
        #[derive(Deserialize)]
        struct Parquet {
            #[serde(rename = "parquetHistory")]
            parquet_history: Option<ParquetHistory>,
        }
        let op = graphql::RUN_PARQUET_HISTORY;
        let vars = json!({
            "entity": entity,
            "project": project,
            "runName": run,
            "liveKeys": live_keys,
        });
        let data: Data<Parquet> = self.gql(op.name, op.document(), vars).await?;
        Ok(data
            .run(op.name, entity, project, run)?
            .parquet_history
            .unwrap_or(ParquetHistory {
                parquet_urls: Vec::new(),
                live_data: Vec::new(),
            }))
    }
}
