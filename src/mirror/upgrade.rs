//! The upgrade of v1 history storage to v2 blocks (schema migration 4).
//!
//! Migration 4 renames the v1 tables (`history_v1`, `system_events_v1`, `stream_chunks_v1`);
//! [`convert_v1`] then rewrites them as blocks ([`super::blocks`]) run by run and stream by
//! stream, each in one transaction that writes the blocks and deletes the run's v1 rows and
//! chunks. A process killed mid-upgrade leaves every stream either converted or untouched, and
//! the next start carries on. The text is taken from the v1 chunks byte for byte (the stream's
//! length is checked, and the sync state is not changed), so every `history.jsonl` keeps its
//! exact size and bytes. When nothing is left, the v1 tables are dropped.
//!
//! One process converts at a time (a session advisory lock); another that starts meanwhile
//! waits for it, then finds nothing left to do. Read-only users ([`pending`]) are refused until
//! the upgrade is complete, rather than shown a mirror with runs missing.

use std::time::Instant;

use super::error::{DbContext, MirrorError, Result};
use super::model::RunPk;
use super::{Mirror, Stream, blocks};

/// Advisory-lock key of the upgrade ("wbfsv2up" in ASCII).
const UPGRADE_LOCK_KEY: i64 = 0x7762_6673_7632_7570;

/// v1 chunks read per statement while converting a stream.
const CHUNKS_PER_READ: i64 = 64;
/// Rows written per COPY while converting a stream (whole blocks).
const ROWS_PER_WRITE: usize = 10_000;

/// What [`convert_v1`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UpgradeReport {
    /// Streams (run × history/system) converted.
    pub streams: u64,
    /// Rows converted.
    pub rows: u64,
    /// Bytes of JSON Lines text converted.
    pub bytes: u64,
}

/// Whether v1 tables are still present (an upgrade not finished).
pub async fn pending(client: &tokio_postgres::Client) -> Result<bool> {
    Ok(client
        .query_one(
            "SELECT to_regclass('wandb.stream_chunks_v1') IS NOT NULL
                 OR to_regclass('wandb.history_v1') IS NOT NULL
                 OR to_regclass('wandb.system_events_v1') IS NOT NULL",
            &[],
        )
        .await
        .db("looking for v1 history tables")?
        .get(0))
}

/// Converts every v1 stream to blocks and drops the v1 tables (see the module docs). Returns
/// `None` when there was nothing to upgrade.
pub async fn convert_v1(mirror: &Mirror) -> Result<Option<UpgradeReport>> {
    let lock = mirror.client().await?;
    if !pending(&lock).await? {
        return Ok(None);
    }
    lock.execute("SELECT pg_advisory_lock($1)", &[&UPGRADE_LOCK_KEY])
        .await
        .db("taking the upgrade lock")?;
    let result = convert_all(mirror, &lock).await;
    lock.execute("SELECT pg_advisory_unlock($1)", &[&UPGRADE_LOCK_KEY])
        .await
        .db("releasing the upgrade lock")?;
    result
}

async fn convert_all(
    mirror: &Mirror,
    client: &tokio_postgres::Client,
) -> Result<Option<UpgradeReport>> {
    // Another process may have finished while this one waited for the lock.
    if !pending(client).await? {
        return Ok(None);
    }
    let started = Instant::now();
    let streams: Vec<(i64, i16)> = client
        .query(
            "SELECT DISTINCT run_pk, stream FROM wandb.stream_chunks_v1 ORDER BY 1, 2",
            &[],
        )
        .await
        .db("listing v1 streams")?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    if !streams.is_empty() {
        tracing::info!(
            streams = streams.len(),
            "upgrading the mirror's history to blocks (schema v2); this runs once"
        );
    }
    let mut report = UpgradeReport::default();
    for (run_pk, code) in streams {
        let stream = if code == Stream::History.code() {
            Stream::History
        } else {
            Stream::System
        };
        let (rows, bytes) = convert_stream(mirror, RunPk(run_pk), stream).await?;
        report.streams += 1;
        report.rows += rows;
        report.bytes += bytes;
    }
    client
        .batch_execute(
            "DROP TABLE IF EXISTS wandb.stream_chunks_v1;
             DROP TABLE IF EXISTS wandb.history_v1;
             DROP TABLE IF EXISTS wandb.system_events_v1;",
        )
        .await
        .db("dropping the v1 history tables")?;
    tracing::info!(
        streams = report.streams,
        rows = report.rows,
        bytes = report.bytes,
        secs = started.elapsed().as_secs_f64(),
        "mirror history upgraded to blocks"
    );
    Ok(Some(report))
}

/// Converts one stream in one transaction. Returns its rows and bytes.
async fn convert_stream(mirror: &Mirror, run: RunPk, stream: Stream) -> Result<(u64, u64)> {
    let mut conn = mirror.client().await?;
    let tx = conn.transaction().await.db("starting a stream upgrade")?;
    let cols = stream.state_columns();
    let state = tx
        .query_opt(
            &format!(
                "SELECT {}, {} FROM wandb.run_sync_state WHERE run_pk = $1 FOR UPDATE",
                cols.rows, cols.bytes
            ),
            &[&run.0],
        )
        .await
        .db("locking the run's sync state")?;
    let (rows, length): (i64, i64) = state.map_or((0, 0), |s| (s.get(0), s.get(1)));
    let (key_table, key_column) = match stream {
        Stream::History => ("wandb.history_v1", "step"),
        Stream::System => ("wandb.system_events_v1", "seq"),
    };
    let keys: Vec<i64> = tx
        .query(
            &format!("SELECT {key_column} FROM {key_table} WHERE run_pk = $1 ORDER BY 1"),
            &[&run.0],
        )
        .await
        .db("reading v1 row keys")?
        .iter()
        .map(|r| r.get(0))
        .collect();
    if keys.len() as i64 != rows {
        return Err(MirrorError::Inconsistent(format!(
            "upgrading run #{} {stream:?}: the sync state counts {rows} rows, the v1 table has {}",
            run.0,
            keys.len()
        )));
    }
    // Earlier attempts of this very stream committed nothing (one transaction), but blocks of
    // the stream can only come from a sync that ran in between: start from a clean slate.
    super::ingest::delete_blocks(&tx, run, stream, 0, "clearing blocks before an upgrade").await?;

    let mut pending_text = String::new();
    let mut pending_lines = 0usize; // lines in `pending_text`
    let mut used_keys = 0usize; // keys of lines already written
    let mut written = 0i64; // bytes written as blocks
    let mut read_to = 0i64; // bytes read from the v1 chunks
    loop {
        let chunks = tx
            .query(
                "SELECT byte_start, byte_len, body FROM wandb.stream_chunks_v1
                 WHERE run_pk = $1 AND stream = $2 AND byte_start >= $3 AND byte_start < $4
                 ORDER BY byte_start LIMIT $5",
                &[&run.0, &stream.code(), &read_to, &length, &CHUNKS_PER_READ],
            )
            .await
            .db("reading v1 chunks")?;
        let last_read = chunks.len() < CHUNKS_PER_READ as usize;
        for chunk in &chunks {
            let byte_start: i64 = chunk.get(0);
            let body: &[u8] = chunk.get(2);
            if byte_start != read_to {
                return Err(MirrorError::Inconsistent(format!(
                    "upgrading run #{} {stream:?}: gap in v1 chunks at byte {read_to}",
                    run.0
                )));
            }
            let keep = body.len().min((length - byte_start) as usize);
            let text = std::str::from_utf8(&body[..keep]).map_err(|_| {
                MirrorError::Inconsistent(format!(
                    "upgrading run #{} {stream:?}: a v1 chunk is not UTF-8",
                    run.0
                ))
            })?;
            pending_lines += text.bytes().filter(|&c| c == b'\n').count();
            pending_text.push_str(text);
            read_to += keep as i64;
        }
        let done = last_read || read_to >= length;
        if pending_lines >= ROWS_PER_WRITE || done {
            // Whole blocks only, except at the end (where the last block may be partial).
            let text = pending_text.strip_suffix('\n').unwrap_or(&pending_text);
            let lines: Vec<&str> = if text.is_empty() && pending_text.is_empty() {
                Vec::new()
            } else {
                text.split('\n').collect()
            };
            let ranges = blocks::cut(lines.iter().map(|l| l.len()));
            let take = if done {
                lines.len()
            } else {
                // Up to the end of the second-to-last block: the last may grow.
                ranges.len().checked_sub(2).map_or(0, |i| ranges[i].end)
            };
            if take > 0 {
                let Some(keys) = keys.get(used_keys..used_keys + take) else {
                    return Err(MirrorError::Inconsistent(format!(
                        "upgrading run #{} {stream:?}: more lines than rows",
                        run.0
                    )));
                };
                written += mirror
                    .copy_blocks(&tx, run, stream, written, keys, &lines[..take])
                    .await?;
                used_keys += take;
                let consumed: usize = lines[..take].iter().map(|l| l.len() + 1).sum();
                pending_text.drain(..consumed);
                pending_lines -= take;
            }
        }
        if done {
            break;
        }
    }
    if written != length || used_keys != keys.len() || !pending_text.is_empty() {
        return Err(MirrorError::Inconsistent(format!(
            "upgrading run #{} {stream:?}: {written} of {length} bytes and {used_keys} of {} rows \
             converted",
            run.0,
            keys.len()
        )));
    }
    tx.execute(
        &format!("DELETE FROM {key_table} WHERE run_pk = $1"),
        &[&run.0],
    )
    .await
    .db("deleting v1 rows")?;
    tx.execute(
        "DELETE FROM wandb.stream_chunks_v1 WHERE run_pk = $1 AND stream = $2",
        &[&run.0, &stream.code()],
    )
    .await
    .db("deleting v1 chunks")?;
    tx.commit().await.db("committing a stream upgrade")?;
    Ok((keys.len() as u64, length as u64))
}
