//! `ipc_bench`: the herd benchmark report. One module per area; each prints one figure a line as
//! `name value unit`, the format `compare.py` reads next to the Python `multiprocessing` counterparts in
//! `python/<area>.py`.
//!
//! `cargo run --release --example ipc_bench [-- --only AREA]`.
use std::process::ExitCode;

use anyhow::bail;

mod manager;
mod pipe;
mod pool;
mod process;
mod queue;
mod sync;

/// Measures one area and prints its figures.
type Measure = fn() -> anyhow::Result<()>;

/// The areas, in report order: name and the function that measures and reports it.
const AREAS: &[(&str, Measure)] = &[
    ("process", process::run),
    ("pipe", pipe::run),
    ("queue", queue::run),
    ("sync", sync::run),
    ("manager", manager::run),
    ("pool", pool::run),
];

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
    let args: Vec<String> = std::env::args().skip(1).collect();
    let only = match args.as_slice() {
        [] => None,
        [flag, area] if flag == "--only" => Some(area.as_str()),
        _ => bail!("usage: ipc_bench [--only AREA]   (areas: {})", area_names()),
    };
    if let Some(area) = only {
        if !AREAS.iter().any(|(name, _)| *name == area) {
            bail!("unknown area {area:?} (areas: {})", area_names());
        }
    }
    for (name, measure) in AREAS {
        if only.is_none_or(|area| area == *name) {
            measure()?;
        }
    }
    Ok(())
}

fn area_names() -> String {
    AREAS
        .iter()
        .map(|(name, _)| *name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Prints one figure: `name value unit`.
pub fn report(name: &str, value: f64, unit: &str) {
    println!("{name} {value:.4} {unit}");
}
