//! The embedded PostgreSQL cluster, against the real server binaries: init, reuse, concurrent
//! starts, stop, status, the server account, socket paths, and the missing-binaries error.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier};

use wandbfs::mirror::embedded::{
    ClusterOptions, ClusterState, Durability, EmbeddedCluster, StartOutcome,
};
use wandbfs::mirror::{ConnectOptions, Mirror};

/// A cluster directory that is stopped and removed however the test ends.
struct Scratch {
    root: PathBuf,
    clusters: Vec<ClusterOptions>,
}

impl Scratch {
    fn new(tag: &str) -> Self {
        let root = std::env::temp_dir().join(format!("wandbfs-ct-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
        Scratch {
            root,
            clusters: Vec::new(),
        }
    }

    fn options(&self, dir: &Path) -> ClusterOptions {
        ClusterOptions {
            dir: Some(dir.to_path_buf()),
            bin_dir: std::env::var_os("WANDBFS_PG_BIN").map(PathBuf::from),
            server_user: std::env::var("WANDBFS_PG_USER").ok(),
            durability: Durability::Throwaway,
        }
    }

    /// Opens a cluster in `dir` and remembers it for cleanup.
    fn open(&mut self, dir: &Path) -> EmbeddedCluster {
        let options = self.options(dir);
        self.clusters.push(options.clone());
        EmbeddedCluster::open(&options).expect("open")
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        for options in &self.clusters {
            let Ok(c) = EmbeddedCluster::open(options) else {
                continue;
            };
            let _ = c.stop();
            if !c.socket_dir().starts_with(&self.root) {
                let _ = std::fs::remove_dir_all(c.socket_dir());
            }
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn process_uid(pid: u32) -> u32 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn init_start_reuse_status_stop() {
    let mut scratch = Scratch::new("life");
    let dir = scratch.root.join("pg");
    let cluster = scratch.open(&dir);
    assert_eq!(
        cluster.status().unwrap().state,
        ClusterState::NotInitialized
    );

    let started = std::time::Instant::now();
    assert_eq!(
        cluster.ensure_running().unwrap(),
        StartOutcome::Started { initialized: true }
    );
    eprintln!("cluster init + start: {:?}", started.elapsed());
    let status = cluster.status().unwrap();
    let ClusterState::Running { pid } = status.state else {
        panic!("not running: {status:?}");
    };
    let version = status.data_version.clone().expect("PG_VERSION after init");
    assert!(version.parse::<u32>().is_ok_and(|v| v >= 10), "{version}");

    // The server runs as the resolved account: `postgres` (or WANDBFS_PG_USER) when we are
    // root, ourselves otherwise; the data and socket directories belong to it and are private.
    let account = cluster.account().clone();
    let me = nix::unistd::Uid::effective();
    if me.is_root() {
        assert!(account.switch);
        assert_ne!(account.uid, 0);
        assert_eq!(
            account.name,
            std::env::var("WANDBFS_PG_USER").unwrap_or_else(|_| "postgres".into())
        );
    } else {
        assert!(!account.switch);
        assert_eq!(account.uid, me.as_raw());
    }
    assert_eq!(process_uid(pid), account.uid);
    for private in [dir.join("data"), cluster.socket_dir().to_path_buf()] {
        let meta = std::fs::metadata(&private).unwrap();
        assert_eq!(meta.uid(), account.uid, "{}", private.display());
        assert_eq!(
            meta.permissions().mode() & 0o777,
            0o700,
            "{}",
            private.display()
        );
    }
    // Unix socket only: no TCP listener configured.
    let conf = std::fs::read_to_string(dir.join("data/postgresql.conf")).unwrap();
    assert!(conf.contains("listen_addresses = ''"));

    // A second handle (another invocation) reuses the running server.
    let again = EmbeddedCluster::open(&scratch.options(&dir)).unwrap();
    assert_eq!(
        again.ensure_running().unwrap(),
        StartOutcome::AlreadyRunning
    );
    assert_eq!(again.status().unwrap().state, ClusterState::Running { pid });

    // Stop, then a restart reuses the existing data (no second initdb).
    assert!(again.stop().unwrap());
    assert_eq!(again.status().unwrap().state, ClusterState::Stopped);
    assert!(!again.stop().unwrap(), "stopping twice reports not running");
    assert_eq!(
        again.ensure_running().unwrap(),
        StartOutcome::Started { initialized: false }
    );
    assert!(matches!(
        again.status().unwrap().state,
        ClusterState::Running { .. }
    ));
    assert!(dir.join("postgres.log").is_file());
}

#[test]
fn concurrent_starts_share_one_server() {
    let scratch = Scratch::new("conc");
    let dir = scratch.root.join("pg");
    let options = scratch.options(&dir);
    let barrier = Arc::new(Barrier::new(4));
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let options = options.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let cluster = EmbeddedCluster::open(&options).unwrap();
                barrier.wait();
                let outcome = cluster.ensure_running().unwrap();
                let ClusterState::Running { pid } = cluster.status().unwrap().state else {
                    panic!("not running after ensure_running");
                };
                (outcome, pid)
            })
        })
        .collect();
    let results: Vec<(StartOutcome, u32)> =
        handles.into_iter().map(|h| h.join().unwrap()).collect();
    let started = results
        .iter()
        .filter(|(o, _)| matches!(o, StartOutcome::Started { initialized: true }))
        .count();
    assert_eq!(
        started, 1,
        "exactly one caller creates and starts: {results:?}"
    );
    assert!(
        results.iter().all(|(_, pid)| *pid == results[0].1),
        "everyone sees the same server: {results:?}"
    );
    let cluster = EmbeddedCluster::open(&options).unwrap();
    assert!(cluster.stop().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirror_connect_creates_the_database_and_migrates_once() {
    let scratch = Scratch::new("conn");
    let dir = scratch.root.join("pg");
    let target = wandbfs::mirror::DatabaseTarget::Embedded(scratch.options(&dir));
    // Two connects at once: one cluster, one database, one migration.
    let options = ConnectOptions::default();
    let (a, b) = tokio::join!(
        Mirror::connect(&target, &options),
        Mirror::connect(&target, &options)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    let client = a.pool().get().await.unwrap();
    let versions: i64 = client
        .query_one("SELECT count(*) FROM wandb.schema_version", &[])
        .await
        .unwrap()
        .get(0);
    // Each migration applied exactly once, although two processes connected at once.
    assert_eq!(versions, wandbfs::mirror::schema::MIGRATIONS.len() as i64);
    let search_path: String = client
        .query_one("SHOW search_path", &[])
        .await
        .unwrap()
        .get(0);
    assert!(search_path.starts_with("wandb"), "{search_path}");
    drop((client, a, b));
    let cluster = EmbeddedCluster::open(&scratch.options(&dir)).unwrap();
    assert!(cluster.stop().unwrap());
}

#[test]
fn long_cluster_paths_get_a_short_private_socket_directory() {
    let mut scratch = Scratch::new("long");
    let dir = scratch.root.join("x".repeat(90)).join("pg");
    let cluster = scratch.open(&dir);
    let socket = cluster.socket_dir().join(".s.PGSQL.5432");
    assert!(socket.as_os_str().len() < 100, "{}", socket.display());
    assert!(!cluster.socket_dir().starts_with(&dir));
    cluster.ensure_running().unwrap();
    assert!(matches!(
        cluster.status().unwrap().state,
        ClusterState::Running { .. }
    ));
    // Later invocations find the recorded socket directory.
    let recorded = std::fs::read_to_string(dir.join("socket_dir")).unwrap();
    assert_eq!(Path::new(recorded.trim()), cluster.socket_dir());
    let again = EmbeddedCluster::open(&scratch.options(&dir)).unwrap();
    assert_eq!(again.socket_dir(), cluster.socket_dir());
    assert_eq!(
        again.ensure_running().unwrap(),
        StartOutcome::AlreadyRunning
    );
}

#[test]
fn missing_server_binaries_give_a_clear_error() {
    let scratch = Scratch::new("nobin");
    let mut options = scratch.options(&scratch.root.join("pg"));
    options.bin_dir = Some(scratch.root.join("no-such-bin"));
    let err = EmbeddedCluster::open(&options).unwrap_err().to_string();
    assert!(err.contains("apt-get install postgresql"), "{err}");
    assert!(err.contains("--database-url"), "{err}");
    assert!(err.contains("no-such-bin"), "{err}");
}

#[test]
fn an_unreachable_cluster_directory_is_refused_with_advice() {
    if !nix::unistd::Uid::effective().is_root() {
        // Without root there is no account switch, so any directory we can write is reachable;
        // the refusal below cannot happen. Assert exactly that instead of skipping silently.
        let scratch = Scratch::new("reach");
        assert!(EmbeddedCluster::open(&scratch.options(&scratch.root.join("pg"))).is_ok());
        return;
    }
    let scratch = Scratch::new("reach");
    let private = scratch.root.join("private");
    std::fs::create_dir(&private).unwrap();
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
    let err = EmbeddedCluster::open(&scratch.options(&private.join("pg")))
        .unwrap_err()
        .to_string();
    assert!(err.contains("cannot reach"), "{err}");
    assert!(err.contains(&private.display().to_string()), "{err}");
    assert!(err.contains("--pg-dir"), "{err}");
}
