//! `wandbfs db status|start|stop`: the mirror database, and the embedded PostgreSQL cluster
//! used when no `--database-url` is given.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use wandbfs::mirror::embedded::{ClusterState, ClusterStatus, StartOutcome};
use wandbfs::mirror::{
    ClusterOptions, ConnectOptions, DatabaseTarget, EmbeddedCluster, Mirror, schema,
};

/// Where the mirror database is: an existing server (`--database-url`) or the embedded cluster.
#[derive(Clone, Debug, Args)]
pub struct DatabaseArgs {
    /// PostgreSQL URL of an existing server (`postgresql://user:pass@host:5432/db`; the
    /// `postgresql+psycopg://` forms from Python are accepted). Without it, wandbfs runs its own
    /// private cluster.
    #[arg(
        long,
        env = "WANDBFS_DATABASE_URL",
        hide_env_values = true,
        global = true
    )]
    pub database_url: Option<String>,

    /// Directory of the embedded cluster [default: $XDG_DATA_HOME/wandbfs/pg].
    #[arg(long, env = "WANDBFS_PG_DIR", global = true)]
    pub pg_dir: Option<PathBuf>,

    /// Directory holding the PostgreSQL server programs (initdb, pg_ctl, postgres)
    /// [default: found via pg_config, /usr/lib/postgresql/*/bin, PATH].
    #[arg(long, env = "WANDBFS_PG_BIN", global = true)]
    pub pg_bin: Option<PathBuf>,

    /// Account that runs the embedded server when wandbfs runs as root [default: postgres].
    #[arg(long, env = "WANDBFS_PG_USER", global = true)]
    pub pg_user: Option<String>,
}

impl DatabaseArgs {
    /// The embedded-cluster options these flags describe.
    pub fn cluster_options(&self) -> ClusterOptions {
        ClusterOptions {
            dir: self.pg_dir.clone(),
            bin_dir: self.pg_bin.clone(),
            server_user: self.pg_user.clone(),
            ..ClusterOptions::default()
        }
    }

    /// The database target, printing what was normalised in the URL.
    pub fn target(&self) -> anyhow::Result<DatabaseTarget> {
        let (target, notes) =
            DatabaseTarget::resolve(self.database_url.as_deref(), self.cluster_options())?;
        for note in notes {
            eprintln!("wandbfs: database URL: {note}");
        }
        if let DatabaseTarget::Url(url) = &target
            && url.has_password()
            && database_url_in_argv(std::env::args_os())
        {
            eprintln!(
                "wandbfs: warning: the password in --database-url is visible to every user of \
                 this machine (ps, /proc); set WANDBFS_DATABASE_URL instead, or leave the \
                 password out and put it in PGPASSWORD or ~/.pgpass (0600)"
            );
        }
        Ok(target)
    }
}

/// True when the command line itself holds `--database-url` (clap took the value from argv
/// rather than from `WANDBFS_DATABASE_URL`).
fn database_url_in_argv(args: impl Iterator<Item = std::ffi::OsString>) -> bool {
    args.take_while(|a| a != "--").any(|a| {
        a.to_str()
            .is_some_and(|a| a == "--database-url" || a.starts_with("--database-url="))
    })
}

/// `wandbfs db …`
#[derive(Debug, Args)]
pub struct DbArgs {
    #[command(subcommand)]
    command: DbCommand,

    #[command(flatten)]
    database: DatabaseArgs,
}

#[derive(Debug, Subcommand)]
enum DbCommand {
    /// Show where the mirror database is and whether it runs (exit status 3 when the embedded
    /// server is not running).
    Status {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Create (if needed) and start the embedded cluster, and bring the mirror schema up to
    /// date.
    Start,
    /// Stop the embedded cluster's server.
    Stop,
}

/// Runs a `db` subcommand; returns the process exit code.
pub fn run(args: DbArgs) -> anyhow::Result<i32> {
    let target = args.database.target()?;
    match (&args.command, &target) {
        (DbCommand::Status { json }, DatabaseTarget::Url(_)) => external_status(&target, *json),
        (_, DatabaseTarget::Url(url)) => bail!(
            "the mirror is on an external server ({url}); `wandbfs db start/stop` only manage \
             the embedded cluster"
        ),
        (DbCommand::Status { json }, DatabaseTarget::Embedded(options)) => {
            let cluster = EmbeddedCluster::open(options)?;
            let status = cluster.status()?;
            print_status(&cluster, &status, *json);
            Ok(match status.state {
                ClusterState::Running { .. } => 0,
                _ => 3,
            })
        }
        (DbCommand::Start, DatabaseTarget::Embedded(options)) => {
            let started = Instant::now();
            let cluster = EmbeddedCluster::open(options)?;
            let outcome = cluster.ensure_running()?;
            // Create the database and migrate the schema, so the mirror is ready for SQL.
            runtime()?
                .block_on(async { Mirror::connect(&target, &ConnectOptions::default()).await })?;
            let what = match outcome {
                StartOutcome::AlreadyRunning => "already running",
                StartOutcome::Started { initialized: true } => "created and started",
                StartOutcome::Started { initialized: false } => "started",
            };
            println!(
                "embedded PostgreSQL {what} in {:.2}s: {}",
                started.elapsed().as_secs_f64(),
                cluster.dir().display()
            );
            println!(
                "connect with: psql \"{}\"",
                cluster.connection_string(wandbfs::mirror::embedded::DATABASE)
            );
            Ok(0)
        }
        (DbCommand::Stop, DatabaseTarget::Embedded(options)) => {
            let cluster = EmbeddedCluster::open(options)?;
            if cluster.stop()? {
                println!("embedded PostgreSQL stopped: {}", cluster.dir().display());
            } else {
                println!(
                    "embedded PostgreSQL was not running: {}",
                    cluster.dir().display()
                );
            }
            Ok(0)
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

fn print_status(cluster: &EmbeddedCluster, status: &ClusterStatus, json: bool) {
    let (state, pid) = match status.state {
        ClusterState::NotInitialized => ("not initialized", None),
        ClusterState::Stopped => ("stopped", None),
        ClusterState::Running { pid } => ("running", Some(pid)),
        ClusterState::NotResponding { pid } => ("not responding", Some(pid)),
    };
    let connect = cluster.connection_string(wandbfs::mirror::embedded::DATABASE);
    if json {
        let value = serde_json::json!({
            "kind": "embedded",
            "state": state,
            "pid": pid,
            "dir": status.dir,
            "relocated_from": status.relocated_from,
            "socket_dir": status.socket_dir,
            "log_file": status.log_file,
            "bin_dir": status.bin_dir,
            "server_user": status.server_user,
            "data_version": status.data_version,
            "connection_string": connect,
        });
        println!("{value:#}");
        return;
    }
    println!("embedded PostgreSQL cluster: {}", status.dir.display());
    if let Some(from) = &status.relocated_from {
        println!(
            "  (the default {} is not reachable by the server account `{}`)",
            from.display(),
            status.server_user
        );
    }
    match pid {
        Some(pid) => println!("  state:   {state} (pid {pid})"),
        None => println!("  state:   {state}"),
    }
    if let Some(version) = &status.data_version {
        println!("  version: PostgreSQL {version}");
    }
    println!("  socket:  {}", status.socket_dir.display());
    println!("  log:     {}", status.log_file.display());
    println!(
        "  server:  {} (as `{}`)",
        status.bin_dir.display(),
        status.server_user
    );
    println!("  connect: psql \"{connect}\"");
}

fn external_status(target: &DatabaseTarget, json: bool) -> anyhow::Result<i32> {
    let DatabaseTarget::Url(url) = target else {
        bail!("not an external database");
    };
    let probe = runtime()?.block_on(wandbfs::mirror::probe(url))?;
    let (server_version, schema_version) = (probe.server_version, probe.schema_version);
    if json {
        let value = serde_json::json!({
            "kind": "external",
            "url": url.redacted(),
            "state": "reachable",
            "server_version": server_version,
            "schema_version": schema_version,
            "supported_schema_version": schema::SCHEMA_VERSION,
        });
        println!("{value:#}");
    } else {
        println!("external PostgreSQL: {url}");
        println!("  server:  PostgreSQL {server_version}");
        println!(
            "  schema:  version {schema_version} (this wandbfs: {})",
            schema::SCHEMA_VERSION
        );
    }
    Ok(0)
}
