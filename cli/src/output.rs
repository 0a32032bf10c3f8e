//! How the `supervisor` command ends and writes: errors that carry their exit status, all
//! printed in clap's `error: ...` style, and checked writes of the results on stdout.
use std::io::{self, Write as _};

use clap::CommandFactory as _;

use crate::Cli;

/// An error that already carries its exit code.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Exit {
    pub code: u8,
    pub message: String,
}

/// Exit status when stdout was closed before all the output was written (`| head`): 128 +
/// SIGPIPE, what a shell reports for a GNU tool killed by SIGPIPE, so `set -o pipefail` sees
/// an incomplete output as it would for `yes | head`. Nothing is printed.
pub const EXIT_CLOSED_STDOUT: u8 = 141;

/// A usage error found after parsing (options that contradict each other), formatted by clap
/// as its own are, with the usage of the subcommand at `path` (e.g. `["run", "logcount"]`).
pub fn usage_error(path: &[&str], kind: clap::error::ErrorKind, message: String) -> anyhow::Error {
    let mut target = Cli::command();
    // Building sets each subcommand's full name (`supervisor run logcount`) for its usage line.
    target.build();
    for name in path {
        match target.find_subcommand(name) {
            Some(sub) => target = sub.clone(),
            None => break,
        }
    }
    target.error(kind, message).into()
}

/// Prints `error` the one way the command prints errors: clap's errors as clap formats them,
/// every other as `error: MESSAGE`; returns the exit status.
pub fn report(error: &anyhow::Error) -> u8 {
    if let Some(usage) = error.downcast_ref::<clap::Error>() {
        let _ = usage.print();
        return u8::try_from(usage.exit_code()).unwrap_or(2);
    }
    let code = error.downcast_ref::<Exit>().map_or(1, |exit| exit.code);
    if code != EXIT_CLOSED_STDOUT {
        note(&format!("error: {error:#}\n"));
    }
    code
}

/// Writes `text` on stderr. A closed or full stderr cannot be reported anywhere, so a failure
/// is ignored (`eprint!` would panic instead).
pub fn note(text: &str) {
    let _ = io::stderr().lock().write_all(text.as_bytes());
}

/// Writes the run's results on stdout, checked: a closed pipe (EPIPE; the reader has all it
/// wanted) ends the run quietly with [`EXIT_CLOSED_STDOUT`], any other error (ENOSPC, EIO) is
/// reported naming stdout, exit 1. `write_all` retries EINTR.
pub fn write_stdout(text: &str) -> anyhow::Result<()> {
    let mut out = io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == io::ErrorKind::BrokenPipe => Err(Exit {
            code: EXIT_CLOSED_STDOUT,
            message: "stdout was closed".into(),
        }
        .into()),
        Err(error) => Err(Exit {
            code: 1,
            message: format!("cannot write the results to stdout: {error}"),
        }
        .into()),
    }
}
