//! Process start-up: start a trivial child and join it, by fork, by spawn and by the forkserver (mean over many), plus a baseline
//! of the bare OS cost of starting a program (`/bin/true` through `std::process::Command`).
use std::time::{Duration, Instant};

use anyhow::Context;
use herd::ipc::Process;

use crate::report;

herd::ipc::entry! {
    /// The trivial spawned child: returns at once.
    fn noop(_unit: ()) {}
}

/// Measures for about this long per figure (at least `MIN_ROUNDS` rounds), so the report stays quick.
const BUDGET: Duration = Duration::from_secs(2);
const MIN_ROUNDS: u32 = 20;

/// Mean milliseconds per call of `round`, after one warm-up call.
fn mean_ms(mut round: impl FnMut() -> anyhow::Result<()>) -> anyhow::Result<f64> {
    round()?;
    let started = Instant::now();
    let mut rounds = 0u32;
    while rounds < MIN_ROUNDS || started.elapsed() < BUDGET {
        round()?;
        rounds += 1;
    }
    Ok(started.elapsed().as_secs_f64() * 1000.0 / f64::from(rounds))
}

pub fn run() -> anyhow::Result<()> {
    let fork = mean_ms(|| {
        Process::new().fork(|| ())?.join()?;
        Ok(())
    })
    .context("fork + join")?;
    report("process_start_join_ms_fork", fork, "ms");

    let spawn = mean_ms(|| {
        Process::new().spawn(noop, &())?.join()?;
        Ok(())
    })
    .context("spawn + join")?;
    report("process_start_join_ms_spawn", spawn, "ms");

    // The first call (the warm-up round) starts the forkserver; the figure is the steady state.
    let forkserver = mean_ms(|| {
        Process::new().forkserver(noop, &())?.join()?;
        Ok(())
    })
    .context("forkserver + join")?;
    report("process_start_join_ms_forkserver", forkserver, "ms");

    let exec = mean_ms(|| {
        let status = std::process::Command::new("/bin/true").status()?;
        anyhow::ensure!(status.success(), "/bin/true failed: {status}");
        Ok(())
    })
    .context("/bin/true baseline")?;
    report("process_start_join_ms_exec_true_baseline", exec, "ms");
    Ok(())
}
