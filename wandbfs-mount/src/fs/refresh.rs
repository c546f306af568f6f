//! Telling the kernel what changed — from a thread of its own, never from a FUSE callback.
//!
//! The kernel caches attributes, directory entries and pages (`FOPEN_KEEP_CACHE`). When the
//! mount learns that something changed — its background sync synced a run, a first access
//! synced one, a write went through — [`WandbFs::refresh_run`] compares what the kernel was told
//! with what the tree says now and queues [`Notice`]s: a grown `history.jsonl` loses its
//! attributes and the pages from its old last page on (so `tail -f` sees the new lines within
//! its one-second poll), a changed file loses all its pages, a deleted entry its dentry.
//!
//! Notices are delivered by [`Invalidator`], a dedicated thread: `inval_inode` blocks while a
//! read of that inode is in flight, and called from inside a request handler it deadlocks the
//! mount beyond `kill -9` (measured, `fuse/NOTES.md`).

use std::sync::mpsc;

use wandbfs::store::layout::{self, ProjectTableKind, SyntheticKind};
use wandbfs::store::source::{ProjectRef, RunRef};
use wandbfs::sync::{ProgressEvent, ProgressSink, RunStatus};

use super::WandbFs;
use super::attr::Kind;

/// One thing the kernel must forget.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notice {
    /// The inode's attributes (its size, times).
    Attributes(u64),
    /// The inode's attributes and its cached pages from byte `from` on.
    Data {
        /// The inode.
        ino: u64,
        /// First byte whose page is dropped.
        from: u64,
    },
    /// The name `name` in directory `parent`.
    Entry {
        /// The directory's inode.
        parent: u64,
        /// The name.
        name: String,
    },
}

/// Where notices go (cheap to clone; sending never blocks).
#[derive(Clone, Debug)]
pub struct Notices {
    tx: mpsc::Sender<Notice>,
}

impl Notices {
    /// A queue and its receiving end (for [`Invalidator::start`], or a test).
    pub fn channel() -> (Notices, mpsc::Receiver<Notice>) {
        let (tx, rx) = mpsc::channel();
        (Notices { tx }, rx)
    }

    /// Queues a notice (dropped when nobody listens: no kernel, nothing cached).
    pub fn send(&self, notice: Notice) {
        let _ = self.tx.send(notice);
    }

    /// The inode's attributes changed.
    pub fn attributes(&self, ino: u64) {
        self.send(Notice::Attributes(ino));
    }
}

/// The thread that delivers notices to the kernel.
pub struct Invalidator;

impl Invalidator {
    /// Starts delivering `notices` through `notifier` until every sender is gone.
    pub fn start(
        notifier: fuser::Notifier,
        notices: mpsc::Receiver<Notice>,
    ) -> std::io::Result<std::thread::JoinHandle<()>> {
        std::thread::Builder::new()
            .name("wandbfs-inval".into())
            .spawn(move || {
                for notice in notices {
                    let result = match &notice {
                        Notice::Attributes(ino) => {
                            notifier.inval_inode(fuser::INodeNo(*ino), -1, 0)
                        }
                        Notice::Data { ino, from } => notifier.inval_inode(
                            fuser::INodeNo(*ino),
                            i64::try_from(*from).unwrap_or(0),
                            0,
                        ),
                        Notice::Entry { parent, name } => {
                            notifier.inval_entry(fuser::INodeNo(*parent), name.as_ref())
                        }
                    };
                    match result {
                        Ok(()) => tracing::trace!(?notice, "kernel cache invalidated"),
                        // The kernel had already forgotten it.
                        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
                        Err(e) => tracing::debug!(?notice, "invalidation failed: {e}"),
                    }
                }
            })
    }
}

/// What a sync changed, for [`WandbFs::refresh_run`]/[`WandbFs::refresh_project`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Changed {
    /// A run's data or record.
    Run(RunRef),
    /// A project's run listing.
    Project(ProjectRef),
}

/// A sync progress sink that reports changes (and passes every event on to `inner`).
pub struct ChangeSink {
    tx: tokio::sync::mpsc::UnboundedSender<Changed>,
}

impl ChangeSink {
    /// A sink and the receiver of its changes.
    pub fn new() -> (ChangeSink, tokio::sync::mpsc::UnboundedReceiver<Changed>) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        (ChangeSink { tx }, rx)
    }
}

impl ProgressSink for ChangeSink {
    fn event(&self, event: ProgressEvent) {
        let changed = match event {
            ProgressEvent::RunFinished {
                run,
                status: RunStatus::Synced | RunStatus::Deleted,
                ..
            } => parse_run(&run).map(Changed::Run),
            ProgressEvent::ProjectFinished { project } => project
                .split_once('/')
                .map(|(entity, project)| Changed::Project(ProjectRef::new(entity, project))),
            _ => None,
        };
        if let Some(changed) = changed {
            let _ = self.tx.send(changed);
        }
    }
}

/// `entity/project/run_id` (run ids have no `/`; entity and project names neither).
fn parse_run(text: &str) -> Option<RunRef> {
    let mut parts = text.splitn(3, '/');
    Some(RunRef::new(parts.next()?, parts.next()?, parts.next()?))
}

impl WandbFs {
    /// After `run` changed: drops the catalog's listings of it and tells the kernel exactly
    /// which of the entries it holds changed.
    pub async fn refresh_run(&self, run: &RunRef) {
        tracing::debug!(%run, "refreshing after a change");
        self.catalog.invalidate_run(run).await;
        let Ok(run_path) = layout::run_path(run) else {
            return;
        };
        if let Ok(project) = layout::project_path(&run.project_ref()) {
            // The run's time in its project's listing, and its row in the project's tables.
            self.catalog.invalidate_mirrored(&project).await;
            self.forget_project_tables(&run.project_ref());
        }
        for (ino, inode) in self.inodes.below(&run_path) {
            let Some(parent) = self.inodes.get(inode.parent) else {
                continue;
            };
            let name = inode.path.filename().unwrap_or_default().to_owned();
            if is_table(&inode.path) {
                // A table is rendered when asked for, not at every sync of a live run: the
                // kernel forgets its attributes and pages, and the next stat or open renders.
                tracing::debug!(path = %inode.path, "table changed");
                self.notices.send(Notice::Data { ino, from: 0 });
                continue;
            }
            match self.catalog.lookup(&parent.path, &name).await {
                Ok(entry) if entry.attr == inode.attr => {
                    tracing::trace!(path = %inode.path, size = entry.attr.size, "unchanged");
                }
                Ok(entry) => {
                    let notice = match (&inode.attr.kind, &entry.attr.kind) {
                        // Appended (same stream, longer): only the old last page on is stale.
                        (Kind::File, Kind::File)
                            if entry.attr.size > inode.attr.size && is_appendable(&inode.path) =>
                        {
                            Notice::Data {
                                ino,
                                from: inode.attr.size & !4095,
                            }
                        }
                        (Kind::File, Kind::File) => Notice::Data { ino, from: 0 },
                        _ => Notice::Attributes(ino),
                    };
                    tracing::debug!(path = %inode.path, ?notice, "changed");
                    self.inodes.set_attr(ino, entry.attr);
                    self.notices.send(notice);
                }
                Err(e) if e.errno == libc::ENOENT => self.notices.send(Notice::Entry {
                    parent: inode.parent,
                    name,
                }),
                Err(e) => e.log("refresh"),
            }
        }
    }

    /// After a project was synced (new or deleted runs): drops the catalog's listing of it
    /// when it came from the mirror. The kernel re-reads directories on every open, so new
    /// runs show at the next `ls`.
    pub async fn refresh_project(&self, project: &ProjectRef) {
        let Ok(path) = layout::project_path(project) else {
            return;
        };
        self.catalog.invalidate_mirrored(&path).await;
        self.forget_project_tables(project);
    }

    /// Applies one change.
    pub async fn refresh(&self, changed: &Changed) {
        match changed {
            Changed::Run(run) => self.refresh_run(run).await,
            Changed::Project(project) => self.refresh_project(project).await,
        }
    }

    /// The project's tables follow its runs: the kernel forgets what it holds of them, and the
    /// next stat or open renders the new version (if the runs changed at all).
    fn forget_project_tables(&self, project: &ProjectRef) {
        for kind in ProjectTableKind::ALL {
            let Ok(table) = layout::project_table_path(project, kind) else {
                continue;
            };
            if let Some(ino) = self.inodes.ino_of(&table) {
                self.notices.send(Notice::Data { ino, from: 0 });
            }
        }
    }
}

/// `history.parquet` and `system.parquet`: rendered from the mirror on access.
fn is_table(path: &object_store::path::Path) -> bool {
    matches!(
        layout::Location::parse(path),
        layout::Location::Synthetic(_, kind) if kind.is_table()
    )
}

/// Files that only grow while their run lives: `history.jsonl` and `system.jsonl` (rows are
/// appended; a rewritten history resets the run and is no longer an append, but its mirror
/// version tag — the e-tag — changes with the length either way, so the old bytes are never
/// kept past the old end).
fn is_appendable(path: &object_store::path::Path) -> bool {
    matches!(
        layout::Location::parse(path),
        layout::Location::Synthetic(_, SyntheticKind::History | SyntheticKind::System)
    )
}
