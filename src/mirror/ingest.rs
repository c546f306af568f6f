//! Ingest of history rows and system events: blocks written by binary COPY, committed with the
//! sync state.
//!
//! A batch is applied by one transaction that (1) locks the run's sync-state row, (2) drops
//! rows whose key (step, or event number) is not above the stored last key — so re-sending a
//! batch after a crash, or overlapping pages, never duplicates anything, (3) takes back the
//! stream's last block if it is not full (its text is decompressed and its rows decomposed
//! again with the new ones: bounded work, at most one block), (4) decomposes the rows into
//! numeric values and `extra` ([`super::rowcodec`]), resolving their key sets in the dictionary
//! ([`super::dictionary`], committed on its own, on another connection), (5) COPYs the blocks
//! ([`super::blocks`]) into `wandb.stream_blocks` and `wandb.block_values`, and (6) advances the
//! sync state (last key, row count, byte length) and commits.
//!
//! Blocks and length commit together, so a reader (which reads both in one statement) never
//! sees half a batch, and a process killed at any point leaves either the batch or nothing:
//! the resume re-sends from the stored last key. The rewritten last block keeps its start and
//! its leading bytes, so bytes below the length never change.

use std::borrow::Cow;

use bytes::Bytes;
use futures::{SinkExt, pin_mut};

use super::blocks::{self, BlockInput, COPY_HEADER, COPY_TRAILER};
use super::error::{DbContext, MirrorError, Result};
use super::model::RunPk;
use super::rowcodec::RowEncoder;
use super::{Mirror, Stream};
use crate::values;

/// Default bounds of one batch for [`StreamWriter`].
pub const DEFAULT_BATCH_ROWS: usize = 10_000;
/// Default byte bound (of row text) of one batch for [`StreamWriter`].
pub const DEFAULT_BATCH_BYTES: usize = 8 * 1024 * 1024;

/// What one batch did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IngestOutcome {
    /// Rows written.
    pub inserted: u64,
    /// Rows dropped because their key was not above the last stored key.
    pub skipped: u64,
    /// The stream's last key after the batch (`None`: still empty).
    pub last_key: Option<i64>,
    /// The stream's total byte length after the batch.
    pub total_bytes: u64,
    /// The stream's total row count after the batch.
    pub total_rows: u64,
}

/// The sync-state columns of one stream.
pub(crate) struct StateColumns {
    pub(crate) last_key: &'static str,
    pub(crate) rows: &'static str,
    pub(crate) bytes: &'static str,
    synced_at: Option<&'static str>,
}

impl Stream {
    pub(crate) fn state_columns(self) -> StateColumns {
        match self {
            Stream::History => StateColumns {
                last_key: "history_last_step",
                rows: "history_rows",
                bytes: "history_bytes",
                synced_at: Some("history_synced_at"),
            },
            Stream::System => StateColumns {
                last_key: "system_last_seq",
                rows: "system_rows",
                bytes: "system_bytes",
                synced_at: None,
            },
        }
    }

    fn key_name(self) -> &'static str {
        match self {
            Stream::History => "step",
            Stream::System => "event",
        }
    }
}

/// The stream state read under the row lock at the start of a batch.
struct StoredState {
    last_key: Option<i64>,
    rows: i64,
    bytes: i64,
}

/// The stream's last block, taken back to be rewritten with the new rows.
pub(crate) struct TailBlock {
    pub(crate) byte_start: i64,
    pub(crate) keys: Vec<i64>,
    pub(crate) text: String,
}

impl TailBlock {
    /// Its rows' lines (without newlines).
    pub(crate) fn lines(&self) -> impl Iterator<Item = &str> {
        self.text.strip_suffix('\n').unwrap_or("").split('\n')
    }
}

/// Blocks per piece of COPY data: pieces are encoded while the server consumes the previous
/// ones.
const COPY_PIECE_BLOCKS: usize = 8;

impl Mirror {
    /// Ingests one batch of rows `(key, W&B JSON text)` into `stream` of `run`, committed
    /// together with the run's sync state (see the module docs).
    ///
    /// Keys must ascend; a row whose key is not above the previous accepted one (or the stored
    /// last key) is skipped. Row text is kept byte for byte in the stream's JSON Lines file; a
    /// row spanning several lines is re-rendered compactly onto one.
    pub async fn ingest_batch<S: AsRef<str>>(
        &self,
        run: RunPk,
        stream: Stream,
        rows: &[(i64, S)],
    ) -> Result<IngestOutcome> {
        let _permit = self
            .ingest_permits
            .acquire()
            .await
            .map_err(|_| MirrorError::Pool("the mirror is shutting down".into()))?;
        let mut conn = self.client().await?;
        let tx = conn
            .transaction()
            .await
            .db("starting an ingest transaction")?;
        tx.batch_execute(ASYNC_COMMIT)
            .await
            .db("setting up an ingest transaction")?;
        let cols = stream.state_columns();
        let state = tx
            .query_opt(
                &format!(
                    "SELECT {}, {}, {} FROM wandb.run_sync_state WHERE run_pk = $1 FOR UPDATE",
                    cols.last_key, cols.rows, cols.bytes
                ),
                &[&run.0],
            )
            .await
            .db("locking the run's sync state")?
            .ok_or_else(|| MirrorError::NotFound {
                what: format!("run #{}", run.0),
            })?;
        let stored = StoredState {
            last_key: state.get(0),
            rows: state.get(1),
            bytes: state.get(2),
        };

        // Select the new rows. Their text and decomposition are kept for the batch only, so
        // memory is bounded by the batch, not the run.
        let mut accepted: Vec<(i64, Cow<'_, str>)> = Vec::with_capacity(rows.len());
        let mut last = stored.last_key;
        let mut skipped = 0u64;
        for (key, text) in rows {
            if last.is_some_and(|l| *key <= l) {
                skipped += 1;
                continue;
            }
            let line = values::as_single_line(text.as_ref()).map_err(|source| {
                MirrorError::InvalidJson {
                    what: format!("{} {key} of run #{}", stream.key_name(), run.0),
                    source,
                }
            })?;
            accepted.push((*key, line));
            last = Some(*key);
        }
        if accepted.is_empty() {
            tx.commit().await.db("committing an empty ingest batch")?;
            return Ok(IngestOutcome {
                inserted: 0,
                skipped,
                last_key: stored.last_key,
                total_bytes: stored.bytes as u64,
                total_rows: stored.rows as u64,
            });
        }

        let tail = take_tail(&tx, run, stream, stored.bytes).await?;
        let start = tail.as_ref().map_or(stored.bytes, |t| t.byte_start);
        let mut keys: Vec<i64> = Vec::with_capacity(accepted.len() + blocks::BLOCK_ROWS);
        let mut lines: Vec<&str> = Vec::with_capacity(keys.capacity());
        if let Some(tail) = &tail {
            keys.extend_from_slice(&tail.keys);
            lines.extend(tail.lines());
            if keys.len() != lines.len() {
                return Err(MirrorError::Inconsistent(format!(
                    "run #{} {stream:?}: the last block has {} keys and {} lines",
                    run.0,
                    keys.len(),
                    lines.len()
                )));
            }
        }
        for (key, line) in &accepted {
            keys.push(*key);
            lines.push(line);
        }
        let appended = self
            .copy_blocks(&tx, run, stream, start, &keys, &lines)
            .await?
            - (stored.bytes - start);

        let inserted = accepted.len() as i64;
        let total_rows = stored.rows + inserted;
        let total_bytes = stored.bytes + appended;
        let synced_at = cols
            .synced_at
            .map(|c| format!(", {c} = now()"))
            .unwrap_or_default();
        tx.execute(
            &format!(
                "UPDATE wandb.run_sync_state SET {} = $2, {} = $3, {} = $4{synced_at}
                 WHERE run_pk = $1",
                cols.last_key, cols.rows, cols.bytes
            ),
            &[&run.0, &last, &total_rows, &total_bytes],
        )
        .await
        .db("advancing the sync state")?;
        tx.commit().await.db("committing an ingest batch")?;
        Ok(IngestOutcome {
            inserted: inserted as u64,
            skipped,
            last_key: last,
            total_bytes: total_bytes as u64,
            total_rows: total_rows as u64,
        })
    }

    /// Decomposes `lines` (keyed by `keys`, starting at byte `start` of the stream) and COPYs
    /// them as blocks inside `tx`. Returns the bytes of text written.
    pub(crate) async fn copy_blocks(
        &self,
        tx: &tokio_postgres::Transaction<'_>,
        run: RunPk,
        stream: Stream,
        start: i64,
        keys: &[i64],
        lines: &[&str],
    ) -> Result<i64> {
        let mut encoder = RowEncoder::default();
        for (key, line) in keys.iter().zip(lines) {
            encoder
                .push(*key, line)
                .map_err(|source| MirrorError::InvalidJson {
                    what: format!("{} {key} of run #{}", stream.key_name(), run.0),
                    source,
                })?;
        }
        let batch = encoder.finish();
        // New keys and key sets are committed on another connection (see `dictionary`): never
        // inside this transaction, whose failure would roll back ids other batches already use.
        let key_sets = match self.dictionary.cached(&batch.shapes) {
            Some(ids) => ids,
            None => {
                let dictionary_conn = self.client().await?;
                self.dictionary
                    .key_set_ids(&dictionary_conn, &batch.shapes)
                    .await?
            }
        };
        let key_ids = batch
            .shapes
            .iter()
            .map(|s| self.dictionary.key_ids(s))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| {
                MirrorError::Inconsistent("a metric key is missing from the cache".into())
            })?;
        let input = BlockInput {
            run_pk: run.0,
            stream: stream.code(),
            lines,
            batch: &batch,
            key_sets: &key_sets,
            key_ids: &key_ids,
        };
        let ranges = blocks::cut(lines.iter().map(|l| l.len()));
        // One COPY at a time per connection: the blocks go first (encoded piece by piece while
        // the server consumes the previous piece), their values are kept and follow.
        let block_sink = tx
            .copy_in(blocks::BLOCKS_COPY)
            .await
            .db("starting the block COPY")?;
        pin_mut!(block_sink);
        block_sink
            .send(Bytes::from_static(&COPY_HEADER))
            .await
            .db("copying blocks")?;
        let mut values = vec![Bytes::from_static(&COPY_HEADER)];
        let mut written = 0i64;
        for piece in ranges.chunks(COPY_PIECE_BLOCKS) {
            let encoded = blocks::encode(&input, piece, start + written)?;
            written += encoded.text_bytes;
            block_sink.send(encoded.blocks).await.db("copying blocks")?;
            values.push(encoded.values);
        }
        block_sink
            .send(Bytes::from_static(&COPY_TRAILER))
            .await
            .db("copying blocks")?;
        block_sink.finish().await.db("finishing the block COPY")?;
        values.push(Bytes::from_static(&COPY_TRAILER));
        let value_sink = tx
            .copy_in(blocks::VALUES_COPY)
            .await
            .db("starting the value COPY")?;
        pin_mut!(value_sink);
        for piece in values {
            value_sink.send(piece).await.db("copying block values")?;
        }
        value_sink.finish().await.db("finishing the value COPY")?;
        Ok(written)
    }

    /// Deletes every block of `stream` of `run` and resets its sync state, in one transaction
    /// (for a full re-sync of a run whose history was rewritten upstream).
    pub async fn reset_stream(&self, run: RunPk, stream: Stream) -> Result<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.db("starting a stream reset")?;
        let cols = stream.state_columns();
        tx.execute(
            &format!(
                "UPDATE wandb.run_sync_state SET {} = NULL, {} = 0, {} = 0 WHERE run_pk = $1",
                cols.last_key, cols.rows, cols.bytes
            ),
            &[&run.0],
        )
        .await
        .db("resetting the sync state")?;
        delete_blocks(&tx, run, stream, 0, "deleting blocks").await?;
        tx.commit().await.db("committing a stream reset")?;
        Ok(())
    }

    /// A buffered writer that groups rows into batches for [`Mirror::ingest_batch`].
    pub fn stream_writer(&self, run: RunPk, stream: Stream) -> StreamWriter {
        StreamWriter {
            mirror: self.clone(),
            run,
            stream,
            rows: Vec::new(),
            bytes: 0,
            max_rows: DEFAULT_BATCH_ROWS,
            max_bytes: DEFAULT_BATCH_BYTES,
            in_flight: None,
            total: IngestOutcome::default(),
        }
    }
}

/// Deletes the blocks of a stream starting at or after byte `from`, and their values, in one
/// statement.
pub(super) async fn delete_blocks(
    tx: &tokio_postgres::Transaction<'_>,
    run: RunPk,
    stream: Stream,
    from: i64,
    context: &'static str,
) -> Result<()> {
    tx.execute(
        "WITH blocks AS (
             DELETE FROM wandb.stream_blocks
             WHERE run_pk = $1 AND stream = $2 AND byte_start >= $3
         )
         DELETE FROM wandb.block_values WHERE run_pk = $1 AND stream = $2 AND byte_start >= $3",
        &[&run.0, &stream.code(), &from],
    )
    .await
    .db(context)?;
    Ok(())
}

/// Takes the stream's last block out of `tx` if it can take more rows (deleting it and its
/// values; the caller writes it again with the new rows). Blocks starting at or past the
/// stored length (which a batch commits with its blocks, so only a hand-edited or restored
/// database has them) are removed first; the rest must end exactly at the length.
async fn take_tail(
    tx: &tokio_postgres::Transaction<'_>,
    run: RunPk,
    stream: Stream,
    length: i64,
) -> Result<Option<TailBlock>> {
    delete_blocks(
        tx,
        run,
        stream,
        length,
        "removing blocks past the stream's length",
    )
    .await?;
    let Some(row) = tx
        .query_opt(
            "SELECT byte_start, byte_len, first_key, n_rows, keys, codec, body
             FROM wandb.stream_blocks WHERE run_pk = $1 AND stream = $2
             ORDER BY byte_start DESC LIMIT 1",
            &[&run.0, &stream.code()],
        )
        .await
        .db("reading the last block")?
    else {
        if length != 0 {
            return Err(MirrorError::Inconsistent(format!(
                "run #{} {stream:?}: no block, but the stream has {length} bytes",
                run.0
            )));
        }
        return Ok(None);
    };
    let byte_start: i64 = row.get(0);
    let byte_len: i32 = row.get(1);
    let first_key: i64 = row.get(2);
    let n_rows: i32 = row.get(3);
    if byte_start + i64::from(byte_len) != length {
        return Err(MirrorError::Inconsistent(format!(
            "run #{} {stream:?}: blocks end at {} but the stream has {length} bytes",
            run.0,
            byte_start + i64::from(byte_len)
        )));
    }
    if blocks::is_full(n_rows as usize, byte_len as usize) {
        return Ok(None);
    }
    let keys: Vec<i64> = match row.get::<_, Option<Vec<i64>>>(4) {
        Some(keys) => keys,
        None => (0..i64::from(n_rows)).map(|i| first_key + i).collect(),
    };
    let text = blocks::decode(row.get(5), row.get(6), byte_len)?;
    let text = String::from_utf8(text).map_err(|_| {
        MirrorError::Inconsistent(format!("run #{} {stream:?}: a block is not UTF-8", run.0))
    })?;
    // The last block: nothing starts after it any more.
    delete_blocks(tx, run, stream, byte_start, "replacing the last block").await?;
    Ok(Some(TailBlock {
        byte_start,
        keys,
        text,
    }))
}

/// Ingest transactions commit without waiting for their WAL flush. This risks no consistency:
/// after a server crash, PostgreSQL recovers a *prefix* of the committed transactions (WAL is
/// replayed in order), so a lost batch takes its sync state with it and is fetched again by the
/// next sync, exactly as if the process had died before committing it. Only the last fraction
/// of a second of work can be lost, never made inconsistent; fsync stays on.
const ASYNC_COMMIT: &str = "SET LOCAL synchronous_commit = off";

/// Groups rows into bounded batches and commits each with the run's sync state.
///
/// One batch is committed in the background while the next one is being filled, so producing
/// rows (network, parquet decoding) overlaps with writing them. At most two batches exist at a
/// time, so memory stays flat however long the run is. An error of a background batch is
/// returned by the next [`push`](Self::push), [`flush`](Self::flush) or
/// [`finish`](Self::finish); batches after a failed one are not attempted. Dropping the writer
/// without `finish` lets an in-flight batch complete (or not) on its own; either way the
/// stored state stays consistent, and a resume continues from it.
pub struct StreamWriter {
    mirror: Mirror,
    run: RunPk,
    stream: Stream,
    rows: Vec<(i64, String)>,
    bytes: usize,
    max_rows: usize,
    max_bytes: usize,
    in_flight: Option<tokio::task::JoinHandle<Result<IngestOutcome>>>,
    total: IngestOutcome,
}

impl StreamWriter {
    /// Sets the batch bounds (rows and bytes of row text; at least one row per batch).
    pub fn with_batch_limits(mut self, max_rows: usize, max_bytes: usize) -> Self {
        self.max_rows = max_rows.max(1);
        self.max_bytes = max_bytes.max(1);
        self
    }

    /// Buffers one row; hands a full batch to the background committer.
    pub async fn push(&mut self, key: i64, text: impl Into<String>) -> Result<()> {
        let text = text.into();
        self.bytes += text.len();
        self.rows.push((key, text));
        if self.rows.len() >= self.max_rows || self.bytes >= self.max_bytes {
            self.start_batch().await?;
        }
        Ok(())
    }

    /// Commits everything pushed so far and waits for it.
    pub async fn flush(&mut self) -> Result<()> {
        self.start_batch().await?;
        self.wait_in_flight().await
    }

    /// Commits what is left and returns the totals of all batches.
    pub async fn finish(mut self) -> Result<IngestOutcome> {
        self.flush().await?;
        Ok(self.total)
    }

    /// Waits for the previous batch, then starts committing the buffered rows in the
    /// background.
    async fn start_batch(&mut self) -> Result<()> {
        self.wait_in_flight().await?;
        if self.rows.is_empty() {
            return Ok(());
        }
        let rows = std::mem::replace(
            &mut self.rows,
            Vec::with_capacity(self.max_rows.min(65_536)),
        );
        self.bytes = 0;
        let (mirror, run, stream) = (self.mirror.clone(), self.run, self.stream);
        self.in_flight = Some(tokio::spawn(async move {
            mirror.ingest_batch(run, stream, &rows).await
        }));
        Ok(())
    }

    async fn wait_in_flight(&mut self) -> Result<()> {
        let Some(handle) = self.in_flight.take() else {
            return Ok(());
        };
        let outcome = handle
            .await
            .map_err(|e| MirrorError::Pool(format!("an ingest task failed: {e}")))??;
        self.total.inserted += outcome.inserted;
        self.total.skipped += outcome.skipped;
        self.total.last_key = outcome.last_key;
        self.total.total_bytes = outcome.total_bytes;
        self.total.total_rows = outcome.total_rows;
        Ok(())
    }
}
