//! `LockProxy` and `RLockProxy`: mutual exclusion owned by a thread, as `threading` locks are.
//! The server knows which connection (one per thread and manager) holds each lock, so a thread
//! that exits, or a process that dies (even by SIGKILL), holding one has it released when its
//! connection closes.

use std::marker::PhantomData;
use std::time::Duration;

use super::core::{proxy_impls, ProxyCore};
use crate::manager::error::ManagerError;
use crate::manager::protocol::{ObjectKind, Op, Wait};

/// A non-reentrant lock on the manager. Acquiring it twice from the same thread is an error
/// rather than a deadlock.
pub struct LockProxy {
    core: ProxyCore,
    _types: PhantomData<()>,
}

proxy_impls!(LockProxy[], ObjectKind::Lock);

/// A reentrant lock on the manager: the holder may acquire it again, and must release it as
/// many times.
pub struct RLockProxy {
    core: ProxyCore,
    _types: PhantomData<()>,
}

proxy_impls!(RLockProxy[], ObjectKind::RLock);

/// Holds a manager lock until dropped (or [`LockProxyGuard::unlock`], which reports errors).
#[derive(Debug)]
#[must_use = "the lock is released when the guard is dropped"]
pub struct LockProxyGuard<'a> {
    core: &'a ProxyCore,
    held: bool,
}

impl LockProxyGuard<'_> {
    /// Releases the lock now, reporting a failure that `Drop` would have to ignore.
    pub fn unlock(mut self) -> Result<(), ManagerError> {
        self.held = false;
        self.core.done(Op::Release)
    }
}

impl Drop for LockProxyGuard<'_> {
    fn drop(&mut self) {
        if self.held {
            // If the server is gone the lock is gone with it; nothing is left to release.
            let _ = self.core.done(Op::Release);
        }
    }
}

/// The acquire/release family shared by every lock-like proxy.
pub(crate) fn acquire(core: &ProxyCore, wait: Wait) -> Result<bool, ManagerError> {
    core.boolean(Op::Acquire(wait), wait)
}

pub(crate) fn guard(core: &ProxyCore) -> Result<LockProxyGuard<'_>, ManagerError> {
    acquire(core, Wait::Forever)?;
    Ok(LockProxyGuard { core, held: true })
}

macro_rules! lock_methods {
    ($name:ident) => {
        impl $name {
            /// Blocks until this thread holds the lock.
            pub fn acquire(&self) -> Result<(), ManagerError> {
                acquire(&self.core, Wait::Forever).map(drop)
            }

            /// Takes the lock if it is free now; returns whether it did.
            pub fn try_acquire(&self) -> Result<bool, ManagerError> {
                acquire(&self.core, Wait::No)
            }

            /// Waits at most `timeout` for the lock; returns whether it got it.
            pub fn acquire_timeout(&self, timeout: Duration) -> Result<bool, ManagerError> {
                acquire(&self.core, Wait::Timeout(timeout))
            }

            /// Releases the lock; releasing a lock this thread does not hold is an error.
            pub fn release(&self) -> Result<(), ManagerError> {
                self.core.done(Op::Release)
            }

            /// Acquires the lock and returns a guard that releases it.
            pub fn lock(&self) -> Result<LockProxyGuard<'_>, ManagerError> {
                guard(&self.core)
            }
        }
    };
}

lock_methods!(LockProxy);
lock_methods!(RLockProxy);
