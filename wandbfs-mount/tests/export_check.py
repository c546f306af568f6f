"""Reads a `wandbfs export` directory back with pyarrow and json, and asserts what the export
test logged (see export_cli.rs). Usage: export_check.py PARQUET_DIR JSONL_DIR ALPHA_ID BETA_ID
"""

from __future__ import annotations

import json
import math
import os
import sys

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq


def fail(message: str) -> None:
    print(f"CHECK FAILED: {message}", file=sys.stderr, flush=True)
    sys.exit(1)


def check(condition: bool, message: str) -> None:
    if not condition:
        fail(message)


def expected_special(step: int) -> float:
    return {7: math.nan, 19: math.inf, 33: -math.inf}.get(step % 50, step * 0.125)


def check_parquet(root: str, alpha: str, beta: str) -> None:
    manifest = json.load(open(os.path.join(root, "export.json")))
    check(manifest["format"] == "parquet" and manifest["history"]["rows"] == 3500, f"manifest {manifest}")

    runs = pq.read_table(os.path.join(root, "runs.parquet")).to_pylist()
    by_id = {r["run_id"]: r for r in runs}
    check(set(by_id) == {alpha, beta, "empty"}, f"runs {sorted(by_id)}")
    schema = pq.read_schema(os.path.join(root, "runs.parquet"))
    check(schema.field("config.lr").type == pa.float64(), f"config.lr {schema.field('config.lr').type}")
    check(schema.field("config.batch_size").type == pa.int64(), "config.batch_size is int64")
    check(schema.field("config.opt.name").type == pa.string(), "nested config is flattened")
    check(schema.field("summary.best").type == pa.float64(), "summary.best")
    check(schema.field("tags").type == pa.list_(pa.string()), "tags")
    check(pa.types.is_timestamp(schema.field("created_at").type), "created_at")
    a = by_id[alpha]
    check(a["config.lr"] == 0.02 and a["config.batch_size"] == 32, f"alpha config {a}")
    check(json.loads(a["config.opt.betas"]) == [0.9, 0.999], f"betas {a['config.opt.betas']}")
    check(math.isnan(a["summary.best"]) and a["summary.loss"] == 0.001, "summary NaN preserved")
    check(a["summary.nested.x"] == 1, "summary nested")
    check(a["state"] == "finished" and a["tags"] == ["t1", "t2"], f"state/tags {a['state']} {a['tags']}")
    check(a["history_rows"] == 3000, f"history_rows {a['history_rows']}")
    check(json.loads(a["config_json"])["opt"]["name"] == "adam", "config_json")
    check(by_id[beta]["config.lr"] == 0.1 and by_id[beta]["summary.best"] is None, "beta")

    files = pq.read_table(os.path.join(root, "files.parquet")).to_pylist()
    check(any(f["run_id"] == alpha and f["name"] == "media/x.png" and f["size_bytes"] == 5 for f in files), f"files {files}")

    history_dir = os.path.join(root, "history")
    check(sorted(os.listdir(history_dir)) == sorted([f"{alpha}.parquet", f"{beta}.parquet"]), f"history files {os.listdir(history_dir)}")
    schemas = [pq.read_schema(os.path.join(history_dir, f)) for f in os.listdir(history_dir)]
    check(all(s.equals(schemas[0]) for s in schemas), "every history file has the same schema")
    table = ds.dataset(history_dir, format="parquet").to_table()
    check(table.num_rows == 3500, f"{table.num_rows} history rows")
    s = table.schema
    check(s.field("_step").type == pa.int64() and s.field("epoch").type == pa.int64(), "ints stay int64")
    check(s.field("loss").type == pa.float64() and s.field("special").type == pa.float64(), "floats")
    check(s.field("nested.b.c").type == pa.float64() and s.field("nested.a").type == pa.int64(), "flattened nested")
    check(s.field("tag").type == pa.string(), "strings")
    check(s.field("img").type == pa.string() and s.field("img").metadata == {b"wandbfs.encoding": b"json"}, f"img {s.field('img')}")
    rows = table.to_pylist()
    alpha_rows = sorted((r for r in rows if r["run_id"] == alpha), key=lambda r: r["_step"])
    check([r["_step"] for r in alpha_rows] == list(range(3000)), "alpha steps")
    for r in alpha_rows:
        step = r["_step"]
        want = expected_special(step)
        got = r["special"]
        check(math.isnan(got) if math.isnan(want) else got == want, f"special at {step}: {got} != {want}")
        check(r["epoch"] == step // 100 and isinstance(r["epoch"], int), f"epoch at {step}")
        check(r["loss"] == 1.0 / (step + 1), f"loss at {step}")
        check(r["nested.a"] == step and r["nested.b.c"] == step * 0.25, f"nested at {step}")
        check(r["only_beta"] is None, "alpha has no only_beta")
        if step == 5:
            check(json.loads(r["img"]) == {"_type": "image-file", "path": "media/x.png", "width": 8}, f"img {r['img']}")
        else:
            check(r["img"] is None, f"img at {step}")
    beta_rows = [r for r in rows if r["run_id"] == beta]
    check(len(beta_rows) == 500 and all(r["only_beta"] == "b" and r["special"] is None for r in beta_rows), "beta rows")
    nan_rows = sum(1 for r in alpha_rows if math.isnan(r["special"]))
    print(f"parquet: {table.num_rows} history rows, {nan_rows} NaN cells, {len(runs)} runs")


def check_jsonl(root: str, alpha: str, beta: str) -> None:
    runs = [json.loads(line) for line in open(os.path.join(root, "runs.jsonl"))]
    by_id = {r["run_id"]: r for r in runs}
    check(len(runs) == 3, f"{len(runs)} runs")
    a = by_id[alpha]
    check(a["config"] == {"lr": 0.02, "batch_size": 32, "opt": {"name": "adam", "betas": [0.9, 0.999]}}, f"config {a['config']}")
    check(math.isnan(a["summary"]["best"]), "summary NaN in JSON Lines")
    rows = [json.loads(line) for line in open(os.path.join(root, "history", f"{alpha}.jsonl"))]
    check(len(rows) == 3000 and math.isinf(rows[19]["special"]) and math.isnan(rows[7]["special"]), "jsonl history")
    check(isinstance(rows[3]["epoch"], int) and rows[3]["nested"]["b"]["c"] == 0.75, "jsonl shapes")
    print(f"jsonl: {len(rows)} alpha rows")


def main() -> None:
    parquet_dir, jsonl_dir, alpha, beta = sys.argv[1:5]
    check_parquet(parquet_dir, alpha, beta)
    check_jsonl(jsonl_dir, alpha, beta)


if __name__ == "__main__":
    main()
