//! The shared-memory segment behind a queue: a fixed [`QueueHeader`] (configuration, two robust
//! mutexes, the two ring cursors, futex words) followed by the ring's byte region.
//!
//! This module owns the `unsafe` of placing the header in a memfd mapping and of copying bytes in
//! and out of the region; the queue's protocol (who may touch which bytes when) lives in
//! `crate::queue`. Hot fields sit on cache lines of their own so that producers and consumers
//! do not invalidate each other's lock words.

use std::io;
use std::mem::{align_of, size_of};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU32, AtomicU64};

use super::{MutexKind, RobustMutex, SharedMemory};

/// "herdque1" in ASCII: marks a segment as a queue of this layout.
const MAGIC: u64 = u64::from_le_bytes(*b"herdque1");
const LAYOUT_VERSION: u32 = 1;

/// A robust mutex alone on its cache line.
#[repr(C, align(64))]
#[derive(Debug)]
pub(crate) struct LockLine {
    pub(crate) lock: RobustMutex,
}

/// A ring cursor (see `queue::ring::Cursor`) alone on its cache line.
#[repr(C, align(64))]
#[derive(Debug)]
pub(crate) struct CursorLine {
    pub(crate) cursor: AtomicU64,
}

/// An event count: waiters register in `waiters`, sleep on `seq`; wakers bump `seq` and wake.
#[repr(C, align(64))]
#[derive(Debug)]
pub(crate) struct WaitLine {
    pub(crate) seq: AtomicU32,
    pub(crate) waiters: AtomicU32,
}

/// A counter alone on its cache line.
#[repr(C, align(64))]
#[derive(Debug)]
pub(crate) struct CounterLine {
    pub(crate) count: AtomicU32,
}

/// The queue's configuration as fixed at creation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct QueueLayout {
    /// Bytes in the ring region.
    pub(crate) capacity: u32,
    /// Largest payload a record may carry.
    pub(crate) max_message: u32,
    /// Most messages the queue holds at once; 0: only the bytes bound it.
    pub(crate) maxsize: u32,
    /// Whether the queue was created as a JoinableQueue.
    pub(crate) joinable: bool,
}

/// The header at the start of every queue segment. Every field that changes after creation is
/// an atomic or a process-shared mutex, so `&QueueHeader` is shared freely between processes.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct QueueHeader {
    magic: u64,
    layout_version: u32,
    capacity: u32,
    max_message: u32,
    maxsize: u32,
    joinable: u32,
    /// Non-zero once `close()` ran.
    pub(crate) closed: AtomicU32,
    /// Serialises producers.
    pub(crate) producer_lock: LockLine,
    /// Written only by the holder of `producer_lock`.
    pub(crate) tail: CursorLine,
    /// Serialises consumers.
    pub(crate) consumer_lock: LockLine,
    /// Written only by the holder of `consumer_lock`.
    pub(crate) head: CursorLine,
    /// Consumers sleep here while the ring is empty.
    pub(crate) not_empty: WaitLine,
    /// Producers sleep here while the ring is full.
    pub(crate) not_full: WaitLine,
    /// JoinableQueue: `task_done` calls so far (wrapping, like the cursors' message counts).
    pub(crate) tasks_done: CounterLine,
    /// JoinableQueue: `join` callers sleep here until every put message is done.
    pub(crate) all_done: WaitLine,
}

/// An owned mapping of a queue segment whose header has been initialised or validated.
#[derive(Debug)]
pub(crate) struct QueueSegment {
    memory: SharedMemory,
    layout: QueueLayout,
}

impl QueueSegment {
    /// Bytes the header occupies before the ring region.
    const REGION_OFFSET: usize = size_of::<QueueHeader>();

    /// Creates a zeroed segment and initialises its header for `layout`.
    pub(crate) fn create(label: &str, layout: QueueLayout) -> io::Result<Self> {
        if layout.capacity == 0 || layout.max_message >= layout.capacity {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "queue segment: the region must be larger than the message limit",
            ));
        }
        let len = Self::REGION_OFFSET + layout.capacity as usize;
        let memory = SharedMemory::create(label, len)?;
        let header = memory.as_ptr().cast::<QueueHeader>();
        debug_assert_eq!(header.align_offset(align_of::<QueueHeader>()), 0);
        // SAFETY: the segment is fresh (nobody else has its fd or mapping yet), page aligned
        // (so aligned for QueueHeader) and at least REGION_OFFSET bytes long. Zeroed memory is a
        // valid value for every atomic in the header; the plain configuration fields are written
        // here once and never again; the two mutexes are initialised in place before any use.
        unsafe {
            std::ptr::addr_of_mut!((*header).layout_version).write(LAYOUT_VERSION);
            std::ptr::addr_of_mut!((*header).capacity).write(layout.capacity);
            std::ptr::addr_of_mut!((*header).max_message).write(layout.max_message);
            std::ptr::addr_of_mut!((*header).maxsize).write(layout.maxsize);
            std::ptr::addr_of_mut!((*header).joinable).write(u32::from(layout.joinable));
            RobustMutex::init(
                std::ptr::addr_of_mut!((*header).producer_lock.lock),
                MutexKind::ErrorCheck,
            )?;
            RobustMutex::init(
                std::ptr::addr_of_mut!((*header).consumer_lock.lock),
                MutexKind::ErrorCheck,
            )?;
            std::ptr::addr_of_mut!((*header).magic).write(MAGIC);
        }
        Ok(QueueSegment { memory, layout })
    }

    /// Maps a segment received from another process and checks that it is a queue of this
    /// layout whose configuration is consistent with its size.
    pub(crate) fn from_fd(fd: OwnedFd) -> io::Result<Self> {
        let memory = SharedMemory::from_fd(fd)?;
        let invalid = |what: &str| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("received fd is not a herd queue segment: {what}"),
            )
        };
        if memory.len() < Self::REGION_OFFSET {
            return Err(invalid("too short for a queue header"));
        }
        let header = memory.as_ptr().cast::<QueueHeader>();
        // SAFETY: the mapping is page aligned and at least REGION_OFFSET bytes long. The
        // configuration fields are plain integers (any bit pattern is valid) written once by the
        // creator before the fd was shared, so these reads race with no writer.
        let (magic, version, capacity, max_message, maxsize, joinable) = unsafe {
            (
                std::ptr::addr_of!((*header).magic).read(),
                std::ptr::addr_of!((*header).layout_version).read(),
                std::ptr::addr_of!((*header).capacity).read(),
                std::ptr::addr_of!((*header).max_message).read(),
                std::ptr::addr_of!((*header).maxsize).read(),
                std::ptr::addr_of!((*header).joinable).read(),
            )
        };
        if magic != MAGIC {
            return Err(invalid("wrong magic number"));
        }
        if version != LAYOUT_VERSION {
            return Err(invalid("unsupported layout version"));
        }
        if capacity == 0
            || max_message >= capacity
            || Self::REGION_OFFSET + capacity as usize > memory.len()
        {
            return Err(invalid("inconsistent sizes"));
        }
        let layout = QueueLayout {
            capacity,
            max_message,
            maxsize,
            joinable: joinable != 0,
        };
        Ok(QueueSegment { memory, layout })
    }

    /// The configuration, as validated when this mapping was made.
    pub(crate) fn layout(&self) -> QueueLayout {
        self.layout
    }

    /// The shared header.
    pub(crate) fn header(&self) -> &QueueHeader {
        // SAFETY: `create`/`from_fd` checked that the mapping starts with an initialised header
        // (the magic is written last by the creator); the mapping lives as long as `self`, and
        // every field mutated after creation has interior mutability (atomics, pthread mutexes),
        // so a shared reference is sound even while other processes use the segment.
        unsafe { &*self.memory.as_ptr().cast::<QueueHeader>() }
    }

    /// Copies `bytes` into the ring region at `offset`.
    ///
    /// The queue protocol gives the holder of the producer lock exclusive use of the free bytes
    /// and the holder of the consumer lock exclusive use of the bytes of the head record.
    pub(crate) fn copy_in(&self, offset: u32, bytes: &[u8]) {
        let start = self.region_range(offset, bytes.len());
        // SAFETY: `region_range` checked the destination lies inside the mapping's region. The
        // region is plain bytes (no validity invariant); by the queue protocol no other process
        // reads or writes these free bytes until the producer publishes the tail after this copy.
        unsafe {
            std::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                self.memory.as_ptr().add(start),
                bytes.len(),
            )
        };
    }

    /// Copies bytes of the ring region at `offset` into `out`.
    pub(crate) fn copy_out(&self, offset: u32, out: &mut [u8]) {
        let start = self.region_range(offset, out.len());
        // SAFETY: `region_range` checked the source lies inside the mapping's region; `out` is a
        // distinct local buffer. By the queue protocol these bytes belong to a published record
        // that no producer may overwrite until the consumer publishes the head after this copy.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.memory.as_ptr().add(start),
                out.as_mut_ptr(),
                out.len(),
            )
        };
    }

    /// Runs `read` on `offset..offset + len` of the ring region, in place.
    pub(crate) fn with_bytes<R>(&self, offset: u32, len: u32, read: impl FnOnce(&[u8]) -> R) -> R {
        let start = self.region_range(offset, len as usize);
        // SAFETY: `region_range` checked the bytes lie inside the mapping, which outlives the
        // borrow (`read` cannot keep it: the slice's lifetime ends with this call). u8 has no
        // invalid values. By the queue protocol these bytes belong to a published record that no
        // producer may overwrite until the consumer holding the consumer lock publishes the head,
        // which happens after `read` returns.
        let bytes =
            unsafe { std::slice::from_raw_parts(self.memory.as_ptr().add(start), len as usize) };
        read(bytes)
    }

    /// Offset in the mapping of `offset..offset + len` of the region; panics if it is outside
    /// the region, which the ring's own checks make impossible.
    fn region_range(&self, offset: u32, len: usize) -> usize {
        let end = (offset as usize).checked_add(len);
        assert!(
            end.is_some_and(|end| end <= self.layout.capacity as usize),
            "queue ring copy outside its region (offset {offset}, len {len})"
        );
        Self::REGION_OFFSET + offset as usize
    }
}

impl AsFd for QueueSegment {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.memory.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    fn layout() -> QueueLayout {
        QueueLayout {
            capacity: 1000,
            max_message: 100,
            maxsize: 7,
            joinable: true,
        }
    }

    #[test]
    fn a_second_mapping_sees_the_configuration_and_the_bytes() {
        let segment = QueueSegment::create("segment-test", layout()).expect("create");
        segment.header().tail.cursor.store(42, Ordering::SeqCst);
        segment.copy_in(990, b"0123456789");
        let fd = segment.as_fd().try_clone_to_owned().expect("dup");
        let other = QueueSegment::from_fd(fd).expect("attach");
        assert_eq!(other.layout(), layout());
        assert_eq!(other.header().tail.cursor.load(Ordering::SeqCst), 42);
        let mut out = [0u8; 10];
        other.copy_out(990, &mut out);
        assert_eq!(&out, b"0123456789");
    }

    #[test]
    fn hot_fields_have_cache_lines_of_their_own() {
        assert_eq!(size_of::<LockLine>(), 64);
        assert_eq!(size_of::<CursorLine>(), 64);
        assert_eq!(size_of::<WaitLine>(), 64);
        assert_eq!(size_of::<CounterLine>(), 64);
    }

    #[test]
    fn foreign_or_inconsistent_segments_are_refused() {
        let plain = SharedMemory::create("not-a-queue", 4096).expect("shm");
        let fd = plain.as_fd().try_clone_to_owned().expect("dup");
        let error = QueueSegment::from_fd(fd).expect_err("no magic");
        assert!(
            error.to_string().contains("not a herd queue segment"),
            "{error}"
        );
        let bad = QueueLayout {
            max_message: 1000,
            ..layout()
        };
        assert!(QueueSegment::create("bad", bad).is_err());
    }
}
