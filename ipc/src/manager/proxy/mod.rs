//! Proxies: typed handles on the server's objects, one file per kind over a shared core.

mod condition;
mod core;
mod dict;
mod event;
mod list;
mod lock;
mod namespace;
mod queue;
mod semaphore;
mod shared;

pub(crate) use self::core::{encode, ProxyCore};
pub use condition::ConditionProxy;
pub use dict::DictProxy;
pub use event::EventProxy;
pub use list::ListProxy;
pub use lock::{LockProxy, LockProxyGuard, RLockProxy};
pub use namespace::NamespaceProxy;
pub use queue::QueueProxy;
pub use semaphore::SemaphoreProxy;
pub use shared::SharedProxy;
