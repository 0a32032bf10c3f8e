//! Event counts: how a queue operation that cannot proceed sleeps until another process changes
//! the ring, without polling and without a system call on the waker's fast path.
//!
//! A [`WaitLine`] holds `seq` (the futex word) and `sleepers`: how many waiters are registered
//! and how many wake-ups were issued to them that they have not yet acted on ("claims"). A waiter
//! reads `seq`, registers, re-checks its condition and only then sleeps on `seq`; a waker that
//! has just changed the ring looks at `sleepers` and, only if some registered waiter is not yet
//! claimed, claims one, bumps `seq` and issues `futex_wake`. All these accesses are `SeqCst`, so
//! either the waker sees the registration or the waiter's re-check sees the change (the classic
//! store-load handshake); and a bump between the waiter's read of `seq` and its sleep makes the
//! futex refuse to sleep.
//!
//! Claims keep a busy waker from issuing a system call per operation while a woken waiter is
//! still on its way back to the CPU (on a loaded machine that takes milliseconds). Every claim is
//! made after the registrations it counts, so it makes one of those waiters leave (woken, or the
//! futex refuses to sleep on the bumped `seq`); every leaving waiter drops one claim, and claims
//! never exceed registered waiters, so a waiter that nobody is about to wake is always unclaimed.
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
    wait_rechecking_every(line, deadline, LOST_WAKE_RECHECK, ready)
}

/// [`wait_until`] with the longest single sleep as a parameter (the tests set it out of reach
/// to show that no wake-up is lost).
fn wait_rechecking_every(
    line: &WaitLine,
    deadline: Option<Instant>,
    recheck: Duration,
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
        line.sleepers.fetch_add(ONE_WAITER, Ordering::SeqCst);
        if ready() {
            leave(line);
            return Waited::Ready;
        }
        // A re-check period past what the clock holds means no re-check, not an overflow panic.
        let recheck_at = Instant::now().checked_add(recheck);
        let sleep_until = match (deadline, recheck_at) {
            (Some(deadline), Some(recheck_at)) => Some(deadline.min(recheck_at)),
            (deadline, recheck_at) => deadline.or(recheck_at),
        };
        let outcome = futex_wait(&line.seq, seq, sleep_until);
        leave(line);
        if ready() {
            return Waited::Ready;
        }
        if outcome == FutexWait::TimedOut && deadline.is_some_and(|d| Instant::now() >= d) {
            return Waited::TimedOut;
        }
    }
}

/// `sleepers` counts waiters in its low half and claims in its high half.
const ONE_WAITER: u64 = 1;
const ONE_CLAIM: u64 = 1 << 32;

fn waiters(sleepers: u64) -> u32 {
    sleepers as u32
}

fn claims(sleepers: u64) -> u32 {
    (sleepers >> 32) as u32
}

/// Deregisters a waiter, dropping one claim (claims never exceed the waiters left).
fn leave(line: &WaitLine) {
    let mut current = line.sleepers.load(Ordering::SeqCst);
    loop {
        let waiters = waiters(current).saturating_sub(1);
        let claims = claims(current).saturating_sub(1).min(waiters);
        let next = (u64::from(claims) << 32) | u64::from(waiters);
        match line
            .sleepers
            .compare_exchange_weak(current, next, Ordering::SeqCst, Ordering::SeqCst)
        {
            Ok(_) => return,
            Err(actual) => current = actual,
        }
    }
}

/// Called after a change that may satisfy one waiter: wakes one, unless every registered waiter
/// already has a wake-up on its way.
pub(crate) fn wake_one(line: &WaitLine) {
    let mut current = line.sleepers.load(Ordering::SeqCst);
    loop {
        if waiters(current) <= claims(current) {
            return;
        }
        match line.sleepers.compare_exchange_weak(
            current,
            current + ONE_CLAIM,
            Ordering::SeqCst,
            Ordering::SeqCst,
        ) {
            Ok(_) => break,
            Err(actual) => current = actual,
        }
    }
    line.seq.fetch_add(1, Ordering::SeqCst);
    futex_wake(&line.seq, 1);
}

/// Called after a change that may satisfy every waiter (close, recovery, join completion).
pub(crate) fn wake_all(line: &WaitLine) {
    line.seq.fetch_add(1, Ordering::SeqCst);
    futex_wake_all(&line.seq);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, AtomicU64};

    fn line() -> WaitLine {
        WaitLine {
            seq: AtomicU32::new(0),
            sleepers: AtomicU64::new(0),
        }
    }

    #[test]
    fn one_wake_up_per_unclaimed_waiter_and_claims_leave_with_the_waiters() {
        let line = line();
        wake_one(&line);
        assert_eq!(line.seq.load(Ordering::SeqCst), 0, "no waiter: no wake-up");
        line.sleepers.fetch_add(2 * ONE_WAITER, Ordering::SeqCst);
        wake_one(&line);
        wake_one(&line);
        wake_one(&line);
        assert_eq!(
            line.seq.load(Ordering::SeqCst),
            2,
            "two waiters: two wake-ups"
        );
        assert_eq!(claims(line.sleepers.load(Ordering::SeqCst)), 2);
        leave(&line);
        wake_one(&line);
        assert_eq!(
            line.seq.load(Ordering::SeqCst),
            2,
            "the one left is claimed"
        );
        leave(&line);
        assert_eq!(line.sleepers.load(Ordering::SeqCst), 0);
        // A waiter leaving on its own (timeout) never leaves a claim behind for nobody.
        line.sleepers.fetch_add(ONE_WAITER, Ordering::SeqCst);
        leave(&line);
        line.sleepers.fetch_add(ONE_WAITER, Ordering::SeqCst);
        wake_one(&line);
        assert_eq!(line.seq.load(Ordering::SeqCst), 3);
    }

    /// Rounds of three sleeping takers and a burst of three events, each followed by a wake-up:
    /// every taker must be woken. Sleeps are never cut short by the lost-wake re-check, so a lost
    /// wake-up would leave a taker asleep until its deadline.
    #[test]
    fn a_burst_of_changes_wakes_as_many_sleepers() {
        let line = line();
        let events = AtomicU32::new(0);
        let take_one = || {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let ready = || events.load(Ordering::SeqCst) > 0;
                let forever = Duration::from_secs(3600);
                let waited = wait_rechecking_every(&line, Some(deadline), forever, ready);
                // Only a lost wake-up keeps a taker asleep until its deadline.
                if waited == Waited::TimedOut || Instant::now() >= deadline {
                    return false;
                }
                let available = events.load(Ordering::SeqCst);
                if available > 0
                    && events
                        .compare_exchange(
                            available,
                            available - 1,
                            Ordering::SeqCst,
                            Ordering::SeqCst,
                        )
                        .is_ok()
                {
                    return true;
                }
            }
        };
        for _ in 0..8 {
            std::thread::scope(|s| {
                let takers: Vec<_> = (0..3).map(|_| s.spawn(take_one)).collect();
                while waiters(line.sleepers.load(Ordering::SeqCst)) < 3 {
                    std::thread::sleep(Duration::from_millis(1));
                }
                for _ in 0..3 {
                    events.fetch_add(1, Ordering::SeqCst);
                    wake_one(&line);
                }
                for taker in takers {
                    assert!(taker.join().unwrap(), "a taker was never woken");
                }
            });
        }
    }
}
