//! History and system-event ingest into a real Postgres (throwaway cluster): binary COPY,
//! pre-rendered chunks, byte-exact reads, idempotence and crash safety at the batch level.

use wandbfs::mirror::testing::{TestDatabase, fresh_database_with_run};
use wandbfs::mirror::{BLOCK_ROWS, BLOCK_TEXT_BYTES, Mirror, RunPk, Stream};

async fn setup() -> (TestDatabase, RunPk) {
    fresh_database_with_run().await.expect("test database")
}

/// A W&B-style history row of about 20 metrics.
fn row(step: i64) -> String {
    let mut s = format!(
        "{{\"_step\":{step},\"_runtime\":{}.5,\"_timestamp\":1700000000.{step:06},\"loss\":{}",
        step / 10,
        1.0 / (step as f64 + 1.0)
    );
    for k in 0..17 {
        s.push_str(&format!(",\"metric_{k}\":{}", (step * 31 + k) % 1000));
    }
    s.push('}');
    s
}

fn jsonl(lines: &[String]) -> Vec<u8> {
    let mut out = Vec::new();
    for l in lines {
        out.extend_from_slice(l.as_bytes());
        out.push(b'\n');
    }
    out
}

async fn full_read(mirror: &Mirror, run: RunPk, stream: Stream) -> Vec<u8> {
    let len = mirror.stream_len(run, stream).await.expect("len");
    let bytes = mirror
        .read_stream(run, stream, 0, len as usize + 10)
        .await
        .expect("read");
    assert_eq!(
        bytes.len() as u64,
        len,
        "a full read returns exactly the stated size"
    );
    bytes.to_vec()
}

#[tokio::test]
async fn fidelity_of_nan_infinity_nested_unicode_and_int_vs_float() {
    let (db, run) = setup().await;
    let lines: Vec<String> = vec![
        r#"{"_step":0,"loss":NaN,"acc":Infinity,"neg":-Infinity,"i":1,"f":1.0}"#.into(),
        r#"{"_step":1,"z_first":1,"a_second":{"nested":{"deep":[1,2.5,NaN,"x"]}},"big":1e300}"#
            .into(),
        r#"{"_step":2,"ключ/ä":"värde ✓ \u00e9 \"quoted\" \\ back","emoji":"🚀","tiny":5e-324}"#
            .into(),
        r#"{"_step":3,"dup":1,"dup":2,"str_nan":"NaN","null":null,"t":true}"#.into(),
        r#"{"_step":4,"bigint":18446744073709551616,"neg0":-0.0,"exp":1.5E+10}"#.into(),
    ];
    let rows: Vec<(i64, &str)> = lines
        .iter()
        .enumerate()
        .map(|(i, l)| (i as i64, l.as_str()))
        .collect();
    let outcome = db
        .mirror
        .ingest_batch(run, Stream::History, &rows)
        .await
        .expect("ingest");
    assert_eq!(outcome.inserted, 5);

    // Files: byte for byte what W&B sent, one line per row.
    assert_eq!(
        full_read(&db.mirror, run, Stream::History).await,
        jsonl(&lines)
    );

    // SQL: non-finite floats are float8 NaN/±Infinity in the metrics view.
    let client = db.raw_client().await.expect("client");
    let got: Vec<(String, f64)> = client
        .query(
            "SELECT key, value FROM wandb.metrics WHERE run_id = 'run1' AND step = 0 ORDER BY key",
            &[],
        )
        .await
        .expect("metrics")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let map: std::collections::HashMap<_, _> = got.into_iter().collect();
    assert!(map["loss"].is_nan());
    assert_eq!(map["acc"], f64::INFINITY);
    assert_eq!(map["neg"], f64::NEG_INFINITY);
    assert_eq!(map["i"], 1.0);
    assert!(
        !map.contains_key("_step"),
        "_step is the step column, not a metric"
    );
    // Nested keys are dotted; SQL can read the JSON too.
    let nested: String = client
        .query_one(
            "SELECT row #>> '{a_second,nested,deep,1}' FROM wandb.history_rows WHERE step = 1",
            &[],
        )
        .await
        .expect("nested")
        .get(0);
    assert_eq!(nested, "2.5");
    let unicode: String = client
        .query_one(
            "SELECT row ->> 'ключ/ä' FROM wandb.history_rows WHERE step = 2",
            &[],
        )
        .await
        .expect("unicode")
        .get(0);
    assert_eq!(unicode, "värde ✓ é \"quoted\" \\ back");
    let loss: f64 = client
        .query_one(
            "SELECT (row ->> 'loss')::float8 FROM wandb.history_rows WHERE step = 0",
            &[],
        )
        .await
        .expect("loss")
        .get(0);
    assert!(loss.is_nan());
}

#[tokio::test]
async fn random_range_reads_equal_slices_of_the_full_rendering() {
    let (db, run) = setup().await;
    let lines: Vec<String> = (0..6000).map(row).collect();
    let expected = jsonl(&lines);
    // Several batches of uneven size, so the last block is taken back and rewritten repeatedly.
    let mut writer = db
        .mirror
        .stream_writer(run, Stream::History)
        .with_batch_limits(777, usize::MAX);
    for (i, l) in lines.iter().enumerate() {
        writer.push(i as i64, l.clone()).await.expect("push");
    }
    let total = writer.finish().await.expect("finish");
    assert_eq!(total.inserted, 6000);
    assert_eq!(total.total_bytes, expected.len() as u64);
    assert_eq!(
        db.mirror.history_len(run).await.unwrap(),
        expected.len() as u64
    );

    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..300 {
        let offset = next() % (expected.len() as u64 + 100);
        let len = match next() % 4 {
            0 => (next() % 16) as usize,
            1 => (next() % 4096) as usize,
            2 => (next() % (3 * BLOCK_TEXT_BYTES as u64)) as usize,
            _ => 128 * 1024,
        };
        let got = db
            .mirror
            .read_history(run, offset, len)
            .await
            .expect("read");
        let lo = (offset as usize).min(expected.len());
        let hi = (lo + len).min(expected.len());
        assert_eq!(&got[..], &expected[lo..hi], "offset {offset} len {len}");
    }

    // Block invariants: they tile the file, and all but the last are full.
    let client = db.raw_client().await.unwrap();
    let blocks: Vec<(i64, i32, i32)> = client
        .query(
            "SELECT byte_start, byte_len, n_rows FROM wandb.stream_blocks
             WHERE run_pk = $1 AND stream = 1 ORDER BY byte_start",
            &[&run.0],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert!(blocks.len() > 3, "{} blocks", blocks.len());
    let mut pos = 0i64;
    for (i, (start, len, rows)) in blocks.iter().enumerate() {
        assert_eq!(*start, pos);
        if i + 1 < blocks.len() {
            assert!(
                *rows as usize >= BLOCK_ROWS || *len as usize >= BLOCK_TEXT_BYTES,
                "block {i} has {rows} rows and {len} bytes"
            );
        }
        pos += i64::from(*len);
    }
    assert_eq!(pos as usize, expected.len());
}

#[tokio::test]
async fn resent_and_overlapping_steps_are_not_duplicated() {
    let (db, run) = setup().await;
    let lines: Vec<String> = (0..100).map(row).collect();
    let batch = |r: std::ops::Range<usize>| -> Vec<(i64, String)> {
        r.map(|i| (i as i64, lines[i].clone())).collect()
    };
    db.mirror
        .ingest_batch(run, Stream::History, &batch(0..60))
        .await
        .unwrap();
    // The same batch again (a resume after a crash that happened after the commit).
    let again = db
        .mirror
        .ingest_batch(run, Stream::History, &batch(0..60))
        .await
        .unwrap();
    assert_eq!((again.inserted, again.skipped), (0, 60));
    // An overlapping page.
    let overlap = db
        .mirror
        .ingest_batch(run, Stream::History, &batch(40..100))
        .await
        .unwrap();
    assert_eq!((overlap.inserted, overlap.skipped), (40, 20));
    assert_eq!(
        full_read(&db.mirror, run, Stream::History).await,
        jsonl(&lines)
    );
    let client = db.raw_client().await.unwrap();
    let n: i64 = client
        .query_one(
            "SELECT count(*) FROM wandb.history WHERE run_pk = $1",
            &[&run.0],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 100);
    let state = db.mirror.run_sync_state(run).await.unwrap();
    assert_eq!(state.history_last_step, Some(99));
    assert_eq!(state.history_rows, 100);
}

#[tokio::test]
async fn a_failing_batch_leaves_everything_as_before() {
    let (db, run) = setup().await;
    let lines: Vec<String> = (0..50).map(row).collect();
    let first: Vec<(i64, String)> = (0..30).map(|i| (i as i64, lines[i].clone())).collect();
    db.mirror
        .ingest_batch(run, Stream::History, &first)
        .await
        .unwrap();
    let before_state = db.mirror.run_sync_state(run).await.unwrap();
    let before_bytes = full_read(&db.mirror, run, Stream::History).await;

    // Valid W&B rows followed by one that is not JSON at all: every row is decomposed on the
    // client before anything is written, so the batch fails naming the row.
    let mut bad: Vec<(i64, String)> = (30..40).map(|i| (i as i64, lines[i].clone())).collect();
    bad.push((40, "{\"x\": [1, 2".to_string()));
    let err = db
        .mirror
        .ingest_batch(run, Stream::History, &bad)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("step 40"), "{err}");

    // A batch the server rejects mid-COPY (here: a constraint the test adds, failing on the
    // block holding step 35): the whole transaction — blocks, values, state — must roll back.
    let client = db.raw_client().await.unwrap();
    client
        .batch_execute(
            "ALTER TABLE wandb.stream_blocks ADD CONSTRAINT test_no_35
                 CHECK (NOT 35 BETWEEN first_key AND last_key) NOT VALID",
        )
        .await
        .unwrap();
    bad.pop();
    let err = db
        .mirror
        .ingest_batch(run, Stream::History, &bad)
        .await
        .unwrap_err();
    // The server's own message (and where it happened) is part of the error text.
    let text = err.to_string();
    assert!(
        text.contains("database error") && text.contains("test_no_35"),
        "{text}"
    );
    client
        .batch_execute("ALTER TABLE wandb.stream_blocks DROP CONSTRAINT test_no_35")
        .await
        .unwrap();

    let after_state = db.mirror.run_sync_state(run).await.unwrap();
    assert_eq!(
        after_state.history_last_step,
        before_state.history_last_step
    );
    assert_eq!(after_state.history_bytes, before_state.history_bytes);
    assert_eq!(
        full_read(&db.mirror, run, Stream::History).await,
        before_bytes
    );
    let n: i64 = client
        .query_one(
            "SELECT count(*) FROM wandb.history WHERE run_pk = $1",
            &[&run.0],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 30);

    // Invalid W&B text detected before any write names the row.
    let err = db
        .mirror
        .ingest_batch(run, Stream::History, &[(30, "{\"a\": NaNx}")])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("step 30"), "{err}");

    // Resuming from the stored state completes the stream exactly.
    let rest: Vec<(i64, String)> = (0..50).map(|i| (i as i64, lines[i].clone())).collect();
    db.mirror
        .ingest_batch(run, Stream::History, &rest)
        .await
        .unwrap();
    assert_eq!(
        full_read(&db.mirror, run, Stream::History).await,
        jsonl(&lines)
    );
}

#[tokio::test]
async fn system_events_have_their_own_stream_and_view() {
    let (db, run) = setup().await;
    let events: Vec<String> = (0..5)
        .map(|i| {
            format!(
                "{{\"_wandb\":true,\"_timestamp\":1700000000.{i},\"_runtime\":{i},\
                 \"system.cpu\":{}.5,\"system.gpu.0.gpu\":NaN}}",
                10 + i
            )
        })
        .collect();
    let rows: Vec<(i64, String)> = events
        .iter()
        .cloned()
        .enumerate()
        .map(|(i, e)| (i as i64, e))
        .collect();
    db.mirror
        .ingest_batch(run, Stream::System, &rows)
        .await
        .unwrap();
    assert_eq!(
        full_read(&db.mirror, run, Stream::System).await,
        jsonl(&events)
    );
    assert_eq!(db.mirror.history_len(run).await.unwrap(), 0);
    let client = db.raw_client().await.unwrap();
    let rows = client
        .query(
            "SELECT seq, key, value, ts FROM wandb.system_metrics WHERE run_id = 'run1'
             ORDER BY seq, key",
            &[],
        )
        .await
        .unwrap();
    // Per event: _runtime, system.cpu, system.gpu.0.gpu (NaN) — _timestamp/_wandb excluded.
    assert_eq!(rows.len(), 15);
    let cpu: f64 = rows[1].get(2);
    assert_eq!(rows[1].get::<_, String>(1), "system.cpu");
    assert_eq!(cpu, 10.5);
    assert!(rows[2].get::<_, f64>(2).is_nan());
    let ts: chrono::DateTime<chrono::Utc> = rows[0].get(3);
    assert_eq!(ts.timestamp(), 1_700_000_000);

    db.mirror.reset_stream(run, Stream::System).await.unwrap();
    assert_eq!(db.mirror.stream_len(run, Stream::System).await.unwrap(), 0);
    assert!(full_read(&db.mirror, run, Stream::System).await.is_empty());
}

#[tokio::test]
async fn blocks_past_the_length_are_invisible_and_cut_off_on_resume() {
    let (db, run) = setup().await;
    let lines: Vec<String> = (0..50).map(row).collect();
    let first: Vec<(i64, String)> = (0..30).map(|i| (i as i64, lines[i].clone())).collect();
    db.mirror
        .ingest_batch(run, Stream::History, &first)
        .await
        .unwrap();
    let committed = full_read(&db.mirror, run, Stream::History).await;
    let len = committed.len() as i64;

    // Blocks and the length commit in one transaction, so a `kill -9` leaves nothing past the
    // length; a database restored or edited by hand might. Readers must ignore such a block,
    // and the next batch must cut it off.
    let client = db.raw_client().await.unwrap();
    client
        .execute(
            "INSERT INTO wandb.stream_blocks
                 (run_pk, stream, byte_start, byte_len, first_key, last_key, n_rows, shapes,
                  codec, body)
             VALUES ($1, 1, $2, 4, 32, 32, 1, '{0}', 0, 'junk'::bytea)",
            &[&run.0, &len],
        )
        .await
        .unwrap();

    // Readers see exactly the committed bytes, at every offset near the end.
    assert_eq!(full_read(&db.mirror, run, Stream::History).await, committed);
    for back in [0u64, 1, 100, 5000] {
        let offset = (len as u64).saturating_sub(back);
        let got = db.mirror.read_history(run, offset, 1 << 20).await.unwrap();
        assert_eq!(&got[..], &committed[offset as usize..]);
    }

    // The resume re-sends from the stored last step; the result is exact.
    let rest: Vec<(i64, String)> = (0..50).map(|i| (i as i64, lines[i].clone())).collect();
    let outcome = db
        .mirror
        .ingest_batch(run, Stream::History, &rest)
        .await
        .unwrap();
    assert_eq!((outcome.inserted, outcome.skipped), (20, 30));
    assert_eq!(
        full_read(&db.mirror, run, Stream::History).await,
        jsonl(&lines)
    );
    let (block_bytes, max_end): (i64, i64) = {
        let r = client
            .query_one(
                "SELECT sum(byte_len)::int8, max(byte_start + byte_len) FROM wandb.stream_blocks
                 WHERE run_pk = $1 AND stream = 1",
                &[&run.0],
            )
            .await
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!(
        block_bytes,
        jsonl(&lines).len() as i64,
        "no junk left in any block"
    );
    assert_eq!(max_end, block_bytes);
}
