//! Starting and stopping the server process. The owner makes the private directory and binds the
//! listener itself (so the address is known and connectable at once: connections wait in the
//! backlog until the server accepts), then spawns the server as a daemon child (re-executing this
//! binary through the Process API, so the server inherits no fds but the listener) and hands it
//! the listener. The server never outlives its owner: it is a daemon whose parent-death signal is
//! SIGTERM (sent when the owner dies, SIGKILL included), and on that signal it removes the private
//! directory and exits.

use std::fs::{self, DirBuilder, Permissions};
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use super::address::{Address, Authkey};
use super::error::ManagerError;
use super::server::Server;
use super::stream::Listener;
use crate::codec;
use crate::process::{Child, JoinTimeoutError, Pid, Process};

/// How long a server may take to exit after a shutdown request before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// The listening socket handed to the server child (its fd travels through the spawn).
#[derive(Debug)]
struct InheritedListener {
    tcp: bool,
    fd: OwnedFd,
}

impl Serialize for InheritedListener {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        struct Fd<'a>(&'a OwnedFd);
        impl Serialize for Fd<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                codec::serialize_fd(self.0.as_fd(), s)
            }
        }
        (self.tcp, Fd(&self.fd)).serialize(s)
    }
}

impl<'de> Deserialize<'de> for InheritedListener {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Fd(OwnedFd);
        impl<'de> Deserialize<'de> for Fd {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                codec::deserialize_fd(d).map(Fd)
            }
        }
        let (tcp, Fd(fd)) = <(bool, Fd)>::deserialize(d)?;
        Ok(InheritedListener { tcp, fd })
    }
}

/// What the server child is given.
#[derive(Debug, Serialize, Deserialize)]
struct ServerArgs {
    listener: InheritedListener,
    /// The private directory holding the Unix socket, removed when the server is told to die.
    dir: Option<PathBuf>,
    authkey: Authkey,
    owner: Pid,
    /// No log lines on stderr (`ManagerBuilder::quiet`).
    quiet: bool,
}

crate::entry! {
    /// The manager server process: serves the listener it was handed until told to shut down.
    fn manager_server(args: ServerArgs) -> Result<(), String> {
        run_server(args)
    }
}

fn run_server(args: ServerArgs) -> Result<(), String> {
    // The server was started with SIGTERM as its parent-death signal (SIGKILL would leave the
    // socket directory behind): the thread below turns it into cleanup and exit. Until the
    // handler is registered, SIGTERM's default action ends the server without cleanup.
    // SIGINT is for the terminal's foreground program (the owner): the server waits for its
    // owner's shutdown or death rather than dying first and failing the owner's calls.
    if args.quiet {
        super::server::silence_log();
    }
    super::server::log_panics();
    let mut signals = Signals::new([SIGTERM, SIGHUP, SIGINT])
        .map_err(|e| format!("cannot install signal handlers: {e}"))?;
    // A SIGTERM from the owner's death cannot have been missed (it would have ended us), but
    // this also catches a SIGTERM disposition inherited as ignored: our parent is then someone
    // else. Clean up and leave.
    if Pid::parent() != args.owner {
        cleanup(args.dir.as_deref());
        return Err("the owner died before the server started".into());
    }
    let dir = args.dir.clone();
    std::thread::Builder::new()
        .name("herd-mgr-signals".into())
        .spawn(move || {
            if signals.forever().any(|signal| signal != SIGINT) {
                cleanup(dir.as_deref());
                std::process::exit(0);
            }
        })
        .map_err(|e| format!("cannot start the signal thread: {e}"))?;
    let listener = match args.listener.tcp {
        true => Listener::Tcp(TcpListener::from(args.listener.fd)),
        false => Listener::Unix(UnixListener::from(args.listener.fd)),
    };
    let served = Server::new(listener, args.authkey)
        .and_then(Server::serve)
        .map_err(|e| format!("server failed: {e}"));
    cleanup(args.dir.as_deref());
    served
}

fn cleanup(dir: Option<&Path>) {
    if let Some(dir) = dir {
        let _ = fs::remove_dir_all(dir);
    }
}

/// The owner's handle on its server process.
#[derive(Debug)]
pub(crate) struct ServerHandle {
    address: Address,
    dir: Option<PathBuf>,
    child: Child<Result<(), String>>,
}

impl ServerHandle {
    pub(crate) fn address(&self) -> &Address {
        &self.address
    }

    pub(crate) fn pid(&self) -> Pid {
        self.child.pid()
    }

    /// Waits for the server to exit after a shutdown request (killing it if it does not), and
    /// removes its directory. Reports a server that had failed or died on its own.
    pub(crate) fn stop(self) -> Result<(), ManagerError> {
        let ServerHandle { child, dir, .. } = self;
        let outcome = match child.join_timeout(STOP_TIMEOUT) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(message)) => Err(ManagerError::Server(message)),
            Err(JoinTimeoutError::Timeout(child)) => {
                let pid = child.pid();
                // Dropping the handle kills and reaps the child.
                drop(child);
                Err(ManagerError::Server(format!(
                    "server (pid {pid}) did not stop within {STOP_TIMEOUT:?}: killed"
                )))
            }
            Err(e) => Err(ManagerError::Server(e.to_string())),
        };
        cleanup(dir.as_deref());
        outcome
    }
}

fn io_error(context: String) -> impl FnOnce(std::io::Error) -> ManagerError {
    move |source| ManagerError::Io { context, source }
}

/// A fresh directory only this user can enter, for the socket.
fn private_dir() -> Result<PathBuf, ManagerError> {
    let mut suffix = [0u8; 8];
    getrandom::getrandom(&mut suffix).map_err(|e| ManagerError::Random(e.to_string()))?;
    let suffix: String = suffix.iter().map(|b| format!("{b:02x}")).collect();
    let dir = std::env::temp_dir().join(format!("herd-manager-{}-{suffix}", std::process::id()));
    DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .map_err(io_error(format!(
            "cannot create manager directory {}",
            dir.display()
        )))?;
    Ok(dir)
}

/// Binds an owner-only Unix socket in a fresh private directory.
fn bind_private_unix() -> Result<(InheritedListener, Address, PathBuf), ManagerError> {
    let dir = private_dir()?;
    let path = dir.join("socket");
    let bound = UnixListener::bind(&path)
        .map_err(io_error(format!(
            "cannot listen on unix:{}",
            path.display()
        )))
        .and_then(|listener| {
            fs::set_permissions(&path, Permissions::from_mode(0o600))
                .map_err(io_error(format!("cannot restrict {}", path.display())))?;
            Ok(listener)
        });
    match bound {
        Ok(listener) => Ok((
            InheritedListener {
                tcp: false,
                fd: listener.into(),
            },
            Address::Unix(path),
            dir,
        )),
        Err(e) => {
            cleanup(Some(&dir));
            Err(e)
        }
    }
}

/// Binds the listener (TCP at `tcp`, else a private Unix socket) and starts the server on it.
pub(crate) fn start_server(
    tcp: Option<SocketAddr>,
    authkey: Authkey,
    quiet: bool,
) -> Result<ServerHandle, ManagerError> {
    let (listener, address, dir) = match tcp {
        Some(addr) => {
            let listener = TcpListener::bind(addr)
                .map_err(io_error(format!("cannot listen on tcp:{addr}")))?;
            let address = Address::Tcp(
                listener
                    .local_addr()
                    .map_err(io_error(format!("cannot read the address of tcp:{addr}")))?,
            );
            let listener = InheritedListener {
                tcp: true,
                fd: listener.into(),
            };
            (listener, address, None)
        }
        None => {
            let (listener, address, dir) = bind_private_unix()?;
            (listener, address, Some(dir))
        }
    };
    let args = ServerArgs {
        listener,
        dir: dir.clone(),
        authkey,
        owner: Pid::this(),
        quiet,
    };
    let started = Process::new()
        .name("herd-manager")
        .daemon(true)
        .die_with_parent(libc::SIGTERM)
        .spawn(manager_server, &args);
    // Our copy of the listener closes here: from now on only the server holds it.
    drop(args);
    match started {
        Ok(child) => Ok(ServerHandle {
            address,
            dir,
            child,
        }),
        Err(e) => {
            cleanup(dir.as_deref());
            Err(ManagerError::Server(format!(
                "cannot start the server process: {e}"
            )))
        }
    }
}
