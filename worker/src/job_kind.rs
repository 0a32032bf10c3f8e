//! `JobKind`: one kind of work a worker can do, from a serde input to a serde output.
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::JobError;

/// One kind of job. Registering a new kind in a [`crate::Registry`] is all a program needs to
/// run it on a herd pool:
///
/// ```
/// use herd_worker::{JobError, JobKind, Registry};
///
/// struct Square;
/// impl JobKind for Square {
///     const NAME: &'static str = "square";
///     type Input = u64;
///     type Output = u64;
///     fn run(&self, input: u64) -> Result<u64, JobError> {
///         input.checked_mul(input).ok_or_else(|| JobError::failed("overflow"))
///     }
/// }
///
/// let mut registry = Registry::new();
/// registry.register(Square).unwrap();
/// assert!(registry.contains("square"));
/// ```
pub trait JobKind: Send + Sync + 'static {
    /// The name jobs use to ask for this kind; unique within a registry.
    const NAME: &'static str;
    /// What the supervisor sends.
    type Input: Serialize + DeserializeOwned + Send + 'static;
    /// What the worker sends back.
    type Output: Serialize + DeserializeOwned + Send + 'static;
    /// Runs one job.
    fn run(&self, input: Self::Input) -> Result<Self::Output, JobError>;

    /// Runs attempt `attempt` of a job (1 for the first; a job is tried again when its worker
    /// was lost). The default ignores the attempt. A kind overrides it to take a faster path
    /// that may crash the worker on the first attempt only, and the safe path on every retry.
    fn run_attempt(&self, input: Self::Input, attempt: u32) -> Result<Self::Output, JobError> {
        let _ = attempt;
        self.run(input)
    }
}
