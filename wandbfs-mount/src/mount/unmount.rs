//! Unmounting: `wandbfs unmount`, and the daemon's own shutdown.
//!
//! A plain unmount first; a mount point in use (a shell's working directory, an open file)
//! is `EBUSY`, which is said as such, and `--lazy` detaches it anyway (processes still inside
//! then get errors). A mount whose daemon died (`kill -9`: every access fails with `ENOTCONN`)
//! is detached lazily without asking: nothing can be served there any more.
//!
//! As root the `umount2` system call does it; other users go through `fusermount3`, which
//! the fuse3 package installs setuid.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;
use clap::Args;

use crate::cli::UserError;

/// `wandbfs unmount MOUNTPOINT`
#[derive(Debug, Args)]
pub struct UnmountArgs {
    /// The mount point.
    pub mountpoint: PathBuf,

    /// Detach it even while it is in use (processes using it then get errors).
    #[arg(long, short = 'z')]
    pub lazy: bool,
}

/// How a mount point looks.
#[derive(Debug, PartialEq, Eq)]
pub enum MountState {
    /// Not a FUSE mount.
    NotMounted,
    /// Mounted and answering.
    Alive,
    /// Mounted, but its daemon is gone (`ENOTCONN`).
    Dead,
}

/// The absolute path of `path` without resolving its last component (which may be a dead
/// mount that cannot be resolved).
pub fn absolute(path: &Path) -> std::io::Result<PathBuf> {
    let path = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()?.join(path)
    };
    match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) => Ok(parent.canonicalize()?.join(name)),
        _ => Ok(path),
    }
}

/// Whether `path` is a FUSE mount point (from `/proc/self/mountinfo`).
pub fn is_fuse_mount(path: &Path) -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let wanted = path.to_string_lossy();
    info.lines().any(|line| {
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(dash) = fields.iter().position(|f| *f == "-") else {
            return false;
        };
        let mount_point = fields.get(4).map(|m| unescape_mountinfo(m));
        let fstype = fields.get(dash + 1).copied().unwrap_or("");
        mount_point.as_deref() == Some(wanted.as_ref()) && fstype.starts_with("fuse")
    })
}

/// `/proc/self/mountinfo` escapes space, tab, newline and backslash as octal.
fn unescape_mountinfo(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && let Ok(v) = u8::from_str_radix(&text[i + 1..i + 4], 8)
        {
            out.push(v);
            i += 4;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The state of the mount at `path`.
pub fn state(path: &Path) -> MountState {
    if !is_fuse_mount(path) {
        return MountState::NotMounted;
    }
    // statfs always reaches the daemon (the kernel caches attributes, not filesystem
    // statistics), so a dead one shows even when the root's attributes are cached.
    match nix::sys::statfs::statfs(path) {
        Err(nix::errno::Errno::ENOTCONN) => MountState::Dead,
        _ => MountState::Alive,
    }
}

/// The outcome of an unmount.
#[derive(Debug, PartialEq, Eq)]
pub enum Unmounted {
    /// Cleanly.
    Clean,
    /// Detached lazily (busy and asked to, or the daemon was dead).
    Lazily,
}

/// Unmounts `path`; lazily when `lazy` (or when the mount is dead). `EBUSY` comes back as an
/// error that says so.
pub fn unmount(path: &Path, lazy: bool) -> anyhow::Result<Unmounted> {
    let lazy = lazy || state(path) == MountState::Dead;
    match raw_unmount(path, lazy) {
        Ok(()) if lazy => Ok(Unmounted::Lazily),
        Ok(()) => Ok(Unmounted::Clean),
        Err(e) if e.raw_os_error() == Some(libc::EBUSY) => Err(UserError::with_hint(
            format!(
                "{} is busy: a process is using it (its working directory or an open file)",
                path.display()
            ),
            format!(
                "close what uses it (`fuser -vm {}` lists them), or detach it anyway with \
                 `wandbfs unmount --lazy {}`",
                path.display(),
                path.display()
            ),
        )
        .into()),
        Err(e) => Err(e).with_context(|| format!("unmounting {}", path.display())),
    }
}

fn raw_unmount(path: &Path, lazy: bool) -> std::io::Result<()> {
    if nix::unistd::geteuid().is_root() {
        let flags = if lazy {
            nix::mount::MntFlags::MNT_DETACH
        } else {
            nix::mount::MntFlags::empty()
        };
        return nix::mount::umount2(path, flags).map_err(std::io::Error::from);
    }
    let mut command = Command::new("fusermount3");
    command.arg("-u");
    if lazy {
        command.arg("-z");
    }
    let output = command.arg("--").arg(path).output().map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("running fusermount3 (from the fuse3 package): {e}"),
        )
    })?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    if stderr.contains("busy") {
        return Err(std::io::Error::from_raw_os_error(libc::EBUSY));
    }
    Err(std::io::Error::other(format!(
        "fusermount3 -u failed: {}",
        stderr.trim()
    )))
}

/// `wandbfs unmount`.
pub fn run(args: UnmountArgs) -> anyhow::Result<i32> {
    let path =
        absolute(&args.mountpoint).with_context(|| format!("{}", args.mountpoint.display()))?;
    let before = state(&path);
    if before == MountState::NotMounted {
        return Err(UserError::with_hint(
            format!(
                "{} is not a mounted wandbfs (not a FUSE mount)",
                path.display()
            ),
            "`mount -t fuse` lists FUSE mounts",
        )
        .into());
    }
    match unmount(&path, args.lazy)? {
        Unmounted::Clean => println!("unmounted {}", path.display()),
        Unmounted::Lazily if before == MountState::Dead => println!(
            "unmounted {} (its daemon was gone; detached lazily)",
            path.display()
        ),
        Unmounted::Lazily => println!(
            "detached {} lazily; processes still using it get errors",
            path.display()
        ),
    }
    Ok(0)
}
