//! `Pool`: a `multiprocessing.Pool` for Rust programs, on the supervisor's machinery (leases,
//! retries, restarts with backoff and intensity, heartbeats, job timeouts).
//!
//! There is no background thread (a thread would make every later `fork` unsafe): the pool is
//! driven by whoever waits on it. `map`, `imap_unordered`'s iterator, [`AsyncResult::get`] and
//! [`Pool::join`] run the supervision loop on the calling thread until what they wait for is
//! there; callbacks of `apply_async_with` run there too, in whichever of those calls sees the
//! result first. Outputs are kept in the pool until it is dropped.
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::marker::PhantomData;
use std::time::{Duration, Instant};

use herd_worker::{decode_payload, encode_payload, JobId, JobKind, PayloadError, Registry};
use nix::sys::signal::Signal;
use serde::de::DeserializeOwned;
use thiserror::Error;

use crate::{
    Event, IpcLauncher, JobFailure, Level, Observer, SignalInbox, StartMethod, StopReason,
    Supervisor, SupervisorConfig,
};

/// How many of the supervisor's warnings and errors a pool keeps (the oldest go first).
const KEPT_EVENTS: usize = 1000;

/// The pool's record of what went wrong: lost workers, re-queued jobs, restart limits. Routine
/// events are not kept, and the record is bounded, so a pool that runs for days stays small.
#[derive(Debug, Default)]
struct Incidents(VecDeque<Event>);

impl Observer for Incidents {
    fn on_event(&mut self, event: &Event) {
        if event.level() >= Level::Warn {
            if self.0.len() == KEPT_EVENTS {
                self.0.pop_front();
            }
            self.0.push_back(event.clone());
        }
    }
}

/// Why a pool operation or a job did not give a value.
#[derive(Debug, Error)]
pub enum PoolError {
    /// The pool could not be set up.
    #[error("starting the pool: {0}")]
    Setup(#[source] std::io::Error),
    /// The pool is closed or terminated: no new job.
    #[error("the pool is closed")]
    Closed,
    /// A job's input or output could not be (de)serialised.
    #[error(transparent)]
    Payload(#[from] PayloadError),
    /// The job failed (its error, or lost workers on every attempt).
    #[error("job {id} failed: {failure}")]
    Failed {
        /// The job.
        id: JobId,
        /// Why.
        failure: JobFailure,
    },
    /// The pool stopped before the job finished (terminated, or too many worker restarts).
    #[error("the pool stopped: {0}")]
    Stopped(StopReason),
    /// The wait timed out; the job is still pending.
    #[error("timed out waiting for job {0}")]
    Timeout(JobId),
}

type Callback = Box<dyn FnOnce(Result<&[u8], &JobFailure>)>;

/// A pool of worker processes running registered job kinds.
pub struct Pool {
    supervisor: Supervisor<IpcLauncher, Incidents>,
    callbacks: BTreeMap<JobId, Callback>,
    closed: bool,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("pending_callbacks", &self.callbacks.len())
            .finish_non_exhaustive()
    }
}

impl Pool {
    /// `workers` forked workers running the kinds `registry` builds, with default supervision.
    pub fn new(workers: usize, registry: fn() -> Registry) -> Result<Self, PoolError> {
        let config = SupervisorConfig {
            workers,
            ..SupervisorConfig::default()
        };
        Self::with_config(config, StartMethod::Fork, registry)
    }

    /// A pool with explicit supervision settings. [`StartMethod::Spawn`] needs a worker entry:
    /// use [`Pool::with_launcher`].
    pub fn with_config(
        config: SupervisorConfig,
        method: StartMethod,
        registry: fn() -> Registry,
    ) -> Result<Self, PoolError> {
        // Only SIGCHLD: the embedding program keeps its own SIGINT/SIGTERM behaviour.
        let inbox = SignalInbox::install_for(&[Signal::SIGCHLD]).map_err(PoolError::Setup)?;
        let launcher = IpcLauncher::new(
            method,
            registry,
            config.heartbeat_interval,
            inbox.inherited(),
        );
        Self::start(config, launcher, inbox)
    }

    /// A pool whose workers `launcher` starts, e.g. spawned workers running a
    /// [`worker_entry!`](crate::worker_entry): `IpcLauncher::new(StartMethod::Spawn, registry,
    /// config.heartbeat_interval, inbox.inherited()).spawn_entry(my_worker)`, with `inbox`
    /// installed for SIGCHLD only ([`SignalInbox::install_for`]).
    pub fn with_launcher(
        config: SupervisorConfig,
        launcher: IpcLauncher,
        inbox: SignalInbox,
    ) -> Result<Self, PoolError> {
        Self::start(config, launcher, inbox)
    }

    fn start(
        config: SupervisorConfig,
        launcher: IpcLauncher,
        inbox: SignalInbox,
    ) -> Result<Self, PoolError> {
        let jobs = crate::LeaseTable::new(config.max_attempts);
        let supervisor =
            Supervisor::new(config, launcher, inbox, Incidents::default(), jobs).keep_alive();
        Ok(Self {
            supervisor,
            callbacks: BTreeMap::new(),
            closed: false,
        })
    }

    fn submit<K: JobKind>(&mut self, input: &K::Input) -> Result<JobId, PoolError> {
        if self.closed {
            return Err(PoolError::Closed);
        }
        let payload = encode_payload(input)?;
        self.supervisor
            .submit(K::NAME, payload)
            .ok_or(PoolError::Closed)
    }

    /// One pass of the loop, then the callbacks of jobs that finished.
    fn pump(&mut self) {
        self.supervisor.step();
        let finished: Vec<JobId> = self
            .callbacks
            .keys()
            .copied()
            .filter(|&id| self.supervisor.jobs().is_finished(id))
            .collect();
        for id in finished {
            if let Some(callback) = self.callbacks.remove(&id) {
                let jobs = self.supervisor.jobs();
                match jobs.output(id) {
                    Some(output) => callback(Ok(output)),
                    None => callback(Err(jobs
                        .failure(id)
                        .expect("a finished job without output failed"))),
                }
            }
        }
    }

    fn outcome<T: DeserializeOwned>(&self, id: JobId) -> Option<Result<T, PoolError>> {
        let jobs = self.supervisor.jobs();
        if let Some(output) = jobs.output(id) {
            return Some(decode_payload(output).map_err(PoolError::from));
        }
        if let Some(failure) = jobs.failure(id) {
            return Some(Err(PoolError::Failed {
                id,
                failure: failure.clone(),
            }));
        }
        if self.supervisor.is_over() {
            let reason = self
                .supervisor
                .stopped()
                .cloned()
                .unwrap_or(StopReason::Terminated);
            return Some(Err(PoolError::Stopped(reason)));
        }
        None
    }

    fn wait_for<T: DeserializeOwned>(
        &mut self,
        id: JobId,
        timeout: Option<Duration>,
    ) -> Result<T, PoolError> {
        let deadline = timeout.map(|timeout| Instant::now() + timeout);
        loop {
            if let Some(outcome) = self.outcome(id) {
                return outcome;
            }
            if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
                return Err(PoolError::Timeout(id));
            }
            self.pump();
        }
    }

    /// Runs `K` on every input; the outputs in input order, or the first failure.
    pub fn map<K: JobKind>(
        &mut self,
        inputs: impl IntoIterator<Item = K::Input>,
    ) -> Result<Vec<K::Output>, PoolError> {
        let ids = inputs
            .into_iter()
            .map(|input| self.submit::<K>(&input))
            .collect::<Result<Vec<_>, _>>()?;
        ids.into_iter().map(|id| self.wait_for(id, None)).collect()
    }

    /// Runs `K` on every input; outputs as they finish, in any order.
    pub fn imap_unordered<K: JobKind>(
        &mut self,
        inputs: impl IntoIterator<Item = K::Input>,
    ) -> Result<ImapUnordered<'_, K::Output>, PoolError> {
        let pending = inputs
            .into_iter()
            .map(|input| self.submit::<K>(&input))
            .collect::<Result<BTreeSet<_>, _>>()?;
        Ok(ImapUnordered {
            pool: self,
            pending,
            output: PhantomData,
        })
    }

    /// Submits one job; wait for it with [`AsyncResult::get`].
    pub fn apply_async<K: JobKind>(
        &mut self,
        input: &K::Input,
    ) -> Result<AsyncResult<K::Output>, PoolError> {
        Ok(AsyncResult {
            id: self.submit::<K>(input)?,
            output: PhantomData,
        })
    }

    /// Like [`apply_async`](Self::apply_async), with a callback for the output and an error
    /// callback for a failure, run on the thread driving the pool when the job finishes.
    pub fn apply_async_with<K: JobKind>(
        &mut self,
        input: &K::Input,
        callback: impl FnOnce(K::Output) + 'static,
        error_callback: impl FnOnce(PoolError) + 'static,
    ) -> Result<AsyncResult<K::Output>, PoolError> {
        let id = self.submit::<K>(input)?;
        let callback: Callback = Box::new(move |outcome| match outcome {
            Ok(bytes) => match decode_payload::<K::Output>(bytes) {
                Ok(output) => callback(output),
                Err(error) => error_callback(error.into()),
            },
            Err(failure) => error_callback(PoolError::Failed {
                id,
                failure: failure.clone(),
            }),
        });
        self.callbacks.insert(id, callback);
        Ok(AsyncResult {
            id,
            output: PhantomData,
        })
    }

    /// Drives the pool until no job is pending (callbacks included) without closing it.
    pub fn wait_idle(&mut self) {
        while self.supervisor.jobs().unfinished() > 0 && !self.supervisor.is_over() {
            self.pump();
        }
        self.pump();
    }

    /// No more jobs: submitting now fails with [`PoolError::Closed`]; the submitted ones still
    /// run, then the workers leave.
    pub fn close(&mut self) {
        self.closed = true;
        self.supervisor.close();
    }

    /// What went wrong so far, oldest first: workers lost and killed, jobs re-queued or failed,
    /// the restart limit (the last 1000 such events).
    pub fn incidents(&self) -> impl Iterator<Item = &Event> {
        self.supervisor.observer().0.iter()
    }

    /// Waits for every job, then for every worker to exit. An error only if the pool stopped
    /// early (too many restarts); job failures are reported through their own results.
    pub fn join(mut self) -> Result<(), PoolError> {
        self.close();
        while !self.supervisor.is_over() {
            self.pump();
        }
        let report = self.supervisor.finish();
        match report.stopped {
            Some(reason) => Err(PoolError::Stopped(reason)),
            None => Ok(()),
        }
    }

    /// Kills every worker now; pending jobs fail.
    pub fn terminate(mut self) {
        self.kill_workers();
    }

    fn kill_workers(&mut self) {
        self.supervisor.terminate();
        while !self.supervisor.is_over() {
            self.supervisor.step();
        }
    }
}

impl Drop for Pool {
    /// A pool dropped without [`join`](Pool::join) is terminated: its workers and their own
    /// children are killed (by process group) and reaped.
    fn drop(&mut self) {
        if !self.supervisor.is_over() {
            self.kill_workers();
        }
    }
}

/// A job submitted with [`Pool::apply_async`].
#[derive(Debug)]
pub struct AsyncResult<T> {
    id: JobId,
    output: PhantomData<fn() -> T>,
}

impl<T: DeserializeOwned> AsyncResult<T> {
    /// The job's id.
    pub fn id(&self) -> JobId {
        self.id
    }

    /// Whether the job has finished (drives the pool once).
    pub fn ready(&self, pool: &mut Pool) -> bool {
        pool.pump();
        pool.supervisor.jobs().is_finished(self.id)
    }

    /// Waits for the output, driving the pool.
    pub fn get(&self, pool: &mut Pool) -> Result<T, PoolError> {
        pool.wait_for(self.id, None)
    }

    /// Waits at most `timeout`; [`PoolError::Timeout`] leaves the job pending.
    pub fn get_timeout(&self, pool: &mut Pool, timeout: Duration) -> Result<T, PoolError> {
        pool.wait_for(self.id, Some(timeout))
    }
}

/// Outputs of [`Pool::imap_unordered`] as jobs finish.
pub struct ImapUnordered<'pool, T> {
    pool: &'pool mut Pool,
    pending: BTreeSet<JobId>,
    output: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for ImapUnordered<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImapUnordered")
            .field("pending", &self.pending.len())
            .finish()
    }
}

impl<T: DeserializeOwned> Iterator for ImapUnordered<'_, T> {
    type Item = Result<T, PoolError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.pending.is_empty() {
            return None;
        }
        loop {
            let over = self.pool.supervisor.is_over();
            let jobs = self.pool.supervisor.jobs();
            let done = self
                .pending
                .iter()
                .copied()
                .find(|&id| over || jobs.is_finished(id));
            if let Some(id) = done {
                self.pending.remove(&id);
                return self.pool.outcome(id);
            }
            self.pool.pump();
        }
    }
}
