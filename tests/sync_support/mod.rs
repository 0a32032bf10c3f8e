//! Helpers for the sync and shm test binaries (harness = false, trials on the main thread so
//! the process stays single-threaded and may fork).
//!
//! A child runs a closure returning `Result<(), String>`, which the Process API carries back on
//! join. Every wait is bounded; a child that outlives its wait is killed and reaped when its
//! handle drops, so a bug fails the test instead of hanging it and never leaves a zombie.

#![allow(dead_code)] // each test binary uses a different subset

use std::time::{Duration, Instant};

use herd::ipc::{JoinTimeoutError, Process};

pub type Verdict = Result<(), String>;

/// A named trial body.
pub type NamedTrial = (&'static str, fn() -> Verdict);

/// A child process running a test body.
pub struct TestChild(herd::ipc::Child<Verdict>);

/// Forks a child that runs `body`.
pub fn fork_child(body: impl FnOnce() -> Verdict) -> TestChild {
    TestChild(Process::new().fork(body).expect("fork a test child"))
}

/// Spawns (re-executes this binary as) a child that runs `entry` on `args`.
pub fn spawn_child<E>(entry: E, args: &E::Args) -> TestChild
where
    E: herd::ipc::Entry<Output = Verdict>,
{
    TestChild(
        Process::new()
            .spawn(entry, args)
            .expect("spawn a test child"),
    )
}

impl TestChild {
    pub fn pid(&self) -> u32 {
        self.0.pid()
    }

    /// Waits up to `timeout` for the child's verdict.
    pub fn join(self, timeout: Duration) -> Verdict {
        let pid = self.0.pid();
        match self.0.join_timeout(timeout) {
            Ok(verdict) => verdict.map_err(|message| format!("child {pid}: {message}")),
            Err(JoinTimeoutError::Timeout(_)) => {
                Err(format!("child {pid} still running after {timeout:?}"))
            }
            Err(JoinTimeoutError::Failed(err)) => Err(err.to_string()),
        }
    }

    /// SIGKILLs the child and checks that SIGKILL is what ended it.
    pub fn kill(self) -> Verdict {
        let pid = self.0.pid();
        self.0.kill().map_err(|err| format!("kill {pid}: {err}"))?;
        match self.0.join_timeout(Duration::from_secs(5)) {
            Err(JoinTimeoutError::Failed(err))
                if err.exit_status().and_then(|s| s.signal()) == Some(libc::SIGKILL) =>
            {
                Ok(())
            }
            Err(other) => Err(format!("child {pid} after SIGKILL: {other}")),
            Ok(_) => Err(format!("child {pid} returned a value despite SIGKILL")),
        }
    }
}

/// Turns a condition into a failure with a message.
pub fn ensure(condition: bool, message: impl FnOnce() -> String) -> Verdict {
    if condition {
        Ok(())
    } else {
        Err(message())
    }
}

/// Polls `condition` every millisecond until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while !condition() {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    true
}

/// Zombie children of this process (state Z in /proc), which every trial must leave none of.
pub fn zombies() -> Vec<u32> {
    let me = std::process::id();
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // Fields after the parenthesised command: state, ppid, ...
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let (state, ppid) = (fields.next(), fields.next());
        if state == Some("Z") && ppid == Some(me.to_string().as_str()) {
            found.push(pid);
        }
    }
    found
}

/// Runs the trials on the main thread; each trial also fails if it leaves a zombie child.
pub fn run(trials: Vec<NamedTrial>) -> std::process::ExitCode {
    herd::ipc::init();
    let mut args = libtest_mimic::Arguments::from_args();
    args.test_threads = Some(1);
    let trials = trials
        .into_iter()
        .map(|(name, body)| {
            libtest_mimic::Trial::test(name, move || {
                body()?;
                let left = zombies();
                ensure(left.is_empty(), || {
                    format!("zombie children left: {left:?}")
                })?;
                Ok(())
            })
        })
        .collect();
    libtest_mimic::run(&args, trials).exit_code()
}
