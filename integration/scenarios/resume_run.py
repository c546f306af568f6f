"""Resumes the main run (resume="allow") and logs more steps.

Usage: resume_run.py MANIFEST_PATH
"""

from __future__ import annotations

import os
import sys

import wandb

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402


def main() -> None:
    manifest = common.load_manifest(sys.argv[1])
    run = wandb.init(project=manifest["project"], id=manifest["main"], resume="allow")
    common.check(run.resumed, "wandb.init(resume='allow') did not resume the existing run")
    common.check(
        run.starting_step == common.MAIN_STEPS,
        f"resumed run starts at step {run.starting_step}, expected {common.MAIN_STEPS}",
    )
    for step in range(common.MAIN_STEPS, common.MAIN_STEPS + common.RESUMED_STEPS):
        run.log(common.resumed_row(step))
    run.finish()
    print(f"resumed {manifest['main']} with {common.RESUMED_STEPS} steps")


if __name__ == "__main__":
    main()
