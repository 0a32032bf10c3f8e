//! `WorkerId`: a worker's identity for the supervisor, never reused within a run (unlike pids).
use std::fmt;

/// The n-th worker started in a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct WorkerId(pub u64);

impl fmt::Display for WorkerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "worker #{}", self.0)
    }
}
