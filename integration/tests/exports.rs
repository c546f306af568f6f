//! Parquet history exports: when they appear, what the files contain (read back with the
//! parquet crate, not the emulator's own code), how they are served (signed, Range, HEAD,
//! expiry), byte stability, partial exports with a live tail, and lazily exported seeded runs.

mod support;

use std::time::Duration;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type};
use arrow_array::{Array, RecordBatch};
use arrow_schema::DataType;
use bytes::Bytes;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::{Value, json};
use support::TEST_KEY;
use support::gql::Gql;
use wandb_emulator::export::{ExportConfig, ParquetExports};
use wandb_emulator::{Emulator, EmulatorConfig, RunKey, SeedSpec};

const PARQUET_HISTORY: &str = "query RunParquetHistory($entity: String!, $project: String!, $runName: String!, $liveKeys: [String!]!) {
    project(name: $project, entityName: $entity) { run(name: $runName) {
        parquetHistory(liveKeys: $liveKeys) { parquetUrls liveData } } } }";

fn start() -> (Emulator, Gql) {
    let emu = Emulator::start_with(EmulatorConfig::default().api_key(TEST_KEY)).expect("emulator");
    let gql = Gql::new(emu.base_url(), TEST_KEY);
    (emu, gql)
}

/// Rows with every awkward shape: nested dicts, NaN/±Infinity, ints, floats that are
/// sometimes whole, strings, a media object, a value of changing type, lists with nulls.
fn awkward_row(step: i64) -> String {
    let special = match step % 4 {
        0 => "NaN",
        1 => "Infinity",
        2 => "-Infinity",
        _ => "0.5",
    };
    let mixed = if step % 2 == 0 {
        format!("{step}")
    } else {
        format!("\"s{step}\"")
    };
    let mut row = format!(
        r#"{{"_step":{step},"loss":{},"epoch":{},"special":{special},"b":{{"c":{step},"d":{{"e":{}}}}},"mixed":{mixed},"lst":[1,null,2.5]"#,
        if step == 0 {
            "1".to_string()
        } else {
            format!("{}", 1.0 / (step as f64 + 1.0))
        },
        step / 3,
        step as f64 * 0.25,
    );
    if step == 2 {
        row.push_str(r#","img":{"_type":"image-file","path":"media/images/a.png","width":8}"#);
    }
    row.push('}');
    row
}

fn finished_run(emu: &Emulator, name: &str, rows: i64) -> RunKey {
    let key = RunKey::new("emulator", "exports", name);
    emu.create_run(&key);
    let lines: Vec<String> = (0..rows).map(awkward_row).collect();
    emu.append_history(&key, &lines).expect("append");
    emu.set_state(&key, "finished").expect("state");
    key
}

async fn parquet_history(gql: &Gql, key: &RunKey) -> (Vec<String>, Vec<Value>) {
    let data = gql
        .data(
            PARQUET_HISTORY,
            json!({"entity": key.entity, "project": key.project, "runName": key.name, "liveKeys": ["_step"]}),
        )
        .await;
    let ph = &data["project"]["run"]["parquetHistory"];
    let urls = ph["parquetUrls"]
        .as_array()
        .expect("urls")
        .iter()
        .map(|u| u.as_str().expect("url").to_string())
        .collect();
    let live = ph["liveData"].as_array().expect("liveData").clone();
    (urls, live)
}

async fn fetch(gql: &Gql, url: &str) -> Bytes {
    let resp = gql.get(url, false, &[]).await;
    assert_eq!(resp.status(), 200, "{url}");
    resp.bytes().await.expect("body")
}

fn read_batches(bytes: Bytes) -> Vec<RecordBatch> {
    ParquetRecordBatchReaderBuilder::try_new(bytes)
        .expect("a parquet file")
        .build()
        .expect("reader")
        .collect::<Result<Vec<_>, _>>()
        .expect("batches")
}

fn steps_of(batches: &[RecordBatch]) -> Vec<i64> {
    batches
        .iter()
        .flat_map(|b| {
            let s = b.column(0).as_primitive::<Int64Type>();
            (0..s.len()).map(|i| s.value(i)).collect::<Vec<_>>()
        })
        .collect()
}

#[tokio::test]
async fn exports_appear_after_the_delay_only_for_ended_runs() {
    let (emu, gql) = start();
    let exports = ParquetExports::install(&emu, ExportConfig::after(Duration::from_secs(600)));
    let done = finished_run(&emu, "done", 10);
    let live = RunKey::new("emulator", "exports", "live");
    emu.create_run(&live);
    emu.append_history(&live, &[awkward_row(0)])
        .expect("append");

    let (urls, rows) = parquet_history(&gql, &done).await;
    assert!(urls.is_empty(), "exported before the delay: {urls:?}");
    assert_eq!(rows.len(), 10, "every row is live before the export");
    emu.advance_clock(Duration::from_secs(601));
    let (urls, rows) = parquet_history(&gql, &done).await;
    assert_eq!((urls.len(), rows.len()), (1, 0));
    let (urls, rows) = parquet_history(&gql, &live).await;
    assert!(
        urls.is_empty() && rows.len() == 1,
        "a running run is never exported"
    );

    // `never` until the delay is set.
    exports.set_delay(None);
    let other = finished_run(&emu, "other", 3);
    emu.advance_clock(Duration::from_secs(3600));
    assert!(parquet_history(&gql, &other).await.0.is_empty());
    exports.set_delay(Some(Duration::ZERO));
    assert_eq!(parquet_history(&gql, &other).await.0.len(), 1);
    // A run exported before keeps its export when exporting stops.
    exports.set_delay(None);
    assert_eq!(parquet_history(&gql, &done).await.0.len(), 1);
}

#[tokio::test]
async fn files_have_the_wandb_layout_and_are_byte_stable() {
    let (emu, gql) = start();
    let exports = ParquetExports::install(
        &emu,
        ExportConfig::immediate().rows_per_file(4).row_group_rows(3),
    );
    let key = finished_run(&emu, "awkward", 10);
    let (urls, live) = parquet_history(&gql, &key).await;
    assert!(live.is_empty(), "{live:?}");
    assert_eq!(urls.len(), 3, "10 rows at 4 per file");
    assert!(
        urls.iter().all(|u| u.starts_with(emu.direct_base_url())),
        "signed URLs on the direct listener: {urls:?}"
    );

    let mut all_steps = Vec::new();
    let mut first_bytes = Vec::new();
    for url in &urls {
        let bytes = fetch(&gql, url).await;
        first_bytes.push(bytes.clone());
        let builder = ParquetRecordBatchReaderBuilder::try_new(bytes.clone()).expect("parquet");
        assert!(builder.metadata().num_row_groups() >= 1);
        let batches = read_batches(bytes);
        let schema = batches[0].schema();
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(
            names,
            [
                "_step", "loss", "epoch", "special", "b.c", "b.d", "mixed", "lst", "img"
            ],
            "step first, one-level dotted names, first-appearance order"
        );
        let field = |n: &str| schema.field_with_name(n).expect("field").clone();
        assert_eq!(field("_step").data_type(), &DataType::Int64);
        assert!(!field("_step").is_nullable());
        assert_eq!(
            field("loss").data_type(),
            &DataType::Float64,
            "1 then floats"
        );
        assert_eq!(field("epoch").data_type(), &DataType::Int64);
        assert_eq!(field("b.c").data_type(), &DataType::Int64);
        assert!(matches!(field("b.d").data_type(), DataType::Struct(f) if f.len() == 1));
        assert!(
            matches!(field("mixed").data_type(), DataType::Struct(f)
                if f.iter().map(|x| x.name().as_str()).collect::<Vec<_>>() == ["_type_number", "_type_string"]),
            "{:?}",
            field("mixed")
        );
        assert!(matches!(field("img").data_type(), DataType::Struct(f) if f.len() == 3));
        for batch in &batches {
            let steps = batch.column(0).as_primitive::<Int64Type>();
            let special = batch
                .column_by_name("special")
                .expect("special")
                .as_primitive::<Float64Type>();
            for i in 0..batch.num_rows() {
                let v = special.value(i);
                match steps.value(i) % 4 {
                    0 => assert!(v.is_nan(), "NaN stays a native float"),
                    1 => assert_eq!(v, f64::INFINITY),
                    2 => assert_eq!(v, f64::NEG_INFINITY),
                    _ => assert_eq!(v, 0.5),
                }
                let img = batch.column_by_name("img").expect("img");
                assert_eq!(
                    img.is_valid(i),
                    steps.value(i) == 2,
                    "media only where logged"
                );
            }
        }
        all_steps.extend(steps_of(&batches));
    }
    assert_eq!(
        all_steps,
        (0..10).collect::<Vec<_>>(),
        "files partition the steps in order"
    );

    // Byte-stable: again, and after dropping and rebuilding the export.
    let (again, _) = parquet_history(&gql, &key).await;
    for (url, bytes) in again.iter().zip(&first_bytes) {
        assert_eq!(&fetch(&gql, url).await, bytes);
    }
    let before = exports.cached(emu.app(), &key).expect("cached");
    exports.forget(emu.app(), &key);
    let rebuilt = exports.prepare(emu.app(), &key).expect("rebuilt");
    assert_eq!(before.files, rebuilt.files, "same blobs, same sizes");
}

#[tokio::test]
async fn export_urls_are_signed_ranged_and_expire() {
    let (emu, gql) = start();
    ParquetExports::install(&emu, ExportConfig::immediate());
    let key = finished_run(&emu, "ranged", 20);
    emu.set_signed_url_ttl(Duration::from_secs(60));
    let (urls, _) = parquet_history(&gql, &key).await;
    let url = &urls[0];
    let whole = fetch(&gql, url).await;
    assert_eq!(&whole[..4], b"PAR1");
    assert_eq!(&whole[whole.len() - 4..], b"PAR1");

    let head = gql.http.head(url).send().await.expect("HEAD");
    assert_eq!(head.status(), 200);
    assert_eq!(
        head.headers()["content-length"].to_str().expect("len"),
        whole.len().to_string()
    );
    let tail = gql.get(url, false, &[("Range", "bytes=-8")]).await;
    assert_eq!(tail.status(), 206);
    assert_eq!(
        tail.bytes().await.expect("body"),
        whole.slice(whole.len() - 8..)
    );
    let mid = gql.get(url, false, &[("Range", "bytes=4-9")]).await;
    assert_eq!(mid.status(), 206);
    assert_eq!(mid.bytes().await.expect("body"), whole.slice(4..10));

    emu.advance_clock(Duration::from_secs(61));
    let expired = gql.get(url, false, &[]).await;
    assert_eq!(expired.status(), 403, "signed URLs expire");
    let (fresh, _) = parquet_history(&gql, &key).await;
    assert_eq!(
        fetch(&gql, &fresh[0]).await,
        whole,
        "a fresh listing signs again"
    );
    // No credential is needed (or sent) on the direct listener.
    let direct = emu
        .requests()
        .into_iter()
        .filter(|r| r.listener == wandb_emulator::Listener::Direct)
        .collect::<Vec<_>>();
    assert!(direct.len() >= 5 && direct.iter().all(|r| !r.authorization_present));
}

#[tokio::test]
async fn rows_appended_after_an_export_are_served_live() {
    let (emu, gql) = start();
    let exports = ParquetExports::install(&emu, ExportConfig::immediate());
    let key = finished_run(&emu, "resumed", 5);
    let (urls, live) = parquet_history(&gql, &key).await;
    assert_eq!((urls.len(), live.len()), (1, 0));

    // The run resumes and logs three more steps: the export is a snapshot, they are live.
    emu.set_state(&key, "running").expect("state");
    let more: Vec<String> = (5..8).map(awkward_row).collect();
    emu.append_history(&key, &more).expect("append");
    emu.set_state(&key, "finished").expect("state");
    let (urls2, live) = parquet_history(&gql, &key).await;
    assert_eq!(urls2.len(), 1);
    assert_eq!(
        live,
        vec![
            json!({"_step": 5}),
            json!({"_step": 6}),
            json!({"_step": 7})
        ]
    );
    let exported = steps_of(&read_batches(fetch(&gql, &urls2[0]).await));
    assert_eq!(exported, (0..5).collect::<Vec<_>>());

    // Live rows projected to other keys keep the JSON-field NaN sentinels.
    let data = gql
        .data(
            PARQUET_HISTORY,
            json!({"entity": key.entity, "project": key.project, "runName": key.name, "liveKeys": ["_step", "special"]}),
        )
        .await;
    assert_eq!(
        data["project"]["run"]["parquetHistory"]["liveData"][0],
        json!({"_step": 5, "special": "Infinity"})
    );

    // A later compaction covers everything.
    exports.forget(emu.app(), &key);
    let (urls3, live) = parquet_history(&gql, &key).await;
    assert!(live.is_empty());
    assert_eq!(
        steps_of(&read_batches(fetch(&gql, &urls3[0]).await)),
        (0..8).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn seeded_histories_export_lazily_into_the_blob_store() {
    let spec = SeedSpec::new("emulator", "seeded")
        .runs(3)
        .steps(2_500)
        .keys(8)
        .files(1)
        .bigfile(0);
    let emu = Emulator::start_with(EmulatorConfig::default().api_key(TEST_KEY).seed(spec))
        .expect("emulator");
    let gql = Gql::new(emu.base_url(), TEST_KEY);
    let exports = ParquetExports::install(&emu, ExportConfig::immediate().rows_per_file(1_000));
    let keys = emu.runs("emulator", "seeded");
    assert!(
        keys.iter().all(|k| exports.cached(emu.app(), k).is_none()),
        "nothing built yet"
    );

    let (urls, live) = parquet_history(&gql, &keys[0]).await;
    assert_eq!((urls.len(), live.len()), (3, 0));
    let export = exports
        .cached(emu.app(), &keys[0])
        .expect("built on first request");
    assert_eq!(export.rows(), 2_500);
    assert!(
        export
            .files
            .iter()
            .all(|f| emu.app().blobs.get(&f.blob).is_some())
    );
    assert!(
        exports.cached(emu.app(), &keys[1]).is_none(),
        "other runs stay lazy"
    );

    // Every generated row is in the files, NaN/±Infinity as floats.
    let ground_truth = emu.history_rows(&keys[0]).expect("rows");
    let mut steps = Vec::new();
    let mut specials = 0;
    for url in &urls {
        let batches = read_batches(fetch(&gql, url).await);
        for b in &batches {
            let special = b
                .column_by_name("special")
                .expect("special")
                .as_primitive::<Float64Type>();
            specials += (0..b.num_rows())
                .filter(|&i| !special.value(i).is_finite())
                .count();
        }
        steps.extend(steps_of(&batches));
    }
    assert_eq!(steps, (0..2_500).collect::<Vec<_>>());
    let non_finite = ground_truth
        .iter()
        .filter(|r| r.contains("NaN") || r.contains("Infinity"))
        .count();
    assert_eq!(specials, non_finite);
}

/// The `--export-delay` / `--export-rows-per-file` flags of the binary plug the exports in.
#[tokio::test]
async fn the_binary_exports_with_export_delay() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    /// Kills the server however the test ends.
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_wandb-emulator"))
        .args([
            "--api-key",
            TEST_KEY,
            "--seed",
            "emulator/cli:runs=1,steps=250,keys=6,files=1,bigfile=0",
            "--export-delay",
            "0",
            "--export-rows-per-file",
            "100",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn wandb-emulator");
    let stdout = child.stdout.take().expect("stdout");
    let _server = Kill(child);
    let mut base = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("line");
        if line == "ready" {
            break;
        }
        if let Some(url) = line.strip_prefix("base_url=") {
            base = Some(url.to_string());
        }
    }
    let gql = Gql::new(&base.expect("base_url line"), TEST_KEY);
    let runs = gql
        .data(
            "query { project(name: \"cli\", entityName: \"emulator\") { runs { edges { node { name state } } } } }",
            json!({}),
        )
        .await;
    let name = runs["project"]["runs"]["edges"][0]["node"]["name"]
        .as_str()
        .expect("a run")
        .to_string();
    assert_eq!(
        runs["project"]["runs"]["edges"][0]["node"]["state"],
        "finished"
    );
    let (urls, live) = parquet_history(&gql, &RunKey::new("emulator", "cli", name)).await;
    assert_eq!((urls.len(), live.len()), (3, 0), "250 rows at 100 per file");
}
