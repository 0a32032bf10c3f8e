//! Plain-old-data: the element types a shared `Value`/`Array` may hold, and the integer types
//! that additionally get lock-free atomic operations.
//!
//! Shared memory is mapped at a different address in every process and may be written by any of
//! them, so an element type must not contain pointers or references, and every bit pattern must be
//! a valid value (a process killed in the middle of a write leaves a torn, but still valid, value).
//! That rules out `bool`, `char`, references, `Box`, `String` and anything holding them.

use std::sync::atomic::{
    AtomicI16, AtomicI32, AtomicI64, AtomicI8, AtomicIsize, AtomicU16, AtomicU32, AtomicU64,
    AtomicU8, AtomicUsize, Ordering,
};

/// A type that can be copied bit for bit into shared memory and read back in another process.
///
/// # Safety
/// Implement only for `Copy` types with no pointers, references or file descriptors inside, for
/// which every bit pattern of `size_of::<Self>()` bytes (including all zeroes) is a valid value,
/// and with no padding bytes whose contents matter. `#[repr(C)]` structs of `Pod` fields
/// qualify when they have no padding.
pub unsafe trait Pod: Copy + Send + Sync + 'static {}

macro_rules! impl_pod {
    ($($t:ty),*) => {
        // SAFETY: primitive numbers have no pointers and every bit pattern is a valid value.
        $(unsafe impl Pod for $t {})*
    };
}
impl_pod!(u8, u16, u32, u64, u128, usize, i8, i16, i32, i64, i128, isize, f32, f64);

// SAFETY: an array of Pod elements has no padding between elements and inherits their validity.
unsafe impl<T: Pod, const N: usize> Pod for [T; N] {}

mod sealed {
    pub trait Sealed {}
}

/// Integer types with a std atomic twin of the same size and representation, giving shared
/// `Value`s and `Array`s lock-free operations.
pub trait AtomicInteger: Pod + sealed::Sealed {
    /// The std atomic type operating on this integer's bytes in place (e.g. `AtomicU64` for
    /// `u64`).
    type Atomic: Send + Sync;
    /// `Atomic::load`.
    fn atomic_load(atomic: &Self::Atomic, order: Ordering) -> Self;
    /// `Atomic::store`.
    fn atomic_store(atomic: &Self::Atomic, value: Self, order: Ordering);
    /// `Atomic::fetch_add` (wrapping).
    fn atomic_fetch_add(atomic: &Self::Atomic, value: Self, order: Ordering) -> Self;
    /// `Atomic::fetch_sub` (wrapping).
    fn atomic_fetch_sub(atomic: &Self::Atomic, value: Self, order: Ordering) -> Self;
    /// `Atomic::compare_exchange` with `SeqCst` on success and failure.
    fn atomic_compare_exchange(
        atomic: &Self::Atomic,
        current: Self,
        new: Self,
    ) -> Result<Self, Self>;
}

macro_rules! impl_atomic {
    ($($t:ty => $a:ty),*) => {$(
        impl sealed::Sealed for $t {}
        impl AtomicInteger for $t {
            type Atomic = $a;
            fn atomic_load(atomic: &$a, order: Ordering) -> $t { atomic.load(order) }
            fn atomic_store(atomic: &$a, value: $t, order: Ordering) { atomic.store(value, order) }
            fn atomic_fetch_add(atomic: &$a, value: $t, order: Ordering) -> $t {
                atomic.fetch_add(value, order)
            }
            fn atomic_fetch_sub(atomic: &$a, value: $t, order: Ordering) -> $t {
                atomic.fetch_sub(value, order)
            }
            fn atomic_compare_exchange(atomic: &$a, current: $t, new: $t) -> Result<$t, $t> {
                atomic.compare_exchange(current, new, Ordering::SeqCst, Ordering::SeqCst)
            }
        }
        const _: () = assert!(
            std::mem::size_of::<$t>() == std::mem::size_of::<$a>()
                && std::mem::align_of::<$a>() <= std::mem::size_of::<$t>()
        );
    )*};
}
impl_atomic!(
    u8 => AtomicU8, u16 => AtomicU16, u32 => AtomicU32, u64 => AtomicU64, usize => AtomicUsize,
    i8 => AtomicI8, i16 => AtomicI16, i32 => AtomicI32, i64 => AtomicI64, isize => AtomicIsize
);
