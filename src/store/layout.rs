//! The namespace of `docs/LAYOUT.md`: which W&B object an `object_store::Path` names, and the one
//! path of every W&B object.
//!
//! Names are used **literally**: a path's text is the W&B name, segment by segment, exactly as
//! object stores such as S3 treat keys (`Path::parse("a%41")` names a file called `a%41`, not
//! `aA`). The only rewriting is the bijective `@` escape for names that collide with entries
//! wandbfs reserves (the synthetic files at the top of a run, `artifacts` in a project):
//! `summary.json` → `@summary.json`, `@x` → `@@x`. A W&B name that cannot be an object_store
//! path at all (an empty segment as in `a//b`, a `.` or `..` segment, an ASCII control
//! character) has no path: listings leave it out with a warning.

use object_store::path::{Path, PathPart};

use super::source::{CollectionRef, FileRef, ProjectRef, RunRef, VersionRef};

/// The reserved project entry that holds the project's artifacts.
pub const ARTIFACTS_DIR: &str = "artifacts";

/// The escape prefix for names that collide with reserved entries.
pub const ESCAPE: char = '@';

/// The synthetic files at the top of every run directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SyntheticKind {
    /// `history.jsonl`: every history row.
    History,
    /// `history.parquet`: every history row as a typed table (from the mirror).
    HistoryParquet,
    /// `system.jsonl`: system-metric rows (W&B "events").
    System,
    /// `system.parquet`: system-metric rows as a typed table (from the mirror).
    SystemParquet,
    /// `summary.json`: the run summary.
    Summary,
    /// `config.json`: the user config, values unwrapped.
    Config,
    /// `metadata.json`: the run record.
    Metadata,
}

impl SyntheticKind {
    /// Every kind, in listing order.
    pub const ALL: [SyntheticKind; 7] = [
        SyntheticKind::History,
        SyntheticKind::HistoryParquet,
        SyntheticKind::System,
        SyntheticKind::SystemParquet,
        SyntheticKind::Summary,
        SyntheticKind::Config,
        SyntheticKind::Metadata,
    ];

    /// The file name in the run directory.
    pub fn file_name(self) -> &'static str {
        match self {
            SyntheticKind::History => "history.jsonl",
            SyntheticKind::HistoryParquet => "history.parquet",
            SyntheticKind::System => "system.jsonl",
            SyntheticKind::SystemParquet => "system.parquet",
            SyntheticKind::Summary => "summary.json",
            SyntheticKind::Config => "config.json",
            SyntheticKind::Metadata => "metadata.json",
        }
    }

    /// The kind whose file is called `name`.
    pub fn from_file_name(name: &str) -> Option<SyntheticKind> {
        SyntheticKind::ALL
            .into_iter()
            .find(|k| k.file_name() == name)
    }

    /// The MIME type served for this file.
    pub fn content_type(self) -> &'static str {
        match self {
            SyntheticKind::History | SyntheticKind::System => "application/jsonl",
            SyntheticKind::HistoryParquet | SyntheticKind::SystemParquet => {
                "application/vnd.apache.parquet"
            }
            _ => "application/json",
        }
    }

    /// Whether it is a typed table rendered from the mirror (`*.parquet`).
    pub fn is_table(self) -> bool {
        matches!(
            self,
            SyntheticKind::HistoryParquet | SyntheticKind::SystemParquet
        )
    }
}

/// The tables at the top of every project directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProjectTableKind {
    /// `runs.parquet`: one row per run, typed `config.*`/`summary.*` columns.
    RunsParquet,
    /// `runs.jsonl`: one row per run, `config` and `summary` as objects.
    RunsJsonl,
}

impl ProjectTableKind {
    /// Every kind, in listing order.
    pub const ALL: [ProjectTableKind; 2] =
        [ProjectTableKind::RunsParquet, ProjectTableKind::RunsJsonl];

    /// The file name in the project directory.
    pub fn file_name(self) -> &'static str {
        match self {
            ProjectTableKind::RunsParquet => "runs.parquet",
            ProjectTableKind::RunsJsonl => "runs.jsonl",
        }
    }

    /// The kind whose file is called `name`.
    pub fn from_file_name(name: &str) -> Option<ProjectTableKind> {
        ProjectTableKind::ALL
            .into_iter()
            .find(|k| k.file_name() == name)
    }

    /// The MIME type served for this file.
    pub fn content_type(self) -> &'static str {
        match self {
            ProjectTableKind::RunsParquet => "application/vnd.apache.parquet",
            ProjectTableKind::RunsJsonl => "application/jsonl",
        }
    }
}

/// Whether `name` is reserved in a project directory (`artifacts`, the project tables): a run
/// of that id is reached as `@<id>`.
pub fn is_reserved_in_project(name: &str) -> bool {
    name == ARTIFACTS_DIR || ProjectTableKind::from_file_name(name).is_some()
}

/// What a path names. For `list` the path is read as a directory (`RunFile(run, "media")` lists
/// `media/…`); for `get`/`head` as an object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// The root: entities.
    Root,
    /// `<entity>`: projects.
    Entity(String),
    /// `<entity>/<project>`: runs and `artifacts`.
    Project(ProjectRef),
    /// `<entity>/<project>/runs.parquet` (or `runs.jsonl`): the project's runs table.
    ProjectTable(ProjectRef, ProjectTableKind),
    /// `<entity>/<project>/<run>`: a run directory.
    Run(RunRef),
    /// A synthetic file of a run.
    Synthetic(RunRef, SyntheticKind),
    /// A run file (or a pseudo-directory of run files) by W&B name.
    RunFile(RunRef, String),
    /// `<entity>/<project>/artifacts`: artifact types.
    Artifacts(ProjectRef),
    /// `…/artifacts/<type>`: collections.
    ArtifactType(ProjectRef, String),
    /// `…/artifacts/<type>/<collection>`: versions.
    Collection(CollectionRef),
    /// `…/<collection>/<version or alias>`: an artifact version.
    Version(VersionRef),
    /// A file (or pseudo-directory) of an artifact version, by artifact-relative path.
    ArtifactFile(VersionRef, String),
    /// A well-formed path that names nothing wandbfs can hold: an `@` that escapes nothing
    /// (`@notes.txt`), something below a synthetic file (`history.jsonl/x`).
    Nothing,
}

impl Location {
    /// What a path names (see [`Location`]).
    pub fn parse(path: &Path) -> Location {
        let parts: Vec<String> = path.parts().map(|p| p.as_ref().to_owned()).collect();
        let mut it = parts.into_iter();
        let Some(entity) = it.next() else {
            return Location::Root;
        };
        let Some(project) = it.next() else {
            return Location::Entity(entity);
        };
        let project = ProjectRef::new(entity, project);
        let Some(third) = it.next() else {
            return Location::Project(project);
        };
        let rest: Vec<String> = it.collect();
        match unescape(&third, is_reserved_in_project) {
            Unescaped::Reserved => match ProjectTableKind::from_file_name(&third) {
                Some(kind) if rest.is_empty() => Location::ProjectTable(project, kind),
                // Nothing lies below a table.
                Some(_) => Location::Nothing,
                None => parse_artifacts(project, rest),
            },
            Unescaped::Name(run) => parse_run(RunRef::in_project(&project, run), rest),
            Unescaped::Invalid => Location::Nothing,
        }
    }

    /// For a file location, the reference to the file.
    pub fn file_ref(&self) -> Option<FileRef> {
        match self {
            Location::RunFile(run, name) => Some(FileRef::Run(run.clone(), name.clone())),
            Location::ArtifactFile(version, name) => {
                Some(FileRef::Artifact(version.clone(), name.clone()))
            }
            _ => None,
        }
    }
}

fn parse_run(run: RunRef, rest: Vec<String>) -> Location {
    let mut it = rest.into_iter();
    let Some(first) = it.next() else {
        return Location::Run(run);
    };
    let tail: Vec<String> = it.collect();
    match unescape(&first, |s| SyntheticKind::from_file_name(s).is_some()) {
        Unescaped::Reserved if tail.is_empty() => match SyntheticKind::from_file_name(&first) {
            Some(kind) => Location::Synthetic(run, kind),
            None => Location::Nothing,
        },
        // Synthetic files are not directories.
        Unescaped::Reserved | Unescaped::Invalid => Location::Nothing,
        Unescaped::Name(first) => Location::RunFile(run, join_name(first, tail)),
    }
}

fn parse_artifacts(project: ProjectRef, rest: Vec<String>) -> Location {
    let mut it = rest.into_iter();
    let Some(type_name) = it.next() else {
        return Location::Artifacts(project);
    };
    let Some(collection) = it.next() else {
        return Location::ArtifactType(project, type_name);
    };
    let collection = CollectionRef {
        project,
        type_name,
        collection,
    };
    let Some(version) = it.next() else {
        return Location::Collection(collection);
    };
    let version = VersionRef {
        collection,
        version,
    };
    let tail: Vec<String> = it.collect();
    if tail.is_empty() {
        Location::Version(version)
    } else {
        Location::ArtifactFile(version, tail.join("/"))
    }
}

fn join_name(first: String, tail: Vec<String>) -> String {
    if tail.is_empty() {
        first
    } else {
        let mut name = first;
        for t in tail {
            name.push('/');
            name.push_str(&t);
        }
        name
    }
}

/// A path segment after undoing the `@` escape.
#[derive(Debug, PartialEq, Eq)]
enum Unescaped {
    /// The reserved entry itself (unescaped reserved name).
    Reserved,
    /// A W&B name.
    Name(String),
    /// An `@` that escapes nothing: no W&B object has this path.
    Invalid,
}

fn unescape(segment: &str, is_reserved: impl Fn(&str) -> bool) -> Unescaped {
    if is_reserved(segment) {
        return Unescaped::Reserved;
    }
    match segment.strip_prefix(ESCAPE) {
        Some(rest) if is_reserved(rest) || rest.starts_with(ESCAPE) => {
            Unescaped::Name(rest.to_owned())
        }
        Some(_) => Unescaped::Invalid,
        None => Unescaped::Name(segment.to_owned()),
    }
}

fn escape(name: &str, is_reserved: impl Fn(&str) -> bool) -> String {
    if is_reserved(name) || name.starts_with(ESCAPE) {
        format!("{ESCAPE}{name}")
    } else {
        name.to_owned()
    }
}

/// A W&B name that has no object_store path.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{what} {name:?} cannot be an object_store path: {reason}")]
pub struct Unrepresentable {
    /// What kind of name (`run file`, `project`, …).
    pub what: &'static str,
    /// The name.
    pub name: String,
    /// Why.
    pub reason: String,
}

fn part<'a>(
    what: &'static str,
    name: &str,
    segment: &'a str,
) -> Result<PathPart<'a>, Unrepresentable> {
    if segment.is_empty() {
        return Err(Unrepresentable {
            what,
            name: name.to_owned(),
            reason: "empty path segment".into(),
        });
    }
    PathPart::parse(segment).map_err(|e| Unrepresentable {
        what,
        name: name.to_owned(),
        reason: e.to_string(),
    })
}

fn push(
    path: Path,
    what: &'static str,
    name: &str,
    segment: &str,
) -> Result<Path, Unrepresentable> {
    Ok(path.join(part(what, name, segment)?))
}

/// `<entity>`.
pub fn entity_path(entity: &str) -> Result<Path, Unrepresentable> {
    push(Path::ROOT, "entity", entity, entity)
}

/// `<entity>/<project>`.
pub fn project_path(project: &ProjectRef) -> Result<Path, Unrepresentable> {
    let path = entity_path(&project.entity)?;
    push(path, "project", &project.project, &project.project)
}

/// `<entity>/<project>/<run>` (the run id `@`-escaped when it collides with a reserved project
/// entry: `artifacts`, `runs.parquet`, `runs.jsonl`).
pub fn run_path(run: &RunRef) -> Result<Path, Unrepresentable> {
    let path = project_path(&run.project_ref())?;
    let segment = escape(&run.run, is_reserved_in_project);
    push(path, "run id", &run.run, &segment)
}

/// The path of a project table (`<entity>/<project>/runs.parquet`).
pub fn project_table_path(
    project: &ProjectRef,
    kind: ProjectTableKind,
) -> Result<Path, Unrepresentable> {
    Ok(project_path(project)?.join(kind.file_name()))
}

/// The path of a synthetic file.
pub fn synthetic_path(run: &RunRef, kind: SyntheticKind) -> Result<Path, Unrepresentable> {
    Ok(run_path(run)?.join(kind.file_name()))
}

/// Appends a `/`-separated W&B name (`media/images/x.png`) to `base`; the first segment is
/// escaped with `reserved`.
fn append_name(
    base: Path,
    what: &'static str,
    name: &str,
    is_reserved: impl Fn(&str) -> bool,
) -> Result<Path, Unrepresentable> {
    let mut path = base;
    for (i, segment) in name.split('/').enumerate() {
        path = if i == 0 {
            push(path, what, name, &escape(segment, &is_reserved))?
        } else {
            push(path, what, name, segment)?
        };
    }
    Ok(path)
}

/// The path of a run file (`media/images/x.png` → `<run>/media/images/x.png`; a top-level name
/// equal to a synthetic file name, or starting with `@`, gets an `@`).
pub fn run_file_path(run: &RunRef, name: &str) -> Result<Path, Unrepresentable> {
    append_name(run_path(run)?, "run file", name, |s| {
        SyntheticKind::from_file_name(s).is_some()
    })
}

/// `<entity>/<project>/artifacts`.
pub fn artifacts_path(project: &ProjectRef) -> Result<Path, Unrepresentable> {
    Ok(project_path(project)?.join(ARTIFACTS_DIR))
}

/// `…/artifacts/<type>`.
pub fn artifact_type_path(project: &ProjectRef, type_name: &str) -> Result<Path, Unrepresentable> {
    push(
        artifacts_path(project)?,
        "artifact type",
        type_name,
        type_name,
    )
}

/// `…/artifacts/<type>/<collection>`.
pub fn collection_path(collection: &CollectionRef) -> Result<Path, Unrepresentable> {
    let path = artifact_type_path(&collection.project, &collection.type_name)?;
    push(
        path,
        "artifact collection",
        &collection.collection,
        &collection.collection,
    )
}

/// `…/<collection>/<version>`.
pub fn version_path(version: &VersionRef) -> Result<Path, Unrepresentable> {
    let path = collection_path(&version.collection)?;
    push(path, "artifact version", &version.version, &version.version)
}

/// The path of an artifact file (no escaping: nothing is reserved inside a version).
pub fn artifact_file_path(version: &VersionRef, name: &str) -> Result<Path, Unrepresentable> {
    append_name(version_path(version)?, "artifact file", name, |_| false)
}

/// The path of any file.
pub fn file_path(file: &FileRef) -> Result<Path, Unrepresentable> {
    match file {
        FileRef::Run(run, name) => run_file_path(run, name),
        FileRef::Artifact(version, name) => artifact_file_path(version, name),
    }
}

/// Whether `label` is a version label (`v0`, `v12`) rather than an alias.
pub fn is_version_label(label: &str) -> bool {
    label
        .strip_prefix('v')
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn run() -> RunRef {
        RunRef::new("ent", "proj", "abc123")
    }

    fn p(s: &str) -> Path {
        Path::parse(s).unwrap()
    }

    #[test]
    fn parses_every_level() {
        assert_eq!(Location::parse(&Path::ROOT), Location::Root);
        assert_eq!(Location::parse(&p("ent")), Location::Entity("ent".into()));
        assert_eq!(
            Location::parse(&p("ent/proj")),
            Location::Project(ProjectRef::new("ent", "proj"))
        );
        assert_eq!(Location::parse(&p("ent/proj/abc123")), Location::Run(run()));
        assert_eq!(
            Location::parse(&p("ent/proj/abc123/history.jsonl")),
            Location::Synthetic(run(), SyntheticKind::History)
        );
        assert_eq!(
            Location::parse(&p("ent/proj/abc123/media/images/x.png")),
            Location::RunFile(run(), "media/images/x.png".into())
        );
        assert_eq!(
            Location::parse(&p("ent/proj/abc123/@summary.json")),
            Location::RunFile(run(), "summary.json".into())
        );
        assert_eq!(
            Location::parse(&p("ent/proj/abc123/@@x/y")),
            Location::RunFile(run(), "@x/y".into())
        );
        assert_eq!(
            Location::parse(&p("ent/proj/abc123/@x")),
            Location::Nothing,
            "an @ that escapes nothing names nothing"
        );
        assert_eq!(
            Location::parse(&p("ent/proj/abc123/history.jsonl/x")),
            Location::Nothing
        );
        let project = ProjectRef::new("ent", "proj");
        assert_eq!(
            Location::parse(&p("ent/proj/artifacts")),
            Location::Artifacts(project.clone())
        );
        assert_eq!(
            Location::parse(&p("ent/proj/@artifacts/config.json")),
            Location::Synthetic(
                RunRef::new("ent", "proj", "artifacts"),
                SyntheticKind::Config
            )
        );
        let collection = CollectionRef {
            project: project.clone(),
            type_name: "dataset".into(),
            collection: "ds".into(),
        };
        let version = VersionRef {
            collection: collection.clone(),
            version: "latest".into(),
        };
        assert_eq!(
            Location::parse(&p("ent/proj/artifacts/dataset")),
            Location::ArtifactType(project, "dataset".into())
        );
        assert_eq!(
            Location::parse(&p("ent/proj/artifacts/dataset/ds")),
            Location::Collection(collection)
        );
        assert_eq!(
            Location::parse(&p("ent/proj/artifacts/dataset/ds/latest")),
            Location::Version(version.clone())
        );
        assert_eq!(
            Location::parse(&p("ent/proj/artifacts/dataset/ds/latest/sub/a.txt")),
            Location::ArtifactFile(version, "sub/a.txt".into())
        );
    }

    #[test]
    fn names_are_literal() {
        // object_store's own rule: the path text is the key (no percent-decoding).
        let path = run_file_path(&run(), "%48%45/a b#[1].png").unwrap();
        assert_eq!(path.as_ref(), "ent/proj/abc123/%48%45/a b#[1].png");
        assert_eq!(
            Location::parse(&path),
            Location::RunFile(run(), "%48%45/a b#[1].png".into())
        );
    }

    #[test]
    fn unrepresentable_names_are_errors() {
        for bad in ["a//b", "/a", "a/", "", "a/../b", ".", "x\ny", "tab\there"] {
            assert!(run_file_path(&run(), bad).is_err(), "{bad:?}");
        }
        assert!(entity_path("").is_err());
        assert!(run_path(&RunRef::new("e", "p", "..")).is_err());
    }

    #[test]
    fn version_labels() {
        assert!(is_version_label("v0"));
        assert!(is_version_label("v12"));
        assert!(!is_version_label("v"));
        assert!(!is_version_label("latest"));
        assert!(!is_version_label("v1a"));
    }

    /// Every string up to length 3 over an alphabet chosen to hit every rule (the escape, the
    /// separator, dots, percent signs, unicode, a control character), plus the reserved names
    /// with prefixes: each representable name has exactly one path, that path parses back to
    /// the same name, and no two names share a path.
    fn names() -> Vec<String> {
        let alphabet = ['a', '@', '/', '.', '%', 'é', '\n'];
        let mut out = vec![String::new()];
        let mut frontier = vec![String::new()];
        for _ in 0..3 {
            let mut next = Vec::new();
            for s in &frontier {
                for c in alphabet {
                    let mut t = s.clone();
                    t.push(c);
                    next.push(t);
                }
            }
            out.extend(next.iter().cloned());
            frontier = next;
        }
        for reserved in [
            "history.jsonl",
            "history.parquet",
            "system.jsonl",
            "system.parquet",
            "summary.json",
            "config.json",
            "metadata.json",
            "artifacts",
            "runs.parquet",
            "runs.jsonl",
        ] {
            for prefix in ["", "@", "@@", "a/", "@/"] {
                out.push(format!("{prefix}{reserved}"));
                out.push(format!("{prefix}{reserved}/x"));
            }
        }
        out
    }

    #[test]
    fn run_files_round_trip_and_are_injective() {
        let mut seen: BTreeMap<String, String> = BTreeMap::new();
        let mut representable = 0;
        for name in names() {
            let Ok(path) = run_file_path(&run(), &name) else {
                // Only names with an empty, `.`/`..` or control-character segment are refused.
                assert!(
                    name.split('/').any(|s| s.is_empty()
                        || s == "."
                        || s == ".."
                        || s.chars().any(|c| c.is_ascii_control())),
                    "{name:?} refused"
                );
                continue;
            };
            representable += 1;
            assert_eq!(
                Location::parse(&path),
                Location::RunFile(run(), name.clone()),
                "{name:?} → {path}"
            );
            if let Some(other) = seen.insert(path.to_string(), name.clone()) {
                panic!("{name:?} and {other:?} share {path}");
            }
        }
        assert!(representable > 100, "{representable}");
    }

    #[test]
    fn run_ids_round_trip_and_are_injective() {
        let mut seen: BTreeMap<String, String> = BTreeMap::new();
        for id in names() {
            let r = RunRef::new("e", "p", id.clone());
            let Ok(path) = run_path(&r) else {
                continue;
            };
            assert_eq!(Location::parse(&path), Location::Run(r.clone()), "{id:?}");
            for kind in SyntheticKind::ALL {
                let s = synthetic_path(&r, kind).unwrap();
                assert_eq!(Location::parse(&s), Location::Synthetic(r.clone(), kind));
            }
            if let Some(other) = seen.insert(path.to_string(), id.clone()) {
                panic!("{id:?} and {other:?} share {path}");
            }
        }
        // The reserved entries themselves are not runs.
        assert_eq!(
            Location::parse(&p("e/p/artifacts")),
            Location::Artifacts(ProjectRef::new("e", "p"))
        );
        for kind in ProjectTableKind::ALL {
            let path = project_table_path(&ProjectRef::new("e", "p"), kind).unwrap();
            assert_eq!(
                Location::parse(&path),
                Location::ProjectTable(ProjectRef::new("e", "p"), kind)
            );
            // A run of that id is `@`-escaped, and nothing lies below a table.
            let r = RunRef::new("e", "p", kind.file_name());
            let escaped = run_path(&r).unwrap();
            assert_eq!(escaped.as_ref(), format!("e/p/@{}", kind.file_name()));
            assert_eq!(Location::parse(&escaped), Location::Run(r));
            assert_eq!(
                Location::parse(&p(&format!("e/p/{}/x", kind.file_name()))),
                Location::Nothing
            );
        }
    }

    /// Every path parses to at most one object, and the object's own path is that path: no
    /// second spelling of any object exists.
    #[test]
    fn every_path_names_at_most_one_object() {
        for name in names() {
            let Ok(path) = Path::parse(format!("e/p/r/{name}")) else {
                continue;
            };
            let back = match Location::parse(&path) {
                Location::RunFile(r, n) => run_file_path(&r, &n).unwrap(),
                Location::Synthetic(r, k) => synthetic_path(&r, k).unwrap(),
                Location::Run(r) => run_path(&r).unwrap(),
                Location::Nothing => continue,
                other => panic!("{path} parsed as {other:?}"),
            };
            assert_eq!(back, path, "{path} is not the canonical path of its object");
        }
    }
}
