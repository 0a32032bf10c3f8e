//! `Event` and `Observer`: what the supervision loop did or saw, reported as typed values.
//!
//! The loop itself prints nothing. Whoever runs it decides what to show: the `supervisor` command
//! prints log lines and draws a progress bar, a [`crate::Pool`] keeps a record, a test asserts on
//! the exact sequence. Each event's `Display` is the sentence a person would want to read.
use std::fmt;
use std::time::Duration;

use herd_ipc::Pid;
use herd_worker::JobId;
use serde::Serialize;

use crate::{IntensityExceeded, LossCause, WorkerId};

/// Something the supervision loop did or saw.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Event {
    /// Jobs were added; `total` is how many the run has now.
    JobsAdded {
        /// Jobs in the run so far.
        total: u64,
    },
    /// A worker process started.
    WorkerStarted {
        /// Which worker.
        worker: WorkerId,
        /// Its pid.
        pid: Pid,
    },
    /// A worker could not be started; it counts as a restart.
    WorkerStartFailed {
        /// The worker that was to start.
        worker: WorkerId,
        /// Why it did not.
        error: String,
    },
    /// A job was sent to a worker.
    JobLeased {
        /// The job.
        job: JobId,
        /// The worker now running it.
        worker: WorkerId,
        /// Which attempt this is (1 for the first).
        attempt: u32,
    },
    /// A job's result came in and was accepted.
    JobFinished {
        /// The job.
        job: JobId,
        /// The worker that ran it.
        worker: WorkerId,
    },
    /// A second result for a finished job was dropped.
    DuplicateResult {
        /// The job.
        job: JobId,
        /// The worker that sent it.
        worker: WorkerId,
    },
    /// A worker answered a job the run does not have; the answer was ignored.
    UnknownJob {
        /// The job id it named.
        job: JobId,
        /// The worker.
        worker: WorkerId,
    },
    /// A worker exited without being asked to.
    WorkerDied {
        /// Which worker.
        worker: WorkerId,
        /// Its pid (reaped now).
        pid: Pid,
        /// How it ended, e.g. "killed by SIGKILL".
        status: String,
    },
    /// The supervisor is killing a worker.
    WorkerKilled {
        /// Which worker.
        worker: WorkerId,
        /// Its pid.
        pid: Pid,
        /// Why.
        cause: LossCause,
    },
    /// Signalling a worker failed.
    SignalFailed {
        /// Which worker.
        worker: WorkerId,
        /// Its pid.
        pid: Pid,
        /// The error.
        error: String,
    },
    /// Waiting for a worker failed (it is tried again at the next tick).
    WaitFailed {
        /// Which worker.
        worker: WorkerId,
        /// The error.
        error: String,
    },
    /// A worker's link broke other than by closing (a message over the size limit, garbage on
    /// the pipe); the supervisor stops reading it, and the worker is lost.
    LinkFailed {
        /// Which worker.
        worker: WorkerId,
        /// Its pid.
        pid: Pid,
        /// The error.
        error: String,
    },
    /// Sending a job to a worker failed; the worker is killed and the job re-queued.
    SendFailed {
        /// The job.
        job: JobId,
        /// Which worker.
        worker: WorkerId,
        /// The error.
        error: String,
    },
    /// A worker got SIGTERM and leaves after its current job (a planned exit).
    WorkerLeaving {
        /// Which worker.
        worker: WorkerId,
        /// Its pid.
        pid: Pid,
    },
    /// A job sent to a leaving worker goes back to the queue unstarted.
    JobReturnedUnstarted {
        /// The job.
        job: JobId,
    },
    /// A lost worker's job goes back to the queue for another attempt.
    JobRequeued {
        /// The job.
        job: JobId,
        /// The worker that lost it.
        worker: WorkerId,
        /// Its pid.
        pid: Pid,
        /// Why it was lost.
        cause: LossCause,
        /// The attempt that comes next.
        next_attempt: u32,
        /// Attempts allowed in all.
        max_attempts: u32,
    },
    /// A lost worker's job used up its attempts and failed.
    JobFailed {
        /// The job.
        job: JobId,
        /// The worker that lost it last.
        worker: WorkerId,
        /// Its pid.
        pid: Pid,
        /// Why it was lost.
        cause: LossCause,
    },
    /// Too many unplanned restarts: the run stops.
    RestartLimitHit(IntensityExceeded),
    /// A first SIGINT or SIGTERM: no new jobs; running ones get `grace`.
    DrainBegun {
        /// The signal's name.
        signal: &'static str,
        /// How long running jobs get.
        grace: Duration,
    },
    /// A second stop signal: every worker is killed now.
    StoppingNow {
        /// The signal's name.
        signal: &'static str,
    },
    /// The grace period ran out; the workers still there are killed.
    GraceExpired {
        /// How many.
        workers: usize,
    },
    /// SIGTTIN or SIGTTOU changed the pool's size.
    PoolResized {
        /// The signal's name.
        signal: &'static str,
        /// Workers wanted now.
        size: usize,
        /// SIGTTIN found the pool at its cap ([`crate::SupervisorConfig::max_workers`]).
        at_limit: bool,
    },
    /// The worker table, asked for by SIGUSR1 or due by the status interval.
    Status(Status),
}

/// The worker table at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Status {
    /// Every live worker.
    pub workers: Vec<WorkerRow>,
    /// Jobs waiting for a worker.
    pub queued: usize,
    /// Jobs not finished yet (queued or running).
    pub unfinished: usize,
}

/// What the supervisor knows about one live worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WorkerRow {
    /// Which worker.
    pub id: WorkerId,
    /// Its pid (not yet reaped, so not recycled).
    pub pid: Pid,
    /// Jobs it finished.
    pub jobs_done: u64,
    /// The job it runs and for how long.
    pub current: Option<(JobId, Duration)>,
}

impl Event {
    /// How much a person running the program needs to see it: routine progress is
    /// [`Level::Debug`], recoveries (a lost worker, a re-queued job) are [`Level::Warn`], what
    /// costs results is [`Level::Error`].
    pub fn level(&self) -> Level {
        match self {
            Event::JobsAdded { .. }
            | Event::WorkerStarted { .. }
            | Event::JobLeased { .. }
            | Event::JobFinished { .. } => Level::Debug,
            Event::WorkerLeaving { .. }
            | Event::JobReturnedUnstarted { .. }
            | Event::DrainBegun { .. }
            | Event::StoppingNow { .. }
            | Event::PoolResized { .. }
            | Event::Status(_) => Level::Info,
            Event::DuplicateResult { .. }
            | Event::UnknownJob { .. }
            | Event::WorkerDied { .. }
            | Event::WorkerKilled { .. }
            | Event::WaitFailed { .. }
            | Event::JobRequeued { .. }
            | Event::GraceExpired { .. } => Level::Warn,
            Event::WorkerStartFailed { .. }
            | Event::SignalFailed { .. }
            | Event::SendFailed { .. }
            | Event::LinkFailed { .. }
            | Event::JobFailed { .. }
            | Event::RestartLimitHit(_) => Level::Error,
        }
    }
}

/// An event's importance, as log levels go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Routine progress.
    Debug,
    /// Worth telling a person who watches the run.
    Info,
    /// Something went wrong and was recovered from.
    Warn,
    /// Something cost a result or the run.
    Error,
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        })
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::JobsAdded { total } => write!(f, "{total} job(s) in the run"),
            Event::WorkerStarted { worker, pid } => write!(f, "{worker} (pid {pid}) started"),
            Event::WorkerStartFailed { worker, error } => write!(f, "starting {worker}: {error}"),
            Event::JobLeased {
                job,
                worker,
                attempt,
            } => write!(f, "job {job} (attempt {attempt}) to {worker}"),
            Event::JobFinished { job, worker } => write!(f, "job {job} done by {worker}"),
            Event::DuplicateResult { job, worker } => {
                write!(f, "job {job}: duplicate result from {worker} dropped")
            }
            Event::UnknownJob { job, worker } => {
                write!(f, "{worker} answered unknown job {job}; ignored")
            }
            Event::WorkerDied {
                worker,
                pid,
                status,
            } => write!(f, "{worker} (pid {pid}) died: {status}"),
            Event::WorkerKilled { worker, pid, cause } => {
                write!(f, "killing {worker} (pid {pid}): {cause}")
            }
            Event::SignalFailed { worker, pid, error } => {
                write!(f, "killing {worker} (pid {pid}): {error}")
            }
            Event::WaitFailed { worker, error } => write!(f, "waiting for {worker}: {error}"),
            Event::LinkFailed { worker, pid, error } => {
                write!(f, "reading from {worker} (pid {pid}): {error}")
            }
            Event::SendFailed { job, worker, error } => {
                write!(f, "sending job {job} to {worker}: {error}")
            }
            Event::WorkerLeaving { worker, pid } => {
                write!(f, "{worker} (pid {pid}) leaves (SIGTERM)")
            }
            Event::JobReturnedUnstarted { job } => write!(f, "job {job} goes back unstarted"),
            Event::JobRequeued {
                job,
                worker,
                pid,
                cause,
                next_attempt,
                max_attempts,
            } => write!(
                f,
                "{worker} (pid {pid}) lost job {job}: {cause}; re-queued (attempt {next_attempt} \
                 of {max_attempts} next)"
            ),
            Event::JobFailed {
                job,
                worker,
                pid,
                cause,
            } => write!(
                f,
                "{worker} (pid {pid}) lost job {job}: {cause}; job failed, out of attempts"
            ),
            Event::RestartLimitHit(exceeded) => write!(f, "{exceeded}; stopping the run"),
            Event::DrainBegun { signal, grace } => write!(
                f,
                "{signal} received: draining (no new jobs; running ones get {grace:?}; send it \
                 again to stop at once)"
            ),
            Event::StoppingNow { signal } => write!(f, "{signal} received: stopping at once"),
            Event::GraceExpired { workers } => write!(
                f,
                "the grace period after a stop signal ran out: killing {workers} worker(s)"
            ),
            Event::PoolResized {
                signal,
                size,
                at_limit: false,
            } => write!(f, "{signal}: pool size now {size}"),
            Event::PoolResized {
                signal,
                size,
                at_limit: true,
            } => write!(
                f,
                "{signal}: pool size stays {size}, the most workers allowed (max_workers)"
            ),
            Event::Status(status) => write!(
                f,
                "status: {} worker(s), {} job(s) queued, {} unfinished",
                status.workers.len(),
                status.queued,
                status.unfinished
            ),
        }
    }
}

/// Receives the loop's events as they happen, on the loop's thread.
pub trait Observer {
    /// Called once per event, in order.
    fn on_event(&mut self, event: &Event);
}

/// Discards every event.
#[derive(Debug, Clone, Copy, Default)]
pub struct Ignore;

impl Observer for Ignore {
    fn on_event(&mut self, _: &Event) {}
}

/// Keeps every event, for a program (or a test) to look at afterwards.
#[derive(Debug, Clone, Default)]
pub struct Record {
    /// The events so far, oldest first.
    pub events: Vec<Event>,
}

impl Observer for Record {
    fn on_event(&mut self, event: &Event) {
        self.events.push(event.clone());
    }
}

impl<F: FnMut(&Event)> Observer for F {
    fn on_event(&mut self, event: &Event) {
        self(event)
    }
}
