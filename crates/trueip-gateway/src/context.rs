//! What serving a connection needs: the config snapshot its requests are served under
//! ([`State`]), what outlives reloads ([`Shared`]), and the connection itself
//! ([`ConnCtx`]: peer, listener, PROXY header, TLS).
//!
//! Everything a connection does before its first request (PROXY header, TLS) is decided
//! from the state current when it was accepted; each request loads the current state, so
//! a reload reaches keep-alive connections too.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use hyper::server::conn::{http1, http2};
use hyper_util::rt::TokioTimer;
use tokio::sync::{Semaphore, watch};
use tokio_rustls::TlsAcceptor;
use trueip::{ConfigError, Resolution};

use crate::config::{FileConfig, ListenerId, Mode, Settings};
use crate::forgeries::Forgeries;
use crate::io::Activity;
use crate::metrics::Metrics;
use crate::rules::{Hygiene, Serves};
use crate::upstream::{Private, Upstream};

/// The number of headers hyper accepts when no limit is set.
const HYPER_MAX_HEADERS: usize = 100;

/// Everything derived from one version of the config.
pub(crate) struct State {
    /// The checked config.
    pub(crate) settings: Settings,
    /// Header rules.
    pub(crate) hygiene: Hygiene,
    /// The upstream client; `None` serves the whoami page.
    pub(crate) upstream: Option<Upstream>,
    /// Per listener, in order.
    pub(crate) tls: Vec<Option<TlsAcceptor>>,
    /// HTTP/1.1 server settings.
    pub(crate) h1: http1::Builder,
    /// HTTP/2 server settings.
    pub(crate) h2: http2::Builder<crate::io::StreamExec>,
    /// The config file as read (before flags), which a range refresh rebuilds from;
    /// `None` for states built otherwise (tests).
    pub(crate) source: Option<Arc<FileConfig>>,
}

impl State {
    /// Builds everything a config describes (reads TLS files); nothing is bound yet.
    pub(crate) fn build(settings: Settings) -> Result<State, ConfigError> {
        let mut acceptors = Vec::new();
        for (i, l) in settings.listeners.iter().enumerate() {
            acceptors.push(
                l.tls
                    .as_ref()
                    .map(|files| {
                        crate::tls::acceptor(
                            files,
                            &format!("listen[{i}].tls"),
                            l.mode == Mode::Http,
                        )
                    })
                    .transpose()?,
            );
        }
        let limits = &settings.limits;
        let mut h1 = http1::Builder::new();
        h1.timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .max_buf_size(limits.max_header_bytes)
            .keep_alive(true);
        // hyper's own limit is 100 headers, parsed into an array on the stack; a limit
        // set explicitly (even to 100) makes it fill a vector of that size per request.
        if limits.max_headers != HYPER_MAX_HEADERS {
            h1.max_headers(limits.max_headers);
        }
        // Each stream's task is watched by the send timeout (a client may withhold
        // flow-control credit with its socket writable).
        let mut h2 = http2::Builder::new(crate::io::StreamExec::new(limits.send_timeout));
        h2.timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
            .max_concurrent_streams(256)
            .keep_alive_interval(Duration::from_secs(30))
            .keep_alive_timeout(Duration::from_secs(20));
        Ok(State {
            hygiene: Hygiene::new(settings.headers.clone()),
            upstream: settings
                .upstream
                .url
                .clone()
                .map(|target| Upstream::new(target, settings.upstream.clone(), limits.workers))
                .transpose()?,
            tls: acceptors,
            h1,
            h2,
            settings,
            source: None,
        })
    }
}

/// What every connection shares.
pub(crate) struct Shared {
    /// The current config; swapped whole on reload.
    pub(crate) state: ArcSwap<State>,
    /// Metrics, kept across reloads.
    pub(crate) metrics: Arc<Metrics>,
    /// The last requests that tried to forge an address, kept across reloads.
    pub(crate) forgeries: Forgeries,
    /// `true` once shutdown began, for those who wait for it.
    pub(crate) shutdown: watch::Sender<bool>,
    /// `true` once shutdown began, for those who ask on every request: a load, where the
    /// channel's value is behind a lock. Set by [`Shared::begin_shutdown`] only.
    stopping: AtomicBool,
    /// One permit per open connection (`limits.max_connections`).
    pub(crate) connections: Arc<Capacity>,
    /// Peers whose forwarding headers were ignored, for the misconfiguration hint.
    pub(crate) hints: crate::hint::Hints,
}

impl Shared {
    /// What a listener's connections share, with `max_connections` permits.
    pub(crate) fn new(state: Arc<State>, metrics: Arc<Metrics>, max_connections: usize) -> Self {
        let (shutdown, _) = watch::channel(false);
        Shared {
            state: ArcSwap::new(state),
            metrics,
            forgeries: Forgeries::default(),
            shutdown,
            stopping: AtomicBool::new(false),
            connections: Arc::new(Capacity::new(max_connections)),
            hints: crate::hint::Hints::default(),
        }
    }

    /// Whether shutdown began.
    pub(crate) fn shutting_down(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// Resolves once shutdown began.
    pub(crate) async fn stopped(&self) {
        let _ = self.shutdown.subscribe().wait_for(|s| *s).await;
    }

    /// Begins the shutdown: every connection is told, waiting or not.
    pub(crate) fn begin_shutdown(&self) {
        self.stopping.store(true, Ordering::Release);
        self.shutdown.send_replace(true);
    }
}

/// Which socket a connection came in on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    /// A `[[listen]]` listener's socket.
    Listener(ListenerId),
    /// `admin.listen`: `/healthz`, `/metrics` and `/forgeries` only.
    Admin,
}

/// `limits.max_connections`: permits taken by open connections, resized by a reload.
/// Shrinking below the connections open takes the permits back as they close, so no
/// connection is dropped for it.
pub(crate) struct Capacity {
    permits: Semaphore,
    max: AtomicUsize,
    /// Permits still to take back, as connections close, after a shrink.
    owed: AtomicUsize,
}

impl Capacity {
    pub(crate) fn new(max: usize) -> Self {
        Capacity {
            permits: Semaphore::new(max),
            max: AtomicUsize::new(max),
            owed: AtomicUsize::new(0),
        }
    }

    /// A permit, if fewer than `max` connections are open.
    pub(crate) fn try_take(self: &Arc<Self>) -> Option<Permit> {
        self.permits.try_acquire().ok()?.forget();
        Some(Permit(self.clone()))
    }

    /// Allows `max` connections from now on (callers serialise resizes).
    pub(crate) fn resize(&self, max: usize) {
        let old = self.max.swap(max, Ordering::AcqRel);
        if max > old {
            let mut grow = max - old;
            // Permits owed from an earlier shrink are forgiven first.
            let forgiven = self
                .owed
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |o| {
                    Some(o - o.min(grow))
                })
                .map_or(0, |o| o.min(grow));
            grow -= forgiven;
            self.permits.add_permits(grow);
        } else if max < old {
            // Owed first, then taken: a connection closing in between pays the debt
            // instead of handing its place back.
            let shrink = old - max;
            self.owed.fetch_add(shrink, Ordering::AcqRel);
            let taken = self.permits.forget_permits(shrink);
            let paid = self
                .owed
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |o| {
                    Some(o - o.min(taken))
                })
                .map_or(0, |o| o.min(taken));
            // Closings paid part of it meanwhile: what was taken beyond the debt goes back.
            self.permits.add_permits(taken - paid);
        }
    }

    fn give_back(&self) {
        let owed = self
            .owed
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |o| o.checked_sub(1));
        if owed.is_err() {
            self.permits.add_permits(1);
        }
    }
}

/// One open connection's place under `limits.max_connections`, given back when dropped.
pub(crate) struct Permit(Arc<Capacity>);

impl Drop for Permit {
    fn drop(&mut self) {
        self.0.give_back();
    }
}

/// Counts a connection as open (and holds its `max_connections` permit) until dropped:
/// it lives in [`ConnCtx`], so a tunnel that outlives the HTTP exchange keeps it.
pub(crate) struct Open {
    metrics: Arc<Metrics>,
    _permit: Permit,
}

impl Open {
    /// Counts a connection that holds `permit` as open.
    pub(crate) fn new(metrics: Arc<Metrics>, permit: Permit) -> Self {
        metrics.connection_opened();
        Open {
            metrics,
            _permit: permit,
        }
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.metrics.connection_closed();
    }
}

/// Whether a reload closed the socket a connection came in on: its connections finish
/// the requests they are serving, then close.
#[derive(Clone, Debug)]
pub(crate) struct Retired(watch::Receiver<bool>);

impl Retired {
    /// Told by `retire` (which is sent `true` once, when the socket closes).
    pub(crate) fn new(retire: &watch::Sender<bool>) -> Self {
        Retired(retire.subscribe())
    }

    /// Whether the socket closed. The sender changes the value once, from `false` to
    /// `true`: a change is the closing, read without the value's lock (this is asked on
    /// every request). A sender gone without a word closed nothing.
    pub(crate) fn is_set(&self) -> bool {
        self.0.has_changed().unwrap_or_else(|_| *self.0.borrow())
    }

    /// Resolves once the socket closed; never if the sender is gone without a word.
    pub(crate) async fn wait(&self) {
        let mut rx = self.0.clone();
        if rx.wait_for(|r| *r).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// One accepted connection, as the codecs see it.
pub(crate) struct ConnCtx {
    /// Shared state.
    pub(crate) shared: Arc<Shared>,
    /// The peer: a TCP peer's address, or `Peer::Unix` on a `unix:` listener.
    pub(crate) peer: trueip::addr::Peer,
    /// The local address (`None` on a `unix:` listener: a path, no port).
    pub(crate) local: Option<SocketAddr>,
    /// The PROXY header, from a trusted sender.
    pub(crate) proxy: Option<crate::proxy::Received>,
    /// TLS terminated here.
    pub(crate) tls: bool,
    /// Activity, for the idle timeout.
    pub(crate) activity: Arc<Activity>,
    /// When the connection was ready for HTTP (its PROXY header read and its TLS
    /// handshake done, each under its own timeout): its first request head is due
    /// `limits.header_read_timeout` later, whichever codec reads it.
    pub(crate) opened: std::time::Instant,
    /// The socket it came in on.
    pub(crate) role: Role,
    /// Whether a reload closed that socket.
    pub(crate) retired: Retired,
    /// Idle upstream connections that announced this connection in a PROXY header: no
    /// other connection may use them, so they close with it.
    pub(crate) upstream_idle: Private,
    /// Keeps the connection counted while anything (a tunnel) still uses it.
    pub(crate) _open: Open,
}

impl ConnCtx {
    /// Resolves once the gateway shuts down or a reload closed the connection's socket:
    /// the connection then ends when its requests are answered.
    pub(crate) async fn stopped(&self) {
        tokio::select! {
            () = self.shared.stopped() => {}
            () = self.retired.wait() => {}
        }
    }

    /// Whether the connection should close after the response it is writing.
    pub(crate) fn draining(&self) -> bool {
        self.shared.shutting_down() || self.retired.is_set()
    }

    /// The socket of the listener it came in on (`None`: the admin listener).
    pub(crate) fn listener(&self) -> Option<ListenerId> {
        match self.role {
            Role::Listener(i) => Some(i),
            Role::Admin => None,
        }
    }

    /// The PROXY header, when `resolution` (a request's on this connection) believed its
    /// source: what else it says of the client (its TLS, the address it reached) is
    /// believed exactly when that is, as its private endpoint is
    /// ([`trueip::Connection::private_link_for`]). A trusted sender that names no client
    /// (`0.0.0.0`), or one a reload no longer trusts, stays the client with its own
    /// connection's scheme and address.
    fn believed(&self, resolution: &Resolution) -> Option<&crate::proxy::Received> {
        self.proxy
            .as_ref()
            .filter(|_| resolution.proxy_source.is_some())
    }

    /// The scheme the client used: `https` over TLS here, or when a believed PROXY v2
    /// header said the client's connection was TLS.
    pub(crate) fn scheme(&self, resolution: &Resolution) -> &'static str {
        if self.tls || self.believed(resolution).is_some_and(|p| p.client_tls) {
            "https"
        } else {
            "http"
        }
    }

    /// The address the client connected to: a believed PROXY header's destination, else
    /// this socket's (`None` on a `unix:` listener).
    pub(crate) fn destination(&self, resolution: &Resolution) -> Option<SocketAddr> {
        self.believed(resolution)
            .and_then(|p| p.addrs)
            .map_or(self.local, |a| Some(a.destination))
    }

    /// Who answers this connection's requests under `state`.
    pub(crate) fn serves(&self, state: &State) -> Serves {
        match (self.role, &state.upstream) {
            (Role::Admin, _) => Serves::Admin,
            (Role::Listener(_), None) => Serves::Whoami,
            (Role::Listener(_), Some(_)) => Serves::Upstream,
        }
    }

    /// What the connection says before any header is read: the peer, and the source and
    /// private endpoint of a PROXY header when one was accepted.
    pub(crate) fn connection(&self) -> trueip::Connection {
        trueip::Connection {
            peer: self.peer,
            proxy_source: self
                .proxy
                .as_ref()
                .and_then(|p| p.addrs)
                .map(|a| trueip::Node::from(a.source)),
            private_link: self
                .proxy
                .as_ref()
                .map(|p| p.private_link.clone())
                .unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// How many permits can be taken now (given back at once).
    fn free(c: &Arc<Capacity>) -> usize {
        let taken: Vec<Permit> = std::iter::from_fn(|| c.try_take()).take(100).collect();
        taken.len()
    }

    #[test]
    fn a_shrink_below_the_open_connections_takes_their_places_back_as_they_close() {
        let c = Arc::new(Capacity::new(4));
        let mut open: Vec<Permit> = (0..3).map(|_| c.try_take().unwrap()).collect();
        c.resize(2);
        assert_eq!(free(&c), 0, "3 open under a limit of 2");
        open.pop();
        assert_eq!(free(&c), 0, "2 open under a limit of 2");
        open.pop();
        assert_eq!(free(&c), 1, "1 open under a limit of 2");
        // Growing forgives what is still owed before adding places.
        c.resize(1);
        assert_eq!(free(&c), 0);
        c.resize(3);
        assert_eq!(free(&c), 2, "1 open under a limit of 3");
        drop(open);
        assert_eq!(free(&c), 3);
    }

    /// Connections closing while the limit shrinks: once the shrink is done, no place is
    /// free while more are open than the new limit, and every place comes back once all
    /// have closed.
    #[test]
    fn a_shrink_racing_closings_never_lets_more_in() {
        for _ in 0..500 {
            let c = Arc::new(Capacity::new(8));
            let mut open: Vec<Permit> = (0..8).map(|_| c.try_take().unwrap()).collect();
            let closing = open.split_off(4);
            let closer = std::thread::spawn(move || {
                for p in closing {
                    drop(p);
                    std::hint::spin_loop();
                }
            });
            c.resize(2);
            closer.join().unwrap();
            assert_eq!(free(&c), 0, "4 open under a limit of 2");
            drop(open);
            assert_eq!(free(&c), 2);
        }
    }

    #[test]
    fn a_grow_while_places_are_owed_never_exceeds_the_limit() {
        let c = Arc::new(Capacity::new(3));
        let open: Vec<Permit> = (0..3).map(|_| c.try_take().unwrap()).collect();
        c.resize(1);
        c.resize(2);
        assert_eq!(free(&c), 0, "3 open under a limit of 2");
        drop(open);
        assert_eq!(free(&c), 2);
    }
}
