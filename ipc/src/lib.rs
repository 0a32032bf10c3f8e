//! herd-ipc: processes started by fork or spawn, and the ways they share data.
#![deny(unsafe_op_in_unsafe_fn)]

mod array;
// Used by the transports (Pipe, spawn, Queue) as they land.
#[allow(dead_code)]
mod codec;
mod platform;
mod sync;
mod value;

pub use array::{AccessError, Array, ArrayGuard};
pub use codec::CodecError;
pub use platform::{AtomicInteger, Pod};
pub use sync::{
    Barrier, BarrierWaitError, BoundedSemaphore, Condition, ConditionGuard, ConditionWaitError,
    Event, Lock, LockError, LockGuard, LockTimeoutError, OverReleased, OwnerDied, RLock, Semaphore,
    TimedOut, TryLockError,
};
pub use value::{Value, ValueGuard};
