//! Pipe round trip: a parent sends a `u64` to a forked echo child and waits
//! for it to come back, against the same ping-pong over a raw socketpair
//! (`read`/`write` of 8 bytes, no framing, no codec) in the same run.
//!
//! Each figure is the best of many short batches, in microseconds per round
//! trip: on two cores shared with other work, a slower batch measures the
//! neighbours, not the pipe (Python's `timeit` takes the minimum for the same
//! reason). The batches of the two alternate, so both see the same load.

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::time::Instant;

use anyhow::{bail, Context};
use herd::ipc::{Pipe, RecvError};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};

const ROUND_TRIPS: u64 = 3_000;
const BATCHES: usize = 21;

pub(crate) fn run() -> anyhow::Result<()> {
    let mut raw = f64::INFINITY;
    let mut pipe = f64::INFINITY;
    for _ in 0..BATCHES {
        raw = raw.min(raw_socketpair_roundtrip_us()?);
        pipe = pipe.min(pipe_roundtrip_us()?);
    }
    crate::report("pipe_roundtrip_us", pipe, "us");
    crate::report("raw_socketpair_roundtrip_us", raw, "us");
    Ok(())
}

fn pipe_roundtrip_us() -> anyhow::Result<f64> {
    let (parent, child_end) = Pipe::<u64>::new()?;
    let child = fork_child(parent.as_fd(), || loop {
        match child_end.recv() {
            Ok(value) => {
                if child_end.send(value).is_err() {
                    return 1;
                }
            }
            Err(RecvError::Disconnected) => return 0,
            Err(_) => return 1,
        }
    })?;
    drop(child_end);
    let started = Instant::now();
    for i in 0..ROUND_TRIPS {
        parent.send(i)?;
        let back = parent.recv()?;
        if back != i {
            bail!("pipe echoed {back}, sent {i}");
        }
    }
    let elapsed = started.elapsed();
    drop(parent);
    reap(child)?;
    Ok(elapsed.as_secs_f64() * 1e6 / ROUND_TRIPS as f64)
}

fn raw_socketpair_roundtrip_us() -> anyhow::Result<f64> {
    let (mut parent, mut child_end) = UnixStream::pair()?;
    let child = fork_child(parent.as_fd(), || {
        let mut buf = [0u8; 8];
        loop {
            if child_end.read_exact(&mut buf).is_err() {
                return 0; // the parent closed: done
            }
            if child_end.write_all(&buf).is_err() {
                return 1;
            }
        }
    })?;
    drop(child_end);
    let started = Instant::now();
    let mut buf = [0u8; 8];
    for i in 0..ROUND_TRIPS {
        parent.write_all(&i.to_le_bytes())?;
        parent.read_exact(&mut buf)?;
        if u64::from_le_bytes(buf) != i {
            bail!("socketpair echoed the wrong bytes");
        }
    }
    let elapsed = started.elapsed();
    drop(parent);
    reap(child)?;
    Ok(elapsed.as_secs_f64() * 1e6 / ROUND_TRIPS as f64)
}

/// Forks a child that runs `body` and exits with its code. The child first
/// closes its inherited copy of `parent_end`, so that the parent closing its
/// end is seen by the child as end-of-file.
fn fork_child(parent_end: BorrowedFd<'_>, body: impl FnOnce() -> i32) -> anyhow::Result<Pid> {
    let parent_end = parent_end.as_raw_fd();
    // SAFETY: ipc_bench is single-threaded (benchmarks run one after another
    // on the main thread), so the child is a consistent copy of the parent.
    match unsafe { fork() }.context("fork")? {
        ForkResult::Parent { child } => Ok(child),
        ForkResult::Child => {
            // The parent's value owning this descriptor is never used or
            // dropped in the child (it ends with _exit), so closing the number
            // here cannot close anything twice.
            let code = match nix::unistd::close(parent_end) {
                Ok(()) => body(),
                Err(_) => 1,
            };
            // SAFETY: ends the child at once without running the parent's
            // atexit handlers or flushing its copied stdio buffers.
            unsafe { libc::_exit(code) }
        }
    }
}

fn reap(child: Pid) -> anyhow::Result<()> {
    match waitpid(child, None)? {
        WaitStatus::Exited(_, 0) => Ok(()),
        status => bail!("echo child ended with {status:?}"),
    }
}
