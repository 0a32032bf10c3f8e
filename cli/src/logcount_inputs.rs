//! logcount's inputs on the command line: the paths and `-` after `run logcount`, listed once
//! (standard input is read then) and planned into chunk jobs sized for the pool.

use herd_logcount::{self as logcount, Input, Inputs, Options, Plan, PlanError};

use crate::logcount_cmd::LogcountArgs;
use crate::output::Exit;

/// The inputs named in `args` and the plan that counts them. Keep the [`Inputs`] until the run
/// is over: standard input's copy lives in it. An unusable input ends the run before any
/// counting, naming each input at fault on a line of its own: exit 2 (usage), or 1 when
/// standard input could not be copied.
pub(crate) fn plan(args: &LogcountArgs) -> anyhow::Result<(Inputs, Plan)> {
    let named: Vec<Input> = args.paths.iter().map(Input::from_arg).collect();
    let inputs = Inputs::new(&named, args.recursive).map_err(exit)?;
    // Unless told the chunk size, cut the input into a few chunks per worker (load balance at
    // the end of the run; pieces of a file are equal), not more: each chunk costs its distinct
    // keys again (sorted, sent, decoded, merged) whatever its size.
    let chunk_bytes = args.chunk_bytes.unwrap_or_else(|| {
        let workers = args.pool.workers() as u64;
        logcount::balanced_chunk_bytes(inputs.total_bytes(), workers)
    });
    let options = Options {
        recursive: args.recursive,
        top: args.top,
        chunk_bytes,
    };
    let plan = logcount::plan_inputs(&inputs, &options).map_err(exit)?;
    Ok((inputs, plan))
}

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
