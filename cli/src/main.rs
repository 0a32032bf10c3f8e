//! The `supervisor` command: `supervisor run JOB [ARGS]` runs jobs over a supervised worker pool;
//! `supervisor gen-logs DIR` writes test logs for logcount.
mod builtin;
mod console;
mod diagnostic_kinds;
mod status;

use std::io::{self, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use herd_logcount::genlogs::{self, GenOptions};
use herd_logcount::{self as logcount, Format, LogcountChunk, Merger, Options as LogcountOptions};
use herd_supervisor::{
    IpcLauncher, LeaseTable, Level, RunReport, SignalInbox, StartMethod, StopReason, Supervisor,
    SupervisorConfig,
};
use herd_worker::{decode_payload, encode_payload, JobKind};
use nix::sys::signal::Signal;

use crate::builtin::builtin_worker;
use crate::console::{Console, LogFormat};
use crate::diagnostic_kinds::DIAGNOSTIC_KINDS;

#[derive(Debug, Parser)]
#[command(
    name = "supervisor",
    version,
    about = "Runs jobs on a supervised pool of worker processes"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    #[command(
        after_help = "Signals: SIGINT/SIGTERM drain (no new jobs, running ones get --grace, \
        then SIGKILL; a second one stops at once, the same signal again within 100 ms counts \
        once); SIGTTIN/SIGTTOU add/remove a worker (at most --max-workers); SIGUSR1 prints the \
        worker table. Exit status: 0 when every job succeeded, 1 with a summary of the failed \
        jobs on stderr, 2 for bad usage (logcount: 2 for a bad DIR, 1 for unreadable files), \
        130/143 when SIGINT/SIGTERM stopped the run before every job was done, 141 when stdout \
        was closed before all the results were written."
    )]
    /// Runs JOB over the worker pool: `logcount DIR`, or a diagnostic kind (echo, sleep, fail,
    /// crash, hang, hang-once, pid, grandchild; for testing) with one job per ARG, printing
    /// each job's answer on a line, in job order.
    Run(RunArgs),
    /// Writes deterministic access logs for benchmarks and tests.
    GenLogs(GenLogsArgs),
}

fn parse_seconds(text: &str) -> Result<Duration, String> {
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

/// The smallest `--chunk-bytes`: below it per-job costs swamp the counting, and a large input
/// would be planned into more jobs than memory holds.
const MIN_CHUNK_BYTES: u64 = 64 * 1024;

fn parse_chunk_bytes(text: &str) -> Result<u64, String> {
    match text.parse::<u64>() {
        Ok(bytes) if bytes >= MIN_CHUNK_BYTES => Ok(bytes),
        _ => Err(format!(
            "expected a number of bytes of at least {MIN_CHUNK_BYTES} (64 KiB), got {text:?}"
        )),
    }
}

fn parse_workers(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) | Err(_) => Err(format!(
            "expected a positive number of workers, got {text:?}"
        )),
        Ok(n) => Ok(n),
    }
}

#[derive(Debug, Args)]
struct RunArgs {
    /// The job kind.
    job: String,
    /// Its arguments.
    args: Vec<String>,
    /// Workers to run (default: the available CPUs).
    #[arg(long, value_parser = parse_workers)]
    workers: Option<usize>,
    /// The most workers SIGTTIN may grow the pool to (default: 4 per available CPU, at least 4).
    #[arg(long, value_parser = parse_workers)]
    max_workers: Option<usize>,
    /// How workers are started: fork or spawn.
    #[arg(long, default_value = "fork")]
    start_method: StartMethod,
    /// At most R unplanned worker restarts within --restart-period, then the run stops.
    #[arg(long, default_value_t = 10)]
    max_restarts: u32,
    /// The window of --max-restarts, in seconds (more than 0).
    #[arg(long, value_parser = parse_positive_seconds, default_value = "30")]
    restart_period: Duration,
    /// Kill a worker whose job runs longer (seconds, more than 0) and re-queue the job.
    #[arg(long, value_parser = parse_positive_seconds)]
    job_timeout: Option<Duration>,
    /// Kill a worker silent for longer (seconds, at least 0.1; stopped or frozen) and re-queue
    /// its job.
    #[arg(long, value_parser = parse_heartbeat_timeout, default_value = "10")]
    heartbeat_timeout: Duration,
    /// Tries per job before it is reported failed.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    max_attempts: u32,
    /// Seconds running jobs get after SIGINT/SIGTERM (or the last job) before SIGKILL; 0 stops
    /// at once.
    #[arg(long, value_parser = parse_seconds, default_value = "10")]
    grace: Duration,
    /// Replace a worker after this many jobs.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    max_tasks_per_child: Option<u64>,
    /// Print the worker table every S seconds (more than 0; it is also printed on SIGUSR1).
    #[arg(long, value_parser = parse_positive_seconds)]
    status_interval: Option<Duration>,
    /// logcount: output format: table, csv or json.
    #[arg(long, default_value = "table")]
    format: Format,
    /// logcount: also report the K busiest client keys.
    #[arg(long)]
    top: Option<usize>,
    /// logcount: also count files in subdirectories.
    #[arg(long)]
    recursive: bool,
    /// logcount: jobs of about B bytes, at least 64 KiB: larger plain files cut into chunks,
    /// smaller files batched whole (default: about 4 jobs per worker, between 4 and 256 MiB).
    #[arg(long, value_parser = parse_chunk_bytes)]
    chunk_bytes: Option<u64>,
    /// How the run's log records are written on stderr.
    #[arg(long, value_enum, default_value = "text")]
    log_format: LogFormat,
    /// Also log routine events (workers started, jobs leased and finished).
    #[arg(short, long)]
    verbose: bool,
}

#[derive(Debug, Args)]
struct GenLogsArgs {
    /// Directory to write into (created if missing).
    dir: PathBuf,
    /// Number of files.
    #[arg(long, default_value_t = 8)]
    files: usize,
    /// Lines per file.
    #[arg(long, default_value_t = 1_000_000)]
    lines: u64,
    /// Distinct client keys to draw from.
    #[arg(long, default_value_t = 10_000)]
    distinct: u64,
    /// Random seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// An error that already carries its exit code.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
struct Exit {
    code: u8,
    message: String,
}

/// Exit status when stdout was closed before all the output was written (`| head`): 128 +
/// SIGPIPE, what a shell reports for a GNU tool killed by SIGPIPE, so `set -o pipefail` sees
/// an incomplete output as it would for `yes | head`. Nothing is printed.
const EXIT_CLOSED_STDOUT: u8 = 141;

fn main() -> ExitCode {
    herd_ipc::init();
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(error) => {
            let code = error.downcast_ref::<Exit>().map_or(1, |exit| exit.code);
            if code != EXIT_CLOSED_STDOUT {
                note(&format!("supervisor: {error:#}\n"));
            }
            ExitCode::from(code)
        }
    }
}

/// Writes `text` on stderr. A closed or full stderr cannot be reported anywhere, so a failure
/// is ignored (`eprint!` would panic instead).
fn note(text: &str) {
    let _ = io::stderr().lock().write_all(text.as_bytes());
}

/// Writes the run's results on stdout, checked: a closed pipe (EPIPE; the reader has all it
/// wanted) ends the run quietly with [`EXIT_CLOSED_STDOUT`], any other error (ENOSPC, EIO) is
/// reported naming stdout, exit 1. `write_all` retries EINTR.
fn write_stdout(text: &str) -> anyhow::Result<()> {
    let mut out = io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == io::ErrorKind::BrokenPipe => Err(Exit {
            code: EXIT_CLOSED_STDOUT,
            message: "stdout was closed".into(),
        }
        .into()),
        Err(error) => Err(Exit {
            code: 1,
            message: format!("cannot write the results to stdout: {error}"),
        }
        .into()),
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Run(args) => run_jobs(args),
        Command::GenLogs(args) => {
            let options = GenOptions {
                files: args.files,
                lines: args.lines,
                distinct: args.distinct,
                seed: args.seed,
            };
            let written = genlogs::generate(&args.dir, &options)?;
            note(&format!(
                "supervisor: wrote {} file(s) to {}\n",
                written.len(),
                args.dir.display()
            ));
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// How a supervised run ended: its report, and the stop signal that cut it short, if any.
struct Ended {
    report: RunReport,
    stop_signal: Option<Signal>,
}

impl Ended {
    fn of(mut supervisor: CommandSupervisor) -> Self {
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
    fn failure_code(&self) -> ExitCode {
        match (&self.report.stopped, self.stop_signal) {
            (Some(StopReason::Interrupted), Some(signal)) => {
                ExitCode::from(128u8.saturating_add(signal as i32 as u8))
            }
            _ => ExitCode::FAILURE,
        }
    }
}

fn supervise(args: &RunArgs, jobs: LeaseTable) -> anyhow::Result<Ended> {
    let mut supervisor = supervisor(args, jobs)?;
    while !supervisor.step() {}
    Ok(Ended::of(supervisor))
}

/// The supervisor the `supervisor` command runs.
type CommandSupervisor = Supervisor<IpcLauncher, Console>;

/// A supervisor for `jobs`, configured from the command line, ready to run.
fn supervisor(args: &RunArgs, jobs: LeaseTable) -> anyhow::Result<CommandSupervisor> {
    let defaults = SupervisorConfig::default();
    let workers = args.workers.unwrap_or(defaults.workers);
    let max_workers = args.max_workers.unwrap_or(defaults.max_workers);
    if workers > max_workers {
        return Err(Exit {
            code: 2,
            message: format!("--workers {workers} is more than --max-workers {max_workers}"),
        }
        .into());
    }
    let config = SupervisorConfig {
        workers,
        max_workers,
        job_timeout: args.job_timeout,
        heartbeat_timeout: args.heartbeat_timeout,
        heartbeat_interval: (args.heartbeat_timeout / 5)
            .clamp(Duration::from_millis(10), Duration::from_millis(500)),
        max_attempts: args.max_attempts,
        max_restarts: args.max_restarts,
        restart_period: args.restart_period,
        grace: args.grace,
        max_tasks_per_child: args.max_tasks_per_child,
        status_interval: args.status_interval,
    };
    // Workers' own children are re-parented to us, not to init, so we reap them.
    nix::sys::prctl::set_child_subreaper(true).context("becoming a child subreaper")?;
    let inbox = SignalInbox::install().context("installing signal handlers")?;
    let launcher = IpcLauncher::new(
        args.start_method,
        herd_worker::Registry::global,
        config.heartbeat_interval,
        inbox.inherited(),
    )
    .spawn_entry(builtin_worker)
    .reaping_strays();
    let threshold = if args.verbose {
        Level::Debug
    } else {
        Level::Info
    };
    let console = Console::new(args.log_format, threshold, true);
    Ok(Supervisor::new(config, launcher, inbox, console, jobs))
}

fn run_jobs(args: RunArgs) -> anyhow::Result<ExitCode> {
    if args.job == "logcount" {
        return run_logcount(&args);
    }
    if !DIAGNOSTIC_KINDS.contains(&args.job.as_str()) {
        return Err(Exit {
            code: 2,
            message: format!(
                "unknown job kind `{}` (known: logcount, {})",
                args.job,
                DIAGNOSTIC_KINDS.join(", ")
            ),
        }
        .into());
    }
    if args.format != Format::Table
        || args.top.is_some()
        || args.recursive
        || args.chunk_bytes.is_some()
    {
        return Err(Exit {
            code: 2,
            message: "--format, --top, --recursive and --chunk-bytes are for logcount only".into(),
        }
        .into());
    }
    let mut jobs = LeaseTable::new(args.max_attempts);
    for arg in &args.args {
        jobs.push(args.job.clone(), encode_payload(arg)?);
    }
    let ended = supervise(&args, jobs)?;
    let report = &ended.report;
    let mut text = String::new();
    for id in 0..report.jobs.len() as u64 {
        if let Some(output) = report.jobs.output(id) {
            text.push_str(&decode_payload::<String>(output)?);
            text.push('\n');
        }
    }
    write_stdout(&text)?;
    if report.success() {
        Ok(ExitCode::SUCCESS)
    } else {
        note(&format!("supervisor: {}", report.failure_summary()));
        Ok(ended.failure_code())
    }
}

/// The lease table for a planned logcount run. Without `--job-timeout`, each job gets a time
/// limit from its size ([`Plan::default_job_timeout`](logcount::Plan::default_job_timeout)), so
/// that a stuck job cannot hang the run forever.
fn logcount_jobs(args: &RunArgs, plan: &mut logcount::Plan) -> anyhow::Result<LeaseTable> {
    // A mapped scan is only safe where a job whose worker died gets another attempt.
    let may_map = args.max_attempts > 1;
    for job in &mut plan.jobs {
        job.may_map = may_map;
    }
    let mut jobs = LeaseTable::new(args.max_attempts);
    for job in &plan.jobs {
        let id = jobs.push(LogcountChunk::NAME, encode_payload(job)?);
        if args.job_timeout.is_none() {
            jobs.set_timeout(id, plan.default_job_timeout(job));
        }
    }
    Ok(jobs)
}

fn run_logcount(args: &RunArgs) -> anyhow::Result<ExitCode> {
    let [dir] = args.args.as_slice() else {
        return Err(Exit {
            code: 2,
            message: "usage: supervisor run logcount DIR".into(),
        }
        .into());
    };
    let options = LogcountOptions {
        recursive: args.recursive,
        top: args.top,
        chunk_bytes: args
            .chunk_bytes
            .unwrap_or(LogcountOptions::default().chunk_bytes),
    };
    let mut plan = logcount::plan(dir.as_ref(), &options).map_err(|error| Exit {
        code: 2,
        message: error.to_string(),
    })?;
    // Unless told the chunk size, cut the input into a few chunks per worker (load balance at
    // the end of the run; pieces of a file are equal), not more: each chunk costs its distinct
    // keys again (sorted, sent, decoded, merged) whatever its size.
    if args.chunk_bytes.is_none() {
        let workers = args
            .workers
            .unwrap_or_else(|| SupervisorConfig::default().workers) as u64;
        let total: u64 = plan.files.iter().map(|file| file.len).sum();
        let chunk_bytes = logcount::balanced_chunk_bytes(total, workers);
        if chunk_bytes != options.chunk_bytes {
            plan.recut(chunk_bytes);
        }
    }
    let jobs = logcount_jobs(args, &mut plan)?;
    // Merge results while the workers are still counting, so that little is left after the
    // last one. Jobs are leased in order, so results come nearly in order: merge the finished
    // prefix as it grows (linear overall), and whatever is left (a retried or failed job held
    // the prefix back) at the end.
    let mut merger = Merger::new(&plan);
    let mut merged_before = 0;
    let mut supervisor = supervisor(args, jobs)?;
    while !supervisor.step() {
        while let Some(output) = supervisor.jobs().output(merged_before as u64) {
            merger.add(decode_payload(output)?);
            // Merged: drop the encoded result rather than keep a second copy of its keys until
            // the end (with millions of host names that copy is a large part of the memory).
            supervisor.take_outcome(merged_before as u64);
            merged_before += 1;
        }
    }
    let ended = Ended::of(supervisor);
    let report = &ended.report;
    for id in merged_before..plan.jobs.len() {
        if let Some(output) = report.jobs.output(id as u64) {
            merger.add(decode_payload(output)?);
        }
    }
    for (id, failure) in report.jobs.failures() {
        if let Some(job) = usize::try_from(id)
            .ok()
            .and_then(|index| plan.jobs.get(index))
        {
            merger.add_job_failure(job, &format!("not counted: {failure}"));
        }
    }
    let result = merger.finish();
    write_stdout(&result.render(args.format))?;
    if !report.success() {
        note(&format!("supervisor: {}", report.failure_summary()));
        if let Some(signal) = ended.stop_signal {
            let mut uncounted: Vec<&str> = report
                .jobs
                .failures()
                .filter_map(|(id, _)| plan.jobs.get(usize::try_from(id).ok()?))
                .flat_map(|job| job.file_indices())
                .filter_map(|index| plan.files.get(index))
                .map(|file| file.name.as_str())
                .collect();
            uncounted.sort_unstable();
            uncounted.dedup();
            let mut text = format!(
                "supervisor: stopped by {} before counting {} file(s):\n",
                signal.as_str(),
                uncounted.len()
            );
            for name in uncounted {
                text.push_str(&format!("  {name}\n"));
            }
            note(&text);
        }
        return Ok(ended.failure_code());
    }
    Ok(if result.errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_args(extra: &[&str], dir: &std::path::Path) -> RunArgs {
        let mut argv = vec!["supervisor", "run", "logcount", dir.to_str().unwrap()];
        argv.extend(extra);
        match Cli::parse_from(argv).command {
            Command::Run(args) => args,
            Command::GenLogs(_) => unreachable!("parsed a run"),
        }
    }

    #[test]
    fn logcount_jobs_get_a_timeout_from_their_size_unless_one_is_given() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.log"), "1.2.3.4 - - x\n".repeat(10_000)).unwrap();
        let options = LogcountOptions {
            chunk_bytes: 64 * 1024,
            ..LogcountOptions::default()
        };
        let mut plan = logcount::plan(dir.path(), &options).unwrap();
        assert!(plan.jobs.len() > 1, "{} jobs", plan.jobs.len());

        let jobs = logcount_jobs(&run_args(&[], dir.path()), &mut plan.clone()).unwrap();
        for (id, job) in plan.jobs.iter().enumerate() {
            let expected = plan.default_job_timeout(job);
            assert_eq!(expected, Duration::from_secs(70));
            assert_eq!(jobs.timeout(id as u64), Some(expected));
        }

        let given = run_args(&["--job-timeout", "5"], dir.path());
        assert_eq!(given.job_timeout, Some(Duration::from_secs(5)));
        let jobs = logcount_jobs(&given, &mut plan).unwrap();
        for id in 0..plan.jobs.len() {
            assert_eq!(
                jobs.timeout(id as u64),
                None,
                "the run's --job-timeout applies"
            );
        }
    }
}
