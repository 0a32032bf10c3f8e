//! `ListProxy`: a list on the manager with serde items.

use std::marker::PhantomData;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::core::{encode, proxy_impls, ProxyCore};
use crate::manager::error::ManagerError;
use crate::manager::protocol::{ObjectKind, Op, Wait};

/// A proxy for a list owned by the manager. Iterate over a [`ListProxy::snapshot`].
pub struct ListProxy<T> {
    core: ProxyCore,
    _types: PhantomData<fn() -> T>,
}

proxy_impls!(ListProxy[T], ObjectKind::List);

impl<T: Serialize + DeserializeOwned> ListProxy<T> {
    pub fn push(&self, item: &T) -> Result<(), ManagerError> {
        self.core.done(Op::Push(encode(item)?))
    }

    /// The item at `index`, or `None` past the end.
    pub fn get(&self, index: usize) -> Result<Option<T>, ManagerError> {
        self.core.value(Op::Index(index as u64), Wait::No)
    }

    /// Replaces the item at `index`; an index past the end is an error naming index and length.
    pub fn set(&self, index: usize, item: &T) -> Result<(), ManagerError> {
        self.core.done(Op::SetIndex(index as u64, encode(item)?))
    }

    pub fn len(&self) -> Result<usize, ManagerError> {
        self.core.len(Op::Len)
    }

    pub fn is_empty(&self) -> Result<bool, ManagerError> {
        Ok(self.len()? == 0)
    }

    /// Appends every item, in one step.
    pub fn extend<'a>(&self, items: impl IntoIterator<Item = &'a T>) -> Result<(), ManagerError>
    where
        T: 'a,
    {
        let items = items
            .into_iter()
            .map(encode)
            .collect::<Result<_, ManagerError>>()?;
        self.core.done(Op::Extend(items))
    }

    /// Removes and returns the last item.
    pub fn pop(&self) -> Result<Option<T>, ManagerError> {
        self.core.value(Op::Pop, Wait::No)
    }

    /// A copy of the whole list, taken in one step.
    pub fn snapshot(&self) -> Result<Vec<T>, ManagerError> {
        self.core.values(Op::Snapshot)
    }

    pub fn clear(&self) -> Result<(), ManagerError> {
        self.core.done(Op::Clear)
    }
}
