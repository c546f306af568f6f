//! The operating-system account that runs the embedded server.
//!
//! PostgreSQL refuses to run as root. When wandbfs runs as root, the server programs are started
//! as an unprivileged account (default `postgres`, configurable), and the directories the server
//! writes are handed to that account. Otherwise the server runs as the invoking user.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use nix::unistd::{Gid, Uid, User};

/// Default account for the server when wandbfs runs as root.
pub const DEFAULT_SERVER_USER: &str = "postgres";

/// Who runs the server programs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerAccount {
    /// Account name.
    pub name: String,
    /// Its uid.
    pub uid: u32,
    /// Its primary gid.
    pub gid: u32,
    /// True when the programs must be started with a uid switch (we are root).
    pub switch: bool,
}

impl ServerAccount {
    /// The account for this process: `configured` (or [`DEFAULT_SERVER_USER`]) when root, the
    /// current user otherwise.
    pub fn resolve(configured: Option<&str>) -> Result<Self, String> {
        let euid = Uid::effective();
        if euid.is_root() {
            let name = configured.unwrap_or(DEFAULT_SERVER_USER);
            let user = User::from_name(name)
                .map_err(|e| format!("cannot look up the account `{name}`: {e}"))?
                .ok_or_else(|| {
                    format!(
                        "PostgreSQL cannot run as root and the account `{name}` does not exist; \
                         create it (`useradd --system {name}`) or name another unprivileged \
                         account with `--pg-user`/`WANDBFS_PG_USER`"
                    )
                })?;
            if user.uid.is_root() {
                return Err(format!(
                    "the server account `{name}` is root; PostgreSQL refuses to run as root"
                ));
            }
            Ok(ServerAccount {
                name: name.to_string(),
                uid: user.uid.as_raw(),
                gid: user.gid.as_raw(),
                switch: true,
            })
        } else {
            let user = User::from_uid(euid).ok().flatten();
            let name = user
                .as_ref()
                .map_or_else(|| euid.to_string(), |u| u.name.clone());
            if let Some(wanted) = configured
                && wanted != name
            {
                return Err(format!(
                    "only root can run the server as another account (asked for `{wanted}`, \
                     running as `{name}`)"
                ));
            }
            Ok(ServerAccount {
                name,
                uid: euid.as_raw(),
                gid: Gid::effective().as_raw(),
                switch: false,
            })
        }
    }

    /// A command for `program` that runs as this account, from `/` (the invoker's working
    /// directory may not be readable by the account).
    pub fn command(&self, program: impl AsRef<Path>) -> Command {
        let mut cmd = Command::new(program.as_ref());
        cmd.current_dir("/");
        if self.switch {
            // std drops supplementary groups (setgroups(0)) before setuid when uid is set.
            cmd.uid(self.uid).gid(self.gid);
        }
        cmd
    }

    /// Makes `path` belong to this account (a no-op when no switch is needed).
    pub fn chown(&self, path: &Path) -> std::io::Result<()> {
        if self.switch {
            nix::unistd::chown(
                path,
                Some(Uid::from_raw(self.uid)),
                Some(Gid::from_raw(self.gid)),
            )
            .map_err(std::io::Error::from)?;
        }
        Ok(())
    }

    /// The first existing ancestor of `path` (or `path` itself) that this account cannot
    /// traverse, judged from mode bits (supplementary groups are not considered).
    pub fn blocking_ancestor(&self, path: &Path) -> Option<PathBuf> {
        if !self.switch {
            return None;
        }
        let mut blocked = None;
        for dir in path.ancestors() {
            let Ok(meta) = std::fs::metadata(dir) else {
                continue;
            };
            let mode = meta.permissions().mode();
            let can = if meta.uid() == self.uid {
                mode & 0o100 != 0
            } else if meta.gid() == self.gid {
                mode & 0o010 != 0
            } else {
                mode & 0o001 != 0
            };
            if !can {
                blocked = Some(dir.to_path_buf());
            }
        }
        blocked
    }
}
