//! Mirror history benchmark: ingest rows/s against a raw-COPY baseline, server CPU and bytes on
//! disk per row, read MB/s of `history.jsonl` against rendering it from the rows, and SQL.
//!
//! Run: `cargo bench --bench mirror_history` (env `WANDBFS_BENCH_ROWS`, default 1,000,000;
//! `WANDBFS_BENCH_DURABLE=0` to run the cluster without fsync). Each number is printed next to
//! its baseline measured in the same run on the same cluster, since absolute numbers on a
//! shared 2-core machine are noisy.

use std::time::{Duration, Instant};

use futures::{StreamExt, pin_mut};
use tokio_postgres::NoTls;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};
use wandbfs::mirror::embedded::{Durability, TempCluster};
use wandbfs::mirror::testing::{process_cpu_seconds, server_cpu_seconds};
use wandbfs::mirror::{
    ConnectOptions, DEFAULT_BATCH_ROWS, Mirror, ProjectRecord, RunRecord, Stream,
};

/// A W&B-style row of 20 metrics (plus `_step`, `_runtime`, `_timestamp`); every 97th row has
/// a NaN loss, like a diverging run.
fn row(step: i64, out: &mut String) {
    use std::fmt::Write;
    out.clear();
    let loss = if step % 97 == 0 {
        "NaN".to_string()
    } else {
        format!("{}", 2.0 / (1.0 + step as f64 * 1e-4))
    };
    let _ = write!(
        out,
        "{{\"_step\":{step},\"_runtime\":{:.3},\"_timestamp\":{:.6},\"loss\":{loss},\
         \"lr\":{},\"epoch\":{}",
        step as f64 * 0.05,
        1.7e9 + step as f64 * 0.05,
        1e-3 * 0.5f64.powi((step / 100_000) as i32),
        step / 10_000
    );
    for k in 0..18 {
        let v = ((step * 2654435761 + k * 40503) % 1_000_003) as f64 / 1_000_003.0;
        let _ = write!(out, ",\"train/metric_{k:02}\":{v}");
    }
    out.push('}');
}

/// JSON text sent as a binary `jsonb` field (version byte + text), as the mirror does.
#[derive(Debug)]
struct Jsonb<'a>(&'a str);

impl ToSql for Jsonb<'_> {
    fn to_sql(
        &self,
        _ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<tokio_postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        out.extend_from_slice(&[1]);
        out.extend_from_slice(self.0.as_bytes());
        Ok(tokio_postgres::types::IsNull::No)
    }
    tokio_postgres::types::accepts!(JSONB);
    tokio_postgres::types::to_sql_checked!();
}

/// The baseline: rows generated and COPYed in binary into `table` in batches; returns the time.
async fn raw_copy(
    raw: &tokio_postgres::Client,
    table: &str,
    rows: i64,
) -> Result<Duration, Box<dyn std::error::Error>> {
    raw.batch_execute(&format!(
        "CREATE TABLE {table} (run_pk int8 NOT NULL, step int8 NOT NULL, row jsonb NOT NULL)"
    ))
    .await?;
    let mut text = String::new();
    let started = Instant::now();
    let mut step = 0i64;
    while step < rows {
        let end = (step + DEFAULT_BATCH_ROWS as i64).min(rows);
        raw.batch_execute("BEGIN").await?;
        let sink = raw
            .copy_in(&format!(
                "COPY {table} (run_pk, step, row) FROM STDIN (FORMAT binary)"
            ))
            .await?;
        let writer = BinaryCopyInWriter::new(sink, &[Type::INT8, Type::INT8, Type::JSONB]);
        pin_mut!(writer);
        for s in step..end {
            row(s, &mut text);
            let strict = wandbfs::values::to_sql_json_text(&text)?;
            writer.as_mut().write(&[&1i64, &s, &Jsonb(&strict)]).await?;
        }
        writer.finish().await?;
        raw.batch_execute("COMMIT").await?;
        step = end;
    }
    Ok(started.elapsed())
}

fn mb_per_s(bytes: u64, elapsed: Duration) -> f64 {
    bytes as f64 / 1e6 / elapsed.as_secs_f64()
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let rows: i64 = std::env::var("WANDBFS_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let durability = if std::env::var("WANDBFS_BENCH_DURABLE").as_deref() == Ok("0") {
        Durability::Throwaway
    } else {
        Durability::Durable
    };
    let cluster =
        tokio::task::spawn_blocking(move || TempCluster::start_with(durability)).await??;
    println!(
        "cluster: initdb + start in {:.2}s ({durability:?})",
        cluster.startup_time().as_secs_f64()
    );
    let config = cluster.cluster().connection_config("postgres");
    let mirror = Mirror::connect_config(config.clone(), &ConnectOptions::default()).await?;
    let (raw, connection) = config.connect(NoTls).await?;
    tokio::spawn(connection);

    let mut text = String::new();
    let mut sample_bytes = 0usize;
    for s in 0..100 {
        row(s, &mut text);
        sample_bytes += text.len();
    }
    println!(
        "rows: {rows} of ~{} bytes (23 keys), batches of {DEFAULT_BATCH_ROWS} rows",
        sample_bytes / 100
    );

    // Baseline: binary COPY of the same rows into a plain (run, step, jsonb) table, one
    // transaction per batch, no index, no chunks, no bookkeeping. Measured before and after
    // the mirror's run, since a cluster filling up (checkpoints) slows whatever runs later.
    let baseline_before = raw_copy(&raw, "bench_raw_1", rows).await?;

    // The mirror: StreamWriter → ingest_batch (COPY into jsonb with a primary key, chunks,
    // sync state, one transaction per batch).
    let project = mirror
        .upsert_project(&ProjectRecord {
            entity: "bench".into(),
            name: "bench".into(),
            ..Default::default()
        })
        .await?;
    let run = mirror
        .upsert_run(
            project,
            &RunRecord {
                run_id: "bench0001".into(),
                ..Default::default()
            },
        )
        .await?
        .run_pk;
    // Experiments: SQL run before the mirror's ingest (e.g. storage or server settings).
    if let Ok(sql) = std::env::var("WANDBFS_BENCH_SETUP_SQL") {
        raw.batch_execute(&sql).await?;
        println!("setup SQL: {sql}");
    }
    let wal_before: String = raw
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await?
        .get(0);
    let (client_cpu_before, server_cpu_before) = (
        process_cpu_seconds("self"),
        server_cpu_seconds(cluster.cluster()),
    );
    let started = Instant::now();
    let mut writer = mirror.stream_writer(run, Stream::History);
    for s in 0..rows {
        row(s, &mut text);
        writer.push(s, text.as_str()).await?;
    }
    let outcome = writer.finish().await?;
    let ingest = started.elapsed();
    let (client_cpu, server_cpu) = (
        process_cpu_seconds("self") - client_cpu_before,
        server_cpu_seconds(cluster.cluster()) - server_cpu_before,
    );
    let wal_bytes: i64 = raw
        .query_one(
            "SELECT (pg_current_wal_lsn() - $1::text::pg_lsn)::int8",
            &[&wal_before],
        )
        .await?
        .get(0);
    assert_eq!(outcome.inserted, rows as u64);
    let baseline_after = raw_copy(&raw, "bench_raw_2", rows).await?;
    let rate = |d: Duration| rows as f64 / d.as_secs_f64();
    println!(
        "ingest: mirror {:>7.0} rows/s ({:.1}s) | raw COPY baseline before {:>7.0} rows/s, \
         after {:>7.0} rows/s | ratio {:.2} / {:.2}",
        rate(ingest),
        ingest.as_secs_f64(),
        rate(baseline_before),
        rate(baseline_after),
        rate(ingest) / rate(baseline_before),
        rate(ingest) / rate(baseline_after),
    );
    println!(
        "cpu per row during ingest: client {:.2} µs (generating + decomposing + encoding rows), \
         server {:.2} µs (all Postgres processes) | WAL {:.0} bytes per row",
        client_cpu * 1e6 / rows as f64,
        server_cpu * 1e6 / rows as f64,
        wal_bytes as f64 / rows as f64
    );
    // Every relation of the mirror's history storage (tables, indexes, TOAST), whichever
    // layout this build writes; the same command measures both sides of a comparison.
    let sizes = raw
        .query_one(
            "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::int8,
                    string_agg(c.relname, ' + ' ORDER BY c.relname),
                    pg_total_relation_size('bench_raw_1')
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = 'wandb' AND c.relkind = 'r'
               AND c.relname IN ('history', 'system_events', 'stream_chunks',
                                 'stream_blocks', 'block_values')",
            &[],
        )
        .await?;
    let mib = |b: i64| b as f64 / (1 << 20) as f64;
    let stored: i64 = sizes.get(0);
    println!(
        "on disk: {:.0} MiB ({}) for {:.0} MiB of history.jsonl: {:.2}x the text | \
         baseline table {:.0} MiB",
        mib(stored),
        sizes.get::<_, String>(1),
        outcome.total_bytes as f64 / (1 << 20) as f64,
        stored as f64 / outcome.total_bytes as f64,
        mib(sizes.get(2))
    );
    raw.batch_execute("VACUUM ANALYZE").await?;

    // Reads: the whole file sequentially in FUSE-sized and larger requests.
    let len = mirror.history_len(run).await?;
    for request in [128 * 1024usize, 1 << 20] {
        let started = Instant::now();
        let mut offset = 0u64;
        while offset < len {
            let got = mirror.read_history(run, offset, request).await?;
            assert!(!got.is_empty());
            offset += got.len() as u64;
        }
        let elapsed = started.elapsed();
        println!(
            "read history.jsonl ({:.0} MiB) in {:>4} KiB requests: {:>6.0} MB/s ({:.2}s)",
            len as f64 / (1 << 20) as f64,
            request / 1024,
            mb_per_s(len, elapsed),
            elapsed.as_secs_f64()
        );
    }
    // Random small reads: latency of one `read(2)` of 4 KiB at any offset.
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let reads = 2000;
    let started = Instant::now();
    for _ in 0..reads {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let got = mirror.read_history(run, seed % len, 4096).await?;
        assert!(!got.is_empty());
    }
    let elapsed = started.elapsed();
    println!(
        "random 4 KiB reads: {:.0} reads/s, {:.0} µs each",
        reads as f64 / elapsed.as_secs_f64(),
        elapsed.as_micros() as f64 / reads as f64
    );

    // WANDBFS_BENCH_QUICK=1 skips the SQL views (a minute at 1M rows), for quick iterations.
    let quick = std::env::var("WANDBFS_BENCH_QUICK").as_deref() == Ok("1");
    if !quick {
        sql_views(&raw, run, rows).await?;
    }

    // history.parquet: the run's table as the tree serves it (rendered from the block columns
    // into the table cache at the first `stat` after the sync), next to the text renderer
    // every table used before (each row parsed), in the same run on the same mirror.
    let scratch = tempfile::tempdir()?;
    let (meta, state) = (
        mirror.run_metadata(run).await?,
        mirror.run_sync_state(run).await?,
    );
    let started = Instant::now();
    let table = wandbfs::store::tables::TableCache::new(scratch.path().join("cache"))
        .run_table(&mirror, &meta, &state, Stream::History)
        .await?;
    let from_blocks = started.elapsed();
    let text_dir = scratch.path().join("text");
    std::fs::create_dir_all(&text_dir)?;
    let started = Instant::now();
    let text_stats =
        wandbfs::export::run_table_from_text(&mirror, run, "bench0001", Stream::History, &text_dir)
            .await?;
    let from_text = started.elapsed();
    assert_eq!(text_stats.rows, rows as u64);
    println!(
        "history.parquet ({:.0} MiB): from block columns {:.2}s | baseline: from the text \
         {:.2}s | {:.1}x faster",
        table.size as f64 / (1 << 20) as f64,
        from_blocks.as_secs_f64(),
        from_text.as_secs_f64(),
        from_text.as_secs_f64() / from_blocks.as_secs_f64()
    );
    println!("peak RSS of this process: {:.0} MiB", peak_rss_mib());
    drop(mirror);
    drop(raw);
    drop(cluster);
    Ok(())
}

/// The SQL views over the run: rendering the text from rows, `metrics`, `history_rows`.
async fn sql_views(
    raw: &tokio_postgres::Client,
    run: wandbfs::mirror::RunPk,
    rows: i64,
) -> Result<(), Box<dyn std::error::Error>> {
    // Baseline for reads: rendering the file from the SQL rows (what a mirror without chunks
    // does, and not byte-exact: jsonb reorders keys and respells numbers).
    let started = Instant::now();
    let statement = raw
        .prepare("SELECT row::text FROM wandb.history_rows WHERE run_pk = $1 ORDER BY step")
        .await?;
    let params: Vec<&(dyn ToSql + Sync)> = vec![&run.0];
    let stream = raw.query_raw(&statement, params).await?;
    pin_mut!(stream);
    let mut rendered = 0u64;
    while let Some(r) = stream.next().await {
        let r = r?;
        let t: &str = r.get(0);
        rendered += t.len() as u64 + 1;
    }
    let elapsed = started.elapsed();
    println!(
        "baseline: render from SQL rows (history_rows) {:>6.0} MB/s ({:.2}s for {:.0} MiB)",
        mb_per_s(rendered, elapsed),
        elapsed.as_secs_f64(),
        rendered as f64 / (1 << 20) as f64
    );
    // SQL over the mirror: one metric of the whole run through the long-format view, every
    // metric, and one metric read from the rebuilt jsonb rows.
    let keys_per_row = 23i64; // every key but `_step`
    for (what, sql, expected) in [
        (
            "metrics view, one key",
            "SELECT count(*), avg(value) FROM wandb.metrics
             WHERE entity = 'bench' AND project = 'bench' AND run_id = 'bench0001'
               AND key = 'train/metric_00'",
            rows,
        ),
        (
            "metrics view, every key",
            "SELECT count(*), avg(value) FROM wandb.metrics
             WHERE entity = 'bench' AND project = 'bench' AND run_id = 'bench0001'",
            rows * keys_per_row,
        ),
        (
            "history_rows view, one key",
            "SELECT count(*), avg((row ->> 'train/metric_00')::float8) FROM wandb.history_rows
             WHERE entity = 'bench' AND project = 'bench' AND run_id = 'bench0001'",
            rows,
        ),
        (
            "history_rows view, one step",
            "SELECT count(*), avg((row ->> 'train/metric_00')::float8) FROM wandb.history_rows
             WHERE entity = 'bench' AND project = 'bench' AND run_id = 'bench0001'
               AND step = 4321",
            1,
        ),
    ] {
        let started = Instant::now();
        let row = raw.query_one(sql, &[]).await?;
        let n: i64 = row.get(0);
        assert_eq!(n, expected, "{what}");
        let elapsed = started.elapsed();
        println!(
            "sql: {what}: {:.2}s ({:.0} values/s)",
            elapsed.as_secs_f64(),
            n as f64 / elapsed.as_secs_f64()
        );
    }
    Ok(())
}
