//! Starting the server: the owner makes the private directory and binds the listener itself (so
//! the address is known and connectable at once), then hands the listener to the server.
//! INTERIM: the server runs on a thread until the Process API lands.

use std::fs::{self, DirBuilder, Permissions};
use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::address::{Address, Authkey};
use super::error::ManagerError;
use super::server::Server;
use super::stream::Listener;

/// The owner's handle on its server.
#[derive(Debug)]
pub(crate) struct ServerHandle {
    address: Address,
    dir: Option<PathBuf>,
    thread: std::thread::JoinHandle<()>,
}

impl ServerHandle {
    pub(crate) fn address(&self) -> &Address {
        &self.address
    }

    pub(crate) fn pid(&self) -> u32 {
        std::process::id()
    }

    /// Waits for the server to exit after a shutdown request, and removes its directory.
    pub(crate) fn stop(self) -> Result<(), ManagerError> {
        let _ = self.thread.join();
        if let Some(dir) = &self.dir {
            remove_private_dir(dir);
        }
        Ok(())
    }
}

fn io_error(context: String) -> impl FnOnce(std::io::Error) -> ManagerError {
    move |source| ManagerError::Io { context, source }
}

/// A fresh directory only this user can enter, for the socket.
fn private_dir() -> Result<PathBuf, ManagerError> {
    let mut suffix = [0u8; 8];
    getrandom::getrandom(&mut suffix).map_err(|e| ManagerError::Random(e.to_string()))?;
    let suffix: String = suffix.iter().map(|b| format!("{b:02x}")).collect();
    let dir = std::env::temp_dir().join(format!("herd-manager-{}-{suffix}", std::process::id()));
    DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .map_err(io_error(format!(
            "cannot create manager directory {}",
            dir.display()
        )))?;
    Ok(dir)
}

pub(crate) fn remove_private_dir(dir: &Path) {
    let _ = fs::remove_dir_all(dir);
}

/// Binds the listener for `tcp` (or a private Unix socket) and starts the server on it.
pub(crate) fn start_server(
    tcp: Option<SocketAddr>,
    authkey: Authkey,
) -> Result<ServerHandle, ManagerError> {
    let (listener, dir) = match tcp {
        Some(addr) => {
            let listener = Listener::bind(&Address::Tcp(addr))
                .map_err(io_error(format!("cannot listen on tcp:{addr}")))?;
            (listener, None)
        }
        None => {
            let dir = private_dir()?;
            let path = dir.join("socket");
            let bound = Listener::bind(&Address::Unix(path.clone()))
                .map_err(io_error(format!(
                    "cannot listen on unix:{}",
                    path.display()
                )))
                .and_then(|listener| {
                    fs::set_permissions(&path, Permissions::from_mode(0o600))
                        .map_err(io_error(format!("cannot restrict {}", path.display())))?;
                    Ok(listener)
                });
            match bound {
                Ok(listener) => (listener, Some(dir)),
                Err(e) => {
                    remove_private_dir(&dir);
                    return Err(e);
                }
            }
        }
    };
    let server = Server::new(listener, authkey)
        .map_err(io_error("cannot read the listener's address".into()))?;
    let address = server.address().clone();
    let thread = std::thread::spawn(move || {
        if let Err(e) = server.serve() {
            eprintln!("herd manager: server failed: {e}");
        }
    });
    Ok(ServerHandle {
        address,
        dir,
        thread,
    })
}
