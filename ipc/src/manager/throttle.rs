//! Pacing for what a hostile or overloaded peer can make the server do over and over: retrying a
//! failing `accept` ([`Backoff`]) and writing the same kind of log line ([`LogThrottle`]). Both
//! take the time as an argument, so their arithmetic is tested without sleeping.

use std::time::{Duration, Instant};

/// Exponential backoff for a failing operation: each failure in a row doubles the pause, up to
/// `max`; a success resets it.
#[derive(Debug)]
pub(crate) struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
    until: Option<Instant>,
}

impl Backoff {
    pub(crate) fn new(min: Duration, max: Duration) -> Backoff {
        Backoff {
            min,
            max,
            next: min,
            until: None,
        }
    }

    /// Records a failure at `now` and returns the pause before the next attempt.
    pub(crate) fn failed(&mut self, now: Instant) -> Duration {
        let pause = self.next;
        self.next = (self.next * 2).min(self.max);
        self.until = Some(now + pause);
        pause
    }

    pub(crate) fn succeeded(&mut self) {
        self.next = self.min;
        self.until = None;
    }

    /// When the pause ends, if one is running at `now`.
    pub(crate) fn paused_until(&self, now: Instant) -> Option<Instant> {
        self.until.filter(|&until| until > now)
    }
}

/// One kind of log line, written at most once per `interval`: the first occurrence is written
/// at once, the ones after it in the same interval are only counted, and the count is written
/// (with the latest message) when the interval ends. A flood of failures costs a line per
/// interval, and a lone failure is still reported without delay.
#[derive(Debug)]
pub(crate) struct LogThrottle {
    interval: Duration,
    window_start: Option<Instant>,
    suppressed: u64,
    latest: String,
}

impl LogThrottle {
    pub(crate) fn new(interval: Duration) -> LogThrottle {
        LogThrottle {
            interval,
            window_start: None,
            suppressed: 0,
            latest: String::new(),
        }
    }

    fn in_window(&self, now: Instant) -> bool {
        self.window_start
            .is_some_and(|start| now < start + self.interval)
    }

    /// Records one occurrence; returns the line to write now, if any.
    pub(crate) fn note(&mut self, now: Instant, message: String) -> Option<String> {
        if self.in_window(now) {
            self.suppressed += 1;
            self.latest = message;
            return None;
        }
        // A window that ended with a count not yet written: `flush` would have written it had
        // it been called in time, so write it with this line.
        let line = match self.suppressed {
            0 => message,
            n => format!("{message} (and {n} more like it before)"),
        };
        self.window_start = Some(now);
        self.suppressed = 0;
        Some(line)
    }

    /// The count of occurrences left unwritten, once their interval has ended.
    pub(crate) fn flush(&mut self, now: Instant) -> Option<String> {
        if self.suppressed == 0 || self.in_window(now) {
            return None;
        }
        let line = format!(
            "{} more like this in the last {:?}, the latest: {}",
            self.suppressed, self.interval, self.latest
        );
        // The count opens a new window: a steady flood gives one line per interval.
        self.window_start = Some(now);
        self.suppressed = 0;
        self.latest.clear();
        Some(line)
    }

    /// When `flush` has something to write, if it will.
    pub(crate) fn next_flush(&self) -> Option<Instant> {
        match (self.suppressed, self.window_start) {
            (0, _) | (_, None) => None,
            (_, Some(start)) => Some(start + self.interval),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn backoff_doubles_up_to_the_cap_and_resets() {
        let t0 = Instant::now();
        let mut backoff = Backoff::new(10 * MS, 100 * MS);
        let pauses: Vec<_> = (0..6).map(|_| backoff.failed(t0)).collect();
        assert_eq!(
            pauses,
            [10 * MS, 20 * MS, 40 * MS, 80 * MS, 100 * MS, 100 * MS]
        );
        assert_eq!(backoff.paused_until(t0), Some(t0 + 100 * MS));
        assert_eq!(backoff.paused_until(t0 + 100 * MS), None);
        backoff.succeeded();
        assert_eq!(backoff.paused_until(t0), None);
        assert_eq!(backoff.failed(t0), 10 * MS);
    }

    /// A mock EMFILE storm: accept fails every time it is retried, for 25 s. With the backoff
    /// that is about 250 attempts, and with the throttle three lines (then one for the rest).
    #[test]
    fn an_accept_error_storm_gives_a_line_per_interval() {
        let t0 = Instant::now();
        let mut backoff = Backoff::new(10 * MS, 100 * MS);
        let mut log = LogThrottle::new(Duration::from_secs(10));
        let mut now = t0;
        let mut attempts = 0;
        let mut lines = Vec::new();
        while now < t0 + Duration::from_secs(25) {
            attempts += 1;
            lines.extend(log.note(now, "accept failed: Too many open files".into()));
            now += backoff.failed(now);
            lines.extend(log.flush(now));
        }
        assert!((250..=260).contains(&attempts), "{attempts} attempts");
        assert_eq!(lines.len(), 3, "{lines:#?}");
        assert_eq!(lines[0], "accept failed: Too many open files");
        assert!(
            lines[1].starts_with("102 more like this in the last 10s"),
            "{}",
            lines[1]
        );
        // After the storm, the pending count is written when its interval ends.
        let end = log.next_flush().expect("a count is pending");
        assert!(log.flush(end - MS).is_none());
        assert!(log.flush(end).is_some());
        assert!(log.next_flush().is_none());
    }

    #[test]
    fn a_lone_occurrence_is_written_at_once() {
        let t0 = Instant::now();
        let mut log = LogThrottle::new(Duration::from_secs(10));
        assert_eq!(log.note(t0, "one".into()).as_deref(), Some("one"));
        assert!(log.next_flush().is_none());
        let later = t0 + Duration::from_secs(11);
        assert_eq!(log.note(later, "two".into()).as_deref(), Some("two"));
        assert!(log.note(later + MS, "three".into()).is_none());
        // Not flushed in time: the count rides along with the next line written.
        let much_later = later + Duration::from_secs(60);
        assert_eq!(
            log.note(much_later, "four".into()).as_deref(),
            Some("four (and 1 more like it before)")
        );
    }
}
