//! Run file listings (`RunFiles`).

use futures::stream::BoxStream;
use serde::Deserialize;
use serde_json::json;

use super::Client;
use super::error::{Error, Result};
use super::graphql;
use super::paginate::{self, CursorConvention, Page};
use super::runs::ConnectionWire;
use super::types::{RunFile, RunFilesPage, lenient_i64};

/// A run file listing request.
#[derive(Clone, Debug)]
pub struct RunFilesQuery {
    /// Entity.
    pub entity: String,
    /// Project.
    pub project: String,
    /// Run id (name).
    pub run: String,
    /// Exact names to fetch (empty = all). Exclusive with `pattern`.
    pub names: Vec<String>,
    /// SQL `LIKE` pattern (`%.json`). Exclusive with `names`.
    pub pattern: Option<String>,
    /// Page size; default [`ClientConfig::files_page_size`](super::ClientConfig).
    pub per_page: Option<u32>,
}

impl RunFilesQuery {
    /// All files of a run.
    pub fn new(
        entity: impl Into<String>,
        project: impl Into<String>,
        run: impl Into<String>,
    ) -> Self {
        RunFilesQuery {
            entity: entity.into(),
            project: project.into(),
            run: run.into(),
            names: Vec::new(),
            pattern: None,
            per_page: None,
        }
    }

    /// Only these names.
    pub fn names<I: IntoIterator<Item = S>, S: Into<String>>(mut self, names: I) -> Self {
        self.names = names.into_iter().map(Into::into).collect();
        self
    }

    /// Only names matching a SQL `LIKE` pattern.
    pub fn pattern(mut self, pattern: impl Into<String>) -> Self {
        self.pattern = Some(pattern.into());
        self
    }

    /// Page size.
    pub fn per_page(mut self, per_page: u32) -> Self {
        self.per_page = Some(per_page);
        self
    }
}

impl Client {
    /// One page of a run's files. [`Error::NotFound`] when the run (or project) is missing.
    pub async fn run_files_page(
        &self,
        query: &RunFilesQuery,
        cursor: Option<String>,
    ) -> Result<RunFilesPage> {
        #[derive(Deserialize)]
        struct Data {
            project: Option<ProjectWire>,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct ProjectWire {
            #[serde(default, deserialize_with = "lenient_i64")]
            internal_id: Option<i64>,
            run: Option<RunWire>,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct RunWire {
            #[serde(default, deserialize_with = "lenient_i64")]
            file_count: Option<i64>,
            files: Option<ConnectionWire<RunFile>>,
        }
        let op = graphql::RUN_FILES;
        if !query.names.is_empty() && query.pattern.is_some() {
            return Err(Error::config(
                "querying run files by both names and pattern is not supported",
            ));
        }
        let vars = json!({
            "entity": query.entity,
            "project": query.project,
            "name": query.run,
            "fileCursor": cursor,
            "fileLimit": query.per_page.unwrap_or(self.config().files_page_size),
            "fileNames": query.names,
            "upload": false,
            "pattern": query.pattern,
        });
        let data: Data = self.gql(op.name, op.document(), vars).await?;
        let what = || format!("run {}/{}/{}", query.entity, query.project, query.run);
        let project = data
            .project
            .ok_or_else(|| Error::not_found(op.name, what()))?;
        let run = project
            .run
            .ok_or_else(|| Error::not_found(op.name, what()))?;
        let page = run.files.map(|c| c.into_page(|f| f)).unwrap_or(Page {
            items: Vec::new(),
            last_edge_cursor: None,
            end_cursor: None,
            has_next_page: false,
        });
        Ok(RunFilesPage {
            next_cursor: page.next_cursor(CursorConvention::LastEdge),
            files: page.items,
            file_count: run.file_count,
            project_internal_id: project.internal_id,
            has_next_page: page.has_next_page,
        })
    }

    /// Every file matching `query` (last-edge-cursor pagination).
    pub fn run_files(&self, query: &RunFilesQuery) -> BoxStream<'static, Result<RunFile>> {
        let client = self.clone();
        let query = query.clone();
        let pages = paginate::paginate(
            graphql::RUN_FILES.name,
            CursorConvention::LastEdge,
            self.config().max_pages,
            move |cursor| {
                let client = client.clone();
                let query = query.clone();
                async move {
                    let page = client.run_files_page(&query, cursor).await?;
                    Ok(Page {
                        items: page.files,
                        last_edge_cursor: page.next_cursor.clone(),
                        end_cursor: page.next_cursor,
                        has_next_page: page.has_next_page,
                    })
                }
            },
        );
        paginate::dedupe_by(pages, |f: &RunFile| f.name.clone())
    }

    /// One run file by exact name (`run.file(name)`); `None` when the run has no such file.
    pub async fn run_file(
        &self,
        entity: &str,
        project: &str,
        run: &str,
        name: &str,
    ) -> Result<Option<RunFile>> {
        let query = RunFilesQuery::new(entity, project, run)
            .names([name])
            .per_page(1);
        let page = self.run_files_page(&query, None).await?;
        // The server matches exact names; double-check rather than trust element 0.
        Ok(page.files.into_iter().find(|f| f.name == name))
    }
}
