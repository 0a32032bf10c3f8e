//! Where a manager listens (`Address`) and the shared secret that guards it (`Authkey`).

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::error::ManagerError;

/// The address of a manager server: a Unix socket path (same host) or a TCP socket address.
///
/// Written as `unix:/path/to/socket` or `tcp:127.0.0.1:5000`, and parsed back from that form.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Address {
    /// A Unix stream socket at this path.
    Unix(PathBuf),
    /// A TCP listener at this address.
    Tcp(SocketAddr),
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Unix(path) => write!(f, "unix:{}", path.display()),
            Address::Tcp(addr) => write!(f, "tcp:{addr}"),
        }
    }
}

impl FromStr for Address {
    type Err = ManagerError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = |why: &str| ManagerError::BadAddress {
            address: text.to_owned(),
            reason: why.to_owned(),
        };
        if let Some(path) = text.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(bad("empty socket path"));
            }
            Ok(Address::Unix(PathBuf::from(path)))
        } else if let Some(addr) = text.strip_prefix("tcp:") {
            addr.parse()
                .map(Address::Tcp)
                .map_err(|e| bad(&format!("not a socket address: {e}")))
        } else {
            Err(bad("expected `unix:PATH` or `tcp:HOST:PORT`"))
        }
    }
}

/// The secret both ends prove they know (HMAC-SHA256 challenge-response) before any request.
///
/// `Debug` never prints the key. Hex form (`to_hex`/`from_hex`) lets unrelated processes share it.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Authkey(Vec<u8>);

impl Authkey {
    /// Length of a generated key: as long as the HMAC-SHA256 output.
    const RANDOM_LEN: usize = 32;

    /// A fresh random key from the operating system's generator.
    pub fn random() -> Result<Self, ManagerError> {
        let mut key = vec![0u8; Self::RANDOM_LEN];
        getrandom::getrandom(&mut key).map_err(|e| ManagerError::Random(e.to_string()))?;
        Ok(Authkey(key))
    }

    /// A key from caller-chosen bytes; an empty key is refused, as it would guard nothing.
    pub fn from_bytes(bytes: impl Into<Vec<u8>>) -> Result<Self, ManagerError> {
        let bytes = bytes.into();
        if bytes.is_empty() {
            return Err(ManagerError::BadAuthkey("the key is empty".into()));
        }
        Ok(Authkey(bytes))
    }

    /// Parses the form written by [`Authkey::to_hex`].
    pub fn from_hex(hex: &str) -> Result<Self, ManagerError> {
        let hex = hex.trim();
        if hex.len() % 2 != 0 {
            return Err(ManagerError::BadAuthkey("odd number of hex digits".into()));
        }
        let bytes = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(hex.get(i..i + 2).unwrap_or("x"), 16))
            .collect::<Result<Vec<u8>, _>>()
            .map_err(|_| ManagerError::BadAuthkey("not a hex string".into()))?;
        Self::from_bytes(bytes)
    }

    /// The key as lowercase hex digits.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Authkey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Authkey(<redacted>)")
    }
}
