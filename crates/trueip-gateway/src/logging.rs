//! Logs: diagnostics on stderr, the access log on stdout, text or JSON; colour only on a
//! terminal.
//!
//! Access-log lines go through a bounded queue to a writer thread, so a slow stdout
//! (a full pipe, a stalled journald) never blocks a request; when the queue is full a
//! line is dropped and counted (`trueip_log_lines_dropped_total`), never waited for.

use std::io::{self, IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::time::Duration;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::{FilterExt, filter_fn};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, Registry};

use crate::config::{LogFormat, LogSettings};
use crate::metrics::Metrics;

/// The tracing target of access-log events.
pub(crate) const ACCESS: &str = "trueip::access";

enum Msg {
    Line(Vec<u8>),
    Flush(mpsc::Sender<()>),
}

/// Hands access-log lines to the writer thread.
#[derive(Clone)]
pub(crate) struct QueueWriter {
    tx: SyncSender<Msg>,
    metrics: Arc<Metrics>,
}

/// One event's bytes, queued when dropped.
pub(crate) struct Line {
    buf: Vec<u8>,
    queue: QueueWriter,
}

impl Write for Line {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for Line {
    fn drop(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let buf = std::mem::take(&mut self.buf);
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) =
            self.queue.tx.try_send(Msg::Line(buf))
        {
            self.queue.metrics.log_dropped();
        }
    }
}

impl<'a> MakeWriter<'a> for QueueWriter {
    type Writer = Line;
    fn make_writer(&'a self) -> Line {
        Line { buf: Vec::with_capacity(256), queue: self.clone() }
    }
}

/// Lets the caller wait until queued lines are written.
#[derive(Clone)]
pub(crate) struct LogHandle {
    tx: SyncSender<Msg>,
}

impl LogHandle {
    /// Waits (at most `timeout`) for the queue to drain.
    pub(crate) fn flush(&self, timeout: Duration) {
        let (done_tx, done_rx) = mpsc::channel();
        if self.tx.send(Msg::Flush(done_tx)).is_ok() {
            let _ = done_rx.recv_timeout(timeout);
        }
    }
}

fn spawn_writer(metrics: Arc<Metrics>) -> (QueueWriter, LogHandle) {
    let (tx, rx) = mpsc::sync_channel::<Msg>(8192);
    let spawned = std::thread::Builder::new().name("trueip-access-log".into()).spawn(move || {
        let stdout = io::stdout();
        let mut out = io::BufWriter::with_capacity(64 * 1024, stdout.lock());
        while let Ok(msg) = rx.recv() {
            let mut next = Some(msg);
            while let Some(msg) = next.take() {
                match msg {
                    Msg::Line(line) => {
                        let _ = out.write_all(&line);
                    }
                    Msg::Flush(done) => {
                        let _ = out.flush();
                        let _ = done.send(());
                    }
                }
                next = rx.try_recv().ok();
            }
            let _ = out.flush();
        }
    });
    if spawned.is_err() {
        eprintln!(
            "trueip: cannot start the access-log writer thread; access-log lines will be dropped"
        );
    }
    (QueueWriter { tx: tx.clone(), metrics }, LogHandle { tx })
}

/// How many lines of one [`Throttle`]d kind are written in a second.
pub(crate) const THROTTLED_PER_SECOND: u64 = 10;

/// A diagnostic a stranger can cause once per connection or request (a connection to a
/// PROXY listener from outside `proxy_protocol_from`, one refused at `max_connections`, a
/// request or a relay whose upstream fails): at most
/// [`THROTTLED_PER_SECOND`] lines of it a second, the rest counted and named in the next
/// line written. Diagnostics go to stderr from the worker that logs them, without a
/// queue: unthrottled, a flood of connections was as many lines, each a write a slow
/// stderr (a stalled journald or pipe) holds the worker in. The metrics count every one.
pub(crate) struct Throttle {
    /// The Unix second the count is for.
    second: AtomicU64,
    /// Lines asked for in that second.
    asked: AtomicU64,
    /// Lines left out since the last one written.
    left_out: AtomicU64,
}

impl Throttle {
    pub(crate) const fn new() -> Self {
        Throttle {
            second: AtomicU64::new(0),
            asked: AtomicU64::new(0),
            left_out: AtomicU64::new(0),
        }
    }

    /// `Some(n)`: write the line now, saying that `n` lines were left out before it;
    /// `None`: leave it out. Two workers starting a second together may each start the
    /// count again: a few lines more in that second, never an unbounded number.
    pub(crate) fn admit(&self) -> Option<u64> {
        let now = crate::clock::unix_now();
        if self.second.swap(now, Ordering::Relaxed) != now {
            self.asked.store(0, Ordering::Relaxed);
        }
        if self.asked.fetch_add(1, Ordering::Relaxed) < THROTTLED_PER_SECOND {
            Some(self.left_out.swap(0, Ordering::Relaxed))
        } else {
            self.left_out.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

/// Whether diagnostics on stderr are coloured: only for a person at a terminal. A file, a
/// pipe or journald would keep the escape codes as text; `NO_COLOR` (no-color.org) turns
/// colour off at a terminal too.
fn colour_stderr() -> bool {
    io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Installs the global subscriber. Returns `None` if one was already installed (tests).
pub(crate) fn init(settings: &LogSettings, metrics: Arc<Metrics>) -> Option<LogHandle> {
    let (queue, handle) = spawn_writer(metrics);
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&settings.level));
    let not_access = filter_fn(|meta| meta.target() != ACCESS);
    let access_on = settings.access_log;
    let only_access = filter_fn(move |meta| access_on && meta.target() == ACCESS);
    type Boxed = Box<dyn Layer<Registry> + Send + Sync>;
    let (diag, access): (Boxed, Boxed) = match settings.format {
        LogFormat::Text => (
            tracing_subscriber::fmt::layer()
                .with_writer(io::stderr)
                .with_target(false)
                .with_ansi(colour_stderr())
                .with_filter(filter.and(not_access))
                .boxed(),
            tracing_subscriber::fmt::layer()
                .with_writer(queue)
                .with_target(false)
                .with_level(false)
                .with_ansi(false)
                .with_filter(only_access)
                .boxed(),
        ),
        LogFormat::Json => (
            // JSON is for machines: never coloured (span fields would carry the codes).
            tracing_subscriber::fmt::layer()
                .json()
                .with_writer(io::stderr)
                .with_ansi(false)
                .with_filter(filter.and(not_access))
                .boxed(),
            tracing_subscriber::fmt::layer()
                .json()
                .flatten_event(true)
                .with_writer(queue)
                .with_ansi(false)
                .with_filter(only_access)
                .boxed(),
        ),
    };
    tracing_subscriber::registry().with(vec![diag, access]).try_init().ok().map(|()| handle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_throttle_writes_a_few_lines_a_second_and_counts_the_rest() {
        let throttle = Throttle::new();
        let start = crate::clock::unix_now();
        let mut written = Vec::new();
        for _ in 0..1000 {
            if let Some(n) = throttle.admit() {
                written.push(n);
            }
        }
        // The loop may cross into the next second once.
        if crate::clock::unix_now() == start {
            assert_eq!(written.len() as u64, THROTTLED_PER_SECOND, "{written:?}");
            assert!(written.iter().all(|&n| n == 0), "{written:?}");
        } else {
            assert!(written.len() as u64 <= 2 * THROTTLED_PER_SECOND, "{written:?}");
        }
        // The next second's first line names what was left out.
        throttle.second.store(0, Ordering::Relaxed);
        let next = throttle.admit();
        assert_eq!(next.map(|n| n + written.len() as u64), Some(1000), "{written:?} then {next:?}");
    }
}
