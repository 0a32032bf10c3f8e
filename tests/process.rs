//! Process API across real processes: fork and spawn, join and timeouts, exit codes vs signals, terminate and
//! kill, panics carried back, daemon children, process groups and parent-death signals, active_children, no
//! zombie left behind.
//!
//! `harness = false`: trials run one by one on the main thread, so the process stays single-threaded and fork
//! is allowed (and `herd_ipc::init()` lets spawn re-execute this binary). Every trial ends by checking that
//! this process has no zombie child.

use herd_testkit as support;

use std::io::Read;
use std::os::fd::OwnedFd;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use herd::ipc::process::ParentProcess;
use herd::ipc::{
    active_children, current_process, parent_process, ExitStatus, JoinError, JoinTimeoutError, Pid,
    Pipe, PipeReceiver, PipeSender, Process, StartError, StartMethod,
};
use libtest_mimic::Failed;
use support::eventually;

type TestResult = Result<(), Failed>;
type TrialFn = fn() -> TestResult;

/// Upper bound for any wait in these tests: a bug fails the test instead of hanging it.
const PATIENCE: Duration = Duration::from_secs(10);

herd::ipc::entry! {
    /// Adds a pair in a spawned child.
    fn add(pair: (i64, i64)) -> i64 {
        pair.0 + pair.1
    }
}

herd::ipc::entry! {
    /// Reports who the spawned child is: pid, ppid, name.
    fn whoami(_unit: ()) -> (Pid, Pid, String) {
        let me = current_process();
        (me.pid, me.ppid, me.name)
    }
}

herd::ipc::entry! {
    /// Panics with the given message.
    fn explode(message: String) -> () {
        herd_testkit::quiet_panic_hook();
        panic!("{message}")
    }
}

herd::ipc::entry! {
    /// Sleeps for the given number of milliseconds.
    fn nap(millis: u64) {
        std::thread::sleep(Duration::from_millis(millis))
    }
}

herd::ipc::entry! {
    /// Reports the spawned child's pid and process group id, as it sees them.
    fn group_ids(_unit: ()) -> (i32, i32) {
        (nix::unistd::getpid().as_raw(), nix::unistd::getpgrp().as_raw())
    }
}

herd::ipc::entry! {
    /// Exits with the given code without returning a value.
    fn exit_with(code: i32) -> () {
        std::process::exit(code)
    }
}

herd::ipc::entry! {
    /// Does nothing.
    fn nothing(_unit: ()) {}
}

herd::ipc::entry! {
    /// Reports the process that started this one, as `parent_process()` sees it.
    fn my_parent(_unit: ()) -> Option<ParentProcess> {
        parent_process()
    }
}

herd::ipc::entry! {
    /// Sends a greeting through the Pipe end it was given (its fd inherited through exec).
    fn greet_through(sender: PipeSender<String>) -> bool {
        sender.send(format!("hello from {}", current_process().name)).is_ok()
    }
}

/// Set in the environment of a re-executed copy of this binary: its main says so if it runs.
const REACHED_MAIN: &str = "HERD_TEST_REACHED_MAIN";

/// `Duration::MAX` is "no deadline", for every start method: no overflow panic.
fn an_endless_join_timeout_waits_without_overflow() -> TestResult {
    for method in herd::ipc::StartMethod::ALL {
        let child = Process::new().start(method, add, &(20, 22))?;
        assert_eq!(child.join_timeout(Duration::MAX)?, 42, "{method}");
    }
    Ok(())
}

/// `wait` is `p.join()`: the handle stays, `exitcode`/`exit_status`/`is_alive` answer, and the value is
/// taken once, for every start method.
fn wait_keeps_the_handle_usable() -> TestResult {
    for method in StartMethod::ALL {
        let mut child = Process::new().start(method, add, &(20, 22))?;
        assert_eq!(child.wait()?, ExitStatus::Exited(0), "{method}");
        assert_eq!(child.exitcode(), Some(0), "{method}");
        assert_eq!(child.exit_status(), Some(ExitStatus::Exited(0)), "{method}");
        assert!(!child.is_alive(), "{method}");
        assert_eq!(child.wait()?, ExitStatus::Exited(0), "{method}: wait again");
        assert_eq!(child.take_result()?, 42, "{method}");
        match child.take_result() {
            Err(err @ JoinError::Taken { .. }) => {
                assert_eq!(err.exit_status(), Some(ExitStatus::Exited(0)), "{method}")
            }
            other => panic!("{method}: second take_result gave {other:?}"),
        }
        // The status outlives the value, and the handle can still be signalled (a no-op now).
        assert_eq!(child.exitcode(), Some(0), "{method}");
        child.kill()?;
    }
    // A signal shows as a negative exitcode; take_result says why there is no value.
    let mut child = Process::new().fork(|| std::thread::sleep(Duration::from_secs(60)))?;
    child.kill()?;
    let status = child.wait()?;
    assert_eq!(status.signal(), Some(libc::SIGKILL));
    assert_eq!(child.exitcode(), Some(-libc::SIGKILL));
    assert!(child.take_result().unwrap_err().is_killed());
    // A child that exited by itself.
    let mut child = Process::new().spawn(exit_with, &3)?;
    assert_eq!(child.wait_timeout(PATIENCE)?, Some(ExitStatus::Exited(3)));
    assert_eq!(child.exitcode(), Some(3));
    assert!(matches!(
        child.take_result(),
        Err(JoinError::NoValue { .. })
    ));
    Ok(())
}

/// `wait_timeout` on a running child returns `None` and leaves it running; `Duration::MAX` waits.
fn wait_timeout_keeps_a_running_child() -> TestResult {
    let mut child = Process::new().spawn(nap, &300)?;
    let started = Instant::now();
    assert_eq!(child.wait_timeout(Duration::from_millis(50))?, None);
    assert!(started.elapsed() >= Duration::from_millis(50));
    assert!(child.is_alive());
    assert_eq!(child.exitcode(), None);
    assert_eq!(
        child.wait_timeout(Duration::MAX)?,
        Some(ExitStatus::Exited(0))
    );
    assert!(!child.is_alive());
    child.take_result()?;
    // join still works after wait, consuming the handle.
    let mut child = Process::new().fork(|| 7u8)?;
    child.wait()?;
    assert_eq!(child.join()?, 7);
    Ok(())
}

/// `parent_process()` is `None` here and names the starter in a child, for every start method and
/// for a grandchild started by a named child.
fn parent_process_names_the_starter() -> TestResult {
    assert_eq!(
        parent_process(),
        None,
        "the main process has no herd parent"
    );
    let me = ParentProcess {
        pid: Pid::this(),
        name: "MainProcess".to_owned(),
    };
    for method in StartMethod::ALL {
        let child = Process::new().start(method, my_parent, &())?;
        assert_eq!(child.join_timeout(PATIENCE)?, Some(me.clone()), "{method}");
    }
    let outer = Process::new().name("outer").fork(|| {
        let fork_grandchild = Process::new().fork(parent_process).expect("fork");
        let forked = fork_grandchild.join_timeout(PATIENCE).expect("join");
        let spawn_grandchild = Process::new().spawn(my_parent, &()).expect("spawn");
        let spawned = spawn_grandchild.join_timeout(PATIENCE).expect("join");
        (Pid::this(), forked, spawned)
    })?;
    let (outer_pid, forked, spawned) = outer.join_timeout(PATIENCE)?;
    let expected = Some(ParentProcess {
        pid: outer_pid,
        name: "outer".to_owned(),
    });
    assert_eq!(forked, expected, "forked grandchild");
    assert_eq!(spawned, expected, "spawned grandchild");
    Ok(())
}

fn main() -> ExitCode {
    if std::env::var_os(REACHED_MAIN).is_some() {
        return main_of_a_spawned_copy();
    }
    let trials: Vec<(&str, TrialFn)> = vec![
        (
            "spawned_child_never_reaches_main",
            spawned_child_never_reaches_main,
        ),
        ("fork_returns_value", fork_returns_value),
        ("wait_keeps_the_handle_usable", wait_keeps_the_handle_usable),
        (
            "wait_timeout_keeps_a_running_child",
            wait_timeout_keeps_a_running_child,
        ),
        (
            "parent_process_names_the_starter",
            parent_process_names_the_starter,
        ),
        (
            "an_endless_join_timeout_waits_without_overflow",
            an_endless_join_timeout_waits_without_overflow,
        ),
        (
            "fork_borrows_from_parent_stack",
            fork_borrows_from_parent_stack,
        ),
        ("exit_code_vs_signal", exit_code_vs_signal),
        ("terminate_sends_sigterm", terminate_sends_sigterm),
        ("kill_sends_sigkill", kill_sends_sigkill),
        ("signal_after_reap_is_a_no_op", signal_after_reap_is_a_no_op),
        (
            "join_timeout_hands_back_the_child",
            join_timeout_hands_back_the_child,
        ),
        (
            "panic_message_is_carried_back",
            panic_message_is_carried_back,
        ),
        ("large_result_does_not_stall", large_result_does_not_stall),
        ("names_and_current_process", names_and_current_process),
        ("drop_kills_and_reaps", drop_kills_and_reaps),
        (
            "active_children_lists_and_reaps",
            active_children_lists_and_reaps,
        ),
        (
            "daemon_dies_when_parent_is_sigkilled",
            daemon_dies_when_parent_is_sigkilled,
        ),
        (
            "non_daemon_survives_parent_sigkill",
            non_daemon_survives_parent_sigkill,
        ),
        (
            "die_with_parent_kills_a_forked_child_of_a_killed_parent",
            die_with_parent_kills_a_forked_child_of_a_killed_parent,
        ),
        (
            "die_with_parent_kills_a_spawned_child_of_a_killed_parent",
            die_with_parent_kills_a_spawned_child_of_a_killed_parent,
        ),
        (
            "die_with_parent_refuses_a_bad_signal",
            die_with_parent_refuses_a_bad_signal,
        ),
        (
            "process_group_makes_a_forked_child_a_group_leader",
            process_group_makes_a_forked_child_a_group_leader,
        ),
        (
            "process_group_makes_a_spawned_child_a_group_leader",
            process_group_makes_a_spawned_child_a_group_leader,
        ),
        (
            "fork_refused_in_multi_threaded_parent",
            fork_refused_in_multi_threaded_parent,
        ),
        (
            "spawn_with_args_and_return_value",
            spawn_with_args_and_return_value,
        ),
        ("spawn_reports_identity", spawn_reports_identity),
        (
            "spawn_panic_message_is_carried_back",
            spawn_panic_message_is_carried_back,
        ),
        (
            "spawn_unregistered_entry_is_refused",
            spawn_unregistered_entry_is_refused,
        ),
        (
            "spawn_undecodable_args_fail_clearly",
            spawn_undecodable_args_fail_clearly,
        ),
        (
            "spawn_wrong_return_type_fails_clearly",
            spawn_wrong_return_type_fails_clearly,
        ),
        (
            "spawn_killed_child_reports_signal",
            spawn_killed_child_reports_signal,
        ),
        (
            "spawn_from_multi_threaded_parent",
            spawn_from_multi_threaded_parent,
        ),
        (
            "spawn_passes_a_pipe_end_as_argument",
            spawn_passes_a_pipe_end_as_argument,
        ),
        ("fork_returns_a_pipe_end", fork_returns_a_pipe_end),
        (
            "unencodable_values_fail_clearly",
            unencodable_values_fail_clearly,
        ),
        (
            "send_signal_delivers_any_signal",
            send_signal_delivers_any_signal,
        ),
        (
            "unsendable_result_fails_clearly",
            unsendable_result_fails_clearly,
        ),
        ("ignored_sigchld_is_refused", ignored_sigchld_is_refused),
        ("zombie_demo_sees_a_zombie", zombie_demo_sees_a_zombie),
        ("orphan_demo_sees_reparenting", orphan_demo_sees_reparenting),
        (
            "wait_reports_the_child_that_exited",
            wait_reports_the_child_that_exited,
        ),
        ("forkserver_returns_value", forkserver_returns_value),
        ("forkserver_exit_and_signals", forkserver_exit_and_signals),
        (
            "forkserver_keeps_a_zombie_until_asked",
            forkserver_keeps_a_zombie_until_asked,
        ),
        (
            "forkserver_drop_kills_and_reaps",
            forkserver_drop_kills_and_reaps,
        ),
        ("forkserver_pidfd_polls", forkserver_pidfd_polls),
        ("forkserver_passes_a_pipe_end", forkserver_passes_a_pipe_end),
        (
            "forkserver_from_multi_threaded_process",
            forkserver_from_multi_threaded_process,
        ),
        (
            "forkserver_dies_with_its_parent",
            forkserver_dies_with_its_parent,
        ),
        (
            "forkserver_started_from_a_short_lived_thread_survives_it",
            forkserver_started_from_a_short_lived_thread_survives_it,
        ),
        (
            "forkserver_is_restarted_after_it_died",
            forkserver_is_restarted_after_it_died,
        ),
        (
            "forkserver_child_adopted_by_a_subreaper_is_reaped",
            forkserver_child_adopted_by_a_subreaper_is_reaped,
        ),
        ("start_dispatches_on_method", start_dispatches_on_method),
    ];
    support::run(trials)
}

/// The /proc state of `pid`, or `None` once it is gone.
fn proc_state(pid: Pid) -> Option<char> {
    procfs::process::Process::new(pid.as_raw())
        .and_then(|p| p.stat())
        .ok()
        .map(|stat| stat.state)
}

fn expect_err<T: std::fmt::Debug, E>(result: Result<T, E>) -> Result<E, Failed> {
    match result {
        Ok(value) => Err(format!("expected an error, got Ok({value:?})").into()),
        Err(err) => Ok(err),
    }
}

/// Joins `child` (within PATIENCE) and requires that `signal` (described as `what`) ended it.
fn expect_ended_by<T: serde::de::DeserializeOwned + std::fmt::Debug>(
    child: herd::ipc::Child<T>,
    signal: i32,
    what: &str,
) -> TestResult {
    let err = expect_err(child.join_timeout(PATIENCE))?;
    match err {
        err @ JoinTimeoutError::Killed { .. } => {
            assert_eq!(err.exit_status(), Some(ExitStatus::Signaled(signal)))
        }
        other => return Err(format!("expected {what}, got {other:?}").into()),
    }
    Ok(())
}

fn fork_returns_value() -> TestResult {
    let child = Process::new().fork(|| (6 * 7, String::from("from the child"), Pid::this()))?;
    let child_pid = child.pid();
    let (answer, text, pid_seen_by_child) = child.join()?;
    assert_eq!((answer, text.as_str()), (42, "from the child"));
    assert_eq!(pid_seen_by_child, child_pid);
    assert_ne!(child_pid, Pid::this());
    Ok(())
}

fn fork_borrows_from_parent_stack() -> TestResult {
    let numbers: Vec<u64> = (1..=100).collect();
    let child = Process::new().fork(|| numbers.iter().sum::<u64>())?;
    assert_eq!(child.join()?, 5050);
    Ok(())
}

fn exit_code_vs_signal() -> TestResult {
    let exits = Process::new().fork(|| -> u8 { std::process::exit(3) })?;
    let err = expect_err(exits.join())?;
    assert!(matches!(err, JoinError::NoValue { .. }), "{err}");
    assert_eq!(err.exit_status(), Some(ExitStatus::Exited(3)));
    assert_eq!(err.exit_status().map(|s| s.exitcode()), Some(3));

    let aborts = Process::new().fork(|| {
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    })?;
    let err = expect_err(aborts.join())?;
    assert!(matches!(err, JoinError::Killed { .. }), "{err}");
    assert_eq!(err.exit_status(), Some(ExitStatus::Signaled(libc::SIGKILL)));
    assert_eq!(err.exit_status().map(|s| s.exitcode()), Some(-9));
    assert!(err.to_string().contains("SIGKILL"), "{err}");
    Ok(())
}

fn sleeper() -> Result<herd::ipc::Child<()>, StartError> {
    Process::new().fork(|| std::thread::sleep(Duration::from_secs(30)))
}

fn terminate_sends_sigterm() -> TestResult {
    let child = sleeper()?;
    assert!(child.is_alive());
    assert_eq!(child.exit_status(), None);
    child.terminate()?;
    let err = expect_err(child.join())?;
    assert_eq!(err.exit_status(), Some(ExitStatus::Signaled(libc::SIGTERM)));
    assert_eq!(err.exit_status().map(|s| s.exitcode()), Some(-15));
    Ok(())
}

fn kill_sends_sigkill() -> TestResult {
    let child = sleeper()?;
    child.kill()?;
    eventually("the killed child is no longer alive", PATIENCE, || {
        !child.is_alive()
    })?;
    assert_eq!(
        child.exit_status(),
        Some(ExitStatus::Signaled(libc::SIGKILL))
    );
    let err = expect_err(child.join())?;
    assert!(matches!(err, JoinError::Killed { .. }), "{err}");
    Ok(())
}

fn signal_after_reap_is_a_no_op() -> TestResult {
    let child = Process::new().fork(|| 1u8)?;
    eventually("the child has been reaped", PATIENCE, || {
        child.exit_status().is_some()
    })?;
    assert_eq!(child.exit_status(), Some(ExitStatus::Exited(0)));
    // The pid may be recycled by now: terminate/kill must not reach whatever has it.
    child.terminate()?;
    child.kill()?;
    assert_eq!(child.exit_status(), Some(ExitStatus::Exited(0)));
    assert_eq!(child.join()?, 1);
    Ok(())
}

fn join_timeout_hands_back_the_child() -> TestResult {
    let child = Process::new().fork(|| {
        std::thread::sleep(Duration::from_millis(300));
        String::from("done")
    })?;
    let started = Instant::now();
    let child = match child.join_timeout(Duration::from_millis(50)) {
        Err(JoinTimeoutError::Timeout(child)) => child,
        other => return Err(format!("expected a timeout, got {other:?}").into()),
    };
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(50) && waited < PATIENCE,
        "waited {waited:?}"
    );
    assert!(child.is_alive());
    assert_eq!(child.join_timeout(PATIENCE)?, "done");
    Ok(())
}

fn panic_message_is_carried_back() -> TestResult {
    let child = Process::new().name("boomer").fork(|| -> u32 {
        herd_testkit::quiet_panic_hook();
        panic!("boom number {}", 7)
    })?;
    let err = expect_err(child.join())?;
    assert_eq!(err.panic_message(), Some("boom number 7"));
    assert_eq!(err.exit_status(), Some(ExitStatus::Exited(1)));
    assert!(
        err.to_string().contains("boomer") && err.to_string().contains("boom number 7"),
        "{err}"
    );
    Ok(())
}

fn large_result_does_not_stall() -> TestResult {
    // Far bigger than a pipe buffer (64 KiB): the child can only finish if join reads while it writes.
    let child = Process::new().fork(|| vec![7u8; 4 << 20])?;
    let value = child.join_timeout(PATIENCE)?;
    assert_eq!(value.len(), 4 << 20);
    assert!(value.iter().all(|&b| b == 7));
    Ok(())
}

fn names_and_current_process() -> TestResult {
    let parent = current_process();
    assert_eq!(parent.name, "MainProcess");
    assert_eq!(parent.pid, Pid::this());
    let named = Process::new().name("worker-7").fork(current_process)?;
    assert_eq!(named.name(), "worker-7");
    let named_pid = named.pid();
    let seen = named.join()?;
    assert_eq!(
        (seen.name.as_str(), seen.pid, seen.ppid),
        ("worker-7", named_pid, parent.pid)
    );
    let unnamed = Process::new().fork(|| current_process().name)?;
    let default_name = unnamed.name().to_owned();
    assert!(default_name.starts_with("Process-"), "{default_name}");
    assert_eq!(unnamed.join()?, default_name);
    Ok(())
}

fn drop_kills_and_reaps() -> TestResult {
    let child = sleeper()?;
    let pid = child.pid();
    assert_eq!(proc_state(pid).map(|s| s != 'Z'), Some(true));
    drop(child);
    // Drop kills and reaps synchronously: the pid is gone (not a zombie) as soon as drop returns.
    assert_eq!(proc_state(pid), None, "pid {pid} still in /proc after drop");
    Ok(())
}

fn active_children_lists_and_reaps() -> TestResult {
    let quick = Process::new().name("quick").fork(|| ())?;
    let slow = Process::new()
        .name("slow")
        .fork(|| std::thread::sleep(Duration::from_secs(30)))?;
    let quick_pid = quick.pid();
    // quick exits at once; nobody joins it; active_children must reap it (no zombie) and stop listing it.
    eventually(
        "active_children lists only the slow child",
        PATIENCE,
        || {
            let active = active_children();
            active
                .iter()
                .any(|c| c.pid == slow.pid() && c.name == "slow")
                && !active.iter().any(|c| c.pid == quick_pid)
        },
    )?;
    assert_eq!(
        proc_state(quick_pid),
        None,
        "quick child {quick_pid} not reaped"
    );
    assert_eq!(quick.exit_status(), Some(ExitStatus::Exited(0)));
    quick.join()?;
    slow.kill()?;
    expect_err(slow.join())?;
    assert!(active_children().is_empty());
    Ok(())
}

/// How the middle process of [`grandchild_of_killed_parent`] starts the grandchild.
#[derive(Clone, Copy)]
enum Grandchild {
    /// Forked, `daemon(true)`.
    Daemon,
    /// Forked, no parent-death signal.
    Plain,
    /// Forked, `die_with_parent(SIGKILL)`.
    ForkedDyingWithParent,
    /// Spawned, `die_with_parent(SIGKILL)`: the signal is armed before exec and survives it.
    SpawnedDyingWithParent,
}

/// How long the grandchild of [`grandchild_of_killed_parent`] sleeps, unless a signal ends it.
const GRANDCHILD_SLEEP: Duration = Duration::from_secs(20);
/// How soon after its parent's death a grandchild dying with it must be gone: far below GRANDCHILD_SLEEP, so
/// a grandchild that merely finished its sleep does not pass.
const PARENT_DEATH_PATIENCE: Duration = Duration::from_secs(3);

/// Starts a middle process that starts a grandchild sleeping GRANDCHILD_SLEEP (see [`Grandchild`]), reports
/// the grandchild's pid through a pipe, then sleeps; the middle process is SIGKILLed; returns the grandchild's
/// pid.
fn grandchild_of_killed_parent(how: Grandchild) -> Result<Pid, Failed> {
    let (read, write) = nix::unistd::pipe()?;
    let middle = Process::new().fork(move || {
        let builder = match how {
            Grandchild::Daemon => Process::new().daemon(true),
            Grandchild::Plain => Process::new(),
            Grandchild::ForkedDyingWithParent | Grandchild::SpawnedDyingWithParent => {
                Process::new().die_with_parent(libc::SIGKILL)
            }
        };
        let grandchild = match how {
            Grandchild::SpawnedDyingWithParent => {
                builder.spawn(nap, &(GRANDCHILD_SLEEP.as_millis() as u64))
            }
            _ => builder.fork(|| std::thread::sleep(GRANDCHILD_SLEEP)),
        };
        let pid = grandchild.as_ref().map_or(0, |c| c.pid().as_raw());
        let _ = nix::unistd::write(&write, &pid.to_le_bytes());
        std::thread::sleep(Duration::from_secs(30));
        // Never reached in the test: the middle process is SIGKILLed. Keep the handle alive until then.
        drop(grandchild);
    })?;
    let pid = Pid::from_raw(read_i32(read)?);
    assert_ne!(
        pid.as_raw(),
        0,
        "the middle process could not start the grandchild"
    );
    assert!(
        proc_state(pid).is_some_and(|s| s != 'Z'),
        "grandchild {pid} is not running"
    );
    middle.kill()?;
    let err = expect_err(middle.join_timeout(PATIENCE))?;
    assert_eq!(err.into_inner().map(|c| c.pid()), None);
    Ok(pid)
}

fn read_i32(read: OwnedFd) -> Result<i32, Failed> {
    let mut file = std::fs::File::from(read);
    let mut bytes = [0u8; 4];
    file.read_exact(&mut bytes)?;
    Ok(i32::from_le_bytes(bytes))
}

/// Whether `pid` has ended (gone, or a zombie waiting for init to reap it).
fn has_ended(pid: Pid) -> bool {
    !proc_state(pid).is_some_and(|state| state != 'Z' && state != 'X')
}

fn daemon_dies_when_parent_is_sigkilled() -> TestResult {
    let pid = grandchild_of_killed_parent(Grandchild::Daemon)?;
    eventually(
        "the daemon grandchild died with its parent",
        PARENT_DEATH_PATIENCE,
        || has_ended(pid),
    )?;
    Ok(())
}

fn non_daemon_survives_parent_sigkill() -> TestResult {
    // The contrast that shows the daemon test measures PDEATHSIG and not something else.
    let pid = grandchild_of_killed_parent(Grandchild::Plain)?;
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        !has_ended(pid),
        "the non-daemon grandchild {pid} died with its parent"
    );
    // Not our child (it was adopted), so no pidfd of ours names it; it was alive a moment ago and sleeps 20 s,
    // so its pid cannot have been reused yet. Its adopter reaps it.
    nix::sys::signal::kill(pid.into(), nix::sys::signal::Signal::SIGKILL)?;
    Ok(())
}

fn die_with_parent_kills_a_forked_child_of_a_killed_parent() -> TestResult {
    let pid = grandchild_of_killed_parent(Grandchild::ForkedDyingWithParent)?;
    eventually(
        "the forked grandchild died with its parent",
        PARENT_DEATH_PATIENCE,
        || has_ended(pid),
    )?;
    Ok(())
}

fn die_with_parent_kills_a_spawned_child_of_a_killed_parent() -> TestResult {
    let pid = grandchild_of_killed_parent(Grandchild::SpawnedDyingWithParent)?;
    eventually(
        "the spawned grandchild died with its parent",
        PARENT_DEATH_PATIENCE,
        || has_ended(pid),
    )?;
    Ok(())
}

fn die_with_parent_refuses_a_bad_signal() -> TestResult {
    let err = expect_err(Process::new().die_with_parent(12345).fork(|| ()))?;
    assert!(matches!(err, StartError::Os { .. }), "{err}");
    let err = expect_err(Process::new().die_with_parent(-1).spawn(add, &(1, 2)))?;
    assert!(matches!(err, StartError::Os { .. }), "{err}");
    Ok(())
}

/// The process group of `pid` as /proc reports it.
fn pgid_of(pid: Pid) -> Result<i32, Failed> {
    Ok(procfs::process::Process::new(pid.as_raw())?.stat()?.pgrp)
}

fn process_group_makes_a_forked_child_a_group_leader() -> TestResult {
    let ours = nix::unistd::getpgrp().as_raw();
    // The child waits for the parent's look before it answers, so the parent sees the group as soon as fork
    // returns, made by the parent's own setpgid if the child has not run yet.
    let (go_read, go_write) = nix::unistd::pipe()?;
    let child = Process::new().process_group(true).fork(move || {
        let mut byte = [0u8; 1];
        let _ = std::fs::File::from(go_read).read_exact(&mut byte);
        (
            nix::unistd::getpid().as_raw(),
            nix::unistd::getpgrp().as_raw(),
        )
    })?;
    let pid = child.pid();
    assert_eq!(pgid_of(pid)?, pid.as_raw(), "pgid seen by the parent");
    nix::unistd::write(&go_write, b"g")?;
    let (seen_pid, seen_pgid) = child.join_timeout(PATIENCE)?;
    assert_eq!((seen_pid, seen_pgid), (pid.as_raw(), pid.as_raw()));
    // Without the option the child stays in our group.
    let plain = Process::new().fork(|| nix::unistd::getpgrp().as_raw())?;
    assert_eq!(plain.join_timeout(PATIENCE)?, ours);
    Ok(())
}

fn process_group_makes_a_spawned_child_a_group_leader() -> TestResult {
    let child = Process::new().process_group(true).spawn(group_ids, &())?;
    let pid = child.pid();
    // A spawned child may already have exec'd, or not yet run: either way its group exists now.
    assert_eq!(pgid_of(pid)?, pid.as_raw(), "pgid seen by the parent");
    let (seen_pid, seen_pgid) = child.join_timeout(PATIENCE)?;
    assert_eq!((seen_pid, seen_pgid), (pid.as_raw(), pid.as_raw()));
    let plain = Process::new().spawn(group_ids, &())?;
    let (_, plain_pgid) = plain.join_timeout(PATIENCE)?;
    assert_eq!(plain_pgid, nix::unistd::getpgrp().as_raw());
    Ok(())
}

fn fork_refused_in_multi_threaded_parent() -> TestResult {
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    let thread = std::thread::spawn(move || stopped.recv_timeout(PATIENCE));
    let err = expect_err(Process::new().fork(|| 1))?;
    assert!(
        matches!(err, StartError::MultiThreaded { threads: 2 }),
        "{err}"
    );
    assert!(err.to_string().contains("2 threads"), "{err}");
    #[allow(unsafe_code)] // the unsafe opt-in under test
    // SAFETY: the child only computes and returns a number: it takes no lock the other thread may hold (it
    // holds none: it waits on a channel the child never touches) and prints nothing.
    let allowed = unsafe { Process::new().allow_multi_threaded_fork() }.fork(|| 2)?;
    assert_eq!(allowed.join()?, 2);
    stop.send(())?;
    let _ = thread.join();
    eventually("the helper thread is gone", PATIENCE, || {
        std::fs::read_dir("/proc/self/task")
            .map(|d| d.count() == 1)
            .unwrap_or(false)
    })?;
    assert_eq!(Process::new().fork(|| 3)?.join()?, 3);
    Ok(())
}

fn spawn_with_args_and_return_value() -> TestResult {
    let child = Process::new().spawn(add, &(40, 2))?;
    assert_eq!(child.join_timeout(PATIENCE)?, 42);
    Ok(())
}

fn spawn_reports_identity() -> TestResult {
    let child = Process::new().name("spawned-one").spawn(whoami, &())?;
    let pid = child.pid();
    let (seen_pid, seen_ppid, seen_name) = child.join_timeout(PATIENCE)?;
    assert_eq!(
        (seen_pid, seen_ppid, seen_name.as_str()),
        (pid, Pid::this(), "spawned-one")
    );
    Ok(())
}

fn spawn_panic_message_is_carried_back() -> TestResult {
    let child = Process::new().spawn(explode, &"spawned boom".to_owned())?;
    let err = expect_err(child.join_timeout(PATIENCE))?;
    match err {
        err @ JoinTimeoutError::Panicked { .. } => {
            assert_eq!(err.panic_message(), Some("spawned boom"))
        }
        other => return Err(format!("expected a panic, got {other:?}").into()),
    }
    Ok(())
}

/// What `main` does in a copy of this binary re-executed with the spawn flag: it must never run, because
/// herd-ipc's start-up hook takes over such a process before `main`.
fn main_of_a_spawned_copy() -> ExitCode {
    println!("main ran in a spawned child");
    ExitCode::from(4)
}

fn spawned_child_never_reaches_main() -> TestResult {
    // Re-execute this binary the way spawn does (flag first), with fd numbers that are not open: the start-up
    // hook handles the flag before main, reports the missing result channel and exits with 1.
    let output = std::process::Command::new(std::env::current_exe()?)
        .args(["--herd-ipc-spawn", "1000", "1001"])
        .env(REACHED_MAIN, "1")
        .output()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stdout}{stderr}");
    assert!(!stdout.contains("main ran"), "{stdout}");
    assert!(stderr.contains("no result channel"), "{stderr}");
    Ok(())
}

fn spawn_unregistered_entry_is_refused() -> TestResult {
    let err = expect_err(Process::new().spawn_named::<_, ()>("no::such::entry", &()))?;
    assert!(matches!(err, StartError::UnknownEntry { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("no::such::entry") && text.contains("::add"),
        "{text}"
    );
    Ok(())
}

fn spawn_undecodable_args_fail_clearly() -> TestResult {
    // `add` takes (i64, i64); a string does not decode as that.
    let child =
        Process::new().spawn_named::<_, i64>(<add as herd::ipc::Entry>::NAME, &"not a pair")?;
    let err = expect_err(child.join_timeout(PATIENCE))?;
    match err {
        JoinTimeoutError::Failed {
            message, status, ..
        } => {
            assert!(
                message.contains("arguments") && message.contains("add"),
                "{message}"
            );
            assert_eq!(status, ExitStatus::Exited(1));
        }
        other => return Err(format!("expected a decode failure, got {other:?}").into()),
    }
    Ok(())
}

fn spawn_wrong_return_type_fails_clearly() -> TestResult {
    let child =
        Process::new().spawn_named::<_, String>(<add as herd::ipc::Entry>::NAME, &(1i64, 2i64))?;
    let err = expect_err(child.join_timeout(PATIENCE))?;
    assert!(matches!(err, JoinTimeoutError::Decode { .. }), "{err:?}");
    Ok(())
}

fn spawn_killed_child_reports_signal() -> TestResult {
    let child = Process::new().spawn(nap, &30_000)?;
    child.kill()?;
    expect_ended_by(child, libc::SIGKILL, "a kill")
}

fn spawn_from_multi_threaded_parent() -> TestResult {
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    let thread = std::thread::spawn(move || stopped.recv_timeout(PATIENCE));
    let result = Process::new()
        .spawn(add, &(1, 1))
        .map(|child| child.join_timeout(PATIENCE));
    stop.send(())?;
    let _ = thread.join();
    assert_eq!(result??, 2);
    Ok(())
}

fn spawn_passes_a_pipe_end_as_argument() -> TestResult {
    let (sender, receiver) = Pipe::<String>::simplex()?;
    let child = Process::new()
        .name("greeter")
        .spawn(greet_through, &sender)?;
    drop(sender);
    assert_eq!(receiver.recv_timeout(PATIENCE)?, "hello from greeter");
    assert!(child.join_timeout(PATIENCE)?);
    Ok(())
}

fn fork_returns_a_pipe_end() -> TestResult {
    // The child makes a pipe, leaves a message in it and returns the receiving end: its fd travels back to the
    // parent with the result (SCM_RIGHTS) and outlives the child.
    let child = Process::new().fork(|| -> Result<PipeReceiver<String>, String> {
        let (sender, receiver) = Pipe::<String>::simplex().map_err(|e| e.to_string())?;
        sender
            .send("made in the child".to_owned())
            .map_err(|e| e.to_string())?;
        Ok(receiver)
    })?;
    let receiver = child.join_timeout(PATIENCE)??;
    assert_eq!(receiver.recv_timeout(PATIENCE)?, "made in the child");
    Ok(())
}

fn wait_reports_the_child_that_exited() -> TestResult {
    let slow = sleeper()?;
    let quick = Process::new().fork(|| std::thread::sleep(Duration::from_millis(50)))?;
    let ready = herd::ipc::wait(&[&slow, &quick], Some(PATIENCE))?;
    assert_eq!(ready, vec![1]);
    assert!(slow.is_alive() && !quick.is_alive());
    quick.join()?;
    Ok(())
}

/// Runs an example binary built next to this test binary (cargo builds examples for `cargo test`), with a
/// deadline; returns its stdout if it exited with code 0.
fn run_example(name: &str, args: &[&str]) -> Result<String, Failed> {
    let exe = std::env::current_exe()?;
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .ok_or("test binary has no target dir")?;
    let path = profile_dir.join("examples").join(name);
    if !path.exists() {
        return Err(format!("{} not built (run through cargo test)", path.display()).into());
    }
    let mut child = std::process::Command::new(&path)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let deadline = Instant::now() + PATIENCE;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("example {name} did not finish within {PATIENCE:?}").into());
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let output = child.wait_with_output()?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if !status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(format!("example {name} {args:?} failed ({status}):\n{stdout}{stderr}").into());
    }
    Ok(stdout)
}

fn zombie_demo_sees_a_zombie() -> TestResult {
    let out = run_example("zombie", &["--hold", "0"])?;
    let first = out.lines().next().unwrap_or_default();
    assert!(
        first.contains("parent pid") && first.contains("child pid"),
        "{out}"
    );
    assert!(out.contains("state Z") && out.contains("is gone"), "{out}");
    Ok(())
}

fn orphan_demo_sees_reparenting() -> TestResult {
    let out = run_example("orphan", &["--hold", "0"])?;
    assert!(
        out.lines().next().unwrap_or_default().contains("child pid"),
        "{out}"
    );
    assert!(out.contains("my parent is now"), "{out}");
    let out = run_example("orphan", &["--hold", "0", "--subreaper"])?;
    assert!(
        out.contains("adopted orphan") && out.contains("reaped it"),
        "{out}"
    );
    Ok(())
}

#[allow(unsafe_code)] // sets SIGCHLD's disposition, which nix exposes only as unsafe
fn ignored_sigchld_is_refused() -> TestResult {
    use nix::sys::signal::{signal, SigHandler, Signal};
    // SAFETY: installs SIG_IGN (no handler code) and restores the default below; this test runs alone on the
    // main thread.
    unsafe { signal(Signal::SIGCHLD, SigHandler::SigIgn) }?;
    let refused = Process::new().fork(|| 1);
    let refused_spawn = Process::new().spawn(add, &(1, 2));
    // SAFETY: as above: restores the default disposition.
    unsafe { signal(Signal::SIGCHLD, SigHandler::SigDfl) }?;
    let err = expect_err(refused)?;
    assert!(matches!(err, StartError::AutoReaped), "{err}");
    assert!(err.to_string().contains("SIGCHLD"), "{err}");
    assert!(matches!(expect_err(refused_spawn)?, StartError::AutoReaped));
    assert_eq!(Process::new().fork(|| 1)?.join()?, 1);
    Ok(())
}

/// A value whose serialisation always fails.
#[derive(Debug, serde::Deserialize)]
struct Unencodable;

impl serde::Serialize for Unencodable {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom(
            "Unencodable refuses to be encoded",
        ))
    }
}

fn unencodable_values_fail_clearly() -> TestResult {
    let err = expect_err(
        Process::new().spawn_named::<_, ()>(<add as herd::ipc::Entry>::NAME, &Unencodable),
    )?;
    assert!(matches!(err, StartError::Arguments { .. }), "{err}");
    // postcard keeps no custom serde message: the error names the entry and the failing step.
    let text = err.to_string();
    assert!(
        text.contains("process::add") && text.contains("cannot be encoded"),
        "{text}"
    );

    let child = Process::new().fork(|| Unencodable)?;
    let err = expect_err(child.join_timeout(PATIENCE))?;
    match err {
        JoinTimeoutError::Failed {
            message, status, ..
        } => {
            assert!(
                message.contains("returned value could not be encoded"),
                "{message}"
            );
            assert_eq!(status, ExitStatus::Exited(1));
        }
        other => return Err(format!("expected an encoding failure, got {other:?}").into()),
    }
    Ok(())
}

fn send_signal_delivers_any_signal() -> TestResult {
    let child = sleeper()?;
    child.send_signal(libc::SIGINT)?;
    expect_ended_by(child, libc::SIGINT, "SIGINT")
}

fn unsendable_result_fails_clearly() -> TestResult {
    // One message carries at most 253 fds (SCM_MAX_FD): a value holding 254 handles cannot travel back.
    let child = Process::new().fork(|| -> Result<Vec<PipeReceiver<u8>>, String> {
        (0..254)
            .map(|_| Pipe::<u8>::simplex().map(|(_, receiver)| receiver))
            .collect::<Result<_, _>>()
            .map_err(|err| err.to_string())
    })?;
    let err = expect_err(child.join_timeout(PATIENCE))?;
    match err {
        JoinTimeoutError::Failed {
            message, status, ..
        } => {
            assert!(message.contains("could not send its result"), "{message}");
            assert_eq!(status, ExitStatus::Exited(1));
        }
        other => return Err(format!("expected a send failure, got {other:?}").into()),
    }
    Ok(())
}

/// The forkserver's children that are zombies: an exited child stays one only until its owner asks.
fn forkserver_zombies() -> Vec<i32> {
    herd::ipc::forkserver_pid()
        .map(|server| {
            support::proc::children_of(server.as_raw())
                .into_iter()
                .filter(|&(_, state)| state == 'Z')
                .map(|(pid, _)| pid)
                .collect()
        })
        .unwrap_or_default()
}

fn no_forkserver_zombies() -> TestResult {
    let zombies = forkserver_zombies();
    if zombies.is_empty() {
        Ok(())
    } else {
        Err(format!("the forkserver holds zombies: {zombies:?}").into())
    }
}

fn forkserver_returns_value() -> TestResult {
    let child = Process::new().name("fs-adder").forkserver(add, &(40, 2))?;
    assert_eq!(child.name(), "fs-adder");
    assert_eq!(child.join_timeout(PATIENCE)?, 42);
    let server = herd::ipc::forkserver_pid().ok_or("no forkserver after a forkserver start")?;
    // The forkserver is our child, its children are its own.
    assert_eq!(
        procfs::process::Process::new(server.as_raw())?.stat()?.ppid,
        Pid::this().as_raw()
    );
    let child = Process::new().name("fs-who").forkserver(whoami, &())?;
    let pid = child.pid();
    let (seen_pid, seen_ppid, seen_name) = child.join_timeout(PATIENCE)?;
    assert_eq!(
        (seen_pid, seen_ppid, seen_name.as_str()),
        (pid, server, "fs-who")
    );
    // One server per process: the second start reused it.
    assert_eq!(herd::ipc::forkserver_pid(), Some(server));
    let err = expect_err(Process::new().forkserver_named::<_, ()>("no::such::entry", &()))?;
    assert!(matches!(err, StartError::UnknownEntry { .. }), "{err}");
    no_forkserver_zombies()
}

fn forkserver_exit_and_signals() -> TestResult {
    let exits = Process::new().forkserver(exit_with, &3)?;
    let err = expect_err(exits.join_timeout(PATIENCE))?;
    match err {
        err @ JoinTimeoutError::NoValue { .. } => {
            assert_eq!(err.exit_status().map(|s| s.exitcode()), Some(3));
        }
        other => return Err(format!("expected exit code 3, got {other:?}").into()),
    }

    let child = Process::new().forkserver(nap, &30_000)?;
    assert!(child.is_alive());
    assert_eq!(child.exit_status(), None);
    child.terminate()?;
    expect_ended_by(child, libc::SIGTERM, "SIGTERM")?;

    let child = Process::new().forkserver(nap, &30_000)?;
    child.kill()?;
    eventually("the killed child is no longer alive", PATIENCE, || {
        !child.is_alive()
    })?;
    assert_eq!(
        child.exit_status(),
        Some(ExitStatus::Signaled(libc::SIGKILL))
    );
    assert_eq!(child.exit_status().map(|s| s.exitcode()), Some(-9));
    // Reaped: signals are no-ops now, whoever has the pid.
    child.terminate()?;
    expect_ended_by(child, libc::SIGKILL, "a kill")?;

    let child = Process::new().forkserver(nap, &30_000)?;
    child.send_signal(libc::SIGINT)?;
    expect_ended_by(child, libc::SIGINT, "SIGINT")?;

    let child = Process::new().forkserver(explode, &"served boom".to_owned())?;
    match expect_err(child.join_timeout(PATIENCE))? {
        err @ JoinTimeoutError::Panicked { .. } => {
            assert_eq!(err.panic_message(), Some("served boom"));
            assert_eq!(err.exit_status(), Some(ExitStatus::Exited(1)));
        }
        other => return Err(format!("expected a panic, got {other:?}").into()),
    }
    no_forkserver_zombies()
}

fn forkserver_keeps_a_zombie_until_asked() -> TestResult {
    let child = Process::new().forkserver(nothing, &())?;
    let pid = child.pid();
    // The child exits at once; nobody asked for its status, so the forkserver keeps it as a zombie: the pid
    // (and its process group) stay reserved for the owner.
    eventually("the finished child is a zombie", PATIENCE, || {
        proc_state(pid) == Some('Z')
    })?;
    assert_eq!(forkserver_zombies(), vec![pid.as_raw()]);
    assert_eq!(child.exit_status(), Some(ExitStatus::Exited(0)));
    assert_eq!(
        proc_state(pid),
        None,
        "pid {pid} still in /proc once reaped"
    );
    child.join_timeout(PATIENCE)?;
    no_forkserver_zombies()
}

fn forkserver_drop_kills_and_reaps() -> TestResult {
    let child = Process::new().forkserver(nap, &30_000)?;
    let pid = child.pid();
    assert_eq!(proc_state(pid).map(|s| s != 'Z'), Some(true));
    drop(child);
    assert_eq!(proc_state(pid), None, "pid {pid} still in /proc after drop");
    no_forkserver_zombies()
}

fn forkserver_pidfd_polls() -> TestResult {
    use std::os::fd::AsFd;
    let slow = Process::new().forkserver(nap, &30_000)?;
    let quick = Process::new().forkserver(nap, &50)?;
    let ready = herd::ipc::wait(&[&slow, &quick], Some(PATIENCE))?;
    assert_eq!(ready, vec![1]);
    assert!(slow.is_alive() && !quick.is_alive());
    // The handle's fd is the pidfd the forkserver opened: readable once the child exits.
    let mut fds = [nix::poll::PollFd::new(
        slow.as_fd(),
        nix::poll::PollFlags::POLLIN,
    )];
    assert_eq!(nix::poll::poll(&mut fds, nix::poll::PollTimeout::ZERO)?, 0);
    slow.kill()?;
    assert_eq!(
        nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(10_000u16))?,
        1
    );
    quick.join_timeout(PATIENCE)?;
    expect_ended_by(slow, libc::SIGKILL, "a kill")?;
    no_forkserver_zombies()
}

fn forkserver_passes_a_pipe_end() -> TestResult {
    let (sender, receiver) = Pipe::<String>::simplex()?;
    let child = Process::new()
        .name("fs-greeter")
        .forkserver(greet_through, &sender)?;
    drop(sender);
    assert_eq!(receiver.recv_timeout(PATIENCE)?, "hello from fs-greeter");
    assert!(child.join_timeout(PATIENCE)?);
    no_forkserver_zombies()
}

fn forkserver_from_multi_threaded_process() -> TestResult {
    // In a forked child (this test process must stay single-threaded): start threads, then start children
    // through the child's own forkserver from several threads at once.
    let child = support::fork_child(|| {
        let (release, released) = std::sync::mpsc::channel::<()>();
        let helper = std::thread::spawn(move || released.recv_timeout(PATIENCE));
        let threads: Vec<_> = (0..4i64)
            .map(|i| {
                std::thread::spawn(move || -> Result<i64, String> {
                    let child = Process::new()
                        .forkserver(add, &(i, 100))
                        .map_err(|e| e.to_string())?;
                    child.join_timeout(PATIENCE).map_err(|e| e.to_string())
                })
            })
            .collect();
        let mut sums = Vec::new();
        for thread in threads {
            sums.push(thread.join().map_err(|_| "thread panicked".to_owned())??);
        }
        support::ensure(sums == [100, 101, 102, 103], || format!("{sums:?}"))?;
        let fork = Process::new().fork(|| 1);
        support::ensure(
            matches!(fork, Err(StartError::MultiThreaded { .. })),
            || format!("fork was not refused: {fork:?}"),
        )?;
        let _ = release.send(());
        let _ = helper.join();
        // This process's own forkserver, not the one inherited from the test process.
        let mine = herd::ipc::forkserver_pid().ok_or("no forkserver")?;
        let ppid = procfs::process::Process::new(mine.as_raw())
            .and_then(|p| p.stat())
            .map_err(|e| e.to_string())?
            .ppid;
        support::ensure(ppid == Pid::this().as_raw(), || {
            format!("forkserver {mine} has parent {ppid}")
        })
    });
    Ok(child.join(PATIENCE)?)
}

/// Forks a middle process that starts a forkserver child (`daemon` or not) and reports the forkserver's pid
/// and the child's through a pipe, then sleeps until it is SIGKILLed; returns (forkserver, child).
fn forkserver_of_killed_parent(daemon: bool) -> Result<(Pid, Pid), Failed> {
    let (read, write) = nix::unistd::pipe()?;
    let middle = Process::new().fork(move || {
        let child = Process::new().daemon(daemon).forkserver(nap, &5_000);
        let pid = child.as_ref().map_or(0, |c| c.pid().as_raw());
        let server = herd::ipc::forkserver_pid().map_or(0, Pid::as_raw);
        let mut bytes = server.to_le_bytes().to_vec();
        bytes.extend_from_slice(&pid.to_le_bytes());
        let _ = nix::unistd::write(&write, &bytes);
        std::thread::sleep(Duration::from_secs(30));
        drop(child);
    })?;
    let mut file = std::fs::File::from(read);
    let mut bytes = [0u8; 8];
    file.read_exact(&mut bytes)?;
    let server = i32::from_le_bytes(bytes[..4].try_into()?);
    let pid = i32::from_le_bytes(bytes[4..].try_into()?);
    assert!(
        server != 0 && pid != 0,
        "the middle process could not start"
    );
    middle.kill()?;
    expect_err(middle.join_timeout(PATIENCE))?;
    Ok((Pid::from_raw(server), Pid::from_raw(pid)))
}

fn forkserver_dies_with_its_parent() -> TestResult {
    let (server, daemon) = forkserver_of_killed_parent(true)?;
    eventually("the forkserver died with its parent", PATIENCE, || {
        has_ended(server)
    })?;
    eventually(
        "the daemon child died with the forkserver",
        PATIENCE,
        || has_ended(daemon),
    )?;
    // The contrast: a non-daemon child outlives both.
    let (server, plain) = forkserver_of_killed_parent(false)?;
    eventually("the forkserver died with its parent", PATIENCE, || {
        has_ended(server)
    })?;
    std::thread::sleep(Duration::from_millis(200));
    assert!(!has_ended(plain), "the non-daemon child {plain} died");
    // Adopted by init (or a subreaper), sleeping 5 s: its pid cannot have been reused yet.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(plain.as_raw()),
        nix::sys::signal::Signal::SIGKILL,
    )?;
    Ok(())
}

fn forkserver_started_from_a_short_lived_thread_survives_it() -> TestResult {
    // The parent-death signal fires when the forking *thread* exits; a server started from a thread that
    // ends must keep serving, and still die with the process.
    let (read, write) = nix::unistd::pipe()?;
    let middle = Process::new().fork(move || -> Result<(), String> {
        let first = std::thread::spawn(|| {
            Process::new()
                .forkserver(add, &(1, 1))
                .map_err(|e| e.to_string())?
                .join_timeout(PATIENCE)
                .map_err(|e| e.to_string())
        })
        .join()
        .map_err(|_| "thread panicked".to_owned())??;
        std::thread::sleep(Duration::from_millis(100));
        let second = Process::new()
            .forkserver(add, &(2, 2))
            .map_err(|e| e.to_string())?
            .join_timeout(PATIENCE)
            .map_err(|e| e.to_string())?;
        let server = herd::ipc::forkserver_pid().map_or(0, Pid::as_raw);
        let _ = nix::unistd::write(&write, &server.to_le_bytes());
        if (first, second) != (2, 4) {
            return Err(format!("{first} {second}"));
        }
        std::thread::sleep(Duration::from_secs(30));
        Ok(())
    })?;
    let server = Pid::from_raw(read_i32(read)?);
    assert_ne!(server.as_raw(), 0);
    middle.kill()?;
    expect_err(middle.join_timeout(PATIENCE))?;
    eventually("the forkserver died with its parent", PATIENCE, || {
        has_ended(server)
    })?;
    Ok(())
}

fn forkserver_is_restarted_after_it_died() -> TestResult {
    assert_eq!(Process::new().forkserver(add, &(1, 2))?.join()?, 3);
    let first = herd::ipc::forkserver_pid().ok_or("no forkserver")?;
    let running = Process::new().daemon(true).forkserver(nap, &30_000)?;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(first.as_raw()),
        nix::sys::signal::Signal::SIGKILL,
    )?;
    eventually("the killed forkserver is seen as gone", PATIENCE, || {
        herd::ipc::forkserver_pid().is_none()
    })?;
    // Its daemon child died with it; the handle reports that its status is lost.
    eventually(
        "the daemon child died with the forkserver",
        PATIENCE,
        || !running.is_alive(),
    )?;
    let err = expect_err(running.join_timeout(PATIENCE))?;
    assert!(err.to_string().contains("forkserver"), "{err}");
    // The next start launches a new server; the dead one has been reaped (no zombie of ours).
    assert_eq!(Process::new().forkserver(add, &(2, 2))?.join()?, 4);
    let second = herd::ipc::forkserver_pid().ok_or("no forkserver")?;
    assert_ne!(first, second);
    assert_eq!(
        proc_state(first),
        None,
        "the dead forkserver was not reaped"
    );
    Ok(())
}

fn start_dispatches_on_method() -> TestResult {
    assert_eq!(StartMethod::default_for_this_process(), StartMethod::Fork);
    for method in StartMethod::ALL {
        let parsed: StartMethod = method.to_string().parse()?;
        assert_eq!(parsed, method);
        let child = Process::new()
            .name(format!("by-{method}"))
            .start(method, whoami, &())?;
        let pid = child.pid();
        let (seen_pid, _, seen_name) = child.join_timeout(PATIENCE)?;
        assert_eq!((seen_pid, seen_name), (pid, format!("by-{method}")));
        let (sender, receiver) = Pipe::<String>::simplex()?;
        let child =
            Process::new()
                .name(format!("pipe-{method}"))
                .start(method, greet_through, &sender)?;
        drop(sender);
        assert_eq!(
            receiver.recv_timeout(PATIENCE)?,
            format!("hello from pipe-{method}")
        );
        assert!(child.join_timeout(PATIENCE)?);
    }
    let err = expect_err("vfork".parse::<StartMethod>())?;
    assert!(err.to_string().contains("vfork"), "{err}");
    no_forkserver_zombies()
}

fn forkserver_child_adopted_by_a_subreaper_is_reaped() -> TestResult {
    // In a forked child that is a subreaper (as the supervisor is): when its forkserver dies, the server's
    // children are re-parented to it, and their handles reap them directly. Neither the dead server nor the
    // child may stay a zombie.
    let child = support::fork_child(|| {
        nix::sys::prctl::set_child_subreaper(true).map_err(|e| e.to_string())?;
        let child = Process::new()
            .forkserver(nap, &30_000)
            .map_err(|e| e.to_string())?;
        let pid = child.pid();
        let server = herd::ipc::forkserver_pid().ok_or("no forkserver")?;
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(server.as_raw()),
            nix::sys::signal::Signal::SIGKILL,
        )
        .map_err(|e| e.to_string())?;
        eventually("the orphaned child is adopted by us", PATIENCE, || {
            procfs::process::Process::new(pid.as_raw())
                .and_then(|p| p.stat())
                .is_ok_and(|stat| stat.ppid == Pid::this().as_raw())
        })?;
        child.kill().map_err(|e| e.to_string())?;
        match child.join_timeout(PATIENCE) {
            Err(err) if err.exit_status() == Some(ExitStatus::Signaled(libc::SIGKILL)) => {}
            other => return Err(format!("expected a SIGKILL status, got {other:?}")),
        }
        support::ensure(proc_state(server).is_none(), || {
            format!("the dead forkserver {server} was not reaped")
        })?;
        support::no_zombies()
    });
    Ok(child.join(PATIENCE)?)
}
