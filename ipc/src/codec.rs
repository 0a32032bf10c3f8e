//! The codec: how a value travels between processes as postcard bytes plus the
//! file descriptors owned by the herd handles inside it.
//!
//! A herd handle (a Pipe end, a Queue, a Value, a Lock...) is backed by a file
//! descriptor: a socket or a memfd. Bytes alone cannot carry it to another
//! process; the kernel must pass the descriptor itself (SCM_RIGHTS on a Unix
//! socket, or inheritance across exec). So, as ipc-channel does, encoding runs
//! with a per-thread side channel: a handle's `Serialize` impl calls
//! [`serialize_fd`], which duplicates the descriptor into the side channel and
//! writes only its index into the bytes; the transport sends bytes and
//! descriptors together; on the far side [`decode`] installs the received
//! descriptors and the handle's `Deserialize` impl takes its own back by index
//! with [`deserialize_fd`].
//!
//! Outside [`encode`]/[`decode`] there is no side channel, and serialising a
//! handle is an error rather than a silently useless number: a handle only
//! travels through herd-ipc.

use std::cell::RefCell;
use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a value could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The value could not be serialised (a `Serialize` impl failed).
    #[error("cannot encode message: {}", detail.as_deref().map_or_else(|| source.to_string(), str::to_owned))]
    Encode {
        /// What a herd handle said about why it cannot travel, when it said so.
        detail: Option<String>,
        /// The serialiser's own error.
        #[source]
        source: postcard::Error,
    },
    /// The bytes do not hold a value of the expected type: the two ends disagree
    /// about the message type, or the frame is corrupt.
    #[error("cannot decode message (type mismatch or corrupt frame): {}", detail.as_deref().map_or_else(|| source.to_string(), str::to_owned))]
    Decode {
        /// What a herd handle said about why it cannot be rebuilt, when it said so.
        detail: Option<String>,
        /// The deserialiser's own error.
        #[source]
        source: postcard::Error,
    },
    /// The bytes held a whole value of the expected type and then more: the two
    /// ends disagree about the message type.
    #[error("cannot decode message: {0} trailing bytes after the value (type mismatch?)")]
    TrailingBytes(usize),
}

impl CodecError {
    /// An encoding failure with no handle-specific detail.
    pub(crate) fn encode(source: postcard::Error) -> Self {
        CodecError::Encode {
            detail: None,
            source,
        }
    }
}

/// A value turned into bytes, plus the descriptors its handles own (in the
/// order their indices were written).
#[derive(Debug)]
pub(crate) struct Encoded {
    pub bytes: Vec<u8>,
    pub fds: Vec<OwnedFd>,
}

thread_local! {
    /// Descriptors collected while a value is being encoded on this thread.
    static OUTGOING: RefCell<Option<Vec<OwnedFd>>> = const { RefCell::new(None) };
    /// Descriptors received with the frame being decoded on this thread; each
    /// slot is taken at most once.
    static INCOMING: RefCell<Option<Vec<Option<OwnedFd>>>> = const { RefCell::new(None) };
    /// The first reason a handle gave for failing while a value was encoded or
    /// decoded on this thread. postcard drops the text of custom serde errors,
    /// so without this the user would read only "Serde Serialization Error".
    static DETAIL: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// For a handle's `Serialize` impl: an error whose text reaches the user in
/// [`CodecError::Encode`].
pub(crate) fn ser_error<E: serde::ser::Error>(reason: impl std::fmt::Display) -> E {
    E::custom(record_detail(reason))
}

/// For a handle's `Deserialize` impl: an error whose text reaches the user in
/// [`CodecError::Decode`].
pub(crate) fn de_error<E: serde::de::Error>(reason: impl std::fmt::Display) -> E {
    E::custom(record_detail(reason))
}

fn record_detail(reason: impl std::fmt::Display) -> String {
    let text = reason.to_string();
    // Keep the first (innermost) reason: outer layers only add context.
    DETAIL.with(|cell| {
        cell.borrow_mut()
            .get_or_insert_with(|| text.clone())
            .clone()
    });
    text
}

fn take_detail() -> Option<String> {
    DETAIL.with(|cell| cell.borrow_mut().take())
}

/// Encodes `value`, collecting the descriptors of the handles inside it.
pub(crate) fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Encoded, CodecError> {
    let mut bytes = Vec::new();
    let fds = encode_into(value, &mut bytes)?;
    Ok(Encoded { bytes, fds })
}

/// Appends the encoding of `value` to `buf` (so a transport can put its frame
/// header first and send one buffer), returning the collected descriptors.
/// On error `buf` may hold a partial encoding past its original length.
pub(crate) fn encode_into<T: Serialize + ?Sized>(
    value: &T,
    buf: &mut Vec<u8>,
) -> Result<Vec<OwnedFd>, CodecError> {
    let _context = SideChannel::install(&OUTGOING, Vec::new());
    take_detail(); // a reason left from an earlier, recovered failure is stale
    let bytes = std::mem::take(buf);
    let result = postcard::to_extend(value, bytes);
    let fds = OUTGOING.with(|cell| cell.borrow_mut().take().unwrap_or_default());
    match result {
        Ok(bytes) => {
            take_detail();
            *buf = bytes;
            Ok(fds)
        }
        Err(source) => Err(CodecError::Encode {
            detail: take_detail(),
            source,
        }),
    }
}

/// Decodes a `T` from `bytes`, handing `fds` to the handles inside it.
/// Descriptors that no handle claims are closed.
pub(crate) fn decode<T: DeserializeOwned>(
    bytes: &[u8],
    fds: Vec<OwnedFd>,
) -> Result<T, CodecError> {
    let _context = SideChannel::install(&INCOMING, fds.into_iter().map(Some).collect());
    take_detail(); // a reason left from an earlier, recovered failure is stale
    let (value, rest) =
        postcard::take_from_bytes::<T>(bytes).map_err(|source| CodecError::Decode {
            detail: take_detail(),
            source,
        })?;
    take_detail();
    if !rest.is_empty() {
        return Err(CodecError::TrailingBytes(rest.len()));
    }
    Ok(value)
}

/// For a handle's `Serialize` impl: sends a duplicate of `fd` along with the
/// message and writes its index into the bytes.
pub(crate) fn serialize_fd<S: Serializer>(
    fd: BorrowedFd<'_>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    let index = OUTGOING.with(|cell| -> Result<u32, S::Error> {
        let mut slot = cell.borrow_mut();
        let fds = slot.as_mut().ok_or_else(|| ser_error(OUTSIDE_HERD))?;
        // try_clone_to_owned duplicates with F_DUPFD_CLOEXEC, so the copy never
        // leaks into an unrelated exec.
        let copy = fd.try_clone_to_owned().map_err(|err: io::Error| {
            ser_error(format_args!("cannot duplicate fd for transfer: {err}"))
        })?;
        fds.push(copy);
        u32::try_from(fds.len() - 1).map_err(|_| ser_error("too many descriptors in one message"))
    })?;
    index.serialize(serializer)
}

/// For a handle's `Deserialize` impl: takes the descriptor whose index the
/// bytes hold out of the frame being decoded.
pub(crate) fn deserialize_fd<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<OwnedFd, D::Error> {
    let index = u32::deserialize(deserializer)? as usize;
    INCOMING.with(|cell| {
        let mut slot = cell.borrow_mut();
        let fds = slot.as_mut().ok_or_else(|| de_error(OUTSIDE_HERD))?;
        let received = fds.len();
        fds.get_mut(index)
            .and_then(Option::take)
            .ok_or_else(|| {
                de_error(format_args!(
                    "message refers to descriptor #{index}, but {received} arrived (or it was claimed twice)"
                ))
            })
    })
}

const OUTSIDE_HERD: &str =
    "a herd-ipc handle can only travel through herd-ipc: in a Pipe message, as spawn arguments or as a child's result";

/// Installs a side channel for the current thread and restores the previous
/// one when dropped, so encoding nests (a handle whose own encoding encodes)
/// and a panicking `Serialize` impl leaves no stale channel behind.
struct SideChannel<V: 'static> {
    key: &'static std::thread::LocalKey<RefCell<Option<V>>>,
    previous: Option<V>,
}

impl<V: 'static> SideChannel<V> {
    fn install(key: &'static std::thread::LocalKey<RefCell<Option<V>>>, fresh: V) -> Self {
        let previous = key.with(|cell| cell.borrow_mut().replace(fresh));
        SideChannel { key, previous }
    }
}

impl<V: 'static> Drop for SideChannel<V> {
    fn drop(&mut self) {
        let previous = self.previous.take();
        self.key.with(|cell| *cell.borrow_mut() = previous);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;
    use std::io::{Read, Seek, Write};
    use std::os::fd::AsFd;

    /// A stand-in for a herd handle: owns an fd, travels through the side channel.
    #[derive(Debug)]
    struct FileHandle(File);

    impl Serialize for FileHandle {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            serialize_fd(self.0.as_fd(), s)
        }
    }

    impl<'de> Deserialize<'de> for FileHandle {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            deserialize_fd(d).map(|fd| FileHandle(File::from(fd)))
        }
    }

    fn temp_file_with(text: &str) -> File {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(text.as_bytes()).unwrap();
        file.rewind().unwrap();
        file
    }

    #[test]
    fn plain_values_round_trip_without_descriptors() {
        let value = (42u64, String::from("hello"), vec![1u8, 2, 3]);
        let encoded = encode(&value).unwrap();
        assert!(encoded.fds.is_empty());
        let back: (u64, String, Vec<u8>) = decode(&encoded.bytes, encoded.fds).unwrap();
        assert_eq!(back, value);
    }

    #[test]
    fn handles_carry_their_descriptors() {
        let handles = vec![
            FileHandle(temp_file_with("first")),
            FileHandle(temp_file_with("second")),
        ];
        let encoded = encode(&("label", &handles)).unwrap();
        assert_eq!(encoded.fds.len(), 2);
        let (label, back): (String, Vec<FileHandle>) = decode(&encoded.bytes, encoded.fds).unwrap();
        assert_eq!(label, "label");
        let mut text = String::new();
        let mut second = &back[1].0;
        second.read_to_string(&mut text).unwrap();
        assert_eq!(text, "second");
    }

    #[test]
    fn a_handle_outside_herd_is_an_error_not_a_number() {
        let handle = FileHandle(temp_file_with("x"));
        let err = postcard::to_allocvec(&handle).unwrap_err();
        assert!(matches!(err, postcard::Error::SerdeSerCustom), "{err:?}");
        let bytes = postcard::to_allocvec(&0u32).unwrap();
        assert!(postcard::from_bytes::<FileHandle>(&bytes).is_err());
    }

    #[test]
    fn a_missing_descriptor_is_a_decode_error() {
        let encoded = encode(&FileHandle(temp_file_with("x"))).unwrap();
        let err = decode::<FileHandle>(&encoded.bytes, Vec::new()).unwrap_err();
        assert!(matches!(err, CodecError::Decode { .. }), "{err}");
    }

    #[test]
    fn a_type_mismatch_is_an_error() {
        let encoded = encode(&(1u8, 2u8, 3u8)).unwrap();
        let err = decode::<u8>(&encoded.bytes, Vec::new()).unwrap_err();
        assert!(matches!(err, CodecError::TrailingBytes(2)), "{err}");
        let err = decode::<String>(&[5, b'a'], Vec::new()).unwrap_err();
        assert!(matches!(err, CodecError::Decode { .. }), "{err}");
    }

    /// A handle that refuses to travel, the way a Pipe end with unread input does.
    #[derive(Debug)]
    struct Stubborn;

    impl Serialize for Stubborn {
        fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
            Err(ser_error("this end has unread messages"))
        }
    }

    #[test]
    fn a_handles_own_reason_reaches_the_error_text() {
        let err = encode(&(1u8, Stubborn)).unwrap_err();
        assert!(
            err.to_string().contains("this end has unread messages"),
            "{err}"
        );
        let encoded = encode(&FileHandle(temp_file_with("x"))).unwrap();
        let err = decode::<FileHandle>(&encoded.bytes, Vec::new()).unwrap_err();
        assert!(
            err.to_string()
                .contains("refers to descriptor #0, but 0 arrived"),
            "{err}"
        );
        // A later success does not inherit the stale reason.
        let ok = encode(&5u8).unwrap();
        assert_eq!(decode::<u8>(&ok.bytes, ok.fds).unwrap(), 5);
    }

    #[test]
    fn encode_into_appends_after_a_header() {
        let mut buf = vec![0xAA; 4];
        let fds = encode_into(&7u16, &mut buf).unwrap();
        assert!(fds.is_empty());
        assert_eq!(&buf[..4], &[0xAA; 4]);
        assert_eq!(decode::<u16>(&buf[4..], fds).unwrap(), 7);
    }
}
