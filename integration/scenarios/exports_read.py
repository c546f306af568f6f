"""Reads back, with wandb.Api() in a fresh process, the exports scenario's run — whose first
rows are exported to parquet and whose resumed tail is live — and asserts scan_history().

The SDK's parquet path yields exported rows in the export's own shape: one-level dotted keys
(`nested.a`, `nested.b`) and `None` for cells a row did not log. The check undoes exactly that
(drop `None`, split dotted keys once) and then compares every value with what was logged.

Usage: exports_read.py MANIFEST_PATH EXPORTED_ROWS   (env: WANDB_BASE_URL, WANDB_API_KEY)
"""

from __future__ import annotations

import collections
import os
import sys

import wandb

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
import exports_write  # noqa: E402
from common import check, same  # noqa: E402

TOTAL = exports_write.FIRST_STEPS + exports_write.RESUMED_STEPS


def as_logged(row: dict) -> dict:
    """The SDK row in the shape it was logged: nulls dropped, dotted keys nested one level."""
    out: dict = {}
    for key, value in row.items():
        if value is None:
            continue
        if "." in key:
            parent, child = key.split(".", 1)
            out.setdefault(parent, {})[child] = value
        else:
            out[key] = value
    return out


def check_row(row: dict) -> None:
    step = row["_step"]
    got = as_logged(row)
    expected = exports_write.row(step)
    for key, value in expected.items():
        check(key in got, f"step {step}: {key} missing from {sorted(got)}")
        check(same(got[key], value), f"step {step}: {key} = {got[key]!r}, logged {value!r}")
    media = {k for k in got if k in ("img", "hist")}
    wanted = {exports_write.IMAGE_STEP: {"img"}, exports_write.HISTOGRAM_STEP: {"hist"}}.get(step, set())
    check(media == wanted, f"step {step}: media {media}, logged {wanted}")
    if "img" in media:
        check(got["img"].get("_type") == "image-file", f"image at {step}: {got['img']}")
    if "hist" in media:
        check(got["hist"].get("_type") == "histogram", f"histogram at {step}: {got['hist']}")
    for key in ("_runtime", "_timestamp"):
        check(isinstance(got.get(key), (int, float)), f"step {step}: {key} = {got.get(key)!r}")


def main() -> None:
    manifest = common.load_manifest(sys.argv[1])
    exported_rows = int(sys.argv[2])
    api = wandb.Api()
    run = api.run(f"{manifest['entity']}/{manifest['project']}/{manifest['id']}")
    check(run.lastHistoryStep == TOTAL - 1, f"lastHistoryStep {run.lastHistoryStep}")

    # Pages aligned with the export boundary: every row exactly once, in order.
    rows = list(run.scan_history(page_size=100))
    steps = [r["_step"] for r in rows]
    check(steps == list(range(TOTAL)), f"aligned scan steps: {len(steps)} rows, first {steps[:3]}, last {steps[-3:]}")
    for r in rows:
        check_row(r)
    exported_shape = sum(1 for r in rows[:exported_rows] if "nested.a" in r)
    live_shape = sum(1 for r in rows[exported_rows:] if "nested" in r and isinstance(r["nested"], dict))
    check(exported_shape == exported_rows, f"{exported_shape} rows came from parquet, expected {exported_rows}")
    check(live_shape == TOTAL - exported_rows, f"{live_shape} rows came live")

    # The default page straddles the boundary; wandb-core then adds the live page's rows to the
    # parquet rows of the same window. Every step must still be there.
    default = list(run.scan_history())
    counts = collections.Counter(r["_step"] for r in default)
    check(set(counts) == set(range(TOTAL)), f"default scan misses steps: {sorted(set(range(TOTAL)) - set(counts))[:5]}")
    for r in default:
        check_row(r)
    duplicated = sum(c - 1 for c in counts.values())
    print(f"read {len(rows)} rows ({exported_rows} exported); default scan repeated {duplicated} rows")


if __name__ == "__main__":
    main()
