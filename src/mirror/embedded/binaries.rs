//! Finding the PostgreSQL server binaries (`initdb`, `pg_ctl`, `postgres`).
//!
//! Search order: an explicit directory (flag/env, no fallback), the directory of the cluster's
//! own major version under the Debian layout (so an existing cluster keeps its server after a
//! second major version is installed), `pg_config --bindir`, the highest
//! `/usr/lib/postgresql/<major>/bin`, then `PATH`.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::mirror::error::{MirrorError, Result};

/// The programs a cluster needs.
const REQUIRED: [&str; 3] = ["initdb", "pg_ctl", "postgres"];

/// A directory holding the server programs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerBinaries {
    /// The directory.
    pub bin_dir: PathBuf,
}

impl ServerBinaries {
    /// Path of a program in [`Self::bin_dir`].
    pub fn program(&self, name: &str) -> PathBuf {
        self.bin_dir.join(name)
    }

    /// The major version reported by `pg_ctl --version` (e.g. 15), if it can be read.
    pub fn major_version(&self) -> Option<u32> {
        let out = Command::new(self.program("pg_ctl"))
            .arg("--version")
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout);
        // "pg_ctl (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)"
        let version = text.split(") ").nth(1)?;
        version.split(['.', ' ']).next()?.trim().parse().ok()
    }
}

/// Where to look; [`SearchPaths::system`] is the real machine, tests substitute bogus places.
#[derive(Clone, Debug)]
pub struct SearchPaths {
    /// An explicit directory: used alone, without fallback.
    pub explicit: Option<PathBuf>,
    /// The `pg_config` program to ask for `--bindir` (None: skip).
    pub pg_config: Option<PathBuf>,
    /// Root of the Debian layout (`/usr/lib/postgresql`), holding `<major>/bin`.
    pub debian_root: PathBuf,
    /// The directories of `PATH`.
    pub path: Vec<PathBuf>,
    /// Major version of an existing cluster, to prefer its own binaries.
    pub cluster_major: Option<u32>,
}

impl SearchPaths {
    /// The real machine's places, with an optional explicit directory.
    pub fn system(explicit: Option<PathBuf>) -> Self {
        SearchPaths {
            explicit,
            pg_config: Some(PathBuf::from("pg_config")),
            debian_root: PathBuf::from("/usr/lib/postgresql"),
            path: std::env::var_os("PATH")
                .map(|p| std::env::split_paths(&p).collect())
                .unwrap_or_default(),
            cluster_major: None,
        }
    }
}

/// Finds the server binaries, or explains where it looked and what to install.
pub fn locate(search: &SearchPaths) -> Result<ServerBinaries> {
    let mut searched: Vec<String> = Vec::new();
    if let Some(dir) = &search.explicit {
        if has_server_programs(dir) {
            return Ok(ServerBinaries {
                bin_dir: dir.clone(),
            });
        }
        searched.push(format!("{} (as configured)", dir.display()));
        return Err(MirrorError::MissingServerBinaries {
            searched: searched.join(", "),
        });
    }
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(major) = search.cluster_major {
        candidates.push(search.debian_root.join(major.to_string()).join("bin"));
    }
    if let Some(pg_config) = &search.pg_config {
        match Command::new(pg_config).arg("--bindir").output() {
            Ok(out) if out.status.success() => {
                let dir = String::from_utf8_lossy(&out.stdout).trim().to_string();
                if !dir.is_empty() {
                    candidates.push(PathBuf::from(dir));
                }
            }
            _ => searched.push(format!("`{} --bindir`", pg_config.display())),
        }
    }
    candidates.extend(debian_bin_dirs(&search.debian_root));
    if debian_bin_dirs(&search.debian_root).next().is_none() {
        searched.push(format!("{}/*/bin", search.debian_root.display()));
    }
    candidates.extend(search.path.iter().cloned());
    for dir in candidates {
        if has_server_programs(&dir) {
            return Ok(ServerBinaries { bin_dir: dir });
        }
        searched.push(dir.display().to_string());
    }
    searched.dedup();
    Err(MirrorError::MissingServerBinaries {
        searched: searched.join(", "),
    })
}

/// `<root>/<major>/bin` directories, highest major version first.
fn debian_bin_dirs(root: &Path) -> impl Iterator<Item = PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name();
            let major: u32 = name.to_str()?.parse().ok()?;
            Some((major, entry.path().join("bin")))
        })
        .collect();
    versions.sort_by_key(|v| std::cmp::Reverse(v.0));
    versions.into_iter().map(|(_, dir)| dir)
}

fn has_server_programs(dir: &Path) -> bool {
    REQUIRED.iter().all(|p| dir.join(p).is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bogus() -> SearchPaths {
        SearchPaths {
            explicit: None,
            pg_config: Some(PathBuf::from("/nonexistent/pg_config")),
            debian_root: PathBuf::from("/nonexistent/postgresql"),
            path: vec![PathBuf::from("/nonexistent/bin")],
            cluster_major: None,
        }
    }

    #[test]
    fn missing_binaries_error_names_package_and_url_flag() {
        let err = locate(&bogus()).unwrap_err().to_string();
        assert!(err.contains("apt-get install postgresql"), "{err}");
        assert!(err.contains("--database-url"), "{err}");
        assert!(err.contains("/nonexistent/bin"), "{err}");
    }

    #[test]
    fn explicit_directory_has_no_fallback() {
        let mut search = SearchPaths::system(Some(PathBuf::from("/nonexistent/explicit")));
        search.path.clear();
        let err = locate(&search).unwrap_err().to_string();
        assert!(
            err.contains("/nonexistent/explicit (as configured)"),
            "{err}"
        );
    }

    #[test]
    fn highest_debian_version_wins() {
        let root = std::env::temp_dir().join(format!("wandbfs-bins-{}", std::process::id()));
        for major in ["9", "15", "13"] {
            let bin = root.join(major).join("bin");
            std::fs::create_dir_all(&bin).unwrap();
            for p in REQUIRED {
                std::fs::write(bin.join(p), b"").unwrap();
            }
        }
        let mut search = bogus();
        search.debian_root = root.clone();
        assert_eq!(
            locate(&search).unwrap().bin_dir,
            root.join("15").join("bin")
        );
        search.cluster_major = Some(13);
        assert_eq!(
            locate(&search).unwrap().bin_dir,
            root.join("13").join("bin")
        );
        std::fs::remove_dir_all(&root).unwrap();
    }
}
