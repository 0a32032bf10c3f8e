//! The OS layer of herd-ipc: every `unsafe` call into the kernel lives in the
//! modules below, and this re-export list is all the rest of the crate may use.
//!
//! The workspace denies `unsafe_code`; this layer owns herd-ipc's unsafe (system calls, shared
//! mappings, process-shared mutexes, fork), each block with a `// SAFETY:` comment stating the
//! protocol that makes it sound. Outside it, herd-ipc has only the narrowly allowed
//! `unsafe impl SharedLayout` of each primitive's state (in `sync/`) and the unsafe opt-in
//! `Process::allow_multi_threaded_fork`.
#![allow(unsafe_code)] // the OS layer: see above

mod bootstrap;
mod fork;
mod forkserver;
mod futex;
mod handoff;
mod name;
mod named_shm;
mod pidfd;
mod pod;
mod pod_array;
mod queue_segment;
mod robust_mutex;
mod shared_state;
mod shm;
mod socket;
mod spill;

pub(crate) use bootstrap::ensure_linked as ensure_bootstrap_linked;
pub(crate) use fork::{fork_and_exec_self, fork_and_run, ChildSetup, ExecPlan, ForkPermit};
pub(crate) use forkserver::{child_signals, forkserver_signals, is_main_thread};
pub(crate) use futex::{futex_wait, futex_wake, futex_wake_all, FutexWait};
pub(crate) use handoff::{adopt_inherited_fd, memfd_with, read_memfd};
pub(crate) use name::{current_name, parent, set_current_name, set_parent};
pub(crate) use named_shm::NamedMapping;
pub(crate) use pidfd::{children_are_auto_reaped, Pidfd};
pub use pod::{AtomicInteger, Pod};
pub(crate) use pod_array::{PodArrayGuard, SharedPodArray};
pub(crate) use queue_segment::{QueueHeader, QueueLayout, QueueSegment, WaitLine};
pub(crate) use robust_mutex::{Acquired, MutexError, MutexKind, RobustMutex};
pub(crate) use shared_state::{SharedLayout, SharedState};
pub(crate) use shm::SharedMemory;
pub(crate) use socket::{control_buffer, poll, Blocking, Socket, MAX_FDS_PER_MESSAGE};
pub(crate) use spill::{SpillFile, SPILL_ALIGN};
