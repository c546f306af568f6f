//! The `fuser::Filesystem` adapter: a thin layer that hands every request to [`WandbFs`] on
//! the async runtime and replies from the task (fuser's replies are `Send`), so a slow
//! backend never blocks the kernel's queue. Errors become the errno [`FsError`] carries and
//! are logged at their level. A task that panics drops its reply, which fuser answers with
//! `EIO`: no panic reaches the kernel.

use std::ffi::OsStr;
use std::path::Path as FsPath;
use std::sync::Arc;
use std::time::SystemTime;

use fuser::{
    BackingId, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo,
    InitFlags, KernelConfig, LockOwner, OpenAccMode, OpenFlags, RenameFlags, ReplyAttr,
    ReplyCreate, ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyOpen,
    ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};

use crate::fs::passthrough::{IoModes, Mode};
use crate::fs::{Attr, FsError, Kind, Opened, WandbFs};

/// `st_blksize`: the I/O size `cp`, Python's buffered files and friends use: **1 MiB**, the
/// largest request FUSE carries here (256 pages), so a `cp` into the mount is one write
/// request per MiB instead of eight (and reads match the readahead and cache blocks).
const BLKSIZE: u32 = 1 << 20;

/// The adapter.
pub struct FuseFs {
    fs: Arc<WandbFs>,
    runtime: tokio::runtime::Handle,
    xattrs: bool,
    /// Each open file's I/O mode (passthrough, cached, direct).
    modes: Arc<IoModes<BackingId>>,
}

impl FuseFs {
    /// An adapter running `fs` on `runtime`.
    pub fn new(fs: Arc<WandbFs>, runtime: tokio::runtime::Handle) -> Self {
        FuseFs {
            fs,
            runtime,
            xattrs: true,
            modes: Arc::new(IoModes::new(true)),
        }
    }

    /// Without FUSE passthrough: every file is read through the daemon (`--no-passthrough`).
    pub fn without_passthrough(mut self) -> Self {
        self.modes = Arc::new(IoModes::new(false));
        self
    }

    /// Without extended attributes: `getxattr`/`listxattr` answer `ENOSYS`, which the kernel
    /// remembers for the whole mount and answers itself from then on (`--no-xattr`).
    pub fn without_xattrs(mut self) -> Self {
        self.xattrs = false;
        self
    }

    fn spawn<F>(&self, future: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        self.runtime.spawn(future);
    }
}

fn errno(error: &FsError, operation: &str) -> Errno {
    error.log(operation);
    Errno::from_i32(error.errno)
}

/// FUSE attributes of an entry.
pub fn file_attr(fs: &WandbFs, ino: u64, attr: &Attr) -> FileAttr {
    let kind = match attr.kind {
        Kind::Dir => FileType::Directory,
        Kind::File => FileType::RegularFile,
        Kind::Symlink(_) => FileType::Symlink,
    };
    FileAttr {
        ino: INodeNo(ino),
        size: attr.size,
        blocks: attr.size.div_ceil(512),
        atime: attr.mtime,
        mtime: attr.mtime,
        ctime: attr.mtime,
        crtime: attr.mtime,
        kind,
        perm: attr.perm(),
        nlink: if attr.is_dir() { 2 } else { 1 },
        uid: fs.config().uid,
        gid: fs.config().gid,
        rdev: 0,
        blksize: BLKSIZE,
        flags: 0,
    }
}

fn fopen(opened: &Opened) -> FopenFlags {
    if opened.keep_cache {
        FopenFlags::FOPEN_KEEP_CACHE
    } else {
        FopenFlags::empty()
    }
}

fn name_str(name: &OsStr) -> Result<String, Errno> {
    name.to_str().map(str::to_owned).ok_or(Errno::ENOENT)
}

impl Filesystem for FuseFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        // readdirplus for `ls -l`, plain readdir for `ls`/`find` (measured: fuse/NOTES.md).
        if let Err(unsupported) = config
            .add_capabilities(InitFlags::FUSE_DO_READDIRPLUS | InitFlags::FUSE_READDIRPLUS_AUTO)
        {
            tracing::info!("kernel lacks {unsupported:?}; plain readdir only");
        }
        // More reads in flight: readahead of several files at once.
        let _ = config.set_max_background(64);
        // Shared mmap of files opened with FOPEN_DIRECT_IO (opens beside a passthrough one).
        let _ = config.add_capabilities(InitFlags::FUSE_DIRECT_IO_ALLOW_MMAP);
        // Passthrough (kernel ≥ 6.9): cached files are read by the kernel from their local
        // copy. Backing files are regular files on another filesystem (depth 1).
        let passthrough = self.modes.enabled()
            && config.add_capabilities(InitFlags::FUSE_PASSTHROUGH).is_ok()
            && config.set_max_stack_depth(1).is_ok();
        if !passthrough && self.modes.enabled() {
            tracing::info!("the kernel lacks FUSE passthrough; files are read through the daemon");
            self.modes = Arc::new(IoModes::new(false));
        }
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let fs = Arc::clone(&self.fs);
        let name = name.to_owned();
        self.spawn(async move {
            match fs.lookup(parent.0, &name).await {
                Ok((ino, attr)) => {
                    reply.entry(&fs.ttl(), &file_attr(&fs, ino, &attr), Generation(0))
                }
                Err(e) => reply.error(errno(&e, "lookup")),
            }
        });
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.fs.forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let fs = Arc::clone(&self.fs);
        self.spawn(async move {
            match fs.getattr(ino.0).await {
                Ok(attr) => reply.attr(&fs.ttl(), &file_attr(&fs, ino.0, &attr)),
                Err(e) => reply.error(errno(&e, "getattr")),
            }
        });
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        _mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let fs = Arc::clone(&self.fs);
        self.spawn(async move {
            // Only the size can change (truncate); times and modes are W&B's, so other
            // changes are accepted and ignored, as on most network filesystems.
            let result = match size {
                Some(size) => fs.truncate(ino.0, fh.map(|f| f.0), size).await,
                None => fs.getattr(ino.0).await,
            };
            match result {
                Ok(attr) => reply.attr(&fs.ttl(), &file_attr(&fs, ino.0, &attr)),
                Err(e) => reply.error(errno(&e, "setattr")),
            }
        });
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.fs.readlink(ino.0) {
            Ok(target) => reply.data(target.as_bytes()),
            Err(e) => reply.error(errno(&e, "readlink")),
        }
    }

    fn mkdir(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        _mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        let fs = Arc::clone(&self.fs);
        let name = match name_str(name) {
            Ok(n) => n,
            Err(e) => return reply.error(e),
        };
        self.spawn(async move {
            match fs.mkdir(parent.0, &name).await {
                Ok((ino, attr)) => {
                    reply.entry(&fs.ttl(), &file_attr(&fs, ino, &attr), Generation(0))
                }
                Err(e) => reply.error(errno(&e, "mkdir")),
            }
        });
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let fs = Arc::clone(&self.fs);
        let name = match name_str(name) {
            Ok(n) => n,
            Err(e) => return reply.error(e),
        };
        self.spawn(async move {
            match fs.unlink(parent.0, &name).await {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno(&e, "unlink")),
            }
        });
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let fs = Arc::clone(&self.fs);
        let name = match name_str(name) {
            Ok(n) => n,
            Err(e) => return reply.error(e),
        };
        self.spawn(async move {
            match fs.rmdir(parent.0, &name).await {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno(&e, "rmdir")),
            }
        });
    }

    fn symlink(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _link_name: &OsStr,
        _target: &FsPath,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EACCES);
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        if flags.bits() != 0 {
            // RENAME_NOREPLACE / RENAME_EXCHANGE: W&B cannot do either atomically.
            return reply.error(Errno::EINVAL);
        }
        let fs = Arc::clone(&self.fs);
        let (name, newname) = match (name_str(name), name_str(newname)) {
            (Ok(a), Ok(b)) => (a, b),
            _ => return reply.error(Errno::ENOENT),
        };
        self.spawn(async move {
            match fs.rename(parent.0, &name, newparent.0, &newname).await {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno(&e, "rename")),
            }
        });
    }

    fn link(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _newparent: INodeNo,
        _newname: &OsStr,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EACCES);
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let fs = Arc::clone(&self.fs);
        let modes = Arc::clone(&self.modes);
        self.spawn(async move {
            let result = match flags.acc_mode() {
                OpenAccMode::O_RDONLY => fs.open(ino.0).await,
                _ => fs.open_write(ino.0, flags.0 & libc::O_TRUNC != 0).await,
            };
            match result {
                Ok(opened) => {
                    let fh = FileHandle(opened.fh);
                    let mode = match &opened.backing {
                        Some(backing) => {
                            let mut register = || reply.open_backing(backing.file.as_ref());
                            modes.open(ino.0, opened.fh, Some((&backing.identity, &mut register)))
                        }
                        None => modes.open(ino.0, opened.fh, None),
                    };
                    match mode {
                        Mode::Passthrough(backing) => {
                            tracing::trace!(ino = ino.0, "open: passthrough");
                            reply.opened_passthrough(fh, FopenFlags::empty(), &backing)
                        }
                        Mode::Direct => reply.opened(fh, FopenFlags::FOPEN_DIRECT_IO),
                        Mode::Cached => reply.opened(fh, fopen(&opened)),
                    }
                }
                Err(e) => reply.error(errno(&e, "open")),
            }
        });
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let fs = Arc::clone(&self.fs);
        self.spawn(async move {
            match fs.read(fh.0, offset, size).await {
                Ok(bytes) => reply.data(&bytes),
                Err(e) => reply.error(errno(&e, "read")),
            }
        });
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let fs = Arc::clone(&self.fs);
        let data = data.to_vec();
        self.spawn(async move {
            match fs.write(fh.0, offset, data).await {
                Ok(n) => reply.written(n),
                Err(e) => reply.error(errno(&e, "write")),
            }
        });
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        let fs = Arc::clone(&self.fs);
        self.spawn(async move {
            match fs.flush(fh.0).await {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno(&e, "flush")),
            }
        });
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        // The kernel has let go of the handle: its mode (and, with the inode's last
        // passthrough open, the backing registration) goes now.
        self.modes.release(fh.0);
        let fs = Arc::clone(&self.fs);
        self.spawn(async move {
            match fs.release(fh.0).await {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno(&e, "release")),
            }
        });
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let fs = Arc::clone(&self.fs);
        self.spawn(async move {
            match fs.flush(fh.0).await {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno(&e, "fsync")),
            }
        });
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let fs = Arc::clone(&self.fs);
        self.spawn(async move {
            match fs.opendir(ino.0).await {
                // The kernel caches what it reads of the directory; it keeps its copy only
                // while the listing is unchanged (`WandbFs::opendir`).
                Ok(opened) => reply.opened(
                    FileHandle(opened.fh),
                    FopenFlags::FOPEN_CACHE_DIR | fopen(&opened),
                ),
                Err(e) => reply.error(errno(&e, "opendir")),
            }
        });
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let result = self.fs.readdir(ino.0, fh.0, offset, false, |entry| {
            let kind = match entry.attr.kind {
                Kind::Dir => FileType::Directory,
                Kind::File => FileType::RegularFile,
                Kind::Symlink(_) => FileType::Symlink,
            };
            !reply.add(INodeNo(entry.ino), entry.next_offset, kind, &entry.name)
        });
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(&e, "readdir")),
        }
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let fs = &self.fs;
        let ttl = fs.ttl();
        let result = fs.readdir(ino.0, fh.0, offset, true, |entry| {
            let attr = file_attr(fs, entry.ino, &entry.attr);
            !reply.add(
                INodeNo(entry.ino),
                entry.next_offset,
                &entry.name,
                &ttl,
                &attr,
                Generation(0),
            )
        });
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(&e, "readdirplus")),
        }
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.fs.releasedir(fh.0);
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let s = self.fs.statfs();
        reply.statfs(
            s.blocks, s.bfree, s.bavail, s.files, s.ffree, s.bsize, s.namelen, s.frsize,
        );
    }

    fn setxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _value: &[u8],
        _flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::EACCES);
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        if !self.xattrs {
            return reply.error(Errno::ENOSYS);
        }
        if !crate::fs::xattr::supported_namespace(name.as_encoded_bytes()) {
            // `ls -l` asks for security.selinux and POSIX ACLs on every entry: "not supported"
            // makes `ls` stop asking for the whole mount; never ENOSYS (which turns xattrs
            // off for the whole mount, user.wandb.* included). See fs/xattr.rs.
            return reply.error(Errno::EOPNOTSUPP);
        }
        let Some(name) = name
            .to_str()
            .filter(|n| n.starts_with(crate::fs::xattr::PREFIX))
            .map(str::to_owned)
        else {
            return reply.error(Errno::NO_XATTR);
        };
        let fs = Arc::clone(&self.fs);
        self.spawn(async move {
            match fs.getxattr(ino.0, &name).await {
                Ok(value) => xattr_reply(reply, size, &value),
                Err(e) => reply.error(errno(&e, "getxattr")),
            }
        });
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        if !self.xattrs {
            return reply.error(Errno::ENOSYS);
        }
        // From memory, in the callback: `ls` ≥ 9.6 asks every entry.
        match self.fs.listxattr(ino.0) {
            Ok(names) => {
                let mut data = Vec::new();
                for name in names {
                    data.extend_from_slice(name.as_bytes());
                    data.push(0);
                }
                xattr_reply(reply, size, &data);
            }
            Err(e) => reply.error(errno(&e, "listxattr")),
        }
    }

    fn removexattr(&self, _req: &Request, _ino: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::EACCES);
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        _mode: u32,
        _umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        let fs = Arc::clone(&self.fs);
        let modes = Arc::clone(&self.modes);
        let name = match name_str(name) {
            Ok(n) => n,
            Err(e) => return reply.error(e),
        };
        self.spawn(async move {
            match fs.create(parent.0, &name).await {
                Ok((ino, attr, opened)) => {
                    let flags = match modes.open(ino, opened.fh, None) {
                        Mode::Direct => FopenFlags::FOPEN_DIRECT_IO,
                        _ => fopen(&opened),
                    };
                    reply.created(
                        &fs.ttl(),
                        &file_attr(&fs, ino, &attr),
                        Generation(0),
                        FileHandle(opened.fh),
                        flags,
                    )
                }
                Err(e) => reply.error(errno(&e, "create")),
            }
        });
    }
}

/// Answers a size probe (`size == 0`), `ERANGE`, or the value.
fn xattr_reply(reply: ReplyXattr, size: u32, value: &[u8]) {
    let len = u32::try_from(value.len()).unwrap_or(u32::MAX);
    if size == 0 {
        reply.size(len);
    } else if size < len {
        reply.error(Errno::ERANGE);
    } else {
        reply.data(value);
    }
}
