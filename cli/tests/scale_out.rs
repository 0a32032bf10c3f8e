//! End-to-end tests of logcount past one host: shard plans (`supervisor plan`), shard runs
//! (`run logcount --shard/--plan/--partial`) and `supervisor merge`, against the real binary.
//! The merged output must equal, byte for byte, what one `run logcount` over the same inputs
//! prints.

use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The binary Cargo built for these tests.
const SUPERVISOR: &str = env!("CARGO_BIN_EXE_supervisor");

/// The variables array job engines give the task index in: cleared for every run, so that a
/// test run inside a Slurm or Kubernetes job sees only what the test sets.
const INDEX_VARIABLES: [&str; 4] = [
    "JOB_COMPLETION_INDEX",
    "SLURM_ARRAY_TASK_ID",
    "SLURM_ARRAY_TASK_MIN",
    "AWS_BATCH_JOB_ARRAY_INDEX",
];

/// The longest any one command of these tests may take: far more than they need, so that a
/// hang fails the test instead of stalling the suite.
const LIMIT: Duration = Duration::from_secs(120);

/// Runs `supervisor ARGS` with the environment variables `env` set, to the end (at most
/// [`LIMIT`]; then it is killed and the test fails).
fn supervisor_with(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut stdout = tempfile::tempfile().unwrap();
    let mut stderr = tempfile::tempfile().unwrap();
    let mut command = Command::new(SUPERVISOR);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(stdout.try_clone().unwrap())
        .stderr(stderr.try_clone().unwrap());
    for name in INDEX_VARIABLES {
        command.env_remove(name);
    }
    command.envs(env.iter().copied());
    let mut child = command.spawn().expect("starting the supervisor binary");
    let deadline = Instant::now() + LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("supervisor {args:?} still running after {LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let read = |file: &mut std::fs::File| {
        let mut bytes = Vec::new();
        file.seek(SeekFrom::Start(0)).unwrap();
        file.read_to_end(&mut bytes).unwrap();
        bytes
    };
    Output {
        status,
        stdout: read(&mut stdout),
        stderr: read(&mut stderr),
    }
}

fn supervisor(args: &[&str]) -> Output {
    supervisor_with(args, &[])
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Fails unless the run exited with `code`, showing its stderr.
fn expect_exit(output: &Output, code: i32, what: &str) {
    assert_eq!(
        output.status.code(),
        Some(code),
        "{what}: stderr:\n{}",
        stderr(output)
    );
}

fn path(path: &Path) -> &str {
    path.to_str().expect("temp paths are UTF-8")
}

/// Logs with every kind of key and file the plan treats apart: generated files, one much
/// larger than the rest (split across shards), host names, IPv6 and over-long keys, a `.gz`
/// file (never split), an empty file and one without a final newline.
fn make_logs(dir: &Path) {
    let logs = path(dir);
    let generated = supervisor(&[
        "gen-logs",
        logs,
        "--files",
        "3",
        "--lines",
        "4000",
        "--distinct",
        "700",
    ]);
    expect_exit(&generated, 0, "gen-logs");
    let mut big = std::fs::File::create(dir.join("big.log")).unwrap();
    for line in 0..30_000u32 {
        let key = match line % 5 {
            0 => format!("10.0.{}.{}", line % 7, line % 251),
            1 => format!("host-{}.example.org", line % 900),
            2 => format!("2001:db8::{:x}", line % 300),
            3 => format!("{}{}", "k".repeat(300), line % 4),
            _ => format!("192.168.{}.{}", line % 3, line % 97),
        };
        writeln!(
            big,
            "{key} - - [04/Dec/2026:10:00:00 +0000] \"GET / HTTP/1.1\" 200 1"
        )
        .unwrap();
    }
    let mut gz = flate2::write::GzEncoder::new(
        std::fs::File::create(dir.join("old.log.gz")).unwrap(),
        flate2::Compression::default(),
    );
    for line in 0..5_000u32 {
        writeln!(gz, "172.16.0.{} - - x", line % 200).unwrap();
    }
    gz.finish().unwrap();
    std::fs::write(dir.join("empty.log"), "").unwrap();
    std::fs::write(
        dir.join("tail.log"),
        "1.1.1.1 a\n2.2.2.2 b\n3.3.3.3 no newline",
    )
    .unwrap();
}

/// Runs shard `index` of `count` over `logs` with `extra` options, writing `out`.
fn run_shard(logs: &Path, index: usize, count: usize, out: &Path, extra: &[&str]) {
    let shard = format!("{index}/{count}");
    let mut args = vec![
        "run",
        "logcount",
        path(logs),
        "--shard",
        &shard,
        "--partial",
        path(out),
        "--workers",
        "2",
        "--chunk-bytes",
        "65536",
    ];
    args.extend(extra);
    let output = supervisor(&args);
    expect_exit(&output, 0, &format!("shard {shard}"));
    assert!(
        stdout(&output).is_empty(),
        "a shard with --partial prints nothing"
    );
}

fn single_host(logs: &Path, extra: &[&str]) -> String {
    let mut args = vec!["run", "logcount", path(logs), "--workers", "2"];
    args.extend(extra);
    let output = supervisor(&args);
    expect_exit(&output, 0, "single-host run");
    stdout(&output)
}

#[test]
fn merged_partials_print_what_one_host_prints_in_every_format() {
    let temp = tempfile::tempdir().unwrap();
    let logs = temp.path().join("logs");
    make_logs(&logs);
    for count in [1, 3, 4] {
        // The plan cuts the big file across shards.
        let plan_file = temp.path().join(format!("plan-{count}.json"));
        let planned = supervisor(&[
            "plan",
            "logcount",
            path(&logs),
            "--shards",
            &count.to_string(),
            "-o",
            path(&plan_file),
        ]);
        expect_exit(&planned, 0, "plan");
        let plan: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&plan_file).unwrap()).unwrap();
        let big = plan["files"]
            .as_array()
            .unwrap()
            .iter()
            .position(|file| file["name"] == "big.log")
            .unwrap();
        let holding_big = plan["shards"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|pieces| {
                pieces
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|piece| piece["file"] == big)
            })
            .count();
        assert_eq!(
            holding_big > 1,
            count > 1,
            "big.log in {holding_big} shard(s)"
        );

        let parts = temp.path().join(format!("parts-{count}"));
        std::fs::create_dir(&parts).unwrap();
        for index in 0..count {
            run_shard(
                &logs,
                index,
                count,
                &parts.join(format!("{index}.part")),
                &["--top", "7"],
            );
        }
        for format in ["table", "csv", "json"] {
            for top in [&[][..], &["--top", "7"][..]] {
                let mut args = vec!["--format", format];
                args.extend(top);
                let expected = single_host(&logs, &args);
                let mut merge = vec!["merge", path(&parts)];
                merge.extend(&args);
                let merged = supervisor(&merge);
                expect_exit(&merged, 0, "merge");
                assert_eq!(
                    stdout(&merged),
                    expected,
                    "{count} shard(s), {args:?}: merged output differs from one host's"
                );
            }
        }
    }
}

#[test]
fn a_shard_writes_the_same_bytes_every_time_and_never_replaces_a_partial() {
    let temp = tempfile::tempdir().unwrap();
    let logs = temp.path().join("logs");
    make_logs(&logs);
    let first = temp.path().join("first");
    let second = temp.path().join("second");
    run_shard(&logs, 1, 3, &first, &["--top", "3"]);
    // Other workers and chunk sizes, the same partial.
    let output = supervisor(&[
        "run",
        "logcount",
        path(&logs),
        "--shard",
        "1/3",
        "--partial",
        path(&second),
        "--top",
        "3",
        "--workers",
        "1",
    ]);
    expect_exit(&output, 0, "second run");
    assert!(std::fs::read(&first).unwrap() == std::fs::read(&second).unwrap());

    let before = std::fs::read(&first).unwrap();
    let again = supervisor(&[
        "run",
        "logcount",
        path(&logs),
        "--shard",
        "1/3",
        "--partial",
        path(&first),
    ]);
    expect_exit(&again, 2, "existing partial");
    assert!(
        stderr(&again).contains("already exists"),
        "{}",
        stderr(&again)
    );
    assert_eq!(
        std::fs::read(&first).unwrap(),
        before,
        "the partial is untouched"
    );
    // A retry of the very shard that published it (an engine retrying a task) finds it done.
    let retried = supervisor(&[
        "run",
        "logcount",
        path(&logs),
        "--shard",
        "1/3",
        "--partial",
        path(&first),
        "--top",
        "3",
    ]);
    expect_exit(&retried, 0, "a retry of the same shard");
    assert!(
        stderr(&retried).contains("already holds shard 1 of 3"),
        "{}",
        stderr(&retried)
    );
    // Another shard's run must not take it for its own.
    let other = supervisor(&[
        "run",
        "logcount",
        path(&logs),
        "--shard",
        "0/3",
        "--partial",
        path(&first),
        "--top",
        "3",
    ]);
    expect_exit(&other, 2, "another shard onto an existing partial");
    assert_eq!(std::fs::read(&first).unwrap(), before);
    let leftovers: Vec<PathBuf> = std::fs::read_dir(temp.path())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            path.file_name()
                .unwrap()
                .to_string_lossy()
                .ends_with(".tmp")
        })
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

#[test]
fn merge_refuses_damaged_foreign_conflicting_and_missing_partials() {
    let temp = tempfile::tempdir().unwrap();
    let logs = temp.path().join("logs");
    make_logs(&logs);
    let part = |name: &str| temp.path().join(name);
    for index in 0..3 {
        run_shard(&logs, index, 3, &part(&format!("p{index}")), &[]);
    }
    let all = [part("p0"), part("p1"), part("p2")];
    let all: Vec<&str> = all.iter().map(|p| path(p)).collect();
    let expected = single_host(&logs, &[]);

    // A flipped byte and a truncated copy: named, exit 1, nothing printed.
    let mut bytes = std::fs::read(part("p1")).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(part("flipped"), &bytes).unwrap();
    std::fs::write(part("short"), &bytes[..middle]).unwrap();
    std::fs::write(part("text"), "not a partial\n").unwrap();
    for (bad, says) in [
        ("flipped", "checksum mismatch"),
        ("short", "checksum mismatch"),
        ("text", "not a logcount partial"),
    ] {
        let output = supervisor(&["merge", all[0], path(&part(bad)), all[2]]);
        expect_exit(&output, 1, bad);
        assert!(stdout(&output).is_empty());
        let message = stderr(&output);
        assert!(
            message.contains(path(&part(bad))) && message.contains(says),
            "{message}"
        );
    }

    // A byte-identical duplicate is merged once; a different one for the same shard is refused.
    std::fs::copy(part("p1"), part("p1-copy")).unwrap();
    let output = supervisor(&["merge", all[0], all[1], all[2], path(&part("p1-copy"))]);
    expect_exit(&output, 0, "identical duplicate");
    assert_eq!(stdout(&output), expected);
    run_shard(&logs, 1, 3, &part("p1-top"), &["--top", "2"]);
    let output = supervisor(&["merge", all[0], all[1], all[2], path(&part("p1-top"))]);
    expect_exit(&output, 1, "conflicting duplicate");
    assert!(
        stderr(&output).contains("both shard 1"),
        "{}",
        stderr(&output)
    );

    // --top needs per-key counts.
    let output = supervisor(&["merge", all[0], all[1], all[2], "--top", "3"]);
    expect_exit(&output, 1, "top without counts");
    assert!(
        stderr(&output).contains("per-key counts"),
        "{}",
        stderr(&output)
    );

    // Another plan: the inputs changed between two shards.
    std::fs::write(logs.join("late.log"), "9.9.9.9 x\n").unwrap();
    run_shard(&logs, 2, 3, &part("p2-later"), &[]);
    let output = supervisor(&["merge", all[0], all[1], path(&part("p2-later"))]);
    expect_exit(&output, 1, "different plans");
    assert!(
        stderr(&output).contains("different plans"),
        "{}",
        stderr(&output)
    );

    // Missing shards: by index, exit 1; with --allow-missing the gaps are listed as errors.
    let output = supervisor(&["merge", all[0], all[2]]);
    expect_exit(&output, 1, "missing shard");
    assert!(
        stderr(&output).contains("missing shard(s) 1 of 3"),
        "{}",
        stderr(&output)
    );
    assert!(stdout(&output).is_empty());
    let output = supervisor(&[
        "merge",
        all[0],
        all[2],
        "--allow-missing",
        "--format",
        "json",
    ]);
    expect_exit(&output, 1, "allow missing");
    let report: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    let errors = report["errors"].as_object().unwrap();
    assert!(errors.contains_key("(shard 1 of 3)"), "{report}");
    assert!(
        errors.values().any(|reason| reason
            .as_str()
            .unwrap()
            .contains("part of it was in missing shard(s) 1")),
        "the file cut across the missing shard is not counted from a part: {report}"
    );
    let output = supervisor(&["merge"]);
    expect_exit(&output, 2, "no partials");
}

#[test]
fn a_plan_file_fixes_the_inputs_even_while_they_grow() {
    let temp = tempfile::tempdir().unwrap();
    let logs = temp.path().join("logs");
    make_logs(&logs);
    let expected = single_host(&logs, &["--format", "csv"]);
    let plan = temp.path().join("plan.json");
    let output = supervisor(&[
        "plan",
        "logcount",
        path(&logs),
        "--shards",
        "3",
        "-o",
        path(&plan),
    ]);
    expect_exit(&output, 0, "plan");
    // Lines appended after planning are not counted by any shard.
    let mut grown = std::fs::OpenOptions::new()
        .append(true)
        .open(logs.join("big.log"))
        .unwrap();
    writeln!(grown, "203.0.113.9 late line").unwrap();
    let parts = temp.path().join("parts");
    std::fs::create_dir(&parts).unwrap();
    for index in 0..3 {
        let out = parts.join(format!("{index}"));
        let output = supervisor(&[
            "run",
            "logcount",
            "--plan",
            path(&plan),
            "--shard",
            &index.to_string(),
            "--partial",
            path(&out),
            "--workers",
            "2",
        ]);
        expect_exit(&output, 0, "plan shard");
    }
    let merged = supervisor(&["merge", path(&parts), "--format", "csv"]);
    expect_exit(&merged, 0, "merge");
    assert_eq!(stdout(&merged), expected);

    // A plan edited by hand is refused, naming the file.
    let text = std::fs::read_to_string(&plan).unwrap();
    let edited = temp.path().join("edited.json");
    std::fs::write(&edited, text.replacen("\"len\": 0", "\"len\": 1", 1)).unwrap();
    let output = supervisor(&[
        "run",
        "logcount",
        "--plan",
        path(&edited),
        "--shard",
        "0",
        "--partial",
        path(&temp.path().join("x")),
    ]);
    expect_exit(&output, 2, "edited plan");
    assert!(
        stderr(&output).contains(path(&edited)),
        "{}",
        stderr(&output)
    );
    // A shard count that contradicts the plan.
    let output = supervisor(&["run", "logcount", "--plan", path(&plan), "--shard", "0/4"]);
    expect_exit(&output, 2, "wrong count");
}

#[test]
fn shard_auto_takes_the_index_from_the_array_job_environment() {
    let temp = tempfile::tempdir().unwrap();
    let logs = temp.path().join("logs");
    make_logs(&logs);
    let parts = temp.path().join("parts");
    std::fs::create_dir(&parts).unwrap();
    let engines: [&[(&str, &str)]; 3] = [
        &[("JOB_COMPLETION_INDEX", "0")],
        &[("SLURM_ARRAY_TASK_ID", "8"), ("SLURM_ARRAY_TASK_MIN", "7")],
        &[("AWS_BATCH_JOB_ARRAY_INDEX", "2")],
    ];
    for (index, env) in engines.into_iter().enumerate() {
        let out = parts.join(format!("{index}"));
        let output = supervisor_with(
            &[
                "run",
                "logcount",
                path(&logs),
                "--shard",
                "auto/3",
                "--partial",
                path(&out),
                "--workers",
                "2",
            ],
            env,
        );
        expect_exit(&output, 0, &format!("{env:?}"));
        assert!(
            stderr(&output).contains(&format!("shard {index} of 3")),
            "{}",
            stderr(&output)
        );
    }
    let merged = supervisor(&["merge", path(&parts), "--format", "json"]);
    expect_exit(&merged, 0, "merge");
    assert_eq!(stdout(&merged), single_host(&logs, &["--format", "json"]));

    let auto = ["run", "logcount", path(&logs), "--shard", "auto/3"];
    let output = supervisor(&auto);
    expect_exit(&output, 2, "no index");
    assert!(
        stderr(&output).contains("JOB_COMPLETION_INDEX")
            && stderr(&output).contains("SLURM_ARRAY_TASK_ID")
            && stderr(&output).contains("AWS_BATCH_JOB_ARRAY_INDEX"),
        "{}",
        stderr(&output)
    );
    let output = supervisor_with(
        &auto,
        &[
            ("JOB_COMPLETION_INDEX", "1"),
            ("AWS_BATCH_JOB_ARRAY_INDEX", "2"),
        ],
    );
    expect_exit(&output, 2, "contradictory");
    assert!(
        stderr(&output).contains("contradictory"),
        "{}",
        stderr(&output)
    );
    let output = supervisor_with(&auto, &[("JOB_COMPLETION_INDEX", "3")]);
    expect_exit(&output, 2, "out of range");
    assert!(
        stderr(&output).contains("shard 3 of 3"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn a_shard_without_partial_prints_its_share() {
    let temp = tempfile::tempdir().unwrap();
    let logs = temp.path().join("logs");
    make_logs(&logs);
    // The requests of the shards add up to the whole.
    let mut total = 0;
    for index in 0..4 {
        let shard = format!("{index}/4");
        let output = supervisor(&[
            "run",
            "logcount",
            path(&logs),
            "--shard",
            &shard,
            "--format",
            "json",
        ]);
        expect_exit(&output, 0, &shard);
        let report: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
        total += report["all"]["total"].as_u64().unwrap();
    }
    let whole: serde_json::Value =
        serde_json::from_str(&single_host(&logs, &["--format", "json"])).unwrap();
    assert_eq!(total, whole["all"]["total"].as_u64().unwrap());
}

#[test]
fn plan_and_shard_usage_errors_exit_2_naming_what_is_wrong() {
    let temp = tempfile::tempdir().unwrap();
    let logs = temp.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    std::fs::write(logs.join("a.log"), "1.2.3.4 x\n").unwrap();
    let plan = temp.path().join("plan.json");
    let missing = temp.path().join("missing");
    let missing_partial = missing.join("p");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec![
                "plan",
                "logcount",
                path(&missing),
                "--shards",
                "2",
                "-o",
                path(&plan),
            ],
            "no such file or directory",
        ),
        (
            vec![
                "plan",
                "logcount",
                path(&logs),
                "--shards",
                "0",
                "-o",
                path(&plan),
            ],
            "number of shards",
        ),
        (
            vec![
                "plan",
                "echo",
                path(&logs),
                "--shards",
                "2",
                "-o",
                path(&plan),
            ],
            "unrecognized subcommand 'echo'",
        ),
        (
            vec!["run", "logcount", path(&logs), "--partial", path(&plan)],
            "need --shard",
        ),
        (
            vec!["run", "logcount", path(&logs), "--shard", "1"],
            "needs the shard count",
        ),
        (
            vec!["run", "logcount", path(&logs), "--shard", "2/2"],
            "numbered 0 to 1",
        ),
        (
            vec![
                "run",
                "logcount",
                path(&logs),
                "--shard",
                "0/2",
                "--partial",
                path(&missing_partial),
            ],
            "no such directory",
        ),
        (
            vec!["diag", "echo", "x", "--shard", "0/2"],
            "unexpected argument '--shard'",
        ),
    ];
    for (args, says) in cases {
        let output = supervisor(&args);
        expect_exit(&output, 2, &format!("{args:?}"));
        assert!(
            stderr(&output).contains(says),
            "{args:?}: {}",
            stderr(&output)
        );
    }
    // An existing plan file is never replaced.
    let output = supervisor(&[
        "plan",
        "logcount",
        path(&logs),
        "--shards",
        "2",
        "-o",
        path(&plan),
    ]);
    expect_exit(&output, 0, "plan");
    let before = std::fs::read(&plan).unwrap();
    let output = supervisor(&[
        "plan",
        "logcount",
        path(&logs),
        "--shards",
        "3",
        "-o",
        path(&plan),
    ]);
    expect_exit(&output, 2, "existing plan");
    assert!(
        stderr(&output).contains("already exists"),
        "{}",
        stderr(&output)
    );
    assert_eq!(std::fs::read(&plan).unwrap(), before);
}
