//! Orphan demo: a child whose parent exits lives on and is re-parented, to init (pid 1) or to the nearest
//! ancestor that declared itself a subreaper (`PR_SET_CHILD_SUBREAPER`).
//!
//! `cargo run --example orphan -- --hold SECS [--subreaper]`. Three processes: this demo (the grandparent)
//! forks a parent, the parent forks a child and exits; the child prints its ppid before and after, then lives
//! SECS more. With `--subreaper` the grandparent is a subreaper: it adopts the orphan and reaps it. Exits
//! non-zero if what it sees differs from that.
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::process::ExitCode;
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use herd::ipc::Process;
use nix::fcntl::OFlag;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{getppid, ForkResult, Pid};

#[derive(Parser)]
#[command(about = "Shows an orphan re-parented to init or to a subreaper")]
struct Args {
    /// Seconds the orphan lives on after it has been re-parented.
    #[arg(long, default_value_t = 3)]
    hold: u64,
    /// Make the demo process a subreaper, so it adopts and reaps the orphan.
    #[arg(long)]
    subreaper: bool,
}

fn main() -> ExitCode {
    herd::ipc::init();
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("orphan demo: FAILED: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// The command name of `pid`, for the reader.
fn comm(pid: i32) -> String {
    procfs::process::Process::new(pid)
        .and_then(|p| p.stat())
        .map(|stat| stat.comm)
        .unwrap_or_else(|_| "?".to_owned())
}

fn pipe() -> anyhow::Result<(File, File)> {
    let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC).context("pipe")?;
    Ok((File::from(read), File::from(write)))
}

fn read_u32(file: &mut File) -> std::io::Result<u32> {
    let mut bytes = [0u8; 4];
    file.read_exact(&mut bytes)?;
    Ok(u32::from_le_bytes(bytes))
}

fn run(args: Args) -> anyhow::Result<()> {
    if args.subreaper {
        nix::sys::prctl::set_child_subreaper(true).context("PR_SET_CHILD_SUBREAPER")?;
    }
    let demo = std::process::id();
    // The child reports (ppid before, ppid after) here once it has lived its extra seconds.
    let (mut verdict_read, verdict_write) = pipe()?;
    let hold = args.hold;
    let parent = Process::new()
        .name("orphan-parent")
        .fork(move || orphan_parent(verdict_write, hold).map_err(|err| format!("{err:#}")))
        .context("fork the parent")?;
    let parent_pid = parent.pid();
    let child_pid = parent
        .join_timeout(Duration::from_secs(10))
        .map_err(|err| anyhow::anyhow!("{err}"))?
        .map_err(|err| anyhow::anyhow!("the parent failed: {err}"))?;
    println!("[grandparent {demo}] the parent {parent_pid} has exited (and been reaped); its child {child_pid} lives on");

    // Closed by the child on exit, so a dead child reads as end-of-file rather than a hang.
    let ready = herd::ipc::wait(
        &[&OwnedFd::from(verdict_read.try_clone()?)],
        Some(Duration::from_secs(hold + 10)),
    )?;
    if ready.is_empty() {
        bail!(
            "no report from the orphan {child_pid} within {} s",
            hold + 10
        );
    }
    let before = read_u32(&mut verdict_read).context("the orphan's report")? as i32;
    let after = read_u32(&mut verdict_read).context("the orphan's report")? as i32;
    if before != parent_pid.as_raw() {
        bail!("the orphan's first ppid was {before}, expected its parent {parent_pid}");
    }
    if after == before {
        bail!("the orphan was not re-parented (ppid still {after})");
    }
    if args.subreaper {
        if after != demo as i32 {
            bail!("with --subreaper the orphan should have been adopted by {demo}, got {after}");
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            match waitpid(
                Pid::from_raw(child_pid as i32),
                Some(nix::sys::wait::WaitPidFlag::WNOHANG),
            )? {
                WaitStatus::StillAlive if Instant::now() < deadline => {
                    sleep(Duration::from_millis(5))
                }
                status => break status,
            }
        };
        if status != WaitStatus::Exited(Pid::from_raw(child_pid as i32), 0) {
            bail!("reaping the adopted orphan gave {status:?}");
        }
        println!("[grandparent {demo}] as subreaper I adopted orphan {child_pid} and reaped it (exit code 0)");
    } else if after == demo as i32 {
        bail!("the demo is not a subreaper, yet the orphan was re-parented to it");
    }
    println!("What you saw: when a process exits, its living children are not killed; the kernel re-parents them");
    println!("to the nearest ancestor marked PR_SET_CHILD_SUBREAPER, else to init (pid 1), which then reaps them.");
    Ok(())
}

/// The middle process: forks the child, prints the pids, waits until the child has seen its first ppid, then
/// returns (exits) leaving the child an orphan. Returns the child's pid.
#[allow(unsafe_code)] // the raw fork a herd handle cannot do (see below), and _exit in its child
fn orphan_parent(verdict: File, hold: u64) -> anyhow::Result<u32> {
    let (mut go_read, mut go_write) = pipe()?;
    let (mut ack_read, mut ack_write) = pipe()?;
    // The child must outlive this process, which a herd handle forbids by design (dropping it kills the
    // child): so this fork is the raw system call.
    // SAFETY: this process is a herd fork child of the single-threaded demo, so it has one thread; the child
    // below only uses pipes, prints, sleeps and leaves with _exit.
    match unsafe { nix::unistd::fork() }.context("fork the child")? {
        ForkResult::Child => {
            let code = match orphan_child(&mut go_read, &mut ack_write, verdict, hold) {
                Ok(()) => 0,
                Err(err) => {
                    eprintln!("[child] {err:#}");
                    1
                }
            };
            let _ = std::io::stdout().flush();
            // SAFETY: _exit has no preconditions; the child must not return into the parent's copied stack.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => {
            let me = std::process::id();
            println!(
                "orphan demo: grandparent pid {}, parent pid {me}, child pid {child}",
                getppid()
            );
            std::io::stdout().flush()?;
            go_write.write_all(b"g")?;
            let mut ack = [0u8; 1];
            ack_read
                .read_exact(&mut ack)
                .context("wait for the child's first report")?;
            println!("[parent {me}] exiting now, without waiting for child {child}");
            Ok(child.as_raw() as u32)
        }
    }
}

/// The child: reports its ppid before and after its parent exits, lives `hold` seconds more, reports both
/// ppids to the demo.
fn orphan_child(go: &mut File, ack: &mut File, mut verdict: File, hold: u64) -> anyhow::Result<()> {
    let me = std::process::id();
    let mut byte = [0u8; 1];
    go.read_exact(&mut byte)?;
    let before = getppid().as_raw();
    println!("[child {me}] my parent is {before} ({})", comm(before));
    std::io::stdout().flush()?;
    ack.write_all(b"a")?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while getppid().as_raw() == before {
        if Instant::now() > deadline {
            bail!("my parent {before} did not exit within 10 s");
        }
        sleep(Duration::from_millis(1));
    }
    let after = getppid().as_raw();
    println!(
        "[child {me}] my parent exited; my parent is now {after} ({}); living {hold} s more",
        comm(after)
    );
    std::io::stdout().flush()?;
    sleep(Duration::from_secs(hold));
    verdict.write_all(&(before as u32).to_le_bytes())?;
    verdict.write_all(&(after as u32).to_le_bytes())?;
    Ok(())
}
