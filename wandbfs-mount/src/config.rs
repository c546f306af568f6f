//! The config file (`~/.config/wandbfs/config.yaml`, or `--config FILE` / `WANDBFS_CONFIG`),
//! and `wandbfs config`: the effective settings and where each came from.
//!
//! Precedence, like the `wandb` SDK's settings merge: command-line flags, then environment
//! variables, then the file, then the built-in defaults. Every setting the file can hold is
//! also an environment variable ([`SETTINGS`]), and that is how the file is applied: before
//! the command line is parsed, each file value becomes its variable *when the variable is
//! unset*, and clap's `env` fallback does the rest — so one rule covers every subcommand and
//! the mount's daemon, and a flag still beats both.
//!
//! API keys do not belong in this file (it is often shared or committed): keys come from
//! `wandb login` (`~/.netrc`) or `WANDB_API_KEY`, as for the SDK; a file holding one is
//! refused. Passwords in `database_url` are redacted whenever a value is shown.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use clap::Args;

use crate::cli::UserError;

/// One setting: its key in the file and its environment variable.
pub struct Setting {
    /// Key in config.yaml.
    pub key: &'static str,
    /// The environment variable (and so the flag's `env` fallback).
    pub env: &'static str,
    /// What it sets (`wandbfs config` prints it).
    pub what: &'static str,
    /// The default, as text.
    pub default: &'static str,
}

/// Every setting the file can hold. The flags are documented in docs/CONFIGURATION.md.
pub const SETTINGS: &[Setting] = &[
    Setting {
        key: "base_url",
        env: "WANDB_BASE_URL",
        what: "W&B server",
        default: "the SDK's: its settings files, else https://api.forge.coreweave.com",
    },
    Setting {
        key: "database_url",
        env: "WANDBFS_DATABASE_URL",
        what: "mirror database (--database-url)",
        default: "the embedded cluster",
    },
    Setting {
        key: "pg_dir",
        env: "WANDBFS_PG_DIR",
        what: "embedded cluster directory (--pg-dir)",
        default: "$XDG_DATA_HOME/wandbfs/pg (root: /var/lib/wandbfs/pg)",
    },
    Setting {
        key: "pg_bin",
        env: "WANDBFS_PG_BIN",
        what: "PostgreSQL server programs (--pg-bin)",
        default: "pg_config, /usr/lib/postgresql/*/bin, PATH",
    },
    Setting {
        key: "pg_user",
        env: "WANDBFS_PG_USER",
        what: "account of the embedded server when run as root (--pg-user)",
        default: "postgres",
    },
    Setting {
        key: "cache_dir",
        env: "WANDBFS_CACHE_DIR",
        what: "mount content cache and tables (--cache-dir)",
        default: "$XDG_CACHE_HOME/wandbfs (~/.cache/wandbfs)",
    },
    Setting {
        key: "cache_size",
        env: "WANDBFS_CACHE_SIZE",
        what: "content cache size (--cache-size)",
        default: crate::mount::args::DEFAULT_CACHE_SIZE,
    },
    Setting {
        key: "metadata_ttl",
        env: "WANDBFS_METADATA_TTL",
        what: "seconds listings are trusted (--metadata-ttl)",
        default: "10",
    },
    Setting {
        key: "sync_interval",
        env: "WANDBFS_SYNC_INTERVAL",
        what: "seconds between the mount's background syncs (--sync-interval)",
        default: "10",
    },
    Setting {
        key: "database_timeout",
        env: "WANDBFS_DATABASE_TIMEOUT",
        what: "seconds the mount waits for the database before EIO (--database-timeout)",
        default: "10",
    },
    Setting {
        key: "max_rps",
        env: "WANDBFS_MAX_RPS",
        what: "requests per second to W&B (--max-rps)",
        default: "5; none for a server on this machine",
    },
    Setting {
        key: "log",
        env: "WANDBFS_LOG",
        what: "log filter (overrides -v)",
        default: "errors only",
    },
];

/// Keys refused with a reason.
const REFUSED: &[(&str, &str)] = &[
    (
        "api_key",
        "API keys do not belong in config.yaml: use `wandb login` (~/.netrc) or WANDB_API_KEY",
    ),
    (
        "wandb_api_key",
        "API keys do not belong in config.yaml: use `wandb login` (~/.netrc) or WANDB_API_KEY",
    ),
];

/// `--config`, accepted by every subcommand (read before the command line is parsed).
#[derive(Clone, Debug, Default, clap::Args)]
pub struct ConfigFlag {
    /// The config file [default: $XDG_CONFIG_HOME/wandbfs/config.yaml, else
    /// ~/.config/wandbfs/config.yaml; env WANDBFS_CONFIG].
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// What was loaded, for `wandbfs config`.
#[derive(Clone, Debug, Default)]
pub struct Loaded {
    /// The file looked at.
    pub path: Option<PathBuf>,
    /// Whether it existed.
    pub found: bool,
    /// Its values, by key.
    pub values: BTreeMap<String, String>,
    /// Variables the file set (they were unset).
    pub applied: Vec<&'static str>,
}

static LOADED: OnceLock<Loaded> = OnceLock::new();

/// Reads the config file named by `args` (`--config`), `WANDBFS_CONFIG` or the default place,
/// and sets each of its values' variables that are unset.
///
/// Must run before any thread starts (it sets environment variables).
pub fn load_and_apply(args: impl Iterator<Item = OsString>) -> anyhow::Result<()> {
    let explicit =
        config_arg(args).or_else(|| std::env::var_os("WANDBFS_CONFIG").map(PathBuf::from));
    let path = explicit.clone().or_else(default_path);
    let mut loaded = Loaded {
        path: path.clone(),
        ..Loaded::default()
    };
    if let Some(path) = &path {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                loaded.found = true;
                loaded.values = parse(&text, path)?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && explicit.is_none() => {}
            Err(e) => {
                return Err(UserError::with_hint(
                    format!("config file {}: {e}", path.display()),
                    "give an existing file with --config (or WANDBFS_CONFIG)",
                )
                .into());
            }
        }
    }
    for setting in SETTINGS {
        if let Some(value) = loaded.values.get(setting.key)
            && std::env::var_os(setting.env).is_none()
        {
            // SAFETY: called first thing in `main`, before any other thread exists, so no
            // thread can read the environment concurrently.
            unsafe { std::env::set_var(setting.env, value) };
            loaded.applied.push(setting.env);
        }
    }
    let _ = LOADED.set(loaded);
    Ok(())
}

/// `--config FILE` / `--config=FILE` from the raw command line (before `--`).
fn config_arg(args: impl Iterator<Item = OsString>) -> Option<PathBuf> {
    let mut args = args.skip(1).take_while(|a| a != "--");
    while let Some(arg) = args.next() {
        if arg == "--config" {
            return args.next().map(PathBuf::from);
        }
        if let Some(value) = arg.to_str().and_then(|a| a.strip_prefix("--config=")) {
            return Some(PathBuf::from(value));
        }
    }
    None
}

/// `$XDG_CONFIG_HOME/wandbfs/config.yaml`, else `~/.config/wandbfs/config.yaml`.
pub fn default_path() -> Option<PathBuf> {
    std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| {
            std::env::var_os("HOME")
                .map(PathBuf::from)
                .filter(|p| p.is_absolute())
                .map(|h| h.join(".config"))
        })
        .map(|base| base.join("wandbfs").join("config.yaml"))
}

/// The file's settings: a mapping of known keys to scalars.
fn parse(text: &str, path: &Path) -> anyhow::Result<BTreeMap<String, String>> {
    let keys = || {
        SETTINGS
            .iter()
            .map(|s| s.key)
            .collect::<Vec<_>>()
            .join(", ")
    };
    if text.trim().is_empty() {
        return Ok(BTreeMap::new());
    }
    let document: serde_json::Value = serde_saphyr::from_str(text).map_err(|e| {
        UserError::with_hint(
            format!(
                "config file {}: {}",
                path.display(),
                first_line(&e.to_string())
            ),
            "it is YAML: `key: value` lines (`wandbfs config` lists the keys)",
        )
    })?;
    let serde_json::Value::Object(map) = document else {
        return Err(UserError::with_hint(
            format!("config file {}: not a mapping of settings", path.display()),
            format!("write `key: value` lines; keys: {}", keys()),
        )
        .into());
    };
    let mut values = BTreeMap::new();
    for (key, value) in map {
        if let Some((_, why)) = REFUSED.iter().find(|(k, _)| *k == key) {
            return Err(UserError::with_hint(
                format!("config file {}: `{key}` is not allowed", path.display()),
                *why,
            )
            .into());
        }
        if !SETTINGS.iter().any(|s| s.key == key) {
            return Err(UserError::with_hint(
                format!("config file {}: unknown setting `{key}`", path.display()),
                format!("the settings are: {}", keys()),
            )
            .into());
        }
        let text = match value {
            serde_json::Value::String(s) => s,
            serde_json::Value::Number(n) => n.to_string(),
            serde_json::Value::Bool(b) => b.to_string(),
            serde_json::Value::Null => continue,
            _ => {
                return Err(UserError::with_hint(
                    format!(
                        "config file {}: `{key}` must be a single value",
                        path.display()
                    ),
                    "write `key: value`",
                )
                .into());
            }
        };
        values.insert(key, text);
    }
    Ok(values)
}

/// The parser's message without its source excerpt: `line 1 column 4: unclosed bracket '['`.
fn first_line(text: &str) -> String {
    let line = text.lines().next().unwrap_or("").trim();
    line.strip_prefix("error: ").unwrap_or(line).to_owned()
}

/// `wandbfs config`
#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// As JSON.
    #[arg(long)]
    json: bool,
}

/// Where a setting's value came from.
fn source_of(setting: &Setting, loaded: &Loaded) -> (&'static str, Option<String>) {
    match std::env::var(setting.env) {
        Ok(value) if loaded.applied.contains(&setting.env) => ("file", Some(value)),
        Ok(value) => ("env", Some(value)),
        Err(_) => ("default", None),
    }
}

/// `wandbfs config`: every setting, its value (secrets redacted) and where it came from.
pub fn run(args: ConfigArgs) -> anyhow::Result<i32> {
    let loaded = LOADED.get().cloned().unwrap_or_default();
    let credentials = credentials();
    let rows: Vec<(&Setting, &str, String)> = SETTINGS
        .iter()
        .map(|setting| {
            let (source, value) = source_of(setting, &loaded);
            let shown = match value {
                Some(v) => redact(&v),
                None => setting.default.to_owned(),
            };
            (setting, source, shown)
        })
        .collect();
    let file = loaded.path.as_ref().map(|p| p.display().to_string());
    if args.json {
        let settings: serde_json::Map<String, serde_json::Value> = rows
            .iter()
            .map(|(s, source, value)| {
                (
                    s.key.to_owned(),
                    serde_json::json!({"value": value, "source": source, "env": s.env}),
                )
            })
            .collect();
        let value = serde_json::json!({
            "config_file": file,
            "config_file_found": loaded.found,
            "credentials": credentials,
            "settings": settings,
        });
        println!("{value:#}");
        return Ok(0);
    }
    match (&file, loaded.found) {
        (Some(f), true) => println!("config file:  {f}"),
        (Some(f), false) => println!("config file:  {f} (none there)"),
        (None, _) => println!("config file:  none (no HOME)"),
    }
    println!("credentials:  {credentials}");
    println!("precedence:   flags > environment > config file > defaults");
    println!();
    println!("{:<14} {:<8} {:<22} value", "setting", "from", "variable");
    for (setting, source, value) in rows {
        println!(
            "{:<14} {:<8} {:<22} {value}",
            setting.key, source, setting.env
        );
    }
    Ok(0)
}

/// Which credential the client would use, without the key.
fn credentials() -> String {
    use wandbfs::client::settings::{self, CredentialSource};
    match settings::resolve(
        &wandbfs::client::Overrides::default(),
        &wandbfs::client::Environment::from_process(),
    ) {
        Ok(s) => {
            let from = match &s.credential_source {
                CredentialSource::Explicit => "given explicitly".to_owned(),
                CredentialSource::EnvApiKey => "WANDB_API_KEY".to_owned(),
                CredentialSource::EnvIdentityTokenFile => "WANDB_IDENTITY_TOKEN_FILE".to_owned(),
                CredentialSource::Netrc { path, machine } => {
                    format!("{} (machine {machine})", path.display())
                }
                CredentialSource::SettingsFile { path } => path.display().to_string(),
            };
            format!("API key from {from}, for {}", s.base_url)
        }
        Err(e) => format!("none usable ({e})"),
    }
}

/// A value with any URL password replaced by `***`.
pub fn redact(value: &str) -> String {
    let Some(scheme_end) = value.find("://") else {
        return value.to_owned();
    };
    let rest = &value[scheme_end + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let Some(at) = authority.rfind('@') else {
        return value.to_owned();
    };
    let userinfo = &authority[..at];
    let Some(colon) = userinfo.find(':') else {
        return value.to_owned();
    };
    format!(
        "{}{}:***{}",
        &value[..scheme_end + 3],
        &userinfo[..colon],
        &value[scheme_end + 3 + at..]
    )
}

/// The loaded file's path, for `doctor`.
pub fn loaded() -> Loaded {
    LOADED.get().cloned().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction() {
        assert_eq!(
            redact("postgresql://me:s3cret@db.example:5432/w?sslmode=require"),
            "postgresql://me:***@db.example:5432/w?sslmode=require"
        );
        assert_eq!(redact("postgresql://me@db/w"), "postgresql://me@db/w");
        assert_eq!(redact("https://api.wandb.ai"), "https://api.wandb.ai");
        assert_eq!(redact("/var/tmp/x"), "/var/tmp/x");
    }

    #[test]
    fn config_flag_from_argv() {
        let argv = |a: &[&str]| a.iter().map(OsString::from).collect::<Vec<_>>().into_iter();
        assert_eq!(
            config_arg(argv(&["wandbfs", "-v", "--config", "a.yaml", "ls"])),
            Some(PathBuf::from("a.yaml"))
        );
        assert_eq!(
            config_arg(argv(&["wandbfs", "--config=b.yaml"])),
            Some(PathBuf::from("b.yaml"))
        );
        assert_eq!(
            config_arg(argv(&["wandbfs", "cat", "--", "--config"])),
            None
        );
    }

    #[test]
    fn parsing() {
        let p = Path::new("c.yaml");
        let values = parse("cache_size: 20G\nmetadata_ttl: 2.5\npg_user: pg\n", p).unwrap();
        assert_eq!(values["cache_size"], "20G");
        assert_eq!(values["metadata_ttl"], "2.5");
        let err = parse("cache_sise: 1G\n", p).unwrap_err().to_string();
        assert!(err.contains("unknown setting `cache_sise`"), "{err}");
        let err = parse("api_key: abc\n", p).unwrap_err().to_string();
        assert!(
            err.contains("`api_key` is not allowed") && !err.contains("abc"),
            "{err}"
        );
        assert!(parse("cache_size: [1, 2]\n", p).is_err());
        assert!(parse("- a\n- b\n", p).is_err());
        assert!(parse("cache_size: 1G\n  bad: indentation: here\n", p).is_err());
        assert!(parse("  \n", p).unwrap().is_empty());
    }
}
