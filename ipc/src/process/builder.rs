//! `Process`: the builder that starts a child, by `fork` (run a closure in a copy of this process) or by
//! `spawn` (re-execute this binary and run a registered entry with serialised arguments).
use std::ffi::CString;
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};

use nix::sys::signal::Signal;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::codec::{self, CodecError};
use crate::platform::{self, ChildSetup, ExecPlan, ForkPermit, Pidfd, Socket};
use crate::process::child::Child;
use crate::process::entry::{self, Entry, SpawnRequest, SPAWN_FLAG};
use crate::process::outcome::{ChildOutcome, ResultReader};
use crate::process::pid::Pid;
use crate::process::registry::ChildShared;

/// Starts a child process. Configure with [`name`](Self::name), [`daemon`](Self::daemon),
/// [`process_group`](Self::process_group) and [`die_with_parent`](Self::die_with_parent), then call
/// [`fork`](Self::fork), [`spawn`](Self::spawn) or [`forkserver`](Self::forkserver), or
/// [`start`](Self::start) with a [`StartMethod`](crate::StartMethod).
///
/// ```
/// use std::time::Duration;
///
/// let child = herd_ipc::Process::new().name("adder").fork(|| 2 + 40)?;
/// assert_eq!(child.join_timeout(Duration::from_secs(10))?, 42);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// The forkserver (as in Python's `multiprocessing`) forks children from a single-threaded server process,
/// so it is as safe as spawn in a multi-threaded program and about as fast as fork:
///
/// ```
/// use std::time::Duration;
///
/// herd_ipc::entry! {
///     fn add(pair: (u32, u32)) -> u32 { pair.0 + pair.1 }
/// }
///
/// fn main() -> Result<(), Box<dyn std::error::Error>> {
///     let child = herd_ipc::Process::new().name("adder").forkserver(add, &(2, 40))?;
///     assert_eq!(child.join_timeout(Duration::from_secs(10))?, 42);
///     Ok(())
/// }
/// ```
#[derive(Debug, Clone, Default)]
pub struct Process {
    name: Option<String>,
    daemon: bool,
    process_group: bool,
    /// Set by `die_with_parent`; a daemon without it gets SIGKILL.
    parent_death_signal: Option<i32>,
    allow_multi_threaded_fork: bool,
}

/// Numbering of default names, `Process-1`, `Process-2`, ... as in `multiprocessing`.
static STARTED: AtomicUsize = AtomicUsize::new(0);

impl Process {
    /// A builder with the defaults: name `Process-N`, not a daemon.
    pub fn new() -> Self {
        Self::default()
    }

    /// Names the child (visible as [`Child::name`] and, in the child, [`crate::current_process`]).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// A daemon child is killed (SIGKILL) when its parent dies, however the parent dies, SIGKILL included
    /// (`PR_SET_PDEATHSIG`; a child whose parent died before the signal was armed exits at once).
    /// [`die_with_parent`](Self::die_with_parent), if also called, chooses the signal instead.
    ///
    /// Linux delivers the signal when the parent *thread* that started the child exits, not the parent
    /// process: start daemon children from a thread that lives as long as the process (e.g. the main thread).
    pub fn daemon(mut self, daemon: bool) -> Self {
        self.daemon = daemon;
        self
    }

    /// With `true`, the child runs in a new process group of its own, whose id is its pid (`setpgid(0, 0)`),
    /// so that the group, the child and whatever it starts, can be signalled at once (`killpg`) and a
    /// terminal's Ctrl-C (sent to the foreground group) does not reach it.
    ///
    /// The child makes the call first thing after fork, before the closure runs (fork) or before `execv`
    /// (spawn); the parent makes the same call before `fork`/`spawn` returns, so the group exists from the
    /// parent's point of view as soon as it has the [`Child`] handle, whether or not the child has run yet.
    pub fn process_group(mut self, own_group: bool) -> Self {
        self.process_group = own_group;
        self
    }

    /// The child receives `signal` (e.g. `libc::SIGKILL`, or `libc::SIGTERM` to let it clean up) when its
    /// parent dies, however the parent dies, SIGKILL included (`PR_SET_PDEATHSIG`).
    ///
    /// The signal is armed in the child first thing after fork, before the closure runs (fork) or before
    /// `execv` (spawn; the setting survives `execv` because the re-executed binary is the same, not a
    /// set-user-ID one). The parent may die between fork and that moment, and then the signal would never
    /// come: so the child compares its parent's pid with the one recorded before fork and exits at once
    /// (code 125) if they differ.
    ///
    /// A spawned child meets a signal other than SIGKILL with its default action until it installs a handler
    /// (a handler the parent had for it is dropped before the signal is armed, as `execv` would). A forked
    /// child keeps the parent's handlers, like every other inherited state: choose a signal the parent does
    /// not handle, or replace the handler in the closure.
    ///
    /// Linux delivers the signal when the parent *thread* that started the child exits, not the parent
    /// process: start such children from a thread that lives as long as the process (e.g. the main thread).
    /// Only the child is signalled, not what it starts. A `signal` that is not a valid signal number makes
    /// [`fork`](Self::fork) and [`spawn`](Self::spawn) fail with [`StartError::Os`].
    pub fn die_with_parent(mut self, signal: i32) -> Self {
        self.parent_death_signal = Some(signal);
        self
    }

    /// Lets [`fork`](Self::fork) run in a process that has more than one thread, which it otherwise refuses.
    ///
    /// # Safety
    /// The forked child holds only a copy of the forking thread. Every lock another thread held at that moment
    /// stays locked in the child for ever. The caller promises that the closure (and what it calls) touches
    /// nothing such a lock may guard: glibc `malloc` is fork-safe, but Rust std's stdout/stderr locks (so
    /// `println!`, `eprintln!` and the panic message printer), `std::env`, the program's own mutexes and channels
    /// shared with other threads, and foreign libraries with internal locks are not. The child never flushes
    /// stdout in this mode. Prefer [`spawn`](Self::spawn), which is safe in a multi-threaded parent.
    #[allow(unsafe_code)] // the public opt-in whose contract the OS layer's ForkPermit relies on
    pub unsafe fn allow_multi_threaded_fork(mut self) -> Self {
        self.allow_multi_threaded_fork = true;
        self
    }

    /// Runs `body` in a forked child; its return value comes back on [`Child::join`].
    ///
    /// The closure may borrow from the caller's stack: the child owns a copy of the whole address space. Fds
    /// moved into it (herd handles) are inherited by the child. The parent flushes stdout first so buffered
    /// output is not printed twice; the child flushes stdout after `body` and leaves with `_exit` (no atexit
    /// handlers, no destructors of the parent's objects).
    ///
    /// Refuses with [`StartError::MultiThreaded`] if this process has more than one thread (counted in
    /// `/proc/self/task`), unless [`allow_multi_threaded_fork`](Self::allow_multi_threaded_fork) was called.
    pub fn fork<T, F>(self, body: F) -> Result<Child<T>, StartError>
    where
        F: FnOnce() -> T,
        T: Serialize,
    {
        Self::check_reapable()?;
        let setup = self.setup()?;
        #[allow(unsafe_code)] // discharges ForkPermit's contract with the caller's opt-in above
        let permit = if self.allow_multi_threaded_fork {
            // SAFETY: allow_multi_threaded_fork is an unsafe fn whose caller took on exactly the contract of
            // multi_threaded_by_contract (the child touches nothing other threads may hold locked).
            unsafe { ForkPermit::multi_threaded_by_contract() }
        } else {
            ForkPermit::single_threaded().map_err(|threads| match threads {
                Some(threads) => StartError::MultiThreaded { threads },
                None => StartError::ThreadsUnknown,
            })?
        };
        let name = self.child_name();
        let (result_read, result_write) =
            Socket::pair().map_err(StartError::os("create the result channel"))?;
        let _ = io::stdout().flush();
        let flush_in_child = !permit.parent_was_multi_threaded();
        let child_name = &name;
        let parent_name = platform::current_name();
        let parent_pid = Pid::this().as_raw();
        let result_write_end = &result_write;
        // The child's own references to the manager objects it inherits proxies of, taken before
        // it exists (and the table's lock held across the fork): see `manager::refs`.
        let manager_refs = crate::manager::refs::prepare_fork();
        let pid = platform::fork_and_run(&permit, setup, move || {
            manager_refs.in_child();
            platform::set_current_name(child_name.clone());
            platform::set_parent(parent_pid, parent_name.to_owned());
            let run = catch_unwind(AssertUnwindSafe(body));
            if flush_in_child {
                let _ = io::stdout().flush();
            }
            let (outcome, fds) = ChildOutcome::of_run(run);
            outcome.send(result_write_end, &fds)
        })
        .map_err(StartError::os("fork"))?;
        drop(result_write);
        self.finish_start(pid, name, result_read)
    }

    /// Re-executes this binary as a child that runs `entry` (declared with [`entry!`](crate::entry!)) on
    /// `args`; the entry's return value comes back on [`Child::join`].
    ///
    /// The child runs the entry before its `main` would start (from herd-ipc's start-up hook), so `main`
    /// needs no special first line, and this works from ordinary `#[test]` functions. Arguments may hold herd
    /// handles: their fds are inherited by the child. Unlike [`fork`](Self::fork) this is safe in a multi-threaded parent: the child
    /// runs nothing but async-signal-safe calls before `execv`.
    pub fn spawn<E: Entry>(self, entry: E, args: &E::Args) -> Result<Child<E::Output>, StartError> {
        let _ = entry;
        self.spawn_named(E::NAME, args)
    }

    /// Like [`spawn`](Self::spawn) for an entry named at run time (its [`Entry::NAME`]). The types are only
    /// checked in the child: arguments that do not decode as the entry's make [`Child::join`] fail with
    /// [`JoinError::Failed`](crate::JoinError::Failed), a value that is not a `T` with `JoinError::Decode`.
    pub fn spawn_named<A, T>(self, entry: &str, args: &A) -> Result<Child<T>, StartError>
    where
        A: Serialize + ?Sized,
        T: DeserializeOwned,
    {
        if entry::is_spawned_child() {
            return Err(StartError::SpawnedWithoutInit);
        }
        platform::ensure_bootstrap_linked();
        Self::check_reapable()?;
        let setup = self.setup()?;
        let encoded = Self::encode_for(entry, args)?;
        let name = self.child_name();
        let (result_read, result_write) =
            Socket::pair().map_err(StartError::os("create the result channel"))?;
        let request = SpawnRequest {
            entry: entry.to_owned(),
            name: name.clone(),
            parent_pid: Pid::this().as_raw(),
            parent_name: platform::current_name().to_owned(),
            args: encoded.bytes,
            arg_fds: encoded.fds.iter().map(AsRawFd::as_raw_fd).collect(),
        };
        let request_bytes = postcard::to_stdvec(&request).map_err(|err| StartError::Arguments {
            entry: entry.to_owned(),
            source: CodecError::encode(err),
        })?;
        let request_fd = platform::memfd_with(&request_bytes)
            .map_err(StartError::os("create the spawn request"))?;
        let argv0 = std::env::args_os()
            .next()
            .unwrap_or_else(|| "herd-spawned".into());
        let argv = [
            argv0.as_bytes(),
            SPAWN_FLAG.as_bytes(),
            fd_arg(&request_fd).as_bytes(),
            fd_arg(&result_write).as_bytes(),
        ]
        .into_iter()
        .map(|arg| {
            CString::new(arg).map_err(|_| StartError::Os {
                action: "build argv (NUL byte in argv[0])",
                source: io::ErrorKind::InvalidInput.into(),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
        let mut inherit: Vec<BorrowedFd<'_>> = vec![request_fd.as_fd(), result_write.as_fd()];
        inherit.extend(encoded.fds.iter().map(OwnedFd::as_fd));
        let failure = ChildOutcome::Failed(
            "re-executing the current binary (/proc/self/exe) failed".to_owned(),
        )
        .to_frame()
        .map_err(StartError::os("encode the exec failure report"))?;
        let plan = ExecPlan::new(argv, &inherit, result_write.as_fd(), failure);
        let pid = platform::fork_and_exec_self(&plan, setup).map_err(StartError::os("fork"))?;
        drop(plan);
        drop(inherit);
        drop(result_write);
        drop(request_fd);
        self.finish_start(pid, name, result_read)
    }

    /// Checks what every start needs: children that stay waitable until herd reaps them.
    pub(crate) fn check_reapable() -> Result<(), StartError> {
        if platform::children_are_auto_reaped() {
            return Err(StartError::AutoReaped);
        }
        Ok(())
    }

    /// What the child applies before running anything of the caller's; refuses a signal number that is not one.
    /// The arguments of a registered entry, encoded for a child that runs it by name (spawned or
    /// forked by the forkserver); an unknown name is refused here, naming the registered ones.
    pub(crate) fn encode_for<A: Serialize + ?Sized>(
        entry: &str,
        args: &A,
    ) -> Result<codec::Encoded, StartError> {
        if !entry::is_registered(entry) {
            return Err(StartError::UnknownEntry {
                entry: entry.to_owned(),
                registered: entry::registered_names().join(", "),
            });
        }
        codec::encode(args).map_err(|source| StartError::Arguments {
            entry: entry.to_owned(),
            source,
        })
    }

    pub(crate) fn setup(&self) -> Result<ChildSetup, StartError> {
        let signal = match self.parent_death_signal {
            Some(number) => Some(Signal::try_from(number).map_err(|errno| StartError::Os {
                action: "arm the parent-death signal",
                source: errno.into(),
            })?),
            None => self.daemon.then_some(Signal::SIGKILL),
        };
        Ok(ChildSetup {
            own_process_group: self.process_group,
            parent_death_signal: signal,
        })
    }

    /// Whether [`daemon`](Self::daemon) was asked for.
    pub(crate) fn is_daemon(&self) -> bool {
        self.daemon
    }

    pub(crate) fn child_name(&self) -> String {
        match &self.name {
            Some(name) => name.clone(),
            None => format!("Process-{}", STARTED.fetch_add(1, Ordering::Relaxed) + 1),
        }
    }

    /// Opens the child's pidfd (the child cannot have been reaped: only herd reaps its children) and builds the
    /// handle.
    fn finish_start<T>(
        self,
        pid: nix::unistd::Pid,
        name: String,
        result_read: Socket,
    ) -> Result<Child<T>, StartError> {
        let pidfd = Pidfd::open_child(pid).map_err(StartError::os("open a pidfd for the child"))?;
        let shared = ChildShared::register(Pid::from(pid), name, pidfd);
        Ok(Child::new(
            shared,
            ResultReader::new(result_read),
            self.daemon,
        ))
    }
}

/// An fd number as a command-line argument.
fn fd_arg(fd: &impl AsFd) -> String {
    fd.as_fd().as_raw_fd().to_string()
}

/// Why a child could not be started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// `fork` was refused: this process has other threads, which could hold locks the child would need.
    #[error(
        "refusing to fork: this process has {threads} threads, and locks held by the others would stay locked \
         in the child (use Process::spawn, or the unsafe Process::allow_multi_threaded_fork)"
    )]
    MultiThreaded {
        /// The number of threads counted in `/proc/self/task`.
        threads: usize,
    },
    /// `fork` was refused: the threads of this process cannot be counted (`/proc/self/task` is unreadable), so
    /// it may be multi-threaded.
    #[error(
        "refusing to fork: /proc/self/task is unreadable, so this process may have other threads whose locks \
         would stay locked in the child (mount /proc, or use Process::spawn)"
    )]
    ThreadsUnknown,
    /// No entry of this name is registered in this binary (see [`entry!`](crate::entry!)).
    #[error("no entry named {entry:?} is registered in this binary (registered: [{registered}])")]
    UnknownEntry {
        /// The name asked for.
        entry: String,
        /// The names registered in this binary, sorted, separated by ", ".
        registered: String,
    },
    /// The arguments could not be serialised.
    #[error("the arguments for entry {entry:?} cannot be encoded: {source}")]
    Arguments {
        /// The entry the arguments were for.
        entry: String,
        /// The codec's reason.
        source: CodecError,
    },
    /// SIGCHLD is ignored (or SA_NOCLDWAIT is set) in this process: the kernel would reap children by itself,
    /// so no exit status or value could be collected.
    #[error(
        "cannot start a child: SIGCHLD is ignored (or SA_NOCLDWAIT set) in this process, so the kernel reaps \
         children itself and their exit status is lost; restore the default SIGCHLD disposition"
    )]
    AutoReaped,
    /// This process is itself a spawned child that reached `main`: herd-ipc's start-up hook, which runs a
    /// spawned child's entry before `main`, did not run (and `main` did not call [`crate::init`] either), so it
    /// is re-running the parent's `main`; spawning again would repeat that without end (Python refuses the same
    /// way).
    #[error(
        "refusing to spawn: this process was started by herd spawn but is running main (herd-ipc's start-up \
         hook did not run), so it is re-running the parent's main; call herd_ipc::init() at the top of main"
    )]
    SpawnedWithoutInit,
    /// The forkserver could not be started, or did not fork the child.
    #[error("forkserver{}: could not {action}: {source}", .pid.map(|pid| format!(" (pid {pid})")).unwrap_or_default())]
    Forkserver {
        /// The forkserver's process id, once it runs.
        pid: Option<u32>,
        /// What was being done, e.g. `"fork the child"`.
        action: &'static str,
        /// Why: the OS error, or the forkserver's own reason.
        source: io::Error,
    },
    /// A system call failed.
    #[error("could not {action}: {source}")]
    Os {
        /// What was being done, e.g. `"fork"`.
        action: &'static str,
        /// The OS error.
        source: io::Error,
    },
}

impl StartError {
    pub(crate) fn os(action: &'static str) -> impl FnOnce(io::Error) -> Self {
        move |source| Self::Os { action, source }
    }
}
