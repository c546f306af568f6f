//! Building the parquet files of one run's export from its history lines.
//!
//! Two passes over the exported lines: the first infers the columns ([`ColumnPlan`]), the second
//! writes them, `rows_per_file` rows per file, in record batches of at most [`BATCH_ROWS`] rows
//! (so memory holds one batch plus one encoded row group, not the run). Rows are ordered by
//! `_step` (stable, so equal steps keep their line order); the SDK's reader assumes steps rise
//! within a file. The output is a pure function of the lines and the layout: the same history
//! always gives the same bytes.

use std::sync::Arc;

use arrow_array::{ArrayRef, Int64Array, RecordBatch};
use arrow_schema::Schema;
use jiter::{JsonValue, PartialMode};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

use super::arrays::Col;
use super::schema::{ColumnPlan, Ty, for_each_cell};
use crate::state::history::HistoryLog;

/// Rows per record batch handed to the parquet writer.
pub const BATCH_ROWS: usize = 8192;

/// `created_by` written into every file (fixed, so files are byte-stable).
pub const CREATED_BY: &str = "wandb-emulator history export (parquet-rs 60)";

/// How a run's export is cut into files and row groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// Rows per file (the last file may hold fewer).
    pub rows_per_file: usize,
    /// Rows per row group inside a file.
    pub row_group_rows: usize,
}

/// Why an export could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// Arrow rejected the arrays (a bug in the type mapping).
    #[error("building arrow arrays: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
    /// The parquet writer failed.
    #[error("writing parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
}

/// One built file.
#[derive(Debug, Clone)]
pub struct BuiltFile {
    /// The parquet bytes.
    pub bytes: Vec<u8>,
    /// Rows in the file.
    pub rows: u64,
    /// Smallest `_step` in the file.
    pub min_step: i64,
    /// Largest `_step` in the file.
    pub max_step: i64,
}

fn parse(text: &str) -> JsonValue<'_> {
    // A line that is not JSON (the live path still serves it verbatim) exports as its step only.
    JsonValue::parse_with_config(text.as_bytes(), true, PartialMode::Off).unwrap_or(JsonValue::Null)
}

/// The first `lines` lines of `log` as parquet files.
pub fn build_files(
    log: &HistoryLog,
    lines: u64,
    layout: Layout,
) -> Result<Vec<BuiltFile>, BuildError> {
    let mut order: Vec<(i64, u64)> = (0..lines)
        .filter_map(|offset| log.line_at(offset).map(|l| (log.step_of(l), offset)))
        .collect();
    order.sort_by_key(|(step, _)| *step);

    let mut plan = ColumnPlan::default();
    for &(_, offset) in &order {
        if let Some(line) = log.line_at(offset) {
            let raw = log.raw(line);
            plan.observe(&parse(&raw));
        }
    }
    let (schema, types) = plan.finish();
    let index: std::collections::HashMap<&str, usize> = schema
        .fields()
        .iter()
        .enumerate()
        .skip(1)
        .map(|(i, f)| (f.name().as_str(), i - 1))
        .collect();

    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(layout.row_group_rows.max(1)))
        .set_created_by(CREATED_BY.to_string())
        .build();
    let mut files = Vec::new();
    for chunk in order.chunks(layout.rows_per_file.max(1)) {
        let mut writer =
            ArrowWriter::try_new(Vec::new(), Arc::clone(&schema), Some(props.clone()))?;
        for batch in chunk.chunks(BATCH_ROWS) {
            let batch = build_batch(log, batch, &schema, &types, &index)?;
            writer.write(&batch)?;
        }
        let bytes = writer.into_inner()?;
        files.push(BuiltFile {
            bytes,
            rows: chunk.len() as u64,
            min_step: chunk.first().map_or(0, |(s, _)| *s),
            max_step: chunk.last().map_or(0, |(s, _)| *s),
        });
    }
    Ok(files)
}

fn build_batch(
    log: &HistoryLog,
    rows: &[(i64, u64)],
    schema: &Arc<Schema>,
    types: &[Ty],
    index: &std::collections::HashMap<&str, usize>,
) -> Result<RecordBatch, BuildError> {
    let mut cols: Vec<Col> = schema
        .fields()
        .iter()
        .zip(types)
        .skip(1)
        .map(|(f, t)| Col::new(t, f.data_type()))
        .collect();
    let mut steps = Vec::with_capacity(rows.len());
    for &(step, offset) in rows {
        steps.push(step);
        let raw = log.line_at(offset).map(|l| log.raw(l)).unwrap_or_default();
        let row = parse(&raw);
        // Collect the row's cells first (a later duplicate key wins), then append every column.
        let mut values: Vec<Option<&JsonValue<'_>>> = vec![None; cols.len()];
        for_each_cell(&row, |name, value| {
            if let Some(&i) = index.get(name.as_ref()) {
                values[i] = Some(value);
            }
        });
        for (col, value) in cols.iter_mut().zip(values) {
            col.append(value);
        }
    }
    let mut arrays: Vec<ArrayRef> = Vec::with_capacity(cols.len() + 1);
    arrays.push(Arc::new(Int64Array::from(steps)));
    arrays.extend(cols.iter_mut().map(Col::finish));
    Ok(RecordBatch::try_new(Arc::clone(schema), arrays)?)
}
