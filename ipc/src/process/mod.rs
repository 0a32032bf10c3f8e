//! Processes: start a child by fork or spawn, supervise it through its handle, reap it.
mod builder;
mod child;
mod entry;
mod outcome;
mod pid;
mod registry;
mod status;

pub use builder::{Process, StartError};
pub use child::{Child, JoinError, JoinTimeoutError};
pub use entry::{init, Entry};
pub use pid::Pid;
pub use registry::{active_children, current_process, ChildInfo, CurrentProcess};
pub use status::ExitStatus;

/// What [`entry!`](crate::entry!) expands to; not an API.
#[doc(hidden)]
pub mod __private {
    pub use super::entry::EntryRegistration;
    pub use inventory;
}
