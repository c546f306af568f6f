//! Fidelity with the real SDK: a run logged by `wandb` 0.31.0 (NaN, ±Infinity, nested dicts,
//! unicode keys and values, big ints, ints vs floats, escapes) is synced into the mirror, and
//! the mirror's `history.jsonl` bytes, read back with Python's `json.loads`, equal what the
//! SDK's own `run.scan_history()` returns for the same run, row for row and type for type.
//! The summary and config documents are compared with `run.summary` / `run.config` too.

mod sync_support;

use sync_support::*;
use wandb_emulator::{Emulator, RunKey};
use wandbfs::mirror::{Document, Stream};
use wandbfs::sync::SyncOptions;

const LOG_RUN: &str = r#"
import os, wandb
run = wandb.init(project="fidelity", entity=os.environ["EMU_ENTITY"],
                 config={"lr": 0.001, "layers": [64, 32], "opt": {"name": "adam", "β": 0.9},
                         "ünïcode": "日本語", "n": 3})
for i in range(400):
    row = {
        "loss": 1.0 / (i + 1),
        "int": i,
        "float_int": float(i),
        "nan": float("nan") if i % 7 == 0 else i * 0.5,
        "inf": float("inf") if i % 11 == 0 else (-float("inf") if i % 13 == 0 else 1.5),
        "nested": {"a": {"b": i, "c": "ü" + str(i)}, "list": [1, 2.5, None, "x"]},
        "emoji 🚀": "日本語 ✓",
        "métrique/α": -i,
        "big": 2 ** 53 + i,
        "tiny": 1e-300,
        "neg_zero": -0.0,
        "text": 'quote" backslash\\ tab\t newline\n end',
        "flag": i % 2 == 0,
    }
    if i % 50 == 0:
        row["sparse"] = {"deep": {"er": float("nan")}}
    run.log(row)
run.summary["best"] = float("-inf")
run.finish()
print("RUN_ID=" + run.id)
"#;

const COMPARE: &str = r#"
import json, math, os, sys, wandb

def same(a, b, path="$"):
    if type(a) is not type(b):
        raise AssertionError(f"{path}: type {type(a).__name__} vs {type(b).__name__}: {a!r} vs {b!r}")
    if isinstance(a, float):
        if math.isnan(a) and math.isnan(b):
            return
        if a != b or math.copysign(1, a) != math.copysign(1, b):
            raise AssertionError(f"{path}: {a!r} vs {b!r}")
    elif isinstance(a, dict):
        if list(a.keys()) != list(b.keys()) and set(a.keys()) != set(b.keys()):
            raise AssertionError(f"{path}: keys {sorted(a)} vs {sorted(b)}")
        for k in a:
            same(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list):
        if len(a) != len(b):
            raise AssertionError(f"{path}: length {len(a)} vs {len(b)}")
        for i, (x, y) in enumerate(zip(a, b)):
            same(x, y, f"{path}[{i}]")
    elif a != b:
        raise AssertionError(f"{path}: {a!r} vs {b!r}")

api = wandb.Api()
run = api.run(os.environ["RUN_PATH"])
sdk_rows = list(run.scan_history())
with open(os.environ["HISTORY_JSONL"], "rb") as f:
    data = f.read()
assert data.endswith(b"\n"), "history.jsonl must end with a newline"
ours = [json.loads(line) for line in data.decode("utf-8").split("\n")[:-1]]
assert len(ours) == len(sdk_rows), f"{len(ours)} mirrored rows vs {len(sdk_rows)} from scan_history"
for i, (a, b) in enumerate(zip(sdk_rows, ours)):
    same(a, b, f"row[{i}]")
nans = sum(1 for r in ours if isinstance(r.get("nan"), float) and math.isnan(r["nan"]))
infs = sum(1 for r in ours if r.get("inf") in (math.inf, -math.inf))
assert nans > 0 and infs > 0, (nans, infs)

with open(os.environ["SUMMARY_JSON"], "rb") as f:
    summary = json.loads(f.read())
same(dict(run.summary._json_dict), summary, "summary")
with open(os.environ["CONFIG_JSON"], "rb") as f:
    raw_config = json.loads(f.read())
config = {k: (v["value"] if isinstance(v, dict) and "value" in v else v)
          for k, v in raw_config.items() if k != "_wandb"}
same({k: v for k, v in run.config.items()}, config, "config")
print(f"OK {len(ours)} rows, {nans} NaN, {infs} infinite")
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_jsonl_equals_the_sdks_scan_history() {
    let emu = Emulator::start().expect("emulator");
    let dir = tempfile::tempdir().expect("tempdir");
    let out = run_sdk(&emu, dir.path(), LOG_RUN, &[]);
    let run_id = out
        .lines()
        .find_map(|l| l.strip_prefix("RUN_ID="))
        .expect("run id")
        .trim()
        .to_owned();
    let entity = emu.entity();

    let db = database().await;
    let engine = engine(client(&emu), &db.mirror, SyncOptions::default());
    let report = sync(&engine, &format!("{entity}/fidelity")).await;
    assert!(report.is_success(), "{report:#?}");
    assert_eq!(report.rows, 400);

    let key = RunKey::new(&entity, "fidelity", &run_id);
    let history = mirror_stream(&db.mirror, &key, Stream::History).await;
    // Byte for byte what W&B serves, too.
    assert_eq!(history, expected_jsonl(&emu.history_rows(&key).unwrap()));
    let run = db
        .mirror
        .resolve_run(&entity, "fidelity", &run_id)
        .await
        .unwrap()
        .unwrap();
    let write = |name: &str, bytes: &[u8]| {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).expect("write");
        path.to_string_lossy().into_owned()
    };
    let history_path = write("history.jsonl", &history);
    let summary = db
        .mirror
        .read_document(run, Document::Summary)
        .await
        .unwrap();
    let summary_path = write("summary.json", &summary.expect("summary"));
    let config = db
        .mirror
        .read_document(run, Document::Config)
        .await
        .unwrap();
    let config_path = write("config.json", &config.expect("config"));
    let run_path = format!("{entity}/fidelity/{run_id}");
    let out = run_sdk(
        &emu,
        dir.path(),
        COMPARE,
        &[
            ("RUN_PATH", &run_path),
            ("HISTORY_JSONL", &history_path),
            ("SUMMARY_JSON", &summary_path),
            ("CONFIG_JSON", &config_path),
        ],
    );
    assert!(out.contains("OK 400 rows"), "{out}");
    eprintln!("{}", out.trim());

    // SQL users see the same numbers, non-finite values spelled for float8.
    let sql = db.raw_client().await.unwrap();
    let row = sql
        .query_one(
            "SELECT (row->>'nan')::float8 = 'NaN'::float8, row->'nested'->'a'->>'c',
                    (row->>'inf')::float8, row->>'emoji 🚀'
             FROM wandb.history_rows WHERE run_pk = $1 AND step = 0",
            &[&run.0],
        )
        .await
        .unwrap();
    assert!(row.get::<_, bool>(0));
    assert_eq!(row.get::<_, String>(1), "ü0");
    assert_eq!(row.get::<_, f64>(2), f64::INFINITY);
    assert_eq!(row.get::<_, String>(3), "日本語 ✓");
}
