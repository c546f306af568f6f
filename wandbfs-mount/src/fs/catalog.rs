//! The tree of `docs/LAYOUT.md` as directory listings with exact attributes, served from the
//! mirror with the live API behind it.
//!
//! Every entry is named by its `object_store` path, so the mount and `WandbStore` expose the
//! same tree by construction: listings come from [`WandbStore::list_with_delimiter`] (which
//! owns the `@` escapes and leaves out unrepresentable names), with what a filesystem needs on
//! top:
//!
//! - the root lists the entities in the mirror plus, online, the viewer's entity and teams;
//!   entity directories list mirrored and (online) live projects; other entities and projects
//!   resolve by name;
//! - run directories carry the run's time (from the run listing);
//! - artifact aliases are symbolic links to their version (`latest -> v3`), so a recursive copy
//!   copies each version once;
//! - **the mirror is the cache of run contents**: before a run directory is listed (and so
//!   before any of its files is looked up), a run the mirror does not cover is synced into it
//!   (a one-run sync, as `wandbfs sync e/p/run` does), so `history.jsonl` is served from the
//!   mirror's byte-indexed chunks, never rendered in memory;
//! - a name that is both a file and a directory upstream (`a` and `a/b`) is a directory here.
//!
//! Listings are cached for `metadata_ttl` and dropped explicitly when the mount learns of a
//! change (its own syncs and writes).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use futures::TryStreamExt;
use object_store::ObjectStore;
use object_store::path::Path;
use wandbfs::mirror::Mirror;
use wandbfs::store::layout::{self, Location, ProjectTableKind, SyntheticKind};
use wandbfs::store::source::{CollectionRef, ProjectRef, RunRef, VersionRef};
use wandbfs::store::{MetadataSource, MirrorSource, StoreError, WandbStore};
use wandbfs::sync::{SyncEngine, SyncTarget};

use super::attr::{Attr, system_time};
use super::error::{FsError, FsResult};
use super::write::LocalDirs;

/// One entry of a directory.
#[derive(Clone, Debug)]
pub struct Entry {
    /// The entry's path in the tree (`entity/project/run/file`).
    pub path: Path,
    /// Its attributes.
    pub attr: Attr,
}

/// One directory's entries, by name (sorted: readdir offsets are positions in this order).
#[derive(Debug, Default)]
pub struct Listing {
    /// Name → entry.
    pub entries: BTreeMap<String, Entry>,
    /// Read from the mirror (a sync changes it); otherwise from the API (only the TTL does).
    pub mirrored: bool,
    /// A digest of the names and kinds: what the kernel's cache of the directory holds. Two
    /// listings with the same generation read the same through `readdir`.
    pub generation: u64,
}

impl Listing {
    fn seal(&mut self) {
        use std::hash::{Hash as _, Hasher as _};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        for (name, entry) in &self.entries {
            name.hash(&mut hasher);
            match &entry.attr.kind {
                super::attr::Kind::Dir => 0u8.hash(&mut hasher),
                super::attr::Kind::File => 1u8.hash(&mut hasher),
                super::attr::Kind::Symlink(target) => {
                    2u8.hash(&mut hasher);
                    target.hash(&mut hasher);
                }
            }
        }
        self.generation = hasher.finish();
    }
}

/// How the catalog behaves.
#[derive(Clone, Debug)]
pub struct CatalogConfig {
    /// How long listings and attributes are trusted before they are asked again.
    pub metadata_ttl: Duration,
    /// Serve the mirror alone (no API calls).
    pub offline: bool,
    /// Run files and run directories may be written.
    pub allow_write: bool,
    /// The time given to directories that have none of their own (entities, projects, …).
    pub mount_time: SystemTime,
}

/// Where the tree's data comes from.
#[derive(Clone)]
pub struct Backend {
    /// The tree as an object store (listings, metadata), over `source`.
    pub store: WandbStore,
    /// The store's metadata source: the mirror with the live API behind it, or (offline) the
    /// mirror alone.
    pub source: Arc<dyn MetadataSource>,
    /// The mirror as a source that says what it does not cover (online); coverage checks.
    pub mirror_source: MirrorSource,
    /// The live API alone (online).
    pub live: Option<Arc<dyn MetadataSource>>,
    /// The mirror database.
    pub mirror: Mirror,
    /// One-run syncs for runs the mirror does not cover (online).
    pub engine: Option<SyncEngine>,
    /// Where CPU-heavy work runs (one-run syncs: JSON decoding, COPY encoding), away from the
    /// threads that answer the kernel; `None`: the caller's runtime.
    pub background: Option<tokio::runtime::Handle>,
}

/// How long a failed one-run sync is remembered before the next access tries again.
const FAILED_SYNC_MEMORY: Duration = Duration::from_secs(30);

/// The tree (see the module docs).
pub struct Catalog {
    backend: Backend,
    config: CatalogConfig,
    listings: moka::future::Cache<String, Arc<Listing>>,
    /// Run names W&B said do not exist, for the TTL.
    missing: moka::future::Cache<String, ()>,
    run_syncs: Mutex<HashMap<RunRef, RunSync>>,
    local_dirs: LocalDirs,
}

/// A one-run sync in flight or recently failed.
#[derive(Clone)]
struct RunSync {
    outcome: Arc<tokio::sync::OnceCell<Result<(), String>>>,
    started: Instant,
}

impl Catalog {
    /// A catalog over `backend`.
    pub fn new(backend: Backend, config: CatalogConfig) -> Self {
        let listings = moka::future::Cache::builder()
            // Directories, not entries: 100,000 listings of a few hundred entries fit in a few
            // hundred MB at most, and idle ones expire with the TTL.
            .max_capacity(100_000)
            .time_to_live(config.metadata_ttl.max(Duration::from_millis(1)))
            // `invalidate_run` drops every listing below a run.
            .support_invalidation_closures()
            .build();
        let missing = moka::future::Cache::builder()
            .max_capacity(10_000)
            .time_to_live(config.metadata_ttl.max(Duration::from_millis(1)))
            .build();
        Catalog {
            backend,
            config,
            listings,
            missing,
            run_syncs: Mutex::new(HashMap::new()),
            local_dirs: LocalDirs::default(),
        }
    }

    /// The backend.
    pub fn backend(&self) -> &Backend {
        &self.backend
    }

    /// The configuration.
    pub fn config(&self) -> &CatalogConfig {
        &self.config
    }

    /// Directories created through the mount that hold no file yet.
    pub fn local_dirs(&self) -> &LocalDirs {
        &self.local_dirs
    }

    /// The attributes of the directory at `path` itself (for the mount's root).
    pub async fn root_attr(&self, path: &Path) -> FsResult<Attr> {
        match Location::parse(path) {
            Location::Root | Location::Entity(_) | Location::Project(_) => {
                Ok(self.dir_attr(self.config.mount_time, false))
            }
            Location::Run(run) => {
                self.ensure_run(&run).await?;
                let object = self
                    .backend
                    .source
                    .synthetic(&run, SyntheticKind::Metadata)
                    .await
                    .map_err(|e| FsError::from_store(&e))?
                    .ok_or_else(|| FsError::not_found(&run))?;
                Ok(self.dir_attr(system_time(object.last_modified), true))
            }
            _ => Err(FsError::not_dir(path)),
        }
    }

    /// The directory at `path`, listed (cached for the metadata TTL).
    pub async fn list(&self, path: &Path) -> FsResult<Arc<Listing>> {
        let key = path.as_ref().to_owned();
        if self.config.metadata_ttl.is_zero() {
            return self.load_listing(path).await.map(Arc::new);
        }
        self.listings
            .try_get_with(key, async { self.load_listing(path).await.map(Arc::new) })
            .await
            .map_err(|e: Arc<FsError>| (*e).clone())
    }

    /// The entry `name` in directory `parent`.
    pub async fn lookup(&self, parent: &Path, name: &str) -> FsResult<Entry> {
        let child = child_path(parent, name)?;
        // Entities and projects resolve by name even when no listing shows them, and without
        // listing the whole level (the root's listing asks the API).
        match Location::parse(&child) {
            Location::Entity(entity) => return self.lookup_entity(child, &entity).await,
            Location::Project(project) => return self.lookup_project(child, &project).await,
            _ => {}
        }
        let listing = self.list(parent).await?;
        if let Some(entry) = listing.entries.get(name) {
            return Ok(entry.clone());
        }
        if let Location::Run(run) = Location::parse(&child) {
            // A run created since the project was last listed (or synced): resolved by name.
            return self.lookup_new_run(child, &run).await;
        }
        Err(FsError::not_found(&child))
    }

    /// A run its project's listing does not show yet: asked of W&B by name (at most once per
    /// name and TTL: a shell probing for `.git` costs one request, not one per keystroke),
    /// and synced into the mirror when it exists.
    async fn lookup_new_run(&self, path: Path, run: &RunRef) -> FsResult<Entry> {
        let Some(live) = &self.backend.live else {
            return Err(FsError::not_found(&path));
        };
        let key = path.as_ref().to_owned();
        if self.missing.contains_key(&key) {
            return Err(FsError::not_found(&path));
        }
        let found = live
            .synthetic(run, SyntheticKind::Metadata)
            .await
            .map_err(|e| FsError::from_store(&e))?;
        let Some(found) = found else {
            self.missing.insert(key, ()).await;
            return Err(FsError::not_found(&path));
        };
        self.ensure_run(run).await?;
        if let Ok(project) = layout::project_path(&run.project_ref()) {
            self.invalidate(&project).await;
        }
        Ok(Entry {
            path,
            attr: self.dir_attr(system_time(found.last_modified), true),
        })
    }

    /// Forgets the cached listing of `path` (it changed).
    pub async fn invalidate(&self, path: &Path) {
        self.listings.invalidate(path.as_ref()).await;
    }

    /// Forgets the cached listing of `path` if it came from the mirror (after a sync: a
    /// listing read from the API is as fresh as before, and reading it again costs requests).
    pub async fn invalidate_mirrored(&self, path: &Path) {
        if self
            .listings
            .get(path.as_ref())
            .await
            .is_some_and(|l| l.mirrored)
        {
            self.invalidate(path).await;
        }
    }

    /// Forgets every cached listing of the run's directory and the folders below it.
    pub async fn invalidate_run(&self, run: &RunRef) {
        if let Ok(prefix) = layout::run_path(run) {
            let prefix = prefix.as_ref().to_owned();
            let below = format!("{prefix}/");
            if let Err(e) = self
                .listings
                .invalidate_entries_if(move |k, _| *k == prefix || k.starts_with(&below))
            {
                tracing::warn!("dropping the cached listings of {run}: {e}");
            }
        }
    }

    fn dir_attr(&self, mtime: SystemTime, writable_level: bool) -> Attr {
        Attr {
            writable: writable_level && self.config.allow_write,
            ..Attr::dir(mtime)
        }
    }

    fn store_error(path: &Path, e: object_store::Error) -> FsError {
        match e {
            object_store::Error::NotFound { .. } => FsError::not_found(path),
            object_store::Error::PermissionDenied { .. }
            | object_store::Error::Unauthenticated { .. } => FsError::access(e.to_string()),
            other => FsError::io(format!("{path}: {other}")),
        }
    }

    async fn lookup_entity(&self, path: Path, entity: &str) -> FsResult<Entry> {
        let mirrored = self
            .backend
            .mirror
            .list_entities()
            .await
            .map_err(|e| FsError::io(format!("{path}: mirror: {e}")))?
            .iter()
            .any(|e| e == entity);
        let exists = mirrored
            || (!self.config.offline && {
                let listing = self.list(&Path::ROOT).await?;
                listing.entries.contains_key(entity) || self.live_projects_exist(entity).await?
            });
        if exists {
            Ok(Entry {
                path,
                attr: self.dir_attr(self.config.mount_time, false),
            })
        } else {
            Err(FsError::not_found(&path))
        }
    }

    async fn live_projects_exist(&self, entity: &str) -> FsResult<bool> {
        let Some(live) = &self.backend.live else {
            return Ok(false);
        };
        let mut projects = live.projects(entity);
        match projects.try_next().await {
            Ok(first) => Ok(first.is_some()),
            Err(e) => Err(FsError::from_store(&e)),
        }
    }

    async fn lookup_project(&self, path: Path, project: &ProjectRef) -> FsResult<Entry> {
        let mirrored = self
            .backend
            .mirror
            .resolve_project(&project.entity, &project.project)
            .await
            .map_err(|e| FsError::io(format!("{path}: mirror: {e}")))?
            .is_some();
        let exists = mirrored
            || (!self.config.offline && {
                let parent = layout::entity_path(&project.entity)
                    .map_err(|e| FsError::not_found(e.to_string()))?;
                self.list(&parent)
                    .await?
                    .entries
                    .contains_key(&project.project)
            });
        if exists {
            Ok(Entry {
                path,
                attr: self.dir_attr(self.config.mount_time, false),
            })
        } else {
            Err(FsError::not_found(&path))
        }
    }

    async fn load_listing(&self, path: &Path) -> FsResult<Listing> {
        let started = Instant::now();
        let result = self.load_listing_inner(path).await;
        tracing::debug!(
            %path,
            entries = result.as_ref().map_or(0, |l| l.entries.len()),
            secs = started.elapsed().as_secs_f64(),
            "listed"
        );
        result
    }

    async fn load_listing_inner(&self, path: &Path) -> FsResult<Listing> {
        let mut listing = Listing::default();
        match Location::parse(path) {
            Location::Root => self.list_root(&mut listing).await?,
            Location::Entity(entity) => self.list_entity(&entity, &mut listing).await?,
            Location::Project(project) => self.list_project(&project, &mut listing).await?,
            Location::Run(run) | Location::RunFile(run, _) => {
                self.list_run_level(&run, path, &mut listing).await?
            }
            Location::Collection(collection) => {
                self.list_collection(&collection, &mut listing).await?
            }
            Location::Artifacts(_)
            | Location::ArtifactType(..)
            | Location::Version(_)
            | Location::ArtifactFile(..) => {
                self.list_store_level(path, &mut listing, false).await?
            }
            Location::Synthetic(..) | Location::ProjectTable(..) => {
                return Err(FsError::not_dir(path));
            }
            Location::Nothing => return Err(FsError::not_found(path)),
        }
        for (name, dir) in self.local_dirs.in_dir(path) {
            listing.entries.entry(name).or_insert_with(|| Entry {
                path: dir,
                attr: Attr {
                    writable: true,
                    ..Attr::dir(SystemTime::now())
                },
            });
        }
        listing.seal();
        Ok(listing)
    }

    fn add_dir(&self, listing: &mut Listing, path: Path, mtime: SystemTime, writable: bool) {
        if let Some(name) = path.filename().map(str::to_owned) {
            let attr = self.dir_attr(mtime, writable);
            listing.entries.insert(name, Entry { path, attr });
        }
    }

    async fn list_root(&self, listing: &mut Listing) -> FsResult<()> {
        let mut entities = self
            .backend
            .mirror
            .list_entities()
            .await
            .map_err(|e| FsError::io(format!("listing the mirror's entities: {e}")))?;
        if let Some(live) = &self.backend.live {
            match live.entities().await {
                Ok(more) => entities.extend(more),
                // The mirror's entities are still worth showing; the log says why the rest
                // is missing.
                Err(e) => tracing::warn!("listing the viewer's entities: {e}"),
            }
        }
        for entity in entities {
            match layout::entity_path(&entity) {
                Ok(path) => self.add_dir(listing, path, self.config.mount_time, false),
                Err(e) => tracing::warn!("{e}; it is left out of the listing"),
            }
        }
        Ok(())
    }

    async fn list_entity(&self, entity: &str, listing: &mut Listing) -> FsResult<()> {
        let mut projects = self
            .backend
            .mirror
            .list_projects(entity)
            .await
            .map_err(|e| FsError::io(format!("{entity}: mirror: {e}")))?;
        if let Some(live) = &self.backend.live {
            let names: Result<Vec<_>, StoreError> = live.projects(entity).try_collect().await;
            match names {
                Ok(names) => projects.extend(names.into_iter().map(|p| p.name)),
                Err(e) if projects.is_empty() => return Err(FsError::from_store(&e)),
                Err(e) => tracing::warn!("{entity}: listing projects: {e}"),
            }
        }
        for project in projects {
            match layout::project_path(&ProjectRef::new(entity, &project)) {
                Ok(path) => self.add_dir(listing, path, self.config.mount_time, false),
                Err(e) => tracing::warn!("{e}; it is left out of the listing"),
            }
        }
        Ok(())
    }

    async fn list_project(&self, project: &ProjectRef, listing: &mut Listing) -> FsResult<()> {
        // The mirror's listing when it has one (then the listing follows the syncs), else the
        // live one.
        let mirrored: Result<Vec<_>, StoreError> =
            self.backend.mirror_source.runs(project).try_collect().await;
        let runs = match mirrored {
            Ok(runs) => {
                listing.mirrored = true;
                runs
            }
            Err(e) if e.is_not_covered() => self
                .backend
                .source
                .runs(project)
                .try_collect()
                .await
                .map_err(|e: StoreError| FsError::from_store(&e))?,
            Err(e) => return Err(FsError::from_store(&e)),
        };
        for run in runs {
            let run_ref = RunRef::in_project(project, &run.id);
            let mtime = run
                .last_modified
                .map(system_time)
                .unwrap_or(self.config.mount_time);
            match layout::run_path(&run_ref) {
                Ok(path) => self.add_dir(listing, path, mtime, true),
                Err(e) => tracing::warn!("{e}; it is left out of the listing"),
            }
        }
        let first_type = self
            .backend
            .source
            .artifact_types(project)
            .try_next()
            .await
            .map_err(|e| FsError::from_store(&e))?;
        if first_type.is_some()
            && let Ok(path) = layout::artifacts_path(project)
        {
            self.add_dir(listing, path, self.config.mount_time, false);
        }
        if listing.mirrored {
            // The project's tables, rendered from the mirror (exact sizes).
            for kind in ProjectTableKind::ALL {
                let object = match self
                    .backend
                    .mirror_source
                    .project_table(project, kind)
                    .await
                {
                    Ok(Some(object)) => object,
                    Ok(None) => continue,
                    Err(e) => {
                        tracing::warn!("{project}/{}: {e}", kind.file_name());
                        continue;
                    }
                };
                if let Ok(path) = layout::project_table_path(project, kind) {
                    let attr = Attr::file(
                        object.size,
                        system_time(object.last_modified),
                        Some(object.e_tag),
                    );
                    listing
                        .entries
                        .insert(kind.file_name().to_owned(), Entry { path, attr });
                }
            }
        }
        Ok(())
    }

    async fn list_collection(
        &self,
        collection: &CollectionRef,
        listing: &mut Listing,
    ) -> FsResult<()> {
        let versions: Vec<_> = self
            .backend
            .source
            .artifact_versions(collection)
            .try_collect()
            .await
            .map_err(|e: StoreError| FsError::from_store(&e))?;
        let mtime = self.config.mount_time;
        for v in &versions {
            let version = VersionRef {
                collection: collection.clone(),
                version: v.version.clone(),
            };
            if let Ok(path) = layout::version_path(&version) {
                self.add_dir(listing, path, mtime, false);
            }
        }
        for v in &versions {
            for alias in &v.aliases {
                // An alias that looks like a version label would shadow a version: left out.
                if layout::is_version_label(alias) || listing.entries.contains_key(alias) {
                    continue;
                }
                let version = VersionRef {
                    collection: collection.clone(),
                    version: alias.clone(),
                };
                if let Ok(path) = layout::version_path(&version) {
                    let attr = Attr::symlink(v.version.clone(), mtime);
                    listing.entries.insert(alias.clone(), Entry { path, attr });
                }
            }
        }
        Ok(())
    }

    /// A run directory (or a folder of its files): from the mirror in one go when it holds
    /// the run; a run it does not hold is synced first; the store's listing (live) is the
    /// fallback when that fails short of an error.
    async fn list_run_level(
        &self,
        run: &RunRef,
        path: &Path,
        listing: &mut Listing,
    ) -> FsResult<()> {
        let contents = match self.backend.mirror_source.run_contents(run).await {
            Err(e) if e.is_not_covered() && self.backend.engine.is_some() => {
                self.sync_run(run).await?;
                self.backend.mirror_source.run_contents(run).await
            }
            other => other,
        };
        let contents = match contents {
            Ok(Some(contents)) => contents,
            Ok(None) => return Err(FsError::not_found(path)),
            Err(e) if e.is_not_covered() => {
                return self.list_store_level(path, listing, true).await;
            }
            Err(e) => return Err(FsError::from_store(&e)),
        };
        listing.mirrored = true;
        let depth = path.parts().count();
        if depth == 3 {
            for (kind, object) in &contents.synthetic {
                if let Ok(p) = layout::synthetic_path(run, *kind) {
                    let attr = Attr::file(
                        object.size,
                        system_time(object.last_modified),
                        Some(object.e_tag.clone()),
                    );
                    listing
                        .entries
                        .insert(kind.file_name().to_owned(), Entry { path: p, attr });
                }
            }
        }
        let prefix: Vec<_> = path.parts().collect();
        let mut dirs = Vec::new();
        for file in &contents.files {
            let file_path = match layout::run_file_path(run, &file.name) {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!("{e}; it is left out of the listing");
                    continue;
                }
            };
            let parts: Vec<_> = file_path.parts().collect();
            if parts.len() <= depth || parts[..depth] != prefix[..] {
                continue;
            }
            let name = parts[depth].as_ref().to_owned();
            if parts.len() > depth + 1 {
                dirs.push((name, Path::from_iter(parts[..=depth].iter().cloned())));
                continue;
            }
            let mut attr = Attr::file(
                file.size,
                file.last_modified
                    .map(system_time)
                    .unwrap_or(self.config.mount_time),
                file.e_tag.clone(),
            );
            attr.writable = self.config.allow_write;
            listing.entries.insert(
                name,
                Entry {
                    path: file_path,
                    attr,
                },
            );
        }
        let mtime = self.config.mount_time;
        for (name, dir) in dirs {
            // A directory shadows a file of the same name.
            listing.entries.insert(
                name,
                Entry {
                    path: dir,
                    attr: self.dir_attr(mtime, true),
                },
            );
        }
        Ok(())
    }

    /// One level of the store's tree: files with their metadata, folders as directories.
    async fn list_store_level(
        &self,
        path: &Path,
        listing: &mut Listing,
        run_level: bool,
    ) -> FsResult<()> {
        let result = self
            .backend
            .store
            .list_with_delimiter(Some(path))
            .await
            .map_err(|e| Self::store_error(path, e))?;
        let writable_file = run_level && self.config.allow_write;
        for object in result.objects {
            let Some(name) = object.location.filename().map(str::to_owned) else {
                continue;
            };
            let synthetic = matches!(Location::parse(&object.location), Location::Synthetic(..));
            let mut attr = Attr::file(
                object.size,
                system_time(object.last_modified),
                object.e_tag.clone(),
            );
            attr.writable = writable_file && !synthetic;
            listing.entries.insert(
                name,
                Entry {
                    path: object.location,
                    attr,
                },
            );
        }
        let mtime = self.config.mount_time;
        for prefix in result.common_prefixes {
            // A directory shadows a file of the same name.
            self.add_dir(listing, prefix, mtime, run_level);
        }
        Ok(())
    }

    /// Makes sure the mirror covers `run` (its synthetic files and file listing), syncing it
    /// when it does not. Online only; offline, the mirror is all there is.
    pub async fn ensure_run(&self, run: &RunRef) -> FsResult<()> {
        if self.backend.engine.is_none() {
            return Ok(());
        }
        match self
            .backend
            .mirror_source
            .synthetic(run, SyntheticKind::Metadata)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_covered() => self.sync_run(run).await,
            Err(e) => Err(FsError::from_store(&e)),
        }
    }

    /// Syncs one run into the mirror (one sync per run at a time; a failure is remembered for
    /// a while, so a broken run does not cost a sync per access).
    async fn sync_run(&self, run: &RunRef) -> FsResult<()> {
        let Some(engine) = &self.backend.engine else {
            return Ok(());
        };
        let flight = {
            let mut syncs = self.run_syncs.lock().unwrap_or_else(|e| e.into_inner());
            let stale =
                |s: &RunSync| s.outcome.initialized() && s.started.elapsed() >= FAILED_SYNC_MEMORY;
            match syncs.get(run) {
                Some(s) if !stale(s) => s.clone(),
                _ => {
                    let fresh = RunSync {
                        outcome: Arc::new(tokio::sync::OnceCell::new()),
                        started: Instant::now(),
                    };
                    syncs.insert(run.clone(), fresh.clone());
                    fresh
                }
            }
        };
        let outcome = flight
            .outcome
            .get_or_init(|| async {
                tracing::info!("{run}: not in the mirror yet; syncing it");
                let target = SyncTarget {
                    entity: run.entity.clone(),
                    project: run.project.clone(),
                    run: Some(run.run.clone()),
                };
                let sync = {
                    let engine = engine.clone();
                    async move { engine.sync(&[target]).await }
                };
                let result = match &self.backend.background {
                    Some(background) => match background.spawn(sync).await {
                        Ok(result) => result,
                        Err(e) => return Err(format!("the sync task failed: {e}")),
                    },
                    None => sync.await,
                };
                match result {
                    Ok(report) if report.is_success() => Ok(()),
                    Ok(report) => Err(report
                        .projects
                        .iter()
                        .filter_map(|p| p.error.clone())
                        .chain(report.failures.iter().map(|f| f.error.clone()))
                        .next()
                        .unwrap_or_else(|| "the sync did not complete".to_owned())),
                    Err(e) => Err(e.to_string()),
                }
            })
            .await
            .clone();
        if outcome.is_ok() {
            let mut syncs = self.run_syncs.lock().unwrap_or_else(|e| e.into_inner());
            if syncs
                .get(run)
                .is_some_and(|s| Arc::ptr_eq(&s.outcome, &flight.outcome))
            {
                syncs.remove(run);
            }
        }
        outcome.map_err(|e| {
            if e.contains("not found") {
                FsError::not_found(run)
            } else {
                FsError::io(format!("{run}: syncing it into the mirror failed: {e}"))
            }
        })
    }
}

/// `parent/name`, refusing names that cannot be a path segment.
pub fn child_path(parent: &Path, name: &str) -> FsResult<Path> {
    let part = object_store::path::PathPart::parse(name)
        .map_err(|_| FsError::not_found(format!("{parent}/{name}")))?;
    if name.is_empty() || name == "." || name == ".." {
        return Err(FsError::not_found(format!("{parent}/{name}")));
    }
    Ok(parent.clone().join(part))
}
