//! The per-project tables: runs (with flattened config and summary), files, artifacts, their
//! manifest entries and run ↔ artifact links. Rows are streamed from Postgres, never loaded
//! whole.

use std::path::Path;

use futures::{Stream, StreamExt, TryStreamExt};
use jiter::JsonValue;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::error::{ExportError, Result};
use super::flatten::{ColumnSet, cell_of, for_each_leaf};
use super::table::{Cell, ColKind, Column, Format, open_sink};
use crate::mirror::{Mirror, MirrorError, ProjectPk};

/// Wraps a driver error as a mirror error with `context`.
pub(super) fn db(context: &'static str) -> impl Fn(tokio_postgres::Error) -> ExportError {
    move |source| ExportError::Mirror(MirrorError::Db { context, source })
}

async fn rows(
    client: &tokio_postgres::Client,
    sql: &str,
    project: ProjectPk,
    what: &'static str,
) -> Result<impl Stream<Item = Result<Row>>> {
    let params: [&(dyn ToSql + Sync); 1] = [&project.0];
    let stream = client.query_raw(sql, params).await.map_err(db(what))?;
    Ok(stream.map_err(db(what)))
}

fn text(row: &Row, i: usize) -> Cell {
    row.get::<_, Option<String>>(i)
        .map_or(Cell::Null, Cell::Str)
}

fn int(row: &Row, i: usize) -> Cell {
    row.get::<_, Option<i64>>(i).map_or(Cell::Null, Cell::Int)
}

fn int32(row: &Row, i: usize) -> Cell {
    row.get::<_, Option<i32>>(i)
        .map_or(Cell::Null, |v| Cell::Int(i64::from(v)))
}

fn time(row: &Row, i: usize) -> Cell {
    row.get::<_, Option<chrono::DateTime<chrono::Utc>>>(i)
        .map_or(Cell::Null, Cell::Time)
}

fn list(row: &Row, i: usize) -> Cell {
    row.get::<_, Option<Vec<String>>>(i)
        .map_or(Cell::Null, Cell::StrList)
}

fn boolean(row: &Row, i: usize) -> Cell {
    row.get::<_, Option<bool>>(i).map_or(Cell::Null, Cell::Bool)
}

/// Python's `run.config`: `{"k": {"value": v}}` → `{"k": v}`, without `_wandb`, in W&B's
/// dialect (key order and NaN kept).
fn unwrap_config(config: &JsonValue<'_>) -> String {
    let mut out = vec![b'{'];
    if let JsonValue::Object(members) = config {
        let mut first = true;
        for (key, value) in members.iter() {
            if key == "_wandb" {
                continue;
            }
            let value = match value {
                JsonValue::Object(inner) => inner
                    .iter()
                    .rev()
                    .find(|(k, _)| k == "value")
                    .map_or(value, |(_, v)| v),
                _ => value,
            };
            if !std::mem::take(&mut first) {
                out.push(b',');
            }
            let _ = serde_json::to_writer(&mut out, key.as_ref());
            out.push(b':');
            crate::values::write_wandb_json(value, &mut out);
        }
    }
    out.push(b'}');
    String::from_utf8_lossy(&out).into_owned()
}

fn parse<'t>(text: &'t str, what: impl FnOnce() -> String) -> Result<JsonValue<'t>> {
    crate::values::parse(text.as_bytes()).map_err(|source| ExportError::InvalidJson {
        what: what(),
        source,
    })
}

/// Every top-level member of `doc` flattened below `source.` (`config.lr`, `summary.a.b`).
fn leaves<'a>(source: &str, doc: &'a JsonValue<'a>, f: &mut impl FnMut(&str, &'a JsonValue<'a>)) {
    if let JsonValue::Object(members) = doc {
        for (key, value) in members.iter() {
            for_each_leaf(&format!("{source}.{key}"), value, f);
        }
    }
}

const RUNS_SQL: &str =
    "SELECT r.run_id, r.display_name, r.state, r.username, r.group_name, r.job_type,
        r.sweep, r.tags, r.notes, r.description, r.git_commit, r.created_at, r.heartbeat_at,
        r.updated_at, r.last_step, r.history_line_count, s.history_rows, r.deleted,
        coalesce(r.config_text, '{}'), coalesce(r.summary_text, '{}')
    FROM wandb.runs r LEFT JOIN wandb.run_sync_state s USING (run_pk)
    WHERE r.project_pk = $1 ORDER BY r.created_at, r.run_id";

fn run_columns() -> Vec<Column> {
    use ColKind::*;
    [
        ("run_id", Str),
        ("display_name", Str),
        ("state", Str),
        ("username", Str),
        ("group", Str),
        ("job_type", Str),
        ("sweep", Str),
        ("tags", StrList),
        ("notes", Str),
        ("description", Str),
        ("git_commit", Str),
        ("created_at", Time),
        ("heartbeat_at", Time),
        ("updated_at", Time),
        ("last_step", Int),
        ("history_line_count", Int),
        ("history_rows", Int),
        ("deleted", Bool),
    ]
    .into_iter()
    .map(|(n, k)| Column::new(n, k))
    .collect()
}

fn run_fixed_cells(row: &Row) -> Vec<Cell> {
    vec![
        text(row, 0),
        text(row, 1),
        text(row, 2),
        text(row, 3),
        text(row, 4),
        text(row, 5),
        text(row, 6),
        list(row, 7),
        text(row, 8),
        text(row, 9),
        text(row, 10),
        time(row, 11),
        time(row, 12),
        time(row, 13),
        int(row, 14),
        int(row, 15),
        int(row, 16),
        boolean(row, 17),
    ]
}

/// Writes `runs.<ext>`. Parquet: the run fields, `config_json` / `summary_json` (exact text),
/// then one typed column per flattened config key (`config.optimizer.lr`) and summary key
/// (`summary.loss`). JSON Lines: the run fields plus `config` and `summary` as objects.
pub async fn write_runs(
    mirror: &Mirror,
    project: ProjectPk,
    format: Format,
    dir: &Path,
) -> Result<u64> {
    let client = mirror.client().await?;
    let mut columns = run_columns();
    let mut flat = ColumnSet::default();
    if format == Format::Parquet {
        // First pass: the union of config and summary keys and their kinds.
        let mut stream = std::pin::pin!(rows(&client, RUNS_SQL, project, "listing runs").await?);
        while let Some(row) = stream.next().await {
            let row = row?;
            let run_id: String = row.get(0);
            let config_text: String = row.get(18);
            let summary_text: String = row.get(19);
            let config = parse(&config_text, || format!("config of run {run_id}"))?;
            let unwrapped = unwrap_config(&config);
            let config = parse(&unwrapped, || format!("config of run {run_id}"))?;
            let summary = parse(&summary_text, || format!("summary of run {run_id}"))?;
            leaves("config", &config, &mut |name, v| flat.observe(name, v));
            leaves("summary", &summary, &mut |name, v| flat.observe(name, v));
        }
        columns.push(Column::new("config_json", ColKind::Json));
        columns.push(Column::new("summary_json", ColKind::Json));
        columns.extend(flat.columns());
    } else {
        columns.push(Column::new("config", ColKind::Json));
        columns.push(Column::new("summary", ColKind::Json));
    }
    let fixed = run_columns().len();
    let mut sink = open_sink(
        format,
        &dir.join(format!("runs.{}", format.extension())),
        columns,
    )?;
    let mut stream = std::pin::pin!(rows(&client, RUNS_SQL, project, "listing runs").await?);
    while let Some(row) = stream.next().await {
        let row = row?;
        let run_id: String = row.get(0);
        let config_text: String = row.get(18);
        let summary_text: String = row.get(19);
        let config = parse(&config_text, || format!("config of run {run_id}"))?;
        let unwrapped = unwrap_config(&config);
        let mut cells = run_fixed_cells(&row);
        cells.push(Cell::Json(unwrapped.clone()));
        cells.push(Cell::Json(summary_text.clone()));
        if format == Format::Parquet {
            cells.resize(fixed + 2 + flat.len(), Cell::Null);
            let config = parse(&unwrapped, || format!("config of run {run_id}"))?;
            let summary = parse(&summary_text, || format!("summary of run {run_id}"))?;
            let mut put = |name: &str, v: &JsonValue<'_>| {
                if let Some(i) = flat.position(name) {
                    cells[fixed + 2 + i] = cell_of(v);
                }
            };
            leaves("config", &config, &mut put);
            leaves("summary", &summary, &mut put);
        }
        sink.push(cells)?;
    }
    sink.finish()
}

/// A fixed-shape table: its file name, columns, query and row mapping.
struct Fixed {
    name: &'static str,
    columns: &'static [(&'static str, ColKind)],
    sql: &'static str,
    cells: fn(&Row) -> Vec<Cell>,
}

const FIXED: &[Fixed] = &[
    Fixed {
        name: "files",
        columns: &[
            ("run_id", ColKind::Str),
            ("name", ColKind::Str),
            ("size_bytes", ColKind::Int),
            ("md5", ColKind::Str),
            ("updated_at", ColKind::Time),
            ("mimetype", ColKind::Str),
            ("url", ColKind::Str),
        ],
        sql: "SELECT r.run_id, f.name, f.size_bytes, f.md5, f.updated_at, f.mimetype, f.url
              FROM wandb.run_files f JOIN wandb.runs r USING (run_pk)
              WHERE r.project_pk = $1 ORDER BY r.run_id, f.name",
        cells: |r| {
            vec![
                text(r, 0),
                text(r, 1),
                int(r, 2),
                text(r, 3),
                time(r, 4),
                text(r, 5),
                text(r, 6),
            ]
        },
    },
    Fixed {
        name: "artifacts",
        columns: &[
            ("type", ColKind::Str),
            ("collection", ColKind::Str),
            ("version", ColKind::Str),
            ("version_index", ColKind::Int),
            ("aliases", ColKind::StrList),
            ("digest", ColKind::Str),
            ("size_bytes", ColKind::Int),
            ("file_count", ColKind::Int),
            ("state", ColKind::Str),
            ("description", ColKind::Str),
            ("metadata", ColKind::Json),
            ("created_at", ColKind::Time),
            ("updated_at", ColKind::Time),
            ("deleted", ColKind::Bool),
        ],
        sql: "SELECT t.name, c.name, 'v' || v.version_index, v.version_index,
                     coalesce((SELECT array_agg(a.alias ORDER BY a.alias) FROM wandb.artifact_aliases a
                               WHERE a.version_pk = v.version_pk), '{}'),
                     v.digest, v.size_bytes, v.file_count, v.state, v.description,
                     v.metadata_text, v.created_at, v.updated_at, v.deleted OR c.deleted
              FROM wandb.artifact_versions v
              JOIN wandb.artifact_collections c USING (collection_pk)
              JOIN wandb.artifact_types t ON t.type_pk = c.type_pk
              WHERE c.project_pk = $1 ORDER BY t.name, c.name, v.version_index",
        cells: |r| {
            vec![
                text(r, 0),
                text(r, 1),
                text(r, 2),
                int32(r, 3),
                list(r, 4),
                text(r, 5),
                int(r, 6),
                int(r, 7),
                text(r, 8),
                text(r, 9),
                r.get::<_, Option<String>>(10).map_or(Cell::Null, Cell::Json),
                time(r, 11),
                time(r, 12),
                boolean(r, 13),
            ]
        },
    },
    Fixed {
        name: "artifact_files",
        columns: &[
            ("type", ColKind::Str),
            ("collection", ColKind::Str),
            ("version", ColKind::Str),
            ("path", ColKind::Str),
            ("digest", ColKind::Str),
            ("size_bytes", ColKind::Int),
            ("ref", ColKind::Str),
        ],
        sql: "SELECT t.name, c.name, 'v' || v.version_index, m.path, m.digest, m.size_bytes, m.ref
              FROM wandb.artifact_manifest_entries m
              JOIN wandb.artifact_versions v USING (version_pk)
              JOIN wandb.artifact_collections c USING (collection_pk)
              JOIN wandb.artifact_types t ON t.type_pk = c.type_pk
              WHERE c.project_pk = $1 ORDER BY t.name, c.name, v.version_index, m.path",
        cells: |r| {
            vec![
                text(r, 0),
                text(r, 1),
                text(r, 2),
                text(r, 3),
                text(r, 4),
                int(r, 5),
                text(r, 6),
            ]
        },
    },
    Fixed {
        name: "run_artifacts",
        columns: &[
            ("run_id", ColKind::Str),
            ("type", ColKind::Str),
            ("collection", ColKind::Str),
            ("version", ColKind::Str),
            ("direction", ColKind::Str),
        ],
        sql: "SELECT r.run_id, t.name, c.name, 'v' || v.version_index, ra.direction
              FROM wandb.run_artifacts ra
              JOIN wandb.runs r USING (run_pk)
              JOIN wandb.artifact_versions v ON v.version_pk = ra.version_pk
              JOIN wandb.artifact_collections c ON c.collection_pk = v.collection_pk
              JOIN wandb.artifact_types t ON t.type_pk = c.type_pk
              WHERE r.project_pk = $1 ORDER BY r.run_id, t.name, c.name, v.version_index",
        cells: |r| vec![text(r, 0), text(r, 1), text(r, 2), text(r, 3), text(r, 4)],
    },
];

/// Writes the fixed-shape tables; returns `(name, rows)` for each.
pub async fn write_fixed_tables(
    mirror: &Mirror,
    project: ProjectPk,
    format: Format,
    dir: &Path,
) -> Result<Vec<(&'static str, u64)>> {
    let client = mirror.client().await?;
    let mut written = Vec::new();
    for table in FIXED {
        let columns = table
            .columns
            .iter()
            .map(|(n, k)| Column::new(*n, *k))
            .collect();
        let path = dir.join(format!("{}.{}", table.name, format.extension()));
        let mut sink = open_sink(format, &path, columns)?;
        let mut stream = std::pin::pin!(rows(&client, table.sql, project, table.name).await?);
        while let Some(row) = stream.next().await {
            sink.push((table.cells)(&row?))?;
        }
        written.push((table.name, sink.finish()?));
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_is_unwrapped_like_python() {
        let config = crate::values::parse(
            br#"{"lr":{"value":0.02,"desc":null},"_wandb":{"value":{"t":1}},"raw":3,"nested":{"value":{"a":NaN}}}"#,
        )
        .unwrap();
        assert_eq!(
            unwrap_config(&config),
            r#"{"lr":0.02,"raw":3,"nested":{"a":NaN}}"#
        );
    }
}
