//! `Imap` and `ImapUnordered`: lazy maps over a long (even endless) iterator, in input order or
//! as results come, with a bounded number of chunks in flight, so memory does not grow with the
//! input.
use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

use herd_worker::{encode_payload, JobId, JobKind};

use crate::pool::async_result::{chunk_items, deadline_after};
use crate::pool::{Pool, PoolError};

/// What both lazy maps share: the inputs not yet sent, and the chunks in flight.
struct Feed<'pool, K: JobKind, I> {
    pool: &'pool Pool,
    inputs: I,
    chunksize: usize,
    /// Chunks in flight at most.
    window: usize,
    /// Submitted chunks whose results are not taken yet, in submission order.
    in_flight: VecDeque<JobId>,
    /// Items of taken chunks not yet yielded.
    ready: VecDeque<Result<K::Output, PoolError>>,
    /// The inputs are used up (or submitting failed, which ends the feed).
    exhausted: bool,
}

impl<'pool, K: JobKind, I: Iterator<Item = K::Input>> Feed<'pool, K, I> {
    fn new(pool: &'pool Pool, inputs: I, chunksize: usize) -> Self {
        Self {
            pool,
            inputs,
            chunksize,
            window: pool.workers() * 4,
            in_flight: VecDeque::new(),
            ready: VecDeque::new(),
            exhausted: false,
        }
    }

    /// Sends chunks until the window is full or the inputs run out; a failure to send is
    /// yielded as an item and ends the feed.
    fn top_up(&mut self) {
        while !self.exhausted && self.in_flight.len() < self.window {
            let chunk: Vec<K::Input> = self.inputs.by_ref().take(self.chunksize).collect();
            if chunk.is_empty() {
                self.exhausted = true;
                break;
            }
            let submitted = encode_payload(&chunk)
                .map_err(PoolError::from)
                .and_then(|payload| {
                    self.pool
                        .shared
                        .submit(K::NAME, payload, true)
                        .ok_or(PoolError::Closed)
                });
            match submitted {
                Ok(id) => self.in_flight.push_back(id),
                Err(error) => {
                    self.ready.push_back(Err(error));
                    self.exhausted = true;
                }
            }
        }
    }

    /// Takes chunk `id`'s outcome (it must be in) and queues its items.
    fn take(&mut self, id: JobId) {
        let mut state = self.pool.shared.state();
        let stop = state.stop_reason().cloned();
        if let Some(outcome) = state.collect(id) {
            drop(state);
            self.ready
                .extend(chunk_items::<K::Output>(id, &outcome, stop.as_ref()));
        }
    }

    /// The next item, once `pick` names a chunk whose outcome is in (waiting up to `timeout`).
    fn next_with(
        &mut self,
        timeout: Option<Duration>,
        pick: impl Fn(&VecDeque<JobId>, &crate::pool::engine::State) -> Option<usize>,
    ) -> Option<Result<K::Output, PoolError>> {
        self.top_up();
        if let Some(item) = self.ready.pop_front() {
            return Some(item);
        }
        if self.in_flight.is_empty() {
            return None;
        }
        let deadline = timeout.and_then(deadline_after);
        let mut picked = None;
        let in_time = self.pool.shared.wait_until(deadline, |state| {
            picked = pick(&self.in_flight, state);
            picked.is_some()
        });
        if !in_time {
            return Some(Err(PoolError::Timeout(timeout.unwrap_or(Duration::MAX))));
        }
        // Over without an outcome: the head one reports why.
        let index = picked.unwrap_or(0);
        let id = self.in_flight.remove(index)?;
        self.take(id);
        self.top_up();
        self.ready.pop_front()
    }
}

impl<K: JobKind, I> Drop for Feed<'_, K, I> {
    fn drop(&mut self) {
        let mut state = self.pool.shared.state();
        for &id in &self.in_flight {
            state.abandon(id);
        }
    }
}

/// The outputs of [`Pool::imap`], in input order, computed a bounded window ahead.
pub struct Imap<'pool, K: JobKind, I> {
    feed: Feed<'pool, K, I>,
}

impl<'pool, K: JobKind, I: Iterator<Item = K::Input>> Imap<'pool, K, I> {
    pub(crate) fn new(pool: &'pool Pool, inputs: I, chunksize: usize) -> Self {
        Self {
            feed: Feed::new(pool, inputs, chunksize),
        }
    }

    /// The next output, waiting at most `timeout` (`Duration::MAX`: no limit);
    /// `Some(Err(PoolError::Timeout))` if it is not there in time (call again to keep waiting).
    pub fn next_timeout(&mut self, timeout: Duration) -> Option<Result<K::Output, PoolError>> {
        self.feed.next_with(Some(timeout), in_order)
    }
}

fn in_order(in_flight: &VecDeque<JobId>, state: &crate::pool::engine::State) -> Option<usize> {
    in_flight.front().filter(|&&id| state.has(id)).map(|_| 0)
}

fn any_done(in_flight: &VecDeque<JobId>, state: &crate::pool::engine::State) -> Option<usize> {
    in_flight.iter().position(|&id| state.has(id))
}

impl<K: JobKind, I: Iterator<Item = K::Input>> Iterator for Imap<'_, K, I> {
    type Item = Result<K::Output, PoolError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.feed.next_with(None, in_order)
    }
}

impl<K: JobKind, I> fmt::Debug for Imap<'_, K, I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Imap")
            .field("chunks_in_flight", &self.feed.in_flight.len())
            .finish_non_exhaustive()
    }
}

/// The outputs of [`Pool::imap_unordered`], as they finish, computed a bounded window ahead.
pub struct ImapUnordered<'pool, K: JobKind, I> {
    feed: Feed<'pool, K, I>,
}

impl<'pool, K: JobKind, I: Iterator<Item = K::Input>> ImapUnordered<'pool, K, I> {
    pub(crate) fn new(pool: &'pool Pool, inputs: I, chunksize: usize) -> Self {
        Self {
            feed: Feed::new(pool, inputs, chunksize),
        }
    }

    /// The next output to finish, waiting at most `timeout` (`Duration::MAX`: no limit);
    /// `Some(Err(PoolError::Timeout))` if none is there in time.
    pub fn next_timeout(&mut self, timeout: Duration) -> Option<Result<K::Output, PoolError>> {
        self.feed.next_with(Some(timeout), any_done)
    }
}

impl<K: JobKind, I: Iterator<Item = K::Input>> Iterator for ImapUnordered<'_, K, I> {
    type Item = Result<K::Output, PoolError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.feed.next_with(None, any_done)
    }
}

impl<K: JobKind, I> fmt::Debug for ImapUnordered<'_, K, I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImapUnordered")
            .field("chunks_in_flight", &self.feed.in_flight.len())
            .finish_non_exhaustive()
    }
}
