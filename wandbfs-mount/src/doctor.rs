//! `wandbfs doctor`: is this machine ready for wandbfs, and if not, what exactly to do.
//!
//! Each check prints one line — `ok`, `note` (fine, but worth knowing) or `problem` — and for a
//! problem the exact fix. The exit status is 0 only when there is no problem. Nothing is
//! changed, except that the cache directory is created if missing (to test that it can be),
//! and no secret is printed.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use wandbfs::client::{self, Client, ClientConfig, Environment, Overrides, settings};
use wandbfs::mirror::embedded::{ClusterState, SearchPaths, binaries};
use wandbfs::mirror::{DatabaseTarget, EmbeddedCluster, schema};

use crate::db::DatabaseArgs;

/// `wandbfs doctor`
#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// The mount's cache directory to check [default: $XDG_CACHE_HOME/wandbfs].
    #[arg(long, env = "WANDBFS_CACHE_DIR", value_name = "DIR")]
    cache_dir: Option<PathBuf>,

    /// The cache size the mount would use, to compare with the free space.
    #[arg(long, env = "WANDBFS_CACHE_SIZE", value_name = "SIZE",
          default_value = crate::mount::args::DEFAULT_CACHE_SIZE,
          value_parser = crate::mount::args::parse_size)]
    cache_size: u64,

    #[command(flatten)]
    database: DatabaseArgs,
}

/// How a check went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Level {
    Ok,
    Note,
    Problem,
}

/// One line of the report.
struct Finding {
    level: Level,
    what: &'static str,
    detail: String,
    fix: Option<String>,
}

impl Finding {
    fn ok(what: &'static str, detail: impl Into<String>) -> Self {
        Finding {
            level: Level::Ok,
            what,
            detail: detail.into(),
            fix: None,
        }
    }
    fn note(what: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Finding {
            level: Level::Note,
            what,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
    fn problem(what: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Finding {
            level: Level::Problem,
            what,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
}

/// Runs every check; 0 when none found a problem, 1 otherwise.
pub fn run(args: DoctorArgs) -> anyhow::Result<i32> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let mut findings = vec![config_file()];
    findings.extend(runtime.block_on(wandb()));
    let pg = postgres_binaries(&args.database);
    let have_binaries = pg.level == Level::Ok;
    findings.push(pg);
    findings.push(runtime.block_on(mirror(&args.database, have_binaries)));
    findings.push(dev_fuse());
    findings.push(fusermount());
    findings.push(allow_other());
    findings.push(cache(&args));

    let mut problems = 0;
    for f in &findings {
        let tag = match f.level {
            Level::Ok => "ok",
            Level::Note => "note",
            Level::Problem => {
                problems += 1;
                "problem"
            }
        };
        println!("{tag:<8} {}: {}", f.what, f.detail);
        if let Some(fix) = &f.fix {
            let label = if f.level == Level::Problem {
                "fix"
            } else {
                "hint"
            };
            println!("{:<8}   {label}: {fix}", "");
        }
    }
    if problems == 0 {
        println!("all good");
        Ok(0)
    } else {
        println!("{problems} problem{}", if problems == 1 { "" } else { "s" });
        Ok(1)
    }
}

fn config_file() -> Finding {
    let loaded = crate::config::loaded();
    match (&loaded.path, loaded.found) {
        (Some(path), true) => Finding::ok(
            "config file",
            format!("{} ({} settings)", path.display(), loaded.values.len()),
        ),
        (Some(path), false) => Finding::ok(
            "config file",
            format!("none at {} (optional)", path.display()),
        ),
        (None, _) => Finding::ok("config file", "none (no HOME)"),
    }
}

/// Credentials, then the server: reachable, the key accepted, its version.
async fn wandb() -> Vec<Finding> {
    let settings = match settings::resolve(&Overrides::default(), &Environment::from_process()) {
        Ok(s) => s,
        Err(e) => {
            return vec![Finding::problem(
                "credentials",
                one_line(&e.to_string()),
                "run `wandb login` (or `wandb login --host URL` for W&B Server), or export \
                 WANDB_API_KEY",
            )];
        }
    };
    let source = match &settings.credential_source {
        settings::CredentialSource::Explicit => "given explicitly".to_owned(),
        settings::CredentialSource::EnvApiKey => "WANDB_API_KEY".to_owned(),
        settings::CredentialSource::EnvIdentityTokenFile => "WANDB_IDENTITY_TOKEN_FILE".to_owned(),
        settings::CredentialSource::Netrc { path, machine } => {
            format!("{} (machine {machine})", path.display())
        }
        settings::CredentialSource::SettingsFile { path } => path.display().to_string(),
    };
    let url = settings.base_url.to_string();
    let mut findings = vec![Finding::ok(
        "credentials",
        format!("API key from {source} (not shown), for {url}"),
    )];
    // One quick attempt and one retry: the doctor says what is wrong, it does not ride it out.
    let mut config = ClientConfig::default().apply_settings(&settings);
    config.retry.max_attempts = 2;
    config.retry.initial_backoff = Duration::from_millis(250);
    config.graphql_timeout = Duration::from_secs(15);
    config.connect_timeout = Duration::from_secs(5);
    config.rate.requests_per_second = 0.0;
    let client = match Client::new(settings, config) {
        Ok(c) => c,
        Err(e) => {
            findings.push(Finding::problem(
                "W&B server",
                one_line(&e.to_string()),
                "check WANDB_BASE_URL",
            ));
            return findings;
        }
    };
    #[derive(serde::Deserialize)]
    struct Data {
        viewer: Option<Viewer>,
        #[serde(rename = "serverInfo")]
        server_info: Option<Info>,
    }
    #[derive(serde::Deserialize)]
    struct Viewer {
        username: Option<String>,
    }
    #[derive(serde::Deserialize)]
    struct Info {
        #[serde(rename = "latestLocalVersionInfo")]
        local: Option<Local>,
    }
    #[derive(serde::Deserialize)]
    struct Local {
        #[serde(rename = "versionOnThisInstanceString")]
        version: Option<String>,
    }
    let query = "query Doctor { viewer { username } serverInfo { latestLocalVersionInfo { \
                 versionOnThisInstanceString } } }";
    match client
        .gql::<Data>("Doctor", query, serde_json::json!({}))
        .await
    {
        Ok(data) => {
            let Some(viewer) = data.viewer else {
                findings.push(Finding::problem(
                    "W&B server",
                    format!("{url} answers, but does not recognise the key"),
                    "wandb login --relogin (or a WANDB_API_KEY for this server)",
                ));
                return findings;
            };
            let version = match data
                .server_info
                .and_then(|i| i.local)
                .and_then(|l| l.version)
            {
                Some(v) => format!("W&B Server {v}"),
                None => "W&B cloud API (the server reports no local version)".to_owned(),
            };
            findings.push(Finding::ok(
                "W&B server",
                format!(
                    "{url} answers; signed in as {}; {version}",
                    viewer.username.unwrap_or_else(|| "?".to_owned())
                ),
            ));
        }
        Err(client::Error::Unauthenticated { .. }) => findings.push(Finding::problem(
            "W&B server",
            format!("{url} refused the key (401)"),
            "wandb login --relogin (or a WANDB_API_KEY valid for this server)",
        )),
        Err(
            e @ client::Error::RetriesExhausted {
                last_status: None, ..
            },
        ) => findings.push(Finding::problem(
            "W&B server",
            format!("cannot reach {url}: {}", one_line(&e.to_string())),
            "check WANDB_BASE_URL (or `wandb login --host`), the network, and proxies",
        )),
        Err(e) => findings.push(Finding::problem(
            "W&B server",
            one_line(&e.to_string()),
            "check WANDB_BASE_URL and the server's status",
        )),
    }
    findings
}

fn postgres_binaries(database: &DatabaseArgs) -> Finding {
    match binaries::locate(&SearchPaths::system(database.pg_bin.clone())) {
        Ok(found) => {
            let version = found
                .major_version()
                .map_or_else(String::new, |v| format!(" (PostgreSQL {v})"));
            Finding::ok(
                "PostgreSQL server programs",
                format!("{}{version}", found.bin_dir.display()),
            )
        }
        Err(e) if database.database_url.is_some() => Finding::note(
            "PostgreSQL server programs",
            one_line(&e.to_string()),
            "not needed with --database-url; the embedded mirror needs them (apt-get install \
             postgresql)",
        ),
        Err(e) => Finding::problem(
            "PostgreSQL server programs",
            one_line(&e.to_string()),
            "apt-get install postgresql (or point --pg-bin / WANDBFS_PG_BIN at their directory)",
        ),
    }
}

/// The mirror: reachable and at this wandbfs's schema.
async fn mirror(database: &DatabaseArgs, have_binaries: bool) -> Finding {
    const WHAT: &str = "mirror database";
    let target = match database.target() {
        Ok(t) => t,
        Err(e) => {
            return Finding::problem(
                WHAT,
                one_line(&format!("{e:#}")),
                "--database-url / WANDBFS_DATABASE_URL takes postgresql://user@host:port/db",
            );
        }
    };
    let (place, probe) = match &target {
        DatabaseTarget::Url(url) => (url.redacted(), wandbfs::mirror::probe(url).await),
        DatabaseTarget::Embedded(options) => {
            let cluster = match EmbeddedCluster::open(options) {
                Ok(c) => c,
                Err(e) => {
                    return Finding::problem(
                        WHAT,
                        one_line(&e.to_string()),
                        "check --pg-dir / WANDBFS_PG_DIR",
                    );
                }
            };
            let place = format!("embedded cluster {}", cluster.dir().display());
            let status = match cluster.status() {
                Ok(s) => s,
                Err(e) => {
                    return Finding::problem(WHAT, format!("{place}: {e}"), "wandbfs db status");
                }
            };
            match status.state {
                ClusterState::NotInitialized if have_binaries => {
                    return Finding::ok(
                        WHAT,
                        format!("{place}: not created yet (the first `wandbfs sync` creates it)"),
                    );
                }
                ClusterState::NotInitialized => {
                    return Finding::problem(
                        WHAT,
                        format!(
                            "{place}: not created, and it cannot be without the server programs"
                        ),
                        "install PostgreSQL (above), or use an existing server: --database-url",
                    );
                }
                ClusterState::Stopped => {
                    return Finding::ok(WHAT, format!("{place}: stopped (started when needed)"));
                }
                ClusterState::NotResponding { pid } => {
                    return Finding::problem(
                        WHAT,
                        format!("{place}: server pid {pid} does not answer"),
                        format!(
                            "wandbfs db stop && wandbfs db start; its log is {}",
                            status.log_file.display()
                        ),
                    );
                }
                ClusterState::Running { .. } => {}
            }
            (place, wandbfs::mirror::probe_embedded(&cluster).await)
        }
    };
    match probe {
        Ok(p) if p.schema_version == schema::SCHEMA_VERSION => Finding::ok(
            WHAT,
            format!(
                "{place}: PostgreSQL {}, schema version {} (current)",
                p.server_version, p.schema_version
            ),
        ),
        Ok(p) if p.schema_version == 0 => Finding::ok(
            WHAT,
            format!(
                "{place}: PostgreSQL {}, no mirror yet (the first sync creates the schema)",
                p.server_version
            ),
        ),
        Ok(p) if p.schema_version < schema::SCHEMA_VERSION => Finding::problem(
            WHAT,
            format!(
                "{place}: schema version {}, this wandbfs uses {}",
                p.schema_version,
                schema::SCHEMA_VERSION
            ),
            "the next `wandbfs sync` upgrades it (a backup first is wise)",
        ),
        Ok(p) => Finding::problem(
            WHAT,
            format!(
                "{place}: schema version {} is newer than this wandbfs ({})",
                p.schema_version,
                schema::SCHEMA_VERSION
            ),
            "upgrade wandbfs",
        ),
        Err(e) => Finding::problem(
            WHAT,
            format!("{place}: {}", one_line(&e.to_string())),
            "is the server running and reachable? `wandbfs db status` shows where the mirror is",
        ),
    }
}

/// `/dev/fuse`: the FUSE character device (10, 229), openable.
fn dev_fuse() -> Finding {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    const WHAT: &str = "/dev/fuse";
    let fix = "load the module (modprobe fuse); in a container: --device /dev/fuse --cap-add \
               SYS_ADMIN. Without FUSE, `wandbfs ls`/`cat`/`cp` read the same tree";
    let meta = match std::fs::metadata("/dev/fuse") {
        Ok(m) => m,
        Err(e) => return Finding::problem(WHAT, format!("{e}"), fix),
    };
    let rdev = meta.rdev();
    if !meta.file_type().is_char_device() || (libc::major(rdev), libc::minor(rdev)) != (10, 229) {
        return Finding::problem(WHAT, "exists, but is not the FUSE device (10, 229)", fix);
    }
    match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/fuse")
    {
        Ok(_) => Finding::ok(WHAT, "the FUSE device is there and opens"),
        Err(e) => Finding::problem(WHAT, format!("cannot open it: {e}"), fix),
    }
}

fn fusermount() -> Finding {
    match find_on_path("fusermount3") {
        Some(path) => Finding::ok("fusermount3", path.display().to_string()),
        None if nix::unistd::geteuid().is_root() => Finding::note(
            "fusermount3",
            "not installed: root mounts without it, but --auto-unmount needs it",
            "apt-get install fuse3",
        ),
        None => Finding::problem(
            "fusermount3",
            "not installed: mounting as a regular user needs it",
            "apt-get install fuse3",
        ),
    }
}

fn allow_other() -> Finding {
    const WHAT: &str = "user_allow_other";
    let set = std::fs::read_to_string("/etc/fuse.conf").is_ok_and(|text| {
        text.lines()
            .any(|l| l.split('#').next().unwrap_or("").trim() == "user_allow_other")
    });
    if set {
        Finding::ok(
            WHAT,
            "set in /etc/fuse.conf (--allow-other works for every user)",
        )
    } else if nix::unistd::geteuid().is_root() {
        Finding::ok(WHAT, "not set, not needed as root (--allow-other works)")
    } else {
        Finding::note(
            WHAT,
            "not set in /etc/fuse.conf: only root can mount with --allow-other",
            "echo user_allow_other >> /etc/fuse.conf (as root), if other users need the mount",
        )
    }
}

/// The cache directory: writable (a file is written and removed), and its free space.
fn cache(args: &DoctorArgs) -> Finding {
    const WHAT: &str = "cache directory";
    let dir = args
        .cache_dir
        .clone()
        .unwrap_or_else(crate::mount::args::default_cache_dir);
    let fix = "pick a writable directory: --cache-dir or WANDBFS_CACHE_DIR (or cache_dir in \
               config.yaml)";
    if let Err(e) = std::fs::create_dir_all(&dir) {
        return Finding::problem(WHAT, format!("{}: {e}", dir.display()), fix);
    }
    if let Err(e) = tempfile::tempfile_in(&dir) {
        return Finding::problem(WHAT, format!("{}: not writable: {e}", dir.display()), fix);
    }
    let free = match nix::sys::statvfs::statvfs(&dir) {
        Ok(s) => s.blocks_available() * s.fragment_size(),
        Err(e) => return Finding::problem(WHAT, format!("{}: {e}", dir.display()), fix),
    };
    let detail = format!(
        "{} writable, {} free (cache size {})",
        dir.display(),
        human(free),
        human(args.cache_size)
    );
    if free < args.cache_size {
        Finding::note(
            WHAT,
            detail,
            "the cache will stop short of its size: lower --cache-size or free space",
        )
    } else {
        Finding::ok(WHAT, detail)
    }
}

fn find_on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| is_executable(p))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}
