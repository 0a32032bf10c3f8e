//! The run's log: `tracing` records on stderr, for people (`warning: MESSAGE`) or for programs
//! (`--log-format json`: one JSON object per line), filtered by `-q`/`-v`, and written around
//! the progress bar so that neither garbles the other.
use std::io::{self, IsTerminal as _};

use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tracing::{Level, Subscriber};
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::registry::LookupSpan;

use crate::status;

/// The target of the records that make up the worker table: shown even with `-q`, since a
/// person asked for them (SIGUSR1, `--status-interval`), and laid out as a table in text.
pub const STATUS_TARGET: &str = "supervisor::status";

/// The target of every other record of the run.
pub const TARGET: &str = "supervisor";

/// How log records are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// `warning: MESSAGE`, one line per record.
    Text,
    /// One JSON object per line: `timestamp`, `level`, `message`, `event` and the event's
    /// fields (`worker`, `pid`, `job`, `file`, ...).
    Json,
}

/// How much of the run is shown on stderr.
#[derive(Debug, Args)]
#[command(next_help_heading = "Output options")]
pub struct LogArgs {
    /// Show only errors: no progress bar, no warnings.
    #[arg(short, long, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Also log routine events (workers started, jobs leased and finished); twice (-vv) also
    /// the settings and every planned job.
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// How log records are written on stderr.
    #[arg(long, value_name = "FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

impl LogArgs {
    /// The most detailed level shown.
    fn level(&self) -> LevelFilter {
        match (self.quiet, self.verbose) {
            (true, _) => LevelFilter::ERROR,
            (false, 0) => LevelFilter::INFO,
            (false, 1) => LevelFilter::DEBUG,
            (false, _) => LevelFilter::TRACE,
        }
    }

    /// Installs the log for the rest of the process and returns the progress bar it writes
    /// around: drawn on stderr when it is a terminal and the run is not `--quiet`, hidden
    /// otherwise.
    pub fn init(&self) -> ProgressBar {
        let progress = if !self.quiet && io::stderr().is_terminal() {
            let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
            if let Ok(style) =
                ProgressStyle::with_template("{bar:30} {pos}/{len} jobs {elapsed} {wide_msg}")
            {
                bar.set_style(style);
            }
            bar
        } else {
            ProgressBar::hidden()
        };
        let filter = Targets::new()
            .with_target(TARGET, self.level())
            .with_target(STATUS_TARGET, self.level().max(LevelFilter::INFO));
        let writer = AroundBar(progress.clone());
        let layer = tracing_subscriber::fmt::layer().with_writer(writer);
        // Only one subscriber per process; a second install (none happens) would be ignored.
        let _ = match self.log_format {
            LogFormat::Text => tracing::subscriber::set_global_default(
                tracing_subscriber::registry()
                    .with(layer.event_format(TextFormat))
                    .with(filter),
            ),
            LogFormat::Json => tracing::subscriber::set_global_default(
                tracing_subscriber::registry()
                    .with(
                        layer
                            .json()
                            .flatten_event(true)
                            .with_current_span(false)
                            .with_span_list(false),
                    )
                    .with(filter),
            ),
        };
        progress
    }
}

/// Writes records to stderr with the progress bar lifted meanwhile.
#[derive(Debug, Clone)]
struct AroundBar(ProgressBar);

impl<'a> MakeWriter<'a> for AroundBar {
    type Writer = AroundBar;
    fn make_writer(&'a self) -> AroundBar {
        self.clone()
    }
}

impl io::Write for AroundBar {
    /// Takes the whole record (the formatter writes each in one piece); a closed or full
    /// stderr cannot be reported anywhere, so the run goes on without it.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.suspend(|| {
            let _ = io::stderr().lock().write_all(buf);
        });
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Text records: `LEVEL: MESSAGE`, as clap writes its errors (`error: ...`); the worker table
/// as a table.
struct TextFormat;

impl<S, N> FormatEvent<S, N> for TextFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let mut message = Message::default();
        event.record(&mut message);
        let metadata = event.metadata();
        if metadata.target() == STATUS_TARGET {
            writeln!(writer, "{}", message.text)?;
            if message.event == "status" {
                writeln!(writer, "{}", status::COLUMNS)?;
            }
            return Ok(());
        }
        let level = match *metadata.level() {
            Level::ERROR => "error",
            Level::WARN => "warning",
            Level::INFO => "info",
            Level::DEBUG => "debug",
            Level::TRACE => "trace",
        };
        writeln!(writer, "{level}: {}", message.text)
    }
}

/// A record's message, and which event it reports.
#[derive(Default)]
struct Message {
    text: String,
    event: String,
}

impl tracing::field::Visit for Message {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        match field.name() {
            "message" => value.clone_into(&mut self.text),
            "event" => value.clone_into(&mut self.event),
            _ => {}
        }
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.text = format!("{value:?}");
        }
    }
}
