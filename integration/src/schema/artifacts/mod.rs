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

pub use collections::CollectionMutations;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::decode_cursor;

    #[test]
    fn pages_follow_end_cursors_to_the_end() {
        let items: Vec<u32> = (0..7).collect();
        let mut seen = Vec::new();
        let mut after: Option<String> = None;
        let mut pages = 0;
        loop {
            let p = paginate(items.clone(), after.as_deref(), Some(3), 100);
            pages += 1;
            assert_eq!(p.total, 7);
            assert_eq!(p.page_info.has_previous_page, after.is_some());
            seen.extend(p.items.iter().map(|(_, v)| *v));
            // The end cursor is the last edge's cursor.
            assert_eq!(
                p.page_info.end_cursor,
                p.items.last().map(|(c, _)| c.clone())
            );
            if !p.page_info.has_next_page {
                break;
            }
            after = p.page_info.end_cursor;
        }
        assert_eq!(seen, items);
        assert_eq!(pages, 3);
        // Past the end: empty page, no next page; `first` is capped.
        let end = paginate(
            items.clone(),
            Some(&crate::query::encode_cursor(6)),
            Some(3),
            100,
        );
        assert!(end.items.is_empty() && !end.page_info.has_next_page);
        let capped = paginate(items.clone(), None, Some(1000), 2);
        assert_eq!(capped.items.len(), 2);
        assert!(capped.page_info.has_next_page);
        assert_eq!(decode_cursor(&capped.items[1].0), Some(1));
        // Default page size is 50.
        let many: Vec<u32> = (0..120).collect();
        assert_eq!(paginate(many, None, None, 10_000).items.len(), 50);
    }
}
