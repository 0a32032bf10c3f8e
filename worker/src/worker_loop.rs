//! The worker loop: take a job, run it, send the result; heartbeat all along; leave on `Stop`,
//! on SIGTERM once the current job is done, or when the supervisor is gone.
//!
//! Jobs run on the loop's own thread (no hand-off per job); a second thread sends the
//! heartbeats on the same link (a [`Link`] is `Sync`). So a slow or hung job still heartbeats
//! (the supervisor's job timeout deals with it), while a stopped or frozen process does not (the
//! supervisor's heartbeat timeout deals with that).
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::Duration;

use thiserror::Error;

use crate::{FromWorker, Job, JobError, JobResult, Link, Registry, ToWorker};

/// How a worker behaves.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// How often the worker says it is alive, idle or busy.
    pub heartbeat_interval: Duration,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        Self {
            heartbeat_interval: Duration::from_millis(200),
        }
    }
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
    /// The heartbeat thread could not be started.
    #[error("starting the heartbeat thread: {0}")]
    HeartbeatThread(#[source] std::io::Error),
}

fn link_error<E: std::error::Error + Send + Sync + 'static>(error: E) -> WorkerError {
    WorkerError::Link(Box::new(error))
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

fn run_one(registry: &Registry, job: Job) -> JobResult {
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
        registry.run_attempt(&job.kind, &job.payload, job.attempt)
    }))
    .unwrap_or_else(|payload| Err(JobError::Panicked(panic_message(payload.as_ref()))));
    JobResult {
        id: job.id,
        attempt: job.attempt,
        outcome,
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
        let exit = loop {
            if terminate.load(Ordering::Relaxed) {
                link.send(&FromWorker::Leaving).map_err(link_error)?;
                break WorkerExit::Terminated;
            }
            match link.recv_timeout(interval).map_err(link_error)? {
                None => {}
                Some(ToWorker::Stop) => break WorkerExit::Stopped,
                Some(ToWorker::Run(job)) => {
                    let result = run_one(registry, job);
                    link.send(&FromWorker::Done(result)).map_err(link_error)?;
                }
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
    }

    #[derive(Debug, Error)]
    #[error("the other end is gone")]
    struct Gone;

    impl Link for ChannelLink {
        type Error = Gone;
        fn send(&self, message: &FromWorker) -> Result<(), Gone> {
            let sender = self.from_worker.lock().map_err(|_| Gone)?;
            sender.send(message.clone()).map_err(|_| Gone)
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

    fn start() -> (
        mpsc::Sender<ToWorker>,
        mpsc::Receiver<FromWorker>,
        thread::JoinHandle<Result<WorkerExit, WorkerError>>,
    ) {
        let (to_tx, to_rx) = mpsc::channel();
        let (from_tx, from_rx) = mpsc::channel();
        let handle = thread::spawn(move || {
            let mut registry = Registry::new();
            registry.register(Nap).unwrap();
            let link = ChannelLink {
                to_worker: std::sync::Mutex::new(to_rx),
                from_worker: std::sync::Mutex::new(from_tx),
            };
            let options = WorkerOptions {
                heartbeat_interval: Duration::from_millis(20),
            };
            run_worker(&registry, &link, &options)
        });
        (to_tx, from_rx, handle)
    }

    fn job(id: u64, millis: u64) -> ToWorker {
        ToWorker::Run(Job {
            id,
            attempt: 1,
            kind: "nap".into(),
            payload: encode_payload(&millis).unwrap(),
        })
    }

    fn next_done(rx: &mpsc::Receiver<FromWorker>) -> (JobResult, usize) {
        let mut heartbeats = 0;
        loop {
            match rx
                .recv_timeout(Duration::from_secs(5))
                .expect("worker answers within 5 s")
            {
                FromWorker::Done(result) => return (result, heartbeats),
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
        tx.send(ToWorker::Run(Job {
            id: 2,
            attempt: 3,
            kind: "nope".into(),
            payload: vec![],
        }))
        .unwrap();
        let (result, _) = next_done(&rx);
        assert_eq!((result.id, result.attempt), (2, 3));
        assert_eq!(result.outcome, Err(JobError::UnknownKind("nope".into())));
        tx.send(job(3, 0)).unwrap();
        assert!(next_done(&rx).0.outcome.is_ok());
        drop(tx);
        assert!(matches!(handle.join().unwrap(), Err(WorkerError::Link(_))));
    }
}
