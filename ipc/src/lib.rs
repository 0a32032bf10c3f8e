//! herd-ipc: processes started by fork or spawn, and the ways they share data.
#![deny(unsafe_op_in_unsafe_fn)]

// Used by the transports (Pipe, spawn, Queue) as they land.
#[allow(dead_code)]
mod codec;
mod pipe;
mod platform;
mod process;
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
pub use wait::{wait, Waitable};
