//! Starting a child process: `fork` running a closure, or `fork` + `execv` re-executing the current binary.
//!
//! Everything the OS asks of the code between `fork` and `_exit`/`execv` lives here: the check that the parent
//! is single-threaded (the [`ForkPermit`]), the child's own process group, the parent-death signal with its race
//! check, resetting the signal mask, and leaving the child without ever unwinding into the parent's copied stack.
//!
//! What runs in the child before the caller's code (fork) or before `execv` (spawn) is the same for both, and
//! is async-signal-safe system calls only (`setpgid`, `prctl`, `getppid`, `sigprocmask`, `fcntl`, `write`,
//! `_exit`) on data prepared before the fork: that is what makes spawn fine from a multi-threaded parent.
use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::panic::{catch_unwind, AssertUnwindSafe};

use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::unistd::{getpid, getppid, setpgid, ForkResult, Pid};

/// Proof that forking and then running arbitrary Rust code in the child is acceptable here.
///
/// After `fork` only the forking thread exists in the child; any lock another thread held at that moment stays
/// locked for ever. A permit exists either because the process had one thread when it was made, or because the
/// caller promised (unsafely) that the child will not need such locks.
#[derive(Debug)]
pub(crate) struct ForkPermit {
    parent_threads: usize,
}

impl ForkPermit {
    /// A permit if this process has exactly one thread; otherwise the number of threads found, or `None` if
    /// they cannot be counted (then refusing is the safe answer).
    pub(crate) fn single_threaded() -> Result<Self, Option<usize>> {
        match thread_count() {
            Some(1) => Ok(Self { parent_threads: 1 }),
            threads => Err(threads),
        }
    }

    /// A permit for a multi-threaded process.
    ///
    /// # Safety
    /// The child must not touch anything another thread of the parent may hold locked at the moment of fork
    /// (Rust std's stdout/stderr/env locks, mutexes of the program, allocators other than glibc malloc), and
    /// must not rely on the other threads, which do not exist in the child.
    pub(crate) unsafe fn multi_threaded_by_contract() -> Self {
        Self {
            // Uncountable: assume other threads exist, so the child takes no lock-guarded shortcut.
            parent_threads: thread_count().unwrap_or(usize::MAX),
        }
    }

    /// Whether the parent had other threads: the child then skips flushing stdout (another thread may have held
    /// its lock at fork time).
    pub(crate) fn parent_was_multi_threaded(&self) -> bool {
        self.parent_threads > 1
    }
}

/// Number of threads of this process, from `/proc/self/task`; `None` if /proc is not readable.
fn thread_count() -> Option<usize> {
    std::fs::read_dir("/proc/self/task")
        .ok()
        .map(Iterator::count)
}

/// What the child does first, before any code of the caller runs (and, for spawn, before `execv`).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ChildSetup {
    /// Move into a new process group whose id is the child's pid (`setpgid(0, 0)`). The parent makes the same
    /// call right after fork, so the group exists as soon as either side has run; whichever comes second is a
    /// no-op (or EACCES for the parent once the child has exec'd, which is harmless).
    pub(crate) own_process_group: bool,
    /// Receive this signal when the parent (precisely: the parent *thread* that forked) exits
    /// (`PR_SET_PDEATHSIG`, which survives `execv` of a binary that is not set-user-ID or set-group-ID).
    pub(crate) parent_death_signal: Option<Signal>,
}

/// Exit code of a child whose parent was already gone when it armed its parent-death signal.
const PARENT_ALREADY_GONE: i32 = 125;
/// Exit code of a child that could not apply its [`ChildSetup`] (a failed `setpgid` or `prctl`).
const SETUP_FAILED: i32 = 126;
/// Exit code of a spawn child whose `execv` failed.
const EXEC_FAILED: i32 = 127;

/// Forks; the child runs `setup`, then `body`, then `_exit`s with the code `body` returned (1 if it unwound).
/// Returns the child's pid in the parent; never returns in the child. Only the permit's existence matters: it
/// must be made just before the call, with no thread started in between.
pub(crate) fn fork_and_run(
    _permit: &ForkPermit,
    setup: ChildSetup,
    body: impl FnOnce() -> i32,
) -> io::Result<Pid> {
    let parent = getpid();
    // SAFETY: the permit certifies that the process was single-threaded or that the caller accepted the
    // contract of `multi_threaded_by_contract`, so the child can run ordinary Rust code. The child never
    // returns from this function: it leaves through `_exit`, so it never unwinds into or returns to the
    // parent's stack frames it inherited as a copy.
    match unsafe { nix::unistd::fork() }.map_err(io::Error::from)? {
        ForkResult::Parent { child } => Ok(parent_side(child, setup)),
        ForkResult::Child => {
            apply_in_child(setup, parent);
            let code = catch_unwind(AssertUnwindSafe(body)).unwrap_or(1);
            exit_now(code)
        }
    }
}

/// The parent's half of [`ChildSetup`], right after fork: the child's process group, so that the parent may
/// signal the group as soon as `fork` returns, whether or not the child has run yet.
fn parent_side(child: Pid, setup: ChildSetup) -> Pid {
    if setup.own_process_group {
        // EACCES once the child has exec'd (it made the same call before); ESRCH cannot happen, the child is
        // ours and unreaped. Either way the child's own call guarantees the group.
        let _ = setpgid(child, child);
    }
    child
}

/// The child's half of [`ChildSetup`], first thing after fork. Only async-signal-safe calls; never returns if
/// the setup fails or the parent is already gone.
fn apply_in_child(setup: ChildSetup, parent: Pid) {
    if setup.own_process_group && setpgid(Pid::from_raw(0), Pid::from_raw(0)).is_err() {
        exit_now(SETUP_FAILED);
    }
    if let Some(signal) = setup.parent_death_signal {
        if nix::sys::prctl::set_pdeathsig(signal).is_err() {
            exit_now(SETUP_FAILED);
        }
        // The parent may have died between fork and prctl: the child was then re-parented (to init or a
        // subreaper) before the signal was armed, and it would never come. The parent's pid was taken before
        // fork, so a different getppid() means exactly that.
        if getppid() != parent {
            exit_now(PARENT_ALREADY_GONE);
        }
    }
}

/// Sets `signal` back to its default action if the parent installed a handler for it (an ignored
/// signal stays ignored, as `execv` would keep it). `execv` resets handlers anyway; doing it before
/// the parent-death signal is armed means that a parent dying between `prctl` and `execv` ends the
/// child, instead of running the parent's handler in it and leaving the signal spent.
/// Async-signal-safe (two `sigaction` calls).
fn drop_inherited_handler(signal: Signal) {
    // SAFETY: an all-zero sigaction is a valid value of this plain C struct (no handler, empty mask,
    // no flags); it is only an output buffer here.
    let mut current: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: with a NULL new action, sigaction only writes the current disposition into `current`,
    // which lives for the call.
    let read = unsafe { libc::sigaction(signal as libc::c_int, std::ptr::null(), &mut current) };
    if read != 0 || current.sa_sigaction == libc::SIG_DFL || current.sa_sigaction == libc::SIG_IGN {
        return;
    }
    // SAFETY: as above, all-zero is a valid sigaction: SIG_DFL (0), empty mask, no flags.
    let default: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: installs SIG_DFL, which runs no code of ours; `default` lives for the call.
    let _ = unsafe { libc::sigaction(signal as libc::c_int, &default, std::ptr::null_mut()) };
}

/// Leaves the process at once: no atexit handlers, no destructors, no flushing of buffers copied from the
/// parent at fork time.
fn exit_now(code: i32) -> ! {
    // SAFETY: _exit ends the process immediately; it is async-signal-safe and has no preconditions.
    unsafe { libc::_exit(code) }
}

/// Everything needed to re-execute the current binary in a forked child, prepared before the fork so the child
/// only makes async-signal-safe calls (which makes spawn fine from a multi-threaded parent).
#[derive(Debug)]
pub(crate) struct ExecPlan {
    argv: Vec<CString>,
    inherit: Vec<RawFd>,
    failure_fd: RawFd,
    failure_frame: Vec<u8>,
}

impl ExecPlan {
    /// `argv` for the new image (argv[0] included); `inherit`: fds (CLOEXEC in the parent) that the new image
    /// keeps; on exec failure the child writes `failure_frame` to `failure_fd` and exits with 127.
    pub(crate) fn new(
        argv: Vec<CString>,
        inherit: &[BorrowedFd<'_>],
        failure_fd: BorrowedFd<'_>,
        failure_frame: Vec<u8>,
    ) -> Self {
        Self {
            argv,
            inherit: inherit.iter().map(|fd| fd.as_raw_fd()).collect(),
            failure_fd: failure_fd.as_raw_fd(),
            failure_frame,
        }
    }
}

/// Forks and re-executes `/proc/self/exe` (the running binary, even if its path was replaced since) per `plan`.
/// Returns the child's pid.
pub(crate) fn fork_and_exec_self(plan: &ExecPlan, setup: ChildSetup) -> io::Result<Pid> {
    const SELF_EXE: &CStr = c"/proc/self/exe";
    let mut argv: Vec<*const libc::c_char> = plan.argv.iter().map(|arg| arg.as_ptr()).collect();
    argv.push(std::ptr::null());
    let parent = getpid();
    // SAFETY: between fork and execv/_exit the child only calls async-signal-safe functions (sigprocmask,
    // sigaction, setpgid, prctl, getppid, fcntl, execv, write, _exit) on data prepared before the fork, so it
    // cannot deadlock on a lock held by another parent thread; this is why spawn needs no ForkPermit.
    match unsafe { nix::unistd::fork() }.map_err(io::Error::from)? {
        ForkResult::Parent { child } => Ok(parent_side(child, setup)),
        ForkResult::Child => {
            // A parent thread may block signals (SIGTERM, say); the new program must start with none blocked.
            let _ = nix::sys::signal::sigprocmask(
                SigmaskHow::SIG_SETMASK,
                Some(&SigSet::empty()),
                None,
            );
            if let Some(signal) = setup.parent_death_signal {
                drop_inherited_handler(signal);
            }
            apply_in_child(setup, parent);
            for &fd in &plan.inherit {
                // SAFETY: fcntl(F_SETFD) only changes the flags of an fd the parent keeps open until after fork.
                if unsafe { libc::fcntl(fd, libc::F_SETFD, 0) } < 0 {
                    exit_now(EXEC_FAILED);
                }
            }
            // SAFETY: SELF_EXE and every argv entry are NUL-terminated strings owned by `plan`, alive here;
            // argv ends with a NULL pointer as execv requires.
            unsafe { libc::execv(SELF_EXE.as_ptr(), argv.as_ptr()) };
            // SAFETY: writes bytes of a buffer owned by `plan` to an fd inherited from the parent.
            let _ = unsafe {
                libc::write(
                    plan.failure_fd,
                    plan.failure_frame.as_ptr().cast(),
                    plan.failure_frame.len(),
                )
            };
            exit_now(EXEC_FAILED)
        }
    }
}
