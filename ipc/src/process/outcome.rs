//! The result channel: the one message a child sends its parent before it exits (its value, its panic
//! message, or why it could not run), and the parent-side reader that collects it.
use std::io;
use std::os::fd::{AsFd, OwnedFd};

use serde::{Deserialize, Serialize};

use crate::platform;

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

/// Exit code of a child whose body returned.
pub(crate) const EXIT_RETURNED: i32 = 0;
/// Exit code of a child whose body panicked or could not run (Python's exit code for an exception).
pub(crate) const EXIT_FAILED: i32 = 1;

impl ChildOutcome {
    /// The outcome of running a body whose value must travel back: encoding failures become `Failed`.
    pub(crate) fn of_run<T: Serialize>(run: std::thread::Result<T>) -> Self {
        match run {
            Ok(value) => match crate::codec::encode(&value) {
                Ok(encoded) if encoded.fds.is_empty() => Self::Returned(encoded.bytes),
                Ok(_) => Self::Failed(
                    "the returned value holds herd handles (file descriptors), which cannot travel back through \
                     the result pipe; send them through a Pipe instead"
                        .to_owned(),
                ),
                Err(err) => Self::Failed(format!("the returned value could not be encoded: {err}")),
            },
            Err(payload) => Self::Panicked(panic_message(payload.as_ref())),
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
    pub(crate) fn to_frame(&self) -> Vec<u8> {
        let mut frame = vec![0u8; 4];
        // Serialising an enum of Vec<u8>/String into a Vec cannot fail.
        frame = postcard::to_extend(self, frame).unwrap_or_else(|_| vec![0u8; 4]);
        let len = u32::try_from(frame.len() - 4).unwrap_or(u32::MAX);
        frame[..4].copy_from_slice(&len.to_le_bytes());
        frame
    }

    /// Writes this outcome's frame to the child's end of the result pipe and returns the matching exit code.
    /// A closed pipe (the parent dropped its handle) is not an error worth reporting: nobody is listening.
    pub(crate) fn send(&self, result_write: &OwnedFd) -> i32 {
        let _ = platform::write_all(result_write, &self.to_frame());
        self.exit_code()
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

/// The parent's end of the result pipe and what has arrived so far.
#[derive(Debug)]
pub(crate) struct ResultReader {
    read: OwnedFd,
    received: Vec<u8>,
    closed: bool,
}

impl ResultReader {
    pub(crate) fn new(read: OwnedFd) -> Self {
        Self {
            read,
            received: Vec::new(),
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
        if !self.closed {
            self.closed = platform::read_available(&self.read, &mut self.received)?;
        }
        Ok(())
    }

    /// The fd to poll for more data.
    pub(crate) fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.read.as_fd()
    }

    fn frame_len(&self) -> Option<usize> {
        let header: [u8; 4] = self.received.get(..4)?.try_into().ok()?;
        Some(u32::from_le_bytes(header) as usize)
    }

    /// The outcome, if a whole frame arrived; `None` if the child ended without sending one (killed, or it
    /// called `exit` itself).
    pub(crate) fn outcome(&self) -> io::Result<Option<ChildOutcome>> {
        let Some(len) = self.frame_len() else {
            return Ok(None);
        };
        let Some(body) = self.received.get(4..4 + len) else {
            return Ok(None);
        };
        postcard::from_bytes(body).map(Some).map_err(|err| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("corrupt result frame: {err}"),
            )
        })
    }
}
