//! `BoundedSemaphore`: a [`super::Semaphore`] that refuses to be released above its initial
//! value, catching a release without a matching acquire.

use std::fmt;
use std::io;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use super::semaphore::SemaphoreState;
use super::shared_handle_serde;
use super::timeout::{deadline_after, TimedOut};
use crate::platform::{SharedLayout, SharedState};

#[repr(C)]
pub(crate) struct BoundedSemaphoreState {
    units: SemaphoreState,
    bound: AtomicU32,
}

// The state type is declared here, so its layout promise is made here; the trait and the
// segment code that relies on it are in the OS layer (platform/shared_state.rs).
#[allow(unsafe_code)]
// SAFETY: repr(C), atomics only (SemaphoreState is atomics only), zero is valid.
unsafe impl SharedLayout for BoundedSemaphoreState {
    const KIND: &'static str = "herd.BoundedSemaphore";
}

/// `release` was called more times than `acquire`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("bounded semaphore released too many times (its bound is {bound})")]
pub struct OverReleased {
    /// The semaphore's initial value, which the count may not exceed.
    pub bound: u32,
}

/// A process-shared semaphore whose count may not rise above its initial value
/// (multiprocessing.BoundedSemaphore).
#[derive(Clone)]
pub struct BoundedSemaphore {
    state: SharedState<BoundedSemaphoreState>,
}

impl BoundedSemaphore {
    /// Creates a semaphore holding `value` units, which is also its bound.
    pub fn new(value: u32) -> io::Result<Self> {
        let state = SharedState::create(
            "bounded-semaphore",
            "",
            0,
            |state: &mut BoundedSemaphoreState| {
                state.bound = AtomicU32::new(value);
                SemaphoreState::with_count(value)(&mut state.units)
            },
        )?;
        Ok(Self { state })
    }

    fn units(&self) -> &SemaphoreState {
        &self.state.state().units
    }

    /// The bound (the initial value).
    pub fn bound(&self) -> u32 {
        self.state.state().bound.load(Ordering::Relaxed)
    }

    /// Takes one unit, waiting as long as none is available.
    pub fn acquire(&self) {
        // Without a deadline the wait only ends by acquiring.
        let _ = self.units().acquire_until(None);
    }

    /// Takes one unit if one is available now.
    #[must_use = "false means no unit was acquired"]
    pub fn try_acquire(&self) -> bool {
        self.units().try_acquire()
    }

    /// Takes one unit, waiting at most `timeout`.
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<(), TimedOut> {
        self.units().acquire_until(deadline_after(timeout))
    }

    /// Gives one unit back, or fails without changing the count if that would exceed the bound.
    pub fn release(&self) -> Result<(), OverReleased> {
        let bound = self.bound();
        if self.units().release_bounded(bound) {
            Ok(())
        } else {
            Err(OverReleased { bound })
        }
    }

    /// The number of units available at this instant (approximate under concurrency).
    pub fn value(&self) -> u32 {
        self.units().value()
    }
}

impl fmt::Debug for BoundedSemaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BoundedSemaphore")
            .field("value", &self.value())
            .field("bound", &self.bound())
            .finish()
    }
}

shared_handle_serde!(BoundedSemaphore, state);
