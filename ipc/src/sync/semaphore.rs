//! `Semaphore`: a counter shared between processes; `acquire` takes one unit (waiting on a futex
//! while it is zero), `release` gives one back and wakes a waiter.
//!
//! The count is a single atomic word, so a process killed at any point cannot leave it locked;
//! units it acquired and never released are lost, as with multiprocessing.

use std::fmt;
use std::io;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::shared_handle_serde;
use super::timeout::{deadline_after, TimedOut};
use crate::platform::{futex_wait, futex_wake, FutexWait, SharedLayout, SharedState};

/// The counter and the number of sleeping acquirers (so `release` skips the wake-up system call
/// when nobody sleeps).
#[repr(C)]
pub(crate) struct SemaphoreState {
    count: AtomicU32,
    waiters: AtomicU32,
}

// The state type is declared here, so its layout promise is made here; the trait and the
// segment code that relies on it are in the OS layer (platform/shared_state.rs).
#[allow(unsafe_code)]
// SAFETY: repr(C), atomics only, zero is a valid (empty) semaphore.
unsafe impl SharedLayout for SemaphoreState {
    const KIND: &'static str = "herd.Semaphore";
}

impl SemaphoreState {
    pub(crate) fn with_count(count: u32) -> impl FnOnce(&mut Self) -> io::Result<()> {
        move |state| {
            state.count = AtomicU32::new(count);
            Ok(())
        }
    }

    pub(crate) fn try_acquire(&self) -> bool {
        let mut current = self.count.load(Ordering::Relaxed);
        while current > 0 {
            match self.count.compare_exchange_weak(
                current,
                current - 1,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(actual) => current = actual,
            }
        }
        false
    }

    pub(crate) fn acquire_until(&self, deadline: Option<Instant>) -> Result<(), TimedOut> {
        loop {
            if self.try_acquire() {
                return Ok(());
            }
            // SeqCst pairs with `release`: either it sees this waiter, or the futex sees its unit.
            self.waiters.fetch_add(1, Ordering::SeqCst);
            let outcome = futex_wait(&self.count, 0, deadline);
            self.waiters.fetch_sub(1, Ordering::SeqCst);
            if outcome == FutexWait::TimedOut {
                return if self.try_acquire() {
                    Ok(())
                } else {
                    Err(TimedOut)
                };
            }
        }
    }

    /// Adds one unit unless that would exceed `bound`; returns false if it would.
    pub(crate) fn release_bounded(&self, bound: u32) -> bool {
        let mut current = self.count.load(Ordering::Relaxed);
        loop {
            if current >= bound {
                return false;
            }
            match self.count.compare_exchange_weak(
                current,
                current + 1,
                Ordering::SeqCst,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(actual) => current = actual,
            }
        }
        if self.waiters.load(Ordering::SeqCst) > 0 {
            futex_wake(&self.count, 1);
        }
        true
    }

    pub(crate) fn value(&self) -> u32 {
        self.count.load(Ordering::Relaxed)
    }
}

/// A process-shared counting semaphore (multiprocessing.Semaphore). Units may be released by a
/// different process than the one that acquired them.
#[derive(Clone)]
pub struct Semaphore {
    state: SharedState<SemaphoreState>,
}

impl Semaphore {
    /// Creates a semaphore holding `value` units.
    pub fn new(value: u32) -> io::Result<Self> {
        let state = SharedState::create("semaphore", "", 0, SemaphoreState::with_count(value))?;
        Ok(Self { state })
    }

    /// Takes one unit, waiting as long as none is available.
    pub fn acquire(&self) {
        // Without a deadline the wait only ends by acquiring.
        let _ = self.state.state().acquire_until(None);
    }

    /// Takes one unit if one is available now.
    #[must_use = "false means no unit was acquired"]
    pub fn try_acquire(&self) -> bool {
        self.state.state().try_acquire()
    }

    /// Takes one unit, waiting at most `timeout`.
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<(), TimedOut> {
        self.state.state().acquire_until(deadline_after(timeout))
    }

    /// Gives one unit back, waking one waiter. Saturates at `u32::MAX` units.
    pub fn release(&self) {
        self.state.state().release_bounded(u32::MAX);
    }

    /// The number of units available at this instant (approximate under concurrency).
    pub fn value(&self) -> u32 {
        self.state.state().value()
    }
}

impl fmt::Debug for Semaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Semaphore")
            .field("value", &self.value())
            .finish()
    }
}

shared_handle_serde!(Semaphore, state);
