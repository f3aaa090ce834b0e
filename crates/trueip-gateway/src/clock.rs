//! Deadlines that cannot overflow.
//!
//! `Instant + Duration` panics when the sum does not fit the clock. The config bounds
//! every timeout ([`MAX_TIMEOUT`](crate::config::MAX_TIMEOUT)), but a deadline is
//! computed on every request: here the sum saturates instead, so no value that reaches a
//! timer — from the config, a reload, or a future caller — can take a worker down.

use std::time::Duration;

use tokio::time::Instant;

/// So far ahead that it never comes (as tokio's own `sleep` does with a duration too
/// long to add).
const FAR: Duration = Duration::from_secs(86_400 * 365 * 30);

/// `from + after`, or a moment that never comes when the sum does not fit the clock.
pub(crate) fn deadline(from: Instant, after: Duration) -> Instant {
    from.checked_add(after).or_else(|| from.checked_add(FAR)).unwrap_or(from)
}

/// [`deadline`] from a `std` clock reading.
pub(crate) fn deadline_std(from: std::time::Instant, after: Duration) -> Instant {
    deadline(Instant::from_std(from), after)
}

/// The wall clock in Unix seconds (0 before 1970).
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_too_large_for_the_clock_saturate() {
        let now = Instant::now();
        assert_eq!(deadline(now, Duration::from_secs(5)), now + Duration::from_secs(5));
        for huge in [Duration::MAX, Duration::from_secs(u64::MAX), FAR * 1000] {
            assert!(deadline(now, huge) > now + Duration::from_secs(86_400 * 365));
            assert!(deadline_std(now.into_std(), huge) > now);
        }
    }
}
