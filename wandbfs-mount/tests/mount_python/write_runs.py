"""Writes runs with the real SDK for the mount tests: awkward values, a step gap, an image, a
histogram, a saved file in a subfolder, a failed run, and a run without NaN/Infinity.

Usage: write_runs.py MANIFEST_PATH   (env: WANDB_BASE_URL, WANDB_API_KEY, PROJECT)
"""

from __future__ import annotations

import json
import math
import os
import sys

import numpy as np
import wandb

project = os.environ["PROJECT"]
workdir = os.getcwd()


def awkward_row(step: int) -> dict:
    row = {
        "loss": 1.0 / (step + 1),
        "epoch": step // 10,
        "métrique/α": math.sin(step),
        "opt": {"lr": 0.1 * 0.99**step, "betas": [0.9, 0.999]},
    }
    if step % 17 == 3:
        row["special"] = float("nan")
    elif step % 17 == 5:
        row["special"] = float("inf")
    elif step % 17 == 7:
        row["special"] = float("-inf")
    else:
        row["special"] = step * 0.5
    return row


manifest = {}

run = wandb.init(project=project, name="awkward", config={"lr": 0.1, "model": {"layers": 4, "名前": "ü"}}, tags=["mount"])
for step in range(300):
    row = awkward_row(step)
    if step == 150:
        pixels = (np.arange(8 * 8 * 3) % 256).astype(np.uint8).reshape(8, 8, 3)
        row["img"] = wandb.Image(pixels)
    if step == 120:
        row["hist"] = wandb.Histogram(np_histogram=([1, 4, 2], [0.0, 0.5, 1.0, 1.5]))
    # A gap: steps 200..259 are never logged.
    logged_step = step if step < 200 else step + 60
    run.log(row, step=logged_step)
run.summary["best"] = float("nan")
run.summary["nested"] = {"a": 1, "b": [1.5, float("inf")]}
saved = os.path.join(workdir, "checkpoints", "sub", "weights.bin")
os.makedirs(os.path.dirname(saved), exist_ok=True)
with open(saved, "wb") as f:
    f.write(bytes((i * 7 + 3) % 256 for i in range(300_000)))
wandb.save(saved, base_path=workdir, policy="now")
manifest["awkward"] = run.id
manifest["entity"] = run.entity
run.finish()

run = wandb.init(project=project, name="failed", config={"lr": 0.5}, reinit="finish_previous")
for step in range(40):
    run.log({"loss": 2.0 - step * 0.01})
manifest["failed"] = run.id
run.finish(exit_code=1)

run = wandb.init(project=project, name="clean", config={"lr": 0.01}, reinit="finish_previous")
for step in range(500):
    run.log({"loss": 1.0 / (step + 2), "acc": step / 500.0, "epoch": step // 50})
manifest["clean"] = run.id
run.finish()

with open(sys.argv[1], "w") as f:
    json.dump(manifest, f)
