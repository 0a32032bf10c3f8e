//! Robust process-shared mutex: a `pthread_mutex_t` with `PTHREAD_PROCESS_SHARED` and
//! `PTHREAD_MUTEX_ROBUST`, placed in shared memory.
//!
//! When the owning thread's process dies (SIGKILL included), the kernel walks that thread's robust
//! list, marks the mutex "owner died" and wakes one waiter; that waiter acquires the mutex and is
//! told so by [`Acquired::OwnerDied`]. It must then call [`RobustMutex::make_consistent`] before
//! unlocking, or the mutex becomes permanently unusable ([`MutexError::NotRecoverable`]), exactly
//! as POSIX specifies. Ownership is per thread (glibc records the owner's TID).
//!
//! Kinds: [`MutexKind::ErrorCheck`] (relocking from the owning thread is an error, not a silent
//! deadlock) and [`MutexKind::Recursive`] (the owner may relock; it must unlock as many times).

use std::cell::UnsafeCell;
use std::fmt;
use std::io;
use std::time::{Duration, Instant};

// glibc >= 2.30 exports pthread_mutex_clocklock; the libc crate does not declare it yet. It lets a
// timed lock use CLOCK_MONOTONIC, so a wall-clock step cannot stretch or cut a timeout.
extern "C" {
    fn pthread_mutex_clocklock(
        mutex: *mut libc::pthread_mutex_t,
        clock: libc::clockid_t,
        abstime: *const libc::timespec,
    ) -> libc::c_int;
}

/// How the owning thread may relock the mutex.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MutexKind {
    /// Relocking from the owner fails with [`MutexError::Deadlock`].
    ErrorCheck,
    /// The owner may relock; each lock needs its unlock.
    Recursive,
}

/// How a lock attempt succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "OwnerDied means the protected state must be checked and marked consistent"]
pub(crate) enum Acquired {
    /// The previous owner unlocked normally.
    Clean,
    /// The previous owner died while holding the mutex. The caller now owns it and must call
    /// [`RobustMutex::make_consistent`] before unlocking, or the mutex becomes unrecoverable.
    OwnerDied,
}

/// Why a lock attempt did not acquire the mutex.
#[derive(Debug, thiserror::Error)]
pub(crate) enum MutexError {
    /// `try_lock`: another thread holds the mutex.
    #[error("the mutex is held by another thread")]
    WouldBlock,
    /// `lock_until`: the deadline passed first.
    #[error("timed out waiting for the mutex")]
    TimedOut,
    /// An owner died and the next owner unlocked without marking the state consistent.
    #[error("the mutex is unrecoverable: an owner died and the state was never marked consistent")]
    NotRecoverable,
    /// The calling thread already holds this (non-recursive) mutex.
    #[error("the calling thread already holds this mutex")]
    Deadlock,
    /// Any other error reported by pthreads.
    #[error("pthread mutex operation failed: {0}")]
    Os(#[source] io::Error),
}

/// A robust, process-shared pthread mutex. Lives in shared memory; see [`RobustMutex::init`].
#[repr(C)]
pub(crate) struct RobustMutex {
    raw: UnsafeCell<libc::pthread_mutex_t>,
}

// SAFETY: a process-shared pthread mutex is designed to be used concurrently from any thread of any
// process that maps it; all access to the inner value goes through pthread calls.
unsafe impl Sync for RobustMutex {}
// SAFETY: as for Sync; the value has no thread affinity until locked, and ownership is tracked by
// TID inside the mutex word, not by the Rust value.
unsafe impl Send for RobustMutex {}

impl RobustMutex {
    /// Initialises a mutex in place and returns a reference to it.
    ///
    /// # Safety
    /// `place` must be valid for writes of `size_of::<RobustMutex>()` bytes, aligned for
    /// `RobustMutex`, stay mapped for `'a`, and not be in use as a mutex by any thread or process
    /// (a freshly created segment that nobody else has seen yet).
    pub(crate) unsafe fn init<'a>(
        place: *mut RobustMutex,
        kind: MutexKind,
    ) -> io::Result<&'a Self> {
        let mut attr = std::mem::MaybeUninit::<libc::pthread_mutexattr_t>::uninit();
        let kind = match kind {
            MutexKind::ErrorCheck => libc::PTHREAD_MUTEX_ERRORCHECK,
            MutexKind::Recursive => libc::PTHREAD_MUTEX_RECURSIVE,
        };
        // SAFETY: `attr` is writable storage for an attribute object; pthread_mutexattr_init
        // initialises it, the setters only modify it, and it is destroyed before returning.
        // `place` is valid and unused per this function's contract, so initialising a mutex
        // there races with nobody.
        unsafe {
            check(libc::pthread_mutexattr_init(attr.as_mut_ptr()))?;
            let result = (|| {
                check(libc::pthread_mutexattr_setpshared(
                    attr.as_mut_ptr(),
                    libc::PTHREAD_PROCESS_SHARED,
                ))?;
                check(libc::pthread_mutexattr_setrobust(
                    attr.as_mut_ptr(),
                    libc::PTHREAD_MUTEX_ROBUST,
                ))?;
                check(libc::pthread_mutexattr_settype(attr.as_mut_ptr(), kind))?;
                check(libc::pthread_mutex_init(
                    UnsafeCell::raw_get(std::ptr::addr_of!((*place).raw)),
                    attr.as_ptr(),
                ))
            })();
            libc::pthread_mutexattr_destroy(attr.as_mut_ptr());
            result?;
            Ok(&*place)
        }
    }

    /// Initialises a mutex that is part of freshly created shared state. The `&mut` proves that no
    /// thread uses it; shared state is only handed out mutably by `SharedState::create`, before any
    /// other process can see the segment.
    pub(crate) fn init_in_place(&mut self, kind: MutexKind) -> io::Result<()> {
        // SAFETY: `self` is valid, aligned, writable and exclusively borrowed, so nobody uses it as
        // a mutex while it is initialised.
        unsafe { Self::init(self, kind) }.map(|_| ())
    }

    /// Blocks until the mutex is acquired.
    pub(crate) fn lock(&self) -> Result<Acquired, MutexError> {
        // SAFETY: `raw` is an initialised process-shared mutex (type invariant of RobustMutex).
        outcome(unsafe { libc::pthread_mutex_lock(self.raw.get()) })
    }

    /// Acquires the mutex only if no other thread holds it.
    pub(crate) fn try_lock(&self) -> Result<Acquired, MutexError> {
        // SAFETY: as in `lock`.
        match unsafe { libc::pthread_mutex_trylock(self.raw.get()) } {
            libc::EBUSY => Err(MutexError::WouldBlock),
            rc => outcome(rc),
        }
    }

    /// Blocks until the mutex is acquired or `deadline` passes.
    pub(crate) fn lock_until(&self, deadline: Instant) -> Result<Acquired, MutexError> {
        let abstime = monotonic_after(deadline.saturating_duration_since(Instant::now()));
        // SAFETY: as in `lock`; `abstime` is a valid timespec on our stack for the whole call.
        match unsafe { pthread_mutex_clocklock(self.raw.get(), libc::CLOCK_MONOTONIC, &abstime) } {
            libc::ETIMEDOUT => Err(MutexError::TimedOut),
            rc => outcome(rc),
        }
    }

    /// Blocks until the mutex is acquired or `timeout` elapses.
    pub(crate) fn lock_timeout(&self, timeout: Duration) -> Result<Acquired, MutexError> {
        match Instant::now().checked_add(timeout) {
            Some(deadline) => self.lock_until(deadline),
            None => self.lock(),
        }
    }

    /// Marks the state protected by a mutex acquired with [`Acquired::OwnerDied`] as consistent
    /// again. Must be called by the owning thread before it unlocks.
    pub(crate) fn make_consistent(&self) -> io::Result<()> {
        // SAFETY: as in `lock`; glibc checks that the caller owns an inconsistent robust mutex.
        check(unsafe { libc::pthread_mutex_consistent(self.raw.get()) })
    }

    /// Unlocks the mutex. Fails (EPERM) if the calling thread does not own it; robust mutexes
    /// check ownership, so a wrong call cannot release someone else's lock.
    pub(crate) fn unlock(&self) -> io::Result<()> {
        // SAFETY: as in `lock`.
        check(unsafe { libc::pthread_mutex_unlock(self.raw.get()) })
    }
}

impl fmt::Debug for RobustMutex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RobustMutex").finish_non_exhaustive()
    }
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(rc))
    }
}

fn outcome(rc: libc::c_int) -> Result<Acquired, MutexError> {
    match rc {
        0 => Ok(Acquired::Clean),
        libc::EOWNERDEAD => Ok(Acquired::OwnerDied),
        libc::ENOTRECOVERABLE => Err(MutexError::NotRecoverable),
        libc::EDEADLK => Err(MutexError::Deadlock),
        rc => Err(MutexError::Os(io::Error::from_raw_os_error(rc))),
    }
}

/// The CLOCK_MONOTONIC time `after` from now, as an absolute timespec.
fn monotonic_after(after: Duration) -> libc::timespec {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid timespec to write; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    let secs = libc::time_t::try_from(after.as_secs()).unwrap_or(libc::time_t::MAX / 2);
    let mut tv_sec = now.tv_sec.saturating_add(secs);
    let mut tv_nsec = now.tv_nsec + libc::c_long::from(after.subsec_nanos());
    if tv_nsec >= 1_000_000_000 {
        tv_sec = tv_sec.saturating_add(1);
        tv_nsec -= 1_000_000_000;
    }
    libc::timespec { tv_sec, tv_nsec }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::SharedMemory;

    fn mutex_in(shm: &SharedMemory, kind: MutexKind) -> &RobustMutex {
        // SAFETY: the segment is fresh, page aligned and far larger than a pthread mutex.
        unsafe { RobustMutex::init(shm.as_ptr().cast(), kind) }.expect("init")
    }

    #[test]
    fn errorcheck_mutex_locks_refuses_relock_and_times_out_across_threads() {
        let shm = SharedMemory::create("mutex-test", 4096).expect("shm");
        let mutex = mutex_in(&shm, MutexKind::ErrorCheck);
        assert_eq!(mutex.lock().expect("lock"), Acquired::Clean);
        assert!(matches!(mutex.lock(), Err(MutexError::Deadlock)));
        std::thread::scope(|s| {
            s.spawn(|| {
                assert!(matches!(mutex.try_lock(), Err(MutexError::WouldBlock)));
                let start = Instant::now();
                let timed = mutex.lock_timeout(Duration::from_millis(50));
                assert!(matches!(timed, Err(MutexError::TimedOut)), "{timed:?}");
                assert!(start.elapsed() >= Duration::from_millis(50));
                assert!(mutex.unlock().is_err(), "a non-owner cannot unlock");
            });
        });
        mutex.unlock().expect("unlock");
        assert_eq!(mutex.try_lock().expect("try_lock"), Acquired::Clean);
        mutex.unlock().expect("unlock");
    }

    #[test]
    fn recursive_mutex_relocks_in_its_owner() {
        let shm = SharedMemory::create("rmutex-test", 4096).expect("shm");
        let mutex = mutex_in(&shm, MutexKind::Recursive);
        assert_eq!(mutex.lock().expect("lock"), Acquired::Clean);
        assert_eq!(mutex.lock().expect("relock"), Acquired::Clean);
        mutex.unlock().expect("unlock 1");
        std::thread::scope(|s| {
            s.spawn(|| assert!(matches!(mutex.try_lock(), Err(MutexError::WouldBlock))));
        });
        mutex.unlock().expect("unlock 2");
        std::thread::scope(|s| {
            s.spawn(|| {
                assert_eq!(mutex.try_lock().expect("free now"), Acquired::Clean);
                mutex.unlock().expect("unlock");
            });
        });
    }

    #[test]
    fn owner_death_is_reported_and_recoverable_or_else_unrecoverable() {
        // A thread that exits while holding a robust mutex is treated like a dead process.
        let shm = SharedMemory::create("dead-owner", 4096).expect("shm");
        let mutex = mutex_in(&shm, MutexKind::ErrorCheck);
        std::thread::scope(|s| {
            s.spawn(|| assert_eq!(mutex.lock().expect("lock"), Acquired::Clean));
        });
        assert_eq!(mutex.lock().expect("lock"), Acquired::OwnerDied);
        mutex.make_consistent().expect("consistent");
        mutex.unlock().expect("unlock");
        assert_eq!(mutex.lock().expect("lock again"), Acquired::Clean);
        mutex.unlock().expect("unlock");

        std::thread::scope(|s| {
            s.spawn(|| assert_eq!(mutex.lock().expect("lock"), Acquired::Clean));
        });
        assert_eq!(mutex.lock().expect("lock"), Acquired::OwnerDied);
        mutex.unlock().expect("unlock without make_consistent");
        assert!(matches!(mutex.lock(), Err(MutexError::NotRecoverable)));
    }
}
