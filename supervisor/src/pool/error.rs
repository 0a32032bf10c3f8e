//! `PoolError`: why a pool operation or a job gave no value.
use std::time::Duration;

use herd_worker::{JobId, PayloadError};
use thiserror::Error;

use crate::{JobFailure, StopReason};

/// Why a pool operation or a job did not give a value.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum PoolError {
    /// `Pool::new(0)`, or a builder asked for no workers.
    #[error("a pool needs at least one worker")]
    NoWorkers,
    /// A chunk size of zero.
    #[error("the chunk size must be at least 1")]
    ZeroChunksize,
    /// The pool could not start, or its start method cannot work in this process.
    #[error("starting the pool: {0}")]
    Setup(String),
    /// The pool is closed or terminated: no new job.
    #[error("the pool is closed: it takes no new jobs")]
    Closed,
    /// `join` on a pool that was neither closed nor terminated (as in Python, it would wait
    /// forever for jobs that may still come).
    #[error("join needs the pool closed (close) or terminated (terminate) first")]
    StillOpen,
    /// A job's input or output could not be encoded or decoded.
    #[error(transparent)]
    Payload(#[from] PayloadError),
    /// The job failed: its own error, a panic, or its worker lost on every attempt.
    #[error("job {job} failed: {failure}")]
    Failed {
        /// The job (for `map` and its kin: the chunk the failing input was in).
        job: JobId,
        /// Why.
        failure: JobFailure,
    },
    /// The pool stopped before the job finished (terminated, or too many worker restarts).
    #[error("the pool stopped: {0}")]
    Stopped(StopReason),
    /// A wait ran out of time; the job is still pending and can be waited for again.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
}

impl PoolError {
    /// Whether this is a [`PoolError::Timeout`].
    pub fn is_timeout(&self) -> bool {
        matches!(self, PoolError::Timeout(_))
    }

    /// Whether this is a job's own failure ([`PoolError::Failed`]).
    pub fn is_job_failure(&self) -> bool {
        matches!(self, PoolError::Failed { .. })
    }
}
