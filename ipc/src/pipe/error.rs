//! Why a Pipe operation failed: one error type per operation, each send error
//! handing the unsent value back through `into_inner()`.

use std::fmt;
use std::io;

use crate::CodecError;

/// Why [`Pipe::send`](crate::Pipe::send) failed. The message was not sent
/// (not even in part); [`SendError::into_inner`] gives it back.
#[derive(thiserror::Error)]
pub enum SendError<T> {
    /// The receiving end is closed, or its process has exited.
    #[error("cannot send: the other end of the pipe is closed (disconnected)")]
    Disconnected(T),
    /// The encoded message is larger than this end's size limit.
    #[error("cannot send a {size}-byte message: over the pipe's size limit of {limit} bytes")]
    TooLarge {
        /// The message.
        value: T,
        /// Its encoded size in bytes.
        size: usize,
        /// The limit ([`Pipe::max_message_size`](crate::Pipe::max_message_size)).
        limit: usize,
    },
    /// The message could not be serialised.
    #[error("cannot send: {source}")]
    Encode {
        /// The message.
        value: T,
        /// The codec's reason.
        source: CodecError,
    },
    /// The operating system refused the send.
    #[error("cannot send on the pipe: {source}")]
    Io {
        /// The message.
        value: T,
        /// The OS error.
        source: io::Error,
    },
}

impl<T> SendError<T> {
    /// The message that was not sent.
    pub fn into_inner(self) -> T {
        match self {
            SendError::Disconnected(value)
            | SendError::TooLarge { value, .. }
            | SendError::Encode { value, .. }
            | SendError::Io { value, .. } => value,
        }
    }

    /// Whether the peer is gone (multiprocessing's `BrokenPipeError`).
    pub fn is_disconnected(&self) -> bool {
        matches!(self, SendError::Disconnected(_))
    }

    pub(crate) fn from_bytes_error(error: SendBytesError, value: T) -> Self {
        match error {
            SendBytesError::Disconnected => SendError::Disconnected(value),
            SendBytesError::TooLarge { size, limit } => SendError::TooLarge { value, size, limit },
            SendBytesError::Io(source) => SendError::Io { value, source },
        }
    }
}

impl<T> fmt::Debug for SendError<T> {
    /// Omits the message so `T` need not be `Debug`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Disconnected(_) => f.write_str("Disconnected(..)"),
            SendError::TooLarge { size, limit, .. } => f
                .debug_struct("TooLarge")
                .field("size", size)
                .field("limit", limit)
                .finish_non_exhaustive(),
            SendError::Encode { source, .. } => f
                .debug_struct("Encode")
                .field("source", source)
                .finish_non_exhaustive(),
            SendError::Io { source, .. } => f
                .debug_struct("Io")
                .field("source", source)
                .finish_non_exhaustive(),
        }
    }
}

/// Why [`Pipe::try_send`](crate::Pipe::try_send) failed.
#[derive(thiserror::Error)]
pub enum TrySendError<T> {
    /// The socket buffer is full: the receiver has not caught up.
    #[error("cannot send without waiting: the pipe is full")]
    Full(T),
    /// Sending failed for a reason other than a full pipe.
    #[error(transparent)]
    Send(#[from] SendError<T>),
}

impl<T> TrySendError<T> {
    /// The message that was not sent.
    pub fn into_inner(self) -> T {
        match self {
            TrySendError::Full(value) => value,
            TrySendError::Send(err) => err.into_inner(),
        }
    }

    /// Whether the peer is gone.
    pub fn is_disconnected(&self) -> bool {
        matches!(self, TrySendError::Send(err) if err.is_disconnected())
    }
}

impl<T> fmt::Debug for TrySendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrySendError::Full(_) => f.write_str("Full(..)"),
            TrySendError::Send(err) => f.debug_tuple("Send").field(err).finish(),
        }
    }
}

/// Why [`Pipe::send_timeout`](crate::Pipe::send_timeout) failed.
#[derive(thiserror::Error)]
pub enum SendTimeoutError<T> {
    /// The pipe stayed full for the whole timeout.
    #[error("cannot send: the pipe stayed full until the timeout")]
    Timeout(T),
    /// Sending failed for a reason other than a full pipe.
    #[error(transparent)]
    Send(#[from] SendError<T>),
}

impl<T> SendTimeoutError<T> {
    /// The message that was not sent.
    pub fn into_inner(self) -> T {
        match self {
            SendTimeoutError::Timeout(value) => value,
            SendTimeoutError::Send(err) => err.into_inner(),
        }
    }

    /// Whether the peer is gone.
    pub fn is_disconnected(&self) -> bool {
        matches!(self, SendTimeoutError::Send(err) if err.is_disconnected())
    }
}

impl<T> fmt::Debug for SendTimeoutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendTimeoutError::Timeout(_) => f.write_str("Timeout(..)"),
            SendTimeoutError::Send(err) => f.debug_tuple("Send").field(err).finish(),
        }
    }
}

/// Why [`Pipe::send_bytes`](crate::Pipe::send_bytes) failed. Nothing was sent.
#[derive(Debug, thiserror::Error)]
pub enum SendBytesError {
    /// The receiving end is closed, or its process has exited.
    #[error("cannot send: the other end of the pipe is closed (disconnected)")]
    Disconnected,
    /// The message is larger than this end's size limit.
    #[error("cannot send a {size}-byte message: over the pipe's size limit of {limit} bytes")]
    TooLarge {
        /// The message size in bytes.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The operating system refused the send.
    #[error("cannot send on the pipe: {0}")]
    Io(#[source] io::Error),
}

/// Why [`Pipe::recv`](crate::Pipe::recv) failed.
///
/// After `BadFrame`, `Truncated` or `TooLarge` the byte stream is out of step
/// and every later receive on this end fails the same way; after `Decode` the
/// bad message has been consumed and the next one can be received.
#[derive(Debug, thiserror::Error)]
pub enum RecvError {
    /// The sending end is closed, or its process has exited, and every message
    /// it sent has been received (multiprocessing's `EOFError`).
    #[error("the other end of the pipe is closed (disconnected)")]
    Disconnected,
    /// A frame announced a body larger than this end's size limit; nothing
    /// was allocated for it.
    #[error("received a frame of {size} bytes, over the pipe's size limit of {limit} bytes")]
    TooLarge {
        /// The announced body size.
        size: usize,
        /// This end's limit.
        limit: usize,
    },
    /// The bytes on the socket are not a Pipe frame.
    #[error("received a corrupt frame: {0}")]
    BadFrame(String),
    /// The peer closed in the middle of a frame.
    #[error(
        "the other end closed in the middle of a message ({received} of {expected} bytes arrived)"
    )]
    Truncated {
        /// Bytes of the frame (header included) that arrived.
        received: usize,
        /// Bytes the frame should have had (the header size if the header
        /// itself was cut short).
        expected: usize,
    },
    /// The frame is intact but does not hold a value of the expected type.
    #[error(transparent)]
    Decode(#[from] CodecError),
    /// The operating system refused the receive.
    #[error("cannot receive on the pipe: {0}")]
    Io(#[source] io::Error),
}

impl RecvError {
    /// Whether the peer is gone and nothing is left to receive.
    pub fn is_disconnected(&self) -> bool {
        matches!(self, RecvError::Disconnected)
    }

    /// A copy for replaying a sticky stream error; only the stream-breaking
    /// variants are ever replayed.
    pub(crate) fn replay(&self) -> RecvError {
        match self {
            RecvError::Disconnected => RecvError::Disconnected,
            RecvError::TooLarge { size, limit } => RecvError::TooLarge {
                size: *size,
                limit: *limit,
            },
            RecvError::BadFrame(reason) => RecvError::BadFrame(reason.clone()),
            RecvError::Truncated { received, expected } => RecvError::Truncated {
                received: *received,
                expected: *expected,
            },
            RecvError::Decode(err) => RecvError::BadFrame(err.to_string()),
            RecvError::Io(err) => RecvError::Io(io::Error::new(err.kind(), err.to_string())),
        }
    }
}

/// Why [`Pipe::try_recv`](crate::Pipe::try_recv) failed.
#[derive(Debug, thiserror::Error)]
pub enum TryRecvError {
    /// No whole message is waiting.
    #[error("no message is waiting on the pipe")]
    Empty,
    /// Receiving failed for a reason other than an empty pipe.
    #[error(transparent)]
    Recv(#[from] RecvError),
}

impl TryRecvError {
    /// Whether the peer is gone and nothing is left to receive.
    pub fn is_disconnected(&self) -> bool {
        matches!(self, TryRecvError::Recv(err) if err.is_disconnected())
    }
}

/// Why [`Pipe::recv_timeout`](crate::Pipe::recv_timeout) failed.
#[derive(Debug, thiserror::Error)]
pub enum RecvTimeoutError {
    /// No whole message arrived within the timeout.
    #[error("no message arrived on the pipe before the timeout")]
    Timeout,
    /// Receiving failed for a reason other than the timeout.
    #[error(transparent)]
    Recv(#[from] RecvError),
}

impl RecvTimeoutError {
    /// Whether the peer is gone and nothing is left to receive.
    pub fn is_disconnected(&self) -> bool {
        matches!(self, RecvTimeoutError::Recv(err) if err.is_disconnected())
    }
}
