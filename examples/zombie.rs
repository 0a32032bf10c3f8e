//! Zombie demo: a child that has exited but has not been waited for stays in the process table as a zombie
//! (state Z) until its parent reaps it.
//!
//! `cargo run --example zombie -- --hold SECS` (default 3). The child exits at once; the parent does not wait,
//! reads the child's `/proc` state (Z) and parent pid, keeps it visible for SECS so `ps` shows it too, then
//! joins (reaps) it and shows that the pid is gone. Exits non-zero if what it sees differs from that.
use std::process::ExitCode;
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use herd::ipc::{Pid, Process};

#[derive(Parser)]
#[command(about = "Shows a zombie child in /proc, then reaps it")]
struct Args {
    /// Seconds to keep the zombie visible before reaping it.
    #[arg(long, default_value_t = 3)]
    hold: u64,
}

fn main() -> ExitCode {
    herd::ipc::init();
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("zombie demo: FAILED: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// State letter and parent pid of `pid`, or `None` once the pid is gone from /proc.
fn state_and_ppid(pid: Pid) -> Option<(char, Pid)> {
    let stat = procfs::process::Process::new(pid.as_raw())
        .and_then(|p| p.stat())
        .ok()?;
    Some((stat.state, Pid::from_raw(stat.ppid)))
}

fn run(args: Args) -> anyhow::Result<()> {
    let me = Pid::this();
    let child = Process::new()
        .name("zombie-child")
        .fork(|| ())
        .context("fork")?;
    let pid = child.pid();
    println!("zombie demo: parent pid {me}, child pid {pid}");
    println!(
        "The child returned at once. The parent has not waited for it yet, so the kernel keeps its"
    );
    println!(
        "process-table entry (pid, exit status) for the parent to collect: the child is a zombie."
    );

    let deadline = Instant::now() + Duration::from_secs(5);
    let (state, ppid) = loop {
        match state_and_ppid(pid) {
            Some(('Z', ppid)) => break ('Z', ppid),
            Some(_) if Instant::now() < deadline => sleep(Duration::from_millis(2)),
            Some((state, ppid)) => break (state, ppid),
            None => bail!("child {pid} vanished from /proc before the parent reaped it"),
        }
    };
    println!("/proc/{pid}/stat: state {state}, ppid {ppid}");
    if state != 'Z' {
        bail!("expected child {pid} in state Z (zombie), found {state}");
    }
    if ppid != me {
        bail!("expected the zombie's ppid to be this process ({me}), found {ppid}");
    }

    println!(
        "Holding it for {} s: try `ps -o pid,ppid,stat,comm -p {pid}` (STAT Z, <defunct>).",
        args.hold
    );
    sleep(Duration::from_secs(args.hold));
    match state_and_ppid(pid) {
        Some(('Z', _)) => println!(
            "Still a zombie after {} s: nobody but the parent can reap it.",
            args.hold
        ),
        other => bail!("expected child {pid} to stay a zombie while unreaped, found {other:?}"),
    }

    child.join().context("join the child")?;
    match state_and_ppid(pid) {
        None => {
            println!("Joined (waitid on its pidfd): /proc/{pid} is gone, the zombie is reaped.")
        }
        Some((state, ppid)) if ppid != me => {
            println!("Joined: pid {pid} now belongs to another process (state {state}, ppid {ppid}): ours is gone.")
        }
        Some((state, _)) => bail!("child {pid} is still our child in state {state} after join"),
    }
    Ok(())
}
