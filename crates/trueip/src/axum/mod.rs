//! axum extractors for the client [`ClientIpLayer`](crate::tower::ClientIpLayer)
//! decided, and a listener that reads the PROXY protocol for `axum::serve` (feature `axum`).
//!
//! ```no_run
//! use std::net::SocketAddr;
//!
//! use axum::{Router, routing::get};
//! use trueip::axum::{ClientIp, ClientResolution};
//! use trueip::{Policy, tower::ClientIpLayer};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! // nginx or an ALB in 10.0.0.0/16 appends the client to X-Forwarded-For.
//! let policy = Policy::builder().trust_str("10.0.0.0/16")?.build()?;
//! let app = Router::new()
//!     .route("/", get(|ClientIp(ip): ClientIp| async move { format!("{ip}\n") }))
//!     .route("/why", get(|ClientResolution(r): ClientResolution| async move {
//!         format!("{} from {:?}, warnings: {}\n", r.client, r.source, r.warnings)
//!     }))
//!     // After the routes: `Router::layer` wraps the routes added before it.
//!     .layer(ClientIpLayer::new(policy));
//! let listener = tokio::net::TcpListener::bind("0.0.0.0:3000").await?;
//! // The layer reads the peer from `ConnectInfo`: serve with connect info.
//! axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await?;
//! # Ok(())
//! # }
//! ```
//!
//! Behind an NLB or HAProxy speaking the PROXY protocol, serve through
//! [`ProxyProtocolListener`] with `into_make_service_with_connect_info::<trueip::Connection>()`.
//!
//! A handler whose router lacks the layer gets a `500` naming the fix (and a log line), never
//! an address guessed from the socket or a header.

mod listener;

pub use listener::{ProxiedStream, ProxyProtocolListener};

use std::net::IpAddr;

use ::axum::body::Body;
use ::axum::extract::FromRequestParts;
use ::axum::response::{IntoResponse, Response};
use http::request::Parts;

use crate::resolution::Resolution;

/// The client's address, as [`ClientIpLayer`](crate::tower::ClientIpLayer) decided it.
///
/// Believe it for what the policy vouches for: with no trusted proxy it is the TCP peer.
/// For where it came from and what looked wrong, extract [`ClientResolution`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ClientIp(pub IpAddr);

/// The whole decision: client, source, peer, PROXY source, trusted hops, warnings and the
/// rate-limit key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientResolution(pub Resolution);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    /// [`MissingLayer`]'s 500, or a 500 whose body is [`NO_ADDRESS`] when the client is
    /// a Unix-socket peer (only when the app inserted `Connection::unix()` itself).
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Response> {
        let resolution = resolution(parts).map_err(IntoResponse::into_response)?;
        match resolution.ip() {
            Some(ip) => Ok(ClientIp(ip)),
            None => {
                log::error!(
                    "{} {}: 500, {}",
                    parts.method,
                    parts.uri.path(),
                    NO_ADDRESS.trim_end()
                );
                Err(crate::tower::server_error::<Body>(NO_ADDRESS))
            }
        }
    }
}

/// The body of the 500 a handler extracting [`ClientIp`] gets when the client is a
/// Unix-socket peer: it has no address to give.
pub const NO_ADDRESS: &str = "trueip: the client of this request is a process on this host connected over a Unix socket, and has no IP address: extract `trueip::axum::ClientResolution` (its `client` is `Peer::Unix`), or trust the proxy on the socket (`unix`) so that its forwarding headers name the client.\n";

impl<S: Send + Sync> FromRequestParts<S> for ClientResolution {
    type Rejection = MissingLayer;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, MissingLayer> {
        resolution(parts).map(|r| ClientResolution(*r))
    }
}

/// A reference rather than a copy: `ClientIp` reads 17 bytes of the ~100.
#[inline]
fn resolution(parts: &Parts) -> Result<&Resolution, MissingLayer> {
    match parts.extensions.get::<Resolution>() {
        Some(resolution) => Ok(resolution),
        None => Err(missing_layer(parts)),
    }
}

#[cold]
fn missing_layer(parts: &Parts) -> MissingLayer {
    log::error!("{} {}: 500, {}", parts.method, parts.uri.path(), MISSING_LAYER.trim_end());
    MissingLayer
}

/// The body of the 500 a handler gets when its router lacks the layer.
pub const MISSING_LAYER: &str = "trueip: this request was not resolved: the handler extracts \
`trueip::axum::ClientIp` or `ClientResolution`, but no `trueip::tower::ClientIpLayer` ran \
before it. Add `.layer(trueip::tower::ClientIpLayer::new(policy))` to the router after the \
routes that use them (`Router::layer` wraps only the routes added before it).\n";

/// The rejection of [`ClientIp`] and [`ClientResolution`] when no
/// [`ClientIpLayer`](crate::tower::ClientIpLayer) ran: a `500` whose body is
/// [`MISSING_LAYER`]. It is the server's bug, not the client's, so not a 4xx.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MissingLayer;

impl IntoResponse for MissingLayer {
    fn into_response(self) -> Response {
        crate::tower::server_error::<Body>(MISSING_LAYER)
    }
}

impl std::fmt::Display for MissingLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(MISSING_LAYER.trim_end())
    }
}

impl std::error::Error for MissingLayer {}
