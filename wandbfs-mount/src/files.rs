//! `wandbfs ls`, `cat`, `stat`, `cp`: the mount's tree without FUSE, through `WandbStore`.
//!
//! For containers, CI runners and laptops where FUSE is not available. Paths are the tree's
//! (`docs/LAYOUT.md`): `entity/project/run_id/history.jsonl`, `entity/project/runs.parquet`,
//! `entity/project/artifacts/<type>/<collection>/v3/<file>`. The bytes are the mount's: both
//! read the same `WandbStore` over the same sources (the mirror first, the W&B API behind it),
//! and the tests compare them.
//!
//! Where data comes from: the mirror (when one is set up: `--database-url`, or an embedded
//! cluster that `wandbfs sync` created) with the W&B API behind it; `--offline` is the mirror
//! alone; without a mirror, the API alone (tables such as `history.parquet` exist only for
//! mirrored runs). Nothing here syncs.

use std::io::Write;
use std::path::{Path as LocalPath, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt};
use wandbfs::client::{Client, ClientConfig, Environment, Overrides, settings};
use wandbfs::mirror::{ConnectOptions, DatabaseTarget, EmbeddedCluster, Mirror};
use wandbfs::store::tables::{TableCache, user_cache_dir};
use wandbfs::store::{
    Layered, LiveSource, MetadataSource, MirrorSource, MirrorSourceOptions, WandbStore,
};

use crate::cli::{UserError, Verbosity};
use crate::db::DatabaseArgs;

/// Where the data comes from, shared by `ls`, `cat`, `stat`, `cp`.
#[derive(Debug, Args)]
pub struct SourceArgs {
    /// The mirror alone: no W&B request (what was synced is what there is).
    #[arg(long, global = true, conflicts_with = "no_mirror")]
    offline: bool,

    /// The W&B API alone, even when a mirror is set up.
    #[arg(long, global = true)]
    no_mirror: bool,

    #[command(flatten)]
    database: DatabaseArgs,
}

/// `wandbfs ls [PATH]`
#[derive(Debug, Args)]
pub struct LsArgs {
    /// `entity`, `entity/project`, a run (`entity/project/run_id`), a folder or a file.
    #[arg(value_name = "PATH")]
    path: String,

    /// Long format: size in bytes, modification time (UTC), name; folders end with `/`.
    #[arg(short, long)]
    long: bool,

    #[command(flatten)]
    source: SourceArgs,
}

/// `wandbfs cat PATH…`
#[derive(Debug, Args)]
pub struct CatArgs {
    /// Files to write to stdout, in order.
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<String>,

    #[command(flatten)]
    source: SourceArgs,
}

/// `wandbfs stat PATH…`
#[derive(Debug, Args)]
pub struct StatArgs {
    /// Files or folders.
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<String>,

    /// One JSON object per path.
    #[arg(long)]
    json: bool,

    #[command(flatten)]
    source: SourceArgs,
}

/// `wandbfs cp [-r] SOURCE DEST`
#[derive(Debug, Args)]
pub struct CpArgs {
    /// A file, or with -r a folder (a run, a project, an artifact version).
    #[arg(value_name = "SOURCE")]
    source_path: String,

    /// A local path: a file name, or an existing directory to copy into.
    #[arg(value_name = "DEST")]
    dest: PathBuf,

    /// Copy folders and everything below them.
    #[arg(short, long)]
    recursive: bool,

    /// Files downloaded at once.
    #[arg(long, default_value_t = 4, value_name = "N")]
    jobs: usize,

    #[command(flatten)]
    source: SourceArgs,
}

/// `wandbfs ls`.
pub fn ls(args: LsArgs, verbosity: &Verbosity) -> anyhow::Result<i32> {
    block_on(async move {
        let store = open_store(&args.source, verbosity).await?;
        let path = tree_path(&args.path)?;
        let listing = store.list_with_delimiter(Some(&path)).await?;
        if listing.common_prefixes.is_empty() && listing.objects.is_empty() {
            // A file, or nothing.
            let meta = head(&store, &path).await?;
            print_entry(&meta, args.long, &args.path);
            return Ok(0);
        }
        let mut out = std::io::stdout().lock();
        for dir in &listing.common_prefixes {
            let name = dir.filename().unwrap_or_default();
            let line = if args.long {
                format!("{:>12}  {:<20}  {name}/", "-", "-")
            } else {
                format!("{name}/")
            };
            if !write_line(&mut out, &line)? {
                return Ok(0);
            }
        }
        for meta in &listing.objects {
            let name = meta.location.filename().unwrap_or_default();
            if !write_line(&mut out, &entry_line(meta, args.long, name))? {
                return Ok(0);
            }
        }
        Ok(0)
    })
}

/// `wandbfs cat`.
pub fn cat(args: CatArgs, verbosity: &Verbosity) -> anyhow::Result<i32> {
    block_on(async move {
        let store = open_store(&args.source, verbosity).await?;
        let mut out = std::io::stdout().lock();
        for text in &args.paths {
            let path = tree_path(text)?;
            let result = store.get(&path).await.map_err(|e| not_found(e, text))?;
            let mut stream = result.into_stream();
            while let Some(chunk) = stream.try_next().await? {
                match out.write_all(&chunk) {
                    Ok(()) => {}
                    // `wandbfs cat … | head`: the reader has what it wanted.
                    Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(0),
                    Err(e) => return Err(e).context("writing to stdout"),
                }
            }
        }
        match out.flush() {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                Err(e).context("writing to stdout")
            }
            _ => Ok(0),
        }
    })
}

/// `wandbfs stat`.
pub fn stat(args: StatArgs, verbosity: &Verbosity) -> anyhow::Result<i32> {
    block_on(async move {
        let store = open_store(&args.source, verbosity).await?;
        for text in &args.paths {
            let path = tree_path(text)?;
            let value = match store.head(&path).await {
                Ok(meta) => serde_json::json!({
                    "path": text,
                    "type": "file",
                    "size": meta.size,
                    "modified": meta.last_modified.to_rfc3339(),
                    "etag": meta.e_tag,
                }),
                Err(object_store::Error::NotFound { .. }) => {
                    let listing = store.list_with_delimiter(Some(&path)).await?;
                    if listing.common_prefixes.is_empty() && listing.objects.is_empty() {
                        return Err(no_such(text).into());
                    }
                    serde_json::json!({
                        "path": text,
                        "type": "directory",
                        "entries": listing.common_prefixes.len() + listing.objects.len(),
                    })
                }
                Err(e) => return Err(e.into()),
            };
            if args.json {
                println!("{value}");
                continue;
            }
            println!("  path: {text}");
            for key in ["type", "size", "entries", "modified", "etag"] {
                match &value[key] {
                    serde_json::Value::Null => {}
                    serde_json::Value::String(s) => println!("  {key}: {s}"),
                    other => println!("  {key}: {other}"),
                }
            }
        }
        Ok(0)
    })
}

/// `wandbfs cp`.
pub fn cp(args: CpArgs, verbosity: &Verbosity) -> anyhow::Result<i32> {
    block_on(async move {
        let store = open_store(&args.source, verbosity).await?;
        let source = tree_path(&args.source_path)?;
        let single = match store.head(&source).await {
            Ok(meta) => Some(meta),
            Err(object_store::Error::NotFound { .. }) => None,
            Err(e) => return Err(e.into()),
        };
        if let Some(meta) = single {
            let dest = if args.dest.is_dir() {
                args.dest.join(source.filename().unwrap_or("file"))
            } else {
                args.dest.clone()
            };
            download(&store, &meta, &dest).await?;
            if !verbosity.quiet {
                eprintln!("copied {} ({} bytes)", dest.display(), meta.size);
            }
            return Ok(0);
        }
        let objects: Vec<ObjectMeta> = store.list(Some(&source)).try_collect().await?;
        if objects.is_empty() {
            return Err(no_such(&args.source_path).into());
        }
        if !args.recursive {
            return Err(UserError::with_hint(
                format!("{} is a folder", args.source_path),
                "copy folders with -r",
            )
            .into());
        }
        // `cp -r run ./dir` makes ./dir/run when ./dir exists, else ./dir is the copy.
        let root = if args.dest.is_dir() {
            args.dest.join(source.filename().unwrap_or("copy"))
        } else {
            args.dest.clone()
        };
        let prefix_len = source.parts().count();
        let bytes: u64 = futures::stream::iter(objects.iter().map(|meta| {
            let relative: PathBuf = meta
                .location
                .parts()
                .skip(prefix_len)
                .map(|p| p.as_ref().to_owned())
                .collect();
            let dest = root.join(relative);
            let store = &store;
            async move {
                download(store, meta, &dest).await?;
                anyhow::Ok(meta.size)
            }
        }))
        .buffer_unordered(args.jobs.max(1))
        .try_fold(0, |sum, size| async move { Ok(sum + size) })
        .await?;
        if !verbosity.quiet {
            eprintln!(
                "copied {} files ({bytes} bytes) into {}",
                objects.len(),
                root.display()
            );
        }
        Ok(0)
    })
}

/// Streams one object to `dest` through a temporary file next to it: a failed copy leaves
/// no partial file behind, and the size is checked.
async fn download(store: &WandbStore, meta: &ObjectMeta, dest: &LocalPath) -> anyhow::Result<()> {
    use tokio::io::AsyncWriteExt;
    let parent = dest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(LocalPath::new("."));
    tokio::fs::create_dir_all(parent)
        .await
        .with_context(|| format!("creating {}", parent.display()))?;
    let temp = tempfile::Builder::new()
        .prefix(".wandbfs-cp-")
        .tempfile_in(parent)
        .with_context(|| format!("creating a file in {}", parent.display()))?;
    let (file, temp_path) = temp.into_parts();
    let mut file = tokio::fs::File::from_std(file);
    let mut stream = store.get(&meta.location).await?.into_stream();
    let mut written = 0u64;
    while let Some(chunk) = stream.try_next().await? {
        file.write_all(&chunk)
            .await
            .with_context(|| format!("writing {}", dest.display()))?;
        written += chunk.len() as u64;
    }
    file.flush().await?;
    anyhow::ensure!(
        written == meta.size,
        "{}: got {written} bytes of {}",
        meta.location,
        meta.size
    );
    temp_path
        .persist(dest)
        .with_context(|| format!("writing {}", dest.display()))?;
    Ok(())
}

/// The store the commands read: the mirror with the API behind it, the mirror alone
/// (`--offline`), or the API alone (`--no-mirror`, or no mirror set up).
async fn open_store(args: &SourceArgs, verbosity: &Verbosity) -> anyhow::Result<WandbStore> {
    let client = client(args.offline)?;
    let mirror = if args.no_mirror {
        None
    } else {
        open_mirror(&args.database, args.offline, verbosity).await?
    };
    let source: Arc<dyn MetadataSource> = match mirror {
        Some(mirror) => {
            let mirror_source = Arc::new(
                MirrorSource::with_options(
                    mirror,
                    MirrorSourceOptions {
                        authoritative: args.offline,
                        live_run_max_age: None,
                    },
                )
                // The mount's table cache: a table rendered by either is reused by the other.
                .with_tables(TableCache::new(user_cache_dir().join("tables"))),
            );
            if args.offline {
                mirror_source
            } else {
                Arc::new(Layered::new(
                    mirror_source,
                    Arc::new(LiveSource::new(client.clone(), Default::default())),
                ))
            }
        }
        None => Arc::new(LiveSource::new(client.clone(), Default::default())),
    };
    Ok(WandbStore::builder(client).with_source(source).build())
}

/// The mirror, when one is set up. An embedded cluster is used only when `wandbfs sync` has
/// created it (it is started if stopped): listing files must not create a database.
async fn open_mirror(
    database: &DatabaseArgs,
    offline: bool,
    verbosity: &Verbosity,
) -> anyhow::Result<Option<Mirror>> {
    let target = database.target()?;
    if let DatabaseTarget::Embedded(options) = &target {
        let exists = EmbeddedCluster::open(options)
            .and_then(|c| c.status())
            .is_ok_and(|s| {
                !matches!(
                    s.state,
                    wandbfs::mirror::embedded::ClusterState::NotInitialized
                )
            });
        if !exists {
            if offline {
                return Err(UserError::with_hint(
                    "--offline reads the mirror, and there is none",
                    "sync first (wandbfs sync ENTITY/PROJECT), or give --database-url",
                )
                .into());
            }
            if verbosity.verbose > 0 {
                eprintln!("wandbfs: no mirror set up; reading from W&B");
            }
            return Ok(None);
        }
    }
    let mirror = Mirror::connect(&target, &ConnectOptions::default())
        .await
        .context("opening the mirror database")?;
    Ok(Some(mirror))
}

fn client(offline: bool) -> anyhow::Result<Client> {
    let settings = match settings::resolve(&Overrides::default(), &Environment::from_process()) {
        Ok(s) => s,
        Err(wandbfs::client::Error::MissingCredentials { .. }) if offline => {
            crate::mount::offline_settings()?
        }
        Err(e) => return Err(e.into()),
    };
    let mut config = ClientConfig::default().apply_settings(&settings);
    if settings.base_url.is_loopback() {
        config.rate.requests_per_second = 0.0;
    }
    Ok(Client::new(settings, config)?)
}

fn tree_path(text: &str) -> anyhow::Result<Path> {
    let trimmed = text.trim_matches('/');
    if trimmed.is_empty() {
        return Err(UserError::with_hint(
            "give a path in the tree",
            "ENTITY, ENTITY/PROJECT, ENTITY/PROJECT/RUN_ID[/FILE] (docs/LAYOUT.md)",
        )
        .into());
    }
    Path::parse(trimmed)
        .map_err(|e| UserError::with_hint(format!("{text:?}: {e}"), "see docs/LAYOUT.md").into())
}

async fn head(store: &WandbStore, path: &Path) -> anyhow::Result<ObjectMeta> {
    store
        .head(path)
        .await
        .map_err(|e| not_found(e, path.as_ref()))
}

fn not_found(error: object_store::Error, text: &str) -> anyhow::Error {
    match error {
        object_store::Error::NotFound { .. } => no_such(text).into(),
        e => e.into(),
    }
}

fn no_such(text: &str) -> UserError {
    let parent = text
        .trim_matches('/')
        .rsplit_once('/')
        .map_or("", |(p, _)| p);
    UserError::with_hint(
        format!("{text}: no such file or folder"),
        if parent.is_empty() {
            "give ENTITY/PROJECT/…: `wandbfs ls ENTITY` lists an entity's projects".to_owned()
        } else {
            format!("`wandbfs ls {parent}` shows what is there")
        },
    )
}

fn entry_line(meta: &ObjectMeta, long: bool, name: &str) -> String {
    if long {
        format!(
            "{:>12}  {:<20}  {name}",
            meta.size,
            meta.last_modified.format("%Y-%m-%dT%H:%M:%SZ")
        )
    } else {
        name.to_owned()
    }
}

fn print_entry(meta: &ObjectMeta, long: bool, shown: &str) {
    println!("{}", entry_line(meta, long, shown));
}

/// Writes a line; false when the reader went away (`| head`).
fn write_line(out: &mut impl Write, line: &str) -> anyhow::Result<bool> {
    match writeln!(out, "{line}") {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(e).context("writing to stdout"),
    }
}

fn block_on<F: std::future::Future<Output = anyhow::Result<i32>>>(
    future: F,
) -> anyhow::Result<i32> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(future)
}
