//! End-to-end tests of the `supervisor` CLI: results, exit codes and messages of `run` (the
//! diagnostic kinds and logcount over the pool) and `gen-logs`. Each test runs the real binary
//! in a temp dir of its own.
mod common;

use common::*;
use herd_logcount::{count_dir, Format, Options};
use std::time::Duration;

use libtest_mimic::Trial;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

fn echo_prints_every_answer_in_job_order(start_method: &'static str) -> TestResult {
    let words: Vec<String> = (0..25).map(|n| format!("word-{n}")).collect();
    let mut args = vec![
        "diag",
        "echo",
        "--workers",
        "3",
        "--start-method",
        start_method,
    ];
    args.extend(words.iter().map(String::as_str));
    let finished = run(&args, LONG)?;
    finished.expect_exit(0)?;
    check!(finished.lines() == words, "stdout:\n{}", finished.stdout);
    check!(
        finished.stderr.is_empty(),
        "a clean run is quiet on a non-terminal stderr:\n{}",
        finished.stderr
    );
    no_zombie_of_this_process()?;
    Ok(())
}

fn failed_jobs_give_a_summary_and_exit_1_while_the_others_finish() -> TestResult {
    let finished = run(&["diag", "sleep", "5", "soon", "7", "--workers", "2"], LONG)?;
    finished.expect_exit(1)?;
    check!(
        finished.lines() == ["slept 5 ms", "slept 7 ms"],
        "stdout:\n{}",
        finished.stdout
    );
    check!(
        finished.stderr.contains("1 of 3 job(s) failed")
            && finished
                .stderr
                .contains("job 1 (sleep soon): invalid input"),
        "stderr:\n{}",
        finished.stderr
    );
    let finished = run(&["diag", "fail", "x", "--workers", "1"], LONG)?;
    finished.expect_exit(1)?;
    finished.expect_stderr_saying("job 0 (fail x): asked to fail: x")?;
    Ok(())
}

fn bad_usage_is_a_clear_error_with_exit_2() -> TestResult {
    // Every usage error is clap's: `error: ...` naming the fault, a pointer to --help, exit 2.
    let cases: [(&[&str], &str); 8] = [
        (&["diag", "nope"], "invalid value 'nope' for '<KIND>'"),
        (&["run", "echo", "a"], "unrecognized subcommand 'echo'"),
        (
            &["diag", "echo", "a", "--workers", "0"],
            "positive number of workers",
        ),
        (
            &["diag", "echo", "a", "--job-timeout=-1"],
            "non-negative number of seconds",
        ),
        (
            &["diag", "echo", "a", "--top", "3"],
            "unexpected argument '--top'",
        ),
        (
            &["diag", "echo", "a", "--chunk-bytes", "65536"],
            "unexpected argument '--chunk-bytes'",
        ),
        (&["run", "logcount"], "required arguments were not provided"),
        (
            &["diag", "echo", "a", "-j", "3", "--max-workers", "2"],
            "--workers 3 is more than --max-workers 2",
        ),
    ];
    for (args, message) in cases {
        let finished = run(args, LONG)?;
        finished
            .expect_exit(2)
            .and_then(|()| finished.expect_stderr_saying(message))
            .and_then(|()| finished.expect_stderr_saying("For more information, try '--help'."))
            .map_err(|e| format!("{args:?}: {e}"))?;
        check!(
            finished.stderr.starts_with("error: "),
            "{args:?}: not in clap's error style:\n{}",
            finished.stderr
        );
    }
    Ok(())
}

fn gen_logs(dir: &std::path::Path, files: &str, lines: &str) -> Result<(), String> {
    let finished = run(
        &[
            "gen-logs",
            path_str(dir),
            "--files",
            files,
            "--lines",
            lines,
            "--distinct",
            "300",
            "--seed",
            "5",
        ],
        LONG,
    )?;
    finished
        .expect_exit(0)
        .map_err(|e| format!("gen-logs failed: {e}"))
}

fn logcount_over_the_pool_matches_the_in_process_count() -> TestResult {
    let data = tempfile::tempdir()?;
    gen_logs(data.path(), "4", "5000")?;
    std::fs::write(
        data.path().join("extra.log"),
        "1.2.3.4 - - x\n\n5.6.7.8, 9 - - y\r\n1.2.3.4",
    )?;
    let expected = count_dir(
        data.path(),
        &Options {
            top: Some(3),
            ..Options::default()
        },
    )?;
    // The smallest chunks allowed put many cuts (and mapped windows) inside lines.
    for (method, chunk_bytes) in [
        ("fork", None),
        ("spawn", None),
        ("forkserver", None),
        ("fork", Some("65536")),
    ] {
        let mut args = vec![
            "run",
            "logcount",
            path_str(data.path()),
            "--format",
            "json",
            "--top",
            "3",
            "--workers",
            "2",
            "--start-method",
            method,
        ];
        if let Some(bytes) = chunk_bytes {
            args.extend(["--chunk-bytes", bytes]);
        }
        let finished = run(&args, LONG)?;
        finished
            .expect_success_printing(&expected.render(Format::Json))
            .map_err(|e| format!("{method}, chunk bytes {chunk_bytes:?}: {e}"))?;
    }
    let json: serde_json::Value = serde_json::from_str(&expected.render(Format::Json))?;
    check!(
        json["files"]["extra.log"]["total"] == 3 && json["files"]["extra.log"]["ip"] == 2,
        "{json}"
    );
    Ok(())
}

fn logcount_with_workers_killed_gives_the_clean_result() -> TestResult {
    let data = tempfile::tempdir()?;
    gen_logs(data.path(), "6", "60000")?;
    let args = [
        "run",
        "logcount",
        path_str(data.path()),
        "--format",
        "csv",
        "--workers",
        "2",
    ];
    let clean = run(&args, LONG)?;
    clean
        .expect_exit(0)
        .map_err(|e| format!("clean run: {e}"))?;
    let (running, _) = start_with_workers(&[&args[..], &["--max-restarts", "50"]].concat(), 2)?;
    // SIGBUS is how a worker dies whose mapped scan meets a file truncated meanwhile.
    for signal in [Signal::SIGBUS, Signal::SIGKILL, Signal::SIGBUS] {
        if let Some(&victim) = running.workers().first() {
            let _ = kill(Pid::from_raw(victim), signal);
        }
        sleep_ms(30);
    }
    let finished = running.finish(LONG)?;
    finished
        .expect_success_printing(&clean.stdout)
        .map_err(|e| format!("with workers killed, not as the clean run: {e}"))?;
    Ok(())
}

/// Lines and distinct keys per file and over all, counted naively (the logs of `gen-logs`
/// have no blank lines, no `\r` and no long keys): the JSON logcount must print.
fn naive_json(dir: &std::path::Path) -> Result<serde_json::Value, String> {
    use std::collections::{BTreeMap, BTreeSet};
    let mut files = BTreeMap::new();
    let mut every_key = BTreeSet::new();
    let mut total = 0;
    for entry in std::fs::read_dir(dir).map_err(|e| e.to_string())? {
        let path = entry.map_err(|e| e.to_string())?.path();
        let text = std::fs::read_to_string(&path).map_err(|e| e.to_string())?;
        let mut keys = BTreeSet::new();
        let mut lines = 0;
        for line in text.lines().filter(|line| !line.trim().is_empty()) {
            let key = line.split(" - -").next().unwrap_or(line);
            keys.insert(key.split(',').next().unwrap_or(key).to_owned());
            lines += 1;
        }
        let name = path.file_name().and_then(|n| n.to_str()).ok_or("a name")?;
        files.insert(
            name.to_owned(),
            serde_json::json!({"total": lines, "ip": keys.len()}),
        );
        total += lines;
        every_key.extend(keys);
    }
    Ok(serde_json::json!({
        "files": files,
        "all": {"total": total, "ip": every_key.len()},
        "errors": {},
    }))
}

fn logcount_batches_many_small_files_exactly_with_workers_killed() -> TestResult {
    let data = tempfile::tempdir()?;
    gen_logs(data.path(), "1500", "4")?;
    let expected = naive_json(data.path())?;
    // The smallest chunk size puts 3 files in a job: hundreds of batches, so the workers die
    // with batches under way.
    let args = [
        "run",
        "logcount",
        path_str(data.path()),
        "--format",
        "json",
        "--workers",
        "2",
        "--chunk-bytes",
        "65536",
        "--max-restarts",
        "50",
    ];
    let clean = run(&args, LONG)?;
    clean.expect_exit(0)?;
    let clean_json: serde_json::Value = serde_json::from_str(&clean.stdout)?;
    check!(
        clean_json == expected,
        "not the naive count: {}",
        &clean.stdout[..clean.stdout.len().min(300)]
    );
    // The default planning: a few large batches.
    let default = run(&args[..7], LONG)?;
    default.expect_success_printing(&clean.stdout)?;
    let (running, _) = start_with_workers(&args, 2)?;
    for signal in [Signal::SIGKILL, Signal::SIGBUS, Signal::SIGKILL] {
        if let Some(&victim) = running.workers().first() {
            let _ = kill(Pid::from_raw(victim), signal);
        }
        sleep_ms(20);
    }
    let finished = running.finish(LONG)?;
    finished
        .expect_success_printing(&clean.stdout)
        .map_err(|e| format!("with workers killed, not as the clean run: {e}"))?;
    Ok(())
}

fn logcount_bad_input_exit_codes() -> TestResult {
    let finished = run(&["run", "logcount", "no-such-dir"], LONG)?;
    finished
        .expect_exit(2)
        .map_err(|e| format!("missing dir: {e}"))?;
    check!(
        finished.stderr.trim_end().lines().count() == 1 && finished.stderr.starts_with("error: "),
        "not one `error: ` line:\n{}",
        finished.stderr
    );
    check!(
        finished.stderr.contains("no-such-dir"),
        "does not name it:\n{}",
        finished.stderr
    );

    let data = tempfile::tempdir()?;
    std::fs::write(data.path().join("a.log"), "1.1.1.1 - - a\n2.2.2.2 - - b\n")?;
    std::os::unix::fs::symlink("/nonexistent/target", data.path().join("broken.log"))?;
    let finished = run(
        &[
            "run",
            "logcount",
            path_str(data.path()),
            "--format",
            "json",
            "--workers",
            "1",
        ],
        LONG,
    )?;
    finished
        .expect_exit(1)
        .map_err(|e| format!("unreadable file: {e}"))?;
    let json: serde_json::Value = serde_json::from_str(&finished.stdout)?;
    check!(json["files"]["a.log"]["total"] == 2, "{json}");
    check!(
        json["errors"]["broken.log"].is_string(),
        "broken symlink not under errors: {json}"
    );

    let empty = tempfile::tempdir()?;
    let finished = run(
        &[
            "run",
            "logcount",
            path_str(empty.path()),
            "--format",
            "json",
        ],
        LONG,
    )?;
    finished
        .expect_exit(0)
        .map_err(|e| format!("empty dir: {e}"))?;
    let json: serde_json::Value = serde_json::from_str(&finished.stdout)?;
    check!(json["all"]["total"] == 0, "{json}");
    Ok(())
}

/// Lines of the host-name log: its one chunk's distinct keys encode to about 84 MB, more than
/// the 64 MiB a pipe message may hold.
const HOST_NAMES: u64 = 3_000_000;

fn logcount_counts_a_result_larger_than_one_pipe_message() -> TestResult {
    use std::io::Write as _;
    let data = tempfile::tempdir()?;
    let path = data.path().join("hosts.log.gz");
    let file = std::io::BufWriter::new(std::fs::File::create(&path)?);
    let mut gz = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
    for n in 0..HOST_NAMES {
        writeln!(gz, "client-{n:08}.example.net - - x")?;
    }
    gz.finish()?.flush()?;
    let started = std::time::Instant::now();
    let finished = run(
        &[
            "run",
            "logcount",
            path_str(data.path()),
            "--format",
            "json",
            "--workers",
            "2",
        ],
        Duration::from_secs(300),
    )?;
    eprintln!(
        "    3M host names ({} bytes gzipped) counted in {:.1} s",
        std::fs::metadata(&path)?.len(),
        started.elapsed().as_secs_f64()
    );
    finished.expect_exit(0)?;
    let json: serde_json::Value = serde_json::from_str(&finished.stdout)?;
    check!(
        json["files"]["hosts.log.gz"]["total"] == HOST_NAMES
            && json["files"]["hosts.log.gz"]["ip"] == HOST_NAMES
            && json["all"]["total"] == HOST_NAMES
            && json["all"]["ip"] == HOST_NAMES,
        "{json}"
    );
    check!(
        finished.stderr.is_empty(),
        "no worker may die or be retried:\n{}",
        finished.stderr
    );
    Ok(())
}

fn logcount_csv_neutralises_cells_that_would_run_as_formulas() -> TestResult {
    let data = tempfile::tempdir()?;
    std::fs::write(
        data.path().join("=HYPERLINK(1).log"),
        "@SUM(A1) - - x\n@SUM(A1) - - y\n1.2.3.4 - - z\n",
    )?;
    let finished = run(
        &[
            "run",
            "logcount",
            path_str(data.path()),
            "--format",
            "csv",
            "--top",
            "1",
            "--workers",
            "1",
        ],
        LONG,
    )?;
    finished.expect_success_printing(
        "kind,file,total,ip,error,key,count\n\
         file,\"'=HYPERLINK(1).log\",3,2,,,\n\
         total,,3,2,,,\n\
         top,,,,,\"'@SUM(A1)\",2\n",
    )?;
    Ok(())
}

fn gen_logs_is_deterministic() -> TestResult {
    let a = tempfile::tempdir()?;
    let b = tempfile::tempdir()?;
    gen_logs(a.path(), "2", "1000")?;
    gen_logs(b.path(), "2", "1000")?;
    for name in ["access-000.log", "access-001.log"] {
        let left = std::fs::read(a.path().join(name))?;
        let right = std::fs::read(b.path().join(name))?;
        check!(
            left == right && !left.is_empty(),
            "{name} differs between two runs with one seed"
        );
        check!(
            left.iter().filter(|&&b| b == b'\n').count() == 1000,
            "{name}: not 1000 lines"
        );
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    run_trials(vec![
        Trial::test("echo_prints_every_answer_in_job_order_fork", || {
            echo_prints_every_answer_in_job_order("fork")
        }),
        Trial::test("echo_prints_every_answer_in_job_order_spawn", || {
            echo_prints_every_answer_in_job_order("spawn")
        }),
        Trial::test("echo_prints_every_answer_in_job_order_forkserver", || {
            echo_prints_every_answer_in_job_order("forkserver")
        }),
        Trial::test(
            "failed_jobs_give_a_summary_and_exit_1_while_the_others_finish",
            failed_jobs_give_a_summary_and_exit_1_while_the_others_finish,
        ),
        Trial::test(
            "bad_usage_is_a_clear_error_with_exit_2",
            bad_usage_is_a_clear_error_with_exit_2,
        ),
        Trial::test(
            "logcount_over_the_pool_matches_the_in_process_count",
            logcount_over_the_pool_matches_the_in_process_count,
        ),
        Trial::test(
            "logcount_with_workers_killed_gives_the_clean_result",
            logcount_with_workers_killed_gives_the_clean_result,
        ),
        Trial::test(
            "logcount_bad_input_exit_codes",
            logcount_bad_input_exit_codes,
        ),
        Trial::test(
            "logcount_batches_many_small_files_exactly_with_workers_killed",
            logcount_batches_many_small_files_exactly_with_workers_killed,
        ),
        Trial::test("gen_logs_is_deterministic", gen_logs_is_deterministic),
        Trial::test(
            "logcount_csv_neutralises_cells_that_would_run_as_formulas",
            logcount_csv_neutralises_cells_that_would_run_as_formulas,
        ),
        Trial::test(
            "logcount_counts_a_result_larger_than_one_pipe_message",
            logcount_counts_a_result_larger_than_one_pipe_message,
        ),
    ])
}
