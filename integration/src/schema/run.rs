//! Metadata fields of `Run`, console `logLines`, and resume support fields.

use async_graphql::{Context, ID, Object, SimpleObject, Value};

use super::scalars::{DateTime, Json, JsonString};
use super::viewer::{User, run_user};
use super::{PageInfo, ProjectObject, ProjectRef, app};
use crate::json;
use crate::query::{decode_cursor, encode_cursor};
use crate::state::RunHandle;
use crate::state::run::parse_console_line;

/// Metadata fields of `Run`.
pub struct RunFields(pub RunHandle);

/// `LogLine`.
#[derive(SimpleObject, Clone)]
pub struct LogLine {
    /// Id.
    pub id: ID,
    /// 0-based line number.
    pub number: i64,
    /// Capture time (RFC 3339), if recorded.
    pub timestamp: Option<String>,
    /// `error` for stderr, empty otherwise.
    pub level: String,
    /// Writer label.
    pub label: String,
    /// Text.
    pub line: String,
}

/// `LogLineEdge`.
#[derive(SimpleObject, Clone)]
pub struct LogLineEdge {
    /// The line.
    pub node: LogLine,
    /// Cursor.
    pub cursor: String,
}

/// `LogLineConnection`.
#[derive(SimpleObject, Clone)]
pub struct LogLineConnection {
    /// Edges.
    pub edges: Vec<LogLineEdge>,
    /// Page info.
    pub page_info: PageInfo,
}

/// Builds `historyKeys`: `{"lastStep": N, "keys": {"k": {"typeCounts": [...]}}}`.
pub fn history_keys_value(run: &RunHandle) -> Value {
    let rec = run.record.read();
    let stats = rec.history.key_stats();
    let keys = json::object(stats.into_iter().map(|(key, counts)| {
        let type_counts = Value::List(
            counts
                .into_iter()
                .map(|(t, c)| json::object([("type", Value::String(t)), ("count", Value::from(c))]))
                .collect(),
        );
        (key, json::object([("typeCounts", type_counts)]))
    }));
    let mut fields = Vec::new();
    if let Some(last) = rec.history.last_step() {
        fields.push(("lastStep", Value::from(last)));
    }
    fields.push(("keys", keys));
    json::object(fields)
}

#[Object]
impl RunFields {
    /// Storage id (`base64("Run:v1:<name>:<project>:<entity>")`).
    async fn id(&self) -> ID {
        ID(self.0.storage_id.clone())
    }

    /// The run id.
    async fn name(&self) -> &str {
        &self.0.key.name
    }

    async fn display_name(&self) -> Option<String> {
        self.0.record.read().display_name.clone()
    }

    async fn state(&self) -> String {
        self.0.record.read().state.clone()
    }

    async fn config(&self) -> JsonString {
        JsonString(self.0.record.read().config.raw().to_string())
    }

    async fn summary_metrics(&self) -> JsonString {
        JsonString(self.0.record.read().summary.raw().to_string())
    }

    async fn system_metrics(&self) -> JsonString {
        JsonString(self.0.record.read().system_metrics.raw().to_string())
    }

    async fn group(&self) -> Option<String> {
        self.0.record.read().group.clone()
    }

    async fn job_type(&self) -> Option<String> {
        self.0.record.read().job_type.clone()
    }

    async fn commit(&self) -> Option<String> {
        self.0.record.read().commit.clone()
    }

    async fn host(&self) -> Option<String> {
        self.0.record.read().host.clone()
    }

    async fn program(&self) -> Option<String> {
        self.0.record.read().program.clone()
    }

    async fn description(&self) -> Option<String> {
        self.0.record.read().description.clone()
    }

    async fn notes(&self) -> Option<String> {
        self.0.record.read().notes.clone()
    }

    async fn tags(&self) -> Vec<String> {
        self.0.record.read().tags.clone()
    }

    async fn sweep_name(&self) -> Option<String> {
        self.0.record.read().sweep.clone()
    }

    async fn read_only(&self) -> bool {
        false
    }

    async fn created_at(&self) -> DateTime {
        DateTime::from_micros(self.0.record.read().created_at)
    }

    async fn heartbeat_at(&self) -> DateTime {
        DateTime::from_micros(self.0.record.read().heartbeat_at)
    }

    /// Last modification of anything about the run (real W&B has this field too).
    async fn updated_at(&self) -> DateTime {
        DateTime::from_micros(self.0.record.read().updated_at)
    }

    /// The owning project's internal id.
    async fn project_id(&self) -> i64 {
        self.0.project_internal_id as i64
    }

    async fn project(&self, ctx: &Context<'_>) -> Option<ProjectObject> {
        let world = app(ctx).world.read();
        world
            .project(&self.0.key.entity, &self.0.key.project)
            .map(|p| ProjectObject::new(ProjectRef::from_record(p)))
    }

    async fn user(&self, ctx: &Context<'_>) -> Option<User> {
        let username = self.0.record.read().username.clone();
        Some(run_user(&app(ctx).world.read(), &username))
    }

    async fn history_line_count(&self) -> i64 {
        self.0.record.read().history.line_count() as i64
    }

    async fn events_line_count(&self) -> i64 {
        self.0.record.read().events.line_count() as i64
    }

    async fn log_line_count(&self) -> i64 {
        self.0.record.read().console.len() as i64
    }

    /// `{"lastStep": N, "keys": {...}}` (`lastStep` absent when there is no history).
    async fn history_keys(&self) -> Json {
        Json(history_keys_value(&self.0))
    }

    /// The last history lines, as a JSON list of line strings (for resume).
    async fn history_tail(&self) -> JsonString {
        let tail = self.0.record.read().history.tail_raw(10);
        JsonString(serde_json::to_string(&tail).unwrap_or_else(|_| "[]".into()))
    }

    /// The last events lines, as a JSON list of line strings (for resume).
    async fn events_tail(&self) -> JsonString {
        let tail = self.0.record.read().events.tail_raw(10);
        JsonString(serde_json::to_string(&tail).unwrap_or_else(|_| "[]".into()))
    }

    /// The `_wandb` config value restricted to `keys`; null for runs that never started.
    async fn wandb_config(&self, keys: Option<Vec<String>>) -> Option<JsonString> {
        self.0
            .record
            .read()
            .wandb_config(keys.as_deref())
            .map(JsonString)
    }

    /// Whether a stop was requested (`stopRun`).
    async fn stopped(&self) -> bool {
        self.0.record.read().stopped
    }

    /// Exit code reported by the run process.
    async fn exitcode(&self) -> Option<i64> {
        self.0.record.read().exitcode
    }

    /// Console lines. Forward pages with `first`/`after`; the tail with `last`.
    async fn log_lines(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        last: Option<i32>,
        after: Option<String>,
        before: Option<String>,
        use_improved_pagination: Option<bool>,
    ) -> Option<LogLineConnection> {
        let _ = (before, use_improved_pagination);
        let rec = self.0.record.read();
        let total = rec.console.len();
        let max = app(ctx).max_page_size.max(10_000);
        let (start, end) = match (last, first) {
            (Some(n), _) => (total.saturating_sub((n.max(0) as usize).min(max)), total),
            (None, n) => {
                let start = after
                    .as_deref()
                    .and_then(decode_cursor)
                    .map_or(0, |i| (i as usize + 1).min(total));
                (
                    start,
                    (start + n.map_or(1000, |n| n.max(0) as usize).min(max)).min(total),
                )
            }
        };
        let edges: Vec<LogLineEdge> = (start..end)
            .map(|i| {
                let parsed = parse_console_line(&rec.console[i]);
                LogLineEdge {
                    node: LogLine {
                        id: ID(format!("{}:{i}", self.0.storage_id)),
                        number: i as i64,
                        timestamp: parsed.timestamp,
                        level: parsed.level,
                        label: parsed.label,
                        line: parsed.content,
                    },
                    cursor: encode_cursor(i as u64),
                }
            })
            .collect();
        Some(LogLineConnection {
            page_info: PageInfo {
                start_cursor: edges.first().map(|e| e.cursor.clone()),
                end_cursor: edges.last().map(|e| e.cursor.clone()),
                has_next_page: end < total,
                has_previous_page: start > 0,
            },
            edges,
        })
    }
}
