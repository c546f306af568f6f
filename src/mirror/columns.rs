//! Reading a stream's blocks as columns: what typed tables (`history.parquet`) are rendered
//! from without parsing the text.
//!
//! A [`ColumnScan`] is one read-only `REPEATABLE READ` transaction: every statement of it sees
//! the same snapshot, so the block list, the value arrays and the text it fetches agree with one
//! another and with the stream's length read at its start, even while a sync appends (a sync
//! commits blocks and length together, and rewrites the last block in the same transaction).
//!
//! What it returns is the stored form, undecoded: each block's row keys, key sets, which rows
//! kept non-numeric leftovers (`extra`), and per numeric leaf the `float8[]` of values with the
//! kinds of JSON number they came from (`rowcodec::KIND_*`; `None` for blocks written before
//! schema 5). The caller decides which rows it can take from the arrays and which it renders
//! from the text ([`ColumnScan::text`]).

use std::collections::HashMap;
use std::error::Error;

use postgres_types::{FromSql, Type};

use super::blocks;
use super::conn::Conn;
use super::error::{DbContext, MirrorError, Result};
use super::{Mirror, RunPk, Stream};

/// The kinds of a value array (`block_values.kinds`): a JSON integer, a JSON float, a row to
/// render from text.
pub(crate) use super::rowcodec::{KIND_FLOAT, KIND_INT, KIND_TEXT};

/// One block, without its text and values.
#[derive(Clone, Debug)]
pub(crate) struct BlockInfo {
    /// Where the block's text starts in the stream.
    pub(crate) byte_start: i64,
    /// Bytes of text.
    pub(crate) byte_len: i32,
    /// Each row's key (step, or event number).
    pub(crate) keys: Vec<i64>,
    /// Each row's key set.
    pub(crate) shapes: Vec<i32>,
    /// The rows (0-based, ascending) with non-numeric leftovers.
    pub(crate) extra_rows: Vec<usize>,
    /// The block's value arrays: key id and the kinds of their values (`None`: unknown).
    pub(crate) kinds: Vec<(i32, Option<u8>)>,
}

impl BlockInfo {
    /// Rows in the block.
    pub(crate) fn n_rows(&self) -> usize {
        self.keys.len()
    }
}

/// A `float8[]` decoded straight from its binary form: one value per row, and which rows have
/// one (`None`: all of them).
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct ValueArray {
    /// Values (0.0 where absent).
    pub(crate) vals: Vec<f64>,
    /// Presence, when some row has no value.
    pub(crate) present: Option<Vec<bool>>,
}

impl ValueArray {
    /// The value of row `i`, if it has one.
    pub(crate) fn get(&self, i: usize) -> Option<f64> {
        match &self.present {
            Some(p) if !p.get(i).copied().unwrap_or(false) => None,
            _ => self.vals.get(i).copied(),
        }
    }
}

fn be_i32(raw: &[u8], at: usize) -> std::result::Result<i32, Box<dyn Error + Sync + Send>> {
    raw.get(at..at + 4)
        .and_then(|b| b.try_into().ok())
        .map(i32::from_be_bytes)
        .ok_or_else(|| "a truncated float8[]".into())
}

impl<'a> FromSql<'a> for ValueArray {
    fn from_sql(
        _: &Type,
        raw: &'a [u8],
    ) -> std::result::Result<Self, Box<dyn Error + Sync + Send>> {
        // Header: dimensions, has-nulls flag, element type; per dimension length and lower bound.
        let ndim = be_i32(raw, 0)?;
        if ndim == 0 {
            return Ok(ValueArray::default());
        }
        if ndim != 1 {
            return Err(format!("a float8[] of {ndim} dimensions").into());
        }
        let n = usize::try_from(be_i32(raw, 12)?).map_err(|_| "a negative array length")?;
        if raw.len() == 20 + 12 * n {
            // No NULL (every element is a length of 8 and 8 bytes): the common case, read
            // without branching per element.
            let vals = raw[20..]
                .chunks_exact(12)
                .map(|e| f64::from_be_bytes([e[4], e[5], e[6], e[7], e[8], e[9], e[10], e[11]]))
                .collect();
            return Ok(ValueArray {
                vals,
                present: None,
            });
        }
        let mut at = 20;
        let mut vals = Vec::with_capacity(n);
        let mut present: Option<Vec<bool>> = None;
        for i in 0..n {
            let len = be_i32(raw, at)?;
            at += 4;
            if len < 0 {
                present.get_or_insert_with(|| vec![true; n])[i] = false;
                vals.push(0.0);
                continue;
            }
            let bytes: [u8; 8] = raw
                .get(at..at + 8)
                .and_then(|b| b.try_into().ok())
                .filter(|_| len == 8)
                .ok_or("a damaged float8[] element")?;
            vals.push(f64::from_be_bytes(bytes));
            at += 8;
        }
        Ok(ValueArray { vals, present })
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::FLOAT8_ARRAY
    }
}

/// One consistent read of a stream's blocks (see the module docs).
pub(crate) struct ColumnScan {
    conn: Conn,
    run: RunPk,
    stream: Stream,
    /// The stream's length in this snapshot; blocks at or past it are not part of it.
    length: i64,
    finished: bool,
}

impl ColumnScan {
    /// Starts the transaction and reads the stream's length.
    pub(crate) async fn begin(mirror: &Mirror, run: RunPk, stream: Stream) -> Result<ColumnScan> {
        let conn = mirror.client().await?;
        conn.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await
            .db("starting a column scan")?;
        let mut scan = ColumnScan {
            conn,
            run,
            stream,
            length: 0,
            finished: false,
        };
        let column = match stream {
            Stream::History => "history_bytes",
            Stream::System => "system_bytes",
        };
        scan.length = scan
            .conn
            .query_opt(
                &format!("SELECT {column} FROM wandb.run_sync_state WHERE run_pk = $1"),
                &[&run.0],
            )
            .await
            .db("reading a stream's length")?
            .map_or(0, |row| row.get(0));
        Ok(scan)
    }

    /// Another connection reading this scan's snapshot (`pg_export_snapshot`), so that value
    /// arrays can be fetched on two connections at once: sending them is the server's share of
    /// rendering a table (`array_send`, about 30 ns per value).
    pub(crate) async fn helper(&self, mirror: &Mirror) -> Result<ColumnScan> {
        let id: String = self
            .conn
            .query_one("SELECT pg_export_snapshot()", &[])
            .await
            .db("exporting a snapshot")?
            .get(0);
        if !id.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            return Err(self.inconsistent(format!("an unexpected snapshot id {id:?}")));
        }
        let conn = mirror.client().await?;
        conn.batch_execute(&format!(
            "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT '{id}'"
        ))
        .await
        .db("joining a snapshot")?;
        Ok(ColumnScan {
            conn,
            run: self.run,
            stream: self.stream,
            length: self.length,
            finished: false,
        })
    }

    /// Every block of the stream, in order.
    pub(crate) async fn blocks(&self) -> Result<Vec<BlockInfo>> {
        let rows = self
            .conn
            .query(
                "SELECT b.byte_start, b.byte_len, b.first_key, b.n_rows, b.keys, b.shapes,
                        CASE WHEN b.extras IS NULL THEN '{}'::int[] ELSE
                          ARRAY(SELECT (u.i - 1)::int FROM unnest(b.extras) WITH ORDINALITY u(e, i)
                                WHERE u.e IS NOT NULL) END
                 FROM wandb.stream_blocks b
                 WHERE b.run_pk = $1 AND b.stream = $2 AND b.byte_start < $3
                 ORDER BY b.byte_start",
                &[&self.run.0, &self.stream.code(), &self.length],
            )
            .await
            .db("reading a stream's blocks")?;
        let kinds = self
            .conn
            .query(
                "SELECT byte_start, key_id, kinds FROM wandb.block_values
                 WHERE run_pk = $1 AND stream = $2 AND byte_start < $3
                 ORDER BY byte_start, key_id",
                &[&self.run.0, &self.stream.code(), &self.length],
            )
            .await
            .db("reading a stream's value kinds")?;
        let mut by_block: HashMap<i64, Vec<(i32, Option<u8>)>> = HashMap::new();
        for row in &kinds {
            let kind: Option<i16> = row.get(2);
            by_block
                .entry(row.get(0))
                .or_default()
                .push((row.get(1), kind.map(|k| k as u8)));
        }
        let mut out = Vec::with_capacity(rows.len());
        let mut expected = 0i64;
        for row in &rows {
            let byte_start: i64 = row.get(0);
            if byte_start != expected {
                return Err(self.inconsistent(format!("a gap in the blocks at byte {expected}")));
            }
            let byte_len: i32 = row.get(1);
            expected += i64::from(byte_len);
            let first_key: i64 = row.get(2);
            let n_rows = usize::try_from(row.get::<_, i32>(3)).unwrap_or(0);
            let keys: Vec<i64> = row
                .get::<_, Option<Vec<i64>>>(4)
                .unwrap_or_else(|| (0..n_rows as i64).map(|i| first_key + i).collect());
            let shapes: Vec<i32> = row.get(5);
            let extra_rows: Vec<usize> = row
                .get::<_, Vec<i32>>(6)
                .into_iter()
                .filter_map(|i| usize::try_from(i).ok())
                .collect();
            if keys.len() != n_rows || shapes.len() != n_rows {
                return Err(self.inconsistent(format!(
                    "the block at byte {byte_start} has {n_rows} rows, {} keys and {} key sets",
                    keys.len(),
                    shapes.len()
                )));
            }
            out.push(BlockInfo {
                byte_start,
                byte_len,
                keys,
                shapes,
                extra_rows,
                kinds: by_block.remove(&byte_start).unwrap_or_default(),
            });
        }
        Ok(out)
    }

    /// The key ids of key sets.
    pub(crate) async fn key_sets(&self, ids: &[i32]) -> Result<HashMap<i32, Vec<i32>>> {
        let rows = self
            .conn
            .query(
                "SELECT key_set_id, key_ids FROM wandb.key_sets WHERE key_set_id = ANY($1)",
                &[&ids],
            )
            .await
            .db("reading key sets")?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    /// The dotted names of keys.
    pub(crate) async fn key_names(&self, ids: &[i32]) -> Result<HashMap<i32, String>> {
        let rows = self
            .conn
            .query(
                "SELECT key_id, key FROM wandb.metric_keys WHERE key_id = ANY($1)",
                &[&ids],
            )
            .await
            .db("reading metric keys")?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    /// The value arrays of the blocks starting in `[from, to)`: `(byte_start, key_id, values)`,
    /// by block then key.
    pub(crate) async fn values(&self, from: i64, to: i64) -> Result<Vec<(i64, i32, ValueArray)>> {
        let statement = self
            .conn
            .prepare_cached(
                "SELECT byte_start, key_id, vals FROM wandb.block_values
                 WHERE run_pk = $1 AND stream = $2 AND byte_start >= $3 AND byte_start < $4
                 ORDER BY byte_start, key_id",
            )
            .await
            .db("preparing a read of value arrays")?;
        let rows = self
            .conn
            .query(
                &statement,
                &[
                    &self.run.0,
                    &self.stream.code(),
                    &from,
                    &to.min(self.length),
                ],
            )
            .await
            .db("reading value arrays")?;
        rows.iter()
            .map(|r| {
                let vals: ValueArray = r
                    .try_get(2)
                    .map_err(|e| self.inconsistent(format!("a value array: {e}")))?;
                Ok((r.get(0), r.get(1), vals))
            })
            .collect()
    }

    /// A block's text.
    pub(crate) async fn text(&self, block: &BlockInfo) -> Result<Vec<u8>> {
        let row = self
            .conn
            .query_one(
                "SELECT codec, body FROM wandb.stream_blocks
                 WHERE run_pk = $1 AND stream = $2 AND byte_start = $3",
                &[&self.run.0, &self.stream.code(), &block.byte_start],
            )
            .await
            .db("reading a block's text")?;
        blocks::decode(row.get(0), row.get(1), block.byte_len)
    }

    /// Ends the transaction.
    pub(crate) async fn finish(mut self) -> Result<()> {
        self.conn
            .batch_execute("COMMIT")
            .await
            .db("ending a column scan")?;
        self.finished = true;
        Ok(())
    }

    fn inconsistent(&self, what: String) -> MirrorError {
        MirrorError::Inconsistent(format!("run #{} {:?}: {what}", self.run.0, self.stream))
    }
}

impl Drop for ColumnScan {
    fn drop(&mut self) {
        if !self.finished {
            // Left inside its transaction (an error, or the caller gave up): never reused.
            self.conn.discard();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn array(elements: &[Option<f64>]) -> Vec<u8> {
        let mut out = Vec::new();
        for v in [1i32, 0, 701, elements.len() as i32, 1] {
            out.extend_from_slice(&v.to_be_bytes());
        }
        for e in elements {
            match e {
                Some(v) => {
                    out.extend_from_slice(&8i32.to_be_bytes());
                    out.extend_from_slice(&v.to_be_bytes());
                }
                None => out.extend_from_slice(&(-1i32).to_be_bytes()),
            }
        }
        out
    }

    #[test]
    fn value_arrays_decode_with_nulls_and_non_finite_values() {
        let raw = array(&[Some(1.5), None, Some(f64::NEG_INFINITY), Some(f64::NAN)]);
        let a = ValueArray::from_sql(&Type::FLOAT8_ARRAY, &raw).unwrap();
        assert_eq!(a.get(0), Some(1.5));
        assert_eq!(a.get(1), None);
        assert_eq!(a.get(2), Some(f64::NEG_INFINITY));
        assert!(a.get(3).unwrap().is_nan());
        assert_eq!(a.get(4), None);
        let dense = ValueArray::from_sql(&Type::FLOAT8_ARRAY, &array(&[Some(2.0)])).unwrap();
        assert!(dense.present.is_none());
        let empty = 0i32.to_be_bytes().repeat(3);
        assert_eq!(
            ValueArray::from_sql(&Type::FLOAT8_ARRAY, &empty).unwrap(),
            ValueArray::default()
        );
        assert!(ValueArray::from_sql(&Type::FLOAT8_ARRAY, &raw[..raw.len() - 3]).is_err());
    }
}
