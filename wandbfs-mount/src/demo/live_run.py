"""The demo's live run: a real `wandb` SDK run that keeps logging until it is stopped.

Usage: live_run.py PROJECT   (env: WANDB_BASE_URL, WANDB_API_KEY, WANDB_ENTITY)

Logs a config, one image (stored as a run file under media/images/), then a training-like
curve every 0.2 s, with the SDK's file stream set to send every second (its default is 15 s),
so `tail -f` of the run's history.jsonl moves while you watch. Prints `ready <run_id>` once
the first rows are logged. Stopped by SIGTERM (the demo sends it to this process group).
"""

import math
import random
import sys
import time

import numpy as np
import wandb


def main() -> None:
    project = sys.argv[1]
    run = wandb.init(
        project=project,
        name="live-training",
        job_type="train",
        tags=["demo", "live"],
        config={"optimizer": {"name": "adamw", "lr": 3e-4}, "batch_size": 128, "epochs": 1000},
        settings=wandb.Settings(x_file_stream_transmit_interval=1, console="off", silent=True),
    )
    rng = np.random.default_rng(7)
    pixels = (rng.random((32, 32, 3)) * 255).astype("uint8")
    run.log({"samples": wandb.Image(pixels, caption="a batch at step 0")}, step=0)
    step = 1
    while True:
        loss = 2.5 * math.exp(-step / 400) + 0.05 + random.random() * 0.02
        run.log(
            {"loss": loss, "acc": 1 - loss / 3, "lr": 3e-4 * 0.999**step, "epoch": step // 100},
            step=step,
        )
        if step == 20:
            print("ready", run.id, flush=True)
        step += 1
        time.sleep(0.2)


if __name__ == "__main__":
    main()
