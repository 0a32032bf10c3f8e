//! End-to-end tests of the `supervisor` command against hostile or unusual surroundings: a
//! closed or full stdout, inputs swapped under it, file names that try to look alike or to
//! drive the terminal, nonsense options and stop signals. Each runs the real binary.
mod common;

use std::fs;
use std::io::Read as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use libtest_mimic::Trial;

/// A directory of three small logs.
fn small_logs() -> Result<tempfile::TempDir, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    for (name, lines) in [("a.log", 3), ("b.log", 5), ("c.log", 7)] {
        let text: String = (0..lines).map(|n| format!("10.0.0.{n} - - x\n")).collect();
        fs::write(dir.path().join(name), text).map_err(|e| e.to_string())?;
    }
    Ok(dir)
}

/// Runs `supervisor ARGS` with stdout going to `stdout`, stderr captured; at most `timeout`.
fn run_with_stdout(args: &[&str], stdout: Stdio, timeout: Duration) -> Result<Finished, String> {
    let started = Instant::now();
    let mut child = Command::new(SUPERVISOR)
        .args(args)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("starting the supervisor: {e}"))?;
    let mut stderr = child.stderr.take().ok_or("no stderr pipe")?;
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            break status;
        }
        if started.elapsed() >= timeout {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("the supervisor did not finish within {timeout:?}"));
        }
        sleep_ms(10);
    };
    Ok(Finished {
        code: status.code(),
        stdout: String::new(),
        stderr: reader.join().unwrap_or_default(),
        elapsed: started.elapsed(),
    })
}

/// The read end of a pipe whose write end is `Stdio` for a child. Close-on-exec, so that no
/// other child started meanwhile (tests run in parallel) holds the read end open.
fn pipe() -> Result<(fs::File, Stdio), String> {
    let (read, write) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| e.to_string())?;
    Ok((fs::File::from(read), Stdio::from(write)))
}

fn check_no_panic(finished: &Finished) -> Result<(), String> {
    check!(
        !finished.stderr.contains("panicked") && !finished.stderr.contains("RUST_BACKTRACE"),
        "it panicked:\n{}",
        finished.stderr
    );
    Ok(())
}

fn a_closed_stdout_ends_the_run_quietly() -> TestResult {
    let logs = small_logs()?;
    let runs: [&[&str]; 3] = [
        &["run", "logcount", path_str(logs.path()), "--format", "json"],
        &["run", "logcount", path_str(logs.path()), "--workers", "2"],
        &["diag", "echo", "a", "b", "c", "--workers", "2"],
    ];
    for args in runs {
        // The reader goes away before anything is written: every write meets EPIPE.
        let (read, write) = pipe()?;
        drop(read);
        let finished = run_with_stdout(args, write, LONG)?;
        check_no_panic(&finished)?;
        finished
            .expect_exit(141)
            .map_err(|e| format!("{args:?}: {e}"))?;
        check!(
            finished.stderr.is_empty(),
            "{args:?}: a closed pipe is not an error to report:\n{}",
            finished.stderr
        );
    }
    no_zombie_of_this_process()?;
    Ok(())
}

fn a_pipe_closed_after_some_output_ends_the_run_quietly() -> TestResult {
    // Like `| head -c 10`: the reader takes a little, then closes; the output is far larger
    // than a pipe holds, so the writer meets EPIPE mid-write.
    let words: Vec<String> = (0..10_000).map(|n| format!("word-{n:08}")).collect();
    let mut args = vec!["diag", "echo", "--workers", "2"];
    args.extend(words.iter().map(String::as_str));
    let (mut read, write) = pipe()?;
    let head = std::thread::spawn(move || {
        let mut first = [0u8; 10];
        let got = read.read_exact(&mut first).is_ok();
        drop(read);
        got
    });
    let finished = run_with_stdout(&args, write, LONG)?;
    check!(head.join().unwrap_or(false), "the reader got no output");
    check_no_panic(&finished)?;
    finished.expect_exit(141)?;
    check!(finished.stderr.is_empty(), "stderr:\n{}", finished.stderr);
    Ok(())
}

fn a_full_stdout_is_an_error_naming_stdout() -> TestResult {
    let logs = small_logs()?;
    let runs: [&[&str]; 2] = [
        &["run", "logcount", path_str(logs.path()), "--format", "csv"],
        &["diag", "echo", "a", "--workers", "1"],
    ];
    for args in runs {
        let full = fs::OpenOptions::new().write(true).open("/dev/full")?;
        let finished = run_with_stdout(args, Stdio::from(full), LONG)?;
        check_no_panic(&finished)?;
        finished
            .expect_exit(1)
            .and_then(|()| finished.expect_stderr_saying("stdout"))
            .and_then(|()| finished.expect_stderr_saying("No space left on device"))
            .map_err(|e| format!("{args:?}: {e}"))?;
    }
    Ok(())
}

fn an_input_swapped_for_a_fifo_is_an_error_not_a_hang() -> TestResult {
    // The swap has to land after planning and before a worker opens the file: the worker first
    // counts many chunks of a.log and is stopped while the swap is made. Should it still have
    // reached z.log first (z.log counted), the race is tried again.
    for round in 0..5 {
        let logs = tempfile::tempdir()?;
        let line = "192.168.100.200 - - [01/Jan/2026:00:00:01 +0000] \"GET / HTTP/1.1\" 200 1\n";
        fs::write(
            logs.path().join("a.log"),
            line.repeat((8 << 20) / line.len()),
        )?;
        let swapped = logs.path().join("z.log");
        fs::write(&swapped, "10.0.0.1 - - x\n")?;
        let args = [
            "run",
            "logcount",
            path_str(logs.path()),
            "--format",
            "json",
            "--workers",
            "1",
            "--chunk-bytes",
            "65536",
        ];
        let (running, workers) = start_with_workers(&args, 1)?;
        let worker = nix::unistd::Pid::from_raw(workers[0]);
        let _ = nix::sys::signal::kill(worker, nix::sys::signal::Signal::SIGSTOP);
        fs::remove_file(&swapped)?;
        nix::unistd::mkfifo(&swapped, nix::sys::stat::Mode::from_bits_truncate(0o600))?;
        let _ = nix::sys::signal::kill(worker, nix::sys::signal::Signal::SIGCONT);
        let finished = running.finish(LONG)?;
        let json: serde_json::Value = serde_json::from_str(&finished.stdout)
            .map_err(|e| format!("{e}; stdout:\n{}", finished.stdout))?;
        if json["files"].get("z.log").is_some() {
            sleep_ms(50 * (round + 1));
            continue;
        }
        finished.expect_exit(1)?;
        check!(
            json["errors"]["z.log"]
                .as_str()
                .is_some_and(|reason| reason.contains("FIFO")),
            "z.log not listed as a FIFO: {json}"
        );
        check!(json["files"]["a.log"]["total"].is_u64(), "{json}");
        return Ok(());
    }
    Err("z.log was always counted before it could be swapped".into())
}

fn look_alike_and_control_names_stay_distinct_and_inert() -> TestResult {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt as _;

    let logs = tempfile::tempdir()?;
    // (raw name, how it is shown, lines)
    let files: [(&[u8], &str, usize); 4] = [
        (b"\xff\xfe.log", r"\xFF\xFE.log", 1),
        (br"\xFF\xFE.log", r"\\xFF\\xFE.log", 2),
        (b"two\nlines.log", r"two\x0Alines.log", 3),
        (
            b"\x1b[2J\x1b]0;pwned\x07.log",
            r"\x1B[2J\x1B]0;pwned\x07.log",
            4,
        ),
    ];
    for (raw, _, lines) in files {
        let text: String = (0..lines).map(|n| format!("10.0.0.{n} - - x\n")).collect();
        fs::write(logs.path().join(OsStr::from_bytes(raw)), text)?;
    }
    let dir = path_str(logs.path());
    let json = run(&["run", "logcount", dir, "--format", "json"], LONG)?;
    json.expect_exit(0)?;
    let value: serde_json::Value = serde_json::from_str(&json.stdout)?;
    let shown = value["files"].as_object().ok_or("no files object")?;
    check!(shown.len() == 4, "files merged: {}", json.stdout);
    for (_, name, lines) in files {
        check!(
            shown.get(name).and_then(|c| c["total"].as_u64()) == Some(lines as u64),
            "{name} not shown with its {lines} line(s): {}",
            json.stdout
        );
    }
    check!(value["all"]["total"] == 10, "{}", json.stdout);

    let csv = run(&["run", "logcount", dir, "--format", "csv"], LONG)?;
    csv.expect_exit(0)?;
    check!(
        csv.stdout.lines().count() == 6,
        "one header, four rows, a total:\n{}",
        csv.stdout
    );
    let table = run(&["run", "logcount", dir], LONG)?;
    table.expect_exit(0)?;
    check!(
        table.stdout.lines().count() == 8,
        "one header, four rows, a rule, a total, the note on it:\n{}",
        table.stdout
    );
    for (format, finished) in [("json", &json), ("csv", &csv), ("table", &table)] {
        check!(
            !finished.stdout.contains(['\u{1b}', '\u{7}']),
            "{format} output carries control bytes:\n{:?}",
            finished.stdout
        );
        for (_, name, _) in files {
            let found = match format {
                "json" => true,
                _ => finished.stdout.contains(name),
            };
            check!(found, "{format}: {name} missing:\n{}", finished.stdout);
        }
    }
    Ok(())
}

fn nonsense_options_are_usage_errors_naming_the_option() -> TestResult {
    let logs = small_logs()?;
    let dir = path_str(logs.path());
    let cases: [(&[&str], &str); 9] = [
        (
            &["diag", "echo", "a", "--job-timeout", "0"],
            "--job-timeout",
        ),
        (
            &["diag", "echo", "a", "--heartbeat-timeout", "0"],
            "--heartbeat-timeout",
        ),
        (
            &["diag", "echo", "a", "--heartbeat-timeout", "0.001"],
            "--heartbeat-timeout",
        ),
        (
            &["diag", "echo", "a", "--restart-period", "0"],
            "--restart-period",
        ),
        (
            &["diag", "echo", "a", "--status-interval", "0"],
            "--status-interval",
        ),
        (
            &["diag", "echo", "a", "--job-timeout", "nan"],
            "--job-timeout",
        ),
        (
            &["run", "logcount", dir, "--chunk-bytes", "1"],
            "--chunk-bytes",
        ),
        (
            &["diag", "echo", "a", "--max-workers", "0"],
            "--max-workers",
        ),
        (
            &["diag", "echo", "a", "--workers", "3", "--max-workers", "2"],
            "--max-workers 2",
        ),
    ];
    for (args, option) in cases {
        let finished = run(args, LONG)?;
        check_no_panic(&finished)?;
        finished
            .expect_exit(2)
            .and_then(|()| finished.expect_stderr_saying(option))
            .map_err(|e| format!("{args:?}: {e}"))?;
    }
    // The smallest chunk size is accepted.
    let finished = run(&["run", "logcount", dir, "--chunk-bytes", "65536"], LONG)?;
    finished.expect_exit(0)?;
    Ok(())
}

fn zero_grace_stops_at_once_without_a_false_alarm() -> TestResult {
    let logs = small_logs()?;
    let runs: [&[&str]; 2] = [
        &[
            "diag",
            "echo",
            "a",
            "b",
            "c",
            "--workers",
            "2",
            "--grace",
            "0",
        ],
        &["run", "logcount", path_str(logs.path()), "--grace", "0"],
    ];
    for args in runs {
        let finished = run(args, LONG)?;
        finished
            .expect_exit(0)
            .map_err(|e| format!("{args:?}: {e}"))?;
        check!(
            finished.stderr.is_empty(),
            "{args:?}: a clean run with --grace 0 is quiet:\n{}",
            finished.stderr
        );
    }
    no_zombie_of_this_process()?;
    Ok(())
}

fn a_stop_signal_exits_128_plus_its_number() -> TestResult {
    for (signal, code) in [
        (nix::sys::signal::Signal::SIGINT, 130),
        (nix::sys::signal::Signal::SIGTERM, 143),
    ] {
        let (running, _) = start_with_workers(
            &["diag", "hang", "a", "--workers", "1", "--grace", "0.3"],
            1,
        )?;
        sleep_ms(100);
        running.signal(signal);
        let finished = running.finish(LONG)?;
        finished
            .expect_exit(code)
            .and_then(|()| finished.expect_stderr_saying("interrupted by a stop signal"))
            .map_err(|e| format!("{signal}: {e}"))?;
    }
    Ok(())
}

fn an_interrupted_logcount_names_the_files_it_did_not_count() -> TestResult {
    // The worker is stopped (SIGSTOP) before SIGTERM, so the run cannot finish meanwhile;
    // should it have finished before the worker was stopped, the race is run again.
    for round in 0..5 {
        let logs = tempfile::tempdir()?;
        let line = "192.168.100.200 - - [01/Jan/2026:00:00:01 +0000] \"GET / HTTP/1.1\" 200 1\n";
        fs::write(
            logs.path().join("a.log"),
            line.repeat((8 << 20) / line.len()),
        )?;
        fs::write(logs.path().join("z.log"), "10.0.0.1 - - x\n")?;
        let args = [
            "run",
            "logcount",
            path_str(logs.path()),
            "--workers",
            "1",
            "--chunk-bytes",
            "65536",
            "--grace",
            "0.3",
        ];
        let (running, workers) = start_with_workers(&args, 1)?;
        let worker = nix::unistd::Pid::from_raw(workers[0]);
        let _ = nix::sys::signal::kill(worker, nix::sys::signal::Signal::SIGSTOP);
        running.signal(nix::sys::signal::Signal::SIGTERM);
        let finished = running.finish(LONG)?;
        if finished.code == Some(0) {
            sleep_ms(50 * (round + 1));
            continue;
        }
        finished.expect_exit(143)?;
        finished.expect_stderr_saying(
            "stopped by SIGTERM before counting 2 file(s):\n  a.log\n  z.log\n",
        )?;
        check!(
            finished.stdout.contains("errors:") && finished.stdout.contains("not counted"),
            "the report does not list them under errors:\n{}",
            finished.stdout
        );
        no_zombie_of_this_process()?;
        return Ok(());
    }
    Err("the run always finished before it could be stopped".into())
}

fn the_same_stop_signal_twice_at_once_counts_once() -> TestResult {
    // `timeout` sends SIGTERM to the process and to its group: one request, not two.
    let (running, _) = start_with_workers(
        &[
            "diag",
            "hang",
            "a",
            "--workers",
            "1",
            "--grace",
            "30",
            "--log-format",
            "json",
        ],
        1,
    )?;
    sleep_ms(100);
    running.signal(nix::sys::signal::Signal::SIGTERM);
    running.signal(nix::sys::signal::Signal::SIGTERM);
    sleep_ms(400);
    let so_far = running.stderr_so_far();
    check!(
        so_far.contains("drain_begun") && !so_far.contains("stopping_now"),
        "two SIGTERMs at once were taken for two requests:\n{so_far}"
    );
    // A later one is a second request: stop at once.
    running.signal(nix::sys::signal::Signal::SIGTERM);
    let finished = running.finish(Duration::from_secs(5))?;
    finished.expect_exit(143)?;
    let records = events(&finished);
    check!(
        named(&records, "drain_begun").len() == 1 && named(&records, "stopping_now").len() == 1,
        "expected one drain, then one stop:\n{}",
        finished.stderr
    );
    Ok(())
}

fn sigttin_stops_at_max_workers() -> TestResult {
    let (running, _) = start_with_workers(
        &[
            "diag",
            "sleep",
            "1500",
            "--workers",
            "1",
            "--max-workers",
            "2",
            "--log-format",
            "json",
        ],
        1,
    )?;
    for _ in 0..4 {
        running.signal(nix::sys::signal::Signal::SIGTTIN);
        sleep_ms(50);
    }
    running.wait_for_workers(2, STARTUP)?;
    sleep_ms(300);
    let workers = running.workers();
    check!(workers.len() == 2, "grew past the cap: {workers:?}");
    let finished = running.finish(LONG)?;
    finished.expect_exit(0)?;
    let resized = named(&events(&finished), "pool_resized")
        .into_iter()
        .cloned()
        .collect::<Vec<_>>();
    check!(
        resized.iter().all(|record| record["size"] == 2)
            && resized.iter().any(|record| record["at_limit"] == true),
        "{resized:?}"
    );
    Ok(())
}

fn main() -> std::process::ExitCode {
    run_trials(vec![
        Trial::test(
            "nonsense_options_are_usage_errors_naming_the_option",
            nonsense_options_are_usage_errors_naming_the_option,
        ),
        Trial::test(
            "zero_grace_stops_at_once_without_a_false_alarm",
            zero_grace_stops_at_once_without_a_false_alarm,
        ),
        Trial::test(
            "a_stop_signal_exits_128_plus_its_number",
            a_stop_signal_exits_128_plus_its_number,
        ),
        Trial::test(
            "an_interrupted_logcount_names_the_files_it_did_not_count",
            an_interrupted_logcount_names_the_files_it_did_not_count,
        ),
        Trial::test(
            "the_same_stop_signal_twice_at_once_counts_once",
            the_same_stop_signal_twice_at_once_counts_once,
        ),
        Trial::test("sigttin_stops_at_max_workers", sigttin_stops_at_max_workers),
        Trial::test(
            "look_alike_and_control_names_stay_distinct_and_inert",
            look_alike_and_control_names_stay_distinct_and_inert,
        ),
        Trial::test(
            "an_input_swapped_for_a_fifo_is_an_error_not_a_hang",
            an_input_swapped_for_a_fifo_is_an_error_not_a_hang,
        ),
        Trial::test(
            "a_closed_stdout_ends_the_run_quietly",
            a_closed_stdout_ends_the_run_quietly,
        ),
        Trial::test(
            "a_pipe_closed_after_some_output_ends_the_run_quietly",
            a_pipe_closed_after_some_output_ends_the_run_quietly,
        ),
        Trial::test(
            "a_full_stdout_is_an_error_naming_stdout",
            a_full_stdout_is_an_error_naming_stdout,
        ),
    ])
}
