//! `Event`: a flag shared between processes that waiters sleep on (futex) until it is set.

use std::fmt;
use std::io;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::shared_handle_serde;
use super::timeout::{deadline_after, TimedOut};
use crate::platform::{futex_wait, futex_wake_all, FutexWait, SharedLayout, SharedState};

#[repr(C)]
pub(crate) struct EventState {
    flag: AtomicU32,
    waiters: AtomicU32,
}

// The state type is declared here, so its layout promise is made here; the trait and the
// segment code that relies on it are in the OS layer (platform/shared_state.rs).
#[allow(unsafe_code)]
// SAFETY: repr(C), atomics only, zero is a valid (clear) event.
unsafe impl SharedLayout for EventState {
    const KIND: &'static str = "herd.Event";
}

/// A process-shared event (multiprocessing.Event): `set` wakes every waiter, `clear` resets it.
#[derive(Clone)]
pub struct Event {
    state: SharedState<EventState>,
}

impl Event {
    /// Creates a clear event.
    pub fn new() -> io::Result<Self> {
        let state = SharedState::create("event", "", 0, |_: &mut EventState| Ok(()))?;
        Ok(Self { state })
    }

    /// Sets the flag and wakes every waiter.
    pub fn set(&self) {
        let state = self.state.state();
        // SeqCst pairs with `wait_until`: either we see its waiter count, or its futex sees 1.
        state.flag.store(1, Ordering::SeqCst);
        if state.waiters.load(Ordering::SeqCst) > 0 {
            futex_wake_all(&state.flag);
        }
    }

    /// Clears the flag.
    pub fn clear(&self) {
        self.state.state().flag.store(0, Ordering::SeqCst);
    }

    /// True if the flag is set.
    pub fn is_set(&self) -> bool {
        self.state.state().flag.load(Ordering::Acquire) != 0
    }

    /// Waits until the flag is set.
    pub fn wait(&self) {
        // Without a deadline the wait only ends when the flag is set.
        let _ = self.wait_until(None);
    }

    /// Waits until the flag is set, at most `timeout`.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<(), TimedOut> {
        self.wait_until(deadline_after(timeout))
    }

    fn wait_until(&self, deadline: Option<Instant>) -> Result<(), TimedOut> {
        let state = self.state.state();
        loop {
            if self.is_set() {
                return Ok(());
            }
            state.waiters.fetch_add(1, Ordering::SeqCst);
            let outcome = futex_wait(&state.flag, 0, deadline);
            state.waiters.fetch_sub(1, Ordering::SeqCst);
            if outcome == FutexWait::TimedOut {
                return if self.is_set() { Ok(()) } else { Err(TimedOut) };
            }
        }
    }
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("set", &self.is_set())
            .finish()
    }
}

shared_handle_serde!(Event, state);
