//! [`LiveSource`]: the store's metadata and synthetic files straight from the W&B API.
//!
//! What is fetched when, and what is kept (all caches are per source, shared by clones of the
//! store, and bounded):
//!
//! | Data | Fetched by | Cached |
//! |---|---|---|
//! | entities | `Viewer` | TTL |
//! | projects, runs, artifact types/collections/versions | their listing operations, page by page as the caller consumes the stream | no |
//! | a run's record (config, summary, system metrics, times, `lastStep`) | one `Run` (full fragment + `updatedAt`) | TTL |
//! | a run's file listing (names, sizes, MD5s, signed URLs) | `RunFiles` pages, streamed | TTL, once the listing completed |
//! | one run file | `RunFiles(names: [name])`, unless the run's listing is cached | TTL |
//! | `history.jsonl` | `HistoryPage` windows of `history_page_steps` steps from 0 to `lastStep` (`samples` = window: never downsampled) | by content version, byte-bounded |
//! | `system.jsonl` | one `events(samples: max_system_rows)` | by content version, byte-bounded |
//! | `summary.json`, `config.json`, `metadata.json` | rendered from the cached run record | (run record) |
//! | artifact files (sizes, digests, signed URLs) | `ArtifactMembershipFiles` | TTL |
//!
//! The content version of a run is `(updatedAt, heartbeatAt, historyLineCount, lastStep)`:
//! within the TTL a rendered file is served with no API call at all; after it, one `Run`
//! call revalidates, and the file is re-rendered only if the version moved. The cost of
//! exact sizes is that the first `head`, `get` or listing of a run's synthetic files renders
//! them in full (all history pages); rendered files are held in memory up to
//! `max_synthetic_bytes` each.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};

use super::cache::Cache;
use super::error::StoreError;
use super::layout::{SyntheticKind, is_version_label};
use super::render::{self, RunDetail};
use super::source::{
    CollectionRef, FileEntry, FileRef, Invalidation, MetadataSource, ProjectEntry, ProjectRef,
    RunEntry, RunRef, SourceResult, SyntheticBody, SyntheticObject, VersionEntry, VersionRef,
};
use crate::client::{
    self, ArtifactCollectionsQuery, ArtifactFile, Client, FileLocation, RunFields, RunFile,
    RunFilesQuery, RunsQuery, parse_timestamp,
};

/// Tunables of the live source. `Default` is what `WandbStore::new` uses.
#[derive(Clone, Debug)]
pub struct LiveOptions {
    /// How long listings, run records and file URLs are trusted without asking W&B again.
    /// Default **15 s**: a directory listed by `ls` and then read by `cat` costs one round of
    /// calls, while a running run still shows new data within seconds. Zero disables caching.
    pub cache_ttl: Duration,
    /// Entries per TTL cache (runs, file listings, single files). Default **4,096**.
    pub cache_entries: u64,
    /// Memory for rendered `history.jsonl`/`system.jsonl` files, in bytes. Default
    /// **256 MiB**. A file larger than this is served but not kept.
    pub synthetic_cache_bytes: u64,
    /// Largest synthetic file rendered in memory. Default **1 GiB** (≈ 2 million history rows
    /// of 20 metrics); beyond it the read fails with a message pointing at the mirror.
    pub max_synthetic_bytes: u64,
    /// Steps per `HistoryPage` request. Default **1,000**, the SDK's `scan_history` page size.
    pub history_page_steps: u32,
    /// `samples` of the `events` request behind `system.jsonl`. W&B offers no step window for
    /// system metrics, so this must exceed the row count (W&B samples every ~15 s: 1,000,000
    /// rows ≈ 6 months). Default **1,000,000**.
    pub max_system_rows: u32,
}

impl Default for LiveOptions {
    fn default() -> Self {
        LiveOptions {
            cache_ttl: Duration::from_secs(15),
            cache_entries: 4_096,
            synthetic_cache_bytes: 256 << 20,
            max_synthetic_bytes: 1 << 30,
            history_page_steps: 1_000,
            max_system_rows: 1_000_000,
        }
    }
}

/// A file as the live API describes it, with its (signed, expiring) download URL.
#[derive(Clone, Debug)]
struct LiveFile {
    entry: FileEntry,
    location: Option<FileLocation>,
}

type FileIndex = Arc<BTreeMap<String, LiveFile>>;

/// A rendered history or system file.
#[derive(Debug)]
struct Rendered {
    bytes: Bytes,
    e_tag: String,
}

/// The run's content version: a rendered file stays valid while this does not change.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct ContentVersion {
    updated_at: Option<i64>,
    heartbeat_at: Option<i64>,
    history_line_count: Option<i64>,
    last_step: Option<i64>,
}

impl ContentVersion {
    fn of(detail: &RunDetail) -> Self {
        ContentVersion {
            updated_at: detail.updated_at.map(|t| t.timestamp_micros()),
            heartbeat_at: detail.heartbeat_at.map(|t| t.timestamp_micros()),
            history_line_count: detail.history_line_count,
            last_step: detail.last_step,
        }
    }
}

#[derive(Debug)]
struct Caches {
    entities: Cache<(), Arc<Vec<String>>>,
    runs: Cache<RunRef, Arc<RunDetail>>,
    run_listings: Cache<RunRef, FileIndex>,
    run_files: Cache<(RunRef, String), Arc<LiveFile>>,
    rendered: Cache<(RunRef, SyntheticKind, ContentVersion), Arc<Rendered>>,
    collections: Cache<CollectionRef, ()>,
    version_listings: Cache<VersionRef, FileIndex>,
    artifact_files: Cache<(VersionRef, String), Arc<LiveFile>>,
}

/// Metadata and synthetic files from the live W&B API. See the module docs for costs. Clones
/// share the client and the caches.
#[derive(Clone, Debug)]
pub struct LiveSource {
    client: Client,
    options: LiveOptions,
    caches: Arc<Caches>,
}

/// A stream of owned items that ends quietly when the object behind it does not exist
/// (object_store: listing a missing prefix is empty, not an error).
fn missing_is_empty<T: Send + 'static>(
    s: BoxStream<'static, client::Result<T>>,
    what: String,
) -> BoxStream<'static, SourceResult<T>> {
    s.take_while(|item| futures::future::ready(!matches!(item, Err(e) if e.is_not_found())))
        .map_err(move |e| StoreError::from_client(what.clone(), e))
        .boxed()
}

/// Passes a listing through and, once it has completed without error, hands every item to
/// `done` (which caches the complete listing). An abandoned or failed listing caches nothing.
fn cache_when_complete<T, F, Fut>(
    s: BoxStream<'static, SourceResult<T>>,
    done: F,
) -> BoxStream<'static, SourceResult<T>>
where
    T: Clone + Send + 'static,
    F: FnOnce(Vec<T>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let seen = Arc::new(Mutex::new(Vec::new()));
    let failed = Arc::new(AtomicBool::new(false));
    let (seen2, failed2) = (Arc::clone(&seen), Arc::clone(&failed));
    let items = s.inspect(move |item| match item {
        Ok(v) => {
            if let Ok(mut seen) = seen2.lock() {
                seen.push(v.clone());
            }
        }
        Err(_) => failed2.store(true, Ordering::Relaxed),
    });
    let finish = stream::once(async move {
        if !failed.load(Ordering::Relaxed) {
            let all = match seen.lock() {
                Ok(mut seen) => std::mem::take(&mut *seen),
                Err(_) => return,
            };
            done(all).await;
        }
    })
    .filter_map(|()| futures::future::ready(None));
    items.chain(finish).boxed()
}

fn live_run_file(file: RunFile) -> LiveFile {
    let location = file
        .direct_url
        .map(FileLocation::Direct)
        .or(file.url.map(FileLocation::Authenticated));
    LiveFile {
        entry: FileEntry {
            name: file.name,
            size: file.size_bytes.unwrap_or(0),
            e_tag: file.md5,
            last_modified: file.updated_at.as_deref().and_then(parse_timestamp),
            content_type: file.mimetype,
            reference: None,
        },
        location,
    }
}

fn live_artifact_file(file: ArtifactFile) -> LiveFile {
    let location = file
        .direct_url
        .map(FileLocation::Direct)
        .or(file.url.map(FileLocation::Authenticated));
    LiveFile {
        entry: FileEntry {
            name: file.name,
            size: file.size_bytes.unwrap_or(0),
            e_tag: file.digest.or(file.md5),
            last_modified: file.updated_at.as_deref().and_then(parse_timestamp),
            content_type: file.mimetype,
            reference: None,
        },
        location,
    }
}

fn detail_of(run: &RunRef, r: client::Run) -> RunDetail {
    let last_step = r.last_step();
    let (user, user_full_name) = match r.user {
        Some(u) => (u.username, u.name),
        None => (None, None),
    };
    RunDetail {
        entity: run.entity.clone(),
        project: run.project.clone(),
        id: r.name,
        storage_id: Some(r.id),
        display_name: r.display_name,
        state: r.state,
        user,
        user_full_name,
        group: r.group,
        job_type: r.job_type,
        sweep: r.sweep_name,
        tags: r.tags,
        notes: r.notes,
        description: r.description,
        commit: r.commit,
        created_at: r.created_at.as_deref().and_then(parse_timestamp),
        heartbeat_at: r.heartbeat_at.as_deref().and_then(parse_timestamp),
        updated_at: r.updated_at.as_deref().and_then(parse_timestamp),
        history_line_count: r.history_line_count,
        last_step,
        config: r.config,
        summary: r.summary_metrics,
        system_metrics: r.system_metrics,
    }
}

impl LiveSource {
    /// A live source over `client`.
    pub fn new(client: Client, options: LiveOptions) -> Self {
        let ttl = options.cache_ttl;
        let n = options.cache_entries;
        let caches = Caches {
            entities: Cache::with_ttl(ttl, 1),
            runs: Cache::with_ttl(ttl, n),
            run_listings: Cache::with_ttl(ttl, n),
            run_files: Cache::with_ttl(ttl, n),
            rendered: Cache::weighted(options.synthetic_cache_bytes, |r: &Arc<Rendered>| {
                u32::try_from(r.bytes.len()).unwrap_or(u32::MAX)
            }),
            collections: Cache::with_ttl(ttl, n),
            version_listings: Cache::with_ttl(ttl, n),
            artifact_files: Cache::with_ttl(ttl, n),
        };
        LiveSource {
            client,
            options,
            caches: Arc::new(caches),
        }
    }

    /// The options in force.
    pub fn options(&self) -> &LiveOptions {
        &self.options
    }

    /// The run record (full fragment + `updatedAt`), cached for the TTL.
    async fn run_detail(&self, run: &RunRef) -> SourceResult<Option<Arc<RunDetail>>> {
        let client = self.client.clone();
        let key = run.clone();
        self.caches
            .runs
            .get_or_load(run.clone(), async move {
                let found = client
                    .run(&key.entity, &key.project, &key.run, RunFields::Full, true)
                    .await
                    .map_err(|e| StoreError::from_client(key.to_string(), e))?;
                Ok(found.map(|r| Arc::new(detail_of(&key, r))))
            })
            .await
    }

    async fn render_history(&self, run: &RunRef, detail: &RunDetail) -> SourceResult<Rendered> {
        let what = format!("{run}/{}", SyntheticKind::History.file_name());
        let mut out = Vec::new();
        let Some(last_step) = detail.last_step.filter(|s| *s >= 0) else {
            return Ok(Rendered::new(out));
        };
        let stop = last_step.saturating_add(1);
        let window = i64::from(self.options.history_page_steps.max(1));
        let mut lo = 0;
        while lo < stop {
            let hi = lo.saturating_add(window).min(stop);
            let rows = self
                .client
                .history_page(&run.entity, &run.project, &run.run, lo, hi)
                .await
                .map_err(|e| StoreError::from_client(what.clone(), e))?;
            for row in &rows {
                render::push_jsonl_line(row, &mut out).map_err(|e| StoreError::Invalid {
                    path: what.clone(),
                    message: format!("W&B returned a history row that is not JSON: {e}"),
                })?;
            }
            if out.len() as u64 > self.options.max_synthetic_bytes {
                return Err(StoreError::TooLarge {
                    path: what,
                    limit: self.options.max_synthetic_bytes,
                });
            }
            lo = hi;
        }
        Ok(Rendered::new(out))
    }

    async fn render_system(&self, run: &RunRef) -> SourceResult<Rendered> {
        let what = format!("{run}/{}", SyntheticKind::System.file_name());
        let bound = self.options.max_system_rows;
        let rows = self
            .client
            .events(&run.entity, &run.project, &run.run, bound)
            .await
            .map_err(|e| StoreError::from_client(what.clone(), e))?;
        if rows.len() as u64 >= u64::from(bound) {
            tracing::warn!(
                run = %run,
                rows = rows.len(),
                "system.jsonl reached max_system_rows; W&B may have sampled it"
            );
        }
        let bytes =
            render::jsonl(rows.iter().map(String::as_str)).map_err(|e| StoreError::Invalid {
                path: what.clone(),
                message: format!("W&B returned a system-metrics row that is not JSON: {e}"),
            })?;
        if bytes.len() as u64 > self.options.max_synthetic_bytes {
            return Err(StoreError::TooLarge {
                path: what,
                limit: self.options.max_synthetic_bytes,
            });
        }
        Ok(Rendered::new(bytes))
    }

    /// A run file with its URL: from the run's cached listing, else the single-file cache,
    /// else one `RunFiles(names: [name])` call.
    async fn live_run_file(&self, run: &RunRef, name: &str) -> SourceResult<Option<Arc<LiveFile>>> {
        if let Some(index) = self.caches.run_listings.get(run).await {
            return Ok(index.get(name).cloned().map(Arc::new));
        }
        let client = self.client.clone();
        let (r, n) = (run.clone(), name.to_owned());
        self.caches
            .run_files
            .get_or_load((run.clone(), name.to_owned()), async move {
                let file = client
                    .run_file(&r.entity, &r.project, &r.run, &n)
                    .await
                    .map_err(|e| StoreError::from_client(format!("{r}/{n}"), e));
                match file {
                    Ok(f) => Ok(f.map(|f| Arc::new(live_run_file(f)))),
                    Err(e) if e.is_not_found() => Ok(None),
                    Err(e) => Err(e),
                }
            })
            .await
    }

    /// Whether `collection` exists with that type (cached when it does).
    async fn collection_exists(&self, collection: &CollectionRef) -> SourceResult<bool> {
        let client = self.client.clone();
        let c = collection.clone();
        let found = self
            .caches
            .collections
            .get_or_load(collection.clone(), async move {
                let found = client
                    .artifact_collection(
                        &c.project.entity,
                        &c.project.project,
                        &c.type_name,
                        &c.collection,
                    )
                    .await;
                match found {
                    Ok(found) => Ok(found.map(|_| ())),
                    Err(e) if e.is_not_found() => Ok(None),
                    Err(e) => Err(StoreError::from_client(c.to_string(), e)),
                }
            })
            .await?;
        Ok(found.is_some())
    }

    fn version_files_stream(
        &self,
        version: &VersionRef,
        names: &[String],
    ) -> BoxStream<'static, SourceResult<LiveFile>> {
        let c = &version.collection;
        missing_is_empty(
            self.client.artifact_files(
                &c.project.entity,
                &c.project.project,
                &c.collection,
                &version.version,
                names,
            ),
            version.to_string(),
        )
        .map_ok(live_artifact_file)
        .boxed()
    }

    async fn live_artifact_file(
        &self,
        version: &VersionRef,
        name: &str,
    ) -> SourceResult<Option<Arc<LiveFile>>> {
        if !self.collection_exists(&version.collection).await? {
            return Ok(None);
        }
        if let Some(index) = self.caches.version_listings.get(version).await {
            return Ok(index.get(name).cloned().map(Arc::new));
        }
        let files = self.version_files_stream(version, &[name.to_owned()]);
        let n = name.to_owned();
        self.caches
            .artifact_files
            .get_or_load((version.clone(), name.to_owned()), async move {
                let all: Vec<LiveFile> = files.try_collect().await?;
                Ok(all.into_iter().find(|f| f.entry.name == n).map(Arc::new))
            })
            .await
    }

    async fn forget_file(&self, file: &FileRef) {
        match file {
            FileRef::Run(run, name) => {
                self.caches.run_listings.invalidate(run).await;
                self.caches
                    .run_files
                    .invalidate(&(run.clone(), name.clone()))
                    .await;
            }
            FileRef::Artifact(version, name) => {
                self.caches.version_listings.invalidate(version).await;
                self.caches
                    .artifact_files
                    .invalidate(&(version.clone(), name.clone()))
                    .await;
            }
        }
    }
}

impl Rendered {
    fn new(bytes: Vec<u8>) -> Self {
        Rendered {
            e_tag: render::e_tag(&bytes),
            bytes: Bytes::from(bytes),
        }
    }
}

fn rendered_object(bytes: Vec<u8>, detail: &RunDetail) -> SyntheticObject {
    let e_tag = render::e_tag(&bytes);
    SyntheticObject {
        size: bytes.len() as u64,
        e_tag,
        last_modified: detail.last_modified(),
        body: SyntheticBody::Rendered(Bytes::from(bytes)),
    }
}

#[async_trait]
impl MetadataSource for LiveSource {
    fn name(&self) -> String {
        "live".to_owned()
    }

    async fn entities(&self) -> SourceResult<Vec<String>> {
        let client = self.client.clone();
        let entities = self
            .caches
            .entities
            .get_or_load((), async move {
                let viewer = client
                    .viewer()
                    .await
                    .map_err(|e| StoreError::from_client("(root)", e))?;
                let mut all: Vec<String> = viewer.entity.into_iter().chain(viewer.teams).collect();
                all.sort();
                all.dedup();
                Ok(Some(Arc::new(all)))
            })
            .await?;
        Ok(entities.map(|e| e.as_ref().clone()).unwrap_or_default())
    }

    fn projects(&self, entity: &str) -> BoxStream<'static, SourceResult<ProjectEntry>> {
        missing_is_empty(self.client.projects(entity), entity.to_owned())
            .map_ok(|p| ProjectEntry { name: p.name })
            .boxed()
    }

    fn runs(&self, project: &ProjectRef) -> BoxStream<'static, SourceResult<RunEntry>> {
        let query = RunsQuery::new(&project.entity, &project.project);
        missing_is_empty(self.client.runs(&query), project.to_string())
            .map_ok(|r| {
                let time = |t: &Option<String>| t.as_deref().and_then(parse_timestamp);
                RunEntry {
                    last_modified: time(&r.updated_at)
                        .or_else(|| time(&r.heartbeat_at))
                        .or_else(|| time(&r.created_at)),
                    state: r.state,
                    id: r.name,
                }
            })
            .boxed()
    }

    fn run_files(&self, run: &RunRef) -> BoxStream<'static, SourceResult<FileEntry>> {
        let caches = Arc::clone(&self.caches);
        let client = self.client.clone();
        let run = run.clone();
        stream::once(async move {
            if let Some(index) = caches.run_listings.get(&run).await {
                let files: Vec<SourceResult<FileEntry>> =
                    index.values().map(|f| Ok(f.entry.clone())).collect();
                return stream::iter(files).boxed();
            }
            let query = RunFilesQuery::new(&run.entity, &run.project, &run.run);
            let files = missing_is_empty(client.run_files(&query), run.to_string())
                .map_ok(live_run_file)
                .boxed();
            let key = run.clone();
            cache_when_complete(files, move |all| async move {
                let index: BTreeMap<String, LiveFile> =
                    all.into_iter().map(|f| (f.entry.name.clone(), f)).collect();
                caches.run_listings.insert(key, Arc::new(index)).await;
            })
            .map_ok(|f| f.entry)
            .boxed()
        })
        .flatten()
        .boxed()
    }

    async fn run_file(&self, run: &RunRef, name: &str) -> SourceResult<Option<FileEntry>> {
        Ok(self
            .live_run_file(run, name)
            .await?
            .map(|f| f.entry.clone()))
    }

    async fn synthetic(
        &self,
        run: &RunRef,
        kind: SyntheticKind,
    ) -> SourceResult<Option<SyntheticObject>> {
        if kind.is_table() {
            // Rendering a table needs every row at once; the mirror renders it from its copy.
            return Err(tables_need_the_mirror(run, kind));
        }
        let Some(detail) = self.run_detail(run).await? else {
            return Ok(None);
        };
        let what = || format!("{run}/{}", kind.file_name());
        let invalid = |e: crate::values::InvalidJson| StoreError::Invalid {
            path: what(),
            message: format!("W&B returned JSON that cannot be parsed: {e}"),
        };
        let object = match kind {
            SyntheticKind::Summary => rendered_object(render::summary_json(&detail), &detail),
            SyntheticKind::Config => {
                rendered_object(render::config_json(&detail).map_err(invalid)?, &detail)
            }
            SyntheticKind::Metadata => {
                rendered_object(render::metadata_json(&detail).map_err(invalid)?, &detail)
            }
            SyntheticKind::HistoryParquet | SyntheticKind::SystemParquet => {
                return Err(tables_need_the_mirror(run, kind));
            }
            SyntheticKind::History | SyntheticKind::System => {
                let key = (run.clone(), kind, ContentVersion::of(&detail));
                let load = async {
                    let rendered = match kind {
                        SyntheticKind::History => self.render_history(run, &detail).await?,
                        _ => self.render_system(run).await?,
                    };
                    Ok(Some(Arc::new(rendered)))
                };
                let rendered = self
                    .caches
                    .rendered
                    .get_or_load(key, load)
                    .await?
                    .ok_or_else(|| StoreError::not_found(what(), "rendered file"))?;
                SyntheticObject {
                    size: rendered.bytes.len() as u64,
                    e_tag: rendered.e_tag.clone(),
                    last_modified: detail.last_modified(),
                    body: SyntheticBody::Rendered(rendered.bytes.clone()),
                }
            }
        };
        Ok(Some(object))
    }

    fn artifact_types(&self, project: &ProjectRef) -> BoxStream<'static, SourceResult<String>> {
        missing_is_empty(
            self.client
                .artifact_types(&project.entity, &project.project),
            project.to_string(),
        )
        .map_ok(|t| t.name)
        .boxed()
    }

    fn artifact_collections(
        &self,
        project: &ProjectRef,
        type_name: &str,
    ) -> BoxStream<'static, SourceResult<String>> {
        missing_is_empty(
            self.client.artifact_collections(
                &project.entity,
                &project.project,
                type_name,
                &ArtifactCollectionsQuery::default(),
            ),
            format!("{project}/{type_name}"),
        )
        .map_ok(|c| c.name)
        .boxed()
    }

    fn artifact_versions(
        &self,
        collection: &CollectionRef,
    ) -> BoxStream<'static, SourceResult<VersionEntry>> {
        let c = collection;
        missing_is_empty(
            self.client.artifact_versions(
                &c.project.entity,
                &c.project.project,
                &c.type_name,
                &c.collection,
                Some(r#"{"state": "COMMITTED"}"#),
            ),
            c.to_string(),
        )
        .try_filter_map(|v| {
            let label = v
                .version
                .filter(|l| is_version_label(l))
                .or(v.artifact.version_index.map(|i| format!("v{i}")));
            let entry = label.map(|version| VersionEntry {
                version,
                aliases: v
                    .artifact
                    .aliases
                    .into_iter()
                    .map(|a| a.alias)
                    .filter(|a| !is_version_label(a))
                    .collect(),
            });
            futures::future::ready(Ok(entry))
        })
        .boxed()
    }

    fn artifact_files(&self, version: &VersionRef) -> BoxStream<'static, SourceResult<FileEntry>> {
        let caches = Arc::clone(&self.caches);
        let version = version.clone();
        let this = self.clone();
        stream::once(async move {
            match this.collection_exists(&version.collection).await {
                Ok(true) => {}
                Ok(false) => return stream::empty().boxed(),
                Err(e) => return stream::iter([Err(e)]).boxed(),
            }
            if let Some(index) = caches.version_listings.get(&version).await {
                let files: Vec<SourceResult<FileEntry>> =
                    index.values().map(|f| Ok(f.entry.clone())).collect();
                return stream::iter(files).boxed();
            }
            let files = this.version_files_stream(&version, &[]);
            let key = version.clone();
            cache_when_complete(files, move |all| async move {
                let index: BTreeMap<String, LiveFile> =
                    all.into_iter().map(|f| (f.entry.name.clone(), f)).collect();
                caches.version_listings.insert(key, Arc::new(index)).await;
            })
            .map_ok(|f| f.entry)
            .boxed()
        })
        .flatten()
        .boxed()
    }

    async fn artifact_file(
        &self,
        version: &VersionRef,
        name: &str,
    ) -> SourceResult<Option<FileEntry>> {
        Ok(self
            .live_artifact_file(version, name)
            .await?
            .map(|f| f.entry.clone()))
    }

    async fn locate(&self, file: &FileRef, fresh: bool) -> SourceResult<FileLocation> {
        if fresh {
            self.forget_file(file).await;
        }
        let found = match file {
            FileRef::Run(run, name) => self.live_run_file(run, name).await?,
            FileRef::Artifact(version, name) => self.live_artifact_file(version, name).await?,
        };
        let found = found.ok_or_else(|| StoreError::not_found(file.to_string(), "file"))?;
        found
            .location
            .clone()
            .ok_or_else(|| StoreError::NotSupported {
                path: file.to_string(),
                reason: "W&B gives no download URL for this file (a reference artifact entry \
                     stored outside W&B?)"
                    .to_owned(),
            })
    }

    async fn invalidate(&self, what: &Invalidation) {
        match what {
            Invalidation::Run(run) => {
                self.caches.runs.invalidate(run).await;
                self.caches.run_listings.invalidate(run).await;
                let r = run.clone();
                self.caches.run_files.invalidate_if(move |(k, _)| *k == r);
                let r = run.clone();
                self.caches.rendered.invalidate_if(move |(k, _, _)| *k == r);
            }
        }
    }
}

/// The live API renders no tables.
fn tables_need_the_mirror(run: &RunRef, kind: SyntheticKind) -> StoreError {
    StoreError::NotSupported {
        path: format!("{run}/{}", kind.file_name()),
        reason: "tables are rendered from the mirror: sync the run (`wandbfs sync \
                 entity/project/run_id`) and read it through a mirror-backed store or the mount"
            .to_owned(),
    }
}
