//! The on-disk content cache of run and artifact files.
//!
//! Content is cached in blocks of [`BLOCK_SIZE`] bytes, keyed by the file's **digest and size**
//! (W&B's MD5 and `sizeBytes`), never by its path: the same checkpoint in two runs is cached
//! once, a file re-uploaded with new content gets a new key (so a changed file is never served
//! from the old one's blocks), and the cache survives remounts — a second `cat` of a file costs
//! no request, also after a remount.
//!
//! Each block is one file, `<dir>/v1/<key[0..2]>/<key>/<index>`, written to a temporary name
//! and renamed into place, with a header naming its key, index and length and a CRC32 of the
//! bytes. A block is served only when its header matches what is asked and its checksum holds:
//! a torn or foreign block is a miss (and deleted), never wrong bytes; a short block is served
//! only as the file's last block, whose length is known. Eviction is least-recently-used by
//! block, to stay under the configured size; the index is rebuilt from the directory at start
//! (recency from the files' modification times).

use std::collections::{BTreeMap, HashMap};
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use md5::{Digest as _, Md5};

/// Bytes per cached block (1 MiB): large enough that a GiB is 1,024 files, small enough that a
/// random read fetches little it does not need.
pub const BLOCK_SIZE: u64 = 1 << 20;

const MAGIC: &[u8; 8] = b"WFSBLK01";
const HEADER: usize = 8 + 16 + 8 + 4 + 4;

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

type BlockId = (ObjectKey, u64);

#[derive(Default)]
struct Index {
    /// Block → (bytes on disk, recency tick).
    blocks: HashMap<BlockId, (u64, u64)>,
    /// Recency tick → block (least recent first).
    order: BTreeMap<u64, BlockId>,
    total: u64,
    tick: u64,
}

impl Index {
    fn touch(&mut self, id: BlockId) {
        self.tick += 1;
        let tick = self.tick;
        if let Some((_, old)) = self.blocks.get_mut(&id) {
            self.order.remove(old);
            *old = tick;
            self.order.insert(tick, id);
        }
    }

    fn insert(&mut self, id: BlockId, bytes: u64) {
        self.remove(&id);
        self.tick += 1;
        self.blocks.insert(id, (bytes, self.tick));
        self.order.insert(self.tick, id);
        self.total += bytes;
    }

    fn remove(&mut self, id: &BlockId) {
        if let Some((bytes, tick)) = self.blocks.remove(id) {
            self.order.remove(&tick);
            self.total -= bytes;
        }
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
}

impl std::fmt::Debug for ContentCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContentCache")
            .field("root", &self.inner.root)
            .field("limit", &self.inner.limit)
            .finish()
    }
}

impl ContentCache {
    /// Opens (creating it when needed) the cache under `dir`, holding at most `limit` bytes.
    /// Scans what is there (blocking: call it before serving).
    pub fn open(dir: &Path, limit: u64) -> std::io::Result<ContentCache> {
        let root = dir.join("v1");
        std::fs::create_dir_all(&root)?;
        let mut found = Vec::new();
        for shard in std::fs::read_dir(&root)? {
            let shard = shard?.path();
            if !shard.is_dir() {
                continue;
            }
            for object in std::fs::read_dir(&shard)? {
                let object = object?.path();
                let Some(key) = object
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(ObjectKey::parse)
                else {
                    continue;
                };
                for block in std::fs::read_dir(&object)? {
                    let block = block?;
                    let name = block.file_name();
                    let Some(index) = name.to_str().and_then(|n| n.parse::<u64>().ok()) else {
                        // A temporary file of an interrupted write.
                        let _ = std::fs::remove_file(block.path());
                        continue;
                    };
                    let meta = block.metadata()?;
                    let modified = meta.modified().unwrap_or(std::time::UNIX_EPOCH);
                    found.push((modified, (key, index), meta.len()));
                }
            }
        }
        found.sort_by_key(|(modified, ..)| *modified);
        let mut index = Index::default();
        for (_, id, bytes) in found {
            index.insert(id, bytes);
        }
        let cache = ContentCache {
            inner: Arc::new(Inner {
                root,
                limit,
                index: Mutex::new(index),
            }),
        };
        cache.evict();
        Ok(cache)
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

    fn block_path(&self, key: &ObjectKey, index: u64) -> PathBuf {
        let hex = key.hex();
        self.inner
            .root
            .join(&hex[..2])
            .join(&hex)
            .join(index.to_string())
    }

    /// Block `index` of `key`, exactly `len` bytes long, if cached and intact (blocking).
    pub fn get(&self, key: &ObjectKey, index: u64, len: u64) -> Option<Bytes> {
        let id = (*key, index);
        if !self.index().blocks.contains_key(&id) {
            return None;
        }
        let path = self.block_path(key, index);
        match read_block(&path, key, index) {
            // Another length than asked for: not this block (a key holds its size, so only a
            // caller's mistake gets here); a miss, the block stays.
            Some(bytes) if bytes.len() as u64 != len => None,
            Some(bytes) => {
                self.index().touch(id);
                Some(bytes)
            }
            None => {
                tracing::warn!(
                    "cache block {} is damaged or foreign; dropped",
                    path.display()
                );
                let _ = std::fs::remove_file(&path);
                self.index().remove(&id);
                None
            }
        }
    }

    /// Stores block `index` of `key` (blocking). Failures only cost the cache entry.
    pub fn put(&self, key: &ObjectKey, index: u64, data: &[u8]) {
        if data.len() as u64 > self.inner.limit {
            return;
        }
        let path = self.block_path(key, index);
        match write_block(&path, key, index, data) {
            Ok(bytes) => {
                self.index().insert((*key, index), bytes);
                self.evict();
            }
            Err(e) => tracing::warn!("writing cache block {}: {e}", path.display()),
        }
    }

    fn evict(&self) {
        loop {
            let victim = {
                let mut index = self.index();
                if index.total <= self.inner.limit {
                    return;
                }
                let Some((_, id)) = index.order.iter().next().map(|(t, id)| (*t, *id)) else {
                    return;
                };
                index.remove(&id);
                id
            };
            let path = self.block_path(&victim.0, victim.1);
            let _ = std::fs::remove_file(&path);
            if let Some(dir) = path.parent() {
                // Succeeds only once the object's last block is gone.
                let _ = std::fs::remove_dir(dir);
            }
        }
    }
}

fn header(key: &ObjectKey, index: u64, data: &[u8]) -> [u8; HEADER] {
    let mut h = [0u8; HEADER];
    h[..8].copy_from_slice(MAGIC);
    h[8..24].copy_from_slice(&key.0);
    h[24..32].copy_from_slice(&index.to_le_bytes());
    h[32..36].copy_from_slice(&(data.len() as u32).to_le_bytes());
    h[36..40].copy_from_slice(&crc32fast::hash(data).to_le_bytes());
    h
}

fn write_block(path: &Path, key: &ObjectKey, index: u64, data: &[u8]) -> std::io::Result<u64> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".tmp-{}-{}-{index}",
        std::process::id(),
        rand::random::<u32>()
    ));
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(&header(key, index, data))?;
    file.write_all(data)?;
    drop(file);
    if let Err(e) = std::fs::rename(&tmp, path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    Ok((HEADER + data.len()) as u64)
}

/// The block's bytes when the file is intact (its header names `key` and `index`, and the
/// length and checksum match); `None` when it is damaged or foreign.
fn read_block(path: &Path, key: &ObjectKey, index: u64) -> Option<Bytes> {
    let mut file = std::fs::File::open(path).ok()?;
    let mut buf = Vec::new();
    file.read_to_end(&mut buf).ok()?;
    if buf.len() < HEADER {
        return None;
    }
    let data = &buf[HEADER..];
    if buf[..HEADER] != header(key, index, data) {
        return None;
    }
    Some(Bytes::from(buf).slice(HEADER..))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_round_trip_survive_reopening_and_are_verified() {
        let dir = tempfile::tempdir().unwrap();
        let key = ObjectKey::of(Some("md5"), 10).unwrap();
        let cache = ContentCache::open(dir.path(), 1 << 30).unwrap();
        cache.put(&key, 0, b"0123456789");
        assert_eq!(cache.get(&key, 0, 10).unwrap(), "0123456789");
        assert!(
            cache.get(&key, 0, 9).is_none(),
            "a length mismatch is a miss"
        );
        let other = ObjectKey::of(Some("md5"), 11).unwrap();
        assert!(cache.get(&other, 0, 10).is_none(), "keys include the size");

        let reopened = ContentCache::open(dir.path(), 1 << 30).unwrap();
        assert_eq!(reopened.get(&key, 0, 10).unwrap(), "0123456789");

        // A damaged block is dropped, not served.
        let path = reopened.block_path(&key, 0);
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&path, bytes).unwrap();
        assert!(reopened.get(&key, 0, 10).is_none());
        assert!(!path.exists());
    }

    #[test]
    fn least_recently_used_blocks_go_first() {
        let dir = tempfile::tempdir().unwrap();
        let key = ObjectKey::of(Some("x"), 100).unwrap();
        let block = (HEADER + 10) as u64;
        let cache = ContentCache::open(dir.path(), 3 * block).unwrap();
        for i in 0..3 {
            cache.put(&key, i, &[i as u8; 10]);
        }
        assert!(cache.get(&key, 0, 10).is_some()); // 0 is now the most recent
        cache.put(&key, 3, &[3; 10]);
        assert!(cache.get(&key, 1, 10).is_none(), "1 was the least recent");
        for i in [0, 2, 3] {
            assert!(cache.get(&key, i, 10).is_some(), "block {i}");
        }
        assert_eq!(cache.used(), 3 * block);
    }
}
