//! `Condition`: a condition variable shared between processes, with its own robust lock or over
//! an existing [`Lock`] or [`RLock`] (so several conditions can share one lock).
//!
//! Waiting is a futex on a sequence number: a waiter reads the sequence while holding the lock,
//! releases the lock and sleeps until the sequence moves; `notify` bumps it and wakes sleepers.
//! No process-private state is involved (unlike a pthread condvar), so a process dying while
//! waiting or notifying cannot wedge the others.

use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::lock::MutexRef;
use super::lock_error::{Attempt, LockError, LockTimeoutError};
use super::shared_handle_serde;
use super::timeout::deadline_after;
use super::{Lock, RLock};
use crate::platform::{
    futex_wait, futex_wake, FutexWait, MutexError, MutexKind, RobustMutex, SharedLayout,
    SharedState,
};

#[repr(C)]
pub(crate) struct ConditionState {
    /// The condition's own lock; unused by a condition built over a `Lock` or an `RLock`.
    mutex: RobustMutex,
    sequence: AtomicU32,
    waiters: AtomicU32,
}

// The state type is declared here, so its layout promise is made here; the trait and the
// segment code that relies on it are in the OS layer (platform/shared_state.rs).
#[allow(unsafe_code)]
// SAFETY: repr(C): a robust mutex (initialised in `Condition::new` before sharing) and atomics.
unsafe impl SharedLayout for ConditionState {
    const KIND: &'static str = "herd.Condition";
}

/// A process-shared condition variable (multiprocessing.Condition) with its own robust lock, or
/// over a [`Lock`] or an [`RLock`] given to [`Condition::with_lock`] (Python's `Condition(lock)`).
/// Lock it with [`Condition::lock`], then wait on the guard; wake-ups may be spurious, so wait
/// in a loop or with [`ConditionGuard::wait_for`].
#[derive(Clone, Serialize, Deserialize)]
pub struct Condition {
    segment: ConditionSegment,
    lock: ConditionLock,
}

/// The segment with the condition's sequence, waiters and own lock; travels as its fd.
#[derive(Clone)]
struct ConditionSegment {
    state: SharedState<ConditionState>,
}

shared_handle_serde!(ConditionSegment, state);

/// Which lock a condition waits under; a shared one travels along with the condition.
#[derive(Clone, Debug, Serialize, Deserialize)]
enum ConditionLock {
    Own,
    Lock(Lock),
    RLock(RLock),
}

/// What [`Condition::with_lock`] accepts: a [`Lock`] or an [`RLock`] (or a clone of one).
pub trait ConditionLockKind: sealed::Sealed {
    #[doc(hidden)]
    fn into_condition_lock(self) -> ConditionLockHandle;
}

/// The lock handed to [`Condition::with_lock`], as the condition keeps it. Not an API.
#[doc(hidden)]
#[derive(Debug)]
pub struct ConditionLockHandle(ConditionLock);

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::Lock {}
    impl Sealed for super::RLock {}
}

impl ConditionLockKind for Lock {
    fn into_condition_lock(self) -> ConditionLockHandle {
        ConditionLockHandle(ConditionLock::Lock(self))
    }
}

impl ConditionLockKind for RLock {
    fn into_condition_lock(self) -> ConditionLockHandle {
        ConditionLockHandle(ConditionLock::RLock(self))
    }
}

/// Why a wait on a [`ConditionGuard`] returned without a notification.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConditionWaitError {
    /// The timeout elapsed; the guard holds the lock again.
    #[error("timed out waiting on the condition")]
    Timeout,
    /// While re-acquiring the lock, it turned out its previous holder died holding it. The guard
    /// holds the lock; check the shared data and call `mark_consistent()` before waiting again.
    #[error("the previous holder of the condition's lock died while holding it")]
    OwnerDied,
    /// The lock could not be re-acquired (unrecoverable after an owner death, or an OS error);
    /// the guard no longer holds it.
    #[error("the condition's lock could not be re-acquired: {0}")]
    LockLost(#[source] io::Error),
}

impl ConditionWaitError {
    /// Whether the timeout elapsed (the guard holds the lock again).
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Timeout)
    }

    /// Whether the lock's previous holder died (the guard holds the lock).
    pub fn is_owner_died(&self) -> bool {
        matches!(self, Self::OwnerDied)
    }
}

impl Condition {
    /// Creates a condition variable and its lock in a new shared memory segment.
    pub fn new() -> io::Result<Self> {
        Self::create(ConditionLock::Own)
    }

    /// Creates a condition variable that waits under `lock`, a [`Lock`] or an [`RLock`] (Python's
    /// `Condition(lock)`): several conditions built over one lock share it, e.g. `not_empty` and
    /// `not_full` over the lock that guards a buffer. The condition keeps a clone of the handle
    /// and carries it along wherever the condition goes (a fork child, a spawn argument, a Pipe
    /// message).
    ///
    /// [`Condition::lock`] takes `lock`, and a wait releases it while asleep. Over an `RLock`, a
    /// wait releases it at every level the waiting thread holds, as Python's does, and takes them
    /// all back before it returns. Over a `Lock`, taking it through `lock.lock()` and then through
    /// the condition in the same thread is [`LockError::AlreadyHeld`].
    pub fn with_lock(lock: impl ConditionLockKind) -> io::Result<Self> {
        Self::create(lock.into_condition_lock().0)
    }

    fn create(lock: ConditionLock) -> io::Result<Self> {
        let state = SharedState::create("condition", "", 0, |state: &mut ConditionState| {
            state.mutex.init_in_place(MutexKind::ErrorCheck)
        })?;
        Ok(Self {
            segment: ConditionSegment { state },
            lock,
        })
    }

    fn state(&self) -> &ConditionState {
        self.segment.state.state()
    }

    /// The lock the condition waits under.
    fn mutex(&self) -> MutexRef<'_> {
        match &self.lock {
            ConditionLock::Own => MutexRef::plain(&self.state().mutex),
            ConditionLock::Lock(lock) => lock.mutex(),
            ConditionLock::RLock(lock) => lock.mutex(),
        }
    }

    fn guard(&self, previous_owner_died: bool) -> ConditionGuard<'_> {
        ConditionGuard {
            condition: self,
            inconsistent: previous_owner_died,
            held: true,
            _not_send: PhantomData,
        }
    }

    /// Acquires the condition's lock.
    pub fn lock(&self) -> Result<ConditionGuard<'_>, LockError<ConditionGuard<'_>>> {
        let result = self.mutex().lock();
        Attempt::from_platform(result, |died| self.guard(died)).into_lock()
    }

    /// Acquires the condition's lock, waiting at most `timeout` (`Duration::MAX`: no deadline).
    pub fn lock_timeout(
        &self,
        timeout: Duration,
    ) -> Result<ConditionGuard<'_>, LockTimeoutError<ConditionGuard<'_>>> {
        let result = self.mutex().lock_timeout(timeout);
        Attempt::from_platform(result, |died| self.guard(died)).into_lock_timeout()
    }

    /// Wakes one waiter (if any).
    pub fn notify_one(&self) {
        self.notify(1);
    }

    /// Wakes up to `count` waiters.
    pub fn notify(&self, count: u32) {
        let state = self.state();
        // SeqCst pairs with the waiter: it registers, reads `sequence`, then sleeps on it; either
        // we see it registered or its futex sees the new sequence and does not sleep.
        state.sequence.fetch_add(1, Ordering::SeqCst);
        if state.waiters.load(Ordering::SeqCst) > 0 {
            futex_wake(&state.sequence, count);
        }
    }

    /// Wakes every waiter.
    pub fn notify_all(&self) {
        self.notify(u32::MAX);
    }
}

impl fmt::Debug for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lock = match &self.lock {
            ConditionLock::Own => "own",
            ConditionLock::Lock(_) => "Lock",
            ConditionLock::RLock(_) => "RLock",
        };
        f.debug_struct("Condition")
            .field("state", &self.segment.state)
            .field("lock", &lock)
            .finish()
    }
}

/// Holds a [`Condition`]'s lock; releases it on drop. Waiting releases it while asleep.
pub struct ConditionGuard<'a> {
    condition: &'a Condition,
    inconsistent: bool,
    held: bool,
    _not_send: PhantomData<*const ()>,
}

impl ConditionGuard<'_> {
    fn mutex(&self) -> MutexRef<'_> {
        self.condition.mutex()
    }

    /// True while the lock is marked inconsistent (acquired from a holder that died).
    pub fn is_inconsistent(&self) -> bool {
        self.inconsistent
    }

    /// Declares the protected data consistent again after a holder died.
    pub fn mark_consistent(&mut self) {
        // Cannot fail: this thread owns a robust mutex that is inconsistent.
        if self.held && self.inconsistent && self.mutex().make_consistent().is_ok() {
            self.inconsistent = false;
        }
    }

    /// Releases the lock, sleeps until notified, and re-acquires the lock.
    pub fn wait(&mut self) -> Result<(), ConditionWaitError> {
        self.wait_until(None)
    }

    /// Like [`ConditionGuard::wait`], giving up after `timeout` (the lock is re-acquired either
    /// way).
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<(), ConditionWaitError> {
        self.wait_until(deadline_after(timeout))
    }

    /// Waits until `predicate` returns true (checked under the lock, first before waiting), at
    /// most `timeout`. Returns [`ConditionWaitError::Timeout`] if it is still false by then.
    pub fn wait_for(
        &mut self,
        mut predicate: impl FnMut() -> bool,
        timeout: Duration,
    ) -> Result<(), ConditionWaitError> {
        let deadline = deadline_after(timeout);
        while !predicate() {
            match self.wait_until(deadline) {
                Err(ConditionWaitError::Timeout) => {
                    return if predicate() {
                        Ok(())
                    } else {
                        Err(ConditionWaitError::Timeout)
                    };
                }
                other => other?,
            }
        }
        Ok(())
    }

    fn wait_until(&mut self, deadline: Option<Instant>) -> Result<(), ConditionWaitError> {
        if !self.held {
            return Err(ConditionWaitError::LockLost(io::Error::other(
                "the guard lost its lock in an earlier wait",
            )));
        }
        if self.inconsistent {
            // Unlocking now would make the lock unrecoverable for everybody.
            return Err(ConditionWaitError::OwnerDied);
        }
        let state = self.condition.state();
        let mutex = self.mutex();
        state.waiters.fetch_add(1, Ordering::SeqCst);
        let sequence = state.sequence.load(Ordering::SeqCst);
        // Cannot fail: this thread owns the mutex (the guard holds it). Every level of an RLock
        // goes, or a notifier could never take it.
        let levels = mutex.unlock_all().unwrap_or(1);
        let outcome = futex_wait(&state.sequence, sequence, deadline);
        state.waiters.fetch_sub(1, Ordering::SeqCst);
        match mutex.relock(levels) {
            Ok(acquired) => {
                if acquired == crate::platform::Acquired::OwnerDied {
                    self.inconsistent = true;
                    return Err(ConditionWaitError::OwnerDied);
                }
            }
            Err(err) => {
                self.held = false;
                let err = match err {
                    MutexError::Os(err) => err,
                    other => io::Error::other(other.to_string()),
                };
                return Err(ConditionWaitError::LockLost(err));
            }
        }
        if outcome == FutexWait::TimedOut {
            return Err(ConditionWaitError::Timeout);
        }
        Ok(())
    }
}

impl Drop for ConditionGuard<'_> {
    fn drop(&mut self) {
        if self.held {
            // Cannot fail: this thread owns the mutex.
            let _ = self.mutex().unlock();
        }
    }
}

impl fmt::Debug for ConditionGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConditionGuard")
            .field("inconsistent", &self.inconsistent)
            .field("held", &self.held)
            .finish()
    }
}
