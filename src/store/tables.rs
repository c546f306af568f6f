//! Typed tables in the tree, rendered from the mirror: `<project>/runs.parquet`,
//! `<project>/runs.jsonl`, `<run>/history.parquet`, `<run>/system.parquet`.
//!
//! A table is rendered on first access — with `wandbfs export`'s writers, so the columns are the
//! export's — into a file of the cache directory named by what it holds and the version of the
//! mirrored data it was rendered from, and served from that file until the data changes: the
//! size is exact at `stat` (the rendered file's), the bytes are the same on every read, and a
//! run's table is rendered again only after a sync changed its rows. Older versions are deleted
//! when a new one is in place. Rendering happens once however many readers ask at once.
//!
//! Why on access rather than at sync time: a sync then costs what it cost before, and a table
//! nobody reads costs nothing. Parquet files cannot be appended to, so keeping a live run's
//! table current would rewrite all of it per batch (O(run) per append); for finished runs it
//! would add the rendering — 1.7 s per 1M rows of 23 keys from the block columns, about a
//! quarter of the sync of those rows (`cargo bench --bench mirror_history`, `docs/MIRROR.md`) —
//! to every sync, read or not. The first access pays it instead.
//!
//! Versions: a run's table follows its mirrored stream (`storage id`, byte length, last step);
//! the runs table follows the project's runs (their number and latest sync and update times).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use md5::{Digest as _, Md5};

use super::error::StoreError;
use crate::export::{Format, history, tables};
use crate::mirror::{Mirror, ProjectPk, RunMetadata, RunSyncState, Stream};

/// wandbfs's cache directory: `$XDG_CACHE_HOME/wandbfs`, else `~/.cache/wandbfs`, else (no
/// home) `/var/cache/wandbfs`.
pub fn user_cache_dir() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| {
            std::env::var_os("HOME")
                .map(PathBuf::from)
                .filter(|p| p.is_absolute())
                .map(|h| h.join(".cache"))
        })
        .map(|base| base.join("wandbfs"))
        .unwrap_or_else(|| PathBuf::from("/var/cache/wandbfs"))
}

/// Bumped when the rendering changes: files of older renderers are never served.
const RENDERER: &str = "wandbfs-tables-2";

/// A rendered table on disk.
#[derive(Clone, Debug)]
pub struct RenderedTable {
    /// The file.
    pub path: PathBuf,
    /// Its exact size.
    pub size: u64,
    /// What it was rendered from (its e-tag).
    pub version: String,
    /// When it was rendered.
    pub rendered_at: chrono::DateTime<chrono::Utc>,
}

/// The rendered tables of one mirror (see the module docs). Cheap to clone.
#[derive(Clone, Debug)]
pub struct TableCache {
    inner: Arc<Inner>,
}

/// One rendering in progress (or done): every reader of the same file waits for it.
type Flight = Arc<tokio::sync::OnceCell<Result<RenderedTable, String>>>;

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    flights: Mutex<HashMap<String, Flight>>,
    /// Where renderings run (`None`: on the caller's runtime).
    executor: Option<tokio::runtime::Handle>,
    /// Renderings at once: each holds a run's columns in memory while it writes.
    permits: tokio::sync::Semaphore,
}

/// Tables rendered at once by default: two keep both cores of a small machine busy when many
/// tables are asked for together (DuckDB's `*/history.parquet`), and bound the memory.
pub const DEFAULT_RENDERS: usize = 2;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn digest(text: &str) -> String {
    hex(&Md5::digest(text.as_bytes())[..12])
}

impl TableCache {
    /// Tables rendered into `dir` (created when needed).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        TableCache {
            inner: Arc::new(Inner {
                dir: dir.into(),
                flights: Mutex::new(HashMap::new()),
                executor: None,
                permits: tokio::sync::Semaphore::new(DEFAULT_RENDERS),
            }),
        }
    }

    /// Tables rendered into `dir` on `executor` — a runtime of their own, so that parsing and
    /// encoding never occupy the threads that answer everything else (the mount's requests) —
    /// at most `renders` at once.
    pub fn with_executor(
        dir: impl Into<PathBuf>,
        executor: tokio::runtime::Handle,
        renders: usize,
    ) -> Self {
        TableCache {
            inner: Arc::new(Inner {
                dir: dir.into(),
                flights: Mutex::new(HashMap::new()),
                executor: Some(executor),
                permits: tokio::sync::Semaphore::new(renders.max(1)),
            }),
        }
    }

    /// `tables/` in [`user_cache_dir`].
    pub fn default_dir() -> PathBuf {
        user_cache_dir().join("tables")
    }

    /// The directory the tables are rendered into.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// `history.parquet` (or `system.parquet`) of a mirrored run.
    pub async fn run_table(
        &self,
        mirror: &Mirror,
        meta: &RunMetadata,
        state: &RunSyncState,
        stream: Stream,
    ) -> Result<RenderedTable, StoreError> {
        let identity = format!("{}/{}/{}", meta.entity, meta.project, meta.id);
        let (bytes, last) = match stream {
            Stream::History => (state.history_bytes, state.history_last_step),
            Stream::System => (state.system_bytes, state.system_last_seq),
        };
        let kind = match stream {
            Stream::History => "history",
            Stream::System => "system",
        };
        let version = digest(&format!(
            "{RENDERER}:{}:{kind}:{bytes}:{last:?}",
            meta.storage_id.as_deref().unwrap_or(&meta.id)
        ));
        let name = format!("{kind}-{}-{version}.parquet", digest(&identity));
        let mirror = mirror.clone();
        let run = history::DatasetRun {
            run_pk: meta.run_pk,
            run_id: meta.id.clone(),
        };
        self.render(&identity, kind, name, version, move |dir| async move {
            let stats = history::write_dataset(
                &mirror,
                std::slice::from_ref(&run),
                stream,
                Format::Parquet,
                &dir,
            )
            .await
            .map_err(|e| e.to_string())?;
            let file = dir.join(format!("{}.parquet", history::file_stem(&run.run_id)));
            if stats.files == 0 {
                // No rows yet: a table with the key columns and no row.
                history::write_empty(&file, stream).map_err(|e| e.to_string())?;
            }
            Ok(file)
        })
        .await
    }

    /// `runs.parquet` (or `runs.jsonl`) of a mirrored project.
    pub async fn project_table(
        &self,
        mirror: &Mirror,
        identity: &str,
        project: ProjectPk,
        format: Format,
    ) -> Result<RenderedTable, StoreError> {
        let state = mirror
            .project_runs_version(project)
            .await
            .map_err(|e| table_error(identity, e.to_string()))?;
        let ext = format.extension();
        let version = digest(&format!("{RENDERER}:runs.{ext}:{state}"));
        let name = format!("runs-{}-{version}.{ext}", digest(identity));
        let mirror = mirror.clone();
        self.render(identity, "runs", name, version, move |dir| async move {
            tables::write_runs(&mirror, project, format, &dir)
                .await
                .map_err(|e| e.to_string())?;
            Ok(dir.join(format!("runs.{ext}")))
        })
        .await
    }

    /// The file `name`, rendered by `render` (into a scratch directory it is given) unless it
    /// is there already; older versions of the same table are removed.
    async fn render<F, Fut>(
        &self,
        identity: &str,
        kind: &str,
        name: String,
        version: String,
        render: F,
    ) -> Result<RenderedTable, StoreError>
    where
        F: FnOnce(PathBuf) -> Fut,
        Fut: std::future::Future<Output = Result<PathBuf, String>> + Send + 'static,
    {
        let path = self.inner.dir.join(&name);
        if let Ok(meta) = tokio::fs::metadata(&path).await {
            return Ok(RenderedTable {
                path,
                size: meta.len(),
                version,
                rendered_at: modified(&meta),
            });
        }
        let flight = {
            let mut flights = self.inner.flights.lock().unwrap_or_else(|e| e.into_inner());
            Arc::clone(flights.entry(name.clone()).or_default())
        };
        let dir = self.inner.dir.clone();
        let outcome = flight
            .get_or_init(|| async {
                tokio::fs::create_dir_all(&dir)
                    .await
                    .map_err(|e| format!("creating {}: {e}", dir.display()))?;
                let scratch = tempfile::Builder::new()
                    .prefix(".render-")
                    .tempdir_in(&dir)
                    .map_err(|e| format!("a scratch directory in {}: {e}", dir.display()))?;
                let _permit = self
                    .inner
                    .permits
                    .acquire()
                    .await
                    .map_err(|e| e.to_string())?;
                let started = std::time::Instant::now();
                let work = render(scratch.path().to_path_buf());
                let rendered = match &self.inner.executor {
                    Some(executor) => executor
                        .spawn(work)
                        .await
                        .map_err(|e| format!("the rendering task failed: {e}"))??,
                    None => work.await?,
                };
                tokio::fs::rename(&rendered, &path)
                    .await
                    .map_err(|e| format!("moving {} into place: {e}", path.display()))?;
                let meta = tokio::fs::metadata(&path)
                    .await
                    .map_err(|e| e.to_string())?;
                let size = meta.len();
                tracing::info!(
                    table = %name,
                    bytes = size,
                    secs = started.elapsed().as_secs_f64(),
                    "rendered {identity}'s {kind} table"
                );
                {
                    let (dir, name) = (dir.clone(), name.clone());
                    tokio::task::spawn_blocking(move || remove_older(&dir, &name));
                }
                Ok(RenderedTable {
                    path: path.clone(),
                    size,
                    version: version.clone(),
                    rendered_at: modified(&meta),
                })
            })
            .await
            .clone();
        self.inner
            .flights
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&name);
        outcome.map_err(|message| table_error(identity, message))
    }
}

fn modified(meta: &std::fs::Metadata) -> chrono::DateTime<chrono::Utc> {
    meta.modified()
        .map(chrono::DateTime::<chrono::Utc>::from)
        .unwrap_or(chrono::DateTime::UNIX_EPOCH)
}

fn table_error(identity: &str, message: String) -> StoreError {
    StoreError::Source {
        path: identity.to_owned(),
        source_name: "mirror tables".to_owned(),
        message,
    }
}

/// Removes the other versions of the table `name` (same kind, identity and format, other
/// version). `runs.parquet` and `runs.jsonl` of a project share a stem: the extension tells
/// them apart (without it, rendering one deleted the other, and every mount rendered both).
fn remove_older(dir: &Path, name: &str) {
    let (Some((stem, _)), Some((_, ext))) = (name.rsplit_once('-'), name.rsplit_once('.')) else {
        return;
    };
    let (stem, ext) = (format!("{stem}-"), format!(".{ext}"));
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let other = entry.file_name().to_string_lossy().into_owned();
        if other != name && other.starts_with(&stem) && other.ends_with(&ext) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Bytes per read of a rendered table.
const READ_PIECE: u64 = 4 << 20;

impl RenderedTable {
    /// The table as a synthetic object. The file is opened now: a reader keeps its version even
    /// when a newer one replaces it on disk.
    pub fn object(
        &self,
        last_modified: chrono::DateTime<chrono::Utc>,
    ) -> Result<super::source::SyntheticObject, StoreError> {
        let file = std::fs::File::open(&self.path).map_err(|e| StoreError::Source {
            path: self.path.display().to_string(),
            source_name: "mirror tables".to_owned(),
            message: e.to_string(),
        })?;
        Ok(super::source::SyntheticObject {
            size: self.size,
            e_tag: self.version.clone(),
            last_modified,
            body: super::source::SyntheticBody::Ranged(Arc::new(FileRange {
                file: Arc::new(file),
                path: self.path.display().to_string(),
            })),
        })
    }
}

/// Byte ranges of a rendered table, read from its open file.
#[derive(Debug)]
struct FileRange {
    file: Arc<std::fs::File>,
    path: String,
}

#[async_trait::async_trait]
impl super::source::RangeRead for FileRange {
    async fn read(
        &self,
        range: std::ops::Range<u64>,
    ) -> super::source::SourceResult<
        futures::stream::BoxStream<'static, super::source::SourceResult<bytes::Bytes>>,
    > {
        use futures::StreamExt as _;
        let file = Arc::clone(&self.file);
        let path = self.path.clone();
        let end = range.end;
        Ok(futures::stream::unfold(range.start, move |pos| {
            let file = Arc::clone(&file);
            let path = path.clone();
            async move {
                if pos >= end {
                    return None;
                }
                let len = (end - pos).min(READ_PIECE) as usize;
                let read = tokio::task::spawn_blocking(move || {
                    use std::os::unix::fs::FileExt as _;
                    let mut buf = vec![0u8; len];
                    file.read_exact_at(&mut buf, pos).map(|()| buf)
                })
                .await;
                match read {
                    Ok(Ok(buf)) => Some((Ok(bytes::Bytes::from(buf)), pos + len as u64)),
                    Ok(Err(e)) => Some((Err(table_error(&path, e.to_string())), end)),
                    Err(e) => Some((Err(table_error(&path, e.to_string())), end)),
                }
            }
        })
        .boxed())
    }

    /// The rendered file itself (written once, renamed into place, never changed).
    fn local_file(&self) -> Option<Arc<std::fs::File>> {
        Some(Arc::clone(&self.file))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn older_versions_go_and_the_other_format_stays() {
        let dir = tempfile::tempdir().unwrap();
        let names = [
            "runs-aaa-v1.parquet",
            "runs-aaa-v1.jsonl",
            "runs-aaa-v0.parquet",
            "runs-aaa-v0.jsonl",
            "runs-bbb-v0.parquet",
        ];
        for name in names {
            std::fs::write(dir.path().join(name), name).unwrap();
        }
        remove_older(dir.path(), "runs-aaa-v1.parquet");
        let left: Vec<bool> = names.iter().map(|n| dir.path().join(n).exists()).collect();
        assert_eq!(left, [true, true, false, true, true]);
        remove_older(dir.path(), "runs-aaa-v1.jsonl");
        assert!(!dir.path().join("runs-aaa-v0.jsonl").exists());
        assert!(dir.path().join("runs-aaa-v1.parquet").exists());
    }
}
