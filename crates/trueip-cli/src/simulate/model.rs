//! The values a simulation passes from hop to hop: a request as one hop receives it, its
//! header values with the parts the client forged marked, and the hops themselves.

use std::net::{IpAddr, SocketAddr};

use trueip::Cidr;

/// A piece of header text, and whether the client wrote it (directly, or through a hop
/// that copied the client's text into a value of its own).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Part {
    pub(crate) text: String,
    pub(crate) forged: bool,
}

impl Part {
    pub(crate) fn honest(text: impl Into<String>) -> Self {
        Part { text: text.into(), forged: false }
    }
}

/// A header value as pieces; `text()` is what goes on the wire.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Value(pub(crate) Vec<Part>);

impl Value {
    pub(crate) fn honest(text: impl Into<String>) -> Self {
        Value(vec![Part::honest(text)])
    }

    pub(crate) fn forged(text: impl Into<String>) -> Self {
        Value(vec![Part { text: text.into(), forged: true }])
    }

    pub(crate) fn text(&self) -> String {
        self.0.iter().map(|p| p.text.as_str()).collect()
    }

    pub(crate) fn has_forged(&self) -> bool {
        self.0.iter().any(|p| p.forged)
    }

    /// The comma-separated elements, each as one part (forged when any of its text was).
    pub(crate) fn elements(&self) -> Vec<Part> {
        let mut out: Vec<Part> = Vec::new();
        let mut current = Part::honest("");
        for part in &self.0 {
            let mut pieces = part.text.split(',').peekable();
            while let Some(piece) = pieces.next() {
                current.text.push_str(piece);
                current.forged |= part.forged && !piece.trim().is_empty();
                if pieces.peek().is_some() {
                    out.push(std::mem::replace(&mut current, Part::honest("")));
                }
            }
        }
        out.push(current);
        out.into_iter()
            .map(|p| Part { text: p.text.trim_matches([' ', '\t']).to_owned(), forged: p.forged })
            .filter(|p| !p.text.is_empty())
            .collect()
    }
}

/// One header line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Line {
    pub(crate) name: String,
    pub(crate) value: Value,
}

/// A PROXY protocol header at the start of a connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ProxyHeader {
    pub(crate) version: u8,
    pub(crate) source: SocketAddr,
    pub(crate) destination: SocketAddr,
    /// The source came from the client's text (an API gateway that believed a header).
    pub(crate) forged: bool,
}

/// A request as one hop receives it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Request {
    /// The TCP peer.
    pub(crate) peer: SocketAddr,
    pub(crate) proxy: Option<ProxyHeader>,
    /// The query string, when the request has one.
    pub(crate) query: Option<Value>,
    pub(crate) headers: Vec<Line>,
}

impl Request {
    /// Every line named `name` (any case), in order.
    pub(crate) fn lines<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Line> + 'a {
        self.headers.iter().filter(move |l| l.name.eq_ignore_ascii_case(name))
    }

    /// The lines named `name` as one list value (lines joined by ", "), if any.
    pub(crate) fn joined(&self, name: &str) -> Option<Value> {
        let mut out: Option<Value> = None;
        for line in self.lines(name) {
            match &mut out {
                None => out = Some(line.value.clone()),
                Some(v) => {
                    v.0.push(Part::honest(", "));
                    v.0.extend(line.value.0.iter().cloned());
                }
            }
        }
        out
    }

    pub(crate) fn remove(&mut self, name: &str) {
        self.headers.retain(|l| !l.name.eq_ignore_ascii_case(name));
    }

    /// Replaces every line named `name` with one line (at the first one's place).
    pub(crate) fn set(&mut self, name: &str, value: Value) {
        match self.headers.iter().position(|l| l.name.eq_ignore_ascii_case(name)) {
            Some(at) => {
                self.remove(name);
                let at = at.min(self.headers.len());
                self.headers.insert(at, Line { name: name.to_owned(), value });
            }
            None => self.add(name, value),
        }
    }

    /// Adds a line at the end.
    pub(crate) fn add(&mut self, name: &str, value: Value) {
        self.headers.push(Line { name: name.to_owned(), value });
    }

    /// The lines named `name` joined, then ", " and `added`: one line (nginx's
    /// `$proxy_add_x_forwarded_for`, and how CDNs and load balancers append).
    pub(crate) fn append_list(&mut self, name: &str, added: Value) {
        let value = match self.joined(name) {
            Some(mut v) => {
                v.0.push(Part::honest(", "));
                v.0.extend(added.0);
                v
            }
            None => added,
        };
        self.set(name, value);
    }
}

/// How an ALB treats X-Forwarded-For (`routing.http.xff_header_processing.mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AlbXff {
    Append,
    Preserve,
    Remove,
}

impl AlbXff {
    pub(crate) fn name(self) -> &'static str {
        match self {
            AlbXff::Append => "append",
            AlbXff::Preserve => "preserve",
            AlbXff::Remove => "remove",
        }
    }
}

/// Which header (or the PROXY header) nginx's realip module reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum RealIpHeader {
    Header(String),
    ProxyProtocol,
}

/// nginx's realip module: `set_real_ip_from`, `real_ip_header`, `real_ip_recursive`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RealIp {
    pub(crate) from: Vec<Cidr>,
    pub(crate) header: RealIpHeader,
    pub(crate) recursive: bool,
}

/// Where an API gateway takes the client from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ApiSource {
    /// A request header, as received.
    Header(String),
    /// A query argument.
    Query(String),
    /// The PROXY header's source.
    Proxy,
    /// The TCP peer.
    Peer,
}

/// A PROXY protocol version a hop sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SendProxy {
    V1,
    V2,
}

impl SendProxy {
    pub(crate) fn version(self) -> u8 {
        match self {
            SendProxy::V1 => 1,
            SendProxy::V2 => 2,
        }
    }
}

/// What a hop is, with its options.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    CloudFront {
        viewer_address: bool,
    },
    Alb {
        xff: AlbXff,
        client_port: bool,
        https: bool,
    },
    Nlb {
        proxy_v2: bool,
        preserve_client_ip: bool,
    },
    Nginx {
        append: bool,
        x_real_ip: bool,
        x_forwarded_proto: bool,
        realip: Option<RealIp>,
        accept_proxy: bool,
    },
    Haproxy {
        http: bool,
        forwardfor: bool,
        send_proxy: Option<SendProxy>,
        accept_proxy: bool,
    },
    Cloudflare,
    Fastly,
    Gcp {
        lb_ip: IpAddr,
    },
    AzureFrontDoor {
        fdid: Option<String>,
    },
    ApiGateway {
        source: ApiSource,
        accept_proxy: bool,
    },
    Nat,
    Trueip {
        trusted: Vec<String>,
        strategy: Option<String>,
        proxy_protocol_from: Vec<String>,
    },
}

impl Kind {
    /// The name a topology uses.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Kind::CloudFront { .. } => "cloudfront",
            Kind::Alb { .. } => "alb",
            Kind::Nlb { .. } => "nlb",
            Kind::Nginx { .. } => "nginx",
            Kind::Haproxy { .. } => "haproxy",
            Kind::Cloudflare => "cloudflare",
            Kind::Fastly => "fastly",
            Kind::Gcp { .. } => "gcp",
            Kind::AzureFrontDoor { .. } => "azure-front-door",
            Kind::ApiGateway { .. } => "apigw",
            Kind::Nat => "nat",
            Kind::Trueip { .. } => "trueip",
        }
    }

    /// Whether the hop works at L4 only: it neither reads nor writes HTTP headers.
    pub(crate) fn is_l4(&self) -> bool {
        matches!(self, Kind::Nlb { .. } | Kind::Nat | Kind::Haproxy { http: false, .. })
    }

    /// Whether the hop expects a PROXY header on its connections.
    pub(crate) fn accepts_proxy(&self) -> bool {
        match self {
            Kind::Nginx { accept_proxy, .. }
            | Kind::Haproxy { accept_proxy, .. }
            | Kind::ApiGateway { accept_proxy, .. } => *accept_proxy,
            Kind::Trueip { proxy_protocol_from, .. } => !proxy_protocol_from.is_empty(),
            _ => false,
        }
    }
}

/// One hop: a proxy, balancer, CDN or NAT between the client and the app.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Hop {
    pub(crate) kind: Kind,
    /// The address the next hop sees this one connect from.
    pub(crate) address: IpAddr,
    /// The range the app's side trusts for this hop (its provider's or the VPC's).
    pub(crate) range: Cidr,
    /// The port it listens on.
    pub(crate) port: u16,
    /// How the topology wrote it, in terminal mode (`trueip::shown::terminal`): only
    /// messages and pictures show it, and a file may write anything there.
    pub(crate) label: String,
}

/// The client at the start of the chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Client {
    pub(crate) address: IpAddr,
    pub(crate) port: u16,
    /// Header lines the client writes itself, to impersonate someone.
    pub(crate) forges: Vec<(String, String)>,
    /// A query string the client sends (forged when an API gateway believes it).
    pub(crate) query: Option<String>,
}

/// A whole chain: client, hops, then the app.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Topology {
    pub(crate) client: Client,
    pub(crate) hops: Vec<Hop>,
    /// The app's own address (the destination of the last connection).
    pub(crate) app_address: IpAddr,
    pub(crate) app_port: u16,
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail loudly")]
mod tests {
    use super::*;

    #[test]
    fn elements_keep_forged_marks_across_joined_parts() {
        let mut v = Value::forged("1.2.3.4, 5.6.7.8");
        v.0.push(Part::honest(", "));
        v.0.push(Part::honest("198.51.100.7"));
        let e = v.elements();
        let got: Vec<(&str, bool)> = e.iter().map(|p| (p.text.as_str(), p.forged)).collect();
        assert_eq!(got, [("1.2.3.4", true), ("5.6.7.8", true), ("198.51.100.7", false)]);
    }

    #[test]
    fn set_replaces_every_line_and_append_joins_them() {
        let mut r = Request {
            peer: "192.0.2.1:1".parse().unwrap(),
            proxy: None,
            query: None,
            headers: vec![],
        };
        r.add("X-Forwarded-For", Value::forged("1.1.1.1"));
        r.add("Host", Value::honest("h"));
        r.add("x-forwarded-for", Value::forged("2.2.2.2"));
        r.append_list("X-Forwarded-For", Value::honest("3.3.3.3"));
        assert_eq!(r.lines("X-FORWARDED-FOR").count(), 1);
        assert_eq!(r.joined("x-forwarded-for").unwrap().text(), "1.1.1.1, 2.2.2.2, 3.3.3.3");
        assert_eq!(r.headers.first().unwrap().name, "X-Forwarded-For");
    }
}
