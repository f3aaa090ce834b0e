//! Strategies: each decides who the client is from one kind of evidence.
//!
//! Each strategy is one type in its own file, implementing [`Decide`]; its doc comment
//! says what it returns, when it is safe and when it is not. Every one starts from the
//! (effective) peer and reads headers only when the peer is in its trust set: an
//! untrusted peer *is* the client.
//!
//! | strategy | type | reads |
//! | --- | --- | --- |
//! | `peer` | none: the policy runs no strategy | nothing |
//! | `rightmost-untrusted` | [`RightmostUntrusted`] | the list, through the walk |
//! | `rightmost` | [`Rightmost`] | the list, through the walk |
//! | `hops:N` | [`Hops`] | the list, through the walk |
//! | `header:NAME`, vendor presets | [`Single`] | one header; the list for its writer |
//! | `leftmost` | [`Leftmost`] | the list's first element |
//!
//! The list strategies share one walk ([`walk::walk`]) and differ only in where it stops
//! ([`walk::Stop`]). The names are the public spelling used by `--strategy`, the TOML
//! config and `Display`; [`StrategySpec::TABLE`] is the one table they come from.

mod header;
mod hops;
mod leftmost;
mod rightmost;
mod rightmost_untrusted;
mod spec;
pub(crate) mod walk;

use std::fmt;
use std::str::FromStr;

use crate::error::ConfigError;
use crate::headers::Headers;
use crate::resolution::{ListHeader, Source, Warnings};
use crate::trace::Tracer;

pub(crate) use crate::list::Client;
pub(crate) use header::{Carrier, Single};
pub(crate) use hops::Hops;
pub(crate) use leftmost::Leftmost;
pub(crate) use rightmost::Rightmost;
pub(crate) use rightmost_untrusted::RightmostUntrusted;
pub(crate) use spec::{HOPS, bad_hops};
pub use spec::{Preset, StrategyDoc, StrategySpec};

/// What every strategy does: decide, from a request's headers, who the client is.
pub(crate) trait Decide {
    /// The client, or `None` when this strategy has nothing to say (the next in the
    /// chain decides). `list`: the list header a list strategy reads; for a header
    /// strategy, the one in which the proxies before the app record the hop before them.
    fn decide<'h, H: Headers + ?Sized, T: Tracer<'h>>(
        &self,
        headers: &'h H,
        list: ListHeader,
        ctx: &mut Ctx<'_, '_, T>,
    ) -> Option<Found>;

    /// Whether `ip` may hand this strategy its evidence: a hop it trusts, or a relay in
    /// front of a header's writer.
    fn trusts(&self, peer: crate::addr::Peer) -> bool;
}

/// What "every entry is trusted" resolves to. There is no agreed answer among
/// proxies, so it is a named choice.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum AllTrusted {
    /// The leftmost entry (nginx `real_ip_recursive on`). The default: every entry was
    /// written by a trusted hop, and the leftmost is the farthest one we can vouch for.
    #[default]
    Leftmost,
    /// The peer (Caddy's strict mode): refuse to go past the first hop without an untrusted entry.
    Peer,
    /// No answer from this strategy (realclientip-go): the next strategy in the chain
    /// decides, and with none left, the peer stands.
    Fail,
}

impl FromStr for AllTrusted {
    type Err = ConfigError;
    fn from_str(text: &str) -> Result<Self, ConfigError> {
        match text.to_ascii_lowercase().as_str() {
            "leftmost" => Ok(AllTrusted::Leftmost),
            "peer" => Ok(AllTrusted::Peer),
            "fail" => Ok(AllTrusted::Fail),
            _ => Err(ConfigError::new(format!("unknown all_trusted choice \"{text}\""))
                .hint("use leftmost, peer or fail")),
        }
    }
}

impl fmt::Display for AllTrusted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AllTrusted::Leftmost => "leftmost",
            AllTrusted::Peer => "peer",
            AllTrusted::Fail => "fail",
        })
    }
}

/// A strategy ready to run: what decides, what it reads, and its name.
#[derive(Clone, Debug)]
pub(crate) struct Strategy {
    pub(crate) kind: Kind,
    /// The list header it reads (or, for a header strategy, the one its relays record in).
    pub(crate) list: ListHeader,
    /// The spec it was built from, as text, made once: explanations print it on every request.
    pub(crate) name: Box<str>,
}

/// Every strategy, dispatched statically: the per-request path stays inlined.
#[derive(Clone, Debug)]
pub(crate) enum Kind {
    RightmostUntrusted(RightmostUntrusted),
    Rightmost(Rightmost),
    Hops(Hops),
    Header(Single),
    Leftmost(Leftmost),
}

impl Kind {
    /// Every strategy but `rightmost-untrusted` (the default, and the usual one), out of
    /// line: inlined, their code sat between the lines of the usual path, which then ran
    /// through more lines of code than it needs.
    #[inline(never)]
    fn decide_other<'h, H: Headers + ?Sized, T: Tracer<'h>>(
        &self,
        headers: &'h H,
        list: ListHeader,
        ctx: &mut Ctx<'_, '_, T>,
    ) -> Option<Found> {
        match self {
            Kind::RightmostUntrusted(s) => s.decide(headers, list, ctx),
            Kind::Rightmost(s) => s.decide(headers, list, ctx),
            Kind::Hops(s) => s.decide(headers, list, ctx),
            Kind::Header(s) => s.decide(headers, list, ctx),
            Kind::Leftmost(s) => s.decide(headers, list, ctx),
        }
    }
}

impl Decide for Kind {
    #[inline(always)]
    fn decide<'h, H: Headers + ?Sized, T: Tracer<'h>>(
        &self,
        headers: &'h H,
        list: ListHeader,
        ctx: &mut Ctx<'_, '_, T>,
    ) -> Option<Found> {
        match self {
            Kind::RightmostUntrusted(s) => s.decide(headers, list, ctx),
            _ => self.decide_other(headers, list, ctx),
        }
    }

    fn trusts(&self, ip: crate::addr::Peer) -> bool {
        match self {
            Kind::RightmostUntrusted(s) => s.trusts(ip),
            Kind::Rightmost(s) => s.trusts(ip),
            Kind::Hops(s) => s.trusts(ip),
            Kind::Header(s) => s.trusts(ip),
            Kind::Leftmost(s) => s.trusts(ip),
        }
    }
}

/// A strategy's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Found {
    pub(crate) client: Client,
    pub(crate) source: Source,
    pub(crate) trusted_hops: u16,
}

/// What every strategy gets to work with.
pub(crate) struct Ctx<'w, 't, T> {
    /// The effective peer (after the PROXY protocol), its source and the hops it already counts.
    pub(crate) peer: &'w Found,
    pub(crate) all_trusted: AllTrusted,
    pub(crate) warnings: &'w mut Warnings,
    pub(crate) trace: &'t mut T,
    /// Whether the other list header (Forwarded for an X-Forwarded-For walk, and the
    /// reverse) is present, when the walk learned it while reading its own.
    pub(crate) other_list: Option<bool>,
}

impl Strategy {
    #[inline(always)]
    pub(crate) fn run<'h, H: Headers + ?Sized, T: Tracer<'h>>(
        &self,
        headers: &'h H,
        ctx: &mut Ctx<'_, '_, T>,
    ) -> Option<Found> {
        self.kind.decide(headers, self.list, ctx)
    }

    /// Runs the strategy over `list` instead of its own (used to check X-Forwarded-For
    /// and Forwarded against each other without a copy).
    #[inline(always)]
    pub(crate) fn run_on<'h, H: Headers + ?Sized, T: Tracer<'h>>(
        &self,
        headers: &'h H,
        list: ListHeader,
        ctx: &mut Ctx<'_, '_, T>,
    ) -> Option<Found> {
        self.kind.decide(headers, list, ctx)
    }

    /// Whether `ip` may hand this strategy its evidence.
    pub(crate) fn trusts(&self, ip: crate::addr::Peer) -> bool {
        self.kind.trusts(ip)
    }

    /// The list header this strategy reads, if it reads one.
    pub(crate) fn list(&self) -> Option<ListHeader> {
        match self.kind {
            Kind::Header(..) => None,
            _ => Some(self.list),
        }
    }
}
