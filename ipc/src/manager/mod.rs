//! The Manager, as `multiprocessing.Manager`: a server process owns shared objects (dicts, lists,
//! namespaces, locks, semaphores, events, conditions, queues, and objects of the program's own
//! registered types) and proxies in any process work on them over a Unix socket or TCP, after an
//! authkey handshake in both directions. An object is freed when no proxy of it is left anywhere.

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
pub(crate) mod refs;
mod server;
mod shared;
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
    QueueProxy, RLockProxy, SemaphoreProxy, SharedProxy,
};
pub use shared::{Call, MethodError, SharedMethods, SharedObject};
#[doc(hidden)]
pub use shared::{SharedRegistration, SHARED_TYPES};

#[cfg(test)]
mod tests;
