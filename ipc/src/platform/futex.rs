//! Futex wait and wake on a `u32` word that may live in shared memory.
//!
//! The operations are the shared (not `FUTEX_PRIVATE_FLAG`) variants, so a waiter in one process
//! is woken by a waker in another as long as both map the same memory. The kernel keys shared
//! futexes by the backing file page, so the word may sit at different addresses in each process.
//! Waits are bounded by an optional deadline on the monotonic clock and may wake spuriously:
//! callers always re-check their condition in a loop.

use std::sync::atomic::AtomicU32;
use std::time::Instant;

/// Why [`futex_wait`] returned. Every outcome means "re-check your condition".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FutexWait {
    /// A waker woke this waiter (or the wake-up was spurious).
    Woken,
    /// The word no longer held `expected` when the kernel looked, so the thread did not sleep.
    ValueChanged,
    /// The deadline passed.
    TimedOut,
    /// A signal handler ran.
    Interrupted,
}

/// Sleeps while `word` holds `expected`, until woken, or until `deadline` (None: no limit).
pub(crate) fn futex_wait(word: &AtomicU32, expected: u32, deadline: Option<Instant>) -> FutexWait {
    let timeout = match deadline {
        None => None,
        Some(deadline) => {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return FutexWait::TimedOut;
            }
            Some(libc::timespec {
                tv_sec: libc::time_t::try_from(remaining.as_secs()).unwrap_or(libc::time_t::MAX),
                tv_nsec: libc::c_long::from(remaining.subsec_nanos()),
            })
        }
    };
    let timeout_ptr = timeout
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: FUTEX_WAIT only reads the aligned u32 behind `word` (valid for the whole call since we
    // hold a reference to it) and the optional relative timespec, which lives on our stack.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            timeout_ptr,
            std::ptr::null::<u32>(),
            0u32,
        )
    };
    if rc == 0 {
        return FutexWait::Woken;
    }
    match std::io::Error::last_os_error().raw_os_error() {
        Some(libc::EAGAIN) => FutexWait::ValueChanged,
        Some(libc::ETIMEDOUT) => FutexWait::TimedOut,
        Some(libc::EINTR) => FutexWait::Interrupted,
        // EFAULT/EINVAL cannot happen for a valid aligned reference; report a spurious wake so
        // the caller re-checks its condition rather than trusting a result we do not have.
        _ => FutexWait::Woken,
    }
}

/// Wakes up to `count` waiters sleeping on `word`; returns how many were woken.
pub(crate) fn futex_wake(word: &AtomicU32, count: u32) -> usize {
    let count = i32::try_from(count).unwrap_or(i32::MAX);
    // SAFETY: FUTEX_WAKE does not touch the memory behind `word`; it only uses its address as the
    // key of the wait queue.
    let rc = unsafe { libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, count) };
    usize::try_from(rc).unwrap_or(0)
}

/// Wakes every waiter sleeping on `word`.
pub(crate) fn futex_wake_all(word: &AtomicU32) -> usize {
    futex_wake(word, u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn wait_returns_at_once_when_the_value_differs() {
        let word = AtomicU32::new(1);
        assert_eq!(futex_wait(&word, 0, None), FutexWait::ValueChanged);
    }

    #[test]
    fn wait_times_out_at_the_deadline() {
        let word = AtomicU32::new(0);
        let start = Instant::now();
        let outcome = futex_wait(&word, 0, Some(start + Duration::from_millis(50)));
        assert_eq!(outcome, FutexWait::TimedOut);
        assert!(start.elapsed() >= Duration::from_millis(50));
        let past = Instant::now() - Duration::from_millis(1);
        assert_eq!(futex_wait(&word, 0, Some(past)), FutexWait::TimedOut);
    }

    #[test]
    fn wake_releases_a_waiter() {
        let word = Arc::new(AtomicU32::new(0));
        let waiter = {
            let word = Arc::clone(&word);
            std::thread::spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(5);
                while word.load(Ordering::Acquire) == 0 {
                    if futex_wait(&word, 0, Some(deadline)) == FutexWait::TimedOut {
                        return false;
                    }
                }
                true
            })
        };
        std::thread::sleep(Duration::from_millis(20));
        word.store(1, Ordering::Release);
        futex_wake_all(&word);
        assert!(waiter.join().expect("waiter thread"), "waiter timed out");
    }
}
