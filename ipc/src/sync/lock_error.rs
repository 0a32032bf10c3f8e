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
        f.write_str(OWNER_DIED)
    }
}

impl<G> std::error::Error for OwnerDied<G> {}

const UNRECOVERABLE: &str = "the lock is unrecoverable: a holder died and the next holder released it without marking it consistent";
const ALREADY_HELD: &str = "the calling thread already holds this lock";
const OWNER_DIED: &str = "the previous holder of the lock died while holding it";

/// Why `lock()` did not return a clean guard.
///
/// On [`OwnerDied`](LockError::OwnerDied) the lock *was* acquired and the guard is inside, so the
/// error borrows the lock and is not `'static`. That is why it is not itself a
/// [`std::error::Error`]: instead `?` turns it into a `Box<dyn Error>` (or
/// `Box<dyn Error + Send + Sync>`) through a [`LockFailure`], dropping the guard. Dropping an
/// owner-died guard without [`mark_consistent`](super::LockGuard::mark_consistent) leaves the
/// lock unrecoverable, so match `OwnerDied` first where the data can be checked or repaired.
///
/// ```
/// fn locked_work(lock: &herd_ipc::Lock) -> Result<u32, Box<dyn std::error::Error>> {
///     let _guard = lock.lock()?;
///     Ok(7)
/// }
///
/// let lock = herd_ipc::Lock::new().unwrap();
/// assert_eq!(locked_work(&lock).unwrap(), 7);
/// ```
#[non_exhaustive]
pub enum LockError<G> {
    /// Acquired, but the previous holder died holding it; the guard is inside.
    OwnerDied(OwnerDied<G>),
    /// A holder died earlier and its successor released the lock without marking it consistent.
    Unrecoverable,
    /// The calling thread holds this (non-reentrant) lock already; waiting would deadlock.
    AlreadyHeld,
    /// The operating system reported another error.
    Os(io::Error),
}

/// Why `try_lock()` did not return a clean guard. See [`LockError`] for `?` and the guard.
#[non_exhaustive]
pub enum TryLockError<G> {
    /// Another thread or process holds the lock.
    WouldBlock,
    /// Acquired, but the previous holder died holding it; the guard is inside.
    OwnerDied(OwnerDied<G>),
    /// See [`LockError::Unrecoverable`].
    Unrecoverable,
    /// See [`LockError::AlreadyHeld`].
    AlreadyHeld,
    /// The operating system reported another error.
    Os(io::Error),
}

/// Why `lock_timeout()` did not return a clean guard. See [`LockError`] for `?` and the guard.
#[non_exhaustive]
pub enum LockTimeoutError<G> {
    /// The timeout elapsed while another thread or process held the lock.
    Timeout,
    /// Acquired, but the previous holder died holding it; the guard is inside.
    OwnerDied(OwnerDied<G>),
    /// See [`LockError::Unrecoverable`].
    Unrecoverable,
    /// See [`LockError::AlreadyHeld`].
    AlreadyHeld,
    /// The operating system reported another error.
    Os(io::Error),
}

/// A lock error without its guard: what `?` makes of a [`LockError`], [`TryLockError`] or
/// [`LockTimeoutError`] on its way into a `Box<dyn Error>`, and what
/// `.map_err(LockFailure::from)` gives for error types that need `'static + Send + Sync` (such as
/// `anyhow::Error`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LockFailure {
    /// The previous holder died holding the lock; the guard was dropped without marking the lock
    /// consistent, so the lock is now unrecoverable.
    #[error("{OWNER_DIED} (the guard was dropped without marking it consistent)")]
    OwnerDied,
    /// See [`TryLockError::WouldBlock`].
    #[error("the lock is held by another thread or process")]
    WouldBlock,
    /// See [`LockTimeoutError::Timeout`].
    #[error("timed out waiting for the lock")]
    Timeout,
    /// See [`LockError::Unrecoverable`].
    #[error("{UNRECOVERABLE}")]
    Unrecoverable,
    /// See [`LockError::AlreadyHeld`].
    #[error("{ALREADY_HELD}")]
    AlreadyHeld,
    /// The operating system reported another error.
    #[error("cannot acquire the lock: {0}")]
    Os(#[source] io::Error),
}

impl LockFailure {
    /// Whether the previous holder died holding the lock.
    pub fn is_owner_died(&self) -> bool {
        matches!(self, Self::OwnerDied)
    }

    /// Whether a `try_lock` found the lock held.
    pub fn is_would_block(&self) -> bool {
        matches!(self, Self::WouldBlock)
    }

    /// Whether a `lock_timeout` ran out of time.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Timeout)
    }
}

/// The methods, `Display`, `Debug` and conversions the three lock errors share. `$busy` is the
/// variant for "another holder has it" (`WouldBlock`, `Timeout`), absent for `lock()`.
macro_rules! lock_error_common {
    ($name:ident $(, $busy:ident)?) => {
        impl<G> $name<G> {
            /// The guard, if the lock was acquired after all (its previous owner died).
            pub fn into_inner(self) -> Option<G> {
                match self {
                    Self::OwnerDied(died) => Some(died.into_inner()),
                    _ => None,
                }
            }

            /// Whether the lock was acquired from a holder that died (the guard is inside).
            pub fn is_owner_died(&self) -> bool {
                matches!(self, Self::OwnerDied(_))
            }

            /// The error without its guard (dropping an owner-died guard unrepaired).
            fn into_failure(self) -> LockFailure {
                match self {
                    $(Self::$busy => LockFailure::$busy,)?
                    Self::OwnerDied(_) => LockFailure::OwnerDied,
                    Self::Unrecoverable => LockFailure::Unrecoverable,
                    Self::AlreadyHeld => LockFailure::AlreadyHeld,
                    Self::Os(err) => LockFailure::Os(err),
                }
            }
        }

        impl<G> fmt::Display for $name<G> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self {
                    $(Self::$busy => fmt::Display::fmt(&LockFailure::$busy, f),)?
                    Self::OwnerDied(_) => f.write_str(OWNER_DIED),
                    Self::Unrecoverable => f.write_str(UNRECOVERABLE),
                    Self::AlreadyHeld => f.write_str(ALREADY_HELD),
                    Self::Os(err) => write!(f, "cannot acquire the lock: {err}"),
                }
            }
        }

        impl<G> fmt::Debug for $name<G> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self {
                    $(Self::$busy => f.write_str(stringify!($busy)),)?
                    Self::OwnerDied(died) => f.debug_tuple("OwnerDied").field(died).finish(),
                    Self::Unrecoverable => f.write_str("Unrecoverable"),
                    Self::AlreadyHeld => f.write_str("AlreadyHeld"),
                    Self::Os(err) => f.debug_tuple("Os").field(err).finish(),
                }
            }
        }

        impl<G> From<$name<G>> for LockFailure {
            fn from(error: $name<G>) -> Self {
                error.into_failure()
            }
        }

        impl<'a, G> From<$name<G>> for Box<dyn std::error::Error + 'a> {
            fn from(error: $name<G>) -> Self {
                Box::new(error.into_failure())
            }
        }

        impl<'a, G> From<$name<G>> for Box<dyn std::error::Error + Send + Sync + 'a> {
            fn from(error: $name<G>) -> Self {
                Box::new(error.into_failure())
            }
        }
    };
}

lock_error_common!(LockError);
lock_error_common!(TryLockError, WouldBlock);
lock_error_common!(LockTimeoutError, Timeout);

impl<G> LockError<G> {
    /// Always false: `lock` waits (see [`TryLockError::is_would_block`]).
    pub fn is_would_block(&self) -> bool {
        false
    }

    /// Always false: `lock` has no timeout (see [`LockTimeoutError::is_timeout`]).
    pub fn is_timeout(&self) -> bool {
        false
    }
}

impl<G> TryLockError<G> {
    /// Whether another thread or process holds the lock.
    pub fn is_would_block(&self) -> bool {
        matches!(self, Self::WouldBlock)
    }

    /// Always false: `try_lock` does not wait.
    pub fn is_timeout(&self) -> bool {
        false
    }
}

impl<G> LockTimeoutError<G> {
    /// Always false: `lock_timeout` waits until its timeout.
    pub fn is_would_block(&self) -> bool {
        false
    }

    /// Whether the timeout elapsed while another thread or process held the lock.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Timeout)
    }
}

/// A blocking lock's failure is the same failure for `try_lock` and `lock_timeout`.
macro_rules! from_lock_error {
    ($name:ident) => {
        impl<G> From<LockError<G>> for $name<G> {
            fn from(error: LockError<G>) -> Self {
                match error {
                    LockError::OwnerDied(died) => Self::OwnerDied(died),
                    LockError::Unrecoverable => Self::Unrecoverable,
                    LockError::AlreadyHeld => Self::AlreadyHeld,
                    LockError::Os(err) => Self::Os(err),
                }
            }
        }
    };
}

from_lock_error!(TryLockError);
from_lock_error!(LockTimeoutError);

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

#[cfg(test)]
mod tests {
    use super::*;

    /// Stands in for a guard: records that it was dropped.
    struct Guard<'a>(&'a std::cell::Cell<bool>);

    impl Drop for Guard<'_> {
        fn drop(&mut self) {
            self.0.set(true);
        }
    }

    #[test]
    fn predicates_and_guard() {
        let dropped = std::cell::Cell::new(false);
        let died = LockError::OwnerDied(OwnerDied::new(Guard(&dropped)));
        assert!(died.is_owner_died() && !died.is_timeout() && !died.is_would_block());
        let guard = died.into_inner().expect("the guard comes back");
        assert!(!dropped.get());
        drop(guard);
        assert!(dropped.get());

        let busy: TryLockError<()> = TryLockError::WouldBlock;
        assert!(busy.is_would_block() && !busy.is_owner_died() && busy.into_inner().is_none());
        let timeout: LockTimeoutError<()> = LockTimeoutError::Timeout;
        assert!(timeout.is_timeout() && !timeout.is_would_block());
        let held: LockTimeoutError<()> = LockError::AlreadyHeld.into();
        assert!(matches!(held, LockTimeoutError::AlreadyHeld));
        assert_eq!(held.to_string(), ALREADY_HELD);
    }

    fn question_mark<'a>(
        result: Result<(), LockError<Guard<'a>>>,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        result?;
        Ok(())
    }

    #[test]
    fn question_mark_drops_the_guard_into_an_owned_error() {
        let dropped = std::cell::Cell::new(false);
        let died = LockError::OwnerDied(OwnerDied::new(Guard(&dropped)));
        let boxed = question_mark(Err(died)).unwrap_err();
        assert!(dropped.get(), "the guard was released on the way");
        let failure = boxed.downcast_ref::<LockFailure>().expect("a LockFailure");
        assert!(failure.is_owner_died());
        let failure = LockFailure::from(TryLockError::<()>::WouldBlock);
        assert!(failure.is_would_block());
    }
}
