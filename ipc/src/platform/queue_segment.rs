//! The shared-memory segment behind a queue: a [`SharedState`] whose state is the
//! [`QueueHeader`] (configuration, two robust mutexes, the two ring cursors, futex words) and
//! whose tail bytes are the ring's byte region.
//!
//! This module owns the `unsafe` of copying bytes in and out of the region; the queue's protocol
//! (who may touch which bytes when) lives in `crate::queue`. Hot fields sit on cache lines of
//! their own so that producers and consumers do not invalidate each other's lock words.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU32, AtomicU64};

use super::{MutexKind, RobustMutex, SharedLayout, SharedState};

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

/// An event count: waiters register in `sleepers`, sleep on `seq`; wakers bump `seq` and wake.
/// `sleepers` packs two `u32` counts: registered waiters (low half) and wake-ups issued to them
/// that they have not yet acted on (high half); see `queue::waiting`.
#[repr(C, align(64))]
#[derive(Debug)]
pub(crate) struct WaitLine {
    pub(crate) seq: AtomicU32,
    pub(crate) sleepers: AtomicU64,
}

/// A counter alone on its cache line.
#[repr(C, align(64))]
#[derive(Debug)]
pub(crate) struct CounterLine {
    pub(crate) count: AtomicU32,
}

/// The spill file's offsets: where the next spilled message goes, and how far every spilled
/// message is committed (both written under the producer lock), on one cache line.
#[repr(C, align(64))]
#[derive(Debug)]
pub(crate) struct SpillLine {
    /// Offset for the next spilled message; `next - committed` is a put in progress (or the
    /// leftover of a producer killed mid-put, released by the next producer).
    pub(crate) next: AtomicU64,
    pub(crate) committed: AtomicU64,
    /// End of the overflow: spilled messages put while the ring was full, packed back to back
    /// in the spill file as a 4-byte length and the message.
    pub(crate) overflow_tail: AtomicU64,
    /// Messages ever put into the overflow (wrapping).
    pub(crate) overflow_puts: AtomicU32,
    /// While an overflow put publishes: its end and its `overflow_puts` (0: none), so that a
    /// producer recovering the lock can tell whether the dead one's put was published.
    pub(crate) publishing_end: AtomicU64,
    pub(crate) publishing_puts: AtomicU32,
}

/// The consumers' side of the spill file, on one cache line.
#[repr(C, align(64))]
#[derive(Debug)]
pub(crate) struct SpillHeadLine {
    /// Start of the next overflow message; the overflow holds messages while `head < tail`.
    /// Consumers advance it; a producer starting a new overflow sets it (while it is empty).
    pub(crate) overflow_head: AtomicU64,
    /// Messages ever got from the overflow (wrapping).
    pub(crate) overflow_gets: AtomicU32,
    /// Everything below this offset was released.
    pub(crate) freed: AtomicU64,
}

/// The queue's configuration as fixed at creation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct QueueLayout {
    /// Bytes in the ring region.
    pub(crate) capacity: u32,
    /// Largest encoded message a put accepts.
    pub(crate) max_message: u32,
    /// Largest message stored in the ring itself; larger ones go to the spill file.
    pub(crate) inline_max: u32,
    /// Whether the queue has a spill file (else every message is in the ring).
    pub(crate) spill: bool,
    /// Most messages the queue holds at once; 0: only the bytes bound it.
    pub(crate) maxsize: u32,
    /// Whether the queue was created as a JoinableQueue.
    pub(crate) joinable: bool,
}

impl QueueLayout {
    /// The ring holds its largest inline record, and without a spill file every accepted message
    /// is inline.
    fn consistent(&self) -> bool {
        self.capacity != 0
            && self.inline_max < self.capacity
            && (self.spill || self.max_message <= self.inline_max)
    }
}

/// The state of every queue segment. Every field that changes after creation is an atomic or a
/// process-shared mutex, so `&QueueHeader` is shared freely between processes; the plain
/// configuration fields are written once, before the segment is shared.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct QueueHeader {
    capacity: u32,
    max_message: u32,
    maxsize: u32,
    joinable: u32,
    inline_max: u32,
    spills: u32,
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
    /// Spill file offsets owned by producers.
    pub(crate) spill: SpillLine,
    /// Spill file offsets owned by consumers.
    pub(crate) spill_head: SpillHeadLine,
}

// SAFETY: repr(C); no pointers; all-zero is a valid value (atomics at 0, configuration filled in
// by `create`, mutexes initialised in place by `create` before sharing); alignment 64; after
// creation it changes only through atomics and the robust mutexes.
unsafe impl SharedLayout for QueueHeader {
    const KIND: &'static str = "herd.Queue";
}

/// An owned mapping of a queue segment whose state has been initialised or validated.
#[derive(Debug)]
pub(crate) struct QueueSegment {
    state: SharedState<QueueHeader>,
    layout: QueueLayout,
}

impl QueueSegment {
    /// Creates a segment for `layout`; `message_type` (the message type's name) is checked when
    /// another process attaches.
    pub(crate) fn create(label: &str, message_type: &str, layout: QueueLayout) -> io::Result<Self> {
        if !layout.consistent() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "queue segment: the region must be larger than the ring's message limit",
            ));
        }
        let state = SharedState::create(
            label,
            message_type,
            layout.capacity as usize,
            |header: &mut QueueHeader| {
                header.capacity = layout.capacity;
                header.max_message = layout.max_message;
                header.maxsize = layout.maxsize;
                header.joinable = u32::from(layout.joinable);
                header.inline_max = layout.inline_max;
                header.spills = u32::from(layout.spill);
                header
                    .producer_lock
                    .lock
                    .init_in_place(MutexKind::ErrorCheck)?;
                header
                    .consumer_lock
                    .lock
                    .init_in_place(MutexKind::ErrorCheck)
            },
        )?;
        Ok(QueueSegment { state, layout })
    }

    /// Maps a segment received from another process and checks that it is a queue of
    /// `message_type` whose configuration is consistent with its size.
    pub(crate) fn from_fd(fd: OwnedFd, message_type: &str) -> io::Result<Self> {
        let state = SharedState::<QueueHeader>::from_fd(fd, message_type)?;
        let header = state.state();
        let region_len = state.tail().1;
        let layout = QueueLayout {
            capacity: header.capacity,
            max_message: header.max_message,
            inline_max: header.inline_max,
            spill: header.spills != 0,
            maxsize: header.maxsize,
            joinable: header.joinable != 0,
        };
        if !layout.consistent() || header.capacity as usize > region_len {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "received queue segment has inconsistent sizes",
            ));
        }
        Ok(QueueSegment { state, layout })
    }

    /// The configuration, as validated when this mapping was made.
    pub(crate) fn layout(&self) -> QueueLayout {
        self.layout
    }

    /// The shared header.
    pub(crate) fn header(&self) -> &QueueHeader {
        self.state.state()
    }

    /// Copies `bytes` into the ring region at `offset`.
    ///
    /// The queue protocol gives the holder of the producer lock exclusive use of the free bytes
    /// and the holder of the consumer lock exclusive use of the bytes of the head record.
    pub(crate) fn copy_in(&self, offset: u32, bytes: &[u8]) {
        let start = self.region_range(offset, bytes.len());
        // SAFETY: `region_range` checked the destination lies inside the region. The
        // region is plain bytes (no validity invariant); by the queue protocol no other process
        // reads or writes these free bytes until the producer publishes the tail after this copy.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), start, bytes.len()) };
    }

    /// Copies bytes of the ring region at `offset` into `out`.
    pub(crate) fn copy_out(&self, offset: u32, out: &mut [u8]) {
        let start = self.region_range(offset, out.len());
        // SAFETY: `region_range` checked the source lies inside the region; `out` is a
        // distinct local buffer. By the queue protocol these bytes belong to a published record
        // that no producer may overwrite until the consumer publishes the head after this copy.
        unsafe { std::ptr::copy_nonoverlapping(start, out.as_mut_ptr(), out.len()) };
    }

    /// Runs `read` on `offset..offset + len` of the ring region, in place.
    pub(crate) fn with_bytes<R>(&self, offset: u32, len: u32, read: impl FnOnce(&[u8]) -> R) -> R {
        let start = self.region_range(offset, len as usize);
        // SAFETY: `region_range` checked the bytes lie inside the mapping, which outlives the
        // borrow (`read` cannot keep it: the slice's lifetime ends with this call). u8 has no
        // invalid values. By the queue protocol these bytes belong to a published record that no
        // producer may overwrite until the consumer holding the consumer lock publishes the head,
        // which happens after `read` returns.
        let bytes = unsafe { std::slice::from_raw_parts(start.cast_const(), len as usize) };
        read(bytes)
    }

    /// The address of `offset..offset + len` of the region; panics if it is outside the region,
    /// which the ring's own checks make impossible.
    fn region_range(&self, offset: u32, len: usize) -> *mut u8 {
        let end = (offset as usize).checked_add(len);
        assert!(
            end.is_some_and(|end| end <= self.layout.capacity as usize),
            "queue ring copy outside its region (offset {offset}, len {len})"
        );
        let (region, region_len) = self.state.tail();
        debug_assert!(self.layout.capacity as usize <= region_len);
        // SAFETY: offset + len <= capacity <= the tail's length (checked at create/from_fd), so
        // the address stays inside the mapping.
        unsafe { region.add(offset as usize) }
    }
}

impl AsFd for QueueSegment {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.state.as_fd()
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
            inline_max: 100,
            spill: false,
            maxsize: 7,
            joinable: true,
        }
    }

    #[test]
    fn a_second_mapping_sees_the_configuration_and_the_bytes() {
        let segment = QueueSegment::create("segment-test", "bytes", layout()).expect("create");
        segment.header().tail.cursor.store(42, Ordering::SeqCst);
        segment.copy_in(990, b"0123456789");
        let fd = segment.as_fd().try_clone_to_owned().expect("dup");
        let other = QueueSegment::from_fd(fd, "bytes").expect("attach");
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
        let plain = crate::platform::SharedMemory::create("not-a-queue", 4096).expect("shm");
        let fd = plain.as_fd().try_clone_to_owned().expect("dup");
        let error = QueueSegment::from_fd(fd, "bytes").expect_err("no magic");
        assert!(error.to_string().contains("herd.Queue"), "{error}");
        let queue = QueueSegment::create("typed", "u32", layout()).expect("create");
        let fd = queue.as_fd().try_clone_to_owned().expect("dup");
        let error = QueueSegment::from_fd(fd, "alloc::string::String").expect_err("wrong type");
        assert!(
            error.to_string().contains("alloc::string::String"),
            "{error}"
        );
        let bad = QueueLayout {
            inline_max: 1000,
            ..layout()
        };
        assert!(QueueSegment::create("bad", "bytes", bad).is_err());
    }
}
