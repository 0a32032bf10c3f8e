//! [`RawQueue`]: the untyped MPMC queue of byte messages in one shared-memory segment. It owns
//! the protocol that makes the ring safe to share between processes, any of which may die.
//!
//! Producers serialise on the producer lock and consumers on the consumer lock (two robust
//! process-shared mutexes), so a producer and a consumer never wait for each other. Under its
//! lock a producer writes the record into the free bytes (the caller's fill function encodes the
//! message there), then publishes the tail with one atomic store; a consumer hands the head record
//! to the caller's read function (which decodes it in place), then publishes the head the same
//! way. The other side reads the cursor it does not own without any lock.
//!
//! A process killed inside an operation leaves its lock "owner died": the next process to take
//! that lock is told so and marks it consistent. Nothing needs repair: a record is in the ring
//! exactly when the tail that covers it was published, and out of it exactly when the head was.
//! Hence the one in-flight message of the killed process is lost if a producer died before its
//! tail store, or a consumer died after its head store; otherwise it is delivered to someone else.
//! The recovering process then wakes every sleeper, in case the dead one died before waking them.
//!
//! Every record's payload starts with a tag byte: [`INLINE`] (the message follows) or [`SPILLED`]
//! (an offset and a length in the spill file follow). A spilled message is written to the spill
//! file under the producer lock before its record is published, at an offset that only grows;
//! the spill offsets in the header say which part of the file a put in progress owns
//! (`committed..next`), so a producer that recovers the lock from a dead one releases exactly the
//! dead put's pages. A consumer releases the pages of a spilled message after publishing the head
//! past it, together with everything below it (spilled messages are in ring order), which also
//! collects what a consumer killed between the two steps left behind.
//!
//! When the ring has no room even for a spilled record, messages go to the overflow: packed in
//! the spill file, each as a 4-byte length and the message, between `overflow_head` (consumers')
//! and `overflow_tail` (producers'). While the overflow holds anything, every put goes there, and
//! consumers take from it only when the ring is empty; so every ring record is older than every
//! overflow message and the order of each producer's messages is kept. This is what makes a
//! queue without byte bound take any number of messages without waiting.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::errors::{QueueBroken, TaskDoneError};
use super::ring::{self, Cursor, Occupancy, RecordWriter, RingMemory, RECORD_HEADER_BYTES};
#[cfg(test)]
use super::waiting::LOST_WAKE_RECHECK;
use super::waiting::{wait_until, wake_all, wake_one, Waited};
use crate::platform::{
    Acquired, MutexError, QueueHeader, QueueLayout, QueueSegment, RobustMutex, SpillFile,
    SPILL_ALIGN,
};

/// Tag of a record whose message follows in the ring.
const INLINE: u8 = 0;
/// Tag of a record followed by the spill file offset (u64) and length (u32) of its message.
const SPILLED: u8 = 1;
/// How long a blocking put waits for room in a full ring while no consumer takes anything,
/// before it overflows.
const OVERFLOW_GRACE: std::time::Duration = std::time::Duration::from_millis(20);
/// Payload bytes of a spilled message's record.
const SPILLED_RECORD: u32 = 1 + 8 + 4;

/// Encodes a whole message into a buffer (for the spill file); false on failure.
pub(crate) type Encode<'e> = dyn FnMut(&mut Vec<u8>) -> bool + 'e;

/// Writes a record's payload into the ring (see `ring::write_record_with`); false on failure.
pub(crate) type Fill<'f> = dyn FnMut(&mut RecordWriter<'_, QueueSegment>) -> bool + 'f;

/// Why a push did not happen.
#[derive(Debug)]
pub(crate) enum PushError {
    /// No room (or, for a blocking push, no room before the deadline).
    Full,
    Closed,
    /// The fill function failed or wrote other than the announced length; nothing was pushed.
    FillFailed,
    /// The spill file refused the message (e.g. out of memory); nothing was pushed.
    Spill(std::io::Error),
    Broken(QueueBroken),
}

/// Why a pop did not happen.
#[derive(Debug)]
pub(crate) enum PopError {
    /// Nothing to take (or, for a blocking pop, nothing before the deadline).
    Empty,
    /// Closed and drained.
    Closed,
    Broken(QueueBroken),
}

/// The untyped queue over one mapped segment and, unless bounded in bytes, its spill file.
#[derive(Debug)]
pub(crate) struct RawQueue {
    segment: QueueSegment,
    spill: Option<SpillFile>,
}

impl RingMemory for QueueSegment {
    fn capacity(&self) -> u32 {
        self.layout().capacity
    }
    fn copy_in(&self, offset: u32, bytes: &[u8]) {
        QueueSegment::copy_in(self, offset, bytes);
    }
    fn copy_out(&self, offset: u32, out: &mut [u8]) {
        QueueSegment::copy_out(self, offset, out);
    }
    fn with_contiguous<R>(&self, offset: u32, len: u32, read: impl FnOnce(&[u8]) -> R) -> R {
        self.with_bytes(offset, len, read)
    }
}

/// What the head record held.
enum Got<R> {
    Inline(R),
    Spilled { offset: u64, len: u32 },
    Malformed,
}

/// Why a lock was not taken.
enum LockError {
    TimedOut,
    Broken(QueueBroken),
}

/// A held lock; unlocks when dropped.
struct Held<'a> {
    mutex: &'a RobustMutex,
    /// The previous owner died holding the lock.
    recovered: bool,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        // Unlocking a robust mutex we own cannot fail; if it did, the next locker would be told
        // the owner died (our process exits) or block, and nothing here could do better.
        let _ = self.mutex.unlock();
    }
}

fn broken(reason: impl ToString) -> QueueBroken {
    QueueBroken {
        reason: reason.to_string(),
    }
}

impl RawQueue {
    /// `message_type` names the messages' type; attaching checks it.
    pub(crate) fn create(
        label: &str,
        message_type: &str,
        layout: QueueLayout,
    ) -> std::io::Result<Self> {
        let spill = match layout.spill {
            true => Some(SpillFile::create(label)?),
            false => None,
        };
        Ok(RawQueue {
            segment: QueueSegment::create(label, message_type, layout)?,
            spill,
        })
    }

    /// Attaches to a queue received from another process: its ring and its spill file, which
    /// must be present exactly when the ring says the queue spills.
    pub(crate) fn from_fd(
        fd: OwnedFd,
        spill: Option<OwnedFd>,
        message_type: &str,
    ) -> std::io::Result<Self> {
        let segment = QueueSegment::from_fd(fd, message_type)?;
        if segment.layout().spill != spill.is_some() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "received queue: its spill file does not match its ring",
            ));
        }
        Ok(RawQueue {
            segment,
            spill: spill.map(SpillFile::from_fd).transpose()?,
        })
    }

    /// The spill file's descriptor, if the queue has one.
    pub(crate) fn spill_fd(&self) -> Option<BorrowedFd<'_>> {
        self.spill.as_ref().map(AsFd::as_fd)
    }

    /// Allocated bytes of the spill file (diagnostics and tests).
    #[cfg(test)]
    pub(crate) fn spilled_bytes(&self) -> u64 {
        self.spill
            .as_ref()
            .map_or(0, |spill| spill.allocated_bytes().unwrap_or(0))
    }

    /// Under a producer lock recovered from a dead owner: releases the pages its put in progress
    /// may have written to the spill file, and gives their offsets back.
    fn recover_spill(&self) {
        if let Some(spill) = &self.spill {
            let line = &self.header().spill;
            let committed = line.committed.load(Ordering::Relaxed);
            let next = line.next.load(Ordering::Relaxed);
            // Failing to punch only keeps pages until the queue is gone.
            let _ = spill.release(committed, next);
            line.next.store(committed, Ordering::Relaxed);
            let publishing = line.publishing_end.load(Ordering::Relaxed);
            if publishing != 0 {
                let puts = line.publishing_puts.load(Ordering::Relaxed);
                let published = line.overflow_tail.load(Ordering::Relaxed) == publishing;
                let puts = if published {
                    puts
                } else {
                    puts.wrapping_sub(1)
                };
                line.overflow_puts.store(puts, Ordering::SeqCst);
                line.publishing_end.store(0, Ordering::Relaxed);
            }
        }
    }

    /// Messages in the overflow (snapshot).
    fn overflow_len(&self) -> u32 {
        let header = self.header();
        let gets = header.spill_head.overflow_gets.load(Ordering::SeqCst);
        let puts = header.spill.overflow_puts.load(Ordering::SeqCst);
        puts.wrapping_sub(gets)
    }

    /// Whether the overflow holds a message (exact under the producer or the consumer lock for
    /// the side that owns the last move).
    fn overflow_pending(&self) -> bool {
        let header = self.header();
        let head = header.spill_head.overflow_head.load(Ordering::SeqCst);
        let tail = header.spill.overflow_tail.load(Ordering::SeqCst);
        head < tail
    }

    /// The ring bytes a put of `len` bytes takes (what a waiting producer waits for).
    fn record_for(&self, len: u32) -> u32 {
        let layout = self.layout();
        match len <= layout.inline_max {
            true => ring::record_bytes(len as usize + 1).unwrap_or(u32::MAX),
            false => SPILLED_RECORD + RECORD_HEADER_BYTES,
        }
    }

    pub(crate) fn layout(&self) -> QueueLayout {
        self.segment.layout()
    }

    fn header(&self) -> &QueueHeader {
        self.segment.header()
    }

    /// Takes `mutex`, recovering it if its owner died; gives up at `deadline` (holders only
    /// encode or decode one message, so this matters when a holder is stopped, e.g. by SIGSTOP).
    fn lock<'a>(
        &'a self,
        mutex: &'a RobustMutex,
        deadline: Option<Instant>,
    ) -> Result<Held<'a>, LockError> {
        let acquired = match deadline {
            None => mutex.lock(),
            // An uncontended lock needs no clock reading: try first.
            Some(deadline) => match mutex.try_lock() {
                Err(MutexError::WouldBlock) => mutex.lock_until(deadline),
                other => other,
            },
        };
        match acquired {
            Ok(Acquired::Clean) => Ok(Held {
                mutex,
                recovered: false,
            }),
            Ok(Acquired::OwnerDied) => {
                // Held from here on, so that an early return still unlocks.
                let held = Held {
                    mutex,
                    recovered: true,
                };
                // The protocol keeps the ring consistent at every instant (see the module doc),
                // so there is nothing to repair before declaring it consistent.
                mutex.make_consistent().map_err(|error| {
                    LockError::Broken(broken(format!("cannot recover the queue lock: {error}")))
                })?;
                Ok(held)
            }
            Err(MutexError::TimedOut) => Err(LockError::TimedOut),
            Err(MutexError::NotRecoverable) => {
                Err(LockError::Broken(broken("the queue lock is unrecoverable")))
            }
            Err(error) => Err(LockError::Broken(broken(format!(
                "cannot take the queue lock: {error}"
            )))),
        }
    }

    /// After recovering a lock from a dead owner: wake everyone it may have failed to wake.
    fn wake_everyone(&self) {
        let header = self.header();
        wake_all(&header.not_empty);
        wake_all(&header.not_full);
        wake_all(&header.all_done);
    }

    /// Lock-free snapshot: head first, so the pair is one a consumer could have seen (a newer
    /// tail than head is always consistent; the reverse is not).
    fn snapshot(&self) -> (Cursor, Cursor) {
        let header = self.header();
        let head = Cursor::unpack(header.head.cursor.load(Ordering::SeqCst));
        let tail = Cursor::unpack(header.tail.cursor.load(Ordering::SeqCst));
        (head, tail)
    }

    fn is_closed(&self) -> bool {
        self.header().closed.load(Ordering::SeqCst) != 0
    }

    /// Whether a record of `needed` bytes looks like it fits (lock-free; the locked push decides).
    /// With `ring_only`, whether the ring itself has room (what a put waits for before it
    /// overflows).
    fn looks_roomy(&self, needed: u32, ring_only: bool) -> bool {
        let (head, tail) = self.snapshot();
        let layout = self.layout();
        match ring::occupancy(head, tail, layout.capacity) {
            // The overflow takes what the ring cannot, up to maxsize.
            Ok(occupied) if layout.spill && !ring_only => {
                let messages = occupied.messages.saturating_add(self.overflow_len());
                layout.maxsize == 0 || messages < layout.maxsize
            }
            Ok(occupied) => fits(occupied, needed, layout),
            // Cursors read at two instants may not form a valid pair: let the locked push judge.
            Err(_) => true,
        }
    }

    fn looks_nonempty(&self) -> bool {
        let (head, tail) = self.snapshot();
        head.messages != tail.messages || self.overflow_pending()
    }

    /// Pushes one record of `len` payload bytes, written by `fill`, without waiting for room.
    pub(crate) fn try_push(
        &self,
        len: u32,
        fill: &mut Fill<'_>,
        encode: &mut Encode<'_>,
    ) -> Result<(), PushError> {
        self.push_once(len, None, fill, encode, true)
    }

    /// Pushes one record if there is room once the producer lock is taken (before `deadline`).
    fn push_once(
        &self,
        len: u32,
        deadline: Option<Instant>,
        fill: &mut Fill<'_>,
        encode: &mut Encode<'_>,
        overflow: bool,
    ) -> Result<(), PushError> {
        let header = self.header();
        let held = match self.lock(&header.producer_lock.lock, deadline) {
            Ok(held) => held,
            Err(LockError::TimedOut) => return Err(PushError::Full),
            Err(LockError::Broken(error)) => return Err(PushError::Broken(error)),
        };
        if held.recovered {
            self.recover_spill();
        }
        let result = self.push_locked(len, fill, encode, overflow);
        let recovered = held.recovered;
        drop(held);
        if recovered {
            self.wake_everyone();
        }
        if result.is_ok() {
            wake_one(&header.not_empty);
        }
        result
    }

    /// `overflow`: whether a message the ring cannot take may start an overflow (one that
    /// follows messages already in the overflow always goes there).
    fn push_locked(
        &self,
        len: u32,
        fill: &mut Fill<'_>,
        encode: &mut Encode<'_>,
        overflow: bool,
    ) -> Result<(), PushError> {
        let header = self.header();
        let layout = self.layout();
        if header.closed.load(Ordering::SeqCst) != 0 {
            return Err(PushError::Closed);
        }
        if len > layout.max_message {
            return Err(PushError::Broken(broken(
                "record larger than the message limit",
            )));
        }
        let tail = Cursor::unpack(header.tail.cursor.load(Ordering::Relaxed));
        let head = Cursor::unpack(header.head.cursor.load(Ordering::Acquire));
        let occupied = ring::occupancy(head, tail, layout.capacity)
            .map_err(|corrupted| PushError::Broken(broken(corrupted)))?;
        let overflowing = self.spill.is_some() && self.overflow_pending();
        let occupied = match self.spill.is_some() {
            true => Occupancy {
                messages: occupied.messages.saturating_add(self.overflow_len()),
                ..occupied
            },
            false => occupied,
        };
        let inline = ring::record_bytes(len as usize + 1).filter(|_| len <= layout.inline_max);
        if !overflowing && inline.is_some_and(|needed| fits(occupied, needed, layout)) {
            let tail = ring::write_record_with(&self.segment, tail, len + 1, |writer| {
                writer.write(&[INLINE]) && fill(writer)
            })
            .ok_or(PushError::FillFailed)?;
            header.tail.cursor.store(tail.pack(), Ordering::SeqCst);
            return Ok(());
        }
        let Some(spill) = &self.spill else {
            return Err(PushError::Full);
        };
        // A message small enough for the ring goes elsewhere only when the caller may not wait
        // (or waited in vain): spilling costs system calls that waiting a moment saves.
        let large = len > layout.inline_max;
        let spill_record = !overflowing
            && (large || overflow)
            && fits(occupied, SPILLED_RECORD + RECORD_HEADER_BYTES, layout);
        if !spill_record {
            let under_maxsize = layout.maxsize == 0 || occupied.messages < layout.maxsize;
            return match under_maxsize && (overflowing || overflow) {
                true => self.push_overflow(spill, len, encode),
                false => Err(PushError::Full),
            };
        }
        let mut bytes = Vec::new();
        if bytes.try_reserve_exact(len as usize).is_err() {
            return Err(PushError::Spill(std::io::Error::from(
                std::io::ErrorKind::OutOfMemory,
            )));
        }
        if !encode(&mut bytes) || bytes.len() != len as usize {
            return Err(PushError::FillFailed);
        }
        let line = &header.spill;
        // Page-aligned, so that releasing it frees whole pages (the overflow packs its messages).
        let offset = line
            .next
            .load(Ordering::Relaxed)
            .next_multiple_of(SPILL_ALIGN);
        let end = offset
            .checked_add(u64::from(len).next_multiple_of(SPILL_ALIGN))
            .ok_or_else(|| PushError::Broken(broken("spill file offsets exhausted")))?;
        // Claim the range before writing it, so a recovering producer knows what to release.
        line.next.store(end, Ordering::Relaxed);
        if let Err(error) = spill.write_at(offset, &bytes) {
            let _ = spill.release(offset, end);
            line.next.store(offset, Ordering::Relaxed);
            return Err(PushError::Spill(error));
        }
        let mut record = [0u8; SPILLED_RECORD as usize];
        record[0] = SPILLED;
        record[1..9].copy_from_slice(&offset.to_le_bytes());
        record[9..13].copy_from_slice(&len.to_le_bytes());
        let tail = ring::write_record_with(&self.segment, tail, SPILLED_RECORD, |writer| {
            writer.write(&record)
        })
        .ok_or(PushError::FillFailed)?;
        // Committed before the tail is published: if this process dies between the two, the
        // range is not released by a recovering producer (it might be published) but by the
        // consumer of the next spilled message, which releases everything below its own.
        line.committed.store(end, Ordering::Relaxed);
        header.tail.cursor.store(tail.pack(), Ordering::SeqCst);
        Ok(())
    }

    /// Under the producer lock: appends a message to the overflow (the ring being full, or the
    /// overflow already holding messages that this one must follow).
    fn push_overflow(
        &self,
        spill: &SpillFile,
        len: u32,
        encode: &mut Encode<'_>,
    ) -> Result<(), PushError> {
        let header = self.header();
        let line = &header.spill;
        let mut bytes = Vec::new();
        if bytes.try_reserve_exact(len as usize + 4).is_err() {
            return Err(PushError::Spill(std::io::Error::from(
                std::io::ErrorKind::OutOfMemory,
            )));
        }
        bytes.extend_from_slice(&len.to_le_bytes());
        if !encode(&mut bytes) || bytes.len() != len as usize + 4 {
            return Err(PushError::FillFailed);
        }
        let starting = !self.overflow_pending();
        let offset = line.next.load(Ordering::Relaxed);
        let end = offset
            .checked_add(bytes.len() as u64)
            .ok_or_else(|| PushError::Broken(broken("spill file offsets exhausted")))?;
        line.next.store(end, Ordering::Relaxed);
        if let Err(error) = spill.write_at(offset, &bytes) {
            let _ = spill.release(offset, end);
            line.next.store(offset, Ordering::Relaxed);
            return Err(PushError::Spill(error));
        }
        if starting {
            // The overflow is empty (head >= tail), so no consumer moves its head: it may be set
            // to where this run begins. Until the tail follows, head > tail still reads as empty.
            header
                .spill_head
                .overflow_head
                .store(offset, Ordering::SeqCst);
        }
        let puts = line.overflow_puts.load(Ordering::Relaxed).wrapping_add(1);
        line.committed.store(end, Ordering::Relaxed);
        line.publishing_puts.store(puts, Ordering::Relaxed);
        line.publishing_end.store(end, Ordering::SeqCst);
        line.overflow_puts.store(puts, Ordering::SeqCst);
        line.overflow_tail.store(end, Ordering::SeqCst);
        line.publishing_end.store(0, Ordering::SeqCst);
        Ok(())
    }

    /// Under the consumer lock, the ring being empty: takes the overflow's next message.
    fn pop_overflow<R>(
        &self,
        spill: &SpillFile,
        read: &mut dyn FnMut(&[u8]) -> R,
    ) -> Result<R, PopError> {
        let header = self.header();
        let line = &header.spill_head;
        let head = line.overflow_head.load(Ordering::SeqCst);
        let failed = |error: std::io::Error| {
            PopError::Broken(broken(format!("cannot read an overflow message: {error}")))
        };
        let len = spill.read_at(head, 4).map_err(failed)?;
        let len = u32::from_le_bytes(len.try_into().unwrap_or_default());
        let end = head + 4 + u64::from(len);
        if len > self.layout().max_message
            || end > header.spill.overflow_tail.load(Ordering::SeqCst)
        {
            return Err(PopError::Broken(broken(
                "overflow message runs past the overflow's end",
            )));
        }
        let bytes = spill.read_at(head + 4, len as usize).map_err(failed)?;
        let value = read(&bytes);
        line.overflow_head.store(end, Ordering::SeqCst);
        line.overflow_gets.fetch_add(1, Ordering::SeqCst);
        let freed = line.freed.load(Ordering::Relaxed);
        let whole_pages = end - end % SPILL_ALIGN;
        if whole_pages > freed && spill.release(freed, whole_pages).is_ok() {
            line.freed.store(whole_pages, Ordering::Relaxed);
        }
        Ok(value)
    }

    /// Pushes one record, waiting for room until `deadline` (None: as long as it takes).
    pub(crate) fn push(
        &self,
        len: u32,
        deadline: Option<Instant>,
        fill: &mut Fill<'_>,
        encode: &mut Encode<'_>,
    ) -> Result<(), PushError> {
        let needed = self.record_for(len);
        // A blocking put on a full ring waits for room while consumers are taking messages, as
        // consumers that keep up make room within microseconds; it overflows only once they have
        // taken nothing for OVERFLOW_GRACE. The overflow is the slow path (system calls per
        // message), which a busy queue should not fall into.
        let mut overflow = false;
        let mut progress: Option<(u64, Instant)> = None;
        loop {
            match self.push_once(len, deadline, fill, encode, overflow) {
                Err(PushError::Full) => {}
                other => return other,
            }
            if self.spill.is_some() && !overflow && self.looks_roomy(needed, false) {
                let head = self.header().head.cursor.load(Ordering::SeqCst);
                let now = Instant::now();
                let since = match progress {
                    Some((seen, since)) if seen == head => since,
                    _ => now,
                };
                progress = Some((head, since));
                let at = since + OVERFLOW_GRACE;
                if now >= at {
                    overflow = true;
                    continue;
                }
                let until = deadline.map_or(at, |deadline| deadline.min(at));
                let ready = || self.is_closed() || self.looks_roomy(needed, true);
                if wait_until(&self.header().not_full, Some(until), ready) == Waited::TimedOut
                    && deadline.is_some_and(|deadline| deadline <= Instant::now())
                {
                    return self.push_once(len, deadline, fill, encode, true);
                }
                continue;
            }
            let ready = || self.is_closed() || self.looks_roomy(needed, false);
            if wait_until(&self.header().not_full, deadline, ready) == Waited::TimedOut {
                return self.push_once(len, deadline, fill, encode, true);
            }
        }
    }

    /// Pops one record without waiting, handing its payload to `read` (under the consumer lock,
    /// in place if contiguous, else via `scratch`). The record is consumed whatever `read` does.
    pub(crate) fn try_pop<R>(
        &self,
        scratch: &mut Vec<u8>,
        read: &mut dyn FnMut(&[u8]) -> R,
    ) -> Result<R, PopError> {
        self.pop_once(None, scratch, read)
    }

    /// Pops one record if there is one once the consumer lock is taken (before `deadline`).
    fn pop_once<R>(
        &self,
        deadline: Option<Instant>,
        scratch: &mut Vec<u8>,
        read: &mut dyn FnMut(&[u8]) -> R,
    ) -> Result<R, PopError> {
        let header = self.header();
        let held = match self.lock(&header.consumer_lock.lock, deadline) {
            Ok(held) => held,
            Err(LockError::TimedOut) => return Err(PopError::Empty),
            Err(LockError::Broken(error)) => return Err(PopError::Broken(error)),
        };
        let result = self.pop_locked(scratch, read);
        let recovered = held.recovered;
        drop(held);
        if recovered {
            self.wake_everyone();
        }
        if result.is_ok() {
            wake_one(&header.not_full);
        }
        result
    }

    fn pop_locked<R>(
        &self,
        scratch: &mut Vec<u8>,
        read: &mut dyn FnMut(&[u8]) -> R,
    ) -> Result<R, PopError> {
        let header = self.header();
        let layout = self.layout();
        let head = Cursor::unpack(header.head.cursor.load(Ordering::Relaxed));
        let mut tail = Cursor::unpack(header.tail.cursor.load(Ordering::Acquire));
        if head.messages == tail.messages {
            if let Some(spill) = self.spill.as_ref().filter(|_| self.overflow_pending()) {
                // No put goes to the ring while the overflow holds messages, so a tail read now
                // is final: a record published since the first read is older than the overflow.
                tail = Cursor::unpack(header.tail.cursor.load(Ordering::Acquire));
                if head.messages == tail.messages {
                    return self.pop_overflow(spill, read);
                }
            } else if header.closed.load(Ordering::SeqCst) == 0 {
                return Err(PopError::Empty);
            } else {
                // close() set the flag under the producer lock, after every put it let in had
                // published: a tail read now is final, and so is the overflow.
                tail = Cursor::unpack(header.tail.cursor.load(Ordering::Acquire));
                if head.messages == tail.messages {
                    return match self.spill.as_ref().filter(|_| self.overflow_pending()) {
                        Some(spill) => self.pop_overflow(spill, read),
                        None => Err(PopError::Closed),
                    };
                }
            }
        }
        let occupied = ring::occupancy(head, tail, layout.capacity)
            .map_err(|corrupted| PopError::Broken(broken(corrupted)))?;
        let (head, got) = ring::read_record_with(
            &self.segment,
            head,
            occupied,
            layout.inline_max.max(SPILLED_RECORD - 1) + 1,
            scratch,
            |payload| match payload.split_first() {
                Some((&INLINE, message)) => Got::Inline(read(message)),
                Some((&SPILLED, place)) if place.len() == SPILLED_RECORD as usize - 1 => {
                    let (offset, len) = place.split_at(8);
                    Got::Spilled {
                        offset: u64::from_le_bytes(offset.try_into().unwrap_or_default()),
                        len: u32::from_le_bytes(len.try_into().unwrap_or_default()),
                    }
                }
                _ => Got::Malformed,
            },
        )
        .map_err(|corrupted| PopError::Broken(broken(corrupted)))?;
        match got {
            Got::Inline(value) => {
                header.head.cursor.store(head.pack(), Ordering::SeqCst);
                Ok(value)
            }
            Got::Spilled { offset, len } => {
                let spill = self.spill.as_ref().ok_or_else(|| {
                    PopError::Broken(broken("spilled record in a queue without spill file"))
                })?;
                let bytes = match len <= layout.max_message {
                    true => spill.read_at(offset, len as usize),
                    false => Err(std::io::Error::other("longer than the message limit")),
                };
                // Consumed even if unreadable, so that one bad record does not stop the queue.
                header.head.cursor.store(head.pack(), Ordering::SeqCst);
                let bytes = bytes.map_err(|error| {
                    PopError::Broken(broken(format!("cannot read a spilled message: {error}")))
                })?;
                let value = read(&bytes);
                // Everything below this message's end is consumed or abandoned.
                let end = offset.saturating_add(u64::from(len).next_multiple_of(SPILL_ALIGN));
                let freed = header.spill_head.freed.load(Ordering::Relaxed);
                if spill.release(freed.min(offset), end).is_ok() {
                    header.spill_head.freed.store(end, Ordering::Relaxed);
                }
                Ok(value)
            }
            Got::Malformed => Err(PopError::Broken(broken("queue record with an unknown tag"))),
        }
    }

    /// Pops one record, waiting until `deadline` (None: as long as it takes); see `try_pop`.
    pub(crate) fn pop<R>(
        &self,
        deadline: Option<Instant>,
        scratch: &mut Vec<u8>,
        read: &mut dyn FnMut(&[u8]) -> R,
    ) -> Result<R, PopError> {
        loop {
            match self.pop_once(deadline, scratch, read) {
                Err(PopError::Empty) => {}
                other => return other,
            }
            let ready = || self.is_closed() || self.looks_nonempty();
            if wait_until(&self.header().not_empty, deadline, ready) == Waited::TimedOut {
                return self.pop_once(deadline, scratch, read);
            }
        }
    }

    /// Refuses further pushes and wakes every waiter.
    pub(crate) fn close(&self) -> Result<(), QueueBroken> {
        let header = self.header();
        let held = match self.lock(&header.producer_lock.lock, None) {
            Ok(held) => held,
            Err(LockError::Broken(error)) => return Err(error),
            // Only a deadline makes the lock time out; report rather than trust that blindly.
            Err(LockError::TimedOut) => return Err(broken("the queue lock timed out")),
        };
        if held.recovered {
            self.recover_spill();
        }
        header.closed.store(1, Ordering::SeqCst);
        drop(held);
        self.wake_everyone();
        Ok(())
    }

    pub(crate) fn closed(&self) -> bool {
        self.is_closed()
    }

    /// Messages in the ring (lock-free snapshot: exact when nothing moves, otherwise a value the
    /// queue held at some instant during the call or an overestimate by the messages taken
    /// during it).
    pub(crate) fn len(&self) -> u32 {
        let (head, tail) = self.snapshot();
        tail.messages
            .wrapping_sub(head.messages)
            .wrapping_add(self.overflow_len())
    }

    /// Whether a put of the smallest message would have to wait right now (snapshot).
    pub(crate) fn is_full(&self) -> bool {
        !self.looks_roomy(RECORD_HEADER_BYTES, false)
    }

    /// Messages put but not yet marked done (JoinableQueue).
    pub(crate) fn unfinished(&self) -> u32 {
        let header = self.header();
        let done = header.tasks_done.count.load(Ordering::SeqCst);
        let produced = Cursor::unpack(header.tail.cursor.load(Ordering::SeqCst)).messages;
        let overflowed = header.spill.overflow_puts.load(Ordering::SeqCst);
        produced.wrapping_add(overflowed).wrapping_sub(done)
    }

    /// Marks one put message as done; wakes joiners when none is left.
    pub(crate) fn task_done(&self) -> Result<(), TaskDoneError> {
        let header = self.header();
        let mut done = header.tasks_done.count.load(Ordering::SeqCst);
        loop {
            let produced = Cursor::unpack(header.tail.cursor.load(Ordering::SeqCst))
                .messages
                .wrapping_add(header.spill.overflow_puts.load(Ordering::SeqCst));
            if produced == done {
                return Err(TaskDoneError);
            }
            match header.tasks_done.count.compare_exchange_weak(
                done,
                done.wrapping_add(1),
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => {
                    if produced == done.wrapping_add(1) {
                        wake_all(&header.all_done);
                    }
                    return Ok(());
                }
                Err(current) => done = current,
            }
        }
    }

    /// Waits until every put message is done, or `deadline`; returns the unfinished count on
    /// timeout.
    pub(crate) fn join(&self, deadline: Option<Instant>) -> Result<(), u32> {
        match wait_until(&self.header().all_done, deadline, || self.unfinished() == 0) {
            Waited::Ready => Ok(()),
            Waited::TimedOut => Err(self.unfinished()),
        }
    }
}

/// Whether a record of `needed` bytes may be pushed onto a ring holding `occupied`.
fn fits(occupied: Occupancy, needed: u32, layout: QueueLayout) -> bool {
    let under_maxsize = layout.maxsize == 0 || occupied.messages < layout.maxsize;
    under_maxsize && occupied.messages < u32::MAX && needed <= layout.capacity - occupied.bytes
}

impl AsFd for RawQueue {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.segment.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue(capacity: u32) -> RawQueue {
        let layout = QueueLayout {
            capacity,
            max_message: capacity - RECORD_HEADER_BYTES - 1,
            inline_max: capacity - RECORD_HEADER_BYTES - 1,
            spill: false,
            maxsize: 0,
            joinable: true,
        };
        RawQueue::create("raw-test", "bytes", layout).expect("create")
    }

    fn push(queue: &RawQueue, payload: &[u8]) -> Result<(), PushError> {
        queue.try_push(payload.len() as u32, &mut |w| w.write(payload), &mut |_| {
            false
        })
    }

    fn try_pop(queue: &RawQueue) -> Result<Vec<u8>, PopError> {
        queue.try_pop(&mut Vec::new(), &mut <[u8]>::to_vec)
    }

    fn pop(queue: &RawQueue) -> Vec<u8> {
        try_pop(queue).expect("a message")
    }

    // A thread that ends while holding a robust mutex is treated by the kernel exactly like a
    // process killed while holding it, which lets these tests place the death precisely.

    #[test]
    fn producer_dying_mid_put_loses_only_its_message_and_the_next_put_recovers() {
        let queue = queue(64);
        push(&queue, b"first").unwrap();
        std::thread::scope(|s| {
            s.spawn(|| {
                let held = queue
                    .lock(&queue.header().producer_lock.lock, None)
                    .ok()
                    .unwrap();
                let tail = Cursor::unpack(queue.header().tail.cursor.load(Ordering::SeqCst));
                // Record written, tail never published: the producer "dies" here.
                ring::write_record_with(&queue.segment, tail, 9, |w| w.write(b"in flight"));
                std::mem::forget(held);
            });
        });
        push(&queue, b"second").expect("recovered push");
        assert_eq!(pop(&queue), b"first");
        assert_eq!(pop(&queue), b"second");
        assert!(matches!(try_pop(&queue), Err(PopError::Empty)));
        queue.close().expect("close takes the recovered lock");
    }

    #[test]
    fn consumer_dying_before_publishing_the_head_leaves_the_message_for_the_next() {
        let queue = queue(64);
        push(&queue, b"only").unwrap();
        std::thread::scope(|s| {
            s.spawn(|| {
                let held = queue
                    .lock(&queue.header().consumer_lock.lock, None)
                    .ok()
                    .unwrap();
                // Record read, head never published: the consumer "dies" here.
                let head = Cursor::unpack(queue.header().head.cursor.load(Ordering::SeqCst));
                let tail = Cursor::unpack(queue.header().tail.cursor.load(Ordering::SeqCst));
                let occupied = ring::occupancy(head, tail, 64).unwrap();
                let mut scratch = Vec::new();
                ring::read_record_with(&queue.segment, head, occupied, 60, &mut scratch, |b| {
                    assert_eq!(b, b"\0only")
                })
                .unwrap();
                std::mem::forget(held);
            });
        });
        assert_eq!(pop(&queue), b"only");
    }

    #[test]
    fn recovery_wakes_a_sleeper_the_dead_producer_failed_to_wake() {
        let queue = queue(64);
        std::thread::scope(|s| {
            let sleeper = s.spawn(|| {
                let deadline = Instant::now() + std::time::Duration::from_secs(20);
                queue.pop(Some(deadline), &mut Vec::new(), &mut <[u8]>::to_vec)
            });
            while queue.header().not_empty.sleepers.load(Ordering::SeqCst) == 0 {
                std::thread::yield_now();
            }
            s.spawn(|| {
                // Publishes a message and "dies" before unlocking and waking anyone.
                let held = queue
                    .lock(&queue.header().producer_lock.lock, None)
                    .ok()
                    .unwrap();
                queue
                    .push_locked(6, &mut |w| w.write(b"orphan"), &mut |_| false, true)
                    .unwrap();
                std::mem::forget(held);
            })
            .join()
            .unwrap();
            let start = Instant::now();
            queue.close().expect("close recovers the lock");
            let got = sleeper.join().unwrap().expect("sleeper got the message");
            assert_eq!(got, b"orphan");
            assert!(
                start.elapsed() < LOST_WAKE_RECHECK,
                "woken by recovery, not the recheck"
            );
        });
    }

    fn spilling_queue() -> RawQueue {
        let layout = QueueLayout {
            capacity: 76,
            max_message: 1 << 20,
            inline_max: 16,
            spill: true,
            maxsize: 0,
            joinable: false,
        };
        RawQueue::create("raw-spill-test", "bytes", layout).expect("create")
    }

    fn push_any(queue: &RawQueue, payload: &[u8]) -> Result<(), PushError> {
        queue.try_push(
            payload.len() as u32,
            &mut |w| w.write(payload),
            &mut |buffer| {
                buffer.extend_from_slice(payload);
                true
            },
        )
    }

    #[test]
    fn large_messages_and_those_the_ring_cannot_fit_are_spilled_and_released() {
        let queue = spilling_queue();
        let big = vec![9u8; 100_000];
        push_any(&queue, &big).unwrap();
        // Ring: 17 bytes for the spilled record, 21 for each inline 16-byte message; the third
        // does not fit inline (80 > 76) but its spilled record does (76).
        let smalls = [[b'a'; 16], [b'b'; 16], [b'c'; 16]];
        for small in &smalls {
            push_any(&queue, small).unwrap();
        }
        // The ring has no room even for a spilled record: the overflow takes the rest, and
        // keeps taking while it holds anything, so that order is kept.
        push_any(&queue, b"x").unwrap();
        assert_eq!(queue.len(), 5);
        assert!(queue.spilled_bytes() >= 100_000);
        assert_eq!(pop(&queue), big);
        push_any(&queue, b"y").unwrap();
        for small in &smalls {
            assert_eq!(pop(&queue), small);
        }
        assert_eq!(pop(&queue), b"x");
        assert_eq!(pop(&queue), b"y");
        assert!(matches!(try_pop(&queue), Err(PopError::Empty)));
        // The overflow's last page stays until a later spilled message passes it.
        assert!(
            queue.spilled_bytes() <= SPILL_ALIGN,
            "every spilled page was released"
        );
    }

    #[test]
    fn a_producer_dying_mid_spill_leaves_no_pages_and_a_usable_queue() {
        let queue = spilling_queue();
        std::thread::scope(|s| {
            s.spawn(|| {
                let held = queue
                    .lock(&queue.header().producer_lock.lock, None)
                    .ok()
                    .unwrap();
                // Range claimed and written, record never published: the producer "dies" here.
                let line = &queue.header().spill;
                line.next.store(2 * SPILL_ALIGN, Ordering::Relaxed);
                let spill = queue.spill.as_ref().unwrap();
                spill.write_at(0, &[1; 5000]).unwrap();
                std::mem::forget(held);
            });
        });
        assert!(queue.spilled_bytes() >= 5000);
        push_any(&queue, &[2; 300]).expect("recovered push");
        assert_eq!(pop(&queue), vec![2; 300]);
        assert!(matches!(try_pop(&queue), Err(PopError::Empty)));
        assert_eq!(queue.spilled_bytes(), 0);
    }

    #[test]
    fn task_accounting_counts_puts_and_refuses_extra_task_done() {
        let queue = queue(64);
        assert!(queue.task_done().is_err());
        push(&queue, b"a").unwrap();
        push(&queue, b"b").unwrap();
        assert_eq!(queue.unfinished(), 2);
        queue.task_done().unwrap();
        assert_eq!(queue.join(Some(Instant::now())), Err(1));
        queue.task_done().unwrap();
        assert_eq!(queue.join(None), Ok(()));
        assert!(queue.task_done().is_err());
    }
}
