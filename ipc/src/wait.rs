//! `wait`: block until any of several Pipe ends (or other descriptors) is
//! ready to read, like Python's `multiprocessing.connection.wait`.

use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use nix::poll::PollFlags;

use crate::platform;

/// Something [`wait`] can watch: a descriptor that becomes readable, plus
/// input the object may already hold in memory.
pub trait Waitable {
    /// The descriptor that turns readable when input arrives.
    fn wait_fd(&self) -> BorrowedFd<'_>;

    /// Whether a read would return at once without the descriptor being
    /// readable (a Pipe end with a whole message already buffered).
    fn ready_without_waiting(&self) -> bool {
        false
    }
}

/// Waits up to `timeout` (`None`: forever; zero: just look) until at least
/// one of `objects` is ready, and returns the indices of all that are, in
/// order; an empty list means the timeout passed.
///
/// A Pipe end is ready when a receive will not wait for the peer to start a
/// message: one is buffered or has begun to arrive, or the peer has closed
/// (the receive then returns `Disconnected`).
pub fn wait(objects: &[&dyn Waitable], timeout: Option<Duration>) -> io::Result<Vec<usize>> {
    let buffered: Vec<usize> = objects
        .iter()
        .enumerate()
        .filter(|(_, object)| object.ready_without_waiting())
        .map(|(i, _)| i)
        .collect();
    let timeout = if buffered.is_empty() {
        timeout
    } else {
        Some(Duration::ZERO)
    };
    let fds: Vec<BorrowedFd<'_>> = objects.iter().map(|object| object.wait_fd()).collect();
    let readable = platform::poll(&fds, PollFlags::POLLIN, timeout)?.unwrap_or_default();
    let mut ready: Vec<usize> = buffered.into_iter().chain(readable).collect();
    ready.sort_unstable();
    ready.dedup();
    Ok(ready)
}

impl Waitable for BorrowedFd<'_> {
    fn wait_fd(&self) -> BorrowedFd<'_> {
        *self
    }
}

impl Waitable for OwnedFd {
    fn wait_fd(&self) -> BorrowedFd<'_> {
        std::os::fd::AsFd::as_fd(self)
    }
}

impl Waitable for UnixStream {
    fn wait_fd(&self) -> BorrowedFd<'_> {
        std::os::fd::AsFd::as_fd(self)
    }
}
