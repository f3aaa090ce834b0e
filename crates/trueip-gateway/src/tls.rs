//! TLS termination with rustls (ring provider) from PEM files.
//!
//! Files are read when the config is loaded and again on every reload (SIGHUP), so a
//! renewed certificate is picked up without a restart; a reload whose files do not
//! load is rejected and the old certificate stays.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;
use trueip::ConfigError;

use crate::config::TlsConfig;

/// Builds an acceptor offering HTTP/2 and HTTP/1.1 by ALPN (`http`), or no ALPN (`tcp`).
pub(crate) fn acceptor(
    files: &TlsConfig,
    at: &str,
    alpn_http: bool,
) -> Result<TlsAcceptor, ConfigError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| {
            ConfigError::new(format!(
                "cannot read certificates from {}: {e}",
                files.cert.display()
            ))
            .hint("point to a PEM file holding the certificate chain, leaf first")
            .at(format!("{at}.cert"))
        })?;
    if certs.is_empty() {
        return Err(
            ConfigError::new(format!("no certificate in {}", files.cert.display()))
                .hint("the file must hold -----BEGIN CERTIFICATE----- blocks")
                .at(format!("{at}.cert")),
        );
    }
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| {
        ConfigError::new(format!(
            "cannot read a private key from {}: {e}",
            files.key.display()
        ))
        .hint("point to a PEM file with a PKCS#8, PKCS#1 (RSA) or SEC1 (EC) private key")
        .at(format!("{at}.key"))
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ConfigError::new(format!("TLS setup failed: {e}")).at(at.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            ConfigError::new(format!("certificate and key do not work together: {e}"))
                .hint("check that the key belongs to the first certificate of the chain")
                .at(at.to_string())
        })?;
    if alpn_http {
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    }
    Ok(TlsAcceptor::from(Arc::new(config)))
}
