//! Blocks: how a run's stream is stored (schema v2, `wandb.stream_blocks` and
//! `wandb.block_values`).
//!
//! A stream (`history.jsonl`, `system.jsonl`) is cut into blocks of consecutive rows. A block is
//! one `stream_blocks` tuple — its rows' keys, shapes (key sets) and non-numeric leftovers
//! (`extra`, see [`super::rowcodec`]), and its exact JSON Lines text compressed here, in the
//! client, with zstd — plus one `block_values` tuple per numeric leaf: the leaf's value in each
//! of the block's rows, NULL where a row lacks it. So the server stores a few tuples per
//! thousand rows instead of a tuple and an index entry per row, compresses nothing (the text
//! arrives compressed; the column is `STORAGE EXTERNAL`), and a reader fetches the compressed
//! blocks a byte range overlaps and decompresses them itself.
//!
//! Block size: a block is closed at [`BLOCK_ROWS`] rows or [`BLOCK_TEXT_BYTES`] of text,
//! whichever comes first. Text-bounded blocks keep a small range read (the mount's 128 KiB
//! reads, `head`, `tail`) to one or two blocks; the row bound keeps a key's value array at
//! 8 KiB at most. Measured on one cluster and one run (`cargo bench --bench mirror_history`),
//! see `docs/MIRROR.md`.

use std::collections::HashMap;
use std::ops::Range;

use bytes::{BufMut, Bytes, BytesMut};

use super::error::{MirrorError, Result};
use super::rowcodec::EncodedBatch;

/// Most rows in one block.
pub const BLOCK_ROWS: usize = 1024;
/// A block is closed once its text reaches this many bytes (a longer single row gets a block
/// of its own).
pub const BLOCK_TEXT_BYTES: usize = 128 * 1024;

/// `stream_blocks.codec`: the body is the text itself.
pub(crate) const CODEC_NONE: i16 = 0;
/// `stream_blocks.codec`: the body is one zstd frame of the text.
pub(crate) const CODEC_ZSTD: i16 = 1;
/// zstd level: 1 is the fastest of the standard levels; JSON Lines of metrics compress to
/// about a third at it (see `docs/MIRROR.md`).
const ZSTD_LEVEL: i32 = 1;

/// Columns of `COPY wandb.stream_blocks`.
pub(crate) const BLOCKS_COPY: &str = "COPY wandb.stream_blocks (run_pk, stream, byte_start, \
     byte_len, first_key, last_key, n_rows, keys, shapes, extras, codec, body) \
     FROM STDIN (FORMAT binary)";
/// Columns of `COPY wandb.block_values`.
pub(crate) const VALUES_COPY: &str = "COPY wandb.block_values (run_pk, stream, byte_start, \
     key_id, vals, kinds) FROM STDIN (FORMAT binary)";

/// The binary COPY header: signature, flags, header-extension length.
pub(crate) const COPY_HEADER: [u8; 19] = *b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";
/// The binary COPY trailer: a field count of -1.
pub(crate) const COPY_TRAILER: [u8; 2] = [0xff, 0xff];

const INT4_OID: i32 = 23;
const INT8_OID: i32 = 20;
const FLOAT8_OID: i32 = 701;
const JSONB_OID: i32 = 3802;

/// Whether a block with `rows` rows and `text` bytes of text takes no more rows.
pub(crate) fn is_full(rows: usize, text: usize) -> bool {
    rows >= BLOCK_ROWS || text >= BLOCK_TEXT_BYTES
}

/// Cuts rows with these line lengths (without their newline) into blocks.
pub(crate) fn cut(line_lengths: impl Iterator<Item = usize>) -> Vec<Range<usize>> {
    let mut blocks = Vec::new();
    let (mut start, mut rows, mut text) = (0usize, 0usize, 0usize);
    for (i, len) in line_lengths.enumerate() {
        rows += 1;
        text += len + 1;
        if is_full(rows, text) {
            blocks.push(start..i + 1);
            (start, rows, text) = (i + 1, 0, 0);
        }
    }
    if rows > 0 {
        blocks.push(start..start + rows);
    }
    blocks
}

/// The rows to write, already decomposed: `batch.rows[i]` is `lines[i]`.
pub(crate) struct BlockInput<'a> {
    pub(crate) run_pk: i64,
    pub(crate) stream: i16,
    pub(crate) lines: &'a [&'a str],
    pub(crate) batch: &'a EncodedBatch,
    /// Key-set id of each of the batch's shapes.
    pub(crate) key_sets: &'a [i32],
    /// Key ids of each of the batch's shapes, in shape order.
    pub(crate) key_ids: &'a [Vec<i32>],
}

/// COPY data of some blocks for both tables.
pub(crate) struct EncodedBlocks {
    pub(crate) blocks: Bytes,
    pub(crate) values: Bytes,
    /// Bytes of text the blocks hold.
    pub(crate) text_bytes: i64,
}

/// Encodes the rows `ranges` of `input` as blocks (COPY rows without header or trailer), the
/// first starting at byte `byte_start` of the stream.
pub(crate) fn encode(
    input: &BlockInput<'_>,
    ranges: &[Range<usize>],
    mut byte_start: i64,
) -> Result<EncodedBlocks> {
    let mut blocks = BytesMut::new();
    let mut values = BytesMut::new();
    let mut text_bytes = 0i64;
    let mut text = Vec::with_capacity(BLOCK_TEXT_BYTES + 4096);
    for range in ranges {
        text.clear();
        for line in &input.lines[range.clone()] {
            text.extend_from_slice(line.as_bytes());
            text.push(b'\n');
        }
        let byte_len = i32::try_from(text.len()).map_err(|_| {
            MirrorError::Inconsistent(format!(
                "a single row of run #{} is larger than 2 GiB",
                input.run_pk
            ))
        })?;
        let rows = &input.batch.rows[range.clone()];
        let (Some(first), Some(last)) = (rows.first(), rows.last()) else {
            continue;
        };
        let compressed = zstd::bulk::compress(&text, ZSTD_LEVEL)
            .map_err(|e| MirrorError::Inconsistent(format!("compressing a block: {e}")))?;
        let (codec, body): (i16, &[u8]) = if compressed.len() < text.len() {
            (CODEC_ZSTD, &compressed)
        } else {
            (CODEC_NONE, &text)
        };
        let dense = rows
            .iter()
            .enumerate()
            .all(|(i, r)| r.key == first.key + i as i64);

        blocks.put_i16(12);
        put_i64(&mut blocks, input.run_pk);
        blocks.put_i32(2);
        blocks.put_i16(input.stream);
        put_i64(&mut blocks, byte_start);
        blocks.put_i32(4);
        blocks.put_i32(byte_len);
        put_i64(&mut blocks, first.key);
        put_i64(&mut blocks, last.key);
        blocks.put_i32(4);
        blocks.put_i32(rows.len() as i32);
        if dense {
            blocks.put_i32(-1);
        } else {
            put_array(&mut blocks, INT8_OID, rows.len(), false, |out| {
                for r in rows {
                    out.put_i32(8);
                    out.put_i64(r.key);
                }
            });
        }
        put_array(&mut blocks, INT4_OID, rows.len(), false, |out| {
            for r in rows {
                out.put_i32(4);
                out.put_i32(input.key_sets[r.shape as usize]);
            }
        });
        if rows.iter().any(|r| r.extra.is_some()) {
            put_array(&mut blocks, JSONB_OID, rows.len(), true, |out| {
                for r in rows {
                    match &r.extra {
                        // jsonb binary format: version 1, then the text.
                        Some(x) => {
                            out.put_i32((x.len() + 1) as i32);
                            out.put_u8(1);
                            out.put_slice(&input.batch.extra[x.clone()]);
                        }
                        None => out.put_i32(-1),
                    }
                }
            });
        } else {
            blocks.put_i32(-1);
        }
        blocks.put_i32(2);
        blocks.put_i16(codec);
        blocks.put_i32(body.len() as i32);
        blocks.put_slice(body);

        encode_values(input, rows, byte_start, &mut values);
        byte_start += i64::from(byte_len);
        text_bytes += i64::from(byte_len);
    }
    Ok(EncodedBlocks {
        blocks: blocks.freeze(),
        values: values.freeze(),
        text_bytes,
    })
}

/// One `block_values` COPY row per numeric leaf of the block's rows, in key-id order, with the
/// kinds of JSON number its values came from (`rowcodec::KIND_*`, or-ed).
fn encode_values(
    input: &BlockInput<'_>,
    rows: &[super::rowcodec::EncodedRow],
    byte_start: i64,
    out: &mut BytesMut,
) {
    // Column of each key id: values, which rows have one, the kinds seen.
    let mut index: HashMap<i32, usize> = HashMap::new();
    let mut columns: Vec<(i32, Vec<f64>, Vec<bool>, u8)> = Vec::new();
    let n = rows.len();
    for (j, row) in rows.iter().enumerate() {
        let ids = &input.key_ids[row.shape as usize];
        let vals = &input.batch.vals[row.vals.clone()];
        let kinds = &input.batch.kinds[row.vals.clone()];
        for ((id, v), kind) in ids.iter().zip(vals).zip(kinds) {
            let c = *index.entry(*id).or_insert_with(|| {
                columns.push((*id, vec![0.0; n], vec![false; n], 0));
                columns.len() - 1
            });
            columns[c].1[j] = *v;
            columns[c].2[j] = true;
            columns[c].3 |= kind;
        }
    }
    columns.sort_unstable_by_key(|c| c.0);
    for (id, vals, present, kinds) in &columns {
        out.put_i16(6);
        put_i64(out, input.run_pk);
        out.put_i32(2);
        out.put_i16(input.stream);
        put_i64(out, byte_start);
        out.put_i32(4);
        out.put_i32(*id);
        let nulls = present.iter().any(|p| !p);
        put_array(out, FLOAT8_OID, n, nulls, |out| {
            for (v, p) in vals.iter().zip(present) {
                if *p {
                    out.put_i32(8);
                    out.put_f64(*v);
                } else {
                    out.put_i32(-1);
                }
            }
        });
        out.put_i32(2);
        out.put_i16(i16::from(*kinds));
    }
}

fn put_i64(out: &mut BytesMut, v: i64) {
    out.put_i32(8);
    out.put_i64(v);
}

/// A one-dimensional array field of `n` elements (written by `elements`) in binary COPY form.
fn put_array(
    out: &mut BytesMut,
    oid: i32,
    n: usize,
    has_nulls: bool,
    elements: impl FnOnce(&mut BytesMut),
) {
    let at = out.len();
    out.put_i32(0); // field length, patched below
    out.put_i32(1);
    out.put_i32(i32::from(has_nulls));
    out.put_i32(oid);
    out.put_i32(n as i32);
    out.put_i32(1);
    elements(out);
    let len = (out.len() - at - 4) as i32;
    out[at..at + 4].copy_from_slice(&len.to_be_bytes());
}

/// The text of a block from its stored body.
pub(crate) fn decode(codec: i16, body: &[u8], byte_len: i32) -> Result<Vec<u8>> {
    let len = usize::try_from(byte_len)
        .map_err(|_| MirrorError::Inconsistent(format!("a block of {byte_len} bytes")))?;
    let text = match codec {
        CODEC_NONE => body.to_vec(),
        CODEC_ZSTD => zstd::bulk::decompress(body, len)
            .map_err(|e| MirrorError::Inconsistent(format!("a damaged block: {e}")))?,
        other => {
            return Err(MirrorError::Inconsistent(format!(
                "a block in an unknown encoding ({other}): written by a newer wandbfs?"
            )));
        }
    };
    if text.len() != len {
        return Err(MirrorError::Inconsistent(format!(
            "a block holds {} bytes of text, not {len}",
            text.len()
        )));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_close_at_the_row_or_the_text_bound() {
        let small = cut(std::iter::repeat_n(10, BLOCK_ROWS * 2 + 5));
        assert_eq!(
            small,
            vec![
                0..BLOCK_ROWS,
                BLOCK_ROWS..2 * BLOCK_ROWS,
                2 * BLOCK_ROWS..2 * BLOCK_ROWS + 5
            ]
        );
        let wide = cut(std::iter::repeat_n(BLOCK_TEXT_BYTES / 2, 5));
        assert_eq!(wide, vec![0..2, 2..4, 4..5]);
        let huge = cut([1, BLOCK_TEXT_BYTES * 3, 1].into_iter());
        assert_eq!(huge, vec![0..2, 2..3]);
        assert!(cut(std::iter::empty()).is_empty());
    }

    #[test]
    fn text_round_trips_through_both_codecs() {
        let text = b"{\"a\":1}\n".repeat(100);
        let z = zstd::bulk::compress(&text, ZSTD_LEVEL).unwrap();
        assert_eq!(decode(CODEC_ZSTD, &z, text.len() as i32).unwrap(), text);
        assert_eq!(decode(CODEC_NONE, &text, text.len() as i32).unwrap(), text);
        assert!(decode(CODEC_ZSTD, &z, text.len() as i32 + 1).is_err());
        assert!(decode(7, &text, text.len() as i32).is_err());
        assert!(decode(CODEC_ZSTD, b"not zstd", 10).is_err());
    }
}
