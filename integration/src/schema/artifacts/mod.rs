//! GraphQL for artifacts, reconstructed from the 0.31.0 SDK's documents
//! (`wandb/sdk/artifacts/_generated/operations.py`, `core/api/graphql/*artifact*.graphql`) and
//! the pydantic models that validate the answers (`__typename` literals, required fields).
//!
//! - [`types`]: `Artifact`, `ArtifactCollectionMembership`, `ArtifactAlias`, `Tag`,
//!   `ArtifactManifest`, and artifact files as `File`s.
//! - [`collections`]: `ArtifactType`, `ArtifactSequence` and the `ArtifactCollection` interface.
//! - [`parts`]: the fields artifacts add to `Project`, `Run`, `File` and `Query`.
//! - [`mutations`]: the `log_artifact` write path, aliases, `useArtifact`, updates, deletes.
//!
//! State lives in [`crate::artifacts`]; objects here carry small snapshots and look the rest up
//! when a field is resolved.

pub mod collections;
pub mod mutations;
pub mod parts;
pub mod types;

use async_graphql::Context;

use super::{PageInfo, ProjectObject, ProjectRef, app};
use crate::app::AppState;
use crate::query::{encode_cursor, page};

pub use collections::{ArtifactCollectionIface, ArtifactSequenceObj, ArtifactTypeObj};
pub use mutations::ArtifactMutations;
pub use parts::{ArtifactQuery, FileArtifactFields, ProjectArtifactFields, RunArtifactFields};
pub use types::{ArtifactObj, MembershipObj};

/// One page of a list, with offset cursors (`pageInfo.endCursor` pagination).
pub(crate) struct Paged<T> {
    /// Items with their cursors.
    pub items: Vec<(String, T)>,
    /// Page info.
    pub page_info: PageInfo,
    /// Items before paging.
    pub total: i64,
}

/// Applies `after`/`first` to `items`.
pub(crate) fn paginate<T>(
    items: Vec<T>,
    after: Option<&str>,
    first: Option<i32>,
    max_first: usize,
) -> Paged<T> {
    let total = items.len();
    let p = page(total, after, first, max_first);
    let items: Vec<(String, T)> = items
        .into_iter()
        .enumerate()
        .skip(p.start)
        .take(p.end - p.start)
        .map(|(i, item)| (encode_cursor(i as u64), item))
        .collect();
    Paged {
        page_info: PageInfo {
            start_cursor: items.first().map(|(c, _)| c.clone()),
            end_cursor: items.last().map(|(c, _)| c.clone()),
            has_next_page: p.has_next,
            has_previous_page: p.start > 0,
        },
        items,
        total: total as i64,
    }
}

/// The `Project` object of an entity/project, if it exists in the run world.
pub(crate) fn project_object(app: &AppState, entity: &str, project: &str) -> Option<ProjectObject> {
    let world = app.world.read();
    world
        .project(entity, project)
        .map(|p| ProjectObject::new(ProjectRef::from_record(p)))
}

/// The largest page the artifact listings honour.
pub(crate) fn max_page(ctx: &Context<'_>) -> usize {
    app(ctx).max_page_size.max(10_000)
}
