//! The listening sockets: opened at start, and by a reload that adds a listener or moves
//! one to another address; closed by a reload that removes one. Every worker accepts on
//! each socket through its own duplicate of the file descriptor.
//!
//! A socket is known by its address: a reload that keeps an address keeps its socket
//! open (nothing waiting in its accept queue is refused, whatever the listener's place in
//! the file or its other keys), and its connections carry on under the new settings. The
//! connections of a socket a reload closed finish the requests they are serving, then
//! close; no connection is cut.
//!
//! A reload first opens what it adds ([`Listening::prepare`]), so a port that cannot be
//! bound rejects the whole reload and changes nothing; then the new state is swapped in
//! and the sockets follow it ([`Listening::apply`]).

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpSocket};
use tokio::runtime::Handle;

use crate::config::{self, ListenAddr, ListenerId, Settings};
use crate::context::{Retired, Role, Shared};
use crate::server;
use crate::unix_socket::{self, SocketFile};

/// The sockets open now, and the workers that accept on them.
pub(crate) struct Listening {
    /// Every worker's event loop: each accepts on every socket.
    workers: Vec<Handle>,
    open: Vec<Open>,
    /// Listener sockets opened so far: the next one's id.
    opened: usize,
}

/// An open socket.
struct Open {
    key: Key,
    role: Role,
    /// Set when the socket closes: its accept loops end, its connections drain.
    retire: Retired,
    file: Option<SocketFile>,
    /// A TCP socket's own copy, to set its options again when a reload keeps it.
    tcp: Option<std::net::TcpListener>,
}

/// What a socket is known by across reloads.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Key {
    Listener(ListenAddr),
    Admin(SocketAddr),
}

/// A socket bound, not yet accepted on.
enum Bound {
    Tcp(std::net::TcpListener),
    Unix(std::os::unix::net::UnixListener),
}

impl Bound {
    fn try_clone(&self) -> std::io::Result<Self> {
        match self {
            Bound::Tcp(s) => s.try_clone().map(Bound::Tcp),
            Bound::Unix(s) => s.try_clone().map(Bound::Unix),
        }
    }

    /// On the current runtime (both are non-blocking already).
    fn into_tokio(self) -> std::io::Result<server::Listener> {
        match self {
            Bound::Tcp(s) => crate::io::TcpAcceptor::from_std(s).map(server::Listener::Tcp),
            Bound::Unix(s) => tokio::net::UnixListener::from_std(s).map(server::Listener::Unix),
        }
    }
}

/// The sockets a config needs: those to open (bound already) and those to close. Dropped
/// without [`Listening::apply`], it closes what it opened.
pub(crate) struct Opening {
    /// Each new socket, with one copy for each worker.
    new: Vec<(Key, Role, Vec<Bound>, Option<SocketFile>)>,
    /// Indexes into [`Listening::open`].
    closing: Vec<usize>,
    /// Each kept TCP listener's `TCP_DEFER_ACCEPT` under the new config (see [`defers`]).
    deferring: Vec<(Key, bool)>,
    opened: usize,
}

impl Drop for Opening {
    fn drop(&mut self) {
        for (_, _, _, file) in &self.new {
            if let Some(f) = file {
                f.remove();
            }
        }
    }
}

impl Listening {
    /// No socket yet.
    pub(crate) const fn new() -> Self {
        Listening { workers: Vec::new(), open: Vec::new(), opened: 0 }
    }

    /// Opens the sockets `settings` names that are not open yet (listeners, then the
    /// admin listener), one copy for each worker, and sets which socket each listener is
    /// on (`settings.ids`). Nothing else changes until [`apply`](Self::apply). The error
    /// says which socket, why, and what to do; `reloading` says it is a reload's.
    pub(crate) fn prepare(
        &self,
        settings: &mut Settings,
        reloading: bool,
    ) -> Result<Opening, String> {
        let mut opening = Opening {
            new: Vec::new(),
            closing: Vec::new(),
            deferring: Vec::new(),
            opened: self.opened,
        };
        let mut ids = Vec::with_capacity(settings.listeners.len());
        // The workers' count cannot change while running: the running ones, else the
        // config's (at start).
        let copies = match self.workers.len() {
            0 => settings.limits.workers.max(1),
            n => n,
        };
        let copied = |bound: Bound, key: &str| -> Result<Vec<Bound>, String> {
            let mut all = Vec::with_capacity(copies);
            for _ in 1..copies {
                all.push(bound.try_clone().map_err(|e| {
                    format!("cannot share the socket of {key} with every worker: {e}")
                })?);
            }
            all.push(bound);
            Ok(all)
        };
        let backlog = settings.limits.backlog;
        for (i, l) in settings.listeners.iter().enumerate() {
            let key = Key::Listener(l.address.clone());
            let deferred = defers(l, &settings.limits);
            if let Some(open) = self.open.iter().find(|o| o.key == key) {
                if let Role::Listener(id) = open.role {
                    ids.push(id);
                }
                opening.deferring.push((key, deferred));
                continue;
            }
            let id = ListenerId::nth(opening.opened);
            opening.opened += 1;
            let (bound, file) = match &l.address {
                ListenAddr::Tcp(addr) => {
                    let socket = bind(*addr, backlog)
                        .and_then(|s| s.into_std())
                        .and_then(|s| set_defer_accept(&s, deferred).map(|()| s))
                        .map_err(|e| bind_failure(*addr, Some(i), &e, reloading))?;
                    (Bound::Tcp(socket), None)
                }
                ListenAddr::Unix(path) => {
                    let owner = l
                        .unix_owner
                        .as_deref()
                        .map(config::SocketOwner::from_system)
                        .transpose()
                        .map_err(|e| e.at(format!("listen[{i}].unix_owner")).to_string())?;
                    let (socket, file) = unix_socket::bind(path, l.unix_mode, owner.as_ref())
                        .map_err(|e| {
                            format!("cannot listen on {} (listen[{i}]): {e}", l.address)
                        })?;
                    (Bound::Unix(socket), Some(file))
                }
            };
            ids.push(id);
            let copies = match copied(bound, &format!("listen[{i}]")) {
                Ok(copies) => copies,
                Err(e) => {
                    if let Some(f) = &file {
                        f.remove();
                    }
                    return Err(e);
                }
            };
            opening.new.push((key, Role::Listener(id), copies, file));
        }
        if let Some(addr) = settings.admin.listen {
            let key = Key::Admin(addr);
            if !self.open.iter().any(|o| o.key == key) {
                let socket = bind(addr, backlog)
                    .and_then(|s| s.into_std())
                    .map_err(|e| bind_failure(addr, None, &e, reloading))?;
                let copies = copied(Bound::Tcp(socket), "admin.listen")?;
                opening.new.push((key, Role::Admin, copies, None));
            }
        }
        let wanted = |key: &Key| match key {
            Key::Listener(a) => settings.listeners.iter().any(|l| &l.address == a),
            Key::Admin(a) => settings.admin.listen == Some(*a),
        };
        opening.closing = (0..self.open.len())
            .filter(|&i| self.open.get(i).is_some_and(|o| !wanted(&o.key)))
            .collect();
        settings.ids = ids;
        Ok(opening)
    }

    /// The event loops that accept: every worker's, given once they run.
    pub(crate) fn set_workers(&mut self, workers: Vec<Handle>) {
        self.workers = workers;
    }

    /// Puts `opening` in place: every worker accepts on its new sockets, and the
    /// sockets no listener names any more close (their connections drain).
    pub(crate) fn apply(&mut self, mut opening: Opening, shared: &Arc<Shared>) {
        let mut closing = std::mem::take(&mut opening.closing);
        closing.sort_unstable();
        for i in closing.into_iter().rev() {
            if i < self.open.len() {
                let open = self.open.remove(i);
                tracing::info!(address = %describe(&open.key), "closed {}: its connections finish their requests", describe(&open.key));
                open.close();
            }
        }
        for (key, deferred) in std::mem::take(&mut opening.deferring) {
            let kept = self.open.iter().find(|o| o.key == key);
            if let Some(tcp) = kept.and_then(|o| o.tcp.as_ref())
                && let Err(e) = set_defer_accept(tcp, deferred)
            {
                tracing::warn!(address = %describe(&key), "cannot set TCP_DEFER_ACCEPT on {}: {e}", describe(&key));
            }
        }
        for (key, role, copies, file) in std::mem::take(&mut opening.new) {
            let retire = Retired::default();
            let tcp = match copies.first() {
                Some(Bound::Tcp(s)) => s.try_clone().ok(),
                _ => None,
            };
            // The address the socket got (a port of 0 in the config is the kernel's choice).
            let shown = match (copies.first(), &key) {
                (Some(Bound::Tcp(s)), Key::Listener(_)) => {
                    s.local_addr().map_or_else(|_| describe(&key), |a| a.to_string())
                }
                (Some(Bound::Tcp(s)), Key::Admin(_)) => {
                    s.local_addr().map_or_else(|_| describe(&key), |a| format!("admin {a}"))
                }
                _ => describe(&key),
            };
            for (worker, bound) in self.workers.iter().zip(copies) {
                let _entered = worker.enter();
                // Registering with the worker's event loop fails only when the kernel is
                // out of memory for it.
                match bound.into_tokio() {
                    Ok(l) => {
                        worker.spawn(server::accept(l, role, shared.clone(), retire.clone()));
                    }
                    Err(e) => {
                        tracing::error!(address = %describe(&key), "a worker cannot accept on {}: {e}", describe(&key))
                    }
                }
            }
            tracing::info!(address = %shown, "listening on {shown}");
            self.open.push(Open { key, role, retire, file, tcp });
        }
        self.opened = opening.opened;
    }

    /// Closes every socket (at exit), removing the socket files.
    pub(crate) fn close_all(&mut self) {
        for open in self.open.drain(..) {
            open.close();
        }
    }
}

impl Open {
    fn close(self) {
        self.retire.set();
        if let Some(f) = &self.file {
            f.remove();
        }
    }
}

fn describe(key: &Key) -> String {
    match key {
        Key::Listener(a) => a.to_string(),
        Key::Admin(a) => format!("admin {a}"),
    }
}

/// Whether `listener`'s socket defers: the kernel holds each new connection until its
/// first bytes arrive, for at most a second (as nginx's `listen ... deferred` and
/// HAProxy's `defer-accept`, which both use one second), then hands it over anyway. The
/// first read then finds the request (or TLS ClientHello, or PROXY header): the
/// connection is never registered with the event loop for it, and a client that
/// connects and sends nothing costs the gateway nothing for that second.
///
/// Only HTTP listeners, where the client speaks first. A `mode = "tcp"` listener relays
/// any protocol, some of which wait for the server to speak first (SMTP, MySQL): each of
/// their connections would wait out the second. Linux only; elsewhere it is a no-op.
fn defers(listener: &config::ListenerSettings, limits: &config::Limits) -> bool {
    limits.defer_accept && listener.mode == config::Mode::Http
}

/// Sets `TCP_DEFER_ACCEPT` to one second (`on`) or off on a listening socket.
#[cfg(target_os = "linux")]
fn set_defer_accept(socket: &std::net::TcpListener, on: bool) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let seconds: libc::c_int = on.into();
    #[allow(
        unsafe_code,
        reason = "setsockopt with an int option: the pointer and length are of a local c_int, \
                  and the descriptor is borrowed open for the call"
    )]
    // SAFETY: `seconds` outlives the call, its size is the length passed, and `socket`
    // keeps the descriptor open.
    let done = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_DEFER_ACCEPT,
            std::ptr::from_ref(&seconds).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if done == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) }
}

#[cfg(not(target_os = "linux"))]
fn set_defer_accept(_: &std::net::TcpListener, _: bool) -> std::io::Result<()> {
    Ok(())
}

/// A listening socket with an accept queue of `backlog` connections (tokio's
/// `TcpListener::bind` asks for 128, which a burst of connections overflows).
fn bind(addr: SocketAddr, backlog: u32) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    // As `TcpListener::bind` does: a restart can bind while old connections linger.
    socket.set_reuseaddr(true)?;
    // Every connection accepted on the socket starts with it (Linux and the BSDs copy it
    // from the listener), so none makes a `setsockopt` of its own: see `io::NoDelay`.
    socket.set_nodelay(true)?;
    socket.bind(addr)?;
    socket.listen(backlog)
}

/// Why a listening socket could not be opened, and what to do about it: the address, where
/// it was configured (`listen[i]`, or `admin.listen` for `None`), the OS error, and for the
/// usual causes a flag or key that would work.
fn bind_failure(
    addr: SocketAddr,
    listener: Option<usize>,
    e: &std::io::Error,
    reloading: bool,
) -> String {
    use std::io::ErrorKind;
    let key = match listener {
        Some(i) => format!("listen[{i}]"),
        None => "admin.listen".to_owned(),
    };
    let instead = |port: u16| {
        let other = SocketAddr::new(addr.ip(), port);
        match listener {
            // A reload reads the file alone.
            Some(_) if reloading => format!("address = \"{other}\" under [[listen]]"),
            Some(_) => {
                format!("--listen {other}, or address = \"{other}\" under [[listen]] in the config")
            }
            None => format!("admin.listen = \"{other}\" in the config"),
        }
    };
    let hint = match e.kind() {
        ErrorKind::AddrInUse if reloading => Some(format!(
            "another program listens there, or a socket of this gateway that overlaps it \
             (0.0.0.0 and 127.0.0.1 on one port; [::] and 0.0.0.0): this gateway's sockets close \
             only once a reload succeeds, so move such a listener in two reloads (remove it, then \
             add the new address) or restart; or use another port: {}",
            instead(addr.port().checked_add(1).unwrap_or(8080))
        )),
        ErrorKind::AddrInUse => Some(format!(
            "another program (or another trueip) listens there: stop it, or use another port: {}",
            instead(addr.port().checked_add(1).unwrap_or(8080))
        )),
        ErrorKind::PermissionDenied => Some(format!(
            "ports below 1024 need root or the CAP_NET_BIND_SERVICE capability \
             (setcap cap_net_bind_service=+ep on the trueip binary); or use a port above 1023: {}",
            instead(8080)
        )),
        ErrorKind::AddrNotAvailable => Some(
            "no interface of this machine has that address: listen on 127.0.0.1 (this machine \
             only) or 0.0.0.0 (every interface)"
                .to_owned(),
        ),
        _ => None,
    };
    match hint {
        Some(hint) => format!("cannot listen on {addr} ({key}): {e} (hint: {hint})"),
        None => format!("cannot listen on {addr} ({key}): {e}"),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail loudly")]
mod tests {
    use std::io::{Error, ErrorKind};

    use super::*;

    #[test]
    fn a_failed_bind_says_what_to_do() {
        let addr: SocketAddr = "127.0.0.1:80".parse().unwrap();
        let denied = bind_failure(addr, Some(0), &Error::from(ErrorKind::PermissionDenied), false);
        assert!(denied.starts_with("cannot listen on 127.0.0.1:80 (listen[0]): "), "{denied}");
        assert!(denied.contains("CAP_NET_BIND_SERVICE"), "{denied}");
        assert!(denied.contains("--listen 127.0.0.1:8080"), "{denied}");

        let in_use = bind_failure(addr, Some(1), &Error::from(ErrorKind::AddrInUse), false);
        assert!(in_use.contains("(listen[1])") && in_use.contains("127.0.0.1:81"), "{in_use}");

        let admin: SocketAddr = "[::1]:65535".parse().unwrap();
        let admin = bind_failure(admin, None, &Error::from(ErrorKind::AddrInUse), false);
        assert!(admin.contains("(admin.listen)"), "{admin}");
        assert!(admin.contains("admin.listen = \"[::1]:8080\""), "{admin}");
        assert!(!admin.contains("--listen"), "no flag sets the admin listener: {admin}");

        // On a reload: no flag (a reload reads the file alone), and this gateway's own
        // overlapping sockets named as a cause.
        let reload = bind_failure(addr, Some(0), &Error::from(ErrorKind::AddrInUse), true);
        assert!(!reload.contains("--listen"), "{reload}");
        assert!(
            reload.contains("two reloads") && reload.contains("address = \"127.0.0.1:81\""),
            "{reload}"
        );

        let other = bind_failure(addr, Some(0), &Error::other("boom"), false);
        assert!(other.ends_with("boom"), "{other}");
    }

    /// The sockets `toml`'s listeners open, one copy each, in file order.
    fn opened(toml: &str) -> Vec<std::net::TcpListener> {
        let mut settings = Settings::from_text(toml, &mut |p| Err(format!("no file {p}"))).unwrap();
        settings.limits.workers = 1;
        let mut opening = Listening::new().prepare(&mut settings, false).unwrap();
        std::mem::take(&mut opening.new)
            .into_iter()
            .filter_map(|(_, _, mut copies, _)| match copies.pop() {
                Some(Bound::Tcp(s)) => Some(s),
                _ => None,
            })
            .collect()
    }

    /// Accepts the next connection on `listener` within `wait`, or says none came.
    async fn accepted_within(
        listener: &crate::io::TcpAcceptor,
        wait: std::time::Duration,
    ) -> Option<std::net::TcpStream> {
        tokio::time::timeout(wait, listener.accept()).await.ok().map(|r| r.unwrap().0)
    }

    /// An HTTP listener defers (`limits.defer_accept`): a client that writes at once is
    /// handed over with its request already readable; one that connects and writes a
    /// little later is handed over only then, and answered as well. A `mode = "tcp"`
    /// listener, whose protocol may wait for the server to speak, does not defer, nor
    /// does an HTTP listener with `defer_accept = false`. Fails where the option is not
    /// set (the connection is accepted before its client writes).
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn an_http_listener_hands_over_a_connection_once_its_client_writes() {
        use std::io::Read;
        use tokio::io::AsyncWriteExt;
        let short = std::time::Duration::from_millis(300);
        let sockets = opened(
            r#"
            [[listen]]
            address = "127.0.0.1:0"
            [[listen]]
            address = "127.0.0.2:0"
            mode = "tcp"
            upstream = "127.0.0.1:9"
            "#,
        );
        let [http, tcp] = <[_; 2]>::try_from(sockets).unwrap();
        let http = crate::io::TcpAcceptor::from_std(http).unwrap();
        let tcp = crate::io::TcpAcceptor::from_std(tcp).unwrap();

        // Writes at once: handed over with the bytes there for the first read.
        let mut client = tokio::net::TcpStream::connect(http.local_addr().unwrap()).await.unwrap();
        client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        let mut accepted = accepted_within(&http, short).await.unwrap();
        let mut buf = [0; 64];
        assert_eq!(accepted.read(&mut buf).unwrap(), 18, "readable on accept");

        // Writes after a pause, under the deferral's second: held until then.
        let mut client = tokio::net::TcpStream::connect(http.local_addr().unwrap()).await.unwrap();
        assert!(
            accepted_within(&http, short).await.is_none(),
            "handed over before the client wrote"
        );
        client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        let mut accepted = accepted_within(&http, short).await.unwrap();
        assert_eq!(accepted.read(&mut buf).unwrap(), 18, "readable on accept");

        // A relay's client may wait for the server: accepted at once.
        let _client = tokio::net::TcpStream::connect(tcp.local_addr().unwrap()).await.unwrap();
        assert!(accepted_within(&tcp, short).await.is_some());

        let [off] = <[_; 1]>::try_from(opened(
            "[limits]\ndefer_accept = false\n[[listen]]\naddress = \"127.0.0.1:0\"",
        ))
        .unwrap();
        let off = crate::io::TcpAcceptor::from_std(off).unwrap();
        let _client = tokio::net::TcpStream::connect(off.local_addr().unwrap()).await.unwrap();
        assert!(accepted_within(&off, short).await.is_some());
    }

    /// What the deferral does with clients that send nothing (the documented behaviour):
    /// one that closes at once is handed over at once, its end of stream readable (so
    /// a health checker's connect-and-close is seen, counted and closed as before); one
    /// that stays silent is handed over after about a second, then waits out the
    /// header timeout as any silent connection does.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn a_silent_client_is_handed_over_after_the_deferral_and_a_closed_one_at_once() {
        use std::io::Read;
        let [http] = <[_; 1]>::try_from(opened("[[listen]]\naddress = \"127.0.0.1:0\"")).unwrap();
        let http = crate::io::TcpAcceptor::from_std(http).unwrap();
        let addr = http.local_addr().unwrap();

        drop(tokio::net::TcpStream::connect(addr).await.unwrap());
        let mut accepted =
            accepted_within(&http, std::time::Duration::from_millis(300)).await.unwrap();
        accepted.set_nonblocking(false).unwrap();
        assert_eq!(accepted.read(&mut [0; 8]).unwrap(), 0);

        let start = std::time::Instant::now();
        let _silent = tokio::net::TcpStream::connect(addr).await.unwrap();
        assert!(accepted_within(&http, std::time::Duration::from_secs(5)).await.is_some());
        let held = start.elapsed();
        assert!(held >= std::time::Duration::from_millis(900), "handed over after {held:?}");
    }

    /// A connection accepted on a gateway's listener has `TCP_NODELAY` from the listener,
    /// before it writes anything: no connection sets it itself (`io::NoDelay`).
    #[tokio::test]
    async fn connections_start_with_the_listeners_nodelay() {
        let listener = bind("127.0.0.1:0".parse().unwrap(), 16).unwrap();
        let listener = crate::io::TcpAcceptor::from_std(listener.into_std().unwrap()).unwrap();
        let _client = tokio::net::TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (accepted, _) = listener.accept().await.unwrap();
        assert!(accepted.nodelay().unwrap());
        assert_eq!(crate::io::NoDelay::accepted(&accepted), crate::io::NoDelay::Set);
    }
}
