//! Relay pagination as `futures::Stream`s, with both W&B cursor conventions.
//!
//! - **Last edge cursor** (runs, run files — `wandb/apis/public/runs.py`, `files.py`): the next
//!   request's `after` is `edges[-1].cursor`. On SaaS these cursors are offsets, so listings
//!   should be ordered `+created_at` and de-duplicated by name ([`dedupe_by`]).
//! - **`pageInfo.endCursor`** (projects, artifacts — the SDK's `RelayPaginator`).
//!
//! Both tolerate an empty page with `hasNextPage: true` (SaaS returns those for pages whose rows
//! are hidden from the caller): the scan continues with the other cursor the page offers. A page
//! that offers no new cursor while claiming more pages, or more than `max_pages` pages, ends
//! the stream with [`Error::Pagination`] instead of looping.

use std::collections::HashSet;
use std::future::Future;

use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};

use super::error::{Error, Result};

/// Which cursor continues a listing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CursorConvention {
    /// `edges[-1].cursor` (runs, files).
    LastEdge,
    /// `pageInfo.endCursor` (projects, artifacts).
    EndCursor,
}

/// One fetched page.
#[derive(Clone, Debug)]
pub struct Page<T> {
    /// The items.
    pub items: Vec<T>,
    /// The last edge's cursor, if the page had edges with cursors.
    pub last_edge_cursor: Option<String>,
    /// `pageInfo.endCursor`.
    pub end_cursor: Option<String>,
    /// `pageInfo.hasNextPage`.
    pub has_next_page: bool,
}

impl<T> Page<T> {
    /// The cursor that continues after this page under `convention`, falling back to the other
    /// one (an empty page has no last edge).
    pub fn next_cursor(&self, convention: CursorConvention) -> Option<String> {
        match convention {
            CursorConvention::LastEdge => self
                .last_edge_cursor
                .clone()
                .or_else(|| self.end_cursor.clone()),
            CursorConvention::EndCursor => self
                .end_cursor
                .clone()
                .or_else(|| self.last_edge_cursor.clone()),
        }
    }
}

struct State<F> {
    fetch: F,
    cursor: Option<String>,
    pages: u64,
    done: bool,
}

/// Streams every item of a paginated listing. `fetch(cursor)` fetches one page (`None` = first).
pub fn paginate<T, F, Fut>(
    operation: &'static str,
    convention: CursorConvention,
    max_pages: u64,
    fetch: F,
) -> BoxStream<'static, Result<T>>
where
    T: Send + 'static,
    F: FnMut(Option<String>) -> Fut + Send + 'static,
    Fut: Future<Output = Result<Page<T>>> + Send + 'static,
{
    let state = State {
        fetch,
        cursor: None,
        pages: 0,
        done: false,
    };
    stream::try_unfold(state, move |mut state| async move {
        if state.done {
            return Ok(None);
        }
        if state.pages >= max_pages {
            return Err(Error::Pagination {
                operation: operation.to_owned(),
                message: format!("more than {max_pages} pages; giving up (safety cap)"),
            });
        }
        let page = (state.fetch)(state.cursor.clone()).await?;
        state.pages += 1;
        if page.has_next_page {
            let next = page.next_cursor(convention);
            if next.is_none() || next == state.cursor {
                return Err(Error::Pagination {
                    operation: operation.to_owned(),
                    message: format!(
                        "the server reports more pages after page {} but gives no new cursor",
                        state.pages
                    ),
                });
            }
            state.cursor = next;
        } else {
            state.done = true;
        }
        Ok(Some((page.items, state)))
    })
    .map_ok(|items| stream::iter(items.into_iter().map(Ok)))
    .try_flatten()
    .boxed()
}

/// Drops items whose key was already seen in this stream (offset cursors repeat rows when runs
/// are created during a scan).
pub fn dedupe_by<T, K>(
    items: BoxStream<'static, Result<T>>,
    key: K,
) -> BoxStream<'static, Result<T>>
where
    T: Send + 'static,
    K: Fn(&T) -> String + Send + 'static,
{
    let mut seen = HashSet::new();
    items
        .try_filter(move |item| std::future::ready(seen.insert(key(item))))
        .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    fn page(items: &[u32], last: Option<&str>, end: Option<&str>, more: bool) -> Page<u32> {
        Page {
            items: items.to_vec(),
            last_edge_cursor: last.map(str::to_owned),
            end_cursor: end.map(str::to_owned),
            has_next_page: more,
        }
    }

    type Cursors = Arc<Mutex<Vec<Option<String>>>>;

    fn scripted(
        pages: Vec<Page<u32>>,
        convention: CursorConvention,
        max_pages: u64,
    ) -> (BoxStream<'static, Result<u32>>, Cursors) {
        let cursors = Arc::new(Mutex::new(Vec::new()));
        let seen = cursors.clone();
        let pages = Arc::new(Mutex::new(pages.into_iter()));
        let stream = paginate("Test", convention, max_pages, move |cursor| {
            seen.lock().unwrap().push(cursor);
            let next = pages.lock().unwrap().next();
            async move { next.ok_or_else(|| Error::config("script exhausted")) }
        });
        (stream, cursors)
    }

    #[tokio::test]
    async fn last_edge_vs_end_cursor() {
        let pages = || {
            vec![
                page(&[1, 2], Some("e2"), Some("p1"), true),
                page(&[3], Some("e3"), Some("p2"), false),
            ]
        };
        let (s, cursors) = scripted(pages(), CursorConvention::LastEdge, 10);
        assert_eq!(s.try_collect::<Vec<_>>().await.unwrap(), vec![1, 2, 3]);
        assert_eq!(*cursors.lock().unwrap(), vec![None, Some("e2".into())]);
        let (s, cursors) = scripted(pages(), CursorConvention::EndCursor, 10);
        assert_eq!(s.try_collect::<Vec<_>>().await.unwrap(), vec![1, 2, 3]);
        assert_eq!(*cursors.lock().unwrap(), vec![None, Some("p1".into())]);
    }

    #[tokio::test]
    async fn empty_page_with_more_does_not_end_the_scan() {
        let pages = vec![
            page(&[1], Some("1"), Some("1"), true),
            page(&[], None, Some("50"), true),
            page(&[2], Some("51"), Some("51"), false),
        ];
        let (s, cursors) = scripted(pages, CursorConvention::LastEdge, 10);
        assert_eq!(s.try_collect::<Vec<_>>().await.unwrap(), vec![1, 2]);
        assert_eq!(cursors.lock().unwrap()[2], Some("50".into()));
    }

    #[tokio::test]
    async fn no_progress_and_page_cap_are_errors() {
        let pages = vec![
            page(&[1], Some("a"), None, true),
            page(&[], None, None, true),
        ];
        let (s, _) = scripted(pages, CursorConvention::LastEdge, 10);
        let err = s.try_collect::<Vec<_>>().await.unwrap_err();
        assert!(matches!(err, Error::Pagination { .. }), "{err}");

        let endless: Vec<_> = (0..100)
            .map(|i| page(&[i], Some(&i.to_string()), None, true))
            .collect();
        let (s, cursors) = scripted(endless, CursorConvention::LastEdge, 5);
        let err = s.try_collect::<Vec<_>>().await.unwrap_err();
        assert!(err.to_string().contains("safety cap"), "{err}");
        assert_eq!(cursors.lock().unwrap().len(), 5);
    }

    #[tokio::test]
    async fn dedupe_drops_repeats() {
        let pages = vec![
            page(&[1, 2], Some("2"), None, true),
            page(&[2, 3], Some("4"), None, false),
        ];
        let (s, _) = scripted(pages, CursorConvention::LastEdge, 10);
        let s = dedupe_by(s, |v| v.to_string());
        assert_eq!(s.try_collect::<Vec<_>>().await.unwrap(), vec![1, 2, 3]);
    }
}
