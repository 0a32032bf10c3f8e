//! The `supervisor` binary under test: herd-testkit's binary driver, pointed at it.
#![allow(dead_code, unused_imports)] // Each test binary uses its own subset.

use std::time::Duration;

pub use herd_testkit::check;
pub use herd_testkit::cli::*;
pub use herd_testkit::proc::*;
pub use herd_testkit::run_trials;

/// The binary Cargo built for these tests.
pub const SUPERVISOR: &str = env!("CARGO_BIN_EXE_supervisor");

/// Starts `supervisor ARGS` with cwd in a fresh temp dir.
pub fn start(args: &[&str]) -> Running {
    herd_testkit::cli::start(SUPERVISOR, args)
}

/// Starts `supervisor ARGS` with cwd in `dir`.
pub fn start_in(dir: tempfile::TempDir, args: &[&str]) -> Running {
    herd_testkit::cli::start_in(SUPERVISOR, dir, args)
}

/// Starts `supervisor ARGS` and waits until it has `workers` live workers.
pub fn start_with_workers(args: &[&str], workers: usize) -> Result<(Running, Vec<i32>), String> {
    herd_testkit::cli::start_with_workers(SUPERVISOR, args, workers)
}

/// Runs `supervisor ARGS` to the end (at most `timeout`).
pub fn run(args: &[&str], timeout: Duration) -> Result<Finished, String> {
    herd_testkit::cli::run(SUPERVISOR, args, timeout)
}

/// The run's log records, from a run started with `--log-format json`: one JSON object per
/// stderr line that carries an `event` (other lines, such as the failure summary, are skipped).
pub fn events(finished: &Finished) -> Vec<serde_json::Value> {
    finished
        .stderr
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|record| record.get("event").is_some())
        .collect()
}

/// The records of `events` named `name` (e.g. `job_requeued`).
pub fn named<'a>(events: &'a [serde_json::Value], name: &str) -> Vec<&'a serde_json::Value> {
    events
        .iter()
        .filter(|record| record["event"] == name)
        .collect()
}
