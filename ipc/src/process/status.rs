//! `ExitStatus`: how a child process ended, telling an exit code from a killing signal.
use std::fmt;

use crate::platform::Reaped;

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

impl From<Reaped> for ExitStatus {
    fn from(reaped: Reaped) -> Self {
        match reaped {
            Reaped::Exited(code) => Self::Exited(code),
            Reaped::Signaled(signal) => Self::Signaled(signal),
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
