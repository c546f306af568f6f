//! Rendering of the synthetic files, shared by every metadata source.
//!
//! The live source (W&B API) and the mirror source (Postgres) both call these functions, so a
//! synthetic file has the same bytes whichever source served it. Inputs are W&B's own texts
//! (config, summary, history rows, system rows are `JSONString`s in W&B's JSON dialect, with
//! bare `NaN`/`Infinity`) and a source-independent [`RunDetail`]. Formats are specified in
//! `docs/LAYOUT.md`:
//!
//! - `history.jsonl` / `system.jsonl`: one row per line, the row text exactly as W&B holds it
//!   (re-rendered compactly only if it spans several lines), `\n`-terminated
//!   ([`push_jsonl_line`]; the mirror's pre-rendered chunks are built the same way).
//! - `summary.json`: W&B's summary text verbatim plus a newline.
//! - `config.json`: the user config with `{"value": v, "desc": …}` unwrapped to `v`, the SDK's
//!   internal keys (`_wandb`, `wandb_version`) left out — what `run.config` is in Python.
//! - `metadata.json`: the run record, one top-level key per line.

use base64::Engine as _;
use chrono::{DateTime, SecondsFormat, Utc};
use md5::{Digest as _, Md5};

use crate::values::{self, InvalidJson, Value};

/// Config keys the SDK treats as internal (`WANDB_INTERNAL_KEYS` in `wandb/apis/public/runs.py`):
/// they go to `metadata.json`, not `config.json`.
pub const INTERNAL_CONFIG_KEYS: [&str; 2] = ["_wandb", "wandb_version"];

/// What the synthetic files of a run are rendered from, whatever the source.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunDetail {
    /// Entity.
    pub entity: String,
    /// Project.
    pub project: String,
    /// Run id (W&B `name`).
    pub id: String,
    /// W&B storage id (opaque).
    pub storage_id: Option<String>,
    /// Display name.
    pub display_name: Option<String>,
    /// State (`running`, `finished`, …).
    pub state: Option<String>,
    /// Username.
    pub user: Option<String>,
    /// The user's full name.
    pub user_full_name: Option<String>,
    /// Group.
    pub group: Option<String>,
    /// Job type.
    pub job_type: Option<String>,
    /// Sweep id.
    pub sweep: Option<String>,
    /// Tags.
    pub tags: Vec<String>,
    /// Notes.
    pub notes: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// Git commit.
    pub commit: Option<String>,
    /// Creation time.
    pub created_at: Option<DateTime<Utc>>,
    /// Last heartbeat.
    pub heartbeat_at: Option<DateTime<Utc>>,
    /// Last update.
    pub updated_at: Option<DateTime<Utc>>,
    /// `historyLineCount`.
    pub history_line_count: Option<i64>,
    /// `historyKeys.lastStep`.
    pub last_step: Option<i64>,
    /// `config` as W&B's JSON text (`{"k": {"value": v}}`).
    pub config: Option<String>,
    /// `summaryMetrics` as W&B's JSON text.
    pub summary: Option<String>,
    /// `systemMetrics` (latest system metrics) as W&B's JSON text.
    pub system_metrics: Option<String>,
}

impl RunDetail {
    /// `last_modified` of the run's synthetic files: `updatedAt`, else `heartbeatAt`, else
    /// `createdAt`, else the Unix epoch.
    pub fn last_modified(&self) -> DateTime<Utc> {
        self.updated_at
            .or(self.heartbeat_at)
            .or(self.created_at)
            .unwrap_or(DateTime::UNIX_EPOCH)
    }
}

impl From<&crate::mirror::model::RunMetadata> for RunDetail {
    /// The mirror's run record, for the mirror-backed source: the same fields the live source
    /// reads from W&B, so the synthetic files render to the same bytes.
    fn from(m: &crate::mirror::model::RunMetadata) -> Self {
        RunDetail {
            entity: m.entity.clone(),
            project: m.project.clone(),
            id: m.id.clone(),
            storage_id: m.storage_id.clone(),
            display_name: m.display_name.clone(),
            state: m.state.clone(),
            user: m.user.clone(),
            user_full_name: m.user_full_name.clone(),
            group: m.group.clone(),
            job_type: m.job_type.clone(),
            sweep: m.sweep.clone(),
            tags: m.tags.clone(),
            notes: m.notes.clone(),
            description: m.description.clone(),
            commit: m.commit.clone(),
            created_at: m.created_at,
            heartbeat_at: m.heartbeat_at,
            updated_at: m.updated_at,
            history_line_count: m.history_line_count,
            last_step: m.last_step,
            config: m.config.clone(),
            summary: m.summary.clone(),
            system_metrics: m.system_metrics.clone(),
        }
    }
}

/// The entity tag of a synthetic file: base64 MD5 of its bytes (the format W&B uses for run
/// files' `md5`).
pub fn e_tag(content: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(Md5::digest(content))
}

/// Appends one W&B row (a history row or a system-metrics row) as a JSON Lines record.
pub fn push_jsonl_line(row: &str, out: &mut Vec<u8>) -> Result<(), InvalidJson> {
    let line = values::as_single_line(row)?;
    out.extend_from_slice(line.as_bytes());
    out.push(b'\n');
    Ok(())
}

/// A whole JSON Lines file from rows.
pub fn jsonl<'a>(rows: impl IntoIterator<Item = &'a str>) -> Result<Vec<u8>, InvalidJson> {
    let mut out = Vec::new();
    for row in rows {
        push_jsonl_line(row, &mut out)?;
    }
    Ok(out)
}

/// `summary.json`: W&B's summary text verbatim, newline-terminated (`{}` when W&B has none).
pub fn summary_json(detail: &RunDetail) -> Vec<u8> {
    let text = detail
        .summary
        .as_deref()
        .filter(|t| !t.trim().is_empty())
        .unwrap_or("{}");
    let mut out = text.as_bytes().to_vec();
    if !out.ends_with(b"\n") {
        out.push(b'\n');
    }
    out
}

/// The config's members, with Python's duplicate-key semantics (`json.loads`: the last value
/// wins, at the position of the first occurrence) and `{"value": v}` unwrapped to `v`.
fn config_members<'a>(config: &'a Value<'a>) -> Vec<(&'a str, &'a Value<'a>)> {
    let Value::Object(members) = config else {
        return Vec::new();
    };
    let mut out: Vec<(&str, &Value<'_>)> = Vec::with_capacity(members.len());
    for (key, value) in members.iter() {
        let unwrapped = match value {
            Value::Object(inner) => inner
                .iter()
                .rev()
                .find(|(k, _)| k == "value")
                .map_or(value, |(_, v)| v),
            _ => value,
        };
        match out.iter_mut().find(|(k, _)| *k == key.as_ref()) {
            Some(slot) => slot.1 = unwrapped,
            None => out.push((key.as_ref(), unwrapped)),
        }
    }
    out
}

fn write_object(members: &[(&str, &Value<'_>)], out: &mut Vec<u8>) {
    out.push(b'{');
    for (i, (key, value)) in members.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_string(key, out);
        out.push(b':');
        values::write_wandb_json(value, out);
    }
    out.push(b'}');
}

fn write_string(s: &str, out: &mut Vec<u8>) {
    // Writing a string into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

fn parse_or_empty(text: Option<&str>) -> Result<Option<Value<'_>>, InvalidJson> {
    match text
        .map(str::trim)
        .filter(|t| !t.is_empty() && *t != "null")
    {
        Some(t) => values::parse(t.as_bytes()).map(Some),
        None => Ok(None),
    }
}

/// `config.json`: the user config as `run.config` shows it in Python, compact W&B dialect,
/// newline-terminated.
pub fn config_json(detail: &RunDetail) -> Result<Vec<u8>, InvalidJson> {
    let parsed = parse_or_empty(detail.config.as_deref())?;
    let members: Vec<_> = parsed
        .as_ref()
        .map(config_members)
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, _)| !INTERNAL_CONFIG_KEYS.contains(k))
        .collect();
    let mut out = Vec::new();
    write_object(&members, &mut out);
    out.push(b'\n');
    Ok(out)
}

fn time_text(t: Option<DateTime<Utc>>) -> Option<String> {
    t.map(|t| t.to_rfc3339_opts(SecondsFormat::AutoSi, true))
}

/// `metadata.json`: the run record, one top-level key per line in a fixed order, values in
/// compact W&B dialect, times in RFC 3339 UTC, newline-terminated. Keys: `entity`, `project`,
/// `id`, `storage_id`, `display_name`, `state`, `user`, `user_full_name`, `group`, `job_type`,
/// `sweep`, `tags`, `notes`, `description`, `commit`, `created_at`, `heartbeat_at`,
/// `updated_at`, `history_line_count`, `last_step`, `system_metrics` (the latest system
/// metrics object), `internal_config` (`_wandb` and `wandb_version`, unwrapped).
pub fn metadata_json(detail: &RunDetail) -> Result<Vec<u8>, InvalidJson> {
    let config = parse_or_empty(detail.config.as_deref())?;
    let internal: Vec<_> = config
        .as_ref()
        .map(config_members)
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, _)| INTERNAL_CONFIG_KEYS.contains(k))
        .collect();
    let system = parse_or_empty(detail.system_metrics.as_deref())?;

    let mut out = Vec::with_capacity(1024);
    let mut first = true;
    let mut key = |out: &mut Vec<u8>, name: &str| {
        out.extend_from_slice(if first { b"{\n  " } else { b",\n  " });
        first = false;
        write_string(name, out);
        out.extend_from_slice(b": ");
    };
    let opt_str = |out: &mut Vec<u8>, v: &Option<String>| match v {
        Some(s) => write_string(s, out),
        None => out.extend_from_slice(b"null"),
    };
    let opt_int = |out: &mut Vec<u8>, v: Option<i64>| match v {
        Some(i) => out.extend_from_slice(itoa::Buffer::new().format(i).as_bytes()),
        None => out.extend_from_slice(b"null"),
    };

    for (name, value) in [
        ("entity", Some(detail.entity.clone())),
        ("project", Some(detail.project.clone())),
        ("id", Some(detail.id.clone())),
        ("storage_id", detail.storage_id.clone()),
        ("display_name", detail.display_name.clone()),
        ("state", detail.state.clone()),
        ("user", detail.user.clone()),
        ("user_full_name", detail.user_full_name.clone()),
        ("group", detail.group.clone()),
        ("job_type", detail.job_type.clone()),
        ("sweep", detail.sweep.clone()),
    ] {
        key(&mut out, name);
        opt_str(&mut out, &value);
    }
    key(&mut out, "tags");
    out.push(b'[');
    for (i, tag) in detail.tags.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_string(tag, &mut out);
    }
    out.push(b']');
    for (name, value) in [
        ("notes", detail.notes.clone()),
        ("description", detail.description.clone()),
        ("commit", detail.commit.clone()),
        ("created_at", time_text(detail.created_at)),
        ("heartbeat_at", time_text(detail.heartbeat_at)),
        ("updated_at", time_text(detail.updated_at)),
    ] {
        key(&mut out, name);
        opt_str(&mut out, &value);
    }
    key(&mut out, "history_line_count");
    opt_int(&mut out, detail.history_line_count);
    key(&mut out, "last_step");
    opt_int(&mut out, detail.last_step);
    key(&mut out, "system_metrics");
    match &system {
        Some(v) => values::write_wandb_json(v, &mut out),
        None => out.extend_from_slice(b"{}"),
    }
    key(&mut out, "internal_config");
    write_object(&internal, &mut out);
    out.extend_from_slice(b"\n}\n");
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detail() -> RunDetail {
        RunDetail {
            entity: "ent".into(),
            project: "proj".into(),
            id: "abc123".into(),
            storage_id: Some("UnVu".into()),
            display_name: Some("happy-run-1".into()),
            state: Some("finished".into()),
            tags: vec!["a".into(), "ñ".into()],
            created_at: DateTime::from_timestamp(1_700_000_000, 0),
            updated_at: DateTime::from_timestamp(1_700_000_100, 500_000_000),
            history_line_count: Some(3),
            last_step: Some(2),
            config: Some(
                r#"{"lr": {"value": 0.01, "desc": null}, "n": {"value": 3}, "raw": [1, 2],
                    "_wandb": {"value": {"cli_version": "0.31.0", "x": NaN}}, "lr": {"value": 1e-3}}"#
                    .into(),
            ),
            summary: Some(r#"{"loss": NaN, "best": Infinity}"#.into()),
            system_metrics: Some(r#"{"system.cpu": 3.5}"#.into()),
            ..RunDetail::default()
        }
    }

    #[test]
    fn config_is_unwrapped_like_the_sdk() {
        let text = String::from_utf8(config_json(&detail()).unwrap()).unwrap();
        // Last duplicate wins at the first position; ints stay ints; `_wandb` is internal.
        assert_eq!(text, "{\"lr\":0.001,\"n\":3,\"raw\":[1,2]}\n");
        let empty = RunDetail::default();
        assert_eq!(config_json(&empty).unwrap(), b"{}\n");
    }

    #[test]
    fn summary_is_verbatim() {
        assert_eq!(
            summary_json(&detail()),
            b"{\"loss\": NaN, \"best\": Infinity}\n"
        );
        assert_eq!(summary_json(&RunDetail::default()), b"{}\n");
    }

    #[test]
    fn metadata_has_every_field_and_parses_in_wandb_dialect() {
        let bytes = metadata_json(&detail()).unwrap();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.starts_with("{\n  \"entity\": \"ent\",\n"), "{text}");
        assert!(text.ends_with("\n}\n"));
        assert!(
            text.contains("\"updated_at\": \"2023-11-14T22:15:00.500Z\""),
            "{text}"
        );
        assert!(
            text.contains("\"created_at\": \"2023-11-14T22:13:20Z\""),
            "{text}"
        );
        assert!(
            text.contains(
                "\"internal_config\": {\"_wandb\":{\"cli_version\":\"0.31.0\",\"x\":NaN}}"
            ),
            "{text}"
        );
        let parsed = values::parse(&bytes).unwrap();
        let Value::Object(members) = parsed else {
            panic!("not an object")
        };
        let keys: Vec<_> = members.iter().map(|(k, _)| k.to_string()).collect();
        assert_eq!(keys.len(), 22, "{keys:?}");
        assert_eq!(keys.last().map(String::as_str), Some("internal_config"));
    }

    #[test]
    fn jsonl_keeps_rows_byte_for_byte() {
        let rows = [
            r#"{"_step":0,"loss":NaN,"n":1,"f":1.0,"nested":{"a":[1,-Infinity]}}"#,
            "{\n \"_step\": 1,\n \"x\": 2\n}",
        ];
        let out = String::from_utf8(jsonl(rows).unwrap()).unwrap();
        assert_eq!(
            out,
            "{\"_step\":0,\"loss\":NaN,\"n\":1,\"f\":1.0,\"nested\":{\"a\":[1,-Infinity]}}\n\
             {\"_step\":1,\"x\":2}\n"
        );
        assert!(jsonl(["{\n\"broken\": }"]).is_err());
    }

    /// The mirror's record of a run renders to the same bytes as the live record.
    #[test]
    fn mirror_records_render_like_live_ones() {
        let live = detail();
        let mirror = crate::mirror::model::RunMetadata {
            entity: live.entity.clone(),
            project: live.project.clone(),
            id: live.id.clone(),
            display_name: live.display_name.clone(),
            state: live.state.clone(),
            user: live.user.clone(),
            user_full_name: live.user_full_name.clone(),
            group: live.group.clone(),
            job_type: live.job_type.clone(),
            sweep: live.sweep.clone(),
            tags: live.tags.clone(),
            notes: live.notes.clone(),
            description: live.description.clone(),
            commit: live.commit.clone(),
            created_at: live.created_at,
            heartbeat_at: live.heartbeat_at,
            updated_at: live.updated_at,
            last_step: live.last_step,
            history_line_count: live.history_line_count,
            storage_id: live.storage_id.clone(),
            deleted: false,
            deleted_at: None,
            last_synced_at: DateTime::UNIX_EPOCH,
            config: live.config.clone(),
            summary: live.summary.clone(),
            system_metrics: live.system_metrics.clone(),
            run_pk: crate::mirror::model::RunPk(7),
        };
        let from_mirror = RunDetail::from(&mirror);
        assert_eq!(from_mirror, live);
        assert_eq!(
            metadata_json(&from_mirror).unwrap(),
            metadata_json(&live).unwrap()
        );
        assert_eq!(
            config_json(&from_mirror).unwrap(),
            config_json(&live).unwrap()
        );
    }

    #[test]
    fn e_tags_are_base64_md5() {
        assert_eq!(e_tag(b""), "1B2M2Y8AsgTpgAmY7PhCfg==");
    }
}
