//! End-to-end tests of how the `supervisor` command presents itself: each subcommand's own
//! `--help` with examples, and the shell completions and manual pages generated from the same
//! definition. Each test runs the real binary in a temp dir of its own.
mod common;

use common::*;
use libtest_mimic::Trial;

/// Options of logcount only, of the pool, and of gen-logs only.
const LOGCOUNT_ONLY: [&str; 5] = [
    "--format",
    "--top",
    "-r, --recursive",
    "--chunk-bytes",
    "[PATH]...",
];
const POOL: [&str; 6] = [
    "-j, --workers",
    "--max-restarts",
    "--job-timeout",
    "-q, --quiet",
    "-v, --verbose",
    "--log-format",
];
const GEN_LOGS_ONLY: [&str; 3] = ["--lines", "--distinct", "--seed"];

/// Names from the code that a user has no use for.
const INTERNAL: [&str; 5] = ["worker_entry", "herd_", "LeaseTable", "JobKind", "Registry"];

fn help(args: &[&str]) -> Result<String, String> {
    let finished = run(args, LONG)?;
    finished
        .expect_exit(0)
        .map_err(|e| format!("{args:?}: {e}"))?;
    for name in INTERNAL {
        check_str(!finished.stdout.contains(name), || {
            format!(
                "{args:?} shows the internal name {name}:\n{}",
                finished.stdout
            )
        })?;
    }
    Ok(finished.stdout)
}

fn check_str(condition: bool, message: impl FnOnce() -> String) -> Result<(), String> {
    if condition {
        Ok(())
    } else {
        Err(message())
    }
}

fn each_subcommand_has_its_own_help_with_examples() -> TestResult {
    let top = help(&["--help"])?;
    for command in ["run", "diag", "gen-logs", "completions", "man"] {
        check!(
            top.contains(&format!("\n  {command} ")),
            "{command} missing from:\n{top}"
        );
    }
    check!(top.contains("Examples:"), "no examples:\n{top}");

    let run_help = help(&["run", "--help"])?;
    check!(run_help.contains("logcount"), "{run_help}");

    for args in [
        &["run", "logcount", "--help"][..],
        &["run", "logcount", "-h"],
    ] {
        let text = help(args)?;
        for option in LOGCOUNT_ONLY.iter().chain(&POOL) {
            check!(text.contains(option), "{args:?} lacks {option}:\n{text}");
        }
        for foreign in GEN_LOGS_ONLY.iter().chain(&["<KIND>", "hang-once"]) {
            check!(!text.contains(foreign), "{args:?} shows {foreign}:\n{text}");
        }
        check!(
            text.contains("Examples:\n  supervisor run logcount "),
            "{args:?}: no examples:\n{text}"
        );
    }
    let long = help(&["run", "logcount", "--help"])?;
    check!(
        long.contains("Signals:") && long.contains("SIGUSR1") && long.contains("Exit status:"),
        "--help lacks signals and exit statuses:\n{long}"
    );

    let diag = help(&["diag", "--help"])?;
    for kind in [
        "echo",
        "sleep",
        "fail",
        "crash",
        "hang",
        "hang-once",
        "pid",
        "grandchild",
    ] {
        check!(
            diag.contains(&format!("- {kind}: ")),
            "diag --help does not describe {kind}:\n{diag}"
        );
    }
    for option in POOL {
        check!(diag.contains(option), "diag --help lacks {option}:\n{diag}");
    }
    for foreign in LOGCOUNT_ONLY.iter().chain(&GEN_LOGS_ONLY) {
        check!(
            !diag.contains(foreign),
            "diag --help shows {foreign}:\n{diag}"
        );
    }
    check!(diag.contains("Examples:\n  supervisor diag "), "{diag}");

    let gen_logs = help(&["gen-logs", "--help"])?;
    for option in GEN_LOGS_ONLY {
        check!(
            gen_logs.contains(option),
            "gen-logs --help lacks {option}:\n{gen_logs}"
        );
    }
    for foreign in POOL.iter().chain(&["--format", "--top"]) {
        check!(
            !gen_logs.contains(foreign),
            "gen-logs --help shows {foreign}:\n{gen_logs}"
        );
    }
    Ok(())
}

fn short_flags_do_what_their_long_forms_do() -> TestResult {
    let data = tempfile::tempdir()?;
    std::fs::create_dir(data.path().join("sub"))?;
    std::fs::write(data.path().join("top.log"), "1.1.1.1 - - a\n")?;
    std::fs::write(data.path().join("sub").join("deep.log"), "2.2.2.2 - - b\n")?;
    let dir = path_str(data.path());
    for (flags, total) in [
        (&["-j", "1"][..], 1),
        (&["-r", "-j", "1"], 2),
        (&["--recursive", "--workers", "1"], 2),
    ] {
        let finished = run(
            &[&["run", "logcount", dir, "--format", "json"][..], flags].concat(),
            LONG,
        )?;
        finished
            .expect_exit(0)
            .map_err(|e| format!("{flags:?}: {e}"))?;
        let json: serde_json::Value = serde_json::from_str(&finished.stdout)?;
        check!(json["all"]["total"] == total, "{flags:?}: {json}");
    }
    let (running, workers) =
        start_with_workers(&["diag", "sleep", "300", "300", "300", "-j", "3"], 3)?;
    check!(workers.len() == 3, "-j 3 started {workers:?}");
    running.finish(LONG)?.expect_exit(0)?;
    Ok(())
}

fn completions_are_generated_for_each_shell() -> TestResult {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let finished = run(&["completions", shell], LONG)?;
        finished
            .expect_exit(0)
            .map_err(|e| format!("{shell}: {e}"))?;
        for word in [
            "logcount",
            "diag",
            "gen-logs",
            "completions",
            "workers",
            "chunk-bytes",
        ] {
            check!(
                finished.stdout.contains(word),
                "the {shell} completions lack {word}:\n{}",
                finished.stdout
            );
        }
    }
    let bash = run(&["completions", "bash"], LONG)?;
    check!(
        bash.stdout.contains("complete -F _supervisor") && bash.stdout.contains("hang-once"),
        "not a bash completion script:\n{}",
        bash.stdout
    );
    let finished = run(&["completions", "tcsh"], LONG)?;
    finished.expect_exit(2)?;
    finished.expect_stderr_saying("invalid value 'tcsh'")?;
    Ok(())
}

fn the_manual_page_lists_the_subcommands() -> TestResult {
    let finished = run(&["man"], LONG)?;
    finished.expect_exit(0)?;
    let page = &finished.stdout;
    check!(
        page.starts_with(".ie ") || page.contains("\n.TH supervisor 1"),
        "not a roff page:\n{page}"
    );
    for word in [
        "supervisor\\-run",
        "supervisor\\-diag",
        "supervisor\\-gen\\-logs",
        "supervisor\\-completions",
    ] {
        check!(page.contains(word), "the page lacks {word}:\n{page}");
    }

    let dir = tempfile::tempdir()?;
    let pages = dir.path().join("man1");
    let finished = run(&["man", "--dir", path_str(&pages)], LONG)?;
    finished.expect_exit(0)?;
    for name in [
        "supervisor.1",
        "supervisor-run.1",
        "supervisor-run-logcount.1",
        "supervisor-diag.1",
        "supervisor-gen-logs.1",
    ] {
        let text = std::fs::read_to_string(pages.join(name))
            .map_err(|e| format!("{name} not written: {e}"))?;
        check!(text.contains(".TH "), "{name} is not a roff page:\n{text}");
    }
    let logcount = std::fs::read_to_string(pages.join("supervisor-run-logcount.1"))?;
    check!(
        logcount.contains("chunk\\-bytes") && logcount.contains("workers"),
        "the logcount page lacks its options:\n{logcount}"
    );
    Ok(())
}

fn main() -> std::process::ExitCode {
    run_trials(vec![
        Trial::test(
            "each_subcommand_has_its_own_help_with_examples",
            each_subcommand_has_its_own_help_with_examples,
        ),
        Trial::test(
            "short_flags_do_what_their_long_forms_do",
            short_flags_do_what_their_long_forms_do,
        ),
        Trial::test(
            "completions_are_generated_for_each_shell",
            completions_are_generated_for_each_shell,
        ),
        Trial::test(
            "the_manual_page_lists_the_subcommands",
            the_manual_page_lists_the_subcommands,
        ),
    ])
}
