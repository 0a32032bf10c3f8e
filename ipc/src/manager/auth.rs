//! The authkey handshake, run on every connection before any request is read: an HMAC-SHA256
//! challenge-response in both directions, as multiprocessing's authkey does. The server proves
//! nothing and reads nothing more until the client has answered its challenge; the client then
//! challenges the server, so a client never sends requests (or proxies' authkeys) to an impostor.
//!
//! The server's side is I/O-free ([`ServerChallenge`]) so one server thread can run many
//! handshakes at once; the client's side is a plain blocking exchange.
//!
//! Exchange (fixed sizes, no length fields, so nothing is allocated on behalf of a stranger):
//! server -> `MAGIC` + server nonce; client -> HMAC(key, "client" + server nonce) + client nonce;
//! server -> `REFUSED` and close, or `ACCEPTED` + HMAC(key, "server" + client nonce).
//! The two labels keep a reflected answer from passing as the other side's.

use std::io::{self, Read, Write};

use hmac::{Hmac, Mac};
use sha2::Sha256;
use thiserror::Error;

use super::address::Authkey;

const MAGIC: &[u8; 8] = b"HERDMGR1";
const NONCE_LEN: usize = 32;
const DIGEST_LEN: usize = 32;
const ACCEPTED: u8 = 1;
const REFUSED: u8 = 0;
const CLIENT_LABEL: &[u8] = b"herd-manager client";
const SERVER_LABEL: &[u8] = b"herd-manager server";

/// How a handshake failed, from either side's point of view.
#[derive(Debug, Error)]
pub(crate) enum AuthError {
    #[error("wrong authkey")]
    WrongKey,
    #[error("the server refused the authkey")]
    Refused,
    #[error("the server's proof of the authkey is wrong")]
    ServerNotAuthenticated,
    #[error(
        "the server closed the connection before greeting it \
         (it is at its limit of connections in the handshake)"
    )]
    Busy,
    #[error("the peer is not a herd manager (bad greeting)")]
    NotAManager,
    #[error("cannot generate a challenge: {0}")]
    Random(String),
    #[error("i/o during the handshake: {0}")]
    Io(#[from] io::Error),
}

fn digest(key: &Authkey, label: &[u8], nonce: &[u8]) -> Hmac<Sha256> {
    // HMAC takes keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    mac.update(label);
    mac.update(nonce);
    mac
}

fn nonce() -> Result<[u8; NONCE_LEN], AuthError> {
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::getrandom(&mut nonce).map_err(|e| AuthError::Random(e.to_string()))?;
    Ok(nonce)
}

/// Sizes of the server's side of the exchange, for a caller that moves the bytes itself.
pub(crate) const GREETING_LEN: usize = MAGIC.len() + NONCE_LEN;
pub(crate) const ANSWER_LEN: usize = DIGEST_LEN + NONCE_LEN;
pub(crate) const REPLY_LEN: usize = 1 + DIGEST_LEN;
/// What a refused client is sent before the close.
pub(crate) const REFUSAL: [u8; 1] = [REFUSED];

/// The server's side of one handshake, without any I/O: the server runs many handshakes at once
/// on non-blocking sockets from one thread, so it moves the bytes and asks this what to send.
#[derive(Debug)]
pub(crate) struct ServerChallenge {
    nonce: [u8; NONCE_LEN],
}

impl ServerChallenge {
    pub(crate) fn new() -> Result<ServerChallenge, AuthError> {
        Ok(ServerChallenge { nonce: nonce()? })
    }

    /// `MAGIC` + the server nonce: the first thing a client is sent.
    pub(crate) fn greeting(&self) -> [u8; GREETING_LEN] {
        let mut greeting = [0u8; GREETING_LEN];
        greeting[..MAGIC.len()].copy_from_slice(MAGIC);
        greeting[MAGIC.len()..].copy_from_slice(&self.nonce);
        greeting
    }

    /// Checks the client's answer; `Ok` holds the acceptance and the server's own proof, to be
    /// sent in full. On `WrongKey` the caller sends [`REFUSAL`] and closes.
    pub(crate) fn check(
        &self,
        key: &Authkey,
        answer: &[u8; ANSWER_LEN],
    ) -> Result<[u8; REPLY_LEN], AuthError> {
        let (client_digest, client_nonce) = answer.split_at(DIGEST_LEN);
        if digest(key, CLIENT_LABEL, &self.nonce)
            .verify_slice(client_digest)
            .is_err()
        {
            return Err(AuthError::WrongKey);
        }
        let mut reply = [0u8; REPLY_LEN];
        reply[0] = ACCEPTED;
        reply[1..].copy_from_slice(
            &digest(key, SERVER_LABEL, client_nonce)
                .finalize()
                .into_bytes(),
        );
        Ok(reply)
    }
}

/// The client's side: returns `Ok` only when both sides proved they know `key`.
pub(crate) fn authenticate_to_server(
    stream: &mut (impl Read + Write),
    key: &Authkey,
) -> Result<(), AuthError> {
    let mut greeting = [0u8; MAGIC.len() + NONCE_LEN];
    match stream.read_exact(&mut greeting) {
        Ok(()) => {}
        // A server over its handshake caps closes new connections at once, before greeting.
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset
            ) =>
        {
            return Err(AuthError::Busy)
        }
        Err(e) => return Err(AuthError::Io(e)),
    }
    let (magic, server_nonce) = greeting.split_at(MAGIC.len());
    if magic != MAGIC {
        return Err(AuthError::NotAManager);
    }
    let client_nonce = nonce()?;
    let mut answer = [0u8; DIGEST_LEN + NONCE_LEN];
    answer[..DIGEST_LEN].copy_from_slice(
        &digest(key, CLIENT_LABEL, server_nonce)
            .finalize()
            .into_bytes(),
    );
    answer[DIGEST_LEN..].copy_from_slice(&client_nonce);
    stream.write_all(&answer)?;
    stream.flush()?;

    let mut verdict = [0u8; 1];
    match stream.read_exact(&mut verdict) {
        Ok(()) => {}
        // A server that refused may close before or after its one-byte verdict.
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Err(AuthError::Refused),
        Err(e) => return Err(AuthError::Io(e)),
    }
    if verdict[0] != ACCEPTED {
        return Err(AuthError::Refused);
    }
    let mut server_digest = [0u8; DIGEST_LEN];
    stream.read_exact(&mut server_digest)?;
    digest(key, SERVER_LABEL, &client_nonce)
        .verify_slice(&server_digest)
        .map_err(|_| AuthError::ServerNotAuthenticated)
}
