//! Reads of the synthetic files (`history.jsonl`, `summary.json`, …).
//!
//! A handle keeps the [`SyntheticObject`] it was opened with: its size is what `stat` said,
//! and every read is a byte range of that version. Small files are rendered in memory;
//! `history.jsonl` and `system.jsonl` are read from the mirror's pre-rendered chunks by byte
//! range. Sequential reads are served from pieces of up to [`MAX_PIECE`] bytes (one statement
//! each), the next piece fetched while the current one is read, so `cat` of a 1-GB history
//! costs a few hundred statements instead of one per kernel read.
//!
//! A run's files change while it runs. A read that reaches past the handle's version (the
//! kernel learnt a larger size: `tail -f` polls `fstat` and reads the new end through the
//! handle it opened long ago) asks the source for the current version and continues with it.

use std::ops::Range;

use bytes::{Bytes, BytesMut};
use futures::TryStreamExt;
use futures::future::{BoxFuture, FutureExt, Shared};
use std::sync::Arc;

use wandbfs::store::MetadataSource;
use wandbfs::store::layout::SyntheticKind;
use wandbfs::store::source::{RunRef, SyntheticBody, SyntheticObject};

use super::error::{FsError, FsResult};

/// The first piece of a sequential read (256 KiB).
const FIRST_PIECE: u64 = 256 << 10;
/// The largest piece (8 MiB).
const MAX_PIECE: u64 = 8 << 20;

type Piece = Shared<BoxFuture<'static, Result<Bytes, FsError>>>;

/// Where a handle's file comes from, to ask for its current version.
pub struct Origin {
    /// The metadata source.
    pub source: Arc<dyn MetadataSource>,
    /// The run.
    pub run: RunRef,
    /// Which file.
    pub kind: SyntheticKind,
}

/// One open handle's reader of a synthetic file.
pub struct SyntheticReader {
    object: SyntheticObject,
    origin: Origin,
    path: String,
    /// The piece being read: its range and bytes.
    current: Option<(Range<u64>, Bytes)>,
    /// The next piece, in flight.
    next: Option<(Range<u64>, Piece)>,
    piece: u64,
}

impl SyntheticReader {
    /// A reader of `object`, which came from `origin`.
    pub fn new(object: SyntheticObject, origin: Origin, path: String) -> Self {
        SyntheticReader {
            object,
            origin,
            path,
            current: None,
            next: None,
            piece: FIRST_PIECE,
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
        let current = self
            .origin
            .source
            .synthetic(&self.origin.run, self.origin.kind)
            .await
            .map_err(|e| FsError::from_store(&e))?;
        if let Some(current) = current
            && (current.size != self.object.size || current.e_tag != self.object.e_tag)
        {
            tracing::debug!(path = %self.path, from = self.object.size, to = current.size, "newer version");
            self.object = current;
            self.current = None;
            self.next = None;
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
        let mut out = BytesMut::with_capacity((end - offset) as usize);
        let mut pos = offset;
        while pos < end {
            if let Some((range, bytes)) = &self.current
                && range.contains(&pos)
            {
                let to = end.min(range.end);
                out.extend_from_slice(
                    &bytes[(pos - range.start) as usize..(to - range.start) as usize],
                );
                pos = to;
                continue;
            }
            // Not in the current piece: the prefetched one, or a fresh one at `pos`.
            let (range, piece) = match self.next.take() {
                Some((range, piece)) if range.contains(&pos) => {
                    self.piece = (self.piece * 2).min(MAX_PIECE);
                    (range, piece)
                }
                _ => {
                    // A seek (or the start): begin again with a small piece.
                    self.piece = FIRST_PIECE;
                    let range = pos..(pos + self.piece.max(end - pos)).min(self.object.size);
                    (range.clone(), self.fetch(range))
                }
            };
            let bytes = piece.await?;
            // Read ahead: the piece after this one, while this one is consumed.
            if range.end < self.object.size {
                let next = range.end..(range.end + self.piece).min(self.object.size);
                self.next = Some((next.clone(), self.fetch(next)));
            }
            self.current = Some((range, bytes));
        }
        Ok(out.freeze())
    }
}
