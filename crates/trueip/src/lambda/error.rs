//! What can be wrong with an event: each error names the field, what AWS puts there, and
//! what to check.

use std::fmt;

use super::EventKind;

/// The longest piece of event text an error quotes: events come from the network, and an
/// error message is no place for a megabyte of it.
const QUOTE: usize = 64;

/// Why an event could not be resolved. Never a guess in its place: an event that is not
/// shaped as AWS documents it has no answer.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum EventError {
    /// The event is none of the kinds trueip reads; `why` says what was looked for.
    UnknownKind {
        /// What the event lacked.
        why: &'static str,
    },
    /// An event of a service trueip knows but does not read: no address in it is one the
    /// service vouches for, so nothing can stand in for the peer.
    Unsupported {
        /// The service and payload, as its docs name them: `VPC Lattice (payload v2)`.
        service: &'static str,
        /// Why no address in the event can be believed.
        why: &'static str,
    },
    /// A field this kind of event always carries is missing (or `null`).
    Missing {
        /// The kind the event was taken for.
        kind: EventKind,
        /// The field, as a path: `requestContext.http.sourceIp`.
        field: &'static str,
    },
    /// A field holds something AWS never puts there.
    Invalid {
        /// The kind the event was taken for.
        kind: EventKind,
        /// The field, as a path: `headers.x-forwarded-for`.
        field: String,
        /// What AWS puts there.
        expected: &'static str,
        /// What the event holds, shortened.
        found: String,
    },
    /// An ALB event's `X-Forwarded-For` appears under two spellings (`X-Forwarded-For` and
    /// `x-forwarded-for`): a JSON object keeps no order between them, so the last line,
    /// whose last element stands in for the peer, is not known. (In another kind such a
    /// header is not read, and the event is decided: see `Event::resolve`.)
    AmbiguousHeader {
        /// The kind the event was taken for.
        kind: EventKind,
        /// `headers` or `multiValueHeaders`.
        field: &'static str,
        /// The two spellings.
        names: (String, String),
    },
}

impl EventError {
    /// `found`: the offending text, quoted here; or, for a value that is not text, what
    /// it is (`a number`).
    pub(crate) fn invalid(
        kind: EventKind,
        field: impl Into<String>,
        expected: &'static str,
        found: Found<'_>,
    ) -> Self {
        EventError::Invalid {
            kind,
            field: field.into(),
            expected,
            found: match found {
                Found::Text(text) => quote(text),
                Found::Kind(what) => what.to_string(),
            },
        }
    }

    /// Who has to act, in a few words: the hint printed after the message.
    pub fn hint(&self) -> &'static str {
        match self {
            EventError::UnknownKind { .. } => {
                "pass the event exactly as the function received it: an ALB target event, an API Gateway REST or HTTP API proxy event, or a Function URL event"
            }
            EventError::Unsupported { .. } => {
                "VPC Lattice vouches for the caller's IAM identity and source VPC (requestContext.identity), not its address: authorise by those, or put an ALB or API Gateway in front of the function"
            }
            EventError::Missing { kind: EventKind::Alb, .. } => {
                "the ALB appends the address it saw to X-Forwarded-For unless the load balancer's routing.http.xff_header_processing.mode is `remove`, or `preserve` and the client sent none; set it to `append` (the default)"
            }
            EventError::Invalid { kind: EventKind::Alb, .. } => {
                "the ALB appends the address it saw unless routing.http.xff_header_processing.mode is `preserve` or `remove`; set it to `append` (the default)"
            }
            EventError::Invalid { .. } if self.is_test_invoke() => {
                "API Gateway's console test sends no real address: test with a deployed stage"
            }
            EventError::Missing { .. } | EventError::Invalid { .. } => {
                "pass the event exactly as the function received it; a hand-written event needs this field as AWS documents it"
            }
            EventError::AmbiguousHeader { .. } => {
                "AWS sends each header under one name: pass the event as the function received it"
            }
        }
    }

    fn is_test_invoke(&self) -> bool {
        matches!(self, EventError::Invalid { found, .. } if found.contains("test-invoke"))
    }
}

impl fmt::Display for EventError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EventError::UnknownKind { why } => write!(f, "unknown Lambda event: {why}")?,
            EventError::Unsupported { service, why } => {
                write!(f, "{service} event, which trueip does not read: {why}")?
            }
            EventError::Missing { kind, field } => write!(f, "{kind} event without {field}")?,
            EventError::Invalid { kind, field, expected, found } => {
                write!(f, "{kind} event: {} is {found}, not {expected}", path(field))?
            }
            EventError::AmbiguousHeader { kind, field, names: (a, b) } => write!(
                f,
                "{kind} event: {field} holds one header as both {} and {}, so the order of its lines is lost",
                quote(a),
                quote(b)
            )?,
        }
        write!(f, " (hint: {})", self.hint())
    }
}

impl std::error::Error for EventError {}

/// What an invalid field held.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Found<'a> {
    /// Text, quoted in the message.
    Text(&'a str),
    /// A value that is not text, by its kind: `a number`, `null`.
    Kind(&'static str),
}

/// A field's path, cut to twice [`QUOTE`] characters: it holds a header's name, which the
/// client chose (`headers.<name>`).
fn path(field: &str) -> std::borrow::Cow<'_, str> {
    match field.char_indices().nth(2 * QUOTE) {
        Some((end, _)) => format!("{}…", field.get(..end).unwrap_or_default()).into(),
        None => field.into(),
    }
}

/// `text` quoted, cut to [`QUOTE`] characters.
fn quote(text: &str) -> String {
    let mut chars = text.chars();
    let kept: String = chars.by_ref().take(QUOTE).collect();
    if chars.next().is_some() { format!("{:?}…", kept) } else { format!("{kept:?}") }
}
