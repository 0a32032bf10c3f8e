//! herd-ipc: processes started by fork or spawn, and the ways they share data.
#![deny(unsafe_op_in_unsafe_fn)]

// Used by the transports (Pipe, spawn, Queue) as they land.
#[allow(dead_code)]
mod codec;
// The OS layer is used by the primitives that land on top of it (sync, queue); until they are
// merged some of its items have no caller yet.
#[allow(dead_code, unused_imports)]
mod platform;
mod queue;

pub use codec::CodecError;
pub use queue::{
    GetError, GetTimeoutError, JoinTimeoutError, JoinableQueue, MessageError, PutError,
    PutTimeoutError, Queue, QueueBroken, QueueBuilder, QueueError, TaskDoneError, TryGetError,
    TryPutError, DEFAULT_CAPACITY_BYTES as QUEUE_DEFAULT_CAPACITY_BYTES,
    DEFAULT_MAX_MESSAGE_BYTES as QUEUE_DEFAULT_MAX_MESSAGE_BYTES,
};
