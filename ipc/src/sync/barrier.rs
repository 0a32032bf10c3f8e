//! `Barrier`: a fixed number of parties wait until all have arrived, across processes, with a
//! broken state so that a party that never arrives produces errors instead of a hang.
//!
//! Bookkeeping (arrivals, broken flag) is under a robust mutex; waiters sleep on a generation
//! futex. Each finished generation records its outcome (passed or broken) in a small ring indexed
//! by generation, so a waiter woken late still learns how *its* generation ended.
//!
//! An action (Python's `Barrier(parties, action)`) is a registered [`Entry`]: its name is kept in
//! the segment, so whichever process trips the barrier, forked or spawned, finds the function in
//! its own copy of the program. The last party to arrive runs it under the bookkeeping lock,
//! before it ends the generation and wakes the others.

use std::fmt;
use std::io;
use std::sync::atomic::{AtomicU32, AtomicU8, Ordering};
use std::time::{Duration, Instant};

use super::shared_handle_serde;
use super::timeout::deadline_after;
use crate::codec;
use crate::platform::{
    futex_wait, futex_wake_all, Acquired, FutexWait, MutexError, MutexKind, RobustMutex,
    SharedLayout, SharedState,
};
use crate::process::ChildOutcome;
use crate::Entry;

const OUTCOME_SLOTS: usize = 64;
/// How often a party waiting on a barrier with an action checks that the process running the
/// action has not died in it.
const ACTION_DEATH_CHECK: Duration = Duration::from_millis(100);
/// Room for an action's entry name (its module path and function name) in the segment.
const ACTION_NAME_MAX: usize = 256;
const PASSED: u8 = 1;
const BROKEN: u8 = 2;

#[repr(C)]
pub(crate) struct BarrierState {
    mutex: RobustMutex,
    parties: AtomicU32,
    arrived: AtomicU32,
    broken: AtomicU32,
    generation: AtomicU32,
    outcomes: [AtomicU8; OUTCOME_SLOTS],
    /// The length of the action's entry name in `action`; 0: no action. Written once, before the
    /// segment is shared.
    action_len: AtomicU32,
    action: [AtomicU8; ACTION_NAME_MAX],
}

// The state type is declared here, so its layout promise is made here; the trait and the
// segment code that relies on it are in the OS layer (platform/shared_state.rs).
#[allow(unsafe_code)]
// SAFETY: repr(C): a robust mutex (initialised in `Barrier::new` before sharing) and atomics.
unsafe impl SharedLayout for BarrierState {
    const KIND: &'static str = "herd.Barrier";
}

/// Why [`Barrier::wait`] did not pass.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BarrierWaitError {
    /// This party's timeout elapsed before all parties arrived; it broke the barrier (the other
    /// waiters get [`BarrierWaitError::Broken`]).
    #[error("timed out waiting for the other parties; the barrier is now broken")]
    Timeout,
    /// The barrier is broken (a party timed out, `abort` was called, a waiting party died inside
    /// the barrier's bookkeeping, or `reset` ran while this party waited). `reset` repairs it.
    #[error("the barrier is broken")]
    Broken,
    /// This party tripped the barrier, and the barrier's action (see [`Barrier::with_action`])
    /// panicked or could not run in it; the barrier is now broken (the other waiters get
    /// [`BarrierWaitError::Broken`]).
    #[error("the barrier's action {action} failed: {message}")]
    Action {
        /// The action's entry name.
        action: String,
        /// Its panic message, or why it could not run.
        message: String,
    },
    /// The barrier's internal lock failed.
    #[error("the barrier's lock failed: {0}")]
    Os(#[source] io::Error),
}

impl BarrierWaitError {
    /// Whether this party's timeout elapsed (it broke the barrier).
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Timeout)
    }

    /// Whether the barrier was broken (by another party, `abort` or `reset`).
    pub fn is_broken(&self) -> bool {
        matches!(self, Self::Broken)
    }
}

/// A process-shared barrier for `parties` parties (multiprocessing.Barrier), optionally with an
/// action that runs once each time it trips ([`Barrier::with_action`]).
#[derive(Clone)]
pub struct Barrier {
    state: SharedState<BarrierState>,
}

/// Holds the barrier's mutex; a dead previous holder breaks the barrier (its update may be half
/// done) and is then recovered from.
struct Bookkeeping<'a> {
    state: &'a BarrierState,
}

impl<'a> Bookkeeping<'a> {
    fn lock(state: &'a BarrierState) -> Result<Self, BarrierWaitError> {
        Self::acquired(state, state.mutex.lock())
    }

    /// Takes the lock if it is free, or if its holder died (breaking the barrier as `lock` does);
    /// `None` while a live process holds it.
    fn try_lock(state: &'a BarrierState) -> Option<Result<Self, BarrierWaitError>> {
        match state.mutex.try_lock() {
            Err(MutexError::WouldBlock) => None,
            result => Some(Self::acquired(state, result)),
        }
    }

    fn acquired(
        state: &'a BarrierState,
        result: Result<Acquired, MutexError>,
    ) -> Result<Self, BarrierWaitError> {
        match result {
            Ok(Acquired::Clean) => Ok(Self { state }),
            Ok(Acquired::OwnerDied) => {
                let book = Self { state };
                book.finish_generation(BROKEN);
                book.state.broken.store(1, Ordering::Relaxed);
                // Cannot fail: this thread owns the inconsistent mutex.
                let _ = state.mutex.make_consistent();
                Ok(book)
            }
            Err(MutexError::Os(err)) => Err(BarrierWaitError::Os(err)),
            Err(other) => Err(BarrierWaitError::Os(io::Error::other(other.to_string()))),
        }
    }

    /// Ends the current generation with `outcome`, waking all its waiters.
    fn finish_generation(&self, outcome: u8) {
        let generation = self.state.generation.load(Ordering::Relaxed);
        self.state.outcomes[generation as usize % OUTCOME_SLOTS].store(outcome, Ordering::Relaxed);
        self.state.arrived.store(0, Ordering::Relaxed);
        self.state
            .generation
            .store(generation.wrapping_add(1), Ordering::Release);
        futex_wake_all(&self.state.generation);
    }
}

impl Drop for Bookkeeping<'_> {
    fn drop(&mut self) {
        // Cannot fail: this thread owns the mutex.
        let _ = self.state.mutex.unlock();
    }
}

impl Barrier {
    /// Creates a barrier for `parties` parties (at least 1).
    pub fn new(parties: u32) -> io::Result<Self> {
        Self::create(parties, "")
    }

    /// Creates a barrier for `parties` parties that runs `action` each time it trips (Python's
    /// `Barrier(parties, action)`): exactly one of the waiting processes, the last to arrive,
    /// runs it, and the others are released only after it has returned. Every party's `wait`
    /// then returns as usual.
    ///
    /// The action is an entry declared with [`entry!`](crate::entry!) taking `()` and returning
    /// `()`, not a closure: the party that trips the barrier may be a spawned process, a fresh run
    /// of the program where a closure or function pointer of the creator means nothing. The
    /// barrier carries the entry's name, and each process looks it up in its own copy of the
    /// program, so it runs in forked, spawned and forkserver children alike (only in this
    /// program: it must be linked in). Whatever the action does (writing to a [`Value`](crate::Value),
    /// sending on a Pipe) must therefore reach shared state through handles the process already
    /// has or can open.
    ///
    /// If the action panics, the barrier breaks: the party that ran it gets
    /// [`BarrierWaitError::Action`] with the panic message, the others
    /// [`BarrierWaitError::Broken`]. If the process running it dies (SIGKILL included), the
    /// barrier breaks: the parties waiting get [`BarrierWaitError::Broken`] within about 100 ms
    /// (while an action is configured, waiting parties wake that often to check for this).
    /// [`reset`](Self::reset) repairs it.
    pub fn with_action<E>(parties: u32, action: E) -> io::Result<Self>
    where
        E: Entry<Args = (), Output = ()>,
    {
        let _ = action;
        if !crate::process::is_registered(E::NAME) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "the barrier action {:?} is not registered in this binary (declare it with entry!)",
                    E::NAME
                ),
            ));
        }
        Self::create(parties, E::NAME)
    }

    fn create(parties: u32, action: &str) -> io::Result<Self> {
        if parties == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a barrier needs at least one party",
            ));
        }
        if action.len() > ACTION_NAME_MAX {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "the barrier action's name {action:?} is longer than {ACTION_NAME_MAX} bytes"
                ),
            ));
        }
        let state = SharedState::create("barrier", "", 0, |state: &mut BarrierState| {
            state.parties = AtomicU32::new(parties);
            for (slot, byte) in state.action.iter_mut().zip(action.bytes()) {
                *slot.get_mut() = byte;
            }
            // At most ACTION_NAME_MAX, checked above.
            *state.action_len.get_mut() = action.len() as u32;
            state.mutex.init_in_place(MutexKind::ErrorCheck)
        })?;
        Ok(Self { state })
    }

    /// The entry name of the barrier's action, if it has one.
    pub fn action(&self) -> Option<String> {
        let state = self.state.state();
        let len = (state.action_len.load(Ordering::Relaxed) as usize).min(ACTION_NAME_MAX);
        if len == 0 {
            return None;
        }
        let bytes: Vec<u8> = state.action[..len]
            .iter()
            .map(|byte| byte.load(Ordering::Relaxed))
            .collect();
        Some(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// Runs the action, if any, in this process; the error is the panic message or why it could
    /// not run.
    fn run_action(&self) -> Result<(), BarrierWaitError> {
        let Some(action) = self.action() else {
            return Ok(());
        };
        let args = codec::encode(&()).map_err(|err| BarrierWaitError::Action {
            action: action.clone(),
            message: format!("cannot encode its arguments: {err}"),
        })?;
        let message = match crate::process::run_by_name(&action, &args.bytes, args.fds).0 {
            ChildOutcome::Returned(_) => return Ok(()),
            ChildOutcome::Panicked(message) => format!("it panicked: {message}"),
            ChildOutcome::Failed(message) => message,
        };
        Err(BarrierWaitError::Action { action, message })
    }

    /// The number of parties the barrier waits for.
    pub fn parties(&self) -> u32 {
        self.state.state().parties.load(Ordering::Relaxed)
    }

    /// The number of parties waiting now.
    pub fn n_waiting(&self) -> u32 {
        self.state.state().arrived.load(Ordering::Relaxed)
    }

    /// True if the barrier is broken (until [`Barrier::reset`]).
    pub fn is_broken(&self) -> bool {
        self.state.state().broken.load(Ordering::Relaxed) != 0
    }

    /// Waits until all parties have arrived. Returns this party's arrival index
    /// (0..parties; exactly one party gets `parties - 1`).
    pub fn wait(&self) -> Result<u32, BarrierWaitError> {
        self.wait_until(None)
    }

    /// Like [`Barrier::wait`], but after `timeout` this party breaks the barrier and returns
    /// [`BarrierWaitError::Timeout`].
    pub fn wait_timeout(&self, timeout: Duration) -> Result<u32, BarrierWaitError> {
        self.wait_until(deadline_after(timeout))
    }

    fn wait_until(&self, deadline: Option<Instant>) -> Result<u32, BarrierWaitError> {
        let state = self.state.state();
        let (generation, index) = {
            let book = Bookkeeping::lock(state)?;
            if state.broken.load(Ordering::Relaxed) != 0 {
                return Err(BarrierWaitError::Broken);
            }
            let generation = state.generation.load(Ordering::Relaxed);
            let index = state.arrived.load(Ordering::Relaxed);
            if index + 1 >= state.parties.load(Ordering::Relaxed) {
                // The others stay asleep until the action has run (Python's order).
                if let Err(err) = self.run_action() {
                    state.broken.store(1, Ordering::Relaxed);
                    book.finish_generation(BROKEN);
                    return Err(err);
                }
                book.finish_generation(PASSED);
                return Ok(index);
            }
            state.arrived.store(index + 1, Ordering::Relaxed);
            (generation, index)
        };
        let mut timed_out = false;
        let has_action = state.action_len.load(Ordering::Relaxed) != 0;
        while state.generation.load(Ordering::Acquire) == generation {
            // The action runs under the bookkeeping lock, so a process that dies in it leaves the
            // lock orphaned and nobody to end the generation: with an action, wake now and then
            // to look for that, instead of sleeping through it.
            let check_at = has_action
                .then(|| Instant::now().checked_add(ACTION_DEATH_CHECK))
                .flatten();
            let sleep_until = match (deadline, check_at) {
                (Some(deadline), Some(check_at)) => Some(deadline.min(check_at)),
                (deadline, check_at) => deadline.or(check_at),
            };
            let outcome = futex_wait(&state.generation, generation, sleep_until);
            let out_of_time = deadline.is_some_and(|deadline| Instant::now() >= deadline);
            if outcome == FutexWait::TimedOut && !out_of_time {
                // Dropping the bookkeeping releases the lock again; a dead holder has broken
                // the barrier on the way (which ends this generation).
                if let Some(book) = Bookkeeping::try_lock(state) {
                    drop(book?);
                }
                continue;
            }
            if outcome == FutexWait::TimedOut {
                let book = Bookkeeping::lock(state)?;
                if state.generation.load(Ordering::Acquire) == generation {
                    state.broken.store(1, Ordering::Relaxed);
                    book.finish_generation(BROKEN);
                    timed_out = true;
                }
            }
        }
        match state.outcomes[generation as usize % OUTCOME_SLOTS].load(Ordering::Relaxed) {
            PASSED => Ok(index),
            _ if timed_out => Err(BarrierWaitError::Timeout),
            _ => Err(BarrierWaitError::Broken),
        }
    }

    /// Breaks the barrier: current and future waiters get [`BarrierWaitError::Broken`] until
    /// [`Barrier::reset`].
    pub fn abort(&self) -> Result<(), BarrierWaitError> {
        let state = self.state.state();
        let book = Bookkeeping::lock(state)?;
        state.broken.store(1, Ordering::Relaxed);
        book.finish_generation(BROKEN);
        Ok(())
    }

    /// Returns the barrier to its initial state. Parties waiting now get
    /// [`BarrierWaitError::Broken`].
    pub fn reset(&self) -> Result<(), BarrierWaitError> {
        let state = self.state.state();
        let book = Bookkeeping::lock(state)?;
        if state.arrived.load(Ordering::Relaxed) > 0 {
            book.finish_generation(BROKEN);
        }
        state.broken.store(0, Ordering::Relaxed);
        Ok(())
    }
}

impl fmt::Debug for Barrier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Barrier")
            .field("parties", &self.parties())
            .field("n_waiting", &self.n_waiting())
            .field("broken", &self.is_broken())
            .field("action", &self.action())
            .finish()
    }
}

shared_handle_serde!(Barrier, state);
