//! The typed tables through `WandbStore` over the mirror (`runs.parquet`, `runs.jsonl`,
//! `history.parquet`, `system.parquet`): listed with their exact sizes, `head` = bytes read =
//! listed size, the same bytes and e-tag on every read until a sync changes the data, then the
//! new rows; the values are the mirrored history's; a query through `WandbStore` registered as
//! an `ObjectStore` (examples/query_history.rs, compiled into this test) reads them by ranges.

mod sync_support;

#[path = "../examples/query_history.rs"]
#[allow(dead_code)]
mod query_history;

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::{Array, Float64Array, Int64Array, RecordBatch, StringArray};
use bytes::Bytes;
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use sync_support::*;
use wandb_emulator::{Emulator, EmulatorConfig, SeedSpec};
use wandbfs::store::tables::TableCache;
use wandbfs::store::{Layered, LiveOptions, LiveSource, MirrorSource, WandbStore};
use wandbfs::sync::SyncOptions;

const ENTITY: &str = "emulator";
const PROJECT: &str = "tables";

fn p(s: &str) -> Path {
    Path::parse(s).unwrap()
}

async fn get(store: &WandbStore, path: &str) -> (Bytes, object_store::ObjectMeta) {
    let got = store
        .get(&p(path))
        .await
        .unwrap_or_else(|e| panic!("get {path}: {e}"));
    let meta = got.meta.clone();
    (got.bytes().await.unwrap(), meta)
}

fn batches(bytes: Bytes) -> Vec<RecordBatch> {
    ParquetRecordBatchReaderBuilder::try_new(bytes)
        .unwrap()
        .build()
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

fn ints(batches: &[RecordBatch], column: &str) -> Vec<Option<i64>> {
    batches
        .iter()
        .flat_map(|b| {
            let a = b.column_by_name(column).unwrap();
            let a = a.as_any().downcast_ref::<Int64Array>().unwrap();
            a.iter().collect::<Vec<_>>()
        })
        .collect()
}

fn floats(batches: &[RecordBatch], column: &str) -> Vec<Option<f64>> {
    batches
        .iter()
        .flat_map(|b| {
            let a = b.column_by_name(column).unwrap();
            let a = a.as_any().downcast_ref::<Float64Array>().unwrap();
            a.iter().collect::<Vec<_>>()
        })
        .collect()
}

fn strings(batches: &[RecordBatch], column: &str) -> Vec<Option<String>> {
    batches
        .iter()
        .flat_map(|b| {
            let a = b.column_by_name(column).unwrap();
            let a = a.as_any().downcast_ref::<StringArray>().unwrap();
            a.iter().map(|v| v.map(str::to_owned)).collect::<Vec<_>>()
        })
        .collect()
}

/// The number of `key` of every line of a W&B-dialect JSON Lines text (NaN/±Infinity tokens
/// read as floats), `None` where the line lacks it.
fn jsonl_numbers(text: &[u8], key: &str) -> Vec<Option<f64>> {
    std::str::from_utf8(text)
        .unwrap()
        .lines()
        .map(|line| {
            let strict = line
                .replace(":-Infinity", ":\"-inf\"")
                .replace(":Infinity", ":\"inf\"")
                .replace(":NaN", ":\"nan\"");
            let row: serde_json::Value = serde_json::from_str(&strict).unwrap();
            row.get(key).map(|v| match v {
                serde_json::Value::String(s) => s.parse::<f64>().unwrap(),
                other => other.as_f64().unwrap(),
            })
        })
        .collect()
}

fn same_floats(a: &[Option<f64>], b: &[Option<f64>]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| match (x, y) {
            (Some(x), Some(y)) => x == y || (x.is_nan() && y.is_nan()),
            (None, None) => true,
            _ => false,
        })
}

/// Listed size = `head` size = bytes read; a second read returns the same bytes and e-tag;
/// ranges are slices of the whole.
async fn exact_and_stable(store: &WandbStore, path: &str, listed: u64) -> Bytes {
    let head = store.head(&p(path)).await.unwrap();
    let (bytes, meta) = get(store, path).await;
    assert!(!bytes.is_empty(), "{path} is empty");
    assert_eq!(head.size, bytes.len() as u64, "head size of {path}");
    assert_eq!(listed, bytes.len() as u64, "listed size of {path}");
    assert_eq!(meta.e_tag, head.e_tag, "{path}");
    let (again, meta_again) = get(store, path).await;
    assert_eq!(again, bytes, "{path} changed without a sync");
    assert_eq!(meta_again.e_tag, meta.e_tag);
    let range = GetRange::Bounded(3..bytes.len() as u64 - 5);
    let part = store
        .get_opts(
            &p(path),
            GetOptions {
                range: Some(range),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(part, bytes.slice(3..bytes.len() - 5), "a range of {path}");
    bytes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_are_exact_stable_and_follow_the_mirror() {
    let spec = SeedSpec::new(ENTITY, PROJECT)
        .runs(3)
        .steps(700)
        .keys(7)
        .files(1)
        .bigfile(0);
    let emu = Emulator::start_with(EmulatorConfig::default().seed(spec)).expect("emulator");
    let db = database().await;
    let engine = engine(client(&emu), &db.mirror, SyncOptions::default());
    let project = format!("{ENTITY}/{PROJECT}");
    assert!(sync(&engine, &project).await.is_success());

    let tables = tempfile::tempdir().unwrap();
    let store = WandbStore::builder(client(&emu))
        .with_source(Arc::new(Layered::new(
            Arc::new(
                MirrorSource::new(db.mirror.clone()).with_tables(TableCache::new(tables.path())),
            ),
            Arc::new(LiveSource::new(client(&emu), LiveOptions::default())),
        )))
        .build();
    let runs = emu.runs(ENTITY, PROJECT);

    // Listed where LAYOUT.md says, with their sizes (rendered on that first listing).
    let listing = store.list_with_delimiter(Some(&p(&project))).await.unwrap();
    let sizes: BTreeMap<String, u64> = listing
        .objects
        .iter()
        .map(|o| (o.location.filename().unwrap().to_owned(), o.size))
        .collect();
    assert_eq!(
        sizes.keys().collect::<Vec<_>>(),
        ["runs.jsonl", "runs.parquet"],
        "{sizes:?}"
    );
    let run_dir = format!("{project}/{}", runs[0].name);
    let run_listing = store.list_with_delimiter(Some(&p(&run_dir))).await.unwrap();
    let run_sizes: BTreeMap<String, u64> = run_listing
        .objects
        .iter()
        .map(|o| (o.location.filename().unwrap().to_owned(), o.size))
        .collect();
    for name in ["history.parquet", "system.parquet", "history.jsonl"] {
        assert!(run_sizes.contains_key(name), "{name} not in {run_sizes:?}");
    }

    // runs.parquet: a row per run, the emulator's states, config as text and typed columns.
    let runs_bytes = exact_and_stable(
        &store,
        &format!("{project}/runs.parquet"),
        sizes["runs.parquet"],
    )
    .await;
    let runs_table = batches(runs_bytes.clone());
    let ids = strings(&runs_table, "run_id");
    let states = strings(&runs_table, "state");
    assert_eq!(ids.len(), runs.len());
    for run in &runs {
        let i = ids
            .iter()
            .position(|id| id.as_deref() == Some(&run.name))
            .unwrap();
        assert_eq!(
            states[i].as_deref(),
            Some(emu.run_info(run).unwrap().state.as_str())
        );
    }
    assert!(runs_table[0].column_by_name("config_json").is_some());
    assert!(
        runs_table[0]
            .column_by_name("config.model.layers")
            .is_some()
    );
    let runs_jsonl = exact_and_stable(
        &store,
        &format!("{project}/runs.jsonl"),
        sizes["runs.jsonl"],
    )
    .await;
    assert_eq!(
        std::str::from_utf8(&runs_jsonl).unwrap().lines().count(),
        runs.len()
    );

    // history.parquet = history.jsonl, row for row: steps, floats with NaN and ±Infinity.
    let history_path = format!("{run_dir}/history.parquet");
    let parquet = exact_and_stable(&store, &history_path, run_sizes["history.parquet"]).await;
    let (jsonl, _) = get(&store, &format!("{run_dir}/history.jsonl")).await;
    let table = batches(parquet.clone());
    let steps: Vec<Option<f64>> = ints(&table, "_step")
        .into_iter()
        .map(|s| s.map(|s| s as f64))
        .collect();
    assert_eq!(steps.len(), 700);
    assert_eq!(steps, jsonl_numbers(&jsonl, "_step"));
    let special = floats(&table, "special");
    assert!(same_floats(&special, &jsonl_numbers(&jsonl, "special")));
    assert!(special.iter().any(|v| v.is_some_and(f64::is_nan)));
    assert!(special.contains(&Some(f64::INFINITY)));
    assert!(special.contains(&Some(f64::NEG_INFINITY)));
    assert!(same_floats(
        &floats(&table, "loss"),
        &jsonl_numbers(&jsonl, "loss")
    ));
    let system = exact_and_stable(
        &store,
        &format!("{run_dir}/system.parquet"),
        run_sizes["system.parquet"],
    )
    .await;
    let (system_jsonl, _) = get(&store, &format!("{run_dir}/system.jsonl")).await;
    let system_rows: usize = batches(system).iter().map(RecordBatch::num_rows).sum();
    assert_eq!(
        system_rows,
        std::str::from_utf8(&system_jsonl).unwrap().lines().count()
    );

    // The example's query through WandbStore as an ObjectStore: every run, the same numbers.
    let dyn_store: Arc<dyn ObjectStore> = Arc::new(store.clone());
    let stats = query_history::column_stats(Arc::clone(&dyn_store), &p(&project), "special")
        .await
        .unwrap();
    assert_eq!(stats.len(), runs.len());
    for s in &stats {
        let (text, _) = get(&store, &format!("{project}/{}/history.jsonl", s.run_id)).await;
        let values: Vec<f64> = jsonl_numbers(&text, "special")
            .into_iter()
            .flatten()
            .collect();
        let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
        assert_eq!(
            s.rows as usize,
            text.iter().filter(|b| **b == b'\n').count()
        );
        assert_eq!(s.count as usize, values.len());
        let mean = finite.iter().sum::<f64>() / finite.len() as f64;
        assert!(
            (s.mean.unwrap() - mean).abs() <= 1e-9 * mean.abs().max(1.0),
            "{s:?} vs {mean}"
        );
        assert_eq!(s.min, Some(f64::NEG_INFINITY));
        assert_eq!(
            s.last_step,
            jsonl_numbers(&text, "_step")
                .last()
                .copied()
                .flatten()
                .map(|v| v as i64)
        );
    }

    // Rows appended upstream and synced: the table follows, exactly, with a new e-tag; the
    // older rendering is gone from the cache directory.
    let before_etag = store.head(&p(&history_path)).await.unwrap().e_tag;
    let last = emu.run_info(&runs[0]).unwrap().last_step.unwrap();
    let appended: Vec<String> = (last + 1..last + 31)
        .map(|s| format!(r#"{{"_step":{s},"loss":0.5,"note":"appended"}}"#))
        .collect();
    emu.append_history(&runs[0], &appended).unwrap();
    assert!(sync(&engine, &project).await.is_success());
    let listed = store.list_with_delimiter(Some(&p(&run_dir))).await.unwrap();
    let listed_size = listed
        .objects
        .iter()
        .find(|o| o.location.filename() == Some("history.parquet"))
        .unwrap()
        .size;
    let grown = exact_and_stable(&store, &history_path, listed_size).await;
    assert_ne!(
        store.head(&p(&history_path)).await.unwrap().e_tag,
        before_etag
    );
    let table = batches(grown);
    assert_eq!(ints(&table, "_step").len(), 730);
    let notes = strings(&table, "note");
    assert_eq!(
        notes
            .iter()
            .filter(|n| n.as_deref() == Some("appended"))
            .count(),
        30
    );
    assert_eq!(
        notes.iter().filter(|n| n.is_none()).count(),
        700,
        "missing is null"
    );
    let runs_after = batches(get(&store, &format!("{project}/runs.parquet")).await.0);
    let i = strings(&runs_after, "run_id")
        .iter()
        .position(|id| id.as_deref() == Some(&runs[0].name))
        .unwrap();
    assert_eq!(ints(&runs_after, "last_step")[i], Some(last + 30));
    let rendered: Vec<String> = std::fs::read_dir(tables.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("history-"))
        .collect();
    assert_eq!(
        rendered.len(),
        runs.len(),
        "one rendering per run's history: {rendered:?}"
    );

    // The live API alone cannot render tables: a clear "not supported" rather than a guess.
    let live = WandbStore::new(client(&emu));
    let err = live.head(&p(&history_path)).await.unwrap_err();
    assert!(
        matches!(
            err,
            object_store::Error::NotSupported { .. } | object_store::Error::NotFound { .. }
        ),
        "{err}"
    );
}
