//! Flattening W&B documents (history rows, config, summary) into typed, dotted columns.
//!
//! Plain objects are flattened recursively into `parent.child` names — the names `historyKeys`
//! and the `metrics` view use. Media objects (they carry `_type`), lists and empty objects are
//! leaves. A column's kind is inferred over every value it receives: ints stay `Int`, ints mixed
//! with floats become `Float`, strings `Str`, booleans `Bool`, and anything else (lists, media,
//! values of several kinds) `Json`, whose cells hold the value's W&B-dialect JSON text.

use std::collections::HashMap;

use jiter::JsonValue;

use super::table::{Cell, ColKind, Column};

/// Calls `f(name, value)` for every leaf of `value` below `prefix` (`prefix` itself when the
/// value is a leaf).
pub fn for_each_leaf<'a>(
    prefix: &str,
    value: &'a JsonValue<'a>,
    f: &mut impl FnMut(&str, &'a JsonValue<'a>),
) {
    match value {
        JsonValue::Object(members)
            if !members.is_empty() && !members.iter().any(|(k, _)| k == "_type") =>
        {
            for (key, v) in members.iter() {
                let name = if prefix.is_empty() {
                    key.to_string()
                } else {
                    format!("{prefix}.{key}")
                };
                for_each_leaf(&name, v, f);
            }
        }
        _ => f(prefix, value),
    }
}

/// The kind of one leaf (`None` for `null`, which fits any column).
pub fn kind_of(value: &JsonValue<'_>) -> Option<ColKind> {
    Some(match value {
        JsonValue::Null => return None,
        JsonValue::Bool(_) => ColKind::Bool,
        JsonValue::Int(_) => ColKind::Int,
        JsonValue::Float(_) => ColKind::Float,
        JsonValue::Str(_) => ColKind::Str,
        _ => ColKind::Json,
    })
}

/// The cell of one leaf.
pub fn cell_of(value: &JsonValue<'_>) -> Cell {
    match value {
        JsonValue::Null => Cell::Null,
        JsonValue::Bool(b) => Cell::Bool(*b),
        JsonValue::Int(i) => Cell::Int(*i),
        JsonValue::Float(f) => Cell::Float(*f),
        JsonValue::Str(s) => Cell::Str(s.to_string()),
        other => {
            let mut out = Vec::new();
            crate::values::write_wandb_json(other, &mut out);
            Cell::Json(String::from_utf8_lossy(&out).into_owned())
        }
    }
}

/// Columns discovered by observing documents, in first-appearance order.
#[derive(Debug, Default)]
pub struct ColumnSet {
    columns: Vec<(String, Option<ColKind>)>,
    index: HashMap<String, usize>,
}

impl ColumnSet {
    /// Adds a column name (kind unknown yet) if it is new.
    pub fn declare(&mut self, name: &str) -> usize {
        if let Some(&i) = self.index.get(name) {
            return i;
        }
        self.index.insert(name.to_string(), self.columns.len());
        self.columns.push((name.to_string(), None));
        self.columns.len() - 1
    }

    /// Merges one value into the column `name`.
    pub fn observe(&mut self, name: &str, value: &JsonValue<'_>) {
        let i = self.declare(name);
        if let Some(kind) = kind_of(value) {
            let slot = &mut self.columns[i].1;
            *slot = Some(ColKind::merge(*slot, kind));
        }
    }

    /// Merges a kind seen without its value into the column `name`.
    pub fn observe_kind(&mut self, name: &str, kind: ColKind) {
        let i = self.declare(name);
        let slot = &mut self.columns[i].1;
        *slot = Some(ColKind::merge(*slot, kind));
    }

    /// Every leaf of `doc` (flattened below `prefix`), except the names in `skip`.
    pub fn observe_doc(&mut self, prefix: &str, doc: &JsonValue<'_>, skip: &[&str]) {
        for_each_leaf(prefix, doc, &mut |name, v| {
            if !skip.contains(&name) {
                self.observe(name, v);
            }
        });
    }

    /// Position of a column.
    pub fn position(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }

    /// Number of columns.
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> usize {
        self.columns.len()
    }

    /// The columns; those that only ever held `null` become `Json` (all null).
    pub fn columns(&self) -> Vec<Column> {
        self.columns
            .iter()
            .map(|(n, k)| Column::new(n.clone(), k.unwrap_or(ColKind::Json)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaves_are_dotted_and_kinds_merge() {
        let doc = crate::values::parse(
            br#"{"a":{"b":{"c":1}},"m":{"_type":"image-file"},"l":[1],"e":{},"n":null,"x":1}"#,
        )
        .unwrap();
        let mut set = ColumnSet::default();
        set.observe_doc("", &doc, &["x"]);
        let doc2 = crate::values::parse(br#"{"a":{"b":{"c":2.5}},"n":"s"}"#).unwrap();
        set.observe_doc("", &doc2, &[]);
        let cols = set.columns();
        let got: Vec<(&str, ColKind)> = cols.iter().map(|c| (c.name.as_str(), c.kind)).collect();
        assert_eq!(
            got,
            [
                ("a.b.c", ColKind::Float),
                ("m", ColKind::Json),
                ("l", ColKind::Json),
                ("e", ColKind::Json),
                ("n", ColKind::Str),
            ]
        );
        assert_eq!(
            cell_of(&crate::values::parse(b"[1,NaN]").unwrap()),
            Cell::Json("[1,NaN]".into())
        );
    }
}
