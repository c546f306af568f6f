//! `models`, `project`, `model` and the `Project` type's run listing (`runs`, `runCount`,
//! `run`, `bucket`).

use async_graphql::{Context, ID, Object, Result, SimpleObject};

use super::scalars::{DateTime, JsonString};
use super::viewer::{EntityObject, User, viewer_user};
use super::{PageInfo, ProjectObject, RunObject, app};
use crate::query::filters::Filter;
use crate::query::{Order, encode_cursor, page, sort_runs};
use crate::state::{Micros, ProjectRecord, RunHandle};

/// A project's identity (a cheap snapshot; runs are looked up live).
#[derive(Debug, Clone)]
pub struct ProjectRef {
    /// Entity name.
    pub entity: String,
    /// Project name.
    pub name: String,
    /// Numeric id.
    pub internal_id: u64,
    /// `Project.id`.
    pub id: String,
    /// Creation time.
    pub created_at: Micros,
    /// Description.
    pub description: Option<String>,
}

impl ProjectRef {
    /// From a stored project.
    pub fn from_record(p: &ProjectRecord) -> Self {
        Self {
            entity: p.entity.clone(),
            name: p.name.clone(),
            internal_id: p.internal_id,
            id: p.graphql_id(),
            created_at: p.created_at,
            description: p.description.clone(),
        }
    }
}

/// `ProjectEdge`.
#[derive(SimpleObject)]
pub struct ProjectEdge {
    /// The project.
    pub node: Option<ProjectObject>,
    /// Offset cursor.
    pub cursor: String,
}

/// `ProjectConnection` (paginated by `pageInfo.endCursor`).
#[derive(SimpleObject)]
pub struct ProjectConnection {
    /// Edges.
    pub edges: Vec<ProjectEdge>,
    /// Page info.
    pub page_info: PageInfo,
}

/// `RunEdge`.
#[derive(SimpleObject)]
pub struct RunEdge {
    /// The run.
    pub node: RunObject,
    /// Offset cursor (the SDK pages with the last edge's cursor).
    pub cursor: String,
}

/// `RunConnection`.
#[derive(SimpleObject)]
pub struct RunConnection {
    /// Edges.
    pub edges: Vec<RunEdge>,
    /// Page info.
    pub page_info: PageInfo,
    /// Matching runs.
    pub total_count: i64,
}

/// Root fields for projects.
#[derive(Default)]
pub struct ProjectQuery;

fn find_project(
    ctx: &Context<'_>,
    name: Option<String>,
    entity: Option<String>,
) -> Option<ProjectObject> {
    let app = app(ctx);
    let world = app.world.read();
    let entity = entity.unwrap_or_else(|| world.viewer.entity.clone());
    let project = world.project(&entity, name.as_deref()?)?;
    Some(ProjectObject::new(ProjectRef::from_record(project)))
}

#[Object]
impl ProjectQuery {
    /// Projects of an entity (default: the viewer's), newest first.
    async fn models(
        &self,
        ctx: &Context<'_>,
        entity_name: Option<String>,
        after: Option<String>,
        first: Option<i32>,
    ) -> Option<ProjectConnection> {
        let app = app(ctx);
        let world = app.world.read();
        let entity = entity_name.unwrap_or_else(|| world.viewer.entity.clone());
        let mut projects: Vec<ProjectRef> = world
            .entity(&entity)
            .map(|e| e.projects.values().map(ProjectRef::from_record).collect())
            .unwrap_or_default();
        projects.sort_by(|a, b| {
            b.created_at
                .cmp(&a.created_at)
                .then(a.internal_id.cmp(&b.internal_id))
        });
        let p = page(projects.len(), after.as_deref(), first, app.max_page_size);
        let edges: Vec<ProjectEdge> = projects[p.start..p.end]
            .iter()
            .enumerate()
            .map(|(i, proj)| ProjectEdge {
                node: Some(ProjectObject::new(proj.clone())),
                cursor: encode_cursor((p.start + i) as u64),
            })
            .collect();
        Some(ProjectConnection {
            page_info: PageInfo {
                start_cursor: edges.first().map(|e| e.cursor.clone()),
                end_cursor: edges.last().map(|e| e.cursor.clone()),
                has_next_page: p.has_next,
                has_previous_page: p.start > 0,
            },
            edges,
        })
    }

    /// A project by name (null when missing).
    async fn project(
        &self,
        ctx: &Context<'_>,
        name: Option<String>,
        entity_name: Option<String>,
    ) -> Option<ProjectObject> {
        find_project(ctx, name, entity_name)
    }

    /// Legacy alias of `project` (used by `RunResumeStatus`).
    async fn model(
        &self,
        ctx: &Context<'_>,
        name: Option<String>,
        entity_name: Option<String>,
    ) -> Option<ProjectObject> {
        find_project(ctx, name, entity_name)
    }
}

/// Core fields of `Project`.
pub struct ProjectFields(pub ProjectRef);

impl ProjectFields {
    fn runs_matching(&self, ctx: &Context<'_>, filters: Option<&str>) -> Result<Vec<RunHandle>> {
        let filter = Filter::parse(filters)?;
        let runs = app(ctx).world.read().runs(&self.0.entity, &self.0.name);
        Ok(runs
            .into_iter()
            .filter(|r| filter.matches(&r.key, &r.record.read()))
            .collect())
    }
}

#[Object]
impl ProjectFields {
    async fn id(&self) -> ID {
        ID(self.0.id.clone())
    }

    async fn internal_id(&self) -> ID {
        ID(self.0.internal_id.to_string())
    }

    async fn name(&self) -> &str {
        &self.0.name
    }

    async fn entity_name(&self) -> &str {
        &self.0.entity
    }

    async fn entity(&self, ctx: &Context<'_>) -> Option<EntityObject> {
        app(ctx)
            .world
            .read()
            .entity(&self.0.entity)
            .map(EntityObject::from_record)
    }

    async fn created_at(&self) -> DateTime {
        DateTime::from_micros(self.0.created_at)
    }

    async fn is_benchmark(&self) -> bool {
        false
    }

    async fn read_only(&self) -> bool {
        false
    }

    async fn description(&self) -> Option<&str> {
        self.0.description.as_deref()
    }

    async fn access(&self) -> &str {
        "PRIVATE"
    }

    async fn views(&self) -> JsonString {
        JsonString("{}".into())
    }

    async fn user(&self, ctx: &Context<'_>) -> Option<User> {
        Some(viewer_user(&app(ctx).world.read(), 0))
    }

    /// Number of runs (matching `filters` when given).
    async fn run_count(&self, ctx: &Context<'_>, filters: Option<JsonString>) -> Result<i64> {
        Ok(self
            .runs_matching(ctx, filters.as_ref().map(|f| f.0.as_str()))?
            .len() as i64)
    }

    /// Number of runs.
    async fn total_runs(&self, ctx: &Context<'_>) -> i64 {
        app(ctx)
            .world
            .read()
            .runs(&self.0.entity, &self.0.name)
            .len() as i64
    }

    /// Runs matching `filters`, sorted by `order` (default `+created_at`), paginated by offset
    /// cursors (`after` = the last edge's cursor).
    async fn runs(
        &self,
        ctx: &Context<'_>,
        filters: Option<JsonString>,
        after: Option<String>,
        first: Option<i32>,
        order: Option<String>,
    ) -> Result<RunConnection> {
        let mut runs = self.runs_matching(ctx, filters.as_ref().map(|f| f.0.as_str()))?;
        sort_runs(&mut runs, &Order::parse(order.as_deref()));
        let p = page(runs.len(), after.as_deref(), first, app(ctx).max_page_size);
        let total = runs.len() as i64;
        let edges: Vec<RunEdge> = runs
            .drain(p.start..p.end)
            .enumerate()
            .map(|(i, run)| RunEdge {
                node: RunObject::new(run),
                cursor: encode_cursor((p.start + i) as u64),
            })
            .collect();
        Ok(RunConnection {
            page_info: PageInfo {
                start_cursor: edges.first().map(|e| e.cursor.clone()),
                end_cursor: edges.last().map(|e| e.cursor.clone()),
                has_next_page: p.has_next,
                has_previous_page: p.start > 0,
            },
            edges,
            total_count: total,
        })
    }

    /// A run by name (its id), null when missing.
    async fn run(&self, ctx: &Context<'_>, name: Option<String>) -> Option<RunObject> {
        app(ctx)
            .run(&self.0.entity, &self.0.name, &name?)
            .map(RunObject::new)
    }

    /// Legacy alias of `run` (used by `RunResumeStatus`; `missingOk` has no effect: missing runs
    /// are null either way).
    async fn bucket(
        &self,
        ctx: &Context<'_>,
        name: Option<String>,
        missing_ok: Option<bool>,
    ) -> Option<RunObject> {
        let _ = missing_ok;
        app(ctx)
            .run(&self.0.entity, &self.0.name, &name?)
            .map(RunObject::new)
    }
}
