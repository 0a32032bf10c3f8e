//! `Client`: one authenticated connection to a manager, opened on first use and reopened in a
//! forked child (a child never talks over its parent's socket), with one request and one answer
//! per call. Reads time out so a server that stops answering becomes an error, not a hang; a
//! server that dies closes the socket, which every waiting call sees at once.

use std::io::{self, BufReader, BufWriter, ErrorKind, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::address::{Address, Authkey};
use super::auth::{self, AuthError};
use super::error::ManagerError;
use super::frame::{read_frame, write_frame, FrameError};
use super::protocol::{Request, Response, Wait};
use super::stream::Stream;

/// Connecting and the handshake must finish within this time.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest a server may take to answer beyond the time the operation itself may wait.
const ANSWER_GRACE: Duration = Duration::from_secs(30);
const IO_BUFFER: usize = 16 * 1024;

/// Where a manager is and the key that opens it: what every proxy carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Endpoint {
    pub(crate) address: Address,
    pub(crate) authkey: Authkey,
}

#[derive(Debug)]
struct Connection {
    reader: BufReader<Stream>,
    writer: BufWriter<Stream>,
    /// The process that opened it: after a fork the child must not use it.
    pid: u32,
    read_timeout: Option<Duration>,
    in_buf: Vec<u8>,
    out_buf: Vec<u8>,
}

/// A lazily opened, thread-safe connection to one manager.
#[derive(Debug)]
pub(crate) struct Client {
    endpoint: Arc<Endpoint>,
    connection: Mutex<Option<Connection>>,
}

impl Client {
    pub(crate) fn new(endpoint: Arc<Endpoint>) -> Client {
        Client {
            endpoint,
            connection: Mutex::new(None),
        }
    }

    pub(crate) fn endpoint(&self) -> &Arc<Endpoint> {
        &self.endpoint
    }

    /// Opens the connection now, so a wrong address or key shows up at once.
    pub(crate) fn connect_now(&self) -> Result<(), ManagerError> {
        let mut slot = self.connection.lock().unwrap_or_else(|p| p.into_inner());
        self.usable(&mut slot)?;
        Ok(())
    }

    /// Sends one request and reads its answer. `wait` is how long the server may block on it.
    pub(crate) fn call(&self, request: &Request, wait: Wait) -> Result<Response, ManagerError> {
        let mut slot = self.connection.lock().unwrap_or_else(|p| p.into_inner());
        let conn = self.usable(&mut slot)?;
        let read_timeout = match wait {
            Wait::No => Some(ANSWER_GRACE),
            Wait::Timeout(d) => Some(d.saturating_add(ANSWER_GRACE)),
            Wait::Forever => None,
        };
        match exchange(conn, request, read_timeout) {
            Ok(Response::Error(e)) => Err(ManagerError::Remote(e)),
            Ok(response) => Ok(response),
            // Refused before anything was sent: the connection is still in step.
            Err(Exchange::NotSent(e)) => Err(ManagerError::Codec {
                action: "send",
                what: "request",
                reason: e.to_string(),
            }),
            Err(Exchange::Broken(e)) => {
                *slot = None;
                Err(lost(&self.endpoint.address, e, read_timeout))
            }
        }
    }

    /// The open connection, opening it if there is none or if it was inherited through fork.
    fn usable<'a>(
        &self,
        slot: &'a mut Option<Connection>,
    ) -> Result<&'a mut Connection, ManagerError> {
        let pid = std::process::id();
        if slot.as_ref().is_some_and(|c| c.pid != pid) {
            // Inherited from the parent: closing our copy of the fd leaves the parent's intact.
            *slot = None;
        }
        if slot.is_none() {
            *slot = Some(open(&self.endpoint)?);
        }
        match slot {
            Some(conn) => Ok(conn),
            None => unreachable!("the slot was just filled"),
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

fn exchange(
    conn: &mut Connection,
    request: &Request,
    read_timeout: Option<Duration>,
) -> Result<Response, Exchange> {
    write_frame(&mut conn.writer, request, &mut conn.out_buf).map_err(|e| match e {
        FrameError::Encode(_) | FrameError::Oversized { .. } => Exchange::NotSent(e),
        e => Exchange::Broken(e),
    })?;
    conn.writer
        .flush()
        .map_err(|e| Exchange::Broken(FrameError::Io(e)))?;
    if conn.read_timeout != read_timeout {
        conn.reader
            .get_ref()
            .set_read_timeout(read_timeout)
            .map_err(|e| Exchange::Broken(FrameError::Io(e)))?;
        conn.read_timeout = read_timeout;
    }
    read_frame(&mut conn.reader, &mut conn.in_buf).map_err(Exchange::Broken)
}

fn lost(address: &Address, e: FrameError, waited: Option<Duration>) -> ManagerError {
    let address = address.clone();
    match e {
        FrameError::Idle | FrameError::Stalled { .. } => ManagerError::NoAnswer {
            address,
            after: waited.unwrap_or_default(),
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

fn open(endpoint: &Endpoint) -> Result<Connection, ManagerError> {
    let address = &endpoint.address;
    let mut stream =
        Stream::connect(address, CONNECT_TIMEOUT).map_err(|source| ManagerError::Unreachable {
            address: address.clone(),
            source,
        })?;
    let handshake = |stream: &mut Stream, key: &Authkey| -> Result<(), AuthError> {
        stream.set_read_timeout(Some(CONNECT_TIMEOUT))?;
        stream.set_write_timeout(Some(CONNECT_TIMEOUT))?;
        auth::authenticate_to_server(stream, key)
    };
    handshake(&mut stream, &endpoint.authkey).map_err(|e| match e {
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
        e => ManagerError::ConnectionLost {
            address: address.clone(),
            reason: format!("during the handshake: {e}"),
        },
    })?;
    // Answers may take long (a blocking acquire), but a write that cannot proceed for this long
    // means the server is stuck.
    let reader_half = stream.try_clone().map_err(|e| io_lost(address, e))?;
    Ok(Connection {
        reader: BufReader::with_capacity(IO_BUFFER, reader_half),
        writer: BufWriter::with_capacity(IO_BUFFER, stream),
        pid: std::process::id(),
        read_timeout: Some(CONNECT_TIMEOUT),
        in_buf: Vec::new(),
        out_buf: Vec::new(),
    })
}

fn io_lost(address: &Address, e: io::Error) -> ManagerError {
    ManagerError::ConnectionLost {
        address: address.clone(),
        reason: e.to_string(),
    }
}
