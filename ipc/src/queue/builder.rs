//! [`QueueBuilder`]: the size limits of a queue, chosen before its shared memory is created.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::errors::QueueError;
use super::raw::RawQueue;
use super::ring::{MAX_CAPACITY_BYTES, RECORD_HEADER_BYTES};
use super::{JoinableQueue, Queue};
use crate::platform::QueueLayout;

/// Default limit on one encoded message: 1 GiB. Only a queue whose ring is bounded in bytes
/// ([`QueueBuilder::capacity_bytes`]) has a lower default: 64 KiB, or what the ring can hold.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 1 << 30;
/// Default size of the ring: 1 MiB. Pages are only allocated when first written, so an idle queue
/// costs little.
pub const DEFAULT_CAPACITY_BYTES: usize = 1024 * 1024;
/// Messages larger than this (64 KiB) are not copied into the ring of a queue without a byte
/// bound but spilled to the queue's spill file; so are smaller ones that do not fit the ring's
/// free space at the moment of the put.
pub const SPILL_THRESHOLD_BYTES: usize = 64 * 1024;
/// The limit a byte-bounded ring puts on one message by default (or what the ring holds).
const BOUNDED_MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// Ring bytes a message needs besides its own: the record's length prefix and its tag byte.
const RECORD_OVERHEAD_BYTES: usize = RECORD_HEADER_BYTES as usize + 1;

/// Configures and creates a [`Queue`] or [`JoinableQueue`].
///
/// By default a queue is unbounded, as Python's: messages up to [`SPILL_THRESHOLD_BYTES`] go into
/// a 1 MiB ring in shared memory, larger ones (and any that does not fit the ring's free space)
/// into a spill file beside it (a memfd), and the ring keeps only a 17-byte record per spilled
/// message. Two bounds can be set: `maxsize`, the number of messages it may hold (as in Python's
/// `Queue(maxsize)`), and `capacity_bytes`, which makes the ring the only storage, of that size (a
/// put waits while the encoded message plus its 5 bytes of framing do not fit).
/// `max_message_bytes` caps one encoded message ([`DEFAULT_MAX_MESSAGE_BYTES`]); a larger one is
/// refused on put.
pub struct QueueBuilder<T> {
    maxsize: Option<usize>,
    capacity_bytes: Option<usize>,
    max_message_bytes: Option<usize>,
    label: Option<String>,
    message: PhantomData<fn() -> T>,
}

impl<T> Default for QueueBuilder<T> {
    fn default() -> Self {
        QueueBuilder {
            maxsize: None,
            capacity_bytes: None,
            max_message_bytes: None,
            label: None,
            message: PhantomData,
        }
    }
}

impl<T> Clone for QueueBuilder<T> {
    fn clone(&self) -> Self {
        QueueBuilder {
            maxsize: self.maxsize,
            capacity_bytes: self.capacity_bytes,
            max_message_bytes: self.max_message_bytes,
            label: self.label.clone(),
            message: PhantomData,
        }
    }
}

impl<T> fmt::Debug for QueueBuilder<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueueBuilder")
            .field("maxsize", &self.maxsize)
            .field("capacity_bytes", &self.capacity_bytes)
            .field("max_message_bytes", &self.max_message_bytes)
            .field("label", &self.label)
            .finish()
    }
}

impl<T: Serialize + DeserializeOwned> QueueBuilder<T> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Most messages the queue holds at once (`0` means no message bound, as in Python).
    pub fn maxsize(mut self, maxsize: usize) -> Self {
        self.maxsize = Some(maxsize);
        self
    }

    /// Bounds the queue in bytes: the ring, of this size, holds every message (each takes its
    /// encoded size plus 5) and nothing is spilled.
    pub fn capacity_bytes(mut self, bytes: usize) -> Self {
        self.capacity_bytes = Some(bytes);
        self
    }

    /// Largest encoded message accepted by `put`.
    pub fn max_message_bytes(mut self, bytes: usize) -> Self {
        self.max_message_bytes = Some(bytes);
        self
    }

    /// A label shown in `/proc/<pid>/maps` as `memfd:herd:<label>` (default `queue`).
    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }

    /// Creates a [`Queue`].
    pub fn build(&self) -> Result<Queue<T>, QueueError> {
        self.create(false).map(Queue::from_raw)
    }

    /// Creates a [`JoinableQueue`].
    pub fn build_joinable(&self) -> Result<JoinableQueue<T>, QueueError> {
        self.create(true)
            .map(|raw| JoinableQueue::from_queue(Queue::from_raw(raw)))
    }

    fn create(&self, joinable: bool) -> Result<Arc<RawQueue>, QueueError> {
        let layout = self.layout(joinable)?;
        let label = self.label.as_deref().unwrap_or("queue");
        RawQueue::create(label, std::any::type_name::<T>(), layout)
            .map(Arc::new)
            .map_err(QueueError::SharedMemory)
    }

    fn layout(&self, joinable: bool) -> Result<QueueLayout, QueueError> {
        let invalid = |message: String| Err(QueueError::InvalidConfig(message));
        let spill = self.capacity_bytes.is_none();
        let max_message = match (self.max_message_bytes, self.capacity_bytes) {
            (Some(max_message), _) => max_message,
            // A small ring lowers the default limit to what it can hold.
            (None, Some(capacity)) => {
                BOUNDED_MAX_MESSAGE_BYTES.min(capacity.saturating_sub(RECORD_OVERHEAD_BYTES))
            }
            (None, None) => DEFAULT_MAX_MESSAGE_BYTES,
        };
        let Ok(max_message_u32) = u32::try_from(max_message) else {
            return invalid(format!(
                "max_message_bytes {max_message} exceeds {} bytes",
                u32::MAX
            ));
        };
        let capacity = self.capacity_bytes.unwrap_or(DEFAULT_CAPACITY_BYTES);
        if capacity > MAX_CAPACITY_BYTES as usize {
            return invalid(format!(
                "capacity_bytes {capacity} exceeds the largest ring, {MAX_CAPACITY_BYTES} bytes"
            ));
        }
        let inline_max = if spill {
            max_message.min(SPILL_THRESHOLD_BYTES)
        } else {
            max_message
        };
        if capacity < inline_max.saturating_add(RECORD_OVERHEAD_BYTES) {
            return invalid(format!(
                "capacity_bytes {capacity} cannot hold one message of max_message_bytes \
                 {max_message} plus its {RECORD_OVERHEAD_BYTES} bytes of framing"
            ));
        }
        let maxsize = self.maxsize.unwrap_or(0);
        let Ok(maxsize) = u32::try_from(maxsize) else {
            return invalid(format!("maxsize {maxsize} exceeds {}", u32::MAX));
        };
        Ok(QueueLayout {
            capacity: capacity as u32,
            max_message: max_message_u32,
            inline_max: inline_max as u32,
            spill,
            maxsize,
            joinable,
        })
    }
}

impl<T> Queue<T> {
    fn from_raw(raw: Arc<RawQueue>) -> Self {
        Queue {
            raw,
            message: PhantomData,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_spill_what_the_ring_should_not_hold() {
        let layout = QueueBuilder::<u8>::new().layout(false).unwrap();
        assert_eq!(layout.capacity as usize, DEFAULT_CAPACITY_BYTES);
        assert_eq!(layout.max_message as usize, DEFAULT_MAX_MESSAGE_BYTES);
        assert_eq!(layout.inline_max as usize, SPILL_THRESHOLD_BYTES);
        assert!(layout.spill);
        assert_eq!(layout.maxsize, 0);
        let counted = QueueBuilder::<u8>::new().maxsize(3).layout(true).unwrap();
        assert!(counted.spill && counted.joinable);
        let small = QueueBuilder::<u8>::new()
            .capacity_bytes(1000)
            .layout(false)
            .unwrap();
        assert_eq!((small.capacity, small.max_message), (1000, 995));
        assert!(!small.spill);
    }

    #[test]
    fn impossible_sizes_name_the_setting_at_fault() {
        let error = QueueBuilder::<u8>::new()
            .capacity_bytes(100)
            .max_message_bytes(100)
            .layout(false)
            .unwrap_err();
        assert!(error.to_string().contains("capacity_bytes 100"), "{error}");
        let error = QueueBuilder::<u8>::new()
            .maxsize(usize::MAX)
            .layout(false)
            .unwrap_err();
        assert!(error.to_string().contains("maxsize"), "{error}");
        let error = QueueBuilder::<u8>::new()
            .max_message_bytes(usize::MAX)
            .layout(false)
            .unwrap_err();
        assert!(error.to_string().contains("max_message_bytes"), "{error}");
        let error = QueueBuilder::<u8>::new()
            .capacity_bytes(usize::MAX)
            .layout(false)
            .unwrap_err();
        assert!(error.to_string().contains("capacity_bytes"), "{error}");
    }
}
