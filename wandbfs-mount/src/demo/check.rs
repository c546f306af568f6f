//! The commands the demo prints, and `--check`: running each against the mount and asserting
//! what it shows, so the README's promise is a test.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};

use super::world::{ENTITY, PROJECT, World};

/// How long `tail -f` may wait for the live run's next row before the check fails: the SDK
/// sends every second and the mount syncs every two, so rows normally show within seconds;
/// the bound only keeps a broken pipeline from hanging the check (2 busy cores can be slow).
const TAIL_LIMIT: Duration = Duration::from_secs(300);

/// What the demo needs to print and check its commands.
pub struct Tour {
    /// The project's directory in the mount.
    pub project_dir: PathBuf,
    /// A finished run.
    pub finished_run: String,
    /// The run that keeps logging.
    pub live_run: String,
    /// Python with duckdb and pandas.
    pub python: Option<PathBuf>,
    /// `psql` and the embedded cluster's connection string.
    pub psql: (String, String),
}

/// One command to try.
pub struct Try {
    /// What it shows.
    pub what: &'static str,
    /// The shell command.
    pub command: String,
}

impl Tour {
    /// The six commands, in the order printed.
    pub fn commands(&self) -> Vec<Try> {
        let project = quote(&self.project_dir);
        let python = self
            .python
            .as_deref()
            .map_or_else(|| "python3".to_owned(), quote);
        let (psql, connect) = &self.psql;
        vec![
            Try {
                what: "every run is a directory",
                command: format!("ls -l {project}"),
            },
            Try {
                what: "a run's full history, never sampled",
                command: format!(
                    "cat {project}/{}/history.jsonl | head -n 3",
                    self.finished_run
                ),
            },
            Try {
                what: "follow the live run (Ctrl-C to stop)",
                command: format!("tail -f {project}/{}/history.jsonl", self.live_run),
            },
            Try {
                what: "every run's history with DuckDB, typed",
                command: format!(
                    "{python} -c 'import duckdb; print(duckdb.read_parquet(\"{}/*/history.parquet\", \
                     union_by_name=True).aggregate(\"run_id, count(*) as rows, min(loss) as best_loss\", \
                     \"run_id\").order(\"run_id\"))'",
                    self.project_dir.display()
                ),
            },
            Try {
                what: "SQL over the mirror",
                command: format!(
                    "{psql} \"{connect}\" -c \"select run_id, count(*) as rows, min(value) as \
                     best_loss from wandb.metrics where project = '{PROJECT}' and key = 'loss' \
                     group by run_id order by run_id\""
                ),
            },
            Try {
                what: "a run's metadata as extended attributes",
                command: format!("getfattr -d {project}/{}", self.live_run),
            },
        ]
    }

    /// What the tour mentions besides: media files, artifact aliases, the project table.
    pub fn more(&self) -> Vec<Try> {
        let project = quote(&self.project_dir);
        let python = self
            .python
            .as_deref()
            .map_or_else(|| "python3".to_owned(), quote);
        vec![
            Try {
                what: "media files",
                command: format!("ls {project}/{}/media/images", self.finished_run),
            },
            Try {
                what: "artifact versions, aliases as links",
                command: format!("ls -l {project}/artifacts/model/model-1"),
            },
            Try {
                what: "every run with its config and summary, in pandas",
                command: format!(
                    "{python} -c 'import pandas as pd; print(pd.read_parquet(\"{}/runs.parquet\")\
                     [[\"run_id\", \"state\", \"history_rows\"]])'",
                    self.project_dir.display()
                ),
            },
        ]
    }

    /// Runs every command and checks its output against the emulator's ground truth.
    pub fn check(&self, world: &World) -> anyhow::Result<()> {
        ensure!(
            self.python.is_some(),
            "--check needs a Python with duckdb and pandas (--python or WANDBFS_PYTHON)"
        );
        let commands = self.commands();
        let seeded: Vec<&str> = world.runs.iter().map(|(id, _)| id.as_str()).collect();

        // 1. ls: every run, the project table, the artifacts.
        let out = output(&commands[0].command)?;
        for run in seeded.iter().copied().chain([self.live_run.as_str()]) {
            ensure!(out.contains(run), "`ls` does not list run {run}:\n{out}");
        }
        for name in ["runs.parquet", "artifacts"] {
            ensure!(out.contains(name), "`ls` does not list {name}:\n{out}");
        }
        passed(&commands[0]);

        // 2. the first rows of a finished run's history.
        let out = output(&commands[1].command)?;
        let steps: Vec<i64> = out
            .lines()
            .map(|line| step_of(line).with_context(|| format!("not a history row: {line}")))
            .collect::<anyhow::Result<_>>()?;
        ensure!(
            steps == [0, 1, 2],
            "history.jsonl starts with steps {steps:?}"
        );
        passed(&commands[1]);

        // 3. tail -f shows a row logged after it started.
        let history = self.project_dir.join(&self.live_run).join("history.jsonl");
        let text = std::fs::read_to_string(&history)
            .with_context(|| format!("reading {}", history.display()))?;
        let last = text.lines().filter_map(step_of).max();
        follow(&commands[2].command, last)?;
        passed(&commands[2]);

        // 4. DuckDB: every seeded run has all its rows.
        let out = output(&commands[3].command)?;
        let counts = table_rows(&out);
        for run in &seeded {
            let rows = counts.iter().find(|(id, _)| id == run).map(|(_, n)| *n);
            ensure!(
                rows == Some(world.steps),
                "DuckDB counts {rows:?} rows for run {run}, the emulator has {}:\n{out}",
                world.steps
            );
        }
        ensure!(
            counts.iter().any(|(id, n)| id == &self.live_run && *n > 0),
            "DuckDB sees no row of the live run {}:\n{out}",
            self.live_run
        );
        passed(&commands[3]);

        // 5. psql: the same counts from wandb.metrics.
        let out = output(&commands[4].command)?;
        for run in &seeded {
            let line = out.lines().find(|l| l.trim_start().starts_with(run));
            let rows = line.and_then(|l| l.split('|').nth(1)).map(str::trim);
            ensure!(
                rows == Some(world.steps.to_string().as_str()),
                "psql shows {rows:?} loss values for run {run}, expected {}:\n{out}",
                world.steps
            );
        }
        passed(&commands[4]);

        // 6. getfattr: the live run is running.
        let out = output(&commands[5].command)?;
        ensure!(
            out.contains("user.wandb.state=\"running\""),
            "getfattr does not show the live run as running:\n{out}"
        );
        passed(&commands[5]);

        // And what the tour mentions besides.
        let more = self.more();
        let out = output(&more[0].command)?;
        ensure!(
            out.contains(".png"),
            "no image in {}:\n{out}",
            more[0].command
        );
        passed(&more[0]);
        let out = output(&more[1].command)?;
        ensure!(
            out.contains("latest -> v") && out.contains("v0"),
            "no versions or alias links:\n{out}"
        );
        passed(&more[1]);
        let out = output(&more[2].command)?;
        for (run, state) in &world.runs {
            ensure!(
                out.lines()
                    .any(|l| l.contains(run.as_str()) && l.contains(state.as_str())),
                "runs.parquet has no row for run {run} ({state}):\n{out}"
            );
        }
        passed(&more[2]);
        Ok(())
    }
}

/// A shell word for `path` (quoted when it needs to be).
pub fn quote(path: &Path) -> String {
    let text = path.display().to_string();
    if text
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-+=:,@".contains(c))
    {
        text
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}

fn passed(command: &Try) {
    println!("  ok    {}", command.command);
}

/// Runs a command through `sh -c`; its stdout, or its failure with stderr.
fn output(command: &str) -> anyhow::Result<String> {
    let out = Command::new("sh")
        .args(["-c", command])
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {command}"))?;
    ensure!(
        out.status.success(),
        "`{command}` failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The `_step` of a history line.
fn step_of(line: &str) -> Option<i64> {
    serde_json::from_str::<serde_json::Value>(&line.replace("NaN", "null"))
        .ok()
        .and_then(|v| v.get("_step").and_then(|s| s.as_i64()))
}

/// Runs `tail -f` until it prints a row with a later step than `last` (the file's last step
/// before it started): `tail` first prints the file's last lines, which prove nothing.
fn follow(command: &str, last: Option<i64>) -> anyhow::Result<()> {
    let mut child = Command::new("sh")
        .args(["-c", &format!("exec {command}")])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("running {command}"))?;
    let stdout = child.stdout.take().context("tail's stdout")?;
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let started = Instant::now();
    let result = loop {
        let left = TAIL_LIMIT.saturating_sub(started.elapsed());
        match lines.recv_timeout(left) {
            Ok(line) => match step_of(&line) {
                Some(step) if last.is_none_or(|last| step > last) => {
                    let before = last.map_or("no row".to_owned(), |l| format!("step {l}"));
                    println!(
                        "        tail -f: the file ended at {before}; step {step} arrived after \
                         {:.1} s",
                        started.elapsed().as_secs_f64()
                    );
                    break Ok(());
                }
                _ => {}
            },
            Err(RecvTimeoutError::Timeout) => {
                break Err(anyhow::anyhow!(
                    "`{command}` showed no row after step {last:?} within {} s",
                    TAIL_LIMIT.as_secs()
                ));
            }
            Err(RecvTimeoutError::Disconnected) => bail!("`{command}` ended"),
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    result
}

/// `(first column, second column)` of a DuckDB box table's data lines.
fn table_rows(text: &str) -> Vec<(String, u64)> {
    text.lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('│').map(str::trim).collect();
            // "│ id │ n │ x │" splits into ["", id, n, x, ""].
            let id = cells.get(1)?;
            let n = cells.get(2)?.parse().ok()?;
            Some(((*id).to_owned(), n))
        })
        .collect()
}

/// Where `psql` is: on `PATH`, else next to the server programs.
pub fn psql_program(bin_dir: Option<&Path>) -> String {
    let on_path = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join("psql").is_file()));
    match bin_dir {
        Some(dir) if !on_path && dir.join("psql").is_file() => quote(&dir.join("psql")),
        _ => "psql".to_owned(),
    }
}

/// The entity/project path the demo mounts and syncs.
pub fn project_path() -> String {
    format!("{ENTITY}/{PROJECT}")
}
