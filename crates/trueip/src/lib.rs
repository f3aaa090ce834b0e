//! # trueip — the real client IP, and no one else's
//!
//! Behind a CDN, a load balancer or a reverse proxy, the TCP peer is the proxy. The
//! client's address travels in headers (`X-Forwarded-For`, `Forwarded`, `X-Real-IP`,
//! `CF-Connecting-IP`, ...) or a PROXY protocol preamble — and anyone can write those
//! headers. trueip believes a header only when it was handed over by a proxy you
//! trust, walks forwarding lists from the right (the end trusted hops write), and
//! fails closed on anything it cannot read.
//!
//! ```
//! use trueip::{Connection, Policy};
//!
//! // nginx on 10.0.0.5 appends the client to X-Forwarded-For.
//! let policy = Policy::builder()
//!     .trust_str("10.0.0.0/8")?
//!     .strategy_str("rightmost-untrusted")?
//!     .build()?;
//! // The client forged the first entry; nginx appended the real address.
//! let headers = [("X-Forwarded-For", "1.2.3.4, 203.0.113.9")];
//! let conn = Connection::from_peer("10.0.0.5:41000".parse::<std::net::SocketAddr>()?);
//! let resolution = policy.resolve(&conn, &headers[..]);
//! assert_eq!(resolution.client.to_string(), "203.0.113.9");
//! assert!(resolution.warnings.contains(trueip::Warnings::SPOOF_ATTEMPT));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! With no trust configured ([`Policy::default`]) the peer is the client and every
//! header is ignored.
//!
//! The crate does no I/O, has no `unsafe`, and [`Policy::resolve`] allocates nothing.
//! Features: `http` (headers from `http::HeaderMap`), `serde` (config and JSON output,
//! provider JSON formats), `tower` ([`tower::ClientIpLayer`]), `axum` (the
//! [`axum::ClientIp`] extractor and [`axum::ProxyProtocolListener`]), `actix-web`
//! (`trueip::actix`: middleware and extractors), `lambda` (AWS Lambda events, [`lambda`]),
//! `lambda-http` (the same for `lambda_http::Request`). The default build compiles no
//! framework.

#![forbid(unsafe_code)]
#![warn(
    clippy::indexing_slicing,
    clippy::expect_used,
    clippy::panic,
    clippy::string_slice,
    clippy::allow_attributes_without_reason,
    unreachable_pub
)]

pub mod addr;
#[cfg(feature = "axum")]
pub mod axum;
pub mod entry;
mod error;
pub mod explain;
pub mod forwarded;
pub mod headers;
pub mod hosts;
mod link;
mod list;
pub mod origin;
pub mod params;
mod policy;
#[cfg(feature = "provenance")]
pub mod provenance;
pub mod providers;
pub mod proxy_protocol;
mod resolution;
#[doc(hidden)]
pub mod shown;
mod strategy;
#[cfg(feature = "tower")]
pub mod tower;
mod trace;
pub mod trust;
pub mod xff;

#[cfg(feature = "serde")]
pub mod config;
#[cfg(feature = "serde")]
pub mod lint;

#[cfg(feature = "actix-web")]
pub mod actix;
#[cfg(feature = "lambda")]
mod event_kind;
#[cfg(feature = "lambda")]
pub mod lambda;

pub use addr::Node;
pub use error::ConfigError;
pub use explain::{Decision, Explanation};
pub use headers::{FieldName, Headers};
pub use link::PrivateLink;
pub use params::ParamName;
pub use policy::{Connection, OriginSecret, PROVIDERS, Policy, PolicyBuilder, TrustSpec};
pub use resolution::{ListHeader, Resolution, Source, Warnings};
pub use strategy::{AllTrusted, Preset, StrategyDoc, StrategySpec};
pub use trace::{Step, Verdict};
pub use trust::{Cidr, NamedSet, TrustSet};

/// The most entries a list walk visits before stopping, flagged `truncated`.
pub const MAX_WALK: u16 = strategy::walk::MAX_WALK;

/// The README's Rust examples, compiled and run as doc tests so that they keep working as
/// written (its shell examples are not Rust and are skipped).
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
mod readme {}
