//! The TLS client configuration of HTTPS storage: rustls with the
//! system's CA store (and an extra CA file for private stores), or, when
//! the node says `sslverify: false`, no verification of the server at all.

use crate::error::{Error, Result};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{ring, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::path::Path;
use std::sync::Arc;

/// The client configuration: `verify` checks the server's certificate
/// against the system's CAs and those of `ca_file` (PEM).
pub fn client_config(verify: bool, ca_file: Option<&Path>) -> Result<Arc<ClientConfig>> {
    let provider = Arc::new(ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::argument(format!("TLS setup failed: {e}")))?;
    let config = if verify {
        builder
            .with_root_certificates(roots(ca_file)?)
            .with_no_client_auth()
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
            .with_no_client_auth()
    };
    Ok(Arc::new(config))
}

/// The system's CAs (as rustls-native-certs finds them, `SSL_CERT_FILE`
/// included), and those of `ca_file`.
fn roots(ca_file: Option<&Path>) -> Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    // A system without a CA store is no error: a CA file may be all it uses.
    let found = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(found.certs);
    if let Some(path) = ca_file {
        let text = std::fs::read(path)
            .map_err(|e| Error::io("could not read the CA file", e).with_path(path))?;
        let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut text.as_slice())
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| Error::io("the CA file is not PEM", e).with_path(path))?;
        if certs.is_empty() {
            return Err(Error::argument("the CA file holds no certificate").with_path(path));
        }
        let (_, bad) = roots.add_parsable_certificates(certs);
        if bad > 0 {
            return Err(Error::argument(format!(
                "{bad} certificate(s) of the CA file could not be used"
            ))
            .with_path(path));
        }
    }
    Ok(roots)
}

/// Accepts any server certificate (`sslverify: false`); signatures are
/// still checked, so the handshake itself is sound.
#[derive(Debug)]
struct NoVerify(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
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
        rustls::crypto::verify_tls12_signature(
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
        rustls::crypto::verify_tls13_signature(
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
