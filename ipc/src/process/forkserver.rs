//! The forkserver start method, as in Python's `multiprocessing`: a small single-threaded server process,
//! started once per process by spawn (so it is a fresh copy of this binary, with the same entries), forks a
//! child for each request and runs the requested entry in it. A start costs about a fork, and it is safe
//! from a multi-threaded or async program because the process that forks has only one thread.
//!
//! # Protocol
//!
//! One `AF_UNIX` stream socket pair joins the requesting process (client) and its forkserver; every message
//! is a frame (little-endian u32 length, then postcard) with fds attached by SCM_RIGHTS. The server answers
//! each request before reading the next; the client holds a mutex across a request and its reply, so
//! several threads may start children at once.
//!
//! - On start the server sends `Ready { pid }` (or, if re-executing failed, `Refused`).
//! - `Fork { entry, name, args, options }` with fds `[result socket, fds of the argument handles...]`: the
//!   server forks; the child closes the server's fds, arms its options (daemon: SIGKILL when the forkserver
//!   dies), runs the entry and sends its outcome on the result socket, exactly as a spawned child does. The
//!   server opens a pidfd for the child right after fork and replies `Forked { pid }` with that pidfd
//!   attached, so the client can poll it and signal it without ever hitting a recycled pid.
//! - `Reap { pid }`: the server keeps an exited child as a zombie until its owner sends this (from join,
//!   `exit_status`, drop...), so the pid and process group stay reserved until the owner is done; it then
//!   reaps it and replies `Reaped { status }` (`None` if it still runs).
//!
//! # Lifetimes
//!
//! The server dies with the process that started it: it watches that process's pidfd and exits when it
//! becomes readable, and if it was started from the main thread it also has `PR_SET_PDEATHSIG(SIGKILL)`
//! (the parent-death signal fires when the *thread* that forked exits, so it is only armed when that thread
//! is the main thread). Its daemon children have the parent-death signal towards the server, so they die
//! with it, hence with the requesting process. Non-daemon children outlive it, re-parented like any orphan.
use std::collections::HashMap;
use std::io::{self, IoSlice, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use nix::poll::PollFlags;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::platform::{
    self, Blocking, ChildSetup, ExecPlan, ForkPermit, Pidfd, Socket, MAX_FDS_PER_MESSAGE,
};
use crate::process::builder::{Process, StartError};
use crate::process::child::Child;
use crate::process::entry::{self, Entry};
use crate::process::outcome::{ResultReader, EXIT_FAILED};
use crate::process::pid::Pid;
use crate::process::registry::ChildShared;
use crate::process::status::ExitStatus;

/// The marker that makes a re-executed binary the forkserver: `argv0 --herd-ipc-forkserver <channel fd>
/// <parent pid>`.
pub(crate) const FORKSERVER_FLAG: &str = "--herd-ipc-forkserver";

/// Largest frame either side accepts: the length prefix is checked before allocating.
const MAX_FRAME: usize = 1 << 30;

/// How the forkserver sets up a child before its entry runs. Every per-child option of [`Process`] that
/// must act inside the child travels here, so a new one is added in one place.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub(crate) struct ForkOptions {
    /// The child leads a process group of its own.
    process_group: bool,
    /// The signal the child gets when the forkserver dies (which dies with the requesting
    /// process): SIGKILL for a daemon, or the one `die_with_parent` chose.
    parent_death_signal: Option<i32>,
}

impl ForkOptions {
    fn of(process: &Process) -> Result<Self, StartError> {
        let setup = process.setup()?;
        Ok(Self {
            process_group: setup.own_process_group,
            parent_death_signal: setup.parent_death_signal.map(|signal| signal as i32),
        })
    }

    fn setup(&self) -> ChildSetup {
        ChildSetup {
            own_process_group: self.process_group,
            // Checked by `of` in the requesting process: a number that is no signal cannot come.
            parent_death_signal: self
                .parent_death_signal
                .and_then(|number| nix::sys::signal::Signal::try_from(number).ok()),
        }
    }
}

/// What the client asks.
#[derive(Debug, Serialize, Deserialize)]
enum Request {
    /// Fork a child running `entry`; fds: the result socket, then the argument handles' fds in codec order.
    Fork {
        entry: String,
        name: String,
        /// The requesting process's pid and name, for `parent_process()` in the child.
        parent: (i32, String),
        args: Vec<u8>,
        options: ForkOptions,
    },
    /// Reap child `pid` if it has exited.
    Reap { pid: u32 },
}

/// What the server answers.
#[derive(Debug, Serialize, Deserialize)]
enum Reply {
    /// The server runs and reads requests.
    Ready { pid: u32 },
    /// The child was forked; fds: its pidfd.
    Forked { pid: u32 },
    /// `Reap` result: the status if the child had exited (it is reaped now), `None` while it runs.
    Reaped { status: Option<WireStatus> },
    /// The request could not be carried out, and why.
    Refused { reason: String },
}

/// An exit status on the wire.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
enum WireStatus {
    Exited(i32),
    Signaled(i32),
}

impl From<ExitStatus> for WireStatus {
    fn from(status: ExitStatus) -> Self {
        match status {
            ExitStatus::Exited(code) => Self::Exited(code),
            ExitStatus::Signaled(signal) => Self::Signaled(signal),
        }
    }
}

impl From<WireStatus> for ExitStatus {
    fn from(status: WireStatus) -> Self {
        match status {
            WireStatus::Exited(code) => Self::Exited(code),
            WireStatus::Signaled(signal) => Self::Signaled(signal),
        }
    }
}

/// The encoding of a frame: length prefix then postcard bytes.
fn frame_of<M: Serialize>(message: &M) -> io::Result<Vec<u8>> {
    let mut frame = postcard::to_extend(message, vec![0u8; 4]).map_err(io::Error::other)?;
    let len = u32::try_from(frame.len() - 4)
        .ok()
        .filter(|&len| len as usize <= MAX_FRAME)
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "a forkserver message of {} bytes exceeds the {MAX_FRAME}-byte limit",
                    frame.len() - 4
                ),
            )
        })?;
    frame[..4].copy_from_slice(&len.to_le_bytes());
    Ok(frame)
}

fn write_frame<M: Serialize>(
    socket: &Socket,
    message: &M,
    fds: &[BorrowedFd<'_>],
) -> io::Result<()> {
    socket.send_all(&[IoSlice::new(&frame_of(message)?)], fds)
}

/// Reads exactly `buf.len()` bytes (collecting attached fds); `Ok(false)` on end-of-file before the first
/// byte, an error on end-of-file within.
fn read_exact(socket: &Socket, buf: &mut [u8], fds: &mut Vec<OwnedFd>) -> io::Result<bool> {
    let mut filled = 0;
    while filled < buf.len() {
        match socket.recv_with_fds(&mut buf[filled..], fds, Blocking::Yes)? {
            0 if filled == 0 => return Ok(false),
            0 => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the peer closed the channel in the middle of a message",
                ))
            }
            n => filled += n,
        }
    }
    Ok(true)
}

/// Reads one frame; `None` if the peer closed the channel between frames.
fn read_frame<M: DeserializeOwned>(socket: &Socket) -> io::Result<Option<(M, Vec<OwnedFd>)>> {
    let mut fds = Vec::new();
    let mut header = [0u8; 4];
    if !read_exact(socket, &mut header, &mut fds)? {
        return Ok(None);
    }
    let len = u32::from_le_bytes(header) as usize;
    if len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "a forkserver frame announces {len} bytes, more than the {MAX_FRAME}-byte limit"
            ),
        ));
    }
    let mut body = vec![0u8; len];
    if !read_exact(socket, &mut body, &mut fds)? && len > 0 {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    let message = postcard::from_bytes(&body).map_err(|err| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("corrupt forkserver frame: {err}"),
        )
    })?;
    Ok(Some((message, fds)))
}

// ---------------------------------------------------------------------------------------------------------
// Client side.

/// This process's connection to its forkserver.
#[derive(Debug)]
pub(crate) struct ServerLink {
    /// The forkserver's pid.
    pid: u32,
    /// The forkserver process (our child): reaped when the last user of this link is gone.
    process: Pidfd,
    /// The process that started the server; a forked copy of that process must not use or reap it.
    owner: u32,
    /// The request channel; held across a request and its reply.
    channel: Mutex<Socket>,
    /// Set when the channel failed: the next start launches a new server.
    broken: AtomicBool,
}

/// The forkserver of this process, started on first use.
static SERVER: Mutex<Option<Arc<ServerLink>>> = Mutex::new(None);

/// The pid of this process's forkserver, if one has been started (by [`Process::forkserver`] or
/// [`Process::start`] with [`StartMethod::Forkserver`](crate::StartMethod::Forkserver)) and still serves.
pub fn forkserver_pid() -> Option<Pid> {
    let slot = SERVER.lock().unwrap_or_else(PoisonError::into_inner);
    slot.as_ref()
        .filter(|link| link.is_usable())
        .map(|link| Pid::from_raw(link.pid as i32))
}

impl ServerLink {
    fn is_usable(&self) -> bool {
        if self.owner != std::process::id() || self.broken.load(Ordering::Acquire) {
            return false;
        }
        if self.process.has_exited().unwrap_or(true) {
            self.mark_broken();
            return false;
        }
        true
    }

    /// Stops using the channel, and reaps the server now if it has died (it is our child: it must not stay
    /// a zombie until the last handle of its children is dropped). A server still running is killed and
    /// reaped when the link is dropped.
    fn mark_broken(&self) {
        self.broken.store(true, Ordering::Release);
        if self.owner == std::process::id() {
            let _ = self.process.try_reap();
        }
    }

    /// The running forkserver of this process, started now if there is none (or the one there died, or was
    /// inherited from the process this one was forked from).
    fn get() -> Result<Arc<Self>, StartError> {
        let mut slot = SERVER.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(link) = slot.as_ref().filter(|link| link.is_usable()) {
            return Ok(Arc::clone(link));
        }
        let link = Arc::new(Self::start()?);
        *slot = Some(Arc::clone(&link));
        Ok(link)
    }

    /// Starts the forkserver: this binary re-executed with the forkserver flag (the start-up hook serves
    /// before `main`), handed one end of a socket pair.
    fn start() -> Result<Self, StartError> {
        let failed = |action: &'static str| {
            move |source: io::Error| StartError::Forkserver {
                pid: None,
                action,
                source,
            }
        };
        Process::check_reapable()?;
        platform::ensure_bootstrap_linked();
        let (ours, theirs) = Socket::pair().map_err(failed("create its channel"))?;
        let argv0 = std::env::args_os()
            .next()
            .unwrap_or_else(|| "herd-forkserver".into());
        let argv = [
            argv0.as_bytes().to_vec(),
            FORKSERVER_FLAG.as_bytes().to_vec(),
            theirs.as_fd().as_raw_fd().to_string().into_bytes(),
            std::process::id().to_string().into_bytes(),
        ]
        .into_iter()
        .map(|arg| {
            std::ffi::CString::new(arg)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL byte in argv[0]"))
        })
        .collect::<io::Result<Vec<_>>>()
        .map_err(failed("build its argv"))?;
        let failure = frame_of(&Reply::Refused {
            reason: "re-executing the current binary (/proc/self/exe) failed".to_owned(),
        })
        .map_err(failed("encode the exec failure report"))?;
        let plan = ExecPlan::new(argv, &[theirs.as_fd()], theirs.as_fd(), failure);
        // The parent-death signal fires when the forking *thread* exits: arm it only from the main thread,
        // which lives as long as the process. The server watches our pidfd in any case.
        let setup = ChildSetup {
            own_process_group: false,
            parent_death_signal: platform::is_main_thread()
                .then_some(nix::sys::signal::Signal::SIGKILL),
        };
        let pid = platform::fork_and_exec_self(&plan, setup).map_err(failed("fork"))?;
        drop(plan);
        drop(theirs);
        let process = Pidfd::open_child(pid).map_err(failed("open a pidfd for it"))?;
        let pid = u32::try_from(pid.as_raw())
            .map_err(|_| failed("fork")(io::Error::other("negative pid")))?;
        let link = Self {
            pid,
            process,
            owner: std::process::id(),
            channel: Mutex::new(ours),
            broken: AtomicBool::new(false),
        };
        let hello = {
            let channel = link.channel.lock().unwrap_or_else(PoisonError::into_inner);
            read_frame::<Reply>(&channel)
        };
        let refused = |reason: String| StartError::Forkserver {
            pid: Some(pid),
            action: "start",
            source: io::Error::other(reason),
        };
        match hello {
            Ok(Some((Reply::Ready { .. }, _))) => Ok(link),
            Ok(Some((Reply::Refused { reason }, _))) => Err(refused(reason)),
            Ok(Some((other, _))) => Err(refused(format!("unexpected greeting {other:?}"))),
            Ok(None) => Err(refused(
                "it exited before it was ready (is herd-ipc's start-up hook linked into this binary?)"
                    .to_owned(),
            )),
            Err(err) => Err(refused(err.to_string())),
        }
        // On error `link` drops here, which kills and reaps the server.
    }

    /// One request and its reply, under the channel lock. A failure of the channel marks the link broken.
    fn exchange(
        &self,
        request: &Request,
        fds: &[BorrowedFd<'_>],
    ) -> io::Result<(Reply, Vec<OwnedFd>)> {
        let channel = self.channel.lock().unwrap_or_else(PoisonError::into_inner);
        if self.broken.load(Ordering::Acquire) {
            // A failed exchange may have left half a frame in the stream: never speak on it again.
            return Err(io::Error::other(format!(
                "the channel to the forkserver (pid {}) failed earlier",
                self.pid
            )));
        }
        let result = write_frame(&channel, request, fds).and_then(|()| {
            read_frame(&channel)?.ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("the forkserver (pid {}) closed its channel", self.pid),
                )
            })
        });
        if result.is_err() {
            self.mark_broken();
        }
        result
    }

    /// Asks the server to fork a child; returns its pid and pidfd.
    fn fork(&self, request: &Request, fds: &[BorrowedFd<'_>]) -> Result<(u32, Pidfd), StartError> {
        let failed = |source: io::Error| StartError::Forkserver {
            pid: Some(self.pid),
            action: "fork the child",
            source,
        };
        match self.exchange(request, fds).map_err(failed)? {
            (Reply::Forked { pid }, mut pidfds) if pidfds.len() == 1 => {
                Ok((pid, Pidfd::adopt(pidfds.remove(0))))
            }
            (Reply::Refused { reason }, _) => Err(failed(io::Error::other(reason))),
            (other, fds) => {
                self.mark_broken();
                Err(failed(io::Error::other(format!(
                    "unexpected reply {other:?} with {} fds",
                    fds.len()
                ))))
            }
        }
    }

    /// Asks the server to reap child `pid`; `None` while it runs.
    fn reap(&self, pid: u32) -> io::Result<Option<ExitStatus>> {
        let lost = |why: String| {
            io::Error::other(format!(
                "the forkserver (pid {}) could not reap process {pid}: {why}",
                self.pid
            ))
        };
        match self.exchange(&Request::Reap { pid }, &[]) {
            Ok((Reply::Reaped { status }, _)) => Ok(status.map(ExitStatus::from)),
            Ok((Reply::Refused { reason }, _)) => Err(lost(reason)),
            Ok((other, _)) => Err(lost(format!("unexpected reply {other:?}"))),
            Err(err) => Err(lost(err.to_string())),
        }
    }
}

impl Drop for ServerLink {
    fn drop(&mut self) {
        // Only the process that started the server may stop it: a forked copy of that process holds the
        // link as a copy, and its own forkserver (if any) is another one.
        if self.owner == std::process::id() {
            let _ = self.process.send_signal(libc::SIGKILL);
            let _ = self.process.reap_blocking();
        }
    }
}

/// Who reaps a child started by this process: the process itself (fork, spawn), or the forkserver that
/// forked it (then the pidfd can be polled and signalled but not waited on here).
#[derive(Debug)]
pub(crate) enum Reaper {
    /// The child is ours: `waitid(P_PIDFD)`.
    ThisProcess,
    /// The child is the forkserver's: ask it once the pidfd says the child has exited.
    Forkserver(Arc<ServerLink>),
}

impl Reaper {
    /// Reaps the child if it has exited; `None` while it runs.
    pub(crate) fn try_reap(&self, pidfd: &Pidfd, pid: Pid) -> io::Result<Option<ExitStatus>> {
        match self {
            Self::ThisProcess => Ok(pidfd.try_reap()?.and_then(ExitStatus::from_wait_status)),
            Self::Forkserver(link) => {
                if !pidfd.has_exited()? {
                    return Ok(None);
                }
                Self::from_server(link, pidfd, pid)
            }
        }
    }

    /// Waits for the child to exit and reaps it.
    pub(crate) fn reap_blocking(&self, pidfd: &Pidfd, pid: Pid) -> io::Result<ExitStatus> {
        match self {
            Self::ThisProcess => ExitStatus::from_wait_status(pidfd.reap_blocking()?)
                .ok_or_else(|| io::Error::other("waitid reported no ending for an exited child")),
            Self::Forkserver(link) => loop {
                platform::poll(&[pidfd.as_fd()], PollFlags::POLLIN, None)?;
                if let Some(reaped) = Self::from_server(link, pidfd, pid)? {
                    return Ok(reaped);
                }
            },
        }
    }

    /// Asks the server for the status of a child that has exited. If the server is gone, its children were
    /// re-parented: to this process if it is a subreaper (PR_SET_CHILD_SUBREAPER, as the supervisor is), and
    /// then the child is ours to reap; otherwise its status is lost and the error says so.
    fn from_server(link: &ServerLink, pidfd: &Pidfd, pid: Pid) -> io::Result<Option<ExitStatus>> {
        let raw = u32::try_from(pid.as_raw()).map_err(|_| io::Error::other("a negative pid"))?;
        link.reap(raw).or_else(|lost| match pidfd.try_reap() {
            Ok(Some(reaped)) => Ok(ExitStatus::from_wait_status(reaped)),
            _ => Err(lost),
        })
    }
}

impl Process {
    /// Asks this process's forkserver to fork a child that runs `entry` (declared with
    /// [`entry!`](crate::entry!)) on `args`; the entry's return value comes back on [`Child::join`].
    ///
    /// The forkserver is a single-threaded copy of this binary, started by spawn the first time it is
    /// needed (one per process; several threads may start children at once). A start costs about one fork,
    /// far less than a spawn, and unlike [`fork`](Self::fork) it is safe in a multi-threaded or async program:
    /// the process that forks has one thread. Arguments travel as for spawn (postcard bytes, and the fds of the
    /// herd handles inside them, passed by SCM_RIGHTS).
    ///
    /// The handle works as for any child (join, signals through the pidfd, `AsFd` for polling, drop kills
    /// and reaps), but the child is the forkserver's: its `ppid` is the forkserver, which keeps it as a zombie
    /// until this handle collects the exit status, so the pid stays reserved until then. The child starts
    /// with the environment, working directory and standard streams the forkserver had when it started.
    ///
    /// [`name`](Self::name) and [`daemon`](Self::daemon) apply. A daemon child dies with the forkserver,
    /// which dies with the requesting process: forkserver children of a daemon builder die with the process
    /// that asked for them.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// herd_ipc::entry! {
    ///     fn triple(x: u32) -> u32 { 3 * x }
    /// }
    ///
    /// fn main() -> Result<(), Box<dyn std::error::Error>> {
    ///     // A thread: fork would be refused here; the forkserver is not.
    ///     let helper = std::thread::spawn(|| std::thread::sleep(Duration::from_millis(200)));
    ///     let child = herd_ipc::Process::new().daemon(true).forkserver(triple, &14)?;
    ///     assert_eq!(child.join_timeout(Duration::from_secs(10))?, 42);
    ///     assert!(herd_ipc::forkserver_pid().is_some());
    ///     helper.join().unwrap();
    ///     Ok(())
    /// }
    /// ```
    pub fn forkserver<E: Entry>(
        self,
        entry: E,
        args: &E::Args,
    ) -> Result<Child<E::Output>, StartError> {
        let _ = entry;
        self.forkserver_named(E::NAME, args)
    }

    /// Like [`forkserver`](Self::forkserver) for an entry named at run time (see
    /// [`spawn_named`](Self::spawn_named)).
    pub fn forkserver_named<A, T>(self, entry: &str, args: &A) -> Result<Child<T>, StartError>
    where
        A: Serialize + ?Sized,
        T: DeserializeOwned,
    {
        Self::check_reapable()?;
        let encoded = Self::encode_for(entry, args)?;
        if encoded.fds.len() >= MAX_FDS_PER_MESSAGE {
            return Err(StartError::Os {
                action: "pass the arguments to the forkserver",
                source: io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "the arguments for entry {entry:?} hold {} fds; one request carries at most {}",
                        encoded.fds.len(),
                        MAX_FDS_PER_MESSAGE - 1
                    ),
                ),
            });
        }
        let name = self.child_name();
        let (result_read, result_write) =
            Socket::pair().map_err(StartError::os("create the result channel"))?;
        let request = Request::Fork {
            entry: entry.to_owned(),
            name: name.clone(),
            parent: (Pid::this().as_raw(), platform::current_name().to_owned()),
            args: encoded.bytes,
            options: ForkOptions::of(&self)?,
        };
        let mut fds: Vec<BorrowedFd<'_>> = vec![result_write.as_fd()];
        fds.extend(encoded.fds.iter().map(OwnedFd::as_fd));
        let link = ServerLink::get()?;
        let (pid, pidfd) = link.fork(&request, &fds)?;
        drop(fds);
        drop(result_write);
        let shared = ChildShared::register_with(
            Pid::from_raw(pid as i32),
            name,
            pidfd,
            Reaper::Forkserver(link),
        );
        Ok(Child::new(
            shared,
            ResultReader::new(result_read),
            self.is_daemon(),
        ))
    }
}

// ---------------------------------------------------------------------------------------------------------
// Server side.

/// The forkserver's state. Every field is dropped in a forked child before its entry runs, so the child
/// holds none of the server's fds.
struct Server {
    control: Option<Socket>,
    parent: Option<Pidfd>,
    children: HashMap<u32, Pidfd>,
}

/// Runs the forkserver (called before `main`, from the start-up hook) with `args` = `<channel fd> <parent
/// pid>`, then exits.
pub(crate) fn serve_and_exit(args: &[&[u8]]) -> ! {
    let code = match serve(args) {
        Ok(()) => 0,
        // The requesting process went away in the middle of an exchange: nobody to tell.
        Err(err)
            if matches!(
                err.kind(),
                io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
            ) =>
        {
            0
        }
        Err(err) => {
            eprintln!("herd-ipc forkserver (pid {}): {err}", std::process::id());
            EXIT_FAILED
        }
    };
    std::process::exit(code)
}

fn number<T: std::str::FromStr>(arg: Option<&&[u8]>, what: &str) -> io::Result<T> {
    arg.and_then(|arg| std::str::from_utf8(arg).ok())
        .and_then(|text| text.parse().ok())
        .ok_or_else(|| io::Error::other(format!("{FORKSERVER_FLAG} needs {what}")))
}

fn serve(args: &[&[u8]]) -> io::Result<()> {
    let control = Socket::from(platform::adopt_inherited_fd(number(
        args.first(),
        "a channel fd",
    )?)?);
    let parent_pid: i32 = number(args.get(1), "the parent's pid")?;
    platform::forkserver_signals();
    platform::set_current_name("ForkServer".to_owned());
    let Some(parent) = Pidfd::open_parent(parent_pid)? else {
        // The requesting process is already gone: nobody to serve.
        return Ok(());
    };
    write_frame(
        &control,
        &Reply::Ready {
            pid: std::process::id(),
        },
        &[],
    )?;
    let mut server = Server {
        control: Some(control),
        parent: Some(parent),
        children: HashMap::new(),
    };
    server.run()
}

impl Server {
    fn control(&self) -> io::Result<&Socket> {
        self.control
            .as_ref()
            .ok_or_else(|| io::Error::other("the forkserver's channel is closed"))
    }

    fn run(&mut self) -> io::Result<()> {
        loop {
            let ready = {
                let (Some(control), Some(parent)) = (&self.control, &self.parent) else {
                    return Ok(());
                };
                platform::poll(&[control.as_fd(), parent.as_fd()], PollFlags::POLLIN, None)?
            };
            if ready.as_deref().is_some_and(|ready| ready.contains(&1)) {
                // The requesting process has exited: nobody will ask for anything again.
                return Ok(());
            }
            let Some((request, fds)) = read_frame::<Request>(self.control()?)? else {
                return Ok(());
            };
            let (reply, pidfd) = match request {
                Request::Fork {
                    entry,
                    name,
                    parent,
                    args,
                    options,
                } => match self.fork(&entry, name, parent, &args, options, fds) {
                    Ok(pid) => (Reply::Forked { pid }, self.children.get(&pid)),
                    Err(err) => (
                        Reply::Refused {
                            reason: err.to_string(),
                        },
                        None,
                    ),
                },
                Request::Reap { pid } => (self.reap(pid), None),
            };
            let fds: Vec<BorrowedFd<'_>> = pidfd.map(AsFd::as_fd).into_iter().collect();
            write_frame(self.control()?, &reply, &fds)?;
        }
    }

    /// Forks a child running `entry`; returns its pid, its pidfd kept in `children`.
    fn fork(
        &mut self,
        entry: &str,
        name: String,
        parent: (i32, String),
        args: &[u8],
        options: ForkOptions,
        fds: Vec<OwnedFd>,
    ) -> io::Result<u32> {
        let mut fds = fds.into_iter();
        let result_write = fds
            .next()
            .map(Socket::from)
            .ok_or_else(|| io::Error::other("a fork request came without its result channel"))?;
        let arg_fds: Vec<OwnedFd> = fds.collect();
        let permit = ForkPermit::single_threaded().map_err(|threads| {
            io::Error::other(format!(
                "the forkserver has {threads:?} threads, so it cannot fork safely"
            ))
        })?;
        let process_group = options.process_group;
        let pid = platform::fork_and_run(&permit, options.setup(), || {
            // The child: none of the server's fds stay open in it.
            self.control = None;
            self.parent = None;
            self.children.clear();
            platform::child_signals();
            platform::set_current_name(name);
            platform::set_parent(parent.0, parent.1);
            let (outcome, fds) = entry::run_by_name(entry, args, arg_fds);
            let _ = io::stdout().flush();
            outcome.send(&result_write, &fds)
        })?;
        // The parent dropped its copies of the result channel and argument fds with the closure.
        if process_group {
            // As the child does first thing: whichever runs first makes the group.
            let _ = nix::unistd::setpgid(pid, pid);
        }
        let pidfd = Pidfd::open_child(pid)?;
        let pid = u32::try_from(pid.as_raw())
            .map_err(|_| io::Error::other("fork returned a negative pid"))?;
        self.children.insert(pid, pidfd);
        Ok(pid)
    }

    fn reap(&mut self, pid: u32) -> Reply {
        let Some(pidfd) = self.children.get(&pid) else {
            return Reply::Refused {
                reason: format!("process {pid} is not a running child of this forkserver"),
            };
        };
        match pidfd.try_reap() {
            Ok(Some(reaped)) => {
                self.children.remove(&pid);
                Reply::Reaped {
                    status: ExitStatus::from_wait_status(reaped).map(WireStatus::from),
                }
            }
            Ok(None) => Reply::Reaped { status: None },
            Err(err) => Reply::Refused {
                reason: format!("waiting for process {pid} failed: {err}"),
            },
        }
    }
}
