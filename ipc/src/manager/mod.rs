//! The Manager, as `multiprocessing.Manager`: a server process owns shared objects (dicts, lists,
//! namespaces, locks, semaphores, events, conditions, queues) and proxies in any process work on
//! them over a Unix socket or TCP, after an authkey handshake in both directions.

mod address;
pub(crate) mod auth;
mod client;
mod error;
mod frame;
pub(crate) mod handshake;
mod launch;
#[allow(clippy::module_inception)]
mod manager;
mod protocol;
mod proxy;
mod server;
mod store;
pub(crate) mod stream;
mod throttle;

pub use address::{Address, Authkey};
pub use error::{
    GetTimeoutError, ManagerError, PutTimeoutError, RemoteError, TryGetError, TryPutError,
};
pub use manager::{Manager, ManagerBuilder, NamedObjects};
pub use proxy::{
    ConditionProxy, DictProxy, EventProxy, ListProxy, LockProxy, LockProxyGuard, NamespaceProxy,
    QueueProxy, RLockProxy, SemaphoreProxy,
};

#[cfg(test)]
mod tests;
