//! `RunReport`: how a supervised run ended, with every job's output or failure.
use std::fmt;

use crate::{IntensityExceeded, LeaseTable};

/// Why a run ended before every job finished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    /// Too many worker restarts.
    Intensity(IntensityExceeded),
    /// SIGINT or SIGTERM.
    Interrupted,
    /// [`crate::Pool::terminate`] (or [`crate::Supervisor::terminate`]).
    Terminated,
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StopReason::Intensity(exceeded) => write!(f, "{exceeded}"),
            StopReason::Interrupted => f.write_str("interrupted by a stop signal"),
            StopReason::Terminated => f.write_str("terminated"),
        }
    }
}

/// The outcome of a run.
#[derive(Debug)]
pub struct RunReport {
    /// Every job, with its output or failure.
    pub jobs: LeaseTable,
    /// Set when the run stopped early; unfinished jobs are failed as abandoned.
    pub stopped: Option<StopReason>,
    /// Workers started, first ones included.
    pub workers_started: u64,
    /// Unplanned restarts (deaths, kills for timeout or missed heartbeat).
    pub restarts: u64,
}

impl RunReport {
    /// Whether every job succeeded.
    pub fn success(&self) -> bool {
        self.stopped.is_none() && self.jobs.failures().next().is_none()
    }

    /// A human summary of what failed, one line each; empty on success.
    pub fn failure_summary(&self) -> String {
        self.failure_summary_naming(|_| None)
    }

    /// [`failure_summary`](Self::failure_summary), with each failed job also named by what
    /// `name` says of its id (its file, its input), when it says something: `job 3 (a.log):
    /// cause`.
    pub fn failure_summary_naming(&self, name: impl Fn(u64) -> Option<String>) -> String {
        let mut out = String::new();
        if let Some(reason) = &self.stopped {
            out.push_str(&format!("run stopped: {reason}\n"));
        }
        let failures: Vec<_> = self.jobs.failures().collect();
        if !failures.is_empty() {
            out.push_str(&format!(
                "{} of {} job(s) failed:\n",
                failures.len(),
                self.jobs.len()
            ));
            for (id, failure) in failures {
                match name(id) {
                    Some(name) => out.push_str(&format!("  job {id} ({name}): {failure}\n")),
                    None => out.push_str(&format!("  job {id}: {failure}\n")),
                }
            }
        }
        out
    }
}
