//! Connections between unrelated processes, as `multiprocessing.connection`: a [`Listener`]
//! bound to an [`Address`] (a Unix socket in the filesystem or the abstract namespace, or TCP)
//! accepts clients that [`connect`](Client::connect) with the same [`Authkey`].
//!
//! Both sides run the Manager's handshake before anything else is exchanged: an HMAC-SHA256
//! challenge-response in both directions, so the listener serves only clients that know the key
//! and a client never talks to an impostor; the whole exchange has one deadline. A wrong key is
//! [`AcceptError::Authentication`] on the listener's side and [`ConnectError::Authentication`]
//! on the client's. Then each side holds a duplex [`Pipe<T>`](crate::Pipe) end, typed like any
//! other: `send`/`recv` with timeouts, [`wait`](crate::wait), `Disconnected` when the peer is
//! gone. Over a Unix socket, messages may carry herd handles (their descriptors travel with
//! them); over TCP they cannot (the send fails), since descriptors cannot cross hosts.
//!
//! ```
//! use std::time::Duration;
//!
//! use herd_ipc::connection::{Address, Client, Listener};
//! use herd_ipc::manager::Authkey;
//! use herd_ipc::Process;
//!
//! const PATIENCE: Duration = Duration::from_secs(10);
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let authkey = Authkey::random()?;
//!     // Port 0: the kernel picks one; the listener says which.
//!     let listener = Listener::bind("tcp:127.0.0.1:0".parse()?, authkey.clone())?;
//!     let address = listener.address().clone();
//!
//!     // Any process that has the address and the key can connect.
//!     let client = Process::new().fork(move || {
//!         let conn = Client::connect::<String>(&address, &authkey).expect("connect");
//!         conn.send("ping".to_owned()).expect("send");
//!         conn.recv_timeout(PATIENCE).expect("reply")
//!     })?;
//!
//!     let conn = listener.accept_timeout::<String>(PATIENCE)?;
//!     assert_eq!(conn.recv_timeout(PATIENCE)?, "ping");
//!     conn.send("pong".to_owned())?;
//!     assert_eq!(client.join_timeout(PATIENCE)?, "pong");
//!     Ok(())
//! }
//! ```

mod address;
mod error;
mod listener;

pub use crate::manager::Authkey;
pub use address::Address;
pub use error::{AcceptError, AddressError, BindError, ConnectError};
pub use listener::{connect, Client, Listener};

#[cfg(test)]
mod tests;
