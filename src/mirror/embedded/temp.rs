//! Throwaway clusters for tests and benchmarks.
//!
//! A [`TempCluster`] lives in a fresh directory under the system temp dir, runs without fsync,
//! and is stopped and deleted when dropped. Because a test process can also die without running
//! destructors (a panic in a static's owner, `abort`, `kill -9`, or simply statics never being
//! dropped), every temp cluster also has a **watchdog**: a small `sh` process in its own process
//! group that blocks reading a pipe whose only writer is this process. When this process ends,
//! however it ends, the pipe closes and the watchdog shuts the server down immediately
//! (`SIGQUIT` to the postmaster) and removes the directory. No orphan `postgres` survives a
//! test binary.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use super::{ClusterOptions, Durability, EmbeddedCluster, StartOutcome};
use crate::mirror::error::{Result, io_err};

/// What the watchdog runs: wait for EOF on stdin, then stop the server and delete the tree.
const WATCHDOG_SCRIPT: &str = r#"
cat >/dev/null
pid=$(head -n 1 "$1/postmaster.pid" 2>/dev/null)
if [ -n "$pid" ]; then
  kill -QUIT "$pid" 2>/dev/null
  i=0
  while kill -0 "$pid" 2>/dev/null && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done
fi
rm -rf "$2" "$3"
"#;

/// A running throwaway cluster, stopped and deleted on drop.
#[derive(Debug)]
pub struct TempCluster {
    cluster: EmbeddedCluster,
    root: PathBuf,
    watchdog: Option<Child>,
    startup: std::time::Duration,
}

impl TempCluster {
    /// Creates and starts a cluster in a new temporary directory.
    ///
    /// Honours `WANDBFS_PG_BIN` (server binaries) and `WANDBFS_PG_USER` (account when root),
    /// like the `wandbfs` command.
    pub fn start() -> Result<Self> {
        Self::start_with(Durability::Throwaway)
    }

    /// [`TempCluster::start`] with a chosen durability (benchmarks measure with fsync on).
    pub fn start_with(durability: Durability) -> Result<Self> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let started = Instant::now();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let root = std::env::temp_dir().join(format!(
            "wandbfs-pg-{}-{}-{nanos:x}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir(&root).map_err(io_err("creating", &root))?;
        // The server account (when we are root) must be able to traverse it.
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755))
            .map_err(io_err("setting permissions of", &root))?;
        let options = ClusterOptions {
            dir: Some(root.clone()),
            bin_dir: std::env::var_os("WANDBFS_PG_BIN").map(PathBuf::from),
            server_user: std::env::var("WANDBFS_PG_USER").ok(),
            durability,
        };
        let cluster = match EmbeddedCluster::open(&options) {
            Ok(c) => c,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&root);
                return Err(e);
            }
        };
        // The watchdog exists before the server does, so there is no window in which a crash
        // of this process would orphan a server.
        let watchdog = spawn_watchdog(&cluster.data_dir, &root, &cluster.socket_dir);
        let mut temp = TempCluster {
            cluster,
            root,
            watchdog,
            startup: std::time::Duration::ZERO,
        };
        match temp.cluster.ensure_running()? {
            StartOutcome::Started { .. } | StartOutcome::AlreadyRunning => {}
        }
        temp.startup = started.elapsed();
        Ok(temp)
    }

    /// The cluster.
    pub fn cluster(&self) -> &EmbeddedCluster {
        &self.cluster
    }

    /// The temporary directory holding everything.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// How long `initdb` + start took.
    pub fn startup_time(&self) -> std::time::Duration {
        self.startup
    }

    /// Makes the server also accept TCP connections on 127.0.0.1 at a free port, with `pg_hba`
    /// as its whole `pg_hba.conf` and `settings` appended to `postgresql.conf`, and restarts
    /// it. For tests of the external-server paths (TLS, password authentication), which the
    /// socket-only default cannot exercise. Returns the port.
    pub fn serve_tcp(&self, pg_hba: &str, settings: &str) -> Result<u16> {
        let c = &self.cluster;
        let data = &c.data_dir;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(io_err("finding a free TCP port for", data))?
            .port();
        let hba = data.join("pg_hba.conf");
        std::fs::write(&hba, pg_hba).map_err(io_err("writing", &hba))?;
        let conf = data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf).map_err(io_err("reading", &conf))?;
        text.push_str(&format!(
            "listen_addresses = '127.0.0.1'\nport = {port}\n{settings}\n"
        ));
        std::fs::write(&conf, text).map_err(io_err("writing", &conf))?;
        let out = c
            .account
            .command(c.binaries.program("pg_ctl"))
            .args(["restart", "-s", "-w", "-m", "fast", "-D"])
            .arg(data)
            .arg("-l")
            .arg(&c.log_file)
            .output()
            .map_err(io_err("running pg_ctl restart in", data))?;
        if !out.status.success() {
            return Err(super::command_failed(
                "pg_ctl restart",
                &out,
                Some(&c.log_file),
            ));
        }
        Ok(port)
    }
}

impl Drop for TempCluster {
    fn drop(&mut self) {
        if let Err(e) = self.cluster.stop_locked("immediate") {
            tracing::warn!(error = %e, "stopping a temporary PostgreSQL cluster");
        }
        let _ = std::fs::remove_dir_all(&self.root);
        if !self.cluster.socket_dir.starts_with(&self.root) {
            let _ = std::fs::remove_dir_all(&self.cluster.socket_dir);
        }
        if let Some(mut watchdog) = self.watchdog.take() {
            // Closing its stdin lets it finish (nothing is left to stop or delete).
            drop(watchdog.stdin.take());
            let _ = watchdog.wait();
        }
    }
}

fn spawn_watchdog(data_dir: &Path, root: &Path, socket_dir: &Path) -> Option<Child> {
    // The socket directory is inside `root` unless `root` was too long for a socket path.
    let socket_dir = if socket_dir.starts_with(root) {
        root
    } else {
        socket_dir
    };
    let spawned = Command::new("sh")
        .arg("-c")
        .arg(WATCHDOG_SCRIPT)
        .arg("wandbfs-pg-watchdog")
        .arg(data_dir)
        .arg(root)
        .arg(socket_dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .current_dir("/")
        // Its own process group: a Ctrl-C aimed at the test run must not kill the watchdog
        // before it has cleaned up.
        .process_group(0)
        .spawn();
    match spawned {
        Ok(mut child) => {
            // Nothing is ever written; the pipe only signals our exit by closing.
            if let Some(stdin) = child.stdin.as_mut() {
                let _ = stdin.flush();
            }
            Some(child)
        }
        Err(e) => {
            tracing::warn!(error = %e, "no watchdog for a temporary cluster (sh missing?)");
            None
        }
    }
}
