//! The OS layer of herd-ipc: every `unsafe` call into the kernel lives below this module; the re-exports here
//! are the contract the rest of the crate builds on.
mod fork;
mod handoff;
mod name;
mod pidfd;

pub(crate) use fork::{fork_and_exec_self, fork_and_run, ChildSetup, ExecPlan, ForkPermit};
pub(crate) use handoff::{
    adopt_inherited_fd, memfd_with, read_available, read_memfd, result_pipe, write_all,
};
pub(crate) use name::{current_name, set_current_name};
pub(crate) use pidfd::{poll_readable, Pidfd, Reaped};
