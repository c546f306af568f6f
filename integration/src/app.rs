//! The shared application state every handler and resolver sees.

use std::any::Any;
use std::sync::Arc;

use base64::Engine as _;
use parking_lot::RwLock;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::blobs::{Blob, BlobStore};
use crate::faults::Faults;
use crate::persist::Persister;
use crate::reqlog::RequestLog;
use crate::signing::Signer;
use crate::state::{Clock, Micros, RunCell, RunKey, World};

/// Characters left unescaped in a URL path segment (RFC 3986 unreserved).
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encodes one path segment.
pub fn encode_segment(segment: &str) -> String {
    utf8_percent_encode(segment, SEGMENT).to_string()
}

/// Percent-encodes a `/`-separated path, segment by segment.
pub fn encode_path(path: &str) -> String {
    path.split('/')
        .map(encode_segment)
        .collect::<Vec<_>>()
        .join("/")
}

/// Decodes a percent-encoded segment (`None` when not UTF-8).
pub fn decode_segment(segment: &str) -> Option<String> {
    percent_encoding::percent_decode_str(segment)
        .decode_utf8()
        .ok()
        .map(|s| s.into_owned())
}

/// Where exported (parquet) history comes from. The default has none: `parquetHistory` then
/// answers `parquetUrls: []` and serves every row as `liveData`. The mirror work plugs real
/// exports in here with [`crate::Emulator::set_history_exports`].
pub trait HistoryExports: Send + Sync + std::fmt::Debug {
    /// For a run: signed parquet URLs, and the first step *not* covered by them (rows with a
    /// step at or above it are served as live data). `None` = no exports for this run.
    fn exports(&self, app: &AppState, run: &RunCell) -> Option<(Vec<String>, i64)>;
}

/// State owned by an extension module (e.g. artifacts), registered with
/// [`AppState::register_extension`] and saved in the snapshot under [`Extension::name`].
pub trait Extension: Any + Send + Sync + std::fmt::Debug {
    /// Stable name (the snapshot key).
    fn name(&self) -> &'static str;
    /// The extension's state for the snapshot.
    fn save(&self) -> serde_json::Value;
    /// Restores state saved by [`Extension::save`] (called at registration after a restart).
    fn restore(&self, state: serde_json::Value) -> anyhow::Result<()>;
    /// Upcast for [`AppState::extension`].
    fn as_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync>;
}

/// Receives bytes PUT to a signed `/_upload/<kind>/<rest…>` URL whose `kind` it registered
/// with [`AppState::register_upload_sink`]. The bytes are already in the blob store.
pub trait UploadSink: Send + Sync + std::fmt::Debug {
    /// Records the upload of `blob` for the decoded path segments after `<kind>`. An `Err`
    /// message becomes a 404 response.
    fn uploaded(&self, app: &AppState, segments: &[String], blob: Arc<Blob>) -> Result<(), String>;
}

/// Everything shared by the listeners, handlers and resolvers.
#[derive(Debug)]
pub struct AppState {
    /// Entities, projects, runs.
    pub world: RwLock<World>,
    /// File contents.
    pub blobs: BlobStore,
    /// Signed-URL minting and checking.
    pub signer: Signer,
    /// The emulator clock.
    pub clock: Clock,
    /// Fault injection.
    pub faults: Faults,
    /// Request log and counters.
    pub log: RequestLog,
    /// Accepted API keys.
    pub api_keys: RwLock<Vec<String>>,
    /// Enabled server features (`serverInfo.features`).
    pub features: RwLock<Vec<String>>,
    /// Base URL of the API listener (no trailing slash).
    pub base_url: String,
    /// Base URL of the signed-URL listener.
    pub direct_url: String,
    /// Debounced snapshot writer (when a data dir is set).
    pub persister: Option<Persister>,
    /// Exported-history provider.
    pub history_exports: RwLock<Option<Arc<dyn HistoryExports>>>,
    /// Random token making splice sentinels unguessable.
    pub splice_nonce: String,
    /// Largest `first` honoured by paginated fields.
    pub max_page_size: usize,
    /// Registered extension states.
    pub extensions: RwLock<Vec<Arc<dyn Extension>>>,
    /// Extension states read from the snapshot, waiting for their extension to register.
    pub restored_extensions:
        parking_lot::Mutex<std::collections::BTreeMap<String, serde_json::Value>>,
    /// Upload handlers by kind (`run` is built in).
    pub upload_sinks: RwLock<std::collections::HashMap<String, Arc<dyn UploadSink>>>,
    /// The W&B-like budget and costs of the GraphQL endpoint.
    pub profile: RwLock<crate::profile::WandbProfile>,
    /// Its per-key request windows.
    pub budgets: crate::profile::Budgets,
}

impl AppState {
    /// Registers an extension's state, restoring it from the snapshot when one was loaded.
    pub fn register_extension(&self, ext: Arc<dyn Extension>) -> anyhow::Result<()> {
        if let Some(saved) = self.restored_extensions.lock().remove(ext.name()) {
            ext.restore(saved)?;
        }
        self.extensions.write().push(ext);
        Ok(())
    }

    /// The registered extension state of type `T`.
    pub fn extension<T: Extension>(&self) -> Option<Arc<T>> {
        self.extensions
            .read()
            .iter()
            .find_map(|e| Arc::clone(e).as_any().downcast::<T>().ok())
    }

    /// Routes signed uploads to `/_upload/<kind>/…` to `sink`.
    pub fn register_upload_sink(&self, kind: &str, sink: Arc<dyn UploadSink>) {
        self.upload_sinks.write().insert(kind.to_string(), sink);
    }

    /// Current emulator time.
    pub fn now(&self) -> Micros {
        self.clock.now()
    }

    /// Notes that state changed (schedules a snapshot when persistent).
    pub fn mark_dirty(&self) {
        if let Some(p) = &self.persister {
            p.mark_dirty();
        }
    }

    /// Extracts the credential from an `Authorization` header value (Basic `<any>:<key>` or
    /// Bearer) and checks it. Never logs it.
    pub fn authorized(&self, header: Option<&str>) -> bool {
        let Some(header) = header else { return false };
        let key = if let Some(b64) = header
            .strip_prefix("Basic ")
            .or_else(|| header.strip_prefix("basic "))
        {
            let Some(decoded) = base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
            else {
                return false;
            };
            match decoded.split_once(':') {
                Some((_, key)) => key.to_string(),
                None => return false,
            }
        } else if let Some(token) = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
        {
            token.trim().to_string()
        } else {
            return false;
        };
        !key.is_empty() && self.api_keys.read().iter().any(|k| k == &key)
    }

    /// Authenticated download URL of a run file (`File.url`), on the API listener.
    pub fn run_file_url(&self, run: &RunKey, name: &str) -> String {
        format!(
            "{}/files/{}/{}/{}/{}",
            self.base_url,
            encode_segment(&run.entity),
            encode_segment(&run.project),
            encode_segment(&run.name),
            encode_path(name)
        )
    }

    /// Signed, unauthenticated URL of a blob on the direct listener (`directUrl`). `file_name`
    /// only decorates the URL (and the `Content-Disposition`).
    pub fn direct_blob_url(&self, blob: &Blob, file_name: &str) -> String {
        let base = file_name.rsplit('/').next().unwrap_or(file_name);
        let path = format!(
            "/blob/{}/{}",
            encode_segment(blob.key()),
            encode_segment(base)
        );
        format!(
            "{}{}",
            self.direct_url,
            self.signer.sign_path(&path, self.clock.now_secs())
        )
    }

    /// Signed upload URL for a run file (unauthenticated `PUT`).
    pub fn run_file_upload_url(&self, run: &RunKey, name: &str) -> String {
        let path = format!(
            "/_upload/run/{}/{}/{}/{}",
            encode_segment(&run.entity),
            encode_segment(&run.project),
            encode_segment(&run.name),
            encode_path(name)
        );
        format!(
            "{}{}",
            self.base_url,
            self.signer.sign_path(&path, self.clock.now_secs())
        )
    }

    /// Signs any path on the API listener (for extension modules' upload URLs).
    pub fn signed_main_url(&self, path: &str) -> String {
        format!(
            "{}{}",
            self.base_url,
            self.signer.sign_path(path, self.clock.now_secs())
        )
    }

    /// Looks a run up (world read lock held only briefly).
    pub fn run(&self, entity: &str, project: &str, name: &str) -> Option<Arc<RunCell>> {
        self.world.read().run(entity, project, name)
    }

    /// The blob of a run file, if both exist.
    pub fn run_file_blob(
        &self,
        run: &RunCell,
        name: &str,
    ) -> Option<(crate::state::RunFile, Arc<Blob>)> {
        let file = run.record.read().files.get(name).cloned()?;
        let blob = self.blobs.get(&file.blob)?;
        Some((file, blob))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_encoding_round_trips() {
        for name in ["media/images/a b.png", "ünï/çødé?.txt", "x%y#z"] {
            let enc = encode_path(name);
            assert!(
                !enc.contains(' ') && !enc.contains('?') && !enc.contains('#'),
                "{enc}"
            );
            let dec: Vec<String> = enc
                .split('/')
                .map(|s| decode_segment(s).expect("utf8"))
                .collect();
            assert_eq!(dec.join("/"), name);
        }
    }
}
