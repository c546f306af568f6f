//! Mongo-style run filters (`api.runs(path, filters=...)`).
//!
//! Operators: `$and $or $nor $not $eq $ne $gt $gte $lt $lte $in $nin $exists $regex` (with
//! `$options: "i"`). A top-level object is an implicit `$and`; `{"field": literal}` means `$eq`.
//! Array fields (`tags`) match when any element matches (`{"tags": "a"}`) or the whole array
//! equals the operand. Comparisons only hold within one type (numbers — the non-finite
//! sentinels count as numbers —, strings, booleans, times); times accept any common
//! date-time string. Unknown field paths match nothing; unknown operators are errors.

use std::cmp::Ordering;

use async_graphql::Value;
use regex::Regex;

use super::fields::{FieldValue, run_field};
use crate::state::{RunKey, RunRecord, parse_datetime};

/// A malformed filter document.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("invalid filters: {0}")]
pub struct FilterError(pub String);

/// A compiled filter.
#[derive(Debug, Clone)]
pub enum Filter {
    /// All must match.
    And(Vec<Filter>),
    /// Any must match.
    Or(Vec<Filter>),
    /// None may match.
    Nor(Vec<Filter>),
    /// A condition on one field path.
    Field(String, Cond),
}

/// Conditions on a field (all must hold).
#[derive(Debug, Clone)]
pub struct Cond(Vec<Op>);

#[derive(Debug, Clone)]
enum Op {
    Eq(Value),
    Ne(Value),
    Cmp(Ordering, bool, Value),
    In(Vec<Value>),
    Nin(Vec<Value>),
    Exists(bool),
    Regex(Regex),
    Not(Cond),
}

impl Filter {
    /// Parses a filter document (W&B-dialect JSON text; `null`/empty = match everything).
    pub fn parse(text: Option<&str>) -> Result<Filter, FilterError> {
        let text = text.map(str::trim).unwrap_or("");
        if text.is_empty() || text == "null" {
            return Ok(Filter::And(Vec::new()));
        }
        let value = crate::json::parse_lenient(text).map_err(|e| FilterError(e.to_string()))?;
        Self::from_value(&value)
    }

    fn from_value(value: &Value) -> Result<Filter, FilterError> {
        let Value::Object(map) = value else {
            return Err(FilterError(format!("expected an object, got {value}")));
        };
        let mut parts = Vec::with_capacity(map.len());
        for (k, v) in map {
            let list = |v: &Value| -> Result<Vec<Filter>, FilterError> {
                match v {
                    Value::List(items) => items.iter().map(Self::from_value).collect(),
                    _ => Err(FilterError(format!("{k} needs a list"))),
                }
            };
            parts.push(match k.as_str() {
                "$and" => Filter::And(list(v)?),
                "$or" => Filter::Or(list(v)?),
                "$nor" => Filter::Nor(list(v)?),
                op if op.starts_with('$') => {
                    return Err(FilterError(format!("unknown top-level operator {op}")));
                }
                path => Filter::Field(path.to_string(), Cond::from_value(v)?),
            });
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            Filter::And(parts)
        })
    }

    /// Whether a run matches.
    pub fn matches(&self, key: &RunKey, run: &RunRecord) -> bool {
        match self {
            Filter::And(fs) => fs.iter().all(|f| f.matches(key, run)),
            Filter::Or(fs) => fs.iter().any(|f| f.matches(key, run)),
            Filter::Nor(fs) => !fs.iter().any(|f| f.matches(key, run)),
            Filter::Field(path, cond) => match run_field(key, run, path) {
                Some(value) => cond.holds(&value),
                None => false,
            },
        }
    }
}

impl Cond {
    fn from_value(v: &Value) -> Result<Cond, FilterError> {
        let is_ops =
            matches!(v, Value::Object(m) if !m.is_empty() && m.keys().all(|k| k.starts_with('$')));
        if !is_ops {
            return Ok(Cond(vec![Op::Eq(v.clone())]));
        }
        let Value::Object(map) = v else {
            unreachable!("checked above")
        };
        let case_insensitive =
            matches!(map.get("$options"), Some(Value::String(o)) if o.contains('i'));
        let mut ops = Vec::new();
        for (k, operand) in map {
            let list = || match operand {
                Value::List(items) => Ok(items.clone()),
                _ => Err(FilterError(format!("{k} needs a list"))),
            };
            ops.push(match k.as_str() {
                "$eq" => Op::Eq(operand.clone()),
                "$ne" => Op::Ne(operand.clone()),
                "$gt" => Op::Cmp(Ordering::Greater, false, operand.clone()),
                "$gte" => Op::Cmp(Ordering::Greater, true, operand.clone()),
                "$lt" => Op::Cmp(Ordering::Less, false, operand.clone()),
                "$lte" => Op::Cmp(Ordering::Less, true, operand.clone()),
                "$in" => Op::In(list()?),
                "$nin" => Op::Nin(list()?),
                "$exists" => Op::Exists(!matches!(operand, Value::Boolean(false) | Value::Null)),
                "$regex" => {
                    let Value::String(pattern) = operand else {
                        return Err(FilterError("$regex needs a string".into()));
                    };
                    let pattern = if case_insensitive {
                        format!("(?i){pattern}")
                    } else {
                        pattern.clone()
                    };
                    Op::Regex(
                        Regex::new(&pattern).map_err(|e| FilterError(format!("$regex: {e}")))?,
                    )
                }
                "$options" => continue,
                "$not" => Op::Not(Cond::from_value(operand)?),
                other => return Err(FilterError(format!("unknown operator {other}"))),
            });
        }
        Ok(Cond(ops))
    }

    fn holds(&self, field: &FieldValue) -> bool {
        self.0.iter().all(|op| op.holds(field))
    }
}

/// A number view of a value: JSON numbers and the non-finite sentinels.
pub fn as_number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => match s.as_str() {
            "NaN" => Some(f64::NAN),
            "Infinity" => Some(f64::INFINITY),
            "-Infinity" => Some(f64::NEG_INFINITY),
            _ => None,
        },
        _ => None,
    }
}

/// Compares two scalars of the same type; `None` across types (and for NaN).
pub fn compare(field: &FieldValue, operand: &Value) -> Option<Ordering> {
    match field {
        FieldValue::Missing => None,
        FieldValue::Time(t) => {
            let other = match operand {
                Value::String(s) => parse_datetime(s)?,
                Value::Number(n) => (n.as_f64()? * 1e6) as i64,
                _ => return None,
            };
            Some(t.cmp(&other))
        }
        FieldValue::Value(v) => compare_values(v, operand),
    }
}

/// Compares two JSON values of the same type.
pub fn compare_values(a: &Value, b: &Value) -> Option<Ordering> {
    if let (Some(x), Some(y)) = (as_number(a), as_number(b)) {
        return x.partial_cmp(&y);
    }
    match (a, b) {
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        (Value::Boolean(x), Value::Boolean(y)) => Some(x.cmp(y)),
        (Value::Null, Value::Null) => Some(Ordering::Equal),
        _ => None,
    }
}

fn equals(field: &FieldValue, operand: &Value) -> bool {
    match (field, operand) {
        (FieldValue::Missing, Value::Null) => true,
        (FieldValue::Missing, _) => false,
        (FieldValue::Value(Value::List(items)), _) => {
            items.iter().any(|item| scalar_eq(item, operand)) || list_eq(items, operand)
        }
        (FieldValue::Value(v), _) => scalar_eq(v, operand) || list_or_object_eq(v, operand),
        (FieldValue::Time(_), _) => compare(field, operand) == Some(Ordering::Equal),
    }
}

fn scalar_eq(a: &Value, b: &Value) -> bool {
    compare_values(a, b) == Some(Ordering::Equal)
}

fn list_eq(items: &[Value], operand: &Value) -> bool {
    matches!(operand, Value::List(other) if other.len() == items.len() && items.iter().zip(other).all(|(x, y)| values_eq(x, y)))
}

fn list_or_object_eq(v: &Value, operand: &Value) -> bool {
    matches!(
        (v, operand),
        (Value::Object(_), Value::Object(_)) | (Value::List(_), Value::List(_))
    ) && values_eq(v, operand)
}

fn values_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::List(x), Value::List(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| values_eq(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| values_eq(v, w)))
        }
        _ => scalar_eq(a, b),
    }
}

fn any_element(field: &FieldValue, pred: impl Fn(&FieldValue) -> bool) -> bool {
    match field {
        FieldValue::Value(Value::List(items)) => items
            .iter()
            .any(|item| pred(&FieldValue::Value(item.clone()))),
        other => pred(other),
    }
}

impl Op {
    fn holds(&self, field: &FieldValue) -> bool {
        match self {
            Op::Eq(v) => equals(field, v),
            Op::Ne(v) => !equals(field, v),
            Op::Cmp(want, or_equal, v) => any_element(field, |f| match compare(f, v) {
                Some(Ordering::Equal) => *or_equal,
                Some(o) => o == *want,
                None => false,
            }),
            Op::In(list) => list.iter().any(|v| equals(field, v)),
            Op::Nin(list) => !list.iter().any(|v| equals(field, v)),
            Op::Exists(want) => !matches!(field, FieldValue::Missing) == *want,
            Op::Regex(re) => any_element(
                field,
                |f| matches!(f, FieldValue::Value(Value::String(s)) if re.is_match(s)),
            ),
            Op::Not(cond) => !cond.holds(field),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::JsonText;

    fn run(
        name: &str,
        state: &str,
        lr: f64,
        loss: &str,
        tags: &[&str],
        created: &str,
    ) -> (RunKey, RunRecord) {
        let mut r = RunRecord::new(
            "alice",
            crate::state::parse_datetime(created).expect("time"),
        );
        r.state = state.into();
        r.config = JsonText::new(format!(
            r#"{{"lr":{{"value":{lr}}},"opt":{{"value":{{"name":"adam"}}}}}}"#
        ));
        r.summary = JsonText::new(format!(r#"{{"loss":{loss},"acc":0.5}}"#));
        r.tags = tags.iter().map(|t| t.to_string()).collect();
        r.display_name = Some(format!("disp-{name}"));
        (RunKey::new("e", "p", name), r)
    }

    fn fixture() -> Vec<(RunKey, RunRecord)> {
        vec![
            run(
                "a",
                "finished",
                0.1,
                "0.5",
                &["x", "y"],
                "2024-01-01T00:00:00",
            ),
            run("b", "running", 0.01, "NaN", &["y"], "2024-01-02T00:00:00"),
            run(
                "c",
                "crashed",
                0.001,
                "Infinity",
                &[],
                "2024-01-03T00:00:00",
            ),
            run("d", "finished", 0.01, "0.25", &["z"], "2024-01-04T00:00:00"),
        ]
    }

    fn names(filter: &str) -> Vec<String> {
        let f = Filter::parse(Some(filter)).expect("valid filter");
        fixture()
            .iter()
            .filter(|(k, r)| f.matches(k, r))
            .map(|(k, _)| k.name.clone())
            .collect()
    }

    #[test]
    fn equality_and_implicit_and() {
        assert_eq!(names("{}"), ["a", "b", "c", "d"]);
        assert_eq!(names(r#"{"state": "finished"}"#), ["a", "d"]);
        assert_eq!(names(r#"{"state": "finished", "config.lr": 0.01}"#), ["d"]);
        assert_eq!(names(r#"{"config.lr.value": {"$eq": 0.01}}"#), ["b", "d"]);
        assert_eq!(
            names(r#"{"config.opt.name": "adam"}"#),
            ["a", "b", "c", "d"]
        );
        assert_eq!(names(r#"{"display_name": "disp-c"}"#), ["c"]);
        assert_eq!(
            names(r#"{"displayName": {"$ne": "disp-c"}}"#),
            ["a", "b", "d"]
        );
    }

    #[test]
    fn comparisons_and_sets() {
        assert_eq!(names(r#"{"config.lr": {"$gt": 0.001}}"#), ["a", "b", "d"]);
        assert_eq!(
            names(r#"{"config.lr": {"$gte": 0.01, "$lt": 0.1}}"#),
            ["b", "d"]
        );
        assert_eq!(names(r#"{"config.lr": {"$lte": 0.001}}"#), ["c"]);
        assert_eq!(names(r#"{"summary_metrics.loss": {"$lt": 0.4}}"#), ["d"]);
        assert_eq!(names(r#"{"summary_metrics.loss": {"$gt": 1e300}}"#), ["c"]);
        assert_eq!(
            names(r#"{"state": {"$in": ["running", "crashed"]}}"#),
            ["b", "c"]
        );
        assert_eq!(
            names(r#"{"state": {"$nin": ["running", "crashed"]}}"#),
            ["a", "d"]
        );
    }

    #[test]
    fn logic_operators() {
        assert_eq!(
            names(r#"{"$or": [{"state": "running"}, {"name": "d"}]}"#),
            ["b", "d"]
        );
        assert_eq!(
            names(r#"{"$and": [{"state": "finished"}, {"name": {"$ne": "a"}}]}"#),
            ["d"]
        );
        assert_eq!(
            names(r#"{"$nor": [{"state": "finished"}, {"name": "b"}]}"#),
            ["c"]
        );
        assert_eq!(
            names(r#"{"name": {"$not": {"$in": ["a", "b"]}}}"#),
            ["c", "d"]
        );
    }

    #[test]
    fn arrays_exists_regex_and_times() {
        assert_eq!(names(r#"{"tags": "y"}"#), ["a", "b"]);
        assert_eq!(names(r#"{"tags": {"$in": ["z", "x"]}}"#), ["a", "d"]);
        assert_eq!(names(r#"{"tags": {"$nin": ["y"]}}"#), ["c", "d"]);
        assert_eq!(names(r#"{"tags": ["x", "y"]}"#), ["a"]);
        assert_eq!(
            names(r#"{"summary_metrics.acc": {"$exists": true}}"#),
            ["a", "b", "c", "d"]
        );
        assert_eq!(
            names(r#"{"summary_metrics.nope": {"$exists": false}}"#),
            ["a", "b", "c", "d"]
        );
        assert_eq!(
            names(r#"{"group": {"$exists": true}}"#),
            Vec::<String>::new()
        );
        assert_eq!(names(r#"{"name": {"$regex": "^[ab]$"}}"#), ["a", "b"]);
        assert_eq!(
            names(r#"{"display_name": {"$regex": "DISP-D", "$options": "i"}}"#),
            ["d"]
        );
        assert_eq!(
            names(r#"{"createdAt": {"$gt": "2024-01-02T00:00:00"}}"#),
            ["c", "d"]
        );
        assert_eq!(
            names(r#"{"created_at": {"$gte": "2024-01-02T00:00:00Z"}}"#),
            ["b", "c", "d"]
        );
        assert_eq!(names(r#"{"createdAt": {"$lt": "2024-01-02"}}"#), ["a"]);
    }

    #[test]
    fn unknown_fields_match_nothing_and_bad_input_errors() {
        assert_eq!(
            names(r#"{"no_such_field": {"$ne": 1}}"#),
            Vec::<String>::new()
        );
        assert_eq!(
            names(r#"{"$or": [{"no_such_field": 1}, {"name": "a"}]}"#),
            ["a"]
        );
        assert!(Filter::parse(Some(r#"{"name": {"$bogus": 1}}"#)).is_err());
        assert!(Filter::parse(Some(r#"{"$where": "x"}"#)).is_err());
        assert!(Filter::parse(Some(r#"{"name": {"$regex": "("}}"#)).is_err());
        assert!(Filter::parse(Some("[1]")).is_err());
        assert!(Filter::parse(Some("{not json")).is_err());
    }
}
