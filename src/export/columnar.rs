//! Typed history and system tables rendered from the mirror's block columns.
//!
//! A block's numeric leaves are stored as one `float8[]` per key with the kinds of JSON number
//! they came from (`block_values`, schema 5), so most of a table is copied from those arrays
//! into Arrow columns without reading the text at all. Rows the arrays cannot render exactly
//! are parsed from the block's text, as the text renderer
//! (`history::write_parquet_from_text`, the reference these tables are tested against) parses
//! every row:
//!
//! - rows with non-numeric leaves (strings, booleans, nulls, lists, media, integers beyond
//!   ±2^53): the row's `extra` is stored in SQL form, which is not the original value;
//! - every row of a block written before schema 5 (kinds unknown), or holding a row with
//!   duplicate keys or a key with U+0000 (`KIND_TEXT`), or whose key sets hold two leaves with
//!   one dotted name (`{"a.b": 1, "a": {"b": 2}}`: which one wins depends on text order);
//! - every row of a block where a column that ends up JSON text (a key holding numbers and
//!   strings) has integers and floats in one array: the text decides `3` vs `3.0`.
//!
//! Columns: the union of the flattened keys in first-appearance order, where the keys a row
//! brings are taken in its key set's order (by name) for rows rendered from arrays, and in text
//! order for rows parsed from text. Kinds follow the same rules as the text renderer: ints stay
//! `Int`, ints mixed with floats become `Float`, anything else mixed becomes JSON text.
//!
//! One run's table is read in one snapshot ([`ColumnScan`]): a sync appending meanwhile is
//! either entirely in it or not at all. A dataset of many runs infers its columns in a first
//! pass over every run and writes in a second, each run in a snapshot of its own per pass, like
//! the text renderer (rows arriving in between may bring keys the columns do not have: those
//! are left out, as they are there).

use std::collections::{HashMap, HashSet};
use std::path::Path;

use futures::StreamExt as _;

use super::error::{ExportError, Result};
use super::flatten::ColumnSet;
use super::history::{DatasetRun, DatasetStats, file_stem, key_column, parse_line, row_cells};
use super::table::{Cell, ColKind, Column, ColumnSink};
use crate::mirror::columns::{BlockInfo, ColumnScan, KIND_FLOAT, KIND_INT, KIND_TEXT, ValueArray};
use crate::mirror::{Mirror, Stream};

/// Blocks whose value arrays are fetched in one statement: at most 32 Ki rows, 9 MiB of
/// binary `float8[]` for 23 keys, with up to two statements in flight per connection.
const WINDOW_BLOCKS: usize = 32;

/// Writes one stream of every run as `dir/<run>.parquet` (runs without rows get no file).
pub(super) async fn write_parquet(
    mirror: &Mirror,
    runs: &[DatasetRun],
    stream: Stream,
    dir: &Path,
) -> Result<DatasetStats> {
    let key = key_column(stream);
    let mut set = ColumnSet::default();
    let mut stats = DatasetStats::default();
    if let [run] = runs {
        // One snapshot for both passes, read on two connections when one is free.
        let scan = ColumnScan::begin(mirror, run.run_pk, stream).await?;
        let blocks = RunBlocks::load(&scan).await?;
        blocks.observe(&scan, &mut set, key, run).await?;
        let helper = match scan.helper(mirror).await {
            Ok(helper) => Some(helper),
            Err(e) => {
                tracing::debug!("rendering {}'s table on one connection: {e}", run.run_id);
                None
            }
        };
        let scans: Vec<&ColumnScan> = std::iter::once(&scan).chain(helper.as_ref()).collect();
        blocks
            .write(&scans, &set, key, run, stream, dir, &mut stats)
            .await?;
        if let Some(helper) = helper {
            helper.finish().await?;
        }
        scan.finish().await?;
        return Ok(stats);
    }
    for run in runs {
        let scan = ColumnScan::begin(mirror, run.run_pk, stream).await?;
        let blocks = RunBlocks::load(&scan).await?;
        blocks.observe(&scan, &mut set, key, run).await?;
        scan.finish().await?;
    }
    for run in runs {
        let scan = ColumnScan::begin(mirror, run.run_pk, stream).await?;
        let blocks = RunBlocks::load(&scan).await?;
        blocks
            .write(&[&scan], &set, key, run, stream, dir, &mut stats)
            .await?;
        scan.finish().await?;
    }
    Ok(stats)
}

/// A run's blocks and the names of their keys.
struct RunBlocks {
    blocks: Vec<BlockInfo>,
    /// Dotted name of every key id the blocks use.
    names: HashMap<i32, String>,
    /// Key ids of every key set the blocks use.
    sets: HashMap<i32, Vec<i32>>,
    /// Key sets whose rows are rendered from text: two leaves share a dotted name, or the set is
    /// unknown.
    text_sets: HashSet<i32>,
}

/// The lines of a block's text.
struct Lines {
    text: Vec<u8>,
    ends: Vec<usize>,
}

impl Lines {
    fn new(text: Vec<u8>) -> Lines {
        let ends = text
            .iter()
            .enumerate()
            .filter(|(_, b)| **b == b'\n')
            .map(|(i, _)| i)
            .collect();
        Lines { text, ends }
    }

    /// Line `i` (0-based), without its newline.
    fn get(&self, i: usize, run: &DatasetRun) -> Result<&str> {
        let end = *self.ends.get(i).ok_or_else(|| ExportError::Io {
            path: format!("mirrored stream of run {}", run.run_id).into(),
            source: std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("a block has no line {i}"),
            ),
        })?;
        let start = if i == 0 { 0 } else { self.ends[i - 1] + 1 };
        std::str::from_utf8(&self.text[start..end]).map_err(|e| ExportError::Io {
            path: format!("mirrored stream of run {}", run.run_id).into(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        })
    }
}

impl RunBlocks {
    async fn load(scan: &ColumnScan) -> Result<RunBlocks> {
        let blocks = scan.blocks().await?;
        let mut set_ids: Vec<i32> = blocks
            .iter()
            .flat_map(|b| b.shapes.iter().copied())
            .collect();
        set_ids.sort_unstable();
        set_ids.dedup();
        let sets = scan.key_sets(&set_ids).await?;
        let mut key_ids: Vec<i32> = sets
            .values()
            .flatten()
            .copied()
            .chain(
                blocks
                    .iter()
                    .flat_map(|b| b.kinds.iter().map(|(id, _)| *id)),
            )
            .collect();
        key_ids.sort_unstable();
        key_ids.dedup();
        let names = scan.key_names(&key_ids).await?;
        let text_sets = set_ids
            .iter()
            .copied()
            .filter(|id| {
                let Some(ids) = sets.get(id) else {
                    return true;
                };
                let mut seen = HashSet::new();
                ids.iter()
                    .any(|k| names.get(k).is_none_or(|name| !seen.insert(name)))
            })
            .collect();
        Ok(RunBlocks {
            blocks,
            names,
            sets,
            text_sets,
        })
    }

    /// Whether every row of `block` is rendered from its text, whatever the columns.
    fn all_text(&self, block: &BlockInfo) -> bool {
        block.kinds.iter().any(|(id, kinds)| {
            kinds.is_none_or(|k| k & KIND_TEXT != 0) || !self.names.contains_key(id)
        }) || (!self.text_sets.is_empty()
            && block.shapes.iter().any(|s| self.text_sets.contains(s)))
    }

    /// Pass 1: declares the run's columns and merges their kinds into `set`.
    async fn observe(
        &self,
        scan: &ColumnScan,
        set: &mut ColumnSet,
        key: &str,
        run: &DatasetRun,
    ) -> Result<()> {
        let mut declared: HashSet<i32> = HashSet::new();
        for block in &self.blocks {
            let all = self.all_text(block);
            let lines = if all || !block.extra_rows.is_empty() {
                Some(Lines::new(scan.text(block).await?))
            } else {
                None
            };
            let mut extra = block.extra_rows.iter().peekable();
            for (r, shape) in block.shapes.iter().enumerate() {
                let from_text = all || extra.next_if_eq(&&r).is_some();
                if let (true, Some(lines)) = (from_text, &lines) {
                    let row = parse_line(lines.get(r, run)?, &run.run_id)?;
                    set.observe_doc("", &row, &[key]);
                } else if declared.insert(*shape) {
                    for id in self.sets.get(shape).into_iter().flatten() {
                        if let Some(name) = self.names.get(id).filter(|n| *n != key) {
                            set.declare(name);
                        }
                    }
                }
            }
            if all {
                continue;
            }
            for (id, kinds) in &block.kinds {
                let (Some(name), Some(kinds)) = (self.names.get(id), kinds) else {
                    continue;
                };
                if name == key {
                    continue;
                }
                if kinds & KIND_INT != 0 {
                    set.observe_kind(name, ColKind::Int);
                }
                if kinds & KIND_FLOAT != 0 {
                    set.observe_kind(name, ColKind::Float);
                }
            }
        }
        Ok(())
    }

    /// Pass 2: writes the run's file with the columns of `set`, value arrays fetched on the
    /// `scans` (one snapshot) in turn, the next windows in flight while one is written.
    #[allow(clippy::too_many_arguments)]
    async fn write(
        &self,
        scans: &[&ColumnScan],
        set: &ColumnSet,
        key: &str,
        run: &DatasetRun,
        stream: Stream,
        dir: &Path,
        stats: &mut DatasetStats,
    ) -> Result<()> {
        if self.blocks.is_empty() {
            return Ok(());
        }
        let mut columns = vec![
            Column::new("run_id", ColKind::Str),
            Column::new(key, ColKind::Int),
        ];
        columns.extend(set.columns());
        let path = dir.join(format!("{}.parquet", file_stem(&run.run_id)));
        let mut sink = ColumnSink::create(&path, columns)?;
        let mut writer = BlockWriter {
            run,
            key,
            stream,
            set,
            run_cell: Cell::Str(run.run_id.clone()),
            seq: 0,
            from_text: 0,
        };
        let windows: Vec<&[BlockInfo]> = self.blocks.chunks(WINDOW_BLOCKS).collect();
        let ranges: Vec<(usize, i64, i64)> = windows
            .iter()
            .enumerate()
            .map(|(i, w)| {
                let from = w.first().map_or(0, |b| b.byte_start);
                (i, from, w.last().map_or(from, |b| b.byte_start + 1))
            })
            .collect();
        let mut fetches = futures::stream::iter(ranges)
            .map(|(i, from, to)| scans[i % scans.len()].values(from, to))
            .buffered(scans.len() * 2);
        for window in &windows {
            // One fetch per window, in window order.
            let values = fetches.next().await.ok_or_else(|| ExportError::Io {
                path: format!("mirrored stream of run {}", run.run_id).into(),
                source: std::io::Error::other("a window of value arrays was never fetched"),
            })??;
            let scan = scans[0];
            let mut at = 0;
            for block in window.iter() {
                let start = at;
                while values.get(at).is_some_and(|v| v.0 == block.byte_start) {
                    at += 1;
                }
                writer
                    .block(self, scan, block, &values[start..at], &mut sink)
                    .await?;
            }
        }
        stats.rows += sink.finish()?;
        stats.rows_from_text += writer.from_text;
        stats.files += 1;
        Ok(())
    }
}

/// Writes a run's blocks into a [`ColumnSink`], one block at a time.
struct BlockWriter<'a> {
    run: &'a DatasetRun,
    key: &'a str,
    stream: Stream,
    set: &'a ColumnSet,
    run_cell: Cell,
    /// Rows written so far (system events are numbered by it).
    seq: i64,
    /// Rows of them parsed from text.
    from_text: u64,
}

impl BlockWriter<'_> {
    async fn block(
        &mut self,
        blocks: &RunBlocks,
        scan: &ColumnScan,
        block: &BlockInfo,
        values: &[(i64, i32, ValueArray)],
        sink: &mut ColumnSink,
    ) -> Result<()> {
        let n = block.n_rows();
        let width = sink.columns().len();
        let kinds: HashMap<i32, u8> = block
            .kinds
            .iter()
            .filter_map(|(id, k)| Some((*id, (*k)?)))
            .collect();
        // The arrays of each column, with their kinds.
        let mut by_column: Vec<Vec<(&ValueArray, u8)>> = vec![Vec::new(); width];
        let mut all = blocks.all_text(block);
        for (_, id, array) in values {
            let (Some(name), Some(&k)) = (blocks.names.get(id), kinds.get(id)) else {
                all = true;
                continue;
            };
            if name == self.key {
                continue;
            }
            // A key this pass has no column for (it arrived after the first pass): left out.
            let Some(col) = self.set.position(name).map(|p| p + 2) else {
                continue;
            };
            if sink.columns()[col].kind == ColKind::Json && k & KIND_INT != 0 && k & KIND_FLOAT != 0
            {
                // Numbers in a JSON column are written as their text was (`3` or `3.0`): an
                // array of ints and floats cannot tell which was which.
                all = true;
            }
            by_column[col].push((array, k));
        }
        let text_rows: Vec<usize> = if all {
            (0..n).collect()
        } else {
            block.extra_rows.clone()
        };
        let mut text_cells: Vec<Vec<Cell>> = Vec::with_capacity(text_rows.len());
        if !text_rows.is_empty() {
            let lines = Lines::new(scan.text(block).await?);
            for &r in &text_rows {
                let row = parse_line(lines.get(r, self.run)?, &self.run.run_id)?;
                text_cells.push(row_cells(&row, self.key, self.set, width));
            }
        }

        for _ in 0..n {
            sink.cell(0, &self.run_cell);
        }
        for (r, step) in block.keys.iter().enumerate() {
            let key = match self.stream {
                Stream::History => *step,
                Stream::System => self.seq + r as i64,
            };
            sink.cell(1, &Cell::Int(key));
        }
        for (col, arrays) in by_column.iter().enumerate().skip(2) {
            if text_rows.is_empty() {
                match arrays.as_slice() {
                    [] => {
                        sink.nulls(col, n);
                        continue;
                    }
                    [(array, k)] if array.present.is_none() && array.vals.len() == n => {
                        sink.numbers(col, &array.vals, k & KIND_FLOAT == 0);
                        continue;
                    }
                    _ => {}
                }
            }
            let mut text = text_rows.iter().zip(&text_cells).peekable();
            for r in 0..n {
                if let Some((_, cells)) = text.next_if(|(t, _)| **t == r) {
                    sink.cell(col, &cells[col]);
                    continue;
                }
                match arrays.iter().find_map(|(a, k)| Some((a.get(r)?, *k))) {
                    Some((v, k)) => sink.number(col, v, k & KIND_FLOAT == 0),
                    None => sink.cell(col, &Cell::Null),
                }
            }
        }
        sink.rows_done(n)?;
        self.seq += n as i64;
        self.from_text += text_rows.len() as u64;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
