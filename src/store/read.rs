//! `get_opts` (and therefore `get`, `get_range`, `head`): synthetic files from the source, run
//! and artifact files from their URLs.
//!
//! A file read costs the metadata lookup (cached by the live source) plus **one** HTTP request
//! for exactly the bytes asked for: every `GetRange` becomes an HTTP `Range`, `head` and empty
//! ranges download nothing, and preconditions are checked against the metadata before any
//! byte moves. A refused signed URL (401/403: expired) is replaced by a fresh one and the read
//! tried once more; so is a read whose size disagrees with the (stale) metadata, and that
//! second try takes the file's metadata from W&B as it is now ([`fresh_file`](super::MetadataSource::fresh_file):
//! a mirror's listing may predate a re-upload).

use std::ops::Range;

use bytes::Bytes;
use chrono::DateTime;
use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{
    Attribute, AttributeValue, Attributes, GetOptions, GetRange, GetResult, GetResultPayload,
    ObjectMeta,
};

use super::Inner;
use super::error::StoreError;
use super::layout::{Location, SyntheticKind};
use super::source::{FileEntry, FileRef, RunRef, SyntheticBody, SyntheticObject};
use crate::client;

pub(super) async fn get(
    inner: &Inner,
    location: &Path,
    options: GetOptions,
) -> object_store::Result<GetResult> {
    let path = location.as_ref();
    if options.version.is_some() {
        return Err(StoreError::NotSupported {
            path: path.to_owned(),
            reason: "W&B keeps no object versions (artifact versions are paths: \
                     …/artifacts/<type>/<collection>/v3/…)"
                .to_owned(),
        }
        .into());
    }
    tracing::debug!(path, range = ?options.range, head = options.head, "get");
    match Location::parse(location) {
        Location::Synthetic(run, kind) if inner.synthetic => {
            get_synthetic(inner, location, &run, kind, options).await
        }
        Location::ProjectTable(project, kind) if inner.synthetic => {
            let path = location.as_ref();
            let object = inner
                .source
                .project_table(&project, kind)
                .await
                .map_err(|e| e.at(path))?
                .ok_or_else(|| StoreError::not_found(path, format!("project {project}")))?;
            serve_synthetic(location, object, kind.content_type(), options).await
        }
        parsed => match parsed.file_ref() {
            Some(file) => get_file(inner, location, &file, options).await,
            None => Err(StoreError::not_found(path, "no object (a directory, or nothing)").into()),
        },
    }
}

/// The byte range to serve, validated like every object_store implementation does.
fn resolve_range(
    path: &str,
    range: Option<&GetRange>,
    size: u64,
) -> Result<Range<u64>, StoreError> {
    match range {
        None => Ok(0..size),
        Some(r) => r.as_range(size).map_err(|e| StoreError::Invalid {
            path: path.to_owned(),
            message: format!("invalid range {r}: {e}"),
        }),
    }
}

fn attributes(content_type: Option<&str>) -> Attributes {
    match content_type {
        Some(ct) => {
            Attributes::from_iter([(Attribute::ContentType, AttributeValue::from(ct.to_owned()))])
        }
        None => Attributes::new(),
    }
}

fn result(
    meta: ObjectMeta,
    range: Range<u64>,
    stream: BoxStream<'static, object_store::Result<Bytes>>,
    attributes: Attributes,
) -> GetResult {
    GetResult {
        payload: GetResultPayload::Stream(stream),
        meta,
        range,
        attributes,
        extensions: Default::default(),
    }
}

fn empty_body() -> BoxStream<'static, object_store::Result<Bytes>> {
    stream::empty().boxed()
}

async fn get_synthetic(
    inner: &Inner,
    location: &Path,
    run: &RunRef,
    kind: SyntheticKind,
    options: GetOptions,
) -> object_store::Result<GetResult> {
    let path = location.as_ref();
    let object = inner
        .source
        .synthetic(run, kind)
        .await
        .map_err(|e| e.at(path))?
        .ok_or_else(|| StoreError::not_found(path, format!("run {run}")))?;
    serve_synthetic(location, object, kind.content_type(), options).await
}

/// A synthetic object's metadata and (range of) bytes.
async fn serve_synthetic(
    location: &Path,
    object: SyntheticObject,
    content_type: &str,
    options: GetOptions,
) -> object_store::Result<GetResult> {
    let path = location.as_ref();
    let meta = ObjectMeta {
        location: location.clone(),
        last_modified: object.last_modified,
        size: object.size,
        e_tag: Some(object.e_tag.clone()),
        version: None,
    };
    options.check_preconditions(&meta)?;
    let range = resolve_range(path, options.range.as_ref(), meta.size)?;
    let attributes = attributes(Some(content_type));
    if options.head || range.is_empty() {
        return Ok(result(meta, range, empty_body(), attributes));
    }
    let body = match object.body {
        SyntheticBody::Rendered(bytes) => {
            let slice = bytes.slice(range.start as usize..range.end as usize);
            stream::iter([Ok(slice)]).boxed()
        }
        SyntheticBody::Ranged(reader) => {
            let owned = path.to_owned();
            reader
                .read(range.clone())
                .await
                .map_err(|e| e.at(path))?
                .map_err(move |e| object_store::Error::from(e.at(&owned)))
                .boxed()
        }
    };
    Ok(result(meta, range, body, attributes))
}

async fn file_entry(inner: &Inner, file: &FileRef) -> Result<Option<FileEntry>, StoreError> {
    match file {
        FileRef::Run(run, name) => inner.source.run_file(run, name).await,
        FileRef::Artifact(version, name) => inner.source.artifact_file(version, name).await,
    }
}

async fn get_file(
    inner: &Inner,
    location: &Path,
    file: &FileRef,
    options: GetOptions,
) -> object_store::Result<GetResult> {
    let path = location.as_ref();
    let mut retried = false;
    loop {
        // On the second round, a fresh URL first: that also refreshes the live source's
        // metadata of the file, which `fresh_file` then reads.
        let fresh_url = if retried {
            Some(
                inner
                    .source
                    .locate(file, true)
                    .await
                    .map_err(|e| e.at(path))?,
            )
        } else {
            None
        };
        // After a refused URL or a size mismatch, metadata as W&B has it now: a mirror's
        // listing may predate a re-upload, and would fail the same way again.
        let entry = if retried {
            inner.source.fresh_file(file).await
        } else {
            file_entry(inner, file).await
        }
        .map_err(|e| e.at(path))?
        .ok_or_else(|| StoreError::not_found(path, "no such file"))?;
        let meta = ObjectMeta {
            location: location.clone(),
            last_modified: entry.last_modified.unwrap_or(DateTime::UNIX_EPOCH),
            size: entry.size,
            e_tag: entry.e_tag.clone(),
            version: None,
        };
        options.check_preconditions(&meta)?;
        let range = resolve_range(path, options.range.as_ref(), meta.size)?;
        let attributes = attributes(entry.content_type.as_deref());
        if options.head || range.is_empty() {
            return Ok(result(meta, range, empty_body(), attributes));
        }
        let url = match fresh_url {
            Some(url) => url,
            None => inner
                .source
                .locate(file, false)
                .await
                .map_err(|e| e.at(path))?,
        };
        let wanted = GetRange::Bounded(range.clone());
        let refetch = match inner.client.download(&url, Some(wanted)).await {
            Ok(download) if download.info.size == meta.size && download.range == range => {
                let owned = path.to_owned();
                let body = download
                    .stream
                    .map_err(move |e| StoreError::from_client(owned.clone(), e).into())
                    .boxed();
                return Ok(result(meta, range, body, attributes));
            }
            Ok(download) => format!(
                "W&B listed {} bytes but served {} of {} bytes",
                meta.size,
                download.range.end - download.range.start,
                download.info.size
            ),
            Err(client::Error::UrlExpired { status, .. }) => {
                format!("the signed URL was refused (HTTP {status})")
            }
            Err(e) => return Err(StoreError::from_client(path, e).into()),
        };
        if retried {
            return Err(StoreError::Invalid {
                path: path.to_owned(),
                message: format!("{refetch}, again after refreshing the file's metadata"),
            }
            .into());
        }
        tracing::debug!(path, "{refetch}; refreshing the file's metadata and URL");
        retried = true;
    }
}
