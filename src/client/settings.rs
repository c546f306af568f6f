//! Settings and credential resolution, reproducing what `wandb.Api()` does in SDK 0.31.0.
//!
//! See `docs/CREDENTIALS.md` for the user-facing summary. Sources: `wandb/apis/public/api.py`
//! (`Api.__init__`), `wandb/sdk/wandb_setup.py` (`_load_settings`), `wandb/sdk/wandb_settings.py`
//! (`update_from_env_vars`, `settings_workspace`, `wandb_dir`), `wandb/sdk/lib/settings_file.py`,
//! `wandb/sdk/lib/wbauth/authenticate.py` (`_use_system_auth`, `_try_env_auth`),
//! `wandb/sdk/lib/wbauth/wbnetrc.py` and `wandb/sdk/lib/wbauth/validation.py`.
//!
//! # Precedence (first hit wins)
//!
//! **Base URL**: [`Overrides::base_url`] → `WANDB_BASE_URL` → workspace settings file →
//! global settings file → `https://api.forge.coreweave.com`; then normalised ([`BaseUrl`]).
//!
//! **Entity** (and project): [`Overrides`] → `WANDB_ENTITY` (`WANDB_PROJECT`) → workspace settings
//! → global settings → (entity only) the viewer's default entity, fetched lazily by the client
//! (`GetDefaultEntity`).
//!
//! **Credential**:
//! 1. [`Overrides::api_key`];
//! 2. `WANDB_API_KEY`, or `WANDB_IDENTITY_TOKEN_FILE` (both set → error);
//! 3. netrc (`$NETRC`, `~/.netrc`, `~/_netrc`), machine = base-URL netloc with port, then the
//!    Forge upstream host (`api.wandb.ai`) for Forge URLs;
//! 4. `api_key` from the settings files, only if the settings' `base_url` (env `WANDB_BASE_URL`
//!    → files → default) equals the resolved base URL;
//! 5. otherwise [`Error::MissingCredentials`], which says how to provide a key (no prompt).
//!
//! Keys are checked for the SDK's format before any request (a JWT, or `[prefix-]secret` with a
//! secret of 40+ `[A-Za-z0-9_-]` characters).
//!
//! **Settings files**: INI section `[default]` of the global file `$WANDB_CONFIG_DIR/settings`
//! (default `~/.config/wandb/settings`) and the workspace file `./wandb/settings` (or
//! `./.wandb/settings` when `./.wandb` exists) in the working directory; workspace wins.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use super::base_url::{BaseUrl, DEFAULT_BASE_URL};
use super::env::Environment;
use super::error::{Error, Result};
use super::{ini, netrc};

/// Values given explicitly by the caller (like `wandb.Api(overrides=…, api_key=…)`); they beat
/// every other source.
#[derive(Clone, Default)]
pub struct Overrides {
    /// Server URL.
    pub base_url: Option<String>,
    /// API key.
    pub api_key: Option<SecretString>,
    /// Default entity.
    pub entity: Option<String>,
    /// Default project.
    pub project: Option<String>,
}

impl std::fmt::Debug for Overrides {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Overrides")
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("entity", &self.entity)
            .field("project", &self.project)
            .finish()
    }
}

/// How requests are authenticated.
#[derive(Clone)]
pub enum Credential {
    /// An API key, sent as `Authorization: Basic base64("api:" + key)`.
    ApiKey(SecretString),
    /// A federated identity: a JWT in `token_file` is exchanged at `{base}/oidc/token` for an
    /// access token (sent as `Bearer`), cached in `credentials_file`.
    IdentityToken {
        /// The file holding the identity JWT (re-read at every exchange).
        token_file: PathBuf,
        /// The access-token cache (`~/.config/wandb/credentials.json` by default).
        credentials_file: PathBuf,
    },
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::ApiKey(_) => f.write_str("ApiKey(<redacted>)"),
            Credential::IdentityToken {
                token_file,
                credentials_file,
            } => f
                .debug_struct("IdentityToken")
                .field("token_file", token_file)
                .field("credentials_file", credentials_file)
                .finish(),
        }
    }
}

/// Where the credential came from (for diagnostics; never contains the key).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CredentialSource {
    /// [`Overrides::api_key`].
    Explicit,
    /// `WANDB_API_KEY`.
    EnvApiKey,
    /// `WANDB_IDENTITY_TOKEN_FILE`.
    EnvIdentityTokenFile,
    /// A netrc file entry.
    Netrc {
        /// The netrc file.
        path: PathBuf,
        /// The machine name that matched.
        machine: String,
    },
    /// `api_key` in a settings file.
    SettingsFile {
        /// The settings file that held it.
        path: PathBuf,
    },
}

/// Everything resolved from overrides, environment and files.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The normalised server URL.
    pub base_url: BaseUrl,
    /// The credential.
    pub credential: Credential,
    /// Where the credential came from.
    pub credential_source: CredentialSource,
    /// Default entity, if configured (else the client asks the server for the viewer's).
    pub entity: Option<String>,
    /// Default project, if configured.
    pub project: Option<String>,
    /// Headers added to every request (`WANDB__EXTRA_HTTP_HEADERS`, a JSON object).
    pub extra_headers: Vec<(String, String)>,
    /// Per-attempt GraphQL timeout (`WANDB_HTTP_TIMEOUT` / `WANDB__GRAPHQL_TIMEOUT_SECONDS`).
    pub graphql_timeout: Option<Duration>,
    /// Retry count override (`WANDB__GRAPHQL_RETRY_MAX`).
    pub graphql_retry_max: Option<u32>,
    /// Minimum backoff override (`WANDB__GRAPHQL_RETRY_WAIT_MIN_SECONDS`).
    pub graphql_retry_wait_min: Option<Duration>,
    /// Maximum backoff override (`WANDB__GRAPHQL_RETRY_WAIT_MAX_SECONDS`).
    pub graphql_retry_wait_max: Option<Duration>,
    /// Skip TLS verification (`WANDB_INSECURE_DISABLE_SSL=true`), as wandb-core does.
    pub insecure_disable_ssl: bool,
    /// The settings files that existed and were read, workspace last.
    pub settings_files: Vec<PathBuf>,
}

/// The merged `[default]` items of the settings files.
#[derive(Debug, Default)]
struct FileSettings {
    items: BTreeMap<String, (String, PathBuf)>,
    sources: Vec<PathBuf>,
}

impl FileSettings {
    fn get(&self, key: &str) -> Option<&str> {
        self.items
            .get(key)
            .map(|(v, _)| v.as_str())
            .filter(|v| !v.is_empty())
    }
}

/// The global settings file (`wandb_setup._load_settings`).
pub fn global_settings_path(env: &Environment) -> Option<PathBuf> {
    match env.var("WANDB_CONFIG_DIR") {
        Some(dir) => Some(env.expand_user(dir).join("settings")),
        None => Some(env.home()?.join(".config").join("wandb").join("settings")),
    }
}

/// The workspace settings file (`Settings.settings_workspace` with the default `root_dir`,
/// the working directory: the files are read before `WANDB_DIR` is applied).
pub fn workspace_settings_path(env: &Environment) -> Option<PathBuf> {
    let cwd = env.cwd()?;
    let dir = if cwd.join(".wandb").exists() {
        ".wandb"
    } else {
        "wandb"
    };
    Some(cwd.join(dir).join("settings"))
}

fn read_settings_file(path: &Path) -> Option<BTreeMap<String, String>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!("error reading settings at {}: {e}", path.display());
            return None;
        }
    };
    match ini::section_items(&text, "default") {
        Ok(items) if !items.is_empty() => Some(items),
        Ok(_) => None,
        Err(ini::IniError(e)) => {
            tracing::warn!("error reading settings at {}: {e}", path.display());
            None
        }
    }
}

fn load_files(env: &Environment) -> FileSettings {
    let mut files = FileSettings::default();
    let paths = [global_settings_path(env), workspace_settings_path(env)];
    for path in paths.into_iter().flatten() {
        if let Some(items) = read_settings_file(&path) {
            for (key, value) in items {
                files.items.insert(key, (value, path.clone()));
            }
            files.sources.push(path);
        }
    }
    files
}

/// Checks an API key's format like `validation.check_api_key`; the message never shows the key.
pub fn check_api_key(key: &str) -> std::result::Result<(), String> {
    if key.is_empty() {
        return Err("API key is empty.".into());
    }
    if key.len() > key.trim().len() {
        return Err("API key cannot start or end with whitespace.".into());
    }
    let is_b64url = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
    };
    let segments: Vec<&str> = key.split('.').collect();
    if segments.len() == 3 && segments.iter().all(|s| is_b64url(s)) {
        return Ok(()); // A JWT.
    }
    let secret = key.split_once('-').map_or(key, |(_, secret)| secret);
    // Python's `\w` is Unicode-aware; `is_alphanumeric` matches it closely enough.
    if !is_b64url(secret) {
        return Err("API key may only contain the letters A-Z, digits and underscores.".into());
    }
    let len = secret.chars().count();
    if len < 40 {
        return Err(format!("API key must have 40+ characters, has {len}."));
    }
    Ok(())
}

fn api_key(key: &str, origin: &str) -> Result<SecretString> {
    check_api_key(key).map_err(|problem| Error::config(format!("{origin} invalid: {problem}")))?;
    Ok(SecretString::from(key.to_owned()))
}

fn parse_seconds(env: &Environment, name: &str) -> Result<Option<Duration>> {
    env.var(name)
        .map(|v| {
            v.trim()
                .parse::<f64>()
                .ok()
                .filter(|s| s.is_finite() && *s >= 0.0)
                .map(Duration::from_secs_f64)
                .ok_or_else(|| Error::config(format!("{name}={v:?} is not a number of seconds")))
        })
        .transpose()
}

/// Resolves settings and credentials. Reads files but makes no network request; an identity
/// token is exchanged later, on first use.
pub fn resolve(overrides: &Overrides, env: &Environment) -> Result<Settings> {
    let files = load_files(env);

    // `settings.base_url` as the SDK's global settings hold it: env beats files beats default.
    let settings_base_url = env
        .var("WANDB_BASE_URL")
        .or_else(|| files.get("base_url"))
        .unwrap_or(DEFAULT_BASE_URL);
    let raw_base = overrides
        .base_url
        .as_deref()
        .filter(|u| !u.is_empty())
        .unwrap_or(settings_base_url);
    let base_url = BaseUrl::parse(raw_base.trim_end_matches('/'))?;

    let entity = overrides
        .entity
        .clone()
        .or_else(|| env.var("WANDB_ENTITY").map(str::to_owned))
        .or_else(|| files.get("entity").map(str::to_owned));
    let project = overrides
        .project
        .clone()
        .or_else(|| env.var("WANDB_PROJECT").map(str::to_owned))
        .or_else(|| files.get("project").map(str::to_owned));

    let (credential, credential_source) =
        resolve_credential(overrides, env, &files, &base_url, settings_base_url)?;

    let extra_headers = match env.var("WANDB__EXTRA_HTTP_HEADERS") {
        None => Vec::new(),
        Some(json) => {
            let map: BTreeMap<String, String> = serde_json::from_str(json).map_err(|e| {
                Error::config(format!(
                    "WANDB__EXTRA_HTTP_HEADERS must be a JSON object of strings: {e}"
                ))
            })?;
            map.into_iter().collect()
        }
    };
    let graphql_timeout = match parse_seconds(env, "WANDB__GRAPHQL_TIMEOUT_SECONDS")? {
        Some(t) => Some(t),
        None => parse_seconds(env, "WANDB_HTTP_TIMEOUT")?,
    };
    let graphql_retry_max = env
        .var("WANDB__GRAPHQL_RETRY_MAX")
        .map(|v| {
            v.trim().parse::<u32>().map_err(|_| {
                Error::config(format!("WANDB__GRAPHQL_RETRY_MAX={v:?} is not a count"))
            })
        })
        .transpose()?;
    let insecure_disable_ssl = env
        .var("WANDB_INSECURE_DISABLE_SSL")
        .is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "true" | "1" | "yes"));

    Ok(Settings {
        base_url,
        credential,
        credential_source,
        entity,
        project,
        extra_headers,
        graphql_timeout,
        graphql_retry_max,
        graphql_retry_wait_min: parse_seconds(env, "WANDB__GRAPHQL_RETRY_WAIT_MIN_SECONDS")?,
        graphql_retry_wait_max: parse_seconds(env, "WANDB__GRAPHQL_RETRY_WAIT_MAX_SECONDS")?,
        insecure_disable_ssl,
        settings_files: files.sources.clone(),
    })
}

fn credentials_file(env: &Environment, files: &FileSettings) -> PathBuf {
    let configured = env
        .var("WANDB_CREDENTIALS_FILE")
        .or_else(|| files.get("credentials_file"));
    let path = match configured {
        Some(p) => env.expand_user(p),
        None => match env.home() {
            Some(home) => home.join(".config").join("wandb").join("credentials.json"),
            None => PathBuf::from(".config/wandb/credentials.json"),
        },
    };
    env.absolute(path)
}

fn resolve_credential(
    overrides: &Overrides,
    env: &Environment,
    files: &FileSettings,
    base_url: &BaseUrl,
    settings_base_url: &str,
) -> Result<(Credential, CredentialSource)> {
    if let Some(key) = &overrides.api_key {
        let key = api_key(key.expose_secret(), "api_key argument")?;
        return Ok((Credential::ApiKey(key), CredentialSource::Explicit));
    }

    match (
        env.var("WANDB_API_KEY"),
        env.var("WANDB_IDENTITY_TOKEN_FILE"),
    ) {
        (Some(_), Some(_)) => {
            return Err(Error::config(
                "both WANDB_API_KEY and WANDB_IDENTITY_TOKEN_FILE are set, which is not allowed",
            ));
        }
        (Some(key), None) => {
            let key = api_key(key, "WANDB_API_KEY")?;
            return Ok((Credential::ApiKey(key), CredentialSource::EnvApiKey));
        }
        (None, Some(token_file)) => {
            let credential = Credential::IdentityToken {
                token_file: env.absolute(PathBuf::from(token_file)),
                credentials_file: credentials_file(env, files),
            };
            return Ok((credential, CredentialSource::EnvIdentityTokenFile));
        }
        (None, None) => {}
    }

    let netrc_path = netrc::netrc_path(env);
    if let Some(path) = &netrc_path {
        let mut machines = vec![base_url.netloc()];
        machines.extend(base_url.forge_upstream_netloc());
        if let Some((machine, password)) = netrc::lookup_password(path, &machines) {
            let key = api_key(&password, &format!("API key in {}", path.display()))?;
            let source = CredentialSource::Netrc {
                path: path.clone(),
                machine,
            };
            return Ok((Credential::ApiKey(key), source));
        }
    }

    if let Some((key, path)) = files.items.get("api_key").filter(|(v, _)| !v.is_empty()) {
        let settings_base = BaseUrl::parse(settings_base_url.trim_end_matches('/'));
        if settings_base.is_ok_and(|s| base_url.is_same_url(s.as_str())) {
            let key = api_key(key, &format!("api_key in {}", path.display()))?;
            let source = CredentialSource::SettingsFile { path: path.clone() };
            return Ok((Credential::ApiKey(key), source));
        }
    }

    Err(Error::MissingCredentials {
        base_url: base_url.to_string(),
        netrc_machine: base_url.netloc().to_owned(),
        netrc_path: netrc_path.map_or_else(|| "~/.netrc".to_owned(), |p| p.display().to_string()),
    })
}
