//! Diagnostic job kinds, for testing supervision with the real binary (`supervisor diag KIND
//! INPUT...`, see [`crate::diag`]):
//! each drives a worker into one behaviour, from a clean answer to every kind of failure.
//!
//! Each takes one command-line argument (a string) as input and answers a string:
//! - `echo TEXT`: answers TEXT;
//! - `sleep MS`: sleeps MS milliseconds, answers `slept MS ms`;
//! - `fail TEXT`: returns a job error (not retried);
//! - `crash TEXT`: aborts the worker process (SIGABRT) on every job;
//! - `hang TEXT`: never returns (for `--job-timeout`);
//! - `hang-once PATH`: the first attempt creates PATH and hangs, a later one answers `recovered`
//!   (a job that succeeds when re-run);
//! - `pid TEXT`: answers the worker's pid (for `--max-tasks-per-child`);
//! - `grandchild MS`: starts a `sleep 600` child process, answers its pid, then sleeps MS ms
//!   (for checking that a worker's own children die with it).
use std::thread;
use std::time::Duration;

use herd_worker::{JobError, JobKind};

fn millis(input: &str) -> Result<u64, JobError> {
    input.parse().map_err(|_| {
        JobError::InvalidInput(format!(
            "expected milliseconds (a whole number), got {input:?}"
        ))
    })
}

/// `echo TEXT`: answers its input.
#[derive(Debug)]
pub struct Echo;
impl JobKind for Echo {
    const NAME: &'static str = "echo";
    type Input = String;
    type Output = String;
    fn run(&self, input: String) -> Result<String, JobError> {
        Ok(input)
    }
}

/// `sleep MS`: sleeps, then answers how long.
#[derive(Debug)]
pub struct Sleep;
impl JobKind for Sleep {
    const NAME: &'static str = "sleep";
    type Input = String;
    type Output = String;
    fn run(&self, input: String) -> Result<String, JobError> {
        let ms = millis(&input)?;
        thread::sleep(Duration::from_millis(ms));
        Ok(format!("slept {ms} ms"))
    }
}

/// `fail TEXT`: a job error.
#[derive(Debug)]
pub struct Fail;
impl JobKind for Fail {
    const NAME: &'static str = "fail";
    type Input = String;
    type Output = String;
    fn run(&self, input: String) -> Result<String, JobError> {
        Err(JobError::failed(format!("asked to fail: {input}")))
    }
}

/// `crash TEXT`: kills its own worker.
#[derive(Debug)]
pub struct Crash;
impl JobKind for Crash {
    const NAME: &'static str = "crash";
    type Input = String;
    type Output = String;
    fn run(&self, _input: String) -> Result<String, JobError> {
        std::process::abort()
    }
}

/// `hang TEXT`: never answers.
#[derive(Debug)]
pub struct Hang;
impl JobKind for Hang {
    const NAME: &'static str = "hang";
    type Input = String;
    type Output = String;
    fn run(&self, _input: String) -> Result<String, JobError> {
        loop {
            thread::sleep(Duration::from_secs(3600));
        }
    }
}

/// `hang-once PATH`: hangs unless PATH exists, creating it first.
#[derive(Debug)]
pub struct HangOnce;
impl JobKind for HangOnce {
    const NAME: &'static str = "hang-once";
    type Input = String;
    type Output = String;
    fn run(&self, path: String) -> Result<String, JobError> {
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(_) => loop {
                thread::sleep(Duration::from_secs(3600));
            },
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
                Ok("recovered".to_owned())
            }
            Err(error) => Err(JobError::failed(format!("creating {path}: {error}"))),
        }
    }
}

/// `pid TEXT`: the worker's pid.
#[derive(Debug)]
pub struct WorkerPid;
impl JobKind for WorkerPid {
    const NAME: &'static str = "pid";
    type Input = String;
    type Output = String;
    fn run(&self, _input: String) -> Result<String, JobError> {
        Ok(herd_ipc::Pid::this().to_string())
    }
}

/// `grandchild MS`: leaves a child process running under the worker.
#[derive(Debug)]
pub struct Grandchild;
impl JobKind for Grandchild {
    const NAME: &'static str = "grandchild";
    type Input = String;
    type Output = String;
    fn run(&self, input: String) -> Result<String, JobError> {
        let ms = millis(&input)?;
        let child = std::process::Command::new("sleep")
            .arg("600")
            .stdin(std::process::Stdio::null())
            .spawn()
            .map_err(|e| JobError::failed(format!("starting `sleep 600`: {e}")))?;
        let pid = child.id();
        // Deliberately not waited for: it must die with the worker's process group.
        std::mem::forget(child);
        thread::sleep(Duration::from_millis(ms));
        Ok(pid.to_string())
    }
}

herd_worker::register_kind!(Echo);
herd_worker::register_kind!(Sleep);
herd_worker::register_kind!(Fail);
herd_worker::register_kind!(Crash);
herd_worker::register_kind!(Hang);
herd_worker::register_kind!(HangOnce);
herd_worker::register_kind!(WorkerPid);
herd_worker::register_kind!(Grandchild);

#[cfg(test)]
mod tests {
    use super::*;
    use herd_worker::{decode_payload, encode_payload, Registry};

    fn run(kind: &str, input: &str) -> Result<String, JobError> {
        Registry::global()
            .run(kind, &encode_payload(&input.to_owned()).unwrap())
            .map(|out| decode_payload(&out).unwrap())
    }

    #[test]
    fn the_harmless_kinds_answer() {
        assert_eq!(run("echo", "hi").unwrap(), "hi");
        assert_eq!(run("sleep", "1").unwrap(), "slept 1 ms");
        assert_eq!(
            run("fail", "x").unwrap_err(),
            JobError::Failed("asked to fail: x".into())
        );
        assert!(
            matches!(run("sleep", "soon").unwrap_err(), JobError::InvalidInput(m) if m.contains("\"soon\""))
        );
    }

    #[test]
    fn every_listed_kind_is_registered_and_logcount_too() {
        use clap::ValueEnum as _;
        let registry = Registry::global();
        let kinds = crate::diag::DiagKind::value_variants();
        for kind in kinds {
            let name = kind.name();
            assert!(registry.contains(name), "{name} is not registered");
            let shown = kind.to_possible_value().unwrap();
            assert_eq!(
                shown.get_name(),
                name,
                "`supervisor diag` names it otherwise"
            );
        }
        // Registered in the herd-logcount library crate, found by this binary.
        assert!(registry.contains(herd_logcount::LogcountChunk::NAME));
        assert_eq!(registry.names().count(), kinds.len() + 1);
    }
}
