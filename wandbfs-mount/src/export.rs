//! `wandbfs export <entity>/<project> --format parquet|jsonl --output-dir DIR`: a mirrored
//! project as files, read from the mirror alone (no W&B API calls). The layout is described in
//! `wandbfs::export` and `docs/MIRROR.md`.
//!
//! Exit status: 0 on success, 1 on an error (project not mirrored, output directory not empty,
//! database unreachable).

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, ValueEnum};
use wandbfs::export::{ExportOptions, Format, export_project};
use wandbfs::mirror::{ConnectOptions, Mirror};

use crate::db::DatabaseArgs;

/// The output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum FormatArg {
    /// Apache Parquet: typed columns, history as one dataset of per-run files.
    Parquet,
    /// JSON Lines in W&B's dialect; history files are `history.jsonl` byte for byte.
    Jsonl,
}

/// `wandbfs export …`
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The mirrored project to export.
    #[arg(value_name = "ENTITY/PROJECT")]
    target: String,

    /// File format.
    #[arg(long, value_enum, default_value = "parquet")]
    format: FormatArg,

    /// Directory to write (created; must be empty or an earlier export, which is replaced).
    #[arg(long, short = 'o', value_name = "DIR")]
    output_dir: PathBuf,

    /// Skip system-metric events.
    #[arg(long)]
    no_system: bool,

    /// Print what was written as JSON on stdout.
    #[arg(long)]
    json: bool,

    #[command(flatten)]
    database: DatabaseArgs,
}

/// Runs `wandbfs export`; returns the exit status.
pub fn run(args: ExportArgs) -> anyhow::Result<i32> {
    let parts: Vec<&str> = args.target.trim().trim_matches('/').split('/').collect();
    let [entity, project] = parts[..] else {
        anyhow::bail!("expected ENTITY/PROJECT, got {:?}", args.target);
    };
    anyhow::ensure!(
        !entity.is_empty() && !project.is_empty(),
        "expected ENTITY/PROJECT, got {:?}",
        args.target
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let target = args.database.target()?;
        let mirror = Mirror::connect(&target, &ConnectOptions::default())
            .await
            .context("opening the mirror database")?;
        let options = ExportOptions {
            format: match args.format {
                FormatArg::Parquet => Format::Parquet,
                FormatArg::Jsonl => Format::Jsonl,
            },
            system: !args.no_system,
        };
        let report = export_project(&mirror, entity, project, &args.output_dir, &options)
            .await
            .with_context(|| format!("exporting {entity}/{project}"))?;
        if args.json {
            let tables: serde_json::Map<String, serde_json::Value> = report
                .tables
                .iter()
                .map(|(n, r)| (n.clone(), serde_json::json!(r)))
                .collect();
            let out = serde_json::json!({
                "dir": report.dir,
                "tables": tables,
                "history": {"files": report.history.files, "rows": report.history.rows},
                "system": {"files": report.system.files, "rows": report.system.rows},
            });
            println!("{out}");
        } else {
            let tables: Vec<String> = report
                .tables
                .iter()
                .map(|(n, r)| format!("{n} {r}"))
                .collect();
            eprintln!(
                "exported {entity}/{project} to {}: {}; history {} rows in {} files; system {} rows",
                report.dir.display(),
                tables.join(", "),
                report.history.rows,
                report.history.files,
                report.system.rows
            );
        }
        Ok(0)
    })
}
