//! The configuration of each layer: what makes a hop behave as simulated, and, for the app,
//! the recommended trueip policy, the ProxyFix arguments and an nginx realip snippet.

use std::fmt::Write as _;
use std::net::SocketAddr;

use super::at_app::AtApp;
use super::hops::trueip_toml;
use super::model::{AlbXff, ApiSource, Hop, Kind, RealIpHeader, SendProxy, Topology};

/// One layer's configuration.
#[derive(Clone, Debug, serde::Serialize)]
pub(crate) struct Snippet {
    /// The hop (`hop 2 alb(append)`) or `app`.
    pub(crate) layer: String,
    /// What the text is: `nginx`, `haproxy`, `aws-cli`, `toml`, `python`, `note`.
    pub(crate) kind: &'static str,
    pub(crate) text: String,
}

fn snippet(layer: &str, kind: &'static str, text: String) -> Snippet {
    Snippet { layer: layer.to_string(), kind, text }
}

/// Every layer's configuration, in chain order, then the app's.
pub(crate) fn all(top: &Topology, at_app: &AtApp) -> Vec<Snippet> {
    let mut out = Vec::new();
    for (i, hop) in top.hops.iter().enumerate() {
        let next = match top.hops.get(i + 1) {
            Some(h) => SocketAddr::new(h.address, h.port),
            None => SocketAddr::new(top.app_address, top.app_port),
        }
        .to_string();
        let layer = format!("hop {} {}", i + 1, hop.label);
        out.extend(for_hop(&layer, hop, &next));
    }
    out.extend(for_app(top, at_app));
    out
}

fn for_hop(layer: &str, hop: &Hop, next: &str) -> Vec<Snippet> {
    match &hop.kind {
        Kind::CloudFront { viewer_address } => {
            let mut t = String::from(
                "CloudFront appends the viewer address to X-Forwarded-For; nothing to set.\n\
                 Add a custom origin header (Origin > Custom headers) with a secret value and\n\
                 require it at the origin (trueip: client_ip.origin_secret): CloudFront's ranges\n\
                 are shared by every CloudFront customer.",
            );
            if *viewer_address {
                t.push_str(
                    "\nOrigin request policy: include the CloudFront-Viewer-Address header.",
                );
            }
            vec![snippet(layer, "note", t)]
        }
        Kind::Alb { xff, client_port, .. } => {
            let mut t = format!(
                "aws elbv2 modify-load-balancer-attributes --load-balancer-arn \"$ALB_ARN\" \\\n  \
                 --attributes Key=routing.http.xff_header_processing.mode,Value={} \\\n  \
                 Key=routing.http.xff_client_port.enabled,Value={client_port}",
                xff.name()
            );
            if *xff != AlbXff::Append {
                t.push_str("\n# append is the only mode that writes the client down");
            }
            vec![snippet(layer, "aws-cli", t)]
        }
        Kind::Nlb { proxy_v2, preserve_client_ip } => vec![snippet(
            layer,
            "aws-cli",
            format!(
                "aws elbv2 modify-target-group-attributes --target-group-arn \"$TG_ARN\" \\\n  \
                 --attributes Key=proxy_protocol_v2.enabled,Value={proxy_v2} \\\n  \
                 Key=preserve_client_ip.enabled,Value={preserve_client_ip}"
            ),
        )],
        Kind::Nginx { append, x_real_ip, x_forwarded_proto, realip, accept_proxy } => {
            let mut t = String::from("server {\n");
            let _ = writeln!(
                t,
                "    listen {}{};",
                hop.port,
                if *accept_proxy { " proxy_protocol" } else { "" }
            );
            if let Some(r) = realip {
                for c in &r.from {
                    let _ = writeln!(t, "    set_real_ip_from {c};");
                }
                let header = match &r.header {
                    RealIpHeader::Header(h) => h.as_str(),
                    RealIpHeader::ProxyProtocol => "proxy_protocol",
                };
                let _ = writeln!(t, "    real_ip_header {header};");
                let _ = writeln!(
                    t,
                    "    real_ip_recursive {};",
                    if r.recursive { "on" } else { "off" }
                );
            }
            t.push_str("    location / {\n");
            let _ = writeln!(t, "        proxy_pass http://{next};");
            let _ = writeln!(t, "        proxy_bind {};", hop.address);
            t.push_str("        proxy_set_header Host $http_host;\n");
            if *x_real_ip {
                t.push_str("        proxy_set_header X-Real-IP $remote_addr;\n");
            }
            if *append {
                t.push_str(
                    "        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n",
                );
            }
            if *x_forwarded_proto {
                t.push_str("        proxy_set_header X-Forwarded-Proto $scheme;\n");
            }
            t.push_str("    }\n}");
            vec![snippet(layer, "nginx", t)]
        }
        Kind::Haproxy { http, forwardfor, send_proxy, accept_proxy } => {
            let mut t = String::new();
            let _ = writeln!(t, "frontend in");
            let _ = writeln!(t, "    mode {}", if *http { "http" } else { "tcp" });
            let _ = writeln!(
                t,
                "    bind :{}{}",
                hop.port,
                if *accept_proxy { " accept-proxy" } else { "" }
            );
            if *forwardfor {
                let _ = writeln!(t, "    option forwardfor");
            }
            let _ = writeln!(t, "    default_backend out");
            let _ = writeln!(t, "backend out");
            let _ = writeln!(t, "    mode {}", if *http { "http" } else { "tcp" });
            let _ = writeln!(t, "    source {}", hop.address);
            let send = match send_proxy {
                Some(SendProxy::V1) => " send-proxy",
                Some(SendProxy::V2) => " send-proxy-v2",
                None => "",
            };
            let _ = write!(t, "    server next {next}{send}");
            vec![snippet(layer, "haproxy", t)]
        }
        Kind::Cloudflare => vec![snippet(
            layer,
            "note",
            "Cloudflare sets CF-Connecting-IP to the visitor and appends it to X-Forwarded-For;\n\
             nothing to set. Allow only Cloudflare's ranges (www.cloudflare.com/ips) to reach the\n\
             next hop, or use Authenticated Origin Pulls."
                .to_string(),
        )],
        Kind::Fastly => vec![snippet(
            layer,
            "vcl",
            "# Fastly keeps a Fastly-Client-IP the client sent; overwrite it on the first visit:\n\
             sub vcl_recv {\n  if (fastly.ff.visits_this_service == 0 && req.restarts == 0) {\n    \
             set req.http.Fastly-Client-IP = client.ip;\n  }\n}"
                .to_string(),
        )],
        Kind::Gcp { lb_ip } => vec![snippet(
            layer,
            "note",
            format!(
                "The external Application Load Balancer appends \"<client>, {lb_ip}\" to\n\
                 X-Forwarded-For; backends see Google Front Ends (35.191.0.0/16, 130.211.0.0/22).\n\
                 Trust both the front ends and {lb_ip} (trueip: \"gcp-lb\" and \"{lb_ip}\")."
            ),
        )],
        Kind::AzureFrontDoor { fdid } => vec![snippet(
            layer,
            "note",
            format!(
                "Front Door sets X-Azure-ClientIP and X-Azure-SocketIP and appends to\n\
                 X-Forwarded-For. Require the profile's X-Azure-FDID at the origin{}: the\n\
                 AzureFrontDoor.Backend ranges are shared by every Front Door customer.",
                fdid.as_deref()
                    .map(|id| format!(
                        " (origin_secret = {{ header = \"X-Azure-FDID\", value = \"{id}\" }})"
                    ))
                    .unwrap_or_default()
            ),
        )],
        Kind::ApiGateway { source, .. } => {
            let from = match source {
                ApiSource::Header(h) => format!(
                    "the {h} header: any client can write it; take the client from the peer or a PROXY header instead"
                ),
                ApiSource::Query(q) => format!(
                    "the query argument {q}: any client can write it; take the client from the peer or a PROXY header instead"
                ),
                ApiSource::Proxy => "the PROXY header's source".to_string(),
                ApiSource::Peer => "the TCP peer".to_string(),
            };
            vec![snippet(
                layer,
                "note",
                format!(
                    "The API gateway takes the client from {from}; it sets X-Real-IP and appends to X-Forwarded-For."
                ),
            )]
        }
        Kind::Nat => vec![snippet(
            layer,
            "note",
            format!("NAT: the next hop sees {}; no header carries the client.", hop.address),
        )],
        Kind::Trueip { .. } => {
            let next = next.parse().map_or_else(|_| String::new(), |n| trueip_toml(hop, n));
            vec![snippet(layer, "toml", next)]
        }
    }
}

fn for_app(top: &Topology, at_app: &AtApp) -> Vec<Snippet> {
    let r = &at_app.recommended;
    let mut toml = r.toml.clone();
    if top.hops.iter().any(|h| {
        matches!(
            h.kind,
            Kind::CloudFront { .. } | Kind::Cloudflare | Kind::Fastly | Kind::AzureFrontDoor { .. }
        )
    }) {
        toml.push_str(
            "# The CDN ranges above stand in for the provider's list: in production name the\n\
             # provider (\"cloudfront\", \"cloudflare\", \"fastly\", \"azure-front-door\") and\n\
             # point [client_ip.providers] at its published file.\n",
        );
    }
    let mut out = vec![snippet("app: trueip policy", "toml", toml)];
    match at_app.proxyfix_x_for {
        Some(n) if r.proxy_protocol_from.is_empty() => out.push(snippet(
            "app: Werkzeug ProxyFix",
            "python",
            format!(
                "from werkzeug.middleware.proxy_fix import ProxyFix\n\
                 app.wsgi_app = ProxyFix(app.wsgi_app, x_for={n}, x_proto=1)\n\
                 # ProxyFix counts entries and never checks who sent them: right only while\n\
                 # every request crosses exactly these {n} appending hops"
            ),
        )),
        _ => out.push(snippet(
            "app: Werkzeug ProxyFix",
            "note",
            "No x_for count finds the client on this chain; ProxyFix cannot be configured for it."
                .to_string(),
        )),
    }
    // The same decision as the trueip policy, in realip's terms.
    let mut nginx = String::new();
    if !r.proxy_protocol_from.is_empty() {
        nginx.push_str("listen 80 proxy_protocol;\n");
        for c in &r.proxy_protocol_from {
            let _ = writeln!(nginx, "set_real_ip_from {c};");
        }
        nginx.push_str("real_ip_header proxy_protocol;\n");
    } else if let Some(header) = r.strategy.strip_prefix("header:") {
        for c in &r.trusted {
            let _ = writeln!(nginx, "set_real_ip_from {c};");
        }
        let _ = writeln!(nginx, "real_ip_header {header};");
    } else if r.strategy == "rightmost-untrusted" {
        for c in &r.trusted {
            let _ = writeln!(nginx, "set_real_ip_from {c};");
        }
        nginx.push_str("real_ip_header X-Forwarded-For;\nreal_ip_recursive on;\n");
    } else {
        nginx.push_str("# the peer is the client: no realip directives\n");
    }
    nginx.push_str("proxy_set_header X-Real-IP $remote_addr;  # then trust it in the app");
    out.push(snippet("app: nginx in front of the app", "nginx", nginx));
    out
}
