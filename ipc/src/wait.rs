//! `wait`: block until any of several Pipe ends (or other descriptors) is
//! ready to read, like Python's `multiprocessing.connection.wait`.

use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

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

    /// Called once the descriptor is readable: whether the object is ready
    /// now. By default readable means ready; a Pipe end reads what has
    /// arrived (without waiting) and is ready only if that completes a
    /// message, or the peer is gone, so that a receive after [`wait`] does
    /// not block on the rest of a message.
    fn ready_once_readable(&self) -> bool {
        true
    }
}

/// Waits up to `timeout` (`None`: forever; zero: just look; a timeout past
/// what the clock holds, such as `Duration::MAX`: forever) until at least
/// one of `objects` is ready, and returns the indices of all that are, in
/// order; an empty list means the timeout passed.
///
/// A Pipe end is ready when a receive will return at once: a whole message
/// has arrived, or the peer has closed (the receive then returns
/// `Disconnected`, or a truncation error if it left a message half sent), or
/// the stream is broken. Part of a message is not enough: `wait` reads it
/// into the end's buffer and keeps waiting for the rest, so it agrees with
/// [`Pipe::poll`](crate::Pipe::poll). A [`Child`](crate::Child) is ready once
/// it has exited; a plain descriptor once it is readable.
pub fn wait(objects: &[&dyn Waitable], timeout: Option<Duration>) -> io::Result<Vec<usize>> {
    // None: no deadline (none asked for, or one past what the clock holds).
    let deadline = timeout.and_then(|timeout| Instant::now().checked_add(timeout));
    loop {
        let buffered: Vec<usize> = objects
            .iter()
            .enumerate()
            .filter(|(_, object)| object.ready_without_waiting())
            .map(|(i, _)| i)
            .collect();
        let left = if buffered.is_empty() {
            deadline.map(|deadline| deadline.saturating_duration_since(Instant::now()))
        } else {
            Some(Duration::ZERO)
        };
        let fds: Vec<BorrowedFd<'_>> = objects.iter().map(|object| object.wait_fd()).collect();
        let readable = platform::poll(&fds, PollFlags::POLLIN, left)?.unwrap_or_default();
        let mut ready: Vec<usize> = readable
            .into_iter()
            .filter(|&i| objects[i].ready_once_readable())
            .chain(buffered)
            .collect();
        ready.sort_unstable();
        ready.dedup();
        let out_of_time = left == Some(Duration::ZERO);
        if !ready.is_empty() || out_of_time {
            return Ok(ready);
        }
        // Only part of a message had arrived on every readable end (now
        // buffered, so its descriptor is quiet until more comes): wait on.
    }
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
