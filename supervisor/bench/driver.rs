//! A stand-in driver for benchmarking logcount until the supervisor's worker pool runs it: N
//! threads take chunk jobs from a shared counter, and each result crosses a channel postcard-
//! encoded, as it would cross the process boundary, before the main thread merges it.
//! Temporary by design: the `supervisor run logcount` CLI replaces it; not a user interface.
//!
//! Usage:
//!   logcount_driver gen DIR FILES LINES DISTINCT SEED
//!   logcount_driver count DIR [--workers N] [--chunk-bytes B] [--top K] [--format table|csv|json]
//! `count` prints the report on stdout and `wall_s`, `jobs`, `result_bytes`, `peak_rss_mb` on
//! stderr.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Instant;

use anyhow::{bail, Context};
use clap::ValueEnum;
use herd_supervisor::genlogs::{self, GenOptions};
use herd_supervisor::logcount::{self, ChunkCounts, ChunkError, Format, Merger, Options};

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("logcount_driver: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run() -> anyhow::Result<ExitCode> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("gen") if args.len() == 6 => {
            let number = |i: usize| -> anyhow::Result<u64> {
                args[i].parse().with_context(|| format!("not a number: {}", args[i]))
            };
            let options = GenOptions {
                files: number(2)? as usize,
                lines: number(3)?,
                distinct: number(4)?,
                seed: number(5)?,
            };
            genlogs::generate(&PathBuf::from(&args[1]), &options)?;
            Ok(ExitCode::SUCCESS)
        }
        Some("count") if args.len() >= 2 => count(&PathBuf::from(&args[1]), &args[2..]),
        _ => bail!("usage: logcount_driver gen DIR FILES LINES DISTINCT SEED | count DIR [--workers N] [--chunk-bytes B] [--top K] [--format F]"),
    }
}

fn count(dir: &std::path::Path, flags: &[String]) -> anyhow::Result<ExitCode> {
    let mut workers = 2usize;
    let mut options = Options::default();
    let mut format = Format::Json;
    for pair in flags.chunks(2) {
        let [flag, value] = pair else {
            bail!("flag without value: {}", pair[0])
        };
        match flag.as_str() {
            "--workers" => workers = value.parse().context("--workers")?,
            "--chunk-bytes" => options.chunk_bytes = value.parse().context("--chunk-bytes")?,
            "--top" => options.top = Some(value.parse().context("--top")?),
            "--format" => format = Format::from_str(value, true).map_err(anyhow::Error::msg)?,
            _ => bail!("unknown flag {flag}"),
        }
    }
    let started = Instant::now();
    let plan = logcount::plan(dir, &options)?;
    let next = AtomicUsize::new(0);
    let (sender, receiver) = mpsc::channel::<Vec<u8>>();
    let mut merger = Merger::new(&plan);
    let mut result_bytes = 0usize;
    std::thread::scope(|scope| -> anyhow::Result<()> {
        for _ in 0..workers.max(1) {
            let sender = sender.clone();
            let (plan, next) = (&plan, &next);
            scope.spawn(move || {
                while let Some(job) = plan.jobs.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let outcome = logcount::count_chunk(job);
                    let bytes = postcard::to_stdvec(&outcome).expect("chunk results encode");
                    if sender.send(bytes).is_err() {
                        return;
                    }
                }
            });
        }
        drop(sender);
        for bytes in receiver {
            result_bytes += bytes.len();
            let outcome: Result<ChunkCounts, ChunkError> = postcard::from_bytes(&bytes)?;
            merger.add(outcome);
        }
        Ok(())
    })?;
    let report = merger.finish();
    let wall = started.elapsed().as_secs_f64();
    print!("{}", report.render(format));
    eprintln!("wall_s {wall:.3}");
    eprintln!("jobs {}", plan.jobs.len());
    eprintln!("result_bytes {result_bytes}");
    eprintln!("peak_rss_mb {:.1}", peak_rss_kb()? as f64 / 1024.0);
    Ok(if report.has_errors() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// VmHWM (peak resident set) of this process, in KiB.
fn peak_rss_kb() -> anyhow::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .context("no VmHWM in /proc/self/status")?;
    Ok(line
        .split_whitespace()
        .nth(1)
        .context("bad VmHWM")?
        .parse()?)
}
