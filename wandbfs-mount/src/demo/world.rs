//! The demo's W&B: an in-process emulator holding a realistic project, and a run that keeps
//! logging into it while the demo is up.
//!
//! The project is seeded (deterministic, instant): finished runs with long histories, a
//! running, a crashed and a failed run, media files under `media/images/`, two artifact
//! collections with versions and aliases (`latest`, `validated`, `baseline`, `production`).
//! The live run is written by the real `wandb` SDK when a Python with it is at hand — the same
//! path a user's training script takes — and otherwise by appending rows to the seeded running
//! run from here.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use wandb_emulator::{Emulator, EmulatorConfig, RunKey, SeedSpec};

/// The demo's entity (the emulator's user).
pub const ENTITY: &str = "demo";
/// The demo's project.
pub const PROJECT: &str = "cifar-resnet";
/// Runs seeded: indices 0–6 finish, 7 is running, 8 crashed, 9 failed (see the emulator's
/// seed module).
const SEEDED_RUNS: u64 = 10;
/// The size of the checkpoint-like file of the first run (generated lazily when read).
const BIG_FILE: u64 = 100 << 20;
/// How long the SDK may take to start its run before the demo writes the live run itself
/// (a first `wandb.init` imports a lot and starts `wandb-core`: ~5–10 s here).
const SDK_START_LIMIT: Duration = Duration::from_secs(180);

/// The emulator and what it holds.
pub struct World {
    /// The running emulator (shared with the appender thread).
    pub emulator: Arc<Emulator>,
    /// Seeded runs with their states, in creation order.
    pub runs: Vec<(String, String)>,
    /// History rows of each seeded run.
    pub steps: u64,
}

impl World {
    /// Starts the emulator with the seeded project.
    pub fn start(steps: u64) -> anyhow::Result<World> {
        let spec = SeedSpec::new(ENTITY, PROJECT)
            .runs(SEEDED_RUNS)
            .steps(steps)
            .keys(12)
            .files(4)
            .bigfile(BIG_FILE)
            .artifacts(2)
            .artifact_bigfile(4 << 20);
        let emulator = Emulator::start_with(EmulatorConfig {
            entity: ENTITY.to_owned(),
            seeds: vec![spec],
            ..EmulatorConfig::default()
        })
        .context("starting the W&B emulator")?;
        let runs = emulator
            .runs(ENTITY, PROJECT)
            .into_iter()
            .filter_map(|key| emulator.run_info(&key))
            .map(|info| (info.key.name, info.state))
            .collect();
        Ok(World {
            emulator: Arc::new(emulator),
            runs,
            steps,
        })
    }

    /// The first seeded run in `state`.
    pub fn run_in_state(&self, state: &str) -> Option<&str> {
        self.runs
            .iter()
            .find(|(_, s)| s == state)
            .map(|(id, _)| id.as_str())
    }
}

/// The run that keeps logging while the demo is up.
pub enum LiveRun {
    /// A real SDK process (its own process group, so Ctrl-C in the terminal reaches only the
    /// demo, which stops it in order).
    Sdk {
        /// The Python process.
        child: Child,
        /// Its run id.
        run_id: String,
    },
    /// Rows appended to the seeded running run from a thread of the demo.
    Appender {
        /// Set to stop the thread.
        stop: Arc<AtomicBool>,
        /// The thread.
        thread: JoinHandle<()>,
        /// The run id.
        run_id: String,
    },
}

impl LiveRun {
    /// The live run's id.
    pub fn run_id(&self) -> &str {
        match self {
            LiveRun::Sdk { run_id, .. } | LiveRun::Appender { run_id, .. } => run_id,
        }
    }

    /// Who writes it, for the demo's narration.
    pub fn writer(&self) -> &'static str {
        match self {
            LiveRun::Sdk { .. } => "the real wandb SDK (a Python process)",
            LiveRun::Appender { .. } => "the demo itself (no Python with wandb found)",
        }
    }

    /// Starts the SDK's live run, waiting for its `ready` line. `Ok(None)` when the SDK did not
    /// get there (the reason is printed), so the caller can fall back to the appender.
    pub fn start_sdk(
        python: &Path,
        script: &Path,
        env: &[(String, String)],
        log: &Path,
        interrupted: &Receiver<()>,
    ) -> anyhow::Result<Option<LiveRun>> {
        use std::os::unix::process::CommandExt;
        let log_file =
            std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let mut child = Command::new(python)
            .arg(script)
            .arg(PROJECT)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .env("WANDB_ENTITY", ENTITY)
            .env("WANDB_DIR", log.parent().unwrap_or(Path::new(".")))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file)
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting {}", python.display()))?;
        let stdout = child.stdout.take().context("the SDK's stdout")?;
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
        loop {
            if interrupted.try_recv().is_ok() {
                stop_sdk(&mut child);
                anyhow::bail!("interrupted");
            }
            match lines.recv_timeout(Duration::from_millis(200)) {
                Ok(line) => {
                    if let Some(run_id) = line.strip_prefix("ready ") {
                        return Ok(Some(LiveRun::Sdk {
                            child,
                            run_id: run_id.trim().to_owned(),
                        }));
                    }
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let status = child.wait().ok();
                    println!(
                        "    the SDK run stopped before logging ({}); its output is in {}",
                        status.map_or("no status".to_owned(), |s| s.to_string()),
                        log.display()
                    );
                    return Ok(None);
                }
                Err(RecvTimeoutError::Timeout) if started.elapsed() > SDK_START_LIMIT => {
                    stop_sdk(&mut child);
                    println!(
                        "    the SDK did not start its run within {} s; its output is in {}",
                        SDK_START_LIMIT.as_secs(),
                        log.display()
                    );
                    return Ok(None);
                }
                Err(RecvTimeoutError::Timeout) => {}
            }
        }
    }

    /// Appends a row every 0.2 s to the seeded running run.
    pub fn start_appender(world: &World) -> anyhow::Result<LiveRun> {
        let run_id = world
            .run_in_state("running")
            .context("the seeded project has no running run")?
            .to_owned();
        let key = RunKey::new(ENTITY, PROJECT, run_id.as_str());
        let emulator = Arc::clone(&world.emulator);
        let stop = Arc::new(AtomicBool::new(false));
        let first_step = world.steps;
        let thread = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let t0 = chrono::Utc::now().timestamp_millis() as f64 / 1e3;
                let mut step = first_step;
                while !stop.load(Ordering::Relaxed) {
                    let loss = 0.05 + 2.0 / (1.0 + (step - first_step) as f64 / 50.0);
                    let now = chrono::Utc::now().timestamp_millis() as f64 / 1e3;
                    let row = serde_json::json!({
                        "_step": step,
                        "_runtime": now - t0,
                        "_timestamp": now,
                        "loss": loss,
                        "acc": 1.0 - loss / 3.0,
                    });
                    if emulator.append_history(&key, &[row.to_string()]).is_err() {
                        break;
                    }
                    step += 1;
                    std::thread::sleep(Duration::from_millis(200));
                }
            })
        };
        Ok(LiveRun::Appender {
            stop,
            thread,
            run_id,
        })
    }

    /// Stops the writer.
    pub fn stop(self) {
        match self {
            LiveRun::Sdk { mut child, .. } => stop_sdk(&mut child),
            LiveRun::Appender { stop, thread, .. } => {
                stop.store(true, Ordering::Relaxed);
                let _ = thread.join();
            }
        }
    }
}

/// SIGTERM to the SDK's process group (Python and its `wandb-core`), then reaps it.
fn stop_sdk(child: &mut Child) {
    if let Ok(pid) = i32::try_from(child.id()) {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
    let _ = child.wait();
}

/// A Python that can run the SDK: `--python`/`WANDBFS_PYTHON`, else `.venv/bin/python` here.
pub fn find_python(explicit: Option<&Path>) -> Option<PathBuf> {
    let candidate = match explicit {
        Some(p) => p.to_path_buf(),
        None => PathBuf::from(".venv/bin/python"),
    };
    let candidate = std::path::absolute(&candidate).ok()?;
    let works = Command::new(&candidate)
        .args(["-c", "import wandb, duckdb, pandas"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    works.then_some(candidate)
}
