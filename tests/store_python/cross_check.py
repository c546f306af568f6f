"""Cross-checks WandbStore's synthetic files against the real wandb SDK (0.31.0).

Usage: cross_check.py ENTITY/PROJECT/RUN DIR
  DIR holds history.jsonl, system.jsonl, summary.json, config.json, metadata.json as the store
  served them. Env: WANDB_BASE_URL, WANDB_API_KEY (the emulator).

Checks, with exact types (an int is not a float, NaN equals only NaN):
  - history.jsonl rows == run.history(samples=<all>, pandas=False), which json.loads W&B's row
    text in Python, so every type is W&B's own;
  - history.jsonl rows == run.scan_history(), step for step, every row — except that a whole
    float of ours may be an int there: scan_history goes through wandb-core (Go), which spells
    whole floats without a fraction (`0.0` → `0`), so that path cannot tell them apart;
  - config.json == run.config;  summary.json == run.summary;
  - system.jsonl == run.history(stream="system", pandas=False) (unsampled: few rows);
  - metadata.json's fields == the SDK's run attributes.
Prints one line "OK <rows> history rows" on success; exits 1 with the first difference.
"""

from __future__ import annotations

import json
import math
import os
import sys

import wandb


def fail(message: str) -> None:
    print(f"CROSS-CHECK FAILED: {message}", file=sys.stderr, flush=True)
    sys.exit(1)


NORMALISED = 0


def same(a, b, whole_floats_as_ints: bool = False) -> bool:
    """Strict deep equality: equal types (bool, int, float, str, None, list, dict), NaN == NaN.
    With `whole_floats_as_ints`, a whole float `a` may match an equal int `b` (never reverse)."""
    global NORMALISED
    if (
        whole_floats_as_ints
        and type(a) is float
        and type(b) is int
        and a.is_integer()
        and int(a) == b
    ):
        NORMALISED += 1
        return True
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or a == b
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k], whole_floats_as_ints) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(
            same(x, y, whole_floats_as_ints) for x, y in zip(a, b)
        )
    return a == b


def diff(a, b, where: str = "") -> str:
    if type(a) is not type(b):
        return f"{where}: {a!r} ({type(a).__name__}) != {b!r} ({type(b).__name__})"
    if isinstance(a, dict):
        for k in sorted(set(a) | set(b)):
            if k not in a or k not in b:
                return f"{where}.{k}: only in {'store' if k in a else 'sdk'}"
            if not same(a[k], b[k]):
                return diff(a[k], b[k], f"{where}.{k}")
    if isinstance(a, list):
        if len(a) != len(b):
            return f"{where}: lengths {len(a)} != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            if not same(x, y):
                return diff(x, y, f"{where}[{i}]")
    return f"{where}: {a!r} != {b!r}"


def check(label: str, store_value, sdk_value, whole_floats_as_ints: bool = False) -> None:
    if not same(store_value, sdk_value, whole_floats_as_ints):
        fail(f"{label}: {diff(store_value, sdk_value)}")


def read_jsonl(path: str) -> list:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def main() -> None:
    run_path, folder = sys.argv[1], sys.argv[2]
    api = wandb.Api(timeout=60)
    run = api.run(run_path)

    history = read_jsonl(os.path.join(folder, "history.jsonl"))
    full = run.history(samples=max(len(history), 1), pandas=False)
    check("history.jsonl vs run.history(samples=all)", history, list(full))
    scanned = list(run.scan_history())
    if len(history) != len(scanned):
        fail(f"history.jsonl has {len(history)} rows, scan_history() {len(scanned)}")
    for i, (ours, theirs) in enumerate(zip(history, scanned)):
        if ours.get("_step") != theirs.get("_step"):
            fail(f"row {i}: _step {ours.get('_step')} != {theirs.get('_step')}")
        check(
            f"history row {i} (_step {ours.get('_step')}) vs scan_history()",
            ours,
            theirs,
            whole_floats_as_ints=True,
        )

    with open(os.path.join(folder, "config.json"), encoding="utf-8") as f:
        check("config.json", json.load(f), dict(run.config))
    with open(os.path.join(folder, "summary.json"), encoding="utf-8") as f:
        check("summary.json", json.load(f), run.summary._json_dict)

    system = read_jsonl(os.path.join(folder, "system.jsonl"))
    sdk_system = run.history(stream="system", pandas=False, samples=100_000)
    check("system.jsonl", system, list(sdk_system))

    with open(os.path.join(folder, "metadata.json"), encoding="utf-8") as f:
        meta = json.load(f)
    for field, value in [
        ("id", run.id),
        ("display_name", run.name),
        ("state", run.state),
        ("tags", list(run.tags)),
        ("group", run.group),
        ("job_type", run.job_type),
        ("notes", run.notes),
        ("storage_id", run.storage_id),
        ("last_step", run.lastHistoryStep),
    ]:
        check(f"metadata.json {field}", meta[field], value)
    check("metadata.json system_metrics", meta["system_metrics"], run.system_metrics)
    print(
        f"OK {len(history)} history rows, {len(system)} system rows; "
        f"{NORMALISED} whole floats that scan_history() returned as ints",
        flush=True,
    )


if __name__ == "__main__":
    main()
