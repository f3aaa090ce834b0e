//! What each kind of hop does to a request: which address it takes for the client, which
//! headers it sets, appends or drops, and what the next hop's connection looks like.
//!
//! Each model follows the product's documentation (sources named at each kind); nginx and
//! HAProxy are also checked against the real programs (`tests/simulate_real.rs`).

use std::net::{IpAddr, SocketAddr};

use trueip::Connection;

use super::model::{
    AlbXff, ApiSource, Hop, Kind, Line, Part, ProxyHeader, RealIpHeader, Request, Topology, Value,
};

/// One hop's view of the request it received.
#[derive(Clone, Debug)]
pub(crate) struct Received {
    /// The request as this hop (or, last, the app) receives it.
    pub(crate) request: Request,
    /// What the hop takes for the client (nginx's `$remote_addr`, HAProxy's `src`, a
    /// CDN's viewer address); `None` at the app.
    pub(crate) client_view: Option<Part>,
    /// What the model wants the reader to know about this hop.
    pub(crate) notes: Vec<String>,
}

/// Where the real client ends up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Truth {
    /// The address a correct answer at the app gives: the client's, or, when a hop lost
    /// it, the address that stands in for it from there on.
    pub(crate) expected: IpAddr,
    /// The hop (1-based) that lost the client, if one did.
    pub(crate) lost_at: Option<usize>,
}

/// The whole run: what every hop and the app received.
#[derive(Clone, Debug)]
pub(crate) struct Run {
    /// One per hop, then the app's.
    pub(crate) received: Vec<Received>,
    pub(crate) truth: Truth,
}

impl Run {
    pub(crate) fn app(&self) -> Option<&Request> {
        self.received.last().map(|r| &r.request)
    }
}

/// The Host the client asks for.
pub(crate) const HOST: &str = "app.example";

/// The first request: from the client, with the lines it forges.
fn first_request(top: &Topology) -> Request {
    let mut headers = vec![Line { name: "Host".to_string(), value: Value::honest(HOST) }];
    for (name, value) in &top.client.forges {
        headers.push(Line { name: name.clone(), value: Value::forged(value.clone()) });
    }
    Request {
        peer: SocketAddr::new(top.client.address, top.client.port),
        proxy: None,
        query: top.client.query.clone().map(Value::forged),
        headers,
    }
}

/// The port a hop connects onward from (stable, so outputs can be compared).
fn source_port(index: usize) -> u16 {
    41000u16.saturating_add(u16::try_from(index).unwrap_or(0))
}

/// Runs the request through every hop. An error names a hop whose connection the previous
/// hop cannot make (a PROXY header where none is read, or none where one is required).
pub(crate) fn run(top: &Topology) -> Result<Run, String> {
    let mut request = first_request(top);
    let mut received = Vec::with_capacity(top.hops.len() + 1);
    let mut truth = Truth { expected: top.client.address, lost_at: None };
    // Whether the client's address travels in a header or a PROXY header from here on.
    let mut recorded = false;
    for (i, hop) in top.hops.iter().enumerate() {
        let at = i + 1;
        let next = match top.hops.get(at) {
            Some(h) => SocketAddr::new(h.address, h.port),
            None => SocketAddr::new(top.app_address, top.app_port),
        };
        check_proxy(top, at, &request)?;
        let (out, view, mut notes) = forward(hop, &request, source_port(at), next)?;
        if let Kind::Nginx { realip: Some(r), .. } = &hop.kind {
            let proxy = top
                .hops
                .iter()
                .take(i)
                .enumerate()
                .find(|(_, h)| view.text.parse::<IpAddr>().is_ok_and(|ip| ip == h.address));
            if let Some((k, h)) = proxy {
                let missing = !r.from.iter().any(|c| c.contains(h.address));
                notes.push(format!(
                    "realip took {}, the address of hop {} `{}`, not the client: {}{}",
                    view.text,
                    k + 1,
                    h.label,
                    if missing {
                        format!("add set_real_ip_from {}", h.range)
                    } else {
                        String::new()
                    },
                    match (missing, r.recursive) {
                        (true, false) => " and turn real_ip_recursive on",
                        (false, false) => "turn real_ip_recursive on",
                        _ => "",
                    }
                ));
            }
        }
        if hop.kind.is_l4() {
            let rewrites = out.peer.ip() != request.peer.ip() && out.proxy.is_none();
            if rewrites && !recorded {
                truth = Truth { expected: out.peer.ip(), lost_at: Some(at) };
            }
            recorded |= out.proxy.is_some();
        } else {
            recorded = true;
        }
        received.push(Received {
            request: std::mem::replace(&mut request, out),
            client_view: Some(view),
            notes,
        });
    }
    if request.proxy.is_some() {
        // The app is modelled as reading PROXY headers when it gets one: trueip's
        // ProxyProtocolListener, `trueip serve` with proxy_protocol on.
    }
    received.push(Received { request, client_view: None, notes: Vec::new() });
    Ok(Run { received, truth })
}

/// A PROXY header reaches only a hop that reads one; a hop that requires one gets one.
fn check_proxy(top: &Topology, at: usize, request: &Request) -> Result<(), String> {
    let Some(hop) = top.hops.get(at - 1) else {
        return Ok(());
    };
    let from = match at.checked_sub(2).and_then(|i| top.hops.get(i)) {
        Some(h) => format!("hop {} `{}`", at - 1, h.label),
        None => "the client".to_string(),
    };
    match (&request.proxy, hop.kind.accepts_proxy()) {
        (Some(p), false) => Err(format!(
            "hop {at} `{}` gets a PROXY v{} header from {from} but does not read one: its HTTP \
             parser would answer 400. Add `proxy-protocol` (nginx), `accept-proxy` (haproxy, \
             apigw) or `proxy-protocol-from` (trueip) to hop {at}, or stop {from} sending it",
            hop.label, p.version
        )),
        (None, true) => Err(format!(
            "hop {at} `{}` requires a PROXY header but {from} sends none: the connection would \
             be closed. Have {from} send one (nlb(proxy-v2), haproxy(send-proxy-v2)) or remove \
             the option from hop {at}",
            hop.label
        )),
        _ => Ok(()),
    }
}

fn honest_ip(ip: IpAddr) -> Part {
    Part::honest(ip.to_string())
}

/// The address written as `ip:port` (`[v6]:port`).
fn ip_port(addr: SocketAddr) -> String {
    addr.to_string()
}

/// The PROXY header's source when the hop reads one, else the TCP peer, as the hop sees it.
fn view_of(kind: &Kind, request: &Request) -> (Part, Option<SocketAddr>) {
    match &request.proxy {
        Some(p) if kind.accepts_proxy() => {
            (Part { text: p.source.ip().to_string(), forged: p.forged }, Some(p.source))
        }
        _ => (honest_ip(request.peer.ip()), Some(request.peer)),
    }
}

/// The request a hop sends: from its own address, a copy of the headers, no PROXY header
/// unless it sends one.
fn onward(hop: &Hop, request: &Request, port: u16) -> Request {
    Request {
        peer: SocketAddr::new(hop.address, port),
        proxy: None,
        query: request.query.clone(),
        headers: request.headers.clone(),
    }
}

/// A PROXY header naming `source` (the address and port the hop took for the client).
fn proxy_header(
    version: u8,
    view: &Part,
    source: Option<SocketAddr>,
    next: SocketAddr,
) -> Option<ProxyHeader> {
    let source = source?;
    Some(ProxyHeader { version, source, destination: next, forged: view.forged })
}

type Forwarded = (Request, Part, Vec<String>);

/// One hop's work.
fn forward(hop: &Hop, request: &Request, port: u16, next: SocketAddr) -> Result<Forwarded, String> {
    let (view, view_addr) = view_of(&hop.kind, request);
    let mut out = onward(hop, request, port);
    let mut notes = Vec::new();
    match &hop.kind {
        // CloudFront: appends the viewer address to X-Forwarded-For; CloudFront-Viewer-Address
        // (ip:port) when the origin request policy includes it.
        Kind::CloudFront { viewer_address } => {
            out.append_list("X-Forwarded-For", Value(vec![view.clone()]));
            if let (true, Some(a)) = (*viewer_address, view_addr) {
                out.set("CloudFront-Viewer-Address", Value::honest(ip_port(a)));
            }
        }
        // ALB: routing.http.xff_header_processing.mode; routing.http.xff_client_port.enabled
        // appends ip:port; X-Forwarded-Proto and -Port are the listener's, always set.
        Kind::Alb { xff, client_port, https } => {
            let entry = match (client_port, view_addr) {
                (true, Some(a)) => ip_port(a),
                _ => view.text.clone(),
            };
            match xff {
                AlbXff::Append => out.append_list(
                    "X-Forwarded-For",
                    Value(vec![Part { text: entry, forged: view.forged }]),
                ),
                AlbXff::Preserve => {
                    if request.lines("X-Forwarded-For").next().is_none() {
                        notes.push(
                            "preserve: no X-Forwarded-For arrived, so none is sent".to_string(),
                        );
                    }
                }
                AlbXff::Remove => {
                    out.remove("X-Forwarded-For");
                    notes.push(
                        "remove: X-Forwarded-For is dropped; nothing after this hop learns the client"
                            .to_string(),
                    );
                }
            }
            out.set("X-Forwarded-Proto", Value::honest(if *https { "https" } else { "http" }));
            out.set("X-Forwarded-Port", Value::honest(hop.port.to_string()));
        }
        // NLB: L4. With client IP preservation the target sees the client's address as
        // the peer; proxy_protocol_v2.enabled prepends a PROXY v2 header.
        Kind::Nlb { proxy_v2, preserve_client_ip } => {
            if *preserve_client_ip {
                out.peer = request.peer;
            }
            if *proxy_v2 {
                out.proxy = proxy_header(2, &view, view_addr, next);
            }
            if !proxy_v2 && !preserve_client_ip {
                notes.push(
                    "neither PROXY v2 nor client IP preservation: the next hop sees only the NLB"
                        .to_string(),
                );
            }
        }
        Kind::Nginx { append, x_real_ip, x_forwarded_proto, realip, accept_proxy } => {
            // ignore_invalid_headers (on by default) drops names with underscores.
            let before = out.headers.len();
            out.headers.retain(|l| !l.name.contains('_'));
            if out.headers.len() != before {
                notes.push("header names with '_' dropped (ignore_invalid_headers on)".to_string());
            }
            // $remote_addr: the TCP peer (PROXY source with real_ip_header proxy_protocol),
            // rewritten by the realip module when the peer is in set_real_ip_from.
            let peer = request.peer.ip();
            let mut remote = honest_ip(peer);
            if let Some(r) = realip {
                if r.from.iter().any(|c| c.contains(peer)) {
                    match &r.header {
                        RealIpHeader::ProxyProtocol => {
                            if let (true, Some(p)) = (*accept_proxy, &request.proxy) {
                                remote = Part { text: p.source.ip().to_string(), forged: p.forged };
                            }
                        }
                        RealIpHeader::Header(name) => {
                            if let Some(v) = request.joined(name) {
                                remote = nginx_realip(&v, r, remote);
                            }
                        }
                    }
                } else {
                    notes.push(format!(
                        "realip: the peer {peer} is not in set_real_ip_from: $remote_addr stays the peer"
                    ));
                }
            }
            if *append {
                out.append_list("X-Forwarded-For", Value(vec![remote.clone()]));
            }
            if *x_real_ip {
                out.set("X-Real-IP", Value(vec![remote.clone()]));
            }
            if *x_forwarded_proto {
                out.set("X-Forwarded-Proto", Value::honest("http"));
            }
            return Ok((out, remote, notes));
        }
        // HAProxy: `option forwardfor` adds its own X-Forwarded-For line (src); send-proxy
        // names src in a PROXY header; `mode tcp` touches no header.
        Kind::Haproxy { forwardfor, send_proxy, .. } => {
            if *forwardfor {
                out.add("X-Forwarded-For", Value(vec![view.clone()]));
            }
            if let Some(v) = send_proxy {
                out.proxy = proxy_header(v.version(), &view, view_addr, next);
            }
        }
        // Cloudflare: CF-Connecting-IP set to the visitor, X-Forwarded-For appended,
        // X-Forwarded-Proto set.
        Kind::Cloudflare => {
            out.set("CF-Connecting-IP", Value(vec![view.clone()]));
            out.append_list("X-Forwarded-For", Value(vec![view.clone()]));
            out.set("X-Forwarded-Proto", Value::honest("https"));
        }
        // Fastly: adds Fastly-Client-IP only when the request has none ("if a client sets
        // this header themselves, we will use it"), appends to X-Forwarded-For (TLS).
        Kind::Fastly => {
            if request.lines("Fastly-Client-IP").next().is_some() {
                notes.push(
                    "Fastly-Client-IP arrived and is kept as it is (Fastly sets it only when absent; \
                     set it in VCL to stop that)"
                        .to_string(),
                );
            } else {
                out.set("Fastly-Client-IP", Value(vec![view.clone()]));
            }
            out.append_list("X-Forwarded-For", Value(vec![view.clone()]));
        }
        // GCP external Application LB: appends "<client>, <load balancer IP>"; the backend's
        // peer is a Google Front End.
        Kind::Gcp { lb_ip } => {
            out.append_list(
                "X-Forwarded-For",
                Value(vec![view.clone(), Part::honest(", "), Part::honest(lb_ip.to_string())]),
            );
            out.set("X-Forwarded-Proto", Value::honest("https"));
        }
        // Azure Front Door: X-Azure-ClientIP and X-Azure-SocketIP, X-Forwarded-For
        // appended, X-Forwarded-Proto, X-Azure-FDID (the profile).
        Kind::AzureFrontDoor { fdid } => {
            out.set("X-Azure-ClientIP", Value(vec![view.clone()]));
            out.set("X-Azure-SocketIP", Value(vec![view.clone()]));
            out.append_list("X-Forwarded-For", Value(vec![view.clone()]));
            out.set("X-Forwarded-Proto", Value::honest("https"));
            if let Some(id) = fdid {
                out.set("X-Azure-FDID", Value::honest(id.clone()));
            }
        }
        // An API gateway that decides the client from a header, a query argument, the PROXY
        // source or the peer, then sets X-Real-IP to it and appends it to X-Forwarded-For.
        Kind::ApiGateway { source, .. } => {
            let client = match source {
                ApiSource::Peer | ApiSource::Proxy => view.clone(),
                ApiSource::Header(name) => match request.joined(name) {
                    Some(v) => v.elements().into_iter().next().unwrap_or(view.clone()),
                    None => {
                        notes.push(format!("no {name} arrived: the peer stands in"));
                        view.clone()
                    }
                },
                ApiSource::Query(arg) => {
                    match request.query.as_ref().and_then(|q| query_arg(q, arg)) {
                        Some(p) => p,
                        None => {
                            notes.push(format!("no query argument {arg}: the peer stands in"));
                            view.clone()
                        }
                    }
                }
            };
            if client.forged {
                notes.push(format!("took the client from text the client wrote: {}", client.text));
            }
            out.set("X-Real-IP", Value(vec![client.clone()]));
            out.append_list("X-Forwarded-For", Value(vec![client.clone()]));
            return Ok((out, client, notes));
        }
        // NAT: rewrites the source address; nothing else.
        Kind::Nat => {
            notes.push(format!(
                "the next hop sees {} as the peer: the client's address ends here unless a header carries it",
                hop.address
            ));
        }
        Kind::Trueip { .. } => {
            let (headers, client) = trueip_serve(hop, request, next)?;
            out.headers = headers;
            notes.push(
                "headers from `trueip serve`'s own rules (trueip_gateway::preview)".to_string(),
            );
            return Ok((out, client, notes));
        }
    }
    Ok((out, view, notes))
}

/// nginx's realip walk over a header value (`ngx_http_get_forwarded_addr`): from the
/// right, take each element; stop at the first untrusted one (`real_ip_recursive on`) or
/// after one (off); all trusted: the leftmost. An element that does not parse leaves
/// `$remote_addr` as it was.
pub(crate) fn nginx_realip(value: &Value, realip: &super::model::RealIp, peer: Part) -> Part {
    let mut remote = peer.clone();
    // nginx separates elements by spaces as well as commas.
    let elements = value.elements().into_iter().flat_map(|p| {
        p.text
            .split(' ')
            .filter(|t| !t.is_empty())
            .map(|t| Part { text: t.to_owned(), forged: p.forged })
            .collect::<Vec<_>>()
    });
    for element in elements.collect::<Vec<_>>().into_iter().rev() {
        let Ok(node) = trueip::addr::parse_node(element.text.as_bytes()) else {
            return peer;
        };
        let ip = node.ip;
        remote = Part { text: ip.to_string(), forged: element.forged };
        if !realip.recursive || !realip.from.iter().any(|c| c.contains(ip)) {
            break;
        }
    }
    remote
}

/// The value of `arg` in a query string, marked as the query was.
fn query_arg(query: &Value, arg: &str) -> Option<Part> {
    let text = query.text();
    text.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == arg).then(|| Part { text: v.to_owned(), forged: query.has_forged() })
    })
}

/// The config file a `trueip` hop runs with: listening on its address and port, the next
/// hop (or the app) as its upstream.
pub(crate) fn trueip_toml(hop: &Hop, next: SocketAddr) -> String {
    let Kind::Trueip { trusted, strategy, proxy_protocol_from } = &hop.kind else {
        return String::new();
    };
    let list = |v: &[String]| v.iter().map(|s| format!("{s:?}")).collect::<Vec<_>>().join(", ");
    let mut toml = format!("[client_ip]\ntrusted = [{}]\n", list(trusted));
    if let Some(s) = strategy {
        toml.push_str(&format!("strategy = {s:?}\n"));
    }
    if !proxy_protocol_from.is_empty() {
        toml.push_str(&format!("proxy_protocol_from = [{}]\n", list(proxy_protocol_from)));
    }
    toml.push_str(&format!(
        "\n[[listen]]\naddress = \"{}\"\n",
        SocketAddr::new(hop.address, hop.port)
    ));
    if !proxy_protocol_from.is_empty() {
        toml.push_str("proxy_protocol = \"any\"\n");
    }
    toml.push_str(&format!("\n[upstream]\nurl = \"http://{next}\"\n"));
    toml
}

/// `trueip serve`'s rewrite, through the gateway's own header rules. Marks: a line kept
/// as received keeps its marks; an element of the gateway's own lines is forged when the
/// same text arrived forged.
fn trueip_serve(
    hop: &Hop,
    request: &Request,
    next: SocketAddr,
) -> Result<(Vec<Line>, Part), String> {
    let toml = trueip_toml(hop, next);
    let conn = Connection {
        peer: request.peer.into(),
        proxy_source: request.proxy.as_ref().map(|p| p.source.into()),
        private_link: trueip::PrivateLink::default(),
    };
    let plain: Vec<(String, String)> =
        request.headers.iter().map(|l| (l.name.clone(), l.value.text())).collect();
    let preview = trueip_gateway::preview(&toml, &conn, hop.port, &plain)
        .map_err(|e| format!("`{}`: trueip serve refuses this config: {e}", hop.label))?;
    let forged: Vec<String> = request
        .headers
        .iter()
        .flat_map(|l| l.value.elements())
        .filter(|p| p.forged)
        .map(|p| p.text)
        .collect();
    let lines = preview
        .headers
        .into_iter()
        .map(|(name, text)| {
            let kept = request
                .headers
                .iter()
                .find(|l| l.name.eq_ignore_ascii_case(&name) && l.value.text() == text);
            let value = match kept {
                Some(l) => l.value.clone(),
                None => Value(
                    text.split(", ")
                        .enumerate()
                        .flat_map(|(i, e)| {
                            let sep = (i > 0).then(|| Part::honest(", "));
                            sep.into_iter().chain([Part {
                                text: e.to_owned(),
                                forged: forged.iter().any(|f| f == e),
                            }])
                        })
                        .collect(),
                ),
            };
            Line { name, value }
        })
        .collect();
    let client = preview.client.to_string();
    let forged_client = forged.contains(&client);
    Ok((lines, Part { text: client, forged: forged_client }))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic, reason = "tests fail loudly")]
mod tests {
    use super::super::topology::parse_line;
    use super::*;

    fn run_line(line: &str) -> Run {
        run(&parse_line(line).unwrap()).unwrap()
    }

    fn header(r: &Request, name: &str) -> Option<String> {
        r.joined(name).map(|v| v.text())
    }

    fn app(line: &str) -> Request {
        run_line(line).app().unwrap().clone()
    }

    #[test]
    fn issue_chain_headers_at_every_hop() {
        let run = run_line(
            r#"client 198.51.100.7 forges "X-Forwarded-For: 1.2.3.4" -> cloudfront -> alb(append) -> nginx(realip 10.50.0.0/16) -> app"#,
        );
        let [cf, alb, nginx, app] = &run.received[..] else { panic!("four receivers") };
        assert_eq!(cf.request.peer.to_string(), "198.51.100.7:51000");
        assert_eq!(header(&cf.request, "x-forwarded-for").unwrap(), "1.2.3.4");
        assert_eq!(alb.request.peer.ip().to_string(), "13.32.0.10");
        assert_eq!(header(&alb.request, "x-forwarded-for").unwrap(), "1.2.3.4, 198.51.100.7");
        assert_eq!(nginx.request.peer.ip().to_string(), "10.50.1.10");
        assert_eq!(
            header(&nginx.request, "x-forwarded-for").unwrap(),
            "1.2.3.4, 198.51.100.7, 13.32.0.10"
        );
        assert_eq!(header(&nginx.request, "x-forwarded-proto").unwrap(), "https");
        assert_eq!(header(&nginx.request, "x-forwarded-port").unwrap(), "443");
        // realip recursive off takes the last element: CloudFront's address.
        assert_eq!(nginx.client_view.as_ref().unwrap().text, "13.32.0.10");
        assert_eq!(
            header(&app.request, "x-forwarded-for").unwrap(),
            "1.2.3.4, 198.51.100.7, 13.32.0.10, 13.32.0.10"
        );
        assert_eq!(header(&app.request, "x-real-ip").unwrap(), "13.32.0.10");
        assert_eq!(header(&app.request, "x-forwarded-proto").unwrap(), "http");
        let xff = app.request.joined("x-forwarded-for").unwrap().elements();
        assert!(xff[0].forged && !xff[1].forged);
        assert_eq!(run.truth.expected.to_string(), "198.51.100.7");
    }

    #[test]
    fn nginx_realip_recursive_on_finds_the_client_and_appends_it() {
        let a = app(
            "client 198.51.100.7 forges \"X-Forwarded-For: 1.2.3.4\" -> alb -> nginx(realip 10.50.0.0/16, recursive) -> app",
        );
        assert_eq!(header(&a, "x-real-ip").unwrap(), "198.51.100.7");
        // $proxy_add_x_forwarded_for appends the rewritten $remote_addr.
        assert_eq!(header(&a, "x-forwarded-for").unwrap(), "1.2.3.4, 198.51.100.7, 198.51.100.7");
    }

    #[test]
    fn nginx_realip_from_a_forged_header_is_marked_forged() {
        let a = app(
            "client 198.51.100.7 forges \"X-Forwarded-For: 1.2.3.4\" -> nginx(realip 0.0.0.0/0, x-real-ip) -> app",
        );
        let v = a.joined("x-real-ip").unwrap();
        assert_eq!(v.text(), "1.2.3.4");
        assert!(v.has_forged());
        assert!(a.lines("x-forwarded-for").next().is_some(), "x-real-ip alone leaves XFF as sent");
    }

    #[test]
    fn nginx_realip_splits_on_spaces_as_nginx_does() {
        let r = super::super::model::RealIp {
            from: vec!["10.0.0.0/8".parse().unwrap()],
            header: RealIpHeader::Header("X-Forwarded-For".into()),
            recursive: true,
        };
        let v = Value::honest("203.0.113.7 10.0.0.1");
        assert_eq!(nginx_realip(&v, &r, Part::honest("10.0.0.5")).text, "203.0.113.7");
        let v = Value::honest("garbage, 10.0.0.1");
        assert_eq!(nginx_realip(&v, &r, Part::honest("10.0.0.5")).text, "10.0.0.5");
    }

    #[test]
    fn nginx_pass_and_underscores() {
        let a = app(
            "client 198.51.100.7 forges \"X_Forwarded_For: 1.2.3.4\" forges \"X-Real-IP: 5.6.7.8\" -> nginx(pass) -> app",
        );
        assert_eq!(header(&a, "x_forwarded_for"), None);
        assert_eq!(header(&a, "x-real-ip").unwrap(), "5.6.7.8");
        assert_eq!(a.peer.ip().to_string(), "10.50.3.10");
    }

    #[test]
    fn alb_modes_and_client_port() {
        let f = "client 198.51.100.7 forges \"X-Forwarded-For: 1.2.3.4\"";
        assert_eq!(
            header(&app(&format!("{f} -> alb(append) -> app")), "x-forwarded-for").unwrap(),
            "1.2.3.4, 198.51.100.7"
        );
        assert_eq!(
            header(&app(&format!("{f} -> alb(preserve) -> app")), "x-forwarded-for").unwrap(),
            "1.2.3.4"
        );
        assert_eq!(header(&app(&format!("{f} -> alb(remove) -> app")), "x-forwarded-for"), None);
        let a = app("client 198.51.100.7:6000 -> alb(client-port, http) -> app");
        assert_eq!(header(&a, "x-forwarded-for").unwrap(), "198.51.100.7:6000");
        assert_eq!(header(&a, "x-forwarded-proto").unwrap(), "http");
        let a = app("client [2001:db8::7]:6000 -> alb(client-port) -> app");
        assert_eq!(header(&a, "x-forwarded-for").unwrap(), "[2001:db8::7]:6000");
    }

    #[test]
    fn nlb_with_and_without_proxy_v2() {
        let a = app(
            "client 198.51.100.7 -> nlb(proxy-v2) -> trueip(trust 10.50.0.0/16, proxy-protocol-from 10.50.0.0/16) -> app",
        );
        assert_eq!(header(&a, "x-real-ip").unwrap(), "198.51.100.7");
        let r = run_line(
            "client 198.51.100.7 -> nlb(proxy-v2) -> nginx(proxy-protocol, realip 10.50.0.0/16, real-ip-header proxy_protocol) -> app",
        );
        let p = r.received[1].request.proxy.as_ref().unwrap();
        assert_eq!((p.version, p.source.to_string()), (2, "198.51.100.7:51000".to_string()));
        assert_eq!(header(r.app().unwrap(), "x-real-ip").unwrap(), "198.51.100.7");
        let r = run_line("client 198.51.100.7 -> nlb -> nginx -> app");
        assert_eq!(r.truth.lost_at, Some(1));
        assert_eq!(r.truth.expected.to_string(), "10.50.2.10");
        let a = app("client 198.51.100.7 -> nlb(preserve-client-ip) -> app");
        assert_eq!(a.peer.ip().to_string(), "198.51.100.7");
    }

    #[test]
    fn proxy_header_to_a_hop_that_cannot_read_it_is_an_error() {
        let e = run(&parse_line("client 198.51.100.7 -> nlb(proxy-v2) -> nginx -> app").unwrap())
            .unwrap_err();
        assert!(
            e.contains("hop 2 `nginx` gets a PROXY v2 header from hop 1 `nlb(proxy-v2)`"),
            "{e}"
        );
        let e = run(&parse_line("client 198.51.100.7 -> nginx(proxy-protocol) -> app").unwrap())
            .unwrap_err();
        assert!(e.contains("requires a PROXY header but the client sends none"), "{e}");
    }

    #[test]
    fn haproxy_adds_its_own_line_and_sends_proxy() {
        let a = app("client 198.51.100.7 forges \"X-Forwarded-For: 1.2.3.4\" -> haproxy -> app");
        let lines: Vec<String> = a.lines("x-forwarded-for").map(|l| l.value.text()).collect();
        assert_eq!(lines, ["1.2.3.4", "198.51.100.7"]);
        let r = run_line(
            "client 198.51.100.7 -> haproxy(tcp, send-proxy) -> nginx(proxy-protocol, realip 10.50.0.0/16, real-ip-header proxy_protocol) -> app",
        );
        assert_eq!(r.received[1].request.proxy.as_ref().unwrap().version, 1);
        assert_eq!(header(&r.received[1].request, "x-forwarded-for"), None);
    }

    #[test]
    fn cdns_set_their_headers() {
        let f = "client 198.51.100.7 forges \"CF-Connecting-IP: 1.2.3.4\" forges \"Fastly-Client-IP: 1.2.3.4\" forges \"X-Azure-ClientIP: 1.2.3.4\"";
        let a = app(&format!("{f} -> cloudflare -> app"));
        assert_eq!(header(&a, "cf-connecting-ip").unwrap(), "198.51.100.7");
        assert_eq!(header(&a, "x-forwarded-for").unwrap(), "198.51.100.7");
        let a = app(&format!("{f} -> fastly -> app"));
        assert_eq!(
            header(&a, "fastly-client-ip").unwrap(),
            "1.2.3.4",
            "Fastly keeps a client's value"
        );
        let a = app("client 198.51.100.7 -> fastly -> app");
        assert_eq!(header(&a, "fastly-client-ip").unwrap(), "198.51.100.7");
        let a = app(&format!("{f} -> afd(fdid 1234) -> app"));
        assert_eq!(header(&a, "x-azure-clientip").unwrap(), "198.51.100.7");
        assert_eq!(header(&a, "x-azure-fdid").unwrap(), "1234");
        let a = app("client 198.51.100.7 forges \"X-Forwarded-For: 1.2.3.4\" -> gcp -> app");
        assert_eq!(header(&a, "x-forwarded-for").unwrap(), "1.2.3.4, 198.51.100.7, 34.120.0.10");
        assert_eq!(a.peer.ip().to_string(), "35.191.0.10");
        let a = app("client 198.51.100.7 -> cloudfront(viewer-address) -> app");
        assert_eq!(header(&a, "cloudfront-viewer-address").unwrap(), "198.51.100.7:51000");
    }

    #[test]
    fn api_gateway_sources() {
        let a = app("client 198.51.100.7 query \"ip=1.2.3.4&x=1\" -> apigw(query ip) -> app");
        let v = a.joined("x-real-ip").unwrap();
        assert_eq!((v.text().as_str(), v.has_forged()), ("1.2.3.4", true));
        let a = app(
            "client 198.51.100.7 forges \"X-Client-IP: 1.2.3.4\" -> apigw(header X-Client-IP) -> app",
        );
        assert_eq!(header(&a, "x-real-ip").unwrap(), "1.2.3.4");
        let a = app("client 198.51.100.7 -> apigw -> app");
        assert_eq!(header(&a, "x-real-ip").unwrap(), "198.51.100.7");
        let a = app("client 198.51.100.7 -> haproxy(tcp, send-proxy-v2) -> apigw(proxy) -> app");
        assert_eq!(header(&a, "x-real-ip").unwrap(), "198.51.100.7");
    }

    #[test]
    fn nat_loses_the_client_unless_a_header_carries_it() {
        let r = run_line("client 198.51.100.7 -> nat -> nginx -> app");
        assert_eq!(r.truth, Truth { expected: "203.0.113.1".parse().unwrap(), lost_at: Some(1) });
        assert_eq!(header(r.app().unwrap(), "x-real-ip").unwrap(), "203.0.113.1");
        let r = run_line("client 198.51.100.7 -> nginx -> nat -> app");
        assert_eq!(r.truth.lost_at, None);
        assert_eq!(r.app().unwrap().peer.ip().to_string(), "203.0.113.1");
    }

    #[test]
    fn trueip_serve_rewrites_with_the_gateways_rules() {
        let a = app(
            "client 198.51.100.7 forges \"X-Forwarded-For: 1.2.3.4\" forges \"X-Real-IP: 1.2.3.4\" -> alb -> trueip(trust 10.50.0.0/16) -> app",
        );
        assert_eq!(header(&a, "x-real-ip").unwrap(), "198.51.100.7");
        assert_eq!(header(&a, "x-forwarded-for").unwrap(), "198.51.100.7, 10.50.1.10");
        // From an untrusted peer: the forged lines are stripped.
        let a = app(
            "client 198.51.100.7 forges \"X-Forwarded-For: 1.2.3.4\" -> trueip(trust 10.50.0.0/16) -> app",
        );
        assert_eq!(header(&a, "x-forwarded-for").unwrap(), "198.51.100.7");
        assert!(!a.headers.iter().any(|l| l.value.has_forged()));
    }
}
