//! TLS to an external server, with libpq's `sslmode` meanings.
//!
//! | `sslmode` | wandbfs |
//! |---|---|
//! | `disable` | plain TCP |
//! | `prefer` (default), `require` | TLS when the server offers it (`require`: or fail), **without** checking the certificate — what libpq does, and what Debian's default self-signed ("snakeoil") certificates need |
//! | `verify-ca`, `verify-full` | TLS, the certificate chain checked against `sslrootcert` (a PEM file) or else the platform's roots, and the host name checked (both modes; `verify-ca` is therefore as strict as `verify-full`) |
//!
//! `tokio_postgres` itself only knows `disable`/`prefer`/`require` and no `sslrootcert`, so
//! [`super::DatabaseUrl`] takes those out of the URL and keeps them as a [`TlsPolicy`].
//! Unix-socket connections never use TLS. The crypto provider is rustls' aws-lc-rs.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::error::{MirrorError, Result};

/// How to secure connections to an external server.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum TlsPolicy {
    /// `sslmode=disable`: no TLS.
    Disable,
    /// `sslmode=prefer`/`require`: encrypt, do not authenticate the server (libpq semantics).
    #[default]
    Encrypt,
    /// `sslmode=verify-ca`/`verify-full`: encrypt and check the certificate and host name.
    Verify {
        /// `sslrootcert`: trust only these PEM certificates (else the platform's roots).
        root_cert: Option<PathBuf>,
    },
}

/// A `tokio_postgres` TLS connector for `policy` (`None` for [`TlsPolicy::Disable`]).
pub fn connector(policy: &TlsPolicy) -> Result<Option<MakeRustlsConnect>> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error(format!("TLS setup: {e}")))?;
    let config = match policy {
        TlsPolicy::Disable => return Ok(None),
        TlsPolicy::Encrypt => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(EncryptOnly(provider)))
            .with_no_client_auth(),
        TlsPolicy::Verify { root_cert } => {
            let roots = match root_cert {
                Some(path) => roots_from_file(path)?,
                None => platform_roots()?,
            };
            builder.with_root_certificates(roots).with_no_client_auth()
        }
    };
    Ok(Some(MakeRustlsConnect::new(config)))
}

fn tls_error(reason: String) -> MirrorError {
    MirrorError::InvalidUrl { reason }
}

fn roots_from_file(path: &Path) -> Result<rustls::RootCertStore> {
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| tls_error(format!("sslrootcert {}: {e}", path.display())))?;
    for cert in certs {
        let cert = cert.map_err(|e| tls_error(format!("sslrootcert {}: {e}", path.display())))?;
        roots
            .add(cert)
            .map_err(|e| tls_error(format!("sslrootcert {}: {e}", path.display())))?;
    }
    if roots.is_empty() {
        return Err(tls_error(format!(
            "sslrootcert {} holds no certificate",
            path.display()
        )));
    }
    Ok(roots)
}

fn platform_roots() -> Result<rustls::RootCertStore> {
    let loaded = rustls_native_certs::load_native_certs();
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(loaded.certs);
    if roots.is_empty() {
        return Err(tls_error(
            "sslmode=verify-full: no trusted root certificates found on this system; install \
             ca-certificates or pass sslrootcert=/path/to/ca.pem"
                .to_string(),
        ));
    }
    Ok(roots)
}

/// libpq's `sslmode=require`: any certificate is accepted, but the handshake signatures are
/// still verified, so the session is encrypted with the key of whoever presented it.
#[derive(Debug)]
struct EncryptOnly(Arc<CryptoProvider>);

impl ServerCertVerifier for EncryptOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
