//! One element of a forwarding list, as classified before any trust decision.

use std::fmt;

use crate::addr::{AddrError, Node};

/// An element of X-Forwarded-For or the `for=` of a `Forwarded` element.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entry<'a> {
    /// An address (and port, if written).
    Addr(Node),
    /// `unknown`: the hop did not know, or would not say.
    Unknown,
    /// An obfuscated identifier such as `_hidden` (RFC 7239 §6.3).
    Obfuscated(&'a [u8]),
    /// A `Forwarded` element without a `for=` parameter.
    Absent,
    /// Text that is none of the above.
    Malformed {
        /// The offending text.
        text: &'a [u8],
        /// What is wrong with it.
        why: Malformation,
    },
}

impl Entry<'_> {
    /// The address, if this entry is one.
    pub fn node(&self) -> Option<Node> {
        match self {
            Entry::Addr(node) => Some(*node),
            _ => None,
        }
    }
}

impl fmt::Display for Entry<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Entry::Addr(node) => fmt::Display::fmt(node, f),
            Entry::Unknown => f.write_str("unknown"),
            Entry::Obfuscated(text) => f.write_str(&String::from_utf8_lossy(text)),
            Entry::Absent => f.write_str("(no for=)"),
            Entry::Malformed { text, .. } => write!(f, "{:?}", String::from_utf8_lossy(text)),
        }
    }
}

/// Why an element is malformed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Malformation {
    /// The address text did not parse.
    Addr(AddrError),
    /// A quoted string that never closes.
    UnterminatedQuote,
    /// `Forwarded` syntax: not `name=value` pairs separated by `;`.
    Syntax,
    /// A `Forwarded` parameter given twice in one element.
    DuplicateParameter,
    /// A `for=`/`by=` value that is not a node (RFC 7239 §6).
    BadNode,
}

impl From<AddrError> for Malformation {
    fn from(e: AddrError) -> Self {
        Malformation::Addr(e)
    }
}

impl fmt::Display for Malformation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Malformation::Addr(e) => write!(f, "{e}"),
            Malformation::UnterminatedQuote => f.write_str("unterminated quoted string"),
            Malformation::Syntax => f.write_str("not a list of name=value pairs"),
            Malformation::DuplicateParameter => f.write_str("parameter given twice"),
            Malformation::BadNode => f.write_str("not a node (IPv6 must be quoted and bracketed)"),
        }
    }
}
