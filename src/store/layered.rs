//! [`Layered`]: one source in front of another — the mirror first, the live API as fallback.
//!
//! Every call goes to the primary source; when it answers [`StoreError::NotCovered`] (for a
//! stream: as its first item), the same call goes to the fallback. Anything else the primary
//! answers — including "not found" — is final, so a mirror that has synced a project is
//! authoritative for it. Invalidations reach both.

use std::sync::Arc;

use async_trait::async_trait;
use futures::stream::{self, BoxStream, StreamExt};

use super::layout::{ProjectTableKind, SyntheticKind};
use super::source::{
    CollectionRef, FileEntry, FileRef, Invalidation, MetadataSource, ProjectEntry, ProjectRef,
    RunEntry, RunRef, SourceResult, SyntheticObject, VersionEntry, VersionRef,
};
use crate::client::FileLocation;

/// A primary source with a fallback (see the module docs).
#[derive(Clone, Debug)]
pub struct Layered {
    primary: Arc<dyn MetadataSource>,
    fallback: Arc<dyn MetadataSource>,
}

impl Layered {
    /// `primary` first, `fallback` for what it does not cover.
    pub fn new(primary: Arc<dyn MetadataSource>, fallback: Arc<dyn MetadataSource>) -> Self {
        Layered { primary, fallback }
    }
}

/// The primary stream, or — when its first item is `NotCovered` — the fallback's.
fn or_fallback<T: Send + 'static>(
    primary: BoxStream<'static, SourceResult<T>>,
    fallback: impl FnOnce() -> BoxStream<'static, SourceResult<T>> + Send + 'static,
) -> BoxStream<'static, SourceResult<T>> {
    stream::once(async move {
        let mut primary = primary;
        match primary.next().await {
            Some(Err(e)) if e.is_not_covered() => fallback(),
            Some(first) => stream::iter([first]).chain(primary).boxed(),
            None => stream::empty().boxed(),
        }
    })
    .flatten()
    .boxed()
}

macro_rules! fall_back {
    ($self:ident . $method:ident ( $($arg:expr),* )) => {
        match $self.primary.$method($($arg),*).await {
            Err(e) if e.is_not_covered() => $self.fallback.$method($($arg),*).await,
            other => other,
        }
    };
}

#[async_trait]
impl MetadataSource for Layered {
    fn name(&self) -> String {
        format!("{}+{}", self.primary.name(), self.fallback.name())
    }

    async fn entities(&self) -> SourceResult<Vec<String>> {
        fall_back!(self.entities())
    }

    fn projects(&self, entity: &str) -> BoxStream<'static, SourceResult<ProjectEntry>> {
        let (fallback, entity2) = (Arc::clone(&self.fallback), entity.to_owned());
        or_fallback(self.primary.projects(entity), move || {
            fallback.projects(&entity2)
        })
    }

    fn runs(&self, project: &ProjectRef) -> BoxStream<'static, SourceResult<RunEntry>> {
        let (fallback, p) = (Arc::clone(&self.fallback), project.clone());
        or_fallback(self.primary.runs(project), move || fallback.runs(&p))
    }

    fn run_files(&self, run: &RunRef) -> BoxStream<'static, SourceResult<FileEntry>> {
        let (fallback, r) = (Arc::clone(&self.fallback), run.clone());
        or_fallback(self.primary.run_files(run), move || fallback.run_files(&r))
    }

    async fn run_file(&self, run: &RunRef, name: &str) -> SourceResult<Option<FileEntry>> {
        fall_back!(self.run_file(run, name))
    }

    async fn synthetic(
        &self,
        run: &RunRef,
        kind: SyntheticKind,
    ) -> SourceResult<Option<SyntheticObject>> {
        fall_back!(self.synthetic(run, kind))
    }

    async fn project_table(
        &self,
        project: &ProjectRef,
        kind: ProjectTableKind,
    ) -> SourceResult<Option<SyntheticObject>> {
        fall_back!(self.project_table(project, kind))
    }

    fn artifact_types(&self, project: &ProjectRef) -> BoxStream<'static, SourceResult<String>> {
        let (fallback, p) = (Arc::clone(&self.fallback), project.clone());
        or_fallback(self.primary.artifact_types(project), move || {
            fallback.artifact_types(&p)
        })
    }

    fn artifact_collections(
        &self,
        project: &ProjectRef,
        type_name: &str,
    ) -> BoxStream<'static, SourceResult<String>> {
        let (fallback, p, t) = (
            Arc::clone(&self.fallback),
            project.clone(),
            type_name.to_owned(),
        );
        or_fallback(
            self.primary.artifact_collections(project, type_name),
            move || fallback.artifact_collections(&p, &t),
        )
    }

    fn artifact_versions(
        &self,
        collection: &CollectionRef,
    ) -> BoxStream<'static, SourceResult<VersionEntry>> {
        let (fallback, c) = (Arc::clone(&self.fallback), collection.clone());
        or_fallback(self.primary.artifact_versions(collection), move || {
            fallback.artifact_versions(&c)
        })
    }

    fn artifact_files(&self, version: &VersionRef) -> BoxStream<'static, SourceResult<FileEntry>> {
        let (fallback, v) = (Arc::clone(&self.fallback), version.clone());
        or_fallback(self.primary.artifact_files(version), move || {
            fallback.artifact_files(&v)
        })
    }

    async fn artifact_file(
        &self,
        version: &VersionRef,
        name: &str,
    ) -> SourceResult<Option<FileEntry>> {
        fall_back!(self.artifact_file(version, name))
    }

    async fn locate(&self, file: &FileRef, fresh: bool) -> SourceResult<FileLocation> {
        fall_back!(self.locate(file, fresh))
    }

    async fn fresh_file(&self, file: &FileRef) -> SourceResult<Option<FileEntry>> {
        fall_back!(self.fresh_file(file))
    }

    async fn invalidate(&self, what: &Invalidation) {
        self.primary.invalidate(what).await;
        self.fallback.invalidate(what).await;
    }
}

#[cfg(test)]
mod tests {
    use futures::TryStreamExt;

    use super::*;
    use crate::store::StoreError;

    /// A source that covers exactly one project (like a mirror that synced one project).
    #[derive(Debug)]
    struct Fake {
        label: &'static str,
        covers: Option<ProjectRef>,
    }

    fn not_covered<T>(what: &str) -> SourceResult<T> {
        Err(StoreError::NotCovered {
            what: what.to_owned(),
        })
    }

    #[async_trait]
    impl MetadataSource for Fake {
        fn name(&self) -> String {
            self.label.to_owned()
        }
        async fn entities(&self) -> SourceResult<Vec<String>> {
            if self.covers.is_some() {
                not_covered("entities")
            } else {
                Ok(vec![self.label.to_owned()])
            }
        }
        fn projects(&self, _: &str) -> BoxStream<'static, SourceResult<ProjectEntry>> {
            stream::empty().boxed()
        }
        fn runs(&self, project: &ProjectRef) -> BoxStream<'static, SourceResult<RunEntry>> {
            match &self.covers {
                Some(p) if p != project => stream::iter([not_covered("runs")]).boxed(),
                _ => stream::iter([Ok(RunEntry::new(format!("{}-run", self.label)))]).boxed(),
            }
        }
        fn run_files(&self, _: &RunRef) -> BoxStream<'static, SourceResult<FileEntry>> {
            stream::empty().boxed()
        }
        async fn run_file(&self, run: &RunRef, _: &str) -> SourceResult<Option<FileEntry>> {
            match &self.covers {
                Some(p) if *p != run.project_ref() => not_covered("run file"),
                _ => Ok(None),
            }
        }
        async fn synthetic(
            &self,
            _: &RunRef,
            _: SyntheticKind,
        ) -> SourceResult<Option<SyntheticObject>> {
            Ok(None)
        }
        fn artifact_types(&self, _: &ProjectRef) -> BoxStream<'static, SourceResult<String>> {
            stream::empty().boxed()
        }
        fn artifact_collections(
            &self,
            _: &ProjectRef,
            _: &str,
        ) -> BoxStream<'static, SourceResult<String>> {
            stream::empty().boxed()
        }
        fn artifact_versions(
            &self,
            _: &CollectionRef,
        ) -> BoxStream<'static, SourceResult<VersionEntry>> {
            stream::empty().boxed()
        }
        fn artifact_files(&self, _: &VersionRef) -> BoxStream<'static, SourceResult<FileEntry>> {
            stream::empty().boxed()
        }
        async fn artifact_file(&self, _: &VersionRef, _: &str) -> SourceResult<Option<FileEntry>> {
            Ok(None)
        }
        async fn locate(&self, file: &FileRef, _: bool) -> SourceResult<FileLocation> {
            match &self.covers {
                Some(_) => not_covered("locate"),
                None => Ok(FileLocation::Direct(format!(
                    "https://{}/{file}",
                    self.label
                ))),
            }
        }
    }

    #[tokio::test]
    async fn primary_answers_what_it_covers_and_falls_back_otherwise() {
        let synced = ProjectRef::new("e", "synced");
        let layered = Layered::new(
            Arc::new(Fake {
                label: "mirror",
                covers: Some(synced.clone()),
            }),
            Arc::new(Fake {
                label: "live",
                covers: None,
            }),
        );
        assert_eq!(layered.name(), "mirror+live");
        let runs: Vec<_> = layered.runs(&synced).try_collect().await.unwrap();
        assert_eq!(runs[0].id, "mirror-run");
        let other = ProjectRef::new("e", "other");
        let runs: Vec<_> = layered.runs(&other).try_collect().await.unwrap();
        assert_eq!(runs[0].id, "live-run");
        assert_eq!(layered.entities().await.unwrap(), vec!["live".to_owned()]);
        // "Not found" from the primary is final: no fallback for a covered project.
        let missing = layered
            .run_file(&RunRef::in_project(&synced, "r"), "x")
            .await
            .unwrap();
        assert!(missing.is_none());
        let file = FileRef::Run(RunRef::in_project(&other, "r"), "x".into());
        assert!(matches!(
            layered.locate(&file, false).await.unwrap(),
            FileLocation::Direct(u) if u.starts_with("https://live/")
        ));
    }
}
