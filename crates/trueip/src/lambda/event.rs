//! An event's shape: which kind it is, what stands in for the peer, and its headers.

use serde_json::{Map, Value};

use crate::addr::Node;
use crate::explain::Explanation;
use crate::headers::{FieldName, Headers, names};
use crate::params::{ParamName, QueryForm};
use crate::policy::{Connection, Policy};
use crate::resolution::Resolution;

use super::error::{EventError, Found};
use super::{EventKind, alb_peer, source_ip, stand_in_step};

/// Why a VPC Lattice event has no peer stand-in.
pub(super) const LATTICE: &str = "it carries no sourceIp, and AWS documents that VPC Lattice adds x-forwarded-for, not whether it replaces or appends to one the caller sent, so no element of it is known to be Lattice's";

/// An event, read: its kind, the address that stands in for the peer, and its headers
/// (borrowed from the JSON, not copied).
///
/// [`resolve_event`](super::resolve_event) is `Event::parse` then [`resolve`](Self::resolve);
/// parse once and resolve with several policies, or read [`kind`](Self::kind) and
/// [`peer`](Self::peer) for a log line. As [`Headers`], an event yields its headers as
/// lambda_http hands them to a handler (see [`parse`](Self::parse)), several values of one
/// name in order, and its query arguments as AWS wrote them.
#[derive(Clone, Copy, Debug)]
pub struct Event<'e> {
    kind: EventKind,
    peer: Node,
    headers: Container<'e>,
    query: Query<'e>,
    /// A payload 2.0 event's `cookies`: the request's `Cookie` header, which AWS moves
    /// out of `headers`, one cookie a string.
    cookies: Option<&'e [Value]>,
    /// The headers whose lines' order was lost: none is read.
    lost: Lost<'e>,
}

/// The headers whose lines' order counts ([`order_slot`]) that came under two spellings
/// (a REST API event keeps the case each line was sent in): a JSON object keeps no order
/// between the two, so no line of such a header is read, and the request's client-IP
/// headers are trusted to no hop ([`Event::resolve`]).
#[derive(Clone, Copy, Debug, Default)]
struct Lost<'e> {
    /// One bit per [`order_slot`].
    slots: u16,
    /// One such pair, `X-Forwarded-For`'s if it is one, and the object it was in: what an
    /// ALB event's refusal names and the explanation shows.
    first: Option<(&'static str, &'e str, &'e str)>,
}

impl Lost<'_> {
    fn has(self, name: &str) -> bool {
        self.slots != 0 && order_slot(name).is_some_and(|slot| self.slots & (1 << slot) != 0)
    }

    fn or(self, other: Self) -> Self {
        Lost { slots: self.slots | other.slots, first: self.first.or(other.first) }
    }
}

/// Where an event's query arguments are, and how AWS wrote them.
#[derive(Clone, Copy, Debug)]
enum Query<'e> {
    /// None came, or the event has no field for them.
    None,
    /// A payload 2.0 event's `rawQueryString`: the query string as sent.
    Raw(&'e str),
    /// `queryStringParameters` (one string a name) or `multiValueQueryStringParameters`
    /// (an array of strings a name, in request order): an ALB's as sent
    /// ([`QueryForm::Encoded`], names too), a REST API's decoded.
    Map { map: &'e Map<String, Value>, form: QueryForm },
    /// A payload 2.0 event's `queryStringParameters`, read only without a
    /// `rawQueryString`: decoded, the values of a repeated argument joined by commas.
    Joined(&'e Map<String, Value>),
}

/// Which of the event's header objects is read.
#[derive(Clone, Copy, Debug)]
enum Container<'e> {
    /// Neither `headers` nor `multiValueHeaders` (or both `null`).
    None,
    /// `headers`: one string per name.
    Single(Names<'e>),
    /// `multiValueHeaders`: an array of strings per name, in request order.
    Multi(Names<'e>),
    /// Both, as a REST API event carries them: a name in `headers` is read there (one
    /// line, the last the request carried), any other in `multiValueHeaders`. What
    /// lambda_http keeps: it extends the multi-value map with `headers`, whose value of a
    /// name replaces that name's lines.
    Both { multi: Names<'e>, single: Names<'e> },
}

/// A header object, and whether every name in it is lower-case: AWS writes ALB and
/// payload 2.0 names so, and then a name is found with one map lookup, not a scan.
#[derive(Clone, Copy, Debug)]
struct Names<'e> {
    map: &'e Map<String, Value>,
    lower: bool,
}

impl<'e> Names<'e> {
    /// Calls `f` with the value of each key that spells `name`. A header whose lines' order
    /// counts ([`order_slot`]) under several spellings is not asked for ([`Lost`]); any
    /// other may come under several spellings (a REST API event keeps the case each line
    /// was sent in), and each is read, as another line.
    /// Says whether any did.
    #[inline]
    fn each(&self, name: &str, mut f: impl FnMut(&'e Value)) -> bool {
        if self.lower {
            self.map.get(name).map(f).is_some()
        } else {
            let mut found = false;
            self.map
                .iter()
                .filter(|(key, _)| key.len() == name.len() && key.eq_ignore_ascii_case(name))
                .for_each(|(_, value)| {
                    found = true;
                    f(value);
                });
            found
        }
    }
}

/// Whether what is read from a header depends on the order of its lines, and its slot in
/// [`Lost`] if so: the list headers, walked from the right, and the claims about the
/// request (`X-Forwarded-Proto`, ...), read as far from the right as hops were trusted. A
/// JSON object keeps no order between two spellings of one name, so such a header under
/// two is not read at all ([`Lost`]). Any other header is read under every spelling: a
/// single-address header, an origin secret or a cookie on two lines is a duplicate, which
/// fails closed.
fn order_slot(name: &str) -> Option<u32> {
    use crate::headers::names::{self, Claim};
    let is = |other: &str| other.len() == name.len() && other.eq_ignore_ascii_case(name);
    if is(names::X_FORWARDED_FOR.as_str()) {
        return Some(0);
    }
    if is(names::FORWARDED.as_str()) {
        return Some(1);
    }
    names::FORWARDING
        .iter()
        .filter(|row| row.claim == Claim::Request)
        .position(|row| is(row.as_str()))
        .and_then(|i| u32::try_from(i + 2).ok())
        .filter(|&slot| slot < u16::BITS)
}

/// The top-level fields of an event that are read, found in one pass over its keys: a
/// dozen or so, where a lookup per field walks the map's tree for each.
#[derive(Default)]
struct Top<'e> {
    version: Option<&'e Value>,
    request_context: Option<&'e Value>,
    raw_path: Option<&'e Value>,
    headers: Option<&'e Value>,
    multi_value_headers: Option<&'e Value>,
    query_string_parameters: Option<&'e Value>,
    multi_value_query_string_parameters: Option<&'e Value>,
    raw_query_string: Option<&'e Value>,
    cookies: Option<&'e Value>,
}

impl<'e> Top<'e> {
    fn new(object: &'e Map<String, Value>) -> Self {
        let mut top = Top::default();
        for (key, value) in object {
            let slot = match key.as_str() {
                "version" => &mut top.version,
                "requestContext" => &mut top.request_context,
                "raw_path" => &mut top.raw_path,
                "headers" => &mut top.headers,
                "multiValueHeaders" => &mut top.multi_value_headers,
                "queryStringParameters" => &mut top.query_string_parameters,
                "multiValueQueryStringParameters" => &mut top.multi_value_query_string_parameters,
                "rawQueryString" => &mut top.raw_query_string,
                "cookies" => &mut top.cookies,
                _ => continue,
            };
            *slot = Some(value);
        }
        top
    }

    /// The field named `field`, one of those above.
    #[inline]
    fn get(&self, field: &str) -> Option<&'e Value> {
        match field {
            "version" => self.version,
            "requestContext" => self.request_context,
            "raw_path" => self.raw_path,
            "headers" => self.headers,
            "multiValueHeaders" => self.multi_value_headers,
            "queryStringParameters" => self.query_string_parameters,
            "multiValueQueryStringParameters" => self.multi_value_query_string_parameters,
            "rawQueryString" => self.raw_query_string,
            "cookies" => self.cookies,
            _ => None,
        }
    }
}

impl<'e> Event<'e> {
    /// Reads an event and tells its kind from its shape, in this order:
    ///
    /// 1. `requestContext.elb` present: an ALB target event;
    /// 2. `version` `"2.0"`: a Function URL when `requestContext.domainName` is a
    ///    Function URL's host (`<url-id>.lambda-url.<region>.on.aws`), else API Gateway
    ///    HTTP API payload 2.0; a 2.0 event without a `domainName` is refused, since
    ///    AWS writes one in both and the two are read differently;
    /// 3. `version` `"1.0"`, or no `version` and a `requestContext.identity`: API
    ///    Gateway REST API (and HTTP API payload 1.0, and WebSocket APIs, same shape).
    ///
    /// A VPC Lattice event (payload v1: `raw_path` and no `requestContext`; v2: `version`
    /// `"2.0"`, no `requestContext.http`, and a `serviceNetworkArn` or `serviceArn`) is
    /// [`EventError::Unsupported`]. Anything else, a kind without the field its peer
    /// stand-in comes from, or a field that does not hold what AWS puts there is an
    /// [`EventError`] naming it.
    ///
    /// The headers are read as lambda_http hands them to a handler, so that
    /// `resolve_request` decides a request as this decides its event: from
    /// `multiValueHeaders` (every line, in order) and `headers`, whose value of a name
    /// replaces that name's lines. A REST API event carries both, and its `headers` keeps
    /// only the last line of a repeated header: that line is read, the right end of a
    /// list, where a walk from the right starts. Every value must be a string (an array
    /// of strings in `multiValueHeaders`). A header whose lines' order decides what is
    /// read (`X-Forwarded-For`, `Forwarded`, the `X-Forwarded-Proto`/`-Host`/`-Port`/`-Prefix`
    /// claims) may not appear under two spellings; any other is read under each, as more
    /// lines of it. A payload 2.0 event's `cookies` are its `Cookie` lines.
    ///
    /// The query arguments, which a `query:NAME` strategy reads, as AWS writes them: a
    /// payload 2.0 event's `rawQueryString` as a request target's query string (or,
    /// without one, `queryStringParameters`, a repeated argument's values joined by
    /// commas); an ALB's and a REST API's `multiValueQueryStringParameters` when it has
    /// any, else `queryStringParameters`, the ALB's as sent (percent-encoded, names too),
    /// the REST API's decoded.
    pub fn parse(event: &'e Value) -> Result<Self, EventError> {
        let Some(object) = event.as_object() else {
            return Err(EventError::UnknownKind { why: "the event is not a JSON object" });
        };
        let object = &Top::new(object);
        let Some(context) = object.request_context.and_then(Value::as_object) else {
            if object.raw_path.is_some() {
                return Err(EventError::Unsupported {
                    service: "VPC Lattice (payload v1)",
                    why: LATTICE,
                });
            }
            return Err(EventError::UnknownKind {
                why: "no requestContext object: not an ALB, API Gateway or Function URL event",
            });
        };
        // `http` is what a payload 2.0 stand-in comes from, looked up once.
        let (kind, http) = if context.contains_key("elb") {
            (EventKind::Alb, None)
        } else {
            match object.version {
                Some(Value::String(v)) if v == "2.0" => {
                    let http = context.get("http");
                    // VPC Lattice's payload v2 says "2.0" too; its requestContext has no
                    // `http` and names the Lattice service. Looked for only without
                    // `http`: an API Gateway or Function URL event pays nothing for it.
                    if http.is_none()
                        && (context.contains_key("serviceNetworkArn")
                            || context.contains_key("serviceArn"))
                    {
                        return Err(EventError::Unsupported {
                            service: "VPC Lattice (payload v2)",
                            why: LATTICE,
                        });
                    }
                    (payload_v2_kind(context)?, http)
                }
                Some(Value::String(v)) if v == "1.0" => (EventKind::ApiGatewayV1, None),
                None | Some(Value::Null) if context.contains_key("identity") => {
                    (EventKind::ApiGatewayV1, None)
                }
                None | Some(Value::Null) => {
                    return Err(EventError::UnknownKind {
                        why: "requestContext has neither elb nor identity, and there is no version",
                    });
                }
                Some(_) => {
                    return Err(EventError::UnknownKind {
                        why: "version is neither \"1.0\" nor \"2.0\"",
                    });
                }
            }
        };
        let (headers, lost) = Container::read(object, kind)?;
        // The ALB's stand-in is the last element of its line: with that line's order lost,
        // there is none.
        if kind == EventKind::Alb
            && lost.has(names::X_FORWARDED_FOR.as_str())
            && let Some((field, a, b)) = lost.first
        {
            return Err(EventError::AmbiguousHeader {
                kind,
                field,
                names: (a.to_string(), b.to_string()),
            });
        }
        let (query, cookies) = match kind {
            EventKind::ApiGatewayV2 | EventKind::FunctionUrl => {
                (Query::read_v2(object, kind)?, read_cookies(object, kind)?)
            }
            EventKind::Alb => (Query::read_map(object, kind, QueryForm::Encoded)?, None),
            EventKind::ApiGatewayV1 => (Query::read_map(object, kind, QueryForm::Decoded)?, None),
        };
        let peer = match kind {
            EventKind::Alb => alb_peer(&headers, headers.field())?,
            EventKind::ApiGatewayV1 => source_ip(
                kind,
                context.get("identity").and_then(|identity| identity.get("sourceIp")),
            )?,
            EventKind::ApiGatewayV2 | EventKind::FunctionUrl => {
                source_ip(kind, http.and_then(|http| http.get("sourceIp")))?
            }
        };
        Ok(Event { kind, peer, headers, query, cookies, lost })
    }

    /// The kind, as told from the event's shape.
    pub fn kind(&self) -> EventKind {
        self.kind
    }

    /// What stands in for the TCP peer a Lambda does not have: the address the AWS front
    /// end saw (see [the module docs](super)).
    pub fn peer(&self) -> Node {
        self.peer
    }

    /// The connection the policy sees: the stand-in as its peer, no PROXY header.
    pub fn connection(&self) -> Connection {
        Connection::from_peer(self.peer)
    }

    /// Decides who the client is, as [`Policy::resolve`] does for a connection.
    ///
    /// A header whose lines' order counts that came under two spellings is not read, and
    /// the decision is flagged [`Warnings::UNVOUCHED_HEADER`](crate::Warnings::UNVOUCHED_HEADER):
    /// no hop can be said to have written its last line, so the request's client-IP headers
    /// are trusted to no hop ([`Policy::came_through_trusted_hop`]) and withheld from the
    /// app. The client is still decided, from the stand-in and the headers that keep their
    /// order: a client's two spellings cannot leave the app without an address.
    pub fn resolve(&self, policy: &Policy) -> Resolution {
        let mut resolution = policy.resolve_stand_in(self.kind, &self.connection(), self);
        if self.lost.slots != 0 {
            resolution.warnings.insert(crate::Warnings::UNVOUCHED_HEADER);
        }
        resolution
    }

    /// The decision over the stand-in alone, no header read: what a signed header's claim
    /// is laid over (`trueip::provenance::Claim::resolution_over`). Not
    /// `Policy::resolve(&self.connection(), ...)`, which a Lambda preset's policy decides
    /// as a request without an event.
    pub fn peer_resolution(&self, policy: &Policy) -> Resolution {
        const NO_HEADERS: &[(&str, &str)] = &[];
        policy.resolve_stand_in(self.kind, &self.connection(), NO_HEADERS)
    }

    /// Decides, and records every step: first where the peer stand-in came from.
    pub fn explain(&self, policy: &Policy) -> Explanation {
        let mut explanation = Explanation::stand_in(policy, self.kind, &self.connection(), self);
        explanation.steps.insert(0, stand_in_step(self.kind, self.peer));
        if let Some((field, a, b)) = self.lost.first {
            explanation.steps.insert(
                1,
                crate::trace::Step {
                    subject: std::borrow::Cow::Owned(a.to_ascii_lowercase()),
                    value: format!("{field}: {a} | {b}"),
                    verdict: crate::trace::Verdict::Ignored,
                    why: std::borrow::Cow::Borrowed(LOST_ORDER),
                },
            );
            let warnings = &mut explanation.resolution.warnings;
            warnings.insert(crate::Warnings::UNVOUCHED_HEADER);
            explanation.warnings = warnings.names().collect();
        }
        explanation
    }
}

/// The kind of a payload 2.0 event, from its `requestContext.domainName`
/// ([`EventKind::of_payload_v2`]). AWS writes that field in both kinds; without it the
/// event cannot say whether its `X-Forwarded-For` may be read, so it is refused, not
/// guessed.
fn payload_v2_kind(context: &Map<String, Value>) -> Result<EventKind, EventError> {
    const FIELD: &str = "requestContext.domainName";
    match context.get("domainName") {
        Some(Value::String(domain)) => Ok(EventKind::of_payload_v2(domain)),
        None | Some(Value::Null) => {
            Err(EventError::Missing { kind: EventKind::ApiGatewayV2, field: FIELD })
        }
        Some(other) => {
            Err(EventError::invalid(EventKind::ApiGatewayV2, FIELD, "a host name", what(other)))
        }
    }
}

/// Why a header under two spellings is not read, for the explanation.
const LOST_ORDER: &str = "one header under two spellings, whose lines' order a JSON object does not keep: not read, and no hop is trusted with the request's client-IP headers";

impl<'e> Container<'e> {
    /// The header objects, and the headers whose order is lost in either.
    fn read(object: &Top<'e>, kind: EventKind) -> Result<(Self, Lost<'e>), EventError> {
        let mut lost = Lost::default();
        let mut check = |field: &'static str| -> Result<Option<Names<'e>>, EventError> {
            let Some(map) = optional_object(object, field, kind)? else {
                return Ok(None);
            };
            let (names, in_map) = Names::check(map, kind, field)?;
            lost = lost.or(in_map);
            Ok(Some(names))
        };
        let multi = check("multiValueHeaders")?;
        let single = check("headers")?;
        let container = match (multi, single) {
            (Some(multi), Some(single)) => Container::Both { multi, single },
            (Some(multi), None) => Container::Multi(multi),
            (None, Some(single)) => Container::Single(single),
            (None, None) => Container::None,
        };
        Ok((container, lost))
    }

    /// The object the headers come from, for error messages.
    fn field(self) -> &'static str {
        match self {
            Container::Multi(_) => "multiValueHeaders",
            Container::Single(_) | Container::Both { .. } | Container::None => "headers",
        }
    }
}

/// The object `object[field]`: `None` when it is absent or `null`, refused when it is
/// anything else.
fn optional_object<'e>(
    object: &Top<'e>,
    field: &'static str,
    kind: EventKind,
) -> Result<Option<&'e Map<String, Value>>, EventError> {
    match object.get(field) {
        Some(Value::Object(map)) => Ok(Some(map)),
        None | Some(Value::Null) => Ok(None),
        Some(other) => Err(EventError::invalid(kind, field, "an object", what(other))),
    }
}

/// Checks that every value of a map of query arguments is a string (an array of strings
/// when `multi`).
fn check_strings(
    map: &Map<String, Value>,
    kind: EventKind,
    field: &'static str,
    multi: bool,
) -> Result<(), EventError> {
    map.iter().try_for_each(|(name, value)| check_string(kind, field, name, value, multi))
}

/// Checks that `field.name`'s `value` is a string (an array of strings when `multi`), as
/// AWS writes every header and query argument.
fn check_string(
    kind: EventKind,
    field: &'static str,
    name: &str,
    value: &Value,
    multi: bool,
) -> Result<(), EventError> {
    match value {
        Value::String(_) if !multi => Ok(()),
        Value::Array(values) if multi => {
            match values.iter().enumerate().find(|(_, v)| !v.is_string()) {
                Some((i, value)) => Err(EventError::invalid(
                    kind,
                    format!("{field}.{name}[{i}]"),
                    "a string",
                    what(value),
                )),
                None => Ok(()),
            }
        }
        other => Err(EventError::invalid(
            kind,
            format!("{field}.{name}"),
            if multi { "an array of strings" } else { "a string" },
            what(other),
        )),
    }
}

/// A payload 2.0 event's `cookies`: an array of strings, or none.
fn read_cookies<'e>(object: &Top<'e>, kind: EventKind) -> Result<Option<&'e [Value]>, EventError> {
    match object.cookies {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(values)) => {
            match values.iter().enumerate().find(|(_, v)| !v.is_string()) {
                Some((i, value)) => {
                    Err(EventError::invalid(kind, format!("cookies[{i}]"), "a string", what(value)))
                }
                None => Ok(Some(values)),
            }
        }
        Some(other) => {
            Err(EventError::invalid(kind, "cookies", "an array of strings", what(other)))
        }
    }
}

impl<'e> Query<'e> {
    /// An ALB's or a REST API's arguments: `multiValueQueryStringParameters` when it has
    /// any (AWS writes `null` or `{}` without), else `queryStringParameters`, as
    /// lambda_http prefers them.
    fn read_map(object: &Top<'e>, kind: EventKind, form: QueryForm) -> Result<Self, EventError> {
        const MULTI: &str = "multiValueQueryStringParameters";
        const SINGLE: &str = "queryStringParameters";
        if let Some(map) = optional_object(object, MULTI, kind)? {
            check_strings(map, kind, MULTI, true)?;
            if !map.is_empty() {
                return Ok(Query::Map { map, form });
            }
        }
        Ok(match optional_object(object, SINGLE, kind)? {
            Some(map) => {
                check_strings(map, kind, SINGLE, false)?;
                Query::Map { map, form }
            }
            None => Query::None,
        })
    }

    /// A payload 2.0 event's arguments: its `rawQueryString`, else its
    /// `queryStringParameters`.
    fn read_v2(object: &Top<'e>, kind: EventKind) -> Result<Self, EventError> {
        const RAW: &str = "rawQueryString";
        const JOINED: &str = "queryStringParameters";
        match object.get(RAW) {
            Some(Value::String(raw)) => return Ok(Query::Raw(raw)),
            None | Some(Value::Null) => {}
            Some(other) => {
                return Err(EventError::invalid(kind, RAW, "a string", what(other)));
            }
        }
        Ok(match optional_object(object, JOINED, kind)? {
            Some(map) => {
                check_strings(map, kind, JOINED, false)?;
                Query::Joined(map)
            }
            None => Query::None,
        })
    }

    /// Calls `f` with every value of the argument `name`, in order, and says how they are
    /// written.
    fn each(self, name: &ParamName, mut f: impl FnMut(&'e [u8])) -> QueryForm {
        let mut each = |value: &'e Value| match value {
            Value::String(value) => f(value.as_bytes()),
            Value::Array(values) => {
                values.iter().filter_map(Value::as_str).for_each(|value| f(value.as_bytes()))
            }
            _ => {}
        };
        match self {
            Query::None => QueryForm::Encoded,
            Query::Raw(raw) => {
                crate::params::query_values(raw.as_bytes(), name, &mut f);
                QueryForm::Encoded
            }
            Query::Map { map, form: QueryForm::Decoded, .. } => {
                if let Some(value) = map.get(name.as_str()) {
                    each(value);
                }
                QueryForm::Decoded
            }
            // Names as sent: `cl%69ent` is `client` to the app, as in a query string.
            Query::Map { map, form: QueryForm::Encoded, .. } => {
                map.iter()
                    .filter(|(key, _)| crate::params::encoded_name_is(key.as_bytes(), name))
                    .for_each(|(_, value)| each(value));
                QueryForm::Encoded
            }
            // No address holds a comma: a joined value is several, ambiguous as several
            // arguments of the name in `rawQueryString` are.
            Query::Joined(map) => {
                if let Some(Value::String(value)) = map.get(name.as_str()) {
                    value.as_bytes().split(|&b| b == b',').for_each(&mut f);
                }
                QueryForm::Decoded
            }
        }
    }
}

impl<'e> Names<'e> {
    /// Checks every value's type, and finds the headers whose order is lost: those whose
    /// order counts under two spellings.
    fn check(
        map: &'e Map<String, Value>,
        kind: EventKind,
        field: &'static str,
    ) -> Result<(Self, Lost<'e>), EventError> {
        let multi = field == "multiValueHeaders";
        let mut lower = true;
        for (name, value) in map {
            lower &= !name.bytes().any(|b| b.is_ascii_uppercase());
            check_string(kind, field, name, value, multi)?;
        }
        // Keys of one JSON object are distinct: two can spell one header only when one
        // has an upper-case letter.
        let lost = match lower {
            true => Lost::default(),
            false => same_spelling(map.keys(), field),
        };
        Ok((Names { map, lower }, lost))
    }
}

/// The keys that are one header name in different case and whose lines' order counts
/// ([`order_slot`]). The spellings are compared first: a pair is rare, and asking every
/// key whether its order counts walks the header table for each.
fn same_spelling<'k>(keys: impl Iterator<Item = &'k String>, field: &'static str) -> Lost<'k> {
    let mut keys: Vec<&str> = keys.map(String::as_str).collect();
    let mut lost = Lost::default();
    let mut pair = |a: &'k str, b: &'k str| {
        if let Some(slot) = order_slot(a) {
            lost.slots |= 1 << slot;
            // X-Forwarded-For's pair first: the one an ALB event is refused for.
            if slot == 0 || lost.first.is_none() {
                lost.first = Some((field, a, b));
            }
        }
    };
    // Requests carry a dozen or two headers, and most pairs differ in length: comparing
    // every pair is then cheaper than sorting. A request made to be costly (API
    // Gateway lets 10 KB of headers through, some two thousand short ones) is sorted.
    if keys.len() <= 32 {
        for (i, a) in keys.iter().enumerate() {
            for b in keys.iter().skip(i + 1) {
                if a.len() == b.len() && a.eq_ignore_ascii_case(b) {
                    pair(a, b);
                }
            }
        }
        return lost;
    }
    let folded = |key: &str| key.bytes().map(|b| b.to_ascii_lowercase()).collect::<Vec<u8>>();
    keys.sort_by_cached_key(|key| folded(key));
    for window in keys.windows(2) {
        if let [a, b] = window
            && a.eq_ignore_ascii_case(b)
        {
            pair(a, b);
        }
    }
    lost
}

/// What a value that should have been text is, for an error message.
pub(crate) fn what(value: &Value) -> Found<'_> {
    match value {
        Value::String(text) => Found::Text(text),
        Value::Null => Found::Kind("null"),
        Value::Bool(_) => Found::Kind("a boolean"),
        Value::Number(_) => Found::Kind("a number"),
        Value::Array(_) => Found::Kind("an array"),
        Value::Object(_) => Found::Kind("an object"),
    }
}

impl Headers for Event<'_> {
    #[inline]
    fn for_each_value<'a>(&'a self, name: &FieldName, mut f: impl FnMut(&'a [u8])) {
        match self.cookies {
            // lambda_http joins them with `; ` into its one `Cookie` line, in place of
            // any the headers had: read one by one, a cookie is found as in that line.
            Some(cookies) if *name == names::COOKIE => {
                cookies.iter().filter_map(Value::as_str).for_each(|cookie| f(cookie.as_bytes()))
            }
            _ if self.lost.has(name.as_str()) => {}
            _ => self.headers.for_each_value(name, f),
        }
    }

    fn for_each_query_value<'a>(&'a self, name: &ParamName, f: impl FnMut(&'a [u8])) -> QueryForm {
        let query: Query<'a> = self.query;
        query.each(name, f)
    }
}

impl Headers for Container<'_> {
    #[inline]
    fn for_each_value<'a>(&'a self, name: &FieldName, f: impl FnMut(&'a [u8])) {
        match *self {
            Container::None => {}
            Container::Single(names) => {
                single_lines(names, name.as_str(), f);
            }
            Container::Multi(names) => multi_lines(names, name.as_str(), f),
            Container::Both { multi, single } => {
                let mut f = f;
                if !single_lines(single, name.as_str(), &mut f) {
                    multi_lines(multi, name.as_str(), f);
                }
            }
        }
    }
}

/// The lines of `name` in a `headers` object; whether it has any.
#[inline]
fn single_lines<'a>(names: Names<'a>, name: &str, mut f: impl FnMut(&'a [u8])) -> bool {
    names.each(name, |value| {
        if let Value::String(value) = value {
            f(value.as_bytes());
        }
    })
}

/// The lines of `name` in a `multiValueHeaders` object.
#[inline]
fn multi_lines<'a>(names: Names<'a>, name: &str, mut f: impl FnMut(&'a [u8])) {
    names.each(name, |value| {
        if let Value::Array(values) = value {
            for value in values.iter().filter_map(Value::as_str) {
                f(value.as_bytes());
            }
        }
    });
}
