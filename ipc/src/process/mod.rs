//! Processes: start a child by fork or spawn, supervise it through its handle, reap it.
mod builder;
mod child;
mod entry;
mod forkserver;
mod method;
mod outcome;
mod pid;
mod registry;
mod status;

pub use builder::{Process, StartError};
pub use child::{Child, JoinError, JoinTimeoutError};
pub use entry::{init, Entry};
pub use forkserver::forkserver_pid;
pub use method::{StartMethod, UnknownStartMethod};
pub use pid::Pid;

pub(crate) use entry::{is_registered, run_by_name, run_if_started_by_herd};
pub(crate) use outcome::ChildOutcome;
pub use registry::{
    active_children, current_process, parent_process, ChildInfo, CurrentProcess, ParentProcess,
};
pub use status::ExitStatus;

/// What [`entry!`](crate::entry!) and [`register_shared!`](crate::register_shared) expand to;
/// not an API.
#[doc(hidden)]
pub mod __private {
    pub use super::entry::{EntryRegistration, ENTRIES};
    pub use crate::manager::{SharedRegistration, SHARED_TYPES};
    pub use linkme;
}
