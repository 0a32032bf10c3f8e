//! `Pidfd`: a file descriptor naming one child process, the only way herd signals or reaps a child.
//!
//! A pid is a number the kernel recycles once the process has been reaped; a pidfd names one process for as
//! long as the fd is open. Signals go through `pidfd_send_signal` and reaping through `waitid(P_PIDFD)`, so a
//! recycled pid can never be hit. The fd is readable once the process has exited, which makes it a sentinel
//! for `poll`.
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use nix::errno::Errno;
use nix::sys::wait::{waitid, Id, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

/// An open pidfd for one process (always close-on-exec: the kernel sets it).
#[derive(Debug)]
pub(crate) struct Pidfd(OwnedFd);

impl Pidfd {
    /// Opens a pidfd for `pid`. Only sound for a child of ours that nobody can have reaped yet (herd opens it
    /// right after fork, and only herd reaps its children), otherwise `pid` may already name another process.
    fn open(pid: Pid) -> io::Result<Self> {
        // SAFETY: pidfd_open takes two integers and returns a new fd or -1; it touches no memory of ours.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let fd = i32::try_from(fd)
            .map_err(|_| io::Error::other("pidfd_open returned an out-of-range fd"))?;
        // SAFETY: the kernel just returned this fd to us; nothing else owns it, so OwnedFd may close it.
        Ok(Self(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// Opens a pidfd for a child just forked; if that fails, kills and reaps the child by pid (safe: it is
    /// ours and unreaped, so the pid still names it) so the failure leaves no stray process behind.
    pub(crate) fn open_child(pid: Pid) -> io::Result<Self> {
        Self::open(pid).inspect_err(|_| {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            let _ = nix::sys::wait::waitpid(pid, None);
        })
    }

    /// Takes ownership of a pidfd received from another process (SCM_RIGHTS), e.g. the forkserver's pidfd for
    /// a child it forked on our behalf. Such a pidfd can be polled and signalled, not reaped: the process is
    /// not our child.
    pub(crate) fn adopt(fd: OwnedFd) -> Self {
        Self(fd)
    }

    /// Opens a pidfd for this process's parent, which must be `expected`; `None` if the parent is already gone.
    ///
    /// Sound without a race: a pid can be reused only after its process was reaped, which happens after it
    /// exited, and its children are re-parented at that exit. So if `getppid()` still names `expected` after
    /// the open, the parent had not exited when the pidfd was opened, and the pidfd names it.
    pub(crate) fn open_parent(expected: i32) -> io::Result<Option<Self>> {
        let parent = || nix::unistd::getppid().as_raw();
        if parent() != expected {
            return Ok(None);
        }
        let pidfd = match Self::open(Pid::from_raw(expected)) {
            Ok(pidfd) => pidfd,
            Err(err) if err.raw_os_error() == Some(libc::ESRCH) => return Ok(None),
            Err(err) => return Err(err),
        };
        Ok((parent() == expected).then_some(pidfd))
    }

    /// Whether the process has exited (the pidfd is readable), without waiting. Works for any process, not
    /// only our children.
    pub(crate) fn has_exited(&self) -> io::Result<bool> {
        Ok(crate::platform::poll(
            &[self.0.as_fd()],
            nix::poll::PollFlags::POLLIN,
            Some(std::time::Duration::ZERO),
        )?
        .is_some())
    }

    /// Sends `signal` to the process. Fails with ESRCH once the process has exited.
    pub(crate) fn send_signal(&self, signal: i32) -> io::Result<()> {
        // SAFETY: pidfd_send_signal reads no memory when `info` is NULL; the fd is open for the call's duration
        // because `self` owns it.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.0.as_raw_fd(),
                signal,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Reaps the process if it has exited; `Ok(None)` while it runs. After `Some` (always
    /// `WaitStatus::Exited` or `WaitStatus::Signaled`), the pid is free for reuse.
    pub(crate) fn try_reap(&self) -> io::Result<Option<WaitStatus>> {
        self.reap(WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG)
    }

    /// Waits for the process to exit and reaps it.
    pub(crate) fn reap_blocking(&self) -> io::Result<WaitStatus> {
        loop {
            if let Some(reaped) = self.reap(WaitPidFlag::WEXITED)? {
                return Ok(reaped);
            }
        }
    }

    fn reap(&self, flags: WaitPidFlag) -> io::Result<Option<WaitStatus>> {
        loop {
            match waitid(Id::PIDFd(self.0.as_fd()), flags) {
                Ok(status @ (WaitStatus::Exited(..) | WaitStatus::Signaled(..))) => {
                    return Ok(Some(status))
                }
                // Only WEXITED is asked for: anything else is WNOHANG's "still running".
                Ok(_) => return Ok(None),
                Err(Errno::EINTR) => continue,
                Err(errno) => return Err(errno.into()),
            }
        }
    }
}

impl AsFd for Pidfd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

/// Whether the kernel reaps this process's children by itself (SIGCHLD set to SIG_IGN, or SA_NOCLDWAIT): then
/// no exit status can be collected and a dead child's pid may be reused before herd opens its pidfd.
pub(crate) fn children_are_auto_reaped() -> bool {
    // SAFETY: an all-zero sigaction is a valid value of this plain C struct; it is only an output buffer.
    let mut current: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: with a NULL new action, sigaction only writes the current SIGCHLD disposition into `current`,
    // which lives for the call.
    let rc = unsafe { libc::sigaction(libc::SIGCHLD, std::ptr::null(), &mut current) };
    rc == 0 && (current.sa_sigaction == libc::SIG_IGN || current.sa_flags & libc::SA_NOCLDWAIT != 0)
}
