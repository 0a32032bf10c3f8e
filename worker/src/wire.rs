//! The wire types between supervisor and worker: a [`Job`] goes out, a [`JobResult`] comes back.
//!
//! A worker holds at most one job at a time; the next [`ToWorker::Run`] is the acknowledgement
//! of the previous result, so there is no separate ack message. Heartbeats flow while a job runs
//! so the supervisor can tell a stopped or frozen worker from a slow job.
use serde::{Deserialize, Serialize};

use crate::JobError;

/// A job's identity, unique within one run. Attempts of the same job share it.
pub type JobId = u64;

/// One unit of work leased to one worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    /// Which job this is.
    pub id: JobId,
    /// 1 for the first try, incremented each time the job is re-queued after a lost worker.
    pub attempt: u32,
    /// The registered [`crate::JobKind::NAME`] to run.
    pub kind: String,
    /// The input, encoded with [`crate::encode_payload`].
    pub payload: Vec<u8>,
}

/// What one attempt of a job produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobResult {
    /// The job this answers.
    pub id: JobId,
    /// The attempt that produced it.
    pub attempt: u32,
    /// The encoded output, or why there is none.
    pub outcome: Result<Vec<u8>, JobError>,
}

/// Supervisor to worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ToWorker {
    /// Run this job, then answer with [`FromWorker::Done`].
    Run(Job),
    /// Exit after the current job (if any).
    Stop,
}

/// Worker to supervisor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FromWorker {
    /// The worker is up and waits for a job.
    Ready,
    /// The worker is alive (sent periodically, also while a job runs).
    Heartbeat,
    /// A job finished.
    Done(JobResult),
    /// The worker leaves (it got SIGTERM) and takes no more jobs; a job sent meanwhile was not
    /// started.
    Leaving,
}
