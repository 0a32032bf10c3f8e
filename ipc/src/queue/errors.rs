//! Errors of queue operations, one type per operation as for channels: the value that could not
//! be put comes back through `into_inner()`.

use std::fmt;

use crate::CodecError;

/// Why a queue could not be created.
#[derive(Debug, thiserror::Error)]
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
pub enum MessageError {
    /// The encoded message exceeds the queue's `max_message_bytes`. It is refused whole, never
    /// truncated.
    #[error("message of {size} bytes exceeds the queue's limit of {limit} bytes (refused, not truncated)")]
    TooLarge { size: usize, limit: usize },
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
    CarriesHandles { count: usize },
}

/// The queue's shared state cannot be used: its memory was overwritten against the protocol, or
/// its lock failed. Every later operation fails the same way.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("queue unusable: {reason}")]
pub struct QueueBroken {
    pub(crate) reason: String,
}

macro_rules! put_error {
    ($(#[$meta:meta])* $name:ident, $would_block:ident, $would_block_text:literal) => {
        $(#[$meta])*
        #[derive(thiserror::Error)]
        pub enum $name<T> {
            #[doc = concat!("The message could not go in: ", $would_block_text, ".")]
            #[error($would_block_text)]
            $would_block(T),
            /// The queue was closed: it accepts no more messages.
            #[error("queue is closed")]
            Closed(T),
            /// The message itself is refused (too large, not encodable, carries handles).
            #[error("message refused: {1}")]
            Refused(T, #[source] MessageError),
            /// The queue's shared state is unusable.
            #[error("{1}")]
            Broken(T, #[source] QueueBroken),
        }

        impl<T> $name<T> {
            /// The message that was not put.
            pub fn into_inner(self) -> T {
                match self {
                    Self::$would_block(value)
                    | Self::Closed(value)
                    | Self::Refused(value, _)
                    | Self::Broken(value, _) => value,
                }
            }
        }

        impl<T> fmt::Debug for $name<T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self {
                    Self::$would_block(_) => f.write_str(concat!(stringify!($would_block), "(..)")),
                    Self::Closed(_) => f.write_str("Closed(..)"),
                    Self::Refused(_, error) => f.debug_tuple("Refused").field(&"..").field(error).finish(),
                    Self::Broken(_, error) => f.debug_tuple("Broken").field(&"..").field(error).finish(),
                }
            }
        }
    };
}

put_error!(
    /// Error of [`Queue::try_put`](crate::Queue::try_put).
    TryPutError,
    Full,
    "queue is full"
);
put_error!(
    /// Error of [`Queue::put_timeout`](crate::Queue::put_timeout).
    PutTimeoutError,
    Timeout,
    "timed out waiting for room in the queue"
);

/// Error of [`Queue::put`](crate::Queue::put).
#[derive(thiserror::Error)]
pub enum PutError<T> {
    /// The queue was closed: it accepts no more messages.
    #[error("queue is closed")]
    Closed(T),
    /// The message itself is refused (too large, not encodable, carries handles).
    #[error("message refused: {1}")]
    Refused(T, #[source] MessageError),
    /// The queue's shared state is unusable.
    #[error("{1}")]
    Broken(T, #[source] QueueBroken),
}

impl<T> PutError<T> {
    /// The message that was not put.
    pub fn into_inner(self) -> T {
        match self {
            Self::Closed(value) | Self::Refused(value, _) | Self::Broken(value, _) => value,
        }
    }
}

impl<T> fmt::Debug for PutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Closed(_) => f.write_str("Closed(..)"),
            Self::Refused(_, error) => f.debug_tuple("Refused").field(&"..").field(error).finish(),
            Self::Broken(_, error) => f.debug_tuple("Broken").field(&"..").field(error).finish(),
        }
    }
}

/// Error of [`Queue::get`](crate::Queue::get).
#[derive(Debug, thiserror::Error)]
pub enum GetError {
    /// The queue was closed and every message in it has been taken.
    #[error("queue is closed and drained")]
    Closed,
    /// The message taken could not be decoded as the queue's type (it is consumed: a message
    /// that does not decode would fail for every consumer).
    #[error(transparent)]
    Decode(CodecError),
    /// The queue's shared state is unusable.
    #[error(transparent)]
    Broken(QueueBroken),
}

/// Error of [`Queue::try_get`](crate::Queue::try_get).
#[derive(Debug, thiserror::Error)]
pub enum TryGetError {
    /// No message is in the queue right now.
    #[error("queue is empty")]
    Empty,
    /// The queue was closed and every message in it has been taken.
    #[error("queue is closed and drained")]
    Closed,
    /// See [`GetError::Decode`].
    #[error(transparent)]
    Decode(CodecError),
    /// The queue's shared state is unusable.
    #[error(transparent)]
    Broken(QueueBroken),
}

/// Error of [`Queue::get_timeout`](crate::Queue::get_timeout).
#[derive(Debug, thiserror::Error)]
pub enum GetTimeoutError {
    /// No message arrived before the timeout.
    #[error("timed out waiting for a message")]
    Timeout,
    /// The queue was closed and every message in it has been taken.
    #[error("queue is closed and drained")]
    Closed,
    /// See [`GetError::Decode`].
    #[error(transparent)]
    Decode(CodecError),
    /// The queue's shared state is unusable.
    #[error(transparent)]
    Broken(QueueBroken),
}

/// Error of [`JoinableQueue::task_done`](crate::JoinableQueue::task_done).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("task_done() called more times than messages were put in the queue")]
pub struct TaskDoneError;

/// Error of [`JoinableQueue::join_timeout`](crate::JoinableQueue::join_timeout).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("timed out waiting for the queue's tasks: {unfinished} still unfinished")]
pub struct QueueJoinTimeoutError {
    /// Messages put but not yet marked done when the timeout passed.
    pub unfinished: u32,
}
