"""`integration/bench/compare`: wandbfs next to the scripts W&B users write today, measured in
one run against one `wandb-emulator` and one throwaway PostgreSQL cluster.

Run it through the entry point (it builds the binaries unless WANDBFS_BIN/WANDB_EMULATOR_BIN
are set, and makes the bench venv):

    sudo integration/bench/compare            # full sizes: ~12-20 min on 2 cores
    sudo integration/bench/compare --quick    # tiny sizes: well under a minute
    sudo integration/bench/compare --only 3   # re-measure one row, keep the others in the doc
    integration/bench/compare --render r.json # re-render the doc from `--json r.json` output

Needs root (FUSE mounts, `echo 3 > /proc/sys/vm/drop_caches`), /dev/fuse, PostgreSQL server
binaries (`wandbfs` runs its own embedded cluster in the work directory, as user `postgres` when
root) and `curl`.

What it sets up: one `wandb-emulator` seeded with five projects (entity `bench`) —
`history` (100 runs × 10,000 rows × 20 metrics = 1,000,000 history rows), `many` (10,000 runs),
`file-small`/`file-big` (one run with a 100 MiB / 1 GiB file `large/blob-1GiB.bin`; the seed
names it so whatever its size) and `pandas` (100 runs × 10,000 rows) — and one embedded
PostgreSQL cluster (`wandbfs db start`, `WANDBFS_PG_DIR` under the work directory). The W&B API
key reaches children through WANDB_API_KEY (never argv; curl reads it from stdin).

Rows (each prints wandbfs | baseline | ratio; ratio = baseline time / wandbfs time, > 1 means
wandbfs is faster):
 1. History into Postgres: `wandbfs sync bench/history` vs `sdk_pipeline.py` (scan_history +
    psycopg COPY into a jsonb table, one transaction per run) vs `orm_downloader.py`
    (scan_history + one SQLAlchemy ORM object per step, Session + commit per run); all three into
    the same cluster (databases `wandbfs`, `bench_sdk`, `bench_orm`).
 2. `ls -l` of the synced 10,000-run project on a fresh mount (page cache dropped) vs SDK
    `len(list(api.runs(path)))` vs wandbfsspec 0.2.0 `fs.ls(path)`; also on mounts made with
    `--no-xattr` (no extended attributes: `ls -l` stops asking every entry for three of them).
 3. Reading the 100 MiB and the 1 GiB run file: the mount cold (fresh mount, empty content
    cache, page cache dropped) and warm (content cache filled, page cache dropped) vs
    wandbfsspec `cat_file` vs SDK `run.file(name).download()` vs `curl` of the file's URL.
 4. Full history of 100 runs into pandas: `pd.concat(pd.read_parquet(f) for f in
    glob(mnt/bench/pandas/*/history.parquet))` (fresh mount: the first read renders the tables;
    again with them rendered) vs `pd.concat(pd.DataFrame(run.scan_history()) for run in
    api.runs(path))`.
 5. No-change re-sync of the 10,000-run project: seconds and requests (counted by the emulator,
    which logs every request it serves) vs the SDK's cheapest equivalent check (one listing with
    full run data — `api.runs(path, per_page=1000, lazy=False)` — reading each run's
    `historyLineCount` and `summary_metrics`) and vs the check written the way the SDK docs
    suggest (the default listing, then `run.lastHistoryStep` and `run.summary_metrics` per run).
 6. Peak RSS: `wandbfs sync` (row 1, from wait4's rusage) vs the Python baselines (python plus
    the SDK's `wandb-core` service process, sampled every 50 ms); the mount daemon's VmHWM in rows
    2-4 next to the Python baselines of those rows.

Python baselines are timed inside the interpreter after their imports (`baselines.py`,
`sdk_pipeline.py`, `orm_downloader.py`: start-up excluded, which favours them by ~1-2 s);
`wandbfs`, `ls`, `dd` and `curl` by their process's wall time. Rows 2, 3 and 5 (and the warm
read of row 4) are the median of --repeats runs; the slow baselines run once.

Output: the table on stdout, and (unless --quick, or with --no-docs) the section "Side by side
(`integration/bench/compare`)" of docs/BENCHMARKS.md (replaced, the rest of the file untouched)
plus docs/benchmarks-compare.png. The raw numbers are kept in the section as a JSON comment, so
`--only N` re-measures row N and re-renders the section with the other rows' earlier numbers
(each row says when it was measured).

Environment: WANDBFS_BIN, WANDB_EMULATOR_BIN (the binaries; required here, the entry point fills
them in), BENCH_WORKDIR_PARENT (default /var/tmp; keep it short: PostgreSQL's socket path must
stay under 100 bytes).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from base64 import b64encode
from pathlib import Path

from report import (
    DOC,
    PNG,
    REPO,
    MiB,
    human_size,
    load_previous,
    plot_title,
    render_section,
    setup_notes,
    table_lines,
    write_doc,
    write_plot,
)

BENCH_DIR = REPO / "integration" / "bench"
ENTITY = "bench"


class BenchError(Exception):
    pass


def log(msg: str) -> None:
    print(f"[{datetime.datetime.now():%H:%M:%S}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Sizes


def parse_size(text: str) -> int:
    m = re.fullmatch(r"\s*(\d+)\s*(GiB|MiB|KiB|G|M|K)?\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 100MiB, 1GiB)")
    mult = {None: 1, "K": 1 << 10, "KiB": 1 << 10, "M": MiB, "MiB": MiB, "G": 1 << 30, "GiB": 1 << 30}
    return int(m.group(1)) * mult[m.group(2)]


FULL = dict(
    history_runs=100, history_steps=10_000, keys=20, many_runs=10_000,
    small_file=100 * MiB, big_file=1 << 30, pandas_runs=100, pandas_steps=10_000, repeats=3,
)
QUICK = dict(
    history_runs=4, history_steps=2_500, keys=20, many_runs=300,
    small_file=4 * MiB, big_file=16 * MiB, pandas_runs=5, pandas_steps=1_000, repeats=2,
)


# ---------------------------------------------------------------------------------------------
# Machine


def sh_out(cmd: list[str]) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=20).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def machine_info() -> dict:
    mem_kib = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    cpu = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    distro = sh_out(["lsb_release", "-ds"]).strip('"')
    if not distro:
        try:
            for line in Path("/etc/os-release").read_text().splitlines():
                if line.startswith("PRETTY_NAME="):
                    distro = line.split("=", 1)[1].strip('"')
        except OSError:
            distro = "unknown"
    return {
        "nproc": sh_out(["nproc"]) or str(os.cpu_count()),
        "cpu": cpu,
        "memory_gib": round(mem_kib / (1 << 20), 1),
        "kernel": os.uname().release,
        "distro": distro,
    }


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


# ---------------------------------------------------------------------------------------------
# Processes


def proc_state(pid: int) -> str | None:
    """The process's state letter, None when it is gone (zombies count as gone: `Z`)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def alive(pid: int) -> bool:
    return proc_state(pid) not in (None, "Z", "X")


def status_kib(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                try:
                    todo.extend(int(c) for c in Path(f"/proc/{p}/task/{task}/children").read_text().split())
                except OSError:
                    pass
        except OSError:
            pass
    return out


class TreeSampler:
    """Peak of the summed VmRSS of a process and its descendants, sampled every 50 ms."""

    def __init__(self, pid: int):
        self.pid, self.peak_kib, self._stop = pid, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            total = sum(status_kib(p, "VmRSS") for p in descendants(self.pid))
            self.peak_kib = max(self.peak_kib, total)
            self._stop.wait(0.05)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak_kib


def last_json(text: str) -> dict:
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                continue
    raise BenchError(f"no JSON in output: {text[-500:]!r}")


def drop_caches() -> None:
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3")


def median_by(items: list[dict], key: str) -> dict:
    """The item whose `key` is the median (the lower middle one for even counts)."""
    ordered = sorted(items, key=lambda m: m[key])
    return dict(ordered[(len(ordered) - 1) // 2], samples=[round(m[key], 4) for m in items])


# ---------------------------------------------------------------------------------------------
# The bench


class Bench:
    def __init__(self, args, sizes: dict):
        self.args, self.sizes = args, sizes
        self.wandbfs = os.environ.get("WANDBFS_BIN", "")
        self.emulator_bin = os.environ.get("WANDB_EMULATOR_BIN", "")
        for name, path in (("WANDBFS_BIN", self.wandbfs), ("WANDB_EMULATOR_BIN", self.emulator_bin)):
            if not path or not os.access(path, os.X_OK):
                raise BenchError(f"{name}={path!r} is not an executable (use integration/bench/compare)")
        parent = os.environ.get("BENCH_WORKDIR_PARENT", "/var/tmp")
        self.work = Path(tempfile.mkdtemp(prefix="bcmp-", dir=parent))
        # Traversable (not listable) by others: as root, the embedded PostgreSQL server runs as
        # `postgres` and must reach its directory below.
        os.chmod(self.work, 0o711)
        self.home = self.work / "home"
        self.home.mkdir()
        self.pg_dir = self.work / "pg"
        self.emu: subprocess.Popen | None = None
        self.emu_log = self.work / "emulator.log"
        self.base_url = self.api_key = ""
        self.mounts: dict[str, int] = {}
        self.child: subprocess.Popen | None = None
        self.db_started = False
        self.synced: dict[str, dict] = {}
        self.python = sys.executable
        self.emulator_args: list[str] = []

    # -- environment ---------------------------------------------------------------------------

    def env(self) -> dict:
        h = self.home
        return {
            "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
            "HOME": str(h),
            "LANG": "C.UTF-8",
            "XDG_CACHE_HOME": str(h / ".cache"),
            "XDG_DATA_HOME": str(h / ".local/share"),
            "XDG_CONFIG_HOME": str(h / ".config"),
            "WANDB_BASE_URL": self.base_url,
            "WANDB_API_KEY": self.api_key,
            "WANDB_SILENT": "true",
            "WANDB_CONFIG_DIR": str(h / ".config/wandb"),
            "WANDB_CACHE_DIR": str(h / ".cache/wandb"),
            "WANDB_DATA_DIR": str(h / ".local/share/wandb"),
            "WANDBFS_PG_DIR": str(self.pg_dir),
        }

    def seeds(self) -> list[str]:
        s = self.sizes
        return [
            f"{ENTITY}/history:runs={s['history_runs']},steps={s['history_steps']},keys={s['keys']},files=4,bigfile=0",
            f"{ENTITY}/many:runs={s['many_runs']},steps=10,keys=5,files=3,bigfile=0",
            f"{ENTITY}/file-small:runs=1,steps=5,keys=5,files=1,bigfile={s['small_file']}",
            f"{ENTITY}/file-big:runs=1,steps=5,keys=5,files=1,bigfile={s['big_file']}",
            f"{ENTITY}/pandas:runs={s['pandas_runs']},steps={s['pandas_steps']},keys={s['keys']},files=1,bigfile=0,seed=1",
        ]

    def start_emulator(self) -> None:
        cmd = [self.emulator_bin, "--worker-threads", "2", *self.emulator_args]
        for seed in self.seeds():
            cmd += ["--seed", seed]
        log(f"starting wandb-emulator ({len(self.seeds())} seeded projects; request log {self.emu_log})")
        err = open(self.emu_log, "wb")
        env = {"PATH": os.environ.get("PATH", ""), "HOME": str(self.home),
               # One line per request served: how requests are counted from outside the process.
               "RUST_LOG": "warn,wandb_emulator::http=debug"}
        self.emu = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL,
                                    env=env, start_new_session=True)
        err.close()
        deadline = time.time() + 120
        values = {}
        buf = b""
        while time.time() < deadline:
            if self.emu.poll() is not None:
                raise BenchError(f"wandb-emulator exited ({self.emu.returncode}): see {self.emu_log}")
            r, _, _ = select.select([self.emu.stdout], [], [], 0.5)
            if not r:
                continue
            chunk = os.read(self.emu.stdout.fileno(), 4096)
            buf += chunk
            lines = buf.decode(errors="replace").splitlines()
            for line in lines:
                if "=" in line:
                    k, v = line.split("=", 1)
                    values[k.strip()] = v.strip()
            if "ready" in lines:
                break
        else:
            raise BenchError("wandb-emulator did not print `ready` within 120 s")
        self.base_url, self.api_key = values["base_url"], values["api_key"]
        log(f"emulator at {self.base_url}")

    # -- request counting ----------------------------------------------------------------------

    def log_mark(self) -> int:
        return self.emu_log.stat().st_size

    def requests_since(self, mark: int) -> dict:
        time.sleep(0.05)  # the emulator logs a request as it answers it
        with open(self.emu_log, "rb") as f:
            f.seek(mark)
            text = f.read().decode(errors="replace")
        out = {"total": 0, "graphql": 0, "download": 0, "direct": 0, "other": 0}
        for line in text.splitlines():
            if "wandb_emulator::http: request " not in line:
                continue
            out["total"] += 1
            if "listener=Direct" in line:
                out["direct"] += 1
            elif "path=/graphql" in line:
                out["graphql"] += 1
            elif "path=/files/" in line or "path=/artifacts" in line:
                out["download"] += 1
            else:
                out["other"] += 1
        return out

    # -- running things ------------------------------------------------------------------------

    def measure(self, cmd: list[str], stdin_text: str | None = None, check: bool = True,
                timeout: float | None = None) -> dict:
        """Runs cmd to completion: wall seconds, exit code, output, wait4's ru_maxrss (the
        process itself), the sampled peak RSS of its process tree, requests the emulator served."""
        mark = self.log_mark()
        out_f, err_f = tempfile.TemporaryFile(), tempfile.TemporaryFile()
        started = time.perf_counter()
        p = subprocess.Popen(cmd, env=self.env(), stdout=out_f, stderr=err_f,
                             stdin=subprocess.PIPE if stdin_text is not None else subprocess.DEVNULL)
        self.child = p
        sampler = TreeSampler(p.pid)
        try:
            if stdin_text is not None:
                p.stdin.write(stdin_text.encode())
                p.stdin.close()
            if timeout:
                deadline = time.time() + timeout
                while True:
                    pid, status, ru = os.wait4(p.pid, os.WNOHANG)
                    if pid:
                        break
                    if time.time() > deadline:
                        p.kill()
                        os.wait4(p.pid, 0)
                        raise BenchError(f"{' '.join(cmd[:3])}: timed out after {timeout:.0f} s")
                    time.sleep(0.05)
            else:
                _, status, ru = os.wait4(p.pid, 0)
        finally:
            peak = sampler.stop()
        wall = time.perf_counter() - started
        p.returncode = os.waitstatus_to_exitcode(status)
        self.child = None
        out_f.seek(0)
        err_f.seek(0)
        stdout, stderr = out_f.read().decode(errors="replace"), err_f.read().decode(errors="replace")
        requests = self.requests_since(mark)
        if check and p.returncode != 0:
            shown = " ".join(Path(c).name if i == 0 else c for i, c in enumerate(cmd[:4]))
            raise BenchError(f"`{shown} …` exited with {p.returncode}:\n{stderr[-3000:]}\n{stdout[-1000:]}")
        return {"wall": wall, "rc": p.returncode, "stdout": stdout, "stderr": stderr,
                "maxrss_kib": ru.ru_maxrss, "tree_peak_kib": peak, "requests": requests}

    def py(self, script: str, *args: str) -> dict:
        """A Python baseline: its JSON (seconds timed inside) plus the process measurements."""
        m = self.measure([self.python, str(BENCH_DIR / script), *args])
        j = last_json(m["stdout"])
        return {"seconds": j["seconds"], "wall": m["wall"], "json": j, "requests": m["requests"],
                "peak_rss_kib": m["tree_peak_kib"], "maxrss_kib": m["maxrss_kib"]}

    def wandbfs_cmd(self, *args: str) -> list[str]:
        return [self.wandbfs, *args]

    def start_db(self) -> None:
        if self.db_started:
            return
        m = self.measure(self.wandbfs_cmd("db", "start", "--quiet"))
        self.db_started = True
        status = json.loads(self.measure(self.wandbfs_cmd("db", "status", "--json"))["stdout"])
        self.pg_conninfo = status["connection_string"]
        self.pg_version = status.get("data_version", "?")
        log(f"embedded PostgreSQL {self.pg_version} started in {m['wall']:.1f}s: {self.pg_conninfo}")

    def dsn(self, dbname: str) -> str:
        return re.sub(r"dbname=\S+", f"dbname={dbname}", self.pg_conninfo)

    def create_database(self, name: str) -> None:
        import psycopg

        with psycopg.connect(self.pg_conninfo, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            conn.execute(f'CREATE DATABASE "{name}"')

    def count_rows(self, dbname: str, table: str) -> int:
        import psycopg

        with psycopg.connect(self.dsn(dbname)) as conn:
            return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]

    def sync(self, project: str) -> dict:
        m = self.measure(self.wandbfs_cmd("sync", f"{ENTITY}/{project}", "--json", "--quiet", "--max-rps", "0"))
        report = json.loads(m["stdout"])
        if report.get("runs_failed"):
            raise BenchError(f"sync {project}: {report['runs_failed']} runs failed: {report.get('failures')}")
        return {"seconds": m["wall"], "rows": report["rows"], "runs": report["runs_listed"],
                "requests": m["requests"]["total"], "client_requests": report["api"]["http"],
                "maxrss_kib": m["maxrss_kib"], "tree_peak_kib": m["tree_peak_kib"]}

    def ensure_synced(self, project: str) -> dict:
        self.start_db()
        if project not in self.synced:
            log(f"setup: first sync of {ENTITY}/{project}")
            self.synced[project] = self.sync(project)
            s = self.synced[project]
            log(f"  {s['runs']} runs, {s['rows']} rows in {s['seconds']:.1f}s, {s['requests']} requests")
        return self.synced[project]

    def mount(self, name: str, cache_dir: Path, *extra: str) -> tuple[Path, int]:
        mnt = self.work / "mnt" / name
        mnt.mkdir(parents=True, exist_ok=True)
        r = subprocess.run(self.wandbfs_cmd("mount", str(mnt), "--cache-dir", str(cache_dir),
                                            "--log-file", str(self.work / f"mount-{name}.log"), *extra),
                           env=self.env(), capture_output=True, text=True, timeout=120,
                           stdin=subprocess.DEVNULL)
        if r.returncode != 0:
            raise BenchError(f"wandbfs mount failed ({r.returncode}): {r.stderr.strip()}")
        m = re.search(r"\(pid (\d+)", r.stdout)
        if not m:
            raise BenchError(f"no daemon pid in {r.stdout!r}")
        self.mounts[str(mnt)] = int(m.group(1))
        return mnt, int(m.group(1))

    def unmount(self, mnt: Path) -> int:
        """Unmounts; returns the daemon's peak RSS (VmHWM, KiB) read just before."""
        pid = self.mounts.pop(str(mnt), 0)
        hwm = status_kib(pid, "VmHWM") if pid else 0
        r = subprocess.run(self.wandbfs_cmd("unmount", str(mnt)), env=self.env(), capture_output=True,
                           text=True, timeout=60)
        if r.returncode != 0:
            subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
        deadline = time.time() + 15
        while pid and alive(pid) and time.time() < deadline:
            time.sleep(0.05)
        if pid and alive(pid):
            os.kill(pid, signal.SIGTERM)
            time.sleep(2)
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        return hwm

    def graphql(self, query: str) -> dict:
        req = urllib.request.Request(
            self.base_url + "/graphql", data=json.dumps({"query": query}).encode(),
            headers={"content-type": "application/json",
                     "authorization": "Basic " + b64encode(f"api:{self.api_key}".encode()).decode()})
        with urllib.request.urlopen(req, timeout=60) as resp:
            body = json.loads(resp.read())
        if body.get("errors"):
            raise BenchError(f"graphql: {body['errors']}")
        return body["data"]

    def large_file(self, project: str) -> tuple[str, str, int, str]:
        """(run id, file name, size, url) of the project's first run's `large/` file."""
        data = self.graphql(
            'query { project(name: "%s", entityName: "%s") { runs(first: 10) { edges { node { name '
            "files(first: 100) { edges { node { name sizeBytes url } } } } } } } }" % (project, ENTITY))
        for edge in data["project"]["runs"]["edges"]:
            for f in edge["node"]["files"]["edges"]:
                if f["node"]["name"].startswith("large/"):
                    n = f["node"]
                    return edge["node"]["name"], n["name"], int(n["sizeBytes"]), n["url"]
        raise BenchError(f"no large/ file in {ENTITY}/{project}")

    # -- cleanup -------------------------------------------------------------------------------

    def cleanup(self) -> None:
        if self.child is not None and self.child.poll() is None:
            try:
                self.child.kill()
                self.child.wait(10)
            except Exception:
                pass
        for mnt in list(self.mounts):
            try:
                self.unmount(Path(mnt))
            except Exception as e:  # keep going: the emulator must stop too
                log(f"cleanup: unmount {mnt}: {e}")
                subprocess.run(["umount", "-l", mnt], capture_output=True)
        if self.db_started:
            subprocess.run(self.wandbfs_cmd("db", "stop", "--quiet"), env=self.env(), capture_output=True,
                           timeout=120)
        if self.emu is not None and self.emu.poll() is None:
            self.emu.terminate()
            try:
                self.emu.wait(15)
            except subprocess.TimeoutExpired:
                self.emu.kill()
                self.emu.wait()
        if self.args.keep_work:
            log(f"work directory kept: {self.work}")
        else:
            shutil.rmtree(self.work, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# Rows


def row1(b: Bench) -> dict:
    s = b.sizes
    expected = s["history_runs"] * s["history_steps"]
    log(f"row 1: history into Postgres ({s['history_runs']} runs × {s['history_steps']} rows)")
    b.start_db()
    for db in ("bench_sdk", "bench_orm"):
        b.create_database(db)
    ours = b.sync("history")
    b.synced["history"] = ours
    log(f"  wandbfs sync: {ours['rows']} rows in {ours['seconds']:.1f}s")
    sdk = b.py("sdk_pipeline.py", f"{ENTITY}/history", str(10**9), b.dsn("bench_sdk"))
    sdk["rows"] = sdk["json"]["rows"]
    sdk["db_rows"] = b.count_rows("bench_sdk", "public.sdk_history")
    log(f"  SDK pipeline: {sdk['rows']} rows in {sdk['seconds']:.1f}s")
    orm = b.py("orm_downloader.py", f"{ENTITY}/history", b.dsn("bench_orm"))
    orm["rows"] = orm["json"]["rows"]
    orm["db_rows"] = b.count_rows("bench_orm", "public.wandb_history")
    log(f"  ORM downloader: {orm['rows']} rows in {orm['seconds']:.1f}s")
    for name, r in (("wandbfs", ours), ("SDK pipeline", sdk), ("ORM downloader", orm)):
        if r["rows"] != expected:
            raise BenchError(f"row 1: {name} wrote {r['rows']} rows, expected {expected}")
    return {"runs": s["history_runs"], "steps": s["history_steps"], "keys": s["keys"], "rows": expected,
            "wandbfs": ours, "sdk": sdk, "orm": orm}


def time_ls(b: Bench, path: Path) -> dict:
    m = b.measure(["bash", "-c", f"ls -l '{path}' | wc -l"])
    return {"seconds": m["wall"], "requests": m["requests"]["total"],
            "entries": max(0, int(m["stdout"].strip() or 0) - 1)}


def row2(b: Bench) -> dict:
    runs = b.sizes["many_runs"]
    log(f"row 2: ls -l of a {runs}-run project")
    setup = b.ensure_synced("many")
    cache = b.work / "cache-ls"
    mnt, _ = b.mount("ls", cache)
    drop_caches()
    first = time_ls(b, mnt / ENTITY / "many")
    hwm = b.unmount(mnt)
    fresh, sdk, fsspec = [], [], []
    for _ in range(b.sizes["repeats"]):
        mnt, _ = b.mount("ls", cache)
        drop_caches()
        fresh.append(time_ls(b, mnt / ENTITY / "many"))
        hwm = max(hwm, b.unmount(mnt))
        sdk.append(b.py("baselines.py", "ls-sdk", f"{ENTITY}/many"))
        fsspec.append(b.py("baselines.py", "ls-fsspec", f"{ENTITY}/many"))
    # The same with --no-xattr: `ls -l` asks each entry for its SELinux label and ACLs, a round
    # trip to the daemon each unless extended attributes are off for the whole mount.
    no_xattr = []
    for _ in range(b.sizes["repeats"]):
        mnt, _ = b.mount("ls", cache, "--no-xattr")
        drop_caches()
        no_xattr.append(time_ls(b, mnt / ENTITY / "many"))
        hwm = max(hwm, b.unmount(mnt))
    for m in [first, *fresh, *no_xattr]:
        if m["entries"] < runs:
            raise BenchError(f"row 2: `ls -l` listed {m['entries']} entries, expected at least {runs}")
    for name, ms in (("SDK", sdk), ("wandbfsspec", fsspec)):
        if ms[0]["json"]["entries"] != runs:
            raise BenchError(f"row 2: {name} listed {ms[0]['json']['entries']} runs, expected {runs}")
    r = {"runs": runs, "setup_sync": setup, "first": first, "fresh": median_by(fresh, "seconds"),
         "sdk": median_by(sdk, "seconds"), "fsspec": median_by(fsspec, "seconds"), "daemon_hwm_kib": hwm,
         "no_xattr": median_by(no_xattr, "seconds")}
    log(f"  mount {r['fresh']['seconds']*1e3:.0f} ms (first {first['seconds']*1e3:.0f} ms), "
        f"SDK {r['sdk']['seconds']*1e3:.0f} ms, wandbfsspec {r['fsspec']['seconds']*1e3:.0f} ms")
    return r


def dd(b: Bench, path: Path) -> dict:
    m = b.measure(["dd", f"if={path}", "of=/dev/null", "bs=1M", "status=none"])
    return {"seconds": m["wall"], "requests": m["requests"]["total"]}


def row3(b: Bench) -> dict:
    out = {}
    for label, project in (("small", "file-small"), ("big", "file-big")):
        b.ensure_synced(project)
        run_id, name, size, url = b.large_file(project)
        log(f"row 3: reading a {human_size(size)} run file ({ENTITY}/{project}/{run_id}/{name})")
        cache = b.work / f"cache-{label}"
        dl = b.work / "dl"
        colds, warms, fsspecs, sdks, curls = [], [], [], [], []
        hwm = 0
        for _ in range(b.sizes["repeats"]):
            shutil.rmtree(cache, ignore_errors=True)
            mnt, _ = b.mount(f"read-{label}", cache)
            path = mnt / ENTITY / project / run_id / name
            if path.stat().st_size != size:
                raise BenchError(f"{path}: size {path.stat().st_size}, expected {size}")
            drop_caches()
            colds.append(dd(b, path))
            drop_caches()
            warms.append(dd(b, path))
            hwm = max(hwm, b.unmount(mnt))
            drop_caches()
            m = b.measure(["curl", "-sS", "-f", "-o", "/dev/null", "-K", "-"],
                          stdin_text=f'user = "api:{b.api_key}"\nurl = "{url}"\n')
            curls.append({"seconds": m["wall"], "requests": m["requests"]["total"]})
            drop_caches()
            fsspecs.append(b.py("baselines.py", "read-fsspec", f"{ENTITY}/{project}/{run_id}/{name}"))
            drop_caches()
            sdks.append(b.py("baselines.py", "read-sdk", f"{ENTITY}/{project}/{run_id}/{name}", str(dl)))
            got = (dl / name).stat().st_size
            shutil.rmtree(dl, ignore_errors=True)
            if got != size or fsspecs[-1]["json"]["bytes"] != size:
                raise BenchError(f"row 3: baseline read {got}/{fsspecs[-1]['json']['bytes']} bytes, expected {size}")
        r = {"bytes": size, "cold": median_by(colds, "seconds"), "warm": median_by(warms, "seconds"),
             "curl": median_by(curls, "seconds"), "fsspec": median_by(fsspecs, "seconds"),
             "sdk": median_by(sdks, "seconds"), "daemon_hwm_kib": hwm}
        log(f"  mount cold {r['cold']['seconds']:.2f}s warm {r['warm']['seconds']:.2f}s, curl "
            f"{r['curl']['seconds']:.2f}s, wandbfsspec {r['fsspec']['seconds']:.2f}s, SDK {r['sdk']['seconds']:.2f}s")
        out[label] = r
    return out


def row4(b: Bench) -> dict:
    s = b.sizes
    log(f"row 4: {s['pandas_runs']} runs' full history into pandas")
    b.ensure_synced("pandas")
    cache = b.work / "cache-pandas"
    shutil.rmtree(cache, ignore_errors=True)
    mnt, _ = b.mount("pandas", cache)
    pattern = str(mnt / ENTITY / "pandas" / "*" / "history.parquet")
    drop_caches()
    first = b.py("baselines.py", "pandas-files", pattern)
    again = []
    for _ in range(s["repeats"]):
        drop_caches()
        again.append(b.py("baselines.py", "pandas-files", pattern))
    hwm = b.unmount(mnt)
    sdk = b.py("baselines.py", "pandas-sdk", f"{ENTITY}/pandas")
    expected = s["pandas_runs"] * s["pandas_steps"]
    for name, m in (("mount", first), ("SDK", sdk)):
        if m["json"]["rows"] != expected:
            raise BenchError(f"row 4: {name} read {m['json']['rows']} rows, expected {expected}")
    r = {"runs": s["pandas_runs"], "steps": s["pandas_steps"], "rows": expected, "first": first,
         "again": median_by(again, "seconds"), "sdk": sdk, "daemon_hwm_kib": hwm}
    log(f"  mount first {first['seconds']:.2f}s again {r['again']['seconds']:.2f}s, SDK {sdk['seconds']:.2f}s")
    return r


def row5(b: Bench) -> dict:
    runs = b.sizes["many_runs"]
    log(f"row 5: no-change re-sync of the {runs}-run project")
    setup = b.ensure_synced("many")
    resync, cheap = [], []
    for _ in range(b.sizes["repeats"]):
        r = b.sync("many")
        if r["rows"]:
            raise BenchError(f"row 5: the re-sync copied {r['rows']} rows; nothing changed")
        resync.append(r)
        cheap.append(b.py("baselines.py", "check-sdk-cheap", f"{ENTITY}/many"))
    naive = b.py("baselines.py", "check-sdk-naive", f"{ENTITY}/many")
    for name, m in (("cheap", cheap[0]), ("naive", naive)):
        if m["json"]["runs"] != runs:
            raise BenchError(f"row 5: SDK {name} check saw {m['json']['runs']} runs, expected {runs}")
    r = {"runs": runs, "setup_sync": setup, "resync": median_by(resync, "seconds"),
         "cheap": median_by(cheap, "seconds"), "naive": naive}
    log(f"  re-sync {r['resync']['seconds']:.2f}s / {r['resync']['requests']} requests; SDK cheapest "
        f"{r['cheap']['seconds']:.2f}s / {r['cheap']['requests']['total']}; naive {naive['seconds']:.1f}s / "
        f"{naive['requests']['total']}")
    return r


ROWS = {1: row1, 2: row2, 3: row3, 4: row4, 5: row5}


# ---------------------------------------------------------------------------------------------
# Main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny sizes (seconds); implies --no-docs")
    ap.add_argument("--only", help="comma-separated rows to measure (1-5; row 6 comes from rows 1-4)")
    ap.add_argument("--history-runs", type=int, help="row 1: runs (100)")
    ap.add_argument("--history-steps", type=int, help="row 1: history rows per run (10,000)")
    ap.add_argument("--keys", type=int, help="metrics per history row (20)")
    ap.add_argument("--many-runs", type=int, help="rows 2 and 5: runs in the project (10,000)")
    ap.add_argument("--small-file", type=parse_size, help="row 3: the smaller file (100MiB)")
    ap.add_argument("--big-file", type=parse_size, help="row 3: the larger file (1GiB)")
    ap.add_argument("--pandas-runs", type=int, help="row 4: runs (100)")
    ap.add_argument("--pandas-steps", type=int, help="row 4: history rows per run (10,000)")
    ap.add_argument("--repeats", type=int, help="repetitions of the fast measurements (3)")
    docs = ap.add_mutually_exclusive_group()
    docs.add_argument("--docs", dest="docs", action="store_true", default=None,
                      help="write docs/BENCHMARKS.md and the plot (the default without --quick)")
    docs.add_argument("--no-docs", dest="docs", action="store_false", help="print only")
    ap.add_argument("--keep-work", action="store_true", help="keep the work directory (logs) at the end")
    ap.add_argument("--json", metavar="FILE", help="also write the raw results here")
    ap.add_argument("--render", metavar="FILE",
                    help="measure nothing: re-render the docs section and the plot from a --json file")
    args = ap.parse_args()
    if args.render:
        results = json.loads(Path(args.render).read_text())
        print("\n".join(table_lines(results["rows"])))
        first = results["runs"][min(results["runs"])]
        write_plot(results["rows"], PNG, plot_title(results))
        write_doc(render_section(results))
        log(f"re-rendered {DOC.relative_to(REPO)} and {PNG.relative_to(REPO)} from {args.render} ({first['date']})")
        return 0

    sizes = dict(QUICK if args.quick else FULL)
    for k in list(sizes):
        v = getattr(args, k, None)
        if v is not None:
            sizes[k] = v
    only = sorted({int(x) for x in args.only.split(",")}) if args.only else [1, 2, 3, 4, 5]
    if any(n not in ROWS for n in only):
        ap.error("--only takes rows 1-5 (row 6 is computed from rows 1-4)")
    write_docs = (not args.quick) if args.docs is None else args.docs
    if os.geteuid() != 0 and set(only) & {2, 3, 4}:
        print("error: rows 2-4 need root (FUSE mounts, drop_caches); run with sudo or --only 1,5",
              file=sys.stderr)
        return 1
    if set(only) & {2, 3, 4} and not os.path.exists("/dev/fuse"):
        print("error: /dev/fuse is missing", file=sys.stderr)
        return 1

    started = time.time()
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    machine = machine_info()
    load_start = loadavg()
    log(f"sizes: {sizes}; rows {only}; machine {machine}")

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    b = Bench(args, sizes)
    measured: dict[str, dict] = {}
    status = 0
    try:
        b.start_emulator()
        for n in only:
            load_before = loadavg()
            measured[str(n)] = ROWS[n](b)
            measured[str(n)]["load"] = [load_before, loadavg()]
    except KeyboardInterrupt:
        log("interrupted: cleaning up")
        status = 130
    except BenchError as e:
        log(f"error: {e}")
        b.args.keep_work = True
        status = 1
    except Exception:
        import traceback

        traceback.print_exc()
        b.args.keep_work = True
        status = 1
    finally:
        # Unmount, stop the cluster and the emulator whatever happened; no second Ctrl-C or
        # SIGTERM may cut this short.
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        try:
            b.cleanup()
        finally:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGHUP, signal.SIG_DFL)
    if status:
        return status

    run_key = date
    import wandb as _w  # the SDK version, for the record

    meta = {
        "date": date, "duration_min": (time.time() - started) / 60, "machine": machine,
        "load_start": load_start, "load_end": loadavg(), "sizes": sizes,
        "only": args.only or "", "quick": args.quick,
        "postgres": getattr(b, "pg_version", "?"), "wandb": _w.__version__,
        "wandbfs_version": sh_out([b.wandbfs, "--version"]).replace("wandbfs ", ""),
        "wandbfs_mtime": datetime.datetime.fromtimestamp(os.stat(b.wandbfs).st_mtime).strftime("%Y-%m-%d %H:%M"),
        "git": sh_out(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"]) or "?",
    }
    results = {"rows": {k: {"run": run_key, "data": v} for k, v in measured.items()}, "runs": {run_key: meta}}
    if args.only and write_docs:
        prev = load_previous()
        if prev:
            for k, v in prev.get("rows", {}).items():
                if k not in results["rows"]:
                    results["rows"][k] = v
                    results["runs"].setdefault(v["run"], prev["runs"][v["run"]])
    results["rows"] = dict(sorted(results["rows"].items()))

    print()
    print(f"Measured {date} on {machine['nproc']} vCPU, {machine['memory_gib']} GiB, {machine['distro']}, "
          f"kernel {machine['kernel']}; load {load_start} → {meta['load_end']}; "
          f"{meta['duration_min']:.1f} min")
    print()
    print("\n".join(table_lines(results["rows"])))
    for n in setup_notes(results["rows"]):
        print(n)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    if write_docs:
        write_plot(results["rows"], PNG, plot_title(results))
        write_doc(render_section(results))
        log(f"wrote {DOC.relative_to(REPO)} (section “Side by side”) and {PNG.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
