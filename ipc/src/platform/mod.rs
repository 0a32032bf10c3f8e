//! The OS layer of herd-ipc: every `unsafe` call into the kernel lives in the
//! modules below, and this re-export list is all the rest of the crate may use.

mod fork;
mod handoff;
mod name;
mod pidfd;
mod socket;

pub(crate) use fork::{fork_and_exec_self, fork_and_run, ChildSetup, ExecPlan, ForkPermit};
pub(crate) use handoff::{adopt_inherited_fd, memfd_with, read_memfd};
pub(crate) use name::{current_name, set_current_name};
pub(crate) use pidfd::{children_are_auto_reaped, Pidfd, Reaped};
pub(crate) use socket::{control_buffer, poll, Blocking, Socket, MAX_FDS_PER_MESSAGE};
