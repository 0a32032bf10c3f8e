//! End-to-end tests of what a `supervisor` run shows while it runs: log records with their
//! levels and fields (text and JSON, `-q`, `-v`, `-vv`), the worker table and the progress bar
//! naming the file each worker is on, and workers named in `ps`. Each test runs the real binary
//! in a temp dir of its own.
mod common;

use std::io::{Read as _, Write as _};
use std::process::{Command, Stdio};
use std::time::Instant;

use common::*;
use libtest_mimic::Trial;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// A directory with `a.log` (four 64 KiB chunks' worth) and a one-line `b.log`.
fn two_logs() -> Result<tempfile::TempDir, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let mut a = String::new();
    let mut n = 0u64;
    while a.len() < 4 * 65536 - 100 {
        a.push_str(&format!(
            "10.0.{}.{} - - [x] \"GET / HTTP/1.1\" 200 1\n",
            n / 256 % 256,
            n % 256
        ));
        n += 1;
    }
    std::fs::write(dir.path().join("a.log"), a).map_err(|e| e.to_string())?;
    std::fs::write(dir.path().join("b.log"), "1.2.3.4 - - x\n").map_err(|e| e.to_string())?;
    Ok(dir)
}

/// A directory with `big.log.gz`: a few hundred KB on disk that take a worker a second or more
/// to unpack and count, so that a run can be looked at while a worker is on it.
fn slow_gzip() -> Result<tempfile::TempDir, Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let file = std::io::BufWriter::new(std::fs::File::create(dir.path().join("big.log.gz"))?);
    let mut gz = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
    let block =
        "10.1.2.3 - - [01/Jan/2026:00:00:01 +0000] \"GET / HTTP/1.1\" 200 1\n".repeat(16_384);
    for _ in 0..SLOW_GZIP_BLOCKS {
        gz.write_all(block.as_bytes())?;
    }
    gz.finish()?.flush()?;
    Ok(dir)
}

/// About 100 MB unpacked.
const SLOW_GZIP_BLOCKS: usize = 100;

fn log_records_name_the_worker_pid_job_and_file() -> TestResult {
    let logs = two_logs()?;
    let dir = path_str(logs.path());
    let common = ["run", "logcount", dir, "-j", "2", "--chunk-bytes", "65536"];

    let finished = run(
        &[&common[..], &["-v", "--log-format", "json"]].concat(),
        LONG,
    )?;
    finished.expect_exit(0)?;
    let records = events(&finished);
    let started: std::collections::BTreeMap<u64, u64> = named(&records, "worker_started")
        .iter()
        .map(|r| {
            (
                r["worker"].as_u64().unwrap_or(0),
                r["pid"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    check!(
        started.len() == 2,
        "not 2 workers started:\n{}",
        finished.stderr
    );
    let leased = named(&records, "job_leased");
    check!(leased.len() == 5, "not 5 jobs leased:\n{}", finished.stderr);
    let mut chunks = Vec::new();
    for record in &leased {
        check!(
            record["level"] == "DEBUG" && record["timestamp"].is_string(),
            "no level or timestamp: {record}"
        );
        let worker = record["worker"].as_u64().ok_or("no worker")?;
        check!(
            record["pid"].as_u64() == started.get(&worker).copied(),
            "the record does not carry its worker's pid: {record}"
        );
        check!(record["job"].is_u64(), "no job: {record}");
        match record["file"].as_str() {
            Some("a.log") => chunks.push(record["chunk"].as_str().unwrap_or("").to_owned()),
            Some("b.log") => check!(record.get("chunk").is_none(), "{record}"),
            _ => return Err(format!("no file: {record}").into()),
        }
    }
    chunks.sort();
    check!(chunks == ["1/4", "2/4", "3/4", "4/4"], "chunks {chunks:?}");
    let finished_jobs = named(&records, "job_finished");
    check!(
        finished_jobs.len() == 5
            && finished_jobs
                .iter()
                .all(|r| r["file"].is_string() && r["pid"].is_u64()),
        "job_finished records lack their file or pid:\n{}",
        finished.stderr
    );

    // The same, for people.
    let finished = run(&[&common[..], &["-v"]].concat(), LONG)?;
    finished.expect_exit(0)?;
    check!(
        finished
            .stderr
            .lines()
            .any(|line| line.starts_with("debug: job ")
                && line.contains(" to worker #")
                && line.ends_with("(a.log [2/4])")),
        "no routine record naming the file and chunk:\n{}",
        finished.stderr
    );
    check!(
        !finished.stderr.contains("trace:"),
        "-v shows trace records:\n{}",
        finished.stderr
    );

    let finished = run(&[&common[..], &["-vv"]].concat(), LONG)?;
    finished.expect_exit(0)?;
    finished.expect_stderr_saying("trace: job 4: b.log")?;
    finished.expect_stderr_saying("trace: starting 2 worker(s)")?;
    finished.expect_stderr_saying("debug: 5 job(s) in the run")?;

    let finished = run(&common, LONG)?;
    finished.expect_exit(0)?;
    check!(
        finished.stderr.is_empty(),
        "a clean run logs nothing by default:\n{}",
        finished.stderr
    );
    Ok(())
}

fn quiet_shows_errors_only_and_text_records_have_levels() -> TestResult {
    let args = ["diag", "crash", "x", "-j", "1", "--max-attempts", "2"];
    let finished = run(&args, LONG)?;
    finished.expect_exit(1)?;
    finished.expect_stderr_saying("warning: worker #1 (pid ")?;
    finished.expect_stderr_saying("re-queued (attempt 2 of 2 next) (crash x)")?;
    finished.expect_stderr_saying("error: worker #2 (pid ")?;
    finished.expect_stderr_saying("error: 1 of 1 job(s) failed:\n  job 0 (crash x): ")?;

    let finished = run(&[&args[..], &["-q"]].concat(), LONG)?;
    finished.expect_exit(1)?;
    let stray: Vec<&str> = finished
        .stderr
        .lines()
        .filter(|line| !line.starts_with("error: ") && !line.starts_with("  job "))
        .collect();
    check!(
        stray.is_empty(),
        "-q shows more than errors: {stray:?}\n{}",
        finished.stderr
    );
    finished.expect_stderr_saying("job failed, out of attempts (crash x)")?;
    finished.expect_stderr_saying("error: 1 of 1 job(s) failed:")?;

    let finished = run(&["diag", "echo", "x", "-q", "-v"], LONG)?;
    finished.expect_exit(2)?;
    finished.expect_stderr_saying("cannot be used with")?;
    Ok(())
}

/// Runs `supervisor ARGS` (one worker) and asks for the worker table while its worker is held
/// on its job (SIGSTOP, then SIGCONT), so that the table shows it busy whatever the speed.
fn table_of_a_busy_worker(args: &[&str]) -> Result<(Finished, i32), String> {
    let (running, workers) = start_with_workers(args, 1)?;
    let worker = Pid::from_raw(workers[0]);
    kill(worker, Signal::SIGSTOP).map_err(|e| e.to_string())?;
    sleep_ms(100);
    running.signal(Signal::SIGUSR1);
    sleep_ms(200);
    kill(worker, Signal::SIGCONT).map_err(|e| e.to_string())?;
    Ok((running.finish(LONG)?, workers[0]))
}

fn the_worker_table_names_the_file_each_worker_is_on() -> TestResult {
    let logs = slow_gzip()?;
    let dir = path_str(logs.path());
    let (finished, worker) = table_of_a_busy_worker(&["run", "logcount", dir, "-j", "1"])?;
    finished.expect_exit(0)?;
    check!(
        finished.stderr.lines().any(|line| line.contains(&format!(" {worker} "))
            && line.contains("  big.log.gz for ")),
        "the table does not name the worker's file:\n{}",
        finished.stderr
    );

    // Asked for, the table shows even when the run is quiet.
    let (finished, worker) = table_of_a_busy_worker(&["run", "logcount", dir, "-j", "1", "-q"])?;
    finished.expect_exit(0)?;
    check!(
        finished
            .stderr
            .starts_with("supervisor status: 1 worker(s)")
            && finished.stderr.contains(&format!(" {worker} ")),
        "-q hides the table asked for:\n{}",
        finished.stderr
    );

    let (finished, worker) =
        table_of_a_busy_worker(&["run", "logcount", dir, "-j", "1", "--log-format", "json"])?;
    finished.expect_exit(0)?;
    let records = events(&finished);
    check!(
        named(&records, "worker_status")
            .iter()
            .any(|r| r["file"] == "big.log.gz"
                && r["pid"] == worker
                && r["worker"] == 1
                && r["state"] == "T"
                && r["running_secs"].is_f64()),
        "no worker_status record names the file:\n{}",
        finished.stderr
    );
    check!(
        named(&records, "status")
            .iter()
            .any(|r| r["workers"] == 1 && r["unfinished"] == 1),
        "no status record:\n{}",
        finished.stderr
    );
    Ok(())
}

/// Runs `supervisor ARGS` with stderr on a terminal (a pty), returning what it drew there.
fn run_on_a_terminal(args: &[&str]) -> Result<(Option<i32>, String), Box<dyn std::error::Error>> {
    let size = nix::pty::Winsize {
        ws_row: 24,
        ws_col: 160,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let pty = nix::pty::openpty(Some(&size), None)?;
    let dir = tempfile::tempdir()?;
    let mut child = Command::new(SUPERVISOR)
        .args(args)
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::from(pty.slave))
        .spawn()?;
    let mut master = std::fs::File::from(pty.master);
    // Read as it is drawn, or the pty's buffer fills and the bar blocks the run.
    let reader = std::thread::spawn(move || {
        let mut drawn = Vec::new();
        let mut buf = [0u8; 4096];
        // EIO once every holder of the slave side has closed it.
        while let Ok(n @ 1..) = master.read(&mut buf) {
            drawn.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&drawn).into_owned()
    });
    let deadline = Instant::now() + LONG;
    let code = loop {
        if let Some(status) = child.try_wait()? {
            break status.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            return Err("the run on a terminal hung".into());
        }
        sleep_ms(20);
    };
    Ok((code, reader.join().map_err(|_| "the pty reader panicked")?))
}

fn the_progress_bar_names_the_file_on_a_terminal() -> TestResult {
    let logs = slow_gzip()?;
    let (code, drawn) = run_on_a_terminal(&["run", "logcount", path_str(logs.path()), "-j", "1"])?;
    check!(code == Some(0), "exit {code:?}:\n{drawn}");
    check!(
        drawn.contains("0/1 jobs") && drawn.contains("#1 big.log.gz"),
        "the bar does not show the job count and the worker's file:\n{drawn:?}"
    );
    let (code, drawn) =
        run_on_a_terminal(&["run", "logcount", path_str(logs.path()), "-j", "1", "-q"])?;
    check!(code == Some(0), "exit {code:?}:\n{drawn}");
    check!(drawn.is_empty(), "-q draws on the terminal:\n{drawn:?}");
    Ok(())
}

/// A process's name, as `ps` and `top` show it.
fn comm(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|name| name.trim_end().to_owned())
        .unwrap_or_default()
}

fn workers_are_named_in_ps(start_method: &'static str) -> TestResult {
    let running = start(&[
        "diag",
        "sleep",
        "1500",
        "1500",
        "-j",
        "2",
        "--start-method",
        start_method,
    ]);
    // Fork and spawn workers are the supervisor's children; forkserver ones its server's.
    let descendants = || {
        let children = live_children_of(running.pid());
        let grandchildren = children.iter().flat_map(|&child| live_children_of(child));
        let mut all: Vec<i32> = children.iter().copied().chain(grandchildren).collect();
        all.sort_unstable();
        all
    };
    let workers = retry_until(Instant::now() + STARTUP, || {
        let named: Vec<(i32, String)> = descendants()
            .into_iter()
            .map(|pid| (pid, comm(pid)))
            .filter(|(_, name)| name.starts_with("herd-worker-"))
            .collect();
        let mut names: Vec<&str> = named.iter().map(|(_, name)| name.as_str()).collect();
        names.sort_unstable();
        if names == ["herd-worker-1", "herd-worker-2"] {
            Ok(named)
        } else {
            Err(format!(
                "processes under the supervisor: {:?}",
                descendants()
                    .into_iter()
                    .map(|pid| (pid, comm(pid)))
                    .collect::<Vec<_>>()
            ))
        }
    })?;
    check!(
        comm(running.pid()) == "supervisor",
        "the supervisor itself is renamed to {}",
        comm(running.pid())
    );
    let finished = running.finish(LONG)?;
    finished.expect_exit(0)?;
    for (pid, _) in workers {
        check!(!is_alive(pid), "worker {pid} outlived the run");
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    run_trials(vec![
        Trial::test(
            "log_records_name_the_worker_pid_job_and_file",
            log_records_name_the_worker_pid_job_and_file,
        ),
        Trial::test(
            "quiet_shows_errors_only_and_text_records_have_levels",
            quiet_shows_errors_only_and_text_records_have_levels,
        ),
        Trial::test(
            "the_worker_table_names_the_file_each_worker_is_on",
            the_worker_table_names_the_file_each_worker_is_on,
        ),
        Trial::test(
            "the_progress_bar_names_the_file_on_a_terminal",
            the_progress_bar_names_the_file_on_a_terminal,
        ),
        Trial::test("workers_are_named_in_ps_fork", || {
            workers_are_named_in_ps("fork")
        }),
        Trial::test("workers_are_named_in_ps_spawn", || {
            workers_are_named_in_ps("spawn")
        }),
        Trial::test("workers_are_named_in_ps_forkserver", || {
            workers_are_named_in_ps("forkserver")
        }),
    ])
}
