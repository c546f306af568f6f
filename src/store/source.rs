//! Where the store's metadata and synthetic files come from: the [`MetadataSource`] trait.
//!
//! `WandbStore` maps paths to W&B objects (`layout`) and serves bytes; everything it needs to
//! *know* — listings, sizes, digests, times, the synthetic files, fresh download URLs — it asks
//! a source. Two implementations are planned:
//!
//! - [`LiveSource`](super::LiveSource) (this issue): the W&B API through the client, with
//!   bounded TTL caches.
//! - a Postgres-backed source over `crate::mirror` (the mirror issue), composed with the live
//!   one by [`Layered`](super::Layered): mirror first, live fallback.
//!
//! Contract for implementors:
//! - Missing objects are `Ok(None)` (lookups) or an empty stream (listings) — never an error —
//!   so a listing of a missing prefix is empty, as object_store requires.
//! - A source that does not hold something (a run the mirror has not synced) answers
//!   [`StoreError::NotCovered`]; `Layered` then asks the next source. It must say so before
//!   yielding any item of a stream (the first item is the `NotCovered` error).
//! - Synthetic files must be rendered with [`super::render`] so that the bytes are identical
//!   whatever the source; `size` must be the exact length of what `body` yields.
//! - [`FileEntry`] describes a file; the URL to fetch it is a separate call
//!   ([`MetadataSource::locate`]) because URLs are signed and expire, and a mirror cannot keep
//!   them fresh.

use std::fmt::Debug;
use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::stream::BoxStream;

use super::error::StoreError;
use super::layout::{ProjectTableKind, SyntheticKind};
use crate::client::FileLocation;

/// Result of a source call.
pub type SourceResult<T> = Result<T, StoreError>;

/// `entity/project`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProjectRef {
    /// Entity (user or team).
    pub entity: String,
    /// Project name.
    pub project: String,
}

impl ProjectRef {
    /// A project reference.
    pub fn new(entity: impl Into<String>, project: impl Into<String>) -> Self {
        ProjectRef {
            entity: entity.into(),
            project: project.into(),
        }
    }
}

impl std::fmt::Display for ProjectRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.entity, self.project)
    }
}

/// `entity/project/run_id`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RunRef {
    /// Entity.
    pub entity: String,
    /// Project.
    pub project: String,
    /// Run id (W&B `name`).
    pub run: String,
}

impl RunRef {
    /// A run reference.
    pub fn new(
        entity: impl Into<String>,
        project: impl Into<String>,
        run: impl Into<String>,
    ) -> Self {
        RunRef {
            entity: entity.into(),
            project: project.into(),
            run: run.into(),
        }
    }

    /// A run of `project`.
    pub fn in_project(project: &ProjectRef, run: impl Into<String>) -> Self {
        RunRef::new(&project.entity, &project.project, run)
    }

    /// The run's project.
    pub fn project_ref(&self) -> ProjectRef {
        ProjectRef::new(&self.entity, &self.project)
    }
}

impl std::fmt::Display for RunRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}", self.entity, self.project, self.run)
    }
}

/// An artifact collection of a type: `entity/project/artifacts/<type>/<collection>`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CollectionRef {
    /// The project.
    pub project: ProjectRef,
    /// Artifact type (`dataset`, `model`, …).
    pub type_name: String,
    /// Collection name.
    pub collection: String,
}

impl std::fmt::Display for CollectionRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}", self.project, self.type_name, self.collection)
    }
}

/// A version of a collection, by version label (`v3`) or alias (`latest`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VersionRef {
    /// The collection.
    pub collection: CollectionRef,
    /// `vN` or an alias.
    pub version: String,
}

impl std::fmt::Display for VersionRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.collection, self.version)
    }
}

/// A file: a run file or an artifact file, by W&B name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FileRef {
    /// A run file.
    Run(RunRef, String),
    /// A file of an artifact version.
    Artifact(VersionRef, String),
}

impl std::fmt::Display for FileRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FileRef::Run(run, name) => write!(f, "{run}/{name}"),
            FileRef::Artifact(version, name) => write!(f, "{version}/{name}"),
        }
    }
}

/// A project in a listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProjectEntry {
    /// Project name.
    pub name: String,
}

/// A run in a listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunEntry {
    /// Run id (W&B `name`).
    pub id: String,
    /// `running`, `finished`, `crashed`, … when the listing has it.
    pub state: Option<String>,
    /// The run's `updatedAt` (else `heartbeatAt`, else `createdAt`), when known: the time its
    /// synthetic files carry.
    pub last_modified: Option<DateTime<Utc>>,
}

impl RunEntry {
    /// A listing entry with only the id known.
    pub fn new(id: impl Into<String>) -> Self {
        RunEntry {
            id: id.into(),
            state: None,
            last_modified: None,
        }
    }
}

/// A file (run file or artifact file).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileEntry {
    /// W&B name, `/`-separated.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// Entity tag: base64 MD5 for run files and stored artifact files (the artifact digest).
    pub e_tag: Option<String>,
    /// Last update.
    pub last_modified: Option<DateTime<Utc>>,
    /// MIME type.
    pub content_type: Option<String>,
    /// Where the bytes are when W&B does not hold them: a reference artifact entry's URI
    /// (`s3://…`, `https://…`; such an entry cannot be read through the store). `None` when
    /// W&B holds the bytes, or the source cannot tell.
    pub reference: Option<String>,
}

/// An artifact version in a listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VersionEntry {
    /// The version label (`v0`, `v1`, …).
    pub version: String,
    /// Aliases pointing at it (`latest`, …).
    pub aliases: Vec<String>,
}

/// A synthetic file, ready to serve.
#[derive(Clone, Debug)]
pub struct SyntheticObject {
    /// Exact size in bytes (what `body` yields in full).
    pub size: u64,
    /// Entity tag derived from the content (see `docs/LAYOUT.md`).
    pub e_tag: String,
    /// The run's `updatedAt` (else `heartbeatAt`, else `createdAt`).
    pub last_modified: DateTime<Utc>,
    /// The content.
    pub body: SyntheticBody,
}

/// The content of a synthetic file.
#[derive(Clone)]
pub enum SyntheticBody {
    /// Fully rendered in memory (the live source renders and caches).
    Rendered(Bytes),
    /// Read by byte range on demand (the mirror keeps pre-rendered, offset-indexed chunks).
    Ranged(Arc<dyn RangeRead>),
}

impl Debug for SyntheticBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SyntheticBody::Rendered(b) => write!(f, "Rendered({} bytes)", b.len()),
            SyntheticBody::Ranged(r) => write!(f, "Ranged({r:?})"),
        }
    }
}

/// Byte-range reads of a synthetic file that is not held in memory.
#[async_trait]
pub trait RangeRead: Send + Sync + Debug {
    /// Bytes `range` of the file (the store only asks for ranges within `0..size`).
    async fn read(
        &self,
        range: Range<u64>,
    ) -> SourceResult<BoxStream<'static, SourceResult<Bytes>>>;

    /// The local file holding exactly the file's bytes at their offsets, when there is one (a
    /// rendered table): a filesystem can hand it to the kernel to read directly (FUSE
    /// passthrough). `None` by default.
    fn local_file(&self) -> Option<Arc<std::fs::File>> {
        None
    }
}

/// What cached state to drop after a write (see [`MetadataSource::invalidate`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Invalidation {
    /// Everything known about one run (files, record, rendered files).
    Run(RunRef),
}

/// The store's view of W&B metadata. See the module docs for the contract.
#[async_trait]
pub trait MetadataSource: Send + Sync + Debug + 'static {
    /// A short name for messages and `Display` (`live`, `mirror`, `mirror+live`).
    fn name(&self) -> String;

    /// Entities at the root: the viewer's entity and teams.
    async fn entities(&self) -> SourceResult<Vec<String>>;

    /// Projects of an entity (empty for an unknown entity).
    fn projects(&self, entity: &str) -> BoxStream<'static, SourceResult<ProjectEntry>>;

    /// Runs of a project (empty for an unknown project).
    fn runs(&self, project: &ProjectRef) -> BoxStream<'static, SourceResult<RunEntry>>;

    /// Files of a run (empty for an unknown run).
    fn run_files(&self, run: &RunRef) -> BoxStream<'static, SourceResult<FileEntry>>;

    /// One run file by exact name.
    async fn run_file(&self, run: &RunRef, name: &str) -> SourceResult<Option<FileEntry>>;

    /// A synthetic file of a run; `None` when the run does not exist.
    async fn synthetic(
        &self,
        run: &RunRef,
        kind: SyntheticKind,
    ) -> SourceResult<Option<SyntheticObject>>;

    /// Artifact type names of a project.
    fn artifact_types(&self, project: &ProjectRef) -> BoxStream<'static, SourceResult<String>>;

    /// Collection names of an artifact type.
    fn artifact_collections(
        &self,
        project: &ProjectRef,
        type_name: &str,
    ) -> BoxStream<'static, SourceResult<String>>;

    /// Committed versions of a collection (empty when the collection is not of that type).
    fn artifact_versions(
        &self,
        collection: &CollectionRef,
    ) -> BoxStream<'static, SourceResult<VersionEntry>>;

    /// Files of a version (by label or alias; empty when it does not exist).
    fn artifact_files(&self, version: &VersionRef) -> BoxStream<'static, SourceResult<FileEntry>>;

    /// One artifact file by exact path.
    async fn artifact_file(
        &self,
        version: &VersionRef,
        name: &str,
    ) -> SourceResult<Option<FileEntry>>;

    /// Where to download a file. `fresh` asks for a new signed URL because the previous one
    /// was refused or the download disagreed with the metadata: a caching source drops what
    /// it knows about the file (URL and metadata) and asks W&B again.
    /// [`StoreError::NotFound`] when the file does not exist.
    async fn locate(&self, file: &FileRef, fresh: bool) -> SourceResult<FileLocation>;

    /// The file's metadata as W&B has it now, asked by the store right after
    /// `locate(file, true)` when a download disagreed with the metadata it was given. The
    /// default is the ordinary lookup, right for a source whose fresh `locate` already
    /// refreshed what it caches. A source that cannot refresh (the mirror, whose listing is as
    /// of its last sync) answers [`StoreError::NotCovered`], so a layered source asks the next
    /// one instead of handing back the same stale entry.
    async fn fresh_file(&self, file: &FileRef) -> SourceResult<Option<FileEntry>> {
        match file {
            FileRef::Run(run, name) => self.run_file(run, name).await,
            FileRef::Artifact(version, name) => self.artifact_file(version, name).await,
        }
    }

    /// A table of a project (`runs.parquet`, `runs.jsonl`), rendered from the mirror; `None`
    /// when the project does not exist. Sources that cannot render tables (the live API)
    /// answer [`StoreError::NotSupported`].
    async fn project_table(
        &self,
        project: &ProjectRef,
        kind: ProjectTableKind,
    ) -> SourceResult<Option<SyntheticObject>> {
        Err(StoreError::NotSupported {
            path: format!("{project}/{}", kind.file_name()),
            reason: "tables are rendered from the mirror: sync the project (`wandbfs sync                      entity/project`) and read it through a mirror-backed store or the mount"
                .to_owned(),
        })
    }

    /// Drops cached state after a write. Sources without caches ignore it.
    async fn invalidate(&self, what: &Invalidation) {
        let _ = what;
    }
}
