//! `wandbfs demo`: the whole product in one command, with no W&B account.
//!
//! It starts a W&B server (the emulator, in this process) holding a realistic project, starts
//! a run that keeps logging, syncs the project into an embedded mirror (`wandbfs sync`, with
//! its progress bar), mounts it (`wandbfs mount --sync`, so the live run moves), prints six
//! commands to try and stays up until Ctrl-C; then it unmounts and stops what it started. The
//! steps are the real commands run as child processes with the demo's environment, and each
//! is printed, so the demo also shows how to use wandbfs.
//!
//! Everything lives in one directory (`--dir`): the mirror's cluster, the content cache, the
//! mount point, the SDK's files. A new demo starts it afresh; it is kept after the demo, so
//! the mirror can still be queried (`WANDBFS_PG_DIR=<dir>/pg wandbfs db start`).
//!
//! `--check` runs the printed commands against the mount, checks what they show against the
//! emulator's ground truth, and exits: the test suite runs it (`tests/demo.rs`).

mod check;
mod world;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, Receiver};

use anyhow::{Context, bail};
use clap::Args;

use crate::cli::UserError;
use check::Tour;
use world::{LiveRun, World};

/// Where the demo lives unless `--dir` says otherwise: short (the cluster's socket path must
/// stay under ~100 bytes), writable by anyone, and not wiped at reboot like /tmp may be.
const DEFAULT_DIR: &str = "/var/tmp/wandbfs-demo";
/// Marks a directory as the demo's, so a re-run may wipe it and nothing else.
const MARKER: &str = ".wandbfs-demo";
/// The SDK script of the live run (written into the demo directory).
const LIVE_RUN_PY: &str = include_str!("live_run.py");
/// How often the mount syncs the project: the live run's rows show within ~2 s.
const SYNC_INTERVAL_SECS: &str = "2";

/// `wandbfs demo`
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// The demo's directory (mirror, cache, mount point); wiped at start, kept after.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_DIR)]
    dir: PathBuf,

    /// Run the printed commands against the mount, check their output, and exit (0 = all
    /// passed).
    #[arg(long)]
    check: bool,

    /// History rows of each seeded run.
    #[arg(long, value_name = "N", default_value_t = 50_000)]
    steps: u64,

    /// Python with the `wandb` SDK, duckdb and pandas, for the live run and the one-liners
    /// [default: .venv/bin/python].
    #[arg(long, env = "WANDBFS_PYTHON", value_name = "PATH")]
    python: Option<PathBuf>,

    /// Write the live run from the demo itself, not through the SDK.
    #[arg(long)]
    no_sdk: bool,
}

/// Runs the demo; the exit status.
pub fn run(args: DemoArgs) -> anyhow::Result<i32> {
    let dir = std::path::absolute(&args.dir).context("resolving --dir")?;
    let interrupted = stop_signals()?;
    preflight()?;
    let exe = std::env::current_exe().context("locating the wandbfs executable")?;
    prepare_dir(&exe, &dir)?;

    say(&format!(
        "starting a W&B server (the emulator, in this process) with project {}",
        check::project_path()
    ));
    let world = World::start(args.steps)?;
    let mut demo = Demo {
        exe,
        env: vec![
            (
                "WANDB_BASE_URL".into(),
                world.emulator.base_url().to_owned(),
            ),
            ("WANDB_API_KEY".into(), world.emulator.api_key()),
            (
                "WANDBFS_PG_DIR".into(),
                dir.join("pg").display().to_string(),
            ),
        ],
        dir,
        world,
        live: None,
        mounted: false,
    };
    let result = demo.show(&args, &interrupted);
    demo.teardown();
    result
}

/// What the demo started, for the teardown.
struct Demo {
    exe: PathBuf,
    /// The children's environment: the emulator's URL and key, the demo's cluster.
    env: Vec<(String, String)>,
    dir: PathBuf,
    world: World,
    live: Option<LiveRun>,
    mounted: bool,
}

impl Demo {
    fn show(&mut self, args: &DemoArgs, interrupted: &Receiver<()>) -> anyhow::Result<i32> {
        let key_file = self.dir.join("api-key");
        write_private(&key_file, &self.world.emulator.api_key())?;
        let finished = self
            .world
            .run_in_state("finished")
            .context("no finished run")?
            .to_owned();
        println!(
            "    {} runs × {} history rows (finished, running, crashed and failed runs; media \
             files; artifacts with versions and aliases) at {}",
            self.world.runs.len(),
            self.world.steps,
            self.world.emulator.base_url()
        );

        // The live run.
        let python = if args.no_sdk {
            None
        } else {
            world::find_python(args.python.as_deref())
        };
        let live = match &python {
            Some(python) => {
                say("starting a run that keeps logging, with the real wandb SDK");
                let script = self.dir.join("live_run.py");
                std::fs::write(&script, LIVE_RUN_PY)
                    .with_context(|| format!("writing {}", script.display()))?;
                LiveRun::start_sdk(
                    python,
                    &script,
                    &self.env,
                    &self.dir.join("sdk.log"),
                    interrupted,
                )?
            }
            None => None,
        };
        let live = match live {
            Some(live) => live,
            None => {
                say("starting a run that keeps logging (written by the demo)");
                LiveRun::start_appender(&self.world)?
            }
        };
        println!(
            "    run {} logs a row every 0.2 s, written by {}",
            live.run_id(),
            live.writer()
        );
        let live_run = live.run_id().to_owned();
        self.live = Some(live);

        // Sync, then mount.
        let project = check::project_path();
        self.wandbfs(&["sync", &project])?;
        let mountpoint = self.dir.join("mnt");
        std::fs::create_dir_all(&mountpoint)
            .with_context(|| format!("creating {}", mountpoint.display()))?;
        let cache = self.dir.join("cache");
        self.wandbfs(&[
            OsStr::new("mount"),
            mountpoint.as_os_str(),
            OsStr::new("--cache-dir"),
            cache.as_os_str(),
            OsStr::new("--sync"),
            OsStr::new(&project),
            OsStr::new("--sync-interval"),
            OsStr::new(SYNC_INTERVAL_SECS),
        ])?;
        self.mounted = true;

        // The machine check a user would run first, green on this setup.
        say("wandbfs doctor");
        let doctor = self
            .command(&["doctor"])
            .status()
            .context("running wandbfs doctor")?;
        if args.check && !doctor.success() {
            bail!("`wandbfs doctor` found a problem on the demo's setup ({doctor})");
        }

        let tour = Tour {
            project_dir: mountpoint.join(&project),
            finished_run: finished,
            live_run,
            python: python.clone(),
            psql: self.psql()?,
        };
        println!();
        println!(
            "wandbfs is mounted at {}. Try, in another terminal:",
            mountpoint.display()
        );
        for (i, command) in tour.commands().iter().enumerate() {
            println!();
            println!("  # {}. {}", i + 1, command.what);
            println!("  {}", command.command);
        }
        println!();
        for command in tour.more() {
            println!();
            println!("  # {}", command.what);
            println!("  {}", command.command);
        }
        println!();
        println!(
            "  # wandbfs itself against the demo's server and mirror:\n  export WANDB_BASE_URL={} WANDB_API_KEY=$(cat {}) WANDBFS_PG_DIR={}",
            self.world.emulator.base_url(),
            check::quote(&key_file),
            check::quote(&self.dir.join("pg"))
        );
        println!();

        if args.check {
            say("checking every command against the emulator's data");
            tour.check(&self.world)?;
            say("all checks passed");
            return Ok(0);
        }
        println!("The demo runs until Ctrl-C.");
        let _ = interrupted.recv();
        println!();
        Ok(0)
    }

    /// Runs a wandbfs subcommand with the demo's environment, echoing it; fails when it fails.
    fn wandbfs<S: AsRef<OsStr>>(&self, args: &[S]) -> anyhow::Result<()> {
        let shown: Vec<String> = args
            .iter()
            .map(|a| check::quote(Path::new(a.as_ref())))
            .collect();
        say(&format!("wandbfs {}", shown.join(" ")));
        let status = self.command(args).status().context("starting wandbfs")?;
        if !status.success() {
            bail!("`wandbfs {}` failed ({status})", shown.join(" "));
        }
        Ok(())
    }

    fn command<S: AsRef<OsStr>>(&self, args: &[S]) -> Command {
        let mut command = Command::new(&self.exe);
        command
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            // The demo's own mirror, whatever the shell points at.
            .env_remove("WANDBFS_DATABASE_URL")
            .stdin(Stdio::null());
        command
    }

    /// `psql` and the connection string of the demo's cluster.
    fn psql(&self) -> anyhow::Result<(String, String)> {
        let out = self
            .command(&["db", "status", "--json"])
            .stderr(Stdio::inherit())
            .output()
            .context("running wandbfs db status")?;
        let status: serde_json::Value =
            serde_json::from_slice(&out.stdout).context("reading `wandbfs db status --json`")?;
        let connect = status["connection_string"]
            .as_str()
            .context("no connection string in `wandbfs db status --json`")?
            .to_owned();
        let bin_dir = status["bin_dir"].as_str().map(PathBuf::from);
        Ok((check::psql_program(bin_dir.as_deref()), connect))
    }

    /// Unmounts, stops the live run, the cluster and the emulator; says what stays.
    fn teardown(&mut self) {
        say("stopping");
        if self.mounted {
            let mountpoint = self.dir.join("mnt");
            let unmounted = self
                .command(&[OsStr::new("unmount"), mountpoint.as_os_str()])
                .status()
                .is_ok_and(|s| s.success());
            if !unmounted {
                // Busy (a shell is still in it): detach it so the demo never leaves a mount.
                let _ = self
                    .command(&[
                        OsStr::new("unmount"),
                        OsStr::new("--lazy"),
                        mountpoint.as_os_str(),
                    ])
                    .status();
            }
        }
        if let Some(live) = self.live.take() {
            live.stop();
        }
        let _ = self.command(&["db", "stop"]).stdout(Stdio::null()).status();
        println!(
            "    kept {}: the mirror (query it after `WANDBFS_PG_DIR={} wandbfs db start`), the \
             content cache, the SDK's log; the W&B server's data was in memory and is gone. \
             `rm -rf {}` removes the rest; the next demo starts it afresh.",
            self.dir.display(),
            check::quote(&self.dir.join("pg")),
            check::quote(&self.dir)
        );
    }
}

/// One line of narration.
fn say(what: &str) {
    println!("==> {what}");
}

/// What the demo cannot run without, with the fix.
fn preflight() -> anyhow::Result<()> {
    if !Path::new("/dev/fuse").exists() {
        return Err(UserError::with_hint(
            "/dev/fuse does not exist: this machine (or container) cannot mount FUSE filesystems",
            "load the module (modprobe fuse), or run the container with --device /dev/fuse \
             --cap-add SYS_ADMIN; `wandbfs ls`/`cat` work without FUSE",
        )
        .into());
    }
    let binaries = wandbfs::mirror::embedded::binaries::locate(
        &wandbfs::mirror::embedded::SearchPaths::system(
            std::env::var_os("WANDBFS_PG_BIN").map(PathBuf::from),
        ),
    );
    if let Err(e) = binaries {
        return Err(UserError::with_hint(
            e.to_string(),
            "install the PostgreSQL server: apt-get install postgresql (./demo does it)",
        )
        .into());
    }
    Ok(())
}

/// Makes `dir` an empty demo directory: a previous demo's mount and cluster are stopped and
/// its files removed; a directory that is not a demo's is refused.
fn prepare_dir(exe: &Path, dir: &Path) -> anyhow::Result<()> {
    if dir.exists() {
        let is_demo = dir.join(MARKER).exists();
        let is_empty = std::fs::read_dir(dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .next()
            .is_none();
        if !is_demo && !is_empty {
            return Err(UserError::with_hint(
                format!(
                    "{} exists and is not a wandbfs demo directory",
                    dir.display()
                ),
                "pick another one with --dir",
            )
            .into());
        }
        if is_demo {
            say(&format!("clearing the previous demo in {}", dir.display()));
            let mountpoint = dir.join("mnt");
            if is_mounted(&mountpoint) {
                let _ = Command::new(exe)
                    .args([
                        OsStr::new("unmount"),
                        OsStr::new("--lazy"),
                        mountpoint.as_os_str(),
                    ])
                    .status();
            }
            let _ = Command::new(exe)
                .args(["db", "stop"])
                .env("WANDBFS_PG_DIR", dir.join("pg"))
                .env_remove("WANDBFS_DATABASE_URL")
                .stdout(Stdio::null())
                .status();
            std::fs::remove_dir_all(dir)
                .with_context(|| format!("removing the previous demo in {}", dir.display()))?;
        }
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::write(
        dir.join(MARKER),
        "made by `wandbfs demo`; wiped by the next one\n",
    )
    .with_context(|| format!("writing in {}", dir.display()))?;
    say(&format!("working in {}", dir.display()));
    Ok(())
}

/// Whether `path` is a mount point (listed in /proc/self/mountinfo).
fn is_mounted(path: &Path) -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let wanted = path.display().to_string();
    info.lines()
        .filter_map(|line| line.split(' ').nth(4))
        .any(|mount| mount == wanted)
}

/// A file only its owner can read (the emulator's key).
fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    writeln!(file, "{text}").with_context(|| format!("writing {}", path.display()))
}

/// SIGINT and SIGTERM, caught from now on, arrive on the returned channel.
fn stop_signals() -> anyhow::Result<Receiver<()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the signal handler")?;
    let (mut interrupt, mut terminate) = {
        let _guard = runtime.enter();
        (
            signal(SignalKind::interrupt())?,
            signal(SignalKind::terminate())?,
        )
    };
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        runtime.block_on(async move {
            loop {
                tokio::select! {
                    _ = interrupt.recv() => {}
                    _ = terminate.recv() => {}
                }
                if tx.send(()).is_err() {
                    break;
                }
            }
        });
    });
    Ok(rx)
}
