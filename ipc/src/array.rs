//! `Array<T>`: a fixed-length array of plain-old-data elements in shared memory, with a robust
//! process-shared lock (multiprocessing.Array) and lock-free atomics for integer elements.

use std::fmt;
use std::io;
use std::ops::{Deref, DerefMut};
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::platform::{AtomicInteger, MutexError, Pod, PodArrayGuard, SharedPodArray};
use crate::sync::TimedOut;

/// Why an element access on a [`Array`] or [`crate::Value`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AccessError {
    /// The index is not below the array's length.
    #[error("index {index} is out of range for a shared array of length {len}")]
    IndexOutOfRange {
        /// The index asked for.
        index: usize,
        /// The array's length.
        len: usize,
    },
    /// The range `start..start + count` does not fit in the array.
    #[error("range {start}..{start}+{count} is out of range for a shared array of length {len}")]
    RangeOutOfRange {
        /// First index of the range.
        start: usize,
        /// Number of elements.
        count: usize,
        /// The array's length.
        len: usize,
    },
    /// The calling thread already holds this array's lock (through a guard); taking it again
    /// would deadlock. Use the guard instead.
    #[error("the calling thread already holds this shared array's lock")]
    AlreadyLocked,
    /// `lock_timeout` ran out of time.
    #[error("timed out waiting for the lock of a shared value or array")]
    Timeout(#[from] TimedOut),
    /// The lock failed for another reason reported by the operating system.
    #[error("the shared array's lock failed: {0}")]
    Os(#[source] io::Error),
}

impl AccessError {
    /// Whether `lock_timeout` ran out of time.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Timeout(_))
    }
}

impl From<MutexError> for AccessError {
    fn from(err: MutexError) -> Self {
        match err {
            MutexError::Deadlock => Self::AlreadyLocked,
            MutexError::TimedOut | MutexError::WouldBlock => Self::Timeout(TimedOut),
            MutexError::Os(err) => Self::Os(err),
            // Never happens: Array recovers from owner death itself before unlocking.
            MutexError::NotRecoverable => Self::Os(io::Error::other(err.to_string())),
        }
    }
}

/// A fixed-length array of `T` in shared memory, visible to every process holding a clone of
/// the handle (fork children inherit it; spawned children receive it serialised).
///
/// Element reads and writes take the array's robust lock, so multi-element updates inside
/// [`Array::with_lock`] are atomic with respect to other lockers. A holder killed mid-update
/// cannot block the others: the next locker recovers the lock at once (elements are `Pod`, so
/// whatever was half written is still a valid value) and [`ArrayGuard::previous_owner_died`]
/// says so. Integer elements also offer lock-free atomics through [`Array::atomic`]; those do not
/// take the lock, so mixing them with locked writes to the same element gives no atomicity
/// between the two.
#[derive(Clone)]
pub struct Array<T: Pod> {
    storage: SharedPodArray<T>,
}

impl<T: Pod> Array<T> {
    /// A new shared array of `len` zero elements (all bits zero).
    pub fn new(len: usize) -> io::Result<Self> {
        let storage = SharedPodArray::create_zeroed("array", len)?;
        Ok(Self { storage })
    }

    /// A new shared array holding a copy of `values`.
    pub fn from_slice(values: &[T]) -> io::Result<Self> {
        let storage = SharedPodArray::create("array", values)?;
        Ok(Self { storage })
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        self.storage.len()
    }

    /// True if the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Locks the array and returns a guard that dereferences to its elements.
    pub fn lock(&self) -> Result<ArrayGuard<'_, T>, AccessError> {
        Ok(ArrayGuard(self.storage.lock(None)?))
    }

    /// Like [`Array::lock`], waiting at most `timeout`.
    pub fn lock_timeout(&self, timeout: Duration) -> Result<ArrayGuard<'_, T>, AccessError> {
        let deadline = crate::sync::deadline_after(timeout);
        Ok(ArrayGuard(self.storage.lock(deadline)?))
    }

    /// Runs `f` on the elements while holding the lock.
    pub fn with_lock<R>(&self, f: impl FnOnce(&mut [T]) -> R) -> Result<R, AccessError> {
        let mut guard = self.lock()?;
        Ok(f(&mut guard))
    }

    fn check_index(&self, index: usize) -> Result<(), AccessError> {
        if index < self.len() {
            Ok(())
        } else {
            Err(AccessError::IndexOutOfRange {
                index,
                len: self.len(),
            })
        }
    }

    fn check_range(&self, start: usize, count: usize) -> Result<(), AccessError> {
        match start.checked_add(count) {
            Some(end) if end <= self.len() => Ok(()),
            _ => Err(AccessError::RangeOutOfRange {
                start,
                count,
                len: self.len(),
            }),
        }
    }

    /// Element `index` (read under the lock).
    pub fn get(&self, index: usize) -> Result<T, AccessError> {
        self.check_index(index)?;
        Ok(self.lock()?[index])
    }

    /// Sets element `index` (under the lock).
    pub fn set(&self, index: usize, value: T) -> Result<(), AccessError> {
        self.check_index(index)?;
        self.lock()?[index] = value;
        Ok(())
    }

    /// Copies `out.len()` elements starting at `start` into `out` (one locked copy).
    pub fn copy_to_slice(&self, start: usize, out: &mut [T]) -> Result<(), AccessError> {
        self.check_range(start, out.len())?;
        out.copy_from_slice(&self.lock()?[start..start + out.len()]);
        Ok(())
    }

    /// Copies `values` into the array starting at `start` (one locked copy).
    pub fn copy_from_slice(&self, start: usize, values: &[T]) -> Result<(), AccessError> {
        self.check_range(start, values.len())?;
        self.lock()?[start..start + values.len()].copy_from_slice(values);
        Ok(())
    }

    /// All elements, copied out under the lock.
    pub fn to_vec(&self) -> Result<Vec<T>, AccessError> {
        Ok(self.lock()?.to_vec())
    }
}

impl<T: AtomicInteger> Array<T> {
    /// The std atomic viewing element `index` in place, for lock-free operations
    /// (`fetch_add`, `compare_exchange`, ...) that other processes see.
    pub fn atomic(&self, index: usize) -> Result<&T::Atomic, AccessError> {
        self.storage
            .atomic(index)
            .ok_or(AccessError::IndexOutOfRange {
                index,
                len: self.len(),
            })
    }
}

impl<T: Pod> fmt::Debug for Array<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Array")
            .field("element", &std::any::type_name::<T>())
            .field("len", &self.len())
            .finish()
    }
}

impl<T: Pod> Serialize for Array<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        crate::codec::serialize_fd(std::os::fd::AsFd::as_fd(&self.storage), serializer)
    }
}

impl<'de, T: Pod> Deserialize<'de> for Array<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let fd = crate::codec::deserialize_fd(deserializer)?;
        let storage = SharedPodArray::from_fd(fd).map_err(crate::codec::de_error)?;
        Ok(Self { storage })
    }
}

/// Holds an [`Array`]'s lock and dereferences to its elements; unlocks on drop. Not `Send`.
pub struct ArrayGuard<'a, T: Pod>(PodArrayGuard<'a, T>);

impl<T: Pod> ArrayGuard<'_, T> {
    /// True if the previous holder died while holding the lock: its last update may be torn.
    /// The lock has already been recovered.
    pub fn previous_owner_died(&self) -> bool {
        self.0.previous_owner_died()
    }
}

impl<T: Pod> Deref for ArrayGuard<'_, T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        &self.0
    }
}

impl<T: Pod> DerefMut for ArrayGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut [T] {
        &mut self.0
    }
}

impl<T: Pod + fmt::Debug> fmt::Debug for ArrayGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}
