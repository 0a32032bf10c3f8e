//! The result channel: the one message a child sends its parent before it exits (its value, its panic
//! message, or why it could not run), and the parent-side reader that collects it. It runs over a Unix socket
//! pair, so a returned value may hold herd handles: their fds travel with the message (SCM_RIGHTS).
use std::io::{self, IoSlice};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use serde::{Deserialize, Serialize};

use crate::platform::{Blocking, Socket};

/// What the child reports about its run.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum ChildOutcome {
    /// The body returned; the value, encoded with the codec.
    Returned(Vec<u8>),
    /// The body panicked with this message.
    Panicked(String),
    /// The child could not run the body (unknown entry, undecodable arguments, unencodable value...).
    Failed(String),
}

/// An outcome with the fds of the handles inside a returned value, as they travel together.
pub(crate) type OutcomeWithFds = (ChildOutcome, Vec<OwnedFd>);

/// Exit code of a child whose body returned.
pub(crate) const EXIT_RETURNED: i32 = 0;
/// Exit code of a child whose body panicked or could not run (Python's exit code for an exception).
pub(crate) const EXIT_FAILED: i32 = 1;

impl ChildOutcome {
    /// The outcome of running a body whose value must travel back, with the fds of the handles inside the
    /// value; encoding failures become `Failed`.
    pub(crate) fn of_run<T: Serialize>(run: std::thread::Result<T>) -> OutcomeWithFds {
        match run {
            Ok(value) => match crate::codec::encode(&value) {
                Ok(encoded) => (Self::Returned(encoded.bytes), encoded.fds),
                Err(err) => (
                    Self::Failed(format!("the returned value could not be encoded: {err}")),
                    Vec::new(),
                ),
            },
            Err(payload) => (Self::Panicked(panic_message(payload.as_ref())), Vec::new()),
        }
    }

    /// The exit code that goes with this outcome.
    pub(crate) fn exit_code(&self) -> i32 {
        match self {
            Self::Returned(_) => EXIT_RETURNED,
            Self::Panicked(_) | Self::Failed(_) => EXIT_FAILED,
        }
    }

    /// The outcome as one frame: a little-endian u32 length, then its postcard bytes.
    pub(crate) fn to_frame(&self) -> io::Result<Vec<u8>> {
        let frame = postcard::to_extend(self, vec![0u8; 4]).map_err(io::Error::other)?;
        let len = u32::try_from(frame.len() - 4).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "a result of {} bytes exceeds the 4 GiB frame limit",
                    frame.len() - 4
                ),
            )
        })?;
        let mut frame = frame;
        frame[..4].copy_from_slice(&len.to_le_bytes());
        Ok(frame)
    }

    fn try_send(&self, channel: &Socket, fds: &[OwnedFd]) -> io::Result<()> {
        let fds: Vec<BorrowedFd<'_>> = fds.iter().map(OwnedFd::as_fd).collect();
        channel.send_all(&[IoSlice::new(&self.to_frame()?)], &fds)
    }

    /// Sends this outcome's frame (and `fds`) to the parent and returns the exit code that goes with it. If it
    /// cannot be sent (too many fds, too big), the parent is told why instead and the code says failure. A
    /// closed channel (the parent dropped its handle) needs no report: nobody is listening.
    pub(crate) fn send(&self, channel: &Socket, fds: &[OwnedFd]) -> i32 {
        match self.try_send(channel, fds) {
            Ok(()) => self.exit_code(),
            Err(err) => {
                let why = Self::Failed(format!("the child could not send its result: {err}"));
                let _ = why.try_send(channel, &[]);
                EXIT_FAILED
            }
        }
    }
}

/// The text of a panic payload (`&str` or `String`, as `panic!` makes them).
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(message) = payload.downcast_ref::<&str>() {
        (*message).to_owned()
    } else if let Some(message) = payload.downcast_ref::<String>() {
        message.clone()
    } else {
        "panic with a non-string payload".to_owned()
    }
}

/// The parent's end of the result channel and what has arrived so far.
#[derive(Debug)]
pub(crate) struct ResultReader {
    channel: Socket,
    received: Vec<u8>,
    fds: Vec<OwnedFd>,
    closed: bool,
}

impl ResultReader {
    pub(crate) fn new(channel: Socket) -> Self {
        Self {
            channel,
            received: Vec::new(),
            fds: Vec::new(),
            closed: false,
        }
    }

    /// Whether the whole frame has arrived, or the writer is gone: no point waiting for more.
    pub(crate) fn is_settled(&self) -> bool {
        self.closed
            || self
                .frame_len()
                .is_some_and(|len| self.received.len() >= 4 + len)
    }

    /// Reads what is available without blocking.
    pub(crate) fn pull(&mut self) -> io::Result<()> {
        let mut chunk = vec![0u8; 64 * 1024];
        while !self.closed {
            match self
                .channel
                .recv_with_fds(&mut chunk, &mut self.fds, Blocking::No)
            {
                Ok(0) => self.closed = true,
                Ok(n) => self.received.extend_from_slice(&chunk[..n]),
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                Err(err) => return Err(err),
            }
        }
        Ok(())
    }

    /// The fd to poll for more data.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.channel.as_fd()
    }

    fn frame_len(&self) -> Option<usize> {
        let header: [u8; 4] = self.received.get(..4)?.try_into().ok()?;
        Some(u32::from_le_bytes(header) as usize)
    }

    /// The outcome and the fds that came with it, if a whole frame arrived; `None` if the child ended without
    /// sending one (killed, or it called `exit` itself).
    pub(crate) fn take_outcome(&mut self) -> io::Result<Option<OutcomeWithFds>> {
        let Some(len) = self.frame_len() else {
            return Ok(None);
        };
        let Some(body) = self.received.get(4..4 + len) else {
            return Ok(None);
        };
        let outcome = postcard::from_bytes(body).map_err(|err| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("corrupt result frame: {err}"),
            )
        })?;
        Ok(Some((outcome, std::mem::take(&mut self.fds))))
    }
}
