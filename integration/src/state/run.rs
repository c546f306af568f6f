//! One run's record: metadata, config/summary text, history, events, console and files.

use std::collections::BTreeMap;

use async_graphql::Value;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::history::HistoryLog;
use crate::blobs::BlobKey;
use crate::json;

/// W&B-dialect JSON text kept verbatim (served in `JSONString` fields), plus its parsed view
/// (non-finite numbers as string sentinels) for filters, ordering and `JSON` fields.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonText {
    raw: String,
    value: Value,
}

impl JsonText {
    /// Wraps text; unparsable text is kept (and served) as is, its value view is `null`.
    pub fn new(raw: impl Into<String>) -> Self {
        let raw = raw.into();
        let value = json::parse_lenient_or_null(&raw);
        Self { raw, value }
    }

    /// An empty object.
    pub fn empty_object() -> Self {
        Self {
            raw: "{}".into(),
            value: Value::Object(Default::default()),
        }
    }

    /// The verbatim text.
    pub fn raw(&self) -> &str {
        &self.raw
    }

    /// The parsed view.
    pub fn value(&self) -> &Value {
        &self.value
    }
}

impl Default for JsonText {
    fn default() -> Self {
        Self::empty_object()
    }
}

impl Serialize for JsonText {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.raw)
    }
}

impl<'de> Deserialize<'de> for JsonText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Self::new(String::deserialize(d)?))
    }
}

/// A file attached to a run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunFile {
    /// Run-relative path, `/`-separated.
    pub name: String,
    /// The content.
    pub blob: BlobKey,
    /// Size in bytes.
    pub size: u64,
    /// MIME type.
    pub mimetype: String,
    /// Last upload time (µs since the epoch).
    pub updated_at: i64,
}

/// Everything the emulator knows about one run (the mutable part of a run).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRecord {
    /// Human name (`displayName`).
    pub display_name: Option<String>,
    /// `running`, `finished`, `failed`, `crashed`, `killed`, `preempting`, `preempted`, `pending`.
    pub state: String,
    /// Config as uploaded: `{"key": {"value": v}, ...}`.
    pub config: JsonText,
    /// Latest summary.
    pub summary: JsonText,
    /// Latest system-metrics row.
    pub system_metrics: JsonText,
    /// Group name.
    pub group: Option<String>,
    /// Job type.
    pub job_type: Option<String>,
    /// Git commit.
    pub commit: Option<String>,
    /// Host name.
    pub host: Option<String>,
    /// Program (`jobProgram`).
    pub program: Option<String>,
    /// Repository (`jobRepo`).
    pub repo: Option<String>,
    /// Notes.
    pub notes: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// Sweep name.
    pub sweep: Option<String>,
    /// Tags.
    pub tags: Vec<String>,
    /// User name of the writer.
    pub username: String,
    /// Creation time (µs since the epoch).
    pub created_at: i64,
    /// Last heartbeat (µs).
    pub heartbeat_at: i64,
    /// Last modification (µs).
    pub updated_at: i64,
    /// Stop requested (`stopRun`); file_stream answers `{"stopped": true}`.
    pub stopped: bool,
    /// Exit code reported by file_stream's final request.
    pub exitcode: Option<i64>,
    /// History lines.
    pub history: HistoryLog,
    /// System-metric event lines.
    pub events: HistoryLog,
    /// Console lines by offset.
    pub console: Vec<String>,
    /// Files by name.
    pub files: BTreeMap<String, RunFile>,
}

impl RunRecord {
    /// A new, empty running run created at `now` by `username`.
    pub fn new(username: &str, now: i64) -> Self {
        Self {
            display_name: None,
            state: "running".into(),
            config: JsonText::empty_object(),
            summary: JsonText::empty_object(),
            system_metrics: JsonText::empty_object(),
            group: None,
            job_type: None,
            commit: None,
            host: None,
            program: None,
            repo: None,
            notes: None,
            description: None,
            sweep: None,
            tags: Vec::new(),
            username: username.into(),
            created_at: now,
            heartbeat_at: now,
            updated_at: now,
            stopped: false,
            exitcode: None,
            history: HistoryLog::default(),
            events: HistoryLog::default(),
            console: Vec::new(),
            files: BTreeMap::new(),
        }
    }

    /// Marks a modification at `now` (W&B bumps `updatedAt` on every write).
    pub fn touch(&mut self, now: i64) {
        self.updated_at = self.updated_at.max(now);
    }

    /// Records a heartbeat at `now`.
    pub fn heartbeat(&mut self, now: i64) {
        self.heartbeat_at = self.heartbeat_at.max(now);
    }

    /// Writes a console line at `offset` (overwrites; pads nothing: past-the-end appends).
    pub fn write_console_line(&mut self, offset: usize, line: String) {
        if offset < self.console.len() {
            self.console[offset] = line;
        } else {
            self.console.push(line);
        }
    }

    /// The `_wandb` config entry's value restricted to `keys` (`wandbConfig(keys:)`), as JSON
    /// text. `None` when the run has no `_wandb` config (i.e. was created but never started).
    pub fn wandb_config(&self, keys: Option<&[String]>) -> Option<String> {
        let Value::Object(config) = self.config.value() else {
            return None;
        };
        let inner = match config.get("_wandb")? {
            Value::Object(entry) => entry
                .get("value")
                .cloned()
                .unwrap_or(Value::Object(entry.clone())),
            _ => return None,
        };
        let Value::Object(inner) = inner else {
            return None;
        };
        let picked: async_graphql::indexmap::IndexMap<_, _> = inner
            .into_iter()
            .filter(|(k, _)| keys.is_none_or(|keys| keys.iter().any(|x| x == k.as_str())))
            .collect();
        serde_json::to_string(&Value::Object(picked)).ok()
    }
}

/// Console line parsed into `logLines` fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleLine {
    /// `error` for stderr lines, empty otherwise.
    pub level: String,
    /// Writer label (shared mode), empty otherwise.
    pub label: String,
    /// RFC 3339 timestamp, when the line carries one.
    pub timestamp: Option<String>,
    /// The text.
    pub content: String,
}

/// Parses a console line in either of the SDK's formats: legacy
/// `[ERROR ]<timestamp>[ [label]] <text>` or structured JSON
/// `{"level", "ts", "label", "content"}`.
pub fn parse_console_line(line: &str) -> ConsoleLine {
    if line.starts_with('{')
        && let Ok(serde_json::Value::Object(obj)) = serde_json::from_str::<serde_json::Value>(line)
    {
        let get = |k: &str| {
            obj.get(k)
                .and_then(|v| v.as_str())
                .unwrap_or("")
                .to_string()
        };
        let ts = get("ts");
        return ConsoleLine {
            level: get("level"),
            label: get("label"),
            timestamp: (!ts.is_empty()).then(|| normalise_timestamp(&ts)),
            content: get("content"),
        };
    }
    let (level, rest) = match line.strip_prefix("ERROR ") {
        Some(rest) => ("error", rest),
        None => ("", line),
    };
    let (ts, text) = rest.split_once(' ').unwrap_or((rest, ""));
    let looks_like_ts = ts.len() >= 19
        && ts.as_bytes().get(4) == Some(&b'-')
        && ts.as_bytes().get(10) == Some(&b'T');
    if !looks_like_ts {
        return ConsoleLine {
            level: level.into(),
            label: String::new(),
            timestamp: None,
            content: rest.into(),
        };
    }
    let (label, content) = match text.strip_prefix('[').and_then(|t| t.split_once("] ")) {
        Some((label, content)) => (label.to_string(), content.to_string()),
        None => (String::new(), text.to_string()),
    };
    ConsoleLine {
        level: level.into(),
        label,
        timestamp: Some(normalise_timestamp(ts)),
        content,
    }
}

fn normalise_timestamp(ts: &str) -> String {
    if ts.ends_with('Z') || ts.contains('+') {
        ts.to_string()
    } else {
        format!("{ts}Z")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_lines_in_both_formats() {
        let l = parse_console_line("2026-11-23T00:46:45.204017 hello stdout");
        assert_eq!(l.level, "");
        assert_eq!(l.timestamp.as_deref(), Some("2026-11-23T00:46:45.204017Z"));
        assert_eq!(l.content, "hello stdout");
        let l = parse_console_line("ERROR 2026-11-23T00:46:45.3 [rank0] boom");
        assert_eq!(
            (l.level.as_str(), l.label.as_str(), l.content.as_str()),
            ("error", "rank0", "boom")
        );
        let l =
            parse_console_line(r#"{"level":"error","ts":"2026-01-01T00:00:00Z","content":"x"}"#);
        assert_eq!((l.level.as_str(), l.content.as_str()), ("error", "x"));
        let l = parse_console_line("plain text");
        assert_eq!((l.timestamp, l.content.as_str()), (None, "plain text"));
    }

    #[test]
    fn wandb_config_picks_keys() {
        let mut run = RunRecord::new("u", 0);
        assert_eq!(run.wandb_config(None), None);
        run.config = JsonText::new(
            r#"{"lr":{"value":1},"_wandb":{"value":{"t":{"1":[1]},"cli_version":"0.31.0"}}}"#,
        );
        assert_eq!(
            run.wandb_config(Some(&["t".to_string()])).as_deref(),
            Some(r#"{"t":{"1":[1]}}"#)
        );
    }
}
