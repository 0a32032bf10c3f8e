//! `Lock`: a non-reentrant mutual-exclusion lock shared between processes, robust against the
//! death of its holder (multiprocessing.Lock without the deadlock when a holder is killed).

use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use super::lock_error::{Attempt, LockError, LockTimeoutError, TryLockError};
use super::shared_handle_serde;
use crate::platform::{Acquired, MutexError, MutexKind, RobustMutex, SharedLayout, SharedState};

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
        LockGuard::acquire(self.mutex())
    }

    /// Acquires the lock if nobody holds it, without waiting.
    pub fn try_lock(&self) -> Result<LockGuard<'_>, TryLockError<LockGuard<'_>>> {
        LockGuard::try_acquire(self.mutex())
    }

    /// Blocks until the lock is acquired or `timeout` elapses (`Duration::MAX`: no deadline).
    pub fn lock_timeout(
        &self,
        timeout: Duration,
    ) -> Result<LockGuard<'_>, LockTimeoutError<LockGuard<'_>>> {
        LockGuard::acquire_timeout(self.mutex(), timeout)
    }

    /// The mutex, for a [`Condition`](super::Condition) built over this lock.
    pub(crate) fn mutex(&self) -> MutexRef<'_> {
        MutexRef::plain(&self.state.state().mutex)
    }
}

/// A robust mutex as the lock handles use it: a `Lock`'s or a `Condition`'s own, or an `RLock`'s
/// with the holding thread's recursion depth kept next to it. The depth is what lets a condition
/// wait release an `RLock` at every level the thread holds it, not just the one its guard took
/// (which would leave it held, and the notifier locked out). Only the holding thread changes the
/// depth, while it holds the mutex.
#[derive(Clone, Copy)]
pub(crate) struct MutexRef<'a> {
    mutex: &'a RobustMutex,
    depth: Option<&'a AtomicU32>,
}

impl<'a> MutexRef<'a> {
    pub(crate) fn plain(mutex: &'a RobustMutex) -> Self {
        Self { mutex, depth: None }
    }

    pub(crate) fn reentrant(mutex: &'a RobustMutex, depth: &'a AtomicU32) -> Self {
        Self {
            mutex,
            depth: Some(depth),
        }
    }

    fn note(&self, result: Result<Acquired, MutexError>) -> Result<Acquired, MutexError> {
        if let (Some(depth), Ok(acquired)) = (self.depth, &result) {
            match acquired {
                Acquired::Clean => depth.fetch_add(1, Ordering::Relaxed),
                // The dead holder's levels died with it: this thread holds one.
                Acquired::OwnerDied => depth.swap(1, Ordering::Relaxed),
            };
        }
        result
    }

    pub(crate) fn lock(&self) -> Result<Acquired, MutexError> {
        self.note(self.mutex.lock())
    }

    pub(crate) fn try_lock(&self) -> Result<Acquired, MutexError> {
        self.note(self.mutex.try_lock())
    }

    pub(crate) fn lock_timeout(&self, timeout: Duration) -> Result<Acquired, MutexError> {
        self.note(self.mutex.lock_timeout(timeout))
    }

    pub(crate) fn make_consistent(&self) -> io::Result<()> {
        self.mutex.make_consistent()
    }

    /// Releases one level (the only one, for a non-reentrant lock).
    pub(crate) fn unlock(&self) -> io::Result<()> {
        if let Some(depth) = self.depth {
            depth.fetch_sub(1, Ordering::Relaxed);
        }
        self.mutex.unlock()
    }

    /// Releases every level the calling thread holds (it holds at least one); returns how many,
    /// for [`relock`](Self::relock).
    pub(crate) fn unlock_all(&self) -> io::Result<u32> {
        let levels = self
            .depth
            .map_or(1, |depth| depth.swap(0, Ordering::Relaxed))
            .max(1);
        for _ in 0..levels {
            self.mutex.unlock()?;
        }
        Ok(levels)
    }

    /// Acquires the mutex again at the `levels` levels [`unlock_all`](Self::unlock_all) released.
    /// The first acquisition waits; the others are re-entries that do not.
    pub(crate) fn relock(&self, levels: u32) -> Result<Acquired, MutexError> {
        let acquired = self.mutex.lock()?;
        for _ in 1..levels {
            // A re-entry by the owner: the owner-died news, if any, came with the first.
            let _ = self.mutex.lock()?;
        }
        if let Some(depth) = self.depth {
            depth.store(levels, Ordering::Relaxed);
        }
        Ok(acquired)
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
    mutex: MutexRef<'a>,
    inconsistent: bool,
    _not_send: PhantomData<*const ()>,
}

impl<'a> LockGuard<'a> {
    // The three ways to acquire `mutex`, shared by `Lock` and `RLock`, which differ only in the
    // kind of mutex they create.

    /// Blocks until `mutex` is acquired.
    pub(crate) fn acquire(mutex: MutexRef<'a>) -> Result<Self, LockError<Self>> {
        Attempt::from_platform(mutex.lock(), |died| Self::new(mutex, died)).into_lock()
    }

    /// Acquires `mutex` if that needs no waiting.
    pub(crate) fn try_acquire(mutex: MutexRef<'a>) -> Result<Self, TryLockError<Self>> {
        Attempt::from_platform(mutex.try_lock(), |died| Self::new(mutex, died)).into_try_lock()
    }

    /// Blocks until `mutex` is acquired or `timeout` elapses.
    pub(crate) fn acquire_timeout(
        mutex: MutexRef<'a>,
        timeout: Duration,
    ) -> Result<Self, LockTimeoutError<Self>> {
        let result = mutex.lock_timeout(timeout);
        Attempt::from_platform(result, |died| Self::new(mutex, died)).into_lock_timeout()
    }

    fn new(mutex: MutexRef<'a>, previous_owner_died: bool) -> Self {
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
