//! herd-ipc: processes started by fork or spawn, and the ways they share data.
#![deny(unsafe_op_in_unsafe_fn)]

mod array;
// Used by the transports (Pipe, spawn, Queue) as they land.
#[allow(dead_code)]
mod codec;
mod pipe;
mod platform;
mod process;
mod queue;
mod sync;
mod value;
mod wait;

pub use array::{AccessError, Array, ArrayGuard};
pub use codec::CodecError;
pub use pipe::{
    Pipe, PipeReceiver, PipeSender, RecvError, RecvTimeoutError, SendBytesError, SendError,
    SendTimeoutError, TryRecvError, TrySendError, DEFAULT_PIPE_MESSAGE_LIMIT,
};
pub use platform::{AtomicInteger, Pod};
pub use process::{
    __private, active_children, current_process, init, Child, ChildInfo, CurrentProcess, Entry,
    ExitStatus, JoinError, JoinTimeoutError, Process, StartError,
};
pub use queue::{
    GetError, GetTimeoutError, JoinableQueue, MessageError, PutError, PutTimeoutError, Queue,
    QueueBroken, QueueBuilder, QueueError, QueueJoinTimeoutError, TaskDoneError, TryGetError,
    TryPutError, DEFAULT_CAPACITY_BYTES as QUEUE_DEFAULT_CAPACITY_BYTES,
    DEFAULT_MAX_MESSAGE_BYTES as QUEUE_DEFAULT_MAX_MESSAGE_BYTES,
};
pub use sync::{
    Barrier, BarrierWaitError, BoundedSemaphore, Condition, ConditionGuard, ConditionWaitError,
    Event, Lock, LockError, LockGuard, LockTimeoutError, OverReleased, OwnerDied, RLock, Semaphore,
    TimedOut, TryLockError,
};
pub use value::{Value, ValueGuard};
pub use wait::{wait, Waitable};
