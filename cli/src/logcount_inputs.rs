//! logcount's inputs on the command line: an input that cannot be listed (missing, neither a
//! file nor a directory, unreadable; `-` twice; standard input that cannot be copied) as the
//! command's exit, before anything is counted.

use herd_logcount::PlanError;

use crate::output::Exit;

/// A planning error as the command's exit: one `error: ` line per input at fault.
pub(crate) fn exit(error: PlanError) -> Exit {
    let each = error.each();
    let code = if each.iter().all(|e| matches!(e, PlanError::Stdin { .. })) {
        1
    } else {
        2
    };
    let lines: Vec<String> = each.iter().map(ToString::to_string).collect();
    Exit {
        code,
        message: lines.join("\nerror: "),
    }
}
