//! A record of forgeries: the last `[admin] forgeries` requests that tried to forge a
//! client address, for `/.trueip/forgeries` on the admin listener.
//!
//! A request is a forgery when its decision carries one of the core's
//! [`Warnings::FORGERY`](trueip::Warnings::FORGERY) flags, when the header rules stripped
//! a client-IP line from it (`stripped_header`), or when a peer not allowed to send PROXY
//! headers connected to a PROXY listener (the gateway refuses it before reading a byte).
//!
//! Cost: the request path asks [`is_forgery`] — two integer tests. A forgery is counted
//! (one atomic add) and, while its worker has not yet added [`PER_SECOND`] entries this
//! second ([`Forgeries::admit`]: a test of the request's own clock reading), builds an
//! [`Entry`] (escaping, the wall clock) and takes the one lock, for a push and perhaps a
//! pop. An attacker sends a forgery with every request: past that share, each costs
//! the count alone, so a flood neither pays for entries nobody can read before the next
//! second's replace them nor contends for the lock across workers. Entries are built
//! outside the lock; clean requests never touch it.
//!
//! What an entry keeps of the client's text is escaped (every byte outside printable
//! ASCII, and the backslash, as `\xNN` / `\\`) and cut to a fixed size, so the record
//! has a hard memory bound and a reader's terminal sees no control characters even
//! after the JSON is decoded. The origin secret's value is never kept.

use std::cell::Cell;
use std::collections::VecDeque;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use trueip::Warnings;
use trueip::addr::Peer;

use trueip::shown;

/// How many entries are kept when `[admin] forgeries` is not set.
pub(crate) const DEFAULT_KEPT: usize = 100;
/// The most `[admin] forgeries` may ask for: with [`ENTRY_MAX_BYTES`], about 13 MB.
pub(crate) const MAX_KEPT: usize = 4096;
/// The longest escaped text kept of one header value.
pub(crate) const VALUE_MAX: usize = 256;
/// The longest escaped text kept of a header name (a client may write underscore
/// spellings of any length).
pub(crate) const NAME_MAX: usize = 64;
/// The longest escaped text kept of the request path.
pub(crate) const PATH_MAX: usize = 256;
/// The most header lines kept per entry (the rest are counted).
pub(crate) const LINES_MAX: usize = 8;
/// An upper bound of one entry's kept text: path, method, names and values.
pub(crate) const ENTRY_MAX_BYTES: usize = PATH_MAX + 16 + LINES_MAX * (NAME_MAX + VALUE_MAX);

/// The most entries one worker adds to the record in one second: under a flood of
/// forgeries (one with every request of an attack), the record keeps each second's first
/// ones in each worker, and `seen` counts them all. More than any test or honest
/// misconfiguration sends in a second, and few enough that their entries cost a worker
/// nothing to speak of.
pub(crate) const PER_SECOND: usize = 128;

/// The rule name of a client-IP header line the header rules removed.
pub(crate) const STRIPPED: &str = "stripped_header";

/// Whether a request decided with `warnings`, of which the header rules stripped
/// `stripped` lines, is recorded. Allocates nothing, takes no lock.
#[inline]
pub(crate) fn is_forgery(warnings: Warnings, stripped: u64) -> bool {
    stripped > 0 || !warnings.forgeries().is_empty()
}

/// Where a piece of an entry's text is in [`Entry::text`].
pub(crate) type Span = std::ops::Range<usize>;

/// One header line of a recorded request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Line {
    /// The name as received, escaped (in the entry's text).
    pub(crate) name: Span,
    /// The value, escaped and cut to [`VALUE_MAX`] (in the entry's text).
    pub(crate) value: Span,
    /// The value's length as received, in bytes.
    pub(crate) bytes: usize,
    /// Whether `value` was cut.
    pub(crate) truncated: bool,
    /// Whether the header rules removed the line before forwarding.
    pub(crate) stripped: bool,
}

/// One recorded forgery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    /// When, in milliseconds since 1970.
    pub(crate) unix_ms: u64,
    /// The peer: a TCP address, or a Unix-socket peer.
    pub(crate) peer: Peer,
    /// The source of a believed PROXY header.
    pub(crate) proxy_source: Option<SocketAddr>,
    /// `listen[i]`.
    pub(crate) listener: usize,
    /// The client the gateway decided on (`None`: refused before any request).
    pub(crate) client: Option<IpAddr>,
    /// The rules that caught it: forgery warnings, then [`STRIPPED`].
    pub(crate) rules: Vec<&'static str>,
    /// Every warning of the decision.
    pub(crate) warnings: Warnings,
    /// Every piece of the client's text kept, escaped, one after another: one
    /// allocation for all of them (a string for each was four allocations for a request
    /// with one client-IP line, each held until the entry leaves the record).
    pub(crate) text: String,
    /// The request method (`None`: refused before any request), in `text`.
    pub(crate) method: Option<Span>,
    /// The path (no query), escaped and cut to [`PATH_MAX`], in `text`.
    pub(crate) path: Option<Span>,
    /// The client-IP header lines it carried (at most [`LINES_MAX`]).
    pub(crate) lines: Vec<Line>,
    /// Client-IP lines left out beyond [`LINES_MAX`].
    pub(crate) lines_omitted: usize,
}

/// A request that tried to forge an address, as the codecs describe it.
pub(crate) struct Request<'a> {
    pub(crate) peer: Peer,
    pub(crate) proxy_source: Option<SocketAddr>,
    pub(crate) listener: usize,
    pub(crate) resolution: &'a trueip::Resolution,
    pub(crate) method: &'a str,
    pub(crate) path: &'a str,
    /// How many lines the header rules stripped.
    pub(crate) stripped: u64,
}

std::thread_local! {
    /// This worker's share of the record ([`PER_SECOND`]): when its current second began
    /// (a request's clock reading), and how many entries it has admitted since.
    static SHARE: Cell<(Option<Instant>, usize)> = const { Cell::new((None, 0)) };

    /// An entry the record let go of on this thread (each worker is one), whose storage
    /// the next entry built here reuses: once the record is full, every forgery pushes
    /// the oldest entry out, and its text, lines and rules then cost no allocation. Those
    /// allocations, held for `[admin] forgeries` requests and freed, were among the
    /// allocator's slowest (callgrind, `PROTOCOL=proxy-v2 bash bench/instructions.sh`,
    /// whose every request is a forgery). At most one entry per thread.
    static SPARE: Cell<Option<Entry>> = const { Cell::new(None) };
}

impl Entry {
    /// The entry for `req`, its header lines still to add ([`line`](Self::line)).
    pub(crate) fn new(req: &Request<'_>) -> Entry {
        let mut entry = SPARE
            .try_with(Cell::take)
            .ok()
            .flatten()
            .unwrap_or_else(|| Entry::proxy_refused(Peer::Unix, 0));
        entry.rules.clear();
        entry.rules.extend(req.resolution.warnings.forgeries().names());
        if req.stripped > 0 {
            entry.rules.push(STRIPPED);
        }
        let mut text = std::mem::take(&mut entry.text);
        text.clear();
        // Room for the usual client-IP line too.
        text.reserve(req.method.len().min(16) + req.path.len().min(PATH_MAX) + 96);
        let method = Some(push_escaped(&mut text, req.method.as_bytes(), 16).0);
        let path = Some(push_escaped(&mut text, req.path.as_bytes(), PATH_MAX).0);
        let mut lines = std::mem::take(&mut entry.lines);
        lines.clear();
        Entry {
            unix_ms: now_ms(),
            peer: req.peer,
            proxy_source: req.proxy_source,
            listener: req.listener,
            client: req.resolution.client.ip(),
            rules: entry.rules,
            warnings: req.resolution.warnings,
            text,
            method,
            path,
            lines,
            lines_omitted: 0,
        }
    }

    /// The text of `span` (empty for a span this entry's text does not have).
    fn piece(&self, span: &Span) -> &str {
        self.text.get(span.clone()).unwrap_or_default()
    }

    /// Adds a client-IP header line the request carried (counted only, past
    /// [`LINES_MAX`]); `stripped` if the header rules removed it.
    pub(crate) fn line(&mut self, name: &str, value: &[u8], stripped: bool) {
        if self.lines.len() >= LINES_MAX {
            self.lines_omitted = self.lines_omitted.saturating_add(1);
            return;
        }
        let (name, _) = push_escaped(&mut self.text, name.as_bytes(), NAME_MAX);
        let (value_span, truncated) = push_escaped(&mut self.text, value, VALUE_MAX);
        self.lines.push(Line { name, value: value_span, bytes: value.len(), truncated, stripped });
    }

    /// A connection to PROXY listener `listener` from `peer`, which may not send PROXY
    /// headers: refused before anything was read.
    pub(crate) fn proxy_refused(peer: Peer, listener: usize) -> Entry {
        Entry {
            unix_ms: now_ms(),
            peer,
            proxy_source: None,
            listener,
            client: None,
            rules: vec!["proxy_protocol_from_untrusted_peer"],
            warnings: Warnings::UNTRUSTED_PROXY_PROTOCOL,
            text: String::new(),
            method: None,
            path: None,
            lines: Vec::new(),
            lines_omitted: 0,
        }
    }

    fn json(&self) -> serde_json::Value {
        let secs = self.unix_ms / 1000;
        let lines: Vec<_> = self
            .lines
            .iter()
            .map(|l| {
                serde_json::json!({
                    "name": self.piece(&l.name),
                    "value": self.piece(&l.value),
                    "bytes": l.bytes,
                    "truncated": l.truncated,
                    "stripped": l.stripped,
                })
            })
            .collect();
        serde_json::json!({
            "time": format!(
                "{}.{:03}Z",
                crate::ranges::cache::rfc3339(secs).trim_end_matches('Z'),
                self.unix_ms % 1000
            ),
            "unix_ms": self.unix_ms,
            "peer": self.peer.to_string(),
            "proxy_source": self.proxy_source.map(|s| s.to_string()),
            "listener": self.listener,
            "client": self.client.map(|c| c.to_string()),
            "rules": self.rules,
            "warnings": self.warnings.names().collect::<Vec<_>>(),
            "method": self.method.as_ref().map(|m| self.piece(m)),
            "path": self.path.as_ref().map(|p| self.piece(p)),
            "headers": lines,
            "headers_omitted": self.lines_omitted,
        })
    }
}

/// Appends `bytes` in log mode, at most `max` characters, to `text`: where it is, and
/// whether it was cut.
fn push_escaped(text: &mut String, bytes: &[u8], max: usize) -> (Span, bool) {
    let start = text.len();
    let shown = shown::Log::at_most(bytes, max);
    let _ = write!(text, "{shown}");
    (start..text.len(), shown.is_cut())
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The record, shared by every worker and kept across reloads.
#[derive(Debug, Default)]
pub(crate) struct Forgeries {
    /// Oldest first.
    ring: Mutex<VecDeque<Entry>>,
    /// Every forgery seen since the start, kept or not.
    seen: AtomicU64,
}

impl Forgeries {
    /// Counts a forgery seen at `now` (the request's own clock reading: no second one),
    /// and says whether its entry is to be built and [`record`](Self::record)ed: yes for
    /// the first [`PER_SECOND`] of each second in this worker. Asked once per forgery, by
    /// every path that sees one.
    #[inline]
    pub(crate) fn admit(&self, now: Instant) -> bool {
        self.seen.fetch_add(1, Ordering::Relaxed);
        SHARE
            .try_with(|share| {
                let (since, admitted) = match share.get() {
                    (Some(since), admitted)
                        if now.saturating_duration_since(since) < Duration::from_secs(1) =>
                    {
                        (since, admitted)
                    }
                    _ => (now, 0),
                };
                let admit = admitted < PER_SECOND;
                share.set((Some(since), admitted + usize::from(admit)));
                admit
            })
            .unwrap_or(false)
    }

    /// Keeps `entry`, which [`admit`](Self::admit) let in, and at most `keep` entries in
    /// all (the current `[admin] forgeries`: a reload that lowers it drops the oldest at
    /// the next forgery).
    pub(crate) fn record(&self, entry: Entry, keep: usize) {
        let keep = keep.min(MAX_KEPT);
        let mut out = None;
        {
            // A panic while the lock was held cannot leave the queue half-changed (push
            // and pop are whole), so a poisoned lock is still usable.
            let mut ring = self.ring.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if keep == 0 {
                ring.clear();
                return;
            }
            while ring.len() >= keep {
                out = ring.pop_front();
            }
            ring.push_back(entry);
        }
        // Outside the lock: what it frees (the spare before it) is freed unlocked too.
        if let Some(old) = out {
            let _ = SPARE.try_with(|spare| spare.set(Some(old)));
        }
    }

    /// `/forgeries` as JSON: at most `limit` entries, newest first, under `keep`.
    pub(crate) fn render(&self, limit: usize, keep: usize) -> Vec<u8> {
        let entries: Vec<serde_json::Value> = {
            let ring = self.ring.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            ring.iter().rev().take(limit.min(keep)).map(Entry::json).collect()
        };
        let mut body = serde_json::json!({
            "kept": keep,
            "seen": self.seen.load(Ordering::Relaxed),
            "entries": entries,
        })
        .to_string();
        body.push('\n');
        body.into_bytes()
    }
}

/// Reads `?limit=N` of a `/forgeries` request (the only argument it takes): `Ok(None)`
/// without one, an error naming what is wrong (with the client's text escaped) else.
pub(crate) fn limit(query: Option<&str>) -> Result<Option<usize>, String> {
    let Some(query) = query.filter(|q| !q.is_empty()) else {
        return Ok(None);
    };
    let mut found = None;
    for pair in query.split('&').take(16) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if key != "limit" {
            return Err(format!(
                "unknown argument \"{}\": only limit=N (1 to {MAX_KEPT}) is taken",
                shown::Log::at_most(key.as_bytes(), 32)
            ));
        }
        if found.is_some() {
            return Err("limit given twice".to_owned());
        }
        match value.parse::<usize>() {
            Ok(n) if (1..=MAX_KEPT).contains(&n) => found = Some(n),
            _ => {
                return Err(format!(
                    "limit must be a whole number from 1 to {MAX_KEPT}, not \"{}\"",
                    shown::Log::at_most(value.as_bytes(), 32)
                ));
            }
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_keeps_printable_ascii_and_cuts_whole_escapes() {
        let escape = |bytes: &[u8], max| {
            let shown = shown::Log::at_most(bytes, max);
            (shown.to_string(), shown.is_cut())
        };
        assert_eq!(escape(b"1.2.3.4, 5.6.7.8", 64), ("1.2.3.4, 5.6.7.8".into(), false));
        assert_eq!(
            escape(b"a\x1b[31m\\\r\n\xff", 64),
            ("a\\x1b[31m\\\\\\x0d\\x0a\\xff".into(), false)
        );
        // "ab" then `\x00` would need 6: cut before it, never inside.
        assert_eq!(escape(b"ab\x00", 5), ("ab".into(), true));
        let (long, cut) = escape(&[b'7'; 10_240], VALUE_MAX);
        assert!(cut && long.len() == VALUE_MAX);
        let (controls, cut) = escape(&[0x07; 10_240], VALUE_MAX);
        assert!(cut && controls.len() <= VALUE_MAX && controls.len().is_multiple_of(4));
        assert!(!controls.bytes().any(|b| b.is_ascii_control()));
    }

    fn entry(n: u16) -> Entry {
        Entry::proxy_refused(Peer::from(SocketAddr::from(([192, 0, 2, 1], n))), 0)
    }

    #[test]
    fn the_ring_keeps_the_newest_and_never_more_than_asked() {
        let f = Forgeries::default();
        let now = Instant::now();
        for n in 0..10 {
            assert!(f.admit(now));
            f.record(entry(n), 3);
        }
        let json: serde_json::Value = serde_json::from_slice(&f.render(100, 3)).unwrap();
        let peers: Vec<_> = json["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["peer"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(peers, ["192.0.2.1:9", "192.0.2.1:8", "192.0.2.1:7"]);
        assert_eq!(json["seen"], 10);
        let one: serde_json::Value = serde_json::from_slice(&f.render(1, 3)).unwrap();
        assert_eq!(one["entries"].as_array().unwrap().len(), 1);
        // A reload down to one keeps one at the next forgery; zero keeps none.
        f.record(entry(10), 1);
        assert_eq!(f.ring.lock().unwrap().len(), 1);
        f.record(entry(11), 0);
        assert!(f.ring.lock().unwrap().is_empty());
        f.record(entry(12), MAX_KEPT + 10);
        assert_eq!(f.ring.lock().unwrap().len(), 1);
    }

    /// A flood of forgeries builds at most [`PER_SECOND`] entries a second in a worker and
    /// counts every one; the next second has its share again. Each forgery built an
    /// entry before (escaping, the wall clock, the lock: about 2,400 instructions of
    /// `PROTOCOL=proxy-v2 bash bench/instructions.sh`, whose every request is one).
    #[test]
    fn a_flood_builds_its_share_of_entries_a_second_and_counts_them_all() {
        let f = Forgeries::default();
        let start = Instant::now() + Duration::from_secs(3600);
        let admitted = |at: Instant, n: usize| (0..n).filter(|_| f.admit(at)).count();
        assert_eq!(admitted(start, 1000), PER_SECOND);
        let later = start + Duration::from_millis(999);
        assert_eq!(admitted(later, 10), 0);
        assert_eq!(admitted(start + Duration::from_secs(1), 1000), PER_SECOND);
        // A reading from before the second began (a request that started earlier and
        // is noted later) counts in it.
        assert_eq!(admitted(start, 10), 0);
        assert_eq!(f.seen.load(Ordering::Relaxed), 2020);
        // Each worker has its own share.
        let other = std::thread::scope(|s| s.spawn(|| admitted(later, 10)).join().unwrap());
        assert_eq!(other, 10);
    }

    #[test]
    fn limit_arguments() {
        assert_eq!(limit(None), Ok(None));
        assert_eq!(limit(Some("")), Ok(None));
        assert_eq!(limit(Some("limit=5")), Ok(Some(5)));
        for bad in ["limit=0", "limit=-1", "limit=x", "limit=4097", "limit", "limit=1&limit=2"] {
            assert!(limit(Some(bad)).is_err(), "{bad}");
        }
        let err = limit(Some("l%1b=\x1b")).unwrap_err();
        assert!(!err.contains('\x1b'), "{err}");
        // Escaped once, in log mode: a `{:?}` around it doubled every `\`.
        assert!(limit(Some("limit=\x1b\\")).unwrap_err().ends_with(r#"not "\x1b\\""#));
    }

    #[test]
    fn an_entry_is_bounded_whatever_the_client_wrote() {
        let resolution = trueip::Policy::builder().build().unwrap().resolve(
            &trueip::Connection {
                peer: Peer::from(SocketAddr::from(([192, 0, 2, 9], 1))),
                proxy_source: None,
                private_link: Default::default(),
            },
            &http::HeaderMap::new(),
        );
        let big = vec![0x01u8; 10_240];
        let name = "x_".repeat(500);
        let req = Request {
            peer: Peer::from(SocketAddr::from(([192, 0, 2, 9], 1))),
            proxy_source: None,
            listener: 0,
            resolution: &resolution,
            method: "GET",
            path: &"/\x7f".repeat(5000),
            stripped: 20,
        };
        let mut e = Entry::new(&req);
        for _ in 0..20 {
            e.line(&name, &big, true);
        }
        assert_eq!(e.rules, [STRIPPED]);
        assert_eq!((e.lines.len(), e.lines_omitted), (LINES_MAX, 12));
        let text: usize = e.path.as_ref().unwrap().len()
            + e.lines.iter().map(|l| l.name.len() + l.value.len()).sum::<usize>();
        assert!(text <= ENTRY_MAX_BYTES, "{text}");
        assert!(e.lines.iter().all(|l| l.truncated && l.bytes == 10_240));
    }
}
