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
    value: PhantomData<fn() -> T>,
}

impl<T> Child<T> {
    pub(crate) fn new(shared: Arc<ChildShared>, result: ResultReader, daemon: bool) -> Self {
        Self {
            shared,
            result,
            daemon,
            value: PhantomData,
        }
    }

    /// Process id of the child.
    pub fn pid(&self) -> u32 {
        self.shared.pid()
    }

    /// The name given at start (`Process-N` by default).
    pub fn name(&self) -> &str {
        self.shared.name()
    }

    /// Whether the child was started as a daemon (SIGKILLed when its parent dies).
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

    fn describe(&self) -> (u32, String) {
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
    /// [`JoinTimeoutError::Timeout`] (the child keeps running).
    pub fn join_timeout(mut self, timeout: Duration) -> Result<T, JoinTimeoutError<T>> {
        let deadline = Instant::now() + timeout;
        match self.wait_until(Some(deadline)) {
            Ok(Some(status)) => self.finish(status).map_err(JoinTimeoutError::Failed),
            Ok(None) => Err(JoinTimeoutError::Timeout(self)),
            Err(source) => Err(JoinTimeoutError::Failed(self.wait_error(source))),
        }
    }

    fn wait_error(&self, source: io::Error) -> JoinError {
        let (pid, name) = self.describe();
        JoinError::Wait { pid, name, source }
    }

    fn finish(&mut self, status: ExitStatus) -> Result<T, JoinError> {
        let (pid, name) = self.describe();
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
pub enum JoinError {
    /// The body panicked; `message` is the panic message.
    #[error("process {name} (pid {pid}) panicked: {message}")]
    Panicked {
        /// The child's process id.
        pid: u32,
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
        pid: u32,
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
        pid: u32,
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
        pid: u32,
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
        pid: u32,
        /// The child's name.
        name: String,
        /// The type the parent expected (`std::any::type_name`).
        expected: &'static str,
        /// The codec's reason.
        source: CodecError,
        /// How the child ended.
        status: ExitStatus,
    },
    /// Waiting for the child failed in the OS.
    #[error("waiting for process {name} (pid {pid}) failed: {source}")]
    Wait {
        /// The child's process id.
        pid: u32,
        /// The child's name.
        name: String,
        /// The OS error.
        source: io::Error,
    },
}

impl JoinError {
    /// How the child ended, when it is known.
    pub fn exit_status(&self) -> Option<ExitStatus> {
        match self {
            Self::Panicked { status, .. }
            | Self::Killed { status, .. }
            | Self::NoValue { status, .. }
            | Self::Failed { status, .. }
            | Self::Decode { status, .. } => Some(*status),
            Self::Wait { .. } => None,
        }
    }

    /// The child's panic message, if it panicked.
    pub fn panic_message(&self) -> Option<&str> {
        match self {
            Self::Panicked { message, .. } => Some(message),
            _ => None,
        }
    }
}

/// Why [`Child::join_timeout`] returned no value.
#[derive(thiserror::Error)]
pub enum JoinTimeoutError<T> {
    /// The child is still running; here is its handle back.
    #[error("process {} (pid {}) is still running after the timeout", .0.name(), .0.pid())]
    Timeout(Child<T>),
    /// The child ended without a value.
    #[error(transparent)]
    Failed(JoinError),
}

impl<T> JoinTimeoutError<T> {
    /// The handle, if the child is still running.
    pub fn into_inner(self) -> Option<Child<T>> {
        match self {
            Self::Timeout(child) => Some(child),
            Self::Failed(_) => None,
        }
    }
}

impl<T> fmt::Debug for JoinTimeoutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Timeout(child) => f.debug_tuple("Timeout").field(child).finish(),
            Self::Failed(err) => f.debug_tuple("Failed").field(err).finish(),
        }
    }
}
