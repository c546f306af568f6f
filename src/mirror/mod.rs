//! The Postgres mirror: where synced W&B data lives, queryable with SQL and served to the
//! filesystem without API calls.
//!
//! - [`DatabaseUrl`]: `--database-url` / `WANDBFS_DATABASE_URL`, with Python-style URLs
//!   normalised and passwords redacted.
//! - [`embedded`]: the zero-config private cluster used when no URL is given (and by the tests,
//!   through [`embedded::TempCluster`] and [`testing`]).
//! - [`schema`]: versioned migrations (`migrations/NNNN_name.sql`), applied on connect.
//! - [`Mirror`]: a connection pool with the write API for the sync engine (upserts, history
//!   ingest by binary COPY with crash-safe batches) and the read API for the store and the mount
//!   (exact sizes and byte-range reads of the synthetic files from compressed blocks).
//!
//! `docs/MIRROR.md` describes the schema, the value encoding and the block design.

mod blocks;
pub(crate) mod columns;
mod conn;
pub mod database_url;
mod dictionary;
pub mod embedded;
mod error;
mod ingest;
pub mod model;
mod pgpass;
mod read;
mod rowcodec;
pub mod schema;
mod sqljson;
mod sync_lock;
pub mod testing;
pub mod tls;
pub mod upgrade;
mod write;

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio::sync::Semaphore;
use tokio_postgres::NoTls;

pub use blocks::{BLOCK_ROWS, BLOCK_TEXT_BYTES};
pub use conn::{Conn, QueryError, TimedRows};
pub use database_url::{DatabaseUrl, ParsedDatabaseUrl};
pub use embedded::{ClusterOptions, EmbeddedCluster};
pub use error::{MirrorError, Result, describe_pg_error};
pub use ingest::{DEFAULT_BATCH_BYTES, DEFAULT_BATCH_ROWS, IngestOutcome, StreamWriter};
pub use model::*;
pub use read::{ArtifactVersionSummary, Document, RunName, RunSummary, RunSyncState};
pub use sync_lock::ProjectSyncLock;
pub use tls::TlsPolicy;
pub use write::{ProjectSyncState, RunOutcome};

use error::DbContext;

/// A run's pre-rendered JSON Lines stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stream {
    /// `history.jsonl`: one row per step, keyed by `_step`.
    History,
    /// `system.jsonl`: system-metric events, keyed by their position (0, 1, …).
    System,
}

impl Stream {
    /// The `stream` column value in `wandb.stream_blocks` and `wandb.block_values`.
    pub fn code(self) -> i16 {
        match self {
            Stream::History => 1,
            Stream::System => 2,
        }
    }
}

/// Where the mirror lives.
#[derive(Clone, Debug)]
pub enum DatabaseTarget {
    /// An existing server.
    Url(DatabaseUrl),
    /// The embedded cluster (started on demand).
    Embedded(ClusterOptions),
}

impl DatabaseTarget {
    /// The target for a `--database-url` value (if any) and the embedded-cluster options, with
    /// the notes on what was normalised in the URL.
    pub fn resolve(url: Option<&str>, cluster: ClusterOptions) -> Result<(Self, Vec<String>)> {
        match url.map(str::trim).filter(|u| !u.is_empty()) {
            Some(url) => {
                let mut parsed = DatabaseUrl::parse(url)?;
                parsed.normalised.extend(parsed.url.password_file_problem());
                Ok((DatabaseTarget::Url(parsed.url), parsed.normalised))
            }
            None => Ok((DatabaseTarget::Embedded(cluster), Vec::new())),
        }
    }
}

/// What to do about the schema when connecting.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SchemaPolicy {
    /// Apply missing migrations (writers, and single-user setups).
    #[default]
    Migrate,
    /// Only check that the schema is exactly this binary's version (read-only users).
    RequireCurrent,
}

/// Connection settings.
#[derive(Clone, Debug)]
pub struct ConnectOptions {
    /// Pool size (at least 2: an ingest batch uses two connections).
    pub max_connections: usize,
    /// Migrate or only check.
    pub schema: SchemaPolicy,
    /// How long to wait for a free connection.
    pub wait_timeout: Duration,
    /// How long a reader's statement (and the creation of a connection) may take before it
    /// fails with [`MirrorError::Timeout`]: a server that stopped answering must not hang the
    /// caller (the mount's requests). `None`: no limit (`wandbfs sync`, whose statements may
    /// legitimately run long). See [`Conn`]; [`Mirror::with_statement_timeout`] makes a clone
    /// over the same pool with another limit.
    pub statement_timeout: Option<Duration>,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            max_connections: 8,
            schema: SchemaPolicy::Migrate,
            wait_timeout: Duration::from_secs(60),
            statement_timeout: None,
        }
    }
}

/// A pooled connection to the mirror database, with the mirror's read and write API.
#[derive(Clone)]
pub struct Mirror {
    pool: Pool,
    /// Ingest batches in flight. A batch may hold two connections (its transaction, and one for
    /// new dictionary entries), so at most half the pool may ingest at once: a batch never
    /// waits for a second connection that other batches hold.
    ingest_permits: Arc<Semaphore>,
    /// Metric keys and key sets known to this process (ids are never reused or changed).
    dictionary: Arc<dictionary::Dictionary>,
    /// This process's project sync locks (see [`sync_lock`]).
    local_locks: Arc<sync_lock::LocalLocks>,
    /// Deadline of each statement sent through [`Mirror::client`] (see [`Conn`]).
    statement_timeout: Option<Duration>,
    /// Whether the server answers (shared by the clones).
    health: Arc<conn::Health>,
}

impl std::fmt::Debug for Mirror {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let status = self.pool.status();
        f.debug_struct("Mirror")
            .field("pool_size", &status.size)
            .field("max_size", &status.max_size)
            .finish()
    }
}

impl Mirror {
    /// Connects to `target`, starting the embedded cluster (and creating its database) when
    /// needed, then migrates or checks the schema.
    pub async fn connect(target: &DatabaseTarget, options: &ConnectOptions) -> Result<Self> {
        match target {
            DatabaseTarget::Url(url) => Self::connect_url(url, options).await,
            DatabaseTarget::Embedded(cluster_options) => {
                let cluster_options = cluster_options.clone();
                let cluster = tokio::task::spawn_blocking(move || {
                    let cluster = EmbeddedCluster::open(&cluster_options)?;
                    cluster.ensure_running()?;
                    Ok::<_, MirrorError>(cluster)
                })
                .await
                .map_err(|e| MirrorError::Pool(format!("cluster start task failed: {e}")))??;
                Self::connect_embedded(&cluster, embedded::DATABASE, options).await
            }
        }
    }

    /// Connects to database `dbname` of a running embedded cluster, creating the database if it
    /// does not exist yet (and pointing its `search_path` at the mirror schema for `psql`).
    pub async fn connect_embedded(
        cluster: &EmbeddedCluster,
        dbname: &str,
        options: &ConnectOptions,
    ) -> Result<Self> {
        ensure_database(cluster, dbname).await?;
        Self::connect_config(cluster.connection_config(dbname), options).await
    }

    /// Connects with an explicit `tokio_postgres` configuration.
    pub async fn connect_config(
        config: tokio_postgres::Config,
        options: &ConnectOptions,
    ) -> Result<Self> {
        let manager = Manager::from_config(config, NoTls, manager_config());
        Self::from_manager(manager, options).await
    }

    /// Connects to an external server, with TLS as the URL's `sslmode` asks
    /// ([`tls::TlsPolicy`]).
    pub async fn connect_url(url: &DatabaseUrl, options: &ConnectOptions) -> Result<Self> {
        let mut config = url.config()?;
        if let Some(limit) = options.statement_timeout {
            // A dead network is noticed by the kernel too, not only by our deadlines: idle
            // pooled connections are probed, and unacknowledged data fails the socket.
            config
                .connect_timeout(limit)
                .tcp_user_timeout(limit)
                .keepalives(true)
                .keepalives_idle(Duration::from_secs(15))
                .keepalives_interval(Duration::from_secs(5))
                .keepalives_retries(3);
        }
        let manager = match tls::connector(url.tls_policy())? {
            Some(tls) => Manager::from_config(config, tls, manager_config()),
            None => Manager::from_config(config, NoTls, manager_config()),
        };
        Self::from_manager(manager, options).await
    }

    async fn from_manager(manager: Manager, options: &ConnectOptions) -> Result<Self> {
        let pool = Pool::builder(manager)
            .max_size(options.max_connections.max(2))
            .wait_timeout(Some(options.wait_timeout))
            // Connecting (socket, startup, authentication) to a server that does not answer
            // must fail like a statement does.
            .create_timeout(options.statement_timeout)
            .recycle_timeout(options.statement_timeout)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|e| MirrorError::Pool(e.to_string()))?;
        let mirror = Mirror {
            pool,
            ingest_permits: Arc::new(Semaphore::new((options.max_connections / 2).max(1))),
            dictionary: Arc::default(),
            local_locks: Arc::default(),
            statement_timeout: options.statement_timeout,
            health: Arc::default(),
        };
        let mut client = mirror.client().await?;
        match options.schema {
            SchemaPolicy::Migrate => {
                schema::migrate(&mut client).await?;
                drop(client);
                upgrade::convert_v1(&mirror).await?;
            }
            SchemaPolicy::RequireCurrent => {
                schema::check(&client).await?;
                if upgrade::pending(&client).await? {
                    return Err(MirrorError::UpgradeUnfinished);
                }
            }
        }
        Ok(mirror)
    }

    /// The connection pool, for SQL the API does not cover.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// This mirror over the same pool, with statements limited to `timeout` (`None`: no
    /// limit). The mount reads through a limited clone and syncs through an unlimited one.
    pub fn with_statement_timeout(&self, timeout: Option<Duration>) -> Mirror {
        Mirror {
            statement_timeout: timeout,
            ..self.clone()
        }
    }

    /// The deadline of this mirror's statements.
    pub fn statement_timeout(&self) -> Option<Duration> {
        self.statement_timeout
    }

    /// Takes a connection from the pool. Under a statement timeout, fails at once while the
    /// database is stalled ([`conn::Health`]), and a connection that cannot be made in time
    /// stalls it.
    pub(crate) async fn client(&self) -> Result<Conn> {
        let object = match self.statement_timeout {
            Some(limit) if self.health.is_stalled() && !self.health.next_probe().await => {
                return Err(MirrorError::Timeout {
                    context: "waiting for the database to answer again",
                    after: limit,
                });
            }
            Some(limit) => match self.pool.get().await {
                Err(deadpool_postgres::PoolError::Timeout(
                    deadpool_postgres::TimeoutType::Create
                    | deadpool_postgres::TimeoutType::Recycle,
                )) => {
                    self.health.stalled(&self.pool, limit);
                    return Err(MirrorError::Timeout {
                        context: "connecting",
                        after: limit,
                    });
                }
                other => other?,
            },
            None => self.pool.get().await?,
        };
        Ok(Conn::new(
            object,
            self.statement_timeout,
            Arc::clone(&self.health),
            self.pool.clone(),
        ))
    }
}

/// What [`probe`] learned about a server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerProbe {
    /// `SHOW server_version`.
    pub server_version: String,
    /// Mirror schema version in the database (0: none).
    pub schema_version: i32,
}

/// Connects once to `url` and reports the server and schema versions, changing nothing.
pub async fn probe(url: &DatabaseUrl) -> Result<ServerProbe> {
    let config = url.config()?;
    let (client, task) = match tls::connector(url.tls_policy())? {
        Some(tls) => {
            let (client, connection) =
                config.connect(tls).await.db("connecting to the database")?;
            (
                client,
                tokio::spawn(async move { connection.await.map(drop) }),
            )
        }
        None => {
            let (client, connection) = config
                .connect(NoTls)
                .await
                .db("connecting to the database")?;
            (
                client,
                tokio::spawn(async move { connection.await.map(drop) }),
            )
        }
    };
    let probe = versions(&client).await;
    drop(client);
    let _ = task.await;
    probe
}

/// Like [`probe`], for the embedded cluster (which must be running): its database may not
/// exist yet (schema version 0 then).
pub async fn probe_embedded(cluster: &EmbeddedCluster) -> Result<ServerProbe> {
    let (client, connection) = cluster
        .connection_config("postgres")
        .connect(NoTls)
        .await
        .db("connecting to the embedded cluster")?;
    let task = tokio::spawn(async move { connection.await.map(drop) });
    let exists: bool = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)",
            &[&embedded::DATABASE],
        )
        .await
        .db("looking for the mirror database")?
        .get(0);
    if exists {
        drop(client);
        let _ = task.await;
        let (client, connection) = cluster
            .connection_config(embedded::DATABASE)
            .connect(NoTls)
            .await
            .db("connecting to the mirror database")?;
        let task = tokio::spawn(async move { connection.await.map(drop) });
        let probe = versions(&client).await;
        drop(client);
        let _ = task.await;
        probe
    } else {
        let server_version: String = client
            .query_one("SHOW server_version", &[])
            .await
            .db("reading the server version")?
            .get(0);
        drop(client);
        let _ = task.await;
        Ok(ServerProbe {
            server_version,
            schema_version: 0,
        })
    }
}

/// The server's and the mirror schema's versions.
async fn versions(client: &tokio_postgres::Client) -> Result<ServerProbe> {
    let server_version: String = client
        .query_one("SHOW server_version", &[])
        .await
        .db("reading the server version")?
        .get(0);
    let schema_version = schema::current_version(client).await?;
    Ok(ServerProbe {
        server_version,
        schema_version,
    })
}

fn manager_config() -> ManagerConfig {
    ManagerConfig {
        recycling_method: RecyclingMethod::Fast,
    }
}

/// Advisory-lock key serialising database creation in the embedded cluster.
const CREATE_DATABASE_LOCK_KEY: i64 = 0x0077_616e_6462_6664;

/// Creates `dbname` in the embedded cluster unless it exists (tolerating a concurrent creator).
async fn ensure_database(cluster: &EmbeddedCluster, dbname: &str) -> Result<()> {
    let (client, connection) = cluster
        .connection_config("postgres")
        .connect(NoTls)
        .await
        .db("connecting to the embedded cluster")?;
    let conn_task = tokio::spawn(connection);
    // Concurrent processes serialise here (a session advisory lock in the `postgres`
    // database), so none connects between another's CREATE and its search_path setting.
    client
        .execute("SELECT pg_advisory_lock($1)", &[&CREATE_DATABASE_LOCK_KEY])
        .await
        .db("locking database creation")?;
    let exists = client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&dbname])
        .await
        .db("looking up the mirror database")?
        .is_some();
    if !exists {
        let ident = dbname.replace('"', "\"\"");
        match client
            .batch_execute(&format!("CREATE DATABASE \"{ident}\""))
            .await
        {
            Ok(()) => {
                client
                    .batch_execute(&format!(
                        "ALTER DATABASE \"{ident}\" SET search_path = wandb, public"
                    ))
                    .await
                    .db("setting the search_path of the mirror database")?;
            }
            // Another process created it between our check and our CREATE.
            Err(e)
                if e.code() == Some(&tokio_postgres::error::SqlState::DUPLICATE_DATABASE)
                    || e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) => {}
            Err(e) => {
                return Err(MirrorError::Db {
                    context: "creating the mirror database",
                    source: e,
                });
            }
        }
    }
    drop(client);
    let _ = conn_task.await;
    Ok(())
}
