//! `Server`: accepts connections on a `Listener`, authenticates each one, then serves its
//! requests on a thread of its own (blocking reads, so an idle server uses no CPU). A bad
//! handshake or a bad frame ends only that connection, with one line on stderr; a connection that
//! ends for any reason has its locks released.

use std::io::{BufReader, BufWriter, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::address::{Address, Authkey};
use super::auth;
use super::frame::{read_frame, write_frame, FrameError};
use super::protocol::{Request, Response};
use super::store::{ConnId, Store};
use super::stream::{Listener, Stream};

/// A client must finish the handshake within this time.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Read timeout between requests: an idle connection just waits again, but a frame that stops
/// arriving half-way is given up after this long.
const FRAME_TIMEOUT: Duration = Duration::from_secs(5);
/// A client that stops reading its answers is dropped after this long.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Buffer sizes: requests and answers are usually tiny, one buffer holds many.
const IO_BUFFER: usize = 16 * 1024;

macro_rules! log {
    ($($arg:tt)*) => {
        eprintln!("herd manager[{}]: {}", std::process::id(), format_args!($($arg)*))
    };
}

#[derive(Debug)]
struct Shared {
    store: Store,
    authkey: Authkey,
    address: Address,
    stopping: AtomicBool,
    next_conn: AtomicU64,
}

/// A manager server bound to its address, not yet serving.
#[derive(Debug)]
pub(crate) struct Server {
    listener: Listener,
    shared: Arc<Shared>,
}

impl Server {
    pub(crate) fn new(listener: Listener, authkey: Authkey) -> std::io::Result<Server> {
        let address = listener.local_address()?;
        Ok(Server {
            listener,
            shared: Arc::new(Shared {
                store: Store::default(),
                authkey,
                address,
                stopping: AtomicBool::new(false),
                next_conn: AtomicU64::new(1),
            }),
        })
    }

    #[cfg(test)]
    pub(crate) fn address(&self) -> &Address {
        &self.shared.address
    }

    /// Serves until a client sends `Shutdown`.
    pub(crate) fn serve(self) -> std::io::Result<()> {
        loop {
            let accepted = self.listener.accept();
            if self.shared.stopping.load(Ordering::SeqCst) {
                return Ok(());
            }
            let (stream, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Running out of fds or a connection reset before accept: keep serving.
                    log!("accept failed: {e}");
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
            };
            let shared = Arc::clone(&self.shared);
            let conn = shared.next_conn.fetch_add(1, Ordering::Relaxed);
            let spawned = std::thread::Builder::new()
                .name(format!("herd-mgr-conn-{conn}"))
                .spawn(move || serve_connection(&shared, stream, &peer, conn));
            if let Err(e) = spawned {
                log!("cannot start a thread for a new connection: {e}");
            }
        }
    }
}

fn serve_connection(shared: &Shared, mut stream: Stream, peer: &str, conn: ConnId) {
    let setup = stream
        .set_read_timeout(Some(HANDSHAKE_TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(WRITE_TIMEOUT)));
    if let Err(e) = setup {
        log!("cannot set up connection from {peer}: {e}");
        return;
    }
    if let Err(e) = auth::accept_client(&mut stream, &shared.authkey) {
        log!("refused connection from {peer}: {e}");
        return;
    }
    let halves = stream
        .set_read_timeout(Some(FRAME_TIMEOUT))
        .and_then(|()| Ok((stream.try_clone()?, stream.try_clone()?)));
    let (probe, read_half) = match halves {
        Ok(halves) => halves,
        Err(e) => {
            log!("cannot set up connection from {peer}: {e}");
            return;
        }
    };
    let client_gone = || probe.is_peer_closed();
    let mut reader = BufReader::with_capacity(IO_BUFFER, read_half);
    let mut writer = BufWriter::with_capacity(IO_BUFFER, stream);
    let mut in_buf = Vec::new();
    let mut out_buf = Vec::new();
    loop {
        let request = match read_frame::<Request>(&mut reader, &mut in_buf) {
            Ok(request) => request,
            Err(FrameError::Idle) => continue,
            Err(FrameError::Closed) => break,
            Err(e) => {
                log!("closing connection from {peer}: {e}");
                break;
            }
        };
        let (response, stop) = match request {
            Request::Create { spec, name } => (shared.store.create(spec, name), false),
            Request::Op { id, kind, op } => (
                shared.store.execute(conn, id, kind, op, &client_gone),
                false,
            ),
            Request::Shutdown => (Response::Done, true),
        };
        let sent = write_frame(&mut writer, &response, &mut out_buf)
            .and_then(|()| writer.flush().map_err(FrameError::Io));
        if stop {
            shared.stopping.store(true, Ordering::SeqCst);
            // Wake the accept loop so it sees `stopping`.
            let _ = Stream::connect(&shared.address, HANDSHAKE_TIMEOUT);
            break;
        }
        if let Err(e) = sent {
            log!("closing connection from {peer}: cannot answer: {e}");
            break;
        }
    }
    let released = shared.store.disconnect(conn);
    if released > 0 {
        log!("connection from {peer} closed holding {released} lock(s): released");
    }
}
