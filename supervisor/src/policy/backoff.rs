//! `Backoff`: how long to wait before starting a replacement for a worker that died.
//!
//! The first replacement starts at once (one crash is usually a one-off, e.g. an OOM kill); each
//! further death without a finished job in between doubles the wait, up to a ceiling. A finished
//! job proves the workers are healthy and resets it. Together with [`crate::RestartIntensity`]
//! this turns a crash loop into a few spaced restarts and then a clear stop.
use std::time::Duration;

/// Exponential backoff over consecutive worker deaths.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    consecutive_deaths: u32,
}

impl Backoff {
    /// Waits grow as `0, base, 2 base, 4 base, ...`, never beyond `max`.
    pub fn new(base: Duration, max: Duration) -> Self {
        Self {
            base,
            max,
            consecutive_deaths: 0,
        }
    }

    /// A worker died: the delay before its replacement starts.
    pub fn next_delay(&mut self) -> Duration {
        let deaths = self.consecutive_deaths;
        self.consecutive_deaths = self.consecutive_deaths.saturating_add(1);
        if deaths == 0 {
            return Duration::ZERO;
        }
        let factor = 1u32.checked_shl(deaths - 1).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.max)
    }

    /// A job finished: workers are healthy again.
    pub fn reset(&mut self) {
        self.consecutive_deaths = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_ceiling_and_resets_on_success() {
        let ms = Duration::from_millis;
        let mut backoff = Backoff::new(ms(50), ms(300));
        let delays: Vec<_> = (0..6).map(|_| backoff.next_delay()).collect();
        assert_eq!(delays, [ms(0), ms(50), ms(100), ms(200), ms(300), ms(300)]);
        backoff.reset();
        assert_eq!(backoff.next_delay(), ms(0));
        assert_eq!(backoff.next_delay(), ms(50));
    }

    #[test]
    fn many_deaths_do_not_overflow() {
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(5));
        for _ in 0..100 {
            assert!(backoff.next_delay() <= Duration::from_secs(5));
        }
    }
}
