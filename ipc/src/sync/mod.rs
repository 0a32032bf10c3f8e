//! Process-shared synchronisation primitives (multiprocessing's Lock, RLock, Semaphore,
//! BoundedSemaphore, Event, Condition and Barrier), each living in its own memfd segment.
//!
//! Every handle is `Clone` (clones share the segment), `Send + Sync`, moves into a fork child's
//! closure as is, and travels to spawned children or through Pipes as its segment's fd
//! (`Serialize`/`Deserialize` through the codec).

mod barrier;
mod bounded_semaphore;
mod condition;
mod event;
mod lock;
mod lock_error;
mod rlock;
mod semaphore;
mod timeout;

pub use barrier::{Barrier, BarrierWaitError};
pub use bounded_semaphore::{BoundedSemaphore, OverReleased};
pub use condition::{
    Condition, ConditionGuard, ConditionLockHandle, ConditionLockKind, ConditionWaitError,
};
pub use event::Event;
pub use lock::{Lock, LockGuard};
pub use lock_error::{LockError, LockFailure, LockTimeoutError, OwnerDied, TryLockError};
pub use rlock::RLock;
pub use semaphore::Semaphore;
pub(crate) use timeout::deadline_after;
pub use timeout::TimedOut;

/// Implements `Serialize`/`Deserialize` for a handle whose only field `$field` is a
/// `SharedState<$state>`: the segment travels as its fd and is checked on arrival.
macro_rules! shared_handle_serde {
    ($handle:ident, $field:ident) => {
        impl serde::Serialize for $handle {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                crate::codec::serialize_fd(std::os::fd::AsFd::as_fd(&self.$field), serializer)
            }
        }

        impl<'de> serde::Deserialize<'de> for $handle {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let fd = crate::codec::deserialize_fd(deserializer)?;
                let $field = crate::platform::SharedState::from_fd(fd, "")
                    .map_err(<D::Error as serde::de::Error>::custom)?;
                Ok(Self { $field })
            }
        }
    };
}
pub(crate) use shared_handle_serde;
