//! The worker loop: take a job, run it, send the result; heartbeat all along; leave on `Stop`,
//! on SIGTERM once the current job is done, or when the supervisor is gone.
//!
//! Jobs arrive in batches and wait in a local queue; results go back in batches, flushed when
//! the queue runs dry, when a batch is large, or when the oldest unsent result has waited a
//! couple of milliseconds, so short jobs cost no round trip each and long ones report at once.
//!
//! Jobs run on the loop's own thread (no hand-off per job); a second thread sends the
//! heartbeats on the same link (a [`Link`] is `Sync`). So a slow or hung job still heartbeats
//! (the supervisor's job timeout deals with it), while a stopped or frozen process does not (the
//! supervisor's heartbeat timeout deals with that).
use std::collections::VecDeque;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use thiserror::Error;

use crate::job_error::panic_message;
use crate::{FromWorker, Job, JobError, JobResult, Link, Registry, ToWorker};

/// How a worker behaves.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// How often the worker says it is alive, idle or busy.
    pub heartbeat_interval: Duration,
    /// A job run once when the worker starts, before it takes any other (Python's `Pool`
    /// initializer); if it fails, the worker stops with [`WorkerError::Initializer`].
    pub initializer: Option<Initializer>,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        Self {
            heartbeat_interval: Duration::from_millis(200),
            initializer: None,
        }
    }
}

/// A registered job kind and its encoded input, run once when a worker starts.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Initializer {
    /// The kind's [`crate::JobKind::NAME`].
    pub kind: String,
    /// The input, encoded with [`crate::encode_payload`].
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
}

/// Why a worker loop ended normally.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerExit {
    /// The supervisor sent [`ToWorker::Stop`].
    Stopped,
    /// SIGTERM arrived; the job running then (if any) was finished and its result sent.
    Terminated,
}

/// Why a worker loop could not carry on.
#[derive(Debug, Error)]
pub enum WorkerError {
    /// The SIGTERM handler could not be installed.
    #[error("installing the SIGTERM handler: {0}")]
    Signal(#[source] std::io::Error),
    /// The link to the supervisor broke: the supervisor is gone.
    #[error("link to the supervisor: {0}")]
    Link(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Finished results could not be sent: the jobs they answer are lost to this worker.
    #[error("could not send the result of {jobs} to the supervisor: {source}")]
    SendResults {
        /// The jobs whose results were not sent, e.g. "job 3 (attempt 1)".
        jobs: String,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The heartbeat thread could not be started.
    #[error("starting the heartbeat thread: {0}")]
    HeartbeatThread(#[source] std::io::Error),
    /// The initializer failed: the worker takes no job.
    #[error("the initializer `{kind}` failed: {error}")]
    Initializer {
        /// Its kind.
        kind: String,
        /// How it failed.
        error: JobError,
    },
}

fn link_error<E: std::error::Error + Send + Sync + 'static>(error: E) -> WorkerError {
    WorkerError::Link(Box::new(error))
}

fn run_one(registry: &Registry, job: Job) -> JobResult {
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| registry.run_job(&job)))
        .unwrap_or_else(|payload| Err(JobError::Panicked(panic_message(payload.as_ref()))));
    JobResult {
        id: job.id,
        attempt: job.attempt,
        outcome,
    }
}

/// Jobs run between two looks for new messages while the local queue is not empty.
const CHECK_EVERY: usize = 32;
/// Results sent in one message at most.
const BATCH_RESULTS: usize = 256;
/// How long a finished result may wait for others to share its message.
const BATCH_PATIENCE: Duration = Duration::from_millis(2);

/// Bytes a result adds to a `Done` message besides its output: ids, attempt, tags, lengths (an
/// error's text counts in full).
const RESULT_OVERHEAD: usize = 32;

/// Results not sent yet.
#[derive(Default)]
struct Results {
    pending: Vec<JobResult>,
    /// About what `pending` encodes to.
    pending_bytes: usize,
    oldest: Option<Instant>,
}

/// About how many bytes `result` adds to a `Done` message.
fn encoded_size(result: &JobResult) -> usize {
    RESULT_OVERHEAD
        + match &result.outcome {
            Ok(bytes) => bytes.len(),
            Err(error) => error.to_string().len(),
        }
}

impl Results {
    /// Adds a result, first sending those pending if the message would otherwise grow past
    /// the link's message size: many results must not add up to a message that needs parts.
    fn push<L: Link>(&mut self, link: &L, result: JobResult) -> Result<(), WorkerError> {
        let size = encoded_size(&result);
        if !self.pending.is_empty()
            && self.pending_bytes.saturating_add(size) > link.max_message_size()
        {
            self.flush(link)?;
        }
        self.oldest.get_or_insert_with(Instant::now);
        self.pending_bytes += size;
        self.pending.push(result);
        Ok(())
    }

    /// Whether to send now: nothing left to run, a full batch, or a result waited long enough.
    fn due(&self, queue_empty: bool) -> bool {
        !self.pending.is_empty()
            && (queue_empty
                || self.pending.len() >= BATCH_RESULTS
                || self
                    .oldest
                    .is_some_and(|oldest| oldest.elapsed() >= BATCH_PATIENCE))
    }

    fn flush<L: Link>(&mut self, link: &L) -> Result<(), WorkerError> {
        self.oldest = None;
        self.pending_bytes = 0;
        if self.pending.is_empty() {
            return Ok(());
        }
        let sent: Vec<(crate::JobId, u32)> = self
            .pending
            .iter()
            .map(|result| (result.id, result.attempt))
            .collect();
        let batch = FromWorker::Done(std::mem::take(&mut self.pending));
        link.send(&batch).map_err(|error| {
            let jobs: Vec<String> = sent
                .iter()
                .map(|(id, attempt)| format!("job {id} (attempt {attempt})"))
                .collect();
            WorkerError::SendResults {
                jobs: jobs.join(", "),
                source: Box::new(error),
            }
        })
    }
}

/// Runs jobs from `link` until told to stop, SIGTERM, or the link breaks.
///
/// Call it in the worker process (not in a process that must keep its own SIGTERM behaviour):
/// it installs a SIGTERM handler for its duration.
pub fn run_worker<L: Link>(
    registry: &Registry,
    link: &L,
    options: &WorkerOptions,
) -> Result<WorkerExit, WorkerError> {
    if let Some(initializer) = &options.initializer {
        let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
            registry.run_attempt(&initializer.kind, &initializer.payload, 1)
        }))
        .unwrap_or_else(|payload| Err(JobError::Panicked(panic_message(payload.as_ref()))));
        if let Err(error) = outcome {
            return Err(WorkerError::Initializer {
                kind: initializer.kind.clone(),
                error,
            });
        }
    }
    let terminate = Arc::new(AtomicBool::new(false));
    let sigterm = signal_hook::flag::register(signal_hook::consts::SIGTERM, Arc::clone(&terminate))
        .map_err(WorkerError::Signal)?;
    let outcome = thread::scope(|scope| {
        // Dropping `stop_heartbeats` (when this closure returns) ends the heartbeat thread at once.
        let (stop_heartbeats, stopped) = mpsc::channel::<()>();
        let interval = options.heartbeat_interval;
        thread::Builder::new()
            .name("herd-heartbeat".into())
            .spawn_scoped(scope, move || {
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(interval) {
                    if link.send(&FromWorker::Heartbeat).is_err() {
                        break; // The loop sees the broken link itself.
                    }
                }
            })
            .map_err(WorkerError::HeartbeatThread)?;
        link.send(&FromWorker::Ready).map_err(link_error)?;
        let mut queue: VecDeque<Job> = VecDeque::new();
        let mut results = Results::default();
        let mut run_since_check = 0;
        let exit = loop {
            if terminate.load(Ordering::Relaxed) {
                results.flush(link)?;
                link.send(&FromWorker::Leaving).map_err(link_error)?;
                break WorkerExit::Terminated;
            }
            // Look for messages when there is nothing to run (waiting up to a heartbeat) and
            // now and then between queued jobs, not before each one: a check is a system call.
            if queue.is_empty() || run_since_check >= CHECK_EVERY {
                run_since_check = 0;
                let mut wait = if queue.is_empty() {
                    interval
                } else {
                    Duration::ZERO
                };
                let mut stop = false;
                while let Some(message) = link.recv_timeout(wait).map_err(link_error)? {
                    match message {
                        ToWorker::Stop => {
                            stop = true;
                            break;
                        }
                        ToWorker::Run(jobs) => queue.extend(jobs),
                    }
                    wait = Duration::ZERO;
                }
                if stop {
                    results.flush(link)?;
                    break WorkerExit::Stopped;
                }
            }
            if let Some(job) = queue.pop_front() {
                results.push(link, run_one(registry, job))?;
                run_since_check += 1;
            }
            if results.due(queue.is_empty()) {
                results.flush(link)?;
            }
        };
        drop(stop_heartbeats);
        Ok(exit)
    });
    signal_hook::low_level::unregister(sigterm);
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{decode_payload, encode_payload, JobKind};

    /// The supervisor's side of an in-memory link.
    struct ChannelLink {
        to_worker: std::sync::Mutex<mpsc::Receiver<ToWorker>>,
        from_worker: std::sync::Mutex<mpsc::Sender<FromWorker>>,
        /// Its message size; a result with a larger output cannot be sent at all.
        limit: usize,
    }

    #[derive(Debug, Error)]
    #[error("the other end is gone")]
    struct Gone;

    impl Link for ChannelLink {
        type Error = Gone;
        fn send(&self, message: &FromWorker) -> Result<(), Gone> {
            if let FromWorker::Done(results) = message {
                let too_large = |result: &JobResult| {
                    result
                        .outcome
                        .as_ref()
                        .is_ok_and(|bytes| bytes.len() > self.limit)
                };
                if results.iter().any(too_large) {
                    return Err(Gone);
                }
            }
            let sender = self.from_worker.lock().map_err(|_| Gone)?;
            sender.send(message.clone()).map_err(|_| Gone)
        }
        fn max_message_size(&self) -> usize {
            self.limit
        }
        fn recv_timeout(&self, timeout: Duration) -> Result<Option<ToWorker>, Gone> {
            let receiver = self.to_worker.lock().map_err(|_| Gone)?;
            match receiver.recv_timeout(timeout) {
                Ok(message) => Ok(Some(message)),
                Err(mpsc::RecvTimeoutError::Timeout) => Ok(None),
                Err(mpsc::RecvTimeoutError::Disconnected) => Err(Gone),
            }
        }
    }

    struct Nap;
    impl JobKind for Nap {
        const NAME: &'static str = "nap";
        type Input = u64;
        type Output = u64;
        fn run(&self, millis: u64) -> Result<u64, JobError> {
            if millis == 999 {
                panic!("nap refused");
            }
            thread::sleep(Duration::from_millis(millis));
            Ok(millis + 1)
        }
    }

    /// Answers a string of the given length.
    struct Blob;
    impl JobKind for Blob {
        const NAME: &'static str = "blob";
        type Input = usize;
        type Output = String;
        fn run(&self, len: usize) -> Result<String, JobError> {
            Ok("x".repeat(len))
        }
    }

    fn blob(id: u64, len: usize) -> Job {
        Job {
            id,
            attempt: 1,
            kind: "blob".into(),
            chunk: false,
            payload: encode_payload(&len).unwrap(),
        }
    }

    fn start() -> (
        mpsc::Sender<ToWorker>,
        mpsc::Receiver<FromWorker>,
        thread::JoinHandle<Result<WorkerExit, WorkerError>>,
    ) {
        start_with_limit(usize::MAX)
    }

    fn start_with_limit(
        limit: usize,
    ) -> (
        mpsc::Sender<ToWorker>,
        mpsc::Receiver<FromWorker>,
        thread::JoinHandle<Result<WorkerExit, WorkerError>>,
    ) {
        let (to_tx, to_rx) = mpsc::channel();
        let (from_tx, from_rx) = mpsc::channel();
        let handle = thread::spawn(move || {
            let mut registry = Registry::new();
            registry.register(Nap).unwrap();
            registry.register(Blob).unwrap();
            let link = ChannelLink {
                to_worker: std::sync::Mutex::new(to_rx),
                from_worker: std::sync::Mutex::new(from_tx),
                limit,
            };
            let options = WorkerOptions {
                heartbeat_interval: Duration::from_millis(20),
                initializer: None,
            };
            run_worker(&registry, &link, &options)
        });
        (to_tx, from_rx, handle)
    }

    fn nap(id: u64, millis: u64) -> Job {
        Job {
            id,
            attempt: 1,
            kind: "nap".into(),
            chunk: false,
            payload: encode_payload(&millis).unwrap(),
        }
    }

    fn job(id: u64, millis: u64) -> ToWorker {
        ToWorker::Run(vec![nap(id, millis)])
    }

    fn next_done(rx: &mpsc::Receiver<FromWorker>) -> (JobResult, usize) {
        let mut heartbeats = 0;
        loop {
            match rx
                .recv_timeout(Duration::from_secs(5))
                .expect("worker answers within 5 s")
            {
                FromWorker::Done(mut results) => {
                    assert_eq!(results.len(), 1, "one job, one result");
                    return (results.remove(0), heartbeats);
                }
                FromWorker::Heartbeat => heartbeats += 1,
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    #[test]
    fn runs_jobs_heartbeats_while_busy_and_stops_when_told() {
        let (tx, rx, handle) = start();
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(5)).unwrap(),
            FromWorker::Ready
        );
        tx.send(job(7, 150)).unwrap();
        let (result, heartbeats) = next_done(&rx);
        assert_eq!((result.id, result.attempt), (7, 1));
        assert_eq!(
            decode_payload::<u64>(&result.outcome.unwrap()).unwrap(),
            151
        );
        assert!(
            heartbeats >= 2,
            "a 150 ms job with 20 ms heartbeats sent only {heartbeats}"
        );
        tx.send(ToWorker::Stop).unwrap();
        assert_eq!(handle.join().unwrap().unwrap(), WorkerExit::Stopped);
    }

    #[test]
    fn a_panicking_job_is_reported_and_the_worker_carries_on() {
        let (tx, rx, handle) = start();
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(5)).unwrap(),
            FromWorker::Ready
        );
        tx.send(job(1, 999)).unwrap();
        let (result, _) = next_done(&rx);
        assert_eq!(
            result.outcome,
            Err(JobError::Panicked("nap refused".into()))
        );
        tx.send(ToWorker::Run(vec![Job {
            id: 2,
            attempt: 3,
            kind: "nope".into(),
            chunk: false,
            payload: vec![],
        }]))
        .unwrap();
        let (result, _) = next_done(&rx);
        assert_eq!((result.id, result.attempt), (2, 3));
        assert_eq!(result.outcome, Err(JobError::UnknownKind("nope".into())));
        tx.send(job(3, 0)).unwrap();
        assert!(next_done(&rx).0.outcome.is_ok());
        drop(tx);
        assert!(matches!(handle.join().unwrap(), Err(WorkerError::Link(_))));
    }

    #[test]
    fn a_batch_of_quick_jobs_comes_back_in_order_in_few_messages() {
        let (tx, rx, handle) = start();
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(5)).unwrap(),
            FromWorker::Ready
        );
        tx.send(ToWorker::Run((0..100).map(|id| nap(id, 0)).collect()))
            .unwrap();
        let mut ids = Vec::new();
        let mut messages = 0;
        while ids.len() < 100 {
            match rx.recv_timeout(Duration::from_secs(5)).unwrap() {
                FromWorker::Done(results) => {
                    messages += 1;
                    ids.extend(results.iter().map(|result| result.id));
                }
                FromWorker::Heartbeat => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(ids, (0..100).collect::<Vec<_>>());
        assert!(messages < 10, "100 quick jobs took {messages} messages");
        tx.send(ToWorker::Stop).unwrap();
        assert_eq!(handle.join().unwrap().unwrap(), WorkerExit::Stopped);
    }

    #[test]
    fn a_batch_is_flushed_before_a_result_would_take_it_over_the_message_size() {
        let (tx, rx, handle) = start_with_limit(1_000);
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(5)).unwrap(),
            FromWorker::Ready
        );
        tx.send(ToWorker::Run((0..6).map(|id| blob(id, 400)).collect()))
            .unwrap();
        let mut batches = Vec::new();
        while batches.iter().map(Vec::len).sum::<usize>() < 6 {
            match rx.recv_timeout(Duration::from_secs(5)).unwrap() {
                FromWorker::Done(results) => {
                    batches.push(results.iter().map(|result| result.id).collect::<Vec<_>>())
                }
                FromWorker::Heartbeat => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        // Two 400-byte results and their overhead fit in 1000 bytes, three do not.
        assert!(batches.iter().all(|batch| batch.len() <= 2), "{batches:?}");
        assert_eq!(batches.concat(), (0..6).collect::<Vec<_>>());
        tx.send(ToWorker::Stop).unwrap();
        assert_eq!(handle.join().unwrap().unwrap(), WorkerExit::Stopped);
    }

    #[test]
    fn a_result_that_cannot_be_sent_stops_the_worker_naming_the_job() {
        let (tx, rx, handle) = start_with_limit(1_000);
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(5)).unwrap(),
            FromWorker::Ready
        );
        tx.send(ToWorker::Run(vec![blob(4, 5_000)])).unwrap();
        let error = handle.join().unwrap().unwrap_err();
        assert!(matches!(error, WorkerError::SendResults { .. }), "{error}");
        assert_eq!(
            error.to_string(),
            "could not send the result of job 4 (attempt 1) to the supervisor: the other end \
             is gone"
        );
    }
}
