//! The errors of `connection`: one per operation, each naming the address or peer at fault.

use std::io;

use thiserror::Error;

use super::address::Address;

/// An address string that is not `unix:PATH`, `abstract:NAME` or `tcp:HOST:PORT`.
#[derive(Debug, Error)]
#[error("bad connection address {address:?}: {reason}")]
pub struct AddressError {
    /// The text that was parsed.
    pub address: String,
    /// What is wrong with it.
    pub reason: String,
}

/// Why [`Listener::bind`](super::Listener::bind) failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum BindError {
    /// Something already listens there (or, for a filesystem path, a file is in the way).
    #[error("cannot listen on {address}: the address is in use")]
    InUse {
        /// The address asked for.
        address: Address,
    },
    /// The operating system refused to create or bind the socket.
    #[error("cannot listen on {address}: {source}")]
    Io {
        /// The address asked for.
        address: Address,
        /// The OS error.
        source: io::Error,
    },
}

/// Why [`Listener::accept`](super::Listener::accept) or
/// [`accept_timeout`](super::Listener::accept_timeout) failed. Only `Io` concerns the listener
/// itself; after the others, accept again.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum AcceptError {
    /// No client connected within the timeout.
    #[error("no client connected to {address} before the timeout")]
    Timeout {
        /// The listener's address.
        address: Address,
    },
    /// The client did not prove it knows the authkey (multiprocessing's `AuthenticationError`);
    /// it was told so and its connection closed.
    #[error("client {peer} on {address} failed authentication: {reason}")]
    Authentication {
        /// The listener's address.
        address: Address,
        /// Who connected (pid and uid for a Unix socket, the socket address for TCP).
        peer: String,
        /// What went wrong.
        reason: String,
    },
    /// The client connected but the handshake broke off: it closed, stalled past the handshake
    /// deadline, or is not a herd client.
    #[error("handshake with client {peer} on {address} failed: {reason}")]
    Handshake {
        /// The listener's address.
        address: Address,
        /// Who connected.
        peer: String,
        /// What went wrong.
        reason: String,
    },
    /// The operating system refused to accept.
    #[error("cannot accept on {address}: {source}")]
    Io {
        /// The listener's address.
        address: Address,
        /// The OS error.
        source: io::Error,
    },
}

impl AcceptError {
    /// Whether no client came before the timeout.
    pub fn is_timeout(&self) -> bool {
        matches!(self, AcceptError::Timeout { .. })
    }

    /// Whether a client came with the wrong key.
    pub fn is_authentication(&self) -> bool {
        matches!(self, AcceptError::Authentication { .. })
    }
}

/// Why [`Client::connect`](super::Client::connect) failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// Nothing accepts connections there, or the operating system refused the connection.
    #[error("cannot connect to {address}: {source}")]
    Unreachable {
        /// The address connected to.
        address: Address,
        /// The OS error.
        source: io::Error,
    },
    /// The two sides do not share the authkey: the listener refused ours, or could not prove it
    /// knows it (multiprocessing's `AuthenticationError`).
    #[error("authentication with {address} failed: {reason}")]
    Authentication {
        /// The address connected to.
        address: Address,
        /// What went wrong.
        reason: String,
    },
    /// The handshake broke off: the listener did not accept within the deadline, closed, or is
    /// not a herd listener.
    #[error("handshake with {address} failed: {reason}")]
    Handshake {
        /// The address connected to.
        address: Address,
        /// What went wrong.
        reason: String,
    },
}

impl ConnectError {
    /// Whether the keys did not match.
    pub fn is_authentication(&self) -> bool {
        matches!(self, ConnectError::Authentication { .. })
    }
}
