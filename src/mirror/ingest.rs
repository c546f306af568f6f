//! Ingest of history rows and system events: binary COPY plus pre-rendered chunks, committed
//! with the sync state.
//!
//! A batch is applied by a transaction that (1) locks the run's sync-state row, (2) drops rows
//! whose key (step, or event number) is not above the stored last key — so re-sending a batch
//! after a crash, or overlapping pages, never duplicates anything — and decomposes the rest
//! into numeric values and `extra` ([`super::rowcodec`]), resolving their key sets in the
//! dictionary ([`super::dictionary`], committed on its own), (3) COPYs the rows into
//! `wandb.history` / `wandb.system_events` in binary format, and (5) advances the sync state
//! (last key, row count, byte length) and commits. Concurrently, on a second connection, (4) a
//! chunk transaction appends the rows' JSON Lines text to the stream's chunks, rewriting at
//! most one not-yet-full trailing chunk (bounded compaction: every chunk but the last is at
//! least [`CHUNK_TARGET_BYTES`]); it commits after the row COPY succeeded and before (5).
//!
//! The stream's length lives in the sync state, so it changes only when (5) commits, with the
//! rows: readers clip chunks at that length in the same statement, and never see a
//! half-applied batch. Bytes below the length never change. If the process dies between the
//! two commits, the chunks hold bytes past the length; the next batch cuts them off before
//! appending, so a resume neither loses nor duplicates anything.

use std::borrow::Cow;

use bytes::{BufMut, Bytes, BytesMut};
use futures::{SinkExt, pin_mut};
use tokio::sync::oneshot;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::Type;

use super::error::{DbContext, MirrorError, Result};
use super::model::RunPk;
use super::rowcodec::{EncodedBatch, RowEncoder};
use super::{Mirror, Stream};
use crate::values;

/// Target size of a chunk of pre-rendered JSON Lines text. A chunk is closed once it reaches
/// this size (a single line longer than this gets a chunk of its own).
pub const CHUNK_TARGET_BYTES: usize = 128 * 1024;

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
struct StateColumns {
    last_key: &'static str,
    rows: &'static str,
    bytes: &'static str,
    synced_at: Option<&'static str>,
}

impl Stream {
    fn state_columns(self) -> StateColumns {
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

    fn row_table_copy(self) -> &'static str {
        match self {
            Stream::History => {
                "COPY wandb.history (run_pk, step, key_set_id, vals, extra) \
                 FROM STDIN (FORMAT binary)"
            }
            Stream::System => {
                "COPY wandb.system_events (run_pk, seq, key_set_id, vals, extra) \
                 FROM STDIN (FORMAT binary)"
            }
        }
    }

    fn key_name(self) -> &'static str {
        match self {
            Stream::History => "step",
            Stream::System => "event",
        }
    }
}

/// A chunk being assembled.
struct ChunkBuilder {
    byte_start: i64,
    first_key: i64,
    last_key: i64,
    n_rows: i32,
    body: Vec<u8>,
}

/// The stream state read under the row lock at the start of a batch.
struct StoredState {
    last_key: Option<i64>,
    rows: i64,
    bytes: i64,
}

/// A row accepted into a batch: its key and its JSON Lines text.
struct Accepted<'a> {
    key: i64,
    line: Cow<'a, str>,
}

/// Rows per piece of binary COPY data: pieces are encoded while the server consumes the
/// previous ones.
const COPY_PIECE_ROWS: usize = 1024;

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
        let mut rows_conn = self.client().await?;
        let mut chunks_conn = self.client().await?;
        let tx = rows_conn
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

        // Select the new rows, keep their JSON Lines text and decompose them for SQL. Both are
        // kept for the batch only, so memory is bounded by the batch, not the run.
        let mut accepted: Vec<Accepted<'_>> = Vec::with_capacity(rows.len());
        let mut encoder = RowEncoder::default();
        let mut last = stored.last_key;
        let mut skipped = 0u64;
        for (key, text) in rows {
            if last.is_some_and(|l| *key <= l) {
                skipped += 1;
                continue;
            }
            let what = || format!("{} {key} of run #{}", stream.key_name(), run.0);
            let line = values::as_single_line(text.as_ref()).map_err(|source| {
                MirrorError::InvalidJson {
                    what: what(),
                    source,
                }
            })?;
            encoder
                .push(*key, &line)
                .map_err(|source| MirrorError::InvalidJson {
                    what: what(),
                    source,
                })?;
            accepted.push(Accepted { key: *key, line });
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

        // Rows (this transaction) and chunks (a second connection) are written concurrently,
        // so two server backends share the work. The chunk transaction commits only once the
        // row COPY has succeeded, and before this transaction publishes the new length, so a
        // reader never sees a length whose bytes are missing; if this transaction then fails,
        // the chunks' extra bytes lie past the stored length, invisible, and the next batch
        // cuts them off.
        let encoded = encoder.finish();
        // New keys and key sets are committed on the chunk connection before its transaction
        // starts (see `dictionary`): never inside the row transaction, whose failure would
        // roll back ids other batches already use.
        let key_sets = self
            .dictionary
            .key_set_ids(&chunks_conn, &encoded.shapes)
            .await?;
        let (go, go_signal) = oneshot::channel::<()>();
        let rows_job = async {
            let sink = tx
                .copy_in(stream.row_table_copy())
                .await
                .db("starting the row COPY")?;
            pin_mut!(sink);
            for (i, piece) in encoded.rows.chunks(COPY_PIECE_ROWS).enumerate() {
                let data = encode_copy_rows(run.0, &encoded, &key_sets, piece, i == 0);
                sink.send(data).await.db("copying rows")?;
            }
            sink.send(Bytes::from_static(&COPY_TRAILER))
                .await
                .db("copying rows")?;
            sink.finish().await.db("finishing the row COPY")?;
            // The chunk job may have failed already; its error is reported below.
            let _ = go.send(());
            Ok::<(), MirrorError>(())
        };
        let chunks_job = write_chunks(&mut chunks_conn, run, stream, &stored, &accepted, go_signal);
        let (rows_result, chunks_result) = tokio::join!(rows_job, chunks_job);
        rows_result?;
        let appended = chunks_result?;

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

    /// Deletes every row and chunk of `stream` of `run` and resets its sync state, in one
    /// transaction (for a full re-sync of a run whose history was rewritten upstream).
    pub async fn reset_stream(&self, run: RunPk, stream: Stream) -> Result<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.db("starting a stream reset")?;
        let cols = stream.state_columns();
        let table = match stream {
            Stream::History => "wandb.history",
            Stream::System => "wandb.system_events",
        };
        tx.execute(
            &format!(
                "UPDATE wandb.run_sync_state SET {} = NULL, {} = 0, {} = 0 WHERE run_pk = $1",
                cols.last_key, cols.rows, cols.bytes
            ),
            &[&run.0],
        )
        .await
        .db("resetting the sync state")?;
        tx.execute(&format!("DELETE FROM {table} WHERE run_pk = $1"), &[&run.0])
            .await
            .db("deleting rows")?;
        tx.execute(
            "DELETE FROM wandb.stream_chunks WHERE run_pk = $1 AND stream = $2",
            &[&run.0, &stream.code()],
        )
        .await
        .db("deleting chunks")?;
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

/// Ingest transactions commit without waiting for their WAL flush. This risks no consistency:
/// after a server crash, PostgreSQL recovers a *prefix* of the committed transactions (WAL is
/// replayed in order), so a lost batch takes its sync state with it and is fetched again by the
/// next sync, exactly as if the process had died before committing it; the chunk transaction
/// precedes its row transaction in the WAL, so a surviving length never lacks its bytes. Only
/// the last fraction of a second of work can be lost, never made inconsistent; fsync stays on.
const ASYNC_COMMIT: &str = "SET LOCAL synchronous_commit = off";

/// The binary COPY header: signature, flags, header-extension length.
const COPY_HEADER: [u8; 19] = *b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";
/// The binary COPY trailer: a field count of -1.
const COPY_TRAILER: [u8; 2] = [0xff, 0xff];
/// `float8` type oid (array element type in the binary array format).
const FLOAT8_OID: i32 = 701;

/// Binary COPY data for `rows` of `batch` (`(run_pk, key, key_set_id, vals float8[], extra
/// jsonb)`), with the COPY header when `header`. Written by hand: the arrays are the bulk of
/// the data, and `BinaryCopyInWriter` would box and encode every value through `ToSql`.
fn encode_copy_rows(
    run_pk: i64,
    batch: &EncodedBatch,
    key_sets: &[i32],
    rows: &[super::rowcodec::EncodedRow],
    header: bool,
) -> Bytes {
    let vals: usize = rows.iter().map(|r| r.vals.len()).sum();
    let extra: usize = rows
        .iter()
        .filter_map(|r| r.extra.as_ref().map(|x| x.len() + 5))
        .sum();
    let mut out = BytesMut::with_capacity(19 + rows.len() * 70 + vals * 12 + extra);
    if header {
        out.put_slice(&COPY_HEADER);
    }
    for row in rows {
        out.put_i16(5);
        out.put_i32(8);
        out.put_i64(run_pk);
        out.put_i32(8);
        out.put_i64(row.key);
        out.put_i32(4);
        out.put_i32(key_sets[row.shape as usize]);
        let values = &batch.vals[row.vals.clone()];
        // One-dimensional float8 array without nulls (an empty one has no dimensions).
        if values.is_empty() {
            out.put_i32(12);
            out.put_i32(0);
            out.put_i32(0);
            out.put_i32(FLOAT8_OID);
        } else {
            out.put_i32((20 + values.len() * 12) as i32);
            out.put_i32(1);
            out.put_i32(0);
            out.put_i32(FLOAT8_OID);
            out.put_i32(values.len() as i32);
            out.put_i32(1);
            for v in values {
                out.put_i32(8);
                out.put_f64(*v);
            }
        }
        match &row.extra {
            // jsonb binary format: version 1, then the text; the server validates it.
            Some(range) => {
                out.put_i32((range.len() + 1) as i32);
                out.put_u8(1);
                out.put_slice(&batch.extra[range.clone()]);
            }
            None => out.put_i32(-1),
        }
    }
    out.freeze()
}

/// Writes the chunks for `accepted` in its own transaction on `conn`: cuts off bytes past the
/// stored length left by an interrupted batch, merges a not-yet-full trailing chunk with the
/// new lines, and commits once `go` fires (rolls back if it never does). Returns the number of
/// bytes appended to the stream.
async fn write_chunks(
    conn: &mut deadpool_postgres::Object,
    run: RunPk,
    stream: Stream,
    stored: &StoredState,
    accepted: &[Accepted<'_>],
    go: oneshot::Receiver<()>,
) -> Result<i64> {
    let tx = conn
        .transaction()
        .await
        .db("starting a chunk transaction")?;
    tx.batch_execute(ASYNC_COMMIT)
        .await
        .db("setting up a chunk transaction")?;
    tx.execute(
        "DELETE FROM wandb.stream_chunks WHERE run_pk = $1 AND stream = $2 AND byte_start >= $3",
        &[&run.0, &stream.code(), &stored.bytes],
    )
    .await
    .db("removing chunks of an interrupted batch")?;
    let tail = tx
        .query_opt(
            "SELECT byte_start, byte_len, first_key, last_key, n_rows, body
             FROM wandb.stream_chunks WHERE run_pk = $1 AND stream = $2
             ORDER BY byte_start DESC LIMIT 1",
            &[&run.0, &stream.code()],
        )
        .await
        .db("reading the trailing chunk")?;
    let mut chunks: Vec<ChunkBuilder> = Vec::new();
    let mut builder: Option<ChunkBuilder> = None;
    if let Some(tail) = tail {
        let byte_start: i64 = tail.get(0);
        let byte_len: i32 = tail.get(1);
        let end = byte_start + i64::from(byte_len);
        if end < stored.bytes {
            return Err(MirrorError::Inconsistent(format!(
                "run #{} {stream:?}: chunks end at {end} but the stream has {} bytes",
                run.0, stored.bytes
            )));
        }
        let mut body: Vec<u8> = tail.get(5);
        let cut = end > stored.bytes;
        if cut || body.len() < CHUNK_TARGET_BYTES {
            let mut b = ChunkBuilder {
                byte_start,
                first_key: tail.get(2),
                last_key: tail.get(3),
                n_rows: tail.get(4),
                body: Vec::new(),
            };
            if cut {
                // Bytes of a batch whose rows never committed; the stream ends at a line end.
                body.truncate((stored.bytes - byte_start) as usize);
                if body.last() != Some(&b'\n') {
                    return Err(MirrorError::Inconsistent(format!(
                        "run #{} {stream:?}: stream length {} is not at a line end",
                        run.0, stored.bytes
                    )));
                }
                b.n_rows = body.iter().filter(|&&c| c == b'\n').count() as i32;
                b.last_key = stored.last_key.unwrap_or(b.first_key);
            }
            body.reserve(CHUNK_TARGET_BYTES.saturating_sub(body.len()));
            b.body = body;
            tx.execute(
                "DELETE FROM wandb.stream_chunks
                 WHERE run_pk = $1 AND stream = $2 AND byte_start = $3",
                &[&run.0, &stream.code(), &byte_start],
            )
            .await
            .db("replacing the trailing chunk")?;
            if b.body.len() >= CHUNK_TARGET_BYTES {
                chunks.push(b);
            } else {
                builder = Some(b);
            }
        }
    }
    let mut next_start = stored.bytes;
    let mut appended = 0i64;
    for row in accepted {
        let b = builder.get_or_insert_with(|| ChunkBuilder {
            byte_start: next_start,
            first_key: row.key,
            last_key: row.key,
            n_rows: 0,
            body: Vec::with_capacity(CHUNK_TARGET_BYTES + 1024),
        });
        b.body.extend_from_slice(row.line.as_bytes());
        b.body.push(b'\n');
        b.last_key = row.key;
        b.n_rows += 1;
        appended += row.line.len() as i64 + 1;
        if b.body.len() >= CHUNK_TARGET_BYTES
            && let Some(done) = builder.take()
        {
            next_start = done.byte_start + done.body.len() as i64;
            chunks.push(done);
        }
    }
    chunks.extend(builder.take());

    let sink = tx
        .copy_in(
            "COPY wandb.stream_chunks (run_pk, stream, byte_start, byte_len, first_key, \
             last_key, n_rows, body) FROM STDIN (FORMAT binary)",
        )
        .await
        .db("starting the chunk COPY")?;
    let writer = BinaryCopyInWriter::new(
        sink,
        &[
            Type::INT8,
            Type::INT2,
            Type::INT8,
            Type::INT4,
            Type::INT8,
            Type::INT8,
            Type::INT4,
            Type::BYTEA,
        ],
    );
    pin_mut!(writer);
    for chunk in &chunks {
        let len = i32::try_from(chunk.body.len()).map_err(|_| {
            MirrorError::Inconsistent(format!(
                "a single {stream:?} row of run #{} is larger than 2 GiB",
                run.0
            ))
        })?;
        writer
            .as_mut()
            .write(&[
                &run.0,
                &stream.code(),
                &chunk.byte_start,
                &len,
                &chunk.first_key,
                &chunk.last_key,
                &chunk.n_rows,
                &chunk.body.as_slice(),
            ])
            .await
            .db("copying chunks")?;
    }
    writer.finish().await.db("finishing the chunk COPY")?;
    if go.await.is_ok() {
        tx.commit().await.db("committing chunks")?;
    }
    Ok(appended)
}

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
