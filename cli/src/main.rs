//! The `supervisor` command: runs jobs on a supervised pool of worker processes.
//!
//! One module per subcommand, each with its own clap arguments: `run logcount`
//! ([`logcount_cmd`]), `diag` ([`diag`]), `gen-logs` ([`gen_logs`]), `completions` and `man`
//! ([`install`]). The pool-running ones share [`pool::PoolArgs`] (supervision options) and
//! [`logging::LogArgs`] (`-q`, `-v`, `--log-format`); [`console`] turns the supervisor's events
//! into log records and [`output`] is how the command writes results and errors.
mod builtin;
mod console;
mod diag;
mod diagnostic_kinds;
mod gen_logs;
mod install;
mod logcount_cmd;
mod logcount_inputs;
mod logging;
mod output;
mod pool;
mod scale_out;
mod status;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "supervisor",
    version,
    about = "Runs jobs on a supervised pool of worker processes",
    after_help = "\
Examples:
  supervisor run logcount files/            count requests and distinct clients per log file
  supervisor run logcount --help            the options of one subcommand
  supervisor diag sleep 100 200 -j 2 -v     try supervision out with diagnostic jobs
  supervisor completions bash               shell completions; `supervisor man` for the manual"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Runs a job kind over the worker pool (`run logcount PATH...`).
    #[command(subcommand)]
    Run(RunCommand),
    /// Splits a job kind's inputs into shards once, for runs on many hosts (`plan logcount`).
    #[command(subcommand)]
    Plan(PlanCommand),
    /// Merges the partials of shard runs into what one run over all the inputs prints.
    Merge(scale_out::MergeArgs),
    /// Runs diagnostic jobs that answer, fail, crash or hang on purpose (for testing).
    Diag(diag::DiagArgs),
    /// Writes deterministic access logs for benchmarks and tests.
    GenLogs(gen_logs::GenLogsArgs),
    /// Prints a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(install::CompletionsArgs),
    /// Prints the manual page, or writes one per subcommand with --dir.
    Man(install::ManArgs),
}

/// The job kinds `run` knows.
#[derive(Debug, Subcommand)]
pub enum RunCommand {
    /// Counts requests and distinct clients per access-log file (files, directories, `-`).
    Logcount(logcount_cmd::LogcountArgs),
}

/// The job kinds `plan` knows.
#[derive(Debug, Subcommand)]
pub enum PlanCommand {
    /// Splits logcount's inputs (files, directories) into N shards and writes the plan as JSON.
    Logcount(scale_out::PlanArgs),
}

fn main() -> ExitCode {
    herd_ipc::init();
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Run(RunCommand::Logcount(args)) => logcount_cmd::run(args),
        Command::Plan(PlanCommand::Logcount(args)) => scale_out::plan(args),
        Command::Merge(args) => scale_out::merge(args),
        Command::Diag(args) => diag::run(args),
        Command::GenLogs(args) => gen_logs::run(args),
        Command::Completions(args) => install::completions(args),
        Command::Man(args) => install::man(args),
    };
    match result {
        Ok(code) => code,
        Err(error) => ExitCode::from(output::report(&error)),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
