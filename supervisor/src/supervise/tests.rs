//! The supervision loop driven step by step against mock workers, signals and a mock clock: each
//! test scripts what the workers say and when, and asserts on the events and the report.
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::time::{Duration, Instant};

use herd_worker::{FromWorker, JobResult, ToWorker};
use nix::sys::signal::Signal;

use super::*;
use herd_ipc::{ExitStatus, Pid};

use crate::{Kill, Record, Wait};

/// A clock that moves only when told.
#[derive(Clone)]
struct MockClock(Rc<Cell<Instant>>);

impl MockClock {
    fn advance(&self, by: Duration) {
        self.0.set(self.0.get() + by);
    }
}

impl Clock for MockClock {
    fn now(&self) -> Instant {
        self.0.get()
    }
}

/// A readable descriptor, so that the loop's poll never sleeps.
fn always_readable() -> UnixStream {
    let (read, write) = UnixStream::pair().expect("a socket pair");
    io::Write::write_all(&mut &write, b"x").expect("a byte to read");
    // The write end may close: the byte stays queued on the read end.
    read
}

/// Signals a test delivers by pushing them.
struct MockSignals {
    fd: UnixStream,
    pending: Rc<RefCell<Vec<Signal>>>,
}

impl AsFd for MockSignals {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl SignalSource for MockSignals {
    fn take(&mut self) -> Vec<Signal> {
        std::mem::take(&mut self.pending.borrow_mut())
    }
}

/// What one mock worker says and what was done to it.
struct WorkerState {
    inbox: VecDeque<FromWorker>,
    sent: Vec<ToWorker>,
    signals: Vec<Signal>,
    exit: Option<ExitStatus>,
    reaped: bool,
    /// The supervisor's signals, for the SIGCHLD its exit sends.
    supervisor_signals: Rc<RefCell<Vec<Signal>>>,
}

impl WorkerState {
    /// The worker exits (once), and the kernel tells its parent.
    fn exit(&mut self, status: ExitStatus) {
        if self.exit.is_none() {
            self.exit = Some(status);
            self.supervisor_signals.borrow_mut().push(Signal::SIGCHLD);
        }
    }
}

type Shared = Rc<RefCell<WorkerState>>;

struct MockChild {
    pid: Pid,
    state: Shared,
}

impl Wait for MockChild {
    fn id(&self) -> Pid {
        self.pid
    }
    fn has_exited(&mut self) -> io::Result<bool> {
        Ok(self.state.borrow().exit.is_some())
    }
    fn reap(&mut self) -> io::Result<ExitStatus> {
        let mut state = self.state.borrow_mut();
        state.reaped = true;
        state
            .exit
            .ok_or_else(|| io::Error::other("reaped before it exited"))
    }
}

impl Kill for MockChild {
    fn signal_group(&mut self, signal: Signal) -> io::Result<()> {
        let mut state = self.state.borrow_mut();
        state.signals.push(signal);
        // SIGKILL ends a mock worker at once; SIGTERM is left to the test.
        if signal == Signal::SIGKILL {
            state.exit(ExitStatus::Signaled(libc::SIGKILL));
        }
        Ok(())
    }
}

struct MockChannel {
    fd: UnixStream,
    state: Shared,
}

impl AsFd for MockChannel {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl WorkerChannel for MockChannel {
    fn send(&mut self, message: ToWorker) -> io::Result<()> {
        let mut state = self.state.borrow_mut();
        if state.exit.is_some() {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        // A well-behaved worker leaves when told to stop.
        if message == ToWorker::Stop {
            state.exit(ExitStatus::Exited(0));
        }
        state.sent.push(message);
        Ok(())
    }
    fn try_recv(&mut self) -> io::Result<Option<FromWorker>> {
        Ok(self.state.borrow_mut().inbox.pop_front())
    }
}

/// Starts mock workers, each ready at once; the test reaches them through `workers`.
#[derive(Default)]
struct MockLauncher {
    workers: Rc<RefCell<Vec<Shared>>>,
    signals: Rc<RefCell<Vec<Signal>>>,
    fail_starts: usize,
}

impl Launcher for MockLauncher {
    type Child = MockChild;
    type Channel = MockChannel;

    fn launch(&mut self, id: WorkerId) -> anyhow::Result<(MockChild, MockChannel)> {
        if self.fail_starts > 0 {
            self.fail_starts -= 1;
            anyhow::bail!("no more processes");
        }
        let state = Rc::new(RefCell::new(WorkerState {
            inbox: VecDeque::from([FromWorker::Ready]),
            sent: Vec::new(),
            signals: Vec::new(),
            exit: None,
            reaped: false,
            supervisor_signals: Rc::clone(&self.signals),
        }));
        self.workers.borrow_mut().push(Rc::clone(&state));
        let pid = Pid::from_raw(1000 + id.0 as i32);
        Ok((
            MockChild {
                pid,
                state: Rc::clone(&state),
            },
            MockChannel {
                fd: always_readable(),
                state,
            },
        ))
    }

    fn reap_strays(&mut self, _: &dyn Fn(Pid) -> bool) {}
}

struct Harness {
    supervisor: Supervisor<MockLauncher, Record, MockSignals, MockClock>,
    workers: Rc<RefCell<Vec<Shared>>>,
    signals: Rc<RefCell<Vec<Signal>>>,
    clock: MockClock,
}

impl Harness {
    fn new(config: SupervisorConfig, jobs: usize, launcher: MockLauncher) -> Self {
        let mut table = LeaseTable::new(config.max_attempts);
        for n in 0..jobs {
            table.push("square", vec![n as u8]);
        }
        let workers = Rc::clone(&launcher.workers);
        let signals = Rc::clone(&launcher.signals);
        let clock = MockClock(Rc::new(Cell::new(Instant::now())));
        let inbox = MockSignals {
            fd: always_readable(),
            pending: Rc::clone(&signals),
        };
        let supervisor = Supervisor::with_clock(
            config,
            launcher,
            inbox,
            Record::default(),
            table,
            clock.clone(),
        );
        Self {
            supervisor,
            workers,
            signals,
            clock,
        }
    }

    /// The supervisor keeps the pool up without jobs, for jobs submitted later.
    fn kept_alive(self) -> Self {
        Self {
            supervisor: self.supervisor.keep_alive(),
            ..self
        }
    }

    fn worker(&self, index: usize) -> Shared {
        Rc::clone(&self.workers.borrow()[index])
    }

    /// The worker dies on its own.
    fn die(&self, index: usize, status: ExitStatus) {
        self.worker(index).borrow_mut().exit(status);
    }

    /// Steps until `done` holds (at most 100 steps).
    fn step_until(&mut self, what: &str, mut done: impl FnMut(&Self) -> bool) {
        for _ in 0..100 {
            if done(self) {
                return;
            }
            self.supervisor.step();
        }
        panic!(
            "not reached within 100 steps: {what}; events: {:#?}",
            self.events()
        );
    }

    fn events(&self) -> &[Event] {
        &self.supervisor.observer().events
    }

    fn has_event(&self, wanted: impl Fn(&Event) -> bool) -> bool {
        self.events().iter().any(wanted)
    }

    /// The job the worker was last sent.
    fn job_of(&self, index: usize) -> Option<herd_worker::Job> {
        let worker = Rc::clone(self.workers.borrow().get(index)?);
        let state = worker.borrow();
        state.sent.iter().rev().find_map(|message| match message {
            ToWorker::Run(jobs) => jobs.last().cloned(),
            ToWorker::Stop => None,
        })
    }

    /// The worker answers its last job with its payload, doubled.
    fn answer(&self, index: usize) {
        let job = self.job_of(index).expect("the worker holds a job");
        let outcome = Ok(job.payload.iter().map(|byte| byte * 2).collect());
        self.worker(index)
            .borrow_mut()
            .inbox
            .push_back(FromWorker::Done(vec![JobResult {
                id: job.id,
                attempt: job.attempt,
                outcome,
            }]));
    }
}

fn config(workers: usize) -> SupervisorConfig {
    SupervisorConfig {
        workers,
        heartbeat_timeout: Duration::from_secs(10),
        job_timeout: None,
        max_attempts: 3,
        max_restarts: 3,
        restart_period: Duration::from_secs(30),
        grace: Duration::from_secs(5),
        ..SupervisorConfig::default()
    }
}

#[test]
fn every_job_runs_once_and_the_workers_leave_when_done() {
    let mut harness = Harness::new(config(2), 4, MockLauncher::default());
    for _ in 0..2 {
        harness.step_until("both workers hold a job", |h| {
            h.workers.borrow().len() == 2 && h.job_of(0).is_some() && h.job_of(1).is_some()
        });
        let (first, second) = (harness.job_of(0).unwrap().id, harness.job_of(1).unwrap().id);
        harness.answer(0);
        harness.answer(1);
        harness.step_until("both answers are in", |h| {
            h.supervisor.jobs().is_finished(first) && h.supervisor.jobs().is_finished(second)
        });
    }
    harness.step_until("the run is over", |h| h.supervisor.is_over());
    let report = harness.supervisor.finish();
    assert!(report.success());
    for id in 0..4u64 {
        assert_eq!(report.jobs.output(id), Some(&[id as u8 * 2][..]));
    }
    assert_eq!(report.restarts, 0);
    let workers = harness.workers.borrow();
    assert_eq!(workers.len(), 2, "no worker was replaced");
    for worker in workers.iter() {
        let worker = worker.borrow();
        assert_eq!(worker.sent.last(), Some(&ToWorker::Stop));
        assert!(worker.reaped, "every worker is reaped");
    }
    let started = harness
        .events()
        .iter()
        .filter(|event| matches!(event, Event::WorkerStarted { .. }))
        .count();
    let finished = harness
        .events()
        .iter()
        .filter(|event| matches!(event, Event::JobFinished { .. }))
        .count();
    assert_eq!((started, finished), (2, 4));
    assert_eq!(harness.events()[0], Event::JobsAdded { total: 4 });
}

#[test]
fn a_worker_that_dies_mid_job_has_its_job_requeued_and_is_replaced_after_backoff() {
    let mut harness = Harness::new(config(1), 1, MockLauncher::default());
    harness.step_until("the worker holds the job", |h| h.job_of(0).is_some());
    harness.die(0, ExitStatus::Signaled(libc::SIGSEGV));
    harness.step_until("the job is re-queued", |h| {
        h.has_event(|event| {
            matches!(
                event,
                Event::JobRequeued {
                    job: 0,
                    next_attempt: 2,
                    max_attempts: 3,
                    ..
                }
            )
        })
    });
    assert!(harness.has_event(|event| matches!(
        event,
        Event::WorkerDied { worker: WorkerId(1), status, .. } if status == &ExitStatus::Signaled(libc::SIGSEGV).to_string()
    )));
    // The first replacement starts at once and gets the job again.
    harness.step_until("the replacement holds the job", |h| h.job_of(1).is_some());
    assert_eq!(harness.job_of(1).unwrap().attempt, 2);
    // A second death in a row waits for the backoff, which only the clock can end.
    harness.die(1, ExitStatus::Exited(3));
    for _ in 0..5 {
        harness.supervisor.step();
    }
    assert_eq!(
        harness.workers.borrow().len(),
        2,
        "no start before the backoff"
    );
    harness.clock.advance(Duration::from_secs(1));
    harness.step_until("the third worker holds the job", |h| h.job_of(2).is_some());
    assert_eq!(harness.job_of(2).unwrap().attempt, 3);
    harness.answer(2);
    harness.step_until("the run is over", |h| h.supervisor.is_over());
    let report = harness.supervisor.finish();
    assert!(report.success());
    assert_eq!(report.restarts, 2);
}

#[test]
fn a_job_with_a_timeout_of_its_own_is_killed_past_it_without_a_run_timeout() {
    let mut harness = Harness::new(config(1), 1, MockLauncher::default());
    harness
        .supervisor
        .jobs
        .set_timeout(0, Duration::from_secs(3));
    harness.step_until("the worker holds the job", |h| h.job_of(0).is_some());
    // Heartbeats keep it alive; only the job's own limit ends the attempt.
    for _ in 0..2 {
        harness.clock.advance(Duration::from_millis(1_400));
        harness
            .worker(0)
            .borrow_mut()
            .inbox
            .push_back(FromWorker::Heartbeat);
        harness.supervisor.step();
    }
    assert!(harness.worker(0).borrow().signals.is_empty(), "not yet");
    harness.clock.advance(Duration::from_millis(300));
    harness.step_until("the worker is killed", |h| {
        h.has_event(|event| {
            matches!(
                event,
                Event::WorkerKilled {
                    cause: LossCause::TimedOut,
                    ..
                }
            )
        })
    });
    assert_eq!(harness.worker(0).borrow().signals, [Signal::SIGKILL]);
}

#[test]
fn a_silent_worker_is_killed_when_the_clock_passes_the_heartbeat_timeout() {
    let mut harness = Harness::new(config(1), 1, MockLauncher::default());
    harness.step_until("the worker holds the job", |h| h.job_of(0).is_some());
    harness.clock.advance(Duration::from_secs(9));
    harness.supervisor.step();
    assert!(harness.worker(0).borrow().signals.is_empty(), "not yet");
    harness.clock.advance(Duration::from_secs(2));
    harness.step_until("the worker is killed", |h| {
        h.has_event(|event| {
            matches!(
                event,
                Event::WorkerKilled {
                    cause: LossCause::MissedHeartbeat,
                    ..
                }
            )
        })
    });
    assert_eq!(harness.worker(0).borrow().signals, [Signal::SIGKILL]);
    harness.step_until("the job is re-queued", |h| {
        h.has_event(|event| matches!(event, Event::JobRequeued { job: 0, .. }))
    });
}

#[test]
fn workers_that_keep_dying_hit_the_restart_limit_and_stop_the_run() {
    let config = SupervisorConfig {
        max_attempts: 10,
        ..config(1)
    };
    let mut harness = Harness::new(config, 1, MockLauncher::default());
    for round in 0..4 {
        harness.step_until("a worker holds the job", |h| h.job_of(round).is_some());
        harness.die(round, ExitStatus::Exited(101));
        harness.step_until("its death is seen", |h| {
            h.events()
                .iter()
                .filter(|event| matches!(event, Event::WorkerDied { .. }))
                .count()
                == round + 1
        });
        harness.clock.advance(Duration::from_secs(6));
        if harness.supervisor.is_over() {
            break;
        }
    }
    harness.step_until("the run is over", |h| h.supervisor.is_over());
    assert!(harness.has_event(|event| matches!(event, Event::RestartLimitHit(_))));
    let report = harness.supervisor.finish();
    assert!(matches!(report.stopped, Some(StopReason::Intensity(_))));
    assert!(!report.success());
}

#[test]
fn a_failed_start_is_reported_and_retried() {
    let launcher = MockLauncher {
        fail_starts: 1,
        ..MockLauncher::default()
    };
    let mut harness = Harness::new(config(1), 1, launcher);
    harness.step_until("the failed start is reported", |h| {
        h.has_event(|event| {
            matches!(event, Event::WorkerStartFailed { error, .. } if error.contains("no more processes"))
        })
    });
    harness.clock.advance(Duration::from_secs(1));
    harness.step_until("a worker holds the job", |h| {
        !h.workers.borrow().is_empty() && h.job_of(0).is_some()
    });
    harness.answer(0);
    harness.step_until("the run is over", |h| h.supervisor.is_over());
    assert!(harness.supervisor.finish().success());
}

#[test]
fn a_stop_signal_drains_and_a_second_one_stops_at_once() {
    let mut harness = Harness::new(config(1), 2, MockLauncher::default());
    harness.step_until("the worker holds a job", |h| h.job_of(0).is_some());
    harness.signals.borrow_mut().push(Signal::SIGTERM);
    harness.step_until("the drain begins", |h| {
        h.has_event(|event| {
            matches!(
                event,
                Event::DrainBegun {
                    signal: "SIGTERM",
                    ..
                }
            )
        })
    });
    assert!(
        harness.supervisor.submit("square", vec![9]).is_none(),
        "no new jobs while draining"
    );
    assert!(
        !harness.supervisor.is_over(),
        "the running job gets its grace"
    );
    harness.signals.borrow_mut().push(Signal::SIGINT);
    harness.step_until("the run is over", |h| h.supervisor.is_over());
    assert!(harness.has_event(|event| matches!(event, Event::StoppingNow { signal: "SIGINT" })));
    // Killed, then its group killed again before the reap: never asked politely.
    let signals = harness.worker(0).borrow().signals.clone();
    assert!(
        !signals.is_empty() && signals.iter().all(|&signal| signal == Signal::SIGKILL),
        "{signals:?}"
    );
    let report = harness.supervisor.finish();
    assert_eq!(report.stopped, Some(StopReason::Interrupted));
    assert_eq!(report.jobs.failures().count(), 2, "both jobs are abandoned");
}

#[test]
fn the_grace_period_ends_by_the_clock() {
    let mut harness = Harness::new(config(1), 1, MockLauncher::default());
    harness.step_until("the worker holds the job", |h| h.job_of(0).is_some());
    harness.signals.borrow_mut().push(Signal::SIGTERM);
    for _ in 0..5 {
        harness.supervisor.step();
    }
    assert!(!harness.supervisor.is_over());
    harness.clock.advance(Duration::from_secs(6));
    harness.step_until("the run is over", |h| h.supervisor.is_over());
    assert!(harness.has_event(|event| matches!(event, Event::GraceExpired { workers: 1 })));
}

#[test]
fn short_jobs_are_sent_ahead_in_batches() {
    let mut harness = Harness::new(config(2), 200, MockLauncher::default());
    harness.step_until("both workers hold a job", |h| {
        h.workers.borrow().len() == 2 && h.job_of(0).is_some() && h.job_of(1).is_some()
    });
    // Durations unknown: one job each, the rest stays queued.
    for index in 0..2 {
        let sent = harness.worker(index).borrow().sent.clone();
        assert_eq!(sent, [ToWorker::Run(vec![harness.job_of(index).unwrap()])]);
    }
    // Answers that take no time on the mock clock: jobs are short, so the next batches are large.
    let mut largest = 0;
    for _ in 0..20 {
        for index in 0..2 {
            let batch = match harness.worker(index).borrow().sent.last() {
                Some(ToWorker::Run(jobs)) => jobs.clone(),
                _ => Vec::new(),
            };
            largest = largest.max(batch.len());
            for job in batch {
                let outcome = Ok(job.payload.clone());
                harness
                    .worker(index)
                    .borrow_mut()
                    .inbox
                    .push_back(FromWorker::Done(vec![JobResult {
                        id: job.id,
                        attempt: job.attempt,
                        outcome,
                    }]));
            }
        }
        harness.supervisor.step();
        if harness.supervisor.jobs().unfinished() == 0 {
            break;
        }
    }
    assert!(largest > 1, "short jobs were never sent ahead");
    assert!(largest <= MAX_AHEAD, "{largest} jobs sent ahead at once");
    harness.step_until("the run is over", |h| h.supervisor.is_over());
    assert!(harness.supervisor.finish().success());
}

#[test]
fn a_pool_wants_jobs_only_when_a_ready_worker_could_take_one() {
    let mut harness = Harness::new(config(2), 0, MockLauncher::default()).kept_alive();
    assert!(!harness.supervisor.wants_jobs(), "no worker is ready yet");
    harness.step_until("both workers are up", |h| h.workers.borrow().len() == 2);
    harness.supervisor.step();
    assert!(harness.supervisor.wants_jobs(), "idle workers");
    let first = harness.supervisor.submit("square", vec![3]).unwrap();
    assert!(!harness.supervisor.wants_jobs(), "a job is queued");
    harness.step_until("a worker holds it", |h| {
        h.job_of(0).is_some() || h.job_of(1).is_some()
    });
    assert!(harness.supervisor.wants_jobs(), "the other worker is idle");
    harness.supervisor.submit("square", vec![4]).unwrap();
    harness.step_until("both workers hold a job", |h| {
        h.job_of(0).is_some() && h.job_of(1).is_some()
    });
    assert!(
        !harness.supervisor.wants_jobs(),
        "each worker holds as many jobs as it may (durations unknown: one)"
    );
    let busy_first = usize::from(harness.job_of(0).unwrap().id != first);
    harness.answer(busy_first);
    harness.step_until("the first job is done", |h| {
        h.supervisor.jobs().output(first).is_some()
    });
    assert!(harness.supervisor.wants_jobs(), "a worker is free again");
    harness.supervisor.close();
    harness.answer(1 - busy_first);
    harness.step_until("the run is over", |h| h.supervisor.is_over());
    assert!(!harness.supervisor.wants_jobs(), "the run is over");
    let report = harness.supervisor.finish();
    assert!(report.success());
    assert_eq!(report.jobs.output(first), Some(&[6u8][..]));
}

#[test]
fn a_stop_signal_while_more_jobs_may_come_cuts_the_run_short() {
    let mut harness = Harness::new(config(1), 0, MockLauncher::default()).kept_alive();
    harness.step_until("the worker is up", |h| h.workers.borrow().len() == 1);
    harness.signals.borrow_mut().push(Signal::SIGINT);
    harness.supervisor.step();
    assert!(harness.supervisor.submit("square", vec![1]).is_none());
    assert!(!harness.supervisor.wants_jobs());
    harness.step_until("the run is over", |h| h.supervisor.is_over());
    assert_eq!(harness.supervisor.stop_signal(), Some(Signal::SIGINT));
    let report = harness.supervisor.finish();
    assert_eq!(report.stopped, Some(StopReason::Interrupted));
    assert!(!report.success());
}

#[test]
fn a_stop_signal_after_the_last_result_leaves_the_run_a_success() {
    let mut harness = Harness::new(config(1), 1, MockLauncher::default());
    harness.step_until("the worker holds the job", |h| h.job_of(0).is_some());
    harness.answer(0);
    harness.step_until("the job is done", |h| h.supervisor.jobs().unfinished() == 0);
    // The workers are still leaving (the command merges and prints meanwhile).
    harness.signals.borrow_mut().push(Signal::SIGTERM);
    harness.supervisor.step();
    let report = harness.supervisor.finish();
    assert!(report.success(), "{:?}", report.stopped);
    assert_eq!(harness.supervisor.stop_signal(), None);
}

#[test]
fn sigttin_grows_the_pool_up_to_max_workers_only() {
    let config = SupervisorConfig {
        max_workers: 2,
        ..config(1)
    };
    let mut harness = Harness::new(config, 1, MockLauncher::default());
    harness.step_until("one worker", |h| h.workers.borrow().len() == 1);
    for _ in 0..3 {
        harness.signals.borrow_mut().push(Signal::SIGTTIN);
        harness.supervisor.step();
    }
    for _ in 0..5 {
        harness.supervisor.step();
    }
    assert_eq!(harness.workers.borrow().len(), 2, "started past the cap");
    let resized: Vec<(usize, bool)> = harness
        .events()
        .iter()
        .filter_map(|event| match event {
            Event::PoolResized { size, at_limit, .. } => Some((*size, *at_limit)),
            _ => None,
        })
        .collect();
    assert_eq!(resized, [(2, false), (2, true), (2, true)]);
}
