//! `Link`: the worker's end of its connection to the supervisor.
//!
//! The worker loop is written against this small trait rather than a concrete channel so it can
//! run over a herd-ipc `Pipe` in real workers and over an in-memory channel in unit tests.
use std::time::Duration;

use crate::{FromWorker, ToWorker};

/// A duplex, message-framed connection to the supervisor. `Sync`: the heartbeat thread sends
/// on it while the loop's thread receives and sends; whole messages never interleave.
pub trait Link: Sync {
    /// Why a send or receive failed; any error means the supervisor is gone or the link broke.
    type Error: std::error::Error + Send + Sync + 'static;
    /// Sends one message.
    fn send(&self, message: &FromWorker) -> Result<(), Self::Error>;
    /// The size, in bytes, above which one message costs more than one send (a pipe sends it
    /// in parts): the worker flushes its batch of results before a result would cross it, so
    /// that a batch of small results never adds up to a message in parts. `usize::MAX` (the
    /// default): no such size.
    fn max_message_size(&self) -> usize {
        usize::MAX
    }
    /// Waits up to `timeout` for one message; `Ok(None)` when none came in time.
    fn recv_timeout(&self, timeout: Duration) -> Result<Option<ToWorker>, Self::Error>;
}
