//! Fork-based helpers for the sync and shm test binaries (harness = false, single-threaded).
//!
//! A child runs a closure and reports through its exit status: 0 = Ok, 1 = Err (message on
//! stderr), 101 = panic. Every wait is bounded; a child that outlives its wait is SIGKILLed and
//! reaped, so a bug fails the test instead of hanging it and never leaves a zombie behind.

#![allow(dead_code)] // each test binary uses a different subset

use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};

pub type TestResult = Result<(), libtest_mimic::Failed>;

/// A forked child process running a test closure.
pub struct Child {
    pub pid: Pid,
    reaped: bool,
}

/// Forks; the child runs `body` and exits with its verdict.
pub fn fork_child(body: impl FnOnce() -> Result<(), String>) -> Child {
    // SAFETY: the test binary runs every trial on its main thread and starts no other threads,
    // so the child is a faithful single-threaded copy that may run arbitrary code.
    match unsafe { fork() }.expect("fork") {
        ForkResult::Parent { child } => Child {
            pid: child,
            reaped: false,
        },
        ForkResult::Child => {
            let code = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)) {
                Ok(Ok(())) => 0,
                Ok(Err(message)) => {
                    eprintln!("child {}: {message}", std::process::id());
                    1
                }
                Err(_) => 101,
            };
            // SAFETY: _exit ends the forked child without running the parent's atexit handlers
            // or flushing stdio buffers it inherited (which would duplicate output).
            unsafe { libc::_exit(code) }
        }
    }
}

impl Child {
    /// Waits up to `timeout` for the child to exit; Ok if it exited with status 0.
    pub fn join(mut self, timeout: Duration) -> Result<(), String> {
        match self.wait_status(timeout)? {
            WaitStatus::Exited(_, 0) => Ok(()),
            other => Err(format!("child {} ended with {other:?}", self.pid)),
        }
    }

    /// Waits up to `timeout` for the child to end, returning its raw status.
    pub fn wait_status(&mut self, timeout: Duration) -> Result<WaitStatus, String> {
        let deadline = Instant::now() + timeout;
        loop {
            match waitpid(self.pid, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) => {}
                Ok(status) => {
                    self.reaped = true;
                    return Ok(status);
                }
                Err(err) => return Err(format!("waitpid {}: {err}", self.pid)),
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "child {} still running after {timeout:?}",
                    self.pid
                ));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// SIGKILLs the child and reaps it.
    pub fn kill(mut self) -> Result<(), String> {
        kill(self.pid, Signal::SIGKILL).map_err(|err| format!("kill {}: {err}", self.pid))?;
        match self.wait_status(Duration::from_secs(5))? {
            WaitStatus::Signaled(_, Signal::SIGKILL, _) => Ok(()),
            other => Err(format!(
                "child {} ended with {other:?}, not SIGKILL",
                self.pid
            )),
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if !self.reaped {
            let _ = kill(self.pid, Signal::SIGKILL);
            let _ = waitpid(self.pid, None);
        }
    }
}

/// Turns a condition into a test failure with a message.
pub fn ensure(condition: bool, message: impl FnOnce() -> String) -> Result<(), String> {
    if condition {
        Ok(())
    } else {
        Err(message())
    }
}

/// Runs the trials on the main thread (the process must stay single-threaded to fork).
pub fn run(trials: Vec<libtest_mimic::Trial>) -> std::process::ExitCode {
    let mut args = libtest_mimic::Arguments::from_args();
    args.test_threads = Some(1);
    libtest_mimic::run(&args, trials).exit_code()
}

/// Adapts a `Result<(), String>` test body to libtest-mimic.
pub fn trial(name: &'static str, body: fn() -> Result<(), String>) -> libtest_mimic::Trial {
    libtest_mimic::Trial::test(name, move || body().map_err(libtest_mimic::Failed::from))
}
