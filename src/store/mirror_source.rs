//! [`MirrorSource`]: the store's metadata and synthetic files from the Postgres mirror that
//! `wandbfs sync` fills, at zero API calls. Compose it with the live API through
//! [`Layered`](super::Layered) (mirror first, live fallback), or use it alone offline.
//!
//! # What the mirror covers (freshness rules, also in `docs/MIRROR.md`)
//!
//! Without [`MirrorSourceOptions::authoritative`], the mirror answers only for what a sync
//! completed, and says [`StoreError::NotCovered`] otherwise, so the live source answers:
//!
//! | Request | Served from the mirror when | Fresh as of |
//! |---|---|---|
//! | entities, projects | never (the live API knows what exists) | — |
//! | runs of a project | the project had a complete listing pass | that sync |
//! | a run's files | the run is mirrored (not deleted) and its file listing was synced | its last job |
//! | synthetic files | the run is mirrored, not deleted, and **not pending** (its last job completed after the last listing saw it change) | its last job |
//! | artifact listings and files | the project's artifacts were synced (first sync, metadata pass, `--full`) | that pass |
//! | a run file's URL | the mirror holds its authenticated `url` and no fresh URL is asked for | — |
//!
//! A pending run (a job interrupted or failed) is served live, so a half-synced history is
//! never presented as the whole file. Live runs are served as of their last sync; set
//! [`MirrorSourceOptions::live_run_max_age`] to send runs not in a terminal state to the live
//! API once their mirror copy is older than that (keep `wandbfs sync --watch` running for
//! live tails instead: the live source re-renders whole files).
//!
//! With `authoritative`, the mirror is the whole world (offline use): what it lacks does not
//! exist, and nothing falls back.
//!
//! # Bytes and tags
//!
//! `history.jsonl` and `system.jsonl` are read by byte range from the mirror's blocks (one
//! indexed statement per range; the size is a stored number, so `head` costs
//! nothing). Their bytes equal what the live source renders; their e-tag differs in kind: it
//! identifies the stored version (run, stream, length, last step) instead of hashing the
//! whole file, which would make every `head` O(file). `summary.json`, `config.json` and
//! `metadata.json` are rendered from the mirrored texts with the shared renderer, e-tag
//! included, byte-identical to the live source's.

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use bytes::Bytes;
use chrono::Utc;
use futures::stream::{self, BoxStream, StreamExt};
use md5::{Digest as _, Md5};

use super::error::StoreError;
use super::layout::{ProjectTableKind, SyntheticKind};
use super::render::{self, RunDetail};
use super::source::{
    CollectionRef, FileEntry, FileRef, MetadataSource, ProjectEntry, ProjectRef, RangeRead,
    RunEntry, RunRef, SourceResult, SyntheticBody, SyntheticObject, VersionEntry, VersionRef,
};
use super::tables::TableCache;
use crate::client::FileLocation;
use crate::export::Format;
use crate::mirror::{
    ArtifactVersionSummary, Mirror, MirrorError, ProjectPk, RunMetadata, RunPk, RunSyncState,
    Stream,
};
use crate::sync::records::is_terminal;

/// How a [`MirrorSource`] decides what it covers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MirrorSourceOptions {
    /// The mirror is the whole world: nothing is [`StoreError::NotCovered`] (offline use).
    /// Default **false**.
    pub authoritative: bool,
    /// Runs not in a terminal state whose last sync is older than this are left to the live
    /// source. Default **none**: served as of their last sync.
    pub live_run_max_age: Option<Duration>,
}

/// Metadata and synthetic files from the mirror (see the module docs).
#[derive(Clone)]
pub struct MirrorSource {
    mirror: Mirror,
    options: MirrorSourceOptions,
    tables: TableCache,
}

impl std::fmt::Debug for MirrorSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MirrorSource")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl MirrorSource {
    /// A source over `mirror` that covers only what syncs completed.
    pub fn new(mirror: Mirror) -> Self {
        MirrorSource::with_options(mirror, MirrorSourceOptions::default())
    }

    /// A source with explicit options.
    pub fn with_options(mirror: Mirror, options: MirrorSourceOptions) -> Self {
        MirrorSource {
            mirror,
            options,
            tables: TableCache::new(TableCache::default_dir()),
        }
    }

    /// Renders the tables (`history.parquet`, `runs.parquet`, …) into `tables` instead of
    /// [`TableCache::default_dir`].
    pub fn with_tables(mut self, tables: TableCache) -> Self {
        self.tables = tables;
        self
    }

    fn not_covered(what: impl std::fmt::Display) -> StoreError {
        StoreError::NotCovered {
            what: what.to_string(),
        }
    }

    /// "Not here": final (`None`) for an authoritative mirror, else ask the next source.
    fn absent<T>(&self, what: impl std::fmt::Display) -> SourceResult<Option<T>> {
        if self.options.authoritative {
            Ok(None)
        } else {
            Err(Self::not_covered(what))
        }
    }

    async fn project_pk(&self, project: &ProjectRef) -> SourceResult<Option<ProjectPk>> {
        match self
            .mirror
            .resolve_project(&project.entity, &project.project)
            .await
            .map_err(|e| mirror_error(project, e))?
        {
            Some(pk) => Ok(Some(pk)),
            None => self.absent(project),
        }
    }

    /// The project, when its run listing is complete in the mirror.
    async fn listed_project(&self, project: &ProjectRef) -> SourceResult<Option<ProjectPk>> {
        let Some(pk) = self.project_pk(project).await? else {
            return Ok(None);
        };
        let state = self
            .mirror
            .project_sync_state(pk)
            .await
            .map_err(|e| mirror_error(project, e))?;
        if state.last_metadata_pass_at.is_some() || self.options.authoritative {
            Ok(Some(pk))
        } else {
            Err(Self::not_covered(project))
        }
    }

    /// The project, when its artifacts were synced.
    async fn artifact_project(&self, project: &ProjectRef) -> SourceResult<Option<ProjectPk>> {
        let Some(pk) = self.project_pk(project).await? else {
            return Ok(None);
        };
        let state = self
            .mirror
            .project_sync_state(pk)
            .await
            .map_err(|e| mirror_error(project, e))?;
        let synced = state
            .engine_state
            .get("artifacts_synced_at")
            .is_some_and(|v| !v.is_null());
        if synced || self.options.authoritative {
            Ok(Some(pk))
        } else {
            Err(Self::not_covered(format!("{project}/artifacts")))
        }
    }

    /// A mirrored, not deleted run with its record and sync state.
    async fn run(&self, run: &RunRef) -> SourceResult<Option<(RunMetadata, RunSyncState)>> {
        let found = self
            .mirror
            .run_by_name(&run.entity, &run.project, &run.run)
            .await
            .map_err(|e| mirror_error(run, e))?;
        match found {
            // Deleted upstream as of the last sync; the live API has the final word.
            Some((meta, _)) if meta.deleted => self.absent(run),
            Some(found) => Ok(Some(found)),
            None => self.absent(run),
        }
    }

    /// Whether the run's synthetic files may be served from the mirror.
    fn synthetic_is_current(&self, meta: &RunMetadata, state: &RunSyncState) -> bool {
        if self.options.authoritative {
            return true;
        }
        let synced = state.engine_state.get("synced");
        let complete =
            synced.is_some_and(|s| !s.is_null()) && synced == state.engine_state.get("listed");
        let fresh = match self.options.live_run_max_age {
            Some(max_age) if !is_terminal(meta.state.as_deref()) => {
                (Utc::now() - meta.last_synced_at)
                    .to_std()
                    .unwrap_or_default()
                    <= max_age
            }
            _ => true,
        };
        complete && fresh
    }

    async fn versions(
        &self,
        project: &ProjectRef,
    ) -> SourceResult<Option<Vec<ArtifactVersionSummary>>> {
        let Some(pk) = self.artifact_project(project).await? else {
            return Ok(None);
        };
        self.mirror
            .list_artifact_versions(pk)
            .await
            .map(Some)
            .map_err(|e| mirror_error(project, e))
    }

    /// A version by `vN` label or alias.
    async fn version(&self, version: &VersionRef) -> SourceResult<Option<ArtifactVersionSummary>> {
        let Some(versions) = self.versions(&version.collection.project).await? else {
            return Ok(None);
        };
        let c = &version.collection;
        Ok(versions.into_iter().find(|v| {
            v.type_name == c.type_name
                && v.collection == c.collection
                && is_committed(v)
                && (format!("v{}", v.version_index) == version.version
                    || v.aliases.contains(&version.version))
        }))
    }

    async fn version_files(&self, version: &VersionRef) -> SourceResult<Option<Vec<FileEntry>>> {
        let Some(v) = self.version(version).await? else {
            return Ok(None);
        };
        if !v.manifest_synced && !self.options.authoritative {
            return Err(Self::not_covered(version));
        }
        let entries = self
            .mirror
            .manifest_entries(v.version_pk)
            .await
            .map_err(|e| mirror_error(version, e))?;
        Ok(Some(
            entries
                .into_iter()
                .map(|e| FileEntry {
                    name: e.path,
                    size: e
                        .size_bytes
                        .and_then(|s| u64::try_from(s).ok())
                        .unwrap_or(0),
                    e_tag: e.digest,
                    last_modified: v.updated_at.or(v.created_at),
                    content_type: None,
                    reference: e.ref_uri,
                })
                .collect(),
        ))
    }
    /// A synthetic file of a mirrored run whose record and sync state are at hand.
    async fn synthetic_of(
        &self,
        run: &RunRef,
        meta: &RunMetadata,
        state: &RunSyncState,
        kind: SyntheticKind,
    ) -> SourceResult<SyntheticObject> {
        let detail = RunDetail::from(meta);
        let last_modified = detail.last_modified();
        let path = format!("{run}/{}", kind.file_name());
        let rendered = |bytes: Vec<u8>| SyntheticObject {
            size: bytes.len() as u64,
            e_tag: render::e_tag(&bytes),
            last_modified,
            body: SyntheticBody::Rendered(Bytes::from(bytes)),
        };
        let invalid = |e: crate::values::InvalidJson| StoreError::Invalid {
            path: path.clone(),
            message: e.to_string(),
        };
        Ok(match kind {
            SyntheticKind::HistoryParquet | SyntheticKind::SystemParquet => {
                let stream = match kind {
                    SyntheticKind::HistoryParquet => Stream::History,
                    _ => Stream::System,
                };
                self.tables
                    .run_table(&self.mirror, meta, state, stream)
                    .await?
                    .object(last_modified)?
            }
            SyntheticKind::Summary => rendered(render::summary_json(&detail)),
            SyntheticKind::Config => rendered(render::config_json(&detail).map_err(invalid)?),
            SyntheticKind::Metadata => rendered(render::metadata_json(&detail).map_err(invalid)?),
            SyntheticKind::History | SyntheticKind::System => {
                let (stream, size, last_key) = match kind {
                    SyntheticKind::History => (
                        Stream::History,
                        state.history_bytes,
                        state.history_last_step,
                    ),
                    _ => (Stream::System, state.system_bytes, state.system_last_seq),
                };
                let tag = format!(
                    "wandbfs-mirror:{}:{}:{size}:{last_key:?}",
                    meta.storage_id.as_deref().unwrap_or(&meta.id),
                    kind.file_name()
                );
                SyntheticObject {
                    size,
                    e_tag: base64::engine::general_purpose::STANDARD.encode(Md5::digest(tag)),
                    last_modified,
                    body: SyntheticBody::Ranged(Arc::new(StreamRange {
                        mirror: self.mirror.clone(),
                        run: meta.run_pk,
                        stream,
                        path,
                    })),
                }
            }
        })
    }

    /// Everything a run directory shows — its synthetic files and its file listing — in four
    /// statements instead of one set per file (what a filesystem listing a run needs). The
    /// same coverage rules as the [`MetadataSource`] methods: `NotCovered` when the mirror
    /// does not hold the run's current synthetic files or its file listing.
    pub async fn run_contents(&self, run: &RunRef) -> SourceResult<Option<RunContents>> {
        let Some((meta, state)) = self.run(run).await? else {
            return Ok(None);
        };
        if !self.synthetic_is_current(&meta, &state)
            || (state.files_synced_at.is_none() && !self.options.authoritative)
        {
            return Err(Self::not_covered(run));
        }
        let mut synthetic = Vec::with_capacity(SyntheticKind::ALL.len());
        for kind in SyntheticKind::ALL {
            synthetic.push((kind, self.synthetic_of(run, &meta, &state, kind).await?));
        }
        let files = self
            .mirror
            .list_run_files(meta.run_pk)
            .await
            .map_err(|e| mirror_error(run, e))?
            .into_iter()
            .map(file_entry)
            .collect();
        Ok(Some(RunContents {
            synthetic,
            files,
            metadata: meta,
        }))
    }
}

/// What a run directory holds, from the mirror ([`MirrorSource::run_contents`]).
#[derive(Clone, Debug)]
pub struct RunContents {
    /// The five synthetic files, in listing order.
    pub synthetic: Vec<(SyntheticKind, SyntheticObject)>,
    /// The run's files.
    pub files: Vec<FileEntry>,
    /// The run's record.
    pub metadata: RunMetadata,
}

fn file_entry(f: crate::mirror::RunFileRecord) -> FileEntry {
    FileEntry {
        name: f.name,
        size: f
            .size_bytes
            .and_then(|s| u64::try_from(s).ok())
            .unwrap_or(0),
        e_tag: f.md5,
        last_modified: f.updated_at,
        content_type: f.mimetype,
        reference: None,
    }
}

fn is_committed(v: &ArtifactVersionSummary) -> bool {
    v.state.as_deref().is_none_or(|s| s == "COMMITTED")
}

fn mirror_error(path: impl std::fmt::Display, e: MirrorError) -> StoreError {
    StoreError::Source {
        path: path.to_string(),
        source_name: "mirror".to_owned(),
        message: e.to_string(),
    }
}

/// A stream that yields the items of a future's list, or its error.
fn listing<T, F>(future: F) -> BoxStream<'static, SourceResult<T>>
where
    T: Send + 'static,
    F: std::future::Future<Output = SourceResult<Vec<T>>> + Send + 'static,
{
    stream::once(future)
        .flat_map(|result| match result {
            Ok(items) => stream::iter(items.into_iter().map(Ok)).boxed(),
            Err(e) => stream::iter([Err(e)]).boxed(),
        })
        .boxed()
}

/// Byte ranges of a mirrored stream, read in bounded pieces.
#[derive(Clone)]
struct StreamRange {
    mirror: Mirror,
    run: RunPk,
    stream: Stream,
    path: String,
}

impl std::fmt::Debug for StreamRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamRange")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// Bytes per read statement: large enough to stream at hundreds of MB/s, small enough that a
/// reader holds little.
const READ_PIECE: u64 = 4 << 20;

/// Read statements in flight per reader, delivered in order: a whole-file read (`wandbfs cat`,
/// `cp`, a `get`) overlaps fetching and decompressing the next pieces with the consumer, as
/// the mount's readahead does. At most `READ_AHEAD × READ_PIECE` (16 MiB) held per reader; a
/// read of one piece (the mount's 1 MiB requests) is one statement, as before.
const READ_AHEAD: usize = 4;

#[async_trait]
impl RangeRead for StreamRange {
    async fn read(
        &self,
        range: Range<u64>,
    ) -> SourceResult<BoxStream<'static, SourceResult<Bytes>>> {
        let this = self.clone();
        let pieces = (range.start..range.end)
            .step_by(READ_PIECE as usize)
            .map(move |pos| (pos, (range.end - pos).min(READ_PIECE) as usize));
        Ok(stream::iter(pieces)
            .map(move |(pos, len)| {
                let this = this.clone();
                async move {
                    match this
                        .mirror
                        .read_stream(this.run, this.stream, pos, len)
                        .await
                    {
                        // The store asks only for ranges inside the length it read, and bytes
                        // below the length never change: a short piece means the copy shrank.
                        Ok(bytes) if bytes.len() < len => Err(StoreError::Invalid {
                            path: this.path.clone(),
                            message: format!(
                                "the mirror's copy ends at byte {}",
                                pos + bytes.len() as u64
                            ),
                        }),
                        Ok(bytes) => Ok(bytes),
                        Err(e) => Err(mirror_error(&this.path, e)),
                    }
                }
            })
            .buffered(READ_AHEAD)
            .boxed())
    }
}

#[async_trait]
impl MetadataSource for MirrorSource {
    fn name(&self) -> String {
        "mirror".to_owned()
    }

    async fn entities(&self) -> SourceResult<Vec<String>> {
        if !self.options.authoritative {
            return Err(Self::not_covered("entities"));
        }
        self.mirror
            .list_entities()
            .await
            .map_err(|e| mirror_error("/", e))
    }

    fn projects(&self, entity: &str) -> BoxStream<'static, SourceResult<ProjectEntry>> {
        let this = self.clone();
        let entity = entity.to_owned();
        listing(async move {
            if !this.options.authoritative {
                return Err(Self::not_covered(&entity));
            }
            let names = this
                .mirror
                .list_projects(&entity)
                .await
                .map_err(|e| mirror_error(&entity, e))?;
            Ok(names
                .into_iter()
                .map(|name| ProjectEntry { name })
                .collect())
        })
    }

    fn runs(&self, project: &ProjectRef) -> BoxStream<'static, SourceResult<RunEntry>> {
        let this = self.clone();
        let project = project.clone();
        listing(async move {
            let Some(pk) = this.listed_project(&project).await? else {
                return Ok(Vec::new());
            };
            let runs = this
                .mirror
                .list_run_names(pk)
                .await
                .map_err(|e| mirror_error(&project, e))?;
            Ok(runs
                .into_iter()
                .filter(|r| !r.deleted)
                .map(|r| RunEntry {
                    last_modified: r.updated_at.or(r.heartbeat_at).or(r.created_at),
                    state: r.state,
                    id: r.run_id,
                })
                .collect())
        })
    }

    fn run_files(&self, run: &RunRef) -> BoxStream<'static, SourceResult<FileEntry>> {
        let this = self.clone();
        let run = run.clone();
        listing(async move {
            let Some((meta, state)) = this.run(&run).await? else {
                return Ok(Vec::new());
            };
            if state.files_synced_at.is_none() && !this.options.authoritative {
                return Err(Self::not_covered(&run));
            }
            let files = this
                .mirror
                .list_run_files(meta.run_pk)
                .await
                .map_err(|e| mirror_error(&run, e))?;
            Ok(files.into_iter().map(file_entry).collect())
        })
    }

    async fn run_file(&self, run: &RunRef, name: &str) -> SourceResult<Option<FileEntry>> {
        let mut files = self.run_files(run);
        while let Some(file) = files.next().await {
            let file = file?;
            if file.name == name {
                return Ok(Some(file));
            }
        }
        Ok(None)
    }

    async fn synthetic(
        &self,
        run: &RunRef,
        kind: SyntheticKind,
    ) -> SourceResult<Option<SyntheticObject>> {
        let Some((meta, state)) = self.run(run).await? else {
            return Ok(None);
        };
        if !self.synthetic_is_current(&meta, &state) {
            return Err(Self::not_covered(format!("{run}/{}", kind.file_name())));
        }
        self.synthetic_of(run, &meta, &state, kind).await.map(Some)
    }

    async fn project_table(
        &self,
        project: &ProjectRef,
        kind: ProjectTableKind,
    ) -> SourceResult<Option<SyntheticObject>> {
        let Some(pk) = self.listed_project(project).await? else {
            return Ok(None);
        };
        let format = match kind {
            ProjectTableKind::RunsParquet => Format::Parquet,
            ProjectTableKind::RunsJsonl => Format::Jsonl,
        };
        let table = self
            .tables
            .project_table(&self.mirror, &project.to_string(), pk, format)
            .await?;
        table.object(table.rendered_at).map(Some)
    }

    fn artifact_types(&self, project: &ProjectRef) -> BoxStream<'static, SourceResult<String>> {
        let this = self.clone();
        let project = project.clone();
        listing(async move {
            let Some(versions) = this.versions(&project).await? else {
                return Ok(Vec::new());
            };
            let mut types: Vec<String> = versions.into_iter().map(|v| v.type_name).collect();
            types.dedup();
            Ok(types)
        })
    }

    fn artifact_collections(
        &self,
        project: &ProjectRef,
        type_name: &str,
    ) -> BoxStream<'static, SourceResult<String>> {
        let this = self.clone();
        let project = project.clone();
        let type_name = type_name.to_owned();
        listing(async move {
            let Some(versions) = this.versions(&project).await? else {
                return Ok(Vec::new());
            };
            let mut names: Vec<String> = versions
                .into_iter()
                .filter(|v| v.type_name == type_name)
                .map(|v| v.collection)
                .collect();
            names.dedup();
            Ok(names)
        })
    }

    fn artifact_versions(
        &self,
        collection: &CollectionRef,
    ) -> BoxStream<'static, SourceResult<VersionEntry>> {
        let this = self.clone();
        let collection = collection.clone();
        listing(async move {
            let Some(versions) = this.versions(&collection.project).await? else {
                return Ok(Vec::new());
            };
            Ok(versions
                .into_iter()
                .filter(|v| {
                    v.type_name == collection.type_name
                        && v.collection == collection.collection
                        && is_committed(v)
                })
                .map(|v| VersionEntry {
                    version: format!("v{}", v.version_index),
                    aliases: v.aliases,
                })
                .collect())
        })
    }

    fn artifact_files(&self, version: &VersionRef) -> BoxStream<'static, SourceResult<FileEntry>> {
        let this = self.clone();
        let version = version.clone();
        listing(async move { Ok(this.version_files(&version).await?.unwrap_or_default()) })
    }

    async fn artifact_file(
        &self,
        version: &VersionRef,
        name: &str,
    ) -> SourceResult<Option<FileEntry>> {
        Ok(self
            .version_files(version)
            .await?
            .and_then(|files| files.into_iter().find(|f| f.name == name)))
    }

    async fn locate(&self, file: &FileRef, fresh: bool) -> SourceResult<FileLocation> {
        if let FileRef::Run(run, name) = file
            && !fresh
            && let Some((meta, _)) = self.run(run).await?
        {
            let files = self
                .mirror
                .list_run_files(meta.run_pk)
                .await
                .map_err(|e| mirror_error(file, e))?;
            if let Some(url) = files
                .into_iter()
                .find(|f| &f.name == name)
                .and_then(|f| f.url)
            {
                return Ok(FileLocation::Authenticated(url));
            }
        }
        if self.options.authoritative {
            return Err(StoreError::NotSupported {
                path: file.to_string(),
                reason: "the mirror holds no download URL for this file (artifact files and \
                         fresh URLs need the live API)"
                    .to_owned(),
            });
        }
        // Signed URLs expire; only the live API can mint them.
        Err(Self::not_covered(file))
    }

    async fn fresh_file(&self, file: &FileRef) -> SourceResult<Option<FileEntry>> {
        if self.options.authoritative {
            // Offline: what the mirror holds is all there is.
            return match file {
                FileRef::Run(run, name) => self.run_file(run, name).await,
                FileRef::Artifact(version, name) => self.artifact_file(version, name).await,
            };
        }
        // The mirror's listing is as of its last sync; W&B has the current one.
        Err(Self::not_covered(file))
    }
}
