//! ipc_bench: herd-ipc's benchmarks, one module per area, printing one figure
//! a line as `name value unit` (compare.py puts them beside Python's
//! `multiprocessing` doing the same work).
//!
//! Usage: `ipc_bench [AREA...]` (no area: all of them). Build with
//! `--release`; the figures are a report, not a test.

mod manager;

use std::process::ExitCode;

use anyhow::bail;

/// One area's benchmark: measures and prints its figures with [`report`].
type Bench = fn() -> anyhow::Result<()>;

/// Each area's benchmark, by area name.
const AREAS: &[(&str, Bench)] = &[("manager", manager::run)];

fn main() -> ExitCode {
    // The manager's server (and any spawned child) re-executes this binary.
    herd::ipc::init();
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("ipc_bench: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let wanted: Vec<String> = std::env::args().skip(1).collect();
    let known: Vec<&str> = AREAS.iter().map(|(name, _)| *name).collect();
    if let Some(unknown) = wanted.iter().find(|w| !known.contains(&w.as_str())) {
        bail!("unknown area {unknown:?}; known areas: {}", known.join(" "));
    }
    for (name, bench) in AREAS {
        if wanted.is_empty() || wanted.iter().any(|w| w == name) {
            bench()?;
        }
    }
    Ok(())
}

/// Prints one figure.
pub(crate) fn report(name: &str, value: f64, unit: &str) {
    println!("{name} {value:.3} {unit}");
}
