//! `supervisor completions SHELL` and `supervisor man`: shell completions and manual pages,
//! generated from the command-line definition itself, so they list exactly what the binary
//! accepts.
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, CommandFactory as _};

use crate::output::{note, write_stdout};
use crate::Cli;

/// Prints a completion script for SHELL on stdout.
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  supervisor completions bash > ~/.local/share/bash-completion/completions/supervisor
  supervisor completions zsh > ~/.zfunc/_supervisor    (with fpath+=~/.zfunc in ~/.zshrc)
  supervisor completions fish > ~/.config/fish/completions/supervisor.fish")]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// Prints the manual page (roff) on stdout, or writes one page per subcommand into DIR.
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  supervisor man | man -l -
  supervisor man --dir ~/.local/share/man/man1    supervisor.1, supervisor-run-logcount.1, ...")]
pub struct ManArgs {
    /// Write supervisor.1 and a page per subcommand into this directory (created if missing).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

pub fn completions(args: &CompletionsArgs) -> anyhow::Result<ExitCode> {
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), "supervisor", &mut script);
    write_stdout(&String::from_utf8_lossy(&script))?;
    Ok(ExitCode::SUCCESS)
}

pub fn man(args: &ManArgs) -> anyhow::Result<ExitCode> {
    let command = Cli::command();
    match &args.dir {
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            clap_mangen::generate_to(command, dir)
                .with_context(|| format!("writing manual pages into {}", dir.display()))?;
            note(&format!("wrote the manual pages to {}\n", dir.display()));
        }
        None => {
            let mut page = Vec::new();
            clap_mangen::Man::new(command)
                .render(&mut page)
                .context("rendering the manual page")?;
            write_stdout(&String::from_utf8_lossy(&page))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
