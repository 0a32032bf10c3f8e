//! `Child<T>`: the handle of a started process whose body returns a `T`: join it, signal it, ask whether it
//! lives. Dropping the handle kills and reaps the child, so no handle ever leaves a zombie behind.
use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::poll::PollFlags;
use serde::de::DeserializeOwned;

use crate::codec::{self, CodecError};
use crate::platform;
use crate::process::outcome::{ChildOutcome, ResultReader};
use crate::process::pid::Pid;
use crate::process::registry::ChildShared;
use crate::process::status::ExitStatus;
use crate::wait::Waitable;

/// A child process started by [`Process::fork`](crate::Process::fork) or
/// [`Process::spawn`](crate::Process::spawn), whose body returns a `T`.
///
/// **Drop kills.** Like a scoped thread, a child lives no longer than its handle: dropping a `Child` that is
/// still running sends it SIGKILL and reaps it (a child that already ended is just reaped). Call
/// [`join`](Self::join) to wait for it instead. This keeps the promise that no child is left a zombie without
/// needing a reaper thread (a thread would make every later `fork` unsafe). A handle moved into a forked
/// grandchild does nothing there: only the process that started a child signals or reaps it.
///
/// The handle is also the child's sentinel: its fd ([`AsFd`]) is a pidfd that becomes readable when the child
/// exits, so many children can be waited on with one `poll`.
pub struct Child<T> {
    shared: Arc<ChildShared>,
    result: ResultReader,
    daemon: bool,
    /// Set once the result has been handed out (by `take_result` or a join), so a second taker is told so
    /// instead of being told the child sent nothing.
    taken: bool,
    value: PhantomData<fn() -> T>,
}

impl<T> Child<T> {
    pub(crate) fn new(shared: Arc<ChildShared>, result: ResultReader, daemon: bool) -> Self {
        Self {
            shared,
            result,
            daemon,
            taken: false,
            value: PhantomData,
        }
    }

    /// Process id of the child.
    pub fn pid(&self) -> Pid {
        self.shared.pid()
    }

    /// The name given at start (`Process-N` by default).
    pub fn name(&self) -> &str {
        self.shared.name()
    }

    /// Whether the child was started as a daemon (signalled when its parent dies: SIGKILL, unless
    /// [`Process::die_with_parent`](crate::Process::die_with_parent) chose another signal).
    pub fn is_daemon(&self) -> bool {
        self.daemon
    }

    /// Whether the child is still running. Reaps it if it has ended (the exit status is kept).
    pub fn is_alive(&self) -> bool {
        matches!(self.shared.poll_status(), Ok(None))
    }

    /// How the child ended, or `None` while it runs (`multiprocessing`'s `exitcode`). Never blocks; reaps the
    /// child if it has ended.
    pub fn exit_status(&self) -> Option<ExitStatus> {
        self.shared.poll_status().ok().flatten()
    }

    /// `multiprocessing`'s `exitcode`: `None` while the child runs, then its exit code, or minus the
    /// signal that ended it ([`ExitStatus::exitcode`]). Never blocks; reaps the child if it has ended.
    pub fn exitcode(&self) -> Option<i32> {
        self.exit_status().map(|status| status.exitcode())
    }

    /// Waits for the child to end and returns how it ended, keeping the handle: `multiprocessing`'s
    /// `p.join()`, after which [`exit_status`](Self::exit_status), [`exitcode`](Self::exitcode) and
    /// [`is_alive`](Self::is_alive) answer at once and [`take_result`](Self::take_result) hands out the
    /// value. The child's result is collected while waiting, so a large value cannot stall it. Calling
    /// it again returns the same status.
    pub fn wait(&mut self) -> io::Result<ExitStatus> {
        loop {
            // Without a deadline this only returns once the child has ended; the loop is for form.
            if let Some(status) = self.wait_until(None).map_err(|err| self.context(err))? {
                return Ok(status);
            }
        }
    }

    /// Like [`wait`](Self::wait), giving up after `timeout` with `Ok(None)` while the child still runs
    /// (`multiprocessing`'s `p.join(timeout)`; `Duration::MAX` means no deadline).
    pub fn wait_timeout(&mut self, timeout: Duration) -> io::Result<Option<ExitStatus>> {
        // A timeout past what the clock can hold means no deadline.
        self.wait_until(Instant::now().checked_add(timeout))
            .map_err(|err| self.context(err))
    }

    /// An OS error met while waiting, naming the child it was about.
    fn context(&self, err: io::Error) -> io::Error {
        io::Error::new(
            err.kind(),
            format!(
                "waiting for process {} (pid {}) failed: {err}",
                self.name(),
                self.pid()
            ),
        )
    }

    /// Asks the child to stop: SIGTERM. A child that has already ended is left alone (its pid may belong to
    /// another process by now; the signal goes through the child's pidfd, which cannot hit that process).
    pub fn terminate(&self) -> io::Result<()> {
        self.shared.signal(libc::SIGTERM)
    }

    /// Stops the child at once: SIGKILL. A child that has already ended is left alone.
    pub fn kill(&self) -> io::Result<()> {
        self.shared.signal(libc::SIGKILL)
    }

    /// Sends any signal (e.g. `libc::SIGINT`) the way [`terminate`](Self::terminate) does: through the pidfd,
    /// and only while the child has not been reaped.
    pub fn send_signal(&self, signal: i32) -> io::Result<()> {
        self.shared.signal(signal)
    }

    /// Waits until the child ends or `deadline` passes (`Ok(None)`), collecting its result as it arrives so a
    /// result bigger than the socket buffer cannot stall the child.
    fn wait_until(&mut self, deadline: Option<Instant>) -> io::Result<Option<ExitStatus>> {
        loop {
            self.result.pull()?;
            if let Some(status) = self.shared.poll_status()? {
                // The child has exited, so everything it sent is in the socket now; a grandchild holding that
                // end open must not make us wait for end-of-file.
                self.result.pull()?;
                return Ok(Some(status));
            }
            let left = deadline.map(|deadline| deadline.saturating_duration_since(Instant::now()));
            if left == Some(Duration::ZERO) {
                return Ok(None);
            }
            let pidfd = self.shared.pidfd().as_fd();
            if self.result.is_settled() {
                platform::poll(&[pidfd], PollFlags::POLLIN, left)?;
            } else {
                platform::poll(&[pidfd, self.result.fd()], PollFlags::POLLIN, left)?;
            }
        }
    }

    fn describe(&self) -> (Pid, String) {
        (self.pid(), self.name().to_owned())
    }
}

impl<T: DeserializeOwned> Child<T> {
    /// Waits for the child to end and returns the value its body returned.
    ///
    /// Errors say why there is no value: the child panicked (with its message), was killed by a signal, exited
    /// by itself without returning, could not run its entry, or sent a value that is not a `T`.
    pub fn join(mut self) -> Result<T, JoinError> {
        loop {
            match self.wait_until(None) {
                Ok(Some(status)) => return self.finish(status),
                // Without a deadline poll only returns on readiness (or a signal): wait again.
                Ok(None) => continue,
                Err(source) => return Err(self.wait_error(source)),
            }
        }
    }

    /// Like [`join`](Self::join), but gives up after `timeout`, handing the handle back in
    /// [`JoinTimeoutError::Timeout`] (the child keeps running). `Duration::MAX` means no deadline.
    pub fn join_timeout(mut self, timeout: Duration) -> Result<T, JoinTimeoutError<T>> {
        // A timeout past what the clock can hold (`Duration::MAX`) means no deadline.
        match self.wait_until(Instant::now().checked_add(timeout)) {
            Ok(Some(status)) => self.finish(status).map_err(JoinTimeoutError::from),
            Ok(None) => Err(JoinTimeoutError::Timeout(self)),
            Err(source) => Err(self.wait_error(source).into()),
        }
    }

    /// The value the child's body returned, once it has ended: waits for that first (as
    /// [`wait`](Self::wait) does), so after `wait` it returns at once. The handle stays usable for
    /// [`exit_status`](Self::exit_status) and the rest. The value is handed out once: a second call
    /// gives [`JoinError::Taken`]. Errors are [`join`](Self::join)'s.
    pub fn take_result(&mut self) -> Result<T, JoinError> {
        loop {
            match self.wait_until(None) {
                Ok(Some(status)) => return self.finish(status),
                Ok(None) => continue,
                Err(source) => return Err(self.wait_error(source)),
            }
        }
    }

    fn wait_error(&self, source: io::Error) -> JoinError {
        let (pid, name) = self.describe();
        JoinError::Wait { pid, name, source }
    }

    fn finish(&mut self, status: ExitStatus) -> Result<T, JoinError> {
        let (pid, name) = self.describe();
        if std::mem::replace(&mut self.taken, true) {
            return Err(JoinError::Taken { pid, name, status });
        }
        match self.result.take_outcome() {
            Ok(Some((ChildOutcome::Returned(bytes), fds))) => {
                codec::decode(&bytes, fds).map_err(|source| JoinError::Decode {
                    pid,
                    name,
                    expected: std::any::type_name::<T>(),
                    source,
                    status,
                })
            }
            Ok(Some((ChildOutcome::Panicked(message), _))) => Err(JoinError::Panicked {
                pid,
                name,
                message,
                status,
            }),
            Ok(Some((ChildOutcome::Failed(message), _))) => Err(JoinError::Failed {
                pid,
                name,
                message,
                status,
            }),
            Ok(None) if status.signal().is_some() => Err(JoinError::Killed { pid, name, status }),
            Ok(None) => Err(JoinError::NoValue { pid, name, status }),
            Err(source) => Err(JoinError::Wait { pid, name, source }),
        }
    }
}

impl<T> AsFd for Child<T> {
    /// The child's pidfd: readable once the child has exited.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.shared.pidfd().as_fd()
    }
}

impl<T> Waitable for Child<T> {
    /// The child's pidfd, like a `multiprocessing` sentinel: [`crate::wait`] reports the child once it has
    /// exited.
    fn wait_fd(&self) -> BorrowedFd<'_> {
        self.shared.pidfd().as_fd()
    }
}

impl<T> Drop for Child<T> {
    fn drop(&mut self) {
        if self.shared.started_here() {
            // Nothing useful can be done with a failure here: the pidfd keeps the pid from being hit by mistake.
            let _ = self.shared.kill_and_reap();
        }
    }
}

impl<T> fmt::Debug for Child<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Child")
            .field("pid", &self.pid())
            .field("name", &self.name())
            .field("daemon", &self.daemon)
            .finish_non_exhaustive()
    }
}

/// Why [`Child::join`] returned no value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JoinError {
    /// The body panicked; `message` is the panic message.
    #[error("process {name} (pid {pid}) panicked: {message}")]
    Panicked {
        /// The child's process id.
        pid: Pid,
        /// The child's name.
        name: String,
        /// The panic message.
        message: String,
        /// How the child ended.
        status: ExitStatus,
    },
    /// A signal ended the child before it sent a value (see [`Child::terminate`], [`Child::kill`]).
    #[error("process {name} (pid {pid}) was ended by {status} before it returned a value")]
    Killed {
        /// The child's process id.
        pid: Pid,
        /// The child's name.
        name: String,
        /// How the child ended.
        status: ExitStatus,
    },
    /// The child exited without sending a value: it called `exit` itself (or a spawned copy of the program
    /// ran its `main` instead of the entry, which herd-ipc's start-up hook prevents).
    #[error(
        "process {name} (pid {pid}) ended with {status} without returning a value (it called exit itself, or \
         herd-ipc's start-up hook did not run in it)"
    )]
    NoValue {
        /// The child's process id.
        pid: Pid,
        /// The child's name.
        name: String,
        /// How the child ended.
        status: ExitStatus,
    },
    /// The child could not run its body: unknown entry, arguments that do not decode, a value that does not
    /// encode.
    #[error("process {name} (pid {pid}) could not run: {message}")]
    Failed {
        /// The child's process id.
        pid: Pid,
        /// The child's name.
        name: String,
        /// Why, as reported from the child's side.
        message: String,
        /// How the child ended.
        status: ExitStatus,
    },
    /// The child sent a value that does not decode as the expected type.
    #[error("process {name} (pid {pid}) sent back a value that is not a {expected}: {source}")]
    Decode {
        /// The child's process id.
        pid: Pid,
        /// The child's name.
        name: String,
        /// The type the parent expected (`std::any::type_name`).
        expected: &'static str,
        /// The codec's reason.
        source: CodecError,
        /// How the child ended.
        status: ExitStatus,
    },
    /// The child's result was already handed out by an earlier [`Child::take_result`].
    #[error(
        "the result of process {name} (pid {pid}), which ended with {status}, was already taken"
    )]
    Taken {
        /// The child's process id.
        pid: Pid,
        /// The child's name.
        name: String,
        /// How the child ended.
        status: ExitStatus,
    },
    /// Waiting for the child failed in the OS.
    #[error("waiting for process {name} (pid {pid}) failed: {source}")]
    Wait {
        /// The child's process id.
        pid: Pid,
        /// The child's name.
        name: String,
        /// The OS error.
        source: io::Error,
    },
}

/// Why [`Child::join_timeout`] returned no value: the child is still running
/// ([`Timeout`](JoinTimeoutError::Timeout), with the handle back), or one of
/// [`JoinError`]'s reasons.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum JoinTimeoutError<T> {
    /// The child is still running; here is its handle back.
    #[error("process {} (pid {}) is still running after the timeout", .0.name(), .0.pid())]
    Timeout(Child<T>),
    /// The body panicked; `message` is the panic message.
    #[error("process {name} (pid {pid}) panicked: {message}")]
    Panicked {
        /// The child's process id.
        pid: Pid,
        /// The child's name.
        name: String,
        /// The panic message.
        message: String,
        /// How the child ended.
        status: ExitStatus,
    },
    /// A signal ended the child before it sent a value (see [`Child::terminate`], [`Child::kill`]).
    #[error("process {name} (pid {pid}) was ended by {status} before it returned a value")]
    Killed {
        /// The child's process id.
        pid: Pid,
        /// The child's name.
        name: String,
        /// How the child ended.
        status: ExitStatus,
    },
    /// The child exited without sending a value: it called `exit` itself (or a spawned copy of the program
    /// ran its `main` instead of the entry, which herd-ipc's start-up hook prevents).
    #[error(
        "process {name} (pid {pid}) ended with {status} without returning a value (it called exit itself, or \
         herd-ipc's start-up hook did not run in it)"
    )]
    NoValue {
        /// The child's process id.
        pid: Pid,
        /// The child's name.
        name: String,
        /// How the child ended.
        status: ExitStatus,
    },
    /// The child could not run its body: unknown entry, arguments that do not decode, a value that does not
    /// encode.
    #[error("process {name} (pid {pid}) could not run: {message}")]
    Failed {
        /// The child's process id.
        pid: Pid,
        /// The child's name.
        name: String,
        /// Why, as reported from the child's side.
        message: String,
        /// How the child ended.
        status: ExitStatus,
    },
    /// The child sent a value that does not decode as the expected type.
    #[error("process {name} (pid {pid}) sent back a value that is not a {expected}: {source}")]
    Decode {
        /// The child's process id.
        pid: Pid,
        /// The child's name.
        name: String,
        /// The type the parent expected (`std::any::type_name`).
        expected: &'static str,
        /// The codec's reason.
        source: CodecError,
        /// How the child ended.
        status: ExitStatus,
    },
    /// The child's result was already handed out by an earlier [`Child::take_result`].
    #[error(
        "the result of process {name} (pid {pid}), which ended with {status}, was already taken"
    )]
    Taken {
        /// The child's process id.
        pid: Pid,
        /// The child's name.
        name: String,
        /// How the child ended.
        status: ExitStatus,
    },
    /// Waiting for the child failed in the OS.
    #[error("waiting for process {name} (pid {pid}) failed: {source}")]
    Wait {
        /// The child's process id.
        pid: Pid,
        /// The child's name.
        name: String,
        /// The OS error.
        source: io::Error,
    },
}

/// The accessors `JoinError` and `JoinTimeoutError` share (the latter's variants are the former's
/// plus `Timeout`).
macro_rules! join_error_common {
    ($name:ident $(<$t:ident>)?, $($timeout:ident)?) => {
        impl$(<$t>)? $name$(<$t>)? {
            /// How the child ended, when it is known.
            pub fn exit_status(&self) -> Option<ExitStatus> {
                match self {
                    Self::Panicked { status, .. }
                    | Self::Killed { status, .. }
                    | Self::NoValue { status, .. }
                    | Self::Failed { status, .. }
                    | Self::Decode { status, .. }
                    | Self::Taken { status, .. } => Some(*status),
                    $(Self::$timeout(_) |)? Self::Wait { .. } => None,
                }
            }

            /// The child's panic message, if it panicked.
            pub fn panic_message(&self) -> Option<&str> {
                match self {
                    Self::Panicked { message, .. } => Some(message),
                    _ => None,
                }
            }

            /// Whether a signal ended the child before it sent a value.
            pub fn is_killed(&self) -> bool {
                matches!(self, Self::Killed { .. })
            }
        }
    };
}

join_error_common!(JoinError,);
join_error_common!(JoinTimeoutError<T>, Timeout);

impl JoinError {
    /// Always false: `join` waits for the child (see [`JoinTimeoutError::is_timeout`]).
    pub fn is_timeout(&self) -> bool {
        false
    }
}

impl<T> JoinTimeoutError<T> {
    /// Whether the child is still running after the timeout (the handle is inside).
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Timeout(_))
    }

    /// The handle, if the child is still running.
    pub fn into_inner(self) -> Option<Child<T>> {
        match self {
            Self::Timeout(child) => Some(child),
            _ => None,
        }
    }
}

impl<T> From<JoinError> for JoinTimeoutError<T> {
    fn from(error: JoinError) -> Self {
        match error {
            JoinError::Panicked {
                pid,
                name,
                message,
                status,
            } => Self::Panicked {
                pid,
                name,
                message,
                status,
            },
            JoinError::Killed { pid, name, status } => Self::Killed { pid, name, status },
            JoinError::NoValue { pid, name, status } => Self::NoValue { pid, name, status },
            JoinError::Failed {
                pid,
                name,
                message,
                status,
            } => Self::Failed {
                pid,
                name,
                message,
                status,
            },
            JoinError::Decode {
                pid,
                name,
                expected,
                source,
                status,
            } => Self::Decode {
                pid,
                name,
                expected,
                source,
                status,
            },
            JoinError::Taken { pid, name, status } => Self::Taken { pid, name, status },
            JoinError::Wait { pid, name, source } => Self::Wait { pid, name, source },
        }
    }
}

impl<T> fmt::Debug for JoinTimeoutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Timeout(child) => f.debug_tuple("Timeout").field(child).finish(),
            Self::Panicked {
                pid,
                name,
                message,
                status,
            } => f
                .debug_struct("Panicked")
                .field("pid", pid)
                .field("name", name)
                .field("message", message)
                .field("status", status)
                .finish(),
            Self::Killed { pid, name, status } => f
                .debug_struct("Killed")
                .field("pid", pid)
                .field("name", name)
                .field("status", status)
                .finish(),
            Self::NoValue { pid, name, status } => f
                .debug_struct("NoValue")
                .field("pid", pid)
                .field("name", name)
                .field("status", status)
                .finish(),
            Self::Failed {
                pid,
                name,
                message,
                status,
            } => f
                .debug_struct("Failed")
                .field("pid", pid)
                .field("name", name)
                .field("message", message)
                .field("status", status)
                .finish(),
            Self::Decode {
                pid,
                name,
                expected,
                source,
                status,
            } => f
                .debug_struct("Decode")
                .field("pid", pid)
                .field("name", name)
                .field("expected", expected)
                .field("source", source)
                .field("status", status)
                .finish(),
            Self::Taken { pid, name, status } => f
                .debug_struct("Taken")
                .field("pid", pid)
                .field("name", name)
                .field("status", status)
                .finish(),
            Self::Wait { pid, name, source } => f
                .debug_struct("Wait")
                .field("pid", pid)
                .field("name", name)
                .field("source", source)
                .finish(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timed_join_error_converts_and_classifies() {
        let panicked = JoinError::Panicked {
            pid: Pid::from_raw(42),
            name: "worker".to_owned(),
            message: "boom".to_owned(),
            status: ExitStatus::Exited(1),
        };
        assert!(!panicked.is_timeout() && !panicked.is_killed());
        let text = panicked.to_string();
        let timed: JoinTimeoutError<u8> = panicked.into();
        assert_eq!(timed.to_string(), text);
        assert!(!timed.is_timeout() && !timed.is_killed());
        assert_eq!(timed.panic_message(), Some("boom"));
        assert_eq!(timed.exit_status(), Some(ExitStatus::Exited(1)));
        assert!(matches!(timed, JoinTimeoutError::Panicked { pid, .. } if pid.as_raw() == 42));
        assert!(timed.into_inner().is_none(), "no handle: the child is gone");
    }
}
