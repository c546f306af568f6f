//! `WandbStore`: W&B runs, files and artifacts as an `object_store::ObjectStore`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use futures::TryStreamExt;
//! use object_store::{ObjectStore, ObjectStoreExt, path::Path};
//! use wandbfs::store::WandbStore;
//!
//! let store = WandbStore::new(wandbfs::client::Client::from_env()?);
//! let runs = store.list_with_delimiter(Some(&Path::parse("my-team/my-project")?)).await?;
//! let history = store.get(&Path::parse("my-team/my-project/abc123/history.jsonl")?).await?;
//! let lines = history.bytes().await?;
//! # Ok(()) }
//! ```
//!
//! The namespace is specified in `docs/LAYOUT.md` and implemented by [`layout`]. Module map:
//! [`source`] (the [`MetadataSource`] trait) with [`LiveSource`] (the API), [`MirrorSource`]
//! (the Postgres mirror) and [`Layered`] (mirror first, live fallback); [`render`] (the
//! synthetic files, shared by all sources); `read`, `list`, `write` (the trait methods);
//! [`error`].

mod cache;
pub mod error;
pub mod layered;
pub mod layout;
mod list;
pub mod live;
pub mod mirror_source;
mod read;
pub mod render;
pub mod source;
pub mod tables;
mod write;

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions,
};

use crate::client::Client;

pub use error::StoreError;
pub use layered::Layered;
pub use layout::{ProjectTableKind, SyntheticKind};
pub use live::{LiveOptions, LiveSource};
pub use mirror_source::{MirrorSource, MirrorSourceOptions, RunContents};
pub use render::RunDetail;
pub use source::MetadataSource;

/// W&B as an object store. Cheap to clone (clones share the client and the caches).
///
/// Read-only unless built with [`WandbStoreBuilder::with_writes`]; synthetic files and
/// artifacts are always read-only.
#[derive(Clone)]
pub struct WandbStore {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) client: Client,
    pub(crate) source: Arc<dyn MetadataSource>,
    pub(crate) writes: bool,
    pub(crate) synthetic: bool,
}

impl std::fmt::Display for WandbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "WandbStore({}, {}, source: {})",
            self.inner.client.base_url(),
            if self.inner.writes {
                "read-write"
            } else {
                "read-only"
            },
            self.inner.source.name()
        )
    }
}

impl std::fmt::Debug for WandbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The client's own Debug redacts credentials; the base URL is all we need to show.
        f.debug_struct("WandbStore")
            .field("base_url", &self.inner.client.base_url().to_string())
            .field("writes", &self.inner.writes)
            .field("synthetic_files", &self.inner.synthetic)
            .field("source", &self.inner.source)
            .finish()
    }
}

impl WandbStore {
    /// A read-only store over the live API with default options.
    pub fn new(client: Client) -> WandbStore {
        WandbStore::builder(client).build()
    }

    /// A builder for everything else.
    pub fn builder(client: Client) -> WandbStoreBuilder {
        WandbStoreBuilder {
            client,
            live: LiveOptions::default(),
            writes: false,
            synthetic: true,
            source: None,
        }
    }

    /// The client the store talks through.
    pub fn client(&self) -> &Client {
        &self.inner.client
    }

    /// The metadata source in use.
    pub fn source(&self) -> &Arc<dyn MetadataSource> {
        &self.inner.source
    }

    /// Whether writes to run files are enabled.
    pub fn writes_enabled(&self) -> bool {
        self.inner.writes
    }

    /// Uploads the first `len` bytes of `file` as the run file at `location` (writes
    /// enabled), read while they are sent: memory stays bounded whatever the size (the
    /// streaming counterpart of `put`; `put_multipart` spools into such a file). The e-tag
    /// returned is the base64 MD5 of the bytes sent, as W&B reports it.
    pub async fn put_file(
        &self,
        location: &Path,
        file: Arc<std::fs::File>,
        len: u64,
    ) -> object_store::Result<PutResult> {
        write::put_file(self, location, file, len).await
    }
}

/// Builds a [`WandbStore`].
#[must_use]
pub struct WandbStoreBuilder {
    client: Client,
    live: LiveOptions,
    writes: bool,
    synthetic: bool,
    source: Option<Arc<dyn MetadataSource>>,
}

impl std::fmt::Debug for WandbStoreBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WandbStoreBuilder")
            .field("base_url", &self.client.base_url().to_string())
            .field("live", &self.live)
            .field("writes", &self.writes)
            .field("synthetic_files", &self.synthetic)
            .field("source", &self.source)
            .finish()
    }
}

impl WandbStoreBuilder {
    /// Allows `put`, `delete`, `copy` and `rename` of **run files** (upload through
    /// `CreateRunFiles` + PUT, deletion through `deleteFiles`). Default **off**: W&B data is
    /// precious and a store handed to a query engine should not be able to change it.
    pub fn with_writes(mut self, enabled: bool) -> Self {
        self.writes = enabled;
        self
    }

    /// Serves the synthetic files (`history.jsonl`, …). Default **on**. Off gives a view of the
    /// uploaded files only (their names stay escaped as in `docs/LAYOUT.md`, so paths do not
    /// change with this setting).
    pub fn with_synthetic_files(mut self, enabled: bool) -> Self {
        self.synthetic = enabled;
        self
    }

    /// All live-source options at once.
    pub fn with_live_options(mut self, options: LiveOptions) -> Self {
        self.live = options;
        self
    }

    /// See [`LiveOptions::cache_ttl`].
    pub fn with_cache_ttl(mut self, ttl: Duration) -> Self {
        self.live.cache_ttl = ttl;
        self
    }

    /// See [`LiveOptions::synthetic_cache_bytes`].
    pub fn with_synthetic_cache_bytes(mut self, bytes: u64) -> Self {
        self.live.synthetic_cache_bytes = bytes;
        self
    }

    /// See [`LiveOptions::max_synthetic_bytes`].
    pub fn with_max_synthetic_bytes(mut self, bytes: u64) -> Self {
        self.live.max_synthetic_bytes = bytes;
        self
    }

    /// See [`LiveOptions::history_page_steps`].
    pub fn with_history_page_steps(mut self, steps: u32) -> Self {
        self.live.history_page_steps = steps.max(1);
        self
    }

    /// See [`LiveOptions::max_system_rows`].
    pub fn with_max_system_rows(mut self, rows: u32) -> Self {
        self.live.max_system_rows = rows.max(1);
        self
    }

    /// Uses `source` instead of a [`LiveSource`] built from the live options (e.g. a
    /// [`Layered`] mirror + live source). Downloads and writes still go through the client.
    pub fn with_source(mut self, source: Arc<dyn MetadataSource>) -> Self {
        self.source = Some(source);
        self
    }

    /// The store.
    pub fn build(self) -> WandbStore {
        let source = self
            .source
            .unwrap_or_else(|| Arc::new(LiveSource::new(self.client.clone(), self.live)));
        WandbStore {
            inner: Arc::new(Inner {
                client: self.client,
                source,
                writes: self.writes,
                synthetic: self.synthetic,
            }),
        }
    }
}

fn not_implemented(store: &WandbStore, operation: &str) -> object_store::Error {
    object_store::Error::NotImplemented {
        operation: operation.to_owned(),
        implementer: store.to_string(),
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl ObjectStore for WandbStore {
    /// Uploads a run file (writes enabled, `PutMode::Overwrite` only).
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        write::put(self, location, payload, opts).await
    }

    /// Uploads a run file of any size in bounded memory (writes enabled): W&B takes a run file
    /// in one PUT of a signed URL, so the parts are spooled to a temporary file and streamed
    /// from it at `complete`. No attributes or tags (W&B has none).
    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        if !opts.attributes.is_empty() || !opts.tags.encoded().is_empty() {
            return Err(StoreError::NotSupported {
                path: location.to_string(),
                reason: "W&B run files carry no user attributes or tags".to_owned(),
            }
            .into());
        }
        Ok(Box::new(write::SpooledUpload::start(self, location)?))
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        read::get(&self.inner, location, options).await
    }

    /// Coalesces nearby ranges like object_store's default, each fetch one ranged request.
    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        object_store::coalesce_ranges(
            ranges,
            |range| async move {
                let options = GetOptions::new().with_range(Some(range));
                self.get_opts(location, options).await?.bytes().await
            },
            object_store::OBJECT_STORE_COALESCE_DEFAULT,
        )
        .await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        let store = self.clone();
        locations
            .map(move |location| {
                let store = store.clone();
                async move {
                    let location = location?;
                    write::delete(&store, &location).await?;
                    Ok(location)
                }
            })
            .buffered(4)
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        list::list(Arc::clone(&self.inner), prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let offset = offset.clone();
        self.list(prefix)
            .try_filter(move |meta| futures::future::ready(meta.location > offset))
            .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        list::list_with_delimiter(&self.inner, prefix).await
    }

    /// Copies into a run file (writes enabled, `CopyMode::Overwrite` only): W&B has no
    /// server-side copy, so the bytes pass through this process.
    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        write::copy(self, from, to, options).await
    }

    /// Copy, then delete the source (both must be run files; writes enabled).
    async fn rename_opts(
        &self,
        from: &Path,
        to: &Path,
        options: RenameOptions,
    ) -> object_store::Result<()> {
        write::rename(self, from, to, options).await
    }
}
