//! Typed tables written as parquet or JSON Lines, a batch at a time.
//!
//! A table is a list of [`Column`]s of a few [`ColKind`]s and rows of [`Cell`]s. The parquet
//! sink buffers at most [`BATCH_ROWS`] rows before handing a record batch to the writer; the
//! JSON Lines sink writes each row as it comes. Cells are converted to the column's kind on the
//! way in (an int in a float column becomes a float; anything in a JSON column becomes its JSON
//! text), so a writer never fails on a value its inference allowed.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::builder::{
    BooleanBuilder, Float64Builder, Int64Builder, ListBuilder, StringBuilder,
    TimestampMicrosecondBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use chrono::{DateTime, SecondsFormat, Utc};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;

use super::error::{ExportError, Result};

/// Rows per record batch in parquet output.
pub const BATCH_ROWS: usize = 8192;

/// Field metadata key marking a `Utf8` column whose cells are JSON text.
pub const ENCODING_KEY: &str = "wandbfs.encoding";

/// What a column holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColKind {
    /// `Int64`.
    Int,
    /// `Float64` (NaN and ±Infinity as native values).
    Float,
    /// `Boolean`.
    Bool,
    /// `Utf8`.
    Str,
    /// `Timestamp(µs, UTC)`.
    Time,
    /// `List<Utf8>` (tags, aliases).
    StrList,
    /// `Utf8` holding W&B-dialect JSON text (lists, media objects, mixed kinds).
    Json,
}

impl ColKind {
    /// The least kind holding values of both (`None` = nothing seen yet).
    pub fn merge(a: Option<ColKind>, b: ColKind) -> ColKind {
        match (a, b) {
            (None, b) => b,
            (Some(a), b) if a == b => a,
            (Some(ColKind::Int), ColKind::Float) | (Some(ColKind::Float), ColKind::Int) => {
                ColKind::Float
            }
            _ => ColKind::Json,
        }
    }

    fn data_type(self) -> DataType {
        match self {
            ColKind::Int => DataType::Int64,
            ColKind::Float => DataType::Float64,
            ColKind::Bool => DataType::Boolean,
            ColKind::Str | ColKind::Json => DataType::Utf8,
            ColKind::Time => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            ColKind::StrList => DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
        }
    }
}

/// A named, typed column.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Column {
    /// Name.
    pub name: String,
    /// Kind.
    pub kind: ColKind,
}

impl Column {
    /// A column.
    pub fn new(name: impl Into<String>, kind: ColKind) -> Self {
        Column {
            name: name.into(),
            kind,
        }
    }
}

/// One value.
#[derive(Clone, Debug, PartialEq)]
pub enum Cell {
    /// Absent.
    Null,
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// A boolean.
    Bool(bool),
    /// A string.
    Str(String),
    /// A point in time.
    Time(DateTime<Utc>),
    /// A list of strings.
    StrList(Vec<String>),
    /// W&B-dialect JSON text of any value.
    Json(String),
}

impl Cell {
    /// The cell as JSON text (for JSON columns and JSON Lines).
    fn json_text(&self, out: &mut Vec<u8>) {
        match self {
            Cell::Null => out.extend_from_slice(b"null"),
            Cell::Int(i) => out.extend_from_slice(itoa::Buffer::new().format(*i).as_bytes()),
            Cell::Float(f) => {
                crate::values::write_wandb_json(&jiter::JsonValue::Float(*f), out);
            }
            Cell::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
            Cell::Str(s) => write_str(s, out),
            Cell::Time(t) => write_str(&t.to_rfc3339_opts(SecondsFormat::Micros, true), out),
            Cell::StrList(items) => {
                out.push(b'[');
                for (i, s) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    write_str(s, out);
                }
                out.push(b']');
            }
            Cell::Json(text) => out.extend_from_slice(text.as_bytes()),
        }
    }
}

fn write_str(s: &str, out: &mut Vec<u8>) {
    // serde_json's escaping; writing into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// Where rows go.
pub trait RowSink: Send {
    /// Appends a row (one cell per column).
    fn push(&mut self, row: Vec<Cell>) -> Result<()>;
    /// Flushes and closes; returns the rows written.
    fn finish(self: Box<Self>) -> Result<u64>;
}

/// The file format of an export.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Apache Parquet (Snappy).
    Parquet,
    /// JSON Lines in W&B's dialect (bare `NaN`/`Infinity`, as Python's `json` reads them).
    Jsonl,
}

impl Format {
    /// The file extension.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Parquet => "parquet",
            Format::Jsonl => "jsonl",
        }
    }
}

/// Opens a sink writing `columns` to `path` in `format`.
pub fn open_sink(format: Format, path: &Path, columns: Vec<Column>) -> Result<Box<dyn RowSink>> {
    let file = File::create(path).map_err(|e| ExportError::io(path, e))?;
    Ok(match format {
        Format::Parquet => Box::new(ParquetSink::new(file, path, columns)?),
        Format::Jsonl => Box::new(JsonlSink {
            out: BufWriter::with_capacity(1 << 20, file),
            path: path.to_path_buf(),
            columns,
            rows: 0,
            line: Vec::new(),
        }),
    })
}

/// Writes rows as JSON objects, one per line, keys in column order, `null` for absent cells.
struct JsonlSink {
    out: BufWriter<File>,
    path: PathBuf,
    columns: Vec<Column>,
    rows: u64,
    line: Vec<u8>,
}

impl RowSink for JsonlSink {
    fn push(&mut self, row: Vec<Cell>) -> Result<()> {
        self.line.clear();
        self.line.push(b'{');
        for (i, (col, cell)) in self.columns.iter().zip(&row).enumerate() {
            if i > 0 {
                self.line.push(b',');
            }
            write_str(&col.name, &mut self.line);
            self.line.push(b':');
            cell.json_text(&mut self.line);
        }
        self.line.extend_from_slice(b"}\n");
        self.out
            .write_all(&self.line)
            .map_err(|e| ExportError::io(&self.path, e))?;
        self.rows += 1;
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> Result<u64> {
        self.out
            .flush()
            .map_err(|e| ExportError::io(&self.path, e))?;
        Ok(self.rows)
    }
}

/// One column's Arrow builder.
enum Builder {
    Int(Int64Builder),
    Float(Float64Builder),
    Bool(BooleanBuilder),
    Str(StringBuilder),
    Time(TimestampMicrosecondBuilder),
    StrList(ListBuilder<StringBuilder>),
}

impl Builder {
    fn new(kind: ColKind) -> Builder {
        match kind {
            ColKind::Int => Builder::Int(Int64Builder::new()),
            ColKind::Float => Builder::Float(Float64Builder::new()),
            ColKind::Bool => Builder::Bool(BooleanBuilder::new()),
            ColKind::Str | ColKind::Json => Builder::Str(StringBuilder::new()),
            ColKind::Time => Builder::Time(TimestampMicrosecondBuilder::new().with_timezone("UTC")),
            ColKind::StrList => Builder::StrList(ListBuilder::new(StringBuilder::new())),
        }
    }

    fn append(&mut self, kind: ColKind, cell: &Cell, scratch: &mut Vec<u8>) {
        match (self, cell) {
            (Builder::Int(b), Cell::Int(i)) => b.append_value(*i),
            (Builder::Int(b), _) => b.append_null(),
            (Builder::Float(b), Cell::Float(f)) => b.append_value(*f),
            (Builder::Float(b), Cell::Int(i)) => b.append_value(*i as f64),
            (Builder::Float(b), _) => b.append_null(),
            (Builder::Bool(b), Cell::Bool(x)) => b.append_value(*x),
            (Builder::Bool(b), _) => b.append_null(),
            (Builder::Str(b), Cell::Null) => b.append_null(),
            (Builder::Str(b), Cell::Str(s)) if kind == ColKind::Str => b.append_value(s),
            (Builder::Str(b), cell) => {
                scratch.clear();
                cell.json_text(scratch);
                b.append_value(String::from_utf8_lossy(scratch));
            }
            (Builder::Time(b), Cell::Time(t)) => b.append_value(t.timestamp_micros()),
            (Builder::Time(b), _) => b.append_null(),
            (Builder::StrList(b), Cell::StrList(items)) => {
                for s in items {
                    b.values().append_value(s);
                }
                b.append(true);
            }
            (Builder::StrList(b), _) => b.append(false),
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Builder::Int(b) => Arc::new(b.finish()),
            Builder::Float(b) => Arc::new(b.finish()),
            Builder::Bool(b) => Arc::new(b.finish()),
            Builder::Str(b) => Arc::new(b.finish()),
            Builder::Time(b) => Arc::new(b.finish()),
            Builder::StrList(b) => Arc::new(b.finish()),
        }
    }
}

/// Writes rows to a parquet file in batches of [`BATCH_ROWS`].
struct ParquetSink {
    writer: ArrowWriter<File>,
    path: PathBuf,
    schema: Arc<Schema>,
    columns: Vec<Column>,
    builders: Vec<Builder>,
    pending: usize,
    rows: u64,
    scratch: Vec<u8>,
}

impl ParquetSink {
    fn new(file: File, path: &Path, columns: Vec<Column>) -> Result<Self> {
        let fields: Vec<Field> = columns
            .iter()
            .map(|c| {
                let field = Field::new(&c.name, c.kind.data_type(), true);
                if c.kind == ColKind::Json {
                    field.with_metadata([(ENCODING_KEY, "json")])
                } else {
                    field
                }
            })
            .collect();
        let schema = Arc::new(Schema::new(fields));
        let mut props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_max_row_group_row_count(Some(65_536));
        for c in &columns {
            if c.kind == ColKind::Float {
                props =
                    props.set_column_dictionary_enabled(ColumnPath::from(c.name.as_str()), false);
            }
        }
        let props = props.build();
        let writer = ArrowWriter::try_new(file, Arc::clone(&schema), Some(props))?;
        Ok(ParquetSink {
            writer,
            path: path.to_path_buf(),
            builders: columns.iter().map(|c| Builder::new(c.kind)).collect(),
            schema,
            columns,
            pending: 0,
            rows: 0,
            scratch: Vec::new(),
        })
    }

    fn flush_batch(&mut self) -> Result<()> {
        if self.pending == 0 {
            return Ok(());
        }
        let arrays: Vec<ArrayRef> = self.builders.iter_mut().map(Builder::finish).collect();
        let batch = RecordBatch::try_new(Arc::clone(&self.schema), arrays)?;
        self.writer.write(&batch)?;
        self.pending = 0;
        Ok(())
    }
}

impl RowSink for ParquetSink {
    fn push(&mut self, row: Vec<Cell>) -> Result<()> {
        for ((builder, col), cell) in self.builders.iter_mut().zip(&self.columns).zip(&row) {
            builder.append(col.kind, cell, &mut self.scratch);
        }
        self.pending += 1;
        self.rows += 1;
        if self.pending >= BATCH_ROWS {
            self.flush_batch()?;
        }
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> Result<u64> {
        self.flush_batch()?;
        let file = self.writer.into_inner()?;
        file.sync_all()
            .map_err(|e| ExportError::io(&self.path, e))?;
        Ok(self.rows)
    }
}

/// A parquet file filled a column at a time: for each group of rows, every column is given
/// the group's cells in row order ([`ColumnSink::number`], [`ColumnSink::cell`], …), then
/// [`ColumnSink::rows_done`] counts the group and writes a record batch when one is due. What
/// typed tables rendered from the mirror's value arrays use, without a [`Cell`] per value.
pub(crate) struct ColumnSink {
    inner: ParquetSink,
}

impl ColumnSink {
    /// A sink writing `columns` to `path`.
    pub(crate) fn create(path: &Path, columns: Vec<Column>) -> Result<Self> {
        let file = File::create(path).map_err(|e| ExportError::io(path, e))?;
        Ok(ColumnSink {
            inner: ParquetSink::new(file, path, columns)?,
        })
    }

    /// The columns.
    pub(crate) fn columns(&self) -> &[Column] {
        &self.inner.columns
    }

    /// Appends a cell to column `i`, converted to its kind as [`RowSink::push`] does.
    pub(crate) fn cell(&mut self, i: usize, cell: &Cell) {
        let sink = &mut self.inner;
        sink.builders[i].append(sink.columns[i].kind, cell, &mut sink.scratch);
    }

    /// Appends a number to column `i` (`int`: it was a JSON integer, so exactly `v as i64`).
    pub(crate) fn number(&mut self, i: usize, v: f64, int: bool) {
        match &mut self.inner.builders[i] {
            Builder::Float(b) => b.append_value(v),
            Builder::Int(b) if int => b.append_value(v as i64),
            _ => {
                let cell = if int {
                    Cell::Int(v as i64)
                } else {
                    Cell::Float(v)
                };
                self.cell(i, &cell);
            }
        }
    }

    /// Appends numbers to column `i`, as [`ColumnSink::number`] does one.
    pub(crate) fn numbers(&mut self, i: usize, vals: &[f64], int: bool) {
        if let Builder::Float(b) = &mut self.inner.builders[i] {
            b.append_slice(vals);
            return;
        }
        for v in vals {
            self.number(i, *v, int);
        }
    }

    /// Appends `n` nulls to column `i`.
    pub(crate) fn nulls(&mut self, i: usize, n: usize) {
        for _ in 0..n {
            self.cell(i, &Cell::Null);
        }
    }

    /// Counts `n` rows every column has received; writes a record batch when enough are
    /// pending.
    pub(crate) fn rows_done(&mut self, n: usize) -> Result<()> {
        self.inner.pending += n;
        self.inner.rows += n as u64;
        if self.inner.pending >= BATCH_ROWS {
            self.inner.flush_batch()?;
        }
        Ok(())
    }

    /// Flushes and closes; returns the rows written.
    pub(crate) fn finish(self) -> Result<u64> {
        Box::new(self.inner).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_merge_towards_json() {
        assert_eq!(ColKind::merge(None, ColKind::Int), ColKind::Int);
        assert_eq!(
            ColKind::merge(Some(ColKind::Int), ColKind::Float),
            ColKind::Float
        );
        assert_eq!(
            ColKind::merge(Some(ColKind::Float), ColKind::Int),
            ColKind::Float
        );
        assert_eq!(
            ColKind::merge(Some(ColKind::Str), ColKind::Int),
            ColKind::Json
        );
        assert_eq!(
            ColKind::merge(Some(ColKind::Bool), ColKind::Bool),
            ColKind::Bool
        );
    }

    #[test]
    fn jsonl_rows_keep_nan_and_column_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.jsonl");
        let mut sink = open_sink(
            Format::Jsonl,
            &path,
            vec![
                Column::new("b", ColKind::Float),
                Column::new("a", ColKind::Json),
                Column::new("t", ColKind::StrList),
            ],
        )
        .unwrap();
        sink.push(vec![
            Cell::Float(f64::NAN),
            Cell::Json(r#"{"x":[1,Infinity]}"#.into()),
            Cell::StrList(vec!["q\"".into()]),
        ])
        .unwrap();
        sink.push(vec![Cell::Int(2), Cell::Null, Cell::Null])
            .unwrap();
        assert_eq!(sink.finish().unwrap(), 2);
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "{\"b\":NaN,\"a\":{\"x\":[1,Infinity]},\"t\":[\"q\\\"\"]}\n{\"b\":2,\"a\":null,\"t\":null}\n"
        );
    }
}
