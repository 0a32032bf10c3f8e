//! `supervisor diag KIND [INPUT]...`: runs one diagnostic job per INPUT over the worker pool,
//! for trying supervision out and for testing it with the real binary: the kinds answer, fail,
//! crash or hang on purpose (see [`crate::diagnostic_kinds`]).
use std::process::ExitCode;

use clap::Args;
use herd_supervisor::LeaseTable;
use herd_worker::{decode_payload, encode_payload, JobKind};

use crate::console::JobLabel;
use crate::diagnostic_kinds::{Crash, Echo, Fail, Grandchild, Hang, HangOnce, Sleep, WorkerPid};
use crate::output::{note, write_stdout};
use crate::pool::{long_help, Ended, PoolArgs};

/// A diagnostic job kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DiagKind {
    /// Answers INPUT.
    Echo,
    /// Sleeps INPUT milliseconds, answers `slept INPUT ms`.
    Sleep,
    /// Fails with the job error `asked to fail: INPUT` (not retried).
    Fail,
    /// Aborts its worker on every attempt (retried; counts as a restart).
    Crash,
    /// Never answers (for --job-timeout).
    Hang,
    /// Creates the file INPUT and hangs if it did not exist, answers `recovered` otherwise.
    HangOnce,
    /// Answers its worker's pid (for --max-tasks-per-child).
    Pid,
    /// Starts a `sleep 600` child of its worker, answers its pid, then sleeps INPUT ms.
    Grandchild,
}

impl DiagKind {
    /// The registered job kind's name.
    pub fn name(self) -> &'static str {
        match self {
            DiagKind::Echo => Echo::NAME,
            DiagKind::Sleep => Sleep::NAME,
            DiagKind::Fail => Fail::NAME,
            DiagKind::Crash => Crash::NAME,
            DiagKind::Hang => Hang::NAME,
            DiagKind::HangOnce => HangOnce::NAME,
            DiagKind::Pid => WorkerPid::NAME,
            DiagKind::Grandchild => Grandchild::NAME,
        }
    }
}

const EXAMPLES: &str = "\
Examples:
  supervisor diag echo hello world -j 2         prints hello, then world
  supervisor diag sleep 500 500 500 -v          routine events on stderr
  supervisor diag crash a b --max-restarts 1    stops at the restart limit
  supervisor diag hang x --job-timeout 0.5 --max-attempts 2";

const EXIT_STATUS: &str =
    "  0 every job succeeded; 1 some failed (a summary on stderr); 2 bad usage; 130/143
  SIGINT/SIGTERM stopped the run first; 141 stdout was closed before the answers were written.";

/// Runs diagnostic jobs that answer, fail, crash or hang on purpose, one per INPUT, and prints
/// their answers one a line, in job order: for trying supervision out and for testing it.
#[derive(Debug, Args)]
#[command(after_help = EXAMPLES, after_long_help = long_help(EXAMPLES, EXIT_STATUS))]
pub struct DiagArgs {
    /// What each job does.
    #[arg(value_enum)]
    pub kind: DiagKind,
    /// One job per INPUT.
    pub inputs: Vec<String>,
    #[command(flatten)]
    pub pool: PoolArgs,
}

pub fn run(args: &DiagArgs) -> anyhow::Result<ExitCode> {
    let progress = args.pool.log.init();
    let kind = args.kind.name();
    let mut jobs = LeaseTable::new(args.pool.max_attempts);
    let mut labels = Vec::with_capacity(args.inputs.len());
    for input in &args.inputs {
        jobs.push(kind, encode_payload(input)?);
        labels.push(JobLabel::Input {
            kind,
            input: input.clone(),
        });
    }
    let mut supervisor = args
        .pool
        .supervisor(&["diag"], jobs, labels.clone(), progress)?;
    while !supervisor.step() {}
    let ended = Ended::of(supervisor);
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
        note(&format!(
            "error: {}",
            report.failure_summary_naming(|id| {
                labels
                    .get(usize::try_from(id).ok()?)
                    .map(ToString::to_string)
            })
        ));
        Ok(ended.failure_code())
    }
}
