"""Logs (or resumes) the run whose history the exports scenario reads back from parquet.

Usage: exports_write.py MANIFEST_PATH write|resume
(env: SCENARIO_PROJECT, WANDB_BASE_URL, WANDB_API_KEY)
"""

from __future__ import annotations

import os
import sys

import numpy as np
import wandb

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

FIRST_STEPS = 300
RESUMED_STEPS = 50
IMAGE_STEP = 150
HISTOGRAM_STEP = 200


def row(step: int) -> dict:
    """The metrics logged at `step` (media excluded)."""
    return {
        "loss": 1.0 / (step + 1),
        "acc": step / FIRST_STEPS,
        "epoch": step // 100,
        "nan_metric": float("nan") if step % 97 == 0 else step * 0.5,
        "inf_metric": float("inf") if step % 89 == 0 else (float("-inf") if step % 89 == 1 else 1.5),
        "nested": {"a": step, "b": {"c": step * 0.25}},
        "label": f"s{step % 3}",
    }


def log(run, steps: range) -> None:
    for step in steps:
        metrics = row(step)
        if step == IMAGE_STEP:
            pixels = (np.arange(8 * 8 * 3) % 256).astype(np.uint8).reshape(8, 8, 3)
            metrics["img"] = wandb.Image(pixels)
        if step == HISTOGRAM_STEP:
            metrics["hist"] = wandb.Histogram([1, 2, 2, 3, 3, 3])
        run.log(metrics, step=step)


def main() -> None:
    manifest_path, mode = sys.argv[1], sys.argv[2]
    project = common.env("SCENARIO_PROJECT")
    if mode == "write":
        run = wandb.init(project=project, name="exported")
        log(run, range(FIRST_STEPS))
        common.save_manifest(manifest_path, {"entity": run.entity, "project": project, "id": run.id})
        run.finish()
    else:
        manifest = common.load_manifest(manifest_path)
        run = wandb.init(project=project, id=manifest["id"], resume="must")
        log(run, range(FIRST_STEPS, FIRST_STEPS + RESUMED_STEPS))
        run.finish()
    print(f"{mode}: done")


if __name__ == "__main__":
    main()
