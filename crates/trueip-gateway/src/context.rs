//! What serving a connection needs: the config snapshot its requests are served under
//! ([`State`]), what outlives reloads ([`Shared`]), and the connection itself
//! ([`ConnCtx`]: peer, listener, PROXY header, TLS).
//!
//! Everything a connection does before its first request (PROXY header, TLS) is decided
//! from the state current when it was accepted; each request loads the current state, so
//! a reload reaches keep-alive connections too.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use arc_swap::ArcSwap;
use hyper::server::conn::{http1, http2};
use hyper_util::rt::TokioTimer;
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
    /// Set once shutdown began. Only the accept loops wait for it; their connections wait
    /// for their loop's [`Stops`].
    pub(crate) shutdown: Stop,
    /// One permit per open connection on the public listeners (`limits.max_connections`).
    pub(crate) connections: Arc<Capacity>,
    /// One permit per open connection on the admin listener (`admin.max_connections`):
    /// apart from the public ones, which would otherwise leave none for `/metrics`
    /// exactly when an operator needs it, during a flood.
    pub(crate) admin_connections: Arc<Capacity>,
    /// Peers whose forwarding headers were ignored, for the misconfiguration hint.
    pub(crate) hints: crate::hint::Hints,
}

impl Shared {
    /// What a listener's connections share, with room for the connections `state`'s
    /// settings allow.
    pub(crate) fn new(state: Arc<State>, metrics: Arc<Metrics>) -> Self {
        let settings = &state.settings;
        let connections = Arc::new(Capacity::new(settings.limits.max_connections));
        let admin_connections = Arc::new(Capacity::new(settings.admin.max_connections));
        Shared {
            state: ArcSwap::new(state),
            metrics,
            forgeries: Forgeries::default(),
            shutdown: Stop::default(),
            connections,
            admin_connections,
            hints: crate::hint::Hints::default(),
        }
    }

    /// Whether shutdown began.
    pub(crate) fn shutting_down(&self) -> bool {
        self.shutdown.is_set()
    }

    /// Begins the shutdown: every connection is told (through its accept loop), waiting
    /// or not.
    pub(crate) fn begin_shutdown(&self) {
        self.shutdown.set();
    }
}

/// Something that happens once and is waited for: the shutdown, a listening socket's
/// closing, an accept loop's end. Set once, never cleared.
///
/// Why not `tokio::sync::watch`: each wait clones a receiver, boxes a `select!` of two
/// `wait_for`s and makes two `Notified`s, about 1,600 instructions per connection that
/// waits and 190 per accept (callgrind, `PROTOCOL=close bash bench/instructions.sh`). Here
/// a waiter takes a slot for its waker under an uncontended lock at its first poll and
/// gives it back when dropped; a poll while it waits is a load and a waker comparison:
/// about 230 instructions per connection that waits, and 30 per poll of the accept loop.
///
/// The waits form a tree, so that no waiter list is shared between threads, and a
/// connection waits on one list, not two: only the accept loops (one per worker and
/// socket) wait for the shutdown and for their socket's closing, and a connection waits
/// on its own loop's [`Stops`], which the loop sets when either comes (`server::accept`).
/// A tokio `Notify` in place of the slots would also be shared by every worker, and cost
/// a `Notified` per wait as before.
#[derive(Default)]
pub(crate) struct Stop {
    set: AtomicBool,
    waiters: Mutex<Waiters>,
}

/// The wakers of the tasks that wait for a [`Stop`], in slots that waiters reuse: at most
/// as many as once waited at the same time.
#[derive(Default)]
struct Waiters {
    slots: Vec<Option<Waker>>,
    free: Vec<usize>,
}

impl Stop {
    /// Whether it was set.
    pub(crate) fn is_set(&self) -> bool {
        self.set.load(Ordering::Acquire)
    }

    /// Sets it, waking every task that waits.
    pub(crate) fn set(&self) {
        let waiting = {
            let mut waiters = self.waiters.lock().unwrap_or_else(PoisonError::into_inner);
            // Under the lock: a waiter that registers after this sees it set.
            if self.set.swap(true, Ordering::AcqRel) {
                return;
            }
            waiters.free = Vec::new();
            std::mem::take(&mut waiters.slots)
        };
        for waker in waiting.into_iter().flatten() {
            waker.wake();
        }
    }

    /// Resolves once it is set.
    pub(crate) fn wait(&self) -> Wait<'_> {
        Wait { stop: self, slot: None }
    }
}

/// [`Stop::wait`]: registered at its first poll, unregistered when dropped.
pub(crate) struct Wait<'a> {
    stop: &'a Stop,
    /// Its slot, and the waker it holds (to tell whether a poll brings another).
    slot: Option<(usize, Waker)>,
}

impl Future for Wait<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if this.stop.is_set() {
            return Poll::Ready(());
        }
        if let Some((_, waker)) = &this.slot
            && waker.will_wake(cx.waker())
        {
            return Poll::Pending;
        }
        let mut waiters = this.stop.waiters.lock().unwrap_or_else(PoisonError::into_inner);
        if this.stop.set.load(Ordering::Acquire) {
            return Poll::Ready(());
        }
        let waker = cx.waker().clone();
        let slot = match this.slot {
            Some((i, _)) => i,
            None => match waiters.free.pop() {
                Some(i) => i,
                None => {
                    waiters.slots.push(None);
                    waiters.slots.len() - 1
                }
            },
        };
        if let Some(s) = waiters.slots.get_mut(slot) {
            *s = Some(waker.clone());
        }
        this.slot = Some((slot, waker));
        Poll::Pending
    }
}

impl Drop for Wait<'_> {
    fn drop(&mut self) {
        let Some((slot, _)) = self.slot.take() else {
            return;
        };
        let mut waiters = self.stop.waiters.lock().unwrap_or_else(PoisonError::into_inner);
        // Once set, the slots are gone with the wakers they held.
        if self.stop.set.load(Ordering::Acquire) {
            return;
        }
        if let Some(s) = waiters.slots.get_mut(slot) {
            *s = None;
            waiters.free.push(slot);
        }
    }
}

/// What the connections of one accept loop are told: the loop's end (shutdown began, or a
/// reload closed its socket), and whether the socket closed.
pub(crate) struct Stops {
    /// Set by the loop as it ends (`server::accept`): waiting connections then close.
    pub(crate) ended: Stop,
    /// Whether a reload closed the socket.
    pub(crate) retired: Retired,
}

/// Which socket a connection came in on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    /// A `[[listen]]` listener's socket.
    Listener(ListenerId),
    /// `admin.listen`: `/healthz`, `/metrics` and `/forgeries` only.
    Admin,
}

/// `limits.max_connections`: a count of open connections against a limit a reload
/// changes. Shrinking the limit below the connections open refuses new ones until enough
/// have closed, so no connection is dropped for it.
///
/// A count, not a semaphore: nothing waits for a place (a connection over the limit is
/// closed at once), and tokio's `Semaphore` took its lock to give each place back, about
/// 80 instructions per connection (callgrind, `PROTOCOL=close bash bench/instructions.sh`).
pub(crate) struct Capacity {
    open: AtomicUsize,
    max: AtomicUsize,
}

impl Capacity {
    pub(crate) fn new(max: usize) -> Self {
        Capacity { open: AtomicUsize::new(0), max: AtomicUsize::new(max) }
    }

    /// A place, if fewer than `max` connections are open.
    pub(crate) fn try_take(self: &Arc<Self>) -> Option<Permit> {
        let max = self.max.load(Ordering::Acquire);
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| {
                (open < max).then_some(open + 1)
            })
            .ok()?;
        Some(Permit(self.clone()))
    }

    /// Allows `max` connections from now on.
    pub(crate) fn resize(&self, max: usize) {
        self.max.store(max, Ordering::Release);
    }

    fn give_back(&self) {
        self.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One open connection's place under `limits.max_connections` (or `admin.max_connections`),
/// given back when dropped.
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
        Open { metrics, _permit: permit }
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.metrics.connection_closed();
    }
}

/// Whether a reload closed the socket a connection came in on: its connections finish
/// the requests they are serving, then close. Set by the listening side
/// (`listening::Open::close`); a socket no reload closes is never set.
#[derive(Clone, Default)]
pub(crate) struct Retired(Arc<Stop>);

impl Retired {
    /// Whether the socket closed.
    pub(crate) fn is_set(&self) -> bool {
        self.0.is_set()
    }

    /// Closes the socket, as its connections see it.
    pub(crate) fn set(&self) {
        self.0.set();
    }

    /// Resolves once the socket closed.
    pub(crate) fn wait(&self) -> Wait<'_> {
        self.0.wait()
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
    /// What its accept loop tells it: shutdown, or a reload that closed its socket.
    pub(crate) stops: Arc<Stops>,
    /// Idle upstream connections that announced this connection in a PROXY header: no
    /// other connection may use them, so they close with it.
    pub(crate) upstream_idle: Private,
    /// Keeps the connection counted while anything (a tunnel) still uses it.
    pub(crate) _open: Open,
}

impl ConnCtx {
    /// Resolves once the gateway shuts down or a reload closed the connection's socket
    /// (once its accept loop ended for either): the connection then ends when its
    /// requests are answered.
    pub(crate) fn stopped(&self) -> Wait<'_> {
        self.stops.ended.wait()
    }

    /// Whether the connection should close after the response it is writing: asked of
    /// the shutdown and the socket themselves, which are set before the loop ends.
    pub(crate) fn draining(&self) -> bool {
        self.shared.shutting_down() || self.stops.retired.is_set()
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
        self.proxy.as_ref().filter(|_| resolution.proxy_source.is_some())
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
        self.believed(resolution).and_then(|p| p.addrs).map_or(self.local, |a| Some(a.destination))
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
            private_link: self.proxy.as_ref().map(|p| p.private_link.clone()).unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A waker that counts its wake-ups.
    struct Count(AtomicUsize);

    impl std::task::Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn counter() -> (Arc<Count>, Waker) {
        let c = Arc::new(Count(AtomicUsize::new(0)));
        (c.clone(), Waker::from(c))
    }

    fn poll(wait: &mut Wait<'_>, waker: &Waker) -> Poll<()> {
        Pin::new(wait).poll(&mut Context::from_waker(waker))
    }

    #[test]
    fn a_stop_wakes_every_waiter_with_the_waker_it_last_gave() {
        let stop = Stop::default();
        let (counts, wakers): (Vec<_>, Vec<_>) = (0..5).map(|_| counter()).unzip();
        let mut waits: Vec<Wait<'_>> = (0..4).map(|_| stop.wait()).collect();
        for (w, waker) in waits.iter_mut().zip(&wakers) {
            assert!(poll(w, waker).is_pending());
        }
        // Polled again with another waker: that one is woken, not the first.
        assert!(poll(&mut waits[3], &wakers[4]).is_pending());
        // Polled again with the same one: still one registration.
        assert!(poll(&mut waits[0], &wakers[0]).is_pending());
        // One that gave up waiting is not woken.
        waits.remove(1);
        stop.set();
        let woken: Vec<usize> = counts.iter().map(|c| c.0.load(Ordering::SeqCst)).collect();
        assert_eq!(woken, [1, 0, 1, 0, 1]);
        assert!(waits.iter_mut().all(|w| poll(w, &wakers[0]).is_ready()));
        // Set once: a second set wakes nobody, and a new wait is over at once.
        stop.set();
        assert_eq!(counts[0].0.load(Ordering::SeqCst), 1);
        assert!(poll(&mut stop.wait(), &wakers[0]).is_ready());
    }

    #[test]
    fn waiters_that_leave_give_their_slots_back() {
        let stop = Stop::default();
        let (_, waker) = counter();
        for _ in 0..1000 {
            let mut a = stop.wait();
            let mut b = stop.wait();
            assert!(poll(&mut a, &waker).is_pending());
            assert!(poll(&mut b, &waker).is_pending());
        }
        assert_eq!(stop.waiters.lock().unwrap().slots.len(), 2);
        // A wait never polled took no slot.
        drop(stop.wait());
        assert_eq!(stop.waiters.lock().unwrap().free.len(), 2);
    }

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
    fn takers_racing_never_hold_more_than_the_limit() {
        let c = Arc::new(Capacity::new(3));
        let held = Arc::new(AtomicUsize::new(0));
        let takers: Vec<_> = (0..4)
            .map(|_| {
                let (c, held) = (c.clone(), held.clone());
                std::thread::spawn(move || {
                    for _ in 0..2000 {
                        if let Some(p) = c.try_take() {
                            let now = held.fetch_add(1, Ordering::SeqCst) + 1;
                            assert!(now <= 3, "{now} held under a limit of 3");
                            held.fetch_sub(1, Ordering::SeqCst);
                            drop(p);
                        }
                    }
                })
            })
            .collect();
        for t in takers {
            t.join().unwrap();
        }
        assert_eq!(free(&c), 3);
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
