//! A driver for a real binary under test (the `supervisor` command): start it in a temp dir of
//! its own, watch its children through /proc, signal it, collect its output, all with timeouts.
//! The binary's path comes from the test crate that owns it (`env!("CARGO_BIN_EXE_...")`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tempfile::TempDir;

use crate::proc::{live_children_of, no_lasting_zombie_under};

pub type TestResult = Result<(), libtest_mimic::Failed>;

/// How long a test gives a `supervisor` to start its workers.
pub const STARTUP: Duration = Duration::from_secs(10);

/// How long a test gives a whole `supervisor` run before calling it hung.
pub const LONG: Duration = Duration::from_secs(30);

/// Fails the test with a message unless `condition` holds.
#[macro_export]
macro_rules! check {
    ($condition:expr, $($message:tt)+) => {
        if !$condition {
            return Err(format!($($message)+).into());
        }
    };
}

/// A running `supervisor`, its output going to files in its own temp dir.
#[derive(Debug)]
pub struct Running {
    child: Child,
    pub dir: TempDir,
    started: Instant,
}

/// How a `supervisor` run ended.
#[derive(Debug)]
pub struct Finished {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Finished {
    pub fn lines(&self) -> Vec<&str> {
        self.stdout.lines().collect()
    }

    /// Fails unless the run exited with `code`, naming the code it gave and its stderr.
    pub fn expect_exit(&self, code: i32) -> Result<(), String> {
        if self.code == Some(code) {
            Ok(())
        } else {
            Err(format!(
                "exit {:?}, expected {code}; stderr:\n{}",
                self.code, self.stderr
            ))
        }
    }

    /// Fails unless the run exited 0 and printed exactly `expected`: its results were right.
    pub fn expect_success_printing(&self, expected: &str) -> Result<(), String> {
        self.expect_exit(0)?;
        if self.stdout == expected {
            Ok(())
        } else {
            Err(format!(
                "wrong results; expected:\n{expected}\ngot:\n{}",
                self.stdout
            ))
        }
    }

    /// Fails unless stderr holds `message`, showing the stderr it got.
    pub fn expect_stderr_saying(&self, message: &str) -> Result<(), String> {
        if self.stderr.contains(message) {
            Ok(())
        } else {
            Err(format!("stderr lacks {message:?}:\n{}", self.stderr))
        }
    }
}

/// Starts `binary ARGS` with cwd in a fresh temp dir.
pub fn start(binary: &str, args: &[&str]) -> Running {
    let dir = tempfile::tempdir().expect("a temp dir");
    start_in(binary, dir, args)
}

/// Starts `binary ARGS` with cwd in `dir`, its stdout and stderr going to files there.
pub fn start_in(binary: &str, dir: TempDir, args: &[&str]) -> Running {
    let stdout = std::fs::File::create(dir.path().join("stdout")).expect("stdout file");
    let stderr = std::fs::File::create(dir.path().join("stderr")).expect("stderr file");
    let child = Command::new(binary)
        .args(args)
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .expect("starting the supervisor binary");
    Running {
        child,
        dir,
        started: Instant::now(),
    }
}

/// Starts `binary ARGS` and waits (at most [`STARTUP`]) until it has `workers` live children.
pub fn start_with_workers(
    binary: &str,
    args: &[&str],
    workers: usize,
) -> Result<(Running, Vec<i32>), String> {
    let running = start(binary, args);
    let pids = running.wait_for_workers(workers, STARTUP)?;
    Ok((running, pids))
}

/// Runs `binary ARGS` to the end (at most `timeout`).
pub fn run(binary: &str, args: &[&str], timeout: Duration) -> Result<Finished, String> {
    start(binary, args).finish(timeout)
}

/// Calls `probe` every 20 ms until it answers `Ok`; past `deadline`, fails with its last
/// complaint (which says what it saw).
pub fn retry_until<T>(
    deadline: Instant,
    mut probe: impl FnMut() -> Result<T, String>,
) -> Result<T, String> {
    loop {
        match probe() {
            Ok(value) => return Ok(value),
            Err(complaint) if Instant::now() >= deadline => return Err(complaint),
            Err(_) => thread::sleep(Duration::from_millis(20)),
        }
    }
}

impl Running {
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn signal(&self, signal: Signal) {
        // The child is not reaped before `finish`, so its pid is still its own.
        let _ = kill(Pid::from_raw(self.pid()), signal);
    }

    pub fn stderr_so_far(&self) -> String {
        std::fs::read_to_string(self.path("stderr")).unwrap_or_default()
    }

    /// The supervisor's live (non-zombie) children: its workers.
    pub fn workers(&self) -> Vec<i32> {
        live_children_of(self.pid())
    }

    /// Waits until exactly `n` live workers, all idle or busy (not stopped).
    pub fn wait_for_workers(&self, n: usize, timeout: Duration) -> Result<Vec<i32>, String> {
        retry_until(Instant::now() + timeout, || {
            let workers = self.workers();
            if workers.len() == n {
                Ok(workers)
            } else {
                Err(format!(
                    "expected {n} workers within {timeout:?}, have {workers:?}; stderr:\n{}",
                    self.stderr_so_far()
                ))
            }
        })
    }

    /// Fails if a child of the supervisor stays a zombie for more than a moment.
    pub fn check_no_lasting_zombie(&self) -> Result<(), String> {
        no_lasting_zombie_under(self.pid())
    }

    /// Waits for the end (killing it after `timeout`).
    pub fn finish(mut self, timeout: Duration) -> Result<Finished, String> {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = self.child.try_wait().map_err(|e| e.to_string())? {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return Err(format!(
                    "the supervisor did not finish within {timeout:?}; stderr:\n{}",
                    self.stderr_so_far()
                ));
            }
            thread::sleep(Duration::from_millis(10));
        };
        Ok(Finished {
            code: status.code(),
            stdout: std::fs::read_to_string(self.path("stdout")).unwrap_or_default(),
            stderr: self.stderr_so_far(),
            elapsed: self.started.elapsed(),
        })
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // A failed test must not leave a supervisor behind (its workers die with it).
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub fn sleep_ms(ms: u64) {
    thread::sleep(Duration::from_millis(ms));
}

pub fn path_str(path: &Path) -> &str {
    path.to_str().expect("temp paths are UTF-8")
}
