//! `ConditionProxy`: a condition variable on the manager with its own reentrant lock, as
//! `threading.Condition()`: hold the lock to wait or notify; waiting releases it meanwhile.

use std::marker::PhantomData;
use std::time::Duration;

use super::core::{proxy_impls, ProxyCore};
use super::lock::{acquire, guard, LockProxyGuard};
use crate::manager::error::ManagerError;
use crate::manager::protocol::{ObjectKind, Op, Wait};

/// A condition variable owned by the manager.
pub struct ConditionProxy {
    core: ProxyCore,
    _types: PhantomData<()>,
}

proxy_impls!(ConditionProxy[], ObjectKind::Condition);

impl ConditionProxy {
    /// Blocks until this thread holds the condition's lock (reentrant).
    pub fn acquire(&self) -> Result<(), ManagerError> {
        acquire(&self.core, Wait::Forever).map(drop)
    }

    /// Waits at most `timeout` for the lock; returns whether it got it.
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<bool, ManagerError> {
        acquire(&self.core, Wait::Timeout(timeout))
    }

    pub fn release(&self) -> Result<(), ManagerError> {
        self.core.done(Op::Release)
    }

    /// Acquires the lock and returns a guard that releases it.
    pub fn lock(&self) -> Result<LockProxyGuard<'_>, ManagerError> {
        guard(&self.core)
    }

    /// Releases the lock, sleeps until notified, and takes the lock back. The lock must be held.
    pub fn wait(&self) -> Result<(), ManagerError> {
        let wait = Wait::Forever;
        self.core.boolean(Op::WaitNotified(wait), wait).map(drop)
    }

    /// As [`ConditionProxy::wait`], giving up after `timeout`; returns whether it was notified.
    /// The lock is held again on return either way.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool, ManagerError> {
        let wait = Wait::Timeout(timeout);
        // Reacquiring the lock after the timeout may take longer still.
        self.core.boolean(Op::WaitNotified(wait), Wait::Forever)
    }

    /// Wakes up to `n` waiters. The lock must be held.
    pub fn notify(&self, n: usize) -> Result<(), ManagerError> {
        self.core.done(Op::Notify(n as u64))
    }

    /// Wakes every waiter. The lock must be held.
    pub fn notify_all(&self) -> Result<(), ManagerError> {
        self.core.done(Op::NotifyAll)
    }
}
