//! A shared array of plain-old-data elements guarded by a robust process-shared mutex: the
//! storage behind `Value<T>` and `Array<T>`.
//!
//! Elements are read and written under the mutex through [`PodArrayGuard`], or lock-free through
//! the element's std atomic twin for integer types. Because every bit pattern of a [`Pod`] is a
//! valid value, a holder that died mid-update leaves elements that are possibly torn but never
//! invalid, so the next locker marks the mutex consistent itself and reports what happened.

use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Instant;

use super::pod::{AtomicInteger, Pod};
use super::robust_mutex::{Acquired, MutexError, MutexKind, RobustMutex};
use super::shared_state::{SharedLayout, SharedState};

#[repr(C)]
pub(crate) struct PodArrayState {
    mutex: RobustMutex,
}

// SAFETY: repr(C), a single robust mutex (all-zero is glibc's PTHREAD_MUTEX_INITIALIZER, and it
// is re-initialised as robust+shared in `create` before anyone else sees it); elements live in
// the tail and are only mutated under the mutex or through atomics.
unsafe impl SharedLayout for PodArrayState {
    const KIND: &'static str = "herd.Array";
}

/// `len` elements of `T` in a shared segment, with their mutex. Clones share the segment.
pub(crate) struct SharedPodArray<T> {
    shared: SharedState<PodArrayState>,
    len: usize,
    _element: PhantomData<T>,
}

impl<T> Clone for SharedPodArray<T> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
            len: self.len,
            _element: PhantomData,
        }
    }
}

impl<T: Pod> SharedPodArray<T> {
    fn variant() -> String {
        format!(
            "{}:size={}:align={}",
            std::any::type_name::<T>(),
            std::mem::size_of::<T>(),
            std::mem::align_of::<T>()
        )
    }

    /// A new shared array of `len` elements, all bits zero (a valid `T`: see [`Pod`]).
    pub(crate) fn create_zeroed(name: &str, len: usize) -> io::Result<Self> {
        const { assert!(std::mem::align_of::<T>() <= 64) };
        let bytes = len.checked_mul(std::mem::size_of::<T>()).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("shared array of {len} elements is too large"),
            )
        })?;
        let shared =
            SharedState::<PodArrayState>::create(name, &Self::variant(), bytes, |state| {
                state.mutex.init_in_place(MutexKind::ErrorCheck)
            })?;
        Ok(Self {
            shared,
            len,
            _element: PhantomData,
        })
    }

    /// A new shared array holding a copy of `values`.
    pub(crate) fn create(name: &str, values: &[T]) -> io::Result<Self> {
        let array = Self::create_zeroed(name, values.len())?;
        // SAFETY: the tail holds `values.len()` elements and is 64-aligned (enough for T); nobody
        // else can see the segment yet, and `values` cannot overlap a fresh mapping.
        unsafe { std::ptr::copy_nonoverlapping(values.as_ptr(), array.elements(), values.len()) };
        Ok(array)
    }

    /// Maps an array received as an fd, checking it holds elements of type `T`.
    pub(crate) fn from_fd(fd: OwnedFd) -> io::Result<Self> {
        let shared = SharedState::<PodArrayState>::from_fd(fd, &Self::variant())?;
        let (_, bytes) = shared.tail();
        let len = bytes.checked_div(std::mem::size_of::<T>()).unwrap_or(0);
        Ok(Self {
            shared,
            len,
            _element: PhantomData,
        })
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    fn elements(&self) -> *mut T {
        self.shared.tail().0.cast::<T>()
    }

    /// Locks the array (until `deadline`, if any). A dead previous holder is recovered from
    /// here, and reported by [`PodArrayGuard::previous_owner_died`].
    pub(crate) fn lock(
        &self,
        deadline: Option<Instant>,
    ) -> Result<PodArrayGuard<'_, T>, MutexError> {
        let mutex = &self.shared.state().mutex;
        let acquired = match deadline {
            None => mutex.lock()?,
            Some(deadline) => mutex.lock_until(deadline)?,
        };
        let previous_owner_died = acquired == Acquired::OwnerDied;
        if previous_owner_died {
            if let Err(err) = mutex.make_consistent() {
                // Still the owner: give the mutex back before reporting.
                let _ = mutex.unlock();
                return Err(MutexError::Os(err));
            }
        }
        Ok(PodArrayGuard {
            array: self,
            previous_owner_died,
            _not_send: PhantomData,
        })
    }

    /// The atomic twin of element `index`, or None if out of range.
    pub(crate) fn atomic(&self, index: usize) -> Option<&T::Atomic>
    where
        T: AtomicInteger,
    {
        if index >= self.len {
            return None;
        }
        // SAFETY: `index < len`, so the element lies inside the tail; T::Atomic has T's size and an
        // alignment the 64-aligned tail and element stride satisfy (checked by const asserts in
        // pod.rs); atomics may alias memory other processes also access atomically. Mixing with
        // lock-protected plain access is documented as giving no atomicity between the two.
        Some(unsafe { &*self.elements().add(index).cast::<T::Atomic>() })
    }
}

impl<T> AsFd for SharedPodArray<T> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.shared.as_fd()
    }
}

impl<T> fmt::Debug for SharedPodArray<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedPodArray")
            .field("element", &std::any::type_name::<T>())
            .field("len", &self.len)
            .finish()
    }
}

/// Holds the array's mutex; dereferences to the elements. Unlocks on drop. Not `Send`: a pthread
/// mutex must be unlocked by the thread that locked it.
pub(crate) struct PodArrayGuard<'a, T: Pod> {
    array: &'a SharedPodArray<T>,
    previous_owner_died: bool,
    _not_send: PhantomData<*const ()>,
}

impl<T: Pod> PodArrayGuard<'_, T> {
    /// True if the previous holder died while holding the lock (its last update may be torn).
    pub(crate) fn previous_owner_died(&self) -> bool {
        self.previous_owner_died
    }
}

impl<T: Pod> Deref for PodArrayGuard<'_, T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        // SAFETY: the guard holds the (error-checking, so never re-entered) mutex, which every
        // non-atomic access to the elements takes; the tail holds `len` valid T (Pod: any bits).
        unsafe { std::slice::from_raw_parts(self.array.elements(), self.array.len) }
    }
}

impl<T: Pod> DerefMut for PodArrayGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as in `deref`; `&mut self` makes this the only reference derived from the guard,
        // and the mutex excludes every other guard in any thread or process.
        unsafe { std::slice::from_raw_parts_mut(self.array.elements(), self.array.len) }
    }
}

impl<T: Pod> Drop for PodArrayGuard<'_, T> {
    fn drop(&mut self) {
        // Cannot fail: this thread owns the mutex and it was made consistent in `lock`.
        let _ = self.array.shared.state().mutex.unlock();
    }
}

impl<T: Pod + fmt::Debug> fmt::Debug for PodArrayGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    #[test]
    fn elements_are_shared_through_the_fd_and_types_are_checked() {
        let array = SharedPodArray::<u64>::create("arr", &[1, 2, 3]).expect("create");
        let dup = || array.as_fd().try_clone_to_owned().expect("dup");
        let other = SharedPodArray::<u64>::from_fd(dup()).expect("from_fd");
        assert_eq!(other.len(), 3);
        other.lock(None).expect("lock")[1] = 20;
        assert_eq!(&*array.lock(None).expect("lock"), &[1, 20, 3]);
        array
            .atomic(2)
            .expect("in range")
            .fetch_add(5, Ordering::SeqCst);
        assert_eq!(other.lock(None).expect("lock")[2], 8);
        assert!(array.atomic(3).is_none());
        SharedPodArray::<i64>::from_fd(dup()).expect_err("element type differs");
    }

    #[test]
    fn relocking_from_the_holder_is_an_error_not_a_deadlock() {
        let array = SharedPodArray::<u8>::create("arr2", &[0; 4]).expect("create");
        let _guard = array.lock(None).expect("lock");
        assert!(matches!(array.lock(None), Err(MutexError::Deadlock)));
    }
}
