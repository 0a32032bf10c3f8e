//! `QueueProxy`: a FIFO queue on the manager, optionally bounded, with the blocking, non-blocking
//! and timed variants of put and get.

use std::marker::PhantomData;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::core::{proxy_impls, ProxyCore};
use crate::manager::error::{
    GetTimeoutError, ManagerError, PutTimeoutError, TryGetError, TryPutError,
};
use crate::manager::protocol::{ObjectKind, Op, Wait};

/// A queue owned by the manager. Items are serialised on `put`, so the caller keeps its value.
pub struct QueueProxy<T> {
    core: ProxyCore,
    _types: PhantomData<fn() -> T>,
}

proxy_impls!(QueueProxy[T], ObjectKind::Queue);

impl<T: Serialize + DeserializeOwned> QueueProxy<T> {
    fn put_waiting(&self, item: &T, wait: Wait) -> Result<bool, ManagerError> {
        let op = Op::Put {
            item: self.core.encode(item)?,
            wait,
        };
        self.core.boolean(op, wait)
    }

    fn get_waiting(&self, wait: Wait) -> Result<Option<T>, ManagerError> {
        self.core.value(Op::Take(wait), wait)
    }

    /// Appends `item`, waiting for room in a bounded queue.
    pub fn put(&self, item: &T) -> Result<(), ManagerError> {
        self.put_waiting(item, Wait::Forever).map(drop)
    }

    /// Appends `item` if there is room now.
    pub fn try_put(&self, item: &T) -> Result<(), TryPutError> {
        match self.put_waiting(item, Wait::No)? {
            true => Ok(()),
            false => Err(TryPutError::Full),
        }
    }

    /// Appends `item`, waiting at most `timeout` for room.
    pub fn put_timeout(&self, item: &T, timeout: Duration) -> Result<(), PutTimeoutError> {
        match self.put_waiting(item, Wait::Timeout(timeout))? {
            true => Ok(()),
            false => Err(PutTimeoutError::Timeout),
        }
    }

    /// Removes the oldest item, waiting for one.
    pub fn get(&self) -> Result<T, ManagerError> {
        self.get_waiting(Wait::Forever)?
            .ok_or_else(|| ManagerError::Codec {
                action: "interpret",
                what: "the server's answer",
                reason: "an endless get returned no item".into(),
            })
    }

    /// Removes the oldest item if there is one now.
    pub fn try_get(&self) -> Result<T, TryGetError> {
        self.get_waiting(Wait::No)?.ok_or(TryGetError::Empty)
    }

    /// Removes the oldest item, waiting at most `timeout` for one.
    pub fn get_timeout(&self, timeout: Duration) -> Result<T, GetTimeoutError> {
        self.get_waiting(Wait::Timeout(timeout))?
            .ok_or(GetTimeoutError::Timeout)
    }

    pub fn len(&self) -> Result<usize, ManagerError> {
        self.core.len(Op::Len)
    }

    pub fn is_empty(&self) -> Result<bool, ManagerError> {
        Ok(self.len()? == 0)
    }
}
