"""With a wrong API key, wandb.Api() must raise (cleanly, without hanging)."""

from __future__ import annotations

import os
import sys

import wandb

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402


def main() -> None:
    try:
        api = wandb.Api(timeout=15)
        api.runs(f"{os.environ.get('SCENARIO_ENTITY', 'emulator')}/anything")
    except Exception as e:  # noqa: BLE001 - any SDK error type is a clean failure
        print(f"wandb.Api() raised {type(e).__name__}: {e}")
        return
    common.fail("wandb.Api() accepted a wrong API key")


if __name__ == "__main__":
    main()
