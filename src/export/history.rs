//! The history (and system-events) datasets: one file per run.
//!
//! JSON Lines: `history/<run>.jsonl` is the run's `history.jsonl`, byte for byte (the mirror's
//! pre-rendered chunks, copied).
//!
//! Parquet: `history/<run>.parquet`, every file with the same columns — `run_id`, `_step`, then
//! the union of the project's flattened keys in first-appearance order (keys first seen in the
//! same row: by name) — so the directory reads as one table (`pyarrow.dataset`, DuckDB
//! `read_parquet('history/*.parquet')`, Spark). Rendered from the mirror's block columns
//! ([`super::columnar`]); the text renderer here ([`write_parquet_from_text`]) is the reference
//! it is tested against: two passes over the mirrored text, the first inferring each column's
//! kind over every row of every run, the second writing, a window of text at a time.

use std::path::Path;

use super::error::{ExportError, Result};
use super::flatten::{ColumnSet, cell_of, for_each_leaf};
use super::table::{Cell, ColKind, Column, Format, open_sink};
use crate::mirror::{Mirror, RunPk, Stream};

/// Bytes of JSON Lines text read from the mirror at a time.
const WINDOW: usize = 4 << 20;

/// A run of the dataset.
#[derive(Clone, Debug)]
pub struct DatasetRun {
    /// Mirror key.
    pub run_pk: RunPk,
    /// Run id.
    pub run_id: String,
}

/// What a dataset write produced.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DatasetStats {
    /// Files written (runs with at least one row).
    pub files: u64,
    /// Rows written.
    pub rows: u64,
    /// Rows of them rendered by parsing their text (typed tables: the rest came straight
    /// from the mirror's value arrays).
    pub rows_from_text: u64,
}

/// A file name for a run id: the id itself when it is plain (W&B ids are `[a-z0-9]`), else
/// percent-encoded, so any id maps to one safe, distinct name.
pub fn file_stem(run_id: &str) -> String {
    let plain = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
    if !run_id.is_empty() && run_id.bytes().all(plain) {
        return run_id.to_string();
    }
    let mut out = String::with_capacity(run_id.len() * 3);
    for b in run_id.bytes() {
        if plain(b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    if out.is_empty() {
        out.push_str("%00");
    }
    out
}

/// Calls `f(line)` for every line of a run's stream, reading it a window at a time.
async fn for_each_line(
    mirror: &Mirror,
    run: RunPk,
    stream: Stream,
    mut f: impl FnMut(&str) -> Result<()>,
) -> Result<()> {
    let len = mirror.stream_len(run, stream).await?;
    let mut offset = 0u64;
    let mut carry: Vec<u8> = Vec::new();
    while offset < len {
        let want = usize::try_from(len - offset).unwrap_or(WINDOW).min(WINDOW);
        let bytes = mirror.read_stream(run, stream, offset, want).await?;
        if bytes.is_empty() {
            break;
        }
        offset += bytes.len() as u64;
        carry.extend_from_slice(&bytes);
        let mut start = 0;
        while let Some(nl) = memchr(&carry[start..]) {
            let line = &carry[start..start + nl];
            f(std::str::from_utf8(line).map_err(|e| invalid_utf8(run, e))?)?;
            start += nl + 1;
        }
        carry.drain(..start);
    }
    if !carry.is_empty() {
        f(std::str::from_utf8(&carry).map_err(|e| invalid_utf8(run, e))?)?;
    }
    Ok(())
}

fn memchr(bytes: &[u8]) -> Option<usize> {
    bytes.iter().position(|&b| b == b'\n')
}

fn invalid_utf8(run: RunPk, e: std::str::Utf8Error) -> ExportError {
    ExportError::Io {
        path: format!("mirrored stream of run #{}", run.0).into(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
    }
}

pub(super) fn parse_line<'t>(line: &'t str, run_id: &str) -> Result<jiter::JsonValue<'t>> {
    crate::values::parse(line.as_bytes()).map_err(|source| ExportError::InvalidJson {
        what: format!("a history row of run {run_id}"),
        source,
    })
}

/// The step of a row: its `_step` (the mirror only holds rows that have one).
fn step_of(row: &jiter::JsonValue<'_>) -> Option<i64> {
    let jiter::JsonValue::Object(members) = row else {
        return None;
    };
    match members.iter().rev().find(|(k, _)| k == "_step")?.1 {
        jiter::JsonValue::Int(i) => Some(i),
        jiter::JsonValue::Float(f) if f.is_finite() => Some(f.trunc() as i64),
        _ => None,
    }
}

/// Writes a table with the stream's key columns (`run_id`, `_step` or `_seq`) and no row: the
/// parquet file of a run without rows yet.
pub fn write_empty(path: &Path, stream: Stream) -> Result<u64> {
    let columns = vec![
        Column::new("run_id", ColKind::Str),
        Column::new(key_column(stream), ColKind::Int),
    ];
    open_sink(Format::Parquet, path, columns)?.finish()
}

/// Writes one stream of every run as a dataset under `dir/<sub>/`.
pub async fn write_dataset(
    mirror: &Mirror,
    runs: &[DatasetRun],
    stream: Stream,
    format: Format,
    dir: &Path,
) -> Result<DatasetStats> {
    std::fs::create_dir_all(dir).map_err(|e| ExportError::io(dir, e))?;
    match format {
        Format::Jsonl => copy_jsonl(mirror, runs, stream, dir).await,
        Format::Parquet => super::columnar::write_parquet(mirror, runs, stream, dir).await,
    }
}

async fn copy_jsonl(
    mirror: &Mirror,
    runs: &[DatasetRun],
    stream: Stream,
    dir: &Path,
) -> Result<DatasetStats> {
    use std::io::Write as _;
    let mut stats = DatasetStats::default();
    for run in runs {
        let len = mirror.stream_len(run.run_pk, stream).await?;
        if len == 0 {
            continue;
        }
        let path = dir.join(format!("{}.jsonl", file_stem(&run.run_id)));
        let file = std::fs::File::create(&path).map_err(|e| ExportError::io(&path, e))?;
        let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
        let mut offset = 0u64;
        while offset < len {
            let want = usize::try_from(len - offset).unwrap_or(WINDOW).min(WINDOW);
            let bytes = mirror.read_stream(run.run_pk, stream, offset, want).await?;
            if bytes.is_empty() {
                break;
            }
            stats.rows += bytes.iter().filter(|&&b| b == b'\n').count() as u64;
            out.write_all(&bytes)
                .map_err(|e| ExportError::io(&path, e))?;
            offset += bytes.len() as u64;
        }
        out.flush().map_err(|e| ExportError::io(&path, e))?;
        stats.files += 1;
    }
    Ok(stats)
}

/// The key column of a stream (`_step` for history; system events are numbered).
pub(super) fn key_column(stream: Stream) -> &'static str {
    match stream {
        Stream::History => "_step",
        Stream::System => "_seq",
    }
}

/// The cells of one row for `width` columns: its leaves at their columns' positions (after
/// `run_id` and the key column, which are left null), null elsewhere.
pub(super) fn row_cells(
    row: &jiter::JsonValue<'_>,
    key: &str,
    set: &ColumnSet,
    width: usize,
) -> Vec<Cell> {
    let mut cells = vec![Cell::Null; width];
    for_each_leaf("", row, &mut |name, v| {
        if name != key
            && let Some(i) = set.position(name)
        {
            cells[2 + i] = cell_of(v);
        }
    });
    cells
}

/// `history/<run>.parquet` rendered from the mirrored text: the reference renderer the
/// block-column renderer is tested and measured against (columns in first-appearance order of
/// the text).
pub(super) async fn write_parquet_from_text(
    mirror: &Mirror,
    runs: &[DatasetRun],
    stream: Stream,
    dir: &Path,
) -> Result<DatasetStats> {
    let key = key_column(stream);
    // Pass 1: the union of keys and their kinds.
    let mut set = ColumnSet::default();
    for run in runs {
        for_each_line(mirror, run.run_pk, stream, |line| {
            let row = parse_line(line, &run.run_id)?;
            set.observe_doc("", &row, &[key]);
            Ok(())
        })
        .await?;
    }
    let mut columns = vec![
        Column::new("run_id", ColKind::Str),
        Column::new(key, ColKind::Int),
    ];
    columns.extend(set.columns());
    let width = columns.len();

    // Pass 2: one file per run with rows.
    let mut stats = DatasetStats::default();
    for run in runs {
        if mirror.stream_len(run.run_pk, stream).await? == 0 {
            continue;
        }
        let path = dir.join(format!("{}.parquet", file_stem(&run.run_id)));
        let mut sink = open_sink(Format::Parquet, &path, columns.clone())?;
        let mut seq = 0i64;
        for_each_line(mirror, run.run_pk, stream, |line| {
            let row = parse_line(line, &run.run_id)?;
            let mut cells = row_cells(&row, key, &set, width);
            cells[0] = Cell::Str(run.run_id.clone());
            cells[1] = Cell::Int(match stream {
                Stream::History => step_of(&row).unwrap_or(seq),
                Stream::System => seq,
            });
            seq += 1;
            sink.push(cells)
        })
        .await?;
        let rows = sink.finish()?;
        stats.rows += rows;
        stats.rows_from_text += rows;
        stats.files += 1;
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_stems_are_safe_and_distinct() {
        assert_eq!(file_stem("3kx9a1bz"), "3kx9a1bz");
        assert_eq!(file_stem("my run/1"), "my%20run%2F1");
        assert_eq!(file_stem(".."), "%2E%2E");
        assert_ne!(file_stem("a%20b"), file_stem("a b"));
        assert_eq!(file_stem(""), "%00");
    }
}
