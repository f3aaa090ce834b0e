//! One decision, in full: what `trueip explain`, the whoami page and debug logs show.

use std::fmt;

use crate::addr::Node;
use crate::entry::Entry;
use crate::headers::{Headers, Lines};
use crate::link::PrivateLink;
use crate::list::Rev;
use crate::policy::{Connection, Policy};
use crate::resolution::{ListHeader, Resolution, Source};
use crate::trace::{Mark, Step};

/// How many chain entries an explanation lists; the rest are summarised.
const MAX_CHAIN: usize = 256;

/// A resolution with its evidence, in owned, printable form.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Explanation {
    /// The client address; `None` when the client is a Unix-socket peer (a local
    /// process, no address: see [`Peer::Unix`](crate::addr::Peer::Unix)).
    pub client_ip: Option<String>,
    /// The client port, when the source carried one.
    pub client_port: Option<u16>,
    /// Where it came from: `peer`, `proxy-protocol`, `x-forwarded-for[-2]`, `x-real-ip`.
    pub source: String,
    /// The peer: an address, or `unix:` for a connection over a Unix socket.
    pub peer: String,
    /// The PROXY protocol source, when a trusted sender supplied one.
    pub proxy_source: Option<String>,
    /// The AWS VPC endpoint id that sender's header named (AWS PrivateLink).
    pub aws_vpce_id: Option<String>,
    /// The Azure Private Link id that sender's header named.
    pub azure_link_id: Option<u32>,
    /// The list header the chain below comes from.
    pub chain_header: String,
    /// Its entries as seen, left to right (the client's end first).
    pub chain: Vec<String>,
    /// How many trusted proxies stood in front of the client.
    pub trusted_hops: u16,
    /// Warning names (`spoof_attempt`, `malformed`, ...).
    pub warnings: Vec<&'static str>,
    /// The strategy that decided, or `null` when the peer stands by default.
    pub strategy: Option<String>,
    /// The rate-limit key; `None` when the client is a Unix-socket peer.
    pub rate_limit_key: Option<String>,
    /// Every step of the decision.
    pub steps: Vec<Step>,
    /// The decision itself, for callers that want typed values.
    #[cfg_attr(feature = "serde", serde(skip))]
    pub resolution: Resolution,
}

impl Explanation {
    /// Resolves with `policy` and records the evidence.
    pub fn new<H: Headers + ?Sized>(policy: &Policy, conn: &Connection, headers: &H) -> Self {
        Decision::new(policy, conn, headers).to_explanation()
    }

    /// [`new`](Self::new) for the address a Lambda event of `kind` names as the peer (see
    /// [`Policy::resolve`]). Only `crate::lambda` calls it.
    #[cfg(feature = "lambda")]
    pub(crate) fn stand_in<H: Headers + ?Sized>(
        policy: &Policy,
        kind: crate::event_kind::EventKind,
        stand_in: &Connection,
        headers: &H,
    ) -> Self {
        let decided = policy.explain_stand_in_marks(kind, stand_in, headers);
        Decision::from_marks(policy, stand_in, headers, decided).to_explanation()
    }
}

/// A decision and its evidence, borrowed from the policy and the request: what an
/// [`Explanation`] holds, before any of it becomes owned text.
///
/// For callers that need the [`Resolution`] of every request and the evidence of only
/// some (the gateway counts each decision, and shows one on its whoami page): the
/// strings are made by [`to_explanation`](Self::to_explanation), whose result is what
/// every printed form (text, JSON) is made from.
#[derive(Clone, Debug)]
pub struct Decision<'a> {
    policy: &'a Policy,
    resolution: Resolution,
    marks: Vec<Mark>,
    list: ListHeader,
    /// The list header's entries, left to right: the rightmost [`MAX_CHAIN`].
    chain: Vec<Entry<'a>>,
    /// Whether entries were left out (more than [`MAX_CHAIN`], or more header lines
    /// than trueip reads).
    chain_cut: bool,
    /// The private endpoint, when the PROXY header that named it was believed.
    private_link: Option<PrivateLink>,
}

impl<'a> Decision<'a> {
    /// Resolves with `policy` and records the evidence.
    pub fn new<H: Headers + ?Sized>(policy: &'a Policy, conn: &Connection, headers: &'a H) -> Self {
        Decision::from_marks(policy, conn, headers, policy.explain_marks(conn, headers))
    }

    /// The evidence of a decision already made, `(resolution, marks)`.
    fn from_marks<H: Headers + ?Sized>(
        policy: &'a Policy,
        conn: &Connection,
        headers: &'a H,
        (resolution, marks): (Resolution, Vec<Mark>),
    ) -> Self {
        let list = match resolution.source {
            Source::List { header, .. } => header,
            _ => policy.list_header(),
        };
        let lines = Lines::read(headers, list.field_ref());
        let mut chain: Vec<Entry<'a>> = Rev::new(list, &lines).take(MAX_CHAIN + 1).collect();
        let chain_cut = chain.len() > MAX_CHAIN || lines.truncated;
        chain.truncate(MAX_CHAIN);
        chain.reverse();
        Decision {
            policy,
            resolution,
            marks,
            list,
            chain,
            chain_cut,
            private_link: conn.private_link_for(&resolution).cloned(),
        }
    }

    /// The decision itself.
    pub fn resolution(&self) -> &Resolution {
        &self.resolution
    }

    /// The private endpoint the connection came through, when the PROXY header that
    /// named it was believed.
    pub fn private_link(&self) -> Option<&PrivateLink> {
        self.private_link.as_ref()
    }

    /// The same evidence, in owned text.
    pub fn to_explanation(&self) -> Explanation {
        let (policy, resolution) = (self.policy, self.resolution);
        let mut chain: Vec<String> = self.chain.iter().map(Entry::to_string).collect();
        if self.chain_cut {
            chain.push(ELLIPSIS.to_string());
        }
        Explanation {
            client_ip: resolution.ip().map(|ip| ip.to_string()),
            client_port: resolution.client.node().and_then(|n| n.port),
            source: policy.describe_source(&resolution),
            peer: resolution.peer.to_string(),
            proxy_source: resolution.proxy_source.as_ref().map(Node::to_string),
            aws_vpce_id: self
                .private_link()
                .and_then(|l| l.aws_vpce_id.as_deref())
                .map(str::to_string),
            azure_link_id: self.private_link().and_then(|l| l.azure_link_id),
            chain_header: self.list.field_str().to_string(),
            chain,
            trusted_hops: resolution.trusted_hops,
            warnings: resolution.warnings.names().collect(),
            strategy: resolution.strategy.and_then(|i| policy.strategy_name(i)),
            rate_limit_key: resolution.rate_limit_key.map(|k| k.to_string()),
            steps: self.marks.iter().map(|mark| mark.to_step(policy)).collect(),
            resolution,
        }
    }
}

/// What stands for the entries a chain leaves out.
const ELLIPSIS: &str = "…";

impl fmt::Display for Explanation {
    /// Every value that may hold what a client or a file wrote (a header's text in a
    /// step, a chain entry, a PrivateLink id) is shown in terminal mode
    /// (`trueip::shown::terminal`): this text is read on a terminal (`trueip explain`) and in a
    /// browser or `curl` (the whoami page).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use crate::shown::terminal;
        match &self.client_ip {
            Some(ip) => writeln!(
                f,
                "client   {ip}{}",
                self.client_port.map(|p| format!(" port {p}")).unwrap_or_default()
            )?,
            None => writeln!(
                f,
                "client   unix: (a process on this host, over a Unix socket: no address)"
            )?,
        }
        writeln!(f, "source   {}", terminal(&self.source))?;
        writeln!(f, "peer     {}", terminal(&self.peer))?;
        if let Some(proxy) = &self.proxy_source {
            writeln!(f, "proxy    {} (PROXY protocol)", terminal(proxy))?;
        }
        if let Some(id) = &self.aws_vpce_id {
            writeln!(f, "link     AWS VPC endpoint {}", terminal(id))?;
        }
        if let Some(id) = self.azure_link_id {
            writeln!(f, "link     Azure Private Link {id}")?;
        }
        writeln!(f, "strategy {}", terminal(self.strategy.as_deref().unwrap_or("peer (default)")))?;
        writeln!(f, "hops     {} trusted", self.trusted_hops)?;
        if let Some((first, rest)) = self.chain.split_first() {
            write!(f, "chain    {}: {}", terminal(&self.chain_header), terminal(first))?;
            for entry in rest {
                write!(f, ", {}", terminal(entry))?;
            }
            writeln!(f)?;
        }
        writeln!(
            f,
            "warnings {}",
            if self.warnings.is_empty() { "none".to_string() } else { self.warnings.join(", ") }
        )?;
        writeln!(f)?;
        for (i, step) in self.steps.iter().enumerate() {
            writeln!(
                f,
                "{:>3}. {:<28} {:<28} {:<14} {}",
                i + 1,
                terminal(step.subject.as_ref()),
                terminal(&step.value),
                step.verdict,
                terminal(step.why.as_ref())
            )?;
        }
        Ok(())
    }
}
