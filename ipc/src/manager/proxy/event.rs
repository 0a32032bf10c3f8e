//! `EventProxy`: a flag on the manager that processes can wait for.

use std::marker::PhantomData;
use std::time::Duration;

use super::core::{proxy_impls, ProxyCore};
use crate::manager::error::ManagerError;
use crate::manager::protocol::{ObjectKind, Op, Wait};

/// An event owned by the manager.
pub struct EventProxy {
    core: ProxyCore,
    _types: PhantomData<()>,
}

proxy_impls!(EventProxy[], ObjectKind::Event);

impl EventProxy {
    /// Sets the flag, waking every waiter.
    pub fn set(&self) -> Result<(), ManagerError> {
        self.core.done(Op::Set)
    }

    pub fn clear(&self) -> Result<(), ManagerError> {
        self.core.done(Op::Clear)
    }

    pub fn is_set(&self) -> Result<bool, ManagerError> {
        self.core.boolean(Op::IsSet, Wait::No)
    }

    /// Blocks until the flag is set.
    pub fn wait(&self) -> Result<(), ManagerError> {
        self.core
            .boolean(Op::WaitEvent(Wait::Forever), Wait::Forever)
            .map(drop)
    }

    /// Waits at most `timeout`; returns whether the flag is set.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool, ManagerError> {
        let wait = Wait::Timeout(timeout);
        self.core.boolean(Op::WaitEvent(wait), wait)
    }
}
