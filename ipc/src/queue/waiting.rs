//! Event counts: how a queue operation that cannot proceed sleeps until another process changes
//! the ring, without polling and without a system call on the waker's fast path.
//!
//! A [`WaitLine`] holds `seq` (the futex word) and `waiters` (how many are registered). A waiter
//! reads `seq`, registers, re-checks its condition and only then sleeps on `seq`; a waker that
//! has just changed the ring checks `waiters` and, only if someone is registered, bumps `seq` and
//! issues `futex_wake`. All four accesses are `SeqCst`, so either the waker sees the registration
//! or the waiter's re-check sees the change (the classic store-load handshake); and a bump between
//! the waiter's read of `seq` and its sleep makes the futex refuse to sleep.
//!
//! Before registering, a waiter spins briefly and then yields a few times: on a busy queue the
//! other side usually acts within microseconds, and a wake-up through the kernel costs far more.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::platform::{futex_wait, futex_wake, futex_wake_all, FutexWait, WaitLine};

/// Spin iterations (each a `spin_loop` hint and a check) before yielding.
const SPINS: u32 = 200;
/// `sched_yield` calls (each followed by a check) before sleeping.
const YIELDS: u32 = 4;
/// Longest single sleep. A process SIGKILLed between publishing a change and issuing its wake-up
/// leaves the sleeper unwoken; this bound turns that (rare, microsecond-wide) window into a
/// delayed re-check instead of a hang. It costs an idle waiter one wake-up per interval.
pub(crate) const LOST_WAKE_RECHECK: Duration = Duration::from_millis(500);

/// How a wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Waited {
    /// The condition looked satisfied: retry the operation.
    Ready,
    /// The deadline passed with the condition still unsatisfied.
    TimedOut,
}

/// Waits until `ready()` holds or `deadline` passes. `ready` is a lock-free look at the shared
/// state; the caller retries its locked operation after `Ready` and may find that another
/// process got there first, in which case it simply waits again.
pub(crate) fn wait_until(
    line: &WaitLine,
    deadline: Option<Instant>,
    ready: impl Fn() -> bool,
) -> Waited {
    for _ in 0..SPINS {
        if ready() {
            return Waited::Ready;
        }
        std::hint::spin_loop();
    }
    for _ in 0..YIELDS {
        if ready() {
            return Waited::Ready;
        }
        std::thread::yield_now();
    }
    loop {
        let seq = line.seq.load(Ordering::SeqCst);
        line.waiters.fetch_add(1, Ordering::SeqCst);
        if ready() {
            line.waiters.fetch_sub(1, Ordering::SeqCst);
            return Waited::Ready;
        }
        let recheck_at = Instant::now() + LOST_WAKE_RECHECK;
        let sleep_until = deadline.map_or(recheck_at, |deadline| deadline.min(recheck_at));
        let outcome = futex_wait(&line.seq, seq, Some(sleep_until));
        line.waiters.fetch_sub(1, Ordering::SeqCst);
        if ready() {
            return Waited::Ready;
        }
        if outcome == FutexWait::TimedOut && deadline.is_some_and(|d| Instant::now() >= d) {
            return Waited::TimedOut;
        }
    }
}

/// Called after a change that may satisfy one waiter: wakes one, if any is registered.
pub(crate) fn wake_one(line: &WaitLine) {
    if line.waiters.load(Ordering::SeqCst) > 0 {
        line.seq.fetch_add(1, Ordering::SeqCst);
        futex_wake(&line.seq, 1);
    }
}

/// Called after a change that may satisfy every waiter (close, recovery, join completion).
pub(crate) fn wake_all(line: &WaitLine) {
    line.seq.fetch_add(1, Ordering::SeqCst);
    futex_wake_all(&line.seq);
}
