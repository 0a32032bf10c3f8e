//! `IpcLauncher`: workers as herd-ipc processes (fork or spawn), one [`Pipe`](herd_ipc::Pipe)
//! each, every worker in a process group of its own (herd-ipc's `process_group`) that dies with
//! the supervisor, however it dies (herd-ipc's `die_with_parent` and [`crate::parent_death`]).
//!
//! Fork: the child first drops the supervisor's inherited signal handlers (they would write to
//! the supervisor's self-pipe); the handled signals stay blocked across `fork` so none runs in
//! between. Spawn: the binary is re-executed and runs the worker entry the program declared with
//! [`worker_entry!`](crate::worker_entry), which builds the program's registry in the new process.
use std::io::{self, Write as _};
use std::os::fd::AsFd;
use std::time::Duration;

use anyhow::Context as _;
use herd_ipc::{Child, Entry, ExitStatus, Pid, Process, StartError, StartMethod};
use herd_worker::{run_worker, Initializer, Registry, WorkerOptions};
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::signal::Signal;
use nix::sys::wait::{Id, WaitPidFlag, WaitStatus};
use serde::{Deserialize, Serialize};

use crate::parent_death::{kill_group_on_parent_death, PARENT_DEATH_SIGNAL};
use crate::pipe_link::{worker_pipe, SupervisorEnd, WorkerEnd};
use crate::{InheritedHandlers, Kill, Launcher, Wait, WorkerId};

/// Starts a worker by spawn or forkserver: the program's [`worker_entry!`](crate::worker_entry),
/// type-erased.
type SpawnWorker = Box<
    dyn Fn(Process, StartMethod, &WorkerArgs) -> Result<Child<String>, StartError> + Send + Sync,
>;

/// Starts workers as herd-ipc processes.
pub struct IpcLauncher {
    method: StartMethod,
    registry: fn() -> Registry,
    spawn: Option<SpawnWorker>,
    initializer: Option<Initializer>,
    heartbeat_interval: Duration,
    inherited: InheritedHandlers,
    reap_strays: bool,
}

impl std::fmt::Debug for IpcLauncher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IpcLauncher")
            .field("method", &self.method)
            .field("has_spawn_entry", &self.spawn.is_some())
            .field("heartbeat_interval", &self.heartbeat_interval)
            .field("reap_strays", &self.reap_strays)
            .finish_non_exhaustive()
    }
}

impl IpcLauncher {
    /// A launcher whose forked workers run the kinds `registry` builds; `inherited` are the
    /// supervisor's handlers a forked child must drop. [`StartMethod::Spawn`] also needs
    /// [`spawn_entry`](Self::spawn_entry).
    pub fn new(
        method: StartMethod,
        registry: fn() -> Registry,
        heartbeat_interval: Duration,
        inherited: InheritedHandlers,
    ) -> Self {
        Self {
            method,
            registry,
            spawn: None,
            initializer: None,
            heartbeat_interval,
            inherited,
            reap_strays: false,
        }
    }

    /// The entry a spawned worker runs: one the program declared with
    /// [`worker_entry!`](crate::worker_entry), which builds the same registry in the new process.
    pub fn spawn_entry<E>(mut self, entry: E) -> Self
    where
        E: Entry<Args = WorkerArgs, Output = String> + Copy + Send + Sync + 'static,
    {
        self.spawn = Some(Box::new(move |builder, method, args| {
            builder.start(method, entry, args)
        }));
        self
    }

    /// A job every worker runs once when it starts, before any other (a worker whose
    /// initializer fails takes no job and exits).
    pub fn initializer(mut self, initializer: Initializer) -> Self {
        self.initializer = Some(initializer);
        self
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
    /// What it runs once before taking jobs.
    pub initializer: Option<Initializer>,
    /// Its parent's pid, to tell the parent-death signal from the same signal sent by others:
    /// the supervisor's when spawned; `None` when a forkserver forks it (the worker reads its
    /// parent at start).
    pub supervisor: Option<Pid>,
}

/// The body of a spawned worker, for [`worker_entry!`](crate::worker_entry): runs the jobs of
/// `registry` over the pipe end in `args` until told to stop; the text says why it left.
pub fn run_spawned_worker(registry: &Registry, args: WorkerArgs) -> String {
    let options = WorkerOptions {
        heartbeat_interval: Duration::from_millis(args.heartbeat_millis),
        initializer: args.initializer,
    };
    worker_main(
        registry,
        args.end,
        &options,
        args.supervisor.unwrap_or_else(Pid::parent),
    )
}

/// Declares the entry that spawned workers of this program run, with the registry they use:
/// `herd_supervisor::worker_entry!(my_worker, my_registry);` then
/// `IpcLauncher::new(StartMethod::Spawn, my_registry, ..).spawn_entry(my_worker)`.
///
/// A spawned worker is this binary executed anew, so it finds the entry by name and builds the
/// registry itself; a function pointer could not cross the `exec`.
#[macro_export]
macro_rules! worker_entry {
    ($(#[$meta:meta])* $vis:vis $name:ident, $registry:path) => {
        $crate::__private::herd_ipc::entry! {
            $(#[$meta])*
            $vis fn $name(args: $crate::WorkerArgs) -> ::std::string::String {
                $crate::run_spawned_worker(&$registry(), args)
            }
        }
    };
}

/// The body of every worker process: runs jobs until told to stop; the text says why it left.
fn worker_main(
    registry: &Registry,
    end: WorkerEnd,
    options: &WorkerOptions,
    supervisor: Pid,
) -> String {
    name_this_process();
    if let Err(error) = kill_group_on_parent_death(supervisor) {
        return format!("worker could not arm its parent-death handler: {error}");
    }
    match run_worker(registry, &end, options) {
        Ok(exit) => format!("{exit:?}"),
        Err(error) => {
            // The supervisor sees only the exit: this line says why, and the status says it
            // was no normal exit (a result that could not be sent must not look like success).
            let text = format!("herd worker {}: {error}", std::process::id());
            let _ = writeln!(io::stderr().lock(), "{text}");
            // Unwinding (without the panic hook's message: the line above is the message) ends
            // the process through herd-ipc's own exit path, which reports a failure: exit code
            // 1, and no exit handlers of the parent run again in a forked worker.
            std::panic::resume_unwind(Box::new(text))
        }
    }
}

/// Sets the process name `ps`, `top` and `/proc/PID/comm` show to the worker's herd name
/// (`herd-worker-3`), so that workers can be told apart from each other and from the
/// supervisor, whatever binary they run. The kernel keeps the first 15 bytes. Best effort: a
/// worker that keeps its inherited name still works.
fn name_this_process() {
    if let Ok(name) = std::ffi::CString::new(herd_ipc::current_process().name) {
        let _ = nix::sys::prctl::set_name(&name);
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
                let options = WorkerOptions {
                    heartbeat_interval: self.heartbeat_interval,
                    initializer: self.initializer.clone(),
                };
                let child = builder.fork(move || {
                    inherited.forget_in_child();
                    worker_main(&registry(), worker_end, &options, supervisor)
                });
                drop(blocked);
                child
            }
            method @ (StartMethod::Spawn | StartMethod::Forkserver) => {
                let spawn = self.spawn.as_ref().with_context(|| {
                    format!(
                        "the {method} start method needs a worker entry: declare one with \
                         herd_supervisor::worker_entry! and pass it to IpcLauncher::spawn_entry"
                    )
                })?;
                let heartbeat_millis =
                    u64::try_from(self.heartbeat_interval.as_millis()).unwrap_or(u64::MAX);
                // A forkserver's child has the forkserver for its parent, not this process.
                let parent = (method == StartMethod::Spawn).then_some(supervisor);
                spawn(
                    builder,
                    method,
                    &WorkerArgs {
                        end: worker_end,
                        heartbeat_millis,
                        initializer: self.initializer.clone(),
                        supervisor: parent,
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

    /// The pidfd: a forkserver's workers are not this process's children, so no SIGCHLD
    /// announces their exit; the pidfd does, for every start method.
    fn exit_fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        Some(self.child.as_fd())
    }

    fn has_exited(&mut self) -> io::Result<bool> {
        // The pidfd turns readable when the child exits; reading it does not reap.
        let mut fds = [PollFd::new(self.child.as_fd(), PollFlags::POLLIN)];
        loop {
            match nix::poll::poll(&mut fds, PollTimeout::ZERO) {
                // A signal (SIGCHLD, likely) came in during the call: ask again.
                Err(Errno::EINTR) => continue,
                ready => return Ok(ready? > 0),
            }
        }
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
