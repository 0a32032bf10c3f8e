//! The OS layer of herd-ipc: every `unsafe` call into the kernel or libc lives under this module.
//! The re-exports below are the contract the rest of the crate builds on.

mod futex;
mod pod;
mod pod_array;
mod robust_mutex;
mod shared_state;
mod shm;

pub(crate) use futex::{futex_wait, futex_wake, futex_wake_all, FutexWait};
pub use pod::{AtomicInteger, Pod};
pub(crate) use pod_array::{PodArrayGuard, SharedPodArray};
pub(crate) use robust_mutex::{Acquired, MutexError, MutexKind, RobustMutex};
pub(crate) use shared_state::{SharedLayout, SharedState};
pub(crate) use shm::SharedMemory;
