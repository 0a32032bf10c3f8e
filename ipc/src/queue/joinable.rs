//! [`JoinableQueue<T>`]: a [`Queue`] whose consumers confirm each message with
//! [`task_done`](JoinableQueue::task_done), so that [`join`](JoinableQueue::join) can wait until
//! every message put has been processed.

use std::fmt;
use std::ops::Deref;
use std::time::{Duration, Instant};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::errors::{JoinTimeoutError, TaskDoneError};
use super::Queue;
use crate::codec;

/// A [`Queue`] plus task accounting, like Python's `multiprocessing.JoinableQueue`. Every queue
/// operation is available through `Deref`.
///
/// The count of unfinished tasks is "messages ever put minus `task_done` calls", both kept in
/// shared memory. A consumer killed between `get` and `task_done` leaves its task unfinished for
/// ever: `join` would wait for it, so use [`join_timeout`](JoinableQueue::join_timeout) where
/// consumers may die.
pub struct JoinableQueue<T> {
    queue: Queue<T>,
}

impl<T> JoinableQueue<T> {
    pub(super) fn from_queue(queue: Queue<T>) -> Self {
        JoinableQueue { queue }
    }

    /// Marks one message taken from the queue as processed. Fails if called more times than
    /// messages were put.
    pub fn task_done(&self) -> Result<(), TaskDoneError> {
        self.queue.raw.task_done()
    }

    /// Waits until every message put so far has been marked done.
    pub fn join(&self) {
        // Without a deadline the wait only ends when the count reaches zero.
        let _ = self.queue.raw.join(None);
    }

    /// Waits at most `timeout` until every message put so far has been marked done.
    pub fn join_timeout(&self, timeout: Duration) -> Result<(), JoinTimeoutError> {
        self.queue
            .raw
            .join(Instant::now().checked_add(timeout))
            .map_err(|unfinished| JoinTimeoutError { unfinished })
    }

    /// Messages put but not yet marked done (snapshot).
    pub fn unfinished_tasks(&self) -> usize {
        self.queue.raw.unfinished() as usize
    }
}

impl<T> Deref for JoinableQueue<T> {
    type Target = Queue<T>;

    fn deref(&self) -> &Queue<T> {
        &self.queue
    }
}

impl<T> Clone for JoinableQueue<T> {
    fn clone(&self) -> Self {
        JoinableQueue {
            queue: self.queue.clone(),
        }
    }
}

impl<T> fmt::Debug for JoinableQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("JoinableQueue").field(&self.queue).finish()
    }
}

impl<T> Serialize for JoinableQueue<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.queue.serialize(serializer)
    }
}

impl<'de, T> Deserialize<'de> for JoinableQueue<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let queue = Queue::<T>::deserialize(deserializer)?;
        if !queue.raw.layout().joinable {
            return Err(codec::de_error(
                "received queue was created as a plain Queue, not a JoinableQueue",
            ));
        }
        Ok(JoinableQueue { queue })
    }
}
