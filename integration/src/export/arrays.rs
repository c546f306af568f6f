//! Arrow arrays from parsed JSON cells, following the types [`super::schema`] inferred.
//!
//! Every value is written natively: NaN and ±Infinity as `Float64` values (not strings), ints in
//! an `Int64` column, ints in a `Float64` column as their float value, objects as structs (null
//! fields where a row lacks the key), lists as `List` (null elements kept), and values of mixed
//! kinds as union structs with exactly one `_type_<kind>` member set.

use std::sync::Arc;

use arrow_array::builder::{BooleanBuilder, Float64Builder, Int64Builder, StringBuilder};
use arrow_array::{ArrayRef, ListArray, StructArray};
use arrow_buffer::{NullBuffer, OffsetBuffer};
use arrow_schema::{DataType, FieldRef, Fields};
use jiter::JsonValue;

use super::schema::{Kind, Ty};

/// A column (or nested child) being built.
pub enum Col {
    /// `Boolean`.
    Bool(BooleanBuilder),
    /// `Int64`.
    Int(Int64Builder),
    /// `Float64`.
    Float(Float64Builder),
    /// `Utf8`.
    Str(StringBuilder),
    /// `List<child>`.
    List {
        /// The element field.
        field: FieldRef,
        /// Element counts per row.
        lengths: Vec<usize>,
        /// Row validity.
        valid: Vec<bool>,
        /// The elements.
        child: Box<Col>,
    },
    /// `Struct` of named children.
    Struct {
        /// The struct's fields.
        fields: Fields,
        /// Children by field name, in field order.
        children: Vec<(String, Col)>,
        /// Row validity.
        valid: Vec<bool>,
    },
    /// A union struct: one child per kind, one of them set per valid row.
    Union {
        /// The struct's fields (`_type_<kind>`).
        fields: Fields,
        /// Children by kind, in field order.
        members: Vec<(Kind, Col)>,
        /// Row validity.
        valid: Vec<bool>,
    },
}

impl Col {
    /// A builder for `ty` stored as `dt` (as [`Ty::data_type`] gave it).
    pub fn new(ty: &Ty, dt: &DataType) -> Col {
        match (ty, dt) {
            (Ty::Bool, _) => Col::Bool(BooleanBuilder::new()),
            (Ty::Int, _) => Col::Int(Int64Builder::new()),
            (Ty::Str, _) => Col::Str(StringBuilder::new()),
            (Ty::List(elem), DataType::List(field)) => Col::List {
                field: Arc::clone(field),
                lengths: Vec::new(),
                valid: Vec::new(),
                child: Box::new(Col::new(elem, field.data_type())),
            },
            (Ty::Struct(tys), DataType::Struct(fields)) => Col::Struct {
                fields: fields.clone(),
                children: fields
                    .iter()
                    .map(|f| {
                        let t = tys
                            .iter()
                            .find(|(n, _)| n == f.name())
                            .map_or(&Ty::Null, |(_, t)| t);
                        (f.name().clone(), Col::new(t, f.data_type()))
                    })
                    .collect(),
                valid: Vec::new(),
            },
            (Ty::Union(tys), DataType::Struct(fields)) => Col::Union {
                fields: fields.clone(),
                members: fields
                    .iter()
                    .filter_map(|f| {
                        tys.iter()
                            .find(|(k, _)| k.member_name() == f.name())
                            .map(|(k, t)| (*k, Col::new(t, f.data_type())))
                    })
                    .collect(),
                valid: Vec::new(),
            },
            // Floats, and placeholders for element types that only ever held nulls.
            _ => Col::Float(Float64Builder::new()),
        }
    }

    /// Appends one cell (`None` or JSON `null` → a null cell).
    pub fn append(&mut self, value: Option<&JsonValue<'_>>) {
        let value = value.filter(|v| !matches!(v, JsonValue::Null));
        match self {
            Col::Bool(b) => b.append_option(match value {
                Some(JsonValue::Bool(x)) => Some(*x),
                _ => None,
            }),
            Col::Int(b) => b.append_option(match value {
                Some(JsonValue::Int(i)) => Some(*i),
                _ => None,
            }),
            Col::Float(b) => b.append_option(value.and_then(as_f64)),
            Col::Str(b) => match value {
                Some(JsonValue::Str(s)) => b.append_value(s),
                _ => b.append_null(),
            },
            Col::List {
                lengths,
                valid,
                child,
                ..
            } => match value {
                Some(JsonValue::Array(items)) => {
                    for item in items.iter() {
                        child.append(Some(item));
                    }
                    lengths.push(items.len());
                    valid.push(true);
                }
                _ => {
                    lengths.push(0);
                    valid.push(false);
                }
            },
            Col::Struct {
                children, valid, ..
            } => match value {
                Some(JsonValue::Object(members)) => {
                    for (name, child) in children.iter_mut() {
                        // The last occurrence wins, as in every JSON reader that keeps one.
                        let found = members
                            .iter()
                            .rev()
                            .find(|(k, _)| k == name)
                            .map(|(_, v)| v);
                        child.append(found);
                    }
                    valid.push(true);
                }
                _ => {
                    for (_, child) in children.iter_mut() {
                        child.append(None);
                    }
                    valid.push(false);
                }
            },
            Col::Union { members, valid, .. } => {
                let kind = value.and_then(kind_of);
                let mut set = false;
                for (k, child) in members.iter_mut() {
                    if Some(*k) == kind {
                        child.append(value);
                        set = true;
                    } else {
                        child.append(None);
                    }
                }
                valid.push(set);
            }
        }
    }

    /// The finished array (the builder is left empty).
    pub fn finish(&mut self) -> ArrayRef {
        match self {
            Col::Bool(b) => Arc::new(b.finish()),
            Col::Int(b) => Arc::new(b.finish()),
            Col::Float(b) => Arc::new(b.finish()),
            Col::Str(b) => Arc::new(b.finish()),
            Col::List {
                field,
                lengths,
                valid,
                child,
            } => {
                let offsets = OffsetBuffer::<i32>::from_lengths(lengths.drain(..));
                let nulls = NullBuffer::from(std::mem::take(valid));
                Arc::new(ListArray::new(
                    Arc::clone(field),
                    offsets,
                    child.finish(),
                    Some(nulls),
                ))
            }
            Col::Struct {
                fields,
                children,
                valid,
            } => {
                let arrays = children.iter_mut().map(|(_, c)| c.finish()).collect();
                let nulls = NullBuffer::from(std::mem::take(valid));
                Arc::new(StructArray::new(fields.clone(), arrays, Some(nulls)))
            }
            Col::Union {
                fields,
                members,
                valid,
            } => {
                let arrays = members.iter_mut().map(|(_, c)| c.finish()).collect();
                let nulls = NullBuffer::from(std::mem::take(valid));
                Arc::new(StructArray::new(fields.clone(), arrays, Some(nulls)))
            }
        }
    }
}

fn as_f64(value: &JsonValue<'_>) -> Option<f64> {
    match value {
        JsonValue::Int(i) => Some(*i as f64),
        JsonValue::Float(f) => Some(*f),
        #[allow(unreachable_patterns)]
        JsonValue::BigInt(b) => b.to_string().parse().ok(),
        _ => None,
    }
}

fn kind_of(value: &JsonValue<'_>) -> Option<Kind> {
    Some(match value {
        JsonValue::Null => return None,
        JsonValue::Bool(_) => Kind::Bool,
        JsonValue::Str(_) => Kind::String,
        JsonValue::Array(_) => Kind::List,
        JsonValue::Object(_) => Kind::Map,
        _ => Kind::Number,
    })
}

#[cfg(test)]
mod tests {
    use arrow_array::Array;
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Float64Type, Int64Type};

    use super::*;

    fn parse(text: &str) -> JsonValue<'_> {
        JsonValue::parse_with_config(text.as_bytes(), true, jiter::PartialMode::Off).expect("json")
    }

    fn build(values: &[&str]) -> ArrayRef {
        let parsed: Vec<JsonValue<'_>> = values.iter().map(|v| parse(v)).collect();
        let ty = parsed.iter().fold(Ty::Null, |t, v| t.merge(Ty::of(v)));
        let dt = ty.data_type().expect("type");
        let mut col = Col::new(&ty, &dt);
        for v in &parsed {
            col.append(Some(v));
        }
        let out = col.finish();
        assert_eq!(out.data_type(), &dt);
        out
    }

    #[test]
    fn non_finite_floats_are_native_values() {
        let a = build(&["1", "NaN", "Infinity", "-Infinity", "null", "2.5"]);
        let f = a.as_primitive::<Float64Type>();
        assert_eq!(f.value(0), 1.0);
        assert!(f.value(1).is_nan());
        assert_eq!(f.value(2), f64::INFINITY);
        assert_eq!(f.value(3), f64::NEG_INFINITY);
        assert!(f.is_null(4));
        assert_eq!(f.value(5), 2.5);
    }

    #[test]
    fn structs_lists_and_unions() {
        let a = build(&[r#"{"a":1,"l":[1,null]}"#, r#"{"b":"x"}"#, "null"]);
        let s = a.as_struct();
        assert_eq!(s.num_columns(), 3);
        assert!(s.is_null(2));
        assert_eq!(s.column(0).as_primitive::<Int64Type>().value(0), 1);
        assert!(s.column(0).is_null(1));
        let l = s.column(1).as_list::<i32>();
        assert_eq!(l.value(0).len(), 2);
        assert!(l.value(0).is_null(1));

        let u = build(&["1", r#""s""#, "2.5", "null"]);
        let u = u.as_struct();
        assert_eq!(u.column_names(), ["_type_number", "_type_string"]);
        assert!(u.column(1).is_null(0) && !u.column(0).is_null(0));
        assert!(u.column(0).is_null(1) && !u.column(1).is_null(1));
        assert!(u.is_null(3));
    }
}
