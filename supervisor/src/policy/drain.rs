//! `Drain`: what the supervisor does on SIGINT/SIGTERM, as supervisord and systemd do.
//!
//! The first stop signal drains: no new job is handed out, running jobs get the grace period to
//! finish, then their workers are killed. A second stop signal stops at once.
//!
//! One stop request often arrives as two deliveries of the same signal: `timeout` and process
//! managers send SIGTERM to the process and to its group, and a terminal's Ctrl-C reaches every
//! process of the foreground group. The same signal again within [`ECHO_WINDOW`] of the one
//! counted is taken for such an echo, not for a second request.
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

/// How soon after a counted stop signal the same signal is an echo of it, not a new request:
/// far longer than the microseconds between two deliveries of one request, far shorter than a
/// person pressing Ctrl-C twice.
pub const ECHO_WINDOW: Duration = Duration::from_millis(100);

/// Where the run is in its shutdown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DrainState {
    /// Normal operation.
    Running,
    /// No new jobs; running ones may finish until `deadline`.
    Draining { deadline: Instant },
    /// Kill every worker now.
    Stopping,
}

/// The stop-signal state machine.
#[derive(Debug, Clone)]
pub struct Drain {
    grace: Duration,
    state: DrainState,
    /// The last stop signal counted, and when.
    last: Option<(Signal, Instant)>,
}

impl Drain {
    /// A running state machine with this grace period.
    pub fn new(grace: Duration) -> Self {
        Self {
            grace,
            state: DrainState::Running,
            last: None,
        }
    }

    /// The current state, with the grace deadline turned into `Stopping` once past.
    pub fn state(&mut self, now: Instant) -> DrainState {
        if let DrainState::Draining { deadline } = self.state {
            if now >= deadline {
                self.state = DrainState::Stopping;
            }
        }
        self.state
    }

    /// A stop signal arrived.
    pub fn on_stop_signal(&mut self, now: Instant) -> DrainState {
        self.state = match self.state {
            DrainState::Running => DrainState::Draining {
                deadline: crate::clock::deadline_after(now, self.grace),
            },
            DrainState::Draining { .. } | DrainState::Stopping => DrainState::Stopping,
        };
        self.state(now)
    }

    /// Stop signal `signal` arrived at `now`: the new state, or `None` if it is an echo of the
    /// last one counted (the same signal within 100 ms), which changes nothing.
    pub fn on_signal(&mut self, signal: Signal, now: Instant) -> Option<DrainState> {
        if let Some((last, at)) = self.last {
            if last == signal && now.saturating_duration_since(at) < ECHO_WINDOW {
                return None;
            }
        }
        self.last = Some((signal, now));
        Some(self.on_stop_signal(now))
    }

    /// Whether new jobs may be handed out.
    pub fn accepts_jobs(&self) -> bool {
        self.state == DrainState::Running
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_signal_drains_then_grace_expires() {
        let t0 = Instant::now();
        let mut drain = Drain::new(Duration::from_secs(3));
        assert!(drain.accepts_jobs());
        let deadline = t0 + Duration::from_secs(3);
        assert_eq!(drain.on_stop_signal(t0), DrainState::Draining { deadline });
        assert!(!drain.accepts_jobs());
        assert_eq!(
            drain.state(t0 + Duration::from_secs(2)),
            DrainState::Draining { deadline }
        );
        assert_eq!(
            drain.state(t0 + Duration::from_secs(3)),
            DrainState::Stopping
        );
    }

    #[test]
    fn second_signal_stops_at_once() {
        let t0 = Instant::now();
        let mut drain = Drain::new(Duration::from_secs(30));
        drain.on_stop_signal(t0);
        assert_eq!(
            drain.on_stop_signal(t0 + Duration::from_millis(10)),
            DrainState::Stopping
        );
        assert_eq!(
            drain.on_stop_signal(t0 + Duration::from_millis(20)),
            DrainState::Stopping
        );
    }

    #[test]
    fn the_same_signal_twice_within_the_echo_window_counts_once() {
        let t0 = Instant::now();
        let mut drain = Drain::new(Duration::from_secs(30));
        let deadline = t0 + Duration::from_secs(30);
        assert_eq!(
            drain.on_signal(Signal::SIGTERM, t0),
            Some(DrainState::Draining { deadline })
        );
        // `timeout` signalling the pid and its group: one request.
        assert_eq!(drain.on_signal(Signal::SIGTERM, t0), None);
        assert_eq!(drain.on_signal(Signal::SIGTERM, t0 + ECHO_WINDOW / 2), None);
        assert_eq!(
            drain.state(t0 + ECHO_WINDOW),
            DrainState::Draining { deadline }
        );
        // Later, the same signal is a second request.
        assert_eq!(
            drain.on_signal(Signal::SIGTERM, t0 + ECHO_WINDOW * 2),
            Some(DrainState::Stopping)
        );
    }

    #[test]
    fn a_different_stop_signal_is_never_an_echo() {
        let t0 = Instant::now();
        let mut drain = Drain::new(Duration::from_secs(30));
        drain.on_signal(Signal::SIGTERM, t0);
        assert_eq!(
            drain.on_signal(Signal::SIGINT, t0 + Duration::from_millis(1)),
            Some(DrainState::Stopping)
        );
    }

    #[test]
    fn an_echo_is_measured_from_the_signal_counted_not_the_last_echo() {
        let t0 = Instant::now();
        let mut drain = Drain::new(Duration::from_secs(30));
        drain.on_signal(Signal::SIGINT, t0);
        assert_eq!(drain.on_signal(Signal::SIGINT, t0 + ECHO_WINDOW / 2), None);
        assert_eq!(
            drain.on_signal(Signal::SIGINT, t0 + ECHO_WINDOW + ECHO_WINDOW / 4),
            Some(DrainState::Stopping)
        );
    }

    #[test]
    fn zero_grace_stops_on_the_first_signal() {
        let t0 = Instant::now();
        let mut drain = Drain::new(Duration::ZERO);
        assert_eq!(drain.on_stop_signal(t0), DrainState::Stopping);
    }

    #[test]
    fn an_endless_grace_drains_for_ever_without_overflow() {
        let t0 = Instant::now();
        let mut drain = Drain::new(Duration::MAX);
        assert!(matches!(
            drain.on_stop_signal(t0),
            DrainState::Draining { .. }
        ));
        let much_later = t0 + Duration::from_secs(10 * 365 * 24 * 60 * 60);
        assert!(matches!(
            drain.state(much_later),
            DrainState::Draining { .. }
        ));
    }
}
