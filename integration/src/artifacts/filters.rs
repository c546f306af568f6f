//! `filters` and `order` for artifact version listings (`ArtifactCollection.artifacts`).
//!
//! The SDK sends `{"state": "COMMITTED"}` by default; users may pass other Mongo-style filters.
//! A version is matched as the document `{"state", "versionIndex", "digest", "createdAt",
//! "updatedAt", "alias": [..], "tags": [..]}` (`aliases.alias` and `tag` are accepted as
//! spellings of `alias` and `tags`). Operators: `$and $or $nor $eq $ne $in $nin $gt $gte $lt
//! $lte $exists`; a list-valued field matches when any element does. Unknown fields are an
//! error rather than a silent empty result.

use std::cmp::Ordering;

use serde_json::Value;

use super::model::ArtifactRecord;
use crate::state::format_datetime;

/// A filter or order the emulator does not understand.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unsupported artifact filter: {0}")]
pub struct FilterError(String);

const FIELDS: &[&str] = &[
    "state",
    "versionIndex",
    "digest",
    "createdAt",
    "updatedAt",
    "alias",
    "tags",
];

/// A parsed filter document.
#[derive(Debug, Clone, PartialEq)]
pub struct VersionFilter(Value);

impl VersionFilter {
    /// Parses JSON text (`None`, `""` and `{}` match everything).
    pub fn parse(text: Option<&str>) -> Result<Self, FilterError> {
        let text = text.map(str::trim).unwrap_or("");
        if text.is_empty() {
            return Ok(Self(Value::Object(Default::default())));
        }
        let value: Value =
            serde_json::from_str(text).map_err(|e| FilterError(format!("not JSON: {e}")))?;
        if !value.is_object() {
            return Err(FilterError("the filter must be an object".into()));
        }
        check(&value)?;
        Ok(Self(value))
    }

    /// Whether a version (with its aliases) matches.
    pub fn matches(&self, a: &ArtifactRecord, aliases: &[String]) -> bool {
        let doc = serde_json::json!({
            "state": a.state.as_str(),
            "versionIndex": a.version_index,
            "digest": a.digest,
            "createdAt": format_datetime(a.created_at),
            "updatedAt": format_datetime(a.updated_at),
            "alias": aliases,
            "tags": a.tags,
        });
        eval(&self.0, &doc)
    }
}

fn canonical(field: &str) -> &str {
    match field {
        "aliases.alias" | "aliases" => "alias",
        "tag" | "tags.name" => "tags",
        "version_index" => "versionIndex",
        "created_at" => "createdAt",
        "updated_at" => "updatedAt",
        other => other,
    }
}

fn check(filter: &Value) -> Result<(), FilterError> {
    let Some(obj) = filter.as_object() else {
        return Err(FilterError(format!("{filter} is not an object")));
    };
    for (k, v) in obj {
        match k.as_str() {
            "$and" | "$or" | "$nor" => {
                let list = v
                    .as_array()
                    .ok_or_else(|| FilterError(format!("{k} needs a list")))?;
                for f in list {
                    check(f)?;
                }
            }
            field if FIELDS.contains(&canonical(field)) => {}
            other => return Err(FilterError(format!("unknown field {other:?}"))),
        }
    }
    Ok(())
}

fn cmp(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64()?.partial_cmp(&y.as_f64()?),
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        (Value::Bool(x), Value::Bool(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

/// One field value against one condition (a literal or an operator object).
fn test(value: &Value, cond: &Value) -> bool {
    if let Value::Array(items) = value
        && !matches!(cond, Value::Object(o) if o.keys().any(|k| k == "$exists" || k == "$ne" || k == "$nin"))
    {
        return items.iter().any(|v| test(v, cond)) || value == cond;
    }
    let Some(ops) = cond
        .as_object()
        .filter(|o| o.keys().all(|k| k.starts_with('$')))
    else {
        return value == cond;
    };
    ops.iter().all(|(op, arg)| match op.as_str() {
        "$eq" => test(value, arg),
        "$ne" => !test(value, arg),
        "$in" => arg
            .as_array()
            .is_some_and(|l| l.iter().any(|x| test(value, x))),
        "$nin" => !arg
            .as_array()
            .is_some_and(|l| l.iter().any(|x| test(value, x))),
        "$gt" => cmp(value, arg) == Some(Ordering::Greater),
        "$gte" => matches!(cmp(value, arg), Some(Ordering::Greater | Ordering::Equal)),
        "$lt" => cmp(value, arg) == Some(Ordering::Less),
        "$lte" => matches!(cmp(value, arg), Some(Ordering::Less | Ordering::Equal)),
        "$exists" => arg.as_bool().unwrap_or(true) != value.is_null(),
        _ => false,
    })
}

fn eval(filter: &Value, doc: &Value) -> bool {
    let Some(obj) = filter.as_object() else {
        return false;
    };
    obj.iter().all(|(k, v)| {
        let list = || v.as_array().map(Vec::as_slice).unwrap_or(&[]);
        match k.as_str() {
            "$and" => list().iter().all(|f| eval(f, doc)),
            "$or" => list().iter().any(|f| eval(f, doc)),
            "$nor" => !list().iter().any(|f| eval(f, doc)),
            field => test(doc.get(canonical(field)).unwrap_or(&Value::Null), v),
        }
    })
}

/// A parsed `order`: `[+|-]versionIndex|createdAt|updatedAt`; default newest first
/// (`-versionIndex`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VersionOrder {
    key: OrderKey,
    descending: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OrderKey {
    Version,
    Created,
    Updated,
}

impl VersionOrder {
    /// Parses an order string.
    pub fn parse(text: Option<&str>) -> Result<Self, FilterError> {
        let text = text.map(str::trim).unwrap_or("");
        if text.is_empty() {
            return Ok(Self {
                key: OrderKey::Version,
                descending: true,
            });
        }
        let (descending, key) = match text.as_bytes()[0] {
            b'-' => (true, &text[1..]),
            b'+' => (false, &text[1..]),
            _ => (false, text),
        };
        let key = match key {
            "versionIndex" | "version_index" | "version" => OrderKey::Version,
            "createdAt" | "created_at" => OrderKey::Created,
            "updatedAt" | "updated_at" => OrderKey::Updated,
            other => return Err(FilterError(format!("unknown order key {other:?}"))),
        };
        Ok(Self { key, descending })
    }

    /// Sorts versions.
    pub fn sort(&self, versions: &mut [&ArtifactRecord]) {
        versions.sort_by(|a, b| {
            let o = match self.key {
                OrderKey::Version => a.version_index.cmp(&b.version_index),
                OrderKey::Created => a.created_at.cmp(&b.created_at),
                OrderKey::Updated => a.updated_at.cmp(&b.updated_at),
            }
            .then(a.num.cmp(&b.num));
            if self.descending { o.reverse() } else { o }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifacts::model::ArtifactState;

    fn version(num: u64, index: u32, state: ArtifactState, tags: &[&str]) -> ArtifactRecord {
        let mut a: ArtifactRecord = serde_json::from_value(serde_json::json!({
            "num": num, "entity": "e", "project": "p", "sequence": "ds", "type_name": "dataset",
            "version_index": index, "state": "Committed", "digest": format!("d{num}"),
            "digest_algorithm": "MANIFEST_MD5", "description": null, "metadata": null,
            "ttl_seconds": null, "history_step": null, "tags": tags,
            "created_at": 1000 - num as i64, "updated_at": num as i64, "committed_at": null,
            "created_by": null, "client_id": null, "requested_aliases": [], "manifest": null,
            "pending_files": {}, "files": [], "size": 0
        }))
        .expect("record");
        a.state = state;
        a
    }

    #[test]
    fn filters_match_state_aliases_and_ranges() {
        let v0 = version(1, 0, ArtifactState::Committed, &["gold"]);
        let v1 = version(2, 1, ArtifactState::Pending, &[]);
        let committed = VersionFilter::parse(Some(r#"{"state": "COMMITTED"}"#)).expect("parses");
        assert!(committed.matches(&v0, &[]));
        assert!(!committed.matches(&v1, &[]));
        let alias = VersionFilter::parse(Some(r#"{"aliases.alias": "best"}"#)).expect("parses");
        assert!(alias.matches(&v0, &["latest".into(), "best".into()]));
        assert!(!alias.matches(&v0, &["latest".into()]));
        let range = VersionFilter::parse(Some(
            r#"{"$or": [{"versionIndex": {"$gte": 1}}, {"tags": {"$in": ["gold"]}}]}"#,
        ))
        .expect("parses");
        assert!(range.matches(&v0, &[]) && range.matches(&v1, &[]));
        let none = VersionFilter::parse(Some(r#"{"state": {"$nin": ["COMMITTED", "PENDING"]}}"#))
            .expect("parses");
        assert!(!none.matches(&v0, &[]) && !none.matches(&v1, &[]));
        assert!(
            VersionFilter::parse(Some("{}"))
                .expect("empty")
                .matches(&v1, &[])
        );
        assert!(VersionFilter::parse(None).expect("none").matches(&v1, &[]));
        assert!(VersionFilter::parse(Some(r#"{"colour": "red"}"#)).is_err());
        assert!(VersionFilter::parse(Some("[1]")).is_err());
        assert!(VersionFilter::parse(Some("{")).is_err());
    }

    #[test]
    fn order_defaults_to_newest_first() {
        let a = version(1, 0, ArtifactState::Committed, &[]);
        let b = version(2, 1, ArtifactState::Committed, &[]);
        let c = version(3, 2, ArtifactState::Committed, &[]);
        let names = |o: &str| {
            let mut v = vec![&b, &c, &a];
            VersionOrder::parse(if o.is_empty() { None } else { Some(o) })
                .expect("order")
                .sort(&mut v);
            v.iter().map(|x| x.num).collect::<Vec<_>>()
        };
        assert_eq!(names(""), [3, 2, 1]);
        assert_eq!(names("versionIndex"), [1, 2, 3]);
        assert_eq!(names("+versionIndex"), [1, 2, 3]);
        // created_at was set to 1000 - num: oldest is num 3.
        assert_eq!(names("createdAt"), [3, 2, 1]);
        assert_eq!(names("-updatedAt"), [3, 2, 1]);
        assert!(VersionOrder::parse(Some("-size")).is_err());
    }
}
