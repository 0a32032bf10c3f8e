//! `SemaphoreProxy`: a counting semaphore on the manager. Unlike the locks it has no owner (any
//! process may release), so a process that dies after acquiring does not give its count back.

use std::marker::PhantomData;
use std::time::Duration;

use super::core::{proxy_impls, ProxyCore};
use super::lock::acquire;
use crate::manager::error::ManagerError;
use crate::manager::protocol::{ObjectKind, Op, Wait};

/// A counting semaphore owned by the manager.
pub struct SemaphoreProxy {
    core: ProxyCore,
    _types: PhantomData<()>,
}

proxy_impls!(SemaphoreProxy[], ObjectKind::Semaphore);

impl SemaphoreProxy {
    /// Blocks until the count is positive, then decrements it.
    pub fn acquire(&self) -> Result<(), ManagerError> {
        acquire(&self.core, Wait::Forever).map(drop)
    }

    /// Decrements the count if it is positive now; returns whether it did.
    pub fn try_acquire(&self) -> Result<bool, ManagerError> {
        acquire(&self.core, Wait::No)
    }

    /// Waits at most `timeout` for a positive count; returns whether it decremented it.
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<bool, ManagerError> {
        acquire(&self.core, Wait::Timeout(timeout))
    }

    /// Increments the count, waking one waiter.
    pub fn release(&self) -> Result<(), ManagerError> {
        self.core.done(Op::Release)
    }

    /// The current count.
    pub fn value(&self) -> Result<u64, ManagerError> {
        Ok(u64::try_from(self.core.int(Op::SemaphoreValue)?).unwrap_or(0))
    }
}
