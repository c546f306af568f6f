//! Writes to run files, when the store was built with writes enabled: `put` (`CreateRunFiles`,
//! then an unauthenticated PUT of the signed upload URL, as the SDK's `run.upload_file()`),
//! `delete` (`deleteFiles`), and `copy`/`rename` built from them. Synthetic files, artifacts
//! and directories are always read-only.
//!
//! W&B has no conditional writes, so `PutMode::Create`/`Update`, `CopyMode::Create` and
//! `RenameTargetMode::Create` are not implemented rather than emulated racily.

use std::sync::Arc;

use base64::Engine as _;
use bytes::Bytes;
use futures::StreamExt as _;
use md5::{Digest as _, Md5};
use object_store::path::Path;
use object_store::{
    CopyMode, CopyOptions, GetOptions, ObjectStore as _, ObjectStoreExt as _, PutMode, PutOptions,
    PutPayload, PutResult, RenameOptions, RenameTargetMode,
};
use tokio::io::AsyncWriteExt as _;

use super::error::StoreError;
use super::layout::Location;
use super::source::{Invalidation, RunRef};
use super::{WandbStore, not_implemented};
use crate::client::RunFilesQuery;

/// The run file a write targets, or why there is none.
fn writable(store: &WandbStore, location: &Path) -> Result<(RunRef, String), StoreError> {
    let path = location.as_ref();
    if !store.inner.writes {
        return Err(StoreError::ReadOnly {
            path: path.to_owned(),
            reason: "this WandbStore is read-only (writes to run files are off by default; \
                     enable them with WandbStoreBuilder::with_writes(true))"
                .to_owned(),
        });
    }
    let reason = match Location::parse(location) {
        Location::RunFile(run, name) => return Ok((run, name)),
        Location::Synthetic(..) => {
            "synthetic files are rendered from W&B's run record and history; they cannot be \
             written (a run file of this name is reached as `@<name>`)"
        }
        Location::ArtifactFile(..) => "artifact versions are immutable in W&B",
        _ => "only run files (<entity>/<project>/<run>/<file path>) can be written",
    };
    Err(StoreError::ReadOnly {
        path: path.to_owned(),
        reason: reason.to_owned(),
    })
}

pub(super) async fn put(
    store: &WandbStore,
    location: &Path,
    payload: PutPayload,
    opts: PutOptions,
) -> object_store::Result<PutResult> {
    let path = location.as_ref();
    let (run, name) = writable(store, location)?;
    if !matches!(opts.mode, PutMode::Overwrite) {
        return Err(not_implemented(
            store,
            "put_opts with PutMode::Create or PutMode::Update (W&B has no conditional writes)",
        ));
    }
    if !opts.attributes.is_empty() || !opts.tags.encoded().is_empty() {
        return Err(StoreError::NotSupported {
            path: path.to_owned(),
            reason: "W&B run files carry no user attributes or tags".to_owned(),
        }
        .into());
    }
    let body = Bytes::from(payload);
    tracing::debug!(path, bytes = body.len(), "put");
    upload(store, location, &run, &name, Body::Bytes(body)).await
}

/// What a put sends.
enum Body {
    Bytes(Bytes),
    File(Arc<std::fs::File>, u64),
}

/// `CreateRunFiles`, the PUT of the signed URL, and the run's listings forgotten.
async fn upload(
    store: &WandbStore,
    location: &Path,
    run: &RunRef,
    name: &str,
    body: Body,
) -> object_store::Result<PutResult> {
    let path = location.as_ref();
    let client = &store.inner.client;
    let api = |e| StoreError::from_client(path, e);
    let created = client
        .create_run_files(&run.entity, &run.project, &run.run, &[name.to_owned()])
        .await
        .map_err(api)?;
    let url = created
        .files
        .iter()
        .find(|t| t.name == name)
        .and_then(|t| t.upload_url.clone())
        .ok_or_else(|| StoreError::Invalid {
            path: path.to_owned(),
            message: "W&B returned no upload URL for this file".to_owned(),
        })?;
    let result = match body {
        Body::Bytes(bytes) => {
            let digest: [u8; 16] = Md5::digest(&bytes).into();
            client
                .upload(&url, &created.upload_headers, bytes)
                .await
                .map(|()| digest)
        }
        Body::File(file, len) => {
            client
                .upload_file(&url, &created.upload_headers, file, len)
                .await
        }
    };
    store
        .inner
        .source
        .invalidate(&Invalidation::Run(run.clone()))
        .await;
    let digest = result.map_err(api)?;
    Ok(PutResult {
        e_tag: Some(base64::engine::general_purpose::STANDARD.encode(digest)),
        version: None,
        extensions: Default::default(),
    })
}

/// Uploads the first `len` bytes of `file` as the run file at `location`, read while they are
/// sent (see [`WandbStore::put_file`]).
pub(super) async fn put_file(
    store: &WandbStore,
    location: &Path,
    file: Arc<std::fs::File>,
    len: u64,
) -> object_store::Result<PutResult> {
    let (run, name) = writable(store, location)?;
    tracing::debug!(path = location.as_ref(), bytes = len, "put (file)");
    upload(store, location, &run, &name, Body::File(file, len)).await
}

/// A multipart upload: W&B takes a run file in one PUT, so the parts are spooled to a
/// temporary file (at their offsets, whatever order they are written in) and sent from it,
/// streamed, at `complete` — memory stays bounded by the parts in flight.
#[derive(Debug)]
pub(super) struct SpooledUpload {
    store: WandbStore,
    location: Path,
    spool: Arc<std::fs::File>,
    next: u64,
}

impl SpooledUpload {
    pub(super) fn start(
        store: &WandbStore,
        location: &Path,
    ) -> object_store::Result<SpooledUpload> {
        writable(store, location)?;
        let spool = tempfile::tempfile().map_err(|e| StoreError::Source {
            path: location.to_string(),
            source_name: "upload spool".to_owned(),
            message: format!("a temporary file for the upload: {e}"),
        })?;
        Ok(SpooledUpload {
            store: store.clone(),
            location: location.clone(),
            spool: Arc::new(spool),
            next: 0,
        })
    }
}

#[async_trait::async_trait]
impl object_store::MultipartUpload for SpooledUpload {
    fn put_part(&mut self, data: PutPayload) -> object_store::UploadPart {
        let offset = self.next;
        self.next += data.content_length() as u64;
        let spool = Arc::clone(&self.spool);
        let path = self.location.to_string();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                use std::os::unix::fs::FileExt as _;
                let mut at = offset;
                for chunk in data.iter() {
                    spool.write_all_at(chunk, at)?;
                    at += chunk.len() as u64;
                }
                Ok::<_, std::io::Error>(())
            })
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)))
            .map_err(|e| {
                StoreError::Source {
                    path,
                    source_name: "upload spool".to_owned(),
                    message: e.to_string(),
                }
                .into()
            })
        })
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        put_file(
            &self.store,
            &self.location,
            Arc::clone(&self.spool),
            self.next,
        )
        .await
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        // Nothing reached W&B; the spool goes with this value.
        Ok(())
    }
}

pub(super) async fn delete(store: &WandbStore, location: &Path) -> object_store::Result<()> {
    let path = location.as_ref();
    let (run, name) = writable(store, location)?;
    tracing::debug!(path, "delete");
    let client = &store.inner.client;
    let api = |e| StoreError::from_client(path, e);
    let query = RunFilesQuery::new(&run.entity, &run.project, &run.run)
        .names([name.clone()])
        .per_page(1);
    let page = client.run_files_page(&query, None).await.map_err(api)?;
    let file = page
        .files
        .into_iter()
        .find(|f| f.name == name)
        .ok_or_else(|| StoreError::not_found(path, "no such file"))?;
    let deleted = client
        .delete_files(&[file.id], page.project_internal_id)
        .await;
    store.inner.source.invalidate(&Invalidation::Run(run)).await;
    if !deleted.map_err(api)? {
        return Err(StoreError::Invalid {
            path: path.to_owned(),
            message: "W&B answered deleteFiles with success: false".to_owned(),
        }
        .into());
    }
    Ok(())
}

pub(super) async fn copy(
    store: &WandbStore,
    from: &Path,
    to: &Path,
    options: CopyOptions,
) -> object_store::Result<()> {
    writable(store, to)?;
    // A missing source is reported as such whatever the mode (object_store's contract).
    store.head(from).await?;
    if !matches!(options.mode, CopyMode::Overwrite) {
        return Err(not_implemented(
            store,
            "copy_opts with CopyMode::Create (W&B has no conditional writes)",
        ));
    }
    // W&B has no server-side copy: the bytes are downloaded into a temporary file and
    // uploaded from it, both streamed (memory stays bounded whatever the size).
    let source = store.get_opts(from, GetOptions::new()).await?;
    let spool_error = |e: std::io::Error| -> object_store::Error {
        StoreError::Source {
            path: from.to_string(),
            source_name: "copy spool".to_owned(),
            message: e.to_string(),
        }
        .into()
    };
    let spool = tempfile::tempfile().map_err(spool_error)?;
    let mut writer = tokio::fs::File::from_std(spool);
    let mut len = 0u64;
    let mut stream = source.into_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        writer.write_all(&chunk).await.map_err(spool_error)?;
        len += chunk.len() as u64;
    }
    writer.flush().await.map_err(spool_error)?;
    let spool = writer.into_std().await;
    put_file(store, to, Arc::new(spool), len).await?;
    Ok(())
}

pub(super) async fn rename(
    store: &WandbStore,
    from: &Path,
    to: &Path,
    options: RenameOptions,
) -> object_store::Result<()> {
    writable(store, from)?;
    store.head(from).await?;
    if !matches!(options.target_mode, RenameTargetMode::Overwrite) {
        return Err(not_implemented(
            store,
            "rename_opts with RenameTargetMode::Create (W&B has no conditional writes)",
        ));
    }
    if from == to {
        // Copy-then-delete would delete the file: renaming onto itself changes nothing.
        return Ok(());
    }
    copy(store, from, to, CopyOptions::default()).await?;
    delete(store, from).await
}
