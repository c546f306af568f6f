//! Reads of the synthetic files (`history.jsonl`, `summary.json`, …).
//!
//! A handle keeps the [`SyntheticObject`] it was opened with: its size is what `stat` said,
//! and every read is a byte range of that version. Small files are rendered in memory;
//! `history.jsonl` and `system.jsonl` are read from the mirror's blocks by byte range. Sequential reads are served from pieces of [`PIECE`] bytes (one statement each), up
//! to [`MAX_DEPTH`] of them in flight ahead of the reader, so `cat` of a 1-GB history costs
//! a few hundred statements, several at once, instead of one per kernel read.
//!
//! A run's files change while it runs. A read that reaches past the handle's version (the
//! kernel learnt a larger size: `tail -f` polls `fstat` and reads the new end through the
//! handle it opened long ago) asks the source for the current version and continues with it.

use std::collections::VecDeque;
use std::ops::Range;

use bytes::{Bytes, BytesMut};
use futures::TryStreamExt;
use futures::future::{BoxFuture, FutureExt, Shared};
use std::sync::Arc;

use wandbfs::store::MetadataSource;
use wandbfs::store::layout::{ProjectTableKind, SyntheticKind};
use wandbfs::store::source::{ProjectRef, RunRef, SyntheticBody, SyntheticObject};

use super::error::{FsError, FsResult};

/// Bytes per piece: one statement each (~16 of the mirror's blocks of up to 128 KiB of text).
const PIECE: u64 = 2 << 20;
/// Pieces kept in flight ahead of a sequential reader: statements run in parallel (each
/// piece's blocks are decompressed as it arrives), 8 MiB per handle at most.
const MAX_DEPTH: usize = 4;

type Piece = Shared<BoxFuture<'static, Result<Bytes, FsError>>>;

/// Where a handle's file comes from, to ask for its current version.
pub struct Origin {
    /// The metadata source.
    pub source: Arc<dyn MetadataSource>,
    /// Which file.
    pub file: OriginFile,
}

/// A synthetic file of a run, or a table of a project.
pub enum OriginFile {
    /// `<run>/history.jsonl`, …
    Run(RunRef, SyntheticKind),
    /// `<project>/runs.parquet`, …
    Project(ProjectRef, ProjectTableKind),
}

impl Origin {
    /// The file's current version.
    pub async fn current(&self) -> FsResult<Option<SyntheticObject>> {
        match &self.file {
            OriginFile::Run(run, kind) => self.source.synthetic(run, *kind).await,
            OriginFile::Project(project, kind) => self.source.project_table(project, *kind).await,
        }
        .map_err(|e| FsError::from_store(&e))
    }
}

/// One open handle's reader of a synthetic file.
pub struct SyntheticReader {
    object: SyntheticObject,
    origin: Origin,
    path: String,
    /// Consecutive pieces, in flight or read: the window ahead of the reader.
    pieces: VecDeque<(Range<u64>, Piece)>,
    /// Pieces kept ahead (grows while reads are sequential).
    depth: usize,
    /// Where the next sequential read starts.
    next_offset: u64,
}

impl SyntheticReader {
    /// A reader of `object`, which came from `origin`.
    pub fn new(object: SyntheticObject, origin: Origin, path: String) -> Self {
        SyntheticReader {
            object,
            origin,
            path,
            pieces: VecDeque::new(),
            depth: 0,
            next_offset: 0,
        }
    }

    /// The size the handle was opened with.
    pub fn size(&self) -> u64 {
        self.object.size
    }

    fn fetch(&self, range: Range<u64>) -> Piece {
        let path = self.path.clone();
        match &self.object.body {
            SyntheticBody::Rendered(bytes) => {
                let slice = bytes.slice(range.start as usize..range.end as usize);
                futures::future::ready(Ok(slice)).boxed().shared()
            }
            SyntheticBody::Ranged(reader) => {
                let reader = reader.clone();
                // Spawned, so that a prefetched piece makes progress while the current one is
                // being consumed.
                let task = tokio::spawn(async move {
                    let want = range.end - range.start;
                    let mut out = BytesMut::with_capacity(want as usize);
                    let mut stream = reader
                        .read(range)
                        .await
                        .map_err(|e| FsError::from_store(&e))?;
                    while let Some(chunk) = stream
                        .try_next()
                        .await
                        .map_err(|e| FsError::from_store(&e))?
                    {
                        out.extend_from_slice(&chunk);
                    }
                    if out.len() as u64 != want {
                        return Err(FsError::io(format!(
                            "{path}: the mirror returned {} bytes of {want}",
                            out.len()
                        )));
                    }
                    Ok(out.freeze())
                });
                task.map(|joined| {
                    joined.unwrap_or_else(|e| Err(FsError::io(format!("a read task failed: {e}"))))
                })
                .boxed()
                .shared()
            }
        }
    }

    /// Switches to the current version when it differs from the handle's.
    async fn reload(&mut self) -> FsResult<()> {
        let current = self.origin.current().await?;
        if let Some(current) = current
            && (current.size != self.object.size || current.e_tag != self.object.e_tag)
        {
            tracing::debug!(path = %self.path, from = self.object.size, to = current.size, "newer version");
            self.object = current;
            self.pieces.clear();
        }
        Ok(())
    }

    /// Up to `size` bytes at `offset` (fewer only at the end).
    pub async fn read(&mut self, offset: u64, size: u32) -> FsResult<Bytes> {
        if offset + u64::from(size) > self.object.size {
            // At (or past) the end of the handle's version: a newer one may be longer.
            self.reload().await?;
        }
        let end = (offset + u64::from(size)).min(self.object.size);
        if offset >= end {
            return Ok(Bytes::new());
        }
        if let SyntheticBody::Rendered(bytes) = &self.object.body {
            return Ok(bytes.slice(offset as usize..end as usize));
        }
        let sequential = offset == self.next_offset;
        self.next_offset = end;
        // Pieces wholly behind the read are done with; a read outside the window (a seek)
        // starts a new one.
        while self.pieces.front().is_some_and(|(r, _)| r.end <= offset) {
            self.pieces.pop_front();
        }
        if self.pieces.front().is_none_or(|(r, _)| r.start > offset) {
            self.pieces.clear();
            self.depth = 0;
        }
        self.depth = if sequential {
            (self.depth + 1).min(MAX_DEPTH)
        } else {
            0
        };
        // Cover the read, then keep `depth` pieces beyond it in flight.
        let mut covered = self.pieces.back().map_or(offset, |(r, _)| r.end);
        while covered < end {
            let next = covered..(covered + PIECE.max(end - covered)).min(self.object.size);
            covered = next.end;
            let piece = self.fetch(next.clone());
            self.pieces.push_back((next, piece));
        }
        let needed = self.pieces.iter().filter(|(r, _)| r.start < end).count();
        while self.pieces.len() < needed + self.depth && covered < self.object.size {
            let next = covered..(covered + PIECE).min(self.object.size);
            covered = next.end;
            let piece = self.fetch(next.clone());
            self.pieces.push_back((next, piece));
        }
        let mut out = BytesMut::with_capacity((end - offset) as usize);
        for (range, piece) in self.pieces.iter() {
            if range.start >= end {
                break;
            }
            let bytes = match piece.clone().await {
                Ok(bytes) => bytes,
                Err(e) => {
                    // A retry fetches again instead of repeating the error.
                    self.pieces.clear();
                    return Err(e);
                }
            };
            let from = offset.max(range.start) - range.start;
            let to = end.min(range.end) - range.start;
            out.extend_from_slice(&bytes[from as usize..to as usize]);
        }
        Ok(out.freeze())
    }
}
