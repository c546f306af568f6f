//! Artifact manifests (`wandb_manifest.json`, version 1) and the artifact digest.
//!
//! The SDK uploads the manifest itself; the emulator parses it at commit time to learn the
//! version's files (PROTOCOL.md §6.2). Seeded and Rust-API versions get a manifest rendered here,
//! in the same shape the 0.31.0 SDK writes, so readers cannot tell them apart.

use std::collections::BTreeMap;

use base64::Engine as _;
use md5::{Digest as _, Md5};
use serde_json::{Map, Value};

use crate::blobs::hex;

/// The header hashed before the entries (`MANIFEST_MD5`).
pub const DIGEST_HEADER: &str = "wandb-artifact-manifest-v1\n";

/// One entry of a manifest's `contents`.
#[derive(Debug, Clone, PartialEq)]
pub struct ManifestEntry {
    /// Base64 MD5 for stored files; an ETag/URI for references; xxh128 when `extra.alg`.
    pub digest: String,
    /// Size in bytes, when known.
    pub size: Option<u64>,
    /// Reference URI (`ref`), for entries whose bytes live elsewhere.
    pub reference: Option<String>,
    /// Id of the artifact version that first stored these bytes.
    pub birth_artifact_id: Option<String>,
    /// `extra` object, kept verbatim.
    pub extra: Option<Value>,
}

/// A parsed manifest: its storage settings and entries by artifact-relative path.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    /// `storagePolicy` (`wandb-storage-policy-v1`).
    pub storage_policy: String,
    /// `storagePolicyConfig`, verbatim.
    pub storage_policy_config: Value,
    /// Entries by path (sorted, as the digest needs them).
    pub entries: BTreeMap<String, ManifestEntry>,
}

/// Why a manifest was refused.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// Not JSON.
    #[error("manifest is not JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// JSON of the wrong shape.
    #[error("manifest is malformed: {0}")]
    Shape(String),
}

impl Manifest {
    /// Parses the JSON the SDK uploads (unknown keys such as `local_path` are ignored).
    pub fn parse(bytes: &[u8]) -> Result<Manifest, ManifestError> {
        let value: Value = serde_json::from_slice(bytes)?;
        let obj = value
            .as_object()
            .ok_or_else(|| ManifestError::Shape("not an object".into()))?;
        match obj.get("version").and_then(Value::as_u64) {
            Some(1) => {}
            other => {
                return Err(ManifestError::Shape(format!(
                    "unsupported manifest version {other:?} (only 1 is known)"
                )));
            }
        }
        let contents = obj
            .get("contents")
            .and_then(Value::as_object)
            .ok_or_else(|| ManifestError::Shape("`contents` is missing".into()))?;
        let mut entries = BTreeMap::new();
        for (path, entry) in contents {
            let e = entry
                .as_object()
                .ok_or_else(|| ManifestError::Shape(format!("entry {path:?} is not an object")))?;
            let digest = e
                .get("digest")
                .and_then(Value::as_str)
                .ok_or_else(|| ManifestError::Shape(format!("entry {path:?} has no digest")))?;
            entries.insert(
                path.clone(),
                ManifestEntry {
                    digest: digest.to_string(),
                    size: e.get("size").and_then(Value::as_u64),
                    reference: e.get("ref").and_then(Value::as_str).map(String::from),
                    birth_artifact_id: e
                        .get("birthArtifactID")
                        .and_then(Value::as_str)
                        .map(String::from),
                    extra: e.get("extra").filter(|v| !v.is_null()).cloned(),
                },
            );
        }
        Ok(Manifest {
            storage_policy: obj
                .get("storagePolicy")
                .and_then(Value::as_str)
                .unwrap_or("wandb-storage-policy-v1")
                .to_string(),
            storage_policy_config: obj
                .get("storagePolicyConfig")
                .cloned()
                .unwrap_or_else(|| serde_json::json!({"storageLayout": "V2"})),
            entries,
        })
    }

    /// A V2-layout manifest over `entries`.
    pub fn new_v2(entries: BTreeMap<String, ManifestEntry>) -> Manifest {
        Manifest {
            storage_policy: "wandb-storage-policy-v1".into(),
            storage_policy_config: serde_json::json!({"storageLayout": "V2"}),
            entries,
        }
    }

    /// Renders the manifest JSON as the SDK writes it.
    pub fn to_json(&self) -> String {
        let contents: Map<String, Value> = self
            .entries
            .iter()
            .map(|(path, e)| {
                let mut m = Map::new();
                m.insert("digest".into(), Value::String(e.digest.clone()));
                if let Some(r) = &e.reference {
                    m.insert("ref".into(), Value::String(r.clone()));
                }
                if let Some(size) = e.size {
                    m.insert("size".into(), Value::from(size));
                }
                if let Some(b) = &e.birth_artifact_id {
                    m.insert("birthArtifactID".into(), Value::String(b.clone()));
                }
                if let Some(x) = &e.extra {
                    m.insert("extra".into(), x.clone());
                }
                (path.clone(), Value::Object(m))
            })
            .collect();
        serde_json::json!({
            "version": 1,
            "storagePolicy": self.storage_policy,
            "storagePolicyConfig": self.storage_policy_config,
            "contents": contents,
        })
        .to_string()
    }

    /// The `MANIFEST_MD5` artifact digest (hex).
    pub fn digest(&self) -> String {
        manifest_digest(
            self.entries
                .iter()
                .map(|(p, e)| (p.as_str(), e.digest.as_str())),
        )
    }

    /// Sum of the entries' sizes (what `Artifact.size` reports).
    pub fn total_size(&self) -> u64 {
        self.entries.values().filter_map(|e| e.size).sum()
    }
}

/// `MANIFEST_MD5` digest: hex MD5 over [`DIGEST_HEADER`] then `"<path>:<digest>\n"` for every
/// entry in path order (byte order, which is also the SDK's code-point order).
pub fn manifest_digest<'a>(entries: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut sorted: Vec<(&str, &str)> = entries.into_iter().collect();
    sorted.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let mut hasher = Md5::new();
    hasher.update(DIGEST_HEADER.as_bytes());
    for (path, digest) in sorted {
        hasher.update(path.as_bytes());
        hasher.update(b":");
        hasher.update(digest.as_bytes());
        hasher.update(b"\n");
    }
    hex(&hasher.finalize())
}

/// Base64 MD5 → hex, when the text is the base64 of 16 bytes.
pub fn b64_md5_to_hex(b64: &str) -> Option<String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    (bytes.len() == 16).then(|| hex(&bytes))
}

/// Hex MD5 → base64, when the text is 32 hex digits.
pub fn hex_md5_to_b64(text: &str) -> Option<String> {
    let text = text.trim().trim_matches('"');
    if text.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, chunk) in text.as_bytes().chunks(2).enumerate() {
        out[i] = u8::from_str_radix(std::str::from_utf8(chunk).ok()?, 16).ok()?;
    }
    Some(base64::engine::general_purpose::STANDARD.encode(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn md5_b64(bytes: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(Md5::digest(bytes))
    }

    #[test]
    fn digest_matches_the_sdk_definition() {
        // Spelled out independently of `manifest_digest`: header, then sorted "path:digest\n".
        let a = md5_b64(b"hello\n");
        let b = md5_b64(b"world\n");
        let text = format!("wandb-artifact-manifest-v1\na.txt:{a}\nsub/b.txt:{b}\n");
        let expected = hex(&Md5::digest(text.as_bytes()));
        // Input order must not matter.
        assert_eq!(
            manifest_digest([("sub/b.txt", b.as_str()), ("a.txt", a.as_str())]),
            expected
        );
        // Known vectors: the first from Python's hashlib over the spelled-out text, the second
        // from the 0.31.0 SDK's own `ArtifactManifestV1.digest()`.
        assert_eq!(
            manifest_digest([("a.txt", "sZRqySSS0jR8YjW00mERhA==")]),
            "df2baf4982f9ccdd99de4a5a8b016e45"
        );
        assert_eq!(
            manifest_digest([
                ("sub/b.txt", "XrY7u+Ae7tCTyyK7j1rNww=="),
                ("a.txt", "sZRqySSS0jR8YjW00mERhA=="),
            ]),
            "983cb8b1402158493e41d934dbe1a973"
        );
        // Empty artifact: just the header.
        assert_eq!(
            manifest_digest(std::iter::empty()),
            hex(&Md5::digest(DIGEST_HEADER.as_bytes()))
        );
        // Byte order: "B" < "a" < "é".
        let d = manifest_digest([("é", "x"), ("a", "y"), ("B", "z")]);
        let text = "wandb-artifact-manifest-v1\nB:z\na:y\né:x\n";
        assert_eq!(d, hex(&Md5::digest(text.as_bytes())));
    }

    #[test]
    fn parses_what_the_sdk_uploads_and_round_trips() {
        let json = r#"{"version": 1, "storagePolicy": "wandb-storage-policy-v1",
            "storagePolicyConfig": {"storageLayout": "V2"},
            "contents": {
              "a.txt": {"digest": "sZRqySSS0jR8YjW00mERhA==", "size": 6,
                        "birthArtifactID": "QXJ0aWZhY3Q6Mg==", "skip_cache": false,
                        "local_path": "/tmp/x"},
              "x.txt": {"digest": "https://example.com/x.txt", "ref": "https://example.com/x.txt"}}}"#;
        let m = Manifest::parse(json.as_bytes()).expect("parses");
        assert_eq!(m.entries.len(), 2);
        assert_eq!(m.entries["a.txt"].size, Some(6));
        assert_eq!(
            m.entries["a.txt"].birth_artifact_id.as_deref(),
            Some("QXJ0aWZhY3Q6Mg==")
        );
        assert_eq!(
            m.entries["x.txt"].reference.as_deref(),
            Some("https://example.com/x.txt")
        );
        assert_eq!(m.total_size(), 6);
        let again = Manifest::parse(m.to_json().as_bytes()).expect("round trip");
        assert_eq!(again, m);
        assert!(Manifest::parse(b"[]").is_err());
        assert!(Manifest::parse(br#"{"version": 2, "contents": {}}"#).is_err());
        assert!(Manifest::parse(br#"{"version": 1, "contents": {"a": {}}}"#).is_err());
    }

    #[test]
    fn md5_encodings_convert() {
        let b64 = md5_b64(b"hello");
        let hex_text = b64_md5_to_hex(&b64).expect("16 bytes");
        assert_eq!(hex_text, "5d41402abc4b2a76b9719d911017c592");
        assert_eq!(hex_md5_to_b64(&hex_text).as_deref(), Some(b64.as_str()));
        assert_eq!(hex_md5_to_b64(&format!("\"{hex_text}\"")), Some(b64));
        assert_eq!(b64_md5_to_hex("aGVsbG8="), None);
        assert_eq!(hex_md5_to_b64("zz"), None);
    }
}
