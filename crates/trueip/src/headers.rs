//! Reading request headers without caring which HTTP library holds them.

use std::fmt;
use std::sync::Arc;

use crate::error::ConfigError;

/// The most lines of one header that a resolution looks at. Lines are kept from
/// the right (the end of the request), because that is where trusted hops write;
/// a request with more lines than this cannot be walked past the kept ones.
pub const MAX_LINES: usize = 16;

/// A header field name, validated and lower-cased once, at configuration time.
///
/// Cheap to clone (no allocation), so results can carry the name of the header
/// that decided them.
#[derive(Clone)]
pub struct FieldName {
    lower: Repr,
    #[cfg(feature = "http")]
    http: http::HeaderName,
}

#[derive(Clone)]
enum Repr {
    Static(&'static str),
    Shared(Arc<str>),
}

impl FieldName {
    /// A name known at compile time. It must already be a lower-case token.
    ///
    /// # Panics
    /// At compile time (in a `const`) or at once, if `name` is not a lower-case token.
    pub const fn from_static(name: &'static str) -> Self {
        let mut bytes = name.as_bytes();
        assert!(!bytes.is_empty(), "empty header name");
        while let [b, rest @ ..] = bytes {
            assert!(
                is_token_byte(*b) && !b.is_ascii_uppercase(),
                "header name must be a lower-case token"
            );
            bytes = rest;
        }
        FieldName {
            lower: Repr::Static(name),
            #[cfg(feature = "http")]
            http: http::HeaderName::from_static(name),
        }
    }

    /// Validates and lower-cases a configured header name: one or more RFC 9110 token
    /// characters, the rule [`parse_header_line`] holds names to.
    pub fn new(name: &str) -> Result<Self, ConfigError> {
        name_fault(name).map_or_else(|| Self::from_token(name), Err).map_err(|fault| {
            ConfigError::new(format!("invalid header name \"{name}\": {fault}")).hint(NAME_HINT)
        })
    }

    /// A name [`name_fault`] has accepted.
    fn from_token(name: &str) -> Result<Self, HeaderFault> {
        let lower = name.to_ascii_lowercase();
        Ok(FieldName {
            // `http` refuses a name that is not a token or longer than `MAX_NAME_LEN`, both
            // refused already: the error is only there because `from_bytes` has one.
            #[cfg(feature = "http")]
            http: http::HeaderName::from_bytes(lower.as_bytes())
                .map_err(|_| HeaderFault::NameTooLong)?,
            lower: Repr::Shared(lower.into()),
        })
    }

    /// The lower-case name.
    pub fn as_str(&self) -> &str {
        match &self.lower {
            Repr::Static(s) => s,
            Repr::Shared(s) => s,
        }
    }

    /// The same name as an `http` crate header name.
    #[cfg(feature = "http")]
    pub fn as_http(&self) -> &http::HeaderName {
        &self.http
    }
}

impl AsRef<str> for FieldName {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq for FieldName {
    fn eq(&self, other: &Self) -> bool {
        let (a, b) = (self.as_str(), other.as_str());
        // Names made from one constant share their bytes, and the request path compares
        // the table's names with themselves (`Policy::reads_client_from` on every
        // client-IP header line from a trusted hop): equal pointers need no byte compare.
        a.len() == b.len() && (std::ptr::eq(a.as_ptr(), b.as_ptr()) || a == b)
    }
}

impl Eq for FieldName {}

impl fmt::Debug for FieldName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for FieldName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An RFC 9110 `tchar`: the bytes of header names and of `Forwarded` tokens.
///
/// A table, since `Forwarded` parsing asks once per byte.
#[inline(always)]
#[allow(clippy::indexing_slicing, reason = "a u8 always indexes a 256-entry table")]
pub(crate) const fn is_token_byte(b: u8) -> bool {
    TOKEN_BYTES[b as usize]
}

/// [`is_token_byte`] for every byte value, built at compile time.
#[allow(clippy::indexing_slicing, reason = "b < 256 by the loop condition")]
const TOKEN_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = token_byte(b as u8);
        b += 1;
    }
    table
};

const fn token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
        )
}

const NAME_HINT: &str =
    "a header name is letters, digits and !#$%&'*+-.^_`|~, e.g. \"X-Client-IP\"";

/// Whether `name`, as received (any case, any byte but a letter or a digit for a dash,
/// as CGI, WSGI and PHP servers read them), spells `lower` (a lower-case name, read so
/// too: `X-Edge-Client` spells a configured `x_edge_client`, since an app reads both as
/// `HTTP_X_EDGE_CLIENT`).
///
/// Not only the underscore: lighttpd's CGI, FastCGI and SCGI (so PHP behind lighttpd)
/// make every byte that is not a letter or a digit an underscore
/// (`buffer_copy_string_encoded_cgi_varnames`), as Apache httpd 2.2 did, so `X~Forwarded~For`
/// or `True+Client+IP` reach the app as `HTTP_X_FORWARDED_FOR` and `HTTP_TRUE_CLIENT_IP`;
/// and PHP registers every variable, `$_SERVER` included, with its dots made underscores,
/// so a server that hands PHP `HTTP_X.FORWARDED.FOR` (FrankenPHP's Go API, php-fpm behind
/// an nginx with `ignore_invalid_headers off`) gives the app
/// `$_SERVER['HTTP_X_FORWARDED_FOR']`.
pub fn spells(lower: &str, name: impl AsRef<[u8]>) -> bool {
    let name = name.as_ref();
    lower.len() == name.len() && lower.bytes().zip(name).all(|(l, &b)| read_as(l) == read_as(b))
}

/// `b` in a header name as [`spells`] reads it: a dash for a stand-in, lower case. One
/// load: [`ForwardingSet::fate`] reads two bytes of every line of a request so.
#[inline]
#[allow(clippy::indexing_slicing, reason = "a u8 always indexes a 256-entry table")]
fn read_as(b: u8) -> u8 {
    READ_AS[b as usize]
}

/// [`read_as`] for every byte value, built at compile time.
#[allow(clippy::indexing_slicing, reason = "b < 256 by the loop condition")]
const READ_AS: [u8; 256] = {
    let mut table = [0; 256];
    let mut b = 0;
    while b < 256 {
        let byte = b as u8;
        table[b] = if stands_for_dash(byte) { b'-' } else { byte.to_ascii_lowercase() };
        b += 1;
    }
    table
};

/// `name` as [`spells`] reads it, in lower case with a dash for every other stand-in: two
/// names an app may read as one header are `dashed` alike.
pub fn dashed(name: &str) -> String {
    name.bytes()
        .map(|b| match stands_for_dash(b) {
            true => '-',
            false => char::from(b.to_ascii_lowercase()),
        })
        .collect()
}

/// Whether some server reads `b` in a header name as it reads a dash ([`spells`]).
const fn stands_for_dash(b: u8) -> bool {
    !b.is_ascii_alphanumeric()
}

/// Whether a received name has a byte other than a dash that an app may read as one
/// ([`spells`]).
fn has_stand_in(name: &[u8]) -> bool {
    name.iter().any(|&b| b != b'-' && stands_for_dash(b))
}

/// The hop a request came through, as the withholding rule
/// ([`ForwardingSet::withheld`]) needs it: [`Policy::hop`](crate::Policy::hop) says which.
#[derive(Clone, Copy, Debug)]
pub enum Hop<'p> {
    /// Not through a hop the policy trusts: the client wrote every client-IP header the
    /// request carries.
    Untrusted,
    /// Through a hop `policy` trusts, decided by its strategy `decided`
    /// ([`Resolution::strategy`](crate::Resolution::strategy)). It may pass the client-IP
    /// headers the decision vouched for
    /// ([`Policy::reads_client_from`](crate::Policy::reads_client_from)); any other it
    /// passes may be the client's, relayed unchanged (nginx, an ALB and most CDNs relay a
    /// `True-Client-IP` they do not write themselves), and so may a `header:NAME`
    /// strategy's header when that strategy did not decide (it was not reached, refused
    /// several lines, or does not trust the peer).
    Trusted {
        /// The policy that trusts the hop.
        policy: &'p crate::Policy,
        /// The index of its strategy that decided, `None` when none did.
        decided: Option<u8>,
        /// The list header the hop did not keep, so that the decision could not read it
        /// whatever the policy's strategies say: `X-Forwarded-For` in a Lambda Function
        /// URL event ([`Warnings::XFF_NOT_KEPT`](crate::Warnings::XFF_NOT_KEPT)), whose
        /// only value is the client's. It is withheld as a client address the policy does
        /// not read, and so are the claims such a hop passes on as it received them
        /// ([`UNKEPT_CLAIMS`]).
        unkept: Option<crate::ListHeader>,
    },
}

/// The claims about the request that a trusted hop which did not keep its list header
/// ([`Hop::Trusted`]'s `unkept`: a Lambda Function URL) hands over with no viewer's
/// word behind them: `X-Forwarded-Proto` and `X-Forwarded-Port`. Behind CloudFront, which
/// removes a viewer's `X-Forwarded-Proto`, an event still held `https`, the URL's own for
/// CloudFront's connection to it; a port header may be the client's or the URL's (an ALB
/// or API Gateway writes both for its own client). So no trusted hop vouches for them as
/// the viewer's. Withheld from the app ([`ForwardingSet::fate`]) and never read as the
/// client's scheme or port ([`origin`](crate::origin::origin)): one list for both.
pub const UNKEPT_CLAIMS: [FieldName; 2] = [names::X_FORWARDED_PROTO, names::X_FORWARDED_PORT];

impl<'p> Hop<'p> {
    /// The trusted hop `policy` trusts that handed over a request decided as
    /// `resolution`: [`Policy::hop`](crate::Policy::hop) when the policy's own rule
    /// ([`came_through_trusted_hop`](crate::Policy::came_through_trusted_hop)) says the
    /// hop is trusted, and a caller that knows it otherwise (a signed header it verified).
    pub fn trusted(policy: &'p crate::Policy, resolution: &crate::Resolution) -> Self {
        Hop::Trusted {
            policy,
            decided: resolution.strategy,
            unkept: resolution
                .warnings
                .contains(crate::Warnings::XFF_NOT_KEPT)
                .then_some(crate::ListHeader::XForwardedFor),
        }
    }

    /// Whether the request came through a trusted hop.
    pub fn is_trusted(self) -> bool {
        matches!(self, Hop::Trusted { .. })
    }
}

/// The client-IP headers an app must not see, and the one rule for when
/// ([`withheld`](Self::withheld), which `trueip serve` and the middlewares ask of every
/// line): [`names::FORWARDING`] by default, less the names a deployment keeps on purpose,
/// plus the names it configures.
///
/// - From an untrusted peer every one of them is withheld: the client wrote it.
/// - From a trusted hop, one that claims something about the request (scheme, host, port,
///   prefix: [`names::Claim::Request`]), who the client proved to be (its certificate:
///   [`names::Claim::Identity`]) or the CDN distribution passes, and so does a
///   client address the decision read ([`Policy::reads_client_from`](crate::Policy::reads_client_from):
///   the list headers, and the header of the `header:NAME` strategy that decided). Any
///   other client address is withheld: a trusted hop relays what the client sent as
///   readily as it writes, and the policy did not check it (nor a `header:NAME`
///   strategy's header when another strategy decided). A deployment whose hop writes one
///   that the app reads names it in [`relaying`](Self::relaying). A list header the hop
///   did not keep ([`Hop::Trusted`]'s `unkept`: a Lambda Function URL's `X-Forwarded-For`)
///   is withheld whatever the policy reads or the deployment relays.
/// - Spelled with underscores, dots or other punctuation for dashes, one is withheld
///   always: no honest proxy writes `X_Forwarded_For`, `X.Forwarded.For` or
///   `X~Forwarded~For`, and WSGI, CGI and PHP read the first as `X-Forwarded-For`, PHP
///   the second too, PHP behind lighttpd the third.
///
/// Every lookup ([`fate`](Self::fate), [`position`](Self::position),
/// [`spelled`](Self::spelled), [`withheld`](Self::withheld)) first tests a name's length
/// and its signature (length, first, third and last byte): most lines of a request
/// (`Host`, `User-Agent`, `Accept-Encoding`, `X-Request-Id`, ...) share them with no
/// forwarding header, and no name is compared for them; the others are compared only with
/// the names of their length.
///
/// ```
/// use trueip::headers::{ForwardingSet, Hop, names};
/// use trueip::Policy;
///
/// let policy = Policy::builder().trust_str("10.0.0.0/8")?.build()?;
/// let behind = Hop::Trusted { policy: &policy, decided: Some(0), unkept: None };
/// let set = ForwardingSet::for_policy(&policy).without(&[names::X_FORWARDED_PROTO]);
/// assert!(set.withheld(b"X-Forwarded-For", Hop::Untrusted)); // the client wrote it
/// assert!(!set.withheld(b"X-Forwarded-For", behind)); // the policy read it
/// assert!(set.withheld(b"True-Client-IP", behind)); // the policy did not
/// assert!(set.withheld(b"X_Forwarded_For", behind)); // no honest proxy writes this
/// assert!(!set.withheld(b"X-Forwarded-Proto", Hop::Untrusted)); // kept on purpose
/// # Ok::<(), trueip::ConfigError>(())
/// ```
#[derive(Clone, Debug)]
pub struct ForwardingSet {
    names: Vec<FieldName>,
    /// Whether each of `names` has an underscore or other stand-in for a dash ([`spells`];
    /// only a configured name can).
    underscored: Vec<bool>,
    /// Whether a trusted hop may pass each of `names` whatever the policy reads: the
    /// table's request, identity and origin claims, and the names
    /// [`relaying`](Self::relaying) adds.
    relayed: Vec<bool>,
    /// Whether a line of each of `names` from a stranger is withheld without counting as
    /// a forgery: the table's [`names::Claim::Hops`] rows, which forward proxies in front
    /// of clients write honestly.
    honest: Vec<bool>,
    /// The lengths of `names`, as a bit set ([`length_bit`]).
    lengths: u64,
    /// The indices of `names` by length: those of length `n` (63 and longer together, as
    /// [`length_bit`] has them) are `by_length[starts[n]..starts[n + 1]]`. A lookup then
    /// compares a name with the one or two of its length, not with the whole table, which
    /// the Rust adapters do for every line of every request.
    by_length: Vec<usize>,
    /// Each name's [`signature`] bit: a name whose bit is clear neither is one of `names`
    /// nor spells one, and [`fate`](Self::fate) passes it after one hash and one test.
    /// Most lines of a request (`Accept-Encoding`, `X-Request-Id`, ...) are answered so.
    signatures: [u64; SIGNATURE_WORDS],
    starts: [usize; 65],
}

/// What [`ForwardingSet::fate`] says of one header line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NameFate {
    /// Where its name is in [`ForwardingSet::names`], spelled exactly (in any case).
    pub index: Option<usize>,
    /// Whether the line is kept from the app ([`ForwardingSet::withheld`]).
    pub withheld: bool,
    /// Whether it is withheld as a forgery: it did not come through a trusted hop (and
    /// is not `Via`, [`names::Claim::Hops`]), or it is spelled with punctuation for dashes. A
    /// line withheld otherwise came through a trusted hop that may have written it
    /// honestly, or is a forward proxy's `Via`; no strategy reads it.
    pub forged: bool,
}

impl Default for ForwardingSet {
    /// The table, [`names::FORWARDING`]: [`for_policy`](Self::for_policy) of the default
    /// policy.
    fn default() -> Self {
        ForwardingSet::for_policy(&crate::Policy::default())
    }
}

impl ForwardingSet {
    fn from_names(names: Vec<FieldName>, relayed: Vec<bool>) -> Self {
        let lengths = names.iter().fold(0, |bits, n| bits | length_bit(n.as_str().len()));
        let bucket = |n: &FieldName| n.as_str().len().min(63);
        let mut signatures = [0; SIGNATURE_WORDS];
        for name in &names {
            let (word, bit) = signature(name.as_str().as_bytes());
            if let Some(w) = signatures.get_mut(word) {
                *w |= bit;
            }
        }
        let mut by_length: Vec<usize> = (0..names.len()).collect();
        // Stable: a length's names keep the table's order.
        by_length.sort_by_key(|&i| names.get(i).map(bucket));
        let mut starts = [0; 65];
        for (n, start) in starts.iter_mut().enumerate() {
            *start = names.iter().filter(|name| bucket(name) < n).count();
        }
        let underscored: Vec<bool> =
            names.iter().map(|n| has_stand_in(n.as_str().as_bytes())).collect();
        let honest = names
            .iter()
            .map(|n| {
                names::FORWARDING
                    .iter()
                    .any(|row| row.name == *n && row.claim == names::Claim::Hops)
            })
            .collect();
        ForwardingSet {
            names,
            underscored,
            relayed,
            honest,
            lengths,
            by_length,
            signatures,
            starts,
        }
    }

    /// The table plus every header `policy` reads a client address or its origin secret
    /// from ([`Policy::client_ip_headers`](crate::Policy::client_ip_headers)): the set a
    /// middleware in front of an app withholds. A `header:X-Client-Addr` strategy's
    /// header is the client's to write when the request did not come through a trusted
    /// hop, like `X-Forwarded-For`, and an app that reads it itself must not see it.
    pub fn for_policy(policy: &crate::Policy) -> Self {
        // The origin secret passes no trusted hop, even when it is a row that would
        // (`X-Azure-FDID`): it has done its job, and the app has no use for it.
        let secret = policy.origin_secret().map(crate::OriginSecret::name);
        let mut set: Vec<(FieldName, bool)> = names::FORWARDING
            .iter()
            .map(|row| {
                // An address, or the hops (`Via`), may hold what the client wrote
                // however trusted the hop that hands it on.
                let passes = matches!(
                    row.claim,
                    names::Claim::Request | names::Claim::Identity | names::Claim::Origin
                ) && secret != Some(&row.name);
                (row.name.clone(), passes)
            })
            .collect();
        for name in policy.client_ip_headers() {
            if !set.iter().any(|(n, _)| n == name) {
                set.push((name.clone(), false));
            }
        }
        ForwardingSet::from_pairs(set)
    }

    fn from_pairs(set: Vec<(FieldName, bool)>) -> Self {
        let (names, relayed) = set.into_iter().unzip();
        ForwardingSet::from_names(names, relayed)
    }

    fn pairs(self) -> Vec<(FieldName, bool)> {
        self.names.into_iter().zip(self.relayed).collect()
    }

    /// The set less `kept`: names a deployment passes to the app whoever sent them.
    pub fn without(self, kept: &[FieldName]) -> Self {
        let mut set = self.pairs();
        set.retain(|(n, _)| !kept.contains(n));
        ForwardingSet::from_pairs(set)
    }

    /// The set with `name` too (once): a client address no policy reads unless one says
    /// so, withheld from trusted hops too until [`relaying`](Self::relaying) names it.
    pub fn with(self, name: FieldName) -> Self {
        let mut set = self.pairs();
        if !set.iter().any(|(n, _)| *n == name) {
            set.push((name, false));
        }
        ForwardingSet::from_pairs(set)
    }

    /// The set with `relayed` passed from trusted hops whatever the policy reads: names a
    /// deployment's trusted hops write themselves, for an app that reads them (Akamai's
    /// `True-Client-IP`). Names outside the set are not added: they pass already.
    pub fn relaying(self, relayed: &[FieldName]) -> Self {
        let mut set = self.pairs();
        for (name, relays) in &mut set {
            *relays |= relayed.contains(name);
        }
        ForwardingSet::from_pairs(set)
    }

    /// The names, in the table's order, then the added ones.
    pub fn names(&self) -> &[FieldName] {
        &self.names
    }

    /// Where `name`, given in any case, is in [`names`](Self::names).
    #[inline]
    pub fn position(&self, name: &str) -> Option<usize> {
        if !self.may_name(name.as_bytes()) {
            return None;
        }
        self.find(name)
    }

    /// Whether `name` may be one of the names, or spell one ([`spells`]): its length is
    /// one of theirs (one test, which most short names fail: `Host`, `Accept`, `Cookie`)
    /// and so is its [`signature`] (which the other common names fail: `User-Agent`,
    /// `Accept-Encoding`, `Accept-Language`). A name that passes is then compared only
    /// with the names of its length.
    #[inline]
    fn may_name(&self, name: &[u8]) -> bool {
        self.lengths & length_bit(name.len()) != 0 && self.has_signature(name)
    }

    /// Whether one of the names has `name`'s [`signature`].
    #[inline]
    fn has_signature(&self, name: &[u8]) -> bool {
        let (word, bit) = signature(name);
        self.signatures.get(word).is_some_and(|w| w & bit != 0)
    }

    /// [`position`](Self::position) past the prefilter.
    fn find(&self, name: &str) -> Option<usize> {
        // The first byte first: names of one length seldom share it (`accept-encoding`,
        // `proxy-client-ip`, `x-forwarded-for`), and it is one compare.
        let first = name.as_bytes().first().map(u8::to_ascii_lowercase);
        self.of_length(name.len()).find(|&i| {
            self.names.get(i).is_some_and(|n| {
                n.as_str().as_bytes().first().copied() == first && is_lower_name(name, n.as_str())
            })
        })
    }

    /// The indices of the names of length `len` (all of 63 and longer, for such a `len`).
    #[inline]
    fn of_length(&self, len: usize) -> impl Iterator<Item = usize> + '_ {
        let n = len.min(63);
        let from = self.starts.get(n).copied().unwrap_or(0);
        let to = self.starts.get(n + 1).copied().unwrap_or(0);
        self.by_length.get(from..to).unwrap_or_default().iter().copied()
    }

    /// Whether `name` spells one of the names in any case, with any punctuation for
    /// dashes ([`spells`]).
    pub fn spelled(&self, name: &[u8]) -> bool {
        self.may_name(name) && self.find_spelled(name)
    }

    /// [`spelled`](Self::spelled) past the prefilter.
    fn find_spelled(&self, name: &[u8]) -> bool {
        // The first byte first, as in `position`.
        let first = name.first().copied().map(read_as);
        self.of_length(name.len()).any(|i| {
            self.names.get(i).is_some_and(|n| {
                n.as_str().as_bytes().first().copied().map(read_as) == first
                    && spells(n.as_str(), name)
            })
        })
    }

    /// Whether a request header line named `name` (as received), for a request that came
    /// through `hop`, must be kept from the app: one of these headers when the request
    /// did not come through a trusted hop, since the client wrote it; from a trusted hop,
    /// a client address the hop's policy does not read (see the type's doc); and one
    /// spelled with other punctuation for dashes (`X_Forwarded_For`, `X.Forwarded.For`, `X~Forwarded~For`) always,
    /// since no honest proxy writes one and WSGI, CGI and PHP read it as the real header.
    ///
    /// A name that is not an RFC 9110 token is withheld too: no forwarding header is
    /// spelled so, and a lenient server may fold it into one (Django upper-cases names as
    /// Latin-1, and `"ß".upper()` is `"SS"`: `X-Forwarded-\xdfL` becomes
    /// `HTTP_X_FORWARDED_SSL`).
    pub fn withheld(&self, name: &[u8], hop: Hop<'_>) -> bool {
        if name.is_empty() || !name.iter().all(|&b| is_token_byte(b)) {
            return true;
        }
        // No name of the set has this length and signature, in any spelling (what `fate`
        // finds first): most lines of a request, answered without the text conversion.
        if !self.may_name(name) {
            return false;
        }
        // Token bytes are ASCII.
        std::str::from_utf8(name).map_or(true, |name| self.fate(name, hop).withheld)
    }

    /// The names among `names` whose lines the app must not see, for a request that came
    /// through `hop`: [`fate`](Self::fate) of each, as `trueip serve` and the Python
    /// middlewares ask it of every line. `names` are a header map's keys (an
    /// `http::HeaderMap`'s, actix-web's), each a token, each once; the Rust adapters then
    /// remove every line of each name returned.
    ///
    /// Allocates only when one is withheld: a request that carries no client-IP header, or
    /// only those a trusted hop wrote for the policy to read, costs one pass over its names.
    pub fn withheld_names<'n, N>(
        &self,
        names: impl IntoIterator<Item = &'n N>,
        hop: Hop<'_>,
    ) -> Vec<N>
    where
        N: AsRef<str> + Clone + 'n,
    {
        names.into_iter().filter(|name| self.fate(name.as_ref(), hop).withheld).cloned().collect()
    }

    /// [`withheld`](Self::withheld) for a name already known to be a token (an
    /// `http::HeaderName`, a name [`parse_header_line`] accepted), as `trueip serve` asks it
    /// of every line, with where the name is in the set: one lookup for both.
    ///
    /// Without the token check, and for the usual line (no underscore) a comparison in
    /// any case: [`spells`] is one for a name without an underscore.
    #[inline]
    pub fn fate(&self, name: &str, hop: Hop<'_>) -> NameFate {
        if !self.may_name(name.as_bytes()) {
            return NameFate { index: None, withheld: false, forged: false };
        }
        let index = self.find(name);
        let (withheld, forged) = match index {
            // Spelled exactly: an underscore in it is one in the set's name.
            Some(i) => match hop {
                Hop::Untrusted => (true, !self.honest.get(i).copied().unwrap_or(false)),
                Hop::Trusted { .. } if self.underscored.get(i).copied().unwrap_or(true) => {
                    (true, true)
                }
                Hop::Trusted { policy, decided, unkept } => {
                    let name = self.names.get(i);
                    // Before `relayed`: the hop is trusted, but what it handed over under
                    // this name is the client's, whoever the deployment says writes it.
                    let passes = !unkept.is_some_and(|u| {
                        name.is_some_and(|n| n == u.field_ref() || UNKEPT_CLAIMS.contains(n))
                    }) && (self.relayed.get(i).copied().unwrap_or(false)
                        || name.is_some_and(|n| policy.reads_client_from(n, decided)));
                    (!passes, false)
                }
            },
            // Not spelled exactly, so spelled at all only with other punctuation for
            // dashes.
            None => {
                // Compared with the names of its length only, each up to its first
                // difference: cheaper than first looking for a stand-in in `name`.
                let spelled = self.find_spelled(name.as_bytes());
                (spelled, spelled)
            }
        };
        NameFate { index, withheld, forged }
    }
}

/// How many words [`ForwardingSet`]'s signature bits take: 4,096 bits, so that a set of
/// the table's size (120 names) leaves about one name in thirty-four of another signature to
/// the full lookup; none of the common request headers
/// (`common_request_headers_pass_on_the_prefilter`).
const SIGNATURE_WORDS: usize = 64;

/// A name's length (63 and longer as one), and its first, third and last bytes as
/// [`spells`] reads them, hashed to one of [`SIGNATURE_WORDS`]` * 64` bits: (word, bit).
/// Two names [`spells`] reads as one, and so two that differ only in case, share it. The
/// third byte is the first after an `X-`: it tells apart common names that share the
/// rest with one of the table (`X-Request-Id` and `X-Azure-FDID`).
#[inline]
fn signature(name: &[u8]) -> (usize, u64) {
    let at = |i: usize| name.get(i).copied().map_or(0, read_as);
    let len = name.len().min(63);
    let key = u32::from(at(0))
        | u32::from(at(2)) << 8
        | u32::from(at(name.len().wrapping_sub(1))) << 16
        | u32::try_from(len).unwrap_or(63) << 24;
    // Fibonacci hashing: the top 12 bits of the product.
    let h = u64::from(key).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 52;
    let h = usize::try_from(h).unwrap_or(0);
    (h / 64, 1 << (h % 64))
}

/// A name length's bit in a set of name lengths; 63 and longer share the last.
#[inline(always)]
pub(crate) fn length_bit(len: usize) -> u64 {
    1 << len.min(63)
}

/// Whether `name`, in any case, is `lower`, a lower-case name (as every `FieldName` and
/// `http::HeaderName` is): `name.eq_ignore_ascii_case(lower)` for such a `lower`, eight
/// bytes at a time. Written out because `trueip serve` runs it on every request, several
/// times for each client-IP header line (the lean path's checks, the header rules, the
/// reads of the decision), and `eq_ignore_ascii_case` compares a byte at a time up to 15
/// bytes, the length of `X-Forwarded-For` (callgrind, `bench/instructions.sh`: the
/// client-IP header lookup went from 1,241 to 137 instructions per proxied request).
/// Inlined as far as the length test, which most pairs fail.
#[inline]
pub fn is_lower_name(name: &str, lower: &str) -> bool {
    name.len() == lower.len() && same_length_lower_name(name.as_bytes(), lower.as_bytes())
}

/// [`is_lower_name`] for two names of the same length.
fn same_length_lower_name(name: &[u8], lower: &[u8]) -> bool {
    let (Some(name_end), Some(lower_end)) = (name.last_chunk::<8>(), lower.last_chunk::<8>())
    else {
        return name.eq_ignore_ascii_case(lower);
    };
    // The first and the last eight bytes, which may overlap: a byte compared twice is
    // equal both times. Up to 16 bytes (nearly every client-IP header: `X-Forwarded-For`
    // is 15) that is the whole name, in two words and no loop.
    if let (Some(name_start), Some(lower_start)) =
        (name.first_chunk::<8>(), lower.first_chunk::<8>())
        && name.len() <= 16
    {
        return lowered(name_start) == u64::from_ne_bytes(*lower_start)
            && lowered(name_end) == u64::from_ne_bytes(*lower_end);
    }
    // Whole words from the start, then the last eight bytes.
    let (words, _) = name.as_chunks::<8>();
    let (lower_words, _) = lower.as_chunks::<8>();
    words.iter().zip(lower_words).all(|(w, l)| lowered(w) == u64::from_ne_bytes(*l))
        && lowered(name_end) == u64::from_ne_bytes(*lower_end)
}

/// Eight bytes as one word, each of `A..=Z` made lower case (what `to_ascii_lowercase`
/// does to each byte), every other byte as it was.
fn lowered(bytes: &[u8; 8]) -> u64 {
    const EACH: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = EACH * 0x80;
    let word = u64::from_ne_bytes(*bytes);
    let low = word & !HIGH;
    // Bit 7 of each byte: set where its low seven bits are at least `A`, and where they
    // are past `Z`. Neither sum carries into the next byte (0x7f + 0x3f < 0x100).
    let from_a = low + EACH * u64::from(0x80 - b'A');
    let past_z = low + EACH * u64::from(0x80 - b'Z' - 1);
    let upper = from_a & !past_z & !word & HIGH;
    word | (upper >> 2)
}

/// Reads one header line, `Name: value`, as an HTTP/1.1 server must (RFC 9112 §5, RFC 9110
/// §5.1–5.5), and returns the name and the value without the spaces and tabs around it.
///
/// This is the rule `trueip serve` applies to the wire (its parser answers 400 to anything
/// else), so every other way a header reaches a decision (`trueip explain --header` and
/// `--batch`, a configured origin secret) goes through it too: a line serve would refuse
/// must not decide a client anywhere. Refused:
///
/// - no colon, or an empty name;
/// - a line that starts with a space or tab: on the wire it continues the previous line
///   (obsolete line folding), which a server must refuse or merge, never read as a header;
/// - whitespace between the name and the colon (RFC 9112 §5.1: a server must answer 400;
///   proxies that strip it and proxies that keep it would read different headers);
/// - any other byte in the name that is not a token character;
/// - in the value, any control byte but the tab (CR, LF, NUL, ESC, ...) and DEL. Visible
///   ASCII, spaces, tabs and bytes from 0x80 up (obs-text) are allowed.
///
/// ```
/// use trueip::headers::{HeaderFault, parse_header_line};
///
/// let (name, value) = parse_header_line("X-Forwarded-For:  203.0.113.9 \t")?;
/// assert_eq!((name.as_str(), value), ("x-forwarded-for", "203.0.113.9"));
///
/// // `trueip serve` answers 400 to these; nothing else may read them either.
/// let refused = parse_header_line("X-Forwarded-For : 6.6.6.6").unwrap_err();
/// assert_eq!(refused.fault(), HeaderFault::WhitespaceBeforeColon);
/// assert!(refused.to_string().contains("write \"X-Forwarded-For: 6.6.6.6\""));
/// let folded = parse_header_line(" X-Forwarded-For: 6.6.6.6").unwrap_err();
/// assert_eq!(folded.fault(), HeaderFault::LeadingWhitespace);
/// let smuggled = parse_header_line("X-Real-IP: 1.1.1.1\r\nX-Forwarded-For: 6.6.6.6").unwrap_err();
/// assert_eq!(smuggled.fault(), HeaderFault::ValueByte(b'\r'));
/// # Ok::<(), trueip::headers::HeaderLineError>(())
/// ```
pub fn parse_header_line(line: &str) -> Result<(FieldName, &str), HeaderLineError> {
    let refused = |fault| HeaderLineError::new(fault, line.to_owned());
    let (name, value) = line.split_once(':').ok_or_else(|| refused(HeaderFault::NoColon))?;
    let name = check_field(name, value.as_bytes()).map_err(refused)?;
    Ok((name, value.trim_matches([' ', '\t'])))
}

/// [`parse_header_line`] for a header already split into name and value (a JSON pair, a
/// config table, a parsed request): the same rule, as if the line were `name: value`.
///
/// ```
/// use trueip::headers::{HeaderFault, parse_header_field};
///
/// let (name, value) = parse_header_field("X-Real-IP", b" 198.51.100.4")?;
/// assert_eq!((name.as_str(), value), ("x-real-ip", &b"198.51.100.4"[..]));
/// let err = parse_header_field("X-Real-IP", b"198.51.100.4\0").unwrap_err();
/// assert_eq!(err.fault(), HeaderFault::ValueByte(0));
/// # Ok::<(), trueip::headers::HeaderLineError>(())
/// ```
pub fn parse_header_field<'v>(
    name: &str,
    value: &'v [u8],
) -> Result<(FieldName, &'v [u8]), HeaderLineError> {
    let field = check_field(name, value).map_err(|fault| {
        HeaderLineError::new(fault, format!("{name}: {}", String::from_utf8_lossy(value)))
    })?;
    Ok((field, crate::addr::trim(value)))
}

/// The rule itself, for both forms: the name, then the value (untrimmed: the spaces and
/// tabs around it are allowed, and each form trims its own type).
fn check_field(name: &str, value: &[u8]) -> Result<FieldName, HeaderFault> {
    match name_fault(name).or_else(|| value_fault(value)) {
        Some(fault) => Err(fault),
        None => FieldName::from_token(name),
    }
}

/// What is wrong with a header name, if anything: the one name rule, shared by
/// [`FieldName::new`] and the line parsers. Whitespace at either end gets a fault of its
/// own, since that is how a name that looks right is usually wrong.
fn name_fault(name: &str) -> Option<HeaderFault> {
    match name.as_bytes() {
        [] => Some(HeaderFault::EmptyName),
        bytes if bytes.len() > MAX_NAME_LEN => Some(HeaderFault::NameTooLong),
        [b' ' | b'\t', ..] => Some(HeaderFault::LeadingWhitespace),
        [.., b' ' | b'\t'] => Some(HeaderFault::WhitespaceBeforeColon),
        bytes => bytes.iter().find(|b| !is_token_byte(**b)).map(|b| HeaderFault::NameByte(*b)),
    }
}

/// The longest header name: `http::HeaderName`'s limit, so a name means the same with and
/// without the `http` feature.
pub const MAX_NAME_LEN: usize = (1 << 16) - 1;

/// The first byte a header value may not hold: RFC 9110 §5.5's `field-content` is visible
/// ASCII, SP, HTAB and obs-text (0x80–0xFF); httparse and `http::HeaderValue` refuse the rest.
fn value_fault(value: &[u8]) -> Option<HeaderFault> {
    value
        .iter()
        .find(|b| !matches!(**b, b'\t' | b' '..=b'~' | 0x80..=0xff))
        .map(|b| HeaderFault::ValueByte(*b))
}

/// Why [`parse_header_line`] or [`parse_header_field`] refused a header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HeaderFault {
    /// No `:` separates the name from the value.
    NoColon,
    /// Nothing before the colon.
    EmptyName,
    /// The line starts with a space or tab (obsolete line folding).
    LeadingWhitespace,
    /// A space or tab between the name and the colon.
    WhitespaceBeforeColon,
    /// A byte that is not a token character, in the name.
    NameByte(u8),
    /// A name longer than [`MAX_NAME_LEN`].
    NameTooLong,
    /// A control byte (not the tab) or DEL, in the value.
    ValueByte(u8),
}

impl fmt::Display for HeaderFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeaderFault::NoColon => f.write_str("no colon between the name and the value"),
            HeaderFault::EmptyName => f.write_str("the name is empty"),
            HeaderFault::LeadingWhitespace => f.write_str(
                "the line starts with whitespace, which on the wire continues the previous \
                 header (obsolete line folding)",
            ),
            HeaderFault::WhitespaceBeforeColon => {
                f.write_str("whitespace between the name and the colon")
            }
            HeaderFault::NameTooLong => {
                write!(f, "the name is longer than {MAX_NAME_LEN} bytes")
            }
            HeaderFault::NameByte(b) => {
                write!(f, "the name holds {}, which is not a token character", Byte(*b))
            }
            HeaderFault::ValueByte(b) => write!(
                f,
                "the value holds {}; a value is visible characters, spaces and tabs",
                Byte(*b)
            ),
        }
    }
}

/// A byte as the quoted line shows it (`'\r'`, `'\u{7f}'`), or its number when it is
/// part of a UTF-8 character.
struct Byte(u8);

impl fmt::Display for Byte {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_ascii() {
            write!(f, "{:?}", char::from(self.0))
        } else {
            write!(f, "the non-ASCII byte {:#04x}", self.0)
        }
    }
}

/// A header line that [`parse_header_line`] (or [`parse_header_field`]) refused: the fault,
/// and the line as given, for a message that quotes it and suggests the fix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderLineError {
    fault: HeaderFault,
    line: String,
}

/// How much of a refused line an error keeps: enough to recognise it, bounded because the
/// line may come from the network.
const QUOTED_LINE: usize = 200;

impl HeaderLineError {
    fn new(fault: HeaderFault, mut line: String) -> Self {
        if line.len() > QUOTED_LINE {
            let mut end = QUOTED_LINE;
            while !line.is_char_boundary(end) {
                end -= 1;
            }
            line.truncate(end);
            line.push('…');
        }
        HeaderLineError { fault, line }
    }

    /// What is wrong with the line.
    pub fn fault(&self) -> HeaderFault {
        self.fault
    }

    /// How to write the line instead: the repaired line when only whitespace was misplaced.
    fn hint(&self) -> String {
        let repaired = || {
            let (name, value) = self.line.split_once(':')?;
            Some(format!("{}: {}", name.trim(), value.trim()))
        };
        match self.fault {
            HeaderFault::LeadingWhitespace | HeaderFault::WhitespaceBeforeColon => {
                match repaired() {
                    Some(line) => format!("write {line:?}"),
                    None => "remove the whitespace".to_owned(),
                }
            }
            HeaderFault::NoColon | HeaderFault::EmptyName => {
                "write \"X-Forwarded-For: 203.0.113.9\"".to_owned()
            }
            HeaderFault::NameByte(_) | HeaderFault::NameTooLong => NAME_HINT.to_owned(),
            HeaderFault::ValueByte(b'\r' | b'\n') => {
                "a line break ends a header: give each header a line of its own".to_owned()
            }
            HeaderFault::ValueByte(_) => "remove the control character".to_owned(),
        }
    }
}

impl fmt::Display for HeaderLineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid header {:?}: {} (hint: {}; `trueip serve` answers 400 to this line)",
            self.line,
            self.fault,
            self.hint()
        )
    }
}

impl std::error::Error for HeaderLineError {}

/// Header names trueip knows.
pub mod names {
    use super::FieldName;
    /// `X-Forwarded-For`
    pub const X_FORWARDED_FOR: FieldName = FieldName::from_static("x-forwarded-for");
    /// `Forwarded` (RFC 7239)
    pub const FORWARDED: FieldName = FieldName::from_static("forwarded");
    /// `X-Real-IP` (nginx `proxy_set_header X-Real-IP $remote_addr`)
    pub const X_REAL_IP: FieldName = FieldName::from_static("x-real-ip");
    /// `CF-Connecting-IP` (Cloudflare)
    pub const CF_CONNECTING_IP: FieldName = FieldName::from_static("cf-connecting-ip");
    /// `True-Client-IP` (Cloudflare Enterprise, Akamai)
    pub const TRUE_CLIENT_IP: FieldName = FieldName::from_static("true-client-ip");
    /// `Fastly-Client-IP`
    pub const FASTLY_CLIENT_IP: FieldName = FieldName::from_static("fastly-client-ip");
    /// `Fly-Client-IP`
    pub const FLY_CLIENT_IP: FieldName = FieldName::from_static("fly-client-ip");
    /// `X-Azure-ClientIP` (Azure Front Door)
    pub const X_AZURE_CLIENTIP: FieldName = FieldName::from_static("x-azure-clientip");
    /// `X-Azure-FDID` (Azure Front Door profile id, an origin secret)
    pub const X_AZURE_FDID: FieldName = FieldName::from_static("x-azure-fdid");
    /// `CloudFront-Viewer-Address` (`ip:port`, IPv6 unbracketed)
    pub const CLOUDFRONT_VIEWER_ADDRESS: FieldName =
        FieldName::from_static("cloudfront-viewer-address");
    /// `X-Forwarded-Proto`
    pub const X_FORWARDED_PROTO: FieldName = FieldName::from_static("x-forwarded-proto");
    /// `X-Forwarded-Host`
    pub const X_FORWARDED_HOST: FieldName = FieldName::from_static("x-forwarded-host");
    /// `X-Forwarded-Port`
    pub const X_FORWARDED_PORT: FieldName = FieldName::from_static("x-forwarded-port");
    /// `X-Forwarded-Prefix`
    pub const X_FORWARDED_PREFIX: FieldName = FieldName::from_static("x-forwarded-prefix");
    /// `X-Client-IP` (set by some load balancers and frameworks)
    pub const X_CLIENT_IP: FieldName = FieldName::from_static("x-client-ip");
    /// `X-Cluster-Client-IP` (Rackspace, Riverbed)
    pub const X_CLUSTER_CLIENT_IP: FieldName = FieldName::from_static("x-cluster-client-ip");
    /// `Cookie` (read by `cookie:NAME` strategies)
    pub const COOKIE: FieldName = FieldName::from_static("cookie");

    /// Fields of the message itself, lower case: its framing, the hop-by-hop fields and
    /// the credentials. No proxy writes a client's address into one, and a gateway may not
    /// write its own claim under one: an upstream reads a claim there as framing, a proxy
    /// before the app drops or acts on a hop-by-hop field, and stripping the client's copy
    /// of a credential strips every client's credentials.
    pub const MESSAGE: [&str; 13] = [
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "upgrade",
        "http2-settings",
        "expect",
        "cookie",
        "authorization",
        "proxy-authorization",
    ];

    /// What a forwarding header claims.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Claim {
        /// The client's address, or the addresses of the hops in front of the app.
        Address,
        /// Something about the original request: its scheme, host, port or path prefix.
        Request,
        /// That the request came through one particular CDN distribution (an origin secret).
        Origin,
        /// Who the client proved to be, or that it is one of the network's own: the
        /// client certificate a TLS-terminating hop checked (its PEM, subject, issuer,
        /// serial, whether it verified), or a hop's word that the request came from
        /// inside (`X-Envoy-Internal`). Apps take it as authentication, as they take
        /// `X-Forwarded-Proto` for the scheme: only the hop that terminated the client's
        /// TLS can know it, so a line that did not come through a trusted hop is a
        /// forgery, and one that did is that hop's word, passed as a request claim is.
        Identity,
        /// The hops the request came through (`Via`): no address, but an app that looks
        /// for one in any header (django-ipware up to 4 reads `HTTP_VIA`) takes a
        /// client's `Via: 6.6.6.6` for its address. Forward proxies in front of clients
        /// write it honestly, so a stranger's line is withheld without counting as a
        /// forgery. A trusted hop's is withheld too, unless relayed on purpose: nginx
        /// passes the client's `Via` as it came and CloudFront appends to it, so what a
        /// trusted hop hands on under this name still holds whatever the client wrote.
        Hops,
    }

    /// One row of [`FORWARDING`]: a header that claims something about the client or the
    /// original request.
    #[derive(Clone, Debug)]
    pub struct Forwarding {
        /// The name, lower case.
        pub name: FieldName,
        /// What it claims.
        pub claim: Claim,
        /// Who writes it and who reads it: why it is in the table (documentation, for the
        /// threat model in docs/SECURITY.md).
        pub used_by: &'static str,
    }

    impl Forwarding {
        /// The lower-case name.
        pub fn as_str(&self) -> &str {
            self.name.as_str()
        }
    }

    const fn row(name: FieldName, claim: Claim, used_by: &'static str) -> Forwarding {
        Forwarding { name, claim, used_by }
    }

    const fn named(name: &'static str, claim: Claim, used_by: &'static str) -> Forwarding {
        row(FieldName::from_static(name), claim, used_by)
    }

    /// Every header that claims something about the client or the original request: the
    /// one list a gateway removes from requests that did not come through a trusted hop
    /// (and, spelled with underscores, from every request: WSGI, CGI and PHP read
    /// `X_Forwarded_For` as `HTTP_X_FORWARDED_FOR`).
    ///
    /// A name belongs here when some proxy or CDN writes it or some app or framework reads
    /// it as the client's address: a header the app believes is one the client must not
    /// be able to send past the gateway. When in doubt a name goes in: stripping a header
    /// nobody reads costs nothing, and a deployment that needs one passes it on purpose
    /// (the gateway's `[headers] keep`).
    pub const FORWARDING: [Forwarding; 120] = {
        use Claim::{Address, Hops, Identity, Origin, Request};
        [
            row(
                X_FORWARDED_FOR,
                Address,
                "every proxy and CDN appends to it; read by nearly every framework (Rails, Django, Express, Spring, Laravel/Symfony, Gin, Echo, Tomcat RemoteIpValve)",
            ),
            row(
                FORWARDED,
                Address,
                "RFC 7239; read by Spring ForwardedHeaderFilter, Symfony/Laravel, Rack 3, python-ipware",
            ),
            row(
                X_REAL_IP,
                Address,
                "nginx `proxy_set_header X-Real-IP $remote_addr`; read by Gin, Echo, python-ipware",
            ),
            named(
                "client-ip",
                Address,
                "read by Rails ActionDispatch::RemoteIp (HTTP_CLIENT_IP), django-/python-ipware, PHP helpers",
            ),
            row(X_CLIENT_IP, Address, "Azure App Service; read by python-ipware"),
            row(
                X_CLUSTER_CLIENT_IP,
                Address,
                "Rackspace LB, Riverbed Stingray; read by django-/python-ipware",
            ),
            named("x-forwarded", Address, "Squid; read by django-/python-ipware"),
            named(
                "forwarded-for",
                Address,
                "a de facto variant of Forwarded; read by django-/python-ipware",
            ),
            named(
                "x-original-forwarded-for",
                Address,
                "ingress-nginx (the X-Forwarded-For it received)",
            ),
            named("x-envoy-external-address", Address, "Envoy, Istio; read by python-ipware"),
            named(
                "x-originating-ip",
                Address,
                "Microsoft Exchange and Outlook on the web; read by apps behind them",
            ),
            named("x-remote-ip", Address, "read by PHP and Java client-IP helpers"),
            named("x-remote-addr", Address, "read by PHP and Java client-IP helpers"),
            named("x-proxyuser-ip", Address, "Google front ends; read by apps behind them"),
            named(
                "proxy-client-ip",
                Address,
                "Apache's WebLogic plugin; read by Java client-IP helpers",
            ),
            named(
                "wl-proxy-client-ip",
                Address,
                "the WebLogic plugin; read by Java client-IP helpers",
            ),
            named(
                "http-client-ip",
                Address,
                "no proxy writes it: Java helpers read getHeader(\"HTTP_CLIENT_IP\")",
            ),
            named(
                "http-x-forwarded-for",
                Address,
                "no proxy writes it: Java helpers read getHeader(\"HTTP_X_FORWARDED_FOR\")",
            ),
            named(
                "http-x-forwarded",
                Address,
                "no proxy writes it: Java helpers read getHeader(\"HTTP_X_FORWARDED\"), python-ipware HTTP_X_FORWARDED from a header map",
            ),
            named(
                "http-x-cluster-client-ip",
                Address,
                "no proxy writes it: Java helpers read getHeader(\"HTTP_X_CLUSTER_CLIENT_IP\"), python-ipware HTTP_X_CLUSTER_CLIENT_IP from a header map",
            ),
            named(
                "http-forwarded-for",
                Address,
                "no proxy writes it: Java helpers read getHeader(\"HTTP_FORWARDED_FOR\"), python-ipware HTTP_FORWARDED_FOR from a header map",
            ),
            named(
                "http-forwarded",
                Address,
                "no proxy writes it: Java helpers read getHeader(\"HTTP_FORWARDED\"), python-ipware HTTP_FORWARDED from a header map",
            ),
            named(
                "http-via",
                Address,
                "no proxy writes it: Java helpers read getHeader(\"HTTP_VIA\")",
            ),
            named(
                "http-x-real-ip",
                Address,
                "no proxy writes it: python-ipware reads HTTP_X_REAL_IP from a header map (any case, `-` for `_`)",
            ),
            named(
                "http-x-client-ip",
                Address,
                "no proxy writes it: python-ipware reads HTTP_X_CLIENT_IP from a header map (any case, `-` for `_`)",
            ),
            named(
                "http-cf-connecting-ip",
                Address,
                "no proxy writes it: python-ipware reads HTTP_CF_CONNECTING_IP from a header map (any case, `-` for `_`)",
            ),
            named(
                "http-true-client-ip",
                Address,
                "no proxy writes it: python-ipware reads HTTP_TRUE_CLIENT_IP from a header map (any case, `-` for `_`)",
            ),
            named(
                "http-fastly-client-ip",
                Address,
                "no proxy writes it: python-ipware reads HTTP_FASTLY_CLIENT_IP from a header map (any case, `-` for `_`)",
            ),
            named(
                "http-fly-client-ip",
                Address,
                "no proxy writes it: python-ipware reads HTTP_FLY_CLIENT_IP from a header map (any case, `-` for `_`)",
            ),
            named(
                "http-x-appengine-user-ip",
                Address,
                "no proxy writes it: python-ipware reads HTTP_X_APPENGINE_USER_IP from a header map (any case, `-` for `_`)",
            ),
            named(
                "http-x-azure-clientip",
                Address,
                "no proxy writes it: python-ipware reads HTTP_X_AZURE_CLIENTIP from a header map (any case, `-` for `_`)",
            ),
            named(
                "http-do-connecting-ip",
                Address,
                "no proxy writes it: python-ipware reads HTTP_DO_CONNECTING_IP from a header map (any case, `-` for `_`)",
            ),
            named(
                "http-x-envoy-external-address",
                Address,
                "no proxy writes it: python-ipware reads HTTP_X_ENVOY_EXTERNAL_ADDRESS from a header map (any case, `-` for `_`)",
            ),
            named(
                "remote-addr",
                Address,
                "no proxy writes it: python-ipware reads REMOTE_ADDR from a header map, Java helpers getHeader(\"REMOTE_ADDR\")",
            ),
            row(
                CF_CONNECTING_IP,
                Address,
                "Cloudflare; read by Gin (PlatformCloudflare), python-ipware",
            ),
            named("cf-connecting-ipv6", Address, "Cloudflare, with Pseudo IPv4 on"),
            named("cf-pseudo-ipv4", Address, "Cloudflare, with Pseudo IPv4 on"),
            row(TRUE_CLIENT_IP, Address, "Cloudflare Enterprise, Akamai; read by python-ipware"),
            named(
                "x-true-client-ip",
                Address,
                "a True-Client-IP variant some CDN and WAF configurations write",
            ),
            row(FASTLY_CLIENT_IP, Address, "Fastly, Firebase Hosting; read by python-ipware"),
            row(FLY_CLIENT_IP, Address, "Fly.io; read by Gin (PlatformFlyIO), python-ipware"),
            row(X_AZURE_CLIENTIP, Address, "Azure Front Door; read by python-ipware"),
            named(
                "x-azure-socketip",
                Address,
                "Azure Front Door (the address its TCP connection came from)",
            ),
            row(CLOUDFRONT_VIEWER_ADDRESS, Address, "CloudFront (`ip:port`)"),
            named("x-appengine-user-ip", Address, "Google App Engine; read by python-ipware"),
            named(
                "x-appengine-remote-addr",
                Address,
                "Google App Engine; read by Gin (PlatformGoogleAppEngine)",
            ),
            named("do-connecting-ip", Address, "DigitalOcean App Platform; read by python-ipware"),
            named("x-vercel-forwarded-for", Address, "Vercel"),
            named("x-nf-client-connection-ip", Address, "Netlify"),
            named(
                "x-bb-ip",
                Address,
                "Netlify (its edge writes it beside x-nf-client-connection-ip); read as the client by Netlify Functions and Next.js API routes (`event.headers['x-bb-ip']`)",
            ),
            named(
                "x-vercel-proxied-for",
                Address,
                "Vercel (its edge writes it beside x-vercel-forwarded-for); read as the client by Next.js and SvelteKit apps and rate limiters on Vercel",
            ),
            named(
                "incap-client-ip",
                Address,
                "Imperva (Incapsula); read by WordPress security plugins and PHP client-IP helpers (HTTP_INCAP_CLIENT_IP)",
            ),
            named(
                "x-sucuri-clientip",
                Address,
                "the Sucuri firewall; read by WordPress plugins and PHP apps (HTTP_X_SUCURI_CLIENTIP)",
            ),
            named(
                "cdn-src-ip",
                Address,
                "ChinaCache and other CDNs; read first by PHP forum and CMS apps (HTTP_CDN_SRC_IP)",
            ),
            named(
                "x-forwarded-ip",
                Address,
                "read by PHP and Java client-IP helpers (HTTP_X_FORWARDED_IP)",
            ),
            named(
                "x-arr-clientip",
                Address,
                "Azure App Service's front ends (ARR, `ip:port`); read as the client by App Service and Azure Functions apps (HTTP_X_ARR_CLIENTIP, `req.headers['x-arr-clientip']`)",
            ),
            named(
                "x-original-for",
                Address,
                "ASP.NET Core's ForwardedHeadersMiddleware (ForwardedHeadersDefaults.XOriginalForHeaderName: the connection's address before it applied X-Forwarded-For); read as the client by apps behind it",
            ),
            named(
                "x-original-ip",
                Address,
                "ASP.NET 5's IISPlatformHandler middleware (the connection's address before X-Forwarded-For), nginx auth_request setups (`proxy_set_header X-Original-IP $remote_addr`); read as the client by apps and workers behind them",
            ),
            named(
                "x-real-client-ip",
                Address,
                "front proxies and Next.js middlewares that hand the client on; read first by Django apps (META HTTP_X_REAL_CLIENT_IP), PHP (Symfony server bag) and Node apps behind them",
            ),
            named(
                "ali-cdn-real-ip",
                Address,
                "Alibaba Cloud CDN (added to every origin request); read first by PHP and Node apps behind it",
            ),
            named(
                "eo-connecting-ip",
                Address,
                "Tencent Cloud EdgeOne (added to every origin request); read by apps behind it",
            ),
            named(
                "eo-client-ip",
                Address,
                "Tencent Cloud EdgeOne's client IP header, under the name its documentation gives; read by apps and edge functions behind it",
            ),
            row(
                X_FORWARDED_PROTO,
                Request,
                "every proxy; read by nearly every framework as the scheme (secure cookies, redirects)",
            ),
            row(
                X_FORWARDED_HOST,
                Request,
                "proxies; read by Express, Spring, Symfony/Laravel, Rack as the host",
            ),
            row(
                X_FORWARDED_PORT,
                Request,
                "AWS ALB, proxies; read by Spring, Symfony/Laravel, Rack as the port",
            ),
            row(
                X_FORWARDED_PREFIX,
                Request,
                "proxies; read by Spring, Symfony, ASP.NET Core as the path prefix",
            ),
            named(
                "x-forwarded-ssl",
                Request,
                "read by Rack and Spring as the scheme (`on` means https)",
            ),
            named("x-forwarded-scheme", Request, "read by Rack as the scheme"),
            named(
                "x-forwarded-protocol",
                Request,
                "read by gunicorn as the scheme (`ssl` means https, from --forwarded-allow-ips)",
            ),
            named(
                "front-end-https",
                Request,
                "Microsoft ISA and ARR; read by CodeIgniter as the scheme (anything but `off` means https)",
            ),
            named("x-scheme", Request, "ingress-nginx; read by Tornado (xheaders) as the scheme"),
            named(
                "x-arr-ssl",
                Request,
                "Azure App Service (present when the client used https); read by WordPress plugins (SSL Insecure Content Fixer), PHP and Rack apps as the scheme (anything present means https)",
            ),
            named(
                "x-forwarded-client-cert",
                Identity,
                "Envoy (forward_client_cert_details), Istio's sidecars and gateways, Cloud Foundry's gorouter: the certificate the client's TLS presented; read by apps as the caller (its SPIFFE URI, subject, hash), and by Keycloak's `envoy` X.509 lookup",
            ),
            named(
                "x-envoy-internal",
                Identity,
                "Envoy: `true` when it took the request as one from inside (removed from external requests); read by the Envoys behind it (the `x-envoy-*` controls are honoured only on internal requests) and by apps as a request from inside",
            ),
            named(
                "client-cert",
                Identity,
                "RFC 9440: the client certificate a TLS-terminating reverse proxy checked, which it must remove from clients' requests; read by origins behind such a proxy as the client's certificate",
            ),
            named(
                "client-cert-chain",
                Identity,
                "RFC 9440: the chain of the client certificate in Client-Cert",
            ),
            named(
                "x-client-cert",
                Identity,
                "ASP.NET Core's CertificateForwardingMiddleware (CertificateForwardingOptions.CertificateHeader's default): the header becomes HttpContext.Connection.ClientCertificate",
            ),
            named(
                "x-arr-clientcert",
                Identity,
                "Azure App Service's front ends (client certificates on); read by ASP.NET Core apps (CertificateForwarding with X-ARR-ClientCert) and Azure Functions as the client's certificate",
            ),
            named(
                "x-client-verify",
                Identity,
                "nginx or Apache in front of Puppet (`$ssl_client_verify`; Puppet's ssl_client_verify_header default HTTP_X_CLIENT_VERIFY): SUCCESS is read as an authenticated client by Puppet and Rack apps",
            ),
            named(
                "x-client-dn",
                Identity,
                "nginx or Apache in front of Puppet (`$ssl_client_s_dn`; Puppet's ssl_client_header default HTTP_X_CLIENT_DN): read as the client's identity",
            ),
            named(
                "x-ssl-client-cert",
                Identity,
                "nginx (`$ssl_client_escaped_cert`) and HAProxy (`ssl_c_der`) mTLS setups; read by apps as the client's certificate",
            ),
            named(
                "x-client-cert-present",
                Identity,
                "Google Cloud's Application Load Balancers, mutual TLS (the documented custom request header for `{client_cert_present}`); read by backends as mTLS having happened",
            ),
            named(
                "x-client-cert-chain-verified",
                Identity,
                "Google Cloud's Application Load Balancers, mutual TLS (`{client_cert_chain_verified}`); read by backends as whether the client's chain was verified",
            ),
            named(
                "x-client-cert-error",
                Identity,
                "Google Cloud's Application Load Balancers, mutual TLS (`{client_cert_error}`); read by backends as why the client's certificate failed",
            ),
            named(
                "x-client-cert-hash",
                Identity,
                "Google Cloud's Application Load Balancers, mutual TLS (`{client_cert_sha256_fingerprint}`); read by backends to pin the client's certificate",
            ),
            named(
                "x-client-cert-serial-number",
                Identity,
                "Google Cloud's Application Load Balancers, mutual TLS (`{client_cert_serial_number}`); read by backends to identify the certificate",
            ),
            named(
                "x-client-cert-spiffe",
                Identity,
                "Google Cloud's Application Load Balancers, mutual TLS (`{client_cert_spiffe_id}`); read by backends as the caller's SPIFFE ID",
            ),
            named(
                "x-client-cert-uri-sans",
                Identity,
                "Google Cloud's Application Load Balancers, mutual TLS (`{client_cert_uri_sans}`); read by backends as the client's identity",
            ),
            named(
                "x-client-cert-leaf",
                Identity,
                "Google Cloud's Application Load Balancers, mutual TLS (`{client_cert_leaf}`); read by backends as the client's certificate",
            ),
            named(
                "x-ssl-cert",
                Identity,
                "nginx mTLS setups (`$ssl_client_cert`, `$ssl_client_escaped_cert`); read as the client's certificate by Syncthing's discovery server, WSO2 Identity Server (certificate-bound tokens) and OpenTAKServer",
            ),
            named(
                "x-ssl-client-verify",
                Identity,
                "nginx (`$ssl_client_verify`) and HAProxy (`ssl_c_verify`) mTLS setups, Cloud Foundry's HAProxy; read by apps as whether the client authenticated",
            ),
            named(
                "x-ssl-client-dn",
                Identity,
                "nginx (`$ssl_client_s_dn`) and HAProxy (`ssl_c_s_dn`) mTLS setups; read by apps as the client's identity",
            ),
            named(
                "x-ssl-client-s-dn",
                Identity,
                "nginx (`$ssl_client_s_dn`) mTLS setups; read by apps as the client's identity",
            ),
            named(
                "x-ssl-client-subject-dn",
                Identity,
                "nginx and Caddy mTLS setups, Cloud Foundry's HAProxy; read by apps as the client's identity",
            ),
            named(
                "x-ssl-client-subject-cn",
                Identity,
                "Cloud Foundry's HAProxy (mTLS); read by apps as the client's name",
            ),
            named(
                "x-ssl-client-issuer-dn",
                Identity,
                "nginx mTLS setups, Cloud Foundry's HAProxy; read by apps to check who issued the client's certificate",
            ),
            named(
                "x-ssl-client-cn",
                Identity,
                "HAProxy mTLS setups (`ssl_c_s_dn(cn)`); read by apps as the client's name",
            ),
            named(
                "x-ssl-client",
                Identity,
                "Cloud Foundry's HAProxy (1 when the client presented a certificate); read by apps as mTLS having happened",
            ),
            named(
                "ssl-client-cert",
                Identity,
                "ingress-nginx (auth-tls-pass-certificate-to-upstream), read by Keycloak's `nginx` X.509 lookup; Apache's `RequestHeader set SSL_CLIENT_CERT` for Tomcat's SSLValve (ssl_client_cert), which makes it the request's certificate",
            ),
            named(
                "ssl-client-escaped-cert",
                Identity,
                "Tomcat's SSLValve (sslClientEscapedCertHeader's default, nginx's `$ssl_client_escaped_cert`): the request's client certificate",
            ),
            named(
                "ssl-client-verify",
                Identity,
                "ingress-nginx (auth-tls-verify-client); read by apps as whether the client authenticated",
            ),
            named(
                "ssl-client-subject-dn",
                Identity,
                "ingress-nginx; read by apps as the client's identity",
            ),
            named(
                "ssl-client-issuer-dn",
                Identity,
                "ingress-nginx; read by apps to check who issued the client's certificate",
            ),
            named(
                "x-forwarded-tls-client-cert",
                Identity,
                "Traefik's PassTLSClientCert middleware (the PEM); read by apps as the client's certificate",
            ),
            named(
                "x-forwarded-tls-client-cert-info",
                Identity,
                "Traefik's PassTLSClientCert middleware (subject, issuer, SANs, validity); read by apps as the client's identity",
            ),
            named(
                "x-amzn-mtls-clientcert",
                Identity,
                "AWS ALB, mutual TLS passthrough: the client's whole chain, unverified; read by targets that verify it",
            ),
            named(
                "x-amzn-mtls-clientcert-leaf",
                Identity,
                "AWS ALB, mutual TLS verify mode: the verified leaf certificate; read by targets as the client's",
            ),
            named(
                "x-amzn-mtls-clientcert-subject",
                Identity,
                "AWS ALB, mutual TLS verify mode; read by targets as the client's identity",
            ),
            named(
                "x-amzn-mtls-clientcert-issuer",
                Identity,
                "AWS ALB, mutual TLS verify mode; read by targets to authorize the issuer",
            ),
            named(
                "x-amzn-mtls-clientcert-serial-number",
                Identity,
                "AWS ALB, mutual TLS verify mode; read by targets to identify the certificate",
            ),
            named(
                "x-amzn-mtls-clientcert-validity",
                Identity,
                "AWS ALB, mutual TLS verify mode (notBefore, notAfter); read by targets",
            ),
            named(
                "cloudfront-viewer-cert-pem",
                Identity,
                "CloudFront viewer mTLS: the viewer's leaf certificate; read by origins as the client's",
            ),
            named(
                "cloudfront-viewer-cert-subject",
                Identity,
                "CloudFront viewer mTLS; read by origins as the client's identity",
            ),
            named(
                "cloudfront-viewer-cert-issuer",
                Identity,
                "CloudFront viewer mTLS; read by origins to authorize the issuer",
            ),
            named(
                "cloudfront-viewer-cert-serial-number",
                Identity,
                "CloudFront viewer mTLS; read by origins to identify the certificate",
            ),
            named(
                "cloudfront-viewer-cert-sha256",
                Identity,
                "CloudFront viewer mTLS; read by origins to pin the certificate",
            ),
            named(
                "cloudfront-viewer-cert-present",
                Identity,
                "CloudFront viewer mTLS (1 when the viewer presented a certificate); read by origins as mTLS having happened",
            ),
            named(
                "cloudfront-viewer-cert-validity",
                Identity,
                "CloudFront viewer mTLS (NotBefore, NotAfter); read by origins",
            ),
            row(X_AZURE_FDID, Origin, "Azure Front Door: the profile id, an origin secret"),
            named(
                "via",
                Hops,
                "every proxy should add itself (RFC 9110 §7.6.3): CloudFront, forward proxies in front of clients; read as a client address by django-ipware up to 4 (HTTP_VIA)",
            ),
        ]
    };
}

/// Read access to a request's headers.
///
/// Implemented for `http::HeaderMap` (feature `http`) and for slices of
/// `(name, value)` pairs. Names are compared without regard to case.
pub trait Headers {
    /// Calls `f` with every value of header `name`, in the order the request carried them.
    fn for_each_value<'a>(&'a self, name: &FieldName, f: impl FnMut(&'a [u8]));

    /// Like [`for_each_value`](Self::for_each_value), and says whether a header named
    /// `also` is present. The list walks read one list header and need to know whether
    /// the other one came too (to flag X-Forwarded-For and Forwarded that disagree).
    ///
    /// Provided as two lookups; a container that can do both in one pass overrides it.
    fn for_each_value_noting<'a>(
        &'a self,
        name: &FieldName,
        also: &FieldName,
        f: impl FnMut(&'a [u8]),
    ) -> bool {
        self.for_each_value(name, f);
        let mut present = false;
        self.for_each_value(also, |_| present = true);
        present
    }

    /// The request's query string: the part of the request target after the first `?`,
    /// without it, as sent (still percent-encoded). `query:NAME` strategies read it;
    /// containers that hold only headers have none (the default), and such a strategy then
    /// finds nothing. [`WithQuery`] adds one to any container.
    fn query(&self) -> Option<&[u8]> {
        None
    }

    /// Calls `f` with the value of every query argument named `name`, in order, and says
    /// how they are written. The one place a `query:NAME` strategy finds its argument.
    ///
    /// Provided over [`query`](Self::query) ([`params::query_values`](crate::params::query_values),
    /// values as sent); a container that holds its arguments otherwise (a Lambda event's
    /// `queryStringParameters`) overrides it, and a wrapper that passes `query` on passes
    /// this on too.
    #[inline]
    fn for_each_query_value<'a>(
        &'a self,
        name: &crate::params::ParamName,
        f: impl FnMut(&'a [u8]),
    ) -> crate::params::QueryForm {
        if let Some(query) = self.query() {
            crate::params::query_values(query, name, f);
        }
        crate::params::QueryForm::Encoded
    }
}

/// Headers and a query string: for callers whose headers and request target live apart
/// (`trueip explain --query`, a WSGI environ's `QUERY_STRING`).
///
/// ```
/// use trueip::headers::WithQuery;
/// use trueip::{Connection, Policy};
///
/// let policy = Policy::builder().trust_str("loopback")?.strategy_str("query:client")?.build()?;
/// let headers: [(&str, &str); 0] = [];
/// let request = WithQuery::new(&headers[..], b"client=198.51.100.4&page=2");
/// let conn = Connection::from_peer("127.0.0.1".parse::<std::net::IpAddr>().unwrap());
/// assert_eq!(policy.resolve(&conn, &request).ip(), "198.51.100.4".parse().ok());
/// # Ok::<(), trueip::ConfigError>(())
/// ```
#[derive(Clone, Copy, Debug)]
pub struct WithQuery<'a, H: ?Sized> {
    headers: &'a H,
    query: &'a [u8],
}

impl<'a, H: Headers + ?Sized> WithQuery<'a, H> {
    /// `headers`, with `query` (without the `?`) as the request's query string.
    pub fn new(headers: &'a H, query: &'a [u8]) -> Self {
        WithQuery { headers, query }
    }
}

impl<H: Headers + ?Sized> Headers for WithQuery<'_, H> {
    fn for_each_value<'a>(&'a self, name: &FieldName, f: impl FnMut(&'a [u8])) {
        self.headers.for_each_value(name, f);
    }

    fn for_each_value_noting<'a>(
        &'a self,
        name: &FieldName,
        also: &FieldName,
        f: impl FnMut(&'a [u8]),
    ) -> bool {
        self.headers.for_each_value_noting(name, also, f)
    }

    fn query(&self) -> Option<&[u8]> {
        Some(self.query)
    }
}

impl<N: AsRef<str>, V: AsRef<[u8]>> Headers for [(N, V)] {
    fn for_each_value<'a>(&'a self, name: &FieldName, mut f: impl FnMut(&'a [u8])) {
        for (n, v) in self {
            if n.as_ref().eq_ignore_ascii_case(name.as_str()) {
                f(v.as_ref());
            }
        }
    }

    fn for_each_value_noting<'a>(
        &'a self,
        name: &FieldName,
        also: &FieldName,
        mut f: impl FnMut(&'a [u8]),
    ) -> bool {
        let mut present = false;
        for (n, v) in self {
            let n = n.as_ref();
            if n.eq_ignore_ascii_case(name.as_str()) {
                f(v.as_ref());
            } else if n.eq_ignore_ascii_case(also.as_str()) {
                present = true;
            }
        }
        present
    }
}

impl<N: AsRef<str>, V: AsRef<[u8]>> Headers for Vec<(N, V)> {
    fn for_each_value<'a>(&'a self, name: &FieldName, f: impl FnMut(&'a [u8])) {
        self.as_slice().for_each_value(name, f);
    }

    fn for_each_value_noting<'a>(
        &'a self,
        name: &FieldName,
        also: &FieldName,
        f: impl FnMut(&'a [u8]),
    ) -> bool {
        self.as_slice().for_each_value_noting(name, also, f)
    }
}

impl<N: AsRef<str>, V: AsRef<[u8]>, const K: usize> Headers for [(N, V); K] {
    fn for_each_value<'a>(&'a self, name: &FieldName, f: impl FnMut(&'a [u8])) {
        self.as_slice().for_each_value(name, f);
    }

    fn for_each_value_noting<'a>(
        &'a self,
        name: &FieldName,
        also: &FieldName,
        f: impl FnMut(&'a [u8]),
    ) -> bool {
        self.as_slice().for_each_value_noting(name, also, f)
    }
}

/// Up to this many header lines, [`Headers::for_each_value`] and
/// [`Headers::for_each_value_noting`] on an `http::HeaderMap` compare every name instead of
/// looking one or two up. A lookup hashes the name byte by byte
/// (16 ns for `x-forwarded-for`, a custom name), while a comparison is one byte for the
/// standard names most headers have; a browser's request through a proxy or two carries
/// 10–20 lines.
#[cfg(feature = "http")]
const SCAN_LINES: usize = 24;

#[cfg(feature = "http")]
impl Headers for http::HeaderMap {
    fn for_each_value<'a>(&'a self, name: &FieldName, mut f: impl FnMut(&'a [u8])) {
        let name = name.as_http();
        if self.len() <= SCAN_LINES {
            // `iter` yields each name's values together, in request order.
            for (key, value) in self {
                if key == name {
                    f(value.as_bytes());
                }
            }
        } else {
            for value in self.get_all(name) {
                f(value.as_bytes());
            }
        }
    }

    fn for_each_value_noting<'a>(
        &'a self,
        name: &FieldName,
        also: &FieldName,
        mut f: impl FnMut(&'a [u8]),
    ) -> bool {
        let (name, also) = (name.as_http(), also.as_http());
        let mut present = false;
        if self.len() <= SCAN_LINES {
            // In request order per name, as `get_all` gives them: `iter` yields each
            // name's values together, in order.
            for (key, value) in self {
                if key == name {
                    f(value.as_bytes());
                } else if key == also {
                    present = true;
                }
            }
        } else {
            for value in self.get_all(name) {
                f(value.as_bytes());
            }
            present = self.contains_key(also);
        }
        present
    }
}

#[cfg(feature = "http")]
impl<B> Headers for http::Request<B> {
    fn for_each_value<'a>(&'a self, name: &FieldName, f: impl FnMut(&'a [u8])) {
        self.headers().for_each_value(name, f);
    }

    fn for_each_value_noting<'a>(
        &'a self,
        name: &FieldName,
        also: &FieldName,
        f: impl FnMut(&'a [u8]),
    ) -> bool {
        self.headers().for_each_value_noting(name, also, f)
    }

    fn query(&self) -> Option<&[u8]> {
        self.uri().query().map(str::as_bytes)
    }
}

/// Lines a [`Lines`] holds before it sets up room for [`MAX_LINES`].
const FEW_LINES: usize = 2;

/// The lines of one header, at most [`MAX_LINES`], kept from the right, on the stack.
///
/// Nearly every request has one line of a header, so the room for many is only set up
/// when a third line comes: filling all sixteen slots on every request was a tenth of
/// the time of a whole resolution.
#[derive(Clone, Copy)]
pub(crate) struct Lines<'a> {
    few: [&'a [u8]; FEW_LINES],
    many: Option<[&'a [u8]; MAX_LINES]>,
    len: usize,
    /// Lines were dropped on the left.
    pub(crate) truncated: bool,
}

impl<'a> Lines<'a> {
    pub(crate) fn read<H: Headers + ?Sized>(headers: &'a H, name: &FieldName) -> Self {
        let mut lines = Lines::new();
        lines.fill(headers, name);
        lines
    }

    /// No lines yet; [`fill`](Self::fill) reads them.
    #[inline(always)]
    pub(crate) fn new() -> Self {
        Lines { few: [&[]; FEW_LINES], many: None, len: 0, truncated: false }
    }

    /// Reads the lines of `name` into `self`, which must be empty. The per-request walks
    /// use this on a `Lines` of their own rather than [`read`](Self::read): a returned
    /// `Lines` (300 bytes) was copied with a `memcpy` whose wide loads stalled on the
    /// narrow stores that had just written it.
    #[inline(always)]
    pub(crate) fn fill<H: Headers + ?Sized>(&mut self, headers: &'a H, name: &FieldName) {
        headers.for_each_value(name, |value| self.push(value));
    }

    /// [`fill`](Self::fill), and whether a header named `also` is present, in one pass
    /// where the container allows it.
    #[inline(always)]
    pub(crate) fn fill_noting<H: Headers + ?Sized>(
        &mut self,
        headers: &'a H,
        name: &FieldName,
        also: &FieldName,
    ) -> bool {
        headers.for_each_value_noting(name, also, |value| self.push(value))
    }

    #[inline(always)]
    pub(crate) fn push(&mut self, value: &'a [u8]) {
        if self.many.is_none()
            && let Some(slot) = self.few.get_mut(self.len)
        {
            *slot = value;
            self.len += 1;
            return;
        }
        let few = self.few;
        let many = self.many.get_or_insert_with(|| {
            let mut many = [&[][..]; MAX_LINES];
            if let Some(start) = many.get_mut(..FEW_LINES) {
                start.copy_from_slice(&few);
            }
            many
        });
        if self.len == MAX_LINES {
            many.rotate_left(1);
            self.truncated = true;
            self.len -= 1;
        }
        if let Some(slot) = many.get_mut(self.len) {
            *slot = value;
            self.len += 1;
        }
    }

    pub(crate) fn as_slice(&self) -> &[&'a [u8]] {
        match &self.many {
            Some(many) => many.get(..self.len).unwrap_or_default(),
            None => self.few.get(..self.len).unwrap_or_default(),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The lines as text, joined by `separator`: for an explanation's steps.
    pub(crate) fn joined(&self, separator: &str) -> String {
        let text: Vec<_> = self.as_slice().iter().map(|l| String::from_utf8_lossy(l)).collect();
        text.join(separator)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Behind a trusted hop, the first strategy of `policy` having decided.
    fn behind(policy: &crate::Policy) -> Hop<'_> {
        Hop::Trusted { policy, decided: Some(0), unkept: None }
    }

    /// `name` is withheld from a stranger and from a trusted hop, as a forgery each time.
    fn forged_from_every_hop(set: &ForwardingSet, policy: &crate::Policy, name: &str) {
        for hop in [Hop::Untrusted, behind(policy)] {
            let fate = set.fate(name, hop);
            assert!(fate.withheld && fate.forged, "{name} {hop:?}: {fate:?}");
            assert!(set.withheld(name.as_bytes(), hop), "{name}");
        }
    }

    fn trusting(cidr: &str) -> crate::Policy {
        crate::Policy::builder().trust_str(cidr).unwrap().build().unwrap()
    }

    /// Client-IP helpers look headers up by the CGI variable's name: Java's
    /// `getHeader("HTTP_X_FORWARDED")` (case-insensitive), python-ipware's `HTTP_X_REAL_IP`
    /// and `REMOTE_ADDR` over a header map (any case, dashes for underscores), so a header
    /// named `Http-X-Real-Ip` or `Remote-Addr` is the client's address to them. No proxy
    /// writes one: withheld from every hop, in every spelling.
    #[test]
    fn a_header_named_as_helpers_look_it_up_is_withheld_from_every_hop() {
        let policy = trusting("10.0.0.0/8");
        let behind = behind(&policy);
        let set = ForwardingSet::for_policy(&policy);
        for name in [
            "Http-X-Real-Ip",
            "HTTP_X_REAL_IP",
            "http-x-forwarded",
            "Http-X-Cluster-Client-Ip",
            "http_forwarded_for",
            "Http-Forwarded",
            "HTTP_VIA",
            "http-cf-connecting-ip",
            "Http-True-Client-Ip",
            "Remote-Addr",
            "REMOTE_ADDR",
        ] {
            assert!(set.withheld(name.as_bytes(), Hop::Untrusted), "{name}");
            assert!(set.withheld(name.as_bytes(), behind), "{name}");
        }
    }

    /// PHP registers `$_SERVER` with dots made underscores: `X.Forwarded.For`, handed to it
    /// as `HTTP_X.FORWARDED.FOR` (FrankenPHP's Go API, php-fpm behind an nginx that passes
    /// such names), is `$_SERVER['HTTP_X_FORWARDED_FOR']`, and `Client.IP` is the
    /// `HTTP_CLIENT_IP` that PHP client-IP snippets read first. Withheld from every hop as
    /// the underscore spelling is, counted as a forgery. Passed from every client before.
    /// A lookup compares a name only with the names of its length: each name of a set, of
    /// every length the table has and of 63 bytes and more (which share one run), is found
    /// at its own index, in any case and, spelled with underscores, by `spelled`; a name of
    /// a length no name has, and one of a shared length that is no name, are not.
    #[test]
    fn every_name_is_found_at_its_index_whatever_its_length() {
        let long = |n: usize| FieldName::new(&format!("x-{}", "a".repeat(n - 2))).unwrap();
        let set = ForwardingSet::default()
            .with(long(63))
            .with(long(64))
            .with(long(90))
            .with(FieldName::new("x_edge_client").unwrap());
        for (i, name) in set.names().iter().enumerate() {
            assert_eq!(set.position(name.as_str()), Some(i), "{name:?}");
            let upper = name.as_str().to_ascii_uppercase();
            assert_eq!(set.position(&upper), Some(i), "{name:?}");
            let underscored = upper.replace('-', "_");
            assert!(set.spelled(underscored.as_bytes()), "{name:?}");
        }
        let shorter = format!("x-{}", "b".repeat(61));
        let other = format!("x-{}", "a".repeat(70));
        for name in ["user-agent", "accept-encoding", "x-forwarded-fox", "", &shorter, &other] {
            assert_eq!(set.position(name), None, "{name}");
            assert!(!set.spelled(name.replace('-', "_").as_bytes()), "{name}");
        }
    }

    /// The headers nearly every request carries are answered by the length and signature
    /// test alone, in any case and spelling, compared with no name of the set: `trueip
    /// serve` and the Rust adapters look up every line of every request.
    #[test]
    fn common_request_headers_pass_on_the_prefilter() {
        let policy = crate::Policy::builder()
            .trust_str("10.0.0.0/8")
            .unwrap()
            .strategy_str("header:x-client-addr")
            .unwrap()
            .build()
            .unwrap();
        for set in [ForwardingSet::default(), ForwardingSet::for_policy(&policy)] {
            for name in COMMON_REQUEST_HEADERS {
                for spelling in [name.to_owned(), name.to_ascii_uppercase(), name.replace('-', "_")]
                {
                    assert!(!set.may_name(spelling.as_bytes()), "{spelling}");
                    assert_eq!(set.position(&spelling), None, "{spelling}");
                    assert!(!set.spelled(spelling.as_bytes()), "{spelling}");
                    assert!(!set.withheld(spelling.as_bytes(), Hop::Untrusted), "{spelling}");
                }
            }
        }
    }

    /// Request headers browsers, HTTP clients, CDNs and tracing send with most requests.
    const COMMON_REQUEST_HEADERS: [&str; 45] = [
        "host",
        "user-agent",
        "accept",
        "accept-encoding",
        "accept-language",
        "accept-charset",
        "connection",
        "keep-alive",
        "content-length",
        "content-type",
        "content-encoding",
        "transfer-encoding",
        "cookie",
        "authorization",
        "referer",
        "origin",
        "cache-control",
        "pragma",
        "priority",
        "upgrade",
        "upgrade-insecure-requests",
        "if-none-match",
        "if-modified-since",
        "if-match",
        "if-range",
        "range",
        "te",
        "dnt",
        "expect",
        "sec-fetch-site",
        "sec-fetch-mode",
        "sec-fetch-dest",
        "sec-fetch-user",
        "sec-ch-ua",
        "sec-ch-ua-mobile",
        "sec-ch-ua-platform",
        "sec-websocket-key",
        "sec-websocket-version",
        "x-request-id",
        "x-requested-with",
        "x-amzn-trace-id",
        "x-correlation-id",
        "traceparent",
        "tracestate",
        "baggage",
    ];

    #[test]
    fn a_dotted_spelling_is_withheld_as_an_underscored_one_is() {
        let policy = trusting("10.0.0.0/8");
        let set = ForwardingSet::for_policy(&policy);
        for name in [
            "X.Forwarded.For",
            "x.real.ip",
            "Client.IP",
            "CF.Connecting.IP",
            "X-Forwarded.For",
            "X_Forwarded.Proto",
        ] {
            forged_from_every_hop(&set, &policy, name);
        }
        // A dot where the name has none is another name.
        assert!(!set.withheld(b"X.Forwarded-For.", Hop::Untrusted));
        assert!(spells("x-forwarded-for", "X.FORWARDED.FOR"));
        assert!(!spells("x-forwarded-for", "X-Forwarded.Fo"));
    }

    /// lighttpd's CGI, FastCGI and SCGI make every byte of a header name that is not a
    /// letter or a digit an underscore (`buffer_copy_string_encoded_cgi_varnames`), so a
    /// PHP app behind lighttpd reads `X~Forwarded~For` as `HTTP_X_FORWARDED_FOR`, and so
    /// every other token punctuation. Withheld from every hop and counted as a forgery, as
    /// the underscore spelling is; passed from every client before (only `_` and `.` were
    /// read as dashes).
    #[test]
    fn every_punctuation_spelling_is_withheld_as_an_underscored_one_is() {
        let policy = trusting("10.0.0.0/8");
        let set = ForwardingSet::for_policy(&policy);
        for stand_in in "!#$%&'*+^`|~".chars() {
            for name in ["X-Forwarded-For", "X-Real-IP", "True-Client-IP", "Forwarded-For"] {
                let name = name.replace('-', &stand_in.to_string());
                forged_from_every_hop(&set, &policy, &name);
            }
        }
        assert!(spells("x-forwarded-for", "X~Forwarded+For"));
        // A letter or a digit where the name has a dash is another name.
        assert!(!spells("x-forwarded-for", "XaForwarded-For"));
        assert!(!set.withheld(b"X~Forwarded~Fo1", Hop::Untrusted));
    }

    /// A configured name with underscores (`header:X_Edge_Client`) is read by WSGI and CGI
    /// apps as `HTTP_X_EDGE_CLIENT`, as its dashed spelling is: a stranger's
    /// `X-Edge-Client` is that header too. Withheld from every hop and counted; passed
    /// from every client before (only a received name with a stand-in was compared).
    #[test]
    fn a_dashed_spelling_of_an_underscored_name_is_withheld() {
        let policy = trusting("10.0.0.0/8");
        let behind = behind(&policy);
        let set = ForwardingSet::for_policy(&policy).with(FieldName::new("x_edge_client").unwrap());
        for name in ["X-Edge-Client", "x-edge_client", "X~Edge-Client"] {
            forged_from_every_hop(&set, &policy, name);
        }
        assert!(spells("x_edge_client", "X-Edge-Client"));
        // Still only the names of the set.
        assert!(!set.withheld(b"X-Edge-Clienz", Hop::Untrusted));
        assert!(!set.withheld(b"Accept-Encoding", behind));
    }

    /// django-ipware up to 4 reads `HTTP_VIA` as a client address after the headers the
    /// gateway writes, and takes the first public one it finds: behind a gateway whose
    /// client has a private address, a stranger's `Via: 6.6.6.6` was the answer. A
    /// stranger's `Via` is withheld, not counted as a forgery (forward proxies write it
    /// honestly). So is a trusted hop's, which passed until a review: nginx hands on the
    /// client's `Via` as it came, and CloudFront appends to it. A deployment that wants
    /// its hops' `Via` relays it.
    #[test]
    fn via_is_withheld_and_not_as_a_forgery_unless_relayed() {
        let policy = trusting("10.0.0.0/8");
        let set = ForwardingSet::for_policy(&policy);
        let via = set.position("via").unwrap();
        let fate = set.fate("Via", Hop::Untrusted);
        assert_eq!(fate, NameFate { index: Some(via), withheld: true, forged: false });
        assert_eq!(set.fate("VIA", behind(&policy)), fate);
        assert!(set.withheld(b"via", Hop::Untrusted));
        assert!(set.withheld(b"via", behind(&policy)));
        assert!(set.fate("X-Forwarded-For", Hop::Untrusted).forged);
        let relaying = set.relaying(&[FieldName::new("via").unwrap()]);
        assert!(!relaying.withheld(b"via", behind(&policy)));
        assert!(relaying.withheld(b"via", Hop::Untrusted));
    }

    /// Who the client proved to be (the certificate a TLS-terminating hop checked, as
    /// Envoy, Traefik, ingress-nginx, an ALB or CloudFront hand it on) and a hop's word that
    /// the request is internal: only the hop that terminated the client's TLS can know
    /// them, so a stranger's line is withheld as a forgery, in any spelling, and a trusted
    /// hop's passes, as its `X-Forwarded-Proto` does. Until a review they passed from
    /// anyone: `X-SSL-Client-Verify: SUCCESS` reached an app behind `trueip serve`, which
    /// terminates TLS itself and asks for no certificate.
    #[test]
    fn a_client_certificate_claim_passes_only_from_a_trusted_hop() {
        let policy = trusting("10.0.0.0/8");
        let set = ForwardingSet::for_policy(&policy);
        for name in [
            "X-Forwarded-Client-Cert",
            "X-Envoy-Internal",
            "Client-Cert",
            "X-SSL-Client-Verify",
            "ssl-client-subject-dn",
            "X-Forwarded-Tls-Client-Cert",
            "X-Amzn-Mtls-Clientcert-Leaf",
            "CloudFront-Viewer-Cert-Pem",
            "X-ARR-ClientCert",
            "X-SSL-Cert",
            "X-Client-Cert-Chain-Verified",
        ] {
            let stranger = set.fate(name, Hop::Untrusted);
            assert!(stranger.index.is_some() && stranger.withheld && stranger.forged, "{name}");
            assert!(!set.withheld(name.as_bytes(), behind(&policy)), "{name}");
            let underscored = name.replace('-', "_");
            assert!(set.withheld(underscored.as_bytes(), behind(&policy)), "{underscored}");
        }
        for row in names::FORWARDING.iter().filter(|row| row.claim == names::Claim::Identity) {
            assert!(set.fate(row.as_str(), Hop::Untrusted).forged, "{}", row.as_str());
            assert!(!set.fate(row.as_str(), behind(&policy)).withheld, "{}", row.as_str());
        }
    }

    /// Every name of a set, the table's rows and configured names of every length (63
    /// bytes and more, which share one run of the lookup by length, and one written with an
    /// underscore), spelled in any case with any stand-in for each dash, is withheld from a
    /// stranger, and from a trusted hop when its punctuation is not the name's own; a
    /// lookup that compares a name with fewer than all the names of its length lets one
    /// through. Each spelling is found by `fate` as by a look through every name.
    #[test]
    fn every_spelling_of_every_name_is_withheld_from_a_stranger() {
        let policy = trusting("10.0.0.0/8");
        let set = ForwardingSet::for_policy(&policy)
            .with(FieldName::new("x_edge_client").unwrap())
            .with(FieldName::new(&format!("x-{}", "q".repeat(61))).unwrap())
            .with(FieldName::new(&format!("x-{}", "r".repeat(70))).unwrap());
        let stand_ins = b"-_.~!#$%&'*+^`|";
        // xorshift64: the same spellings on every run.
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for (i, n) in set.names().iter().enumerate() {
            for _ in 0..64 {
                let spelling: String = n
                    .as_str()
                    .bytes()
                    .map(|b| {
                        let r = next();
                        let b = if b.is_ascii_alphanumeric() {
                            if r % 2 == 0 { b.to_ascii_uppercase() } else { b }
                        } else {
                            stand_ins[usize::try_from(r % 15).unwrap()]
                        };
                        char::from(b)
                    })
                    .collect();
                let own = spelling.eq_ignore_ascii_case(n.as_str());
                let fate = set.fate(&spelling, Hop::Untrusted);
                assert!(fate.withheld, "{spelling}");
                assert_eq!(fate.index, own.then_some(i), "{spelling}");
                assert!(set.withheld(spelling.as_bytes(), Hop::Untrusted), "{spelling}");
                let everywhere = set.names().iter().any(|m| spells(m.as_str(), &spelling));
                assert!(everywhere && set.spelled(spelling.as_bytes()), "{spelling}");
                if !own {
                    assert!(set.withheld(spelling.as_bytes(), behind(&policy)), "{spelling}");
                }
            }
        }
    }

    #[test]
    fn forwarding_set_fate_finds_the_name_and_applies_the_rule() {
        let policy = trusting("10.0.0.0/8");
        let behind = behind(&policy);
        let set = ForwardingSet::default()
            .without(&[names::X_FORWARDED_PROTO])
            .with(FieldName::new("x_edge_client").unwrap());
        let xff = set.position("x-forwarded-for").unwrap();
        let tci = set.position("true-client-ip").unwrap();
        let host = set.position("x-forwarded-host").unwrap();
        let fate = |name, hop| set.fate(name, hop);
        let is = |index, withheld, forged| NameFate { index, withheld, forged };
        assert_eq!(fate("X-Forwarded-For", behind), is(Some(xff), false, false));
        assert_eq!(fate("X-Forwarded-For", Hop::Untrusted), is(Some(xff), true, true));
        assert_eq!(fate("X_Forwarded_For", behind), is(None, true, true));
        // A client address the policy does not read: withheld from a trusted hop too, not
        // as a forgery (the hop may have written it).
        assert_eq!(fate("True-Client-IP", behind), is(Some(tci), true, false));
        assert_eq!(fate("True-Client-IP", Hop::Untrusted), is(Some(tci), true, true));
        // A claim about the request passes from a trusted hop.
        assert_eq!(fate("X-Forwarded-Host", behind), is(Some(host), false, false));
        assert_eq!(fate("X-Forwarded-Proto", Hop::Untrusted), is(None, false, false));
        assert_eq!(fate("Accept-Encoding", Hop::Untrusted), is(None, false, false));
        // A configured name with an underscore: spelled so, no honest proxy writes it
        // either, so it goes whoever sent it. Dashes for its underscores are the same
        // header to a WSGI or CGI app (`HTTP_X_EDGE_CLIENT`): they go too.
        let own = set.position("x_edge_client").unwrap();
        assert_eq!(fate("X_Edge_Client", behind), is(Some(own), true, true));
        assert_eq!(fate("x-edge-client", behind), is(None, true, true));
        assert_eq!(fate("x-edge-client", Hop::Untrusted), is(None, true, true));
    }

    /// From a trusted hop, a client address passes when the hop's policy reads it or the
    /// deployment relays it; a configured name is a client address nobody reads.
    #[test]
    fn a_trusted_hop_passes_only_the_addresses_its_policy_reads() {
        let xff = trusting("10.0.0.0/8");
        let forwarded = crate::Policy::builder()
            .trust_str("10.0.0.0/8")
            .unwrap()
            .from_list(crate::ListHeader::Forwarded)
            .strategy_str("header:True-Client-IP")
            .unwrap()
            .build()
            .unwrap();
        let set = ForwardingSet::default().with(FieldName::new("x-edge-client").unwrap());
        let passes = |name: &str, policy, decided| {
            let hop = Hop::Trusted { policy, decided, unkept: None };
            !set.withheld(name.as_bytes(), hop)
        };
        assert!(passes("X-Forwarded-For", &xff, Some(0)));
        assert!(passes("X-Forwarded-For", &xff, None));
        assert!(!passes("Forwarded", &xff, Some(0)));
        assert!(!passes("X-Real-IP", &xff, Some(0)));
        assert!(!passes("True-Client-IP", &xff, Some(0)));
        assert!(!passes("x-edge-client", &xff, Some(0)));
        assert!(passes("X-Forwarded-Port", &xff, Some(0)));
        assert!(passes("X-Azure-FDID", &xff, Some(0)));
        assert!(!passes("X-Forwarded-For", &forwarded, Some(0)));
        assert!(passes("Forwarded", &forwarded, Some(0)));
        assert!(passes("true-client-ip", &forwarded, Some(0)));
        // The header strategy did not decide: nothing vouched for its header.
        assert!(!passes("true-client-ip", &forwarded, None));

        let relaying = set.relaying(&[
            FieldName::new("true-client-ip").unwrap(),
            FieldName::new("x-edge-client").unwrap(),
            FieldName::new("x-not-in-the-set").unwrap(),
        ]);
        assert_eq!(relaying.names().len(), names::FORWARDING.len() + 1);
        let behind = behind(&xff);
        for name in ["True-Client-IP", "X-Edge-Client"] {
            assert!(!relaying.withheld(name.as_bytes(), behind), "{name}");
            assert!(relaying.withheld(name.as_bytes(), Hop::Untrusted), "{name}");
        }
        assert!(relaying.withheld(b"True_Client_IP", behind));
    }

    /// A trusted hop that did not keep a list header (a Lambda Function URL keeps only the
    /// client's first `X-Forwarded-For` value) has that header withheld, not as a forgery,
    /// though its policy reads it and a deployment relays it, and the claims it passes on
    /// as received (`UNKEPT_CLAIMS`: `X-Forwarded-Proto` and `-Port`) with it; the rest
    /// fares as from any trusted hop. `Hop::trusted` says so of a resolution flagged
    /// `XFF_NOT_KEPT`.
    #[test]
    fn a_list_header_the_hop_did_not_keep_is_withheld_from_a_trusted_hop() {
        let policy = trusting("10.0.0.0/8");
        let unkept = Hop::Trusted {
            policy: &policy,
            decided: Some(0),
            unkept: Some(crate::ListHeader::XForwardedFor),
        };
        let set = ForwardingSet::for_policy(&policy);
        let xff = set.position("x-forwarded-for").unwrap();
        let fwd = set.position("forwarded").unwrap();
        let proto = set.position("x-forwarded-proto").unwrap();
        let is = |index, withheld, forged| NameFate { index: Some(index), withheld, forged };
        assert_eq!(set.fate("X-Forwarded-For", unkept), is(xff, true, false));
        assert_eq!(set.fate("X-Forwarded-For", behind(&policy)), is(xff, false, false));
        assert_eq!(set.fate("X-Forwarded-Proto", unkept), is(proto, true, false));
        assert_eq!(set.fate("X-Forwarded-Proto", behind(&policy)), is(proto, false, false));
        let port = set.position("x-forwarded-port").unwrap();
        assert_eq!(set.fate("X-Forwarded-Port", unkept), is(port, true, false));
        let host = set.position("x-forwarded-host").unwrap();
        assert_eq!(set.fate("X-Forwarded-Host", unkept), is(host, false, false));
        assert_eq!(set.fate("Forwarded", unkept), is(fwd, true, false));
        assert!(set.withheld(b"X_Forwarded_For", unkept));
        let relaying = set.clone().relaying(&[names::X_FORWARDED_FOR]);
        assert!(relaying.withheld(b"X-Forwarded-For", unkept));

        let conn =
            crate::Connection::from_peer("10.0.0.5:1".parse::<std::net::SocketAddr>().unwrap());
        let mut resolution = policy.resolve(&conn, &[("X-Forwarded-For", "198.51.100.1")]);
        assert!(!set.withheld(b"X-Forwarded-For", policy.hop(&resolution)));
        resolution.warnings.insert(crate::Warnings::XFF_NOT_KEPT);
        assert!(matches!(
            policy.hop(&resolution),
            Hop::Trusted { decided: Some(0), unkept: Some(crate::ListHeader::XForwardedFor), .. }
        ));
        assert!(set.withheld(b"X-Forwarded-For", policy.hop(&resolution)));
        assert!(set.withheld(b"X-Forwarded-Proto", policy.hop(&resolution)));
        assert!(!set.withheld(b"X-Forwarded-Host", policy.hop(&resolution)));
    }

    /// A `header:NAME` strategy's header passes a trusted hop only when that strategy
    /// decided, and a list header only when a strategy reads it. Review findings: under the
    /// example config's chain (a preset trusting its provider only, then
    /// `rightmost-untrusted` through the policy's proxies) a client's `CF-Connecting-IP`
    /// relayed by a trusted nginx reached the app, though the preset refused it (the peer
    /// is not Cloudflare); so did one beside a second CDN's header that decided first, and
    /// two `True-Client-IP` lines the strategy refused as ambiguous. And under
    /// `from = "forwarded"` with `aws-alb` the ALB's `X-Forwarded-For`, which decided, was
    /// withheld while a client's `Forwarded`, which nothing read, passed.
    #[test]
    fn a_header_passes_a_trusted_hop_only_when_the_decision_read_it() {
        use crate::{Connection, TrustSet};
        let cidr = |c: &str| TrustSet::from_cidrs([c.parse().unwrap()]);
        let builder = || {
            crate::Policy::builder()
                .trust_str("10.0.0.0/8")
                .unwrap()
                .provider("cloudflare", cidr("198.51.100.0/24"))
                .provider("fastly", cidr("192.0.2.0/24"))
        };
        let nginx = Connection::from_peer("10.0.0.5:1".parse::<std::net::SocketAddr>().unwrap());
        let passes = |policy: &crate::Policy, sent: &[(&str, &str)], name: &str| {
            let sent = sent.to_vec();
            let r = policy.resolve(&nginx, &sent);
            assert!(policy.came_through_trusted_hop(&r), "{r:?}");
            !ForwardingSet::for_policy(policy).withheld(name.as_bytes(), policy.hop(&r))
        };
        let example = builder()
            .strategy_trusting("cloudflare".parse().unwrap(), vec!["cloudflare".parse().unwrap()])
            .strategy_str("rightmost-untrusted")
            .unwrap()
            .build()
            .unwrap();
        let forged = [("x-forwarded-for", "203.0.113.9"), ("cf-connecting-ip", "6.6.6.6")];
        assert!(!passes(&example, &forged, "cf-connecting-ip"));
        assert!(passes(&example, &forged, "x-forwarded-for"));
        // From Cloudflare itself, the preset decides and its header passes.
        let cf = Connection::from_peer("198.51.100.7:1".parse::<std::net::SocketAddr>().unwrap());
        let r = example.resolve(&cf, &forged);
        assert_eq!(r.strategy, Some(0));
        assert!(
            !ForwardingSet::for_policy(&example).withheld(b"CF-Connecting-IP", example.hop(&r))
        );

        let two_cdns = builder()
            .strategy_str("fastly")
            .unwrap()
            .strategy_str("cloudflare")
            .unwrap()
            .build()
            .unwrap();
        let sent = [
            ("x-forwarded-for", "203.0.113.9, 192.0.2.7"),
            ("fastly-client-ip", "203.0.113.9"),
            ("cf-connecting-ip", "6.6.6.6"),
        ];
        assert!(passes(&two_cdns, &sent, "fastly-client-ip"));
        assert!(!passes(&two_cdns, &sent, "cf-connecting-ip"));

        let fallback = builder()
            .strategy_str("header:True-Client-IP")
            .unwrap()
            .strategy_str("rightmost-untrusted")
            .unwrap()
            .build()
            .unwrap();
        let doubled = [
            ("x-forwarded-for", "203.0.113.9"),
            ("true-client-ip", "6.6.6.6"),
            ("true-client-ip", "203.0.113.9"),
        ];
        assert!(!passes(&fallback, &doubled, "true-client-ip"));
        assert!(passes(&fallback, &doubled[..2], "true-client-ip"));

        let alb = builder()
            .from_list(crate::ListHeader::Forwarded)
            .strategy_str("aws-alb")
            .unwrap()
            .build()
            .unwrap();
        let sent = [("x-forwarded-for", "203.0.113.9"), ("forwarded", "for=6.6.6.6")];
        assert!(passes(&alb, &sent, "x-forwarded-for"));
        assert!(!passes(&alb, &sent, "forwarded"));
    }

    /// Review finding: with the documented Azure Front Door setup,
    /// `origin_secret = { header = "X-Azure-FDID", ... }`, the secret is a row of the table
    /// that passes trusted hops (a claim about the origin), and the middlewares handed it
    /// to the app while they withheld any other origin secret.
    #[test]
    fn the_origin_secret_passes_no_trusted_hop_even_as_a_row_of_the_table() {
        let policy = |secret: &str| {
            crate::Policy::builder()
                .trust_str("10.0.0.0/8")
                .unwrap()
                .origin_secret(crate::OriginSecret::new(secret, b"s".to_vec()).unwrap())
                .build()
                .unwrap()
        };
        for secret in ["X-Azure-FDID", "X-Origin-Verify"] {
            let policy = policy(secret);
            let set = ForwardingSet::for_policy(&policy);
            assert!(set.withheld(secret.as_bytes(), behind(&policy)), "{secret}");
            assert!(set.withheld(secret.as_bytes(), Hop::Untrusted), "{secret}");
        }
        // Not the origin secret: a claim about the origin, which passes.
        let plain = trusting("10.0.0.0/8");
        assert!(!ForwardingSet::for_policy(&plain).withheld(b"X-Azure-FDID", behind(&plain)));
    }

    /// A middleware's set holds what its policy reads a client or a secret from, beside
    /// the table: a `header:NAME` strategy's header from an untrusted client is as forged
    /// as its `X-Forwarded-For`, in every spelling. Not `Cookie`: it carries the rest. The
    /// origin secret names no address: the app never sees it.
    #[test]
    fn the_set_for_a_policy_adds_the_headers_it_reads_a_client_from() {
        let policy = crate::Policy::builder()
            .trust_str("10.0.0.0/8")
            .unwrap()
            .strategy_str("header:X-Client-Addr")
            .unwrap()
            .strategy_str("cookie:client")
            .unwrap()
            .origin_secret(crate::OriginSecret::new("X-Origin-Verify", b"s".to_vec()).unwrap())
            .build()
            .unwrap();
        let behind = behind(&policy);
        let set = ForwardingSet::for_policy(&policy);
        for name in ["X-Client-Addr", "x_client_addr", "X-Origin-Verify", "X-Forwarded-For"] {
            assert!(set.withheld(name.as_bytes(), Hop::Untrusted), "{name}");
        }
        assert!(!set.withheld(b"X-Client-Addr", behind));
        assert!(set.withheld(b"X_Client_Addr", behind));
        assert!(set.withheld(b"X-Origin-Verify", behind));
        assert!(!set.withheld(b"Cookie", Hop::Untrusted));
        assert_eq!(set.names().len(), names::FORWARDING.len() + 2, "each name once");
        let plain = ForwardingSet::for_policy(&crate::Policy::default());
        assert_eq!(plain.names().len(), names::FORWARDING.len());
    }

    proptest::proptest! {
        /// `fate` (one lookup, no token check) says what the rule says, in its plain
        /// words: a non-token name always; else a name that spells one of the set, unless
        /// a trusted hop sent it without underscores and it is a claim about the request
        /// or the policy reads it.
        #[test]
        fn forwarding_set_fate_is_the_rule(
            name in "[xX][-_.][a-zA-Z_.-]{0,16}|[a-zA-Z_.-]{1,18}|x-forwarded-\\PC|x-real-ip|true-client-ip",
            trusted in proptest::prelude::any::<bool>(),
        ) {
            let policy = crate::Policy::builder()
                .trust_str("10.0.0.0/8")
                .unwrap()
                .strategy_str("header:X-Real-IP")
                .unwrap()
                .build()
                .unwrap();
            let hop = if trusted {
                behind(&policy)
            } else {
                Hop::Untrusted
            };
            let set = ForwardingSet::default().with(FieldName::new("x_edge_client").unwrap());
            let token = !name.is_empty() && name.bytes().all(is_token_byte);
            let spelled = set.names().iter().any(|n| spells(n.as_str(), &name));
            let lower = name.to_ascii_lowercase();
            let passes_a_trusted_hop = !name.contains(['_', '.'])
                && (["x-forwarded-for", "x-real-ip"].contains(&lower.as_str())
                    || names::FORWARDING
                        .iter()
                        .any(|row| row.name.as_str() == lower && row.claim != names::Claim::Address));
            let want = !token || (spelled && !(trusted && passes_a_trusted_hop));
            proptest::prop_assert_eq!(set.withheld(name.as_bytes(), hop), want);
            if token {
                proptest::prop_assert_eq!(set.fate(&name, hop).withheld, want);
            }
        }
    }

    #[test]
    fn lowered_words_are_each_byte_lowered() {
        for b in 0..=255u8 {
            for at in 0..8 {
                let mut bytes = *b"aZ-9_@[`";
                bytes[at] = b;
                let want = bytes.map(|b| b.to_ascii_lowercase());
                assert_eq!(lowered(&bytes), u64::from_ne_bytes(want), "{b:#x} at {at}");
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn lower_names_compare_as_eq_ignore_ascii_case(
            lower in "[a-z0-9_@`{\\[\\-]{0,40}",
            flips in proptest::collection::vec(proptest::prelude::any::<u8>(), 40),
        ) {
            // `name`: `lower` with some bytes upper-cased (or otherwise changed by 0x20).
            let name: String = lower
                .bytes()
                .zip(&flips)
                .map(|(b, f)| match f % 4 {
                    0 => b.to_ascii_uppercase() as char,
                    1 => (b ^ 0x20) as char,
                    _ => b as char,
                })
                .collect();
            proptest::prop_assert_eq!(is_lower_name(&name, &lower), name.eq_ignore_ascii_case(&lower));
            proptest::prop_assert!(is_lower_name(&lower.to_ascii_uppercase(), &lower));
        }
    }

    /// (case, line, the name and value read, or the fault). Each refused line is one that
    /// `trueip serve`'s parser answers 400 to; the gateway's `header_rule` test holds the two
    /// to the same answer byte by byte.
    #[test]
    fn header_lines_are_read_as_an_http_server_reads_them() {
        use HeaderFault::*;
        type Expected = Result<(&'static str, &'static str), HeaderFault>;
        let cases: &[(&str, &str, Expected)] = &[
            ("plain", "X-Forwarded-For: 1.2.3.4", Ok(("x-forwarded-for", "1.2.3.4"))),
            ("no space after the colon", "X-Real-IP:1.2.3.4", Ok(("x-real-ip", "1.2.3.4"))),
            ("spaces and tabs around the value", "a:\t 1.2.3.4 \t", Ok(("a", "1.2.3.4"))),
            ("empty value", "X-Empty:", Ok(("x-empty", ""))),
            ("colons in the value", "X-Real-IP: [::1]:80", Ok(("x-real-ip", "[::1]:80"))),
            ("obs-text in the value", "X-Name: caf\u{e9}", Ok(("x-name", "caf\u{e9}"))),
            ("tab inside the value", "X-A: 1\t2", Ok(("x-a", "1\t2"))),
            (
                "every token character",
                "!#$%&'*+-.^_`|~09azAZ: v",
                Ok(("!#$%&'*+-.^_`|~09azaz", "v")),
            ),
            ("fail: no colon", "X-Forwarded-For 1.2.3.4", Err(NoColon)),
            ("fail: empty line", "", Err(NoColon)),
            ("fail: empty name", ": 1.2.3.4", Err(EmptyName)),
            (
                "fail: space before the colon",
                "X-Forwarded-For : 6.6.6.6",
                Err(WhitespaceBeforeColon),
            ),
            (
                "fail: tab before the colon",
                "X-Forwarded-For\t: 6.6.6.6",
                Err(WhitespaceBeforeColon),
            ),
            ("fail: leading space (obs-fold)", " X-Forwarded-For: 6.6.6.6", Err(LeadingWhitespace)),
            ("fail: leading tab (obs-fold)", "\tX-Forwarded-For: 6.6.6.6", Err(LeadingWhitespace)),
            ("fail: only whitespace before the colon", " : 6.6.6.6", Err(LeadingWhitespace)),
            ("fail: space inside the name", "X-Forwarded For: 6.6.6.6", Err(NameByte(b' '))),
            ("fail: line break inside the name", "X\r\nX-Real-IP: 6.6.6.6", Err(NameByte(b'\r'))),
            ("fail: non-ASCII name", "X-Caf\u{e9}: 1", Err(NameByte(0xc3))),
            (
                "fail: CR LF inside the value",
                "X-Real-IP: 1.1.1.1\r\nX-Real-IP: 6.6.6.6",
                Err(ValueByte(b'\r')),
            ),
            (
                "fail: bare LF inside the value",
                "X-Real-IP: 1.1.1.1\nX-Real-IP: 6.6.6.6",
                Err(ValueByte(b'\n')),
            ),
            ("fail: CR at the end of the value", "X-Real-IP: 6.6.6.6\r", Err(ValueByte(b'\r'))),
            ("fail: NUL in the value", "X-Real-IP: 6.6.6.6\0", Err(ValueByte(0))),
            ("fail: DEL in the value", "X-Real-IP: 6.6.6.6\x7f", Err(ValueByte(0x7f))),
            ("fail: escape in the value", "X-Real-IP: \x1b[31m6.6.6.6", Err(ValueByte(0x1b))),
        ];
        for (case, line, expected) in cases {
            let got = parse_header_line(line);
            let got = got.as_ref().map(|(n, v)| (n.as_str(), *v)).map_err(HeaderLineError::fault);
            assert_eq!(got, *expected, "{case}: {line:?}");
            // The same header given as a pair reads the same (the no-colon cases have no pair).
            if let Some((name, value)) = line.split_once(':') {
                let pair = parse_header_field(name, value.as_bytes());
                let pair =
                    pair.as_ref().map(|(n, v)| (n.as_str(), *v)).map_err(HeaderLineError::fault);
                let expected = expected.map(|(n, v)| (n, v.as_bytes()));
                assert_eq!(pair, expected, "{case}: {line:?} as a pair");
            }
        }
    }

    #[test]
    fn a_refused_line_is_quoted_with_its_fault_and_a_fix() {
        let message = |line: &str| parse_header_line(line).unwrap_err().to_string();
        let text = message("X-Forwarded-For : 6.6.6.6");
        assert!(
            text.starts_with("invalid header \"X-Forwarded-For : 6.6.6.6\": whitespace"),
            "{text}"
        );
        assert!(text.contains("hint: write \"X-Forwarded-For: 6.6.6.6\""), "{text}");
        assert!(text.contains("400"), "{text}");
        let text = message(" X-Real-IP:  6.6.6.6 ");
        assert!(
            text.contains("obsolete line folding") && text.contains("write \"X-Real-IP: 6.6.6.6\""),
            "{text}"
        );
        // Control bytes are escaped, never written raw to a terminal or a log.
        let text = message("X-Real-IP: \x1b[2J\r\n");
        assert!(text.contains("\\u{1b}[2J\\r\\n") && !text.contains('\x1b'), "{text}");
    }

    /// A line from the network can be long: the error keeps a bounded, readable piece of it.
    #[test]
    fn a_long_refused_line_is_quoted_in_part() {
        let line = format!("X-Real-IP: {}\0", "\u{e9}".repeat(10_000));
        let text = parse_header_line(&line).unwrap_err().to_string();
        assert!(text.len() < QUOTED_LINE + 400, "{} bytes", text.len());
        assert!(text.contains('…'), "{text}");
    }

    #[test]
    fn names_are_held_to_one_rule_everywhere() {
        let long = "x".repeat(MAX_NAME_LEN + 1);
        assert_eq!(parse_header_field(&long, b"v").unwrap_err().fault(), HeaderFault::NameTooLong);
        assert!(FieldName::new(&long).is_err());
        let longest = "x".repeat(MAX_NAME_LEN);
        assert!(parse_header_field(&longest, b"v").is_ok());
        for name in ["", " X-A", "X-A ", "X A", "X:A", "X\u{e9}"] {
            assert!(FieldName::new(name).is_err(), "{name:?}");
            assert!(parse_header_field(name, b"v").is_err(), "{name:?}");
        }
    }

    #[test]
    fn the_forwarding_table_names_each_header_once_and_says_why() {
        for (i, row) in names::FORWARDING.iter().enumerate() {
            assert!(!row.used_by.is_empty(), "{}: say who writes or reads it", row.as_str());
            assert!(
                !row.as_str().contains('_'),
                "{}: underscore spellings are matched by every reader of the table",
                row.as_str()
            );
            let again = names::FORWARDING.iter().skip(i + 1).any(|other| other.name == row.name);
            assert!(!again, "{} is listed twice", row.as_str());
        }
    }

    /// What `for_each_value_noting` must answer: the values of `name` in order, and
    /// whether `also` is present, as two plain lookups say.
    fn expected<H: Headers + ?Sized>(
        h: &H,
        name: &FieldName,
        also: &FieldName,
    ) -> (Vec<Vec<u8>>, bool) {
        let mut values = Vec::new();
        h.for_each_value(name, |v| values.push(v.to_vec()));
        let mut present = false;
        h.for_each_value(also, |_| present = true);
        (values, present)
    }

    fn noting<H: Headers + ?Sized>(
        h: &H,
        name: &FieldName,
        also: &FieldName,
    ) -> (Vec<Vec<u8>>, bool) {
        let mut values = Vec::new();
        let present = h.for_each_value_noting(name, also, |v| values.push(v.to_vec()));
        (values, present)
    }

    #[test]
    fn one_pass_read_agrees_with_lookups_on_slices() {
        let headers = [
            ("Host", "a"),
            ("X-Forwarded-For", "1.1.1.1"),
            ("forwarded", "for=2.2.2.2"),
            ("x-forwarded-for", "3.3.3.3"),
        ];
        let (xff, fwd) = (&names::X_FORWARDED_FOR, &names::FORWARDED);
        assert_eq!(noting(&headers, xff, fwd), expected(&headers, xff, fwd));
        assert_eq!(noting(&headers, fwd, xff), expected(&headers, fwd, xff));
        assert_eq!(noting(&headers[..1], xff, fwd), (vec![], false));
    }

    /// Whatever the count, the kept lines are the last ones, in order, and dropping any
    /// is flagged: around the switch from the few slots to the many, and past the cap.
    #[test]
    fn lines_keep_the_last_ones_in_order() {
        for count in 0..=MAX_LINES + 4 {
            let values: Vec<String> = (0..count).map(|i| format!("10.0.0.{i}")).collect();
            let headers: Vec<(&str, &str)> =
                values.iter().map(|v| ("x-forwarded-for", v.as_str())).collect();
            let lines = Lines::read(&headers, &names::X_FORWARDED_FOR);
            let kept: Vec<&[u8]> =
                values.iter().skip(count.saturating_sub(MAX_LINES)).map(|v| v.as_bytes()).collect();
            assert_eq!(lines.as_slice(), kept.as_slice(), "{count} lines");
            assert_eq!(lines.truncated, count > MAX_LINES, "{count} lines");
            assert_eq!(lines.is_empty(), count == 0);
        }
    }

    /// Small maps are scanned, large ones looked up: both give every value of the name
    /// in request order, with other headers and the other name in between.
    #[cfg(feature = "http")]
    #[test]
    fn one_pass_read_agrees_with_lookups_on_header_maps() {
        use http::{HeaderMap, HeaderValue};
        let (xff, fwd) = (&names::X_FORWARDED_FOR, &names::FORWARDED);
        for filler in [0, 5, SCAN_LINES - 4, SCAN_LINES + 1, 60] {
            for with_forwarded in [false, true] {
                let mut map = HeaderMap::new();
                for i in 0..filler {
                    let name =
                        http::HeaderName::from_bytes(format!("x-filler-{i}").as_bytes()).unwrap();
                    map.append(name, HeaderValue::from_static("v"));
                    if i == 2 {
                        map.append("x-forwarded-for", HeaderValue::from_static("1.1.1.1"));
                    }
                }
                map.append("x-forwarded-for", HeaderValue::from_static("2.2.2.2, 3.3.3.3"));
                if with_forwarded {
                    map.append("forwarded", HeaderValue::from_static("for=4.4.4.4"));
                }
                map.append("x-forwarded-for", HeaderValue::from_static("5.5.5.5"));
                let got = noting(&map, xff, fwd);
                assert_eq!(got, expected(&map, xff, fwd), "{filler} filler lines");
                assert_eq!(got.1, with_forwarded);
                assert_eq!(got.0.last().map(Vec::as_slice), Some(&b"5.5.5.5"[..]));
                assert_eq!(noting(&map, fwd, xff), expected(&map, fwd, xff));
                for name in [xff, fwd, &names::X_REAL_IP] {
                    let mut scanned = Vec::new();
                    map.for_each_value(name, |v| scanned.push(v));
                    let looked_up: Vec<&[u8]> =
                        map.get_all(name.as_http()).iter().map(HeaderValue::as_bytes).collect();
                    assert_eq!(scanned, looked_up, "{name} among {filler} filler lines");
                }
            }
        }
    }
}
