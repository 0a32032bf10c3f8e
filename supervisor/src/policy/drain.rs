//! `Drain`: what the supervisor does on SIGINT/SIGTERM, as supervisord and systemd do.
//!
//! The first stop signal drains: no new job is handed out, running jobs get the grace period to
//! finish, then their workers are killed. A second stop signal stops at once.
use std::time::{Duration, Instant};

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
}

impl Drain {
    /// A running state machine with this grace period.
    pub fn new(grace: Duration) -> Self {
        Self {
            grace,
            state: DrainState::Running,
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
