//! What the filesystem knows about one entry: its kind, exact size, times and W&B identity.

use std::time::SystemTime;

use chrono::{DateTime, Utc};

/// The kind of an entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A directory (entity, project, run, a folder of run or artifact files, …).
    Dir,
    /// A regular file (a run file, an artifact file, a synthetic file).
    File,
    /// A symbolic link: an artifact alias pointing at its version (`latest -> v3`).
    Symlink(String),
}

/// Attributes of an entry, independent of FUSE.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attr {
    /// Directory, file or link.
    pub kind: Kind,
    /// Exact size in bytes (files: what a full read returns; links: the target's length).
    pub size: u64,
    /// Modification time: W&B's update time of the object (the run's `updatedAt` for run
    /// directories and synthetic files, the file's `updatedAt` for files).
    pub mtime: SystemTime,
    /// W&B's digest (base64 MD5 for run files and stored artifact files, a version tag for
    /// the mirror's synthetic files): the content cache's key with the size.
    pub e_tag: Option<String>,
    /// Whether writes may change it (`--allow-write` and a run file or run directory).
    pub writable: bool,
}

impl Attr {
    /// A directory.
    pub fn dir(mtime: SystemTime) -> Attr {
        Attr {
            kind: Kind::Dir,
            size: 0,
            mtime,
            e_tag: None,
            writable: false,
        }
    }

    /// A file.
    pub fn file(size: u64, mtime: SystemTime, e_tag: Option<String>) -> Attr {
        Attr {
            kind: Kind::File,
            size,
            mtime,
            e_tag,
            writable: false,
        }
    }

    /// A symbolic link to `target`.
    pub fn symlink(target: String, mtime: SystemTime) -> Attr {
        Attr {
            size: target.len() as u64,
            kind: Kind::Symlink(target),
            mtime,
            e_tag: None,
            writable: false,
        }
    }

    /// Whether it is a directory.
    pub fn is_dir(&self) -> bool {
        self.kind == Kind::Dir
    }

    /// The permission bits: read-only unless writable (`0444`/`0555`, `0644`/`0755`).
    pub fn perm(&self) -> u16 {
        match (&self.kind, self.writable) {
            (Kind::Dir, false) => 0o555,
            (Kind::Dir, true) => 0o755,
            (Kind::File, false) => 0o444,
            (Kind::File, true) => 0o644,
            (Kind::Symlink(_), _) => 0o777,
        }
    }
}

/// A chrono time as a `SystemTime` (before 1970 clamps to the epoch).
pub fn system_time(t: DateTime<Utc>) -> SystemTime {
    u64::try_from(t.timestamp_nanos_opt().unwrap_or(0))
        .map(|n| SystemTime::UNIX_EPOCH + std::time::Duration::from_nanos(n))
        .unwrap_or(SystemTime::UNIX_EPOCH)
}
