//! The `wandbfs` command.

mod db;
mod export;
mod sync;
mod sync_progress;

use clap::{Parser, Subcommand};

/// Weights & Biases data as a filesystem.
#[derive(Debug, Parser)]
#[command(name = "wandbfs", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Mount W&B data at a directory (not implemented yet).
    Mount {
        /// Where to mount.
        mountpoint: std::path::PathBuf,
    },
    /// Manage the mirror database (the embedded PostgreSQL cluster).
    Db(db::DbArgs),
    /// Copy W&B projects or runs into the mirror database (incremental by default).
    Sync(sync::SyncArgs),
    /// Write a mirrored project as parquet or JSON Lines files (from the mirror, no API calls).
    Export(export::ExportArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Mount { mountpoint } => {
            anyhow::bail!(
                "mount is not implemented yet (asked for {})",
                mountpoint.display()
            )
        }
        Command::Db(args) => std::process::exit(db::run(args)?),
        Command::Sync(args) => std::process::exit(sync::run(args)?),
        Command::Export(args) => std::process::exit(export::run(args)?),
    }
}
