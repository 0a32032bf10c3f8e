//! The Unix socket layer: a connected `AF_UNIX` stream socket pair whose
//! messages can carry file descriptors (`SCM_RIGHTS`), plus `poll` helpers.
//!
//! Everything above it (the Pipe, spawn's argument channel) speaks through
//! [`Socket`]. The rules it enforces, so callers need not:
//! - every descriptor it creates or receives is close-on-exec (`SOCK_CLOEXEC`
//!   on the pair, `MSG_CMSG_CLOEXEC` on receive), so none leaks into an
//!   unrelated `exec`;
//! - sending never raises `SIGPIPE` (`MSG_NOSIGNAL`): a vanished peer is an
//!   `EPIPE`/`ECONNRESET` error, which the layers above report as
//!   "disconnected";
//! - `EINTR` is retried, and poll timeouts are measured against a deadline so a
//!   signal never stretches or shortens a wait.
//!
//! On a stream socket the kernel attaches passed descriptors to the first byte
//! of the `sendmsg` that carried them, and one `recvmsg` returns the
//! descriptors of at most one such `sendmsg` (Linux `unix_stream_read_generic`
//! stops after a buffer with descriptors). So a reader that receives a frame's
//! first byte also receives that frame's descriptors, in order.

use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{
    self, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags, Shutdown, SockFlag,
    SockType,
};

/// Most descriptors one `sendmsg` may carry (Linux `SCM_MAX_FD`).
pub(crate) const MAX_FDS_PER_MESSAGE: usize = 253;

/// One end of a connected, close-on-exec `AF_UNIX` stream socket pair.
#[derive(Debug)]
pub(crate) struct Socket {
    fd: OwnedFd,
}

/// Whether an operation may wait for the peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Blocking {
    /// Wait until the operation can make progress.
    Yes,
    /// Fail with `WouldBlock` instead of waiting.
    No,
}

impl Socket {
    /// Creates a connected pair. Both descriptors are close-on-exec.
    pub(crate) fn pair() -> io::Result<(Socket, Socket)> {
        let (a, b) = socket::socketpair(
            AddressFamily::Unix,
            SockType::Stream,
            None,
            SockFlag::SOCK_CLOEXEC,
        )?;
        Ok((Socket { fd: a }, Socket { fd: b }))
    }

    /// Sends the bytes of `bufs` (gathered, in order) with `fds` attached to the
    /// first byte, in one `sendmsg`. Returns how many bytes went out: with
    /// [`Blocking::No`] or after a signal that may be fewer than asked (the
    /// descriptors went with the first byte, so do not resend them), and with
    /// `Blocking::No` a full socket is `ErrorKind::WouldBlock` with nothing sent.
    pub(crate) fn send_with_fds(
        &self,
        bufs: &[IoSlice<'_>],
        fds: &[BorrowedFd<'_>],
        blocking: Blocking,
    ) -> io::Result<usize> {
        if fds.len() > MAX_FDS_PER_MESSAGE {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "cannot pass {} descriptors in one message (at most {MAX_FDS_PER_MESSAGE})",
                    fds.len()
                ),
            ));
        }
        let raw: Vec<RawFd> = fds.iter().map(AsRawFd::as_raw_fd).collect();
        let rights = [ControlMessage::ScmRights(&raw)];
        let cmsgs: &[ControlMessage<'_>] = if raw.is_empty() { &[] } else { &rights };
        let mut flags = MsgFlags::MSG_NOSIGNAL;
        if blocking == Blocking::No {
            flags |= MsgFlags::MSG_DONTWAIT;
        }
        loop {
            match socket::sendmsg::<()>(self.fd.as_raw_fd(), bufs, cmsgs, flags, None) {
                Err(Errno::EINTR) => continue,
                result => return Ok(result?),
            }
        }
    }

    /// Sends all of `bufs`, with `fds` attached to the first byte, waiting as
    /// long as the peer needs to make room.
    pub(crate) fn send_all(&self, bufs: &[IoSlice<'_>], fds: &[BorrowedFd<'_>]) -> io::Result<()> {
        let sent = self.send_with_fds(bufs, fds, Blocking::Yes)?;
        self.send_rest(bufs, sent)
    }

    /// Finishes a message of which `already_sent` bytes went out (with its
    /// descriptors), waiting as long as the peer needs to make room.
    pub(crate) fn send_rest(&self, bufs: &[IoSlice<'_>], already_sent: usize) -> io::Result<()> {
        let mut skip = already_sent;
        for buf in bufs {
            if skip >= buf.len() {
                skip -= buf.len();
                continue;
            }
            let mut rest = &buf[skip..];
            skip = 0;
            while !rest.is_empty() {
                let sent = self.send_with_fds(&[IoSlice::new(rest)], &[], Blocking::Yes)?;
                rest = &rest[sent..];
            }
        }
        Ok(())
    }

    /// Receives up to `buf.len()` bytes, appending the descriptors that came
    /// with them to `fds` (close-on-exec). Returns the byte count; 0 means the
    /// peer has closed its end (or shut down writing) and everything sent has
    /// been read. With [`Blocking::No`] and nothing to read, the error is
    /// `ErrorKind::WouldBlock`.
    pub(crate) fn recv_with_fds(
        &self,
        buf: &mut [u8],
        fds: &mut Vec<OwnedFd>,
        blocking: Blocking,
    ) -> io::Result<usize> {
        let mut control = nix::cmsg_space!([RawFd; MAX_FDS_PER_MESSAGE]);
        self.recv_with_fds_using(buf, fds, blocking, &mut control)
    }

    /// [`Socket::recv_with_fds`] with a caller-kept control buffer (made by
    /// [`control_buffer`]), so a hot receive loop does not allocate.
    pub(crate) fn recv_with_fds_using(
        &self,
        buf: &mut [u8],
        fds: &mut Vec<OwnedFd>,
        blocking: Blocking,
        control: &mut Vec<u8>,
    ) -> io::Result<usize> {
        let mut flags = MsgFlags::MSG_CMSG_CLOEXEC;
        if blocking == Blocking::No {
            flags |= MsgFlags::MSG_DONTWAIT;
        }
        let mut iov = [IoSliceMut::new(buf)];
        let msg = loop {
            match socket::recvmsg::<()>(self.fd.as_raw_fd(), &mut iov, Some(control), flags) {
                Err(Errno::EINTR) => continue,
                result => break result?,
            }
        };
        // The buffer holds MAX_FDS_PER_MESSAGE descriptors, the most one
        // sendmsg can carry, so truncation means a peer broke the protocol.
        let cmsgs = msg.cmsgs().map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                "control data truncated: the peer passed more descriptors than one message may carry",
            )
        })?;
        for cmsg in cmsgs {
            if let ControlMessageOwned::ScmRights(received) = cmsg {
                for raw in received {
                    // SAFETY: the kernel installed `raw` in our descriptor
                    // table for this recvmsg (SCM_RIGHTS); nothing else knows
                    // it, so this OwnedFd is its sole owner.
                    fds.push(unsafe { OwnedFd::from_raw_fd(raw) });
                }
            }
        }
        Ok(msg.bytes)
    }

    /// Tells the peer no more data will come (it reads end-of-file once it has
    /// read what was sent); this end can still receive.
    pub(crate) fn shutdown_write(&self) -> io::Result<()> {
        Ok(socket::shutdown(self.fd.as_raw_fd(), Shutdown::Write)?)
    }

    /// Stops receiving: the peer's later sends fail with `EPIPE`.
    pub(crate) fn shutdown_read(&self) -> io::Result<()> {
        Ok(socket::shutdown(self.fd.as_raw_fd(), Shutdown::Read)?)
    }

    /// Waits up to `timeout` (`None`: forever) until a receive would not block
    /// (data, or end-of-file). Returns whether it became readable.
    pub(crate) fn poll_readable(&self, timeout: Option<Duration>) -> io::Result<bool> {
        Ok(poll(&[self.fd.as_fd()], PollFlags::POLLIN, timeout)?.is_some())
    }

    /// Waits up to `timeout` (`None`: forever) until a send could make progress
    /// (room in the buffer, or the peer gone so the send fails at once).
    pub(crate) fn poll_writable(&self, timeout: Option<Duration>) -> io::Result<bool> {
        Ok(poll(&[self.fd.as_fd()], PollFlags::POLLOUT, timeout)?.is_some())
    }
}

/// A control buffer big enough for the descriptors of any one message.
pub(crate) fn control_buffer() -> Vec<u8> {
    nix::cmsg_space!([RawFd; MAX_FDS_PER_MESSAGE])
}

/// Waits up to `timeout` (`None`: forever) until at least one of `fds` reports
/// `events` (hang-up and error count too: a read or write would then fail
/// without blocking). Returns the indices of the ready ones in order, or `None`
/// on timeout. `EINTR` restarts the wait with the time that is left.
pub(crate) fn poll(
    fds: &[BorrowedFd<'_>],
    events: PollFlags,
    timeout: Option<Duration>,
) -> io::Result<Option<Vec<usize>>> {
    let deadline = timeout.map(|t| Instant::now().checked_add(t));
    let mut pollfds: Vec<PollFd<'_>> = fds.iter().map(|fd| PollFd::new(*fd, events)).collect();
    loop {
        let wait = match deadline {
            None | Some(None) => PollTimeout::NONE,
            Some(Some(deadline)) => {
                poll_timeout(deadline.saturating_duration_since(Instant::now()))
            }
        };
        match nix::poll::poll(&mut pollfds, wait) {
            Err(Errno::EINTR) => continue,
            Err(err) => return Err(err.into()),
            Ok(0) => {
                if wait == PollTimeout::NONE {
                    continue;
                }
                if wait == PollTimeout::ZERO || deadline_passed(deadline) {
                    return Ok(None);
                }
            }
            Ok(_) => {
                let ready = pollfds
                    .iter()
                    .enumerate()
                    .filter(|(_, p)| p.revents().is_some_and(|r| !r.is_empty()))
                    .map(|(i, _)| i)
                    .collect();
                return Ok(Some(ready));
            }
        }
    }
}

fn deadline_passed(deadline: Option<Option<Instant>>) -> bool {
    matches!(deadline, Some(Some(d)) if Instant::now() >= d)
}

/// A poll(2) timeout for `left`, rounded up to whole milliseconds so a short
/// wait is never turned into a busy zero-timeout loop; capped at `i32::MAX` ms
/// (the caller loops until its deadline).
fn poll_timeout(left: Duration) -> PollTimeout {
    let millis = left.as_nanos().div_ceil(1_000_000);
    let millis = i32::try_from(millis).unwrap_or(i32::MAX);
    PollTimeout::try_from(millis).unwrap_or(PollTimeout::MAX)
}

impl AsFd for Socket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl From<Socket> for OwnedFd {
    fn from(socket: Socket) -> OwnedFd {
        socket.fd
    }
}

impl From<OwnedFd> for Socket {
    /// Adopts a descriptor that must be one end of a connected `AF_UNIX`
    /// stream socket (one received from a peer, or inherited); any other kind
    /// makes every later operation fail with the OS error.
    fn from(fd: OwnedFd) -> Socket {
        Socket { fd }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;
    use std::io::{Read, Seek, Write};

    fn is_cloexec(fd: BorrowedFd<'_>) -> bool {
        let flags = nix::fcntl::fcntl(fd.as_raw_fd(), nix::fcntl::FcntlArg::F_GETFD).unwrap();
        flags & libc::FD_CLOEXEC != 0
    }

    /// Reads until the peer closes (or shuts down writing): every byte and
    /// every descriptor it sent.
    fn recv_to_end(socket: &Socket) -> io::Result<(Vec<u8>, Vec<OwnedFd>)> {
        let mut bytes = Vec::new();
        let mut fds = Vec::new();
        let mut control = control_buffer();
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            let n =
                socket.recv_with_fds_using(&mut chunk, &mut fds, Blocking::Yes, &mut control)?;
            if n == 0 {
                return Ok((bytes, fds));
            }
            bytes.extend_from_slice(&chunk[..n]);
        }
    }

    #[test]
    fn pair_is_connected_and_cloexec() {
        let (a, b) = Socket::pair().unwrap();
        assert!(is_cloexec(a.as_fd()) && is_cloexec(b.as_fd()));
        a.send_all(&[IoSlice::new(b"he"), IoSlice::new(b"llo")], &[])
            .unwrap();
        let mut buf = [0u8; 16];
        let mut fds = Vec::new();
        let n = b.recv_with_fds(&mut buf, &mut fds, Blocking::Yes).unwrap();
        assert_eq!(&buf[..n], b"hello");
        assert!(fds.is_empty());
    }

    #[test]
    fn descriptors_travel_with_bytes_and_arrive_cloexec() {
        let (a, b) = Socket::pair().unwrap();
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(b"through the socket").unwrap();
        a.send_all(&[IoSlice::new(b"x")], &[file.as_fd()]).unwrap();
        drop(file);
        let mut buf = [0u8; 4];
        let mut fds = Vec::new();
        let n = b.recv_with_fds(&mut buf, &mut fds, Blocking::Yes).unwrap();
        assert_eq!((n, fds.len()), (1, 1));
        assert!(is_cloexec(fds[0].as_fd()));
        let mut received = File::from(fds.pop().unwrap());
        received.rewind().unwrap();
        let mut text = String::new();
        received.read_to_string(&mut text).unwrap();
        assert_eq!(text, "through the socket");
    }

    #[test]
    fn nonblocking_receive_on_empty_socket_would_block() {
        let (_a, b) = Socket::pair().unwrap();
        let err = b
            .recv_with_fds(&mut [0u8; 4], &mut Vec::new(), Blocking::No)
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        assert!(!b.poll_readable(Some(Duration::from_millis(10))).unwrap());
    }

    #[test]
    fn closed_peer_reads_as_end_of_file_and_send_fails_without_sigpipe() {
        let (a, b) = Socket::pair().unwrap();
        a.send_all(&[IoSlice::new(b"last")], &[]).unwrap();
        drop(a);
        assert!(b.poll_readable(Some(Duration::ZERO)).unwrap());
        let (bytes, fds) = recv_to_end(&b).unwrap();
        assert_eq!((bytes.as_slice(), fds.len()), (&b"last"[..], 0));
        let err = b.send_all(&[IoSlice::new(b"x")], &[]).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EPIPE), "{err}");
    }

    #[test]
    fn large_message_is_sent_whole_while_peer_reads() {
        let (a, b) = Socket::pair().unwrap();
        let big: Vec<u8> = (0..4 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
        let reader = std::thread::spawn(move || recv_to_end(&b).unwrap().0);
        a.send_all(&[IoSlice::new(&big[..10]), IoSlice::new(&big[10..])], &[])
            .unwrap();
        a.shutdown_write().unwrap();
        assert!(reader.join().unwrap() == big);
    }

    #[test]
    fn full_socket_would_block_without_sending() {
        let (a, _b) = Socket::pair().unwrap();
        let chunk = vec![0u8; 64 * 1024];
        let err = loop {
            match a.send_with_fds(&[IoSlice::new(&chunk)], &[], Blocking::No) {
                Ok(_) => continue,
                Err(err) => break err,
            }
        };
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        assert!(!a.poll_writable(Some(Duration::from_millis(10))).unwrap());
    }

    #[test]
    fn too_many_descriptors_are_refused() {
        let (a, _b) = Socket::pair().unwrap();
        let file = tempfile::tempfile().unwrap();
        let fds = vec![file.as_fd(); MAX_FDS_PER_MESSAGE + 1];
        let err = a.send_all(&[IoSlice::new(b"x")], &fds).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn poll_reports_which_descriptors_are_ready() {
        let (a, b) = Socket::pair().unwrap();
        let (c, d) = Socket::pair().unwrap();
        c.send_all(&[IoSlice::new(b"!")], &[]).unwrap();
        let ready = poll(
            &[b.as_fd(), d.as_fd()],
            PollFlags::POLLIN,
            Some(Duration::ZERO),
        )
        .unwrap();
        assert_eq!(ready, Some(vec![1]));
        let start = Instant::now();
        let ready = poll(
            &[b.as_fd()],
            PollFlags::POLLIN,
            Some(Duration::from_millis(30)),
        )
        .unwrap();
        assert_eq!(ready, None);
        assert!(start.elapsed() >= Duration::from_millis(30));
        drop(a);
        assert_eq!(
            poll(&[b.as_fd()], PollFlags::POLLIN, None).unwrap(),
            Some(vec![0])
        );
    }
}
