//! Reads of run and artifact files: ranged downloads in blocks, sequential readahead, the
//! content cache.
//!
//! A file is read in [`BLOCK_SIZE`] blocks. A read takes its blocks from the handle's
//! in-flight set, the content cache, or W&B — missing consecutive blocks in one ranged request
//! (`Range: bytes=a-b` on the file's URL), split into blocks as they arrive, each stored in the
//! cache. While reads stay sequential the handle keeps a window of blocks ahead in flight,
//! doubling from [`FIRST_WINDOW`] to [`MAX_WINDOW`] blocks (mountpoint-s3's design, scaled to
//! W&B downloads); a seek elsewhere resets it, a read arriving slightly out of order (the
//! kernel's concurrent reads) does not. The window is refilled in whole requests of up to
//! [`MAX_REQUEST_BLOCKS`] blocks, not one block per read. Prefetched blocks take permits of one global
//! budget ([`ReadBudget`]): however many files are open, readahead holds at most that many
//! bytes; blocks a read is waiting for never wait for the budget.
//!
//! Every download is checked against what the file's metadata says: the total size, and the
//! server's ETag where it is an MD5. A mismatch means the file changed upstream since it was
//! listed: the read fails with `ESTALE` rather than return (or cache) bytes of another
//! version. A refused signed URL (expired) is replaced once.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use futures::future::{BoxFuture, FutureExt, Shared};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wandbfs::client::{self, Client, FileLocation};
use wandbfs::store::MetadataSource;
use wandbfs::store::source::FileRef;

use super::cache::{BLOCK_SIZE, ContentCache, ObjectKey};
use super::error::{FsError, FsResult};

/// Blocks ahead when a handle starts reading sequentially (2 MiB).
pub const FIRST_WINDOW: u64 = 2;
/// Most blocks ahead per handle (16 MiB).
pub const MAX_WINDOW: u64 = 16;
/// Most blocks per download request (8 MiB): larger windows are several requests in flight.
const MAX_REQUEST_BLOCKS: u64 = 8;
/// How many blocks behind the furthest read a read still counts as part of a sequential
/// stream (the kernel's concurrent reads arrive slightly out of order), and how many blocks
/// behind it a handle keeps for such reads (2 MiB).
const REORDER_BLOCKS: u64 = 2;

/// The readahead budget shared by every handle of a mount, in blocks.
#[derive(Clone, Debug)]
pub struct ReadBudget(Arc<Semaphore>);

impl ReadBudget {
    /// A budget of `bytes` (at least one block).
    pub fn new(bytes: u64) -> Self {
        ReadBudget(Arc::new(Semaphore::new(
            usize::try_from((bytes / BLOCK_SIZE).max(1)).unwrap_or(usize::MAX),
        )))
    }
}

/// What a handle reads: a file with the size and digest it was opened with.
#[derive(Clone)]
pub struct RemoteFile {
    /// Which file.
    pub file: FileRef,
    /// Its path, for messages.
    pub path: String,
    /// Size when opened.
    pub size: u64,
    /// W&B's digest when opened (base64 MD5 for stored files).
    pub e_tag: Option<String>,
}

/// What remote reads need, shared by all handles.
#[derive(Clone)]
pub struct RemoteContext {
    /// Downloads.
    pub client: Client,
    /// Where files are (`locate`).
    pub source: Arc<dyn MetadataSource>,
    /// The content cache (`None`: `--no-cache`).
    pub cache: Option<ContentCache>,
    /// The readahead budget.
    pub budget: ReadBudget,
    /// Offline: what the content cache lacks cannot be read.
    pub offline: bool,
}

type BlockFuture = Shared<BoxFuture<'static, Result<Bytes, FsError>>>;

struct InFlight {
    block: BlockFuture,
    _permit: Option<OwnedSemaphorePermit>,
}

/// One open handle's reader.
pub struct RemoteReader {
    ctx: RemoteContext,
    file: Arc<RemoteFile>,
    key: Option<ObjectKey>,
    location: Arc<tokio::sync::Mutex<Option<FileLocation>>>,
    inflight: BTreeMap<u64, InFlight>,
    /// Where the next sequential read starts.
    next_offset: u64,
    /// Blocks kept ahead while sequential.
    window: u64,
}

impl RemoteReader {
    /// A reader of `file`.
    pub fn new(ctx: RemoteContext, file: RemoteFile) -> Self {
        let key = ObjectKey::of(file.e_tag.as_deref(), file.size);
        RemoteReader {
            ctx,
            key,
            file: Arc::new(file),
            location: Arc::new(tokio::sync::Mutex::new(None)),
            inflight: BTreeMap::new(),
            next_offset: 0,
            window: 0,
        }
    }

    fn blocks(&self) -> u64 {
        self.file.size.div_ceil(BLOCK_SIZE)
    }

    fn block_len(&self, index: u64) -> u64 {
        (self.file.size - index * BLOCK_SIZE).min(BLOCK_SIZE)
    }

    /// Up to `size` bytes at `offset` (fewer only at the end of the file).
    pub async fn read(&mut self, offset: u64, size: u32) -> FsResult<Bytes> {
        let end = (offset + u64::from(size)).min(self.file.size);
        if offset >= end {
            return Ok(Bytes::new());
        }
        let first = offset / BLOCK_SIZE;
        let last = (end - 1) / BLOCK_SIZE;
        let front = self.next_offset;
        let sequential = offset >= front && offset - front <= BLOCK_SIZE;
        // The kernel sends a sequential reader's reads several at a time, and they can reach
        // the handle out of order (16 of the 1,024 reads of a 1 GiB `dd`, measured). A read
        // just behind the furthest one belongs to the same stream: resetting the window there
        // dropped the blocks in flight, which were then downloaded again.
        let late =
            self.window > 0 && offset < front && front - offset <= REORDER_BLOCKS * BLOCK_SIZE;
        if sequential {
            self.window = if self.window == 0 {
                FIRST_WINDOW
            } else {
                (self.window * 2).min(MAX_WINDOW)
            };
            self.next_offset = end;
        } else if !late {
            self.window = 0;
            self.next_offset = end;
        }
        tracing::trace!(path = %self.file.path, offset, size, sequential, late, window = self.window, "read");
        // The stream's furthest block so far; the window reaches `window` blocks past it.
        let front_last = (self.next_offset.max(end) - 1) / BLOCK_SIZE;
        let ahead = (front_last + self.window).min(self.blocks().saturating_sub(1));
        // Blocks far behind the read, or (after a seek) not in the new window, are dropped.
        let keep_from = if self.window > 0 {
            first.saturating_sub(REORDER_BLOCKS)
        } else {
            first
        };
        self.inflight
            .retain(|&index, _| index >= keep_from && index <= ahead);
        self.request(first, last, false);
        if self.window > 0 && front_last < ahead {
            self.top_up(front_last, ahead);
        }
        let mut out = BytesMut::new();
        let mut single = None;
        for index in first..=last {
            let block = match self.inflight.get(&index) {
                Some(f) => f.block.clone(),
                None => {
                    return Err(FsError::io(format!(
                        "{}: block {index} lost",
                        self.file.path
                    )));
                }
            };
            let bytes = match block.await {
                Ok(bytes) => bytes,
                Err(e) => {
                    // A retry of the read fetches it again instead of repeating the error.
                    self.inflight.remove(&index);
                    return Err(e);
                }
            };
            let block_start = index * BLOCK_SIZE;
            let from = offset.max(block_start) - block_start;
            let to = end.min(block_start + bytes.len() as u64) - block_start;
            let part = bytes.slice(from as usize..to as usize);
            if first == last {
                // Within one block (the usual 1-MiB-aligned kernel read): no copy.
                single = Some(part);
            } else {
                out.reserve((end - offset) as usize);
                out.extend_from_slice(&part);
            }
        }
        // Consumed blocks need not be kept (a re-read comes from the page cache). Blocks
        // behind a sequential stream's front that were not read yet are, for a late read,
        // until they fall further behind than a late read can be.
        let consumed_to = end / BLOCK_SIZE;
        let keep_from = if self.window > 0 {
            front_last.saturating_sub(REORDER_BLOCKS)
        } else {
            consumed_to
        };
        self.inflight
            .retain(|&index, _| index >= keep_from && !(first..consumed_to).contains(&index));
        Ok(single.unwrap_or_else(|| out.freeze()))
    }

    /// Puts the missing blocks of the window (`front_last + 1..=ahead`) in flight once there
    /// are enough of them for a request worth making. Refilling after every read slid the
    /// window one block at a time, one ranged request per MiB (906 requests for a 1 GiB file,
    /// measured); waiting until half the window (at most one request's worth) is missing, and
    /// asking for whole requests only, makes requests of 8 MiB while keeping 8–16 blocks
    /// ahead. The tail of the file is fetched whatever its size.
    fn top_up(&mut self, front_last: u64, ahead: u64) {
        let missing = (front_last + 1..=ahead)
            .filter(|index| !self.inflight.contains_key(index))
            .count() as u64;
        let at_end = ahead + 1 == self.blocks();
        let step = (self.window / 2).clamp(1, MAX_REQUEST_BLOCKS);
        if missing == 0 || (missing < step && !at_end) {
            return;
        }
        let to = if at_end || missing < MAX_REQUEST_BLOCKS {
            ahead
        } else {
            ahead - missing % MAX_REQUEST_BLOCKS
        };
        self.request(front_last + 1, to, true);
    }

    /// Puts blocks `first..=last` in flight (those not already), in runs of consecutive
    /// blocks. Prefetched blocks need budget permits and stop where the budget runs out.
    fn request(&mut self, first: u64, last: u64, prefetch: bool) {
        let mut index = first;
        while index <= last {
            if self.inflight.contains_key(&index) {
                index += 1;
                continue;
            }
            let mut run = Vec::new();
            while index <= last
                && !self.inflight.contains_key(&index)
                && (run.len() as u64) < MAX_REQUEST_BLOCKS
            {
                let permit = if prefetch {
                    match Arc::clone(&self.ctx.budget.0).try_acquire_owned() {
                        Ok(p) => Some(p),
                        Err(_) => break,
                    }
                } else {
                    None
                };
                run.push((index, permit));
                index += 1;
            }
            if run.is_empty() {
                return; // Out of budget.
            }
            self.spawn_run(run);
        }
    }

    /// One task fetching consecutive blocks: each from the cache, or the missing ones in one
    /// ranged download; every block's future resolves as soon as its bytes are there.
    fn spawn_run(&mut self, run: Vec<(u64, Option<OwnedSemaphorePermit>)>) {
        let mut senders = Vec::with_capacity(run.len());
        for (index, permit) in run {
            let (tx, rx) = tokio::sync::oneshot::channel::<Result<Bytes, FsError>>();
            let block = rx
                .map(|r| r.unwrap_or_else(|_| Err(FsError::io("a block download was abandoned"))))
                .boxed()
                .shared();
            self.inflight.insert(
                index,
                InFlight {
                    block,
                    _permit: permit,
                },
            );
            senders.push((index, self.block_len(index), tx));
        }
        let ctx = self.ctx.clone();
        let file = Arc::clone(&self.file);
        let key = self.key;
        let location = Arc::clone(&self.location);
        tokio::spawn(async move {
            fetch_run(ctx, file, key, location, senders).await;
        });
    }
}

type Sender = tokio::sync::oneshot::Sender<Result<Bytes, FsError>>;

async fn fetch_run(
    ctx: RemoteContext,
    file: Arc<RemoteFile>,
    key: Option<ObjectKey>,
    location: Arc<tokio::sync::Mutex<Option<FileLocation>>>,
    senders: Vec<(u64, u64, Sender)>,
) {
    // Cached blocks first; what is missing is downloaded.
    let mut missing = Vec::new();
    for (index, len, tx) in senders {
        let cached = match (&ctx.cache, key) {
            (Some(cache), Some(key)) => {
                let cache = cache.clone();
                tokio::task::spawn_blocking(move || cache.get(&key, index, len))
                    .await
                    .ok()
                    .flatten()
            }
            _ => None,
        };
        match cached {
            Some(bytes) => {
                let _ = tx.send(Ok(bytes));
            }
            None => missing.push((index, len, tx)),
        }
    }
    // Consecutive stretches of missing blocks, one request each.
    let mut stretch: Vec<(u64, u64, Sender)> = Vec::new();
    for block in missing {
        if let Some(prev) = stretch.last()
            && prev.0 + 1 != block.0
        {
            download(&ctx, &file, key, &location, std::mem::take(&mut stretch)).await;
        }
        stretch.push(block);
    }
    if !stretch.is_empty() {
        download(&ctx, &file, key, &location, stretch).await;
    }
}

/// Whether the server's ETag contradicts W&B's MD5 of the file (both must be MD5s to tell).
fn etag_contradicts(etag: Option<&str>, md5_base64: Option<&str>) -> bool {
    let (Some(etag), Some(md5)) = (etag, md5_base64) else {
        return false;
    };
    let etag = etag.trim_start_matches("W/").trim_matches('"');
    if etag.len() != 32 || !etag.bytes().all(|b| b.is_ascii_hexdigit()) {
        return false;
    }
    let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(md5) else {
        return false;
    };
    if raw.len() != 16 {
        return false;
    }
    let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    !etag.eq_ignore_ascii_case(&hex)
}

async fn locate(
    ctx: &RemoteContext,
    file: &RemoteFile,
    location: &tokio::sync::Mutex<Option<FileLocation>>,
    fresh: bool,
) -> FsResult<FileLocation> {
    let mut known = location.lock().await;
    if !fresh && let Some(l) = known.as_ref() {
        return Ok(l.clone());
    }
    let found = ctx
        .source
        .locate(&file.file, fresh)
        .await
        .map_err(|e| FsError::from_store(&e))?;
    *known = Some(found.clone());
    Ok(found)
}

/// Downloads consecutive blocks in one ranged request and hands each out as it completes.
async fn download(
    ctx: &RemoteContext,
    file: &RemoteFile,
    key: Option<ObjectKey>,
    location: &tokio::sync::Mutex<Option<FileLocation>>,
    blocks: Vec<(u64, u64, Sender)>,
) {
    let (Some(first), Some(last)) = (blocks.first(), blocks.last()) else {
        return;
    };
    let start = first.0 * BLOCK_SIZE;
    let end = last.0 * BLOCK_SIZE + last.1;
    if ctx.offline {
        return fail(
            blocks,
            FsError::io(format!(
                "{}: bytes {start}..{end} are not in the content cache, and the mount is \
                 offline",
                file.path
            )),
        );
    }
    tracing::debug!(path = %file.path, start, end, "ranged download");
    let mut fresh = false;
    let stream = loop {
        let result = match locate(ctx, file, location, fresh).await {
            Ok(url) => ctx
                .client
                .download(&url, Some(object_store::GetRange::Bounded(start..end)))
                .await
                .map_err(|e| (e, url)),
            Err(e) => return fail(blocks, e),
        };
        match result {
            Ok(d)
                if d.info.size != file.size
                    || etag_contradicts(d.info.etag.as_deref(), file.e_tag.as_deref()) =>
            {
                return fail(
                    blocks,
                    FsError::stale(format!(
                        "{}: changed upstream since it was listed ({} bytes, now {}); \
                         reopen it",
                        file.path, file.size, d.info.size
                    )),
                );
            }
            Ok(d) => break d.stream,
            Err((client::Error::UrlExpired { .. }, _)) if !fresh => fresh = true,
            Err((e, _)) => {
                let error = FsError::from_store(&wandbfs::store::StoreError::from_client(
                    file.path.clone(),
                    e,
                ));
                return fail(blocks, error);
            }
        }
    };
    let mut stream = stream;
    // Bytes of the response not yet given to a block.
    let mut carry = Bytes::new();
    for (index, len, tx) in blocks {
        let len = len as usize;
        // A block that lies within one received chunk is a slice of it (no copy); otherwise it
        // is assembled into a buffer of exactly its size (one copy, no reallocation).
        let bytes = if carry.len() >= len {
            carry.split_to(len)
        } else {
            let mut block = BytesMut::with_capacity(len);
            block.extend_from_slice(&carry);
            carry = Bytes::new();
            loop {
                if block.len() == len {
                    break block.freeze();
                }
                match stream.next().await {
                    Some(Ok(mut chunk)) => {
                        if block.is_empty() && chunk.len() >= len {
                            // The whole block within one chunk: a slice of it, no copy.
                            carry = chunk.split_off(len);
                            break chunk;
                        }
                        let take = (len - block.len()).min(chunk.len());
                        block.extend_from_slice(&chunk[..take]);
                        carry = chunk.split_off(take);
                    }
                    Some(Err(e)) => {
                        let _ = tx.send(Err(FsError::io(format!(
                            "{}: download failed: {e}",
                            file.path
                        ))));
                        return;
                    }
                    None => {
                        let _ = tx.send(Err(FsError::io(format!(
                            "{}: the download ended early (block {index})",
                            file.path
                        ))));
                        return;
                    }
                }
            }
        };
        let _ = tx.send(Ok(bytes.clone()));
        if let (Some(cache), Some(key)) = (&ctx.cache, key) {
            // Written by the cache's own thread; waits only when the disk is far behind.
            cache.put_queued(&key, file.size, index, bytes).await;
        }
    }
}

fn fail(blocks: Vec<(u64, u64, Sender)>, error: FsError) {
    error.log("read");
    for (_, _, tx) in blocks {
        let _ = tx.send(Err(error.clone()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_contradict_only_when_both_are_md5s_that_differ() {
        let md5 = "XUFAKrxLKna5cZ2REBfFkg=="; // md5("hello")
        assert!(!etag_contradicts(
            Some("\"5d41402abc4b2a76b9719d911017c592\""),
            Some(md5)
        ));
        assert!(etag_contradicts(
            Some("\"00000000000000000000000000000000\""),
            Some(md5)
        ));
        assert!(
            !etag_contradicts(Some("\"abc-2\""), Some(md5)),
            "multipart ETag"
        );
        assert!(!etag_contradicts(None, Some(md5)));
        assert!(!etag_contradicts(
            Some("\"5d41402abc4b2a76b9719d911017c592\""),
            None
        ));
    }
}
