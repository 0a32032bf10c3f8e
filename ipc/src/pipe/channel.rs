//! The framed channel under every Pipe end: one socket, a send side that puts
//! a whole frame (header, body, descriptors) into one `sendmsg`, and a
//! buffered receive side that reads as much as the socket holds in one
//! `recvmsg` and cuts frames out of its buffer.
//!
//! It knows bytes and descriptors, not types; `Pipe<T>` adds the codec.

use std::io::{self, IoSlice};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::{Mutex, MutexGuard, TryLockError};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::error::{RecvError, SendBytesError};
use super::frame::{Header, HEADER_LEN};
use crate::codec::{self, CodecError};
use crate::platform::{control_buffer, Blocking, Socket, MAX_FDS_PER_MESSAGE};

/// Default limit on a message body: 64 MiB. Large enough for any control
/// message, small enough that a corrupt length cannot exhaust memory.
pub const DEFAULT_PIPE_MESSAGE_LIMIT: usize = 64 * 1024 * 1024;
/// The frame header stores the body length in 32 bits.
const FRAME_FORMAT_MAX: usize = u32::MAX as usize;
/// Receive buffer size: one `recvmsg` reads up to this much.
const READ_BUFFER: usize = 64 * 1024;
/// Buffers grown past this for one large message shrink back afterwards.
const KEEP_BUFFER: usize = 1024 * 1024;

/// Until when an operation may wait.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Deadline {
    /// Wait as long as it takes.
    Never,
    /// Give up at this instant (already past: do not wait at all).
    At(Instant),
}

impl Deadline {
    pub(crate) fn after(timeout: Duration) -> Deadline {
        Instant::now()
            .checked_add(timeout)
            .map_or(Deadline::Never, Deadline::At)
    }

    fn remaining(self) -> Option<Duration> {
        match self {
            Deadline::Never => None,
            Deadline::At(at) => Some(at.saturating_duration_since(Instant::now())),
        }
    }
}

/// Why a frame was not sent.
#[derive(Debug)]
pub(crate) enum SendFailure {
    /// The deadline passed with the socket still full; nothing was sent.
    Full,
    /// The value could not be encoded.
    Encode(CodecError),
    /// Refused or failed; nothing was sent unless the peer vanished mid-way.
    Send(SendBytesError),
}

/// One end of a framed, descriptor-passing stream.
pub(crate) struct Channel {
    socket: Socket,
    max_message_size: usize,
    reader: Mutex<Reader>,
    /// The encode buffer, reused; holding the lock also keeps concurrent
    /// senders' frames from interleaving on the stream.
    writer: Mutex<Vec<u8>>,
}

impl Channel {
    pub(crate) fn new(socket: Socket, max_message_size: usize) -> Channel {
        Channel {
            socket,
            max_message_size: max_message_size.min(FRAME_FORMAT_MAX),
            reader: Mutex::new(Reader::new()),
            writer: Mutex::new(Vec::new()),
        }
    }

    pub(crate) fn socket(&self) -> &Socket {
        &self.socket
    }

    pub(crate) fn max_message_size(&self) -> usize {
        self.max_message_size
    }

    pub(crate) fn set_max_message_size(&mut self, bytes: usize) {
        self.max_message_size = bytes.min(FRAME_FORMAT_MAX);
    }

    /// Why this end cannot travel to another process as its descriptor
    /// alone, if it cannot: input it has read but not delivered would stay
    /// behind, or a receive in another thread is reading from it right now.
    pub(crate) fn travel_blocker(&self) -> Option<&'static str> {
        let reader = match self.reader.try_lock() {
            Ok(reader) => reader,
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(TryLockError::WouldBlock) => {
                return Some("another thread is receiving on it");
            }
        };
        (reader.end > reader.start || !reader.fds.is_empty())
            .then_some("it holds received but unread messages (receive them first)")
    }

    /// Encodes `value` after a header slot and sends the frame in one call.
    pub(crate) fn send_value<T: Serialize + ?Sized>(
        &self,
        value: &T,
        deadline: Deadline,
    ) -> Result<(), SendFailure> {
        let mut buf = lock(&self.writer);
        buf.clear();
        buf.extend_from_slice(&[0; HEADER_LEN]);
        let encoded = codec::encode_into(value, &mut buf);
        let result = encoded.map_err(SendFailure::Encode).and_then(|fds| {
            let body_len = buf.len() - HEADER_LEN;
            self.check_sendable(body_len, fds.len())
                .map_err(SendFailure::Send)?;
            buf[..HEADER_LEN].copy_from_slice(&Header::encode(body_len, fds.len()));
            let borrowed: Vec<BorrowedFd<'_>> = fds.iter().map(AsFd::as_fd).collect();
            self.send_frame(&[IoSlice::new(&buf)], &borrowed, deadline)
        });
        if buf.capacity() > KEEP_BUFFER {
            *buf = Vec::new();
        }
        result
    }

    /// Sends `bytes` as one frame body, without copying them, waiting as long
    /// as the peer needs to make room.
    pub(crate) fn send_bytes(&self, bytes: &[u8]) -> Result<(), SendBytesError> {
        self.check_sendable(bytes.len(), 0)?;
        let header = Header::encode(bytes.len(), 0);
        let _one_frame_at_a_time = lock(&self.writer);
        self.socket
            .send_all(&[IoSlice::new(&header), IoSlice::new(bytes)], &[])
            .map_err(send_bytes_error)
    }

    fn check_sendable(&self, body_len: usize, fds: usize) -> Result<(), SendBytesError> {
        if body_len > self.max_message_size {
            return Err(SendBytesError::TooLarge {
                size: body_len,
                limit: self.max_message_size,
            });
        }
        if fds > MAX_FDS_PER_MESSAGE {
            return Err(SendBytesError::Io(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "message holds {fds} herd handles; one message may carry at most {MAX_FDS_PER_MESSAGE}"
                ),
            )));
        }
        Ok(())
    }

    /// Sends one whole frame. With a deadline, waits for room until then and
    /// fails with `Full` if none came; once the first byte is out the rest is
    /// always sent (the stream must stay in step), however long that takes.
    fn send_frame(
        &self,
        parts: &[IoSlice<'_>],
        fds: &[BorrowedFd<'_>],
        deadline: Deadline,
    ) -> Result<(), SendFailure> {
        let result = match deadline {
            Deadline::Never => self.socket.send_all(parts, fds),
            Deadline::At(_) => loop {
                if !self.socket.poll_writable(deadline.remaining())? {
                    return Err(SendFailure::Full);
                }
                match self.socket.send_with_fds(parts, fds, Blocking::No) {
                    Ok(sent) => break self.socket.send_rest(parts, sent),
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock => continue,
                    Err(err) => break Err(err),
                }
            },
        };
        result.map_err(SendFailure::from)
    }

    /// Receives one frame, handing its body and descriptors to `take`.
    /// `Ok(None)`: the deadline passed before a whole frame arrived.
    pub(crate) fn recv_frame<R>(
        &self,
        deadline: Deadline,
        take: impl FnOnce(&[u8], Vec<OwnedFd>) -> R,
    ) -> Result<Option<R>, RecvError> {
        let mut reader = lock(&self.reader);
        match reader.fill(&self.socket, self.max_message_size, deadline)? {
            None => Ok(None),
            Some(header) => reader.take(header, take).map(Some),
        }
    }

    /// Waits until a receive would return at once: a whole message is
    /// buffered, or the peer closed, or the stream is broken.
    pub(crate) fn poll(&self, deadline: Deadline) -> io::Result<bool> {
        let mut reader = lock(&self.reader);
        match reader.fill(&self.socket, self.max_message_size, deadline) {
            Ok(ready) => Ok(ready.is_some()),
            Err(RecvError::Io(err)) => Err(err),
            Err(_) => Ok(true),
        }
    }

    /// Reads whatever has arrived, without waiting, and says whether a
    /// receive would now return at once (as [`poll`](Self::poll) with no
    /// time). A receive in progress in another thread holds the reader and
    /// will take what arrives, so the end counts as ready then: waiting on
    /// it would only race that thread.
    pub(crate) fn ready_now(&self) -> bool {
        let mut reader = match self.reader.try_lock() {
            Ok(reader) => reader,
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(TryLockError::WouldBlock) => return true,
        };
        match reader.fill(
            &self.socket,
            self.max_message_size,
            Deadline::At(Instant::now()),
        ) {
            Ok(ready) => ready.is_some(),
            // Disconnected, a bad frame or an OS error: a receive returns it at once.
            Err(_) => true,
        }
    }

    /// Whether a receive would return at once without reading the socket.
    pub(crate) fn ready_without_reading(&self) -> bool {
        let reader = lock(&self.reader);
        reader.eof || reader.broken.is_some() || reader.frame_decided(self.max_message_size)
    }
}

impl From<io::Error> for SendFailure {
    fn from(err: io::Error) -> SendFailure {
        SendFailure::Send(send_bytes_error(err))
    }
}

/// A vanished peer (`EPIPE`, `ECONNRESET`) is `Disconnected`; anything else
/// is an OS error.
fn send_bytes_error(err: io::Error) -> SendBytesError {
    match err.raw_os_error() {
        Some(libc::EPIPE | libc::ECONNRESET) => SendBytesError::Disconnected,
        _ => SendBytesError::Io(err),
    }
}

/// Locks `mutex`, ignoring poisoning: a panic elsewhere cannot leave these
/// buffers half-updated in a way later calls would misread (frame state only
/// changes after a whole frame is taken), and a dead thread must not disable
/// the pipe for the others.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The receive side: bytes read but not yet consumed are `buf[start..end]`;
/// descriptors received but not yet claimed by a frame wait in `fds`, in
/// arrival order.
struct Reader {
    buf: Vec<u8>,
    start: usize,
    end: usize,
    fds: Vec<OwnedFd>,
    control: Vec<u8>,
    /// The peer closed (or reset) the connection.
    eof: bool,
    /// The stream is out of step; every later receive replays this.
    broken: Option<RecvError>,
}

impl Reader {
    fn new() -> Reader {
        Reader {
            buf: Vec::new(),
            start: 0,
            end: 0,
            fds: Vec::new(),
            control: control_buffer(),
            eof: false,
            broken: None,
        }
    }

    /// Whether the buffer decides the next receive: a whole frame, or a
    /// header that is already known to be bad.
    fn frame_decided(&self, limit: usize) -> bool {
        self.buffered_header()
            .is_some_and(|bytes| match Header::decode(&bytes, limit) {
                Ok(header) => self.end - self.start >= HEADER_LEN + header.body_len,
                Err(_) => true,
            })
    }

    fn buffered_header(&self) -> Option<[u8; HEADER_LEN]> {
        self.buf
            .get(self.start..self.start + HEADER_LEN)
            .filter(|_| self.end - self.start >= HEADER_LEN)
            .map(|h| h.try_into().expect("slice of HEADER_LEN"))
    }

    /// Reads until a whole frame is buffered (returning its header), the
    /// deadline passes (`None`), the peer closes, or the stream breaks.
    fn fill(
        &mut self,
        socket: &Socket,
        limit: usize,
        deadline: Deadline,
    ) -> Result<Option<Header>, RecvError> {
        loop {
            if let Some(broken) = &self.broken {
                return Err(broken.replay());
            }
            let buffered = self.end - self.start;
            let needed = match self.buffered_header() {
                Some(bytes) => {
                    let header = Header::decode(&bytes, limit).map_err(|e| self.break_with(e))?;
                    if buffered >= HEADER_LEN + header.body_len {
                        return Ok(Some(header));
                    }
                    HEADER_LEN + header.body_len
                }
                None => HEADER_LEN,
            };
            if self.eof {
                if buffered == 0 {
                    return Err(RecvError::Disconnected);
                }
                return Err(self.break_with(RecvError::Truncated {
                    received: buffered,
                    expected: needed,
                }));
            }
            self.make_room(needed);
            let blocking = match deadline {
                Deadline::Never => Blocking::Yes,
                Deadline::At(_) => {
                    if !socket
                        .poll_readable(deadline.remaining())
                        .map_err(RecvError::Io)?
                    {
                        return Ok(None);
                    }
                    Blocking::No
                }
            };
            let space = &mut self.buf[self.end..];
            match socket.recv_with_fds_using(space, &mut self.fds, blocking, &mut self.control) {
                Ok(0) => self.eof = true,
                Ok(n) => self.end += n,
                // Another process sharing this socket took the data first.
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                Err(err) if err.raw_os_error() == Some(libc::ECONNRESET) => self.eof = true,
                Err(err) => return Err(RecvError::Io(err)),
            }
        }
    }

    /// Consumes the buffered frame `header` describes.
    fn take<R>(
        &mut self,
        header: Header,
        take: impl FnOnce(&[u8], Vec<OwnedFd>) -> R,
    ) -> Result<R, RecvError> {
        if self.fds.len() < header.fds {
            return Err(self.break_with(RecvError::BadFrame(format!(
                "frame announces {} descriptors but {} arrived with it",
                header.fds,
                self.fds.len()
            ))));
        }
        let fds: Vec<OwnedFd> = self.fds.drain(..header.fds).collect();
        let body_start = self.start + HEADER_LEN;
        let result = take(&self.buf[body_start..body_start + header.body_len], fds);
        self.start = body_start + header.body_len;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            if self.buf.len() > KEEP_BUFFER {
                self.buf = vec![0; READ_BUFFER];
            }
        }
        Ok(result)
    }

    /// Makes `buf[start..]` able to hold `needed` bytes, and leaves room to
    /// read into; allocates only what a validated header asked for.
    fn make_room(&mut self, needed: usize) {
        let wanted = needed.max(READ_BUFFER);
        if self.buf.len() - self.start >= wanted && self.end < self.buf.len() {
            return;
        }
        self.buf.copy_within(self.start..self.end, 0);
        self.end -= self.start;
        self.start = 0;
        if self.buf.len() < wanted {
            self.buf.resize(wanted, 0);
        }
    }

    fn break_with(&mut self, err: RecvError) -> RecvError {
        self.broken = Some(err.replay());
        err
    }
}
