//! Column layout of a history export: which columns a run's rows produce and their types.
//!
//! A row `{"_step": 3, "loss": 0.5, "b": {"c": 1, "d": {"e": 2}}, "img": {"_type": …}}` becomes
//! the columns `_step`, `loss`, `b.c`, `b.d`, `img`:
//! - `_step` is always the first column, `Int64`, never null;
//! - a plain object value (no `_type` key) is flattened **one level** into dotted columns, as
//!   W&B's exporter does ("the flattening only happens top level"); deeper objects stay structs;
//! - media objects (`_type` present) are struct columns;
//! - columns appear in the order their keys first appear in the run's rows.
//!
//! Types are inferred over every exported row and merged: ints and floats → `Float64` (ints
//! alone stay `Int64`), lists merge their element types, objects merge their fields (in first
//! appearance order), and values of different kinds in one column become a W&B "history store
//! union": a struct whose members are named `_type_number`, `_type_string`, `_type_bool`,
//! `_type_list`, `_type_map`, exactly one of them set per row. Columns that are null in every
//! row are dropped (absent and null are the same thing in an export).

use std::borrow::Cow;
use std::sync::Arc;

use arrow_schema::{DataType, Field, Fields, Schema};
use jiter::JsonValue;

/// The step column's name.
pub const STEP_COLUMN: &str = "_step";

/// The kind of a JSON value, which decides its member in a union column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// Ints and floats (NaN and ±Infinity included).
    Number,
    /// Strings.
    String,
    /// Booleans.
    Bool,
    /// Arrays.
    List,
    /// Objects.
    Map,
}

impl Kind {
    /// The member name in a union struct.
    pub fn member_name(self) -> &'static str {
        match self {
            Kind::Number => "_type_number",
            Kind::String => "_type_string",
            Kind::Bool => "_type_bool",
            Kind::List => "_type_list",
            Kind::Map => "_type_map",
        }
    }
}

/// An inferred column (or nested value) type.
#[derive(Debug, Clone, PartialEq)]
pub enum Ty {
    /// Only nulls seen so far.
    Null,
    /// Booleans.
    Bool,
    /// Integers that fit `i64`.
    Int,
    /// Floats (or a mix of ints and floats).
    Float,
    /// Strings.
    Str,
    /// Arrays of the element type.
    List(Box<Ty>),
    /// Objects with these fields, in first-appearance order.
    Struct(Vec<(String, Ty)>),
    /// Values of several kinds: one member per kind (kept sorted by kind).
    Union(Vec<(Kind, Ty)>),
}

impl Ty {
    /// The type of one value.
    pub fn of(value: &JsonValue<'_>) -> Ty {
        match value {
            JsonValue::Null => Ty::Null,
            JsonValue::Bool(_) => Ty::Bool,
            JsonValue::Int(_) => Ty::Int,
            JsonValue::Float(_) => Ty::Float,
            // Integers beyond i64 can only be stored as floats.
            #[allow(unreachable_patterns)]
            JsonValue::BigInt(_) => Ty::Float,
            JsonValue::Str(_) => Ty::Str,
            JsonValue::Array(items) => {
                let mut elem = Ty::Null;
                for item in items.iter() {
                    elem = elem.merge(Ty::of(item));
                }
                Ty::List(Box::new(elem))
            }
            JsonValue::Object(members) => {
                let mut fields: Vec<(String, Ty)> = Vec::with_capacity(members.len());
                for (k, v) in members.iter() {
                    merge_field(&mut fields, k, Ty::of(v));
                }
                Ty::Struct(fields)
            }
        }
    }

    fn kind(&self) -> Option<Kind> {
        match self {
            Ty::Null | Ty::Union(_) => None,
            Ty::Bool => Some(Kind::Bool),
            Ty::Int | Ty::Float => Some(Kind::Number),
            Ty::Str => Some(Kind::String),
            Ty::List(_) => Some(Kind::List),
            Ty::Struct(_) => Some(Kind::Map),
        }
    }

    /// The least type holding values of both types.
    pub fn merge(self, other: Ty) -> Ty {
        match (self, other) {
            (Ty::Null, t) | (t, Ty::Null) => t,
            (Ty::Bool, Ty::Bool) => Ty::Bool,
            (Ty::Int, Ty::Int) => Ty::Int,
            (Ty::Int | Ty::Float, Ty::Int | Ty::Float) => Ty::Float,
            (Ty::Str, Ty::Str) => Ty::Str,
            (Ty::List(a), Ty::List(b)) => Ty::List(Box::new(a.merge(*b))),
            (Ty::Struct(mut a), Ty::Struct(b)) => {
                for (k, t) in b {
                    merge_field(&mut a, &k, t);
                }
                Ty::Struct(a)
            }
            (Ty::Union(mut members), t) | (t, Ty::Union(mut members)) => {
                match t {
                    Ty::Union(more) => {
                        for (_, m) in more {
                            add_member(&mut members, m);
                        }
                    }
                    t => add_member(&mut members, t),
                }
                Ty::Union(members)
            }
            (a, b) => {
                let mut members = Vec::with_capacity(2);
                add_member(&mut members, a);
                add_member(&mut members, b);
                Ty::Union(members)
            }
        }
    }

    /// The Arrow type, or `None` when nothing but nulls (or empty objects) was seen.
    pub fn data_type(&self) -> Option<DataType> {
        match self {
            Ty::Null => None,
            Ty::Bool => Some(DataType::Boolean),
            Ty::Int => Some(DataType::Int64),
            Ty::Float => Some(DataType::Float64),
            Ty::Str => Some(DataType::Utf8),
            Ty::List(elem) => {
                // A list of nothing but nulls (or of empty lists) still needs an element type;
                // its elements render as `null` either way.
                let elem = elem.data_type().unwrap_or(DataType::Float64);
                Some(DataType::List(Arc::new(Field::new("item", elem, true))))
            }
            Ty::Struct(fields) => {
                let fields: Vec<Field> = fields
                    .iter()
                    .filter_map(|(name, t)| Some(Field::new(name, t.data_type()?, true)))
                    .collect();
                (!fields.is_empty()).then(|| DataType::Struct(Fields::from(fields)))
            }
            Ty::Union(members) => {
                let fields: Vec<Field> = members
                    .iter()
                    .filter_map(|(kind, t)| {
                        Some(Field::new(kind.member_name(), t.data_type()?, true))
                    })
                    .collect();
                (!fields.is_empty()).then(|| DataType::Struct(Fields::from(fields)))
            }
        }
    }
}

fn merge_field(fields: &mut Vec<(String, Ty)>, name: &str, t: Ty) {
    match fields.iter_mut().find(|(k, _)| k == name) {
        Some((_, existing)) => {
            let old = std::mem::replace(existing, Ty::Null);
            *existing = old.merge(t);
        }
        None => fields.push((name.to_string(), t)),
    }
}

fn add_member(members: &mut Vec<(Kind, Ty)>, t: Ty) {
    let Some(kind) = t.kind() else { return };
    match members.iter_mut().find(|(k, _)| *k == kind) {
        Some((_, existing)) => {
            let old = std::mem::replace(existing, Ty::Null);
            *existing = old.merge(t);
        }
        None => {
            members.push((kind, t));
            members.sort_by_key(|(k, _)| *k);
        }
    }
}

/// Whether an object value is flattened into dotted columns (plain dicts are; media objects,
/// which carry `_type`, are not).
pub fn is_flattened(value: &JsonValue<'_>) -> bool {
    match value {
        JsonValue::Object(members) => !members.iter().any(|(k, _)| k == "_type"),
        _ => false,
    }
}

/// Calls `f(column_name, value)` for every cell a row contributes (the `_step` key excluded).
pub fn for_each_cell<'a>(
    row: &'a JsonValue<'a>,
    mut f: impl FnMut(Cow<'a, str>, &'a JsonValue<'a>),
) {
    let JsonValue::Object(members) = row else {
        return;
    };
    for (key, value) in members.iter() {
        if key == STEP_COLUMN {
            continue;
        }
        if is_flattened(value) {
            if let JsonValue::Object(inner) = value {
                for (sub, v) in inner.iter() {
                    f(Cow::Owned(format!("{key}.{sub}")), v);
                }
            }
        } else {
            f(Cow::Borrowed(key.as_ref()), value);
        }
    }
}

/// The columns of a run's export, built by feeding every row once.
#[derive(Debug, Default)]
pub struct ColumnPlan {
    columns: Vec<(String, Ty)>,
    index: std::collections::HashMap<String, usize>,
}

impl ColumnPlan {
    /// Merges one row's cells into the plan.
    pub fn observe(&mut self, row: &JsonValue<'_>) {
        for_each_cell(row, |name, value| {
            let t = Ty::of(value);
            match self.index.get(name.as_ref()) {
                Some(&i) => {
                    let old = std::mem::replace(&mut self.columns[i].1, Ty::Null);
                    self.columns[i].1 = old.merge(t);
                }
                None => {
                    self.index.insert(name.to_string(), self.columns.len());
                    self.columns.push((name.into_owned(), t));
                }
            }
        });
    }

    /// The final columns (step first, all-null columns dropped) with their types.
    pub fn finish(self) -> (Arc<Schema>, Vec<Ty>) {
        let mut fields = vec![Field::new(STEP_COLUMN, DataType::Int64, false)];
        let mut types = vec![Ty::Int];
        for (name, t) in self.columns {
            if let Some(dt) = t.data_type() {
                fields.push(Field::new(name, dt, true));
                types.push(t);
            }
        }
        (Arc::new(Schema::new(fields)), types)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> JsonValue<'_> {
        JsonValue::parse_with_config(text.as_bytes(), true, jiter::PartialMode::Off).expect("json")
    }

    #[test]
    fn ints_and_floats_merge_to_float_and_kinds_to_unions() {
        assert_eq!(Ty::Int.merge(Ty::Float), Ty::Float);
        assert_eq!(Ty::Null.merge(Ty::Int), Ty::Int);
        let u = Ty::Int.merge(Ty::Str).merge(Ty::Float);
        assert_eq!(
            u,
            Ty::Union(vec![(Kind::Number, Ty::Float), (Kind::String, Ty::Str)])
        );
        let DataType::Struct(fields) = u.data_type().expect("type") else {
            panic!("union is a struct")
        };
        let names: Vec<&str> = fields.iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, ["_type_number", "_type_string"]);
    }

    #[test]
    fn plain_objects_flatten_one_level_media_stays_whole() {
        let mut plan = ColumnPlan::default();
        plan.observe(&parse(
            r#"{"loss":1,"_step":0,"b":{"c":1,"d":{"e":2}},"img":{"_type":"image-file","w":3}}"#,
        ));
        plan.observe(&parse(
            r#"{"_step":1,"loss":0.5,"never":null,"b":{"c":NaN}}"#,
        ));
        let (schema, types) = plan.finish();
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, ["_step", "loss", "b.c", "b.d", "img"]);
        assert_eq!(types[1], Ty::Float);
        assert_eq!(types[2], Ty::Float);
        assert!(matches!(schema.field(3).data_type(), DataType::Struct(f) if f.len() == 1));
        assert!(matches!(schema.field(4).data_type(), DataType::Struct(f) if f.len() == 2));
        assert!(!schema.field(0).is_nullable());
    }

    #[test]
    fn lists_merge_elements() {
        let t = Ty::of(&parse("[1, 2.5, null]"));
        assert_eq!(t, Ty::List(Box::new(Ty::Float)));
        assert_eq!(
            Ty::of(&parse("[]")).data_type(),
            Some(DataType::List(Arc::new(Field::new(
                "item",
                DataType::Float64,
                true
            ))))
        );
        assert_eq!(Ty::of(&parse("{}")).data_type(), None);
    }
}
