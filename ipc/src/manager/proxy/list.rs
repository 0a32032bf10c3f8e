//! `ListProxy`: a list on the manager with serde items.

use std::marker::PhantomData;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::core::{decode, proxy_impls, ProxyCore};
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
        self.core.done(Op::Push(self.core.encode(item)?))
    }

    /// The item at `index`; past the end, an error for which
    /// [`ManagerError::is_index_error`] holds (Python's `IndexError`).
    pub fn get(&self, index: usize) -> Result<T, ManagerError> {
        self.core.required(Op::Index(index as u64))
    }

    /// Replaces the item at `index`; past the end, an `IndexError` naming index and length.
    pub fn set(&self, index: usize, item: &T) -> Result<(), ManagerError> {
        self.core
            .done(Op::SetIndex(index as u64, self.core.encode(item)?))
    }

    /// Inserts `item` before `index`; an index past the end appends (as Python's `insert`).
    pub fn insert(&self, index: usize, item: &T) -> Result<(), ManagerError> {
        self.core
            .done(Op::InsertAt(index as u64, self.core.encode(item)?))
    }

    /// Removes the first item equal to `item` (compared by encoding); none: an error for which
    /// [`ManagerError::is_value_error`] holds (Python's `ValueError`).
    pub fn remove(&self, item: &T) -> Result<(), ManagerError> {
        self.core.done(Op::RemoveValue(self.core.encode(item)?))
    }

    /// The index of the first item equal to `item`; none: a `ValueError`-like error.
    pub fn index(&self, item: &T) -> Result<usize, ManagerError> {
        self.core.len(Op::IndexOf(self.core.encode(item)?))
    }

    /// Whether an item equals `item` (compared by encoding).
    pub fn contains(&self, item: &T) -> Result<bool, ManagerError> {
        self.core
            .boolean(Op::ContainsValue(self.core.encode(item)?), Wait::No)
    }

    /// Removes and returns the item at `index`; past the end, an `IndexError`.
    pub fn pop_at(&self, index: usize) -> Result<T, ManagerError> {
        self.core.required(Op::PopAt(index as u64))
    }

    /// Reverses the list in place, in one step.
    pub fn reverse(&self) -> Result<(), ManagerError> {
        self.core.done(Op::Reverse)
    }

    /// The items in `range`, clamped to the list as Python's `list[a:b]` is.
    pub fn get_range(&self, range: std::ops::Range<usize>) -> Result<Vec<T>, ManagerError> {
        self.core
            .values(Op::Range(range.start as u64, range.end as u64))
    }

    /// Replaces the items in `range` (clamped) by `items`, which may be more or fewer, in one
    /// step (Python's `list[a:b] = items`).
    pub fn set_range<'a>(
        &self,
        range: std::ops::Range<usize>,
        items: impl IntoIterator<Item = &'a T>,
    ) -> Result<(), ManagerError>
    where
        T: 'a,
    {
        let items = items
            .into_iter()
            .map(|x| self.core.encode(x))
            .collect::<Result<_, ManagerError>>()?;
        self.core
            .done(Op::SetRange(range.start as u64, range.end as u64, items))
    }

    /// Sorts the list by `T`'s order. The server stores bytes and cannot compare `T`s, so the
    /// list is read, sorted here, and written back by one request that succeeds only if nobody
    /// changed the list in between (else it starts over): the result is a sort of one state of
    /// the list, never a mix.
    pub fn sort(&self) -> Result<(), ManagerError>
    where
        T: Ord,
    {
        loop {
            let expected: Vec<Vec<u8>> = self.core.values_raw(Op::Snapshot)?;
            let mut items = expected
                .iter()
                .map(|bytes| Ok((decode::<T>(bytes)?, bytes)))
                .collect::<Result<Vec<_>, ManagerError>>()?;
            items.sort_by(|a, b| a.0.cmp(&b.0));
            let new = items.into_iter().map(|(_, bytes)| bytes.clone()).collect();
            if self
                .core
                .boolean(Op::ReplaceIf { expected, new }, Wait::No)?
            {
                return Ok(());
            }
        }
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
            .map(|x| self.core.encode(x))
            .collect::<Result<_, ManagerError>>()?;
        self.core.done(Op::Extend(items))
    }

    /// Removes and returns the last item; on an empty list, an `IndexError`-like error.
    pub fn pop(&self) -> Result<T, ManagerError> {
        self.core.required(Op::Pop)
    }

    /// A copy of the whole list, taken in one step.
    pub fn snapshot(&self) -> Result<Vec<T>, ManagerError> {
        self.core.values(Op::Snapshot)
    }

    pub fn clear(&self) -> Result<(), ManagerError> {
        self.core.done(Op::Clear)
    }
}
