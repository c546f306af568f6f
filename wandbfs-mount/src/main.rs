//! The `wandbfs` command.

use std::process::ExitCode;

/// mimalloc instead of glibc's allocator: reads hand megabyte buffers from thread to thread,
/// and glibc's per-thread arenas kept the freed ones (measured: 382 MiB peak RSS for 8 readers
/// whose live buffers were ~130 MiB; fixing glibc's mmap threshold instead bounded memory but
/// cost 40 % of the read throughput in page faults).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{Parser, Subcommand};
use wandbfs_mount::cli::{self, Verbosity};
use wandbfs_mount::{config, db, demo, doctor, export, files, mount, sync};

/// `--version`: the crate version and the git commit it was built from (build.rs).
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("WANDBFS_GIT_COMMIT"),
    ")"
);

/// Weights & Biases data as a filesystem.
#[derive(Debug, Parser)]
#[command(name = "wandbfs", version = VERSION, about, after_help = cli::EXIT_STATUS_HELP)]
struct Cli {
    #[command(subcommand)]
    command: Command,

    #[command(flatten)]
    verbosity: Verbosity,

    #[command(flatten)]
    config: config::ConfigFlag,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Mount W&B data at a directory: runs, files, artifacts and synthetic history files,
    /// served from the mirror with the live API behind it.
    Mount(mount::MountArgs),
    /// Unmount a wandbfs mount (also when its daemon died).
    Unmount(mount::unmount::UnmountArgs),
    /// Manage the mirror database (the embedded PostgreSQL cluster).
    Db(db::DbArgs),
    /// Copy W&B projects or runs into the mirror database (incremental by default).
    #[command(after_help = cli::EXIT_STATUS_HELP)]
    Sync(sync::SyncArgs),
    /// Write a mirrored project as parquet or JSON Lines files (from the mirror, no API calls).
    Export(export::ExportArgs),
    /// List a folder of the tree without FUSE: `wandbfs ls ENTITY/PROJECT`.
    Ls(files::LsArgs),
    /// Write files of the tree to stdout without FUSE (the bytes the mount serves).
    Cat(files::CatArgs),
    /// Size, time and digest of files of the tree, without FUSE.
    Stat(files::StatArgs),
    /// Copy files or folders (-r) of the tree to local paths, without FUSE.
    Cp(files::CpArgs),
    /// Check this machine: credentials, the W&B server, PostgreSQL, FUSE, the cache; each
    /// problem with its fix (exit 0 only when there is none).
    Doctor(doctor::DoctorArgs),
    /// The effective settings and where each came from (flags > environment > config file >
    /// defaults); secrets redacted.
    Config(config::ConfigArgs),
    /// Print a shell completion script: `wandbfs completions bash > /etc/bash_completion.d/wandbfs`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Show wandbfs on a local W&B server with a realistic project: sync, mount, six commands
    /// to try; until Ctrl-C (no account needed).
    Demo(demo::DemoArgs),
}

fn main() -> ExitCode {
    // The config file becomes environment variables (where unset) before clap reads them.
    if let Err(error) = config::load_and_apply(std::env::args_os()) {
        return cli::report(&error, &Verbosity::default());
    }
    let cli = Cli::parse();
    let verbosity = cli.verbosity;
    match run(cli) {
        Ok(code) => code,
        Err(error) => cli::report(&error, &verbosity),
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let verbosity = cli.verbosity;
    let code = match cli.command {
        Command::Mount(args) => mount::run(args, &verbosity)?,
        Command::Unmount(args) => {
            verbosity.init_logging();
            mount::unmount::run(args)?
        }
        Command::Db(args) => {
            verbosity.init_logging();
            db::run(args)?
        }
        Command::Sync(args) => sync::run(args, &verbosity)?,
        Command::Export(args) => {
            verbosity.init_logging();
            export::run(args)?
        }
        Command::Ls(args) => {
            verbosity.init_logging();
            files::ls(args, &verbosity)?
        }
        Command::Cat(args) => {
            verbosity.init_logging();
            files::cat(args, &verbosity)?
        }
        Command::Stat(args) => {
            verbosity.init_logging();
            files::stat(args, &verbosity)?
        }
        Command::Cp(args) => {
            verbosity.init_logging();
            files::cp(args, &verbosity)?
        }
        Command::Doctor(args) => {
            verbosity.init_logging();
            doctor::run(args)?
        }
        Command::Config(args) => config::run(args)?,
        Command::Completions { shell } => {
            use clap::CommandFactory;
            use std::io::Write;
            // Into memory first: clap_complete panics when stdout closes early (`| head`).
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "wandbfs", &mut script);
            match std::io::stdout().write_all(&script) {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => return Err(e.into()),
                _ => 0,
            }
        }
        Command::Demo(args) => {
            verbosity.init_logging();
            demo::run(args)?
        }
    };
    Ok(ExitCode::from(
        u8::try_from(code).unwrap_or(cli::EXIT_ERROR),
    ))
}
