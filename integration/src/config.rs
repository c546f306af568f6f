//! Emulator configuration.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::faults::FaultSettings;
use crate::seed::SeedSpec;

/// Server features advertised by default (`serverInfo.features`). The artifact ones make the
/// SDK request fields the emulator serves (`totalCount` of file connections, `digestAlgorithm`,
/// the artifact's entity/project in `useArtifact`).
pub const DEFAULT_FEATURES: &[&str] = &[
    "MARK_RUN_FILES_UPLOADED",
    "TOTAL_COUNT_IN_FILE_CONNECTION",
    "ARTIFACT_DIGEST_ALGORITHM",
    "USE_ARTIFACT_WITH_ENTITY_AND_PROJECT_INFORMATION",
];

/// How to start an emulator. `Default` gives an in-memory emulator on ephemeral loopback ports
/// with one generated API key.
#[derive(Debug, Clone)]
pub struct EmulatorConfig {
    /// API listener address (`127.0.0.1:0` = any free port).
    pub listen: SocketAddr,
    /// Signed-URL listener address.
    pub direct_listen: SocketAddr,
    /// Where state is persisted (none = memory only).
    pub data_dir: Option<PathBuf>,
    /// Accepted API keys; empty = generate one (`local-` + 40 characters).
    pub api_keys: Vec<String>,
    /// The viewer's entity (user name).
    pub entity: String,
    /// Fixtures to generate at start (skipped when a snapshot already applied them).
    pub seeds: Vec<SeedSpec>,
    /// Lifetime of signed URLs.
    pub signed_url_ttl: Duration,
    /// Advertised server features.
    pub features: Vec<String>,
    /// Initial faults.
    pub faults: FaultSettings,
    /// Seed of the fault RNG (fractions are repeatable).
    pub fault_seed: u64,
    /// Server worker threads (a dedicated runtime, whatever the caller uses).
    pub worker_threads: usize,
    /// Delay between a mutation and the snapshot write.
    pub save_debounce: Duration,
    /// Largest page size honoured by paginated fields.
    pub max_page_size: usize,
    /// The W&B-like budget and costs of the GraphQL endpoint (off by default).
    pub profile: crate::profile::WandbProfile,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            direct_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir: None,
            api_keys: Vec::new(),
            entity: "emulator".into(),
            seeds: Vec::new(),
            signed_url_ttl: Duration::from_secs(3600),
            features: DEFAULT_FEATURES.iter().map(|s| s.to_string()).collect(),
            faults: FaultSettings::default(),
            fault_seed: 0x5eed,
            worker_threads: 2,
            save_debounce: Duration::from_millis(500),
            max_page_size: 10_000,
            profile: crate::profile::WandbProfile::default(),
        }
    }
}

impl EmulatorConfig {
    /// Adds an accepted API key.
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        self.api_keys.push(key.into());
        self
    }

    /// Sets the viewer's entity.
    pub fn entity(mut self, entity: impl Into<String>) -> Self {
        self.entity = entity.into();
        self
    }

    /// Persists state under `dir`.
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = Some(dir.into());
        self
    }

    /// Adds a fixture to generate at start.
    pub fn seed(mut self, spec: SeedSpec) -> Self {
        self.seeds.push(spec);
        self
    }

    /// Sets the signed-URL lifetime.
    pub fn signed_url_ttl(mut self, ttl: Duration) -> Self {
        self.signed_url_ttl = ttl;
        self
    }

    /// Sets the initial faults.
    pub fn faults(mut self, faults: FaultSettings) -> Self {
        self.faults = faults;
        self
    }
}

/// Generates an API key the SDK accepts (`local-` + 40 alphanumerics).
pub fn generate_api_key() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let secret: String = (0..40)
        .map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char)
        .collect();
    format!("local-{secret}")
}
