//! Inode numbers: stable for the same object across remounts, and the kernel's lookup counts.
//!
//! An entry's inode number is derived from its path in the tree (the first 8 bytes of an MD5
//! of the path, top bit clear), so the same run file has the same `st_ino` after a remount
//! of the same mirror, whichever order it is looked up in; `find`, `rsync` and `tar` see stable
//! identities. A collision (two paths hashing alike: ~1 in 2^31 for 65,000 entries) is resolved
//! by probing the next number, so correctness never depends on the hash. The mount's root is
//! always inode 1.
//!
//! The table holds what the kernel references: an inode is added by `lookup`/`readdirplus`
//! (each counts one kernel reference) and removed when `forget` brings its count to zero.

use std::collections::HashMap;
use std::sync::Mutex;

use md5::{Digest as _, Md5};
use object_store::path::Path;

use super::attr::Attr;

/// The root inode.
pub const ROOT_INO: u64 = 1;

/// What the table knows of one inode.
#[derive(Clone, Debug)]
pub struct Inode {
    /// The entry's path in the tree.
    pub path: Path,
    /// The parent's inode (the root's is itself).
    pub parent: u64,
    /// Its last known attributes.
    pub attr: Attr,
}

struct Slot {
    inode: Inode,
    lookups: u64,
}

/// The inode table.
pub struct InodeTable {
    inner: Mutex<Tables>,
}

struct Tables {
    by_ino: HashMap<u64, Slot>,
    by_path: HashMap<String, u64>,
}

/// The stable inode number of a path (before collision probing).
pub fn stable_ino(path: &Path) -> u64 {
    let digest = Md5::digest(path.as_ref().as_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    let ino = u64::from_le_bytes(bytes) >> 1;
    // 0 is not an inode, 1 is the root.
    ino.max(ROOT_INO + 1)
}

impl InodeTable {
    /// A table whose root (inode 1) is `root`.
    pub fn new(root: Path, attr: Attr) -> Self {
        let mut tables = Tables {
            by_ino: HashMap::new(),
            by_path: HashMap::new(),
        };
        tables.by_path.insert(root.as_ref().to_owned(), ROOT_INO);
        tables.by_ino.insert(
            ROOT_INO,
            Slot {
                inode: Inode {
                    path: root,
                    parent: ROOT_INO,
                    attr,
                },
                // The root is never forgotten.
                lookups: u64::MAX / 2,
            },
        );
        InodeTable {
            inner: Mutex::new(tables),
        }
    }

    fn tables(&self) -> std::sync::MutexGuard<'_, Tables> {
        // A poisoned lock only means a panic elsewhere; the maps stay consistent (every
        // update is a single insert or remove).
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The inode `ino`.
    pub fn get(&self, ino: u64) -> Option<Inode> {
        self.tables().by_ino.get(&ino).map(|s| s.inode.clone())
    }

    /// The inode of `path`, if the kernel holds one.
    pub fn ino_of(&self, path: &Path) -> Option<u64> {
        self.tables().by_path.get(path.as_ref()).copied()
    }

    /// Records a kernel reference to `path` (a lookup or a readdirplus entry) with its
    /// current attributes; returns its inode number.
    pub fn remember(&self, parent: u64, path: Path, attr: Attr) -> u64 {
        let mut t = self.tables();
        if let Some(&ino) = t.by_path.get(path.as_ref())
            && let Some(slot) = t.by_ino.get_mut(&ino)
        {
            slot.lookups += 1;
            slot.inode.attr = attr;
            return ino;
        }
        let mut ino = stable_ino(&path);
        while t.by_ino.contains_key(&ino) {
            ino = ino.wrapping_add(1).max(ROOT_INO + 1);
        }
        t.by_path.insert(path.as_ref().to_owned(), ino);
        t.by_ino.insert(
            ino,
            Slot {
                inode: Inode { path, parent, attr },
                lookups: 1,
            },
        );
        ino
    }

    /// The inode number `path` has or would get, without a kernel reference (plain readdir).
    pub fn peek(&self, path: &Path) -> u64 {
        self.ino_of(path).unwrap_or_else(|| stable_ino(path))
    }

    /// Updates the attributes of `ino`.
    pub fn set_attr(&self, ino: u64, attr: Attr) {
        if let Some(slot) = self.tables().by_ino.get_mut(&ino) {
            slot.inode.attr = attr;
        }
    }

    /// Drops `n` kernel references to `ino`; the inode goes when none are left.
    pub fn forget(&self, ino: u64, n: u64) {
        if ino == ROOT_INO {
            return;
        }
        let mut t = self.tables();
        let gone = match t.by_ino.get_mut(&ino) {
            Some(slot) => {
                slot.lookups = slot.lookups.saturating_sub(n);
                slot.lookups == 0
            }
            None => false,
        };
        if gone && let Some(slot) = t.by_ino.remove(&ino) {
            // Only if the path still names this inode (a rename may have given it another).
            if t.by_path.get(slot.inode.path.as_ref()) == Some(&ino) {
                t.by_path.remove(slot.inode.path.as_ref());
            }
        }
    }

    /// The kernel moved `from`'s dentry to `to` (a successful rename): the inode keeps its
    /// number and now names `to`.
    pub fn rename(&self, from: &Path, new_parent: u64, to: Path) {
        let mut t = self.tables();
        let Some(ino) = t.by_path.remove(from.as_ref()) else {
            return;
        };
        // A kernel reference to an inode already at `to` (replaced by the rename) goes stale.
        t.by_path.insert(to.as_ref().to_owned(), ino);
        if let Some(slot) = t.by_ino.get_mut(&ino) {
            slot.inode.path = to;
            slot.inode.parent = new_parent;
        }
    }

    /// How many inodes the kernel holds (for `statfs`; the root always counts).
    pub fn count(&self) -> usize {
        self.tables().by_ino.len()
    }

    /// Inodes whose path lies at or below `prefix` (for invalidations).
    pub fn below(&self, prefix: &Path) -> Vec<(u64, Inode)> {
        let prefix = prefix.as_ref();
        let dir = format!("{prefix}/");
        self.tables()
            .by_ino
            .iter()
            .filter(|(_, s)| {
                let p = s.inode.path.as_ref();
                p == prefix || p.starts_with(&dir)
            })
            .map(|(&ino, s)| (ino, s.inode.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;

    fn file() -> Attr {
        Attr::file(1, SystemTime::UNIX_EPOCH, None)
    }

    #[test]
    fn numbers_are_stable_and_counted() {
        let table = InodeTable::new(Path::ROOT, Attr::dir(SystemTime::UNIX_EPOCH));
        let a = Path::parse("e/p/r/history.jsonl").unwrap();
        let ino = table.remember(ROOT_INO, a.clone(), file());
        assert_eq!(ino, stable_ino(&a), "the number is the path's");
        assert_eq!(table.remember(ROOT_INO, a.clone(), file()), ino);
        table.forget(ino, 1);
        assert!(table.get(ino).is_some(), "one reference left");
        table.forget(ino, 1);
        assert!(table.get(ino).is_none());
        // Again after being forgotten (a remount): the same number.
        assert_eq!(table.remember(ROOT_INO, a.clone(), file()), ino);
        table.forget(ROOT_INO, 10);
        assert!(table.get(ROOT_INO).is_some(), "the root stays");
    }

    #[test]
    fn collisions_probe_the_next_number() {
        let table = InodeTable::new(Path::ROOT, Attr::dir(SystemTime::UNIX_EPOCH));
        let a = Path::parse("a").unwrap();
        let b = Path::parse("b").unwrap();
        let ino_a = table.remember(ROOT_INO, a.clone(), file());
        // Force b onto a's number by planting it there first.
        {
            let mut t = table.tables();
            let slot = t.by_ino.remove(&ino_a).unwrap();
            t.by_path.remove("a");
            t.by_path.insert("b".into(), ino_a);
            t.by_ino.insert(
                ino_a,
                Slot {
                    inode: Inode {
                        path: b.clone(),
                        ..slot.inode
                    },
                    lookups: 1,
                },
            );
        }
        let again = table.remember(ROOT_INO, a.clone(), file());
        assert_ne!(again, ino_a);
        assert_eq!(table.get(again).unwrap().path, a);
        assert_eq!(table.get(ino_a).unwrap().path, b);
    }
}
