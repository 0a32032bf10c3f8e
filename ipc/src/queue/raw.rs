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

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::errors::{QueueBroken, TaskDoneError};
use super::ring::{self, Cursor, Occupancy, RecordWriter, RingMemory, RECORD_HEADER_BYTES};
#[cfg(test)]
use super::waiting::LOST_WAKE_RECHECK;
use super::waiting::{wait_until, wake_all, wake_one, Waited};
use crate::platform::{Acquired, MutexError, QueueHeader, QueueLayout, QueueSegment, RobustMutex};

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

/// The untyped queue over one mapped segment.
#[derive(Debug)]
pub(crate) struct RawQueue {
    segment: QueueSegment,
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
        Ok(RawQueue {
            segment: QueueSegment::create(label, message_type, layout)?,
        })
    }

    pub(crate) fn from_fd(fd: OwnedFd, message_type: &str) -> std::io::Result<Self> {
        Ok(RawQueue {
            segment: QueueSegment::from_fd(fd, message_type)?,
        })
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
    fn looks_roomy(&self, needed: u32) -> bool {
        let (head, tail) = self.snapshot();
        let layout = self.layout();
        match ring::occupancy(head, tail, layout.capacity) {
            Ok(occupied) => fits(occupied, needed, layout),
            // Cursors read at two instants may not form a valid pair: let the locked push judge.
            Err(_) => true,
        }
    }

    fn looks_nonempty(&self) -> bool {
        let (head, tail) = self.snapshot();
        head.messages != tail.messages
    }

    /// Pushes one record of `len` payload bytes, written by `fill`, without waiting for room.
    pub(crate) fn try_push(&self, len: u32, fill: &mut Fill<'_>) -> Result<(), PushError> {
        self.push_once(len, None, fill)
    }

    /// Pushes one record if there is room once the producer lock is taken (before `deadline`).
    fn push_once(
        &self,
        len: u32,
        deadline: Option<Instant>,
        fill: &mut Fill<'_>,
    ) -> Result<(), PushError> {
        let header = self.header();
        let held = match self.lock(&header.producer_lock.lock, deadline) {
            Ok(held) => held,
            Err(LockError::TimedOut) => return Err(PushError::Full),
            Err(LockError::Broken(error)) => return Err(PushError::Broken(error)),
        };
        let result = self.push_locked(len, fill);
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

    fn push_locked(&self, len: u32, fill: &mut Fill<'_>) -> Result<(), PushError> {
        let header = self.header();
        let layout = self.layout();
        if header.closed.load(Ordering::SeqCst) != 0 {
            return Err(PushError::Closed);
        }
        let tail = Cursor::unpack(header.tail.cursor.load(Ordering::Relaxed));
        let head = Cursor::unpack(header.head.cursor.load(Ordering::Acquire));
        let occupied = ring::occupancy(head, tail, layout.capacity)
            .map_err(|corrupted| PushError::Broken(broken(corrupted)))?;
        let needed = ring::record_bytes(len as usize)
            .filter(|_| len <= layout.max_message)
            .ok_or_else(|| PushError::Broken(broken("record larger than the message limit")))?;
        if !fits(occupied, needed, layout) {
            return Err(PushError::Full);
        }
        let tail =
            ring::write_record_with(&self.segment, tail, len, fill).ok_or(PushError::FillFailed)?;
        header.tail.cursor.store(tail.pack(), Ordering::SeqCst);
        Ok(())
    }

    /// Pushes one record, waiting for room until `deadline` (None: as long as it takes).
    pub(crate) fn push(
        &self,
        len: u32,
        deadline: Option<Instant>,
        fill: &mut Fill<'_>,
    ) -> Result<(), PushError> {
        let needed = ring::record_bytes(len as usize).unwrap_or(u32::MAX);
        loop {
            match self.push_once(len, deadline, fill) {
                Err(PushError::Full) => {}
                other => return other,
            }
            let ready = || self.is_closed() || self.looks_roomy(needed);
            if wait_until(&self.header().not_full, deadline, ready) == Waited::TimedOut {
                return self.push_once(len, deadline, fill);
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
            if header.closed.load(Ordering::SeqCst) == 0 {
                return Err(PopError::Empty);
            }
            // close() set the flag under the producer lock, after every put it let in had
            // published its tail: a tail read now is final.
            tail = Cursor::unpack(header.tail.cursor.load(Ordering::Acquire));
            if head.messages == tail.messages {
                return Err(PopError::Closed);
            }
        }
        let occupied = ring::occupancy(head, tail, layout.capacity)
            .map_err(|corrupted| PopError::Broken(broken(corrupted)))?;
        let (head, value) = ring::read_record_with(
            &self.segment,
            head,
            occupied,
            layout.max_message,
            scratch,
            read,
        )
        .map_err(|corrupted| PopError::Broken(broken(corrupted)))?;
        header.head.cursor.store(head.pack(), Ordering::SeqCst);
        Ok(value)
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
        tail.messages.wrapping_sub(head.messages)
    }

    /// Whether a put of the smallest message would have to wait right now (snapshot).
    pub(crate) fn is_full(&self) -> bool {
        !self.looks_roomy(RECORD_HEADER_BYTES)
    }

    /// Messages put but not yet marked done (JoinableQueue).
    pub(crate) fn unfinished(&self) -> u32 {
        let header = self.header();
        let done = header.tasks_done.count.load(Ordering::SeqCst);
        let produced = Cursor::unpack(header.tail.cursor.load(Ordering::SeqCst)).messages;
        produced.wrapping_sub(done)
    }

    /// Marks one put message as done; wakes joiners when none is left.
    pub(crate) fn task_done(&self) -> Result<(), TaskDoneError> {
        let header = self.header();
        let mut done = header.tasks_done.count.load(Ordering::SeqCst);
        loop {
            let produced = Cursor::unpack(header.tail.cursor.load(Ordering::SeqCst)).messages;
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
            max_message: capacity - RECORD_HEADER_BYTES,
            maxsize: 0,
            joinable: true,
        };
        RawQueue::create("raw-test", "bytes", layout).expect("create")
    }

    fn push(queue: &RawQueue, payload: &[u8]) -> Result<(), PushError> {
        queue.try_push(payload.len() as u32, &mut |w| w.write(payload))
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
                    assert_eq!(b, b"only")
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
                queue.push_locked(6, &mut |w| w.write(b"orphan")).unwrap();
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
