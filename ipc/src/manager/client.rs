//! `Client`: calls to one manager over the calling thread's connection to it. Each thread has
//! one connection per manager (opened on first use, reopened in a forked child, which never talks
//! over its parent's socket), shared by all its proxies, as Python's proxies share one per
//! thread: calls from one thread reach the server in order, and the thread is the owner of the
//! locks it acquires (released by the server when the thread's connection closes: thread exit,
//! process exit or death). One request and one answer per call. Reads time out so a server that
//! stops answering becomes an error, not a hang; a server that dies closes the socket, which every
//! waiting call sees at once.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::{self, BufReader, BufWriter, ErrorKind, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::process::Pid;

use super::address::{Address, Authkey};
use super::auth::{self, AuthError};
use super::error::ManagerError;
use super::frame::{read_frame, write_frame, FrameError};
use super::protocol::{Request, Response, Wait};
use super::stream::Stream;

/// Connecting and the handshake must finish within this time.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest a server may take to answer beyond the time the operation itself may wait. It is
/// also the socket's read timeout, set once: an endless wait just reads again after it.
const ANSWER_GRACE: Duration = Duration::from_secs(30);
const IO_BUFFER: usize = 16 * 1024;
/// Pauses between attempts when the server is at its handshake limits: doubling from the first
/// to the second, each with up to as much again at random.
const BUSY_RETRY: (Duration, Duration) = (Duration::from_millis(5), Duration::from_millis(200));

/// Where a manager is and the key that opens it: what every proxy carries.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Endpoint {
    pub(crate) address: Address,
    pub(crate) authkey: Authkey,
}

#[derive(Debug)]
struct Connection {
    reader: BufReader<Stream>,
    writer: BufWriter<Stream>,
    /// The process that opened it: after a fork the child must not use it.
    pid: Pid,
    in_buf: Vec<u8>,
    out_buf: Vec<u8>,
}

thread_local! {
    /// This thread's connection to each manager it talks to.
    static CONNECTIONS: RefCell<HashMap<Endpoint, Connection>> = RefCell::new(HashMap::new());
}

/// A handle for calling one manager from whatever thread calls.
#[derive(Debug, Clone)]
pub(crate) struct Client {
    endpoint: Arc<Endpoint>,
}

impl Client {
    pub(crate) fn new(endpoint: Arc<Endpoint>) -> Client {
        Client { endpoint }
    }

    pub(crate) fn endpoint(&self) -> &Arc<Endpoint> {
        &self.endpoint
    }

    /// Opens this thread's connection now, so a wrong address or key shows up at once.
    pub(crate) fn connect_now(&self) -> Result<(), ManagerError> {
        self.with_connection(|_| Ok(()))
    }

    /// Closes this thread's connection (the server is going away: the fd need not linger).
    pub(crate) fn disconnect(&self) {
        // During thread exit the map may already be gone; then there is nothing to close.
        let _ =
            CONNECTIONS.try_with(|connections| connections.borrow_mut().remove(&*self.endpoint));
    }

    /// Sends one request and reads its answer. `wait` is how long the server may block on it.
    pub(crate) fn call(&self, request: &Request, wait: Wait) -> Result<Response, ManagerError> {
        let address = &self.endpoint.address;
        self.with_connection(|conn| match exchange(conn, request, wait) {
            Ok(Response::Error(e)) => Ok(Err(ManagerError::Remote(e))),
            Ok(response) => Ok(Ok(response)),
            // Refused before anything was sent: the connection is still in step.
            Err(Exchange::NotSent(e)) => Ok(Err(ManagerError::Codec {
                action: "send",
                what: "request",
                reason: e.to_string(),
            })),
            Err(Exchange::Broken(e)) => Err(lost(address, e, wait)),
        })?
    }

    /// Runs `body` on this thread's connection, opening it if there is none or if it was
    /// inherited through fork. An error from `body` drops the connection (it is out of step).
    fn with_connection<T>(
        &self,
        body: impl FnOnce(&mut Connection) -> Result<T, ManagerError>,
    ) -> Result<T, ManagerError> {
        let address = &self.endpoint.address;
        let thread_exiting = |_| ManagerError::ConnectionLost {
            address: address.clone(),
            reason: "this thread is exiting (its connections are closed)".into(),
        };
        CONNECTIONS
            .try_with(|connections| {
                let mut connections = connections.borrow_mut();
                let pid = Pid::this();
                let endpoint = &*self.endpoint;
                if connections.get(endpoint).is_some_and(|c| c.pid != pid) {
                    // Inherited through fork: close our copies of every manager's connection, so
                    // they stop keeping the parent's connections open; the parent's stay intact.
                    connections.retain(|_, c| c.pid == pid);
                }
                let conn = match connections.get_mut(endpoint) {
                    Some(conn) => conn,
                    None => connections
                        .entry(endpoint.clone())
                        .or_insert(open(endpoint)?),
                };
                let outcome = body(conn);
                if outcome.is_err() {
                    connections.remove(endpoint);
                }
                outcome
            })
            .map_err(thread_exiting)?
    }
}

/// A connection of its own, outside the per-thread ones: a process's reference connection
/// (see `refs`), whose closing releases what it held.
#[derive(Debug)]
pub(crate) struct Link {
    conn: Connection,
}

impl Link {
    pub(crate) fn open(endpoint: &Endpoint) -> Result<Link, ManagerError> {
        Ok(Link {
            conn: open(endpoint)?,
        })
    }

    /// Adopts a link opened by the parent just before a fork, in the child.
    pub(crate) fn adopt(&mut self) {
        self.conn.pid = Pid::this();
    }

    /// One request and its answer. An error other than the server's refusal leaves the link out
    /// of step: the caller must drop it.
    pub(crate) fn call(
        &mut self,
        address: &Address,
        request: &Request,
    ) -> Result<Response, ManagerError> {
        match exchange(&mut self.conn, request, Wait::No) {
            Ok(Response::Error(e)) => Err(ManagerError::Remote(e)),
            Ok(response) => Ok(response),
            Err(Exchange::NotSent(e)) => Err(ManagerError::Codec {
                action: "send",
                what: "request",
                reason: e.to_string(),
            }),
            Err(Exchange::Broken(e)) => Err(lost(address, e, Wait::No)),
        }
    }
}

/// How one request/answer exchange failed.
enum Exchange {
    /// The request could not be encoded or is too large: nothing went out.
    NotSent(FrameError),
    /// The connection is out of step or broken and must be dropped.
    Broken(FrameError),
}

fn exchange(conn: &mut Connection, request: &Request, wait: Wait) -> Result<Response, Exchange> {
    write_frame(&mut conn.writer, request, &mut conn.out_buf).map_err(|e| match e {
        FrameError::Encode(_) | FrameError::Oversized { .. } => Exchange::NotSent(e),
        e => Exchange::Broken(e),
    })?;
    conn.writer
        .flush()
        .map_err(|e| Exchange::Broken(FrameError::Io(e)))?;
    let deadline = match wait {
        Wait::No => Some(Instant::now()),
        Wait::Timeout(d) => Instant::now().checked_add(d),
        Wait::Forever => None,
    };
    loop {
        match read_frame(&mut conn.reader, &mut conn.in_buf) {
            // Idle means no byte of the answer yet: the server is still waiting on the operation.
            Err(FrameError::Idle) if deadline.is_none_or(|d| Instant::now() < d) => continue,
            outcome => return outcome.map_err(Exchange::Broken),
        }
    }
}

fn lost(address: &Address, e: FrameError, wait: Wait) -> ManagerError {
    let address = address.clone();
    match e {
        FrameError::Idle | FrameError::Stalled { .. } => ManagerError::NoAnswer {
            address,
            after: match wait {
                Wait::Timeout(d) => d.saturating_add(ANSWER_GRACE),
                _ => ANSWER_GRACE,
            },
        },
        FrameError::Decode(reason) => ManagerError::Codec {
            action: "decode",
            what: "the server's answer",
            reason,
        },
        FrameError::Closed => ManagerError::ConnectionLost {
            address,
            reason: "the server closed the connection (it stopped or died)".into(),
        },
        e => ManagerError::ConnectionLost {
            address,
            reason: e.to_string(),
        },
    }
}

/// A pause before trying again, between `pause` and twice that: clients refused together
/// should not all come back together.
fn jittered(pause: Duration) -> Duration {
    let mut byte = [0u8; 1];
    // Without randomness the pause is just not spread.
    let _ = getrandom::getrandom(&mut byte);
    pause + pause.mul_f64(f64::from(byte[0]) / 255.0)
}

fn open(endpoint: &Endpoint) -> Result<Connection, ManagerError> {
    let address = &endpoint.address;
    // A server closes connections over its handshake caps before greeting them (a burst of
    // processes connecting at once, or strangers holding the slots): try again, for as long as
    // connecting may take in all.
    let started = Instant::now();
    let mut pause = BUSY_RETRY.0;
    let stream = loop {
        match handshake(endpoint) {
            Ok(stream) => break stream,
            Err(Failure::Auth(AuthError::Busy)) if started.elapsed() + pause < CONNECT_TIMEOUT => {
                std::thread::sleep(jittered(pause));
                pause = (pause * 2).min(BUSY_RETRY.1);
            }
            Err(Failure::Connect(source)) => {
                return Err(ManagerError::Unreachable {
                    address: address.clone(),
                    source,
                })
            }
            Err(Failure::Auth(e)) => return Err(handshake_error(address, e)),
        }
    };
    // A write that cannot proceed for CONNECT_TIMEOUT means the server is stuck.
    stream
        .set_read_timeout(Some(ANSWER_GRACE))
        .map_err(|e| io_lost(address, e))?;
    let reader_half = stream.try_clone().map_err(|e| io_lost(address, e))?;
    Ok(Connection {
        reader: BufReader::with_capacity(IO_BUFFER, reader_half),
        writer: BufWriter::with_capacity(IO_BUFFER, stream),
        pid: Pid::this(),
        in_buf: Vec::new(),
        out_buf: Vec::new(),
    })
}

/// Why one attempt at opening a connection failed.
enum Failure {
    /// The server could not be reached.
    Connect(io::Error),
    /// It was reached, but the handshake failed.
    Auth(AuthError),
}

/// One attempt: connect and authenticate both ways.
fn handshake(endpoint: &Endpoint) -> Result<Stream, Failure> {
    let mut stream =
        Stream::connect(&endpoint.address, CONNECT_TIMEOUT).map_err(Failure::Connect)?;
    let authenticate = |stream: &mut Stream| -> Result<(), AuthError> {
        stream.set_read_timeout(Some(CONNECT_TIMEOUT))?;
        stream.set_write_timeout(Some(CONNECT_TIMEOUT))?;
        auth::authenticate_to_server(stream, &endpoint.authkey)
    };
    authenticate(&mut stream).map_err(Failure::Auth)?;
    Ok(stream)
}

fn handshake_error(address: &Address, e: AuthError) -> ManagerError {
    match e {
        AuthError::Refused => ManagerError::AuthRefused {
            address: address.clone(),
        },
        AuthError::ServerNotAuthenticated => ManagerError::ServerNotAuthenticated {
            address: address.clone(),
        },
        AuthError::Io(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
            ManagerError::NoAnswer {
                address: address.clone(),
                after: CONNECT_TIMEOUT,
            }
        }
        AuthError::Busy => ManagerError::ConnectionLost {
            address: address.clone(),
            reason: format!("during the handshake: {e}; tried for {CONNECT_TIMEOUT:?}"),
        },
        e => ManagerError::ConnectionLost {
            address: address.clone(),
            reason: format!("during the handshake: {e}"),
        },
    }
}

fn io_lost(address: &Address, e: io::Error) -> ManagerError {
    ManagerError::ConnectionLost {
        address: address.clone(),
        reason: e.to_string(),
    }
}
