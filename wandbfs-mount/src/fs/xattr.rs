//! Extended attributes: `user.wandb.*` on runs and what lies below them, and on files.
//!
//! | Name | On | Value |
//! |---|---|---|
//! | `user.wandb.entity`, `.project`, `.run_id` | a run and everything in it | ids |
//! | `user.wandb.state` | same | `running`, `finished`, `crashed`, … |
//! | `user.wandb.url` | same | the run's page |
//! | `user.wandb.storage_id` | same | W&B's internal run id |
//! | `user.wandb.last_step` | same | last history step mirrored |
//! | `user.wandb.synced_at` | same | when the mirror last refreshed the run (RFC 3339) |
//! | `user.wandb.md5` | run and artifact files | W&B's digest (base64 MD5) |
//!
//! `listxattr` is answered from memory (the names follow from the entry's place in the tree),
//! and so is every name outside `user.wandb.`:
//!
//! - outside the `user.` namespace (`security.selinux`, `system.posix_acl_access`, which `ls -l`
//!   asks of every entry): **`EOPNOTSUPP`**. GNU `ls` remembers "not supported" per device
//!   and stops asking (2 requests for a 10,000-entry `ls -l` instead of 30,000); it asks again
//!   for every entry after `ENODATA`. Never `ENOSYS`: the kernel would then fail every
//!   attribute of the mount, `user.wandb.*` included.
//! - `user.*` names that are not ours, and ours where the entry has no such value: `ENODATA`
//!   ("no such attribute").

use wandbfs::store::layout::Location;
use wandbfs::store::source::RunRef;

use super::WandbFs;
use super::error::{FsError, FsResult};

/// The namespace of wandbfs's attributes.
pub const PREFIX: &str = "user.wandb.";

fn no_data(name: &str) -> FsError {
    FsError::new(
        libc::ENODATA,
        tracing::Level::TRACE,
        format!("no extended attribute {name}"),
    )
}

fn run_of(location: &Location) -> Option<&RunRef> {
    match location {
        Location::Run(run) | Location::Synthetic(run, _) | Location::RunFile(run, _) => Some(run),
        _ => None,
    }
}

/// Names of the attributes every entry in a run has (values from the mirror, except the ids
/// and the URL).
const RUN_NAMES: [&str; 8] = [
    "entity",
    "project",
    "run_id",
    "url",
    "state",
    "storage_id",
    "last_step",
    "synced_at",
];

/// Whether `name` is in a namespace the mount supports at all (`user.`); for other names the
/// answer is `EOPNOTSUPP` (see the module docs).
pub fn supported_namespace(name: &[u8]) -> bool {
    name.starts_with(b"user.")
}

impl WandbFs {
    /// The names of `ino`'s extended attributes, from memory: what the entry's place in the
    /// tree gives it. A name whose value the mirror lacks (a run without steps has no
    /// `last_step`) reads as `ENODATA`.
    pub fn listxattr(&self, ino: u64) -> FsResult<Vec<String>> {
        let inode = self.inode(ino)?;
        let location = Location::parse(&inode.path);
        let mut out = Vec::new();
        if inode.attr.e_tag.is_some() && location.file_ref().is_some() {
            out.push(format!("{PREFIX}md5"));
        }
        if run_of(&location).is_some() {
            out.extend(RUN_NAMES.iter().map(|n| format!("{PREFIX}{n}")));
        }
        Ok(out)
    }

    /// The value of extended attribute `name` of `ino`.
    pub async fn getxattr(&self, ino: u64, name: &str) -> FsResult<Vec<u8>> {
        if !name.starts_with(PREFIX) {
            return Err(no_data(name));
        }
        self.xattrs(ino)
            .await?
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.into_bytes())
            .ok_or_else(|| no_data(name))
    }

    async fn xattrs(&self, ino: u64) -> FsResult<Vec<(String, String)>> {
        let inode = self.inode(ino)?;
        let location = Location::parse(&inode.path);
        let mut out = Vec::new();
        if let Some(md5) = inode.attr.e_tag.as_ref()
            && location.file_ref().is_some()
        {
            out.push((format!("{PREFIX}md5"), md5.clone()));
        }
        let Some(run) = run_of(&location) else {
            return Ok(out);
        };
        let attr = |name: &str, value: String| (format!("{PREFIX}{name}"), value);
        out.push(attr("entity", run.entity.clone()));
        out.push(attr("project", run.project.clone()));
        out.push(attr("run_id", run.run.clone()));
        out.push(attr("url", self.run_url(run)));
        let mirror = &self.catalog.backend().mirror;
        let pk = mirror
            .resolve_run(&run.entity, &run.project, &run.run)
            .await
            .map_err(|e| FsError::io(format!("{run}: mirror: {e}")))?;
        if let Some(pk) = pk {
            let meta = mirror
                .run_metadata(pk)
                .await
                .map_err(|e| FsError::io(format!("{run}: mirror: {e}")))?;
            if let Some(state) = meta.state {
                out.push(attr("state", state));
            }
            if let Some(id) = meta.storage_id {
                out.push(attr("storage_id", id));
            }
            if let Some(step) = meta.last_step {
                out.push(attr("last_step", step.to_string()));
            }
            out.push(attr(
                "synced_at",
                meta.last_synced_at
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            ));
        }
        Ok(out)
    }

    /// The run's page in the W&B app (`https://wandb.ai/<entity>/<project>/runs/<id>` for
    /// W&B's cloud; the server's own address otherwise).
    pub fn run_url(&self, run: &RunRef) -> String {
        let base = self.catalog.backend().store.client().base_url().to_string();
        let base = base.trim_end_matches('/');
        let app = match base {
            "https://api.wandb.ai" => "https://wandb.ai",
            other => other,
        };
        format!("{app}/{}/{}/runs/{}", run.entity, run.project, run.run)
    }
}
