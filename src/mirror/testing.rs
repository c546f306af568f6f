//! Test support: one throwaway cluster per test binary, a fresh migrated database per test.
//!
//! ```no_run
//! # async fn example() -> wandbfs::mirror::Result<()> {
//! let db = wandbfs::mirror::testing::fresh_database().await?;
//! let project = db.mirror.upsert_project(&Default::default()).await?;
//! # Ok(()) }
//! ```
//!
//! The cluster is created on first use (`initdb` once per test binary) and is stopped and
//! deleted by its watchdog when the test binary exits ([`TempCluster`]). Each database is
//! cloned from a template that was migrated once, so a new database costs a `CREATE DATABASE`
//! (tens of milliseconds), not a migration.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

use tokio::sync::OnceCell;
use tokio_postgres::NoTls;

use super::embedded::TempCluster;
use super::error::{DbContext, MirrorError, Result};
use super::{ConnectOptions, Mirror, schema};

pub mod v1;

const TEMPLATE: &str = "wandbfs_template";

/// A fresh database in the shared test cluster.
#[derive(Debug)]
pub struct TestDatabase {
    /// Its name.
    pub name: String,
    /// Connection settings (Unix socket).
    pub config: tokio_postgres::Config,
    /// A mirror connected to it (migrated).
    pub mirror: Mirror,
}

impl TestDatabase {
    /// A plain `tokio_postgres` client for raw SQL in tests; its connection task runs on the
    /// current runtime.
    pub async fn raw_client(&self) -> Result<tokio_postgres::Client> {
        let (client, connection) = self
            .config
            .connect(NoTls)
            .await
            .db("connecting to a test database")?;
        tokio::spawn(connection);
        Ok(client)
    }
}

/// The test binary's shared cluster, started on first use.
pub fn shared_cluster() -> Result<&'static TempCluster> {
    static SHARED: OnceLock<std::result::Result<TempCluster, String>> = OnceLock::new();
    SHARED
        .get_or_init(|| TempCluster::start().map_err(|e| e.to_string()))
        .as_ref()
        .map_err(|e| MirrorError::Pool(format!("the shared test cluster did not start: {e}")))
}

/// Creates a new, migrated database in the shared cluster and connects a [`Mirror`] to it.
pub async fn fresh_database() -> Result<TestDatabase> {
    fresh_database_with(&ConnectOptions::default()).await
}

/// A fresh database holding one project (`ent/proj`) with one running run (`run1`), for tests
/// of the mirror's row-level API.
pub async fn fresh_database_with_run() -> Result<(TestDatabase, super::RunPk)> {
    let db = fresh_database().await?;
    let project = db
        .mirror
        .upsert_project(&super::ProjectRecord {
            entity: "ent".into(),
            name: "proj".into(),
            ..Default::default()
        })
        .await?;
    let run = db
        .mirror
        .upsert_run(
            project,
            &super::RunRecord {
                run_id: "run1".into(),
                state: Some("running".into()),
                ..Default::default()
            },
        )
        .await?;
    Ok((db, run.run_pk))
}

/// [`fresh_database`] with explicit connection options.
pub async fn fresh_database_with(options: &ConnectOptions) -> Result<TestDatabase> {
    static TEMPLATE_READY: OnceCell<()> = OnceCell::const_new();
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let cluster = tokio::task::spawn_blocking(shared_cluster)
        .await
        .map_err(|e| MirrorError::Pool(format!("cluster start task failed: {e}")))??;
    TEMPLATE_READY
        .get_or_try_init(|| create_template(cluster))
        .await?;
    let name = format!(
        "test_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    let admin = connect(cluster, "postgres").await?;
    admin
        .batch_execute(&format!("CREATE DATABASE {name} TEMPLATE {TEMPLATE}"))
        .await
        .db("creating a test database")?;
    drop(admin);
    let config = cluster.cluster().connection_config(&name);
    let mirror = Mirror::connect_config(config.clone(), options).await?;
    Ok(TestDatabase {
        name,
        config,
        mirror,
    })
}

/// Creates a new, *empty* database (no mirror schema) in the shared cluster and returns its
/// connection settings; for migration tests.
pub async fn empty_database() -> Result<tokio_postgres::Config> {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let cluster = tokio::task::spawn_blocking(shared_cluster)
        .await
        .map_err(|e| MirrorError::Pool(format!("cluster start task failed: {e}")))??;
    let name = format!(
        "empty_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    let admin = connect(cluster, "postgres").await?;
    admin
        .batch_execute(&format!("CREATE DATABASE {name} TEMPLATE template0"))
        .await
        .db("creating an empty test database")?;
    Ok(cluster.cluster().connection_config(&name))
}

/// A plain client of the database `config` names (e.g. an [`empty_database`]).
pub async fn raw_client(config: &tokio_postgres::Config) -> Result<tokio_postgres::Client> {
    let (client, connection) = config
        .connect(NoTls)
        .await
        .db("connecting to a test database")?;
    tokio::spawn(connection);
    Ok(client)
}

async fn create_template(cluster: &TempCluster) -> Result<()> {
    let admin = connect(cluster, "postgres").await?;
    admin
        .batch_execute(&format!("CREATE DATABASE {TEMPLATE}"))
        .await
        .db("creating the test template database")?;
    {
        let mut client = connect(cluster, TEMPLATE).await?;
        schema::migrate(&mut client).await?;
    }
    admin
        .batch_execute(&format!("ALTER DATABASE {TEMPLATE} IS_TEMPLATE true"))
        .await
        .db("marking the template")?;
    Ok(())
}

async fn connect(cluster: &TempCluster, dbname: &str) -> Result<tokio_postgres::Client> {
    let (client, connection) = cluster
        .cluster()
        .connection_config(dbname)
        .connect(NoTls)
        .await
        .db("connecting to the test cluster")?;
    tokio::spawn(connection);
    Ok(client)
}

/// CPU time (user + system, seconds) that process `pid` has used so far, from
/// `/proc/<pid>/stat` (`"self"` for this process); 0 when it cannot be read (another OS, a
/// process that is gone). For benchmarks that split CPU per row between processes.
pub fn process_cpu_seconds(pid: &str) -> f64 {
    cpu_ticks(pid, false) / 100.0
}

/// utime + stime of `pid` (plus cutime + cstime, its exited and reaped children, with
/// `with_children`), in ticks.
fn cpu_ticks(pid: &str, with_children: bool) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name (field 2) may contain spaces; the other fields follow its last ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime, stime, cutime, cstime (fields 14 to 17; 12 to 15 after the name), in USER_HZ =
    // 100 ticks per second on Linux.
    let own = ticks(11) + ticks(12);
    if with_children {
        own + ticks(13) + ticks(14)
    } else {
        own
    }
}

/// CPU time (seconds) used so far by the running server of `cluster`: the postmaster, its live
/// children (backends, WAL writer, checkpointer, …) and the children it has reaped (backends of
/// closed connections).
pub fn server_cpu_seconds(cluster: &super::EmbeddedCluster) -> f64 {
    let pid_file = cluster.dir().join("data").join("postmaster.pid");
    let Some(postmaster) = std::fs::read_to_string(pid_file)
        .ok()
        .and_then(|t| t.lines().next().map(|l| l.trim().to_owned()))
    else {
        return 0.0;
    };
    let mut total = cpu_ticks(&postmaster, true) / 100.0;
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let pid = entry.file_name().to_string_lossy().into_owned();
        if !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let parent = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1));
        if parent == Some(postmaster.as_str()) {
            total += process_cpu_seconds(&pid);
        }
    }
    total
}
