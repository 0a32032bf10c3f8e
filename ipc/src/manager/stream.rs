//! `Stream` and `Listener`: one byte-stream type over the two transports (Unix socket, TCP), so
//! the framing, the handshake and the server loop are written once.

use std::io::{self, Read, Write};
use std::net::{IpAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::socket::{recv, MsgFlags};

use super::address::Address;

/// A connected byte stream over either transport.
#[derive(Debug)]
pub(crate) enum Stream {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Stream {
    /// Connects to a manager; TCP gets `TCP_NODELAY` because every call is a small request
    /// waiting for a small answer, which Nagle's algorithm would delay.
    pub(crate) fn connect(address: &Address, timeout: Duration) -> io::Result<Stream> {
        match address {
            Address::Unix(path) => UnixStream::connect(path).map(Stream::Unix),
            Address::Tcp(addr) => {
                let stream = TcpStream::connect_timeout(addr, timeout)?;
                stream.set_nodelay(true)?;
                Ok(Stream::Tcp(stream))
            }
        }
    }

    pub(crate) fn try_clone(&self) -> io::Result<Stream> {
        match self {
            Stream::Unix(s) => s.try_clone().map(Stream::Unix),
            Stream::Tcp(s) => s.try_clone().map(Stream::Tcp),
        }
    }

    pub(crate) fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Unix(s) => s.set_read_timeout(timeout),
            Stream::Tcp(s) => s.set_read_timeout(timeout),
        }
    }

    /// The server runs handshakes on non-blocking sockets and serves requests on blocking ones.
    /// Bounds both reads and writes by `timeout` (`None`: no bound).
    pub(crate) fn set_timeouts(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.set_read_timeout(timeout)?;
        self.set_write_timeout(timeout)
    }

    pub(crate) fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        match self {
            Stream::Unix(s) => s.set_nonblocking(nonblocking),
            Stream::Tcp(s) => s.set_nonblocking(nonblocking),
        }
    }

    pub(crate) fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Unix(s) => s.set_write_timeout(timeout),
            Stream::Tcp(s) => s.set_write_timeout(timeout),
        }
    }

    /// Whether the peer has closed its end, without consuming anything: a server thread blocked
    /// on a lock or queue for a client asks this so a dead client does not keep it waiting.
    pub(crate) fn is_peer_closed(&self) -> bool {
        let mut probe = [0u8; 1];
        match recv(
            self.as_fd().as_raw_fd(),
            &mut probe,
            MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT,
        ) {
            Ok(0) => true,
            Ok(_) => false,
            Err(Errno::EAGAIN | Errno::EINTR) => false,
            Err(_) => true,
        }
    }
}

impl AsFd for Stream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Stream::Unix(s) => s.as_fd(),
            Stream::Tcp(s) => s.as_fd(),
        }
    }
}

impl From<Stream> for OwnedFd {
    fn from(stream: Stream) -> OwnedFd {
        match stream {
            Stream::Unix(s) => s.into(),
            Stream::Tcp(s) => s.into(),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => s.read(buf),
            Stream::Tcp(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => s.write(buf),
            Stream::Tcp(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Unix(s) => s.flush(),
            Stream::Tcp(s) => s.flush(),
        }
    }
}

/// Who is on the other end of an accepted connection: what the log says, and the key its share
/// of the handshake slots is counted under.
#[derive(Debug, Clone)]
pub(crate) struct Peer {
    pub(crate) key: PeerKey,
    pub(crate) text: String,
}

/// The unit a peer's handshake slots are counted in: its IP address over TCP (ports are free to
/// pick), its process over a Unix socket. The socket is private to its user, so the uid tells
/// every peer apart from nobody: a program whose many processes connect at once must not be
/// refused as one peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum PeerKey {
    Ip(IpAddr),
    Pid(i32),
    Unknown,
}

/// A listening socket over either transport.
#[derive(Debug)]
pub(crate) enum Listener {
    Unix(UnixListener),
    Tcp(TcpListener),
}

impl Listener {
    #[cfg(test)]
    pub(crate) fn bind(address: &Address) -> io::Result<Listener> {
        match address {
            Address::Unix(path) => UnixListener::bind(path).map(Listener::Unix),
            Address::Tcp(addr) => TcpListener::bind(addr).map(Listener::Tcp),
        }
    }

    /// The address clients use; for TCP port 0 this is the port the kernel chose.
    pub(crate) fn local_address(&self) -> io::Result<Address> {
        match self {
            Listener::Unix(l) => {
                let addr = l.local_addr()?;
                let path = addr
                    .as_pathname()
                    .ok_or_else(|| io::Error::other("unix listener has no path"))?;
                Ok(Address::Unix(path.to_path_buf()))
            }
            Listener::Tcp(l) => l.local_addr().map(Address::Tcp),
        }
    }

    /// The server polls its listener along with the connections in the handshake.
    pub(crate) fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        match self {
            Listener::Unix(l) => l.set_nonblocking(nonblocking),
            Listener::Tcp(l) => l.set_nonblocking(nonblocking),
        }
    }

    /// Accepts one connection and describes its peer. The stream is blocking whatever the
    /// listener is (accept4 does not pass O_NONBLOCK on).
    pub(crate) fn accept(&self) -> io::Result<(Stream, Peer)> {
        match self {
            Listener::Unix(l) => {
                let (stream, _) = l.accept()?;
                let peer = match nix::sys::socket::getsockopt(
                    &stream,
                    nix::sys::socket::sockopt::PeerCredentials,
                ) {
                    Ok(cred) => Peer {
                        key: PeerKey::Pid(cred.pid()),
                        text: format!("unix peer pid {} uid {}", cred.pid(), cred.uid()),
                    },
                    Err(_) => Peer {
                        key: PeerKey::Unknown,
                        text: "unix peer".to_owned(),
                    },
                };
                Ok((Stream::Unix(stream), peer))
            }
            Listener::Tcp(l) => {
                let (stream, addr) = l.accept()?;
                stream.set_nodelay(true)?;
                let peer = Peer {
                    key: PeerKey::Ip(addr.ip()),
                    text: format!("tcp peer {addr}"),
                };
                Ok((Stream::Tcp(stream), peer))
            }
        }
    }
}

impl AsFd for Listener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Listener::Unix(l) => l.as_fd(),
            Listener::Tcp(l) => l.as_fd(),
        }
    }
}
