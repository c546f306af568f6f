//! The on-disk content cache of run and artifact files.
//!
//! Content is keyed by the file's **digest and size** (W&B's MD5 and `sizeBytes`), never by its
//! path: the same checkpoint in two runs is cached once, a file re-uploaded with new content
//! gets a new key (so a changed file is never served from the old one's bytes), and the cache
//! survives remounts — a second `cat` of a file costs no request, also after a remount.
//!
//! **One file per object, bytes at their own offsets** (`<dir>/v2/<key[0..2]>/<key>.part`, a
//! sparse file), filled in [`BLOCK_SIZE`] blocks as they are downloaded, in any order. Next to
//! it, an append-only log (`<key>.log`) records each block written — its index, length and a
//! CRC32 of its bytes — *after* the bytes are written: a block is served only when the log has
//! it and its bytes still match the checksum, so a torn or lost write is a miss (downloaded
//! again), never wrong bytes. When the last block is in, every block is read back and checked,
//! and the file becomes **complete** (`<key>.obj`, the log removed): a plain, contiguous,
//! verified copy of the object, which the mount hands to the kernel as a FUSE passthrough
//! backing file (reads at local-disk speed, no daemon request), and reads through the daemon
//! take straight from it.
//!
//! Eviction is least-recently-used **by object**, to stay under the configured size (an open
//! backing file stays readable after its object is evicted: it is only unlinked). The index is
//! rebuilt from the directory at start (recency from the files' modification times). Caches of
//! the earlier layout (`v1/`, a file per block) are removed at start.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::Write as _;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use md5::{Digest as _, Md5};

/// Bytes per block (1 MiB): the unit of downloads, checksums and partial objects. Large enough
/// that a GiB is 1,024 log records, small enough that a random read fetches little it does not
/// need.
pub const BLOCK_SIZE: u64 = 1 << 20;

const LOG_MAGIC: &[u8; 8] = b"WFSLOG02";
/// Log header: magic, key, object size.
const LOG_HEADER: usize = 8 + 16 + 8;
/// Log record: block index, length, CRC32 of the bytes, CRC32 of the record's first 16 bytes.
const LOG_RECORD: usize = 8 + 4 + 4 + 4;

/// A cached object's identity: digest and size.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey(pub [u8; 16]);

impl ObjectKey {
    /// The key of the object with digest `e_tag` and `size`; `None` without a digest (nothing
    /// identifies the content then, so it is not cached).
    pub fn of(e_tag: Option<&str>, size: u64) -> Option<ObjectKey> {
        let e_tag = e_tag?;
        let mut hasher = Md5::new();
        hasher.update(e_tag.as_bytes());
        hasher.update([0]);
        hasher.update(size.to_le_bytes());
        Some(ObjectKey(hasher.finalize().into()))
    }

    fn hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn parse(hex: &str) -> Option<ObjectKey> {
        if hex.len() != 32 {
            return None;
        }
        let mut out = [0u8; 16];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(ObjectKey(out))
    }
}

/// A block of a partial object: its length and checksum.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Block {
    len: u32,
    crc: u32,
    /// Written by this process (its bytes went through the page cache after the write
    /// returned): only blocks recorded before a restart can have been torn by a crash, and
    /// only those are read back when the object completes.
    fresh: bool,
}

enum State {
    /// Being filled: the blocks the log has.
    Partial {
        data: Arc<File>,
        log: File,
        blocks: HashMap<u64, Block>,
    },
    /// Every block is in and was checked; the last block's writer is reading it all back.
    Verifying { data: Arc<File> },
    /// Verified: `<key>.obj`.
    Complete { data: Arc<File> },
}

struct Object {
    /// The object's size.
    size: u64,
    /// Bytes held on disk (blocks so far, or the size).
    held: u64,
    /// Recency tick.
    tick: u64,
    /// Which incarnation (an evicted and re-added object is another).
    id: u64,
    state: State,
}

#[derive(Default)]
struct Index {
    objects: HashMap<ObjectKey, Object>,
    /// Recency tick → object (least recent first).
    order: BTreeMap<u64, ObjectKey>,
    total: u64,
    tick: u64,
    next_id: u64,
}

impl Index {
    fn touch(&mut self, key: &ObjectKey) {
        self.tick += 1;
        let tick = self.tick;
        if let Some(object) = self.objects.get_mut(key) {
            self.order.remove(&object.tick);
            object.tick = tick;
            self.order.insert(tick, *key);
        }
    }

    fn insert(&mut self, key: ObjectKey, size: u64, held: u64, state: State) -> u64 {
        self.remove(&key);
        self.tick += 1;
        self.next_id += 1;
        let (tick, id) = (self.tick, self.next_id);
        self.objects.insert(
            key,
            Object {
                size,
                held,
                tick,
                id,
                state,
            },
        );
        self.order.insert(tick, key);
        self.total += held;
        id
    }

    fn remove(&mut self, key: &ObjectKey) -> Option<Object> {
        let object = self.objects.remove(key)?;
        self.order.remove(&object.tick);
        self.total -= object.held;
        Some(object)
    }
}

/// The content cache (see the module docs). Cheap to clone.
#[derive(Clone)]
pub struct ContentCache {
    inner: Arc<Inner>,
}

struct Inner {
    root: PathBuf,
    limit: u64,
    index: Mutex<Index>,
    /// Blocks waiting for the writer thread ([`ContentCache::put_queued`]), each holding
    /// its share of `room`.
    queue: std::sync::mpsc::Sender<(ObjectKey, u64, u64, Bytes, QueuePermit)>,
    /// Room in the queue, in KiB.
    room: Arc<tokio::sync::Semaphore>,
}

type QueuePermit = tokio::sync::OwnedSemaphorePermit;

/// Most bytes of blocks waiting to be written (32 MiB): enough to ride out the disk's hiccups
/// without slowing a download; beyond it, downloads wait for the disk (measured: dropping
/// blocks instead left a cold-read file incomplete on a busy machine, so its next read went
/// back to W&B for the holes and could not pass through).
pub const WRITE_QUEUE_BYTES: u64 = 32 << 20;

impl std::fmt::Debug for ContentCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContentCache")
            .field("root", &self.inner.root)
            .field("limit", &self.inner.limit)
            .finish()
    }
}

fn blocks_of(size: u64) -> u64 {
    size.div_ceil(BLOCK_SIZE)
}

fn block_len(size: u64, index: u64) -> u64 {
    size.saturating_sub(index * BLOCK_SIZE).min(BLOCK_SIZE)
}

fn log_header(key: &ObjectKey, size: u64) -> [u8; LOG_HEADER] {
    let mut h = [0u8; LOG_HEADER];
    h[..8].copy_from_slice(LOG_MAGIC);
    h[8..24].copy_from_slice(&key.0);
    h[24..32].copy_from_slice(&size.to_le_bytes());
    h
}

fn log_record(index: u64, block: Block) -> [u8; LOG_RECORD] {
    let mut r = [0u8; LOG_RECORD];
    r[..8].copy_from_slice(&index.to_le_bytes());
    r[8..12].copy_from_slice(&block.len.to_le_bytes());
    r[12..16].copy_from_slice(&block.crc.to_le_bytes());
    let check = crc32fast::hash(&r[..16]);
    r[16..20].copy_from_slice(&check.to_le_bytes());
    r
}

/// The blocks a log records for `key` of `size` (a torn last record ends the replay); `None`
/// when the log is not one of this object's.
fn replay_log(bytes: &[u8], key: &ObjectKey) -> Option<(u64, HashMap<u64, Block>)> {
    if bytes.len() < LOG_HEADER || &bytes[..8] != LOG_MAGIC || bytes[8..24] != key.0 {
        return None;
    }
    let size = u64::from_le_bytes(bytes[24..32].try_into().ok()?);
    let mut blocks = HashMap::new();
    for record in bytes[LOG_HEADER..].chunks_exact(LOG_RECORD) {
        let check = u32::from_le_bytes(record[16..20].try_into().ok()?);
        if crc32fast::hash(&record[..16]) != check {
            break;
        }
        let index = u64::from_le_bytes(record[..8].try_into().ok()?);
        let block = Block {
            len: u32::from_le_bytes(record[8..12].try_into().ok()?),
            crc: u32::from_le_bytes(record[12..16].try_into().ok()?),
            fresh: false,
        };
        if index < blocks_of(size) && u64::from(block.len) == block_len(size, index) {
            blocks.insert(index, block);
        }
    }
    Some((size, blocks))
}

impl ContentCache {
    /// Opens (creating it when needed) the cache under `dir`, holding at most `limit` bytes.
    /// Scans what is there (blocking: call it before serving).
    pub fn open(dir: &Path, limit: u64) -> std::io::Result<ContentCache> {
        let old = dir.join("v1");
        if old.is_dir() {
            // The earlier layout (a file per block): its blocks are not worth converting.
            std::thread::spawn(move || {
                if let Err(e) = std::fs::remove_dir_all(&old) {
                    tracing::warn!("removing the old content cache {}: {e}", old.display());
                }
            });
        }
        let root = dir.join("v2");
        std::fs::create_dir_all(&root)?;
        let mut found: Vec<(std::time::SystemTime, ObjectKey, u64, u64, State)> = Vec::new();
        for shard in std::fs::read_dir(&root)? {
            let shard = shard?.path();
            if !shard.is_dir() {
                continue;
            }
            for entry in std::fs::read_dir(&shard)? {
                let path = entry?.path();
                let (Some(stem), Some(ext)) = (
                    path.file_stem().and_then(|s| s.to_str()),
                    path.extension().and_then(|s| s.to_str()),
                ) else {
                    continue;
                };
                let Some(key) = ObjectKey::parse(stem) else {
                    // A temporary file of an interrupted write.
                    let _ = std::fs::remove_file(&path);
                    continue;
                };
                match ext {
                    "obj" => {
                        let data = File::open(&path)?;
                        let meta = data.metadata()?;
                        let modified = meta.modified().unwrap_or(std::time::UNIX_EPOCH);
                        let data = Arc::new(data);
                        found.push((
                            modified,
                            key,
                            meta.len(),
                            meta.len(),
                            State::Complete { data },
                        ));
                    }
                    "part" => {
                        let log_path = path.with_extension("log");
                        let replayed = std::fs::read(&log_path)
                            .ok()
                            .and_then(|bytes| replay_log(&bytes, &key));
                        let Some((size, blocks)) = replayed else {
                            let _ = std::fs::remove_file(&path);
                            let _ = std::fs::remove_file(&log_path);
                            continue;
                        };
                        let data = std::fs::OpenOptions::new()
                            .read(true)
                            .write(true)
                            .open(&path)?;
                        let modified = data
                            .metadata()
                            .and_then(|m| m.modified())
                            .unwrap_or(std::time::UNIX_EPOCH);
                        let log = std::fs::OpenOptions::new().append(true).open(&log_path)?;
                        let held = blocks.values().map(|b| u64::from(b.len)).sum();
                        found.push((
                            modified,
                            key,
                            size,
                            held,
                            State::Partial {
                                data: Arc::new(data),
                                log,
                                blocks,
                            },
                        ));
                    }
                    "log" if !path.with_extension("part").exists() => {
                        let _ = std::fs::remove_file(&path);
                    }
                    _ => {}
                }
            }
        }
        found.sort_by_key(|(modified, ..)| *modified);
        let mut index = Index::default();
        for (_, key, size, held, state) in found {
            index.insert(key, size, held, state);
        }
        let (queue, blocks) = std::sync::mpsc::channel();
        let cache = ContentCache {
            inner: Arc::new(Inner {
                root,
                limit,
                index: Mutex::new(index),
                queue,
                room: Arc::new(tokio::sync::Semaphore::new(
                    (WRITE_QUEUE_BYTES >> 10) as usize,
                )),
            }),
        };
        cache.evict();
        let weak = Arc::downgrade(&cache.inner);
        std::thread::Builder::new()
            .name("wandbfs-cache".into())
            .spawn(move || {
                // Ends when the cache (and so the sending end) is dropped.
                for (key, size, index, bytes, permit) in blocks {
                    let Some(inner) = weak.upgrade() else {
                        return;
                    };
                    ContentCache { inner }.put(&key, size, index, &bytes);
                    drop(permit);
                }
            })?;
        Ok(cache)
    }

    /// Queues block `index` of `key` for the cache's writer thread, waiting while
    /// [`WRITE_QUEUE_BYTES`] are already queued. One thread writes them all, in order: a thread
    /// per block contended for the file's inode lock (a cold read at a third of its speed
    /// without the cache, measured).
    pub async fn put_queued(&self, key: &ObjectKey, size: u64, index: u64, bytes: Bytes) {
        let kib = u32::try_from(bytes.len().div_ceil(1024)).unwrap_or(u32::MAX);
        let Ok(permit) = Arc::clone(&self.inner.room).acquire_many_owned(kib).await else {
            return;
        };
        let _ = self.inner.queue.send((*key, size, index, bytes, permit));
    }

    /// Bytes held.
    pub fn used(&self) -> u64 {
        self.index().total
    }

    /// The configured limit.
    pub fn limit(&self) -> u64 {
        self.inner.limit
    }

    fn index(&self) -> std::sync::MutexGuard<'_, Index> {
        self.inner.index.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn path(&self, key: &ObjectKey, ext: &str) -> PathBuf {
        let hex = key.hex();
        self.inner.root.join(&hex[..2]).join(format!("{hex}.{ext}"))
    }

    /// Block `index` of `key`, exactly `len` bytes long, if cached and intact (blocking).
    pub fn get(&self, key: &ObjectKey, index: u64, len: u64) -> Option<Bytes> {
        let (data, expected) = {
            let mut idx = self.index();
            let object = idx.objects.get(key)?;
            if block_len(object.size, index) != len || len == 0 {
                // Another length than the block has: a caller's mistake, a miss.
                return None;
            }
            let found = match &object.state {
                State::Partial { data, blocks, .. } => {
                    let block = *blocks.get(&index)?;
                    (Arc::clone(data), Some(block))
                }
                State::Verifying { data } | State::Complete { data } => (Arc::clone(data), None),
            };
            idx.touch(key);
            found
        };
        let mut buf = vec![0u8; len as usize];
        if let Err(e) = data.read_exact_at(&mut buf, index * BLOCK_SIZE) {
            tracing::warn!("reading cached block {index} of {}: {e}", key.hex());
            self.drop_object(key);
            return None;
        }
        if let Some(block) = expected
            && crc32fast::hash(&buf) != block.crc
        {
            tracing::warn!("cached block {index} of {} is damaged; dropped", key.hex());
            let mut idx = self.index();
            let mut dropped = 0;
            if let Some(object) = idx.objects.get_mut(key)
                && let State::Partial { blocks, .. } = &mut object.state
                && blocks.remove(&index).is_some()
            {
                object.held -= len;
                dropped = len;
            }
            idx.total -= dropped;
            return None;
        }
        Some(Bytes::from(buf))
    }

    /// Stores block `index` of the object `key` of `size` bytes (blocking). When it is the last
    /// one missing, the object is verified and becomes complete. Failures only cost the cache
    /// entry.
    pub fn put(&self, key: &ObjectKey, size: u64, index: u64, data: &[u8]) {
        if data.len() as u64 != block_len(size, index) || data.is_empty() || size > self.inner.limit
        {
            return;
        }
        if let Err(e) = self.put_block(key, size, index, data) {
            tracing::warn!("caching block {index} of {}: {e}", key.hex());
            self.drop_object(key);
        }
        self.evict();
    }

    fn put_block(
        &self,
        key: &ObjectKey,
        size: u64,
        index: u64,
        bytes: &[u8],
    ) -> std::io::Result<()> {
        // The object's files, created on its first block.
        let (data, id) = {
            let idx = self.index();
            match idx.objects.get(key) {
                Some(Object {
                    state: State::Partial { data, blocks, .. },
                    id,
                    ..
                }) if !blocks.contains_key(&index) => (Arc::clone(data), *id),
                Some(_) => return Ok(()), // Already there.
                None => {
                    drop(idx);
                    let (data, log) = self.create_object(key, size)?;
                    let data = Arc::new(data);
                    let mut idx = self.index();
                    if idx.objects.contains_key(key) {
                        // Another writer created it meanwhile: write through theirs.
                        return Ok(());
                    }
                    let state = State::Partial {
                        data: Arc::clone(&data),
                        log,
                        blocks: HashMap::new(),
                    };
                    let id = idx.insert(*key, size, 0, state);
                    (data, id)
                }
            }
        };
        // The bytes first, then the record: a record always follows its bytes.
        data.write_all_at(bytes, index * BLOCK_SIZE)?;
        let block = Block {
            len: bytes.len() as u32,
            crc: crc32fast::hash(bytes),
            fresh: true,
        };
        let full = {
            let mut idx = self.index();
            let Some(object) = idx.objects.get_mut(key).filter(|o| o.id == id) else {
                return Ok(()); // Evicted meanwhile.
            };
            let State::Partial { log, blocks, .. } = &mut object.state else {
                return Ok(());
            };
            if blocks.contains_key(&index) {
                return Ok(());
            }
            log.write_all(&log_record(index, block))?;
            blocks.insert(index, block);
            object.held += u64::from(block.len);
            let full = blocks.len() as u64 == blocks_of(object.size);
            let blocks = if full {
                match std::mem::replace(
                    &mut object.state,
                    State::Verifying {
                        data: Arc::clone(&data),
                    },
                ) {
                    State::Partial { blocks, .. } => Some(blocks),
                    _ => None,
                }
            } else {
                None
            };
            idx.total += u64::from(block.len);
            blocks
        };
        if let Some(blocks) = full {
            self.complete(key, id, &data, size, &blocks);
        }
        Ok(())
    }

    fn create_object(&self, key: &ObjectKey, size: u64) -> std::io::Result<(File, File)> {
        let part = self.path(key, "part");
        if let Some(dir) = part.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let data = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&part)?;
        data.set_len(size)?;
        let mut log = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(self.path(key, "log"))?;
        log.write_all(&log_header(key, size))?;
        Ok((data, log))
    }

    /// Reads back and checks every block written before a restart (see [`Block::fresh`]); a
    /// complete object becomes `<key>.obj`.
    fn complete(
        &self,
        key: &ObjectKey,
        id: u64,
        data: &Arc<File>,
        size: u64,
        blocks: &HashMap<u64, Block>,
    ) {
        let mut buf = vec![0u8; BLOCK_SIZE as usize];
        for index in 0..blocks_of(size) {
            let len = block_len(size, index) as usize;
            let ok = blocks.get(&index).is_some_and(|block| {
                block.fresh
                    || (data
                        .read_exact_at(&mut buf[..len], index * BLOCK_SIZE)
                        .is_ok()
                        && crc32fast::hash(&buf[..len]) == block.crc)
            });
            if !ok {
                tracing::warn!("cached object {} failed its check; dropped", key.hex());
                self.drop_object(key);
                return;
            }
        }
        let renamed = std::fs::rename(self.path(key, "part"), self.path(key, "obj"));
        let mut idx = self.index();
        let Some(object) = idx.objects.get_mut(key).filter(|o| o.id == id) else {
            // Evicted meanwhile: whatever was renamed goes too.
            let _ = std::fs::remove_file(self.path(key, "obj"));
            return;
        };
        match renamed {
            Ok(()) => {
                object.state = State::Complete {
                    data: Arc::clone(data),
                };
                drop(idx);
                let _ = std::fs::remove_file(self.path(key, "log"));
                tracing::debug!(object = %key.hex(), bytes = size, "cached object complete");
            }
            Err(e) => {
                drop(idx);
                tracing::warn!("completing cached object {}: {e}", key.hex());
                self.drop_object(key);
            }
        }
    }

    /// The complete, verified copy of `key`, opened read-only (for a passthrough backing
    /// file), if there is one (blocking).
    pub fn complete_file(&self, key: &ObjectKey) -> Option<File> {
        {
            let mut idx = self.index();
            if !matches!(idx.objects.get(key)?.state, State::Complete { .. }) {
                return None;
            }
            idx.touch(key);
        }
        let path = self.path(key, "obj");
        let file = File::open(&path).ok()?;
        // Recency survives a restart through the modification time.
        let _ = file.set_modified(std::time::SystemTime::now());
        Some(file)
    }

    /// Whether the object is complete in the cache.
    pub fn is_complete(&self, key: &ObjectKey) -> bool {
        self.index()
            .objects
            .get(key)
            .is_some_and(|o| matches!(o.state, State::Complete { .. }))
    }

    fn drop_object(&self, key: &ObjectKey) {
        let removed = self.index().remove(key);
        if removed.is_some() {
            for ext in ["part", "log", "obj"] {
                let _ = std::fs::remove_file(self.path(key, ext));
            }
        }
    }

    fn evict(&self) {
        loop {
            let victim = {
                let mut idx = self.index();
                if idx.total <= self.inner.limit {
                    return;
                }
                let Some(key) = idx.order.values().next().copied() else {
                    return;
                };
                idx.remove(&key);
                key
            };
            for ext in ["part", "log", "obj"] {
                let _ = std::fs::remove_file(self.path(&victim, ext));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: usize = BLOCK_SIZE as usize;

    fn bytes(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31) ^ seed)
            .collect()
    }

    #[test]
    fn blocks_round_trip_complete_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let size = (2 * B + 10) as u64;
        let key = ObjectKey::of(Some("md5"), size).unwrap();
        let cache = ContentCache::open(dir.path(), 1 << 30).unwrap();
        let blocks = [bytes(B, 1), bytes(B, 2), bytes(10, 3)];
        // Out of order, as concurrent downloads write them.
        cache.put(&key, size, 2, &blocks[2]);
        cache.put(&key, size, 0, &blocks[0]);
        assert_eq!(cache.get(&key, 2, 10).unwrap(), blocks[2]);
        assert!(cache.get(&key, 1, B as u64).is_none(), "not there yet");
        assert!(
            cache.get(&key, 2, 9).is_none(),
            "a length mismatch is a miss"
        );
        assert!(!cache.is_complete(&key));

        // A partial object survives a restart (the log).
        let reopened = ContentCache::open(dir.path(), 1 << 30).unwrap();
        assert_eq!(reopened.get(&key, 0, B as u64).unwrap(), blocks[0]);
        reopened.put(&key, size, 1, &blocks[1]);
        assert!(reopened.is_complete(&key));
        let mut whole = Vec::new();
        std::io::Read::read_to_end(&mut reopened.complete_file(&key).unwrap(), &mut whole).unwrap();
        assert_eq!(whole, blocks.concat(), "the complete file is the object");
        assert!(!reopened.path(&key, "log").exists());

        let again = ContentCache::open(dir.path(), 1 << 30).unwrap();
        assert!(again.is_complete(&key));
        assert_eq!(again.get(&key, 1, B as u64).unwrap(), blocks[1]);
        assert_eq!(again.used(), size);
    }

    #[test]
    fn a_damaged_block_is_a_miss_and_a_torn_log_ends_the_replay() {
        let dir = tempfile::tempdir().unwrap();
        let size = (3 * B) as u64;
        let key = ObjectKey::of(Some("x"), size).unwrap();
        let cache = ContentCache::open(dir.path(), 1 << 30).unwrap();
        cache.put(&key, size, 0, &bytes(B, 1));
        cache.put(&key, size, 1, &bytes(B, 2));
        // Damage block 0's bytes on disk.
        let part = cache.path(&key, "part");
        let file = std::fs::OpenOptions::new().write(true).open(&part).unwrap();
        file.write_all_at(b"!", 5).unwrap();
        assert!(cache.get(&key, 0, B as u64).is_none(), "damaged: a miss");
        assert_eq!(cache.get(&key, 1, B as u64).unwrap(), bytes(B, 2));
        assert_eq!(cache.used(), B as u64, "the damaged block no longer counts");

        // A torn last record: the replay keeps what came before.
        let log = cache.path(&key, "log");
        let mut text = std::fs::read(&log).unwrap();
        let len = text.len();
        text.truncate(len - 3);
        std::fs::write(&log, text).unwrap();
        let reopened = ContentCache::open(dir.path(), 1 << 30).unwrap();
        assert!(
            reopened.get(&key, 1, B as u64).is_none(),
            "its record was torn"
        );
        // Block 0's record survived, its bytes did not: still a miss.
        assert!(reopened.get(&key, 0, B as u64).is_none());
    }

    #[test]
    fn completion_checks_the_blocks_from_before_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let size = (2 * B) as u64;
        let key = ObjectKey::of(Some("y"), size).unwrap();
        let cache = ContentCache::open(dir.path(), 1 << 30).unwrap();
        cache.put(&key, size, 0, &bytes(B, 1));
        // A crash tore block 0 after its record was written; the cache restarts.
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(cache.path(&key, "part"))
            .unwrap();
        file.write_all_at(b"!", 7).unwrap();
        drop(cache);
        let cache = ContentCache::open(dir.path(), 1 << 30).unwrap();
        cache.put(&key, size, 1, &bytes(B, 2));
        assert!(!cache.is_complete(&key), "a damaged block fails the check");
        assert!(cache.complete_file(&key).is_none());
        assert_eq!(cache.used(), 0, "the object was dropped");
    }

    #[test]
    fn least_recently_used_objects_go_first() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ContentCache::open(dir.path(), 3 * 10).unwrap();
        let keys: Vec<_> = (0..4)
            .map(|i| ObjectKey::of(Some(&format!("k{i}")), 10).unwrap())
            .collect();
        for key in &keys[..3] {
            cache.put(key, 10, 0, &bytes(10, 0));
        }
        assert!(cache.get(&keys[0], 0, 10).is_some()); // 0 is now the most recent
        cache.put(&keys[3], 10, 0, &bytes(10, 0));
        assert!(
            cache.get(&keys[1], 0, 10).is_none(),
            "1 was the least recent"
        );
        for i in [0, 2, 3] {
            assert!(cache.get(&keys[i], 0, 10).is_some(), "object {i}");
        }
        assert_eq!(cache.used(), 30);
    }
}
