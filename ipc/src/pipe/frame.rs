//! The Pipe's wire format: every message is one frame, an 8-byte header
//! followed by the body (the postcard bytes, or the caller's raw bytes).
//!
//! Header, little-endian: `b"hd"` (a magic that catches a stream written by
//! something else, or read from the wrong offset), the number of descriptors
//! passed with the frame (u16, at most 253), and the body length (u32). The
//! reader checks all three before it allocates or reads the body, so garbage
//! cannot make it allocate more than the receiving end's size limit.

use super::error::RecvError;
use crate::platform::MAX_FDS_PER_MESSAGE;

/// Bytes in a frame header.
pub(crate) const HEADER_LEN: usize = 8;
const MAGIC: [u8; 2] = *b"hd";

/// What a valid header announces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Header {
    /// Descriptors that travelled with the frame's first byte.
    pub fds: usize,
    /// Body bytes after the header.
    pub body_len: usize,
}

impl Header {
    /// The header for a body of `body_len` bytes with `fds` descriptors; the
    /// caller has checked both against the limits (the size limit is at most
    /// `u32::MAX`, the descriptor count at most 253).
    pub(crate) fn encode(body_len: usize, fds: usize) -> [u8; HEADER_LEN] {
        debug_assert!(fds <= MAX_FDS_PER_MESSAGE && u32::try_from(body_len).is_ok());
        let mut header = [0u8; HEADER_LEN];
        header[..2].copy_from_slice(&MAGIC);
        header[2..4].copy_from_slice(&(fds as u16).to_le_bytes());
        header[4..].copy_from_slice(&(body_len as u32).to_le_bytes());
        header
    }

    /// Parses and validates a header against the receiving end's size limit.
    pub(crate) fn decode(bytes: &[u8; HEADER_LEN], limit: usize) -> Result<Header, RecvError> {
        if bytes[..2] != MAGIC {
            return Err(RecvError::BadFrame(format!(
                "frame header starts with {:02x?}, not the Pipe magic {MAGIC:02x?}: \
                 the peer is not a herd Pipe or the stream is out of step",
                &bytes[..2]
            )));
        }
        let fds = usize::from(u16::from_le_bytes([bytes[2], bytes[3]]));
        if fds > MAX_FDS_PER_MESSAGE {
            return Err(RecvError::BadFrame(format!(
                "frame header announces {fds} descriptors, more than one message can carry \
                 ({MAX_FDS_PER_MESSAGE})"
            )));
        }
        let body_len = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]) as usize;
        if body_len > limit {
            return Err(RecvError::TooLarge {
                size: body_len,
                limit,
            });
        }
        Ok(Header { fds, body_len })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips() {
        let header = Header::encode(1234, 3);
        assert_eq!(
            Header::decode(&header, 4096).unwrap(),
            Header {
                fds: 3,
                body_len: 1234
            }
        );
    }

    #[test]
    fn bad_magic_is_refused() {
        let mut header = Header::encode(1, 0);
        header[0] = b'x';
        assert!(matches!(
            Header::decode(&header, 10),
            Err(RecvError::BadFrame(_))
        ));
    }

    #[test]
    fn length_over_the_limit_is_refused_before_allocating() {
        let header = Header::encode(u32::MAX as usize, 0);
        let err = Header::decode(&header, 1 << 20).unwrap_err();
        assert!(
            matches!(err, RecvError::TooLarge { size, limit } if size == u32::MAX as usize && limit == 1 << 20)
        );
    }

    #[test]
    fn too_many_descriptors_is_refused() {
        let mut header = Header::encode(1, 0);
        header[2..4].copy_from_slice(&300u16.to_le_bytes());
        assert!(matches!(
            Header::decode(&header, 10),
            Err(RecvError::BadFrame(_))
        ));
    }
}
