//! The record of a decision, step by step, for `explain`, the whoami page and logs.

use std::borrow::Cow;
use std::fmt;

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
    pub fn as_str(self) -> &'static str {
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

impl Step {
    pub(crate) fn new(
        subject: impl Into<Cow<'static, str>>,
        value: impl fmt::Display,
        verdict: Verdict,
        why: impl Into<Cow<'static, str>>,
    ) -> Self {
        Step {
            subject: subject.into(),
            value: value.to_string(),
            verdict,
            why: why.into(),
        }
    }
}

/// Receives steps; the hot path uses [`NoTrace`], which compiles to nothing.
pub(crate) trait Tracer {
    /// Whether steps are kept. Loops that skip work nobody will see check this.
    const RECORDS: bool;

    fn step(&mut self, make: impl FnOnce() -> Step);
}

/// Records nothing and builds nothing: the closures are never called.
pub(crate) struct NoTrace;

impl Tracer for NoTrace {
    const RECORDS: bool = false;

    #[inline(always)]
    fn step(&mut self, _make: impl FnOnce() -> Step) {}
}

impl Tracer for Vec<Step> {
    const RECORDS: bool = true;

    fn step(&mut self, make: impl FnOnce() -> Step) {
        self.push(make());
    }
}
