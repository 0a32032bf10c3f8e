//! `IpcLauncher`: workers as herd-ipc processes (fork or spawn), one [`Pipe`](herd_ipc::Pipe)
//! each, every worker in a process group of its own (herd-ipc's `process_group`) that dies with
//! the supervisor, however it dies (herd-ipc's `die_with_parent` and [`crate::parent_death`]).
//!
//! Fork: the child first drops the supervisor's inherited signal handlers (they would write to
//! the supervisor's self-pipe); the handled signals stay blocked across `fork` so none runs in
//! between. Spawn: the binary is re-executed and runs [`worker_entry`], which builds the
//! registry with [`builtin_registry`] (a program with kinds of its own uses fork, or declares an
//! entry like it).
use std::io;
use std::os::fd::AsFd;
use std::time::Duration;

use anyhow::Context as _;
use herd_ipc::{Child, ExitStatus, Pid, Process};
use herd_worker::{run_worker, Registry, WorkerOptions};
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::signal::Signal;
use nix::sys::wait::{Id, WaitPidFlag, WaitStatus};
use serde::{Deserialize, Serialize};

use crate::builtin::builtin_registry;
use crate::parent_death::{kill_group_on_parent_death, PARENT_DEATH_SIGNAL};
use crate::pipe_link::{worker_pipe, SupervisorEnd, WorkerEnd};
use crate::{InheritedHandlers, Kill, Launcher, Wait, WorkerId};

/// How workers are started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StartMethod {
    /// A copy of the supervising process (fast; runs the job kinds the launcher was given).
    Fork,
    /// A fresh execution of the binary (runs the built-in job kinds, see `worker_entry`).
    Spawn,
}

/// Starts workers as herd-ipc processes.
#[derive(Debug)]
pub struct IpcLauncher {
    method: StartMethod,
    registry: fn() -> Registry,
    heartbeat_interval: Duration,
    inherited: InheritedHandlers,
    reap_strays: bool,
}

impl IpcLauncher {
    /// A launcher whose forked workers run the kinds `registry` builds; `inherited` are the
    /// supervisor's handlers a forked child must drop.
    pub fn new(
        method: StartMethod,
        registry: fn() -> Registry,
        heartbeat_interval: Duration,
        inherited: InheritedHandlers,
    ) -> Self {
        Self {
            method,
            registry,
            heartbeat_interval,
            inherited,
            reap_strays: false,
        }
    }
}

impl IpcLauncher {
    /// Also reaps exited children that are not workers: for a supervisor that is a child
    /// subreaper and owns every child of its process (the `supervisor` binary). Not for a
    /// [`crate::Pool`] inside a program with children of its own: their exit statuses are theirs.
    pub fn reaping_strays(mut self) -> Self {
        self.reap_strays = true;
        self
    }
}

/// What a spawned worker receives.
#[derive(Debug, Serialize, Deserialize)]
pub struct WorkerArgs {
    /// Its end of the pipe.
    pub end: WorkerEnd,
    /// How often it heartbeats.
    pub heartbeat_millis: u64,
    /// The supervisor's pid, to tell the parent-death signal from the same signal sent by others.
    pub supervisor: Pid,
}

/// The body of every worker process: runs jobs until told to stop; the text says why it left.
fn worker_main(
    registry: &Registry,
    end: WorkerEnd,
    heartbeat_interval: Duration,
    supervisor: Pid,
) -> String {
    if let Err(error) = kill_group_on_parent_death(supervisor) {
        return format!("worker could not arm its parent-death handler: {error}");
    }
    match run_worker(registry, &end, &WorkerOptions { heartbeat_interval }) {
        Ok(exit) => format!("{exit:?}"),
        Err(error) => format!("worker stopped: {error}"),
    }
}

herd_ipc::entry! {
    /// A spawned worker: runs the built-in job kinds over the pipe end it was given.
    pub fn worker_entry(args: WorkerArgs) -> String {
        worker_main(&builtin_registry(), args.end, Duration::from_millis(args.heartbeat_millis), args.supervisor)
    }
}

impl Launcher for IpcLauncher {
    type Child = WorkerProcess;
    type Channel = SupervisorEnd;

    fn launch(&mut self, id: WorkerId) -> anyhow::Result<(WorkerProcess, SupervisorEnd)> {
        let (supervisor_end, worker_end) = worker_pipe().context("creating the worker pipe")?;
        // Not SIGKILL on parent death: the worker's handler for this signal kills its children
        // too (see `parent_death`).
        let builder = Process::new()
            .name(format!("herd-worker-{}", id.0))
            .process_group(true)
            .die_with_parent(PARENT_DEATH_SIGNAL as i32);
        let supervisor = Pid::this();
        let child = match self.method {
            StartMethod::Fork => {
                let blocked = self
                    .inherited
                    .block()
                    .context("blocking signals around fork")?;
                let inherited = self.inherited.clone();
                let registry = self.registry;
                let heartbeat = self.heartbeat_interval;
                let child = builder.fork(move || {
                    inherited.forget_in_child();
                    worker_main(&registry(), worker_end, heartbeat, supervisor)
                });
                drop(blocked);
                child
            }
            StartMethod::Spawn => {
                let heartbeat_millis =
                    u64::try_from(self.heartbeat_interval.as_millis()).unwrap_or(u64::MAX);
                builder.spawn(
                    worker_entry,
                    &WorkerArgs {
                        end: worker_end,
                        heartbeat_millis,
                        supervisor,
                    },
                )
            }
        }
        .with_context(|| format!("starting {id}"))?;
        Ok((WorkerProcess { child }, supervisor_end))
    }

    fn reap_strays(&mut self, is_worker: &dyn Fn(Pid) -> bool) {
        if !self.reap_strays {
            return;
        }
        loop {
            let peek = nix::sys::wait::waitid(
                Id::All,
                WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT,
            );
            let pid = match peek {
                Ok(WaitStatus::Exited(pid, _)) | Ok(WaitStatus::Signaled(pid, _, _)) => pid,
                _ => return,
            };
            if is_worker(Pid::from(pid)) {
                // Its Reaper collects it on the next pass.
                return;
            }
            // A worker's child re-parented to us (we are a subreaper): reap it.
            if nix::sys::wait::waitpid(pid, Some(WaitPidFlag::WNOHANG)).is_err() {
                return;
            }
        }
    }
}

/// A worker process, waited for through its pidfd and signalled by process group.
#[derive(Debug)]
pub struct WorkerProcess {
    child: Child<String>,
}

impl Wait for WorkerProcess {
    fn id(&self) -> Pid {
        self.child.pid()
    }

    fn has_exited(&mut self) -> io::Result<bool> {
        // The pidfd turns readable when the child exits; reading it does not reap.
        let mut fds = [PollFd::new(self.child.as_fd(), PollFlags::POLLIN)];
        let ready = nix::poll::poll(&mut fds, PollTimeout::ZERO)?;
        Ok(ready > 0)
    }

    fn reap(&mut self) -> io::Result<ExitStatus> {
        self.child
            .exit_status()
            .ok_or_else(|| io::Error::other("the worker has not exited"))
    }
}

impl Kill for WorkerProcess {
    fn signal_group(&mut self, signal: Signal) -> io::Result<()> {
        let pid = nix::unistd::Pid::from(self.child.pid());
        match nix::sys::signal::killpg(pid, signal) {
            Ok(()) => Ok(()),
            // No process in a group of that id: the worker does not lead one (`process_group`
            // makes the group before `launch` returns, so this is a fallback): the worker alone.
            Err(Errno::ESRCH) => match signal {
                Signal::SIGKILL => self.child.kill(),
                Signal::SIGTERM => self.child.terminate(),
                other => nix::sys::signal::kill(pid, other).map_err(io::Error::from),
            },
            Err(errno) => Err(errno.into()),
        }
    }
}
