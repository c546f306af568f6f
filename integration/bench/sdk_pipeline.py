"""The baseline of the sync benchmark: the pipeline W&B users write today to get full history
into Postgres — `wandb.Api()`, `run.scan_history()` for each run, rows COPY'd into a JSONB table
with psycopg, one transaction per run.

Usage: sdk_pipeline.py ENTITY/PROJECT MAX_RUNS DSN [--no-db]

Prints one JSON object: rows, runs, seconds (wall time from `wandb.Api()` to the last commit),
listed_seconds (the part until the run listing was done).
With --no-db it only iterates `scan_history()` (the SDK's read rate alone).

Postgres `jsonb` rejects NaN and ±Infinity, which W&B histories contain, so rows are sanitised
the way any working pipeline must: non-finite floats become the strings "NaN", "Infinity",
"-Infinity" (the same spelling the wandbfs mirror uses in its SQL form).
"""

import json
import math
import sys
import time

import wandb


def sanitize(value):
    if isinstance(value, float) and not math.isfinite(value):
        if math.isnan(value):
            return "NaN"
        return "Infinity" if value > 0 else "-Infinity"
    if isinstance(value, dict):
        return {k: sanitize(v) for k, v in value.items()}
    if isinstance(value, list):
        return [sanitize(v) for v in value]
    return value


def main():
    path, max_runs, dsn = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    no_db = "--no-db" in sys.argv[4:]
    started = time.time()
    # 300 s: under a request budget a 429's Retry-After can approach a minute, and the SDK
    # gives up after `timeout`.
    api = wandb.Api(timeout=300)
    runs = list(api.runs(path, order="+created_at", per_page=100))[:max_runs]
    listed = time.time() - started
    rows = 0
    if no_db:
        for run in runs:
            for _ in run.scan_history():
                rows += 1
    else:
        import psycopg

        with psycopg.connect(dsn) as conn:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS public.sdk_history "
                "(run_id text, step bigint, row jsonb, PRIMARY KEY (run_id, step))"
            )
            conn.commit()
            for run in runs:
                with conn.cursor() as cur:
                    with cur.copy("COPY public.sdk_history (run_id, step, row) FROM STDIN") as copy:
                        for row in run.scan_history():
                            copy.write_row((run.id, row["_step"], json.dumps(sanitize(row))))
                            rows += 1
                conn.commit()
    print(json.dumps({"rows": rows, "runs": len(runs), "seconds": time.time() - started,
                      "listed_seconds": listed}))


if __name__ == "__main__":
    main()
