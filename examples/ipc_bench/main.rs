//! ipc_bench: herd-ipc throughput and latency figures, one per line as `name value unit`.
//!
//! Each area (queue, pipe, process, sync, manager) is a module with a `run()` that prints its
//! figures; `--only AREA` runs one. `compare.py` runs this and the Python `multiprocessing`
//! counterparts in `python/` and prints the ratios. Build with `--release`.

mod queue;

use std::process::ExitCode;

use anyhow::{bail, Context};

/// An area's benchmark: prints its figures.
type Bench = fn() -> anyhow::Result<()>;

/// The areas in the order they run.
const AREAS: &[(&str, Bench)] = &[("queue", queue::run)];

fn main() -> ExitCode {
    herd::ipc::init();
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("ipc_bench: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut only = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--only" => only = Some(args.next().context("--only needs an area name")?),
            other => bail!("unknown argument {other:?} (usage: ipc_bench [--only AREA])"),
        }
    }
    if let Some(area) = &only {
        if !AREAS.iter().any(|(name, _)| name == area) {
            let known: Vec<&str> = AREAS.iter().map(|(name, _)| *name).collect();
            bail!("unknown area {area:?}; areas: {}", known.join(", "));
        }
    }
    for (name, bench) in AREAS {
        if only.as_deref().map_or(true, |area| area == *name) {
            bench().with_context(|| format!("area {name}"))?;
        }
    }
    Ok(())
}

/// Prints one figure in the shared format.
pub fn report(name: &str, value: f64, unit: &str) {
    println!("{name} {value:.0} {unit}");
}
