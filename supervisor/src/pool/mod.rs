//! `Pool`: Python's `multiprocessing.Pool` for Rust programs, on the supervisor's machinery
//! (leases, retries, restarts with backoff and intensity limits, heartbeats, job timeouts).
//!
//! Jobs are plain functions made into job kinds with [`herd_worker::job!`] (or [`JobKind`]s
//! registered with [`herd_worker::register_kind!`]); every worker finds them, however it was
//! started. `map` and its kin send inputs in chunks, and short jobs are sent ahead to each
//! worker, so small jobs cost little more than the function itself.
//!
//! **Start methods.** [`StartMethod::Fork`] (the default in a single-threaded process) forks
//! workers from this process: the fastest start, and the workers inherit everything. In a
//! multi-threaded process (an async runtime, a test harness, a program with threads of its own)
//! a fork is unsafe and refused, and the default is [`StartMethod::Forkserver`]: a small
//! single-threaded server, started once by spawn, forks the workers at fork speed.
//! [`StartMethod::Spawn`] executes the binary anew for each worker. A pool whose method cannot
//! work here fails at once with a message that names the fix.
//!
//! **Who drives the pool.** With forked workers the pool starts no thread, because a thread would
//! make every later `fork` unsafe: whoever waits on the pool (`get`, `map`, an iterator's `next`,
//! `join`) runs its loop, and callbacks run there too. With the other methods the pool runs its
//! loop on a thread of its own (as Python's result-handler thread), callbacks run on that
//! thread, and any number of threads can submit and wait at once. In both cases every method
//! takes `&self` and a [`Pool`] is `Send + Sync`; its blocking calls block the calling thread
//! (in async code, call them through `spawn_blocking`).
mod async_result;
mod engine;
mod error;
mod imap;

use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use herd_worker::{encode_payload, Initializer, JobKind, Registry};
use nix::sys::signal::Signal;

pub use async_result::AsyncResult;
pub use error::PoolError;
pub use imap::{Imap, ImapUnordered};

use crate::pool::async_result::{deadline_after, job_error};
use crate::pool::engine::{Command, Drive, Engine, Outcome, PoolLog, Shared};
use crate::{
    Event, IpcLauncher, LeaseTable, SignalInbox, StartMethod, Supervisor, SupervisorConfig, Waker,
};

crate::worker_entry!(
    /// A spawned worker of a [`Pool`]: runs every kind the program registered where it defined
    /// it ([`Registry::global`]).
    pub pool_worker, herd_worker::Registry::global
);

/// The number of threads of this process, from `/proc/self/task` (`None` if unreadable).
fn thread_count() -> Option<usize> {
    Some(std::fs::read_dir("/proc/self/task").ok()?.count())
}

/// How a pool is set up: workers, start method, initializer, supervision.
#[derive(Debug, Clone, Default)]
pub struct PoolBuilder {
    workers: Option<usize>,
    method: Option<StartMethod>,
    config: Option<SupervisorConfig>,
    max_tasks_per_child: Option<u64>,
    registry: Option<fn() -> Registry>,
    initializer: Option<Result<Initializer, String>>,
}

impl PoolBuilder {
    /// Worker processes (default: the available CPUs).
    pub fn workers(mut self, workers: usize) -> Self {
        self.workers = Some(workers);
        self
    }

    /// How workers start (default: fork in a single-threaded process, forkserver otherwise; see
    /// [`StartMethod::default_for_this_process`]).
    pub fn start_method(mut self, method: StartMethod) -> Self {
        self.method = Some(method);
        self
    }

    /// Replace a worker after it ran this many jobs (Python's `maxtasksperchild`).
    pub fn max_tasks_per_child(mut self, tasks: u64) -> Self {
        self.max_tasks_per_child = Some(tasks.max(1));
        self
    }

    /// Runs `job` on `input` once in every worker when it starts, before any other job (Python's
    /// `initializer` and `initargs`). A worker whose initializer fails takes no job; if every
    /// start fails, the restart limit stops the pool.
    pub fn initializer<K: JobKind>(mut self, _job: K, input: K::Input) -> Self {
        self.initializer = Some(
            encode_payload(&input)
                .map(|payload| Initializer {
                    kind: K::NAME.to_owned(),
                    payload,
                })
                .map_err(|error| format!("encoding the initializer's input: {error}")),
        );
        self
    }

    /// Supervision settings: job timeout, heartbeats, attempts per job, restart limits, grace.
    /// [`workers`](Self::workers) and [`max_tasks_per_child`](Self::max_tasks_per_child), in
    /// whichever order they are called, override the config's own fields.
    pub fn supervision(mut self, config: SupervisorConfig) -> Self {
        self.config = Some(config);
        self
    }

    /// The job kinds forked workers run, instead of every registered kind
    /// ([`Registry::global`]). Only forked workers can use a registry built at run time: with
    /// another start method, building the pool fails.
    pub fn registry(mut self, registry: fn() -> Registry) -> Self {
        self.registry = Some(registry);
        self
    }

    /// Starts the pool.
    pub fn build(self) -> Result<Pool, PoolError> {
        let configured = self.config.is_some();
        let base = self.config.unwrap_or_default();
        let workers = match self.workers {
            Some(workers) => workers,
            None if configured => base.workers,
            None => std::thread::available_parallelism().map_or(1, usize::from),
        };
        if workers == 0 {
            return Err(PoolError::NoWorkers);
        }
        let threads = thread_count();
        let method = self
            .method
            .unwrap_or_else(StartMethod::default_for_this_process);
        if method == StartMethod::Fork && threads != Some(1) {
            let count =
                threads.map_or_else(|| "an unknown number of".to_owned(), |n| n.to_string());
            return Err(PoolError::Setup(format!(
                "the fork start method needs a single-threaded process, and this one has {count} \
                 threads (a fork copies only the calling thread, and locks the others hold stay \
                 locked in the child): use StartMethod::Forkserver, the default here"
            )));
        }
        if method != StartMethod::Fork && self.registry.is_some() {
            return Err(PoolError::Setup(
                "a registry built at run time reaches only forked workers: register the job \
                 kinds where they are defined (herd::job! or herd::register_kind!) or use \
                 StartMethod::Fork"
                    .into(),
            ));
        }
        let initializer = self.initializer.transpose().map_err(PoolError::Setup)?;
        let config = SupervisorConfig {
            workers,
            max_tasks_per_child: self.max_tasks_per_child.or(base.max_tasks_per_child),
            ..base
        };
        let registry = self.registry.unwrap_or(Registry::global);
        let setup = Setup {
            config,
            method,
            registry,
            initializer,
        };
        match method {
            StartMethod::Fork => {
                let (mut engine, _) = setup.start().map_err(PoolError::Setup)?;
                // Start the workers now, while this process is known to be single-threaded (as
                // Python's Pool does): a first use from another thread could not fork them.
                engine.supervisor.step_for(Duration::ZERO);
                Ok(Pool::from_parts(
                    Shared::new(Drive::Caller(Box::new(Mutex::new(engine)))),
                    None,
                    workers,
                ))
            }
            StartMethod::Spawn | StartMethod::Forkserver => Pool::with_thread(setup, workers),
        }
    }
}

/// What the loop needs to start, built on the thread that will run it.
struct Setup {
    config: SupervisorConfig,
    method: StartMethod,
    registry: fn() -> Registry,
    initializer: Option<Initializer>,
}

impl Setup {
    /// The loop, and a waker for its wait.
    fn start(self) -> Result<(Engine, Waker), String> {
        // Only SIGCHLD: the program keeps its own SIGINT and SIGTERM behaviour.
        let inbox = SignalInbox::install_for(&[Signal::SIGCHLD])
            .map_err(|error| format!("installing the SIGCHLD handler: {error}"))?;
        let waker = inbox
            .waker()
            .map_err(|error| format!("creating the pool's waker: {error}"))?;
        let mut launcher = IpcLauncher::new(
            self.method,
            self.registry,
            self.config.heartbeat_interval,
            inbox.inherited(),
        )
        .spawn_entry(pool_worker);
        if let Some(initializer) = self.initializer {
            launcher = launcher.initializer(initializer);
        }
        let jobs = LeaseTable::new(self.config.max_attempts);
        let supervisor =
            Supervisor::new(self.config, launcher, inbox, PoolLog::default(), jobs).keep_alive();
        Ok((Engine { supervisor }, waker))
    }
}

/// A pool of worker processes, as Python's `multiprocessing.Pool`.
///
/// ```
/// herd_supervisor::job! {
///     fn square(x: u64) -> u64 { x * x }
/// }
///
/// fn main() -> Result<(), herd_supervisor::PoolError> {
///     herd_ipc::init();
///     let pool = herd_supervisor::Pool::new(2)?;
///     assert_eq!(pool.map(square, 0..5)?, [0, 1, 4, 9, 16]);
///     assert_eq!(pool.apply(square, 7)?, 49);
///     pool.close();
///     pool.join()
/// }
/// ```
pub struct Pool {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
    workers: usize,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("workers", &self.workers)
            .field("own_thread", &matches!(self.shared.drive, Drive::Thread(_)))
            .finish_non_exhaustive()
    }
}

impl Pool {
    /// `workers` worker processes with the default start method and supervision, running every
    /// registered job kind. `Pool::new(0)` is an error.
    pub fn new(workers: usize) -> Result<Self, PoolError> {
        Self::builder().workers(workers).build()
    }

    /// A builder for a pool with other settings.
    pub fn builder() -> PoolBuilder {
        PoolBuilder::default()
    }

    fn from_parts(shared: Shared, thread: Option<JoinHandle<()>>, workers: usize) -> Self {
        Self {
            shared: Arc::new(shared),
            thread: Mutex::new(thread),
            workers,
        }
    }

    /// A pool whose loop runs on a thread of its own.
    fn with_thread(setup: Setup, workers: usize) -> Result<Self, PoolError> {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (shared_tx, shared_rx) = std::sync::mpsc::channel::<Arc<Shared>>();
        let thread = std::thread::Builder::new()
            .name("herd-pool".into())
            .spawn(move || {
                let (engine, waker) = match setup.start() {
                    Ok(started) => started,
                    Err(error) => {
                        let _ = ready_tx.send(Err(error));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(waker));
                let Ok(shared) = shared_rx.recv() else {
                    return;
                };
                // However the loop ends (a panic included), waiters must not wait for ever.
                let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    shared.run_thread(engine)
                }));
                shared.end();
                if let Err(panic) = outcome {
                    std::panic::resume_unwind(panic);
                }
            })
            .map_err(|error| PoolError::Setup(format!("starting the pool's thread: {error}")))?;
        let waker = match ready_rx.recv() {
            Ok(Ok(waker)) => waker,
            Ok(Err(error)) => {
                let _ = thread.join();
                return Err(PoolError::Setup(error));
            }
            Err(_) => {
                let _ = thread.join();
                return Err(PoolError::Setup("the pool's thread ended at start".into()));
            }
        };
        let pool = Self::from_parts(Shared::new(Drive::Thread(waker)), Some(thread), workers);
        shared_tx
            .send(Arc::clone(&pool.shared))
            .map_err(|_| PoolError::Setup("the pool's thread ended at start".into()))?;
        Ok(pool)
    }

    /// How many worker processes the pool keeps.
    pub fn workers(&self) -> usize {
        self.workers
    }

    fn submit<K: JobKind>(&self, input: &K::Input) -> Result<herd_worker::JobId, PoolError> {
        let payload = encode_payload(input)?;
        self.shared
            .submit(K::NAME, payload, false)
            .ok_or(PoolError::Closed)
    }

    /// Python's default chunk size for `len` inputs: about four chunks per worker.
    fn default_chunksize(&self, len: usize) -> usize {
        len.div_ceil(self.workers * 4).max(1)
    }

    fn submit_chunks<K: JobKind>(
        &self,
        inputs: Vec<K::Input>,
        chunksize: usize,
    ) -> Result<AsyncResult<Vec<K::Output>>, PoolError> {
        if chunksize == 0 {
            return Err(PoolError::ZeroChunksize);
        }
        let mut ids = Vec::with_capacity(inputs.len().div_ceil(chunksize));
        for chunk in inputs.chunks(chunksize) {
            let payload = encode_payload(&chunk)?;
            match self.shared.submit(K::NAME, payload, true) {
                Some(id) => ids.push(id),
                None => {
                    // What was sent is dropped with its result handle.
                    drop(AsyncResult::<Vec<K::Output>>::chunks(
                        Arc::clone(&self.shared),
                        ids,
                    ));
                    return Err(PoolError::Closed);
                }
            }
        }
        Ok(AsyncResult::chunks(Arc::clone(&self.shared), ids))
    }

    /// Runs `job` on `input` in a worker and waits for its output (Python's `apply`).
    pub fn apply<K: JobKind>(&self, job: K, input: K::Input) -> Result<K::Output, PoolError> {
        self.apply_async(job, input)?.get()
    }

    /// Runs `job` on `input` in a worker; wait for the output with [`AsyncResult::get`].
    pub fn apply_async<K: JobKind>(
        &self,
        _job: K,
        input: K::Input,
    ) -> Result<AsyncResult<K::Output>, PoolError> {
        let id = self.submit::<K>(&input)?;
        Ok(AsyncResult::single(Arc::clone(&self.shared), id))
    }

    /// Like [`apply_async`](Self::apply_async), with `callback` for the output and
    /// `error_callback` for a failure. They run when the job finishes, on the thread that drives
    /// the pool (see the module documentation), and should return quickly.
    pub fn apply_async_with<K: JobKind>(
        &self,
        job: K,
        input: K::Input,
        callback: impl FnOnce(K::Output) + Send + 'static,
        error_callback: impl FnOnce(PoolError) + Send + 'static,
    ) -> Result<AsyncResult<K::Output>, PoolError> {
        let result = self.apply_async(job, input)?;
        let id = result.jobs()[0];
        self.shared.on_finish(
            id,
            Box::new(move |outcome: &Outcome| match outcome {
                Ok(bytes) => match herd_worker::decode_payload::<K::Output>(bytes) {
                    Ok(output) => callback(output),
                    Err(error) => error_callback(error.into()),
                },
                Err(failure) => error_callback(job_error(id, failure.clone(), None)),
            }),
        );
        Ok(result)
    }

    /// Runs `job` on every input and waits for the outputs, in input order; the first failure
    /// if any input failed (Python's `map`, with its default chunk size).
    pub fn map<K: JobKind>(
        &self,
        job: K,
        inputs: impl IntoIterator<Item = K::Input>,
    ) -> Result<Vec<K::Output>, PoolError> {
        self.map_async(job, inputs)?.get()
    }

    /// [`map`](Self::map) with inputs sent `chunksize` at a time.
    pub fn map_chunked<K: JobKind>(
        &self,
        job: K,
        inputs: impl IntoIterator<Item = K::Input>,
        chunksize: usize,
    ) -> Result<Vec<K::Output>, PoolError> {
        self.map_async_chunked(job, inputs, chunksize)?.get()
    }

    /// [`map`](Self::map) without waiting.
    pub fn map_async<K: JobKind>(
        &self,
        _job: K,
        inputs: impl IntoIterator<Item = K::Input>,
    ) -> Result<AsyncResult<Vec<K::Output>>, PoolError> {
        let inputs: Vec<K::Input> = inputs.into_iter().collect();
        let chunksize = self.default_chunksize(inputs.len());
        self.submit_chunks::<K>(inputs, chunksize)
    }

    /// [`map_async`](Self::map_async) with inputs sent `chunksize` at a time.
    pub fn map_async_chunked<K: JobKind>(
        &self,
        _job: K,
        inputs: impl IntoIterator<Item = K::Input>,
        chunksize: usize,
    ) -> Result<AsyncResult<Vec<K::Output>>, PoolError> {
        self.submit_chunks::<K>(inputs.into_iter().collect(), chunksize)
    }

    /// [`map_async`](Self::map_async) with `callback` for the outputs (all of them, in order)
    /// and `error_callback` for the first failure, run as for
    /// [`apply_async_with`](Self::apply_async_with).
    pub fn map_async_with<K: JobKind>(
        &self,
        job: K,
        inputs: impl IntoIterator<Item = K::Input>,
        callback: impl FnOnce(Vec<K::Output>) + Send + 'static,
        error_callback: impl FnOnce(PoolError) + Send + 'static,
    ) -> Result<AsyncResult<Vec<K::Output>>, PoolError> {
        let result = self.map_async(job, inputs)?;
        let group = Arc::new(Mutex::new(Group::<K::Output> {
            parts: (0..result.jobs().len()).map(|_| None).collect(),
            left: result.jobs().len(),
            done: Some((Box::new(callback), Box::new(error_callback))),
        }));
        if result.jobs().is_empty() {
            group
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .finish();
        }
        for (index, &id) in result.jobs().iter().enumerate() {
            let group = Arc::clone(&group);
            self.shared.on_finish(
                id,
                Box::new(move |outcome: &Outcome| {
                    let mut group = group.lock().unwrap_or_else(PoisonError::into_inner);
                    group.parts[index] = Some(
                        async_result::chunk_items::<K::Output>(id, outcome, None)
                            .collect::<Result<Vec<_>, _>>(),
                    );
                    group.left -= 1;
                    if group.left == 0 {
                        group.finish();
                    }
                }),
            );
        }
        Ok(result)
    }

    /// Runs a job of several arguments on every tuple of them (Python's `starmap`): a
    /// [`job!`](herd_worker::job) function of several arguments takes them as a tuple, so this
    /// is [`map`](Self::map) under the name Python users look for.
    pub fn starmap<K: JobKind>(
        &self,
        job: K,
        inputs: impl IntoIterator<Item = K::Input>,
    ) -> Result<Vec<K::Output>, PoolError> {
        self.map(job, inputs)
    }

    /// [`starmap`](Self::starmap) without waiting.
    pub fn starmap_async<K: JobKind>(
        &self,
        job: K,
        inputs: impl IntoIterator<Item = K::Input>,
    ) -> Result<AsyncResult<Vec<K::Output>>, PoolError> {
        self.map_async(job, inputs)
    }

    /// Runs `job` on every input lazily: outputs in input order, with a bounded number of
    /// inputs in flight, so `inputs` may be long or endless (Python's `imap`, one input per
    /// chunk).
    pub fn imap<K: JobKind, I: IntoIterator<Item = K::Input>>(
        &self,
        job: K,
        inputs: I,
    ) -> Imap<'_, K, I::IntoIter> {
        self.imap_chunked(job, inputs, 1)
    }

    /// [`imap`](Self::imap) with inputs sent `chunksize` at a time (0 counts as 1).
    pub fn imap_chunked<K: JobKind, I: IntoIterator<Item = K::Input>>(
        &self,
        _job: K,
        inputs: I,
        chunksize: usize,
    ) -> Imap<'_, K, I::IntoIter> {
        Imap::new(self, inputs.into_iter(), chunksize.max(1))
    }

    /// Like [`imap`](Self::imap), with outputs in the order they finish.
    pub fn imap_unordered<K: JobKind, I: IntoIterator<Item = K::Input>>(
        &self,
        job: K,
        inputs: I,
    ) -> ImapUnordered<'_, K, I::IntoIter> {
        self.imap_unordered_chunked(job, inputs, 1)
    }

    /// [`imap_unordered`](Self::imap_unordered) with inputs sent `chunksize` at a time (0 counts
    /// as 1).
    pub fn imap_unordered_chunked<K: JobKind, I: IntoIterator<Item = K::Input>>(
        &self,
        _job: K,
        inputs: I,
        chunksize: usize,
    ) -> ImapUnordered<'_, K, I::IntoIter> {
        ImapUnordered::new(self, inputs.into_iter(), chunksize.max(1))
    }

    /// No more jobs: submitting now fails with [`PoolError::Closed`]; the submitted ones still
    /// run, then the workers leave.
    pub fn close(&self) {
        self.shared.command(Command::Close);
    }

    /// Stops now: every worker is killed (with its own children) and reaped; jobs not finished
    /// fail with [`PoolError::Stopped`].
    pub fn terminate(&self) {
        self.shared.command(Command::Terminate);
        self.wait_over(None);
    }

    /// Waits for the workers to exit after [`close`](Self::close) or
    /// [`terminate`](Self::terminate) ([`PoolError::StillOpen`] otherwise, as in Python). An
    /// error if the pool stopped early (too many worker restarts); job failures are reported
    /// through their own results.
    pub fn join(&self) -> Result<(), PoolError> {
        self.join_deadline(None, Duration::MAX)
    }

    /// [`join`](Self::join), waiting at most `timeout` (`Duration::MAX`: no limit).
    pub fn join_timeout(&self, timeout: Duration) -> Result<(), PoolError> {
        self.join_deadline(deadline_after(timeout), timeout)
    }

    fn join_deadline(
        &self,
        deadline: Option<std::time::Instant>,
        timeout: Duration,
    ) -> Result<(), PoolError> {
        if !self.shared.state().closed {
            return Err(PoolError::StillOpen);
        }
        if !self.wait_over(deadline) {
            return Err(PoolError::Timeout(timeout));
        }
        match self.shared.state().stop_reason() {
            Some(crate::StopReason::Intensity(exceeded)) => Err(PoolError::Stopped(
                crate::StopReason::Intensity(exceeded.clone()),
            )),
            _ => Ok(()),
        }
    }

    /// Waits until the loop is over (and its thread, if any, has ended).
    fn wait_over(&self, deadline: Option<std::time::Instant>) -> bool {
        if !self.shared.wait_until(deadline, |state| state.over) {
            return false;
        }
        let thread = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(thread) = thread {
            // Its panic, if any, was a bug already reported on stderr; waiters were released.
            let _ = thread.join();
        }
        true
    }

    /// What went wrong so far, oldest first: workers lost and killed, jobs re-queued or failed,
    /// the restart limit (the last 1000 such events).
    pub fn incidents(&self) -> Vec<Event> {
        self.shared.state().incidents().cloned().collect()
    }
}

impl Drop for Pool {
    /// A pool dropped before it is over is terminated: its workers and their own children are
    /// killed (by process group) and reaped.
    fn drop(&mut self) {
        if !self.shared.state().over {
            self.shared.command(Command::Terminate);
        }
        self.wait_over(None);
    }
}

/// The parts of a `map_async_with` as they arrive.
struct Group<T> {
    parts: Vec<Option<Result<Vec<T>, PoolError>>>,
    left: usize,
    done: Option<GroupCallbacks<T>>,
}

type GroupCallbacks<T> = (
    Box<dyn FnOnce(Vec<T>) + Send>,
    Box<dyn FnOnce(PoolError) + Send>,
);

impl<T> Group<T> {
    fn finish(&mut self) {
        let Some((callback, error_callback)) = self.done.take() else {
            return;
        };
        let mut values = Vec::new();
        for part in self.parts.drain(..) {
            match part {
                Some(Ok(items)) => values.extend(items),
                Some(Err(error)) => return error_callback(error),
                None => return error_callback(PoolError::Stopped(crate::StopReason::Terminated)),
            }
        }
        callback(values)
    }
}
