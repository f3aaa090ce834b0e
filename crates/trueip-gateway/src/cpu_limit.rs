//! A worker under a CPU limit (a cgroup's CPU bandwidth: a container's or systemd unit's
//! CPU quota) stops where its quota ends, not a scheduler tick later.
//!
//! The kernel charges a running thread's CPU time to its group's quota when it updates the
//! thread's runtime: at a context switch, and otherwise at the scheduler tick (every 4 ms
//! at the common `HZ=250`). A busy worker whose event loop finds events ready at every
//! poll never sleeps, so it is charged only at the tick: it can run a whole tick past a
//! 2 ms quota and then pays the overrun back by standing still for the next period as
//! well. Traced with `perf sched` under `CPU_QUOTA=0.2` (2 ms a 10 ms period): runs of
//! exactly 4.00 ms from tick to tick, one period in two skipped, every connection served
//! several times in a run and then none for 16 ms, so p99 sat near two stops where
//! HAProxy's sat near one (HAProxy reads its thread's CPU clock at every poll).
//!
//! Reading the thread's own CPU clock makes the kernel update its runtime there and
//! then, charging the quota and stopping the thread if it is spent. Each worker does that
//! whenever its run queue empties, before it asks epoll for events (tokio's
//! `on_thread_park`), at most once every [`CHARGE_EVERY`] of wall time: a busy worker
//! makes at most 4,000 such system calls a second, an idle one none.
//! Without a CPU limit the kernel only updates a number; total CPU is unchanged either
//! way, only where the stops fall.

use std::cell::Cell;
use std::time::{Duration, Instant};

/// The longest a busy worker runs between two charges (plus one turn of its event loop):
/// a quarter of the smallest quota the kernel accepts (1 ms).
const CHARGE_EVERY: Duration = Duration::from_micros(250);

thread_local! {
    /// When this thread's CPU time was last charged.
    static CHARGED: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// Whether a worker last charged at `last` is due for a charge at `now`.
fn due(last: Option<Instant>, now: Instant) -> bool {
    last.is_none_or(|at| now.saturating_duration_since(at) >= CHARGE_EVERY)
}

/// Called by a worker's event loop when its run queue is empty, before it waits for events.
pub(crate) fn before_poll() {
    let now = Instant::now();
    CHARGED.with(|charged| {
        if due(charged.get(), now) {
            charged.set(Some(now));
            charge();
        }
    });
}

/// Asks for this thread's CPU time: the kernel charges what it ran so far to the group's
/// quota (`task_sched_runtime`), which is the point; the reading itself is not used.
/// Through libc: rustix's `clock_gettime` first looks for the vDSO, and that look
/// crashes a process under valgrind (`bench/instructions.sh`), where this thread clock
/// is a system call either way.
#[cfg(target_os = "linux")]
fn charge() {
    let mut at = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    #[allow(
        unsafe_code,
        reason = "clock_gettime into a local timespec: the pointer is to a live, writable value"
    )]
    // SAFETY: `at` is a valid `timespec` that outlives the call.
    let _ = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &raw mut at) };
}

/// CPU limits of this kind are Linux's (cgroups).
#[cfg(not(target_os = "linux"))]
fn charge() {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_charge_is_due_first_and_then_once_per_interval() {
        let t = Instant::now();
        assert!(due(None, t));
        assert!(!due(Some(t), t));
        assert!(!due(Some(t), t + CHARGE_EVERY - Duration::from_micros(1)));
        assert!(due(Some(t), t + CHARGE_EVERY));
        // A reading from before `last` (not monotonic across threads) waits, never panics.
        assert!(!due(Some(t + CHARGE_EVERY), t));
    }

    /// The worker's event loop charges before it parks: fails if the hook is not installed.
    #[test]
    fn a_worker_charges_its_cpu_time_before_it_waits_for_events() {
        std::thread::spawn(|| {
            assert_eq!(CHARGED.get(), None);
            let runtime = crate::worker_runtime().unwrap();
            runtime.block_on(async { tokio::time::sleep(Duration::from_millis(1)).await });
            assert!(CHARGED.get().is_some(), "the event loop parked without charging");
        })
        .join()
        .unwrap();
    }
}
