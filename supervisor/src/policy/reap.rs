//! `Reaper`: the one place a worker's exit is collected, so a reaped pid is never signalled.
//!
//! As in tokio's process reaper, the OS is reached through two tiny traits, [`Wait`] and
//! [`Kill`], so the protocol is unit-tested with mocks. The protocol: a pid stays reserved by
//! the kernel until it is reaped, so signals go out only before reaping; once the worker has
//! exited (seen without reaping it, `WNOWAIT`), what is left of its process group (the worker's
//! own children) is killed while the group id is still reserved, and only then is the worker
//! reaped. After that no signal is ever sent for it again.
use std::io;

use herd_ipc::{ExitStatus, Pid};
use nix::sys::signal::Signal;

/// Waiting for one child process.
pub trait Wait {
    /// Its pid.
    fn id(&self) -> Pid;
    /// Whether it has exited, without reaping it (its pid stays reserved).
    fn has_exited(&mut self) -> io::Result<bool>;
    /// Reaps it once it has exited.
    fn reap(&mut self) -> io::Result<ExitStatus>;
    /// A descriptor that turns readable when it exits (a pidfd), for a loop to wait on; `None`
    /// if there is none (SIGCHLD and the loop's tick then tell).
    fn exit_fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        None
    }
}

/// Signalling one child's process group.
pub trait Kill {
    /// Sends `signal` to every process in the child's process group.
    fn signal_group(&mut self, signal: Signal) -> io::Result<()>;
}

/// A child that is signalled only until it is reaped.
#[derive(Debug)]
pub struct Reaper<C> {
    child: C,
    status: Option<ExitStatus>,
}

impl<C: Wait + Kill> Reaper<C> {
    /// The child's [`Wait::exit_fd`], while it is not reaped.
    pub fn exit_fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        if self.status.is_some() {
            None
        } else {
            self.child.exit_fd()
        }
    }

    /// Takes charge of a running child.
    pub fn new(child: C) -> Self {
        Self {
            child,
            status: None,
        }
    }

    /// The child's pid (meaningful as an identity only until reaped).
    pub fn id(&self) -> Pid {
        self.child.id()
    }

    /// The exit status once reaped.
    pub fn status(&self) -> Option<ExitStatus> {
        self.status
    }

    /// Reaps the child if it has exited, killing its leftover group members first.
    pub fn try_reap(&mut self) -> io::Result<Option<ExitStatus>> {
        if self.status.is_some() {
            return Ok(self.status);
        }
        if !self.child.has_exited()? {
            return Ok(None);
        }
        // The zombie holds its pid, hence its group id: the group cannot be a recycled one.
        // Failure only means no member is left.
        let _ = self.child.signal_group(Signal::SIGKILL);
        let status = self.child.reap()?;
        self.status = Some(status);
        Ok(Some(status))
    }

    /// Signals the child's group unless the child was reaped; whether a signal was sent.
    pub fn signal(&mut self, signal: Signal) -> io::Result<bool> {
        if self.status.is_some() {
            return Ok(false);
        }
        self.child.signal_group(signal)?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::rc::Rc;

    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Call {
        HasExited,
        Reap,
        Signal(Signal),
    }

    struct MockChild {
        exited: bool,
        calls: Rc<RefCell<Vec<Call>>>,
    }

    impl Wait for MockChild {
        fn id(&self) -> Pid {
            Pid::from_raw(42)
        }
        fn has_exited(&mut self) -> io::Result<bool> {
            self.calls.borrow_mut().push(Call::HasExited);
            Ok(self.exited)
        }
        fn reap(&mut self) -> io::Result<ExitStatus> {
            self.calls.borrow_mut().push(Call::Reap);
            assert!(self.exited, "reaping a running child would block");
            Ok(ExitStatus::Signaled(Signal::SIGKILL as i32))
        }
    }

    impl Kill for MockChild {
        fn signal_group(&mut self, signal: Signal) -> io::Result<()> {
            self.calls.borrow_mut().push(Call::Signal(signal));
            Ok(())
        }
    }

    fn reaper() -> (Reaper<MockChild>, Rc<RefCell<Vec<Call>>>) {
        let calls = Rc::new(RefCell::new(Vec::new()));
        (
            Reaper::new(MockChild {
                exited: false,
                calls: Rc::clone(&calls),
            }),
            calls,
        )
    }

    #[test]
    fn a_running_child_is_signalled_and_not_reaped() {
        let (mut reaper, calls) = reaper();
        assert_eq!(reaper.try_reap().unwrap(), None);
        assert!(reaper.signal(Signal::SIGTERM).unwrap());
        assert_eq!(
            *calls.borrow(),
            [Call::HasExited, Call::Signal(Signal::SIGTERM)]
        );
    }

    #[test]
    fn the_group_is_killed_before_the_reap_and_never_signalled_after() {
        let (mut reaper, calls) = reaper();
        reaper.child.exited = true;
        let status = reaper.try_reap().unwrap().unwrap();
        assert_eq!(status.to_string(), "signal 9 (SIGKILL)");
        assert_eq!(
            *calls.borrow(),
            [Call::HasExited, Call::Signal(Signal::SIGKILL), Call::Reap]
        );
        calls.borrow_mut().clear();
        assert!(!reaper.signal(Signal::SIGKILL).unwrap());
        assert_eq!(
            reaper.try_reap().unwrap(),
            Some(status),
            "reaping is idempotent"
        );
        assert!(
            calls.borrow().is_empty(),
            "no OS call after the reap: {:?}",
            calls.borrow()
        );
    }
}
