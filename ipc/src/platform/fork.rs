//! Starting a child process: `fork` running a closure, or `fork` + `execv` re-executing the current binary.
//!
//! Everything the OS asks of the code between `fork` and `_exit`/`execv` lives here: the check that the parent
//! is single-threaded (the [`ForkPermit`]), the parent-death signal for daemon children with its race check,
//! resetting the signal mask, and leaving the child without ever unwinding into the parent's copied stack.
use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::panic::{catch_unwind, AssertUnwindSafe};

use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::unistd::{getpid, getppid, ForkResult, Pid};

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

/// What the child does first, before any code of the caller runs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ChildSetup {
    /// Receive SIGKILL when the parent (precisely: the parent *thread* that forked) exits.
    pub(crate) die_with_parent: bool,
}

/// Exit code of a daemon child whose parent was already gone when it armed its parent-death signal.
const PARENT_ALREADY_GONE: i32 = 125;
/// Exit code of a spawn child whose `execv` failed.
const EXEC_FAILED: i32 = 127;

/// Forks; the child runs `setup`, then `body`, then `_exit`s with the code `body` returned (1 if it unwound).
/// Returns the child's pid in the parent; never returns in the child. Only the permit's existence matters: it
/// must be made just before the call, with no thread started in between.
pub(crate) fn fork_and_run(
    _permit: &ForkPermit,
    setup: ChildSetup,
    body: impl FnOnce() -> i32,
) -> io::Result<i32> {
    let parent = getpid();
    // SAFETY: the permit certifies that the process was single-threaded or that the caller accepted the
    // contract of `multi_threaded_by_contract`, so the child can run ordinary Rust code. The child never
    // returns from this function: it leaves through `_exit`, so it never unwinds into or returns to the
    // parent's stack frames it inherited as a copy.
    match unsafe { nix::unistd::fork() }.map_err(io::Error::from)? {
        ForkResult::Parent { child } => Ok(child.as_raw()),
        ForkResult::Child => {
            if setup.die_with_parent && !die_with_parent(parent) {
                exit_now(PARENT_ALREADY_GONE);
            }
            let code = catch_unwind(AssertUnwindSafe(body)).unwrap_or(1);
            exit_now(code)
        }
    }
}

/// Arms SIGKILL-on-parent-death, then checks the parent did not die before it was armed (the child would then
/// already be an orphan and never receive the signal). Only async-signal-safe calls.
fn die_with_parent(parent: Pid) -> bool {
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).is_ok() && getppid() == parent
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
pub(crate) fn fork_and_exec_self(plan: &ExecPlan, setup: ChildSetup) -> io::Result<i32> {
    const SELF_EXE: &CStr = c"/proc/self/exe";
    let mut argv: Vec<*const libc::c_char> = plan.argv.iter().map(|arg| arg.as_ptr()).collect();
    argv.push(std::ptr::null());
    let parent = getpid();
    // SAFETY: between fork and execv/_exit the child only calls async-signal-safe functions (sigprocmask,
    // fcntl, prctl, getppid, execv, write, _exit) on data prepared before the fork, so it cannot deadlock on a
    // lock held by another parent thread; this is why spawn needs no ForkPermit.
    match unsafe { nix::unistd::fork() }.map_err(io::Error::from)? {
        ForkResult::Parent { child } => Ok(child.as_raw()),
        ForkResult::Child => {
            // A parent thread may block signals (SIGTERM, say); the new program must start with none blocked.
            let _ = nix::sys::signal::sigprocmask(
                SigmaskHow::SIG_SETMASK,
                Some(&SigSet::empty()),
                None,
            );
            if setup.die_with_parent && !die_with_parent(parent) {
                exit_now(PARENT_ALREADY_GONE);
            }
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
