//! `RestartIntensity`: OTP's restart limit, at most R restarts within T seconds.
//!
//! Past the limit the supervisor does not keep restarting (a restart storm helps nobody: a worker
//! that crashes on start or on every job would crash again); it stops the run with a message
//! naming the limit.
use std::collections::VecDeque;
use std::time::{Duration, Instant};

use thiserror::Error;

/// More restarts than allowed happened within the period.
#[derive(Debug, Clone, PartialEq, Eq, Error, serde::Serialize)]
#[error(
    "restart intensity exceeded: more than {max_restarts} worker restart(s) within {period:?} \
     (raise the restart limit or its period if this is expected)"
)]
pub struct IntensityExceeded {
    /// R.
    pub max_restarts: u32,
    /// T.
    pub period: Duration,
}

/// A sliding window of recent restarts.
#[derive(Debug, Clone)]
pub struct RestartIntensity {
    max_restarts: u32,
    period: Duration,
    recent: VecDeque<Instant>,
}

impl RestartIntensity {
    /// Allows `max_restarts` restarts in any window of `period`.
    pub fn new(max_restarts: u32, period: Duration) -> Self {
        Self {
            max_restarts,
            period,
            recent: VecDeque::new(),
        }
    }

    /// Records a restart at `now`; an error when it is one too many.
    pub fn record(&mut self, now: Instant) -> Result<(), IntensityExceeded> {
        while self
            .recent
            .front()
            .is_some_and(|&at| now.duration_since(at) >= self.period)
        {
            self.recent.pop_front();
        }
        self.recent.push_back(now);
        if self.recent.len() > self.max_restarts as usize {
            Err(IntensityExceeded {
                max_restarts: self.max_restarts,
                period: self.period,
            })
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_r_restarts_in_t_and_refuses_the_next() {
        let t0 = Instant::now();
        let mut limit = RestartIntensity::new(3, Duration::from_secs(10));
        for s in [0, 1, 2] {
            assert!(limit.record(t0 + Duration::from_secs(s)).is_ok());
        }
        let err = limit.record(t0 + Duration::from_secs(9)).unwrap_err();
        assert_eq!(err.max_restarts, 3);
        assert!(err
            .to_string()
            .contains("more than 3 worker restart(s) within 10s"));
    }

    #[test]
    fn old_restarts_leave_the_window() {
        let t0 = Instant::now();
        let mut limit = RestartIntensity::new(2, Duration::from_secs(5));
        assert!(limit.record(t0).is_ok());
        assert!(limit.record(t0 + Duration::from_secs(4)).is_ok());
        // The first one is 5 s old: out of the window.
        assert!(limit.record(t0 + Duration::from_secs(5)).is_ok());
        assert!(limit.record(t0 + Duration::from_secs(6)).is_err());
    }

    #[test]
    fn zero_restarts_allowed_means_the_first_one_stops() {
        let mut limit = RestartIntensity::new(0, Duration::from_secs(1));
        assert!(limit.record(Instant::now()).is_err());
    }
}
