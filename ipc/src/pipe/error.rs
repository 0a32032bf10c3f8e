//! Why a Pipe operation failed, shaped like crossbeam-channel's errors: one
//! enum per operation with flat variants, `From` the blocking operation's
//! error into the `try_`/`_timeout` one, the unsent value handed back through
//! `into_inner()`, and the same predicates on every type of a trio.

use std::fmt;
use std::io;

use crate::CodecError;

const DISCONNECTED_SEND: &str = "cannot send: the other end of the pipe is closed (disconnected)";
const DISCONNECTED_RECV: &str = "the other end of the pipe is closed (disconnected)";

/// Why [`Pipe::send`](super::Pipe::send) failed. The message was not sent
/// (not even in part); [`SendError::into_inner`] gives it back.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum SendError<T> {
    /// The receiving end is closed, or its process has exited.
    #[error("{DISCONNECTED_SEND}")]
    Disconnected(T),
    /// The encoded message is larger than this end's size limit.
    #[error("cannot send a {size}-byte message: over the pipe's size limit of {limit} bytes")]
    TooLarge {
        /// The message.
        value: T,
        /// Its encoded size in bytes.
        size: usize,
        /// The limit ([`Pipe::max_message_size`](super::Pipe::max_message_size)).
        limit: usize,
    },
    /// The message could not be serialised.
    #[error("cannot send on the pipe: {source}")]
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

/// Why [`Pipe::try_send`](super::Pipe::try_send) failed. The message was not
/// sent; [`TrySendError::into_inner`] gives it back.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum TrySendError<T> {
    /// The socket buffer is full: the receiver has not caught up.
    #[error("cannot send without waiting: the pipe is full")]
    Full(T),
    /// See [`SendError::Disconnected`].
    #[error("{DISCONNECTED_SEND}")]
    Disconnected(T),
    /// See [`SendError::TooLarge`].
    #[error("cannot send a {size}-byte message: over the pipe's size limit of {limit} bytes")]
    TooLarge {
        /// The message.
        value: T,
        /// Its encoded size in bytes.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// See [`SendError::Encode`].
    #[error("cannot send on the pipe: {source}")]
    Encode {
        /// The message.
        value: T,
        /// The codec's reason.
        source: CodecError,
    },
    /// See [`SendError::Io`].
    #[error("cannot send on the pipe: {source}")]
    Io {
        /// The message.
        value: T,
        /// The OS error.
        source: io::Error,
    },
}

/// Why [`Pipe::send_timeout`](super::Pipe::send_timeout) failed. The message
/// was not sent; [`SendTimeoutError::into_inner`] gives it back.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum SendTimeoutError<T> {
    /// The pipe stayed full for the whole timeout.
    #[error("cannot send: the pipe stayed full until the timeout")]
    Timeout(T),
    /// See [`SendError::Disconnected`].
    #[error("{DISCONNECTED_SEND}")]
    Disconnected(T),
    /// See [`SendError::TooLarge`].
    #[error("cannot send a {size}-byte message: over the pipe's size limit of {limit} bytes")]
    TooLarge {
        /// The message.
        value: T,
        /// Its encoded size in bytes.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// See [`SendError::Encode`].
    #[error("cannot send on the pipe: {source}")]
    Encode {
        /// The message.
        value: T,
        /// The codec's reason.
        source: CodecError,
    },
    /// See [`SendError::Io`].
    #[error("cannot send on the pipe: {source}")]
    Io {
        /// The message.
        value: T,
        /// The OS error.
        source: io::Error,
    },
}

/// `into_inner`, the predicates, `From<SendError>` and a `Debug` that omits
/// the message (so `T` need not be `Debug`), for the three send errors.
macro_rules! send_error_common {
    ($name:ident $(, $would_wait:ident)?) => {
        impl<T> $name<T> {
            /// The message that was not sent.
            pub fn into_inner(self) -> T {
                match self {
                    $(Self::$would_wait(value) |)?
                    Self::Disconnected(value)
                    | Self::TooLarge { value, .. }
                    | Self::Encode { value, .. }
                    | Self::Io { value, .. } => value,
                }
            }

            /// Whether the peer is gone (multiprocessing's `BrokenPipeError`).
            pub fn is_disconnected(&self) -> bool {
                matches!(self, Self::Disconnected(_))
            }

        }

        impl<T> fmt::Debug for $name<T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self {
                    $(Self::$would_wait(_) => f.write_str(concat!(stringify!($would_wait), "(..)")),)?
                    Self::Disconnected(_) => f.write_str("Disconnected(..)"),
                    Self::TooLarge { size, limit, .. } => f
                        .debug_struct("TooLarge")
                        .field("size", size)
                        .field("limit", limit)
                        .finish_non_exhaustive(),
                    Self::Encode { source, .. } => f
                        .debug_struct("Encode")
                        .field("source", source)
                        .finish_non_exhaustive(),
                    Self::Io { source, .. } => f
                        .debug_struct("Io")
                        .field("source", source)
                        .finish_non_exhaustive(),
                }
            }
        }
    };
}

send_error_common!(SendError);
send_error_common!(TrySendError, Full);
send_error_common!(SendTimeoutError, Timeout);

impl<T> SendError<T> {
    /// Always false: `send` waits for room (see [`TrySendError::is_full`]).
    pub fn is_full(&self) -> bool {
        false
    }

    /// Always false: `send` has no timeout (see [`SendTimeoutError::is_timeout`]).
    pub fn is_timeout(&self) -> bool {
        false
    }
}

impl<T> TrySendError<T> {
    /// Whether the pipe was full and the message was not sent.
    pub fn is_full(&self) -> bool {
        matches!(self, Self::Full(_))
    }

    /// Always false: `try_send` does not wait.
    pub fn is_timeout(&self) -> bool {
        false
    }
}

impl<T> SendTimeoutError<T> {
    /// Always false: `send_timeout` waits for room until its timeout.
    pub fn is_full(&self) -> bool {
        false
    }

    /// Whether the pipe stayed full until the timeout.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Timeout(_))
    }
}

/// A blocking send's failure is the same failure for `try_send` and `send_timeout`.
macro_rules! from_send_error {
    ($name:ident) => {
        impl<T> From<SendError<T>> for $name<T> {
            fn from(error: SendError<T>) -> Self {
                match error {
                    SendError::Disconnected(value) => Self::Disconnected(value),
                    SendError::TooLarge { value, size, limit } => {
                        Self::TooLarge { value, size, limit }
                    }
                    SendError::Encode { value, source } => Self::Encode { value, source },
                    SendError::Io { value, source } => Self::Io { value, source },
                }
            }
        }
    };
}

from_send_error!(TrySendError);
from_send_error!(SendTimeoutError);

impl<T> SendError<T> {
    pub(crate) fn from_bytes_error(error: SendBytesError, value: T) -> Self {
        match error {
            SendBytesError::Disconnected => SendError::Disconnected(value),
            SendBytesError::TooLarge { size, limit } => SendError::TooLarge { value, size, limit },
            SendBytesError::Io(source) => SendError::Io { value, source },
        }
    }
}

/// Why [`Pipe::send_bytes`](super::Pipe::send_bytes) failed. Nothing was sent.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SendBytesError {
    /// The receiving end is closed, or its process has exited.
    #[error("{DISCONNECTED_SEND}")]
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

impl SendBytesError {
    /// Whether the peer is gone.
    pub fn is_disconnected(&self) -> bool {
        matches!(self, SendBytesError::Disconnected)
    }
}

/// Why [`Pipe::recv`](super::Pipe::recv) failed.
///
/// After `BadFrame`, `Truncated` or `TooLarge` the byte stream is out of step
/// and every later receive on this end fails the same way; after `Decode` the
/// bad message has been consumed and the next one can be received.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecvError {
    /// The sending end is closed, or its process has exited, and every message
    /// it sent has been received (multiprocessing's `EOFError`).
    #[error("{DISCONNECTED_RECV}")]
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
    #[error("received a corrupt frame on the pipe: {0}")]
    BadFrame(String),
    /// The peer closed in the middle of a frame.
    #[error(
        "the other end of the pipe closed in the middle of a message ({received} of {expected} bytes arrived)"
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

/// Why [`Pipe::try_recv`](super::Pipe::try_recv) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TryRecvError {
    /// No whole message is waiting.
    #[error("no message is waiting on the pipe")]
    Empty,
    /// See [`RecvError::Disconnected`].
    #[error("{DISCONNECTED_RECV}")]
    Disconnected,
    /// See [`RecvError::TooLarge`].
    #[error("received a frame of {size} bytes, over the pipe's size limit of {limit} bytes")]
    TooLarge {
        /// The announced body size.
        size: usize,
        /// This end's limit.
        limit: usize,
    },
    /// See [`RecvError::BadFrame`].
    #[error("received a corrupt frame on the pipe: {0}")]
    BadFrame(String),
    /// See [`RecvError::Truncated`].
    #[error(
        "the other end of the pipe closed in the middle of a message ({received} of {expected} bytes arrived)"
    )]
    Truncated {
        /// Bytes of the frame (header included) that arrived.
        received: usize,
        /// Bytes the frame should have had.
        expected: usize,
    },
    /// See [`RecvError::Decode`].
    #[error(transparent)]
    Decode(CodecError),
    /// See [`RecvError::Io`].
    #[error("cannot receive on the pipe: {0}")]
    Io(#[source] io::Error),
}

/// Why [`Pipe::recv_timeout`](super::Pipe::recv_timeout) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecvTimeoutError {
    /// No whole message arrived within the timeout.
    #[error("no message arrived on the pipe before the timeout")]
    Timeout,
    /// See [`RecvError::Disconnected`].
    #[error("{DISCONNECTED_RECV}")]
    Disconnected,
    /// See [`RecvError::TooLarge`].
    #[error("received a frame of {size} bytes, over the pipe's size limit of {limit} bytes")]
    TooLarge {
        /// The announced body size.
        size: usize,
        /// This end's limit.
        limit: usize,
    },
    /// See [`RecvError::BadFrame`].
    #[error("received a corrupt frame on the pipe: {0}")]
    BadFrame(String),
    /// See [`RecvError::Truncated`].
    #[error(
        "the other end of the pipe closed in the middle of a message ({received} of {expected} bytes arrived)"
    )]
    Truncated {
        /// Bytes of the frame (header included) that arrived.
        received: usize,
        /// Bytes the frame should have had.
        expected: usize,
    },
    /// See [`RecvError::Decode`].
    #[error(transparent)]
    Decode(CodecError),
    /// See [`RecvError::Io`].
    #[error("cannot receive on the pipe: {0}")]
    Io(#[source] io::Error),
}

impl RecvError {
    /// Whether the peer is gone and nothing is left to receive.
    pub fn is_disconnected(&self) -> bool {
        matches!(self, Self::Disconnected)
    }

    /// Always false: `recv` waits for a message (see [`TryRecvError::is_empty`]).
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Always false: `recv` has no timeout (see [`RecvTimeoutError::is_timeout`]).
    pub fn is_timeout(&self) -> bool {
        false
    }
}

impl TryRecvError {
    /// Whether the peer is gone and nothing is left to receive.
    pub fn is_disconnected(&self) -> bool {
        matches!(self, Self::Disconnected)
    }

    /// Whether no whole message was waiting.
    pub fn is_empty(&self) -> bool {
        matches!(self, Self::Empty)
    }

    /// Always false: `try_recv` does not wait.
    pub fn is_timeout(&self) -> bool {
        false
    }
}

impl RecvTimeoutError {
    /// Whether the peer is gone and nothing is left to receive.
    pub fn is_disconnected(&self) -> bool {
        matches!(self, Self::Disconnected)
    }

    /// Always false: `recv_timeout` waits for a message until its timeout.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Whether no message arrived before the timeout.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Timeout)
    }
}

/// A blocking receive's failure is the same failure for `try_recv` and `recv_timeout`.
macro_rules! from_recv_error {
    ($name:ident) => {
        impl From<RecvError> for $name {
            fn from(error: RecvError) -> Self {
                match error {
                    RecvError::Disconnected => Self::Disconnected,
                    RecvError::TooLarge { size, limit } => Self::TooLarge { size, limit },
                    RecvError::BadFrame(reason) => Self::BadFrame(reason),
                    RecvError::Truncated { received, expected } => {
                        Self::Truncated { received, expected }
                    }
                    RecvError::Decode(source) => Self::Decode(source),
                    RecvError::Io(source) => Self::Io(source),
                }
            }
        }
    };
}

from_recv_error!(TryRecvError);
from_recv_error!(RecvTimeoutError);

impl RecvError {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn send_errors_hand_the_message_back_and_classify() {
        let send = SendError::Disconnected("m");
        assert!(send.is_disconnected() && !send.is_full() && !send.is_timeout());
        assert_eq!(send.into_inner(), "m");

        let full = TrySendError::Full(1u8);
        assert!(full.is_full() && !full.is_disconnected() && !full.is_timeout());
        assert_eq!(full.into_inner(), 1);

        let timeout = SendTimeoutError::Timeout(2u8);
        assert!(timeout.is_timeout() && !timeout.is_full() && !timeout.is_disconnected());
        assert_eq!(timeout.into_inner(), 2);

        let too_large = SendError::TooLarge {
            value: 3u8,
            size: 10,
            limit: 5,
        };
        let as_try: TrySendError<u8> = too_large.into();
        assert!(matches!(
            as_try,
            TrySendError::TooLarge {
                size: 10,
                limit: 5,
                ..
            }
        ));
        assert_eq!(as_try.into_inner(), 3);
        let as_timeout: SendTimeoutError<u8> = SendError::Disconnected(4u8).into();
        assert!(as_timeout.is_disconnected());
        assert_eq!(as_timeout.into_inner(), 4);
        assert_eq!(format!("{:?}", TrySendError::Full(())), "Full(..)");
    }

    #[test]
    fn recv_errors_classify_and_convert() {
        assert!(RecvError::Disconnected.is_disconnected());
        assert!(!RecvError::Disconnected.is_empty() && !RecvError::Disconnected.is_timeout());
        assert!(TryRecvError::Empty.is_empty() && !TryRecvError::Empty.is_disconnected());
        assert!(RecvTimeoutError::Timeout.is_timeout() && !RecvTimeoutError::Timeout.is_empty());

        let disconnected: TryRecvError = RecvError::Disconnected.into();
        assert!(disconnected.is_disconnected());
        let truncated: RecvTimeoutError = RecvError::Truncated {
            received: 1,
            expected: 8,
        }
        .into();
        assert!(matches!(
            truncated,
            RecvTimeoutError::Truncated {
                received: 1,
                expected: 8
            }
        ));
        assert!(truncated.to_string().contains("pipe"));
    }
}
