//! `wandbfs mount MOUNTPOINT [SCOPE]`: the W&B tree as a filesystem, served from the mirror
//! with the live API behind it; `wandbfs unmount`.
//!
//! The daemon: connects the mirror (the embedded cluster by default) and the API client,
//! builds the [`WandbFs`], mounts it with `fuser` (several worker threads; every request is
//! answered from a task on the async runtime), starts the [`Invalidator`] thread and — with
//! `--sync` — the background sync, then waits for SIGINT/SIGTERM or an external unmount.
//! Shutdown unmounts (lazily when the mount point is busy, saying so) and exits.

pub mod args;
mod daemon;
pub mod unmount;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use object_store::path::Path;
use wandbfs::client::{self, BaseUrl, Client, ClientConfig, Environment, Overrides, settings};
use wandbfs::mirror::{ConnectOptions, Mirror};
use wandbfs::store::source::ProjectRef;
use wandbfs::store::tables::TableCache;
use wandbfs::store::{
    Layered, LiveOptions, LiveSource, MetadataSource, MirrorSource, MirrorSourceOptions, WandbStore,
};
use wandbfs::sync::{SyncEngine, SyncOptions, SyncTarget};

use crate::cli::{UserError, Verbosity};
use crate::fs::cache::ContentCache;
use crate::fs::refresh::{ChangeSink, Invalidator, Notices};
use crate::fs::{Backend, Catalog, CatalogConfig, FsConfig, WandbFs};
use crate::fuse::FuseFs;
pub use args::MountArgs;
use daemon::{Forked, Readiness};

/// How long a first access waits for the project's sync lock when another sync of the
/// project (the background one, another `wandbfs sync`) holds it: a sync round of a large
/// project takes a while, and the alternative is an error.
const FIRST_ACCESS_LOCK_WAIT: Duration = Duration::from_secs(120);

/// FUSE worker threads: requests are handed to the runtime at once, so few are needed; two
/// keep the kernel queue moving while one thread replies.
const FUSE_THREADS: usize = 2;

/// Runs `wandbfs mount`; returns the exit status.
pub fn run(args: MountArgs, verbosity: &Verbosity) -> anyhow::Result<i32> {
    let mountpoint = unmount::absolute(&args.mountpoint).map_err(|e| {
        UserError::with_hint(
            format!("mount point {}: {e}", args.mountpoint.display()),
            format!("create it first: mkdir -p {}", args.mountpoint.display()),
        )
    })?;
    check_mountpoint(&mountpoint)?;
    let scope = parse_scope(args.scope.as_deref())?;
    if let Some(projects) = &args.sync {
        for p in projects {
            parse_project(p)?;
        }
    }
    let cache_dir = args
        .cache_dir
        .clone()
        .unwrap_or_else(args::default_cache_dir);
    let mut readiness = if args.foreground {
        Readiness::foreground()
    } else {
        let log_file = args
            .log_file
            .clone()
            .unwrap_or_else(|| cache_dir.join("mount.log"));
        match daemon::daemonize(&log_file)? {
            Forked::Parent(Ok(pid)) => {
                if !verbosity.quiet {
                    println!(
                        "mounted {} (pid {pid}; log: {}; unmount: wandbfs unmount {})",
                        mountpoint.display(),
                        log_file.display(),
                        mountpoint.display()
                    );
                }
                return Ok(0);
            }
            Forked::Parent(Err(code)) => return Ok(code),
            Forked::Child(readiness) => readiness,
        }
    };
    verbosity.init_logging_at(if verbosity.verbose == 0 && !args.foreground {
        // A daemon's log says what it does.
        1
    } else {
        verbosity.verbose
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("wandbfs-rt")
        .build()
        .context("starting the async runtime")?;
    let background = background_runtime()?;
    let result = runtime.block_on(serve(
        &args,
        mountpoint,
        scope,
        cache_dir,
        background.handle().clone(),
        &mut readiness,
    ));
    if let Err(e) = &result {
        readiness.failed(e);
    }
    // Tasks still running (a read of a dead mount) must not keep the process alive.
    background.shutdown_timeout(Duration::from_secs(1));
    runtime.shutdown_timeout(Duration::from_secs(1));
    result
}

/// Threads of the background runtime: as many as there are cores (renders and syncs are
/// CPU-bound), at most [`tables::DEFAULT_RENDERS`](wandbfs::store::tables::DEFAULT_RENDERS)
/// rendering at once.
const BACKGROUND_THREADS: usize = 2;

/// Scheduling niceness of the background threads: the kernel gives the threads that answer
/// FUSE requests the CPU first when both want it, so a `stat` is not queued behind a table
/// being encoded (10 = a tenth of the weight of a normal thread).
const BACKGROUND_NICE: i32 = 10;

/// The runtime for CPU-heavy work — rendering tables (JSON parsing, parquet encoding, file
/// writes), syncs (JSON decoding, COPY encoding) — separate from the one that answers the
/// kernel, so that a render in progress never holds up a `stat` or `readdir` of another path.
fn background_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(BACKGROUND_THREADS)
        .enable_all()
        .thread_name("wandbfs-bg")
        .on_thread_start(|| {
            // SAFETY-free: plain syscalls on the calling thread. Best effort: an unprivileged
            // user may lower priority, never raise it, so this cannot fail for lack of rights.
            let tid = unsafe { libc::syscall(libc::SYS_gettid) };
            let _ = unsafe {
                libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, BACKGROUND_NICE)
            };
        })
        .build()
        .context("starting the background runtime")
}

fn check_mountpoint(path: &std::path::Path) -> anyhow::Result<()> {
    if unmount::is_fuse_mount(path) {
        return Err(UserError::with_hint(
            format!("{} is already a mount point", path.display()),
            format!("unmount it first: wandbfs unmount {}", path.display()),
        )
        .into());
    }
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(UserError::with_hint(
            format!("{} is not a directory", path.display()),
            "mount on an empty directory",
        )
        .into()),
        Err(e) => Err(UserError::with_hint(
            format!("mount point {}: {e}", path.display()),
            format!("create it first: mkdir -p {}", path.display()),
        )
        .into()),
    }
}

/// The scope as a tree path (`entity[/project[/run]]`).
fn parse_scope(scope: Option<&str>) -> anyhow::Result<Path> {
    let Some(scope) = scope.map(|s| s.trim_matches('/')).filter(|s| !s.is_empty()) else {
        return Ok(Path::ROOT);
    };
    let segments: Vec<&str> = scope.split('/').collect();
    if segments.len() > 3 || segments.iter().any(|s| s.is_empty()) {
        return Err(UserError::with_hint(
            format!("invalid scope {scope:?}"),
            "give ENTITY, ENTITY/PROJECT or ENTITY/PROJECT/RUN_ID",
        )
        .into());
    }
    Path::parse(scope).map_err(|e| {
        UserError::with_hint(
            format!("invalid scope {scope:?}: {e}"),
            "give ENTITY/PROJECT",
        )
        .into()
    })
}

fn parse_project(text: &str) -> anyhow::Result<ProjectRef> {
    match text.split_once('/') {
        Some((e, p)) if !e.is_empty() && !p.is_empty() && !p.contains('/') => {
            Ok(ProjectRef::new(e, p))
        }
        _ => Err(UserError::with_hint(
            format!("--sync takes ENTITY/PROJECT names, got {text:?}"),
            "put --sync after the mount point: wandbfs mount ~/wandb --sync team/proj",
        )
        .into()),
    }
}

/// The client: from the SDK's settings; offline without credentials, one that is never used.
fn client(args: &MountArgs) -> anyhow::Result<Client> {
    let settings = match settings::resolve(&Overrides::default(), &Environment::from_process()) {
        Ok(s) => s,
        Err(client::Error::MissingCredentials { .. }) if args.offline => offline_settings()?,
        Err(e) => return Err(e.into()),
    };
    let mut config = ClientConfig::default().apply_settings(&settings);
    match args.max_rps {
        Some(rate) => config.rate.requests_per_second = rate,
        None if settings.base_url.is_loopback() => config.rate.requests_per_second = 0.0,
        None => {}
    }
    Ok(Client::new(settings, config)?)
}

/// Settings for reading the mirror alone: a key that is never sent.
pub(crate) fn offline_settings() -> anyhow::Result<settings::Settings> {
    let base =
        std::env::var("WANDB_BASE_URL").unwrap_or_else(|_| client::DEFAULT_BASE_URL.to_owned());
    Ok(settings::Settings {
        base_url: BaseUrl::parse(&base)?,
        credential: settings::Credential::ApiKey("offline: never sent".to_owned().into()),
        credential_source: settings::CredentialSource::Explicit,
        entity: None,
        project: None,
        extra_headers: Vec::new(),
        graphql_timeout: None,
        graphql_retry_max: None,
        graphql_retry_wait_min: None,
        graphql_retry_wait_max: None,
        insecure_disable_ssl: false,
        settings_files: Vec::new(),
    })
}

async fn serve(
    args: &MountArgs,
    mountpoint: std::path::PathBuf,
    scope: Path,
    cache_dir: std::path::PathBuf,
    heavy: tokio::runtime::Handle,
    readiness: &mut Readiness,
) -> anyhow::Result<i32> {
    let metadata_ttl = args::seconds(args.metadata_ttl);
    let client = client(args)?;
    let target = args.database.target()?;
    // A database that stops answering fails requests within the timeout, never hangs them:
    // half of it for a free connection, half for the statement or a new connection.
    let db_timeout = args::seconds(args.database_timeout).max(Duration::from_millis(100));
    let mirror = Mirror::connect(
        &target,
        &ConnectOptions {
            // Listings and reads of many files at once, plus a background sync.
            max_connections: 16,
            wait_timeout: db_timeout / 2,
            statement_timeout: Some(db_timeout / 2),
            ..ConnectOptions::default()
        },
    )
    .await
    .context("opening the mirror database")?;
    // Syncs write through the same pool without a statement deadline (a large batch may take
    // a while); only the mount's reads are limited.
    let sync_mirror = mirror.with_statement_timeout(None);
    let tables = TableCache::with_executor(
        cache_dir.join("tables"),
        heavy.clone(),
        wandbfs::store::tables::DEFAULT_RENDERS,
    );
    let mirror_source = MirrorSource::with_options(
        mirror.clone(),
        MirrorSourceOptions {
            authoritative: args.offline,
            // Running runs older than the TTL are refreshed on access (a one-run sync) —
            // unless the background sync keeps them fresh.
            live_run_max_age: (!args.offline && args.sync.is_none()).then_some(metadata_ttl),
        },
    )
    // Rendered tables (history.parquet, runs.parquet) next to the content cache, rendered on
    // the background runtime.
    .with_tables(tables.clone());
    let (source, live): (Arc<dyn MetadataSource>, Option<Arc<dyn MetadataSource>>) = if args.offline
    {
        (Arc::new(mirror_source.clone()), None)
    } else {
        let live: Arc<dyn MetadataSource> = Arc::new(LiveSource::new(
            client.clone(),
            LiveOptions {
                cache_ttl: metadata_ttl,
                ..LiveOptions::default()
            },
        ));
        let layered = Layered::new(Arc::new(mirror_source.clone()), Arc::clone(&live));
        (Arc::new(layered), Some(live))
    };
    let store = WandbStore::builder(client.clone())
        .with_source(Arc::clone(&source))
        .with_writes(args.allow_write)
        .build();
    let (sink, mut changes) = ChangeSink::new();
    let sink = Arc::new(sink);
    let engine = (!args.offline).then(|| {
        SyncEngine::new(
            client.clone(),
            sync_mirror.clone(),
            SyncOptions {
                lock_wait: FIRST_ACCESS_LOCK_WAIT,
                ..SyncOptions::default()
            },
        )
        .with_progress(sink.clone())
    });
    let catalog = Arc::new(Catalog::new(
        Backend {
            store,
            source,
            mirror_source,
            live,
            mirror: mirror.clone(),
            engine,
            background: Some(heavy.clone()),
        },
        CatalogConfig {
            metadata_ttl,
            offline: args.offline,
            allow_write: args.allow_write,
            mount_time: SystemTime::now(),
        },
    ));
    let cache = if args.no_cache {
        None
    } else {
        let (dir, size) = (cache_dir.join("content"), args.cache_size);
        Some(
            tokio::task::spawn_blocking(move || ContentCache::open(&dir, size))
                .await?
                .with_context(|| format!("opening the content cache in {}", cache_dir.display()))?,
        )
    };
    let (notices, notice_rx) = Notices::channel();
    let fs = Arc::new(
        WandbFs::new(
            Arc::clone(&catalog),
            cache,
            FsConfig {
                scope: scope.clone(),
                read_budget: args::READ_BUDGET,
                uid: args.uid.unwrap_or_else(|| nix::unistd::getuid().as_raw()),
                gid: args.gid.unwrap_or_else(|| nix::unistd::getgid().as_raw()),
                offline: args.offline,
                rename_copy_max: args.max_rename_copy,
            },
            notices,
        )
        .await
        .map_err(|e| anyhow::anyhow!("{}", e.message))
        .with_context(|| {
            format!(
                "mounting {}",
                if scope.as_ref().is_empty() {
                    "the W&B tree"
                } else {
                    scope.as_ref()
                }
            )
        })?,
    );

    // What `--sync` keeps fresh: settled before mounting, so an error leaves nothing mounted.
    let sync_targets = match &args.sync {
        Some(named) if !args.offline => Some(sync_projects(named, &scope, &catalog).await?),
        _ => None,
    };

    // Mount.
    let mut config = fuser::Config::default();
    config.mount_options = vec![
        fuser::MountOption::FSName("wandbfs".into()),
        fuser::MountOption::Subtype("wandbfs".into()),
        fuser::MountOption::DefaultPermissions,
        fuser::MountOption::NoAtime,
        fuser::MountOption::NoDev,
        fuser::MountOption::NoSuid,
        if args.allow_write {
            fuser::MountOption::RW
        } else {
            fuser::MountOption::RO
        },
    ];
    config.acl = if args.allow_other {
        fuser::SessionACL::All
    } else if args.allow_root || args.auto_unmount {
        fuser::SessionACL::RootAndOwner
    } else {
        fuser::SessionACL::Owner
    };
    if args.auto_unmount {
        config.mount_options.push(fuser::MountOption::AutoUnmount);
    }
    config.n_threads = Some(FUSE_THREADS);
    let mut adapter = FuseFs::new(Arc::clone(&fs), tokio::runtime::Handle::current());
    if args.no_xattr {
        adapter = adapter.without_xattrs();
    }
    if args.no_passthrough {
        adapter = adapter.without_passthrough();
    }
    // Signals are caught from before the mount exists: one arriving between the mount and the
    // wait below (the parent has already returned) is queued, not the default death that
    // would leave a dead mount behind.
    let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mp = mountpoint.clone();
    let session = tokio::task::spawn_blocking(move || fuser::Session::new(adapter, &mp, &config))
        .await?
        .map_err(|e| mount_error(&mountpoint, e))?;
    let invalidator = Invalidator::start(session.notifier(), notice_rx)?;
    let background = session.spawn().context("starting the FUSE session")?;
    let (ended_tx, mut ended) = tokio::sync::oneshot::channel::<std::io::Result<()>>();
    std::thread::Builder::new()
        .name("wandbfs-session".into())
        .spawn(move || {
            let _ = ended_tx.send(background.join());
        })?;
    raise_readahead(&mountpoint);

    // Ready once the mount answers.
    let probe = mountpoint.clone();
    tokio::task::spawn_blocking(move || std::fs::metadata(&probe))
        .await?
        .with_context(|| format!("the new mount at {} does not answer", mountpoint.display()))?;
    tracing::info!(
        "mounted {} at {} ({})",
        if scope.as_ref().is_empty() {
            "W&B"
        } else {
            scope.as_ref()
        },
        mountpoint.display(),
        if args.offline { "offline" } else { "online" }
    );
    readiness.ready();

    // What syncs change, told to the kernel.
    let refresher = {
        let fs = Arc::clone(&fs);
        tokio::spawn(async move {
            while let Some(changed) = changes.recv().await {
                fs.refresh(&changed).await;
            }
        })
    };
    let background_sync = sync_targets.map(|targets| {
        heavy.spawn(background_sync(
            client,
            sync_mirror,
            sink,
            tables,
            targets,
            args::seconds(args.sync_interval),
        ))
    });

    let code = tokio::select! {
        _ = interrupt.recv() => None,
        _ = terminate.recv() => None,
        ended = &mut ended => Some(ended),
    };
    if let Some(task) = background_sync {
        task.abort();
    }
    refresher.abort();
    let code = match code {
        Some(Ok(Ok(()))) => {
            tracing::info!("{} was unmounted", mountpoint.display());
            0
        }
        Some(Ok(Err(e))) => {
            tracing::error!("the FUSE session ended with an error: {e}");
            1
        }
        Some(Err(_)) => 1,
        None => {
            tracing::info!("signal received; unmounting {}", mountpoint.display());
            shut_down(&mountpoint)
        }
    };
    drop(invalidator);
    Ok(code)
}

/// Unmounts on a signal: cleanly when nothing uses the mount, lazily (said in the log) when
/// something does — the process then exits and the processes still inside get errors.
fn shut_down(mountpoint: &std::path::Path) -> i32 {
    match unmount::unmount(mountpoint, false) {
        Ok(_) => 0,
        Err(e) => {
            tracing::warn!("{e:#}; detaching it lazily");
            match unmount::unmount(mountpoint, true) {
                Ok(_) => 0,
                Err(e) => {
                    tracing::error!("unmounting {}: {e:#}", mountpoint.display());
                    1
                }
            }
        }
    }
}

fn mount_error(mountpoint: &std::path::Path, e: std::io::Error) -> anyhow::Error {
    let hint = match e.raw_os_error() {
        Some(libc::ENOENT) if !std::path::Path::new("/dev/fuse").exists() => {
            "/dev/fuse is missing: load the fuse module (modprobe fuse) or run where FUSE is \
             available; `wandbfs ls`/`cat` work without it"
        }
        Some(libc::EACCES) | Some(libc::EPERM) => {
            "mounting needs root or fusermount3 (apt-get install fuse3); --allow-other also \
             needs user_allow_other in /etc/fuse.conf"
        }
        Some(libc::ENOENT) => "--auto-unmount needs fusermount3: apt-get install fuse3",
        _ => "see the log with -v",
    };
    UserError::with_hint(format!("mounting {}: {e}", mountpoint.display()), hint).into()
}

/// Raises the kernel's readahead for the mount to 1 MiB (root only; best effort): FUSE reads
/// of 1 MiB instead of 128 KiB, twice the sequential throughput (measured: fuse/NOTES.md).
fn raise_readahead(mountpoint: &std::path::Path) {
    use std::os::unix::fs::MetadataExt as _;
    let Ok(meta) = std::fs::metadata(mountpoint) else {
        return;
    };
    let dev = meta.dev();
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    let path = format!("/sys/class/bdi/{major}:{minor}/read_ahead_kb");
    match std::fs::write(&path, "1024") {
        Ok(()) => tracing::debug!("readahead 1 MiB ({path})"),
        Err(e) => tracing::debug!("readahead left at the default ({path}: {e})"),
    }
}

/// The projects `--sync` keeps synced: the named ones, else the mounted scope's projects
/// that are in the mirror.
async fn sync_projects(
    named: &[String],
    scope: &Path,
    catalog: &Catalog,
) -> anyhow::Result<Vec<SyncTarget>> {
    if !named.is_empty() {
        return named
            .iter()
            .map(|n| parse_project(n).map(|p| SyncTarget::project(p.entity, p.project)))
            .collect();
    }
    let segments: Vec<String> = scope.parts().map(|p| p.as_ref().to_owned()).collect();
    let mirror = &catalog.backend().mirror;
    let entities = match segments.first() {
        Some(e) => vec![e.clone()],
        None => mirror.list_entities().await?,
    };
    let mut targets = Vec::new();
    for entity in entities {
        let projects = match segments.get(1) {
            Some(p) => vec![p.clone()],
            None => mirror.list_projects(&entity).await?,
        };
        for project in projects {
            targets.push(SyncTarget::project(entity.clone(), project));
        }
    }
    if targets.is_empty() {
        tracing::warn!(
            "--sync: the mirror holds no project in the mounted scope yet; name them \
             (--sync ENTITY/PROJECT)"
        );
    }
    Ok(targets)
}

/// Syncs `targets` every `interval` until aborted. A round that finds a project busy (another
/// sync of it) leaves it to the next round.
async fn background_sync(
    client: Client,
    mirror: Mirror,
    sink: Arc<ChangeSink>,
    tables: TableCache,
    targets: Vec<SyncTarget>,
    interval: Duration,
) {
    let engine = SyncEngine::new(client, mirror, SyncOptions::default())
        .with_progress(sink)
        .with_tables(tables);
    let names: Vec<String> = targets.iter().map(ToString::to_string).collect();
    tracing::info!(
        "keeping {} synced every {:.1}s",
        names.join(", "),
        interval.as_secs_f64()
    );
    loop {
        match engine.sync(&targets).await {
            Ok(report) => {
                for project in &report.projects {
                    match &project.error {
                        // A first access is syncing one of its runs: next round.
                        Some(error) if error.contains("another `wandbfs sync`") => {
                            tracing::debug!("background sync of {}: {error}", project.project)
                        }
                        Some(error) => {
                            tracing::warn!("background sync of {}: {error}", project.project)
                        }
                        None => {}
                    }
                }
                tracing::debug!(
                    runs = report.runs_synced,
                    rows = report.rows,
                    requests = report.api.http,
                    "background sync round"
                );
            }
            Err(e) => tracing::warn!("background sync: {e}"),
        }
        tokio::time::sleep(interval).await;
    }
}
