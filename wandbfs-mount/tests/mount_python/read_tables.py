"""Reads the typed tables of a project directory — `runs.parquet`, `runs.jsonl`, each run's
`history.parquet` — with pandas, polars, pyarrow and DuckDB, and compares them with the SDK's
own reading of the same runs (`api.runs()`, `scan_history()`, `run.summary`, `run.config`).
Prints one line per check and "all ok" at the end.

Usage: read_tables.py PROJECT_DIR MANIFEST_PATH   (env: WANDB_BASE_URL, WANDB_API_KEY,
PROJECT). PROJECT_DIR is the mounted project, or a copy of it made through WandbStore.
"""

from __future__ import annotations

import glob
import json
import math
import os
import sys

import duckdb
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import wandb

project_dir, manifest_path = sys.argv[1], sys.argv[2]
manifest = json.load(open(manifest_path))
api = wandb.Api(timeout=60)
entity, project = manifest["entity"], os.environ["PROJECT"]
RUN_KEYS = ["awkward", "failed", "clean"]


def same(a, b) -> bool:
    """Equal, NaN equal to NaN, 0.0 equal to 0 (wandb-core turns whole floats into ints)."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return a == b
    return a == b


def identical(a, b) -> bool:
    """`same`, but a missing value (None) is never equal to NaN, and types must agree on
    missing-ness: the point of a typed table is that null and NaN are different things."""
    if a is None or b is None:
        return a is None and b is None
    return same(a, b)


def check(name: str, ok: bool, detail: str = "") -> None:
    print(("ok " if ok else "FAIL ") + name + ("" if ok else f": {str(detail)[:2000]}"), flush=True)
    if not ok:
        sys.exit(1)


def flatten(value: dict, prefix: str = "") -> dict:
    """W&B's nested history rows as the tables' dotted columns: objects without `_type` are
    walked, anything else (numbers, strings, lists, media objects) is a leaf."""
    out = {}
    for key, v in value.items():
        name = prefix + key
        if isinstance(v, dict) and v and "_type" not in v:
            out.update(flatten(v, name + "."))
        else:
            out[name] = v
    return out


def json_columns(path: str) -> set[str]:
    schema = pq.read_schema(path)
    return {
        f.name
        for f in schema
        if f.metadata and f.metadata.get(b"wandbfs.encoding") == b"json"
    }


def decode(value, is_json: bool):
    return json.loads(value) if is_json and value is not None else value


# ---------------------------------------------------------------------------------------------
# runs.parquet and runs.jsonl: one row per run, the SDK's values.

sdk_runs = {r.id: r for r in api.runs(f"{entity}/{project}")}
check("the project has the manifest's runs", all(manifest[k] in sdk_runs for k in RUN_KEYS), sdk_runs.keys())
runs_path = os.path.join(project_dir, "runs.parquet")

for reader in ["pandas", "polars"]:
    if reader == "pandas":
        frame = pd.read_parquet(runs_path)
        rows = frame.to_dict("records")
    else:
        rows = pl.read_parquet(runs_path).to_dicts()
    by_id = {r["run_id"]: r for r in rows}
    check(f"runs.parquet ({reader}): one row per run", sorted(by_id) == sorted(sdk_runs), sorted(by_id))
    for run_id, run in sdk_runs.items():
        row = by_id[run_id]
        check(f"runs.parquet ({reader}) {run.name}: state", row["state"] == run.state, f"{row['state']} vs {run.state}")
        check(f"runs.parquet ({reader}) {run.name}: name", row["display_name"] == run.name, row["display_name"])
        config = dict(run.config)
        check(
            f"runs.parquet ({reader}) {run.name}: config_json = run.config",
            same(json.loads(row["config_json"]), config),
            f"{row['config_json']} vs {config}",
        )
        summary = dict(run.summary._json_dict)
        check(
            f"runs.parquet ({reader}) {run.name}: summary_json = run.summary",
            same(json.loads(row["summary_json"]), summary),
            f"{row['summary_json']} vs {summary}",
        )
        # Typed columns, one per flattened key.
        for key, want in flatten(config).items():
            got = row.get(f"config.{key}")
            if isinstance(want, (list, dict)):
                got = json.loads(got)
            check(f"runs.parquet ({reader}) {run.name}: config.{key}", same(got, want), f"{got!r} vs {want!r}")
        for key, want in flatten(summary).items():
            if key.startswith("_"):
                continue
            got = row.get(f"summary.{key}")
            if isinstance(want, (list, dict)):
                got = json.loads(got)
            check(f"runs.parquet ({reader}) {run.name}: summary.{key}", same(got, want), f"{got!r} vs {want!r}")
        rows_sdk = list(run.scan_history())
        check(
            f"runs.parquet ({reader}) {run.name}: history_line_count",
            row["history_line_count"] == len(rows_sdk),
            f"{row['history_line_count']} vs {len(rows_sdk)}",
        )
        check(
            f"runs.parquet ({reader}) {run.name}: last_step",
            row["last_step"] == max(r["_step"] for r in rows_sdk),
            row["last_step"],
        )

# The nested config of the awkward run, as typed columns.
awkward_row = {r["run_id"]: r for r in pl.read_parquet(runs_path).to_dicts()}[manifest["awkward"]]
check("runs.parquet: config.model.layers is an integer", awkward_row["config.model.layers"] == 4, awkward_row["config.model.layers"])
check("runs.parquet: a unicode nested config key", awkward_row["config.model.名前"] == "ü", awkward_row.get("config.model.名前"))
check("runs.parquet: summary floats are floats", isinstance(awkward_row["summary.loss"], float), awkward_row["summary.loss"])
check("runs.parquet: summary ints are ints", isinstance(awkward_row["summary.epoch"], int), awkward_row["summary.epoch"])
check("runs.parquet: a failed run", {r.state for r in sdk_runs.values()} >= {"failed", "finished"})

# runs.jsonl: W&B's JSON dialect, which pandas and Python's json read.
with open(os.path.join(project_dir, "runs.jsonl")) as f:
    lines = [json.loads(line) for line in f]
check("runs.jsonl: one line per run", sorted(r["run_id"] for r in lines) == sorted(sdk_runs))
for line in lines:
    run = sdk_runs[line["run_id"]]
    check(f"runs.jsonl {run.name}: config", same(line["config"], dict(run.config)), line["config"])
    check(f"runs.jsonl {run.name}: state", line["state"] == run.state)

# ---------------------------------------------------------------------------------------------
# history.parquet: every row of scan_history(), typed; NaN/±Infinity native; missing is null.

total_rows = 0
for key in RUN_KEYS:
    run_id = manifest[key]
    path = os.path.join(project_dir, run_id, "history.parquet")
    scan = [flatten(r) for r in api.run(f"{entity}/{project}/{run_id}").scan_history()]
    total_rows += len(scan)
    steps = [r["_step"] for r in scan]
    encoded = json_columns(path)
    columns = [c for c in pq.read_schema(path).names if c != "run_id"]
    want_columns = sorted({k for r in scan for k in r})
    check(f"{key}: a column per key", sorted(columns) == want_columns, f"{sorted(columns)} vs {want_columns}")

    def want(column):
        return [r.get(column) for r in scan]

    # pyarrow (what pandas reads with): nulls are nulls, NaN is NaN.
    table = pq.read_table(path)
    check(f"{key}: pyarrow rows", table.num_rows == len(scan), f"{table.num_rows} vs {len(scan)}")
    check(f"{key}: run_id column", set(table.column("run_id").to_pylist()) == {run_id})
    for column in columns:
        got = [decode(v, column in encoded) for v in table.column(column).to_pylist()]
        check(f"{key}: pyarrow {column}", all(identical(g, w) for g, w in zip(got, want(column))), f"{got[:12]} vs {want(column)[:12]}")

    # polars: reads it without options (it cannot read W&B's NaN tokens in history.jsonl).
    frame = pl.read_parquet(path)
    check(f"{key}: polars steps", frame["_step"].to_list() == steps)
    for column in columns:
        got = [decode(v, column in encoded) for v in frame[column].to_list()]
        check(f"{key}: polars {column}", all(identical(g, w) for g, w in zip(got, want(column))), f"{got[:12]} vs {want(column)[:12]}")
    if "special" in frame.columns:
        special = frame["special"]
        check(f"{key}: polars NaN native", special.is_nan().sum() == sum(1 for v in want("special") if isinstance(v, float) and math.isnan(v)))
        check(f"{key}: polars +inf native", (special == float("inf")).sum() == want("special").count(float("inf")))
        check(f"{key}: polars -inf native", (special == float("-inf")).sum() == want("special").count(float("-inf")))
        check(f"{key}: polars nulls are not NaN", special.null_count() == want("special").count(None))

    # pandas: every row; with the pyarrow backend, missing values stay missing (pd.NA), NaN stays NaN.
    frame = pd.read_parquet(path, dtype_backend="pyarrow")
    check(f"{key}: pandas rows", len(frame) == len(scan))
    check(f"{key}: pandas steps", frame["_step"].tolist() == steps)
    for column in columns:
        got = [None if v is pd.NA else decode(v, column in encoded) for v in frame[column].tolist()]
        check(f"{key}: pandas {column}", all(identical(g, w) for g, w in zip(got, want(column))), f"{got[:12]} vs {want(column)[:12]}")
    plain = pd.read_parquet(path)
    check(f"{key}: pandas (numpy dtypes) loss", same(plain["loss"].tolist(), [float("nan") if v is None else v for v in want("loss")]))

    # DuckDB: NULL and NaN are different values.
    con = duckdb.connect()
    quoted = ", ".join('"' + c.replace('"', '""') + '"' for c in columns)
    got_rows = con.execute(f"select {quoted} from read_parquet('{path}') order by _step").fetchall()
    check(f"{key}: duckdb rows", len(got_rows) == len(scan))
    for i, column in enumerate(columns):
        got = [decode(r[i], column in encoded) for r in got_rows]
        check(f"{key}: duckdb {column}", all(identical(g, w) for g, w in zip(got, want(column))), f"{got[:12]} vs {want(column)[:12]}")

# Media and histograms are kept as their JSON text, marked as such.
awkward_path = os.path.join(project_dir, manifest["awkward"], "history.parquet")
encoded = json_columns(awkward_path)
check("media columns are JSON text, marked", {"img", "hist"} <= encoded, encoded)
hist = [json.loads(v) for v in pl.read_parquet(awkward_path)["hist"].to_list() if v is not None]
check("a histogram value", len(hist) == 1 and hist[0]["_type"] == "histogram", hist)

# ---------------------------------------------------------------------------------------------
# A glob over every run of the project: schemas are per run, so name the union.

pattern = os.path.join(project_dir, "*", "history.parquet")
files = sorted(glob.glob(pattern))
check("the glob finds every run", len(files) == len(RUN_KEYS), files)
con = duckdb.connect()
counts = dict(
    con.execute(
        f"select run_id, count(*) from read_parquet('{pattern}', union_by_name = true) group by run_id"
    ).fetchall()
)
want_counts = {manifest[k]: len(list(api.run(f"{entity}/{project}/{manifest[k]}").scan_history())) for k in RUN_KEYS}
check("duckdb glob: rows per run", counts == want_counts, f"{counts} vs {want_counts}")
loss = con.execute(f"select count(loss) from read_parquet('{pattern}', union_by_name = true)").fetchone()[0]
check("duckdb glob: loss over all runs", loss == total_rows, f"{loss} vs {total_rows}")

lazy = pl.concat([pl.scan_parquet(f) for f in files], how="diagonal_relaxed")
counts = dict(lazy.group_by("run_id").len().collect().iter_rows())
check("polars glob (diagonal): rows per run", counts == want_counts, f"{counts} vs {want_counts}")
one_column = pl.scan_parquet(pattern, missing_columns="insert", extra_columns="ignore").select(pl.col("loss").count()).collect().item()
check("polars scan_parquet(glob) of one column", one_column == total_rows, f"{one_column} vs {total_rows}")
schema = pa.unify_schemas([pq.read_schema(f) for f in files], promote_options="permissive")
dataset = pads.dataset(files, schema=schema).to_table(columns=["run_id", "loss", "special"])
check("pyarrow dataset over the union of schemas", dataset.num_rows == total_rows, dataset.num_rows)
print("all ok")
