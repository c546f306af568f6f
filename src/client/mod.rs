//! The W&B API client: settings and credentials resolved like SDK 0.31.0, GraphQL documents
//! copied from the SDK, retries, a shared rate budget, credential scoping and typed operations.
//!
//! ```no_run
//! # async fn demo() -> Result<(), wandbfs::client::Error> {
//! use futures::TryStreamExt;
//! let client = wandbfs::client::Client::from_env()?;
//! let entity = client.default_entity().await?;
//! let runs: Vec<_> = client
//!     .runs(&wandbfs::client::RunsQuery::new(&entity, "my-project"))
//!     .try_collect()
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! Layout: [`settings`] (+ `env`, `base_url`, `ini`, `netrc`) resolve *what* to talk to and
//! *as whom*; `http` (+ `auth`, `retry`, `ratelimit`) is *how*; [`graphql`] holds the
//! documents; `runs`, `history`, `files`, `artifacts`, `download`, `writes` are the typed
//! operations; [`paginate`] turns pages into streams. See `docs/CREDENTIALS.md`.

mod artifacts;
mod auth;
mod base_url;
pub mod bundle;
mod config;
mod download;
mod env;
mod error;
mod files;
pub mod graphql;
mod history;
mod http;
mod ini;
mod manifest;
mod netrc;
pub mod paginate;
mod ratelimit;
mod retry;
mod runs;
pub mod settings;
mod types;
mod upload;
mod writes;

#[cfg(test)]
mod settings_tests;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use tokio::sync::OnceCell;

pub use artifacts::ArtifactCollectionsQuery;
pub use base_url::{BaseUrl, DEFAULT_BASE_URL};
pub use config::{ClientConfig, RateLimitConfig, RetryConfig};
pub use download::{ByteRange, Download, FileLocation, ObjectInfo};
pub use env::Environment;
pub use error::{Error, Result};
pub use files::RunFilesQuery;
pub use http::StatsSnapshot;
pub use manifest::{Manifest, ManifestEntry};
pub use runs::RunsQuery;
pub use settings::{Credential, CredentialSource, Overrides, Settings};
pub use types::*;

/// A W&B API client. Cheap to clone; all clones share one HTTP connection pool, one rate
/// budget, and the cached viewer entity and server features.
#[derive(Clone, Debug)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    transport: http::Transport,
    entity: Option<String>,
    project: Option<String>,
    default_entity: OnceCell<String>,
    features: OnceCell<ServerFeatures>,
}

impl Client {
    /// Resolves settings from the real process environment (like `wandb.Api()`) and builds a
    /// client with default configuration plus the SDK's environment overrides.
    pub fn from_env() -> Result<Client> {
        let settings = settings::resolve(&Overrides::default(), &Environment::from_process())?;
        let config = ClientConfig::default().apply_settings(&settings);
        Client::new(settings, config)
    }

    /// Builds a client from resolved settings and a configuration. Makes no request.
    pub fn new(settings: Settings, config: ClientConfig) -> Result<Client> {
        let auth = auth::AuthProvider::new(&settings.credential, settings.base_url.as_str())?;
        let transport = http::Transport::new(settings.base_url.clone(), auth, config)?;
        Ok(Client {
            inner: Arc::new(Inner {
                transport,
                entity: settings.entity,
                project: settings.project,
                default_entity: OnceCell::new(),
                features: OnceCell::new(),
            }),
        })
    }

    /// The normalised base URL.
    pub fn base_url(&self) -> &BaseUrl {
        &self.inner.transport.base
    }

    /// The configuration in force.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.transport.config
    }

    /// The configured default project (`WANDB_PROJECT` / settings), if any.
    pub fn default_project(&self) -> Option<&str> {
        self.inner.project.as_deref()
    }

    /// Request counters shared by all clones.
    pub fn stats(&self) -> StatsSnapshot {
        self.inner.transport.stats()
    }

    /// The default entity: the configured one (`WANDB_ENTITY` / settings / override), else the
    /// viewer's own entity from `GetDefaultEntity`, fetched once and cached.
    pub async fn default_entity(&self) -> Result<String> {
        if let Some(entity) = &self.inner.entity {
            return Ok(entity.clone());
        }
        self.inner
            .default_entity
            .get_or_try_init(|| async {
                #[derive(serde::Deserialize)]
                struct Data {
                    viewer: Option<ViewerEntity>,
                }
                #[derive(serde::Deserialize)]
                struct ViewerEntity {
                    entity: Option<String>,
                }
                let op = graphql::GET_DEFAULT_ENTITY;
                let data: Data = self
                    .gql(op.name, op.document(), serde_json::json!({}))
                    .await?;
                match data.viewer {
                    None => Err(Error::Unauthenticated {
                        operation: op.name.to_owned(),
                        message: "the server did not recognize an account for these \
                                  credentials (viewer is null)"
                            .to_owned(),
                    }),
                    Some(v) => v.entity.ok_or_else(|| {
                        Error::not_found(op.name, "the viewer has no default entity")
                    }),
                }
            })
            .await
            .cloned()
    }

    /// Server feature flags (`ServerFeaturesQuery`), fetched once. Like the SDK, a server that
    /// does not know the query (GraphQL error or HTTP 400/404) has all features off.
    pub async fn server_features(&self) -> Result<ServerFeatures> {
        self.inner
            .features
            .get_or_try_init(|| async {
                #[derive(serde::Deserialize)]
                struct Data {
                    #[serde(rename = "serverInfo")]
                    server_info: Option<Info>,
                }
                #[derive(serde::Deserialize)]
                struct Info {
                    #[serde(default)]
                    features: Option<Vec<Option<Feature>>>,
                }
                #[derive(serde::Deserialize)]
                struct Feature {
                    name: String,
                    #[serde(rename = "isEnabled", default)]
                    is_enabled: bool,
                }
                let op = graphql::SERVER_FEATURES;
                match self
                    .gql::<Data>(op.name, op.document(), serde_json::json!({}))
                    .await
                {
                    Ok(data) => Ok(ServerFeatures::from_enabled(
                        data.server_info
                            .and_then(|i| i.features)
                            .unwrap_or_default()
                            .into_iter()
                            .flatten()
                            .filter(|f| f.is_enabled)
                            .map(|f| f.name),
                    )),
                    Err(Error::GraphQl { .. })
                    | Err(Error::NotFound { .. })
                    | Err(Error::Http { status: 400, .. }) => Ok(ServerFeatures::default()),
                    Err(e) => Err(e),
                }
            })
            .await
            .cloned()
    }

    /// Executes any GraphQL document and decodes `data` into `T`, with the client's retries,
    /// rate budget and credential handling. For operations the typed methods do not cover.
    pub async fn gql<T: serde::de::DeserializeOwned>(
        &self,
        operation_name: &str,
        document: &str,
        variables: serde_json::Value,
    ) -> Result<T> {
        self.inner
            .transport
            .graphql(operation_name, document, variables)
            .await
    }

    fn transport(&self) -> &http::Transport {
        &self.inner.transport
    }
}
