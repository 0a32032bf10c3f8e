//! [`Queue<T>`]: a typed MPMC queue in shared memory, usable from any number of producer and
//! consumer processes (fork children inherit it; spawn children receive it as an argument).

use std::cell::RefCell;
use std::fmt;
use std::marker::PhantomData;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::builder::QueueBuilder;
use super::errors::{
    GetError, GetTimeoutError, MessageError, PutError, PutTimeoutError, QueueBroken, QueueError,
    TryGetError, TryPutError,
};
use super::raw::{PopError, PushError, RawQueue};
use super::ring::RecordWriter;
use crate::codec::{self, CodecError};
use crate::platform::QueueSegment;
use postcard::ser_flavors::Flavor;

thread_local! {
    /// Reused buffers: records that wrap around the ring's end are gathered here to be decoded,
    /// and failed encodings are diagnosed here.
    static SCRATCH: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// Runs `work` with an empty scratch buffer of this thread (a fresh one if `work` nests).
fn with_scratch<R>(work: impl FnOnce(&mut Vec<u8>) -> R) -> R {
    let mut buffer = SCRATCH
        .with(|pool| pool.borrow_mut().pop())
        .unwrap_or_default();
    buffer.clear();
    let result = work(&mut buffer);
    // Keep ordinary buffers; give back memory after an unusually large message.
    if buffer.capacity() <= 1 << 20 {
        SCRATCH.with(|pool| pool.borrow_mut().push(buffer));
    }
    result
}

/// An MPMC queue of `T` (encoded with postcard) in a shared-memory ring.
///
/// Clones share the queue. Messages put by one producer are got in the order it put them; no
/// message is lost or duplicated under any number of producers and consumers, unless a process
/// is killed mid-operation (see the crate docs: at most its one in-flight message is lost).
pub struct Queue<T> {
    pub(super) raw: Arc<RawQueue>,
    pub(super) message: PhantomData<fn(T) -> T>,
}

/// Why a failed ring operation failed, before it is dressed as the caller's error type.
enum Refusal {
    Message(MessageError),
    Push(PushError),
}

impl<T: Serialize + DeserializeOwned> Queue<T> {
    /// An unbounded queue, as Python's: messages up to 1 GiB
    /// ([`DEFAULT_MAX_MESSAGE_BYTES`](super::DEFAULT_MAX_MESSAGE_BYTES)); what does not fit the
    /// ring is spilled to the queue's memory file (see [`QueueBuilder`]).
    pub fn new() -> Result<Self, QueueError> {
        QueueBuilder::new().build()
    }

    /// A queue holding at most `maxsize` messages (`0`: no message bound, as in Python).
    pub fn bounded(maxsize: usize) -> Result<Self, QueueError> {
        QueueBuilder::new().maxsize(maxsize).build()
    }

    /// Configures a queue's sizes.
    pub fn builder() -> QueueBuilder<T> {
        QueueBuilder::new()
    }
}

impl<T: Serialize> Queue<T> {
    /// Puts `value`, waiting for room as long as it takes.
    pub fn put(&self, value: T) -> Result<(), PutError<T>> {
        match self.put_until(&value, None) {
            Ok(()) => Ok(()),
            Err(Refusal::Message(error)) => Err(PutError::Refused(value, error)),
            Err(Refusal::Push(PushError::Closed)) => Err(PutError::Closed(value)),
            Err(Refusal::Push(PushError::Broken(error))) => Err(PutError::Broken(value, error)),
            Err(Refusal::Push(PushError::Spill(error))) => {
                Err(PutError::Refused(value, MessageError::Spill(error)))
            }
            Err(Refusal::Push(PushError::Full | PushError::FillFailed)) => Err(PutError::Broken(
                value,
                QueueBroken {
                    reason: "a put without deadline reported a timeout".into(),
                },
            )),
        }
    }

    /// Puts `value` only if there is room right now.
    pub fn try_put(&self, value: T) -> Result<(), TryPutError<T>> {
        let result = self.encoded_len(&value).and_then(|len| {
            let mut fill = encoder(&value);
            let mut encode = whole_encoder(&value);
            self.raw
                .try_push(len, &mut fill, &mut encode)
                .map_err(Refusal::Push)
        });
        match result.map_err(Refusal::fill_failed_is_unstable) {
            Ok(()) => Ok(()),
            Err(Refusal::Message(error)) => Err(TryPutError::Refused(value, error)),
            Err(Refusal::Push(PushError::Full | PushError::FillFailed)) => {
                Err(TryPutError::Full(value))
            }
            Err(Refusal::Push(PushError::Spill(error))) => {
                Err(TryPutError::Refused(value, MessageError::Spill(error)))
            }
            Err(Refusal::Push(PushError::Closed)) => Err(TryPutError::Closed(value)),
            Err(Refusal::Push(PushError::Broken(error))) => Err(TryPutError::Broken(value, error)),
        }
    }

    /// Puts `value`, waiting at most `timeout` for room.
    pub fn put_timeout(&self, value: T, timeout: Duration) -> Result<(), PutTimeoutError<T>> {
        match self.put_until(&value, Instant::now().checked_add(timeout)) {
            Ok(()) => Ok(()),
            Err(Refusal::Message(error)) => Err(PutTimeoutError::Refused(value, error)),
            Err(Refusal::Push(PushError::Full | PushError::FillFailed)) => {
                Err(PutTimeoutError::Timeout(value))
            }
            Err(Refusal::Push(PushError::Spill(error))) => {
                Err(PutTimeoutError::Refused(value, MessageError::Spill(error)))
            }
            Err(Refusal::Push(PushError::Closed)) => Err(PutTimeoutError::Closed(value)),
            Err(Refusal::Push(PushError::Broken(error))) => {
                Err(PutTimeoutError::Broken(value, error))
            }
        }
    }

    fn put_until(&self, value: &T, deadline: Option<Instant>) -> Result<(), Refusal> {
        let len = self.encoded_len(value)?;
        let mut fill = encoder(value);
        let mut encode = whole_encoder(value);
        self.raw
            .push(len, deadline, &mut fill, &mut encode)
            .map_err(Refusal::Push)
            .map_err(Refusal::fill_failed_is_unstable)
    }

    /// The encoded size of `value`, if the queue can carry it. This first encoding pass only
    /// counts bytes; the second, under the producer lock, writes straight into the ring.
    fn encoded_len(&self, value: &T) -> Result<u32, Refusal> {
        let limit = self.max_message_bytes();
        match postcard::serialize_with_flavor(value, postcard::ser_flavors::Size::default()) {
            Ok(size) if size <= limit => Ok(size as u32),
            Ok(size) => Err(Refusal::Message(MessageError::TooLarge { size, limit })),
            // Say why through the codec, which knows herd handles (their fds cannot go through
            // shared memory) from a failing Serialize impl.
            Err(error) => Err(Refusal::Message(with_scratch(
                |buffer| match codec::encode_into(value, buffer) {
                    Ok(handles) if !handles.is_empty() => MessageError::CarriesHandles {
                        count: handles.len(),
                    },
                    Ok(_) => MessageError::Encode(CodecError::encode(error)),
                    Err(error) => MessageError::Encode(error),
                },
            ))),
        }
    }
}

impl<T: DeserializeOwned> Queue<T> {
    /// Takes the next message, waiting as long as it takes; `Closed` once closed and drained.
    pub fn get(&self) -> Result<T, GetError> {
        with_scratch(
            |scratch| match self.raw.pop(None, scratch, &mut decode::<T>) {
                Ok(decoded) => decoded.map_err(GetError::Decode),
                Err(PopError::Closed) => Err(GetError::Closed),
                Err(PopError::Broken(error)) => Err(GetError::Broken(error)),
                Err(PopError::Empty) => Err(GetError::Broken(QueueBroken {
                    reason: "a get without deadline reported a timeout".into(),
                })),
            },
        )
    }

    /// Takes the next message if there is one right now.
    pub fn try_get(&self) -> Result<T, TryGetError> {
        with_scratch(
            |scratch| match self.raw.try_pop(scratch, &mut decode::<T>) {
                Ok(decoded) => decoded.map_err(TryGetError::Decode),
                Err(PopError::Empty) => Err(TryGetError::Empty),
                Err(PopError::Closed) => Err(TryGetError::Closed),
                Err(PopError::Broken(error)) => Err(TryGetError::Broken(error)),
            },
        )
    }

    /// Takes the next message, waiting at most `timeout`.
    pub fn get_timeout(&self, timeout: Duration) -> Result<T, GetTimeoutError> {
        let deadline = Instant::now().checked_add(timeout);
        with_scratch(
            |scratch| match self.raw.pop(deadline, scratch, &mut decode::<T>) {
                Ok(decoded) => decoded.map_err(GetTimeoutError::Decode),
                Err(PopError::Empty) => Err(GetTimeoutError::Timeout),
                Err(PopError::Closed) => Err(GetTimeoutError::Closed),
                Err(PopError::Broken(error)) => Err(GetTimeoutError::Broken(error)),
            },
        )
    }
}

impl Refusal {
    /// The second encoding pass wrote something else than the first measured.
    fn fill_failed_is_unstable(self) -> Self {
        match self {
            Refusal::Push(PushError::FillFailed) => Refusal::Message(MessageError::Unstable),
            other => other,
        }
    }
}

/// Encodes `value` straight into a ring record.
fn encoder<T: Serialize>(
    value: &T,
) -> impl FnMut(&mut RecordWriter<'_, QueueSegment>) -> bool + '_ {
    move |writer| postcard::serialize_with_flavor(value, RecordFlavor(writer)).is_ok()
}

/// Encodes `value` into a buffer, for the spill file.
fn whole_encoder<T: Serialize>(value: &T) -> impl FnMut(&mut Vec<u8>) -> bool + '_ {
    move |buffer| match postcard::to_extend(value, std::mem::take(buffer)) {
        Ok(bytes) => {
            *buffer = bytes;
            true
        }
        Err(_) => false,
    }
}

/// The postcard output that is a ring record.
struct RecordFlavor<'w, 'a>(&'w mut RecordWriter<'a, QueueSegment>);

impl Flavor for RecordFlavor<'_, '_> {
    type Output = ();

    fn try_push(&mut self, byte: u8) -> postcard::Result<()> {
        self.try_extend(&[byte])
    }

    fn try_extend(&mut self, bytes: &[u8]) -> postcard::Result<()> {
        if self.0.write(bytes) {
            Ok(())
        } else {
            Err(postcard::Error::SerializeBufferFull)
        }
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

/// Decodes one whole message (run in place on the ring, under the consumer lock).
fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    codec::decode(bytes, Vec::new())
}

impl<T> Queue<T> {
    /// Messages in the queue. Approximate while other processes put or get: a lock-free
    /// snapshot, exact when the queue is quiet.
    pub fn len(&self) -> usize {
        self.raw.len() as usize
    }

    /// Whether the queue holds no message (snapshot, like [`Queue::len`]).
    pub fn is_empty(&self) -> bool {
        self.raw.len() == 0
    }

    /// Whether a put would have to wait right now: `maxsize` messages are in, or, on a queue
    /// bounded in bytes, the ring has no room even for an empty message (snapshot, like
    /// [`Queue::len`]). A queue that spills is full only at `maxsize`.
    pub fn is_full(&self) -> bool {
        self.raw.is_full()
    }

    /// Closes the queue for every process: later puts fail with `Closed`; consumers take what is
    /// left and then get `Closed`. Waiting producers and consumers are woken.
    pub fn close(&self) -> Result<(), QueueBroken> {
        self.raw.close()
    }

    /// Whether [`Queue::close`] was called (by any process).
    pub fn is_closed(&self) -> bool {
        self.raw.closed()
    }

    /// The message bound (`None`: bounded only by bytes).
    pub fn maxsize(&self) -> Option<usize> {
        match self.raw.layout().maxsize {
            0 => None,
            maxsize => Some(maxsize as usize),
        }
    }

    /// Whether messages that do not fit the ring are spilled to the queue's memory file (true
    /// unless built with [`QueueBuilder::capacity_bytes`]).
    pub fn spills(&self) -> bool {
        self.raw.layout().spill
    }

    /// Size of the ring in bytes.
    pub fn capacity_bytes(&self) -> usize {
        self.raw.layout().capacity as usize
    }

    /// Largest encoded message a put accepts.
    pub fn max_message_bytes(&self) -> usize {
        self.raw.layout().max_message as usize
    }
}

impl<T> Clone for Queue<T> {
    fn clone(&self) -> Self {
        Queue {
            raw: Arc::clone(&self.raw),
            message: PhantomData,
        }
    }
}

impl<T> fmt::Debug for Queue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Queue")
            .field("message", &std::any::type_name::<T>())
            .field("layout", &self.raw.layout())
            .finish_non_exhaustive()
    }
}

/// A descriptor that a handle's encoding carries (see `codec`).
pub(super) struct FdRef<'a>(pub(super) BorrowedFd<'a>);

impl Serialize for FdRef<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        codec::serialize_fd(self.0, serializer)
    }
}

/// A descriptor taken out of a received message (see `codec`).
pub(super) struct FdOwned(pub(super) OwnedFd);

impl<'de> Deserialize<'de> for FdOwned {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        codec::deserialize_fd(deserializer).map(FdOwned)
    }
}

/// Travels as its shared-memory fd and its spill file's fd (spawn arguments, Pipe messages).
impl<T> Serialize for Queue<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        (FdRef(self.raw.as_fd()), self.raw.spill_fd().map(FdRef)).serialize(serializer)
    }
}

impl<'de, T> Deserialize<'de> for Queue<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let (FdOwned(fd), spill) = <(FdOwned, Option<FdOwned>)>::deserialize(deserializer)?;
        let raw = RawQueue::from_fd(fd, spill.map(|spill| spill.0), std::any::type_name::<T>())
            .map_err(codec::de_error)?;
        Ok(Queue {
            raw: Arc::new(raw),
            message: PhantomData,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_handle_travels_as_its_fd_and_shares_the_ring() {
        let queue: Queue<String> = Queue::new().unwrap();
        let encoded = codec::encode(&queue).unwrap();
        assert_eq!(encoded.fds.len(), 2, "the ring and the spill file");
        let received: Queue<String> = codec::decode(&encoded.bytes, encoded.fds).unwrap();
        queue.put("through the copy".into()).unwrap();
        assert_eq!(received.try_get().unwrap(), "through the copy");
        assert_eq!(received.max_message_bytes(), queue.max_message_bytes());
    }

    #[test]
    fn outside_herd_a_handle_does_not_serialise_and_inside_a_queue_it_is_refused() {
        let queue: Queue<u8> = Queue::new().unwrap();
        assert!(postcard::to_allocvec(&queue).is_err());
        let carrier: Queue<Queue<u8>> = Queue::new().unwrap();
        match carrier.try_put(queue) {
            Err(TryPutError::Refused(_, MessageError::CarriesHandles { count: 2 })) => {}
            other => panic!("handle inside a queue message: {other:?}"),
        }
    }

    #[test]
    fn a_handle_is_refused_as_joinable_or_as_another_message_type() {
        let plain: Queue<u32> = Queue::new().unwrap();
        let encoded = codec::encode(&plain).unwrap();
        let error = codec::decode::<crate::JoinableQueue<u32>>(&encoded.bytes, encoded.fds);
        assert!(error.unwrap_err().to_string().contains("plain Queue"));
        let encoded = codec::encode(&plain).unwrap();
        let error = codec::decode::<Queue<String>>(&encoded.bytes, encoded.fds).unwrap_err();
        assert!(
            error.to_string().contains("alloc::string::String"),
            "{error}"
        );
    }

    /// Encodes as a different integer every time it is serialised.
    struct Restless(std::cell::Cell<u64>);

    impl Serialize for Restless {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            let next = self.0.get() * 1000 + 1;
            self.0.set(next);
            serializer.serialize_u64(next)
        }
    }

    #[test]
    fn a_serialize_impl_that_changes_between_passes_is_refused_and_nothing_is_put() {
        let queue: Queue<u64> = Queue::new().unwrap();
        let raw = Queue::<Restless> {
            raw: Arc::clone(&queue.raw),
            message: PhantomData,
        };
        match raw.put(Restless(std::cell::Cell::new(0))) {
            Err(PutError::Refused(_, MessageError::Unstable)) => {}
            other => panic!("unstable encoding: {other:?}"),
        }
        assert!(queue.is_empty());
        queue.put(5).unwrap();
        assert_eq!(queue.try_get().unwrap(), 5);
    }

    #[test]
    fn a_message_of_the_wrong_type_is_consumed_and_the_next_one_decodes() {
        let texts: Queue<String> = Queue::new().unwrap();
        let numbers = Queue::<u8> {
            raw: Arc::clone(&texts.raw),
            message: PhantomData,
        };
        texts.put("not a number".into()).unwrap();
        numbers.put(7).unwrap();
        assert!(matches!(numbers.try_get(), Err(TryGetError::Decode(_))));
        assert_eq!(numbers.try_get().unwrap(), 7);
    }
}
