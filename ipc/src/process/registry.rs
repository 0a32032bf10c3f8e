//! The children this process started: their shared state (pid, name, pidfd, exit status once reaped), the
//! process-wide list behind `active_children()`, and `current_process()`.
use std::io;
use std::sync::{Arc, Mutex, PoisonError, Weak};

use serde::{Deserialize, Serialize};

use crate::platform::{self, Pidfd};
use crate::process::forkserver::Reaper;
use crate::process::pid::Pid;
use crate::process::status::ExitStatus;

/// One started child, shared by its handle and the process-wide list.
#[derive(Debug)]
pub(crate) struct ChildShared {
    pid: Pid,
    name: String,
    pidfd: Pidfd,
    /// The process that started the child; only it may reap or signal it (a forked grandchild inherits handles
    /// as copies, but the child is not its child).
    starter: Pid,
    /// Who collects the exit status: this process, or the forkserver that forked the child for it.
    reaper: Reaper,
    /// `Some` once reaped; reaping happens only under this lock, so it happens once.
    status: Mutex<Option<ExitStatus>>,
}

/// Every child started by this process whose handle is still alive.
static CHILDREN: Mutex<Vec<Weak<ChildShared>>> = Mutex::new(Vec::new());

impl ChildShared {
    /// Records a freshly started child in the process-wide list.
    pub(crate) fn register(pid: Pid, name: String, pidfd: Pidfd) -> Arc<Self> {
        Self::register_with(pid, name, pidfd, Reaper::ThisProcess)
    }

    /// Records a freshly started child whose exit status `reaper` collects.
    pub(crate) fn register_with(pid: Pid, name: String, pidfd: Pidfd, reaper: Reaper) -> Arc<Self> {
        let shared = Arc::new(Self {
            pid,
            name,
            pidfd,
            reaper,
            starter: Pid::this(),
            status: Mutex::new(None),
        });
        let mut children = CHILDREN.lock().unwrap_or_else(PoisonError::into_inner);
        children.retain(|child| child.strong_count() > 0);
        children.push(Arc::downgrade(&shared));
        shared
    }

    pub(crate) fn pid(&self) -> Pid {
        self.pid
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn pidfd(&self) -> &Pidfd {
        &self.pidfd
    }

    /// Whether the calling process is the one that started this child.
    pub(crate) fn started_here(&self) -> bool {
        self.starter == Pid::this()
    }

    /// The exit status, reaping the child if it has exited; `None` while it runs.
    pub(crate) fn poll_status(&self) -> io::Result<Option<ExitStatus>> {
        let mut status = self.status.lock().unwrap_or_else(PoisonError::into_inner);
        if status.is_none() {
            if !self.started_here() {
                return Err(io::Error::other(format!(
                    "process {} (pid {}) was started by pid {}, not by this process",
                    self.name, self.pid, self.starter
                )));
            }
            *status = self.reaper.try_reap(&self.pidfd, self.pid)?;
        }
        Ok(*status)
    }

    /// Sends `signal` unless the child has already been reaped (its pid may then name another process; the
    /// pidfd would refuse anyway). A child that exited but is not reaped yet is not an error either.
    pub(crate) fn signal(&self, signal: i32) -> io::Result<()> {
        let status = self.status.lock().unwrap_or_else(PoisonError::into_inner);
        if status.is_some() || !self.started_here() {
            return Ok(());
        }
        match self.pidfd.send_signal(signal) {
            Err(err) if err.raw_os_error() == Some(libc::ESRCH) => Ok(()),
            other => other,
        }
    }

    /// Kills the child if it still runs and reaps it: what dropping a handle does.
    pub(crate) fn kill_and_reap(&self) -> io::Result<ExitStatus> {
        let mut status = self.status.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(status) = *status {
            return Ok(status);
        }
        match self.pidfd.send_signal(libc::SIGKILL) {
            Err(err) if err.raw_os_error() != Some(libc::ESRCH) => return Err(err),
            _ => {}
        }
        // SIGKILL cannot be caught or ignored: this wait is short.
        let reaped = self.reaper.reap_blocking(&self.pidfd, self.pid)?;
        *status = Some(reaped);
        Ok(reaped)
    }
}

/// A running child of this process, as `active_children()` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChildInfo {
    /// Process id.
    pub pid: Pid,
    /// Name given at start (or `Process-N`).
    pub name: String,
}

/// The children started by this process that are still running. Like `multiprocessing.active_children()`, it
/// reaps the ones that have finished (their handles then report the exit status without waiting).
pub fn active_children() -> Vec<ChildInfo> {
    let children: Vec<Arc<ChildShared>> = {
        let mut list = CHILDREN.lock().unwrap_or_else(PoisonError::into_inner);
        list.retain(|child| child.strong_count() > 0);
        list.iter().filter_map(Weak::upgrade).collect()
    };
    children
        .iter()
        .filter(|child| child.started_here())
        .filter(|child| matches!(child.poll_status(), Ok(None)))
        .map(|child| ChildInfo {
            pid: child.pid,
            name: child.name.clone(),
        })
        .collect()
}

/// Identity of the calling process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CurrentProcess {
    /// Process id.
    pub pid: Pid,
    /// Parent's process id (1, or a subreaper's, once the parent is gone).
    pub ppid: Pid,
    /// The name the parent gave this process, or `MainProcess` for one herd did not start.
    pub name: String,
}

/// Pid, parent pid and name of the calling process (`multiprocessing.current_process()`).
pub fn current_process() -> CurrentProcess {
    CurrentProcess {
        pid: Pid::this(),
        ppid: Pid::parent(),
        name: platform::current_name().to_owned(),
    }
}

/// The process that started the calling one, as [`parent_process`] reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParentProcess {
    /// The starter's process id, recorded when it started this process: it may have exited since (and
    /// the number may name another process by now).
    pub pid: Pid,
    /// The starter's name (`MainProcess` for a program herd did not start).
    pub name: String,
}

/// The process that started the calling one (`multiprocessing.parent_process()`): `None` in a process
/// herd did not start (the main process).
///
/// Whatever the start method, this is the process that asked for the child: for a forkserver child it is
/// the requesting process, not the forkserver that forked it (as in Python), so `pid` may differ from
/// the child's `getppid()` ([`CurrentProcess::ppid`]).
pub fn parent_process() -> Option<ParentProcess> {
    platform::parent().map(|(pid, name)| ParentProcess {
        pid: Pid::from_raw(pid),
        name: name.to_owned(),
    })
}
