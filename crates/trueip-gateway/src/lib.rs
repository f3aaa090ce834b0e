//! # trueip-gateway — `trueip serve`
//!
//! A reverse proxy for the edge of an app: it accepts HTTP/1.1 and HTTP/2 (TLS with
//! ALPN, or cleartext with prior knowledge), optionally behind a PROXY-protocol load
//! balancer, decides who the client is with the core library's policy, removes every
//! client-IP header the client could have forged, and hands the upstream one clean
//! line each of `X-Real-IP`, `X-Forwarded-For`, `Forwarded` and `X-Forwarded-Proto`/
//! `-Host`/`-Port`. With no upstream it answers every request itself with the whoami
//! page. A listener in TCP mode relays bytes and announces the client upstream in a
//! PROXY header.
//!
//! The binary calls two things: [`ServeArgs`] (the `clap` arguments of `trueip serve`)
//! and [`run`]. Everything is configured by one TOML file, documented key by key in
//! `trueip.example.toml`; its `[client_ip]` section is the one `trueip explain --config`
//! reads.
//!
//! The modules form one pipeline, each importing only those below it:
//! `server` (accept, PROXY header, TLS) → a codec in `http` (`lean`, `hyper`) or `tcp` →
//! `context` (the config snapshot and the connection) → `upstream`, `pages` and `rules`
//! (routing, header rules, failures, limits: the policy both codecs share) → `config`,
//! `metrics`, `io` and the other foundations. `docs/ARCHITECTURE.md` follows a request
//! through them step by step.

// `deny`, not `forbid`: two functions may allow it, `listening::set_defer_accept` (a socket
// option no safe crate in the tree sets) and `cpu_limit::charge` (a thread's CPU clock,
// which rustix reads only after a vDSO lookup that crashes under valgrind).
#![deny(unsafe_code)]
#![warn(
    clippy::indexing_slicing,
    clippy::expect_used,
    clippy::panic,
    clippy::string_slice,
    clippy::allow_attributes_without_reason,
    unreachable_pub
)]

/// What the unit tests of several modules share.
#[cfg(test)]
pub(crate) mod test_support {
    use trueip::Policy;

    /// Trusts 10.0.0.0/8 and walks X-Forwarded-For from the right.
    pub(crate) fn trusting_ten() -> Policy {
        Policy::builder()
            .trust_str("10.0.0.0/8")
            .unwrap()
            .strategy_str("rightmost-untrusted")
            .unwrap()
            .build()
            .unwrap()
    }

    /// A header map with these lines, in order.
    pub(crate) fn header_map(pairs: &[(&str, &str)]) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        for (n, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(n.as_bytes()).unwrap(),
                http::HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }
}

mod clock;
mod config;
mod context;
mod cpu_limit;
mod duration;
mod forgeries;
mod hint;
mod http;
mod io;
mod listening;
mod logging;
mod metrics;
pub mod names;
mod open_files;
mod pages;
mod peers;
mod proxy;
mod ranges;
mod ranges_cli;
mod reload;
mod rules;
mod server;
mod tcp;
mod tls;
mod unix_socket;
mod upstream;

/// The gateway in-process, for this crate's integration tests: not an API.
#[doc(hidden)]
pub mod testing {
    use std::sync::Arc;

    use tokio::net::TcpListener;

    use std::path::PathBuf;
    use std::time::Duration;

    use crate::config::Settings;
    use crate::context::{Role, Shared, State};
    use crate::metrics::Metrics;

    /// The longest timeout a config may set.
    pub const MAX_TIMEOUT: Duration = crate::config::MAX_TIMEOUT;
    pub use crate::pages::whoami::{Format, page_size_bound, render, request_len};

    /// What `trueip serve --check` makes of a config text, provider range files read
    /// by `read`.
    pub struct Config(Settings);

    impl Config {
        /// Reads and checks `text`. Text has no directory: a relative path in it is
        /// read from the working directory, where a config file's is read from the
        /// file's directory.
        pub fn check(
            text: &str,
            read: &mut dyn FnMut(&str) -> Result<Vec<u8>, String>,
        ) -> Result<Config, String> {
            Settings::from_text(text, read).map(Config)
        }

        /// Every timeout the config sets.
        pub fn timeouts(&self) -> Vec<Duration> {
            let (l, u) = (&self.0.limits, &self.0.upstream);
            vec![
                l.header_read_timeout,
                l.idle_timeout,
                l.send_timeout,
                l.tls_handshake_timeout,
                l.proxy_protocol_timeout,
                l.shutdown_timeout,
                u.connect_timeout,
                u.response_timeout,
                u.body_timeout,
                u.pool_idle_timeout,
                self.0.ranges.timeout,
            ]
        }

        /// Describes the config as `--check` does, then builds the server state and what
        /// connections share, every TLS file replaced by a path that fails before the file
        /// system is asked (one the config names could be a device that never ends).
        pub fn build_without_tls_files(mut self) -> Result<(), String> {
            let _ = crate::describe(&self.0);
            for listener in &mut self.0.listeners {
                for tls in listener.tls.iter_mut().flat_map(|t| t.certs.iter_mut()) {
                    tls.cert = PathBuf::from("cert\0");
                    tls.key = PathBuf::from("key\0");
                }
            }
            let state = State::build(self.0).map_err(|e| e.to_string())?;
            let _ = Shared::new(Arc::new(state), Arc::new(Metrics::default()));
            Ok(())
        }
    }

    /// Where a request head ends (after its blank line), as the lean HTTP/1.1 path
    /// finds it.
    pub fn head_end(bytes: &[u8]) -> Option<usize> {
        crate::http::lean::head_end(bytes)
    }

    /// Whether `bytes` begin an HTTP/1 request head (so far valid, unfinished).
    pub fn partial_request(bytes: &[u8]) -> bool {
        crate::http::lean::partial_request(bytes)
    }

    /// The size a chunk-size line (without its line end) announces.
    pub fn chunk_size(line: &[u8]) -> Option<u64> {
        crate::upstream::raw::chunk_size(line)
    }

    /// The lean path's reader of an upstream's chunked body.
    #[derive(Debug, Default)]
    pub struct Chunked(crate::http::lean::Chunked);

    impl Chunked {
        /// How many of `bytes` belong to the body, how many of those go to the client
        /// (the last chunk aside), and whether the body ended there; `Err` for a body that is not chunked, with
        /// how many of its bytes came before the fault.
        pub fn scan(&mut self, bytes: &[u8]) -> Result<(usize, usize, bool), usize> {
            self.0.scan(bytes)
        }
    }

    /// An upstream's response head, as the lean path reads it.
    #[derive(Debug)]
    pub enum ResponseHead {
        /// Not all there yet.
        Partial,
        /// An interim (1xx) response this long, skipped.
        Interim(usize),
        /// A head this long, and the head the client gets (without its blank line).
        Done(usize, Vec<u8>),
    }

    /// The upstream's response head at the start of `bytes`, to a `HEAD` request when
    /// `head_only`, or why it is refused.
    pub fn response_head(bytes: &[u8], head_only: bool) -> Result<ResponseHead, String> {
        use crate::upstream::raw::{Step, parse_head};
        let mut head = Vec::new();
        let step = parse_head(bytes, |resp| crate::http::lean::rewrite(resp, head_only, &mut head))
            .map_err(|e| e.to_string())?;
        Ok(match step {
            Step::Partial => ResponseHead::Partial,
            Step::Interim(n) => ResponseHead::Interim(n),
            Step::Done(n, _) => ResponseHead::Done(n, head),
        })
    }

    /// What a config builds: the state a reload would switch to.
    #[derive(Clone)]
    pub struct Build(Arc<State>);

    impl Build {
        /// Builds `toml` (no provider files), with `limits.lean_http1` set to `lean_http1`.
        pub fn new(toml: &str, lean_http1: bool) -> Result<Build, String> {
            let Config(mut settings) = Config::check(toml, &mut |_| Err(String::new()))?;
            settings.limits.lean_http1 = lean_http1;
            let state = State::build(settings).map_err(|e| e.to_string())?;
            Ok(Build(Arc::new(state)))
        }
    }

    /// A gateway accepting on one listener (its `listen[0]`).
    pub struct Server {
        shared: Arc<Shared>,
    }

    impl Server {
        /// Starts accepting on `listener` with `build`, on the current tokio runtime.
        pub fn start(listener: TcpListener, build: &Build) -> std::io::Result<Server> {
            // Accepted as the gateway's listeners accept (`io::TcpAcceptor`).
            let listener = crate::io::TcpAcceptor::from_std(listener.into_std()?)?;
            let shared = Arc::new(Shared::new(build.0.clone(), Arc::new(Metrics::default())));
            tokio::spawn(crate::server::accept(
                crate::server::Listener::Tcp(listener),
                Role::Listener(crate::config::ListenerId::nth(0)),
                shared.clone(),
                // A listener no reload closes.
                crate::context::Retired::default(),
            ));
            Ok(Server { shared })
        }

        /// The metrics, as `/metrics` shows them.
        pub fn metrics(&self) -> String {
            self.shared.metrics.render()
        }

        /// Serves the next requests with `build`, as a reload does.
        pub fn switch(&self, build: &Build) {
            self.shared.state.store(build.0.clone());
        }
    }
}

/// One request as `trueip serve` would hand it to its upstream: what `trueip simulate`
/// shows for a `trueip` hop. The same rules the codecs call (`rules::headers`): the
/// decision of the config's `[client_ip]` policy, every received line's fate, then the
/// gateway's own `X-Real-IP`, `X-Forwarded-*` and `Forwarded` lines.
pub struct Preview {
    /// The header lines the upstream receives, in order (Host last, as the codecs set it).
    pub headers: Vec<(String, String)>,
    /// The client the gateway decided on (`Peer::Unix` for a Unix-socket peer that no
    /// header names an address for).
    pub client: trueip::addr::Peer,
}

/// Previews a request received on a plain HTTP listener on `port` over `conn`, with
/// `headers`, under the config text `toml` (the file `trueip serve --config` reads;
/// provider range files are not read: name ranges as CIDRs). An error names the key.
pub fn preview(
    toml: &str,
    conn: &trueip::Connection,
    port: u16,
    headers: &[(String, String)],
) -> Result<Preview, String> {
    use ::http::{HeaderMap, HeaderName, HeaderValue};

    let settings = Settings::from_text(toml, &mut |name| {
        Err(format!("provider file {name} is not read here; list its ranges as CIDRs"))
    })?;
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|e| format!("header name \"{name}\": {e}"))?;
        let value = HeaderValue::from_str(value)
            .map_err(|e| format!("header {name} value \"{value}\": {e}"))?;
        map.append(name, value);
    }
    let hygiene = rules::headers::Hygiene::new(settings.headers.clone());
    let resolution = settings.policy.resolve(conn, &map);
    let host = map.get(::http::header::HOST).cloned();
    // A `GET /`: what a `[upstream] sign` header would be bound to (no upstream here, so
    // no authority stands in for a missing Host).
    let request = rules::headers::UpstreamLine { method: "GET", authority: "", target: "/" };
    let facts = rules::headers::Facts::new(
        &settings.policy,
        &resolution,
        &map,
        "http",
        host.as_ref(),
        Some(port),
        request,
    );
    hygiene.request(&mut map, &facts);
    if let Some(h) = host {
        map.insert(::http::header::HOST, h);
    }
    let headers = map
        .iter()
        .map(|(n, v)| (n.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
        .collect();
    Ok(Preview { headers, client: resolution.client })
}

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;
use trueip::shown::terminal_lines;

pub use crate::config::ServeArgs;
pub use crate::ranges_cli::{RangesArgs, run as ranges};

/// Builds a `[client_ip]` policy as `trueip serve` does: provider files read from disk,
/// and the lists no file supplies from the range cache — `flag` (`--ranges-dir`), else
/// `config_dir` (`[ranges] dir`), else the default directory; host names resolved now
/// ([`names::resolver`]), each of which must resolve. Returns the policy and what the names
/// resolved to. `trueip explain` uses it.
pub fn build_policy(
    config: &trueip::config::ClientIpConfig,
    flag: Option<&std::path::Path>,
    config_dir: Option<&std::path::Path>,
) -> Result<(trueip::Policy, names::Addresses), String> {
    let dir = flag.or(config_dir).map_or_else(ranges::default_dir, std::path::Path::to_path_buf);
    let loaded = ranges::load_for(config, &dir).map_err(|e| e.to_string())?;
    let addrs =
        names::resolve_all(&config.host_names(), &*names::resolver()).map_err(|e| e.to_string())?;
    let policy = config
        .build_resolved(
            &mut |path| trueip::config::read_provider_file(path),
            &loaded.sets,
            &names::sets(&addrs),
        )
        .map_err(|e| e.to_string())?;
    Ok((policy, addrs))
}
use crate::config::{Mode, ProxyProtocol, SendProxy, Settings};
use crate::context::{Shared, State};
use crate::listening::Listening;
use crate::metrics::Metrics;

/// Runs `trueip serve` until SIGTERM/SIGINT. Builds its own tokio runtime.
pub fn run(args: ServeArgs) -> ExitCode {
    let state = match reload::load(&args) {
        Ok(state) => state,
        Err(e) => {
            eprintln!("trueip serve: {}", terminal_lines(e));
            return ExitCode::from(2);
        }
    };
    if args.check {
        println!("config ok");
        for line in describe(&state.settings) {
            println!("  {}", terminal_lines(line));
        }
        // Valid, and still worth a look: what lets a client name its own address
        // (`trueip check FILE` prints the same, with an exit status for CI).
        for finding in &state.settings.lint {
            println!("{}", terminal_lines(finding));
        }
        return ExitCode::SUCCESS;
    }
    // The main thread is worker 0; `serve` starts the others. Each worker is a
    // single-threaded event loop: a connection never leaves the worker that accepted
    // it, so nothing on the request path crosses threads (measured against tokio's
    // work-stealing scheduler with one worker thread: 2.8 µs less CPU per proxied
    // request, most of it in the kernel).
    let runtime = match worker_runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("trueip serve: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let code = runtime.block_on(serve(state, args));
    runtime.shutdown_timeout(Duration::from_secs(1));
    code
}

/// A worker's event loop: one thread, timers and I/O, its CPU time charged to a CPU limit
/// before each poll for events (see [`cpu_limit`]).
fn worker_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .on_thread_park(cpu_limit::before_poll)
        .build()
}

/// Starts workers 1.. on their own threads, each an event loop that runs until `exit`
/// turns true; returns the threads, and every worker's event loop (this thread's, worker
/// 0, first) for the listening sockets to accept on.
#[allow(clippy::type_complexity, reason = "a pair, named by its doc")]
fn start_workers(
    count: usize,
    exit: &watch::Sender<bool>,
) -> std::io::Result<(Vec<std::thread::JoinHandle<()>>, Vec<tokio::runtime::Handle>)> {
    let mut threads = Vec::new();
    let mut loops = vec![tokio::runtime::Handle::current()];
    for i in 1..count {
        let runtime = worker_runtime()?;
        loops.push(runtime.handle().clone());
        let mut exit = exit.subscribe();
        let thread = std::thread::Builder::new().name(format!("trueip-{i}")).spawn(move || {
            upstream::set_worker(i);
            runtime.block_on(async move {
                tokio::spawn(server::timer_floor());
                let _ = exit.wait_for(|e| *e).await;
            });
            runtime.shutdown_timeout(Duration::from_secs(1));
        })?;
        threads.push(thread);
    }
    Ok((threads, loops))
}

/// One line per listener and the upstream, for `--check` and the startup log.
fn describe(s: &Settings) -> Vec<String> {
    let mut lines = Vec::new();
    let upstream = match &s.upstream.url {
        None => "the whoami page".to_string(),
        Some(target) => target.to_string(),
    };
    for l in &s.listeners {
        let scheme = match (l.mode, l.tls.is_some()) {
            (Mode::Http, false) => "http",
            (Mode::Http, true) => "https",
            (Mode::Tcp, false) => "tcp",
            (Mode::Tcp, true) => "tls+tcp",
        };
        let pp = match l.proxy_protocol {
            ProxyProtocol::Off => String::new(),
            ProxyProtocol::FromSenders => {
                ", PROXY header required from proxy_protocol_from, refused from others (served plain)"
                    .to_string()
            }
            ProxyProtocol::V1 => ", PROXY v1 expected".to_string(),
            ProxyProtocol::V2 => ", PROXY v2 expected".to_string(),
            ProxyProtocol::Any => ", PROXY v1 or v2 expected".to_string(),
        };
        let target = match (l.mode, &l.upstream) {
            (Mode::Tcp, Some(t)) => {
                let send = match l.send_proxy() {
                    SendProxy::Off => "",
                    SendProxy::V1 => " with PROXY v1",
                    SendProxy::V2 => " with PROXY v2",
                };
                format!("{t}{send}")
            }
            _ => upstream.clone(),
        };
        lines.push(format!("{scheme}://{} -> {target}{pp}", l.address));
    }
    if let Some(a) = s.admin.listen {
        lines.push(match s.admin.forgeries {
            0 => format!("admin http://{a}/healthz, /metrics"),
            n => format!("admin http://{a}/healthz, /metrics, /forgeries (the last {n})"),
        });
    }
    for m in &s.loaded.metas {
        lines.push(format!(
            "{} ranges: {} prefixes, fetched {}, from {}{}",
            m.provider,
            m.prefixes(),
            m.fetched_at,
            ranges::cache::path(&s.loaded.dir, &m.provider).display(),
            match s.ranges.refresh {
                Some(every) => format!(", refreshed every {}", duration::duration_text(every)),
                None => String::new(),
            }
        ));
    }
    for (name, addrs) in &s.names {
        lines.push(format!(
            "trust name {}, resolved again every {}",
            names::describe(name, addrs),
            duration::duration_text(s.resolve_every)
        ));
    }
    let serves_upstream = s.upstream.url.is_some();
    let paths =
        |which| rules::route::listener_paths(which, &s.admin.prefix, serves_upstream).join(" and ");
    let (health, metrics) =
        (paths(rules::route::Admin::Health), paths(rules::route::Admin::Metrics));
    if !health.is_empty() {
        let to = if s.admin.metrics_to_anyone {
            "to anyone ([admin] metrics_to_anyone)"
        } else {
            "only to clients a stranger cannot be: loopback, private, link-local and CGNAT \
             addresses, Unix sockets ([admin] metrics_to_anyone opens them)"
        };
        lines.push(format!(
            "health {health}, metrics {metrics} on every HTTP listener, the metrics {to}"
        ));
    }
    if s.upstream.url.is_some() && s.policy.strategy_name(0).is_some() {
        // Said at start because it is what an app behind an older build may have read.
        let relayed = s.headers.relay.join(", ");
        let (relay, other) = if relayed.is_empty() {
            (String::new(), " (True-Client-IP, X-Client-IP, ...)")
        } else {
            (format!(", and {relayed} ([headers] relay)"), "")
        };
        lines.push(format!(
            "from trusted hops, client addresses reach the upstream only where the decision \
             read them (the list header; a header:NAME strategy's header when it decided){relay}; \
             any other{other} is dropped: the app reads X-Real-IP"
        ));
    }
    lines
}

async fn serve(mut state: State, args: ServeArgs) -> ExitCode {
    let metrics = Arc::new(Metrics::default());
    let log = logging::init(&state.settings.log, metrics.clone());
    let fatal = |message: String| {
        if log.is_some() {
            tracing::error!("{}", trueip::shown::log_text(&message));
        } else {
            eprintln!("trueip serve: {}", terminal_lines(message));
        }
        ExitCode::from(1)
    };

    let mut listening = Listening::new();
    let opening = match listening.prepare(&mut state.settings, false) {
        Ok(o) => o,
        Err(e) => return fatal(e),
    };
    let mut term = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) {
        (Ok(t), Ok(i), Ok(h)) => (t, i, h),
        _ => return fatal("cannot install signal handlers".to_string()),
    };

    for line in describe(&state.settings) {
        tracing::info!("{}", trueip::shown::log_text(&line));
    }
    if state.settings.policy.strategy_name(0).is_none() {
        tracing::info!("no proxy trusted: the TCP peer is the client");
    }

    open_files::check(&state.settings);
    metrics.ranges_in_use(&state.settings.loaded.metas);
    metrics.names_in_use(&state.settings.names);
    for (name, addrs) in &state.settings.names {
        tracing::info!(name = name.as_str(), "trust name {}", names::describe(name, addrs));
    }
    metrics.listener_policies(state.settings.listener_policy_names());
    let shared = Arc::new(Shared::new(Arc::new(state), metrics.clone()));
    let (exit, _) = watch::channel(false);
    tokio::spawn(server::timer_floor());
    let (mut workers, runtimes) = match start_workers(state_workers(&shared), &exit) {
        Ok(w) => w,
        Err(e) => return fatal(format!("cannot start the worker threads: {e}")),
    };
    listening.set_workers(runtimes);
    listening.apply(opening, &shared);
    reload::started(listening);
    match reload::start_refresh(shared.clone(), args.clone(), exit.subscribe()) {
        Ok(thread) => workers.push(thread),
        Err(e) => {
            reload::close_all();
            return fatal(format!("cannot start the range refresh thread: {e}"));
        }
    }

    let (term_sig, int_sig, hup_sig) = &mut term;
    let why = loop {
        tokio::select! {
            _ = term_sig.recv() => break "SIGTERM",
            _ = int_sig.recv() => break "SIGINT",
            _ = hup_sig.recv() => reload::sighup(shared.clone(), args.clone()).await,
        }
    };

    let drain = shared.state.load().settings.limits.shutdown_timeout;
    tracing::info!(
        open = metrics.open_connections(),
        "{why}: draining connections (at most {drain:?})"
    );
    shared.begin_shutdown();
    let deadline = clock::deadline(tokio::time::Instant::now(), drain);
    loop {
        let open = metrics.open_connections();
        if open == 0 {
            tracing::info!("all connections closed; bye");
            break;
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(25)) => {}
            () = tokio::time::sleep_until(deadline) => {
                tracing::warn!(open, "limits.shutdown_timeout reached; closing the remaining connections");
                break;
            }
            _ = term_sig.recv() => { tracing::warn!(open, "second signal: exiting now"); break; }
            _ = int_sig.recv() => { tracing::warn!(open, "second signal: exiting now"); break; }
        }
    }
    exit.send_replace(true);
    for w in workers {
        let _ = w.join();
    }
    reload::close_all();
    if let Some(log) = log {
        log.flush(Duration::from_secs(2));
    }
    ExitCode::SUCCESS
}

fn state_workers(shared: &Shared) -> usize {
    shared.state.load().settings.limits.workers
}
