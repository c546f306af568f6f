"""`integration/bench/api_budget`: what a first sync and a re-sync cost against W&B's request
budget — wandbfs next to the SDK pipeline users write, both facing one `wandb-emulator` with
the W&B profile on (`--profile wandb`: 200 GraphQL requests a minute per key, 429 +
`Retry-After` + `RateLimit-*` beyond; 150 ms a request; 1.25 s per 1,000 history rows a reply
carries; downloads from signed URLs are object storage, outside the budget), then again with the
profile off (loopback, no limit) as a second column.

    integration/bench/api_budget            # full shapes (~25 min on 2 cores)
    integration/bench/api_budget --quick    # tiny shapes, a smoke test (~3 min)

Shapes (every run's complete history, events and file listing into a fresh mirror database):
  sweep  N runs × 5 steps, one file each (10,000 runs): the sweep of short runs
  history 100 runs × 10,000 rows × 20 metrics, finished, W&B parquet exports available
          (generated before measuring, as W&B makes them when a run ends)
  live   10 runs × 20,000 rows, all running (no exports: live runs are read through the API)
and the re-sync of the synced sweep with nothing changed (10 % of its runs are running) next to
the SDK's cheapest equivalent check (`api.runs(path, per_page=1000, lazy=False)`).

Both sides run with their user defaults: `wandbfs sync` as a user types it (the emulator is on
this machine, so wandbfs sets no client-side rate and is paced by the server's headers and
429s alone), the SDK pipeline as `integration/bench/sdk_pipeline.py` writes it (`wandb.Api()`,
`scan_history()` per run, psycopg COPY; its HTTP timeout raised to 300 s so that a 429's
`Retry-After` cannot turn into a client timeout). Both are timed as processes (start-up, client
construction and database connection included on both sides); requests are counted by the
emulator (`GET /_emulator/counters` before and after: every request is counted on arrival, so
the count is complete when the process has exited).

The SDK pipeline is run on the first K runs of a shape (it would take hours on the whole sweep
under the budget) and extrapolated: its start-up and run listing (it lists every run first) are
counted once as measured, its per-run requests and seconds × N; under the budget, at least one
60 s window per 200 requests beyond the first 200 — the budget bounds it from below whatever
the latency. wandbfs is always measured on the whole shape. Each measurement starts a fresh budget
window (the profile is re-posted), so neither side inherits the other's spent requests.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
import urllib.request
from base64 import b64encode

import compare
from compare import ENTITY, Bench, BenchError, log

WANDB_RATE_PER_MIN = 200

FULL = dict(sweep_runs=10_000, history_runs=100, history_steps=10_000, keys=20,
            live_runs=10, live_steps=20_000, sdk_sweep=60, sdk_history=2, sdk_live=1)
QUICK = dict(sweep_runs=300, history_runs=4, history_steps=6_000, keys=20,
             live_runs=2, live_steps=6_000, sdk_sweep=20, sdk_history=1, sdk_live=1)

PROFILE_ON = {"rate_limit": {"requests": WANDB_RATE_PER_MIN, "window": 60_000},
              "latency": 150, "row_cost": 1250, "max_rows": None}
PROFILE_OFF = {"rate_limit": None, "latency": 0, "row_cost": 0, "max_rows": None}


class BudgetBench(Bench):
    def __init__(self, args, shapes: dict):
        super().__init__(args, {})
        self.shapes = shapes

    def seeds(self) -> list[str]:
        s = self.shapes
        return [
            f"{ENTITY}/sweep:runs={s['sweep_runs']},steps=5,keys=5,files=1,bigfile=0",
            f"{ENTITY}/history:runs={s['history_runs']},steps={s['history_steps']},keys={s['keys']},"
            f"files=1,bigfile=0,state=finished",
            f"{ENTITY}/live:runs={s['live_runs']},steps={s['live_steps']},keys={s['keys']},files=1,"
            f"bigfile=0,state=running",
        ]

    def start_emulator(self) -> None:
        # Parquet exports of finished runs, ready at once (W&B exports them after a run ends).
        self.emulator_args = ["--export-delay", "0"]
        super().start_emulator()

    def _request(self, method: str, path: str, body: dict | None = None) -> dict:
        req = urllib.request.Request(f"{self.base_url}{path}", method=method,
                                     data=None if body is None else json.dumps(body).encode())
        token = b64encode(f"api:{self.api_key}".encode()).decode()
        req.add_header("Authorization", f"Basic {token}")
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read() or b"{}")

    def set_profile(self, profile: dict) -> None:
        self._request("POST", "/_emulator/profile", profile)

    def counters(self) -> dict:
        return self._request("GET", "/_emulator/counters")

    def graphql_since(self, before: dict) -> dict:
        after = self.counters()
        ops = {}
        for op, t in after["by_operation"].items():
            n = t["requests"] - before["by_operation"].get(op, {}).get("requests", 0)
            if n and op:
                ops[op] = n
        g0 = before["by_route"].get("graphql", {})
        g1 = after["by_route"].get("graphql", {})
        d0 = before["by_route"].get("download", {}).get("requests", 0)
        d1 = after["by_route"].get("download", {}).get("requests", 0)
        return {"graphql": g1.get("requests", 0) - g0.get("requests", 0),
                # 429s and refusals (every GraphQL reply ≥ 400).
                "errors": g1.get("errors", 0) - g0.get("errors", 0),
                "downloads": d1 - d0, "ops": ops}

    def wandbfs_sync(self, project: str, dbname: str, fresh: bool = True) -> dict:
        if fresh:
            self.create_database(dbname)
        before = self.counters()
        m = self.measure(self.wandbfs_cmd("sync", f"{ENTITY}/{project}", "--json", "--quiet",
                                          "--database-url", self.dsn(dbname)))
        report = json.loads(m["stdout"])
        if report.get("runs_failed"):
            raise BenchError(f"sync {project}: {report['runs_failed']} runs failed: {report.get('failures')}")
        req = self.graphql_since(before)
        return {"seconds": m["wall"], "rows": report["rows"], "runs": report["runs_listed"],
                "synced": report["runs_synced"], **req}

    def sdk_pipeline(self, project: str, k: int, dbname: str) -> dict:
        self.create_database(dbname)
        before = self.counters()
        m = self.measure([self.python, str(compare.BENCH_DIR / "sdk_pipeline.py"), f"{ENTITY}/{project}",
                          str(k), self.dsn(dbname)])
        j = compare.last_json(m["stdout"])
        req = self.graphql_since(before)
        return {"seconds": m["wall"], "rows": j["rows"], "runs": j["runs"], "json": j, **req}

    def sdk_check(self, project: str) -> dict:
        before = self.counters()
        m = self.measure([self.python, str(compare.BENCH_DIR / "baselines.py"), "check-sdk-cheap",
                          f"{ENTITY}/{project}"])
        return {"seconds": m["wall"], **self.graphql_since(before)}


# The SDK's per-run operations (everything else is start-up and the run listing, paid once).
SDK_PER_RUN = {"RunHistoryKeys", "RunParquetHistory", "HistoryPage", "RunFullHistory", "RunFiles",
               "Run", "RunSampledHistory"}


def extrapolate(sdk: dict, runs_total: int, limited: bool) -> dict:
    """The SDK pipeline on all `runs_total` runs from its run on K: start-up and listing once
    (measured), per-run requests and seconds × N; under the budget, at least one 60 s window
    per 200 requests beyond the first 200."""
    k = max(sdk["runs"], 1)
    per_run_requests = sum(n for op, n in sdk["ops"].items() if op in SDK_PER_RUN) / k
    once = sdk["graphql"] - per_run_requests * k
    requests = once + per_run_requests * runs_total
    per_run_seconds = (sdk["json"]["seconds"] - sdk["json"]["listed_seconds"]) / k
    seconds = sdk["seconds"] + per_run_seconds * (runs_total - k)
    if limited:
        windows = max(0, int((requests - 1) // WANDB_RATE_PER_MIN))
        seconds = max(seconds, windows * 60.0)
    return {"requests": requests, "seconds": seconds, "per_run": per_run_requests}


def measure_shape(b: BudgetBench, shape: str, runs: int, k: int, limited: bool, tag: str) -> dict:
    log(f"{shape} ({'W&B profile' if limited else 'loopback'}): wandbfs sync")
    b.set_profile(PROFILE_ON if limited else PROFILE_OFF)
    ours = b.wandbfs_sync(shape, f"w_{shape}_{tag}")
    log(f"  {ours['synced']} runs, {ours['rows']} rows in {ours['seconds']:.1f}s, "
        f"{ours['graphql']} GraphQL requests {ours['ops']}")
    log(f"{shape}: SDK pipeline on {k} of {runs} runs")
    b.set_profile(PROFILE_ON if limited else PROFILE_OFF)
    sdk = b.sdk_pipeline(shape, k, f"s_{shape}_{tag}")
    ext = extrapolate(sdk, runs, limited)
    log(f"  {sdk['runs']} runs, {sdk['rows']} rows in {sdk['seconds']:.1f}s, {sdk['graphql']} requests "
        f"{sdk['ops']} → {runs} runs: ~{ext['requests']:.0f} requests, ~{ext['seconds']:.0f}s")
    return {"wandbfs": ours, "sdk": sdk, "sdk_extrapolated": ext, "runs": runs,
            "ratio_seconds": ext["seconds"] / ours["seconds"],
            "ratio_requests": ext["requests"] / max(ours["graphql"], 1)}


def fmt_s(s: float) -> str:
    if s >= 3600:
        return f"{s / 3600:.1f} h"
    if s >= 120:
        return f"{s / 60:.1f} min"
    return f"{s:.1f} s"


def table(results: dict) -> list[str]:
    lines = ["| shape | column | wandbfs: GraphQL requests (per run) | wandbfs: wall | SDK pipeline: requests (per run) | SDK pipeline: wall | ratio (time) |",
             "|---|---|---|---|---|---|---|"]
    for shape, cols in results["shapes"].items():
        for col, r in cols.items():
            o, e = r["wandbfs"], r["sdk_extrapolated"]
            lines.append(
                f"| {shape} ({r['runs']:,} runs) | {col} | {o['graphql']:,} ({o['graphql'] / r['runs']:.2f}) | "
                f"{fmt_s(o['seconds'])} | ~{e['requests']:,.0f} ({e['per_run']:.2f}; measured on {r['sdk']['runs']}) | "
                f"~{fmt_s(e['seconds'])} | **{r['ratio_seconds']:.0f}×** |")
    rs = results.get("resync")
    if rs:
        lines.append(
            f"| re-sync, nothing changed ({rs['runs']:,} runs, {rs['running']:,} running) | W&B profile | "
            f"{rs['wandbfs']['graphql']} | {fmt_s(rs['wandbfs']['seconds'])} | "
            f"{rs['sdk']['graphql']} (SDK's cheapest check) | {fmt_s(rs['sdk']['seconds'])} | "
            f"{rs['sdk']['seconds'] / rs['wandbfs']['seconds']:.1f}× |")
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny shapes (a smoke test)")
    ap.add_argument("--no-loopback", action="store_true", help="only the W&B-profile column")
    ap.add_argument("--json", metavar="FILE", help="also write the raw results here")
    ap.add_argument("--keep-work", action="store_true")
    args = ap.parse_args()
    shapes = dict(QUICK if args.quick else FULL)
    started = time.time()
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    b = BudgetBench(args, shapes)
    results: dict = {"date": date, "shapes": {}, "sizes": shapes,
                     "git": compare.sh_out(["git", "-C", str(compare.REPO), "rev-parse", "--short", "HEAD"]),
                     "machine": compare.machine_info()}
    status = 0
    try:
        b.start_emulator()
        b.start_db()
        # W&B exports a run's history as parquet after the run ends, ahead of any read; the
        # emulator makes an export on its first download. One unmeasured sync makes them, so
        # neither side pays for generating them.
        log("history: generating the parquet exports (an unmeasured sync)")
        b.set_profile(PROFILE_OFF)
        b.wandbfs_sync("history", "warm_exports")
        columns = [("W&B profile", True)] + ([] if args.no_loopback else [("loopback", False)])
        plan = [("sweep", shapes["sweep_runs"], shapes["sdk_sweep"]),
                ("history", shapes["history_runs"], shapes["sdk_history"]),
                ("live", shapes["live_runs"], shapes["sdk_live"])]
        for shape, runs, k in plan:
            for i, (col, limited) in enumerate(columns):
                results["shapes"].setdefault(shape, {})[col] = measure_shape(b, shape, runs, k, limited, str(i))
        # Re-sync of the sweep (synced under the profile), nothing changed, vs the SDK's check.
        log("sweep: re-sync with nothing changed, and the SDK's cheapest check")
        b.set_profile(PROFILE_ON)
        again = b.wandbfs_sync("sweep", "w_sweep_0", fresh=False)
        b.set_profile(PROFILE_ON)
        check = b.sdk_check("sweep")
        results["resync"] = {"runs": shapes["sweep_runs"], "running": shapes["sweep_runs"] // 10,
                             "wandbfs": again, "sdk": check}
        log(f"  wandbfs {again['graphql']} requests in {again['seconds']:.1f}s; "
            f"SDK check {check['graphql']} requests in {check['seconds']:.1f}s")
    except BenchError as e:
        log(f"error: {e}")
        args.keep_work = True
        status = 1
    finally:
        b.cleanup()
    if status:
        return status
    results["minutes"] = (time.time() - started) / 60
    print()
    print(f"Measured {date} at {results['git']} on {results['machine']['nproc']} vCPU; "
          f"{results['minutes']:.1f} min")
    print("\n".join(table(results)))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
