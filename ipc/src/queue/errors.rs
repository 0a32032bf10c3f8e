//! Errors of queue operations, one type per operation as for channels: the value that could not
//! be put comes back through `into_inner()`.

use std::fmt;

use crate::CodecError;

/// Why a queue could not be created.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueueError {
    /// A builder setting is out of range; the message names it.
    #[error("invalid queue configuration: {0}")]
    InvalidConfig(String),
    /// The shared memory could not be created or initialised.
    #[error("cannot create the queue's shared memory: {0}")]
    SharedMemory(#[source] std::io::Error),
}

/// Why a message can never go into this queue, whatever its state: retrying cannot help.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MessageError {
    /// The encoded message exceeds the queue's `max_message_bytes`. It is refused whole, never
    /// truncated.
    #[error("message of {size} bytes exceeds the queue's limit of {limit} bytes (refused, not truncated)")]
    TooLarge {
        /// The encoded size in bytes.
        size: usize,
        /// The queue's `max_message_bytes`.
        limit: usize,
    },
    /// The value's `Serialize` impl failed.
    #[error(transparent)]
    Encode(CodecError),
    /// The value's `Serialize` impl produced a different encoding on its second pass (the queue
    /// measures a message, then encodes it straight into shared memory).
    #[error("message refused: its Serialize impl is not deterministic (two passes differ)")]
    Unstable,
    /// The value contains herd handles (file descriptors), which bytes in shared memory cannot
    /// carry.
    #[error("message carries {count} herd handle(s) (file descriptors); a shared-memory queue carries bytes only: send handles over a Pipe or as spawn arguments")]
    CarriesHandles {
        /// How many handles the value holds.
        count: usize,
    },
    /// The queue's spill file could not take the message (out of memory, or over a memory
    /// limit); nothing was put.
    #[error("message refused: the queue's spill file could not store it: {0}")]
    Spill(std::io::Error),
}

/// The queue's shared state cannot be used: its memory was overwritten against the protocol, or
/// its lock failed. Every later operation fails the same way.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the queue is unusable: {reason}")]
pub struct QueueBroken {
    pub(crate) reason: String,
}

/// Writes one put error: the variant for "would have to wait" (if any), then the variants every
/// put shares, `into_inner`, the predicates and a `Debug` that omits the message.
macro_rules! put_error {
    ($(#[$meta:meta])* $name:ident $(, $would_wait:ident, $would_wait_text:literal)?) => {
        $(#[$meta])*
        #[derive(thiserror::Error)]
        #[non_exhaustive]
        pub enum $name<T> {
            $(
                #[doc = concat!("The message could not go in: ", $would_wait_text, ".")]
                #[error($would_wait_text)]
                $would_wait(T),
            )?
            /// The queue was closed: it accepts no more messages.
            #[error("cannot put: the queue is closed")]
            Closed(T),
            /// The message itself is refused (too large, not encodable, carries handles); retrying
            /// cannot help.
            #[error("message refused by the queue: {1}")]
            Refused(T, #[source] MessageError),
            /// The queue's shared state is unusable.
            #[error("{1}")]
            Broken(T, #[source] QueueBroken),
        }

        impl<T> $name<T> {
            /// The message that was not put.
            pub fn into_inner(self) -> T {
                match self {
                    $(Self::$would_wait(value) |)?
                    Self::Closed(value)
                    | Self::Refused(value, _)
                    | Self::Broken(value, _) => value,
                }
            }

            /// Whether the queue was closed.
            pub fn is_closed(&self) -> bool {
                matches!(self, Self::Closed(_))
            }
        }

        impl<T> fmt::Debug for $name<T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self {
                    $(Self::$would_wait(_) => f.write_str(concat!(stringify!($would_wait), "(..)")),)?
                    Self::Closed(_) => f.write_str("Closed(..)"),
                    Self::Refused(_, error) => f.debug_tuple("Refused").field(&"..").field(error).finish(),
                    Self::Broken(_, error) => f.debug_tuple("Broken").field(&"..").field(error).finish(),
                }
            }
        }
    };
}

put_error!(
    /// Error of [`Queue::put`](super::Queue::put). The message comes back through `into_inner()`.
    PutError
);
put_error!(
    /// Error of [`Queue::try_put`](super::Queue::try_put). The message comes back through
    /// `into_inner()`.
    TryPutError,
    Full,
    "the queue is full"
);
put_error!(
    /// Error of [`Queue::put_timeout`](super::Queue::put_timeout). The message comes back through
    /// `into_inner()`.
    PutTimeoutError,
    Timeout,
    "the queue stayed full until the timeout"
);

impl<T> PutError<T> {
    /// Always false: `put` waits for room (see [`TryPutError::is_full`]).
    pub fn is_full(&self) -> bool {
        false
    }

    /// Always false: `put` has no timeout (see [`PutTimeoutError::is_timeout`]).
    pub fn is_timeout(&self) -> bool {
        false
    }
}

impl<T> TryPutError<T> {
    /// Whether the queue was full.
    pub fn is_full(&self) -> bool {
        matches!(self, Self::Full(_))
    }

    /// Always false: `try_put` does not wait.
    pub fn is_timeout(&self) -> bool {
        false
    }
}

impl<T> PutTimeoutError<T> {
    /// Always false: `put_timeout` waits for room until its timeout.
    pub fn is_full(&self) -> bool {
        false
    }

    /// Whether the queue stayed full until the timeout.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Timeout(_))
    }
}

/// A blocking put's failure is the same failure for `try_put` and `put_timeout`.
macro_rules! from_put_error {
    ($name:ident) => {
        impl<T> From<PutError<T>> for $name<T> {
            fn from(error: PutError<T>) -> Self {
                match error {
                    PutError::Closed(value) => Self::Closed(value),
                    PutError::Refused(value, error) => Self::Refused(value, error),
                    PutError::Broken(value, error) => Self::Broken(value, error),
                }
            }
        }
    };
}

from_put_error!(TryPutError);
from_put_error!(PutTimeoutError);

const CLOSED_AND_DRAINED: &str = "the queue is closed and every message in it has been taken";

/// Error of [`Queue::get`](super::Queue::get).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GetError {
    /// The queue was closed and every message in it has been taken.
    #[error("{CLOSED_AND_DRAINED}")]
    Closed,
    /// The message taken could not be decoded as the queue's type (it is consumed: a message
    /// that does not decode would fail for every consumer).
    #[error("a message taken from the queue does not decode: {0}")]
    Decode(#[source] CodecError),
    /// The queue's shared state is unusable.
    #[error(transparent)]
    Broken(QueueBroken),
}

/// Error of [`Queue::try_get`](super::Queue::try_get).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TryGetError {
    /// No message is in the queue right now.
    #[error("the queue is empty")]
    Empty,
    /// See [`GetError::Closed`].
    #[error("{CLOSED_AND_DRAINED}")]
    Closed,
    /// See [`GetError::Decode`].
    #[error("a message taken from the queue does not decode: {0}")]
    Decode(#[source] CodecError),
    /// The queue's shared state is unusable.
    #[error(transparent)]
    Broken(QueueBroken),
}

/// Error of [`Queue::get_timeout`](super::Queue::get_timeout).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GetTimeoutError {
    /// No message arrived before the timeout.
    #[error("no message arrived in the queue before the timeout")]
    Timeout,
    /// See [`GetError::Closed`].
    #[error("{CLOSED_AND_DRAINED}")]
    Closed,
    /// See [`GetError::Decode`].
    #[error("a message taken from the queue does not decode: {0}")]
    Decode(#[source] CodecError),
    /// The queue's shared state is unusable.
    #[error(transparent)]
    Broken(QueueBroken),
}

impl GetError {
    /// Whether the queue is closed and drained.
    pub fn is_closed(&self) -> bool {
        matches!(self, Self::Closed)
    }

    /// Always false: `get` waits for a message (see [`TryGetError::is_empty`]).
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Always false: `get` has no timeout (see [`GetTimeoutError::is_timeout`]).
    pub fn is_timeout(&self) -> bool {
        false
    }
}

impl TryGetError {
    /// Whether the queue is closed and drained.
    pub fn is_closed(&self) -> bool {
        matches!(self, Self::Closed)
    }

    /// Whether the queue was empty (and not closed).
    pub fn is_empty(&self) -> bool {
        matches!(self, Self::Empty)
    }

    /// Always false: `try_get` does not wait.
    pub fn is_timeout(&self) -> bool {
        false
    }
}

impl GetTimeoutError {
    /// Whether the queue is closed and drained.
    pub fn is_closed(&self) -> bool {
        matches!(self, Self::Closed)
    }

    /// Always false: `get_timeout` waits for a message until its timeout.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Whether no message arrived before the timeout.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Timeout)
    }
}

/// A blocking get's failure is the same failure for `try_get` and `get_timeout`.
macro_rules! from_get_error {
    ($name:ident) => {
        impl From<GetError> for $name {
            fn from(error: GetError) -> Self {
                match error {
                    GetError::Closed => Self::Closed,
                    GetError::Decode(error) => Self::Decode(error),
                    GetError::Broken(error) => Self::Broken(error),
                }
            }
        }
    };
}

from_get_error!(TryGetError);
from_get_error!(GetTimeoutError);

/// Error of [`JoinableQueue::task_done`](super::JoinableQueue::task_done).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("task_done() called on the queue more times than messages were put in it")]
pub struct TaskDoneError;

/// Error of [`JoinableQueue::join_timeout`](super::JoinableQueue::join_timeout).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("timed out waiting for the queue's tasks: {unfinished} still unfinished")]
pub struct JoinTimeoutError {
    /// Messages put but not yet marked done when the timeout passed.
    pub unfinished: u32,
}

impl JoinTimeoutError {
    /// Always true: the only way `join_timeout` fails.
    pub fn is_timeout(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_errors_hand_the_message_back_and_classify() {
        let closed = PutError::Closed("job");
        assert!(closed.is_closed() && !closed.is_full() && !closed.is_timeout());
        assert_eq!(closed.into_inner(), "job");

        let full = TryPutError::Full(1u8);
        assert!(full.is_full() && !full.is_closed() && !full.is_timeout());
        assert_eq!(full.into_inner(), 1);

        let timeout = PutTimeoutError::Timeout(2u8);
        assert!(timeout.is_timeout() && !timeout.is_full() && !timeout.is_closed());
        assert_eq!(timeout.into_inner(), 2);

        let refused = PutError::Refused(3u8, MessageError::Unstable);
        let as_try: TryPutError<u8> = refused.into();
        assert!(matches!(
            as_try,
            TryPutError::Refused(3, MessageError::Unstable)
        ));
        let as_timeout: PutTimeoutError<u8> = PutError::Closed(4u8).into();
        assert!(as_timeout.is_closed());
        assert_eq!(as_timeout.into_inner(), 4);
        assert_eq!(format!("{:?}", TryPutError::Full(())), "Full(..)");
    }

    #[test]
    fn get_errors_classify_and_convert() {
        assert!(GetError::Closed.is_closed() && !GetError::Closed.is_empty());
        assert!(TryGetError::Empty.is_empty() && !TryGetError::Empty.is_closed());
        assert!(GetTimeoutError::Timeout.is_timeout() && !GetTimeoutError::Timeout.is_empty());
        let closed: TryGetError = GetError::Closed.into();
        assert!(closed.is_closed());
        let closed: GetTimeoutError = GetError::Closed.into();
        assert!(closed.is_closed() && !closed.is_timeout());
        assert!(JoinTimeoutError { unfinished: 2 }.is_timeout());
    }
}
