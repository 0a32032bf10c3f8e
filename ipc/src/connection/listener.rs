//! `Listener` and `Client`: the two sides of a connection between unrelated processes. Both run
//! the Manager's authkey handshake (HMAC-SHA256 both ways, one deadline for the whole exchange)
//! on the raw stream, then hand the socket to a duplex [`Pipe`] end.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::{SocketAddr as UnixSocketAddr, UnixListener, UnixStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout};

use crate::manager::auth::{self, AuthError, ServerChallenge, ANSWER_LEN};
use crate::manager::handshake::Limits;
use crate::manager::stream::Stream;
use crate::manager::Authkey;
use crate::process::Pid;
use crate::wait::Waitable;
use crate::Pipe;

use super::address::Address;
use super::error::{AcceptError, BindError, ConnectError};

/// The whole handshake, on either side, must fit in the Manager's handshake deadline.
fn handshake_deadline() -> Duration {
    Limits::default().deadline
}

/// A listening socket that hands out authenticated [`Pipe`] ends, as
/// `multiprocessing.connection.Listener`.
///
/// Each [`accept`](Listener::accept) waits for a client, runs the handshake (the client must
/// prove it knows the authkey, then the listener proves it too) and returns a duplex end; the
/// message type is chosen per connection. The listener is [`Waitable`], so
/// [`wait`](crate::wait) can watch it next to Pipe ends and children: it is ready when a client
/// is waiting to be accepted. Dropping it in the process that bound it removes its filesystem
/// socket (if the file is still that socket).
#[derive(Debug)]
pub struct Listener {
    socket: ListenSocket,
    address: Address,
    authkey: Authkey,
    /// The socket file to remove on drop: its path, its inode, and the process that bound it (a
    /// forked child dropping its copy must not remove the parent's socket).
    owned_path: Option<(PathBuf, u64, Pid)>,
}

#[derive(Debug)]
enum ListenSocket {
    Unix(UnixListener),
    Tcp(TcpListener),
}

impl Listener {
    /// Listens on `address`, accepting only clients that know `authkey`.
    ///
    /// A TCP port 0 or an abstract name is resolved by the kernel; [`Listener::address`] tells
    /// the address clients should use. Every descriptor is close-on-exec.
    pub fn bind(address: Address, authkey: Authkey) -> Result<Listener, BindError> {
        let failed = |source: io::Error| {
            if source.kind() == ErrorKind::AddrInUse {
                BindError::InUse {
                    address: address.clone(),
                }
            } else {
                BindError::Io {
                    address: address.clone(),
                    source,
                }
            }
        };
        let (socket, owned_path) = match &address {
            Address::Unix(path) => {
                let listener = UnixListener::bind(path).map_err(failed)?;
                let inode = std::fs::metadata(path).map_err(failed)?.ino();
                (
                    ListenSocket::Unix(listener),
                    Some((path.clone(), inode, Pid::this())),
                )
            }
            Address::Abstract(name) => {
                let addr = UnixSocketAddr::from_abstract_name(name).map_err(failed)?;
                let listener = UnixListener::bind_addr(&addr).map_err(failed)?;
                (ListenSocket::Unix(listener), None)
            }
            Address::Tcp(addr) => (
                ListenSocket::Tcp(TcpListener::bind(addr).map_err(failed)?),
                None,
            ),
        };
        // Non-blocking, so a client that another process (sharing this listener) accepted first
        // sends this accept back to waiting instead of blocking it past its timeout.
        let nonblocking = match &socket {
            ListenSocket::Unix(l) => l.set_nonblocking(true),
            ListenSocket::Tcp(l) => l.set_nonblocking(true),
        };
        nonblocking.map_err(failed)?;
        let address = match (&socket, &address) {
            (ListenSocket::Tcp(l), _) => Address::Tcp(l.local_addr().map_err(failed)?),
            (_, other) => other.clone(),
        };
        Ok(Listener {
            socket,
            address,
            authkey,
            owned_path,
        })
    }

    /// The address clients connect to; for TCP, with the port the kernel chose.
    pub fn address(&self) -> &Address {
        &self.address
    }

    /// Waits for a client and authenticates it; returns its end of the connection.
    ///
    /// A client with the wrong key gives [`AcceptError::Authentication`] (it is told it was
    /// refused): a server loop logs it and accepts again.
    pub fn accept<T>(&self) -> Result<Pipe<T>, AcceptError> {
        self.accept_until(None)
    }

    /// As [`accept`](Listener::accept), giving up with [`AcceptError::Timeout`] if no client
    /// connects within `timeout` (`Duration::MAX`: no deadline). The handshake that follows has
    /// its own deadline.
    pub fn accept_timeout<T>(&self, timeout: Duration) -> Result<Pipe<T>, AcceptError> {
        self.accept_until(Some(Instant::now().checked_add(timeout)))
    }

    /// `deadline`: `None` or `Some(None)` (past what the clock holds) for no deadline.
    fn accept_until<T>(&self, deadline: Option<Option<Instant>>) -> Result<Pipe<T>, AcceptError> {
        let deadline = deadline.flatten();
        let io_error = |source: io::Error| AcceptError::Io {
            address: self.address.clone(),
            source,
        };
        let (mut stream, peer) = loop {
            let accepted = match &self.socket {
                ListenSocket::Unix(l) => l.accept().map(|(s, _)| {
                    let peer = unix_peer(&s);
                    (Stream::Unix(s), peer)
                }),
                ListenSocket::Tcp(l) => l.accept().map(|(s, addr)| {
                    // Small request-answer messages: Nagle's algorithm would only delay them.
                    let _ = s.set_nodelay(true);
                    (Stream::Tcp(s), format!("tcp {addr}"))
                }),
            };
            match accepted {
                Ok(accepted) => break accepted,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                // The client gave up between connecting and being accepted: wait for the next.
                Err(e) if e.kind() == ErrorKind::ConnectionAborted => {}
                Err(e) => return Err(io_error(e)),
            }
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if left == Some(Duration::ZERO) {
                return Err(AcceptError::Timeout {
                    address: self.address.clone(),
                });
            }
            wait_readable(self.as_fd(), left).map_err(io_error)?;
        };
        // Accepted sockets are blocking (accept4 does not pass O_NONBLOCK on); the handshake is
        // bounded by per-call socket timeouts.
        match serve_handshake(&mut stream, &self.authkey) {
            Ok(()) => {}
            Err(AuthError::WrongKey) => {
                return Err(AcceptError::Authentication {
                    address: self.address.clone(),
                    peer,
                    reason: "it does not know the authkey".into(),
                })
            }
            Err(e) => {
                return Err(AcceptError::Handshake {
                    address: self.address.clone(),
                    peer,
                    reason: handshake_reason(&e),
                })
            }
        }
        into_pipe(stream).map_err(io_error)
    }
}

impl AsFd for Listener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match &self.socket {
            ListenSocket::Unix(l) => l.as_fd(),
            ListenSocket::Tcp(l) => l.as_fd(),
        }
    }
}

/// Ready when a client is waiting to be accepted.
impl Waitable for Listener {
    fn wait_fd(&self) -> BorrowedFd<'_> {
        self.as_fd()
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Some((path, inode, pid)) = &self.owned_path {
            // Only the binding process removes the socket, and only if the file is still ours
            // (not one a later listener bound after someone removed ours).
            let ours = std::fs::symlink_metadata(path).is_ok_and(|m| m.ino() == *inode);
            if *pid == Pid::this() && ours {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

/// Connects to a [`Listener`], as `multiprocessing.connection.Client`.
#[derive(Debug, Clone, Copy)]
pub struct Client;

impl Client {
    /// Connects to the listener at `address`, proves it knows `authkey` and checks that the
    /// listener knows it too; returns this side's duplex end.
    ///
    /// The listener must accept within the handshake deadline (5 s), as a Manager must; a wrong
    /// key on either side is [`ConnectError::Authentication`].
    pub fn connect<T>(address: &Address, authkey: &Authkey) -> Result<Pipe<T>, ConnectError> {
        let deadline = handshake_deadline();
        let unreachable = |source: io::Error| ConnectError::Unreachable {
            address: address.clone(),
            source,
        };
        let mut stream = match address {
            Address::Unix(path) => Stream::Unix(UnixStream::connect(path).map_err(unreachable)?),
            Address::Abstract(name) => {
                let addr = UnixSocketAddr::from_abstract_name(name).map_err(unreachable)?;
                Stream::Unix(UnixStream::connect_addr(&addr).map_err(unreachable)?)
            }
            Address::Tcp(addr) => {
                let stream = TcpStream::connect_timeout(addr, deadline).map_err(unreachable)?;
                stream.set_nodelay(true).map_err(unreachable)?;
                Stream::Tcp(stream)
            }
        };
        let handshake_failed = |reason: String| ConnectError::Handshake {
            address: address.clone(),
            reason,
        };
        stream
            .set_timeouts(Some(deadline))
            .map_err(|e| handshake_failed(e.to_string()))?;
        match auth::authenticate_to_server(&mut stream, authkey) {
            Ok(()) => {}
            Err(AuthError::Refused) => {
                return Err(ConnectError::Authentication {
                    address: address.clone(),
                    reason: "the listener refused our authkey".into(),
                })
            }
            Err(AuthError::ServerNotAuthenticated) => {
                return Err(ConnectError::Authentication {
                    address: address.clone(),
                    reason: "the listener could not prove it knows the authkey".into(),
                })
            }
            Err(AuthError::Busy) => {
                return Err(handshake_failed(
                    "the listener closed the connection before greeting it".into(),
                ))
            }
            Err(AuthError::Io(e)) if is_timeout(&e) => {
                return Err(handshake_failed(format!(
                    "the listener did not complete the handshake within {deadline:?} \
                     (is it calling accept?)"
                )))
            }
            Err(e) => return Err(handshake_failed(handshake_reason(&e))),
        }
        into_pipe(stream).map_err(|e| handshake_failed(e.to_string()))
    }
}

/// Connects to the listener at `address`: see [`Client::connect`].
pub fn connect<T>(address: &Address, authkey: &Authkey) -> Result<Pipe<T>, ConnectError> {
    Client::connect(address, authkey)
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

fn handshake_reason(e: &AuthError) -> String {
    match e {
        AuthError::NotAManager => "the peer is not a herd connection (bad greeting)".into(),
        AuthError::Io(e) if is_timeout(e) => {
            format!(
                "it did not finish within the handshake deadline of {:?}",
                handshake_deadline()
            )
        }
        AuthError::Io(e) if e.kind() == ErrorKind::UnexpectedEof => {
            "the peer closed the connection during the handshake".into()
        }
        other => other.to_string(),
    }
}

fn unix_peer(stream: &UnixStream) -> String {
    match nix::sys::socket::getsockopt(stream, nix::sys::socket::sockopt::PeerCredentials) {
        Ok(cred) => format!("unix pid {} uid {}", cred.pid(), cred.uid()),
        Err(_) => "unix peer".to_owned(),
    }
}

/// Waits until `fd` is readable, or `left` passes (`None`: no limit).
fn wait_readable(fd: BorrowedFd<'_>, left: Option<Duration>) -> io::Result<()> {
    let timeout = match left {
        None => PollTimeout::NONE,
        // Capped at what poll takes; the caller loops until its deadline.
        Some(left) => PollTimeout::try_from(left.as_millis().clamp(1, i32::MAX as u128) as i32)
            .unwrap_or(PollTimeout::MAX),
    };
    let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
    match nix::poll::poll(&mut fds, timeout) {
        Ok(_) | Err(Errno::EINTR) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// The listener's side of the handshake, on a blocking socket: one deadline for the whole
/// exchange however slowly the client's bytes trickle in.
fn serve_handshake(stream: &mut Stream, key: &Authkey) -> Result<(), AuthError> {
    let deadline = Instant::now() + handshake_deadline();
    let challenge = ServerChallenge::new()?;
    write_all_by(stream, &challenge.greeting(), deadline)?;
    let mut answer = [0u8; ANSWER_LEN];
    read_exact_by(stream, &mut answer, deadline)?;
    match challenge.check(key, &answer) {
        Ok(reply) => write_all_by(stream, &reply, deadline).map_err(AuthError::Io),
        Err(e) => {
            // Best effort: the client learns it was refused rather than seeing a bare close.
            let _ = stream.write(&auth::REFUSAL);
            Err(e)
        }
    }
}

fn left_until(deadline: Instant) -> io::Result<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        Err(io::Error::new(
            ErrorKind::TimedOut,
            "handshake deadline passed",
        ))
    } else {
        Ok(left)
    }
}

fn read_exact_by(stream: &mut Stream, mut buf: &mut [u8], deadline: Instant) -> io::Result<()> {
    while !buf.is_empty() {
        stream.set_timeouts(Some(left_until(deadline)?))?;
        match stream.read(buf) {
            Ok(0) => return Err(ErrorKind::UnexpectedEof.into()),
            Ok(n) => buf = &mut buf[n..],
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn write_all_by(stream: &mut Stream, mut buf: &[u8], deadline: Instant) -> io::Result<()> {
    while !buf.is_empty() {
        stream.set_timeouts(Some(left_until(deadline)?))?;
        match stream.write(buf) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => buf = &buf[n..],
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The authenticated socket as a Pipe end: blocking, without the handshake's timeouts (the Pipe
/// bounds its own waits).
fn into_pipe<T>(stream: Stream) -> io::Result<Pipe<T>> {
    stream.set_timeouts(None)?;
    Ok(Pipe::from_connected(OwnedFd::from(stream)))
}
