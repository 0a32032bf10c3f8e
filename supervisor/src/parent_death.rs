//! Parent death: when the supervisor dies, however it dies (SIGKILL included), each worker
//! takes its whole process group with it, the worker's own children too.
//!
//! The worker is started by herd-ipc with `process_group(true)` and
//! `die_with_parent(SIGUSR2)`: it leads a group of its own, and the kernel sends it SIGUSR2 when
//! the supervisor dies (herd-ipc arms that in the child before anything else runs, and exits the
//! child if the supervisor was already gone). SIGKILL there would kill the worker but orphan
//! whatever it started; instead the handler installed here SIGKILLs the worker's process group,
//! so its children go at the same moment. Until the handler is installed, SIGUSR2 takes its
//! default action and ends the worker alone, which is enough: it has started nothing yet.
//!
//! The one `unsafe` of the supervisor's process side is here: registering a signal handler
//! whose action must be async-signal-safe.
#![allow(unsafe_code)] // registers a raw signal handler (signal_hook::low_level::register)

use std::io;

use herd_ipc::Pid;
use nix::sys::signal::Signal;
use nix::unistd::getpgrp;

/// The parent-death signal the worker is started with (see the module documentation).
pub const PARENT_DEATH_SIGNAL: Signal = Signal::SIGUSR2;

/// Installs the handler that turns [`PARENT_DEATH_SIGNAL`] into SIGKILL for the worker's own
/// process group, in a worker whose parent is `supervisor`. Call it before the worker starts
/// any process. A [`PARENT_DEATH_SIGNAL`] sent by anyone else while the supervisor lives is
/// ignored.
pub fn kill_group_on_parent_death(supervisor: Pid) -> io::Result<()> {
    let me = Pid::this().as_raw();
    // Signal the whole group only if it is the worker's own, never the supervisor's.
    let target = if getpgrp().as_raw() == me { -me } else { me };
    let supervisor = supervisor.as_raw();
    let action = move || {
        // SAFETY: getppid and kill are async-signal-safe and take plain integers; the closure
        // touches nothing else, so it may run at any point of the interrupted code.
        unsafe {
            if libc::getppid() != supervisor {
                libc::kill(target, libc::SIGKILL);
            }
        }
    };
    // SAFETY: `action` is async-signal-safe (see above) and captures only two integers.
    unsafe { signal_hook::low_level::register(PARENT_DEATH_SIGNAL as i32, action) }?;
    // Had the signal been ignored (a disposition inherited through fork) when the supervisor
    // died, it would be lost: look once more now that the handler is in place.
    if Pid::parent().as_raw() != supervisor {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(target), Signal::SIGKILL)?;
    }
    Ok(())
}
