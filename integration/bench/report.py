"""The report of `integration/bench/compare`: the table (wandbfs | baseline | ratio), the plot
and the "Side by side" section of docs/BENCHMARKS.md, all from the results `compare.py` measures
(or reads back with `--render`). No measuring here."""

from __future__ import annotations

import json
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "BENCHMARKS.md"
PNG = REPO / "docs" / "benchmarks-compare.png"
SECTION_TITLE = "## Side by side (`integration/bench/compare`)"
RESULTS_MARK = "compare-results:"
MiB = 1 << 20


def human_size(n: int) -> str:
    if n >= 1 << 30 and n % (1 << 30) == 0:
        return f"{n >> 30} GiB"
    if n >= MiB and n % MiB == 0:
        return f"{n >> 20} MiB"
    return f"{n / MiB:.1f} MiB"


def fs(sec: float) -> str:
    if sec < 1:
        return f"{sec * 1e3:.0f} ms"
    if sec < 10:
        return f"{sec:.2f} s"
    return f"{sec:.1f} s"


def fmib(kib: int) -> str:
    return f"{kib / 1024:.0f} MiB"


def ratio(baseline: float, ours: float) -> str:
    if not ours or not baseline:
        return "—"
    x = baseline / ours
    if x >= 1.05:
        return f"**{x:.1f}×** faster" if x < 100 else f"**{x:.0f}×** faster"
    if x > 1 / 1.05:
        return f"about even ({x:.2f}×)"
    return f"**{1 / x:.1f}× slower** ({x:.2f}×)"


def mem_ratio(baseline: int, ours: int) -> str:
    if not ours or not baseline:
        return "—"
    x = baseline / ours
    if x >= 1.05:
        return f"**{x:.1f}×** less memory"
    if x > 1 / 1.05:
        return f"about even ({x:.2f}×)"
    return f"**{1 / x:.1f}× more** memory"


def rate(rows: int, sec: float) -> str:
    return f"{rows / sec:,.0f} rows/s"


def mibs(nbytes: int, sec: float) -> str:
    return f"{nbytes / MiB / sec:,.0f} MiB/s"


def reqs(r) -> str:
    n = r["total"] if isinstance(r, dict) else r
    return f"{n:,} request{'s' if n != 1 else ''}"


def table_lines(rows: dict) -> list[str]:
    L = ["| # | Task | wandbfs | baseline | ratio |", "|---|---|---|---|---|"]

    def line(n, task, ours, base, rat):
        L.append(f"| {n} | {task} | {ours} | {base} | {rat} |")

    if "1" in rows:
        r = rows["1"]["data"]
        o, sdk, orm = r["wandbfs"], r["sdk"], r["orm"]
        task = (f"history into Postgres: {r['runs']} runs × {r['steps']:,} rows × {r['keys']} metrics "
                f"= {r['rows']:,} rows")
        ours = f"`wandbfs sync`: {fs(o['seconds'])}, {rate(o['rows'], o['seconds'])} ({reqs(o['requests'])})"
        line(1, task, ours,
             f"SDK pipeline (`scan_history()` + psycopg `COPY` into jsonb, a transaction per run): "
             f"{fs(sdk['seconds'])}, {rate(sdk['rows'], sdk['seconds'])} ({reqs(sdk['requests'])})",
             ratio(sdk["seconds"], o["seconds"]))
        line(1, "same", "same",
             f"ORM downloader (`scan_history()` + a SQLAlchemy ORM object per step, jsonb; Session + "
             f"commit per run): {fs(orm['seconds'])}, {rate(orm['rows'], orm['seconds'])}",
             ratio(orm["seconds"], o["seconds"]))
    if "2" in rows:
        r = rows["2"]["data"]
        f, first = r["fresh"], r["first"]
        ours = (f"{fs(f['seconds'])}, {reqs(f['requests'])} (first mount, empty cache dir, renders "
                f"`runs.parquet`: {fs(first['seconds'])}, {reqs(first['requests'])})")
        task = f"`ls -l` of a synced {r['runs']:,}-run project, fresh mount, page cache dropped"
        line(2, task, ours,
             f"SDK `len(list(api.runs(path)))`: {fs(r['sdk']['seconds'])}, {reqs(r['sdk']['requests'])}",
             f"{ratio(r['sdk']['seconds'], f['seconds'])} (first mount: {ratio(r['sdk']['seconds'], first['seconds'])})")
        line(2, "same", "same",
             f"wandbfsspec 0.2.0 `fs.ls(path)`: {fs(r['fsspec']['seconds'])}, {reqs(r['fsspec']['requests'])}",
             f"{ratio(r['fsspec']['seconds'], f['seconds'])} (first mount: {ratio(r['fsspec']['seconds'], first['seconds'])})")
        if "no_xattr" in r:
            nx = r["no_xattr"]
            line(2, "same, mounted with `--no-xattr` (no `user.wandb.*` attributes; `ls -l` stops asking "
                    "each entry for its SELinux label and ACLs)",
                 f"{fs(nx['seconds'])}, {reqs(nx['requests'])}",
                 f"SDK: {fs(r['sdk']['seconds'])}; wandbfsspec: {fs(r['fsspec']['seconds'])}",
                 f"{ratio(r['sdk']['seconds'], nx['seconds'])} / {ratio(r['fsspec']['seconds'], nx['seconds'])}")
    if "3" in rows:
        for label in ("small", "big"):
            r = rows["3"]["data"].get(label)
            if not r:
                continue
            n = r["bytes"]
            c, w = r["cold"]["seconds"], r["warm"]["seconds"]
            task = f"read a {human_size(n)} run file (`dd bs=1M`)"
            ours = (f"cold (fresh mount, empty content cache, page cache dropped): {fs(c)}, {mibs(n, c)}, "
                    f"{reqs(r['cold']['requests'])}; warm (content cache, page cache dropped): {fs(w)}, "
                    f"{mibs(n, w)}, {reqs(r['warm']['requests'])}")
            first = True
            for key, what in (("curl", "`curl` of the file's URL"),
                              ("fsspec", "wandbfsspec `fs.cat_file(path)`"),
                              ("sdk", "SDK `run.file(name).download()`")):
                t = r[key]["seconds"]
                line(3, task if first else "same", ours if first else "same",
                     f"{what}: {fs(t)}, {mibs(n, t)}, {reqs(r[key]['requests'])}",
                     f"cold {ratio(t, c)}; warm {ratio(t, w)}")
                first = False
    if "4" in rows:
        r = rows["4"]["data"]
        a, g, s = r["first"]["seconds"], r["again"]["seconds"], r["sdk"]["seconds"]
        task = (f"full history of {r['runs']} runs ({r['rows']:,} rows) into one pandas DataFrame")
        ours = (f"`pd.concat(pd.read_parquet(f) for f in glob(…/*/history.parquet))` on a fresh mount: "
                f"{fs(a)} (renders the {r['runs']} tables); again: {fs(g)} (page cache dropped)")
        line(4, task, ours,
             f"SDK loop `pd.DataFrame(run.scan_history())` per run + `pd.concat`: {fs(s)}, {reqs(r['sdk']['requests'])}",
             f"{ratio(s, a)} first; {ratio(s, g)} again")
    if "5" in rows:
        r = rows["5"]["data"]
        o = r["resync"]
        task = f"no-change re-sync of a {r['runs']:,}-run project (requests counted by the emulator)"
        ours = (f"`wandbfs sync`: {fs(o['seconds'])}, {reqs(o['requests'])} (it lists the {o['runs']:,} runs "
                f"that are running or changed since the last sync: the seed leaves every 10th run `running`)")
        line(5, task, ours,
             f"SDK cheapest check: `api.runs(path, per_page=1000, lazy=False)`, reading each run's "
             f"`historyLineCount` and `summary_metrics`: {fs(r['cheap']['seconds'])}, {reqs(r['cheap']['requests'])}",
             f"{ratio(r['cheap']['seconds'], o['seconds'])}; {o['requests']:,} vs "
             f"{r['cheap']['requests']['total']:,} requests")
        line(5, "same", "same",
             f"SDK as documented: `api.runs(path)`, then `run.lastHistoryStep` and `run.summary_metrics` "
             f"per run: {fs(r['naive']['seconds'])}, {reqs(r['naive']['requests'])}",
             f"{ratio(r['naive']['seconds'], o['seconds'])}; {o['requests']:,} vs "
             f"{r['naive']['requests']['total']:,} requests")
    # Row 6: peak RSS, from the rows above.
    if "1" in rows:
        r = rows["1"]["data"]
        ours = r["wandbfs"]["maxrss_kib"]
        line(6, "peak RSS: history into Postgres (row 1)", f"`wandbfs sync`: {fmib(ours)}",
             f"SDK pipeline: {fmib(r['sdk']['peak_rss_kib'])}; ORM downloader: {fmib(r['orm']['peak_rss_kib'])} "
             f"(python + `wandb-core`, sampled)",
             f"vs SDK pipeline: {mem_ratio(r['sdk']['peak_rss_kib'], ours)}; vs ORM downloader: "
             f"{mem_ratio(r['orm']['peak_rss_kib'], ours)}")
    parts, base = [], []
    if "2" in rows:
        d = rows["2"]["data"]
        parts.append(f"listing (row 2): {fmib(d['daemon_hwm_kib'])}")
        base.append(f"SDK listing {fmib(d['sdk']['peak_rss_kib'])}, wandbfsspec {fmib(d['fsspec']['peak_rss_kib'])}")
    if "3" in rows:
        d = rows["3"]["data"]
        parts.append("reading the files (row 3): " + ", ".join(
            f"{fmib(d[k]['daemon_hwm_kib'])} ({human_size(d[k]['bytes'])})" for k in ("small", "big") if k in d))
        for k in ("small", "big"):
            if k in d:
                base.append(f"{human_size(d[k]['bytes'])} file: wandbfsspec `cat_file` "
                            f"{fmib(d[k]['fsspec']['peak_rss_kib'])}, SDK download {fmib(d[k]['sdk']['peak_rss_kib'])}")
    if "4" in rows:
        d = rows["4"]["data"]
        parts.append(f"pandas (row 4): {fmib(d['daemon_hwm_kib'])}")
        base.append(f"SDK pandas loop {fmib(d['sdk']['peak_rss_kib'])} (pandas over the mount: "
                    f"{fmib(d['first']['peak_rss_kib'])} + the daemon)")
    if parts:
        line(6, "peak RSS of the mount daemon (VmHWM), rows 2–4", "; ".join(parts),
             "Python baselines of those rows: " + "; ".join(base), "—")
    return L


def plot_entries(rows: dict) -> list[tuple[str, str, float, bool]]:
    """(task, tool, seconds, is_wandbfs) for the chart."""
    E = []
    if "1" in rows:
        r = rows["1"]["data"]
        t = f"history → Postgres\n({r['rows']:,} rows)"
        E += [(t, "wandbfs sync", r["wandbfs"]["seconds"], True),
              (t, "SDK + psycopg COPY", r["sdk"]["seconds"], False),
              (t, "SDK + SQLAlchemy ORM", r["orm"]["seconds"], False)]
    if "2" in rows:
        r = rows["2"]["data"]
        t = f"ls -l {r['runs']:,} runs"
        E += [(t, "mount, fresh", r["fresh"]["seconds"], True),
              (t, "mount, first (renders)", r["first"]["seconds"], True)]
        if "no_xattr" in r:
            E.append((t, "mount --no-xattr", r["no_xattr"]["seconds"], True))
        E += [(t, "SDK api.runs", r["sdk"]["seconds"], False),
              (t, "wandbfsspec ls", r["fsspec"]["seconds"], False)]
    if "3" in rows:
        for label in ("small", "big"):
            r = rows["3"]["data"].get(label)
            if r:
                t = f"read {human_size(r['bytes'])} file"
                E += [(t, "mount cold", r["cold"]["seconds"], True),
                      (t, "mount warm", r["warm"]["seconds"], True),
                      (t, "curl", r["curl"]["seconds"], False),
                      (t, "wandbfsspec cat_file", r["fsspec"]["seconds"], False),
                      (t, "SDK download", r["sdk"]["seconds"], False)]
    if "4" in rows:
        r = rows["4"]["data"]
        t = f"{r['runs']} runs → pandas\n({r['rows']:,} rows)"
        E += [(t, "mount, first (renders)", r["first"]["seconds"], True),
              (t, "mount, again", r["again"]["seconds"], True),
              (t, "SDK scan_history loop", r["sdk"]["seconds"], False)]
    if "5" in rows:
        r = rows["5"]["data"]
        t = f"no-change re-sync\n{r['runs']:,} runs"
        E += [(t, "wandbfs sync", r["resync"]["seconds"], True),
              (t, "SDK cheapest check", r["cheap"]["seconds"], False),
              (t, "SDK lastHistoryStep loop", r["naive"]["seconds"], False)]
    return E


def plot_title(results: dict) -> str:
    dates = sorted(m["date"] for m in results["runs"].values())
    mach = results["runs"][max(results["runs"])]["machine"]
    return (f"wandbfs (orange) vs baselines — integration/bench/compare, {' / '.join(dates)}, "
            f"{mach['nproc']} vCPU")


def write_plot(rows: dict, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    entries = plot_entries(rows)
    if not entries:
        return
    labels, values, colors, yticks, ytick_labels, group_centres = [], [], [], [], [], []
    y = 0.0
    current, start = None, 0.0
    for task, tool, sec, ours in entries:
        if task != current:
            if current is not None:
                group_centres.append(((start + y - 1) / 2, current))
                y += 0.8
            current, start = task, y
        labels.append(tool)
        values.append(sec)
        colors.append("#d95f02" if ours else "#7570b3")
        yticks.append(y)
        ytick_labels.append(tool)
        y += 1
    group_centres.append(((start + y - 1) / 2, current))
    fig, ax = plt.subplots(figsize=(10, 0.32 * y + 1.6))
    ax.barh(yticks, values, color=colors, height=0.8)
    ax.set_xscale("log")
    ax.set_yticks(yticks, ytick_labels, fontsize=8)
    ax.invert_yaxis()
    for yy, v in zip(yticks, values):
        ax.text(v * 1.05, yy, fs(v), va="center", fontsize=7)
    ax.set_xlim(min(values) / 2, max(values) * 4)
    for centre, task in group_centres:
        ax.text(1.01, centre, task, transform=ax.get_yaxis_transform(), va="center", fontsize=8,
                fontweight="bold")
    ax.set_xlabel("seconds (log scale; shorter is better)")
    ax.set_title(title, fontsize=10)
    from matplotlib.patches import Patch

    ax.legend(handles=[Patch(color="#d95f02", label="wandbfs"), Patch(color="#7570b3", label="baseline")],
              loc="lower right", fontsize=8)
    ax.grid(axis="x", which="both", alpha=0.25)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


DOC_INTRO = """\
One command sets up one `wandb-emulator` with generated projects and one throwaway PostgreSQL
cluster, then measures each task the way wandbfs does it next to the way W&B users do it today,
in the same run (the table and `benchmarks-compare.png` below are written by it; re-running it
replaces this section):

```sh
sudo integration/bench/compare            # full sizes, ~12–20 min on 2 cores
sudo integration/bench/compare --quick    # tiny sizes, for a smoke test (prints, writes no docs)
sudo integration/bench/compare --only 3   # re-measure one row (1–5); the others keep their numbers
```

It needs root (real FUSE mounts, `echo 3 > /proc/sys/vm/drop_caches`), `/dev/fuse`, `curl` and
PostgreSQL server binaries. Unless `WANDBFS_BIN` and `WANDB_EMULATOR_BIN` name prebuilt binaries,
it builds them (`cargo build --release -p wandbfs-mount -p wandb-emulator`, `CARGO_TARGET_DIR`
defaults to `/var/tmp/wandbfs-target`). It creates a Python venv (`.venv-bench`, or `BENCH_VENV`)
with `integration/requirements.txt` (the pinned `wandb` 0.31.0 SDK, pandas, pyarrow),
`integration/bench/requirements-bench.txt` (psycopg, SQLAlchemy, matplotlib, fsspec) and
`wandbfsspec==0.2.0` (`--no-deps --ignore-requires-python`: it pins `wandb<0.14`). Sizes are
flags (`--help`); everything lives in a work directory under `/var/tmp` that is removed at the
end, mounts unmounted and the emulator and cluster stopped also on errors and Ctrl-C.

What each row compares (ratio = baseline time ÷ wandbfs time: above 1, wandbfs is faster):

1. **History into Postgres.** `wandbfs sync ENTITY/PROJECT` (default `--jobs 4`) vs
   `integration/bench/sdk_pipeline.py` (`scan_history()` per run, rows `COPY`'d with psycopg into
   a jsonb table, a transaction per run) vs `integration/bench/orm_downloader.py`, the "W&B →
   PostgreSQL downloader" of the tutorials (`scan_history()` per run, one SQLAlchemy ORM object
   per step — id, run_id, step, data JSONB — one `Session` and one commit per run). All three
   write into the same cluster (fsync on), different databases; row counts are checked.
2. **Listing a project.** `ls -l` of the synced project on a fresh mount of the real daemon
   (page cache dropped; the median of `--repeats` mounts, plus the very first mount, whose
   empty cache directory makes it render `runs.parquet`) vs the SDK's `len(list(api.runs(path)))`
   vs wandbfsspec 0.2.0 `fs.ls(path)`; and the same `ls -l` on mounts made with `--no-xattr`.
3. **Reading a run file** (100 MiB and 1 GiB). The mount cold (fresh mount, empty content cache,
   page cache dropped) and warm (content cache filled, page cache dropped), with `dd bs=1M`, vs
   `curl` of the file's URL, wandbfsspec `fs.cat_file(path)` (the whole file into memory) and the
   SDK's `run.file(name).download()` (to local disk).
4. **Full history into pandas.** `pd.concat(pd.read_parquet(f) for f in
   glob("…/ENTITY/PROJECT/*/history.parquet"))` over a fresh mount (its first read renders each
   run's table; then again, page cache dropped) vs the SDK loop `pd.DataFrame(run.scan_history())`
   per run and `pd.concat`.
5. **No-change re-sync.** `wandbfs sync` of the already synced, unchanged project vs the SDK's
   cheapest way to learn whether anything changed — one listing with full run data,
   `api.runs(path, per_page=1000, lazy=False)`, reading every run's `historyLineCount` and
   `summary_metrics` — and vs the same check as the SDK documents it (`api.runs(path)`, then
   `run.lastHistoryStep` and `run.summary_metrics` per run: two requests per run). Requests are
   the emulator's own count (it logs every request it serves, `RUST_LOG=wandb_emulator::http=debug`).
6. **Peak RSS.** `wandbfs sync` of row 1 (`ru_maxrss` from `wait4`) vs the Python baselines
   (python plus the SDK's `wandb-core` service process, summed and sampled every 50 ms); the
   mount daemon's `VmHWM` in rows 2–4 next to those rows' Python baselines.

Python baselines are timed inside the interpreter after their imports (start-up excluded, which
favours them by ~1–2 s), `wandb.Api()` (it starts `wandb-core`) included; `wandbfs`, `ls`, `dd`
and `curl` by their process's wall time. Rows 2, 3, 5 and the second pandas read are the median
of `--repeats` (3) runs; the slow baselines run once. The machine's two cores are shared by the
emulator, PostgreSQL, the client — and, on this VM, whatever else runs (load averages below).
"""


def render_section(results: dict) -> str:
    rows = results["rows"]
    meta = results["runs"]
    lines = [SECTION_TITLE, "", DOC_INTRO]
    dates = sorted({rows[k]["run"] for k in rows})
    for run_key in dates:
        m = meta[run_key]
        mach = m["machine"]
        which = ", ".join(k for k in sorted(rows) if rows[k]["run"] == run_key)
        n_rows = sum(1 for k in rows if rows[k]["run"] == run_key)
        took = f"{m['duration_min']:.0f} min" if m["duration_min"] >= 1 else f"{m['duration_min'] * 60:.0f} s"
        lines.append(
            f"**Row{'s' if n_rows > 1 else ''} {which}** — measured {m['date']} ({took} for the whole command"
            f"{', `--only ' + m['only'] + '`' if m.get('only') else ''}{', `--quick`' if m.get('quick') else ''}) on "
            f"{mach['nproc']} vCPU ({mach['cpu']}), {mach['memory_gib']} GiB, {mach['distro']}, kernel "
            f"{mach['kernel']}, PostgreSQL {m.get('postgres', '?')}, `wandb` {m.get('wandb', '?')}; load "
            f"average {m['load_start']} at the start, {m['load_end']} at the end; binaries: `wandbfs` "
            f"{m.get('wandbfs_version', '?')} built {m.get('wandbfs_mtime', '?')} (repository at `{m.get('git', '?')}`).")
        lines.append("")
    lines += table_lines(rows)
    lines.append("")
    notes = setup_notes(rows)
    if notes:
        lines += notes + [""]
    lines.append(f"![seconds per task, wandbfs vs baselines, log scale]({PNG.name})")
    lines.append("")
    payload = json.dumps(results, sort_keys=True, separators=(",", ":")).replace("--", "-\\u002d")
    lines.append(f"<!-- {RESULTS_MARK} {payload} -->")
    return "\n".join(lines) + "\n"


def setup_notes(rows: dict) -> list[str]:
    out = []
    if "2" in rows:
        s = rows["2"]["data"]["setup_sync"]
        out.append(f"Setup, not in the table: the first `wandbfs sync` of the {s['runs']:,}-run project "
                   f"took {fs(s['seconds'])} ({reqs(s['requests'])}), peak RSS {fmib(s['maxrss_kib'])}.")
    if "1" in rows:
        r = rows["1"]["data"]
        out.append(f"Row 1 rows written: wandbfs {r['wandbfs']['rows']:,}, SDK pipeline {r['sdk']['db_rows']:,} "
                   f"(counted in Postgres), ORM downloader {r['orm']['db_rows']:,}; the SDK pipeline made "
                   f"{reqs(r['sdk']['requests'])}, the ORM downloader {reqs(r['orm']['requests'])}.")
    loads = [f"row {k}: {rows[k]['data']['load'][0].split()[0]} → {rows[k]['data']['load'][1].split()[0]}"
             for k in sorted(rows) if "load" in rows[k]["data"]]
    if loads:
        out.append("One-minute load average before → after each row (2 cores; anything above the "
                   "benchmark's own processes is other work on the machine): " + "; ".join(loads) + ".")
    return [("- " + n) for n in out]


def load_previous() -> dict | None:
    try:
        text = DOC.read_text()
    except OSError:
        return None
    m = re.search(r"<!-- " + re.escape(RESULTS_MARK) + r" (\{.*?\}) -->", text, re.S)
    if not m:
        return None
    try:
        return json.loads(m.group(1))
    except json.JSONDecodeError:
        return None


def write_doc(section: str) -> None:
    text = DOC.read_text()
    lines = text.splitlines(keepends=True)
    start = next((i for i, l in enumerate(lines) if l.rstrip("\n") == SECTION_TITLE), None)
    if start is None:
        new = text.rstrip("\n") + "\n\n" + section
    else:
        end = next((j for j in range(start + 1, len(lines)) if lines[j].startswith("## ")), len(lines))
        tail = "".join(lines[end:])
        new = "".join(lines[:start]) + section + ("\n" + tail if tail else "")
    DOC.write_text(new)
