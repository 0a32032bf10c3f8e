//! Outcomes of acquiring a robust lock, modelled on std's poisoning: when the previous holder
//! died while holding the lock, the acquirer still gets the guard, wrapped in [`OwnerDied`], and
//! decides whether the protected data is consistent.

use std::fmt;
use std::io;

use crate::platform::{Acquired, MutexError};

/// The lock was acquired, but its previous holder died while holding it (e.g. SIGKILL), so the
/// data it protects may be half-updated. The guard is inside: inspect or repair the data, then
/// call the guard's `mark_consistent()`. Releasing the guard without doing so makes the lock
/// permanently [`LockError::Unrecoverable`] for every process (POSIX robust-mutex semantics).
pub struct OwnerDied<G> {
    guard: G,
}

impl<G> OwnerDied<G> {
    pub(crate) fn new(guard: G) -> Self {
        Self { guard }
    }

    /// The guard: the caller holds the lock.
    pub fn into_inner(self) -> G {
        self.guard
    }

    /// The guard, by reference.
    pub fn get_ref(&self) -> &G {
        &self.guard
    }

    /// The guard, mutably (e.g. to call `mark_consistent`).
    pub fn get_mut(&mut self) -> &mut G {
        &mut self.guard
    }
}

impl<G> fmt::Debug for OwnerDied<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OwnerDied").finish_non_exhaustive()
    }
}

impl<G> fmt::Display for OwnerDied<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the previous holder of the lock died while holding it")
    }
}

impl<G> std::error::Error for OwnerDied<G> {}

const UNRECOVERABLE: &str = "the lock is unrecoverable: a holder died and the next holder released it without marking it consistent";
const ALREADY_HELD: &str = "the calling thread already holds this lock";

/// Why `lock()` did not return a clean guard.
#[derive(Debug, thiserror::Error)]
pub enum LockError<G> {
    /// Acquired, but the previous holder died holding it; the guard is inside.
    #[error(transparent)]
    OwnerDied(OwnerDied<G>),
    /// A holder died earlier and its successor released the lock without marking it consistent.
    #[error("{UNRECOVERABLE}")]
    Unrecoverable,
    /// The calling thread holds this (non-reentrant) lock already; waiting would deadlock.
    #[error("{ALREADY_HELD}")]
    AlreadyHeld,
    /// The operating system reported another error.
    #[error("lock failed: {0}")]
    Os(#[source] io::Error),
}

/// Why `try_lock()` did not return a clean guard.
#[derive(Debug, thiserror::Error)]
pub enum TryLockError<G> {
    /// Another thread or process holds the lock.
    #[error("the lock is held by another thread or process")]
    WouldBlock,
    /// Acquired, but the previous holder died holding it; the guard is inside.
    #[error(transparent)]
    OwnerDied(OwnerDied<G>),
    /// See [`LockError::Unrecoverable`].
    #[error("{UNRECOVERABLE}")]
    Unrecoverable,
    /// See [`LockError::AlreadyHeld`].
    #[error("{ALREADY_HELD}")]
    AlreadyHeld,
    /// The operating system reported another error.
    #[error("try_lock failed: {0}")]
    Os(#[source] io::Error),
}

/// Why `lock_timeout()` did not return a clean guard.
#[derive(Debug, thiserror::Error)]
pub enum LockTimeoutError<G> {
    /// The timeout elapsed while another thread or process held the lock.
    #[error("timed out waiting for the lock")]
    Timeout,
    /// Acquired, but the previous holder died holding it; the guard is inside.
    #[error(transparent)]
    OwnerDied(OwnerDied<G>),
    /// See [`LockError::Unrecoverable`].
    #[error("{UNRECOVERABLE}")]
    Unrecoverable,
    /// See [`LockError::AlreadyHeld`].
    #[error("{ALREADY_HELD}")]
    AlreadyHeld,
    /// The operating system reported another error.
    #[error("lock_timeout failed: {0}")]
    Os(#[source] io::Error),
}

/// A lock attempt's outcome, before it is shaped into one of the public per-operation errors.
pub(crate) enum Attempt<G> {
    Clean(G),
    OwnerDied(G),
    Busy,
    Unrecoverable,
    AlreadyHeld,
    Os(io::Error),
}

impl<G> Attempt<G> {
    /// Classifies a platform lock result; `guard(owner_died)` builds the guard on success.
    pub(crate) fn from_platform(
        result: Result<Acquired, MutexError>,
        guard: impl FnOnce(bool) -> G,
    ) -> Self {
        match result {
            Ok(Acquired::Clean) => Self::Clean(guard(false)),
            Ok(Acquired::OwnerDied) => Self::OwnerDied(guard(true)),
            Err(MutexError::WouldBlock | MutexError::TimedOut) => Self::Busy,
            Err(MutexError::NotRecoverable) => Self::Unrecoverable,
            Err(MutexError::Deadlock) => Self::AlreadyHeld,
            Err(MutexError::Os(err)) => Self::Os(err),
        }
    }

    pub(crate) fn into_lock(self) -> Result<G, LockError<G>> {
        match self {
            Self::Clean(guard) => Ok(guard),
            Self::OwnerDied(guard) => Err(LockError::OwnerDied(OwnerDied::new(guard))),
            // A blocking lock only stops early on errors; treat a spurious "busy" as an OS error.
            Self::Busy => Err(LockError::Os(io::Error::from(io::ErrorKind::WouldBlock))),
            Self::Unrecoverable => Err(LockError::Unrecoverable),
            Self::AlreadyHeld => Err(LockError::AlreadyHeld),
            Self::Os(err) => Err(LockError::Os(err)),
        }
    }

    pub(crate) fn into_try_lock(self) -> Result<G, TryLockError<G>> {
        match self {
            Self::Clean(guard) => Ok(guard),
            Self::OwnerDied(guard) => Err(TryLockError::OwnerDied(OwnerDied::new(guard))),
            Self::Busy => Err(TryLockError::WouldBlock),
            Self::Unrecoverable => Err(TryLockError::Unrecoverable),
            Self::AlreadyHeld => Err(TryLockError::AlreadyHeld),
            Self::Os(err) => Err(TryLockError::Os(err)),
        }
    }

    pub(crate) fn into_lock_timeout(self) -> Result<G, LockTimeoutError<G>> {
        match self {
            Self::Clean(guard) => Ok(guard),
            Self::OwnerDied(guard) => Err(LockTimeoutError::OwnerDied(OwnerDied::new(guard))),
            Self::Busy => Err(LockTimeoutError::Timeout),
            Self::Unrecoverable => Err(LockTimeoutError::Unrecoverable),
            Self::AlreadyHeld => Err(LockTimeoutError::AlreadyHeld),
            Self::Os(err) => Err(LockTimeoutError::Os(err)),
        }
    }
}
