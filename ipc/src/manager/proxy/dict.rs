//! `DictProxy`: a dict on the manager with serde keys and values, plus the server-side atomic
//! operations (increment, append at a key, set-if-absent, compare-and-swap, take) that make
//! read-modify-write from many processes correct without a lock and in one round trip.

use std::borrow::Borrow;
use std::marker::PhantomData;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::core::{proxy_impls, ProxyCore};
use crate::manager::error::ManagerError;
use crate::manager::protocol::{ObjectKind, Op, Wait};

/// A proxy for a dict owned by the manager. Keys compare by their postcard encoding, so types
/// whose equal values encode differently (a `HashMap` key, say) make distinct keys.
///
/// Methods take the key borrowed, as `HashMap` does: any `Q` that `K` borrows as
/// (`K: Borrow<Q>`), so a `DictProxy<String, V>` is read with `dict.get("x")`. Keys travel
/// serialised, so `Q` must serialise exactly as `K` does: `str` for `String` and `[u8]` for
/// `Vec<u8>` do with postcard, and so does `K` itself; a `Borrow` impl whose borrowed form
/// serialises differently would address a different key.
///
/// ```
/// herd_ipc::init(); // the manager's server is this program, re-executed
/// let manager = herd_ipc::Manager::start()?;
/// let ages = manager.dict::<String, u32>()?;
/// ages.insert("ada", &36)?;
/// assert_eq!(ages.get("ada")?, Some(36));
/// assert_eq!(ages.get(&"ada".to_owned())?, Some(36)); // a &String works as well
/// assert!(ages.contains("ada")? && !ages.contains("alan")?);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct DictProxy<K, V> {
    core: ProxyCore,
    _types: PhantomData<fn() -> (K, V)>,
}

proxy_impls!(DictProxy[K, V], ObjectKind::Dict);

impl<K: Serialize + DeserializeOwned, V: Serialize + DeserializeOwned> DictProxy<K, V> {
    /// The value at `key`, if any.
    pub fn get<Q>(&self, key: &Q) -> Result<Option<V>, ManagerError>
    where
        K: Borrow<Q>,
        Q: Serialize + ?Sized,
    {
        self.core.value(Op::Get(self.core.encode(key)?), Wait::No)
    }

    /// Sets `key` to `value`.
    pub fn insert<Q>(&self, key: &Q, value: &V) -> Result<(), ManagerError>
    where
        K: Borrow<Q>,
        Q: Serialize + ?Sized,
    {
        self.core
            .done(Op::Insert(self.core.encode(key)?, self.core.encode(value)?))
    }

    /// Removes `key`; returns whether it was there.
    pub fn remove<Q>(&self, key: &Q) -> Result<bool, ManagerError>
    where
        K: Borrow<Q>,
        Q: Serialize + ?Sized,
    {
        let op = Op::Remove {
            key: self.core.encode(key)?,
            return_value: false,
        };
        self.core.boolean(op, Wait::No)
    }

    /// Removes `key` and returns its value, atomically (get-and-remove).
    pub fn take<Q>(&self, key: &Q) -> Result<Option<V>, ManagerError>
    where
        K: Borrow<Q>,
        Q: Serialize + ?Sized,
    {
        let op = Op::Remove {
            key: self.core.encode(key)?,
            return_value: true,
        };
        self.core.value(op, Wait::No)
    }

    pub fn contains<Q>(&self, key: &Q) -> Result<bool, ManagerError>
    where
        K: Borrow<Q>,
        Q: Serialize + ?Sized,
    {
        self.core
            .boolean(Op::Contains(self.core.encode(key)?), Wait::No)
    }

    /// Whether `key` is there (the same as [`DictProxy::contains`], under `HashMap`'s name).
    pub fn contains_key<Q>(&self, key: &Q) -> Result<bool, ManagerError>
    where
        K: Borrow<Q>,
        Q: Serialize + ?Sized,
    {
        self.contains(key)
    }

    /// Removes `key` and returns its value; a missing key is an error for which
    /// [`ManagerError::is_key_error`] holds (Python's `KeyError` from `dict.pop(key)`).
    pub fn pop<Q>(&self, key: &Q) -> Result<V, ManagerError>
    where
        K: Borrow<Q>,
        Q: Serialize + ?Sized,
    {
        self.core.required(Op::PopKey(self.core.encode(key)?))
    }

    /// Removes `key` and returns its value, or `default` if it is missing (Python's
    /// `dict.pop(key, default)`), in one step.
    pub fn pop_or<Q>(&self, key: &Q, default: V) -> Result<V, ManagerError>
    where
        K: Borrow<Q>,
        Q: Serialize + ?Sized,
    {
        Ok(self.take(key)?.unwrap_or(default))
    }

    /// The value at `key`, after setting it to `default` if the key was missing (Python's
    /// `dict.setdefault`), in one step.
    pub fn setdefault<Q>(&self, key: &Q, default: &V) -> Result<V, ManagerError>
    where
        K: Borrow<Q>,
        Q: Serialize + ?Sized,
    {
        let op = Op::SetDefault {
            key: self.core.encode(key)?,
            default: self.core.encode(default)?,
        };
        self.core.required(op)
    }

    /// All values, in no particular order: a snapshot taken in one step.
    pub fn values(&self) -> Result<Vec<V>, ManagerError> {
        self.core.values(Op::Values)
    }

    pub fn len(&self) -> Result<usize, ManagerError> {
        self.core.len(Op::Len)
    }

    pub fn is_empty(&self) -> Result<bool, ManagerError> {
        Ok(self.len()? == 0)
    }

    /// All keys, in no particular order.
    pub fn keys(&self) -> Result<Vec<K>, ManagerError> {
        self.core.values(Op::Keys)
    }

    /// All entries, in no particular order: a snapshot taken in one step.
    pub fn items(&self) -> Result<Vec<(K, V)>, ManagerError> {
        self.core.items(Op::Items)
    }

    /// Inserts every pair, in one step.
    pub fn update(&self, pairs: &[(K, V)]) -> Result<(), ManagerError> {
        let pairs = pairs
            .iter()
            .map(|(k, v)| Ok((self.core.encode(k)?, self.core.encode(v)?)))
            .collect::<Result<_, ManagerError>>()?;
        self.core.done(Op::Update(pairs))
    }

    pub fn clear(&self) -> Result<(), ManagerError> {
        self.core.done(Op::Clear)
    }

    /// Inserts `value` unless `key` is present. Returns the value already there (not replaced),
    /// or `None` when `value` was inserted.
    pub fn set_if_absent<Q>(&self, key: &Q, value: &V) -> Result<Option<V>, ManagerError>
    where
        K: Borrow<Q>,
        Q: Serialize + ?Sized,
    {
        let op = Op::SetIfAbsent {
            key: self.core.encode(key)?,
            value: self.core.encode(value)?,
        };
        self.core.value(op, Wait::No)
    }

    /// Sets `key` to `new` if its value is `expected` (`None`: if it is absent). Returns whether
    /// it swapped. Values compare by their postcard encoding.
    pub fn compare_and_swap<Q>(
        &self,
        key: &Q,
        expected: Option<&V>,
        new: &V,
    ) -> Result<bool, ManagerError>
    where
        K: Borrow<Q>,
        Q: Serialize + ?Sized,
    {
        let op = Op::CompareAndSwap {
            key: self.core.encode(key)?,
            expected: expected.map(|x| self.core.encode(x)).transpose()?,
            new: self.core.encode(new)?,
        };
        self.core.boolean(op, Wait::No)
    }
}

impl<K: Serialize + DeserializeOwned> DictProxy<K, i64> {
    /// Adds `delta` to the value at `key` (absent counts as 0) on the server, atomically.
    /// Returns the new value. Fails on overflow, leaving the value unchanged.
    pub fn increment<Q>(&self, key: &Q, delta: i64) -> Result<i64, ManagerError>
    where
        K: Borrow<Q>,
        Q: Serialize + ?Sized,
    {
        self.core.int(Op::Increment {
            key: self.core.encode(key)?,
            delta,
        })
    }
}

impl<K: Serialize + DeserializeOwned, T: Serialize + DeserializeOwned> DictProxy<K, Vec<T>> {
    /// Appends `item` to the list stored at `key` (absent counts as empty) on the server,
    /// atomically. Returns the list's new length.
    pub fn append<Q>(&self, key: &Q, item: &T) -> Result<usize, ManagerError>
    where
        K: Borrow<Q>,
        Q: Serialize + ?Sized,
    {
        self.core.len(Op::AppendAt {
            key: self.core.encode(key)?,
            item: self.core.encode(item)?,
        })
    }
}
