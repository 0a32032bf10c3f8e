//! What the forkserver process needs from the OS besides fork and pidfds: signal dispositions, and whether
//! the calling thread is the main thread (the parent-death signal fires when the *thread* that forked exits).
use nix::sys::signal::{signal, sigprocmask, SigHandler, SigSet, SigmaskHow, Signal};

/// Whether the calling thread is the process's main thread (its thread id is the process id).
pub(crate) fn is_main_thread() -> bool {
    nix::unistd::gettid() == nix::unistd::getpid()
}

/// Sets up the forkserver's signals: SIGINT blocked (a Ctrl-C meant for the foreground program must not take
/// the server and with it the daemon children; the program decides what happens to them), SIGCHLD at its
/// default (never auto-reaped: exited children stay zombies until their owner asks for the status).
///
/// Blocked rather than ignored: a forked child inherits the mask but not the pending signals, and unblocks
/// SIGINT first thing; a SIGINT sent to it before that stays pending and is delivered then. An ignored
/// SIGINT would be lost in that window.
pub(crate) fn forkserver_signals() {
    let mut sigint = SigSet::empty();
    sigint.add(Signal::SIGINT);
    let _ = sigprocmask(SigmaskHow::SIG_BLOCK, Some(&sigint), None);
    // SAFETY: installs SIG_DFL, no handler code; the forkserver is single-threaded and runs this before
    // anything else, so no other code depends on the previous disposition.
    unsafe {
        let _ = signal(Signal::SIGCHLD, SigHandler::SigDfl);
    }
}

/// Gives a child forked by the forkserver SIGINT back (the server blocks it).
pub(crate) fn child_signals() {
    let mut sigint = SigSet::empty();
    sigint.add(Signal::SIGINT);
    let _ = sigprocmask(SigmaskHow::SIG_UNBLOCK, Some(&sigint), None);
}
