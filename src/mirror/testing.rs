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
