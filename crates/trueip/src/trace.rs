//! The record of a decision, step by step, for `explain`, the whoami page and logs.

use std::borrow::Cow;
use std::fmt;

use crate::addr::Node;
use crate::entry::Entry;
use crate::resolution::ListHeader;

/// Names a policy's strategies by their index in its fallback chain, for steps that
/// mention one. (A trait, so that the trace does not depend on the policy that records it.)
pub(crate) trait StrategyNames {
    /// The `index`-th strategy's name, as `--strategy` spells it.
    fn strategy_text(&self, index: u8) -> Option<&str>;
}

/// What a step concluded about the thing it looked at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "kebab-case"))]
pub enum Verdict {
    /// A strategy of the chain starts.
    Start,
    /// A trusted hop: its own forwarding data is believed, keep walking.
    Trusted,
    /// This is the client.
    Client,
    /// The walk stopped here without reading further (malformed, opaque, cap).
    Stop,
    /// Looked at and deliberately ignored (untrusted sender, spoofable input).
    Ignored,
    /// This strategy had nothing to say; the next one decides.
    NotApplicable,
}

impl Verdict {
    /// The verdict's name, as `Display` and the JSON output spell it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Verdict::Start => "start",
            Verdict::Trusted => "trusted",
            Verdict::Client => "client",
            Verdict::Stop => "stop",
            Verdict::Ignored => "ignored",
            Verdict::NotApplicable => "not-applicable",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One step of a decision.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Step {
    /// What was looked at: `peer`, `proxy-protocol`, `x-forwarded-for[-2]`, `x-real-ip`, `strategy`.
    pub subject: Cow<'static, str>,
    /// Its value as seen.
    pub value: String,
    /// The conclusion.
    pub verdict: Verdict,
    /// Why, in a few words. Borrowed (no allocation) when the words are fixed, as most are.
    pub why: Cow<'static, str>,
}

/// A step as a decision records it: its texts kept as what they were made from (an
/// address, a list index, a fixed phrase), printed only when someone reads them. Most
/// steps then cost no allocation and no formatting; see [`Decision`](crate::explain::Decision).
#[derive(Clone, Debug)]
pub(crate) struct Mark {
    pub(crate) subject: Text,
    pub(crate) value: Text,
    pub(crate) verdict: Verdict,
    pub(crate) why: Cow<'static, str>,
}

impl Mark {
    pub(crate) fn new(
        subject: impl Into<Text>,
        value: impl Into<Text>,
        verdict: Verdict,
        why: impl Into<Cow<'static, str>>,
    ) -> Self {
        Mark { subject: subject.into(), value: value.into(), verdict, why: why.into() }
    }

    /// The step, in owned text.
    pub(crate) fn to_step(&self, policy: &impl StrategyNames) -> Step {
        Step {
            subject: match &self.subject {
                Text::Static(text) => Cow::Borrowed(*text),
                other => Cow::Owned(other.to_string(policy)),
            },
            value: self.value.to_string(policy),
            verdict: self.verdict,
            why: self.why.clone(),
        }
    }
}

/// The text of a step's subject or value, not yet printed.
#[derive(Clone, Debug)]
pub(crate) enum Text {
    Static(&'static str),
    Owned(String),
    /// An address, printed as `Node`'s `Display` prints it.
    Node(Node),
    /// The `n`-th entry from the right of a list header: `x-forwarded-for[-2]`.
    Entry(ListHeader, u16),
    /// The name of the policy's `i`-th strategy (`rightmost-untrusted`, `hops:2`).
    Strategy(u8),
}

impl Text {
    pub(crate) fn to_string(&self, policy: &impl StrategyNames) -> String {
        match self {
            Text::Static(text) => (*text).to_owned(),
            Text::Owned(text) => text.clone(),
            Text::Node(node) => node.to_string(),
            Text::Entry(list, n) => format!("{}[-{n}]", list.field_str()),
            Text::Strategy(i) => policy.strategy_text(*i).unwrap_or_default().to_owned(),
        }
    }
}

impl From<&'static str> for Text {
    fn from(text: &'static str) -> Self {
        Text::Static(text)
    }
}

impl From<String> for Text {
    fn from(text: String) -> Self {
        Text::Owned(text)
    }
}

impl From<Cow<'static, str>> for Text {
    fn from(text: Cow<'static, str>) -> Self {
        match text {
            Cow::Borrowed(text) => Text::Static(text),
            Cow::Owned(text) => Text::Owned(text),
        }
    }
}

impl From<Node> for Text {
    fn from(node: Node) -> Self {
        Text::Node(node)
    }
}

impl From<crate::addr::Peer> for Text {
    fn from(peer: crate::addr::Peer) -> Self {
        match peer {
            crate::addr::Peer::Ip(node) => Text::Node(node),
            crate::addr::Peer::Unix => Text::Static("unix:"),
        }
    }
}

impl From<&Entry<'_>> for Text {
    fn from(entry: &Entry<'_>) -> Self {
        match entry {
            Entry::Addr(node) => Text::Node(*node),
            other => Text::Owned(other.to_string()),
        }
    }
}

impl From<Entry<'_>> for Text {
    fn from(entry: Entry<'_>) -> Self {
        Text::from(&entry)
    }
}

/// Receives steps; the hot path uses [`NoTrace`], which compiles to nothing.
///
/// `'h` is the borrow of the request's headers, which entries a walk read point into.
pub(crate) trait Tracer<'h> {
    /// Whether steps are kept. Loops that skip work nobody will see check this.
    const RECORDS: bool;

    fn step(&mut self, make: impl FnOnce() -> Mark);
}

/// Records nothing and builds nothing: the closures are never called.
pub(crate) struct NoTrace;

impl Tracer<'_> for NoTrace {
    const RECORDS: bool = false;

    #[inline(always)]
    fn step(&mut self, _make: impl FnOnce() -> Mark) {}
}

impl Tracer<'_> for Vec<Mark> {
    const RECORDS: bool = true;

    fn step(&mut self, make: impl FnOnce() -> Mark) {
        self.push(make());
    }
}
