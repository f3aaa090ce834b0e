//! `trueip._trueip`: the core's policy, decision and explanation for Python, and the
//! Lambda events. The Python package (`python/trueip/`) builds its middlewares on this
//! module; every decision is the core's own code, never a Python port of it.
//!
//! Headers arrive in the shapes Python servers hold them: a WSGI environ, a mapping, a
//! list of pairs (an ASGI scope's `headers`), or an object with `items()`. Only the
//! headers the policy reads ([`trueip::Policy::header_names`], plus the origin's when
//! asked) are copied out: a decision over them is the decision over the whole request.

use std::net::IpAddr;
use std::sync::Arc;

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyDict, PyFrozenSet, PyList, PyString, PyTuple};
use trueip::config::{ClientIpConfig, Files, OriginSecretConfig, Strategies, StrategyEntry};
use trueip::headers::{FieldName, Headers, Hop};
use trueip::{Connection, Node, Warnings};

pyo3::create_exception!(
    trueip,
    PolicyError,
    PyValueError,
    "A policy that cannot be built: the message is the one `trueip explain` and `trueip serve` print."
);
pyo3::create_exception!(
    trueip,
    EventError,
    PyValueError,
    "A Lambda event that is not one trueip can read (not an ALB, API Gateway or Function URL event, or a field of the wrong shape)."
);

/// The deepest a Lambda event is walked: the fields read sit three levels down, and a
/// dict that contains itself must not recurse forever.
const MAX_EVENT_DEPTH: usize = 8;

/// The wanted header values, as `bytes` objects: `bytes` values (ASGI) are held as they
/// are, `str` values encoded once. The core reads them through [`Headers`].
/// The query string rides along for `query:NAME` strategies: a WSGI environ's
/// `QUERY_STRING`, or the `query` argument (an ASGI scope's `query_string`).
#[derive(Default)]
struct Copied<'py>(Vec<(FieldName, Bound<'py, PyBytes>)>, Option<Bound<'py, PyBytes>>);

impl Headers for Copied<'_> {
    fn for_each_value<'a>(&'a self, name: &FieldName, mut f: impl FnMut(&'a [u8])) {
        for (n, v) in &self.0 {
            if n == name {
                f(v.as_bytes());
            }
        }
    }

    fn query(&self) -> Option<&[u8]> {
        self.1.as_ref().map(|q| q.as_bytes())
    }
}

/// Adds the query string to `copied` when the policy reads one: `query` if given (`str`
/// or `bytes`, without the `?`), else a WSGI environ's `QUERY_STRING`.
fn copy_query<'py>(
    copied: &mut Copied<'py>,
    reads_query: bool,
    query: Option<&Bound<'py, PyAny>>,
    headers: Option<&Bound<'py, PyAny>>,
    environ: Option<bool>,
) -> PyResult<()> {
    if !reads_query {
        return Ok(());
    }
    if let Some(query) = query.filter(|q| !q.is_none()) {
        copied.1 = Some(text_bytes(query).ok_or_else(|| {
            PyTypeError::new_err(format!(
                "query must be str or bytes, not {}",
                query.get_type().name().map(|n| n.to_string()).unwrap_or_default()
            ))
        })?);
        return Ok(());
    }
    if let Some(dict) = headers.and_then(|h| h.cast::<PyDict>().ok())
        && is_environ(dict, environ)?
        && let Some(value) = dict.get_item(pyo3::intern!(dict.py(), "QUERY_STRING"))?
    {
        copied.1 = text_bytes(&value);
    }
    Ok(())
}

/// A header name as a WSGI environ spells it: `HTTP_X_FORWARDED_FOR`.
fn environ_key(name: &FieldName) -> String {
    let mut key = String::from("HTTP_");
    key.extend(name.as_str().chars().map(|c| match c {
        '-' => '_',
        c => c.to_ascii_uppercase(),
    }));
    key
}

/// A header the policy reads, with its environ key made once.
struct Wanted {
    name: FieldName,
    environ: Py<PyString>,
}

impl Wanted {
    fn list(py: Python<'_>, names: impl IntoIterator<Item = FieldName>) -> Vec<Wanted> {
        names
            .into_iter()
            .map(|name| Wanted {
                environ: PyString::intern(py, &environ_key(&name)).unbind(),
                name,
            })
            .collect()
    }
}

/// The text of a header name or value: `str` (as WSGI and most mappings hold them) or
/// `bytes` (ASGI). Anything else is not a header and is skipped.
///
/// Every `str` has bytes, so no line of a header goes missing: a line dropped from a list
/// header can be the one a trusted proxy appended the client to, and the answer is then
/// the proxy. aiohttp decodes header bytes that are not UTF-8 with `surrogateescape`, so
/// a client that puts one such byte in its `X-Forwarded-For` leaves lone surrogates in the
/// value, which strict UTF-8 refuses: `surrogateescape` gives back the bytes the client
/// sent, and `surrogatepass` some bytes for any other lone surrogate. Either way the
/// element holding them is no address, as in the gateway.
fn text_bytes<'py>(value: &Bound<'py, PyAny>) -> Option<Bound<'py, PyBytes>> {
    if let Ok(s) = value.cast::<PyString>() {
        s.encode_utf8().ok().or_else(|| {
            let py = s.py();
            ["surrogateescape", "surrogatepass"].into_iter().find_map(|errors| {
                s.call_method1(pyo3::intern!(py, "encode"), ("utf-8", errors))
                    .ok()?
                    .cast_into::<PyBytes>()
                    .ok()
            })
        })
    } else {
        value.cast::<PyBytes>().ok().cloned()
    }
}

fn name_matches<'w>(name: &Bound<'_, PyAny>, wanted: &'w [Wanted]) -> Option<&'w Wanted> {
    // ASGI's names are bytes, read in place: no length call, no copy.
    if let Ok(bytes) = name.cast::<PyBytes>() {
        let name = bytes.as_bytes();
        return wanted.iter().find(|w| {
            let want = w.name.as_str().as_bytes();
            want.len() == name.len() && want.eq_ignore_ascii_case(name)
        });
    }
    // Most of a request's headers are not wanted: their lengths say so without copying
    // the text out (which, in the stable ABI before 3.10, allocates).
    let len = match name.cast::<PyString>() {
        Ok(s) => s.len().ok()?,
        Err(_) => name.len().ok()?,
    };
    if !wanted.iter().any(|w| w.name.as_str().len() == len) {
        return None;
    }
    let name = text_bytes(name)?;
    wanted.iter().find(|w| w.name.as_str().as_bytes().eq_ignore_ascii_case(name.as_bytes()))
}

/// Adds a value, or each value of a list of values (`multiValueHeaders`-style mappings).
fn push_values<'py>(out: &mut Copied<'py>, name: &FieldName, value: &Bound<'py, PyAny>) {
    if let Some(v) = text_bytes(value) {
        out.0.push((name.clone(), v));
    } else if let Ok(list) = value.cast::<PyList>() {
        for item in list.iter() {
            if let Some(v) = text_bytes(&item) {
                out.0.push((name.clone(), v));
            }
        }
    } else if let Ok(tuple) = value.cast::<PyTuple>() {
        for item in tuple.iter() {
            if let Some(v) = text_bytes(&item) {
                out.0.push((name.clone(), v));
            }
        }
    }
}

/// Whether a dict is a WSGI environ (its headers are `HTTP_*` keys): `Some` when the caller
/// said, else told by `wsgi.version`, which PEP 3333 makes a tuple. A header map may hold
/// a header named `wsgi.version` or `REQUEST_METHOD` (any client can send one), but never
/// a tuple: the keys alone would let a client switch how the headers are read.
fn is_environ(dict: &Bound<'_, PyDict>, said: Option<bool>) -> PyResult<bool> {
    if let Some(said) = said {
        return Ok(said);
    }
    let py = dict.py();
    Ok(dict
        .get_item(pyo3::intern!(py, "wsgi.version"))?
        .is_some_and(|v| v.cast::<PyTuple>().is_ok()))
}

/// Copies the wanted headers out of `headers`. Malformed entries are skipped, never
/// raised: a header is the client's to write. Only a `headers` of no known shape is a
/// `TypeError`, a caller's mistake.
fn copy_headers<'py>(
    headers: Option<&Bound<'py, PyAny>>,
    wanted: &[Wanted],
    environ: Option<bool>,
) -> PyResult<Copied<'py>> {
    let mut out = Copied::default();
    let Some(headers) = headers else {
        return Ok(out);
    };
    if headers.is_none() {
        return Ok(out);
    }
    let py = headers.py();
    if let Ok(dict) = headers.cast::<PyDict>() {
        if is_environ(dict, environ)? {
            for w in wanted {
                if let Some(value) = dict.get_item(w.environ.bind(py))? {
                    push_values(&mut out, &w.name, &value);
                }
            }
        } else {
            for (name, value) in dict.iter() {
                if let Some(w) = name_matches(&name, wanted) {
                    push_values(&mut out, &w.name, &value);
                }
            }
        }
        return Ok(out);
    }
    let pairs = if headers.cast::<PyList>().is_ok() || headers.cast::<PyTuple>().is_ok() {
        headers.clone()
    } else if headers.hasattr(pyo3::intern!(py, "raw"))?
        && headers.hasattr(pyo3::intern!(py, "mutablecopy"))?
    {
        // Starlette's `Headers`: `raw` is the ASGI list, every line.
        headers.getattr(pyo3::intern!(py, "raw"))?
    } else if headers.hasattr(pyo3::intern!(py, "items"))? {
        headers.call_method0(pyo3::intern!(py, "items"))?
    } else {
        return Err(PyTypeError::new_err(format!(
            "headers must be a WSGI environ, a mapping, a list of (name, value) pairs or None, not {}",
            headers.get_type().name()?
        )));
    };
    let mut copy = |item: Bound<'py, PyAny>| {
        // A pair is a 2-tuple or a 2-list (JSON-decoded headers); anything else is skipped.
        let pair = if let Ok(t) = item.cast::<PyTuple>() {
            (t.len() == 2).then(|| (t.get_item(0), t.get_item(1)))
        } else if let Ok(l) = item.cast::<PyList>() {
            (l.len() == 2).then(|| (l.get_item(0), l.get_item(1)))
        } else {
            None
        };
        if let Some((Ok(name), Ok(value))) = pair
            && let Some(w) = name_matches(&name, wanted)
        {
            push_values(&mut out, &w.name, &value);
        }
    };
    // A list (ASGI's) by index, without the iterator protocol.
    if let Ok(list) = pairs.cast::<PyList>() {
        list.iter().for_each(&mut copy);
    } else {
        for item in pairs.try_iter()? {
            // An iterator that fails fails the call: a decision over part of the headers
            // could be the wrong one.
            copy(item?);
        }
    }
    Ok(out)
}

/// The pairs of `headers` (a list) the app may see, or `None` when it may see them all:
/// [`ForwardingSet::withheld`](trueip::headers::ForwardingSet::withheld) over the policy's
/// set ([`ForwardingSet::for_policy`](trueip::headers::ForwardingSet::for_policy)).
fn kept_pairs<'py>(
    set: &trueip::headers::ForwardingSet,
    headers: &Bound<'py, PyAny>,
    hop: Hop<'_>,
) -> PyResult<Option<Bound<'py, PyList>>> {
    let Ok(list) = headers.cast::<PyList>() else {
        return Err(PyTypeError::new_err(
            "withhold needs the headers as a list of (name, value) pairs",
        ));
    };
    let withheld = |item: &Bound<'py, PyAny>| -> bool {
        let name = item
            .cast::<PyTuple>()
            .ok()
            .and_then(|t| t.get_item(0).ok())
            .or_else(|| item.cast::<PyList>().ok().and_then(|l| l.get_item(0).ok()));
        // ASGI names are bytes; a name of any other type (a `bytearray` from a server that
        // bends the spec), or an item that is not a pair, is withheld: the app may still
        // read it as a header, and nothing here can say which.
        match name {
            Some(name) => match name.cast::<PyBytes>() {
                Ok(b) => set.withheld(b.as_bytes(), hop),
                Err(_) => text_bytes(&name).is_none_or(|n| set.withheld(n.as_bytes(), hop)),
            },
            None => true,
        }
    };
    if !list.iter().any(|item| withheld(&item)) {
        return Ok(None);
    }
    let kept = PyList::empty(headers.py());
    for item in list.iter() {
        if !withheld(&item) {
            kept.append(item)?;
        }
    }
    Ok(Some(kept))
}

/// The peer: `"192.0.2.1"`, `"192.0.2.1:443"`, `"[2001:db8::1]:443"`, an `ipaddress`
/// object, or a `(host, port)` pair as ASGI's `scope["client"]` holds it.
fn peer_node(peer: &Bound<'_, PyAny>, port: Option<u16>) -> PyResult<Node> {
    let bad = |what: &str, why: &dyn std::fmt::Display| {
        PyValueError::new_err(format!(
            "peer {what}: {why} (the peer is the address of the TCP connection, as the server reports it)"
        ))
    };
    // ASGI's scope["client"]: a tuple (uvicorn, hypercorn) or a list (Daphne).
    if peer.cast::<PyTuple>().is_ok() || peer.cast::<PyList>().is_ok() {
        if peer.len()? != 2 {
            return Err(PyValueError::new_err(
                "peer: a pair must be (host, port), as ASGI's scope[\"client\"]",
            ));
        }
        let port = peer.get_item(1)?;
        // Granian's ASGI scope gives the port as text (`("192.0.2.1", "443")`): refused, its
        // every request had no decision and behind a proxy every client was the proxy.
        let port: Option<u16> = match port.cast::<PyString>() {
            Ok(text) => Some(text.to_cow()?.parse().map_err(|e| bad(&format!("port {port}"), &e))?),
            Err(_) => port.extract()?,
        };
        return peer_node(&peer.get_item(0)?, port.filter(|p| *p != 0));
    }
    let text = match peer.cast::<PyString>() {
        Ok(s) => s.clone(),
        Err(_) => peer.str()?,
    };
    let text = text.to_cow()?;
    let node =
        trueip::addr::parse_node(text.as_bytes()).map_err(|e| bad(&format!("{text:?}"), &e))?;
    Ok(Node { port: node.port.or(port), ..node })
}

/// The connection's peer: an address as [`peer_node`] reads it, or a Unix-socket peer —
/// the text `""` (gunicorn's `REMOTE_ADDR` on a socket) or `unix:...` (nginx's
/// `$remote_addr`, and some servers' path form). Such a peer has no address: only a
/// policy that trusts `unix` reads its headers.
fn peer_of(peer: &Bound<'_, PyAny>) -> PyResult<trueip::addr::Peer> {
    if let Ok(text) = peer.cast::<PyString>() {
        let text = text.to_cow()?;
        if text.is_empty() || text.starts_with("unix:") {
            return Ok(trueip::addr::Peer::Unix);
        }
    }
    peer_node(peer, None).map(trueip::addr::Peer::Ip)
}

/// A `PolicyError` with `message` in terminal mode: it quotes specs, config and range files
/// as written (a file a cron job downloads, a config someone else wrote), and an app logs
/// or shows its exceptions as they are (`logging`, a traceback on a terminal).
fn policy_error(message: impl std::fmt::Display) -> PyErr {
    PolicyError::new_err(trueip::shown::terminal_lines(message).to_string())
}

/// `ipaddress.ip_address`, looked up once.
fn ip_object(py: Python<'_>, ip: IpAddr) -> PyResult<Py<PyAny>> {
    static IP_ADDRESS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    let f = IP_ADDRESS.get_or_try_init(py, || {
        Ok::<_, PyErr>(py.import("ipaddress")?.getattr("ip_address")?.unbind())
    })?;
    f.call1(py, (ip.to_string(),))
}

/// Reads a provider file from the path as the policy holds it (a config file's relative
/// paths were made relative to its directory when it was read), bounded as `trueip serve`
/// reads it.
fn read(path: &str) -> Result<Vec<u8>, String> {
    trueip::config::read_provider_file(path)
}

/// Whom to trust and how to find the client: the core's `Policy`.
#[pyclass(frozen, module = "trueip", name = "Policy")]
struct Policy {
    inner: Arc<trueip::Policy>,
    wanted: Vec<Wanted>,
    /// The policy's headers and the origin's, for the middlewares.
    wanted_with_origin: Vec<Wanted>,
    /// Whether a `query:NAME` strategy reads the query string.
    reads_query: bool,
    /// What the host names in the trust specs resolved to when the policy was made.
    names: trueip::hosts::Addresses,
    /// The client-IP headers kept from the app: the table and the headers this policy
    /// reads a client or its secret from.
    withheld: trueip::headers::ForwardingSet,
    /// Their WSGI environ keys (`HTTP_X_FORWARDED_FOR`, ...), for the WSGI middleware:
    /// those withheld from an untrusted peer.
    environ_keys: Py<PyFrozenSet>,
    /// The keys withheld from a trusted hop: when no strategy decided, then when each
    /// strategy did (`Resolution::strategy` + 1); in each, for every list header the hop
    /// may not have kept (`Hop::Trusted::unkept`, in the order of `UNKEPT`).
    environ_keys_trusted: Vec<[Py<PyFrozenSet>; UNKEPT.len()]>,
    /// Whether the line a Lambda preset's policy logs when it decides a request without an
    /// event (`no_lambda_event`) has been written to the `trueip` logger.
    warned_no_event: std::sync::atomic::AtomicBool,
    /// Whether the core's line for a Function URL event whose client is the trusted edge
    /// (`trueip::lambda::edge_is_client`) has been written to the `trueip` logger.
    warned_edge: std::sync::atomic::AtomicBool,
}

/// Every list header a trusted hop may not have kept (`Hop::Trusted::unkept`), each a
/// set of environ keys `Policy::wrap` computes once.
const UNKEPT: [Option<trueip::ListHeader>; 3] =
    [None, Some(trueip::ListHeader::XForwardedFor), Some(trueip::ListHeader::Forwarded)];

/// Builds `config` as `trueip serve` does: host
/// names in its trust specs are resolved now (`trueip::hosts`, the same lookup as the
/// gateway's), and each must resolve.
fn build(py: Python<'_>, config: &ClientIpConfig) -> PyResult<Policy> {
    let names = config.host_names();
    let addrs = if names.is_empty() {
        trueip::hosts::Addresses::new()
    } else {
        // getaddrinfo may wait on the network: other Python threads run meanwhile.
        py.detach(|| trueip::hosts::resolve_all(&names, &*trueip::hosts::resolver()))
            .map_err(policy_error)?
    };
    let inner = config
        .build_resolved(&mut read, &std::collections::BTreeMap::new(), &trueip::hosts::sets(&addrs))
        .map_err(policy_error)?;
    let mut policy = Policy::wrap(py, inner)?;
    policy.names = addrs;
    Ok(policy)
}

impl Policy {
    fn wrap(py: Python<'_>, inner: trueip::Policy) -> PyResult<Self> {
        let names = inner.header_names();
        let withheld = trueip::headers::ForwardingSet::for_policy(&inner);
        let environ_keys = PyFrozenSet::new(py, withheld.names().iter().map(environ_key))?.unbind();
        // From a trusted hop what passes depends on the strategy that decided: one set for
        // none (first), then one for each strategy.
        let strategies = (0..=u8::MAX).take_while(|&i| inner.strategy_name(i).is_some()).map(Some);
        let environ_keys_trusted = std::iter::once(None)
            .chain(strategies)
            .map(|decided| {
                let keys = |unkept| {
                    let hop = Hop::Trusted { policy: &inner, decided, unkept };
                    PyFrozenSet::new(
                        py,
                        withheld
                            .names()
                            .iter()
                            .filter(|name| withheld.withheld(name.as_str().as_bytes(), hop))
                            .map(environ_key),
                    )
                    .map(Bound::unbind)
                };
                let [none, xff, forwarded] = UNKEPT;
                Ok([keys(none)?, keys(xff)?, keys(forwarded)?])
            })
            .collect::<PyResult<Vec<_>>>()?;
        let mut with_origin = names.clone();
        for name in trueip::origin::HEADER_NAMES {
            if !with_origin.contains(&name) {
                with_origin.push(name);
            }
        }
        Ok(Policy {
            reads_query: !inner.query_names().is_empty(),
            inner: Arc::new(inner),
            wanted: Wanted::list(py, names),
            wanted_with_origin: Wanted::list(py, with_origin),
            names: trueip::hosts::Addresses::new(),
            withheld,
            environ_keys,
            environ_keys_trusted,
            warned_no_event: std::sync::atomic::AtomicBool::new(false),
            warned_edge: std::sync::atomic::AtomicBool::new(false),
        })
    }

    fn connection(
        peer: &Bound<'_, PyAny>,
        proxy_source: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Connection> {
        let mut conn = Connection::from_peer(peer_of(peer)?);
        if let Some(source) = proxy_source.filter(|s| !s.is_none()) {
            conn.proxy_source = Some(peer_node(source, None)?);
        }
        Ok(conn)
    }

    fn decide<H: Headers + ?Sized>(
        &self,
        py: Python<'_>,
        conn: &Connection,
        headers: &H,
    ) -> PyResult<Resolution> {
        let inner = self.inner.resolve(conn, headers);
        self.warn_no_event(py, inner.warnings)?;
        Ok(self.wrap_resolution(inner))
    }

    /// [`decide`](Self::decide) for a Lambda event: a preset's policy given an event of
    /// another chain's kind trusts no one (`no_lambda_event`), and says so as without one;
    /// a Function URL event whose client is the trusted edge says so once too
    /// (`trueip::lambda::edge_is_client`).
    fn decide_event(
        &self,
        py: Python<'_>,
        event: &trueip::lambda::Event<'_>,
    ) -> PyResult<Resolution> {
        let inner = event.resolve(&self.inner);
        self.warn_no_event(py, inner.warnings)?;
        if inner.warnings.contains(Warnings::XFF_NOT_KEPT)
            && !self.warned_edge.load(std::sync::atomic::Ordering::Relaxed)
            && let Some(line) = trueip::lambda::edge_is_client(&inner)
            && !self.warned_edge.swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            py.import("logging")?
                .call_method1("getLogger", ("trueip",))?
                .call_method1("warning", (line,))?;
        }
        Ok(self.wrap_resolution(inner))
    }

    fn wrap_resolution(&self, inner: trueip::Resolution) -> Resolution {
        Resolution {
            trusted_hop: self.inner.came_through_trusted_hop(&inner),
            inner,
            policy: Arc::clone(&self.inner),
        }
    }

    /// A Lambda preset's policy decided a request without an event (the core's rule,
    /// `trueip::Policy::resolve`): the first time, the core's line goes to the `trueip`
    /// logger, where Python apps read it.
    fn warn_no_event(&self, py: Python<'_>, warnings: Warnings) -> PyResult<()> {
        if !warnings.contains(Warnings::NO_LAMBDA_EVENT)
            || self.warned_no_event.swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            return Ok(());
        }
        let Some(preset) = self.inner.lambda_preset() else {
            return Ok(());
        };
        py.import("logging")?
            .call_method1("getLogger", ("trueip",))?
            .call_method1("warning", (preset.without_event(),))?;
        Ok(())
    }

    /// Under a WSGI adapter on Lambda, the environ value of each header of the set that
    /// passes `hop` ([`ForwardingSet::withheld`](trueip::headers::ForwardingSet::withheld)),
    /// as the event carries it: its values in order, joined by `", "`, or `None` when the
    /// event has none. The adapter's own `HTTP_*` key is not what the decision read: it
    /// folds a client's `x_forwarded_for` (which an ALB passes on) into
    /// `HTTP_X_FORWARDED_FOR`, over the header the ALB appended to.
    fn event_environ<'py>(
        &self,
        py: Python<'py>,
        event: &trueip::lambda::Event<'_>,
        hop: Hop<'_>,
    ) -> PyResult<Bound<'py, PyList>> {
        let out = PyList::empty(py);
        for name in self.withheld.names() {
            if self.withheld.withheld(name.as_str().as_bytes(), hop) {
                continue;
            }
            let mut values: Vec<&[u8]> = Vec::new();
            event.for_each_value(name, |v| values.push(v));
            let value = (!values.is_empty())
                .then(|| String::from_utf8_lossy(&values.join(&b", "[..])).into_owned());
            out.append((environ_key(name), value))?;
        }
        Ok(out)
    }

    /// The hop a request decided as `resolution` came through (its `trusted_hop` is this
    /// policy's `came_through_trusted_hop`, or false for a signed header that failed).
    fn hop(&self, resolution: &Resolution) -> Hop<'_> {
        if resolution.trusted_hop {
            Hop::trusted(&self.inner, &resolution.inner)
        } else {
            Hop::Untrusted
        }
    }
}

#[pymethods]
impl Policy {
    /// See `python/trueip/_trueip.pyi` for the documented signature.
    #[new]
    #[pyo3(signature = (
        trust = None,
        strategy = None,
        from_ = None,
        all_trusted = None,
        origin_secret = None,
        providers = None,
        proxy_protocol_from = None,
        ipv6_prefix = None,
    ))]
    #[allow(clippy::too_many_arguments, reason = "keyword arguments of the Python constructor")]
    fn new(
        py: Python<'_>,
        trust: Option<Vec<String>>,
        strategy: Option<&Bound<'_, PyAny>>,
        from_: Option<String>,
        all_trusted: Option<String>,
        origin_secret: Option<(String, String)>,
        providers: Option<std::collections::BTreeMap<String, Bound<'_, PyAny>>>,
        proxy_protocol_from: Option<Vec<String>>,
        ipv6_prefix: Option<u8>,
    ) -> PyResult<Self> {
        let strategy = match strategy {
            None => Strategies::default(),
            Some(s) if s.is_none() => Strategies::default(),
            Some(s) => match s.extract::<String>() {
                Ok(one) => Strategies::One(one),
                Err(_) => Strategies::Chain(
                    s.extract::<Vec<String>>()
                        .map_err(|_| {
                            PyTypeError::new_err("strategy must be a name or a list of names")
                        })?
                        .into_iter()
                        .map(StrategyEntry::Name)
                        .collect(),
                ),
            },
        };
        let mut files = std::collections::BTreeMap::new();
        for (name, paths) in providers.unwrap_or_default() {
            let paths = if let Ok(one) = paths.extract::<std::path::PathBuf>() {
                Files::One(one.to_string_lossy().into_owned())
            } else {
                Files::Many(
                    paths
                        .extract::<Vec<std::path::PathBuf>>()
                        .map_err(|_| {
                            PyTypeError::new_err(format!(
                                "providers[{name:?}] must be a path or a list of paths"
                            ))
                        })?
                        .into_iter()
                        .map(|p| p.to_string_lossy().into_owned())
                        .collect(),
                )
            };
            files.insert(name, paths);
        }
        let config = ClientIpConfig {
            trusted: trust.unwrap_or_default(),
            strategy,
            from: from_,
            all_trusted,
            ipv6_prefix,
            proxy_protocol_from: proxy_protocol_from.unwrap_or_default(),
            origin_secret: origin_secret
                .map(|(header, value)| OriginSecretConfig { header, value }),
            providers: files,
            resolve_every: None,
        };
        build(py, &config)
    }

    /// The `[client_ip]` section of a `trueip serve` config file. Provider files named
    /// with relative paths are read relative to the file's directory.
    #[staticmethod]
    fn from_toml(py: Python<'_>, path: std::path::PathBuf) -> PyResult<Self> {
        let text = std::fs::read_to_string(&path)
            .map_err(|e| policy_error(format!("cannot read {}: {e}", path.display())))?;
        let table: toml::Table =
            toml::from_str(&text).map_err(|e| policy_error(format!("{}: {e}", path.display())))?;
        let mut config: ClientIpConfig = match table.get("client_ip") {
            None => ClientIpConfig::default(),
            Some(section) => section
                .clone()
                .try_into()
                .map_err(|e| policy_error(format!("{}: [client_ip]: {e}", path.display())))?,
        };
        // The rule `trueip serve` reads the file by.
        config
            .paths_from(path.parent().unwrap_or(std::path::Path::new("")))
            .map_err(|e| policy_error(format!("{}: [client_ip]: {e}", path.display())))?;
        build(py, &config)
    }

    /// What each host name in the trust specs (`lb.internal`, `host:nginx`) resolved to
    /// when the policy was made, as address strings. Names are resolved once: make a new
    /// policy to resolve them again.
    #[getter]
    fn trust_names(&self) -> std::collections::BTreeMap<String, Vec<String>> {
        self.names
            .iter()
            .map(|(name, ips)| (name.clone(), ips.iter().map(ToString::to_string).collect()))
            .collect()
    }

    /// The policy of a chain in front of a Lambda function: `alb`, `cloudfront-alb`,
    /// `api-gateway` or `cloudfront-api-gateway`.
    #[staticmethod]
    #[pyo3(signature = (name, providers = None, origin_secret = None))]
    fn lambda_preset(
        py: Python<'_>,
        name: &str,
        providers: Option<std::collections::BTreeMap<String, std::path::PathBuf>>,
        origin_secret: Option<(String, String)>,
    ) -> PyResult<Self> {
        let preset: trueip::lambda::Preset = name.parse().map_err(policy_error)?;
        let mut builder = preset.builder();
        for (name, path) in providers.unwrap_or_default() {
            let files = Files::One(path.to_string_lossy().into_owned());
            builder = builder.provider(
                &name,
                trueip::config::load_provider(&name, &files, &mut read).map_err(policy_error)?,
            );
        }
        if let Some((header, value)) = origin_secret {
            builder = builder.origin_secret(
                trueip::OriginSecret::new(&header, value.into_bytes()).map_err(policy_error)?,
            );
        }
        Policy::wrap(py, builder.build().map_err(policy_error)?)
    }

    /// Decides who the client is. Never raises for what the request carries; raises
    /// `ValueError` for a `peer` that is not an address, `TypeError` for `headers` of
    /// no known shape. `environ`: whether a dict is a WSGI environ (or Django's `META`),
    /// whose headers are `HTTP_*` keys; by default, a dict whose `wsgi.version` is a tuple.
    /// `query`: the query string (`str` or `bytes`, without the `?`) for `query:NAME`
    /// strategies; by default an environ's `QUERY_STRING`.
    #[pyo3(signature = (peer, headers = None, proxy_source = None, environ = None, query = None))]
    fn resolve(
        &self,
        py: Python<'_>,
        peer: &Bound<'_, PyAny>,
        headers: Option<&Bound<'_, PyAny>>,
        proxy_source: Option<&Bound<'_, PyAny>>,
        environ: Option<bool>,
        query: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Resolution> {
        let conn = Policy::connection(peer, proxy_source)?;
        let mut copied = copy_headers(headers, &self.wanted, environ)?;
        copy_query(&mut copied, self.reads_query, query, headers, environ)?;
        self.decide(py, &conn, &copied)
    }

    /// Decides, and returns every step, as `trueip explain --format json` prints it.
    #[pyo3(signature = (peer, headers = None, proxy_source = None, environ = None, query = None))]
    fn explain(
        &self,
        py: Python<'_>,
        peer: &Bound<'_, PyAny>,
        headers: Option<&Bound<'_, PyAny>>,
        proxy_source: Option<&Bound<'_, PyAny>>,
        environ: Option<bool>,
        query: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let conn = Policy::connection(peer, proxy_source)?;
        let mut copied = copy_headers(headers, &self.wanted, environ)?;
        copy_query(&mut copied, self.reads_query, query, headers, environ)?;
        let explanation = trueip::Explanation::new(&self.inner, &conn, &copied);
        self.warn_no_event(py, explanation.resolution.warnings)?;
        json_object(py, &explanation)
    }

    /// For the middlewares: the decision; when trusted hops vouched for them, the scheme,
    /// host, port and prefix the client asked for (`None` each where no trusted hop said);
    /// and, with `withhold`, the header pairs without those the app must not see
    /// (`trueip::headers::ForwardingSet::for_policy`, `withheld`), or `None` when there
    /// are none to remove.
    /// `peer` and `headers` as for `resolve`; `withhold` needs a list of pairs (ASGI).
    ///
    /// A `peer` that is not an address (a Unix socket, a test client) gives no decision:
    /// no hop is trusted, so every client-IP header is withheld.
    ///
    /// `event`: a Lambda event of a kind the core reads (`_event_peer` says so), which a
    /// WSGI adapter built `headers` from. Its peer stand-in and its own headers decide, as
    /// `resolve_event` does; `peer` is not read and `headers` only withheld from. An event
    /// trueip cannot read gives no decision. With an event and `environ`, the third item
    /// is the `(environ key, value or None)` of each header of the set that passes the
    /// request's hop, as the event carries it (`event_environ`): the environ's own keys
    /// are the adapter's, which folds a client's `x_forwarded_for` into them.
    ///
    /// Under Mangum, `event` is its `scope["aws.event"]`, and `headers` the scope's lines.
    /// A policy from `lambda_preset` decides from an event only: without one, the core
    /// decides the request as if no proxy were trusted (`trueip::Policy::resolve`), and the
    /// first such request logs the core's line to the `trueip` logger.
    /// `proxy_source`: the address a PROXY header the server read named (gunicorn's
    /// `--proxy-protocol`), believed only from a peer in the policy's
    /// `proxy_protocol_from`, as `resolve` takes it.
    #[pyo3(signature = (peer, headers, withhold = false, environ = false, query = None, verifier = None, signed = None, event = None, proxy_source = None))]
    #[allow(
        clippy::type_complexity,
        clippy::too_many_arguments,
        reason = "a private tuple for the Python middlewares"
    )]
    fn _resolve_request<'py>(
        &self,
        py: Python<'py>,
        peer: Option<&Bound<'py, PyAny>>,
        headers: &Bound<'py, PyAny>,
        withhold: bool,
        environ: bool,
        query: Option<&Bound<'py, PyAny>>,
        verifier: Option<PyRef<'py, Verifier>>,
        signed: Option<(Option<Bound<'py, PyAny>>, String, String, String)>,
        event: Option<&Bound<'py, PyAny>>,
        proxy_source: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<(
        Option<Resolution>,
        Option<Bound<'py, PyTuple>>,
        Option<Bound<'py, PyList>>,
        Option<&'static str>,
    )> {
        // The event, not the environ an adapter made of it: the adapters fold a header
        // spelled `X_Forwarded_For`, which an ALB passes on unless it drops invalid header
        // fields, into HTTP_X_FORWARDED_FOR, over the one the ALB appended to.
        // An event `event_json` cannot copy is one `_event_peer` names no peer for.
        let json = event.and_then(|event| event_json(event).ok());
        let parsed = json.as_ref().and_then(|json| trueip::lambda::Event::parse(json).ok());
        let conn = match (&parsed, event, peer.map(|p| Policy::connection(p, proxy_source))) {
            (Some(parsed), _, _) => parsed.connection(),
            (None, None, Some(Ok(conn))) => conn,
            // No peer, one that is not an address, or an event trueip cannot read.
            _ => {
                let kept = if withhold {
                    kept_pairs(&self.withheld, headers, Hop::Untrusted)?
                } else {
                    None
                };
                return Ok((None, None, kept, None));
            }
        };
        let mut copied = Copied::default();
        if parsed.is_none() {
            copied = copy_headers(Some(headers), &self.wanted_with_origin, Some(environ))?;
            copy_query(&mut copied, self.reads_query, query, Some(headers), Some(environ))?;
        }
        let (resolution, outcome) = match (&verifier, signed) {
            (Some(v), Some((value, method, host, target))) => {
                let value = value.filter(|v| !v.is_none());
                let bytes = value.as_ref().map(text_bytes);
                let value = match &bytes {
                    None => None,
                    Some(Some(b)) => Some(b.as_bytes()),
                    Some(None) => {
                        return Err(PyTypeError::new_err(
                            "the signed header value must be str, bytes or None",
                        ));
                    }
                };
                let request = trueip::provenance::RequestLine {
                    method: &method,
                    host: &host,
                    target: &target,
                };
                let (resolution, outcome) =
                    v.decide(&self.inner, &conn, parsed.as_ref(), value, &request);
                (resolution, Some(outcome))
            }
            (Some(_), None) => {
                return Err(PyTypeError::new_err(
                    "a verifier needs the signed request: (value, method, host, target)",
                ));
            }
            (None, _) => match &parsed {
                Some(parsed) => (self.decide_event(py, parsed)?, None),
                None => (self.decide(py, &conn, &copied)?, None),
            },
        };
        // A Unix-socket peer that no trusted header named an address for: no address to
        // give the app, as for any peer that is not one.
        if resolution.inner.client.is_unix() {
            let kept =
                if withhold { kept_pairs(&self.withheld, headers, Hop::Untrusted)? } else { None };
            return Ok((None, None, kept, outcome));
        }
        let origin = if resolution.trusted_hop {
            let o = match &parsed {
                Some(parsed) => trueip::origin::origin(parsed, &resolution.inner),
                None => trueip::origin::origin(&copied, &resolution.inner),
            };
            (o != trueip::origin::Origin::default())
                .then(|| {
                    PyTuple::new(
                        py,
                        [
                            o.proto.map(|p| p.as_str()).into_pyobject(py)?.into_any(),
                            o.host.into_pyobject(py)?.into_any(),
                            o.port.into_pyobject(py)?.into_any(),
                            o.prefix.into_pyobject(py)?.into_any(),
                        ],
                    )
                })
                .transpose()?
        } else {
            None
        };
        let kept = match &parsed {
            Some(parsed) if environ => {
                Some(self.event_environ(py, parsed, self.hop(&resolution))?)
            }
            _ if withhold => kept_pairs(&self.withheld, headers, self.hop(&resolution))?,
            _ => None,
        };
        Ok((Some(resolution), origin, kept, outcome))
    }

    /// Whether `ip` is trusted by any strategy of the policy.
    fn trusts(&self, ip: &Bound<'_, PyAny>) -> PyResult<bool> {
        Ok(self.inner.trusts(peer_node(ip, None)?.ip))
    }

    /// The WSGI environ keys of the client-IP headers the middlewares remove from a
    /// request decided as `resolution` (`None`: no decision, no hop trusted)
    /// (`trueip::headers::ForwardingSet::withheld`): from an untrusted peer, the core's
    /// table (`forwarding_header_names()`) and the headers this policy reads a client or
    /// its origin secret from (a `header:NAME` strategy's); from a trusted hop, the client
    /// addresses among them that the decision did not read (another strategy's header
    /// too), and the origin secret.
    fn _withheld_environ_keys<'py>(
        &self,
        py: Python<'py>,
        resolution: Option<PyRef<'py, Resolution>>,
    ) -> Bound<'py, PyFrozenSet> {
        let trusted = match resolution.as_deref().map(|r| self.hop(r)) {
            Some(Hop::Trusted { decided, unkept, .. }) => decided
                .map_or(Some(0), |i| usize::from(i).checked_add(1))
                .and_then(|i| self.environ_keys_trusted.get(i))
                .zip(UNKEPT.iter().position(|u| *u == unkept))
                .and_then(|(keys, u)| keys.get(u)),
            _ => None,
        };
        trusted.unwrap_or(&self.environ_keys).bind(py).clone()
    }

    /// The headers `resolve` reads, lower case.
    #[getter]
    fn header_names(&self) -> Vec<String> {
        self.wanted.iter().map(|w| w.name.to_string()).collect()
    }

    fn __repr__(&self) -> String {
        let mut names = Vec::new();
        let mut i = 0u8;
        while let Some(name) = self.inner.strategy_name(i) {
            names.push(name);
            i = i.saturating_add(1);
            if i == u8::MAX {
                break;
            }
        }
        let preset = self
            .inner
            .lambda_preset()
            .map(|preset| format!(", lambda_preset={:?}", preset.name()))
            .unwrap_or_default();
        format!(
            "trueip.Policy(strategy={names:?}, from_={:?}{preset})",
            self.inner.list_header().name()
        )
    }
}

/// The keys an app accepts for the signed client header `trueip serve` writes
/// (`[upstream] sign`), the freshness window and the header's name; counts what it
/// verified and rejected. Keys are read from files and never shown.
#[pyclass(frozen, module = "trueip", name = "Verifier")]
struct Verifier {
    inner: trueip::provenance::Verifier,
    header: FieldName,
    verified: std::sync::atomic::AtomicU64,
    rejected: std::sync::atomic::AtomicU64,
}

impl Verifier {
    /// The resolution for a request on `conn` whose signed header is `value`, and the
    /// outcome: `"verified"` or why not (`trueip::provenance::Rejected::name`). Under a
    /// Lambda event, `conn` is its stand-in and the peer is decided as the event's
    /// (`Event::peer_resolution`), which a preset's policy does not take for a connection.
    fn decide(
        &self,
        policy: &Arc<trueip::Policy>,
        conn: &Connection,
        event: Option<&trueip::lambda::Event<'_>>,
        value: Option<&[u8]>,
        request: &trueip::provenance::RequestLine<'_>,
    ) -> (Resolution, &'static str) {
        use std::sync::atomic::Ordering::Relaxed;
        match self.inner.verify(value, request) {
            Ok(claim) => {
                self.verified.fetch_add(1, Relaxed);
                let inner = match event {
                    Some(event) => claim.resolution_over(policy, event.peer_resolution(policy)),
                    None => claim.resolution(policy, conn),
                };
                let r = Resolution {
                    // The gateway is the hop: what it wrote may stay.
                    trusted_hop: true,
                    inner,
                    policy: Arc::clone(policy),
                };
                (r, "verified")
            }
            Err(why) => {
                self.rejected.fetch_add(1, Relaxed);
                let inner = match event {
                    Some(event) => trueip::provenance::rejected_over(event.peer_resolution(policy)),
                    None => trueip::provenance::rejected_resolution(policy, conn),
                };
                let r = Resolution { trusted_hop: false, inner, policy: Arc::clone(policy) };
                (r, why.name())
            }
        }
    }
}

#[pymethods]
impl Verifier {
    /// See `python/trueip/_trueip.pyi` for the documented signature.
    #[new]
    #[pyo3(signature = (key_files, window = 30.0, header = "trueip-signature"))]
    fn new(key_files: &Bound<'_, PyAny>, window: f64, header: &str) -> PyResult<Self> {
        let paths: Vec<std::path::PathBuf> = if key_files.cast::<PyString>().is_ok()
            || key_files.hasattr(pyo3::intern!(key_files.py(), "__fspath__"))?
        {
            vec![key_files.extract()?]
        } else {
            key_files.try_iter()?.map(|p| p.and_then(|p| p.extract())).collect::<PyResult<_>>()?
        };
        let mut keys = Vec::with_capacity(paths.len());
        for (i, path) in paths.iter().enumerate() {
            let bytes = std::fs::read(path).map_err(|e| {
                PolicyError::new_err(format!("cannot read key_files[{i}] {}: {e}", path.display()))
            })?;
            let key = trueip::provenance::Key::new(&bytes)
                .map_err(|e| policy_error(e.at(format!("key_files[{i}] {}", path.display()))))?;
            keys.push(key);
        }
        if !window.is_finite() || window < 0.0 {
            return Err(PolicyError::new_err(format!(
                "window must be a number of seconds, 1 to {}, not {window}",
                trueip::provenance::MAX_WINDOW.as_secs()
            )));
        }
        let window = std::time::Duration::from_secs_f64(window.min(1e9));
        let inner = trueip::provenance::Verifier::new(keys, window).map_err(policy_error)?;
        let header = FieldName::new(header.trim()).map_err(|e| policy_error(e.at("header")))?;
        Ok(Verifier {
            inner,
            header,
            verified: std::sync::atomic::AtomicU64::new(0),
            rejected: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// The header read, lower case (`trueip-signature`).
    #[getter]
    fn header(&self) -> &str {
        self.header.as_str()
    }

    /// The freshness window, in seconds.
    #[getter]
    fn window(&self) -> u64 {
        self.inner.window().as_secs()
    }

    /// The ids of the keys held (the `kid` field), never the keys.
    #[getter]
    fn key_ids(&self) -> Vec<String> {
        self.inner.key_ids().map(str::to_owned).collect()
    }

    /// Requests whose signed header verified.
    #[getter]
    fn verified_count(&self) -> u64 {
        self.verified.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Requests whose signed header did not verify.
    #[getter]
    fn rejected_count(&self) -> u64 {
        self.rejected.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Verifies a signed header value for a request: a dict (`ip`, `port`, `source`,
    /// `hops`, `time`) when it verifies, else `ValueError` naming why (`missing`,
    /// `malformed`, `bad_signature`, `stale`, ...). `now`: Unix seconds (default: the clock).
    #[pyo3(signature = (value, method, host, target, now = None))]
    fn verify<'py>(
        &self,
        py: Python<'py>,
        value: Option<&Bound<'py, PyAny>>,
        method: &str,
        host: &str,
        target: &str,
        now: Option<u64>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let bytes = value.filter(|v| !v.is_none()).map(text_bytes);
        let value = match &bytes {
            None => None,
            Some(Some(b)) => Some(b.as_bytes()),
            Some(None) => return Err(PyTypeError::new_err("value must be str, bytes or None")),
        };
        let request = trueip::provenance::RequestLine { method, host, target };
        let now = match now {
            Some(secs) => std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs),
            None => std::time::SystemTime::now(),
        };
        let claim = self
            .inner
            .verify_at(value, &request, now)
            .map_err(|why| PyValueError::new_err(format!("{}: {why}", why.name())))?;
        let d = PyDict::new(py);
        d.set_item("ip", claim.client.ip.to_string())?;
        d.set_item("port", claim.client.port)?;
        d.set_item("source", claim.source.to_string())?;
        d.set_item("hops", claim.hops)?;
        d.set_item("time", claim.time)?;
        Ok(d)
    }

    /// The status and plain-text body a middleware refuses a request with, for an outcome
    /// other than `"verified"`: 400 for `malformed` and `duplicate`, 403 otherwise.
    #[staticmethod]
    fn refusal(outcome: &str) -> (u16, &'static str) {
        let why = match outcome {
            "malformed" => trueip::provenance::Rejected::Malformed(""),
            "duplicate" => trueip::provenance::Rejected::Duplicate,
            _ => trueip::provenance::Rejected::BadSignature,
        };
        (trueip::provenance::refusal_status(why), trueip::provenance::refusal_body(why))
    }

    fn __repr__(&self) -> String {
        format!(
            "Verifier(key_ids={:?}, window={}, header={:?})",
            self.key_ids(),
            self.window(),
            self.header()
        )
    }
}

/// Serialises through serde and `json.loads`: the dict is exactly the CLI's JSON.
fn json_object<T: serde::Serialize>(py: Python<'_>, value: &T) -> PyResult<Py<PyAny>> {
    let text = serde_json::to_string(value).map_err(|e| PyValueError::new_err(e.to_string()))?;
    Ok(py.import("json")?.call_method1("loads", (text,))?.unbind())
}

/// The decision for one request.
#[pyclass(frozen, module = "trueip", name = "Resolution")]
struct Resolution {
    inner: trueip::Resolution,
    trusted_hop: bool,
    policy: Arc<trueip::Policy>,
}

#[pymethods]
impl Resolution {
    /// The client address, an `ipaddress.IPv4Address` or `IPv6Address`; `None` when the
    /// client is a Unix-socket peer (no header named an address).
    #[getter]
    fn ip(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        self.inner.ip().map(|ip| ip_object(py, ip)).transpose()
    }

    /// The client address as text (cheaper than `str(resolution.ip)`); `None` as `ip`.
    #[getter]
    fn ip_str(&self) -> Option<String> {
        self.inner.ip().map(|ip| ip.to_string())
    }

    /// The client port, when the source carried one.
    #[getter]
    fn port(&self) -> Option<u16> {
        self.inner.client.node().and_then(|n| n.port)
    }

    /// Where the client came from: `peer`, `proxy-protocol`, `x-forwarded-for[-2]`,
    /// `forwarded[-1]` or a header's name.
    #[getter]
    fn source(&self) -> String {
        self.policy.describe_source(&self.inner)
    }

    /// The TCP peer's address; `None` for a Unix-socket peer.
    #[getter]
    fn peer(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        self.inner.peer.ip().map(|ip| ip_object(py, ip)).transpose()
    }

    /// How many trusted proxies stood in front of the client.
    #[getter]
    fn trusted_hops(&self) -> u16 {
        self.inner.trusted_hops
    }

    /// What looked wrong, by the names the CLI prints.
    #[getter]
    fn warnings<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyFrozenSet>> {
        PyFrozenSet::new(py, self.inner.warnings.names())
    }

    /// Whether a client-written entry was found left of the trusted chain.
    #[getter]
    fn spoof_attempt(&self) -> bool {
        self.inner.warnings.contains(Warnings::SPOOF_ATTEMPT)
    }

    /// The key to rate-limit on: the IPv4 address, or the IPv6 address cut to the
    /// policy's prefix (/64 by default).
    #[getter]
    fn rate_limit_key(&self) -> Option<String> {
        self.inner.rate_limit_key.map(|k| k.to_string())
    }

    /// Whether the request came through a hop the policy trusts (and whose headers
    /// therefore count): when false, every client-IP header it carries is the client's.
    #[getter]
    fn trusted_hop(&self) -> bool {
        self.trusted_hop
    }

    /// The strategy that decided, or `None` when the peer stands by default.
    #[getter]
    fn strategy(&self) -> Option<String> {
        self.inner.strategy.and_then(|i| self.policy.strategy_name(i))
    }

    /// The fields of `trueip explain --format json` that describe the decision.
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("client_ip", self.ip_str())?;
        d.set_item("client_port", self.port())?;
        d.set_item("source", self.source())?;
        d.set_item("peer", self.inner.peer.to_string())?;
        d.set_item("proxy_source", self.inner.proxy_source.map(|n| n.to_string()))?;
        d.set_item("trusted_hops", self.inner.trusted_hops)?;
        d.set_item("warnings", PyList::new(py, self.inner.warnings.names())?)?;
        d.set_item("strategy", self.strategy())?;
        d.set_item("rate_limit_key", self.rate_limit_key())?;
        Ok(d)
    }

    fn __repr__(&self) -> String {
        let warnings: Vec<&str> = self.inner.warnings.names().collect();
        format!(
            "trueip.Resolution(ip='{}', port={}, source='{}', trusted_hops={}, warnings={warnings:?})",
            self.inner.ip().map_or_else(|| "unix:".to_string(), |ip| ip.to_string()),
            self.port().map_or_else(|| "None".to_string(), |p| p.to_string()),
            self.source(),
            self.inner.trusted_hops,
        )
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other.cast::<Resolution>().is_ok_and(|o| o.get().inner == self.inner)
    }

    fn __hash__(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.inner.client.hash(&mut h);
        self.inner.peer.hash(&mut h);
        h.finish()
    }
}

/// Copies the parts of a Lambda event the core reads into JSON, to `MAX_EVENT_DEPTH`.
fn to_json(value: &Bound<'_, PyAny>, depth: usize) -> PyResult<serde_json::Value> {
    use serde_json::Value;
    if depth > MAX_EVENT_DEPTH {
        return Err(EventError::new_err(format!(
            "the event nests deeper than {MAX_EVENT_DEPTH} levels"
        )));
    }
    if value.is_none() {
        return Ok(Value::Null);
    }
    if let Ok(b) = value.cast::<pyo3::types::PyBool>() {
        return Ok(Value::Bool(b.is_true()));
    }
    if let Ok(s) = value.cast::<PyString>() {
        return Ok(Value::String(s.to_cow()?.into_owned()));
    }
    if let Ok(i) = value.extract::<i64>() {
        return Ok(Value::from(i));
    }
    if let Ok(f) = value.extract::<f64>() {
        return Ok(serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number));
    }
    if let Ok(d) = value.cast::<PyDict>() {
        let mut map = serde_json::Map::new();
        for (k, v) in d.iter() {
            let Ok(k) = k.extract::<String>() else {
                continue;
            };
            map.insert(k, to_json(&v, depth + 1)?);
        }
        return Ok(Value::Object(map));
    }
    if value.cast::<PyList>().is_ok() || value.cast::<PyTuple>().is_ok() {
        return value
            .try_iter()?
            .map(|v| to_json(&v?, depth + 1))
            .collect::<PyResult<_>>()
            .map(Value::Array);
    }
    Err(EventError::new_err(format!(
        "a value of type {} in the event (events are JSON: dicts, lists, strings, numbers)",
        value.get_type().name()?
    )))
}

/// The fields of an event the core reads; the body and the rest are not copied.
fn event_json(event: &Bound<'_, PyAny>) -> PyResult<serde_json::Value> {
    let Ok(dict) = event.cast::<PyDict>() else {
        return Err(EventError::new_err(format!(
            "a Lambda event is a dict, not {} (for aws-lambda-powertools classes pass event.raw_event)",
            event.get_type().name()?
        )));
    };
    let mut map = serde_json::Map::new();
    // `raw_path` only tells a VPC Lattice v1 event, which the core refuses by name. The
    // query fields and payload 2.0's `cookies` for `query:NAME` and `cookie:NAME`.
    for key in [
        "version",
        "headers",
        "multiValueHeaders",
        "raw_path",
        "cookies",
        "rawQueryString",
        "queryStringParameters",
        "multiValueQueryStringParameters",
    ] {
        if let Some(value) = dict.get_item(key)? {
            map.insert(key.to_string(), to_json(&value, 1)?);
        }
    }
    if let Some(context) = dict.get_item("requestContext")? {
        map.insert("requestContext".to_string(), request_context_json(&context)?);
    }
    Ok(serde_json::Value::Object(map))
}

/// The parts of `requestContext` the core reads: `elb` (whose presence makes an ALB event),
/// `serviceNetworkArn` and `serviceArn` (a VPC Lattice v2 event, refused by name),
/// `domainName` (a Function URL's host tells its payload 2.0 events from an HTTP API's), and
/// `identity` and `http` with only their `sourceIp`. The rest is not copied: an
/// authorizer's context (`requestContext.authorizer.lambda`) nests as deep as the
/// authorizer likes, and an event must not fail on what the core never reads (the CLI,
/// which reads the whole JSON, answers for it).
fn request_context_json(context: &Bound<'_, PyAny>) -> PyResult<serde_json::Value> {
    use serde_json::Value;
    let Ok(context) = context.cast::<PyDict>() else {
        // Not an object: the core says so, naming what it is.
        return to_json(context, 1);
    };
    let mut map = serde_json::Map::new();
    for key in ["elb", "serviceNetworkArn", "serviceArn", "domainName"] {
        if let Some(value) = context.get_item(key)? {
            map.insert(key.to_string(), to_json(&value, 2)?);
        }
    }
    for key in ["identity", "http"] {
        let Some(value) = context.get_item(key)? else {
            continue;
        };
        let copied = match value.cast::<PyDict>() {
            Ok(inner) => {
                let mut inner_map = serde_json::Map::new();
                if let Some(ip) = inner.get_item("sourceIp")? {
                    inner_map.insert("sourceIp".to_string(), to_json(&ip, 3)?);
                }
                Value::Object(inner_map)
            }
            Err(_) => to_json(&value, 2)?,
        };
        map.insert(key.to_string(), copied);
    }
    Ok(Value::Object(map))
}

fn event_error(e: trueip::lambda::EventError) -> PyErr {
    EventError::new_err(e.to_string())
}

/// The client of a Lambda event (ALB, API Gateway REST, HTTP and WebSocket API, Function
/// URL). A VPC Lattice event is an `EventError` naming it.
#[pyfunction]
fn resolve_event(
    py: Python<'_>,
    policy: &Policy,
    event: &Bound<'_, PyAny>,
) -> PyResult<Resolution> {
    let json = event_json(event)?;
    let parsed = trueip::lambda::Event::parse(&json).map_err(event_error)?;
    policy.decide_event(py, &parsed)
}

/// The address that stands in for the peer of a Lambda event (the core's rule,
/// `trueip::lambda::Event::peer`), as text: for the ASGI middleware under an adapter that
/// keeps the event in the scope (Mangum's `scope["aws.event"]`), whose `scope["client"]`
/// is not that address (for an ALB event Mangum puts the whole `X-Forwarded-For` there,
/// client-written entries and all). `(true, None)` for an event of a kind trueip reads but
/// cannot (then no hop is trusted); `(false, None)` for an event of no kind trueip reads
/// (Lambda@Edge, where Mangum's client is CloudFront's `clientIp`).
#[pyfunction]
fn _event_peer(event: &Bound<'_, PyAny>) -> (bool, Option<String>) {
    let Ok(json) = event_json(event) else {
        return (true, None);
    };
    match trueip::lambda::Event::parse(&json) {
        Ok(event) => (true, Some(event.peer().to_string())),
        Err(trueip::lambda::EventError::UnknownKind { .. }) => (false, None),
        Err(_) => (true, None),
    }
}

/// `trueip explain --lambda-event --format json`, as a dict.
#[pyfunction]
fn explain_event(py: Python<'_>, policy: &Policy, event: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
    let json = event_json(event)?;
    let parsed = trueip::lambda::Event::parse(&json).map_err(event_error)?;
    json_object(py, &parsed.explain(&policy.inner))
}

/// Every client-IP header (the core's one table), lower case: what a middleware removes
/// from a request that did not come through a trusted hop.
#[pyfunction]
fn forwarding_header_names() -> Vec<String> {
    trueip::headers::names::FORWARDING.iter().map(|row| row.as_str().to_owned()).collect()
}

/// Every warning name, in the order the CLI lists them.
#[pyfunction]
fn warning_names() -> Vec<&'static str> {
    Warnings::all_names().collect()
}

#[pymodule]
fn _trueip(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_class::<Policy>()?;
    m.add_class::<Resolution>()?;
    m.add_class::<Verifier>()?;
    m.add("PolicyError", py.get_type::<PolicyError>())?;
    m.add("EventError", py.get_type::<EventError>())?;
    m.add_function(wrap_pyfunction!(resolve_event, m)?)?;
    m.add_function(wrap_pyfunction!(explain_event, m)?)?;
    m.add_function(wrap_pyfunction!(_event_peer, m)?)?;
    m.add_function(wrap_pyfunction!(forwarding_header_names, m)?)?;
    m.add_function(wrap_pyfunction!(warning_names, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
