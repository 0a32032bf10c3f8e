//! `AsyncResult`: a value a pool is computing, as in Python's `multiprocessing.pool.AsyncResult`.
use std::fmt;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use herd_worker::{chunk_outputs_ok, decode_payload, read_chunk_outputs, JobId};
use serde::de::DeserializeOwned;

use crate::pool::engine::{Outcome, Shared};
use crate::pool::PoolError;
use crate::{JobFailure, StopReason};

/// The instant `timeout` from now; `None` (no deadline) when that is past what a clock can hold,
/// so that `Duration::MAX` means "wait for ever".
pub(crate) fn deadline_after(timeout: Duration) -> Option<Instant> {
    Instant::now().checked_add(timeout)
}

/// The outcomes of a result's jobs taken out of the shared state: the first `taken`, in order.
struct Collected {
    outcomes: Vec<Option<Outcome>>,
    taken: usize,
}

/// Turns the outcomes of a result's jobs, in order, into its value.
type Decode<T> = fn(&[(JobId, Outcome)], Option<&StopReason>) -> Result<T, PoolError>;

/// A value the pool is computing: one job's output ([`Pool::apply_async`]) or a whole map's
/// ([`Pool::map_async`]). Waiting needs no access to the pool, from any thread.
///
/// [`Pool::apply_async`]: crate::Pool::apply_async
/// [`Pool::map_async`]: crate::Pool::map_async
pub struct AsyncResult<T> {
    shared: Arc<Shared>,
    ids: Vec<JobId>,
    /// The outcomes taken so far, in the order of `ids`.
    collected: Mutex<Collected>,
    /// Whether the jobs are chunks (their answers hold one outcome per input).
    chunked: bool,
    decode: Decode<T>,
    output: PhantomData<fn() -> T>,
}

impl<T> fmt::Debug for AsyncResult<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncResult")
            .field("jobs", &self.ids)
            .finish_non_exhaustive()
    }
}

impl<T: DeserializeOwned> AsyncResult<T> {
    /// One job's output.
    pub(crate) fn single(shared: Arc<Shared>, id: JobId) -> Self {
        Self::new(shared, vec![id], false, decode_single::<T>)
    }
}

impl<T: DeserializeOwned> AsyncResult<Vec<T>> {
    /// The outputs of chunk jobs, concatenated in order.
    pub(crate) fn chunks(shared: Arc<Shared>, ids: Vec<JobId>) -> Self {
        Self::new(shared, ids, true, decode_chunks::<T>)
    }
}

impl<T> AsyncResult<T> {
    fn new(shared: Arc<Shared>, ids: Vec<JobId>, chunked: bool, decode: Decode<T>) -> Self {
        let collected = Mutex::new(Collected {
            outcomes: vec![None; ids.len()],
            taken: 0,
        });
        Self {
            shared,
            ids,
            collected,
            chunked,
            decode,
            output: PhantomData,
        }
    }

    /// The pool's ids of the jobs behind this result.
    pub fn jobs(&self) -> &[JobId] {
        &self.ids
    }

    /// Takes whatever outcomes have arrived; whether all have.
    /// Takes the outcomes that have arrived, in order, up to the first that has not; whether all
    /// have. Outcomes after a missing one stay in the shared state until then: a map of many
    /// jobs costs each wake-up only the outcomes it takes, not a scan of every job.
    fn take_arrived(&self, state: &mut crate::pool::engine::State) -> bool {
        let mut collected = self
            .collected
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let Collected { outcomes, taken } = &mut *collected;
        while let Some(&id) = self.ids.get(*taken) {
            match state.collect(id) {
                Some(outcome) => {
                    outcomes[*taken] = Some(outcome);
                    *taken += 1;
                }
                None => return false,
            }
        }
        true
    }

    /// Waits until every outcome is in; `false` if `deadline` passed first.
    fn wait_deadline(&self, deadline: Option<Instant>) -> bool {
        self.shared
            .wait_until(deadline, |state| self.take_arrived(state))
            && self.take_arrived(&mut self.shared.state())
    }

    /// Whether the value is ready (the jobs finished, or the pool stopped), without waiting.
    pub fn ready(&self) -> bool {
        self.shared.poll();
        self.take_arrived(&mut self.shared.state())
    }

    /// Waits until the value is ready.
    pub fn wait(&self) {
        self.wait_deadline(None);
    }

    /// Waits at most `timeout` (`Duration::MAX`: no limit); whether the value is ready.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.wait_deadline(deadline_after(timeout))
    }

    /// Whether the jobs succeeded; `None` while they are not finished (Python raises there).
    pub fn successful(&self) -> Option<bool> {
        if !self.ready() {
            return None;
        }
        let collected = self
            .collected
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        Some(
            collected
                .outcomes
                .iter()
                .flatten()
                .all(|outcome| match outcome {
                    Ok(bytes) => !self.chunked || chunk_outputs_ok(bytes),
                    Err(_) => false,
                }),
        )
    }

    /// Waits for the value. Can be called again: each call decodes the same outputs.
    pub fn get(&self) -> Result<T, PoolError> {
        self.wait();
        self.value()
    }

    /// Waits at most `timeout` (`Duration::MAX`: no limit) for the value;
    /// [`PoolError::Timeout`] leaves the jobs running, to be waited for again.
    pub fn get_timeout(&self, timeout: Duration) -> Result<T, PoolError> {
        if !self.wait_timeout(timeout) {
            return Err(PoolError::Timeout(timeout));
        }
        self.value()
    }

    fn value(&self) -> Result<T, PoolError> {
        let collected = self
            .collected
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let outcomes: Vec<(JobId, Outcome)> = self
            .ids
            .iter()
            .zip(collected.outcomes.iter())
            .map(|(&id, outcome)| {
                (
                    id,
                    outcome.clone().unwrap_or_else(|| {
                        Err(JobFailure::Abandoned(StopReason::Terminated.to_string()))
                    }),
                )
            })
            .collect();
        drop(collected);
        let stop = self.shared.state().stop_reason().cloned();
        (self.decode)(&outcomes, stop.as_ref())
    }
}

impl<T> Drop for AsyncResult<T> {
    /// Results nobody collected are dropped when they arrive, so a pool that runs for days keeps
    /// no memory for them.
    fn drop(&mut self) {
        let collected = self
            .collected
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        let mut state = self.shared.state();
        for &id in &self.ids[collected.taken..] {
            state.abandon(id);
        }
    }
}

/// A job's failure as the pool reports it; a pool that stopped says why.
pub(crate) fn job_error(id: JobId, failure: JobFailure, stop: Option<&StopReason>) -> PoolError {
    match (failure, stop) {
        (JobFailure::Abandoned(_), Some(reason)) => PoolError::Stopped(reason.clone()),
        (JobFailure::Abandoned(_), None) => PoolError::Stopped(StopReason::Terminated),
        (failure, _) => PoolError::Failed { job: id, failure },
    }
}

fn decode_single<T: DeserializeOwned>(
    outcomes: &[(JobId, Outcome)],
    stop: Option<&StopReason>,
) -> Result<T, PoolError> {
    let (id, outcome) = outcomes
        .first()
        .expect("a single result has one job")
        .clone();
    match outcome {
        Ok(bytes) => Ok(decode_payload(&bytes)?),
        Err(failure) => Err(job_error(id, failure, stop)),
    }
}

fn decode_chunks<T: DeserializeOwned>(
    outcomes: &[(JobId, Outcome)],
    stop: Option<&StopReason>,
) -> Result<Vec<T>, PoolError> {
    let mut values = Vec::new();
    for (id, outcome) in outcomes {
        for item in chunk_items::<T>(*id, outcome, stop) {
            values.push(item?);
        }
    }
    Ok(values)
}

/// The items of one chunk job, each its value or its failure.
pub(crate) fn chunk_items<'a, T: DeserializeOwned + 'a>(
    id: JobId,
    outcome: &'a Outcome,
    stop: Option<&StopReason>,
) -> Box<dyn Iterator<Item = Result<T, PoolError>> + 'a> {
    match outcome {
        Ok(bytes) => Box::new(read_chunk_outputs::<T>(bytes).map(move |item| match item {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(PoolError::Failed {
                job: id,
                failure: JobFailure::Error(error),
            }),
            Err(error) => Err(PoolError::Payload(error)),
        })),
        Err(failure) => Box::new(std::iter::once(Err(job_error(id, failure.clone(), stop)))),
    }
}
