//! Typed shared state: a `#[repr(C)]` struct of atomics and robust mutexes at the start of a
//! [`SharedMemory`] segment, behind a small header that identifies what the segment holds.
//!
//! Every herd primitive (Lock, Semaphore, Value, ...) is one such segment. The header lets a
//! process that receives a segment's fd check that it really holds the expected kind of state
//! before using it, instead of misreading some other segment's bytes. Optional "tail" bytes after
//! the state hold variable-length data (the elements of an Array).

use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::SharedMemory;

/// State that can live in shared memory and be used through `&Self` by many processes.
///
/// # Safety
/// Implementors must be `#[repr(C)]`, contain no pointers or references (addresses differ between
/// processes), be valid when all bytes are zero, have an alignment of at most 64, and mutate
/// only through atomics or [`super::RobustMutex`] (or memory guarded by one).
pub(crate) unsafe trait SharedLayout: Sync + Send + 'static {
    /// Names the kind of state; hashed into the segment header.
    const KIND: &'static str;
}

const MAGIC: u64 = u64::from_le_bytes(*b"herdshm1");
/// The state starts here; the header is padded to a cache line.
const STATE_OFFSET: usize = 64;
/// Tails are cache-line aligned, which is enough for any element type.
const TAIL_ALIGN: usize = 64;

#[repr(C)]
struct Header {
    magic: AtomicU64,
    tag: AtomicU64,
    tail_len: AtomicU64,
}

/// A shared segment holding one `S` (plus optional tail bytes). Clones share the mapping.
pub(crate) struct SharedState<S> {
    shm: Arc<SharedMemory>,
    tail_len: usize,
    _state: PhantomData<S>,
}

impl<S> Clone for SharedState<S> {
    fn clone(&self) -> Self {
        Self {
            shm: Arc::clone(&self.shm),
            tail_len: self.tail_len,
            _state: PhantomData,
        }
    }
}

impl<S: SharedLayout> SharedState<S> {
    /// Creates a segment for `S` with `tail_len` extra bytes, letting `init` set up the state
    /// (initialise mutexes, store parameters) while no other process can see it yet.
    /// `variant` refines the kind (an Array's element type) in the header check.
    pub(crate) fn create(
        name: &str,
        variant: &str,
        tail_len: usize,
        init: impl FnOnce(&mut S) -> io::Result<()>,
    ) -> io::Result<Self> {
        const { assert!(std::mem::align_of::<S>() <= STATE_OFFSET) };
        let len = tail_offset::<S>()
            .checked_add(tail_len)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "segment too large"))?;
        let shm = SharedMemory::create(name, len)?;
        // SAFETY: the segment is fresh (zero-filled, page aligned, large enough for the header and
        // `S` at STATE_OFFSET, which satisfies S's alignment). No other process has its fd and no
        // other reference into it exists, so this `&mut` is exclusive; all-zero is a valid `S`.
        let state = unsafe { &mut *shm.as_ptr().add(STATE_OFFSET).cast::<S>() };
        init(state)?;
        let this = Self {
            shm: Arc::new(shm),
            tail_len,
            _state: PhantomData,
        };
        let header = this.header();
        header.tag.store(tag::<S>(variant), Ordering::Relaxed);
        header.tail_len.store(tail_len as u64, Ordering::Relaxed);
        header.magic.store(MAGIC, Ordering::Release);
        Ok(this)
    }

    /// Maps a segment received as an fd, checking that it holds an `S` of this `variant`.
    pub(crate) fn from_fd(fd: OwnedFd, variant: &str) -> io::Result<Self> {
        let shm = SharedMemory::from_fd(fd)?;
        let wrong = || {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("received fd is not a {} segment ({variant})", S::KIND),
            )
        };
        if shm.len() < tail_offset::<S>() {
            return Err(wrong());
        }
        let mut this = Self {
            shm: Arc::new(shm),
            tail_len: 0,
            _state: PhantomData,
        };
        let header = this.header();
        if header.magic.load(Ordering::Acquire) != MAGIC
            || header.tag.load(Ordering::Relaxed) != tag::<S>(variant)
        {
            return Err(wrong());
        }
        let tail_len =
            usize::try_from(header.tail_len.load(Ordering::Relaxed)).map_err(|_| wrong())?;
        if this.shm.len() - tail_offset::<S>() < tail_len {
            return Err(wrong());
        }
        this.tail_len = tail_len;
        Ok(this)
    }

    fn header(&self) -> &Header {
        // SAFETY: every mapping is at least STATE_OFFSET (64) bytes, page aligned, and the header
        // holds only atomics, so a shared reference is valid for as long as the mapping (`self`).
        unsafe { &*self.shm.as_ptr().cast::<Header>() }
    }

    /// The shared state.
    pub(crate) fn state(&self) -> &S {
        // SAFETY: the mapping holds an `S` at STATE_OFFSET (checked at create/from_fd); `S` is
        // valid when zeroed and only mutated through atomics and mutexes (SharedLayout contract),
        // so shared references from any number of processes are sound while `self` keeps it mapped.
        unsafe { &*self.shm.as_ptr().add(STATE_OFFSET).cast::<S>() }
    }

    /// The first tail byte (aligned to 64) and the tail's length in bytes.
    pub(crate) fn tail(&self) -> (*mut u8, usize) {
        // SAFETY: tail_offset + tail_len <= mapping length (checked at create/from_fd), so the
        // offset stays inside the mapping.
        let start = unsafe { self.shm.as_ptr().add(tail_offset::<S>()) };
        (start, self.tail_len)
    }
}

impl<S> AsFd for SharedState<S> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.shm.as_fd()
    }
}

impl<S: SharedLayout> fmt::Debug for SharedState<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedState")
            .field("kind", &S::KIND)
            .field("shm", &self.shm)
            .finish()
    }
}

fn tail_offset<S>() -> usize {
    (STATE_OFFSET + std::mem::size_of::<S>()).next_multiple_of(TAIL_ALIGN)
}

/// FNV-1a over kind and variant: cheap, stable within one build, which is all a check between
/// processes running the same executable needs.
fn tag<S: SharedLayout>(variant: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in S::KIND.bytes().chain([0]).chain(variant.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    #[repr(C)]
    struct Counter {
        value: AtomicU32,
    }
    // SAFETY: repr(C), one atomic, zero is valid.
    unsafe impl SharedLayout for Counter {
        const KIND: &'static str = "test.Counter";
    }

    #[repr(C)]
    struct Other {
        value: AtomicU32,
    }
    // SAFETY: as for Counter.
    unsafe impl SharedLayout for Other {
        const KIND: &'static str = "test.Other";
    }

    #[test]
    fn state_survives_the_trip_through_an_fd_and_kinds_are_checked() {
        let created = SharedState::<Counter>::create("state", "v", 10, |c| {
            c.value.store(7, Ordering::Relaxed);
            Ok(())
        })
        .expect("create");
        let dup = || created.as_fd().try_clone_to_owned().expect("dup");
        let received = SharedState::<Counter>::from_fd(dup(), "v").expect("from_fd");
        assert_eq!(received.state().value.load(Ordering::Relaxed), 7);
        assert_eq!(received.tail().1, 10);
        let err = SharedState::<Other>::from_fd(dup(), "v").expect_err("wrong kind");
        assert!(err.to_string().contains("test.Other"), "{err}");
        SharedState::<Counter>::from_fd(dup(), "w").expect_err("wrong variant");
    }
}
