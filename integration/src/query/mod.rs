//! Run queries: field paths, Mongo-style filters, ordering and cursor pagination.

pub mod fields;
pub mod filters;

use std::cmp::Ordering;

use async_graphql::Value;
use base64::Engine as _;

use fields::{FieldValue, run_field};
use filters::{as_number, compare_values};

use crate::state::{RunHandle, RunKey, RunRecord};

/// A parsed `order` argument: `[+|-]<key>`, default `+created_at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    /// Field path (see [`fields`]); `created_at` when the key is unknown.
    pub key: String,
    /// Descending (`-` prefix).
    pub descending: bool,
}

impl Order {
    /// Parses an order string. Accepts `created_at`, `heartbeat_at`, `updatedAt`, `name`,
    /// `config.<k>.value`, `summary_metrics.<k>` and every other filter field path.
    pub fn parse(text: Option<&str>) -> Order {
        let text = text.map(str::trim).unwrap_or("");
        let (descending, key) = match text.as_bytes().first() {
            Some(b'-') => (true, &text[1..]),
            Some(b'+') => (false, &text[1..]),
            _ => (false, text),
        };
        let probe = RunRecord::new("", 0);
        let key = if key.is_empty() || run_field(&RunKey::new("", "", ""), &probe, key).is_none() {
            "created_at".to_string()
        } else {
            key.to_string()
        };
        Order { key, descending }
    }
}

fn type_rank(v: &FieldValue) -> u8 {
    match v {
        FieldValue::Time(_) => 0,
        FieldValue::Value(v) if as_number(v).is_some() => 1,
        FieldValue::Value(Value::String(_)) => 2,
        FieldValue::Value(Value::Boolean(_)) => 3,
        FieldValue::Value(_) => 4,
        FieldValue::Missing => 5,
    }
}

fn cmp_field(a: &FieldValue, b: &FieldValue) -> Ordering {
    match (a, b) {
        (FieldValue::Time(x), FieldValue::Time(y)) => x.cmp(y),
        (FieldValue::Value(x), FieldValue::Value(y)) => compare_values(x, y).unwrap_or_else(|| {
            // NaN sorts after every number; other mixes by type.
            let nan = |v: &Value| as_number(v).is_some_and(f64::is_nan);
            nan(x).cmp(&nan(y))
        }),
        _ => Ordering::Equal,
    }
}

/// Sorts runs by `order`. Runs without a value sort last in both directions; ties keep creation
/// order.
pub fn sort_runs(runs: &mut [RunHandle], order: &Order) {
    let mut keyed: Vec<(FieldValue, u64, RunHandle)> = runs
        .iter()
        .map(|r| {
            let rec = r.record.read();
            let v = run_field(&r.key, &rec, &order.key).unwrap_or(FieldValue::Missing);
            (v, r.seq, r.clone())
        })
        .collect();
    keyed.sort_by(|(a, sa, _), (b, sb, _)| {
        let (ra, rb) = (type_rank(a), type_rank(b));
        let missing_last = (ra == 5).cmp(&(rb == 5));
        if missing_last != Ordering::Equal {
            return missing_last;
        }
        let mut o = ra.cmp(&rb).then_with(|| cmp_field(a, b));
        if order.descending {
            o = o.reverse();
        }
        o.then(sa.cmp(sb))
    });
    for (slot, (_, _, run)) in runs.iter_mut().zip(keyed) {
        *slot = run;
    }
}

/// Encodes an offset cursor the way SaaS does (`base64("arrayconnection:N")`).
pub fn encode_cursor(index: u64) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("arrayconnection:{index}"))
}

/// Decodes an offset cursor (also accepts a bare number).
pub fn decode_cursor(cursor: &str) -> Option<u64> {
    if let Ok(n) = cursor.parse::<u64>() {
        return Some(n);
    }
    let text = crate::state::unb64(cursor)?;
    text.strip_prefix("arrayconnection:")?.parse().ok()
}

/// A page of an offset-paginated list: the items' start index and whether more follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// Index of the first item.
    pub start: usize,
    /// One past the last item.
    pub end: usize,
    /// Whether items follow `end`.
    pub has_next: bool,
}

/// Resolves `after`/`first` against a list of `total` items (`first` defaults to 50, and is
/// capped at `max_first`).
pub fn page(total: usize, after: Option<&str>, first: Option<i32>, max_first: usize) -> Page {
    let start = after
        .and_then(decode_cursor)
        .map_or(0, |i| (i as usize).saturating_add(1))
        .min(total);
    let first = first.map_or(50, |f| f.max(0) as usize).min(max_first);
    let end = start.saturating_add(first).min(total);
    Page {
        start,
        end,
        has_next: end < total,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{JsonText, RunCell};
    use parking_lot::RwLock;
    use std::sync::Arc;

    fn handle(name: &str, seq: u64, created: i64, loss: &str, lr: f64) -> RunHandle {
        let mut rec = RunRecord::new("u", created);
        rec.summary = JsonText::new(format!(r#"{{"loss":{loss}}}"#));
        rec.config = JsonText::new(format!(r#"{{"lr":{{"value":{lr}}}}}"#));
        let key = RunKey::new("e", "p", name);
        Arc::new(RunCell {
            storage_id: key.storage_id(),
            key,
            seq,
            project_internal_id: 1,
            record: RwLock::new(rec),
        })
    }

    fn order_names(runs: &[RunHandle], order: &str) -> Vec<String> {
        let mut v = runs.to_vec();
        sort_runs(&mut v, &Order::parse(Some(order)));
        v.iter().map(|r| r.key.name.clone()).collect()
    }

    #[test]
    fn ordering_by_time_name_config_and_summary() {
        let runs = vec![
            handle("b", 0, 30, "0.5", 0.1),
            handle("a", 1, 10, "NaN", 0.3),
            handle("c", 2, 20, "0.1", 0.2),
        ];
        assert_eq!(order_names(&runs, "+created_at"), ["a", "c", "b"]);
        assert_eq!(order_names(&runs, "-created_at"), ["b", "c", "a"]);
        assert_eq!(order_names(&runs, "createdAt"), ["a", "c", "b"]);
        assert_eq!(order_names(&runs, "name"), ["a", "b", "c"]);
        assert_eq!(order_names(&runs, "-name"), ["c", "b", "a"]);
        assert_eq!(order_names(&runs, "config.lr.value"), ["b", "c", "a"]);
        assert_eq!(order_names(&runs, "-config.lr"), ["a", "c", "b"]);
        assert_eq!(
            order_names(&runs, "summary_metrics.loss"),
            ["c", "b", "a"],
            "NaN sorts last"
        );
        assert_eq!(
            order_names(&runs, "summary_metrics.missing"),
            ["b", "a", "c"],
            "ties keep creation order"
        );
        assert_eq!(
            order_names(&runs, "bogus_key"),
            ["a", "c", "b"],
            "unknown keys order by created_at"
        );
    }

    #[test]
    fn missing_values_sort_last_both_ways() {
        let runs = vec![handle("x", 0, 1, "1", 0.1), handle("y", 1, 2, "2", 0.1)];
        runs[0].record.write().summary = JsonText::new("{}");
        assert_eq!(order_names(&runs, "summary_metrics.loss"), ["y", "x"]);
        assert_eq!(order_names(&runs, "-summary_metrics.loss"), ["y", "x"]);
    }

    #[test]
    fn cursors_and_pages() {
        assert_eq!(decode_cursor(&encode_cursor(199)), Some(199));
        assert_eq!(decode_cursor("7"), Some(7));
        assert_eq!(decode_cursor("garbage!"), None);
        assert_eq!(
            page(5, None, Some(2), 1000),
            Page {
                start: 0,
                end: 2,
                has_next: true
            }
        );
        assert_eq!(
            page(5, Some(&encode_cursor(1)), Some(2), 1000),
            Page {
                start: 2,
                end: 4,
                has_next: true
            }
        );
        assert_eq!(
            page(5, Some(&encode_cursor(3)), Some(2), 1000),
            Page {
                start: 4,
                end: 5,
                has_next: false
            }
        );
        assert_eq!(
            page(5, Some(&encode_cursor(9)), Some(2), 1000),
            Page {
                start: 5,
                end: 5,
                has_next: false
            }
        );
        assert_eq!(page(500, None, None, 1000).end, 50);
        assert_eq!(page(5000, None, Some(100_000), 1000).end, 1000);
    }
}
