//! The GraphQL schema, reconstructed from the documents the 0.31.0 SDK sends.
//!
//! # Extension points
//!
//! The root types and the shared object types are async-graphql `MergedObject`s, so another
//! module (artifacts) contributes fields without touching these resolvers:
//!
//! - [`QueryRoot`] / [`MutationRoot`]: add a `#[derive(Default)]` struct with an `#[Object]`
//!   impl to the tuple.
//! - [`ProjectObject`], [`RunObject`], [`FileObject`]: add a part built from the same handle
//!   ([`ProjectRef`], [`RunHandle`], [`FileView`]) to the tuple and to the `new` constructor.
//!   Parts must not define the same field twice.
//! - [`PageInfo`] and [`FileConnection`] are shared with artifact listings.

pub mod artifacts;
pub mod files;
pub mod history;
pub mod mutations;
pub mod project;
pub mod run;
pub mod scalars;
pub mod splice;
pub mod viewer;

use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};

use async_graphql::{Context, EmptySubscription, MergedObject, Schema, SimpleObject};

pub use files::{FileConnection, FileEdge, FileView};
pub use project::ProjectRef;

use crate::app::AppState;
use crate::state::RunHandle;

/// The emulator's executable schema.
pub type EmulatorSchema = Schema<QueryRoot, MutationRoot, EmptySubscription>;

/// `Query`.
#[derive(MergedObject, Default)]
#[graphql(name = "Query")]
pub struct QueryRoot(
    viewer::ViewerQuery,
    project::ProjectQuery,
    artifacts::ArtifactQuery,
);

/// `Mutation`.
#[derive(MergedObject, Default)]
#[graphql(name = "Mutation")]
pub struct MutationRoot(
    mutations::RunMutations,
    artifacts::ArtifactMutations,
    artifacts::CollectionMutations,
);

/// `Project`.
#[derive(MergedObject)]
#[graphql(name = "Project")]
pub struct ProjectObject(project::ProjectFields, artifacts::ProjectArtifactFields);

impl ProjectObject {
    /// A project object for `project`.
    pub fn new(project: ProjectRef) -> Self {
        Self(
            project::ProjectFields(project.clone()),
            artifacts::ProjectArtifactFields(project),
        )
    }
}

/// `Run`.
#[derive(MergedObject)]
#[graphql(name = "Run")]
pub struct RunObject(
    run::RunFields,
    history::RunHistoryFields,
    files::RunFileFields,
    artifacts::RunArtifactFields,
);

impl RunObject {
    /// A run object for `run`.
    pub fn new(run: RunHandle) -> Self {
        Self(
            run::RunFields(Arc::clone(&run)),
            history::RunHistoryFields(Arc::clone(&run)),
            files::RunFileFields(Arc::clone(&run)),
            artifacts::RunArtifactFields(run),
        )
    }
}

/// `File` (run files; artifact files reuse it through [`FileView::extra`]).
#[derive(MergedObject)]
#[graphql(name = "File")]
pub struct FileObject(files::FileFields, artifacts::FileArtifactFields);

impl FileObject {
    /// A file object for `view`.
    pub fn new(view: FileView) -> Self {
        let view = Arc::new(view);
        Self(
            files::FileFields(Arc::clone(&view)),
            artifacts::FileArtifactFields(view),
        )
    }
}

/// `PageInfo`, shared by every connection.
#[derive(SimpleObject, Clone, Debug, Default)]
pub struct PageInfo {
    /// Cursor of the first edge.
    pub start_cursor: Option<String>,
    /// Cursor of the last edge.
    pub end_cursor: Option<String>,
    /// Whether more edges follow.
    pub has_next_page: bool,
    /// Whether edges precede.
    pub has_previous_page: bool,
}

/// Per-request hints from resolvers to the HTTP layer.
#[derive(Debug, Default)]
pub struct ResponseHints {
    status: AtomicU16,
}

impl ResponseHints {
    /// Forces the HTTP status of the response (e.g. 502 for a poisoned run).
    pub fn force_status(&self, status: u16) {
        self.status.store(status, Ordering::Relaxed);
    }

    /// The forced status, if any.
    pub fn forced_status(&self) -> Option<u16> {
        match self.status.load(Ordering::Relaxed) {
            0 => None,
            s => Some(s),
        }
    }
}

/// The application state from a resolver context.
pub fn app<'a>(ctx: &Context<'a>) -> &'a Arc<AppState> {
    ctx.data_unchecked::<Arc<AppState>>()
}

/// Builds the schema over `app`.
pub fn build(app: Arc<AppState>) -> EmulatorSchema {
    Schema::build(
        QueryRoot::default(),
        MutationRoot::default(),
        EmptySubscription,
    )
    .data(app)
    .finish()
}
