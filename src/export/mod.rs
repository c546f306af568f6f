//! `wandbfs export`: a mirrored project as files, from the mirror alone (no API calls).
//!
//! Layout of the output directory (see `docs/MIRROR.md`, "Exporting a project"):
//!
//! ```text
//! DIR/
//!   export.json                 what was exported: entity, project, format, row counts
//!   runs.<ext>                  one row per run (parquet: flattened config./summary. columns)
//!   files.<ext>                 run files (name, size, md5, …)
//!   artifacts.<ext>             artifact versions (type, collection, vN, aliases, digest, …)
//!   artifact_files.<ext>        manifest entries of those versions
//!   run_artifacts.<ext>         which run logged or used which version
//!   history/<run_id>.<ext>      history, one file per run with rows
//!   system/<run_id>.<ext>       system-metric events, one file per run with events
//! ```
//!
//! `<ext>` is `parquet` or `jsonl`. JSON Lines files are W&B's dialect (bare `NaN`/`Infinity`,
//! which Python's `json` reads); `history/<run_id>.jsonl` is the run's `history.jsonl` byte for
//! byte. Parquet history files share one schema (`run_id`, `_step`, then every flattened key of
//! the project), so the directory reads as a single table. The output is assembled in a sibling
//! directory and moved into place at the end: an interrupted export leaves no half-written `DIR`.

mod columnar;
mod error;
mod flatten;
pub(crate) mod history;
mod table;
pub(crate) mod tables;

use std::path::{Path, PathBuf};

pub use error::{ExportError, Result};
pub use history::{DatasetStats, file_stem};
pub use table::{ENCODING_KEY, Format};

use crate::mirror::{Mirror, Stream};

/// The table of one run's stream (`dir/<run>.parquet`) rendered the way every table was before
/// schema 5, by parsing each row's text: the reference `history.parquet` is tested and
/// benchmarked against (`benches/mirror_history.rs`). Not part of the stable API.
#[doc(hidden)]
pub async fn run_table_from_text(
    mirror: &Mirror,
    run_pk: crate::mirror::RunPk,
    run_id: &str,
    stream: Stream,
    dir: &Path,
) -> Result<DatasetStats> {
    let run = history::DatasetRun {
        run_pk,
        run_id: run_id.to_owned(),
    };
    history::write_parquet_from_text(mirror, std::slice::from_ref(&run), stream, dir).await
}

/// Name of the description file every export directory holds.
pub const MANIFEST: &str = "export.json";

/// What to export.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportOptions {
    /// File format.
    pub format: Format,
    /// Also export system-metric events (`system/`). Default true.
    pub system: bool,
}

impl Default for ExportOptions {
    fn default() -> Self {
        ExportOptions {
            format: Format::Parquet,
            system: true,
        }
    }
}

/// What an export wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExportReport {
    /// The output directory.
    pub dir: PathBuf,
    /// Rows per table (`runs`, `files`, …).
    pub tables: Vec<(String, u64)>,
    /// The history dataset.
    pub history: DatasetStats,
    /// The system-events dataset.
    pub system: DatasetStats,
}

/// Checks that `dir` may be (re)written: absent, empty, or an earlier export.
fn check_output_dir(dir: &Path) -> Result<bool> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(ExportError::io(dir, e)),
    };
    let empty = match entries.into_iter().next() {
        None => true,
        Some(entry) => {
            entry.map_err(|e| ExportError::io(dir, e))?;
            false
        }
    };
    if empty || dir.join(MANIFEST).is_file() {
        return Ok(true);
    }
    Err(ExportError::OutputDir {
        path: dir.to_path_buf(),
        reason: format!(
            "not empty and not an earlier export (no {MANIFEST}); choose another directory"
        ),
    })
}

/// Exports `entity/project` from the mirror into `dir` (see the module docs).
pub async fn export_project(
    mirror: &Mirror,
    entity: &str,
    project: &str,
    dir: &Path,
    options: &ExportOptions,
) -> Result<ExportReport> {
    let project_pk = mirror
        .resolve_project(entity, project)
        .await?
        .ok_or_else(|| ExportError::NotMirrored {
            entity: entity.to_string(),
            project: project.to_string(),
        })?;
    let replace = check_output_dir(dir)?;
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "export".into());
    let parent = dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| ExportError::io(parent, e))?;
    let staging = parent.join(format!(".{name}.wandbfs-export-{}", std::process::id()));
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(|e| ExportError::io(&staging, e))?;
    }
    std::fs::create_dir(&staging).map_err(|e| ExportError::io(&staging, e))?;
    let result = write_all(mirror, project_pk, &staging, options).await;
    let (tables, history, system) = match result {
        Ok(parts) => parts,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(e);
        }
    };
    let manifest = serde_json::json!({
        "wandbfs_export": 1,
        "entity": entity,
        "project": project,
        "format": options.format.extension(),
        "exported_at": chrono::Utc::now().to_rfc3339(),
        "tables": tables.iter().map(|(n, r)| (n.clone(), serde_json::json!(r))).collect::<serde_json::Map<_, _>>(),
        "history": {"files": history.files, "rows": history.rows},
        "system": {"files": system.files, "rows": system.rows},
    });
    let manifest_path = staging.join(MANIFEST);
    std::fs::write(&manifest_path, format!("{manifest:#}\n"))
        .map_err(|e| ExportError::io(&manifest_path, e))?;
    if replace && dir.exists() {
        std::fs::remove_dir_all(dir).map_err(|e| ExportError::io(dir, e))?;
    }
    std::fs::rename(&staging, dir).map_err(|e| ExportError::io(dir, e))?;
    Ok(ExportReport {
        dir: dir.to_path_buf(),
        tables,
        history,
        system,
    })
}

async fn write_all(
    mirror: &Mirror,
    project: crate::mirror::ProjectPk,
    dir: &Path,
    options: &ExportOptions,
) -> Result<(Vec<(String, u64)>, DatasetStats, DatasetStats)> {
    let format = options.format;
    let mut tables = vec![(
        "runs".to_string(),
        tables::write_runs(mirror, project, format, dir).await?,
    )];
    for (name, rows) in tables::write_fixed_tables(mirror, project, format, dir).await? {
        tables.push((name.to_string(), rows));
    }
    let runs: Vec<history::DatasetRun> = mirror
        .list_runs(project)
        .await?
        .into_iter()
        .map(|r| history::DatasetRun {
            run_pk: r.run_pk,
            run_id: r.run_id,
        })
        .collect();
    let history =
        history::write_dataset(mirror, &runs, Stream::History, format, &dir.join("history"))
            .await?;
    let system = if options.system {
        history::write_dataset(mirror, &runs, Stream::System, format, &dir.join("system")).await?
    } else {
        DatasetStats::default()
    };
    Ok((tables, history, system))
}
