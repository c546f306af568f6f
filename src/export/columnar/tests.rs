//! The block-column renderer against the text renderer, on a real PostgreSQL: the same columns
//! (names, types, JSON markers) and the same values, whatever the rows hold.

use std::collections::BTreeMap;
use std::path::Path;

use arrow_array::{Array, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow_schema::DataType;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::super::history::{DatasetRun, DatasetStats, write_parquet_from_text};
use super::write_parquet;
use crate::mirror::testing::{TestDatabase, fresh_database_with_run};
use crate::mirror::{Mirror, RunPk, RunRecord, Stream};

/// Every cell of a column as text (`None` for null; NaN spelled out), by type.
fn cells(array: &dyn Array) -> Vec<Option<String>> {
    let any = array.as_any();
    (0..array.len())
        .map(|i| {
            if array.is_null(i) {
                return None;
            }
            Some(match array.data_type() {
                DataType::Int64 => {
                    let a = any.downcast_ref::<Int64Array>().unwrap();
                    format!("i{}", a.value(i))
                }
                DataType::Float64 => {
                    let v = any.downcast_ref::<Float64Array>().unwrap().value(i);
                    if v.is_nan() {
                        "fNaN".into()
                    } else {
                        format!("f{v:?}")
                    }
                }
                DataType::Utf8 => {
                    let a = any.downcast_ref::<StringArray>().unwrap();
                    format!("s{}", a.value(i))
                }
                DataType::Boolean => {
                    let a = any.downcast_ref::<BooleanArray>().unwrap();
                    format!("b{}", a.value(i))
                }
                other => panic!("unexpected column type {other}"),
            })
        })
        .collect()
}

/// A parquet file as `name → (type, metadata, cells)`.
type Table = BTreeMap<String, (DataType, Vec<(String, String)>, Vec<Option<String>>)>;

fn read(path: &Path) -> Table {
    let file = std::fs::File::open(path).unwrap();
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap();
    let batches: Vec<RecordBatch> = reader.map(|b| b.unwrap()).collect();
    let schema = batches[0].schema();
    let mut table = Table::new();
    for (i, field) in schema.fields().iter().enumerate() {
        let mut all = Vec::new();
        for b in &batches {
            all.extend(cells(b.column(i).as_ref()));
        }
        let mut meta: Vec<(String, String)> = field
            .metadata()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        meta.sort();
        let previous = table.insert(field.name().clone(), (field.data_type().clone(), meta, all));
        assert!(previous.is_none(), "column {} twice", field.name());
    }
    table
}

async fn add_run(db: &TestDatabase, id: &str) -> RunPk {
    let project = db
        .mirror
        .resolve_project("ent", "proj")
        .await
        .unwrap()
        .unwrap();
    db.mirror
        .upsert_run(
            project,
            &RunRecord {
                run_id: id.into(),
                state: Some("running".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .run_pk
}

/// Ingests `rows` (`(key, text)`) in batches of `batch` rows: the last block of each batch is
/// rewritten by the next.
async fn ingest(mirror: &Mirror, run: RunPk, stream: Stream, rows: &[(i64, String)], batch: usize) {
    for chunk in rows.chunks(batch) {
        mirror.ingest_batch(run, stream, chunk).await.unwrap();
    }
}

/// Renders `runs` both ways and asserts the files are the same tables; returns both stats.
async fn both_ways(
    mirror: &Mirror,
    runs: &[DatasetRun],
    stream: Stream,
) -> (DatasetStats, DatasetStats) {
    let dir = tempfile::tempdir().unwrap();
    let (text_dir, block_dir) = (dir.path().join("text"), dir.path().join("blocks"));
    std::fs::create_dir_all(&text_dir).unwrap();
    std::fs::create_dir_all(&block_dir).unwrap();
    let text = write_parquet_from_text(mirror, runs, stream, &text_dir)
        .await
        .unwrap();
    let blocks = write_parquet(mirror, runs, stream, &block_dir)
        .await
        .unwrap();
    assert_eq!((text.files, text.rows), (blocks.files, blocks.rows));
    for run in runs {
        let name = format!("{}.parquet", run.run_id);
        let (a, b) = (text_dir.join(&name), block_dir.join(&name));
        assert_eq!(a.exists(), b.exists(), "{name}");
        if !a.exists() {
            continue;
        }
        let (a, b) = (read(&a), read(&b));
        assert_eq!(
            a.keys().collect::<Vec<_>>(),
            b.keys().collect::<Vec<_>>(),
            "column names of {name}"
        );
        for (column, (ta, ma, ca)) in &a {
            let (tb, mb, cb) = &b[column];
            assert_eq!((ta, ma), (tb, mb), "type of {column} in {name}");
            for (i, (x, y)) in ca.iter().zip(cb).enumerate() {
                assert_eq!(x, y, "{column} row {i} of {name}");
            }
            assert_eq!(ca.len(), cb.len(), "{column} of {name}");
        }
    }
    (text, blocks)
}

/// A history row of every kind the renderers must agree on, by step.
fn tricky_row(s: i64) -> String {
    let mut row = format!(
        r#"{{"_step":{s},"loss":{},"epoch":{}"#,
        1.0 / (s + 1) as f64,
        s / 100
    );
    // Duplicate keys, a dotted-name collision and a NUL key make their whole block render from
    // text: only in the block holding steps 1,100..1,200.
    let whole_block = (1_100..1_200).contains(&s);
    let extra = match s % 23 {
        3..=5 if !whole_block => String::new(),
        0 => r#","img":{"_type":"image-file","path":"media/a.png","size":3}"#.to_string(),
        1 => r#","phase":"warmup","ok":true,"none":null"#.to_string(),
        2 => r#","hist":[1,NaN,-Infinity],"big":9007199254740993"#.to_string(),
        3 => r#","d":2.5,"d":1"#.to_string(),
        4 => r#","a.b":1,"a":{"b":2.5}"#.to_string(),
        5 => r#","k\u0000":7,"ü/ключ":1.5e3"#.to_string(),
        6 => r#","x":NaN,"y":Infinity,"z":-Infinity"#.to_string(),
        7 => r#","empty":{},"train":{"acc":0.25,"deep":{"n":3}}"#.to_string(),
        _ => String::new(),
    };
    row.push_str(&extra);
    // `mix` holds ints and floats; `lr` numbers and, rarely, a string (a JSON column).
    row.push_str(&format!(
        r#","mix":{}"#,
        if s % 2 == 0 { "1" } else { "2.5" }
    ));
    let lr = match s % 301 {
        0 => r#""auto""#.to_string(),
        // Ints among the floats of a JSON column: that block renders from text too.
        k if k % 3 == 0 && s > 2_900 => "3".to_string(),
        _ => format!("{}", 0.5 / (s + 1) as f64),
    };
    row.push_str(&format!(r#","lr":{lr}"#));
    if (2_000..2_100).contains(&s) {
        row.push_str(r#","sparse":4"#);
    }
    row.push('}');
    row
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_tables_equal_text_tables_for_every_kind_of_row() {
    let (db, run1) = fresh_database_with_run().await.unwrap();
    // run1: every kind of row, gaps in the steps, batches that rewrite the last block.
    let rows: Vec<(i64, String)> = (0..3_000i64)
        .filter(|s| s % 97 != 5)
        .map(|s| (s, tricky_row(s)))
        .collect();
    ingest(&db.mirror, run1, Stream::History, &rows, 700).await;
    // run2: plain numbers only, int and float keys (every row rendered from the arrays).
    let run2 = add_run(&db, "run2").await;
    let plain: Vec<(i64, String)> = (0..2_500i64)
        .map(|s| {
            let row = format!(
                r#"{{"_step":{s},"acc":{},"n":{s},"_runtime":{}}}"#,
                (s as f64).sin(),
                s as f64 * 0.5
            );
            (s, row)
        })
        .collect();
    ingest(&db.mirror, run2, Stream::History, &plain, 1_000).await;
    // System events: numbered rows of floats, a string now and then.
    let events: Vec<(i64, String)> = (0..1_500i64)
        .map(|i| {
            let tail = if i % 500 == 0 {
                r#","gpu.name":"A100""#
            } else {
                ""
            };
            (
                i,
                format!(
                    r#"{{"_timestamp":{}.5,"cpu":{}{tail}}}"#,
                    1_700_000_000 + i,
                    i % 7
                ),
            )
        })
        .collect();
    ingest(&db.mirror, run1, Stream::System, &events, 400).await;

    let run = |pk: RunPk, id: &str| DatasetRun {
        run_pk: pk,
        run_id: id.into(),
    };
    // One run at a time (one snapshot per table), then both as one dataset.
    let (text, blocks) = both_ways(&db.mirror, &[run(run1, "run1")], Stream::History).await;
    assert_eq!(text.rows, rows.len() as u64);
    assert!(
        blocks.rows_from_text > 0 && blocks.rows_from_text < blocks.rows * 3 / 4,
        "{blocks:?}"
    );
    let (_, plain_stats) = both_ways(&db.mirror, &[run(run2, "run2")], Stream::History).await;
    assert_eq!(plain_stats.rows_from_text, 0, "{plain_stats:?}");
    both_ways(
        &db.mirror,
        &[run(run1, "run1"), run(run2, "run2")],
        Stream::History,
    )
    .await;
    both_ways(&db.mirror, &[run(run1, "run1")], Stream::System).await;
    // A run without rows: no file either way.
    let run3 = add_run(&db, "run3").await;
    let (_, empty) = both_ways(&db.mirror, &[run(run3, "run3")], Stream::History).await;
    assert_eq!(empty.files, 0);

    // Blocks written before schema 5 (kinds unknown) render from their text, the same table.
    let sql = db.raw_client().await.unwrap();
    sql.execute(
        "UPDATE wandb.block_values SET kinds = NULL WHERE run_pk = $1",
        &[&run2.0],
    )
    .await
    .unwrap();
    let (_, old) = both_ways(&db.mirror, &[run(run2, "run2")], Stream::History).await;
    assert_eq!(old.rows_from_text, old.rows, "{old:?}");
}
