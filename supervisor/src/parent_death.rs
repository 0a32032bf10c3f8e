//! Parent death: when the supervisor dies, however it dies (SIGKILL included), each worker
//! takes its whole process group with it, the worker's own children too.
//!
//! `PR_SET_PDEATHSIG` alone (SIGKILL) would kill the worker but orphan whatever it started.
//! Instead the kernel sends SIGUSR2, whose handler SIGKILLs the worker's process group, so its
//! children go at the same moment. The handler does nothing but `getppid` and `kill`, both
//! async-signal-safe.
use std::io;

use nix::sys::signal::Signal;
use nix::unistd::{getpgrp, getpid, getppid};

/// Arms the parent-death handler in a worker whose parent is `supervisor`. Call it after the
/// worker moved into its own process group: the handler kills the group it is in then, and
/// never the supervisor's group. If the supervisor is already gone, kills at once.
pub fn die_with_supervisor(supervisor: i32) -> io::Result<()> {
    let me = getpid();
    // Signal the whole group only if it is the worker's own.
    let target = if getpgrp() == me {
        -me.as_raw()
    } else {
        me.as_raw()
    };
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
    unsafe { signal_hook::low_level::register(Signal::SIGUSR2 as i32, action) }?;
    nix::sys::prctl::set_pdeathsig(Signal::SIGUSR2)?;
    // The supervisor may have died before the line above: then no signal will ever come.
    if getppid().as_raw() != supervisor {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(target), Signal::SIGKILL)?;
    }
    Ok(())
}
