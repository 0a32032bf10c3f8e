//! Framing of the wire protocol: a little-endian `u32` length, then that many bytes of postcard.
//! The length is checked against a limit, and the body's buffer grows only with the bytes that
//! actually arrive (`READ_STEP` at a time), so a peer announcing a huge frame and sending nothing
//! costs nothing. Every way a frame can
//! go wrong (closed, truncated, stalled, oversized, undecodable) is its own error so the server can
//! log exactly what a bad client did before closing that one connection.

use std::io::{self, ErrorKind, Read, Write};

use serde::de::DeserializeOwned;
use serde::Serialize;
use thiserror::Error;

/// The largest frame either side accepts: bigger messages are refused, not allocated.
pub(crate) const MAX_FRAME_LEN: usize = 64 * 1024 * 1024;

const HEADER_LEN: usize = 4;
/// A frame's body is read at most this much at a time, the buffer growing as the bytes arrive:
/// an announced length is a claim, not something to allocate up front.
pub(crate) const READ_STEP: usize = 64 * 1024;
/// A buffer grown past this by one big frame is given back before the next frame, so a
/// connection that once sent a big message does not keep its memory while idle.
const RETAINED_CAPACITY: usize = 1024 * 1024;

#[derive(Debug, Error)]
pub(crate) enum FrameError {
    #[error("connection closed")]
    Closed,
    #[error("no frame arrived before the read timeout")]
    Idle,
    #[error("frame announces {len} bytes, over the {limit}-byte limit")]
    Oversized { len: usize, limit: usize },
    #[error("truncated frame: connection closed after {got} of {expected} bytes")]
    Truncated { got: usize, expected: usize },
    #[error("stalled frame: {got} of {expected} bytes arrived before the read timeout")]
    Stalled { got: usize, expected: usize },
    #[error("undecodable frame: {0}")]
    Decode(String),
    #[error("cannot encode message: {0}")]
    Encode(postcard::Error),
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
}

/// Encodes `value` into one frame and writes it (the caller flushes). `scratch` is reused between
/// calls so steady-state sending does not allocate.
pub(crate) fn write_frame<T: Serialize>(
    writer: &mut impl Write,
    value: &T,
    scratch: &mut Vec<u8>,
) -> Result<(), FrameError> {
    let mut bytes = std::mem::take(scratch);
    bytes.clear();
    bytes.extend_from_slice(&[0; HEADER_LEN]);
    let mut bytes = postcard::to_extend(value, bytes).map_err(FrameError::Encode)?;
    let len = bytes.len() - HEADER_LEN;
    if len > MAX_FRAME_LEN {
        return Err(FrameError::Oversized {
            len,
            limit: MAX_FRAME_LEN,
        });
    }
    // The check above keeps `len` within u32.
    bytes[..HEADER_LEN].copy_from_slice(&(len as u32).to_le_bytes());
    writer.write_all(&bytes)?;
    *scratch = bytes;
    Ok(())
}

/// Reads one frame and decodes it. A read timeout before the first byte is `Idle` (the caller
/// decides whether idling is fine); a timeout after it is `Stalled`.
pub(crate) fn read_frame<T: DeserializeOwned>(
    reader: &mut impl Read,
    buf: &mut Vec<u8>,
) -> Result<T, FrameError> {
    let mut header = [0u8; HEADER_LEN];
    fill(reader, &mut header, 0, HEADER_LEN)?;
    let len = u32::from_le_bytes(header) as usize;
    if len > MAX_FRAME_LEN {
        return Err(FrameError::Oversized {
            len,
            limit: MAX_FRAME_LEN,
        });
    }
    if buf.capacity() > RETAINED_CAPACITY {
        *buf = Vec::new();
    }
    buf.clear();
    while buf.len() < len {
        let got = buf.len();
        let step = (len - got).min(READ_STEP);
        buf.resize(got + step, 0);
        let filled = fill(reader, &mut buf[got..], HEADER_LEN + got, HEADER_LEN + len);
        if let Err(e) = filled {
            buf.clear();
            return Err(e);
        }
    }
    match postcard::take_from_bytes(buf) {
        Ok((value, [])) => Ok(value),
        Ok((_, rest)) => Err(FrameError::Decode(format!(
            "{} unread bytes after the message",
            rest.len()
        ))),
        Err(e) => Err(FrameError::Decode(e.to_string())),
    }
}

/// Fills `out` completely; `done` and `expected` place it within the whole frame for the errors.
fn fill(
    reader: &mut impl Read,
    out: &mut [u8],
    done: usize,
    expected: usize,
) -> Result<(), FrameError> {
    let mut got = 0;
    while got < out.len() {
        match reader.read(&mut out[got..]) {
            Ok(0) if done + got == 0 => return Err(FrameError::Closed),
            Ok(0) => {
                return Err(FrameError::Truncated {
                    got: done + got,
                    expected,
                })
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Err(if done + got == 0 {
                    FrameError::Idle
                } else {
                    FrameError::Stalled {
                        got: done + got,
                        expected,
                    }
                });
            }
            Err(e) => return Err(FrameError::Io(e)),
        }
    }
    Ok(())
}
