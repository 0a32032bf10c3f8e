//! The byte ring: framing of variable-size records in a circular byte region, and the two
//! 64-bit cursors (head for consumers, tail for producers) that say which records exist.
//!
//! This file is pure logic over a [`RingMemory`] (shared memory in production, a plain buffer in
//! the unit tests); locking, waking and shared-memory access live elsewhere.
//!
//! A record is a 4-byte little-endian payload length followed by the payload. Records are packed
//! back to back and may straddle the end of the region (they are copied in two pieces then), so no
//! byte is wasted on padding and any record that fits the free space can be written.
//!
//! Each cursor packs `(messages: u32, position: u32)` into one `u64`: the count of records ever
//! pushed (tail) or popped (head), wrapping, and the byte position in the region. Publishing a
//! cursor is therefore one atomic store, which is what makes a process killed mid-operation
//! harmless: either the store happened (the record is fully in or fully out) or it did not.
//! The message counts also settle the full-versus-empty ambiguity of equal positions.

use std::fmt;

/// Bytes of the length prefix in front of every record.
pub(crate) const RECORD_HEADER_BYTES: u32 = 4;

/// Largest region a ring can have: positions are `u32`.
pub(crate) const MAX_CAPACITY_BYTES: u32 = u32::MAX - 1;

/// Contiguous copies into and out of the ring's byte region. `offset + len` never exceeds
/// [`RingMemory::capacity`]: the ring splits wrapping copies itself.
pub(crate) trait RingMemory {
    /// Size of the byte region.
    fn capacity(&self) -> u32;
    /// Copies `bytes` to `offset..offset + bytes.len()`.
    fn copy_in(&self, offset: u32, bytes: &[u8]);
    /// Copies `offset..offset + out.len()` to `out`.
    fn copy_out(&self, offset: u32, out: &mut [u8]);
    /// Runs `read` on `offset..offset + len` in place.
    fn with_contiguous<R>(&self, offset: u32, len: u32, read: impl FnOnce(&[u8]) -> R) -> R;
}

/// One side's published progress: records passed so far (wrapping) and the byte position.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub(crate) struct Cursor {
    pub(crate) messages: u32,
    pub(crate) position: u32,
}

impl Cursor {
    pub(crate) fn pack(self) -> u64 {
        (u64::from(self.messages) << 32) | u64::from(self.position)
    }

    pub(crate) fn unpack(word: u64) -> Self {
        Cursor {
            messages: (word >> 32) as u32,
            position: word as u32,
        }
    }
}

/// What lies between a head and a tail.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct Occupancy {
    pub(crate) messages: u32,
    pub(crate) bytes: u32,
}

/// The ring's cursors or a record header contradict each other: shared memory was overwritten
/// by something that does not follow the protocol.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct RingCorrupted {
    pub(crate) what: &'static str,
}

impl fmt::Display for RingCorrupted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "queue ring corrupted: {}", self.what)
    }
}

/// Size of the record that carries `payload_len` bytes, if it can be represented at all.
pub(crate) fn record_bytes(payload_len: usize) -> Option<u32> {
    u32::try_from(payload_len)
        .ok()?
        .checked_add(RECORD_HEADER_BYTES)
}

/// Messages and bytes between `head` and `tail` (each a snapshot; a stale head only overstates,
/// a stale tail only understates, which is the conservative direction for either side).
pub(crate) fn occupancy(
    head: Cursor,
    tail: Cursor,
    capacity: u32,
) -> Result<Occupancy, RingCorrupted> {
    if head.position >= capacity || tail.position >= capacity {
        return Err(RingCorrupted {
            what: "cursor position beyond the region",
        });
    }
    let messages = tail.messages.wrapping_sub(head.messages);
    let bytes = if messages == 0 {
        if head.position != tail.position {
            return Err(RingCorrupted {
                what: "no message between head and tail but their positions differ",
            });
        }
        0
    } else if tail.position == head.position {
        capacity
    } else {
        distance(head.position, tail.position, capacity)
    };
    if u64::from(messages) * u64::from(RECORD_HEADER_BYTES) > u64::from(bytes) {
        return Err(RingCorrupted {
            what: "more messages between head and tail than their bytes can hold",
        });
    }
    Ok(Occupancy { messages, bytes })
}

/// Bytes from `from` forward to `to` in a circular region.
fn distance(from: u32, to: u32, capacity: u32) -> u32 {
    if to >= from {
        to - from
    } else {
        capacity - from + to
    }
}

/// `position + step` in a circular region (`step <= capacity`).
fn advance(position: u32, step: u32, capacity: u32) -> u32 {
    let room = capacity - position;
    if step < room {
        position + step
    } else {
        step - room
    }
}

fn write_wrapping(memory: &impl RingMemory, position: u32, bytes: &[u8]) -> u32 {
    let capacity = memory.capacity();
    let room = (capacity - position) as usize;
    if bytes.len() <= room {
        memory.copy_in(position, bytes);
    } else {
        memory.copy_in(position, &bytes[..room]);
        memory.copy_in(0, &bytes[room..]);
    }
    advance(position, bytes.len() as u32, capacity)
}

fn read_wrapping(memory: &impl RingMemory, position: u32, out: &mut [u8]) -> u32 {
    let capacity = memory.capacity();
    let room = (capacity - position) as usize;
    if out.len() <= room {
        memory.copy_out(position, out);
    } else {
        let (first, second) = out.split_at_mut(room);
        memory.copy_out(position, first);
        memory.copy_out(0, second);
    }
    advance(position, out.len() as u32, capacity)
}

/// Fills the payload of a record being written, front to back, with exactly the announced
/// number of bytes (so a value can be encoded straight into the ring).
pub(crate) struct RecordWriter<'a, M: RingMemory> {
    memory: &'a M,
    position: u32,
    remaining: u32,
}

impl<M: RingMemory> RecordWriter<'_, M> {
    /// Appends `bytes`; refuses (returning false, writing nothing) past the announced length.
    pub(crate) fn write(&mut self, bytes: &[u8]) -> bool {
        if bytes.len() > self.remaining as usize {
            return false;
        }
        self.position = write_wrapping(self.memory, self.position, bytes);
        self.remaining -= bytes.len() as u32;
        true
    }
}

/// Writes one record of `len` payload bytes at `tail`, the payload by `fill`, and returns the
/// tail to publish; `None` if `fill` failed or wrote fewer than `len` bytes (then nothing is to
/// be published). The caller has checked that `record_bytes(len)` fits the free space.
pub(crate) fn write_record_with<M: RingMemory>(
    memory: &M,
    tail: Cursor,
    len: u32,
    fill: impl FnOnce(&mut RecordWriter<'_, M>) -> bool,
) -> Option<Cursor> {
    let after_header = write_wrapping(memory, tail.position, &len.to_le_bytes());
    let mut writer = RecordWriter {
        memory,
        position: after_header,
        remaining: len,
    };
    if !fill(&mut writer) || writer.remaining != 0 {
        return None;
    }
    Some(Cursor {
        messages: tail.messages.wrapping_add(1),
        position: writer.position,
    })
}

/// Reads the record at `head` (the caller has seen `occupied.messages > 0`), hands its payload
/// to `read` (in place when it is contiguous, else through `scratch`) and returns the head to
/// publish with what `read` returned. The length prefix is checked against the occupied bytes
/// and `max_payload` before anything is allocated.
pub(crate) fn read_record_with<M: RingMemory, R>(
    memory: &M,
    head: Cursor,
    occupied: Occupancy,
    max_payload: u32,
    scratch: &mut Vec<u8>,
    read: impl FnOnce(&[u8]) -> R,
) -> Result<(Cursor, R), RingCorrupted> {
    debug_assert!(occupied.messages > 0);
    let mut length = [0u8; RECORD_HEADER_BYTES as usize];
    let after_header = read_wrapping(memory, head.position, &mut length);
    let length = u32::from_le_bytes(length);
    if length > max_payload {
        return Err(RingCorrupted {
            what: "record longer than the queue's message limit",
        });
    }
    if u64::from(length) + u64::from(RECORD_HEADER_BYTES) > u64::from(occupied.bytes) {
        return Err(RingCorrupted {
            what: "record extends past the tail",
        });
    }
    let capacity = memory.capacity();
    let result = if u64::from(after_header) + u64::from(length) <= u64::from(capacity) {
        memory.with_contiguous(after_header, length, read)
    } else {
        scratch.clear();
        scratch.resize(length as usize, 0);
        read_wrapping(memory, after_header, scratch);
        read(scratch)
    };
    let position = advance(after_header, length, capacity);
    Ok((
        Cursor {
            messages: head.messages.wrapping_add(1),
            position,
        },
        result,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::cell::RefCell;
    use std::collections::VecDeque;

    struct PlainMemory(RefCell<Vec<u8>>);

    impl PlainMemory {
        fn new(capacity: u32) -> Self {
            PlainMemory(RefCell::new(vec![0xAA; capacity as usize]))
        }
    }

    impl RingMemory for PlainMemory {
        fn capacity(&self) -> u32 {
            self.0.borrow().len() as u32
        }
        fn copy_in(&self, offset: u32, bytes: &[u8]) {
            let start = offset as usize;
            self.0.borrow_mut()[start..start + bytes.len()].copy_from_slice(bytes);
        }
        fn copy_out(&self, offset: u32, out: &mut [u8]) {
            let start = offset as usize;
            out.copy_from_slice(&self.0.borrow()[start..start + out.len()]);
        }
        fn with_contiguous<R>(&self, offset: u32, len: u32, read: impl FnOnce(&[u8]) -> R) -> R {
            let start = offset as usize;
            read(&self.0.borrow()[start..start + len as usize])
        }
    }

    fn write_record(memory: &PlainMemory, tail: Cursor, payload: &[u8]) -> Cursor {
        write_record_with(memory, tail, payload.len() as u32, |w| w.write(payload))
            .expect("payload written whole")
    }

    fn read_record(
        memory: &PlainMemory,
        head: Cursor,
        occupied: Occupancy,
        max_payload: u32,
        out: &mut Vec<u8>,
    ) -> Result<Cursor, RingCorrupted> {
        let mut scratch = Vec::new();
        let (head, payload) = read_record_with(
            memory,
            head,
            occupied,
            max_payload,
            &mut scratch,
            <[u8]>::to_vec,
        )?;
        *out = payload;
        Ok(head)
    }

    /// A ring driven the way the queue drives it: push if the record fits, pop if any.
    struct Model {
        memory: PlainMemory,
        head: Cursor,
        tail: Cursor,
    }

    impl Model {
        fn new(capacity: u32) -> Self {
            Model {
                memory: PlainMemory::new(capacity),
                head: Cursor::default(),
                tail: Cursor::default(),
            }
        }
        fn occupied(&self) -> Occupancy {
            occupancy(self.head, self.tail, self.memory.capacity()).expect("consistent cursors")
        }
        fn try_push(&mut self, payload: &[u8]) -> bool {
            let free = self.memory.capacity() - self.occupied().bytes;
            if record_bytes(payload.len()).is_some_and(|needed| needed <= free) {
                self.tail = write_record(&self.memory, self.tail, payload);
                true
            } else {
                false
            }
        }
        fn try_pop(&mut self) -> Option<Vec<u8>> {
            let occupied = self.occupied();
            if occupied.messages == 0 {
                return None;
            }
            let mut out = Vec::new();
            self.head = read_record(&self.memory, self.head, occupied, u32::MAX, &mut out)
                .expect("well-formed record");
            Some(out)
        }
    }

    #[test]
    fn cursor_packs_into_one_word() {
        let cursor = Cursor {
            messages: 0xDEAD_BEEF,
            position: 0x1234_5678,
        };
        assert_eq!(Cursor::unpack(cursor.pack()), cursor);
        assert_eq!(cursor.pack(), 0xDEAD_BEEF_1234_5678);
    }

    #[test]
    fn empty_and_full_rings_with_equal_positions_are_told_apart() {
        let head = Cursor {
            messages: 7,
            position: 12,
        };
        let empty = occupancy(head, head, 16).unwrap();
        assert_eq!(
            empty,
            Occupancy {
                messages: 0,
                bytes: 0
            }
        );
        let full_tail = Cursor {
            messages: 9,
            position: 12,
        };
        assert_eq!(
            occupancy(head, full_tail, 16).unwrap(),
            Occupancy {
                messages: 2,
                bytes: 16
            }
        );
    }

    #[test]
    fn message_counts_wrap_around_u32() {
        let head = Cursor {
            messages: u32::MAX,
            position: 10,
        };
        let tail = Cursor {
            messages: 1,
            position: 2,
        };
        assert_eq!(
            occupancy(head, tail, 20).unwrap(),
            Occupancy {
                messages: 2,
                bytes: 12
            }
        );
    }

    #[test]
    fn contradictory_cursors_are_reported() {
        let head = Cursor {
            messages: 3,
            position: 0,
        };
        let moved_without_message = Cursor {
            messages: 3,
            position: 4,
        };
        assert!(occupancy(head, moved_without_message, 16).is_err());
        let beyond = Cursor {
            messages: 4,
            position: 16,
        };
        assert!(occupancy(head, beyond, 16).is_err());
        let too_many = Cursor {
            messages: 8,
            position: 8,
        };
        assert!(occupancy(head, too_many, 16).is_err());
    }

    #[test]
    fn record_straddling_the_end_round_trips() {
        let mut ring = Model::new(16);
        assert!(ring.try_push(b"0123456789")); // 14 bytes, tail at 14
        assert_eq!(ring.try_pop().unwrap(), b"0123456789");
        assert!(ring.try_push(b"abcdefgh")); // header at 14..16, payload wraps to 0..8
        assert_eq!(ring.tail.position, 10);
        assert_eq!(ring.try_pop().unwrap(), b"abcdefgh");
        assert_eq!(ring.occupied().messages, 0);
    }

    #[test]
    fn length_prefix_straddling_the_end_round_trips() {
        let mut ring = Model::new(16);
        assert!(ring.try_push(b"0123456789a")); // 15 bytes, tail at 15
        assert_eq!(ring.try_pop().unwrap(), b"0123456789a");
        assert!(ring.try_push(b"xyz")); // header 15..16 then 0..3, payload 3..6
        assert_eq!(ring.try_pop().unwrap(), b"xyz");
    }

    #[test]
    fn a_record_that_does_not_fit_is_refused_and_exact_fit_fills_the_ring() {
        let mut ring = Model::new(16);
        assert!(!ring.try_push(&[1; 13]));
        assert!(ring.try_push(&[1; 12]));
        assert_eq!(ring.occupied().bytes, 16);
        assert!(!ring.try_push(b""));
        assert_eq!(ring.try_pop().unwrap(), vec![1; 12]);
        assert!(ring.try_push(b""));
        assert_eq!(ring.try_pop().unwrap(), b"");
    }

    #[test]
    fn oversized_or_overlong_length_prefix_is_corruption_not_allocation() {
        let memory = PlainMemory::new(32);
        let tail = write_record(&memory, Cursor::default(), b"hello");
        let occupied = occupancy(Cursor::default(), tail, 32).unwrap();
        let mut out = Vec::new();
        assert!(read_record(&memory, Cursor::default(), occupied, 4, &mut out).is_err());
        memory.copy_in(0, &u32::MAX.to_le_bytes());
        let error = read_record(&memory, Cursor::default(), occupied, u32::MAX, &mut out);
        assert_eq!(error.unwrap_err().what, "record extends past the tail");
        assert!(out.capacity() < 64);
    }

    #[test]
    fn a_record_writer_refuses_more_or_fewer_bytes_than_announced() {
        let memory = PlainMemory::new(32);
        let start = Cursor::default();
        assert!(write_record_with(&memory, start, 3, |w| w.write(b"abcd")).is_none());
        assert!(write_record_with(&memory, start, 3, |w| w.write(b"ab")).is_none());
        let tail = write_record_with(&memory, start, 3, |w| w.write(b"a") && w.write(b"bc"));
        assert_eq!(tail.unwrap().position, 7);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Any interleaving of pushes and pops behaves like a FIFO of byte strings bounded by
        /// the region's size.
        #[test]
        fn ring_behaves_like_a_bounded_fifo(
            capacity in 5u32..200,
            operations in proptest::collection::vec(
                prop_oneof![
                    (0usize..60).prop_map(Some),
                    Just(None),
                ],
                1..300,
            ),
        ) {
            let mut ring = Model::new(capacity);
            let mut model: VecDeque<Vec<u8>> = VecDeque::new();
            let mut model_bytes = 0u32;
            for (serial, operation) in operations.into_iter().enumerate() {
                match operation {
                    Some(len) => {
                        let payload: Vec<u8> = (0..len).map(|i| (serial + i) as u8).collect();
                        let needed = record_bytes(len).unwrap();
                        let fits = model_bytes + needed <= capacity;
                        prop_assert_eq!(ring.try_push(&payload), fits);
                        if fits {
                            model_bytes += needed;
                            model.push_back(payload);
                        }
                    }
                    None => {
                        let expected = model.pop_front();
                        if let Some(payload) = &expected {
                            model_bytes -= record_bytes(payload.len()).unwrap();
                        }
                        prop_assert_eq!(ring.try_pop(), expected);
                    }
                }
                let occupied = ring.occupied();
                prop_assert_eq!(occupied.messages as usize, model.len());
                prop_assert_eq!(occupied.bytes, model_bytes);
            }
        }
    }
}
