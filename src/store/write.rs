//! Writes to run files, when the store was built with writes enabled: `put` (`CreateRunFiles`,
//! then an unauthenticated PUT of the signed upload URL, as the SDK's `run.upload_file()`),
//! `delete` (`deleteFiles`), and `copy`/`rename` built from them. Synthetic files, artifacts
//! and directories are always read-only.
//!
//! W&B has no conditional writes, so `PutMode::Create`/`Update`, `CopyMode::Create` and
//! `RenameTargetMode::Create` are not implemented rather than emulated racily.

use base64::Engine as _;
use bytes::Bytes;
use md5::{Digest as _, Md5};
use object_store::path::Path;
use object_store::{
    CopyMode, CopyOptions, GetOptions, ObjectStore as _, ObjectStoreExt as _, PutMode, PutOptions,
    PutPayload, PutResult, RenameOptions, RenameTargetMode,
};

use super::error::StoreError;
use super::layout::Location;
use super::source::{Invalidation, RunRef};
use super::{WandbStore, not_implemented};
use crate::client::RunFilesQuery;

/// Largest object `copy`/`rename` moves: W&B has no server-side copy, so the bytes are read
/// into memory and uploaded again.
pub const MAX_COPY_BYTES: u64 = 1 << 30;

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
    let e_tag = base64::engine::general_purpose::STANDARD.encode(Md5::digest(&body));
    tracing::debug!(path, bytes = body.len(), "put");
    let client = &store.inner.client;
    let api = |e| StoreError::from_client(path, e);
    let created = client
        .create_run_files(
            &run.entity,
            &run.project,
            &run.run,
            std::slice::from_ref(&name),
        )
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
    let result = client.upload(&url, &created.upload_headers, body).await;
    store
        .inner
        .source
        .invalidate(&Invalidation::Run(run.clone()))
        .await;
    result.map_err(api)?;
    Ok(PutResult {
        e_tag: Some(e_tag),
        version: None,
        extensions: Default::default(),
    })
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
    let source = store.get_opts(from, GetOptions::new()).await?;
    if source.meta.size > MAX_COPY_BYTES {
        return Err(StoreError::NotSupported {
            path: from.to_string(),
            reason: format!(
                "copying {} bytes: W&B has no server-side copy and the store copies at most \
                 {MAX_COPY_BYTES} bytes through memory",
                source.meta.size
            ),
        }
        .into());
    }
    let bytes = source.bytes().await?;
    store
        .put_opts(to, bytes.into(), PutOptions::default())
        .await?;
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
