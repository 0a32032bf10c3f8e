//! `ChunkOutputs`: the answer to a chunk job, one outcome per input, in input order.
//!
//! A chunk carries many small inputs in one job so that short jobs do not each pay a round trip.
//! Each output is encoded on its own, so an output that cannot be serialised fails only its own
//! item and the rest of the chunk still counts. The layout is a run of records: a tag byte (0 for
//! an output, 1 for a [`JobError`]), the record's length as LEB128, and its postcard bytes.
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::{JobError, PayloadError};

const OUTPUT: u8 = 0;
const ERROR: u8 = 1;

/// Builds the answer to a chunk job, one item at a time.
#[derive(Debug, Default)]
pub struct ChunkOutputs {
    bytes: Vec<u8>,
    scratch: Vec<u8>,
    items: usize,
}

impl ChunkOutputs {
    /// An empty answer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends an item's output; one that cannot be serialised becomes that item's error.
    pub fn push_output<T: Serialize>(&mut self, output: &T) {
        self.scratch.clear();
        match postcard::to_io(output, &mut self.scratch) {
            Ok(_) => self.push_record(OUTPUT),
            Err(error) => self.push_error(&JobError::failed(format!("encoding output: {error}"))),
        }
    }

    /// Appends an item's error.
    pub fn push_error(&mut self, error: &JobError) {
        self.scratch.clear();
        // A JobError is strings and a tag: it always serialises.
        let _ = postcard::to_io(error, &mut self.scratch);
        self.push_record(ERROR);
    }

    fn push_record(&mut self, tag: u8) {
        self.bytes.push(tag);
        let mut length = self.scratch.len();
        loop {
            let byte = (length & 0x7F) as u8;
            length >>= 7;
            if length == 0 {
                self.bytes.push(byte);
                break;
            }
            self.bytes.push(byte | 0x80);
        }
        self.bytes.extend_from_slice(&self.scratch);
        self.items += 1;
    }

    /// Items so far.
    pub fn len(&self) -> usize {
        self.items
    }

    /// Whether no item was pushed.
    pub fn is_empty(&self) -> bool {
        self.items == 0
    }

    /// The encoded answer.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

/// Reads the items of an answer built by [`ChunkOutputs`]: each is the item's output or its
/// error; a malformed answer ends with one [`PayloadError`].
pub fn read_chunk_outputs<T: DeserializeOwned>(
    bytes: &[u8],
) -> impl Iterator<Item = Result<Result<T, JobError>, PayloadError>> + '_ {
    let mut rest = bytes;
    let mut broken = false;
    std::iter::from_fn(move || {
        if rest.is_empty() || broken {
            return None;
        }
        let item = next_record(&mut rest).and_then(|(tag, record)| match tag {
            OUTPUT => crate::decode_payload::<T>(record).map(Ok),
            ERROR => crate::decode_payload::<JobError>(record).map(Err),
            _ => Err(PayloadError::malformed()),
        });
        broken = item.is_err();
        Some(item)
    })
}

/// Whether every item of an answer built by [`ChunkOutputs`] is an output (none is an error),
/// read from the records' tags without decoding them.
pub fn chunk_outputs_ok(bytes: &[u8]) -> bool {
    let mut rest = bytes;
    while !rest.is_empty() {
        match next_record(&mut rest) {
            Ok((OUTPUT, _)) => {}
            _ => return false,
        }
    }
    true
}

fn next_record<'a>(rest: &mut &'a [u8]) -> Result<(u8, &'a [u8]), PayloadError> {
    let (&tag, mut tail) = rest.split_first().ok_or_else(PayloadError::malformed)?;
    let mut length: usize = 0;
    let mut shift = 0u32;
    loop {
        let (&byte, after) = tail.split_first().ok_or_else(PayloadError::malformed)?;
        tail = after;
        length |= usize::from(byte & 0x7F)
            .checked_shl(shift)
            .ok_or_else(PayloadError::malformed)?;
        if byte & 0x80 == 0 {
            break;
        }
        shift += 7;
        if shift >= usize::BITS {
            return Err(PayloadError::malformed());
        }
    }
    if length > tail.len() {
        return Err(PayloadError::malformed());
    }
    let (record, after) = tail.split_at(length);
    *rest = after;
    Ok((tag, record))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_and_errors_come_back_in_order() {
        let long = "x".repeat(300);
        let mut outputs = ChunkOutputs::new();
        outputs.push_output(&"a");
        outputs.push_error(&JobError::failed("no"));
        outputs.push_output(&long);
        assert_eq!(outputs.len(), 3);
        let bytes = outputs.into_bytes();
        assert!(!chunk_outputs_ok(&bytes), "one item failed");
        let items: Vec<_> = read_chunk_outputs::<String>(&bytes)
            .map(Result::unwrap)
            .collect();
        assert_eq!(
            items,
            [Ok("a".to_owned()), Err(JobError::failed("no")), Ok(long)]
        );
    }

    #[test]
    fn a_malformed_answer_is_an_error_not_a_panic() {
        for bytes in [&[0u8][..], &[0, 5, 1], &[2, 0], &[0, 0x80, 0x80]] {
            let items: Vec<_> = read_chunk_outputs::<u64>(bytes).collect();
            assert_eq!(items.len(), 1, "{bytes:?}");
            assert!(items[0].is_err(), "{bytes:?}");
        }
    }

    #[test]
    fn an_unserialisable_output_fails_only_its_item() {
        struct Refuses;
        impl Serialize for Refuses {
            fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
                Err(serde::ser::Error::custom("this value cannot be sent"))
            }
        }
        let mut outputs = ChunkOutputs::new();
        outputs.push_output(&1u32);
        outputs.push_output(&Refuses);
        outputs.push_output(&3u32);
        let bytes = outputs.into_bytes();
        let items: Vec<_> = read_chunk_outputs::<u32>(&bytes)
            .map(Result::unwrap)
            .collect();
        assert_eq!(items[0], Ok(1));
        assert!(matches!(&items[1], Err(JobError::Failed(m)) if m.starts_with("encoding output")));
        assert_eq!(items[2], Ok(3));
    }
}
