//! End-to-end tests of what `supervisor run logcount PATH...` takes and how it names what it
//! counts: files, directories and `-` (standard input, plain or gzip) mixed, a file named twice,
//! missing paths, and the names and columns of the three output formats. Each test runs the
//! real binary in a temp dir of its own, with standard input fed through a pipe.
mod common;

use std::fs;
use std::io::Write as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use common::*;
use libtest_mimic::Trial;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

/// What a `supervisor` under test gets as standard input.
enum Feed {
    /// /dev/null.
    Null,
    /// A pipe, these bytes written to it from a thread, then closed.
    Bytes(Vec<u8>),
    /// A file, at the offset it stands at (the child shares it).
    File(fs::File),
}

/// A `supervisor` started in a directory of test data, its standard input fed from a thread.
struct Piped {
    child: Child,
    writer: Option<JoinHandle<()>>,
    /// Holds the stdout and stderr files, apart from the data.
    out: tempfile::TempDir,
    started: Instant,
}

impl Piped {
    /// Starts `supervisor ARGS` with cwd `cwd`; `stdin` is written to its standard input and
    /// then closed (`None`: standard input is /dev/null).
    fn start(cwd: &Path, args: &[&str], stdin: Option<Vec<u8>>) -> Result<Self, String> {
        let feed = stdin.map_or(Feed::Null, Feed::Bytes);
        Self::start_with_env(cwd, args, feed, &[])
    }

    /// [`Piped::start`] with `env` added to the environment.
    fn start_with_env(
        cwd: &Path,
        args: &[&str],
        stdin: Feed,
        env: &[(&str, &str)],
    ) -> Result<Self, String> {
        let out = tempfile::tempdir().map_err(|e| e.to_string())?;
        let file = |name: &str| fs::File::create(out.path().join(name)).map_err(|e| e.to_string());
        let mut child = Command::new(SUPERVISOR)
            .args(args)
            .envs(env.iter().copied())
            .current_dir(cwd)
            .stdin(match &stdin {
                Feed::Null => Stdio::null(),
                Feed::Bytes(_) => Stdio::piped(),
                Feed::File(file) => file
                    .try_clone()
                    .map(Stdio::from)
                    .map_err(|e| e.to_string())?,
            })
            .stdout(file("stdout")?)
            .stderr(file("stderr")?)
            .spawn()
            .map_err(|e| format!("starting the supervisor: {e}"))?;
        let writer = match (stdin, child.stdin.take()) {
            (Feed::Bytes(data), Some(mut pipe)) => Some(thread::spawn(move || {
                // A run that refuses its arguments never reads: a broken pipe is its answer.
                let _ = pipe.write_all(&data);
            })),
            _ => None,
        };
        Ok(Self {
            child,
            writer,
            out,
            started: Instant::now(),
        })
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    fn read(&self, name: &str) -> String {
        fs::read_to_string(self.out.path().join(name)).unwrap_or_default()
    }

    /// Waits for the end (killing it after `timeout`).
    fn finish(mut self, timeout: Duration) -> Result<Finished, String> {
        let status = loop {
            if let Some(status) = self.child.try_wait().map_err(|e| e.to_string())? {
                break status;
            }
            if self.started.elapsed() >= timeout {
                return Err(format!(
                    "the supervisor did not finish within {timeout:?}; stderr:\n{}",
                    self.read("stderr")
                ));
            }
            sleep_ms(10);
        };
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
        Ok(Finished {
            code: status.code(),
            stdout: self.read("stdout"),
            stderr: self.read("stderr"),
            elapsed: self.started.elapsed(),
        })
    }
}

impl Drop for Piped {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs `supervisor ARGS` in `cwd` to the end.
fn run_in(cwd: &Path, args: &[&str], stdin: Option<Vec<u8>>) -> Result<Finished, String> {
    Piped::start(cwd, args, stdin)?.finish(LONG)
}

fn gzip(text: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(text).expect("gzip into memory");
    gz.finish().expect("gzip into memory")
}

/// `a.log` (3 requests, 2 clients), `logs/b.log` (2, 2) and `logs/c.log.gz` (2, 2): 7 requests
/// and 4 distinct clients in all, where the per-file client counts sum to 6.
fn sample() -> Result<tempfile::TempDir, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let d = dir.path();
    let write = |path: &Path, data: &[u8]| fs::write(path, data).map_err(|e| e.to_string());
    write(
        &d.join("a.log"),
        b"10.0.0.1 - - x\n10.0.0.2 - - x\n10.0.0.1 - - x\n",
    )?;
    fs::create_dir(d.join("logs")).map_err(|e| e.to_string())?;
    write(&d.join("logs/b.log"), b"10.0.0.2 - - y\n10.0.0.3 - - y\n")?;
    write(
        &d.join("logs/c.log.gz"),
        &gzip(b"10.0.0.3 - - z\n10.0.0.4 - - z\n"),
    )?;
    Ok(dir)
}

/// The JSON report of a run that must have succeeded.
fn json_of(finished: &Finished) -> Result<Value, String> {
    finished.expect_exit(0)?;
    serde_json::from_str(&finished.stdout).map_err(|e| format!("{e}: {}", finished.stdout))
}

/// `{"NAME": [total, ip], ...}` of a JSON report, for comparisons that read well.
fn per_file(json: &Value) -> Vec<(String, u64, u64)> {
    json["files"]
        .as_object()
        .map(|files| {
            files
                .iter()
                .map(|(name, c)| {
                    (
                        name.clone(),
                        c["total"].as_u64().unwrap_or(u64::MAX),
                        c["ip"].as_u64().unwrap_or(u64::MAX),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn rows(expected: &[(&str, u64, u64)]) -> Vec<(String, u64, u64)> {
    expected
        .iter()
        .map(|&(name, total, ip)| (name.to_string(), total, ip))
        .collect()
}

fn files_and_a_directory_are_named_as_given() -> TestResult {
    let data = sample()?;
    let finished = run_in(
        data.path(),
        &["run", "logcount", "a.log", "logs/", "--format", "json"],
        None,
    )?;
    let json = json_of(&finished)?;
    check!(
        per_file(&json)
            == rows(&[
                ("a.log", 3, 2),
                ("logs/b.log", 2, 2),
                ("logs/c.log.gz", 2, 2)
            ]),
        "{json}"
    );
    check!(
        json["all"]["total"] == 7 && json["all"]["ip"] == 4,
        "{json}"
    );
    // One directory alone keeps the names relative to it.
    let alone = json_of(&run_in(
        data.path(),
        &["run", "logcount", "logs", "--format", "json"],
        None,
    )?)?;
    check!(
        per_file(&alone) == rows(&[("b.log", 2, 2), ("c.log.gz", 2, 2)]),
        "{alone}"
    );
    // So does an absolute path, given with a file.
    let absolute = data.path().join("logs/b.log");
    let json = json_of(&run_in(
        data.path(),
        &[
            "run",
            "logcount",
            path_str(&absolute),
            "a.log",
            "--format",
            "json",
        ],
        None,
    )?)?;
    check!(
        per_file(&json) == rows(&[(path_str(&absolute), 2, 2), ("a.log", 3, 2)]),
        "{json}"
    );
    Ok(())
}

fn a_file_named_twice_is_counted_once() -> TestResult {
    let data = sample()?;
    let args = [
        "run",
        "logcount",
        "./a.log",
        "a.log",
        "logs/b.log",
        "logs",
        "a.log",
        "--format",
        "json",
    ];
    let json = json_of(&run_in(data.path(), &args, None)?)?;
    check!(
        per_file(&json)
            == rows(&[
                ("./a.log", 3, 2),
                ("logs/b.log", 2, 2),
                ("logs/c.log.gz", 2, 2)
            ]),
        "each file once, under the first name given: {json}"
    );
    check!(
        json["all"]["total"] == 7 && json["all"]["ip"] == 4,
        "{json}"
    );
    // A hard link is the same file under another name.
    fs::hard_link(data.path().join("a.log"), data.path().join("same.log"))?;
    let json = json_of(&run_in(
        data.path(),
        &["run", "logcount", "same.log", "a.log", "--format", "json"],
        None,
    )?)?;
    check!(per_file(&json) == rows(&[("same.log", 3, 2)]), "{json}");
    Ok(())
}

fn missing_paths_are_each_named_with_exit_2() -> TestResult {
    let data = sample()?;
    let finished = run_in(
        data.path(),
        &["run", "logcount", "a.log", "nope-1", "logs", "nope-2/x.log"],
        None,
    )?;
    finished.expect_exit(2)?;
    check!(
        finished.stderr
            == "error: nope-1: no such file or directory\n\
                error: nope-2/x.log: no such file or directory\n",
        "stderr:\n{}",
        finished.stderr
    );
    check!(
        finished.stdout.is_empty(),
        "nothing counted: {}",
        finished.stdout
    );
    Ok(())
}

/// Lines of varied clients, enough for many 64 KiB chunks.
fn many_lines() -> Vec<u8> {
    (0..60_000u32)
        .map(|n| format!("10.1.{}.{} - - [x] \"GET /{n}\" 200\n", n % 7, n % 251))
        .collect::<String>()
        .into_bytes()
}

fn stdin_plain_and_gzip_is_counted_under_dash() -> TestResult {
    let data = sample()?;
    let text = many_lines();
    fs::write(data.path().join("same.log"), &text)?;
    let as_file = json_of(&run_in(
        data.path(),
        &["run", "logcount", "same.log", "--format", "json"],
        None,
    )?)?;
    let counts = &as_file["files"]["same.log"];
    check!(counts["total"] == 60_000, "{as_file}");
    for (what, stdin) in [("plain", text.clone()), ("gzip", gzip(&text))] {
        for method in ["fork", "spawn"] {
            let args = [
                "run",
                "logcount",
                "-",
                "a.log",
                "--format",
                "json",
                "--workers",
                "2",
                "--start-method",
                method,
                "--chunk-bytes",
                "65536",
            ];
            let json = json_of(&run_in(data.path(), &args, Some(stdin.clone()))?)
                .map_err(|e| format!("{what}, {method}: {e}"))?;
            check!(
                json["files"]["-"] == *counts && json["files"]["a.log"]["total"] == 3,
                "{what}, {method}: {json}"
            );
        }
    }
    // Empty standard input is an empty file, as for wc.
    let json = json_of(&run_in(
        data.path(),
        &["run", "logcount", "-", "--format", "json"],
        Some(Vec::new()),
    )?)?;
    check!(per_file(&json) == rows(&[("-", 0, 0)]), "{json}");
    Ok(())
}

fn stdin_from_a_file_is_counted_from_where_it_stands() -> TestResult {
    use std::io::{Seek as _, SeekFrom};
    let data = sample()?;
    let text = many_lines();
    let path = data.path().join("same.log");
    fs::write(&path, &text)?;
    // The first line is 30 bytes long; the count starts at the offset standard input is at,
    // as `wc -l` does, whether it is read in place (offset 0) or copied (any other). Its
    // client comes back 251 * 7 lines later, so the distinct count stays.
    check!(
        text.iter().position(|&b| b == b'\n') == Some(29),
        "first line"
    );
    for (offset, lines, ip) in [(0, 60_000, 1757), (30, 59_999, 1757), (31, 59_999, 1758)] {
        for method in ["fork", "spawn"] {
            let mut file = fs::File::open(&path)?;
            file.seek(SeekFrom::Start(offset))?;
            let args = [
                "run",
                "logcount",
                "-",
                "--format",
                "json",
                "--workers",
                "2",
                "--start-method",
                method,
                "--chunk-bytes",
                "65536",
            ];
            // Read in place, standard input needs no room in TMPDIR.
            let no_tmp = data.path().join("no-such-tmp");
            let env = [("TMPDIR", path_str(&no_tmp))];
            let env: &[(&str, &str)] = if offset == 0 { &env } else { &[] };
            let finished =
                Piped::start_with_env(data.path(), &args, Feed::File(file), env)?.finish(LONG)?;
            let json = json_of(&finished).map_err(|e| format!("offset {offset}, {method}: {e}"))?;
            check!(
                per_file(&json) == rows(&[("-", lines, ip)]),
                "offset {offset}, {method}: {json}"
            );
        }
    }
    // A gzip file on standard input is read decompressed too.
    let gz = data.path().join("same.gz-without-its-suffix");
    fs::write(&gz, gzip(&text))?;
    let finished = Piped::start_with_env(
        data.path(),
        &["run", "logcount", "-", "--format", "json"],
        Feed::File(fs::File::open(&gz)?),
        &[],
    )?
    .finish(LONG)?;
    let json = json_of(&finished)?;
    check!(per_file(&json) == rows(&[("-", 60_000, 1757)]), "{json}");
    Ok(())
}

fn stdin_named_twice_is_a_usage_error() -> TestResult {
    let data = sample()?;
    let finished = run_in(
        data.path(),
        &["run", "logcount", "-", "a.log", "-"],
        Some(b"10.0.0.1 - - x\n".to_vec()),
    )?;
    finished.expect_exit(2)?;
    finished.expect_stderr_saying("error: -: standard input named more than once")?;
    check!(finished.stdout.is_empty(), "{}", finished.stdout);
    Ok(())
}

fn stdin_that_cannot_be_copied_is_an_error_naming_the_temp_dir() -> TestResult {
    let data = sample()?;
    let missing = data.path().join("no-such-tmp");
    let finished = Piped::start_with_env(
        data.path(),
        &["run", "logcount", "-", "a.log"],
        Feed::Bytes(b"10.0.0.1 - - x\n".to_vec()),
        &[("TMPDIR", path_str(&missing))],
    )?
    .finish(LONG)?;
    finished.expect_exit(1)?;
    finished.expect_stderr_saying(&format!(
        "error: -: cannot copy standard input to a temporary file in {}: ",
        missing.display()
    ))?;
    check!(finished.stdout.is_empty(), "{}", finished.stdout);
    Ok(())
}

fn a_glob_list_reports_what_its_directory_reports() -> TestResult {
    let data = tempfile::tempdir()?;
    let finished = run_in(
        data.path(),
        &[
            "gen-logs",
            ".",
            "--files",
            "5",
            "--lines",
            "3000",
            "--distinct",
            "400",
        ],
        None,
    )?;
    finished.expect_exit(0)?;
    // What `supervisor run logcount *.log` gets from a shell.
    let mut names: Vec<String> = fs::read_dir(data.path())?
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.ends_with(".log"))
        .collect();
    names.sort();
    check!(names.len() == 5, "{names:?}");
    for format in ["json", "csv", "table"] {
        let directory = run_in(
            data.path(),
            &["run", "logcount", ".", "--format", format, "--top", "3"],
            None,
        )?;
        directory.expect_exit(0)?;
        let mut args = vec!["run", "logcount", "--format", format, "--top", "3"];
        args.extend(names.iter().map(String::as_str));
        let listed = run_in(data.path(), &args, None)?;
        listed
            .expect_success_printing(&directory.stdout)
            .map_err(|e| format!("{format}: {e}"))?;
    }
    Ok(())
}

/// The files and totals a table shows, from its rows.
fn table_rows(table: &str) -> Vec<(String, u64, u64)> {
    table
        .lines()
        .skip(1)
        .take_while(|line| !line.starts_with('-'))
        .chain(table.lines().filter(|line| line.starts_with("TOTAL ")))
        .filter_map(|line| {
            let mut cells = line.split_whitespace();
            Some((
                cells.next()?.to_string(),
                cells.next()?.parse().ok()?,
                cells.next()?.parse().ok()?,
            ))
        })
        .collect()
}

/// The files and totals a CSV report without `--top` shows.
fn csv_rows(csv: &str) -> Vec<(String, u64, u64)> {
    csv.lines()
        .skip(1)
        .filter_map(|line| {
            let cells: Vec<&str> = line.split(',').collect();
            let name = if cells[0].is_empty() {
                "TOTAL"
            } else {
                cells[0]
            };
            Some((
                name.to_string(),
                cells[1].parse().ok()?,
                cells[2].parse().ok()?,
            ))
        })
        .collect()
}

fn the_formats_name_the_same_things_alike() -> TestResult {
    let data = sample()?;
    let args = |format| ["run", "logcount", "a.log", "logs", "--format", format];
    let json = json_of(&run_in(data.path(), &args("json"), None)?)?;
    let csv = run_in(data.path(), &args("csv"), None)?;
    csv.expect_exit(0)?;
    let table = run_in(data.path(), &args("table"), None)?;
    table.expect_exit(0)?;

    let mut expected = per_file(&json);
    expected.push((
        "TOTAL".into(),
        json["all"]["total"].as_u64().unwrap_or(0),
        json["all"]["ip"].as_u64().unwrap_or(0),
    ));
    check!(expected.len() == 4, "{json}");
    check!(
        csv.stdout.starts_with("file,total,ip,error\n"),
        "{}",
        csv.stdout
    );
    check!(csv_rows(&csv.stdout) == expected, "csv:\n{}", csv.stdout);
    let header: Vec<&str> = table
        .stdout
        .lines()
        .next()
        .unwrap_or("")
        .split("  ")
        .map(str::trim)
        .filter(|cell| !cell.is_empty())
        .collect();
    check!(
        header == ["file", "requests", "distinct clients"],
        "{header:?}"
    );
    check!(
        table_rows(&table.stdout) == expected,
        "table:\n{}",
        table.stdout
    );
    // The note under TOTAL: 4 distinct clients over all, where the rows say 2 + 2 + 2.
    let lines: Vec<&str> = table.stdout.lines().collect();
    let total = lines
        .iter()
        .position(|line| line.starts_with("TOTAL "))
        .ok_or("no TOTAL row")?;
    check!(
        lines.get(total + 1)
            == Some(
                &"(TOTAL distinct clients counts each client once over all files: \
                  not the sum of the rows)"
            ),
        "table:\n{}",
        table.stdout
    );
    Ok(())
}

fn csv_with_top_is_one_table() -> TestResult {
    let data = sample()?;
    fs::write(data.path().join("bad.log.gz"), "not gzip\n")?;
    let args = |format| {
        [
            "run",
            "logcount",
            "a.log",
            "logs",
            "bad.log.gz",
            "--top",
            "2",
            "--format",
            format,
        ]
    };
    let csv = run_in(data.path(), &args("csv"), None)?;
    csv.expect_exit(1)?;
    let json: Value = serde_json::from_str(&run_in(data.path(), &args("json"), None)?.stdout)?;
    let top = json["top"].as_array().ok_or("no top in JSON")?;
    let mut expected = String::from("kind,file,total,ip,error,key,count\n");
    for (name, total, ip) in per_file(&json) {
        expected.push_str(&format!("file,{name},{total},{ip},,,\n"));
    }
    let reason = json["errors"]["bad.log.gz"]
        .as_str()
        .ok_or("bad.log.gz not under errors")?;
    expected.push_str(&format!("error,bad.log.gz,,,{reason},,\n"));
    expected.push_str(&format!(
        "total,,{},{},,,\n",
        json["all"]["total"], json["all"]["ip"]
    ));
    for entry in top {
        let key = entry["key"].as_str().ok_or("a top key that is no string")?;
        expected.push_str(&format!("top,,,,,{key},{}\n", entry["count"]));
    }
    check!(
        csv.stdout == expected,
        "expected:\n{expected}\ngot:\n{}",
        csv.stdout
    );
    check!(top.len() == 2 && top[0]["count"] == 2, "{json}");
    Ok(())
}

fn stdin_survives_workers_killed_mid_run() -> TestResult {
    let data = tempfile::tempdir()?;
    // About 50 MB: some 800 chunks, enough to outlast the kills below.
    let text: Vec<u8> = many_lines().repeat(24);
    let lines = 60_000 * 24;
    let args = [
        "run",
        "logcount",
        "-",
        "--format",
        "json",
        "--workers",
        "2",
        "--chunk-bytes",
        "65536",
        "--max-restarts",
        "50",
        "--log-format",
        "json",
    ];
    let clean = json_of(&run_in(data.path(), &args, Some(text.clone()))?)?;
    check!(clean["files"]["-"]["total"] == lines, "{clean}");
    let running = Piped::start(data.path(), &args, Some(text))?;
    let workers = || live_children_of(running.pid());
    retry_until(Instant::now() + STARTUP, || match workers().len() {
        2 => Ok(()),
        n => Err(format!("{n} workers")),
    })?;
    // SIGBUS is how a worker dies whose mapped scan meets a file truncated meanwhile.
    for signal in [Signal::SIGKILL, Signal::SIGBUS, Signal::SIGKILL] {
        if let Some(&victim) = workers().first() {
            let _ = kill(Pid::from_raw(victim), signal);
        }
        sleep_ms(30);
    }
    let finished = running.finish(LONG)?;
    let json = json_of(&finished)?;
    check!(json == clean, "killed workers: {json}\nclean: {clean}");
    check!(
        !named(&events(&finished), "job_requeued").is_empty(),
        "no job was re-counted, so no worker died mid-run:\n{}",
        finished.stderr
    );
    Ok(())
}

/// Thousands of small files and a few large ones, in a directory and a subdirectory: counted
/// while they are being listed (small files batched as workers free up, large ones cut once the
/// listing is over), the report is the one made in process after listing everything.
fn files_counted_while_listed_are_counted_exactly() -> TestResult {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let d = dir.path();
    fs::create_dir(d.join("sub")).map_err(|e| e.to_string())?;
    for index in 0..3_000u32 {
        let sub = if index % 4 == 0 { "sub/" } else { "" };
        let text = format!(
            "10.1.{}.{} - - x\n10.2.0.{} - - y\n",
            index / 256,
            index % 256,
            index % 50
        );
        fs::write(d.join(format!("{sub}small-{index}.log")), text).map_err(|e| e.to_string())?;
    }
    for index in 0..3u32 {
        let text: String = (0..20_000u32)
            .map(|line| {
                format!(
                    "10.3.{}.{} - - [x] \"GET / HTTP/1.1\" 200 1\n",
                    index,
                    line % 251
                )
            })
            .collect();
        fs::write(d.join(format!("large-{index}.log")), text).map_err(|e| e.to_string())?;
    }
    let path = d.to_str().ok_or("temp dir not UTF-8")?;
    for chunk_bytes in [None, Some("65536")] {
        let options = herd_logcount::Options {
            recursive: true,
            chunk_bytes: chunk_bytes.map_or(herd_logcount::DEFAULT_CHUNK_BYTES, |bytes| {
                bytes.parse().unwrap_or(1)
            }),
            top: Some(3),
        };
        let expected = herd_logcount::count_dir(d, &options)
            .map_err(|e| e.to_string())?
            .to_json();
        let mut args = vec!["run", "logcount", "-r", path, "-j", "2", "--format", "json"];
        args.extend(["--top", "3"]);
        if let Some(bytes) = chunk_bytes {
            args.extend(["--chunk-bytes", bytes]);
        }
        let finished = run_in(d, &args, None)?;
        finished.expect_exit(0)?;
        check!(
            finished.stdout.trim_end() == expected.trim_end(),
            "chunk bytes {chunk_bytes:?}: the run reported\n{}\nnot\n{expected}",
            finished.stdout
        );
        let json = json_of(&finished)?;
        check!(
            json["files"].as_object().map(|files| files.len()) == Some(3_003),
            "not every file is reported"
        );
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    run_trials(vec![
        Trial::test(
            "files_and_a_directory_are_named_as_given",
            files_and_a_directory_are_named_as_given,
        ),
        Trial::test(
            "a_file_named_twice_is_counted_once",
            a_file_named_twice_is_counted_once,
        ),
        Trial::test(
            "missing_paths_are_each_named_with_exit_2",
            missing_paths_are_each_named_with_exit_2,
        ),
        Trial::test(
            "stdin_plain_and_gzip_is_counted_under_dash",
            stdin_plain_and_gzip_is_counted_under_dash,
        ),
        Trial::test(
            "stdin_from_a_file_is_counted_from_where_it_stands",
            stdin_from_a_file_is_counted_from_where_it_stands,
        ),
        Trial::test(
            "stdin_named_twice_is_a_usage_error",
            stdin_named_twice_is_a_usage_error,
        ),
        Trial::test(
            "stdin_that_cannot_be_copied_is_an_error_naming_the_temp_dir",
            stdin_that_cannot_be_copied_is_an_error_naming_the_temp_dir,
        ),
        Trial::test(
            "a_glob_list_reports_what_its_directory_reports",
            a_glob_list_reports_what_its_directory_reports,
        ),
        Trial::test(
            "the_formats_name_the_same_things_alike",
            the_formats_name_the_same_things_alike,
        ),
        Trial::test("csv_with_top_is_one_table", csv_with_top_is_one_table),
        Trial::test(
            "stdin_survives_workers_killed_mid_run",
            stdin_survives_workers_killed_mid_run,
        ),
        Trial::test(
            "files_counted_while_listed_are_counted_exactly",
            files_counted_while_listed_are_counted_exactly,
        ),
    ])
}
