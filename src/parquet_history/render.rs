//! Exported record batches → W&B-dialect JSON rows.
//!
//! The rules (documented in `docs/MIRROR.md`, "History from parquet exports"):
//! - **Keys in file column order**, as the SDK's parquet reader yields them; `_step` is an
//!   ordinary column (first in W&B-style exports).
//! - **Null cells are absent keys.** An export cannot tell an absent key from an explicit
//!   `null`, and a live row lacks the keys it did not log, so nulls are skipped at the top level
//!   and inside structs (list elements keep their `null`s: positions matter).
//! - **Dotted columns are re-nested one level**: `b.c` and `b.d` become `"b":{"c":…,"d":…}` at
//!   the position of the first `b.*` column, undoing the exporter's one-level flattening so the
//!   row has the shape that was logged (and that live `history` pages return). A column name is
//!   split at its first dot; a top-level key that itself contains a dot (`"acc.top1"`) cannot be
//!   told apart from a nested one in any export and comes back nested. When a row has both a
//!   value for `b` and for `b.c`, `b` is written as is and the children keep their dotted names.
//! - **Union structs** (every field named `_type_<kind>`, W&B's "history store union") become
//!   the one member that is set.
//! - **Values**: ints as ints; floats spelled as wandb-core spells them ([`super::gofloat`]),
//!   NaN/±Infinity as the bare tokens; strings JSON-escaped; structs and maps as objects; lists
//!   as arrays; dictionary-encoded columns as their values; binary cells holding JSON as that
//!   JSON, other binary as base64 text (the SDK's reader does the same). Types the SDK's reader
//!   does not understand (temporal, decimal, …) are skipped like nulls and counted.

use std::collections::HashMap;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Float16Type, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type, UInt8Type,
    UInt16Type, UInt32Type, UInt64Type,
};
use arrow_array::{Array, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Schema};
use base64::Engine as _;

use super::error::ParquetHistoryError;
use super::gofloat::write_go_float;

/// The step column's name.
pub const STEP_COLUMN: &str = "_step";

/// One top-level key of the output rows.
#[derive(Debug, Clone)]
enum Entry {
    /// A column written under its own name.
    Column { col: usize, key: Vec<u8> },
    /// Dotted columns `key.child` re-nested under `key` (plus a plain `key` column, if any).
    Group {
        key: Vec<u8>,
        scalar: Option<usize>,
        children: Vec<Child>,
    },
}

#[derive(Debug, Clone)]
struct Child {
    col: usize,
    /// `"child"` as a JSON string literal.
    key: Vec<u8>,
    /// `"key.child"`, used when the group cannot be nested.
    flat_key: Vec<u8>,
}

fn literal(s: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len() + 2);
    write_str(s, &mut out);
    out
}

fn write_str(s: &str, out: &mut Vec<u8>) {
    // serde_json's escaping is the reference; writing into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// Counters of what rendering could not represent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RenderStats {
    /// Cells of a type the reader does not render (skipped like nulls).
    pub unsupported_cells: u64,
    /// Rows without a usable `_step` (dropped).
    pub rows_without_step: u64,
}

/// Renders the rows of batches that share one schema.
#[derive(Debug, Clone)]
pub struct RowRenderer {
    entries: Vec<Entry>,
    step_col: usize,
}

impl RowRenderer {
    /// A renderer for files with `schema`. Fails when there is no `_step` column (the same
    /// check the SDK's reader makes).
    pub fn new(schema: &Schema) -> Result<Self, ParquetHistoryError> {
        let step_col = schema
            .index_of(STEP_COLUMN)
            .map_err(|_| ParquetHistoryError::NoStepColumn)?;
        if !step_type_supported(schema.field(step_col).data_type()) {
            return Err(ParquetHistoryError::BadStepColumn(format!(
                "{:?}",
                schema.field(step_col).data_type()
            )));
        }
        let mut entries: Vec<Entry> = Vec::new();
        let mut by_key: HashMap<String, usize> = HashMap::new();
        for (col, field) in schema.fields().iter().enumerate() {
            let name = field.name();
            let split = (name != STEP_COLUMN)
                .then(|| name.split_once('.'))
                .flatten()
                .filter(|(parent, child)| !parent.is_empty() && !child.is_empty());
            match split {
                None => match by_key.get(name.as_str()) {
                    Some(&i) => {
                        if let Entry::Group { scalar, .. } = &mut entries[i] {
                            scalar.get_or_insert(col);
                        }
                    }
                    None => {
                        by_key.insert(name.clone(), entries.len());
                        entries.push(Entry::Column {
                            col,
                            key: literal(name),
                        });
                    }
                },
                Some((parent, child)) => {
                    let child = Child {
                        col,
                        key: literal(child),
                        flat_key: literal(name),
                    };
                    match by_key.get(parent) {
                        Some(&i) => match &mut entries[i] {
                            Entry::Group { children, .. } => children.push(child),
                            Entry::Column { col: scalar, key } => {
                                entries[i] = Entry::Group {
                                    key: std::mem::take(key),
                                    scalar: Some(*scalar),
                                    children: vec![child],
                                };
                            }
                        },
                        None => {
                            by_key.insert(parent.to_string(), entries.len());
                            entries.push(Entry::Group {
                                key: literal(parent),
                                scalar: None,
                                children: vec![child],
                            });
                        }
                    }
                }
            }
        }
        Ok(RowRenderer { entries, step_col })
    }

    /// Appends `(step, row text)` for every row of `batch` (which must have the renderer's
    /// schema) whose step is at least `min_step`.
    pub fn render(
        &self,
        batch: &RecordBatch,
        min_step: i64,
        rows: &mut Vec<(i64, String)>,
        stats: &mut RenderStats,
    ) {
        let cells: Vec<Cell<'_>> = batch
            .columns()
            .iter()
            .map(|c| Cell::of(c.as_ref()))
            .collect();
        let step_array = batch.column(self.step_col);
        let mut buf = Vec::with_capacity(512);
        for row in 0..batch.num_rows() {
            let Some(step) = step_at(step_array.as_ref(), row) else {
                stats.rows_without_step += 1;
                continue;
            };
            if step < min_step {
                continue;
            }
            buf.clear();
            self.render_row(&cells, row, &mut buf, stats);
            // Everything written is UTF-8: copied `str`s, ASCII, and serde_json's escapes.
            rows.push((step, String::from_utf8_lossy(&buf).into_owned()));
        }
    }

    fn render_row(
        &self,
        cells: &[Cell<'_>],
        row: usize,
        out: &mut Vec<u8>,
        stats: &mut RenderStats,
    ) {
        out.push(b'{');
        let mut first = true;
        let mut present: Vec<&Child> = Vec::new();
        let mut sep = |out: &mut Vec<u8>| {
            if !std::mem::take(&mut first) {
                out.push(b',');
            }
        };
        for entry in &self.entries {
            match entry {
                Entry::Column { col, key } => {
                    let cell = &cells[*col];
                    if cell.present(row, stats) {
                        sep(out);
                        out.extend_from_slice(key);
                        out.push(b':');
                        cell.write(row, out, stats);
                    }
                }
                Entry::Group {
                    key,
                    scalar,
                    children,
                } => {
                    let scalar = scalar.filter(|c| cells[*c].present(row, stats));
                    present.clear();
                    for child in children {
                        if cells[child.col].present(row, stats) {
                            present.push(child);
                        }
                    }
                    if let Some(s) = scalar {
                        sep(out);
                        out.extend_from_slice(key);
                        out.push(b':');
                        cells[s].write(row, out, stats);
                        for child in &present {
                            sep(out);
                            out.extend_from_slice(&child.flat_key);
                            out.push(b':');
                            cells[child.col].write(row, out, stats);
                        }
                    } else if !present.is_empty() {
                        sep(out);
                        out.extend_from_slice(key);
                        out.extend_from_slice(b":{");
                        for (i, child) in present.iter().enumerate() {
                            if i > 0 {
                                out.push(b',');
                            }
                            out.extend_from_slice(&child.key);
                            out.push(b':');
                            cells[child.col].write(row, out, stats);
                        }
                        out.push(b'}');
                    }
                }
            }
        }
        out.push(b'}');
    }
}

fn step_type_supported(dt: &DataType) -> bool {
    dt.is_integer() || matches!(dt, DataType::Float32 | DataType::Float64)
}

/// The step of a row, like the SDK: integers as is, floats truncated, null/NaN → `None`.
pub fn step_at(array: &dyn Array, row: usize) -> Option<i64> {
    if array.is_null(row) {
        return None;
    }
    let float = |v: f64| {
        let t = v.trunc();
        (t >= i64::MIN as f64 && t < i64::MAX as f64).then_some(t as i64)
    };
    match array.data_type() {
        DataType::Int64 => Some(array.as_primitive::<Int64Type>().value(row)),
        DataType::Int32 => Some(i64::from(array.as_primitive::<Int32Type>().value(row))),
        DataType::Int16 => Some(i64::from(array.as_primitive::<Int16Type>().value(row))),
        DataType::Int8 => Some(i64::from(array.as_primitive::<Int8Type>().value(row))),
        DataType::UInt64 => i64::try_from(array.as_primitive::<UInt64Type>().value(row)).ok(),
        DataType::UInt32 => Some(i64::from(array.as_primitive::<UInt32Type>().value(row))),
        DataType::UInt16 => Some(i64::from(array.as_primitive::<UInt16Type>().value(row))),
        DataType::UInt8 => Some(i64::from(array.as_primitive::<UInt8Type>().value(row))),
        DataType::Float64 => float(array.as_primitive::<Float64Type>().value(row)),
        DataType::Float32 => float(f64::from(array.as_primitive::<Float32Type>().value(row))),
        _ => None,
    }
}

/// A column of one batch, downcast once (the common types get a direct path).
enum Cell<'a> {
    I64(&'a Int64Array),
    F64(&'a Float64Array),
    Str(&'a StringArray),
    Bool(&'a BooleanArray),
    Any(&'a dyn Array),
}

impl<'a> Cell<'a> {
    fn of(array: &'a dyn Array) -> Cell<'a> {
        match array.data_type() {
            DataType::Int64 => Cell::I64(array.as_primitive()),
            DataType::Float64 => Cell::F64(array.as_primitive()),
            DataType::Utf8 => Cell::Str(array.as_string()),
            DataType::Boolean => Cell::Bool(array.as_boolean()),
            _ => Cell::Any(array),
        }
    }

    fn present(&self, row: usize, stats: &mut RenderStats) -> bool {
        match self {
            Cell::I64(a) => a.is_valid(row),
            Cell::F64(a) => a.is_valid(row),
            Cell::Str(a) => a.is_valid(row),
            Cell::Bool(a) => a.is_valid(row),
            Cell::Any(a) => {
                if a.is_null(row) {
                    return false;
                }
                if !supported(a.data_type()) {
                    stats.unsupported_cells += 1;
                    return false;
                }
                !is_empty_union(*a, row)
            }
        }
    }

    fn write(&self, row: usize, out: &mut Vec<u8>, stats: &mut RenderStats) {
        match self {
            Cell::I64(a) => {
                out.extend_from_slice(itoa::Buffer::new().format(a.value(row)).as_bytes())
            }
            Cell::F64(a) => write_go_float(a.value(row), out),
            Cell::Str(a) => write_str(a.value(row), out),
            Cell::Bool(a) => out.extend_from_slice(if a.value(row) { b"true" } else { b"false" }),
            Cell::Any(a) => write_value(*a, row, out, stats),
        }
    }
}

/// Whether the reader renders values of this type (the SDK's reader writes null for the rest).
fn supported(dt: &DataType) -> bool {
    match dt {
        DataType::Null
        | DataType::Boolean
        | DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::UInt64
        | DataType::Float16
        | DataType::Float32
        | DataType::Float64
        | DataType::Utf8
        | DataType::LargeUtf8
        | DataType::Utf8View
        | DataType::Binary
        | DataType::LargeBinary
        | DataType::BinaryView
        | DataType::FixedSizeBinary(_)
        | DataType::Struct(_)
        | DataType::Map(_, _) => true,
        DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _) => {
            supported(f.data_type())
        }
        DataType::Dictionary(_, v) => supported(v),
        _ => false,
    }
}

/// A union struct: at least one field, every field named `_type_…`.
fn is_union(dt: &DataType) -> bool {
    matches!(dt, DataType::Struct(fields)
        if !fields.is_empty() && fields.iter().all(|f| f.name().starts_with("_type_")))
}

fn is_empty_union(array: &dyn Array, row: usize) -> bool {
    if !is_union(array.data_type()) {
        return false;
    }
    let s = array.as_struct();
    s.columns().iter().all(|c| absent(c.as_ref(), row))
}

/// Whether a nested value counts as absent (null, unsupported, or an empty union).
fn absent(array: &dyn Array, row: usize) -> bool {
    array.is_null(row) || !supported(array.data_type()) || is_empty_union(array, row)
}

/// Writes the value at `row` of any supported array.
fn write_value(array: &dyn Array, row: usize, out: &mut Vec<u8>, stats: &mut RenderStats) {
    if array.is_null(row) {
        out.extend_from_slice(b"null");
        return;
    }
    let int =
        |out: &mut Vec<u8>, v: i64| out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
    match array.data_type() {
        DataType::Null => out.extend_from_slice(b"null"),
        DataType::Boolean => out.extend_from_slice(if array.as_boolean().value(row) {
            b"true"
        } else {
            b"false"
        }),
        DataType::Int8 => int(out, i64::from(array.as_primitive::<Int8Type>().value(row))),
        DataType::Int16 => int(out, i64::from(array.as_primitive::<Int16Type>().value(row))),
        DataType::Int32 => int(out, i64::from(array.as_primitive::<Int32Type>().value(row))),
        DataType::Int64 => int(out, array.as_primitive::<Int64Type>().value(row)),
        DataType::UInt8 => int(out, i64::from(array.as_primitive::<UInt8Type>().value(row))),
        DataType::UInt16 => int(
            out,
            i64::from(array.as_primitive::<UInt16Type>().value(row)),
        ),
        DataType::UInt32 => int(
            out,
            i64::from(array.as_primitive::<UInt32Type>().value(row)),
        ),
        DataType::UInt64 => out.extend_from_slice(
            itoa::Buffer::new()
                .format(array.as_primitive::<UInt64Type>().value(row))
                .as_bytes(),
        ),
        DataType::Float16 => write_go_float(
            f64::from(array.as_primitive::<Float16Type>().value(row)),
            out,
        ),
        DataType::Float32 => write_go_float(
            f64::from(array.as_primitive::<Float32Type>().value(row)),
            out,
        ),
        DataType::Float64 => write_go_float(array.as_primitive::<Float64Type>().value(row), out),
        DataType::Utf8 => write_str(array.as_string::<i32>().value(row), out),
        DataType::LargeUtf8 => write_str(array.as_string::<i64>().value(row), out),
        DataType::Utf8View => write_str(array.as_string_view().value(row), out),
        DataType::Binary => write_binary(array.as_binary::<i32>().value(row), out),
        DataType::LargeBinary => write_binary(array.as_binary::<i64>().value(row), out),
        DataType::BinaryView => write_binary(array.as_binary_view().value(row), out),
        DataType::FixedSizeBinary(_) => write_binary(array.as_fixed_size_binary().value(row), out),
        DataType::List(_) => write_list(array.as_list::<i32>().value(row).as_ref(), out, stats),
        DataType::LargeList(_) => {
            write_list(array.as_list::<i64>().value(row).as_ref(), out, stats)
        }
        DataType::FixedSizeList(_, _) => {
            write_list(array.as_fixed_size_list().value(row).as_ref(), out, stats)
        }
        DataType::Struct(fields) => {
            let s = array.as_struct();
            if is_union(array.data_type()) {
                match s.columns().iter().find(|c| !absent(c.as_ref(), row)) {
                    Some(member) => write_value(member.as_ref(), row, out, stats),
                    None => out.extend_from_slice(b"null"),
                }
                return;
            }
            out.push(b'{');
            let mut first = true;
            for (field, child) in fields.iter().zip(s.columns()) {
                if absent(child.as_ref(), row) {
                    if !child.is_null(row) && !supported(child.data_type()) {
                        stats.unsupported_cells += 1;
                    }
                    continue;
                }
                if !std::mem::take(&mut first) {
                    out.push(b',');
                }
                write_str(field.name(), out);
                out.push(b':');
                write_value(child.as_ref(), row, out, stats);
            }
            out.push(b'}');
        }
        DataType::Map(_, _) => {
            let entries = array.as_map().value(row);
            let (keys, values) = (entries.column(0), entries.column(1));
            out.push(b'{');
            let mut first = true;
            for i in 0..entries.len() {
                if keys.is_null(i) || absent(values.as_ref(), i) {
                    continue;
                }
                if !std::mem::take(&mut first) {
                    out.push(b',');
                }
                // Keys are strings in W&B data; anything else is rendered and quoted.
                let mut key = Vec::new();
                write_value(keys.as_ref(), i, &mut key, stats);
                if key.first() == Some(&b'"') {
                    out.extend_from_slice(&key);
                } else {
                    write_str(&String::from_utf8_lossy(&key), out);
                }
                out.push(b':');
                write_value(values.as_ref(), i, out, stats);
            }
            out.push(b'}');
        }
        DataType::Dictionary(_, _) => {
            let dict = array.as_any_dictionary();
            match step_at(dict.keys(), row).and_then(|k| usize::try_from(k).ok()) {
                Some(key) if key < dict.values().len() => {
                    write_value(dict.values().as_ref(), key, out, stats)
                }
                _ => out.extend_from_slice(b"null"),
            }
        }
        _ => {
            stats.unsupported_cells += 1;
            out.extend_from_slice(b"null");
        }
    }
}

fn write_list(values: &dyn Array, out: &mut Vec<u8>, stats: &mut RenderStats) {
    out.push(b'[');
    for i in 0..values.len() {
        if i > 0 {
            out.push(b',');
        }
        if absent(values, i) {
            out.extend_from_slice(b"null");
        } else {
            write_value(values, i, out, stats);
        }
    }
    out.push(b']');
}

/// Binary cells: JSON inside (W&B stores some encoded values that way) is embedded, anything
/// else becomes base64 text as in the SDK's reader.
fn write_binary(bytes: &[u8], out: &mut Vec<u8>) {
    if let Ok(text) = std::str::from_utf8(bytes)
        && let Ok(line) = crate::values::as_single_line(text)
        && crate::values::parse(line.as_bytes()).is_ok()
    {
        out.extend_from_slice(line.as_bytes());
        return;
    }
    write_str(
        &base64::engine::general_purpose::STANDARD.encode(bytes),
        out,
    );
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::builder::{Int64Builder, ListBuilder, StringDictionaryBuilder};
    use arrow_array::types::Int32Type as DictKey;
    use arrow_array::{ArrayRef, BinaryArray, Float32Array, Int32Array, StructArray};
    use arrow_schema::{Field, Fields};

    use super::*;

    fn render(columns: Vec<(&str, ArrayRef)>) -> Vec<(i64, String)> {
        let fields: Vec<Field> = columns
            .iter()
            .map(|(n, a)| Field::new(*n, a.data_type().clone(), true))
            .collect();
        let schema = Arc::new(Schema::new(fields));
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            columns.into_iter().map(|c| c.1).collect(),
        )
        .unwrap();
        let renderer = RowRenderer::new(&schema).unwrap();
        let mut rows = Vec::new();
        let mut stats = RenderStats::default();
        renderer.render(&batch, i64::MIN, &mut rows, &mut stats);
        rows
    }

    fn floats(v: &[Option<f64>]) -> ArrayRef {
        Arc::new(Float64Array::from(v.to_vec()))
    }

    #[test]
    fn rows_follow_file_order_skip_nulls_and_spell_floats_like_wandb_core() {
        let rows = render(vec![
            ("_step", Arc::new(Int64Array::from(vec![0, 1, 2]))),
            ("loss", floats(&[Some(1.0), Some(0.5), Some(f64::NAN)])),
            ("lr", floats(&[Some(1e-05), None, Some(f64::NEG_INFINITY)])),
            (
                "epoch",
                Arc::new(Int64Array::from(vec![Some(3), None, Some(-1)])),
            ),
            (
                "name",
                Arc::new(StringArray::from(vec![Some("a\"b"), None, Some("ü")])),
            ),
            (
                "ok",
                Arc::new(BooleanArray::from(vec![Some(true), None, Some(false)])),
            ),
        ]);
        assert_eq!(
            rows,
            [
                (
                    0,
                    r#"{"_step":0,"loss":1,"lr":1e-05,"epoch":3,"name":"a\"b","ok":true}"#.into()
                ),
                (1, r#"{"_step":1,"loss":0.5}"#.into()),
                (
                    2,
                    r#"{"_step":2,"loss":NaN,"lr":-Infinity,"epoch":-1,"name":"ü","ok":false}"#
                        .into()
                ),
            ]
        );
    }

    #[test]
    fn dotted_columns_nest_one_level_at_the_first_position() {
        let inner = StructArray::from(vec![(
            Arc::new(Field::new("c", DataType::Float64, true)),
            floats(&[Some(0.25), None]),
        )]);
        let rows = render(vec![
            ("nested.b", Arc::new(inner) as ArrayRef),
            ("_step", Arc::new(Int64Array::from(vec![5, 6]))),
            ("nested.a", Arc::new(Int64Array::from(vec![Some(1), None]))),
            ("x", floats(&[Some(2.0), Some(3.5)])),
        ]);
        assert_eq!(
            rows[0].1,
            r#"{"nested":{"b":{"c":0.25},"a":1},"_step":5,"x":2}"#
        );
        // A struct whose fields are all null is an empty object; absent children vanish.
        assert_eq!(rows[1].1, r#"{"nested":{"b":{}},"_step":6,"x":3.5}"#);
    }

    #[test]
    fn scalar_and_dotted_columns_of_one_key_do_not_collide() {
        let rows = render(vec![
            ("_step", Arc::new(Int64Array::from(vec![0, 1]))),
            ("b", floats(&[Some(1.0), None])),
            ("b.c", floats(&[Some(2.0), Some(3.0)])),
        ]);
        assert_eq!(rows[0].1, r#"{"_step":0,"b":1,"b.c":2}"#);
        assert_eq!(rows[1].1, r#"{"_step":1,"b":{"c":3}}"#);
    }

    #[test]
    fn unions_lists_dictionaries_binary_and_odd_steps() {
        let union = StructArray::from(vec![
            (
                Arc::new(Field::new("_type_number", DataType::Float64, true)),
                floats(&[Some(1.5), None, None]),
            ),
            (
                Arc::new(Field::new("_type_string", DataType::Utf8, true)),
                Arc::new(StringArray::from(vec![None, Some("s"), None])) as ArrayRef,
            ),
        ]);
        let mut list = ListBuilder::new(Int64Builder::new());
        list.values().append_value(1);
        list.values().append_null();
        list.append(true);
        list.append(false);
        list.append(true);
        let mut dict = StringDictionaryBuilder::<DictKey>::new();
        dict.append_value("train");
        dict.append_value("eval");
        dict.append_value("train");
        let binary = BinaryArray::from(vec![
            Some(&b"{\"k\": [1, NaN]}"[..]),
            Some(&b"\xff\x00"[..]),
            None,
        ]);
        let rows = render(vec![
            ("_step", Arc::new(Float32Array::from(vec![0.0, 1.0, 2.9]))),
            ("u", Arc::new(union)),
            ("l", Arc::new(list.finish())),
            ("d", Arc::new(dict.finish())),
            ("bin", Arc::new(binary)),
            ("i32", Arc::new(Int32Array::from(vec![7, 8, 9]))),
        ]);
        assert_eq!(
            rows,
            [
                (
                    0,
                    r#"{"_step":0,"u":1.5,"l":[1,null],"d":"train","bin":{"k": [1, NaN]},"i32":7}"#
                        .into()
                ),
                (
                    1,
                    r#"{"_step":1,"u":"s","d":"eval","bin":"/wA=","i32":8}"#.into()
                ),
                (
                    2,
                    r#"{"_step":2.9000000953674316,"l":[],"d":"train","i32":9}"#.into()
                ),
            ]
        );
    }

    #[test]
    fn media_structs_keep_their_fields_and_min_step_filters() {
        let media = StructArray::try_new(
            Fields::from(vec![
                Field::new("_type", DataType::Utf8, true),
                Field::new("width", DataType::Int64, true),
            ]),
            vec![
                Arc::new(StringArray::from(vec![Some("image-file"), None])) as ArrayRef,
                Arc::new(Int64Array::from(vec![Some(8), None])),
            ],
            Some(vec![true, false].into()),
        )
        .unwrap();
        let schema = Arc::new(Schema::new(vec![
            Field::new("_step", DataType::Int64, false),
            Field::new("img", media.data_type().clone(), true),
        ]));
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![Arc::new(Int64Array::from(vec![10, 11])), Arc::new(media)],
        )
        .unwrap();
        let renderer = RowRenderer::new(&schema).unwrap();
        let mut rows = Vec::new();
        renderer.render(&batch, 0, &mut rows, &mut RenderStats::default());
        assert_eq!(
            rows[0].1,
            r#"{"_step":10,"img":{"_type":"image-file","width":8}}"#
        );
        assert_eq!(rows[1].1, r#"{"_step":11}"#);
        rows.clear();
        renderer.render(&batch, 11, &mut rows, &mut RenderStats::default());
        assert_eq!(rows.len(), 1);

        let no_step = Schema::new(vec![Field::new("loss", DataType::Float64, true)]);
        assert!(matches!(
            RowRenderer::new(&no_step),
            Err(ParquetHistoryError::NoStepColumn)
        ));
    }
}
