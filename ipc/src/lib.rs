//! herd-ipc: processes started by fork or spawn, and the ways they share data.
#![deny(unsafe_op_in_unsafe_fn)]

// Used by the transports (Pipe, spawn, Queue) as they land.
#[allow(dead_code)]
mod codec;
mod manager;
mod platform;
mod process;

pub use codec::CodecError;
pub use manager::{
    Address, Authkey, ConditionProxy, DictProxy, EventProxy, ListProxy, LockProxy, LockProxyGuard,
    Manager, ManagerBuilder, ManagerError, ManagerGetTimeoutError, ManagerPutTimeoutError,
    ManagerTryGetError, ManagerTryPutError, NamedObjects, NamespaceProxy, QueueProxy, RLockProxy,
    RemoteError, SemaphoreProxy,
};
pub use process::{
    __private, active_children, current_process, init, Child, ChildInfo, CurrentProcess, Entry,
    ExitStatus, JoinError, JoinTimeoutError, Process, StartError,
};
