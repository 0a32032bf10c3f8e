//! Chaos tests of the `supervisor` binary: workers killed, stopped, crashing and hanging, the
//! supervisor itself killed, and every run still ends with the right results, no zombie and no
//! orphan. Each test starts the real binary in a temp dir of its own.
mod common;

use std::time::{Duration, Instant};

use common::*;
use libtest_mimic::Trial;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use rand::seq::SliceRandom;
use rand::SeedableRng;

fn sleep_jobs(count: u64, base_ms: u64) -> Vec<String> {
    (0..count).map(|n| (base_ms + n % 7).to_string()).collect()
}

fn expected_sleep_output(jobs: &[String]) -> String {
    jobs.iter().map(|ms| format!("slept {ms} ms\n")).collect()
}

fn with_args<'a>(head: &[&'a str], jobs: &'a [String], tail: &[&'a str]) -> Vec<&'a str> {
    head.iter()
        .copied()
        .chain(jobs.iter().map(String::as_str))
        .chain(tail.iter().copied())
        .collect()
}

fn sigkill_random_workers_gives_the_clean_results(start_method: &'static str) -> TestResult {
    let shm_before = shm_entries();
    // About 2 s of work for 3 workers: long enough for the 6 kills below.
    let jobs = sleep_jobs(120, 45);
    let expected = expected_sleep_output(&jobs);
    let args = with_args(
        &["diag", "sleep"],
        &jobs,
        &[
            "--workers",
            "3",
            "--start-method",
            start_method,
            "--max-restarts",
            "100",
            "--log-format",
            "json",
        ],
    );
    let (running, _) = start_with_workers(&args, 3)?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut killed = Vec::new();
    for _ in 0..6 {
        sleep_ms(120);
        if let Some(&victim) = running.workers().choose(&mut rng) {
            let _ = kill(Pid::from_raw(victim), Signal::SIGKILL);
            killed.push(victim);
        }
        running.check_no_lasting_zombie()?;
    }
    let finished = running.finish(LONG)?;
    finished.expect_success_printing(&expected)?;
    check!(
        killed.len() >= 4,
        "only killed {killed:?}: the run ended too soon to test anything"
    );
    let events = events(&finished);
    check!(
        !named(&events, "job_requeued").is_empty(),
        "no job was re-queued:\n{}",
        finished.stderr
    );
    for pid in killed {
        check!(!is_alive(pid), "killed worker {pid} still alive");
    }
    no_zombie_of_this_process()?;
    nothing_new_in_shm(&shm_before)?;
    Ok(())
}

fn sigstop_worker_is_replaced_and_its_job_rerun() -> TestResult {
    let jobs: Vec<String> = (0..4).map(|n| (1000 + n).to_string()).collect();
    let args = with_args(
        &["diag", "sleep"],
        &jobs,
        &[
            "--workers",
            "2",
            "--heartbeat-timeout",
            "0.5",
            "--log-format",
            "json",
        ],
    );
    let (running, workers) = start_with_workers(&args, 2)?;
    sleep_ms(400); // well into its first job
    let stopped = workers[0];
    kill(Pid::from_raw(stopped), Signal::SIGSTOP)?;
    let finished = running.finish(LONG)?;
    finished.expect_success_printing(&expected_sleep_output(&jobs))?;
    let events = events(&finished);
    check!(
        named(&events, "job_requeued")
            .iter()
            .any(|record| record["pid"] == stopped && record["cause"] == "missed_heartbeat"),
        "the stopped worker's job was not re-run:\n{}",
        finished.stderr
    );
    check!(!is_alive(stopped), "stopped worker {stopped} still alive");
    no_zombie_of_this_process()?;
    Ok(())
}

fn sigterm_to_a_worker_finishes_its_job_first() -> TestResult {
    let jobs: Vec<String> = (0..4).map(|n| (600 + n).to_string()).collect();
    let args = with_args(
        &["diag", "sleep"],
        &jobs,
        &["--workers", "2", "--log-format", "json"],
    );
    let (running, workers) = start_with_workers(&args, 2)?;
    sleep_ms(200);
    kill(Pid::from_raw(workers[0]), Signal::SIGTERM)?;
    let finished = running.finish(LONG)?;
    finished.expect_success_printing(&expected_sleep_output(&jobs))?;
    let pid = workers[0];
    let events = events(&finished);
    check!(
        named(&events, "worker_leaving")
            .iter()
            .any(|record| record["pid"] == pid)
            && named(&events, "worker_died").is_empty()
            && named(&events, "job_requeued").is_empty()
            && named(&events, "job_failed").is_empty(),
        "the terminated worker did not finish its job and leave cleanly:\n{}",
        finished.stderr
    );
    Ok(())
}

fn killing_many_workers_returns_the_pool_to_exactly_n() -> TestResult {
    let jobs = sleep_jobs(120, 60);
    let args = with_args(
        &["diag", "sleep"],
        &jobs,
        &["--workers", "4", "--max-restarts", "20"],
    );
    let (running, first) = start_with_workers(&args, 4)?;
    sleep_ms(200);
    for &pid in &first {
        kill(Pid::from_raw(pid), Signal::SIGKILL)?;
    }
    // Replacements come with backoff; the pool must come back to 4 new workers, never more.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = running.workers();
        check!(now.len() <= 4, "more than 4 workers: {now:?}");
        if now.len() == 4 && now.iter().all(|pid| !first.contains(pid)) {
            break;
        }
        check!(
            Instant::now() < deadline,
            "pool not back to 4 new workers: {now:?}\n{}",
            running.stderr_so_far()
        );
        sleep_ms(20);
    }
    for _ in 0..10 {
        sleep_ms(50);
        check!(
            running.workers().len() == 4,
            "pool size drifted from 4: {:?}",
            running.workers()
        );
        running.check_no_lasting_zombie()?;
    }
    let finished = running.finish(LONG)?;
    finished
        .expect_success_printing(&expected_sleep_output(&jobs))
        .map_err(|e| format!("after mass kill: {e}"))?;
    no_zombie_of_this_process()?;
    Ok(())
}

fn sigkill_supervisor_leaves_no_worker_alive(start_method: &'static str) -> TestResult {
    let (running, workers) = start_with_workers(
        &[
            "diag",
            "grandchild",
            "20000",
            "20000",
            "20000",
            "--workers",
            "3",
            "--start-method",
            start_method,
        ],
        3,
    )?;
    // Each worker runs a job that started a child of its own: those must go too.
    let grandchildren = retry_until(Instant::now() + Duration::from_secs(5), || {
        let found: Vec<i32> = workers
            .iter()
            .flat_map(|&w| children_of(w))
            .map(|(pid, _)| pid)
            .collect();
        if found.len() == 3 {
            Ok(found)
        } else {
            Err(format!("workers started {found:?}, not 3 children"))
        }
    })?;
    running.signal(Signal::SIGKILL);
    let killed_at = Instant::now();
    let finished = running.finish(Duration::from_secs(5))?;
    check!(
        finished.code.is_none(),
        "the supervisor was not killed: {:?}",
        finished.code
    );
    retry_until(killed_at + Duration::from_secs(1), || {
        let alive: Vec<i32> = workers
            .iter()
            .chain(&grandchildren)
            .copied()
            .filter(|&pid| is_alive(pid))
            .collect();
        if alive.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "workers or their children alive 1 s after the supervisor died: {alive:?}"
            ))
        }
    })?;
    no_zombie_of_this_process()?;
    Ok(())
}

fn a_worker_crashing_on_every_job_stops_at_the_intensity_limit() -> TestResult {
    let jobs: Vec<String> = (0..10).map(|n| n.to_string()).collect();
    let args = with_args(
        &["diag", "crash"],
        &jobs,
        &[
            "--workers",
            "2",
            "--max-restarts",
            "3",
            "--restart-period",
            "60",
            "--log-format",
            "json",
        ],
    );
    let finished = run(&args, LONG)?;
    finished.expect_exit(1)?;
    let events = events(&finished);
    let limit = named(&events, "restart_limit_hit");
    check!(
        limit.len() == 1 && limit[0]["max_restarts"] == 3 && limit[0]["period_secs"] == 60.0,
        "the restart limit was not reported once:\n{}",
        finished.stderr
    );
    let deaths = named(&events, "worker_died")
        .iter()
        .filter(|record| record["status"] == "signal 6 (SIGABRT)")
        .count();
    check!(
        (4..=5).contains(&deaths),
        "{deaths} deaths for a limit of 3 restarts:\n{}",
        finished.stderr
    );
    finished.expect_stderr_saying("10 of 10 job(s) failed")?;
    check!(
        finished.elapsed < Duration::from_secs(10),
        "took {:?}",
        finished.elapsed
    );
    no_zombie_of_this_process()?;
    Ok(())
}

fn a_hung_worker_is_killed_at_the_job_timeout_and_its_job_rerun() -> TestResult {
    let dir = tempfile::tempdir()?;
    let marker = dir.path().join("first-attempt");
    let started = Instant::now();
    let finished = run(
        &[
            "diag",
            "hang-once",
            path_str(&marker),
            "--workers",
            "1",
            "--job-timeout",
            "0.5",
            "--max-attempts",
            "2",
            "--log-format",
            "json",
        ],
        LONG,
    )?;
    finished.expect_success_printing("recovered\n")?;
    let events = events(&finished);
    check!(
        named(&events, "job_requeued").iter().any(|record| {
            record["cause"] == "timed_out"
                && record["next_attempt"] == 2
                && record["max_attempts"] == 2
        }),
        "the hung job was not re-queued for its second attempt:\n{}",
        finished.stderr
    );
    check!(
        started.elapsed() >= Duration::from_millis(500),
        "the timeout did not wait"
    );
    // A job that hangs every time fails after its attempts, and the run says so.
    let finished = run(
        &[
            "diag",
            "hang",
            "x",
            "--workers",
            "1",
            "--job-timeout",
            "0.3",
            "--max-attempts",
            "2",
        ],
        LONG,
    )?;
    finished.expect_exit(1)?;
    finished
        .expect_stderr_saying("job 0 (hang x): gave up after 2 attempt(s); last: job timed out")?;
    no_zombie_of_this_process()?;
    Ok(())
}

fn a_workers_own_children_die_with_it_and_are_reaped() -> TestResult {
    let (running, workers) = start_with_workers(
        &[
            "diag",
            "grandchild",
            "20000",
            "--workers",
            "1",
            "--job-timeout",
            "1",
            "--max-attempts",
            "1",
        ],
        1,
    )?;
    let grandchild = retry_until(
        Instant::now() + Duration::from_secs(5),
        || match children_of(workers[0]).first() {
            Some(&(pid, _)) => Ok(pid),
            None => Err("the worker started no child".to_string()),
        },
    )?;
    let finished = running.finish(LONG)?;
    finished.expect_exit(1)?;
    check!(
        !is_alive(grandchild),
        "the worker's child {grandchild} outlived it"
    );
    no_zombie_of_this_process()?;
    Ok(())
}

fn sigint_drains_then_a_second_one_stops_at_once() -> TestResult {
    // Drain: running jobs finish, queued ones are not started.
    let (running, _) = start_with_workers(
        &[
            "diag",
            "sleep",
            "600",
            "600",
            "600",
            "600",
            "600",
            "600",
            "--workers",
            "2",
            "--grace",
            "10",
        ],
        2,
    )?;
    sleep_ms(250);
    running.signal(Signal::SIGINT);
    let finished = running.finish(LONG)?;
    finished.expect_exit(130)?;
    check!(
        finished.lines() == ["slept 600 ms", "slept 600 ms"],
        "drained results: {:?}",
        finished.lines()
    );
    finished.expect_stderr_saying("interrupted by a stop signal")?;
    finished.expect_stderr_saying("4 of 6 job(s) failed")?;

    // A second signal does not wait for the grace period.
    let (running, _) = start_with_workers(
        &[
            "diag",
            "hang",
            "a",
            "b",
            "--workers",
            "2",
            "--grace",
            "30",
            "--log-format",
            "json",
        ],
        2,
    )?;
    sleep_ms(200);
    running.signal(Signal::SIGTERM);
    sleep_ms(200);
    running.signal(Signal::SIGTERM);
    let finished = running.finish(Duration::from_secs(5))?;
    finished.expect_exit(143)?;
    let records = events(&finished);
    check!(
        named(&records, "drain_begun").len() == 1 && named(&records, "stopping_now").len() == 1,
        "expected a drain, then a stop:\n{}",
        finished.stderr
    );

    // The grace period ends with SIGKILL.
    let (running, _) = start_with_workers(
        &[
            "diag",
            "hang",
            "a",
            "--workers",
            "1",
            "--grace",
            "0.5",
            "--log-format",
            "json",
        ],
        1,
    )?;
    sleep_ms(200);
    running.signal(Signal::SIGTERM);
    let finished = running.finish(Duration::from_secs(5))?;
    finished.expect_exit(143)?;
    check!(
        named(&events(&finished), "grace_expired")
            .iter()
            .any(|record| record["workers"] == 1),
        "the grace period did not expire:\n{}",
        finished.stderr
    );
    no_zombie_of_this_process()?;
    Ok(())
}

fn sigttin_and_sigttou_resize_the_pool() -> TestResult {
    let jobs = sleep_jobs(100, 40);
    let args = with_args(&["diag", "sleep"], &jobs, &["--workers", "2"]);
    let (running, _) = start_with_workers(&args, 2)?;
    running.signal(Signal::SIGTTIN);
    running.wait_for_workers(3, Duration::from_secs(5))?;
    running.signal(Signal::SIGTTOU);
    sleep_ms(100);
    running.signal(Signal::SIGTTOU);
    running.wait_for_workers(1, Duration::from_secs(5))?;
    running.signal(Signal::SIGTTOU);
    sleep_ms(300);
    check!(
        running.workers().len() == 1,
        "the pool shrank below 1: {:?}",
        running.workers()
    );
    running.signal(Signal::SIGTTIN);
    running.wait_for_workers(2, Duration::from_secs(5))?;
    let finished = running.finish(LONG)?;
    finished
        .expect_success_printing(&expected_sleep_output(&jobs))
        .map_err(|e| format!("after resizing: {e}"))?;
    Ok(())
}

fn max_tasks_per_child_recycles_workers() -> TestResult {
    let finished = run(
        &[
            "diag",
            "pid",
            "a",
            "b",
            "c",
            "d",
            "e",
            "f",
            "--workers",
            "1",
            "--max-tasks-per-child",
            "2",
            "--log-format",
            "json",
        ],
        LONG,
    )?;
    finished.expect_exit(0)?;
    let pids = finished.lines();
    check!(pids.len() == 6, "{pids:?}");
    for pair in pids.chunks(2) {
        check!(pair[0] == pair[1], "a worker did not run 2 jobs: {pids:?}");
    }
    let distinct: std::collections::BTreeSet<_> = pids.iter().collect();
    check!(
        distinct.len() == 3,
        "expected 3 workers for 6 jobs at 2 each: {pids:?}"
    );
    check!(
        named(&events(&finished), "worker_died").is_empty(),
        "recycling is not a death:\n{}",
        finished.stderr
    );
    Ok(())
}

fn status_table_on_sigusr1_and_interval() -> TestResult {
    let (running, workers) =
        start_with_workers(&["diag", "sleep", "800", "800", "--workers", "2"], 2)?;
    sleep_ms(300);
    running.signal(Signal::SIGUSR1);
    let finished = running.finish(LONG)?;
    finished.expect_exit(0)?;
    finished.expect_stderr_saying("supervisor status: 2 worker(s)")?;
    for pid in workers {
        check!(
            finished.stderr.contains(&format!(" {pid} ")),
            "worker {pid} not in the table:\n{}",
            finished.stderr
        );
    }
    check!(
        finished.stderr.matches("  sleep 800 for ").count() == 2,
        "the table does not name each worker's job by its input:\n{}",
        finished.stderr
    );

    let finished = run(
        &[
            "diag",
            "sleep",
            "700",
            "--workers",
            "1",
            "--status-interval",
            "0.2",
        ],
        LONG,
    )?;
    finished.expect_exit(0)?;
    let tables = finished.stderr.matches("supervisor status:").count();
    check!(
        tables >= 2,
        "{tables} tables in 0.7 s at 0.2 s intervals:\n{}",
        finished.stderr
    );
    Ok(())
}

/// SIGINT while the inputs are still being listed (20,000 files, one worker): the run stops
/// with 130 and loses nothing silently: every file is counted exactly or named as not counted,
/// unless the listing itself was cut short, which the error says.
fn sigint_while_listing_names_or_counts_every_file() -> TestResult {
    let logs = tempfile::tempdir().map_err(|e| e.to_string())?;
    const FILES: usize = 20_000;
    for index in 0..FILES {
        std::fs::write(
            logs.path().join(format!("f{index:05}.log")),
            format!("10.0.{}.{} - - x\n", index / 256 % 256, index % 256),
        )
        .map_err(|e| e.to_string())?;
    }
    let dir = path_str(logs.path());
    let args = ["run", "logcount", dir, "-j", "1", "--format", "json"];
    let (running, _) = start_with_workers(&args, 1)?;
    running.signal(Signal::SIGINT);
    let finished = running.finish(LONG)?;
    let report: serde_json::Value =
        serde_json::from_str(&finished.stdout).map_err(|e| format!("{e}: {}", finished.stdout))?;
    let counted = report["files"].as_object().ok_or("no files")?;
    let errors = report["errors"].as_object().ok_or("no errors")?;
    for (name, counts) in counted {
        check!(
            counts["total"] == 1 && counts["ip"] == 1,
            "{name} miscounted: {counts}"
        );
    }
    if counted.len() < FILES {
        finished.expect_exit(130)?;
        finished.expect_stderr_saying("stopped by SIGINT before counting")?;
        for reason in errors.values() {
            check!(
                reason
                    .as_str()
                    .is_some_and(|r| r.starts_with("not counted")),
                "{reason}"
            );
        }
        let named = counted.len() + errors.len();
        if finished.stderr.contains("before listing every input") {
            check!(named <= FILES, "{named} files reported, of {FILES}");
        } else {
            check!(
                named == FILES,
                "{} counted and {} named as not counted, of {FILES}",
                counted.len(),
                errors.len()
            );
        }
    } else {
        // The signal came after the last result: nothing was cut short.
        check!(errors.is_empty(), "{errors:?}");
    }
    no_zombie_of_this_process()?;
    Ok(())
}

fn main() -> std::process::ExitCode {
    let trials = vec![
        Trial::test(
            "sigkill_random_workers_gives_the_clean_results_fork",
            || sigkill_random_workers_gives_the_clean_results("fork"),
        ),
        Trial::test(
            "sigkill_random_workers_gives_the_clean_results_spawn",
            || sigkill_random_workers_gives_the_clean_results("spawn"),
        ),
        Trial::test(
            "sigstop_worker_is_replaced_and_its_job_rerun",
            sigstop_worker_is_replaced_and_its_job_rerun,
        ),
        Trial::test(
            "sigterm_to_a_worker_finishes_its_job_first",
            sigterm_to_a_worker_finishes_its_job_first,
        ),
        Trial::test(
            "killing_many_workers_returns_the_pool_to_exactly_n",
            killing_many_workers_returns_the_pool_to_exactly_n,
        ),
        Trial::test("sigkill_supervisor_leaves_no_worker_alive_fork", || {
            sigkill_supervisor_leaves_no_worker_alive("fork")
        }),
        Trial::test("sigkill_supervisor_leaves_no_worker_alive_spawn", || {
            sigkill_supervisor_leaves_no_worker_alive("spawn")
        }),
        Trial::test(
            "a_worker_crashing_on_every_job_stops_at_the_intensity_limit",
            a_worker_crashing_on_every_job_stops_at_the_intensity_limit,
        ),
        Trial::test(
            "a_hung_worker_is_killed_at_the_job_timeout_and_its_job_rerun",
            a_hung_worker_is_killed_at_the_job_timeout_and_its_job_rerun,
        ),
        Trial::test(
            "a_workers_own_children_die_with_it_and_are_reaped",
            a_workers_own_children_die_with_it_and_are_reaped,
        ),
        Trial::test(
            "sigint_drains_then_a_second_one_stops_at_once",
            sigint_drains_then_a_second_one_stops_at_once,
        ),
        Trial::test(
            "sigint_while_listing_names_or_counts_every_file",
            sigint_while_listing_names_or_counts_every_file,
        ),
        Trial::test(
            "sigttin_and_sigttou_resize_the_pool",
            sigttin_and_sigttou_resize_the_pool,
        ),
        Trial::test(
            "max_tasks_per_child_recycles_workers",
            max_tasks_per_child_recycles_workers,
        ),
        Trial::test(
            "status_table_on_sigusr1_and_interval",
            status_table_on_sigusr1_and_interval,
        ),
    ];
    run_trials(trials)
}
