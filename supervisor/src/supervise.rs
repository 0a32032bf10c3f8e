//! `Supervisor`: the single-threaded loop that keeps a pool of workers healthy while it runs
//! every job of a run once.
//!
//! The loop, gunicorn-arbiter style: wait (poll) on the signal self-pipe and the workers'
//! channels, then act: read messages, reap the dead, kill the silent and the overrunning, start
//! replacements (backoff, OTP intensity), hand out jobs, drain on SIGINT/SIGTERM. No thread is
//! started, so a [`Launcher`] may fork.
//!
//! The loop is generic over what it touches: the [`Launcher`] (how workers start), the
//! [`SignalSource`], the [`Observer`] that receives its [`Event`]s and the [`Clock`]. The real
//! ones are herd-ipc processes, signal-hook handlers and the system clock; tests use mocks.
use std::collections::VecDeque;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use herd_ipc::Pid;
use herd_worker::{FromWorker, JobId, ToWorker};
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::signal::Signal;

use crate::clock::{Clock, SystemClock};
use crate::event::{Event, Observer, Status, WorkerRow};
use crate::launch::{Launcher, WorkerChannel};
use crate::signals::{SignalInbox, SignalSource};
use crate::{
    Backoff, Completion, Drain, DrainState, LeaseTable, LossCause, Reaper, Released,
    RestartIntensity, RunReport, StopReason, SupervisorConfig, Wait, WorkerId,
};

/// The longest the loop sleeps; timers (heartbeats, timeouts, restarts) are checked this often.
const TICK: Duration = Duration::from_millis(50);
/// How long a worker whose link closed may take to exit on its own before it is killed.
const CLOSED_LINK_PATIENCE: Duration = Duration::from_millis(500);
/// The most jobs sent ahead to one worker.
const MAX_AHEAD: usize = 64;
/// How much work (by the recent job duration) is worth sending ahead to a worker, so that it
/// never waits for a round trip between short jobs, while long jobs stay spread over workers.
const AHEAD_TIME: Duration = Duration::from_millis(2);

/// Why a worker is on its way out.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Leaving {
    /// Sent `Stop` (recycling, shrinking, the end of the run); killed if still there at the deadline.
    Asked { deadline: Instant },
    /// Killed by the supervisor for this cause.
    Killed(LossCause),
}

#[derive(Debug)]
struct Slot<C, H> {
    id: WorkerId,
    reaper: Reaper<C>,
    channel: Option<H>,
    link_closed_at: Option<Instant>,
    /// Why reading its link failed, if it did not just close.
    link_error: Option<String>,
    last_heard: Instant,
    ready: bool,
    /// The jobs sent to it, oldest first: it runs the first, the others wait in its queue.
    held: VecDeque<JobId>,
    /// When the first of `held` started (its lease, or the previous job's result).
    running_since: Instant,
    jobs_done: u64,
    leaving: Option<Leaving>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Jobs are handed out.
    Running,
    /// No new jobs; waiting for the workers to leave.
    Ending,
}

/// Supervises one run.
#[derive(Debug)]
pub struct Supervisor<
    L: Launcher,
    O: Observer,
    S: SignalSource = SignalInbox,
    C: Clock = SystemClock,
> {
    config: SupervisorConfig,
    launcher: L,
    inbox: S,
    observer: O,
    clock: C,
    slots: Vec<Slot<L::Child, L::Channel>>,
    pending_starts: Vec<Instant>,
    target: usize,
    next_worker: u64,
    jobs: LeaseTable,
    drain: Drain,
    intensity: RestartIntensity,
    backoff: Backoff,
    phase: Phase,
    keep_alive: bool,
    stopped: Option<StopReason>,
    /// The stop signal that cut the run short, if one did.
    stop_signal: Option<Signal>,
    restarts: u64,
    next_status: Option<Instant>,
    child_exited: bool,
    last_reap: Instant,
    /// Whether this pass read a message or reaped a worker: then the loop does not wait before
    /// returning, so whoever drives it sees the news at once.
    progressed: bool,
    /// Recent job duration (moving average), for how many jobs to send ahead.
    job_time: Option<Duration>,
}

impl<L: Launcher, O: Observer, S: SignalSource> Supervisor<L, O, S> {
    /// A supervisor for `jobs`, receiving its signals from `inbox` and reporting to `observer`.
    pub fn new(
        config: SupervisorConfig,
        launcher: L,
        inbox: S,
        observer: O,
        jobs: LeaseTable,
    ) -> Self {
        Self::with_clock(config, launcher, inbox, observer, jobs, SystemClock)
    }
}

impl<L: Launcher, O: Observer, S: SignalSource, C: Clock> Supervisor<L, O, S, C> {
    /// Like [`new`](Supervisor::new), reading the time from `clock`.
    pub fn with_clock(
        config: SupervisorConfig,
        launcher: L,
        inbox: S,
        mut observer: O,
        jobs: LeaseTable,
        clock: C,
    ) -> Self {
        if !jobs.is_empty() {
            observer.on_event(&Event::JobsAdded {
                total: jobs.len() as u64,
            });
        }
        let now = clock.now();
        Self {
            target: config.workers.max(1),
            drain: Drain::new(config.grace),
            intensity: RestartIntensity::new(config.max_restarts, config.restart_period),
            backoff: Backoff::new(Duration::from_millis(100), Duration::from_secs(5)),
            next_status: config.status_interval.map(|every| now + every),
            child_exited: false,
            last_reap: now,
            progressed: false,
            job_time: None,
            config,
            launcher,
            inbox,
            observer,
            clock,
            slots: Vec::new(),
            pending_starts: Vec::new(),
            next_worker: 1,
            jobs,
            phase: Phase::Running,
            keep_alive: false,
            stopped: None,
            stop_signal: None,
            restarts: 0,
        }
    }

    fn emit(&mut self, event: Event) {
        self.observer.on_event(&event);
    }

    /// The observer, e.g. to read what a [`Record`](crate::Record) kept.
    pub fn observer(&self) -> &O {
        &self.observer
    }

    /// The observer, mutably.
    pub fn observer_mut(&mut self) -> &mut O {
        &mut self.observer
    }

    /// Keeps the pool up while it has no job, for jobs submitted later (a [`crate::Pool`]),
    /// until [`close`](Self::close).
    pub fn keep_alive(mut self) -> Self {
        self.keep_alive = true;
        self
    }

    /// Runs every job, or until stopped; then every worker is gone and reaped.
    pub fn run(mut self) -> RunReport {
        while !self.step() {}
        self.into_report()
    }

    /// One pass of the loop: act on what happened, then wait (at most a tick) for more. Returns
    /// whether the run is over (every worker gone and reaped).
    pub fn step(&mut self) -> bool {
        self.step_for(TICK)
    }

    /// Like [`step`](Self::step), waiting at most `max_wait` for something to happen (zero: act
    /// on what is there and return at once).
    pub fn step_for(&mut self, max_wait: Duration) -> bool {
        let now = self.clock.now();
        self.progressed = false;
        for signal in self.inbox.take() {
            self.on_signal(signal, now);
        }
        self.read_messages(now);
        // SIGCHLD says when; the tick is a safety net (signals coalesce, a handler may be late).
        if self.child_exited || now.duration_since(self.last_reap) >= TICK {
            self.child_exited = false;
            self.last_reap = now;
            self.reap(now);
        }
        self.check_timers(now);
        self.maybe_end(now);
        if self.phase == Phase::Running {
            self.resize(now);
            self.start_due_workers(now);
            self.dispatch(now);
        }
        if self.next_status.is_some_and(|at| now >= at) {
            self.emit_status(now);
            self.next_status = self.config.status_interval.map(|every| now + every);
        }
        if self.is_over() {
            return true;
        }
        if !self.progressed {
            self.wait_for_events(max_wait.min(TICK));
        }
        false
    }

    /// Whether every worker is gone and no more will start.
    pub fn is_over(&self) -> bool {
        self.phase == Phase::Ending && self.slots.is_empty()
    }

    /// Adds a job; `None` once the run is ending (closed, stopped or interrupted).
    pub fn submit(&mut self, kind: &str, payload: Vec<u8>) -> Option<JobId> {
        self.submit_job(kind, payload, false)
    }

    /// Adds a chunk job (a sequence of inputs, see [`herd_worker::Job::chunk`]); `None` once
    /// the run is ending.
    pub fn submit_chunk(&mut self, kind: &str, payload: Vec<u8>) -> Option<JobId> {
        self.submit_job(kind, payload, true)
    }

    fn submit_job(&mut self, kind: &str, payload: Vec<u8>, chunk: bool) -> Option<JobId> {
        if self.phase != Phase::Running || !self.drain.accepts_jobs() {
            return None;
        }
        let id = if chunk {
            self.jobs.push_chunk(kind, payload)
        } else {
            self.jobs.push(kind, payload)
        };
        self.emit(Event::JobsAdded {
            total: self.jobs.len() as u64,
        });
        Some(id)
    }

    /// Gives job `id` a time limit of its own, over the run's `job_timeout` (see
    /// [`LeaseTable::set_timeout`]). Unknown ids are ignored.
    pub fn set_job_timeout(&mut self, id: JobId, timeout: Duration) {
        self.jobs.set_timeout(id, timeout);
    }

    /// Whether a worker would take a job now: none is queued, and a ready worker holds fewer
    /// jobs than it may be sent. For a caller that makes its jobs as it goes (while listing its
    /// inputs, say): submitting one job each time this holds keeps the workers busy without
    /// committing to more of the work than they can start.
    pub fn wants_jobs(&self) -> bool {
        self.phase == Phase::Running
            && self.drain.accepts_jobs()
            && self.jobs.queued() == 0
            && self.slots.iter().any(|slot| {
                slot.ready
                    && slot.leaving.is_none()
                    && slot.channel.is_some()
                    && slot.held.len() < self.ahead_limit(slot)
            })
    }

    /// The jobs so far, with their outputs and failures.
    pub fn jobs(&self) -> &LeaseTable {
        &self.jobs
    }

    /// Moves a finished job's outcome out of the job table (see [`LeaseTable::take`]).
    pub fn take_outcome(&mut self, id: JobId) -> Option<Result<Vec<u8>, crate::JobFailure>> {
        self.jobs.take(id)
    }

    /// Why the run stopped early, if it did.
    pub fn stopped(&self) -> Option<&StopReason> {
        self.stopped.as_ref()
    }

    /// The signal (SIGINT or SIGTERM) that stopped the run while jobs were unfinished, if one
    /// did: a command exits 128 + its number, as a shell expects of a process it interrupted.
    pub fn stop_signal(&self) -> Option<Signal> {
        self.stop_signal
    }

    /// No more jobs will come: the run ends once the submitted ones are done.
    pub fn close(&mut self) {
        self.keep_alive = false;
    }

    /// Stops now: every worker is killed, unfinished jobs fail as abandoned.
    pub fn terminate(&mut self) {
        if self.jobs.unfinished() > 0 {
            self.stopped.get_or_insert(StopReason::Terminated);
        }
        self.keep_alive = false;
        self.phase = Phase::Ending;
        self.pending_starts.clear();
        self.kill_all(LossCause::Died("the pool was terminated".into()));
    }

    /// Runs to the end and reports; unfinished jobs fail as abandoned.
    pub fn into_report(mut self) -> RunReport {
        self.finish()
    }

    /// Like [`into_report`](Self::into_report) through a reference (the job table moves out
    /// into the report).
    pub fn finish(&mut self) -> RunReport {
        self.close();
        while !self.is_over() {
            self.step();
        }
        if self.jobs.unfinished() > 0 {
            let reason = self
                .stopped
                .as_ref()
                .map_or_else(|| "the run stopped".to_owned(), ToString::to_string);
            self.jobs.abandon(&reason);
        }
        RunReport {
            jobs: std::mem::replace(&mut self.jobs, LeaseTable::new(1)),
            stopped: self.stopped.take(),
            workers_started: self.next_worker - 1,
            restarts: self.restarts,
        }
    }

    fn wait_for_events(&mut self, max_wait: Duration) {
        let now = self.clock.now();
        let mut timeout = max_wait;
        if let Some(next) = self.pending_starts.iter().min() {
            timeout = timeout.min(next.saturating_duration_since(now));
        }
        let mut fds = vec![PollFd::new(self.inbox.as_fd(), PollFlags::POLLIN)];
        fds.extend(
            self.slots
                .iter()
                .filter_map(|slot| slot.channel.as_ref())
                .map(|channel| PollFd::new(channel.as_fd(), PollFlags::POLLIN)),
        );
        let channels = fds.len();
        fds.extend(
            self.slots
                .iter()
                .filter_map(|slot| slot.reaper.exit_fd())
                .map(|fd| PollFd::new(fd, PollFlags::POLLIN)),
        );
        let millis = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
        // EINTR (a signal arrived) is just a wake-up; other errors are retried at the next tick.
        let _ = nix::poll::poll(&mut fds, PollTimeout::from(millis));
        // A worker exited: reap it at the next pass, as SIGCHLD would have it.
        let exited = fds[channels..]
            .iter()
            .any(|fd| fd.revents().is_some_and(|events| !events.is_empty()));
        self.child_exited |= exited;
    }

    fn on_signal(&mut self, signal: Signal, now: Instant) {
        match signal {
            Signal::SIGINT | Signal::SIGTERM => {
                let Some(state) = self.drain.on_signal(signal, now) else {
                    return;
                };
                // A pool kept alive expects more jobs: stopping it cuts the run short too.
                if self.jobs.unfinished() > 0 || self.keep_alive {
                    self.stopped.get_or_insert(StopReason::Interrupted);
                    self.stop_signal.get_or_insert(signal);
                }
                match state {
                    DrainState::Draining { .. } => {
                        self.emit(Event::DrainBegun {
                            signal: signal.as_str(),
                            grace: self.config.grace,
                        });
                        self.begin_ending(now);
                    }
                    DrainState::Stopping => {
                        self.emit(Event::StoppingNow {
                            signal: signal.as_str(),
                        });
                        self.phase = Phase::Ending;
                        self.pending_starts.clear();
                        self.kill_all(LossCause::Died("the run was stopped".into()));
                    }
                    DrainState::Running => {}
                }
            }
            Signal::SIGTTIN => {
                // A flood of SIGTTIN must not fork the machine to death: at the cap it changes
                // nothing, and the event says so.
                let at_limit = self.target >= self.config.max_workers;
                if !at_limit {
                    self.target += 1;
                }
                self.emit(Event::PoolResized {
                    signal: signal.as_str(),
                    size: self.target,
                    at_limit,
                });
            }
            Signal::SIGTTOU => {
                self.target = self.target.saturating_sub(1).max(1);
                self.emit(Event::PoolResized {
                    signal: signal.as_str(),
                    size: self.target,
                    at_limit: false,
                });
            }
            Signal::SIGUSR1 => self.emit_status(now),
            Signal::SIGCHLD => self.child_exited = true,
            _ => {}
        }
    }

    fn read_messages(&mut self, now: Instant) {
        for index in 0..self.slots.len() {
            loop {
                let slot = &mut self.slots[index];
                let Some(channel) = slot.channel.as_mut() else {
                    break;
                };
                let message = match channel.try_recv() {
                    Ok(Some(message)) => message,
                    Ok(None) => break,
                    Err(error) => {
                        slot.channel = None;
                        slot.link_closed_at = Some(now);
                        // A closed link is the worker exiting; anything else is news.
                        if error.kind() != std::io::ErrorKind::UnexpectedEof {
                            let (worker, pid) = (slot.id, slot.reaper.id());
                            let error = error.to_string();
                            slot.link_error = Some(error.clone());
                            self.emit(Event::LinkFailed { worker, pid, error });
                        }
                        break;
                    }
                };
                slot.last_heard = now;
                match message {
                    FromWorker::Ready => {
                        slot.ready = true;
                        self.progressed = true;
                    }
                    FromWorker::Heartbeat => {}
                    FromWorker::Done(results) => {
                        self.progressed = true;
                        for result in results {
                            self.on_result(index, result, now);
                        }
                    }
                    FromWorker::Leaving => {
                        self.progressed = true;
                        self.on_leaving(index, now);
                    }
                }
            }
        }
    }

    fn on_result(&mut self, index: usize, result: herd_worker::JobResult, now: Instant) {
        let slot = &mut self.slots[index];
        let id = result.id;
        if slot.held.front() == Some(&id) {
            slot.held.pop_front();
            slot.jobs_done += 1;
            let took = now.saturating_duration_since(slot.running_since);
            slot.running_since = now;
            // Results come in batches: the average over a batch is what matters.
            self.job_time = Some(match self.job_time {
                Some(average) => (average * 7 + took) / 8,
                None => took,
            });
        }
        let slot = &mut self.slots[index];
        let worker = slot.id;
        match self.jobs.complete(worker, result) {
            Completion::Accepted => {
                self.backoff.reset();
                self.emit(Event::JobFinished { job: id, worker });
            }
            Completion::Duplicate => self.emit(Event::DuplicateResult { job: id, worker }),
            Completion::Unknown => self.emit(Event::UnknownJob { job: id, worker }),
        }
        let slot = &self.slots[index];
        let recycle = self
            .config
            .max_tasks_per_child
            .is_some_and(|max| slot.jobs_done >= max);
        let shrink = self.active_workers() > self.target;
        if slot.leaving.is_none()
            && slot.held.is_empty()
            && (recycle || shrink || self.phase == Phase::Ending)
        {
            self.ask_to_leave(index, now);
        }
    }

    /// The worker got SIGTERM and leaves after its last result: a planned exit, replaced
    /// without counting as a restart; a job sent to it meanwhile goes back unstarted.
    fn on_leaving(&mut self, index: usize, now: Instant) {
        let grace = self.config.grace;
        let slot = &mut self.slots[index];
        if slot.leaving.is_some() {
            return;
        }
        slot.leaving = Some(Leaving::Asked {
            deadline: crate::clock::deadline_after(now, grace),
        });
        slot.held.clear();
        let (worker, pid) = (slot.id, slot.reaper.id());
        self.emit(Event::WorkerLeaving { worker, pid });
        for job in self.jobs.return_unstarted(worker) {
            self.emit(Event::JobReturnedUnstarted { job });
        }
    }

    fn active_workers(&self) -> usize {
        self.slots
            .iter()
            .filter(|slot| slot.leaving.is_none())
            .count()
            + self.pending_starts.len()
    }

    fn ask_to_leave(&mut self, index: usize, now: Instant) {
        let grace = self.config.grace;
        let slot = &mut self.slots[index];
        slot.leaving = Some(Leaving::Asked {
            deadline: crate::clock::deadline_after(now, grace),
        });
        let sent = slot
            .channel
            .as_mut()
            .map(|channel| channel.send(ToWorker::Stop));
        if !matches!(sent, Some(Ok(()))) {
            // No link: it cannot hear Stop, so SIGTERM (the worker leaves after its job).
            let _ = slot.reaper.signal(Signal::SIGTERM);
        }
    }

    fn kill(&mut self, index: usize, cause: LossCause) {
        let slot = &mut self.slots[index];
        if matches!(slot.leaving, Some(Leaving::Killed(_))) {
            return;
        }
        let signalled = slot.reaper.signal(Signal::SIGKILL);
        slot.leaving = Some(Leaving::Killed(cause.clone()));
        slot.held.clear();
        let worker = slot.id;
        let pid = slot.reaper.id();
        if let Err(error) = signalled {
            self.emit(Event::SignalFailed {
                worker,
                pid,
                error: error.to_string(),
            });
        }
        self.release(worker, pid, cause);
    }

    fn kill_all(&mut self, cause: LossCause) {
        for index in 0..self.slots.len() {
            self.kill(index, cause.clone());
        }
    }

    /// `worker` is gone or going: the job it was running is re-queued (or fails, out of
    /// attempts), the ones it held after it go back unstarted.
    fn release(&mut self, worker: WorkerId, pid: Pid, cause: LossCause) {
        let released = self.jobs.release(worker, cause.clone());
        for job in self.jobs.return_unstarted(worker) {
            if self.phase == Phase::Running {
                self.emit(Event::JobReturnedUnstarted { job });
            }
        }
        match released {
            Released::Nothing => {}
            // When the run is ending the job will not run again: it is reported as abandoned.
            Released::Requeued(_) if self.phase == Phase::Ending => {}
            Released::Requeued(job) => self.emit(Event::JobRequeued {
                job,
                worker,
                pid,
                cause,
                next_attempt: self.jobs.attempts(job).unwrap_or(0) + 1,
                max_attempts: self.config.max_attempts,
            }),
            Released::Failed(job) => self.emit(Event::JobFailed {
                job,
                worker,
                pid,
                cause,
            }),
        }
    }

    fn reap(&mut self, now: Instant) {
        let mut index = 0;
        while index < self.slots.len() {
            let status = match self.slots[index].reaper.try_reap() {
                Ok(Some(status)) => status,
                Ok(None) => {
                    index += 1;
                    continue;
                }
                Err(error) => {
                    self.emit(Event::WaitFailed {
                        worker: self.slots[index].id,
                        error: error.to_string(),
                    });
                    index += 1;
                    continue;
                }
            };
            let slot = self.slots.swap_remove(index);
            self.progressed = true;
            let pid = slot.reaper.id();
            let unplanned = match slot.leaving {
                Some(Leaving::Asked { .. }) => {
                    // It left as asked; a job it somehow still held goes back.
                    self.release(slot.id, pid, LossCause::Ended(status));
                    false
                }
                Some(Leaving::Killed(_)) => true,
                None => {
                    self.emit(Event::WorkerDied {
                        worker: slot.id,
                        pid,
                        status: status.to_string(),
                    });
                    self.release(slot.id, pid, LossCause::Ended(status));
                    true
                }
            };
            if unplanned && self.phase == Phase::Running {
                self.restarts += 1;
                self.replace_after_death(now);
            }
        }
        let workers: Vec<Pid> = self.slots.iter().map(|slot| slot.reaper.id()).collect();
        self.launcher.reap_strays(&|pid| workers.contains(&pid));
    }

    fn replace_after_death(&mut self, now: Instant) {
        if let Err(exceeded) = self.intensity.record(now) {
            self.emit(Event::RestartLimitHit(exceeded.clone()));
            self.stopped = Some(StopReason::Intensity(exceeded));
            self.phase = Phase::Ending;
            self.pending_starts.clear();
            self.kill_all(LossCause::Died("the run was stopped".into()));
            return;
        }
        let delay = self.backoff.next_delay();
        self.pending_starts.push(now + delay);
    }

    fn check_timers(&mut self, now: Instant) {
        for index in 0..self.slots.len() {
            // With no grace at all, a worker asked to leave is stopped at once: SIGKILL is the
            // plan, not news, and its exit stays a planned one (no restart counted). Repeated
            // each pass until it is reaped, which a worker already dead ignores.
            if self.config.grace.is_zero()
                && matches!(self.slots[index].leaving, Some(Leaving::Asked { .. }))
            {
                let _ = self.slots[index].reaper.signal(Signal::SIGKILL);
                continue;
            }
            let slot = &self.slots[index];
            let cause = match &slot.leaving {
                Some(Leaving::Killed(_)) => None,
                Some(Leaving::Asked { deadline }) => (now >= *deadline)
                    .then(|| LossCause::Died("did not leave within the grace period".into())),
                None => {
                    if slot
                        .link_closed_at
                        .is_some_and(|at| now.duration_since(at) >= CLOSED_LINK_PATIENCE)
                    {
                        Some(LossCause::Died(match &slot.link_error {
                            Some(error) => format!("its link failed: {error}"),
                            None => "closed its link to the supervisor".into(),
                        }))
                    } else if now.duration_since(slot.last_heard) >= self.config.heartbeat_timeout {
                        Some(LossCause::MissedHeartbeat)
                    } else if let Some(limit) = slot
                        .held
                        .front()
                        .and_then(|&job| self.jobs.timeout(job).or(self.config.job_timeout))
                    {
                        (now.duration_since(slot.running_since) >= limit)
                            .then_some(LossCause::TimedOut)
                    } else {
                        None
                    }
                }
            };
            if let Some(cause) = cause {
                let slot = &self.slots[index];
                self.emit(Event::WorkerKilled {
                    worker: slot.id,
                    pid: slot.reaper.id(),
                    cause: cause.clone(),
                });
                self.kill(index, cause);
            }
        }
        if self.drain.state(now) == DrainState::Stopping {
            let left = self
                .slots
                .iter()
                .filter(|slot| !matches!(slot.leaving, Some(Leaving::Killed(_))))
                .count();
            if left > 0 {
                self.emit(Event::GraceExpired { workers: left });
                self.kill_all(LossCause::Died(
                    "the grace period after a stop signal ran out".into(),
                ));
            }
        }
    }

    fn maybe_end(&mut self, now: Instant) {
        if self.phase == Phase::Running && self.jobs.unfinished() == 0 && !self.keep_alive {
            self.begin_ending(now);
        }
    }

    fn begin_ending(&mut self, now: Instant) {
        self.phase = Phase::Ending;
        self.pending_starts.clear();
        for index in 0..self.slots.len() {
            if self.slots[index].leaving.is_none() && self.slots[index].held.is_empty() {
                self.ask_to_leave(index, now);
            }
        }
    }

    fn resize(&mut self, now: Instant) {
        while self.active_workers() < self.target {
            self.pending_starts.push(now);
        }
        while self.active_workers() > self.target && !self.pending_starts.is_empty() {
            let latest = (0..self.pending_starts.len()).max_by_key(|&i| self.pending_starts[i]);
            if let Some(latest) = latest {
                self.pending_starts.swap_remove(latest);
            }
        }
        if self.active_workers() > self.target {
            let idle = self
                .slots
                .iter()
                .position(|slot| slot.leaving.is_none() && slot.held.is_empty());
            if let Some(index) = idle {
                self.ask_to_leave(index, now);
            }
            // Otherwise a busy one leaves after its job (see `on_result`).
        }
    }

    fn start_due_workers(&mut self, now: Instant) {
        let mut index = 0;
        while index < self.pending_starts.len() {
            if self.pending_starts[index] > now {
                index += 1;
                continue;
            }
            self.pending_starts.swap_remove(index);
            let id = WorkerId(self.next_worker);
            self.next_worker += 1;
            match self.launcher.launch(id) {
                Ok((child, channel)) => {
                    let pid = child.id();
                    self.emit(Event::WorkerStarted { worker: id, pid });
                    self.slots.push(Slot {
                        id,
                        reaper: Reaper::new(child),
                        channel: Some(channel),
                        link_closed_at: None,
                        link_error: None,
                        last_heard: now,
                        ready: false,
                        held: VecDeque::new(),
                        running_since: now,
                        jobs_done: 0,
                        leaving: None,
                    });
                }
                Err(error) => {
                    self.emit(Event::WorkerStartFailed {
                        worker: id,
                        error: format!("{error:#}"),
                    });
                    self.restarts += 1;
                    self.replace_after_death(now);
                    if self.phase != Phase::Running {
                        return;
                    }
                }
            }
        }
    }

    /// How many jobs a worker may hold: one while job durations are unknown or long, up to
    /// [`MAX_AHEAD`] when they are short, and never more than it may still run before it is
    /// recycled.
    fn ahead_limit(&self, slot: &Slot<L::Child, L::Channel>) -> usize {
        let by_time = match self.job_time {
            Some(average) if !average.is_zero() => {
                (AHEAD_TIME.as_nanos() / average.as_nanos()).clamp(1, MAX_AHEAD as u128) as usize
            }
            Some(_) => MAX_AHEAD,
            None => 1,
        };
        match self.config.max_tasks_per_child {
            Some(max) => {
                let left = max.saturating_sub(slot.jobs_done);
                by_time.min(usize::try_from(left).unwrap_or(usize::MAX))
            }
            None => by_time,
        }
    }

    /// Leases queued jobs to ready workers, one per worker per round so that a short queue is
    /// shared out rather than sent to the first worker, then sends each worker its batch.
    fn dispatch(&mut self, now: Instant) {
        if !self.drain.accepts_jobs() || self.jobs.queued() == 0 {
            return;
        }
        let limits: Vec<usize> = self
            .slots
            .iter()
            .map(|slot| {
                if !slot.ready || slot.leaving.is_some() || slot.channel.is_none() {
                    0
                } else {
                    self.ahead_limit(slot).saturating_sub(slot.held.len())
                }
            })
            .collect();
        let mut batches: Vec<Vec<herd_worker::Job>> = vec![Vec::new(); self.slots.len()];
        let mut leased_any = true;
        while leased_any && self.jobs.queued() > 0 {
            leased_any = false;
            for index in 0..self.slots.len() {
                if batches[index].len() >= limits[index] {
                    continue;
                }
                let Some(job) = self.jobs.lease(self.slots[index].id) else {
                    break;
                };
                leased_any = true;
                batches[index].push(job);
            }
        }
        for (index, batch) in batches.into_iter().enumerate() {
            if batch.is_empty() {
                continue;
            }
            let worker = self.slots[index].id;
            for job in &batch {
                self.emit(Event::JobLeased {
                    job: job.id,
                    worker,
                    attempt: job.attempt,
                });
            }
            let slot = &mut self.slots[index];
            if slot.held.is_empty() {
                slot.running_since = now;
            }
            slot.held.extend(batch.iter().map(|job| job.id));
            let first = batch[0].id;
            let sent = slot
                .channel
                .as_mut()
                .map(|channel| channel.send(ToWorker::Run(batch)));
            if let Some(Err(error)) = sent {
                self.emit(Event::SendFailed {
                    job: first,
                    worker,
                    error: error.to_string(),
                });
                self.kill(index, LossCause::Died(format!("its link broke: {error}")));
            }
        }
    }

    fn emit_status(&mut self, now: Instant) {
        let rows: Vec<WorkerRow> = self
            .slots
            .iter()
            .filter(|slot| slot.reaper.status().is_none())
            .map(|slot| WorkerRow {
                id: slot.id,
                pid: slot.reaper.id(),
                jobs_done: slot.jobs_done,
                current: slot
                    .held
                    .front()
                    .map(|&job| (job, now.duration_since(slot.running_since))),
            })
            .collect();
        let status = Status {
            workers: rows,
            queued: self.jobs.queued(),
            unfinished: self.jobs.unfinished(),
        };
        self.emit(Event::Status(status));
    }
}

#[cfg(test)]
mod tests;
