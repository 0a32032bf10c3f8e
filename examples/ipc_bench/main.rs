//! ipc_bench: herd-ipc throughput and latency figures, one per line as `name value unit`.
//!
//! Each area (process, pipe, queue, sync, manager) is a module with a `run` function printing
//! its figures; `--only AREA` runs one. `compare.py` runs this and the Python `multiprocessing`
//! counterparts in `python/` and prints the ratios. Build with `--release`.

use std::process::ExitCode;

use anyhow::bail;
use clap::Parser;

mod sync;

/// An area's entry point: prints its figures.
type Area = fn() -> anyhow::Result<()>;

/// The areas, in run order.
const AREAS: &[(&str, Area)] = &[("sync", sync::run)];

#[derive(Debug, Parser)]
#[command(about = "herd-ipc benchmarks: prints `name value unit` lines")]
struct Args {
    /// Run only this area.
    #[arg(long)]
    only: Option<String>,
}

fn main() -> ExitCode {
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
    let args = Args::parse();
    if let Some(only) = &args.only {
        if !AREAS.iter().any(|(name, _)| name == only) {
            let known: Vec<&str> = AREAS.iter().map(|(name, _)| *name).collect();
            bail!("unknown area {only:?}; known areas: {}", known.join(", "));
        }
    }
    for (name, area) in AREAS {
        if args.only.as_deref().map_or(true, |only| only == *name) {
            area()?;
        }
    }
    Ok(())
}

/// Prints one figure in the common format.
fn report(name: &str, value: f64, unit: &str) {
    println!("{name} {value:.1} {unit}");
}
