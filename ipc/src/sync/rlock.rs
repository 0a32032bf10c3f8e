//! `RLock`: a reentrant process-shared lock. The holding thread may acquire it again; it is
//! released when every guard has been dropped. Robust like [`super::Lock`].

use std::fmt;
use std::io;
use std::sync::atomic::AtomicU32;
use std::time::Duration;

use super::lock::{LockGuard, MutexRef};
use super::lock_error::{LockError, LockTimeoutError, TryLockError};
use super::shared_handle_serde;
use crate::platform::{MutexKind, RobustMutex, SharedLayout, SharedState};

#[repr(C)]
pub(crate) struct RLockState {
    mutex: RobustMutex,
    /// How many levels the holding thread holds (see `MutexRef`).
    depth: AtomicU32,
}

// The state type is declared here, so its layout promise is made here; the trait and the
// segment code that relies on it are in the OS layer (platform/shared_state.rs).
#[allow(unsafe_code)]
// SAFETY: repr(C), one robust mutex (zeroed is a valid default mutex; re-initialised as robust,
// recursive and process-shared in `RLock::new` before the segment is shared) and an atomic.
unsafe impl SharedLayout for RLockState {
    const KIND: &'static str = "herd.RLock";
}

/// A reentrant process-shared lock (multiprocessing.RLock). Owned by a thread: the same thread
/// may lock it again and gets another guard; other threads and processes wait until all of the
/// owner's guards are dropped. If the owner dies, the next acquirer gets
/// [`super::OwnerDied`].
#[derive(Clone)]
pub struct RLock {
    state: SharedState<RLockState>,
}

impl RLock {
    /// Creates a reentrant lock in a new shared memory segment.
    pub fn new() -> io::Result<Self> {
        let state = SharedState::create("rlock", "", 0, |state: &mut RLockState| {
            state.mutex.init_in_place(MutexKind::Recursive)
        })?;
        Ok(Self { state })
    }

    /// Blocks until the lock is acquired (at once if this thread already holds it).
    pub fn lock(&self) -> Result<LockGuard<'_>, LockError<LockGuard<'_>>> {
        LockGuard::acquire(self.mutex())
    }

    /// Acquires the lock if it is free or already held by this thread, without waiting.
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

    /// The mutex and its depth, for a [`Condition`](super::Condition) built over this lock.
    pub(crate) fn mutex(&self) -> MutexRef<'_> {
        let state = self.state.state();
        MutexRef::reentrant(&state.mutex, &state.depth)
    }
}

impl fmt::Debug for RLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RLock").field("state", &self.state).finish()
    }
}

shared_handle_serde!(RLock, state);
