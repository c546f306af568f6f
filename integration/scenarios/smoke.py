"""A minimal write-then-read round trip (used where a test needs authenticated SDK traffic)."""

from __future__ import annotations

import os
import sys

import wandb

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402


def main() -> None:
    run = wandb.init(project="smoke", config={"k": 1})
    run.log({"x": 1.5})
    path = f"{run.entity}/smoke/{run.id}"
    run.finish()
    api = wandb.Api(timeout=30)
    read = api.run(path)
    common.check(read.summary["x"] == 1.5 and read.config == {"k": 1}, f"smoke read back {dict(read.summary)}")
    print(f"smoke ok: {path}")


if __name__ == "__main__":
    main()
