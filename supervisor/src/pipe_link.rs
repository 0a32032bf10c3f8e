//! `PipeLink`: one herd-ipc duplex [`Pipe`] per worker, carrying [`Frame`]s both ways; the
//! worker's end is a [`Link`], the supervisor's end a [`WorkerChannel`].
//!
//! The pipe's message limit ([`DEFAULT_PIPE_MESSAGE_LIMIT`], 64 MiB) guards the supervisor
//! against a corrupt length, but an honest result can be larger (a chunk with millions of
//! distinct host names). So a worker's results travel in parts: the worker encodes its
//! [`FromWorker::Done`] once and sends the bytes as [`Frame::UpPart`]s, each under the limit;
//! the supervisor's end appends them and decodes the message when the last one is in. Parts were
//! chosen over a shared-memory segment because they need no new descriptor per result and no
//! `unsafe` mapping, and the extra copy costs little next to producing the result. The whole
//! message is still bounded ([`DEFAULT_REASSEMBLY_LIMIT`], 4 GiB): a worker sending more is
//! cut off with an error that says how much it sent.
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::time::Duration;

use herd_ipc::pipe::{
    RecvTimeoutError, SendTimeoutError, TryRecvError, DEFAULT_PIPE_MESSAGE_LIMIT,
};
use herd_ipc::Pipe;
use herd_worker::{FromWorker, Link, ToWorker};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::WorkerChannel;

/// How long the supervisor waits for room in a worker's pipe before giving the worker up: its
/// messages are small, so a full pipe means the worker stopped reading (it is stopped or stuck).
const SEND_PATIENCE: Duration = Duration::from_secs(2);

/// The most bytes one worker message may add up to over all its parts: far above any honest
/// result (a logcount chunk of 256 MiB holds at most a few hundred MiB of keys), low enough that
/// a worker gone wrong cannot make the supervisor buffer without end.
pub const DEFAULT_REASSEMBLY_LIMIT: u64 = 4 << 30;

/// Room left in a pipe message for the frame around a part's bytes (the variant tag, the
/// length and the `last` flag take a dozen bytes at most).
const PART_OVERHEAD: usize = 64;

/// A message on a worker's pipe, in either direction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Frame {
    /// Supervisor to worker.
    Down(ToWorker),
    /// Worker to supervisor.
    Up(FromWorker),
    /// Worker to supervisor: a piece of the postcard encoding of one [`FromWorker`], which may
    /// be larger than the pipe's message limit; `last` marks the piece that completes it.
    UpPart {
        /// The next bytes of the encoding.
        #[serde(with = "serde_bytes")]
        bytes: Vec<u8>,
        /// Whether the message is whole with these bytes.
        last: bool,
    },
}

/// Creates a worker's pipe: the supervisor's end and the worker's end.
pub fn worker_pipe() -> io::Result<(SupervisorEnd, WorkerEnd)> {
    worker_pipe_with_limits(DEFAULT_PIPE_MESSAGE_LIMIT, DEFAULT_REASSEMBLY_LIMIT)
}

/// Like [`worker_pipe`] with other limits: `message` bytes per pipe message (both ends), and
/// `reassembly` bytes for one worker message sent in parts.
pub fn worker_pipe_with_limits(
    message: usize,
    reassembly: u64,
) -> io::Result<(SupervisorEnd, WorkerEnd)> {
    let (mut supervisor, mut worker) = Pipe::new()?;
    supervisor.set_max_message_size(message);
    worker.set_max_message_size(message);
    Ok((
        SupervisorEnd {
            pipe: supervisor,
            partial: Vec::new(),
            reassembly_limit: reassembly,
        },
        WorkerEnd(worker),
    ))
}

/// The supervisor's end of a worker's pipe.
#[derive(Debug)]
pub struct SupervisorEnd {
    pipe: Pipe<Frame>,
    /// The parts of a message received so far.
    partial: Vec<u8>,
    reassembly_limit: u64,
}

/// The worker's end of its pipe; travels to the worker (moved into a fork closure, or as a spawn
/// argument).
#[derive(Debug, Serialize, Deserialize)]
pub struct WorkerEnd(Pipe<Frame>);

/// A pipe failure seen by either end.
#[derive(Debug, Error)]
pub enum LinkError {
    /// The other end is gone.
    #[error("the other end of the worker pipe is closed")]
    Disconnected,
    /// The pipe stayed full.
    #[error("the worker pipe stayed full for {0:?}")]
    Full(Duration),
    /// A frame for the other direction arrived: the two ends are crossed.
    #[error("protocol error on the worker pipe: {0}")]
    Protocol(String),
    /// Another pipe error.
    #[error("worker pipe: {0}")]
    Pipe(String),
    /// A message sent in parts grew past the reassembly limit.
    #[error(
        "a message in parts reached {received} bytes, over the limit of {limit} bytes for one \
         worker message"
    )]
    TooLarge {
        /// Bytes received for the message, counting the refused part.
        received: u64,
        /// The reassembly limit.
        limit: u64,
    },
    /// A whole message in parts did not decode.
    #[error("a {size}-byte message in parts does not decode: {reason}")]
    BadMessage {
        /// Its size.
        size: usize,
        /// Why.
        reason: String,
    },
}

impl From<LinkError> for io::Error {
    fn from(error: LinkError) -> Self {
        let kind = match error {
            LinkError::Disconnected => io::ErrorKind::UnexpectedEof,
            LinkError::Full(_) => io::ErrorKind::TimedOut,
            _ => io::ErrorKind::Other,
        };
        io::Error::new(kind, error)
    }
}

fn send(pipe: &Pipe<Frame>, frame: Frame) -> Result<(), LinkError> {
    pipe.send_timeout(frame, SEND_PATIENCE)
        .map_err(|error| match error {
            SendTimeoutError::Timeout(_) => LinkError::Full(SEND_PATIENCE),
            other if other.is_disconnected() => LinkError::Disconnected,
            other => LinkError::Pipe(other.to_string()),
        })
}

impl SupervisorEnd {
    /// Adds a part to the message being reassembled; the message once `last` is in.
    fn take_part(&mut self, bytes: Vec<u8>, last: bool) -> Result<Option<FromWorker>, LinkError> {
        let received = (self.partial.len() + bytes.len()) as u64;
        if received > self.reassembly_limit {
            self.partial = Vec::new();
            return Err(LinkError::TooLarge {
                received,
                limit: self.reassembly_limit,
            });
        }
        if self.partial.is_empty() && last {
            return decode_whole(&bytes).map(Some);
        }
        self.partial.extend_from_slice(&bytes);
        if !last {
            return Ok(None);
        }
        let whole = std::mem::take(&mut self.partial);
        decode_whole(&whole).map(Some)
    }
}

fn decode_whole(bytes: &[u8]) -> Result<FromWorker, LinkError> {
    postcard::from_bytes(bytes).map_err(|error| LinkError::BadMessage {
        size: bytes.len(),
        reason: error.to_string(),
    })
}

impl WorkerChannel for SupervisorEnd {
    fn send(&mut self, message: ToWorker) -> io::Result<()> {
        Ok(send(&self.pipe, Frame::Down(message))?)
    }

    fn try_recv(&mut self) -> io::Result<Option<FromWorker>> {
        loop {
            match self.pipe.try_recv() {
                Ok(Frame::Up(message)) => return Ok(Some(message)),
                Ok(Frame::UpPart { bytes, last }) => {
                    if let Some(message) = self.take_part(bytes, last)? {
                        return Ok(Some(message));
                    }
                    // More parts may be here already; if not, the next call goes on.
                }
                Ok(Frame::Down(message)) => {
                    return Err(LinkError::Protocol(format!("a worker sent {message:?}")).into())
                }
                Err(TryRecvError::Empty) => return Ok(None),
                Err(error) if error.is_disconnected() => return Err(LinkError::Disconnected.into()),
                Err(error) => return Err(LinkError::Pipe(error.to_string()).into()),
            }
        }
    }
}

impl AsFd for SupervisorEnd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.pipe.as_fd()
    }
}

impl WorkerEnd {
    /// Sends an encoded message as parts that each fit in one pipe message.
    fn send_parts(&self, encoded: &[u8]) -> Result<(), LinkError> {
        let part = self
            .0
            .max_message_size()
            .saturating_sub(PART_OVERHEAD)
            .max(1);
        let mut pieces = encoded.chunks(part).peekable();
        if pieces.peek().is_none() {
            return send(
                &self.0,
                Frame::UpPart {
                    bytes: Vec::new(),
                    last: true,
                },
            );
        }
        while let Some(piece) = pieces.next() {
            let last = pieces.peek().is_none();
            send(
                &self.0,
                Frame::UpPart {
                    bytes: piece.to_vec(),
                    last,
                },
            )?;
        }
        Ok(())
    }
}

impl Link for WorkerEnd {
    type Error = LinkError;

    /// Results go as parts (see the module's documentation); the other messages are small.
    fn send(&self, message: &FromWorker) -> Result<(), LinkError> {
        match message {
            FromWorker::Done(_) => {
                let encoded = postcard::to_stdvec(message)
                    .map_err(|error| LinkError::Pipe(format!("encoding results: {error}")))?;
                self.send_parts(&encoded)
            }
            other => send(&self.0, Frame::Up(other.clone())),
        }
    }

    fn max_message_size(&self) -> usize {
        self.0.max_message_size()
    }

    fn recv_timeout(&self, timeout: Duration) -> Result<Option<ToWorker>, LinkError> {
        match self.0.recv_timeout(timeout) {
            Ok(Frame::Down(message)) => Ok(Some(message)),
            Ok(frame @ (Frame::Up(_) | Frame::UpPart { .. })) => Err(LinkError::Protocol(format!(
                "the supervisor sent {frame:?}"
            ))),
            Err(RecvTimeoutError::Timeout) => Ok(None),
            Err(error) if error.is_disconnected() => Err(LinkError::Disconnected),
            Err(error) => Err(LinkError::Pipe(error.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herd_worker::JobResult;

    fn done(outputs: &[usize]) -> FromWorker {
        FromWorker::Done(
            outputs
                .iter()
                .enumerate()
                .map(|(id, &len)| JobResult {
                    id: id as u64,
                    attempt: 1,
                    outcome: Ok((0..len).map(|byte| byte as u8).collect()),
                })
                .collect(),
        )
    }

    /// Receives on `end` until a message comes (parts may still be in flight).
    fn recv(end: &mut SupervisorEnd) -> io::Result<FromWorker> {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(message) = end.try_recv()? {
                return Ok(message);
            }
            assert!(std::time::Instant::now() < deadline, "no message in 5 s");
            end.pipe.poll(Some(Duration::from_millis(10)))?;
        }
    }

    #[test]
    fn a_result_over_the_message_limit_travels_in_parts() {
        let (mut supervisor, worker) = worker_pipe_with_limits(256, 1 << 20).unwrap();
        let big = done(&[5_000, 10, 700]);
        // Sent from another thread: the pipe holds less than the whole message.
        std::thread::scope(|scope| {
            scope.spawn(|| {
                worker.send(&FromWorker::Heartbeat).unwrap();
                worker.send(&big).unwrap();
                worker.send(&done(&[])).unwrap();
                worker.send(&FromWorker::Leaving).unwrap();
            });
            assert_eq!(recv(&mut supervisor).unwrap(), FromWorker::Heartbeat);
            assert_eq!(recv(&mut supervisor).unwrap(), big);
            assert_eq!(recv(&mut supervisor).unwrap(), done(&[]));
            assert_eq!(recv(&mut supervisor).unwrap(), FromWorker::Leaving);
        });
        assert_eq!(Link::max_message_size(&worker), 256);
    }

    #[test]
    fn a_message_in_parts_past_the_reassembly_limit_is_refused() {
        let (mut supervisor, worker) = worker_pipe_with_limits(256, 2_000).unwrap();
        std::thread::scope(|scope| {
            scope.spawn(|| {
                // The supervisor's end stops reading: the send fails once it is dropped.
                let _ = worker.send(&done(&[3_000]));
            });
            let error = recv(&mut supervisor).unwrap_err();
            let text = error.to_string();
            assert!(
                text.contains("over the limit of 2000 bytes for one worker message"),
                "{text}"
            );
            drop(supervisor);
        });
    }
}
