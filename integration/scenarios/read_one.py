"""Reads one run written by smoke.py (after an emulator restart) and checks it and its files.

Usage: read_one.py ENTITY/PROJECT/RUN_ID
"""

from __future__ import annotations

import os
import sys
import tempfile

import wandb

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402


def main() -> None:
    api = wandb.Api(timeout=30)
    run = api.run(sys.argv[1])
    common.check(run.state == "finished", f"state {run.state}")
    common.check(run.summary["x"] == 1.5 and run.config == {"k": 1}, "summary/config survived")
    rows = list(run.scan_history())
    common.check(len(rows) == 1 and rows[0]["x"] == 1.5, f"history survived: {rows}")
    names = [f.name for f in run.files()]
    common.check("wandb-metadata.json" in names, f"files survived: {names}")
    root = tempfile.mkdtemp()
    run.file("wandb-metadata.json").download(root=root)
    common.check(os.path.getsize(os.path.join(root, "wandb-metadata.json")) > 0, "file bytes survived")
    print("restart ok")


if __name__ == "__main__":
    main()
