//! The error of a bounded wait that ran out of time, and the deadline arithmetic behind it.

use std::time::{Duration, Instant};

/// A wait with a timeout (`acquire_timeout`, `wait_timeout`) ran out of time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("timed out")]
pub struct TimedOut;

impl TimedOut {
    /// Always true, so code written against the other wait errors reads the same here.
    pub fn is_timeout(&self) -> bool {
        true
    }
}

/// The instant `timeout` from now; None (wait forever) if that is beyond what `Instant` holds.
pub(crate) fn deadline_after(timeout: Duration) -> Option<Instant> {
    Instant::now().checked_add(timeout)
}
