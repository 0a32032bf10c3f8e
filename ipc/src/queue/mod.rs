//! Shared-memory MPMC queues: [`Queue`] and [`JoinableQueue`] (design notes: docs/queue.md).
mod builder;
mod errors;
mod joinable;
mod raw;
mod ring;
mod typed;
mod waiting;

pub use builder::{
    QueueBuilder, DEFAULT_CAPACITY_BYTES, DEFAULT_MAX_MESSAGE_BYTES, SPILL_THRESHOLD_BYTES,
};
pub use errors::{
    GetError, GetTimeoutError, JoinTimeoutError, MessageError, PutError, PutTimeoutError,
    QueueBroken, QueueError, TaskDoneError, TryGetError, TryPutError,
};
pub use joinable::JoinableQueue;
pub use typed::Queue;
