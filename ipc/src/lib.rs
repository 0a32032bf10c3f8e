//! herd-ipc: processes started by fork or spawn, and the ways they share data.
#![deny(unsafe_op_in_unsafe_fn)]

// Used by the transports (Pipe, spawn, Queue) as they land.
#[allow(dead_code)]
mod codec;
mod pipe;
// The OS layer is used by the primitives that land on top of it (sync, queue); until they are
// merged some of its items have no caller yet.
#[allow(dead_code, unused_imports)]
mod platform;
mod process;
mod queue;
mod wait;

pub use codec::CodecError;
pub use pipe::{
    Pipe, PipeReceiver, PipeSender, RecvError, RecvTimeoutError, SendBytesError, SendError,
    SendTimeoutError, TryRecvError, TrySendError, DEFAULT_PIPE_MESSAGE_LIMIT,
};
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
pub use wait::{wait, Waitable};
