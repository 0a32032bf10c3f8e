//! Payload encoding: job inputs and outputs travel as postcard bytes inside [`crate::Job`] and
//! [`crate::JobResult`], so the wire types stay independent of any job kind.
use serde::de::DeserializeOwned;
use serde::Serialize;
use thiserror::Error;

/// A value that could not be encoded into, or decoded from, a job payload.
#[derive(Debug, Error)]
#[error("job payload: {0}")]
pub struct PayloadError(#[from] postcard::Error);

impl PayloadError {
    /// Bytes that are not a payload of the expected shape.
    pub(crate) fn malformed() -> Self {
        PayloadError(postcard::Error::DeserializeBadEncoding)
    }
}

/// Encodes a job input or output.
pub fn encode_payload<T: Serialize>(value: &T) -> Result<Vec<u8>, PayloadError> {
    Ok(postcard::to_stdvec(value)?)
}

/// Decodes a job input or output; trailing bytes are an error (a payload holds one value).
pub fn decode_payload<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, PayloadError> {
    let (value, rest) = postcard::take_from_bytes(bytes)?;
    if rest.is_empty() {
        Ok(value)
    } else {
        Err(PayloadError(postcard::Error::DeserializeBadEncoding))
    }
}
