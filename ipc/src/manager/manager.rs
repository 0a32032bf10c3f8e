//! `Manager`: starts (and owns) a manager server process, or connects to a running one, and
//! creates shared objects on it, handing out their proxies.

use std::net::SocketAddr;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::process::Pid;

use super::address::{Address, Authkey};
use super::client::{Client, Endpoint};
use super::error::ManagerError;
use super::launch::{self, ServerHandle};
use super::protocol::{ObjectSpec, Request, Response, Wait};
use super::proxy::{
    ConditionProxy, DictProxy, EventProxy, ListProxy, LockProxy, NamespaceProxy, ProxyCore,
    QueueProxy, RLockProxy, SemaphoreProxy, SharedProxy,
};
use super::refs;
use super::shared::SharedObject;

/// A handle on a manager server. The one returned by [`Manager::start`] owns the server: it
/// stops it on [`Manager::shutdown`] or drop, and the server never outlives it (it is a daemon
/// child, killed with its owner even on SIGKILL). One from [`Manager::connect`] only uses it.
#[derive(Debug)]
pub struct Manager {
    control: Client,
    server: Option<ServerHandle>,
    /// The process that started the server: a fork child holding a copy must not stop it.
    owner: Pid,
}

/// Chooses the transport and key of a manager before starting it.
#[derive(Debug, Default)]
pub struct ManagerBuilder {
    tcp: Option<SocketAddr>,
    authkey: Option<Authkey>,
    quiet: bool,
}

impl ManagerBuilder {
    /// Listens on TCP at `addr` (port 0: any free port) instead of a private Unix socket.
    pub fn tcp(mut self, addr: SocketAddr) -> Self {
        self.tcp = Some(addr);
        self
    }

    /// Uses this key instead of a fresh random one.
    pub fn authkey(mut self, authkey: Authkey) -> Self {
        self.authkey = Some(authkey);
        self
    }

    /// With `true`, the server writes no log lines (peers refused, connections dropped) on
    /// stderr: for tests that provoke them on purpose.
    pub fn quiet(mut self, quiet: bool) -> Self {
        self.quiet = quiet;
        self
    }

    /// Starts the server process and connects to it.
    pub fn start(self) -> Result<Manager, ManagerError> {
        let authkey = match self.authkey {
            Some(key) => key,
            None => Authkey::random()?,
        };
        let server = launch::start_server(self.tcp, authkey.clone(), self.quiet)?;
        let endpoint = Arc::new(Endpoint {
            address: server.address().clone(),
            authkey,
        });
        let control = Client::new(endpoint);
        if let Err(e) = control.connect_now() {
            // Say why the server is not answering when it can tell (e.g. it exited at once).
            return Err(match server.stop() {
                Err(why) => ManagerError::Server(format!("{e}; the server process: {why}")),
                Ok(()) => e,
            });
        }
        Ok(Manager {
            control,
            server: Some(server),
            owner: Pid::this(),
        })
    }
}

impl Manager {
    /// Starts a server on a private Unix socket with a random authkey. The server is this
    /// program re-executed (`Process::spawn`), which serves before its `main` would start.
    pub fn start() -> Result<Manager, ManagerError> {
        ManagerBuilder::default().start()
    }

    /// Configures a server before starting it.
    pub fn builder() -> ManagerBuilder {
        ManagerBuilder::default()
    }

    /// Connects to a running server (started by another process). Fails at once on a wrong
    /// address or key.
    pub fn connect(address: Address, authkey: Authkey) -> Result<Manager, ManagerError> {
        let control = Client::new(Arc::new(Endpoint { address, authkey }));
        control.connect_now()?;
        Ok(Manager {
            control,
            server: None,
            owner: Pid::this(),
        })
    }

    pub fn address(&self) -> &Address {
        &self.control.endpoint().address
    }

    pub fn authkey(&self) -> &Authkey {
        &self.control.endpoint().authkey
    }

    /// The server's process id, for a manager this process started.
    pub fn server_pid(&self) -> Option<Pid> {
        self.server.as_ref().map(ServerHandle::pid)
    }

    /// Objects registered under `name`: the first process to ask creates the object, later ones
    /// (through any `Manager` on the same server) get the same object.
    pub fn named<'a>(&'a self, name: &'a str) -> NamedObjects<'a> {
        NamedObjects {
            manager: self,
            name,
        }
    }

    fn create(&self, spec: ObjectSpec, name: Option<&str>) -> Result<ProxyCore, ManagerError> {
        let kind = spec.kind();
        let endpoint = self.control.endpoint();
        let id = refs::create(endpoint, spec, name.map(str::to_owned))?;
        Ok(ProxyCore::new(Arc::clone(endpoint), id, kind))
    }

    /// How many shared objects the server holds now, created by any process (a diagnostic: an
    /// object is freed when no proxy of it is left in any process, no object it was stored into
    /// is left, and it has no name).
    pub fn object_count(&self) -> Result<usize, ManagerError> {
        match self.control.call(&Request::ObjectCount, Wait::No)? {
            Response::Len(count) => Ok(usize::try_from(count).unwrap_or(usize::MAX)),
            other => Err(ManagerError::Codec {
                action: "interpret",
                what: "the server's answer",
                reason: format!("unexpected answer to object_count: {other:?}"),
            }),
        }
    }

    /// Stops the server this manager started and waits for it to exit; for a connected manager
    /// this only closes its connection.
    pub fn shutdown(mut self) -> Result<(), ManagerError> {
        self.stop()
    }

    fn stop(&mut self) -> Result<(), ManagerError> {
        if self.owner != Pid::this() {
            return Ok(());
        }
        let Some(server) = self.server.take() else {
            return Ok(());
        };
        // The server may already be dead: stopping it is then just cleaning up.
        let _ = self.control.call(&Request::Shutdown, Wait::No);
        self.control.disconnect();
        refs::forget(self.control.endpoint());
        server.stop()
    }
}

impl Drop for Manager {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            eprintln!("herd manager: stopping the server on drop: {e}");
        }
    }
}

/// Creation methods, by name or anonymous.
macro_rules! creation_methods {
    () => {
        /// A new empty dict.
        pub fn dict<K: Serialize + DeserializeOwned, V: Serialize + DeserializeOwned>(
            &self,
        ) -> Result<DictProxy<K, V>, ManagerError> {
            self.core(ObjectSpec::Dict).map(DictProxy::from_core)
        }

        /// A new empty list.
        pub fn list<T: Serialize + DeserializeOwned>(&self) -> Result<ListProxy<T>, ManagerError> {
            self.core(ObjectSpec::List).map(ListProxy::from_core)
        }

        /// A new namespace with no attributes.
        pub fn namespace(&self) -> Result<NamespaceProxy, ManagerError> {
            self.core(ObjectSpec::Namespace)
                .map(NamespaceProxy::from_core)
        }

        /// A new unlocked Lock.
        pub fn lock(&self) -> Result<LockProxy, ManagerError> {
            self.core(ObjectSpec::Lock).map(LockProxy::from_core)
        }

        /// A new unlocked RLock.
        pub fn rlock(&self) -> Result<RLockProxy, ManagerError> {
            self.core(ObjectSpec::RLock).map(RLockProxy::from_core)
        }

        /// A new semaphore with count `value`.
        pub fn semaphore(&self, value: u64) -> Result<SemaphoreProxy, ManagerError> {
            self.core(ObjectSpec::Semaphore { value })
                .map(SemaphoreProxy::from_core)
        }

        /// A new event, not set.
        pub fn event(&self) -> Result<EventProxy, ManagerError> {
            self.core(ObjectSpec::Event).map(EventProxy::from_core)
        }

        /// A new condition variable with its own reentrant lock.
        pub fn condition(&self) -> Result<ConditionProxy, ManagerError> {
            self.core(ObjectSpec::Condition)
                .map(ConditionProxy::from_core)
        }

        /// A new unbounded queue.
        pub fn queue<T: Serialize + DeserializeOwned>(
            &self,
        ) -> Result<QueueProxy<T>, ManagerError> {
            self.core(ObjectSpec::Queue { maxsize: None })
                .map(QueueProxy::from_core)
        }

        /// A new object of the registered type `T` (see [`SharedObject`]), made on the server
        /// from `init`. A type the server's program did not register, or an `init` its
        /// constructor refuses, is a [`ManagerError::Remote`] naming the type.
        pub fn shared<T: SharedObject>(
            &self,
            init: &T::Init,
        ) -> Result<SharedProxy<T>, ManagerError> {
            let init = super::proxy::encode(init)?;
            self.core(ObjectSpec::Shared {
                typeid: T::TYPEID.to_owned(),
                init,
            })
            .map(SharedProxy::from_core)
        }

        /// A new queue holding at most `maxsize` items (0 is refused: nothing could ever be put).
        pub fn bounded_queue<T: Serialize + DeserializeOwned>(
            &self,
            maxsize: usize,
        ) -> Result<QueueProxy<T>, ManagerError> {
            if maxsize == 0 {
                return Err(ManagerError::Remote(super::error::RemoteError::Invalid(
                    "a bounded queue needs a maxsize of at least 1".into(),
                )));
            }
            self.core(ObjectSpec::Queue {
                maxsize: Some(maxsize as u64),
            })
            .map(QueueProxy::from_core)
        }
    };
}

impl Manager {
    fn core(&self, spec: ObjectSpec) -> Result<ProxyCore, ManagerError> {
        self.create(spec, None)
    }

    creation_methods!();
}

/// The objects registered under one name on a manager: see [`Manager::named`].
#[derive(Debug, Clone, Copy)]
pub struct NamedObjects<'a> {
    manager: &'a Manager,
    name: &'a str,
}

impl NamedObjects<'_> {
    fn core(&self, spec: ObjectSpec) -> Result<ProxyCore, ManagerError> {
        self.manager.create(spec, Some(self.name))
    }

    creation_methods!();
}
