//! `ExitStatus`: how a child process ended, telling an exit code from a killing signal.
use std::fmt;

use nix::sys::wait::WaitStatus;

/// How a child process ended: it exited with a code, or a signal ended it.
///
/// [`ExitStatus::exitcode`] folds both into one number the way Python's `multiprocessing` does (negative for a
/// signal).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExitStatus {
    /// The process exited with this code (0..=255).
    Exited(i32),
    /// The process was ended by this signal number (SIGTERM = 15, SIGKILL = 9, ...).
    Signaled(i32),
}

impl ExitStatus {
    /// The exit code, if the process exited rather than being ended by a signal.
    pub fn code(&self) -> Option<i32> {
        match *self {
            Self::Exited(code) => Some(code),
            Self::Signaled(_) => None,
        }
    }

    /// The signal that ended the process, if any.
    pub fn signal(&self) -> Option<i32> {
        match *self {
            Self::Exited(_) => None,
            Self::Signaled(signal) => Some(signal),
        }
    }

    /// `multiprocessing`'s `exitcode`: the exit code, or minus the signal number.
    pub fn exitcode(&self) -> i32 {
        match *self {
            Self::Exited(code) => code,
            Self::Signaled(signal) => -signal,
        }
    }

    /// Whether the process exited with code 0.
    pub fn success(&self) -> bool {
        *self == Self::Exited(0)
    }
}

impl ExitStatus {
    /// How a process ended, from what `waitpid`/`waitid` reported; `None` for a report that is not an
    /// ending (stopped, continued, still alive).
    pub fn from_wait_status(status: WaitStatus) -> Option<Self> {
        match status {
            WaitStatus::Exited(_, code) => Some(Self::Exited(code)),
            WaitStatus::Signaled(_, signal, _) => Some(Self::Signaled(signal as i32)),
            _ => None,
        }
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Exited(code) => write!(f, "exit code {code}"),
            Self::Signaled(signal) => match nix::sys::signal::Signal::try_from(signal) {
                Ok(name) => write!(f, "signal {signal} ({name})"),
                Err(_) => write!(f, "signal {signal}"),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::signal::Signal;
    use nix::unistd::Pid;

    #[test]
    fn built_from_wait_statuses() {
        let pid = Pid::from_raw(7);
        assert_eq!(
            ExitStatus::from_wait_status(WaitStatus::Exited(pid, 3)),
            Some(ExitStatus::Exited(3))
        );
        let killed =
            ExitStatus::from_wait_status(WaitStatus::Signaled(pid, Signal::SIGKILL, false));
        assert_eq!(killed, Some(ExitStatus::Signaled(9)));
        assert_eq!(killed.unwrap().exitcode(), -9);
        assert_eq!(killed.unwrap().to_string(), "signal 9 (SIGKILL)");
        assert_eq!(
            ExitStatus::from_wait_status(WaitStatus::Stopped(pid, Signal::SIGSTOP)),
            None
        );
        assert_eq!(ExitStatus::from_wait_status(WaitStatus::StillAlive), None);
        assert!(ExitStatus::Exited(0).success());
        assert!(!ExitStatus::Exited(3).success());
        assert_eq!(ExitStatus::Exited(3).to_string(), "exit code 3");
    }
}
