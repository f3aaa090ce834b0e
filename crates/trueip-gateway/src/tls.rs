//! TLS with rustls (ring provider) from PEM files: termination on listeners, and the
//! client to an `https://` upstream (verified against `ca_file` or `tls_roots`, with
//! SNI from the URL's host or `server_name`, and an optional client certificate).
//!
//! Files are read when the config is loaded and again on every reload (SIGHUP), so a
//! renewed certificate is picked up without a restart; a reload whose files do not
//! load is rejected and the old certificate stays.

use std::collections::HashMap;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;
use trueip::ConfigError;

use crate::config::{ListenerTls, TlsConfig};

/// TLS 1.2 sessions remembered per listener for resumption (a few hundred bytes each).
const TLS12_SESSIONS: usize = 4096;

/// Builds an acceptor offering HTTP/2 and HTTP/1.1 by ALPN (`http`), or no ALPN (`tcp`),
/// with one certificate, or several chosen by the name the client sends in SNI. `at` is
/// the `listen[i].tls` key.
pub(crate) fn acceptor(
    tls: &ListenerTls,
    at: &str,
    alpn_http: bool,
) -> Result<TlsAcceptor, ConfigError> {
    let mut provider = rustls::crypto::ring::default_provider();
    // The server's order, not the client's: the suites whose key schedule hashes with
    // SHA-256 first (AES-128-GCM, TLS 1.3's mandatory suite, RFC 8446 §9.1; then
    // ChaCha20-Poly1305), AES-256-GCM with SHA-384 last. OpenSSL's clients list AES-256
    // first, and a handshake's key schedule is a few dozen HMACs: SHA-384's blocks are twice
    // as long, and x86's SHA instructions do SHA-256 only. Go's TLS servers order them so on
    // hardware with AES instructions. (A client without them that lists ChaCha20 first gets
    // AES-128-GCM too.)
    provider.cipher_suites.sort_by_key(|s| {
        use rustls::CipherSuite as C;
        matches!(
            s.suite(),
            C::TLS13_AES_256_GCM_SHA384
                | C::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
                | C::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384
        )
    });
    let provider = Arc::new(provider);
    let mut resolver = BySni::default();
    let listed = tls.certs.len() > 1 || tls.certs.iter().any(|c| !c.server_names.is_empty());
    for (j, files) in tls.certs.iter().enumerate() {
        let here = match listed {
            true => format!("{at}[{j}]"),
            false => at.to_string(),
        };
        let (certs, key) = read_pair(files, &format!("{here}.cert"), &format!("{here}.key"))?;
        let signer = provider.key_provider.load_private_key(key).map_err(|e| {
            ConfigError::new(format!("unusable private key in {}: {e}", files.key.display()))
                .hint("use an RSA, ECDSA (P-256, P-384) or Ed25519 key")
                .at(format!("{here}.key"))
        })?;
        let certified = rustls::sign::CertifiedKey::new(certs, signer);
        certified.keys_match().map_err(|e| {
            ConfigError::new(format!("certificate and key do not work together: {e}"))
                .hint("check that the key belongs to the first certificate of the chain")
                .at(here.clone())
        })?;
        let certified = Arc::new(certified);
        if files.server_names.is_empty() {
            resolver.default = Some(certified.clone());
        }
        for name in &files.server_names {
            match name.strip_prefix("*.") {
                Some(parent) => resolver.wildcard.insert(parent.to_string(), certified.clone()),
                None => resolver.exact.insert(name.clone(), certified.clone()),
            };
        }
        resolver.first.get_or_insert(certified);
    }
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ConfigError::new(format!("TLS setup failed: {e}")).at(at.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    config.ignore_client_order = true;
    if alpn_http {
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    }
    // Session resumption, on by default: a returning client skips the certificate signature
    // and the key exchange's second half. TLS 1.3 by stateless tickets (ChaCha20-Poly1305
    // under keys that rotate every 6 hours, so a ticket lives at most 12; shared by every
    // worker, as the acceptor is), TLS 1.2 by a bounded cache of session ids.
    config.ticketer = rustls::crypto::ring::Ticketer::new()
        .map_err(|e| ConfigError::new(format!("TLS session tickets: {e}")).at(at.to_string()))?;
    // One ticket per handshake, full or resumed (rustls sends two by default; OpenSSL, so
    // nginx, one on a resumption). Each handshake hands a fresh ticket, so a client that
    // keeps the newest one resumes every time, as OpenSSL's clients do (they hold one
    // session); the second ticket cost every handshake three `getrandom` calls and an
    // encryption, and the client the decoding of a session it then drops.
    config.send_tls13_tickets = 1;
    config.session_storage = rustls::server::ServerSessionMemoryCache::new(TLS12_SESSIONS);
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// A listener's certificates by SNI: the exact name, else `*.` + the name's parent,
/// else the default (the entry without `server_names`, else the first), as nginx picks
/// a server by name and falls back to its default server.
#[derive(Debug, Default)]
struct BySni {
    exact: HashMap<String, Arc<rustls::sign::CertifiedKey>>,
    /// By the parent a `*.` name covers one label of.
    wildcard: HashMap<String, Arc<rustls::sign::CertifiedKey>>,
    default: Option<Arc<rustls::sign::CertifiedKey>>,
    first: Option<Arc<rustls::sign::CertifiedKey>>,
}

impl rustls::server::ResolvesServerCert for BySni {
    fn resolve(
        &self,
        hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        // rustls hands the name checked and in lower case.
        let named = hello.server_name().and_then(|name| {
            self.exact.get(name).or_else(|| {
                let (_, parent) = name.split_once('.')?;
                self.wildcard.get(parent)
            })
        });
        named.or(self.default.as_ref()).or(self.first.as_ref()).cloned()
    }
}

/// A certificate chain and its private key, from the PEM files `files` names (`cert_key`
/// and `key_key` name the settings in errors).
fn read_pair(
    files: &TlsConfig,
    cert_key: &str,
    key_key: &str,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), ConfigError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| {
            ConfigError::new(format!("cannot read certificates from {}: {e}", files.cert.display()))
                .hint("point to a PEM file holding the certificate chain, leaf first")
                .at(cert_key.to_string())
        })?;
    if certs.is_empty() {
        return Err(ConfigError::new(format!("no certificate in {}", files.cert.display()))
            .hint("the file must hold -----BEGIN CERTIFICATE----- blocks")
            .at(cert_key.to_string()));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| {
        ConfigError::new(format!("cannot read a private key from {}: {e}", files.key.display()))
            .hint("point to a PEM file with a PKCS#8, PKCS#1 (RSA) or SEC1 (EC) private key")
            .at(key_key.to_string())
    })?;
    Ok((certs, key))
}

/// How the gateway opens TLS to an `https://` upstream: the checked client config and the
/// name it sends in SNI and expects in the certificate.
#[derive(Clone)]
pub(crate) struct Client {
    pub(crate) connector: tokio_rustls::TlsConnector,
    pub(crate) name: rustls::pki_types::ServerName<'static>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("name", &self.name).finish_non_exhaustive()
    }
}

/// Where the operating system keeps its bundle of trusted roots, by distribution
/// (Debian and Ubuntu, Fedora and RHEL, openSUSE, Alpine and the BSDs), after
/// `SSL_CERT_FILE`: the places OpenSSL-based tools look.
const SYSTEM_BUNDLES: [&str; 4] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// Reads every certificate of the PEM file `path` into `roots`; `key` names the setting.
fn add_roots(
    roots: &mut rustls::RootCertStore,
    path: &std::path::Path,
    key: &str,
) -> Result<(), ConfigError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| {
            ConfigError::new(format!("cannot read certificates from {}: {e}", path.display()))
                .hint("point to a PEM file of -----BEGIN CERTIFICATE----- blocks")
                .at(key.to_string())
        })?;
    let (added, _ignored) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(ConfigError::new(format!(
            "no usable CA certificate in {}",
            path.display()
        ))
        .hint("the file must hold the PEM certificates of the authorities that sign the upstream's certificate")
        .at(key.to_string()));
    }
    Ok(())
}

/// The roots `upstream` trusts: its `ca_file`, else the `tls_roots` bundle.
fn upstream_roots(
    upstream: &crate::config::UpstreamSettings,
) -> Result<rustls::RootCertStore, ConfigError> {
    use crate::config::TlsRoots;
    let mut roots = rustls::RootCertStore::empty();
    if let Some(path) = &upstream.ca_file {
        add_roots(&mut roots, path, "upstream.ca_file")?;
        return Ok(roots);
    }
    match upstream.tls_roots {
        TlsRoots::Webpki => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        TlsRoots::System => {
            let from_env = std::env::var_os("SSL_CERT_FILE").map(std::path::PathBuf::from);
            let bundle = from_env.or_else(|| {
                SYSTEM_BUNDLES.iter().map(std::path::PathBuf::from).find(|p| p.is_file())
            });
            let Some(bundle) = bundle else {
                return Err(ConfigError::new(format!(
                    "no system bundle of trusted roots: SSL_CERT_FILE is unset and none of {} exists",
                    SYSTEM_BUNDLES.join(", ")
                ))
                .hint("install the ca-certificates package, set SSL_CERT_FILE, or name the CA in upstream.ca_file")
                .at("upstream.tls_roots"));
            };
            add_roots(&mut roots, &bundle, "upstream.tls_roots")?;
        }
    }
    Ok(roots)
}

/// The TLS client to the `https://` upstream at `authority` (`host:port`), as `upstream`
/// configures it: verified against its roots, never without (there is no setting that
/// skips verification). Offers ALPN `h2` when `http2` is set, else `http/1.1`.
pub(crate) fn client(
    upstream: &crate::config::UpstreamSettings,
    authority: &str,
) -> Result<Client, ConfigError> {
    let host = match &upstream.server_name {
        Some(name) => name.as_str(),
        None => {
            let host = authority.rsplit_once(':').map_or(authority, |(h, _)| h);
            host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host)
        }
    };
    let name = rustls::pki_types::ServerName::try_from(host.to_string()).map_err(|e| {
        ConfigError::new(format!("\"{host}\" cannot be a TLS server name: {e}"))
            .hint("set upstream.server_name to the name in the upstream's certificate")
            .at("upstream.server_name")
    })?;
    let roots = upstream_roots(upstream)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ConfigError::new(format!("TLS setup failed: {e}")).at("upstream.url"))?
        .with_root_certificates(roots);
    let mut config = match (&upstream.client_cert, &upstream.client_key) {
        (Some(cert), Some(key)) => {
            let files =
                TlsConfig { cert: cert.clone(), key: key.clone(), server_names: Vec::new() };
            let (certs, key) = read_pair(&files, "upstream.client_cert", "upstream.client_key")?;
            builder.with_client_auth_cert(certs, key).map_err(|e| {
                ConfigError::new(format!("client certificate and key do not work together: {e}"))
                    .hint("check that the key belongs to the first certificate of the chain")
                    .at("upstream.client_key")
            })?
        }
        _ => builder.with_no_client_auth(),
    };
    config.alpn_protocols = match upstream.http2 {
        true => vec![b"h2".to_vec()],
        false => vec![b"http/1.1".to_vec()],
    };
    Ok(Client { connector: tokio_rustls::TlsConnector::from(Arc::new(config)), name })
}
