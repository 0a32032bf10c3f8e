//! `Supervisor`: the single-threaded loop that keeps a pool of workers healthy while it runs
//! every job of a run once.
//!
//! The loop, gunicorn-arbiter style: wait (poll) on the signal self-pipe and the workers'
//! channels, then act: read messages, reap the dead, kill the silent and the overrunning, start
//! replacements (backoff, OTP intensity), hand out jobs, drain on SIGINT/SIGTERM. No thread is
//! started, so a [`Launcher`] may fork.
use std::io::IsTerminal;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use herd_ipc::Pid;
use herd_worker::{FromWorker, JobId, ToWorker};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::signal::Signal;

use crate::launch::{Launcher, WorkerChannel};
use crate::signals::SignalInbox;
use crate::status::{self, WorkerRow};
use crate::{
    Backoff, Completion, Drain, DrainState, LeaseTable, LossCause, Reaper, Released,
    RestartIntensity, RunReport, StopReason, SupervisorConfig, WorkerId,
};

/// The longest the loop sleeps; timers (heartbeats, timeouts, restarts) are checked this often.
const TICK: Duration = Duration::from_millis(50);
/// How long a worker whose link closed may take to exit on its own before it is killed.
const CLOSED_LINK_PATIENCE: Duration = Duration::from_millis(500);

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
    last_heard: Instant,
    ready: bool,
    job: Option<(JobId, Instant)>,
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
pub struct Supervisor<L: Launcher> {
    config: SupervisorConfig,
    launcher: L,
    inbox: SignalInbox,
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
    restarts: u64,
    next_status: Option<Instant>,
    child_exited: bool,
    last_reap: Instant,
    progress: ProgressBar,
}

impl<L: Launcher> Supervisor<L> {
    /// A supervisor for `jobs`, receiving its signals through `inbox`.
    pub fn new(
        config: SupervisorConfig,
        launcher: L,
        inbox: SignalInbox,
        jobs: LeaseTable,
    ) -> Self {
        let progress = if config.progress && std::io::stderr().is_terminal() {
            let bar = ProgressBar::with_draw_target(
                Some(jobs.len() as u64),
                ProgressDrawTarget::stderr(),
            );
            if let Ok(style) =
                ProgressStyle::with_template("{bar:40} {pos}/{len} jobs {elapsed} {msg}")
            {
                bar.set_style(style);
            }
            bar
        } else {
            ProgressBar::hidden()
        };
        let now = Instant::now();
        Self {
            target: config.workers.max(1),
            drain: Drain::new(config.grace),
            intensity: RestartIntensity::new(config.max_restarts, config.restart_period),
            backoff: Backoff::new(Duration::from_millis(100), Duration::from_secs(5)),
            next_status: config.status_interval.map(|every| now + every),
            child_exited: false,
            last_reap: now,
            config,
            launcher,
            inbox,
            slots: Vec::new(),
            pending_starts: Vec::new(),
            next_worker: 1,
            jobs,
            phase: Phase::Running,
            keep_alive: false,
            stopped: None,
            restarts: 0,
            progress,
        }
    }

    fn say(&self, message: &str) {
        self.progress.suspend(|| eprintln!("supervisor: {message}"));
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
        let now = Instant::now();
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
            self.print_status(now);
            self.next_status = self.config.status_interval.map(|every| now + every);
        }
        if self.is_over() {
            return true;
        }
        self.wait_for_events();
        false
    }

    /// Whether every worker is gone and no more will start.
    pub fn is_over(&self) -> bool {
        self.phase == Phase::Ending && self.slots.is_empty()
    }

    /// Adds a job; `None` once the run is ending (closed, stopped or interrupted).
    pub fn submit(&mut self, kind: &str, payload: Vec<u8>) -> Option<JobId> {
        if self.phase != Phase::Running || !self.drain.accepts_jobs() {
            return None;
        }
        self.progress.inc_length(1);
        Some(self.jobs.push(kind, payload))
    }

    /// The jobs so far, with their outputs and failures.
    pub fn jobs(&self) -> &LeaseTable {
        &self.jobs
    }

    /// Why the run stopped early, if it did.
    pub fn stopped(&self) -> Option<&StopReason> {
        self.stopped.as_ref()
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
        self.progress.finish_and_clear();
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

    fn wait_for_events(&self) {
        let now = Instant::now();
        let mut timeout = TICK;
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
        let millis = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
        // EINTR (a signal arrived) is just a wake-up; other errors are retried at the next tick.
        let _ = nix::poll::poll(&mut fds, PollTimeout::from(millis));
    }

    fn on_signal(&mut self, signal: Signal, now: Instant) {
        match signal {
            Signal::SIGINT | Signal::SIGTERM => {
                let state = self.drain.on_stop_signal(now);
                if self.jobs.unfinished() > 0 {
                    self.stopped.get_or_insert(StopReason::Interrupted);
                }
                match state {
                    DrainState::Draining { .. } => {
                        self.say(&format!(
                            "{} received: draining (no new jobs; running ones get {:?}; send it again to stop at once)",
                            signal.as_str(),
                            self.config.grace
                        ));
                        self.begin_ending(now);
                    }
                    DrainState::Stopping => {
                        self.say(&format!("{} received: stopping at once", signal.as_str()));
                        self.phase = Phase::Ending;
                        self.pending_starts.clear();
                        self.kill_all(LossCause::Died("the run was stopped".into()));
                    }
                    DrainState::Running => {}
                }
            }
            Signal::SIGTTIN => {
                self.target += 1;
                self.say(&format!("SIGTTIN: pool size now {}", self.target));
            }
            Signal::SIGTTOU => {
                self.target = self.target.saturating_sub(1).max(1);
                self.say(&format!("SIGTTOU: pool size now {}", self.target));
            }
            Signal::SIGUSR1 => self.print_status(now),
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
                    Err(_) => {
                        slot.channel = None;
                        slot.link_closed_at = Some(now);
                        break;
                    }
                };
                slot.last_heard = now;
                match message {
                    FromWorker::Ready => slot.ready = true,
                    FromWorker::Heartbeat => {}
                    FromWorker::Done(result) => self.on_result(index, result, now),
                    FromWorker::Leaving => self.on_leaving(index, now),
                }
            }
        }
    }

    fn on_result(&mut self, index: usize, result: herd_worker::JobResult, now: Instant) {
        let slot = &mut self.slots[index];
        let id = result.id;
        if slot.job.is_some_and(|(job, _)| job == id) {
            slot.job = None;
            slot.jobs_done += 1;
        }
        let worker = slot.id;
        match self.jobs.complete(worker, result) {
            Completion::Accepted => {
                self.backoff.reset();
                self.progress.inc(1);
            }
            Completion::Duplicate => {
                self.say(&format!("job {id}: duplicate result from {worker} dropped"))
            }
            Completion::Unknown => {
                self.say(&format!("{worker} answered unknown job {id}; ignored"))
            }
        }
        let slot = &self.slots[index];
        let recycle = self
            .config
            .max_tasks_per_child
            .is_some_and(|max| slot.jobs_done >= max);
        let shrink = self.active_workers() > self.target;
        if slot.leaving.is_none() && (recycle || shrink || self.phase == Phase::Ending) {
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
            deadline: now + grace,
        });
        slot.job = None;
        let (worker, pid) = (slot.id, slot.reaper.id());
        self.say(&format!("{worker} (pid {pid}) leaves (SIGTERM)"));
        if let Some(job) = self.jobs.return_unstarted(worker) {
            self.say(&format!("job {job} goes back unstarted"));
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
            deadline: now + grace,
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
        slot.job = None;
        let worker = slot.id;
        let pid = slot.reaper.id();
        if let Err(error) = signalled {
            self.say(&format!("killing {worker} (pid {pid}): {error}"));
        }
        self.release(worker, pid, cause);
    }

    fn kill_all(&mut self, cause: LossCause) {
        for index in 0..self.slots.len() {
            self.kill(index, cause.clone());
        }
    }

    fn release(&mut self, worker: WorkerId, pid: Pid, cause: LossCause) {
        match self.jobs.release(worker, cause.clone()) {
            Released::Nothing => {}
            // When the run is ending the job will not run again: it is reported as abandoned.
            Released::Requeued(_) if self.phase == Phase::Ending => {}
            Released::Requeued(job) => self.say(&format!(
                "{worker} (pid {pid}) lost job {job}: {cause}; re-queued (attempt {} of {} next)",
                self.jobs.attempts(job).unwrap_or(0) + 1,
                self.config.max_attempts
            )),
            Released::Failed(job) => {
                self.progress.inc(1);
                self.say(&format!(
                    "{worker} (pid {pid}) lost job {job}: {cause}; job failed, out of attempts"
                ))
            }
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
                    self.say(&format!("waiting for {}: {error}", self.slots[index].id));
                    index += 1;
                    continue;
                }
            };
            let slot = self.slots.swap_remove(index);
            let pid = slot.reaper.id();
            let unplanned = match slot.leaving {
                Some(Leaving::Asked { .. }) => {
                    // It left as asked; a job it somehow still held goes back.
                    self.release(slot.id, pid, LossCause::Ended(status));
                    false
                }
                Some(Leaving::Killed(_)) => true,
                None => {
                    self.say(&format!("{} (pid {pid}) died: {status}", slot.id));
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
            self.say(&format!("{exceeded}; stopping the run"));
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
                        Some(LossCause::Died("closed its link to the supervisor".into()))
                    } else if now.duration_since(slot.last_heard) >= self.config.heartbeat_timeout {
                        Some(LossCause::MissedHeartbeat)
                    } else if let (Some(limit), Some((_, started))) =
                        (self.config.job_timeout, slot.job)
                    {
                        (now.duration_since(started) >= limit).then_some(LossCause::TimedOut)
                    } else {
                        None
                    }
                }
            };
            if let Some(cause) = cause {
                let slot = &self.slots[index];
                self.say(&format!(
                    "killing {} (pid {}): {cause}",
                    slot.id,
                    slot.reaper.id()
                ));
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
                self.say(&format!(
                    "the grace period after a stop signal ran out: killing {left} worker(s)"
                ));
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
            if self.slots[index].leaving.is_none() && self.slots[index].job.is_none() {
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
                .position(|slot| slot.leaving.is_none() && slot.job.is_none());
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
                Ok((child, channel)) => self.slots.push(Slot {
                    id,
                    reaper: Reaper::new(child),
                    channel: Some(channel),
                    link_closed_at: None,
                    last_heard: now,
                    ready: false,
                    job: None,
                    jobs_done: 0,
                    leaving: None,
                }),
                Err(error) => {
                    self.say(&format!("starting {id}: {error:#}"));
                    self.restarts += 1;
                    self.replace_after_death(now);
                    if self.phase != Phase::Running {
                        return;
                    }
                }
            }
        }
    }

    fn dispatch(&mut self, now: Instant) {
        if !self.drain.accepts_jobs() {
            return;
        }
        for index in 0..self.slots.len() {
            let slot = &self.slots[index];
            if !slot.ready || slot.job.is_some() || slot.leaving.is_some() || slot.channel.is_none()
            {
                continue;
            }
            let Some(job) = self.jobs.lease(slot.id) else {
                return;
            };
            let id = job.id;
            let slot = &mut self.slots[index];
            slot.job = Some((id, now));
            let sent = slot
                .channel
                .as_mut()
                .map(|channel| channel.send(ToWorker::Run(job)));
            if let Some(Err(error)) = sent {
                let worker = slot.id;
                self.say(&format!("sending job {id} to {worker}: {error}"));
                self.kill(index, LossCause::Died(format!("its link broke: {error}")));
            }
        }
    }

    fn print_status(&self, now: Instant) {
        let rows: Vec<WorkerRow> = self
            .slots
            .iter()
            .filter(|slot| slot.reaper.status().is_none())
            .map(|slot| WorkerRow {
                id: slot.id,
                pid: slot.reaper.id(),
                jobs_done: slot.jobs_done,
                current: slot
                    .job
                    .map(|(job, started)| (job, now.duration_since(started))),
            })
            .collect();
        let table = status::render(&rows, self.jobs.queued(), self.jobs.unfinished());
        self.progress.suspend(|| eprint!("{table}"));
    }
}
