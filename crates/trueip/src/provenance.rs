//! A client header the app can verify (feature `provenance`).
//!
//! Behind nginx, `X-Real-IP` is safe "as long as the app is only reachable through
//! nginx" — and nothing checks that. If the app can also be reached directly (a security
//! group left open, a second listener, a sidecar), the header is the client's to write.
//!
//! `trueip serve` with `[upstream] sign` adds one header, authenticated with
//! HMAC-SHA256 under a key the app shares, that says who the client is *for this
//! request*:
//!
//! ```text
//! Trueip-Signature: v1;ip=203.0.113.7;port=51234;src=x-forwarded-for[-1];hops=1;t=1765020000;n=9f3c01a2b4d5e6f7;kid=Hk3vQ2aL;sig=<43 base64url characters>
//! ```
//!
//! The MAC covers, in this order, with `\n` between them:
//!
//! 1. the header value up to (not including) `;sig=`, byte for byte;
//! 2. the request method, as sent (`GET`);
//! 3. the `Host`, ASCII lower-cased;
//! 4. the request target as the app receives it, path and query (`/a/b?c=d`).
//!
//! So a header captured from one request does not verify for another path, method or
//! host, and [`Verifier`] refuses it outside a stated freshness window
//! ([`DEFAULT_WINDOW`], at most [`MAX_WINDOW`]). Within the window a [`Verifier`] accepts
//! each header once: every signature carries a nonce, so two honest requests never sign
//! alike, and a verifier remembers the signatures it accepted ([`MAX_REMEMBERED`]) and
//! answers a second use [`Rejected::Replayed`]. That memory is the process's: an app
//! run as several processes can be replayed once to each within the window.
//!
//! Fields, in this fixed order: `v1` (the format version); `ip` (the client address);
//! `port` (its port, empty when the source carried none); `src` (where the gateway read
//! it: `peer`, `proxy-protocol`, `x-forwarded-for[-N]`, `forwarded[-N]`, `header`,
//! `query`, `cookie`); `hops` (trusted hops the gateway walked); `t` (Unix seconds when
//! the gateway signed); `n` (a nonce: 16 lower-case hex digits, unique per signature);
//! `kid` (the key's id, [`Key::id`]); `sig` (the MAC, base64url without padding).
//!
//! Keys: at least [`MIN_KEY_LEN`] bytes, read from a file by the caller (whitespace
//! around them is trimmed, so `openssl rand -base64 48 > key` works). A key's id is
//! derived from the key itself, so the gateway and the app never disagree about names,
//! and a [`Verifier`] holds up to two keys at once for rotation: the app accepts the old
//! and the new key, then the gateway switches, then the app drops the old one. A
//! [`Key`]'s `Debug` output shows its id only.
//!
//! ```
//! use std::time::{Duration, UNIX_EPOCH};
//! use trueip::provenance::{Claim, Key, RequestLine, Verifier};
//! use trueip::{Node, Source};
//!
//! let key = Key::new(b"0123456789abcdef0123456789abcdef")?;
//! let request = RequestLine { method: "GET", host: "app.example", target: "/account" };
//! let claim = Claim {
//!     client: Node { ip: "203.0.113.7".parse()?, port: Some(51234) },
//!     source: Source::Peer,
//!     hops: 0,
//!     time: 1_765_020_000,
//! };
//! let mut value = String::new();
//! trueip::provenance::sign(&key, &claim, &request, &mut value);
//!
//! let verifier = Verifier::new([key], trueip::provenance::DEFAULT_WINDOW)?;
//! let now = UNIX_EPOCH + Duration::from_secs(1_765_020_002);
//! assert_eq!(verifier.verify_at(Some(value.as_bytes()), &request, now), Ok(claim));
//! // The same header for another path does not verify.
//! let other = RequestLine { target: "/admin", ..request };
//! assert!(verifier.verify_at(Some(value.as_bytes()), &other, now).is_err());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt::{self, Write as _};
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::hmac;

use crate::addr::Node;
use crate::error::ConfigError;
use crate::policy::{Connection, Policy};
use crate::resolution::{ListHeader, Resolution, Source, Warnings, rate_limit_key};

/// The header `trueip serve` writes by default.
pub const DEFAULT_HEADER: &str = "trueip-signature";
/// How old a signature may be, by default: generous for a gateway and an app on hosts
/// whose clocks NTP keeps within a second or two, short for a replay.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(30);
/// The longest freshness window a [`Verifier`] accepts.
pub const MAX_WINDOW: Duration = Duration::from_secs(300);
/// The shortest key: 256 bits, HMAC-SHA256's own strength.
pub const MIN_KEY_LEN: usize = 32;
/// The longest key.
pub const MAX_KEY_LEN: usize = 1024;
/// The most keys a [`Verifier`] holds: the current one and the one being rotated in or out.
pub const MAX_KEYS: usize = 2;
/// The longest header value read; longer is malformed (a real one is under 200 bytes).
pub const MAX_VALUE_LEN: usize = 512;

const VERSION: &str = "v1";
/// 32 bytes of SHA-256 in base64url without padding.
const SIG_LEN: usize = 43;
const KID_LEN: usize = 8;

/// A shared HMAC-SHA256 key and its id.
#[derive(Clone)]
pub struct Key {
    id: String,
    key: hmac::Key,
}

impl Key {
    /// A key from its secret bytes (a key file's contents): ASCII whitespace around them
    /// is trimmed; what is left must be [`MIN_KEY_LEN`] to [`MAX_KEY_LEN`] bytes.
    pub fn new(secret: &[u8]) -> Result<Key, ConfigError> {
        let secret = secret.trim_ascii();
        if secret.len() < MIN_KEY_LEN || secret.len() > MAX_KEY_LEN {
            return Err(ConfigError::new(format!(
                "a signing key must be {MIN_KEY_LEN} to {MAX_KEY_LEN} bytes, this one is {}",
                secret.len()
            ))
            .hint(
                "make one with `openssl rand -base64 48 > trueip.key` and share it with the app",
            ));
        }
        let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
        // The id is a MAC of a fixed label: it names the key without revealing it.
        let tag = hmac::sign(&key, b"trueip-signature key id");
        let mut id = URL_SAFE_NO_PAD.encode(tag.as_ref());
        id.truncate(KID_LEN);
        Ok(Key { id, key })
    }

    /// The key's id (8 base64url characters), the `kid` field of the header.
    pub fn id(&self) -> &str {
        &self.id
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key").field("id", &self.id).field("secret", &"<redacted>").finish()
    }
}

/// What a signature binds the claim to: the request as the app receives it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestLine<'a> {
    /// The method, as sent (`GET`).
    pub method: &'a str,
    /// The `Host` header (or HTTP/2 `:authority`); compared without regard to ASCII case.
    pub host: &'a str,
    /// The request target in origin form: path and query (`/a?b=c`), as sent.
    pub target: &'a str,
}

/// What the gateway says about a request's client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Claim {
    /// The client, and its port when the source carried one.
    pub client: Node,
    /// Where the gateway read it.
    pub source: Source,
    /// How many trusted hops the gateway walked (0: the client connected to it).
    pub hops: u16,
    /// Unix seconds when the gateway signed.
    pub time: u64,
}

impl Claim {
    /// The resolution an adapter hands the app for this verified claim, on a connection
    /// `conn` from the gateway: the signed client, its source and hops (plus the gateway
    /// itself); the peer is the gateway.
    pub fn resolution(&self, policy: &Policy, conn: &Connection) -> Resolution {
        self.resolution_over(policy, peer_resolution(policy, conn))
    }

    /// [`resolution`](Self::resolution) over `r`, `policy`'s decision on the connection
    /// alone, no header read: for a Lambda event, `trueip::lambda::Event::peer_resolution`
    /// (a Lambda preset's policy decides a connection as a request without an event).
    pub fn resolution_over(&self, policy: &Policy, mut r: Resolution) -> Resolution {
        r.client = crate::addr::Peer::Ip(self.client);
        r.source = self.source;
        r.trusted_hops = self.hops.saturating_add(1);
        r.strategy = None;
        r.rate_limit_key = Some(rate_limit_key(self.client.ip, policy.v6_prefix()));
        r
    }
}

/// The resolution when a signed header is not believed: the TCP peer (or the PROXY
/// source of a sender `policy` trusts), no header read, flagged `signature_rejected`.
pub fn rejected_resolution(policy: &Policy, conn: &Connection) -> Resolution {
    rejected_over(peer_resolution(policy, conn))
}

/// [`rejected_resolution`] over `r`, the decision on the connection alone (see
/// [`Claim::resolution_over`]).
pub fn rejected_over(mut r: Resolution) -> Resolution {
    r.warnings.insert(Warnings::SIGNATURE_REJECTED);
    r
}

const NO_HEADERS: &[(&str, &str)] = &[];

fn peer_resolution(policy: &Policy, conn: &Connection) -> Resolution {
    policy.resolve(conn, NO_HEADERS)
}

/// Appends the header value that signs `claim` for `request` under `key` to `out`.
pub fn sign(key: &Key, claim: &Claim, request: &RequestLine<'_>, out: &mut String) {
    let at = out.len();
    // Writing to a String cannot fail.
    let _ = write!(out, "{VERSION};ip={};port=", claim.client.ip);
    if let Some(port) = claim.client.port {
        let _ = write!(out, "{port}");
    }
    let _ = write!(
        out,
        ";src={};hops={};t={};n={:016x};kid={}",
        claim.source,
        claim.hops,
        claim.time,
        nonce(),
        key.id
    );
    let signed = out.get(at..).unwrap_or_default();
    let tag = mac(&key.key, signed.as_bytes(), request);
    out.push_str(";sig=");
    URL_SAFE_NO_PAD.encode_string(tag.as_ref(), out);
}

/// A number no other signature of this process or, but for chance, of another has used:
/// a random start drawn once, then counted up. Cheaper than a random draw per request,
/// and as good for telling two signatures apart.
fn nonce() -> u64 {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: OnceLock<AtomicU64> = OnceLock::new();
    let next = NEXT.get_or_init(|| {
        let mut seed = [0u8; 8];
        // Should the system have no randomness to give, the clock's nanoseconds still
        // keep two processes' counters apart.
        if ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut seed).is_err() {
            let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
            seed = (nanos as u64).to_le_bytes();
        }
        AtomicU64::new(u64::from_le_bytes(seed))
    });
    next.fetch_add(1, Ordering::Relaxed)
}

fn mac(key: &hmac::Key, fields: &[u8], request: &RequestLine<'_>) -> hmac::Tag {
    let mut ctx = hmac::Context::with_key(key);
    ctx.update(fields);
    ctx.update(b"\n");
    ctx.update(request.method.as_bytes());
    ctx.update(b"\n");
    let mut host = [0u8; 64];
    for chunk in request.host.as_bytes().chunks(host.len()) {
        let lower = host.get_mut(..chunk.len()).unwrap_or_default();
        lower.copy_from_slice(chunk);
        lower.make_ascii_lowercase();
        ctx.update(lower);
    }
    ctx.update(b"\n");
    ctx.update(request.target.as_bytes());
    ctx.sign()
}

/// Why a request's signed header was not believed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejected {
    /// The request carried no signed header: it did not come through the gateway.
    Missing,
    /// The header appeared on several lines.
    Duplicate,
    /// The header is not in the documented format; says which part.
    Malformed(&'static str),
    /// Signed with a key this verifier does not hold (`kid` unknown): a retired key, or
    /// a forgery.
    UnknownKey,
    /// The MAC does not match: forged, altered, or captured from another request
    /// (another method, host or target).
    BadSignature,
    /// Signed longer ago than the window allows, in seconds: a replay, or a clock
    /// running behind on the app's host.
    Stale {
        /// How many seconds ago it was signed.
        age: u64,
    },
    /// Signed further in the future than the window allows, in seconds: a clock
    /// running ahead on the gateway's host, or a forgery prepared in advance.
    Future {
        /// How many seconds ahead.
        ahead: u64,
    },
    /// Already accepted once by this verifier: a captured header sent again.
    Replayed,
}

impl Rejected {
    /// A short snake_case name, for logs and metrics labels.
    pub fn name(self) -> &'static str {
        match self {
            Rejected::Missing => "missing",
            Rejected::Duplicate => "duplicate",
            Rejected::Malformed(_) => "malformed",
            Rejected::UnknownKey => "unknown_key",
            Rejected::BadSignature => "bad_signature",
            Rejected::Stale { .. } => "stale",
            Rejected::Future { .. } => "future",
            Rejected::Replayed => "replayed",
        }
    }

    /// Whether the request itself is unreadable (HTTP 400) rather than unauthenticated
    /// (403).
    pub fn is_malformed(self) -> bool {
        matches!(self, Rejected::Malformed(_) | Rejected::Duplicate)
    }
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rejected::Missing => f.write_str(
                "no signed client header: the request did not come through trueip serve",
            ),
            Rejected::Duplicate => f.write_str("the signed client header appears on several lines"),
            Rejected::Malformed(what) => write!(f, "malformed signed client header: {what}"),
            Rejected::UnknownKey => f.write_str("signed client header under an unknown key id"),
            Rejected::BadSignature => f.write_str(
                "signed client header does not verify: forged, altered, or for another request",
            ),
            Rejected::Stale { age } => {
                write!(f, "signed client header is {age} s old, beyond the window")
            }
            Rejected::Replayed => {
                f.write_str("signed client header already used: a captured header sent again")
            }
            Rejected::Future { ahead } => {
                write!(f, "signed client header is dated {ahead} s ahead, beyond the window")
            }
        }
    }
}

impl std::error::Error for Rejected {}

/// What an adapter made of a request's signed header; in the request's extensions (or
/// the Python middlewares' environ/scope) beside the `Resolution`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Verified: the resolution is the signed client.
    Verified(Claim),
    /// Not believed; the resolution is the TCP peer (flagged `signature_rejected`).
    FellBack(Rejected),
}

impl Outcome {
    /// The hop a request decided as `resolution` with this outcome came through, as
    /// [`ForwardingSet::withheld`](crate::headers::ForwardingSet::withheld) asks it: the
    /// gateway that signed, a hop `policy` trusts, when the header verified (what the
    /// gateway wrote may reach the app); a stranger when it did not, whatever the peer.
    pub fn hop<'p>(&self, policy: &'p Policy, resolution: &Resolution) -> crate::headers::Hop<'p> {
        match self {
            Outcome::Verified(_) => crate::headers::Hop::trusted(policy, resolution),
            Outcome::FellBack(_) => crate::headers::Hop::Untrusted,
        }
    }
}

/// The keys an app accepts and the freshness window, and the signatures it accepted
/// within the window (clones share them), so that each header is accepted once.
#[derive(Clone, Debug)]
pub struct Verifier {
    keys: Vec<Key>,
    window: Duration,
    seen: std::sync::Arc<std::sync::Mutex<Seen>>,
}

/// The most signatures a verifier remembers; past it the oldest are forgotten before
/// their window ends (and could be replayed in what is left of it).
pub const MAX_REMEMBERED: usize = 65_536;

/// Signatures accepted within the window, the oldest first.
#[derive(Default)]
struct Seen {
    order: std::collections::VecDeque<(u64, [u8; 32])>,
    tags: std::collections::HashSet<[u8; 32]>,
}

impl fmt::Debug for Seen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Seen({} signatures)", self.order.len())
    }
}

impl Seen {
    /// Records `tag`, signed at `time`; false when it is already there. First forgets the
    /// tags signed more than `window` before `now`, and the oldest beyond the bound.
    fn first_use(&mut self, tag: [u8; 32], time: u64, now: u64, window: u64) -> bool {
        while let Some(&(t, old)) = self.order.front() {
            if now.saturating_sub(t) <= window && self.order.len() < MAX_REMEMBERED {
                break;
            }
            self.order.pop_front();
            self.tags.remove(&old);
        }
        if !self.tags.insert(tag) {
            return false;
        }
        self.order.push_back((time, tag));
        true
    }
}

impl Verifier {
    /// One or two keys ([`MAX_KEYS`], with distinct ids) and a window of 1 s to
    /// [`MAX_WINDOW`] (whole seconds; a fraction is rounded down).
    pub fn new(keys: impl IntoIterator<Item = Key>, window: Duration) -> Result<Self, ConfigError> {
        let keys: Vec<Key> = keys.into_iter().collect();
        if keys.is_empty() || keys.len() > MAX_KEYS {
            return Err(ConfigError::new(format!(
                "a verifier takes 1 or {MAX_KEYS} keys, not {}",
                keys.len()
            ))
            .hint("the current key, and during a rotation the other one"));
        }
        if let [a, b] = keys.as_slice()
            && a.id == b.id
        {
            return Err(ConfigError::new(format!("the same key (id {}) is given twice", a.id))
                .hint("during a rotation give the old key file and the new one"));
        }
        if window.as_secs() < 1 || window > MAX_WINDOW {
            return Err(ConfigError::new(format!(
                "a freshness window of {window:?} is out of bounds"
            ))
            .hint(format!(
                "1 s to {} s; the default is {} s",
                MAX_WINDOW.as_secs(),
                DEFAULT_WINDOW.as_secs()
            )));
        }
        Ok(Verifier {
            keys,
            window: Duration::from_secs(window.as_secs()),
            seen: std::sync::Arc::default(),
        })
    }

    /// The freshness window.
    pub fn window(&self) -> Duration {
        self.window
    }

    /// The ids of the keys held.
    pub fn key_ids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(Key::id)
    }

    /// [`verify_at`](Self::verify_at) the system clock's now.
    pub fn verify(
        &self,
        value: Option<&[u8]>,
        request: &RequestLine<'_>,
    ) -> Result<Claim, Rejected> {
        self.verify_at(value, request, SystemTime::now())
    }

    /// Verifies a request's signed header value (`None`: the request has none) against
    /// the request it came with, at `now`. The MAC is compared in constant time.
    pub fn verify_at(
        &self,
        value: Option<&[u8]>,
        request: &RequestLine<'_>,
        now: SystemTime,
    ) -> Result<Claim, Rejected> {
        let value = value.ok_or(Rejected::Missing)?;
        if value.len() > MAX_VALUE_LEN {
            return Err(Rejected::Malformed("longer than 512 bytes"));
        }
        let value = std::str::from_utf8(value).map_err(|_| Rejected::Malformed("not ASCII"))?;
        let (signed, sig) =
            value.rsplit_once(";sig=").ok_or(Rejected::Malformed("no sig field"))?;
        let parsed = parse(signed)?;
        if sig.len() != SIG_LEN {
            return Err(Rejected::Malformed("sig is not 43 base64url characters"));
        }
        let tag = URL_SAFE_NO_PAD
            .decode(sig)
            .map_err(|_| Rejected::Malformed("sig is not 43 base64url characters"))?;
        let key = self.keys.iter().find(|k| k.id == parsed.kid).ok_or(Rejected::UnknownKey)?;
        let expected = mac(&key.key, signed.as_bytes(), request);
        // `hmac::verify` wants the message in one slice; the MAC is computed in parts
        // (no allocation), so the tags are compared here, over every byte whatever differs.
        if !crate::policy::constant_time_eq(expected.as_ref(), &tag) {
            return Err(Rejected::BadSignature);
        }
        let now = now.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let window = self.window.as_secs();
        let claim = parsed.claim;
        if claim.time > now {
            let ahead = claim.time - now;
            if ahead > window {
                return Err(Rejected::Future { ahead });
            }
        } else if now - claim.time > window {
            return Err(Rejected::Stale { age: now - claim.time });
        }
        let Ok(tag) = <[u8; 32]>::try_from(tag.as_slice()) else {
            return Err(Rejected::Malformed("sig is not 43 base64url characters"));
        };
        // A poisoned lock means a panic elsewhere mid-update: the set is still a set.
        let mut seen = self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if !seen.first_use(tag, claim.time, now, window) {
            return Err(Rejected::Replayed);
        }
        Ok(claim)
    }
}

/// How an adapter (`tower`, `actix`, the Python middlewares) treats the signed client
/// header: which header, which keys, and what a request that fails verification gets.
/// Cheap to clone (shared counters).
///
/// Two named modes: [`Signed::required`] refuses such a request (400 for a malformed or
/// repeated header, 403 otherwise); [`Signed::or_peer`] hands the app the TCP peer
/// instead, flagged `signature_rejected`. Either way the request's forwarding headers
/// are not read: the signed header replaces the policy's walk, whose answer would be the
/// client's own words on a connection that did not come through the gateway.
#[derive(Clone, Debug)]
pub struct Signed {
    verifier: std::sync::Arc<Verifier>,
    header: crate::headers::FieldName,
    refuse: Refuse,
    counts: std::sync::Arc<Counts>,
}

/// Whether a request that fails verification is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Refuse {
    Yes,
    No,
}

/// Requests whose signed header verified and did not.
#[derive(Debug, Default)]
struct Counts {
    verified: std::sync::atomic::AtomicU64,
    rejected: std::sync::atomic::AtomicU64,
}

/// What [`Signed::decide`] made of a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decided {
    /// Serve it with this resolution; the outcome says whether the signature verified.
    Serve(Resolution, Outcome),
    /// Refuse it ([`Signed::required`]): [`refusal_status`] and [`refusal_body`] say how.
    Refuse(Rejected),
}

impl Signed {
    /// Refuses a request whose signed header is missing, malformed, forged, stale or for
    /// another request: the app is meant to be reached through the gateway only.
    pub fn required(verifier: Verifier) -> Self {
        Self::with(verifier, Refuse::Yes)
    }

    /// Serves such a request with the TCP peer as the client, flagged
    /// `signature_rejected` ([`Outcome::FellBack`] says why): the app is also reached
    /// directly, and a direct client is its own peer.
    pub fn or_peer(verifier: Verifier) -> Self {
        Self::with(verifier, Refuse::No)
    }

    fn with(verifier: Verifier, refuse: Refuse) -> Self {
        Signed {
            verifier: std::sync::Arc::new(verifier),
            header: crate::headers::FieldName::from_static(DEFAULT_HEADER),
            refuse,
            counts: std::sync::Arc::default(),
        }
    }

    /// Reads the header `name` instead of [`DEFAULT_HEADER`] (the gateway's
    /// `[upstream] sign.header`).
    pub fn header(mut self, name: &str) -> Result<Self, ConfigError> {
        self.header = crate::headers::FieldName::new(name.trim())?;
        Ok(self)
    }

    /// The header read.
    pub fn header_name(&self) -> &crate::headers::FieldName {
        &self.header
    }

    /// The verifier.
    pub fn verifier(&self) -> &Verifier {
        &self.verifier
    }

    /// Whether a request that fails verification is refused ([`Signed::required`]).
    pub fn refuses(&self) -> bool {
        self.refuse == Refuse::Yes
    }

    /// Requests whose signed header verified, since this value was made (clones share it).
    pub fn verified_count(&self) -> u64 {
        self.counts.verified.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Requests whose signed header did not verify (refused or served with the peer).
    pub fn rejected_count(&self) -> u64 {
        self.counts.rejected.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Decides a request on connection `conn` (from the gateway, or from anyone) with
    /// `headers`, which is `request`, at the system clock's now.
    pub fn decide<H: crate::headers::Headers + ?Sized>(
        &self,
        policy: &Policy,
        conn: &Connection,
        headers: &H,
        request: &RequestLine<'_>,
    ) -> Decided {
        self.decide_at(policy, conn, headers, request, SystemTime::now())
    }

    /// [`decide`](Self::decide) at `now`.
    pub fn decide_at<H: crate::headers::Headers + ?Sized>(
        &self,
        policy: &Policy,
        conn: &Connection,
        headers: &H,
        request: &RequestLine<'_>,
        now: SystemTime,
    ) -> Decided {
        self.decide_over(policy, headers, request, now, || peer_resolution(policy, conn))
    }

    /// [`decide`](Self::decide) for a request lambda_http made from an event of `kind`,
    /// whose front end's address `stand_in` is: the peer is decided as the event's
    /// (`Policy::resolve_stand_in`), not as a connection's, which a Lambda preset's policy
    /// decides as a request without an event. Only `ClientIpLayer` calls it.
    #[cfg(feature = "lambda-http")]
    pub(crate) fn decide_stand_in<H: crate::headers::Headers + ?Sized>(
        &self,
        policy: &Policy,
        kind: crate::event_kind::EventKind,
        stand_in: &Connection,
        headers: &H,
        request: &RequestLine<'_>,
    ) -> Decided {
        self.decide_over(policy, headers, request, SystemTime::now(), || {
            policy.resolve_stand_in(kind, stand_in, NO_HEADERS)
        })
    }

    /// Decides with `peer`, the decision on the connection alone, made only when needed.
    fn decide_over<H: crate::headers::Headers + ?Sized>(
        &self,
        policy: &Policy,
        headers: &H,
        request: &RequestLine<'_>,
        now: SystemTime,
        peer: impl FnOnce() -> Resolution,
    ) -> Decided {
        let mut first = None;
        let mut lines = 0usize;
        headers.for_each_value(&self.header, |v| {
            lines += 1;
            first.get_or_insert(v);
        });
        let checked = if lines > 1 {
            Err(Rejected::Duplicate)
        } else {
            self.verifier.verify_at(first, request, now)
        };
        use std::sync::atomic::Ordering::Relaxed;
        match checked {
            Ok(claim) => {
                self.counts.verified.fetch_add(1, Relaxed);
                Decided::Serve(claim.resolution_over(policy, peer()), Outcome::Verified(claim))
            }
            Err(why) => {
                self.counts.rejected.fetch_add(1, Relaxed);
                match self.refuse {
                    Refuse::Yes => Decided::Refuse(why),
                    Refuse::No => Decided::Serve(rejected_over(peer()), Outcome::FellBack(why)),
                }
            }
        }
    }
}

/// The HTTP status a refused request gets: 400 for a malformed or repeated header, 403
/// otherwise.
pub fn refusal_status(why: Rejected) -> u16 {
    if why.is_malformed() { 400 } else { 403 }
}

/// The body a refused request gets (plain text). It names the rule, not the details: a
/// prober learns nothing about keys or clocks.
pub fn refusal_body(why: Rejected) -> &'static str {
    if why.is_malformed() {
        "trueip: the signed client header is malformed\n"
    } else {
        "trueip: this request did not come through the gateway (no valid signed client header)\n"
    }
}

struct Parsed<'a> {
    claim: Claim,
    kid: &'a str,
}

/// The fields before `;sig=`, in their fixed order.
fn parse(signed: &str) -> Result<Parsed<'_>, Rejected> {
    let mut fields = signed.split(';');
    if fields.next() != Some(VERSION) {
        return Err(Rejected::Malformed("not version v1"));
    }
    let mut field = |name: &'static str, what: &'static str| -> Result<&str, Rejected> {
        fields
            .next()
            .and_then(|f| f.strip_prefix(name))
            .and_then(|f| f.strip_prefix('='))
            .ok_or(Rejected::Malformed(what))
    };
    let ip = field("ip", "ip field")?;
    let port = field("port", "port field")?;
    let src = field("src", "src field")?;
    let hops = field("hops", "hops field")?;
    let time = field("t", "t field")?;
    let nonce = field("n", "n field")?;
    let kid = field("kid", "kid field")?;
    if fields.next().is_some() {
        return Err(Rejected::Malformed("fields after kid"));
    }
    let ip: IpAddr = ip.parse().map_err(|_| Rejected::Malformed("ip is not an address"))?;
    let port = match port {
        "" => None,
        p => Some(digits(p).ok_or(Rejected::Malformed("port is not a port"))?),
    };
    let source = parse_source(src).ok_or(Rejected::Malformed("src is not a known source"))?;
    let hops = digits(hops).ok_or(Rejected::Malformed("hops is not a count"))?;
    let time = digits(time).ok_or(Rejected::Malformed("t is not a Unix time"))?;
    if nonce.len() != 16 || !nonce.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(Rejected::Malformed("n is not 16 hex digits"));
    }
    if kid.len() != KID_LEN {
        return Err(Rejected::Malformed("kid is not a key id"));
    }
    Ok(Parsed { claim: Claim { client: Node { ip, port }, source, hops, time }, kid })
}

/// Decimal digits only (no sign, no spaces), within the type.
fn digits<T: std::str::FromStr>(s: &str) -> Option<T> {
    if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// [`Source`]'s `Display` read back.
fn parse_source(s: &str) -> Option<Source> {
    match s {
        "peer" => return Some(Source::Peer),
        "proxy-protocol" => return Some(Source::ProxyProtocol),
        "header" => return Some(Source::Header),
        "query" => return Some(Source::Query),
        "cookie" => return Some(Source::Cookie),
        _ => {}
    }
    let (name, rest) = s.split_once("[-")?;
    let header = match name {
        "x-forwarded-for" => ListHeader::XForwardedFor,
        "forwarded" => ListHeader::Forwarded,
        _ => return None,
    };
    let from_right = digits(rest.strip_suffix(']')?)?;
    Some(Source::List { header, from_right })
}

#[cfg(test)]
mod tests {

    use super::*;
    use proptest::prelude::*;

    const T: u64 = 1_765_020_000;

    fn key(fill: u8) -> Key {
        Key::new(&[b'a' + fill; 32]).unwrap()
    }

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn claim() -> Claim {
        Claim {
            client: Node { ip: "2001:db8::7".parse().unwrap(), port: Some(51234) },
            source: Source::List { header: ListHeader::XForwardedFor, from_right: 2 },
            hops: 1,
            time: T,
        }
    }

    const REQ: RequestLine<'static> =
        RequestLine { method: "GET", host: "App.Example:8443", target: "/account?tab=1" };

    fn signed(key: &Key, claim: &Claim, req: &RequestLine<'_>) -> String {
        let mut out = String::new();
        sign(key, claim, req, &mut out);
        out
    }

    fn verifier(keys: impl IntoIterator<Item = Key>) -> Verifier {
        Verifier::new(keys, DEFAULT_WINDOW).unwrap()
    }

    #[test]
    fn verifies_what_it_signed_and_only_for_that_request() {
        let k = key(1);
        let v = verifier([k.clone()]);
        let value = signed(&k, &claim(), &REQ);
        assert!(
            value.starts_with(
                "v1;ip=2001:db8::7;port=51234;src=x-forwarded-for[-2];hops=1;t=1765020000;n="
            ),
            "{value}"
        );
        assert_eq!(v.verify_at(Some(value.as_bytes()), &REQ, at(T + 3)), Ok(claim()));
        // Host is compared without regard to case.
        let lower = RequestLine { host: "app.example:8443", ..REQ };
        // (A verifier that has not seen it: `v` accepted it above, and would answer a
        // second use as a replay.)
        assert_eq!(
            verifier([k.clone()]).verify_at(Some(value.as_bytes()), &lower, at(T)),
            Ok(claim())
        );
        for other in [
            RequestLine { method: "POST", ..REQ },
            RequestLine { host: "other.example", ..REQ },
            RequestLine { target: "/account", ..REQ },
            RequestLine { target: "/admin?tab=1", ..REQ },
        ] {
            assert_eq!(
                v.verify_at(Some(value.as_bytes()), &other, at(T)),
                Err(Rejected::BadSignature),
                "{other:?}"
            );
        }
    }

    #[test]
    fn every_source_and_a_missing_port_round_trip() {
        let k = key(2);
        let v = verifier([k.clone()]);
        for source in [
            Source::Peer,
            Source::ProxyProtocol,
            Source::Header,
            Source::Query,
            Source::Cookie,
            Source::List { header: ListHeader::Forwarded, from_right: 1 },
        ] {
            let c = Claim { client: Node::ip("192.0.2.1".parse().unwrap()), source, ..claim() };
            let value = signed(&k, &c, &REQ);
            assert_eq!(v.verify_at(Some(value.as_bytes()), &REQ, at(T)), Ok(c), "{value}");
        }
    }

    #[test]
    fn a_header_is_accepted_once_and_honest_twins_differ() {
        let k = key(6);
        let v = verifier([k.clone()]);
        let value = signed(&k, &claim(), &REQ);
        // The same claim for the same request, signed again: another nonce, another header.
        let twin = signed(&k, &claim(), &REQ);
        assert_ne!(value, twin);
        assert!(v.verify_at(Some(value.as_bytes()), &REQ, at(T)).is_ok());
        assert!(v.verify_at(Some(twin.as_bytes()), &REQ, at(T)).is_ok());
        // Sent again, to this verifier or a clone of it: a replay.
        assert_eq!(v.verify_at(Some(value.as_bytes()), &REQ, at(T + 1)), Err(Rejected::Replayed));
        assert_eq!(
            v.clone().verify_at(Some(twin.as_bytes()), &REQ, at(T + 2)),
            Err(Rejected::Replayed)
        );
        // Past the window it is stale.
        assert_eq!(
            v.verify_at(Some(value.as_bytes()), &REQ, at(T + 40)),
            Err(Rejected::Stale { age: 40 })
        );
        // A failed check records nothing: the genuine request still verifies after it.
        let fresh = signed(&k, &claim(), &REQ);
        let other = RequestLine { target: "/x", ..REQ };
        assert!(v.verify_at(Some(fresh.as_bytes()), &other, at(T)).is_err());
        assert!(v.verify_at(Some(fresh.as_bytes()), &REQ, at(T)).is_ok());
        assert_eq!(
            v.verify_at(Some(fresh.replacen(";n=", ";n=x", 1).as_bytes()), &REQ, at(T)),
            Err(Rejected::Malformed("n is not 16 hex digits"))
        );
    }

    #[test]
    fn the_window_bounds_both_sides() {
        let k = key(3);
        let value = signed(&k, &claim(), &REQ);
        // A fresh verifier for each check: one accepts a header once.
        let check = |now| verifier([k.clone()]).verify_at(Some(value.as_bytes()), &REQ, at(now));
        assert!(check(T + 30).is_ok());
        assert_eq!(check(T + 31), Err(Rejected::Stale { age: 31 }));
        assert!(check(T - 30).is_ok());
        assert_eq!(check(T - 31), Err(Rejected::Future { ahead: 31 }));
        let short = Verifier::new([k], Duration::from_secs(5)).unwrap();
        assert_eq!(
            short.verify_at(Some(value.as_bytes()), &REQ, at(T + 6)),
            Err(Rejected::Stale { age: 6 })
        );
    }

    #[test]
    fn rotation_accepts_either_key_and_then_only_the_new_one() {
        let (old, new) = (key(4), key(5));
        assert_ne!(old.id(), new.id());
        let both = verifier([old.clone(), new.clone()]);
        let by_old = signed(&old, &claim(), &REQ);
        let by_new = signed(&new, &claim(), &REQ);
        assert!(both.verify_at(Some(by_old.as_bytes()), &REQ, at(T)).is_ok());
        assert!(both.verify_at(Some(by_new.as_bytes()), &REQ, at(T)).is_ok());
        let only_new = verifier([new]);
        assert_eq!(
            only_new.verify_at(Some(by_old.as_bytes()), &REQ, at(T)),
            Err(Rejected::UnknownKey)
        );
        // A kid relabelled to the held key's does not help: the MAC is over the kid too.
        let relabelled = by_old.replace(old.id(), only_new.key_ids().next().unwrap());
        assert_eq!(
            only_new.verify_at(Some(relabelled.as_bytes()), &REQ, at(T)),
            Err(Rejected::BadSignature)
        );
    }

    #[test]
    fn altered_fields_do_not_verify() {
        let k = key(6);
        let v = verifier([k.clone()]);
        let value = signed(&k, &claim(), &REQ);
        for (from, to) in [
            ("ip=2001:db8::7", "ip=2001:db8::8"),
            ("port=51234", "port=51235"),
            ("hops=1", "hops=2"),
            ("[-2]", "[-1]"),
            ("t=1765020000", "t=1765020001"),
        ] {
            let altered = value.replace(from, to);
            assert_eq!(
                v.verify_at(Some(altered.as_bytes()), &REQ, at(T)),
                Err(Rejected::BadSignature),
                "{altered}"
            );
        }
    }

    #[test]
    fn malformed_values_say_which_part() {
        let k = key(7);
        let v = verifier([k.clone()]);
        let good = signed(&k, &claim(), &REQ);
        let sig = good.rsplit_once(";sig=").unwrap().1.to_string();
        let kid = k.id().to_string();
        let long = "v".repeat(600);
        let cases: Vec<(&str, String, Rejected)> = vec![
            ("missing", String::new(), Rejected::Missing),
            ("fail: no sig", good.replace(";sig=", ";mac="), Rejected::Malformed("no sig field")),
            ("fail: v2", good.replacen("v1;", "v2;", 1), Rejected::Malformed("not version v1")),
            (
                "fail: field order",
                format!(
                    "v1;port=1;ip=1.2.3.4;src=peer;hops=0;t={T};n=0000000000000001;kid={kid};sig={sig}"
                ),
                Rejected::Malformed("ip field"),
            ),
            (
                "fail: extra field",
                format!(
                    "v1;ip=1.2.3.4;port=1;src=peer;hops=0;t={T};n=0000000000000001;kid={kid};x=1;sig={sig}"
                ),
                Rejected::Malformed("fields after kid"),
            ),
            (
                "fail: host name",
                format!(
                    "v1;ip=evil.example;port=1;src=peer;hops=0;t={T};n=0000000000000001;kid={kid};sig={sig}"
                ),
                Rejected::Malformed("ip is not an address"),
            ),
            (
                "fail: port sign",
                format!(
                    "v1;ip=1.2.3.4;port=+1;src=peer;hops=0;t={T};n=0000000000000001;kid={kid};sig={sig}"
                ),
                Rejected::Malformed("port is not a port"),
            ),
            (
                "fail: port range",
                format!(
                    "v1;ip=1.2.3.4;port=70000;src=peer;hops=0;t={T};n=0000000000000001;kid={kid};sig={sig}"
                ),
                Rejected::Malformed("port is not a port"),
            ),
            (
                "fail: source",
                format!(
                    "v1;ip=1.2.3.4;port=;src=x-real-ip;hops=0;t={T};n=0000000000000001;kid={kid};sig={sig}"
                ),
                Rejected::Malformed("src is not a known source"),
            ),
            (
                "fail: hops",
                format!(
                    "v1;ip=1.2.3.4;port=;src=peer;hops=-1;t={T};n=0000000000000001;kid={kid};sig={sig}"
                ),
                Rejected::Malformed("hops is not a count"),
            ),
            (
                "fail: time",
                format!(
                    "v1;ip=1.2.3.4;port=;src=peer;hops=0;t=soon;n=0000000000000001;kid={kid};sig={sig}"
                ),
                Rejected::Malformed("t is not a Unix time"),
            ),
            (
                "fail: kid",
                format!(
                    "v1;ip=1.2.3.4;port=;src=peer;hops=0;t={T};n=0000000000000001;kid=k1;sig={sig}"
                ),
                Rejected::Malformed("kid is not a key id"),
            ),
            (
                "fail: short sig",
                format!("{};sig=AAAA", good.rsplit_once(";sig=").unwrap().0),
                Rejected::Malformed("sig is not 43 base64url characters"),
            ),
            (
                "fail: sig alphabet",
                format!("{};sig={}", good.rsplit_once(";sig=").unwrap().0, "+".repeat(43)),
                Rejected::Malformed("sig is not 43 base64url characters"),
            ),
            ("fail: too long", long, Rejected::Malformed("longer than 512 bytes")),
        ];
        for (name, value, want) in cases {
            let got = if name == "missing" {
                v.verify_at(None, &REQ, at(T))
            } else {
                v.verify_at(Some(value.as_bytes()), &REQ, at(T))
            };
            assert_eq!(got, Err(want), "{name}: {value}");
        }
        assert_eq!(
            v.verify_at(Some(b"v1;ip=\xff;sig=x"), &REQ, at(T)),
            Err(Rejected::Malformed("not ASCII"))
        );
    }

    #[test]
    fn keys_and_verifiers_check_their_input() {
        assert!(Key::new(&[1; 31]).is_err());
        assert!(Key::new(&[1; MAX_KEY_LEN + 1]).is_err());
        // Trailing newline of a key file is not part of the key.
        let a = Key::new(b"0123456789abcdef0123456789abcdef\n").unwrap();
        let b = Key::new(b"  0123456789abcdef0123456789abcdef").unwrap();
        assert_eq!(a.id(), b.id());
        let short = Key::new(b"0123456789abcdef0123456789abcde\n\n");
        assert!(short.unwrap_err().to_string().contains("31"));
        assert!(Verifier::new(Vec::new(), DEFAULT_WINDOW).is_err());
        assert!(Verifier::new([key(1), key(2), key(3)], DEFAULT_WINDOW).is_err());
        assert!(Verifier::new([key(1), key(1)], DEFAULT_WINDOW).is_err());
        assert!(Verifier::new([key(1)], Duration::ZERO).is_err());
        assert!(Verifier::new([key(1)], MAX_WINDOW + Duration::from_secs(1)).is_err());
        assert!(Verifier::new([key(1)], MAX_WINDOW).is_ok());
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let k = Key::new(b"sup3r-s3cret-sup3r-s3cret-sup3r-s3cret").unwrap();
        let v = verifier([k.clone()]);
        for text in [format!("{k:?}"), format!("{v:?}"), format!("{k:#?}")] {
            assert!(!text.contains("s3cret"), "{text}");
            assert!(text.contains(k.id()), "{text}");
        }
    }

    #[test]
    fn resolutions_from_claims_and_rejections() {
        let policy = Policy::default();
        let conn =
            Connection::from_peer("127.0.0.1:40000".parse::<std::net::SocketAddr>().unwrap());
        let r = claim().resolution(&policy, &conn);
        assert_eq!(r.client, crate::addr::Peer::Ip(claim().client));
        assert_eq!(r.peer, conn.peer);
        assert_eq!(r.trusted_hops, 2);
        assert_eq!(r.rate_limit_key.map(|k| k.to_string()).as_deref(), Some("2001:db8::"));
        let r = rejected_resolution(&policy, &conn);
        assert_eq!(r.client, conn.peer);
        assert_eq!(r.source, Source::Peer);
        assert!(r.warnings.contains(Warnings::SIGNATURE_REJECTED));
    }

    proptest! {
        #[test]
        fn no_input_panics_or_verifies(value in proptest::collection::vec(any::<u8>(), 0..600)) {
            let v = verifier([key(9)]);
            prop_assert!(v.verify_at(Some(&value), &REQ, at(T)).is_err());
        }

        #[test]
        fn near_misses_of_a_good_value_do_not_verify(i in 0usize..200, b in any::<u8>()) {
            let k = key(10);
            let v = verifier([k.clone()]);
            let mut value = signed(&k, &claim(), &REQ).into_bytes();
            let i = i % value.len();
            prop_assume!(value[i] != b);
            value[i] = b;
            prop_assert!(v.verify_at(Some(&value), &REQ, at(T)).is_err());
        }
    }
}
