//! `PipeLink`: one herd-ipc duplex [`Pipe`] per worker, carrying [`Frame`]s both ways; the
//! worker's end is a [`Link`], the supervisor's end a [`WorkerChannel`].
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::time::Duration;

use herd_ipc::pipe::{RecvTimeoutError, SendTimeoutError, TryRecvError};
use herd_ipc::Pipe;
use herd_worker::{FromWorker, Link, ToWorker};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::WorkerChannel;

/// How long the supervisor waits for room in a worker's pipe before giving the worker up: its
/// messages are small, so a full pipe means the worker stopped reading (it is stopped or stuck).
const SEND_PATIENCE: Duration = Duration::from_secs(2);

/// A message on a worker's pipe, in either direction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Frame {
    /// Supervisor to worker.
    Down(ToWorker),
    /// Worker to supervisor.
    Up(FromWorker),
}

/// Creates a worker's pipe: the supervisor's end and the worker's end.
pub fn worker_pipe() -> io::Result<(SupervisorEnd, WorkerEnd)> {
    let (supervisor, worker) = Pipe::new()?;
    Ok((SupervisorEnd(supervisor), WorkerEnd(worker)))
}

/// The supervisor's end of a worker's pipe.
#[derive(Debug)]
pub struct SupervisorEnd(Pipe<Frame>);

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

impl WorkerChannel for SupervisorEnd {
    fn send(&mut self, message: ToWorker) -> io::Result<()> {
        Ok(send(&self.0, Frame::Down(message))?)
    }

    fn try_recv(&mut self) -> io::Result<Option<FromWorker>> {
        match self.0.try_recv() {
            Ok(Frame::Up(message)) => Ok(Some(message)),
            Ok(Frame::Down(message)) => {
                Err(LinkError::Protocol(format!("a worker sent {message:?}")).into())
            }
            Err(TryRecvError::Empty) => Ok(None),
            Err(error) if error.is_disconnected() => Err(LinkError::Disconnected.into()),
            Err(error) => Err(LinkError::Pipe(error.to_string()).into()),
        }
    }
}

impl AsFd for SupervisorEnd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

impl Link for WorkerEnd {
    type Error = LinkError;

    fn send(&self, message: &FromWorker) -> Result<(), LinkError> {
        send(&self.0, Frame::Up(message.clone()))
    }

    fn recv_timeout(&self, timeout: Duration) -> Result<Option<ToWorker>, LinkError> {
        match self.0.recv_timeout(timeout) {
            Ok(Frame::Down(message)) => Ok(Some(message)),
            Ok(Frame::Up(message)) => Err(LinkError::Protocol(format!(
                "the supervisor sent {message:?}"
            ))),
            Err(RecvTimeoutError::Timeout) => Ok(None),
            Err(error) if error.is_disconnected() => Err(LinkError::Disconnected),
            Err(error) => Err(LinkError::Pipe(error.to_string())),
        }
    }
}
