//! Turning a [`Credential`] into an `Authorization` header, including the identity-token
//! exchange (wandb-core `internal/api/credentials.go`, PROTOCOL.md §1.4).
//!
//! Identity tokens: the JWT in the token file is re-read at every exchange (they are re-minted
//! in place), exchanged with `POST {base}/oidc/token` (form body
//! `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=<jwt>`), and the access
//! token is cached in memory and in the credentials file under the base URL, as
//! `{"credentials": {"<base_url>": {"access_token": "…", "expires_at": "YYYY-MM-DD HH:MM:SS"}}}`
//! (UTC). A token within 5 minutes of expiry is refreshed. A 4xx other than 429 from the
//! exchange is final.

use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;
use chrono::{NaiveDateTime, Utc};
use reqwest::header::HeaderValue;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::error::{Error, Result};
use super::settings::Credential;

const EXPIRES_AT_FORMAT: &str = "%Y-%m-%d %H:%M:%S";
const REFRESH_MARGIN: chrono::TimeDelta = chrono::TimeDelta::minutes(5);

/// Produces `Authorization` header values.
pub(crate) enum AuthProvider {
    /// `Basic base64("api:" + key)`, precomputed and marked sensitive.
    Basic(HeaderValue),
    /// Bearer tokens from the identity-token exchange.
    Token(TokenExchange),
}

impl std::fmt::Debug for AuthProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AuthProvider::Basic(_) => f.write_str("Basic(<redacted>)"),
            AuthProvider::Token(t) => f
                .debug_struct("Token")
                .field("token_file", &t.token_file)
                .field("credentials_file", &t.credentials_file)
                .finish(),
        }
    }
}

/// `Authorization: Basic base64("api:" + key)`, flagged sensitive so that `http`'s `Debug`
/// never prints it.
pub(crate) fn basic_header(key: &SecretString) -> Result<HeaderValue> {
    let encoded =
        base64::engine::general_purpose::STANDARD.encode(format!("api:{}", key.expose_secret()));
    let mut value = HeaderValue::from_str(&format!("Basic {encoded}"))
        .map_err(|_| Error::config("the API key contains characters not allowed in a header"))?;
    value.set_sensitive(true);
    Ok(value)
}

impl AuthProvider {
    pub(crate) fn new(credential: &Credential, base_url: &str) -> Result<Self> {
        match credential {
            Credential::ApiKey(key) => Ok(AuthProvider::Basic(basic_header(key)?)),
            Credential::IdentityToken {
                token_file,
                credentials_file,
            } => {
                // Fail fast on a missing token file, like wandb-core.
                read_identity_token(token_file)?;
                Ok(AuthProvider::Token(TokenExchange {
                    base_url: base_url.to_owned(),
                    token_file: token_file.clone(),
                    credentials_file: credentials_file.clone(),
                    cached: tokio::sync::Mutex::new(None),
                }))
            }
        }
    }
}

/// State of the identity-token exchange.
pub(crate) struct TokenExchange {
    base_url: String,
    token_file: PathBuf,
    credentials_file: PathBuf,
    cached: tokio::sync::Mutex<Option<AccessToken>>,
}

#[derive(Clone, Serialize, Deserialize)]
struct AccessToken {
    access_token: String,
    expires_at: String,
}

impl AccessToken {
    fn is_fresh(&self) -> bool {
        NaiveDateTime::parse_from_str(&self.expires_at, EXPIRES_AT_FORMAT)
            .is_ok_and(|t| t.and_utc() - Utc::now() > REFRESH_MARGIN)
    }
}

#[derive(Default, Serialize, Deserialize)]
struct CredentialsFile {
    #[serde(default)]
    credentials: std::collections::BTreeMap<String, AccessToken>,
}

fn read_identity_token(path: &std::path::Path) -> Result<String> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::config(format!(
            "failed to read identity token file {}: {e}",
            path.display()
        ))
    })?;
    Ok(text.trim().to_owned())
}

/// The reply of `/oidc/token`.
#[derive(Deserialize)]
pub(crate) struct TokenReply {
    pub(crate) access_token: String,
    #[serde(default)]
    pub(crate) expires_in: i64,
}

impl TokenExchange {
    /// A Bearer header value, exchanging (through `exchange`) when no fresh token is cached.
    pub(crate) async fn header<F, Fut>(&self, exchange: F) -> Result<HeaderValue>
    where
        F: FnOnce(url::Url, String) -> Fut,
        Fut: std::future::Future<Output = Result<TokenReply>>,
    {
        let mut cached = self.cached.lock().await;
        if cached.as_ref().is_none_or(|t| !t.is_fresh()) {
            let mut file = self.load_file();
            match file
                .credentials
                .get(&self.base_url)
                .filter(|t| t.is_fresh())
            {
                Some(token) => *cached = Some(token.clone()),
                None => {
                    let jwt = read_identity_token(&self.token_file)?;
                    let body = url::form_urlencoded::Serializer::new(String::new())
                        .append_pair("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer")
                        .append_pair("assertion", &jwt)
                        .finish();
                    let token_url = url::Url::parse(&format!("{}/oidc/token", self.base_url))
                        .map_err(|e| Error::config(format!("bad token URL: {e}")))?;
                    let reply = exchange(token_url, body).await?;
                    let expires_at =
                        Utc::now() + Duration::from_secs(reply.expires_in.max(0) as u64);
                    let token = AccessToken {
                        access_token: reply.access_token,
                        expires_at: expires_at.format(EXPIRES_AT_FORMAT).to_string(),
                    };
                    file.credentials
                        .insert(self.base_url.clone(), token.clone());
                    self.save_file(&file);
                    *cached = Some(token);
                }
            }
        }
        let token = cached
            .as_ref()
            .map(|t| t.access_token.as_str())
            .unwrap_or_default();
        let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| Error::config("the access token is not a valid header value"))?;
        value.set_sensitive(true);
        Ok(value)
    }

    fn load_file(&self) -> CredentialsFile {
        std::fs::read(&self.credentials_file)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default()
    }

    fn save_file(&self, file: &CredentialsFile) {
        let Ok(text) = serde_json::to_vec_pretty(file) else {
            return;
        };
        if let Some(parent) = self.credentials_file.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        if let Err(e) = write_private(&self.credentials_file, &text) {
            tracing::warn!(
                "failed to write credentials file {}: {e}",
                self.credentials_file.display()
            );
        }
    }
}

/// Writes a file readable only by its owner (0600), as wandb-core does.
fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)
}
