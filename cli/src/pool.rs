//! The options every pool-running subcommand shares (`run logcount`, `diag`): how the pool is
//! supervised and how the run is logged, and the supervisor they configure.
use std::time::Duration;

use anyhow::Context as _;
use clap::error::ErrorKind;
use clap::Args;
use herd_supervisor::{
    IpcLauncher, LeaseTable, RunReport, SignalInbox, StartMethod, StopReason, Supervisor,
    SupervisorConfig,
};
use indicatif::ProgressBar;
use nix::sys::signal::Signal;

use crate::builtin::builtin_worker;
use crate::console::{Console, JobLabel};
use crate::logging::LogArgs;
use crate::output::usage_error;

pub fn parse_seconds(text: &str) -> Result<Duration, String> {
    let seconds: f64 = text
        .parse()
        .map_err(|_| format!("expected seconds, got {text:?}"))?;
    Duration::try_from_secs_f64(seconds)
        .map_err(|_| format!("expected a non-negative number of seconds, got {text:?}"))
}

/// Seconds that must be more than zero: a zero timeout would kill every job at once.
fn parse_positive_seconds(text: &str) -> Result<Duration, String> {
    let seconds = parse_seconds(text)?;
    if seconds.is_zero() {
        return Err(format!(
            "expected a positive number of seconds, got {text:?}"
        ));
    }
    Ok(seconds)
}

/// The shortest heartbeat timeout: workers heartbeat every timeout / 5, but not more often than
/// every 10 ms, so a shorter timeout would kill healthy workers between two beats.
const MIN_HEARTBEAT_TIMEOUT: Duration = Duration::from_millis(100);

fn parse_heartbeat_timeout(text: &str) -> Result<Duration, String> {
    let seconds = parse_seconds(text)?;
    if seconds < MIN_HEARTBEAT_TIMEOUT {
        return Err(format!(
            "expected at least {} seconds, got {text:?}",
            MIN_HEARTBEAT_TIMEOUT.as_secs_f64()
        ));
    }
    Ok(seconds)
}

fn parse_workers(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) | Err(_) => Err(format!(
            "expected a positive number of workers, got {text:?}"
        )),
        Ok(n) => Ok(n),
    }
}

/// How the worker pool is run and supervised.
#[derive(Debug, Args)]
#[command(next_help_heading = "Pool options")]
pub struct PoolArgs {
    /// Workers to run [default: the available CPUs].
    #[arg(short = 'j', long, value_name = "N", value_parser = parse_workers)]
    pub workers: Option<usize>,
    /// The most workers SIGTTIN may grow the pool to [default: 4 per available CPU, at least 4].
    #[arg(long, value_name = "N", value_parser = parse_workers)]
    pub max_workers: Option<usize>,
    /// How workers are started: fork, spawn (the binary run anew) or forkserver.
    #[arg(long, value_name = "METHOD", default_value = "fork")]
    pub start_method: StartMethod,
    /// At most R unplanned worker restarts within --restart-period, then the run stops.
    #[arg(long, value_name = "R", default_value_t = 10)]
    pub max_restarts: u32,
    /// The window of --max-restarts, in seconds (more than 0).
    #[arg(long, value_name = "S", value_parser = parse_positive_seconds, default_value = "30")]
    pub restart_period: Duration,
    /// Kill a worker whose job runs longer (seconds, more than 0) and re-queue the job.
    #[arg(long, value_name = "S", value_parser = parse_positive_seconds)]
    pub job_timeout: Option<Duration>,
    /// Kill a worker silent for longer (seconds, at least 0.1; stopped or frozen) and re-queue
    /// its job.
    #[arg(long, value_name = "S", value_parser = parse_heartbeat_timeout, default_value = "10")]
    pub heartbeat_timeout: Duration,
    /// Tries per job before it is reported failed.
    #[arg(long, value_name = "K", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_attempts: u32,
    /// Seconds running jobs get after SIGINT/SIGTERM (or the last job) before SIGKILL; 0 stops
    /// at once.
    #[arg(long, value_name = "S", value_parser = parse_seconds, default_value = "10")]
    pub grace: Duration,
    /// Replace a worker after this many jobs.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_tasks_per_child: Option<u64>,
    /// Print the worker table every S seconds (more than 0; it is also printed on SIGUSR1).
    #[arg(long, value_name = "S", value_parser = parse_positive_seconds)]
    pub status_interval: Option<Duration>,
    #[command(flatten)]
    pub log: LogArgs,
}

/// A pool-running subcommand's `--help` text after its options: `examples`, the signals it
/// handles, and its `exit_status` lines.
pub fn long_help(examples: &str, exit_status: &str) -> String {
    format!("{examples}\n\n{SIGNALS_HELP}\n\nExit status:\n{exit_status}")
}

/// What the pool-running subcommands do on signals.
const SIGNALS_HELP: &str = "\
Signals:
  SIGINT, SIGTERM   drain: no new jobs, running ones get --grace, then SIGKILL; a second one
                    stops at once (the same signal again within 100 ms counts once)
  SIGTTIN, SIGTTOU  add or remove a worker (at most --max-workers, at least one)
  SIGUSR1           print the worker table on stderr";

/// The supervisor the `supervisor` command runs.
pub type CommandSupervisor = Supervisor<IpcLauncher, Console>;

/// How a supervised run ended: its report, and the stop signal that cut it short, if any.
pub struct Ended {
    pub report: RunReport,
    pub stop_signal: Option<Signal>,
}

impl Ended {
    pub fn of(mut supervisor: CommandSupervisor) -> Self {
        supervisor.observer().finish();
        let report = supervisor.finish();
        Self {
            report,
            stop_signal: supervisor.stop_signal(),
        }
    }

    /// The exit status of a run that did not succeed: 128 + the signal's number when a stop
    /// signal cut it short (130 for SIGINT, 143 for SIGTERM, as a shell reports a process the
    /// signal ended), 1 otherwise.
    pub fn failure_code(&self) -> std::process::ExitCode {
        match (&self.report.stopped, self.stop_signal) {
            (Some(StopReason::Interrupted), Some(signal)) => {
                std::process::ExitCode::from(128u8.saturating_add(signal as i32 as u8))
            }
            _ => std::process::ExitCode::FAILURE,
        }
    }
}

impl PoolArgs {
    /// The workers the run starts with.
    pub fn workers(&self) -> usize {
        self.workers
            .unwrap_or_else(|| SupervisorConfig::default().workers)
    }

    /// A supervisor for `jobs` (named by `labels`, one per job in order), configured from the
    /// command line, ready to run, drawing `progress`; `command` is the subcommand's path, for
    /// usage errors.
    pub fn supervisor(
        &self,
        command: &[&str],
        jobs: LeaseTable,
        labels: Vec<JobLabel>,
        progress: ProgressBar,
    ) -> anyhow::Result<CommandSupervisor> {
        let defaults = SupervisorConfig::default();
        let workers = self.workers.unwrap_or(defaults.workers);
        let max_workers = self.max_workers.unwrap_or(defaults.max_workers);
        if workers > max_workers {
            return Err(usage_error(
                command,
                ErrorKind::ArgumentConflict,
                format!("--workers {workers} is more than --max-workers {max_workers}"),
            ));
        }
        let config = SupervisorConfig {
            workers,
            max_workers,
            job_timeout: self.job_timeout,
            heartbeat_timeout: self.heartbeat_timeout,
            heartbeat_interval: (self.heartbeat_timeout / 5)
                .clamp(Duration::from_millis(10), Duration::from_millis(500)),
            max_attempts: self.max_attempts,
            max_restarts: self.max_restarts,
            restart_period: self.restart_period,
            grace: self.grace,
            max_tasks_per_child: self.max_tasks_per_child,
            status_interval: self.status_interval,
        };
        tracing::trace!(
            event = "config",
            workers,
            max_workers,
            start_method = %self.start_method,
            "starting {workers} worker(s), {} job(s) planned so far: {config:?}",
            jobs.len()
        );
        // Workers' own children are re-parented to us, not to init, so we reap them.
        nix::sys::prctl::set_child_subreaper(true).context("becoming a child subreaper")?;
        let inbox = SignalInbox::install().context("installing signal handlers")?;
        let launcher = IpcLauncher::new(
            self.start_method,
            herd_worker::Registry::global,
            config.heartbeat_interval,
            inbox.inherited(),
        )
        .spawn_entry(builtin_worker)
        .reaping_strays();
        let console = Console::new(progress, labels);
        Ok(Supervisor::new(config, launcher, inbox, console, jobs))
    }
}
