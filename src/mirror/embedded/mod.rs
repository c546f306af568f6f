//! The zero-config embedded PostgreSQL cluster.
//!
//! With no `--database-url`, wandbfs keeps a private cluster under
//! `$XDG_DATA_HOME/wandbfs/pg` (default `~/.local/share/wandbfs/pg`, overridable), run by the
//! installed server binaries ([`binaries`]):
//!
//! ```text
//! <dir>/lock          flock()ed around init, start and stop: concurrent processes never race
//! <dir>/data/         PGDATA (mode 0700, owned by the server account)
//! <dir>/run/          Unix socket directory (0700) — or a short directory under /tmp or
//!                     $XDG_RUNTIME_DIR when <dir> is too long for a socket path
//! <dir>/socket_dir    which socket directory the cluster was created with
//! <dir>/postgres.log  the server's log
//! ```
//!
//! The server listens on its Unix socket only (`listen_addresses = ''`, so there is no TCP port
//! to race for) and trusts local connections; the 0700 socket directory is what keeps other
//! users out. As root, the server programs run as an unprivileged account ([`account`]).
//! A running server is recognised by `postmaster.pid` plus a successful connection to its
//! socket, so a second process (or `wandbfs db start`) reuses it instead of starting another.
//!
//! Tests and benchmarks use the same code through [`TempCluster`] and
//! [`crate::mirror::testing`].

pub mod account;
pub mod binaries;
mod temp;

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use md5::{Digest, Md5};
use nix::fcntl::{Flock, FlockArg};

pub use account::ServerAccount;
pub use binaries::{SearchPaths, ServerBinaries};
pub use temp::TempCluster;

use super::error::{MirrorError, Result, io_err};

/// Port number of the embedded server. With TCP off it only names the socket file
/// (`.s.PGSQL.5432`), so it cannot collide with anything.
pub const PORT: u16 = 5432;
/// Database superuser created by `initdb`.
pub const SUPERUSER: &str = "wandbfs";
/// Database that holds the mirror.
pub const DATABASE: &str = "wandbfs";
/// Where root keeps the cluster when the default location is not reachable by the server
/// account (root's home is usually mode 0700).
pub const ROOT_FALLBACK_DIR: &str = "/var/lib/wandbfs/pg";
/// Longest socket path we create (the kernel limit, `sun_path`, is 108 bytes).
const SOCKET_PATH_LIMIT: usize = 100;
/// How long `pg_ctl` may take to start or stop the server.
const PG_CTL_TIMEOUT_SECS: &str = "120";

/// How careful the server is with the data.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Durability {
    /// Normal PostgreSQL durability (fsync on).
    #[default]
    Durable,
    /// fsync, full-page writes and synchronous commit off: for throwaway clusters (tests,
    /// benchmarks) whose data does not outlive a crash.
    Throwaway,
}

/// How to find and run the embedded cluster.
#[derive(Clone, Debug, Default)]
pub struct ClusterOptions {
    /// Cluster directory; `None` = [`default_cluster_dir`].
    pub dir: Option<PathBuf>,
    /// Directory with `initdb`/`pg_ctl`/`postgres`; `None` = search ([`binaries`]).
    pub bin_dir: Option<PathBuf>,
    /// Account to run the server as when we are root (default `postgres`).
    pub server_user: Option<String>,
    /// fsync or not.
    pub durability: Durability,
}

/// `$XDG_DATA_HOME/wandbfs/pg`, falling back to `~/.local/share/wandbfs/pg`.
pub fn default_cluster_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| {
            std::env::var_os("HOME")
                .map(PathBuf::from)
                .filter(|p| p.is_absolute())
                .map(|home| home.join(".local").join("share"))
        })?;
    Some(base.join("wandbfs").join("pg"))
}

/// What [`EmbeddedCluster::status`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClusterState {
    /// No cluster has been created in the directory yet.
    NotInitialized,
    /// The cluster exists and no server runs.
    Stopped,
    /// A server runs and accepts connections on the socket.
    Running {
        /// The postmaster's process id.
        pid: u32,
    },
    /// `postmaster.pid` names a live process but its socket does not accept connections
    /// (starting up, shutting down, or a stale pid file whose pid was reused).
    NotResponding {
        /// The process id in `postmaster.pid`.
        pid: u32,
    },
}

/// A cluster's state and where its parts are.
#[derive(Clone, Debug)]
pub struct ClusterStatus {
    /// Running or not.
    pub state: ClusterState,
    /// The cluster directory.
    pub dir: PathBuf,
    /// Set when the default directory was unusable for the server account and
    /// [`ROOT_FALLBACK_DIR`] is used instead.
    pub relocated_from: Option<PathBuf>,
    /// The Unix socket directory.
    pub socket_dir: PathBuf,
    /// The server log.
    pub log_file: PathBuf,
    /// The server binaries used.
    pub bin_dir: PathBuf,
    /// The account the server runs as.
    pub server_user: String,
    /// PostgreSQL major version of the data directory (`PG_VERSION`), once initialised.
    pub data_version: Option<String>,
}

/// What [`EmbeddedCluster::ensure_running`] had to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartOutcome {
    /// A server was already running (started by another process or an earlier call).
    AlreadyRunning,
    /// This call started the server.
    Started {
        /// True when the cluster was also created (`initdb`) by this call.
        initialized: bool,
    },
}

/// A private PostgreSQL cluster in a directory. Cheap to create; nothing happens on disk until
/// [`ensure_running`](Self::ensure_running).
#[derive(Debug)]
pub struct EmbeddedCluster {
    dir: PathBuf,
    relocated_from: Option<PathBuf>,
    data_dir: PathBuf,
    socket_dir: PathBuf,
    log_file: PathBuf,
    binaries: ServerBinaries,
    account: ServerAccount,
    durability: Durability,
}

impl EmbeddedCluster {
    /// Resolves the directory, the server account, the binaries and the socket directory.
    pub fn open(options: &ClusterOptions) -> Result<Self> {
        let account = ServerAccount::resolve(options.server_user.as_deref()).map_err(|reason| {
            MirrorError::Cluster {
                dir: options.dir.clone().unwrap_or_default(),
                reason,
            }
        })?;
        let (dir, relocated_from) = match &options.dir {
            Some(dir) => (absolute(dir)?, None),
            None => {
                let default = default_cluster_dir().ok_or_else(|| MirrorError::Cluster {
                    dir: PathBuf::new(),
                    reason: "neither XDG_DATA_HOME nor HOME is set; pass --pg-dir".into(),
                })?;
                if account.blocking_ancestor(&default).is_some() {
                    (PathBuf::from(ROOT_FALLBACK_DIR), Some(default))
                } else {
                    (default, None)
                }
            }
        };
        if let Some(blocked) = account.blocking_ancestor(&dir) {
            return Err(MirrorError::Cluster {
                dir: dir.clone(),
                reason: format!(
                    "the server account `{}` cannot reach it because {} is not searchable by \
                     that account; choose a directory it can traverse (e.g. {ROOT_FALLBACK_DIR}) \
                     with --pg-dir",
                    account.name,
                    blocked.display()
                ),
            });
        }
        let data_dir = dir.join("data");
        let mut search = SearchPaths::system(options.bin_dir.clone());
        search.cluster_major = std::fs::read_to_string(data_dir.join("PG_VERSION"))
            .ok()
            .and_then(|v| v.trim().parse().ok());
        let binaries = binaries::locate(&search)?;
        let socket_dir = match std::fs::read_to_string(dir.join("socket_dir")) {
            Ok(recorded) if !recorded.trim().is_empty() => PathBuf::from(recorded.trim()),
            _ => choose_socket_dir(&dir, &account),
        };
        Ok(EmbeddedCluster {
            log_file: dir.join("postgres.log"),
            data_dir,
            socket_dir,
            binaries,
            account,
            durability: options.durability,
            relocated_from,
            dir,
        })
    }

    /// The cluster directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The Unix socket directory.
    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    /// The server log file.
    pub fn log_file(&self) -> &Path {
        &self.log_file
    }

    /// The account the server runs as.
    pub fn account(&self) -> &ServerAccount {
        &self.account
    }

    /// Connection settings for `dbname` over the Unix socket.
    pub fn connection_config(&self, dbname: &str) -> tokio_postgres::Config {
        let mut config = tokio_postgres::Config::new();
        config
            .host_path(&self.socket_dir)
            .port(PORT)
            .user(SUPERUSER)
            .dbname(dbname)
            .application_name("wandbfs");
        config
    }

    /// A libpq connection string for `psql` and other tools.
    pub fn connection_string(&self, dbname: &str) -> String {
        format!(
            "host={} port={PORT} user={SUPERUSER} dbname={dbname}",
            self.socket_dir.display()
        )
    }

    /// Reports whether the cluster exists and whether its server runs.
    pub fn status(&self) -> Result<ClusterStatus> {
        let data_version = std::fs::read_to_string(self.data_dir.join("PG_VERSION"))
            .ok()
            .map(|v| v.trim().to_string());
        let state = if data_version.is_none() {
            ClusterState::NotInitialized
        } else {
            match self.postmaster_pid() {
                None => ClusterState::Stopped,
                Some(pid) if self.socket_accepts() => ClusterState::Running { pid },
                Some(pid) => ClusterState::NotResponding { pid },
            }
        };
        Ok(ClusterStatus {
            state,
            dir: self.dir.clone(),
            relocated_from: self.relocated_from.clone(),
            socket_dir: self.socket_dir.clone(),
            log_file: self.log_file.clone(),
            bin_dir: self.binaries.bin_dir.clone(),
            server_user: self.account.name.clone(),
            data_version,
        })
    }

    /// Creates the cluster if needed and starts its server unless one runs; safe to call from
    /// many processes at once (they serialise on the cluster's lock file).
    pub fn ensure_running(&self) -> Result<StartOutcome> {
        self.create_cluster_dir()?;
        let _lock = self.lock()?;
        let initialized = if self.data_dir.join("PG_VERSION").is_file() {
            false
        } else {
            self.init()?;
            true
        };
        if self.postmaster_pid().is_some() && self.wait_for_socket(Duration::from_secs(2)) {
            return Ok(StartOutcome::AlreadyRunning);
        }
        self.start_server()?;
        Ok(StartOutcome::Started { initialized })
    }

    /// Stops the server (fast shutdown: open transactions are rolled back). Returns whether one
    /// was running.
    pub fn stop(&self) -> Result<bool> {
        if !self.data_dir.join("PG_VERSION").is_file() {
            return Ok(false);
        }
        let _lock = self.lock()?;
        self.stop_locked("fast")
    }

    /// Stops the server with the given `pg_ctl` shutdown mode; the caller holds the lock (or
    /// owns the cluster exclusively).
    fn stop_locked(&self, mode: &str) -> Result<bool> {
        if self.postmaster_pid().is_none() {
            return Ok(false);
        }
        let out = self
            .account
            .command(self.binaries.program("pg_ctl"))
            .args([
                "stop",
                "-s",
                "-w",
                "-t",
                PG_CTL_TIMEOUT_SECS,
                "-m",
                mode,
                "-D",
            ])
            .arg(&self.data_dir)
            .output()
            .map_err(io_err("running pg_ctl stop in", &self.data_dir))?;
        if !out.status.success() && self.postmaster_pid().is_some() {
            return Err(command_failed("pg_ctl stop", &out, None));
        }
        Ok(true)
    }

    fn create_cluster_dir(&self) -> Result<()> {
        // As root the server account must traverse the directory; its contents protect
        // themselves (data and socket directories are 0700).
        let mode = if self.account.switch { 0o755 } else { 0o700 };
        if !self.dir.is_dir() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(mode)
                .create(&self.dir)
                .map_err(io_err("creating the cluster directory", &self.dir))?;
        }
        Ok(())
    }

    fn lock(&self) -> Result<Flock<File>> {
        let path = self.dir.join("lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(io_err("opening the lock file", &path))?;
        Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, errno)| MirrorError::Io {
            action: "locking",
            path,
            source: errno.into(),
        })
    }

    /// Runs `initdb` into a scratch directory and renames it into place, so an interrupted
    /// init never leaves a half-made cluster behind.
    fn init(&self) -> Result<()> {
        let started = Instant::now();
        if let Ok(entries) = std::fs::read_dir(&self.dir) {
            for entry in entries.flatten() {
                if entry.file_name().to_string_lossy().starts_with("data.tmp-") {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        }
        let scratch = self.dir.join(format!("data.tmp-{}", std::process::id()));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&scratch)
            .map_err(io_err("creating", &scratch))?;
        self.account
            .chown(&scratch)
            .map_err(io_err("handing to the server account", &scratch))?;
        let mut cmd = self.account.command(self.binaries.program("initdb"));
        cmd.arg("-D")
            .arg(&scratch)
            .args(["-U", SUPERUSER, "--auth-local=trust", "--auth-host=reject"])
            .args(["-E", "UTF8", "--locale=C", "--no-instructions"]);
        if self.durability == Durability::Throwaway {
            cmd.arg("--no-sync");
        }
        let out = cmd
            .output()
            .map_err(io_err("running initdb in", &scratch))?;
        if !out.status.success() {
            let _ = std::fs::remove_dir_all(&scratch);
            return Err(command_failed("initdb", &out, None));
        }
        let mut settings = format!(
            "\n# Added by wandbfs: Unix socket only, protected by a 0700 socket directory.\n\
             listen_addresses = ''\n\
             port = {PORT}\n\
             unix_socket_directories = '{}'\n\
             unix_socket_permissions = 0700\n\
             max_connections = 100\n\
             shared_buffers = 128MB\n\
             max_wal_size = 2GB\n",
            self.socket_dir.display().to_string().replace('\'', "''")
        );
        if self.durability == Durability::Throwaway {
            settings.push_str("fsync = off\nfull_page_writes = off\nsynchronous_commit = off\n");
        }
        let conf = scratch.join("postgresql.conf");
        OpenOptions::new()
            .append(true)
            .open(&conf)
            .and_then(|mut f| f.write_all(settings.as_bytes()))
            .map_err(io_err("configuring", &conf))?;
        std::fs::write(
            self.dir.join("socket_dir"),
            self.socket_dir.display().to_string(),
        )
        .map_err(io_err("recording the socket directory in", &self.dir))?;
        std::fs::rename(&scratch, &self.data_dir).map_err(io_err("renaming", &scratch))?;
        tracing::info!(dir = %self.dir.display(), elapsed = ?started.elapsed(), "embedded PostgreSQL cluster created");
        Ok(())
    }

    fn start_server(&self) -> Result<()> {
        self.prepare_socket_dir()?;
        if !self.log_file.exists() {
            OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(&self.log_file)
                .map_err(io_err("creating the server log", &self.log_file))?;
        }
        self.account
            .chown(&self.log_file)
            .map_err(io_err("handing to the server account", &self.log_file))?;
        let out = self
            .account
            .command(self.binaries.program("pg_ctl"))
            .args(["start", "-s", "-w", "-t", PG_CTL_TIMEOUT_SECS, "-D"])
            .arg(&self.data_dir)
            .arg("-l")
            .arg(&self.log_file)
            .output()
            .map_err(io_err("running pg_ctl start in", &self.data_dir))?;
        if !out.status.success() {
            return Err(command_failed("pg_ctl start", &out, Some(&self.log_file)));
        }
        if !self.wait_for_socket(Duration::from_secs(10)) {
            return Err(MirrorError::Cluster {
                dir: self.dir.clone(),
                reason: format!(
                    "the server started but its socket in {} accepts no connections; see {}",
                    self.socket_dir.display(),
                    self.log_file.display()
                ),
            });
        }
        tracing::info!(dir = %self.dir.display(), "embedded PostgreSQL server started");
        Ok(())
    }

    /// Creates the socket directory (0700, owned by the server account) or checks that an
    /// existing one is ours and private; a directory under /tmp could have been planted.
    fn prepare_socket_dir(&self) -> Result<()> {
        let dir = &self.socket_dir;
        match std::fs::symlink_metadata(dir) {
            Ok(meta) => {
                let mode = meta.permissions().mode() & 0o777;
                if !meta.is_dir() || meta.uid() != self.account.uid || mode != 0o700 {
                    return Err(MirrorError::Cluster {
                        dir: self.dir.clone(),
                        reason: format!(
                            "socket directory {} must be a directory owned by `{}` with mode \
                             0700 (found uid {}, mode {mode:o}); remove it and retry",
                            dir.display(),
                            self.account.name,
                            meta.uid()
                        ),
                    });
                }
            }
            Err(_) => {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir)
                    .map_err(io_err("creating the socket directory", dir))?;
                std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                    .map_err(io_err("restricting", dir))?;
                self.account
                    .chown(dir)
                    .map_err(io_err("handing to the server account", dir))?;
            }
        }
        Ok(())
    }

    /// The pid in `postmaster.pid` when that process is alive.
    fn postmaster_pid(&self) -> Option<u32> {
        let text = std::fs::read_to_string(self.data_dir.join("postmaster.pid")).ok()?;
        let pid: i32 = text.lines().next()?.trim().parse().ok()?;
        if pid <= 0 {
            return None;
        }
        match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) {
            Ok(()) | Err(nix::errno::Errno::EPERM) => Some(pid as u32),
            Err(_) => None,
        }
    }

    fn socket_path(&self) -> PathBuf {
        self.socket_dir.join(format!(".s.PGSQL.{PORT}"))
    }

    fn socket_accepts(&self) -> bool {
        std::os::unix::net::UnixStream::connect(self.socket_path()).is_ok()
    }

    fn wait_for_socket(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.socket_accepts() {
                return true;
            }
            if Instant::now() >= deadline || self.postmaster_pid().is_none() {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// `<dir>/run` when the socket path fits, else a short private directory.
fn choose_socket_dir(dir: &Path, account: &ServerAccount) -> PathBuf {
    let inside = dir.join("run");
    let socket_name_len = format!("/.s.PGSQL.{PORT}").len();
    if inside.as_os_str().len() + socket_name_len < SOCKET_PATH_LIMIT {
        return inside;
    }
    let digest = Md5::digest(dir.as_os_str().as_encoded_bytes());
    let tag: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
    // $XDG_RUNTIME_DIR is private to the invoking user, so only usable when no account switch
    // is needed.
    if !account.switch
        && let Some(runtime) = std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from)
    {
        let candidate = runtime.join(format!("wandbfs-{tag}"));
        if runtime.is_absolute()
            && candidate.as_os_str().len() + socket_name_len < SOCKET_PATH_LIMIT
        {
            return candidate;
        }
    }
    std::env::temp_dir().join(format!("wandbfs-{}-{tag}", account.uid))
}

fn absolute(dir: &Path) -> Result<PathBuf> {
    if dir.is_absolute() {
        return Ok(dir.to_path_buf());
    }
    let cwd = std::env::current_dir().map_err(io_err("reading the current directory", "."))?;
    Ok(cwd.join(dir))
}

/// An error for a failed server program, with the tail of its output and of the server log.
fn command_failed(program: &str, out: &Output, log: Option<&Path>) -> MirrorError {
    let mut text = String::from_utf8_lossy(&out.stderr).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stdout));
    if let Some(log) = log
        && let Ok(log_text) = std::fs::read_to_string(log)
    {
        let tail: Vec<&str> = log_text.lines().rev().take(15).collect();
        text.push_str(&format!("\n--- last lines of {} ---\n", log.display()));
        for line in tail.into_iter().rev() {
            text.push_str(line);
            text.push('\n');
        }
    }
    MirrorError::ServerCommand {
        program: program.to_string(),
        status: out.status.to_string(),
        output: text.trim().to_string(),
    }
}
