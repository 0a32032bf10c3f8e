//! The OS layer of herd-ipc: every `unsafe` call into the kernel or libc lives under this module.
//! The re-exports below are the contract the rest of the crate builds on.

mod futex;
mod queue_segment;
mod robust_mutex;
mod shm;

pub(crate) use futex::{futex_wait, futex_wake, futex_wake_all, FutexWait};
pub(crate) use queue_segment::{QueueHeader, QueueLayout, QueueSegment, WaitLine};
pub(crate) use robust_mutex::{Acquired, MutexError, MutexKind, RobustMutex};
pub(crate) use shm::SharedMemory;
