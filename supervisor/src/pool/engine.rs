//! The pool's engine: the supervision loop, and the state that callers on other threads share
//! with it.
//!
//! Two ways to drive the loop. With forked workers the process must stay single-threaded (a
//! thread would make every later `fork` unsafe), so whoever waits on the pool runs the loop on
//! its own thread ([`Drive::Caller`]). With spawned workers the pool starts a thread of its own
//! that runs the loop ([`Drive::Thread`]); callers hand it commands and sleep on a condition
//! variable until their results are in. Either way results are moved out of the loop's job table
//! as they arrive, callbacks run outside every lock, and a result nobody will collect is dropped.
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use herd_worker::JobId;

use crate::{
    Event, IpcLauncher, JobFailure, Level, Observer, SignalInbox, StopReason, Supervisor, Waker,
};

/// A finished job: its encoded output, or why it has none.
pub(crate) type Outcome = Result<Vec<u8>, JobFailure>;

/// Runs when a job finishes, on the thread that drives the loop, outside every lock.
pub(crate) type Callback = Box<dyn FnOnce(&Outcome) + Send>;

/// How many of the supervisor's warnings and errors a pool keeps (the oldest go first).
const KEPT_INCIDENTS: usize = 1000;

/// The longest a waiting caller sleeps before looking again (a safety net: results notify).
const RECHECK: Duration = Duration::from_millis(200);

/// The loop's observer: notes finished jobs for delivery and keeps what went wrong.
#[derive(Debug, Default)]
pub(crate) struct PoolLog {
    finished: Vec<JobId>,
    incidents: Vec<Event>,
}

impl Observer for PoolLog {
    fn on_event(&mut self, event: &Event) {
        match event {
            Event::JobFinished { job, .. } | Event::JobFailed { job, .. } => {
                self.finished.push(*job)
            }
            _ => {}
        }
        if event.level() >= Level::Warn {
            self.incidents.push(event.clone());
        }
    }
}

/// The supervision loop of one pool.
pub(crate) struct Engine {
    pub(crate) supervisor: Supervisor<IpcLauncher, PoolLog, SignalInbox>,
}

/// What a caller asks of a loop running on the pool's thread.
pub(crate) enum Command {
    /// Add a job; the loop gives it the next id, which the caller has already taken.
    Submit {
        kind: &'static str,
        payload: Vec<u8>,
        chunk: bool,
    },
    /// No more jobs: end once the submitted ones are done.
    Close,
    /// Stop now.
    Terminate,
}

/// Who drives the loop.
pub(crate) enum Drive {
    /// Whoever waits on the pool, on its own thread.
    Caller(Box<Mutex<Engine>>),
    /// The pool's thread; `Waker` interrupts its wait when a command is queued.
    Thread(Waker),
}

/// What callers and the loop share.
#[derive(Default)]
pub(crate) struct State {
    /// The id the next submitted job gets (the loop numbers jobs in the order it receives them).
    next_id: JobId,
    commands: Vec<Command>,
    /// Finished jobs not yet collected.
    outcomes: HashMap<JobId, Outcome>,
    callbacks: HashMap<JobId, Callback>,
    /// Jobs whose results nobody will collect: dropped on arrival.
    abandoned: HashSet<JobId>,
    pub(crate) closed: bool,
    /// Set when the loop has ended: every worker is gone.
    pub(crate) over: bool,
    stop: Option<StopReason>,
    incidents: VecDeque<Event>,
}

impl State {
    /// Moves a finished job's outcome out, if it is there; once the pool is over, a job that will
    /// never finish gets the reason.
    pub(crate) fn collect(&mut self, id: JobId) -> Option<Outcome> {
        if let Some(outcome) = self.outcomes.remove(&id) {
            return Some(outcome);
        }
        self.over.then(|| Err(self.stopped_failure()))
    }

    /// Whether `id` has an outcome waiting (or never will have one).
    pub(crate) fn has(&self, id: JobId) -> bool {
        self.over || self.outcomes.contains_key(&id)
    }

    /// Nobody will collect `id`: drop its outcome now or when it comes (after its callback, if
    /// it has one, ran: a callback outlives the handle, as in Python).
    pub(crate) fn abandon(&mut self, id: JobId) {
        if self.outcomes.remove(&id).is_none() && !self.over {
            self.abandoned.insert(id);
        }
    }

    /// Why a job that never finished did not.
    fn stopped_failure(&self) -> JobFailure {
        JobFailure::Abandoned(
            self.stop
                .as_ref()
                .map_or_else(|| StopReason::Terminated.to_string(), ToString::to_string),
        )
    }

    /// Marks the pool over (stopped early for `stop`, if it did); the callbacks of jobs that will
    /// never finish, with the reason, for the caller to run outside the lock.
    fn end(&mut self, stop: Option<StopReason>) -> Vec<(Callback, Outcome)> {
        self.over = true;
        self.closed = true;
        if stop.is_some() {
            self.stop = stop;
        }
        let failure = Err(self.stopped_failure());
        self.callbacks
            .drain()
            .map(|(_, callback)| (callback, failure.clone()))
            .collect()
    }

    /// Why the pool stopped, if it stopped before its jobs were done.
    pub(crate) fn stop_reason(&self) -> Option<&StopReason> {
        self.stop.as_ref()
    }

    pub(crate) fn incidents(&self) -> impl Iterator<Item = &Event> {
        self.incidents.iter()
    }
}

/// The state shared by the pool's handles and its loop.
pub(crate) struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    pub(crate) drive: Drive,
}

impl Shared {
    pub(crate) fn new(drive: Drive) -> Self {
        Self {
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
            drive,
        }
    }

    /// The shared state. A panic elsewhere while it was held (a bug) leaves consistent data: every
    /// update is a single insert or remove.
    pub(crate) fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn engine(engine: &Mutex<Engine>) -> MutexGuard<'_, Engine> {
        engine.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds a job; its id, or `None` if the pool takes no more jobs.
    pub(crate) fn submit(
        &self,
        kind: &'static str,
        payload: Vec<u8>,
        chunk: bool,
    ) -> Option<JobId> {
        match &self.drive {
            Drive::Caller(engine) => {
                if self.state().closed {
                    return None;
                }
                let mut engine = Self::engine(engine);
                if chunk {
                    engine.supervisor.submit_chunk(kind, payload)
                } else {
                    engine.supervisor.submit(kind, payload)
                }
            }
            Drive::Thread(waker) => {
                let mut state = self.state();
                if state.closed || state.over {
                    return None;
                }
                let id = state.next_id;
                state.next_id += 1;
                let was_idle = state.commands.is_empty();
                state.commands.push(Command::Submit {
                    kind,
                    payload,
                    chunk,
                });
                drop(state);
                // One wake-up covers every command queued before the loop takes them.
                if was_idle {
                    waker.wake();
                }
                Some(id)
            }
        }
    }

    /// Registers a callback for `id`; if the job has finished already, runs it now.
    pub(crate) fn on_finish(&self, id: JobId, callback: Callback) {
        let mut state = self.state();
        if state.has(id) {
            let outcome = match state.outcomes.get(&id) {
                Some(outcome) => outcome.clone(),
                None => Err(state.stopped_failure()),
            };
            drop(state);
            callback(&outcome);
        } else {
            state.callbacks.insert(id, callback);
        }
    }

    /// Closes (no new jobs) or terminates (stop now) the pool.
    pub(crate) fn command(&self, command: Command) {
        let mut state = self.state();
        state.closed = true;
        match &self.drive {
            Drive::Caller(engine) => {
                drop(state);
                let mut engine = Self::engine(engine);
                match command {
                    Command::Close => engine.supervisor.close(),
                    Command::Terminate => engine.supervisor.terminate(),
                    Command::Submit { .. } => {}
                }
            }
            Drive::Thread(waker) => {
                state.commands.push(command);
                drop(state);
                waker.wake();
            }
        }
    }

    /// Waits until `ready` holds (it may take outcomes out of the state) or the pool is over;
    /// `false` if `deadline` passed first. With [`Drive::Caller`] this drives the loop.
    pub(crate) fn wait_until(
        &self,
        deadline: Option<Instant>,
        mut ready: impl FnMut(&mut State) -> bool,
    ) -> bool {
        match &self.drive {
            Drive::Caller(engine) => loop {
                {
                    let mut state = self.state();
                    if ready(&mut state) || state.over {
                        return true;
                    }
                }
                let Some(left) = time_left(deadline) else {
                    return false;
                };
                let callbacks = Self::engine(engine).pump(self, left);
                run(callbacks);
            },
            Drive::Thread(_) => {
                let mut state = self.state();
                loop {
                    if ready(&mut state) || state.over {
                        return true;
                    }
                    let Some(left) = time_left(deadline) else {
                        return false;
                    };
                    state = self
                        .changed
                        .wait_timeout(state, left.min(RECHECK))
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                }
            }
        }
    }

    /// Drives the loop once without waiting (for `ready()` checks when the caller drives).
    pub(crate) fn poll(&self) {
        if let Drive::Caller(engine) = &self.drive {
            let callbacks = Self::engine(engine).pump(self, Duration::ZERO);
            run(callbacks);
        }
    }

    /// Marks the pool over (its thread ended, however it ended) and wakes every waiter.
    pub(crate) fn end(&self) {
        let mut state = self.state();
        let callbacks = state.end(None);
        drop(state);
        self.changed.notify_all();
        run(callbacks);
    }

    /// Runs the loop on the pool's thread until it is over.
    pub(crate) fn run_thread(&self, mut engine: Engine) {
        loop {
            let commands = std::mem::take(&mut self.state().commands);
            for command in commands {
                engine.apply(self, command);
            }
            let callbacks = engine.pump(self, RECHECK);
            run(callbacks);
            if engine.supervisor.is_over() {
                break;
            }
        }
    }
}

/// How long a waiter may sleep before looking again: what is left until `deadline` (`None` once
/// it passed), or [`RECHECK`] without one.
fn time_left(deadline: Option<Instant>) -> Option<Duration> {
    match deadline {
        Some(deadline) => deadline
            .checked_duration_since(Instant::now())
            .filter(|left| !left.is_zero()),
        None => Some(RECHECK),
    }
}

fn run(callbacks: Vec<(Callback, Outcome)>) {
    for (callback, outcome) in callbacks {
        callback(&outcome);
    }
}

impl Engine {
    fn apply(&mut self, shared: &Shared, command: Command) {
        match command {
            Command::Submit {
                kind,
                payload,
                chunk,
            } => {
                let accepted = if chunk {
                    self.supervisor.submit_chunk(kind, payload)
                } else {
                    self.supervisor.submit(kind, payload)
                };
                if accepted.is_none() {
                    // The loop is ending (the restart limit): nothing more is accepted, and the
                    // job's waiter learns why once the loop is over.
                    shared.state().closed = true;
                }
            }
            Command::Close => self.supervisor.close(),
            Command::Terminate => self.supervisor.terminate(),
        }
    }

    /// One pass of the loop (waiting at most `max_wait`), then the finished jobs' outcomes
    /// delivered; returns the callbacks to run.
    fn pump(&mut self, shared: &Shared, max_wait: Duration) -> Vec<(Callback, Outcome)> {
        let over = self.supervisor.step_for(max_wait);
        let log = self.supervisor.observer_mut();
        let finished = std::mem::take(&mut log.finished);
        let incidents = std::mem::take(&mut log.incidents);
        let mut callbacks = Vec::new();
        let mut state = shared.state();
        for incident in incidents {
            if state.incidents.len() == KEPT_INCIDENTS {
                state.incidents.pop_front();
            }
            state.incidents.push_back(incident);
        }
        for id in finished {
            let Some(outcome) = self.supervisor.take_outcome(id) else {
                continue;
            };
            if let Some(callback) = state.callbacks.remove(&id) {
                callbacks.push((callback, outcome.clone()));
            }
            if !state.abandoned.remove(&id) {
                state.outcomes.insert(id, outcome);
            }
        }
        if over && !state.over {
            callbacks.extend(state.end(self.supervisor.stopped().cloned()));
        }
        drop(state);
        shared.changed.notify_all();
        callbacks
    }
}
