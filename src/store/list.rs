//! `list` (recursive, streamed) and `list_with_delimiter` (one level) at every level of the
//! namespace.
//!
//! `list` is lazy: entities, projects, runs and files are fetched page by page as the caller
//! consumes the stream, one level inside the other. A listing of a prefix that names nothing
//! is empty. Names that cannot be object_store paths are skipped with a warning
//! (`docs/LAYOUT.md`).

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::DateTime;
use futures::future;
use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ListResult, ObjectMeta};

use super::Inner;
use super::error::StoreError;
use super::layout::{self, Location, ProjectTableKind, SyntheticKind, Unrepresentable};
use super::source::{CollectionRef, FileEntry, ProjectRef, RunRef, SourceResult, VersionRef};

type MetaStream = BoxStream<'static, object_store::Result<ObjectMeta>>;

fn skip(err: &Unrepresentable) {
    tracing::warn!("{err}; it is left out of listings");
}

/// Maps each item of a source stream to a stream of results and flattens, passing errors on.
fn flat_map_ok<T, F>(s: BoxStream<'static, SourceResult<T>>, mut f: F, at: String) -> MetaStream
where
    T: Send + 'static,
    F: FnMut(T) -> MetaStream + Send + 'static,
{
    s.map(move |item| match item {
        Ok(t) => f(t),
        Err(e) => stream::iter([Err(e.at(&at).into())]).boxed(),
    })
    .flatten()
    .boxed()
}

pub(super) fn list(inner: Arc<Inner>, prefix: Option<&Path>) -> MetaStream {
    let prefix = prefix.cloned().unwrap_or(Path::ROOT);
    tracing::debug!(prefix = prefix.as_ref(), "list");
    match Location::parse(&prefix) {
        Location::Root => {
            let i = Arc::clone(&inner);
            let entities = stream::once(async move { inner.source.entities().await })
                .map_ok(|entities| stream::iter(entities.into_iter().map(Ok)))
                .try_flatten()
                .boxed();
            flat_map_ok(entities, move |e| list_entity(&i, e), String::new())
        }
        Location::Entity(entity) => list_entity(&inner, entity),
        Location::Project(project) => list_project(&inner, project),
        Location::Run(run) => list_run(&inner, run, None),
        Location::RunFile(run, dir) => list_run(&inner, run, Some(dir)),
        Location::Artifacts(project) => list_artifacts(&inner, project),
        Location::ArtifactType(project, type_name) => list_type(&inner, project, type_name),
        Location::Collection(collection) => list_collection(&inner, collection),
        Location::Version(version) => list_version(&inner, version, None),
        Location::ArtifactFile(version, dir) => list_version(&inner, version, Some(dir)),
        Location::Synthetic(..) | Location::ProjectTable(..) | Location::Nothing => {
            stream::empty().boxed()
        }
    }
}

fn list_entity(inner: &Arc<Inner>, entity: String) -> MetaStream {
    let i = Arc::clone(inner);
    let at = entity.clone();
    flat_map_ok(
        inner.source.projects(&entity),
        move |p| list_project(&i, ProjectRef::new(&entity, p.name)),
        at,
    )
}

fn list_project(inner: &Arc<Inner>, project: ProjectRef) -> MetaStream {
    let i = Arc::clone(inner);
    let p = project.clone();
    let runs = flat_map_ok(
        inner.source.runs(&project),
        move |r| list_run(&i, RunRef::in_project(&p, r.id), None),
        project.to_string(),
    );
    let tables = {
        let i = Arc::clone(inner);
        let p = project.clone();
        stream::once(async move {
            let at = p.to_string();
            project_tables(&i, &p).await.map_err(|e| e.at(&at))
        })
        .map(|r| match r {
            Ok(metas) => stream::iter(metas.into_iter().map(Ok)).boxed(),
            Err(e) => stream::iter([Err(e.into())]).boxed(),
        })
        .flatten()
    };
    tables
        .chain(runs)
        .chain(list_artifacts(inner, project))
        .boxed()
}

fn file_meta(location: Path, entry: &FileEntry) -> ObjectMeta {
    ObjectMeta {
        location,
        last_modified: entry.last_modified.unwrap_or(DateTime::UNIX_EPOCH),
        size: entry.size,
        e_tag: entry.e_tag.clone(),
        version: None,
    }
}

/// Whether W&B name `name` lies strictly below directory `dir` (`None`: the top).
fn below(name: &str, dir: Option<&str>) -> bool {
    match dir {
        None => true,
        Some(d) => {
            name.len() > d.len() + 1 && name.starts_with(d) && name.as_bytes()[d.len()] == b'/'
        }
    }
}

/// What a listing makes of one synthetic file.
enum Listed {
    /// Its metadata.
    Object(ObjectMeta),
    /// The run does not exist.
    NoRun,
    /// The source cannot serve this kind (tables from a live-only store): left out.
    Unsupported,
}

/// The metadata of a synthetic file.
async fn synthetic_meta(inner: &Inner, run: &RunRef, kind: SyntheticKind) -> SourceResult<Listed> {
    let object = match inner.source.synthetic(run, kind).await {
        Ok(Some(object)) => object,
        Ok(None) => return Ok(Listed::NoRun),
        Err(e) if e.is_not_supported() => return Ok(Listed::Unsupported),
        Err(e) => return Err(e),
    };
    let location = match layout::synthetic_path(run, kind) {
        Ok(p) => p,
        Err(e) => {
            skip(&e);
            return Ok(Listed::Unsupported);
        }
    };
    Ok(Listed::Object(ObjectMeta {
        location,
        last_modified: object.last_modified,
        size: object.size,
        e_tag: Some(object.e_tag),
        version: None,
    }))
}

/// The tables of a project that the source renders.
async fn project_tables(inner: &Inner, project: &ProjectRef) -> SourceResult<Vec<ObjectMeta>> {
    let mut out = Vec::new();
    for kind in ProjectTableKind::ALL {
        let object = match inner.source.project_table(project, kind).await {
            Ok(Some(object)) => object,
            Ok(None) => continue,
            Err(e) if e.is_not_supported() => continue,
            Err(e) => return Err(e),
        };
        match layout::project_table_path(project, kind) {
            Ok(location) => out.push(ObjectMeta {
                location,
                last_modified: object.last_modified,
                size: object.size,
                e_tag: Some(object.e_tag),
                version: None,
            }),
            Err(e) => skip(&e),
        }
    }
    Ok(out)
}

fn list_run(inner: &Arc<Inner>, run: RunRef, dir: Option<String>) -> MetaStream {
    let at = match &dir {
        Some(d) => format!("{run}/{d}"),
        None => run.to_string(),
    };
    let synthetic = if dir.is_none() && inner.synthetic {
        let i = Arc::clone(inner);
        let r = run.clone();
        stream::iter(SyntheticKind::ALL)
            .then(move |kind| {
                let (i, r) = (Arc::clone(&i), r.clone());
                async move { synthetic_meta(&i, &r, kind).await }
            })
            // A missing run has no synthetic files (and no files): stop at the first `NoRun`.
            .take_while(|m| future::ready(!matches!(m, Ok(Listed::NoRun))))
            .filter_map(|m| {
                future::ready(match m {
                    Ok(Listed::Object(meta)) => Some(Ok(meta)),
                    Ok(_) => None,
                    Err(e) => Some(Err(e)),
                })
            })
            .map_err({
                let at = at.clone();
                move |e| e.at(&at).into()
            })
            .boxed()
    } else {
        stream::empty().boxed()
    };
    let r = run.clone();
    let files = inner
        .source
        .run_files(&run)
        .try_filter_map(move |entry| {
            let meta = if below(&entry.name, dir.as_deref()) {
                match layout::run_file_path(&r, &entry.name) {
                    Ok(path) => Some(file_meta(path, &entry)),
                    Err(e) => {
                        skip(&e);
                        None
                    }
                }
            } else {
                None
            };
            future::ready(Ok(meta))
        })
        .map_err(move |e| e.at(&at).into());
    synthetic.chain(files).boxed()
}

fn list_artifacts(inner: &Arc<Inner>, project: ProjectRef) -> MetaStream {
    let i = Arc::clone(inner);
    let p = project.clone();
    flat_map_ok(
        inner.source.artifact_types(&project),
        move |t| list_type(&i, p.clone(), t),
        format!("{project}/artifacts"),
    )
}

fn list_type(inner: &Arc<Inner>, project: ProjectRef, type_name: String) -> MetaStream {
    let i = Arc::clone(inner);
    let at = format!("{project}/artifacts/{type_name}");
    let stream = inner.source.artifact_collections(&project, &type_name);
    flat_map_ok(
        stream,
        move |collection| {
            list_collection(
                &i,
                CollectionRef {
                    project: project.clone(),
                    type_name: type_name.clone(),
                    collection,
                },
            )
        },
        at,
    )
}

fn list_collection(inner: &Arc<Inner>, collection: CollectionRef) -> MetaStream {
    let i = Arc::clone(inner);
    let c = collection.clone();
    flat_map_ok(
        inner.source.artifact_versions(&collection),
        move |v| {
            let version = VersionRef {
                collection: c.clone(),
                version: v.version,
            };
            list_version(&i, version, None)
        },
        collection.to_string(),
    )
}

fn list_version(inner: &Arc<Inner>, version: VersionRef, dir: Option<String>) -> MetaStream {
    let at = version.to_string();
    let v = version.clone();
    inner
        .source
        .artifact_files(&version)
        .try_filter_map(move |entry| {
            let meta = if below(&entry.name, dir.as_deref()) {
                match layout::artifact_file_path(&v, &entry.name) {
                    Ok(path) => Some(file_meta(path, &entry)),
                    Err(e) => {
                        skip(&e);
                        None
                    }
                }
            } else {
                None
            };
            future::ready(Ok(meta))
        })
        .map_err(move |e| e.at(&at).into())
        .boxed()
}

/// Collects one level: objects directly below `dir` and the sub-directories (common prefixes).
#[derive(Default)]
struct Level {
    objects: Vec<ObjectMeta>,
    prefixes: BTreeSet<Path>,
}

impl Level {
    fn into_result(mut self) -> ListResult {
        self.objects.sort_by(|a, b| a.location.cmp(&b.location));
        ListResult {
            common_prefixes: self.prefixes.into_iter().collect(),
            objects: self.objects,
            extensions: Default::default(),
        }
    }

    /// Adds file `entry` if it lies below `dir`; `path_of` gives the path of a W&B name.
    fn add_file(
        &mut self,
        entry: &FileEntry,
        dir: Option<&str>,
        path_of: impl Fn(&str) -> Result<Path, Unrepresentable>,
    ) {
        if !below(&entry.name, dir) {
            return;
        }
        // Unrepresentable anywhere in its name: the file does not exist for the store.
        if let Err(e) = path_of(&entry.name) {
            skip(&e);
            return;
        }
        let rest = match dir {
            Some(d) => &entry.name[d.len() + 1..],
            None => entry.name.as_str(),
        };
        let offset = entry.name.len() - rest.len();
        match rest.find('/') {
            None => {
                if let Ok(path) = path_of(&entry.name) {
                    self.objects.push(file_meta(path, entry));
                }
            }
            Some(slash) => {
                if let Ok(path) = path_of(&entry.name[..offset + slash]) {
                    self.prefixes.insert(path);
                }
            }
        }
    }

    fn add_prefix(&mut self, path: Result<Path, Unrepresentable>) {
        match path {
            Ok(p) => {
                self.prefixes.insert(p);
            }
            Err(e) => skip(&e),
        }
    }
}

async fn collect<T>(
    s: BoxStream<'static, SourceResult<T>>,
    at: &str,
) -> Result<Vec<T>, StoreError> {
    s.try_collect().await.map_err(|e: StoreError| e.at(at))
}

pub(super) async fn list_with_delimiter(
    inner: &Inner,
    prefix: Option<&Path>,
) -> object_store::Result<ListResult> {
    let prefix = prefix.cloned().unwrap_or(Path::ROOT);
    let at = prefix.as_ref().to_owned();
    tracing::debug!(prefix = at, "list_with_delimiter");
    let mut level = Level::default();
    match Location::parse(&prefix) {
        Location::Root => {
            let entities = inner.source.entities().await.map_err(|e| e.at(&at))?;
            for e in entities {
                level.add_prefix(layout::entity_path(&e));
            }
        }
        Location::Entity(entity) => {
            for p in collect(inner.source.projects(&entity), &at).await? {
                level.add_prefix(layout::project_path(&ProjectRef::new(&entity, p.name)));
            }
        }
        Location::Project(project) => {
            for r in collect(inner.source.runs(&project), &at).await? {
                level.add_prefix(layout::run_path(&RunRef::in_project(&project, r.id)));
            }
            // `artifacts/` only when there is at least one type (one page, one call).
            let first = inner
                .source
                .artifact_types(&project)
                .next()
                .await
                .transpose()
                .map_err(|e| e.at(&at))?;
            if first.is_some() {
                level.add_prefix(layout::artifacts_path(&project));
            }
            level.objects.extend(
                project_tables(inner, &project)
                    .await
                    .map_err(|e| e.at(&at))?,
            );
        }
        Location::Run(run) => {
            if inner.synthetic {
                for kind in SyntheticKind::ALL {
                    match synthetic_meta(inner, &run, kind)
                        .await
                        .map_err(|e| e.at(&at))?
                    {
                        Listed::Object(meta) => level.objects.push(meta),
                        Listed::Unsupported => {}
                        // No such run: an empty listing.
                        Listed::NoRun => return Ok(level.into_result()),
                    }
                }
            }
            add_run_files(inner, &run, None, &mut level, &at).await?;
        }
        Location::RunFile(run, dir) => {
            add_run_files(inner, &run, Some(&dir), &mut level, &at).await?;
        }
        Location::Artifacts(project) => {
            for t in collect(inner.source.artifact_types(&project), &at).await? {
                level.add_prefix(layout::artifact_type_path(&project, &t));
            }
        }
        Location::ArtifactType(project, type_name) => {
            let collections = inner.source.artifact_collections(&project, &type_name);
            for c in collect(collections, &at).await? {
                level.add_prefix(layout::collection_path(&CollectionRef {
                    project: project.clone(),
                    type_name: type_name.clone(),
                    collection: c,
                }));
            }
        }
        Location::Collection(collection) => {
            for v in collect(inner.source.artifact_versions(&collection), &at).await? {
                level.add_prefix(layout::version_path(&VersionRef {
                    collection: collection.clone(),
                    version: v.version,
                }));
            }
        }
        Location::Version(version) => {
            add_version_files(inner, &version, None, &mut level, &at).await?;
        }
        Location::ArtifactFile(version, dir) => {
            add_version_files(inner, &version, Some(&dir), &mut level, &at).await?;
        }
        Location::Synthetic(..) | Location::ProjectTable(..) | Location::Nothing => {}
    }
    Ok(level.into_result())
}

async fn add_run_files(
    inner: &Inner,
    run: &RunRef,
    dir: Option<&str>,
    level: &mut Level,
    at: &str,
) -> object_store::Result<()> {
    let mut files = inner.source.run_files(run);
    while let Some(entry) = files.next().await {
        let entry = entry.map_err(|e| e.at(at))?;
        level.add_file(&entry, dir, |name| layout::run_file_path(run, name));
    }
    Ok(())
}

async fn add_version_files(
    inner: &Inner,
    version: &VersionRef,
    dir: Option<&str>,
    level: &mut Level,
    at: &str,
) -> object_store::Result<()> {
    let mut files = inner.source.artifact_files(version);
    while let Some(entry) = files.next().await {
        let entry = entry.map_err(|e| e.at(at))?;
        level.add_file(&entry, dir, |name| {
            layout::artifact_file_path(version, name)
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn below_matches_whole_segments() {
        assert!(below("media/x.png", Some("media")));
        assert!(!below("media", Some("media")));
        assert!(!below("mediax/y", Some("media")));
        assert!(!below("media/", Some("media")));
        assert!(below("anything", None));
    }

    #[test]
    fn one_level_of_run_files() {
        let run = RunRef::new("e", "p", "r");
        let mut level = Level::default();
        let entry = |name: &str| FileEntry {
            name: name.into(),
            size: 1,
            e_tag: None,
            last_modified: None,
            content_type: None,
            reference: None,
        };
        for name in [
            "output.log",
            "media/images/a.png",
            "media/images/b.png",
            "media/table.json",
            "summary.json",
            "summary.json/inner",
            "bad//name",
        ] {
            level.add_file(&entry(name), None, |n| layout::run_file_path(&run, n));
        }
        let result = level.into_result();
        let objects: Vec<_> = result
            .objects
            .iter()
            .map(|o| o.location.to_string())
            .collect();
        assert_eq!(objects, ["e/p/r/@summary.json", "e/p/r/output.log"]);
        let prefixes: Vec<_> = result.common_prefixes.iter().map(Path::to_string).collect();
        assert_eq!(prefixes, ["e/p/r/@summary.json", "e/p/r/media"]);

        let mut level = Level::default();
        for name in ["media/images/a.png", "media/table.json", "other/x"] {
            level.add_file(&entry(name), Some("media"), |n| {
                layout::run_file_path(&run, n)
            });
        }
        let result = level.into_result();
        assert_eq!(result.objects.len(), 1);
        assert_eq!(
            result.objects[0].location.as_ref(),
            "e/p/r/media/table.json"
        );
        assert_eq!(result.common_prefixes[0].as_ref(), "e/p/r/media/images");
    }
}
