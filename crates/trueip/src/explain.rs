//! One decision, in full: what `trueip explain`, the whoami page and debug logs show.

use std::borrow::Cow;
use std::fmt;

use crate::entry::Entry;
use crate::headers::{Headers, Lines};
use crate::link::PrivateLink;
use crate::list::Rev;
use crate::policy::{Connection, Policy};
use crate::resolution::{ListHeader, Resolution, Source};
use crate::text::{self, ip_string, node_string};
use crate::trace::{Mark, Recorder, Step, StrategyNames, Verdict, list_name};

/// How many chain entries an explanation lists; the rest are summarised.
const MAX_CHAIN: usize = 256;

/// A resolution with its evidence, in owned, printable form.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Explanation {
    /// The client address.
    pub client_ip: String,
    /// The client port, when the source carried one.
    pub client_port: Option<u16>,
    /// Where it came from: `peer`, `proxy-protocol`, `x-forwarded-for[-2]`, `x-real-ip`.
    pub source: String,
    /// The TCP peer.
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
    /// The rate-limit key.
    pub rate_limit_key: String,
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
}

/// A decision and its evidence, borrowed from the policy and the request: what an
/// [`Explanation`] holds, before any of it becomes owned text.
///
/// For callers that print a decision per request (the whoami page):
/// [`write_json`](Self::write_json) writes the bytes `serde_json::to_writer_pretty`
/// writes for the [`Explanation`], with two allocations in all (the steps and the
/// chain) where the `Explanation` makes a `String` per address and step.
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
        let mut recorder = Recorder::new();
        let resolution = policy.record(conn, headers, &mut recorder);
        let list = match resolution.source {
            Source::List { header, .. } => header,
            _ => policy.list_header(),
        };
        // The entries the walk read are taken as it parsed them, from the lines it read;
        // only those left of where it stopped are parsed here.
        let mut lines = Lines::new();
        let mut chain = Vec::new();
        let mut rest = None;
        match recorder.lines {
            Some(few) if recorder.list == Some(list) => {
                lines = Lines::from_few(few);
                chain = std::mem::take(&mut recorder.entries);
                rest = recorder.rest;
            }
            _ => {
                // Read as the list walks read it: for the few lines of a usual request, a
                // scan that compares names is cheaper than the header map's hashed lookup.
                lines.fill_noting(headers, list.field_ref(), list.other().field_ref());
                chain.reserve(4);
            }
        }
        let marks = recorder.marks;
        // Parsed with the walk's parser: a plain dotted quad in the same pass that finds
        // its comma, everything else as `parse_element` classifies it (the same entries).
        let mut rev = Rev::resume(list, &lines, rest);
        while chain.len() <= MAX_CHAIN {
            match rev.next_hop() {
                Some(hop) => chain.push(hop.entry()),
                None => break,
            }
        }
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
        let mut chain: Vec<String> = self.chain.iter().map(entry_string).collect();
        if self.chain_cut {
            chain.push(ELLIPSIS.to_string());
        }
        Explanation {
            client_ip: ip_string(resolution.client.ip),
            client_port: resolution.client.port,
            source: policy.describe_source(&resolution),
            peer: node_string(&resolution.peer),
            proxy_source: resolution.proxy_source.as_ref().map(node_string),
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
            rate_limit_key: ip_string(resolution.rate_limit_key),
            steps: self.marks.iter().map(|mark| mark.to_step(policy)).collect(),
            resolution,
        }
    }

    /// Writes the [`Explanation`] as `serde_json::to_writer_pretty` would: the same
    /// object, the same bytes.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        self.write_json_with(out, |_| {});
    }

    /// [`write_json`](Self::write_json), with more members: `more` is called before the
    /// object closes and writes each of its members as `,\n  "name": value` (values
    /// indented as `serde_json`'s pretty printer indents them).
    pub fn write_json_with(&self, out: &mut Vec<u8>, more: impl FnOnce(&mut Vec<u8>)) {
        let (policy, r) = (self.policy, &self.resolution);
        // The layout is fixed, so the text between values (names, commas, newlines,
        // indentation, and the quotes around string values) is written as constant
        // pieces, as few and as long as the values allow.
        out.extend_from_slice(b"{\n  \"client_ip\": \"");
        text::put_ip(out, r.client.ip);
        match r.client.port {
            Some(port) => {
                out.extend_from_slice(b"\",\n  \"client_port\": ");
                text::put_u16(out, port);
                out.extend_from_slice(b",\n  \"source\": \"");
            }
            None => out.extend_from_slice(b"\",\n  \"client_port\": null,\n  \"source\": \""),
        }
        policy.source_text(r).put_json_body(out, policy);
        out.extend_from_slice(b"\",\n  \"peer\": \"");
        text::put_node(out, &r.peer);
        match r.proxy_source {
            Some(node) => {
                out.extend_from_slice(b"\",\n  \"proxy_source\": \"");
                text::put_node(out, &node);
                out.extend_from_slice(b"\"");
            }
            None => out.extend_from_slice(b"\",\n  \"proxy_source\": null"),
        }
        self.put_private_link(out);
        let (block, len) = chain_header_member(self.list);
        text::put_prefix(out, block, *len);
        self.put_chain(out);
        out.extend_from_slice(b",\n  \"trusted_hops\": ");
        text::put_u16(out, r.trusted_hops);
        if r.warnings.is_empty() {
            out.extend_from_slice(b",\n  \"warnings\": [],\n  \"strategy\": ");
        } else {
            out.extend_from_slice(b",\n  \"warnings\": ");
            text::put_json_array(out, 1, r.warnings.names(), |out, name| {
                text::put_json_literal(out, name);
            });
            out.extend_from_slice(b",\n  \"strategy\": ");
        }
        match r.strategy.and_then(|i| policy.strategy_text(i)) {
            Some(name) => {
                out.push(b'"');
                text::put_name(out, name);
                out.extend_from_slice(b"\",\n  \"rate_limit_key\": \"");
            }
            None => out.extend_from_slice(b"null,\n  \"rate_limit_key\": \""),
        }
        text::put_ip(out, r.rate_limit_key);
        out.extend_from_slice(b"\",\n  \"steps\": ");
        self.put_steps(out);
        more(out);
        out.extend_from_slice(b"\n}");
    }

    /// The `aws_vpce_id` and `azure_link_id` members, after `proxy_source`.
    fn put_private_link(&self, out: &mut Vec<u8>) {
        let link = self.private_link();
        match link.and_then(|l| l.aws_vpce_id.as_deref()) {
            Some(id) => {
                out.extend_from_slice(b",\n  \"aws_vpce_id\": \"");
                text::put_escaped(out, id);
                out.push(b'"');
            }
            None => out.extend_from_slice(b",\n  \"aws_vpce_id\": null"),
        }
        out.extend_from_slice(b",\n  \"azure_link_id\": ");
        match link.and_then(|l| l.azure_link_id) {
            Some(id) => text::put_decimal(out, u64::from(id)),
            None => out.extend_from_slice(b"null"),
        }
    }

    /// The `chain` array's value.
    fn put_chain(&self, out: &mut Vec<u8>) {
        if self.chain.is_empty() && !self.chain_cut {
            out.extend_from_slice(b"[]");
            return;
        }
        let mut open: &[u8; 7] = b"[\n    \"";
        for entry in &self.chain {
            out.extend_from_slice(open);
            open = b",\n    \"";
            match entry {
                Entry::Addr(node) => text::put_node(out, node),
                other => text::put_escaped(out, &other.to_string()),
            }
            out.push(b'"');
        }
        if self.chain_cut {
            out.extend_from_slice(open);
            text::put_literal(out, ELLIPSIS);
            out.push(b'"');
        }
        out.extend_from_slice(b"\n  ]");
    }

    /// The `steps` array's value.
    fn put_steps(&self, out: &mut Vec<u8>) {
        let policy = self.policy;
        if self.marks.is_empty() {
            out.extend_from_slice(b"[]");
            return;
        }
        let mut open: &[u8; 26] = b"[\n    {\n      \"subject\": \"";
        for mark in &self.marks {
            out.extend_from_slice(open);
            open = b",\n    {\n      \"subject\": \"";
            mark.subject.put_json_body(out, policy);
            out.extend_from_slice(b"\",\n      \"value\": \"");
            mark.value.put_json_body(out, policy);
            let (block, len) = verdict_members(mark.verdict);
            text::put_prefix(out, block, *len);
            match &mark.why {
                Cow::Borrowed(why) => text::put_literal(out, why),
                Cow::Owned(why) => text::put_escaped(out, why),
            }
            out.extend_from_slice(b"\"\n    }");
        }
        out.extend_from_slice(b"\n  ]");
    }
}

/// The text from the end of a step's value to the start of its reason, with the verdict
/// in it: `",\n      "verdict": "client",\n      "why": "`. One per verdict, so that the
/// writer copies one piece of a fixed size instead of three.
fn verdict_members(verdict: Verdict) -> &'static ([u8; 64], usize) {
    const fn members(verdict: Verdict) -> ([u8; 64], usize) {
        text::joined(&[
            "\",\n      \"verdict\": \"",
            verdict.as_str(),
            "\",\n      \"why\": \"",
        ])
    }
    const START: ([u8; 64], usize) = members(Verdict::Start);
    const TRUSTED: ([u8; 64], usize) = members(Verdict::Trusted);
    const CLIENT: ([u8; 64], usize) = members(Verdict::Client);
    const STOP: ([u8; 64], usize) = members(Verdict::Stop);
    const IGNORED: ([u8; 64], usize) = members(Verdict::Ignored);
    const NOT_APPLICABLE: ([u8; 64], usize) = members(Verdict::NotApplicable);
    match verdict {
        Verdict::Start => &START,
        Verdict::Trusted => &TRUSTED,
        Verdict::Client => &CLIENT,
        Verdict::Stop => &STOP,
        Verdict::Ignored => &IGNORED,
        Verdict::NotApplicable => &NOT_APPLICABLE,
    }
}

/// The text from the end of `azure_link_id` to the start of the chain's array, with the
/// header's name in it: `,\n  "chain_header": "forwarded",\n  "chain": `.
fn chain_header_member(list: ListHeader) -> &'static ([u8; 64], usize) {
    const fn member(name: &str) -> ([u8; 64], usize) {
        text::joined(&[",\n  \"chain_header\": \"", name, "\",\n  \"chain\": "])
    }
    const XFF: ([u8; 64], usize) = member(list_name(ListHeader::XForwardedFor));
    const FORWARDED: ([u8; 64], usize) = member(list_name(ListHeader::Forwarded));
    match list {
        ListHeader::XForwardedFor => &XFF,
        ListHeader::Forwarded => &FORWARDED,
    }
}

/// What stands for the entries a chain leaves out.
const ELLIPSIS: &str = "…";

fn entry_string(entry: &Entry<'_>) -> String {
    match entry {
        Entry::Addr(node) => node_string(node),
        other => other.to_string(),
    }
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "client   {}{}",
            self.client_ip,
            self.client_port
                .map(|p| format!(" port {p}"))
                .unwrap_or_default()
        )?;
        writeln!(f, "source   {}", self.source)?;
        writeln!(f, "peer     {}", self.peer)?;
        if let Some(proxy) = &self.proxy_source {
            writeln!(f, "proxy    {proxy} (PROXY protocol)")?;
        }
        // The ids came off the wire: escaped, so that a terminal shows them and does not
        // obey them.
        if let Some(id) = &self.aws_vpce_id {
            writeln!(f, "link     AWS VPC endpoint {}", id.escape_debug())?;
        }
        if let Some(id) = self.azure_link_id {
            writeln!(f, "link     Azure Private Link {id}")?;
        }
        writeln!(
            f,
            "strategy {}",
            self.strategy.as_deref().unwrap_or("peer (default)")
        )?;
        writeln!(f, "hops     {} trusted", self.trusted_hops)?;
        if !self.chain.is_empty() {
            writeln!(
                f,
                "chain    {}: {}",
                self.chain_header,
                self.chain.join(", ")
            )?;
        }
        writeln!(
            f,
            "warnings {}",
            if self.warnings.is_empty() {
                "none".to_string()
            } else {
                self.warnings.join(", ")
            }
        )?;
        writeln!(f)?;
        for (i, step) in self.steps.iter().enumerate() {
            writeln!(
                f,
                "{:>3}. {:<28} {:<28} {:<14} {}",
                i + 1,
                step.subject,
                step.value,
                step.verdict,
                step.why
            )?;
        }
        Ok(())
    }
}
