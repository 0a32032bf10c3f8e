//! herd-testkit: what herd's cross-process test binaries share. They are `harness = false`
//! binaries whose trials run on the main thread, so the process stays single-threaded and may
//! fork: a trial runner with a zombie check after every trial, child processes with bounded
//! waits, polling with a timeout, /proc checks ([`proc`]) and a driver for a real binary under
//! test ([`cli`]).
//!
//! A child runs a closure returning `Result<(), String>`, which the Process API carries back on
//! join. Every wait is bounded; a child that outlives its wait is killed and reaped when its
//! handle drops, so a bug fails the test instead of hanging it and never leaves a zombie.

pub mod cli;
pub mod proc;

use std::time::{Duration, Instant};

use herd_ipc::{JoinTimeoutError, Pid, Process};
use libtest_mimic::{Arguments, Failed, Trial};

pub type Verdict = Result<(), String>;

/// A named trial body; `E` is `String` ([`Verdict`]) or [`Failed`].
pub type NamedTrial<E> = (&'static str, fn() -> Result<(), E>);

/// A child process running a test body.
#[derive(Debug)]
pub struct TestChild(herd_ipc::Child<Verdict>);

/// Forks a child that runs `body`.
pub fn fork_child(body: impl FnOnce() -> Verdict) -> TestChild {
    TestChild(Process::new().fork(body).expect("fork a test child"))
}

/// Spawns (re-executes this binary as) a child that runs `entry` on `args`.
pub fn spawn_child<E>(entry: E, args: &E::Args) -> TestChild
where
    E: herd_ipc::Entry<Output = Verdict>,
{
    TestChild(
        Process::new()
            .spawn(entry, args)
            .expect("spawn a test child"),
    )
}

impl TestChild {
    pub fn pid(&self) -> Pid {
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
            Err(err) => Err(format!("child {pid}: {err}")),
        }
    }

    /// SIGKILLs the child and checks that SIGKILL is what ended it.
    pub fn kill(self) -> Verdict {
        let pid = self.0.pid();
        self.0.kill().map_err(|err| format!("kill {pid}: {err}"))?;
        match self.0.join_timeout(Duration::from_secs(5)) {
            Err(err) if err.exit_status().and_then(|s| s.signal()) == Some(libc::SIGKILL) => Ok(()),
            Err(other) => Err(format!("child {pid} after SIGKILL: {other}")),
            Ok(_) => Err(format!("child {pid} returned a value despite SIGKILL")),
        }
    }
}

/// Silences this process's panic hook: for a child process (a forked or spawned entry, a pool
/// worker) about to panic on purpose, whose panic the test checks through what its parent sees.
/// The hook's message and backtrace on stderr would read like a failure of the test. The panic
/// itself unwinds as any other.
pub fn quiet_panic_hook() {
    std::panic::set_hook(Box::new(|_| {}));
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

/// Polls `condition` (see [`wait_until`]) and fails naming `what` if it does not hold within
/// `patience`.
pub fn eventually(what: &str, patience: Duration, condition: impl FnMut() -> bool) -> Verdict {
    ensure(wait_until(patience, condition), || {
        format!("timed out waiting until {what}")
    })
}

/// Fails if any child of this process is a zombie (state Z in /proc): every trial must leave none.
pub fn no_zombies() -> Verdict {
    let zombies: Vec<i32> = proc::children_of(Pid::this().as_raw())
        .into_iter()
        .filter(|&(_, state)| state == 'Z')
        .map(|(pid, _)| pid)
        .collect();
    ensure(zombies.is_empty(), || {
        format!("zombie children left behind: {zombies:?}")
    })
}

/// A trial that runs `body`, then fails if the body left a zombie child.
pub fn trial<E>(
    name: impl Into<String>,
    body: impl FnOnce() -> Result<(), E> + Send + 'static,
) -> Trial
where
    Failed: From<E>,
{
    Trial::test(name, move || {
        body()?;
        Ok(no_zombies()?)
    })
}

/// Runs the named trials (see [`trial`]) on the main thread, so the process stays
/// single-threaded and may fork.
pub fn run<E>(trials: Vec<NamedTrial<E>>) -> std::process::ExitCode
where
    E: 'static,
    Failed: From<E>,
{
    herd_ipc::init();
    run_trials(
        trials
            .into_iter()
            .map(|(name, body)| trial(name, body))
            .collect(),
    )
}

/// Runs `trials` on the main thread, one at a time.
pub fn run_trials(trials: Vec<Trial>) -> std::process::ExitCode {
    let mut args = Arguments::from_args();
    args.test_threads = Some(1);
    libtest_mimic::run(&args, trials).exit_code()
}
