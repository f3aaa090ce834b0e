//! The HTTP/1.1 client of `trueip audit`: one connection per request, to the one address the
//! URL's host resolved to at the start (a later DNS answer cannot send a probe elsewhere),
//! redirects never followed, every response read within a time limit and a size bound.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{ACCEPT, HOST, USER_AGENT};
use http::{HeaderMap, HeaderName, HeaderValue, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;

/// The most of a response body read: enough for any page that shows an address.
pub(crate) const MAX_BODY: usize = 1024 * 1024;

/// Where every request goes.
pub(crate) struct Target {
    /// The URL as given.
    pub(crate) url: String,
    /// The address the host resolved to, once.
    pub(crate) addr: SocketAddr,
    /// `Host:` (the URL's authority, without userinfo).
    authority: HeaderValue,
    /// The origin-form request target: path and query.
    path: Uri,
    tls: Option<(tokio_rustls::TlsConnector, ServerName<'static>)>,
}

/// A response: status, headers, and at most [`MAX_BODY`] bytes of body.
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

impl Target {
    /// Parses `url` (http or https, no userinfo, no fragment), resolves its host once, and
    /// for https loads the roots (`ca`, else the system's bundle).
    pub(crate) async fn new(
        url: &str,
        ca: Option<&Path>,
        timeout: Duration,
    ) -> Result<Target, String> {
        let uri: Uri = url.parse().map_err(|e| {
            format!("invalid URL {url:?}: {e}; expected http://host[:port]/path or https://...")
        })?;
        let https = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            Some(other) => {
                return Err(format!(
                    "invalid URL {url:?}: scheme {other:?}; trueip audit speaks http and https"
                ));
            }
            None => {
                return Err(format!(
                    "invalid URL {url:?}: no scheme; write http://{url} or https://{url}"
                ));
            }
        };
        let authority = uri.authority().ok_or_else(|| format!("invalid URL {url:?}: no host"))?;
        if authority.as_str().contains('@') {
            return Err(format!(
                "invalid URL {url:?}: credentials in the URL are not sent; remove `user@`"
            ));
        }
        let host = authority.host();
        if host.is_empty() {
            return Err(format!("invalid URL {url:?}: no host"));
        }
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        let bare_host = host.trim_start_matches('[').trim_end_matches(']');
        let addr = tokio::time::timeout(timeout, resolve(bare_host, port))
            .await
            .unwrap_or_else(|_| {
                Err(format!("no answer within {} s (--timeout)", timeout.as_secs_f64()))
            })
            .map_err(|e| format!("cannot resolve {host:?} (from {url:?}): {e}"))?;
        let path: Uri = uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .parse()
            .map_err(|e| format!("invalid URL {url:?}: path: {e}"))?;
        let tls = if https {
            let name = ServerName::try_from(bare_host.to_owned())
                .map_err(|e| format!("invalid URL {url:?}: host {host:?} as a TLS name: {e}"))?;
            Some((connector(ca)?, name))
        } else {
            if ca.is_some() {
                return Err(format!("--ca is for https URLs; {url:?} is http"));
            }
            None
        };
        Ok(Target {
            url: url.to_owned(),
            addr,
            authority: HeaderValue::from_str(authority.as_str())
                .map_err(|e| format!("invalid URL {url:?}: host: {e}"))?,
            path,
            tls,
        })
    }

    /// One GET with `lines` added (in order; a name may repeat), within `timeout` from
    /// connecting to the last body byte read.
    pub(crate) async fn get(
        &self,
        lines: &[(&str, &str)],
        timeout: Duration,
    ) -> Result<Answer, String> {
        let mut request = Request::get(self.path.clone())
            .body(Empty::<Bytes>::new())
            .map_err(|e| format!("cannot build the request: {e}"))?;
        let headers = request.headers_mut();
        headers.insert(HOST, self.authority.clone());
        headers.insert(
            USER_AGENT,
            HeaderValue::from_static(concat!("trueip-audit/", env!("CARGO_PKG_VERSION"))),
        );
        // trueip's whoami page answers JSON to this; other pages ignore it.
        headers.insert(
            ACCEPT,
            HeaderValue::from_static("application/json, text/plain;q=0.9, */*;q=0.8"),
        );
        for (name, value) in lines {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| format!("header name {name:?}: {e}"))?;
            let value =
                HeaderValue::from_str(value).map_err(|e| format!("header value {value:?}: {e}"))?;
            headers.append(name, value);
        }
        match tokio::time::timeout(timeout, self.exchange(request)).await {
            Ok(answer) => answer,
            Err(_) => Err(format!(
                "no complete answer from {} within {} s (--timeout)",
                self.addr,
                timeout.as_secs_f64()
            )),
        }
    }

    async fn exchange(&self, request: Request<Empty<Bytes>>) -> Result<Answer, String> {
        let tcp = TcpStream::connect(self.addr)
            .await
            .map_err(|e| format!("cannot connect to {}: {e}", self.addr))?;
        match &self.tls {
            None => send(TokioIo::new(tcp), request).await,
            Some((connector, name)) => {
                let tls = connector.connect(name.clone(), tcp).await.map_err(|e| {
                    format!("TLS with {} failed: {e} (a private CA: --ca FILE)", self.addr)
                })?;
                send(TokioIo::new(tls), request).await
            }
        }
    }
}

async fn send<T>(io: TokioIo<T>, request: Request<Empty<Bytes>>) -> Result<Answer, String>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| format!("HTTP handshake: {e}"))?;
    // The connection is driven beside the request and dropped with it: `select` ends both.
    let response = async {
        let response =
            sender.send_request(request).await.map_err(|e| format!("HTTP request: {e}"))?;
        let (parts, body) = response.into_parts();
        let body = Limited::new(body, MAX_BODY)
            .collect()
            .await
            .map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    format!("the response body is larger than {MAX_BODY} bytes; trueip audit reads no more")
                } else {
                    format!("reading the response body: {e}")
                }
            })?
            .to_bytes();
        Ok(Answer { status: parts.status, headers: parts.headers, body })
    };
    tokio::pin!(response);
    tokio::select! {
        answer = &mut response => answer,
        ended = connection => match ended {
            // The connection ended first: the answer may still be complete (Connection: close).
            Ok(()) => response.await,
            Err(e) => Err(format!("HTTP connection: {e}")),
        },
    }
}

/// The first address `host:port` resolves to.
async fn resolve(host: &str, port: u16) -> Result<SocketAddr, String> {
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    let mut addrs = tokio::net::lookup_host((host, port)).await.map_err(|e| e.to_string())?;
    addrs.next().ok_or_else(|| "no address".to_owned())
}

/// A TLS connector trusting `ca` (PEM), else the system's CA bundle.
fn connector(ca: Option<&Path>) -> Result<tokio_rustls::TlsConnector, String> {
    let system = [
        "/etc/ssl/certs/ca-certificates.crt",
        "/etc/pki/tls/certs/ca-bundle.crt",
        "/etc/ssl/cert.pem",
    ];
    let env = std::env::var_os("SSL_CERT_FILE").map(std::path::PathBuf::from);
    let file = match (ca, env) {
        (Some(ca), _) => ca.to_path_buf(),
        (None, Some(env)) => env,
        (None, None) => system
            .iter()
            .map(Path::new)
            .find(|p| p.is_file())
            .ok_or_else(|| {
                format!("no CA bundle found ({}); give one with --ca FILE", system.join(", "))
            })?
            .to_path_buf(),
    };
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(&file)
        .map_err(|e| format!("cannot read CA certificates from {}: {e}", file.display()))?;
    for cert in certs {
        let cert = cert.map_err(|e| format!("bad certificate in {}: {e}", file.display()))?;
        // A bundle may hold certificates rustls cannot use; the rest still count.
        let _ = roots.add(cert);
    }
    if roots.is_empty() {
        return Err(format!("no usable CA certificate in {}", file.display()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}
