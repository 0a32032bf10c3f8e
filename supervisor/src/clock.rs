//! `Clock`: where the supervision loop reads the time, so that its timers (heartbeats, job
//! timeouts, backoff, grace periods) can be tested without waiting for them.
use std::time::{Duration, Instant};

/// A source of the current time.
pub trait Clock {
    /// Now.
    fn now(&self) -> Instant;
}

/// `now + after`, or a point a century away when that is past what the clock can hold (a
/// `Duration::MAX` grace period means "wait for ever", not a panic).
pub(crate) fn deadline_after(now: Instant, after: Duration) -> Instant {
    now.checked_add(after)
        .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 60 * 60))
}

/// The system's monotonic clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}
