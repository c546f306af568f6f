//! The typed tables through the mount, against the JSON Lines they replace, measured in the
//! same run on one emulator and one Postgres cluster.
//!
//! Run: `cargo bench -p wandbfs-mount --bench tables` (root, /dev/fuse, the SDK venv with
//! DuckDB and polars: `$WANDBFS_PYTHON`, default `<repo>/.venv/bin/python`).
//!
//! Environment: `WANDBFS_BENCH_RUNS` (100), `WANDBFS_BENCH_ROWS` (10,000 rows per run),
//! `WANDBFS_BENCH_KEYS` (20 keys per row).
//!
//! 1. Sync of the project (nothing rendered), then (after 2.) the first `stat` of every run's
//!    `history.parquet` (the rendering) — what a sync that rendered the tables would cost.
//! 2. `ls -l` of one run directory, first (renders its two tables) and again.
//! 3. DuckDB `select avg(loss)` over `*/history.parquet` vs the same over `*/history.jsonl`,
//!    page cache dropped and warm (median of 3).
//! 4. polars `scan_parquet` of one column over the glob (polars cannot read W&B's JSON dialect;
//!    the baseline is DuckDB over `history.jsonl`).
//! 5. Bytes of the parquet files vs the JSON Lines.

mod bench_support;

use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use bench_support::*;
use wandb_emulator::{EmulatorConfig, SeedSpec};

/// Runs `code` with the venv's Python; returns its last stdout line.
fn py(code: &str) -> anyhow::Result<String> {
    let out = std::process::Command::new(python())
        .args(["-c", code])
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .to_owned())
}

/// The median of `REPEATS` runs of `f`, with the page cache dropped first when `cold`. `f`
/// prints "<value> <seconds>": the query's own time, measured inside Python (so the
/// interpreter's start and imports are not counted); the value of the last run is returned.
fn timed(
    cold: bool,
    mut f: impl FnMut() -> anyhow::Result<String>,
) -> anyhow::Result<(Duration, String)> {
    let mut times = Vec::new();
    let mut last = String::new();
    for _ in 0..REPEATS {
        if cold {
            drop_caches();
        }
        let out = f()?;
        let (value, secs) = out
            .rsplit_once(' ')
            .with_context(|| format!("no time in {out:?}"))?;
        times.push(Duration::from_secs_f64(secs.parse()?));
        last = value.to_owned();
    }
    Ok((median(times), last))
}

fn total_size(project: &Path, name: &str) -> anyhow::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(project)? {
        let path = entry?.path().join(name);
        if let Ok(meta) = std::fs::metadata(&path) {
            total += meta.len();
        }
    }
    Ok(total)
}

fn main() -> anyhow::Result<()> {
    let runs = env_u64("WANDBFS_BENCH_RUNS", 100);
    let rows = env_u64("WANDBFS_BENCH_ROWS", 10_000);
    let keys = env_u64("WANDBFS_BENCH_KEYS", 20) as u32;
    let config = EmulatorConfig::default().seed(
        SeedSpec::new("alice", "tables")
            .runs(runs)
            .steps(rows)
            .keys(keys)
            .files(0)
            .bigfile(0),
    );
    let (bench, _cluster) = Bench::start(config)?;
    let work = tempfile::tempdir_in("/var/tmp")?;
    println!("setup: alice/tables, {runs} runs x {rows} rows x {keys} keys");
    let synced = bench.sync("alice/tables")?;
    let (mnt, pid) = bench.mount(
        &work.path().join("a"),
        &[
            "--cache-dir",
            &work.path().join("cache").display().to_string(),
        ],
    )?;
    let project = mnt.join("alice/tables");
    let run_ids: Vec<String> = bench
        .emu
        .runs("alice", "tables")
        .into_iter()
        .map(|r| r.name)
        .collect();

    println!();
    println!("| Work | wandbfs | baseline | ratio |");
    println!("|---|---|---|---|");

    // 2. ls -l of a run directory: the first renders its two tables (history and system).
    let fresh = project.join(&run_ids[run_ids.len() - 1]);
    let (ls_first, _) = time(|| sh(&format!("ls -l {} > /dev/null", fresh.display())));
    let (ls_again, _) = time(|| sh(&format!("ls -l {} > /dev/null", fresh.display())));
    line(
        "`ls -l` of a run directory, first (renders 2 tables)",
        format!("{:.0} ms", ls_first.as_secs_f64() * 1e3),
        format!("{:.1} ms (again)", ls_again.as_secs_f64() * 1e3),
        format!("{:.0}x", ls_first.as_secs_f64() / ls_again.as_secs_f64()),
    );

    // 1. What rendering costs, next to the sync it is not part of.
    let (render, _) = time(|| {
        for run in &run_ids {
            std::fs::metadata(project.join(run).join("history.parquet"))?;
        }
        anyhow::Ok(())
    });
    line(
        &format!("sync of {runs} runs x {rows} rows (renders nothing)"),
        format!("{:.1} s", synced.as_secs_f64()),
        format!(
            "{:.1} s + {:.1} s to render every history.parquet (first stat)",
            synced.as_secs_f64(),
            render.as_secs_f64()
        ),
        format!(
            "a sync that rendered would take {:.2}x",
            (synced + render).as_secs_f64() / synced.as_secs_f64()
        ),
    );

    // 3. DuckDB over the glob, parquet vs jsonl.
    let parquet_glob = project.join("*").join("history.parquet");
    let jsonl_glob = project.join("*").join("history.jsonl");
    let duck = |sql: String| {
        move || {
            py(&format!(
                "import duckdb, time; c = duckdb.connect(); t = time.perf_counter(); \
                 v = c.execute({sql:?}).fetchone()[0]; print(v, time.perf_counter() - t)"
            ))
        }
    };
    let parquet_sql = format!(
        "select avg(loss) from read_parquet('{}', union_by_name = true)",
        parquet_glob.display()
    );
    let jsonl_sql = format!(
        "select avg(loss) from read_json('{}', format = 'newline_delimited', union_by_name = true)",
        jsonl_glob.display()
    );
    for cold in [true, false] {
        let (p, p_out) = timed(cold, duck(parquet_sql.clone()))?;
        let (j, j_out) = timed(cold, duck(jsonl_sql.clone()))?;
        let (pv, jv): (f64, f64) = (p_out.parse()?, j_out.parse()?);
        anyhow::ensure!(
            (pv - jv).abs() <= 1e-9 * jv.abs(),
            "avg(loss): parquet {pv} vs jsonl {jv}"
        );
        line(
            &format!(
                "DuckDB `avg(loss)` over {runs} runs, {}",
                if cold { "page cache dropped" } else { "warm" }
            ),
            format!("{:.2} s (history.parquet)", p.as_secs_f64()),
            format!("{:.2} s (history.jsonl)", j.as_secs_f64()),
            format!("{:.1}x", j.as_secs_f64() / p.as_secs_f64()),
        );
    }

    // The same parquet query over a local copy: what the mount adds to a query.
    let local = work.path().join("local");
    for run in &run_ids {
        std::fs::create_dir_all(local.join(run))?;
        std::fs::copy(
            project.join(run).join("history.parquet"),
            local.join(run).join("history.parquet"),
        )?;
    }
    let local_sql = format!(
        "select avg(loss) from read_parquet('{}', union_by_name = true)",
        local.join("*").join("history.parquet").display()
    );
    let (m, _) = timed(false, duck(parquet_sql.clone()))?;
    let (l, _) = timed(false, duck(local_sql))?;
    line(
        "DuckDB `avg(loss)` over history.parquet, warm: mount vs local copy",
        format!("{:.3} s (mount)", m.as_secs_f64()),
        format!("{:.3} s (local files)", l.as_secs_f64()),
        format!("{:.0} %", 100.0 * l.as_secs_f64() / m.as_secs_f64()),
    );

    // 4. polars, one column over the glob.
    let polars = || {
        py(&format!(
            "import polars as pl, time; t = time.perf_counter(); \
             v = pl.scan_parquet({:?}, missing_columns='insert', extra_columns='ignore').select(pl.col('loss').mean()).collect().item(); \
             print(v, time.perf_counter() - t)",
            parquet_glob.display().to_string()
        ))
    };
    let (pl_cold, _) = timed(true, polars)?;
    let (j_cold, _) = timed(true, duck(jsonl_sql.clone()))?;
    line(
        "polars `scan_parquet` one column, page cache dropped",
        format!("{:.2} s", pl_cold.as_secs_f64()),
        format!(
            "{:.2} s (DuckDB over history.jsonl; polars cannot read it)",
            j_cold.as_secs_f64()
        ),
        format!("{:.1}x", j_cold.as_secs_f64() / pl_cold.as_secs_f64()),
    );

    // 5. Bytes.
    let parquet_bytes = total_size(&project, "history.parquet")?;
    let jsonl_bytes = total_size(&project, "history.jsonl")?;
    line(
        "bytes of every run's history",
        format!("{:.1} MB (parquet)", parquet_bytes as f64 / 1e6),
        format!("{:.1} MB (jsonl)", jsonl_bytes as f64 / 1e6),
        format!("{:.1}x smaller", jsonl_bytes as f64 / parquet_bytes as f64),
    );
    bench.unmount(&mnt, pid);
    Ok(())
}
