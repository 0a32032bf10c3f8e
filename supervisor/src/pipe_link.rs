//! `PipeLink`: one herd-ipc duplex [`Pipe`] per worker, carrying [`Frame`]s both ways; the
//! worker's end is a [`Link`], the supervisor's end a [`WorkerChannel`].
//!
//! The pipe's message limit ([`DEFAULT_PIPE_MESSAGE_LIMIT`], 64 MiB) guards each end against a
//! corrupt length, but an honest message can be larger: a result (a chunk with millions of
//! distinct host names), or a job whose input is large. So such messages travel in parts: the
//! sender encodes its message once and sends the bytes as parts ([`Frame::UpPart`] from a
//! worker, [`Frame::DownPart`] to it), each under the limit; the receiving end appends them and
//! decodes the message when the last one is in. Results always go in parts (one encoding, sent
//! as one part when small); jobs go whole unless their inputs add up to more than a pipe message
//! holds. Parts were chosen over a shared-memory segment because they need no new descriptor per
//! message and no `unsafe` mapping, and the extra copy costs little next to producing the
//! message. The whole message is still bounded ([`DEFAULT_REASSEMBLY_LIMIT`], 4 GiB): a peer
//! sending more is cut off with an error that says how much it sent.
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use herd_ipc::pipe::{
    RecvTimeoutError, SendTimeoutError, TryRecvError, DEFAULT_PIPE_MESSAGE_LIMIT,
};
use herd_ipc::Pipe;
use herd_worker::{FromWorker, Link, ToWorker};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use thiserror::Error;

use crate::WorkerChannel;

/// How long the supervisor waits for room in a worker's pipe before giving the worker up: its
/// messages are small, so a full pipe means the worker stopped reading (it is stopped or stuck).
const SEND_PATIENCE: Duration = Duration::from_secs(2);

/// The most bytes one message may add up to over all its parts: far above any honest result (a
/// logcount chunk of 256 MiB holds at most a few hundred MiB of keys) or job, low enough that a
/// peer gone wrong cannot make the other end buffer without end.
pub const DEFAULT_REASSEMBLY_LIMIT: u64 = 4 << 30;

/// Room left in a pipe message for the frame around a part's bytes (the variant tag, the
/// length and the `last` flag take a dozen bytes at most).
const PART_OVERHEAD: usize = 64;

/// The most one job adds to the encoding of a [`ToWorker::Run`] besides its kind's name and its
/// input (id, attempt, flag and two lengths: varints of at most 10 bytes), also used as the
/// bound for the message's own tags and length.
const JOB_OVERHEAD: usize = 48;

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
    /// Supervisor to worker: a piece of the postcard encoding of one [`ToWorker`] too large for
    /// one pipe message; `last` marks the piece that completes it.
    DownPart {
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
/// `reassembly` bytes for one message sent in parts (either way).
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
        WorkerEnd {
            pipe: worker,
            partial: Mutex::new(Vec::new()),
            reassembly_limit: reassembly,
        },
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
#[derive(Debug)]
pub struct WorkerEnd {
    pipe: Pipe<Frame>,
    /// The parts of a message received so far (the worker receives on one thread, but a
    /// [`Link`] is shared with the heartbeat thread, so this is behind a mutex).
    partial: Mutex<Vec<u8>>,
    reassembly_limit: u64,
}

impl Serialize for WorkerEnd {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        (&self.pipe, self.reassembly_limit).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for WorkerEnd {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let (pipe, reassembly_limit) = <(Pipe<Frame>, u64)>::deserialize(deserializer)?;
        Ok(WorkerEnd {
            pipe,
            partial: Mutex::new(Vec::new()),
            reassembly_limit,
        })
    }
}

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
         message on a worker pipe"
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

/// Adds a part to the message being reassembled in `partial`; the message once `last` is in.
fn take_part<T: DeserializeOwned>(
    partial: &mut Vec<u8>,
    limit: u64,
    bytes: Vec<u8>,
    last: bool,
) -> Result<Option<T>, LinkError> {
    let received = (partial.len() + bytes.len()) as u64;
    if received > limit {
        *partial = Vec::new();
        return Err(LinkError::TooLarge { received, limit });
    }
    if partial.is_empty() && last {
        return decode_whole(&bytes).map(Some);
    }
    partial.extend_from_slice(&bytes);
    if !last {
        return Ok(None);
    }
    let whole = std::mem::take(partial);
    decode_whole(&whole).map(Some)
}

fn decode_whole<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, LinkError> {
    postcard::from_bytes(bytes).map_err(|error| LinkError::BadMessage {
        size: bytes.len(),
        reason: error.to_string(),
    })
}

/// Sends an encoded message as parts (`part(bytes, last)`) that each fit in one pipe message.
fn send_parts(
    pipe: &Pipe<Frame>,
    encoded: &[u8],
    part: fn(Vec<u8>, bool) -> Frame,
) -> Result<(), LinkError> {
    let size = pipe.max_message_size().saturating_sub(PART_OVERHEAD).max(1);
    let mut pieces = encoded.chunks(size).peekable();
    if pieces.peek().is_none() {
        return send(pipe, part(Vec::new(), true));
    }
    while let Some(piece) = pieces.next() {
        let last = pieces.peek().is_none();
        send(pipe, part(piece.to_vec(), last))?;
    }
    Ok(())
}

/// An upper bound on the bytes `message` encodes to, without encoding it.
fn encoded_size_bound(message: &ToWorker) -> usize {
    match message {
        ToWorker::Run(jobs) => jobs.iter().fold(JOB_OVERHEAD, |size, job| {
            size.saturating_add(JOB_OVERHEAD + job.kind.len() + job.payload.len())
        }),
        ToWorker::Stop => JOB_OVERHEAD,
    }
}

impl WorkerChannel for SupervisorEnd {
    /// A message that may not fit in one pipe message goes as parts (see the module's
    /// documentation); the usual ones go whole.
    fn send(&mut self, message: ToWorker) -> io::Result<()> {
        if encoded_size_bound(&message) <= self.pipe.max_message_size() {
            return Ok(send(&self.pipe, Frame::Down(message))?);
        }
        let encoded = postcard::to_stdvec(&message)
            .map_err(|error| LinkError::Pipe(format!("encoding jobs: {error}")))?;
        Ok(send_parts(&self.pipe, &encoded, |bytes, last| {
            Frame::DownPart { bytes, last }
        })?)
    }

    fn try_recv(&mut self) -> io::Result<Option<FromWorker>> {
        loop {
            match self.pipe.try_recv() {
                Ok(Frame::Up(message)) => return Ok(Some(message)),
                Ok(Frame::UpPart { bytes, last }) => {
                    let limit = self.reassembly_limit;
                    if let Some(message) = take_part(&mut self.partial, limit, bytes, last)? {
                        return Ok(Some(message));
                    }
                    // More parts may be here already; if not, the next call goes on.
                }
                Ok(frame @ (Frame::Down(_) | Frame::DownPart { .. })) => {
                    return Err(LinkError::Protocol(format!("a worker sent {frame:?}")).into())
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

impl Link for WorkerEnd {
    type Error = LinkError;

    /// Results go as parts (see the module's documentation); the other messages are small.
    fn send(&self, message: &FromWorker) -> Result<(), LinkError> {
        match message {
            FromWorker::Done(_) => {
                let encoded = postcard::to_stdvec(message)
                    .map_err(|error| LinkError::Pipe(format!("encoding results: {error}")))?;
                send_parts(&self.pipe, &encoded, |bytes, last| Frame::UpPart {
                    bytes,
                    last,
                })
            }
            other => send(&self.pipe, Frame::Up(other.clone())),
        }
    }

    fn max_message_size(&self) -> usize {
        self.pipe.max_message_size()
    }

    /// Reassembles a message sent in parts; one whose parts are still coming when `timeout`
    /// runs out is kept, and the next call goes on with it.
    fn recv_timeout(&self, timeout: Duration) -> Result<Option<ToWorker>, LinkError> {
        let deadline = Instant::now().checked_add(timeout);
        loop {
            let left = deadline.map_or(timeout, |d| d.saturating_duration_since(Instant::now()));
            let (bytes, last) = match self.pipe.recv_timeout(left) {
                Ok(Frame::Down(message)) => return Ok(Some(message)),
                Ok(Frame::DownPart { bytes, last }) => (bytes, last),
                Ok(frame @ (Frame::Up(_) | Frame::UpPart { .. })) => {
                    return Err(LinkError::Protocol(format!(
                        "the supervisor sent {frame:?}"
                    )))
                }
                Err(RecvTimeoutError::Timeout) => return Ok(None),
                Err(error) if error.is_disconnected() => return Err(LinkError::Disconnected),
                Err(error) => return Err(LinkError::Pipe(error.to_string())),
            };
            let mut partial = self.partial.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(message) = take_part(&mut partial, self.reassembly_limit, bytes, last)? {
                return Ok(Some(message));
            }
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

    fn run(payloads: &[usize]) -> ToWorker {
        ToWorker::Run(
            payloads
                .iter()
                .enumerate()
                .map(|(id, &len)| herd_worker::Job {
                    id: id as u64,
                    attempt: 1,
                    kind: "kind".into(),
                    chunk: false,
                    payload: (0..len).map(|byte| (byte * 7) as u8).collect(),
                })
                .collect(),
        )
    }

    #[test]
    fn jobs_over_the_message_limit_travel_in_parts() {
        let (mut supervisor, worker) = worker_pipe_with_limits(256, 1 << 20).unwrap();
        let small = run(&[10, 20]);
        let big = run(&[5_000, 10, 700]);
        let many = run(&[100; 40]);
        std::thread::scope(|scope| {
            let sent = (small.clone(), big.clone(), many.clone());
            scope.spawn(move || {
                supervisor.send(sent.0).unwrap();
                supervisor.send(sent.1).unwrap();
                supervisor.send(sent.2).unwrap();
                supervisor.send(ToWorker::Stop).unwrap();
            });
            let recv = |what: &str| match worker.recv_timeout(Duration::from_secs(5)).unwrap() {
                Some(message) => message,
                None => panic!("no {what} in 5 s"),
            };
            assert_eq!(recv("small"), small);
            assert_eq!(recv("big"), big);
            assert_eq!(recv("many"), many);
            assert_eq!(recv("stop"), ToWorker::Stop);
        });
    }

    #[test]
    fn jobs_in_parts_past_the_reassembly_limit_are_refused() {
        let (mut supervisor, worker) = worker_pipe_with_limits(256, 2_000).unwrap();
        std::thread::scope(|scope| {
            scope.spawn(move || {
                // The worker's end stops reading: the send fails once it is dropped.
                let _ = supervisor.send(run(&[3_000]));
            });
            let error = match worker.recv_timeout(Duration::from_secs(5)) {
                Ok(Some(message)) => panic!("received {message:?}"),
                Ok(None) => panic!("no error in 5 s"),
                Err(error) => error,
            };
            let text = error.to_string();
            assert!(
                text.contains("over the limit of 2000 bytes for one message on a worker pipe"),
                "{text}"
            );
            drop(worker);
        });
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
                text.contains("over the limit of 2000 bytes for one message on a worker pipe"),
                "{text}"
            );
            drop(supervisor);
        });
    }
}
