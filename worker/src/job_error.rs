//! `JobError`: why one job did not produce an output.
//!
//! It crosses the process boundary inside a [`crate::JobResult`], so it is plain data
//! (serde) rather than a boxed error with a source chain.
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Why a job failed. A job that returns an error is final: the supervisor reports it with this
/// cause and does not retry it (retries are for workers that die, hang or stop heartbeating).
#[derive(Debug, Clone, PartialEq, Eq, Error, Serialize, Deserialize)]
pub enum JobError {
    /// The job's input could not be decoded, or was rejected by the job kind.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// No job kind of this name is registered in the worker.
    #[error("unknown job kind `{0}`")]
    UnknownKind(String),
    /// The job ran and failed.
    #[error("{0}")]
    Failed(String),
    /// The job panicked; the worker caught the panic and carries on.
    #[error("job panicked: {0}")]
    Panicked(String),
}

/// The message of a panic payload (a `&str` or a `String`, as `panic!` makes them).
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

impl JobError {
    /// A failure described by any displayable cause, e.g. `JobError::failed(io_error)`.
    pub fn failed(cause: impl std::fmt::Display) -> Self {
        JobError::Failed(cause.to_string())
    }
}
