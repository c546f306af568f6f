"""Shared helpers for the real-SDK scenarios (deterministic data and NaN-aware comparison).

The writer and the reader run in separate processes; both derive the logged values from the
functions here, so the reader can assert every logged row without any side channel but the
small manifest the writer leaves (run ids).
"""

from __future__ import annotations

import json
import math
import os
import sys

MAIN_STEPS = 2000
RESUMED_STEPS = 100
IMAGE_STEP = 1000
SAVED_FILE = "sub/dir/data.bin"
UPLOADED_FILE = "later/notes.txt"
UPLOADED_TEXT = "uploaded after the run finished — ünïcode\n"
CONSOLE_LINE = "hello from the main run"
AUX_RUNS = [
    # name suffix, lr, tags, exit code
    ("aux-0", 0.1, ["aux", "fast"], 0),
    ("aux-1", 0.01, ["aux"], 0),
    ("aux-2", 0.001, ["aux", "slow"], 0),
    ("aux-3", 0.0001, ["aux", "slow"], 1),
    ("aux-4", 0.05, ["aux", "fast"], 0),
]
ARTIFACT_NAME = "main-dataset"
ARTIFACT_ALIAS = "first-cut"


def artifact_files() -> dict[str, bytes]:
    """The two files of the artifact the main run logs (one in a subfolder)."""
    return {
        "labels.csv": ("id,label\n" + "".join(f"{i},{i % 3}\n" for i in range(50))).encode(),
        "images/sample.bin": bytes((i * 31 + 7) % 256 for i in range(5_000)),
    }


MAIN_CONFIG = {
    "lr": 0.02,
    "batch_size": 32,
    "nested": {"depth": 3, "opt": {"name": "adam", "betas": [0.9, 0.999]}},
    "unicode_ключ": "значение",
}


def env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        fail(f"environment variable {name} is not set")
    return value


def fail(message: str) -> None:
    print(f"SCENARIO FAILED: {message}", file=sys.stderr, flush=True)
    sys.exit(1)


def check(condition: bool, message: str) -> None:
    if not condition:
        fail(message)


def logged_row(step: int) -> dict:
    """The metrics the main run logs at `step` (without media)."""
    return {
        "loss": 1.0 / (step + 1),
        "acc": step / MAIN_STEPS,
        "epoch": step // 100,
        "count": step * 3,
        "nan_metric": float("nan") if step % 97 == 0 else step * 0.5,
        "inf_metric": float("inf") if step % 89 == 0 else (float("-inf") if step % 89 == 1 else 1.5),
        "nested": {"a": step, "b": {"c": step * 0.25}},
    }


def resumed_row(step: int) -> dict:
    """The metrics logged by the resumed main run."""
    return {"loss": 1.0 / (step + 1), "resumed": True, "epoch": step // 100}


def saved_file_bytes() -> bytes:
    """Deterministic bytes of the file saved with wandb.save (not valid UTF-8 on purpose)."""
    return bytes((i * 7 + 3) % 256 for i in range(70_000))


def same(got, expected) -> bool:
    """Deep equality of a value read back with the value logged: NaN equals NaN, a logged int
    must come back as an int, a logged float may come back as an int when it is whole (the SDK
    serialises 1.0 as `1`), booleans are not numbers."""
    if isinstance(got, bool) or isinstance(expected, bool):
        return type(got) is type(expected) and got == expected
    if isinstance(expected, float) and isinstance(got, (int, float)):
        if math.isnan(expected):
            return isinstance(got, float) and math.isnan(got)
        return float(got) == expected
    if isinstance(expected, int):
        return type(got) is int and got == expected
    if isinstance(expected, dict) and isinstance(got, dict):
        return got.keys() == expected.keys() and all(same(got[k], expected[k]) for k in expected)
    if isinstance(expected, (list, tuple)) and isinstance(got, (list, tuple)):
        return len(got) == len(expected) and all(same(x, y) for x, y in zip(got, expected))
    return type(got) is type(expected) and got == expected


def load_manifest(path: str) -> dict:
    with open(path) as f:
        return json.load(f)


def save_manifest(path: str, manifest: dict) -> None:
    with open(path, "w") as f:
        json.dump(manifest, f, indent=1)
