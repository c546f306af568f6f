//! Viewer, projects and runs.

use futures::stream::BoxStream;
use serde::Deserialize;
use serde_json::json;

use super::Client;
use super::error::{Error, Result};
use super::graphql;
use super::paginate::{self, CursorConvention, Page};
use super::types::{Project, Run, RunFields, RunsPage, Viewer, lenient_i64};

/// A run listing request (`Runs`).
#[derive(Clone, Debug)]
pub struct RunsQuery {
    /// Entity.
    pub entity: String,
    /// Project.
    pub project: String,
    /// Mongo-style filter document as JSON text (e.g. `{"state": "running"}`); `None` = `{}`.
    pub filters: Option<String>,
    /// Order key, `+`/`-` prefixed. Default `+created_at`: W&B's run cursors are offsets, and
    /// only an order that new runs append to keeps a scan stable.
    pub order: String,
    /// Page size (`perPage`). Default: [`ClientConfig::runs_page_size`](super::ClientConfig).
    pub per_page: Option<u32>,
    /// Which fragment to select.
    pub fields: RunFields,
    /// Also select `updatedAt` (the SDK never does; opt-in, see [`graphql::with_updated_at`]).
    pub include_updated_at: bool,
}

impl RunsQuery {
    /// All runs of a project, lightweight fields, ordered `+created_at`.
    pub fn new(entity: impl Into<String>, project: impl Into<String>) -> Self {
        RunsQuery {
            entity: entity.into(),
            project: project.into(),
            filters: None,
            order: "+created_at".to_owned(),
            per_page: None,
            fields: RunFields::Lightweight,
            include_updated_at: false,
        }
    }

    /// Sets the filter document (JSON text).
    pub fn filters(mut self, filters: impl Into<String>) -> Self {
        self.filters = Some(filters.into());
        self
    }

    /// Sets the order.
    pub fn order(mut self, order: impl Into<String>) -> Self {
        self.order = order.into();
        self
    }

    /// Selects the full `RunFragment`.
    pub fn full(mut self) -> Self {
        self.fields = RunFields::Full;
        self
    }

    /// Also selects `updatedAt`.
    pub fn with_updated_at(mut self) -> Self {
        self.include_updated_at = true;
        self
    }

    /// Sets the page size.
    pub fn per_page(mut self, per_page: u32) -> Self {
        self.per_page = Some(per_page);
        self
    }
}

fn run_document(fields: RunFields, updated_at: bool, listing: bool) -> graphql::Document {
    let op = match (listing, fields) {
        (true, RunFields::Lightweight) => graphql::RUNS_LIGHTWEIGHT,
        (true, RunFields::Full) => graphql::RUNS_FULL,
        (false, RunFields::Lightweight) => graphql::RUN_LIGHTWEIGHT,
        (false, RunFields::Full) => graphql::RUN_FULL,
    };
    if updated_at {
        graphql::with_updated_at(op.document()).into()
    } else {
        op.document().into()
    }
}

#[derive(Deserialize)]
#[serde(bound(deserialize = "N: Deserialize<'de>"))]
struct EdgeWire<N> {
    node: Option<N>,
    #[serde(default)]
    cursor: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PageInfoWire {
    #[serde(default)]
    pub(crate) end_cursor: Option<String>,
    #[serde(default)]
    pub(crate) has_next_page: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", bound(deserialize = "N: Deserialize<'de>"))]
pub(crate) struct ConnectionWire<N> {
    #[serde(default)]
    edges: Option<Vec<EdgeWire<N>>>,
    page_info: Option<PageInfoWire>,
}

impl<N> ConnectionWire<N> {
    pub(crate) fn into_page<T>(self, convert: impl Fn(N) -> T) -> Page<T> {
        let edges = self.edges.unwrap_or_default();
        let last_edge_cursor = edges.last().and_then(|e| e.cursor.clone());
        let (end_cursor, has_next_page) = self
            .page_info
            .map_or((None, false), |p| (p.end_cursor, p.has_next_page));
        Page {
            items: edges
                .into_iter()
                .filter_map(|e| e.node)
                .map(convert)
                .collect(),
            last_edge_cursor,
            end_cursor,
            has_next_page,
        }
    }
}

#[derive(Deserialize)]
struct UserWire {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    entity: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    admin: Option<bool>,
    #[serde(default)]
    teams: Option<ConnectionWire<TeamWire>>,
}

#[derive(Deserialize)]
struct TeamWire {
    name: String,
}

impl From<UserWire> for Viewer {
    fn from(u: UserWire) -> Viewer {
        Viewer {
            id: u.id,
            entity: u.entity,
            username: u.username,
            email: u.email,
            name: u.name,
            admin: u.admin,
            teams: u
                .teams
                .map(|t| t.into_page(|team| team.name).items)
                .unwrap_or_default(),
        }
    }
}

impl Client {
    /// `Viewer` (what wandb-core sends at login): id, entity, username, email, teams.
    /// A null viewer (SaaS answers a bad key with HTTP 200 and `viewer: null`) is
    /// [`Error::Unauthenticated`].
    pub async fn viewer(&self) -> Result<Viewer> {
        self.viewer_with(graphql::VIEWER).await
    }

    /// `GetViewer` (`Api.viewer`): adds name and admin.
    pub async fn get_viewer(&self) -> Result<Viewer> {
        self.viewer_with(graphql::GET_VIEWER).await
    }

    async fn viewer_with(&self, op: graphql::Operation) -> Result<Viewer> {
        #[derive(Deserialize)]
        struct Data {
            viewer: Option<UserWire>,
        }
        let data: Data = self.gql(op.name, op.document(), json!({})).await?;
        data.viewer
            .map(Viewer::from)
            .ok_or_else(|| Error::Unauthenticated {
                operation: op.name.to_owned(),
                message: "the server did not recognize an account for these credentials \
                      (viewer is null)"
                    .to_owned(),
            })
    }

    /// One page of an entity's projects (`GetProjects`, root field `models`).
    pub async fn projects_page(
        &self,
        entity: &str,
        cursor: Option<String>,
        per_page: u32,
    ) -> Result<Page<Project>> {
        #[derive(Deserialize)]
        struct Data {
            models: Option<ConnectionWire<Project>>,
        }
        let op = graphql::GET_PROJECTS;
        let vars = json!({"entity": entity, "cursor": cursor, "perPage": per_page});
        let data: Data = self.gql(op.name, op.document(), vars).await?;
        let models = data
            .models
            .ok_or_else(|| Error::not_found(op.name, format!("entity {entity}")))?;
        Ok(models.into_page(|p| p))
    }

    /// All projects of an entity (`endCursor` pagination).
    pub fn projects(&self, entity: &str) -> BoxStream<'static, Result<Project>> {
        let client = self.clone();
        let entity = entity.to_owned();
        let per_page = self.config().artifacts_page_size;
        paginate::paginate(
            graphql::GET_PROJECTS.name,
            CursorConvention::EndCursor,
            self.config().max_pages,
            move |cursor| {
                let client = client.clone();
                let entity = entity.clone();
                async move { client.projects_page(&entity, cursor, per_page).await }
            },
        )
    }

    /// One project (`GetProject`); `None` when it does not exist.
    pub async fn project(&self, entity: &str, project: &str) -> Result<Option<Project>> {
        #[derive(Deserialize)]
        struct Data {
            project: Option<Project>,
        }
        let op = graphql::GET_PROJECT;
        let vars = json!({"entity": entity, "name": project});
        let data: Data = self.gql(op.name, op.document(), vars).await?;
        Ok(data.project)
    }

    /// One page of runs (`Runs`), for callers that keep their own cursor (e.g. a resumable
    /// sync). A missing project is [`Error::NotFound`].
    pub async fn runs_page(&self, query: &RunsQuery, cursor: Option<String>) -> Result<RunsPage> {
        #[derive(Deserialize)]
        struct Data {
            project: Option<ProjectWire>,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct ProjectWire {
            #[serde(default, deserialize_with = "lenient_i64")]
            internal_id: Option<i64>,
            #[serde(default, deserialize_with = "lenient_i64")]
            run_count: Option<i64>,
            runs: Option<ConnectionWire<Run>>,
        }
        let op = graphql::RUNS_LIGHTWEIGHT.name;
        let document = run_document(query.fields, query.include_updated_at, true);
        let vars = json!({
            "project": query.project,
            "entity": query.entity,
            "cursor": cursor,
            "perPage": query.per_page.unwrap_or(self.config().runs_page_size),
            "order": query.order,
            "filters": query.filters.as_deref().unwrap_or("{}"),
        });
        let data: Data = self.gql(op, &document, vars).await?;
        let project = data.project.ok_or_else(|| {
            Error::not_found(op, format!("project {}/{}", query.entity, query.project))
        })?;
        let page = project.runs.map(|c| c.into_page(|r| r)).unwrap_or(Page {
            items: Vec::new(),
            last_edge_cursor: None,
            end_cursor: None,
            has_next_page: false,
        });
        let next_cursor = page.next_cursor(CursorConvention::LastEdge);
        Ok(RunsPage {
            runs: page.items,
            run_count: project.run_count,
            project_internal_id: project.internal_id,
            next_cursor,
            has_next_page: page.has_next_page,
        })
    }

    /// Every run matching `query`, de-duplicated by run name within the scan (W&B's offset
    /// cursors repeat rows when runs are created mid-scan; see `SAAS-NOTES.md` §4).
    pub fn runs(&self, query: &RunsQuery) -> BoxStream<'static, Result<Run>> {
        let client = self.clone();
        let query = query.clone();
        let pages = paginate::paginate(
            graphql::RUNS_LIGHTWEIGHT.name,
            CursorConvention::LastEdge,
            self.config().max_pages,
            move |cursor| {
                let client = client.clone();
                let query = query.clone();
                async move {
                    let page = client.runs_page(&query, cursor).await?;
                    Ok(Page {
                        items: page.runs,
                        last_edge_cursor: page.next_cursor.clone(),
                        end_cursor: page.next_cursor,
                        has_next_page: page.has_next_page,
                    })
                }
            },
        );
        paginate::dedupe_by(pages, |run: &Run| run.name.clone())
    }

    /// One run (`Run`); `None` when it (or its project) does not exist.
    pub async fn run(
        &self,
        entity: &str,
        project: &str,
        run: &str,
        fields: RunFields,
        include_updated_at: bool,
    ) -> Result<Option<Run>> {
        #[derive(Deserialize)]
        struct Data {
            project: Option<ProjectRun>,
        }
        #[derive(Deserialize)]
        struct ProjectRun {
            run: Option<Run>,
        }
        let document = run_document(fields, include_updated_at, false);
        let vars = json!({"entity": entity, "project": project, "name": run});
        let data: Data = self.gql(graphql::RUN_FULL.name, &document, vars).await?;
        Ok(data.project.and_then(|p| p.run))
    }

    /// The run's state (`RunState`); `Ok(None)` when the server has no state for it,
    /// [`Error::NotFound`] when the run does not exist.
    pub async fn run_state(
        &self,
        entity: &str,
        project: &str,
        run: &str,
    ) -> Result<Option<String>> {
        #[derive(Deserialize)]
        struct Data {
            project: Option<ProjectRun>,
        }
        #[derive(Deserialize)]
        struct ProjectRun {
            run: Option<State>,
        }
        #[derive(Deserialize)]
        struct State {
            state: Option<String>,
        }
        let op = graphql::RUN_STATE;
        let vars = json!({"entity": entity, "project": project, "name": run});
        let data: Data = self.gql(op.name, op.document(), vars).await?;
        let run_wire = data
            .project
            .and_then(|p| p.run)
            .ok_or_else(|| Error::not_found(op.name, format!("run {entity}/{project}/{run}")))?;
        Ok(run_wire.state)
    }
}
