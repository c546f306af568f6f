//! The filesystem logic, without the kernel: [`WandbFs`] answers lookups, attributes,
//! directory reads, opens, reads, extended attributes and writes as plain async methods that
//! return values or an [`FsError`] carrying the errno. The `fuser::Filesystem` adapter
//! (`crate::fuse`) only moves requests onto the runtime and replies; this struct is what the
//! unit tests drive (mountpoint-s3's split).
//!
//! Module map: [`catalog`] (the tree: listings and attributes), [`inode`] (stable inode
//! numbers, kernel references), [`synthetic`] and [`remote`] (reads), [`cache`] (the on-disk
//! content cache), [`write`] (uploads through `--allow-write`), [`xattr`], [`refresh`] (what
//! changed after a sync, told to the kernel), [`error`] (errno mapping).

pub mod attr;
pub mod cache;
pub mod catalog;
pub mod error;
pub mod inode;
pub mod passthrough;
pub mod refresh;
pub mod remote;
pub mod synthetic;
pub mod write;
pub mod xattr;

use std::collections::HashMap;
use std::ffi::OsStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use object_store::path::Path;
use wandbfs::store::layout::Location;
use wandbfs::store::source::MetadataSource as _;
use wandbfs::store::source::SyntheticBody;

pub use attr::{Attr, Kind};
pub use catalog::{Backend, Catalog, CatalogConfig, Entry};
pub use error::{FsError, FsResult};
pub use inode::{Inode, InodeTable, ROOT_INO};

use remote::{ReadBudget, RemoteContext, RemoteFile, RemoteReader};
use synthetic::SyntheticReader;

/// Settings of a [`WandbFs`] beyond the catalog's.
#[derive(Clone, Debug)]
pub struct FsConfig {
    /// The subtree mounted at the root (`entity`, `entity/project` or `…/run_id`; empty for
    /// everything).
    pub scope: Path,
    /// Readahead bytes in flight across all open files.
    pub read_budget: u64,
    /// Owner of every entry.
    pub uid: u32,
    /// Group of every entry.
    pub gid: u32,
    /// No W&B requests: run files are readable from the content cache only.
    pub offline: bool,
    /// Largest file `rename` copies (W&B has no rename); above it `EXDEV`
    /// ([`write::DEFAULT_RENAME_COPY_MAX`]).
    pub rename_copy_max: u64,
}

/// A directory entry as readdir returns it.
#[derive(Clone, Debug)]
pub struct DirEntry {
    /// Inode number.
    pub ino: u64,
    /// The offset of the *next* entry (what the kernel passes back to continue).
    pub next_offset: u64,
    /// Name.
    pub name: String,
    /// Attributes (for readdirplus).
    pub attr: Attr,
}

/// An open file's reader or writer.
enum Handle {
    Dir(Arc<Vec<(String, Entry)>>),
    Synthetic(Arc<tokio::sync::Mutex<SyntheticReader>>),
    Remote(Arc<tokio::sync::Mutex<RemoteReader>>),
    Write(Arc<tokio::sync::Mutex<write::Upload>>),
}

/// What an `open` gives the kernel.
#[derive(Clone, Debug)]
pub struct Opened {
    /// The handle.
    pub fh: u64,
    /// Keep the page cache across opens (the content is identified by version; changes are
    /// invalidated explicitly).
    pub keep_cache: bool,
    /// A local file holding exactly the file's bytes, which the kernel may read itself
    /// (FUSE passthrough, see [`passthrough`]).
    pub backing: Option<Backing>,
}

/// A local file with exactly a file's bytes (a complete object of the content cache, a
/// rendered table).
#[derive(Clone, Debug)]
pub struct Backing {
    /// What it holds (path, version, size): opens of one inode share a backing only when it
    /// holds the version they opened.
    pub identity: String,
    /// The file, open for reading.
    pub file: Arc<std::fs::File>,
}

/// The filesystem (see the module docs).
pub struct WandbFs {
    catalog: Arc<Catalog>,
    inodes: Arc<InodeTable>,
    handles: Mutex<HashMap<u64, Handle>>,
    next_fh: AtomicU64,
    /// The listing generation each directory was last opened with (see [`WandbFs::opendir`]).
    dir_generations: Mutex<HashMap<u64, u64>>,
    remote: RemoteContext,
    config: FsConfig,
    notices: refresh::Notices,
}

impl WandbFs {
    /// A filesystem over `catalog`; `notices` carries invalidations to the kernel (from a
    /// thread of their own).
    pub async fn new(
        catalog: Arc<Catalog>,
        cache: Option<cache::ContentCache>,
        config: FsConfig,
        notices: refresh::Notices,
    ) -> FsResult<WandbFs> {
        let root_attr = catalog.root_attr(&config.scope).await?;
        let backend = catalog.backend().clone();
        let remote = RemoteContext {
            client: backend.store.client().clone(),
            source: backend.source.clone(),
            cache,
            budget: ReadBudget::new(config.read_budget),
            offline: config.offline,
        };
        Ok(WandbFs {
            inodes: Arc::new(InodeTable::new(config.scope.clone(), root_attr)),
            catalog,
            handles: Mutex::new(HashMap::new()),
            next_fh: AtomicU64::new(1),
            dir_generations: Mutex::new(HashMap::new()),
            remote,
            config,
            notices,
        })
    }

    /// The catalog.
    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.catalog
    }

    /// The inode table.
    pub fn inodes(&self) -> &Arc<InodeTable> {
        &self.inodes
    }

    /// The configuration.
    pub fn config(&self) -> &FsConfig {
        &self.config
    }

    /// How long the kernel may trust an answer.
    pub fn ttl(&self) -> Duration {
        self.catalog.config().metadata_ttl
    }

    fn inode(&self, ino: u64) -> FsResult<Inode> {
        self.inodes.get(ino).ok_or_else(|| {
            FsError::new(
                libc::ESTALE,
                tracing::Level::DEBUG,
                format!("inode {ino} is not known (forgotten)"),
            )
        })
    }

    fn handles(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Handle>> {
        self.handles.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn add_handle(&self, handle: Handle) -> u64 {
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        self.handles().insert(fh, handle);
        fh
    }

    /// `name` in directory `parent`: its inode (one more kernel reference) and attributes.
    pub async fn lookup(&self, parent: u64, name: &OsStr) -> FsResult<(u64, Attr)> {
        let dir = self.inode(parent)?;
        if !dir.attr.is_dir() {
            return Err(FsError::not_dir(&dir.path));
        }
        let name = name
            .to_str()
            .ok_or_else(|| FsError::not_found(format!("{}/{name:?}", dir.path)))?;
        let entry = self.catalog.lookup(&dir.path, name).await?;
        let ino = self
            .inodes
            .remember(parent, entry.path.clone(), entry.attr.clone());
        Ok((ino, entry.attr))
    }

    /// Drops `n` kernel references to `ino`.
    pub fn forget(&self, ino: u64, n: u64) {
        self.inodes.forget(ino, n);
    }

    /// The current attributes of `ino`.
    pub async fn getattr(&self, ino: u64) -> FsResult<Attr> {
        let inode = self.inode(ino)?;
        if inode.attr.writable
            && let Some(attr) = self.pending_attr(ino).await
        {
            return Ok(attr);
        }
        let attr = if ino == ROOT_INO {
            self.catalog.root_attr(&inode.path).await?
        } else {
            let parent = self.inode(inode.parent)?;
            let name = inode.path.filename().unwrap_or_default().to_owned();
            self.catalog.lookup(&parent.path, &name).await?.attr
        };
        self.inodes.set_attr(ino, attr.clone());
        Ok(attr)
    }

    /// The target of a symbolic link.
    pub fn readlink(&self, ino: u64) -> FsResult<String> {
        match self.inode(ino)?.attr.kind {
            Kind::Symlink(target) => Ok(target),
            _ => Err(FsError::new(
                libc::EINVAL,
                tracing::Level::DEBUG,
                "not a symbolic link",
            )),
        }
    }

    /// Opens directory `ino`: its entries as of now, so offsets stay stable while it is read.
    ///
    /// The kernel may keep what it read of a directory (`FOPEN_CACHE_DIR`) and serve the next
    /// `ls` from it without a single `readdir` request. `keep_cache` says whether that is still
    /// right: it is when the listing has the generation the kernel last read (same names, same
    /// kinds); otherwise the kernel drops its copy and reads the directory again. Freshness is
    /// the listing's own (the metadata TTL, a sync, a write), exactly as without the cache.
    pub async fn opendir(&self, ino: u64) -> FsResult<Opened> {
        let inode = self.inode(ino)?;
        if !inode.attr.is_dir() {
            return Err(FsError::not_dir(&inode.path));
        }
        let listing = self.catalog.list(&inode.path).await?;
        let entries: Vec<(String, Entry)> = listing
            .entries
            .iter()
            .map(|(name, entry)| (name.clone(), entry.clone()))
            .collect();
        let previous = self
            .dir_generations
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(ino, listing.generation);
        Ok(Opened {
            fh: self.add_handle(Handle::Dir(Arc::new(entries))),
            keep_cache: previous == Some(listing.generation),
            backing: None,
        })
    }

    /// Entries of an open directory from `offset` on (`.` and `..` first). With `plus`, each
    /// returned entry other than `.` and `..` counts as a kernel reference — but only the
    /// ones the kernel accepts: `accept` is called in order and returns false when its buffer
    /// is full.
    pub fn readdir(
        &self,
        ino: u64,
        fh: u64,
        offset: u64,
        plus: bool,
        mut accept: impl FnMut(&DirEntry) -> bool,
    ) -> FsResult<()> {
        let inode = self.inode(ino)?;
        let entries = match self.handles().get(&fh) {
            Some(Handle::Dir(entries)) => Arc::clone(entries),
            _ => return Err(FsError::bad_handle(fh)),
        };
        let dots = [
            (".", ino, inode.attr.clone()),
            ("..", inode.parent, Attr::dir(inode.attr.mtime)),
        ];
        let total = entries.len() as u64 + 2;
        for position in offset..total {
            let out = match position {
                0 | 1 => {
                    let (name, ino, attr) = &dots[position as usize];
                    DirEntry {
                        ino: *ino,
                        next_offset: position + 1,
                        name: (*name).to_owned(),
                        attr: attr.clone(),
                    }
                }
                _ => {
                    let (name, entry) = &entries[(position - 2) as usize];
                    DirEntry {
                        ino: self.inodes.peek(&entry.path),
                        next_offset: position + 1,
                        name: name.clone(),
                        attr: entry.attr.clone(),
                    }
                }
            };
            if position >= 2 && plus {
                // Numbered as the kernel will know it (a collision probes a new number).
                let (_, entry) = &entries[(position - 2) as usize];
                let mut out = out;
                out.ino = self
                    .inodes
                    .remember(ino, entry.path.clone(), entry.attr.clone());
                if !accept(&out) {
                    // The kernel did not take it: no reference.
                    self.inodes.forget(out.ino, 1);
                    break;
                }
                continue;
            }
            if !accept(&out) {
                break;
            }
        }
        Ok(())
    }

    /// Closes a directory handle.
    pub fn releasedir(&self, fh: u64) {
        self.handles().remove(&fh);
    }

    /// Opens file `ino` for reading (writes: [`WandbFs::open_write`]).
    pub async fn open(&self, ino: u64) -> FsResult<Opened> {
        let inode = self.inode(ino)?;
        match &inode.attr.kind {
            Kind::Dir => return Err(FsError::is_dir(&inode.path)),
            Kind::Symlink(_) => {
                return Err(FsError::new(
                    libc::ELOOP,
                    tracing::Level::DEBUG,
                    "a symbolic link",
                ));
            }
            Kind::File => {}
        }
        let path = inode.path.as_ref().to_owned();
        let source = self.catalog.backend().source.clone();
        let (origin, known) = match Location::parse(&inode.path) {
            Location::Synthetic(run, kind) => {
                // The mirror first: when it covers the run (the usual case) its answer is the
                // file, in one round of queries; otherwise the run is synced first.
                let known = match self
                    .catalog
                    .backend()
                    .mirror_source
                    .synthetic(&run, kind)
                    .await
                {
                    Ok(Some(object)) => Some(object),
                    _ => {
                        self.catalog.ensure_run(&run).await?;
                        None
                    }
                };
                (Some(synthetic::OriginFile::Run(run, kind)), known)
            }
            Location::ProjectTable(project, kind) => {
                (Some(synthetic::OriginFile::Project(project, kind)), None)
            }
            _ => (None, None),
        };
        let (handle, backing) = match origin {
            Some(file) => {
                let origin = synthetic::Origin { source, file };
                let object = match known {
                    Some(object) => object,
                    None => origin
                        .current()
                        .await?
                        .ok_or_else(|| FsError::not_found(&path))?,
                };
                if object.size != inode.attr.size
                    || Some(&object.e_tag) != inode.attr.e_tag.as_ref()
                {
                    // It changed since the kernel last asked: its size and cached pages go.
                    self.notices.send(refresh::Notice::Data { ino, from: 0 });
                }
                let backing = match &object.body {
                    SyntheticBody::Ranged(reader) => reader.local_file().map(|file| Backing {
                        identity: format!("{path}@{}:{}", object.e_tag, object.size),
                        file,
                    }),
                    SyntheticBody::Rendered(_) => None,
                };
                let handle = Handle::Synthetic(Arc::new(tokio::sync::Mutex::new(
                    SyntheticReader::new(object, origin, path),
                )));
                (handle, backing)
            }
            None => {
                let location = Location::parse(&inode.path);
                if let Location::ArtifactFile(version, name) = &location
                    && inode.attr.size == 0
                {
                    // A reference entry has no size: without this check it would read as
                    // empty. (A sized one fails at its first read: no URL to fetch.)
                    let entry = self
                        .catalog
                        .backend()
                        .source
                        .artifact_file(version, name)
                        .await?;
                    if let Some(uri) = entry.and_then(|e| e.reference) {
                        return Err(FsError::new(
                            libc::EOPNOTSUPP,
                            tracing::Level::INFO,
                            format!("{path}: a reference to {uri}; its bytes are not in W&B"),
                        ));
                    }
                }
                let file = location
                    .file_ref()
                    .ok_or_else(|| FsError::not_found(&path))?;
                let key = cache::ObjectKey::of(inode.attr.e_tag.as_deref(), inode.attr.size);
                let backing = match (&self.remote.cache, key) {
                    (Some(cache), Some(key)) if inode.attr.size > 0 => {
                        let cache = cache.clone();
                        tokio::task::spawn_blocking(move || cache.complete_file(&key))
                            .await
                            .ok()
                            .flatten()
                            .map(|file| Backing {
                                identity: format!("{key:?}"),
                                file: Arc::new(file),
                            })
                    }
                    _ => None,
                };
                let handle = Handle::Remote(Arc::new(tokio::sync::Mutex::new(RemoteReader::new(
                    self.remote.clone(),
                    RemoteFile {
                        file,
                        path,
                        size: inode.attr.size,
                        e_tag: inode.attr.e_tag.clone(),
                    },
                ))));
                (handle, backing)
            }
        };
        Ok(Opened {
            fh: self.add_handle(handle),
            keep_cache: true,
            backing,
        })
    }

    /// Up to `size` bytes at `offset` of an open file.
    pub async fn read(&self, fh: u64, offset: u64, size: u32) -> FsResult<Bytes> {
        enum Reader {
            Synthetic(Arc<tokio::sync::Mutex<SyntheticReader>>),
            Remote(Arc<tokio::sync::Mutex<RemoteReader>>),
            Write(Arc<tokio::sync::Mutex<write::Upload>>),
        }
        let reader = match self.handles().get(&fh) {
            Some(Handle::Synthetic(r)) => Reader::Synthetic(Arc::clone(r)),
            Some(Handle::Remote(r)) => Reader::Remote(Arc::clone(r)),
            Some(Handle::Write(w)) => Reader::Write(Arc::clone(w)),
            Some(Handle::Dir(_)) => return Err(FsError::is_dir(format!("handle {fh}"))),
            None => return Err(FsError::bad_handle(fh)),
        };
        match reader {
            Reader::Synthetic(r) => r.lock().await.read(offset, size).await,
            Reader::Remote(r) => r.lock().await.read(offset, size).await,
            Reader::Write(w) => w.lock().await.read(offset, size).await,
        }
    }

    /// Closes a file handle; a written file is uploaded now if `flush` did not already, and
    /// the outcome returned.
    pub async fn release(&self, fh: u64) -> FsResult<()> {
        let handle = self.handles().remove(&fh);
        if let Some(Handle::Write(upload)) = handle {
            return self.finish_upload(&upload).await;
        }
        Ok(())
    }

    /// Filesystem statistics for `df`: the content cache's size as capacity, nothing used
    /// (W&B holds the data), the kernel's inodes.
    pub fn statfs(&self) -> Statfs {
        let block = 4096u64;
        let capacity = self
            .remote
            .cache
            .as_ref()
            .map_or(1 << 40, |c| c.limit().max(1 << 30));
        let blocks = capacity / block;
        Statfs {
            blocks,
            bfree: blocks,
            bavail: blocks,
            files: self.inodes.count() as u64,
            ffree: u64::from(u32::MAX),
            bsize: block as u32,
            namelen: 255,
            frsize: block as u32,
        }
    }
}

/// What `statfs` reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Statfs {
    /// Total blocks.
    pub blocks: u64,
    /// Free blocks.
    pub bfree: u64,
    /// Blocks available to unprivileged users.
    pub bavail: u64,
    /// Inodes in use.
    pub files: u64,
    /// Free inodes.
    pub ffree: u64,
    /// Block size.
    pub bsize: u32,
    /// Longest name.
    pub namelen: u32,
    /// Fragment size.
    pub frsize: u32,
}
