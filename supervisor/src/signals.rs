//! `SignalInbox`: the supervisor's signals, turned into events its single-threaded loop polls.
//!
//! gunicorn's arbiter pattern: handlers only record (signal-hook sets a flag per signal and
//! writes a byte to a self-pipe); the main loop wakes on the pipe and acts. No logic runs in a
//! handler, and no thread is needed, so the loop may fork.
//!
//! A forked worker inherits these handlers and the self-pipe: a signal sent to the worker would
//! wake the supervisor. [`InheritedHandlers::forget_in_child`] unregisters them in the child, and
//! [`InheritedHandlers::block`] keeps them from running between `fork` and that call.
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use signal_hook::SigId;

/// The signals the supervisor handles.
pub const HANDLED: [Signal; 6] = [
    Signal::SIGCHLD,
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGTTIN,
    Signal::SIGTTOU,
    Signal::SIGUSR1,
];

/// Where the supervision loop gets its signals: a pollable descriptor that turns readable when
/// one arrives, and the signals that arrived since the last call.
pub trait SignalSource: AsFd {
    /// The signals recorded since the last call.
    fn take(&mut self) -> Vec<Signal>;
}

/// Recorded signals and the pipe that announces them.
#[derive(Debug)]
pub struct SignalInbox {
    wake_read: UnixStream,
    wake_write: UnixStream,
    flags: Vec<(Signal, Arc<AtomicBool>)>,
    ids: Vec<SigId>,
}

/// Wakes the loop waiting on a [`SignalInbox`] from another thread, as a signal would (without
/// recording one): for a loop that also takes work from other threads.
#[derive(Debug)]
pub struct Waker(UnixStream);

impl Waker {
    /// Makes the inbox's descriptor readable (once; more wake-ups before the loop looks are one).
    pub fn wake(&self) {
        // A full pipe already wakes the loop; nothing else can fail on a connected socket.
        let _ = (&self.0).write(&[1]);
    }
}

/// The registrations to undo in a forked child, for a fork closure to carry.
#[derive(Debug, Clone)]
pub struct InheritedHandlers(Vec<SigId>);

impl InheritedHandlers {
    /// Blocks the handled signals until the guard drops (around `fork`).
    pub fn block(&self) -> io::Result<BlockedSignals> {
        let mut old = SigSet::empty();
        nix::sys::signal::pthread_sigmask(
            SigmaskHow::SIG_BLOCK,
            Some(&handled_set()),
            Some(&mut old),
        )?;
        Ok(BlockedSignals(old))
    }

    /// Unregisters the supervisor's handlers in a forked child and unblocks the signals.
    pub fn forget_in_child(&self) {
        for id in &self.0 {
            signal_hook::low_level::unregister(*id);
        }
        let _ = handled_set().thread_unblock();
    }
}

fn handled_set() -> SigSet {
    let mut set = SigSet::empty();
    for signal in HANDLED {
        set.add(signal);
    }
    set
}

/// While alive, the handled signals are blocked in this thread (held pending, not lost).
#[derive(Debug)]
pub struct BlockedSignals(SigSet);

impl Drop for BlockedSignals {
    fn drop(&mut self) {
        let _ = nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&self.0), None);
    }
}

impl SignalInbox {
    /// Installs handlers for every signal the `supervisor` binary handles: SIGCHLD, SIGINT,
    /// SIGTERM, SIGTTIN, SIGTTOU and SIGUSR1.
    pub fn install() -> io::Result<Self> {
        Self::install_for(&HANDLED)
    }

    /// Installs handlers for `signals` only, e.g. just SIGCHLD in a program embedding a
    /// [`crate::Pool`], which keeps its own SIGINT behaviour.
    pub fn install_for(signals: &[Signal]) -> io::Result<Self> {
        let (wake_read, wake_write) = UnixStream::pair()?;
        wake_read.set_nonblocking(true)?;
        wake_write.set_nonblocking(true)?;
        let mut flags = Vec::new();
        let mut ids = Vec::new();
        for &signal in signals {
            let flag = Arc::new(AtomicBool::new(false));
            ids.push(signal_hook::flag::register(
                signal as i32,
                Arc::clone(&flag),
            )?);
            ids.push(signal_hook::low_level::pipe::register(
                signal as i32,
                wake_write.try_clone()?,
            )?);
            flags.push((signal, flag));
        }
        Ok(Self {
            wake_read,
            wake_write,
            flags,
            ids,
        })
    }

    /// A [`Waker`] for this inbox, to use from other threads.
    pub fn waker(&self) -> io::Result<Waker> {
        Ok(Waker(self.wake_write.try_clone()?))
    }

    /// What a forked child must unregister.
    pub fn inherited(&self) -> InheritedHandlers {
        InheritedHandlers(self.ids.clone())
    }
}

impl SignalSource for SignalInbox {
    /// The signals recorded since the last call, in the order of the handled set.
    fn take(&mut self) -> Vec<Signal> {
        let mut sink = [0u8; 64];
        while matches!(self.wake_read.read(&mut sink), Ok(n) if n > 0) {}
        self.flags
            .iter()
            .filter(|(_, flag)| flag.swap(false, Ordering::Relaxed))
            .map(|(signal, _)| *signal)
            .collect()
    }
}

impl AsFd for SignalInbox {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.wake_read.as_fd()
    }
}

impl Drop for SignalInbox {
    fn drop(&mut self) {
        for id in self.ids.drain(..) {
            signal_hook::low_level::unregister(id);
        }
    }
}
