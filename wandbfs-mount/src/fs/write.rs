//! Writes (`--allow-write` only): run files are created, written, truncated, renamed and
//! deleted; everything else is `EACCES`.
//!
//! W&B stores whole files (a run file is uploaded in one PUT), so a file opened for writing
//! is buffered in a temporary file of its own and uploaded when it is flushed (`close`) or
//! released: an upload failure is returned by `close`, and the file keeps its old content in
//! W&B. The upload is **streamed from the temporary file** (`WandbStore::put_file`), so memory
//! stays bounded whatever the file's size; a file opened for writing without `O_TRUNC` has its
//! current content streamed into the temporary file first, so a partial write changes only
//! what it writes. File I/O runs on the blocking pool, never on the async workers. After each
//! upload or deletion the mirror's listing of the run is refreshed from W&B, so the change
//! shows at once — in the mount, in the mirror, and in the SDK's `run.files()`.
//!
//! W&B has no rename: a file is renamed by copying its bytes through this process (streamed)
//! and deleting the old one. Above [`DEFAULT_RENAME_COPY_MAX`] (configurable) `rename` answers
//! `EXDEV`, which `mv`
//! takes as "another filesystem" and falls back to a copy and a delete it shows progress for.
//!
//! Directories do not exist in W&B (they are prefixes of file names): `mkdir` inside a run
//! creates a directory that lives in this mount until a file is written below it.

use std::collections::HashSet;
use std::os::unix::fs::FileExt as _;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use bytes::Bytes;
use futures::StreamExt as _;
use object_store::ObjectStoreExt as _;
use object_store::path::Path;
use wandbfs::store::layout::Location;
use wandbfs::store::source::RunRef;

use super::attr::Attr;
use super::catalog::child_path;
use super::error::{FsError, FsResult};
use super::{Handle, Opened, WandbFs};

/// Largest file `rename` copies by default (W&B has no rename: the bytes go through this
/// process): **1 GiB**, about ten seconds here, which a `mv` blocks for. Above it `rename`
/// answers `EXDEV` and `mv` copies and deletes by itself, with its own progress and
/// interruptible (`--max-rename-copy`).
pub const DEFAULT_RENAME_COPY_MAX: u64 = 1 << 30;

/// Runs blocking file I/O on the blocking pool.
async fn blocking<T: Send + 'static>(
    path: &Path,
    work: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> FsResult<T> {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)))
        .map_err(|e| FsError::io(format!("{path}: {e}")))
}

/// A file being written: a temporary copy, uploaded on flush.
pub struct Upload {
    path: Path,
    run: RunRef,
    file: Arc<std::fs::File>,
    size: u64,
    dirty: bool,
}

impl Upload {
    fn new(path: Path, run: RunRef) -> FsResult<Upload> {
        let file = tempfile::tempfile().map_err(|e| FsError::io(format!("{path}: {e}")))?;
        Ok(Upload {
            path,
            run,
            file: Arc::new(file),
            size: 0,
            dirty: false,
        })
    }

    /// Bytes written so far (reads of a file open for writing see them).
    pub async fn read(&mut self, offset: u64, size: u32) -> FsResult<Bytes> {
        let end = (offset + u64::from(size)).min(self.size);
        if offset >= end {
            return Ok(Bytes::new());
        }
        let file = Arc::clone(&self.file);
        let buf = blocking(&self.path, move || {
            let mut buf = vec![0u8; (end - offset) as usize];
            file.read_exact_at(&mut buf, offset).map(|()| buf)
        })
        .await?;
        Ok(Bytes::from(buf))
    }

    async fn write(&mut self, offset: u64, data: Vec<u8>) -> FsResult<u32> {
        let file = Arc::clone(&self.file);
        let len = data.len();
        blocking(&self.path, move || file.write_all_at(&data, offset)).await?;
        self.size = self.size.max(offset + len as u64);
        self.dirty = true;
        Ok(len as u32)
    }

    async fn truncate(&mut self, size: u64) -> FsResult<()> {
        let file = Arc::clone(&self.file);
        blocking(&self.path, move || file.set_len(size)).await?;
        self.size = size;
        self.dirty = true;
        Ok(())
    }

    fn attr(&self) -> Attr {
        Attr {
            writable: true,
            ..Attr::file(self.size, SystemTime::now(), None)
        }
    }
}

/// Directories created in this mount that hold no file yet (the catalog lists them).
#[derive(Default)]
pub struct LocalDirs(Mutex<HashSet<String>>);

impl LocalDirs {
    fn set(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds `path`.
    pub fn add(&self, path: &Path) {
        self.set().insert(path.as_ref().to_owned());
    }

    /// Removes `path`; whether it was there.
    pub fn remove(&self, path: &Path) -> bool {
        self.set().remove(path.as_ref())
    }

    /// The local directories directly in `dir`: (name, path).
    pub fn in_dir(&self, dir: &Path) -> Vec<(String, Path)> {
        let prefix = format!("{}/", dir.as_ref());
        self.set()
            .iter()
            .filter_map(|p| {
                let rest = p.strip_prefix(&prefix)?;
                if rest.contains('/') {
                    return None;
                }
                Some((rest.to_owned(), Path::parse(p).ok()?))
            })
            .collect()
    }

    /// A file was written at `path`: the directories above it exist in W&B now.
    pub fn filled(&self, path: &Path) {
        let text = path.as_ref();
        self.set()
            .retain(|dir| !text.starts_with(&format!("{dir}/")));
    }
}

/// The run a path below a run belongs to, when it may be written.
fn writable_run_file(path: &Path) -> FsResult<RunRef> {
    match Location::parse(path) {
        Location::RunFile(run, _) => Ok(run),
        Location::Synthetic(..) => Err(FsError::access(format!(
            "{path}: synthetic files are rendered from the run's record and history and \
             cannot be written (a run file of this name is `@{}`)",
            path.filename().unwrap_or_default()
        ))),
        Location::ArtifactFile(..) | Location::Version(_) => Err(FsError::access(format!(
            "{path}: artifact versions are immutable in W&B"
        ))),
        _ => Err(FsError::access(format!(
            "{path}: only files inside a run directory can be written"
        ))),
    }
}

impl WandbFs {
    fn require_writes(&self, path: &Path) -> FsResult<()> {
        if self.catalog.config().allow_write {
            Ok(())
        } else {
            Err(FsError::read_only(path))
        }
    }

    /// The attributes of a file still being written through this mount, if `ino` is one.
    pub async fn pending_attr(&self, ino: u64) -> Option<Attr> {
        let inode = self.inodes.get(ino)?;
        let uploads: Vec<_> = self
            .handles()
            .values()
            .filter_map(|h| match h {
                Handle::Write(u) => Some(Arc::clone(u)),
                _ => None,
            })
            .collect();
        for upload in uploads {
            let u = upload.lock().await;
            if u.path == inode.path {
                return Some(u.attr());
            }
        }
        None
    }

    /// Creates run file `name` in directory `parent` and opens it for writing.
    pub async fn create(&self, parent: u64, name: &str) -> FsResult<(u64, Attr, Opened)> {
        let dir = self.inode(parent)?;
        let path = child_path(&dir.path, name)?;
        self.require_writes(&path)?;
        let run = writable_run_file(&path)?;
        let upload = Upload::new(path.clone(), run)?;
        let attr = upload.attr();
        let ino = self.inodes.remember(parent, path, attr.clone());
        let fh = self.add_handle(Handle::Write(Arc::new(tokio::sync::Mutex::new(upload))));
        Ok((
            ino,
            attr,
            Opened {
                fh,
                keep_cache: false,
                backing: None,
            },
        ))
    }

    /// Opens run file `ino` for writing: emptied with `truncate`, else with its current
    /// content downloaded first.
    pub async fn open_write(&self, ino: u64, truncate: bool) -> FsResult<Opened> {
        let inode = self.inode(ino)?;
        self.require_writes(&inode.path)?;
        let run = writable_run_file(&inode.path)?;
        let mut upload = Upload::new(inode.path.clone(), run)?;
        if truncate {
            upload.dirty = true;
        } else {
            // The current content, streamed into the temporary file.
            let failed = |e: object_store::Error| FsError::io(format!("{}: {e}", inode.path));
            let mut stream = self
                .catalog
                .backend()
                .store
                .get(&inode.path)
                .await
                .map_err(failed)?
                .into_stream();
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(failed)?;
                let file = Arc::clone(&upload.file);
                let at = upload.size;
                let len = chunk.len() as u64;
                blocking(&inode.path, move || file.write_all_at(&chunk, at)).await?;
                upload.size += len;
            }
        }
        let fh = self.add_handle(Handle::Write(Arc::new(tokio::sync::Mutex::new(upload))));
        Ok(Opened {
            fh,
            keep_cache: false,
            backing: None,
        })
    }

    /// Writes `data` at `offset` of an open file.
    pub async fn write(&self, fh: u64, offset: u64, data: Vec<u8>) -> FsResult<u32> {
        let upload = match self.handles().get(&fh) {
            Some(Handle::Write(u)) => Arc::clone(u),
            Some(_) => {
                return Err(FsError::new(
                    libc::EBADF,
                    tracing::Level::DEBUG,
                    "not open for writing",
                ));
            }
            None => return Err(FsError::bad_handle(fh)),
        };
        upload.lock().await.write(offset, data).await
    }

    /// Sets the size of run file `ino` (through handle `fh` when given).
    pub async fn truncate(&self, ino: u64, fh: Option<u64>, size: u64) -> FsResult<Attr> {
        let upload = fh.and_then(|fh| match self.handles().get(&fh) {
            Some(Handle::Write(u)) => Some(Arc::clone(u)),
            _ => None,
        });
        if let Some(upload) = upload {
            let mut u = upload.lock().await;
            u.truncate(size).await?;
            return Ok(u.attr());
        }
        // `truncate(path)` without an open handle: rewrite the file now.
        let opened = self.open_write(ino, size == 0).await?;
        let result = async {
            let upload = match self.handles().get(&opened.fh) {
                Some(Handle::Write(u)) => Arc::clone(u),
                _ => return Err(FsError::bad_handle(opened.fh)),
            };
            upload.lock().await.truncate(size).await?;
            self.flush(opened.fh).await?;
            let attr = upload.lock().await.attr();
            Ok(attr)
        }
        .await;
        self.handles().remove(&opened.fh);
        result
    }

    /// Uploads a written file now (`close` calls it): the upload's error is `close`'s.
    pub async fn flush(&self, fh: u64) -> FsResult<()> {
        let upload = match self.handles().get(&fh) {
            Some(Handle::Write(u)) => Arc::clone(u),
            _ => return Ok(()),
        };
        self.finish_upload(&upload).await
    }

    pub(super) async fn finish_upload(
        &self,
        upload: &Arc<tokio::sync::Mutex<Upload>>,
    ) -> FsResult<()> {
        let mut u = upload.lock().await;
        if !u.dirty {
            return Ok(());
        }
        let store = &self.catalog.backend().store;
        store
            .put_file(&u.path, Arc::clone(&u.file), u.size)
            .await
            .map_err(|e| FsError::io(format!("{}: upload to W&B failed: {e}", u.path)))?;
        u.dirty = false;
        tracing::info!(path = %u.path, bytes = u.size, "uploaded");
        let run = u.run.clone();
        let path = u.path.clone();
        drop(u);
        self.catalog.local_dirs().filled(&path);
        self.after_run_write(&run).await;
        Ok(())
    }

    /// Refreshes the mirror's listing of a run after a write and tells the kernel.
    async fn after_run_write(&self, run: &RunRef) {
        if let Some(engine) = &self.catalog.backend().engine
            && let Err(e) = engine
                .refresh_run_files(&run.entity, &run.project, &run.run)
                .await
        {
            tracing::warn!("{run}: refreshing the mirror's file listing after a write: {e}");
        }
        self.refresh_run(run).await;
    }

    /// Deletes run file `name` from directory `parent`.
    pub async fn unlink(&self, parent: u64, name: &str) -> FsResult<()> {
        let dir = self.inode(parent)?;
        let path = child_path(&dir.path, name)?;
        self.require_writes(&path)?;
        let run = writable_run_file(&path)?;
        let entry = self.catalog.lookup(&dir.path, name).await?;
        if entry.attr.is_dir() {
            return Err(FsError::is_dir(&path));
        }
        self.catalog
            .backend()
            .store
            .delete(&path)
            .await
            .map_err(|e| FsError::io(format!("{path}: deleting it in W&B failed: {e}")))?;
        self.after_run_write(&run).await;
        Ok(())
    }

    /// Renames a run file (within or across runs: W&B has no rename, so the bytes are copied
    /// through this process and the old file deleted).
    pub async fn rename(
        &self,
        parent: u64,
        name: &str,
        new_parent: u64,
        new_name: &str,
    ) -> FsResult<()> {
        let from_dir = self.inode(parent)?;
        let to_dir = self.inode(new_parent)?;
        let from = child_path(&from_dir.path, name)?;
        let to = child_path(&to_dir.path, new_name)?;
        self.require_writes(&from)?;
        let from_run = writable_run_file(&from)?;
        let to_run = writable_run_file(&to)?;
        let entry = self.catalog.lookup(&from_dir.path, name).await?;
        if entry.attr.is_dir() {
            return Err(FsError::new(
                libc::EXDEV,
                tracing::Level::INFO,
                format!("{from}: W&B has no directories to rename; move the files one by one"),
            ));
        }
        let max = self.config.rename_copy_max;
        if entry.attr.size > max {
            return Err(FsError::new(
                libc::EXDEV,
                tracing::Level::INFO,
                format!(
                    "{from}: W&B has no rename, and {} bytes is more than a rename copies \
                     ({max}, --max-rename-copy); `mv` copies and deletes it instead",
                    entry.attr.size
                ),
            ));
        }
        self.catalog
            .backend()
            .store
            .rename(&from, &to)
            .await
            .map_err(|e| FsError::io(format!("{from} -> {to}: {e}")))?;
        self.catalog.local_dirs().filled(&to);
        // The kernel moves its dentry (and keeps the inode) once we reply.
        self.inodes.rename(&from, new_parent, to);
        self.after_run_write(&from_run).await;
        if to_run != from_run {
            self.after_run_write(&to_run).await;
        }
        Ok(())
    }

    /// Creates directory `name` in `parent` (inside a run only; see the module docs).
    pub async fn mkdir(&self, parent: u64, name: &str) -> FsResult<(u64, Attr)> {
        let dir = self.inode(parent)?;
        let path = child_path(&dir.path, name)?;
        self.require_writes(&path)?;
        writable_run_file(&path)?;
        if self.catalog.lookup(&dir.path, name).await.is_ok() {
            return Err(FsError::new(
                libc::EEXIST,
                tracing::Level::DEBUG,
                format!("{path}: exists"),
            ));
        }
        self.catalog.local_dirs().add(&path);
        self.catalog.invalidate(&dir.path).await;
        let attr = Attr {
            writable: true,
            ..Attr::dir(SystemTime::now())
        };
        let ino = self.inodes.remember(parent, path, attr.clone());
        Ok((ino, attr))
    }

    /// Removes an empty directory created with `mkdir`.
    pub async fn rmdir(&self, parent: u64, name: &str) -> FsResult<()> {
        let dir = self.inode(parent)?;
        let path = child_path(&dir.path, name)?;
        self.require_writes(&path)?;
        if self.catalog.local_dirs().remove(&path) {
            self.catalog.invalidate(&dir.path).await;
            return Ok(());
        }
        let listing = self.catalog.list(&path).await?;
        if listing.entries.is_empty() {
            Ok(())
        } else {
            Err(FsError::new(
                libc::ENOTEMPTY,
                tracing::Level::DEBUG,
                format!("{path}: not empty"),
            ))
        }
    }
}
