//! Where a [`Listener`](super::Listener) listens: a Unix socket in the filesystem or in the
//! abstract namespace, or a TCP address.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::error::AddressError;

/// The address of a [`Listener`](super::Listener), as `multiprocessing.connection` takes them.
///
/// Written as `unix:/path/to/socket`, `abstract:name` or `tcp:127.0.0.1:5000`, and parsed back
/// from that form. An abstract name (Linux) lives in the network namespace, not in the
/// filesystem: nothing to remove afterwards, but anyone in the namespace can connect, so the
/// authkey is all that guards it (as it is for TCP).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Address {
    /// A Unix stream socket at this filesystem path; the listener removes it when dropped.
    Unix(PathBuf),
    /// A Unix stream socket in the abstract namespace (Python's `'\0name'`), without the
    /// leading NUL.
    Abstract(Vec<u8>),
    /// A TCP socket address; port 0 lets the kernel pick (ask [`Listener::address`] which).
    ///
    /// [`Listener::address`]: super::Listener::address
    Tcp(SocketAddr),
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Unix(path) => write!(f, "unix:{}", path.display()),
            Address::Abstract(name) => write!(f, "abstract:{}", String::from_utf8_lossy(name)),
            Address::Tcp(addr) => write!(f, "tcp:{addr}"),
        }
    }
}

impl FromStr for Address {
    type Err = AddressError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = |why: String| AddressError {
            address: text.to_owned(),
            reason: why,
        };
        if let Some(path) = text.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(bad("empty socket path".into()));
            }
            Ok(Address::Unix(PathBuf::from(path)))
        } else if let Some(name) = text.strip_prefix("abstract:") {
            if name.is_empty() {
                return Err(bad("empty abstract name".into()));
            }
            Ok(Address::Abstract(name.as_bytes().to_vec()))
        } else if let Some(addr) = text.strip_prefix("tcp:") {
            addr.parse()
                .map(Address::Tcp)
                .map_err(|e| bad(format!("not a socket address: {e}")))
        } else {
            Err(bad(
                "expected `unix:PATH`, `abstract:NAME` or `tcp:HOST:PORT`".into(),
            ))
        }
    }
}

impl From<crate::manager::Address> for Address {
    fn from(address: crate::manager::Address) -> Address {
        match address {
            crate::manager::Address::Unix(path) => Address::Unix(path),
            crate::manager::Address::Tcp(addr) => Address::Tcp(addr),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_round_trip_through_text() {
        for text in [
            "unix:/tmp/x.sock",
            "abstract:herd-test",
            "tcp:127.0.0.1:5000",
        ] {
            let address: Address = text.parse().unwrap();
            assert_eq!(address.to_string(), text);
        }
        let err = "udp:1.2.3.4:5".parse::<Address>().unwrap_err();
        assert!(err.to_string().contains("udp:1.2.3.4:5"), "{err}");
        assert!("abstract:".parse::<Address>().is_err());
    }
}
