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
    supervisor_at(None, args, env)
}

/// Runs `supervisor ARGS` in the working directory `cwd`.
fn supervisor_in(cwd: &Path, args: &[&str]) -> Output {
    supervisor_at(Some(cwd), args, &[])
}

fn supervisor_at(cwd: Option<&Path>, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut stdout = tempfile::tempfile().unwrap();
    let mut stderr = tempfile::tempfile().unwrap();
    let mut command = Command::new(SUPERVISOR);
    if let Some(cwd) = cwd {
        command.current_dir(cwd);
    }
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

/// How many shards of a plan file (as JSON) hold a piece of the file named `name`.
fn shards_holding(plan: &serde_json::Value, name: &str) -> usize {
    let file = plan["files"]
        .as_array()
        .unwrap()
        .iter()
        .position(|file| file["name"] == name)
        .unwrap();
    plan["shards"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|pieces| {
            pieces
                .as_array()
                .unwrap()
                .iter()
                .any(|piece| piece["file"] == file)
        })
        .count()
}

/// `supervisor plan logcount LOGS --shards SHARDS -o PLAN`.
fn plan_shards(logs: &Path, shards: u32, plan: &Path) -> Output {
    let shards = shards.to_string();
    supervisor(&[
        "plan",
        "logcount",
        path(logs),
        "--shards",
        &shards,
        "-o",
        path(plan),
    ])
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
        let holding_big = shards_holding(&plan, "big.log");
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

/// Files and directories together, named relative to the working directory: `logs/` (see
/// [`make_logs`]), `extra.log` (large, so cut across shards), `logs/tail.log` again (counted
/// once) and `more/` (a plain and a `.gz` file).
const SEVERAL: [&str; 4] = ["logs", "extra.log", "logs/tail.log", "more/"];

fn make_several(here: &Path) {
    make_logs(&here.join("logs"));
    let mut extra = std::fs::File::create(here.join("extra.log")).unwrap();
    for line in 0..100_000u32 {
        let key = match line % 3 {
            0 => format!("198.51.100.{}", line % 211),
            1 => format!("client-{}.example.net", line % 613),
            _ => format!("2001:db8:1::{:x}", line % 97),
        };
        writeln!(extra, "{key} - - \"GET /x HTTP/1.1\" 200 {line}").unwrap();
    }
    std::fs::create_dir(here.join("more")).unwrap();
    std::fs::write(here.join("more/c.log"), "10.0.0.1 a\n198.51.100.3 b\n").unwrap();
    let mut gz = flate2::write::GzEncoder::new(
        std::fs::File::create(here.join("more/d.log.gz")).unwrap(),
        flate2::Compression::default(),
    );
    for line in 0..3_000u32 {
        writeln!(gz, "203.0.113.{} - - y", line % 150).unwrap();
    }
    gz.finish().unwrap();
}

#[test]
fn shards_of_several_paths_merge_to_what_one_host_prints_for_those_paths() {
    let temp = tempfile::tempdir().unwrap();
    let here = temp.path().join("here");
    std::fs::create_dir(&here).unwrap();
    make_several(&here);
    let run_here = |extra: &[&str]| -> Output {
        let mut args = vec!["run", "logcount"];
        args.extend(SEVERAL);
        args.extend(["--workers", "2"]);
        args.extend(extra);
        supervisor_in(&here, &args)
    };
    let mut expected = Vec::new();
    for format in ["table", "csv", "json"] {
        for top in [&[][..], &["--top", "7"][..]] {
            let mut args = vec!["--format", format];
            args.extend(top);
            let single = run_here(&args);
            expect_exit(&single, 0, "single-host run");
            expected.push((args, stdout(&single)));
        }
    }
    // The names are those of one host's run: under the directories as given, files as given,
    // the file named twice once.
    let names: Vec<String> = {
        let json = &expected[4].1;
        let report: serde_json::Value = serde_json::from_str(json).unwrap();
        report["files"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect()
    };
    for name in [
        "extra.log",
        "logs/big.log",
        "logs/tail.log",
        "more/c.log",
        "more/d.log.gz",
    ] {
        assert!(names.iter().any(|n| n == name), "{name} not in {names:?}");
    }
    assert_eq!(names.len(), 10, "{names:?}");

    for count in [1, 3, 4] {
        let plan = format!("plan-{count}.json");
        let shards = count.to_string();
        let mut args = vec!["plan", "logcount"];
        args.extend(SEVERAL);
        args.extend(["--shards", &shards, "-o", &plan]);
        let planned = supervisor_in(&here, &args);
        expect_exit(&planned, 0, "plan");
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(here.join(&plan)).unwrap()).unwrap();
        assert_eq!(json["inputs"], serde_json::json!(SEVERAL));
        let holding_extra = shards_holding(&json, "extra.log");
        assert_eq!(
            holding_extra > 1,
            count > 1,
            "extra.log in {holding_extra} shard(s)"
        );

        let parts = format!("parts-{count}");
        let planned_parts = format!("planned-{count}");
        std::fs::create_dir(here.join(&parts)).unwrap();
        std::fs::create_dir(here.join(&planned_parts)).unwrap();
        for index in 0..count {
            // Without a plan file: the PATHs on every shard's command line.
            let shard = format!("{index}/{count}");
            let out = format!("{parts}/{index}");
            let output = run_here(&["--shard", &shard, "--partial", &out, "--top", "7"]);
            expect_exit(&output, 0, &format!("shard {shard}"));
            // With the plan file, and no PATH: the plan's.
            let planned_out = format!("{planned_parts}/{index}");
            let output = supervisor_in(
                &here,
                &[
                    "run",
                    "logcount",
                    "--plan",
                    &plan,
                    "--shard",
                    &index.to_string(),
                    "--partial",
                    &planned_out,
                    "--top",
                    "7",
                    "--workers",
                    "2",
                ],
            );
            expect_exit(&output, 0, &format!("planned shard {index}"));
            assert!(
                std::fs::read(here.join(&out)).unwrap()
                    == std::fs::read(here.join(&planned_out)).unwrap(),
                "shard {shard}: the plan file's partial differs"
            );
        }
        for (args, expected) in &expected {
            let mut merge = vec!["merge", &*parts];
            merge.extend(args);
            let merged = supervisor_in(&here, &merge);
            expect_exit(&merged, 0, "merge");
            assert_eq!(
                &stdout(&merged),
                expected,
                "{count} shard(s), {args:?}: merged output differs from one host's"
            );
        }
    }

    // Another host sees the same tree elsewhere: from there the same relative PATHs, or the
    // plan without them, make the same partial (the plan's hash does not depend on where).
    let elsewhere = temp.path().join("elsewhere");
    let copied = Command::new("cp")
        .arg("-a")
        .arg(&here)
        .arg(&elsewhere)
        .status()
        .unwrap();
    assert!(copied.success());
    let mut args = vec!["run", "logcount"];
    args.extend(SEVERAL);
    args.extend(["--shard", "1/3", "--partial", "there", "--top", "7"]);
    expect_exit(&supervisor_in(&elsewhere, &args), 0, "elsewhere");
    let planned = supervisor_in(
        &elsewhere,
        &[
            "run",
            "logcount",
            "--plan",
            "plan-3.json",
            "--shard",
            "1",
            "--partial",
            "there-planned",
            "--top",
            "7",
        ],
    );
    expect_exit(&planned, 0, "elsewhere, planned");
    let here_part = std::fs::read(here.join("parts-3/1")).unwrap();
    assert!(std::fs::read(elsewhere.join("there")).unwrap() == here_part);
    assert!(std::fs::read(elsewhere.join("there-planned")).unwrap() == here_part);

    // A plan of several PATHs takes them again, or none; other PATHs are refused.
    let mut same = vec!["run", "logcount"];
    same.extend(SEVERAL);
    same.extend([
        "--plan",
        "plan-3.json",
        "--shard",
        "2",
        "--partial",
        "again",
    ]);
    expect_exit(&supervisor_in(&here, &same), 0, "the planned PATHs again");
    let other = supervisor_in(
        &here,
        &[
            "run",
            "logcount",
            "logs",
            "--plan",
            "plan-3.json",
            "--shard",
            "2",
        ],
    );
    expect_exit(&other, 2, "other PATHs");
    assert!(
        stderr(&other).contains("plan-3.json") && stderr(&other).contains("extra.log"),
        "{}",
        stderr(&other)
    );
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
    let output = plan_shards(&logs, 3, &plan);
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

    // A plan of one directory: a host that mounts it elsewhere names it there, and makes the
    // same partial. Anything but that one directory is refused.
    let elsewhere = temp.path().join("elsewhere");
    let copied = Command::new("cp")
        .arg("-a")
        .arg(&logs)
        .arg(&elsewhere)
        .status()
        .unwrap();
    assert!(copied.success());
    let there = temp.path().join("there");
    let output = supervisor(&[
        "run",
        "logcount",
        path(&elsewhere),
        "--plan",
        path(&plan),
        "--shard",
        "1",
        "--partial",
        path(&there),
    ]);
    expect_exit(&output, 0, "elsewhere");
    assert!(std::fs::read(&there).unwrap() == std::fs::read(parts.join("1")).unwrap());
    let output = supervisor(&[
        "run",
        "logcount",
        path(&elsewhere),
        path(&logs),
        "--plan",
        path(&plan),
        "--shard",
        "1",
    ]);
    expect_exit(&output, 2, "two PATHs for a plan of one directory");
    assert!(
        stderr(&output).contains("of one directory"),
        "{}",
        stderr(&output)
    );

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
    // A plan of the first format (one directory, before plans took several PATHs).
    let mut first: serde_json::Value = serde_json::from_str(&text).unwrap();
    first["format"] = 1.into();
    first["root"] = path(&logs).into();
    first.as_object_mut().unwrap().remove("inputs");
    let first_format = temp.path().join("format-1.json");
    std::fs::write(&first_format, first.to_string()).unwrap();
    let output = supervisor(&[
        "run",
        "logcount",
        "--plan",
        path(&first_format),
        "--shard",
        "0",
    ]);
    expect_exit(&output, 2, "format 1");
    assert!(
        stderr(&output).contains("format 1") && stderr(&output).contains("plan again"),
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
    let a_log = logs.join("a.log");
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
        // Standard input cannot be split across hosts.
        (
            vec!["run", "logcount", path(&logs), "-", "--shard", "0/2"],
            "standard input cannot be sharded",
        ),
        (
            vec![
                "run",
                "logcount",
                "-",
                "--plan",
                path(&plan),
                "--shard",
                "0",
            ],
            "standard input cannot be sharded",
        ),
        (
            vec!["plan", "logcount", "-", "--shards", "2", "-o", path(&plan)],
            "standard input cannot be sharded",
        ),
        (
            vec![
                "plan",
                "logcount",
                path(&logs),
                path(&missing),
                path(&a_log),
                "--shards",
                "2",
                "-o",
                path(&plan),
            ],
            "missing: no such file or directory",
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
    let output = plan_shards(&logs, 2, &plan);
    expect_exit(&output, 0, "plan");
    let before = std::fs::read(&plan).unwrap();
    let output = plan_shards(&logs, 3, &plan);
    expect_exit(&output, 2, "existing plan");
    assert!(
        stderr(&output).contains("already exists"),
        "{}",
        stderr(&output)
    );
    assert_eq!(std::fs::read(&plan).unwrap(), before);
}

/// A shard of many small files counts them in batches; a file that shrank after planning is
/// kept out of its batch and reported, and the files batched with it are counted exactly (the
/// overall distinct count holds none of its keys).
#[test]
fn a_file_that_shrank_since_planned_is_reported_and_its_batch_mates_are_exact() {
    let temp = tempfile::tempdir().unwrap();
    let logs = temp.path().join("logs");
    let others = temp.path().join("others");
    std::fs::create_dir(&logs).unwrap();
    std::fs::create_dir(&others).unwrap();
    for index in 0..40u32 {
        let text: String = (0..50u32)
            .map(|line| format!("10.{index}.0.{} - - x\n", line % 30))
            .collect();
        std::fs::write(logs.join(format!("f{index:02}.log")), &text).unwrap();
        if index != 7 {
            std::fs::write(others.join(format!("f{index:02}.log")), &text).unwrap();
        }
    }
    let plan = temp.path().join("plan.json");
    let output = plan_shards(&logs, 1, &plan);
    expect_exit(&output, 0, "plan");
    let shrunk = logs.join("f07.log");
    let text = std::fs::read(&shrunk).unwrap();
    std::fs::write(&shrunk, &text[..text.len() / 2]).unwrap();
    let part = temp.path().join("part-0");
    let output = supervisor(&[
        "run",
        "logcount",
        "--plan",
        path(&plan),
        "--shard",
        "0",
        "--partial",
        path(&part),
        "--workers",
        "2",
        "-vv",
    ]);
    expect_exit(&output, 1, "a shard with a shrunk file");
    let planned = stderr(&output)
        .lines()
        .filter(|line| line.contains("trace: job ") && line.contains(" more file(s)"))
        .count();
    assert!(planned >= 1, "no batch: {}", stderr(&output));
    let merged = supervisor(&["merge", path(&part), "--format", "json"]);
    expect_exit(&merged, 1, "merge with a file that could not be counted");
    let merged: serde_json::Value = serde_json::from_str(&stdout(&merged)).unwrap();
    let reason = merged["errors"]["f07.log"].as_str().unwrap_or_default();
    assert!(reason.contains("shrank since planned"), "{merged}");
    let expected: serde_json::Value =
        serde_json::from_str(&single_host(&others, &["--format", "json"])).unwrap();
    assert_eq!(merged["files"], expected["files"]);
    assert_eq!(merged["all"], expected["all"]);
}
