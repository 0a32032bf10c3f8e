//! Errors of manager operations: one type for calls that can only fail on the manager itself, and
//! per-operation types for the queue's non-blocking and timed variants.

use std::io;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::address::Address;

/// Why a manager call failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ManagerError {
    /// The text is not a manager address.
    #[error("bad manager address {address:?}: {reason}")]
    BadAddress { address: String, reason: String },
    /// The authkey given is unusable.
    #[error("bad manager authkey: {0}")]
    BadAuthkey(String),
    /// The operating system's random generator failed.
    #[error("cannot generate a random challenge or key: {0}")]
    Random(String),
    /// No server answers at the address (not started, or gone).
    #[error("manager at {address} is unreachable: {source}")]
    Unreachable { address: Address, source: io::Error },
    /// The server refused our authkey.
    #[error("manager at {address} refused the authkey")]
    AuthRefused { address: Address },
    /// The server could not prove it knows the authkey: wrong key or an impostor.
    #[error("manager at {address} failed to prove it knows the authkey")]
    ServerNotAuthenticated { address: Address },
    /// The connection broke during a call: the server died or closed it.
    #[error("connection to manager at {address} lost: {reason}")]
    ConnectionLost { address: Address, reason: String },
    /// The server did not answer in time (it may be stopped or overloaded).
    #[error("manager at {address} did not answer within {after:?}")]
    NoAnswer { address: Address, after: Duration },
    /// A key, value or message could not be encoded or decoded.
    #[error("cannot {action} {what}: {reason}")]
    Codec {
        action: &'static str,
        what: &'static str,
        reason: String,
    },
    /// The server carried out the request and reports it is invalid.
    #[error("manager refused the request: {0}")]
    Remote(#[from] RemoteError),
    /// Starting or stopping the server process failed.
    #[error("manager server process: {0}")]
    Server(String),
    /// Other I/O around the server (its private directory, its address file).
    #[error("{context}: {source}")]
    Io { context: String, source: io::Error },
}

/// What the server reports when it refuses a request it read and understood.
#[derive(Debug, Clone, PartialEq, Eq, Error, Serialize, Deserialize)]
#[non_exhaustive]
pub enum RemoteError {
    /// No object with this id exists on the server.
    #[error("no shared object with id {0}")]
    NoSuchObject(u64),
    /// The object exists but is of another kind than the proxy expects.
    #[error("shared object {id} is a {actual}, not a {expected}")]
    WrongKind {
        id: u64,
        expected: String,
        actual: String,
    },
    /// Releasing a lock this thread does not hold.
    #[error("{kind} {id} is not held by this thread")]
    NotOwner { kind: String, id: u64 },
    /// A list index past the end.
    #[error("list index {index} out of range for length {len}")]
    IndexOutOfRange { index: u64, len: u64 },
    /// A list operation on an empty list (Python's `IndexError: pop from empty list`).
    #[error("{0} on an empty list")]
    EmptyList(String),
    /// A dict key that is not there (Python's `KeyError`).
    #[error("key not in the dict (encoded as {0} bytes)")]
    KeyNotFound(usize),
    /// A list value that is not there (Python's `ValueError: x not in list`).
    #[error("value not in the list (encoded as {0} bytes)")]
    ValueNotFound(usize),
    /// A namespace attribute that was never set.
    #[error("namespace has no attribute {0:?}")]
    NoAttribute(String),
    /// An atomic operation met a value of the wrong shape.
    #[error("value at the key is not {0}")]
    WrongValueShape(String),
    /// An increment would leave the i64 range.
    #[error("increment overflows i64")]
    Overflow,
    /// A semaphore released past its bound, or a similar counting error.
    #[error("{0}")]
    Invalid(String),
    /// No shared type is registered under this type id in the server's program.
    #[error("no shared type {0:?} is registered in the manager's program (register_shared!)")]
    UnknownType(String),
    /// Two shared types are registered under one type id.
    #[error("shared type id {0:?} is registered more than once")]
    DuplicateType(String),
    /// A registered type's constructor refused its `Init` value.
    #[error("cannot create a {typeid}: {message}")]
    CreateFailed { typeid: String, message: String },
    /// The registered type has no method of this name.
    #[error("{typeid} has no method {method:?}")]
    NoSuchMethod { typeid: String, method: String },
    /// A method of a registered type failed (returned an error, could not decode its
    /// arguments, or panicked).
    #[error("{typeid}.{method} failed: {message}")]
    Method {
        typeid: String,
        method: String,
        message: String,
    },
}

// The queue proxy's errors wrap `ManagerError` rather than repeating its variants: apart from
// "full", "empty" and "timed out", every way a queue call fails is the connection's or the
// server's, the same for every proxy method, and code that handles those once (reconnect, report)
// can take them out of any of these with `?` or a match on `Manager`.

/// Why [`QueueProxy::try_put`](super::QueueProxy::try_put) failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum TryPutError {
    /// The manager's queue is at its maximum size.
    #[error("the manager's queue is full")]
    Full,
    /// The manager call itself failed.
    #[error(transparent)]
    Manager(#[from] ManagerError),
}

/// Why [`QueueProxy::put_timeout`](super::QueueProxy::put_timeout) failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum PutTimeoutError {
    /// The manager's queue stayed full for the whole timeout.
    #[error("the manager's queue stayed full until the timeout")]
    Timeout,
    /// The manager call itself failed.
    #[error(transparent)]
    Manager(#[from] ManagerError),
}

/// Why [`QueueProxy::try_get`](super::QueueProxy::try_get) failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum TryGetError {
    /// The manager's queue is empty.
    #[error("the manager's queue is empty")]
    Empty,
    /// The manager call itself failed.
    #[error(transparent)]
    Manager(#[from] ManagerError),
}

/// Why [`QueueProxy::get_timeout`](super::QueueProxy::get_timeout) failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum GetTimeoutError {
    /// Nothing arrived in the manager's queue within the timeout.
    #[error("the manager's queue stayed empty until the timeout")]
    Timeout,
    /// The manager call itself failed.
    #[error(transparent)]
    Manager(#[from] ManagerError),
}

impl ManagerError {
    /// Whether the server is gone: unreachable, or the connection broke during the call.
    pub fn is_disconnected(&self) -> bool {
        matches!(self, Self::Unreachable { .. } | Self::ConnectionLost { .. })
    }

    /// Whether a list index was out of range, or the list empty (Python's `IndexError`).
    pub fn is_index_error(&self) -> bool {
        matches!(
            self,
            Self::Remote(RemoteError::IndexOutOfRange { .. } | RemoteError::EmptyList(_))
        )
    }

    /// Whether a dict key was missing (Python's `KeyError`).
    pub fn is_key_error(&self) -> bool {
        matches!(self, Self::Remote(RemoteError::KeyNotFound(_)))
    }

    /// Whether a list value was missing (Python's `ValueError` from `remove` and `index`).
    pub fn is_value_error(&self) -> bool {
        matches!(self, Self::Remote(RemoteError::ValueNotFound(_)))
    }

    /// Whether the object the proxy stands for no longer exists on the server (every reference
    /// to it was dropped, or it never existed there).
    pub fn is_no_such_object(&self) -> bool {
        matches!(self, Self::Remote(RemoteError::NoSuchObject(_)))
    }
}

impl TryPutError {
    /// Whether the manager is gone (see [`ManagerError::is_disconnected`]).
    pub fn is_disconnected(&self) -> bool {
        matches!(self, Self::Manager(error) if error.is_disconnected())
    }

    /// Whether the queue was full.
    pub fn is_full(&self) -> bool {
        matches!(self, Self::Full)
    }

    /// Always false: this operation does not wait.
    pub fn is_timeout(&self) -> bool {
        false
    }
}

impl PutTimeoutError {
    /// Whether the manager is gone (see [`ManagerError::is_disconnected`]).
    pub fn is_disconnected(&self) -> bool {
        matches!(self, Self::Manager(error) if error.is_disconnected())
    }

    /// Always false: this operation waits for room.
    pub fn is_full(&self) -> bool {
        false
    }

    /// Whether the timeout elapsed.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Timeout)
    }
}

impl TryGetError {
    /// Whether the manager is gone (see [`ManagerError::is_disconnected`]).
    pub fn is_disconnected(&self) -> bool {
        matches!(self, Self::Manager(error) if error.is_disconnected())
    }

    /// Whether the queue was empty.
    pub fn is_empty(&self) -> bool {
        matches!(self, Self::Empty)
    }

    /// Always false: this operation does not wait.
    pub fn is_timeout(&self) -> bool {
        false
    }
}

impl GetTimeoutError {
    /// Whether the manager is gone (see [`ManagerError::is_disconnected`]).
    pub fn is_disconnected(&self) -> bool {
        matches!(self, Self::Manager(error) if error.is_disconnected())
    }

    /// Always false: this operation waits for an item.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Whether the timeout elapsed.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_error_predicates() {
        let lost = || ManagerError::ConnectionLost {
            address: Address::Tcp("127.0.0.1:1".parse().unwrap()),
            reason: "reset".into(),
        };
        assert!(lost().is_disconnected());
        assert!(TryPutError::Full.is_full() && !TryPutError::Full.is_timeout());
        assert!(TryGetError::Empty.is_empty() && !TryGetError::Empty.is_timeout());
        assert!(GetTimeoutError::Timeout.is_timeout() && !GetTimeoutError::Timeout.is_empty());
        assert!(PutTimeoutError::Timeout.is_timeout() && !PutTimeoutError::Timeout.is_full());
        let from: TryGetError = lost().into();
        assert!(from.is_disconnected() && !from.is_empty());
    }
}
