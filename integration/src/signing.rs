//! Signed, expiring URLs (the emulator's stand-in for presigned storage URLs).
//!
//! A signed URL is `<base><path>?exp=<unix seconds>&sig=<hex HMAC-SHA256(path \n exp)>`. The path
//! is signed exactly as it appears in the URL (percent-encoded), so verification needs only the
//! request's raw path and query. Signed URLs need no credentials: run-file `directUrl`s and
//! upload URLs use them, and the artifacts module can mint its own with [`Signer::sign_path`].
//!
//! Expiry is checked against the emulator clock (which tests may advance). All outstanding URLs
//! can be revoked at once with [`Signer::rotate`].

use std::sync::atomic::{AtomicU64, Ordering};

use hmac::{Hmac, Mac};
use parking_lot::RwLock;
use sha2::Sha256;

use crate::blobs::hex;

type HmacSha256 = Hmac<Sha256>;

/// Why a signed URL was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// `exp`/`sig` missing or malformed, or the signature does not match.
    #[error("invalid signature")]
    Invalid,
    /// The signature was valid but its expiry time has passed.
    #[error("signed URL expired")]
    Expired,
}

/// Mints and verifies signed URLs.
#[derive(Debug)]
pub struct Signer {
    secret: RwLock<[u8; 32]>,
    ttl_secs: AtomicU64,
}

impl Signer {
    /// A signer with the given secret and default lifetime of new URLs.
    pub fn new(secret: [u8; 32], ttl_secs: u64) -> Self {
        Self {
            secret: RwLock::new(secret),
            ttl_secs: AtomicU64::new(ttl_secs),
        }
    }

    /// The current secret (persisted so URLs survive a restart).
    pub fn secret(&self) -> [u8; 32] {
        *self.secret.read()
    }

    /// Lifetime of newly minted URLs, in seconds.
    pub fn ttl_secs(&self) -> u64 {
        self.ttl_secs.load(Ordering::Relaxed)
    }

    /// Changes the lifetime of URLs minted from now on.
    pub fn set_ttl_secs(&self, ttl: u64) {
        self.ttl_secs.store(ttl, Ordering::Relaxed);
    }

    /// Replaces the secret: every URL minted before becomes invalid (403).
    pub fn rotate(&self) {
        *self.secret.write() = rand::random();
    }

    fn mac(&self, path: &str, exp: u64) -> String {
        let secret = self.secret.read();
        // HMAC accepts keys of any length, so this cannot fail.
        let mut mac = <HmacSha256 as Mac>::new_from_slice(&secret[..])
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(path.as_bytes());
        mac.update(b"\n");
        mac.update(exp.to_string().as_bytes());
        hex(&mac.finalize().into_bytes())
    }

    /// Returns `path?exp=…&sig=…` valid for the configured TTL from `now_secs`.
    pub fn sign_path(&self, path: &str, now_secs: u64) -> String {
        let exp = now_secs.saturating_add(self.ttl_secs());
        format!("{path}?exp={exp}&sig={}", self.mac(path, exp))
    }

    /// Verifies a request's raw path and query string at time `now_secs`.
    pub fn verify(
        &self,
        path: &str,
        query: Option<&str>,
        now_secs: u64,
    ) -> Result<(), SignatureError> {
        let mut exp = None;
        let mut sig = None;
        for pair in query.unwrap_or("").split('&') {
            match pair.split_once('=') {
                Some(("exp", v)) => exp = v.parse::<u64>().ok(),
                Some(("sig", v)) => sig = Some(v),
                _ => {}
            }
        }
        let (Some(exp), Some(sig)) = (exp, sig) else {
            return Err(SignatureError::Invalid);
        };
        let expected = self.mac(path, exp);
        // Constant-time comparison is not needed for a test server, but costs nothing.
        let equal = expected.len() == sig.len()
            && expected
                .bytes()
                .zip(sig.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
        if !equal {
            return Err(SignatureError::Invalid);
        }
        if now_secs > exp {
            return Err(SignatureError::Expired);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(url: &str) -> (&str, &str) {
        url.split_once('?').expect("has query")
    }

    #[test]
    fn valid_until_expiry_then_expired() {
        let signer = Signer::new([7; 32], 60);
        let url = signer.sign_path("/blob/md5-abc/x.txt", 1000);
        let (path, query) = split(&url);
        assert_eq!(signer.verify(path, Some(query), 1000), Ok(()));
        assert_eq!(signer.verify(path, Some(query), 1060), Ok(()));
        assert_eq!(
            signer.verify(path, Some(query), 1061),
            Err(SignatureError::Expired)
        );
    }

    #[test]
    fn tampering_and_rotation_invalidate() {
        let signer = Signer::new([7; 32], 60);
        let url = signer.sign_path("/blob/a", 1000);
        let (_, query) = split(&url);
        assert_eq!(
            signer.verify("/blob/b", Some(query), 1000),
            Err(SignatureError::Invalid)
        );
        let longer = query.replace("exp=1060", "exp=9999");
        assert_eq!(
            signer.verify("/blob/a", Some(&longer), 1000),
            Err(SignatureError::Invalid)
        );
        assert_eq!(
            signer.verify("/blob/a", None, 1000),
            Err(SignatureError::Invalid)
        );
        signer.rotate();
        assert_eq!(
            signer.verify("/blob/a", Some(query), 1000),
            Err(SignatureError::Invalid)
        );
    }
}
