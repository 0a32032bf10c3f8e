//! `Server`: one thread accepts connections and runs every handshake at once, on non-blocking
//! sockets multiplexed with poll(2), so a peer that has not proved it knows the authkey holds no
//! thread, a bounded slot (see [`Limits`]) and at most a few seconds. An authenticated
//! connection then gets a thread of its own (blocking reads, so an idle server uses no CPU). A
//! bad handshake or a bad frame ends only that connection; a connection that ends for any reason
//! has its locks released. What a flood of bad peers causes (refusals, deadlines, accept errors)
//! is logged at most once per `LOG_INTERVAL` per kind, with a count.

use std::io::{BufReader, BufWriter, Write};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use super::address::{Address, Authkey};
use super::frame::{read_frame, write_frame, FrameError};
pub(crate) use super::handshake::Limits;
use super::handshake::{Handshakes, Outcome, Refusal};
use super::protocol::{Request, Response};
use super::store::{ConnId, Store};
use super::stream::{Listener, Peer, Stream};
use super::throttle::{Backoff, LogThrottle};

/// Read timeout between requests: an idle connection just waits again, but a frame that stops
/// arriving half-way is given up after this long.
const FRAME_TIMEOUT: Duration = Duration::from_secs(5);
/// A client that stops reading its answers is dropped after this long.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the connection that wakes the accept loop for a shutdown may take to connect.
const WAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Buffer sizes: requests and answers are usually tiny, one buffer holds many.
const IO_BUFFER: usize = 16 * 1024;
/// Each kind of log line caused by peers is written at most once per this interval.
const LOG_INTERVAL: Duration = Duration::from_secs(10);
/// A failing accept (EMFILE, ENFILE, ENOBUFS, ...) is retried after a pause growing from the
/// first to the second, while the handshakes in progress carry on.
const ACCEPT_BACKOFF: (Duration, Duration) =
    (Duration::from_millis(10), Duration::from_millis(100));
/// Connections accepted per wake-up, so a burst of connections cannot starve the handshakes.
const ACCEPT_BATCH: usize = 64;

/// Set in a server started `ManagerBuilder::quiet`: it is a process of its
/// own, so one flag serves the whole process.
static SILENT: AtomicBool = AtomicBool::new(false);

/// Keeps this process's server log off stderr.
pub(crate) fn silence_log() {
    SILENT.store(true, Ordering::Relaxed);
}

macro_rules! log {
    ($($arg:tt)*) => {
        if !SILENT.load(Ordering::Relaxed) {
            eprintln!("herd manager[{}]: {}", std::process::id(), format_args!($($arg)*))
        }
    };
}

/// Reports panics in this server process (a registered type's method that panicked, whose
/// caller gets the message as an error) as server log lines, so a quiet server prints none.
pub(crate) fn log_panics() {
    std::panic::set_hook(Box::new(|info| log!("{info}")));
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
    limits: Limits,
}

/// The log lines a flood of bad peers would repeat, one throttle per kind.
#[derive(Debug)]
struct PeerLogs {
    accept: LogThrottle,
    over_cap: LogThrottle,
    expired: LogThrottle,
    refused: LogThrottle,
    thread: LogThrottle,
    poll: LogThrottle,
}

impl PeerLogs {
    fn new() -> PeerLogs {
        let throttle = || LogThrottle::new(LOG_INTERVAL);
        PeerLogs {
            accept: throttle(),
            over_cap: throttle(),
            expired: throttle(),
            refused: throttle(),
            thread: throttle(),
            poll: throttle(),
        }
    }

    fn all(&mut self) -> [&mut LogThrottle; 6] {
        [
            &mut self.accept,
            &mut self.over_cap,
            &mut self.expired,
            &mut self.refused,
            &mut self.thread,
            &mut self.poll,
        ]
    }

    fn flush(&mut self, now: Instant) {
        for throttle in self.all() {
            if let Some(line) = throttle.flush(now) {
                log!("{line}");
            }
        }
    }

    fn next_flush(&mut self) -> Option<Instant> {
        self.all().iter().filter_map(|t| t.next_flush()).min()
    }
}

fn note(throttle: &mut LogThrottle, now: Instant, message: String) {
    if let Some(line) = throttle.note(now, message) {
        log!("{line}");
    }
}

/// Milliseconds until `when`, rounded up so a wake-up never comes early and spins.
fn poll_timeout(now: Instant, when: Option<Instant>) -> PollTimeout {
    match when {
        None => PollTimeout::NONE,
        Some(when) => {
            let wait = when.saturating_duration_since(now);
            let millis = wait.as_micros().div_ceil(1000);
            PollTimeout::try_from(millis).unwrap_or(PollTimeout::MAX)
        }
    }
}

impl Server {
    pub(crate) fn new(listener: Listener, authkey: Authkey) -> std::io::Result<Server> {
        Server::with_limits(listener, authkey, Limits::default())
    }

    pub(crate) fn with_limits(
        listener: Listener,
        authkey: Authkey,
        limits: Limits,
    ) -> std::io::Result<Server> {
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
            limits,
        })
    }

    #[cfg(test)]
    pub(crate) fn address(&self) -> &Address {
        &self.shared.address
    }

    /// Serves until a client sends `Shutdown`.
    pub(crate) fn serve(self) -> std::io::Result<()> {
        self.listener.set_nonblocking(true)?;
        let mut handshakes = Handshakes::new(self.limits);
        let mut logs = PeerLogs::new();
        let mut backoff = Backoff::new(ACCEPT_BACKOFF.0, ACCEPT_BACKOFF.1);
        loop {
            let now = Instant::now();
            for outcome in handshakes.expire(now) {
                self.ended(outcome, now, &mut logs);
            }
            logs.flush(now);
            let paused = backoff.paused_until(now);
            let wake = [handshakes.next_deadline(), paused, logs.next_flush()]
                .into_iter()
                .flatten()
                .min();
            let (listener_ready, ready) = {
                let listen = match paused {
                    Some(_) => PollFlags::empty(),
                    None => PollFlags::POLLIN,
                };
                let mut fds = Vec::with_capacity(1 + handshakes.pending().len());
                fds.push(PollFd::new(self.listener.as_fd(), listen));
                fds.extend(
                    handshakes
                        .pending()
                        .iter()
                        .map(|h| PollFd::new(h.stream().as_fd(), h.interest())),
                );
                match poll(&mut fds, poll_timeout(now, wake)) {
                    Ok(_) => {}
                    Err(Errno::EINTR) => continue,
                    Err(e) => {
                        // EINVAL when RLIMIT_NOFILE was lowered under the number of sockets
                        // polled, ENOMEM: both pass as handshakes end. Deadlines still apply
                        // at the top of the loop, so the set shrinks.
                        note(&mut logs.poll, now, format!("poll failed: {e}"));
                        std::thread::sleep(ACCEPT_BACKOFF.1);
                        if self.shared.stopping.load(Ordering::SeqCst) {
                            return Ok(());
                        }
                        continue;
                    }
                }
                let ready = |fd: &PollFd<'_>| fd.revents().is_some_and(|r| !r.is_empty());
                (
                    ready(&fds[0]),
                    fds[1..].iter().map(ready).collect::<Vec<bool>>(),
                )
            };
            if self.shared.stopping.load(Ordering::SeqCst) {
                return Ok(());
            }
            let now = Instant::now();
            for outcome in handshakes.advance(&ready, &self.shared.authkey) {
                self.ended(outcome, now, &mut logs);
            }
            if listener_ready {
                self.accept_some(&mut handshakes, &mut backoff, &mut logs);
                if self.shared.stopping.load(Ordering::SeqCst) {
                    return Ok(());
                }
            }
        }
    }

    /// Accepts what is waiting, up to a batch, into the handshake.
    fn accept_some(&self, handshakes: &mut Handshakes, backoff: &mut Backoff, logs: &mut PeerLogs) {
        for _ in 0..ACCEPT_BATCH {
            let accepted = self.listener.accept();
            let now = Instant::now();
            let (stream, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // Out of fds, or a connection reset before it was accepted: keep serving the
                    // connections already open, and retry after a pause rather than at once.
                    let pause = backoff.failed(now);
                    note(
                        &mut logs.accept,
                        now,
                        format!("accept failed: {e}; retrying in {pause:?}"),
                    );
                    return;
                }
            };
            backoff.succeeded();
            match handshakes.admit(stream, peer, now, &self.shared.authkey) {
                Ok(None) => {}
                Ok(Some(outcome)) => self.ended(outcome, now, logs),
                Err((peer, refusal)) => {
                    let why = match refusal {
                        Refusal::Full { limit } => {
                            format!("{limit} connections are already in the handshake")
                        }
                        Refusal::PeerFull { limit } => {
                            format!("it already has {limit} connections in the handshake")
                        }
                        Refusal::Setup(e) => format!("cannot set the connection up: {e}"),
                    };
                    note(
                        &mut logs.over_cap,
                        now,
                        format!("closed connection from {} at once: {why}", peer.text),
                    );
                }
            }
        }
    }

    /// Serves an authenticated connection on a thread of its own, or logs why a handshake ended.
    fn ended(&self, outcome: Outcome, now: Instant, logs: &mut PeerLogs) {
        match outcome {
            Outcome::Accepted(stream, peer) => {
                let shared = Arc::clone(&self.shared);
                let conn = shared.next_conn.fetch_add(1, Ordering::Relaxed);
                let spawned = std::thread::Builder::new()
                    .name(format!("herd-mgr-conn-{conn}"))
                    .spawn(move || serve_connection(&shared, stream, &peer, conn));
                if let Err(e) = spawned {
                    note(
                        &mut logs.thread,
                        now,
                        format!("cannot start a thread for a new connection: {e}"),
                    );
                }
            }
            Outcome::Failed(peer, e) => note(
                &mut logs.refused,
                now,
                format!("refused connection from {}: {e}", peer.text),
            ),
            Outcome::Expired(peer, deadline) => note(
                &mut logs.expired,
                now,
                format!(
                    "closed connection from {}: handshake not finished within {deadline:?}",
                    peer.text
                ),
            ),
        }
    }
}

fn serve_connection(shared: &Shared, stream: Stream, peer: &Peer, conn: ConnId) {
    let peer = &peer.text;
    let halves = stream
        .set_read_timeout(Some(FRAME_TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(WRITE_TIMEOUT)))
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
            Request::Create { spec, name } => (shared.store.create(conn, spec, name), false),
            Request::Op {
                id,
                kind,
                op,
                holds,
            } => (
                shared
                    .store
                    .execute(conn, id, kind, op, holds, &client_gone),
                false,
            ),
            Request::Hold { id, ticket } => (shared.store.hold(conn, id, ticket), false),
            Request::Release { id } => (shared.store.release(conn, id), false),
            Request::HoldAll { ids } => (shared.store.hold_all(conn, &ids), false),
            Request::Ticket { id } => (shared.store.ticket(conn, id), false),
            Request::Shutdown => (Response::Done, true),
            Request::ObjectCount => (Response::Len(shared.store.object_count()), false),
        };
        let sent = write_frame(&mut writer, &response, &mut out_buf)
            .and_then(|()| writer.flush().map_err(FrameError::Io));
        if stop {
            shared.stopping.store(true, Ordering::SeqCst);
            // Wake the accept loop so it sees `stopping`.
            let _ = Stream::connect(&shared.address, WAKE_TIMEOUT);
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
