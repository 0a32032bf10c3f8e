//! `Console`: how the `supervisor` command shows a run's events: log lines on stderr (text for
//! people, JSON lines for programs), the worker table, and a progress bar when stderr is a
//! terminal.
use std::io::{IsTerminal, Write as _};

use herd_supervisor::{Event, Level, Observer};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::status;

/// How log records are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// `supervisor: MESSAGE`, one line per event.
    Text,
    /// One JSON object per line: `level`, `message`, `event` and the event's fields.
    Json,
}

/// Writes the events at or above a level to stderr and keeps the progress bar up to date.
#[derive(Debug)]
pub struct Console {
    format: LogFormat,
    threshold: Level,
    progress: ProgressBar,
}

impl Console {
    /// A console showing events of `threshold` and above in `format`, with a progress bar if
    /// `progress` and stderr is a terminal.
    pub fn new(format: LogFormat, threshold: Level, progress: bool) -> Self {
        let progress = if progress && std::io::stderr().is_terminal() {
            let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
            if let Ok(style) =
                ProgressStyle::with_template("{bar:40} {pos}/{len} jobs {elapsed} {msg}")
            {
                bar.set_style(style);
            }
            bar
        } else {
            ProgressBar::hidden()
        };
        Self {
            format,
            threshold,
            progress,
        }
    }

    /// Removes the progress bar.
    pub fn finish(&self) {
        self.progress.finish_and_clear();
    }

    fn write(&self, event: &Event) {
        let text = match (self.format, event) {
            (LogFormat::Text, Event::Status(table)) => status::render(table),
            (LogFormat::Text, event) => format!("supervisor: {event}\n"),
            (LogFormat::Json, event) => json_line(event),
        };
        self.progress.suspend(|| {
            // A closed or full stderr cannot be reported anywhere; the run goes on.
            let _ = std::io::stderr().lock().write_all(text.as_bytes());
        });
    }
}

/// One JSON object for `event`: its fields, plus `level` and a human-readable `message`.
fn json_line(event: &Event) -> String {
    let mut record = serde_json::Map::new();
    record.insert("level".into(), event.level().to_string().into());
    record.insert("message".into(), event.to_string().into());
    match serde_json::to_value(event) {
        Ok(serde_json::Value::Object(fields)) => record.extend(fields),
        Ok(other) => {
            record.insert("event".into(), other);
        }
        Err(error) => {
            record.insert("serialize_error".into(), error.to_string().into());
        }
    }
    let mut line = serde_json::Value::Object(record).to_string();
    line.push('\n');
    line
}

impl Observer for Console {
    fn on_event(&mut self, event: &Event) {
        match event {
            Event::JobsAdded { total } => self.progress.set_length(*total),
            Event::JobFinished { .. } | Event::JobFailed { .. } => self.progress.inc(1),
            _ => {}
        }
        if event.level() >= self.threshold {
            self.write(event);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herd_supervisor::{LossCause, WorkerId};

    #[test]
    fn a_json_line_carries_level_message_and_fields() {
        let event = Event::JobRequeued {
            job: 7,
            worker: WorkerId(2),
            pid: herd_ipc::Pid::from_raw(4242),
            cause: LossCause::MissedHeartbeat,
            next_attempt: 2,
            max_attempts: 3,
        };
        let line = json_line(&event);
        assert!(line.ends_with('\n') && line.trim_end().lines().count() == 1);
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["event"], "job_requeued");
        assert_eq!(value["level"], "warn");
        assert_eq!(value["job"], 7);
        assert_eq!(value["worker"], 2);
        assert_eq!(value["pid"], 4242);
        assert_eq!(value["cause"], "missed_heartbeat");
        assert_eq!(value["message"], event.to_string());
    }
}
