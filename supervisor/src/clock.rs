//! `Clock`: where the supervision loop reads the time, so that its timers (heartbeats, job
//! timeouts, backoff, grace periods) can be tested without waiting for them.
use std::time::Instant;

/// A source of the current time.
pub trait Clock {
    /// Now.
    fn now(&self) -> Instant;
}

/// The system's monotonic clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}
