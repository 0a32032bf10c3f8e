//! `Lock`: a non-reentrant mutual-exclusion lock shared between processes, robust against the
//! death of its holder (multiprocessing.Lock without the deadlock when a holder is killed).

use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::time::Duration;

use super::lock_error::{Attempt, LockError, LockTimeoutError, TryLockError};
use super::shared_handle_serde;
use crate::platform::{MutexKind, RobustMutex, SharedLayout, SharedState};

#[repr(C)]
pub(crate) struct LockState {
    mutex: RobustMutex,
}

// The state type is declared here, so its layout promise is made here; the trait and the
// segment code that relies on it are in the OS layer (platform/shared_state.rs).
#[allow(unsafe_code)]
// SAFETY: repr(C), one robust mutex (zeroed is a valid default mutex; re-initialised as robust and
// process-shared in `Lock::new` before the segment is shared).
unsafe impl SharedLayout for LockState {
    const KIND: &'static str = "herd.Lock";
}

/// A process-shared lock. If its holder dies (even by SIGKILL), the next acquirer gets the lock
/// at once, wrapped in [`super::OwnerDied`]. Relocking from the holding thread is reported as
/// [`LockError::AlreadyHeld`] instead of deadlocking. Ownership is per thread: the guard must be
/// dropped by the thread that acquired it (it is not `Send`).
#[derive(Clone)]
pub struct Lock {
    state: SharedState<LockState>,
}

impl Lock {
    /// Creates a lock in a new shared memory segment.
    pub fn new() -> io::Result<Self> {
        let state = SharedState::create("lock", "", 0, |state: &mut LockState| {
            state.mutex.init_in_place(MutexKind::ErrorCheck)
        })?;
        Ok(Self { state })
    }

    /// Blocks until the lock is acquired.
    pub fn lock(&self) -> Result<LockGuard<'_>, LockError<LockGuard<'_>>> {
        LockGuard::acquire(&self.state.state().mutex)
    }

    /// Acquires the lock if nobody holds it, without waiting.
    pub fn try_lock(&self) -> Result<LockGuard<'_>, TryLockError<LockGuard<'_>>> {
        LockGuard::try_acquire(&self.state.state().mutex)
    }

    /// Blocks until the lock is acquired or `timeout` elapses.
    pub fn lock_timeout(
        &self,
        timeout: Duration,
    ) -> Result<LockGuard<'_>, LockTimeoutError<LockGuard<'_>>> {
        LockGuard::acquire_timeout(&self.state.state().mutex, timeout)
    }
}

impl fmt::Debug for Lock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lock").field("state", &self.state).finish()
    }
}

shared_handle_serde!(Lock, state);

/// Holds a [`Lock`] or [`super::RLock`]; releases it on drop.
pub struct LockGuard<'a> {
    mutex: &'a RobustMutex,
    inconsistent: bool,
    _not_send: PhantomData<*const ()>,
}

impl<'a> LockGuard<'a> {
    // The three ways to acquire `mutex`, shared by `Lock` and `RLock`, which differ only in the
    // kind of mutex they create.

    /// Blocks until `mutex` is acquired.
    pub(crate) fn acquire(mutex: &'a RobustMutex) -> Result<Self, LockError<Self>> {
        Attempt::from_platform(mutex.lock(), |died| Self::new(mutex, died)).into_lock()
    }

    /// Acquires `mutex` if that needs no waiting.
    pub(crate) fn try_acquire(mutex: &'a RobustMutex) -> Result<Self, TryLockError<Self>> {
        Attempt::from_platform(mutex.try_lock(), |died| Self::new(mutex, died)).into_try_lock()
    }

    /// Blocks until `mutex` is acquired or `timeout` elapses.
    pub(crate) fn acquire_timeout(
        mutex: &'a RobustMutex,
        timeout: Duration,
    ) -> Result<Self, LockTimeoutError<Self>> {
        let result = mutex.lock_timeout(timeout);
        Attempt::from_platform(result, |died| Self::new(mutex, died)).into_lock_timeout()
    }

    fn new(mutex: &'a RobustMutex, previous_owner_died: bool) -> Self {
        Self {
            mutex,
            inconsistent: previous_owner_died,
            _not_send: PhantomData,
        }
    }

    /// True while the lock is marked inconsistent: it was acquired from a holder that died, and
    /// [`LockGuard::mark_consistent`] has not been called yet.
    pub fn is_inconsistent(&self) -> bool {
        self.inconsistent
    }

    /// Declares the protected data consistent again after a holder died, so the lock stays usable
    /// once this guard is dropped. Does nothing if the lock is not marked inconsistent.
    pub fn mark_consistent(&mut self) {
        // Cannot fail: this thread owns a robust mutex that is inconsistent.
        if self.inconsistent && self.mutex.make_consistent().is_ok() {
            self.inconsistent = false;
        }
    }
}

impl Drop for LockGuard<'_> {
    fn drop(&mut self) {
        // Cannot fail: the guard exists only while this thread owns the mutex.
        let _ = self.mutex.unlock();
    }
}

impl fmt::Debug for LockGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockGuard")
            .field("inconsistent", &self.inconsistent)
            .finish()
    }
}
