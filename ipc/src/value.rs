//! `Value<T>`: one plain-old-data value in shared memory with a robust process-shared lock
//! (multiprocessing.Value with `get_lock()`), and lock-free atomics for integer types.

use std::fmt;
use std::io;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::array::{AccessError, ArrayGuard};
use crate::platform::{AtomicInteger, Pod};
use crate::Array;

/// One `T` in shared memory, visible to every process holding a clone of the handle.
///
/// `get`/`set`/`with_lock` take the value's robust lock (a killed holder never blocks the others,
/// see [`Array`]); `fetch_add`, `compare_exchange`, `load` and `store` (integer `T`) are
/// lock-free atomics and do not take it.
#[derive(Clone)]
pub struct Value<T: Pod> {
    cell: Array<T>,
}

impl<T: Pod> Value<T> {
    /// A new shared value holding `initial`.
    pub fn new(initial: T) -> io::Result<Self> {
        Ok(Self {
            cell: Array::from_slice(&[initial])?,
        })
    }

    /// The value (read under the lock).
    pub fn get(&self) -> Result<T, AccessError> {
        self.cell.get(0)
    }

    /// Replaces the value (under the lock).
    pub fn set(&self, value: T) -> Result<(), AccessError> {
        self.cell.set(0, value)
    }

    /// Locks the value and returns a guard that dereferences to it.
    pub fn lock(&self) -> Result<ValueGuard<'_, T>, AccessError> {
        Ok(ValueGuard(self.cell.lock()?))
    }

    /// Like [`Value::lock`], waiting at most `timeout`.
    pub fn lock_timeout(&self, timeout: Duration) -> Result<ValueGuard<'_, T>, AccessError> {
        Ok(ValueGuard(self.cell.lock_timeout(timeout)?))
    }

    /// Runs `f` on the value while holding the lock (e.g. `|v| *v += 1`).
    pub fn with_lock<R>(&self, f: impl FnOnce(&mut T) -> R) -> Result<R, AccessError> {
        let mut guard = self.lock()?;
        Ok(f(&mut guard))
    }
}

impl<T: AtomicInteger> Value<T> {
    fn atomic(&self) -> &T::Atomic {
        match self.cell.atomic(0) {
            Ok(atomic) => atomic,
            // A Value is an Array of exactly one element (checked on creation and arrival).
            Err(_) => unreachable!("a Value always has one element"),
        }
    }

    /// Atomically adds `delta` (wrapping) and returns the previous value. Lock-free.
    pub fn fetch_add(&self, delta: T) -> T {
        T::atomic_fetch_add(self.atomic(), delta, Ordering::SeqCst)
    }

    /// Atomically subtracts `delta` (wrapping) and returns the previous value. Lock-free.
    pub fn fetch_sub(&self, delta: T) -> T {
        T::atomic_fetch_sub(self.atomic(), delta, Ordering::SeqCst)
    }

    /// Stores `new` if the value is `current`; returns the previous value, `Ok` if it was
    /// `current`. Lock-free.
    pub fn compare_exchange(&self, current: T, new: T) -> Result<T, T> {
        T::atomic_compare_exchange(self.atomic(), current, new)
    }

    /// Atomic read, without the lock.
    pub fn load(&self) -> T {
        T::atomic_load(self.atomic(), Ordering::SeqCst)
    }

    /// Atomic write, without the lock.
    pub fn store(&self, value: T) {
        T::atomic_store(self.atomic(), value, Ordering::SeqCst)
    }
}

impl<T: Pod> fmt::Debug for Value<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Value")
            .field("type", &std::any::type_name::<T>())
            .finish()
    }
}

impl<T: Pod> Serialize for Value<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.cell.serialize(serializer)
    }
}

impl<'de, T: Pod> Deserialize<'de> for Value<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let cell = Array::<T>::deserialize(deserializer)?;
        if cell.len() != 1 {
            return Err(crate::codec::de_error(format!(
                "received a shared array of {} elements where a Value was expected",
                cell.len()
            )));
        }
        Ok(Self { cell })
    }
}

/// Holds a [`Value`]'s lock and dereferences to the value; unlocks on drop. Not `Send`.
pub struct ValueGuard<'a, T: Pod>(ArrayGuard<'a, T>);

impl<T: Pod> ValueGuard<'_, T> {
    /// True if the previous holder died while holding the lock: its last update may be torn.
    /// The lock has already been recovered.
    pub fn previous_owner_died(&self) -> bool {
        self.0.previous_owner_died()
    }
}

impl<T: Pod> Deref for ValueGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0[0]
    }
}

impl<T: Pod> DerefMut for ValueGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.0[0]
    }
}

impl<T: Pod + fmt::Debug> fmt::Debug for ValueGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}
