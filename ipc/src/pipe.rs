//! The Pipe: two connected ends over a Unix socket pair carrying typed
//! messages (postcard, with herd handles passed as descriptors), like
//! Python's `multiprocessing.Pipe`.
//!
//! [`Pipe::new`] gives a duplex pair (each end sends and receives);
//! [`Pipe::simplex`] gives a [`PipeSender`] and a [`PipeReceiver`]. An end is
//! `Send + Sync`; concurrent senders never interleave their frames, and a
//! message goes to exactly one receiver. An end travels to another process by
//! being moved into a forked child's closure, passed as a spawn argument, or
//! sent inside another herd message (its `Serialize` passes the descriptor).

mod channel;
mod error;
mod frame;

pub use channel::DEFAULT_PIPE_MESSAGE_LIMIT;
pub use error::{
    RecvError, RecvTimeoutError, SendBytesError, SendError, SendTimeoutError, TryRecvError,
    TrySendError,
};

use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::codec;
use crate::platform::Socket;
use crate::wait::Waitable;
use channel::{Channel, Deadline, SendFailure};

/// One end of a duplex pipe carrying messages of type `T` both ways.
///
/// Dropping the last copy of an end (in every process that holds it) makes
/// the other end's receives fail with [`RecvError::Disconnected`] once it has
/// received everything sent before.
pub struct Pipe<T> {
    channel: Channel,
    message: PhantomData<fn(T) -> T>,
}

/// The sending end of a simplex pipe (see [`Pipe::simplex`]).
pub struct PipeSender<T> {
    pipe: Pipe<T>,
}

/// The receiving end of a simplex pipe (see [`Pipe::simplex`]).
pub struct PipeReceiver<T> {
    pipe: Pipe<T>,
}

impl<T> Pipe<T> {
    /// Creates two connected duplex ends.
    pub fn new() -> io::Result<(Pipe<T>, Pipe<T>)> {
        let (a, b) = Socket::pair()?;
        Ok((Pipe::from_socket(a), Pipe::from_socket(b)))
    }

    /// Creates a one-way pipe: what the sender sends, the receiver receives.
    pub fn simplex() -> io::Result<(PipeSender<T>, PipeReceiver<T>)> {
        let (a, b) = Socket::pair()?;
        // Enforced by the kernel too, so a copy of an end that travelled
        // elsewhere cannot be used the wrong way round.
        a.shutdown_read()?;
        b.shutdown_write()?;
        Ok((
            PipeSender {
                pipe: Pipe::from_socket(a),
            },
            PipeReceiver {
                pipe: Pipe::from_socket(b),
            },
        ))
    }

    /// A duplex end over an already connected stream socket (an accepted or
    /// connected `connection` socket, after its handshake).
    pub(crate) fn from_connected(fd: OwnedFd) -> Pipe<T> {
        Pipe::from_socket(Socket::from(fd))
    }

    fn from_socket(socket: Socket) -> Pipe<T> {
        Pipe {
            channel: Channel::new(socket, DEFAULT_PIPE_MESSAGE_LIMIT),
            message: PhantomData,
        }
    }

    /// The largest message body, in bytes, this end sends or accepts
    /// (default [`DEFAULT_PIPE_MESSAGE_LIMIT`], 64 MiB).
    pub fn max_message_size(&self) -> usize {
        self.channel.max_message_size()
    }

    /// Sets the size limit. A larger message is refused on send
    /// ([`SendError::TooLarge`]) and on receive ([`RecvError::TooLarge`],
    /// before anything is allocated for it). Set it on both ends; it travels
    /// with an end that is sent to another process. Capped at 4 GiB - 1, the
    /// largest frame the format can describe.
    pub fn set_max_message_size(&mut self, bytes: usize) {
        self.channel.set_max_message_size(bytes);
    }

    /// Sends `bytes` as one message, to be received whole by `recv_bytes`.
    pub fn send_bytes(&self, bytes: &[u8]) -> Result<(), SendBytesError> {
        self.channel.send_bytes(bytes)
    }

    /// Receives the next message as its raw bytes (for a typed message, its
    /// postcard encoding; descriptors sent with it are closed). Blocks until
    /// one arrives.
    pub fn recv_bytes(&self) -> Result<Vec<u8>, RecvError> {
        self.channel
            .recv_frame(Deadline::Never, |bytes, _fds| bytes.to_vec())
            .and_then(|received| received.ok_or_else(unreachable_timeout))
    }

    /// Waits up to `timeout` (`None`: forever; zero: just look) until a
    /// receive would return at once: a whole message is here, or the peer has
    /// closed, or the stream is broken. Returns whether that happened.
    pub fn poll(&self, timeout: Option<Duration>) -> io::Result<bool> {
        self.channel
            .poll(timeout.map_or(Deadline::Never, Deadline::after))
    }
}

impl<T: Serialize> Pipe<T> {
    /// Sends `value`, waiting while the pipe is full.
    ///
    /// Errors: the peer is gone ([`SendError::Disconnected`]), the encoded
    /// message is over the size limit (`TooLarge`: nothing is sent), or it
    /// cannot be serialised. The value comes back in the error.
    pub fn send(&self, value: T) -> Result<(), SendError<T>> {
        match self.channel.send_value(&value, Deadline::Never) {
            Ok(()) => Ok(()),
            Err(failure) => Err(send_error(failure, value)),
        }
    }

    /// Sends `value` if the pipe has room now, else gives it back in
    /// [`TrySendError::Full`]. A message larger than the room left is still
    /// finished once its first part is out (the stream must stay in step), so
    /// this may wait for the peer to read that much.
    pub fn try_send(&self, value: T) -> Result<(), TrySendError<T>> {
        match self
            .channel
            .send_value(&value, Deadline::after(Duration::ZERO))
        {
            Ok(()) => Ok(()),
            Err(SendFailure::Full) => Err(TrySendError::Full(value)),
            Err(failure) => Err(send_error(failure, value).into()),
        }
    }

    /// Sends `value`, waiting up to `timeout` for room to start it (then as
    /// [`Pipe::try_send`]: a started message is always finished).
    pub fn send_timeout(&self, value: T, timeout: Duration) -> Result<(), SendTimeoutError<T>> {
        match self.channel.send_value(&value, Deadline::after(timeout)) {
            Ok(()) => Ok(()),
            Err(SendFailure::Full) => Err(SendTimeoutError::Timeout(value)),
            Err(failure) => Err(send_error(failure, value).into()),
        }
    }
}

impl<T: DeserializeOwned> Pipe<T> {
    /// Receives the next message, waiting until one arrives.
    ///
    /// [`RecvError::Disconnected`] once the peer is closed or dead and every
    /// message it sent has been received; [`RecvError::Decode`] if the message
    /// is not a `T` (it is consumed; the next one can still be received).
    pub fn recv(&self) -> Result<T, RecvError> {
        self.recv_until(Deadline::Never)?
            .ok_or_else(unreachable_timeout)
    }

    /// Receives a message if a whole one is already here.
    pub fn try_recv(&self) -> Result<T, TryRecvError> {
        self.recv_until(Deadline::after(Duration::ZERO))?
            .ok_or(TryRecvError::Empty)
    }

    /// Receives the next message, waiting up to `timeout` for it.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<T, RecvTimeoutError> {
        self.recv_until(Deadline::after(timeout))?
            .ok_or(RecvTimeoutError::Timeout)
    }

    fn recv_until(&self, deadline: Deadline) -> Result<Option<T>, RecvError> {
        match self
            .channel
            .recv_frame(deadline, |bytes, fds| codec::decode::<T>(bytes, fds))?
        {
            None => Ok(None),
            Some(decoded) => decoded.map(Some).map_err(RecvError::Decode),
        }
    }
}

/// A blocking receive ends with a frame or an error, never by timing out.
fn unreachable_timeout() -> RecvError {
    RecvError::Io(io::Error::new(
        io::ErrorKind::TimedOut,
        "receive without a deadline timed out",
    ))
}

fn send_error<T>(failure: SendFailure, value: T) -> SendError<T> {
    match failure {
        SendFailure::Send(err) => SendError::from_bytes_error(err, value),
        SendFailure::Encode(source) => SendError::Encode { value, source },
        SendFailure::Full => SendError::Io {
            value,
            source: io::ErrorKind::WouldBlock.into(),
        },
    }
}

impl<T> AsFd for Pipe<T> {
    /// The socket, for polling alongside other descriptors. A receive may
    /// have buffered a whole message that the socket no longer shows as
    /// readable: call [`Pipe::poll`] with a zero timeout, or use
    /// [`wait`](crate::wait), rather than trusting `poll(2)` alone.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.channel.socket().as_fd()
    }
}

impl<T> Waitable for Pipe<T> {
    fn wait_fd(&self) -> BorrowedFd<'_> {
        self.as_fd()
    }

    fn ready_without_waiting(&self) -> bool {
        self.channel.ready_without_reading()
    }

    fn ready_once_readable(&self) -> bool {
        self.channel.ready_now()
    }
}

impl<T> fmt::Debug for Pipe<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pipe")
            .field("fd", &self.as_fd())
            .field("max_message_size", &self.max_message_size())
            .finish()
    }
}

/// The wire form of an end: its socket (passed as a descriptor) and its size
/// limit.
impl<T> Serialize for Pipe<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if let Some(reason) = self.channel.travel_blocker() {
            return Err(crate::codec::ser_error(format_args!(
                "cannot send this Pipe end: {reason}"
            )));
        }
        (FdOut(self.as_fd()), self.max_message_size() as u64).serialize(serializer)
    }
}

impl<'de, T> Deserialize<'de> for Pipe<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let (FdIn(fd), limit) = <(FdIn, u64)>::deserialize(deserializer)?;
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        Ok(Pipe {
            channel: Channel::new(Socket::from(fd), limit),
            message: PhantomData,
        })
    }
}

/// Serialises a borrowed descriptor through the codec's side channel.
struct FdOut<'fd>(BorrowedFd<'fd>);

impl Serialize for FdOut<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        codec::serialize_fd(self.0, serializer)
    }
}

/// Takes a descriptor back out of the codec's side channel.
struct FdIn(OwnedFd);

impl<'de> Deserialize<'de> for FdIn {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        codec::deserialize_fd(deserializer).map(FdIn)
    }
}

impl<T> PipeSender<T> {
    /// See [`Pipe::max_message_size`].
    pub fn max_message_size(&self) -> usize {
        self.pipe.max_message_size()
    }

    /// See [`Pipe::set_max_message_size`].
    pub fn set_max_message_size(&mut self, bytes: usize) {
        self.pipe.set_max_message_size(bytes);
    }

    /// See [`Pipe::send_bytes`].
    pub fn send_bytes(&self, bytes: &[u8]) -> Result<(), SendBytesError> {
        self.pipe.send_bytes(bytes)
    }
}

impl<T: Serialize> PipeSender<T> {
    /// See [`Pipe::send`].
    pub fn send(&self, value: T) -> Result<(), SendError<T>> {
        self.pipe.send(value)
    }

    /// See [`Pipe::try_send`].
    pub fn try_send(&self, value: T) -> Result<(), TrySendError<T>> {
        self.pipe.try_send(value)
    }

    /// See [`Pipe::send_timeout`].
    pub fn send_timeout(&self, value: T, timeout: Duration) -> Result<(), SendTimeoutError<T>> {
        self.pipe.send_timeout(value, timeout)
    }
}

impl<T> PipeReceiver<T> {
    /// See [`Pipe::max_message_size`].
    pub fn max_message_size(&self) -> usize {
        self.pipe.max_message_size()
    }

    /// See [`Pipe::set_max_message_size`].
    pub fn set_max_message_size(&mut self, bytes: usize) {
        self.pipe.set_max_message_size(bytes);
    }

    /// See [`Pipe::recv_bytes`].
    pub fn recv_bytes(&self) -> Result<Vec<u8>, RecvError> {
        self.pipe.recv_bytes()
    }

    /// See [`Pipe::poll`].
    pub fn poll(&self, timeout: Option<Duration>) -> io::Result<bool> {
        self.pipe.poll(timeout)
    }
}

impl<T: DeserializeOwned> PipeReceiver<T> {
    /// See [`Pipe::recv`].
    pub fn recv(&self) -> Result<T, RecvError> {
        self.pipe.recv()
    }

    /// See [`Pipe::try_recv`].
    pub fn try_recv(&self) -> Result<T, TryRecvError> {
        self.pipe.try_recv()
    }

    /// See [`Pipe::recv_timeout`].
    pub fn recv_timeout(&self, timeout: Duration) -> Result<T, RecvTimeoutError> {
        self.pipe.recv_timeout(timeout)
    }
}

macro_rules! simplex_end_traits {
    ($end:ident) => {
        impl<T> AsFd for $end<T> {
            /// See [`Pipe`'s `as_fd`](Pipe#impl-AsFd-for-Pipe<T>).
            fn as_fd(&self) -> BorrowedFd<'_> {
                self.pipe.as_fd()
            }
        }

        impl<T> fmt::Debug for $end<T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_tuple(stringify!($end)).field(&self.pipe).finish()
            }
        }

        impl<T> Serialize for $end<T> {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                self.pipe.serialize(serializer)
            }
        }

        impl<'de, T> Deserialize<'de> for $end<T> {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                Pipe::deserialize(deserializer).map(|pipe| $end { pipe })
            }
        }
    };
}

simplex_end_traits!(PipeSender);
simplex_end_traits!(PipeReceiver);

impl<T> Waitable for PipeReceiver<T> {
    fn wait_fd(&self) -> BorrowedFd<'_> {
        self.pipe.wait_fd()
    }

    fn ready_without_waiting(&self) -> bool {
        self.pipe.ready_without_waiting()
    }

    fn ready_once_readable(&self) -> bool {
        self.pipe.ready_once_readable()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn ends_carried_in_consecutive_messages_keep_their_own_descriptors() {
        let (a, b) = Pipe::<(u32, Pipe<u32>)>::new().unwrap();
        let mut nears = Vec::new();
        for i in 0..5 {
            let (near, far) = Pipe::<u32>::new().unwrap();
            a.send((i, far)).unwrap();
            nears.push(near);
        }
        // All five frames (and their descriptors) are queued before the first
        // receive, so reads may take several frames at once.
        for (i, near) in nears.iter().enumerate() {
            let (index, far) = b.recv_timeout(Duration::from_secs(5)).unwrap();
            assert_eq!(index as usize, i);
            far.send(index * 10).unwrap();
            assert_eq!(
                near.recv_timeout(Duration::from_secs(5)).unwrap(),
                index * 10
            );
        }
    }

    #[test]
    fn concurrent_senders_never_interleave_frames() {
        let (a, b) = Pipe::<Vec<u32>>::new().unwrap();
        let a = Arc::new(a);
        let senders: Vec<_> = (0..3u32)
            .map(|id| {
                let a = Arc::clone(&a);
                std::thread::spawn(move || {
                    for n in 0..50u32 {
                        // 64 KiB+ messages: several socket writes each.
                        a.send(vec![id * 1000 + n; 20_000]).unwrap();
                    }
                })
            })
            .collect();
        let mut next = [0u32; 3];
        for _ in 0..150 {
            let message = b.recv_timeout(Duration::from_secs(10)).unwrap();
            let first = message[0];
            assert!(message.iter().all(|&x| x == first), "interleaved frame");
            let (id, n) = ((first / 1000) as usize, first % 1000);
            assert_eq!(n, next[id], "sender {id} out of order");
            next[id] += 1;
        }
        for sender in senders {
            sender.join().unwrap();
        }
    }

    #[test]
    fn an_end_with_unread_input_refuses_to_travel() {
        let (a, b) = Pipe::<u8>::new().unwrap();
        let (carrier, _other) = Pipe::<Pipe<u8>>::new().unwrap();
        a.send(1).unwrap();
        a.send(2).unwrap();
        assert_eq!(b.recv().unwrap(), 1); // the read buffered message 2 as well
                                          // postcard drops a custom error's text, so only the kind is checked.
        let err = carrier.send(b).unwrap_err();
        assert!(matches!(err, SendError::Encode { .. }), "{err}");
        let b = err.into_inner();
        assert_eq!(b.recv().unwrap(), 2);
        carrier.send(b).unwrap();
    }

    #[test]
    fn a_buffered_bad_header_counts_as_ready_for_wait() {
        let (a, b) = Pipe::<u8>::new().unwrap();
        a.send(1).unwrap();
        nix::unistd::write(a.as_fd(), b"garbage!").unwrap();
        // One read takes the message and the garbage behind it.
        assert_eq!(b.recv().unwrap(), 1);
        let ready = crate::wait(&[&b], Some(Duration::ZERO)).unwrap();
        assert_eq!(
            ready,
            [0],
            "wait must report the end whose recv fails at once"
        );
        assert!(matches!(b.try_recv(), Err(TryRecvError::BadFrame(_))));
    }

    #[test]
    fn an_end_outside_herd_is_a_serde_error() {
        let (a, _b) = Pipe::<u8>::new().unwrap();
        assert!(postcard::to_allocvec(&a).is_err());
    }

    #[test]
    fn size_limit_travels_with_the_end() {
        let (carrier, other) = Pipe::<Pipe<u8>>::new().unwrap();
        let (mut a, _b) = Pipe::<u8>::new().unwrap();
        a.set_max_message_size(77);
        carrier.send(a).unwrap();
        assert_eq!(other.recv().unwrap().max_message_size(), 77);
    }
}
