//! Field paths of a run, as filters and `order` name them.
//!
//! Accepted paths (snake and camel case): `state`, `name`, `displayName`, `createdAt`,
//! `heartbeatAt`, `updatedAt`, `tags`, `group`, `jobType`, `username`, `sweep`, `host`,
//! `notes`, `description`, `commit`, `historyLineCount`, `duration`, `config.<key>[.value][.sub]`,
//! `summary_metrics.<key>[.sub]`, `system_metrics.<key>`. Unknown paths resolve to `None` and
//! match nothing.

use async_graphql::Value;

use crate::json::lookup_path;
use crate::state::{Micros, RunKey, RunRecord};

/// The value of a run field.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue {
    /// The field exists for this kind of object but this run has no value (null/absent key).
    Missing,
    /// A JSON value.
    Value(Value),
    /// A timestamp (compared as time; filters may give any common date-time string).
    Time(Micros),
}

fn opt_str(v: &Option<String>) -> FieldValue {
    match v {
        Some(s) => FieldValue::Value(Value::String(s.clone())),
        None => FieldValue::Missing,
    }
}

fn from_lookup(v: Option<&Value>) -> FieldValue {
    match v {
        None | Some(Value::Null) => FieldValue::Missing,
        Some(v) => FieldValue::Value(v.clone()),
    }
}

/// Resolves `config.<rest>`: the longest existing config key prefix, then an optional `value`
/// segment, then a path inside the value.
fn config_field(config: &Value, rest: &str) -> FieldValue {
    let Value::Object(map) = config else {
        return FieldValue::Missing;
    };
    let segments: Vec<&str> = rest.split('.').collect();
    for split in (1..=segments.len()).rev() {
        let key = segments[..split].join(".");
        let Some(entry) = map.get(key.as_str()) else {
            continue;
        };
        let mut remaining = &segments[split..];
        let wrapped = match entry {
            Value::Object(e) if e.contains_key("value") => e.get("value"),
            _ => None,
        };
        let base = match wrapped {
            Some(inner) => {
                if remaining.first() == Some(&"value") {
                    remaining = &remaining[1..];
                }
                inner
            }
            None => entry,
        };
        if remaining.is_empty() {
            return from_lookup(Some(base));
        }
        return from_lookup(lookup_path(base, &remaining.join(".")));
    }
    FieldValue::Missing
}

/// Resolves a field path on a run; `None` for paths the emulator does not know.
pub fn run_field(key: &RunKey, run: &RunRecord, path: &str) -> Option<FieldValue> {
    let str_val = |s: &str| FieldValue::Value(Value::String(s.to_string()));
    Some(match path {
        "state" => str_val(&run.state),
        "name" | "id" => str_val(&key.name),
        "displayName" | "display_name" => opt_str(&run.display_name),
        "createdAt" | "created_at" => FieldValue::Time(run.created_at),
        "heartbeatAt" | "heartbeat_at" => FieldValue::Time(run.heartbeat_at),
        "updatedAt" | "updated_at" => FieldValue::Time(run.updated_at),
        "tags" => FieldValue::Value(Value::List(
            run.tags.iter().map(|t| Value::String(t.clone())).collect(),
        )),
        "group" => opt_str(&run.group),
        "jobType" | "job_type" => opt_str(&run.job_type),
        "username" | "user" => str_val(&run.username),
        "sweep" | "sweepName" | "sweep_name" => opt_str(&run.sweep),
        "host" => opt_str(&run.host),
        "notes" => opt_str(&run.notes),
        "description" => opt_str(&run.description),
        "commit" => opt_str(&run.commit),
        "historyLineCount" | "history_line_count" => {
            FieldValue::Value(Value::from(run.history.line_count()))
        }
        "duration" => from_lookup(
            lookup_path(run.summary.value(), "_wandb.runtime")
                .or_else(|| lookup_path(run.summary.value(), "_runtime")),
        ),
        _ => {
            if let Some(rest) = path.strip_prefix("config.") {
                config_field(run.config.value(), rest)
            } else if let Some(rest) = path
                .strip_prefix("summary_metrics.")
                .or_else(|| path.strip_prefix("summaryMetrics."))
            {
                from_lookup(lookup_path(run.summary.value(), rest))
            } else if let Some(rest) = path
                .strip_prefix("system_metrics.")
                .or_else(|| path.strip_prefix("systemMetrics."))
            {
                from_lookup(lookup_path(run.system_metrics.value(), rest))
            } else {
                return None;
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::JsonText;

    #[test]
    fn config_paths_unwrap_value() {
        let config = crate::json::parse_lenient(
            r#"{"lr":{"value":0.1},"opt":{"value":{"name":"adam","b":[1,2]}},"raw":{"x":1},"a.b":{"value":3}}"#,
        )
        .expect("parses");
        let num = |v: FieldValue| match v {
            FieldValue::Value(v) => v.into_json().ok(),
            _ => None,
        };
        assert_eq!(num(config_field(&config, "lr")), Some(0.1.into()));
        assert_eq!(num(config_field(&config, "lr.value")), Some(0.1.into()));
        assert_eq!(num(config_field(&config, "opt.name")), Some("adam".into()));
        assert_eq!(
            num(config_field(&config, "opt.value.name")),
            Some("adam".into())
        );
        assert_eq!(num(config_field(&config, "raw.x")), Some(1.into()));
        assert_eq!(num(config_field(&config, "a.b")), Some(3.into()));
        assert_eq!(config_field(&config, "nope"), FieldValue::Missing);
    }

    #[test]
    fn unknown_paths_are_none() {
        let mut run = RunRecord::new("u", 5);
        run.summary = JsonText::new(r#"{"loss":NaN,"nested":{"x":2}}"#);
        let key = RunKey::new("e", "p", "r");
        assert_eq!(run_field(&key, &run, "bogus"), None);
        assert_eq!(
            run_field(&key, &run, "created_at"),
            Some(FieldValue::Time(5))
        );
        assert_eq!(
            run_field(&key, &run, "summary_metrics.loss"),
            Some(FieldValue::Value(Value::String("NaN".into())))
        );
        assert_eq!(
            run_field(&key, &run, "summary_metrics.nested.x"),
            Some(FieldValue::Value(Value::from(2)))
        );
        assert_eq!(run_field(&key, &run, "group"), Some(FieldValue::Missing));
    }
}
