//! `supervisor gen-logs DIR`: writes deterministic access logs for benchmarks and tests.
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use herd_logcount::genlogs::{self, GenOptions};

use crate::output::note;

/// Writes deterministic access logs (the same options always write the same bytes) for
/// benchmarks and tests.
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  supervisor gen-logs /tmp/logs                       8 files of 1,000,000 lines
  supervisor gen-logs /tmp/logs --files 2 --lines 1000 --distinct 50 --seed 7")]
pub struct GenLogsArgs {
    /// Directory to write into (created if missing).
    pub dir: PathBuf,
    /// Number of files.
    #[arg(long, value_name = "N", default_value_t = 8)]
    pub files: usize,
    /// Lines per file.
    #[arg(long, value_name = "M", default_value_t = 1_000_000)]
    pub lines: u64,
    /// Distinct client keys to draw from.
    #[arg(long, value_name = "K", default_value_t = 10_000)]
    pub distinct: u64,
    /// Random seed.
    #[arg(long, value_name = "S", default_value_t = 1)]
    pub seed: u64,
}

pub fn run(args: &GenLogsArgs) -> anyhow::Result<ExitCode> {
    let options = GenOptions {
        files: args.files,
        lines: args.lines,
        distinct: args.distinct,
        seed: args.seed,
    };
    let written = genlogs::generate(&args.dir, &options)?;
    note(&format!(
        "wrote {} file(s) to {}\n",
        written.len(),
        args.dir.display()
    ));
    Ok(ExitCode::SUCCESS)
}
