//! Artifact manifests (`wandb_manifest.json`, version 1; PROTOCOL.md §6.2).

use std::collections::BTreeMap;

use serde::Deserialize;

use super::error::{Error, Result};
use super::types::lenient_u64;

/// A parsed manifest.
#[derive(Clone, Debug, PartialEq)]
pub struct Manifest {
    /// `version` (1 for every manifest the 0.31 SDK writes).
    pub version: i64,
    /// `storagePolicy` (`wandb-storage-policy-v1`).
    pub storage_policy: Option<String>,
    /// `storagePolicyConfig` as JSON (e.g. `{"storageLayout": "V2"}`).
    pub storage_policy_config: serde_json::Value,
    /// Entries keyed by artifact-relative path, in path order.
    pub entries: BTreeMap<String, ManifestEntry>,
}

/// One manifest entry.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ManifestEntry {
    /// Base64 MD5 for stored files; an ETag/URI for references (`extra.alg` may say `XXH128`).
    pub digest: String,
    /// Size in bytes.
    #[serde(default, deserialize_with = "lenient_u64")]
    pub size: Option<u64>,
    /// Reference URI for reference entries (`s3://…`, `https://…`).
    #[serde(default, rename = "ref")]
    pub reference: Option<String>,
    /// The artifact version that first stored these bytes.
    #[serde(default, rename = "birthArtifactID")]
    pub birth_artifact_id: Option<String>,
    /// `extra` object.
    #[serde(default)]
    pub extra: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ManifestWire {
    version: i64,
    #[serde(default)]
    storage_policy: Option<String>,
    #[serde(default)]
    storage_policy_config: serde_json::Value,
    #[serde(default)]
    contents: BTreeMap<String, ManifestEntry>,
}

impl Manifest {
    /// Parses manifest JSON. Unknown keys (`local_path`, `skip_cache`) are ignored, as the SDK
    /// tolerates them.
    pub fn parse(bytes: &[u8]) -> Result<Manifest> {
        let wire: ManifestWire =
            serde_json::from_slice(bytes).map_err(|e| Error::decode("artifact manifest", e))?;
        if wire.version != 1 {
            return Err(Error::decode(
                "artifact manifest",
                format!("unsupported manifest version {}", wire.version),
            ));
        }
        Ok(Manifest {
            version: wire.version,
            storage_policy: wire.storage_policy,
            storage_policy_config: wire.storage_policy_config,
            entries: wire.contents,
        })
    }

    /// The `MANIFEST_MD5` artifact digest: hex MD5 over `"wandb-artifact-manifest-v1\n"` and
    /// `"<path>:<digest>\n"` per entry in path order. Lets callers verify a manifest against
    /// the artifact's `digest`.
    pub fn md5_digest(&self) -> String {
        use md5::{Digest as _, Md5};
        let mut hasher = Md5::new();
        hasher.update(b"wandb-artifact-manifest-v1\n");
        for (path, entry) in &self.entries {
            hasher.update(path.as_bytes());
            hasher.update(b":");
            hasher.update(entry.digest.as_bytes());
            hasher.update(b"\n");
        }
        hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sdk_manifest() {
        let text = br#"{"version": 1, "storagePolicy": "wandb-storage-policy-v1",
          "storagePolicyConfig": {"storageLayout": "V2"},
          "contents": {
            "b/x.txt": {"digest": "sZRqySSS0jR8YjW00mERhA==", "size": 6,
                        "birthArtifactID": "QXJ0aWZhY3Q6Mg==", "skip_cache": false,
                        "local_path": "/tmp/x"},
            "a.txt": {"digest": "https://example.com/x.txt", "ref": "https://example.com/x.txt"}}}"#;
        let m = Manifest::parse(text).unwrap();
        assert_eq!(m.entries.len(), 2);
        let x = &m.entries["b/x.txt"];
        assert_eq!(x.size, Some(6));
        assert_eq!(x.birth_artifact_id.as_deref(), Some("QXJ0aWZhY3Q6Mg=="));
        assert_eq!(
            m.entries["a.txt"].reference.as_deref(),
            Some("https://example.com/x.txt")
        );
        assert_eq!(m.entries.keys().next().unwrap(), "a.txt");
        // Same digest as Python: hashlib.md5(b"wandb-artifact-manifest-v1\n" + entries).hexdigest()
        assert_eq!(m.md5_digest(), "4ab425ac6f1c35737da9c6cf39fcb6d5");
        assert!(Manifest::parse(br#"{"version": 2, "contents": {}}"#).is_err());
        assert!(Manifest::parse(b"not json").is_err());
    }
}
