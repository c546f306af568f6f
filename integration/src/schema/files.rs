//! The `File` type, file connections, and `Run.files` / `Run.fileCount`.

use std::any::Any;
use std::sync::Arc;

use async_graphql::{Context, ID, Object, SimpleObject};

use super::scalars::{DateTime, Int64};
use super::{FileObject, PageInfo, app};
use crate::app::AppState;
use crate::blobs::Blob;
use crate::query::{encode_cursor, page};
use crate::state::{RunFile, RunHandle, RunKey, file_id};

/// What a `File` object shows. Run files fill the common fields; extension modules (artifacts)
/// can attach their own data in `extra` and read it from their `File` fields.
#[derive(Clone, Default)]
pub struct FileView {
    /// `File.id`.
    pub id: String,
    /// Name (run-relative path).
    pub name: String,
    /// Size in bytes.
    pub size: Option<u64>,
    /// MIME type.
    pub mimetype: Option<String>,
    /// Last update (µs).
    pub updated_at: Option<i64>,
    /// Content, for `md5`.
    pub blob: Option<Arc<Blob>>,
    /// Authenticated download URL (`url`).
    pub url: Option<String>,
    /// Signed upload URL (`url(upload: true)`, `uploadUrl`).
    pub upload_url: Option<String>,
    /// Signed direct URL (`directUrl`).
    pub direct_url: Option<String>,
    /// Extension data.
    pub extra: Option<Arc<dyn Any + Send + Sync>>,
}

impl std::fmt::Debug for FileView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileView")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl FileView {
    /// The view of a stored run file.
    pub fn for_run_file(app: &AppState, run: &RunKey, file: &RunFile) -> Self {
        let blob = app.blobs.get(&file.blob);
        Self {
            id: file_id(run, &file.name),
            name: file.name.clone(),
            size: Some(file.size),
            mimetype: Some(file.mimetype.clone()),
            updated_at: Some(file.updated_at),
            direct_url: blob.as_ref().map(|b| app.direct_blob_url(b, &file.name)),
            blob,
            url: Some(app.run_file_url(run, &file.name)),
            upload_url: Some(app.run_file_upload_url(run, &file.name)),
            extra: None,
        }
    }
}

/// Common fields of `File`.
pub struct FileFields(pub Arc<FileView>);

impl FileFields {
    /// The view (for extension parts built on the same data).
    pub fn view(&self) -> &FileView {
        &self.0
    }
}

#[Object]
impl FileFields {
    async fn id(&self) -> ID {
        ID(self.0.id.clone())
    }

    async fn name(&self) -> &str {
        &self.0.name
    }

    /// Download URL (authenticated, on the API host); with `upload: true` a signed upload URL.
    async fn url(&self, upload: Option<bool>) -> Option<&str> {
        if upload == Some(true) {
            self.0.upload_url.as_deref()
        } else {
            self.0.url.as_deref()
        }
    }

    /// Signed upload URL.
    async fn upload_url(&self) -> Option<&str> {
        self.0.upload_url.as_deref()
    }

    /// Signed, unauthenticated URL on the direct listener; expires after the configured TTL.
    async fn direct_url(&self) -> Option<&str> {
        self.0.direct_url.as_deref()
    }

    async fn size_bytes(&self) -> Option<Int64> {
        self.0.size.map(|s| Int64(s as i64))
    }

    async fn mimetype(&self) -> Option<&str> {
        self.0.mimetype.as_deref()
    }

    async fn updated_at(&self) -> Option<DateTime> {
        self.0.updated_at.map(DateTime::from_micros)
    }

    /// Base64 MD5 of the content (computed once for generated blobs).
    async fn md5(&self) -> Option<String> {
        let blob = self.0.blob.clone()?;
        if blob.md5_is_cached() {
            return Some(blob.md5_base64());
        }
        // Digests are fixed at registration; only a blob restored from an old snapshot without
        // one is hashed here (up to 64 MiB): keep the async workers free meanwhile.
        Some(tokio::task::block_in_place(|| blob.md5_base64()))
    }
}

/// `FileEdge`.
#[derive(SimpleObject)]
pub struct FileEdge {
    /// The file.
    pub node: Option<FileObject>,
    /// Offset cursor.
    pub cursor: String,
}

/// `FileConnection`.
#[derive(SimpleObject)]
pub struct FileConnection {
    /// Edges.
    pub edges: Vec<FileEdge>,
    /// Page info.
    pub page_info: PageInfo,
    /// Matching files.
    pub total_count: i64,
}

impl FileConnection {
    /// One page (`after`/`first`) of `views`, with offset cursors.
    pub fn paginate(
        views: Vec<FileView>,
        after: Option<&str>,
        first: Option<i32>,
        max_first: usize,
    ) -> Self {
        let total = views.len();
        let p = page(total, after, first, max_first);
        let edges: Vec<FileEdge> = views
            .into_iter()
            .enumerate()
            .skip(p.start)
            .take(p.end - p.start)
            .map(|(i, v)| FileEdge {
                node: Some(FileObject::new(v)),
                cursor: encode_cursor(i as u64),
            })
            .collect();
        FileConnection {
            page_info: PageInfo {
                start_cursor: edges.first().map(|e| e.cursor.clone()),
                end_cursor: edges.last().map(|e| e.cursor.clone()),
                has_next_page: p.has_next,
                has_previous_page: p.start > 0,
            },
            edges,
            total_count: total as i64,
        }
    }
}

/// SQL `LIKE`: `%` any run, `_` one character, `\` escapes.
pub fn sql_like(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    // dp[j]: pattern[..i] matches text[..j].
    let mut dp = vec![false; t.len() + 1];
    dp[0] = true;
    let mut i = 0;
    while i < p.len() {
        let (c, literal, width) = match p[i] {
            '\\' if i + 1 < p.len() => (p[i + 1], true, 2),
            c => (c, false, 1),
        };
        let mut next = vec![false; t.len() + 1];
        if c == '%' && !literal {
            let mut any = false;
            for j in 0..=t.len() {
                any |= dp[j];
                next[j] = any;
            }
        } else {
            for j in 1..=t.len() {
                next[j] = dp[j - 1] && ((c == '_' && !literal) || t[j - 1] == c);
            }
        }
        dp = next;
        i += width;
    }
    dp[t.len()]
}

/// File fields of `Run`.
pub struct RunFileFields(pub RunHandle);

#[Object]
impl RunFileFields {
    /// Number of files of the run.
    async fn file_count(&self) -> i64 {
        self.0.record.read().files.len() as i64
    }

    /// Files by exact `names` (empty = all) or SQL-LIKE `pattern`, by name, paginated by the
    /// last edge's cursor.
    async fn files(
        &self,
        ctx: &Context<'_>,
        names: Option<Vec<Option<String>>>,
        after: Option<String>,
        first: Option<i32>,
        pattern: Option<String>,
    ) -> Option<FileConnection> {
        let app = app(ctx);
        let names: Vec<String> = names.unwrap_or_default().into_iter().flatten().collect();
        let views: Vec<FileView> = {
            let rec = self.0.record.read();
            rec.files
                .values()
                .filter(|f| {
                    if !names.is_empty() {
                        names.contains(&f.name)
                    } else if let Some(p) = &pattern {
                        sql_like(p, &f.name)
                    } else {
                        true
                    }
                })
                .map(|f| FileView::for_run_file(app, &self.0.key, f))
                .collect()
        };
        Some(FileConnection::paginate(
            views,
            after.as_deref(),
            first,
            app.max_page_size.max(10_000),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::sql_like;

    #[test]
    fn like_patterns() {
        assert!(sql_like("%.json", "wandb-metadata.json"));
        assert!(!sql_like("%.json", "config.yaml"));
        assert!(sql_like("media/%", "media/images/a.png"));
        assert!(sql_like("_onfig.yaml", "config.yaml"));
        assert!(!sql_like("_config.yaml", "config.yaml"));
        assert!(sql_like("%", ""));
        assert!(sql_like("a\\%b", "a%b"));
        assert!(!sql_like("a\\%b", "axb"));
        assert!(sql_like("%ü%", "düsseldorf"));
        assert!(sql_like("exact", "exact"));
    }
}
