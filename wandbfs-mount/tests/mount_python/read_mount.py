"""Reads the mount with pandas, polars and DuckDB and compares with the SDK's own reading of
the same runs (scan_history(), run.summary, run.config). Prints one line per check.

Usage: read_mount.py MOUNTED_PROJECT_DIR MANIFEST_PATH   (env: WANDB_BASE_URL, WANDB_API_KEY,
PROJECT)
"""

from __future__ import annotations

import json
import math
import os
import sys

import duckdb
import pandas as pd
import polars as pl
import wandb

project_dir, manifest_path = sys.argv[1], sys.argv[2]
manifest = json.load(open(manifest_path))
api = wandb.Api(timeout=60)
entity, project = manifest["entity"], os.environ["PROJECT"]


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


def check(name: str, ok: bool, detail: str = "") -> None:
    print(("ok " if ok else "FAIL ") + name + ("" if ok else f": {detail}"), flush=True)
    if not ok:
        sys.exit(1)


def scan(run_id: str) -> list[dict]:
    return list(api.run(f"{entity}/{project}/{run_id}").scan_history())


for key in ["awkward", "failed", "clean"]:
    run_id = manifest[key]
    path = os.path.join(project_dir, run_id, "history.jsonl")
    rows = scan(run_id)
    steps = [r["_step"] for r in rows]

    # pandas reads W&B's dialect (bare NaN / Infinity).
    # precise_float: pandas' default float parser rounds the last digits (its choice, not the file's).
    frame = pd.read_json(path, lines=True, precise_float=True)
    check(f"{key}: pandas rows = scan_history rows", len(frame) == len(rows), f"{len(frame)} vs {len(rows)}")
    check(f"{key}: pandas steps", list(frame["_step"]) == steps)
    for column in ["loss", "special"]:
        if column not in frame:
            continue
        # A row without the key is NaN in a pandas column.
        want = [r.get(column, float("nan")) for r in rows]
        got = frame[column].tolist()
        check(f"{key}: pandas {column} values", same(got, want), f"{got[:20]} vs {want[:20]}")

    # DuckDB reads it too; every row, every step.
    con = duckdb.connect()
    got = con.execute(
        f"select _step, loss from read_json('{path}', format='newline_delimited') order by _step"
    ).fetchall()
    check(f"{key}: duckdb rows", [g[0] for g in got] == steps, f"{len(got)} rows")
    check(f"{key}: duckdb loss", same([g[1] for g in got], [r.get("loss") for r in rows]))

    # polars: reads strict NDJSON only; W&B's NaN tokens are the tool's limit, not ours.
    try:
        polars_frame = pl.read_ndjson(path)
        polars_error = None
    except Exception as e:  # noqa: BLE001 - the type is polars' own
        polars_frame, polars_error = None, e
    has_nan_tokens = any(
        isinstance(v, float) and (math.isnan(v) or math.isinf(v)) for r in rows for v in r.values()
    )
    if has_nan_tokens:
        check(
            f"{key}: polars refuses NaN tokens (its own error)",
            polars_error is not None and type(polars_error).__module__.startswith("polars"),
            repr(polars_error),
        )
    else:
        check(f"{key}: polars reads it", polars_error is None, repr(polars_error))
        check(f"{key}: polars rows", polars_frame["_step"].to_list() == steps)
        check(f"{key}: polars loss", same(polars_frame["loss"].to_list(), [r.get("loss") for r in rows]))

    # summary.json and config.json: Python's json reads W&B's dialect.
    run = api.run(f"{entity}/{project}/{run_id}")
    summary = json.load(open(os.path.join(project_dir, run_id, "summary.json")))
    want = {k: v for k, v in run.summary._json_dict.items()}
    check(f"{key}: summary.json = run.summary", same(summary, want), f"{summary} vs {want}")
    config = json.load(open(os.path.join(project_dir, run_id, "config.json")))
    check(f"{key}: config.json = run.config", same(config, dict(run.config)), f"{config} vs {run.config}")
    metadata = json.load(open(os.path.join(project_dir, run_id, "metadata.json")))
    check(f"{key}: metadata state", metadata["state"] == run.state, f"{metadata['state']} vs {run.state}")

    # pandas reads summary.json as a series too.
    series = pd.read_json(os.path.join(project_dir, run_id, "summary.json"), typ="series")
    check(f"{key}: pandas summary", len(series) == len(summary))

# The saved file: bytes as the SDK uploaded them.
run_id = manifest["awkward"]
with open(os.path.join(project_dir, run_id, "checkpoints", "sub", "weights.bin"), "rb") as f:
    data = f.read()
check("saved file bytes", data == bytes((i * 7 + 3) % 256 for i in range(300_000)))
print("all ok")
