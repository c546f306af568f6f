"""The Python side of `integration/bench/compare`: each task as a user writes it, timed inside
the interpreter after its imports (interpreter start-up and `import wandb`/`pandas` are left out,
which favours the baselines by ~1-2 s), client construction (`wandb.Api()`, which starts the
SDK's `wandb-core` service, or `WandbFileSystem()`) included.

Usage: baselines.py TASK ARGS...   (credentials from WANDB_BASE_URL / WANDB_API_KEY)

Tasks (each prints one JSON object with at least `seconds`):
  ls-sdk ENTITY/PROJECT              len(list(wandb.Api().runs(path)))
  ls-fsspec ENTITY/PROJECT           len(WandbFileSystem().ls(path))      (wandbfsspec 0.2.0)
  read-fsspec E/P/RUN/FILE           WandbFileSystem().cat_file(path)      (the whole file, in memory)
  read-sdk E/P/RUN/FILE DIR          api.run(E/P/RUN).file(FILE).download(root=DIR, replace=True)
  pandas-sdk ENTITY/PROJECT          pd.concat(pd.DataFrame(run.scan_history()) for run in api.runs(path))
  pandas-files GLOB                  pd.concat(pd.read_parquet(f) for f in glob.glob(GLOB))
  check-sdk-cheap ENTITY/PROJECT     one listing with full run data (lazy=False, per_page=1000):
                                     historyLineCount + summary_metrics of every run
  check-sdk-naive ENTITY/PROJECT     the default listing, then run.lastHistoryStep and
                                     run.summary_metrics of every run (two requests per run)
"""

import glob
import json
import sys
import time


def out(**fields):
    print(json.dumps(fields))


def main():
    task, args = sys.argv[1], sys.argv[2:]
    if task == "pandas-files":
        import pandas as pd

        started = time.perf_counter()
        files = sorted(glob.glob(args[0]))
        df = pd.concat(pd.read_parquet(f) for f in files)
        out(seconds=time.perf_counter() - started, files=len(files), rows=len(df), columns=len(df.columns))
        return
    if task in ("ls-fsspec", "read-fsspec"):
        import logging

        from wandbfsspec.spec import WandbFileSystem

        logging.disable(logging.INFO)
        started = time.perf_counter()
        fs = WandbFileSystem()
        if task == "ls-fsspec":
            n = len(fs.ls(args[0]))
            out(seconds=time.perf_counter() - started, entries=n)
        else:
            data = fs.cat_file(args[0])
            out(seconds=time.perf_counter() - started, bytes=len(data))
        return

    import wandb

    if task == "pandas-sdk":
        import pandas as pd
    started = time.perf_counter()
    api = wandb.Api(timeout=300)  # see sdk_pipeline.py
    if task == "ls-sdk":
        n = len(list(api.runs(args[0])))
        out(seconds=time.perf_counter() - started, entries=n)
    elif task == "read-sdk":
        entity, project, run_id, name = args[0].split("/", 3)
        f = api.run(f"{entity}/{project}/{run_id}").file(name)
        f.download(root=args[1], replace=True)
        out(seconds=time.perf_counter() - started, bytes=f.size)
    elif task == "pandas-sdk":
        frames = [pd.DataFrame(run.scan_history()) for run in api.runs(args[0])]
        df = pd.concat(frames)
        out(seconds=time.perf_counter() - started, runs=len(frames), rows=len(df), columns=len(df.columns))
    elif task == "check-sdk-cheap":
        state = {
            run.id: (run.historyLineCount, run.summary_metrics)
            for run in api.runs(args[0], per_page=1000, lazy=False)
        }
        out(seconds=time.perf_counter() - started, runs=len(state))
    elif task == "check-sdk-naive":
        state = {run.id: (run.lastHistoryStep, run.summary_metrics) for run in api.runs(args[0])}
        out(seconds=time.perf_counter() - started, runs=len(state))
    else:
        sys.exit(f"unknown task {task!r}")


if __name__ == "__main__":
    main()
