//! Which I/O mode each open of a file gets: **passthrough** (the kernel reads a local backing
//! file itself — page cache, readahead and all, at local-disk speed, no daemon request),
//! **cached** (reads come to the daemon and land in the FUSE page cache), or **direct** (reads
//! come to the daemon every time, no page cache).
//!
//! A file is a passthrough candidate when a local file holds exactly its bytes: a complete,
//! verified object of the content cache (run and artifact files), or a rendered table. The
//! kernel (6.9+, `fs/fuse/iomode.c`) has rules this module follows, per inode:
//!
//! - passthrough and cached opens exclude each other (the open fails with `EIO`);
//! - all passthrough opens share one backing (another backing fails with `EIO`), which is
//!   registered once and kept until the last of them is released;
//! - direct opens (`FOPEN_DIRECT_IO`) take no mode and go with either.
//!
//! So: an open that can use the inode's current backing does; one that could pass through
//! while the inode has cached opens is cached; one that cannot (no backing, or a newer version
//! than the inode's backing holds) while the inode passes through is direct. The kernel forgets
//! an open before the daemon hears of its release, so the counts here are never lower than the
//! kernel's, and a choice that is right for them is right for the kernel.
//!
//! Registering a backing file needs `CAP_SYS_ADMIN`: the first refusal turns passthrough off
//! for the mount (said once in the log) and every open is cached as before.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

/// What an open gets.
#[derive(Debug)]
pub enum Mode<B> {
    /// Through the page cache (and the daemon).
    Cached,
    /// Read by the kernel from the backing registered as `B`.
    Passthrough(Arc<B>),
    /// Through the daemon, no page cache.
    Direct,
}

impl<B> PartialEq for Mode<B> {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Mode::Cached, Mode::Cached) | (Mode::Direct, Mode::Direct) => true,
            (Mode::Passthrough(a), Mode::Passthrough(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

struct InodeModes<B> {
    cached: u32,
    direct: u32,
    /// The backing shared by the passthrough opens: what it holds, the registration, opens.
    passthrough: Option<(String, Arc<B>, u32)>,
}

impl<B> Default for InodeModes<B> {
    fn default() -> Self {
        InodeModes {
            cached: 0,
            direct: 0,
            passthrough: None,
        }
    }
}

impl<B> InodeModes<B> {
    fn idle(&self) -> bool {
        self.cached == 0 && self.direct == 0 && self.passthrough.is_none()
    }
}

enum Taken {
    Cached,
    Direct,
    Passthrough,
}

struct Registry<B> {
    inodes: HashMap<u64, InodeModes<B>>,
    /// Open handle → (inode, what it took).
    handles: HashMap<u64, (u64, Taken)>,
}

/// The modes of a mount's open files (see the module docs). `B` is the kernel's registration
/// of a backing file (`fuser::BackingId`; tests use their own).
pub struct IoModes<B> {
    registry: Mutex<Registry<B>>,
    enabled: AtomicBool,
}

impl<B> IoModes<B> {
    /// Bookkeeping for a mount; `enabled` is false when the kernel lacks passthrough.
    pub fn new(enabled: bool) -> Self {
        IoModes {
            registry: Mutex::new(Registry {
                inodes: HashMap::new(),
                handles: HashMap::new(),
            }),
            enabled: AtomicBool::new(enabled),
        }
    }

    /// Whether passthrough is (still) in use.
    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    fn registry(&self) -> std::sync::MutexGuard<'_, Registry<B>> {
        self.registry.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The mode of handle `fh`, opened on inode `ino`. `candidate` is what a passthrough open
    /// would use — the content's identity (path, version, size) and a way to register the
    /// backing file — when there is one.
    pub fn open(
        &self,
        ino: u64,
        fh: u64,
        candidate: Option<(&str, &mut dyn FnMut() -> std::io::Result<B>)>,
    ) -> Mode<B> {
        let mut registry = self.registry();
        let modes = registry.inodes.entry(ino).or_default();
        let candidate = candidate.filter(|_| self.enabled());
        let (mode, taken) = match (&mut modes.passthrough, candidate) {
            (Some((current, backing, count)), Some((identity, _))) if current == identity => {
                *count += 1;
                (Mode::Passthrough(Arc::clone(backing)), Taken::Passthrough)
            }
            (Some(_), _) => {
                modes.direct += 1;
                (Mode::Direct, Taken::Direct)
            }
            (None, Some((identity, register))) if modes.cached == 0 => match register() {
                Ok(backing) => {
                    let backing = Arc::new(backing);
                    modes.passthrough = Some((identity.to_owned(), Arc::clone(&backing), 1));
                    (Mode::Passthrough(backing), Taken::Passthrough)
                }
                Err(e) => {
                    if matches!(e.raw_os_error(), Some(libc::EPERM) | Some(libc::EACCES)) {
                        tracing::info!(
                            "FUSE passthrough refused ({e}): it needs CAP_SYS_ADMIN (root); \
                             files are read through the daemon"
                        );
                        self.enabled.store(false, Ordering::Relaxed);
                    } else {
                        tracing::debug!("registering a passthrough backing file: {e}");
                    }
                    modes.cached += 1;
                    (Mode::Cached, Taken::Cached)
                }
            },
            (None, _) => {
                modes.cached += 1;
                (Mode::Cached, Taken::Cached)
            }
        };
        registry.handles.insert(fh, (ino, taken));
        mode
    }

    /// Handle `fh` was released: its mode's count drops, and the inode's backing is
    /// unregistered with its last passthrough open.
    pub fn release(&self, fh: u64) {
        let mut registry = self.registry();
        let Some((ino, taken)) = registry.handles.remove(&fh) else {
            return;
        };
        let Some(modes) = registry.inodes.get_mut(&ino) else {
            return;
        };
        match taken {
            Taken::Cached => modes.cached = modes.cached.saturating_sub(1),
            Taken::Direct => modes.direct = modes.direct.saturating_sub(1),
            Taken::Passthrough => {
                if let Some((_, _, count)) = &mut modes.passthrough {
                    *count -= 1;
                    if *count == 0 {
                        // The registration is dropped (closed) here, after the kernel let go.
                        modes.passthrough = None;
                    }
                }
            }
        }
        if modes.idle() {
            registry.inodes.remove(&ino);
        }
    }

    /// Open handles (for tests and statistics).
    pub fn open_handles(&self) -> usize {
        self.registry().handles.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    struct Id(u32);

    fn ok(n: u32) -> impl FnMut() -> std::io::Result<Id> {
        move || Ok(Id(n))
    }

    #[test]
    fn passthrough_opens_share_one_backing_and_exclude_cached_ones() {
        let modes = IoModes::<Id>::new(true);
        let mut reg1 = ok(1);
        let first = modes.open(7, 1, Some(("v1", &mut reg1)));
        let Mode::Passthrough(backing) = &first else {
            panic!("{first:?}")
        };
        assert_eq!(**backing, Id(1));
        // A second open of the same version shares it (never registers another).
        let mut reg2 = ok(2);
        let second = modes.open(7, 2, Some(("v1", &mut reg2)));
        assert_eq!(second, first);
        // No candidate, or a newer version: direct, not cached (the kernel would refuse).
        assert_eq!(modes.open(7, 3, None), Mode::Direct);
        let mut reg3 = ok(3);
        assert_eq!(modes.open(7, 4, Some(("v2", &mut reg3))), Mode::Direct);
        for fh in 1..=4 {
            modes.release(fh);
        }
        // Idle again: the new version passes through with its own backing.
        let mut reg4 = ok(4);
        let Mode::Passthrough(b) = modes.open(7, 5, Some(("v2", &mut reg4))) else {
            panic!()
        };
        assert_eq!(*b, Id(4));
        modes.release(5);

        // A cached open first: a candidate stays cached while it is open.
        assert_eq!(modes.open(8, 6, None), Mode::Cached);
        let mut reg5 = ok(5);
        assert_eq!(modes.open(8, 7, Some(("v1", &mut reg5))), Mode::Cached);
        modes.release(6);
        modes.release(7);
        assert_eq!(modes.open_handles(), 0);
    }

    #[test]
    fn a_refused_registration_turns_passthrough_off() {
        let modes = IoModes::<Id>::new(true);
        let mut refuse = || Err(std::io::Error::from_raw_os_error(libc::EPERM));
        assert_eq!(modes.open(1, 1, Some(("v", &mut refuse))), Mode::Cached);
        assert!(!modes.enabled());
        let mut reg = ok(1);
        assert_eq!(modes.open(2, 2, Some(("v", &mut reg))), Mode::Cached);
    }
}
