//! The connections still in the handshake, all driven by the server's accept thread on
//! non-blocking sockets: an unauthenticated peer gets no thread and no buffer beyond the fixed
//! 64-byte answer, its whole handshake has one deadline (however slowly the bytes trickle in),
//! and there are at most so many of them, in all and per peer.

use std::collections::HashMap;
use std::io::{self, ErrorKind, Read, Write};
use std::time::{Duration, Instant};

use nix::poll::PollFlags;

use super::address::Authkey;
use super::auth::{self, AuthError, ServerChallenge, ANSWER_LEN, GREETING_LEN, REPLY_LEN};
use super::stream::{Peer, PeerKey, Stream};

/// The limits on connections that have not proved they know the authkey.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// The whole handshake, from accept to the server's proof, must fit in this.
    pub(crate) deadline: Duration,
    /// Connections in the handshake at once; more are closed as soon as they are accepted.
    pub(crate) max_pending: usize,
    /// Of those, how many one peer (IP address, or Unix user) may hold.
    pub(crate) max_pending_per_peer: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            deadline: Duration::from_secs(5),
            max_pending: 256,
            max_pending_per_peer: 64,
        }
    }
}

#[derive(Debug)]
enum Step {
    Greeting {
        written: usize,
    },
    Answer {
        got: usize,
        buf: [u8; ANSWER_LEN],
    },
    Accepting {
        reply: [u8; REPLY_LEN],
        written: usize,
    },
    Refusing,
}

/// One connection in the handshake.
#[derive(Debug)]
pub(crate) struct Handshake {
    stream: Stream,
    peer: Peer,
    deadline: Instant,
    challenge: ServerChallenge,
    step: Step,
}

/// What a step of I/O on a handshake came to.
#[derive(Debug)]
pub(crate) enum Progress {
    /// Waiting for the socket.
    Pending,
    /// The client proved it knows the key, and was sent the server's proof.
    Accepted,
    /// The handshake failed; the connection is to be closed.
    Failed(AuthError),
}

impl Handshake {
    pub(crate) fn stream(&self) -> &Stream {
        &self.stream
    }

    /// What to poll this connection's socket for.
    pub(crate) fn interest(&self) -> PollFlags {
        match self.step {
            Step::Answer { .. } => PollFlags::POLLIN,
            _ => PollFlags::POLLOUT,
        }
    }

    /// Moves the handshake on as far as the socket allows without blocking.
    fn advance(&mut self, key: &Authkey) -> Progress {
        loop {
            let result = match &mut self.step {
                Step::Greeting { written } => {
                    match write_some(&mut self.stream, &self.challenge.greeting()[*written..]) {
                        Ok(n) => {
                            *written += n;
                            if *written == GREETING_LEN {
                                self.step = Step::Answer {
                                    got: 0,
                                    buf: [0; ANSWER_LEN],
                                };
                            }
                            Ok(())
                        }
                        Err(e) => Err(e),
                    }
                }
                Step::Answer { got, buf } => match self.stream.read(&mut buf[*got..]) {
                    Ok(0) => Err(io::Error::new(
                        ErrorKind::UnexpectedEof,
                        format!("closed after {got} of the answer's {ANSWER_LEN} bytes"),
                    )),
                    Ok(n) => {
                        *got += n;
                        if *got == ANSWER_LEN {
                            self.step = match self.challenge.check(key, buf) {
                                Ok(reply) => Step::Accepting { reply, written: 0 },
                                Err(_) => Step::Refusing,
                            };
                        }
                        Ok(())
                    }
                    Err(e) => Err(e),
                },
                Step::Accepting { reply, written } => {
                    match write_some(&mut self.stream, &reply[*written..]) {
                        Ok(n) => {
                            *written += n;
                            if *written == REPLY_LEN {
                                return Progress::Accepted;
                            }
                            Ok(())
                        }
                        Err(e) => Err(e),
                    }
                }
                Step::Refusing => {
                    // Best effort: the client learns it was refused rather than seeing a bare
                    // close; a full socket buffer just means it sees the close.
                    let _ = self.stream.write(&auth::REFUSAL);
                    return Progress::Failed(AuthError::WrongKey);
                }
            };
            match result {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Progress::Pending,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Progress::Failed(AuthError::Io(e)),
            }
        }
    }
}

fn write_some(stream: &mut Stream, bytes: &[u8]) -> io::Result<usize> {
    match stream.write(bytes) {
        Ok(0) => Err(io::Error::new(
            ErrorKind::WriteZero,
            "the socket took nothing",
        )),
        other => other,
    }
}

/// Why a new connection was not admitted to the handshake.
#[derive(Debug)]
pub(crate) enum Refusal {
    /// `max_pending` connections are already in the handshake.
    Full { limit: usize },
    /// This peer already holds `max_pending_per_peer` of them.
    PeerFull { limit: usize },
    /// The socket could not be made non-blocking, or no challenge could be drawn.
    Setup(String),
}

/// What happened to one connection in [`Handshakes::advance`] or [`Handshakes::expire`].
#[derive(Debug)]
pub(crate) enum Outcome {
    /// Authenticated: the stream (blocking again) is the caller's to serve.
    Accepted(Stream, Peer),
    /// Closed, with why.
    Failed(Peer, AuthError),
    /// Closed by the deadline.
    Expired(Peer, Duration),
}

/// The set of connections in the handshake, with the per-peer counts behind the caps.
#[derive(Debug)]
pub(crate) struct Handshakes {
    limits: Limits,
    pending: Vec<Handshake>,
    per_peer: HashMap<PeerKey, usize>,
}

impl Handshakes {
    pub(crate) fn new(limits: Limits) -> Handshakes {
        Handshakes {
            limits,
            pending: Vec::new(),
            per_peer: HashMap::new(),
        }
    }

    pub(crate) fn pending(&self) -> &[Handshake] {
        &self.pending
    }

    /// Takes a freshly accepted connection into the handshake, or refuses it (the caller drops
    /// it, which closes it). The greeting goes out at once.
    pub(crate) fn admit(
        &mut self,
        stream: Stream,
        peer: Peer,
        now: Instant,
        key: &Authkey,
    ) -> Result<Option<Outcome>, (Peer, Refusal)> {
        if self.pending.len() >= self.limits.max_pending {
            let limit = self.limits.max_pending;
            return Err((peer, Refusal::Full { limit }));
        }
        let held = self.per_peer.get(&peer.key).copied().unwrap_or(0);
        if held >= self.limits.max_pending_per_peer {
            let limit = self.limits.max_pending_per_peer;
            return Err((peer, Refusal::PeerFull { limit }));
        }
        if let Err(e) = stream.set_nonblocking(true) {
            return Err((peer, Refusal::Setup(e.to_string())));
        }
        let challenge = match ServerChallenge::new() {
            Ok(challenge) => challenge,
            Err(e) => return Err((peer, Refusal::Setup(e.to_string()))),
        };
        *self.per_peer.entry(peer.key).or_insert(0) += 1;
        self.pending.push(Handshake {
            stream,
            peer,
            deadline: now + self.limits.deadline,
            challenge,
            step: Step::Greeting { written: 0 },
        });
        let last = self.pending.len() - 1;
        Ok(self.step(last, key))
    }

    /// Moves on the handshakes whose sockets are ready (`ready[i]` for `pending()[i]`), and
    /// returns those that ended.
    pub(crate) fn advance(&mut self, ready: &[bool], key: &Authkey) -> Vec<Outcome> {
        let mut ended = Vec::new();
        // Backwards, so removing one (swap_remove) never moves one not yet visited.
        for i in (0..self.pending.len().min(ready.len())).rev() {
            if ready[i] {
                ended.extend(self.step(i, key));
            }
        }
        ended
    }

    fn step(&mut self, i: usize, key: &Authkey) -> Option<Outcome> {
        match self.pending[i].advance(key) {
            Progress::Pending => None,
            Progress::Accepted => {
                let Handshake { stream, peer, .. } = self.remove(i);
                match stream.set_nonblocking(false) {
                    Ok(()) => Some(Outcome::Accepted(stream, peer)),
                    Err(e) => Some(Outcome::Failed(peer, AuthError::Io(e))),
                }
            }
            Progress::Failed(e) => Some(Outcome::Failed(self.remove(i).peer, e)),
        }
    }

    /// Closes the handshakes whose deadline has passed.
    pub(crate) fn expire(&mut self, now: Instant) -> Vec<Outcome> {
        let mut expired = Vec::new();
        for i in (0..self.pending.len()).rev() {
            if self.pending[i].deadline <= now {
                let deadline = self.limits.deadline;
                expired.push(Outcome::Expired(self.remove(i).peer, deadline));
            }
        }
        expired
    }

    /// The earliest deadline, for the poll timeout.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.pending.iter().map(|h| h.deadline).min()
    }

    fn remove(&mut self, i: usize) -> Handshake {
        let handshake = self.pending.swap_remove(i);
        if let Some(held) = self.per_peer.get_mut(&handshake.peer.key) {
            *held -= 1;
            if *held == 0 {
                self.per_peer.remove(&handshake.peer.key);
            }
        }
        handshake
    }
}
