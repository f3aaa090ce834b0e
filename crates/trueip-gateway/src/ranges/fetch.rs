//! Downloads of provider lists: HTTPS with the Mozilla roots (webpki-roots), bounded in
//! size, time and redirects.
//!
//! Plain `http://` is refused except to a loopback address: a list that decides whom to
//! trust for client addresses must not cross a network unauthenticated, while a mirror
//! on the same machine (and the tests' servers) never leaves it.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Uri, header};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// The largest list accepted, read or fetched (the size check then holds a list near it
/// for `--force`).
pub(crate) const MAX_BYTES: u64 = trueip::config::MAX_PROVIDER_FILE_BYTES;
/// Redirects followed before giving up (a loop ends here).
pub(crate) const MAX_REDIRECTS: usize = 5;

/// A download's bounds.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Bounds {
    /// For the whole download, redirects included.
    pub(crate) timeout: Duration,
    /// Body bytes.
    pub(crate) max_bytes: u64,
}

/// Fetches `url`, following redirects; `progress` hears bytes received and the length
/// the server announced.
pub(crate) async fn get(
    url: &str,
    bounds: Bounds,
    progress: &mut (dyn FnMut(u64, Option<u64>) + Send),
) -> Result<Vec<u8>, String> {
    match tokio::time::timeout(bounds.timeout, follow(url, bounds, progress)).await {
        Ok(result) => result,
        Err(_) => Err(format!(
            "{url}: no complete answer within {:?} (raise [ranges] timeout or --timeout for a slow mirror)",
            bounds.timeout
        )),
    }
}

enum Answer {
    Body(Vec<u8>),
    Redirect(String),
}

async fn follow(
    url: &str,
    bounds: Bounds,
    progress: &mut (dyn FnMut(u64, Option<u64>) + Send),
) -> Result<Vec<u8>, String> {
    let mut uri: Uri = url.parse().map_err(|e| format!("invalid URL \"{url}\": {e}"))?;
    for _ in 0..=MAX_REDIRECTS {
        let target = Target::of(&uri)?;
        let answer = match target.tls {
            true => {
                let tcp = target.connect().await?;
                let name = rustls::pki_types::ServerName::try_from(target.host.clone())
                    .map_err(|e| format!("{uri}: invalid server name: {e}"))?;
                let tls = tokio_rustls::TlsConnector::from(client_config()?)
                    .connect(name, tcp)
                    .await
                    .map_err(|e| format!("{uri}: TLS: {e}"))?;
                exchange(tls, &uri, &target, bounds, progress).await?
            }
            false => {
                let tcp = target.connect().await?;
                exchange(tcp, &uri, &target, bounds, progress).await?
            }
        };
        match answer {
            Answer::Body(body) => return Ok(body),
            Answer::Redirect(location) => {
                let next = redirect(&uri, &location)?;
                if target.tls && next.scheme_str() != Some("https") {
                    return Err(format!(
                        "{uri}: redirected from https to {next}: refused (a list must not lose its TLS)"
                    ));
                }
                uri = next;
            }
        }
    }
    Err(format!("{url}: more than {MAX_REDIRECTS} redirects (a redirect loop?)"))
}

/// Where a URL connects to.
struct Target {
    host: String,
    port: u16,
    tls: bool,
}

impl Target {
    fn of(uri: &Uri) -> Result<Target, String> {
        let host = uri
            .host()
            .ok_or_else(|| format!("{uri}: no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let tls = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => {
                let loopback = host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
                if !loopback {
                    return Err(format!(
                        "{uri}: plain http is refused for a list that decides whom to trust \
                         (hint: use https://, or download it another way and give the file)"
                    ));
                }
                false
            }
            _ => {
                return Err(format!("{uri}: only https:// URLs (or a file path) are read"));
            }
        };
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        Ok(Target { host, port, tls })
    }

    async fn connect(&self) -> Result<TcpStream, String> {
        TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| format!("cannot connect to {}:{}: {e}", self.host, self.port))
    }
}

/// A redirect's target, relative to the URL that answered.
fn redirect(from: &Uri, location: &str) -> Result<Uri, String> {
    let to: Uri =
        location.parse().map_err(|e| format!("{from}: invalid redirect \"{location}\": {e}"))?;
    if to.scheme().is_some() {
        return Ok(to);
    }
    let mut parts = from.clone().into_parts();
    parts.path_and_query = to.path_and_query().cloned();
    Uri::from_parts(parts).map_err(|e| format!("{from}: invalid redirect \"{location}\": {e}"))
}

/// One request and its answer over `io`.
async fn exchange<S>(
    io: S,
    uri: &Uri,
    target: &Target,
    bounds: Bounds,
    progress: &mut (dyn FnMut(u64, Option<u64>) + Send),
) -> Result<Answer, String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| format!("{uri}: {e}"))?;
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    let default_port = if target.tls { 443 } else { 80 };
    let host = match (target.port == default_port, target.host.contains(':')) {
        (true, false) => target.host.clone(),
        (true, true) => format!("[{}]", target.host),
        (false, false) => format!("{}:{}", target.host, target.port),
        (false, true) => format!("[{}]:{}", target.host, target.port),
    };
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let request = Request::get(path)
        .header(header::HOST, host)
        .header(header::USER_AGENT, concat!("trueip/", env!("CARGO_PKG_VERSION")))
        .header(header::ACCEPT, "*/*")
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("{uri}: {e}"))?;
    let result = async {
        let response = sender.send_request(request).await.map_err(|e| format!("{uri}: {e}"))?;
        let status = response.status();
        if status.is_redirection() {
            let location = response
                .headers()
                .get(header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| format!("{uri}: HTTP {status} without a Location"))?;
            return Ok(Answer::Redirect(location.to_string()));
        }
        if !status.is_success() {
            return Err(format!("{uri}: HTTP {status}"));
        }
        let announced = response
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if announced.is_some_and(|n| n > bounds.max_bytes) {
            return Err(too_large(uri, bounds));
        }
        let mut body = response.into_body();
        let mut out = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| format!("{uri}: the body broke off: {e}"))?;
            if let Some(data) = frame.data_ref() {
                if out.len() as u64 + data.len() as u64 > bounds.max_bytes {
                    return Err(too_large(uri, bounds));
                }
                out.extend_from_slice(data);
                progress(out.len() as u64, announced);
            }
        }
        if announced.is_some_and(|n| n != out.len() as u64) {
            return Err(format!(
                "{uri}: the body ended after {} of {} bytes",
                out.len(),
                announced.unwrap_or_default()
            ));
        }
        Ok(Answer::Body(out))
    }
    .await;
    driver.abort();
    result
}

fn too_large(uri: &Uri, bounds: Bounds) -> String {
    format!("{uri}: larger than {} bytes, far past any provider's list", bounds.max_bytes)
}

/// The TLS client: ring, the Mozilla roots (a download is rare: built for each).
fn client_config() -> Result<Arc<rustls::ClientConfig>, String> {
    let roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS set-up: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_to_loopback() {
        let of = |url: &str| Target::of(&url.parse::<Uri>().unwrap());
        assert!(!of("http://127.0.0.1:8080/x").unwrap().tls);
        assert!(!of("http://[::1]/x").unwrap().tls);
        assert_eq!(of("https://ip-ranges.amazonaws.com/ip-ranges.json").unwrap().port, 443);
        for refused in ["http://192.0.2.1/x", "http://localhost/x", "ftp://127.0.0.1/x"] {
            assert!(of(refused).is_err(), "{refused}");
        }
    }

    #[test]
    fn redirects_resolve_against_the_url_that_answered() {
        let from: Uri = "https://example.com/a/b?x=1".parse().unwrap();
        assert_eq!(redirect(&from, "/c").unwrap().to_string(), "https://example.com/c");
        assert_eq!(
            redirect(&from, "https://mirror.example/d").unwrap().to_string(),
            "https://mirror.example/d"
        );
        assert!(redirect(&from, "not a uri at all").is_err());
    }
}
